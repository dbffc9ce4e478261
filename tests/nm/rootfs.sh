#!/usr/bin/env bash
# Builds (once) the Debian bookworm root filesystem with NetworkManager that tests/nm/run.sh
# boots with systemd-nspawn. Idempotent: a finished rootfs is reused; a half-built one is redone.
set -euo pipefail

ROOTFS=${PISTATS_NM_ROOTFS:-/var/cache/pistats-tests/nm-bookworm}
MIRROR=${PISTATS_NM_MIRROR:-http://deb.debian.org/debian}
export DEBIAN_FRONTEND=noninteractive

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v ip >/dev/null || need+=(iproute2)
if ((${#need[@]})); then
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [[ -f $ROOTFS/.pistats-rootfs-ok ]]; then
    echo "rootfs: reusing $ROOTFS"
    exit 0
fi

echo "rootfs: building $ROOTFS (a few minutes, once; log in $ROOTFS.log)"
mkdir -p "$(dirname "$ROOTFS")"
if [[ ! -f $ROOTFS/.pistats-debootstrap-ok ]]; then
    rm -rf "$ROOTFS"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,iproute2,procps \
        bookworm "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
        tail -n 30 "$ROOTFS.log"
        exit 1
    }
    touch "$ROOTFS/.pistats-debootstrap-ok"
fi
# NetworkManager through apt inside the rootfs: debootstrap's --include cannot resolve its
# virtual dependencies (polkitd needs a logind).
systemd-nspawn --quiet --register=no --keep-unit -D "$ROOTFS" --setenv=DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends network-manager' \
    >>"$ROOTFS.log" 2>&1 || {
    tail -n 30 "$ROOTFS.log"
    exit 1
}

# NetworkManager manages the container's end of the veth pair (host0) with a static address:
# there is no DHCP server on the host side. No other device matters.
install -d "$ROOTFS/etc/NetworkManager/system-connections" "$ROOTFS/etc/NetworkManager/conf.d"
cat >"$ROOTFS/etc/NetworkManager/system-connections/host0.nmconnection" <<'CONF'
[connection]
id=host0
type=ethernet
interface-name=host0
autoconnect=true

[ipv4]
method=manual
address1=10.213.7.2/24

[ipv6]
method=ignore
CONF
chmod 600 "$ROOTFS/etc/NetworkManager/system-connections/host0.nmconnection"
cat >"$ROOTFS/etc/NetworkManager/conf.d/90-pistats-test.conf" <<'CONF'
[main]
no-auto-default=*

[device-host0]
match-device=interface-name:host0
managed=1
CONF
# Nothing else competes for host0, and boot stays quick.
rm -f "$ROOTFS/etc/systemd/system/multi-user.target.wants/systemd-networkd.service" \
    "$ROOTFS/etc/systemd/system/sockets.target.wants/systemd-networkd.socket"
echo pistats-nm >"$ROOTFS/etc/hostname"
touch "$ROOTFS/.pistats-rootfs-ok"
echo "rootfs: ready"
