# The guest KV service's clients that remember what they were promised,
# for the tests that check acknowledged keys after a failover, a migration
# or a fresh boot. Source it after tests/support/e2e_lib.sh, with `guest`
# (the VM's address) set; `work`, `client_ns` and `pids` come from e2e_begin.
#
#   run_client TAG SECONDS [FAULT_FILE]
#                            continuous_client.py in the background, keys
#                            TAG-0, TAG-1, ...; the acknowledged ones go to
#                            $work/keys-TAG.json; with FAULT_FILE its
#                            longest gap between replies counts from when
#                            that file appears
#   finish_client TAG WHAT   stops it (waits 60 s at most): pass if it saw
#                            no error and read back every acknowledged key,
#                            with its longest gap between replies
#   check_keys WHAT TAG...   pass if every key the clients TAG... saw
#                            acknowledged reads back now (a new connection)

kv_keys_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../migration" && pwd)

run_client() {  # TAG SECONDS [FAULT_FILE]
    rm -f "$work/stop-$1"
    ip netns exec "$client_ns" python3 "$kv_keys_dir/continuous_client.py" "$guest" "$work/stop-$1" "$2" "$1-" \
        "$work/keys-$1.json" ${3:+"$3"} >"$work/client-$1.log" 2>&1 &
    client_pid=$!; pids+=("$client_pid")
}

finish_client() {  # TAG WHAT
    touch "$work/stop-$1"
    local status waited=0
    while kill -0 "$client_pid" 2>/dev/null && ((waited < 600)); do sleep 0.1; waited=$((waited + 1)); done
    if kill -0 "$client_pid" 2>/dev/null; then
        kill -9 "$client_pid" 2>/dev/null
        status=124
    else
        wait "$client_pid"; status=$?
    fi
    sed 's/^/  client: /' "$work/client-$1.log"
    if [ "$status" -eq 0 ]; then
        pass "$2: the client's one connection carried on and every acknowledged key reads back ($(grep -o 'longest gap between replies [0-9.]* ms[ a-z()]*' "$work/client-$1.log"))"
    else
        fail "$2: the client saw errors (status $status$([ "$status" -eq 124 ] && echo ': still running after 60 s'))"
    fi
}

check_keys() {  # WHAT TAG...
    local what=$1 files=() out tag; shift
    for tag in "$@"; do files+=("$work/keys-$tag.json"); done
    if out=$(ip netns exec "$client_ns" python3 "$kv_keys_dir/check_keys.py" "$guest" "${files[@]}" 2>&1); then
        pass "$what: ${out#PASS: }"
    else
        fail "$what: $out"
    fi
}
