# Shared by bench/run_replication.sh and bench/run_compare.sh: checks the
# build, makes the namespaces (client ns -- br0 -- tapA/tapB in the hosts
# ns), the two VMs' configs and the pair's life: start_pair TAG, protect
# INTERVAL [OPTIONS], churn RATE, stop_all; problem/record/json_add for the
# results; cleanup on exit. The caller sets: bench (its name), colo,
# guest_dir, helper, guest (the VM's address), boot_timeout, and sources
# this from the repository's root.
[ "$(id -u)" -eq 0 ] || { echo "$bench: needs root (network namespaces)" >&2; exit 2; }
[ -x "$colo" ] || { echo "$bench: no $colo: build first (ninja -C build)" >&2; exit 2; }
[ -f "$guest_dir/Image" ] || { echo "$bench: no $guest_dir/Image: build first (ninja -C build)" >&2; exit 2; }
colo=$(realpath "$colo") guest_dir=$(realpath "$guest_dir")
source scripts/lib/netns.sh

work=$(mktemp -d /tmp/colo-bench-$bench.XXXXXX)
hosts_ns=colo-b$$-hosts client_ns=colo-b$$-client
hosts2_ns=colo-b$$-hosts2 client2_ns=colo-b$$-client2 # start_second_vm's
results=$work/results.jsonl
problems=0
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
    wait 2>/dev/null
    netns_destroy_topology "$hosts_ns" "$client_ns"
    netns_destroy_topology "$hosts2_ns" "$client2_ns"
    rm -f "$work"/*.img
    if [ "${REP_KEEP_LOGS:-0}" = 1 ] || [ "$problems" -gt 0 ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'echo "$bench: interrupted"; exit 130' INT TERM
problem() { echo "PROBLEM: $*"; problems=$((problems + 1)); }
load() { cut -d' ' -f1-3 /proc/loadavg; }
record() { echo "$1" >>"$results"; }
json_add() {  # JSON KEY=VALUE...: the object with the pairs added (numbers stay numbers)
    python3 - "$@" <<'PY'
import json, sys
out = json.loads(sys.argv[1])
for pair in sys.argv[2:]:
    key, _, value = pair.partition("=")
    try:
        out[key] = json.loads(value)
    except ValueError:
        out[key] = value
print(json.dumps(out))
PY
}

netns_create_topology "$hosts_ns" "$client_ns" 10.96.0.1/24 tapA tapB || { echo "cannot build the namespaces"; exit 1; }
make_config() {  # TAP DISK
    cat <<CFG
name = "repbench"
memory = 256
kernel = "$guest_dir/Image"
initrd = "$guest_dir/initramfs.cpio"
cmdline = "console=ttyS0 colo.ip=$guest/24"
disks = [ "path=$2" ]
nics = [ "tap=$1,mac=52:54:00:96:00:02" ]
console = "stdio"
replication_auth = "$rep_auth"
CFG
    [ "$rep_auth" = psk ] && echo "replication_psk = \"$work/pair.psk\""
}
rep_auth=${REP_AUTH:-psk}
"$colo" keygen psk "$work/pair.psk" --identity repbench >/dev/null
make_config tapA "$work/diskA.img" >"$work/a.cfg"
make_config tapB "$work/diskB.img" >"$work/b.cfg"
# REP_PIN=1: a core per "host", as if the secondary had a machine of its
# own: the primary (or the unprotected VM) and the client on CPU 0, the
# secondary on CPU 1 (the threads inherit it). Unset: the scheduler's.
pin_primary=() pin_secondary=()
if [ "${REP_PIN:-0}" = 1 ]; then
    [ "$(nproc)" -ge 2 ] || { echo "$bench: REP_PIN=1 needs 2 CPUs" >&2; exit 2; }
    pin_primary=(taskset -c 0) pin_secondary=(taskset -c 1)
fi
on_host() { local run_dir=$1; shift; COLO_RUN_DIR=$run_dir ip netns exec "$hosts_ns" "$@"; }
client() { ip netns exec "$client_ns" "${pin_primary[@]}" "$@"; }

wait_for() {  # LOG TEXT WHAT PID [LIMIT]
    local started=$SECONDS limit=${5:-$boot_timeout}
    while ! grep -q "$2" "$1" 2>/dev/null; do
        kill -0 "$4" 2>/dev/null || { problem "$3: process exited"; tail -20 "$1" | sed 's/^/    /'; return 1; }
        ((SECONDS - started > limit)) && { problem "$3: no '$2' within $limit s"; tail -20 "$1" | sed 's/^/    /'; return 1; }
        sleep 0.02
    done
}

stop_all() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    pids=()
    for dev in tapA tapB veth1; do ip -n "$hosts_ns" link set dev "$dev" type bridge_slave flush 2>/dev/null; done
    ip -n "$client_ns" neigh flush dev veth0 2>/dev/null
}

port=47300
# Boots the VM on A, starts the secondary on B; sets primary_pid,
# secondary_pid and tag (the logs' prefix).
start_pair() {  # TAG
    tag=$1
    stop_all
    rm -rf "$work/A" "$work/B"; mkdir -p "$work/A" "$work/B"
    rm -f "$work"/disk*.img; truncate -s 16M "$work/diskA.img" "$work/diskB.img"
    port=$((port + 1))
    COLO_RUN_DIR=$work/A ip netns exec "$hosts_ns" "${pin_primary[@]}" "$colo" run "$work/a.cfg" \
        >"$work/$tag-primary.log" 2>&1 </dev/null &
    primary_pid=$!; pids+=("$primary_pid")
    local timeout_option=()
    [ -n "${REP_HEARTBEAT_TIMEOUT_MS:-}" ] && timeout_option=(--heartbeat-timeout "$REP_HEARTBEAT_TIMEOUT_MS")
    COLO_RUN_DIR=$work/B ip netns exec "$hosts_ns" "${pin_secondary[@]}" "$colo" secondary --listen "127.0.0.1:$port" \
        "${timeout_option[@]}" \
        "$work/b.cfg" >"$work/$tag-secondary.log" 2>&1 </dev/null &
    secondary_pid=$!; pids+=("$secondary_pid")
    wait_for "$work/$tag-primary.log" "colo-guest: services ready" "boot ($tag)" "$primary_pid" || return 1
    wait_for "$work/$tag-secondary.log" "waiting for the primary" "secondary ($tag)" "$secondary_pid" || return 1
}

protect() {  # INTERVAL_MS [PROTECT OPTIONS...]: protect and follow the checkpoint events
    local interval_ms=$1; shift # empty: colo's default
    on_host "$work/A" "$colo" protect repbench "127.0.0.1:$port" ${interval_ms:+--interval "$interval_ms"} "$@" \
        >"$work/$tag-protect.log" 2>&1 ||
        { problem "colo protect ($tag): $(cat "$work/$tag-protect.log")"; return 1; }
    on_host "$work/A" "$colo" events --json repbench >"$work/$tag-events.jsonl" 2>/dev/null &
    pids+=("$!")
    sleep 0.5
}

# A second unprotected VM, the same guest on the same addresses in
# namespaces of its own (created on first use), for a reference run of two
# VMs at once; client2 reaches it. Sets second_pid.
client2() { ip netns exec "$client2_ns" "${pin_primary[@]}" "$@"; }
start_second_vm() {
    if ! ip netns list | grep -q "^$hosts2_ns"; then
        netns_create_topology "$hosts2_ns" "$client2_ns" 10.96.0.1/24 tapA ||
            { problem "cannot build the second VM's namespaces"; return 1; }
    fi
    rm -rf "$work/C"; mkdir -p "$work/C"; truncate -s 16M "$work/diskC.img"
    make_config tapA "$work/diskC.img" >"$work/c.cfg"
    COLO_RUN_DIR=$work/C ip netns exec "$hosts2_ns" "${pin_primary[@]}" "$colo" run "$work/c.cfg" \
        >"$work/$tag-second.log" 2>&1 </dev/null &
    second_pid=$!; pids+=("$second_pid")
    wait_for "$work/$tag-second.log" "colo-guest: services ready" "boot (second VM)" "$second_pid"
}
stop_second_vm() {
    kill -9 "$second_pid" 2>/dev/null && wait "$second_pid" 2>/dev/null
    ip -n "$client2_ns" neigh flush dev veth0 2>/dev/null
}
# Waits for the second VM's client, if one runs; 1 (and a problem) if it failed.
wait_second() {
    [ ${#second[@]} -gt 0 ] || return 0
    wait $! || { problem "the second VM's client failed ($tag)"; return 1; }
}

churn() { client python3 "$helper" churn "$guest" "$1" || problem "CHURN $1 failed ($tag)"; }
