#!/usr/bin/env bash
# Builds the pistats .deb packages for amd64, arm64 (64-bit Raspberry Pi OS) and armhf (32-bit,
# every Pi from the Pi 1 and Zero on) without docker: static musl binaries built with Debian's
# cross compilers after `rustup target add`, packaging with cargo-deb, then checks on each
# package: the binary is static (no glibc symbol versions, so Bullseye's glibc 2.31 is no
# obstacle) and, for armhf, hard-float EABI; it runs natively or under qemu-user (armhf on an
# ARM1176, the Pi 1 / Zero CPU, which has no ARMv7 or NEON instruction): `pistats --version`,
# `pistats snapshot` validated as JSON and, for armhf, a WebSocket document and an HTTPS
# document from the daemon; lintian on each package.
#
# Usage: scripts/build-debs.sh [--no-build] [amd64] [arm64] [armhf]    (default: all three)
#   --no-build  package binaries already in target/<triple>/dist (e.g. built with
#               `cross build --profile dist`).
# The binaries are built with Cargo.toml's `dist` profile (fat LTO, one codegen unit; see
# "Package build profile" in docs/benchmarks.md); PISTATS_PROFILE=release packages a release
# build instead.
# Packages go to $CARGO_TARGET_DIR/debian (default target/debian). Run as root on Debian 12; it
# installs what it needs (cross gcc, qemu-user-static, lintian, cargo-deb) and can be run again.
#
# armhf: Rust's arm-unknown-linux-musleabihf (ARMv6 + VFP2, hard-float) standard library comes
# from rustup where the toolchain server has it. Where it does not, the standard library is
# built from rustup's rust-src (cargo -Z build-std, enabled with RUSTC_BOOTSTRAP=1 on stable)
# against musl and LLVM's libunwind compiled here for ARMv6 (musl's source from Debian's
# archive through `apt-get source`, which needs a deb-src entry: one is added). The results are
# kept in $CARGO_TARGET_DIR/armv6-sysroot.
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
PROFILE=${PISTATS_PROFILE:-dist}
OUT=$TARGET_DIR/debian
HOST_ARCH=$(dpkg --print-architecture)

triple() {
    case $1 in
    amd64) echo x86_64-unknown-linux-musl ;;
    arm64) echo aarch64-unknown-linux-musl ;;
    armhf) echo arm-unknown-linux-musleabihf ;;
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
    # -cpu arm1176: the Pi 1 / Zero CPU, so an ARMv7 or NEON instruction is a SIGILL here.
    armhf) echo qemu-arm-static -cpu arm1176 ;;
    esac
}
log() { printf '== %s\n' "$*"; }
TIMINGS=()
timed() { # timed LABEL COMMAND...
    local t0=$SECONDS
    "$1_step" "${@:2}"
    TIMINGS+=("$*: $((SECONDS - t0))s")
}
SYSROOT=$(realpath -m "$TARGET_DIR/armv6-sysroot")
# armhf's standard library: "rustup" (prebuilt) or "build-std" (from rust-src), set up below.
ARMHF_STD=

