#!/bin/bash
# O_DSYNC, O_SYNC and pwritev2(RWF_DSYNC) on a protected file: the write is durable when it
# returns, as on a kernel file. The program writes a marker that way and is killed with SIGKILL
# before any fsync or close (which would commit on their own). Durable means flushed to the
# device, which a kill cannot tell (the volume's journal already survives a kill), so the run is
# traced: the volume library must flush its backing files (fsync/fdatasync) during the write,
# and the volume must then hold the marker.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "python3 not installed: skipped"; exit 77; }
command -v strace >/dev/null || { echo "strace not installed: skipped"; exit 77; }
setup "$@"
cat_vol() { "$SCPCTL" volume cat --key-file "$KEY" "$VOL" "$1" 2>/dev/null; }
for how in O_DSYNC O_SYNC RWF_DSYNC; do
    # (in an inner shell whose stderr is a file: it reports the kill)
    bash -c 'strace -f -qq -o "$1" -e trace=fsync,fdatasync,write,pwritev2,kill "${@:2}"; exit $?' sh \
        "$T/trace-$how" "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- python3 - "$MNT/$how.txt" "$how" \
        2>"$T/run-$how.err" <<'PY'
import os, signal, sys
path, how = sys.argv[1], sys.argv[2]
flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
if how != "RWF_DSYNC":
    flags |= getattr(os, how)
fd = os.open(path, flags, 0o600)
data = ("SCPMARK_dsync_" + how + "\n").encode()
os.write(2, b"dsync-write-follows\n")  # a real write system call: the trace's anchor
if how == "RWF_DSYNC":
    os.pwritev(fd, [data], 0, os.RWF_DSYNC)
else:
    os.write(fd, data)
os.kill(os.getpid(), signal.SIGKILL)
PY
    rc=$?
    [ $rc -ge 128 ] || fail "$how: the writer was not killed (exit $rc)"
    # between the marker's write and the kill, the library flushed something
    flushes=$(awk '/dsync-write-follows/ {w=1} w && /(fsync|fdatasync)\(/ {n++} /kill\(/ && w {print n+0; exit}' "$T/trace-$how")
    [ "${flushes:-0}" -gt 0 ] || fail "$how: no fsync/fdatasync between the write and the kill: the write was not made durable"
    got=$(cat_vol "$how.txt")
    [ "$got" = "SCPMARK_dsync_$how" ] || fail "$how: after SIGKILL the volume holds '$got', want the marker written with $how"
    echo "ok: $how write durable before SIGKILL"
done
check_no_plaintext SCPMARK_dsync
echo PASS
