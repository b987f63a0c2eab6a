#!/bin/bash
# Debian guest benchmark: colo and qemu-system-riscv64 side by side in one
# run, same kernel, same ext4 image (each machine boots its own sparse copy),
# same kernel command line, same TAP topology in network namespaces (needs
# root):
#
#   client ns: veth0 10.98.0.1 -- veth1 -- br0 -- tapA  (colo run; the primary when protected)
#                                             |-- tapB  (colo secondary)
#                                             \-- tapQ  (qemu-system-riscv64)
#
# Both machines: 512 MiB, one hart, OpenSBI fw_jump, virtio-blk root, a
# virtio-net NIC on a TAP; QEMU is `-M virt -m 512 -smp 1` with
# `-device virtio-rng-device` as well (an entropy source).
#
# 1. Boot: wall time from starting the VM process to the console's
#    "colo-guest: PostgreSQL ready" and "colo-guest: Redis ready" lines,
#    BENCH_BOOTS boots each (alternating), every boot and the median; ro
#    root (the services' state in guest RAM). colo's target: under 2 s.
# 2. Redis: redis-benchmark SET and GET requests/s from the client namespace
#    (-t set,get -n BENCH_REDIS_REQUESTS -c 4 -d 64), ro root: colo
#    unprotected, QEMU, and colo protected (`colo secondary` on tapB in the
#    same hosts namespace, `colo protect NAME 127.0.0.1:PORT` with the
#    default interval and output delay, a few checkpoints, then the same
#    redis-benchmark), with the primary's checkpoints and downtime p50/p99
#    from `colo status NAME --json` ("replication").
# 3. PostgreSQL, rw root on a fresh copy per run: colo unprotected, colo
#    protected (a secondary on tapB over its own copy of the image, the
#    disk replicated), QEMU: `pgbench -i -s BENCH_PGBENCH_SCALE` (wall
#    time), `pgbench -T BENCH_PGBENCH_SECONDS -c 4` (tps), then the
#    synchronous writes: BENCH_DSYNC_WRITES fsync'd 4 KiB writes inside the
#    guest (coreutils dd oflag=dsync, run by PostgreSQL's COPY TO PROGRAM;
#    the mean) and single-row commits for BENCH_COMMIT_SECONDS s
#    (scripts/lib/pg_writer.py; p50 and p99).
# 4. compare (issue 14's comparing proxy), ro root, pgbench -i -s 1 before
#    protect: colo unprotected, protected --mode compare, protected --mode
#    buffered (a fresh secondary each): redis-benchmark -t set,get -n
#    BENCH_COMPARE_REQUESTS -c 1 -d 64 (p50/p99 of SET and GET, from its
#    --csv) and pgbench -S -c 1 -T BENCH_COMPARE_SECONDS (p50/p99 of the
#    transactions' latencies in its --log); for the protected runs the
#    checkpoints during each tool's run per 1,000 requests, the frames
#    released by a match and the differences by cause (`colo status
#    --json`); then compare / unprotected for each p50 (target: at most
#    1.3x) and p99 (at most 2x).
# Every VM is powered off cleanly ("poweroff" on its console).
#
# Usage: bench/run_debian.sh [COLO [KERNEL [IMAGE]]]
#   defaults: build/programs/colo, build/guests/linux/Image,
#   build/guests/debian/root.ext4 (never written: the script copies it).
# Environment: BENCH_BOOTS (3), BENCH_REDIS_REQUESTS (20000),
#   BENCH_PGBENCH_SCALE (10), BENCH_PGBENCH_SECONDS (60),
#   BENCH_CHECKPOINTS (5, before the protected runs), BENCH_DSYNC_WRITES
#   (500), BENCH_COMMIT_SECONDS (10), BENCH_COMPARE_REQUESTS (5000),
#   BENCH_COMPARE_SECONDS (10), BENCH_COMPARE_INTERVAL_MS (colo's default),
#   BENCH_SECTIONS (boot,redis,postgresql,compare:
#   which parts run; compare alone takes about 2-3 minutes),
#   BENCH_BOOT_TIMEOUT (300 s), BENCH_KEEP_LOGS=1 to keep the work directory.
set -uo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.." || exit 2
colo=${1:-build/programs/colo}
kernel=${2:-build/guests/linux/Image}
image=${3:-build/guests/debian/root.ext4}
boots=${BENCH_BOOTS:-3}
redis_requests=${BENCH_REDIS_REQUESTS:-20000}
pgbench_scale=${BENCH_PGBENCH_SCALE:-10}
pgbench_seconds=${BENCH_PGBENCH_SECONDS:-60}
checkpoints_before=${BENCH_CHECKPOINTS:-5}
dsync_writes=${BENCH_DSYNC_WRITES:-500}
commit_seconds=${BENCH_COMMIT_SECONDS:-10}
compare_requests=${BENCH_COMPARE_REQUESTS:-5000}
compare_interval=${BENCH_COMPARE_INTERVAL_MS:-} # empty: colo's default
compare_seconds=${BENCH_COMPARE_SECONDS:-10}
sections=${BENCH_SECTIONS:-boot,redis,postgresql,compare}
boot_target_line=""
has_section() { case ",$sections," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
boot_timeout=${BENCH_BOOT_TIMEOUT:-300}
boot_target=2
guest=10.98.0.2
mac=52:54:00:98:00:02
name=debian-bench
firmware=/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.elf

fail() { echo "run_debian: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || fail "needs root (network namespaces, TAP devices)"
[ -x "$colo" ] || fail "no $colo: build first (ninja -C build)"
[ -f "$kernel" ] || fail "no kernel $kernel: build first (ninja -C build)"
[ -f "$image" ] || fail "no image $image: build first (ninja -C build)"
[ -f "$firmware" ] || fail "no OpenSBI $firmware (apt-get install opensbi)"
for tool in qemu-system-riscv64 redis-benchmark redis-cli psql bc python3; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (scripts/setup.sh)"
done
pgbench=$(command -v pgbench)
for candidate in /usr/lib/postgresql/*/bin/pgbench; do [ -n "$pgbench" ] || [ ! -x "$candidate" ] || pgbench=$candidate; done
[ -n "$pgbench" ] || fail "pgbench is not installed (postgresql-contrib or postgresql-client)"
colo=$(realpath "$colo") kernel=$(realpath "$kernel") image=$(realpath "$image")
# shellcheck source=scripts/lib/netns.sh
source scripts/lib/netns.sh

work=$(mktemp -d /tmp/colo-bench-debian.XXXXXX)
"$colo" keygen psk "$work/pair.psk" --identity debian >/dev/null
hosts_ns=colo-bd$$-hosts client_ns=colo-bd$$-client
problems=0
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
    wait 2>/dev/null
    netns_destroy_topology "$hosts_ns" "$client_ns"
    rm -f "$work"/*.ext4
    if [ "${BENCH_KEEP_LOGS:-0}" = 1 ] || [ "$problems" -gt 0 ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'echo "run_debian: interrupted"; exit 130' INT TERM
problem() { echo "PROBLEM: $*"; problems=$((problems + 1)); }
now() { date +%s.%N; }
on_host() { local run_dir=$1; shift; COLO_RUN_DIR=$run_dir ip netns exec "$hosts_ns" "$@"; }
client() { ip netns exec "$client_ns" "$@"; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

netns_create_topology "$hosts_ns" "$client_ns" 10.98.0.1/24 tapA tapB tapQ ||
    { echo "run_debian: cannot build the network namespaces" >&2; exit 1; }

# The image is copied, never used itself: each machine gets its own sparse
# copy (a rw root writes to it). sync, so that no writeback of the copy
# runs during a timed boot.
copy_image() {  # NAME: a fresh copy at $work/NAME.ext4
    rm -f "$work/$1.ext4"
    cp --sparse=always "$image" "$work/$1.ext4" || { problem "cannot copy $image"; return 1; }
    sync "$work/$1.ext4"
}

cmdline_for() {  # ro|rw
    echo "console=ttyS0 root=/dev/vda $1 init=/sbin/colo-init colo.ip=$guest/24"
}
make_config() {  # TAP DISK ro|rw
    cat <<CFG
name = "$name"
memory = 512
kernel = "$kernel"
cmdline = "$(cmdline_for "$3")"
disks = [ "path=$2" ]
nics = [ "tap=$1,mac=$mac" ]
console = "stdio"
replication_auth = "psk"
replication_psk = "$work/pair.psk"
CFG
}

# Starts a VM in the hosts namespace with its console on a FIFO (for the
# "poweroff" at the end) and its output in a log. Sets vm_pid, vm_log,
# vm_console (the FIFO's file descriptor), vm_started (the wall clock just
# before the process starts), vm_tap.
start_vm() {  # colo|qemu TAG DISK ro|rw
    local machine=$1 tag=$2 disk=$3 mode=$4
    vm_log=$work/$tag.log
    : >"$vm_log"  # exists before the VM's own redirection makes it
    rm -f "$work/$tag.console"; mkfifo "$work/$tag.console"
    exec {vm_console}<>"$work/$tag.console"  # read-write: neither side blocks on open
    if [ "$machine" = colo ]; then
        vm_tap=tapA
        make_config tapA "$disk" "$mode" >"$work/$tag.cfg"
        rm -rf "$work/run-a"; mkdir -p "$work/run-a"
        vm_started=$(now)
        # (not through on_host: $! must be the VM's process, not a subshell's)
        COLO_RUN_DIR=$work/run-a ip netns exec "$hosts_ns" "$colo" run "$work/$tag.cfg" \
            >"$vm_log" 2>&1 <"$work/$tag.console" &
    else
        vm_tap=tapQ
        vm_started=$(now)
        ip netns exec "$hosts_ns" qemu-system-riscv64 -M virt -m 512 -smp 1 -nographic -nodefaults \
            -serial stdio -monitor none -bios "$firmware" \
            -kernel "$kernel" -append "$(cmdline_for "$mode")" \
            -drive "file=$disk,format=raw,if=none,id=d0" -device virtio-blk-device,drive=d0 \
            -netdev tap,id=n0,ifname=tapQ,script=no,downscript=no \
            -device "virtio-net-device,netdev=n0,mac=$mac" \
            -device virtio-rng-device >"$vm_log" 2>&1 <"$work/$tag.console" &
    fi
    vm_pid=$!
    pids+=("$vm_pid")
}

# Waits for both services; sets postgresql_s and redis_s (wall clock from
# the start of the process) and guest_times (what the guest says).
wait_services() {  # WHAT
    local what=$1 t
    postgresql_s="" redis_s=""
    while [ -z "$postgresql_s" ] || [ -z "$redis_s" ]; do
        if [ -z "$postgresql_s" ] && grep -q "colo-guest: PostgreSQL ready" "$vm_log"; then
            t=$(now); postgresql_s=$(echo "$t - $vm_started" | bc)
        fi
        if [ -z "$redis_s" ] && grep -q "colo-guest: Redis ready" "$vm_log"; then
            t=$(now); redis_s=$(echo "$t - $vm_started" | bc)
        fi
        [ -n "$postgresql_s" ] && [ -n "$redis_s" ] && break
        if grep -q "colo-guest: .* failed" "$vm_log"; then
            problem "$what: a service failed"; tail -20 "$vm_log" | sed 's/^/    /'; return 1
        fi
        if ! kill -0 "$vm_pid" 2>/dev/null; then
            problem "$what: the VM exited before its services were ready"; tail -20 "$vm_log" | sed 's/^/    /'; return 1
        fi
        if [ "$(echo "$(now) - $vm_started > $boot_timeout" | bc)" = 1 ]; then
            problem "$what: services not ready within $boot_timeout s"; tail -20 "$vm_log" | sed 's/^/    /'; return 1
        fi
        sleep 0.01
    done
    guest_times="guest: PostgreSQL $(sed -n 's/.*colo-guest: PostgreSQL ready (\([0-9.]*\) s since boot).*/\1/p' "$vm_log" | head -1) s,"
    guest_times+=" Redis $(sed -n 's/.*colo-guest: Redis ready (\([0-9.]*\) s since boot).*/\1/p' "$vm_log" | head -1) s since its boot"
}

# Powers the VM off from its console and waits for its process to end
# (kill -9 after LIMIT seconds).
stop_vm() {  # WHAT [LIMIT]
    local what=$1 limit=${2:-120} started=$SECONDS status
    if kill -0 "$vm_pid" 2>/dev/null; then
        echo poweroff >&"$vm_console"
        while kill -0 "$vm_pid" 2>/dev/null && ((SECONDS - started < limit)); do sleep 0.1; done
        if kill -0 "$vm_pid" 2>/dev/null; then
            problem "$what: no power-off within $limit s"
            kill -9 "$vm_pid" 2>/dev/null
        fi
    fi
    wait "$vm_pid" 2>/dev/null; status=$?
    [ "$status" = 0 ] || problem "$what: the VM process exited with status $status"
    exec {vm_console}>&-
    # The next VM has the same MAC on another TAP.
    ip -n "$hosts_ns" link set dev "$vm_tap" type bridge_slave flush 2>/dev/null
    ip -n "$client_ns" neigh flush dev veth0 2>/dev/null
    return 0
}

wait_reachable() {  # WHAT: Redis and PostgreSQL answer from the client namespace
    local started=$SECONDS
    until client redis-cli -h "$guest" ping >/dev/null 2>&1 &&
        client psql -h "$guest" -U postgres -Atc "select 1" >/dev/null 2>&1; do
        ((SECONDS - started > 60)) && { problem "$1: the services do not answer from the client namespace"; return 1; }
        sleep 0.2
    done
}

# redis-benchmark SET and GET: prints "SET GET" requests/s.
redis_bench() {  # WHAT
    local csv
    csv=$(client timeout 600 redis-benchmark -h "$guest" -p 6379 -t set,get -n "$redis_requests" -c 4 -d 64 --csv 2>&1) ||
        { problem "$1: redis-benchmark failed: $(echo "$csv" | tail -2)"; return 1; }
    python3 - "$csv" <<'PY'
import csv, io, sys
rates = {row[0]: float(row[1]) for row in csv.reader(io.StringIO(sys.argv[1])) if len(row) > 1 and row[0] in ("SET", "GET")}
print(f"{rates['SET']:.0f} {rates['GET']:.0f}")
PY
}

replication_field() {  # FIELD: the primary's "replication" FIELD from colo status --json
    on_host "$work/run-a" "$colo" status "$name" --json 2>/dev/null |
        python3 -c "import json,sys; print(json.load(sys.stdin)['replication']['$1'])" 2>/dev/null
}

declare -A result
result_line() {  # KEY VALUE LINE: keeps VALUE for the summary, prints LINE
    result[$1]=$2
    echo "$3"
}

echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u '+%F %T UTC'); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "qemu: $(qemu-system-riscv64 --version | head -1)"
echo "colo: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo ' (modified)') $colo"
echo "kernel: $kernel; image: $image"
echo "clients: $(redis-benchmark --version | head -1); $("$pgbench" --version)"
echo

