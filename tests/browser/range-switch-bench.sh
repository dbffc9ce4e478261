#!/usr/bin/env bash
# Benchmark (not a test): how long the dashboard takes to switch chart ranges with a year of
# history loaded, in Debian's headless Chromium with the CPU throttled 4× (a mid-range phone).
# Writes a state directory with a year of synthetic history (examples/year_of_history.rs),
# starts the real pistats on it, opens the dashboard, switches 10m → 1h → 24h → 7d → 30d → 1y
# ROUNDS times (each round on a freshly opened page, then once more with the replies kept) and
# prints the time from click to charts drawn per range: median, p95, max.
#
#   tests/browser/range-switch-bench.sh [ROUNDS]        (default 5)
#   PISTATS_BIN=/path/to/pistats tests/browser/range-switch-bench.sh
#   COMPARE_ASSETS=/path/to/other/assets tests/browser/range-switch-bench.sh
#
# With COMPARE_ASSETS a second daemon (same binary, a copy of the same history) serves those
# dashboard files, and the rounds alternate between the two pages: a before/after comparison
# measured under the same load.
#
# Without PISTATS_BIN the release build is used (built first): a debug daemon takes ten times
# longer to answer, which would be measured as the page's time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
. "$here/lib.sh"

need_chromium_and_node
npm_ci "$here"
target="${CARGO_TARGET_DIR:-$repo/target}"
build=(--example year_of_history)
[ -n "${PISTATS_BIN:-}" ] || build+=(--bin pistats)
(cd "$repo" && cargo build --release --locked "${build[@]}" >&2)
bin="${PISTATS_BIN:-$target/release/pistats}"

tmp="$(mktemp -d)"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"' EXIT
"$target/release/examples/year_of_history" "$tmp/state"

# Starts pistats on a copy of the history with the dashboard files in $1; sets $url.
start() {
  local assets="$1" n="${#pids[@]}"
  cp -a "$tmp/state" "$tmp/state$n"
  local log="$tmp/pistats$n.log" addr=""
  "$bin" --config /dev/null --host 127.0.0.1 --port 0 --assets-dir "$assets" --state-dir "$tmp/state$n" >/dev/null 2>"$log" &
  pids+=($!)
  addr="$(listening_addr "${pids[-1]}" "$log")" || exit 1
  url="http://$addr/"
}
start "$repo/assets"
urls=("this=$url")
if [ -n "${COMPARE_ASSETS:-}" ]; then
  start "$COMPARE_ASSETS"
  urls+=("compare=$url")
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; $(/usr/bin/chromium --version 2>/dev/null || true)"
cd "$here"
node range-switch.bench.js "${1:-5}" "${urls[@]}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
