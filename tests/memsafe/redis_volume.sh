#!/bin/bash
# tests/memsafe/redis_volume.sh SCPCTL MKVOL [REDIS_DIR] - a memsafe redis (redis 7.0 from Debian's
# source, built by bench/memsafe/redis.sh with scp-cc --memsafe) under `scpctl run` on a
# protected volume, as a curated image would ship it: it serves, writes its RDB file through
# the shield (the volume's files on the host hold no plaintext), comes back with its data after
# a restart, and reports no memsafe violation. REDIS_DIR is the built source tree
# (default $SCP_MS_REDIS, else $WORK/redis-harden of bench/memsafe/redis.sh, WORK defaulting to
# /tmp/scp-ms-bench); without it the test is skipped (77).
set -u
SCPCTL=$1
MKVOL=$2
REDIS=${3:-${SCP_MS_REDIS:-${WORK:-/tmp/scp-ms-bench}/redis-harden}}
export SCP_QUIET=1
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "-- $*"; }
SERVER=$REDIS/src/redis-server
CLI=$REDIS/src/redis-cli
if [ ! -x "$SERVER" ] || [ ! -x "$CLI" ]; then
    echo "skipped: no memsafe redis at '$REDIS' (build it: VARIANTS='plain harden' bench/memsafe/redis.sh BUILD)"
    exit 77
fi
# The binary really is a memsafe build: its allocator and its reports are linked in.
nm "$SERVER" | grep -q ' T __scp_ms_report$' || fail "$SERVER is not built with scp-cc --memsafe"

T=$(mktemp -d "${TMPDIR:-/tmp}/scp-ms-redis.XXXXXX") || exit 1
# The server runs from a copy outside /tmp: the container's /tmp is private.
B=$(mktemp -d /var/tmp/scp-ms-redis.XXXXXX) || exit 1
trap 'kill $RPID 2>/dev/null; wait 2>/dev/null; rm -rf "$T" "$B"' EXIT
chmod 755 "$B"
cp "$SERVER" "$B/redis-server"
SERVER=$B/redis-server
RPID=
. "$(dirname "$0")/../port.sh"
PORT=$(free_port) || exit 1
MARK="memsafe-volume-marker-$RANDOM$RANDOM"
"$MKVOL" "$T/key" "$T/vol" || fail "cannot create the volume"
cli() { "$CLI" -p "$PORT" "$@"; }

start() {
    "$SCPCTL" run --net host --volume "$T/vol:/data" --key-file "$T/key" -- "$SERVER" --port "$PORT" \
        --bind 127.0.0.1 --dir /data --dbfilename dump.rdb --save '' --appendonly no \
        >>"$T/run.out" 2>&1 &
    RPID=$!
    for _ in $(seq 1 200); do
        [ "$(cli ping 2>/dev/null)" = PONG ] && return 0
        kill -0 $RPID 2>/dev/null || fail "scpctl run exited: $(cat "$T/run.out")"
        sleep 0.1
    done
    fail "redis did not answer: $(tail -5 "$T/run.out")"
}

stop() {
    cli shutdown save >/dev/null 2>&1
    wait $RPID
    rc=$?
    RPID=
    [ $rc -eq 0 ] || fail "scpctl run exited $rc after SHUTDOWN SAVE: $(tail -5 "$T/run.out")"
}

note "memsafe redis serves under scpctl run, its data on a protected volume"
start
[ "$(cli set marker "$MARK")" = OK ] || fail "SET failed"
# Some work for the checked code: lists, hashes, strings of many sizes, deletions.
for i in $(seq 1 200); do
    printf 'RPUSH l%d %s\r\nHSET h%d f%d %s\r\nSET s%d %s\r\nAPPEND s%d tail\r\n' \
        $((i % 7)) "$(head -c $((i * 3)) /dev/zero | tr '\0' x)" $((i % 5)) "$i" "$i" "$i" \
        "$(head -c $((i * 11)) /dev/zero | tr '\0' y)" "$i"
done | cli >/dev/null || fail "commands failed"
cli del s1 s2 s3 l1 >/dev/null
[ "$(cli llen l2)" -gt 0 ] || fail "list lost"
[ "$(cli strlen s100)" = $((100 * 11 + 4)) ] || fail "APPEND gave $(cli strlen s100)"
stop

note "the RDB file on the volume holds the data; the host's files do not show it"
"$SCPCTL" volume cat --key-file "$T/key" "$T/vol" dump.rdb >"$T/dump.rdb" || fail "volume cat failed"
grep -q "$MARK" "$T/dump.rdb" || fail "the marker is not in the RDB file on the volume"
if grep -rqa "$MARK" "$T/vol"; then fail "the marker is in plaintext in the volume's host files"; fi

note "after a restart the data comes back from the volume"
start
[ "$(cli get marker)" = "$MARK" ] || fail "GET marker after restart: '$(cli get marker)'"
[ "$(cli strlen s100)" = $((100 * 11 + 4)) ] || fail "s100 lost after restart"
stop

if grep -q 'memsafe:' "$T/run.out"; then fail "memsafe reported: $(grep 'memsafe:' "$T/run.out")"; fi
echo "ok: memsafe redis on a protected volume, no memsafe report"
