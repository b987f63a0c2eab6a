#!/usr/bin/env python3
"""Unit test of guests/linux/guest_client.py, the KV client every test and
benchmark imports: the percentile definition (nearest rank) on known
inputs, the CHECK digest of an empty store, and the client against a
stand-in KV server on a loopback port (requests, pipelining, SET+GET pairs,
read-back, a connection cut mid-reply). Then every script that imports the
module is loaded, so a broken import path fails here and not in a slow
Linux test. Prints "FAIL: ..." per failed check; exit status 1 if any.

usage: guest_client_test.py SOURCE_ROOT
"""
import importlib.util
import os
import socket
import socketserver
import sys
import threading

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
source_root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(source_root, "guests", "linux"))
import guest_client  # noqa: E402

failures = 0


def check(condition, what):
    global failures
    if not condition:
        failures += 1
        print(f"FAIL: {what}", flush=True)


class StandInKvHandler(socketserver.StreamRequestHandler):
    """The KV protocol as kvstore.c answers it (no disk, no churner).
    CUT closes the connection half-way through a reply."""

    def handle(self):
        # As the guest's server: each reply goes out at once, not after
        # the client's delayed ACK of the one before.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        store = self.server.store
        for raw in self.rfile:
            words = raw.decode().rstrip("\n").split(" ", 2)
            if words[0] == "SET" and len(words) == 3:
                store[words[1]] = words[2]
                reply = "OK"
            elif words[0] == "GET" and len(words) == 2:
                reply = f"VALUE {store[words[1]]}" if words[1] in store else "NOTFOUND"
            elif words == ["CHECK"]:
                reply = guest_client.expected_check_reply(store)
            elif words == ["CUT"]:
                self.wfile.write(b"VAL")
                return
            else:
                reply = "ERR unknown request"
            self.wfile.write((reply + "\n").encode())


class StandInKvServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def test_percentile():
    percentile, median = guest_client.percentile, guest_client.median
    thousand = list(range(1000, 0, -1))           # 1..1000, unsorted
    check(percentile(thousand, 0.99) == 990, f"p99 of 1..1000 is {percentile(thousand, 0.99)}, not 990")
    check(percentile(thousand, 0.5) == 500, f"p50 of 1..1000 is {percentile(thousand, 0.5)}, not 500")
    check(percentile(thousand, 1.0) == 1000, "p100 is not the maximum")
    check(percentile(thousand, 0.0) == 1, "p0 is not the minimum")
    check(percentile(range(1, 101), 0.99) == 99, "p99 of 1..100 is not 99 (0.99 * 100 in floating point)")
    check(median([4, 1, 3, 2]) == 2, "the median of an even count is not the lower middle value")
    check(median([7]) == 7 and percentile([7], 0.99) == 7, "a single value is not every percentile")
    check(percentile([], 0.5) is None, "no values do not give None")


def test_digest():
    check(guest_client.expected_check_reply({}) == "CHECK 0 cbf29ce484222325",
          "an empty store's CHECK is not FNV-1a 64's offset basis")
    check(guest_client.fnv1a64({"b": "1", "a": "2"}) == guest_client.fnv1a64({"a": "2", "b": "1"}),
          "the digest depends on insertion order")


def test_client(host, port):
    with guest_client.KvConnection(host, port, timeout=10) as connection:
        check(connection.request("SET greeting hello there") == "OK", "SET")
        check(connection.request("GET greeting") == "VALUE hello there", "GET of a value with spaces")
        check(connection.request("GET nothing") == "NOTFOUND", "GET of a missing key")
        connection.send_lines([f"SET k{i} {i}" for i in range(50)] + [f"GET k{i}" for i in range(50)])
        replies = [connection.read_line() for _ in range(100)]
        check(replies == ["OK"] * 50 + [f"VALUE {i}" for i in range(50)], "pipelined replies out of order")
        check(connection.request("CHECK") == guest_client.expected_check_reply(
            dict({"greeting": "hello there"}, **{f"k{i}": str(i) for i in range(50)})), "CHECK of the store")
    check(guest_client.kv_request(host, "GET k7", port=port, timeout=10) == "VALUE 7", "kv_request")

    budget = iter(range(200))
    pairs, acknowledged, error = guest_client.set_get_pairs(
        host, lambda: next(budget, None) is not None, "p", 30, port=port)
    check(error is None and pairs == 200, f"SET+GET pairs: {pairs}, {error}")
    check(len(acknowledged) == 30 and acknowledged["p19"] == "v199", "the acknowledged keys are not the last values")
    check(guest_client.count_wrong_keys(host, acknowledged, port=port) == 0, "read-back found wrong keys")
    check(guest_client.count_wrong_keys(host, {"p0": "something else"}, port=port) == 1,
          "read-back missed a wrong key")

    try:
        guest_client.kv_request(host, "CUT", port=port, timeout=10)
        check(False, "a reply cut short was taken as a whole one")
    except ConnectionError:
        pass


def test_importers():
    """Loads every script that imports guest_client (not running main)."""
    for path in ("guests/linux/kvclient.py", "tests/migration/continuous_client.py", "bench/linux_client.py",
                 "bench/replication_helper.py", "bench/migration_helper.py"):
        spec = importlib.util.spec_from_file_location("importer", os.path.join(source_root, path))
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as error:   # noqa: BLE001 -- any failure to load is the finding
            check(False, f"{path} does not load: {type(error).__name__}: {error}")
        else:
            check(hasattr(module, "main"), f"{path} has no main")


def main():
    test_percentile()
    test_digest()
    with StandInKvServer(("127.0.0.1", 0), StandInKvHandler) as server:
        server.store = {}
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        try:
            test_client(*server.server_address)
        except (OSError, socket.timeout) as error:
            check(False, f"the client against the stand-in server: {type(error).__name__}: {error}")
        server.shutdown()
    test_importers()
    print("ok" if not failures else f"{failures} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
