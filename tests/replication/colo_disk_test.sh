#!/bin/bash
# Disk replication end to end with the Linux test guest, whose KV service
# writes every SET to a log on its disk (/dev/vda) and flushes it before
# answering OK, and replays the log when it starts (needs root: namespaces,
# TAP). The topology is colo_failover_test.sh's.
#
# 1. B's image is 16 MiB of random bytes, A's is empty: protection must
#    make B's byte-identical to A's (the initial sync compares chunk hashes
#    and copies the ones that differ), seen with cmp while the guest does
#    not write.
# 2. A client writes keys through checkpoints, A is killed (-9), B fails
#    over, the client carries on; then the survivor is powered off, and a
#    fresh `colo run` of B's image alone must answer every key any client
#    saw acknowledged (before protection, while protected, after failover):
#    the disk the survivor left is the one its clients were promised.
#    From protect to the last client's finish, never two copies: the
#    frames out of tapA and tapB (tests/support/lan_output_watch.py) came
#    from one TAP, then from the other, never back and forth.
# 3. A secondary whose image is smaller: protect is refused with both
#    sizes named, and the primary keeps serving.
# 4. A secondary whose image lies on a full filesystem (a 16 KiB tmpfs):
#    the sync's writes fail; the secondary exits naming the image and the
#    error, the primary's protection ends and it keeps serving.
# 5. A secondary whose image cannot be opened for writing (a read-only bind
#    mount): `colo secondary` fails at once, naming the image.
# 6. The primary frozen (SIGSTOP) for 0.6 s during the initial copy, three
#    times the heartbeat timeout: the secondary waits (nothing can be taken
#    over yet, and a loaded host's scheduling gaps look just like this),
#    and the protection is established when it resumes.
# Usage: tests/replication/colo_disk_test.sh COLO GUEST_DIR
set -uo pipefail
colo=$(realpath "$1") guest_dir=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
boot_timeout=120
guest=10.97.0.2

source "$here/colo_test_lib.sh"
source "$here/../support/kv_keys.sh"
colo_test_begin disk dk
mkdir -p "$work/A" "$work/B" "$work/B2" "$work/C"
head -c 16M /dev/urandom >"$work/diskB.img"
lan_watch_start tapA tapB

# ---- 1. the initial sync makes a different image the primary's ----
COLO_RUN_DIR=$work/A ip netns exec "$hosts_ns" "$colo" run "$work/a.cfg" >"$work/primary.log" 2>&1 </dev/null &
primary_pid=$!; pids+=("$primary_pid")
wait_for "$work/primary.log" "colo-guest: services ready" "primary boot" "$primary_pid" || exit 1
run_client before 60
sleep 3
finish_client before "before protection"

COLO_RUN_DIR=$work/B ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47100 "$work/b.cfg" >"$work/secondary.log" 2>&1 </dev/null &
secondary_pid=$!; pids+=("$secondary_pid")
wait_for "$work/secondary.log" "waiting for the primary" "secondary listening" "$secondary_pid" || exit 1
cmp -s "$work/diskA.img" "$work/diskB.img" && fail "the two images were the same before protection"
COLO_RUN_DIR=$work/A ip netns exec "$hosts_ns" "$colo" events --json guarded >"$work/events.jsonl" 2>/dev/null &
events_pid=$!; pids+=("$events_pid")
sleep 0.3
part_started=$(now)
if on_host "$work/A" "$colo" protect guarded 127.0.0.1:47100 --interval 100 >"$work/protect.log" 2>&1; then
    pass "$(cat "$work/protect.log")"
else
    fail "colo protect failed: $(cat "$work/protect.log")"; exit 1
fi
wait_for_checkpoints "$work/A" 5 || { fail "no checkpoints"; tail -5 "$work/primary.log" "$work/secondary.log"; exit 1; }
sync_json=$(on_host "$work/A" "$colo" status guarded --json | python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)['replication'].get('disk_sync')))")
echo "  disk sync: $sync_json"
differing=$(echo "$sync_json" | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['chunks_differing'] if d and d['done'] else '')")
[ -n "$differing" ] && [ "$differing" -eq 256 ] &&
    pass "the sync found all 256 chunks of the random image different and finished" ||
    fail "disk sync status: $sync_json"
progress=$(python3 - "$work/events.jsonl" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
sync = [e["disk_sync"] for e in events if e.get("what") == "disk sync"]
print(f"{len(sync)} {sync[-1]['bytes_compared'] if sync else 0} {sync[-1]['compared'] if sync else False}")
PY
)
read -r progress_events progress_compared progress_done <<<"$progress"
[ "${progress_events:-0}" -ge 1 ] && [ "$progress_compared" = 16777216 ] && [ "$progress_done" = True ] &&
    pass "colo events: $progress_events disk sync progress events, the last with all 16 MiB compared" ||
    fail "colo events: disk sync progress '$progress'"
