#!/usr/bin/env python3
"""Unit test of tests/support/lan_output_watch.py's check, the "never two
copies on the LAN" verdict of the cluster, Pacemaker and switchover tests:
one handover passes; a handover whose last and first frames fall into the
same 2 ms sample passes (the watch cannot order them); a copy that releases
again after the other started, in a later sample, fails; --from ignores
what came before. Prints "FAIL: ..." per failed check; exit status 1 if any.

usage: lan_output_watch_test.py SOURCE_ROOT
"""
import os
import subprocess
import sys
import tempfile

source_root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
watch = os.path.join(source_root, "tests", "support", "lan_output_watch.py")
failed = 0


def check(name, lines, expected_status, *extra):
    global failed
    with tempfile.NamedTemporaryFile("w", suffix=".out", delete=False) as out:
        out.write("".join(line + "\n" for line in lines))
    try:
        result = subprocess.run([sys.executable, watch, "check", out.name, *extra], capture_output=True, text=True)
    finally:
        os.unlink(out.name)
    if result.returncode != expected_status:
        print(f"FAIL: {name}: status {result.returncode} (expected {expected_status}): {result.stdout.strip()}")
        failed += 1


start = ["1.0000 p-lan-a 0", "1.0000 p-lan-b 0"]
check("one handover", start + ["1.0100 p-lan-b 5", "1.0300 p-lan-a 9"], 0)
check("last and first frame in one sample", start + ["1.0100 p-lan-b 5", "1.0200 p-lan-a 1", "1.0200 p-lan-b 6",
                                                    "1.0300 p-lan-a 9"], 0)
check("the old copy again, a sample later", start + ["1.0100 p-lan-b 5", "1.0200 p-lan-a 1", "1.0220 p-lan-b 6",
                                                    "1.0300 p-lan-a 9"], 1)
check("back and forth", start + ["1.0100 p-lan-a 2", "1.0200 p-lan-b 1", "1.0300 p-lan-a 3"], 1)
check("--from ignores the earlier copy", start + ["1.0100 p-lan-a 2", "1.0200 p-lan-b 1", "1.0300 p-lan-b 3"], 0,
      "--from", "1.015")
check("nothing recorded", start, 1)
check("nothing since --from", start + ["1.0100 p-lan-a 2"], 1, "--from", "1.5")
print(f"lan_output_watch_test: {'FAIL' if failed else 'ok'}")
sys.exit(1 if failed else 0)
