#!/bin/bash
# Bad input to `colo run` (and the replication commands): each case must fail with a non-zero status (not a
# crash: below 128, no sanitizer report) and a message that names the
# problem.
set -u
colo=$1 good_elf=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export COLO_RUN_DIR=$work/run    # control sockets of the VMs started here
failures=0 passed=0

expect_error() {  # NAME PATTERN -- COMMAND...
    local name=$1 pattern=$2; shift 3
    "$@" >"$work/out" 2>"$work/err" </dev/null
    local status=$?
    if [ $status -eq 0 ] || [ $status -ge 128 ]; then
        echo "FAIL $name: exit status $status"; failures=$((failures + 1)); return
    fi
    if grep -q -e AddressSanitizer -e UndefinedBehaviorSanitizer -e 'runtime error' "$work/err"; then
        echo "FAIL $name: sanitizer report"; cat "$work/err"; failures=$((failures + 1)); return
    fi
    if ! grep -q -E -e "$pattern" "$work/err"; then
        echo "FAIL $name: message does not match /$pattern/:"; cat "$work/err"
        failures=$((failures + 1)); return
    fi
    echo "ok   $name: $(head -n 1 "$work/err")"
    passed=$((passed + 1))
}

: >"$work/empty.elf"
head -c 40 "$good_elf" >"$work/truncated.elf"
echo "hello, I am not a program" >"$work/text.elf"
cp /bin/true "$work/x86.elf"
# An ELF whose program header table points past the end of the file.
python3 - "$good_elf" "$work/bad_phoff.elf" <<'PY'
import struct, sys
data = bytearray(open(sys.argv[1], 'rb').read())
struct.pack_into('<Q', data, 0x20, len(data) + 4096)   # e_phoff
open(sys.argv[2], 'wb').write(data)
PY
# An ELF whose first loadable segment sits 2 MiB into RAM (run with 1 MiB).
python3 - "$good_elf" "$work/high.elf" <<'PY'
import struct, sys
data = bytearray(open(sys.argv[1], 'rb').read())
phoff, = struct.unpack_from('<Q', data, 0x20)
phentsize, phnum = struct.unpack_from('<HH', data, 0x36)
for i in range(phnum):
    base = phoff + i * phentsize
    if struct.unpack_from('<I', data, base)[0] == 1:          # PT_LOAD
        struct.pack_into('<Q', data, base + 0x18, 0x80200000)  # p_paddr
        break
open(sys.argv[2], 'wb').write(data)
PY
"$colo" run "$good_elf" --max-instructions 1000 --save-on-exit "$work/good.colo" >/dev/null 2>&1
head -c 100 "$work/good.colo" >"$work/truncated.colo"
cp "$work/good.colo" "$work/corrupt.colo"
printf '\xff' | dd of="$work/corrupt.colo" bs=1 seek=5000 conv=notrunc 2>/dev/null

expect_error "no arguments"        'usage'                          -- "$colo"
expect_error "unknown command"     "unknown command 'fly'"          -- "$colo" fly
expect_error "no program"          'needs a VM.cfg, a PROGRAM.elf'            -- "$colo" run
expect_error "missing file"        'missing\.elf.*No such file'     -- "$colo" run "$work/missing.elf"
expect_error "empty file"          'empty\.elf.*(empty|truncated|too short)' -- "$colo" run "$work/empty.elf"
expect_error "truncated ELF"       'truncated\.elf.*(truncated|too short)' -- "$colo" run "$work/truncated.elf"
expect_error "not an ELF"          'text\.elf.*not an ELF'          -- "$colo" run "$work/text.elf"
expect_error "x86-64 ELF"          'x86\.elf.*(RISC-V|machine)'     -- "$colo" run "$work/x86.elf"
expect_error "bad header offset"   'bad_phoff\.elf.*(outside|beyond|past|truncated|bounds)' -- "$colo" run "$work/bad_phoff.elf"
expect_error "memory too large"    'memory 99999999 MiB does not fit' -- "$colo" run "$good_elf" --memory 99999999
expect_error "memory zero"         'memory 0 MiB does not fit'      -- "$colo" run "$good_elf" --memory 0
expect_error "memory not a number" "memory needs a size in MiB, got 'lots'" -- "$colo" run "$good_elf" --memory lots
expect_error "program too large for RAM" 'outside guest RAM|does not fit|outside RAM' -- "$colo" run "$work/high.elf" --memory 1
expect_error "unknown option"      "unknown option '--bogus'"       -- "$colo" run "$good_elf" --bogus
expect_error "two programs"        "unexpected argument"            -- "$colo" run "$good_elf" "$good_elf"
expect_error "missing save file"   'nothing\.colo.*No such file'    -- "$colo" run --load "$work/nothing.colo"
expect_error "truncated save file" 'truncated\.colo.*(truncated|too short|ends inside)' -- "$colo" run --load "$work/truncated.colo"
expect_error "corrupt save file"   'corrupt\.colo.*CRC mismatch'        -- "$colo" run --load "$work/corrupt.colo"
expect_error "save file as ELF"    'not an ELF'                     -- "$colo" run "$work/good.colo"
expect_error "ELF as save file"    'not a colo save file'           -- "$colo" run --load "$good_elf"
# The replication commands' arguments (checked before any VM is contacted).
expect_error "protect: bad interval"     "--interval needs 1\.\.600000 ms, got '0'" -- "$colo" protect vm 127.0.0.1:1 --interval 0
expect_error "protect: bad output delay" "--output-delay needs 0\.\.600000 ms, got '-1'" -- "$colo" protect vm 127.0.0.1:1 --output-delay -1
expect_error "protect: delay not a number" "--output-delay needs 0\.\.600000 ms, got 'soon'" -- "$colo" protect vm 127.0.0.1:1 --output-delay soon
expect_error "protect: no destination"   'usage: colo protect NAME HOST:PORT'  -- "$colo" protect vm
expect_error "checkpoint: no VM"         'no VM named nosuchvm is running'    -- "$colo" checkpoint nosuchvm
expect_error "checkpoint: two names"     'usage: colo checkpoint NAME'        -- "$colo" checkpoint a b

echo "$passed passed, $failures failed"
[ $failures -eq 0 ]
