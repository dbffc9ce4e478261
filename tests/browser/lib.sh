# Shared by run.sh, lighthouse.sh and range-switch-bench.sh: install what the dashboard tests
# need from Debian and npm, idempotently, on Debian 12's own Node 18 as well as on newer ones;
# find the pistats to test and where it listens.

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ "$(id -u)" -ne 0 ]; then
    echo "$(basename "$0"): need root to apt-get install $*" >&2
    exit 1
  fi
  apt-get update -qq
  apt-get install -y -qq "$@" >/dev/null
}

# Debian's Chromium and a Node with npm (Debian 12 has Node 18, which is enough).
need_chromium_and_node() {
  if [ ! -x /usr/bin/chromium ]; then
    echo "$(basename "$0"): installing chromium"
    apt_install chromium
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "$(basename "$0"): installing nodejs and npm"
    apt_install nodejs npm
  fi
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  if [ "$major" -lt 18 ]; then
    echo "$(basename "$0"): node >= 18 is needed, found $(node --version)" >&2
    exit 1
  fi
}

# npm ci in directory $1 from its package-lock.json, skipped when node_modules already holds
# exactly that lock. A flaky registry mirror gets npm's own retries and then whole retries.
npm_ci() {
  local dir="$1" stamp want attempt
  stamp="$dir/node_modules/.installed-lock"
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  for attempt in 1 2 3 4; do
    if (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error \
          --fetch-retries=4 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=30000 2>"$dir/.npm-ci.log"); then
      rm -f "$dir/.npm-ci.log"
      echo "$want" >"$stamp"
      return 0
    fi
    cat "$dir/.npm-ci.log" >&2
    # a lock that does not match package.json fails the same way every time
    grep -q EUSAGE "$dir/.npm-ci.log" && break
    echo "$(basename "$0"): npm ci failed (attempt $attempt of 4)" >&2
    [ "$attempt" -lt 4 ] && sleep $((attempt * 10))
  done
  echo "$(basename "$0"): could not install the npm dependencies in $dir" >&2
  exit 1
}

# The pistats binary to test: $PISTATS_BIN, else the debug build (built when missing).
pistats_bin() {
  local repo="$1" bin
  bin="${PISTATS_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/pistats}"
  if [ -z "${PISTATS_BIN:-}" ] && [ ! -x "$bin" ]; then
    echo "$(basename "$0"): building pistats" >&2
    (cd "$repo" && cargo build --bin pistats >&2)
  fi
  echo "$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
}

# The address a pistats started in the background (PID $1, log $2) listens on, from its log
# line "listening on ADDR"; the log is shown and the script exits if it dies or takes 20 s.
listening_addr() {
  local pid="$1" log="$2" addr=""
  for _ in $(seq 100); do
    addr="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'listening on [0-9.:]*' | head -n1 | cut -d' ' -f3 || true)"
    [ -n "$addr" ] && { echo "$addr"; return 0; }
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.2
  done
  echo "$(basename "$0"): pistats did not start" >&2
  cat "$log" >&2
  exit 1
}
