# tests/shield/sole_lib.sh - what sole_newcomer.sh and sole_late.sh share: the holder (a python
# program that commits 50 lines to a file it keeps open, then waits while idle for the
# newcomers, then reads their file), and the newcomers (`scpctl volume cat` and a second
# `scpctl run`, each under a timeout) with the checks that they got in, read the holder's
# commits, and that it read theirs. Sourced after lib.sh's setup.
PY=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
# (the interpreter itself: a wrapper script such as pyenv's forks, and a forked family is shared)
cat > "$T/p.py" <<'PY'
import ctypes, os, sys, time
mnt, t = sys.argv[1], sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else ""
if mode == "realpath":
    # the first use of the volume is glibc's realpath: a readlink that traps
    libc = ctypes.CDLL(None)
    libc.realpath.restype = ctypes.c_void_p
    assert libc.realpath(mnt.encode(), None), "realpath of the mount failed"
elif mode == "cwd":
    # this image's first use of the volume is the chdir; the next image's, its start-up's
    # classification of its cwd, before its filter is installed
    os.chdir(mnt)
    os.execv(sys.executable, [sys.executable, sys.argv[0], mnt, t, "cwd-exec"])
def wait_for(name):
    end = time.time() + 60
    while not os.path.exists(os.path.join(t, name)):
        if time.time() > end: sys.exit("timed out waiting for " + name)
        time.sleep(0.005)
fd = os.open(os.path.join(mnt, "log"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
for i in range(50):   # small commits of a file kept open: journaled, table writes deferred
    os.write(fd, b"p %d\n" % i)
    os.fsync(fd)
open(os.path.join(t, "p_started"), "w").close()
wait_for("n_done")    # idle, no volume call: the watcher lets the newcomers in
with open(os.path.join(mnt, "n.txt"), "rb") as f:
    got = f.read()
os.write(fd, b"p end " + got)
os.fsync(fd)
os.close(fd)
PY
cat > "$T/n.py" <<'PY'
import os, sys
mnt = sys.argv[1]
with open(os.path.join(mnt, "log"), "rb") as f:
    log = f.read().split(b"\n")
assert log[:50] == [b"p %d" % i for i in range(50)], "the newcomer does not read the holder's commits"
with open(os.path.join(mnt, "n.txt"), "wb") as f:
    f.write(b"newcomer-marker-%d\n" % os.getpid())
PY

# sole_holder_start CWD [MODE]: the holder under scpctl run --trace=$T/p.trace, started in CWD;
# returns once it has committed its 50 lines (sets p, its pid)
sole_holder_start() {
    (cd "$1" && SCP_QUIET=1 exec timeout 90 "$SCPCTL" run --trace="$T/p.trace" --volume "$VOL:$MNT" \
        --key-file "$KEY" -- "$PY" "$T/p.py" "$MNT" "$T" ${2:+"$2"}) > "$T/p.out" 2> "$T/p.err" &
    p=$!
    local end=$((SECONDS + 60))
    while [ ! -e "$T/p_started" ]; do
        [ $SECONDS -lt $end ] && kill -0 $p 2>/dev/null || { cat "$T/p.err" >&2; fail "the holder did not start"; }
        sleep 0.05
    done
}

# sole_newcomers: volume cat and a second scpctl run get in and read the holder's commits; the
# holder then ends, having read theirs; nothing lost, the volume verifies, no plaintext
sole_newcomers() {
    timeout 30 "$SCPCTL" volume cat --key-file "$KEY" "$VOL" log > "$T/cat1" 2> "$T/cat1.err"
    local rc=$?
    [ $rc -eq 124 ] && { kill $p; fail "scpctl volume cat waited for the sole holder forever"; }
    [ $rc -eq 0 ] || { kill $p; cat "$T/cat1.err" >&2; fail "scpctl volume cat of the held file failed"; }
    [ "$(head -1 "$T/cat1")" = "p 0" ] && [ "$(sed -n 50p "$T/cat1")" = "p 49" ] ||
        { kill $p; fail "scpctl volume cat does not read the holder's commits"; }
    SCP_QUIET=1 timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$PY" "$T/n.py" "$MNT" \
        > "$T/n.out" 2> "$T/n.err"
    rc=$?
    [ $rc -eq 124 ] && { kill $p; fail "a second scpctl run waited for the sole holder forever"; }
    [ $rc -eq 0 ] || { kill $p; cat "$T/n.err" >&2; fail "the second scpctl run failed ($rc)"; }
    touch "$T/n_done"
    wait $p
    rc=$?
    [ $rc -eq 0 ] || { cat "$T/p.err" >&2; fail "the holder failed ($rc)"; }
    grep -q "no longer the sole holder" "$T/p.trace" || fail "the holder's watcher never let a newcomer in"
    # (another program may write the same files: both work in shared mode from then on, so
    # that each reads the other's writes, as on a kernel file system; in the ordinary mode
    # two sqlite3 lost rows silently, tests/shield/locks_sqlite.sh "programs")
    grep -q "no longer the sole holder; shared" "$T/p.trace" || fail "the sole holder did not go shared"
    "$SCPCTL" volume cat --key-file "$KEY" "$VOL" log > "$T/log" || fail "volume cat at the end"
    [ "$(wc -l < "$T/log")" -eq 51 ] || fail "lines lost: $(wc -l < "$T/log") of 51"
    tail -1 "$T/log" | grep -q "^p end newcomer-marker-" || fail "the holder read a stale n.txt: $(tail -1 "$T/log")"
    "$SCPCTL" volume verify --key-file "$KEY" "$VOL" > /dev/null || fail "verify"
    check_no_plaintext "newcomer-marker"
}
