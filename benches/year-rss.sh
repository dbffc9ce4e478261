#!/usr/bin/env bash
# RSS of the running daemon with a year of history restored against an empty state directory,
# for two builds side by side (docs/benchmarks.md, "Older blocks in a file, not in RAM").
#
# Usage: benches/year-rss.sh BEFORE AFTER [ROUNDS]
#   BEFORE, AFTER: pistats binaries (e.g. the package builds, target/<triple>/dist/pistats).
# Four daemons run at once on loopback (each build with an empty state directory and with a
# year restored, written by examples/year_of_history.rs for 2 cores); `/proc/PID/smaps_rollup`
# is read 30 s and 60 s after start, and once more 10 s after three `range=1y` and three
# `range=7d` queries to each.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 BEFORE AFTER [ROUNDS]" >&2; exit 2; }
before=$(realpath "$1") after=$(realpath "$2") rounds=${3:-2}
tmp=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
cargo run --quiet --example year_of_history -- "$tmp/year" 2 >/dev/null

rollup() { awk -v f="$2" '$1 == f { print $2 }' "/proc/$1/smaps_rollup"; }
for round in $(seq "$rounds"); do
    pids=() names=() ports=()
    port=19870
    for build in before after; do
        for state in empty year; do
            dir=$tmp/run/$build-$state
            rm -rf "$dir" && mkdir -p "$dir"
            [ $state = empty ] || cp "$tmp/year/history.bin" "$dir/"
            if [ $build = before ]; then bin=$before; else bin=$after; fi
            "$bin" --config /dev/null --host 127.0.0.1 --port $port --state-dir "$dir" \
                >"$tmp/run/$build-$state.log" 2>&1 &
            pids+=($!) names+=("$build-$state") ports+=($port)
            port=$((port + 1))
        done
    done
    for at in 30 60; do
        sleep 30
        for i in "${!pids[@]}"; do
            echo "round $round, ${at}s: ${names[$i]} RSS $(rollup "${pids[$i]}" Rss:) KiB," \
                "anonymous $(rollup "${pids[$i]}" Anonymous:) KiB"
        done
    done
    for i in "${!pids[@]}"; do
        for _ in 1 2 3; do
            for range in 1y 7d; do
                curl -fsS -o /dev/null "http://127.0.0.1:${ports[$i]}/api/v1/history?range=$range"
            done
        done
    done
    sleep 10
    for i in "${!pids[@]}"; do
        echo "round $round, after the queries: ${names[$i]} RSS $(rollup "${pids[$i]}" Rss:) KiB," \
            "anonymous $(rollup "${pids[$i]}" Anonymous:) KiB"
    done
    kill "${pids[@]}"
    wait 2>/dev/null || true
done