copy_image colo || exit 1
copy_image qemu || exit 1

# ---- 1. boot ----------------------------------------------------------------
if has_section boot; then
echo "== boot to 'PostgreSQL ready' and 'Redis ready' (wall clock from starting the VM process; ro root)"
declare -A boot_postgresql boot_redis
for round in $(seq 1 "$boots"); do
    for machine in colo qemu; do
        start_vm "$machine" "boot-$machine-$round" "$work/$machine.ext4" ro
        if wait_services "boot $machine #$round"; then
            boot_postgresql[$machine]+="$postgresql_s "
            boot_redis[$machine]+="$redis_s "
            printf 'boot %-4s #%d: PostgreSQL ready %7.3f s, Redis ready %7.3f s (%s)\n' \
                "$machine" "$round" "$postgresql_s" "$redis_s" "$guest_times"
        fi
        stop_vm "boot $machine #$round"
    done
done
for machine in colo qemu; do
    # shellcheck disable=SC2086 # the lists are words
    result[boot_postgresql_$machine]=$(median ${boot_postgresql[$machine]:-})
    # shellcheck disable=SC2086
    result[boot_redis_$machine]=$(median ${boot_redis[$machine]:-})
    echo "boot $machine median of $boots: PostgreSQL ready ${result[boot_postgresql_$machine]} s, Redis ready ${result[boot_redis_$machine]} s"
