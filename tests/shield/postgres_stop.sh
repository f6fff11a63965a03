#!/bin/bash
# PostgreSQL 15 on a protected volume, stopped while pgbench runs: `pg_ctl stop -m immediate`
# (SIGQUIT: every backend's handler calls _exit, mid-commit as likely as not) and `-m fast`
# (SIGINT), in turns, ROUNDS times, each followed by a start, which must recover: postmaster.pid
# readable (pg_ctl status), every account row there and the balances equal to the history (no
# transaction half there; pgbench -n: no vacuum, which would empty the history). At the end the
# volume verifies. Before the shield deferred the program's signals out of its commits
# (nofault.c), a backend could die of an assertion in file_commit or hang in _exit's commit.
# usage: postgres_stop.sh SCPCTL MKVOL [ROUNDS]
. "$(dirname "$0")/lib.sh"
pg_setup "$1" "$2"
ROUNDS=${3:-4}
PG="$PGBIN/pg_ctl -D $PGD/db -l $T/pg.log -o \"-c listen_addresses='' -k $T\" -w -t 120"
SQL="$PGBIN/psql -h $T -U postgres -At -d postgres"
# one shielded shell runs it all (one volume user at a time); its output is checked below
cat > "$T/script.sh" <<SCRIPT
set -u
say() { echo "\$*"; }
check() { # after a start: the pid file reads, the rows are there, the balances add up
    $PGBIN/pg_ctl -D $PGD/db status >/dev/null || { say "pg_ctl status: \$?"; cat $PGD/db/postmaster.pid; exit 1; }
    head -1 $PGD/db/postmaster.pid >/dev/null || exit 1
    say "rows \$($SQL -c 'select count(*) from pgbench_accounts') balanced \$($SQL -c 'select sum(abalance) = (select coalesce(sum(delta), 0) from pgbench_history) from pgbench_accounts')"
}
$PGBIN/initdb -D $PGD/db -A trust -U postgres >$T/initdb.log 2>&1 || { cat $T/initdb.log; exit 1; }
$PG start >/dev/null || exit 1
pgbench -h $T -U postgres -q -i -s 1 postgres >/dev/null 2>&1 || { say "pgbench -i failed"; exit 1; }
for i in \$(seq $ROUNDS); do
    mode=immediate; [ \$((i % 2)) = 0 ] && mode=fast
    pgbench -n -h $T -U postgres -c 4 -T 60 postgres >/dev/null 2>&1 &
    sleep \$((2 + i % 3))
    $PG stop -m \$mode >/dev/null 2>$T/stop.err || { say "stop -m \$mode: \$(cat $T/stop.err)"; exit 1; }
    wait
    $PG start >/dev/null || { say "start after stop -m \$mode failed"; exit 1; }
    say "round \$i (\$mode): \$(check)"
done
$PG stop >/dev/null || exit 1
SCRIPT
chmod 644 "$T/script.sh"
out=$(cd "$T" && SCP_QUIET=1 $AS "$SCPCTL" run --volume "$VOL:$PGD" --key-file "$KEY" -- sh "$T/script.sh" 2>&1)
rc=$?
echo "$out"
[ $rc = 0 ] || fail "the shielded run ended with status $rc"
[ "$(echo "$out" | grep -c '^round [0-9]* ([a-z]*): rows 100000 balanced t$')" = "$ROUNDS" ] ||
    fail "a round did not recover with every row and balanced accounts"
"$SCPCTL" volume verify "$VOL" --key-file "$KEY" >/dev/null || fail "the volume does not verify"
rm -rf "$T"
echo PASS
