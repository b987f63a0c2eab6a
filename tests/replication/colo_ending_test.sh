#!/bin/bash
# The lifecycle of a protected VM, end to end with the tiny Linux guest
# (needs root: namespaces, TAP; the topology of colo_failover_test.sh):
# a protected VM that ends on purpose ends on both hosts, and the
# secondary never takes over (PRIMARY_ENDING, docs/replication.md).
#
# 1. the guest powers off (the KV service's POWEROFF) on the protected
#    primary: both colo processes exit 0, the secondary's log says the
#    primary ended the VM on purpose and never "failed over", and no frame
#    came out of host B's TAP;
# 2. `colo quit` on the protected primary: the same;
# 3. the guest reboots (REBOOT): the primary's VM comes back up, says it is
#    unprotected after a reboot (status and events), the secondary exits
#    with status 4 and did not take over: exactly one VM runs;
# 4. the SVM's own guest (the same guest, fed the same requests) powers off
#    or reboots before the primary's word comes (the test hook
#    COLO_TEST_ENDING_DELAY_MS holds PRIMARY_ENDING back 3 s): the
#    secondary waits for the word instead of taking over, and never boots
#    a fresh VM of its own;
# 5. a secondary that waits for its primary ends on `colo quit` and on
#    SIGTERM within 2 s, exit status 0.
# Usage: tests/replication/colo_ending_test.sh COLO GUEST_DIR
set -uo pipefail
colo=$(realpath "$1") guest_dir=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
kvclient_py=$here/../../guests/linux/kvclient.py
boot_timeout=120
guest=10.97.0.2

source "$here/colo_test_lib.sh"
colo_test_begin ending en

# Frames that came out of a TAP (what the VM wrote into it is what the
# kernel received from it).
tap_frames() {  # TAP
    ip netns exec "$hosts_ns" cat "/sys/class/net/$1/statistics/rx_packets"
}

# Starts a protected pair for TRIAL (its own directory and port): the VM
# boots on A, B waits as a secondary, protect, 10 checkpoints. Sets
# primary_pid, secondary_pid, dir, b_frames (tapB's count at the start).
start_pair() {  # TRIAL PORT
    dir=$work/$1
    mkdir -p "$dir/A" "$dir/B"
    truncate -s 16M "$dir/diskA.img" "$dir/diskB.img"
    make_config tapA "$dir/diskA.img" >"$dir/a.cfg"
    make_config tapB "$dir/diskB.img" >"$dir/b.cfg"
    b_frames=$(tap_frames tapB)
    COLO_TEST_ENDING_DELAY_MS=${ending_delay_ms:-} COLO_RUN_DIR=$dir/A ip netns exec "$hosts_ns" "$colo" run \
        "$dir/a.cfg" >"$dir/primary.log" 2>&1 </dev/null &
    primary_pid=$!; pids+=("$primary_pid")
    wait_for "$dir/primary.log" "colo-guest: services ready" "$1: primary boot" "$primary_pid" || return 1
    # A generous heartbeat: a loaded test host must not fake a primary's
    # death here (colo_failover_test.sh tests the heartbeat).
    COLO_RUN_DIR=$dir/B ip netns exec "$hosts_ns" "$colo" secondary --listen "127.0.0.1:$2" "$dir/b.cfg" \
        --heartbeat-timeout 2000 >"$dir/secondary.log" 2>&1 </dev/null &
    secondary_pid=$!; pids+=("$secondary_pid")
    wait_for "$dir/secondary.log" "waiting for the primary" "$1: secondary listening" "$secondary_pid" || return 1
    on_host "$dir/A" "$colo" events --json guarded >"$dir/events.jsonl" 2>/dev/null &
    pids+=("$!")
    on_host "$dir/A" "$colo" protect guarded "127.0.0.1:$2" --interval 100 >"$dir/protect.log" 2>&1 ||
        { fail "$1: colo protect: $(cat "$dir/protect.log")"; return 1; }
    wait_for_checkpoints "$dir/A" 10 >/dev/null || { fail "$1: no 10 checkpoints"; return 1; }
}

