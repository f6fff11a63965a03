#!/bin/bash
# The console shield (docs/shield.md "Console"): a service whose policy seals stdout and stderr
# prints a marker; the host's capture holds no marker, and `scpctl logs` (the owner, key from
# CAS, audited) gives back exactly what the program printed, across fork and exec; a dropped,
# reordered, replayed or cut-off record is reported (exit 3); another identity cannot get the
# console key; stdin sealed by `scpctl attach` reaches the program and plain stdin is refused;
# a raw write(2) system call on fd 1 (not through libc) leaves sealed too.
source "$(dirname "$0")/lib.sh" "$@"
client_leaks_off # (lib.sh: dozens of short client commands; the daemon keeps the leak check)

A=$T/owner.pem
B=$T/other.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
expect_rc 0 "$SCPCTL" cas identity --out "$B"
export SCP_IDENTITY=$A
start_cas --admin "$A"
expect_rc 0 "$SCPCTL" platform create-key "$T/p1.key"
expect_rc 0 "$SCPCTL" platform enroll --name p1 --key "$T/p1.key"
mkdir -p "$T/bin"
cp "$(readlink -f /bin/sh)" "$T/bin/sh"
# what the services execute and dlopen must be measured (trusted files: an exec of an unlisted
# binary is refused): the commands the scripts run, python3 and the extension modules the
# python snippets import, and the static helper
TRUST=()
for b in cat seq echo python3; do TRUST+=(--trusted "$(readlink -f "/usr/bin/$b")"); done
# glibc dlopens libgcc_s for pthread_exit (python's threads end that way): an unlisted one is
# refused, and the thread aborts ("libgcc_s.so.1 must be installed for pthread_exit to work")
GCCS=$(/usr/bin/python3 -c 'import ctypes.util, os; print(os.path.realpath("/lib/x86_64-linux-gnu/" + (ctypes.util.find_library("gcc_s") or "libgcc_s.so.1")))')
[ -f "$GCCS" ] && TRUST+=(--trusted "$GCCS")
for m in $(/usr/bin/python3 -c 'import ctypes, subprocess, os, fcntl, select, threading, struct, socket, sys
print(" ".join(sorted({m.__file__ for m in list(sys.modules.values()) if (getattr(m, "__file__", "") or "").endswith(".so")})))'); do
    TRUST+=(--trusted "$m")
done
# (a copy outside /tmp: the program runs in a container whose /tmp is private, and CI's
# checkout may be under /tmp)
H=$(dirname "$SCPCTL")/../tests/shield/shield-static-helper
if [ -x "$H" ]; then
    HD=$(mktemp -d /var/tmp/scp-cas-console.XXXXXX)
    trap 'cleanup; rm -rf "$HD"' EXIT
    chmod 755 "$HD"
    cp "$H" "$HD/static-helper"
    H=$HD/static-helper
    TRUST+=(--trusted "$H")
fi
# the path race (tests/shield/pathrace.c --console), a copy next to the static helper's
PR=$(dirname "$SCPCTL")/../tests/shield/shield-pathrace
if [ -x "$PR" ] && [ -n "${HD:-}" ]; then
    cp "$PR" "$HD/pathrace"
    PR=$HD/pathrace
    TRUST+=(--trusted "$PR")
else
    PR=
fi
expect_rc 0 "$SCPCTL" platform measure "${TRUST[@]}" -- "$T/bin/sh"
MSH=$(cat "$T/last.out")

cat >"$T/c.yaml" <<YAML
name: con
services:
  - name: out
    measurements: [$MSH]
    append_args: true
    command: [sh, -c]
    console: {stdout: sealed, stderr: sealed}
  - name: in
    measurements: [$MSH]
    append_args: true
    command: [sh, -c]
    console: {stdin: sealed, stdout: plain}
  - name: plain
    measurements: [$MSH]
    append_args: true
    command: [sh, -c]
  - name: netlog
    measurements: [$MSH]
    append_args: true
    command: [sh, -c]
    console: {stdout: sealed, stderr: sealed}
    network: {default: refuse}
YAML
expect_rc 0 "$SCPCTL" session create "$T/c.yaml"
# the console section's values and keys are checked
printf 'name: bad1\nservices: [{name: s, measurements: [%s], console: {stdout: maybe}}]\n' "$MSH" >"$T/bad.yaml"
expect_err 1 "'sealed' or 'plain'" "$SCPCTL" session create "$T/bad.yaml"
printf 'name: bad2\nservices: [{name: s, measurements: [%s], console: {stdtty: sealed}}]\n' "$MSH" >"$T/bad.yaml"
expect_err 1 "unknown key 'stdtty'" "$SCPCTL" session create "$T/bad.yaml"
RUN=("$SCPCTL" run --session con --platform-key "$T/p1.key" --volume-dir "$T/vols" "${TRUST[@]}")

# stdout and stderr sealed; a fork (subshell) and an exec (cat, seq) in between
SCRIPT='echo MARKER-one; echo MARKER-err >&2; echo MARKER-devstderr >>/dev/stderr; echo MARKER-devstdout >>/dev/stdout; (echo MARKER-child); printf "MARKER-%s\n" two three; seq 1 3; exec cat /etc/hostname'
"${RUN[@]}" --service out -- "$T/bin/sh" "$SCRIPT" >"$T/out.rec" 2>"$T/err.rec" || fail "the sealed run failed: $(cat "$T/err.rec" | tr -cd '[:print:]\n' | head -5)"
grep -q MARKER "$T/out.rec" && fail "the captured stdout holds the marker in plaintext"
grep -q MARKER "$T/err.rec" && fail "the captured stderr holds the marker in plaintext"
# the reference through pipes, as the sealed streams behave (a reopened /dev/stdout of a file
# would have its own offset)
{ sh -c "$SCRIPT" 2>&1 >&3 | cat >"$T/want.err"; } 3>&1 | cat >"$T/want.out"
expect_rc 0 "$SCPCTL" logs con out "$T/out.rec"
cmp -s "$T/last.out" "$T/want.out" || fail "logs does not reproduce stdout: $(diff "$T/last.out" "$T/want.out")"
expect_rc 0 "$SCPCTL" logs con out "$T/err.rec"
cmp -s "$T/last.out" "$T/want.err" || fail "logs does not reproduce stderr: $(head -c 300 "$T/last.out")"
expect_rc 0 "$SCPCTL" logs con out - <"$T/out.rec"
cmp -s "$T/last.out" "$T/want.out" || fail "logs - does not reproduce stdout"
echo "ok: sealed stdout/stderr reproduced exactly"

# --console-lines: the same streams as lines of text ("SCR1:" and Base64), for channels that
# keep text only (Docker's log); scpctl logs reads them, and a launcher's plain line between
# records is shown as not sealed (stderr), never as output
"${RUN[@]}" --console-lines --service out -- "$T/bin/sh" "$SCRIPT" >"$T/out.lines" 2>"$T/err.lines" ||
    fail "the sealed run in line form failed: $(head -c 300 "$T/err.lines")"
grep -q MARKER "$T/out.lines" && fail "the line-form stdout holds the marker in plaintext"
[ "$(grep -c '^SCR1:' "$T/out.lines")" -ge 4 ] && ! grep -v '^SCR1:' "$T/out.lines" | grep -q . ||
    fail "stdout in line form is not one record per line: $(head -c 300 "$T/out.lines")"
LC_ALL=C grep -q '[^ -~]' "$T/out.lines" && fail "stdout in line form holds bytes that are not printable text"
expect_rc 0 "$SCPCTL" logs con out "$T/out.lines"
cmp -s "$T/last.out" "$T/want.out" || fail "logs does not reproduce stdout from lines: $(diff "$T/last.out" "$T/want.out")"
expect_rc 0 "$SCPCTL" logs con out "$T/err.lines"
cmp -s "$T/last.out" "$T/want.err" || fail "logs does not reproduce stderr from lines"
sed -e '2a injected: not from the program' "$T/out.lines" >"$T/out.mixed"
expect_err 0 'not a sealed record, not shown as output: "injected' "$SCPCTL" logs con out "$T/out.mixed"
cmp -s "$T/last.out" "$T/want.out" || fail "an injected plain line reached the output"
echo "ok: line form reproduced exactly; a plain line between records is shown as not sealed"

# tampering, done on the record boundaries of the capture (python reads the frame lengths)
frames() { python3 - "$@" <<'PY'
import struct, sys
src, dst, op = sys.argv[1], sys.argv[2], sys.argv[3]
b = open(src, "rb").read()
i = b.find(b"SCR1"); pre, b = b[:i], b[i:]
f = []
while b:
    n = 57 + struct.unpack(">I", b[37:41])[0]
    f.append(b[:n]); b = b[n:]
# the data records of the first stream (type 2)
sid = f[0][5:21]
d = [k for k, x in enumerate(f) if x[4] == 2 and x[5:21] == sid]
if op == "drop": del f[d[1]]
elif op == "reorder": f[d[0]], f[d[1]] = f[d[1]], f[d[0]]
elif op == "replay": f.insert(d[1] + 1, f[d[1]])
elif op == "truncate": f = f[:-1]
elif op == "flip": f[d[0]] = f[d[0]][:45] + bytes([f[d[0]][45] ^ 1]) + f[d[0]][46:]
open(dst, "wb").write(pre + b"".join(f))
PY
}
for op in drop:dropped reorder:reordered replay:replayed truncate:truncated flip:"does not authenticate"; do
    frames "$T/out.rec" "$T/t.rec" "${op%%:*}" || fail "cannot tamper ($op)"
    expect_err 3 "${op#*:}" "$SCPCTL" logs con out "$T/t.rec"
    grep -q "NOT intact" "$T/last.err" || fail "logs does not say the stream is not intact ($op)"
done
# the stream cut in the middle of a record
head -c $(( $(stat -c %s "$T/out.rec") - 10 )) "$T/out.rec" >"$T/t.rec"
expect_err 3 "truncated" "$SCPCTL" logs con out "$T/t.rec"
# plain bytes are not a stream
echo "hello" >"$T/t.rec"
expect_err 3 "no sealed record" "$SCPCTL" logs con out "$T/t.rec"
# another service's key authenticates nothing
expect_err 3 "no record authenticates" "$SCPCTL" logs con in "$T/out.rec"
echo "ok: dropped, reordered, replayed, truncated and changed records reported"

# only the owner gets the console key; the read is audited
expect_err 1 "only the owner" "$SCPCTL" logs con out "$T/out.rec" --identity "$B"
[ -s "$T/last.out" ] && fail "a non-owner got output"
expect_rc 0 "$SCPCTL" cas audit --identity "$A"
grep "console.key" "$T/last.out" | grep -q denied || fail "the refused console key read is not in the audit log"
grep "console.key" "$T/last.out" | grep -q "	ok	" || fail "the owner's console key read is not in the audit log"
echo "ok: console key for the owner only, audited"

# Another thread flips one byte of the path while the program opens it: "/proc/self/fd/N" of
# the shield's own descriptor of the host's stdout (refused) and "/proc/selF/fd/N" (nothing
# there). Before the shield copied the path once, the kernel could read the first after the
# shield had looked at the second and reach the shield's own descriptor of the host's stdout
# (here a socket from scpctl run, whose reopen the kernel refuses with ENXIO, so no byte got
# out; a pipe or a file there would have been opened, past the console shield). The program
# fails on any answer but the shield's EBADF and the kernel's ENOENT (tests/shield/pathrace.c).
if [ -n "$PR" ]; then
    "${RUN[@]}" --service out -- "$T/bin/sh" "exec $PR --console 100000" 2>"$T/race.err" | cat >"$T/race.rec"
    rc=${PIPESTATUS[0]}
    grep -q MARKER "$T/race.rec" && fail "a path changed during the open reached the host's stdout: plaintext in the capture"
    expect_rc 0 "$SCPCTL" logs con out "$T/race.rec"
    [ $rc -eq 0 ] && grep -q "^ok   console race" "$T/last.out" || fail "the path race: rc $rc: $(cat "$T/last.out")"
    echo "ok: a path flipped during the open never reaches the host's stdout ($(grep 'console race' "$T/last.out"))"
fi

# a raw write system call on fd 1 (no libc write) is sealed too (python's os.write is libc's;
# ctypes' syscall() is the raw instruction)
if command -v python3 >/dev/null; then
    "${RUN[@]}" --service out -- "$T/bin/sh" 'python3 -c "import ctypes; b=b\"MARKER-raw\n\"; ctypes.CDLL(None).syscall(1, 1, b, len(b))"' \
        >"$T/raw.rec" 2>"$T/raw.err" || fail "raw write run failed"
    grep -q MARKER "$T/raw.rec" && fail "a raw write(1) leaked plaintext"
    expect_rc 0 "$SCPCTL" logs con out "$T/raw.rec"
    grep -qx MARKER-raw "$T/last.out" || fail "the raw write did not come back: $(cat "$T/last.out")"
    echo "ok: a raw write on fd 1 is sealed"
    # the sealed streams' numbers are guarded by the first image's one filter (they each had a
    # filter of their own, and the container's ptrace rule one more): python3, exec'd by the
    # shielded sh, runs sh's filter and its own image's, 2 in all; a number dup'd later (9)
    # still gets a filter of its own, and a raw write on it is sealed too
    cat >"$T/filters.py" <<'PY'
import ctypes, os
libc = ctypes.CDLL(None)
def filters():
    return [x.split()[1] for x in open("/proc/self/status") if x.startswith("Seccomp_filters")][0]
print("filters", filters(), flush=True)
os.dup2(1, 9)
b = b"MARKER-raw9\n"
libc.syscall(1, 9, b, len(b))
print("filters", filters(), flush=True)
PY
    "${RUN[@]}" --service out -- "$T/bin/sh" "python3 -c \"$(sed 's/"/\\"/g' "$T/filters.py")\"" >"$T/filt.rec" 2>"$T/filt.err" ||
        fail "filter count run failed: $(tr -cd '[:print:]\n' <"$T/filt.err" | tail -3)"
    grep -q MARKER "$T/filt.rec" && fail "a raw write on a dup of fd 1 leaked plaintext"
    expect_rc 0 "$SCPCTL" logs con out "$T/filt.rec"
    [ "$(cat "$T/last.out")" = "$(printf 'filters 2\nMARKER-raw9\nfilters 3')" ] ||
        fail "seccomp filters of a sealed-console program (want 2, then 3 after a dup of fd 1): $(cat "$T/last.out")"
    echo "ok: the sealed streams' numbers are in the image's filter (2 filters, the container's rule folded too); a later dup gets its own and is sealed"
    # a raw openat of /proc/self/fd/N of every descriptor the shield holds (the host's side of
    # the sealed streams among them), then a raw write of a marker into what opened
    cat >"$T/reopen.py" <<'PY'
import ctypes, os
libc = ctypes.CDLL(None)
for n in sorted(int(x) for x in os.listdir("/proc/self/fd")):
    if n < 3:
        continue
    fd = libc.syscall(257, -100, b"/proc/self/fd/%d" % n, 1, 0)  # openat(AT_FDCWD, ..., O_WRONLY)
    if fd >= 0:
        b = b"MARKER-reopen-%d\n" % n
        libc.syscall(1, fd, b, len(b))
print("reopen-done")
PY
    # (through a pipe, which a reopen appends to; a file's reopen would write at offset 0, where
    # the shield's first record may land after it)
    "${RUN[@]}" --service out -- "$T/bin/sh" "python3 -c \"$(sed 's/"/\\"/g' "$T/reopen.py")\"" 2>&1 | cat >"$T/re.rec"
    grep -aq MARKER-reopen "$T/re.rec" && fail "a raw reopen through /proc/self/fd wrote plaintext to the host"
    "$SCPCTL" logs con out "$T/re.rec" 2>/dev/null | grep -q reopen-done || fail "the reopen probe did not run"
    echo "ok: a raw reopen of the shield's descriptors through /proc/self/fd reaches no host pipe"
    # a child spawned with its stdout on a pipe (python's subprocess: vfork, dup2 onto 1 in the
    # child) leaves the parent's sealed stdout as it was
    "${RUN[@]}" --service out -- "$T/bin/sh" 'python3 -c "import subprocess; print(subprocess.run([\"echo\", \"MARKER-sub\"], capture_output=True).stdout.decode().strip(), flush=True); print(\"MARKER-after\")"' \
        >"$T/sub.rec" 2>"$T/sub.err" || fail "subprocess run failed: $(tr -cd '[:print:]\n' <"$T/sub.err" | tail -3)"
    expect_rc 0 "$SCPCTL" logs con out "$T/sub.rec"
    [ "$(cat "$T/last.out")" = "$(printf 'MARKER-sub\nMARKER-after')" ] || fail "stdout after a spawned child: $(cat "$T/last.out")"
    echo "ok: a child spawned with a redirected stdout leaves the parent's sealed stdout alone"
fi

# a static program (no libc to interpose, no shield) that writes a marker into every inherited
# descriptor at 1024 and above, where the host's pipes now sit: killed by the filter (SIGSYS)
# or refused, never a plaintext byte on the host's side
if [ -x "$H" ]; then
    "${RUN[@]}" --service out -- "$T/bin/sh" "$(readlink -f "$H") /nonexistent; echo static-rc=\$?" >"$T/st.rec" 2>"$T/st.err"
    grep -aq SCPBYPASS "$T/st.rec" "$T/st.err" && fail "a static program wrote plaintext past the console shield"
    expect_rc 0 "$SCPCTL" logs con out "$T/st.rec"
    grep -Eq "static-rc=(0|159)" "$T/last.out" || fail "the static program's fate is unexpected: $(cat "$T/last.out")"
    echo "ok: a static program gets nothing past the console shield ($(cat "$T/last.out"))"
    # the same program as the attested one: refused before CAS is asked (no shield would start
    # in it: it saw placeholders for its arguments, and its output went to the host in
    # plaintext through the sealed console's relay: busybox's "(scp): applet not found")
    expect_err 1 "is statically linked" "${RUN[@]}" --service out -- "$H" /nonexistent
    grep -aq "/nonexistent\|SCPBYPASS" "$T/last.out" "$T/last.err" && fail "the static program ran: $(cat "$T/last.err")"
    echo "ok: a static program as the attested program is refused"
fi

# forks while another thread is inside a sealed write: each child writes and exits (a lock
# held by the other thread at the fork must not stay locked in the child)
if command -v python3 >/dev/null; then
    cat >"$T/fk.py" <<'PY'
import os, threading
stop = False
def spin():
    while not stop:
        os.write(1, b"t" * 60000)
threading.Thread(target=spin, daemon=True).start()
for i in range(200):
    pid = os.fork()
    if pid == 0:
        os.write(1, b"child\n")
        os._exit(0)
    os.waitpid(pid, 0)
stop = True
os.write(2, b"forks-done\n")
PY
    timeout 120 "${RUN[@]}" --service out -- "$T/bin/sh" "python3 -c \"$(sed 's/"/\\"/g' "$T/fk.py")\"" 2>"$T/fk.err" |
        cat >"$T/fk.rec" || fail "forks under a writing thread hung or failed"
    expect_rc 0 "$SCPCTL" logs con out "$T/fk.err"
    grep -q forks-done "$T/last.out" || fail "the fork loop did not finish"
    echo "ok: forks while another thread writes"

    # the same, each fork racing a new thread's first write: that write's seal sets up the
    # thread's cipher context inside OpenSSL (its algorithm store's locks), and the child's
    # first write draws a stream id (RAND_bytes: the same store). A fork in the middle left the
    # child waiting for a lock held by a thread it does not have (6 of 6 runs hung before the
    # console took its stream locks in a fork handler); a fork handler registered in the wrong
    # order deadlocked the parent instead (console.c and init.c, "Fork")
    cat >"$T/fk2.py" <<'PY'
import os, threading, time
def first_write():
    os.write(1, b"w" * 100000)
for i in range(300):
    t = threading.Thread(target=first_write)
    t.start()
    time.sleep(0)
    pid = os.fork()
    if pid == 0:
        os.write(1, b"child\n")
        os._exit(0)
    os.waitpid(pid, 0)
    t.join()
os.write(2, b"forks2-done\n")
PY
    timeout 120 "${RUN[@]}" --service out -- "$T/bin/sh" "python3 -c \"$(sed 's/"/\\"/g' "$T/fk2.py")\"" 2>"$T/fk2.err" |
        cat >"$T/fk2.rec"
    rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] && fail "forks racing new threads' first writes hung (killed after 120 s)"
    [ "$rc" = 0 ] || fail "forks racing new threads' first writes: the run exited $rc"
    expect_rc 0 "$SCPCTL" logs con out "$T/fk2.err"
    grep -q forks2-done "$T/last.out" || fail "the second fork loop did not finish"
    echo "ok: forks racing new threads' first writes"
