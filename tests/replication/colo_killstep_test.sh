#!/bin/bash
# COLO failover with the primary dying at each step of a checkpoint (needs
# root: namespaces, TAP). Same topology as colo_failover_test.sh:
#
#   client ns: veth0 10.97.0.1 ---- veth1 -- br0 -- tapA -- colo run + protect   (primary, "host A")
#                                           \--- tapB -- colo secondary          (secondary, "host B")
#
# A kill -9 at a random moment mostly lands while the primary waits for a
# trigger, so the steps inside a checkpoint are rarely hit. Here the primary
# kills itself (SIGKILL) at a chosen step through the test hook
# COLO_TEST_KILL_AT / COLO_TEST_KILL_AFTER (replication/colo_primary.h):
#
#   before-new, svm-suspended, mid-pages, after-end, after-ready
#
# plus one trial killed from outside after a random 1-4 s. One namespace
# topology serves all trials; each trial boots a fresh pair: the VM boots on
# A (memory churner on), B waits as a secondary, a client keeps ONE TCP
# connection writing and verifying keys, `colo protect`, and after
# $kill_after checkpoints the primary dies. Each trial checks:
#   - the primary died by SIGKILL (status 137), at that step (its log has
#     the hook's line "colo: test hook: killing the primary at STEP");
#   - the secondary failed over within $failover_limit s;
#   - the client's one connection carried on without a reset, and every
#     acknowledged key reads back;
#   - the disk (disk replication): the survivor is powered off, and a fresh
#     `colo run` of its image alone answers every key the client saw
#     acknowledged (the guest's KV service logs each SET to its disk and
#     replays the log at start);
#   - never two copies: from protect to the client's finish, the frames out
#     of tapA and tapB (tests/support/lan_output_watch.py, one watch for
#     the whole test: the TAPs persist across trials) came from one TAP,
#     then from the other, never back and forth.
# Usage: tests/replication/colo_killstep_test.sh COLO GUEST_DIR [STEP...]
#   (STEPs default to all five and "random")
set -uo pipefail
# The "random" trial's kill delay comes from bash's RANDOM, seeded here so
# that every run of a commit kills at the same moments: the same verdict
# every time, not the luck of a draw.
RANDOM=4242
colo=$(realpath "$1") guest_dir=$(realpath "$2")
shift 2
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(before-new svm-suspended mid-pages after-end after-ready random)
here=$(cd "$(dirname "$0")" && pwd)
client_py=$here/../migration/continuous_client.py
check_keys_py=$here/../migration/check_keys.py
kvclient_py=$here/../../guests/linux/kvclient.py
boot_timeout=120
death_timeout=120            # seconds from protect to the primary's death (initial copy + checkpoints)
failover_limit=10            # seconds from the primary's death to "failed over"
kill_after=20                # checkpoints before the hook fires (2 s of client traffic at 100 ms)
guest=10.97.0.2

source "$here/colo_test_lib.sh"
colo_test_begin killstep ks
lan_watch_start tapA tapB

# Waits (bounded) for PID to exit; sets $exit_status (empty if it did not).
wait_exit() {  # PID TIMEOUT
    local started=$SECONDS
    exit_status=
    while kill -0 "$1" 2>/dev/null; do
        ((SECONDS - started > $2)) && return 1
        sleep 0.02
    done
    wait "$1" 2>/dev/null; exit_status=$?
}

# Kills (-9) and reaps whatever of this trial still runs, so the TAPs are
# free for the next one.
end_trial() {
    local pid
    for pid in "$@"; do kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
}

