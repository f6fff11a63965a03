#!/bin/bash
# Both ends' attestations bound to the connection (docs/shield.md, "What the two ends'
# attestations bind"): CAS names the session in every certificate it issues (a URI SAN
# scp://OWNER/SESSION/SECRET that no policy can set), and a peer rule or a listen rule that names
# a session accepts only a certificate of that session. Two owners: B's session defines a
# certificate with the same DNS name and IP address as A's server and runs an impostor server
# (shielded, so it has the key); a shielded client of A whose peer rule names session bind-a is
# refused by the impostor with a clear log line and gets the marker from A's real server; a
# client rule without a session still accepts the impostor (the default, unchanged); a rule
# naming another secret of A, or naming 'bind-a' from B without an owner (default: B's own),
# is refused. A listen rule that names the client's session refuses a client of B's session.
source "$(dirname "$0")/lib.sh" "$@"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { echo "SKIP: no redis"; exit 0; }

A=$T/a.pem
B=$T/b.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
IDA=$(cat "$T/last.out")
expect_rc 0 "$SCPCTL" cas identity --out "$B"
IDB=$(cat "$T/last.out")
export SCP_IDENTITY=$A
start_cas --admin "$A"
enroll_p1

mkdir -p "$T/bin"
cp "$(command -v redis-server)" "$T/bin/redis-server"
cp "$(command -v redis-cli)" "$T/bin/redis-cli"
expect_rc 0 "$SCPCTL" platform measure -- "$T/bin/redis-server"
MR=$(cat "$T/last.out")
expect_rc 0 "$SCPCTL" platform measure -- "$T/bin/redis-cli"
MC=$(cat "$T/last.out")
PA=$(freeport)
PB=$(freeport)
PM=$(freeport)
MARK=SCPBINDMARK$RANDOM$RANDOM

# A policy cannot choose the identity: a secret with a URI is refused (400), and a peer rule's
# owner must be an identity id.
cat >"$T/uri.yaml" <<YAML
name: bind-uri
services: [{name: s, measurements: [$MR], command: [redis-server]}]
secrets:
  - {name: tls, kind: x509, common_name: x, uri: ["scp://$IDA/bind-a/tls"]}
YAML
expect_err 1 "400" "$SCPCTL" session create "$T/uri.yaml" --identity "$B"
grep -q "CAS puts the session's identity" "$T/last.err" || fail "no clear refusal of a URI: $(cat "$T/last.err")"
sed 's/, uri: \[.*\]//; s/command: \[redis-server\]}/command: [redis-server], network: {peers: [{host: x, port: 1, session: bind-a, owner: nothex}]}}/' \
    "$T/uri.yaml" >"$T/badowner.yaml"
expect_err 1 "400" "$SCPCTL" session create "$T/badowner.yaml" --identity "$B"
# owner without session; a session with another CA (no other CA puts a session in a
# certificate); client_session without required client certificates
for bad in "peers: [{host: x, port: 1, owner: $IDA}]|go with 'session'" \
    "peers: [{host: x, port: 1, session: bind-a, ca: other}]|needs the service CA" \
    "listen: [{port: 1, client_session: bind-a}]|goes with client_certificate: required"; do
    sed "s/command: \[redis-server\]}/command: [redis-server], network: {${bad%|*}}}/; s/, uri: \[.*\]//" "$T/uri.yaml" >"$T/bad.yaml"
    expect_err 1 "400" "$SCPCTL" session create "$T/bad.yaml" --identity "$B"
    grep -q "${bad#*|}" "$T/last.err" || fail "'${bad%|*}': not refused for its reason: $(cat "$T/last.err")"
done
echo "ok: a policy that sets a URI, a malformed owner, an owner without session, a session with another CA or client_session without client certificates gets 400"

