#!/bin/bash
# The README's first command, end to end: scripts/demo.sh (a release build
# in build/, the Debian VM protected across two namespaced hosts, kill -9
# of the primary under a Redis and PostgreSQL workload) must end with the
# VM serving on the secondary, no client error, every acknowledged key and
# commit there, pgbench's balances adding up and the survivor's disk clean.
# Usage: tests/debian/demo_test.sh SOURCE_DIR
set -uo pipefail
source_dir=$(realpath "$1")
log=$(mktemp /tmp/colo-demo-test.XXXXXX)
trap 'rm -f "$log"' EXIT

status=0
timeout -s TERM 1500 bash "$source_dir/scripts/demo.sh" --load-seconds 8 >"$log" 2>&1 || status=$?
sed 's/^/  demo: /' "$log" | grep -v "^  demo: \[" | tail -40
python3 - "$log" "$status" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
status = int(sys.argv[2])
if not lines:
    print(f"FAIL: the demo printed no JSON line (exit {status})")
    sys.exit(1)
result = json.loads(lines[-1])
checks = [
    ("the demo exited 0", status == 0),
    ("no client error", result.get("client_errors") == 0),
    ("no acknowledged key missing", result.get("keys_missing") == 0),
    ("no key with a wrong value", result.get("keys_wrong") == 0),
    ("keys were acknowledged", (result.get("keys_acknowledged") or 0) > 0),
    ("checkpoints were taken", (result.get("checkpoints") or 0) > 0),
    ("commits were acknowledged", (result.get("commits_acknowledged") or 0) > 0),
    ("no acknowledged commit missing", result.get("commits_missing") == 0),
    ("pgbench ran, no failed transaction", (result.get("pgbench_tps") or 0) > 0 and result.get("pgbench_failed") == 0),
    ("pgbench's balances add up on the survivor", result.get("pgbench_balances_add_up") is True),
    ("the survivor's disk is clean (e2fsck -fn)", result.get("image_clean") is True),
    ("the pair ran on Corosync and B took over by the cluster's rule",
     result.get("cluster") == "corosync" and any(word in (result.get("takeover_reason") or "")
                                                 for word in ("left", "claim"))),
]
for what, ok in checks:
    print(("PASS: " if ok else "FAIL: ") + what)
print("demo:", json.dumps(result))
sys.exit(0 if all(ok for _, ok in checks) else 1)
PY
