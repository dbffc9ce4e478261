#!/usr/bin/env bash
# Builds the pistats .deb packages for amd64, arm64 (64-bit Raspberry Pi OS) and armhf (32-bit)
# without docker: Debian's cross compilers after `rustup target add`, packaging with cargo-deb,
# a smoke test of each binary (natively or under qemu-user: `pistats --version` and
# `pistats snapshot` validated as JSON) and lintian on each package.
#
# Usage: scripts/build-debs.sh [--no-build] [amd64] [arm64] [armhf]    (default: all three)
#   --no-build  package binaries already in target/<triple>/release (e.g. built with cross).
# Packages go to $CARGO_TARGET_DIR/debian (default target/debian). Run as root on Debian 12; it
# installs what it needs (cross gcc, the targets' libc for dpkg-shlibdeps, qemu-user-static,
# lintian, cargo-deb) and can be run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

CARGO_DEB_VERSION=3.8.0
BUILD=1
ARCHES=()
for arg in "$@"; do
    case $arg in
    --no-build) BUILD=0 ;;
    amd64 | arm64 | armhf) ARCHES+=("$arg") ;;
    *)
        echo "usage: $0 [--no-build] [amd64] [arm64] [armhf]" >&2
        exit 2
        ;;
    esac
done
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(amd64 arm64 armhf)
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=$TARGET_DIR/debian
HOST_ARCH=$(dpkg --print-architecture)

triple() {
    case $1 in
    amd64) echo x86_64-unknown-linux-gnu ;;
    arm64) echo aarch64-unknown-linux-gnu ;;
    armhf) echo armv7-unknown-linux-gnueabihf ;;
    esac
}
gnu_triple() {
    case $1 in
    amd64) echo x86_64-linux-gnu ;;
    arm64) echo aarch64-linux-gnu ;;
    armhf) echo arm-linux-gnueabihf ;;
    esac
}
qemu() {
    case $1 in
    amd64) echo qemu-x86_64-static ;;
    arm64) echo qemu-aarch64-static ;;
    armhf) echo qemu-arm-static ;;
    esac
}
log() { printf '== %s\n' "$*"; }
TIMINGS=()
timed() { # timed LABEL COMMAND...
    local t0=$SECONDS
    "$1_step" "${@:2}"
    TIMINGS+=("$*: $((SECONDS - t0))s")
}

setup_step() {
    local pkgs=(lintian dpkg-dev python3 xz-utils) foreign=() a
    for a in "${ARCHES[@]}"; do
        [ "$a" = "$HOST_ARCH" ] && continue
        foreign+=("$a")
        pkgs+=("libc6:$a" qemu-user-static)
        # The cross gcc only recommends its libc headers; they are needed (ring's C code).
        [ $BUILD = 0 ] || pkgs+=("gcc-$(gnu_triple "$a")" "libc6-dev-$a-cross")
    done
    local update=0
    # The targets' own libc (multiarch) lets dpkg-shlibdeps compute each package's real
    # Depends; the cross toolchain's copy would yield libc6-<arch>-cross.
    for a in "${foreign[@]}"; do
        if ! dpkg --print-foreign-architectures | grep -qx "$a"; then
            dpkg --add-architecture "$a"
            update=1
        fi
    done
    local missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        update=1
    fi
    if [ $update = 1 ]; then
        log "apt-get install ${missing[*]}"
        # A mirror caught mid-sync fails one index; what is needed usually still installs.
        apt-get update -qq -o Acquire::Retries=3 || echo "apt-get update reported errors; trying anyway" >&2
        [ ${#missing[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if [ $BUILD = 1 ]; then
        for a in "${ARCHES[@]}"; do
            rustup target list --installed | grep -qx "$(triple "$a")" || rustup target add "$(triple "$a")"
        done
    fi
    if [ "$(cargo deb --version 2>/dev/null | awk '{print $NF}')" != "$CARGO_DEB_VERSION" ]; then
        log "cargo install cargo-deb $CARGO_DEB_VERSION"
        cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
    fi
}

package_step() {
    local arch=$1 t
    t=$(triple "$arch")
    if [ "$arch" != "$HOST_ARCH" ]; then
        local var
        var=CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$t")_LINKER
        export "$var=$(gnu_triple "$arch")-gcc"
    fi
    local args=(--locked --target "$t" --output "$OUT/")
    [ $BUILD = 1 ] || args+=(--no-build)
    log "cargo deb ${args[*]}"
    cargo deb "${args[@]}"
}

check_step() {
    local arch=$1 deb
    deb=$(ls -t "$OUT"/pistats_*_"$arch".deb | head -1)
    log "checking $deb"
    local depends
    depends=$(dpkg-deb -f "$deb" Depends)
    echo "Depends: $depends"
    [[ $depends == *"libc6 (>="* && $depends != *cross* ]] || {
        echo "bad Depends for $arch: $depends" >&2
        exit 1
    }
    [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || {
        echo "wrong Architecture in $deb" >&2
        exit 1
    }
    local tmp
    tmp=$(mktemp -d)
    dpkg-deb -x "$deb" "$tmp"
    local run=("$tmp/usr/bin/pistats")
    [ "$arch" = "$HOST_ARCH" ] || run=("$(qemu "$arch")" "$tmp/usr/bin/pistats")
    "${run[@]}" --version
    # --config /dev/null: built-in defaults, whatever this machine has in /etc/pistats.
    "${run[@]}" --config /dev/null snapshot | python3 -c '
import json, sys
d = json.load(sys.stdin)
missing = [k for k in ("timestamp", "system", "cpu", "memory", "disk", "network", "processes") if k not in d]
assert not missing, missing
assert d["cpu"]["count_logical"] >= 1 and d["memory"]["total_gb"] > 0
print("snapshot: valid JSON,", len(d), "sections,", d["processes"]["total_count"], "processes")
'
    SIZES+=("$arch: deb $(stat -c %s "$deb") bytes, /usr/bin/pistats $(stat -c %s "$tmp/usr/bin/pistats") bytes")
    rm -rf "$tmp"
    # No errors and no warnings; the one override is explained in debian/lintian-overrides.
    local lint rc=0
    lint=$(lintian --fail-on error,warning "$deb" 2>&1) || rc=$?
    grep -v 'running with root privileges' <<<"$lint" || true
    [ $rc = 0 ] || {
        echo "lintian failed for $deb" >&2
        exit 1
    }
    echo "lintian: clean"
}

SIZES=()
timed setup
for arch in "${ARCHES[@]}"; do
    timed package "$arch"
    timed check "$arch"
done
printf '%s\n' "${SIZES[@]}" "${TIMINGS[@]}"
ls -l "$OUT"/pistats_*.deb
