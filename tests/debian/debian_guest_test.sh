#!/bin/bash
# The Debian guest (trixie riscv64: PostgreSQL 17, Redis) on colo and on
# QEMU, with clients in another network namespace (needs root: namespaces,
# TAP).
#
#   client ns: veth0 10.95.0.1 ---- veth1 -- br0 -- tapA -- colo ("host A")
#                                           \--- tapB -- colo ("host B")
#                                           \--- tapQ -- qemu-system-riscv64
#
# 1. colo boots the image read-write; Redis and PostgreSQL answer; the
#    guest's clock is the host's (the goldfish RTC); "poweroff" on the
#    console stops the services and leaves an ext4 image e2fsck finds clean.
# 2. QEMU boots the same image: the row colo's run committed is there; a
#    clean poweroff again, e2fsck again.
# 3. colo boots it read-only (services in RAM); a psql session makes a
#    TEMP table (it exists only in that connection) and Redis a key; the VM
#    is saved and restored; then live-migrated to B: the key and the same
#    psql session (its TEMP table) are there after each.
# 4. A missing disk, a missing kernel and a corrupt root each give a clear
#    error naming the file, not a hang.
# Usage: tests/debian/debian_guest_test.sh COLO KERNEL IMAGE
set -uo pipefail
colo=$(realpath "$1") kernel=$(realpath "$2") image=$(realpath "$3")
here=$(cd "$(dirname "$0")" && pwd)
boot_timeout=240 # an ASan build of colo, on a loaded 2-core machine
guest=10.95.0.2
firmware=/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.elf

source "$here/../support/e2e_lib.sh"
e2e_begin debian dt 10.95.0.1/24 tapA tapB tapQ
mkdir -p "$work/A" "$work/B"

make_config() { # TAP DISK ROOT_MODE(rw|ro) [KERNEL]
    local readonly_option=""
    [ "$3" = ro ] && readonly_option=",readonly"
    cat <<CFG
name = "debian"
memory = 512
kernel = "${4:-$kernel}"
cmdline = "console=ttyS0 quiet root=/dev/vda $3 init=/sbin/colo-init colo.ip=$guest/24"
disks = [ "path=$2$readonly_option" ]
nics = [ "tap=$1,mac=52:54:00:de:b1:02" ]
console = "stdio"
CFG
}

redis() { on_client timeout 20 redis-cli -h "$guest" "$@"; }
sql() { on_client timeout 60 psql -h "$guest" -U postgres -X -q -A -t -c "$1"; }

# A psql session that stays open across save, restore and migration: its
# input is a FIFO, its output a file; `session QUERY MARK` sends QUERY and
# waits for MARK in the output.
start_session() {
    mkfifo "$work/session.in"
    # stdbuf: psql's stdio would hold its answers back (not a terminal).
    ip netns exec "$client_ns" stdbuf -oL psql -h "$guest" -U postgres -X -q -A -t -v ON_ERROR_STOP=0 \
        <"$work/session.in" >"$work/session.out" 2>&1 &
    session_pid=$!; pids+=("$session_pid")
    exec 7>"$work/session.in"
}
session() { # QUERY MARK [TIMEOUT]
    echo "$1" >&7
    local started=$SECONDS
    while ! grep -q "$2" "$work/session.out"; do
        ((SECONDS - started > ${3:-60})) && return 1
        kill -0 "$session_pid" 2>/dev/null || return 1
        sleep 0.1
    done
}

# Starts a colo run with its console input on a FIFO (fd 8): "poweroff".
start_colo() { # RUN_DIR CFG LOG [colo run options...]
    local run_dir=$1 cfg=$2 log=$3; shift 3
    rm -f "$work/console.in"; mkfifo "$work/console.in"
    COLO_RUN_DIR=$run_dir ip netns exec "$hosts_ns" "$colo" run "$@" "$cfg" <"$work/console.in" >"$log" 2>&1 &
    colo_pid=$!; pids+=("$colo_pid")
    exec 8>"$work/console.in"
}

boot_seconds() { # LOG: the guest's own "services ready (T s since boot)"
    grep -o "services ready ([0-9.]* s" "$1" | grep -o "[0-9.]*" | head -1
}

check_services() { # WHERE
    local reply
    reply=$(redis SET greeting "hello from $1" 2>&1) && [ "$reply" = OK ] &&
        [ "$(redis GET greeting 2>&1)" = "hello from $1" ] &&
        pass "$1: Redis answers SET and GET from the client namespace" ||
        fail "$1: Redis: '$reply' / '$(redis GET greeting 2>&1)'"
    reply=$(sql "SELECT version()" 2>&1)
    [[ "$reply" == "PostgreSQL 17"* ]] && pass "$1: PostgreSQL answers: ${reply:0:40}..." ||
        fail "$1: PostgreSQL: '$reply'"
}

