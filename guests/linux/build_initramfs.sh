#!/bin/bash
# Builds the guest userland (one static /init holding every service) with
# the RISC-V cross compiler and packs it, with the directories and
# /dev/console it needs, into an uncompressed newc cpio. No root needed.
# It takes a few seconds, so it is simply rebuilt each time.
#
# Usage: guests/linux/build_initramfs.sh OUTPUT.cpio
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cross_compile=riscv64-linux-gnu-
say() { echo "build_initramfs: $*"; }
die() { echo "build_initramfs: error: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUTPUT.cpio"
output=$1

missing=()
for tool in "${cross_compile}gcc" "${cross_compile}strip" python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -f /usr/riscv64-linux-gnu/lib/libc.a ] || missing+=("riscv64 static glibc (libc6-dev-riscv64-cross)")
if [ ${#missing[@]} -ne 0 ]; then
    die "missing: ${missing[*]}
build_initramfs: run 'sudo bash scripts/setup.sh' (from the colo checkout) to install them"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sources=(init.c kvstore.c kvlog.c echo.c stream.c churn.c util.c)
say "compiling /init from ${sources[*]}"
# Debian's cross glibc is rv64gc/lp64d: the guest needs an RV64GC hart.
(cd "$here" && "${cross_compile}gcc" -std=c17 -D_GNU_SOURCE -O2 -static \
    -Wall -Wextra -Werror -o "$work/init" "${sources[@]}")
"${cross_compile}strip" "$work/init"

cat > "$work/initramfs.list" <<EOF
# The guest's whole root file system.
dir  /dev  0755 0 0
# Opened by the kernel as /init's stdin, stdout and stderr.
nod  /dev/console 0600 0 0 c 5 1
dir  /proc 0755 0 0
dir  /sys  0755 0 0
dir  /tmp  1777 0 0
file /init $work/init 0755 0 0
EOF

mkdir -p "$(dirname "$output")"
python3 "$here/mkcpio.py" "$work/initramfs.list" "$output.tmp"
mv "$output.tmp" "$output"
say "wrote $output ($(stat -c %s "$output") bytes; /init is $(stat -c %s "$work/init") bytes)"
