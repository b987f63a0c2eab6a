#!/usr/bin/env python3
"""Test client for the colo guest's services (KV store 7000, echo 7001,
stream 7002). Every socket operation has a timeout; each check prints one
PASS or FAIL line, and the exit status is non-zero if any check failed.

HOST may be HOST:PORT for a forwarded guest (run_qemu.sh --user-net: 127.0.0.1:17000):
PORT is then the KV store's, PORT+1 the echo's and PORT+2 the stream's.

Usage:
  kvclient.py HOST first  STATE.json   checks on a fresh store; saves what it stored
  kvclient.py HOST again  STATE.json   after a restart: the stored data is still there
  kvclient.py HOST poweroff            asks the VM to power off
  kvclient.py HOST check               prints CHECK's answer

CHECK's hash: see guest_client.fnv1a64.
"""
import json
import socket
import sys
import threading
import time

from guest_client import (ECHO_PORT, KV_PORT, STREAM_PORT, TIMEOUT_SECONDS, KvConnection,
                          expected_check_reply)

results = {"passed": 0, "failed": 0}


def report(ok, name, detail=""):
    results["passed" if ok else "failed"] += 1
    detail = f": {detail}" if detail and not ok else ""
    print(f"{'PASS' if ok else 'FAIL'}: {name}{detail}", flush=True)
    return ok


def connect(host):
    """A KV connection to HOST at KV_PORT (which main may have moved)."""
    return KvConnection(host, KV_PORT)


def check_round_trips(host, stored):
    connection = connect(host)
    failures = []
    for i in range(100):
        key, value = f"key{i:03d}", f"value {i} with spaces {i * i}"
        if (reply := connection.request(f"SET {key} {value}")) != "OK":
            failures.append(f"SET {key} -> {reply}")
        stored[key] = value
    for i in range(100):
        key = f"key{i:03d}"
        if (reply := connection.request(f"GET {key}")) != f"VALUE {stored[key]}":
            failures.append(f"GET {key} -> {reply}")
    # Overwrite, missing keys, errors.
    connection.request("SET key000 replaced")
    stored["key000"] = "replaced"
    expectations = [
        ("GET key000", "VALUE replaced"),
        ("GET no-such-key", "NOTFOUND"),
        ("SET lonely", "ERR"),
        ("FROB x", "ERR"),
        ("GET", "ERR"),
        ("CHURN lots", "ERR"),
    ]
    for request, expected in expectations:
        reply = connection.request(request)
        if not (reply == expected or (expected == "ERR" and reply.startswith("ERR "))):
            failures.append(f"{request} -> {reply} (expected {expected})")
    connection.close()
    return report(not failures, "SET/GET round trips (207 requests)", "; ".join(failures[:3]))


def check_many_requests(host, stored, count=10000, window=50):
    """count requests on one connection, half SET and half GET, sent in
    windows of `window` pipelined requests."""
    connection = connect(host)
    started = time.monotonic()
    failures = 0
    first_failure = ""
    for base in range(0, count, window):
        lines, expected = [], []
        for i in range(base, min(base + window, count)):
            key = f"bulk{i // 2 % 1000:04d}"
            if i % 2 == 0:
                value = f"v{i}"
                stored[key] = value
                lines.append(f"SET {key} {value}")
                expected.append("OK")
            else:
                lines.append(f"GET {key}")
                expected.append(f"VALUE {stored[key]}")
        connection.send_lines(lines)
        for want in expected:
            got = connection.read_line()
            if got != want:
                failures += 1
                first_failure = first_failure or f"got {got!r}, expected {want!r}"
    elapsed = time.monotonic() - started
    connection.close()
    return report(failures == 0,
                  f"{count} requests on one connection in {elapsed:.1f} s "
                  f"({count / elapsed:.0f} requests/s)",
                  f"{failures} wrong replies, first: {first_failure}" if failures else "")


