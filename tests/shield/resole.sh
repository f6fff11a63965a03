#!/bin/bash
# Back to the sole holding (docs/shield.md, "Back to the sole holding"): redis-server (AOF on,
# everysec) under scpctl run is its volume's sole holder; one `scpctl volume ls` of the volume
# makes it shared (each write a lazy commit: a record appended to manifest.log per event-loop
# write), and so does a fork (BGREWRITEAOF). Once the other program closed the volume or the
# child exited, the shield's next try (at most 100 ms later) makes redis the sole holder again:
# its writes no longer grow manifest.log (the sole holder commits at its once-a-second fsync
# and keeps the record in memory). While another program holds the volume open (a second
# `scpctl run` that waits in the mount until told to leave) redis stays shared. Every SET is
# back after a restart, and `scpctl volume verify` is clean.
# usage: resole.sh SCPCTL MKVOL
. "$(dirname "$0")/lib.sh"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    { echo "redis not installed: skipped"; exit 77; }
setup "$@"
export SCP_QUIET=1
PORT=$(free_port)
cli() { redis-cli -p "$PORT" "$@"; }
RPID=
HPID=
fail() {
    echo "FAIL: $*" >&2
    [ -f "$T/redis.log" ] && tail -20 "$T/redis.log" >&2
    [ -f "$T/trace" ] && grep "volume at" "$T/trace" | tail -20 >&2
    exit 1
}
trap 'cli shutdown nosave >/dev/null 2>&1; [ -n "$HPID" ] && kill $HPID 2>/dev/null; wait; rm -rf "$T"' EXIT

start() { # [trace]
    local tr=
    [ -n "${1:-}" ] && tr=--trace=$T/trace
    "$SCPCTL" run $tr --volume "$VOL:$MNT" --key-file "$KEY" -- redis-server --port "$PORT" \
        --bind 127.0.0.1 --dir "$MNT" --appendonly yes --appendfsync everysec --save '' \
        --logfile "$T/redis.log" &
    RPID=$!
    for _ in $(seq 1 100); do
        [ "$(cli ping 2>/dev/null)" = PONG ] && return 0
        kill -0 $RPID 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
N=0
# sets K: K more SETs (keys N+1..N+K), one client, one per event-loop turn; g: manifest.log's
# growth over them
g=0
sets() {
    local b a
    b=$(stat -c %s "$VOL/manifest.log")
    seq $((N + 1)) $((N + $1)) | awk '{print "SET key:" $1 " value_" $1}' | cli >/dev/null
    N=$((N + $1))
    a=$(stat -c %s "$VOL/manifest.log")
    g=$((a - b))
}
wait_persist() { # FIELD
    for _ in $(seq 1 100); do
        cli info persistence | grep -q "^$1:0" && return 0
        sleep 0.1
    done
    fail "$1 never finished"
}

start || fail "redis-server did not start"
sets 50 # (the AOF file created, its first fsync)
sleep 1.2
sets 200
note "sole holder: manifest.log grew $g bytes over 200 SETs"
[ "$g" -lt 2000 ] || fail "redis is not the sole holder at start ($g bytes over 200 SETs): the test would prove nothing"

"$SCPCTL" volume ls --key-file "$KEY" "$VOL" >/dev/null || fail "volume ls"
sets 200
note "after one volume ls: manifest.log grew $g bytes over 200 SETs (the ls's own tries included)"
sleep 0.3
sets 200
note "after one volume ls and 0.3 s: manifest.log grew $g bytes over 200 SETs"
[ "$g" -lt 2000 ] || fail "redis did not come back to the sole holding after the ls ($g bytes over 200 SETs)"

note "another program holds the volume open: redis stays shared"
mkdir -p "$T/h"
"$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- \
    sh -c "cat $MNT/appendonlydir/*.manifest >/dev/null && touch $T/opened
           for i in \$(seq 600); do [ -e $T/release ] && break; sleep 0.1; done" &
HPID=$!
# (its open returned only once redis had let go of the sole holding: shared from then on; a
# fixed sleep was too short for `scpctl run`'s start on a loaded machine)
for _ in $(seq 1 100); do [ -e "$T/opened" ] && break; sleep 0.1; done
[ -e "$T/opened" ] || fail "the second program did not open the volume within 10 s"
sets 200
note "beside a second program: manifest.log grew $g bytes over 200 SETs"
[ "$g" -ge 4000 ] || fail "redis did not stay shared beside another program ($g bytes over 200 SETs)"
# (the holder leaves when told, not after a fixed time: 200 SETs under load outlasted `sleep 3`)
touch "$T/release"
wait $HPID
HPID=
sleep 0.3
sets 200
note "after the second program exited: manifest.log grew $g bytes over 200 SETs"
[ "$g" -lt 2000 ] || fail "redis did not come back to the sole holding after the second program ($g bytes)"

note BGREWRITEAOF
cli bgrewriteaof >/dev/null
wait_persist aof_rewrite_in_progress
sleep 0.3
sets 200
note "after the rewrite's child exited: manifest.log grew $g bytes over 200 SETs"
[ "$g" -lt 2000 ] || fail "redis did not come back to the sole holding after its fork ($g bytes over 200 SETs)"
cli shutdown >/dev/null 2>&1
wait $RPID

note "restart: every SET back"
start || fail "redis-server did not restart"
[ "$(cli dbsize)" = "$N" ] || fail "dbsize $(cli dbsize), not $N"
for k in 1 50 250 450 650 850 1050 $N; do
    [ "$(cli get key:$k)" = "value_$k" ] || fail "key:$k is $(cli get key:$k)"
done
cli shutdown >/dev/null 2>&1
wait $RPID
RPID=
"$SCPCTL" volume verify --key-file "$KEY" "$VOL" >/dev/null || fail "volume verify"
echo "ok: redis back to the sole holding after a volume ls, a second program and a fork; $N keys kept"
