#!/bin/bash
# Two sqlite3 processes insert into one database on a protected volume at the same time
# (rollback journal and WAL, busy_timeout): integrity_check must be ok and every row there.
# DISABLED in CMakeLists: with the record locks of locks.sh the two exclude each other (their
# fcntl calls conflict as on a kernel file), but the rows of one process are still lost (see
# docs/shield.md, "Record locks"): what one process reads after taking the lock is not always
# what the other committed. Enable it once that is fixed.
. "$(dirname "$0")/lib.sh"
command -v sqlite3 >/dev/null || { echo "sqlite3 not installed: skipped"; exit 77; }
setup "$@"
    for mode in ${SQLITE_MODES:-DELETE WAL}; do
        db="$MNT/two-$mode.sqlite"
        note "$mode: two sqlite3 processes, 200 INSERTs each, at the same time"
        run sqlite3 "$db" "PRAGMA journal_mode=$mode; CREATE TABLE t(w TEXT, i INTEGER, v TEXT);" >/dev/null ||
            fail "$mode: create"
        for w in a b; do
            { echo ".timeout 60000"
              for i in $(seq 200); do echo "INSERT INTO t VALUES('$w', $i, 'SCPMARK_locks_$w$i');"; done
            } > "$T/ins-$w.sql"
        done
        run sh -c "sqlite3 '$db' < '$T/ins-a.sql' & a=\$!; sqlite3 '$db' < '$T/ins-b.sql'; b=\$?; wait \$a; exit \$((\$? | b))" ||
            fail "$mode: concurrent inserts failed"
        out=$(run sqlite3 "$db" "PRAGMA integrity_check; SELECT count(*), count(DISTINCT w || i) FROM t;") ||
            fail "$mode: reopen"
        [ "$out" = "ok
400|400" ] || fail "$mode: got '$out', want 'ok' and 400 distinct rows"
        echo "ok: $mode: integrity_check ok, 400 rows"
    done
check_no_plaintext SCPMARK_locks
echo PASS
