#!/bin/bash
# Installs everything colo needs to build, test and benchmark, from
# Debian 12's packages. Safe to run again: it installs only what is missing.
set -euo pipefail

packages=(
    build-essential meson ninja-build pkg-config python3
    libtsan2                                 # gcc's ThreadSanitizer runtime (scripts/test_tsan.sh)
    clang                                    # fuzz targets (libFuzzer)
    clang-format                             # scripts/check_format.sh (the 'format' test)
    gcc-riscv64-unknown-elf binutils-riscv64-unknown-elf picolibc-riscv64-unknown-elf
    qemu-system-misc                         # reference machine for differential tests and benchmarks
    libfdt-dev device-tree-compiler opensbi  # device tree and firmware for Linux guests
    iproute2                                 # network namespaces in tests
    libjansson-dev                           # JSON for the control socket
    libxxhash-dev                            # block hashes of the disk sync (disk/disk_sync.c)
    libgnutls28-dev gnutls-bin               # TLS between replication peers; certtool, psktool, gnutls-cli (docs/security.md)
    gcc-riscv64-linux-gnu binutils-riscv64-linux-gnu libc6-dev-riscv64-cross  # Linux guest userland
    linux-source-6.1 bc flex bison libssl-dev libelf-dev cpio                 # Linux guest kernel
    mmdebstrap qemu-user-static binfmt-support arch-test  # the Debian guest's root (guests/debian)
    e2fsprogs zstd                                        # ... packed as ext4, cached compressed
    redis-tools postgresql-client python3-psycopg2        # clients of the Debian guest's services
    postgresql-15                                         # pgbench (bench/, docs/benchmarks.md)
    corosync corosync-qdevice corosync-qnetd              # the cluster lab (scripts/lib/cluster_lab.sh)
    pacemaker pacemaker-cli-utils resource-agents fence-agents libcpg-dev libquorum-dev libvotequorum-dev libcmap-dev  # Pacemaker, the OCF agent's tests (ocf-tester), Corosync's C APIs
)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$package")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all ${#packages[@]} packages already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${missing[*]}" >&2
    echo "setup: run this script as root to install them" >&2
    exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
