#!/bin/sh
# Running 2N instructions must give the same hart state, RAM hash and
# console output as running N, saving, loading into a fresh process and
# running N more (deterministic time mode).
set -eu
colo=$1 elf=$2 n=${3:-3000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Control sockets of this run's VMs (all named "ticker") go here, so that
# copies of this test running at the same time do not collide.
export COLO_RUN_DIR=$work/run

"$colo" run "$elf" --deterministic --max-instructions $((2 * n)) --print-state \
    >"$work/straight.out" 2>"$work/straight.err"
"$colo" run "$elf" --deterministic --max-instructions "$n" --save-on-exit "$work/half.colo" \
    >"$work/split.out" 2>"$work/first.err"
"$colo" run --load "$work/half.colo" --max-instructions "$n" --print-state \
    >>"$work/split.out" 2>"$work/second.err"

straight=$(grep '^state:' "$work/straight.err")
split=$(grep '^state:' "$work/second.err")
echo "straight: $straight"
echo "split:    $split"
dots=$(tr -cd . <"$work/straight.out" | wc -c)
echo "console: $dots dots (one per 64 timer interrupts)"
status=0
if [ "$straight" != "$split" ]; then
    echo "FAIL: state differs after save/load"; status=1
fi
if ! cmp -s "$work/straight.out" "$work/split.out"; then
    echo "FAIL: console output differs"; status=1
fi
if [ "$dots" -lt 3 ]; then
    echo "FAIL: too few timer interrupts ($dots dots): the test would not exercise them"; status=1
fi
exit $status
