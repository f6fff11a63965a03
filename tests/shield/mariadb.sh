#!/bin/bash
# MariaDB 10.11 (Debian's) with its data directory on a protected volume, run as the mysql
# user (through setpriv) with InnoDB's default options: mariadb-install-db, mariadbd, create
# a table, insert a marker row (committed), kill -9 the server, start again, the rows are back
# (crash recovery: the redo log was durable), again with its error log in the volume (freopen of
# stderr onto a protected path); the volume verifies and holds no plaintext marker. Covers: O_DIRECT opens and fcntl(F_SETFL, O_DIRECT)
# on protected files (accepted and ignored, InnoDB's default innodb_flush_method=O_DIRECT),
# and kernel AIO refused (io_setup and io_uring_setup fail with ENOSYS), so InnoDB falls back
# to its simulated AIO by itself ("native AIO failed: falling back to innodb_use_native_aio=OFF")
# instead of failing with EBADF; and MAP_SHARED_VALIDATE|MAP_SYNC refused (EOPNOTSUPP), so InnoDB
# does not keep its redo log in a mapping it believes is persistent memory (the shield writes a
# shared mapping back only on msync/munmap: the committed rows were lost at the kill).
# About 30 s (install ~10 s, two server runs).
. "$(dirname "$0")/lib.sh"
command -v mariadb-install-db >/dev/null && [ -x /usr/sbin/mariadbd ] && command -v mariadb >/dev/null ||
    { echo "mariadb-server not installed: skipped"; exit 77; }
fail() {
    echo "FAIL: $*" >&2
    for f in "$T"/install.log "$T"/err.log; do
        [ -f "$f" ] && { grep -E "\[(ERROR|Warning)\]" "$f" | head -12; tail -8 "$f"; } >&2
    done
    exit 1
}
db_setup mysql "$1" "$2"
DD=/scp-my-$$-$RANDOM/data
M=SCPMARK_mariadb_$$
run() { # run SHELL-COMMANDS: under the shield as mysql, with the volume at $DD
    (cd "$T" && SCP_QUIET=1 $AS "$SCPCTL" run --volume "$VOL:$DD" --key-file "$KEY" -- sh -c "$1")
}
# mariadbd in the background, wait for its socket, SQL, shut down (inside one shielded run:
# the server's files are only readable through the shield)
SRV="/usr/sbin/mariadbd --no-defaults --datadir=$DD --socket=$T/sock --skip-networking --pid-file=$T/pid \
     --log-error=$T/err.log --tmpdir=$T --innodb-buffer-pool-size=16M --innodb-log-file-size=8M 2>>$T/srv.err"
SQL="mariadb --no-defaults -S $T/sock -uroot -N -B"
UP="i=0; while ! $SQL -e 'select 1' >/dev/null 2>&1; do i=\$((i+1)); [ \$i -lt 600 ] || exit 1;
     kill -0 \$! 2>/dev/null || exit 1; sleep 0.5; done"
DOWN="mariadb-admin --no-defaults -S $T/sock -uroot shutdown && wait \$!"
trap '[ -f "$T/pid" ] && kill "$(cat "$T/pid")" 2>/dev/null; sleep 1; rm -rf "$T"' EXIT

note "mariadb-install-db (default InnoDB options)"
run "mariadb-install-db --no-defaults --datadir=$DD --auth-root-authentication-method=normal --skip-test-db \
       --skip-name-resolve --tmpdir=$T --innodb-buffer-pool-size=16M --innodb-log-file-size=8M >$T/install.log 2>&1" ||
    fail "mariadb-install-db"

note "start, create a table, insert rows (committed), kill -9 the server"
run "$SRV & $UP &&
     $SQL -e \"create database t; create table t.m(id int primary key auto_increment, v varchar(64)) engine=innodb;
              insert into t.m(v) values ('$M'), ('row2'), ('row3')\" && kill -KILL \$! && { wait \$!; true; }" ||
    fail "first run"
grep -q "falling back to innodb_use_native_aio=OFF" "$T/err.log" || fail "InnoDB did not report falling back to simulated AIO"

note "start again (crash recovery from the redo log): the committed rows are back"
out=$(run "$SRV & $UP && $SQL -e 'select count(*) from t.m; select v from t.m where id = 1' && $DOWN") ||
    fail "second run: $out"
echo "$out"
[ "$(echo "$out" | sed -n 1p)" = 3 ] || fail "t.m lost rows"
[ "$(echo "$out" | sed -n 2p)" = "$M" ] || fail "the marker row is not back"
grep -qi "\[ERROR\]" "$T/err.log" && fail "mariadbd logged an error"

# The error log in the data directory: mariadbd reopens stderr onto it with freopen, which
# failed with EOPNOTSUPP onto a protected path until session 50 ("Can't create file").
note "the error log in the volume (--log-error=\$DATADIR/err.log: freopen of stderr): start, stop, the log is there"
run "${SRV/--log-error=$T\/err.log/--log-error=$DD/err.log} & $UP && $DOWN" || fail "a run with the error log in the volume"
log=$("$SCPCTL" volume cat --key-file "$KEY" "$VOL" err.log) || fail "the error log is not in the volume"
echo "$log" | grep -q "mariadbd: ready for connections" || fail "the error log in the volume: $log"
echo "$log" | grep -q "\[ERROR\]" && fail "mariadbd logged an error: $log"
check_no_plaintext "ready for connections"
[ -e "${DD%/data}" ] && fail "the mount point was created on the host"
"$SCPCTL" volume verify "$VOL" --key-file "$KEY" >/dev/null || fail "the volume does not verify"
check_no_plaintext "$M"
echo PASS
