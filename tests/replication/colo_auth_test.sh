#!/bin/bash
# Only the real peer (issue 13), end to end with the tiny Linux guest (needs
# root: namespaces, TAP; GnuTLS's certtool and gnutls-cli).
#
# Pre-shared key: a secondary waits on B while strangers knock: garbage, an
# idle connection, a plain-TCP colo hello, a rogue colo VM with the same
# sizes and another key, a rogue VM on plain TCP. Each is refused, counted
# and logged, and the secondary keeps waiting: the real primary then
# protects, checkpoints, and status names the peer and the refusals. A
# connection during the run is refused and counted; the pair carries on.
# Certificates (made with certtool, as docs/security.md shows): a secondary
# whose own certificate expired does not start; a waiting secondary
# refuses a client with an expired certificate and one of another CA
# (gnutls-cli), then pairs with the primary whose certificate the CA
# signed.
# Usage: tests/replication/colo_auth_test.sh COLO GUEST_DIR
set -uo pipefail
colo=$(realpath "$1") guest_dir=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
boot_timeout=120
guest=10.97.0.2

source "$here/colo_test_lib.sh"
colo_test_begin auth au tapR1 tapR2
mkdir -p "$work/A" "$work/B" "$work/R1" "$work/R2" "$work/A2" "$work/C" "$work/X"

peer_field() {  # RUN_DIR FIELD: a field of status's replication.peer
    on_host "$1" "$colo" status guarded --json 2>/dev/null | python3 -c "
import json, sys
print(json.load(sys.stdin).get('replication', {}).get('peer', {}).get('$2', ''))" 2>/dev/null
}

wait_field() {  # RUN_DIR FIELD MIN WHAT: until the peer field reaches MIN (20 s)
    local started=$SECONDS value
    while :; do
        value=$(peer_field "$1" "$2")
        [ -n "$value" ] && [ "$value" -ge "$3" ] && return 0
        ((SECONDS - started > 20)) && { fail "$4: $2 is '$value', expected at least $3"; return 1; }
        sleep 0.1
    done
}

# ---- pre-shared key ----
COLO_RUN_DIR=$work/A ip netns exec "$hosts_ns" "$colo" run "$work/a.cfg" >"$work/primary.log" 2>&1 </dev/null &
primary_pid=$!; pids+=("$primary_pid")
COLO_RUN_DIR=$work/B ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47201 "$work/b.cfg" \
    >"$work/secondary.log" 2>&1 </dev/null &
secondary_pid=$!; pids+=("$secondary_pid")
wait_for "$work/secondary.log" "waiting for the primary on 127.0.0.1:47201 (TLS 1.3, pre-shared key of identity guarded)" \
    "the secondary waits, over TLS" "$secondary_pid" || exit 1

# Strangers: garbage, then an idle connection, then a plain-TCP hello.
ip netns exec "$hosts_ns" python3 -c '
import os, socket, time
s = socket.create_connection(("127.0.0.1", 47201)); s.sendall(os.urandom(300)); s.close()
idle = socket.create_connection(("127.0.0.1", 47201)); time.sleep(3); idle.close()
s = socket.create_connection(("127.0.0.1", 47201))
s.sendall(b"COLOPAIR" + bytes([1, 1, 0, 0]) + os.urandom(32)); s.recv(12); s.close()'
wait_field "$work/B" refused_authentication 3 "garbage, idle and plain hellos" &&
    pass "garbage, an idle connection and a plain-TCP hello are refused as authentication failures: $(grep -c 'refused a connection' "$work/secondary.log") in the log"
grep -q "sent nothing in time" "$work/secondary.log" && pass "the idle connection's refusal says it was idle" ||
    fail "no refusal names the idle connection: $(grep refused "$work/secondary.log")"

# Rogue VMs with the same sizes: one with another key, one on plain TCP.
# They stay paused: protect needs no booted guest to try.
"$colo" keygen psk "$work/rogue.psk" --identity guarded >/dev/null
sed "s/tap=tapA/tap=tapR1/; s|^replication_psk = .*|replication_psk = \"$work/rogue.psk\"|" "$work/a.cfg" >"$work/rogue1.cfg"
sed 's/tap=tapA/tap=tapR2/; s/^replication_auth = .*/replication_auth = "none"/; /^replication_psk/d' "$work/a.cfg" \
    >"$work/rogue2.cfg"