# Whatever a failed trial left running goes, so the next one has the TAPs.
end_trial() {
    for pid in "$primary_pid" "$secondary_pid"; do
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
}

# The secondary ended because the primary said so, not by a takeover, and
# host B sent nothing.
check_no_takeover() {  # TRIAL REASON
    if grep -q "the primary ended the VM on purpose ($2)" "$dir/secondary.log" &&
        ! grep -q "failed over" "$dir/secondary.log"; then
        pass "$1: the secondary did not take over: $(grep -o 'the primary ended the VM on purpose.*' "$dir/secondary.log" | tail -1)"
    else
        fail "$1: the secondary's log:"; grep "colo secondary" "$dir/secondary.log" | tail -5
    fi
    local sent=$(($(tap_frames tapB) - b_frames))
    [ "$sent" -eq 0 ] && pass "$1: no frame left host B's TAP" || fail "$1: $sent frames left host B's TAP"
}

both_exit_zero() {  # TRIAL
    wait_exit "$primary_pid" 30; local primary_status=$?
    wait_exit "$secondary_pid" 30; local secondary_status=$?
    if [ "$primary_status" -eq 0 ] && [ "$secondary_status" -eq 0 ]; then
        pass "$1: both colo processes exited 0"
    else
        fail "$1: exit statuses: primary $primary_status, secondary $secondary_status"
        tail -5 "$dir/primary.log" "$dir/secondary.log"
        kill -9 "$primary_pid" "$secondary_pid" 2>/dev/null
    fi
}

# ---- 1. guest poweroff on the protected primary ----
if start_pair poweroff 47200; then
    ip netns exec "$client_ns" python3 "$kvclient_py" "$guest" poweroff >"$dir/poweroff.log" 2>&1
    both_exit_zero poweroff
    grep -q "the VM ended on purpose (poweroff)" "$dir/primary.log" &&
        pass "poweroff: the primary told the secondary: $(grep -o 'the VM ended on purpose.*' "$dir/primary.log" | head -1)" ||
        fail "poweroff: the primary's log does not say it ended the pair on purpose"
    check_no_takeover poweroff poweroff
fi
end_trial

# ---- 2. colo quit on the protected primary ----
if start_pair quit 47201; then
    on_host "$dir/A" "$colo" quit guarded >"$dir/quit.log" 2>&1 || fail "quit: colo quit: $(cat "$dir/quit.log")"
    both_exit_zero quit
    check_no_takeover quit quit
fi
end_trial

# After a guest reboot, a new secondary and protect again (TRIAL, the VM's
# run dir, a port, the new secondary's config). The rebooted guest runs on
# a new machine; nothing of the old one's may be left in the way (its
# output buffer hooked the old NICs). Sets secondary_pid.
protect_again() {  # TRIAL RUN_DIR PORT CFG
    COLO_RUN_DIR=$dir/again-$3 ip netns exec "$hosts_ns" "$colo" secondary --listen "127.0.0.1:$3" "$4" \
        --heartbeat-timeout 2000 >"$dir/secondary-$3.log" 2>&1 </dev/null &
    secondary_pid=$!; pids+=("$secondary_pid")
    if wait_for "$dir/secondary-$3.log" "waiting for the primary" "$1: new secondary listening" "$secondary_pid" &&
        on_host "$2" "$colo" protect guarded "127.0.0.1:$3" --interval 100 >"$dir/protect-$3.log" 2>&1 &&
        wait_for_checkpoints "$2" 10 >/dev/null; then
        local matched matched_later check tries
        matched=$(replication_eval "$2" "r.get('compare',{}).get('released_matched',0)")
        # The answer must have waited for the SVM's twin: output that
        # leaves unheld breaks the output commit rule. Up to 5 tries: an
        # answer held through a checkpoint's pre-copy (100 ms apart here,
        # and long in a sanitized build) leaves with the checkpoint.
        for tries in 1 2 3 4 5; do
            check=$(ip netns exec "$client_ns" python3 "$kvclient_py" "$guest" check 2>&1)
            matched_later=$(replication_eval "$2" "r.get('compare',{}).get('released_matched',0)")
            [ "${matched_later:-0}" -gt "${matched:-0}" ] && break
        done
        if [ -n "$check" ] && ! grep -qi "fail\|error" <<<"$check" && [ "${matched_later:-0}" -gt "${matched:-0}" ]; then
            pass "$1: protected again after the reboot, 10 checkpoints, the guest's answer released by a" \
                "match with the SVM's ($check; $((matched_later - matched)) frames; try $tries)"
        else
            fail "$1: protected again, the guest's answer '$check', frames released by a match '$matched'" \
                "then '$matched_later': the new machine's output does not go through the output buffer"
        fi
    else
        fail "$1: protecting again after the reboot: $(cat "$dir/protect-$3.log" 2>/dev/null)"
    fi
}

