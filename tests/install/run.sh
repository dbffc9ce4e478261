#!/usr/bin/env bash
# Install test in real systemd: boots a Debian container per architecture (bookworm unless
# PISTATS_TEST_RELEASE names another release, e.g. bullseye or trixie) with
# systemd-nspawn (private veth network), installs the pistats .deb with apt and checks the
# service as an administrator would see it: enabled and started, Type=notify readiness, journal
# lines, the dashboard, API and WebSocket answering on the container's address, restart,
# kill -9 recovery, a year of history restored (its older blocks in an unnamed file in the
# state directory, served whole, saved again at a restart), the system bus started after the
# service (followed once its socket appears), a broken configuration (exit 78, no restart loop), the listener following
# the interface, HTTPS with the key as a systemd credential, upgrade, remove and purge (the
# system user pistats created on install, removed on purge);
# plus `systemd-analyze security` (exposure <= 2.0) and `systemd-analyze verify`.
#
# Usage: tests/install/run.sh [amd64] [arm64] [armhf]      (default: amd64)
#   Debs are taken from $PISTATS_DEB_DIR (default: $CARGO_TARGET_DIR/debian or target/debian);
#   build them first with scripts/build-debs.sh. Foreign architectures run under
#   qemu-user-static. Run as root on Debian 12. The root file systems are made with
#   debootstrap once and cached in $PISTATS_TEST_CACHE (default /var/cache/pistats-tests).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

