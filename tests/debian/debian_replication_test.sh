#!/bin/bash
# Disk replication under a real database: the Debian guest's PostgreSQL
# (root read-write) protected by COLO, with the primary dying at each step
# of a checkpoint and at a random moment (issue 11). Needs root
# (namespaces, TAP).
#
#   client ns: veth0 10.94.0.1 ---- veth1 -- br0 -- tapA -- colo run + protect   (primary, "host A")
#                                           \--- tapB -- colo secondary          (secondary, "host B")
#
# Each trial is independent: A.img and B.img are fresh copies of IMAGE (B's
# is pre-provisioned, so the initial sync sends only what A's boot and the
# pgbench initialisation changed). A boots read-write, `pgbench -i`, `colo
# protect`; once the disk sync is done and checkpoints run, two clients
# write: scripts/lib/pg_writer.py (commits rows one at a time and records
# each commit it saw acknowledged) and `pgbench -c 2`. The primary then
# dies by SIGKILL at the trial's step (the test hook COLO_TEST_KILL_AT, see
# replication/colo_primary.h) or from outside after a random 1-4 s. Checks:
#   - the primary died by SIGKILL at that step, while the clients wrote;
#   - the secondary failed over within $failover_limit s;
#   - the writer: every acknowledged commit reads back, no client error
#     (its connection carried on across the failover);
#   - pgbench exited 0 with no failed transaction;
#   - pgbench's invariant on the survivor: the sums of the accounts',
#     branches' and tellers' balances and of the history's deltas agree;
#   - "poweroff" on the survivor's console: a clean exit, and
#     `e2fsck -fn B.img` finds the image clean;
#   - a fresh `colo run` of B.img alone has every acknowledged commit and
#     the pgbench invariant;
#   - never two copies: from protect to the clients' finish, the frames out
#     of tapA and tapB (tests/support/lan_watch.sh, one watch for the whole
#     test: the TAPs persist across trials) came from one TAP, then from
#     the other, never back and forth.
# Usage: tests/debian/debian_replication_test.sh COLO KERNEL IMAGE [STEP...]
#   STEPs: before-new svm-suspended mid-pages after-end after-ready random
#   (default: all six)
set -uo pipefail
# The "random" trial's kill delay comes from bash's RANDOM, seeded here so
# that every run of a commit kills at the same moments: the same verdict
# every time, not the luck of a draw.
RANDOM=4242
colo=$(realpath "$1") kernel=$(realpath "$2") image=$(realpath "$3")
shift 3
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(before-new svm-suspended mid-pages after-end after-ready random)
# The trial that also checks the comparing proxy (compare_check): "random"
# if it runs, otherwise the first.
compare_step=${steps[0]}
for step in "${steps[@]}"; do [ "$step" = random ] && compare_step=random; done
here=$(cd "$(dirname "$0")" && pwd)
pg_writer=$here/../../scripts/lib/pg_writer.py
boot_timeout=240     # an ASan build of colo, on a loaded 2-core machine
protect_timeout=120  # seconds from protect to a synced disk and checkpoints
failover_limit=10    # seconds from the primary's death to "failed over"
pgbench_seconds=25   # pgbench -T: outlasts the death, the failover and a few seconds more
guest=10.94.0.2

source "$here/../support/e2e_lib.sh"
source "$here/../support/lan_watch.sh"
e2e_begin pgtrials pg 10.94.0.1/24 tapA tapB
lan_watch_start tapA tapB

make_config() { # TAP DISK
    cat <<CFG
name = "debian"
memory = 512
kernel = "$kernel"
cmdline = "console=ttyS0 quiet root=/dev/vda rw init=/sbin/colo-init colo.ip=$guest/24"
disks = [ "path=$2" ]
nics = [ "tap=$1,mac=52:54:00:de:b1:04" ]
console = "stdio"
replication_auth = "psk"
replication_psk = "$work/pair.psk"
CFG
}
"$colo" keygen psk "$work/pair.psk" --identity debian >/dev/null

