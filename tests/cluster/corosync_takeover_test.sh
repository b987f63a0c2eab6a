#!/bin/bash
# The takeover guard (cluster/takeover_guard.c) on real Corosync: two
# probes (tests/cluster/takeover_probe.c), one per lab node, stand in for
# the two colo processes of a VM (needs root; scripts/lib/cluster_lab.sh).
# In every round exactly one side may end up owning the VM:
# 1. the peer's process killed (-9): the other takes over at once;
# 2. both report the link lost at the same moment: one claim wins, on both;
# 3. a probe frozen (SIGSTOP) while the other claims: after SIGCONT it
#    stands down and never says it may release;
# 4. the link between the nodes cut (the witness reachable from both):
#    both claim; the side with quorum takes over, the other stands down;
# 5. node a cut off from everything: a stands down, b takes over;
# 6. corosync killed (-9) on b: b stands down (no verdict can come), a
#    takes over once its ring without b is quorate.
# Usage: corosync_takeover_test.sh SOURCE_DIR PROBE
set -uo pipefail
source_dir=$(realpath "$1")
probe=$(realpath "$2")
source "$source_dir/tests/support/e2e_lib.sh"
source "$source_dir/scripts/lib/cluster_lab.sh"
cluster_lab_require_tools

dir=$(mktemp -d /tmp/colo-takeover-test.XXXXXX)
prefix=ctt$$
cleanup() {
    for node in a b; do
        probe_pid "$node" >/dev/null && kill -9 "$(probe_pid "$node")" 2>/dev/null
    done
    exec 7>&- 8>&-
    cluster_lab_destroy "$prefix" "$dir"
    if [ "$failed" -eq 0 ]; then rm -rf "$dir"; else echo "logs kept in $dir"; fi
}
trap cleanup EXIT
trap 'fail "interrupted"; exit 130' INT TERM
now() { date +%s.%N; }
until_true_poll=0.02 # e2e_lib.sh's until_true: the takeover's timings are read at this grain

round=0
# The probe's own pid (cluster_lab_run runs it from a subshell).
probe_pid() { # NODE
    local pid
    pid=$(sed -n 's/^ready node [0-9]* pid \([0-9]*\)$/\1/p' "$dir/$1/probe.$round.out" 2>/dev/null)
    [ -n "$pid" ] && echo "$pid"
}
# Starts a probe on each node in a fresh group; fd 7 feeds a's, 8 b's.
start_probes() {
    local node
    for node in a b; do
        probe_pid "$node" >/dev/null && kill -9 "$(probe_pid "$node")" 2>/dev/null
    done
    exec 7>&- 8>&-
    round=$((round + 1))
    for node in a b; do
        rm -f "$dir/$node/probe.in"
        mkfifo "$dir/$node/probe.in"
        cluster_lab_run "$prefix" "$dir" "$node" "$probe" "colo-probe-$round" <"$dir/$node/probe.in" \
            >"$dir/$node/probe.$round.out" 2>"$dir/$node/probe.$round.err" &
    done
    exec 7>"$dir/a/probe.in" 8>"$dir/b/probe.in"
    local ready_both
    ready_both() { grep -q "^ready" "$dir/a/probe.$round.out" && grep -q "^ready" "$dir/b/probe.$round.out"; }
    until_true 10 ready_both || { fail "round $round: the probes did not join"; cat "$dir"/?/probe.$round.err; return 1; }
    # Each must see the other in the group before anything happens.
    peers_seen() {
        echo status >&7
        echo status >&8
        sleep 0.05
        [ "$(grep -c "peer_present=1" "$dir/a/probe.$round.out")" -gt 0 ] &&
            [ "$(grep -c "peer_present=1" "$dir/b/probe.$round.out")" -gt 0 ]
    }
    until_true 10 peers_seen || { fail "round $round: the probes did not see each other"; return 1; }
}
final_of() { # NODE: take-over, stand-down or nothing
    sed -n 's/^final \([a-z-]*\) .*/\1/p' "$dir/$1/probe.$round.out" | head -1
}
final_line() { grep "^final" "$dir/$1/probe.$round.out" | head -1; }
has_final() { [ -n "$(final_of "$1")" ]; }
both_final() { # LIMIT WHAT: both sides reached a final verdict within LIMIT s
    until_true "$1" has_final a && until_true "$1" has_final b && return 0
    fail "$2: no final verdict within $1 s (a: '$(final_of a)', b: '$(final_of b)')"
    return 1
}
# The at= wall-clock second of NODE's final verdict.
final_at() { sed -n 's/^final [a-z-]* ms=[0-9]* at=\([0-9.]*\):.*/\1/p' "$dir/$1/probe.$round.out" | head -1; }
elapsed_ms() { echo "($1 - $2) * 1000" | bc | awk '{printf "%.0f", $1}'; }
# Exactly one owner: one side took over and the other stood down.
one_owner() { # WHAT EXPECTED_A EXPECTED_B (either may be "any")
    local what=$1 a b
    a=$(final_of a)
    b=$(final_of b)
    if [ "$2" != any ] && [ "$a" != "$2" ]; then fail "$what: a: '$a', expected $2 ($(final_line a))"; return 1; fi
    if [ "$3" != any ] && [ "$b" != "$3" ]; then fail "$what: b: '$b', expected $3 ($(final_line b))"; return 1; fi
    if [ "$a" = "$b" ]; then fail "$what: both sides say '$a': two owners or none"; return 1; fi
    return 0
}
heal() {
    ip -n "$prefix-sw" link set p-a master br0 2>/dev/null
    ip -n "$prefix-sw" link set p-a up 2>/dev/null
    bridge -n "$prefix-sw" link set dev p-a isolated off 2>/dev/null
    bridge -n "$prefix-sw" link set dev p-b isolated off 2>/dev/null
    healed() {
        [ "$(cluster_lab_members "$prefix" "$dir" a)" = 2 ] && [ "$(cluster_lab_members "$prefix" "$dir" b)" = 2 ] &&
            cluster_lab_quorate "$prefix" "$dir" a && cluster_lab_quorate "$prefix" "$dir" b
    }
    until_true 30 healed || { fail "the lab did not heal within 30 s"; return 1; }
    sleep 1
}

