#!/bin/bash
# `colo protect` says what is wrong, and when (needs root: namespaces, TAP).
# One Linux VM boots on "host A" (the hosts namespace of colo_test_lib.sh);
# then, one after the other:
#   - protect to a closed port exits 1 at once, saying "refused";
#   - protect to an address whose packets vanish (a tap nobody reads, behind
#     a permanent neighbour entry) exits 1 within the default 10 s connect
#     timeout, saying "timed out"; --wait-timeout ends the wait first
#     (exit 3) while the VM goes on trying; an "unreachable" route is named
#     as such; --no-wait returns 0 at once, as before;
#   - secondaries whose RAM, disk size or NIC MAC differ are refused: protect
#     exits 1 naming both values, and the secondary's log names them too;
#   - a good secondary: protect exits 0 once the initial copy has started,
#     says compare mode's default interval (1000 ms), and checkpoints follow.
# Usage: tests/replication/colo_protect_errors_test.sh COLO GUEST_DIR
set -uo pipefail
colo=$(realpath "$1") guest_dir=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
boot_timeout=120
guest=10.97.0.2

source "$here/colo_test_lib.sh"
colo_test_begin protect-errors pe
mkdir -p "$work/A" "$work/S"

milliseconds() { echo $(($(date +%s%N) / 1000000)); }

# protect_expect WHAT EXPECTED_STATUS MIN_MS MAX_MS TEXT PROTECT_ARGS...: runs
# colo protect on A; checks its exit status, how long it took, and TEXT
# (a grep -E pattern) in what it printed.
protect_expect() {
    local what=$1 want=$2 min=$3 max=$4 text=$5; shift 5
    local started took status
    started=$(milliseconds)
    on_host "$work/A" "$colo" protect guarded "$@" >"$work/protect.log" 2>&1
    status=$? took=$(($(milliseconds) - started))
    if [ "$status" -ne "$want" ]; then
        fail "$what: exit status $status, expected $want: $(cat "$work/protect.log")"
    elif ((took < min || took > max)); then
        fail "$what: took $took ms, expected $min..$max: $(cat "$work/protect.log")"
    elif ! grep -Eq "$text" "$work/protect.log"; then
        fail "$what: '$text' not in: $(cat "$work/protect.log")"
    else
        pass "$what (exit $status after $took ms): $(grep -E -m1 "$text" "$work/protect.log")"
    fi
}

wait_unprotected() {  # the previous protection has ended (30 s at most)
    local started=$SECONDS
    until [ "$(replication_field "$work/A" state)" = unprotected ]; do
        ((SECONDS - started > 30)) && { fail "the primary is still '$(replication_field "$work/A" state)'"; return 1; }
        sleep 0.1
    done
}

# start_secondary CONFIG PORT: a colo secondary for CONFIG on 127.0.0.1:PORT
start_secondary() {
    COLO_RUN_DIR=$work/S ip netns exec "$hosts_ns" "$colo" secondary --listen "127.0.0.1:$2" "$1" \
        >"$work/secondary-$2.log" 2>&1 </dev/null &
    secondary_pid=$!; pids+=("$secondary_pid")
    wait_for "$work/secondary-$2.log" "waiting for the primary" "secondary on port $2 listening" "$secondary_pid"
}

# refused_secondary WHAT CONFIG PORT TEXT: the secondary is refused, protect
# and the secondary's log name TEXT, and the secondary ends.
refused_secondary() {
    start_secondary "$2" "$3" || return 1
    protect_expect "$1: protect fails naming the difference" 1 0 20000 "$4" "127.0.0.1:$3"
    if grep -Eq "$4" "$work/secondary-$3.log"; then
        pass "$1: the secondary's log names it: $(grep -E -m1 "$4" "$work/secondary-$3.log" | cut -c1-300)"
    else
        fail "$1: the secondary's log does not say '$4': $(tail -5 "$work/secondary-$3.log")"
    fi
    wait_exit "$secondary_pid" 30; local status=$?
    [ "$status" -ne 124 ] && pass "$1: the refused secondary ended (status $status)" ||
        { fail "$1: the refused secondary still runs"; kill -9 "$secondary_pid"; }
    wait_unprotected
}

