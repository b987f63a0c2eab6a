#!/bin/bash
# The colo OCF resource agent's answers that need no VM: meta-data is
# well-formed XML of OCF 1.1 with the promotable roles, every parameter and
# action; validate-all says OCF_ERR_CONFIGURED (6) for a missing config,
# an unreadable one or a bad listen address or peer, OCF_ERR_INSTALLED (5)
# for a missing colo; monitor finds nothing (7) where no colo runs, also
# as a probe without colo installed; stop of nothing succeeds; an unknown
# action is OCF_ERR_UNIMPLEMENTED (3).
# Usage: tests/cluster/ocf_agent_basics_test.sh COLO SOURCE_DIR
set -uo pipefail
colo=$(realpath "$1") source_dir=$(realpath "$2")
agent=$source_dir/scripts/ocf/colo
[ -f /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs ] ||
    { echo "FAIL: /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs is missing (resource-agents, scripts/setup.sh)"; exit 1; }

passed=0 failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
work=$(mktemp -d /tmp/colo-ocf-basics-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
printf 'name = "basics"\nmemory = 128\n' >"$work/vm.cfg"
printf 'memory = 128\n' >"$work/unnamed.cfg"

run_agent() {  # ACTION [VAR=VALUE...]: the agent's exit status; its output in $work/out
    local action=$1; shift
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin OCF_ROOT=/usr/lib/ocf COLO_RUN_DIR="$work/run" \
        HA_RSCTMP="$work/rsc" OCF_RESOURCE_INSTANCE=basics OCF_RESKEY_config="$work/vm.cfg" \
        OCF_RESKEY_listen=127.0.0.1:47500 OCF_RESKEY_colo_binary="$colo" "$@" \
        "$agent" "$action" >"$work/out" 2>&1
}
expect() {  # WANTED WHAT ACTION [VAR=VALUE...]
    local wanted=$1 what=$2; shift 2
    run_agent "$@"
    local rc=$?
    if [ "$rc" -eq "$wanted" ]; then
        pass "$what: $rc"
    else
        fail "$what: $rc, wanted $wanted"
        sed 's/^/  /' "$work/out"
    fi
}

# ---- meta-data ----
run_agent meta-data
if python3 - "$work/out" <<'PY'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "resource-agent" and root.get("name") == "colo", root.tag
assert root.findtext("version") == "1.1", "OCF version"
parameters = {p.get("name"): p for p in root.iter("parameter")}
for name in ("config", "name", "listen", "peers", "cluster", "colo_binary", "extra_options", "secondary_options"):
    assert name in parameters, "parameter " + name
    assert parameters[name].findtext("longdesc").strip(), "description of " + name
assert parameters["config"].get("required") == "1" and parameters["listen"].get("required") == "1"
assert parameters["colo_binary"].find("content").get("default") == "colo"
actions = [a.get("name") for a in root.iter("action")]
for name in ("start", "stop", "promote", "demote", "notify", "monitor", "meta-data", "validate-all"):
    assert name in actions, "action " + name
monitors = {a.get("role"): a.get("interval") for a in root.iter("action") if a.get("name") == "monitor"}
assert set(monitors) == {"Promoted", "Unpromoted"}, monitors
assert monitors["Promoted"] != monitors["Unpromoted"], "one interval per role"
PY
then
    pass "meta-data is well-formed OCF 1.1 XML with every parameter, action and one monitor per role"
else
    fail "meta-data"; sed 's/^/  /' "$work/out"
fi
if command -v xmllint >/dev/null && [ -f /usr/share/resource-agents/ra-api-1.dtd ]; then
    if xmllint --noout --valid --path /usr/share/resource-agents "$work/out" 2>"$work/lint"; then
        pass "meta-data is valid against ra-api-1.dtd"
    else
        fail "meta-data is not valid against ra-api-1.dtd"; sed 's/^/  /' "$work/lint"
    fi
fi

# ---- validate-all ----
expect 0 "validate-all of a good configuration" validate-all
expect 6 "validate-all without config" validate-all OCF_RESKEY_config=
expect 6 "validate-all of a missing config" validate-all OCF_RESKEY_config="$work/nonexistent.cfg"
expect 6 "validate-all without listen" validate-all OCF_RESKEY_listen=
expect 6 "validate-all of listen without a port" validate-all OCF_RESKEY_listen=127.0.0.1
expect 6 "validate-all of listen with port 70000" validate-all OCF_RESKEY_listen=127.0.0.1:70000
expect 6 "validate-all of a peer without an address" validate-all OCF_RESKEY_peers="nodeA=10.0.0.1:4800 nodeB"
expect 5 "validate-all without the colo program" validate-all OCF_RESKEY_colo_binary="$work/no-colo"
expect 6 "start without config" start OCF_RESKEY_config=

# ---- nothing running ----
expect 7 "monitor where no colo runs" monitor OCF_RESKEY_CRM_meta_interval=10000
expect 7 "probe without the colo program" monitor OCF_RESKEY_CRM_meta_interval=0 OCF_RESKEY_colo_binary="$work/no-colo"
expect 0 "stop where no colo runs" stop
expect 0 "notify where no colo runs" notify OCF_RESKEY_CRM_meta_notify_type=post OCF_RESKEY_CRM_meta_notify_operation=start
expect 1 "promote where no colo runs" promote
expect 3 "an unknown action" migrate_to

# ---- what monitor makes of colo's status (a stand-in colo answers) ----
cat >"$work/fake-colo" <<'SH'
#!/bin/sh
# Records its arguments; `status` prints the reply in fake-status, if any.
dir=$(dirname "$0")
echo "$*" >>"$dir/fake-calls"
if [ "$1" = status ] && [ -f "$dir/fake-status" ]; then cat "$dir/fake-status"; exit 0; fi
echo "fake colo: no VM" >&2
exit 1
SH
chmod +x "$work/fake-colo"
fake() { expect "$@" OCF_RESKEY_colo_binary="$work/fake-colo"; }
status_reply() {  # REPLICATION-OBJECT (empty: none)
    printf '{"ok":true,"name":"basics","state":"running","disks":[{"path":"x","state":"waiting"}]%s}\n' \
        "${1:+,\"replication\":$1}" >"$work/fake-status"
}
fake 7 "monitor, colo does not answer" monitor
grep -q "^status basics " "$work/fake-calls" && pass "the VM's name comes from the configuration" ||
    fail "monitor did not ask for 'basics': $(cat "$work/fake-calls")"
: >"$work/fake-calls"
fake 7 "monitor of an unnamed configuration" monitor OCF_RESKEY_config="$work/unnamed.cfg"
grep -q "^status unnamed " "$work/fake-calls" && pass "an unnamed configuration's VM is named after its file" ||
    fail "monitor did not ask for 'unnamed': $(cat "$work/fake-calls")"
: >"$work/fake-calls"
fake 7 "monitor with the name parameter" monitor OCF_RESKEY_name=other
grep -q "^status other " "$work/fake-calls" && pass "the name parameter wins" ||
    fail "monitor did not ask for 'other': $(cat "$work/fake-calls")"
status_reply '{"role":"secondary","checkpoints":0,"state":"waiting"}'
fake 0 "monitor of a waiting secondary" monitor
status_reply '{"role":"secondary","checkpoints":7,"last":{"state":"x"},"state":"RESUMED"}'
fake 0 "monitor of a secondary in step with its primary" monitor
status_reply '{"role":"secondary","state":"failed over"}'
fake 8 "monitor of a secondary that took over" monitor OCF_RESKEY_CRM_meta_interval=11000
fake 8 "probe of a secondary that took over" monitor OCF_RESKEY_CRM_meta_interval=0 OCF_RESKEY_CRM_meta_role=Unpromoted
fake 0 "the unpromoted role's monitor of a secondary that took over" monitor \
    OCF_RESKEY_CRM_meta_interval=11000 OCF_RESKEY_CRM_meta_role=Unpromoted
status_reply '{"role":"secondary","state":"failover refused"}'
fake 1 "monitor of a secondary that refused to take over" monitor
status_reply '{"role":"primary","checkpoints":3,"state":"RUNNING"}'
fake 8 "monitor of a protected primary" monitor

# ---- promotion scores (a stand-in crm_attribute records them) ----
mkdir -p "$work/sbin"
printf '#!/bin/sh\necho "$*" >>"%s/scores"\n' "$work" >"$work/sbin/crm_attribute"
chmod +x "$work/sbin/crm_attribute"
scored() { fake "$@" OCF_RESKEY_crm_feature_set=3.16.1 HA_SBIN_DIR="$work/sbin"; }
last_score() { tail -n 1 "$work/scores" 2>/dev/null | sed -n 's/.*-v \([0-9]*\).*/\1/p'; }
status_reply '{"role":"primary","checkpoints":3,"state":"RUNNING"}'
scored 8 "monitor of the running VM, in a cluster" monitor OCF_RESKEY_CRM_meta_interval=10000
[ "$(last_score)" = 1000 ] && pass "the running VM's host scores 1000" ||
    fail "the running VM's host scores '$(last_score)' ($(cat "$work/scores" 2>/dev/null))"
# The promoted VM died here (no answer, exit status 1 recorded): Pacemaker
# must not prefer this host for the promotion that follows its recovery.
rm -f "$work/fake-status"
mkdir -p "$work/rsc/colo-basics"
echo promoted >"$work/rsc/colo-basics/basics.role"
echo 1 >"$work/rsc/colo-basics/basics.exit"
scored 9 "monitor of a promoted VM that died" monitor OCF_RESKEY_CRM_meta_interval=10000
[ "$(last_score)" = 1 ] && pass "a dead promoted VM's host scores 1, below any live instance" ||
    fail "a dead promoted VM's host scores '$(last_score)' ($(tail -n 1 "$work/scores" 2>/dev/null))"
rm -rf "$work/rsc/colo-basics" "$work/scores"
status_reply '{"role":"primary","state":"unprotected"}'
fake 8 "monitor of an unprotected primary" monitor
status_reply ''
fake 8 "monitor of a plain colo run" monitor

# notify post-start on the promoted side protects to the started peer, and
# only then; nothing else does.
: >"$work/fake-calls"
peers="OCF_RESKEY_peers=nodeA=10.0.0.1:4800 nodeB=10.0.0.2:4800"
fake 0 "notify post-start of nodeB on nodeA" notify "$peers" OCF_RESKEY_CRM_meta_on_node=nodeA \
    OCF_RESKEY_CRM_meta_notify_type=post OCF_RESKEY_CRM_meta_notify_operation=start \
    OCF_RESKEY_CRM_meta_notify_start_uname=nodeB
grep -q "^protect basics 10.0.0.2:4800" "$work/fake-calls" && pass "notify protected the VM to nodeB" ||
    fail "notify did not protect to nodeB: $(cat "$work/fake-calls")"
: >"$work/fake-calls"
fake 0 "notify pre-start of nodeB on nodeA" notify "$peers" OCF_RESKEY_CRM_meta_on_node=nodeA \
    OCF_RESKEY_CRM_meta_notify_type=pre OCF_RESKEY_CRM_meta_notify_operation=start \
    OCF_RESKEY_CRM_meta_notify_start_uname=nodeB
fake 0 "notify post-promote on nodeA" notify "$peers" OCF_RESKEY_CRM_meta_on_node=nodeA \
    OCF_RESKEY_CRM_meta_notify_type=post OCF_RESKEY_CRM_meta_notify_operation=promote \
    OCF_RESKEY_CRM_meta_notify_promote_uname=nodeA
status_reply '{"role":"primary","checkpoints":3,"state":"RUNNING"}'
fake 0 "promote of a protected primary (confirms)" promote "$peers" OCF_RESKEY_CRM_meta_on_node=nodeA
status_reply '{"role":"secondary","state":"waiting"}'
fake 0 "notify post-start of nodeA on nodeA, a secondary" notify "$peers" OCF_RESKEY_CRM_meta_on_node=nodeA \
    OCF_RESKEY_CRM_meta_notify_type=post OCF_RESKEY_CRM_meta_notify_operation=start \
    OCF_RESKEY_CRM_meta_notify_start_uname="nodeA nodeB"
if grep -q "^protect" "$work/fake-calls"; then
    fail "a notify or promote protected where it must not: $(grep "^protect" "$work/fake-calls")"
else
    pass "no protect from pre-start, post-promote, a protected primary or a secondary"
fi

# The options colo secondary gets: --cluster only when the parameter is
# set, the extra options as words. (The stand-in exits at once: start fails.)
rm -f "$work/fake-status"
: >"$work/fake-calls"
fake 1 "start with cluster=corosync against a colo that exits" start OCF_RESKEY_cluster=corosync \
    OCF_RESKEY_extra_options="--memory 64"
grep -q -- "^secondary --listen 127.0.0.1:47500 --name basics --cluster corosync --memory 64 $work/vm.cfg" \
    "$work/fake-calls" && pass "start passes --cluster corosync and the extra options to colo secondary" ||
    fail "colo secondary got other arguments: $(grep -v '^status' "$work/fake-calls")"
: >"$work/fake-calls"
fake 1 "start without cluster against a colo that exits" start
grep -q -- "^secondary --listen 127.0.0.1:47500 --name basics $work/vm.cfg" "$work/fake-calls" &&
    pass "start passes no --cluster when the parameter is empty" ||
    fail "colo secondary got other arguments: $(grep -v '^status' "$work/fake-calls")"

# A primary that has not yet noticed its secondary's restart (still
# RUNNING for a few status calls): notify waits for it, then protects.
cat >"$work/fake-colo" <<'SH'
#!/bin/sh
# Replicating for the first 4 status calls, unprotected after.
dir=$(dirname "$0")
echo "$*" >>"$dir/fake-calls"
[ "$1" = status ] || exit 0
count=$(($(cat "$dir/fake-count" 2>/dev/null || echo 0) + 1))
echo "$count" >"$dir/fake-count"
state=RUNNING
[ "$count" -gt 4 ] && state=unprotected
echo "{\"ok\":true,\"name\":\"basics\",\"state\":\"running\",\"replication\":{\"role\":\"primary\",\"state\":\"$state\"}}"
SH
: >"$work/fake-calls"
fake 0 "notify post-start of nodeB to a primary that notices the loss late" notify "$peers" \
    OCF_RESKEY_CRM_meta_on_node=nodeA OCF_RESKEY_CRM_meta_notify_type=post \
    OCF_RESKEY_CRM_meta_notify_operation=start OCF_RESKEY_CRM_meta_notify_start_uname=nodeB
grep -q "^protect basics 10.0.0.2:4800" "$work/fake-calls" && pass "notify waited for the primary to be unprotected and protected it" ||
    fail "notify did not protect after the primary noticed the loss: $(cat "$work/fake-calls")"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
