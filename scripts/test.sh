#!/bin/bash
# Runs the whole test suite: installs what is missing, builds colo with
# AddressSanitizer and UBSan in build-test/, runs every test, then the fuzz
# targets briefly (scripts/fuzz.sh).
# Extra arguments go to `meson test` (e.g. --suite isa, or a test name).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

if [ ! -d build-test ]; then
    meson setup build-test -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
        -Db_lundef=false -Dtest_hooks=true
fi
# The failover tests need the kill hook (an older build-test may lack it).
meson configure build-test -Dtest_hooks=true >/dev/null
ninja -C build-test

export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
meson test -C build-test --print-errorlogs --num-processes 2 "$@" || status=$?

# The parsers' fuzz targets, a short run each (skipped when a subset of
# tests was asked for).
fuzz_passed=0 fuzz_failed=0
if [ $# -eq 0 ]; then
    if bash scripts/fuzz.sh "${COLO_FUZZ_SECONDS:-10}"; then
        fuzz_passed=4
    else
        fuzz_failed=1
        status=1
    fi
fi

# One closing line in the plain form CI reads: "N passed, N failed".
python3 - build-test/meson-logs/testlog.json "$fuzz_passed" "$fuzz_failed" <<'PY'
import json, sys
passed, failed, skipped = int(sys.argv[2]), int(sys.argv[3]), 0
for line in open(sys.argv[1]):
    result = json.loads(line).get("result")
    if result in ("OK", "EXPECTEDFAIL"):
        passed += 1
    elif result == "SKIP":
        skipped += 1
    else:
        failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
