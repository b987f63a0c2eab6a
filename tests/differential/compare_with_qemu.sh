#!/bin/bash
# Differential test: runs a bare-metal guest ELF on colo and on QEMU's virt
# machine and fails on any difference in UART output or exit status.
#
#   compare_with_qemu.sh COLO ELF
#
# COLO is the colo program (`COLO run ELF`). QEMU models the same machine:
# RV64GC with S and U modes (the H extension and Sstc, on by default in
# QEMU, are turned off; so are the bit-manipulation extensions), the virt
# memory map, no firmware (-bios none: the ELF starts at 0x80000000 in
# M-mode), the UART on stdout and nothing else there.
#
# Environment: QEMU (default qemu-system-riscv64), DIFFERENTIAL_TIMEOUT
# (seconds for each run, default 60), COLO_RUN_ARGS (extra arguments for
# `colo run`, before the ELF).
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 COLO ELF" >&2
    exit 2
fi
colo=$1
elf=$2
qemu=${QEMU:-qemu-system-riscv64}
timeout_seconds=${DIFFERENTIAL_TIMEOUT:-60}
name=$(basename "$elf")

if ! command -v "$qemu" >/dev/null 2>&1; then
    echo "FAIL: $qemu is not installed, so there is no reference to compare" >&2
    echo "      with. Run the project's setup script, scripts/setup.sh (it" >&2
    echo "      installs Debian's qemu-system-misc, which provides $qemu)." >&2
    exit 1
fi
if [ ! -x "$colo" ]; then
    echo "FAIL: colo program '$colo' not found or not executable" >&2
    exit 1
fi
if [ ! -f "$elf" ]; then
    echo "FAIL: guest program '$elf' not found" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/differential.XXXXXX")
trap 'rm -rf "$work"' EXIT

timeout --kill-after=5 "$timeout_seconds" "$qemu" \
    -machine virt -cpu rv64,h=false,sstc=false,zba=false,zbb=false,zbc=false,zbs=false \
    -smp 1 -m 128M -bios none -nodefaults -display none -monitor none \
    -serial stdio -kernel "$elf" \
    </dev/null >"$work/qemu.out" 2>"$work/qemu.err"
qemu_status=$?

# shellcheck disable=SC2086
timeout --kill-after=5 "$timeout_seconds" "$colo" run ${COLO_RUN_ARGS:-} "$elf" \
    </dev/null >"$work/colo.out" 2>"$work/colo.err"
colo_status=$?

failed=0
if [ "$qemu_status" -eq 124 ] || [ "$qemu_status" -eq 137 ]; then
    echo "FAIL: QEMU (the reference) timed out after ${timeout_seconds}s on $name" >&2
    failed=1
fi
if [ "$colo_status" -eq 124 ] || [ "$colo_status" -eq 137 ]; then
    echo "FAIL: colo timed out after ${timeout_seconds}s on $name" >&2
    failed=1
fi
if ! cmp -s "$work/qemu.out" "$work/colo.out"; then
    echo "FAIL: UART output differs (--- QEMU, +++ colo):" >&2
    diff -u --label "qemu: $name" --label "colo: $name" "$work/qemu.out" "$work/colo.out" >&2
    failed=1
fi
if [ "$qemu_status" -ne "$colo_status" ]; then
    echo "FAIL: exit status differs: QEMU $qemu_status, colo $colo_status" >&2
    failed=1
fi

if [ "$failed" -ne 0 ]; then
    for side in qemu colo; do
        if [ -s "$work/$side.err" ]; then
            echo "--- $side stderr:" >&2
            head -c 4000 "$work/$side.err" >&2
        fi
    done
    exit 1
fi
lines=$(wc -l <"$work/colo.out")
echo "$name: colo matches QEMU ($lines lines of output, exit status $colo_status)"
if [ "$qemu_status" -ne 0 ]; then
    echo "note: both exited with status $qemu_status (the guest's own checks failed on both)"
fi
exit 0
