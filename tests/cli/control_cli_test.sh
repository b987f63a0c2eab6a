#!/bin/bash
# The control socket from the command line: `colo run` VMs in the background
# (a bare-metal guest that never ends), and `colo status`, `pause`, `resume`,
# `events`, `save`, `quit` talking to them; a save carried on with
# `colo run --load`; errors for unknown VMs, a VM that does not answer, a
# name already in use, bad usage.
#
#   control_cli_test.sh COLO ELF
set -u
colo=$1 elf=$2
work=$(mktemp -d)
export COLO_RUN_DIR=$work/run
background_pids=()
cleanup() {
    for pid in "${background_pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null
    done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
failures=0 passed=0

pass() { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
check() {  # DESCRIPTION -- COMMAND...: passes when COMMAND succeeds
    local what=$1; shift 2
    if "$@"; then pass "$what"; else fail "$what"; fi
}

# A field of a JSON object read from standard input.
field() {
    python3 -c 'import json, sys
value = json.loads(sys.stdin.readline())[sys.argv[1]]
print(str(value).lower() if isinstance(value, bool) else value)' "$1"
}
status_field() {  # NAME FIELD
    "$colo" status --json "$1" 2>/dev/null | field "$2"
}

# Starts `colo run ARGS...` in the background; its pid in vm_pid.
start_vm() {  # LOG ARGS...
    local log=$1; shift
    "$colo" run "$@" >"$log" 2>&1 </dev/null &
    vm_pid=$!
    background_pids+=("$vm_pid")
}

# Waits until VM NAME answers `colo status` and has started (a VM loading
# a save file is "starting" for a while).
wait_for_vm() {  # NAME
    local tries=0 state
    until state=$(status_field "$1" state) && [ -n "$state" ] && [ "$state" != starting ]; do
        tries=$((tries + 1))
        if [ $tries -gt 400 ] || ! kill -0 "$vm_pid" 2>/dev/null; then
            fail "VM $1 did not come up"; return 1
        fi
        sleep 0.05
    done
}

# Runs a command that must fail with STATUS and a message matching PATTERN.
expect_failure() {  # DESCRIPTION STATUS PATTERN -- COMMAND...
    local what=$1 expected=$2 pattern=$3; shift 4
    "$@" >"$work/out" 2>"$work/err" </dev/null
    local status=$?
    if [ $status -ne "$expected" ]; then
        fail "$what: exit status $status, expected $expected"; cat "$work/err"; return
    fi
    if ! grep -q -E -e "$pattern" "$work/err"; then
        fail "$what: message does not match /$pattern/:"; cat "$work/err"; return
    fi
    pass "$what: $(head -n 1 "$work/err")"
}

wait_for_exit() {  # PID; its exit status in exit_status (124 after 20 s)
    local tries=0
    while kill -0 "$1" 2>/dev/null && [ $tries -lt 400 ]; do
        sleep 0.05; tries=$((tries + 1))
    done
    if kill -0 "$1" 2>/dev/null; then exit_status=124; return; fi
    wait "$1"
    exit_status=$?
}

# ---- a VM named after its ELF, running ----
start_vm "$work/ticker.log" "$elf"
ticker_pid=$vm_pid
wait_for_vm ticker || { cat "$work/ticker.log"; exit 1; }
check "the control socket is \$COLO_RUN_DIR/ticker.sock" -- test -S "$COLO_RUN_DIR/ticker.sock"
check "the run directory is created with mode 700" -- \
    test "$(stat -c %a "$COLO_RUN_DIR")" = 700

"$colo" events --json ticker >"$work/events.log" 2>"$work/events.err" &
events_pid=$!
background_pids+=("$events_pid")

"$colo" status ticker >"$work/status.txt"
check "colo status: human-readable, running" -- grep -q '^ticker: running, up' "$work/status.txt"
check "colo status: instruction count" -- grep -q 'instructions  [0-9]' "$work/status.txt"
before=$(status_field ticker instructions)
sleep 0.3
after=$(status_field ticker instructions)
check "running: instructions grow ($before -> $after)" -- test "$after" -gt "$before"
check "status --json: state running" -- test "$(status_field ticker state)" = running
check "status --json: memory_mib 128" -- test "$(status_field ticker memory_mib)" = 128
check "status --json: dirty_log false" -- test "$(status_field ticker dirty_log)" = false

# ---- pause, resume ----
check "colo pause" -- test "$("$colo" pause ticker)" = "ticker: paused"
check "status: paused" -- test "$(status_field ticker state)" = paused
before=$(status_field ticker instructions)
sleep 0.3
after=$(status_field ticker instructions)
check "paused: instructions stay at $before" -- test "$after" -eq "$before"
check "colo pause again: still paused (idempotent)" -- test "$("$colo" pause ticker)" = "ticker: paused"
check "colo resume" -- test "$("$colo" resume ticker)" = "ticker: running"
check "colo resume again (idempotent)" -- test "$("$colo" resume --json ticker | field state)" = running
sleep 0.3
after=$(status_field ticker instructions)
check "resumed: instructions grow again ($before -> $after)" -- test "$after" -gt "$before"

# ---- errors ----
expect_failure "unknown VM" 1 \
    "no VM named nosuch is running: cannot connect to $COLO_RUN_DIR/nosuch.sock: No such file or directory" \
    -- "$colo" status nosuch
expect_failure "a second VM with the same name" 1 \
    "a VM named ticker is already running \\(control socket $COLO_RUN_DIR/ticker.sock\\)" \
    -- "$colo" run "$elf"
expect_failure "the same name given with --name" 1 "a VM named ticker is already running" \
    -- "$colo" run "$elf" --name ticker
check "the refused VM left the running one's socket alone" -- "$colo" status ticker >/dev/null
expect_failure "save to a directory that does not exist" 1 "ticker: .*cannot create save file .*No such file" \
    -- "$colo" save --keep-running ticker "$work/missing/x.colo"
check "after the failed save the VM still runs" -- test "$(status_field ticker state)" = running
expect_failure "status without a name" 2 "needs the VM's NAME" -- "$colo" status
expect_failure "save without a file" 2 "needs the VM's NAME and a FILE" -- "$colo" save ticker
expect_failure "bad --timeout" 2 "--timeout needs a number of seconds, got 'soon'" \
    -- "$colo" status --timeout soon ticker
expect_failure "two names" 2 "unexpected argument 'other'" -- "$colo" pause ticker other
expect_failure "unknown option" 2 "unknown option '--bogus'" -- "$colo" quit --bogus ticker
expect_failure "not a VM name" 2 "'../ticker' is not a VM name" -- "$colo" status ../ticker
expect_failure "bad --name" 2 "--name needs a name" -- "$colo" run "$elf" --name 'a/b'

# A socket where something listens but never answers: a timeout.
python3 - "$COLO_RUN_DIR/silent.sock" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(4)
time.sleep(60)
PY
silent_pid=$!
background_pids+=("$silent_pid")
for _ in $(seq 100); do [ -S "$COLO_RUN_DIR/silent.sock" ] && break; sleep 0.05; done
expect_failure "a VM that does not answer" 1 "silent did not answer within 0.5 s" \
    -- "$colo" status --timeout 0.5 silent
kill "$silent_pid" 2>/dev/null

# A stale socket (its process died) is replaced.
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$COLO_RUN_DIR/stale.sock"
start_vm "$work/stale.log" "$elf" --name stale
stale_pid=$vm_pid
if wait_for_vm stale; then
    pass "a stale socket is replaced"
    check "colo quit stale" -- test "$("$colo" quit stale)" = "stale: stopped"
    wait_for_exit "$stale_pid"
    check "after quit, colo run exits 0 (got $exit_status)" -- test "$exit_status" -eq 0
    check "after quit, the socket is removed" -- test ! -e "$COLO_RUN_DIR/stale.sock"
fi

# Ctrl-C is still an interrupt: exit status 130.
start_vm "$work/interrupted.log" "$elf" --name interrupted
interrupted_pid=$vm_pid
if wait_for_vm interrupted; then
    kill -INT "$interrupted_pid"
    wait_for_exit "$interrupted_pid"
    check "Ctrl-C: colo run exits 130 (got $exit_status)" -- test "$exit_status" -eq 130
fi

# ---- save: the VM ends; colo run --load carries on ----
"$colo" pause ticker >/dev/null
saved_instructions=$(status_field ticker instructions)
"$colo" save ticker "$work/saved-ticker.colo" >"$work/save.out" 2>&1
save_status=$?
check "colo save: exit 0" -- test $save_status -eq 0
check "colo save: says where and how much" -- \
    grep -q -E "^ticker: saved to $work/saved-ticker.colo \\([0-9]+ bytes in [0-9.]+ s\\); the VM has ended" \
    "$work/save.out"
check "the save file exists" -- test -s "$work/saved-ticker.colo"
wait_for_exit "$ticker_pid"
check "after save, colo run exits 0 (got $exit_status)" -- test "$exit_status" -eq 0
check "after save, the socket is removed" -- test ! -e "$COLO_RUN_DIR/ticker.sock"

start_vm "$work/restored.log" --load "$work/saved-ticker.colo" --paused
restored_pid=$vm_pid
if wait_for_vm saved-ticker; then
    pass "colo run --load: named after the save file (saved-ticker)"
    check "--paused: the restored VM waits" -- test "$(status_field saved-ticker state)" = paused
    restored=$(status_field saved-ticker instructions)
    check "instret continues from the saved value ($saved_instructions = $restored)" -- \
        test "$restored" -eq "$saved_instructions"
    "$colo" resume saved-ticker >/dev/null
    sleep 0.3
    after=$(status_field saved-ticker instructions)
    check "the restored VM runs on ($restored -> $after)" -- test "$after" -gt "$restored"
    check "colo quit" -- test "$("$colo" quit saved-ticker)" = "saved-ticker: stopped"
    wait_for_exit "$restored_pid"
    check "after quit, colo run exits 0 (got $exit_status)" -- test "$exit_status" -eq 0
fi

# ---- events ----
wait_for_exit "$events_pid"
check "colo events ends with 0 when the VM ends (got $exit_status)" -- test "$exit_status" -eq 0
states=$(python3 -c 'import json, sys
print(" ".join(e["state"] for e in map(json.loads, open(sys.argv[1])) if e["event"] == "state"))' \
    "$work/events.log")
check "state events in order: '$states'" -- \
    test "$states" = "paused running saving running paused saving stopping stopped"
check "a saved event" -- grep -q '"event":"saved","file":"'"$work"'/saved-ticker.colo"' "$work/events.log"

if grep -q -e AddressSanitizer -e UndefinedBehaviorSanitizer -e 'runtime error' "$work"/*.log "$work/events.err"; then
    fail "sanitizer report:"; grep -h -A5 -e AddressSanitizer -e 'runtime error' "$work"/*.log
else
    pass "no sanitizer reports"
fi

echo "$passed passed, $failures failed"
if [ $failures -ne 0 ]; then
    for log in "$work"/*.log; do echo "== $log"; tail -n 20 "$log"; done
fi
[ $failures -eq 0 ]
