#!/bin/bash
# Planned switchover and reprotect, round trip after round trip (issue 13;
# docs/replication.md, "Switchover" and "Reprotect and the image's
# history"). Needs root (namespaces, TAP) and the tiny Linux guest.
#
# The topology of tests/replication/colo_switchover_test.sh (its library,
# colo_test_lib.sh): both "hosts" A and B in one namespace (tapA, tapB on
# one bridge, replication over 127.0.0.1, PSK authentication), the client
# in its own namespace; each host's VM has its own raw image of DISK_MIB
# (default 64) MiB, both filled with the same random bytes (IMAGE_FILL=
# sparse: empty sparse files). The guest's KV service writes every SET to
# its disk, and a client (bench/switchover_helper.py client) writes keys on
# one connection through the whole run, so the images change all along.
#
# 1. A protects to B (the first sync compares hashes); after CHECKPOINTS
#    checkpoints, ROUNDS round trips: switchover A -> B, a secondary on A
#    (its old image), protect B -> A (incremental: A recorded its image's
#    history at the switchover, B tracked its writes since), the initial
#    copy, CHECKPOINTS checkpoints, switchover B -> A, a secondary on B,
#    protect A -> B, ... Per switchover a line: the direction, the gap colo
#    reports (PVM paused to the secondary's answer), the longest gap
#    between replies of a fresh client started 1 s before it
#    (tests/migration/continuous_client.py, counted from the switchover to
#    3 s after it) and whether every key it had acknowledged read back.
#    Per reprotect a line: the sync mode per disk, tracked blocks sent,
#    bytes compared, bytes sent (status's disk_sync), and the time from
#    the start of `colo protect` to the disks' planned pass over (the
#    tracked blocks sent or the images compared: bytes_done at
#    bytes_planned; the dirty rounds and the RAM's pre-copy follow) and to
#    the initial copy complete (the primary's state RUNNING), its status
#    polled every 10 ms over the control socket.
# 2. Once more: a switchover, then the same reprotect with the new
#    secondary's IMAGE.colo-history removed before it starts, so that the
#    sync compares hashes: incremental against hash compare for the same
#    image.
# 3. The summary: switchover gap p50/max, client gap p50/max, the reprotect
#    time p50 by incremental and by hashes, the whole-run client's result.
#
# Usage: bench/run_switchover.sh [BUILD_DIR]
#   BUILD_DIR  a release build with the guest and the test hooks (default
#              build; made with meson setup -Dbuildtype=release
#              -Dlinux_guest=true -Dtest_hooks=true if it does not exist)
# Environment: ROUNDS (10), CHECKPOINTS (30, per protection before its
#   switchover), DISK_MIB (64), IMAGE_FILL (data, the default, or sparse),
#   INTERVAL_MS (100), HEARTBEAT_TIMEOUT_MS (2000: a loaded 2-core host
#   must not fail over by itself), KEEP_LOGS=1 (keep the work directory).
# Exit status: 0 when every step worked and every client check passed.
set -uo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
source_root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath -m "${1:-$source_root/build}")
rounds=${ROUNDS:-10}
checkpoints=${CHECKPOINTS:-30}
disk_mib=${DISK_MIB:-64}
interval=${INTERVAL_MS:-100}
heartbeat=${HEARTBEAT_TIMEOUT_MS:-2000}
image_fill=${IMAGE_FILL:-data}
[ "$(id -u)" -eq 0 ] || { echo "run_switchover: needs root (network namespaces, TAP devices)" >&2; exit 2; }
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$source_root" -Dbuildtype=release -Dlinux_guest=true -Dtest_hooks=true >/dev/null ||
        { echo "run_switchover: meson setup $build failed" >&2; exit 2; }
fi
ninja -C "$build" >/dev/null || { echo "run_switchover: ninja -C $build failed" >&2; exit 2; }
[ "$(meson introspect "$build" --buildoptions 2>/dev/null |
    python3 -c "import json,sys; print({o['name']: o['value'] for o in json.load(sys.stdin)}['buildtype'])")" = release ] ||
    echo "run_switchover: warning: $build is not a release build"
colo=$build/programs/colo guest_dir=$build/guests/linux
[ -f "$guest_dir/Image" ] || { echo "run_switchover: no $guest_dir/Image (meson -Dlinux_guest=true)" >&2; exit 2; }
helper=$source_root/bench/switchover_helper.py
client_py=$source_root/tests/migration/continuous_client.py
boot_timeout=120
guest=10.97.0.2

