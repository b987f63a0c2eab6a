#!/usr/bin/env bash
# Compute benchmark: runs bench/compute.elf on colo and on QEMU (TCG), times
# both, checks that they compute the same checksums, and prints a table of
# wall time and MIPS.
#
# Usage: bench/run_compute.sh [options] [COLO [COMPUTE_ELF]]
#   COLO         colo binary        (default: build/programs/colo)
#   COMPUTE_ELF  benchmark guest    (default: build/bench/compute.elf)
# Options:
#   -n, --runs N     timed runs per machine and program (default 3)
#   --empty ELF      start-up probe (default: empty.elf next to COMPUTE_ELF)
#   --qemu PATH      QEMU binary (default: qemu-system-riscv64)
#   --timeout SEC    kill a run after SEC seconds (default 600)
#   --no-icount      skip the QEMU -icount cross-check of the instruction count
#   -h, --help       this text
# Default paths are relative to the source tree, so the script works from
# any directory; paths given as arguments are relative to the current one.
#
# Exit status: 0 if every run succeeded and the checksums agree, 1 if the
# checksums differ or a guest reported a failure, 2 on usage or setup errors.

set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_root=$(dirname "$script_dir")

runs=3
colo="$source_root/build/programs/colo"
compute_elf="$source_root/build/bench/compute.elf"
empty_elf=""
qemu="qemu-system-riscv64"
run_timeout=600
icount_check=1

usage() {
    # The comment block at the top of this file, from "Usage:" on.
    sed -n '/^# Usage:/,/^[^#]/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'
}

die() {
    echo "run_compute.sh: $*" >&2
    exit 2
}

positional=()
while [ $# -gt 0 ]; do
    case "$1" in
    -n | --runs) [ $# -ge 2 ] || die "$1 needs a value"; runs=$2; shift 2 ;;
    --empty) [ $# -ge 2 ] || die "$1 needs a value"; empty_elf=$2; shift 2 ;;
    --qemu) [ $# -ge 2 ] || die "$1 needs a value"; qemu=$2; shift 2 ;;
    --timeout) [ $# -ge 2 ] || die "$1 needs a value"; run_timeout=$2; shift 2 ;;
    --no-icount) icount_check=0; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) positional+=("$1"); shift ;;
    esac
