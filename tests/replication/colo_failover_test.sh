#!/bin/bash
# COLO end to end with a Linux VM and a live client connection (needs root:
# namespaces, TAP).
#
#   client ns: veth0 10.97.0.1 ---- veth1 -- br0 -- tapA -- colo run + protect   (primary, "host A")
#                                           \--- tapB -- colo secondary          (secondary, "host B")
#
# Both "hosts" share one namespace (as in tests/migration/migration_test.sh),
# each with its own COLO_RUN_DIR; replication runs over 127.0.0.1 there.
# 1. The VM boots on A; B waits as a secondary; `colo protect` starts the
#    initial copy and checkpoints. A client keeps one TCP connection
#    writing and verifying keys (the guest's memory churner on) through a
#    few dozen checkpoints; then the primary is killed (-9). The secondary
#    must fail over within a bounded time, the client's connection must go
#    on without a reset, and every acknowledged key must read back.
# 2. The failed-over VM on B is protected in turn by a new secondary on A;
#    the secondary is killed (-9): the primary runs on unprotected and the
#    client sees no error.
# 3. B is protected once more; its colo process is frozen (SIGSTOP, so its
#    connections stay open): the secondary notices by the heartbeat alone
#    and fails over; the client carries on.
# 4. `colo failover` by hand; 5. `colo quit` of a protected VM.
# In parts 1-4, at no moment did two copies release output: the frames out
# of tapA and tapB (tests/support/lan_output_watch.py) come from one TAP,
# then from the other, never back and forth.
# Usage: tests/replication/colo_failover_test.sh COLO GUEST_DIR
set -uo pipefail
colo=$(realpath "$1") guest_dir=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
boot_timeout=120
failover_limit=10            # seconds from kill -9 of the primary to "failed over"
checkpoints_wanted=30
guest=10.97.0.2

source "$here/colo_test_lib.sh"
source "$here/../support/kv_keys.sh"
colo_test_begin failover ft
mkdir -p "$work/A" "$work/B" "$work/A2"

# Background colo processes are started as simple commands (not through
# on_host), so that $! is colo itself (ip netns exec execs it): kill -9
# must hit the colo process, not a subshell.

lan_watch_start tapA tapB

# ---- 1. protect, then kill the primary: the secondary takes over ----
part_started=$(now)
COLO_RUN_DIR=$work/A ip netns exec "$hosts_ns" "$colo" run "$work/a.cfg" >"$work/primary.log" 2>&1 </dev/null &
primary_pid=$!; pids+=("$primary_pid")
wait_for "$work/primary.log" "colo-guest: services ready" "primary boot" "$primary_pid" || exit 1
pass "the VM booted on A (churning 2000 pages/s)"

COLO_RUN_DIR=$work/B ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47100 "$work/b.cfg" --heartbeat-timeout 1000 >"$work/secondary.log" 2>&1 </dev/null &
secondary_pid=$!; pids+=("$secondary_pid")
wait_for "$work/secondary.log" "waiting for the primary" "secondary listening" "$secondary_pid" || exit 1

run_client one 200
sleep 1
# Part 1 releases output the buffered way (every reply asks for a
# checkpoint), which it checks; the compare mode's failover is
# colo_compare_test.sh's, and parts 2-5 here run in it (the default).
if on_host "$work/A" "$colo" protect guarded 127.0.0.1:47100 --mode buffered --interval 100 >"$work/protect.log" 2>&1; then
    pass "$(cat "$work/protect.log")"
else
    fail "colo protect failed: $(cat "$work/protect.log")"; exit 1
fi
if message=$(wait_for_checkpoints "$work/A" "$checkpoints_wanted"); then
    pass "the primary took $checkpoints_wanted checkpoints (p50 downtime $(replication_field "$work/A" downtime_p50_ms) ms, p99 $(replication_field "$work/A" downtime_p99_ms) ms, $(replication_field "$work/A" released_total) frames released after holding)"
else
    fail "checkpoints: $message"; tail -5 "$work/primary.log"; tail -5 "$work/secondary.log"
fi
# The client's replies are held: they ask for checkpoints (at once by
# default) instead of waiting for the 100 ms interval.
by_output=$(replication_field "$work/A" checkpoints_by_output)
[ -n "$by_output" ] && [ "$by_output" -gt 0 ] &&
    pass "held output triggered $by_output of $(replication_field "$work/A" checkpoints) checkpoints (output delay $(replication_field "$work/A" output_delay_ms) ms)" ||
    fail "no checkpoint was triggered by held output ('$by_output')"
