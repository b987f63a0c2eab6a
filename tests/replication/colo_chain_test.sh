#!/bin/bash
# One client connection through two failovers with a reprotect between them
# (docs/proxy.md, "A survivor's connections"; needs root: namespaces, TAP).
# The topology is colo_failover_test.sh's.
#
# A connection opened after the pair's last checkpoint lives on in the SVM
# with the SVM's own sequence numbers; when the SVM takes over, its host
# keeps shifting them onto the numbers the client knows, for as long as the
# connection lasts. When that survivor protects itself to a new secondary,
# the new SVM is a copy of its VM: it must shift those connections the same
# way, or it answers the client's frames in the wrong sequence space (the
# comparator then sees nothing but differences, a checkpoint storm, and a
# second failover breaks the connection).
#
# 1. A protects to B with checkpoints only when outputs differ; the client
#    opens its one connection and, before any checkpoint, A is killed (-9):
#    on B the connection is shifted (retried until no checkpoint came
#    between the connection's opening and the kill).
# 2. B protects to A's image (C) on the same connection's traffic: the
#    checkpoints carry the shifted connection (B's status counts it, C's
#    too), the comparator matches (no storm, mode compare), the secondary's
#    shift rewrites the connection's frames.
# 3. `colo switchover` on B: C runs the VM, its last checkpoint brought the
#    table, and the connection carries on.
# 4. C protects to B's image (D) with no periodic checkpoint: the initial
#    copy carries the table (D answers the connection as C's VM does, no
#    checkpoint by difference); C is killed (-9) before any checkpoint
#    could bring it: D fails over, the client's one connection carries on,
#    every acknowledged key reads back, and at no moment did two copies
#    release output.
# 5. `colo migrate` (a plain live migration, disks copied) moves D's VM to
#    A's TAP and image (E): the shifted connection goes with it, and E
#    shifts it as D did.
# 6. `colo save` on E and `colo run --load` of the file (F): the save file
#    carries the table too, and the connection still carries on.
# 7. F, in no replication role but with the table, protects to B's image
#    (G) with no periodic checkpoint; its initial copy carries the table
#    and F is killed (-9) before any checkpoint: G carries on.
# Usage: tests/replication/colo_chain_test.sh COLO GUEST_DIR
set -uo pipefail
colo=$(realpath "$1") guest_dir=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
boot_timeout=120
guest=10.97.0.2

source "$here/colo_test_lib.sh"
source "$here/../support/kv_keys.sh"
colo_test_begin chain ch
mkdir -p "$work/A" "$work/B" "$work/C" "$work/D"

start_secondary() {  # RUN_DIR PORT CONFIG LOG NAME: `colo secondary` there, listening; sets started_pid
    COLO_RUN_DIR=$1 ip netns exec "$hosts_ns" "$colo" secondary --listen "127.0.0.1:$2" --heartbeat-timeout 2000 "$3" >"$4" 2>&1 </dev/null &
    started_pid=$!; pids+=("$started_pid")
    wait_for "$4" "waiting for the primary" "$5 listening" "$started_pid"
}

protect_to() {  # PRIMARY_RUN_DIR PORT WHAT: protect (compare mode, colo's defaults), 3 checkpoints
    on_host "$1" "$colo" protect guarded "127.0.0.1:$2" --heartbeat-timeout 2000 >"$work/protect-$2.log" 2>&1 ||
        { fail "colo protect $3 failed: $(cat "$work/protect-$2.log")"; return 1; }
    wait_for_checkpoints "$1" 3 >/dev/null || { fail "no checkpoints $3"; return 1; }
}

vm_shift_field() {  # RUN_DIR FIELD: a shift counter of a VM outside replication (migrated in)
    on_host "$1" "$colo" status guarded --json 2>/dev/null |
        python3 -c "import json,sys; print(json.load(sys.stdin).get('tcp_sequence_shift',{}).get('$2',''))" 2>/dev/null
}