for rogue in 1 2; do
    COLO_RUN_DIR=$work/R$rogue ip netns exec "$hosts_ns" "$colo" run "$work/rogue$rogue.cfg" --paused \
        >"$work/rogue$rogue.log" 2>&1 </dev/null &
    pids+=("$!")
    rogue_pid=$!
    started=$SECONDS
    until [ "$(on_host "$work/R$rogue" "$colo" status guarded --json 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin).get("state",""))' 2>/dev/null)" = paused ]; do
        ((SECONDS - started > 20)) && break
        sleep 0.1
    done
    on_host "$work/R$rogue" "$colo" protect guarded 127.0.0.1:47201 >"$work/rogue$rogue-protect.log" 2>&1
    started=$SECONDS ended=""
    while ((SECONDS - started < 20)); do
        ended=$(replication_field "$work/R$rogue" ended)
        [ -n "$ended" ] && break
        sleep 0.2
    done
    case "$ended$(cat "$work/rogue$rogue-protect.log")" in
        *"authentication of"*"failed"*|*"does the secondary use TLS"*|*"it uses TLS"*)
            pass "rogue VM $rogue (same sizes, $([ $rogue = 1 ] && echo another key || echo plain TCP)) cannot protect itself with the victim's secondary: ${ended:-$(cat "$work/rogue$rogue-protect.log")}" ;;
        *) fail "rogue VM $rogue: protect ended '$ended' / $(cat "$work/rogue$rogue-protect.log")" ;;
    esac
    kill -9 "$rogue_pid" 2>/dev/null; wait "$rogue_pid" 2>/dev/null
done
wait_field "$work/B" refused_authentication 5 "the rogue VMs" &&
    pass "the secondary refused and counted both rogue VMs: $(peer_field "$work/B" refused_authentication) refusals"
kill -0 "$secondary_pid" 2>/dev/null && grep -q "waiting for the primary" "$work/secondary.log" &&
    ! grep -q "the primary .* connected" "$work/secondary.log" &&
    pass "the secondary is still waiting for its real primary" || fail "the secondary stopped waiting"

# The real primary.
wait_for "$work/primary.log" "colo-guest: services ready" "the VM booted on A" "$primary_pid" || exit 1
on_host "$work/A" "$colo" protect guarded 127.0.0.1:47201 --interval 100 >"$work/protect.log" 2>&1 ||
    fail "colo protect failed: $(cat "$work/protect.log")"
wait_for_checkpoints "$work/A" 20 >/dev/null && pass "the real primary paired over TLS and took 20 checkpoints" ||
    fail "no 20 checkpoints: $(tail -3 "$work/primary.log")"
peer=$(peer_field "$work/B" peer)
case "$peer" in *"identity guarded"*) pass "the secondary's status names its peer: $peer" ;;
    *) fail "the secondary's status names no peer: '$peer'" ;; esac
line=$(on_host "$work/B" "$colo" status guarded 2>/dev/null | grep "^  peer")
case "$line" in *"TLS 1.3, pre-shared key of identity guarded"*"refused 5"*) pass "colo status: $line" ;;
    *) fail "colo status's peer line: '$line'" ;; esac

# A connection during the run: refused, counted, the pair unaffected.
before=$(replication_field "$work/A" checkpoints)
ip netns exec "$hosts_ns" python3 -c '
import socket
s = socket.create_connection(("127.0.0.1", 47201)); s.sendall(b"COLOPAIR"); s.close()'
wait_field "$work/B" refused_during_run 1 "a connection during the run" &&
    pass "a connection during the run is refused and counted: $(grep 'while this secondary is paired' "$work/secondary.log" | head -1)"
wait_for_checkpoints "$work/A" $((before + 10)) >/dev/null && pass "the pair carries on (checkpoint $(replication_field "$work/A" checkpoints))" ||
    fail "the pair stopped after a connection during the run"
[ "$(replication_field "$work/B" state)" != "failed over" ] || fail "the secondary failed over"
on_host "$work/A" "$colo" quit guarded >/dev/null 2>&1
wait_exit "$primary_pid" 30 || fail "the primary did not end"
wait_exit "$secondary_pid" 30 || fail "the secondary did not end with its primary"

# ---- certificates ----
cd "$work" || exit 1
certificate() {  # NAME CN CA [EXTRA TEMPLATE LINE]: NAME.key, NAME.pem signed by CA (CA.pem/CA.key)
    printf 'cn = "%s"\ntls_www_server\ntls_www_client\nsigning_key\n%s\n' "$2" "${4:-expiration_days = 30}" >"$1.tmpl"
    certtool --generate-privkey --key-type ecdsa --outfile "$1.key" >/dev/null 2>&1 &&
        certtool --generate-certificate --load-privkey "$1.key" --load-ca-certificate "$3.pem" \
            --load-ca-privkey "$3.key" --template "$1.tmpl" --outfile "$1.pem" >/dev/null 2>&1
}
authority() {  # NAME
    printf 'cn = "%s"\nca\ncert_signing_key\nexpiration_days = 30\n' "$1" >"$1.tmpl"
    certtool --generate-privkey --key-type ecdsa --outfile "$1.key" >/dev/null 2>&1 &&
        certtool --generate-self-signed --load-privkey "$1.key" --template "$1.tmpl" --outfile "$1.pem" >/dev/null 2>&1
}
authority ca && authority other-ca && certificate host-a host-a ca && certificate host-b host-b ca &&
    certificate stranger stranger other-ca &&
    certificate expired old-host ca 'activation_date = "2020-01-01 00:00:00 UTC"