# A checkpoint on request (the control socket's trigger), with its report.
if out=$(on_host "$work/A" "$colo" checkpoint guarded 2>&1) &&
    echo "$out" | grep -Eq "^checkpoint [0-9]+ of guarded: [0-9]+ dirty pages, .* PVM paused [0-9.]+ ms \(secondary suspending"; then
    pass "colo checkpoint: $out"
else
    fail "colo checkpoint: '$out'"
fi
on_host "$work/B" "$colo" checkpoint guarded >"$work/checkpoint-b.log" 2>&1 &&
    fail "colo checkpoint on the secondary succeeded" ||
    pass "colo checkpoint on the secondary is refused: $(cat "$work/checkpoint-b.log")"
# Saved or migrated, the SVM would run as a second copy beside the primary:
# both are refused, nothing is written, and the pair carries on.
before=$(replication_field "$work/A" checkpoints)
for how in "migrate guarded 127.0.0.1:47199" "save guarded $work/svm.colo"; do
    if on_host "$work/B" "$colo" $how >"$work/refused.log" 2>&1; then
        fail "colo ${how%% *} on the secondary succeeded: $(tr '\n' ' ' <"$work/refused.log")"
    elif grep -q "this VM is a COLO secondary" "$work/refused.log" && [ ! -e "$work/svm.colo" ]; then
        pass "colo ${how%% *} on the secondary is refused: $(grep -o 'this VM is a COLO secondary.*' "$work/refused.log")"
    else
        fail "colo ${how%% *} on the secondary: $(tr '\n' ' ' <"$work/refused.log"; ls "$work"/svm.colo* 2>/dev/null)"
    fi
done
state=$(wait_for_checkpoints "$work/A" $((before + 3)) >/dev/null && replication_field "$work/B" state)
[ "$state" = RESUMED ] || [ "$state" = SUSPENDED ] &&
    pass "the pair carries on after the refusals ($before -> $(replication_field "$work/A" checkpoints) checkpoints)" ||
    fail "the pair after the refusals: secondary '$state'"
# The same figures for a scraper, from a live protected pair.
metrics=$(on_host "$work/A" "$colo" metrics guarded 2>&1)
if grep -Eq '^colo_checkpoints_total\{vm="guarded"\} [1-9][0-9]*$' <<<"$metrics" &&
    grep -Eq '^colo_checkpoint_downtime_seconds\{vm="guarded",quantile="0.5"\} [0-9.e-]+$' <<<"$metrics" &&
    grep -q '^colo_replication_role{vm="guarded",role="primary"} 1$' <<<"$metrics"; then
    pass "colo metrics on A: $(echo "$metrics" | grep -c '^colo_') samples, $(echo "$metrics" | grep '^colo_checkpoints_total')"
else
    fail "colo metrics on A: $(echo "$metrics" | grep -E 'checkpoints_total|downtime_seconds|replication_role' | tr '\n' ' ')"
fi
line=$(on_host "$work/A" "$colo" status guarded 2>/dev/null | grep "replication")
echo "$line" | grep -q "primary, .* checkpoints, downtime p50" && pass "colo status on A:$line" ||
    fail "colo status on A has no replication line: '$line'"
role=$(replication_field "$work/B" role) state=$(replication_field "$work/B" state)
[ "$role" = secondary ] && { [ "$state" = RESUMED ] || [ "$state" = SUSPENDED ]; } && pass "colo status on B: secondary, $state, $(replication_field "$work/B" checkpoints) checkpoints applied, $(replication_field "$work/B" dropped_transmits) SVM frames dropped, $(replication_field "$work/B" mirrored_frames_received) mirrored frames received" ||
    fail "colo status on B: role '$role', state '$state'"
sleep 2

kill -9 "$primary_pid"; wait "$primary_pid" 2>/dev/null
killed_at=$SECONDS
if wait_for "$work/secondary.log" "failed over" "failover" "$secondary_pid" "$failover_limit"; then
    pass "the secondary failed over within $((SECONDS - killed_at + 1)) s of kill -9 of the primary"
fi
[ "$(replication_field "$work/B" state)" = "failed over" ] && pass "colo status on B: failed over" ||
    fail "colo status on B: '$(replication_field "$work/B" state)'"
sleep 5
finish_client one "failover"
lan_check "$part_started" "kill -9 of the primary"

