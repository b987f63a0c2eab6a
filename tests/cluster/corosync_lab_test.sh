#!/bin/bash
# The Corosync cluster lab the cluster tests and the demo build on
# (scripts/lib/cluster_lab.sh; issue 12): two nodes and a corosync-qnetd
# witness, each in its own namespaces on one machine (needs root).
# 1. Both nodes come up, see each other and are quorate with the
#    witness's vote.
# 2. corosync killed (-9) on node b: node a stays quorate (its vote and the
#    witness's), and its membership drops to itself.
# 3. Node b back; then node a cut off from everything (its switch port
#    taken off the bridge): a loses quorum, b keeps it, each within a few
#    seconds with the lab's timers. The times are printed.
# Usage: tests/cluster/corosync_lab_test.sh SOURCE_DIR
set -uo pipefail
source_dir=$(realpath "$1")
source "$source_dir/tests/support/e2e_lib.sh"
source "$source_dir/scripts/lib/cluster_lab.sh"
cluster_lab_require_tools

dir=$(mktemp -d /tmp/colo-lab-test.XXXXXX)
prefix=clt$$
cleanup() {
    cluster_lab_destroy "$prefix" "$dir"
    if [ "$failed" -eq 0 ]; then rm -rf "$dir"; else echo "logs kept in $dir"; fi
}
trap cleanup EXIT
trap 'fail "interrupted"; exit 130' INT TERM
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc | awk '{printf "%.2f", $1}'; }

cluster_lab_create "$prefix" "$dir" || { fail "cannot build the lab's namespaces"; exit 1; }
started=$(now)
if cluster_lab_start_corosync "$prefix" "$dir"; then
    pass "two nodes and a witness up, both quorate with the witness's vote, in $(since "$started") s"
else
    fail "the cluster did not come up"; tail -5 "$dir"/*/corosync.out "$dir"/a/log/corosync/corosync.log; exit 1
fi

# ---- 2. corosync killed on b ----
killed=$(now)
kill -9 "$(cat "$dir/b/corosync.pid")" 2>/dev/null
members_of_a() { [ "$(cluster_lab_members "$prefix" "$dir" a)" = 1 ]; }
if until_true 10 members_of_a; then
    seen=$(since "$killed")
    if cluster_lab_quorate "$prefix" "$dir" a; then
        pass "corosync killed on b: a saw it leave after $seen s and stays quorate (its vote and the witness's)"
    else
        fail "corosync killed on b: a is not quorate"
    fi
else
    fail "corosync killed on b: a still counts $(cluster_lab_members "$prefix" "$dir" a) members after 10 s"
fi
kill -9 "$(cat "$dir/b/qdevice.pid")" 2>/dev/null

# ---- 3. b back, then a isolated ----
cluster_lab_spawn "$prefix" "$dir" b "$dir/b/corosync.pid" "$dir/b/corosync.out" corosync -f
both_members() { [ "$(cluster_lab_members "$prefix" "$dir" a)" = 2 ] && [ "$(cluster_lab_members "$prefix" "$dir" b)" = 2 ]; }
until_true 30 both_members || fail "b did not rejoin within 30 s"
cluster_lab_start_qdevice "$prefix" "$dir" b
b_quorate() { cluster_lab_quorate "$prefix" "$dir" b; }
until_true 30 b_quorate && pass "b rejoined and is quorate again" || fail "b not quorate after rejoining"
sleep 2
cut=$(now)
ip -n "$prefix-sw" link set p-a nomaster
a_not_quorate() { ! cluster_lab_quorate "$prefix" "$dir" a; }
b_alone_quorate() { [ "$(cluster_lab_members "$prefix" "$dir" b)" = 1 ] && cluster_lab_quorate "$prefix" "$dir" b; }
if until_true 20 a_not_quorate; then
    pass "a cut off from everything: it lost quorum after $(since "$cut") s"
else
    fail "a cut off from everything still says quorate after 20 s"
fi
if until_true 20 b_alone_quorate; then
    pass "b, with the witness, is quorate alone $(since "$cut") s after the cut"
else
    fail "b is not quorate alone after the cut ($(cluster_lab_members "$prefix" "$dir" b) members)"
fi
echo "corosync_lab_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