cat >"$T/a.yaml" <<YAML
name: bind-a
services:
  - name: redis
    measurements: [$MR]
    command: [redis-server, --port, "$PA", --bind, 127.0.0.1, --save, "", --appendonly, "no", --protected-mode, "no"]
    network:
      certificate: tls
      listen: [{port: $PA}]
  - name: mutual
    measurements: [$MR]
    command: [redis-server, --port, "$PM", --bind, 127.0.0.1, --save, "", --appendonly, "no", --protected-mode, "no"]
    network:
      certificate: tls
      listen: [{port: $PM, client_certificate: required, client_session: bind-a}]
  - name: to-real
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PA", get, k]
    network:
      certificate: tls
      peers: [{host: 127.0.0.1, port: $PA, session: bind-a, certificate: tls}]
  - name: to-impostor
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PB", get, k]
    network:
      peers: [{host: 127.0.0.1, port: $PB, session: bind-a}]
  - name: to-real-other-secret
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PA", get, k]
    network:
      peers: [{host: 127.0.0.1, port: $PA, session: bind-a, certificate: other}]
  - name: to-impostor-unbound
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PB", get, k]
    network:
      peers: [{host: 127.0.0.1, port: $PB}]
  - name: to-mutual
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PM", ping]
    network:
      certificate: tls
      peers: [{host: 127.0.0.1, port: $PM, session: bind-a}]
secrets:
  - {name: tls, kind: x509, common_name: redis.bind, dns: [localhost], ip: [127.0.0.1]}
YAML
# B's session: a certificate with the same names (the service CA signs it too), an impostor
# server that holds its key, and a client with B's certificate for A's mutual port
cat >"$T/b.yaml" <<YAML
name: bind-b
services:
  - name: impostor
    measurements: [$MR]
    command: [redis-server, --port, "$PB", --bind, 127.0.0.1, --save, "", --appendonly, "no", --protected-mode, "no"]
    network:
      certificate: tls
      listen: [{port: $PB}]
  - name: to-mutual
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PM", ping]
    network:
      certificate: tls
      peers: [{host: 127.0.0.1, port: $PM, session: bind-a, owner: $IDA}]
  - name: to-a-own-owner
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PA", get, k]
    network:
      peers: [{host: 127.0.0.1, port: $PA, session: bind-a}]
secrets:
  - {name: tls, kind: x509, common_name: redis.bind, dns: [localhost], ip: [127.0.0.1]}
YAML
expect_rc 0 "$SCPCTL" session create "$T/a.yaml"
expect_rc 0 "$SCPCTL" session create "$T/b.yaml" --identity "$B"
RUNA=("$SCPCTL" run --session bind-a --platform-key "$T/p1.key" --volume-dir "$T/vols")
RUNB=("$SCPCTL" run --session bind-b --platform-key "$T/p1.key" --volume-dir "$T/vols-b")

PIDS=()
cleanup_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    cleanup
}
trap cleanup_all EXIT
"${RUNA[@]}" --service redis -- "$T/bin/redis-server" >"$T/ra.out" 2>"$T/ra.err" &
PIDS+=($!)
"${RUNA[@]}" --service mutual -- "$T/bin/redis-server" >"$T/rm.out" 2>"$T/rm.err" &
PIDS+=($!)
SCP_IDENTITY=$B "${RUNB[@]}" --service impostor -- "$T/bin/redis-server" >"$T/rb.out" 2>"$T/rb.err" &
PIDS+=($!)
tcli() { redis-cli --tls --cacert "$CA" -h 127.0.0.1 -p "$@"; }
for port in $PA $PB $PM; do # listening (PM requires a client certificate: just connect)
    for _ in $(seq 150); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null && break
        sleep 0.1
    done
done
[ "$(tcli "$PA" set k "$MARK-A")" = OK ] || fail "A's server: $(cat "$T/ra.err")"
[ "$(tcli "$PB" set k "$MARK-B")" = OK ] || fail "B's impostor: $(cat "$T/rb.err")"

# The certificates name their sessions
openssl s_client -connect 127.0.0.1:"$PA" -CAfile "$CA" </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName >"$T/sana.txt"
grep -q "URI:scp://$IDA/bind-a/tls" "$T/sana.txt" || fail "A's certificate does not name its session: $(cat "$T/sana.txt")"
openssl s_client -connect 127.0.0.1:"$PB" -CAfile "$CA" </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName >"$T/sanb.txt"
grep -q "URI:scp://$IDB/bind-b/tls" "$T/sanb.txt" || fail "B's certificate does not name its session: $(cat "$T/sanb.txt")"
grep -q "IP Address:127.0.0.1" "$T/sanb.txt" || fail "B's certificate lacks A's IP address: $(cat "$T/sanb.txt")"
echo "ok: the certificates carry $(grep -o 'URI:scp://[^,]*' "$T/sanb.txt") and the same names"