# ---- 2. protect the survivor; kill its secondary: the primary runs on ----
part_started=$(now)
COLO_RUN_DIR=$work/A2 ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47101 "$work/a.cfg" --heartbeat-timeout 1000 >"$work/secondary2.log" 2>&1 </dev/null &
secondary2_pid=$!; pids+=("$secondary2_pid")
wait_for "$work/secondary2.log" "waiting for the primary" "second secondary listening" "$secondary2_pid" || exit 1
run_client two 200
sleep 1
if on_host "$work/B" "$colo" protect guarded 127.0.0.1:47101 --interval 100 >"$work/protect2.log" 2>&1; then
    pass "$(cat "$work/protect2.log")"
else
    fail "second colo protect failed: $(cat "$work/protect2.log")"
fi
if message=$(wait_for_checkpoints "$work/B" 20); then
    pass "the new primary took 20 checkpoints"
else
    fail "checkpoints of the new primary: $message"
fi
kill -9 "$secondary2_pid"; wait "$secondary2_pid" 2>/dev/null
started=$SECONDS
while [ "$(replication_field "$work/B" state)" != unprotected ] && ((SECONDS - started < 30)); do sleep 0.2; done
state=$(replication_field "$work/B" state)
[ "$state" = unprotected ] && pass "the primary noticed in $((SECONDS - started)) s and runs on unprotected: $(replication_field "$work/B" ended)" ||
    fail "primary state after losing its secondary: '$state'"
sleep 3
finish_client two "secondary lost"
lan_check "$part_started" "kill -9 of the secondary"
kill -0 "$secondary_pid" 2>/dev/null && pass "the VM still runs on B" || fail "the VM on B is gone"

# ---- 3. a primary that hangs (SIGSTOP: its connections stay open) is
# noticed by the heartbeat alone, and the secondary takes over ----
part_started=$(now)
mkdir -p "$work/A3"
COLO_RUN_DIR=$work/A3 ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47102 "$work/a.cfg" \
    --heartbeat-timeout 300 >"$work/secondary3.log" 2>&1 </dev/null &
secondary3_pid=$!; pids+=("$secondary3_pid")
wait_for "$work/secondary3.log" "waiting for the primary" "third secondary listening" "$secondary3_pid" || exit 1
run_client three 200
sleep 1
on_host "$work/B" "$colo" protect guarded 127.0.0.1:47102 --interval 100 >"$work/protect3.log" 2>&1 ||
    fail "third colo protect failed: $(cat "$work/protect3.log")"
wait_for_checkpoints "$work/B" 20 >/dev/null || fail "the third protection took no 20 checkpoints"
kill -STOP "$secondary_pid"
stopped_at=$SECONDS
if wait_for "$work/secondary3.log" "failed over" "failover on silence" "$secondary3_pid" "$failover_limit"; then
    grep -q "no heartbeat from the peer" "$work/secondary3.log" &&
        pass "a hung primary was noticed by the heartbeat: $(grep -o 'no heartbeat.*' "$work/secondary3.log" | head -1); failed over within $((SECONDS - stopped_at + 1)) s" ||
        fail "failed over, but not because of the heartbeat: $(grep 'colo secondary' "$work/secondary3.log" | tail -3)"
fi
kill -9 "$secondary_pid"; wait "$secondary_pid" 2>/dev/null
sleep 3
finish_client three "hung primary"
lan_check "$part_started" "a hung primary"

# ---- 4. failover by hand; and a secondary without a whole copy refuses ----
# (heartbeat off: only `colo failover` may end it; the primary is frozen
# first, as an operator would make sure the primary is gone.)
part_started=$(now)
mkdir -p "$work/B4" "$work/B5"   # B5 uses tapA, free once A3 is gone
COLO_RUN_DIR=$work/B4 ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47103 "$work/b.cfg" \
    --heartbeat-timeout 0 >"$work/secondary4.log" 2>&1 </dev/null &
secondary4_pid=$!; pids+=("$secondary4_pid")
wait_for "$work/secondary4.log" "waiting for the primary" "fourth secondary listening" "$secondary4_pid" || exit 1
run_client four 200
sleep 1
on_host "$work/A3" "$colo" protect guarded 127.0.0.1:47103 --interval 100 >"$work/protect4.log" 2>&1 ||
    fail "fourth colo protect failed: $(cat "$work/protect4.log")"
