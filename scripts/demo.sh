#!/bin/bash
# colo's demo: a protected VM survives the death of its host.
#
# One command on a fresh Debian 12 machine, as root. It installs what is
# missing, builds colo, its guest kernel (about 10 minutes the first time)
# and the Debian guest's image (about 5 minutes the first time; both are
# cached in /var/cache/colo), then:
#
#   colo-demo-client 10.90.0.1 ---- LAN ----+----------------------------+
#                                           |                            |
#   colo-demo-a "host A" (br0: uplink, tap0)        colo-demo-b "host B" (br0: uplink, tap0)
#      corosync, corosync-qdevice                      corosync, corosync-qdevice
#      colo run --cluster corosync:                    colo secondary --cluster corosync
#        the Debian VM (10.90.0.2)
#   colo-demo-w "the witness": corosync-qnetd
#   A, B and the witness share a cluster network (10.93.0.0/24); A and B a
#   replication network (10.94.0.0/24). Each host has its own network,
#   mount and UTS namespaces (scripts/lib/cluster_lab.sh).
#
# 0. Corosync starts on both hosts, with the witness's vote: the safe
#    configuration, where a copy that loses touch never serves beside the
#    other (docs/cluster.md).
# 1. The Debian VM (trixie riscv64: Redis 8, PostgreSQL 17) boots on host
#    A from its own copy of the disk, read-write: PostgreSQL keeps its data
#    on the disk, Redis in memory. pgbench's tables are created.
# 2. `colo protect` makes host B's VM a copy of it, disk included, and keeps
#    it one: B's VM gets the same requests, and a reply of A's leaves as
#    soon as B's VM sent the same (a checkpoint when they differ, and at
#    least every 100 ms).
# 3. The client runs Debian 12's redis-benchmark and pgbench, a writer that
#    records every key Redis acknowledged and one that records every
#    PostgreSQL commit it saw acknowledged.
# 4. Host A's colo is killed with kill -9 in the middle.
# 5. Host B takes over; the workload finishes there; every acknowledged key
#    and commit is read back, pgbench's balances add up; then the VM on B
#    is powered off and e2fsck finds its disk clean.
# It prints a summary and one line of JSON, and removes everything it made
# (namespaces, processes, files), also when interrupted.
#
# Usage: scripts/demo.sh [--load-seconds N] [--keep-logs]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

load_seconds=12 keep_logs=0
while [ $# -gt 0 ]; do
    case "$1" in
        --load-seconds) load_seconds=$2; shift 2 ;;
        --keep-logs) keep_logs=1; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "demo: run me as root (network namespaces, TAP devices)" >&2; exit 1; }

source scripts/lib/cluster_lab.sh
prefix=colo-demo guest=10.90.0.2 host_b=10.94.0.2
say() { printf '\n== %s\n' "$*"; }
note() { printf '   %s\n' "$*"; }

bash scripts/setup.sh
[ -d build ] || meson setup build --buildtype=release
say "building colo, the guest kernel and the Debian image (cached after the first time)"
ninja -C build | tail -3
colo=$repo/build/programs/colo
kernel=$repo/build/guests/linux/Image
image=$repo/build/guests/debian/root.ext4

