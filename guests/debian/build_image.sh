#!/bin/bash
# Builds the Debian guest's root file system from Debian's own trixie
# riscv64 packages (mmdebstrap, with qemu-user-static through binfmt_misc
# for the maintainer scripts), packs it as an ext4 image with mkfs.ext4 -d,
# and caches it compressed outside the checkout, so that a second run
# costs only the copy. Nothing is compiled for the guest here: its kernel
# is guests/linux's (one kernel serves both guests).
#
# Usage: guests/debian/build_image.sh [OUTPUT_IMAGE]
#   OUTPUT_IMAGE gets a sparse copy of the image (2 GiB, about 400 MB used).
#
# Cache layout (COLO_CACHE defaults to /var/cache/colo):
#   $COLO_CACHE/debian/<hash>/root.ext4.zst   the image, zstd-compressed
#   $COLO_CACHE/debian/<hash>/packages.txt    what went into it (dpkg -l)
# where <hash> is the sha256 of the package list, this script, colo-init
# and the suite: changing any of them builds a new image.
#
# Building needs root (mmdebstrap's root mode, binfmt_misc). Whatever this
# script changes in binfmt_misc it restores afterwards, also on failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
suite=trixie
mirror=http://deb.debian.org/debian
image_size=2G
cache_root="${COLO_CACHE:-/var/cache/colo}/debian"
output="${1:-}"

say() { echo "build_image: $*"; }
die() { echo "build_image: error: $*" >&2; exit 1; }

packages=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$here/packages" | grep -v '^$' | paste -sd, -)
[ -n "$packages" ] || die "no packages listed in $here/packages"
hash=$({ cat "$here/packages" "$here/build_image.sh" "$here/colo-init"; echo "$suite"; } |
       sha256sum | cut -c1-16)
cache_dir="$cache_root/$hash"
cached="$cache_dir/root.ext4.zst"

mkdir -p "$cache_root" 2>/dev/null ||
    die "cannot create the cache directory $cache_root (set COLO_CACHE to a writable directory)"
# One build per hash at a time: a second caller waits, then finds the cache.
exec 9>"$cache_root/.lock-$hash"
flock 9

copy_out() {
    [ -n "$output" ] || return 0
    mkdir -p "$(dirname "$output")"
    rm -f "$output.tmp"
    unzstd -q --sparse "$cached" -o "$output.tmp"
    mv "$output.tmp" "$output"
    say "sparse copy at $output ($(du -h "$output" | cut -f1) used of $(du -h --apparent-size "$output" | cut -f1))"
}

if [ -f "$cached" ]; then
    say "cached Debian $suite image $hash: $cached"
    copy_out
    exit 0
fi

# --- Everything we need must be there before a 5-minute build ------------------
[ "$(id -u)" -eq 0 ] || die "no cached image for $hash, and building one needs root (mmdebstrap, binfmt_misc)"
missing=()
for tool in mmdebstrap mkfs.ext4 zstd unzstd update-binfmts flock; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -x /usr/bin/qemu-riscv64-static ] || missing+=("qemu-riscv64-static (qemu-user-static)")
if [ ${#missing[@]} -ne 0 ]; then
    die "missing: ${missing[*]}
build_image: run 'sudo bash scripts/setup.sh' (from the colo checkout) to install them"
fi

work=$(mktemp -d "$cache_root/.build.XXXXXX")
binfmt_dir=/proc/sys/fs/binfmt_misc
mounted_binfmt=0
enabled_riscv=0
restore() {
    # Undo what we did to the host, in reverse order.
    [ "$enabled_riscv" -eq 0 ] || update-binfmts --disable qemu-riscv64 >/dev/null 2>&1 || true
    [ "$mounted_binfmt" -eq 0 ] || umount "$binfmt_dir" 2>/dev/null || true
    rm -rf "$work"
}
trap restore EXIT

if [ ! -f "$binfmt_dir/status" ]; then
    mount -t binfmt_misc binfmt_misc "$binfmt_dir" || die "cannot mount binfmt_misc on $binfmt_dir"
    mounted_binfmt=1
fi
if [ ! -f "$binfmt_dir/qemu-riscv64" ] || ! grep -qx enabled "$binfmt_dir/qemu-riscv64"; then
    update-binfmts --enable qemu-riscv64 || die "cannot register qemu-riscv64 with binfmt_misc"
    enabled_riscv=1
fi

say "no cached image for $hash; building Debian $suite riscv64 (minbase + $packages), about 5 minutes"
started=$(date +%s)
tree="$work/tree"
mmdebstrap --mode=root --variant=minbase --arch=riscv64 --include="$packages" \
    --aptopt='Acquire::Retries "3"' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$suite" "$tree" "$mirror"

# --- What makes it colo's guest ------------------------------------------------
install -m 0755 "$here/colo-init" "$tree/sbin/colo-init"
echo colo-debian >"$tree/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tcolo-debian\n::1\t\tlocalhost\n' >"$tree/etc/hosts"

# PostgreSQL: reachable from the test network, without a password (the
# network is the namespaces the tests and the demo make themselves).
pg_etc="$tree/etc/postgresql/17/main"
[ -f "$pg_etc/postgresql.conf" ] || die "postgresql-17 left no cluster 17/main (its postinst failed?)"
cat >>"$pg_etc/postgresql.conf" <<'EOF'

# --- colo's Debian guest ---
listen_addresses = '*'
max_connections = 40
shared_buffers = 64MB
unix_socket_directories = '/run/postgresql'
EOF
cat >>"$pg_etc/pg_hba.conf" <<'EOF'

# colo's Debian guest: clients on the test network, no password
host    all     all     0.0.0.0/0       trust
host    all     all     ::/0            trust
EOF

# Redis: on every address, in memory only (no snapshots, no AOF), a
# socket for the init's readiness check.
cat >"$tree/etc/redis/colo.conf" <<'EOF'
# colo's Debian guest: Debian's configuration, then what differs.
include /etc/redis/redis.conf
bind * -::*
protected-mode no
daemonize no
supervised no
pidfile /run/redis/redis-server.pid
unixsocket /run/redis/redis-server.sock
unixsocketperm 770
logfile ""
save ""
appendonly no
EOF
chmod 0644 "$tree/etc/redis/colo.conf"

dpkg-query --admindir="$tree/var/lib/dpkg" -W -f='${Package} ${Version}\n' >"$work/packages.txt"

say "packing $tree into an ext4 image of $image_size"
mkfs.ext4 -q -L colo-debian -d "$tree" "$work/root.ext4" "$image_size"
zstd -q -T0 -9 "$work/root.ext4" -o "$work/root.ext4.zst"
mkdir -p "$cache_dir"
mv "$work/packages.txt" "$cache_dir/packages.txt"
mv "$work/root.ext4.zst" "$cached.tmp"
mv "$cached.tmp" "$cached"
say "built in $(( $(date +%s) - started )) s: $cached ($(du -h "$cached" | cut -f1), $(wc -l <"$cache_dir/packages.txt") packages)"
copy_out
