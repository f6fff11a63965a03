#!/bin/bash
# CAS on PostgreSQL (cas serve --store; src/cas/store_pg.c), what only that store has (the suite's
# cas_pg_* tests run the CAS tests themselves on it):
#  - a connection string with a password is refused (it would be in the process list), and so
#    are a value that is no connection string and a database that cannot be reached, each
#    with its own message and at once;
#  - PostgreSQL stopped under a running CAS: requests fail with the database's error, CAS
#    stays up, and once PostgreSQL is back it serves again without a restart, with everything;
#  - a second CAS (another data directory, so another master key) on the same database is
#    refused (a database that lost a CAS's rows is refused by the audit: cas_pg_audit);
#  - a first start while PostgreSQL is down fails and takes back the keys it made (the next
#    start is a first start, not a refusal);
#  - a policy changed in the database is an integrity error, not a policy;
#  - nothing secret in the database's files (tables and WAL).
source "$(dirname "$0")/lib.sh" "$@"
pg_store_usable || { echo "SKIP: needs PostgreSQL 15, root and a user postgres"; exit 0; }
[ -n "${CAS_STORE:-}" ] || pg_store_start
PW=PGSTORE-SECRET-$RANDOM$RANDOM

serve() { timeout 60 "$SCPCTL" cas serve --data "$T/d2" --listen 127.0.0.1:0 "$@"; }
# ---- bad --store values: refused before anything starts
expect_err 2 "--store takes a PostgreSQL connection string" serve --store "$T/cas.db"
expect_err 1 "holds a password" serve --store "postgresql://postgres:$PW@localhost/cas"
expect_err 1 "holds a password" serve --store "host=/tmp dbname=cas password=$PW"
grep -q -- "$PW" "$T/last.out" "$T/last.err" && fail "the refusal repeats the password"
expect_err 1 "bad PostgreSQL connection string" serve --store "host=/tmp dbname"
expect_err 1 "database error (connect)" serve --store "host=$T/nowhere dbname=cas user=postgres"

# ---- the first start while PostgreSQL is not up yet (a swarm starts both at once): it fails
# with the database's error and takes back the keys it made, so the next start is a first
# start again (the master key left behind made it refuse: "the audit log is empty but this CAS
# has written rows before")
pg_store_stop
expect_err 1 "database error (connect)" timeout 60 "$SCPCTL" cas serve --data "$T/data" --store "$CAS_STORE" --listen 127.0.0.1:0
grep -q "the first start failed: the keys it made in '$T/data' are removed again" "$T/last.err" || fail "no word of the undo: $(cat "$T/last.err")"
[ -e "$T/data/master.key" ] || [ -e "$T/data/ca.crt" ] && fail "the failed first start left keys: $(ls "$T/data")"
pg_store_up

# ---- a CAS on the database, with a session that has a secret
A=$T/a.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
export SCP_IDENTITY=$A
start_cas --admin "$A"
cat >"$T/s.yaml" <<YAML
name: pgs
services:
  - name: web
    measurements: ["$(printf '%064d' 7)"]
    command: [/bin/web, "--pw=\$\$SCP::pw\$\$"]
secrets:
  - {name: pw, kind: explicit, value: "$PW"}
YAML
expect_rc 0 "$SCPCTL" session create "$T/s.yaml"
expect_rc 0 "$SCPCTL" session show pgs

# ---- PostgreSQL goes away and comes back under a running CAS
pg_store_stop
expect_err 1 "database error" "$SCPCTL" session show pgs
alive
pg_store_up
expect_rc 0 "$SCPCTL" session show pgs
grep -q '"name": "pgs"' "$T/last.out" || fail "the session is not back after PostgreSQL's restart"
# a restart between two requests: the first request after it is served (one retry)
pg_store_restart
expect_rc 0 "$SCPCTL" session show pgs
expect_err 0 "audit chain verified" "$SCPCTL" cas audit --verify

# ---- another CAS on the same database: refused; this one's restart is not
expect_err 4 "belongs to another CAS" serve --store "$CAS_STORE"
stop_cas
start_cas --admin "$A"
expect_rc 0 "$SCPCTL" session show pgs

# ---- a policy changed in the database: an integrity error
stop_cas
db_sql "UPDATE sessions SET policy = overlay(policy placing '\\x00'::bytea from 30 for 1) WHERE name = 'pgs'" >/dev/null
start_cas --admin "$A"
expect_err 1 "500" "$SCPCTL" session show pgs --policy
alive

# ---- nothing secret in the database's files
db_grep "pgs" >/dev/null || fail "the database's files were not searched (the session's name is not in them)"
F=$(db_grep "$PW") && fail "the secret is in plaintext in $F"
grep -q -- "$PW" "$T/cas.out" "$T/cas.err" && fail "the secret is in the daemon's output"
echo "cas_store_pg: ok"