check_shifting() {  # RUN_DIR WHAT [READER]: the VM's host shifts the connection (its next segments)
    local rewritten rewritten_later reader=${3:-shift_field} started=$SECONDS
    rewritten=$("$reader" "$1" outbound_rewritten)
    # Up to 30 s: after the VM was away (a failover, a migration, a save
    # and load) the client's next segment may wait for its backed-off
    # retransmission.
    [ -n "$rewritten" ] && until_true_poll=0.2 until_true 30 exceeds "$rewritten" "$reader" "$1" outbound_rewritten
    rewritten_later=$("$reader" "$1" outbound_rewritten)
    [ -n "$rewritten" ] && [ -n "$rewritten_later" ] && [ "$rewritten_later" -gt "$rewritten" ] &&
        pass "$2 ($((rewritten_later - rewritten)) segments rewritten in $((SECONDS - started)) s)" ||
        fail "$2: no, outbound_rewritten '$rewritten' then '$rewritten_later' 30 s later"
}

learned_more_than() {  # N: B's shift learned more than N offsets
    local learned; learned=$(shift_field "$work/B" offsets_learned)
    [ -n "$learned" ] && [ "$learned" -gt "$1" ]
}

lan_watch_start tapA tapB

# ---- 1. A -> B, the connection opens, A dies before a checkpoint ----
part_started=$(now)
COLO_RUN_DIR=$work/A ip netns exec "$hosts_ns" "$colo" run "$work/a.cfg" >"$work/primary.log" 2>&1 </dev/null &
primary_pid=$!; pids+=("$primary_pid")
wait_for "$work/primary.log" "colo-guest: services ready" "primary boot" "$primary_pid" || exit 1
start_secondary "$work/B" 47110 "$work/b.cfg" "$work/secondary.log" B || exit 1
secondary_pid=$started_pid
# No periodic checkpoint, and a twin may be late by 500 ms: checkpoints come
# only from differences, so the connection can open between two of them.
# The initial copy must be done, but no difference need come (the SVM may
# well answer as the PVM does from the start: waiting for a first
# checkpoint failed a CI run).
on_host "$work/A" "$colo" protect guarded 127.0.0.1:47110 --interval 600000 --compare-timeout 500 \
    --heartbeat-timeout 2000 >"$work/protect.log" 2>&1 ||
    { fail "colo protect A -> B failed: $(cat "$work/protect.log")"; exit 1; }
wait_for_protection "$work/A" || { fail "A -> B: the initial copy did not end"; exit 1; }
tries=0 shifted=
while ((tries < 10)) && [ -z "$shifted" ]; do
    tries=$((tries + 1))
    before=$(replication_field "$work/A" checkpoints) learned=$(shift_field "$work/B" offsets_learned)
    run_client chain 300
    if ! until_true 20 learned_more_than "${learned:-0}"; then
        fail "try $tries: B's shift learned no offset for the client's connection"; break
    fi
    sleep 0.3  # requests on the shifted connection, mirrored to the SVM
    after=$(replication_field "$work/A" checkpoints)
    if [ "$after" = "$before" ]; then
        shifted=yes
    else
        # A checkpoint made the SVM a copy of the PVM again: the
        # connection is no longer the SVM's own. Start over.
        echo "  try $tries: A checkpointed ($before -> $after) before the kill; again"
        touch "$work/stop-chain"; wait "$client_pid"
    fi
done
[ -n "$shifted" ] || { fail "no try opened the connection between two checkpoints"; exit 1; }
pass "the client's connection opened after A's checkpoint $before, in the SVM's own sequence space (try $tries)"
kill -9 "$primary_pid"; wait "$primary_pid" 2>/dev/null
wait_for "$work/secondary.log" "failed over" "failover to B" "$secondary_pid" 10 &&
    pass "B failed over after kill -9 of A"
check_shifting "$work/B" "on the survivor B the connection is shifted"
lan_check "$part_started" "kill -9 of A"

