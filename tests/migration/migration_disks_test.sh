#!/bin/bash
# `colo migrate --copy-disks`: a running Linux VM moves to another host
# together with its disk (needs root: namespaces, TAP). The test guest's
# KV service writes every SET to a log on its disk (/dev/vda), flushed
# before it answers OK, and replays the log when it starts; so a fresh
# boot of the destination's image shows whether the disk really moved.
# The topology is migration_test.sh's: host A (tapA, diskA, empty) and
# host B (tapB, diskB: 16 MiB of random bytes) in one namespace, each with
# its own COLO_RUN_DIR.
#
# 1. --copy-disks on one side only (the source, then the destination):
#    both sides fail, the destination says why, the source VM keeps
#    running and answers every key, and B's image is untouched.
# 2. A client writes keys on one connection before and during the
#    migration; the VM moves with its disk (every one of the 256 chunks
#    differs, so all are sent); the connection carries on at B and every
#    acknowledged key reads back there.
# 3. B's guest powers off; a fresh `colo run` of B's image alone answers
#    every key acknowledged before and during the migration.
# Usage: tests/migration/migration_disks_test.sh COLO GUEST_DIR
set -uo pipefail
colo=$(realpath "$1") guest_dir=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
boot_timeout=120
guest=10.94.0.2

source "$here/../support/e2e_lib.sh"
source "$here/../support/kv_keys.sh"
e2e_begin migration-disks md 10.94.0.1/24 tapA tapB

truncate -s 16M "$work/diskA.img"
head -c 16M /dev/urandom >"$work/diskB.img"
make_config() {  # TAP DISK
    cat <<CFG
name = "moving"
memory = 128
kernel = "$guest_dir/Image"
initrd = "$guest_dir/initramfs.cpio"
cmdline = "console=ttyS0 colo.ip=$guest/24 colo.churn=2000"
disks = [ "path=$2" ]
nics = [ "tap=$1,mac=52:54:00:aa:bb:02" ]
console = "stdio"
CFG
}
make_config tapA "$work/diskA.img" >"$work/a.cfg"
make_config tapB "$work/diskB.img" >"$work/b.cfg"
mkdir -p "$work/A" "$work/B1" "$work/B2" "$work/B" "$work/B3"

vm_state() {  # RUN_DIR
    on_host "$1" "$colo" status moving --json 2>/dev/null |
        python3 -c "import json,sys; print(json.load(sys.stdin).get('state',''))" 2>/dev/null
}

last_message() {  # FILE: its last line that is not a progress line
    tr '\r' '\n' <"$1" | grep -v '^\[' | grep -v '^disks:' | grep -v '^$' | tail -1
}

on_host "$work/A" "$colo" run "$work/a.cfg" >"$work/source.log" 2>&1 </dev/null &
source_pid=$!; pids+=("$source_pid")
wait_for "$work/source.log" "colo-guest: services ready" "source boot" "$source_pid" || exit 1
pass "source VM booted with an empty 16 MiB disk"
run_client before 60
sleep 3
finish_client before "before the migration"
diskB_before=$(sha256sum <"$work/diskB.img")