fi

# large writes (split into records), writev, and a non-blocking stdout into a pipe that the
# host drains slowly: EAGAIN comes back as from a plain pipe, and nothing is lost or doubled
if command -v python3 >/dev/null; then
    cat >"$T/nb.py" <<'PY'
import os, fcntl, select
os.write(1, b"A" * 200000 + b"\n")
os.writev(1, [b"a" * 70000, b"", b"b" * 10, b"c" * 5, b"\n"])
fcntl.fcntl(1, fcntl.F_SETFL, fcntl.fcntl(1, fcntl.F_GETFL) | os.O_NONBLOCK)
data, eagain = b"".join(b"%07d\n" % i for i in range(400000)), 0
while data:
    try:
        data = data[os.write(1, data[:5000]):]
    except BlockingIOError:
        eagain += 1
        select.select([], [1], [], 0.01)
os.write(2, b"eagain %d\n" % eagain)
PY
    "${RUN[@]}" --service out -- "$T/bin/sh" "python3 -c \"$(sed 's/"/\\"/g' "$T/nb.py")\"" 2>"$T/nb.err" |
        { sleep 1; cat; } >"$T/nb.rec" || fail "the non-blocking writer failed"
    python3 "$T/nb.py" 2>/dev/null | cat >"$T/nb.want"
    expect_rc 0 "$SCPCTL" logs con out "$T/nb.rec"
    cmp -s "$T/last.out" "$T/nb.want" || fail "non-blocking output differs: $(wc -c <"$T/last.out") vs $(wc -c <"$T/nb.want") bytes"
    expect_rc 0 "$SCPCTL" logs con out "$T/nb.err"
    grep -q "eagain [1-9]" "$T/last.out" || echo "note: the slow reader never made the writer see EAGAIN ($(cat "$T/last.out"))"
    echo "ok: large, vectored and non-blocking writes are complete"
