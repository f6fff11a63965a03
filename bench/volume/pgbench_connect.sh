#!/usr/bin/env bash
# bench/volume/pgbench_connect.sh - PostgreSQL 15 with a connection per transaction (pgbench -C:
# the postmaster forks a backend for each), the data directory on a protected volume under
# `scpctl run` against the same server on a plain directory; same run, ratios printed. Every
# backend takes the catalog, table and WAL files it touches for the first time, which is what
# this measures beside bench/volume/pgbench.sh's long-lived connections (bench/RESULTS.md,
# sessions 29 and 30).
#
#   bench/volume/pgbench_connect.sh [BUILD_DIR]
#
# Per server: initdb, `pgbench -i -s SCALE`, then `pgbench -C` tpcb-like (CLIENTS clients, 2
# threads) and select-only (-S, one client), SECS seconds each. With VSTATS=1 the scp server is
# started once more with the volume library's counters (SCP_VOLUME_STATS) for TXNS select-only
# connections and prints them per connection (the run minus a start and stop alone).
# Environment: SECS=12, SCALE=2, CLIENTS=4, TXNS=200, BASE=/var/tmp. Needs root (to become
# postgres) and PostgreSQL 15 (Debian).
set -uo pipefail
B=$(cd "${1:-build}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
PGBIN=/usr/lib/postgresql/15/bin
SECS=${SECS:-12} SCALE=${SCALE:-2} CLIENTS=${CLIENTS:-4} TXNS=${TXNS:-200}
[ -x $PGBIN/initdb ] && command -v pgbench >/dev/null || { echo "PostgreSQL 15 not installed"; exit 77; }
[ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 || { echo "needs root and the user postgres"; exit 77; }
T=$(mktemp -d "${BASE:-/var/tmp}/scp-pgbench-connect.XXXXXX") || exit 1
chmod 755 "$T" && chown postgres: "$T"
AS="setpriv --reuid=postgres --regid=postgres --init-groups"
MNT=/scp-pgbench-connect-$$/pgdata
DATA=
trap 'stop; rm -rf "$T"' EXIT

start() { # RUN... : the server in the background, waited for
    (cd "$T" && SCP_QUIET=1 $AS "$@" $PGBIN/postgres -D "$DATA" -c listen_addresses= \
        -k "$T/sock" >"$T/pg.log" 2>&1) &
    for _ in $(seq 150); do $AS $PGBIN/pg_isready -q -h "$T/sock" && return 0; sleep 0.2; done
    echo "the server did not start:"; tail -5 "$T/pg.log"; exit 1
}
stop() {
    [ -n "$DATA" ] || return 0
    pkill -INT -u postgres -f "postgres -D $DATA" 2>/dev/null
    for _ in $(seq 100); do pgrep -u postgres -f "postgres -D $DATA" >/dev/null || return 0; sleep 0.1; done
}
pgb() { $AS pgbench -h "$T/sock" -U postgres "$@" postgres 2>&1; }

one() { # NAME: set up, load and measure one server (left running); "NAME tps ms" in $T/res-NAME
    local name=$1 run=()
    $AS mkdir -p "$T/sock"
    if [ "$name" = plain ]; then
        DATA=$T/plain/db
        $AS mkdir -p "$T/plain"
    else
        DATA=$MNT/db
        $AS "$B/tests/shield/shield-mkvol" "$T/key" "$T/vol" >/dev/null || exit 1
        run=("$B/src/scpctl" run --volume "$T/vol:$MNT" --key-file "$T/key" --)
    fi
    (cd "$T" && SCP_QUIET=1 $AS "${run[@]}" $PGBIN/initdb -D "$DATA" -A trust -U postgres \
        >"$T/initdb.log" 2>&1) || { tail -5 "$T/initdb.log"; exit 1; }
    start "${run[@]}"
    pgb -i -q -s "$SCALE" >"$T/init.log" || { tail -5 "$T/init.log"; exit 1; }
    local tps out stps conn
    tps=$(pgb -C -c "$CLIENTS" -j 2 -T "$SECS" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    # (pgbench 15's tps with -C counts the reconnections; its "latency average" does not)
    out=$(pgb -C -S -c 1 -j 1 -T "$SECS")
    stps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
    conn=$(sed -n 's/^average connection time = \([0-9.]*\) ms/\1/p' <<<"$out")
    echo "$name ${tps:-0} ${stps:-0} ${conn:-0}" >"$T/res-$name"
}

echo "pgbench -C, scale $SCALE, ${SECS}s runs: tpcb-like $CLIENTS clients (tps), select-only 1 client (tps, that is connections per second; average connection time ms)"
one plain
stop
one scp
P=$(cat "$T/res-plain") S=$(cat "$T/res-scp")
echo "  $P"
echo "  $S"
python3 - "$P" "$S" <<'PY'
import sys
p, s = (a.split() for a in sys.argv[1:3])
pt, pc, st, sc = float(p[1]), float(p[2]), float(s[1]), float(s[2])
print("scp/plain: tpcb-like tps %.2fx, select-only connections per second %.2fx, connection time %s against %s ms" %
      (st / pt if pt else 0, sc / pc if pc else 0, s[3], p[3]))
PY
[ "${VSTATS:-0}" = 1 ] || exit 0
# the scp server again (its data directory as the timed runs left it), with the counters
RUN=("$B/src/scpctl" run --volume "$T/vol:$MNT" --key-file "$T/key" --)
stop
chmod 777 "$T"
SCP_VOLUME_STATS=$T/vst-idle start "${RUN[@]}"; stop
SCP_VOLUME_STATS=$T/vst-run start "${RUN[@]}"; pgb -C -S -c 1 -j 1 -t "$TXNS" >/dev/null; stop
python3 "$HERE/vstats_diff.py" "$T/vst-idle" "$T/vst-run" "$TXNS" scp connection