def check_concurrent_clients(host, stored, clients=16, requests=100):
    errors = []

    def client(number):
        try:
            connection = connect(host)
            for i in range(requests):
                key, value = f"c{number:02d}-{i:03d}", f"from client {number}"
                if connection.request(f"SET {key} {value}") != "OK":
                    errors.append(f"SET {key}")
                if connection.request(f"GET {key}") != f"VALUE {value}":
                    errors.append(f"GET {key}")
            connection.close()
        except OSError as error:
            errors.append(f"client {number}: {error}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for number in range(clients):
        for i in range(requests):
            stored[f"c{number:02d}-{i:03d}"] = f"from client {number}"
    return report(not errors, f"{clients} concurrent clients x {2 * requests} requests",
                  "; ".join(errors[:3]))


def check_digest(host, stored, name="CHECK matches the client's model"):
    connection = connect(host)
    reply = connection.request("CHECK")
    connection.close()
    expected = expected_check_reply(stored)
    return report(reply == expected, f"{name} ({len(stored)} keys)",
                  "" if reply == expected else f"got {reply!r}, expected {expected!r}")


def check_all_values(host, stored):
    connection = connect(host)
    wrong = []
    keys = sorted(stored)
    for base in range(0, len(keys), 100):
        batch = keys[base:base + 100]
        connection.send_lines([f"GET {key}" for key in batch])
        for key in batch:
            if (reply := connection.read_line()) != f"VALUE {stored[key]}":
                wrong.append(f"{key} -> {reply}")
    connection.close()
    return report(not wrong, f"GET returns every stored value ({len(keys)} keys)",
                  "; ".join(wrong[:3]))


def check_echo(host, size=1 << 20):
    payload = bytes(i * 7 % 251 for i in range(size))
    started = time.monotonic()
    with socket.create_connection((host, ECHO_PORT), timeout=TIMEOUT_SECONDS) as connection:
        received = bytearray()
        sender = threading.Thread(target=connection.sendall, args=(payload,))
        sender.start()
        while len(received) < size:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        sender.join()
    elapsed = time.monotonic() - started
    return report(received == payload,
                  f"echo 1 MiB back ({size / elapsed / 1e6:.1f} MB/s)")


def check_stream(host, size=4 << 20):
    with socket.create_connection((host, STREAM_PORT), timeout=TIMEOUT_SECONDS) as connection:
        started = time.monotonic()
        connection.sendall(f"SEND {size}\n".encode())
        received = 0
        while received < size:
            chunk = connection.recv(1 << 16)
            if not chunk:
                break
            received += len(chunk)
        send_seconds = time.monotonic() - started
        started = time.monotonic()
        connection.sendall(f"RECV {size}\n".encode() + b"x" * size)
        reply = connection.makefile("rb").readline()
        receive_seconds = time.monotonic() - started
    return report(received == size and reply == b"OK\n",
                  f"stream 4 MiB each way (guest sends {size / send_seconds / 1e6:.1f} MB/s, "
                  f"receives {size / receive_seconds / 1e6:.1f} MB/s)",
                  f"received {received} bytes, reply {reply!r}")


def check_churn(host):
    connection = connect(host)
    replies = [connection.request("CHURN 1000"), connection.request("CHURN 0")]
    connection.close()
    return report(replies == ["OK", "OK"], "CHURN sets the churner's rate", str(replies))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    host, action = sys.argv[1], sys.argv[2]
    if ":" in host:
        global KV_PORT, ECHO_PORT, STREAM_PORT
        host, port = host.rsplit(":", 1)
        KV_PORT, ECHO_PORT, STREAM_PORT = int(port), int(port) + 1, int(port) + 2
    try:
        if action == "first":
            stored = {}
            check_round_trips(host, stored)
            check_many_requests(host, stored)
            check_concurrent_clients(host, stored)
            check_digest(host, stored)
            check_echo(host)
            check_stream(host)
            check_churn(host)
            with open(sys.argv[3], "w") as state:
                json.dump(stored, state)
        elif action == "again":
            with open(sys.argv[3]) as state:
                stored = json.load(state)
            check_all_values(host, stored)
            check_digest(host, stored, "CHECK after the restart matches")
        elif action == "poweroff":
            connection = connect(host)
            reply = connection.request("POWEROFF")
            report(reply == "OK", "POWEROFF acknowledged", reply)
        elif action == "reboot":
            connection = connect(host)
            reply = connection.request("REBOOT")
            report(reply == "OK", "REBOOT acknowledged", reply)
        elif action == "check":
            connection = connect(host)
            print(connection.request("CHECK"))
        else:
            sys.exit(__doc__)
    except (OSError, ConnectionError, ValueError) as error:
        report(False, f"{action}: {type(error).__name__}: {error}")
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
