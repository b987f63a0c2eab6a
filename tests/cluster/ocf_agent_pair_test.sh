#!/bin/bash
# The colo OCF resource agent driving a real pair, as Pacemaker would call
# it on two nodes (needs root; the tiny Linux guest). Both "nodes" share a
# network namespace (removed at the end, also on failure), each with its
# own TAP, disk, control-socket directory and agent state, and their
# secondaries listen on two loopback ports.
# 1. nodeA: monitor finds nothing (7); start leaves a waiting secondary
#    (0); promote cold-starts the VM with `colo run` (8); the agent's
#    protect to nodeB finds nobody listening: the VM runs unprotected.
# 2. nodeB: start (0); nodeA's notify post-start of nodeB protects the VM
#    to it: checkpoints flow, nodeB's monitor still says unpromoted (0).
# 3. promote on nodeB while nodeA replicates to it fails (1) after waiting
#    for colo's own decision, and nodeB stays a secondary: the agent never
#    races colo.
# 4. nodeA's colo is killed (-9): nodeB's colo takes over by itself;
#    nodeB's probe and plain monitor say promoted (8), its unpromoted-role
#    monitor says running (0, so that Pacemaker promotes it instead of
#    recovering it); promote confirms (0); nodeA's monitor says failed
#    promoted (9).
# 5. stop on nodeA (0, then 7), start again, and nodeB's notify post-start
#    of nodeA protects the survivor to nodeA.
# 6. demote of nodeB, the protected primary, is a switchover (what
#    `crm resource move` does): nodeA's colo runs the VM ("switched over
#    from ..."), nodeB waits as a secondary again, nodeA's promote confirms
#    and protects to nodeB. Both stop (0); nothing is left running.
# Exits 77 (skipped) only when the guest is not built.
# Usage: tests/cluster/ocf_agent_pair_test.sh COLO GUEST_DIR SOURCE_DIR
set -uo pipefail
colo=$(realpath "$1") guest_dir=$2 source_dir=$(realpath "$3")
agent=$source_dir/scripts/ocf/colo
if [ ! -f "$guest_dir/Image" ] || [ ! -f "$guest_dir/initramfs.cpio" ]; then
    echo "SKIP: the Linux guest is not built (meson -Dlinux_guest=true)"
    exit 77
fi
guest_dir=$(realpath "$guest_dir")
source "$source_dir/tests/support/e2e_lib.sh"
[ -f /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs ] ||
    { echo "FAIL: ocf-shellfuncs is missing (resource-agents, scripts/setup.sh)"; exit 1; }

e2e_begin ocf-pair op 10.94.0.1/24 tapA tapB
cleanup() {
    local left
    left=$(ip netns pids "$hosts_ns" 2>/dev/null) && [ -n "$left" ] && kill -9 $left 2>/dev/null
    e2e_cleanup
}
trap cleanup EXIT

declare -A port=([A]=47601 [B]=47602)
"$colo" keygen psk "$work/pair.psk" --identity pair >/dev/null
for node in A B; do
    mkdir -p "$work/$node/run" "$work/$node/rsc"
    truncate -s 16M "$work/$node/disk.img"
    cat >"$work/$node/vm.cfg" <<CFG
name = "pair"
memory = 128
kernel = "$guest_dir/Image"
initrd = "$guest_dir/initramfs.cpio"
cmdline = "console=ttyS0 colo.ip=10.94.0.2/24"
disks = [ "path=$work/$node/disk.img" ]
nics = [ "tap=tap$node,mac=52:54:00:aa:bb:41" ]
console = "stdio"
replication_auth = "psk"
replication_psk = "$work/pair.psk"
CFG
done
peers="nodeA=127.0.0.1:${port[A]} nodeB=127.0.0.1:${port[B]}"

