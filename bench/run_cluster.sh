#!/usr/bin/env bash
# Fault to service on the survivor, per fault kind, with colo on a real
# Corosync cluster and a witness (issue 12; docs/benchmarks.md, "Never two
# copies: fault to service"). Runs tests/replication/colo_cluster_test.sh's
# trials (a protected tiny-guest pair in the lab of scripts/lib/cluster_lab.sh,
# a client writing keys on one connection, each host's LAN output counted)
# N times per kind and prints, per kind: trials, the time from the fault to
# the survivor's decision (p50, p99, max: the survivor has then released
# what it holds and serves), the longest gap the client saw between two
# replies, and the trials in which both copies released output (must be 0).
# Needs root; the tiny guest built (meson -Dlinux_guest=true).
#
# Usage: bench/run_cluster.sh [-n N] [--kinds LIST] [BUILD_DIR]
#   -n N          trials per kind (default 10; the issue's target is stated for 50)
#   --kinds LIST  comma-separated trial names of colo_cluster_test.sh
#                 (default primary_killed,host_dead,host_hung,link_cut:1)
#   BUILD_DIR     a build with the guest (default: build-rel, made with
#                 meson setup -Dbuildtype=release -Dlinux_guest=true)
# Exit status: 0 when every trial passed its checks, 1 otherwise.
set -euo pipefail
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_root=$(dirname "$script_dir")
trials=10 kinds=primary_killed,host_dead,host_hung,link_cut:1 build=$source_root/build-rel
while [ $# -gt 0 ]; do
    case "$1" in
        -n) trials=$2; shift 2 ;;
        --kinds) kinds=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "run_cluster: unknown option $1" >&2; exit 2 ;;
        *) build=$(realpath "$1"); shift ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "run_cluster: needs root (namespaces, TAP devices)" >&2; exit 2; }
if [ ! -d "$build" ]; then
    meson setup "$build" "$source_root" -Dbuildtype=release -Dlinux_guest=true >/dev/null
fi
ninja -C "$build" >/dev/null
list=""
for kind in ${kinds//,/ }; do
    for _ in $(seq "$trials"); do list="$list $kind"; done
done
log=$(mktemp /tmp/colo-bench-cluster.XXXXXX)
echo "host: $(nproc) cores, $(uname -r), corosync $(corosync -v 2>/dev/null | grep -o '[0-9.]*' | head -1)"
echo "timers: token 200 ms, knet ping 200/1000 ms, qdevice timeout 600 ms with heartbeat minimums 200 ms (ffsplit), colo heartbeat timeout 500 ms both ways"
status=0
COLO_CLUSTER_TRIALS=$list bash "$source_root/tests/replication/colo_cluster_test.sh" \
    "$build/programs/colo" "$build/guests/linux" "$source_root" >"$log" 2>&1 || status=1
grep -c "^FAIL" "$log" >/dev/null && grep "^FAIL" "$log" | sed 's/^/  /' || true
python3 - "$log" <<'PY'
import json, re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if not line.startswith("TRIAL "):
        continue
    fields = dict(item.split("=", 1) for item in line.split()[1:])
    rows.setdefault(fields["kind"], []).append(fields)
def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")
print(f"{'fault':<18} {'trials':>6} {'service p50':>12} {'p99':>8} {'max':>8} {'client gap p50':>15} {'max':>8} {'two copies':>11}")
summary = {}
for kind, items in rows.items():
    service = [float(i["service_ms"]) for i in items if i.get("service_ms")]
    gap = [float(i["client_gap_ms"]) for i in items if i.get("client_gap_ms")]
    two = sum(int(i["two_copies"]) for i in items)
    print(f"{kind:<18} {len(items):>6} {pct(service, 50):>10.0f}ms {pct(service, 99):>6.0f}ms {max(service or [0]):>6.0f}ms"
          f" {pct(gap, 50):>13.0f}ms {max(gap or [0]):>6.0f}ms {two:>11}")
    summary[kind] = {"trials": len(items), "service_p50_ms": pct(service, 50), "service_p99_ms": pct(service, 99),
                     "service_max_ms": max(service or [0]), "client_gap_max_ms": max(gap or [0]), "two_copies": two}
print(json.dumps(summary))
PY
echo "log: $log"
exit "$status"