done
boot_target_line="colo boot to both services (median): target under $boot_target s: "
if [ "${result[boot_postgresql_colo]}" = - ] || [ "${result[boot_redis_colo]}" = - ]; then
    boot_target_line+="not measured"
elif [ "$(echo "${result[boot_postgresql_colo]} < $boot_target && ${result[boot_redis_colo]} < $boot_target" | bc)" = 1 ]; then
    boot_target_line+="met"
else
    boot_target_line+="NOT met"
fi
echo "$boot_target_line"
echo
fi

# ---- 2. Redis -----------------------------------------------------------------
if has_section redis; then
echo "== Redis: redis-benchmark -t set,get -n $redis_requests -c 4 -d 64 (requests/s; ro root, state in guest RAM)"
port=$((47400 + $$ % 500))
copy_image secondary || exit 1
# colo: unprotected, then protected by a secondary on tapB.
start_vm colo redis-colo "$work/colo.ext4" ro
if wait_services "redis colo" && wait_reachable "redis colo" && rates=$(redis_bench "colo unprotected"); then
    read -r set_rate get_rate <<<"$rates"
    result[redis_set_colo]=$set_rate result[redis_get_colo]=$get_rate
    echo "redis colo unprotected: SET $set_rate/s GET $get_rate/s"
fi
if kill -0 "$vm_pid" 2>/dev/null; then
    make_config tapB "$work/secondary.ext4" ro >"$work/secondary.cfg"
    rm -rf "$work/run-b"; mkdir -p "$work/run-b"
    COLO_RUN_DIR=$work/run-b ip netns exec "$hosts_ns" "$colo" secondary --listen "127.0.0.1:$port" "$work/secondary.cfg" \
        >"$work/secondary.log" 2>&1 </dev/null &
    secondary_pid=$!; pids+=("$secondary_pid")
    started=$SECONDS
    until grep -q "waiting for the primary" "$work/secondary.log"; do
        if ! kill -0 "$secondary_pid" 2>/dev/null || ((SECONDS - started >= 60)); then break; fi
        sleep 0.05
    done
    if ! grep -q "waiting for the primary" "$work/secondary.log"; then
        problem "colo secondary did not start"; tail -20 "$work/secondary.log" | sed 's/^/    /'
    elif ! on_host "$work/run-a" "$colo" protect "$name" "127.0.0.1:$port" >"$work/protect.log" 2>&1; then
        problem "colo protect: $(cat "$work/protect.log")"
    else
        started=$SECONDS
        until [ "$(replication_field checkpoints)" -ge "$checkpoints_before" ] 2>/dev/null; do
            ((SECONDS - started > 120)) && break
            sleep 0.1
        done
        checkpoints_start=$(replication_field checkpoints)
        if [ "${checkpoints_start:-0}" -lt "$checkpoints_before" ] 2>/dev/null || [ -z "$checkpoints_start" ]; then
            problem "colo protected: fewer than $checkpoints_before checkpoints within 120 s (state $(replication_field state))"
        elif rates=$(redis_bench "colo protected"); then
            read -r set_rate get_rate <<<"$rates"
            state=$(replication_field state) checkpoints=$(replication_field checkpoints)
            p50=$(replication_field downtime_p50_ms) p99=$(replication_field downtime_p99_ms)
            result[redis_set_protected]=$set_rate result[redis_get_protected]=$get_rate
            result[checkpoints]=$checkpoints result[downtime]="$p50 / $p99"
            echo "redis colo protected: SET $set_rate/s GET $get_rate/s;" \
                "primary: $checkpoints checkpoints ($((checkpoints - checkpoints_start)) during redis-benchmark)," \
                "downtime p50 $p50 ms p99 $p99 ms, state $state"
            [ "$state" = unprotected ] && problem "colo protected: the primary lost its secondary"
        fi
    fi
    # The secondary first, so that it does not take over when the primary powers off.
    kill -9 "$secondary_pid" 2>/dev/null; wait "$secondary_pid" 2>/dev/null
    ip -n "$hosts_ns" link set dev tapB type bridge_slave flush 2>/dev/null
