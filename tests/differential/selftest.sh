#!/bin/bash
# Checks that compare_with_qemu.sh notices differences: stand-ins for colo
# that run the guest on QEMU itself, identically or with a difference
# injected, must pass and fail respectively; a missing QEMU must fail.
#
#   selftest.sh COMPARE_SCRIPT ELF
set -u
if [ $# -ne 2 ]; then
    echo "usage: $0 COMPARE_SCRIPT ELF" >&2
    exit 2
fi
compare=$1
elf=$2
qemu=${QEMU:-qemu-system-riscv64}
work=$(mktemp -d "${TMPDIR:-/tmp}/differential-selftest.XXXXXX")
trap 'rm -rf "$work"' EXIT

make_stand_in() {   # name, shell commands run after QEMU ($status holds its exit status)
    cat >"$work/$1" <<SCRIPT
#!/bin/bash
[ "\$1" = run ] || exit 2
"$qemu" -machine virt -cpu rv64,h=false,sstc=false,zba=false,zbb=false,zbc=false,zbs=false \\
    -smp 1 -m 128M -bios none -nodefaults -display none -monitor none -serial stdio \\
    -kernel "\$2" </dev/null
status=\$?
$2
exit \$status
SCRIPT
    chmod +x "$work/$1"
}
make_stand_in identical ':'
make_stand_in extra_output 'echo "one more line"'
make_stand_in other_status 'exit 3'
make_stand_in no_output ':'
sed -i 's|-serial stdio|-serial null|' "$work/no_output"

failures=0
expect() {   # expected status, description, command...
    local expected=$1 description=$2
    shift 2
    "$@" >"$work/log" 2>&1
    local status=$?
    if [ "$status" -eq "$expected" ]; then
        echo "ok: $description (status $status)"
    else
        echo "FAIL: $description: status $status, expected $expected; output:"
        cat "$work/log"
        failures=$((failures + 1))
    fi
}
expect 0 "identical run passes" bash "$compare" "$work/identical" "$elf"
expect 1 "extra output fails" bash "$compare" "$work/extra_output" "$elf"
expect 1 "different exit status fails" bash "$compare" "$work/other_status" "$elf"
expect 1 "missing output fails" bash "$compare" "$work/no_output" "$elf"
expect 1 "missing QEMU fails" env QEMU=/nonexistent/qemu-system-riscv64 bash "$compare" "$work/identical" "$elf"
if ! grep -q "setup script" "$work/log"; then
    echo "FAIL: the missing-QEMU message does not point at the setup script"
    failures=$((failures + 1))
fi
exit $((failures != 0))