check_clock() { # WHERE: the guest's clock against the host's
    local guest_now host_now
    guest_now=$(sql "SELECT floor(extract(epoch FROM now()))" 2>&1)
    host_now=$(date +%s)
    if [[ "$guest_now" =~ ^[0-9]+$ ]] && ((guest_now - host_now < 10 && host_now - guest_now < 10)); then
        pass "$1: the guest's clock is the host's ($(date -u -d "@$guest_now" '+%F %T') UTC, $((guest_now - host_now)) s off)"
    else
        fail "$1: the guest's clock says '$guest_now', the host's $host_now"
    fi
}

check_devices() { # WHERE: what the guest's kernel found (read through PostgreSQL)
    local rng rtc
    rng=$(sql "SELECT pg_read_file('/sys/class/misc/hw_random/rng_current')" 2>&1)
    rtc=$(sql "SELECT string_agg(f, ' ') FROM pg_ls_dir('/sys/bus/platform/drivers/goldfish_rtc') f WHERE f LIKE '%rtc%'" 2>&1)
    [[ "$rng" == virtio_rng* ]] && pass "$1: the guest's hardware RNG is virtio-rng ($rng)" ||
        fail "$1: the guest's hardware RNG: '$rng'"
    [ "$rtc" = 101000.rtc ] && pass "$1: the guest's goldfish RTC driver has the device at 0x101000" ||
        fail "$1: the guest's goldfish RTC driver has: '$rtc'"
}

poweroff_and_fsck() { # WHERE PID DISK
    echo poweroff >&8
    local status=0
    wait_exit "$2" 120 || status=$?
    exec 8>&-
    if [ "$status" -eq 124 ]; then
        fail "$1: no poweroff within 120 s"; kill -9 "$2" 2>/dev/null; return
    fi
    [ "$status" -eq 0 ] && pass "$1: the guest powered off cleanly (exit 0)" ||
        fail "$1: exit status $status after poweroff"
    local fsck
    if fsck=$(e2fsck -fn "$3" 2>&1); then
        pass "$1: e2fsck -fn finds the image clean ($(echo "$fsck" | tail -1 | cut -d: -f2- | xargs))"
    else
        fail "$1: e2fsck -fn: $(echo "$fsck" | tail -5)"
    fi
}

# ---- 1. colo boots the image read-write --------------------------------------
cp --sparse=always "$image" "$work/root.ext4"
make_config tapA "$work/root.ext4" rw >"$work/rw.cfg"
start_colo "$work/A" "$work/rw.cfg" "$work/colo-rw.log"
if wait_for "$work/colo-rw.log" "colo-guest: services ready" "colo boot" "$colo_pid"; then
    pass "colo: the Debian guest booted; both services ready $(boot_seconds "$work/colo-rw.log") s after the kernel started ($(grep -o 'PostgreSQL ready.*\|Redis ready.*' "$work/colo-rw.log" | tr '\n' ' '))"
    check_services colo
    check_clock colo
    check_devices colo
    reply=$(sql "CREATE TABLE visits (host text, at timestamptz DEFAULT now()); INSERT INTO visits (host) VALUES ('colo'); SELECT count(*) FROM visits" 2>&1)
    [ "$reply" = 1 ] && pass "colo: a row committed in PostgreSQL" || fail "colo: PostgreSQL insert: '$reply'"
    poweroff_and_fsck colo "$colo_pid" "$work/root.ext4"
else
    exit 1
fi

# ---- 2. QEMU boots the same image ---------------------------------------------
rm -f "$work/console.in"; mkfifo "$work/console.in"
ip netns exec "$hosts_ns" qemu-system-riscv64 -M virt -m 512 -smp 1 -nographic -no-reboot \
    -bios "$firmware" -kernel "$kernel" \
    -append "console=ttyS0 quiet root=/dev/vda rw init=/sbin/colo-init colo.ip=$guest/24" \
    -drive "file=$work/root.ext4,format=raw,if=none,id=d0" -device virtio-blk-device,drive=d0 \
    -netdev tap,id=n0,ifname=tapQ,script=no,downscript=no -device virtio-net-device,netdev=n0,mac=52:54:00:de:b1:02 \
    -device virtio-rng-device <"$work/console.in" >"$work/qemu.log" 2>&1 &
qemu_pid=$!; pids+=("$qemu_pid")
exec 8>"$work/console.in"
if wait_for "$work/qemu.log" "colo-guest: services ready" "QEMU boot" "$qemu_pid" 600; then
    pass "QEMU: the Debian guest booted; both services ready $(boot_seconds "$work/qemu.log") s after the kernel started"
    check_services QEMU
    reply=$(sql "SELECT host FROM visits" 2>&1)
    [ "$reply" = colo ] && pass "QEMU: the row colo's run committed is on the disk" ||
        fail "QEMU: the row colo's run committed: '$reply'"
    poweroff_and_fsck QEMU "$qemu_pid" "$work/root.ext4"
