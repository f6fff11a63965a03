#!/bin/sh
# tests/shield/postgres_root.sh SCPCTL MKVOL - PostgreSQL with its data directory at the
# volume's mount point, as the official image and most compose files place PGDATA: initdb
# (which chmods the directory 0700), start, a row written and read, stop, start again. Before
# the root kept its mode, initdb's chmod changed nothing and the server refused the 0755
# directory ("initdb: error ..."/"has invalid permissions").
. "$(dirname "$0")/lib.sh"
pg_setup "$1" "$2"
run() { (cd "$T" && SCP_QUIET=1 $AS "$SCPCTL" run --volume "$VOL:$PGD" --key-file "$KEY" -- sh -c "$1"); }
PG="$PGBIN/pg_ctl -D $PGD -l $T/pg.log -o \"-c listen_addresses='' -k $T\" -w"
SQL="$PGBIN/psql -h $T -U postgres -At -d postgres"
trap 'run "$PG stop -m immediate" >/dev/null 2>&1; rm -rf "$T"' EXIT
out=$(run "$PGBIN/initdb -D $PGD -A trust -U postgres >$T/initdb.log 2>&1 || { cat $T/initdb.log; exit 1; }
     stat -c '%a %U' $PGD && $PG start >/dev/null &&
     $SQL -c \"create table t(x text); insert into t values ('SCPMARK_root')\" && $PG stop >/dev/null" 2>&1) ||
    fail "initdb and first start: $out"
echo "$out"
echo "$out" | grep -qx "700 postgres" || fail "the data directory (the mount point) is not 0700 postgres: $out"
out=$(run "$PG start >/dev/null && $SQL -c 'select x from t' && $PG stop >/dev/null" 2>&1) || fail "second start: $out"
[ "$out" = SCPMARK_root ] || fail "the row is not back: $out"
check_no_plaintext SCPMARK_root
echo "PGDATA at the mount point: ok"
