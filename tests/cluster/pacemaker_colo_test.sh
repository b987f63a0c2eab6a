#!/bin/bash
# Pacemaker runs colo's promotable clone on the Corosync lab (issue 12):
# two nodes and a witness in namespaces (scripts/lib/cluster_lab.sh),
# pacemakerd on both with the colo OCF agent and a test fencing agent
# (tests/cluster/fence_colo_lab; scripts/lib/pacemaker_lab.sh), fencing
# on. Needs root and the tiny Linux guest.
#
# 1. Cold start: Pacemaker starts a waiting secondary on each node and
#    promotes node-a's (a location score breaks the tie): exactly one
#    promoted instance, colo there the primary with checkpoints flowing,
#    node-b's a secondary. A client keeps one TCP connection writing.
# 2. kill -9 of the primary's colo (node-a): colo on node-b takes over by
#    itself; Pacemaker promotes node-b, whose promote confirms colo's
#    decision (the agent's log, and the times), restarts node-a's instance
#    as a new secondary, and the notify protects the VM to it again.
# 2b. crm_resource --move of the promoted role to node-a and back: each
#    a `colo switchover` (the agent's demote), the promote confirms it,
#    and the new secondary is resynced incrementally.
# 3. kill -9 of corosync on the promoted node (node-b): node-a's colo
#    takes over (its own decision); Pacemaker fences node-b with the
#    test agent (nothing runs in node-b's namespace afterwards) and
#    promotes node-a.
# Throughout, crm_mon on the nodes is sampled every 100 ms (or as fast as
# it answers: on a loaded host one takes 0.5-1 s): never two promoted
# instances; on the client LAN the copies never both release
# output; at the end every key the client saw acknowledged reads back.
# Times of each step are printed. Exits 77 when the guest is not built.
# Usage: pacemaker_colo_test.sh COLO GUEST_DIR SOURCE_DIR
set -uo pipefail
colo=$(realpath "$1") guest_dir=$2 source_dir=$(realpath "$3")
if [ ! -f "$guest_dir/Image" ] || [ ! -f "$guest_dir/initramfs.cpio" ]; then
    echo "SKIP: the Linux guest is not built (meson -Dlinux_guest=true)"
    exit 77
fi
guest_dir=$(realpath "$guest_dir")
source "$source_dir/tests/support/e2e_lib.sh"
source "$source_dir/scripts/lib/cluster_lab.sh"
source "$source_dir/scripts/lib/pacemaker_lab.sh"
client_py=$source_dir/tests/migration/continuous_client.py
watch_py=$source_dir/tests/support/lan_output_watch.py
fence_agent=${FENCE_AGENT:-$source_dir/tests/cluster/fence_colo_lab}
for tool in corosync corosync-qnetd corosync-qdevice pacemakerd cibadmin crm_mon crm_verify; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (scripts/setup.sh)"; exit 1; }
done
[ -f /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs ] ||
    { echo "FAIL: ocf-shellfuncs is missing (resource-agents, scripts/setup.sh)"; exit 1; }
guest=10.97.0.2

dir=$(mktemp -d /tmp/pacemaker-colo-test.XXXXXX)
chmod 0755 "$dir" # Pacemaker's daemons (hacluster) reach their directories below it
prefix=pcm$$
pids=()
passed=0 failed=0
cleanup() {
    touch "$dir/stop-client" "$dir/stop-watch" "$dir/stop-sampler"
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
    cluster_lab_destroy "$prefix" "$dir"
    wait 2>/dev/null
    if [ "$failed" -eq 0 ]; then rm -rf "$dir"; else echo "logs kept in $dir"; fi
}
trap cleanup EXIT
trap 'fail "interrupted"; exit 130' INT TERM
now() { date +%s.%N; }
seconds_since() { echo "$(now) - $1" | bc | awk '{printf "%.2f", $1}'; }

# ---- the lab: Corosync, the VM's networks, Pacemaker -----------------------
begin=$(now)
cluster_lab_create "$prefix" "$dir" && cluster_lab_add_vm_networks "$prefix" "$dir" ||
    { fail "cannot build the lab's namespaces"; exit 1; }