cluster_lab_create "$prefix" "$dir" || { fail "cannot build the lab's namespaces"; exit 1; }
cluster_lab_start_corosync "$prefix" "$dir" || { fail "the cluster did not come up"; exit 1; }
pass "lab up: two nodes and a witness, quorate"

# ---- 1. the peer's process killed ----
if start_probes; then
    killed=$(now)
    kill -9 "$(probe_pid b)"
    if until_true 5 has_final a && [ "$(final_of a)" = take-over ]; then
        pass "b's process killed: a took over after $(elapsed_ms "$(final_at a)" "$killed") ms ($(final_line a | cut -d: -f2-))"
    else
        fail "b's process killed: a says '$(final_of a)' ($(final_line a))"
    fi
fi

# ---- 2. racing claims ----
for race in 1 2 3; do
    start_probes || break
    echo link >&7 &
    echo link >&8
    wait $!
    if both_final 5 "racing claims $race" && one_owner "racing claims $race" any any; then
        pass "racing claims $race: a $(final_of a), b $(final_of b)"
    fi
done

# ---- 3. a frozen while b claims ----
if start_probes; then
    kill -STOP "$(probe_pid a)"
    echo suspect >&8
    until_true 5 has_final b
    sleep 0.3
    echo release >&7
    kill -CONT "$(probe_pid a)"
    until_true 5 has_final a
    echo release >&7
    sleep 0.2
    if one_owner "frozen a" stand-down take-over; then
        if grep -q "^release yes" "$dir/a/probe.$round.out"; then
            fail "frozen a: it said it may release after waking ($(grep "^release" "$dir/a/probe.$round.out" | tr '\n' ' '))"
        else
            pass "a frozen while b claimed: b took over, a stood down on waking and never released"
        fi
    fi
fi

# ---- 4. the link between the nodes cut, the witness reachable ----
if start_probes; then
    cut=$(now)
    bridge -n "$prefix-sw" link set dev p-a isolated on
    bridge -n "$prefix-sw" link set dev p-b isolated on
    sleep 0.2 # colo's heartbeat suspicion
    echo link >&7 &
    echo link >&8
    wait $!
    if both_final 15 "cut link" && one_owner "cut link" any any; then
        pass "link cut: a $(final_of a) after $(elapsed_ms "$(final_at a)" "$cut") ms, b $(final_of b) after $(elapsed_ms "$(final_at b)" "$cut") ms"
    fi
    heal
fi

# ---- 5. a cut off from everything ----
if start_probes; then
    cut=$(now)
    ip -n "$prefix-sw" link set p-a nomaster
    sleep 0.2
    echo link >&7 &
    echo link >&8
    wait $!
    if both_final 15 "a isolated" && one_owner "a isolated" stand-down take-over; then
        pass "a isolated: a stood down after $(elapsed_ms "$(final_at a)" "$cut") ms, b took over after $(elapsed_ms "$(final_at b)" "$cut") ms"
    fi
    heal
fi

# ---- 6. corosync killed on b ----
if start_probes; then
    killed=$(now)
    kill -9 "$(cat "$dir/b/corosync.pid")"
    if both_final 20 "corosync killed on b" && one_owner "corosync killed on b" take-over stand-down; then
        pass "corosync killed on b: b stood down after $(elapsed_ms "$(final_at b)" "$killed") ms, a took over after $(elapsed_ms "$(final_at a)" "$killed") ms"
    fi
fi

echo "corosync_takeover_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