agent_on() {  # NODE ACTION [VAR=VALUE...]: the agent's exit status (its log in NODE/agent.log)
    local node=$1 action=$2; shift 2
    echo "---- $action $*" >>"$work/$node/agent.log"
    ip netns exec "$hosts_ns" env OCF_ROOT=/usr/lib/ocf COLO_RUN_DIR="$work/$node/run" \
        HA_RSCTMP="$work/$node/rsc" OCF_RESOURCE_INSTANCE=colo-pair OCF_RESKEY_CRM_meta_on_node="node$node" \
        OCF_RESKEY_config="$work/$node/vm.cfg" OCF_RESKEY_listen="127.0.0.1:${port[$node]}" \
        OCF_RESKEY_peers="$peers" OCF_RESKEY_colo_binary="$colo" OCF_RESKEY_CRM_meta_timeout=30000 \
        OCF_RESKEY_CRM_meta_interval=0 "$@" "$agent" "$action" >>"$work/$node/agent.log" 2>&1
}
expect() {  # WANTED WHAT NODE ACTION [VAR=VALUE...]
    local wanted=$1 what=$2 node=$3; shift 2
    agent_on "$@"
    local rc=$?
    if [ "$rc" -eq "$wanted" ]; then
        pass "$what: $rc"
    else
        fail "$what: $rc, wanted $wanted"
        tail -n 8 "$work/$node/agent.log" 2>/dev/null | sed 's/^/  /'
    fi
}
field() {  # NODE PATH: a field of the node's `colo status --json` (replication.state, ...)
    COLO_RUN_DIR="$work/$1/run" ip netns exec "$hosts_ns" "$colo" status pair --json 2>/dev/null |
        python3 -c "
import json, sys
value = json.load(sys.stdin)
for key in '$2'.split('.'):
    value = value.get(key, '') if isinstance(value, dict) else ''
print(value)" 2>/dev/null
}
wait_field() {  # NODE PATH PATTERN SECONDS: true once the field matches PATTERN (grep -E)
    local started=$SECONDS
    until field "$1" "$2" | grep -qE "$3"; do
        ((SECONDS - started > $4)) && return 1
        sleep 0.2
    done
}
colo_log() { echo "$work/$1/rsc/colo-colo-pair/pair.log"; }

# ---- 1. cold start on nodeA ----
expect 7 "nodeA: monitor before start" A monitor
expect 0 "nodeA: start" A start
expect 0 "nodeA: monitor of the started instance" A monitor OCF_RESKEY_CRM_meta_interval=11000
[ "$(field A replication.state)" = waiting ] && pass "nodeA runs a waiting secondary" ||
    fail "nodeA's replication state is '$(field A replication.state)', not waiting"
expect 0 "nodeA: promote (cold start)" A promote
expect 8 "nodeA: monitor after promote" A monitor OCF_RESKEY_CRM_meta_interval=10000
if grep -q -- "colo run --name pair" "$(colo_log A)" && [ "$(field A state)" != "" ] &&
    [ "$(field A replication.role)" != secondary ]; then
    pass "nodeA's promote replaced the secondary by colo run"
else
    fail "nodeA is not the running VM (role '$(field A replication.role)')"
fi
wait_field A replication.state unprotected 15 && pass "nodeA's protect to nodeB, with nobody there, left it unprotected" ||
    fail "nodeA's replication state is '$(field A replication.state)', not unprotected"
wait_for "$(colo_log A)" "services ready" "the guest's boot on nodeA" "$(cat "$work/A/rsc/colo-colo-pair/pair.pid")" 60 ||
    exit 1

# ---- 2. nodeB starts; nodeA's notify protects the VM to it ----
expect 0 "nodeB: start" B start
notify_post_start() {  # NODE STARTED
    agent_on "$1" notify OCF_RESKEY_CRM_meta_notify_type=post OCF_RESKEY_CRM_meta_notify_operation=start \
        OCF_RESKEY_CRM_meta_notify_start_uname="$2" OCF_RESKEY_CRM_meta_notify_promote_uname= \
        OCF_RESKEY_CRM_meta_notify_promoted_uname="node$1"
}
notify_post_start A nodeB && pass "nodeA: notify post-start of nodeB: 0" || fail "nodeA: notify post-start failed"
if wait_field A replication.checkpoints '^([3-9]|[1-9][0-9]+)$' 60; then
    pass "nodeA protects the VM to nodeB ($(field A replication.checkpoints) checkpoints, state $(field A replication.state))"
else
    fail "nodeA is not protected: state '$(field A replication.state)', ended '$(field A replication.ended)'"
fi
expect 0 "nodeB: monitor of the secondary in step" B monitor OCF_RESKEY_CRM_meta_interval=11000

