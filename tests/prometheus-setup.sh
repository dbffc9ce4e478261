#!/usr/bin/env bash
# Installs Debian's prometheus (which ships promtool) for tests/prometheus.rs.
# Idempotent; run as root. The package's own service must not start: the test runs its own
# prometheus on a free loopback port with a throwaway config and storage.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib-setup.sh"

if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
    exit 0
fi

# The packaged server would otherwise start on :9090.
forbid_service_starts
apt_install prometheus
stop_packaged_service prometheus

promtool --version >/dev/null
prometheus --version >/dev/null
