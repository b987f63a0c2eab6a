#!/bin/bash
# Live migration benchmark, colo and qemu-system-riscv64 side by side in the
# same run, same kernel and initramfs, same TAP topology in network
# namespaces of its own (needs root):
#
#   client ns: veth0 10.95.0.1 -- veth1 -- br0 -- tapA  (colo source)
#                                            |-- tapB  (colo receive)
#                                            |-- tapQA (QEMU source)
#                                            \-- tapQB (QEMU -incoming)
#
# For each dirty rate (the guest's memory churner, `CHURN n` pages/s over
# the KV port, set from the client namespace after boot, then 1 s to settle):
#   - colo: `colo run` (source), `colo receive --listen` (destination),
#     `colo migrate` with its default downtime limit (5 ms);
#   - QEMU 7.2: a source and a `-incoming tcp:` destination, QMP on UNIX
#     sockets, downtime-limit 5 ms, max-bandwidth 10 GiB/s (QEMU's default
#     is 32 MiB/s), `migrate`, query-migrate polled until it completes or
#     MIG_QEMU_TIMEOUT seconds pass (then migrate_cancel: "did not converge").
# For each: total time, downtime, rounds (QEMU: dirty-sync-count), pages and
# bytes sent, the longest gap in the VM's answers to ICMP echo sent every
# 2 ms from the client across the migration (the same yardstick for both),
# and whether the KV service answers at the destination afterwards (a key
# stored before the migration must read back).
# Then save/restore of an idle guest: `colo save` + `colo run --load` vs
# QEMU `stop` + `migrate exec:cat > FILE` + `-incoming exec:cat FILE` + `cont`,
# timed until the KV service answers again, with the file sizes.
#
# Usage: bench/run_migration.sh [COLO [GUEST_DIR]]   (defaults: build/...)
# Environment: MIG_RATES ("0 1000 10000 50000"), MIG_ROUNDS (1),
#   MIG_QEMU_TIMEOUT (60 s), MIG_KEEP_LOGS=1 to keep the work directory,
#   MIG_PING=0 to send no ICMP traffic during the migrations,
#   MIG_COLO_REVISION=TEXT to say which source the colo binary was built from.
set -uo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
colo=${1:-build/programs/colo}
guest_dir=${2:-build/guests/linux}
rates=${MIG_RATES:-0 1000 10000 50000}
rounds=${MIG_ROUNDS:-1}
qemu_timeout=${MIG_QEMU_TIMEOUT:-60}
boot_timeout=120
helper=$(realpath bench/migration_helper.py)
guest=10.95.0.2
mac=52:54:00:95:00:02
firmware=/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.elf
[ "$(id -u)" -eq 0 ] || { echo "run_migration: needs root (network namespaces)" >&2; exit 2; }
[ -x "$colo" ] || { echo "run_migration: no $colo: build first (ninja -C build)" >&2; exit 2; }
[ -f "$guest_dir/Image" ] || { echo "run_migration: no $guest_dir/Image: build first (ninja -C build)" >&2; exit 2; }
command -v qemu-system-riscv64 >/dev/null || { echo "run_migration: no qemu-system-riscv64" >&2; exit 2; }
colo=$(realpath "$colo") guest_dir=$(realpath "$guest_dir")

