#!/bin/bash
# Builds everything the Linux guest needs into OUTPUT_DIR:
#   OUTPUT_DIR/Image            the kernel (cached, see build_kernel.sh)
#   OUTPUT_DIR/initramfs.cpio   /init and the services
#
# Usage: guests/linux/build.sh OUTPUT_DIR
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] || { echo "usage: $0 OUTPUT_DIR" >&2; exit 1; }
output_dir=$1
mkdir -p "$output_dir"

"$here/build_kernel.sh" "$output_dir"
"$here/build_initramfs.sh" "$output_dir/initramfs.cpio"
echo "build: guest ready in $output_dir (Image, initramfs.cpio)"
