#!/bin/bash
# Shared open file descriptions (issue 12): after fork, vfork, posix_spawn and exec, parent
# and child share one offset and one set of status flags on a protected descriptor, as the
# kernel gives for one open file description. The shell patterns that depend on it
# (`{ echo 1; sh -c 'echo 2'; echo 3; } > f`, `(cmd1; cmd2) >> log`, a script whose commands
# write through its inherited stdout, `exec 3>f; sh -c 'echo >&3'`) run with bash and dash,
# and a python program forks, seeks, spawns and writes concurrently; every file is read back
# with `scpctl volume cat` and compared with the same run on tmpfs.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "python3 not installed: skipped"; exit 77; }
command -v dash >/dev/null || { echo "dash not installed: skipped"; exit 77; }
setup "$@"
FW=${3:?usage: ofd.sh SCPCTL MKVOL FORKWRITE}
# the reference run: on tmpfs where there is one (/dev/shm), else beside the volume
PLAIN=$T/plain
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && PLAIN=$(mktemp -d /dev/shm/scp-ofd.XXXXXX); then
    trap 'rm -rf "$T" "$PLAIN"' EXIT
fi
mkdir -p "$PLAIN"

cat > "$T/shells.sh" <<'SH'
# $1: directory; $2: the shell that runs each case
D=$1 S=$2
$S -c '{ echo 1; sh -c "echo 2"; echo 3; } > "$0/brace_$1"' "$D" "$S"
$S -c '(echo a; /bin/echo b; echo c) >> "$0/sub_$1"; (echo d; sh -c "echo e"; echo f) >> "$0/sub_$1"' "$D" "$S"
$S -c 'for i in 1 2 3 4 5; do echo "p$i"; sh -c "echo c$i"; /bin/echo "e$i"; done > "$0/loop_$1"' "$D" "$S"
$S -c '( exec >> "$0/make_$1" 2>&1; echo start; for t in a b c; do /bin/echo "cc $t.c"; sh -c "echo ld $t >&2"; done; echo end )' "$D" "$S"
$S -c 'echo 1; bash -c "echo 2; sh -c \"echo 3\"; echo 4"; dash -c "echo 5"; echo 6' > "$D/chain_$S"
$S -c 'exec 3> "$0/fd3_$1"; echo x >&3; sh -c "echo y >&3"; echo z >&3' "$D" "$S"
SH

cat > "$T/script.sh" <<'SH'
echo s1
sh -c "echo s2"
/bin/echo s3
python3 -c 'print("s4")'
echo s5
SH

cat > "$T/forky.py" <<'PY'
import fcntl, os, subprocess, sys
D = sys.argv[1]
W = os.O_WRONLY | os.O_CREAT | os.O_TRUNC

def report(name, text):
    with open(os.path.join(D, name), "w") as f:
        f.write(text + "\n")

def child(fn):
    pid = os.fork()
    if pid == 0:
        try:
            fn()
        finally:
            os._exit(0)
    return pid

# one after the other: the child's write lands after the parent's, the parent's after both
fd = os.open(os.path.join(D, "py_seq"), W, 0o644)
os.write(fd, b"P0\n")
os.waitpid(child(lambda: os.write(fd, b"C1\n")), 0)
os.write(fd, b"P2\n")
os.close(fd)