done
[ ${#positional[@]} -le 2 ] || die "too many arguments (see --help)"
[ ${#positional[@]} -ge 1 ] && colo=${positional[0]}
[ ${#positional[@]} -ge 2 ] && compute_elf=${positional[1]}
[ -n "$empty_elf" ] || empty_elf="$(dirname "$compute_elf")/empty.elf"

[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive integer, not '$runs'"
[ -x "$colo" ] || die "colo not found at $colo (build with: meson setup build && ninja -C build)"
[ -f "$compute_elf" ] || die "benchmark guest not found at $compute_elf"
[ -f "$empty_elf" ] || die "start-up probe not found at $empty_elf"
command -v "$qemu" >/dev/null || die "$qemu not found (apt-get install qemu-system-misc)"

work_dir=$(mktemp -d)
trap 'rm -rf "$work_dir"' EXIT

# The command line for each machine; the ELF is appended.
colo_command=("$colo" run)
# Plain TCG, QEMU's default accelerator for a foreign guest, named explicitly
# so the setup is visible. -bios none starts the ELF in M-mode at 0x80000000
# like colo does; the guest powers off through the sifive_test device.
qemu_command=("$qemu" -M virt -accel tcg -bios none -nographic -kernel)

# Wall-clock time in seconds with microseconds. Bash 5 has EPOCHREALTIME,
# which needs no extra process; otherwise ask date.
now() {
    if [ -n "${EPOCHREALTIME:-}" ]; then
        echo "${EPOCHREALTIME/,/.}"
    else
        date +%s.%N
    fi
}

# run_once MACHINE ELF OUTPUT_FILE: runs the guest, stores its console output
# (carriage returns removed) and prints the elapsed seconds. Fails if the
# machine exits non-zero or times out.
run_once() {
    local machine=$1 elf=$2 output=$3 start end status=0
    local -a command
    if [ "$machine" = colo ]; then
        command=("${colo_command[@]}" "$elf")
    else
        command=("${qemu_command[@]}" "$elf")
    fi
    start=$(now)
    timeout "$run_timeout" "${command[@]}" </dev/null >"$output.raw" 2>&1 || status=$?
    end=$(now)
    tr -d '\r' <"$output.raw" >"$output"
    if [ "$status" -ne 0 ]; then
        local reason="exit status $status"
        [ "$status" -eq 124 ] && reason="timed out after ${run_timeout} s"
        echo "run_compute.sh: $machine failed on $elf ($reason); output:" >&2
        sed 's/^/    /' "$output" >&2
        return 1
    fi
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.6f\n", e - s }'
}

# median: reads numbers, one a line, prints their median.
median() {
    sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) printf "%.6f\n", v[(NR + 1) / 2];
              else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# The lines each run must reproduce exactly: one "<kernel> checksum:" line
# per kernel and the guest's own verdict.
checksums() {
    grep -E '^[a-z0-9_]+ checksum: |^result: ' "$1" || true
}

# --- Header ---------------------------------------------------------------

cpu_model=$(grep -m1 -E '^(model name|uarch|cpu model)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
[ -n "$cpu_model" ] || cpu_model="unknown ($(uname -m))"
revision=$(git -C "$source_root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git -C "$source_root" diff --quiet HEAD 2>/dev/null; then
    [ "$revision" = unknown ] || revision="$revision (with uncommitted changes)"
fi

echo "colo compute benchmark"
echo "date:        $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "host CPU:    $cpu_model ($(nproc) logical CPUs)"
echo "kernel:      $(uname -sr)"
echo "QEMU:        $("$qemu" --version | head -n1)"
echo "colo:        $colo (source revision $revision)"
echo "guest:       $compute_elf"
echo "runs:        $runs per machine, median reported"
echo

# --- Timed runs -----------------------------------------------------------

declare -A compute_times empty_times
reference=""
failed=0
for ((run = 1; run <= runs; run++)); do
    # Alternate the machines so that slow drifts of the host (frequency
    # scaling, other load) affect both alike.
    for machine in colo qemu; do
        output="$work_dir/$machine-compute-$run.txt"
        seconds=$(run_once "$machine" "$compute_elf" "$output") || exit 1
        compute_times[$machine]+="$seconds "
        printf '  run %d  %-5s compute.elf %9.3f s\n' "$run" "$machine" "$seconds"

        checksums "$output" >"$output.checksums"
        if ! grep -q '^matmul checksum: ' "$output.checksums"; then
            echo "run_compute.sh: $machine printed no checksums; output:" >&2
            sed 's/^/    /' "$output" >&2
            exit 1
        fi
        if [ -z "$reference" ]; then
            reference="$output.checksums"
        elif ! cmp -s "$reference" "$output.checksums"; then
            echo "run_compute.sh: CHECKSUMS DIFFER: $machine run $run vs. colo run 1" >&2
            diff -u --label "colo run 1" --label "$machine run $run" \
                "$reference" "$output.checksums" >&2 || true
            failed=1
        fi
        if ! grep -qx 'result: ok' "$output"; then
            echo "run_compute.sh: $machine run $run: the guest's self-check failed" >&2
            failed=1
        fi

        seconds=$(run_once "$machine" "$empty_elf" "$work_dir/$machine-empty-$run.txt") || exit 1
        empty_times[$machine]+="$seconds "
        printf '  run %d  %-5s empty.elf   %9.3f s\n' "$run" "$machine" "$seconds"
    done
done
echo

# Instruction count: colo's minstret at the end of the run. QEMU's minstret
# without -icount is derived from the host's cycle counter, not from retired
# instructions, so its "instructions:" line is meaningless; the binary is
# deterministic and runs the same instructions on both machines, so colo's
# count serves for both.
instructions=$(sed -n 's/^instructions: \([0-9][0-9]*\)$/\1/p' "$work_dir/colo-compute-1.txt")
[ -n "$instructions" ] || { echo "run_compute.sh: colo printed no 'instructions:' line" >&2; exit 1; }

# --- Results --------------------------------------------------------------

echo "checksums (identical on both machines: $([ "$failed" -eq 0 ] && echo yes || echo NO)):"
sed 's/^/  /' "$reference"
grep -E '^[a-z0-9_]+ instructions: ' "$work_dir/colo-compute-1.txt" | sed 's/^/  colo /' || true
echo

# "MIPS" divides by the whole wall time, start-up included. "MIPS (startup
# excluded)" first subtracts the median time of empty.elf, which is the
# machine's fixed cost of starting, loading an ELF and powering off.
printf '%-10s %12s %12s %14s %10s %25s\n' machine "median s" "startup s" instructions MIPS "MIPS (startup excluded)"
for machine in colo qemu; do
    compute_median=$(tr ' ' '\n' <<<"${compute_times[$machine]}" | grep . | median)
    empty_median=$(tr ' ' '\n' <<<"${empty_times[$machine]}" | grep . | median)
    label=$machine
    [ "$machine" = qemu ] && label="qemu-tcg"
    awk -v m="$label" -v t="$compute_median" -v s="$empty_median" -v n="$instructions" 'BEGIN {
        net = t - s
        excluded = (net > 0) ? sprintf("%.1f", n / net / 1e6) : "n/a"
        printf "%-10s %12.3f %12.3f %14.0f %10.1f %25s\n", m, t, s, n, n / t / 1e6, excluded
    }'
done

# Cross-check of colo's instruction count: with -icount shift=0 QEMU counts
# one tick per guest instruction and its minstret reads that count. It is
# slower, so it is run once and not timed. The per-kernel counts (minstret
# differences around each kernel) must match exactly; the totals may differ
# slightly because the guest's UART polling loops depend on timing. A
# mismatch is reported as a warning: it means colo's minstret, and so the
# MIPS above, may be off, but not that colo computes wrong results.
if [ "$icount_check" -eq 1 ]; then
    icount_output="$work_dir/qemu-icount.txt"
    qemu_command=("$qemu" -M virt -accel tcg -icount shift=0 -bios none -nographic -kernel)
    if run_once qemu "$compute_elf" "$icount_output" >/dev/null; then
        echo
        echo "instruction count cross-check against QEMU -icount shift=0:"
        kernel_pattern='^[a-z0-9_]+ instructions: '
        if diff <(grep -E "$kernel_pattern" "$work_dir/colo-compute-1.txt") \
                <(grep -E "$kernel_pattern" "$icount_output") >/dev/null; then
            echo "  per-kernel counts match"
        else
            echo "  WARNING: per-kernel counts differ (colo left, QEMU right):"
            paste <(grep -E "$kernel_pattern" "$work_dir/colo-compute-1.txt") \
                  <(grep -E "$kernel_pattern" "$icount_output" | sed 's/^[a-z0-9_]* instructions: //') |
                sed 's/^/    /'
        fi
        qemu_total=$(sed -n 's/^instructions: \([0-9][0-9]*\)$/\1/p' "$icount_output")
        echo "  totals: colo $instructions, QEMU ${qemu_total:-none} (UART polling makes these vary a little)"
    fi
fi

if [ "$failed" -ne 0 ]; then
    echo
    echo "FAILED: see the messages above" >&2
    exit 1
fi
