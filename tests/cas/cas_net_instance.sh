#!/bin/bash
# Attestation bound to the connection, per instance (docs/cas.md "identity: instance",
# docs/shield.md "What the two ends' attestations bind"): each attested instance makes a P-256
# key, sends its public key in the evidence, and CAS certifies that key with URI SANs naming
# the service, the measurement and the platform. Two services of one session, a (measurement
# MA) and b (another build, MB), both serve redis on their own ports with the same x509 secret's
# names; a shielded client whose peer rule names a's measurement reaches a and is refused by b
# with a log line; a rule naming service a is refused by b; a measurement rule refuses a session
# certificate (no measurement); a listen rule with client_service/client_measurement serves the
# right client and refuses another. The certificates hold the measurement; CAS certifies a key
# it never sees (the configuration it releases holds no private key).
source "$(dirname "$0")/lib.sh" "$@"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { echo "SKIP: no redis"; exit 0; }

start_cas_p1
expect_rc 0 "$SCPCTL" platform id "$T/p1.key"
P1=$(sed -n 's/^id //p' "$T/last.out")

mkdir -p "$T/bin"
cp "$(command -v redis-server)" "$T/bin/redis-server"
cp "$(command -v redis-server)" "$T/bin/redis-server-b"
printf 'another build' >>"$T/bin/redis-server-b" # trailing bytes: same program, another measurement
cp "$(command -v redis-cli)" "$T/bin/redis-cli"
cp "$(command -v redis-cli)" "$T/bin/redis-cli-x"
printf 'another build' >>"$T/bin/redis-cli-x"
measure() { expect_rc 0 "$SCPCTL" platform measure -- "$1"; cat "$T/last.out"; }
MA=$(measure "$T/bin/redis-server")
MB=$(measure "$T/bin/redis-server-b")
MC=$(measure "$T/bin/redis-cli")
MX=$(measure "$T/bin/redis-cli-x")
[ "$MA" != "$MB" ] && [ "$MC" != "$MX" ] || fail "the copies with trailing bytes measure the same"
PA=$(freeport)
PB=$(freeport)
PS=$(freeport)
PM=$(freeport)
PR=$(freeport)
POTHER=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') # a platform a never attested on
MARK=SCPINSTMARK$RANDOM$RANDOM
srv() { echo "[redis-server, --port, \"$1\", --bind, 127.0.0.1, --save, \"\", --appendonly, \"no\", --protected-mode, \"no\"]"; }

# Policy checks: service without session, a measurement that is not 64 hex, identity instance
# without a certificate, client_measurement without client certificates
cat >"$T/base.yaml" <<YAML
name: inst-bad
services: [{name: s, measurements: [$MA], command: [redis-server], network: NET}]
secrets: [{name: tls, kind: x509, common_name: x}]
YAML
for bad in "{peers: [{host: x, port: 1, service: a}]}|'service' goes with 'session'" \
    "{peers: [{host: x, port: 1, measurement: abc}]}|must be a measurement: 64 lower-case hex digits" \
    "{peers: [{host: x, port: 1, platform: P1}]}|must be a platform id: 64 lower-case hex digits" \
    "{certificate: tls, listen: [{port: 1, client_platform: $MA}]}|'client_platform' goes with client_certificate: required" \
    "{identity: instance}|needs a 'certificate'" \
    "{identity: machine, certificate: tls}|identity must be session or instance" \
    "{certificate: tls, listen: [{port: 1, client_measurement: $MA}]}|goes with client_certificate: required"; do
    sed "s/NET/${bad%|*}/" "$T/base.yaml" >"$T/bad.yaml"
    expect_err 1 "400" "$SCPCTL" session create "$T/bad.yaml"
    grep -q -- "${bad#*|}" "$T/last.err" || fail "'${bad%|*}': not refused for its reason: $(cat "$T/last.err")"
done
echo "ok: service without session, a malformed measurement, identity instance without certificate, an unknown identity and client_measurement without client certificates get 400"

