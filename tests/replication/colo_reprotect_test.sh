#!/bin/bash
# Reprotect after a failover in both directions, with the disk resync
# checked byte for byte (docs/replication.md, "Reprotect and the image's
# history"; needs root: namespaces, TAP). The topology is
# colo_failover_test.sh's; the guest's KV service writes every SET to its
# disk. Heartbeat timeouts of 2 s: kill -9 breaks the connection at once,
# and a loaded test host must not fail over by itself.
#
# 1. A protects to B while a client writes keys; A is killed (-9), B fails
#    over and the client writes more on the survivor.
# 2. A's old image becomes a secondary and B protects to it: A crashed, so
#    its image's history is unknown and the sync compares hashes (status
#    says "hashes"). Then `colo quit` on B: both end on purpose after a
#    checkpoint, both record their images' history (the same checkpoint of
#    the same protection), and the images are byte-identical (cmp).
# 3. `colo run` on B's image: it tracks its writes from that history; a
#    client writes a few keys; A's image becomes a secondary again and B
#    protects to it: the sync is incremental, sends only about the written
#    blocks (a small part of the image), compares nothing; quit, cmp again.
# 4. The other direction: `colo run` on A's image, A protects to B's
#    (incremental, the guest writing), A is killed, B fails over and
#    protects to A's image by hashes; quit, cmp.
# In both failovers (1 and 4), at no moment did two copies release output:
# the frames out of tapA and tapB come from one TAP, then from the other.
# Usage: tests/replication/colo_reprotect_test.sh COLO GUEST_DIR
set -uo pipefail
colo=$(realpath "$1") guest_dir=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
boot_timeout=120
guest=10.97.0.2

source "$here/colo_test_lib.sh"
source "$here/../support/kv_keys.sh"
colo_test_begin reprotect rp
mkdir -p "$work/A" "$work/B" "$work/A2" "$work/B3" "$work/A3"
image_blocks=$((16 * 1024 * 1024 / 4096))

sync_field() {  # RUN_DIR EXPRESSION: a Python expression over status's disk_sync `d`
    replication_eval "$1" "(lambda d: $2)(r.get('disk_sync') or {})"
}

quit_pair() {  # PRIMARY_RUN_DIR PRIMARY_PID SECONDARY_PID WHAT: a checkpoint with the guest idle, then quit
    sleep 1
    on_host "$1" "$colo" checkpoint guarded >/dev/null 2>&1 || fail "$4: colo checkpoint failed"
    on_host "$1" "$colo" quit guarded >/dev/null 2>&1
    wait_exit "$2" 30 || fail "$4: the primary did not exit 0 after colo quit"
    wait_exit "$3" 30 || fail "$4: the secondary did not exit 0 after the primary's quit"
}

recorded() {  # LOG: "checkpoint N of protection X" from its history line, or empty
    grep -o "the disks are checkpoint [0-9]* of protection [0-9a-f]*" "$1" | tail -1 | sed 's/^the disks are //'
}

lan_watch_start tapA tapB

# ---- 1. protect A -> B, writes, kill -9 A, B fails over ----
part_started=$(now)
COLO_RUN_DIR=$work/A ip netns exec "$hosts_ns" "$colo" run "$work/a.cfg" >"$work/primary.log" 2>&1 </dev/null &
primary_pid=$!; pids+=("$primary_pid")
wait_for "$work/primary.log" "colo-guest: services ready" "primary boot" "$primary_pid" || exit 1
COLO_RUN_DIR=$work/B ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47100 --heartbeat-timeout 2000 "$work/b.cfg" >"$work/secondary.log" 2>&1 </dev/null &
secondary_pid=$!; pids+=("$secondary_pid")
wait_for "$work/secondary.log" "waiting for the primary" "secondary listening" "$secondary_pid" || exit 1
on_host "$work/A" "$colo" protect guarded 127.0.0.1:47100 --interval 100 --heartbeat-timeout 2000 >"$work/protect.log" 2>&1 ||
    { fail "colo protect A -> B failed: $(cat "$work/protect.log")"; exit 1; }
