#!/bin/bash
# The comparing proxy end to end (issue 14; needs root: namespaces, TAP).
# Same topology as colo_failover_test.sh:
#
#   client ns: veth0 10.97.0.1 ---- veth1 -- br0 -- tapA -- colo run + protect   (primary, "host A")
#                                           \--- tapB -- colo secondary          (secondary, "host B")
#
# 1. `colo protect --mode compare` with no periodic checkpoint (600 s) and a
#    generous compare timeout (100 ms: a sanitized build on a loaded
#    machine can leave the SVM unscheduled for more than the default
#    5 ms), so that nothing but a real difference asks for checkpoints. A client opens its
#    connection after the protection started and writes and verifies keys
#    for a few seconds: every answer is right, the replies left by a match
#    (released_matched, most of what was released), the checkpoints per
#    1,000 requests are few, the secondary shifted the connection's
#    sequence numbers (it opened after the last checkpoint), and status
#    and metrics show the differences by cause.
# 2. A second client connection opens, no checkpoint follows, and the
#    primary is killed (-9): the secondary fails over, and that connection
#    (its SVM side has its own initial sequence number, which the client
#    never saw) carries on after the failover, every acknowledged key
#    reads back, and one copy released output at a time.
# 3. The survivor is protected again with --mode buffered by a new
#    secondary: nothing is released by a match, status says buffered, and
#    the new secondary returns none of its SVM's frames.
# Usage: tests/replication/colo_compare_test.sh COLO GUEST_DIR
set -uo pipefail
colo=$(realpath "$1") guest_dir=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
boot_timeout=120
failover_limit=10
guest=10.97.0.2

source "$here/colo_test_lib.sh"
source "$here/../support/kv_keys.sh"
colo_test_begin compare cm
mkdir -p "$work/A" "$work/B" "$work/A2"

compare_field() {  # RUN_DIR FIELD...: a field of status's replication.compare, dotted path below it
    on_host "$1" "$colo" status guarded --json 2>/dev/null | python3 -c "
import json, sys
value = json.load(sys.stdin).get('replication', {}).get('compare', {})
for key in sys.argv[1:]:
    value = value.get(key, '') if isinstance(value, dict) else ''
print(value)" "${@:2}" 2>/dev/null
}
pairs_of() { grep -o '[0-9]* SET+GET pairs' "$work/client-$1.log" | cut -d' ' -f1; }

lan_watch_start tapA tapB
part_started=$(now)
COLO_RUN_DIR=$work/A ip netns exec "$hosts_ns" "$colo" run "$work/a.cfg" >"$work/primary.log" 2>&1 </dev/null &
primary_pid=$!; pids+=("$primary_pid")
wait_for "$work/primary.log" "colo-guest: services ready" "primary boot" "$primary_pid" || exit 1
COLO_RUN_DIR=$work/B ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47110 "$work/b.cfg" --heartbeat-timeout 1000 >"$work/secondary.log" 2>&1 </dev/null &
secondary_pid=$!; pids+=("$secondary_pid")
wait_for "$work/secondary.log" "waiting for the primary" "secondary listening" "$secondary_pid" || exit 1

# ---- 1. compare mode: replies leave by a match ----
if on_host "$work/A" "$colo" protect guarded 127.0.0.1:47110 --mode compare --interval 600000 --compare-timeout 100 >"$work/protect.log" 2>&1; then
    pass "$(head -1 "$work/protect.log")"
else
    fail "colo protect failed: $(cat "$work/protect.log")"; exit 1
fi
started=$SECONDS
until [ "$(replication_field "$work/A" state)" = RUNNING ] || ((SECONDS - started > 120)); do sleep 0.2; done
[ "$(replication_field "$work/A" output_mode)" = compare ] && pass "status: output_mode compare" ||
    fail "status: output_mode '$(replication_field "$work/A" output_mode)'"
checkpoints_before=$(replication_field "$work/A" checkpoints)
matched_before=$(compare_field "$work/A" released_matched)
released_before=$(replication_field "$work/A" released_total)
run_client warm 60
sleep 4
# And until some 100 pairs went through (each pair's replies and ACKs are
# two to four frames): on a loaded host the client's start alone can take
# seconds of the 4.
until_true_poll=0.2 until_true 60 exceeds $((matched_before + 399)) compare_field "$work/A" released_matched
finish_client warm "compare mode"
checkpoints_after=$(replication_field "$work/A" checkpoints)
matched=$(( $(compare_field "$work/A" released_matched) - matched_before ))
released=$(( $(replication_field "$work/A" released_total) - released_before ))
requests=$(( $(pairs_of warm) * 2 ))
during=$((checkpoints_after - checkpoints_before))
per_1000=$(python3 -c "print(round($during * 1000 / max($requests, 1), 1))")
differences=$(compare_field "$work/A" differences)
if [ "$requests" -ge 200 ] && [ "$matched" -gt 0 ] && [ $((matched * 10)) -ge $((released * 9)) ]; then
    pass "compare: $matched of $released frames released by a match during $requests requests"
