"""The host side of the Linux guest's services, for the tests and the
benchmarks alike: the KV store's line protocol (kvstore.c, port 7000), its
CHECK digest, the stream service (stream.c, port 7002), and the one
percentile definition every measurement of them reports.

The KV protocol: each request is one line (SET KEY VALUE, GET KEY, CHECK,
CHURN N, POWEROFF, REBOOT), each answered by one line (OK, VALUE V,
NOTFOUND, CHECK N HASH, ERR ...), in order; requests may be pipelined.

Scripts elsewhere in the tree import it with their own path:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "..", "guests", "linux"))
Every socket operation has a timeout.
"""
import math
import socket
import time

KV_PORT, ECHO_PORT, STREAM_PORT = 7000, 7001, 7002
TIMEOUT_SECONDS = 30


# ---- percentiles ----

def percentile(values, fraction):
    """Nearest rank: the smallest value with at least `fraction` of the
    values at or below it (p99 of 1,000 samples is the 990th smallest, p50
    of an even count the lower middle one). None for no values. The same
    definition as the library's colo_primary_downtime_percentile()."""
    ordered = sorted(values)
    if not ordered:
        return None
    # The epsilon keeps 0.99 * 100 = 99.00000000000001 at rank 99.
    rank = max(1, math.ceil(fraction * len(ordered) - 1e-9))
    return ordered[min(len(ordered), rank) - 1]


def median(values):
    return percentile(values, 0.5)


# ---- the KV service ----

class KvConnection:
    """One TCP connection to the KV service. TCP_NODELAY: a request goes
    out at once, as a latency measurement needs."""

    def __init__(self, host, port=KV_PORT, timeout=TIMEOUT_SECONDS):
        self.socket = socket.create_connection((host, port), timeout=timeout)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.socket.makefile("rb")

    def send_lines(self, lines):
        """Sends requests in one write (pipelined); read their replies with
        read_line, one each, in order."""
        self.socket.sendall("".join(line + "\n" for line in lines).encode())

    def read_line(self):
        """The next reply, without its newline. ConnectionError (an
        OSError) if the connection ends before a whole line."""
        line = self.reader.readline()
        if not line.endswith(b"\n"):
            raise ConnectionError("connection closed before a whole reply")
        return line[:-1].decode()

    def request(self, line):
        self.send_lines([line])
        return self.read_line()

    def close(self):
        self.reader.close()
        self.socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.close()


def kv_request(host, line, port=KV_PORT, timeout=TIMEOUT_SECONDS):
    """One request on a connection of its own; its reply."""
    with KvConnection(host, port, timeout) as connection:
        return connection.request(line)


def fnv1a64(pairs):
    """CHECK's hash (see kvstore.c): FNV-1a 64 over "key=value\\n" for each
    pair, keys in ascending byte order, as 16 hex digits."""
    hash_value = 0xCBF29CE484222325
    for key in sorted(pairs, key=lambda k: k.encode()):
        for byte in f"{key}={pairs[key]}\n".encode():
            hash_value ^= byte
            hash_value = (hash_value * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{hash_value:016x}"


def expected_check_reply(pairs):
    """What CHECK answers for a store holding exactly `pairs`."""
    return f"CHECK {len(pairs)} {fnv1a64(pairs)}"


def set_get_pairs(host, keep_going, key_prefix, key_count, on_reply=None, port=KV_PORT):
    """SET+GET pairs on ONE connection while keep_going() is true: pair i
    sets KEY_PREFIX(i % key_count) to "v<i>" and reads it back, both
    requests sent together. Every SET must answer OK and every GET the value
    just set. on_reply() is called when a pair's two replies are in.
    Returns (pairs, acknowledged, error): the pairs done without a fault,
    the acknowledged key -> value, and what went wrong (None if nothing)."""
    acknowledged = {}
    pairs = 0
    try:
        with KvConnection(host, port) as connection:
            while keep_going():
                key, value = f"{key_prefix}{pairs % key_count}", f"v{pairs}"
                connection.send_lines([f"SET {key} {value}", f"GET {key}"])
                set_reply = connection.read_line()
                get_reply = connection.read_line()
                if on_reply:
                    on_reply()
                if set_reply != "OK":
                    return pairs, acknowledged, f"SET {key} answered {set_reply!r}"
                acknowledged[key] = value
                if get_reply != f"VALUE {value}":
                    return pairs, acknowledged, f"GET {key} answered {get_reply!r}, expected {value}"
                pairs += 1
    except OSError as problem:
        return pairs, acknowledged, (f"the connection broke after {pairs} pairs "
                                     f"({len(acknowledged)} keys): {type(problem).__name__}: {problem}")
    return pairs, acknowledged, None


def count_wrong_keys(host, acknowledged, port=KV_PORT):
    """Reads every acknowledged key back on a new connection: how many did
    not answer the value last acknowledged. OSError if the connection
    fails."""
    wrong = 0
    with KvConnection(host, port) as connection:
        for key, value in acknowledged.items():
            if connection.request(f"GET {key}") != f"VALUE {value}":
                wrong += 1
    return wrong


# ---- measurements (bench/) ----

def kv_latency(host, requests):
    """Sequential round trips on one connection: `requests` SETs (each
    fdatasync'd by the guest before its reply), then as many GETs. Per
    kind, p50_ms and p99_ms."""
    results = {}
    with KvConnection(host) as connection:
        for kind in ("SET", "GET"):
            samples = []
            for i in range(requests):
                line = f"SET bench{i} value{i}" if kind == "SET" else f"GET bench{i}"
                started = time.perf_counter()
                connection.request(line)
                samples.append(time.perf_counter() - started)
            results[kind] = {"p50_ms": median(samples) * 1e3,
                             "p99_ms": percentile(samples, 0.99) * 1e3}
    return results


def kv_throughput(host, requests, window=32):
    """GET requests per second with `window` of them in flight on one
    connection."""
    with KvConnection(host) as connection:
        started = time.perf_counter()
        sent = received = 0
        while received < requests:
            batch = []
            while sent < requests and sent - received < window:
                batch.append(f"GET bench{sent % 1000}")
                sent += 1
            if batch:
                connection.send_lines(batch)
            connection.read_line()
            received += 1
        return requests / (time.perf_counter() - started)


def stream_throughput(host, size, port=STREAM_PORT):
    """`size` bytes from the guest's stream service (SEND) and as many to it
    (RECV), each on a connection of its own: guest_to_client_MBps and
    client_to_guest_MBps."""
    result = {}
    with socket.create_connection((host, port), timeout=TIMEOUT_SECONDS) as sock:
        started = time.perf_counter()
        sock.sendall(f"SEND {size}\n".encode())
        remaining = size
        while remaining:
            chunk = sock.recv(min(remaining, 1 << 16))
            if not chunk:
                raise ConnectionError("stream closed early")
            remaining -= len(chunk)
        result["guest_to_client_MBps"] = size / (time.perf_counter() - started) / 1e6
    with socket.create_connection((host, port), timeout=TIMEOUT_SECONDS) as sock:
        started = time.perf_counter()
        sock.sendall(f"RECV {size}\n".encode())
        block = b"x" * (1 << 16)
        remaining = size
        while remaining:
            sent = sock.send(block[:min(remaining, len(block))])
            remaining -= sent
        reply = sock.makefile("rb").readline()
        if not reply.startswith(b"OK"):
            raise ConnectionError(f"RECV reply {reply!r}")
        result["client_to_guest_MBps"] = size / (time.perf_counter() - started) / 1e6
    return result