wait_for_checkpoints "$work/A3" 20 >/dev/null || fail "the fourth protection took no 20 checkpoints"
on_host "$work/A3" "$colo" failover guarded >"$work/failover-primary.log" 2>&1 &&
    fail "colo failover on a primary succeeded" ||
    pass "colo failover on the primary is refused: $(cat "$work/failover-primary.log")"
kill -STOP "$secondary3_pid"
sleep 1
grep -q "failed over" "$work/secondary4.log" && fail "the secondary failed over by itself with the heartbeat off"
if on_host "$work/B4" "$colo" failover guarded >"$work/failover.log" 2>&1; then
    pass "colo failover by hand: $(cat "$work/failover.log")"
else
    fail "colo failover by hand: $(cat "$work/failover.log")"
fi
[ "$(replication_field "$work/B4" state)" = "failed over" ] && pass "colo status on B: failed over" ||
    fail "colo status on B after colo failover: '$(replication_field "$work/B4" state)'"
kill -9 "$secondary3_pid"; wait "$secondary3_pid" 2>/dev/null
sleep 3
finish_client four "failover by hand"
lan_check "$part_started" "failover by hand"

# A "primary" that pairs and dies after the first bytes of its stream: on
# plain TCP (replication_auth = "none") a script can speak the pairing's
# hellos (cluster/peer_pairing.h); with TLS it could not.
sed 's/^replication_auth = .*/replication_auth = "none"/; /^replication_psk/d' "$work/a.cfg" >"$work/plain.cfg"
COLO_RUN_DIR=$work/B5 ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47104 "$work/plain.cfg" \
    --name early >"$work/secondary5.log" 2>&1 </dev/null &
secondary5_pid=$!; pids+=("$secondary5_pid")
wait_for "$work/secondary5.log" "waiting for the primary" "fifth secondary listening" "$secondary5_pid" || exit 1
ip netns exec "$hosts_ns" python3 -c '
import os, socket
binding = os.urandom(32)
def hello(channel):
    connection = socket.create_connection(("127.0.0.1", 47104))
    connection.sendall(b"COLOPAIR" + bytes([1, channel, 0, 0]) + binding)
    assert connection.recv(12) == b"COLOPAIR" + bytes([1, channel, 0, 0])
    return connection
a = hello(1); b = hello(2)
a.sendall(b"COLOSTRM"); a.close(); b.close()'
wait_exit "$secondary5_pid" 20; status=$?
if [ "$status" -ne 0 ] && grep -q "failover refused" "$work/secondary5.log"; then
    pass "a primary lost during the initial copy: the secondary refuses to fail over and exits $status: $(grep 'refused' "$work/secondary5.log" | head -1)"
else
    fail "secondary without a whole copy: status $status"; tail -5 "$work/secondary5.log"
fi

# ---- 5. quit of a protected VM ends its colo cleanly (no hang) ----
mkdir -p "$work/A6"
COLO_RUN_DIR=$work/A6 ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47105 "$work/a.cfg" --heartbeat-timeout 1000 \
    >"$work/secondary6.log" 2>&1 </dev/null &
secondary6_pid=$!; pids+=("$secondary6_pid")
wait_for "$work/secondary6.log" "waiting for the primary" "sixth secondary listening" "$secondary6_pid" || exit 1
on_host "$work/B4" "$colo" protect guarded 127.0.0.1:47105 --interval 100 >"$work/protect6.log" 2>&1 ||
    fail "sixth colo protect failed: $(cat "$work/protect6.log")"
wait_for_checkpoints "$work/B4" 10 >/dev/null || fail "the sixth protection took no 10 checkpoints"
on_host "$work/B4" "$colo" quit guarded >/dev/null 2>&1
started=$SECONDS
wait_exit "$secondary4_pid" 20; status=$?
if [ "$status" -eq 0 ]; then
    pass "colo quit of a protected VM: its colo exited 0 in $((SECONDS - started)) s"
else
    # 124: still running (a sanitizer report that hangs in exit looks so too).
    fail "colo quit of a protected VM: status $status after $((SECONDS - started)) s"; tail -15 "$work/secondary4.log"
fi
on_host "$work/A6" "$colo" quit guarded >/dev/null 2>&1
wait_exit "$secondary6_pid" 20; status=$?
[ "$status" -eq 0 ] && pass "its secondary quit too" ||
    { fail "the sixth secondary did not quit cleanly: status $status"; tail -15 "$work/secondary6.log"; }
echo "colo_failover_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
