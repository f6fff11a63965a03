#!/bin/bash
# tests/image/mariadb.sh - the curated secure MariaDB (images/mariadb, images/README.md) under
# `docker run` with a real CAS: Debian's mariadb-server 10.11 on the local bookworm base, USER
# mysql, the data directory /var/lib/mysql a protected volume (mariadb-install-db on the first
# start, InnoDB with the configuration tuned for the shield), the root and app passwords that
# CAS generates set by the injected --init-file, the port TLS through the network shield
# (certificate from CAS; `protocol: mysql`, the shield speaks MySQL's TLS start). The mariadb
# client connects with its own TLS, verifying CAS's service CA and the server's name
# (--ssl-verify-server-cert): the app user creates a table with a plaintext marker, a wrong password is refused, a
# plaintext client on the port gets nothing, mariadbd runs as mysql; the Docker volume holds no
# marker and no password, nothing reached /var/lib/mysql or the configuration in the container's
# layer; after docker stop (exit 0) and docker run the rows are back; a tampered image and a
# session listing another measurement get no secrets (curated_lib.sh).
# Usage: mariadb.sh SCPCTL. Exit 77 (skipped) without Docker or the mariadb client.
command -v mariadb >/dev/null || { echo "mariadb client not installed: skipped"; exit 77; }
PWSECRET=root_password START_SECS=${START_SECS:-180}
source "$(dirname "$0")/curated_lib.sh" "$1" mariadb
trap curated_cleanup EXIT
expect_rc 0 "$SCPCTL" session secret $S app_password
APW=$(cat "$T/last.out")
[ ${#APW} -eq 32 ] && [ "$APW" != "$PW" ] || fail "no app password from CAS"
sql() { # USER PASSWORD SQL...: TLS by the client, verifying CAS's service CA and the name
    local u=$1 p=$2
    shift 2
    mariadb --no-defaults --ssl --ssl-ca="$CA" --ssl-verify-server-cert --connect-timeout=10 -h 127.0.0.1 -P "$PORT" \
        -u "$u" -p"$p" -N -B -e "$*"
}
up() { sql root "$PW" 'select 1'; }

note "docker run: mariadb-install-db on the first start; the mariadb client over TLS with CAS's passwords"
start $TAG-c1 up
MARK=scp-images-mariadb-marker-$$-$RANDOM
sql app "$APW" "create table app.marker(id int primary key auto_increment, t varchar(80)) engine=innodb;
    insert into app.marker(t) values ('$MARK'), ('row2'), ('row3')" || fail "create table as app"
[ "$(sql app "$APW" 'select t from app.marker where id = 1')" = "$MARK" ] || fail "select the marker"
sql app wrong 'select 1' >/dev/null 2>&1 && fail "a wrong password was accepted"
sql app "$APW" 'select count(*) from mysql.global_priv' >/dev/null 2>&1 && fail "app reads the mysql schema"
[ "$(sql root "$PW" 'select @@innodb_flush_log_at_trx_commit, @@port')" = "$(printf '2\t%s' "$PORT")" ] ||
    fail "the injected configuration is not in effect: $(sql root "$PW" 'select @@innodb_flush_log_at_trx_commit, @@port')"
out=$(timeout 10 mariadb --no-defaults --skip-ssl --connect-timeout=5 -h 127.0.0.1 -P "$PORT" -u app -p"$APW" -N -B \
    -e 'select t from app.marker' 2>&1)
case $out in *"$MARK"*) fail "a plaintext client got the rows" ;; esac
case $out in *"Lost connection"*) ;; *) fail "no refusal of a plaintext client: $out" ;; esac
sql app "$APW" 'show session status like "Ssl_version"' | grep -qP '^Ssl_version\t$' ||
    fail "mariadbd itself speaks TLS (not the shield)"
mariadb --no-defaults --ssl --ssl-ca="$CA" --ssl-verify-server-cert -h 127.0.0.1 -P "$PORT" -u app -p"$APW" -e '\s' |
    grep -q "SSL:.*Cipher in use is TLS_AES" || fail "the client does not see TLS 1.3"
MYUID=$(docker run --rm --entrypoint /usr/bin/id $TAG/$CURATED:1 -u mysql)
docker top $TAG-c1 -eo pid,uid,comm | grep -E " $MYUID +mariadbd\$" >/dev/null ||
    fail "mariadbd does not run as mysql (uid $MYUID): $(docker top $TAG-c1 -eo pid,uid,comm)"
sql root "$PW" 'flush tables; set global innodb_fast_shutdown = 0' || fail "flush"

note "the Docker volume holds no plaintext; nothing reached /var/lib/mysql or the configuration"
no_plaintext "$MARK" /var/lib/mysql/ /etc/mysql/scp
grep -rqa "$APW" "$(docker volume inspect -f '{{.Mountpoint}}' $VOL)" && fail "the app password is in plaintext in the Docker volume"
grep -rqa "ibdata1\|ib_logfile0\|global_priv" "$(docker volume inspect -f '{{.Mountpoint}}' $VOL)" &&
    fail "file names of the data directory are in plaintext in the Docker volume"

note "docker stop, docker run again: the rows are back"
stop $TAG-c1
start $TAG-c2 up
[ "$(sql app "$APW" 'select count(*) from app.marker')" = 3 ] || fail "the rows did not come back"
[ "$(sql app "$APW" 'select t from app.marker where id = 1')" = "$MARK" ] || fail "the marker did not come back"
stop $TAG-c2

refused_checks
echo "images mariadb: ok"