fi

# stdin: sealed by attach, read by the program; plain bytes refused
printf 'line-1\nMARKER-in\n' >"$T/in.txt"
expect_rc 0 "$SCPCTL" attach con in "$T/in.txt"
mv "$T/last.out" "$T/in.rec"
grep -q MARKER "$T/in.rec" && fail "attach wrote plaintext"
"${RUN[@]}" --service in -- "$T/bin/sh" 'cat' <"$T/in.rec" >"$T/got.out" 2>"$T/got.err" || fail "cat of sealed stdin failed: $(cat "$T/got.err")"
cmp -s "$T/got.out" "$T/in.txt" || fail "sealed stdin did not reach the program: $(cat "$T/got.out")"
"${RUN[@]}" --service in -- "$T/bin/sh" 'cat' <"$T/in.txt" >"$T/got.out" 2>"$T/got.err" && fail "plain stdin was accepted"
[ -s "$T/got.out" ] && fail "the program read plain stdin: $(cat "$T/got.out")"
grep -q "Input/output error" "$T/got.err" || fail "plain stdin: no I/O error: $(cat "$T/got.err")"
# a sealed stdin stream of another service is refused
expect_rc 0 "$SCPCTL" attach con out "$T/in.txt"
"${RUN[@]}" --service in -- "$T/bin/sh" 'cat' <"$T/last.out" >"$T/got.out" 2>"$T/got.err" && fail "another service's stdin was accepted"
[ -s "$T/got.out" ] && fail "the program read another service's stdin"
# a sealed stdin with a record dropped is refused (the bytes before the gap may have been read)
frames "$T/in.rec" "$T/t.rec" truncate
"${RUN[@]}" --service in -- "$T/bin/sh" 'cat' <"$T/t.rec" >"$T/got.out" 2>"$T/got.err" && fail "truncated stdin was accepted"
echo "ok: sealed stdin read, plain and foreign stdin refused"

