#!/usr/bin/env bash
# pistats against a real NetworkManager: boots a Debian bookworm container (systemd-nspawn,
# --network-veth) where NetworkManager manages host0, runs pistats inside it with
# `--serve while-connected --interface host0`, and checks with `nmcli device disconnect/connect`
# that the listener closes and reopens, that the stats document reports NetworkManager's view,
# and that flapping the device FLAPS times (default 100) leaves no file descriptors or threads
# behind. Needs root. Installs what it needs (idempotently); the rootfs is built once and
# cached (tests/nm/rootfs.sh). The container's root is a volatile overlay: the cache stays clean.
#
#   bash tests/nm/run.sh            # builds target/debug/pistats if PISTATS_BIN is not set
set -euo pipefail
cd "$(dirname "$0")/../.."

FLAPS=${FLAPS:-100}
PORT=8765
WAIT=${WAIT:-20}
ROOTFS=${PISTATS_NM_ROOTFS:-/var/cache/pistats-tests/nm-bookworm}
export PISTATS_NM_ROOTFS=$ROOTFS DEBIAN_FRONTEND=noninteractive

if [[ $(id -u) != 0 ]]; then
    echo "tests/nm/run.sh needs root (systemd-nspawn, network namespaces)" >&2
    exit 1
fi
command -v nsenter >/dev/null || { apt-get update -qq && apt-get install -y -qq util-linux >/dev/null; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
bash tests/nm/rootfs.sh

if [[ -z ${PISTATS_BIN:-} ]]; then
    cargo build --locked --bin pistats
    PISTATS_BIN=${CARGO_TARGET_DIR:-target}/debug/pistats
fi
PISTATS_BIN=$(realpath "$PISTATS_BIN")

machine=pstnm$$
work=$(mktemp -d /tmp/pistats-nm.XXXXXX)
nspawn_pid=
pistats_pid=
cleanup() {
    local rc=$?
    [[ -n $pistats_pid ]] && kill "$pistats_pid" 2>/dev/null || true
    if [[ -n $nspawn_pid ]]; then
        kill -TERM "$nspawn_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$nspawn_pid" 2>/dev/null || true
    fi
    if ((rc != 0)); then
        echo "---- pistats log"; cat "$work/pistats.log" 2>/dev/null || true
        echo "---- container console (tail)"; tail -n 40 "$work/console.log" 2>/dev/null || true
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# Polls "$@" every 0.1 s for up to $WAIT seconds.
until_true() {
    local deadline=$((SECONDS + WAIT))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

echo "== booting the container ($machine)"
systemd-nspawn --quiet --register=no --keep-unit -b -D "$ROOTFS" --volatile=overlay \
    -M "$machine" --network-veth --console=read-only \
    --bind-ro="$PISTATS_BIN:/usr/local/bin/pistats" >"$work/console.log" 2>&1 &
nspawn_pid=$!
# The container's PID 1: the process named systemd among systemd-nspawn's descendants (its
# direct child can still be nspawn's own intermediate process right after the start).
descendant_named() { # descendant_named ROOT_PID COMM
    ps -eo pid=,ppid=,comm= | awk -v root="$1" -v name="$2" '
        { parent[$1] = $2; comm[$1] = $3 }
        END {
            for (p in comm) {
                if (comm[p] != name) continue
                for (q = parent[p]; q > 1; q = parent[q]) if (q == root) { print p; exit }
            }
        }'
}
leader_of_nspawn() { leader=$(descendant_named "$nspawn_pid" systemd); [[ -n $leader ]]; }
until_true leader_of_nspawn || fail "container did not start"
in_ct() { nsenter -t "$leader" -a "$@"; }

# The host end of the veth pair must be up for host0 to have a carrier.
host_if=ve-$machine
until_true ip link show "$host_if" >/dev/null 2>&1 || fail "no $host_if on the host"
ip link set "$host_if" up
ip addr add 10.213.7.1/24 dev "$host_if"

nm_state() { in_ct nmcli -t -g GENERAL.STATE device show host0 2>/dev/null | cut -d' ' -f1; }
activated() { [[ $(nm_state) == 100 ]]; }
until_true activated || fail "NetworkManager did not activate host0 (state $(nm_state))"
echo "NetworkManager: host0 activated"

echo "== pistats --serve while-connected --interface host0"
in_ct env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin NO_COLOR=1 \
    /usr/local/bin/pistats --config /dev/null --serve while-connected --interface host0 \
    --host 127.0.0.1 --port "$PORT" >"$work/pistats.log" 2>&1 &
nsenter_pid=$!
# The daemon's host PID: nsenter forks (twice, to enter the PID namespace) before exec.
pistats_of_nsenter() {
    pistats_pid=$(descendant_named "$nsenter_pid" pistats)
    [[ -n $pistats_pid ]]
}
until_true pistats_of_nsenter || fail "pistats did not start"

opened() { grep -v 'stopped listening' "$work/pistats.log" | grep -c "listening on 127.0.0.1:$PORT" || true; }
closed() { grep -c "stopped listening on 127.0.0.1:$PORT" "$work/pistats.log" || true; }
events_are() { [[ $(opened) == "$1" && $(closed) == "$2" ]]; }
expect_events() {
    until_true events_are "$1" "$2" ||
        fail "expected $1 openings and $2 closings, saw $(opened) and $(closed)"
}
listening() { in_ct ss -Hltn "sport = :$PORT" | grep -q LISTEN; }
not_listening() { ! listening; }
api() { nsenter -t "$leader" -n curl -sf --max-time 5 "http://127.0.0.1:$PORT$1"; }

expect_events 1 0
grep -q "following host0 through NetworkManager" "$work/pistats.log" ||
    fail "pistats does not say it follows NetworkManager"
doc=$(api /api/v1/stats) || fail "no stats document"
grep -q '"connectivity":{"source":"networkmanager","interface":"host0","state":"activated","connected":true,"addresses":\["10.213.7.2/24"' <<<"$doc" ||
    fail "connectivity in the document: $(grep -o '"connectivity":{[^}]*}' <<<"$doc")"
in_ct pistats --config /dev/null --interface host0 network >"$work/network.out" ||
    fail "pistats network exits non-zero while connected: $(cat "$work/network.out")"
grep -q networkmanager "$work/network.out" || fail "pistats network: $(cat "$work/network.out")"
echo "ok: listening while activated; document and 'pistats network' report NetworkManager"

in_ct nmcli device disconnect host0 >/dev/null
expect_events 1 1
until_true not_listening || fail "port $PORT still open"
if in_ct pistats --config /dev/null --interface host0 network >"$work/network.out"; then
    fail "pistats network exits 0 while disconnected: $(cat "$work/network.out")"
fi
grep -q disconnected "$work/network.out" || fail "pistats network: $(cat "$work/network.out")"
echo "ok: nmcli device disconnect closed the listener"

in_ct nmcli device connect host0 >/dev/null
expect_events 2 1
listening || fail "port $PORT not open after reconnect"
api /healthz >/dev/null || fail "/healthz after reconnect"
echo "ok: nmcli device connect reopened the listener"

# Sockets, pipes and event fds: what a listener or the watcher would leak. (Files are left
# out: the stats collector keeps /proc/PID/stat open for each process, which varies.)
fds() {
    local n=0 fd
    for fd in /proc/"$pistats_pid"/fd/*; do
        case $(readlink "$fd") in socket:* | pipe:* | anon_inode:*) n=$((n + 1)) ;; esac
    done
    echo $n
}
# Sockets also come and go within a tick (the collector's netlink queries, a closing probe):
# the steady state is the fewest seen over half a second.
settled_fds() {
    local least=1000000 n _
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        n=$(fds)
        ((n < least)) && least=$n
        sleep 0.05
    done
    echo "$least"
}
threads() { ls "/proc/$pistats_pid/task" | wc -l; }
fds_before=$(settled_fds)
threads_before=$(threads)
started=$SECONDS
for ((i = 0; i < FLAPS; i++)); do
    in_ct nmcli device disconnect host0 >/dev/null
    expect_events $((2 + i)) $((2 + i))
    in_ct nmcli device connect host0 >/dev/null
    expect_events $((3 + i)) $((2 + i))
done
api /healthz >/dev/null || fail "/healthz after flapping"
fds_after=$(settled_fds)
threads_after=$(threads)
echo "flapped $FLAPS times in $((SECONDS - started)) s: fds $fds_before -> $fds_after, threads $threads_before -> $threads_after"
((fds_after <= fds_before)) || fail "file descriptors leaked: $fds_before -> $fds_after"
# The runtime's blocking pool may keep a spare thread or two; a leak would grow with FLAPS.
((threads_after <= threads_before + 4)) || fail "threads leaked: $threads_before -> $threads_after"
if grep -E 'panicked|ERROR' "$work/pistats.log"; then
    fail "errors in the pistats log"
fi

# NetworkManager restarting: pistats follows it through the kernel meanwhile and comes back.
in_ct systemctl stop NetworkManager
until_true grep -q "following host0 through the kernel" "$work/pistats.log" ||
    fail "no kernel fallback while NetworkManager is stopped"
in_ct systemctl start NetworkManager
back_to_nm() { [[ $(grep -c 'following host0 through NetworkManager' "$work/pistats.log") == 2 ]]; }
until_true back_to_nm ||
    fail "pistats did not go back to NetworkManager after its restart"
in_ct nmcli device disconnect host0 >/dev/null
until_true not_listening ||
    fail "listener still open after disconnect with the restarted NetworkManager"
echo "ok: NetworkManager restart followed (kernel meanwhile, then NetworkManager again)"

echo "PASS: real NetworkManager (flaps: $FLAPS)"
