#!/usr/bin/env python3
"""Reads back every key a client saved as acknowledged (continuous_client.py
SAVE_FILE), on a new connection to the guest's KV service: prints one PASS
or FAIL line, exits 1 if any key is missing or wrong.

usage: check_keys.py HOST SAVE_FILE...
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "guests", "linux"))
from guest_client import count_wrong_keys  # noqa: E402


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    acknowledged = {}
    for path in sys.argv[2:]:
        with open(path) as saved:
            acknowledged.update(json.load(saved))
    if not acknowledged:
        print("FAIL: no acknowledged key to check")
        sys.exit(1)
    wrong = count_wrong_keys(sys.argv[1], acknowledged)
    if wrong:
        print(f"FAIL: {wrong} of {len(acknowledged)} acknowledged keys missing or wrong")
        sys.exit(1)
    print(f"PASS: all {len(acknowledged)} acknowledged keys read back")


if __name__ == "__main__":
    main()