fi

# ---- 3. save, restore and live migration of a running VM ----------------------
make_config tapA "$work/root.ext4" ro >"$work/a.cfg"
make_config tapB "$work/root.ext4" ro >"$work/b.cfg"
start_colo "$work/A" "$work/a.cfg" "$work/colo-a.log"
wait_for "$work/colo-a.log" "colo-guest: services ready" "read-only boot" "$colo_pid" || exit 1
pass "colo: booted with a read-only root (services write to tmpfs)"
start_session
if session "CREATE TEMP TABLE session_marks (n int); INSERT INTO session_marks VALUES (1); SELECT 'marks=' || count(*) FROM session_marks;" "marks=1"; then
    pass "a psql session made a TEMP table (it lives only in this connection)"
else
    fail "psql session: $(cat "$work/session.out")"
fi
[ "$(redis SET survivor "kept in RAM" 2>&1)" = OK ] || fail "Redis SET before the save"

if on_host "$work/A" "$colo" save debian "$work/debian.colo" >"$work/save.log" 2>&1 &&
    wait_exit "$colo_pid" 60; then
    pass "colo save: $(tail -1 "$work/save.log")"
else
    fail "colo save: $(cat "$work/save.log")"
fi
exec 8>&-
start_colo "$work/A" "$work/a.cfg" "$work/colo-restored.log" --load "$work/debian.colo"
sleep 1
if [ "$(redis GET survivor 2>&1)" = "kept in RAM" ]; then
    pass "restored: Redis still has the key"
else
    fail "restored: Redis GET survivor: '$(redis GET survivor 2>&1)'"; tail -5 "$work/colo-restored.log"
fi
session "INSERT INTO session_marks VALUES (2); SELECT 'marks=' || count(*) FROM session_marks;" "marks=2" &&
    pass "restored: the same psql session goes on (its TEMP table has both rows)" ||
    fail "restored: psql session: $(tail -3 "$work/session.out")"

on_host "$work/B" "$colo" receive --listen 127.0.0.1:47300 "$work/b.cfg" </dev/null >"$work/colo-b.log" 2>&1 &
target_pid=$!; pids+=("$target_pid")
wait_for "$work/colo-b.log" "waiting for a migration" "the migration's target listening" "$target_pid"
if on_host "$work/A" "$colo" migrate debian 127.0.0.1:47300 >"$work/migrate.log" 2>&1 &&
    wait_exit "$colo_pid" 60; then
    pass "colo migrate: $(tr '\r' '\n' <"$work/migrate.log" | grep -v '^ *\[' | tail -1)"
else
    fail "colo migrate: $(cat "$work/migrate.log")"
fi
exec 8>&-
if [ "$(redis GET survivor 2>&1)" = "kept in RAM" ]; then
    pass "migrated: Redis still has the key"
else
    fail "migrated: Redis GET survivor: '$(redis GET survivor 2>&1)'"
fi
session "INSERT INTO session_marks VALUES (3); SELECT 'marks=' || count(*) FROM session_marks;" "marks=3" &&
    pass "migrated: the same psql session goes on (three rows in its TEMP table)" ||
    fail "migrated: psql session: $(tail -3 "$work/session.out")"
check_clock "migrated"
exec 7>&-
on_host "$work/B" "$colo" quit debian >/dev/null 2>&1
wait_exit "$target_pid" 30 >/dev/null

# ---- 4. missing or corrupt input: a clear error, not a hang -------------------
expect_error() { # WHAT CFG PATTERN TIMEOUT
    local status=0
    start_colo "$work/A" "$2" "$work/bad.log"
    exec 8>&-
    wait_exit "$colo_pid" "$4" || status=$?
    if [ "$status" -eq 124 ]; then
        fail "$1: colo still runs after $4 s"; kill -9 "$colo_pid" 2>/dev/null
    elif [ "$status" -ne 0 ] && grep -q "$3" "$work/bad.log"; then
        pass "$1: exit $status, $(grep "$3" "$work/bad.log" | head -1)"
    else
        fail "$1: exit $status, output: $(tail -5 "$work/bad.log")"
    fi
}
make_config tapA "$work/no-such.ext4" ro >"$work/missing-disk.cfg"
expect_error "a missing disk image" "$work/missing-disk.cfg" "no-such.ext4" 30
make_config tapA "$work/root.ext4" ro "$work/no-such-Image" >"$work/missing-kernel.cfg"
expect_error "a missing kernel" "$work/missing-kernel.cfg" "no-such-Image" 30
cp --sparse=always "$image" "$work/corrupt.ext4"
dd if=/dev/zero of="$work/corrupt.ext4" bs=1M count=8 conv=notrunc status=none
make_config tapA "$work/corrupt.ext4" ro >"$work/corrupt.cfg"
expect_error "a root image without a file system" "$work/corrupt.cfg" "panicked.*corrupt.ext4" 120

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
