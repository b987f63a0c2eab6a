#!/usr/bin/env bash
# Disk replication benchmark: the disk's share of a COLO checkpoint
# (issue 11; docs/benchmarks.md, "Disk replication: checkpoint cost").
# Builds bench/disk_checkpoint in a release build directory and runs it: a
# primary_disk over a 1 GiB sparse image, N random guest writes per epoch,
# the primary disk device's save into a stream over TCP loopback, and a
# second thread that reads the records, buffers them in a secondary_disk
# and commits them into its image. Prints the host, the table (added time
# p50/p99, save, send, buffering, fold, stream bytes, memory of both sides)
# and one JSON line; fails if the secondary's image does not end equal to
# the primary's. No root, no guest, no network namespace.
#
# Usage: bench/run_disk.sh [options] [BUILD_DIR]
#   BUILD_DIR        release build directory (default: build-rel; made with
#                    meson setup -Dbuildtype=release if it does not exist)
# Options:
#   -n N             checkpoints measured per row (default 50; 3 more warm up)
#   --levels LIST    guest writes per checkpoint (default 0,100,1000,10000)
#   --sizes LIST     bytes per guest write (default 4096,512)
#   --dir DIR        where the two images go (default: $TMPDIR, then /tmp)
#   --image-mib N    size of each sparse image (default 1024)
#   --socketpair     a UNIX socketpair instead of TCP loopback
#   --no-precopy     no checkpoint pre-copy (the whole epoch in the pause)
#   --stream-every N the loop's stream phase after every N guest writes
#                    (a guest writing steadily; default: none, one burst)
#   --sync-repeats N the initial sync benchmark after it (bench/disk_sync.c:
#                    a 2 GiB image sparse, full and pre-provisioned, over TCP
#                    loopback), median of N runs (default 3; 0: skip it)
#   --no-build       run the binary as it is
#   -h, --help       this text
# Default paths are relative to the source tree, so the script works from
# any directory; paths given as arguments are relative to the current one.
#
# Exit status: 0 on success, 1 if the benchmark failed, 2 on usage or setup
# errors.

set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_root=$(dirname "$script_dir")

build_dir="$source_root/build-rel"
arguments=()
build=1
sync_repeats=3

usage() {
    # The comment block at the top of this file, from "Usage:" on.
    sed -n '/^# Usage:/,/^[^#]/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'
}

die() {
    echo "run_disk: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        -n) [ $# -ge 2 ] || die "-n needs a number"; arguments+=(-n "$2"); shift 2 ;;
        --levels|--sizes|--image-mib) [ $# -ge 2 ] || die "$1 needs a value"; arguments+=("$1" "$2"); shift 2 ;;
        --dir) [ $# -ge 2 ] || die "--dir needs a directory"; image_dir=$2; shift 2 ;;
        --socketpair|--no-precopy) arguments+=("$1"); shift ;;
        --stream-every) [ $# -ge 2 ] || die "$1 needs a value"; arguments+=("$1" "$2"); shift 2 ;;
        --sync-repeats) [ $# -ge 2 ] || die "--sync-repeats needs a number"; sync_repeats=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; exit 2 ;;
        *) build_dir=$(realpath -m "$1"); shift ;;
    esac
done
[ -z "${image_dir:-}" ] || arguments+=("$image_dir")

if [ "$build" = 1 ]; then
    if [ ! -d "$build_dir" ]; then
        meson setup "$build_dir" "$source_root" -Dbuildtype=release -Dlinux_guest=false -Ddebian_guest=false \
            >/dev/null || die "meson setup $build_dir failed"
    fi
    ninja -C "$build_dir" -j2 bench/disk_checkpoint bench/disk_sync_bench >/dev/null ||
        die "building bench/disk_checkpoint and bench/disk_sync_bench failed"
fi
binary="$build_dir/bench/disk_checkpoint"
[ -x "$binary" ] || die "no $binary: build first"
buildtype=$(meson introspect --buildoptions "$build_dir" 2>/dev/null |
    python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="buildtype"))' \
    2>/dev/null || echo unknown)
[ "$buildtype" = release ] || echo "run_disk: warning: $build_dir is a $buildtype build, not release" >&2

cpu_model=$(grep -m1 -E '^(model name|uarch|cpu model)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
echo "date:        $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "host:        ${cpu_model:-unknown}, $(nproc) cores, kernel $(uname -sr)"
echo "revision:    $(git -C "$source_root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "load:        $(cut -d' ' -f1-3 /proc/loadavg) (before)"
status=0
"$binary" "${arguments[@]}" || status=1
if [ "$sync_repeats" -gt 0 ]; then
    echo
    "$build_dir/bench/disk_sync_bench" "${image_dir:-${TMPDIR:-/tmp}}" "$sync_repeats" || status=1
fi
echo "load:        $(cut -d' ' -f1-3 /proc/loadavg) (after)"
exit $status
