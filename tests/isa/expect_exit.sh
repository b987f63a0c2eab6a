#!/bin/bash
# Runs a command and checks its exit status.
#
#   expect_exit.sh EXPECTED -- COMMAND [ARGS...]
#
# Standard input is /dev/null; the command's output passes through. Exits 0
# when the command exited with EXPECTED, else 1.
set -u
if [ $# -lt 3 ] || [ "$2" != "--" ]; then
    echo "usage: $0 EXPECTED -- COMMAND [ARGS...]" >&2
    exit 2
fi
expected=$1
shift 2
"$@" </dev/null
status=$?
if [ "$status" -ne "$expected" ]; then
    echo "FAIL: '$*' exited with status $status, expected $expected" >&2
    exit 1
fi
echo "exit status $status as expected"
exit 0
