#!/bin/bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and
# runs each for SECONDS (default 10) from a seed corpus of real inputs.
# A crash, a sanitizer report or a broken invariant fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}

if [ ! -d build-fuzz ]; then
    CC=clang meson setup build-fuzz -Dfuzzing=true -Dbuildtype=debugoptimized \
        -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
if ! output=$(ninja -C build-fuzz tests/fuzz/fuzz_elf_loader tests/fuzz/fuzz_machine_state tests/fuzz/fuzz_stream_reader \
        tests/fuzz/fuzz_vm_config \
        tests/machine/dirty_pages.elf guests/demo/hello.elf 2>&1); then
    echo "$output"
    exit 1
fi

corpus=build-fuzz/fuzz-corpus
mkdir -p "$corpus/elf" "$corpus/state" "$corpus/stream" "$corpus/config"
cp tests/fuzz/seed.cfg "$corpus/config/"
cp build-fuzz/tests/machine/dirty_pages.elf build-fuzz/guests/demo/hello.elf "$corpus/elf/"
# libFuzzer reports the seed writer's exit() as an error; the file is what counts.
COLO_FUZZ_WRITE_SEED="$corpus/state/seed" build-fuzz/tests/fuzz/fuzz_machine_state \
    -artifact_prefix=build-fuzz/seed- >/dev/null 2>&1 || true
[ -s "$corpus/state/seed" ] || { echo "fuzz: could not write the state seed"; exit 1; }
COLO_FUZZ_WRITE_SEED="$corpus/stream/seed" build-fuzz/tests/fuzz/fuzz_stream_reader \
    -artifact_prefix=build-fuzz/seed- >/dev/null 2>&1 || true
[ -s "$corpus/stream/seed" ] || { echo "fuzz: could not write the stream seed"; exit 1; }

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for target in fuzz_elf_loader:elf fuzz_machine_state:state fuzz_stream_reader:stream fuzz_vm_config:config; do
    name=${target%%:*} dir=$corpus/${target##*:}
    echo "fuzz: $name for ${seconds}s"
    build-fuzz/tests/fuzz/$name -max_total_time="$seconds" -max_len=65536 \
        -artifact_prefix=build-fuzz/ "$dir" 2>build-fuzz/$name.log ||
        { tail -40 build-fuzz/$name.log; echo "fuzz: $name FAILED (crash input in build-fuzz/)"; exit 1; }
    grep -E '^#[0-9]+.*DONE|Done [0-9]+ runs' build-fuzz/$name.log | tail -1
done
