#!/bin/bash
# Open-ended fuzzing, outside the test command's verdict (docs/fuzzing.md).
#
#   scripts/fuzz.sh [--merge] [SECONDS] [TARGET...]
#
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and
# runs each TARGET (stream_reader or fuzz_stream_reader; default: every one
# tests/fuzz/meson.build registers) for SECONDS (default 60), starting from its
# committed corpus tests/fuzz/corpus/fuzz_<name>/ plus what earlier runs
# found (kept in build-fuzz/fuzz-corpus/). A crash, a sanitizer report or a
# broken invariant fails the run and leaves the input in build-fuzz/.
#
# --merge: afterwards, adds to each committed corpus the inputs of the run
# that reach code it does not (libFuzzer -merge=1; nothing is removed), for
# you to review and commit.
set -euo pipefail
cd "$(dirname "$0")/.."

merge=false
if [ "${1:-}" = --merge ]; then
    merge=true
    shift
fi
seconds=60
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi
if [ ! -d build-fuzz ]; then
    CC=clang meson setup build-fuzz -Dfuzzing=true -Dbuildtype=debugoptimized \
        -Db_sanitize=address,undefined -Db_lundef=false -Dlinux_guest=false \
        -Dguest_tests=false -Dwerror=true >/dev/null
fi
# The targets are what tests/fuzz/meson.build registers (regenerate the
# build files first, in case it changed).
ninja -C build-fuzz build.ninja >/dev/null
mapfile -t known < <(meson introspect build-fuzz --targets | python3 -c '
import json, sys
for target in json.load(sys.stdin):
    if target["type"] == "executable" and target["name"].startswith("fuzz_"):
        print(target["name"])' | sort)
targets=()
for name in "$@"; do
    name=fuzz_${name#fuzz_}
    [[ " ${known[*]} " == *" $name "* ]] || { echo "fuzz: no target $name (known: ${known[*]})"; exit 2; }
    targets+=("$name")
done
[ ${#targets[@]} -gt 0 ] || targets=("${known[@]}")
if ! output=$(ninja -C build-fuzz "${targets[@]/#/tests/fuzz/}" 2>&1); then
    echo "$output"
    exit 1
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
failed=()
for target in "${targets[@]}"; do
    binary=build-fuzz/tests/fuzz/$target
    committed=tests/fuzz/corpus/$target
    work=build-fuzz/fuzz-corpus/$target
    mkdir -p "$work" "$committed"
    # Targets that can write a valid input of today's format do so: the
    # committed one may predate a format change. libFuzzer reports the
    # seed writer's exit() as an error; the file is what counts.
    if grep -q COLO_FUZZ_WRITE_SEED "tests/fuzz/$target.c"; then
        COLO_FUZZ_WRITE_SEED="$work/seed" "$binary" -artifact_prefix=build-fuzz/seed- >/dev/null 2>&1 || true
        [ -s "$work/seed" ] || { echo "fuzz: $target could not write its seed"; exit 1; }
    fi
    echo "fuzz: $target for ${seconds}s"
    # New inputs go to the first directory only: the committed corpus is
    # read, never written, until --merge.
    if "$binary" -max_total_time="$seconds" -max_len=65536 -artifact_prefix="build-fuzz/$target-" \
            "$work" "$committed" 2>"build-fuzz/$target.log"; then
        grep -E '^#[0-9]+.*DONE|Done [0-9]+ runs' "build-fuzz/$target.log" | tail -1
    else
        tail -40 "build-fuzz/$target.log"
        echo "fuzz: $target FAILED (the input is build-fuzz/$target-crash-*, or see build-fuzz/$target.log)"
        failed+=("$target")
        continue
    fi
    if $merge; then
        before=$(find "$committed" -type f | wc -l)
        "$binary" -merge=1 "$committed" "$work" >"build-fuzz/$target-merge.log" 2>&1 ||
            { tail -20 "build-fuzz/$target-merge.log"; echo "fuzz: merge into $committed failed"; exit 1; }
        after=$(find "$committed" -type f | wc -l)
        echo "fuzz: $committed: $((after - before)) new inputs ($after in all)"
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}"
    exit 1
fi
