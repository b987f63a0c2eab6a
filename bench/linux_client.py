#!/usr/bin/env python3
"""Measures a Linux guest's services from a client: KV request latency
(p50/p99 of sequential SET and GET round trips), KV throughput (requests per
second with 32 requests in flight on one connection), and the stream
service's throughput in each direction. Prints one JSON object.

usage: linux_client.py HOST [REQUESTS]
"""
import json
import socket
import statistics
import sys
import time

KV_PORT, STREAM_PORT = 7000, 7002
TIMEOUT = 30


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def kv_latency(host, requests):
    with socket.create_connection((host, KV_PORT), timeout=TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        results = {}
        for kind in ("SET", "GET"):
            samples = []
            for i in range(requests):
                line = f"SET bench{i} value{i}\n" if kind == "SET" else f"GET bench{i}\n"
                started = time.perf_counter()
                sock.sendall(line.encode())
                reply = reader.readline()
                samples.append(time.perf_counter() - started)
                if not reply:
                    raise ConnectionError("connection closed")
            results[kind] = {"p50_ms": statistics.median(samples) * 1e3,
                             "p99_ms": percentile(samples, 0.99) * 1e3}
        return results


def kv_throughput(host, requests, window=32):
    with socket.create_connection((host, KV_PORT), timeout=TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        started = time.perf_counter()
        sent = received = 0
        while received < requests:
            batch = []
            while sent < requests and sent - received < window:
                batch.append(f"GET bench{sent % 1000}\n")
                sent += 1
            if batch:
                sock.sendall("".join(batch).encode())
            reader.readline()
            received += 1
        return requests / (time.perf_counter() - started)


def stream(host, size):
    result = {}
    with socket.create_connection((host, STREAM_PORT), timeout=TIMEOUT) as sock:
        started = time.perf_counter()
        sock.sendall(f"SEND {size}\n".encode())
        remaining = size
        while remaining:
            chunk = sock.recv(min(remaining, 1 << 16))
            if not chunk:
                raise ConnectionError("stream closed early")
            remaining -= len(chunk)
        result["guest_to_client_MBps"] = size / (time.perf_counter() - started) / 1e6
    with socket.create_connection((host, STREAM_PORT), timeout=TIMEOUT) as sock:
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


def main():
    host = sys.argv[1]
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    output = {"latency": kv_latency(host, requests),
              "kv_requests_per_s": kv_throughput(host, requests * 4),
              "stream": stream(host, 8 << 20)}
    print(json.dumps(output))


if __name__ == "__main__":
    main()
