# Shared by the tests/*-setup.sh scripts (sourced, not run; they run as root): installing the
# Debian packages a test needs without letting the services those packages ship start.

# apt_install PACKAGE...: installs the packages not installed yet (none: does nothing).
# apt-get is tried up to three times, because a first run on a fresh machine often meets a
# dpkg lock held by unattended-upgrades or a mirror that is briefly unreachable or mid-sync.
# A failed `apt-get update` (often one architecture's list) is reported, not fatal: the
# install that follows decides whether the lists there are will do.
apt_install() {
    local missing=() pkg attempt
    for pkg in "$@"; do
        if ! dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    for attempt in 1 2 3; do
        apt-get update -qq || echo "apt-get update failed; trying the package lists there are" >&2
        if apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=120 \
            "${missing[@]}"; then
            return 0
        fi
        if ((attempt < 3)); then
            echo "apt-get failed (attempt $attempt of 3); retrying in $((attempt * 10)) s" >&2
            sleep $((attempt * 10))
        fi
    done
    echo "could not install: ${missing[*]}" >&2
    return 1
}

# forbid_service_starts: until the calling script exits, package scripts may not start
# services. Without systemd as PID 1, invoke-rc.d would fall back to a package's sysvinit
# script and start its server on its default port; a policy-rc.d answering 101 ("action
# forbidden") prevents that. An existing policy-rc.d is left as it is.
forbid_service_starts() {
    _policy=/usr/sbin/policy-rc.d
    _own_policy=false
    if [ ! -e "$_policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$_policy"
        chmod 755 "$_policy"
        _own_policy=true
    fi
    trap '_allow_service_starts' EXIT
}

_allow_service_starts() { if $_own_policy; then rm -f "$_policy"; fi; }

# stop_packaged_service NAME: stops and disables the service NAME if anything started it
# anyway (e.g. systemd is PID 1 on CI): the tests run their own instances on free ports.
stop_packaged_service() {
    if [ -d /run/systemd/system ]; then
        systemctl disable --now "$1.service" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$1" ]; then
        "/etc/init.d/$1" stop >/dev/null 2>&1 || true
    fi
}
