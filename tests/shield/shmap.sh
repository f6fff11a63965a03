#!/bin/bash
# Writable MAP_SHARED of one protected file by two processes that opened it on their own
# (docs/shield.md, "mmap"): each sees the other's stores at once, as with a kernel file (one
# shared object per file in tmpfs, /dev/shm/scp-shm-UID, made private to the user); the stores
# are in the volume after munmap/exit (`scpctl volume cat`), and neither the backing store
# nor the shared objects' directory holds the plaintext after the run (the last user removes
# its object).
# usage: shmap.sh SCPCTL MKVOL
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 not installed"; exit 77; }
export SCP_QUIET=1
SHMDIR=/dev/shm/scp-shm-$(id -u)

note "two processes map one file writable and shared, each sees the other's stores"
run python3 - "$MNT/f" "$T/sync" <<'PY' || fail "the two mappings do not share stores"
import mmap, os, sys, time
path, sync = sys.argv[1], sys.argv[2]
with open(path, "wb") as f:
    f.write(b"\0" * 8192)
def wait_for(m, off, text):
    for _ in range(3000):
        if m[off:off + len(text)] == text:
            return
        time.sleep(0.01)
    raise SystemExit("pid %d: %r not seen at %d: %r" % (os.getpid(), text, off, m[off:off + len(text)]))
pid = os.fork()
fd = os.open(path, os.O_RDWR)          # each process opens the file on its own
m = mmap.mmap(fd, 8192)                # MAP_SHARED, PROT_READ | PROT_WRITE
if pid == 0:
    for _ in range(3000):              # until the parent has written (or gave up)
        if os.path.exists(sync):
            break
        time.sleep(0.01)
    wait_for(m, 0, b"SCPSHM_parent")
    m[5000:5012] = b"SCPSHM_child"
    m.close(); os.close(fd)
    os._exit(0)
m[0:13] = b"SCPSHM_parent"
open(sync, "w").close()
wait_for(m, 5000, b"SCPSHM_child")
_, st = os.waitpid(pid, 0)
assert st == 0, st
m.close(); os.close(fd)
PY
out=$("$SCPCTL" volume cat --key-file "$KEY" "$VOL" f | tr -d '\0')
[ "$out" = SCPSHM_parentSCPSHM_child ] || fail "volume cat f: '$out'"
check_no_plaintext SCPSHM
if [ -d "$SHMDIR" ] && grep -r -a -l -F SCPSHM "$SHMDIR" >/dev/null 2>&1; then
    fail "plaintext left in $SHMDIR after the run"
fi
echo PASS
