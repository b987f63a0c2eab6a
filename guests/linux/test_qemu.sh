#!/bin/bash
# Reference test of the colo Linux guest on QEMU (needs root: it creates
# network namespaces).
#
#   client namespace                 network namespace
#   veth0 10.99.0.1/24 ---- veth1 -- br0 -- tap0 -- QEMU (guest eth0 10.99.0.2/24)
#
# Everything lives in two namespaces made here and deleted on exit, whatever
# happens; no traffic leaves them. The guest boots with a fresh 16 MiB disk;
# the client checks the KV store (round trips, 10,000 requests on one
# connection, concurrent clients, CHECK), echo, stream and CHURN, then powers
# the VM off, boots it again from the same disk and checks that every value
# survived.
#
# Usage: guests/linux/test_qemu.sh [GUEST_DIR]
#   GUEST_DIR holds Image and initramfs.cpio; without it they are built
#   (the kernel comes from the cache, see build_kernel.sh).
# Environment: COLO_TEST_BOOT_TIMEOUT (seconds to "services ready", default 180).
set -uo pipefail
# The last command of a pipeline runs in this shell: count_results can add
# to the totals.
shopt -s lastpipe

here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/netns.sh"
boot_timeout=${COLO_TEST_BOOT_TIMEOUT:-180}
poweroff_timeout=60
guest_address=10.99.0.2
client_address=10.99.0.1
prefix=24

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
say() { echo "test_qemu: $*"; }

[ "$(id -u)" -eq 0 ] || { say "error: needs root (network namespaces)"; exit 1; }
for tool in ip qemu-system-riscv64 python3; do
    command -v "$tool" >/dev/null || { say "error: $tool missing: run scripts/setup.sh"; exit 1; }
done

work=$(mktemp -d /tmp/colo-guest-test.XXXXXX)
host_ns=colo-gt$$-net
client_ns=colo-gt$$-client
qemu_pid=""

cleanup() {
    # A trap can fire inside `IFS= read`, whose empty IFS would still apply.
    local IFS=$' \t\n'
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null
        wait "$qemu_pid" 2>/dev/null
    fi
    # Whatever still runs inside our namespaces (a client cut off by an
    # interrupt) is ours: end it before the namespaces go.
    local ns pid
    for ns in "$client_ns" "$host_ns"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill "$pid" 2>/dev/null
        done
        ip netns del "$ns" 2>/dev/null
    done
    if [ "$failed" -eq 0 ]; then
        rm -rf "$work"
    else
        say "logs kept in $work"
    fi
}
trap cleanup EXIT
trap 'fail "interrupted"; exit 130' INT TERM

# --- The guest ---
if [ $# -ge 1 ]; then
    guest_dir=$1
else
    guest_dir=$work/guest
    "$here/build.sh" "$guest_dir" || { fail "building the guest"; exit 1; }
fi
[ -f "$guest_dir/Image" ] && [ -f "$guest_dir/initramfs.cpio" ] ||
    { fail "no Image and initramfs.cpio in $guest_dir"; exit 1; }
say "kernel $(stat -c %s "$guest_dir/Image") bytes, initramfs $(stat -c %s "$guest_dir/initramfs.cpio") bytes"

disk=$work/disk.img
truncate -s 16M "$disk"

# --- The network, in namespaces of our own ---
netns_create_topology "$host_ns" "$client_ns" "$client_address/$prefix" tap0 ||
    { fail "cannot build the network namespaces"; exit 1; }
say "namespaces $host_ns (bridge, tap0) and $client_ns ($client_address)"

# Boots the VM in the background; returns once the console says
# "services ready" (0) or on timeout / QEMU exit (1).
boot() {
    local label=$1 console=$work/console-$1.log
    local started ended
    started=$(date +%s.%N)
    ip netns exec "$host_ns" "$here/run_qemu.sh" --dir "$guest_dir" --disk "$disk" \
        --tap tap0 --ip "$guest_address/$prefix" >"$console" 2>&1 </dev/null &
    qemu_pid=$!
    while ! grep -q "colo-guest: services ready" "$console"; do
        if ! kill -0 "$qemu_pid" 2>/dev/null; then
            fail "$label boot: QEMU exited before services ready (see $console)"
            tail -20 "$console"
            return 1
        fi
        if (($(date +%s) - ${started%.*} > boot_timeout)); then
            fail "$label boot: no 'services ready' within $boot_timeout s (see $console)"
            tail -20 "$console"
            return 1
        fi
        sleep 0.1
    done
    ended=$(date +%s.%N)
    local guest_seconds
    guest_seconds=$(sed -n 's/.*services ready (\([0-9.]*\) s since boot).*/\1/p' "$console" | tr -d '\r')
    pass "$label boot: services ready $(printf '%.2f' "$(echo "$ended - $started" | bc)") s after QEMU started (guest CLOCK_BOOTTIME $guest_seconds s)"
}

# Asks the guest to power off and waits for QEMU to exit.
power_off() {
    local label=$1 console=$work/console-$1.log
    client poweroff
    local waited=0
    while kill -0 "$qemu_pid" 2>/dev/null; do
        if ((waited >= poweroff_timeout * 10)); then
            fail "$label: QEMU still running $poweroff_timeout s after POWEROFF"
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    wait "$qemu_pid"
    local status=$?
    qemu_pid=""
    if grep -q "reboot: Power down" "$console" && [ "$status" -eq 0 ]; then
        pass "$label: guest powered off, QEMU exited with status 0"
    else
        fail "$label: power off (QEMU status $status; see $console)"
    fi
}

# Echoes the client's lines and adds its PASS/FAIL lines to the totals.
count_results() {
    local line
    while IFS= read -r line; do
        echo "$line"
        case "$line" in
            PASS:*) passed=$((passed + 1)) ;;
            FAIL:*) failed=$((failed + 1)) ;;
        esac
    done
}

state=$work/stored.json
# Runs the client in its namespace and counts its PASS/FAIL lines; a client
# that fails without saying so (a crash) counts as one failure.
client() {
    local failed_before=$failed
    ip netns exec "$client_ns" timeout 600 python3 "$here/kvclient.py" "$guest_address" "$@" 2>&1 |
        count_results
    local status=${PIPESTATUS[0]}
    if [ "$status" -ne 0 ] && [ "$failed" -eq "$failed_before" ]; then
        fail "kvclient.py $* exited with status $status"
    fi
}

if boot first; then
    grep -E "colo-guest: (eth0|kvstore)" "$work/console-first.log" | tr -d '\r' | sed 's/^/  console: /'
    client first "$state"
    power_off first
fi

if [ -f "$state" ] && boot second; then
    grep -E "colo-guest: kvstore" "$work/console-second.log" | tr -d '\r' | sed 's/^/  console: /'
    client again "$state"
    power_off second
fi

echo "test_qemu: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