sql() { on_client timeout 60 psql -h "$guest" -U postgres -X -q -A -t -c "$1" postgres; }

status_field() { # RUN_DIR PYTHON_EXPRESSION (of r, status's "replication"); empty if none
    on_host "$1" "$colo" status debian --json 2>/dev/null |
        python3 -c "import json,sys; r=json.load(sys.stdin).get('replication') or {}; print($2)" 2>/dev/null
}

status_json() { # RUN_DIR: the primary's "replication" status as JSON ({} if none)
    on_host "$1" "$colo" status debian --json 2>/dev/null |
        python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin).get('replication') or {}))" 2>/dev/null || echo '{}'
}

# The comparing proxy (issue 14, the default mode), once the primary is
# protected and before the workload: 200 SETs then 200 GETs on one
# redis-cli connection, one request at a time, and 50 queries with known
# answers in one psql session. Every answer must be what was set or
# computed, the primary must say output_mode compare, replies must have
# left by a match (released_matched grew, for Redis and for PostgreSQL
# each), and the checkpoints the traffic caused meanwhile (by held output
# or a request: a difference, a reply without its twin) must be at most
# 100 per 1,000 requests: a reply that waits for a checkpoint, as in
# buffered mode, makes it about 1,000. The total, with the 100 ms
# interval's (10 a second, however slow the build), is printed.
last_difference() { # DIR FIELD: a field of the primary's compare.last_difference ("" if none)
    status_json "$1/A" | python3 -c 'import json,sys; print(((json.load(sys.stdin).get("compare") or {}).get("last_difference") or {}).get(sys.argv[1], ""))' "$2"
}