# ---- 1. --copy-disks on one side only: both refuse, the VM runs on ----
one_side_only() {  # PORT RUN_DIR RECEIVE_OPTION MIGRATE_OPTION WHAT EXPECTED_DESTINATION_ERROR
    local port=$1 run_dir=$2 what=$5 expected=$6
    on_host "$run_dir" "$colo" receive --listen "127.0.0.1:$port" "$work/b.cfg" $3 >"$run_dir/target.log" 2>&1 </dev/null &
    local target_pid=$!; pids+=("$target_pid")
    wait_for "$run_dir/target.log" "waiting for a migration" "$what: target listening" "$target_pid" || return
    on_host "$work/A" "$colo" migrate moving "127.0.0.1:$port" $4 >"$run_dir/migrate.log" 2>"$run_dir/migrate.err"
    local status=$? message
    message=$(last_message "$run_dir/migrate.err")
    if [ "$status" -ne 0 ] && echo "$message" | grep -q "keeps running here"; then
        pass "$what: colo migrate failed: $message"
    else
        fail "$what: colo migrate: status $status, '$message'"
    fi
    wait_exit "$target_pid" 60; status=$?
    message=$(grep "colo run\|colo receive" "$run_dir/target.log" | tail -1)
    if [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && echo "$message" | grep -q -- "$expected"; then
        pass "$what: colo receive failed: $message"
    else
        fail "$what: colo receive: status $status, '$message'"
        kill -9 "$target_pid" 2>/dev/null
    fi
    [ "$(vm_state "$work/A")" = running ] && pass "$what: the source VM is still running" ||
        fail "$what: source state '$(vm_state "$work/A")'"
    check_keys "$what: the source still answers" before
}
one_side_only 47010 "$work/B1" "" --copy-disks "source with --copy-disks only" \
    "the source copies its disks: this side must receive with --copy-disks"
one_side_only 47011 "$work/B2" --copy-disks "" "destination with --copy-disks only" \
    "the source does not send them: migrate with --copy-disks"
[ "$(sha256sum <"$work/diskB.img")" = "$diskB_before" ] &&
    pass "the refused migrations left B's image untouched" || fail "a refused migration changed B's image"

# ---- 2. the VM moves with its disk under a writing client ----
on_host "$work/B" "$colo" receive --listen 127.0.0.1:47012 "$work/b.cfg" --copy-disks \
    >"$work/target.log" 2>&1 </dev/null &
target_pid=$!; pids+=("$target_pid")
wait_for "$work/target.log" "waiting for a migration with its disks" "target listening" "$target_pid" || exit 1
run_client during 120
sleep 2
if on_host "$work/A" "$colo" migrate moving 127.0.0.1:47012 --copy-disks >"$work/migrate.log" 2>"$work/migrate.err"; then
    pass "$(head -1 "$work/migrate.log")"
else
    fail "colo migrate --copy-disks failed: $(last_message "$work/migrate.err")"
fi
echo "  $(tail -1 "$work/migrate.log")"
# All 256 chunks of the random image differ from A's: every byte is
# compared, and the differing chunks go to B.
if grep -q "disks of moving: 16777216 of 16777216 bytes compared (256 chunks differing)" "$work/migrate.log"; then
    pass "the whole disk was compared and every differing chunk found"
else
    fail "disk summary: '$(tail -1 "$work/migrate.log")'"
fi
tr '\r' '\n' <"$work/migrate.err" | grep -q "disks: .* MiB" && pass "colo migrate showed the disks' progress" ||
    fail "no disk progress in colo migrate's display"
wait_exit "$source_pid" 60; status=$?
[ "$status" -eq 0 ] && pass "the source colo exited with status 0 after handing the VM over" ||
    fail "the source colo exited with status $status"
received=$(grep "running here now" "$work/target.log")
if echo "$received" | grep -q "bytes written"; then
    pass "the target runs the VM: ${received#colo receive: }"
else
    fail "target did not take over with its disks: $(tail -3 "$work/target.log")"
fi
[ "$(vm_state "$work/B")" = running ] && pass "colo status on B: running" || fail "colo status on B: '$(vm_state "$work/B")'"
sleep 3
finish_client during "through the migration"
check_keys "on B after the migration" before during

# ---- 3. B's image alone holds every acknowledged key ----
on_client python3 "$here/../../guests/linux/kvclient.py" "$guest" poweroff >"$work/poweroff.log" 2>&1
if wait_exit "$target_pid" 60; then
    pass "B's guest powered off"
else
    fail "B's guest did not power off"; kill -9 "$target_pid" 2>/dev/null
fi
on_host "$work/B3" "$colo" run "$work/b.cfg" >"$work/fresh.log" 2>&1 </dev/null &
fresh_pid=$!; pids+=("$fresh_pid")
wait_for "$work/fresh.log" "colo-guest: services ready" "fresh boot of B's image" "$fresh_pid" || exit 1
check_keys "a fresh boot of B's image alone" before during

on_host "$work/B3" "$colo" quit moving >/dev/null 2>&1
wait_exit "$fresh_pid" 30 >/dev/null
echo "migration_disks_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