# redis-server's own log on stdout (--logfile ""), sealed; redis-cli talks to it meanwhile
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    cp "$(command -v redis-server)" "$T/bin/redis-server"
    expect_rc 0 "$SCPCTL" platform measure -- "$T/bin/redis-server"
    MR=$(cat "$T/last.out")
    PORT=$(freeport)
    cat >"$T/r.yaml" <<YAML
name: conr
services:
  - name: redis
    measurements: [$MR]
    command: [redis-server, --port, "$PORT", --bind, 127.0.0.1, --save, "", --appendonly, "no", --logfile, ""]
    console: {stdout: sealed, stderr: sealed}
YAML
    expect_rc 0 "$SCPCTL" session create "$T/r.yaml"
    "$SCPCTL" run --session conr --service redis --platform-key "$T/p1.key" --volume-dir "$T/vols" -- "$T/bin/redis-server" \
        >"$T/redis.rec" 2>"$T/redis.err" &
    RPID=$!
    for _ in $(seq 1 100); do
        [ "$(redis-cli -p "$PORT" ping 2>/dev/null)" = PONG ] && break
        kill -0 $RPID 2>/dev/null || fail "redis under the console shield exited: $(tr -cd '[:print:]\n' <"$T/redis.err" | tail -3)"
        sleep 0.1
    done
    [ "$(redis-cli -p "$PORT" set k MARKER-value)" = OK ] || fail "redis does not answer"
    kill -TERM $RPID
    wait $RPID || fail "redis did not exit 0 after SIGTERM"
    grep -aq "Ready to accept" "$T/redis.rec" && fail "redis's log is in plaintext on the host"
    expect_rc 0 "$SCPCTL" logs conr redis "$T/redis.rec"
    grep -q "Ready to accept connections" "$T/last.out" || fail "redis's log did not come back: $(head -5 "$T/last.out")"
    grep -q "ready to exit, bye bye" "$T/last.out" || fail "redis's shutdown log did not come back: $(tail -3 "$T/last.out")"
    echo "ok: redis-server's log sealed and read back"
