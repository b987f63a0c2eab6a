# Shared by the COLO end-to-end tests (colo_failover_test.sh,
# colo_killstep_test.sh); source it after setting colo, guest_dir, guest and
# boot_timeout, then call colo_test_begin NAME TAG.
#
# On top of tests/support/e2e_lib.sh (pass/fail, the work directory, the
# namespaces, on_host, wait_for, wait_exit) it provides the topology with
# two "hosts" in one namespace (tapA for the primary, tapB for the
# secondary) and a client namespace; a.cfg and b.cfg (the same VM,
# "guarded", each side with its own disk, which protect makes the same;
# the pair authenticates with the pre-shared key pair.psk);
# replication_eval, replication_field, shift_field, wait_for_protection
# and wait_for_checkpoints; lan_watch_start and lan_check, the "never two
# copies" count of who released output (tests/support/lan_watch.sh).

source "$(dirname "${BASH_SOURCE[0]}")/../support/e2e_lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../support/lan_watch.sh"

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
replication_auth = "psk"
replication_psk = "$work/pair.psk"
CFG
}

colo_test_begin() {  # NAME TAG [TAP...]: the work directory's and the namespaces' names; more TAPs
    e2e_begin "$1" "$2" 10.97.0.1/24 tapA tapB "${@:3}"
    truncate -s 16M "$work/diskA.img" "$work/diskB.img"
    "$colo" keygen psk "$work/pair.psk" --identity guarded >/dev/null
    make_config tapA "$work/diskA.img" >"$work/a.cfg"
    make_config tapB "$work/diskB.img" >"$work/b.cfg"
}

replication_eval() {  # RUN_DIR EXPRESSION: a Python expression over status's "replication" `r`
    on_host "$1" "$colo" status guarded --json 2>/dev/null |
        python3 -c "import json,sys; r=json.load(sys.stdin).get('replication',{}); print($2)" 2>/dev/null
}

replication_field() {  # RUN_DIR FIELD: a field of status's "replication" (empty if none)
    replication_eval "$1" "r.get('$2','')"
}

shift_field() {  # RUN_DIR FIELD: a counter of a secondary's TCP sequence shift (empty if none)
    replication_eval "$1" "r.get('tcp_sequence_shift',{}).get('$2','')"
}

protection_running() {  # RUN_DIR: true when the primary's initial copy is done
    case $(replication_field "$1" state) in RUNNING | CHECKPOINTING) return 0 ;; esac
    return 1
}

wait_for_protection() {  # RUN_DIR: true once the primary's initial copy is done (120 s at most)
    until_true_poll=0.2 until_true 120 protection_running "$1" && return 0
    echo "the primary is '$(replication_field "$1" state)' after 120 s"
    return 1
}

wait_for_checkpoints() {  # RUN_DIR N: true once the primary has taken N (120 s at most)
    until_true_poll=0.2 until_true 120 exceeds $(($2 - 1)) replication_field "$1" checkpoints && return 0
    echo "only '$(replication_field "$1" checkpoints)' checkpoints within 120 s"
    return 1
}
