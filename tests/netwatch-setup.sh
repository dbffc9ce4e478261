#!/usr/bin/env bash
# Installs what tests/netwatch_{nm,listener,kernel}.rs need (idempotently): dbus-daemon for the
# private bus, and iproute2 for the network namespaces (which need root).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib-setup.sh"
need=()
command -v dbus-daemon >/dev/null || need+=(dbus-daemon)
command -v ip >/dev/null || need+=(iproute2)
if ((${#need[@]})); then
    apt_install "${need[@]}" >/dev/null
fi
echo "netwatch test dependencies: dbus-daemon $(dbus-daemon --version | head -n 1 | awk '{print $NF}'), $(ip -V)"
