# The guest KV service's clients that remember what they were promised,
# for the tests that check acknowledged keys after a failover, a migration
# or a fresh boot. Source it after tests/support/e2e_lib.sh, with `guest`
# (the VM's address) set; `work`, `client_ns` and `pids` come from e2e_begin.
#
#   run_client TAG SECONDS   continuous_client.py in the background, keys
#                            TAG-0, TAG-1, ...; the acknowledged ones go to
#                            $work/keys-TAG.json
#   finish_client TAG WHAT   stops it: pass if it saw no error and read back
#                            every acknowledged key
#   check_keys WHAT TAG...   pass if every key the clients TAG... saw
#                            acknowledged reads back now (a new connection)

kv_keys_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../migration" && pwd)

run_client() {  # TAG SECONDS
    rm -f "$work/stop-$1"
    ip netns exec "$client_ns" python3 "$kv_keys_dir/continuous_client.py" "$guest" "$work/stop-$1" "$2" "$1-" \
        "$work/keys-$1.json" >"$work/client-$1.log" 2>&1 &
    client_pid=$!; pids+=("$client_pid")
}

finish_client() {  # TAG WHAT
    touch "$work/stop-$1"
    wait "$client_pid"; local status=$?
    sed 's/^/  client: /' "$work/client-$1.log"
    [ "$status" -eq 0 ] && pass "$2: the client saw no error and read back every acknowledged key" ||
        fail "$2: the client saw errors (status $status)"
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
