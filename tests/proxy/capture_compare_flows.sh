#!/bin/bash
# Makes a captured-flows file for tests/proxy/output_compare_captured_test.c:
# what a protected Linux guest's PVM and SVM sent, as the primary's
# comparator got them (proxy/compare_capture.h). Not part of the test
# command: run it by hand (root: namespaces, TAP) with a build that has
# the test hooks (meson -Dtest_hooks=true), and commit its output when the
# comparator's input changes.
#
# The pair runs in compare mode with a 2 s interval and a 100 ms compare
# timeout, as colo_compare_test.sh's, and the client (10.97.0.1) sends, in
# turn:
#   - ICMP echo requests after flushing its neighbour cache (the guest's
#     ARP reply and echo replies), and of 3000 bytes (IPv4 fragments both
#     ways);
#   - UDP to a closed port (the guest's ICMP port unreachable);
#   - ICMPv6 echo requests to the guest's link-local address (neighbour
#     discovery and echo replies), and of 3000 bytes (IPv6 fragments);
#   - KV requests (tests/../guests/linux): each on a connection of its own
#     (SYN and FIN), then 100 SETs and 100 GETs on one connection;
#   - the echo service: a few messages of several sizes;
#   - the stream service: 128 KiB each way.
# Then it quits the protection (the last epoch ends) and checks that the
# file has epochs in it.
# Usage: tests/proxy/capture_compare_flows.sh COLO GUEST_DIR OUT.pcapng
set -uo pipefail
colo=$(realpath "$1") guest_dir=$(realpath "$2") out=$(realpath "$3")
here=$(cd "$(dirname "$0")" && pwd)
boot_timeout=120
guest=10.97.0.2
guest_link_local=fe80::5054:ff:feaa:bb02 # the EUI-64 of make_config's MAC

source "$here/../replication/colo_test_lib.sh"
colo_test_begin capture cf
mkdir -p "$work/A" "$work/B"
client_python() { on_client python3 - "$guest" "$here/../../guests/linux" "$@"; }

COLO_TEST_COMPARE_CAPTURE=$work/capture.pcapng COLO_RUN_DIR=$work/A ip netns exec "$hosts_ns" \
    "$colo" run "$work/a.cfg" >"$work/primary.log" 2>&1 </dev/null &
primary_pid=$!; pids+=("$primary_pid")
wait_for "$work/primary.log" "colo-guest: services ready" "primary boot" "$primary_pid" || exit 1
COLO_RUN_DIR=$work/B ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47120 "$work/b.cfg" \
    >"$work/secondary.log" 2>&1 </dev/null &
secondary_pid=$!; pids+=("$secondary_pid")
wait_for "$work/secondary.log" "waiting for the primary" "secondary listening" "$secondary_pid" || exit 1
on_host "$work/A" "$colo" protect guarded 127.0.0.1:47120 --mode compare --interval 2000 --compare-timeout 100 \
    >"$work/protect.log" 2>&1 || { fail "colo protect: $(cat "$work/protect.log")"; exit 1; }
message=$(wait_for_protection "$work/A") || { fail "$message"; exit 1; }

# ICMP echo over a raw socket, as ping would (no ping on the test
# machines): COUNT requests of SIZE bytes of data, each answered within 2 s;
# larger than the MTU, the kernels on both ends fragment them.
echo_requests() {  # ADDRESS COUNT SIZE
    client_python "$@" <<'PY'
import os, select, socket, struct, sys, time
address, count, size = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
six = ":" in address
family, protocol = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if six else (socket.AF_INET, socket.IPPROTO_ICMP)
request_type, reply_type = (128, 129) if six else (8, 0)
target = socket.getaddrinfo(address, None, family, socket.SOCK_RAW, protocol)[0][4]
def checksum(data):
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
with socket.socket(family, socket.SOCK_RAW, protocol) as sock:
    if not six:  # let the kernel fragment what is larger than the MTU
        sock.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, 23, 0)  # IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DONT
    ident = os.getpid() & 0xFFFF
    for sequence in range(count):
        payload = bytes((sequence + i) & 0xFF for i in range(size))
        header = struct.pack("!BBHHH", request_type, 0, 0, ident, sequence)
        message = header + payload
        if not six:  # the kernel sums ICMPv6
            message = struct.pack("!BBHHH", request_type, 0, checksum(message), ident, sequence) + payload
        sock.sendto(message, target)
        deadline = time.monotonic() + 2
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                sys.exit(f"no echo reply {sequence} from {address}")
            packet = sock.recv(65536)
            body = packet if six else packet[(packet[0] & 0x0F) * 4:]
            kind, _, _, got_ident, got_sequence = struct.unpack("!BBHHH", body[:8])
            if kind == reply_type and got_ident == ident and got_sequence == sequence:
                if body[8:] != payload:
                    sys.exit(f"echo reply {sequence}: different data")
                break
        time.sleep(0.2)
PY
}

on_client ip neigh flush dev veth0
echo_requests "$guest" 5 56 || fail "ICMP echo"
echo_requests "$guest" 3 3000 || fail "ICMP echo of 3000 bytes"
client_python <<'PY' || fail "UDP to a closed port"
import socket, sys, time
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    for i in range(3):
        sock.sendto(b"anyone there? %d" % i, (sys.argv[1], 9999))
        time.sleep(0.2)
PY
echo_requests "$guest_link_local%veth0" 5 56 || fail "ICMPv6 echo"
echo_requests "$guest_link_local%veth0" 3 3000 || fail "ICMPv6 echo of 3000 bytes"
client_python <<'PY' || fail "the KV and echo requests"
import socket, sys
sys.path.insert(0, sys.argv[2])
from guest_client import KvConnection, kv_request
host = sys.argv[1]
for i in range(5):
    assert kv_request(host, f"SET single{i} value{i}") == "OK"
with KvConnection(host) as connection:
    for i in range(100):
        assert connection.request(f"SET captured{i} value{i}") == "OK"
    for i in range(100):
        assert connection.request(f"GET captured{i}") == f"VALUE value{i}"
with socket.create_connection((host, 7001), timeout=10) as sock:
    for size in (1, 100, 1400, 3000, 20000):
        message = bytes(range(256)) * (size // 256) + bytes(size % 256)
        sock.sendall(message)
        echoed = b""
        while len(echoed) < size:
            echoed += sock.recv(65536)
        assert echoed == message
PY
client_python <<'PY' || fail "the stream"
import sys
sys.path.insert(0, sys.argv[2])
from guest_client import stream_throughput
stream_throughput(sys.argv[1], 128 << 10)
PY
sleep 2.5 # an interval checkpoint ends the last workload's epoch
on_host "$work/A" "$colo" quit guarded >/dev/null 2>&1
wait_exit "$primary_pid" 60
epochs=$(grep -a -o "epoch end" "$work/capture.pcapng" | wc -l)
if [ "$failed" -eq 0 ] && [ "${epochs:-0}" -ge 2 ]; then
    cp "$work/capture.pcapng" "$out"
    pass "$out: $(stat -c %s "$out") bytes, $epochs epochs"
else
    fail "no capture written ($epochs epochs)"
fi
echo "capture_compare_flows: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
