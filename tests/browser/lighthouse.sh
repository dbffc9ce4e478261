#!/usr/bin/env bash
# Lighthouse audits of the dashboard, served by the real pistats binary, in Debian's headless
# Chromium: the mobile profile (simulated slow 4G, 4× CPU slowdown) and the desktop one, each
# in the light and the dark theme. Fails when accessibility or best practices score below 95
# or mobile performance below 90. Reports land in tests/browser/out/lighthouse/.
#
#   PISTATS_BIN=/path/to/pistats tests/browser/lighthouse.sh
#
# Idempotent; installs Chromium, Node and the pinned lighthouse itself (Node 18 is enough).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
. "$here/lib.sh"

need_chromium_and_node
npm_ci "$here/lighthouse"
bin="$(pistats_bin "$repo")"

out="$here/out/lighthouse"
rm -rf "$out"
mkdir -p "$out"

log="$out/pistats.log"
"$bin" --host 127.0.0.1 --port 0 --assets-dir "$repo/assets" 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
addr=""
for _ in $(seq 100); do
  addr="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'listening on [0-9.:]*' | head -n1 | cut -d' ' -f3 || true)"
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.2
done
[ -n "$addr" ] || { echo "lighthouse.sh: pistats did not start" >&2; cat "$log" >&2; exit 1; }
sleep 3 # a few seconds of history for the charts

export CHROME_PATH=/usr/bin/chromium
status=0
printf '%-16s %12s %14s %15s\n' profile performance accessibility best-practices
for profile in mobile desktop; do
  for theme in light dark; do
    flags="--headless=new --no-sandbox --disable-gpu"
    [ "$theme" = dark ] && flags="$flags --force-dark-mode"
    args=()
    [ "$profile" = desktop ] && args+=(--preset=desktop)
    report="$out/$profile-$theme.json"
    node "$here/lighthouse/node_modules/lighthouse/cli/index.js" "http://$addr/" \
      --quiet --output=json --output-path="$report" \
      --only-categories=performance,accessibility,best-practices \
      --chrome-flags="$flags" "${args[@]}" >/dev/null
    read -r perf a11y bp < <(node -e '
      const r = require(process.argv[1]);
      const s = (k) => Math.round(r.categories[k].score * 100);
      console.log(s("performance"), s("accessibility"), s("best-practices"));' "$report")
    printf '%-16s %12s %14s %15s\n' "$profile-$theme" "$perf" "$a11y" "$bp"
    if [ "$a11y" -lt 95 ] || [ "$bp" -lt 95 ] || { [ "$profile" = mobile ] && [ "$perf" -lt 90 ]; }; then
      status=1
      # what cost the points
      node -e '
        const r = require(process.argv[1]);
        for (const c of Object.values(r.categories)) for (const ref of c.auditRefs) {
          const a = r.audits[ref.id];
          if (ref.weight > 0 && a.score !== null && a.score < 0.9) console.log(`  ${c.id}: ${a.id} (${a.score}) ${a.displayValue || ""}`);
        }' "$report" >&2
    fi
  done
done
[ "$status" -eq 0 ] && echo "lighthouse.sh: all profiles meet the thresholds" || echo "lighthouse.sh: below threshold" >&2
exit "$status"