cluster_lab_start_corosync "$prefix" "$dir" || { fail "Corosync did not come up"; exit 1; }
pass "Corosync and the witness up, both nodes quorate after $(seconds_since "$begin") s"
pacemaker_lab_install "$prefix" "$dir" "$source_dir/scripts/ocf/colo" colo "$fence_agent" ||
    { fail "cannot install the agents in the nodes"; exit 1; }

cluster_lab_write_vm_configs "$dir" "$guest_dir" "$guest" "$colo"
node_parameters() { # NODE INDEX: this node's VM.cfg and listen address, by a rule on #uname
    cat <<XML
    <instance_attributes id="colo-node-$1" score="$((10 - $2))">
      <rule id="colo-node-$1-rule" score="0">
        <expression id="colo-node-$1-uname" attribute="#uname" operation="eq" value="node-$1"/>
      </rule>
      <nvpair id="colo-node-$1-config" name="config" value="$dir/$1.cfg"/>
      <nvpair id="colo-node-$1-listen" name="listen" value="10.94.0.$2:47300"/>
    </instance_attributes>
XML
}
# Both sides' heartbeat suspicion 500 ms, as in colo-cluster: two
# sanitized VMs and Pacemaker on two cores see scheduling gaps near 200 ms.
resources="<clone id=\"colo-clone\">
  <meta_attributes id=\"colo-clone-meta\">
    <nvpair id=\"colo-clone-promotable\" name=\"promotable\" value=\"true\"/>
    <nvpair id=\"colo-clone-promoted-max\" name=\"promoted-max\" value=\"1\"/>
    <nvpair id=\"colo-clone-promoted-node-max\" name=\"promoted-node-max\" value=\"1\"/>
    <nvpair id=\"colo-clone-clone-max\" name=\"clone-max\" value=\"2\"/>
    <nvpair id=\"colo-clone-clone-node-max\" name=\"clone-node-max\" value=\"1\"/>
    <nvpair id=\"colo-clone-notify\" name=\"notify\" value=\"true\"/>
  </meta_attributes>
  <primitive id=\"colo\" class=\"ocf\" provider=\"colo\" type=\"colo\">
$(node_parameters a 1)
$(node_parameters b 2)
    <instance_attributes id=\"colo-params\" score=\"0\">
      <nvpair id=\"colo-peers\" name=\"peers\" value=\"node-a=10.94.0.1:47300 node-b=10.94.0.2:47300\"/>
      <nvpair id=\"colo-cluster\" name=\"cluster\" value=\"corosync\"/>
      <nvpair id=\"colo-binary\" name=\"colo_binary\" value=\"$colo\"/>
      <nvpair id=\"colo-secondary-options\" name=\"secondary_options\" value=\"--heartbeat-timeout 500\"/>
      <nvpair id=\"colo-protect-options\" name=\"protect_options\" value=\"--interval 100 --heartbeat-timeout 500\"/>
    </instance_attributes>
    <operations>
      <op id=\"colo-start\" name=\"start\" interval=\"0s\" timeout=\"60s\"/>
      <op id=\"colo-stop\" name=\"stop\" interval=\"0s\" timeout=\"60s\"/>
      <op id=\"colo-promote\" name=\"promote\" interval=\"0s\" timeout=\"60s\"/>
      <op id=\"colo-demote\" name=\"demote\" interval=\"0s\" timeout=\"60s\"/>
      <op id=\"colo-notify\" name=\"notify\" interval=\"0s\" timeout=\"30s\"/>
      <op id=\"colo-monitor-promoted\" name=\"monitor\" interval=\"2s\" timeout=\"20s\" role=\"Promoted\"/>
      <op id=\"colo-monitor-unpromoted\" name=\"monitor\" interval=\"3s\" timeout=\"20s\" role=\"Unpromoted\"/>
    </operations>
  </primitive>
</clone>"
# The first promotion: both waiting secondaries score 10; node-a gets 5 more.
constraints='<rsc_location id="colo-first-on-a" rsc="colo-clone" role="Promoted" node="node-a" score="5"/>'
pacemaker_lab_write_cib "$prefix" "$dir" fence_colo_lab "$resources" "$constraints" ||
    { fail "the CIB does not verify"; exit 1; }
