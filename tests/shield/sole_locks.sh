#!/bin/bash
# Process-associated locks of the sole holder (docs/shield.md, "Record locks"): while a program
# holds its volume alone, its fcntl locks (F_SETLK, lockf) are kept in the process, not in the
# kernel (sqlite's WAL transaction takes six on its -shm file); when another program opens the
# volume, the holder's watcher hands them to the kernel before it lets the newcomer in. So the
# newcomer finds them as it would have: lockf(LOCK_NB) refused on the holder's write lock,
# F_GETLK reports the holder's range, a read lock beside the holder's read lock is
# taken, a write lock on it refused; a range the holder released while alone is free, and so
# is every range of a file whose descriptor the holder closed (POSIX). The holder's own kernel
# fcntl calls while alone are counted (strace): none for its lock calls, against one each
# before. A program alone on the volume that takes an OFD lock on its own fcntl-locked range
# is refused, as by the kernel (its kept locks go to the kernel first).
# usage: sole_locks.sh SCPCTL MKVOL
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "python3 not installed: skipped"; exit 77; }
command -v strace >/dev/null || { echo "strace not installed: skipped"; exit 77; }
setup "$1" "$2"
PY=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
cat > "$T/lk.py" <<'PY'
import fcntl, os, struct, sys, time
FL = "hhqqi4x"  # struct flock on x86_64/aarch64
role, mnt, t = sys.argv[1], sys.argv[2], sys.argv[3]
def wait_for(name):
    end = time.time() + 60
    while not os.path.exists(os.path.join(t, name)):
        if time.time() > end: sys.exit("timed out waiting for " + name)
        time.sleep(0.005)
def setlk(fd, typ, start, length, cmd=fcntl.F_SETLK):
    fcntl.fcntl(fd, cmd, struct.pack(FL, typ, os.SEEK_SET, start, length, 0))
def getlk(fd, typ, start, length):
    return struct.unpack(FL, fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(FL, typ, os.SEEK_SET, start, length, 0)))
def refused(fn):
    try:
        fn()
    except OSError as e:
        if e.errno in (11, 13): return True  # EAGAIN, EACCES
        raise
    return False
def check(cond, what):
    if not cond:
        print("FAIL:", what, flush=True); sys.exit(1)
    print("ok:", what, flush=True)
if role == "holder":
    fd = os.open(os.path.join(mnt, "db"), os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"x" * 4096); os.fsync(fd)
    g = os.open(os.path.join(mnt, "other"), os.O_RDWR | os.O_CREAT, 0o644)
    os.write(g, b"y" * 100); os.fsync(g)
    g2 = os.open(os.path.join(mnt, "other"), os.O_RDONLY)
    open(os.path.join(t, "mark1"), "w").close()   # (strace counts from here: the lock calls)
    for i in range(200):                          # what sqlite does per transaction, 200 times
        setlk(fd, fcntl.F_WRLCK, 120, 1); setlk(fd, fcntl.F_UNLCK, 120, 1)
        setlk(fd, fcntl.F_RDLCK, 124, 1, fcntl.F_SETLKW); setlk(fd, fcntl.F_UNLCK, 124, 1)
    setlk(fd, fcntl.F_WRLCK, 0, 100)              # held when the newcomer comes
    setlk(fd, fcntl.F_RDLCK, 200, 100)
    setlk(fd, fcntl.F_WRLCK, 400, 100); setlk(fd, fcntl.F_UNLCK, 420, 10)  # split: [400,420) [430,500)
    setlk(fd, fcntl.F_WRLCK, 1000, 10); setlk(fd, fcntl.F_UNLCK, 1000, 10) # released
    check(getlk(fd, fcntl.F_WRLCK, 0, 0)[0] == fcntl.F_UNLCK, "the holder's F_GETLK: its own locks do not conflict")
    setlk(g, fcntl.F_WRLCK, 0, 10)
    os.close(g2)                                  # POSIX: releases the lock on "other"
    open(os.path.join(t, "mark2"), "w").close()
    open(os.path.join(t, "ready"), "w").close()
    wait_for("n_done")                            # idle: the watcher lets the newcomer in
    os.close(g); os.close(fd)
