#!/bin/bash
# Never two copies (issue 12): a protected Linux VM on a real Corosync
# cluster (two nodes and a corosync-qnetd witness, scripts/lib/cluster_lab.sh),
# through the failures that leave both hosts alive. Needs root.
#
#   switch ns: bridge "br0" (Corosync, 10.93.0.0/24: a .1, b .2, witness .3)
#              bridge "rep" (replication, 10.94.0.0/24: a .1, b .2)
#              bridge "lan" (clients, 10.97.0.0/24: the VM .2, the client .1)
#   node a: colo run --cluster corosync + protect   (primary)
#   node b: colo secondary --cluster corosync       (secondary)
#
# Each trial boots a fresh pair, starts a client that keeps one TCP
# connection writing and verifying keys, makes one fault, and checks:
#   - exactly one copy serves afterwards, the one the rules name; the
#     other stands down (exit status 3) or is dead;
#   - on the client LAN, the copies never both released output: once the
#     second copy released a frame, the first released none
#     (tests/support/lan_output_watch.py counts each host's LAN port);
#   - every key the client saw acknowledged reads back from the survivor,
#     on the same connection.
# The faults: the primary frozen (SIGSTOP 1 s), the secondary frozen, the
# replication link cut with Corosync up (for 1 s and for 5 s), node a
# isolated from everything, host a hung (every process stopped 3 s) and
# dead (every process killed), corosync killed on a and on b, colo
# failover by hand, and kill -9 of the primary (its process left the
# group: the fastest path); and a planned `colo switchover` (b's ordered
# claim takes the epoch, a claims nothing and exits 0). Times from the
# fault to the survivor's decision are printed.
# Usage: colo_cluster_test.sh COLO GUEST_DIR SOURCE_DIR
set -uo pipefail
colo=$(realpath "$1") guest_dir=$(realpath "$2") source_dir=$(realpath "$3")
source "$source_dir/tests/support/e2e_lib.sh"
source "$source_dir/scripts/lib/cluster_lab.sh"
client_py=$source_dir/tests/migration/continuous_client.py
watch_py=$source_dir/tests/support/lan_output_watch.py
cluster_lab_require_tools
boot_timeout=120
guest=10.97.0.2
# Both sides' heartbeat timeout: the suspicion that starts a claim. Two
# sanitized VMs on two cores see scheduling gaps near 200 ms, and each
# false suspicion would end a trial early (safely: one copy stands down).
suspicion_ms=500

dir=$(mktemp -d /tmp/colo-cluster-test.XXXXXX)
prefix=ccl$$
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
    cluster_lab_destroy "$prefix" "$dir"
    if [ "$failed" -eq 0 ]; then rm -rf "$dir"; else echo "logs kept in $dir"; fi
}
trap cleanup EXIT
trap 'fail "interrupted"; exit 130' INT TERM
now() { date +%s.%N; }
ms_since() { echo "($(now) - $1) * 1000" | bc | awk '{printf "%.0f", $1}'; }

cluster_lab_create "$prefix" "$dir" && cluster_lab_add_vm_networks "$prefix" "$dir" ||
    { fail "cannot build the lab's namespaces"; exit 1; }
cluster_lab_start_corosync "$prefix" "$dir" || { fail "the cluster did not come up"; exit 1; }
pass "lab up: two nodes and a witness, quorate; replication and client networks"

cluster_lab_write_vm_configs "$dir" "$guest_dir" "$guest" "$colo"

on_node() { # NODE COMMAND...: with that node's control sockets
    local node=$1
    shift
    cluster_lab_run "$prefix" "$dir" "$node" env COLO_RUN_DIR="$dir/run-$node" "$@"
}
status_field() { # NODE FIELD: a field of the "replication" status ("" if none)
    on_node "$1" "$colo" status guarded --json 2>/dev/null |
        python3 -c "import json,sys; r=json.load(sys.stdin).get('replication',{}); v=r.get('$2', r.get('cluster',{}).get('$2','')); print(v)" 2>/dev/null
}

