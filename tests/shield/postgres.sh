#!/bin/bash
# PostgreSQL 15 (Debian's) with its whole data directory on a protected volume, run as an
# ordinary user (postgres, through setpriv) and mounted at /scp-pg-XXX/pgdata, which does not
# exist on the host: initdb, pg_ctl start (its log in the volume), pgbench -i -s 1, a short pgbench run, pg_ctl stop,
# start again, the rows are back (100000 accounts, every pgbench transaction in history, a
# marker row); the volume verifies and holds no plaintext marker; one byte inverted in the
# accounts table's ciphertext makes a scan fail with EIO (and verify exit 3). Covers: a mount point
# without a host directory (launch.c), ownership reported and checked inside the volume
# (initdb refuses a data directory of the wrong owner or mode), and processes of one server
# (backends, WAL writer, checkpointer) writing the same files at once (shared mode after fork).
. "$(dirname "$0")/lib.sh"
pg_setup "$1" "$2"
fail() { echo "FAIL: $*" >&2; "$SCPCTL" volume cat --key-file "$KEY" "$VOL" db/logfile 2>/dev/null | tail -20 >&2; exit 1; }
M=SCPMARK_postgres_$$
run() { # run SHELL-COMMANDS: under the shield as postgres, with the volume at $PGD
    (cd "$T" && SCP_QUIET=1 $AS "$SCPCTL" run --volume "$VOL:$PGD" --key-file "$KEY" -- sh -c "$1")
}
# The server's log is in the volume, as PostgreSQL's documentation has it (pg_ctl -l
# $PGDATA/logfile): PostgreSQL counts its free descriptors by dup(2) of that stderr, and refused
# to start while the copies of a protected file landed at 2048 and up ("System allows -1048").
PG="$PGBIN/pg_ctl -D $PGD/db -l $PGD/db/logfile -o \"-c listen_addresses='' -k $T\" -w"
SQL="$PGBIN/psql -h $T -U postgres -At -d postgres"
trap 'run "$PG stop -m immediate" >/dev/null 2>&1; rm -rf "$T"' EXIT

note "initdb, start, pgbench -i -s 1, pgbench -T 3, stop"
run "$PGBIN/initdb -D $PGD/db -A trust -U postgres >$T/initdb.log 2>&1 || { cat $T/initdb.log; exit 1; }
     $PG start >/dev/null &&
     pgbench -h $T -U postgres -q -i -s 1 postgres &&
     $SQL -c \"create table marker(t text); insert into marker values ('$M')\" &&
     pgbench -h $T -U postgres -T 3 postgres > $T/bench.out &&
     $PG stop >/dev/null" || fail "first run"
log=$("$SCPCTL" volume cat --key-file "$KEY" "$VOL" db/logfile) || fail "the server's log is not in the volume"
echo "$log" | grep -q "database system is ready to accept connections" || fail "the server's log in the volume: $log"
check_no_plaintext "ready to accept connections"
grep -E "^(number of transactions actually processed|tps)" "$T/bench.out"
n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/bench.out")
[ -n "$n" ] && [ "$n" -gt 0 ] || fail "pgbench processed no transaction"