# ---- 3. guest reboot on the protected primary: one VM, unprotected ----
if start_pair reboot 47202; then
    ip netns exec "$client_ns" python3 "$kvclient_py" "$guest" reboot >"$dir/reboot.log" 2>&1
    wait_exit "$secondary_pid" 30; status=$?
    [ "$status" -eq 4 ] && pass "reboot: the secondary exited 4 (the primary rebooted)" ||
        fail "reboot: the secondary's exit status is $status"
    check_no_takeover reboot reboot
    started=$SECONDS
    while [ "$(grep -c 'colo-guest: services ready' "$dir/primary.log")" -lt 2 ] && ((SECONDS - started < 120)); do
        sleep 0.2
    done
    if kill -0 "$primary_pid" 2>/dev/null && [ "$(grep -c 'colo-guest: services ready' "$dir/primary.log")" -ge 2 ]; then
        pass "reboot: the VM came back up on the primary (and only there)"
    else
        fail "reboot: the primary's VM did not come back"
    fi
    state=$(replication_field "$dir/A" state) ended=$(replication_field "$dir/A" ended)
    if [ "$state" = unprotected ] && echo "$ended" | grep -q "unprotected after a reboot"; then
        pass "reboot: colo status on A: $state: $ended"
    else
        fail "reboot: colo status on A: state '$state', ended '$ended'"
    fi
    python3 - "$dir/events.jsonl" <<'PY' &&
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
sys.exit(not any(e.get("what") == "unprotected" and "unprotected after a reboot" in e.get("detail", "") for e in events))
PY
        pass "reboot: colo events said so" || fail "reboot: no event said unprotected after a reboot"
    # As the primary's words say: a new secondary, and protect again.
    protect_again reboot "$dir/A" 47203 "$dir/b.cfg"
    on_host "$dir/A" "$colo" quit guarded >/dev/null 2>&1
    wait_exit "$primary_pid" 30 || fail "reboot: the primary did not quit"
    wait_exit "$secondary_pid" 30 || fail "reboot: the second secondary did not end with the primary's quit"
fi
end_trial