apt_install() { # apt_install PACKAGE... (only the missing ones)
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    log "apt-get install ${missing[*]}"
    # A mirror caught mid-sync fails one index; what is needed usually still installs.
    apt-get update -qq -o Acquire::Retries=3 || echo "apt-get update reported errors; trying anyway" >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

setup_step() {
    local pkgs=(lintian dpkg-dev python3 xz-utils binutils openssl curl) a
    for a in "${ARCHES[@]}"; do
        [ "$a" = "$HOST_ARCH" ] || pkgs+=(qemu-user-static)
        [ $BUILD = 1 ] || continue
        # gcc links (its crt objects are not used: Rust's musl targets bring their own) and
        # compiles ring's C code; the libc headers are only recommended by the cross gcc.
        if [ "$a" = "$HOST_ARCH" ]; then
            pkgs+=(gcc libc6-dev)
        else
            pkgs+=("gcc-$(gnu_triple "$a")" "libc6-dev-$a-cross")
        fi
    done
    apt_install "${pkgs[@]}"
    if [ $BUILD = 1 ]; then
        for a in "${ARCHES[@]}"; do
            rustup target list --installed | grep -qx "$(triple "$a")" && continue
            if rustup target add "$(triple "$a")" 2>/dev/null; then
                continue
            fi
            [ "$a" = armhf ] || {
                echo "rustup target add $(triple "$a") failed" >&2
                exit 1
            }
        done
        if [[ " ${ARCHES[*]} " == *" armhf "* ]]; then
            if rustup target list --installed | grep -qx arm-unknown-linux-musleabihf; then
                ARMHF_STD=rustup
            else
                ARMHF_STD=build-std
                armv6_sysroot
            fi
        fi
    fi
    if [ "$(cargo deb --version 2>/dev/null | awk '{print $NF}')" != "$CARGO_DEB_VERSION" ]; then
        log "cargo install cargo-deb $CARGO_DEB_VERSION"
        cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
    fi
}
# What the standard library of arm-unknown-linux-musleabihf needs when it is built from source:
# musl (crt objects and libc.a) and LLVM's libunwind, both for ARMv6 + VFP2, hard-float.
ARMV6_CFLAGS="-march=armv6 -marm -mfpu=vfp -mfloat-abi=hard -O2"
armv6_sysroot() {
    [ -f "$SYSROOT/.complete" ] && return 0
    log "building musl and libunwind for ARMv6 into $SYSROOT"
    apt_install g++-arm-linux-gnueabihf dpkg-dev
    rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src
    rm -rf "$SYSROOT" "$SYSROOT.src"
    mkdir -p "$SYSROOT/lib" "$SYSROOT.src"
    # musl's source from Debian's archive (the same release Debian ships), with a deb-src entry.
    if ! apt-get source --print-uris musl >/dev/null 2>&1; then
        local list=/etc/apt/sources.list.d/pistats-deb-src.sources
        log "adding deb-src entries ($list) for apt-get source musl"
        sed -n '/^Types:.*deb/,/^$/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null |
            sed 's/^Types:.*/Types: deb-src/' >"$list"
        [ -s "$list" ] || printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$(. /etc/os-release && echo "$VERSION_CODENAME")" >"$list"
        apt-get update -qq -o Acquire::Retries=3 || echo "apt-get update reported errors; trying anyway" >&2
    fi
    (cd "$SYSROOT.src" && apt-get source -qq musl >/dev/null 2>&1) || {
        echo "apt-get source musl failed" >&2
        exit 1
    }
    local musl
    musl=$(find "$SYSROOT.src" -maxdepth 1 -type d -name 'musl-*' | head -1)
    (
        cd "$musl"
        ./configure --target=arm-linux-gnueabihf --prefix="$SYSROOT" --disable-shared \
            CROSS_COMPILE=arm-linux-gnueabihf- CC=arm-linux-gnueabihf-gcc CFLAGS="$ARMV6_CFLAGS" >/dev/null
        make -s -j"$(nproc)" >/dev/null
        make -s install >/dev/null
    ) || {
        echo "building musl failed" >&2
        exit 1
    }
    # The crtbegin/crtend objects Rust's musl targets link: only __dso_handle is needed (the
    # constructors go through .init_array, which musl runs).
    printf 'void *__dso_handle __attribute__((visibility("hidden"))) = &__dso_handle;\n' >"$SYSROOT.src/crtbegin.c"
    : >"$SYSROOT.src/crtend.c"
    local o
    for o in crtbegin crtend; do
        arm-linux-gnueabihf-gcc $ARMV6_CFLAGS -fPIC -c "$SYSROOT.src/$o.c" -o "$SYSROOT/lib/$o.o"
        cp "$SYSROOT/lib/$o.o" "$SYSROOT/lib/${o}S.o"
    done
    # LLVM's libunwind from rust-src, as Rust's own build compiles it for musl targets.
    local unwind
    unwind="$(rustc --print sysroot)/lib/rustlib/src/rust/src/llvm-project/libunwind"
    local flags=($ARMV6_CFLAGS -fPIC -funwind-tables -fvisibility=hidden -fstrict-aliasing
        -nostdinc -isystem "$SYSROOT/include" -isystem "$(arm-linux-gnueabihf-gcc -print-file-name=include)"
        -I "$unwind/include" -D_LIBUNWIND_IS_NATIVE_ONLY -D_LIBUNWIND_DISABLE_VISIBILITY_ANNOTATIONS
        -DNDEBUG)
    local objs=() f
    for f in "$unwind"/src/*.c "$unwind"/src/*.S "$unwind"/src/*.cpp; do
        case $(basename "$f") in Unwind-seh.cpp | Unwind-wasm.c | Unwind_AIXExtras.cpp | UnwindRustSgx.c) continue ;; esac
        o=$SYSROOT.src/unwind-$(basename "$f").o
        case $f in
        *.cpp) arm-linux-gnueabihf-g++ "${flags[@]}" -std=c++17 -nostdinc++ -fno-exceptions -fno-rtti -c "$f" -o "$o" ;;
        *) arm-linux-gnueabihf-gcc "${flags[@]}" -std=c99 -c "$f" -o "$o" ;;
        esac
        objs+=("$o")
    done
    arm-linux-gnueabihf-ar rcs "$SYSROOT/lib/libunwind.a" "${objs[@]}"
    touch "$SYSROOT/.complete"
    rm -rf "$SYSROOT.src"
    # cargo does not track native libraries: a missing executable makes it link again.
    rm -f "$TARGET_DIR"/arm-unknown-linux-musleabihf/"$PROFILE"/pistats \
        "$TARGET_DIR"/arm-unknown-linux-musleabihf/"$PROFILE"/deps/pistats-*
}

package_step() {
    local arch=$1 t
    t=$(triple "$arch")
    local var=${t//-/_}
    # ring's C code: the cross gcc (cc-rs adds -march=armv6 -marm -mfpu=vfp for armhf); the
    # same gcc links.
    export "CC_$var=$(gnu_triple "$arch")-gcc"
    [ "$arch" = "$HOST_ARCH" ] || export "AR_$var=$(gnu_triple "$arch")-ar"
    export "CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$t")_LINKER=$(gnu_triple "$arch")-gcc"
    local args=(--locked --profile "$PROFILE" --target "$t" --output "$OUT/")
    if [ $BUILD = 0 ]; then
        args+=(--no-build)
    elif [ "$arch" = armhf ] && [ "$ARMHF_STD" = build-std ]; then
        # The crt objects, libc.a and libunwind.a come from $SYSROOT instead of rustup.
        export "CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$t")_RUSTFLAGS=-L native=$SYSROOT/lib"
        export "CFLAGS_$var=-nostdinc -isystem $SYSROOT/include -isystem $(arm-linux-gnueabihf-gcc -print-file-name=include)"
        log "RUSTC_BOOTSTRAP=1 cargo build -Z build-std --profile $PROFILE --target $t"
        RUSTC_BOOTSTRAP=1 cargo build --profile "$PROFILE" --locked --target "$t" -Z build-std=std,panic_abort
        args+=(--no-build)
    fi
    log "cargo deb ${args[*]}"
    cargo deb "${args[@]}"
}

# daemon_check WHAT CHECK DAEMON_ARGS...: runs check_step's daemon ("${run[@]}" on 127.0.0.1:$port)
# with DAEMON_ARGS until it listens, runs the command CHECK against it and stops it; when CHECK
# fails, the daemon's log is shown and the build ends with "no WHAT".
daemon_check() {
    local what=$1 check=$2 log=$tmp/daemon.log pid i
    shift 2
    NO_COLOR=1 "${run[@]}" --config /dev/null --serve always --host 127.0.0.1 --port "$port" \
        "$@" >"$log" 2>&1 &
    pid=$!
    for i in $(seq 1 120); do
        grep -q "listening on 127.0.0.1:$port" "$log" && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.5
    done
    "$check" || {
        kill $pid 2>/dev/null || true
        cat "$log" >&2
        echo "armhf: no $what from the daemon under qemu-arm -cpu arm1176" >&2
        exit 1
    }
    kill $pid
    wait $pid 2>/dev/null || true
}

check_step() {
    local arch=$1 deb
    deb=$(ls -t "$OUT"/pistats_*_"$arch".deb | head -1)
    log "checking $deb"
    # Static: nothing from the system's C library, so every release from Bullseye on.
    local depends
    depends=$(dpkg-deb -f "$deb" Depends)
    echo "Depends: ${depends:-(none)}"
    [[ $depends != *libc6* ]] || {
        echo "$arch: a static binary must not depend on libc6: $depends" >&2
        exit 1
    }
    [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || {
        echo "wrong Architecture in $deb" >&2
        exit 1
    }
    local tmp
    tmp=$(mktemp -d)
    dpkg-deb -x "$deb" "$tmp"
    local bin=$tmp/usr/bin/pistats
    readelf -lW "$bin" | grep -q 'INTERP' && {
        echo "$arch: /usr/bin/pistats asks for a dynamic loader" >&2
        exit 1
    }
    readelf -dW "$bin" | grep -q NEEDED && {
        echo "$arch: /usr/bin/pistats needs shared libraries: $(readelf -dW "$bin" | grep NEEDED)" >&2
        exit 1
    }
    if readelf -VW "$bin" | grep -q 'GLIBC_'; then
        echo "$arch: glibc symbol versions in a static binary" >&2
        exit 1
    fi
    echo "static: no program interpreter, no shared library, no glibc symbol version"
    if [ "$arch" = armhf ]; then
        # Hard-float EABI (Raspberry Pi OS armhf) built for ARMv6 + VFPv2. readelf -A cannot
        # prove "nothing newer" for the whole file: ring's assembly carries ARMv7/NEON variants
        # (tagged v7/NEON) that it only calls when the kernel reports NEON (AT_HWCAP), and musl's
        # atomics pick their ARMv7 variant the same way. The proof is running it below on an
        # ARM1176, where any ARMv7 or NEON instruction is a SIGILL, TLS (ring) included.
        readelf -hW "$bin" | grep -q 'Flags:.*Version5 EABI, hard-float ABI' || {
            echo "armhf: not a hard-float EABI binary: $(readelf -hW "$bin" | grep Flags)" >&2
            exit 1
        }
        local attrs
        attrs=$(readelf -A "$bin")
        grep -q 'Tag_ABI_VFP_args: VFP registers' <<<"$attrs" || {
            echo "armhf: floating-point arguments not in VFP registers: $attrs" >&2
            exit 1
        }
        echo "readelf: hard-float EABI; $(grep -E 'Tag_CPU_arch:|Tag_FP_arch:|Tag_Advanced_SIMD_arch:' <<<"$attrs" | tr -s ' ' | tr '\n' ';')"
    fi
    local run=("$bin")
    [ "$arch" = "$HOST_ARCH" ] || read -r -a run <<<"$(qemu "$arch") $bin"
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
    if [ "$arch" = armhf ]; then
        # The daemon itself on the ARM1176: a WebSocket client gets stats documents.
        local port doc
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        ws_document() { timeout 60 python3 tests/install/ws-check.py 127.0.0.1 "$port" /ws; }
        daemon_check "WebSocket document" ws_document --assets-dir "$tmp/usr/share/pistats/assets"
        # HTTPS: ring's handshake and record crypto (ECDHE, AES-GCM or ChaCha20, SHA-2) on the
        # ARM1176, through its non-NEON paths.
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
            -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
            -keyout "$tmp/tls.key" -out "$tmp/tls.crt" 2>/dev/null
        https_document() { doc=$(curl -fsS --max-time 60 --cacert "$tmp/tls.crt" "https://127.0.0.1:$port/api/v1/stats"); }
        daemon_check "HTTPS answer" https_document --tls-cert "$tmp/tls.crt" --tls-key "$tmp/tls.key"
        python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["memory"]["total_gb"] > 0' "$doc"
        echo "qemu-arm -cpu arm1176: snapshot, a WebSocket document and an HTTPS document"
    fi
    SIZES+=("$arch: deb $(stat -c %s "$deb") bytes, /usr/bin/pistats $(stat -c %s "$bin") bytes")
    rm -rf "$tmp"
    # No errors and no warnings; the overrides are explained in debian/lintian-overrides.
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