compare_check() { # STEP DIR
    local step=$1 dir=$2 before after_redis after_pg i started_ms redis_ms pg_ms
    local redis_requests=200 pg_queries=50
    before=$(status_json "$dir/A")
    started_ms=$(date +%s%3N)
    { for i in $(seq 1 "$redis_requests"); do echo "SET k$i v$i"; done
      for i in $(seq 1 "$redis_requests"); do echo "GET k$i"; done; } |
        on_client timeout 60 redis-cli -h "$guest" >"$dir/compare-redis.out" 2>&1
    redis_ms=$(($(date +%s%3N) - started_ms))
    after_redis=$(status_json "$dir/A")
    { for i in $(seq 1 "$redis_requests"); do echo OK; done
      for i in $(seq 1 "$redis_requests"); do echo "v$i"; done; } >"$dir/compare-redis.expected"
    if cmp -s "$dir/compare-redis.out" "$dir/compare-redis.expected"; then
        pass "$step: compare mode: Redis answered $redis_requests SETs and $redis_requests GETs with what was set ($redis_ms ms)"
    else
        fail "$step: compare mode: Redis's answers differ from what was set: $(diff "$dir/compare-redis.expected" "$dir/compare-redis.out" | head -4 | tr '\n' '|')"
    fi
    started_ms=$(date +%s%3N)
    { echo "SELECT count(*) FROM pgbench_accounts;"
      for i in $(seq 2 "$pg_queries"); do echo "SELECT $i * $i + 1;"; done; } |
        on_client timeout 60 psql -h "$guest" -U postgres -X -q -A -t postgres >"$dir/compare-pg.out" 2>&1
    pg_ms=$(($(date +%s%3N) - started_ms))
    after_pg=$(status_json "$dir/A")
    { echo 100000; for i in $(seq 2 "$pg_queries"); do echo $((i * i + 1)); done; } >"$dir/compare-pg.expected"
    if cmp -s "$dir/compare-pg.out" "$dir/compare-pg.expected"; then
        pass "$step: compare mode: PostgreSQL answered $pg_queries queries as known (pgbench_accounts has 100000 rows; $pg_ms ms)"
    else
        fail "$step: compare mode: PostgreSQL's answers differ from the known ones: $(diff "$dir/compare-pg.expected" "$dir/compare-pg.out" | head -4 | tr '\n' '|')"
    fi
    local verdict
    verdict=$(python3 - "$before" "$after_redis" "$after_pg" $((redis_requests * 2)) "$pg_queries" <<'PY'
import json, sys
before, after_redis, after_pg = (json.loads(a) for a in sys.argv[1:4])
redis_requests, pg_queries = int(sys.argv[4]), int(sys.argv[5])
def matched(a, b):
    return (a.get("compare") or {}).get("released_matched", 0) - (b.get("compare") or {}).get("released_matched", 0)
requests = redis_requests + pg_queries
if "checkpoints" not in before or "checkpoints" not in after_pg:  # no status: the primary is gone
    sys.exit(1)
checkpoints = after_pg["checkpoints"] - before["checkpoints"]
caused = sum(after_pg.get(k, 0) - before.get(k, 0) for k in ("checkpoints_by_output", "checkpoints_by_request"))
compare, was = after_pg.get("compare") or {}, before.get("compare") or {}
differences = {k: v - (was.get("differences") or {}).get(k, 0) for k, v in (compare.get("differences") or {}).items()}
print(after_pg.get("output_mode"))
print(matched(after_redis, before), after_redis.get("released_total", 0) - before.get("released_total", 0))
print(matched(after_pg, after_redis), after_pg.get("released_total", 0) - after_redis.get("released_total", 0))
print(f"{caused * 1000 / requests:.1f}", caused, checkpoints, f"{checkpoints * 1000 / requests:.1f}", requests)
print(f"differences {json.dumps(differences)}, checkpoints by difference "
      f"{compare.get('checkpoints_by_difference', 0) - was.get('checkpoints_by_difference', 0)}, "
      f"storms {compare.get('storms', 0) - was.get('storms', 0)}, mode now {compare.get('mode_now')}")
PY
) || { fail "$step: compare mode: no replication status from the primary (it is gone or unprotected)"; return; }
    local mode redis_matched redis_released pg_matched pg_released per_1000 caused checkpoints all_per_1000 requests detail
    { read -r mode; read -r redis_matched redis_released; read -r pg_matched pg_released
      read -r per_1000 caused checkpoints all_per_1000 requests; read -r detail; } <<<"$verdict"
    if [ "$mode" = compare ]; then
        pass "$step: compare mode: the primary's status says output_mode compare"
    else
        fail "$step: compare mode: the primary's status says output_mode '$mode'"
    fi
    if [ "${redis_matched:-0}" -gt 0 ] 2>/dev/null && [ "${pg_matched:-0}" -gt 0 ] 2>/dev/null; then
        pass "$step: compare mode: frames released by a match: $redis_matched of $redis_released during Redis, $pg_matched of $pg_released during PostgreSQL"
    else
        fail "$step: compare mode: released_matched did not grow: $redis_matched of $redis_released frames during Redis, $pg_matched of $pg_released during PostgreSQL"
    fi
    echo "  compare mode: $checkpoints checkpoints for $requests requests ($all_per_1000 per 1,000), $caused of them" \
        "caused by the traffic ($per_1000 per 1,000); $detail"
    if [ -n "$per_1000" ] && python3 -c "import sys; sys.exit(not float(sys.argv[1]) <= 100)" "$per_1000"; then
        pass "$step: compare mode: $per_1000 checkpoints caused per 1,000 requests (at most 100; buffered mode: about 1,000), $all_per_1000 with the interval's"
    else
        fail "$step: compare mode: $per_1000 checkpoints caused per 1,000 requests ($caused of $checkpoints for $requests), more than 100"
    fi
    # A query the two VMs answer differently (the microsecond it ran) is a
    # difference: payload when the SVM's answer came in time (its flow
    # named), timeout when it came later than --compare-timeout (the
    # oldest waiting frame's flow named). Up to three queries for a
    # payload one.
    local answer last line number_before number attempt
    number_before=$(last_difference "$dir" number)
    for attempt in 1 2 3; do
        answer=$(on_client timeout 30 psql -h "$guest" -U postgres -X -q -A -t -c "SELECT clock_timestamp();" postgres 2>&1)
        sleep 0.5
        last="$(last_difference "$dir" cause) $(last_difference "$dir" flow)"
        [[ "$last" == payload* ]] && break
    done
    number=$(last_difference "$dir" number)
    line=$(on_host "$dir/A" "$colo" status debian 2>/dev/null | grep "^  last difference ")
    if ! [[ "$answer" =~ ^20[0-9-]+\ [0-9:.]+ ]] || [ "${number:-0}" -le "${number_before:-0}" ] 2>/dev/null; then
        fail "$step: compare mode: clock_timestamp() answered '$answer', and the differences went from '$number_before' to '$number'"
    elif [[ "$last" == "payload tcp $guest:5432 > "* && "$line" == "  last difference payload, tcp $guest:5432 > "* ]] ||
        [[ "$last" == "timeout "* && "$line" == "  last difference timeout"*"(the PVM's frame had no twin in time), "* ]]; then
        pass "$step: compare mode: clock_timestamp() differed ($attempt queries; differences $number_before to $number), and status says so:$line"
    else
        fail "$step: compare mode: the last difference after clock_timestamp(): '$last'; colo status: '$line'"
    fi
}

