#!/usr/bin/env bash
# Installs Debian's mosquitto broker and clients for tests/alerts_mqtt.rs.
# Idempotent; run as root. The package's own service must not keep running: the test starts
# its own broker on a free loopback port with a throwaway config.
set -euo pipefail

if command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# Without systemd as PID 1, invoke-rc.d would fall back to the sysvinit script and start the
# packaged broker on :1883. A policy-rc.d answering 101 ("action forbidden") prevents that.
policy=/usr/sbin/policy-rc.d
own_policy=false
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=true
fi
cleanup() { if $own_policy; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends mosquitto mosquitto-clients

if [ -d /run/systemd/system ]; then
    systemctl disable --now mosquitto.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/mosquitto ]; then
    /etc/init.d/mosquitto stop >/dev/null 2>&1 || true
fi
