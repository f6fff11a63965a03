#!/bin/bash
# MySQL clients through the network shield (docs/shield.md "MySQL's SSLRequest"): Debian's
# mariadbd, configured without TLS, run as user mysql under `scpctl run --cas` with a listen
# rule `protocol: mysql`:
#  - the mariadb client with --ssl-verify-server-cert and CAS's service CA logs in with a
#    password and writes and reads a marker row over TLS 1.3, while mariadbd itself reports the
#    session as not encrypted (Ssl_version empty: the shield speaks TLS for it);
#  - a client that offers another authentication plugin (client_ed25519) is switched by the
#    server to the user's (an AuthSwitchRequest inside TLS) and logs in;
#  - a wrong password gets the server's "Access denied", through TLS;
#  - a client without TLS (--skip-ssl) gets nothing, and the shield says why;
#  - a loopback capture of all of it holds no plaintext marker or query;
#  - a shielded mariadb client told to use no TLS (--skip-ssl; a peer rule `protocol: mysql`)
#    reads the row: the shield sends the SSLRequest and verifies the server's certificate.
source "$(dirname "$0")/lib.sh" "$@"
for p in mariadb mariadb-install-db setpriv tcpdump; do command -v $p >/dev/null || { echo "SKIP: no $p"; exit 0; }; done
[ -x /usr/sbin/mariadbd ] || { echo "SKIP: no mariadbd"; exit 0; }
{ [ "$(id -u)" = 0 ] && id mysql >/dev/null 2>&1; } || { echo "SKIP: needs root and a user mysql"; exit 0; }

start_cas_p1
user_dir mysql
PW=pw$RANDOM$RANDOM
printf "CREATE USER IF NOT EXISTS 'scp'@'%%' IDENTIFIED BY '%s';\nGRANT ALL ON *.* TO 'scp'@'%%';\n" "$PW" >"$W/init.sql"
chown mysql: "$W/init.sql"
"${AS[@]}" mariadb-install-db --no-defaults --datadir="$W/db" --skip-test-db --skip-name-resolve --tmpdir="$W" \
    --innodb-buffer-pool-size=16M --innodb-log-file-size=8M >"$T/install.log" 2>&1 || fail "mariadb-install-db: $(tail -5 "$T/install.log")"
expect_rc 0 "$SCPCTL" platform measure -- /usr/sbin/mariadbd
M_my=$(cat "$T/last.out")
measure_copy M_cli mariadb
PORT=$(freeport)
MARK=SCPMYMARK$RANDOM$RANDOM
cat >"$T/my.yaml" <<YAML
name: mynet
services:
  - name: my
    measurements: [$M_my]
    command: [/usr/sbin/mariadbd, --no-defaults, --datadir=$W/db, --socket=$W/sock, --port=$PORT, --bind-address=127.0.0.1,
              --pid-file=$W/pid, --log-error=$W/err.log, --tmpdir=$W, --skip-name-resolve, --init-file=$W/init.sql,
              --innodb-buffer-pool-size=16M, --innodb-log-file-size=8M]
    network:
      certificate: tls
      listen: [{port: $PORT, protocol: mysql}]
      default: refuse
  - name: cli
    measurements: [$M_cli]
    command: [mariadb, --no-defaults, -h, 127.0.0.1, -P, "$PORT", -u, scp, -p$PW, -N, -B, --skip-ssl, -e, "select v from t.m"]
    network: {certificate: tls, peers: [{host: 127.0.0.1, port: $PORT, protocol: mysql}], default: refuse}
secrets:
  - {name: tls, kind: x509, common_name: my, ip: [127.0.0.1]}
YAML
expect_rc 0 "$SCPCTL" session create "$T/my.yaml"

capture_start "$T/lo.pcap" "tcp port $PORT"
env -u SCP_IDENTITY SCP_HOME="$W/home" "${AS[@]}" "$SCPCTL" run --session mynet --service my --platform-key "$W/p1.key" \
    --volume-dir "$W/vols" -- /usr/sbin/mariadbd >"$T/my.out" 2>"$T/my.err" &
SPID=$!
cleanup_all() {
    kill "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    rm -rf "$W"
    cleanup
}
trap cleanup_all EXIT

