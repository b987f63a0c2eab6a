#!/bin/bash
# COLO replication benchmark (needs root: network namespaces, TAP):
#
#   client ns: veth0 10.96.0.1 -- veth1 -- br0 -- tapA  (primary:   colo run + colo protect)
#                                             \-- tapB  (secondary: colo secondary)
#
# Both "hosts" share one namespace; replication runs over 127.0.0.1 there
# (loopback, as the issue's targets say). The guest is the Linux guest of
# guests/linux with 256 MiB of RAM.
#
# 1. Downtime against dirty pages: the VM boots on A, the secondary waits on
#    B, the KV latency of the unprotected VM is measured, then `colo protect
#    --interval REP_INTERVAL_MS`. For each level in REP_LEVELS (pages the PVM
#    dirties per checkpoint) the guest's churner is set to level x 1000 /
#    interval pages per second (`CHURN n` over the KV port) and the
#    checkpoint events (`colo events --json`: one per checkpoint, with its
#    downtime, dirty pages and phases) of REP_CHECKPOINTS checkpoints are
#    summarised: downtime p50/p99/max, dirty pages, checkpoints per second.
#    At level 0 the KV latency is measured again, protected.
#    The stream service's throughput (8 MiB each way) is measured with the
#    latency. Phase 1 protects with the default --output-delay (held output
#    asks for a checkpoint at once); latency and throughput are also
#    measured on a new pair for each delay in REP_OUTPUT_DELAYS (100 = the
#    interval: replies wait for the interval checkpoint).
# 2. The highest checkpoint rate: a new pair protected with --interval 1,
#    idle and with 10,000 pages/s of churn.
# 3. REP_KILLS trials of kill -9 of the primary: a new pair each time,
#    protected at REP_INTERVAL_MS with 1,000 pages/s of churn; a client does
#    SET+GET pairs on one connection; 3 s after protect the primary is
#    killed; the service gap is the longest silence between two replies from
#    the last reply before the kill to 3 s after it (the client's connection
#    must carry on and every acknowledged key must read back). kill -9 closes the primary's
#    sockets, so the secondary sees the replication connection break at
#    once; REP_FREEZES more trials stop the primary with SIGSTOP instead (a
#    host that hangs or loses power: its connections stay open), where only
#    the heartbeat timeout tells the secondary.
#
# Usage: bench/run_replication.sh [COLO [GUEST_DIR]]   (defaults: build/...)
# Environment: REP_AUTH (psk: TLS 1.3 with a pre-shared key, the default;
#   none: plain TCP, to measure what TLS costs), REP_LEVELS ("0 100 1000 10000"), REP_INTERVAL_MS (100),
#   REP_CHECKPOINTS (100), REP_KILLS (5), REP_FREEZES (3), REP_REQUESTS (200, per latency run),
#   REP_OUTPUT_DELAYS ("0 2 10 100"), REP_HEARTBEAT_TIMEOUT_MS (the secondary's default if unset),
#   REP_KEEP_LOGS=1 to keep the work directory.
set -uo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
colo=${1:-build/programs/colo}
guest_dir=${2:-build/guests/linux}
levels=${REP_LEVELS:-0 100 1000 10000}
interval=${REP_INTERVAL_MS:-100}
checkpoints=${REP_CHECKPOINTS:-100}
kills=${REP_KILLS:-5}
freezes=${REP_FREEZES:-3}
requests=${REP_REQUESTS:-200}
output_delays=${REP_OUTPUT_DELAYS:-0 2 10 100}
boot_timeout=120
helper=$(realpath bench/replication_helper.py)
guest=10.96.0.2
bench=run_replication
source bench/pair_lib.sh

output_delay() {  # the primary's output delay, from its status
    on_host "$work/A" "$colo" status repbench --json 2>/dev/null |
        python3 -c "import json,sys; print(str(json.load(sys.stdin)['replication']['output_delay_ms']) + ' ms')" 2>/dev/null
}

# ---- 1. downtime against dirty pages; latency unprotected and protected ----
echo "load at start: $(load)"
start_pair levels || exit 1
churn 0
# KV latency and stream throughput: JSON of both, or nothing on a failure.
measure_service() {
    local latency stream
    latency=$(client timeout 300 python3 "$helper" latency "$guest" "$requests") || return 1
    stream=$(client timeout 300 python3 "$helper" stream "$guest" 8) || return 1
    python3 -c "import json,sys; a=json.loads(sys.argv[1]); a.update(json.loads(sys.argv[2])); print(json.dumps(a))" \
        "$latency" "$stream"
}
if latency=$(measure_service); then
    record "$(json_add "$latency" kind=latency what="unprotected")"
