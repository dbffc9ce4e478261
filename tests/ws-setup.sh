#!/usr/bin/env bash
# Installs Debian's Python websockets library for tests/ws_deflate.rs: a real client that
# negotiates permessage-deflate (as browsers do) and inflates what it receives.
# Idempotent; run as root.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib-setup.sh"

# Debian's interpreter, which the test runs (another python3 may come first on PATH).
if /usr/bin/python3 -c 'import websockets' 2>/dev/null; then
    exit 0
fi

apt_install python3 python3-websockets
