#!/bin/bash
# Sets up everything on a fresh Debian 12 machine (as root), builds colo,
# and runs the demo: a bare-metal RISC-V program on colo's machine, then the
# same program stopped half-way, saved, and finished in a new process.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
[ -d build ] || meson setup build --buildtype=release
ninja -C build

echo
echo "== colo run build/guests/demo/hello.elf"
build/programs/colo run build/guests/demo/hello.elf

echo
echo "== the same program, stopped after 300,000 instructions and saved ..."
state=$(mktemp --suffix=.colo)
trap 'rm -f "$state"' EXIT
build/programs/colo run build/guests/demo/hello.elf --deterministic \
    --max-instructions 300000 --save-on-exit "$state"
echo
echo "== ... and finished from the saved state in a new process"
build/programs/colo run --load "$state"