trial=0
# Boots the VM on a, a secondary on b, protects, starts the client and the
# LAN watch. Sets primary_pid, secondary_pid.
start_pair() {
    if [ -n "${primary_pid:-}" ]; then
        kill -9 "$primary_pid" "$secondary_pid" "$client_pid" 2>/dev/null
        wait "$primary_pid" "$secondary_pid" "$client_pid" 2>/dev/null
    fi
    touch "$dir/t$trial/stop-watch" 2>/dev/null
    trial=$((trial + 1))
    local t=$dir/t$trial
    mkdir -p "$t" "$dir/run-a" "$dir/run-b"
    rm -f "$dir"/run-?/*.sock
    cluster_lab_spawn "$prefix" "$dir" a "$t/primary.pid" "$t/primary.log" \
        env COLO_RUN_DIR="$dir/run-a" "$colo" run "$dir/a.cfg" --cluster corosync
    primary_pid=$(cat "$t/primary.pid")
    pids+=("$primary_pid")
    wait_for "$t/primary.log" "colo-guest: services ready" "trial $trial: primary boot" "$primary_pid" || return 1
    cluster_lab_spawn "$prefix" "$dir" b "$t/secondary.pid" "$t/secondary.log" \
        env COLO_RUN_DIR="$dir/run-b" "$colo" secondary --listen 10.94.0.2:47300 "$dir/b.cfg" --cluster corosync \
        --heartbeat-timeout "$suspicion_ms"
    secondary_pid=$(cat "$t/secondary.pid")
    pids+=("$secondary_pid")
    wait_for "$t/secondary.log" "waiting for the primary" "trial $trial: secondary" "$secondary_pid" || return 1
    rm -f "$t/stop-client" "$t/stop-watch"
    ip netns exec "$prefix-client" python3 "$client_py" "$guest" "$t/stop-client" 300 m - "$t/fault" \
        >"$t/client.log" 2>&1 &
    client_pid=$!
    pids+=("$client_pid")
    ip netns exec "$prefix-sw" python3 "$watch_py" watch "$t/stop-watch" "$t/lan.out" p-lan-a p-lan-b &
    pids+=($!)
    sleep 1
    on_node a "$colo" protect guarded 10.94.0.2:47300 --interval 100 --heartbeat-timeout "$suspicion_ms" >"$t/protect.log" 2>&1 ||
        { fail "trial $trial: protect: $(cat "$t/protect.log")"; return 1; }
    local started=$SECONDS count
    until count=$(status_field a checkpoints) && [ -n "$count" ] && [ "$count" -ge 20 ]; do
        ((SECONDS - started > 60)) && { fail "trial $trial: only '$count' checkpoints in 60 s"; return 1; }
        sleep 0.2
    done
    [ "$(status_field a mode)" = corosync ] && [ "$(status_field b mode)" = corosync ] ||
        { fail "trial $trial: status does not show the cluster (a: '$(status_field a mode)')"; return 1; }
    # The freeze rule judges by Corosync's token timeout, read from cmap:
    # the lab sets 200 ms, and an unreadable 0 would make any pause count.
    if [ "$trial" -eq 1 ]; then
        grep -q "token timeout 200 ms" "$t/secondary.log" &&
            pass "the secondary read Corosync's token timeout: $(grep -o 'token timeout 200 ms' "$t/secondary.log" | head -1)" ||
            fail "the secondary did not log the lab's token timeout: $(grep 'joined the Corosync group' "$t/secondary.log")"
    fi
    sleep 1
}

# Ends a trial: the client's verdict, the LAN's, who survived.
# WHAT SURVIVOR (a or b) LOSER_STATUS (3: stood down, 137: killed)
end_trial() {
    local what=$1 survivor=$2 loser_status=$3 t=$dir/t$trial loser
    [ "$survivor" = a ] && loser=b || loser=a
    sleep 3
    touch "$t/stop-client"
    local waited=0
    while kill -0 "$client_pid" 2>/dev/null && ((waited < 300)); do sleep 0.1; waited=$((waited + 1)); done
    wait "$client_pid"
    local client_status=$? passes
    passes=$(grep -c "^PASS" "$t/client.log")
    if [ "$client_status" -eq 0 ] && [ "$passes" -eq 2 ]; then
        pass "$what: the client's connection carried on, every acknowledged key reads back ($(grep -o 'longest gap[^)]*' "$t/client.log" | head -1))"
    else
        fail "$what: the client saw errors (status $client_status)"
        sed 's/^/  client: /' "$t/client.log" | tail -5
    fi
    touch "$t/stop-watch"
    sleep 0.1
    local lan
    local two_copies=0
    if lan=$(python3 "$watch_py" check "$t/lan.out" --from "$fault_at"); then
        pass "$what: never two copies on the LAN: $lan"
    else
        fail "$what: $lan"
        two_copies=1
    fi
    # One line per trial for bench/run_cluster.sh.
    echo "TRIAL kind=${FUNCNAME[1]#trial_} service_ms=${service_ms:-} two_copies=$two_copies client_gap_ms=$(grep -o 'longest gap between replies [0-9.]*' "$t/client.log" | grep -o '[0-9.]*$' | head -1)"
    service_ms=""
    local loser_pid survivor_pid
    [ "$loser" = a ] && loser_pid=$primary_pid || loser_pid=$secondary_pid
    [ "$survivor" = a ] && survivor_pid=$primary_pid || survivor_pid=$secondary_pid
    wait_exit "$loser_pid" 20
    local status=$?
    if [ "$status" -eq "$loser_status" ]; then
        pass "$what: $loser ended with status $status$(grep -o 'stopped: .*' "$dir/t$trial/$([ "$loser" = a ] && echo primary || echo secondary).log" | head -1 | sed 's/^/ (/;s/$/)/')"
    else
        fail "$what: $loser ended with status $status, expected $loser_status"
        tail -5 "$t/$([ "$loser" = a ] && echo primary || echo secondary).log"
    fi
    if kill -0 "$survivor_pid" 2>/dev/null; then
        pass "$what: $survivor serves: $(status_field "$survivor" state), decision: $(status_field "$survivor" reason)"
    else
        fail "$what: the survivor $survivor is not running"
    fi
    kill -9 "$primary_pid" "$secondary_pid" 2>/dev/null
    wait "$primary_pid" "$secondary_pid" 2>/dev/null
}

# Waits for TEXT in NODE's log of this trial; prints ms since the fault.
decided_after() { # NODE TEXT LIMIT
    local t=$dir/t$trial log pid
    [ "$1" = a ] && log=$t/primary.log pid=$primary_pid || log=$t/secondary.log pid=$secondary_pid
    local started=$SECONDS
    while ! grep -q "$2" "$log"; do
        ((SECONDS - started > $3)) && { echo "never"; return 1; }
        sleep 0.01
    done
    ms_since "$fault_at"
}

heal() {
    local node
    for node in a b; do
        ip -n "$prefix-sw" link set "p-$node" master br0 up
        ip -n "$prefix-sw" link set "p-rep-$node" up
        ip -n "$prefix-sw" link set "p-lan-$node" up
    done
    healed() { [ "$(cluster_lab_members "$prefix" "$dir" a)" = 2 ] && [ "$(cluster_lab_members "$prefix" "$dir" b)" = 2 ] &&
        cluster_lab_quorate "$prefix" "$dir" a && cluster_lab_quorate "$prefix" "$dir" b; }
    local started=$SECONDS
    until healed; do
        ((SECONDS - started > 30)) && { fail "the cluster did not heal within 30 s"; return 1; }
        sleep 0.2
    done
}

trial_primary_killed() { # its process left the group: b takes over at once
    start_pair || return
    fault_at=$(now)
    touch "$dir/t$trial/fault"
    kill -9 "$primary_pid"
    after=$(decided_after b "failed over" 10) && service_ms=$after &&
        pass "primary killed: b failed over $after ms after kill -9 ($(grep -o 'cluster: take over: .*' "$dir/t$trial/secondary.log" | head -1))" ||
        fail "primary killed: b did not fail over"
    end_trial "primary killed" b 137
}

trial_primary_frozen() { # b's claim wins; a wakes and stands down
    start_pair || return
    fault_at=$(now)
    touch "$dir/t$trial/fault"
    kill -STOP "$primary_pid"
    after=$(decided_after b "failed over" 10) && service_ms=$after && pass "primary frozen: b failed over after $after ms" ||
        fail "primary frozen: b did not fail over"
    sleep 1
    kill -CONT "$primary_pid"
    end_trial "primary frozen 1 s" b 3
}

trial_secondary_frozen() { # a's claim wins, a runs on; b wakes and stands down
    start_pair || return
    fault_at=$(now)
    touch "$dir/t$trial/fault"
    kill -STOP "$secondary_pid"
    after=$(decided_after a "running on unprotected" 10) && service_ms=$after &&
        pass "secondary frozen: a runs on unprotected after $after ms" || fail "secondary frozen: a did not carry on"
    sleep 1
    kill -CONT "$secondary_pid"
    end_trial "secondary frozen 1 s" a 3
}

trial_link_cut() { # SECONDS: the replication link only, Corosync up: the ordered claim decides
    start_pair || return
    fault_at=$(now)
    touch "$dir/t$trial/fault"
    ip -n "$prefix-sw" link set p-rep-a down
    local started=$SECONDS
    until grep -q "failed over" "$dir/t$trial/secondary.log" || grep -q "running on unprotected" "$dir/t$trial/primary.log"; do
        ((SECONDS - started > 10)) && break
        sleep 0.01
    done
    service_ms=$(ms_since "$fault_at")
    local left
    left=$(echo "$1 - $service_ms / 1000" | bc -l)
    [ "$(echo "$left > 0" | bc)" = 1 ] && sleep "$left"
    ip -n "$prefix-sw" link set p-rep-a up
    sleep 2
    local survivor=a
    grep -q "failed over" "$dir/t$trial/secondary.log" && survivor=b
    pass "replication link cut for $1 s: $survivor kept the VM ($(grep -ho 'cluster: take over: .*' "$dir/t$trial/"*.log | head -1))"
    end_trial "link cut $1 s" "$survivor" 3
}

trial_isolated() { # node a cut off from everything: a loses quorum and stands down
    start_pair || return
    fault_at=$(now)
    touch "$dir/t$trial/fault"
    local port
    for port in p-a p-rep-a p-lan-a; do ip -n "$prefix-sw" link set "$port" down; done
    after=$(decided_after b "failed over" 15) && service_ms=$after && pass "a isolated: b failed over after $after ms" ||
        fail "a isolated: b did not fail over"
    after=$(decided_after a "stand down" 15) && pass "a isolated: a stood down after $after ms" ||
        fail "a isolated: a did not stand down"
    end_trial "a isolated" b 3
    heal
}

trial_corosync_killed() { # NODE: that node's copy cannot hear a verdict and stands down; the other serves
    local node=$1 other survivor_says
    [ "$node" = a ] && other=b survivor_says="failed over" || other=a survivor_says="running on unprotected"
    start_pair || return
    fault_at=$(now)
    touch "$dir/t$trial/fault"
    kill -9 "$(cat "$dir/$node/corosync.pid")"
    after=$(decided_after "$node" "stand down" 10) && pass "corosync killed on $node: $node stood down after $after ms" ||
        fail "corosync killed on $node: $node did not stand down"
    after=$(decided_after "$other" "$survivor_says" 15) && service_ms=$after &&
        pass "corosync killed on $node: $other serves ($survivor_says) after $after ms" ||
        fail "corosync killed on $node: $other did not carry on"
    end_trial "corosync killed on $node" "$other" 3
    restart_corosync "$node"
}

restart_corosync() { # NODE: for any trial after this one
    cluster_lab_restart_corosync "$prefix" "$dir" "$1" || fail "corosync on $1 did not restart"
    heal
}


trial_host_hung() { # every process of node a stopped 3 s (corosync too): b takes over by quorum; a wakes and stands down
    start_pair || return
    local node_pids
    node_pids=$(ip netns pids "$prefix-a")
    fault_at=$(now)
    touch "$dir/t$trial/fault"
    kill -STOP $node_pids
    after=$(decided_after b "failed over" 15) && pass "host a hung: b failed over after $after ms" ||
        fail "host a hung: b did not fail over"
    service_ms=$after
    sleep 3
    kill -CONT $node_pids
    after=$(decided_after a "stand down" 15) && pass "host a hung: a woke and stood down $after ms after the fault" ||
        fail "host a hung: a did not stand down after waking"
    end_trial "host a hung 3 s" b 3
    heal
}

trial_host_dead() { # every process of node a killed (-9), corosync too: b takes over by quorum
    start_pair || return
    fault_at=$(now)
    touch "$dir/t$trial/fault"
    kill -9 $(ip netns pids "$prefix-a")
    after=$(decided_after b "failed over" 15) && pass "host a dead: b failed over after $after ms" ||
        fail "host a dead: b did not fail over"
    service_ms=$after
    end_trial "host a dead" b 137
    restart_corosync a
}

trial_manual_failover() { # colo failover on b obeys the cluster: b's claim wins, a stands down
    start_pair || return
    local line
    line=$(on_node a "$colo" status guarded | grep "^  cluster")
    if echo "$line" | grep -q "cluster *corosync, node 1, peer node 2 (in the group), ring [0-9]* of 2 nodes, quorate, epoch 1; decision: none"; then
        pass "colo status on a:$line"
    else
        fail "colo status on a: '$line'"
    fi
    fault_at=$(now)
    touch "$dir/t$trial/fault"
    on_node b "$colo" failover guarded >"$dir/t$trial/failover.log" 2>&1 &&
        pass "colo failover on b: $(cat "$dir/t$trial/failover.log") after $(ms_since "$fault_at") ms" ||
        fail "colo failover on b: $(cat "$dir/t$trial/failover.log")"
    end_trial "colo failover by hand" b 3
}

trial_switchover() { # colo switchover on a: b's ordered claim takes the epoch, a yields and exits 0
    start_pair || return
    fault_at=$(now)
    touch "$dir/t$trial/fault"
    if on_node a "$colo" switchover guarded >"$dir/t$trial/switchover.log" 2>&1; then
        pass "colo switchover on a: $(cat "$dir/t$trial/switchover.log") ($(ms_since "$fault_at") ms for the command)"
    else
        fail "colo switchover on a: $(cat "$dir/t$trial/switchover.log")"
    fi
    service_ms=$(grep -o "service gap [0-9.]*" "$dir/t$trial/switchover.log" | grep -o "[0-9.]*$")
    local epoch
    epoch=$(status_field b epoch)
    [ "$epoch" = 2 ] && [ "$(status_field b decision)" = "take over" ] &&
        pass "colo switchover: b owns the VM in epoch 2 by its claim ($(status_field b reason))" ||
        fail "colo switchover: b's epoch '$epoch', decision '$(status_field b decision)'"
    grep -q "switched over: the VM runs on" "$dir/t$trial/primary.log" && ! grep -q "claim sent" "$dir/t$trial/primary.log" &&
        pass "colo switchover: a claimed nothing and says: $(grep -o 'switched over: the VM runs on.*' "$dir/t$trial/primary.log" | tail -1)" ||
        fail "colo switchover: a's log: $(grep 'colo' "$dir/t$trial/primary.log" | tail -3)"
    end_trial "colo switchover" b 0
}

# COLO_CLUSTER_TRIALS picks trials by name (bench/run_cluster.sh repeats them).
for name in ${COLO_CLUSTER_TRIALS:-primary_killed primary_frozen secondary_frozen link_cut:1 link_cut:5 link_cut:30 isolated host_hung host_dead corosync_killed:a corosync_killed:b manual_failover switchover}; do
    trial_"${name%%:*}" $( [[ $name == *:* ]] && echo "${name#*:}")
done

echo "colo_cluster_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