fi

# the shield's own log lines (here the network shield refusing a connection) leave sealed too:
# the host reads no plaintext line, the owner reads it with scpctl logs
if command -v python3 >/dev/null; then
    NP=$(freeport)
    "${RUN[@]}" --service netlog -- "$T/bin/sh" "python3 -c 'import socket
try: socket.create_connection((\"127.0.0.1\", $NP))
except OSError as e: print(\"MARKER-refused\", e.errno)'" >"$T/nl.rec" 2>"$T/nl.err" || fail "netlog run failed"
    grep -aq "not a peer" "$T/nl.err" "$T/nl.rec" && fail "the shield's log line reached the host in plaintext"
    expect_rc 0 "$SCPCTL" logs con netlog "$T/nl.rec"
    grep -q "^MARKER-refused" "$T/last.out" || fail "the program's output did not come back: $(cat "$T/last.out")"
    expect_rc 0 "$SCPCTL" logs con netlog "$T/nl.err"
    grep -q "network: connection to 127.0.0.1:$NP refused: not a peer of the policy" "$T/last.out" ||
        fail "the shield's log line is not in the sealed stderr: $(cat "$T/last.out")"
    echo "ok: the shield's own log lines are sealed with stderr"
fi

# a service without a console section prints as before
expect_rc 0 "${RUN[@]}" --service plain -- "$T/bin/sh" 'echo MARKER-plain'
grep -qx MARKER-plain "$T/last.out" || fail "a plain service lost its output"
echo "cas_console: all checks passed"
