# Shared by the COLO end-to-end tests (colo_failover_test.sh,
# colo_killstep_test.sh); source it after setting colo, guest_dir, guest and
# boot_timeout, then call colo_test_begin NAME TAG.
#
# It provides pass/fail counting; a work directory; the topology of
# scripts/lib/netns.sh with two "hosts" in one namespace (tapA for the
# primary, tapB for the secondary) and a client namespace, removed on exit
# together with every pid in $pids; a.cfg and b.cfg (the same VM, "guarded",
# each side with its own disk: no disk replication yet); and the helpers
# on_host, wait_for and replication_field.

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/netns.sh"

passed=0 failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
    wait 2>/dev/null
    netns_destroy_topology "$hosts_ns" "$client_ns"
    if [ "$failed" -eq 0 ]; then rm -rf "$work"; else echo "logs kept in $work"; fi
}

make_config() {  # TAP DISK
    cat <<CFG
name = "guarded"
memory = 128
kernel = "$guest_dir/Image"
initrd = "$guest_dir/initramfs.cpio"
cmdline = "console=ttyS0 colo.ip=$guest/24 colo.churn=2000"
disks = [ "path=$2" ]
nics = [ "tap=$1,mac=52:54:00:aa:bb:02" ]
console = "stdio"
CFG
}

colo_test_begin() {  # NAME TAG: the work directory's and the namespaces' names
    work=$(mktemp -d "/tmp/colo-$1-test.XXXXXX")
    hosts_ns=colo-$2$$-hosts client_ns=colo-$2$$-client
    pids=()
    trap cleanup EXIT
    trap 'fail "interrupted"; exit 130' INT TERM
    netns_create_topology "$hosts_ns" "$client_ns" 10.97.0.1/24 tapA tapB ||
        { fail "cannot build the network namespaces"; exit 1; }
    truncate -s 16M "$work/diskA.img" "$work/diskB.img"
    make_config tapA "$work/diskA.img" >"$work/a.cfg"
    make_config tapB "$work/diskB.img" >"$work/b.cfg"
}

on_host() {  # RUN_DIR COMMAND...
    local run_dir=$1; shift
    COLO_RUN_DIR=$run_dir ip netns exec "$hosts_ns" "$@"
}

wait_for() {  # LOG TEXT WHAT PID [TIMEOUT]
    local started=$SECONDS limit=${5:-$boot_timeout}
    while ! grep -q "$2" "$1" 2>/dev/null; do
        kill -0 "$4" 2>/dev/null || { fail "$3: process exited"; tail -20 "$1"; return 1; }
        ((SECONDS - started > limit)) && { fail "$3: no '$2' within $limit s"; tail -20 "$1"; return 1; }
        sleep 0.05
    done
}

replication_field() {  # RUN_DIR FIELD: a field of status's "replication" (empty if none)
    on_host "$1" "$colo" status guarded --json 2>/dev/null |
        python3 -c "import json,sys; print(json.load(sys.stdin).get('replication',{}).get('$2',''))" 2>/dev/null
}
