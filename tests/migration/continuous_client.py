#!/usr/bin/env python3
"""A client that keeps ONE TCP connection to the guest's KV service and
writes and verifies keys without pause until STOP_FILE exists (or the time
limit passes). Every SET must be acknowledged and every GET must return the
value last acknowledged for that key. At the end it reconnects and reads
back every acknowledged key. Prints PASS/FAIL lines and the longest gap
between two replies (the service gap the client saw).

usage: continuous_client.py HOST STOP_FILE [MAX_SECONDS]
"""
import os
import socket
import sys
import time

KV_PORT = 7000


def main():
    host, stop_file = sys.argv[1], sys.argv[2]
    max_seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 300
    failures = 0
    acknowledged = {}
    longest_gap = 0.0
    started = last_reply = time.monotonic()
    try:
        sock = socket.create_connection((host, KV_PORT), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        i = 0
        while not os.path.exists(stop_file) and time.monotonic() - started < max_seconds:
            key, value = f"m{i % 5000}", f"v{i}"
            sock.sendall(f"SET {key} {value}\nGET {key}\n".encode())
            set_reply = reader.readline()
            get_reply = reader.readline()
            now = time.monotonic()
            longest_gap = max(longest_gap, now - last_reply)
            last_reply = now
            if set_reply != b"OK\n":
                print(f"FAIL: SET {key} answered {set_reply!r}")
                failures += 1
                break
            acknowledged[key] = value
            if get_reply != f"VALUE {value}\n".encode():
                print(f"FAIL: GET {key} answered {get_reply!r}, expected {value}")
                failures += 1
                break
            i += 1
        sock.close()
        print(f"PASS: one connection, {i} SET+GET pairs without an error; longest gap between replies {longest_gap * 1000:.1f} ms")
    except OSError as error:
        print(f"FAIL: the connection broke after {len(acknowledged)} keys: {type(error).__name__}: {error}")
        failures += 1
    try:
        sock = socket.create_connection((host, KV_PORT), timeout=30)
        reader = sock.makefile("rb")
        wrong = 0
        for key, value in acknowledged.items():
            sock.sendall(f"GET {key}\n".encode())
            if reader.readline() != f"VALUE {value}\n".encode():
                wrong += 1
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
