#!/usr/bin/env bash
# pistats against a real NetworkManager: boots a Debian bookworm container (systemd-nspawn,
# --network-veth) where NetworkManager manages host0, runs pistats inside it with
# `--serve while-connected --interface host0`, and checks with `nmcli device disconnect/connect`
# that the listener closes and reopens, that the stats document reports NetworkManager's view,
# and that flapping the device FLAPS times (default 100) leaves no file descriptors or threads
# behind. Then it installs the .deb with apt in the same container and checks the product as
# shipped: the service, running as its system user under the packaged unit, reaches
# NetworkManager over the system bus (journal, status line, `pistats network`, the document)
# and its listener follows the device. Needs root. Installs what it needs (idempotently); the
# rootfs is built once and cached (tests/nm/rootfs.sh). The container's root is a volatile
# overlay: the cache stays clean.
#
#   bash tests/nm/run.sh     # builds target/debug/pistats if PISTATS_BIN is not set, and the
#                            # host architecture's package (scripts/build-debs.sh) if PISTATS_DEB
#                            # is not set
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
if [[ -z ${PISTATS_DEB:-} ]]; then
    bash scripts/build-debs.sh "$(dpkg --print-architecture)"
    PISTATS_DEB=$(ls -t "${CARGO_TARGET_DIR:-target}"/debian/pistats_*_"$(dpkg --print-architecture)".deb | head -1)
fi
PISTATS_DEB=$(realpath "$PISTATS_DEB")