started=$(now)
pacemaker_lab_start "$prefix" "$dir" || { fail "Pacemaker did not bring both nodes online"; exit 1; }
pass "Pacemaker: both nodes online with a DC $(seconds_since "$started") s after pacemakerd started"

# ---- helpers ---------------------------------------------------------------
on_node() { cluster_lab_run "$prefix" "$dir" "$@"; }
# Where colo runs under the agent: HA_RSCTMP is /run/resource-agents, the
# node's private /run (DIR/NODE/run).
colo_file() { # NODE SUFFIX (log, pid)
    local file
    for file in "$dir/$1/run/resource-agents"/colo-colo*/"guarded.$2"; do
        [ -e "$file" ] && { echo "$file"; return 0; }
    done
    echo "$dir/$1/run/resource-agents/none/guarded.$2"
    return 1
}
status_field() { # NODE FIELD: a field of colo's "replication" status ("" if none)
    on_node "$1" "$colo" status guarded --json 2>/dev/null |
        python3 -c "import json,sys; r=json.load(sys.stdin).get('replication',{}); v=r.get('$2', r.get('cluster',{}).get('$2','')); print(v)" 2>/dev/null
}
# "NODE ROLE" of each colo instance crm_mon on NODE shows.
colo_roles() { # NODE
    pacemaker_lab_crm_mon "$prefix" "$dir" "$1" | python3 -c '
import sys, xml.etree.ElementTree as tree
for r in tree.parse(sys.stdin).getroot().iter("resource"):
    if r.get("id") == "colo" and r.get("active") == "true":
        for n in r.iter("node"):
            print(n.get("name"), r.get("role"))' 2>/dev/null | sort
}
promoted_on() { colo_roles "$1" | awk '$2 == "Promoted" || $2 == "Master" {print $1}'; }
wait_until() { # SECONDS WHAT COMMAND...: polls every 0.2 s
    local limit=$1 what=$2 started=$SECONDS
    shift 2
    until "$@"; do
        ((SECONDS - started >= limit)) && { fail "$what: not within $limit s"; return 1; }
        sleep 0.2
    done
}
checkpoints_over() { # NODE COUNT
    local count
    count=$(status_field "$1" checkpoints)
    [ -n "$count" ] && [ "$count" -ge "$2" ]
}
is_promoted_alone() { [ "$(promoted_on "$2")" = "node-$1" ]; }
log_has_since() { # FILE LINE TEXT: TEXT after line LINE
    # grep -c reads to the end: grep -q's early exit would give tail a
    # SIGPIPE, which pipefail turns into "not found".
    tail -n +"$(($2 + 1))" "$1" 2>/dev/null | grep -c "$3" >/dev/null
}
lines_of() { wc -l <"$1" 2>/dev/null || echo 0; }