check_carried() {  # PRIMARY_RUN_DIR SECONDARY_RUN_DIR WHAT: 5 s of the connection's traffic compared
    local matched matched_later summary mode storms by_difference carried differences restored rewritten
    matched=$(replication_eval "$1" "r.get('compare',{}).get('released_matched','')")
    sleep 5
    summary=$(replication_eval "$1" "' '.join(str(x) for x in (r.get('compare',{}).get(k,'') for k in
        ('mode_now','storms','checkpoints_by_difference','released_matched','shifted_connections_carried')))")
    read -r mode storms by_difference matched_later carried <<<"$summary"
    differences=$(replication_eval "$1" "', '.join(f'{k} {v}' for k, v in r.get('compare',{}).get('differences',{}).items() if v)")
    echo "  $3 after 5 s: mode $mode, $storms storms, $by_difference checkpoints by difference ($differences)," \
        "$matched_later frames released by a match, $carried connections carried"
    [ "$mode" = compare ] && [ "$storms" = 0 ] &&
        pass "$3 compares the connection's traffic without a storm ($by_difference checkpoints by difference)" ||
        fail "$3: mode '$mode', $storms storms: the new SVM does not answer the connection as the primary's VM does" \
            "($(replication_eval "$1" "r.get('compare',{}).get('last_difference','')"))"
    [ -n "$matched" ] && [ -n "$matched_later" ] && [ "$matched_later" -gt $((matched + 100)) ] &&
        pass "$3: $((matched_later - matched)) frames released by a match in 5 s" ||
        fail "$3: '$matched' then '$matched_later' frames released by a match"
    [ -n "$carried" ] && [ "$carried" -ge 1 ] && pass "$3: the checkpoints carry $carried shifted connection(s)" ||
        fail "$3: the checkpoints carry '$carried' shifted connections"
    restored=$(shift_field "$2" carried_by_checkpoint) rewritten=$(shift_field "$2" outbound_rewritten)
    [ -n "$restored" ] && [ "$restored" -ge 1 ] && [ -n "$rewritten" ] && [ "$rewritten" -gt 0 ] &&
        pass "$3: the secondary took $restored connection(s) from the checkpoint and shifted $rewritten of its VM's segments" ||
        fail "$3: the secondary took '$restored' connections from the checkpoint, shifted '$rewritten' segments"
}

# ---- 2. B -> C (A's image) while the connection carries on ----
start_secondary "$work/C" 47111 "$work/a.cfg" "$work/secondary2.log" C || exit 1
secondary2_pid=$started_pid
protect_to "$work/B" 47111 "B -> C" || exit 1
part_started=$(now)
check_carried "$work/B" "$work/C" "B -> C"

# ---- 3. switchover B -> C ----
if on_host "$work/B" "$colo" switchover guarded >"$work/switchover.log" 2>&1; then
    pass "colo switchover on B: $(cat "$work/switchover.log")"
else
    fail "colo switchover on B: $(cat "$work/switchover.log")"; exit 1
fi
wait_exit "$secondary_pid" 20 || fail "B's colo did not exit 0 after the switchover"
check_shifting "$work/C" "C runs the VM and shifts the connection after the switchover"
lan_check "$part_started" "switchover B -> C"

check_initial_copy() {  # PRIMARY_RUN_DIR SECONDARY_RUN_DIR WHAT: traffic matched, no checkpoint needed
    local summary by_difference matched matched_later checkpoints restored started
    # From the initial copy's end: `colo protect` answers at its start.
    wait_for_protection "$1" || { fail "$3: the initial copy did not end"; return; }
    matched=$(replication_eval "$1" "r.get('compare',{}).get('released_matched','')")
    # Until 50 frames matched (about 2 s on an idle host), 30 s at most.
    started=$SECONDS
    [ -n "$matched" ] && until_true_poll=0.2 until_true 30 exceeds $((matched + 50)) \
        replication_eval "$1" "r.get('compare',{}).get('released_matched','')"
    summary=$(replication_eval "$1" "' '.join(str(x) for x in (r.get('compare',{}).get('checkpoints_by_difference',''),
        r.get('compare',{}).get('released_matched',''), r.get('checkpoints','')))")
    read -r by_difference matched_later checkpoints <<<"$summary"
    restored=$(shift_field "$2" carried_by_checkpoint)
    echo "  $3 $((SECONDS - started)) s after the initial copy: $checkpoints checkpoints, $by_difference by difference," \
        "$((matched_later - matched)) frames released by a match; the secondary took '$restored' connection(s)"
    # No checkpoint at all: what D has, it has from the initial copy.
    [ "$checkpoints" = 0 ] && [ "$matched_later" -gt $((matched + 50)) ] && [ -n "$restored" ] && [ "$restored" -ge 1 ] &&
        pass "$3: the initial copy carried the shifted connection, its SVM answers it as the PVM does" ||
        fail "$3: $checkpoints checkpoints ($by_difference by difference), $((matched_later - matched)) frames matched," \
            "'$restored' connections carried: the new SVM did not have the survivor's connection from the initial copy" \
            "($(replication_eval "$1" "r.get('compare',{}).get('last_difference','')"))"
}

