#!/bin/bash
# The sole holder (docs/volume-format.md, "Sole holder"): a program started by scpctl run that
# does not fork holds the volume's private lock, so its commits skip the cross-process lock and
# catch-up and its table writes wait. Other programs that open the volume meanwhile, `scpctl
# volume cat` and a second `scpctl run`, wait for its watcher to let go (at once, without
# going shared), then read what it committed to a file it still holds open (from .t: the
# release writes the deferred entries), and write a file of their own, which the holder then
# reads (it catches up again). Every run under a timeout: a newcomer that waited forever is a
# failure. Without the open's wait the holder's later commits would go over the newcomer's;
# without the release's table writes the newcomers' reads fail ("its chunk table does not
# match the manifest").
# With a third argument `cwd` the holder starts with its working directory in the mount: its
# shield then opens the volume while it starts, before its seccomp filter is installed, and the
# watcher thread must not start until the filter is in (init.c, open_volume: a thread made
# before the filter was killed by SIGSYS at its first rt_sigprocmask).
# usage: sole_newcomer.sh SCPCTL MKVOL [cwd]
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "python3 not installed: skipped"; exit 77; }
setup "$1" "$2"
MODE=${3:-}
HOLDER_CWD=.
if [ "$MODE" = cwd ]; then
    mkdir -p "$MNT" # the mount covers it in the run's namespace: the cwd is the mount's root
    HOLDER_CWD=$MNT
fi
# (the interpreter itself: a wrapper script such as pyenv's forks, and a forked family is shared)
PY=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
cat > "$T/p.py" <<'PY'
import os, sys, time
mnt, t = sys.argv[1], sys.argv[2]
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
(cd "$HOLDER_CWD" && SCP_QUIET=1 exec timeout 90 "$SCPCTL" run --trace="$T/p.trace" --volume "$VOL:$MNT" \
    --key-file "$KEY" -- "$PY" "$T/p.py" "$MNT" "$T") > "$T/p.out" 2> "$T/p.err" &
p=$!
end=$((SECONDS + 60))
while [ ! -e "$T/p_started" ]; do
    [ $SECONDS -lt $end ] && kill -0 $p 2>/dev/null || { cat "$T/p.err" >&2; fail "the holder did not start"; }
    sleep 0.05
done
timeout 30 "$SCPCTL" volume cat --key-file "$KEY" "$VOL" log > "$T/cat1" 2> "$T/cat1.err"
rc=$?
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
grep -q "no other process has it open, private" "$T/p.trace" ||
    fail "the holder did not become the sole holder (the test would prove nothing)"
grep -q "no longer the sole holder" "$T/p.trace" || fail "the holder's watcher never let a newcomer in"
! grep -q "shared from now on" "$T/p.trace" || fail "the sole holder went shared"
"$SCPCTL" volume cat --key-file "$KEY" "$VOL" log > "$T/log" || fail "volume cat at the end"
[ "$(wc -l < "$T/log")" -eq 51 ] || fail "lines lost: $(wc -l < "$T/log") of 51"
tail -1 "$T/log" | grep -q "^p end newcomer-marker-" || fail "the holder read a stale n.txt: $(tail -1 "$T/log")"
"$SCPCTL" volume verify --key-file "$KEY" "$VOL" > /dev/null || fail "verify"
check_no_plaintext "newcomer-marker"
if [ "$MODE" = cwd ]; then # the case this mode is for: opened before the filter went in
    o=$(grep -n "volume at .* opened" "$T/p.trace" | head -1 | cut -d: -f1)
    f=$(grep -n "shield filter:" "$T/p.trace" | head -1 | cut -d: -f1)
    [ -n "$o" ] && [ -n "$f" ] && [ "$o" -lt "$f" ] ||
        fail "the holder did not open the volume while it started (the test would prove nothing)"
fi
echo "ok: newcomers get in beside the sole holder${MODE:+ (started in the mount)}, read its commits, and it reads theirs"
