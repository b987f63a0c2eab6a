#!/usr/bin/env python3
"""Every test of the build is in exactly one of the suites 'quick' (run
after every change; all of them together well under a minute) and 'slow'
(the Linux end-to-end tests and other long runs): a test without either
would silently drop out of `meson test --suite quick`. Reads the build's
own list of tests (meson-info/intro-tests.json).

usage: suite_labels_test.py BUILD_DIR
"""
import json
import os
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(os.path.join(sys.argv[1], "meson-info", "intro-tests.json")) as listing:
        tests = json.load(listing)
    wrong = []
    for test in tests:
        # Suites are listed as "project:suite".
        suites = {suite.split(":", 1)[-1] for suite in test["suite"]}
        if len(suites & {"quick", "slow"}) != 1:
            wrong.append(f"{test['name']} (suites {', '.join(sorted(suites))})")
    for line in wrong:
        print(f"FAIL: not in exactly one of 'quick' and 'slow': {line}")
    print(f"{len(tests)} tests, {len(wrong)} without a speed label")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
