#!/usr/bin/env python3
"""A Redis client that writes keys and checks every acknowledged one.

Usage: redis_writer.py HOST PORT STOP_FILE [PREFIX]

One connection; SET PREFIX:N to a value derived from N, one request at a
time, until STOP_FILE exists. A key counts as acknowledged when its +OK
came back. Then every acknowledged key is read back (MGET, in batches) and
compared. A dropped connection is a client error: the writer reconnects and
goes on, so the count says how often the service was lost. Prints one line
of JSON: keys_acknowledged, keys_missing, keys_wrong, client_errors,
service_gap_ms (the longest wait between two acknowledgements),
latency_p50_ms, latency_p99_ms.

Speaks RESP itself (Python's standard library only: Debian 12's python3).
"""
import json
import os
import socket
import sys
import time


def command(*words):
    out = [b"*%d\r\n" % len(words)]
    for word in words:
        data = word if isinstance(word, bytes) else str(word).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Connection:
    def __init__(self, host, port, timeout):
        self.socket = socket.create_connection((host, port), timeout=timeout)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def line(self):
        while b"\r\n" not in self.buffer:
            chunk = self.socket.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def exact(self, length):
        while len(self.buffer) < length + 2:
            chunk = self.socket.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.buffer += chunk
        data, self.buffer = self.buffer[:length], self.buffer[length + 2:]
        return data

    def reply(self):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            return None if length < 0 else self.exact(length).decode()
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line!r}")

    def call(self, *words):
        self.socket.sendall(command(*words))
        return self.reply()


def value_of(prefix, number):
    return f"{prefix}-value-{number}-{(number * 2654435761) % 2**32:08x}"


def main():
    host, port, stop_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    prefix = sys.argv[4] if len(sys.argv) > 4 else "writer"
    errors, acknowledged, latencies = 0, [], []
    connection = None
    last_ack = None
    longest_gap = 0.0
    number = 0
    while not os.path.exists(stop_file):
        try:
            if connection is None:
                connection = Connection(host, port, timeout=30)
            started = time.monotonic()
            reply = connection.call("SET", f"{prefix}:{number}", value_of(prefix, number))
            now = time.monotonic()
            if reply != "OK":
                raise RuntimeError(f"SET answered {reply!r}")
            acknowledged.append(number)
            latencies.append(now - started)
            if last_ack is not None:
                longest_gap = max(longest_gap, now - last_ack)
            last_ack = now
            number += 1
        except (OSError, ConnectionError, RuntimeError) as error:
            errors += 1
            print(f"redis_writer: error: {error}", file=sys.stderr)
            connection = None
            number += 1  # that key's fate is unknown; it is not counted
            time.sleep(0.2)

    missing = wrong = 0
    try:
        reader = Connection(host, port, timeout=30)
        for start in range(0, len(acknowledged), 500):
            batch = acknowledged[start:start + 500]
            values = reader.call("MGET", *[f"{prefix}:{n}" for n in batch])
            for n, value in zip(batch, values):
                if value is None:
                    missing += 1
                elif value != value_of(prefix, n):
                    wrong += 1
    except (OSError, ConnectionError, RuntimeError) as error:
        errors += 1
        missing = len(acknowledged)
        print(f"redis_writer: error while verifying: {error}", file=sys.stderr)

    latencies.sort()

    def percentile(fraction):
        if not latencies:
            return None
        rank = max(1, -(-len(latencies) * fraction // 1))  # nearest rank
        return round(latencies[int(rank) - 1] * 1000, 2)

    print(json.dumps({
        "keys_acknowledged": len(acknowledged), "keys_missing": missing, "keys_wrong": wrong,
        "client_errors": errors, "service_gap_ms": round(longest_gap * 1000, 1),
        "latency_p50_ms": percentile(0.50), "latency_p99_ms": percentile(0.99),
    }))
    return 0 if errors == 0 and missing == 0 and wrong == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
