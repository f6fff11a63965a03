#!/bin/sh
# sqlite3 (Debian's CLI) on a protected volume: 100k rows in rollback-journal mode and in WAL
# mode, separate transactions and a rollback, close, reopen, query, integrity_check; no
# plaintext in the backing dir; a tampered chunk makes sqlite report an I/O error.
. "$(dirname "$0")/lib.sh"
command -v sqlite3 >/dev/null || { echo "sqlite3 not installed: skipped"; exit 77; }
setup "$@"

for mode in DELETE WAL; do
    db="$MNT/db-$mode.sqlite"
    note "$mode: create and insert 100k rows"
    run sqlite3 "$db" "PRAGMA journal_mode=$mode;
        CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
        CREATE INDEX tv ON t(v);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<60000)
          INSERT INTO t SELECT x, 'SCPMARK_sqlite_' || x FROM c;" >/dev/null || fail "$mode: create"
    run sqlite3 "$db" "
        WITH RECURSIVE c(x) AS (SELECT 60001 UNION ALL SELECT x+1 FROM c WHERE x<100000)
          INSERT INTO t SELECT x, 'SCPMARK_sqlite_' || x FROM c;
        BEGIN; DELETE FROM t WHERE id > 50000; ROLLBACK;
        BEGIN; UPDATE t SET v = v || '_u' WHERE id % 10 = 0; COMMIT;" || fail "$mode: transactions"
    note "$mode: reopen and check"
    out=$(run sqlite3 "$db" "SELECT count(*), sum(id), sum(v LIKE '%_u') FROM t; PRAGMA integrity_check; PRAGMA journal_mode;") ||
        fail "$mode: reopen"
    want="100000|5000050000|10000
ok
$(echo $mode | tr 'A-Z' 'a-z')"
    [ "$out" = "$want" ] || fail "$mode: got '$out', want '$want'"
done
check_no_plaintext SCPMARK_sqlite

note tamper
run rm "$MNT/db-WAL.sqlite" || fail "rm"
tamper_largest
# The shield returns EIO for the chunk; sqlite reports that read error either as "disk I/O
# error" or, inside a b-tree walk, as "malformed". Either way it must fail, and the trace must
# show that the failure came from authentication (an EIO from the shield), not from bad bytes.
if "$SCPCTL" run --trace="$T/trace" --volume "$VOL:$MNT" --key-file "$KEY" -- \
       sqlite3 "$MNT/db-DELETE.sqlite" "SELECT sum(length(v)) FROM t; PRAGMA integrity_check;" \
       > "$T/t.out" 2> "$T/t.err"; then
    cat "$T/t.out" >&2
    fail "sqlite read a tampered database without error"
fi
grep -Eq "disk I/O error|malformed" "$T/t.err" || { cat "$T/t.err" >&2; fail "sqlite did not report an error"; }
grep -q "read of 'db-DELETE.sqlite' failed" "$T/trace" || fail "the shield did not report the integrity failure"
echo PASS
