#!/bin/bash
# Boots the colo Linux guest on QEMU's virt machine, the reference for
# colo's own emulator. The console is QEMU's stdio (Ctrl-A X quits).
#
# Usage: guests/linux/run_qemu.sh [options] [-- extra QEMU arguments]
#   --kernel PATH     kernel Image            (default: DIR/Image)
#   --initrd PATH     initramfs cpio          (default: DIR/initramfs.cpio)
#   --dir DIR         where Image and initramfs.cpio are (default: build/guest-linux)
#   --disk FILE       raw disk image, attached as virtio-blk (the KV store's log)
#   --tap NAME        virtio-net NIC on the existing TAP device NAME
#   --user-net        virtio-net NIC on QEMU user networking; host ports
#                     127.0.0.1:17000-17002 forward to the guest's 7000-7002
#   --ip A.B.C.D/NN   guest address (default 10.0.2.15/24 with --user-net)
#   --gw A.B.C.D      guest default route (default 10.0.2.2 with --user-net)
#   --mac MAC         NIC MAC address (default 52:54:00:c0:10:02)
#   --churn N         memory churner rate, pages per second (default 0)
#   --memory MIB      guest RAM (default 256)
#   --append TEXT     more kernel command line
# QEMU is exec'd: this script's process id becomes QEMU's.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
firmware=/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.elf
dir="$here/../../build/guest-linux"
kernel="" initrd="" disk="" tap="" user_net=0 ip="" gw="" mac=52:54:00:c0:10:02
churn="" memory=256 append=""
die() { echo "run_qemu: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) kernel=$2; shift 2 ;;
        --initrd) initrd=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --disk) disk=$2; shift 2 ;;
        --tap) tap=$2; shift 2 ;;
        --user-net) user_net=1; shift ;;
        --ip) ip=$2; shift 2 ;;
        --gw) gw=$2; shift 2 ;;
        --mac) mac=$2; shift 2 ;;
        --churn) churn=$2; shift 2 ;;
        --memory) memory=$2; shift 2 ;;
        --append) append=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
kernel=${kernel:-$dir/Image}
initrd=${initrd:-$dir/initramfs.cpio}

command -v qemu-system-riscv64 >/dev/null || die "qemu-system-riscv64 missing: run scripts/setup.sh"
[ -f "$firmware" ] || die "OpenSBI firmware $firmware missing: run scripts/setup.sh"
[ -f "$kernel" ] || die "no kernel at $kernel (build it with guests/linux/build.sh DIR)"
[ -f "$initrd" ] || die "no initramfs at $initrd (build it with guests/linux/build.sh DIR)"
[ -n "$tap" ] && [ "$user_net" -eq 1 ] && die "--tap and --user-net exclude each other"

arguments=(-M virt -m "$memory" -smp 1 -nographic -no-reboot
           -bios "$firmware" -kernel "$kernel" -initrd "$initrd")
if [ -n "$disk" ]; then
    [ -f "$disk" ] || die "no disk image at $disk"
    arguments+=(-drive "file=$disk,format=raw,if=none,id=d0" -device virtio-blk-device,drive=d0)
fi
if [ -n "$tap" ]; then
    arguments+=(-netdev "tap,id=n0,ifname=$tap,script=no,downscript=no"
                -device "virtio-net-device,netdev=n0,mac=$mac")
elif [ "$user_net" -eq 1 ]; then
    # Forwards bind the host's loopback only.
    forwards=hostfwd=tcp:127.0.0.1:17000-:7000,hostfwd=tcp:127.0.0.1:17001-:7001,hostfwd=tcp:127.0.0.1:17002-:7002
    arguments+=(-netdev "user,id=n0,$forwards" -device "virtio-net-device,netdev=n0,mac=$mac")
    ip=${ip:-10.0.2.15/24}
    gw=${gw:-10.0.2.2}
fi

cmdline="console=ttyS0"
[ -n "$ip" ] && cmdline+=" colo.ip=$ip"
[ -n "$gw" ] && cmdline+=" colo.gw=$gw"
[ -n "$churn" ] && cmdline+=" colo.churn=$churn"
[ -n "$append" ] && cmdline+=" $append"

echo "run_qemu: qemu-system-riscv64 ${arguments[*]} $* -append \"$cmdline\"" >&2
exec qemu-system-riscv64 "${arguments[@]}" "$@" -append "$cmdline"
