# The "never two copies" count of who released a VM's output, for the
# end-to-end tests whose TAPs live in $hosts_ns (tests/support/e2e_lib.sh's
# topology): source it after e2e_begin. lan_watch_start TAP... counts the
# frames out of each TAP from now until the test ends; lan_check FROM WHAT
# passes if, since FROM (from now), one copy released output, then the
# other, never both interleaved (tests/support/lan_output_watch.py).

now() { date +%s.%N; }

# Who released the VM's output: "SECONDS PORT COUNT" lines for the frames
# out of each TAP (a TAP's rx is what its VM sent), from now until the
# test ends (tests/support/lan_output_watch.py).
lan_watch_start() {  # TAP...
    rm -f "$work/stop-watch"
    ip netns exec "$hosts_ns" python3 "$(dirname "${BASH_SOURCE[0]}")/lan_output_watch.py" \
        watch "$work/stop-watch" "$work/lan.out" "$@" &
    pids+=("$!")
}

lan_check() {  # FROM WHAT: since FROM, one copy released output, then the other, never both
    local out
    if out=$(python3 "$(dirname "${BASH_SOURCE[0]}")/lan_output_watch.py" check "$work/lan.out" --from "$1"); then
        pass "$2: one copy released output at a time: $out"
    else
        fail "$2: $out"
    fi
}
