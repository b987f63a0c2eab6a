#!/bin/bash
# The colo OCF resource agent (scripts/ocf/colo) against Pacemaker's own
# conformance checker, ocf-tester (package resource-agents), with a real
# colo and the tiny Linux guest (needs root: a network namespace with the
# VM's TAP, removed at the end, also on failure). ocf-tester runs
# meta-data (validated against ra-api-1.dtd), validate-all, probes, start
# (a waiting secondary), monitor, notify, promote (a cold start: the
# secondary gives way to `colo run`), demote (back to a waiting
# secondary), each twice where it must be idempotent, and stop; then the
# test promotes once itself and waits for the guest to boot.
# Exits 77 (skipped) only when the guest is not built.
# Usage: tests/cluster/ocf_tester_test.sh COLO GUEST_DIR SOURCE_DIR
set -uo pipefail
colo=$(realpath "$1") guest_dir=$2 source_dir=$(realpath "$3")
agent=$source_dir/scripts/ocf/colo
if [ ! -f "$guest_dir/Image" ] || [ ! -f "$guest_dir/initramfs.cpio" ]; then
    echo "SKIP: the Linux guest is not built (meson -Dlinux_guest=true)"
    exit 77
fi
guest_dir=$(realpath "$guest_dir")
source "$source_dir/tests/support/e2e_lib.sh"
command -v ocf-tester >/dev/null || { echo "FAIL: ocf-tester is not installed (resource-agents, scripts/setup.sh)"; exit 1; }

e2e_begin ocf-tester ot 10.93.0.1/24 tapA
# The agent's colo processes are not children of this script: end
# everything left in the namespace before it goes.
cleanup() {
    local left
    left=$(ip netns pids "$hosts_ns" 2>/dev/null) && [ -n "$left" ] && kill -9 $left 2>/dev/null
    e2e_cleanup
}
trap cleanup EXIT

truncate -s 16M "$work/disk.img"
cat >"$work/tester.cfg" <<CFG
name = "ocftest"
memory = 128
kernel = "$guest_dir/Image"
initrd = "$guest_dir/initramfs.cpio"
cmdline = "console=ttyS0 colo.ip=10.93.0.2/24"
disks = [ "path=$work/disk.img" ]
nics = [ "tap=tapA,mac=52:54:00:aa:bb:31" ]
console = "stdio"
replication_auth = "psk"
replication_psk = "$work/pair.psk"
CFG
"$colo" keygen psk "$work/pair.psk" --identity ocftest >/dev/null
mkdir -p "$work/run" "$work/rsc"

# The agent must be readable by "nobody" (ocf-tester runs meta-data as
# nobody); the work directory is the agent's state, not the agent.
if ip netns exec "$hosts_ns" env OCF_ROOT=/usr/lib/ocf COLO_RUN_DIR="$work/run" HA_RSCTMP="$work/rsc" \
    ocf-tester -n colo-test -o config="$work/tester.cfg" -o listen=127.0.0.1:47400 \
    -o colo_binary="$colo" "$agent" >"$work/ocf-tester.log" 2>&1; then
    pass "ocf-tester: $(tail -n 1 "$work/ocf-tester.log")"
else
    fail "ocf-tester failed"
    sed 's/^/  /' "$work/ocf-tester.log"
fi

# ocf-tester stops the promoted VM as soon as monitor answers, which can
# be before the guest has booted. So the boot is checked on a promotion of
# our own: start (a waiting secondary), promote (a cold start as `colo
# run`), wait for the guest's services, stop.
log=$work/rsc/colo-colo-test/ocftest.log
agent_action() {  # ACTION
    ip netns exec "$hosts_ns" env OCF_ROOT=/usr/lib/ocf COLO_RUN_DIR="$work/run" HA_RSCTMP="$work/rsc" \
        OCF_RESOURCE_INSTANCE=colo-test OCF_RESKEY_config="$work/tester.cfg" \
        OCF_RESKEY_listen=127.0.0.1:47400 OCF_RESKEY_colo_binary="$colo" "$agent" "$1" >>"$work/agent.log" 2>&1
}
: >"$log.before" && [ -f "$log" ] && cp "$log" "$log.before"
if agent_action start && agent_action promote; then
    booted=false
    for _ in $(seq 1 600); do
        # Only what this promotion's colo run wrote counts.
        # Not a pipe: with pipefail, tail's SIGPIPE after grep -q's early
        # exit would fail the test.
        if grep -q "services ready" < <(tail -n +"$(($(wc -l <"$log.before") + 1))" "$log"); then
            booted=true
            break
        fi
        sleep 0.1
    done
    if grep -q "waiting for the primary on 127.0.0.1:47400" "$log" && $booted; then
        pass "colo ran as a waiting secondary and, promoted, booted the guest to its services (log $log)"
    else
        fail "the agent's colo log lacks the secondary's wait or, within 60 s of promote, the guest's services"
        tail -n 20 "$log" 2>/dev/null
    fi
else
    fail "the agent's start or promote failed"
    sed 's/^/  /' "$work/agent.log"
fi
agent_action stop || fail "the agent's stop failed: $(tail -n 5 "$work/agent.log")"

left=$(ip netns pids "$hosts_ns")
if [ -z "$left" ]; then
    pass "nothing is left running after the final stop"
else
    fail "processes left after stop: $(ps -o pid=,args= -p "$(echo $left | tr ' ' ,)")"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
