#!/bin/bash
# A real Linux guest on colo's machine, reached over real TAP networking
# (needs root: it builds network namespaces).
#
#   client namespace                       host namespace
#   veth0 10.98.0.1/24 ---- veth1 -- br0 -- tap0 -- colo (guest eth0 10.98.0.2/24)
#
# 1. Boot with a fresh disk; the client (guests/linux/kvclient.py) checks the
#    KV store (round trips, 10,000 requests on one connection, concurrent
#    clients, CHECK), echo, stream and the churner.
# 2. Stop the VM with SIGTERM and save it (--save-on-exit); `colo restore`
#    starts it in a new process from the file alone (the file carries the
#    configuration: disk, TAP, MAC); the KV service and the console carry on.
# 3. Power the guest off (status 0), boot it again from the same disk: every
#    acknowledged value is read back; a line written to colo's standard
#    input reaches the guest's console (UART receive path); the guest
#    reboots (colo restarts it) and the data is still there.
# Namespaces are removed on exit, whatever happens.
#
# Usage: tests/linux/linux_vm_test.sh COLO GUEST_DIR
set -uo pipefail
shopt -s lastpipe
colo=$1 guest_dir=$(realpath "$2")
client_script=$(cd "$(dirname "$0")/../../guests/linux" && pwd)/kvclient.py
source "$(dirname "$0")/../../scripts/lib/netns.sh"
boot_timeout=${COLO_TEST_BOOT_TIMEOUT:-120}
guest_address=10.98.0.2 client_address=10.98.0.1

passed=0 failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

work=$(mktemp -d /tmp/colo-linux-test.XXXXXX)
# Our own control-socket directory: another VM of the same name elsewhere
# on this host (another test run) must not collide with ours.
export COLO_RUN_DIR=$work/run
host_ns=colo-lt$$-host client_ns=colo-lt$$-client
vm_pid=""
cleanup() {
    if [ -n "$vm_pid" ] && kill -0 "$vm_pid" 2>/dev/null; then
        kill -9 "$vm_pid" 2>/dev/null
        wait "$vm_pid" 2>/dev/null
    fi
    netns_destroy_topology "$host_ns" "$client_ns"
    if [ "$failed" -eq 0 ]; then rm -rf "$work"; else echo "logs kept in $work"; fi
}
trap cleanup EXIT
trap 'fail "interrupted"; exit 130' INT TERM

[ -f "$guest_dir/Image" ] && [ -f "$guest_dir/initramfs.cpio" ] ||
    { fail "no Image and initramfs.cpio in $guest_dir"; exit 1; }

netns_create_topology "$host_ns" "$client_ns" "$client_address/24" tap0 ||
    { fail "cannot build the network namespaces"; exit 1; }

truncate -s 16M "$work/disk.img"
cat >"$work/vm.cfg" <<CFG
name = "linux-test"
memory = 256
kernel = "$guest_dir/Image"
initrd = "$guest_dir/initramfs.cpio"
cmdline = "console=ttyS0 colo.ip=$guest_address/24"
disks = [ "path=$work/disk.img" ]
nics = [ "tap=tap0,mac=52:54:00:12:34:56" ]
console = "stdio"
CFG

# Starts colo in the host namespace; extra arguments go to `colo run`. Its
# standard input is a FIFO the test can write console input to.
mkfifo "$work/console-input"
exec 3<>"$work/console-input"
start_vm() {
    local log=$1; shift
    ip netns exec "$host_ns" "$colo" run "$work/vm.cfg" --save-on-exit "$work/saved.colo" "$@" \
        >"$log" 2>&1 <"$work/console-input" &
    vm_pid=$!
}

wait_for_console() {  # LOG TEXT WHAT
    local started=$SECONDS
    while ! grep -q "$2" "$1"; do
        if ! kill -0 "$vm_pid" 2>/dev/null; then
            fail "$3: colo exited (see below)"; tail -25 "$1"; return 1
        fi
        if ((SECONDS - started > boot_timeout)); then
            fail "$3: no '$2' within $boot_timeout s"; tail -25 "$1"; return 1
        fi
        sleep 0.05
    done
}

