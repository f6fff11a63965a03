#!/bin/bash
# The manifest log folded at a sole holder's exit (scp_volume_fold_at_exit, docs/shield.md "The
# read path"): sqlite3 makes 200 one-row transactions (a record each, ~67 KB of log) and exits:
# the log is a bare header again, the trace says so, and the data reads back and verifies. A
# run of 20 transactions (under SCP_VOLUME_EXIT_FOLD_MIN) leaves its records in the log.
. "$(dirname "$0")/lib.sh"
command -v sqlite3 >/dev/null || { echo "sqlite3 not installed: skipped"; exit 77; }
setup "$@"
export SCP_QUIET=1
logsize() { stat -c %s "$VOL/manifest.log"; }
txns() { for i in $(seq "$1" "$2"); do echo "INSERT INTO t(v) VALUES('row-$i');"; done; }

note "200 transactions, then exit"
{ echo "PRAGMA journal_mode=DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"; txns 1 200; } > "$T/a.sql"
"$SCPCTL" run --trace="$T/trace1" --volume "$VOL:$MNT" --key-file "$KEY" -- sqlite3 "$MNT/db" < "$T/a.sql" >/dev/null ||
    fail "sqlite3 failed"
[ "$(logsize)" -eq 48 ] || fail "manifest.log is $(logsize) bytes after the exit, not a bare 48-byte header"
grep -q "manifest log folded at exit" "$T/trace1" || fail "the trace does not report the fold"
out=$(run sqlite3 "$MNT/db" "SELECT count(*), max(v) FROM t; PRAGMA integrity_check;") || fail "reopen"
[ "$out" = "200|row-99
ok" ] || fail "after the fold: got '$out'"

note "20 transactions: the log kept"
txns 201 220 > "$T/b.sql"
"$SCPCTL" run --trace="$T/trace2" --volume "$VOL:$MNT" --key-file "$KEY" -- sqlite3 "$MNT/db" < "$T/b.sql" >/dev/null ||
    fail "sqlite3 failed"
[ "$(logsize)" -gt 48 ] || fail "a short log was folded (manifest.log $(logsize) bytes)"
grep -q "manifest log folded" "$T/trace2" && fail "the trace reports a fold of a short log"
out=$(run sqlite3 "$MNT/db" "SELECT count(*) FROM t;") || fail "reopen"
[ "$out" = 220 ] || fail "after the short run: got '$out'"
"$SCPCTL" volume verify "$VOL" --key-file "$KEY" >/dev/null || fail "verify"
echo PASS