elif role == "ofd":
    # alone on the volume: an OFD lock on its own fcntl-locked range is refused, as the
    # kernel's (OFD and process-associated locks of one process conflict), not granted
    F_OFD_SETLK = 37
    fd = os.open(os.path.join(mnt, "o"), os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"z" * 100); os.fsync(fd)
    setlk(fd, fcntl.F_WRLCK, 0, 50)
    o = os.open(os.path.join(mnt, "o"), os.O_RDWR)
    try:
        fcntl.fcntl(o, F_OFD_SETLK, struct.pack(FL, fcntl.F_WRLCK, os.SEEK_SET, 10, 5, 0))
        got = "granted"
    except OSError as e:
        got = e.errno
    check(got in (11, 13, 37), "an OFD lock on the process's own fcntl-locked range is refused (got %r)" % (got,))
    os.close(o); os.close(fd)
else:
    fd = os.open(os.path.join(mnt, "db"), os.O_RDWR)
    check(refused(lambda: fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 5)), "lockf(LOCK_NB) refused on the holder's write lock")
    r = getlk(fd, fcntl.F_RDLCK, 50, 1)
    check(r[0] == fcntl.F_WRLCK and r[2] == 0 and r[3] == 100 and r[4] not in (0, os.getpid()),
          "F_GETLK reports the holder's write lock [0,100) and its pid (got %r)" % (r,))
    setlk(fd, fcntl.F_RDLCK, 250, 10); setlk(fd, fcntl.F_UNLCK, 250, 10)
    check(True, "a read lock beside the holder's read lock")
    check(refused(lambda: setlk(fd, fcntl.F_WRLCK, 250, 10)), "a write lock on the holder's read lock refused")
    check(refused(lambda: setlk(fd, fcntl.F_WRLCK, 410, 5)) and refused(lambda: setlk(fd, fcntl.F_WRLCK, 440, 5)),
          "the holder's split range [400,420) [430,500) held")
    setlk(fd, fcntl.F_WRLCK, 420, 10); setlk(fd, fcntl.F_WRLCK, 1000, 10)
    check(True, "the ranges the holder released while alone are free")
    g = os.open(os.path.join(mnt, "other"), os.O_RDWR)
    setlk(g, fcntl.F_WRLCK, 0, 10)
    check(True, "the lock of a file whose descriptor the holder closed is free")
    os.close(g); os.close(fd)
PY
(SCP_QUIET=1 exec timeout 90 strace -f -o "$T/p.strace" -e trace=fcntl,openat "$SCPCTL" run --trace="$T/p.trace" \
    --volume "$VOL:$MNT" --key-file "$KEY" -- "$PY" "$T/lk.py" holder "$MNT" "$T") > "$T/p.out" 2> "$T/p.err" &
p=$!
end=$((SECONDS + 60))
while [ ! -e "$T/ready" ]; do
    [ $SECONDS -lt $end ] && kill -0 $p 2>/dev/null || { cat "$T/p.err" "$T/p.out" >&2; fail "the holder did not start"; }
    sleep 0.05
done
grep -q "no other process has it open, private" "$T/p.trace" ||
    { kill $p; fail "the holder did not become the sole holder (the test would prove nothing)"; }
SCP_QUIET=1 timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$PY" "$T/lk.py" newcomer "$MNT" "$T" \
    > "$T/n.out" 2> "$T/n.err"
rc=$?
cat "$T/n.out"
touch "$T/n_done"
wait $p; prc=$?
cat "$T/p.out"
[ $rc -eq 0 ] || { cat "$T/n.err" >&2; fail "the newcomer's checks ($rc)"; }
[ $prc -eq 0 ] || { cat "$T/p.err" >&2; fail "the holder ($prc)"; }
grep -q "no longer the sole holder" "$T/p.trace" || fail "the holder's watcher never let the newcomer in"
# The holder's kernel fcntl record-lock calls between its two marks (its 808 lock calls)
n=$(awk '/mark1/ {on=1} /mark2/ {on=0} on && /fcntl\(.*F_(SETLK|SETLKW|GETLK),/ {n++} END {print n+0}' "$T/p.strace")
echo "the holder's kernel F_SETLK/F_SETLKW/F_GETLK calls for its 808 lock calls while alone: $n"
[ "$n" -eq 0 ] || fail "the sole holder's locks went to the kernel: $n fcntl calls for 808 lock calls"
SCP_QUIET=1 timeout 60 "$SCPCTL" run --trace="$T/o.trace" --volume "$VOL:$MNT" --key-file "$KEY" -- "$PY" "$T/lk.py" ofd "$MNT" "$T" \
    > "$T/o.out" 2> "$T/o.err"
rc=$?
cat "$T/o.out"
grep -q "no other process has it open, private" "$T/o.trace" || fail "the OFD case's program was not the sole holder"
[ $rc -eq 0 ] || { cat "$T/o.err" >&2; fail "an OFD lock beside the process's kept fcntl lock ($rc)"; }
echo PASS
