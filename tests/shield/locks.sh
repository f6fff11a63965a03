#!/bin/bash
# Record locks on a protected volume exclude across processes as the kernel's do (issue 12):
# fcntl process-associated locks (lockf), F_GETLK's holder pid, OFD locks, flock, the POSIX
# rule that closing any descriptor of the file releases the process's locks, and blocking
# waits that end at the holder's release. (Two sqlite3 processes on one database: locks_sqlite.sh.)
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "python3 not installed: skipped"; exit 77; }
setup "$@"
S=$T/sync # rendezvous files, outside the volume
mkdir -p "$S"

cat > "$T/locker.py" <<'PY'
import errno, fcntl, os, struct, sys, time
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
FL = "hhqqi4x"  # struct flock on x86_64/aarch64
role, path, sync = sys.argv[1], sys.argv[2], sys.argv[3]

def wait_for(name):
    for _ in range(3000):  # the other side failed if it never comes: exit, do not hang
        if os.path.exists(os.path.join(sync, name)):
            return
        time.sleep(0.01)
    print("FAIL: no '%s' from the other process" % name, flush=True)
    sys.exit(1)

def post(name, text=""):
    with open(os.path.join(sync, name + ".tmp"), "w") as f:
        f.write(text)
    os.rename(os.path.join(sync, name + ".tmp"), os.path.join(sync, name))

def log(text):
    with open(os.path.join(sync, "log"), "a") as f:
        f.write(text + "\n")

def getlk(fd, cmd, typ, start, length):
    r = fcntl.fcntl(fd, cmd, struct.pack(FL, typ, os.SEEK_SET, start, length, 0))
    return struct.unpack(FL, r)

def refused(fn):
    try:
        fn()
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return True
        raise
    return False

def check(cond, what):
    if not cond:
        print("FAIL:", what, flush=True)
        sys.exit(1)
    print("ok:", what, flush=True)

if role == "A":
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"SCPMARK_locks " * 100)
    other = os.open(path, os.O_RDONLY)        # closing it must release A's fcntl locks
    ffd = os.open(path, os.O_RDONLY)
    fcntl.flock(ffd, fcntl.LOCK_EX)           # flock, on its own description
    ofd = os.open(path, os.O_RDWR)
    fcntl.fcntl(ofd, F_OFD_SETLK, struct.pack(FL, fcntl.F_WRLCK, os.SEEK_SET, 2000, 10, 0))
    fcntl.lockf(fd, fcntl.LOCK_EX, 1000, 0)   # process-associated, bytes [0, 1000)
    post("ready", str(os.getpid()))
    wait_for("checked")
    log("A closes another descriptor")
    os.close(other)                           # POSIX: releases the lockf lock
    wait_for("got-lockf")
    log("A releases flock and OFD")
    os.close(ffd)
    os.close(ofd)
    wait_for("done")
    os.close(fd)
else:
    wait_for("ready")
    apid = int(open(os.path.join(sync, "ready")).read())
    fd = os.open(path, os.O_RDWR)
    check(refused(lambda: fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1000, 0)),
          "lockf(LOCK_NB) refused while A holds it")
    t = getlk(fd, fcntl.F_GETLK, fcntl.F_RDLCK, 10, 1)
    check(t[0] == fcntl.F_WRLCK and t[4] == apid, "F_GETLK reports A's write lock and pid %d (got %r)" % (apid, t))
    # SEEK_CUR is the protected file's position, not the lock descriptor's
    os.lseek(fd, 1990, os.SEEK_SET)
    r = struct.unpack(FL, fcntl.fcntl(fd, F_OFD_GETLK, struct.pack(FL, fcntl.F_WRLCK, os.SEEK_CUR, 15, 1, 0)))
    check(r[0] == fcntl.F_WRLCK and r[2] == 2000 and r[3] == 10 and r[4] == -1,
          "F_OFD_GETLK at SEEK_CUR+15 reports A's OFD lock [2000,2010) (got %r)" % (r,))
    check(refused(lambda: fcntl.fcntl(fd, F_OFD_SETLK, struct.pack(FL, fcntl.F_RDLCK, os.SEEK_SET, 2005, 1, 0))),
          "F_OFD_SETLK refused on A's OFD range")
    check(getlk(fd, F_OFD_GETLK, fcntl.F_WRLCK, 3000, 5)[0] == fcntl.F_UNLCK, "F_OFD_GETLK free outside it")
    ffd = os.open(path, os.O_RDONLY)
    check(refused(lambda: fcntl.flock(ffd, fcntl.LOCK_SH | fcntl.LOCK_NB)), "flock(LOCK_NB) refused while A holds it")
    post("checked")
    fcntl.lockf(fd, fcntl.LOCK_EX, 1000, 0)   # blocks until A closes its other descriptor
    check("A closes another descriptor" in open(os.path.join(sync, "log")).read(),
          "blocking lockf returned only after A closed a descriptor of the file")
    check(refused(lambda: fcntl.flock(ffd, fcntl.LOCK_SH | fcntl.LOCK_NB)), "flock still held by A after that close")
    post("got-lockf")
    fcntl.flock(ffd, fcntl.LOCK_SH)           # blocks until A releases
    check("A releases flock and OFD" in open(os.path.join(sync, "log")).read(),
          "blocking flock returned only after A's release")
    fcntl.fcntl(fd, F_OFD_SETLKW, struct.pack(FL, fcntl.F_WRLCK, os.SEEK_SET, 2000, 10, 0))
    check(True, "F_OFD_SETLKW taken after A's release")
    post("done")
PY

note "lockf, F_GETLK, OFD locks and flock between two processes"
run sh -c "python3 '$T/locker.py' A '$MNT/f' '$S' & a=\$!; python3 '$T/locker.py' B '$MNT/f' '$S'; b=\$?; wait \$a; a=\$?; exit \$((a | b))" \
    > "$T/locker.out" 2>&1 &
pid=$!
# A broken lock (B never blocks, or A never gets "done") must fail, not hang: bound the wait.
for _ in $(seq 600); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then
    pkill -P $pid 2>/dev/null; kill $pid 2>/dev/null
    cat "$T/locker.out" >&2
    fail "the lock test did not finish within 60 s"
fi
wait $pid; rc=$?
cat "$T/locker.out"
[ $rc -eq 0 ] || fail "lock semantics between two processes (exit $rc)"
grep -q '^FAIL' "$T/locker.out" && fail "lock semantics"

check_no_plaintext SCPMARK_locks
echo PASS