fi
stop_vm "redis colo"
rm -f "$work/secondary.ext4"
start_vm qemu redis-qemu "$work/qemu.ext4" ro
if wait_services "redis qemu" && wait_reachable "redis qemu" && rates=$(redis_bench "qemu"); then
    read -r set_rate get_rate <<<"$rates"
    result[redis_set_qemu]=$set_rate result[redis_get_qemu]=$get_rate
    echo "redis qemu: SET $set_rate/s GET $get_rate/s"
fi
stop_vm "redis qemu"
echo
fi

# ---- 3. PostgreSQL ------------------------------------------------------------
if has_section postgresql; then
echo "== PostgreSQL: pgbench -i -s $pgbench_scale (wall time), pgbench -T $pgbench_seconds -c 4 (tps), then the"
echo "   synchronous writes: $dsync_writes fsync'd 4 KiB writes in the guest (dd oflag=dsync, mean) and"
echo "   single-row commits for $commit_seconds s (scripts/lib/pg_writer.py, p50/p99); rw root, a fresh copy each;"
echo "   colo unprotected, colo protected (its disk replicated to a secondary with its own copy), QEMU"

# Protects the colo VM with a secondary on tapB over its own copy of the
# image; waits for the disk sync and a few checkpoints.
protect_vm() {  # WHAT
    copy_image secondary-rw || return 1
    make_config tapB "$work/secondary-rw.ext4" rw >"$work/secondary-rw.cfg"
    rm -rf "$work/run-b"; mkdir -p "$work/run-b"
    COLO_RUN_DIR=$work/run-b ip netns exec "$hosts_ns" "$colo" secondary --listen "127.0.0.1:$port" \
        "$work/secondary-rw.cfg" >"$work/secondary-rw.log" 2>&1 </dev/null &
    secondary_pid=$!; pids+=("$secondary_pid")
    local started=$SECONDS
    until grep -q "waiting for the primary" "$work/secondary-rw.log"; do
        if ! kill -0 "$secondary_pid" 2>/dev/null || ((SECONDS - started >= 60)); then
            problem "$1: colo secondary did not start"; return 1
        fi
        sleep 0.05
    done
    on_host "$work/run-a" "$colo" protect "$name" "127.0.0.1:$port" >"$work/protect-rw.log" 2>&1 ||
        { problem "$1: colo protect: $(cat "$work/protect-rw.log")"; return 1; }
    started=$SECONDS
    until [ "$(replication_field checkpoints)" -ge "$checkpoints_before" ] 2>/dev/null; do
        ((SECONDS - started > 300)) && { problem "$1: no checkpoints within 300 s"; return 1; }
        sleep 0.1
    done
    sync_line=$(on_host "$work/run-a" "$colo" status "$name" --json | python3 -c "
import json, sys
s = json.load(sys.stdin)['replication']['disk_sync']
print(f\"disk sync: {s['bytes_compared'] / 2**20:.0f} MiB compared, {s['chunks_differing']} chunks differed, \"
      f\"{s['bytes_sent'] / 2**20:.1f} MiB sent\")")
    echo "pgbench colo protected: $sync_line"
}

pg_measure() {  # MACHINE KEY
    local machine=$1 key=$2 started
    started=$(now)
    client "$pgbench" -h "$guest" -U postgres -i -s "$pgbench_scale" postgres >"$work/pgbench-init-$key.out" 2>&1 ||
        { problem "pgbench -i $key failed: $(tail -3 "$work/pgbench-init-$key.out")"; return 1; }
    result[pgbench_init_$key]=$(printf '%.2f' "$(echo "$(now) - $started" | bc)")
    client "$pgbench" -h "$guest" -U postgres -T "$pgbench_seconds" -c 4 postgres >"$work/pgbench-run-$key.out" 2>&1 ||
        { problem "pgbench $key failed: $(tail -3 "$work/pgbench-run-$key.out")"; return 1; }
    local tps transactions latency
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$work/pgbench-run-$key.out")
    [ -n "$tps" ] || tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench-run-$key.out" | tail -1)
    result[pgbench_tps_$key]=$(printf '%.1f' "$tps")
    transactions=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgbench-run-$key.out")
    latency=$(sed -n 's/^latency average = \(.*\)$/\1/p' "$work/pgbench-run-$key.out")
    echo "pgbench $key: init -s $pgbench_scale ${result[pgbench_init_$key]} s; -T $pgbench_seconds -c 4: ${result[pgbench_tps_$key]} tps ($transactions transactions, latency average $latency)"
    # fsync'd 4 KiB writes inside the guest: dd as the postgres user
    # (COPY ... TO PROGRAM), into PostgreSQL's own filesystem.
    local out seconds
    client psql -h "$guest" -U postgres -X -q -Atc "COPY (SELECT 1) TO PROGRAM 'dd if=/dev/zero of=/var/lib/postgresql/dsync.test bs=4k count=$dsync_writes oflag=dsync 2>/var/lib/postgresql/dsync.out; rm -f /var/lib/postgresql/dsync.test'" \
        >/dev/null 2>&1 &&
        out=$(client psql -h "$guest" -U postgres -X -Atc "SELECT pg_read_file('/var/lib/postgresql/dsync.out')" 2>&1) ||
        { problem "dsync writes $key failed: $out"; return 1; }
    seconds=$(echo "$out" | sed -n 's/.* copied, \([0-9.]*\) s,.*/\1/p' | tail -1)
    if [ -n "$seconds" ]; then
        result[dsync_$key]=$(printf '%.3f' "$(echo "$seconds * 1000 / $dsync_writes" | bc -l)")
        echo "fsync'd 4 KiB writes $key: $dsync_writes in $seconds s, mean ${result[dsync_$key]} ms"
    else
        problem "dsync writes $key: no figure in '$out'"
    fi
    rm -f "$work/stop-writer"
    (sleep "$commit_seconds"; touch "$work/stop-writer") &
    out=$(client scripts/lib/pg_writer.py write "$guest" "$work/stop-writer" "$work/commits-$key.json" 2>&1 | tail -1)
    result[commit_$key]=$(echo "$out" | python3 -c "import json,sys; r=json.load(sys.stdin); print(f\"{r['latency_p50_ms']} / {r['latency_p99_ms']}\")" 2>/dev/null || echo -)
    echo "single-row commits $key: $out"
}

port=$((47400 + $$ % 500 + 1))
for run in colo colo-protected qemu; do
    machine=${run%-protected}
    rm -f "$work/$machine.ext4"
    copy_image "$run-rw" || continue
    start_vm "$machine" "pgbench-$run" "$work/$run-rw.ext4" rw
    if wait_services "pgbench $run" && wait_reachable "pgbench $run" &&
        { [ "$run" != colo-protected ] || protect_vm "pgbench $run"; }; then
        pg_measure "$machine" "$run"
        if [ "$run" = colo-protected ]; then
            state=$(replication_field state)
            echo "pgbench colo protected: primary $(replication_field checkpoints) checkpoints, downtime p50 $(replication_field downtime_p50_ms) ms p99 $(replication_field downtime_p99_ms) ms, state $state"
            [ "$state" = unprotected ] && problem "pgbench colo protected: the primary lost its secondary"
        fi
    fi
    if [ "$run" = colo-protected ] && [ -n "${secondary_pid:-}" ]; then
        kill -9 "$secondary_pid" 2>/dev/null; wait "$secondary_pid" 2>/dev/null
        ip -n "$hosts_ns" link set dev tapB type bridge_slave flush 2>/dev/null
        rm -f "$work/secondary-rw.ext4"
    fi
    stop_vm "pgbench $run" 300
    rm -f "$work/$run-rw.ext4"
done
ratio() { python3 -c "a, b = '${result[$1]:-}', '${result[$2]:-}'; print(f'{float(a) / float(b) * 100:.0f} %' if a not in ('', '-') and b not in ('', '-') else '-')"; }
echo "pgbench protected / unprotected: $(ratio pgbench_tps_colo-protected pgbench_tps_colo) of the tps (target: at least 70 %);" \
    "fsync'd write latency protected / unprotected: $(ratio dsync_colo-protected dsync_colo) (target: at most 150 %)"
echo
fi

# ---- 4. compare ---------------------------------------------------------------
if has_section compare; then
echo "== compare: request latency under the comparing proxy (issue 14); ro root, state in guest RAM; colo"
echo "   unprotected, protected --mode compare, protected --mode buffered (a fresh secondary each):"
echo "   redis-benchmark -t set,get -n $compare_requests -c 1 -d 64 (p50/p99 of each), then pgbench -S -c 1"
echo "   -T $compare_seconds after pgbench -i -s 1 (run before protect; p50/p99 from --log's per-transaction latency);"
echo "   the primary's checkpoints during each tool's run per 1,000 requests (redis: 2 x $compare_requests; pgbench:"
echo "   its transactions) and, in compare mode, the frames released by a match and the differences by cause"
port=$((47400 + $$ % 500 + 2))

# Sets compare_redis to "SET_p50 SET_p99 GET_p50 GET_p99" (ms): one
# connection, one request at a time; redis-benchmark 7's --csv has the
# percentiles ("test","rps","avg_latency_ms","min_latency_ms",
# "p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms").
compare_redis_latency() {  # WHAT
    local csv
    csv=$(client timeout 900 redis-benchmark -h "$guest" -p 6379 -t set,get -n "$compare_requests" -c 1 -d 64 --csv 2>&1) ||
        { problem "$1: redis-benchmark failed: $(echo "$csv" | tail -2)"; return 1; }
    compare_redis=$(python3 - "$csv" <<'PY'
import csv, io, sys
rows = list(csv.reader(io.StringIO(sys.argv[1])))
header = next(r for r in rows if r and r[0] == "test")
p50, p99 = header.index("p50_latency_ms"), header.index("p99_latency_ms")
got = {r[0]: r for r in rows if r and r[0] in ("SET", "GET")}
print(" ".join(f"{float(got[t][c]):.3f}" for t in ("SET", "GET") for c in (p50, p99)))
PY
) || { problem "$1: no SET/GET percentiles in redis-benchmark's output: $(echo "$csv" | head -3 | tr '\n' '|')"; return 1; }
}

# Sets compare_pg to "p50 p99 TRANSACTIONS" (ms): pgbench -S, one client,
# each transaction's latency from its log (3rd column, µs).
compare_pg_latency() {  # WHAT KEY
    rm -f "$work/pglog-$2".*
    client timeout $((compare_seconds + 120)) "$pgbench" -h "$guest" -U postgres -n -S -c 1 -T "$compare_seconds" \
        --log --log-prefix="$work/pglog-$2" postgres >"$work/pgbench-S-$2.out" 2>&1 ||
        { problem "$1: pgbench -S failed: $(tail -3 "$work/pgbench-S-$2.out")"; return 1; }
    compare_pg=$(python3 - "$work/pglog-$2" <<'PY'
import glob, sys
lat = sorted(int(line.split()[2]) for f in glob.glob(sys.argv[1] + ".*") for line in open(f) if line.strip())
rank = lambda p: lat[min(len(lat) - 1, max(0, -(-p * len(lat) // 100) - 1))]
print(f"{rank(50) / 1000:.3f} {rank(99) / 1000:.3f} {len(lat)}")
PY
) || { problem "$1: no transactions in pgbench's log"; return 1; }
}

compare_status() {  # the primary's "replication" status, JSON ({} unprotected)
    on_host "$work/run-a" "$colo" status "$name" --json 2>/dev/null |
        python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin).get('replication') or {}))" 2>/dev/null || echo '{}'
}

# What the primary did between two status snapshots, per 1,000 requests.
compare_during() {  # BEFORE AFTER REQUESTS: "N.N checkpoints/1000; ..."
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
before, after, requests = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
d = lambda a, b, k: a.get(k, 0) - b.get(k, 0)
out = f"{d(after, before, 'checkpoints') * 1000 / max(requests, 1):.1f} checkpoints/1000"
out += f" ({d(after, before, 'checkpoints')} for {requests} requests)"
ca, cb = after.get("compare"), before.get("compare") or {}
if ca:
    was = cb.get("differences") or {}
    differences = ", ".join(f"{k} {v - was.get(k, 0)}" for k, v in ca["differences"].items())
    out += (f"; released by a match {d(ca, cb, 'released_matched')} of {d(after, before, 'released_total')} frames;"
            f" differences: {differences}; checkpoints by difference {d(ca, cb, 'checkpoints_by_difference')},"
            f" storms {d(ca, cb, 'storms')}, mode now {ca['mode_now']}")
print(out)
PY
}

# Starts a secondary on tapB over a fresh copy of the image and protects
# the colo VM in MODE; waits for a few checkpoints.
compare_protect() {  # MODE
    copy_image secondary || return 1
    make_config tapB "$work/secondary.ext4" ro >"$work/secondary.cfg"
    rm -rf "$work/run-b"; mkdir -p "$work/run-b"
    : >"$work/secondary-$1.log"  # exists before the secondary's own redirection makes it
    COLO_RUN_DIR=$work/run-b ip netns exec "$hosts_ns" "$colo" secondary --listen "127.0.0.1:$port" "$work/secondary.cfg" \
        >"$work/secondary-$1.log" 2>&1 </dev/null &
    secondary_pid=$!; pids+=("$secondary_pid")
    local started=$SECONDS
    until grep -q "waiting for the primary" "$work/secondary-$1.log"; do
        if ! kill -0 "$secondary_pid" 2>/dev/null || ((SECONDS - started >= 60)); then
            problem "compare $1: colo secondary did not start"; tail -20 "$work/secondary-$1.log" | sed 's/^/    /'; return 1
        fi
        sleep 0.05
    done
    # shellcheck disable=SC2086 # the interval, when given, is two words
    on_host "$work/run-a" "$colo" protect "$name" "127.0.0.1:$port" --mode "$1" \
        ${compare_interval:+--interval $compare_interval} >"$work/protect-$1.log" 2>&1 ||
        { problem "compare $1: colo protect: $(cat "$work/protect-$1.log")"; return 1; }
    started=$SECONDS
    until [ "$(replication_field checkpoints)" -ge "$checkpoints_before" ] 2>/dev/null; do
        ((SECONDS - started > 120)) && { problem "compare $1: fewer than $checkpoints_before checkpoints within 120 s"; return 1; }
        sleep 0.1
    done
    local output_mode
    output_mode=$(replication_field output_mode)
    [ "$output_mode" = "$1" ] || { problem "compare $1: status says output_mode '$output_mode'"; return 1; }
}

for config in unprotected compare buffered; do
    secondary_pid=""
    start_vm colo "compare-$config" "$work/colo.ext4" ro
    if wait_services "compare $config" && wait_reachable "compare $config" &&
        client "$pgbench" -h "$guest" -U postgres -i -s 1 postgres >"$work/pgbench-init-compare-$config.out" 2>&1 &&
        { [ "$config" = unprotected ] || compare_protect "$config"; }; then
        before=$(compare_status)
        if compare_redis_latency "compare $config"; then
            after_redis=$(compare_status)
            read -r set50 set99 get50 get99 <<<"$compare_redis"
            result[cmp_set_$config]="$set50 / $set99" result[cmp_get_$config]="$get50 / $get99"
            result[cmp_set50_$config]=$set50 result[cmp_set99_$config]=$set99
            result[cmp_get50_$config]=$get50 result[cmp_get99_$config]=$get99
            line="compare $config: redis SET p50 $set50 ms p99 $set99 ms, GET p50 $get50 ms p99 $get99 ms"
            if [ "$config" != unprotected ]; then
                during=$(compare_during "$before" "$after_redis" $((compare_requests * 2)))
                result[cmp_ckpt_redis_$config]=${during%% *}
                line+="; $during"
            fi
            echo "$line"
            if compare_pg_latency "compare $config" "$config"; then
                after_pg=$(compare_status)
                read -r pg50 pg99 transactions <<<"$compare_pg"
                result[cmp_pg_$config]="$pg50 / $pg99"
                result[cmp_pg50_$config]=$pg50 result[cmp_pg99_$config]=$pg99
                line="compare $config: pgbench -S p50 $pg50 ms p99 $pg99 ms ($transactions transactions)"
                if [ "$config" != unprotected ]; then
                    during=$(compare_during "$after_redis" "$after_pg" "$transactions")
                    result[cmp_ckpt_pg_$config]=${during%% *}
                    line+="; $during"
                fi
                echo "$line"
            fi
            if [ "$config" != unprotected ]; then
                state=$(replication_field state)
                echo "compare $config: the primary's replication status at the end: $(compare_status | python3 -c "
import json, sys
r = json.load(sys.stdin)
keep = {k: r.get(k) for k in ('state', 'output_mode', 'checkpoints', 'released_total', 'held_dropped', 'downtime_p50_ms', 'downtime_p99_ms')}
c = r.get('compare')
if c:
    keep['compare'] = {k: c.get(k) for k in ('mode_now', 'reason', 'released_matched', 'differences', 'checkpoints_by_difference', 'storms', 'dropped')}
print(json.dumps(keep))")"
                [ "$state" = unprotected ] && problem "compare $config: the primary lost its secondary"
            fi
        fi
    elif [ -f "$work/pgbench-init-compare-$config.out" ] && ! grep -q "^done in" "$work/pgbench-init-compare-$config.out"; then
        problem "compare $config: pgbench -i: $(tail -3 "$work/pgbench-init-compare-$config.out")"
    fi
    if [ -n "$secondary_pid" ]; then
        # The secondary first, so that it does not take over when the primary powers off.
        kill -9 "$secondary_pid" 2>/dev/null; wait "$secondary_pid" 2>/dev/null
        ip -n "$hosts_ns" link set dev tapB type bridge_slave flush 2>/dev/null
        rm -f "$work/secondary.ext4"
    fi
    stop_vm "compare $config"
done

cmp_ratio() {  # KEY: compare / unprotected
    python3 -c "a, b = '${result[${1}_compare]:-}', '${result[${1}_unprotected]:-}'; print(f'{float(a) / float(b):.2f}x' if a and b and float(b) > 0 else '-')"
}
cmp_target() {  # KEY LIMIT: met / NOT met
    python3 -c "
a, b = '${result[${1}_compare]:-}', '${result[${1}_unprotected]:-}'
print('not measured' if not (a and b and float(b) > 0) else 'met' if float(a) / float(b) <= $2 else 'NOT met')"
}
echo
printf '| %-13s | %17s | %17s | %18s | %16s | %17s |\n' configuration "SET p50/p99 (ms)" "GET p50/p99 (ms)" \
    "pgbench -S p50/p99" "ckpt/1000 redis" "ckpt/1000 pgbench"
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..15})" "$(printf -- '-%.0s' {1..19})" "$(printf -- '-%.0s' {1..19})" \
    "$(printf -- '-%.0s' {1..20})" "$(printf -- '-%.0s' {1..18})" "$(printf -- '-%.0s' {1..19})"