ARCHES=("$@")
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(amd64)
CACHE=${PISTATS_TEST_CACHE:-/var/cache/pistats-tests}
DEB_DIR=${PISTATS_DEB_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/debian}
MIRROR=${PISTATS_TEST_MIRROR:-http://deb.debian.org/debian}
RELEASE=${PISTATS_TEST_RELEASE:-bookworm}
# Container names and the /24 their point-to-point links come from: other values let two runs
# (say, of two releases) go on side by side.
MACHINE_PREFIX=${PISTATS_TEST_MACHINE:-pst}
NET24=${PISTATS_TEST_NET:-10.231.77}
# Bump when the root file system recipe below changes, so cached ones are rebuilt.
ROOTFS_VERSION=1
ROOTFS_PACKAGES=systemd,systemd-sysv,dbus,iproute2,man-db
PORT=8765
HOST_ARCH=$(dpkg --print-architecture)
export DEBIAN_FRONTEND=noninteractive

log() { printf '%s [%s] %s\n' "$(date +%T)" "${ARCH:-setup}" "$*"; }
die() {
    log "FAIL: $*"
    exit 1
}
phase_start() {
    PHASE=$1
    PHASE_T0=$SECONDS
    log "== $PHASE"
}
phase_end() {
    local took=$((SECONDS - PHASE_T0))
    TIMINGS+=("${ARCH:-setup} ${PHASE}: ${took}s")
}
TIMINGS=()

host_packages() {
    local pkgs=(debootstrap systemd-container curl python3 iproute2 openssl)
    local arch
    for arch in "${ARCHES[@]}"; do
        [ "$arch" = "$HOST_ARCH" ] || pkgs+=(qemu-user-static binfmt-support)
    done
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        # A mirror caught mid-sync fails one index; what is needed usually still installs.
        apt-get update -qq -o Acquire::Retries=3 || echo "apt-get update reported errors; trying anyway" >&2
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# binfmt_misc with qemu's interpreters (F flag: usable inside the container's root).
enable_binfmt() {
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    update-binfmts --enable >/dev/null 2>&1 || true
    local f
    for f in qemu-aarch64 qemu-arm; do
        [ -e "/proc/sys/fs/binfmt_misc/$f" ] || update-binfmts --import "$f" >/dev/null 2>&1 || true
        [ -e "/proc/sys/fs/binfmt_misc/$f" ] || die "binfmt handler $f is not registered"
    done
}

# A pristine $RELEASE root file system for $ARCH, made once and reused.
rootfs() {
    local dir=$CACHE/$RELEASE-$ARCH
    if [ "$(cat "$dir/.pistats-rootfs" 2>/dev/null)" = "$ROOTFS_VERSION" ]; then
        log "cached root file system $dir"
        return
    fi
    rm -rf "$dir" "$dir.tmp"
    mkdir -p "$CACHE"
    log "debootstrap $RELEASE $ARCH into $dir"
    debootstrap --variant=minbase --arch="$ARCH" --include="$ROOTFS_PACKAGES" \
        "$RELEASE" "$dir.tmp" "$MIRROR" >"$CACHE/debootstrap-$ARCH.log" 2>&1 ||
        {
            tail -20 "$CACHE/debootstrap-$ARCH.log"
            die "debootstrap failed"
        }
    echo "pistats-test" >"$dir.tmp/etc/hostname"
    # Keep the boot quiet and quick: nothing in the container needs these.
    ln -sf /dev/null "$dir.tmp/etc/systemd/system/systemd-timesyncd.service"
    ln -sf /dev/null "$dir.tmp/etc/systemd/system/apt-daily.timer"
    ln -sf /dev/null "$dir.tmp/etc/systemd/system/apt-daily-upgrade.timer"
    if [ "$ARCH" != "$HOST_ARCH" ]; then
        # Under qemu-user, setting up systemd credentials fails (status=243/CREDENTIALS):
        # clear LoadCredential= for the units that ask for any.
        local unit name
        for unit in "$dir.tmp"/lib/systemd/system/*.service; do
            grep -q '^LoadCredential=' "$unit" || continue
            name=$(basename "$unit")
            mkdir -p "$dir.tmp/etc/systemd/system/$name.d"
            printf '[Service]\nLoadCredential=\n' >"$dir.tmp/etc/systemd/system/$name.d/no-credentials.conf"
        done
    fi
    echo "$ROOTFS_VERSION" >"$dir.tmp/.pistats-rootfs"
    mv "$dir.tmp" "$dir"
}

# Runs a command inside the booted container, with a clean environment.
in_ct() {
    nsenter -t "$CT_PID" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        SYSTEMD_COLORS=0 SYSTEMD_PAGER= "$@"
}
prop() { in_ct systemctl show -p "$1" --value pistats.service; }

# The container's PID 1: the process named systemd among systemd-nspawn's descendants.
find_init() {
    local pid=$1 child
    for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        if [ "$(cat /proc/"$child"/comm 2>/dev/null)" = systemd ]; then
            echo "$child"
            return 0
        fi
        find_init "$child" && return 0
    done
    return 1
}

boot() {
    local work=$1
    MACHINE=$MACHINE_PREFIX-$ARCH
    VETH=ve-$MACHINE
    systemd-nspawn --register=no --keep-unit -b -D "$work" -M "$MACHINE" --network-veth \
        --console=read-only >"$CACHE/console-$ARCH.log" 2>&1 &
    NSPAWN_PID=$!
    local i
    CT_PID=
    for i in $(seq 1 300); do
        CT_PID=$(find_init "$NSPAWN_PID" || true)
        [ -n "$CT_PID" ] && break
        kill -0 "$NSPAWN_PID" 2>/dev/null || {
            cat "$CACHE/console-$ARCH.log"
            die "systemd-nspawn exited"
        }
        sleep 0.2
    done
    [ -n "$CT_PID" ] || die "container did not start"
    echo "$CT_PID" >"$CACHE/container-$ARCH.pid"
    local state=
    for i in $(seq 1 "$BOOT_TIMEOUT"); do
        state=$(in_ct systemctl is-system-running 2>/dev/null || true)
        case $state in running | degraded) break ;; esac
        sleep 1
    done
    case $state in
    running) ;;
    degraded) log "boot finished degraded: $(in_ct systemctl --failed --no-legend --plain | tr '\n' ';')" ;;
    *) die "container did not finish booting (state: $state)" ;;
    esac
    # Private point-to-point link: host end $HOST_IP, container end $CT_IP.
    ip addr replace "$HOST_IP/30" dev "$VETH"
    ip link set "$VETH" up
    in_ct ip addr replace "$CT_IP/30" dev host0
    in_ct ip link set host0 up
}

shutdown_container() {
    [ -n "${NSPAWN_PID:-}" ] || return 0
    if kill -0 "$NSPAWN_PID" 2>/dev/null; then
        # SIGTERM makes systemd-nspawn shut the container down cleanly.
        kill -TERM "$NSPAWN_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 $((SHUTDOWN_TIMEOUT * 2))); do
            kill -0 "$NSPAWN_PID" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$NSPAWN_PID" 2>/dev/null; then
            log "container did not stop within ${SHUTDOWN_TIMEOUT}s: killing it"
            # Killing the container's PID 1 ends its whole PID namespace.
            [ -z "${CT_PID:-}" ] || kill -KILL "$CT_PID" 2>/dev/null || true
            sleep 1
            kill -KILL "$NSPAWN_PID" 2>/dev/null || true
        fi
    fi
    wait "$NSPAWN_PID" 2>/dev/null || true
    rm -f "$CACHE/container-$ARCH.pid"
    NSPAWN_PID=
    CT_PID=
}

# A container left behind by an interrupted run (its PID 1 recorded by that run) is stopped.
kill_stale_container() {
    local pidfile=$CACHE/container-$ARCH.pid pid
    pid=$(cat "$pidfile" 2>/dev/null) || return 0
    if [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = systemd ] &&
        grep -qsE '^NSpid:.*[[:space:]]1$' /proc/"$pid"/status; then
        log "stopping a container left by an earlier run (PID $pid)"
        kill -KILL "$pid" || true
        sleep 1
    fi
    rm -f "$pidfile"
}

on_exit() {
    local rc=$?
    if [ $rc -ne 0 ] && [ -n "${CT_PID:-}" ] && [ -n "${NSPAWN_PID:-}" ]; then
        log "--- systemctl status pistats"
        in_ct systemctl status --no-pager -l pistats.service 2>&1 | tail -25 || true
        log "--- journalctl -u pistats"
        in_ct journalctl -u pistats.service --no-pager -o short-monotonic 2>&1 | tail -40 || true
    fi
    shutdown_container
    [ -z "${YEAR_DIR:-}" ] || rm -rf "$YEAR_DIR"
    exit $rc
}
trap on_exit EXIT

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local timeout=$1 what=$2 t0=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ $((SECONDS - t0)) -lt "$timeout" ] || die "timed out after ${timeout}s waiting for $what"
        sleep 0.5
    done
}
journal_has() { in_ct journalctl -u pistats.service -b --no-pager -o cat | grep -qF "$1"; }
journal_count() { in_ct journalctl -u pistats.service -b --no-pager -o cat | grep -cF "$1" || true; }
service_running() { [ "$(prop ActiveState)/$(prop SubState)" = active/running ]; }
http_ok() { curl -fsS --max-time 5 -o /dev/null "http://$CT_IP:$PORT/healthz"; }

check_serving() { # the dashboard, API, metrics and feed over the container's address
    local base=http://$CT_IP:$PORT
    wait_for 30 "the listener on $CT_IP:$PORT" http_ok
    local page
    page=$(curl -fsS --max-time 5 "$base/") || die "no dashboard page"
    grep -q '<title>' <<<"$page" || die "dashboard page without a title"
    curl -fsS --max-time 5 "$base/app.js" >/dev/null || die "dashboard script missing"
    curl -fsS --max-time 5 "$base/healthz" | python3 -c \
        'import json,sys; d=json.load(sys.stdin); assert d["status"]=="ok", d' ||
        die "/healthz not ok"
    curl -fsS --max-time 5 "$base/api/v1/stats" | python3 -c \
        'import json,sys; d=json.load(sys.stdin); assert d["cpu"]["count_logical"]>=1 and d["memory"]["total_gb"]>0, d' ||
        die "/api/v1/stats is not a stats document"
    page=$(curl -fsS --max-time 5 "$base/metrics") || die "no /metrics"
    grep -q '^pistats_uptime_seconds ' <<<"$page" || die "/metrics incomplete"
    timeout 30 python3 "$REPO/tests/install/ws-check.py" "$CT_IP" "$PORT" / || die "WebSocket / failed"
    timeout 30 python3 "$REPO/tests/install/ws-check.py" "$CT_IP" "$PORT" /ws || die "WebSocket /ws failed"
    timeout 30 python3 "$REPO/tests/install/ws-check.py" "$CT_IP" "$PORT" / --deflate ||
        die "WebSocket / with permessage-deflate failed"
}

# Each disk's bytes written today, as "DEVICE BYTES" lines, with the container's local date
# first: the ledger restarts at local midnight, so values compare only within one date.
written_today() {
    in_ct date +%F
    curl -fsS --max-time 5 "http://$CT_IP:$PORT/api/v1/stats" | python3 -c '
import json, sys
devices = json.load(sys.stdin)["disk"]["devices"]
assert devices, "no disk devices"
for name, device in sorted(devices.items()):
    today = device["written_today_bytes"]
    assert isinstance(today, int) and today >= 0, (name, device)
    print(name, today)
'
}

test_arch() {
    ARCH=$1
    local deb
    deb=$(find "$DEB_DIR" -maxdepth 1 -name "pistats_*_$ARCH.deb" -printf '%f\n' | sort -V | tail -1)
    [ -n "$deb" ] || die "no pistats_*_$ARCH.deb in $DEB_DIR (run scripts/build-debs.sh)"
    local t_arch=$SECONDS

    phase_start rootfs
    rootfs
    phase_end

    phase_start boot
    local work=$CACHE/run-$ARCH
    kill_stale_container
    rm -rf "$work"
    cp -a --reflink=auto "$CACHE/$RELEASE-$ARCH" "$work"
    # The packaged configuration watches wlan0, which a container has not: point the service at
    # the container's veth with a drop-in, the way an administrator overrides a setting.
    mkdir -p "$work/etc/systemd/system/pistats.service.d"
    printf '[Service]\nEnvironment=PISTATS_INTERFACE=host0\n' \
        >"$work/etc/systemd/system/pistats.service.d/interface.conf"
    if [ "$ARCH" != "$HOST_ARCH" ]; then
        # qemu-user cannot create user namespaces (status=217/USER); a Pi's kernel can.
        printf '[Service]\nPrivateUsers=no\n' >"$work/etc/systemd/system/pistats.service.d/qemu.conf"
    fi
    cp "$DEB_DIR/$deb" "$work/root/"
    boot "$work"
    phase_end

    phase_start install
    in_ct apt-get install -y --no-install-recommends "/root/$deb" >"$CACHE/apt-$ARCH.log" 2>&1 ||
        {
            cat "$CACHE/apt-$ARCH.log"
            die "apt install failed"
        }
    [ "$(in_ct systemctl is-enabled pistats.service)" = enabled ] || die "unit not enabled on install"
    wait_for "$SERVICE_TIMEOUT" "pistats to become active" service_running
    [ "$(prop Type)" = notify ] || die "Type is $(prop Type)"
    # With Type=notify the unit is only active once READY=1 arrived; STATUS= says what it does.
    local status
    status=$(prop StatusText)
    log "StatusText: $status"
    [[ $status == "serving on 0.0.0.0:$PORT"* ]] || die "unexpected StatusText: $status"
    [ "$(prop WatchdogUSec)" != 0 ] || die "watchdog not enabled"
    local journal
    journal=$(in_ct journalctl -u pistats.service -b --no-pager -o cat)
    grep -q "pistats .* starting: .*interface host0.*config /etc/pistats/config.toml, dashboard /usr/share/pistats/assets" \
        <<<"$journal" || die "journal lacks the startup line: $journal"
    grep -q "listening on 0.0.0.0:$PORT" <<<"$journal" || die "journal lacks 'listening on'"
    [[ $(in_ct pistats --version) == "pistats "* ]] || die "pistats --version"
    # A NetworkManager on a dhcpcd Pi would take over wlan0: suggested, never pulled in. The
    # CA certificates for HTTPS notifications are recommended (installed here without
    # recommends: the container has no mirror to fetch them from, and pistats runs without).
    [ "$(dpkg-deb -f "$DEB_DIR/$deb" Recommends)" = ca-certificates ] ||
        die "Recommends: $(dpkg-deb -f "$DEB_DIR/$deb" Recommends), expected ca-certificates"
    [[ $(dpkg-deb -f "$DEB_DIR/$deb" Suggests) == *network-manager* ]] || die "network-manager not suggested"
    # The static system user the package creates, which the service runs as, with its state
    # directory; the system bus accepts it (it refuses DynamicUser= UIDs on bookworm).
    local uid
    uid=$(in_ct id -u pistats) || die "no user pistats after install"
    [ "$uid" -lt 1000 ] || die "pistats is not a system user (uid $uid)"
    in_ct getent group pistats >/dev/null || die "no group pistats after install"
    [ "$(in_ct stat -c %u "/proc/$(prop MainPID)")" = "$uid" ] || die "the service does not run as pistats"
    [ "$(in_ct stat -c %U:%a /var/lib/pistats)" = pistats:750 ] ||
        die "state directory: $(in_ct stat -c %U:%a /var/lib/pistats 2>&1)"
    # The configuration may hold tokens: root and the group pistats only. The service (which
    # runs above, with the file's settings) reads it; another account does not.
    [ "$(in_ct stat -c %U:%G:%a /etc/pistats/config.toml)" = root:pistats:640 ] ||
        die "config file: $(in_ct stat -c %U:%G:%a /etc/pistats/config.toml 2>&1)"
    in_ct setpriv --reuid=pistats --regid=pistats --clear-groups \
        pistats check-config /etc/pistats/config.toml >/dev/null ||
        die "the user pistats cannot read its configuration"
    in_ct setpriv --reuid=nobody --regid=nogroup --clear-groups cat /etc/pistats/config.toml \
        >/dev/null 2>&1 && die "the configuration is readable by other accounts"
    # No NetworkManager in this container: the kernel, after asking the bus.
    wait_for 30 "the network source in the journal" journal_has "network: following host0 through the kernel"
    journal_has "system bus unavailable" && die "the service cannot reach the system bus"
    phase_end

    phase_start serve
    check_serving
    # The sandbox keeps /proc readable: other users' processes (PID 1 is root's) are reported.
    local nproc
    nproc=$(in_ct sh -c 'ls -d /proc/[0-9]* | wc -l')
    curl -fsS --max-time 5 "http://$CT_IP:$PORT/api/v1/stats" | python3 -c '
import json, sys
d = json.load(sys.stdin)["processes"]
n = int(sys.argv[1])
assert abs(d["total_count"] - n) <= 3, (d["total_count"], n)
pids = {p["pid"]: p["name"] for p in d["top_cpu_usage"]}
assert pids.get(1) == "systemd", pids
' "$nproc" || die "the service does not see all processes"
    phase_end

    phase_start journal
    # The daemon logs through the journal's native protocol: priorities as syslog's, and
    # fields (CLIENT_ADDR, INTERFACE, ...) that journalctl can match.
    local code entries
    code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -H 'Host: evil.example' "http://$CT_IP:$PORT/") || true
    [ "$code" = 421 ] || die "a request for a foreign host name got $code, expected 421"
    wait_for 10 "the refusal in the journal" journal_has 'refused a request for host "evil.example"'
    entries=$(in_ct journalctl -u pistats.service -b --no-pager -o json)
    python3 -c '
import json, sys
entries = [json.loads(l) for l in sys.stdin if l.strip()]
own = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "pistats"]
assert own, "no entries from pistats"
bad = [e["MESSAGE"] for e in own if e.get("_TRANSPORT") != "journal"]
assert not bad, ("not sent through the native protocol", bad)
start = [e for e in own if "listening on" in e["MESSAGE"]]
assert start and all(e["PRIORITY"] == "6" for e in start), start
refused = [e for e in own if "evil.example" in e["MESSAGE"]]
assert refused and all(e["PRIORITY"] == "4" for e in refused), refused
assert all(e.get("CLIENT_ADDR") == sys.argv[1] for e in refused), refused
' "$HOST_IP" <<<"$entries" || die "journal entries are not as expected"
    entries=$(in_ct journalctl -u pistats.service -b --no-pager -p warning -o json)
    python3 -c '
import json, sys
entries = [json.loads(l) for l in sys.stdin if l.strip()]
assert any("evil.example" in e["MESSAGE"] for e in entries), "the warning is missing"
assert all(int(e["PRIORITY"]) <= 4 for e in entries), [e["MESSAGE"] for e in entries if int(e["PRIORITY"]) > 4]
' <<<"$entries" || die "journalctl -p warning: $entries"
    in_ct journalctl -u pistats.service -b --no-pager -p warning -o cat | grep -q "listening on" &&
        die "journalctl -p warning shows info lines"
    in_ct journalctl -u pistats.service -b --no-pager -o cat "CLIENT_ADDR=$HOST_IP" |
        grep -qF 'refused a request for host "evil.example"' || die "CLIENT_ADDR=$HOST_IP finds no line"
    in_ct journalctl -u pistats.service -b --no-pager -o cat INTERFACE=host0 |
        grep -qF "network: following host0 through the kernel" || die "INTERFACE=host0 finds no line"
    log "journal: $(in_ct journalctl -u pistats.service -b --no-pager -o cat "CLIENT_ADDR=$HOST_IP" | tail -1)"
    phase_end

    phase_start analyze
    local security exposure
    security=$(in_ct systemd-analyze security --no-pager pistats.service)
    exposure=$(sed -n 's/.*Overall exposure level for pistats.service: \([0-9.]*\).*/\1/p' <<<"$security")
    log "systemd-analyze security: exposure $exposure"
    [ -n "$exposure" ] || die "no exposure level in: $security"
    python3 -c "import sys; sys.exit(0 if float('$exposure') <= 2.0 else 1)" ||
        die "exposure $exposure > 2.0: $(grep '✗' <<<"$security")"
    local verify
    verify=$(in_ct systemd-analyze verify /usr/lib/systemd/system/pistats.service 2>&1) ||
        die "systemd-analyze verify failed: $verify"
    [ -z "$verify" ] || die "systemd-analyze verify is not clean: $verify"
    phase_end

    phase_start restart
    local pid restarts
    pid=$(prop MainPID)
    restarts=$(prop NRestarts)
    local written_before written_after
    written_before=$(written_today) || die "no bytes written today before the restart"
    in_ct systemctl restart pistats.service
    service_running || die "not running after systemctl restart"
    [ "$(prop MainPID)" != "$pid" ] || die "MainPID unchanged after restart"
    check_serving
    # The history and events of the run before come back from /var/lib/pistats: its start
    # and its clean stop are in the timeline.
    wait_for 30 "the restored history in the journal" journal_has "history: restored "
    journal=$(in_ct journalctl -u pistats.service -b --no-pager -o cat)
    grep -q "history: restored [0-9]* 1-minute and [0-9]* 15-minute points and [1-9][0-9]* events from /var/lib/pistats/" \
        <<<"$journal" || die "journal lacks the restored history: $(grep 'history:' <<<"$journal")"
    curl -fsS --max-time 5 "http://$CT_IP:$PORT/api/v1/events?limit=1000" | python3 -c '
import json, sys
kinds = [e["kind"] for e in json.load(sys.stdin)["events"]]
assert kinds.count("started") >= 2 and "stopped" in kinds, kinds
assert "unclean_stop" not in kinds, kinds
' || die "the events of the run before the restart are not restored"
    # The per-disk ledger of bytes written today comes back with the history: no device
    # starts today again from zero after a restart.
    written_after=$(written_today) || die "no bytes written today after the restart"
    if [ "$(head -n1 <<<"$written_before")" = "$(head -n1 <<<"$written_after")" ]; then
        python3 - "$written_before" "$written_after" <<'PY' || die "bytes written today lost in the restart"
import sys
before, after = ({l.split()[0]: int(l.split()[1]) for l in t.splitlines()[1:]} for t in sys.argv[1:])
for name, value in before.items():
    assert after.get(name, -1) >= value, (name, value, after)
print("bytes written today kept across the restart:", after)
PY
    fi
    # kill -9: the watchdog-free path, Restart=on-failure must bring it back.
    pid=$(prop MainPID)
    restarts=$(prop NRestarts)
    in_ct sh -c "kill -9 $pid"
    wait_for 30 "an automatic restart after kill -9" \
        bash -c "[ \"\$(nsenter -t $CT_PID -a systemctl show -p NRestarts --value pistats)\" -gt $restarts ]"
    wait_for "$SERVICE_TIMEOUT" "pistats to run again after kill -9" service_running
    [ "$(prop MainPID)" != "$pid" ] || die "MainPID unchanged after kill -9"
    journal=$(in_ct journalctl -u pistats.service -b --no-pager -o cat)
    grep -q "status=9/KILL" <<<"$journal" || die "journal does not show the kill"
    check_serving
    # The packaged unclean-restart rule fires on the first tick after such a restart (and
    # clears on the next: a restart is a moment): in the events timeline and the alerts' own.
    unclean_alert() {
        curl -fsS --max-time 5 "http://$CT_IP:$PORT/api/v1/events?limit=1000" | python3 -c '
import json, sys
events = json.load(sys.stdin)["events"]
assert any(e["kind"] == "unclean_stop" for e in events), events
assert any(e["kind"] == "alert_firing" and e["values"].get("alert") == "unclean-restart" for e in events), events
' && curl -fsS --max-time 5 "http://$CT_IP:$PORT/api/v1/alerts" | python3 -c '
import json, sys
d = json.load(sys.stdin)
rules = {r["name"]: r for r in d["alerts"]}
assert rules["unclean-restart"]["metric"] == "unclean_restart", rules
assert any(e["kind"] == "alert_firing" and e["values"].get("alert") == "unclean-restart" for e in d["events"]), d["events"]
'
    }
    wait_for 15 "the unclean-restart alert after kill -9" unclean_alert
    journal_has "unclean-restart firing" || die "journal lacks the unclean-restart alert"
    phase_end

    phase_start year
    # A year of history restored under the shipped unit and its sandbox: the aggregate tiers'
    # older blocks go to an unnamed file in /var/lib/pistats (O_TMPFILE under
    # ProtectSystem=strict), not to RAM, and the year is served whole from it. The 1-minute tier
    # is kept 6 days here, so the restore drops the oldest day's blocks and punches them out
    # of the file (fallocate, through the unit's SystemCallFilter=).
    in_ct systemctl stop pistats.service
    printf '[Service]\nEnvironment=PISTATS_HISTORY_MINUTE=6d\n' |
        in_ct tee /etc/systemd/system/pistats.service.d/year.conf >/dev/null
    in_ct systemctl daemon-reload
    cp "$YEAR_DIR/history.bin" "$work/root/year.bin"
    # A journal that does not replay: the clean stop below must write a whole snapshot, reading
    # every block back from the file.
    head -c 64 /dev/urandom >"$work/root/year.journal"
    in_ct sh -c 'install -o pistats -g pistats -m 600 /root/year.bin /var/lib/pistats/history.bin &&
        install -o pistats -g pistats -m 600 /root/year.journal /var/lib/pistats/history.journal'
    in_ct systemctl start pistats.service
    service_running || die "not running with a year of history"
    wait_for "$SERVICE_TIMEOUT" "the year restored" journal_has "KiB of older points kept in an unnamed file"
    journal=$(in_ct journalctl -u pistats.service -b --no-pager -o cat)
    # 35,040 quarters, one fewer when the year's first sample is not on a quarter's edge.
    grep -qE "history: restored 8640 1-minute and 350(39|40) 15-minute points" <<<"$journal" ||
        die "the year is not restored whole: $(grep 'history:' <<<"$journal" | tail -3)"
    grep -q "cannot keep older rows in a file" <<<"$journal" && die "the block file could not be made"
    grep -q "cannot punch out dropped blocks" <<<"$journal" && die "dropped blocks were not punched out"
    log "$(grep 'history: restored' <<<"$journal" | tail -1)"
    pid=$(prop MainPID)
    local fd size allocated
    fd=$(in_ct sh -c "ls -l /proc/$pid/fd" |
        sed -n 's|.* \([0-9]*\) -> /var/lib/\(private/\)\{0,1\}pistats/#[0-9]* (deleted)$|\1|p' | head -1)
    [ -n "$fd" ] || die "no unnamed block file open in the state directory: $(in_ct sh -c "ls -l /proc/$pid/fd")"
    read -r size allocated < <(in_ct stat -L -c '%s %b*%B' "/proc/$pid/fd/$fd")
    allocated=$((allocated))
    log "block file: $size bytes long, $allocated allocated"
    [ "$allocated" -lt "$size" ] || die "no dropped block was punched out of the block file"
    year_served() {
        curl -fsS --max-time 10 "http://$CT_IP:$PORT/api/v1/history?range=1y&points=1500" | python3 -c '
import json, sys
points = json.load(sys.stdin)["points"]
span = points[-1]["t"] - points[0]["t"]
assert len(points) >= 1400 and span > 364 * 86400 * 1000, (len(points), span)
'
    }
    wait_for 30 "a year of points from /api/v1/history" year_served
    # The clean stop writes a snapshot from the blocks in the file; the next start restores
    # the year from it.
    in_ct systemctl restart pistats.service
    service_running || die "not running after a restart with a year of history"
    restored_twice() {
        [ "$(in_ct journalctl -u pistats.service -b --no-pager -o cat |
            grep -c 'KiB of older points kept in an unnamed file')" -ge 2 ]
    }
    wait_for "$SERVICE_TIMEOUT" "the year restored after the restart" restored_twice
    journal=$(in_ct journalctl -u pistats.service -b --no-pager -o cat)
    [ "$(grep -cE 'history: restored 8640 1-minute and 350(39|40) 15-minute points' <<<"$journal")" -ge 2 ] ||
        die "the year did not survive a restart: $(grep 'history:' <<<"$journal" | tail -3)"
    in_ct cmp -s /root/year.bin /var/lib/pistats/history.bin &&
        die "the clean stop did not write a new snapshot"
    wait_for 30 "a year of points after the restart" year_served
    in_ct rm /etc/systemd/system/pistats.service.d/year.conf /root/year.bin /root/year.journal
    in_ct systemctl daemon-reload
    in_ct systemctl restart pistats.service
    service_running || die "not running after the year phase"
    # More starts within a minute than StartLimitBurst= allows: clear the counter for the
    # phases that follow, as the upgrade phase does.
    in_ct systemctl reset-failed pistats.service
    phase_end

    phase_start pings
    # Pings under the shipped unit: every document carries one (an interval of one tick), the
    # client answers for a while and then stops, and the service closes it with 1008 once the
    # 2 s timeout has passed, for plain and compressed clients alike.
    printf '[Service]\nEnvironment=PISTATS_PING_INTERVAL=1s PISTATS_PING_TIMEOUT=2s\n' |
        in_ct tee /etc/systemd/system/pistats.service.d/pings.conf >/dev/null
    in_ct systemctl daemon-reload
    in_ct systemctl restart pistats.service
    wait_for 30 "the listener with short pings" http_ok
    local pinged
    pinged=$(timeout 40 python3 "$REPO/tests/install/ws-check.py" "$CT_IP" "$PORT" /ws --pings 2) ||
        die "pings (plain): $pinged"
    log "$pinged"
    pinged=$(timeout 40 python3 "$REPO/tests/install/ws-check.py" "$CT_IP" "$PORT" / --deflate --pings 2) ||
        die "pings (permessage-deflate): $pinged"
    log "$pinged"
    service_running || die "not running after the ping timeouts"
    in_ct rm /etc/systemd/system/pistats.service.d/pings.conf
    in_ct systemctl daemon-reload
    in_ct systemctl restart pistats.service
    service_running || die "not running after the pings phase"
    in_ct systemctl reset-failed pistats.service
    phase_end

    phase_start bus-later
    # An image without a running dbus (its socket gone), and dbus started long after pistats:
    # the service waits for the socket to appear (inotify, under the unit's sandbox) and
    # follows the bus as soon as it does, not at a retry up to 30 s later.
    local connected
    connected=$(journal_count "network: connected to the system bus")
    in_ct systemctl stop dbus.socket dbus.service
    in_ct rm -f /run/dbus/system_bus_socket
    in_ct systemctl restart pistats.service
    wait_for 30 "the missing bus in the journal" journal_has "system_bus_socket does not exist"
    # A backoff from 1 s doubling to 30 s would try at 1, 3, 7, 15, 31 and 61 s: the bus
    # starts between the last two, and the wait below is shorter than the gap.
    sleep 32
    in_ct systemctl start dbus.socket
    bus_followed() { [ "$(journal_count "network: connected to the system bus")" -gt "$connected" ]; }
    wait_for 10 "the bus followed once its socket appeared" bus_followed
    service_running || die "not running after the bus came back"
    phase_end

    phase_start broken-config
    local conf=/etc/pistats/config.toml
    in_ct cp "$conf" /root/config.toml.good
    # A typo among the top-level settings (the file ends in [[alert]] tables, so the first line).
    in_ct sed -i '1i intervall = "2s"' "$conf"
    in_ct pistats check-config >/dev/null 2>&1 && die "check-config accepted a broken file"
    in_ct systemctl restart pistats.service 2>/dev/null && die "restart with a broken config succeeded"
    # A manual start resets NRestarts; from here on it must stay put.
    restarts=$(prop NRestarts)
    # Longer than RestartSec: a restart loop would show up in NRestarts by now.
    sleep 5
    [ "$(prop ActiveState)" = failed ] || die "ActiveState $(prop ActiveState), expected failed"
    [ "$(prop ExecMainStatus)" = 78 ] || die "exit status $(prop ExecMainStatus), expected 78"
    [ "$(prop NRestarts)" = "$restarts" ] || die "restarted $(prop NRestarts) times: restart loop"
    journal=$(in_ct journalctl -u pistats.service -b --no-pager -o cat)
    [ "$(grep -c 'status=78/CONFIG' <<<"$journal")" = 1 ] || die "more than one start with the broken config"
    grep -q "invalid config file $conf: line 1: unknown setting \`intervall\` (did you mean \`interval\`?)" <<<"$journal" ||
        die "journal lacks a clear config error: $(tail -5 <<<"$journal")"
    log "journal: $(grep -m1 'invalid config file' <<<"$journal")"
    in_ct cp /root/config.toml.good "$conf"
    in_ct systemctl reset-failed pistats.service
    in_ct systemctl start pistats.service
    service_running || die "not running after fixing the config"
    phase_end

    phase_start network-gate
    # serve = "while-connected": the listener follows the watched interface's link.
    if [[ $(in_ct pistats --interface host0 network 2>/dev/null) == *"source:     none"* ]]; then
        log "SKIP: this build has no network detection (source none)"
    else
        in_ct ip link set host0 down
        wait_for 30 "StatusText to say it waits for host0" \
            bash -c "[[ \$(nsenter -t $CT_PID -a systemctl show -p StatusText --value pistats) == 'waiting for host0'* ]]"
        # Closed, not just unreachable: loopback inside the container is refused too.
        nsenter -t "$CT_PID" -n curl -fsS --max-time 3 -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null &&
            die "still listening while host0 is down"
        in_ct ip link set host0 up
        wait_for 30 "StatusText to say it serves again" \
            bash -c "[[ \$(nsenter -t $CT_PID -a systemctl show -p StatusText --value pistats) == 'serving on'* ]]"
        check_serving
        # The packaged configuration watches wlan0, which this container has not: the service
        # still starts (READY=1) and waits for it without listening.
        in_ct rm /etc/systemd/system/pistats.service.d/interface.conf
        in_ct systemctl daemon-reload
        in_ct systemctl restart pistats.service
        service_running || die "not running with the packaged configuration"
        status=$(prop StatusText)
        log "StatusText with the packaged configuration: $status"
        [[ $status == "waiting for wlan0"* ]] || die "unexpected StatusText: $status"
        curl -fsS --max-time 3 -o /dev/null "http://$CT_IP:$PORT/healthz" 2>/dev/null &&
            die "listening although wlan0 does not exist"
        printf '[Service]\nEnvironment=PISTATS_INTERFACE=host0\n' |
            in_ct tee /etc/systemd/system/pistats.service.d/interface.conf >/dev/null
        in_ct systemctl daemon-reload
        in_ct systemctl restart pistats.service
        check_serving
    fi
    phase_end

    phase_start tls
    # HTTPS/WSS with a private key only root can read, handed to the sandboxed service as a
    # systemd credential. Credentials cannot be set up under qemu-user (see rootfs()).
    if [ "$ARCH" != "$HOST_ARCH" ]; then
        log "SKIP: systemd credentials do not work under qemu-user"
    else
        local tls=$work/root/tls
        mkdir -p "$tls"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj /CN=pistats-test -addext "subjectAltName=IP:$CT_IP" \
            -keyout "$tls/tls.key" -out "$tls/tls.crt" 2>/dev/null || die "openssl failed"
        in_ct install -m 644 /root/tls/tls.crt /etc/pistats/tls.crt
        in_ct install -m 600 /root/tls/tls.key /etc/pistats/tls.key
        # The credentials directory by its path, as debian/config.toml shows it: the %d
        # specifier needs systemd 248, Bullseye has 247.
        printf '[Service]\nLoadCredential=tls.key:/etc/pistats/tls.key\nEnvironment=PISTATS_TLS_CERT=/etc/pistats/tls.crt PISTATS_TLS_KEY=/run/credentials/pistats.service/tls.key\n' |
            in_ct tee /etc/systemd/system/pistats.service.d/tls.conf >/dev/null
        in_ct systemctl daemon-reload
        in_ct systemctl restart pistats.service
        service_running || die "not running with TLS"
        wait_for 30 "HTTPS on $CT_IP:$PORT" \
            curl -fsS --max-time 5 --cacert "$tls/tls.crt" -o /dev/null "https://$CT_IP:$PORT/healthz"
        curl -fsS --max-time 5 --cacert "$tls/tls.crt" "https://$CT_IP:$PORT/api/v1/stats" |
            python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["memory"]["total_gb"]>0, d' ||
            die "no stats document over HTTPS"
        curl -fsS --max-time 3 -o /dev/null "http://$CT_IP:$PORT/healthz" 2>/dev/null &&
            die "plain HTTP still answered with TLS on"
        journal=$(in_ct journalctl -u pistats.service -b --no-pager -o cat)
        grep -q "TLS on: https:// and wss:// only" <<<"$journal" || die "journal does not say TLS is on"
        # A renewed certificate (same key, as the credential holds it) through systemctl reload.
        openssl req -x509 -key "$tls/tls.key" -new -days 2 -subj /CN=pistats-renewed \
            -addext "subjectAltName=IP:$CT_IP" -out "$tls/renewed.crt" 2>/dev/null ||
            die "openssl (renewal) failed"
        in_ct install -m 644 /root/tls/renewed.crt /etc/pistats/tls.crt
        pid=$(prop MainPID)
        in_ct systemctl reload pistats.service || die "systemctl reload failed"
        wait_for 10 "the renewed certificate" \
            curl -fsS --max-time 5 --cacert "$tls/renewed.crt" -o /dev/null "https://$CT_IP:$PORT/healthz"
        [ "$(prop MainPID)" = "$pid" ] || die "reload restarted the service"
        curl -fsS --max-time 3 --cacert "$tls/tls.crt" -o /dev/null "https://$CT_IP:$PORT/healthz" 2>/dev/null &&
            die "the old certificate is still served after reload"
        in_ct journalctl -u pistats.service -b --no-pager -o cat | grep -q "TLS certificate reloaded" ||
            die "journal does not say the certificate was reloaded"
        in_ct rm /etc/systemd/system/pistats.service.d/tls.conf /etc/pistats/tls.crt /etc/pistats/tls.key
        in_ct systemctl daemon-reload
        in_ct systemctl restart pistats.service
        check_serving
    fi
    phase_end

    phase_start upgrade
    # The phases above started the service more often within a minute than StartLimitBurst=
    # allows for a restart loop (systemd 257 counts every start): clear the counter, as an
    # administrator would after such a session.
    in_ct systemctl reset-failed pistats.service
    # Same package with a higher version: the service is restarted, a locally changed
    # conffile is kept.
    in_ct sh -c "sed -i 's/^#top_processes = 10/top_processes = 7/' $conf"
    local up=$work/root/upgrade
    rm -rf "$up"
    dpkg-deb -R "$DEB_DIR/$deb" "$up"
    sed -i 's/^Version: .*/&+upgrade1/' "$up/DEBIAN/control"
    dpkg-deb -b "$up" "$work/root/pistats-upgrade.deb" >/dev/null
    pid=$(prop MainPID)
    in_ct apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold \
        /root/pistats-upgrade.deb >>"$CACHE/apt-$ARCH.log" 2>&1 || die "upgrade failed"
    wait_for "$SERVICE_TIMEOUT" "pistats after the upgrade" service_running
    [ "$(prop MainPID)" != "$pid" ] || die "service not restarted on upgrade"
    in_ct grep -q '^top_processes = 7' "$conf" || die "upgrade lost the local change to $conf"
    [ "$(in_ct stat -c %U:%G:%a "$conf")" = root:pistats:640 ] ||
        die "config file after the upgrade: $(in_ct stat -c %U:%G:%a "$conf" 2>&1)"
    curl -fsS --max-time 5 "http://$CT_IP:$PORT/api/v1/stats" | python3 -c \
        'import json,sys; d=json.load(sys.stdin); n=len(d["processes"]["top_cpu_usage"]); assert n<=7, n' ||
        die "the changed setting is not in effect"
    check_serving
    phase_end

    phase_start remove-purge
    in_ct apt-get remove -y pistats >>"$CACHE/apt-$ARCH.log" 2>&1 || die "apt remove failed"
    in_ct test ! -e /usr/bin/pistats || die "binary left after remove"
    in_ct test -f "$conf" || die "remove deleted the conffile"
    in_ct getent passwd pistats >/dev/null || die "remove deleted the user (only purge does)"
    [ "$(in_ct dpkg-query -W -f='${Status}' pistats)" = "deinstall ok config-files" ] ||
        die "unexpected state after remove"
    in_ct systemctl is-active --quiet pistats.service && die "service still active after remove"
    curl -fsS --max-time 3 -o /dev/null "http://$CT_IP:$PORT/healthz" 2>/dev/null &&
        die "still serving after remove"
    in_ct apt-get purge -y pistats >>"$CACHE/apt-$ARCH.log" 2>&1 || die "apt purge failed"
    in_ct test ! -e /etc/pistats || die "/etc/pistats left after purge"
    in_ct test ! -e /var/lib/pistats || die "/var/lib/pistats left after purge"
    in_ct getent passwd pistats >/dev/null && die "user pistats left after purge"
    in_ct getent group pistats >/dev/null && die "group pistats left after purge"
    in_ct dpkg-query -W pistats >/dev/null 2>&1 && die "package still known after purge"
    phase_end

    shutdown_container
    TIMINGS+=("$ARCH total: $((SECONDS - t_arch))s")
    log "PASS ($RELEASE)"
    ARCH=
}

[ "$(id -u)" = 0 ] || die "run as root"
host_packages
# A year of history for the year phase (examples/year_of_history.rs), written once:
# the state file is the same on every architecture.
YEAR_DIR=$(mktemp -d)
mkdir -p "$CACHE"
cargo build --locked --example year_of_history >"$CACHE/year-build.log" 2>&1 ||
    die "cannot build examples/year_of_history: $(tail -5 "$CACHE/year-build.log")"
"${CARGO_TARGET_DIR:-$REPO/target}/debug/examples/year_of_history" "$YEAR_DIR" "$(nproc)" >/dev/null ||
    die "examples/year_of_history failed"
for a in "${ARCHES[@]}"; do
    [ "$a" = "$HOST_ARCH" ] || {
        enable_binfmt
        break
    }
done
net=0
passed=0
for a in "${ARCHES[@]}"; do
    HOST_IP=$NET24.$((net * 4 + 1))
    CT_IP=$NET24.$((net * 4 + 2))
    net=$((net + 1))
    if [ "$a" = "$HOST_ARCH" ]; then
        BOOT_TIMEOUT=120 SERVICE_TIMEOUT=30 SHUTDOWN_TIMEOUT=30
    else
        BOOT_TIMEOUT=600 SERVICE_TIMEOUT=120 SHUTDOWN_TIMEOUT=15
    fi
    test_arch "$a"
    passed=$((passed + 1))
done
printf '%s\n' "${TIMINGS[@]}"
echo "install test: $passed passed, 0 failed"
