#!/bin/bash
# Linux guest benchmark, colo and qemu-system-riscv64 side by side in the
# same run, same kernel and initramfs, same TAP topology in network
# namespaces (needs root):
#   - boot time: from starting the VM process to the guest's
#     "colo-guest: services ready" line on the console (wall clock);
#   - KV latency: p50/p99 of sequential SET (fdatasync'd to the virtio disk)
#     and GET round trips from a client in another namespace;
#   - KV throughput: GET requests per second, 32 in flight on one connection;
#   - stream throughput in each direction (8 MiB).
# Usage: bench/run_linux.sh [COLO [GUEST_DIR]]   (defaults: build/...)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/netns.sh
colo=${1:-build/programs/colo}
guest_dir=${2:-build/guests/linux}
requests=${BENCH_REQUESTS:-1000}
[ "$(id -u)" -eq 0 ] || { echo "run_linux: needs root (network namespaces)" >&2; exit 2; }
[ -f "$guest_dir/Image" ] || { echo "run_linux: no $guest_dir/Image: build first (ninja -C build)" >&2; exit 2; }

work=$(mktemp -d /tmp/colo-bench-linux.XXXXXX)
export COLO_RUN_DIR=$work/run       # no collision with other VMs named "bench"
host_ns=colo-bl$$-host client_ns=colo-bl$$-client
vm_pid=""
cleanup() {
    [ -n "$vm_pid" ] && kill -9 "$vm_pid" 2>/dev/null && wait "$vm_pid" 2>/dev/null
    netns_destroy_topology "$host_ns" "$client_ns"
    rm -rf "$work"
}
trap cleanup EXIT

netns_create_topology "$host_ns" "$client_ns" 10.97.0.1/24 tap0 ||
    { echo "run_linux: cannot build the network namespaces" >&2; exit 1; }

cmdline="console=ttyS0 colo.ip=10.97.0.2/24"
cat >"$work/vm.cfg" <<CFG
name = "bench"
memory = 256
kernel = "$(realpath "$guest_dir/Image")"
initrd = "$(realpath "$guest_dir/initramfs.cpio")"
cmdline = "$cmdline"
disks = [ "path=$work/disk.img" ]
nics = [ "tap=tap0,mac=52:54:00:12:34:56" ]
CFG

run_one() {  # MACHINE
    local machine=$1 log=$work/$1.log started ready
    rm -f "$work/disk.img"; truncate -s 16M "$work/disk.img"
    started=$(date +%s.%N)
    if [ "$machine" = colo ]; then
        ip netns exec "$host_ns" "$colo" run "$work/vm.cfg" >"$log" 2>&1 </dev/null &
    else
        ip netns exec "$host_ns" qemu-system-riscv64 -M virt -m 256M -nographic -nodefaults \
            -serial stdio -monitor none \
            -bios /usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.elf \
            -kernel "$guest_dir/Image" -initrd "$guest_dir/initramfs.cpio" -append "$cmdline" \
            -drive "file=$work/disk.img,format=raw,if=none,id=d0" -device virtio-blk-device,drive=d0 \
            -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
            -device virtio-net-device,netdev=n0,mac=52:54:00:12:34:56 >"$log" 2>&1 </dev/null &
    fi
    vm_pid=$!
    while ! grep -q "services ready" "$log" 2>/dev/null; do
        kill -0 "$vm_pid" 2>/dev/null || { echo "$machine exited before services ready"; tail "$log"; return 1; }
        sleep 0.01
    done
    ready=$(date +%s.%N)
    boot=$(echo "$ready - $started" | bc)
    result=$(ip netns exec "$client_ns" python3 bench/linux_client.py 10.97.0.2 "$requests")
    kill -9 "$vm_pid"; wait "$vm_pid" 2>/dev/null; vm_pid=""
    python3 - "$machine" "$boot" "$result" <<'PY'
import json, sys
machine, boot, result = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
lat = result["latency"]
print(f"{machine:<6} boot {boot:6.3f} s | SET p50 {lat['SET']['p50_ms']:6.3f} ms p99 {lat['SET']['p99_ms']:6.3f} ms"
      f" | GET p50 {lat['GET']['p50_ms']:6.3f} ms p99 {lat['GET']['p99_ms']:6.3f} ms"
      f" | {result['kv_requests_per_s']:7.0f} GET/s"
      f" | stream out {result['stream']['guest_to_client_MBps']:6.1f} MB/s in {result['stream']['client_to_guest_MBps']:6.1f} MB/s")
PY
}

echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u +%F)"
echo "qemu: $(qemu-system-riscv64 --version | head -1)"
echo "colo: $(git rev-parse --short HEAD 2>/dev/null)"
for round in 1 2; do
    run_one colo
    run_one qemu
done