# Samples crm_mon on each of NODES every 100 ms (one loop per node, as
# fast as crm_mon answers on a loaded host): "TIME NODE PROMOTED" per
# sample, PROMOTED the number of promoted colo instances that node's
# Pacemaker shows, until DIR/stop-sampler exists. A node whose crm_mon
# does not answer (killed, fenced) gives no line.
sampler_pids=()
start_sampler() { # OUT NODES...
    local out=$1 node
    shift
    rm -f "$dir/stop-sampler"
    sampler_pids=()
    for node in "$@"; do
        (
            while [ ! -e "$dir/stop-sampler" ]; do
                xml=$(timeout 2 nsenter --net="/run/netns/$prefix-$node" --mount="$dir/ns/$node.mnt" \
                    --uts="$dir/ns/$node.uts" -- crm_mon -1 --output-as=xml 2>/dev/null) &&
                    echo "$(now) $node $(echo "$xml" | grep -c '<resource id="colo" .*role="\(Promoted\|Master\)" active="true"')"
                sleep 0.1
            done
        ) >>"$out" 2>/dev/null &
        sampler_pids+=($!)
        pids+=($!)
    done
}
stop_sampler() { # OUT WHAT
    touch "$dir/stop-sampler"
    wait "${sampler_pids[@]}" 2>/dev/null
    local samples most spacing
    samples=$(wc -l <"$1")
    most=$(awk 'BEGIN {m = 0} $3 > m {m = $3} END {print m}' "$1")
    spacing=$(sort -n "$1" | awk '$2 == n {s += $1 - t; k++} {n = $2; t = $1} END {if (k) printf "%.0f", 1000 * s / k; else print "-"}')
    if [ "$samples" -ge 10 ] && [ "$most" -le 1 ]; then
        pass "$2: never two promoted instances in $samples crm_mon samples (per node one every $spacing ms)"
    else
        fail "$2: $samples crm_mon samples, at most $most promoted at once"
        awk '$3 > 1' "$1" | head -5
    fi
}
# Writes the time at which TEXT appears in FILE after its line LINE to OUT
# (polled every 20 ms; colo's own log has no timestamps).
note_when() { # FILE LINE TEXT OUT
    (
        until grep -q "$3" < <(tail -n +"$(($2 + 1))" "$1" 2>/dev/null); do
            [ -e "$dir/stop-sampler" ] && exit 0
            sleep 0.02
        done
        now >"$4"
    ) &
    pids+=($!)
}
# The time (seconds since the epoch) of the first line after LINE in
# NODE's pacemaker.log that matches TEXT.
pacemaker_log_time() { # NODE LINE TEXT
    local line
    line=$(tail -n +"$(($2 + 1))" "$dir/$1/log/pacemaker/pacemaker.log" | grep -m1 "$3") || return 1
    date -d "$(echo "$line" | cut -c1-19)" +%s.%N
}
after() { # TIME FAULT: seconds between them
    echo "$1 - $2" | bc | awk '{printf "%.2f", $1}'
}
start_watch() {
    rm -f "$dir/stop-watch"
    ip netns exec "$prefix-sw" python3 "$watch_py" watch "$dir/stop-watch" "$dir/lan.out" p-lan-a p-lan-b &
    pids+=($!)
}
check_watch() { # WHAT FROM
    local lan
    if lan=$(python3 "$watch_py" check "$dir/lan.out" --from "$2"); then
        pass "$1: never two copies on the LAN: $lan"
    else
        fail "$1: $lan"
    fi
}
# The agent's messages (ocf_log goes to pacemaker.log through execd).
agent_log() { grep -h "colo" "$dir/$1/log/pacemaker/pacemaker.log" 2>/dev/null; }

# ---- 1. cold start ---------------------------------------------------------
wait_until 120 "cold start: colo promoted on node-a alone" is_promoted_alone a a &&
    pass "cold start: Pacemaker promoted node-a $(seconds_since "$started") s after pacemakerd started"
unpromoted_b() { colo_roles a | grep -q "^node-b \(Unpromoted\|Slave\)$"; }
wait_until 30 "cold start: node-b unpromoted" unpromoted_b
log_a=$(colo_file a log)
wait_for "$log_a" "colo-guest: services ready" "cold start: the guest boots on node-a" "$(cat "$(colo_file a pid)" 2>/dev/null || echo 1)" 180 &&
    pass "cold start: the guest's services ready $(seconds_since "$started") s after pacemakerd started"
if wait_until 60 "cold start: checkpoints to node-b" checkpoints_over a 20; then
    pass "cold start: node-a $(status_field a role) ($(status_field a state)), $(status_field a checkpoints) checkpoints; node-b $(status_field b role) ($(status_field b state)); $(seconds_since "$started") s after pacemakerd started"
fi
[ "$(status_field a role)" = primary ] && [ "$(status_field b role)" = secondary ] &&
    [ "$(status_field a mode)" = corosync ] ||
    fail "cold start: node-a is '$(status_field a role)' ($(status_field a mode)), node-b '$(status_field b role)'"
[ "$(colo_roles a | tr '\n' ' ')" = "node-a Promoted node-b Unpromoted " ] &&
    pass "cold start: crm_mon: $(colo_roles a | tr '\n' ' ')" ||
    fail "cold start: crm_mon shows '$(colo_roles a | tr '\n' ' ')'"
# Promotion scores settle (the unpromoted monitor: 100 in step).
sleep 4

rm -f "$dir/stop-client"
ip netns exec "$prefix-client" python3 "$client_py" "$guest" "$dir/stop-client" 400 >"$dir/client.log" 2>&1 &
client_pid=$!
pids+=("$client_pid")
start_watch
sleep 2