# lseek in the child moves the parent's offset
fd = os.open(os.path.join(D, "py_seekfile"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"x" * 10)
os.waitpid(child(lambda: os.lseek(fd, 100, os.SEEK_SET)), 0)
report("py_seek", "offset after the child's lseek: %d" % os.lseek(fd, 0, os.SEEK_CUR))
os.write(fd, b"end\n")
os.close(fd)

# both write at once through one description: nothing overwritten
fd = os.open(os.path.join(D, "py_conc"), W, 0o644)
def burst(tag):
    for i in range(300):
        os.write(fd, b"%s %03d\n" % (tag, i))
pid = child(lambda: burst(b"C"))
burst(b"P")
os.waitpid(pid, 0)
os.close(fd)

# O_APPEND from two processes, each with its own description: interleaved, nothing lost
path = os.path.join(D, "py_app")
os.close(os.open(path, W, 0o644))
def appender(tag):
    afd = os.open(path, os.O_WRONLY | os.O_APPEND)
    for i in range(300):
        os.write(afd, b"%s %03d\n" % (tag, i))
    os.close(afd)
pid = child(lambda: appender(b"C"))
appender(b"P")
os.waitpid(pid, 0)

# status flags are the description's: O_APPEND set by the child is the parent's too
fd = os.open(os.path.join(D, "py_flagfile"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"0123456789")
os.lseek(fd, 0, os.SEEK_SET)
os.waitpid(child(lambda: fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)), 0)
app = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND != 0
os.write(fd, b"AB")  # at the end with O_APPEND
report("py_flags", "append=%d offset=%d" % (app, os.lseek(fd, 0, os.SEEK_CUR)))
os.close(fd)

# a dup'd descriptor shares the offset
fd = os.open(os.path.join(D, "py_dupfile"), W, 0o644)
fd2 = os.dup(fd)
os.write(fd, b"abc")
report("py_dup", "dup offset=%d" % os.lseek(fd2, 0, os.SEEK_CUR))
os.close(fd2)
os.close(fd)

# forks while another thread writes through the same description (it holds the shared
# offset's lock in its writes): each child writes a line and exits, nothing hangs or is lost
import threading
fd = os.open(os.path.join(D, "py_thr"), W, 0o644)
def writer():
    for i in range(2000):
        os.write(fd, b"T %04d\n" % i)
t = threading.Thread(target=writer)
t.start()
for i in range(50):
    os.waitpid(child(lambda: os.write(fd, b"C %02d\n" % i)), 0)
t.join()
os.close(fd)

# a child killed by SIGKILL, most likely inside a write that holds the shared offset's lock:
# the parent goes on (a robust lock), never hangs
import signal, time
fd = os.open(os.path.join(D, "py_killfile"), W, 0o644)
killed = 0
for _ in range(5):
    pid = os.fork()
    if pid == 0:
        try:
            while True:  # until killed
                os.write(fd, b"k" * 100)
        finally:  # an error ends it at once, with status 1
            os._exit(1)
    time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    killed += os.WIFSIGNALED(os.waitpid(pid, 0)[1])
    os.write(fd, b"after\n")
os.close(fd)
report("py_kill", "the parent wrote on; %d of 5 children were writing until killed" % killed)

# posix_spawn, subprocess (vfork) and system() with the description inherited
fd = os.open(os.path.join(D, "py_spawn"), W, 0o644)
os.set_inheritable(fd, True)
os.write(fd, b"before\n")
pid = os.posix_spawn("/bin/sh", ["sh", "-c", "echo spawned"], os.environ,
                     file_actions=[(os.POSIX_SPAWN_DUP2, fd, 1)])
os.waitpid(pid, 0)
os.write(fd, b"middle\n")
subprocess.run(["sh", "-c", "echo subprocess"], stdout=fd, check=True)
os.write(fd, b"after\n")
saved = os.dup(1)
os.dup2(fd, 1)
os.system("echo system")
os.write(1, b"last\n")
os.dup2(saved, 1)
os.close(fd)
PY

scenario() { # $1: directory; every case runs, the files tell
    for s in bash dash; do bash "$T/shells.sh" "$1" "$s"; done
    bash "$T/script.sh" > "$1/script_bash"
    dash "$T/script.sh" > "$1/script_dash"
    python3 "$T/forky.py" "$1"
}

scenario "$PLAIN" 2> "$T/plain.err" || { cat "$T/plain.err" >&2; fail "the scenario fails on a plain directory"; }
[ -s "$T/plain.err" ] && { cat "$T/plain.err" >&2; fail "the scenario complains on a plain directory"; }
timeout 180 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- bash -c "$(declare -f scenario); T='$T'; scenario '$MNT'" ||
    echo "the scenario failed on a protected volume (status $?)" >&2
# The shell that writes is the program itself, the first process to fork: its own write holds
# the file until it forks (a child that waited for it while it waited for the child hung).
for s in bash dash; do
    c='{ echo 1; sh -c "echo 2"; /bin/echo 3; echo 4; } > "$0"'
    $s -c "$c" "$PLAIN/top_$s"
    SCP_QUIET=1 timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- $s -c "$c" "$MNT/top_$s" ||
        echo "$s writing first failed (status $?)" >&2
done

n=0 bad=0
for f in "$PLAIN"/*; do
    name=$(basename "$f")
    case $name in py_conc | py_app | py_thr) sortit=sort ;; py_killfile) continue ;; *) sortit=cat ;; esac
    "$SCPCTL" volume cat --key-file "$KEY" "$VOL" "$name" > "$T/got" 2> "$T/err" || echo "volume cat $name: $(cat "$T/err")" >&2
    if ! $sortit < "$T/got" | cmp -s - <($sortit < "$f"); then
        echo "--- $name on a plain directory:" >&2; od -c "$f" | head -20 >&2
        echo "--- $name on the protected volume:" >&2; od -c "$T/got" | head -20 >&2
        echo "FAIL: $name differs from the plain run" >&2
        bad=$((bad + 1))
    fi
    n=$((n + 1))
done
[ "$bad" = 0 ] || fail "$bad of $n files differ from the plain run"
[ "$n" -ge 28 ] || fail "only $n files compared"
note "$n files equal to the plain run (bash, dash, python: fork, vfork, posix_spawn, system, exec)"
for x in py_conc py_app; do
    c=$(grep -c . "$PLAIN/$x")
    [ "$c" = 600 ] || fail "$x has $c lines on the plain directory"
done
c=$(grep -c . "$PLAIN/py_thr")
[ "$c" = 2050 ] || fail "py_thr has $c lines on the plain directory"

# What py_thr hits only now and then, repeated: a fork while another thread's write through the
# same description is under way (the child copied the cursor before that write moved it, and
# both wrote at one offset). 1,500 rounds: the unfixed shield lost a record in 1-3 of 1,500.
# Each round truncates and closes a file: durable commits, fdatasync each. On a disk under load
# that took minutes, so the rounds run on a volume in tmpfs where there is one. On a loaded
# machine even that ran past the 240 s below (session 28's CI beside a helper: 261 s in all), so
# no round starts after 120 s, and at least 300 must have run.
FWD=$T/fw
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && FWD=$(mktemp -d /dev/shm/scp-fw.XXXXXX); then
    trap 'rm -rf "$T" "$PLAIN" "$FWD"' EXIT
fi
mkdir -p "$FWD"
"$MKVOL" "$FWD/key" "$FWD/vol" || fail "cannot create the forkwrite volume"
out=$(SCP_QUIET=1 timeout 240 "$SCPCTL" run --volume "$FWD/vol:$MNT" --key-file "$FWD/key" -- "$FW" "$MNT" 1500 120 2>&1) ||
    fail "forks while a thread writes: $out (status $?)"
note "forks while a thread writes: $out"
ran=$(echo "$out" | sed -n 's/^bad rounds: [0-9]* of \([0-9]*\)$/\1/p')
[ "${ran:-0}" -ge 300 ] || fail "forks while a thread writes: only ${ran:-no} rounds in 120 s"
check_no_plaintext "subprocess"
echo "ok: shared open file descriptions"
