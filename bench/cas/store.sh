#!/bin/bash
# bench/cas/store.sh - CAS on PostgreSQL against CAS on SQLite, same run: Debian's PostgreSQL 15
# started here (user postgres, a Unix socket, its data directory on the disk under /var/tmp,
# its defaults: every commit flushed), and for each store, ROUNDS times alternating:
#  - casbench_inproc 2000: the attestation's handlers in-process (no TLS, no client), so the
#    time per attestation is CAS's own work plus the store's (for PostgreSQL, its round trips
#    over the socket and the server's work);
#  - bench/cas/run.sh: attestations/s and p50/p99 at 1, 16 and 64 clients over TLS.
# Prints each run and the medians with PostgreSQL/SQLite ratios. Needs root (postgres runs as
# its user). SQLite's store is synchronous=NORMAL in WAL mode (a commit survives a crash of
# CAS, not a power cut); PostgreSQL's default (pg) survives both, and costs a flush per
# commit; pgasync is the same server with synchronous_commit=off in the connection string
# (options=...: the operator's choice; a commit survives a crash of CAS, not one of
# PostgreSQL's server or a power cut).
#
#   bench/cas/store.sh [BUILD_DIR] [SECONDS_PER_POINT] [ROUNDS]     (defaults: build, 5, 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build}
SECS=${2:-5}
ROUNDS=${3:-3}
PGBIN=/usr/lib/postgresql/15/bin
[ "$(id -u)" = 0 ] && [ -x $PGBIN/postgres ] && id postgres >/dev/null 2>&1 || { echo "needs root and PostgreSQL 15" >&2; exit 1; }
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
P=$(mktemp -d /var/tmp/scp-casbench-pg.XXXXXX)
chown postgres: "$P"
chmod 755 "$P"
cleanup() { as_pg $PGBIN/pg_ctl -D "$P/db" -m immediate -w stop >/dev/null 2>&1 || true; rm -rf "$P"; }
trap cleanup EXIT
as_pg $PGBIN/initdb -D "$P/db" -A trust -U postgres >/dev/null
as_pg $PGBIN/pg_ctl -D "$P/db" -l "$P/log" -w -o "-c listen_addresses= -c unix_socket_directories=$P" start >/dev/null
CONN="host=$P user=postgres dbname=cas"
CONN_ASYNC="$CONN options='-c synchronous_commit=off'"
fresh_db() {
    PGOPTIONS="-c client_min_messages=warning" as_pg psql -h "$P" -U postgres -d postgres -qc "DROP DATABASE IF EXISTS cas" \
        -c "CREATE DATABASE cas" >/dev/null
}
OUT=$P/out
: >"$OUT"
for r in $(seq "$ROUNDS"); do
    for st in sqlite pg pgasync; do
        conn=
        [ $st = pg ] && conn=$CONN
        [ $st = pgasync ] && conn=$CONN_ASYNC
        [ -n "$conn" ] && fresh_db
        u=$(CASBENCH_STORE=$conn "$B/bench/cas/casbench_inproc" 2000 | sed -n 's/.*attest \([0-9.]*\) us.*/\1/p')
        [ -n "$conn" ] && fresh_db
        tls=$(CAS_STORE=$conn NO_RESULTS=1 bash bench/cas/run.sh "$B" "$SECS" | grep -P '^\d+\t')
        echo "round $r $st: in-process attest $u us"
        echo "$tls" | sed "s/^/  /"
        echo "$st inproc $u" >>"$OUT"
        echo "$tls" | awk -v st=$st '{print st, "c" $1, $3, $4, $5}' >>"$OUT"
    done
done
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "medians of $ROUNDS rounds (ratios to SQLite's):"
m() { awk -v st=$1 -v w=$2 -v c=$3 '$1==st && $2==w {print $c}' "$OUT" | med; }
for what in inproc c1 c16 c64; do
    for col in 3 4 5; do
        [ $what = inproc ] && [ $col != 3 ] && continue
        a=$(m sqlite $what $col) b=$(m pg $what $col) c=$(m pgasync $what $col)
        case $what/$col in inproc/*) n="in-process attest, us";; */3) n="${what#c} clients, per second";;
            */4) n="${what#c} clients, p50 ms";; */5) n="${what#c} clients, p99 ms";; esac
        printf '  %-26s sqlite %8s   pg %8s (%.2fx)   pgasync %8s (%.2fx)\n' "$n:" "$a" "$b" \
            "$(echo "$b / $a" | bc -l)" "$c" "$(echo "$c / $a" | bc -l)"
    done
done