work=$(mktemp -d /tmp/colo-bench-migration.XXXXXX)
hosts_ns=colo-bm$$-hosts client_ns=colo-bm$$-client
results=$work/results.jsonl
problems=0 qemu_problems=0
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
    wait 2>/dev/null
    ip netns del "$hosts_ns" 2>/dev/null
    ip netns del "$client_ns" 2>/dev/null
    rm -f "$work"/*.save "$work"/*.img
    if [ "${MIG_KEEP_LOGS:-0}" = 1 ] || [ "$problems" -gt 0 ] || [ "$qemu_problems" -gt 0 ]; then
        echo "logs kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'echo "run_migration: interrupted"; exit 130' INT TERM

# A problem with colo (or the set-up) fails the run; one with QEMU is a
# result (reported, counted, logs kept) rather than a failure of the benchmark.
problem() { echo "PROBLEM: $*"; problems=$((problems + 1)); }
qemu_problem() { echo "QEMU PROBLEM: $*"; qemu_problems=$((qemu_problems + 1)); }
now() { date +%s.%N; }
elapsed() { printf "%.3f" "$(echo "$(now) - $1" | bc)"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

set -e
ip netns add "$hosts_ns"
ip netns add "$client_ns"
ip -n "$hosts_ns" link set lo up
ip -n "$hosts_ns" link add br0 type bridge
ip -n "$hosts_ns" link set br0 up
for tap in tapA tapB tapQA tapQB; do
    ip -n "$hosts_ns" tuntap add dev "$tap" mode tap
    ip -n "$hosts_ns" link set "$tap" master br0 up
done
ip -n "$client_ns" link add veth0 type veth peer name veth1 netns "$hosts_ns"
ip -n "$hosts_ns" link set veth1 master br0 up
ip -n "$client_ns" link set lo up
ip -n "$client_ns" addr add 10.95.0.1/24 dev veth0
ip -n "$client_ns" link set veth0 up
set +e

cmdline="console=ttyS0 colo.ip=$guest/24"
make_config() {  # TAP
    cat <<CFG
name = "migbench"
memory = 256
kernel = "$guest_dir/Image"
initrd = "$guest_dir/initramfs.cpio"
cmdline = "$cmdline"
disks = [ "path=$work/disk.img" ]
nics = [ "tap=$1,mac=$mac" ]
console = "stdio"
CFG
}
make_config tapA >"$work/a.cfg"
make_config tapB >"$work/b.cfg"
mkdir -p "$work/A" "$work/B"

on_hosts() {  # RUN_DIR COMMAND...
    local run_dir=$1; shift
    COLO_RUN_DIR=$run_dir ip netns exec "$hosts_ns" "$@"
}
client() { ip netns exec "$client_ns" "$@"; }

# A fresh disk, and no stale MAC/neighbour entries from the previous VM.
fresh_start() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    pids=()
    rm -f "$work/disk.img"; truncate -s 16M "$work/disk.img"
    for dev in tapA tapB tapQA tapQB veth1; do
        ip -n "$hosts_ns" link set dev "$dev" type bridge_slave flush 2>/dev/null
    done
    ip -n "$client_ns" neigh flush dev veth0 2>/dev/null
    rm -f "$work"/*.qmp "$work/ping.stop"
}

wait_for() {  # LOG TEXT WHAT PID
    local started=$SECONDS
    while ! grep -q "$2" "$1" 2>/dev/null; do
        kill -0 "$4" 2>/dev/null || { problem "$3: process exited"; tail -20 "$1" | sed 's/^/    /'; return 1; }
        ((SECONDS - started > boot_timeout)) && { problem "$3: no '$2' within $boot_timeout s"; tail -20 "$1" | sed 's/^/    /'; return 1; }
        sleep 0.05
    done
}

# Waits for a child to exit, kill -9 after SECONDS; sets exit_status (a
# number, or "killed"). Not in $(...): wait only works in the parent shell.
wait_exit() {  # PID SECONDS
    local pid=$1 limit=$2 started=$SECONDS
    while kill -0 "$pid" 2>/dev/null && ((SECONDS - started < limit)); do sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; exit_status=killed; return 1
    fi
    wait "$pid" 2>/dev/null; exit_status=$?
}

start_qemu() {  # TAP QMP_SOCKET LOG [EXTRA ARGS...]; sets qemu_pid
    local tap=$1 qmp=$2 log=$3; shift 3
    ip netns exec "$hosts_ns" qemu-system-riscv64 -M virt -m 256M -nographic -nodefaults \
        -serial stdio -monitor none -qmp "unix:$qmp,server=on,wait=off" \
        -bios "$firmware" \
        -kernel "$guest_dir/Image" -initrd "$guest_dir/initramfs.cpio" -append "$cmdline" \
        -drive "file=$work/disk.img,format=raw,if=none,id=d0" -device virtio-blk-device,drive=d0 \
        -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" \
        -device "virtio-net-device,netdev=n0,mac=$mac" "$@" >"$log" 2>&1 </dev/null &
    qemu_pid=$!; pids+=("$qemu_pid")
}

# Sets the churner's rate and stores the key that must read back afterwards.
prepare_guest() {  # RATE KEY
    client python3 "$helper" kv "$guest" set "$2" "value-$2" || { problem "SET before the migration failed"; return 1; }
    client python3 "$helper" kv "$guest" churn "$1" || { problem "CHURN $1 failed"; return 1; }
    sleep 1
}

# The longest gap in ICMP answers over 2 s without a migration: what the
# host's load alone does to the yardstick.
baseline_ping() {  # sets base_gap
    base_gap=""
    [ "${MIG_PING:-1}" = 1 ] || return
    rm -f "$work/base.stop"
    (sleep 2; touch "$work/base.stop") &
    base_gap=$(client timeout 20 python3 "$helper" ping "$guest" "$work/base.stop" 2 10 2>/dev/null |
        python3 -c "import json,sys; print(json.load(sys.stdin)['max_gap_ms'] or '')" 2>/dev/null)
    wait $! 2>/dev/null
}

start_ping() {  # sets ping_pid
    [ "${MIG_PING:-1}" = 1 ] || { ping_pid=""; return; }
    rm -f "$work/ping.stop"
    client python3 "$helper" ping "$guest" "$work/ping.stop" 2 600 >"$work/ping.json" 2>"$work/ping.err" &
    ping_pid=$!; pids+=("$ping_pid")
    sleep 0.3
}
stop_ping() {  # sets gap: the longest gap in ms, or nothing
    gap=""
    [ -n "$ping_pid" ] || return
    sleep 0.2
    touch "$work/ping.stop"
    wait_exit "$ping_pid" 10
    gap=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['max_gap_ms'] or '')" "$work/ping.json" 2>/dev/null)
}

# Kernel or device errors on a destination's console after the migration
# (the source's boot messages are not in this log).
guest_errors() {  # LOG
    grep -E "BUG:|WARNING:|Oops|Kernel panic|inconsistent with Host|qemu-system-riscv64:.*(error|fail)" "$1" 2>/dev/null |
        head -3 | tr '\n' ' '
}

record() {  # JSON text
    echo "$1" >>"$results"
}

json() {  # KEY=VALUE...: a JSON object; numbers stay numbers
    python3 - "$@" <<'PY'
import json, sys
out = {}
for pair in sys.argv[1:]:
    key, _, value = pair.partition("=")
    if value == "":
        out[key] = None
        continue
    try:
        out[key] = int(value)
    except ValueError:
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
print(json.dumps(out))
PY
}

port=47200
migrate_colo() {  # RATE RUN
    local rate=$1 run=$2 tag="colo-$1-$2" key="k$1r$2"
    port=$((port + 1))
    fresh_start
    on_hosts "$work/A" "$colo" run "$work/a.cfg" >"$work/$tag-source.log" 2>&1 </dev/null &
    local source_pid=$!; pids+=("$source_pid")
    wait_for "$work/$tag-source.log" "services ready" "colo source boot ($tag)" "$source_pid" || return 1
    on_hosts "$work/B" "$colo" receive --listen "127.0.0.1:$port" "$work/b.cfg" >"$work/$tag-target.log" 2>&1 </dev/null &
    local target_pid=$!; pids+=("$target_pid")
    wait_for "$work/$tag-target.log" "waiting for a migration" "colo receive ($tag)" "$target_pid" || return 1
    prepare_guest "$rate" "$key" || return 1
    baseline_ping
    start_ping
    local load_now; load_now=$(load)
    timeout 300 env COLO_RUN_DIR="$work/A" ip netns exec "$hosts_ns" "$colo" migrate migbench "127.0.0.1:$port" \
        >"$work/$tag-migrate.out" 2>"$work/$tag-migrate.err"
    local status=$? result total downtime sent rounds pages final mib kv_after state gap
    if [ $status -eq 0 ]; then
        read -r total downtime sent rounds pages final mib < <(sed -E -n \
            's/.* in ([0-9.]+) s: downtime ([0-9.]+) ms \(([0-9.]+) ms to the last byte sent\), ([0-9]+) rounds, ([0-9]+) pages \(([0-9]+) while paused\), ([0-9.]+) MiB.*/\1 \2 \3 \4 \5 \6 \7/p' \
            "$work/$tag-migrate.out")
        result=migrated
        kv_after=$(client python3 "$helper" kv "$guest" wait "$key" "value-$key" 30 2>"$work/$tag-kv.err") ||
            { problem "colo $rate pages/s: the KV service does not answer at the destination: $(cat "$work/$tag-kv.err")"; result="migrated, KV silent"; }
        state=$(on_hosts "$work/B" "$colo" status migbench --json 2>/dev/null |
            python3 -c "import json,sys; print(json.load(sys.stdin).get('state',''))" 2>/dev/null)
        [ "$state" = running ] || problem "colo $rate pages/s: colo status at the destination says '$state'"
        local errors; errors=$(guest_errors "$work/$tag-target.log")
        [ -z "$errors" ] || { problem "colo $rate pages/s: errors on the destination's console: $errors"; result="$result, guest errors"; }
        wait_exit "$source_pid" 20
        [ "$exit_status" = 0 ] || problem "colo $rate pages/s: the source colo ended with '$exit_status' after the migration"
    else
        result="failed (status $status)"
        problem "colo $rate pages/s: colo migrate failed (status $status): $(tr '\r' '\n' <"$work/$tag-migrate.err" | grep -v '^\[' | grep -v '^$' | tail -3)"
        echo "    source log:"; tail -5 "$work/$tag-source.log" | sed 's/^/    /'
        echo "    target log:"; tail -5 "$work/$tag-target.log" | sed 's/^/    /'
    fi
    stop_ping
    echo "  colo  $rate pages/s: $(cat "$work/$tag-migrate.out" 2>/dev/null)  [ping gap ${gap:-?} ms (${base_gap:-?} ms without migration), KV after ${kv_after:-?} s, load $load_now]"
    record "$(json kind=migration machine=colo rate="$rate" run="$run" result="$result" total_s="${total:-}" \
        downtime_ms="${downtime:-}" sent_ms="${sent:-}" rounds="${rounds:-}" pages="${pages:-}" final_pages="${final:-}" \
        mib_sent="${mib:-}" \
        ping_gap_ms="${gap:-}" base_gap_ms="${base_gap:-}" kv_after_s="${kv_after:-}" load="$load_now")"
    on_hosts "$work/B" timeout 10 "$colo" quit migbench >/dev/null 2>&1
    wait_exit "$target_pid" 10
    wait_exit "$source_pid" 5
    return 0
}