# ---- 3. promote of a connected secondary waits for colo, and fails ----
started=$SECONDS
expect 1 "nodeB: promote while nodeA replicates to it" B promote OCF_RESKEY_CRM_meta_timeout=10000
((SECONDS - started >= 4)) && pass "promote waited for colo's own decision ($((SECONDS - started)) s)" ||
    fail "promote gave up after $((SECONDS - started)) s, before its timeout"
[ "$(field B replication.role)" = secondary ] && [ "$(field B replication.state)" != "failed over" ] &&
    [ "$(field A replication.state)" != unprotected ] &&
    pass "nodeB is still nodeA's secondary ($(field B replication.state))" ||
    fail "nodeB took over or nodeA lost it: B '$(field B replication.state)', A '$(field A replication.state)'"

# ---- 4. nodeA's colo dies; nodeB's colo takes over, promote confirms ----
kill -9 "$(cat "$work/A/rsc/colo-colo-pair/pair.pid")"
if wait_field B replication.state "failed over" 15; then
    pass "nodeB's colo took over by itself"
else
    fail "nodeB's state is '$(field B replication.state)', not failed over"
fi
expect 8 "nodeB: probe after the takeover" B monitor
expect 8 "nodeB: monitor after the takeover" B monitor OCF_RESKEY_CRM_meta_interval=10000
expect 0 "nodeB: unpromoted-role monitor after the takeover" B monitor OCF_RESKEY_CRM_meta_interval=11000 \
    OCF_RESKEY_CRM_meta_role=Unpromoted
expect 0 "nodeB: promote confirms the takeover" B promote
expect 9 "nodeA: monitor of the killed primary" A monitor OCF_RESKEY_CRM_meta_interval=10000

# ---- 5. nodeA comes back as the new secondary ----
expect 0 "nodeA: stop of the failed instance" A stop
expect 7 "nodeA: monitor after stop" A monitor
expect 0 "nodeA: start again" A start
notify_post_start B nodeA && pass "nodeB: notify post-start of nodeA: 0" || fail "nodeB: notify post-start failed"
if wait_field B replication.checkpoints '^([3-9]|[1-9][0-9]+)$' 60; then
    pass "nodeB protects the VM to nodeA ($(field B replication.checkpoints) checkpoints)"
else
    fail "nodeB is not protected: state '$(field B replication.state)', ended '$(field B replication.ended)'"
fi
expect 0 "nodeA: monitor of the new secondary" A monitor OCF_RESKEY_CRM_meta_interval=11000

# ---- 6. demote of the protected primary is a switchover (crm resource move) ----
expect 0 "nodeB: demote of the protected primary" B demote
grep -q "switched over: the VM runs on" "$work/B/agent.log" &&
    pass "nodeB's demote switched over: $(grep -o 'pair switched over.*' "$work/B/agent.log" | tail -1)" ||
    fail "nodeB's demote did not switch over: $(tail -n 3 "$work/B/agent.log")"
if wait_field A replication.state "failed over" 10 && field A replication.ended | grep -q "^switched over from"; then
    pass "nodeA's colo runs the VM: $(field A replication.ended)"
else
    fail "nodeA: state '$(field A replication.state)', ended '$(field A replication.ended)'"
fi
expect 0 "nodeB: monitor after demote" B monitor OCF_RESKEY_CRM_meta_interval=11000
[ "$(field B replication.state)" = waiting ] && pass "nodeB runs a waiting secondary again" ||
    fail "nodeB's state after demote is '$(field B replication.state)'"
expect 8 "nodeA: monitor after the switchover" A monitor OCF_RESKEY_CRM_meta_interval=10000
expect 0 "nodeA: promote confirms the switchover" A promote
if wait_field A replication.checkpoints '^([3-9]|[1-9][0-9]+)$' 60; then
    pass "nodeA's promote protected the VM to nodeB again ($(field A replication.checkpoints) checkpoints)"
else
    fail "nodeA is not protected after promote: state '$(field A replication.state)'"
fi

expect 0 "nodeA: stop" A stop
expect 0 "nodeB: stop" B stop
expect 0 "nodeB: stop again" B stop
expect 7 "nodeB: monitor after stop" B monitor
left=$(ip netns pids "$hosts_ns")
[ -z "$left" ] && pass "nothing is left running" ||
    fail "processes left after stop: $(ps -o pid=,args= -p "$(echo $left | tr ' ' ,)")"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
