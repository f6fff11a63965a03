#!/bin/bash
# A process that writes its volume privately (exec'd by a shell that forked, nobody else with the
# volume open: private_exec.sh) and a second process of the family that opens the volume while it
# does: the newcomer sets the volume's "shared wanted" mark and waits until the private one has
# committed what it wrote and gone shared (its watcher thread does it, also when it makes no
# volume call at all). Both append to one log and the private one reads what the newcomer wrote:
# no line lost, none torn, nothing stale, no deadlock (every run under a timeout). "trap": the
# private process's first use of the volume is glibc's realpath, served in the trap handler,
# where the watcher cannot start: it starts at the next call (sh_priv_poll). Without the
# newcomer's wait, the private process keeps the log's writer lock and never catches up: the
# newcomer waits for that lock forever (the deadlock of sh -c 'sqlite3 a & sqlite3 b').
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "python3 not installed: skipped"; exit 77; }
setup "$@"
PY=$(command -v python3)
cat > "$T/p.py" <<'PY'
import os, sys, time
mnt, t, mode = sys.argv[1], sys.argv[2], sys.argv[3]
def wait_for(name):
    end = time.time() + 60
    while not os.path.exists(os.path.join(t, name)):
        if time.time() > end: sys.exit("timed out waiting for " + name)
        time.sleep(0.005)
if mode == "trap":  # the volume's first use is a glibc-internal call, served in the trap handler
    import ctypes
    libc = ctypes.CDLL(None)
    libc.realpath.restype = ctypes.c_void_p
    assert libc.realpath(mnt.encode(), None), "realpath of the mount failed"
fd = os.open(os.path.join(mnt, "log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
i = 0
os.write(fd, b"p %d\n" % i); i += 1
open(os.path.join(t, "p_started"), "w").close()
if mode == "busy":  # write on while the newcomer opens, writes and reads
    while not os.path.exists(os.path.join(t, "n_done")):
        os.write(fd, b"p %d\n" % i); i += 1
        if i > 200000: sys.exit("the newcomer never finished")
else:               # idle, trap: no volume call at all until the newcomer is done
    wait_for("n_done")
with open(os.path.join(mnt, "n.txt"), "rb") as f:
    got = f.read()
os.write(fd, b"p end " + got)
os.close(fd)
print(i)
PY
cat > "$T/n.py" <<'PY'
import os, sys, time
mnt, t = sys.argv[1], sys.argv[2]
end = time.time() + 60
while not os.path.exists(os.path.join(t, "p_started")):
    if time.time() > end: sys.exit("p never started")
    time.sleep(0.005)
fd = os.open(os.path.join(mnt, "log"), os.O_WRONLY | os.O_APPEND)
for j in range(10):
    os.write(fd, b"n %d\n" % j)
os.close(fd)
with open(os.path.join(mnt, "n.txt"), "wb") as f:
    f.write(b"newcomer-marker-%d\n" % os.getpid())
with open(os.path.join(mnt, "n.txt"), "rb") as f:
    assert f.read().startswith(b"newcomer-marker-")
with open(os.path.join(mnt, "log"), "rb") as f:
    log = f.read().split(b"\n")
assert all((b"n %d" % j) in log for j in range(10)), "the newcomer does not read back its lines"
assert b"p 0" in log, "the newcomer does not see the private process's committed lines"
open(os.path.join(t, "n_done"), "w").close()
PY
cat > "$T/check.py" <<'PY'
import sys
lines = open(sys.argv[1], "rb").read().split(b"\n")
assert lines[-1] == b"", "the log does not end with a whole line"
lines = lines[:-1]
p = [l for l in lines if l.startswith(b"p ") and not l.startswith(b"p end ")]
n = [l for l in lines if l.startswith(b"n ")]
assert p == [b"p %d" % i for i in range(len(p))], "the private process's lines are not all there in order"
assert len(p) == int(sys.argv[2]), (len(p), sys.argv[2])
assert n == [b"n %d" % j for j in range(10)], "the newcomer's lines are not all there: %r" % n
assert lines[-1].startswith(b"p end newcomer-marker-"), "the private process read a stale n.txt: %r" % lines[-1]
assert len(p) + len(n) + 1 == len(lines), "a torn or foreign line"
PY
for mode in busy idle trap; do
    rm -f "$T/p_started" "$T/n_done"
    "$SCPCTL" volume put --key-file "$KEY" "$VOL" "log" /dev/null 2>/dev/null || true
    SCP_QUIET=1 timeout 90 "$SCPCTL" run --trace="$T/$mode.trace" --volume "$VOL:$MNT" --key-file "$KEY" -- \
        /bin/sh -c "$PY $T/p.py $MNT $T $mode & p=\$!; $PY $T/n.py $MNT $T; n=\$?; wait \$p && exit \$n" > "$T/$mode.out" 2> "$T/$mode.err"
    rc=$?
    [ $rc -eq 124 ] && fail "$mode: deadlock (the run did not end within 90 s)"
    [ $rc -eq 0 ] || { cat "$T/$mode.err" >&2; fail "$mode: the run failed ($rc)"; }
    grep -q "private until this image forks or another opens it" "$T/$mode.trace" ||
        fail "$mode: the writer did not go private (the test would prove nothing)"
    grep -q "shared from now on" "$T/$mode.trace" || fail "$mode: the private writer never went shared"
    [ $mode != trap ] || grep -q "private (watcher to start)" "$T/$mode.trace" ||
        fail "trap: the volume was not opened private in the trap handler"
    "$SCPCTL" volume cat --key-file "$KEY" "$VOL" log > "$T/$mode.log" || fail "$mode: volume cat"
    "$PY" "$T/check.py" "$T/$mode.log" "$(tail -1 "$T/$mode.out")" || fail "$mode: lost or stale update"
    note "$mode: $(tail -1 "$T/$mode.out") lines of the private writer and 10 of the newcomer, all there"
done
check_no_plaintext "newcomer-marker"
echo "ok: a newcomer waits for the private writer to go shared, busy or idle; nothing lost or stale"