machine=pstnm$$
work=$(mktemp -d /tmp/pistats-nm.XXXXXX)
nspawn_pid=
pistats_pid=
cleanup() {
    local rc=$?
    [[ -n $pistats_pid ]] && kill "$pistats_pid" 2>/dev/null || true
    # The service's side while the container still runs.
    if ((rc != 0)) && [[ -n ${leader:-} ]] && in_ct systemctl cat pistats.service >/dev/null 2>&1; then
        echo "---- systemctl status pistats"
        in_ct systemctl status --no-pager -l pistats.service 2>&1 | tail -n 20 || true
        echo "---- journalctl -u pistats"
        in_ct journalctl -u pistats.service --no-pager -o short-monotonic 2>&1 | tail -n 40 || true
    fi
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
    --bind-ro="$PISTATS_BIN:/usr/local/bin/pistats" --bind-ro="$PISTATS_DEB:/root/pistats.deb" \
    >"$work/console.log" 2>&1 &
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

kill "$pistats_pid"
gone() { ! kill -0 "$pistats_pid" 2>/dev/null; }
until_true gone || fail "pistats did not stop on SIGTERM"
wait "$nsenter_pid" 2>/dev/null || true
pistats_pid=

# Boot, where the state moves fastest: pistats starts with host0 down and NetworkManager
# activates it 0–3 s later, 20 times. The listener must open every time (a state change that
# lands while the watcher reads the device must not be lost). How long after `nmcli` returned
# it opened is reported, not asserted: the machine may be busy.
echo "== 20 starts, host0 activated 0-3 s after each"
worst=0
for ((i = 1; i <= 20; i++)); do
    in_ct env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin NO_COLOR=1 \
        /usr/local/bin/pistats --config /dev/null --serve while-connected --interface host0 \
        --host 127.0.0.1 --port "$PORT" >"$work/race.log" 2>&1 &
    nsenter_pid=$!
    until_true pistats_of_nsenter || fail "pistats did not start (start $i)"
    delay_ms=$((RANDOM % 3001))
    sleep "$((delay_ms / 1000)).$(printf '%03d' $((delay_ms % 1000)))"
    in_ct nmcli device connect host0 >/dev/null
    activated_at=$(date +%s%N)
    until_true listening ||
        fail "start $i: no listener after host0 was activated ${delay_ms} ms after the start: $(tail -n 5 "$work/race.log")"
    took=$((($(date +%s%N) - activated_at) / 1000000))
    ((took > worst)) && worst=$took
    kill "$pistats_pid"
    until_true gone || fail "pistats did not stop on SIGTERM (start $i)"
    wait "$nsenter_pid" 2>/dev/null || true
    pistats_pid=
    in_ct nmcli device disconnect host0 >/dev/null
done
echo "ok: the listener opened after each of 20 starts, at most $worst ms after nmcli returned"

echo "== the package under its shipped unit ($(basename "$PISTATS_DEB"))"

in_ct nmcli device connect host0 >/dev/null
until_true activated || fail "host0 not activated again (state $(nm_state))"
# The packaged configuration watches wlan0: point it at host0 the way an administrator would.
in_ct mkdir -p /etc/systemd/system/pistats.service.d
printf '[Service]\nEnvironment=PISTATS_INTERFACE=host0\n' |
    in_ct tee /etc/systemd/system/pistats.service.d/interface.conf >/dev/null
in_ct env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends /root/pistats.deb >"$work/apt.log" 2>&1 ||
    fail "apt install: $(tail -n 20 "$work/apt.log")"
unit() { in_ct systemctl show -p "$1" --value pistats.service; }
unit_active() { [[ $(unit ActiveState)/$(unit SubState) == active/running ]]; }
until_true unit_active || fail "the service is $(unit ActiveState)/$(unit SubState)"
[[ $(in_ct stat -c %U "/proc/$(unit MainPID)") == pistats ]] ||
    fail "the service runs as $(in_ct stat -c %U "/proc/$(unit MainPID)"), not pistats"
journal_has() { in_ct journalctl -u pistats.service --no-pager -o cat | grep -qF "$1"; }
until_true journal_has "network: following host0 through NetworkManager" ||
    fail "the service does not follow host0 through NetworkManager"
if journal_has "system bus unavailable"; then
    fail "the service could not reach the system bus"
fi
status_is() { [[ $(unit StatusText) == "$1"* ]]; }
until_true status_is "serving on 0.0.0.0:$PORT" || fail "status line: $(unit StatusText)"
status_line() { in_ct env SYSTEMD_COLORS=0 systemctl status --no-pager pistats.service | grep -m1 'Status:'; }
echo "systemctl status: $(status_line)"
# pistats network, as root and as the service's user (which the system bus must accept).
for who in root pistats; do
    out=$(in_ct runuser -u "$who" -- pistats --interface host0 network) || fail "pistats network as $who: $out"
    grep -q '^source: *networkmanager' <<<"$out" || fail "pistats network as $who: $out"
    grep -q '^state: *activated' <<<"$out" || fail "pistats network as $who: $out"
done
doc=$(api /api/v1/stats) || fail "no stats document from the service"
grep -q '"connectivity":{"source":"networkmanager","interface":"host0","state":"activated","connected":true' <<<"$doc" ||
    fail "connectivity from the service: $(grep -o '"connectivity":{[^}]*}' <<<"$doc")"
echo "ok: the packaged service, as user pistats, follows host0 through NetworkManager"

# NetworkManager's view, not the kernel's: the link keeps its carrier on disconnect.
in_ct nmcli device disconnect host0 >/dev/null
until_true status_is "waiting for host0 (disconnected)" || fail "status line: $(unit StatusText)"
until_true not_listening || fail "the service still listens after nmcli device disconnect"
echo "systemctl status: $(status_line)"
in_ct nmcli device connect host0 >/dev/null
until_true status_is "serving on 0.0.0.0:$PORT" || fail "status line: $(unit StatusText)"
curl -sf --max-time 5 -o /dev/null "http://10.213.7.2:$PORT/healthz" ||
    fail "the service does not answer on host0's address after nmcli device connect"
journal_has "network: host0 is disconnected (not connected)" ||
    fail "the journal does not show NetworkManager's disconnect"
echo "ok: nmcli device disconnect/connect closed and reopened the service's listener"

echo "PASS: real NetworkManager (flaps: $FLAPS), and the package under its unit"