note "start again: the rows are back"
out=$(run "$PG start >/dev/null &&
           $SQL -c 'select count(*) from pgbench_accounts' -c 'select count(*) from pgbench_history' \
                -c 'select t from marker' -c 'select sum(abalance) = (select sum(delta) from pgbench_history) from pgbench_accounts' \
                -c \"select pg_relation_filepath('pgbench_accounts')\" -c \"select pg_relation_size('pgbench_accounts')\";
           $PG stop >/dev/null") || fail "second run: $out"
echo "$out"
[ "$(echo "$out" | sed -n 1p)" = 100000 ] || fail "pgbench_accounts lost rows"
[ "$(echo "$out" | sed -n 2p)" = "$n" ] || fail "pgbench_history has $(echo "$out" | sed -n 2p) rows, expected $n"
[ "$(echo "$out" | sed -n 3p)" = "$M" ] || fail "the marker row is not back"
[ "$(echo "$out" | sed -n 4p)" = t ] || fail "account balances do not match the history"
[ -e "${PGD%/pgdata}" ] && fail "the mount point was created on the host"
"$SCPCTL" volume verify "$VOL" --key-file "$KEY" >/dev/null || fail "the volume does not verify"
check_no_plaintext "$M"

# Bad input: one byte of the accounts table's ciphertext inverted on the host (flip_byte; the
# object is the one of the table's size, which the host sees anyway, confirmed by verify's
# report). The server still starts (a volume's open does not
# read every chunk), and a scan of the table fails with PostgreSQL's own I/O error, never a
# wrong count; with the byte put back the table reads whole again.
note "one byte of pgbench_accounts' ciphertext inverted: verify exits 3, the scan fails with EIO; put back, it reads"
rel=db/$(echo "$out" | sed -n 5p)
hit=
for obj in $(find "$VOL/objects" -name '*.d' -size "$(echo "$out" | sed -n 6p)c"); do
    off=$(( $(stat -c %s "$obj") / 2 ))
    flip_byte "$obj" $off || fail "tamper failed"
    vout=$("$SCPCTL" volume verify "$VOL" --key-file "$KEY" 2>&1)
    vrc=$?
    if echo "$vout" | grep -q "CORRUPT $rel "; then hit=$obj; break; fi
    flip_byte "$obj" $off || fail "tamper failed"
done
[ -n "$hit" ] || fail "no object of the volume holds $rel"
[ "$vrc" = 3 ] || fail "verify of the tampered volume: exit $vrc, expected 3"
# (count(abalance), not count(*): the column is in no index, so every heap block is read; a
# count(*) may be served by an index-only scan of the primary key, which the vacuum of pgbench
# -i made possible, and then reads the heap only where a page is not all-visible: it counted
# 100,000 rows without reading the tampered block once in four runs: the plan, not the volume)
out=$(run "$PG start >/dev/null && { $SQL -c 'select count(abalance) from pgbench_accounts' 2>&1; $PG stop >/dev/null; }")
echo "$out"
echo "$out" | grep -q 'could not read block .* Input/output error' || fail "the scan of the tampered table did not fail with EIO: $out"
echo "$out" | grep -qx 100000 && fail "the tampered table was read as whole"
flip_byte "$hit" $off || fail "tamper failed"
out=$(run "$PG start >/dev/null && $SQL -c 'select count(abalance) from pgbench_accounts'; $PG stop >/dev/null") || fail "after the repair: $out"
[ "$out" = 100000 ] || fail "after the byte was put back: $out rows"
"$SCPCTL" volume verify "$VOL" --key-file "$KEY" >/dev/null || fail "the repaired volume does not verify"

# initdb --waldir: pg_wal a link in the volume to a plain directory that the operator chose
# (its WAL is then as protected as that directory: not at all); the segments are created and
# renamed within it (EXDEV before: bench/RESULTS.md, session 33)
note "initdb --waldir (the WAL on a plain directory, the rest in the volume), start, insert, stop, start: the row is back"
$AS mkdir "$T/wal-plain" || fail "mkdir"
out=$(run "$PGBIN/initdb -D $PGD/db2 --waldir=$T/wal-plain/wal -A trust -U postgres >$T/initdb2.log 2>&1 || { cat $T/initdb2.log; exit 1; }
     P2=\"$PGBIN/pg_ctl -D $PGD/db2 -l $T/pg2.log -o \\\"-c listen_addresses='' -k $T\\\" -w\"
     eval \$P2 start >/dev/null && $SQL -c \"create table w(t text); insert into w values ('x')\" >/dev/null && eval \$P2 stop >/dev/null &&
     eval \$P2 start >/dev/null && $SQL -c 'select count(*) from w' && eval \$P2 stop >/dev/null") || fail "--waldir: $out"
[ "$out" = 1 ] || fail "--waldir: the row is not back ($out)"
ls "$T/wal-plain/wal" | grep -q '^0000000100000000000000' || fail "--waldir: no WAL segment in the plain directory"
echo PASS
