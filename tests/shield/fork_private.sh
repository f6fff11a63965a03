#!/bin/bash
# A forked child that is the only process using a volume writes it privately (fio's job: its
# parent lays the file out, closes it, forks and waits): the parent, which holds no file of
# the volume, is parked at the fork (its presence lock let go), and the child opens the volume
# afresh and goes private. The parent's next use of the volume waits until the child has gone
# shared (its uncommitted writes committed), as any process that opens the volume does.
# docs/volume-format.md, "Parked at a fork"; docs/shield.md, "fork".
#   fork    parent writes a file, closes it, forks; the child rewrites 16 chunks N times: its
#           write calls (the kernel's count, /proc/self/io syscw) show it private (buffered
#           until fsync, fewer than N/4) where shared mode makes a commit record per write (at
#           least 1.5 N); the parent then reads every byte the child wrote
#   held    the same with the parent holding a file of the volume open across the fork: the
#           child stays shared
#   touch   the parent opens the child's file while the private child holds uncommitted
#           writes and waits: the parent sees them (the child's watcher committed them first)
#   kill    the child is killed mid-write after an fsync: the parent reads the synced bytes,
#           every chunk either old or new, and the volume verifies
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "python3 not installed: skipped"; exit 77; }
setup "$@"
PY=$(command -v python3)
N=400
cat > "$T/fp.py" <<'PY'
import os, sys, signal, time
mode, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def syscw():
    with open("/proc/self/io") as f:
        return int([l for l in f if l.startswith("syscw:")][0].split()[1])
def chunk(i):
    return (b"%05d" % i) * 819 + b"\n"
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.pwrite(fd, b"\0" * 65536, 0)
os.fsync(fd)
held = None
if mode == "held":
    held = os.open(path + ".held", os.O_WRONLY | os.O_CREAT, 0o644)
else:
    os.close(fd)
r1, w1 = os.pipe()
r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r1)
    os.close(w2)
    if held is not None:
        os.close(held)
        os.close(fd)
    fd = os.open(path, os.O_RDWR)
    if mode == "touch":
        os.pwrite(fd, chunk(7), 3 * 4096) # uncommitted, then wait for the parent
        os.write(w1, b"w")
        os.read(r2, 1)
        os.pwrite(fd, chunk(8), 4 * 4096)
        os.fsync(fd)
        os._exit(0)
    if mode == "kill":
        for i in range(16):
            os.pwrite(fd, chunk(i), i * 4096)
        os.fsync(fd)
        os.write(w1, b"s")
        i = 0
        while True:
            os.pwrite(fd, chunk(1000 + i % 16), (i % 16) * 4096)
            i += 1
    before = syscw()
    for i in range(n):
        os.pwrite(fd, chunk(i), (i % 16) * 4096)
    after = syscw()
    os.fsync(fd)
    os.close(fd)
    os.write(w1, b"%d" % (after - before))
    os._exit(0)
os.close(w1)
os.close(r2)
if mode == "touch":
    assert os.read(r1, 1) == b"w"
    with open(path, "rb") as f: # waits for the child's move to shared mode
        d = f.read()
    assert d[3 * 4096:4 * 4096] == chunk(7), "the child's uncommitted write is not seen"
    os.write(w2, b"g")
    assert os.waitpid(pid, 0)[1] == 0
    with open(path, "rb") as f:
        d = f.read()
    assert d[4 * 4096:5 * 4096] == chunk(8) and d[3 * 4096:4 * 4096] == chunk(7)
    print("touch ok")
    sys.exit(0)
if mode == "kill":
    assert os.read(r1, 1) == b"s"
    time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    with open(path, "rb") as f:
        d = f.read()
    assert len(d) == 65536, len(d)
    for s in range(16):
        c = d[s * 4096:(s + 1) * 4096]
        ok = [chunk(s)] + [chunk(1000 + s)]
        assert c in ok, "chunk %d is neither the synced nor a later write" % s
    with open(path, "r+b") as f: # and the parent writes on after the crash
        f.write(chunk(99))
    print("kill ok")
    sys.exit(0)
calls = int(os.read(r1, 32))
assert os.waitpid(pid, 0)[1] == 0
with open(path, "rb") as f:
    d = f.read()
assert len(d) == 65536, len(d)
for s in range(16):
    last = max(i for i in range(n) if i % 16 == s)
    assert d[s * 4096:(s + 1) * 4096] == chunk(last), "chunk %d is not the child's last write" % s
if held is not None:
    os.close(held)
    os.close(fd)
print(calls)
PY
go() { # MODE: the run's last line
    SCP_QUIET=1 run "$PY" "$T/fp.py" "$1" "$MNT/$1" "$N" > "$T/$1.out" 2> "$T/$1.err" ||
        { cat "$T/$1.err" >&2; fail "$1: the run failed"; }
    tail -1 "$T/$1.out"
}
alone=$(go fork)
held=$(go held)
note "the child's write calls for $N writes: parent holding nothing $alone, parent holding a file $held"
[ "$alone" -lt $((N / 4)) ] || fail "fork: $alone write calls for $N writes (private: buffered until fsync)"
[ "$held" -ge $((N * 3 / 2)) ] || fail "held: $held write calls for $N writes (shared: a commit record too)"
[ "$(go touch)" = "touch ok" ] || fail "touch"
[ "$(go kill)" = "kill ok" ] || fail "kill"
"$SCPCTL" volume verify --key-file "$KEY" "$VOL" > "$T/verify.out" 2>&1 || { cat "$T/verify.out" >&2; fail "volume verify"; }
"$SCPCTL" volume cat --key-file "$KEY" "$VOL" fork > "$T/fork.got" || fail "volume cat"
check_no_plaintext "00399"
echo "ok: a forked child alone with the volume writes privately; the parent sees every byte"