cat >"$T/inst.yaml" <<YAML
name: inst
services:
  - name: a
    measurements: [$MA]
    command: $(srv "$PA")
    network: {certificate: tls, identity: instance, listen: [{port: $PA}]}
  - name: b
    measurements: [$MB]
    command: $(srv "$PB")
    network: {certificate: tls, identity: instance, listen: [{port: $PB}]}
  - name: shared
    measurements: [$MA]
    command: $(srv "$PS")
    network: {certificate: tls, listen: [{port: $PS}]}
  - name: m
    measurements: [$MA]
    command: $(srv "$PM")
    network:
      certificate: tls
      identity: instance
      listen: [{port: $PM, client_certificate: required, client_session: inst, client_service: cli, client_measurement: $MC}]
  - name: to-a
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PA", get, k]
    network: {peers: [{host: 127.0.0.1, port: $PA, session: inst, service: a, measurement: $MA}]}
  - name: to-a-on-p1
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PA", get, k]
    network: {peers: [{host: 127.0.0.1, port: $PA, session: inst, service: a, platform: $P1}]}
  - name: to-a-elsewhere
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PA", get, k]
    network: {peers: [{host: 127.0.0.1, port: $PA, session: inst, platform: $POTHER}]}
  - name: to-b-as-a
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PB", get, k]
    network: {peers: [{host: 127.0.0.1, port: $PB, session: inst, measurement: $MA}]}
  - name: to-b-service-a
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PB", get, k]
    network: {peers: [{host: 127.0.0.1, port: $PB, session: inst, service: a}]}
  - name: to-b-unbound
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PB", get, k]
    network: {peers: [{host: 127.0.0.1, port: $PB, session: inst}]}
  - name: to-shared-measured
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PS", get, k]
    network: {peers: [{host: 127.0.0.1, port: $PS, measurement: $MA}]}
  - name: r
    measurements: [$MA]
    command: $(srv "$PR")
    network: {certificate: tls, identity: instance, listen: [{port: $PR}]}
  - name: cli
    measurements: [$MC, $MX]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PM", ping]
    network: {certificate: tls, identity: instance, peers: [{host: 127.0.0.1, port: $PM, session: inst, service: m}]}
secrets:
  - {name: tls, kind: x509, common_name: redis.inst, dns: [localhost], ip: [127.0.0.1]}
YAML
expect_rc 0 "$SCPCTL" session create "$T/inst.yaml"
HASH=$(awk '/^hash /{print $2}' "$T/last.out")
RUN=("$SCPCTL" run --session inst --platform-key "$T/p1.key" --volume-dir "$T/vols")