# ---- 2. kill -9 of the primary's colo on node-a ----------------------------
start_sampler "$dir/samples-1" a b
log_b=$(colo_file b log)
b_lines=$(lines_of "$log_b")
pm_b_lines=$(lines_of "$dir/b/log/pacemaker/pacemaker.log")
a_lines=$(lines_of "$log_a")
primary_pid=$(cat "$(colo_file a pid)")
sleep 1
note_when "$log_b" "$b_lines" "failed over" "$dir/decided-1"
fault_at=$(now)
kill -9 "$primary_pid"
promoted="" resecondary="" reprotected=""
reprotected_now() {
    [ "$(status_field b role)" = primary ] && [ "$(status_field a role)" = secondary ] && checkpoints_over b 20
}
while [ -z "$reprotected" ] && (($(echo "$(now) - $fault_at < 120" | bc))); do
    [ -z "$promoted" ] && promoted=$(pacemaker_log_time b "$pm_b_lines" "Result of promote operation for colo on node-b: ok")
    [ -z "$resecondary" ] && log_has_since "$log_a" "$a_lines" "waiting for the primary" &&
        resecondary=$(seconds_since "$fault_at")
    [ -n "$resecondary" ] && [ -n "$promoted" ] && reprotected_now && reprotected=$(seconds_since "$fault_at")
    sleep 0.2
done
decided=$(cat "$dir/decided-1" 2>/dev/null)
[ -n "$decided" ] && pass "primary killed: colo on node-b took over after $(after "$decided" "$fault_at") s ($(grep -o 'cluster: take over: .*' "$log_b" | tail -1))" ||
    fail "primary killed: colo on node-b did not take over"
[ -n "$promoted" ] && pass "primary killed: Pacemaker promoted node-b after $(after "$promoted" "$fault_at") s" ||
    fail "primary killed: Pacemaker did not promote node-b ($(colo_roles b | tr '\n' ' '))"
# Promote on node-b confirmed what colo had decided: its log says so, and
# it came after colo's decision.
promote_line=$(tail -n +"$((pm_b_lines + 1))" "$dir/b/log/pacemaker/pacemaker.log" | grep -m1 "promote confirms it\|took over here$\|cold start here")
case "$promote_line" in
    *"promote confirms it"* | *"took over here")
        if [ -n "$decided" ] && [ -n "$promoted" ] && (($(echo "$decided <= $promoted" | bc))); then
            pass "primary killed: node-b's promote confirmed colo's decision (${promote_line##*INFO: })"
        else
            fail "primary killed: promote ($promoted) before colo decided ($decided)"
        fi ;;
    *) fail "primary killed: node-b's promote did not confirm colo's takeover: '$promote_line'" ;;
esac
[ -n "$resecondary" ] && pass "primary killed: Pacemaker restarted node-a's instance as a secondary after $resecondary s" ||
    fail "primary killed: no new secondary on node-a"
[ -n "$reprotected" ] &&
    pass "primary killed: protected again (notify), $(status_field b checkpoints) checkpoints node-b to node-a, after $reprotected s" ||
    fail "primary killed: node-b's VM was not protected to node-a again (b: $(status_field b role) $(status_field b state), a: $(status_field a role) $(status_field a state))"
stop_sampler "$dir/samples-1" "primary killed"
check_watch "primary killed" "$fault_at"
[ "$(colo_roles b | tr '\n' ' ')" = "node-a Unpromoted node-b Promoted " ] &&
    pass "primary killed: crm_mon: $(colo_roles b | tr '\n' ' ')" ||
    fail "primary killed: crm_mon shows '$(colo_roles b | tr '\n' ' ')'"
sleep 4