wait_for_checkpoints "$work/A" 5 >/dev/null || { fail "no checkpoints A -> B"; exit 1; }
checkpoints_before=$(replication_field "$work/A" checkpoints)
run_client protected 120
wait_for_checkpoints "$work/A" $((checkpoints_before + 40)) >/dev/null || fail "checkpoints under writes"
kill -9 "$primary_pid"; wait "$primary_pid" 2>/dev/null
wait_for "$work/secondary.log" "failed over" "failover" "$secondary_pid" 10 &&
    pass "B failed over after kill -9 of A"
sleep 2
finish_client protected "through the failover"
lan_check "$part_started" "kill -9 of A"
run_client survivor 60
sleep 3
finish_client survivor "on the survivor"

# ---- 2. protect B -> A (A's history unknown: hashes), quit, cmp ----
COLO_RUN_DIR=$work/A2 ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47101 --heartbeat-timeout 2000 "$work/a.cfg" >"$work/secondary2.log" 2>&1 </dev/null &
secondary2_pid=$!; pids+=("$secondary2_pid")
wait_for "$work/secondary2.log" "waiting for the primary" "A's secondary listening" "$secondary2_pid" || exit 1
on_host "$work/B" "$colo" protect guarded 127.0.0.1:47101 --interval 100 --heartbeat-timeout 2000 >"$work/protect2.log" 2>&1 ||
    { fail "colo protect B -> A failed: $(cat "$work/protect2.log")"; exit 1; }
wait_for_checkpoints "$work/B" 10 >/dev/null || { fail "no checkpoints B -> A"; exit 1; }
grep -q "disk 0: history unknown" "$work/secondary2.log" &&
    pass "A's crashed image: $(grep -m1 'history unknown' "$work/secondary2.log" | sed 's/^colo secondary: guarded: //')" ||
    fail "A's secondary did not say its image's history is unknown"
echo "  disk sync: $(sync_field "$work/B" "json.dumps(d)" 2>/dev/null || sync_field "$work/B" "d")"
mode=$(sync_field "$work/B" "','.join(d.get('modes', []))")
compared=$(sync_field "$work/B" "d.get('bytes_compared')")
[ "$mode" = hashes ] && [ "$compared" = 16777216 ] &&
    pass "B -> A: the sync compared hashes (A's history unknown), all 16 MiB" ||
    fail "B -> A: mode '$mode', $compared bytes compared (expected hashes, 16777216)"
grep -q "disk sync done: disk 0 hashes" "$work/secondary.log" &&
    pass "B's log: $(grep -m1 'disk sync done' "$work/secondary.log" | sed 's/^colo [a-z]*: guarded: //')" ||
    fail "B's log has no disk sync line"
line=$(on_host "$work/B" "$colo" status guarded 2>/dev/null | grep "disk sync")
echo "$line" | grep -q "(disk 0 hashes: 0 tracked blocks; 100%)" && pass "colo status on B:$line" ||
    fail "colo status on B: '$line'"
quit_pair "$work/B" "$secondary_pid" "$secondary2_pid" "B -> A"
history_b=$(recorded "$work/secondary.log") history_a=$(recorded "$work/secondary2.log")
[ -n "$history_b" ] && [ "$history_b" = "$history_a" ] &&
    pass "both recorded their images' history: $history_b" ||
    fail "histories recorded: B '$history_b', A '$history_a'; $(grep -h 'history' "$work/secondary.log" "$work/secondary2.log" | tail -3)"
[ -f "$work/diskA.img.colo-history" ] && [ -f "$work/diskB.img.colo-history" ] ||
    fail "a sidecar is missing: $(ls "$work" | grep colo-history)"
if cmp "$work/diskA.img" "$work/diskB.img"; then
    pass "after B -> A and quit, the images are byte-identical"
else
    fail "after B -> A and quit, the images differ"
fi