migrate_qemu() {  # RATE RUN
    local rate=$1 run=$2 tag="qemu-$1-$2" key="k$1r$2q"
    port=$((port + 1))
    fresh_start
    start_qemu tapQA "$work/src.qmp" "$work/$tag-source.log"; local source_pid=$qemu_pid
    wait_for "$work/$tag-source.log" "services ready" "QEMU source boot ($tag)" "$source_pid" || return 1
    start_qemu tapQB "$work/dst.qmp" "$work/$tag-target.log" -incoming "tcp:127.0.0.1:$port"; local target_pid=$qemu_pid
    ip netns exec "$hosts_ns" python3 "$helper" qmp "$work/dst.qmp" wait 30 || { qemu_problem "QEMU destination: no QMP"; return 1; }
    prepare_guest "$rate" "$key" || return 1
    baseline_ping
    start_ping
    local load_now; load_now=$(load)
    ip netns exec "$hosts_ns" timeout $(( ${qemu_timeout%.*} + 60 )) python3 "$helper" qmp "$work/src.qmp" migrate \
        "tcp:127.0.0.1:$port" --downtime-ms 5 --max-bandwidth $((10 << 30)) --timeout "$qemu_timeout" \
        >"$work/$tag-migrate.json" 2>"$work/$tag-migrate.err"
    local status=$? result fields kv_after="" gap
    fields=$(python3 - "$work/$tag-migrate.json" <<'PY' 2>/dev/null
import json, sys
r = json.load(open(sys.argv[1]))
# "-" for a missing value: read splits on blanks, so an empty field would shift the others
print(r.get("status", "?"), r.get("total-time", "-"), r.get("downtime", "-"), r.get("ram_dirty_sync_count", "-"),
      (r.get("ram_normal", 0) + r.get("ram_duplicate", 0)) or "-",
      round(r["ram_transferred"] / 1048576, 1) if "ram_transferred" in r else "-", r.get("ram_duplicate", "-"))
PY
)
    local qstatus total_ms downtime rounds pages mib duplicate field
    read -r qstatus total_ms downtime rounds pages mib duplicate <<<"$fields"
    for field in total_ms downtime rounds pages mib duplicate; do [ "${!field}" = - ] && printf -v "$field" ''; done
    if [ $status -eq 0 ] && [ "$qstatus" = completed ]; then
        result=migrated
        kv_after=$(client python3 "$helper" kv "$guest" wait "$key" "value-$key" 30 2>"$work/$tag-kv.err") ||
            { qemu_problem "QEMU $rate pages/s: the KV service does not answer at the destination: $(cat "$work/$tag-kv.err")"; result="migrated, KV silent"; }
        kill -0 "$target_pid" 2>/dev/null || { qemu_problem "QEMU $rate pages/s: the destination QEMU exited"; result="$result, dest exited"; }
        local errors; errors=$(guest_errors "$work/$tag-target.log")
        [ -z "$errors" ] || { qemu_problem "QEMU $rate pages/s: errors on the destination's console: $errors"; result="$result, guest errors"; }
    elif [ $status -eq 0 ] && [ "$qstatus" = cancelled ]; then
        result="no convergence in ${qemu_timeout}s"
        downtime=""; total_ms=""
        # the source goes on running: check it still answers
        client python3 "$helper" kv "$guest" wait "$key" "value-$key" 30 >/dev/null 2>"$work/$tag-kv.err" ||
            qemu_problem "QEMU $rate pages/s: after migrate_cancel the source does not answer"
    else
        result="failed (${qstatus:-status $status})"
        qemu_problem "QEMU $rate pages/s: migration failed: $(cat "$work/$tag-migrate.json" "$work/$tag-migrate.err" | tail -3)"
    fi
    stop_ping
    echo "  qemu  $rate pages/s: $(cat "$work/$tag-migrate.json")  [ping gap ${gap:-?} ms (${base_gap:-?} ms without migration), KV after ${kv_after:-?} s, load $load_now]"
    local total_s=""; [ -n "$total_ms" ] && total_s=$(echo "scale=3; $total_ms / 1000" | bc)
    record "$(json kind=migration machine=qemu rate="$rate" run="$run" result="$result" total_s="$total_s" \
        downtime_ms="${downtime:-}" rounds="${rounds:-}" pages="${pages:-}" duplicate_pages="${duplicate:-}" \
        mib_sent="${mib:-}" ping_gap_ms="${gap:-}" base_gap_ms="${base_gap:-}" kv_after_s="$kv_after" load="$load_now")"
    ip netns exec "$hosts_ns" timeout 10 python3 "$helper" qmp "$work/src.qmp" run quit >/dev/null 2>&1
    ip netns exec "$hosts_ns" timeout 10 python3 "$helper" qmp "$work/dst.qmp" run quit >/dev/null 2>&1
    wait_exit "$source_pid" 10
    wait_exit "$target_pid" 10
    return 0
}