else
    fail "compare: $matched of $released frames released by a match during $requests requests"
fi
# Buffered mode takes one per reply (1,000 per 1,000); compare's are the
# differences and timeouts alone here.
if python3 -c "import sys; sys.exit(0 if $per_1000 <= 50 else 1)"; then
    pass "compare: $during checkpoints during $requests requests ($per_1000 per 1,000); differences $differences"
else
    fail "compare: $during checkpoints during $requests requests ($per_1000 per 1,000); differences $differences"
fi
returned=$(replication_field "$work/B" returned_frames)
[ "${returned:-0}" -ge "$matched" ] && pass "compare: the secondary returned $returned of its SVM's frames" ||
    fail "compare: the secondary returned '$returned' SVM frames, fewer than the $matched matched"
offsets=$(shift_field "$work/B" offsets_learned)
[ -n "$offsets" ] && [ "$offsets" -ge 1 ] &&
    pass "the secondary shifted the new connection: $offsets offsets learned, $(shift_field "$work/B" outbound_rewritten) frames out and $(shift_field "$work/B" inbound_rewritten) in rewritten, $(replication_field "$work/B" returned_frames) SVM frames returned" ||
    fail "the secondary learned no sequence offset ('$offsets')"
line=$(on_host "$work/A" "$colo" status guarded 2>/dev/null | grep "^  output ")
echo "$line" | grep -Eq "^  output +compare: [1-9][0-9]* of [0-9]+ frames released by a match; [0-9]+ checkpoints forced; differences:" &&
    pass "colo status:$line" || fail "colo status has no compare line: '$line'"
# How long a reply waited for the SVM's twin: more than nothing, less
# than the compare timeout's order (100 ms here) at the median.
line=$(on_host "$work/A" "$colo" status guarded 2>/dev/null | grep "^  compare wait ")
p50=$(sed -nE 's/^  compare wait +p50 ([0-9.]+) ms.*/\1/p' <<<"$line")
[ -n "$p50" ] && python3 -c "import sys; sys.exit(0 if 0 < float(sys.argv[1]) < 100 else 1)" "$p50" &&
    pass "colo status:$line" || fail "colo status has no plausible compare wait: '$line'"
metrics=$(on_host "$work/A" "$colo" metrics guarded 2>&1)
if grep -Eq '^colo_compare_differences_total\{vm="guarded",cause="payload"\} [0-9]+$' <<<"$metrics" &&
    grep -Eq '^colo_compare_released_matched_total\{vm="guarded"\} [1-9][0-9]*$' <<<"$metrics" &&
    grep -Eq '^colo_compare_match_wait_seconds\{vm="guarded",quantile="0.99"\} [0-9.]+(e-?[0-9]+)?$' <<<"$metrics"; then
    pass "colo metrics: $(echo "$metrics" | grep -E '^colo_compare_(released_matched_total|differences_total|match_wait)' | tr '\n' ' ')"
else
    fail "colo metrics has no compare counters: $(echo "$metrics" | grep compare | tr '\n' ' ')"
fi

# ---- 2. kill -9 with a connection opened since the last checkpoint ----
# The connection must not be checkpointed before the kill: then only the
# secondary's sequence shift, kept after the failover, lets it carry on.
for attempt in 1 2 3; do
    checkpoints_at_open=$(replication_field "$work/A" checkpoints)
    applied_at_open=$(replication_field "$work/B" checkpoints)
    returned_at_open=$(replication_field "$work/B" returned_frames)
    run_client "kept$attempt" 200 "$work/killed"
    sleep 2
    # Traffic enough for the failover to have old segments to leave out
    # (a loaded runner starts the client slowly): 400 SVM frames, 30 s at most.
    for _ in $(seq 1 150); do
        (($(replication_field "$work/B" returned_frames) - returned_at_open >= 400)) && break
        sleep 0.2
    done
    # The premise is read once, and the kill follows it at once: a
    # checkpoint between a second read and the kill would go unseen.
    on_host "$work/A" "$colo" status guarded --json >"$work/status-before-kill.json" 2>/dev/null
    checkpoints_now=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get('replication',{}).get('checkpoints',''))" \
        "$work/status-before-kill.json" 2>/dev/null)
    if [ -n "$checkpoints_now" ] && [ "$checkpoints_now" = "$checkpoints_at_open" ]; then
        touch "$work/killed"
        kill -9 "$primary_pid"; wait "$primary_pid" 2>/dev/null
        killed_at=$SECONDS
        break
    fi
    echo "  (attempt $attempt: checkpoints '$checkpoints_at_open' when the connection opened, '$checkpoints_now' now;" \
        "opening another)"
    finish_client "kept$attempt" "a connection checkpointed before the kill"
