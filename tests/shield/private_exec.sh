#!/bin/bash
# A program exec'd by a shell that forked before (a script that ran commands first, `cmd &`)
# writes its volume privately when no other process has the volume open: one system call per
# write, buffered until fsync or close, not shared mode's commit per write. When another
# process of the family has the volume open (the shell holds a protected file), it stays
# shared; and its own first fork makes it shared, so parent and child see each other's writes.
# The writes are counted by the kernel (/proc/self/io, syscw) in the writer itself.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "python3 not installed: skipped"; exit 77; }
setup "$@"
PY=$(command -v python3)
N=400
cat > "$T/w.py" <<'PY'
import os, sys
def syscw():
    with open("/proc/self/io") as f:
        return int([l for l in f if l.startswith("syscw:")][0].split()[1])
n = int(sys.argv[2])
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"\0" * 65536, 0)
os.fsync(fd)
before = syscw()
for i in range(n):
    os.pwrite(fd, (b"%05d" % i) * 819 + b"\n", (i % 16) * 4096)
after = syscw()
os.fsync(fd)
os.close(fd)
print(after - before)
PY
cat > "$T/fork.py" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"parent 1\n")
pid = os.fork()
if pid == 0:
    os.write(fd, b"child\n")
    os._exit(0)
os.waitpid(pid, 0)
os.write(fd, b"parent 2\n")
os.close(fd)
PY
writes() { # NAME SHELL-COMMAND: the writer's write calls, run by a shell that forks first
    SCP_QUIET=1 run /bin/sh -c "$2" > "$T/$1.out" 2> "$T/$1.err" || { cat "$T/$1.err" >&2; fail "$1: the run failed"; }
    tail -1 "$T/$1.out"
}
alone=$(writes alone "$PY $T/w.py $MNT/alone $N & wait")
held=$(writes held "exec 3> $MNT/held.fd; $PY $T/w.py $MNT/held $N & wait")
note "write calls for $N writes: alone $alone, with the shell holding the volume $held"
[ "$alone" -lt $((N / 4)) ] || fail "alone: $alone write calls for $N writes (private: buffered until fsync)"
[ "$held" -ge $((N * 3 / 2)) ] || fail "held: $held write calls for $N writes (shared: a commit record too)"
for f in alone held; do
    "$SCPCTL" volume cat --key-file "$KEY" "$VOL" "$f" > "$T/$f.got" || fail "volume cat $f"
    "$PY" - "$T/$f.got" "$N" <<'PY' || fail "$f: the content is not the last writes'"
import sys
d = open(sys.argv[1], "rb").read()
n = int(sys.argv[2])
assert len(d) == 65536, len(d)
for slot in range(16):
    last = max(i for i in range(n) if i % 16 == slot)
    assert d[slot * 4096:slot * 4096 + 4096] == (b"%05d" % last) * 819 + b"\n", slot
PY
done
# private after exec, then its own fork: shared from there, writes in order through one offset
SCP_QUIET=1 run /bin/sh -c "$PY $T/fork.py $MNT/forked & wait" || fail "fork.py failed"
got=$("$SCPCTL" volume cat --key-file "$KEY" "$VOL" forked | tr '\n' ' ')
[ "$got" = "parent 1 child parent 2 " ] || fail "forked: '$got'"
check_no_plaintext "parent 1"
echo "ok: private after exec when alone, shared when not or after its own fork"
