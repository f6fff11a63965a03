# tests/cas/pgstore.sh - a PostgreSQL 15 server for a CAS test's store (sourced by lib.sh when
# CAS_TEST_STORE=pg, and by cas_store_pg.sh).
#
# pg_store_start: initdb and start Debian's postgres as user postgres, on a Unix socket only
# (no TCP port), in a directory outside $T; create database "cas"; export CAS_STORE, the
# connection string that start_cas passes as --store. pg_sql SQL: run SQL there (psql -At).
# pg_store_stop / pg_store_restart: stop (fast) and start the server again. The directory is
# removed at exit (pg_store_cleanup, called by lib.sh's cleanup).
PGBIN=/usr/lib/postgresql/15/bin
PG_DIR=
pg_store_usable() {
    [ -x $PGBIN/postgres ] && [ -x $PGBIN/initdb ] && [ -x $PGBIN/pg_ctl ] && command -v psql >/dev/null &&
        [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 && command -v setpriv >/dev/null
}
pg_as() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
pg_store_start() {
    PG_DIR=$(mktemp -d /var/tmp/scp-cas-pg.XXXXXX) || fail "mktemp"
    chmod 755 "$PG_DIR"
    chown postgres: "$PG_DIR"
    pg_as $PGBIN/initdb -D "$PG_DIR/db" -A trust -U postgres >"$PG_DIR/initdb.log" 2>&1 ||
        fail "initdb: $(tail -5 "$PG_DIR/initdb.log")"
    pg_store_up
    pg_as psql -h "$PG_DIR" -U postgres -d postgres -qc "CREATE DATABASE cas" >/dev/null || fail "CREATE DATABASE"
    export CAS_STORE="host=$PG_DIR user=postgres dbname=cas"
}
pg_store_up() {
    pg_as $PGBIN/pg_ctl -D "$PG_DIR/db" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-c listen_addresses= -c unix_socket_directories=$PG_DIR -c fsync=off" start >/dev/null ||
        fail "postgres did not start: $(tail -5 "$PG_DIR/server.log")"
}
pg_store_stop() { pg_as $PGBIN/pg_ctl -D "$PG_DIR/db" -m fast -w stop >/dev/null || fail "pg_ctl stop"; }
pg_store_restart() { pg_store_stop; pg_store_up; }
pg_sql() { PGOPTIONS="-c client_min_messages=warning" pg_as psql -h "$PG_DIR" -U postgres -d cas -v ON_ERROR_STOP=1 -At -c "$1"; }
pg_store_cleanup() {
    [ -n "$PG_DIR" ] || return 0
    pg_as $PGBIN/pg_ctl -D "$PG_DIR/db" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$PG_DIR"
    PG_DIR=
}