# ---- 3. colo run on B's image (tracked), writes, protect B -> A: incremental ----
COLO_RUN_DIR=$work/B3 ip netns exec "$hosts_ns" "$colo" run "$work/b.cfg" >"$work/primary3.log" 2>&1 </dev/null &
primary3_pid=$!; pids+=("$primary3_pid")
wait_for "$work/primary3.log" "colo-guest: services ready" "B's boot" "$primary3_pid" || exit 1
grep -q "its writes are tracked from there" "$work/primary3.log" &&
    pass "colo run on B's image: $(grep -m1 'tracked from there' "$work/primary3.log")" ||
    fail "colo run on B's image does not track its writes"
[ -f "$work/diskB.img.colo-history" ] && fail "B's history is still there while its VM runs"
run_client tracked 60
sleep 3
finish_client tracked "on B before the reprotect"
COLO_RUN_DIR=$work/A3 ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47102 --heartbeat-timeout 2000 "$work/a.cfg" >"$work/secondary3.log" 2>&1 </dev/null &
secondary3_pid=$!; pids+=("$secondary3_pid")
wait_for "$work/secondary3.log" "waiting for the primary" "A's second secondary listening" "$secondary3_pid" || exit 1
COLO_RUN_DIR=$work/B3 ip netns exec "$hosts_ns" "$colo" events --json guarded >"$work/events3.jsonl" 2>/dev/null &
events_pid=$!; pids+=("$events_pid")
sleep 0.3
on_host "$work/B3" "$colo" protect guarded 127.0.0.1:47102 --interval 100 --heartbeat-timeout 2000 --follow >"$work/protect3.log" 2>&1 ||
    { fail "colo protect B -> A (incremental) failed: $(cat "$work/protect3.log")"; exit 1; }
grep -q "100%.*(disk 0 incremental)" "$work/protect3.log" && grep -q "^protected:" "$work/protect3.log" &&
    pass "colo protect --follow: $(grep -m1 '100%' "$work/protect3.log")" ||
    fail "colo protect --follow printed: $(cat "$work/protect3.log")"
wait_for_checkpoints "$work/B3" 10 >/dev/null || { fail "no checkpoints B -> A (incremental)"; exit 1; }
grep -q "disk 0 is checkpoint" "$work/secondary3.log" &&
    pass "A's image: $(grep -m1 'disk 0 is checkpoint' "$work/secondary3.log" | sed 's/^colo secondary: guarded: //')" ||
    fail "A's secondary does not know its image's history"
echo "  disk sync: $(sync_field "$work/B3" "d")"
mode=$(sync_field "$work/B3" "','.join(d.get('modes', []))")
compared=$(sync_field "$work/B3" "d.get('bytes_compared')")
tracked=$(sync_field "$work/B3" "d.get('tracked_blocks_sent')")
[ "$mode" = incremental ] && [ "$compared" = 0 ] && [ -n "$tracked" ] && [ "$tracked" -ge 1 ] &&
    [ "$tracked" -lt $((image_blocks / 10)) ] &&
    pass "B -> A incremental: $tracked of $image_blocks blocks sent, nothing compared" ||
    fail "B -> A: mode '$mode', $compared bytes compared, $tracked tracked blocks (expected incremental, 0, few)"
grep -q "disk sync done: disk 0 incremental" "$work/primary3.log" &&
    pass "B's log: $(grep -m1 'disk sync done' "$work/primary3.log" | sed 's/^colo [a-z]*: guarded: //')" ||
    fail "B's log has no incremental disk sync line"
[ -f "$work/diskA.img.colo-history" ] && fail "A's history is still there after the sync wrote its image"
kill "$events_pid" 2>/dev/null
events=$(python3 - "$work/events3.jsonl" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
started = [e["disk_sync"] for e in events if e.get("what") == "disk sync started"]
done = [e["disk_sync"] for e in events if e.get("what") == "disk sync done"]
ok = (len(started) == 1 and started[0]["modes"] == ["incremental"] and len(done) == 1 and done[0]["done"]
      and done[0]["tracked_blocks_sent"] > 0)
print(("ok " if ok else "bad ") + json.dumps({"started": started, "done": done}))
PY
)
[ "${events%% *}" = ok ] && pass "colo events: disk sync started (incremental) and done" ||
    fail "colo events for the disk sync: $events"
