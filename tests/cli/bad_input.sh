#!/bin/bash
# Bad input to `colo run` (and the replication commands): each case must fail with a non-zero status (not a
# crash: below 128, no sanitizer report) and a message that names the
# problem.
#   bad_input.sh COLO GOOD_ELF GUEST_PANIC_ELF
set -u
colo=$1 good_elf=$2 panic_elf=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export COLO_RUN_DIR=$work/run    # control sockets of the VMs started here
failures=0 passed=0

expect_error() {  # NAME PATTERN -- COMMAND...
    local name=$1 pattern=$2; shift 3
    "$@" >"$work/out" 2>"$work/err" </dev/null
    local status=$?
    last_status=$status
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

# A Linux VM's configuration in $work (memory 64, console none).
vm_cfg() {  # NAME "KEY = VALUE" LINES...
    local name=$1; shift
    { echo "name = \"$name\""; echo "memory = 64"; echo 'console = "none"'; printf '%s\n' "$@"; } >"$work/$name.cfg"
    echo "$work/$name.cfg"
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
expect_error "protect: bad connect timeout" "--connect-timeout needs 1\.\.600000 ms, got '0'" -- "$colo" protect vm 127.0.0.1:1 --connect-timeout 0
expect_error "protect: bad wait timeout" "--wait-timeout needs 0\.\.3600000 ms, got 'long'" -- "$colo" protect vm 127.0.0.1:1 --wait-timeout long
expect_error "protect: no VM"            'no VM named nosuchvm is running'    -- "$colo" protect nosuchvm 127.0.0.1:1
# protect --help documents its exit statuses.
if "$colo" protect --help >"$work/out" 2>&1 && grep -q "^  3  the initial copy had not started within --wait-timeout" "$work/out" &&
    grep -q "^  1  protection failed" "$work/out"; then
    echo "ok   protect --help: exit statuses"; passed=$((passed + 1))
else
    echo "FAIL protect --help: no exit statuses"; cat "$work/out"; failures=$((failures + 1))
fi
expect_error "checkpoint: no VM"         'no VM named nosuchvm is running'    -- "$colo" checkpoint nosuchvm
expect_error "checkpoint: two names"     'usage: colo checkpoint NAME'        -- "$colo" checkpoint a b

# Boot inputs of a Linux VM: each is checked (and named) before the guest
# runs. A file with just a RISC-V Linux Image header passes the kernel
# checks; image_size (offset 16) says how much memory it needs.
make_image() {  # PATH IMAGE_SIZE
    python3 - "$1" "$2" <<'PY'
import struct, sys
header = bytearray(64)
struct.pack_into('<Q', header, 16, int(sys.argv[2]))   # image_size
header[48:56] = b'RISCV\0\0\0'
header[56:60] = b'RSC\x05'
open(sys.argv[1], 'wb').write(bytes(header) + bytes(4096))
PY
}
make_image "$work/Image" 8388608
make_image "$work/huge-Image" 100663296          # needs 96 MiB
yes 'not a kernel' | head -c 100000 >"$work/garbage-Image"
: >"$work/empty-Image"
truncate -s 40M "$work/big-initrd"                 # more than 64 MiB of RAM leaves
expect_error "kernel missing"      'kernel .*/no-Image.*No such file' -- \
    "$colo" run "$(vm_cfg kernel-missing 'kernel = "no-Image"')"
expect_error "kernel empty"        'kernel .*/empty-Image is empty' -- \
    "$colo" run "$(vm_cfg kernel-empty 'kernel = "empty-Image"')"
expect_error "kernel garbage"      'kernel .*/garbage-Image is not a RISC-V Linux Image' -- \
    "$colo" run "$(vm_cfg kernel-garbage 'kernel = "garbage-Image"')"
cp "$good_elf" "$work/vmlinux"
expect_error "kernel is an ELF"    'kernel .*/vmlinux is an ELF file' -- \
    "$colo" run "$(vm_cfg kernel-elf 'kernel = "vmlinux"')"
expect_error "kernel too large"    'kernel .*/huge-Image needs 96 MiB' -- \
    "$colo" run "$(vm_cfg kernel-huge 'kernel = "huge-Image"')"
expect_error "initrd missing"      'initrd .*/no-initrd.*No such file' -- \
    "$colo" run "$(vm_cfg initrd-missing 'kernel = "Image"' 'initrd = "no-initrd"')"
expect_error "initrd too large"    'initrd .*/big-initrd is too large: 40 MiB' -- \
    "$colo" run "$(vm_cfg initrd-big 'kernel = "Image"' 'initrd = "big-initrd"')"
expect_error "firmware missing"    'firmware: .*/no-fw\.elf.*No such file' -- \
    "$colo" run "$(vm_cfg firmware-missing 'kernel = "Image"' 'firmware = "no-fw.elf"')"
expect_error "disk image missing"  'image .*/no-disk\.img.*No such file' -- \
    "$colo" run "$(vm_cfg disk-missing 'kernel = "Image"' 'disks = [ "path=no-disk.img" ]')"

# A guest whose kernel panics (pvpanic) ends the run with status 1 and
# says so, naming the program.
expect_error "guest panic"         "guest_panic: the guest panicked \\(pvpanic\\); program .*guest_panic\\.elf" -- \
    "$colo" run "$panic_elf"
if [ "$last_status" -ne 1 ]; then
    echo "FAIL guest panic: exit status $last_status, not 1 (the runtime-error status)"; failures=$((failures + 1))
fi

# Subscribers hear of it: a client subscribed before the (paused) guest
# resumes gets a guest-panicked event before the socket closes.
"$colo" run "$panic_elf" --name panic-events --paused >/dev/null 2>"$work/panic-events.err" </dev/null &
panic_vm=$!
if python3 - "$COLO_RUN_DIR/panic-events.sock" <<'PY'
import json, os, socket, sys, time
for _ in range(200):
    if os.path.exists(sys.argv[1]):
        break
    time.sleep(0.05)
client = socket.socket(socket.AF_UNIX)
client.settimeout(20)
client.connect(sys.argv[1])
client.sendall(b'{"command":"subscribe"}\n{"command":"resume"}\n')
received = b''
while True:
    data = client.recv(4096)
    if not data:
        break
    received += data
events = [json.loads(line).get('event') for line in received.splitlines() if line.strip()]
print('events:', events)
sys.exit(0 if 'guest-panicked' in events else 1)
PY
then
    echo "ok   guest panic event"; passed=$((passed + 1))
else
    echo "FAIL guest panic event: no guest-panicked event"; failures=$((failures + 1))
fi
wait "$panic_vm"

# `colo metrics`: Prometheus text from a running (paused) VM, and a clear
# message for a VM that is not there.
expect_error "metrics: no VM"            'colo metrics: no VM named nosuchvm is running' -- "$colo" metrics nosuchvm
expect_error "metrics: no name"          "colo metrics: needs the VM's NAME" -- "$colo" metrics
"$colo" run "$good_elf" --name metrics-vm --paused >/dev/null 2>"$work/metrics-vm.err" </dev/null &
metrics_vm=$!
for _ in $(seq 200); do [ -S "$COLO_RUN_DIR/metrics-vm.sock" ] && break; sleep 0.05; done
if "$colo" metrics metrics-vm >"$work/metrics.txt" 2>"$work/err" &&
    grep -qx 'colo_vm_state{vm="metrics-vm",state="paused"} 1' "$work/metrics.txt" &&
    grep -qx '# TYPE colo_instructions_total counter' "$work/metrics.txt" &&
    grep -qx 'colo_memory_bytes{vm="metrics-vm"} [0-9]*' "$work/metrics.txt" &&
    ! grep -q -e '^colo_replication' -e 'runtime error' -e Sanitizer "$work/metrics.txt" "$work/err" &&
    python3 - "$work/metrics.txt" <<'PY'
import re, sys
# Every line per the exposition format 0.0.4, as colo writes it.
sample = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*\{vm="metrics-vm"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")*\} '
                    r'([-+]?[0-9.eE+-]+|NaN|[+-]Inf)')
comment = re.compile(r'# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge))')
bad = [line for line in open(sys.argv[1]).read().splitlines() if not (sample.fullmatch(line) or comment.fullmatch(line))]
for line in bad:
    print('not exposition format:', line)
sys.exit(1 if bad else 0)
PY
then
    echo "ok   metrics of a running VM"; passed=$((passed + 1))
else
    echo "FAIL metrics of a running VM:"; cat "$work/metrics.txt" "$work/err"; failures=$((failures + 1))
fi
"$colo" quit metrics-vm >/dev/null 2>&1
wait "$metrics_vm"

# The same through OpenSBI and a Linux VM's configuration: a stand-in
# "kernel" (an Image header whose code jumps past it, then stores PANICKED
# to pvpanic) ends `colo run VM.cfg` with a message naming kernel and disks.
firmware=/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.elf
if [ -f "$firmware" ]; then
    python3 - "$work/panic-Image" <<'PY'
import struct, sys
image = bytearray(4096)
struct.pack_into('<I', image, 0, 0x0400006f)       # j 64 (past the header)
struct.pack_into('<Q', image, 16, len(image))      # image_size
image[48:56] = b'RISCV\0\0\0'
image[56:60] = b'RSC\x05'
struct.pack_into('<4I', image, 64,
                 0x001022b7,                        # lui  t0, 0x102      (pvpanic-mmio)
                 0x00100313,                        # li   t1, 1         (PANICKED)
                 0x00628023,                        # sb   t1, 0(t0)
                 0x0000006f)                        # j    .
open(sys.argv[1], 'wb').write(image)
PY
    truncate -s 1M "$work/root.img" "$work/seed.img"
    expect_error "guest kernel panic" "panic-vm: the guest's kernel panicked \\(its console is off\\); kernel .*/panic-Image, disks: .*/root\\.img, .*/seed\\.img" -- \
        "$colo" run "$(vm_cfg panic-vm 'kernel = "panic-Image"' 'disks = [ "path=root.img", "path=seed.img,readonly" ]')"
else
    echo "skip guest kernel panic: no OpenSBI at $firmware"
fi

echo "$passed passed, $failures failed"
[ $failures -eq 0 ]
