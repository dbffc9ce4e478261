#!/usr/bin/env bash
# Dashboard tests: the real pistats binary and Debian's headless Chromium, driven by
# playwright-core under node's built-in test runner. Idempotent; safe to run on a fresh
# Debian 12 machine as root (installs Chromium and the npm dependency itself).
#
#   PISTATS_BIN=/path/to/pistats tests/browser/run.sh
#
# Without PISTATS_BIN the debug build is used (built first when missing).
# PISTATS_UPDATE_DOCS=1 also refreshes docs/dashboard-{phone,desktop}.png.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: need root to apt-get install $*" >&2
    exit 1
  fi
  apt-get update -qq
  apt-get install -y -qq "$@" >/dev/null
}

if [ ! -x /usr/bin/chromium ]; then
  echo "run.sh: installing chromium"
  apt_install chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "run.sh: installing nodejs and npm"
  apt_install nodejs npm
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "run.sh: node >= 20 is needed by playwright-core, found $(node --version)" >&2
  exit 1
fi

cd "$here"
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi

bin="${PISTATS_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/pistats}"
if [ -z "${PISTATS_BIN:-}" ] && [ ! -x "$bin" ]; then
  echo "run.sh: building pistats"
  (cd "$repo" && cargo build --bin pistats)
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

rm -rf "$here/out"
mkdir -p "$here/out"
PISTATS_BIN="$bin" node --test --test-concurrency=1 --test-reporter=spec dashboard.test.js