check_keys "B serves every key after the incremental reprotect" protected survivor tracked
quit_pair "$work/B3" "$primary3_pid" "$secondary3_pid" "incremental B -> A"
if cmp "$work/diskA.img" "$work/diskB.img"; then
    pass "after the incremental B -> A and quit, the images are byte-identical"
else
    fail "after the incremental B -> A and quit, the images differ"
fi

# ---- 4. the other direction: colo run on A's image, A -> B incremental,
# kill -9 A, B fails over, B -> A by hashes, quit, cmp ----
mkdir -p "$work/A4" "$work/B4" "$work/A5"
part_started=$(now)
COLO_RUN_DIR=$work/A4 ip netns exec "$hosts_ns" "$colo" run "$work/a.cfg" >"$work/primary4.log" 2>&1 </dev/null &
primary4_pid=$!; pids+=("$primary4_pid")
wait_for "$work/primary4.log" "colo-guest: services ready" "A's boot" "$primary4_pid" || exit 1
run_client again 60
sleep 2
COLO_RUN_DIR=$work/B4 ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47103 --heartbeat-timeout 2000 "$work/b.cfg" >"$work/secondary4.log" 2>&1 </dev/null &
secondary4_pid=$!; pids+=("$secondary4_pid")
wait_for "$work/secondary4.log" "waiting for the primary" "B's secondary listening" "$secondary4_pid" || exit 1
on_host "$work/A4" "$colo" protect guarded 127.0.0.1:47103 --interval 100 --heartbeat-timeout 2000 >"$work/protect4.log" 2>&1 ||
    { fail "colo protect A -> B (incremental) failed: $(cat "$work/protect4.log")"; exit 1; }
wait_for_checkpoints "$work/A4" 20 >/dev/null || { fail "no checkpoints A -> B (incremental)"; exit 1; }
mode=$(sync_field "$work/A4" "','.join(d.get('modes', []))")
tracked=$(sync_field "$work/A4" "d.get('tracked_blocks_sent')")
[ "$mode" = incremental ] && [ -n "$tracked" ] && [ "$tracked" -lt $((image_blocks / 10)) ] &&
    pass "A -> B incremental (the guest writing meanwhile): $tracked of $image_blocks blocks sent" ||
    fail "A -> B: mode '$mode', $tracked tracked blocks (expected incremental, few)"
kill -9 "$primary4_pid"; wait "$primary4_pid" 2>/dev/null
wait_for "$work/secondary4.log" "failed over" "failover to B" "$secondary4_pid" 10 &&
    pass "B failed over after kill -9 of A"
sleep 2
finish_client again "through the second failover"
lan_check "$part_started" "kill -9 of A after the incremental reprotect"
COLO_RUN_DIR=$work/A5 ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47104 --heartbeat-timeout 2000 "$work/a.cfg" >"$work/secondary5.log" 2>&1 </dev/null &
secondary5_pid=$!; pids+=("$secondary5_pid")
wait_for "$work/secondary5.log" "waiting for the primary" "A's third secondary listening" "$secondary5_pid" || exit 1
on_host "$work/B4" "$colo" protect guarded 127.0.0.1:47104 --interval 100 --heartbeat-timeout 2000 >"$work/protect5.log" 2>&1 ||
    { fail "colo protect B -> A after the second failover failed: $(cat "$work/protect5.log")"; exit 1; }
wait_for_checkpoints "$work/B4" 10 >/dev/null || { fail "no checkpoints B -> A after the second failover"; exit 1; }
mode=$(sync_field "$work/B4" "','.join(d.get('modes', []))")
[ "$mode" = hashes ] && pass "B -> A after A crashed again: hashes" || fail "B -> A: mode '$mode', expected hashes"
check_keys "B serves every key after the second failover" protected survivor tracked again
quit_pair "$work/B4" "$secondary4_pid" "$secondary5_pid" "B -> A after the second failover"
if cmp "$work/diskA.img" "$work/diskB.img"; then
    pass "after the second failover's reprotect and quit, the images are byte-identical"
else
    fail "after the second failover's reprotect and quit, the images differ"
fi

echo "colo_reprotect_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