# ---- 2b. crm_resource --move of the promoted role: a switchover, and back ---
# Pacemaker demotes the promoted instance (the agent's demote is `colo
# switchover`: the peer's secondary takes the VM, this host starts a new
# secondary on its image, whose history is recorded), then promotes the
# peer, whose promote confirms what colo did and protects to the new
# secondary: an incremental resync. Then back, so step 3 finds node-b
# promoted as before.
move_promoted() { # TO FROM
    local to=$1 from=$2 what="crm_resource --move to node-$1"
    local log_to log_from to_lines from_lines pm_from_lines moved="" in_step="" move_at
    log_to=$(colo_file "$to" log) log_from=$(colo_file "$from" log)
    to_lines=$(lines_of "$log_to") from_lines=$(lines_of "$log_from")
    pm_from_lines=$(lines_of "$dir/$from/log/pacemaker/pacemaker.log")
    start_sampler "$dir/samples-move-$to" a b
    sleep 1
    move_at=$(now)
    on_node a crm_resource --resource colo-clone --move --promoted --node "node-$to" >"$dir/move-$to.log" 2>&1 ||
        { fail "$what: $(cat "$dir/move-$to.log")"; stop_sampler "$dir/samples-move-$to" "$what"; return 1; }
    in_step_now() {
        [ "$(promoted_on "$to")" = "node-$to" ] && [ "$(status_field "$to" role)" = primary ] &&
            [ "$(status_field "$from" role)" = secondary ] && checkpoints_over "$to" 20
    }
    while [ -z "$in_step" ] && (($(echo "$(now) - $move_at < 120" | bc))); do
        [ -z "$moved" ] && log_has_since "$log_to" "$to_lines" "switched over from" && moved=$(seconds_since "$move_at")
        [ -n "$moved" ] && in_step_now && in_step=$(seconds_since "$move_at")
        sleep 0.2
    done
    on_node a crm_resource --resource colo-clone --clear >>"$dir/move-$to.log" 2>&1 ||
        fail "$what: --clear: $(tail -2 "$dir/move-$to.log")"
    [ -n "$moved" ] &&
        pass "$what: the VM switched over to node-$to after $moved s ($(tail -n +"$((from_lines + 1))" "$log_from" | grep -o 'service gap [0-9.]* ms' | head -1))" ||
        fail "$what: no switchover to node-$to (node-$to: $(status_field "$to" role) $(status_field "$to" state))"
    log_has_since "$dir/$from/log/pacemaker/pacemaker.log" "$pm_from_lines" "demote handed the VM to the peer's secondary (switchover)" &&
        pass "$what: node-$from's demote was the switchover" ||
        fail "$what: node-$from's demote did not say it switched over"
    [ -n "$in_step" ] &&
        pass "$what: node-$to promoted and protecting to node-$from again, $(status_field "$to" checkpoints) checkpoints, after $in_step s" ||
        fail "$what: not back in step (crm_mon: $(colo_roles "$to" | tr '\n' ' '); node-$to $(status_field "$to" role) $(status_field "$to" state), node-$from $(status_field "$from" role) $(status_field "$from" state))"
    log_has_since "$log_to" "$to_lines" "disk sync done: disk 0 incremental" &&
        pass "$what: the resync to node-$from was incremental ($(tail -n +"$((to_lines + 1))" "$log_to" | grep -o 'disk sync done: .*' | head -1))" ||
        fail "$what: the resync to node-$from was not incremental: $(tail -n +"$((to_lines + 1))" "$log_to" | grep -o 'disk sync done: .*' | head -1)"
    stop_sampler "$dir/samples-move-$to" "$what"
    check_watch "$what" "$move_at"
    sleep 4
}
move_promoted a b
move_promoted b a

# ---- 3. kill -9 of corosync on the promoted node (node-b) ------------------
touch "$dir/stop-watch"
sleep 0.2
rm -f "$dir/lan.out"
start_watch
start_sampler "$dir/samples-2" a
a_lines=$(lines_of "$log_a")
pm_a_lines=$(lines_of "$dir/a/log/pacemaker/pacemaker.log")
sleep 1
note_when "$log_a" "$a_lines" "failed over" "$dir/decided-2"
fault_at=$(now)
kill -9 "$(cat "$dir/b/corosync.pid")"
fenced="" promoted="" gone=""
while [ -z "$promoted" ] || [ -z "$gone" ] || [ -z "$fenced" ]; do
    (($(echo "$(now) - $fault_at < 90" | bc))) || break
    [ -z "$fenced" ] && fenced=$(grep -m1 "\(reboot\|off\) node-b done" "$dir/fence-calls.log" 2>/dev/null | cut -d' ' -f1)
    [ -z "$gone" ] && [ -z "$(ip netns pids "$prefix-b")" ] && gone=$(seconds_since "$fault_at")
    [ -z "$promoted" ] && promoted=$(pacemaker_log_time a "$pm_a_lines" "Result of promote operation for colo on node-a: ok")
    sleep 0.1
