# Shared by the end-to-end test scripts that run VMs in network namespaces
# (source it; bash). It provides pass/fail counting; e2e_begin, which makes
# a work directory and the topology of scripts/lib/netns.sh (a hosts
# namespace with a bridge and the given TAPs, a client namespace), removed
# on exit together with every pid in $pids (the work directory is kept
# when a check failed); and the helpers on_host, on_client, wait_for,
# until_true and wait_exit. A script sets boot_timeout (seconds, default 120) for
# wait_for.

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/netns.sh"

passed=0 failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

e2e_cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
    wait 2>/dev/null
    netns_destroy_topology "$hosts_ns" "$client_ns"
    if [ "$failed" -eq 0 ]; then rm -rf "$work"; else echo "logs kept in $work"; fi
}

# Sets work, hosts_ns, client_ns and pids; exits if the namespaces cannot
# be made.
e2e_begin() { # NAME TAG CLIENT_CIDR TAP...: NAME names the work directory, TAG the namespaces
    work=$(mktemp -d "/tmp/colo-$1-test.XXXXXX")
    hosts_ns=colo-$2$$-hosts client_ns=colo-$2$$-client
    pids=()
    trap e2e_cleanup EXIT
    trap 'fail "interrupted"; exit 130' INT TERM
    netns_create_topology "$hosts_ns" "$client_ns" "$3" "${@:4}" ||
        { fail "cannot build the network namespaces"; exit 1; }
}

on_host() { # RUN_DIR COMMAND...: in the hosts namespace, with its own control sockets
    local run_dir=$1; shift
    COLO_RUN_DIR=$run_dir ip netns exec "$hosts_ns" "$@"
}
on_client() { ip netns exec "$client_ns" "$@"; }

# Waits for TEXT in LOG; fails (and shows the log's end) if PID exits or
# TIMEOUT (default $boot_timeout) seconds pass first.
wait_for() { # LOG TEXT WHAT PID [TIMEOUT]
    local started=$SECONDS limit=${5:-${boot_timeout:-120}}
    while ! grep -q "$2" "$1" 2>/dev/null; do
        kill -0 "$4" 2>/dev/null || { fail "$3: process exited"; tail -20 "$1"; return 1; }
        ((SECONDS - started > limit)) && { fail "$3: no '$2' within $limit s"; tail -20 "$1"; return 1; }
        sleep 0.05
    done
}

# Polls COMMAND (a shell function, say) every until_true_poll seconds
# (default 0.05) until it succeeds; false after LIMIT seconds.
until_true() { # LIMIT COMMAND...
    local limit=$1 started=$SECONDS
    shift
    until "$@"; do
        ((SECONDS - started >= limit)) && return 1
        sleep "${until_true_poll:-0.05}"
    done
}

# For until_true: true when COMMAND prints a number greater than N (a
# counter that grew past where it was).
exceeds() { # N COMMAND...
    local limit=$1 value
    shift
    value=$("$@") && [ -n "$value" ] && [ "$value" -gt "$limit" ] 2>/dev/null
}

# Waits for PID (a child of this shell) to exit; returns its exit status,
# or 124 if it still runs after TIMEOUT seconds.
wait_exit() { # PID TIMEOUT
    local started=$SECONDS
    while kill -0 "$1" 2>/dev/null; do
        ((SECONDS - started >= $2)) && return 124
        sleep 0.05
    done
    wait "$1"
}