line=$(on_host "$work/A" "$colo" status guarded 2>/dev/null | grep "disk sync")
echo "$line" | grep -q "disk sync     done: 16 of 16 MiB compared, 256 chunks differed" &&
    pass "colo status on A:$line" || fail "colo status on A has no disk sync line: '$line'"
line=$(on_host "$work/B" "$colo" status guarded 2>/dev/null | grep "^  disks ")
echo "$line" | grep -q "1 replicated; last fold" && pass "colo status on B:$line" ||
    fail "colo status on B has no disks line: '$line'"
# The guest writes its disk only on SET: idle, the images must be equal at
# every checkpoint (the secondary's own writes stay in its overlay).
if cmp "$work/diskA.img" "$work/diskB.img"; then
    pass "the secondary's image is byte-identical to the primary's after the initial sync"
else
    fail "the images differ after protection"
fi

# Idle, the primary's loop sleeps between checkpoints: no stream phase
# (nothing written), where it used to wake every 2 ms to look (500 a
# second).
wakeups_idle=$(replication_field "$work/A" loop_wakeups) phases_idle=$(replication_field "$work/A" stream_phases)
sleep 1
wakeups=$(($(replication_field "$work/A" loop_wakeups) - wakeups_idle))
phases_idle=$(($(replication_field "$work/A" stream_phases) - phases_idle))
if ((wakeups < 100 && phases_idle == 0)); then
    pass "idle for 1 s, the primary's loop woke $wakeups times and ran no stream phase"
else
    fail "idle for 1 s, the primary's loop woke $wakeups times and ran $phases_idle stream phases"
fi

# ---- 2. writes through checkpoints, kill -9, failover, a fresh boot ----
phases_before=$(replication_field "$work/A" stream_phases)
checkpoints_before=$(replication_field "$work/A" checkpoints)
run_client protected 120
# Counted from here: the idle part above took 40 already, and on a busy
# host the client's first SET can come seconds after its start.
wait_for_checkpoints "$work/A" $((checkpoints_before + 40)) || fail "checkpoints under writes"
# The guest's writes asked for the stream phase: they went ahead of the
# checkpoints, not all in the pauses.
until_true 30 exceeds "$phases_before" replication_field "$work/A" stream_phases
phases=$(($(replication_field "$work/A" stream_phases) - phases_before))
((phases > 0)) && pass "the guest's writes were streamed ahead of the checkpoints ($phases stream phases)" ||
    fail "no stream phase ran while the guest wrote (30 s after 40 checkpoints under writes)"
sleep 2
disk_bytes=$(replication_field "$work/A" last_checkpoint_disk_bytes)
echo "  last checkpoint's disk part: $disk_bytes bytes; secondary: $(on_host "$work/B" "$colo" status guarded --json | python3 -c "import json,sys; print(json.load(sys.stdin)['replication'].get('disks'))")"
kill -9 "$primary_pid"; wait "$primary_pid" 2>/dev/null
wait_for "$work/secondary.log" "failed over" "failover" "$secondary_pid" 10 &&
    pass "the secondary failed over after kill -9 of the primary"
sleep 3
finish_client protected "through the failover"
run_client after 60
sleep 3
finish_client after "on the survivor"
lan_check "$part_started" "kill -9 of the primary under disk writes"

# The survivor powers off (the KV service's POWEROFF); then its image alone.
ip netns exec "$client_ns" python3 "$here/../../guests/linux/kvclient.py" "$guest" poweroff >"$work/poweroff.log" 2>&1
if wait_exit "$secondary_pid" 60; then
    pass "the survivor powered off"
else
    fail "the survivor did not power off"; kill -9 "$secondary_pid" 2>/dev/null
fi
COLO_RUN_DIR=$work/B2 ip netns exec "$hosts_ns" "$colo" run "$work/b.cfg" >"$work/fresh.log" 2>&1 </dev/null &
fresh_pid=$!; pids+=("$fresh_pid")
wait_for "$work/fresh.log" "colo-guest: services ready" "fresh boot of B's image" "$fresh_pid" || exit 1
check_keys "a fresh boot of the survivor's image alone" before protected after

# ---- 3. a secondary with a smaller image: refused, the primary serves on ----
truncate -s 8M "$work/diskC.img"
make_config tapA "$work/diskC.img" >"$work/c.cfg"
COLO_RUN_DIR=$work/C ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47101 "$work/c.cfg" >"$work/secondary3.log" 2>&1 </dev/null &
secondary3_pid=$!; pids+=("$secondary3_pid")
wait_for "$work/secondary3.log" "waiting for the primary" "third secondary listening" "$secondary3_pid" || exit 1
on_host "$work/B2" "$colo" protect guarded 127.0.0.1:47101 >"$work/protect3.log" 2>&1
started=$SECONDS reason=""
while ((SECONDS - started < 30)); do
    reason=$(replication_field "$work/B2" ended)
    [ -n "$reason" ] && break
    sleep 0.2
