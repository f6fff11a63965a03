#!/bin/bash
# Signal masks under the shield (issue 10.5): a shell that blocks every signal around fork and
# unblocks them with glibc's sigsetmask (a libc-internal rt_sigprocmask, trapped by the filter)
# must leave its children and exec'd programs with the mask plain Linux leaves; and SIGTERM
# must stop a shielded redis-server started through such a shell.
. "$(dirname "$0")/lib.sh"
setup "$@"
export SCP_QUIET=1

sigblk() { grep '^SigBlk' | cut -f2; }
# Each command: a fork (cat), a pipeline, then exec into the program that reads its own mask;
# the last one also works on a protected file (DIR is the mount, or a plain directory).
mkdir "$T/plain"
for cmd in 'cat /etc/passwd >/dev/null; exec grep SigBlk /proc/self/status' \
           'echo x | cat >/dev/null; grep SigBlk /proc/self/status | cat' \
           'echo x > DIR/f; cat DIR/f >/dev/null; exec grep SigBlk /proc/self/status'; do
    want=$(sh -c "$(echo "$cmd" | sed "s|DIR|$T/plain|g")" | sigblk)
    got=$(run sh -c "$(echo "$cmd" | sed "s|DIR|$MNT|g")" | sigblk)
    [ -n "$got" ] || fail "no SigBlk line under the shield for: $cmd"
    [ "$got" = "$want" ] || fail "SigBlk under the shield $got, plain Linux $want, for: $cmd"
    note "SigBlk $got as without the shield: $cmd"
done

# signal(SIGSYS, SIG_DFL) succeeds (nothing installed): libuv's spawn resets every signal in
# the child and checks each, so ctest (and node's child_process) could not start any program
if command -v ctest >/dev/null; then
    mkdir -p "$T/ct"
    printf 'add_test(t1 "/bin/echo" "SCPCT_ran")\nadd_test(t2 "%s/ok.sh")\n' "$MNT" > "$T/ct/CTestTestfile.cmake"
    out=$(run bash -c "printf '#!/bin/sh\necho SCPCT_vol\n' > $MNT/ok.sh && chmod +x $MNT/ok.sh && cd $T/ct && ctest -V 2>&1" 2>&1)
    echo "$out" | grep -q "100% tests passed, 0 tests failed out of 2" || fail "ctest under the shield: $out"
    echo "$out" | grep -q "SCPCT_ran" && echo "$out" | grep -q "SCPCT_vol" || fail "ctest's programs did not run: $out"
    note "ctest (libuv's spawn) runs its tests, one stored in the volume"
fi

if ! command -v redis-server >/dev/null; then
    echo "redis-server not installed: its SIGTERM case skipped"
    echo PASS
    exit 0
fi
PORT=$(free_port)
cat > "$T/redis.conf" <<CONF
port $PORT
bind 127.0.0.1
protected-mode no
daemonize no
dir $MNT
save ""
logfile $T/redis.log
CONF
"$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- \
    sh -c "cat /etc/passwd >/dev/null; exec redis-server $T/redis.conf" &
RPID=$!
trap 'kill -9 $RPID 2>/dev/null; rm -rf "$T"' EXIT
for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$PORT" ping 2>/dev/null)" = PONG ] && break
    kill -0 $RPID 2>/dev/null || fail "redis-server did not start"
    sleep 0.1
done
[ "$(redis-cli -p "$PORT" ping 2>/dev/null)" = PONG ] || fail "redis-server does not answer"
note "redis-server SigBlk $(sigblk < /proc/$RPID/status)"
kill -TERM $RPID
# a hang guard, not a timing assertion: redis exits at once on SIGTERM
for _ in $(seq 1 100); do kill -0 $RPID 2>/dev/null || break; sleep 0.1; done
if kill -0 $RPID 2>/dev/null; then
    fail "SIGTERM did not stop the shielded redis-server (SigBlk $(sigblk < /proc/$RPID/status))"
fi
wait $RPID
st=$?
[ $st = 0 ] || fail "redis-server exited with $st after SIGTERM"
grep -q "Received SIGTERM" "$T/redis.log" || fail "redis-server's log does not show SIGTERM"
note "SIGTERM stopped redis-server (exit 0)"
echo PASS
