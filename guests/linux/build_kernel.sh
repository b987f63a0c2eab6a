#!/bin/bash
# Builds the colo guest kernel (arch/riscv/boot/Image) from Debian's
# linux-source-6.1 with the fragment kernel.config, and caches it outside
# the checkout so that a second run costs nothing.
#
# Usage: guests/linux/build_kernel.sh [OUTPUT_DIR]
#
# Cache layout (COLO_CACHE defaults to /var/cache/colo):
#   $COLO_CACHE/kernel/source-<version>/   the unpacked linux-source tree, shared
#   $COLO_CACHE/kernel/<hash>/obj/         the build tree (make O=...)
#   $COLO_CACHE/kernel/<hash>/Image        the finished kernel
#   $COLO_CACHE/kernel/<hash>/config       the full .config it was built with
# where <hash> is the sha256 of kernel.config and the linux-source version:
# changing either builds a new kernel, and old ones stay until deleted.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fragment="$here/kernel.config"
source_package=linux-source-6.1
source_tarball=/usr/src/linux-source-6.1.tar.xz
cross_compile=riscv64-linux-gnu-
cache_root="${COLO_CACHE:-/var/cache/colo}/kernel"
output_dir="${1:-}"

say() { echo "build_kernel: $*"; }
die() { echo "build_kernel: error: $*" >&2; exit 1; }

# --- Everything we need must be there before we start a 10-minute build ---
missing=()
for tool in "${cross_compile}gcc" "${cross_compile}ld" "${cross_compile}objcopy" \
            gcc make bc flex bison perl tar xz sha256sum flock dpkg-query; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -f "$source_tarball" ] || missing+=("$source_tarball")
[ -f /usr/include/openssl/opensslv.h ] || missing+=("openssl headers (libssl-dev)")
[ -f /usr/include/gelf.h ] || missing+=("libelf headers (libelf-dev)")
if [ ${#missing[@]} -ne 0 ]; then
    die "missing: ${missing[*]}
build_kernel: run 'sudo bash scripts/setup.sh' (from the colo checkout) to install them"
fi
[ -f "$fragment" ] || die "no kernel config fragment at $fragment"

source_version=$(dpkg-query -W -f='${Version}' "$source_package")
config_hash=$({ cat "$fragment"; echo "$source_package $source_version"; } |
              sha256sum | cut -c1-16)
build_dir="$cache_root/$config_hash"
source_dir="$cache_root/source-$source_version"
image="$build_dir/Image"

mkdir -p "$cache_root" 2>/dev/null ||
    die "cannot create the cache directory $cache_root (set COLO_CACHE to a writable directory)"

# One build per hash at a time: a second caller waits, then finds the cache.
exec 9>"$cache_root/.lock-$config_hash"
flock 9

if [ -f "$image" ]; then
    say "cached kernel for config $config_hash ($source_package $source_version): $image"
else
    say "no cached kernel for config $config_hash; building ($source_package $source_version)"

    # Unpack the source once per version; the rename makes it all-or-nothing.
    if [ ! -f "$source_dir/Makefile" ]; then
        exec 8>"$cache_root/.lock-source-$source_version"
        flock 8
        if [ ! -f "$source_dir/Makefile" ]; then
            say "unpacking $source_tarball into $source_dir (about a minute)"
            unpack_dir=$(mktemp -d "$cache_root/.unpack.XXXXXX")
            tar -xf "$source_tarball" -C "$unpack_dir"
            rm -rf "$source_dir"
            mv "$unpack_dir/linux-source-6.1" "$source_dir"
            rm -rf "$unpack_dir"
        fi
        flock -u 8
    fi

    mkdir -p "$build_dir/obj"
    kmake=(make -C "$source_dir" O="$build_dir/obj" ARCH=riscv
           CROSS_COMPILE="$cross_compile")

    say "configuring: allnoconfig + $fragment"
    KCONFIG_ALLCONFIG="$fragment" "${kmake[@]}" -s allnoconfig

    # Kconfig drops an option whose dependencies are not met without a word;
    # say so here, or the kernel silently lacks a driver.
    dropped=0
    while IFS= read -r line; do
        if [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
            grep -qx "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}" "$build_dir/obj/.config" ||
                { say "warning: ${BASH_REMATCH[1]}=${BASH_REMATCH[2]} was not applied"; dropped=1; }
        elif [[ "$line" =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
            grep -q "^${BASH_REMATCH[1]}=" "$build_dir/obj/.config" &&
                { say "warning: ${BASH_REMATCH[1]} is set although the fragment turns it off"; dropped=1; }
        fi
    done < "$fragment"
    [ "$dropped" -eq 0 ] || say "warning: see above; the build goes on with the resulting .config"

    jobs=$(nproc)
    say "compiling Image with ${cross_compile}gcc, -j$jobs (about 10 minutes on 2 cores)"
    started=$(date +%s)
    "${kmake[@]}" -j"$jobs" Image
    cp "$build_dir/obj/.config" "$build_dir/config"
    cp "$build_dir/obj/arch/riscv/boot/Image" "$image.tmp"
    mv "$image.tmp" "$image"
    say "built in $(( $(date +%s) - started )) s: $image ($(stat -c %s "$image") bytes)"
fi

if [ -n "$output_dir" ]; then
    mkdir -p "$output_dir"
    cp "$image" "$output_dir/Image"
    say "copied to $output_dir/Image"
fi