COLO_RUN_DIR=$work/A ip netns exec "$hosts_ns" "$colo" run "$work/a.cfg" >"$work/primary.log" 2>&1 </dev/null &
primary_pid=$!; pids+=("$primary_pid")
wait_for "$work/primary.log" "colo-guest: services ready" "primary boot" "$primary_pid" || exit 1
pass "the VM booted on A"

# ---- the connection ----
protect_expect "a closed port" 1 0 3000 "cannot connect to 127\.0\.0\.1:47190: refused" 127.0.0.1:47190
wait_unprotected

ip netns exec "$hosts_ns" sh -e -c '
    ip tuntap add dev blackhole0 mode tap
    ip link set blackhole0 up
    ip address add 192.0.2.2/24 dev blackhole0
    ip neighbour add 192.0.2.1 lladdr 02:00:00:00:00:01 dev blackhole0 nud permanent
    ip route add unreachable 198.51.100.0/24' || { fail "cannot make the black hole"; exit 1; }
protect_expect "a host that drops packets (default connect timeout)" 1 9500 16000 \
    "cannot connect to 192\.0\.2\.1:47100: timed out after 10000 ms" 192.0.2.1:47100
wait_unprotected
protect_expect "a host that drops packets, --connect-timeout 1500" 1 1400 6000 "timed out after 1500 ms" \
    192.0.2.1:47100 --connect-timeout 1500
wait_unprotected
protect_expect "--wait-timeout shorter than the connect" 3 900 4000 "has not started within 1\.0 s.*goes on trying" \
    192.0.2.1:47100 --connect-timeout 4000 --wait-timeout 1000
if [ "$(replication_field "$work/A" state)" = connecting ]; then
    pass "after --wait-timeout the primary is still connecting"
else
    fail "after --wait-timeout the primary is '$(replication_field "$work/A" state)', not connecting"
fi
wait_unprotected
reason=$(replication_field "$work/A" ended)
echo "$reason" | grep -q "timed out after 4000 ms" && pass "status then says: $reason" ||
    fail "status after the timed-out connect: '$reason'"
protect_expect "an unreachable network" 1 0 3000 "cannot connect to 198\.51\.100\.1:47100: unreachable" \
    198.51.100.1:47100
wait_unprotected
protect_expect "--no-wait returns at once, as before" 0 0 3000 "protecting guarded" 127.0.0.1:47190 --no-wait
wait_unprotected

# ---- machines that differ ----
sed 's/^memory = 128$/memory = 64/' "$work/b.cfg" >"$work/ram.cfg"
refused_secondary "RAM 64 MiB against 128 MiB" "$work/ram.cfg" 47101 \
    "the machines differ: the secondary's RAM is 64 MiB, the primary's 128 MiB"

truncate -s 8M "$work/small.img"
make_config tapB "$work/small.img" >"$work/disk.cfg"
refused_secondary "an 8 MiB disk against 16 MiB" "$work/disk.cfg" 47102 \
    "disk 0: the secondary's image is 8388608 bytes, the primary's 16777216"

sed 's/mac=52:54:00:aa:bb:02/mac=52:54:00:aa:bb:09/' "$work/b.cfg" >"$work/mac.cfg"
refused_secondary "another MAC" "$work/mac.cfg" 47103 \
    "nic 0: MAC 52:54:00:aa:bb:09 on the secondary, 52:54:00:aa:bb:02 on the primary"

# ---- a good pair ----
start_secondary "$work/b.cfg" 47104 || exit 1
protect_expect "a good secondary: protect returns once the initial copy started" 0 0 30000 \
    "the initial copy has started" 127.0.0.1:47104
# Without --interval, compare mode (the default) checkpoints every second.
if grep -q "checkpoint at least every 1000 ms; a reply leaves once" "$work/protect.log"; then
    pass "compare mode's default interval is 1000 ms"
else
    fail "compare mode's default interval is not 1000 ms: $(cat "$work/protect.log")"
fi
if message=$(wait_for_checkpoints "$work/A" 5); then
    pass "the pair then took 5 checkpoints"
else
    fail "no checkpoints after a successful protect: $message"
fi
on_host "$work/A" "$colo" quit guarded >/dev/null 2>&1
wait_exit "$primary_pid" 60 >/dev/null
wait_exit "$secondary_pid" 60 >/dev/null

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
