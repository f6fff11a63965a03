#!/bin/bash
# Two sqlite3 processes insert into one database on a protected volume at the same time
# (rollback journal and WAL, busy_timeout). Rollback-journal mode: integrity_check ok and all
# 400 rows there (their fcntl locks exclude each other as on a kernel file, and each reads what
# the other committed). WAL mode, 500 rows each: sqlite shares its -shm index between the
# processes through a writable shared mapping, which both map from one shared object
# (docs/shield.md, "mmap"): every statement succeeds, all 1,000 rows are there, and
# integrity_check is ok. Both as one program's two processes (a shell that runs both) and as
# two programs (two `scpctl run`s of the volume, started separately: the first holds the volume
# alone until the second opens it, then both work in shared mode; before, the first kept the
# writer lock of every file it had written and the second's statements failed with "disk I/O
# error").
. "$(dirname "$0")/lib.sh"
command -v sqlite3 >/dev/null || { echo "sqlite3 not installed: skipped"; exit 77; }
setup "$@"
for how in ${SQLITE_HOW:-family programs}; do
    for mode in ${SQLITE_MODES:-DELETE WAL}; do
        db="$MNT/two-$how-$mode.sqlite"
        rows=200
        [ "$mode" = WAL ] && rows=500
        note "$mode: two sqlite3 processes ($how), $rows INSERTs each, at the same time"
        run sqlite3 "$db" "PRAGMA journal_mode=$mode; CREATE TABLE t(w TEXT, i INTEGER, v TEXT);" >/dev/null ||
            fail "$mode ($how): create"
        for w in a b; do
            { echo ".timeout 60000"
              for i in $(seq $rows); do echo "INSERT INTO t VALUES('$w', $i, 'SCPMARK_locks_$w$i');"; done
            } > "$T/ins-$w.sql"
        done
        if [ "$how" = family ]; then
            run sh -c "sqlite3 '$db' < '$T/ins-a.sql' 2>'$T/err-a' & a=\$!; sqlite3 '$db' < '$T/ins-b.sql' 2>'$T/err-b'; b=\$?; wait \$a; exit \$((\$? | b))"
            rc=$?
        else
            run sqlite3 "$db" < "$T/ins-a.sql" 2>"$T/err-a" & a=$!
            run sqlite3 "$db" < "$T/ins-b.sql" 2>"$T/err-b"; rc=$?
            wait $a || rc=1
        fi
        # every statement that failed said so on stderr ("Parse error near line N: ...")
        nerr=$(cat "$T/err-a" "$T/err-b" | grep -c '^Parse error near line')
        out=$(run sqlite3 "$db" "PRAGMA integrity_check; SELECT count(*), count(DISTINCT w || i) FROM t;") ||
            fail "$mode ($how): reopen"
        want=$((2 * rows - nerr))
        [ "$out" = "ok
$want|$want" ] || fail "$mode ($how): got '$out' with $nerr reported errors, want 'ok' and $want distinct rows (a row lost silently)"
        [ $rc -eq 0 ] && [ "$nerr" -eq 0 ] || fail "$mode ($how): concurrent inserts failed: $(cat "$T/err-a" "$T/err-b" | head -3)"
        echo "ok: $mode ($how): integrity_check ok, $want rows"
    done
done
check_no_plaintext SCPMARK_locks
# nor the directory of the shared objects of writable shared mappings (tmpfs)
shmdir=/dev/shm/scp-shm-$(id -u)
if [ -d "$shmdir" ] && grep -r -a -l -F SCPMARK_locks "$shmdir" >/dev/null 2>&1; then
    fail "plaintext marker in $shmdir"
fi
echo PASS