done
echo "$reason" | grep -q "disk 0: the secondary's image is 8388608 bytes, the primary's 16777216" &&
    pass "a smaller secondary image is refused: $reason" ||
    fail "smaller image: end reason '$reason'; $(tail -3 "$work/secondary3.log")"
check_keys "the primary serves on after the refused protection" before protected after
# ---- 4. a secondary on a full filesystem: the sync fails, the primary serves on ----
mkdir -p "$work/small" "$work/D"
mount -t tmpfs -o size=16k colo-disk-test "$work/small"
trap 'umount -l "$work/small" "$work/ro" 2>/dev/null; e2e_cleanup' EXIT
truncate -s 16M "$work/small/diskD.img"
make_config tapA "$work/small/diskD.img" >"$work/d.cfg"
COLO_RUN_DIR=$work/D ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47102 "$work/d.cfg" >"$work/secondary4.log" 2>&1 </dev/null &
secondary4_pid=$!; pids+=("$secondary4_pid")
wait_for "$work/secondary4.log" "waiting for the primary" "fourth secondary listening" "$secondary4_pid" || exit 1
on_host "$work/B2" "$colo" protect guarded 127.0.0.1:47102 >"$work/protect4.log" 2>&1
if wait_exit "$secondary4_pid" 60; then
    fail "the secondary on a full filesystem exited 0"
elif [ $? -eq 124 ]; then
    fail "the secondary on a full filesystem still runs"
elif grep -q "diskD.img): writing .*No space left on device" "$work/secondary4.log"; then
    pass "the secondary on a full filesystem stops naming the image: $(grep -m1 "No space" "$work/secondary4.log")"
else
    fail "the secondary on a full filesystem: $(tail -3 "$work/secondary4.log")"
fi
started=$SECONDS reason=""
while ((SECONDS - started < 30)); do
    reason=$(replication_field "$work/B2" ended)
    state=$(replication_field "$work/B2" state)
    [ "$state" = unprotected ] && [ -n "$reason" ] && break
    sleep 0.2
done
[ "$state" = unprotected ] && pass "the primary's protection ended: $reason" ||
    fail "the primary after the failed sync: state '$state', '$reason'"
check_keys "the primary serves on after the failed sync" before protected after
umount -l "$work/small"

# ---- 5. a secondary image that cannot be opened for writing ----
mkdir -p "$work/ro" "$work/E"
truncate -s 16M "$work/ro/diskE.img"
mount --bind "$work/ro" "$work/ro" && mount -o remount,bind,ro "$work/ro"
make_config tapA "$work/ro/diskE.img" >"$work/e.cfg"
if out=$(COLO_RUN_DIR=$work/E ip netns exec "$hosts_ns" timeout 20 "$colo" secondary --listen 127.0.0.1:47103 \
    "$work/e.cfg" 2>&1 </dev/null); then
    fail "a secondary on a read-only image started"
elif echo "$out" | grep -q "colo secondary: cannot open image $work/ro/diskE.img for reading and writing: Read-only file system"; then
    pass "a secondary whose image cannot be written: $out"
else
    fail "a secondary on a read-only image: '$out'"
fi
umount -l "$work/ro"

# ---- 6. a frozen primary during the initial copy: the secondary waits ----
mkdir -p "$work/F"
truncate -s 16M "$work/diskF.img"
make_config tapA "$work/diskF.img" >"$work/f.cfg"
COLO_RUN_DIR=$work/F ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47104 "$work/f.cfg" >"$work/secondary6.log" 2>&1 </dev/null &
secondary6_pid=$!; pids+=("$secondary6_pid")
wait_for "$work/secondary6.log" "waiting for the primary" "sixth secondary listening" "$secondary6_pid" || exit 1
on_host "$work/B2" "$colo" protect guarded 127.0.0.1:47104 >"$work/protect6.log" 2>&1
wait_for "$work/secondary6.log" "the primary connected" "sixth secondary connected" "$secondary6_pid" 30
kill -STOP "$fresh_pid"
state_frozen=$(replication_field "$work/F" state)
sleep 0.6
kill -CONT "$fresh_pid"
if [ "$state_frozen" != SETUPED ]; then
    fail "the primary was not frozen during the initial copy (the secondary was '$state_frozen')"
elif wait_for_checkpoints "$work/B2" 5 >/dev/null && [ "$(replication_field "$work/F" role)" = secondary ] &&
    ! grep -q "no heartbeat" "$work/secondary6.log"; then
    pass "a primary frozen 0.6 s during the initial copy: the secondary waited, $(replication_field "$work/B2" checkpoints) checkpoints since"
else
    fail "a primary frozen during the initial copy: $(grep -m1 "no heartbeat\|ended" "$work/secondary6.log")"
fi

echo "colo_disk_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
