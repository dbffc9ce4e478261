#!/usr/bin/env bash
# Installs Debian's prometheus (which ships promtool) for tests/prometheus.rs.
# Idempotent; run as root. The package's own service must not start: the test runs its own
# prometheus on a free loopback port with a throwaway config and storage.
set -euo pipefail

if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# Without systemd as PID 1, invoke-rc.d would fall back to the sysvinit script and start the
# packaged server on :9090. A policy-rc.d answering 101 ("action forbidden") prevents that.
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
apt-get install -y -qq --no-install-recommends prometheus

# Stop the packaged service if anything started it anyway (e.g. systemd is PID 1 on CI).
if [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/prometheus ]; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi

promtool --version >/dev/null
prometheus --version >/dev/null
