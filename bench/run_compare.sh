#!/bin/bash
# The comparing proxy's benchmark (issue 14; needs root: network
# namespaces, TAP). One run, the same Linux guest three ways, as
# bench/run_replication.sh lays out the hosts:
#
#   unprotected          the VM alone
#   compare              colo protect --mode compare (the default): a reply
#                        leaves once the secondary's VM sent the same
#   buffered             colo protect --mode buffered: every reply waits
#                        for a checkpoint (Remus-like, the old behaviour)
#   two-unprotected      a reference, not a mode of colo: two unprotected
#                        VMs at once, each in namespaces of its own with a
#                        client of its own running the same workload (the
#                        first VM's figures). Compare mode runs the guest
#                        twice (PVM and SVM); this row says what this
#                        machine's cores give two VMs doing the same work.
#
# For each: the KV latency (CMP_REQUESTS sequential SETs then as many GETs
# on one connection: p50/p99 of each), the stream service's throughput
# (CMP_STREAM_MIB each way) with the CPU each thread of the two colo
# processes used meanwhile and how long it waited for one, the
# checkpoints taken during the KV run per 1,000 requests (the interval's
# included) and, for compare, the differences by cause and the frames
# released by a match (`colo status --json`, replication.compare). Then
# CMP_KILLS trials of kill -9 of the primary in compare mode: the service
# gap a client sees (SET+GET pairs on one connection, every acknowledged
# key read back after).
#
# Usage: bench/run_compare.sh [COLO [GUEST_DIR]]   (defaults: build/...)
# Environment: CMP_INTERVAL_MS (colo's default: 1000 in compare mode, 100
#   in buffered mode), CMP_REQUESTS (1000), CMP_STREAM_MIB
#   (64), CMP_KILLS (10), CMP_MODES ("unprotected two-unprotected compare
#   buffered"),
#   REP_AUTH (psk, the default; none: plain TCP), REP_KEEP_LOGS=1 keeps the
#   work directory, CMP_CAPTURE=1 captures the client's side of each kill
#   trial (tcpdump, into the work directory), REP_PIN=1 gives each "host" a
#   core (the primary or the unprotected VM and the client on CPU 0, the
#   secondary on CPU 1; bench/pair_lib.sh).
set -uo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
colo=${1:-build/programs/colo}
guest_dir=${2:-build/guests/linux}
interval=${CMP_INTERVAL_MS:-} # empty: colo's default
requests=${CMP_REQUESTS:-1000}
# 64 MiB: at 8 MiB a stream lasted 40-100 ms, mostly TCP's slow start
# and scheduling noise (compare mode 32-63 % of unprotected run to run).
stream_mib=${CMP_STREAM_MIB:-64}
kills=${CMP_KILLS:-10}
modes=${CMP_MODES:-unprotected two-unprotected compare buffered}
boot_timeout=120
helper=$(realpath bench/replication_helper.py)
guest=10.96.0.2
bench=run_compare
source bench/pair_lib.sh

replication_status() {  # the primary's replication status, JSON
    on_host "$work/A" "$colo" status repbench --json 2>/dev/null |
        python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin).get('replication', {})))" 2>/dev/null
}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], 0))" "$1" "$2"; }

