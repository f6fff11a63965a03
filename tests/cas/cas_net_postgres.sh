#!/bin/bash
# PostgreSQL's own clients through the network shield (docs/shield.md "PostgreSQL's
# SSLRequest"): Debian's postgres 15, configured without TLS (ssl=off), run as user postgres
# under `scpctl run --cas` with a listen rule `protocol: postgres`:
#  - psql on the host with sslmode=verify-full and CAS's service CA writes and reads a marker
#    row over TLS 1.3, while postgres itself reports the connection as not SSL (the shield
#    speaks TLS for it);
#  - psql with sslmode=disable (a plaintext startup packet) gets nothing, and the shield says why;
#  - a shielded psql whose own libpq asks for no TLS (a peer rule `protocol: postgres`) reads the
#    row: the shield sends the SSLRequest and verifies the server's certificate;
#  - a loopback capture of all of it holds no plaintext marker;
#  - a policy with an unknown protocol is refused with a clear message.
source "$(dirname "$0")/lib.sh" "$@"
PGBIN=/usr/lib/postgresql/15/bin
[ -x $PGBIN/postgres ] && [ -x $PGBIN/psql ] && [ -x $PGBIN/initdb ] || { echo "SKIP: no PostgreSQL 15"; exit 0; }
for p in setpriv tcpdump; do command -v $p >/dev/null || { echo "SKIP: no $p"; exit 0; }; done
{ [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; } || { echo "SKIP: needs root and a user postgres"; exit 0; }

start_cas_p1
user_dir postgres # postgres reads its data directory and the platform key as user postgres
"${AS[@]}" $PGBIN/initdb -D "$W/db" -A trust -U postgres >"$T/initdb.log" 2>&1 || fail "initdb: $(cat "$T/initdb.log")"
for p in postgres psql; do
    expect_rc 0 "$SCPCTL" platform measure -- $PGBIN/$p
    eval "M_$p=$(cat "$T/last.out")"
done
PORT=$(freeport)
MARK=SCPPGMARK$RANDOM$RANDOM
cat >"$T/pg.yaml" <<YAML
name: pgnet
services:
  - name: pg
    measurements: [$M_postgres]
    command: [$PGBIN/postgres, -D, $W/db, -c, listen_addresses=127.0.0.1, -p, "$PORT", -c, unix_socket_directories=$W, -c, ssl=off]
    network:
      certificate: tls
      listen: [{port: $PORT, protocol: postgres}]
      default: refuse
  - name: psql
    measurements: [$M_psql]
    command: [$PGBIN/psql, "host=127.0.0.1 port=$PORT user=postgres dbname=postgres sslmode=disable", -At, -c, "select t from marker"]
    network: {certificate: tls, peers: [{host: 127.0.0.1, port: $PORT, protocol: postgres}], default: refuse}
secrets:
  - {name: tls, kind: x509, common_name: pg, ip: [127.0.0.1]}
YAML
expect_rc 0 "$SCPCTL" session create "$T/pg.yaml"

sed 's/protocol: postgres}\]$/protocol: mqtt}]/' "$T/pg.yaml" | sed 's/^name: pgnet/name: pgbad/' >"$T/bad.yaml"
grep -q "protocol: mqtt" "$T/bad.yaml" || fail "the test's bad policy was not made"
expect_err 1 "protocol must be tls, postgres or mysql" "$SCPCTL" session create "$T/bad.yaml"
echo "ok: a policy with protocol: mqtt is refused"

capture_start "$T/lo.pcap" "tcp port $PORT"
env -u SCP_IDENTITY SCP_HOME="$W/home" "${AS[@]}" "$SCPCTL" run --session pgnet --service pg --platform-key "$W/p1.key" \
    --volume-dir "$W/vols" -- $PGBIN/postgres >"$T/pg.out" 2>"$T/pg.err" &
PPID_PG=$!
cleanup_all() {
    kill "$PPID_PG" 2>/dev/null
    wait "$PPID_PG" 2>/dev/null
    rm -rf "$W"
    cleanup
}
trap cleanup_all EXIT

TLSCONN="host=127.0.0.1 port=$PORT user=postgres dbname=postgres sslmode=verify-full sslrootcert=$CA"
for _ in $(seq 300); do
    $PGBIN/psql "$TLSCONN" -At -c "select 1" >"$T/up.out" 2>&1 && break
    kill -0 $PPID_PG 2>/dev/null || fail "postgres exited: $(cat "$T/pg.err")"
    sleep 0.1
done
grep -qx 1 "$T/up.out" || fail "psql sslmode=verify-full: $(cat "$T/up.out"; tail -5 "$T/pg.err")"
$PGBIN/psql "$TLSCONN" -At -c "create table marker(t text)" -c "insert into marker values ('$MARK')" \
    -c "select t from marker" -c "select ssl from pg_stat_ssl where pid = pg_backend_pid()" -c '\conninfo' >"$T/tls.out" 2>&1 ||
    fail "psql over TLS: $(cat "$T/tls.out")"
grep -qx "$MARK" "$T/tls.out" || fail "the marker row did not come back: $(cat "$T/tls.out")"
grep -A1 -x "$MARK" "$T/tls.out" | sed -n 2p | grep -qx f || fail "postgres itself spoke TLS (pg_stat_ssl): $(cat "$T/tls.out")"
grep -q "SSL connection (protocol: TLSv1.3" "$T/tls.out" || fail "psql does not report TLS 1.3: $(cat "$T/tls.out")"
echo "ok: psql sslmode=verify-full (CAS's service CA) over TLS 1.3; postgres itself runs with ssl=off"

$PGBIN/psql "host=127.0.0.1 port=$PORT user=postgres dbname=postgres sslmode=disable" -At -c "select t from marker" \
    >"$T/plain.out" 2>&1 && fail "a plaintext client was served: $(cat "$T/plain.out")"
grep -q "$MARK" "$T/plain.out" && fail "a plaintext client got the marker"
for _ in $(seq 50); do grep -q "did not ask for TLS" "$T/pg.err" && break; sleep 0.1; done
grep -q "did not ask for TLS" "$T/pg.err" || fail "no log line for the plaintext client: $(tail -5 "$T/pg.err")"
echo "ok: psql sslmode=disable gets nothing ($(head -1 "$T/plain.out"))"

"$SCPCTL" run --session pgnet --service psql --platform-key "$T/p1.key" --volume-dir "$T/vols" -- $PGBIN/psql \
    >"$T/cli.out" 2>"$T/cli.err" || fail "shielded psql: $(cat "$T/cli.out" "$T/cli.err")"
grep -qx "$MARK" "$T/cli.out" || fail "shielded psql did not read the marker: $(cat "$T/cli.out" "$T/cli.err")"
echo "ok: a shielded psql (its libpq asks for no TLS) reads the row through the peer rule"

capture_check_no "$T/lo.pcap" "$MARK" "select t from marker"
echo "ok: the capture ($CAP_PACKETS packets) holds no marker and no query text"
echo PASS
