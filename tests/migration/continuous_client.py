#!/usr/bin/env python3
"""A client that keeps ONE TCP connection to the guest's KV service and
writes and verifies keys without pause until STOP_FILE exists (or the time
limit passes). Every SET must be acknowledged and every GET must return the
value last acknowledged for that key. At the end it reconnects and reads
back every acknowledged key. Prints PASS/FAIL lines and the longest gap
between two replies (the service gap the client saw).

usage: continuous_client.py HOST STOP_FILE [MAX_SECONDS [KEY_PREFIX [SAVE_FILE [FAULT_FILE]]]]

KEY_PREFIX (default "m") names the keys; SAVE_FILE (or "-"), if given,
receives the acknowledged key -> value as JSON, for a later check
(check_keys.py). FAULT_FILE, if given: the longest gap counts only the
gaps that end after that file appeared (the fault's, not the start of a
protection's).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "guests", "linux"))
from guest_client import count_wrong_keys, set_get_pairs  # noqa: E402


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    host, stop_file = sys.argv[1], sys.argv[2]
    max_seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 300
    key_prefix = sys.argv[4] if len(sys.argv) > 4 else "m"
    save_file = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] != "-" else None
    fault_file = sys.argv[6] if len(sys.argv) > 6 else None
    failures = 0
    started = time.monotonic()
    reply_times = {"last": started, "longest_gap": 0.0}

    def on_reply():
        now = time.monotonic()
        if fault_file is None or os.path.exists(fault_file):
            reply_times["longest_gap"] = max(reply_times["longest_gap"], now - reply_times["last"])
        reply_times["last"] = now

    pairs, acknowledged, error = set_get_pairs(
        host, lambda: not os.path.exists(stop_file) and time.monotonic() - started < max_seconds,
        key_prefix, 5000, on_reply)
    if save_file:
        with open(save_file, "w") as saved:
            json.dump(acknowledged, saved)
    if error:
        print(f"FAIL: {error}")
        failures += 1
    else:
        print(f"PASS: one connection, {pairs} SET+GET pairs without an error; longest gap between replies "
              f"{reply_times['longest_gap'] * 1000:.1f} ms{' (since the fault)' if fault_file else ''}")
    try:
        wrong = count_wrong_keys(host, acknowledged)
        if wrong:
            print(f"FAIL: {wrong} of {len(acknowledged)} acknowledged keys read back wrong")
            failures += 1
        else:
            print(f"PASS: all {len(acknowledged)} acknowledged keys read back")
    except OSError as error:
        print(f"FAIL: reading back: {type(error).__name__}: {error}")
        failures += 1
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