CLI=(mariadb --no-defaults --connect-timeout=10 -h 127.0.0.1 -P "$PORT" -u scp -N -B --ssl --ssl-ca="$CA" --ssl-verify-server-cert)
for _ in $(seq 600); do
    "${CLI[@]}" -p"$PW" -e "select 1" >"$T/up.out" 2>&1 && break
    kill -0 $SPID 2>/dev/null || fail "mariadbd exited: $(cat "$T/my.err"; tail -5 "$W/err.log")"
    sleep 0.1
done
grep -qx 1 "$T/up.out" || fail "mariadb --ssl-verify-server-cert: $(cat "$T/up.out"; tail -5 "$T/my.err")"
"${CLI[@]}" -p"$PW" -e "create database t; create table t.m(v varchar(64)); insert into t.m values ('$MARK');
    select v from t.m; show session status like 'Ssl_version'; show session status like 'Ssl_cipher'" >"$T/tls.out" 2>&1 ||
    fail "SQL over TLS: $(cat "$T/tls.out")"
grep -qx "$MARK" "$T/tls.out" || fail "the marker row did not come back: $(cat "$T/tls.out")"
grep -qP "^Ssl_version\t$" "$T/tls.out" || fail "mariadbd itself spoke TLS: $(cat "$T/tls.out")"
"${CLI[@]}" -p"$PW" -e '\s' >"$T/status.out" 2>&1 || fail "status: $(cat "$T/status.out")"
grep -q "SSL:.*Cipher in use is TLS_AES" "$T/status.out" || fail "the client does not report TLS 1.3: $(grep SSL "$T/status.out")"
echo "ok: mariadb --ssl-verify-server-cert (CAS's service CA) over TLS 1.3; mariadbd itself runs without TLS"

"${CLI[@]}" -p"$PW" --default-auth=client_ed25519 -e "select v from t.m" >"$T/switch.out" 2>&1 ||
    fail "a client offering client_ed25519: $(cat "$T/switch.out")"
grep -qx "$MARK" "$T/switch.out" || fail "after the authentication switch: $(cat "$T/switch.out")"
echo "ok: an authentication switch (client_ed25519 offered, mysql_native_password used) inside TLS"

"${CLI[@]}" -pwrong$PW -e "select 1" >"$T/wrong.out" 2>&1 && fail "a wrong password logged in"
grep -q "Access denied for user 'scp'" "$T/wrong.out" || fail "a wrong password: $(cat "$T/wrong.out")"
echo "ok: a wrong password gets the server's answer: $(head -1 "$T/wrong.out")"

mariadb --no-defaults -h 127.0.0.1 -P "$PORT" -u scp -p"$PW" -N -B --skip-ssl -e "select v from t.m" >"$T/plain.out" 2>&1 &&
    fail "a client without TLS was served: $(cat "$T/plain.out")"
grep -q "$MARK" "$T/plain.out" && fail "a client without TLS got the marker"
# (mariadbd's --log-error takes its stderr, where the shield's log lines go)
for _ in $(seq 50); do grep -q "did not ask for TLS" "$W/err.log" && break; sleep 0.1; done
grep -q "did not ask for TLS" "$W/err.log" || fail "no log line for the client without TLS: $(cat "$T/plain.out"; tail -5 "$W/err.log")"
echo "ok: mariadb --skip-ssl gets nothing ($(head -1 "$T/plain.out"))"

RUN=("$SCPCTL" run --session mynet --platform-key "$T/p1.key" --volume-dir "$T/vols")
"${RUN[@]}" --service cli -- "$T/bin/mariadb" >"$T/cli.out" 2>"$T/cli.err" || fail "shielded mariadb: $(cat "$T/cli.out" "$T/cli.err")"
grep -qx "$MARK" "$T/cli.out" || fail "the shielded client did not read the marker: $(cat "$T/cli.out" "$T/cli.err")"
echo "ok: a shielded mariadb --skip-ssl reads the row through the peer rule (the shield's TLS)"

capture_check_no "$T/lo.pcap" "$MARK" "select v from t.m" "$PW"
echo "ok: the capture ($CAP_PACKETS packets) holds no marker, query or password"
echo PASS