done
decided=$(cat "$dir/decided-2" 2>/dev/null)
[ -n "$decided" ] && pass "corosync killed on node-b: colo on node-a took over after $(after "$decided" "$fault_at") s ($(grep -o 'cluster: take over: .*' "$log_a" | tail -1))" ||
    fail "corosync killed on node-b: colo on node-a did not take over"
[ -n "$fenced" ] && pass "corosync killed on node-b: fenced by fence_colo_lab after $(after "$fenced" "$fault_at") s ($(grep 'node-b' "$dir/fence-calls.log" | grep -v monitor | cut -d' ' -f2- | tr '\n' ';'))" ||
    fail "corosync killed on node-b: fence_colo_lab did not fence node-b ($(cat "$dir/fence-calls.log" 2>/dev/null | grep -v monitor | tr '\n' ';'))"
[ -n "$gone" ] && pass "corosync killed on node-b: nothing runs in node-b's namespace after $gone s" ||
    fail "corosync killed on node-b: still running in node-b: $(ip netns pids "$prefix-b" | xargs -r ps -o comm= -p | sort -u | tr '\n' ' ')"
[ -n "$promoted" ] && pass "corosync killed on node-b: Pacemaker promoted node-a after $(after "$promoted" "$fault_at") s" ||
    fail "corosync killed on node-b: Pacemaker did not promote node-a ($(colo_roles a | tr '\n' ' '))"
if [ -n "$promoted" ] && [ -n "$fenced" ] && (($(echo "$fenced <= $promoted" | bc))); then
    pass "corosync killed on node-b: promoted only after the fence"
else
    fail "corosync killed on node-b: promoted at '$promoted', fenced at '$fenced'"
fi
promote_line=$(tail -n +"$((pm_a_lines + 1))" "$dir/a/log/pacemaker/pacemaker.log" | grep -m1 "promote confirms it\|took over here$\|cold start here")
case "$promote_line" in
    *"promote confirms it"* | *"took over here")
        if [ -n "$decided" ] && [ -n "$promoted" ] && (($(echo "$decided <= $promoted" | bc))); then
            pass "corosync killed on node-b: node-a's promote confirmed colo's decision (${promote_line##*INFO: })"
        else
            fail "corosync killed on node-b: promote ($promoted) before colo decided ($decided)"
        fi ;;
    *) fail "corosync killed on node-b: node-a's promote did not confirm colo's takeover: '$promote_line'" ;;
esac
sleep 2
stop_sampler "$dir/samples-2" "corosync killed on node-b"
check_watch "corosync killed on node-b" "$fault_at"
state_a=$(status_field a state)
[ "$state_a" = "failed over" ] || [ "$state_a" = unprotected ] && pass "corosync killed on node-b: node-a serves the VM ($state_a)" ||
    fail "corosync killed on node-b: node-a is '$state_a'"
if [ "$(grep -c "cold start here" "$dir/a/log/pacemaker/pacemaker.log" "$dir/b/log/pacemaker/pacemaker.log" |
    awk -F: '{s += $2} END {print s}')" = 1 ]; then
    pass "the agent cold-started the VM once, at the first promotion"
else
    fail "the agent cold-started more than once: $(grep -h "cold start here" "$dir"/?/log/pacemaker/pacemaker.log)"
fi

# ---- the client: every acknowledged key reads back --------------------------
touch "$dir/stop-client"
waited=0
while kill -0 "$client_pid" 2>/dev/null && ((waited < 600)); do sleep 0.1; waited=$((waited + 1)); done
wait "$client_pid"
client_status=$?
if [ "$client_status" -eq 0 ] && [ "$(grep -c "^PASS" "$dir/client.log")" -eq 2 ]; then
    pass "the client's connection carried on through both faults, every acknowledged key reads back ($(grep -o 'longest gap[^)]*' "$dir/client.log" | head -1))"
else
    fail "the client saw errors (status $client_status)"
    sed 's/^/  client: /' "$dir/client.log" | tail -5
fi
touch "$dir/stop-watch"

echo "pacemaker_colo_test: $passed passed, $failed failed ($(seconds_since "$begin") s)"
[ "$failed" -eq 0 ]