save_restore_colo() {
    local tag=colo-save key=ksavec file=$work/colo.save
    fresh_start
    on_hosts "$work/A" "$colo" run "$work/a.cfg" >"$work/$tag-source.log" 2>&1 </dev/null &
    local source_pid=$!; pids+=("$source_pid")
    wait_for "$work/$tag-source.log" "services ready" "colo boot ($tag)" "$source_pid" || return 1
    prepare_guest 0 "$key" || return 1
    local load_now; load_now=$(load)
    local started; started=$(now)
    on_hosts "$work/A" "$colo" save migbench "$file" --timeout 120 >"$work/$tag.out" 2>&1 ||
        { problem "colo save failed: $(cat "$work/$tag.out")"; return 1; }
    local save_s; save_s=$(elapsed "$started")
    wait_exit "$source_pid" 20
    [ "$exit_status" = 0 ] || problem "colo save: colo run ended with '$exit_status'"
    local size; size=$(stat -c %s "$file")
    started=$(now)
    on_hosts "$work/A" "$colo" run "$work/a.cfg" --load "$file" >"$work/$tag-restore.log" 2>&1 </dev/null &
    local restore_pid=$!; pids+=("$restore_pid")
    local restore_s=""
    if client python3 "$helper" kv "$guest" wait "$key" "value-$key" 60 >/dev/null 2>"$work/$tag-kv.err"; then
        restore_s=$(elapsed "$started")
    else
        problem "colo restore: the KV service does not answer: $(cat "$work/$tag-kv.err"); log: $(tail -3 "$work/$tag-restore.log")"
    fi
    echo "  colo  save $save_s s ($(cat "$work/$tag.out")), file $size bytes, restore to KV answer ${restore_s:-?} s"
    record "$(json kind=save machine=colo save_s="$save_s" file_mib="$(echo "scale=1; $size / 1048576" | bc)" \
        restore_s="$restore_s" load="$load_now")"
    on_hosts "$work/A" timeout 10 "$colo" quit migbench >/dev/null 2>&1
    wait_exit "$restore_pid" 10
    rm -f "$file"
}