# CAS certifies a key it never sees: evidence without an instance key is refused for a
# per-instance service; with one, the configuration holds a certificate for it and no key
expect_err 1 "403 no_instance_key" "$SCPCTL" platform attest --key "$T/p1.key" --session inst --service a --measurement "$MA"
openssl ecparam -name prime256v1 -genkey -noout -out "$T/ik.pem" 2>/dev/null || fail "openssl ecparam"
IKPUB=$(openssl ec -in "$T/ik.pem" -pubout -conv_form uncompressed -outform DER 2>/dev/null | tail -c 65 | od -An -tx1 | tr -d ' \n')
[ ${#IKPUB} -eq 130 ] || fail "cannot take the public point of the test key"
expect_rc 0 "$SCPCTL" platform attest --key "$T/p1.key" --session inst --service a --measurement "$MA" --instance-pubkey "$IKPUB"
grep -q "PRIVATE KEY" "$T/last.out" && fail "CAS released a private key to a per-instance service"
python3 - "$T/last.out" "$T/ik-cert.pem" <<'PY' || fail "the configuration's network section: $(cat "$T/last.out")"
import json, sys
n = json.load(open(sys.argv[1]))["network"]
assert n["identity"] == "instance" and "key" not in n, n.keys()
open(sys.argv[2], "w").write(n["cert"])
PY
[ "$(openssl x509 -in "$T/ik-cert.pem" -noout -pubkey | openssl pkey -pubin -outform DER | od -An -tx1 | tr -d ' \n')" = \
  "$(openssl ec -in "$T/ik.pem" -pubout -outform DER 2>/dev/null | od -An -tx1 | tr -d ' \n')" ] ||
    fail "the instance certificate is not for the key the evidence carried"
openssl verify -CAfile "$CA" "$T/ik-cert.pem" >/dev/null || fail "the instance certificate does not chain to the service CA"
openssl x509 -in "$T/ik-cert.pem" -noout -checkend 90000 >/dev/null && fail "the instance certificate lives longer than a day"
FP=$(openssl x509 -in "$T/ik-cert.pem" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr A-F a-f)
expect_rc 0 "$SCPCTL" cas audit
grep -q "instance certificate ${FP:0:32}" "$T/last.out" || fail "the audit log does not name the instance certificate ${FP:0:32}: $(grep attest "$T/last.out" | tail -3)"
echo "ok: CAS certifies the instance's public key (no private key in the configuration; 403 no_instance_key without one); valid at most a day; the audit row names it"

PIDS=()
cleanup_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    cleanup
}
trap cleanup_all EXIT
"${RUN[@]}" --service a -- "$T/bin/redis-server" >"$T/ra.out" 2>"$T/ra.err" &
PIDS+=($!)
"${RUN[@]}" --service b -- "$T/bin/redis-server-b" >"$T/rb.out" 2>"$T/rb.err" &
PIDS+=($!)
"${RUN[@]}" --service shared -- "$T/bin/redis-server" >"$T/rs.out" 2>"$T/rs.err" &
PIDS+=($!)
"${RUN[@]}" --service m -- "$T/bin/redis-server" >"$T/rm.out" 2>"$T/rm.err" &
PIDS+=($!)
for port in $PA $PB $PS $PM; do
    for _ in $(seq 150); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null && break
        sleep 0.1
    done
done
tcli() { redis-cli --tls --cacert "$CA" -h 127.0.0.1 -p "$@"; }
[ "$(tcli "$PA" set k "$MARK-A")" = OK ] || fail "a's server: $(cat "$T/ra.err")"
[ "$(tcli "$PB" set k "$MARK-B")" = OK ] || fail "b's server: $(cat "$T/rb.err")"
[ "$(tcli "$PS" set k "$MARK-S")" = OK ] || fail "the shared server: $(cat "$T/rs.err")"

# What the shield presents: the instance's certificate with service, measurement and platform
san() { openssl s_client -connect 127.0.0.1:"$1" -CAfile "$CA" </dev/null 2>/dev/null | openssl x509 "${@:2}"; }
san "$PA" -noout -ext subjectAltName >"$T/sana.txt"
for want in "URI:scp-measurement:$MA" "URI:scp-service:a" "URI:scp-platform:$P1" "URI:scp://" "IP Address:127.0.0.1"; do
    grep -q "$want" "$T/sana.txt" || fail "a's certificate lacks $want: $(cat "$T/sana.txt")"
done
san "$PB" -noout -ext subjectAltName >"$T/sanb.txt"
grep -q "URI:scp-measurement:$MB" "$T/sanb.txt" && grep -q "URI:scp-service:b" "$T/sanb.txt" ||
    fail "b's certificate does not name b and MB: $(cat "$T/sanb.txt")"
san "$PS" -noout -ext subjectAltName >"$T/sans.txt"
grep -q "scp-measurement" "$T/sans.txt" && fail "the session certificate (identity: session) carries a measurement"
KA=$(san "$PA" -noout -pubkey)
KB=$(san "$PB" -noout -pubkey)
KS=$(san "$PS" -noout -pubkey)
expect_rc 0 "$SCPCTL" session secret inst tls
KT=$(openssl x509 -in "$T/last.out" -noout -pubkey)
[ "$KA" != "$KB" ] && [ "$KA" != "$KS" ] && [ "$KA" != "$KT" ] && [ "$KS" = "$KT" ] ||
    fail "the instances do not each have their own key (a, b, shared, the secret's)"
echo "ok: a's certificate carries $(grep -o 'URI:scp-measurement:[0-9a-f]*' "$T/sana.txt"), its service and platform; a, b and the session secret have three different keys"

# Clients: the rule naming a's measurement reaches a and is refused by b
"${RUN[@]}" --service to-a -- "$T/bin/redis-cli" >"$T/toa.out" 2>"$T/toa.err"
[ "$(cat "$T/toa.out")" = "$MARK-A" ] || fail "the client bound to a's measurement did not get a's marker: $(cat "$T/toa.out" "$T/toa.err")"
"${RUN[@]}" --service to-a-on-p1 -- "$T/bin/redis-cli" >"$T/tap.out" 2>"$T/tap.err"
[ "$(cat "$T/tap.out")" = "$MARK-A" ] || fail "a rule naming a's platform did not reach a: $(cat "$T/tap.out" "$T/tap.err")"
"${RUN[@]}" --service to-a-elsewhere -- "$T/bin/redis-cli" >"$T/tae.out" 2>"$T/tae.err"
grep -q "$MARK" "$T/tae.out" && fail "a client bound to another platform got data from a"
grep -q "the peer's certificate carries scp-platform:$P1, not the platform the policy names (scp-platform:$POTHER): connection refused" \
    "$T/tae.err" || fail "no clear log line for a's platform: $(cat "$T/tae.err" "$T/tae.out")"
echo "ok: a peer rule naming a's platform reaches a; one naming another platform is refused"
"${RUN[@]}" --service to-b-as-a -- "$T/bin/redis-cli" >"$T/tob.out" 2>"$T/tob.err"
grep -q "$MARK" "$T/tob.out" && fail "a client bound to a's measurement got data from b (another measurement)"
grep -q "network: TLS to 127.0.0.1:$PB (peer name 127.0.0.1): the peer's certificate carries scp-measurement:$MB, not the measurement the policy names (scp-measurement:$MA): connection refused" \
    "$T/tob.err" || fail "no clear log line for b's measurement: $(cat "$T/tob.err" "$T/tob.out")"
echo "ok: b refused: $(grep -o 'network: TLS to.*refused' "$T/tob.err" | head -1)"
"${RUN[@]}" --service to-b-service-a -- "$T/bin/redis-cli" >"$T/tbs.out" 2>"$T/tbs.err"
grep -q "$MARK" "$T/tbs.out" && fail "a client bound to service a got data from service b"
grep -q "the peer's certificate carries scp-service:b, not the service the policy names (scp-service:a)" "$T/tbs.err" ||
    fail "no clear log line for b's service: $(cat "$T/tbs.err")"
"${RUN[@]}" --service to-b-unbound -- "$T/bin/redis-cli" >"$T/tbu.out" 2>"$T/tbu.err"
[ "$(cat "$T/tbu.out")" = "$MARK-B" ] || fail "a rule naming the session only did not reach b: $(cat "$T/tbu.out" "$T/tbu.err")"
"${RUN[@]}" --service to-shared-measured -- "$T/bin/redis-cli" >"$T/tsm.out" 2>"$T/tsm.err"
grep -q "$MARK" "$T/tsm.out" && fail "a measurement rule accepted a session certificate"
grep -q "the peer's certificate carries no measurement (not a per-instance certificate), not the measurement the policy names" "$T/tsm.err" ||
    fail "no clear log line for a session certificate: $(cat "$T/tsm.err")"
echo "ok: a rule naming service a is refused by b, a session-only rule still reaches b, a measurement rule refuses a session certificate"

# Server side: port PM serves only clients of service cli with measurement MC
"${RUN[@]}" --service cli -- "$T/bin/redis-cli" >"$T/mc.out" 2>"$T/mc.err"
[ "$(cat "$T/mc.out")" = PONG ] || fail "the client with MC was refused: $(cat "$T/mc.out" "$T/mc.err" "$T/rm.err")"
"${RUN[@]}" --service cli -- "$T/bin/redis-cli-x" >"$T/mx.out" 2>"$T/mx.err"
for _ in $(seq 50); do grep -q "connection refused" "$T/rm.err" && break; sleep 0.1; done
grep -q PONG "$T/mx.out" && fail "the client with another measurement got an answer from the measured port"
grep -q "network: TLS from 127.0.0.1:[0-9]* on port $PM: the peer's certificate carries scp-measurement:$MX, not the measurement the policy names (scp-measurement:$MC): connection refused" \
    "$T/rm.err" || fail "the measured port did not refuse MX with the log line: $(cat "$T/rm.err" "$T/mx.err")"
echo "ok: a listen rule with client_measurement serves MC and refuses MX: $(grep -o 'network: TLS from.*refused' "$T/rm.err" | head -1)"
# Renewal: the supervisor attests again with the same instance key (--renew-interval 2 here; a
# day's certificate is renewed at half its validity by default); new connections get the new
# certificate, same key, same measurement; once the policy drops the measurement, renewal is
# refused with CAS's reason and the current certificate stays until it expires
"${RUN[@]}" --renew-interval 2 --service r -- "$T/bin/redis-server" >"$T/rr.out" 2>"$T/rr.err" &
PIDS+=($!)
for _ in $(seq 150); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $PR)).close()" 2>/dev/null && break
    sleep 0.1