source "$source_root/tests/replication/colo_test_lib.sh"
colo_test_begin switchover-bench sb
# Logs stay with a failure (e2e_cleanup) or with KEEP_LOGS=1.
[ "${KEEP_LOGS:-0}" = 1 ] && trap 'for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done; wait 2>/dev/null;
    netns_destroy_topology "$hosts_ns" "$client_ns"; rm -f "$work"/*.img; echo "logs kept in $work"' EXIT
rm -f "$work/diskA.img" "$work/diskB.img"
if [ "$image_fill" = data ]; then
    # Both images the same random bytes, as a used disk is: a hash compare
    # then reads and hashes all of it on both sides (a hole is hashed
    # without a read). The guest's KV log starts at byte 0 and ends at the
    # first record that is not valid, so the random bytes are no log.
    head -c "$((disk_mib << 20))" /dev/urandom >"$work/diskA.img" && cp "$work/diskA.img" "$work/diskB.img" ||
        { fail "cannot write the images"; exit 1; }
else
    truncate -s "${disk_mib}M" "$work/diskA.img" "$work/diskB.img"
fi
results=$work/results.jsonl
load() { cut -d' ' -f1-3 /proc/loadavg; }
now() { date +%s.%N; }
json_field() { python3 -c "import json,sys; v=json.loads(sys.argv[1]).get('$2'); print('' if v is None else v)" "$1"; }

echo "host: $(nproc) cores, $(uname -r), load $(load); colo $(git -C "$source_root" rev-parse --short HEAD 2>/dev/null)," \
    "$disk_mib MiB images, interval $interval ms, heartbeat timeout $heartbeat ms, $checkpoints checkpoints per protection"

# The pair's state: the primary (host letter, run directory, pid) and the
# secondary (the same, and its port). Each colo process has a run
# directory of its own (its control socket).
serial=0 port=47200
start_secondary() {  # HOST: a secondary on HOST with its image
    serial=$((serial + 1)) port=$((port + 1))
    secondary_host=$1 secondary_dir=$work/run$serial-$1 secondary_log=$work/run$serial-$1.log
    mkdir -p "$secondary_dir"
    local config=$work/a.cfg; [ "$1" = B ] && config=$work/b.cfg
    COLO_RUN_DIR=$secondary_dir ip netns exec "$hosts_ns" "$colo" secondary --listen "127.0.0.1:$port" \
        --heartbeat-timeout "$heartbeat" "$config" >"$secondary_log" 2>&1 </dev/null &
    secondary_pid=$!; pids+=("$secondary_pid")
    wait_for "$secondary_log" "waiting for the primary" "secondary on $1" "$secondary_pid"
}

# protect LABEL: the primary protects to the secondary; prints the
# reprotect line and records it. The timing starts before `colo protect`.
protect() {
    local label=$1 started copy
    echo "protect $primary_host -> $secondary_host ($label):" >>"$work/copy-trace.log"
    # The poller runs first (`colo protect` returns once the copy started);
    # the clock starts once it is ready.
    local start_file=$work/protect$serial.start waited=0
    SWITCHOVER_TRACE=$work/copy-trace.log python3 "$helper" wait-copy "$primary_dir/guarded.sock" "$start_file" 600 \
        >"$work/copy$serial.json" &
    local poller=$!; pids+=("$poller")
    while [ ! -f "$start_file.ready" ] && ((waited < 300)); do sleep 0.1; waited=$((waited + 1)); done
    now >"$start_file"
    on_host "$primary_dir" "$colo" protect guarded "127.0.0.1:$port" --interval "$interval" \
        --heartbeat-timeout "$heartbeat" >"$work/protect$serial.log" 2>&1 ||
        { fail "colo protect $primary_host -> $secondary_host: $(cat "$work/protect$serial.log")"; return 1; }
    wait "$poller"
    copy=$(cat "$work/copy$serial.json")
    python3 - "$copy" "$label" "$primary_host -> $secondary_host" "$results" <<'PY' || fail "$label: the initial copy did not complete or the sync was not the expected one: $copy"
import json, sys
copy, label, direction, results = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
sync = copy.get("disk_sync") or {}
modes = ",".join(sync.get("modes", [])) or "-"
per_disk = ", ".join(f"disk {i} {mode}" for i, mode in enumerate(sync.get("modes", []))) or "no disk sync"
row = {"kind": "reprotect" if label != "initial" else "initial", "what": label, "direction": direction, "modes": modes,
       "tracked_blocks_sent": sync.get("tracked_blocks_sent"), "bytes_compared": sync.get("bytes_compared"),
       "bytes_sent": sync.get("bytes_sent"), "bytes_total": sync.get("bytes_total"),
       "copy_s": copy.get("copy_s"), "pass_s": copy.get("pass_s")}
def show(value, spec=""):
    return "-" if value is None else format(value, spec)
print(f"protect {direction} ({label}): {per_disk}; {show(row['tracked_blocks_sent'])} tracked blocks sent, "
      f"{show(row['bytes_compared'])} bytes compared, {show(row['bytes_sent'])} bytes sent; "
      f"disks' pass over {show(row['pass_s'], '.3f')} s, initial copy complete {show(row['copy_s'], '.3f')} s after colo protect")
with open(results, "a") as out:
    out.write(json.dumps(row) + "\n")
expected = {"initial": None, "history removed": "hashes"}.get(label, "incremental")
if expected and modes != expected:
    print(f"FAIL: {label}: the sync was {modes}, expected {expected}")
sys.exit(0 if copy.get("copy_s") is not None and modes == (expected or modes) else 1)
PY
    wait_for_checkpoints "$primary_dir" "$checkpoints" >/dev/null ||
        { fail "$label: fewer than $checkpoints checkpoints $primary_host -> $secondary_host"; return 1; }
}

switchover_times=()
# switchover: the primary hands the VM to the secondary under a fresh
# client; prints the switchover line; the secondary becomes the primary.
switchover() {
    local tag=sw$((${#switchover_times[@]} + 1)) direction="$primary_host -> $secondary_host" started output gap status
    rm -f "$work/stop-$tag" "$work/switched-$tag"
    ip netns exec "$client_ns" python3 "$client_py" "$guest" "$work/stop-$tag" 300 "$tag-" - "$work/switched-$tag" \
        >"$work/client-$tag.log" 2>&1 &
    local client=$!; pids+=("$client")
    sleep 1
    touch "$work/switched-$tag"
    started=$(now)
    switchover_times+=("$started")
    on_host "$primary_dir" "$colo" switchover guarded >"$work/$tag.log" 2>&1; status=$?
    output=$(cat "$work/$tag.log")
    gap=$(grep -o "service gap [0-9.]* ms" <<<"$output" | grep -o "[0-9.]*")
    [ "$status" -eq 0 ] || fail "colo switchover $direction: status $status: $output"
    wait_exit "$primary_pid" 20 || fail "$direction: the old primary did not exit 0: $(tail -3 "$primary_log")"
    sleep 3
    touch "$work/stop-$tag"
    wait_exit "$client" 60; local client_status=$?
    local client_gap keys
    client_gap=$(grep -o 'longest gap between replies [0-9.]*' "$work/client-$tag.log" | grep -o '[0-9.]*$')
    keys=$(grep -o 'all [0-9]* acknowledged keys read back\|[0-9]* of [0-9]* acknowledged keys read back wrong' "$work/client-$tag.log")
    [ "$client_status" -eq 0 ] || fail "$direction: the client: $(tr '\n' ' ' <"$work/client-$tag.log")"
    echo "switchover $direction: gap ${gap:--} ms (colo), client's longest gap ${client_gap:--} ms, ${keys:-client failed}"
    echo "{\"kind\": \"switchover\", \"direction\": \"$direction\", \"gap_ms\": ${gap:-null}, \"client_gap_ms\": ${client_gap:-null}," \
        "\"keys_ok\": $([ "$client_status" -eq 0 ] && echo true || echo false), \"load\": \"$(load)\"}" >>"$results"
    [ "$status" -eq 0 ] || return 1
    primary_host=$secondary_host primary_dir=$secondary_dir primary_pid=$secondary_pid primary_log=$secondary_log
}

other() { [ "$1" = A ] && echo B || echo A; }

# ---- 1. A protects to B, then the round trips ----
primary_host=A primary_dir=$work/run0-A primary_log=$work/run0-A.log
mkdir -p "$primary_dir"
COLO_RUN_DIR=$primary_dir ip netns exec "$hosts_ns" "$colo" run "$work/a.cfg" >"$primary_log" 2>&1 </dev/null &
primary_pid=$!; pids+=("$primary_pid")
wait_for "$primary_log" "colo-guest: services ready" "boot on A" "$primary_pid" || exit 1
start_secondary B || exit 1
rm -f "$work/stop-all"
ip netns exec "$client_ns" python3 "$helper" client "$guest" "$work/stop-all" "$work/client-all.json" \
    2>"$work/client-all.err" &
whole_client=$!; pids+=("$whole_client")
sleep 1
protect initial || exit 1

for round in $(seq 1 "$rounds"); do
    for _ in 1 2; do
        switchover || exit 1
        start_secondary "$(other "$primary_host")" || exit 1
        protect "round $round" || exit 1
    done
done

# ---- 2. the same reprotect, the history removed: hashes ----
switchover || exit 1
old_host=$(other "$primary_host")
sidecar=$work/disk$old_host.img.colo-history
[ -f "$sidecar" ] || fail "no $sidecar after the switchover (the old primary records its image's history)"
rm -f "$sidecar"
start_secondary "$old_host" || exit 1
protect "history removed" || exit 1
grep -q "history unknown" "$secondary_log" ||
    fail "the secondary on $old_host did not say its image's history is unknown: $(grep -m1 history "$secondary_log")"

# ---- 3. the summary ----
touch "$work/stop-all"
wait_exit "$whole_client" 120 || fail "the whole-run client ended with an error"
python3 - "$work/client-all.json" "$(python3 "$helper" windows "$work/client-all.json" "${switchover_times[@]}")" <<'PY' || fail "the whole-run client"
import json, sys
data, windows = json.load(open(sys.argv[1])), json.loads(sys.argv[2])
print(f"whole-run client: {data['pairs']} SET+GET pairs on one connection, error: {data['error'] or 'none'}; "
      f"{data['keys']} keys, {data['lost_keys']} read back wrong; its longest gap around each switchover (ms): "
      + " ".join("-" if w is None else f"{w:.1f}" for w in windows))
sys.exit(0 if not data["error"] and data["lost_keys"] == 0 else 1)
PY
python3 "$helper" summary "$results"
on_host "$primary_dir" "$colo" quit guarded >/dev/null 2>&1
echo "load at end: $(load)"
echo "run_switchover: $failed problem(s)"
[ "$failed" -eq 0 ]
