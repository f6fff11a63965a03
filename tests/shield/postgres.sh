#!/bin/bash
# PostgreSQL 15 (Debian's) with its whole data directory on a protected volume, run as an
# ordinary user (postgres, through setpriv) and mounted at /scp-pg-XXX/pgdata, which does not
# exist on the host: initdb, pg_ctl start, pgbench -i -s 1, a short pgbench run, pg_ctl stop,
# start again, the rows are back (100000 accounts, every pgbench transaction in history, a
# marker row); the volume verifies and holds no plaintext marker. Covers: a mount point
# without a host directory (launch.c), ownership reported and checked inside the volume
# (initdb refuses a data directory of the wrong owner or mode), and processes of one server
# (backends, WAL writer, checkpointer) writing the same files at once (shared mode after fork).
. "$(dirname "$0")/lib.sh"
pg_setup "$1" "$2"
M=SCPMARK_postgres_$$
run() { # run SHELL-COMMANDS: under the shield as postgres, with the volume at $PGD
    (cd "$T" && SCP_QUIET=1 $AS "$SCPCTL" run --volume "$VOL:$PGD" --key-file "$KEY" -- sh -c "$1")
}
PG="$PGBIN/pg_ctl -D $PGD/db -l $T/pg.log -o \"-c listen_addresses='' -k $T\" -w"
SQL="$PGBIN/psql -h $T -U postgres -At -d postgres"
trap 'run "$PG stop -m immediate" >/dev/null 2>&1; rm -rf "$T"' EXIT

note "initdb, start, pgbench -i -s 1, pgbench -T 3, stop"
run "$PGBIN/initdb -D $PGD/db -A trust -U postgres >$T/initdb.log 2>&1 || { cat $T/initdb.log; exit 1; }
     $PG start >/dev/null &&
     pgbench -h $T -U postgres -q -i -s 1 postgres &&
     $SQL -c \"create table marker(t text); insert into marker values ('$M')\" &&
     pgbench -h $T -U postgres -T 3 postgres > $T/bench.out &&
     $PG stop >/dev/null" || fail "first run"
grep -E "^(number of transactions actually processed|tps)" "$T/bench.out"
n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/bench.out")
[ -n "$n" ] && [ "$n" -gt 0 ] || fail "pgbench processed no transaction"

note "start again: the rows are back"
out=$(run "$PG start >/dev/null &&
           $SQL -c 'select count(*) from pgbench_accounts' -c 'select count(*) from pgbench_history' \
                -c 'select t from marker' -c 'select sum(abalance) = (select sum(delta) from pgbench_history) from pgbench_accounts';
           $PG stop >/dev/null") || fail "second run: $out"
echo "$out"
[ "$(echo "$out" | sed -n 1p)" = 100000 ] || fail "pgbench_accounts lost rows"
[ "$(echo "$out" | sed -n 2p)" = "$n" ] || fail "pgbench_history has $(echo "$out" | sed -n 2p) rows, expected $n"
[ "$(echo "$out" | sed -n 3p)" = "$M" ] || fail "the marker row is not back"
[ "$(echo "$out" | sed -n 4p)" = t ] || fail "account balances do not match the history"
[ -e "${PGD%/pgdata}" ] && fail "the mount point was created on the host"
"$SCPCTL" volume verify "$VOL" --key-file "$KEY" >/dev/null || fail "the volume does not verify"
check_no_plaintext "$M"
echo PASS
