#!/bin/bash
# What TLS costs the replication (issue 13; docs/benchmarks.md, "What TLS
# costs"): bench/run_replication.sh's checkpoint downtime at 0 and 1,000
# dirty pages, KV latency and stream throughput (the client's frames go
# through the mirror connection, the replies through the checkpoints), and
# the highest checkpoint rate, once with replication_auth = "none" (plain
# TCP) and once with "psk" (TLS 1.3), in the same run, alternating
# ROUNDS times (default 2) so that drift on the host hits both alike.
# Needs root and the tiny guest (meson -Dlinux_guest=true).
# Usage: bench/run_tls.sh [COLO [GUEST_DIR]]   (defaults: build/...)
set -uo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
rounds=${ROUNDS:-2}
status=0
for round in $(seq 1 "$rounds"); do
    for auth in none psk; do
        echo "==== round $round: replication_auth = $auth"
        REP_AUTH=$auth REP_LEVELS="0 1000" REP_CHECKPOINTS=${REP_CHECKPOINTS:-100} REP_KILLS=0 REP_FREEZES=0 \
            REP_OUTPUT_DELAYS=" " bash "$here/run_replication.sh" "$@" || status=1
    done
done
exit $status
