#!/bin/bash
# Live migration of a running Linux VM between two colo processes, with a
# client connection that must survive it (needs root: namespaces, TAP).
#
#   client ns: veth0 10.96.0.1 ---- veth1 -- br0 -- tapA -- colo (source, "host A")
#                                           \--- tapB -- colo receive (target, "host B")
#
# Both "hosts" share one namespace (a TAP belongs to the namespace of the
# process that opens it, and a bridge port must be in the bridge's); each has
# its own COLO_RUN_DIR. The migration runs over 127.0.0.1 there.
# 1. A client keeps one TCP connection to the KV service, writing and
#    verifying keys, while the guest's memory churner dirties pages; the VM
#    moves from A to B; the connection carries on; every acknowledged key
#    reads back; the source exits 0; B announces the MAC (the bridge learns
#    tapB at once).
# 2. The destination dies (kill -9) in the middle of a migration: the
#    source VM keeps running and says what happened.
# 3. The source's stream breaks: `colo receive` exits with an error and
#    removes its control socket.
# Usage: tests/migration/migration_test.sh COLO GUEST_DIR
set -uo pipefail
shopt -s lastpipe
colo=$(realpath "$1") guest_dir=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
boot_timeout=120
guest=10.96.0.2

source "$here/../support/e2e_lib.sh"
e2e_begin migration mt 10.96.0.1/24 tapA tapB

truncate -s 16M "$work/disk.img"
make_config() {  # TAP
    cat <<CFG
name = "moving"
memory = 128
kernel = "$guest_dir/Image"
initrd = "$guest_dir/initramfs.cpio"
cmdline = "console=ttyS0 colo.ip=$guest/24 colo.churn=2000"
disks = [ "path=$work/disk.img" ]
nics = [ "tap=$1,mac=52:54:00:aa:bb:01" ]
console = "stdio"
CFG
}
make_config tapA >"$work/a.cfg"
make_config tapB >"$work/b.cfg"
mkdir -p "$work/A" "$work/B" "$work/C"

vm_state() {  # RUN_DIR
    on_host "$1" "$colo" status moving --json 2>/dev/null |
        python3 -c "import json,sys; print(json.load(sys.stdin).get('state',''))" 2>/dev/null
}

# ---- 1. migration under load with a live client connection ----
on_host "$work/A" "$colo" run "$work/a.cfg" >"$work/source.log" 2>&1 </dev/null &
source_pid=$!; pids+=("$source_pid")
wait_for "$work/source.log" "colo-guest: services ready" "source boot" "$source_pid" || exit 1
pass "source VM booted (churning 2000 pages/s)"

on_host "$work/B" "$colo" receive --listen 127.0.0.1:47000 "$work/b.cfg" >"$work/target.log" 2>&1 </dev/null &
target_pid=$!; pids+=("$target_pid")
wait_for "$work/target.log" "waiting for a migration" "target listening" "$target_pid" || exit 1

ip netns exec "$client_ns" python3 "$here/continuous_client.py" "$guest" "$work/stop" 120 \
    >"$work/client.log" 2>&1 &
client_pid=$!; pids+=("$client_pid")
sleep 2
if on_host "$work/A" "$colo" migrate moving 127.0.0.1:47000 >"$work/migrate.log" 2>"$work/migrate.err"; then
    pass "$(cat "$work/migrate.log")"
else
    fail "colo migrate failed: $(tail -3 "$work/migrate.err")"
fi
wait "$source_pid"; status=$?
[ "$status" -eq 0 ] && pass "the source colo exited with status 0 after handing the VM over" ||
    fail "the source colo exited with status $status"
grep -q "running here now" "$work/target.log" && pass "the target runs the VM" || fail "target did not take over"
[ "$(vm_state "$work/B")" = running ] && pass "colo status on B: running" || fail "colo status on B: '$(vm_state "$work/B")'"
sleep 3
touch "$work/stop"
wait "$client_pid"; client_status=$?
sed 's/^/  client: /' "$work/client.log"
grep -c "^PASS" "$work/client.log" | read -r client_passes
if [ "$client_status" -eq 0 ] && [ "$client_passes" -eq 2 ]; then
    pass "the client's connection survived the migration and every acknowledged key is there"
else
    fail "the client saw errors (status $client_status)"
fi

# ---- 2. the destination goes away mid-migration: the source keeps running ----
# A target that takes 8 MiB of the full copy and then drops the connection,
# as a target host dying half-way would.
ip netns exec "$hosts_ns" python3 - >"$work/dying-target.log" 2>&1 <<'PY' &
import socket
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 47001))
listener.listen(1)
print("listening", flush=True)
connection, _ = listener.accept()
received = 0
while received < 8 << 20:
    chunk = connection.recv(1 << 16)
    if not chunk:
        break
    received += len(chunk)
connection.close()
print(f"dropped the connection after {received} bytes", flush=True)
PY
dying_pid=$!; pids+=("$dying_pid")
wait_for "$work/dying-target.log" "listening" "dying target" "$dying_pid" || exit 1
on_host "$work/B" "$colo" migrate moving 127.0.0.1:47001 >"$work/migrate2.log" 2>"$work/migrate2.err"
status=$?
message=$(tr '\r' '\n' <"$work/migrate2.err" | grep -v '^\[' | grep -v '^$' | tail -1)
if [ "$status" -ne 0 ] && echo "$message" | grep -q "keeps running"; then
    pass "a migration whose target went away mid-way failed cleanly: $message"
else
    fail "migration to a target that went away: status $status, message '$message'"
fi
[ "$(vm_state "$work/B")" = running ] && pass "the source VM is still running" || fail "source state '$(vm_state "$work/B")'"
ip netns exec "$client_ns" python3 "$here/../../guests/linux/kvclient.py" "$guest" check >"$work/check.log" 2>&1 &&
    grep -q "^CHECK" "$work/check.log" && pass "the service still answers: $(cat "$work/check.log")" ||
    fail "the service does not answer after the failed migration"

# ---- 3. the source's stream breaks: the target cleans up ----
on_host "$work/C" "$colo" receive --listen 127.0.0.1:47002 "$work/a.cfg" >"$work/broken.log" 2>&1 </dev/null &
broken_pid=$!; pids+=("$broken_pid")
wait_for "$work/broken.log" "waiting for a migration" "third target listening" "$broken_pid" || exit 1
ip netns exec "$hosts_ns" python3 - <<'PY'
import socket, struct
sock = socket.create_connection(("127.0.0.1", 47002))
sock.sendall(b"COLOSTRM" + struct.pack("<II", 1, 32) + b"\0" * 16 + b"\1\0\0\0" + b"\xff" * 100)
sock.close()
PY
wait "$broken_pid"; status=$?
error=$(grep "colo run\|colo receive" "$work/broken.log" | tail -1)
if [ "$status" -ne 0 ] && echo "$error" | grep -q "incoming migration failed"; then
    pass "a broken incoming stream ends colo receive with an error: $error"
else
    fail "broken stream: status $status, '$error'"
fi
[ ! -e "$work/C/moving.sock" ] && pass "the failed target removed its control socket" || fail "stale control socket left"

on_host "$work/B" "$colo" quit moving >/dev/null 2>&1
wait "$target_pid"
echo "migration_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