for config in unprotected compare buffered; do
    printf '| %-13s | %17s | %17s | %18s | %16s | %17s |\n' "$config" "${result[cmp_set_$config]:--}" \
        "${result[cmp_get_$config]:--}" "${result[cmp_pg_$config]:--}" "${result[cmp_ckpt_redis_$config]:--}" \
        "${result[cmp_ckpt_pg_$config]:--}"
done
echo
compare_target_line="compare / unprotected (targets: p50 at most 1.3x, p99 at most 2x):"
for what in set get pg; do
    case $what in set) label="Redis SET" ;; get) label="Redis GET" ;; pg) label="pgbench -S" ;; esac
    line="  $label: p50 $(cmp_ratio "cmp_${what}50") ($(cmp_target "cmp_${what}50" 1.3)), p99 $(cmp_ratio "cmp_${what}99") ($(cmp_target "cmp_${what}99" 2))"
    compare_target_line+=$'\n'"$line"
done
echo "$compare_target_line"
echo
fi

# ---- summary ------------------------------------------------------------------
value() { echo "${result[$1]:--}"; }
echo "== summary ($(date -u '+%F %T UTC'), load $(cut -d' ' -f1-3 /proc/loadavg))"
if has_section boot || has_section redis || has_section postgresql; then
printf '| %-44s | %12s | %12s | %14s |\n' measurement colo qemu "colo protected"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..16})"
row() { printf '| %-44s | %12s | %12s | %14s |\n' "$1" "$2" "$3" "$4"; }
row "boot to PostgreSQL ready, median of $boots (s)" "$(value boot_postgresql_colo)" "$(value boot_postgresql_qemu)" ""
row "boot to Redis ready, median of $boots (s)" "$(value boot_redis_colo)" "$(value boot_redis_qemu)" ""
row "Redis SET (requests/s)" "$(value redis_set_colo)" "$(value redis_set_qemu)" "$(value redis_set_protected)"
row "Redis GET (requests/s)" "$(value redis_get_colo)" "$(value redis_get_qemu)" "$(value redis_get_protected)"
row "checkpoints (primary, total)" "" "" "$(value checkpoints)"
row "checkpoint downtime p50 / p99 (ms)" "" "" "$(value downtime)"
row "pgbench -i -s $pgbench_scale (s)" "$(value pgbench_init_colo)" "$(value pgbench_init_qemu)" "$(value pgbench_init_colo-protected)"
row "pgbench -T $pgbench_seconds -c 4 (tps)" "$(value pgbench_tps_colo)" "$(value pgbench_tps_qemu)" "$(value pgbench_tps_colo-protected)"
row "fsync'd 4 KiB write, mean of $dsync_writes (ms)" "$(value dsync_colo)" "$(value dsync_qemu)" "$(value dsync_colo-protected)"
row "single-row commit p50 / p99 (ms)" "$(value commit_colo)" "$(value commit_qemu)" "$(value commit_colo-protected)"
fi
[ -z "$boot_target_line" ] || echo "$boot_target_line"
[ -z "${compare_target_line:-}" ] || echo "$compare_target_line"
if [ "$problems" -gt 0 ]; then
    echo "$problems problem(s), see above"
    exit 1
fi
