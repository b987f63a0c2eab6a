#!/bin/bash
# Runs the tests that start threads (meson suite 'threads') under
# ThreadSanitizer, in their own build: build-tsan/ (gcc's TSan, libtsan2;
# no guest programs or Linux guest needed there). scripts/test.sh runs it
# after the ASan run. Extra arguments go to `meson test` (e.g. a test name).
# TSan's options and suppressions come with each test (tests/meson.build,
# tests/tsan_suppressions.txt); see docs/testing.md.
#
# build-tsan/meson-logs/testlog.json always describes this run: a build
# that fails leaves one failed entry there, so a count over it is right.
set -euo pipefail
cd "$(dirname "$0")/.."

log=build-tsan/meson-logs/testlog.json
rm -f "$log"
build_failed() {
    mkdir -p "$(dirname "$log")"
    echo '{"name": "tsan-build", "result": "FAIL"}' >"$log"
    echo "test_tsan: the ThreadSanitizer build failed" >&2
    exit 1
}

if [ ! -d build-tsan ]; then
    meson setup build-tsan -Dbuildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false \
        -Dlinux_guest=false -Dguest_tests=false -Dwerror=true >/dev/null || build_failed
fi
# Warnings are errors in the test builds (an older build-tsan may predate that).
meson configure build-tsan -Dwerror=true >/dev/null || build_failed
ninja -C build-tsan || build_failed

# gcc 12's TSan runtime cannot place its shadow memory when the kernel
# randomizes mmap addresses with more than 28 bits (newer kernels' default;
# "FATAL: ThreadSanitizer: unexpected memory mapping"): run without address
# randomization where setarch allows it.
no_aslr=()
if setarch "$(uname -m)" -R true 2>/dev/null; then
    no_aslr=(setarch "$(uname -m)" -R)
fi
# TSan slows the tests 5-15x: three times their usual timeouts.
"${no_aslr[@]}" meson test -C build-tsan --print-errorlogs --num-processes 2 --timeout-multiplier 3 \
    --suite threads "$@"
