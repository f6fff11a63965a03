#!/bin/bash
# The network shield (docs/shield.md "Network shield") with real programs and real clients:
# a redis-server that speaks plain RESP, run by `scpctl run --cas` with a policy whose network
# section names its port, serves TLS 1.3 with the certificate CAS issued; redis-cli --tls and
# redis-benchmark --tls (clients nobody here wrote) verify it with CAS's service CA. A loopback
# capture shows no plaintext marker; a plaintext client gets nothing and does not disturb other
# connections; a client that trusts another CA fails; nginx's plain HTTP is HTTPS to curl; a
# shielded client (redis-cli without --tls) reaches the shielded server through a peer rule
# (both ends attested), and a peer rule with the wrong name fails with a clear log line; the
# default `refuse` gives ECONNREFUSED to any other TCP destination.
source "$(dirname "$0")/lib.sh" "$@"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { echo "SKIP: no redis"; exit 0; }

A=$T/admin.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
export SCP_IDENTITY=$A
start_cas --admin "$A"
expect_rc 0 "$SCPCTL" platform create-key "$T/p1.key"
expect_rc 0 "$SCPCTL" platform enroll --name p1 --key "$T/p1.key"
CA=$T/data/service-ca.crt
[ -s "$CA" ] || fail "no service CA in CAS's data directory"

mkdir -p "$T/bin"
cp "$(command -v redis-server)" "$T/bin/redis-server"
cp "$(command -v redis-cli)" "$T/bin/redis-cli"
expect_rc 0 "$SCPCTL" platform measure -- "$T/bin/redis-server"
MR=$(cat "$T/last.out")
expect_rc 0 "$SCPCTL" platform measure -- "$T/bin/redis-cli"
MC=$(cat "$T/last.out")
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(freeport)
PORT2=$(freeport)
MARK=SCPNETMARK$RANDOM$RANDOM

cat >"$T/net.yaml" <<YAML
name: net
services:
  - name: redis
    measurements: [$MR]
    command: [redis-server, --port, "$PORT", --bind, 127.0.0.1, --save, "", --appendonly, "no", --protected-mode, "no"]
    network:
      certificate: tls
      listen: [{port: $PORT}]
  - name: client
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PORT", get, k]
    network:
      certificate: tls
      peers: [{host: 127.0.0.1, port: $PORT, name: 127.0.0.1}]
      default: refuse
  - name: badname
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PORT", get, k]
    network:
      peers: [{host: 127.0.0.0/8, port: $PORT, name: not-redis.example}]
  - name: refused
    measurements: [$MC]
    command: [redis-cli, -h, 127.0.0.1, -p, "$PORT2", ping]
    network:
      peers: [{host: 127.0.0.1, port: $PORT, name: 127.0.0.1}]
      default: refuse
secrets:
  - {name: tls, kind: x509, common_name: redis.net, dns: [localhost], ip: [127.0.0.1]}
YAML
expect_rc 0 "$SCPCTL" session create "$T/net.yaml"
RUN=("$SCPCTL" run --session net --platform-key "$T/p1.key" --volume-dir "$T/vols")

"${RUN[@]}" --service redis -- "$T/bin/redis-server" >"$T/redis.out" 2>"$T/redis.err" &
RPID=$!
cleanup_all() { kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; [ -n "${DPID:-}" ] && kill "$DPID" 2>/dev/null; cleanup; }
trap cleanup_all EXIT
tcli() { redis-cli --tls --cacert "$CA" -h 127.0.0.1 -p "$PORT" "$@"; }
for _ in $(seq 100); do
    [ "$(tcli ping 2>/dev/null)" = PONG ] && break
    kill -0 $RPID 2>/dev/null || fail "redis exited: $(cat "$T/redis.err"; tail -5 "$T/redis.out")"
    sleep 0.1
done
[ "$(tcli ping 2>&1)" = PONG ] || fail "redis-cli --tls gets no PONG: $(tcli ping 2>&1; cat "$T/redis.err")"
echo "ok: redis-cli --tls with CAS's service CA"