work=$(mktemp -d /tmp/colo-demo.XXXXXX)
pids=()
cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    # The lab's daemons are this shell's children too: end them before
    # waiting, or the wait never returns.
    { cluster_lab_destroy "$prefix" "$work/lab"; wait || true; } 2>/dev/null
    if [ "$keep_logs" -eq 1 ] || [ "$status" -ne 0 ]; then
        echo "demo: logs kept in $work" >&2
        rm -f "$work"/*.ext4
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted; cleaning up" >&2; exit 130' INT TERM
cluster_lab_destroy "$prefix" "$work/lab"
cluster_lab_create "$prefix" "$work/lab" && cluster_lab_add_vm_networks "$prefix" "$work/lab" 10.90.0.1/24 ||
    { echo "demo: cannot build the hosts' namespaces" >&2; exit 1; }

on() { # HOST(a|b|client) COMMAND...: runs in that "host"
    local where=$1; shift
    if [ "$where" = client ]; then
        ip netns exec "$prefix-client" "$@"
    else
        cluster_lab_run "$prefix" "$work/lab" "$where" env COLO_RUN_DIR="$work/run-$where" "$@"
    fi
}
# Starts colo on HOST in the background as a simple command (so $! is
# colo itself and kill -9 hits it, not a subshell), its stdin INPUT.
start_colo() { # HOST INPUT LOG ARGS...
    local where=$1 input=$2 log=$3
    shift 3
    nsenter --net="/run/netns/$prefix-$where" --mount="$work/lab/ns/$where.mnt" --uts="$work/lab/ns/$where.uts" -- \
        env COLO_RUN_DIR="$work/run-$where" "$colo" "$@" <"$input" >"$log" 2>&1 &
    started_pid=$!
    pids+=("$started_pid")
}

say "Corosync on hosts A and B, corosync-qnetd on the witness (the tie-breaking vote)"
cluster_lab_start_corosync "$prefix" "$work/lab" ||
    { echo "demo: the cluster did not come up" >&2; tail -5 "$work"/lab/?/corosync.out >&2; exit 1; }
on a corosync-quorumtool -s | grep -E "^(Quorate|Nodes|Expected votes|Total votes):" | sed 's/^/   host A: /' || true
status_field() { # HOST FIELD...: fields of one `colo status --json`'s replication ("a.b": nested), '|' between
    local host=$1; shift
    on "$host" "$colo" status debian --json 2>/dev/null | python3 -c "
import json, sys
replication = json.load(sys.stdin).get('replication', {})
def field(path):
    value = replication
    for key in path.split('.'):
        value = value.get(key, '') if isinstance(value, dict) else ''
    return str(value)
print('|'.join(field(path) for path in sys.argv[1:]))" "$@" 2>/dev/null || true
}
wait_for() { # LOG TEXT TIMEOUT PID
    local started=$SECONDS
    until grep -q "$2" "$1" 2>/dev/null; do
        if ! kill -0 "$4" 2>/dev/null || ((SECONDS - started > $3)); then
            echo "demo: no '$2' in $1 within $3 s; its end:" >&2; tail -15 "$1" >&2; exit 1
        fi
        sleep 0.05
    done
}

# Each host has its own copy of the disk (B's a pre-provisioned copy of the
# same image: protect then sends only the chunks A's run has changed).
mkdir -p "$work/run-a" "$work/run-b"
# The pair's pre-shared key: both hosts hold it, and nobody else can
# become either's peer (docs/security.md).
"$colo" keygen psk "$work/pair.psk" --identity debian >/dev/null
for side in a b; do
    cp --sparse=always "$image" "$work/$side.ext4"
    cat >"$work/$side.cfg" <<CFG
name    = "debian"
memory  = 512
kernel  = "$kernel"
cmdline = "console=ttyS0 quiet root=/dev/vda rw init=/sbin/colo-init colo.ip=$guest/24"
disks   = [ "path=$work/$side.ext4" ]
nics    = [ "tap=tap0,mac=52:54:00:12:34:56" ]
console = "stdio"
replication_auth = "psk"
replication_psk  = "$work/pair.psk"
CFG
done

say "host A: colo run debian (Debian trixie riscv64, Redis 8 + PostgreSQL 17)"
sed 's/^/   | /' "$work/a.cfg"
started=$(date +%s.%N)
start_colo a /dev/null "$work/host-a.log" run "$work/a.cfg" --cluster corosync
primary_pid=$started_pid
wait_for "$work/host-a.log" "colo-guest: Redis ready" 300 "$primary_pid"
wait_for "$work/host-a.log" "colo-guest: services ready" 300 "$primary_pid"
boot_ready_s=$(python3 -c "import time; print(round(time.time() - $started, 2))")
grep "colo-guest:" "$work/host-a.log" | sed 's/^/   console A | /'
note "the VM's services answered ${boot_ready_s} s after colo run started"
on client pgbench -h "$guest" -U postgres -i -s 1 -q postgres >"$work/pgbench-init.log" 2>&1 ||
    { echo "demo: pgbench -i failed:" >&2; tail -5 "$work/pgbench-init.log" >&2; exit 1; }
note "pgbench's tables created (scale 1: 100,000 accounts), on the VM's disk"

say "host B: colo secondary, waiting for its primary on $host_b:47100"
# Its console input is a FIFO: after the failover, "poweroff" shuts the VM
# down cleanly there.
mkfifo "$work/console-b"
exec 8<>"$work/console-b"
start_colo b "$work/console-b" "$work/host-b.log" secondary --listen "$host_b:47100" "$work/b.cfg" --cluster corosync
secondary_pid=$started_pid
wait_for "$work/host-b.log" "waiting for the primary" 30 "$secondary_pid"

say "host A: colo protect debian $host_b:47100"
on a "$colo" protect debian "$host_b:47100" | sed 's/^/   /'
while checkpoints=$(status_field a checkpoints); [ -z "$checkpoints" ] || [ "$checkpoints" -lt 5 ]; do
    kill -0 "$primary_pid" 2>/dev/null && kill -0 "$secondary_pid" 2>/dev/null ||
        { echo "demo: protection did not start" >&2; tail "$work/host-a.log" "$work/host-b.log" >&2; exit 1; }
    sleep 0.2
done
note "protected: host B holds a copy of the running VM, $checkpoints checkpoints so far"
on a "$colo" status debian --json | python3 -c "
import json, sys
s = json.load(sys.stdin)['replication'].get('disk_sync') or {}
print(f\"   disk: {s.get('bytes_compared', 0) / 2**20:,.0f} MiB compared with host B's copy, \"
      f\"{s.get('chunks_differing', 0)} chunks differed, {s.get('bytes_sent', 0) / 2**20:,.1f} MiB sent\")" || true

say "client: redis-benchmark, pgbench, and writers that record every acknowledged key and commit"
on client redis-cli -h "$guest" SET demo:greeting "hello from the client" | sed 's/^/   redis-cli> /'
on client python3 "$repo/scripts/lib/redis_writer.py" "$guest" 6379 "$work/stop-writer" demo \
    >"$work/writer.json" 2>"$work/writer.err" &
writer_pid=$!; pids+=("$writer_pid")
# redis-benchmark in rounds of 2,000 requests (4 connections) until the
# end, so every round prints its figures; one round runs across the kill.
on client bash -c 'while [ ! -e "$1" ]; do redis-benchmark -h "$2" -t set,get -n 2000 -c 4 -d 64 -r 100000 --csv || echo "round failed: exit $?" >&2; done' \
    _ "$work/stop-benchmark" "$guest" >"$work/benchmark.csv" 2>"$work/benchmark.err" &
benchmark_pid=$!; pids+=("$benchmark_pid")
on client "$repo/scripts/lib/pg_writer.py" write "$guest" "$work/stop-writer" "$work/commits.json" \
    >"$work/pg-writer.json" 2>"$work/pg-writer.err" &
pg_writer_pid=$!; pids+=("$pg_writer_pid")
on client pgbench -h "$guest" -U postgres -c 2 -T "$((load_seconds + 2))" -n postgres \
    >"$work/pgbench.log" 2>&1 &
pgbench_pid=$!; pids+=("$pgbench_pid")
half=$((load_seconds / 2))
for second in $(seq 1 "$half"); do
    sleep 1
    IFS='|' read -r checkpoints downtime_p50_ms matched released < <(status_field a checkpoints downtime_p50_ms \
        compare.released_matched released_total) || true
    note "t=${second}s  checkpoints $checkpoints, downtime p50 $downtime_p50_ms ms; output frames released $released, $matched of them as soon as B's VM sent the same"
done

# One status, so the three figures are of the same moment.
IFS='|' read -r checkpoints downtime_p50_ms downtime_p99_ms \
    < <(status_field a checkpoints downtime_p50_ms downtime_p99_ms) || true
say "host A dies: kill -9 $primary_pid (colo, the primary), in the middle of the workload"
killed_at=$(date +%s.%N)
{ kill -9 "$primary_pid"; wait "$primary_pid"; } 2>/dev/null || true
wait_for "$work/host-b.log" "failed over" 30 "$secondary_pid"
failover_s=$(echo "$(date +%s.%N) - $killed_at" | bc | awk '{printf "%.2f", $1}')
grep -E "cluster: take over|failed over" "$work/host-b.log" | head -2 | sed 's/^/   host B | /'
note "host B took over ${failover_s} s after the kill; the workload goes on against it"
takeover_reason=$(on b "$colo" status debian --json 2>/dev/null | python3 -c "
import json, sys
print(json.load(sys.stdin).get('replication', {}).get('cluster', {}).get('reason', ''))" 2>/dev/null || true)
for second in $(seq "$((half + 1))" "$load_seconds"); do
    sleep 1
    note "t=${second}s  VM on host B: $(status_field b state)"
done

touch "$work/stop-benchmark" "$work/stop-writer"
wait "$benchmark_pid" 2>/dev/null || true
writer_status=0
wait "$writer_pid" || writer_status=$?
wait "$pg_writer_pid" || true
pgbench_status=0
wait "$pgbench_pid" || pgbench_status=$?
greeting=$(on client redis-cli -h "$guest" GET demo:greeting 2>&1 || true)
# pgbench's invariant: every transaction moved the same delta in accounts,
# tellers, branches and history.
balances=$(on client psql -h "$guest" -U postgres -X -A -t -c "SELECT (SELECT sum(abalance) FROM pgbench_accounts) =
    (SELECT sum(bbalance) FROM pgbench_branches) AND (SELECT sum(bbalance) FROM pgbench_branches) =
    (SELECT sum(tbalance) FROM pgbench_tellers) AND (SELECT sum(tbalance) FROM pgbench_tellers) =
    (SELECT coalesce(sum(delta), 0) FROM pgbench_history)" 2>&1 || true)
pgbench_tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.log" | head -1)
pgbench_failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$work/pgbench.log" | head -1)
pgbench_transactions=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgbench.log" | head -1)
read -r commits_acknowledged commits_missing pg_writer_errors pg_gap_ms < <(python3 - "$work/pg-writer.json" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
    print(r["commits_acknowledged"], r["commits_missing"], r["client_errors"], r["service_gap_ms"])
except Exception:
    print(0, 0, 1, 0)
PY
)

say "host B: poweroff on the VM's console; then e2fsck -fn on host B's copy of the disk"
echo poweroff >&8
stopped=0
for _ in $(seq 1 1200); do kill -0 "$secondary_pid" 2>/dev/null || { stopped=1; break; }; sleep 0.1; done
grep "colo-guest:.*\(stopp\|power\)" "$work/host-b.log" | tail -3 | sed 's/^/   console B | /' || true
image_clean=false
if [ "$stopped" -eq 1 ] && e2fsck -fn "$work/b.ext4" >"$work/e2fsck.log" 2>&1; then
    image_clean=true
    note "e2fsck: $(tail -1 "$work/e2fsck.log")"
else
    note "e2fsck: NOT clean (or the VM did not stop): $(tail -2 "$work/e2fsck.log" 2>/dev/null | tr '\n' ' ')"
fi

benchmark_errors=$(grep -ci "error\|reset\|refused\|failed" "$work/benchmark.err" || true)
benchmark_rounds=$(grep -c '^"SET"' "$work/benchmark.csv" || true)
benchmark_rates=$(python3 - "$work/benchmark.csv" <<'PY'
import csv, sys
rates = {}
for row in csv.reader(open(sys.argv[1])):
    if row and row[0] in ("SET", "GET"):
        rates.setdefault(row[0], []).append(float(row[1]))
print(", ".join(f"{name} median {sorted(v)[len(v) // 2]:,.0f} requests/s" for name, v in sorted(rates.items(), reverse=True)) or "no figures")
PY
)
read -r keys_acknowledged keys_missing keys_wrong writer_errors service_gap_ms < <(python3 - "$work/writer.json" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
    print(r["keys_acknowledged"], r["keys_missing"], r["keys_wrong"], r["client_errors"], r["service_gap_ms"])
except Exception:
    print(0, 0, 0, 1, 0)
PY
)
pgbench_errors=$(grep -ci "error\|abort\|terminat" "$work/pgbench.log" || true)
[ "$pgbench_status" -ne 0 ] && pgbench_errors=$((pgbench_errors + 1))
client_errors=$((benchmark_errors + writer_errors + pg_writer_errors + pgbench_errors))

say "summary"
note "boot: the Debian VM served Redis and PostgreSQL ${boot_ready_s} s after colo run"
note "protection: ${checkpoints} checkpoints before the kill, downtime p50 ${downtime_p50_ms} ms, p99 ${downtime_p99_ms} ms"
note "failover: host B took over ${failover_s} s after kill -9 of host A's colo"
note "writer: ${keys_acknowledged} keys acknowledged, ${keys_missing} missing, ${keys_wrong} wrong after the failover;"
note "        longest wait for an acknowledgement ${service_gap_ms} ms (the service gap)"
note "redis-benchmark: ${benchmark_rounds} rounds (${benchmark_rates}), ${benchmark_errors} errors"
note "PostgreSQL: ${commits_acknowledged} commits acknowledged, ${commits_missing} missing in the survivor's database;"
note "        longest wait for a commit ${pg_gap_ms} ms; pgbench: ${pgbench_transactions:-0} transactions, ${pgbench_tps:-0} tps,"
note "        ${pgbench_failed:-?} failed; balances add up: ${balances}"
note "disk: host B's image after poweroff is $([ "$image_clean" = true ] && echo clean || echo NOT clean) (e2fsck -fn)"
note "the key set before protection: '$greeting'"
note "client errors in all: ${client_errors}"
verdict=0
if [ "$client_errors" -eq 0 ] && [ "$keys_missing" -eq 0 ] && [ "$keys_wrong" -eq 0 ] &&
    [ "$keys_acknowledged" -gt 0 ] && [ "$greeting" = "hello from the client" ] &&
    [ "$commits_acknowledged" -gt 0 ] && [ "$commits_missing" -eq 0 ] && [ "$balances" = t ] &&
    [ "$image_clean" = true ]; then
    note "RESULT: the VM survived the death of its host; no client error, no acknowledged write or commit lost,"
    note "        and the survivor's disk is a clean filesystem"
else
    note "RESULT: FAILED (see the logs in $work)"
    [ -s "$work/writer.err" ] && sed 's/^/   writer | /' "$work/writer.err" | head -5
    verdict=1
fi
python3 - <<PY
import json
print(json.dumps({
    "boot_ready_s": $boot_ready_s, "checkpoints": ${checkpoints:-0},
    "downtime_p50_ms": ${downtime_p50_ms:-None}, "downtime_p99_ms": ${downtime_p99_ms:-None},
    "failover_s": $failover_s, "service_gap_ms": $service_gap_ms,
    "cluster": "corosync", "takeover_reason": $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$takeover_reason"),
    "client_errors": $client_errors, "keys_acknowledged": $keys_acknowledged,
    "keys_missing": $keys_missing, "keys_wrong": $keys_wrong,
    "commits_acknowledged": $commits_acknowledged, "commits_missing": $commits_missing,
    "pgbench_tps": ${pgbench_tps:-0}, "pgbench_failed": ${pgbench_failed:-None},
    "pgbench_balances_add_up": $([ "$balances" = t ] && echo True || echo False),
    "image_clean": $([ "$image_clean" = true ] && echo True || echo False),
}))
PY
exit "$verdict"
