#!/usr/bin/env bash
# Installs Debian's mosquitto broker and clients for tests/alerts_mqtt.rs.
# Idempotent; run as root. The package's own service must not keep running: the test starts
# its own broker on a free loopback port with a throwaway config.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib-setup.sh"

if command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; then
    exit 0
fi

# The packaged broker would otherwise start on :1883.
forbid_service_starts
apt_install mosquitto mosquitto-clients
stop_packaged_service mosquitto