# VM_RUN_DIR VM_PID NEW PORT CFG WHAT: the VM protects to a new secondary
# NEW with no periodic checkpoint; the initial copy alone must carry the
# shifted connection; the VM is killed (-9) before any checkpoint could
# bring it, and NEW fails over. Sets part_started, and started_pid to NEW's.
protect_then_kill() {
    start_secondary "$work/$3" "$4" "$5" "$work/secondary-$3.log" "$3" || exit 1
    local new_pid=$started_pid
    on_host "$1" "$colo" protect guarded "127.0.0.1:$4" --interval 600000 --compare-timeout 500 \
        --heartbeat-timeout 2000 >"$work/protect-$4.log" 2>&1 ||
        { fail "colo protect $6 failed: $(cat "$work/protect-$4.log")"; exit 1; }
    part_started=$(now)
    check_initial_copy "$1" "$work/$3" "$6"
    kill -9 "$2"; wait "$2" 2>/dev/null
    wait_for "$work/secondary-$3.log" "failed over" "failover to $3" "$new_pid" 10 &&
        pass "$3 failed over after kill -9 of its primary ($6)"
    started_pid=$new_pid
}

# ---- 4. C -> D (B's image), kill -9 C before a checkpoint: D carries on ----
# No periodic checkpoint: the shifted connection must reach D with the
# initial copy, and C dies before anything else could bring it.
protect_then_kill "$work/C" "$secondary2_pid" D 47112 "$work/b.cfg" "C -> D"
secondary3_pid=$started_pid
sleep 2
lan_check "$part_started" "kill -9 of C"

# ---- 5. colo migrate D -> E (A's TAP and image): the shifted connection goes along ----
part_started=$(now)
mkdir -p "$work/E"
on_host "$work/E" "$colo" receive --listen 127.0.0.1:47113 "$work/a.cfg" --copy-disks >"$work/receive.log" 2>&1 </dev/null &
receive_pid=$!; pids+=("$receive_pid")
wait_for "$work/receive.log" "waiting for a migration" "E listening" "$receive_pid" || exit 1
if on_host "$work/D" "$colo" migrate guarded 127.0.0.1:47113 --copy-disks >"$work/migrate.log" 2>&1 &&
    wait_exit "$secondary3_pid" 60; then
    pass "colo migrate D -> E: $(tr '\r' '\n' <"$work/migrate.log" | grep -v '^ *\[' | tail -1)"
else
    fail "colo migrate D -> E: $(cat "$work/migrate.log")"; exit 1
fi
line=$(grep "running here now" "$work/receive.log")
carried=$(vm_shift_field "$work/E" carried_by_checkpoint)
echo "$line" | grep -q "TCP connection(s) shifted as on the source" && [ -n "$carried" ] && [ "$carried" -ge 1 ] &&
    pass "E took D's shifted connection with the migration: $line" ||
    fail "E did not take D's shifted connection ('$carried' carried): $line"
check_shifting "$work/E" "E runs the VM and shifts the connection after the migration" vm_shift_field
lan_check "$part_started" "migration D -> E"

# ---- 6. colo save on E, colo run --load there (F): the table is in the file ----
if on_host "$work/E" "$colo" save guarded "$work/saved.colo" >"$work/save.log" 2>&1 && wait_exit "$receive_pid" 60; then
    pass "colo save on E: $(tail -1 "$work/save.log")"
else
    fail "colo save on E: $(cat "$work/save.log")"; exit 1
fi
mkdir -p "$work/F"
COLO_RUN_DIR=$work/F ip netns exec "$hosts_ns" "$colo" run --load "$work/saved.colo" "$work/a.cfg" \
    >"$work/restored.log" 2>&1 </dev/null &
restored_pid=$!; pids+=("$restored_pid")
wait_for "$work/restored.log" "shifted as when saved" "the restored VM took the shifted connection" "$restored_pid" 30 &&
    pass "the restore took E's shifted connection: $(grep -o '[0-9]* TCP connection.*' "$work/restored.log")"
check_shifting "$work/F" "the restored VM shifts the connection" vm_shift_field

# ---- 7. F protects to B's image (G), kill -9 F before a checkpoint ----
# The restored VM is in no replication role, yet its output buffer holds
# the table: its initial copy must carry it as a survivor's does.
protect_then_kill "$work/F" "$restored_pid" G 47114 "$work/b.cfg" "F -> G"
sleep 2
finish_client chain "through three failovers, three reprotects, a switchover, a migration and a save and restore"
lan_check "$part_started" "kill -9 of F"
check_keys "G serves every key" chain

echo "colo_chain_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