# pgbench's invariant: every transaction adds the same delta to one
# account, teller and branch and logs it in the history.
check_invariant() { # WHERE
    local sums
    sums=$(sql "SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ' ' || (SELECT sum(bbalance) FROM pgbench_branches)
        || ' ' || (SELECT sum(tbalance) FROM pgbench_tellers) || ' ' || (SELECT coalesce(sum(delta), 0) FROM pgbench_history)
        || ' ' || (SELECT count(*) FROM pgbench_history)" 2>&1)
    local accounts branches tellers history rows
    read -r accounts branches tellers history rows <<<"$sums"
    if [[ "$rows" =~ ^[0-9]+$ ]] && [ "$rows" -gt 0 ] && [ "$accounts" = "$branches" ] &&
        [ "$branches" = "$tellers" ] && [ "$tellers" = "$history" ]; then
        pass "$1: pgbench's invariant holds (balances and history deltas all sum to $accounts, $rows history rows)"
    else
        fail "$1: pgbench's invariant: accounts, branches, tellers, history sums and history rows: '$sums'"
    fi
}

# Starts colo (a simple command, so that $! is colo itself: ip netns exec
# execs it) with its console input on the FIFO FIFO, opened on fd FD.
start_colo() { # FD FIFO LOG RUN_DIR ENV... -- ARGS...
    local fd=$1 fifo=$2 log=$3 run_dir=$4; shift 4
    local environment=()
    while [ "$1" != -- ]; do environment+=("$1"); shift; done
    shift
    rm -f "$fifo"; mkfifo "$fifo"
    env "${environment[@]}" COLO_RUN_DIR="$run_dir" ip netns exec "$hosts_ns" "$colo" "$@" <"$fifo" >"$log" 2>&1 &
    colo_pid=$!; pids+=("$colo_pid")
    eval "exec $fd>\"\$fifo\""
}

end_trial() { # PID...: kills (-9) and reaps what of this trial still runs
    local pid
    for pid in "$@"; do kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    exec 8>&- 9>&-
}

poweroff() { # WHERE FD PID: "poweroff" on the console, a clean exit
    echo poweroff >&"$2"
    local status=0
    wait_exit "$3" 120 || status=$?
    if [ "$status" -eq 124 ]; then
        fail "$1: no poweroff within 120 s"; kill -9 "$3" 2>/dev/null; return 1
    fi
    [ "$status" -eq 0 ] && pass "$1: powered off cleanly (exit 0)" || { fail "$1: exit status $status after poweroff"; return 1; }
}

trial() { # STEP NUMBER
    local step=$1 number=$2 t0=$SECONDS failed_before=$failed
    local dir=$work/$number-$step port=$((47400 + number))
    mkdir -p "$dir/A" "$dir/B" "$dir/F"
    echo "---- trial $number: $step ----"
    cp --sparse=always "$image" "$dir/A.img"
    cp --sparse=always "$image" "$dir/B.img"
    make_config tapA "$dir/A.img" >"$dir/a.cfg"
    make_config tapB "$dir/B.img" >"$dir/b.cfg"

    # The hook is armed in the primary's process only (it fires in the
    # first checkpoint that starts once $kill_after have completed: set
    # below, from the checkpoint rate); "random" kills from outside.
    local hook=()
    [ "$step" != random ] && hook=(COLO_TEST_KILL_AT="$step" COLO_TEST_KILL_AFTER="$kill_after")
    start_colo 8 "$dir/console-a.in" "$dir/primary.log" "$dir/A" "${hook[@]}" -- run "$dir/a.cfg"
    local primary_pid=$colo_pid
    start_colo 9 "$dir/console-b.in" "$dir/secondary.log" "$dir/B" -- secondary --listen 127.0.0.1:$port "$dir/b.cfg"
    local secondary_pid=$colo_pid
    wait_for "$dir/primary.log" "colo-guest: services ready" "$step: primary boot" "$primary_pid" ||
        { end_trial "$primary_pid" "$secondary_pid"; return; }
    wait_for "$dir/secondary.log" "waiting for the primary" "$step: secondary listening" "$secondary_pid" ||
        { end_trial "$primary_pid" "$secondary_pid"; return; }
    echo "  A booted read-write in $((SECONDS - t0)) s"

    if ! on_client timeout 300 pgbench -i -s 1 -h "$guest" -U postgres postgres >"$dir/pgbench-init.log" 2>&1; then
        fail "$step: pgbench -i: $(tail -3 "$dir/pgbench-init.log")"
        end_trial "$primary_pid" "$secondary_pid"; return
    fi
    echo "  pgbench -i -s 1: $(grep -o 'done in.*' "$dir/pgbench-init.log")"

    local protect_started=$SECONDS trial_started
    trial_started=$(now)
    if ! on_host "$dir/A" "$colo" protect debian 127.0.0.1:$port --interval 100 >"$dir/protect.log" 2>&1; then
        fail "$step: colo protect failed: $(cat "$dir/protect.log")"
        end_trial "$primary_pid" "$secondary_pid"; return
    fi
    # The disk synced and checkpoints running: then the workload.
    local checkpoints= synced=
    while :; do
        # One status call (about half a second under ASan) for both.
        read -r synced checkpoints < <(status_field "$dir/A" "(r.get('disk_sync') or {}).get('done'), r.get('checkpoints', '')" | tr -d "(),'")
        [ "$synced" = True ] && [ -n "$checkpoints" ] && [ "$checkpoints" -ge 2 ] && break
        # A protection that ended (the primary runs on unprotected, the
        # secondary stopped) ends the trial now.
        if ((SECONDS - protect_started > protect_timeout)) || ! kill -0 "$primary_pid" 2>/dev/null ||
            ! kill -0 "$secondary_pid" 2>/dev/null || grep -q "running on unprotected" "$dir/primary.log"; then
            fail "$step: no synced disk and checkpoints $((SECONDS - protect_started)) s after protect (disk_sync done '$synced', checkpoints '$checkpoints')"
            tail -n 3 "$dir/primary.log"; tail -n 5 "$dir/secondary.log"
            end_trial "$primary_pid" "$secondary_pid"; return
        fi
        sleep 0.2
    done
    echo "  protected, disk synced, $checkpoints checkpoints in $((SECONDS - protect_started)) s; disk sync: $(status_field "$dir/A" "r.get('disk_sync')")"
    # The comparing proxy's answers, once: in the trial killed from
    # outside, whose kill is timed from the workload's start. In a hook's
    # trial its checkpoints (a few seconds' worth, more on a slow host)
    # count towards $kill_after: on one CI run they reached it and the
    # hook killed the primary in the middle of the check.
    [ "$step" = "$compare_step" ] && compare_check "$step" "$dir"

    rm -f "$dir/stop"
    local workload_started_ms=$(date +%s%3N)
    ip netns exec "$client_ns" "$pg_writer" write "$guest" "$dir/stop" "$dir/ids.json" \
        >"$dir/writer.out" 2>"$dir/writer.err" &
    local writer_pid=$!; pids+=("$writer_pid")
    ip netns exec "$client_ns" pgbench -h "$guest" -U postgres -c 2 -T "$pgbench_seconds" -n postgres \
        >"$dir/pgbench.log" 2>&1 &
    local pgbench_pid=$!; pids+=("$pgbench_pid")
    kill -0 "$primary_pid" 2>/dev/null ||
        fail "$step: the primary died before the workload started (after $checkpoints checkpoints; COLO_TEST_KILL_AFTER=$kill_after is too few)"

    if [ "$step" = random ]; then
        local delay_ms=$((1000 + RANDOM % 3001))
        sleep "$((delay_ms / 1000)).$(printf %03d $((delay_ms % 1000)))"
        kill -9 "$primary_pid"
        echo "  killed the primary from outside after $delay_ms ms of workload"
    fi
    local status=0
    # (2>/dev/null: bash's "Killed" notice for the job)
    wait_exit "$primary_pid" "$protect_timeout" 2>/dev/null || status=$?
    local died_ms=$(date +%s%3N)
    if [ "$status" -eq 124 ]; then
        fail "$step: the primary still runs $protect_timeout s into the workload (the hook never fired)"
        touch "$dir/stop"; end_trial "$primary_pid" "$secondary_pid" "$writer_pid" "$pgbench_pid"; return
    fi
    echo "  the primary died $((died_ms - workload_started_ms)) ms into the workload"
    local line
    if [ "$status" -ne 137 ]; then
        fail "$step: the primary exited with status $status, not by SIGKILL"; tail -n 5 "$dir/primary.log"
    elif [ "$step" = random ]; then
        pass "$step: the primary died by SIGKILL (status 137)"
    elif line=$(grep -m1 "colo: test hook: killing the primary at $step " "$dir/primary.log"); then
        pass "$step: the primary died by SIGKILL (status 137) at the step: ${line#colo: test hook: }"
    else
        fail "$step: the primary died by SIGKILL but its log has no hook line for $step"
    fi

    if ! wait_for "$dir/secondary.log" "failed over" "$step: failover" "$secondary_pid" "$failover_limit"; then
        touch "$dir/stop"; end_trial "$primary_pid" "$secondary_pid" "$writer_pid" "$pgbench_pid"; return
    fi
    local failed_over_ms=$(date +%s%3N)
    pass "$step: the secondary failed over $((failed_over_ms - died_ms)) ms after the primary died: $(grep -m1 'failed over' "$dir/secondary.log")"

    # The clients carry on against the survivor for a few seconds.
    sleep 3
    touch "$dir/stop"
    status=0
    wait_exit "$writer_pid" 90 || status=$?
    local writer_json
    writer_json=$(tail -1 "$dir/writer.out")
    echo "  writer: $writer_json"
    sed 's/^/  writer: /' "$dir/writer.err" | head -5
    if [ "$status" -eq 0 ] && python3 -c "import json,sys; r=json.loads(sys.argv[1]); sys.exit(not (r['commits_acknowledged'] > 0 and r['commits_missing'] == 0 and r['client_errors'] == 0))" "$writer_json" 2>/dev/null; then
        pass "$step: the writer's connection carried on, every acknowledged commit reads back: $writer_json"
    else
        fail "$step: the writer (exit $status): $writer_json"
    fi
    status=0
    wait_exit "$pgbench_pid" $((pgbench_seconds + 60)) || status=$?
    local pgbench_ended_ms=$(date +%s%3N)
    local failed_transactions processed tps
    failed_transactions=$(grep -o "number of failed transactions: [0-9]*" "$dir/pgbench.log" | grep -o "[0-9]*$")
    processed=$(grep -o "number of transactions actually processed: [0-9]*" "$dir/pgbench.log" | grep -o "[0-9]*$")
    tps=$(grep -o "tps = [0-9.]*" "$dir/pgbench.log" | head -1 | grep -o "[0-9.]*$")
    if [ "$status" -eq 0 ] && [ "$failed_transactions" = 0 ] && [ -n "$processed" ] && [ "$processed" -gt 0 ]; then
        pass "$step: pgbench exited 0: $processed transactions, none failed, $tps tps"
    else
        fail "$step: pgbench (exit $status): $(grep -v '^pgbench: error: client [0-9]* script' "$dir/pgbench.log" | tail -6 | tr '\n' '|')"
    fi
    # pgbench ran across the failover (it had not finished before it).
    ((pgbench_ended_ms > failed_over_ms + 1000)) ||
        fail "$step: pgbench ended $((failed_over_ms - pgbench_ended_ms)) ms before the failover: raise pgbench_seconds"
    check_invariant "$step: the survivor"
    lan_check "$trial_started" "$step"

    # The survivor's disk: a clean poweroff, e2fsck, then its image alone.
    if poweroff "$step: the survivor" 9 "$secondary_pid"; then
        local fsck
        if fsck=$(e2fsck -fn "$dir/B.img" 2>&1); then
            pass "$step: e2fsck -fn finds the survivor's image clean ($(echo "$fsck" | tail -1 | cut -d: -f2- | xargs))"
        else
            fail "$step: e2fsck -fn on the survivor's image: $(echo "$fsck" | tail -8 | tr '\n' '|')"
        fi
        exec 9>&-
        start_colo 9 "$dir/console-f.in" "$dir/fresh.log" "$dir/F" -- run "$dir/b.cfg"
        local fresh_pid=$colo_pid fresh_started=$SECONDS
        if wait_for "$dir/fresh.log" "colo-guest: services ready" "$step: fresh boot of the survivor's image" "$fresh_pid"; then
            echo "  the survivor's image booted alone in $((SECONDS - fresh_started)) s"
            local out
            if out=$(on_client "$pg_writer" check "$guest" "$dir/ids.json" 2>&1); then
                pass "$step: a fresh boot of the survivor's image alone has every acknowledged commit: $out"
            else
                fail "$step: a fresh boot of the survivor's image: $out"
            fi
            check_invariant "$step: the fresh boot"
            poweroff "$step: the fresh boot" 9 "$fresh_pid"
        fi
        end_trial "$fresh_pid"
    fi
    end_trial "$primary_pid" "$secondary_pid" "$writer_pid" "$pgbench_pid"
    # 2 GiB sparse each: kept only for a trial that failed
    [ "$failed" -eq "$failed_before" ] && rm -f "$dir/A.img" "$dir/B.img"
    echo "  trial $number ($step) took $((SECONDS - t0)) s"
    trial_times+=("$step: $((SECONDS - t0)) s")
}

# Under the workload (compare mode) the checkpoints come every 100 ms (the
# interval) and when the outputs differ: at most 10 a second from the
# interval, against some 10 from protect to the workload's start, so the
# hook fires several seconds into the workload (a loaded machine: later;
# pgbench's $pgbench_seconds s must outlast it and the failover, and both
# ends are checked).
kill_after=${COLO_PGTRIALS_KILL_AFTER:-80}
trial_times=()
number=0
for step in "${steps[@]}"; do
    number=$((number + 1))
    trial "$step" "$number"
done
echo "trial times: $(IFS=,; echo "${trial_times[*]}")"
echo "debian_replication_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