# Without a session in the rule (today's behaviour) the impostor passes the chain and name checks
"${RUNA[@]}" --service to-impostor-unbound -- "$T/bin/redis-cli" >"$T/unbound.out" 2>"$T/unbound.err"
[ "$(cat "$T/unbound.out")" = "$MARK-B" ] || fail "the unbound client did not reach the impostor: $(cat "$T/unbound.out" "$T/unbound.err")"
echo "ok: a peer rule without 'session' accepts B's certificate for A's name (the default)"
# With the session named: refused, with the log line
"${RUNA[@]}" --service to-impostor -- "$T/bin/redis-cli" >"$T/imp.out" 2>"$T/imp.err"
grep -q "$MARK" "$T/imp.out" && fail "a client bound to session bind-a got data from B's impostor"
grep -q "network: TLS to 127.0.0.1:$PB (peer name 127.0.0.1): the peer's certificate belongs to scp://$IDB/bind-b/tls, not the CAS session the policy names (scp://$IDA/bind-a/\*): connection refused" \
    "$T/imp.err" || fail "no clear log line for the impostor: $(cat "$T/imp.err" "$T/imp.out")"
echo "ok: impostor refused: $(grep -o 'network: TLS to.*refused' "$T/imp.err" | head -1)"
"${RUNA[@]}" --service to-real -- "$T/bin/redis-cli" >"$T/real.out" 2>"$T/real.err"
[ "$(cat "$T/real.out")" = "$MARK-A" ] || fail "the bound client did not get A's marker: $(cat "$T/real.out" "$T/real.err")"
echo "ok: the bound client gets the marker from A's real server"
# the right session but another secret; the right session name but (by default) B's own owner
"${RUNA[@]}" --service to-real-other-secret -- "$T/bin/redis-cli" >"$T/os.out" 2>"$T/os.err"
grep -q "$MARK" "$T/os.out" && fail "a rule naming secret 'other' accepted A's 'tls'"
grep -q "belongs to scp://$IDA/bind-a/tls, not the CAS session the policy names (scp://$IDA/bind-a/other)" "$T/os.err" ||
    fail "no log line for another secret: $(cat "$T/os.err")"
SCP_IDENTITY=$B "${RUNB[@]}" --service to-a-own-owner -- "$T/bin/redis-cli" >"$T/oo.out" 2>"$T/oo.err"
grep -q "$MARK" "$T/oo.out" && fail "a rule of owner B naming 'bind-a' without owner accepted A's session"
grep -q "belongs to scp://$IDA/bind-a/tls, not the CAS session the policy names (scp://$IDB/bind-a/\*)" "$T/oo.err" ||
    fail "no log line for the owner default: $(cat "$T/oo.err")"
echo "ok: a rule naming another secret, or the session name under its own owner (the default), is refused"

# Server side: the mutual port requires a client certificate of session bind-a
"${RUNA[@]}" --service to-mutual -- "$T/bin/redis-cli" >"$T/ma.out" 2>"$T/ma.err"
[ "$(cat "$T/ma.out")" = PONG ] || fail "A's client was refused by A's mutual port: $(cat "$T/ma.out" "$T/ma.err" "$T/rm.err")"
SCP_IDENTITY=$B "${RUNB[@]}" --service to-mutual -- "$T/bin/redis-cli" >"$T/mb.out" 2>"$T/mb.err"
for _ in $(seq 50); do grep -q "connection refused" "$T/rm.err" && break; sleep 0.1; done
grep -q "network: TLS from 127.0.0.1:[0-9]* on port $PM: the peer's certificate belongs to scp://$IDB/bind-b/tls, not the CAS session the policy names (scp://$IDA/bind-a/\*): connection refused" \
    "$T/rm.err" || fail "the mutual port did not refuse B's client with the log line: $(cat "$T/rm.err"; cat "$T/mb.err" "$T/mb.out")"
grep -q PONG "$T/mb.out" && fail "B's client got an answer from A's mutual port"
echo "ok: a listen rule with client_session refuses a client of another session: $(grep -o 'network: TLS from.*refused' "$T/rm.err" | head -1)"
echo "PASS"
