#!/bin/bash
# Runs the whole test suite: installs what is missing, builds colo with
# AddressSanitizer and UBSan in build-test/ and runs every test, the fuzz
# targets' replay of their committed corpora included (suite 'fuzz'). No
# random exploration: the same commit gets the same verdict every time
# (open-ended fuzzing is scripts/fuzz.sh, see docs/fuzzing.md). Then the
# threaded tests again under ThreadSanitizer (scripts/test_tsan.sh).
# Extra arguments go to `meson test` (e.g. --suite isa, or a test name).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

if [ ! -d build-test ]; then
    meson setup build-test -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
        -Db_lundef=false -Dtest_hooks=true -Dwerror=true
fi
# The failover tests need the kill hook (an older build-test may lack it).
meson configure build-test -Dtest_hooks=true >/dev/null
ninja -C build-test

export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
meson test -C build-test --print-errorlogs --num-processes 2 "$@" || status=$?

# Then the threaded tests under ThreadSanitizer (scripts/test_tsan.sh),
# unless a subset of tests was asked for; they count in the closing line.
tsan_log=()
if [ $# -eq 0 ]; then
    bash scripts/test_tsan.sh || status=$?
    tsan_log=(build-tsan/meson-logs/testlog.json)
fi

# The failed tests by name, with the end of their output, then one closing
# line in the plain form CI reads: "N passed, N failed". CI shows only the
# tail of a run, so what failed must be there, not only higher up.
python3 - build-test/meson-logs/testlog.json "${tsan_log[@]}" <<'PY'
import fileinput, json, sys
passed, failed, skipped = 0, 0, 0
failures = []
for line in fileinput.input(sys.argv[1:]):
    test = json.loads(line)
    result = test.get("result")
    if result in ("OK", "EXPECTEDFAIL"):
        passed += 1
    elif result == "SKIP":
        skipped += 1
    else:
        failed += 1
        failures.append((fileinput.filename(), test))
for log, test in failures:
    output = (test.get("stdout") or "") + (test.get("stderr") or "")
    tail = output.splitlines()[-40:]
    print(f"--- FAILED {test.get('name')} ({test.get('result')}, "
          f"{test.get('duration', 0):.1f} s, {log}); its last lines:")
    print("\n".join(tail))
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
