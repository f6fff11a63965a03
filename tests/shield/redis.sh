#!/bin/bash
# redis-server (Debian's) on a protected volume: AOF (appendfsync everysec) with BGREWRITEAOF,
# RDB with BGSAVE (both fork; the rewrite renames), keys written with redis-cli are all back
# after a restart from the AOF and from the RDB alone; no plaintext in the backing dir; a
# tampered chunk makes the restart fail instead of serving wrong data.
. "$(dirname "$0")/lib.sh"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    { echo "redis not installed: skipped"; exit 77; }
setup "$@"
fail() { echo "FAIL: $*" >&2; [ -f "$T/redis.log" ] && tail -20 "$T/redis.log" >&2; exit 1; }

PORT=$(free_port)
cli() { redis-cli -p "$PORT" "$@"; }

start() { # start AOF_ON
    cat > "$T/redis.conf" <<CONF
port $PORT
bind 127.0.0.1
protected-mode no
daemonize no
dir $MNT
appendonly $1
appendfsync everysec
dbfilename dump.rdb
save ""
logfile $T/redis.log
CONF
    "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- redis-server "$T/redis.conf" &
    RPID=$!
    for _ in $(seq 1 100); do
        [ "$(cli ping 2>/dev/null)" = PONG ] && return 0
        kill -0 $RPID 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
stop() {
    cli shutdown >/dev/null 2>&1
    wait $RPID
}
wait_persist() { # FIELD
    for _ in $(seq 1 100); do
        cli info persistence | grep -q "^$1:0" && return 0
        sleep 0.1
    done
    fail "$1 never finished"
}
trap 'cli shutdown nosave >/dev/null 2>&1; rm -rf "$T"' EXIT

note "start with AOF, write 2000 keys"
start yes || { cat "$T/redis.log" >&2; fail "redis-server did not start"; }
for i in $(seq 1 1000); do echo "SET key:$i SCPMARK_redis_value_$i"; done | cli > /dev/null
note BGREWRITEAOF
cli bgrewriteaof > /dev/null
wait_persist aof_rewrite_in_progress
cli info persistence | grep -q "^aof_last_bgrewrite_status:ok" || fail "AOF rewrite failed"
for i in $(seq 1001 2000); do echo "SET key:$i SCPMARK_redis_value_$i"; done | cli > /dev/null
note BGSAVE
cli bgsave > /dev/null
wait_persist rdb_bgsave_in_progress
cli info persistence | grep -q "^rdb_last_bgsave_status:ok" || fail "BGSAVE failed"
cli set after-rdb yes > /dev/null
sleep 1.2 # everysec
stop

note "restart from the AOF"
start yes || { cat "$T/redis.log" >&2; fail "restart from AOF"; }
[ "$(cli dbsize)" = 2001 ] || fail "AOF restart: dbsize $(cli dbsize), want 2001"
[ "$(cli get key:1500)" = SCPMARK_redis_value_1500 ] || fail "AOF restart: wrong value"
stop

note "restart from the RDB alone"
start no || { cat "$T/redis.log" >&2; fail "restart from RDB"; }
[ "$(cli dbsize)" = 2000 ] || fail "RDB restart: dbsize $(cli dbsize), want 2000"
[ "$(cli get key:2000)" = SCPMARK_redis_value_2000 ] || fail "RDB restart: wrong value"
stop

check_no_plaintext SCPMARK_redis
check_no_plaintext key:1500

note tamper
run rm -r "$MNT/appendonlydir" || fail "rm appendonlydir"
tamper_largest
if start no; then
    [ "$(cli dbsize)" = 2000 ] && fail "redis loaded a tampered RDB"
    stop
fi
grep -Eqi "short read|error|corrupt|bad file format" "$T/redis.log" || fail "no load error in the redis log"
echo PASS
