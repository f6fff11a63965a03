#!/bin/bash
# UNIX sockets and protected volumes (docs/shield.md, "UNIX sockets"): a socket cannot live in
# the encrypted volume, so a bind at a path under a mount fails as on a read-only file system
# (EROFS; ENOENT when the directory does not exist, EADDRINUSE when the name does), with a line
# on standard error that says why, instead of whatever the empty mount point below gives.
#  - redis-server with `unixsocket` in a directory of the volume: refuses to start, its log
#    says "Read-only file system", the shield's line names the path;
#  - redis-server with its data in the volume and its socket outside: redis-cli -s serves,
#    SAVE stores the RDB in the volume (read back with scpctl volume cat, no plaintext);
#  - python3: the errno of each case, and abstract sockets and paths elsewhere still bind.
. "$(dirname "$0")/lib.sh"
setup "$@"
export SCP_QUIET=1

note "python3: bind under the mount"
run mkdir "$MNT/run" || fail "mkdir in the volume"
run sh -c "echo x > '$MNT/run/taken'" || fail "a file in the volume"
out=$(run python3 - "$MNT" "$T" 2> "$T/py.err" <<'PY'
import errno, os, socket, sys
mnt, tmp = sys.argv[1], sys.argv[2]
for p in (mnt + "/run/s.sock", mnt + "/s.sock", mnt + "/nosuch/s.sock", mnt + "/run/taken",
          "\0scp-unixsock-%d" % os.getpid(), tmp + "/outside.sock"):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(p)
        print("bound")
    except OSError as e:
        print(errno.errorcode[e.errno])
PY
) || fail "python3 exited $?"
got=$(echo $out)
echo "  $got"
[ "$got" = "EROFS EROFS ENOENT EADDRINUSE bound bound" ] ||
    fail "bind errors: '$got', want 'EROFS EROFS ENOENT EADDRINUSE bound bound'"
grep -q "scp-shield: bind $MNT/run/s.sock: a UNIX socket cannot live in a protected volume" "$T/py.err" ||
    fail "no line on standard error naming the path: $(cat "$T/py.err")"

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "SKIP redis: not installed"; echo PASS; exit 0
fi
conf() { # SOCKET: a configuration with the data in the volume and no TCP port
    cat > "$T/redis.conf" <<CONF
port 0
unixsocket $1
daemonize no
dir $MNT
appendonly no
dbfilename dump.rdb
save ""
logfile $T/redis.log
CONF
}

note "redis-server with its socket in the volume: refuses to start, says why"
conf "$MNT/run/redis.sock"
timeout 30 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- redis-server "$T/redis.conf" 2> "$T/redis.err"
rc=$?
echo "  exit $rc; log: $(grep -i 'unix socket' "$T/redis.log" | tail -1)"
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "redis-server with a socket in the volume: exit $rc"
grep -q "Read-only file system" "$T/redis.log" || fail "redis's log does not say 'Read-only file system': $(tail -3 "$T/redis.log")"
grep -q "scp-shield: bind $MNT/run/redis.sock" "$T/redis.err" || fail "no shield line for redis: $(cat "$T/redis.err")"

note "redis-server with its data in the volume and its socket outside: redis-cli -s"
conf "$T/redis.sock"
"$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- redis-server "$T/redis.conf" &
RPID=$!
trap 'redis-cli -s "$T/redis.sock" shutdown nosave >/dev/null 2>&1; rm -rf "$T"' EXIT
for _ in $(seq 1 100); do
    [ "$(redis-cli -s "$T/redis.sock" ping 2>/dev/null)" = PONG ] && break
    kill -0 $RPID 2>/dev/null || fail "redis-server did not start: $(tail -3 "$T/redis.log")"
    sleep 0.1
done
[ "$(redis-cli -s "$T/redis.sock" set k SCPMARK_unix)" = OK ] || fail "SET over the socket"
[ "$(redis-cli -s "$T/redis.sock" save)" = OK ] || fail "SAVE"
redis-cli -s "$T/redis.sock" shutdown >/dev/null 2>&1
wait $RPID
"$SCPCTL" volume cat --key-file "$KEY" "$VOL" dump.rdb | grep -a -q SCPMARK_unix || fail "dump.rdb in the volume lacks the value"
check_no_plaintext SCPMARK_unix
echo "  SET, SAVE over $T/redis.sock; dump.rdb read back from the volume"
echo PASS