else problem "latency (unprotected)"; fi
protect "$interval" || exit 1
for level in $levels; do
    rate=$((level * 1000 / interval))
    churn "$rate"
    sleep 1
    skip=$(wc -l <"$work/levels-events.jsonl")
    summary=$(python3 "$helper" collect "$work/levels-events.jsonl" "$skip" "$checkpoints" $((checkpoints * interval / 1000 * 4 + 30)))
    echo "  level $level (churn $rate pages/s): $summary"
    record "$(json_add "$summary" kind=level level="$level" churn="$rate" interval_ms="$interval" load="\"$(load)\"")"
    if [ "$level" = 0 ]; then
        if latency=$(measure_service); then
            record "$(json_add "$latency" kind=latency what="\"protected, interval $interval ms, output delay $(output_delay)\"")"
        else problem "latency (protected)"; fi
    fi
done
[ "$(on_host "$work/A" "$colo" status repbench --json | python3 -c "import json,sys; print(json.load(sys.stdin)['replication']['state'])")" != unprotected ] ||
    problem "the primary lost its secondary during the levels"

# (checkpoints: during the latency and stream measurements)
for delay in $output_delays; do
    start_pair "delay$delay" || continue
    churn 0
    protect "$interval" --output-delay "$delay" || continue
    skip=$(wc -l <"$work/delay$delay-events.jsonl")
    if latency=$(measure_service); then
        checkpoints_during=$(( $(wc -l <"$work/delay$delay-events.jsonl") - skip ))
        record "$(json_add "$latency" kind=latency what="\"protected, interval $interval ms, output delay $delay ms\"" checkpoints="$checkpoints_during")"
    else problem "latency (output delay $delay)"; fi
done

# ---- 2. the highest checkpoint rate ----
start_pair maxrate || exit 1
protect 1 || exit 1
for rate in 0 10000; do
    churn "$rate"
    sleep 1
    skip=$(wc -l <"$work/maxrate-events.jsonl")
    summary=$(python3 "$helper" collect "$work/maxrate-events.jsonl" "$skip" 300 60)
    echo "  interval 1 ms, churn $rate pages/s: $summary"
    record "$(json_add "$summary" kind=max_rate churn="$rate")"
done

# ---- 3. kill -9 (or SIGSTOP) of the primary ----
trials=()
for n in $(seq 1 "$kills"); do trials+=("kill:$n"); done
for n in $(seq 1 "$freezes"); do trials+=("stop:$n"); done
for entry in "${trials[@]}"; do
    signal=${entry%%:*} trial=$signal${entry#*:}
    start_pair "$trial" || continue
    churn 1000
    protect "$interval" || continue
    rm -f "$work/stop"
    client python3 "$helper" client "$guest" "$work/stop" >"$work/$trial-client.json" 2>"$work/$trial-client.err" &
    client_pid=$!; pids+=("$client_pid")
    sleep 3
    killed_at=$(date +%s.%N)
    if [ "$signal" = kill ]; then
        kill -9 "$primary_pid"; wait "$primary_pid" 2>/dev/null
    else
        kill -STOP "$primary_pid"
    fi
    wait_for "$work/$trial-secondary.log" "failed over" "failover (trial $trial)" "$secondary_pid" 10
    failed_over_at=$(date +%s.%N)
    sleep 3
    touch "$work/stop"
    for _ in $(seq 1 600); do kill -0 "$client_pid" 2>/dev/null || break; sleep 0.1; done
    wait "$client_pid"
    [ "$signal" = stop ] && kill -9 "$primary_pid" 2>/dev/null
    gap=$(python3 "$helper" gap "$work/$trial-client.json" "$killed_at") || { problem "no client result (trial $trial)"; continue; }
    failover_ms=$(echo "($failed_over_at - $killed_at) * 1000" | bc)
    echo "  trial $trial: $gap (failed over seen by the script ${failover_ms%.*} ms after the kill)"
    record "$(json_add "$gap" kind=kill trial="\"$trial\"" failover_ms="${failover_ms%.*}")"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if not d['error'] and d['lost_keys']==0 else 1)" \
        "$work/$trial-client.json" || problem "trial $trial: the client saw an error or lost keys"
done
stop_all

python3 "$helper" report "$results"
echo
echo "load at end: $(load)"
[ "$problems" -eq 0 ] || { echo "$problems problem(s), see above"; exit 1; }