done
tag=kept$attempt
[ -n "${killed_at:-}" ] && pass "no checkpoint since $tag's connection opened ($checkpoints_at_open in all)" ||
    { fail "every attempt saw a checkpoint after its connection opened"; exit 1; }
wait_for "$work/secondary.log" "failed over" "failover" "$secondary_pid" "$failover_limit" &&
    pass "the secondary failed over within $((SECONDS - killed_at + 1)) s of kill -9"
# It sent each connection's newest segments, not the thousands the SVM
# said since the last checkpoint: the client had those already, and
# their duplicate ACKs could fill the SVM's TAP queue.
released=$(replication_field "$work/B" released_at_failover) skipped=$(replication_field "$work/B" skipped_at_failover)
if [ -n "$skipped" ] && [ "$skipped" -gt 100 ] && [ -n "$released" ] && [ "$released" -le 100 ]; then
    pass "the failover sent $released of the SVM's held frames and left out $skipped older frames of their flows"
else
    fail "the failover sent '$released' of the SVM's held frames and left out '$skipped' (expected at most 100, more" \
        "than 100; the secondary had applied $applied_at_open checkpoints when the connection opened," \
        "$(replication_field "$work/B" checkpoints) at the failover)"
fi
sleep 3
finish_client "$tag" "kill -9 with a connection newer than the last checkpoint"
check_keys "the keys of both clients" warm "$tag"
lan_check "$part_started" "compare mode, kill -9 of the primary"

# ---- 3. buffered mode on the survivor ----
COLO_RUN_DIR=$work/A2 ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47111 "$work/a.cfg" --heartbeat-timeout 1000 >"$work/secondary2.log" 2>&1 </dev/null &
secondary2_pid=$!; pids+=("$secondary2_pid")
wait_for "$work/secondary2.log" "waiting for the primary" "second secondary listening" "$secondary2_pid" || exit 1
# No --interval: buffered mode's default, 100 ms (compare mode's is 1000,
# colo_protect_errors_test.sh checks it).
if on_host "$work/B" "$colo" protect guarded 127.0.0.1:47111 --mode buffered >"$work/protect2.log" 2>&1; then
    if grep -q "checkpoint at least every 100 ms" "$work/protect2.log"; then
        pass "$(head -1 "$work/protect2.log")"
    else
        fail "buffered mode's default interval is not 100 ms: $(cat "$work/protect2.log")"
    fi
else
    fail "colo protect --mode buffered failed: $(cat "$work/protect2.log")"; exit 1
fi
wait_for_checkpoints "$work/B" 5 >/dev/null
run_client buffered 60
sleep 2
finish_client buffered "buffered mode"
mode=$(replication_field "$work/B" output_mode) compare=$(replication_field "$work/B" compare)
by_output=$(replication_field "$work/B" checkpoints_by_output)
[ "$mode" = buffered ] && [ -z "$compare" ] && [ "${by_output:-0}" -gt 0 ] &&
    pass "buffered: status says $mode, no compare counters, $by_output checkpoints asked for by held output" ||
    fail "buffered: mode '$mode', compare '$compare', checkpoints by output '$by_output'"
line=$(on_host "$work/B" "$colo" status guarded 2>/dev/null | grep "^  output ")
echo "$line" | grep -q "buffered: every frame waits for the next checkpoint" && pass "colo status:$line" ||
    fail "colo status has no buffered line: '$line'"
# Nothing is compared: the new secondary keeps its SVM's replies (the
# primary's word at setup) instead of sending them all back.
delivered=$(replication_field "$work/A2" mirrored_frames_delivered) returned=$(replication_field "$work/A2" returned_frames)
[ "${delivered:-0}" -gt 0 ] && [ "$returned" = 0 ] &&
    pass "buffered: the secondary's SVM got $delivered client frames and returned none of its replies" ||
    fail "buffered: the secondary's SVM got '$delivered' client frames and returned '$returned' frames"
echo "colo_compare_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
