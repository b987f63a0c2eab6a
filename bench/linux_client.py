#!/usr/bin/env python3
"""Measures a Linux guest's services from a client: KV request latency
(p50/p99 of sequential SET and GET round trips), KV throughput (requests per
second with 32 requests in flight on one connection), and the stream
service's throughput in each direction. Prints one JSON object. The
measurements and their percentile definition (nearest rank) are
guests/linux/guest_client.py's.

usage: linux_client.py HOST [REQUESTS]
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "guests", "linux"))
from guest_client import kv_latency, kv_throughput, stream_throughput  # noqa: E402


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    host = sys.argv[1]
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    output = {"latency": kv_latency(host, requests),
              "kv_requests_per_s": kv_throughput(host, requests * 4),
              "stream": stream_throughput(host, 8 << 20)}
    print(json.dumps(output))


if __name__ == "__main__":
    main()
