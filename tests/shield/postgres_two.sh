#!/bin/sh
# tests/shield/postgres_two.sh SCPCTL MKVOL - two PostgreSQL servers at once, each under its own
# `scpctl run` with its data directory at the mount point of its own volume, as two services
# on one host. PostgreSQL keys its System V shared memory by the data directory's inode and
# takes a segment whose header names the directory's (st_dev, st_ino) as its own: when every
# program's first volume showed the same st_dev, the second server refused to start while the
# first ran ("pre-existing shared memory block ... is still in use"). Also: stat(2) and
# statx(2) give one device for a name (statx's was another), and the two volumes two.
. "$(dirname "$0")/lib.sh"
pg_setup "$1" "$2"
VOL2=$T/vol2
$AS "$MKVOL" "$T/key2" "$VOL2" || fail "cannot create the second volume"
$AS mkdir "$T/a" "$T/b"
run() { # VOLUME COMMAND (the volume's key: key or key2)
    k=$KEY; [ "$1" = "$VOL2" ] && k=$T/key2
    (cd "$T" && SCP_QUIET=1 $AS "$SCPCTL" run --volume "$1:$PGD" --key-file "$k" -- sh -c "$2")
}
pg() { echo "$PGBIN/pg_ctl -D $PGD -l $T/pg.log -o \"-c listen_addresses='' -k $T/$1\" -w"; }
sql() { echo "$PGBIN/psql -h $T/$1 -U postgres -At -d postgres"; }
trap 'run "$VOL" "$(pg a) stop -m immediate" >/dev/null 2>&1; run "$VOL2" "$(pg b) stop -m immediate" >/dev/null 2>&1
      rm -rf "$T"' EXIT
DEVS='python3 -c "import os; print(os.stat(\"'$PGD'\").st_dev)"; stat -c "%d" '$PGD
for v in a b; do
    vol=$VOL; [ $v = b ] && vol=$VOL2
    out=$(run "$vol" "$PGBIN/initdb -D $PGD -A trust -U postgres >$T/initdb.log 2>&1 || { cat $T/initdb.log; exit 1; }
         $DEVS" 2>&1) || fail "initdb on volume $v: $out"
    set -- $out
    [ $# = 2 ] && [ "$1" = "$2" ] || fail "stat and statx disagree on the device of volume $v: $out"
    eval dev_$v=$1
done
[ "$dev_a" != "$dev_b" ] || fail "both volumes show device $dev_a"
# server a runs until b has started, written and read its row, and stopped
run "$VOL" "$(pg a) start >/dev/null || exit 1; touch $T/a.up
     while [ ! -f $T/b.done ]; do sleep 0.1; done
     $(sql a) -c \"create table t(x text); insert into t values ('SCPMARK_a')\" >/dev/null &&
     $(sql a) -c 'select x from t' > $T/a.out; $(pg a) stop >/dev/null" > $T/a.log 2>&1 &
apid=$!
i=0
while [ ! -f "$T/a.up" ]; do
    kill -0 $apid 2>/dev/null || fail "server a did not start: $(cat "$T/a.log")"
    i=$((i + 1)); [ $i -lt 600 ] || fail "server a did not start in 60 s"
    sleep 0.1
done
out=$(run "$VOL2" "$(pg b) start >/dev/null && $(sql b) -c \"create table t(x text); insert into t values ('SCPMARK_b')\" >/dev/null &&
     $(sql b) -c 'select x from t' && $(pg b) stop >/dev/null" 2>&1)
rc=$?
$AS touch "$T/b.done"
wait $apid || fail "server a: $(cat "$T/a.log")"
[ $rc = 0 ] || fail "server b while server a runs: $out"
[ "$out" = SCPMARK_b ] || fail "server b read '$out'"
[ "$(cat "$T/a.out")" = SCPMARK_a ] || fail "server a read '$(cat "$T/a.out")'"
check_no_plaintext SCPMARK_a
VOL=$VOL2 check_no_plaintext SCPMARK_b
echo "two PostgreSQL servers on two volumes at once (devices $dev_a and $dev_b): ok"
