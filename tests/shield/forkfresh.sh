#!/bin/bash
# A forked child starts from its parent's newest view of the volume (scp_volume_refresh before
# the fork, holding.c): a parent in shared mode that sat idle while another process committed
# (a PostgreSQL postmaster between connections) brings its view up to date before it forks, so
# that the child does not read back, at its first call, the manifest log written meanwhile.
# Under scpctl run, python3: the parent opens the volume, a first child commits 1,500 small
# writes of another file (each a lazy record and an fsync record in manifest.log) and exits;
# the parent, which has not touched the volume since, forks a second child, whose first call
# (a stat) must read back (rchar, /proc/self/io) much less than the log grew. And the second
# child still sees the first one's last write (the catch-up happened, in the parent). And the
# repair's descriptors are the library's (below).
# usage: forkfresh.sh SCPCTL MKVOL
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "python3 not installed: skipped"; exit 77; }
setup "$@"
export SCP_QUIET=1
out=$(run python3 -c '
import os, sys
os.chdir(sys.argv[1])
open("f0", "w").write("x")             # the volume is open in the parent
pid = os.fork()
if pid == 0:
    fd = os.open("g", os.O_WRONLY | os.O_CREAT, 0o644)
    for i in range(1500):
        os.pwrite(fd, b"%06d" % i, 0)
        os.fsync(fd)
    os.close(fd)
    os._exit(0)
os.waitpid(pid, 0)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    def rchar():
        with open("/proc/self/io") as f:
            return int([l for l in f if l.startswith("rchar")][0].split()[1])
    a = rchar()
    size = os.stat("g").st_size
    b = rchar()
    data = open("g").read()
    os.write(w, b"%d %d %s" % (b - a, size, data.encode()))
    os._exit(0)
os.waitpid(pid, 0)
print(os.read(r, 100).decode())
' "$MNT") || fail "the python program failed: $out"
read -r got size data <<<"$out"
log=$(stat -c %s "$VOL/manifest.log")
note "manifest.log $log bytes; the second child's first call read $got bytes; g: $size bytes, '$data'"
[ "$size" = 6 ] && [ "$data" = 001499 ] || fail "the second child read g as $size bytes '$data' (want 6, 001499)"
[ "$log" -gt 200000 ] || fail "the first child's commits left only $log bytes of manifest log (the test needs more)"
[ "$got" -lt $((log / 10)) ] ||
    fail "the second child's first call read $got bytes back ($log in the log): it caught up from where the parent last looked"
# The repair that a forked child's first call makes (its own lock file description, the
# objects of the files its parent had loaded) opens descriptors of the volume library's, which
# must stay out of the program's numbers: a child that closes every descriptor above 2 after its
# first volume call (as a daemon does) still reads and writes the volume. Before, a first call
# through a path (a stat) made the repair outside the library's range: the lock file took the
# lowest free number, the program closed it, and the child's next call failed.
out=$(run python3 -c '
import os, sys
os.chdir(sys.argv[1])
open("h", "w").write("before")
pid = os.fork()
if pid == 0:
    os.stat("h")
    os.closerange(3, 1024)
    with open("h", "w") as f: f.write("child")
    os._exit(0 if open("h").read() == "child" else 3)
_, st = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(st), open("h").read())
' "$MNT" 2>&1) || fail "the closerange program failed: $out"
[ "$out" = "0 child" ] || fail "a forked child that closed descriptors 3-1023 after its first volume call: '$out' (want '0 child')"
note "a forked child closes descriptors 3-1023 after its first volume call and still writes and reads the volume"
echo PASS
