#!/bin/sh
# tests/shield/postgres_import.sh SCPCTL MKVOL - an existing PostgreSQL data directory moved
# into a protected volume and back out, as an operator migrates a database: initdb and a row on
# plain disk, `scpctl volume import` into a volume, the server under the shield with the data
# directory at the mount point (a second row), `scpctl volume export`, and the plain server
# again reads both rows. PostgreSQL refuses a data directory that is not 0700 and its user's,
# so this needs import and export to keep the modes and owners, the top directory's included.
. "$(dirname "$0")/lib.sh"
pg_setup "$1" "$2"
VOL=$T/ivol # (the imported volume; pg_setup's empty one stays unused)
PLAIN="$PGBIN/pg_ctl -l $T/pg.log -o \"-c listen_addresses='' -k $T\" -w"
SQL="$PGBIN/psql -h $T -U postgres -At -d postgres"
run() { (cd "$T" && SCP_QUIET=1 $AS "$SCPCTL" run --volume "$VOL:$PGD" --key-file "$KEY" -- sh -c "$1"); }
trap '$AS sh -c "$PLAIN -D $T/plain stop -m immediate; $PLAIN -D $T/out stop -m immediate" >/dev/null 2>&1;
      run "$PLAIN -D $PGD stop -m immediate" >/dev/null 2>&1; rm -rf "$T"' EXIT
out=$($AS sh -c "$PGBIN/initdb -D $T/plain -A trust -U postgres >$T/initdb.log 2>&1 || { cat $T/initdb.log; exit 1; }
     $PLAIN -D $T/plain start >/dev/null &&
     $SQL -c \"create table t(x text); insert into t values ('SCPMARK_plain')\" && $PLAIN -D $T/plain stop >/dev/null" 2>&1) ||
    fail "initdb and the plain server: $out"
$AS "$SCPCTL" volume import "$T/plain" "$VOL" --key-file "$KEY" >/dev/null 2>&1 || fail "import of the data directory"
out=$(run "stat -c '%a %U' $PGD && $PLAIN -D $PGD start >/dev/null && $SQL -c 'select x from t' &&
     $SQL -c \"insert into t values ('SCPMARK_vol')\" >/dev/null && $PLAIN -D $PGD stop >/dev/null" 2>&1) ||
    fail "the server under the shield on the imported volume: $out"
echo "$out"
[ "$out" = "700 postgres
SCPMARK_plain" ] || fail "the imported data directory shows '$out', not '700 postgres' and the plain row"
check_no_plaintext SCPMARK_plain
check_no_plaintext SCPMARK_vol
$AS "$SCPCTL" volume export "$VOL" "$T/out" --key-file "$KEY" >/dev/null 2>&1 || fail "export of the volume"
out=$($AS sh -c "$PLAIN -D $T/out start >/dev/null && $SQL -c 'select x from t order by x' && $PLAIN -D $T/out stop >/dev/null" 2>&1) ||
    fail "the plain server on the exported data directory: $out"
[ "$out" = "SCPMARK_plain
SCPMARK_vol" ] || fail "the exported data directory holds '$out', not both rows"
echo "PostgreSQL data directory imported, run under the shield, exported: ok"