done
S1=$(san "$PR" -noout -serial)
K1=$(san "$PR" -noout -pubkey)
[ -n "$S1" ] || fail "r serves no certificate: $(cat "$T/rr.err")"
for _ in $(seq 100); do grep -q "renewed the instance certificate of service r" "$T/rr.err" && break; sleep 0.1; done
grep -q "renewed the instance certificate of service r (valid until 20" "$T/rr.err" || fail "no renewal: $(cat "$T/rr.err")"
# (new connections get a renewed certificate once the supervisor has published it, a moment
# after its log line; and at a loaded machine S1 may already be the first renewal's: renewals
# come every 2 s, so wait up to 15 s for a serial other than S1)
for _ in $(seq 150); do
    S2=$(san "$PR" -noout -serial)
    [ -n "$S2" ] && [ "$S2" != "$S1" ] && break
    sleep 0.1
done
K2=$(san "$PR" -noout -pubkey)
san "$PR" -noout -ext subjectAltName >"$T/sanr.txt"
[ "$S1" != "$S2" ] && [ "$K1" = "$K2" ] || fail "after renewal: serial $S1 -> $S2, same key: $([ "$K1" = "$K2" ] && echo yes || echo no)"
grep -q "URI:scp-measurement:$MA" "$T/sanr.txt" || fail "the renewed certificate does not carry MA: $(cat "$T/sanr.txt")"
[ "$(tcli "$PR" ping)" = PONG ] || fail "r does not answer with its renewed certificate"
sed -e "/name: r\$/,/network:/ s/measurements: \[$MA\]/measurements: [$MB]/" "$T/inst.yaml" >"$T/inst2.yaml"
cmp -s "$T/inst.yaml" "$T/inst2.yaml" && fail "cannot make the policy without r's measurement"
expect_rc 0 "$SCPCTL" session update "$T/inst2.yaml" --predecessor "$HASH"
for _ in $(seq 100); do grep -q "cannot renew the instance certificate of service r" "$T/rr.err" && break; sleep 0.1; done
grep -q "cannot renew the instance certificate of service r: .*wrong_measurement.*; the current one is valid until 20" "$T/rr.err" ||
    fail "a refused renewal is not reported: $(tail -3 "$T/rr.err")"
[ "$(tcli "$PR" ping)" = PONG ] || fail "r stopped serving when its renewal was refused"
echo "ok: renewed every 2 s (serial $S1 -> $S2, same key, MA); refused once the policy dropped MA, the current certificate kept"
echo "PASS"
