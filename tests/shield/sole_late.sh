#!/bin/bash
# The sole holding taken late (docs/volume-format.md, "Sole holder"): a program whose first use
# of its volume is a trapped call (glibc's realpath: its readlink is libc's own, mariadbd's
# first use of its data directory) or comes before the shield's filter is installed (an image
# whose cwd lies in the mount: the curated MariaDB image's /var/lib/mysql) opens the volume in
# the ordinary mode, where no watcher thread can be started; its next call outside a trap then
# makes it the sole holder (sh_sole_try). Before, such a program never got the holding: every
# commit took the cross-process lock and caught up. Then the newcomers of sole_newcomer.sh:
# `scpctl volume cat` and a second `scpctl run` get in (under timeouts), read what it committed
# to a file it still holds open, and it reads theirs.
#   sole_late.sh SCPCTL MKVOL realpath|cwd
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "python3 not installed: skipped"; exit 77; }
MODE=$3
setup "$@"
PY=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
cat > "$T/p.py" <<'PY'
import ctypes, os, sys, time
mnt, t, mode = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "realpath":
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
for i in range(50):
    os.write(fd, b"p %d\n" % i)
    os.fsync(fd)
open(os.path.join(t, "p_started"), "w").close()
wait_for("n_done")
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
SCP_QUIET=1 timeout 90 "$SCPCTL" run --trace="$T/p.trace" --volume "$VOL:$MNT" --key-file "$KEY" -- \
    "$PY" "$T/p.py" "$MNT" "$T" "$MODE" > "$T/p.out" 2> "$T/p.err" &
p=$!
end=$((SECONDS + 60))
while [ ! -e "$T/p_started" ]; do
    [ $SECONDS -lt $end ] && kill -0 $p 2>/dev/null || { cat "$T/p.err" >&2; fail "the holder did not start"; }
    sleep 0.05
done
# the trace of the holder's last image (in mode cwd the exec keeps the pid: after its exec line)
awk '/the new image is shielded again/ {n = NR} {l[NR] = $0} END {for (i = n + 1; i <= NR; i++) print l[i]}' \
    "$T/p.trace" > "$T/last.trace"
first() { grep -n "$1" "$T/last.trace" | head -1 | cut -d: -f1; }
case $MODE in
realpath) grep -q "trap: volume at .* opened" "$T/last.trace" ||
    { kill $p; fail "the volume was not opened from a trap handler (the test would prove nothing)"; } ;;
cwd) grep -q "exec of .*shielded again" "$T/p.trace" && [ -n "$(first ': volume at .* opened')" ] &&
    [ "$(first ': volume at .* opened')" -lt "$(first ': shield filter')" ] ||
    { kill $p; fail "the exec'd image did not open the volume before its filter (the test would prove nothing)"; } ;;
*) kill $p; fail "mode $MODE" ;;
esac
grep -q ": volume at .*: no other process has it open, private" "$T/last.trace" ||
    { kill $p; fail "the program did not become the sole holder"; }
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
grep -q "no longer the sole holder" "$T/p.trace" || fail "the holder's watcher never let a newcomer in"
! grep -q "shared from now on" "$T/p.trace" || fail "the sole holder went shared"
"$SCPCTL" volume cat --key-file "$KEY" "$VOL" log > "$T/log" || fail "volume cat at the end"
[ "$(wc -l < "$T/log")" -eq 51 ] || fail "lines lost: $(wc -l < "$T/log") of 51"
tail -1 "$T/log" | grep -q "^p end newcomer-marker-" || fail "the holder read a stale n.txt: $(tail -1 "$T/log")"
"$SCPCTL" volume verify --key-file "$KEY" "$VOL" > /dev/null || fail "verify"
check_no_plaintext "newcomer-marker"
echo "ok ($MODE): the sole holding taken at the first call outside a trap; newcomers get in beside it"