# ---- 3b. a survivor's guest reboots, then it is protected again ----
if start_pair survivor-reboot 47207; then
    kill -9 "$primary_pid"; wait "$primary_pid" 2>/dev/null
    if wait_for "$dir/secondary.log" "failed over" "survivor-reboot: failover" "$secondary_pid" 10; then
        ip netns exec "$client_ns" python3 "$kvclient_py" "$guest" reboot >"$dir/reboot.log" 2>&1
        started=$SECONDS
        while [ "$(grep -c 'colo-guest: services ready' "$dir/secondary.log")" -lt 1 ] && ((SECONDS - started < 120)); do
            sleep 0.2
        done
        if grep -q 'colo-guest: services ready' "$dir/secondary.log"; then
            pass "survivor-reboot: the survivor's guest rebooted and came back up"
            survivor_pid=$secondary_pid
            protect_again survivor-reboot "$dir/B" 47208 "$dir/a.cfg"
            on_host "$dir/B" "$colo" quit guarded >/dev/null 2>&1
            wait_exit "$survivor_pid" 30 || fail "survivor-reboot: the survivor did not quit"
            wait_exit "$secondary_pid" 30 || fail "survivor-reboot: its new secondary did not end with its quit"
        else
            fail "survivor-reboot: the survivor's guest did not come back after its reboot"; tail -5 "$dir/secondary.log"
        fi
    fi
fi
end_trial

# ---- 4. the SVM's guest ends first; the secondary waits for the word ----
svm_first() {  # TRIAL PORT ACTION REASON STATUS
    # Whether the SVM gets there first is a race (a checkpoint taken after
    # the PVM's poweroff carries a state past it, which the SVM never
    # leaves): up to 4 attempts, each a fresh pair.
    local attempt
    for attempt in 1 2 3 4; do
        ending_delay_ms=3000 start_pair "$1-$attempt" "$(($2 + attempt * 10))" || { end_trial; return; }
        ip netns exec "$client_ns" python3 "$kvclient_py" "$guest" "$3" >"$dir/$3.log" 2>&1
        wait_exit "$secondary_pid" 30; local status=$?
        if ! grep -q "the SVM's guest ended by itself ($4)" "$dir/secondary.log"; then
            echo "  $1, attempt $attempt: the primary's word came before the SVM's guest ended; again"
            end_trial
            continue
        fi
        pass "$1 (attempt $attempt): $(grep -o "the SVM's guest ended by itself.*" "$dir/secondary.log" | head -1)"
        [ "$status" -eq "$5" ] && pass "$1: the secondary exited $status" ||
            fail "$1: the secondary's exit status is $status, not $5"
        check_no_takeover "$1" "$4"
        on_host "$dir/A" "$colo" quit guarded >/dev/null 2>&1
        wait_exit "$primary_pid" 30 >/dev/null
        end_trial
        return
    done
    fail "$1: the SVM's guest never ended first in 4 attempts (the trial tested nothing)"
}
svm_first svm-poweroff-first 47205 poweroff poweroff 0
svm_first svm-reboot-first 47206 reboot reboot 4

# ---- 5. a waiting secondary ends on quit and on SIGTERM ----
waiting_secondary() {  # TRIAL PORT HOW
    mkdir -p "$work/$1"
    COLO_RUN_DIR=$work/$1 ip netns exec "$hosts_ns" "$colo" secondary --listen "127.0.0.1:$2" "$work/b.cfg" \
        >"$work/$1.log" 2>&1 </dev/null &
    local pid=$!; pids+=("$pid")
    wait_for "$work/$1.log" "waiting for the primary" "$1: secondary listening" "$pid" || return
    local asked=$SECONDS
    if [ "$3" = quit ]; then
        on_host "$work/$1" "$colo" quit guarded >"$work/$1-quit.log" 2>&1 &
    else
        kill -TERM "$pid"
    fi
    # It ends at once; 15 s for a sanitized build on a loaded host.
    wait_exit "$pid" 15; local status=$?
    if [ "$status" -eq 0 ]; then
        pass "$1: the waiting secondary ended within $((SECONDS - asked)) s, exit 0: $(grep 'colo secondary' "$work/$1.log" | tail -1)"
    else
        fail "$1: the waiting secondary: status $status after $((SECONDS - asked)) s"; tail -3 "$work/$1.log"
        kill -9 "$pid" 2>/dev/null
    fi
}
waiting_secondary waiting-quit 47203 quit
waiting_secondary waiting-sigterm 47204 sigterm

echo "colo_ending_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
