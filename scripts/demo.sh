#!/bin/bash
# Sets up everything on a fresh Debian 12 machine (as root), builds colo and
# its Linux guest (the kernel build takes about 10 minutes the first time,
# then it is cached), and runs the demo:
#
#   client namespace                       "host" namespace
#   veth0 10.90.0.1 ------ veth1 -- br0 -- tap0 -- colo: Linux VM (10.90.0.2)
#
# A real Linux VM boots on colo's RISC-V machine with a virtio disk and a
# virtio NIC on a TAP device; a client in another network namespace stores
# and reads keys in the VM's key-value service; the VM is powered off.
# The namespaces are removed at the end, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/netns.sh
bash scripts/setup.sh
[ -d build ] || meson setup build --buildtype=release
ninja -C build

work=$(mktemp -d /tmp/colo-demo.XXXXXX)
host_ns=colo-demo-host client_ns=colo-demo-client
vm_pid=""
cleanup() {
    [ -n "$vm_pid" ] && kill "$vm_pid" 2>/dev/null && wait "$vm_pid" 2>/dev/null
    netns_destroy_topology "$host_ns" "$client_ns"
    rm -rf "$work"
}
trap cleanup EXIT
netns_destroy_topology "$host_ns" "$client_ns"
netns_create_topology "$host_ns" "$client_ns" 10.90.0.1/24 tap0

truncate -s 16M "$work/disk.img"
sed -e "s|@GUEST@|$PWD/build/guests/linux|g" -e "s|@DISK@|$work/disk.img|g" \
    examples/demo.cfg.in >"$work/demo.cfg"
echo "== colo run demo.cfg   (the VM's console follows)"
cat "$work/demo.cfg" | sed 's/^/   | /'
ip netns exec "$host_ns" build/programs/colo run "$work/demo.cfg" </dev/null &
vm_pid=$!
for _ in $(seq 1 600); do
    ip netns exec "$client_ns" python3 -c \
        "import socket; socket.create_connection(('10.90.0.2', 7000), timeout=0.2).close()" \
        2>/dev/null && break
    sleep 0.1
done

echo
echo "== a client in another network namespace talks to the VM's key-value service"
ip netns exec "$client_ns" python3 - <<'PY'
import socket
connection = socket.create_connection(("10.90.0.2", 7000), timeout=10)
reader = connection.makefile("r")
def request(line):
    connection.sendall((line + "\n").encode())
    reply = reader.readline().strip()
    print(f"   client> {line:<28} vm> {reply}")
    return reply
request("SET greeting hello-from-the-client")
request("SET answer 42")
request("GET greeting")
request("GET answer")
request("CHECK")
request("POWEROFF")
PY
wait "$vm_pid" && echo "== the VM powered off; colo exited with status 0"
vm_pid=""