wait_for_count() {  # LOG TEXT COUNT WHAT
    local started=$SECONDS
    while [ "$(grep -c "$2" "$1")" -lt "$3" ]; do
        kill -0 "$vm_pid" 2>/dev/null || { fail "$4: colo exited"; tail -25 "$1"; return 1; }
        ((SECONDS - started > boot_timeout)) && { fail "$4: not seen $3 times"; tail -25 "$1"; return 1; }
        sleep 0.05
    done
}

client() {
    local failed_before=$failed line
    ip netns exec "$client_ns" timeout 600 python3 "$client_script" "$guest_address" "$@" 2>&1 |
        while IFS= read -r line; do
            echo "  $line"
            case "$line" in PASS:*) passed=$((passed + 1)) ;; FAIL:*) failed=$((failed + 1)) ;; esac
        done
    local status=${PIPESTATUS[0]}
    if [ "$status" -ne 0 ] && [ "$failed" -eq "$failed_before" ]; then
        fail "kvclient.py $* exited with status $status"
    fi
}

wait_vm_exit() {  # WHAT EXPECTED_STATUS
    local waited=0
    while kill -0 "$vm_pid" 2>/dev/null && ((waited < 600)); do sleep 0.1; waited=$((waited + 1)); done
    if kill -0 "$vm_pid" 2>/dev/null; then fail "$1: colo still running after 60 s"; return 1; fi
    wait "$vm_pid"; local status=$?
    vm_pid=""
    if [ "$status" -eq "$2" ]; then pass "$1: colo exited with status $status"; else fail "$1: colo exited with status $status, expected $2"; fi
}

# 1. First boot, with a fresh disk.
started=$(date +%s.%N)
start_vm "$work/console-1.log"
if wait_for_console "$work/console-1.log" "colo-guest: services ready" "first boot"; then
    ended=$(date +%s.%N)
    pass "first boot: services ready $(echo "$ended - $started" | bc) s after colo started ($(grep -o 'services ready ([0-9.]* s since boot)' "$work/console-1.log"))"
    grep -q "Run /init as init process" "$work/console-1.log" && pass "kernel reached /init" || fail "no 'Run /init' on the console"
    client first "$work/stored.json"

    # 2. Save in this process, carry on in a new one.
    kill -TERM "$vm_pid"
    wait_vm_exit "stop with SIGTERM and save" 130
    [ -s "$work/saved.colo" ] && pass "saved the running VM ($(stat -c %s "$work/saved.colo") bytes)" || fail "no saved state"
    # colo restore: the save file carries the VM's configuration (disk, TAP, MAC).
    ip netns exec "$host_ns" "$colo" restore "$work/saved.colo" >"$work/console-2.log" 2>&1 \
        <"$work/console-input" &
    vm_pid=$!
    sleep 0.5
    if kill -0 "$vm_pid" 2>/dev/null; then
        pass "restored VM is running in a new process"
        client again "$work/stored.json"
        client poweroff
        # The restored guest's console carries on: its shutdown messages.
        if wait_for_console "$work/console-2.log" "reboot: Power down" "console after restore"; then
            pass "console of the restored guest carries on"
        fi
        wait_vm_exit "power off after restore" 0
    else
        fail "restored VM exited at once:"; tail -20 "$work/console-2.log"
    fi
fi

# 3. A fresh boot from the same disk: the data survived.
if [ -s "$work/stored.json" ]; then
    start_vm "$work/console-3.log"
    if wait_for_console "$work/console-3.log" "colo-guest: services ready" "second boot"; then
        grep "colo-guest: kvstore" "$work/console-3.log" | tr -d '\r' | sed 's/^/  console: /'
        client again "$work/stored.json"
        echo "hello-from-the-host-terminal" >&3
        wait_for_console "$work/console-3.log" "colo-guest: console: hello-from-the-host-terminal" \
            "console input" && pass "a line typed on colo's standard input reached the guest"
        client reboot
        if wait_for_console "$work/console-3.log" "colo run: linux-test rebooted" "guest reboot" &&
           wait_for_count "$work/console-3.log" "colo-guest: services ready" 2 "services after the reboot"; then
            pass "the guest rebooted and its services came back"
            client again "$work/stored.json"
        fi
        client poweroff
        wait_vm_exit "power off after the disk check" 0
    fi
fi

echo "linux_vm_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