echo "load at start: $(load)"
for mode in $modes; do
    start_pair "$mode" || continue
    churn 0
    if [ "$mode" = two-unprotected ]; then
        start_second_vm || continue
        client2 python3 "$helper" churn "$guest" 0 || { problem "CHURN 0 failed (second VM)"; continue; }
    elif [ "$mode" != unprotected ]; then
        protect "$interval" --mode "$mode" ${CMP_PROTECT_OPTIONS:-} || continue
        sleep 1
    fi
    before=$(replication_status)
    # The second VM's client runs the same workload beside the first's.
    second=()
    [ "$mode" = two-unprotected ] && second=(client2 timeout 600 python3 "$helper")
    [ ${#second[@]} -gt 0 ] && { "${second[@]}" latency "$guest" "$requests" >"$work/second.json" & }
    latency=$(client timeout 600 python3 "$helper" latency "$guest" "$requests") || { problem "latency ($mode)"; continue; }
    wait_second || continue
    [ ${#second[@]} -gt 0 ] && echo "  $mode, the second VM: $(cat "$work/second.json")"
    after=$(replication_status)
    # The hosts' threads over the stream: CPU used and time spent waiting
    # for a CPU (the stream is CPU-bound: docs/benchmarks.md).
    watched=("primary=$primary_pid" "secondary=$secondary_pid")
    [ "$mode" = two-unprotected ] && watched+=("second=$second_pid")
    threads_before=$(python3 "$helper" threads "${watched[@]}")
    [ ${#second[@]} -gt 0 ] && { "${second[@]}" stream "$guest" "$stream_mib" >"$work/second.json" & }
    stream=$(client timeout 600 python3 "$helper" stream "$guest" "$stream_mib") || { problem "stream ($mode)"; continue; }
    wait_second || continue
    thread_load=$(python3 "$helper" thread_load "$threads_before" "$(python3 "$helper" threads "${watched[@]}")")
    echo "  $mode stream, CPU % and waited-for-a-CPU % by thread: $thread_load"
    [ ${#second[@]} -gt 0 ] && echo "  $mode, the second VM: $(cat "$work/second.json")"
    final=$(replication_status)
    secondary_final=$(on_host "$work/B" "$colo" status repbench --json 2>/dev/null |
        python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin).get('replication', {})))" 2>/dev/null)
    result=$(python3 - "$mode" "$latency" "$stream" "${before:-{\}}" "${after:-{\}}" "${final:-{\}}" "$requests" \
        "${secondary_final:-{\}}" "${thread_load:-{\}}" <<'PY'
import json, sys
mode, latency, stream = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
before, after, final = (json.loads(a) for a in sys.argv[4:7])
requests = int(sys.argv[7]) * 2
secondary = json.loads(sys.argv[8])
out = {"kind": "service", "mode": mode, **latency, **stream, "stream_threads": json.loads(sys.argv[9])}
if mode not in ("unprotected", "two-unprotected"):
    during = after.get("checkpoints", 0) - before.get("checkpoints", 0)
    out["checkpoints_per_1000"] = round(during * 1000 / requests, 1)
    out["checkpoints_by_output"] = after.get("checkpoints_by_output", 0) - before.get("checkpoints_by_output", 0)
    compare = final.get("compare")
    if compare:
        out["released_matched"] = compare["released_matched"]
        out["released_total"] = final.get("released_total")
        out["differences"] = compare["differences"]
        out["checkpoints_by_difference"] = compare["checkpoints_by_difference"]
        out["storms"] = compare["storms"]
        out["mode_now"] = compare["mode_now"]
        if compare.get("last_difference"):
            out["last_difference"] = compare["last_difference"]
    # The wait for the SVM's twin over the KV requests' last 1,024 frames.
    kv_compare = after.get("compare") or {}
    if "match_wait_p50_ms" in kv_compare:
        out["match_wait_p50_ms"] = kv_compare["match_wait_p50_ms"]
        out["match_wait_p99_ms"] = kv_compare["match_wait_p99_ms"]
    # The same over the stream's last 1,024 frames, and what the stream cost.
    if compare and "match_wait_p50_ms" in compare:
        out["stream_match_wait_p50_ms"] = compare["match_wait_p50_ms"]
        out["stream_match_wait_p99_ms"] = compare["match_wait_p99_ms"]
        out["stream_checkpoints"] = final.get("checkpoints", 0) - after.get("checkpoints", 0)
        out["stream_timeouts"] = compare["differences"]["timeout"] - (after.get("compare") or {}).get(
            "differences", {}).get("timeout", 0)
    if compare and "timeouts_waiting_for" in compare:
        out["timeouts_waiting_for"] = compare["timeouts_waiting_for"]
    # Frames the mirror dropped for a full socket, each way.
    out["mirror_dropped"] = final.get("mirror_dropped", 0)
    out["returned_dropped"] = secondary.get("returned_frames_dropped", 0)
    out["waited_for_room"] = secondary.get("mirrored_frames_waited_for_room", 0)
print(json.dumps(out))
PY
)
    echo "  $mode: $result"
    record "$result"
    case $mode in
        unprotected) ;;
        two-unprotected) stop_second_vm ;;
        *) [ "$(field "$final" state)" = unprotected ] && problem "$mode: the primary lost its secondary" ;;
    esac
done

for trial in $(seq 1 "$kills"); do
    tag=kill$trial
    start_pair "$tag" || continue
    churn 1000
    protect "$interval" --mode compare || continue
    rm -f "$work/stop"
    if [ "${CMP_CAPTURE:-0}" = 1 ]; then
        client tcpdump -i veth0 -w "$work/$tag.pcap" -U tcp port 7000 >/dev/null 2>&1 &
        pids+=("$!")
    fi
    client python3 "$helper" client "$guest" "$work/stop" >"$work/$tag-client.json" 2>"$work/$tag-client.err" &
    client_pid=$!; pids+=("$client_pid")
    sleep 3
    killed_at=$(date +%s.%N)
    kill -9 "$primary_pid"; wait "$primary_pid" 2>/dev/null
    wait_for "$work/$tag-secondary.log" "failed over" "failover ($tag)" "$secondary_pid" 10
    sleep 3
    touch "$work/stop"
    for _ in $(seq 1 600); do kill -0 "$client_pid" 2>/dev/null || break; sleep 0.1; done
    wait "$client_pid"
    gap=$(python3 "$helper" gap "$work/$tag-client.json" "$killed_at") || { problem "no client result ($tag)"; continue; }
    echo "  $tag: $gap"
    record "$(json_add "$gap" kind=kill trial="$trial")"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if not d['error'] and d['lost_keys']==0 else 1)" \
        "$work/$tag-client.json" || problem "$tag: the client saw an error or lost keys"
done
stop_all

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
service = [r for r in rows if r["kind"] == "service"]
base = next((r for r in service if r["mode"] == "unprotected"), None)
two = next((r for r in service if r["mode"] == "two-unprotected"), None)
print()
print(f"{'mode':<12} {'SET p50':>8} {'SET p99':>8} {'GET p50':>8} {'GET p99':>8} {'out MB/s':>9} {'in MB/s':>8} {'ckpt/1000':>9}")
for r in service:
    print(f"{r['mode']:<12} {r['set_p50_ms']:>8} {r['set_p99_ms']:>8} {r['get_p50_ms']:>8} {r['get_p99_ms']:>8} "
          f"{r.get('guest_to_client_MBps', '-'):>9} {r.get('client_to_guest_MBps', '-'):>8} {r.get('checkpoints_per_1000', '-'):>9}")
def against(r, ref, name):
    ratios = {k: round(r[k] / ref[k], 2) for k in ("set_p50_ms", "set_p99_ms", "get_p50_ms", "get_p99_ms")
              if ref.get(k)}
    through = {k: f"{round(100 * r[k] / ref[k])} %" for k in ("guest_to_client_MBps", "client_to_guest_MBps")
               if ref.get(k) and k in r}
    print(f"{r['mode']}: latency x {name} {ratios}; throughput {through}")
for r in service:
    if base and r is not base:
        against(r, base, "unprotected")
    if two and r is not two and r is not base:
        against(r, two, "two-unprotected")
for r in service:
    if "differences" in r:
        print(f"{r['mode']}: released by match {r['released_matched']} of {r['released_total']}; "
              f"checkpoints forced by differences {r['checkpoints_by_difference']}, storms {r['storms']}; "
              f"differences {r['differences']}"
              + (f"; KV replies waited for the SVM's twin p50 {r['match_wait_p50_ms']:.3f} ms, "
                 f"p99 {r['match_wait_p99_ms']:.3f} ms" if "match_wait_p50_ms" in r else ""))
kills = [r for r in rows if r["kind"] == "kill" and r.get("gap_ms") is not None]
if kills:
    gaps = sorted(r["gap_ms"] for r in kills)
    p99 = gaps[min(len(gaps) - 1, max(0, -(-99 * len(gaps) // 100) - 1))]
    print(f"kill -9 in compare mode: {len(kills)} trials, service gap p50 {gaps[len(gaps) // 2]} ms, "
          f"p99 {p99} ms, max {gaps[-1]} ms; lost keys {sum(r['lost_keys'] or 0 for r in kills)}, "
          f"errors {sum(1 for r in kills if r['error'])}")
PY
echo
echo "load at end: $(load)"
[ "$problems" -eq 0 ] || { echo "$problems problem(s), see above"; exit 1; }
