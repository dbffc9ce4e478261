#!/usr/bin/env bash
# Dashboard tests: the real pistats binary and Debian's headless Chromium, driven by
# playwright-core under node's built-in test runner. Idempotent; safe to run on a fresh
# Debian 12 machine as root (installs Chromium, Node and the npm dependency itself). Works
# with Debian 12's own Node 18 and with newer ones.
#
#   PISTATS_BIN=/path/to/pistats tests/browser/run.sh [FILE.test.js …]
#
# Without PISTATS_BIN the debug build is used (built first when missing). Without files,
# every *.test.js here runs, one file after the other.
# PISTATS_UPDATE_DOCS=1 also refreshes the screenshots in docs/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
. "$here/lib.sh"

need_chromium_and_node
npm_ci "$here"
export PISTATS_BIN
PISTATS_BIN="$(pistats_bin "$repo")"

cd "$here"
mkdir -p "$here/out"
find "$here/out" -maxdepth 1 -type f -delete # this run's screenshots; out/lighthouse stays
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(*.test.js)
status=0
for f in "${files[@]}"; do
  # one node per file: the daemons and browsers of two files never compete for the cores
  node --test --test-reporter=spec "$f" || status=1
done
exit "$status"