save_restore_qemu() {
    local tag=qemu-save key=ksaveq file=$work/qemu.save
    fresh_start
    start_qemu tapQA "$work/src.qmp" "$work/$tag-source.log"; local source_pid=$qemu_pid
    wait_for "$work/$tag-source.log" "services ready" "QEMU boot ($tag)" "$source_pid" || return 1
    prepare_guest 0 "$key" || return 1
    local load_now; load_now=$(load)
    local started; started=$(now)
    ip netns exec "$hosts_ns" timeout 180 python3 "$helper" qmp "$work/src.qmp" migrate "exec:cat > $file" \
        --stop-first --max-bandwidth $((10 << 30)) --timeout 120 >"$work/$tag.json" 2>"$work/$tag.err"
    local save_s; save_s=$(elapsed "$started")
    grep -q '"status": "completed"' "$work/$tag.json" ||
        { qemu_problem "QEMU save failed: $(cat "$work/$tag.json" "$work/$tag.err")"; return 1; }
    ip netns exec "$hosts_ns" timeout 10 python3 "$helper" qmp "$work/src.qmp" run quit >/dev/null 2>&1
    wait_exit "$source_pid" 10
    local size; size=$(stat -c %s "$file")
    rm -f "$work/src.qmp"
    started=$(now)
    start_qemu tapQA "$work/src.qmp" "$work/$tag-restore.log" -incoming "exec:cat $file"; local restore_pid=$qemu_pid
    # The VM was stopped when it was saved, so QEMU loads it paused: `cont`
    # once the incoming migration is done (what `virsh restore` does).
    local restore_s=""
    if ip netns exec "$hosts_ns" timeout 70 python3 - "$helper" "$work/src.qmp" <<'PY' 2>"$work/$tag-cont.err"
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("helper", sys.argv[1])
helper = importlib.util.module_from_spec(spec); spec.loader.exec_module(helper)
started = time.monotonic()
while True:
    try:
        qmp = helper.Qmp(sys.argv[2], timeout=5)
        break
    except OSError:
        if time.monotonic() - started > 30:
            raise
        time.sleep(0.01)
while True:
    status = qmp.command("query-status")["status"]
    if status not in ("inmigrate", "prelaunch"):
        break
    if time.monotonic() - started > 60:
        sys.exit(f"still {status} after 60 s")
    time.sleep(0.01)
if status != "running":
    qmp.command("cont")
PY
    then
        if client python3 "$helper" kv "$guest" wait "$key" "value-$key" 60 >/dev/null 2>"$work/$tag-kv.err"; then
            restore_s=$(elapsed "$started")
        else
            qemu_problem "QEMU restore: the KV service does not answer: $(cat "$work/$tag-kv.err")"
        fi
    else
        qemu_problem "QEMU restore: $(cat "$work/$tag-cont.err" | tail -3)"
    fi
    echo "  qemu  save $save_s s ($(cat "$work/$tag.json")), file $size bytes, restore to KV answer ${restore_s:-?} s"
    record "$(json kind=save machine=qemu save_s="$save_s" file_mib="$(echo "scale=1; $size / 1048576" | bc)" \
        restore_s="$restore_s" load="$load_now" note="save = stop + migrate exec: (zero pages as flags)")"
    ip netns exec "$hosts_ns" timeout 10 python3 "$helper" qmp "$work/src.qmp" run quit >/dev/null 2>&1
    wait_exit "$restore_pid" 10
    rm -f "$file"
}

echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(uname -r); $(date -u '+%F %T UTC')"
echo "qemu: $(qemu-system-riscv64 --version | head -1)"
echo "colo: ${MIG_COLO_REVISION:-source tree at $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes')}; binary $colo built $(date -u -r "$colo" '+%F %T UTC')"
echo "guest: 256 MiB, $(basename "$guest_dir")/Image + initramfs.cpio, 16 MiB virtio-blk, virtio-net on a TAP on a bridge"
echo "load average at start: $(load)"
echo "QEMU: downtime-limit 5 ms, max-bandwidth 10 GiB/s (its default of 32 MiB/s would throttle it); ${qemu_timeout} s to complete, else migrate_cancel"
echo "colo: default downtime limit (5 ms); pre-copy stops after 30 rounds or 3 rounds without progress"
echo

for run in $(seq 1 "$rounds"); do
    for rate in $rates; do
        migrate_colo "$rate" "$run" || record "$(json kind=migration machine=colo rate="$rate" run="$run" result="setup failed")"
        migrate_qemu "$rate" "$run" || record "$(json kind=migration machine=qemu rate="$rate" run="$run" result="setup failed")"
    done
    save_restore_colo || record "$(json kind=save machine=colo note="failed")"
    save_restore_qemu || record "$(json kind=save machine=qemu note="failed")"
done

python3 "$helper" report "$results"
echo
echo "load average at end: $(load)"
[ "$qemu_problems" -eq 0 ] || echo "$qemu_problems QEMU problem(s), see above (results, not failures of this benchmark)"
[ "$problems" -eq 0 ] || { echo "$problems problem(s) with colo or the set-up, see above"; exit 1; }