trial() {  # STEP NUMBER
    local step=$1 number=$2 t0=$SECONDS
    local dir=$work/$number-$step port=$((47200 + number))
    mkdir -p "$dir/A" "$dir/B"
    echo "---- trial $number: $step ----"

    # The hook is armed in the primary's process only; "random" leaves it
    # off and kills from outside. Started as a simple command so that $!
    # is colo itself (ip netns exec execs it).
    if [ "$step" = random ]; then
        COLO_RUN_DIR=$dir/A ip netns exec "$hosts_ns" "$colo" run "$work/a.cfg" >"$dir/primary.log" 2>&1 </dev/null &
    else
        COLO_TEST_KILL_AT=$step COLO_TEST_KILL_AFTER=$kill_after COLO_RUN_DIR=$dir/A \
            ip netns exec "$hosts_ns" "$colo" run "$work/a.cfg" >"$dir/primary.log" 2>&1 </dev/null &
    fi
    local primary_pid=$!; pids+=("$primary_pid")
    COLO_RUN_DIR=$dir/B ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:$port "$work/b.cfg" \
        >"$dir/secondary.log" 2>&1 </dev/null &
    local secondary_pid=$!; pids+=("$secondary_pid")
    wait_for "$dir/primary.log" "colo-guest: services ready" "$step: primary boot" "$primary_pid" ||
        { end_trial "$primary_pid" "$secondary_pid"; return; }
    wait_for "$dir/secondary.log" "waiting for the primary" "$step: secondary listening" "$secondary_pid" ||
        { end_trial "$primary_pid" "$secondary_pid"; return; }

    rm -f "$dir/stop"
    # Keys of this trial only (t3-0, t3-1, ...): the fresh boot below must
    # not pass on an older trial's values.
    ip netns exec "$client_ns" python3 "$client_py" "$guest" "$dir/stop" 200 "t$number-" "$dir/keys.json" \
        >"$dir/client.log" 2>&1 &
    local client_pid=$!; pids+=("$client_pid")
    sleep 1
    local trial_started
    trial_started=$(now)
    # --output-delay 50: the client's reply waits 50 ms for its checkpoint,
    # so at before-new the SVM has surely answered the same request (and
    # holds that answer for the failover check below).
    if ! on_host "$dir/A" "$colo" protect guarded 127.0.0.1:$port --interval 100 --output-delay 50 \
        >"$dir/protect.log" 2>&1; then
        fail "$step: colo protect failed: $(cat "$dir/protect.log")"
        touch "$dir/stop"; end_trial "$primary_pid" "$secondary_pid" "$client_pid"; return
    fi

    if [ "$step" = random ]; then
        # From the first checkpoint on (the pair is protected), at a random
        # moment 1-4 s later.
        local started=$SECONDS count=
        while { [ -z "$count" ] || [ "$count" -lt 1 ]; } && ((SECONDS - started < death_timeout)); do
            count=$(replication_field "$dir/A" checkpoints); sleep 0.1
        done
        local delay_ms=$((1000 + RANDOM % 3001))
        sleep "$((delay_ms / 1000)).$(printf %03d $((delay_ms % 1000)))"
        echo "  killing the primary from outside after $delay_ms ms (state $(replication_field "$dir/A" state), checkpoint $(replication_field "$dir/A" checkpoints))"
        kill -9 "$primary_pid"
    fi
    if ! wait_exit "$primary_pid" "$death_timeout"; then
        fail "$step: the primary still runs $death_timeout s after protect (hook never fired)"
        tail -5 "$dir/primary.log"
        touch "$dir/stop"; end_trial "$primary_pid" "$secondary_pid" "$client_pid"; return
    fi
    local died_ms=$(date +%s%3N)
    if [ "$exit_status" -eq 137 ]; then
        if [ "$step" = random ]; then
            pass "$step: the primary died by SIGKILL (status 137)"
        elif line=$(grep -m1 "colo: test hook: killing the primary at $step " "$dir/primary.log"); then
            pass "$step: the primary died by SIGKILL (status 137) at the step: ${line#colo: test hook: }"
        else
            fail "$step: the primary died by SIGKILL but its log has no hook line for $step"
        fi
    else
        fail "$step: the primary exited with status $exit_status, not by SIGKILL"; tail -5 "$dir/primary.log"
    fi

    if wait_for "$dir/secondary.log" "failed over" "$step: failover" "$secondary_pid" "$failover_limit"; then
        pass "$step: the secondary failed over $(($(date +%s%3N) - died_ms)) ms after the primary died: $(grep -m1 -i 'failed over' "$dir/secondary.log")"
    fi
    # The SVM's output since its last checkpoint goes out at the failover.
    # Killed at the start of a checkpoint (before-new) or while the SVM is
    # suspended for one, the SVM has run 50 ms or more with the client's
    # request outstanding, so it holds at least its reply.
    local released
    released=$(replication_field "$dir/B" released_at_failover)
    if [ "$step" = before-new ] || [ "$step" = svm-suspended ]; then
        [ -n "$released" ] && [ "$released" -ge 1 ] &&
            pass "$step: the SVM's held output went out at the failover ($released frames)" ||
            fail "$step: the SVM's output since its last checkpoint was not released at the failover ('$released')"
    else
        echo "  $released frames of SVM output released at the failover"
    fi
    # Killed after SVM_READY and before releasing: the primary's held
    # output (the client's reply at least) came with the checkpoint, and
    # the secondary sends it.
    local primary_output
    primary_output=$(replication_field "$dir/B" primary_output_sent_at_failover)
    if [ "$step" = after-ready ]; then
        [ -n "$primary_output" ] && [ "$primary_output" -ge 1 ] &&
            pass "$step: the output the primary held behind the checkpoint went out at the failover ($primary_output frames)" ||
            fail "$step: the primary's held output was not sent at the failover ('$primary_output')"
    fi
    # Let the client run a while on the failed-over VM before stopping it.
    sleep 3
    touch "$dir/stop"
    if wait_exit "$client_pid" 60; then
        sed 's/^/  client: /' "$dir/client.log"
        if [ "$exit_status" -eq 0 ] && [ "$(grep -c '^PASS' "$dir/client.log")" -eq 2 ]; then
            pass "$step: the client's one connection carried on and every acknowledged key reads back"
        else
            fail "$step: the client saw errors (status $exit_status)"
        fi
    else
        fail "$step: the client did not finish within 60 s"; cat "$dir/client.log"
    fi
    lan_check "$trial_started" "$step"
    # The survivor's disk alone: power it off, boot its image afresh.
    ip netns exec "$client_ns" python3 "$kvclient_py" "$guest" poweroff >"$dir/poweroff.log" 2>&1
    if wait_exit "$secondary_pid" 60; then
        mkdir -p "$dir/F"
        COLO_RUN_DIR=$dir/F ip netns exec "$hosts_ns" "$colo" run "$work/b.cfg" >"$dir/fresh.log" 2>&1 </dev/null &
        local fresh_pid=$!; pids+=("$fresh_pid")
        if wait_for "$dir/fresh.log" "colo-guest: services ready" "$step: fresh boot of the survivor's image" "$fresh_pid"; then
            local out
            if out=$(ip netns exec "$client_ns" python3 "$check_keys_py" "$guest" "$dir/keys.json" 2>&1); then
                pass "$step: a fresh boot of the survivor's image alone: ${out#PASS: }"
            else
                fail "$step: a fresh boot of the survivor's image: $out"
            fi
        fi
        end_trial "$fresh_pid"
    else
        fail "$step: the survivor did not power off within 60 s"
    fi
    end_trial "$primary_pid" "$secondary_pid" "$client_pid"
    echo "  trial $number ($step) took $((SECONDS - t0)) s"
    trial_times+=("$step: $((SECONDS - t0)) s")
}

trial_times=()
number=0
for step in "${steps[@]}"; do
    number=$((number + 1))
    trial "$step" "$number"
done
echo "trial times: $(IFS=,; echo "${trial_times[*]}")"
echo "colo_killstep_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