expiration_date = "2021-01-01 00:00:00 UTC"' || { fail "certtool could not make the certificates"; exit 1; }
cd - >/dev/null || exit 1
with_certificate() {  # CFG NAME: the configuration with NAME's certificate instead of the key
    sed "/^replication_/d" "$1"
    printf 'replication_auth = "certificate"\nreplication_certificate = "%s"\nreplication_key = "%s"\nreplication_ca = "%s"\n' \
        "$work/$2.pem" "$work/$2.key" "$work/ca.pem"
}
with_certificate "$work/a.cfg" host-a >"$work/cert-a.cfg"
with_certificate "$work/b.cfg" host-b >"$work/cert-b.cfg"
with_certificate "$work/b.cfg" expired >"$work/expired-b.cfg"

COLO_RUN_DIR=$work/X ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47202 "$work/expired-b.cfg" \
    >"$work/expired.log" 2>&1 </dev/null
status=$?
[ "$status" -ne 0 ] && grep -q "expired on 2021-01-01" "$work/expired.log" &&
    pass "a secondary whose own certificate expired does not start (status $status): $(grep expired "$work/expired.log" | head -1)" ||
    fail "a secondary with an expired certificate: status $status, $(tail -2 "$work/expired.log")"

COLO_RUN_DIR=$work/A2 ip netns exec "$hosts_ns" "$colo" run "$work/cert-a.cfg" >"$work/primary2.log" 2>&1 </dev/null &
primary_pid=$!; pids+=("$primary_pid")
COLO_RUN_DIR=$work/C ip netns exec "$hosts_ns" "$colo" secondary --listen 127.0.0.1:47203 "$work/cert-b.cfg" \
    >"$work/secondary2.log" 2>&1 </dev/null &
secondary_pid=$!; pids+=("$secondary_pid")
wait_for "$work/secondary2.log" "waiting for the primary on 127.0.0.1:47203 (TLS 1.3, certificate" \
    "the certificate secondary waits" "$secondary_pid" || exit 1
for stranger in expired stranger; do
    key=$stranger; [ "$stranger" = expired ] && key=expired
    ip netns exec "$hosts_ns" timeout 10 gnutls-cli --insecure --priority "NORMAL:-VERS-ALL:+VERS-TLS1.3" \
        --x509certfile "$work/$stranger.pem" --x509keyfile "$work/$key.key" -p 47203 127.0.0.1 \
        </dev/null >"$work/gnutls-$stranger.log" 2>&1
done
wait_field "$work/C" refused_authentication 2 "gnutls-cli with an expired and a foreign certificate"
grep -q "refused a connection (authentication).*expired" "$work/secondary2.log" &&
    pass "a client with an expired certificate is refused: $(grep 'refused.*expired' "$work/secondary2.log" | head -1 | cut -c1-200)" ||
    fail "no refusal names the expired certificate: $(grep refused "$work/secondary2.log")"
grep -q "refused a connection (authentication).*127.0.0.1.*\(issuer\|signer\|not trusted\|not signed\)" "$work/secondary2.log" &&
    pass "a client with another CA's certificate is refused: $(grep 'refused' "$work/secondary2.log" | tail -1 | cut -c1-200)" ||
    fail "no refusal names the foreign certificate: $(grep refused "$work/secondary2.log")"
wait_for "$work/primary2.log" "colo-guest: services ready" "the certificate VM booted on A" "$primary_pid" || exit 1
on_host "$work/A2" "$colo" protect guarded 127.0.0.1:47203 --interval 100 >"$work/protect2.log" 2>&1 ||
    fail "colo protect with certificates failed: $(cat "$work/protect2.log")"
wait_for_checkpoints "$work/A2" 10 >/dev/null && pass "the certificate pair took 10 checkpoints" ||
    fail "no 10 checkpoints with certificates: $(tail -3 "$work/primary2.log")"
case "$(peer_field "$work/C" peer)" in *"CN=host-a"*) pass "the secondary's peer: $(peer_field "$work/C" peer)" ;;
    *) fail "the secondary's peer is '$(peer_field "$work/C" peer)'" ;; esac
on_host "$work/A2" "$colo" quit guarded >/dev/null 2>&1
wait_exit "$primary_pid" 30 || fail "the certificate primary did not end"
wait_exit "$secondary_pid" 30 || fail "the certificate secondary did not end with its primary"

echo "colo_auth_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
