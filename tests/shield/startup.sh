#!/bin/bash
# tests/shield/startup.sh SCPCTL MKVOL - what the shield's start-up relies on (docs/shield.md,
# "Start-up"):
#  - the reserved descriptor range is full before main: the program gets no number in it,
#    neither by asking for one (dup2, F_DUPFD with a minimum in the range) nor by using up
#    every lower number (but all the others to its limit); it is low (2048-3071: a fork
#    copies a short table), and a program's protected files work after it used up every
#    number; a script that ran `ulimit -n 8192` still starts shielded children;
#  - OpenSSL is loaded at the first use of a volume (an image that never touches one does not
#    map it), and a program that initialised OpenSSL itself still has its files committed at exit;
#  - a volume is opened at its first use, not at start (a program that never touches it does
#    not open it), with the same checks: a state older than the one the run had reached when
#    it started (a rollback on the host before the first use) is refused, not served;
#  - so is one below the state an exec'ing image reached: with volume format 3 that state is
#    the manifest log's (records the image appended, not folded into a slot), and the new
#    image refuses the log cut back to the state the run started at (a rollback, by the tag).
. "$(dirname "$0")/lib.sh"
setup "$@"
export SCP_QUIET=1
command -v python3 >/dev/null || { echo "SKIP: needs python3"; exit 77; }

note "the reserved range: no number in it for the program"
"$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" --trace="$T/trace0" -- true || fail "run true"
range=$(sed -n 's/.*reserved descriptors \([0-9]*\)-\([0-9]*\).*/\1 \2/p' "$T/trace0" | head -1)
[ -n "$range" ] || fail "the trace does not name the reserved range"
set -- $range
lo=$1 hi=$2
# The range is low (docs/shield.md "Reserved descriptors"): the descriptor table that every
# fork copies is as long as the highest number open, and the range sat at the hard limit.
[ "$lo" = 2048 ] && [ "$hi" = 3071 ] || fail "the reserved range is $lo-$hi, not 2048-3071"
echo SCPMARK_fd > "$T/fdf"
run cp "$T/fdf" "$MNT/fdf" || fail "cp into the volume"
# A program keeps its soft limit (MODE keep: 1024, set below; the launcher raises it to the
# range's end, 3072, which the range fills) or raises it (MODE raise: past the range, as servers
# and Go do), then uses up every number: it never gets one in the range (neither by asking for
# one: dup2, F_DUPFD with a minimum in it) but all the others up to its limit, and a protected
# file it opened before still works.
cat > "$T/exhaust.py" <<'EOF'
import errno, fcntl, os, resource, sys
lo, hi, mode, mnt = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if mode == "raise":
    soft = min(hard, hi + 1 + 4096)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
pf = os.open(mnt + "/fdf", os.O_RDWR)
got = []
for n in (lo, (lo + hi) // 2, hi):
    try:
        got.append(os.dup2(0, n))
    except OSError:
        pass
    try:
        got.append(fcntl.fcntl(0, fcntl.F_DUPFD, n))
    except OSError:
        pass
fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as e:
    last = e.errno
inrange = [n for n in got + fds if lo <= n <= hi]
top = max(fds)
for fd in fds:
    os.close(fd)
os.lseek(pf, 0, 0)
os.write(pf, b"SCPMARK_after\n")
os.close(pf)
with open(mnt + "/fdf") as f:
    back = f.read().strip()
print("in range:", inrange, "highest:", "below" if top == lo - 1 else ("last" if top == soft - 1 else top),
      "last error:", errno.errorcode[last], "file:", back)
EOF
out=$(ulimit -Sn 1024 && run python3 "$T/exhaust.py" "$lo" "$hi" keep "$MNT") || fail "python3 under the shield (keep)"
echo "  kept its limit: $out"
case $out in "in range: [] highest: below last error: EMFILE file: SCPMARK_after") ;;
    *) fail "with the soft limit kept: $out" ;; esac
out=$(run python3 "$T/exhaust.py" "$lo" "$hi" raise "$MNT") || fail "python3 under the shield (raise)"
echo "  raised its limit: $out"
case $out in "in range: [] highest: last last error: EMFILE file: SCPMARK_after") ;;
    *) fail "with the soft limit raised: $out" ;; esac
# The same in an image exec'd by a shielded one, which keeps the range's placeholders and
# fills only the numbers the exec closed: the protected file the first image opened (python
# opens close-on-exec) leaves a hole at its slot, and a shell's child takes the rest as they are
out=$(ulimit -Sn 1024 && run python3 -c '
import os, sys
f = os.open(sys.argv[5] + "/fdf", os.O_RDONLY)
assert f >= int(sys.argv[2]), f  # a slot in the range
os.execv(sys.executable, [sys.executable] + sys.argv[1:])' "$T/exhaust.py" "$lo" "$hi" keep "$MNT") ||
    fail "python3 exec'd by a shielded python3"
echo "  exec'd after a close-on-exec slot: $out"
case $out in "in range: [] highest: below last error: EMFILE file: SCPMARK_after") ;;
    *) fail "in an exec'd image: $out" ;; esac
out=$(run sh -c "python3 '$T/exhaust.py' '$lo' '$hi' raise '$MNT'") || fail "python3 started by a shielded shell"
echo "  started by a shielded shell: $out"
case $out in "in range: [] highest: last last error: EMFILE file: SCPMARK_after") ;;
    *) fail "in an image a shell started: $out" ;; esac
# A protected descriptor the program made inheritable goes through two execs, not one (the
# second image's start made its slot close-on-exec again, and the third found EBADF)
cat > "$T/chain.py" <<'EOF'
import os, sys
stage, mnt = int(sys.argv[1]), sys.argv[2]
if stage == 0:
    with open(mnt + "/chain", "w") as f:
        f.write("SCPMARK_chain\n")
    fd = os.open(mnt + "/chain", os.O_RDONLY)
    os.set_inheritable(fd, True)
    sys.argv.append(str(fd))
if stage < 2:
    os.execv(sys.executable, [sys.executable, sys.argv[0], str(stage + 1), mnt, sys.argv[3]])
print(os.pread(int(sys.argv[3]), 100, 0).decode().strip())
EOF
out=$(run python3 "$T/chain.py" 0 "$MNT" 2>&1) || true
echo "  an inheritable protected descriptor after two execs reads: $out"
[ "$out" = SCPMARK_chain ] || fail "an inheritable protected descriptor after two execs: '$out'"
# a static image takes no shield and gets none of the slots' placeholders (the range's lower
# 1008 numbers; the top 16 are the shield's own, as before)
BB=$(command -v busybox || true)
if [ -n "$BB" ] && file -L "$BB" 2>/dev/null | grep -q 'statically linked'; then
    n=$(run sh -c "exec $BB ls /proc/self/fd" | awk -v lo="$lo" -v hi="$hi" '$1 >= lo && $1 <= hi - 16' | wc -l)
    echo "  slot numbers open in a static image: $n"
    [ "$n" = 0 ] || fail "a static image exec'd by a shielded shell holds $n slot numbers of the reserved range"
fi
# a script that sets its descriptor limits (soft and hard: bash's `ulimit -n`) to a usual
# value: its shielded children start (with the range below the hard limit, every one refused
# to run: "the descriptor limit is below the reserved range")
out=$(run bash -c "ulimit -n 8192 && echo SCPMARK_ulimit > '$MNT/u' && cat '$MNT/u'" 2>&1) || true
echo "  after ulimit -n 8192: $out"
[ "$out" = SCPMARK_ulimit ] || fail "a shielded script that ran ulimit -n 8192: '$out'"
# the highest number of a shielded program (the length of the table a fork copies)
top=$(run sh -c 'ls /proc/$$/fd | sort -n | tail -1')
echo "  highest descriptor of a shielded shell: $top"
[ "$top" -lt 3072 ] || fail "a shielded shell has descriptor $top open (a fork copies a table that long)"

note "a volume is opened at its first use"
echo SCPMARK_old > "$T/f"
run cp "$T/f" "$MNT/f" || fail "cp into the volume"
"$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" --trace="$T/trace1" -- true || fail "run true"
grep -q "volume at $MNT opened" "$T/trace1" && fail "true (which never touches the volume) opened it"
"$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" --trace="$T/trace2" -- sh -c "/bin/true; cat '$MNT/f'" > "$T/got" ||
    fail "cat after a start that did not open the volume"
grep -q SCPMARK_old "$T/got" || fail "cat did not read the file"
[ "$(grep -c "volume at $MNT opened" "$T/trace2")" = 1 ] || fail "the volume was not opened exactly once (by cat)"

note "OpenSSL is loaded at the first use of a volume, not at start"
# grep reads its own maps: an image that never touches a volume maps neither library
maps=$(run grep -c -e libcrypto -e libssl /proc/self/maps || true) # grep -c exits 1 on a count of 0
[ "$maps" = 0 ] || fail "an image that never touched the volume mapped OpenSSL ($maps mapping(s))"
# the shell reads a protected file, then counts its own mappings: libcrypto now, libssl not
# (the volume needs no TLS)
got=$(run sh -c "read x < '$MNT/f'; echo \$x; grep -c libcrypto /proc/\$\$/maps; grep -c libssl /proc/\$\$/maps" |
      tr '\n' ' ')
echo "  after the first read: $got"
case $got in "SCPMARK_old "[1-9]*" 0 ") ;; *) fail "after a read of the volume: '$got' (want the content, libcrypto mapped, libssl not)" ;; esac

# the first use through the trap path: a raw openat, served in the SIGSYS handler, which then
# loads libcrypto (dlopen inside the handler: the loader's own calls are not trapped)
"$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" --trace="$T/trace_raw" -- python3 -c "
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
fd = libc.syscall(257, -100, b'$MNT/f', os.O_RDONLY, 0)  # SYS_openat, AT_FDCWD
assert fd >= 0, ctypes.get_errno()
print(os.read(fd, 100).decode().strip())
" > "$T/got_raw" || fail "a raw openat as the first use of the volume failed"
grep -q SCPMARK_old "$T/got_raw" || fail "the raw openat read '$(cat "$T/got_raw")'"
grep -q "trap: libcrypto.so.3 loaded" "$T/trace_raw" || fail "libcrypto was not loaded in the SIGSYS handler: $(grep loaded "$T/trace_raw")"

note "a program that initialises OpenSSL itself before its first volume use still commits at exit"
# python's hashlib loads and initialises libcrypto (which registers its exit cleanup) before the
# shield's first use; the file is never closed, so the shield commits it at exit, which must
# come before that cleanup
run python3 -c "
import hashlib, os
hashlib.sha256(b'x').hexdigest()
fd = os.open('$MNT/late', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b'SCPMARK_late\n')
" || fail "python3 (hashlib, then an unclosed write to the volume) exited $?"
[ "$("$SCPCTL" volume cat --key-file "$KEY" "$VOL" late)" = SCPMARK_late ] || fail "the unclosed write was not committed"
check_no_plaintext SCPMARK_late

note "a rollback on the host between the start and the first use is refused"
cp -a "$VOL" "$T/old"                                   # the state with SCPMARK_old
echo SCPMARK_new > "$T/f"
run cp "$T/f" "$MNT/f" || fail "cp the new content"
# the run starts at the new state; the program waits, the host rolls the volume back in place
# (the launcher holds the directory itself open), then the program reads for the first time
"$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- \
    sh -c "while [ ! -e '$T/go' ]; do sleep 0.05; done; cat '$MNT/f'" > "$T/got2" 2> "$T/err2" &
pid=$!
sleep 0.3
find "$VOL" -mindepth 1 -delete
cp -a "$T/old/." "$VOL/"
touch "$T/go"
wait $pid
rc=$?
echo "  after the rollback: exit $rc, output '$(cat "$T/got2")', error '$(tr '\n' ' ' < "$T/err2")'"
grep -q SCPMARK_old "$T/got2" && fail "the rolled-back state was served"
[ $rc -ne 0 ] || fail "the read after the rollback reported success"

note "a rollback of the manifest log that an exec'ing image extended is refused in the new image"
# The shell creates a file itself (its redirection: this image opens the volume and appends
# records to manifest.log) and execs: the new image gets the tag of that log state (the
# launcher's is older). While it waits, the host cuts the log back to its header, which leaves
# an authentic older state (the slot the log continues, in which f is intact and g does not
# exist); then the first read, of f.
echo SCPMARK_start > "$T/f"
run cp "$T/f" "$MNT/f" || fail "cp the start content"
rm -f "$T/go" "$T/waiting"
"$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" --trace="$T/trace3" -- \
    sh -c "echo SCPMARK_exec > '$MNT/g' && exec sh -c \": > '$T/waiting'; while [ ! -e '$T/go' ]; do sleep 0.05; done; cat '$MNT/f'\"" \
    > "$T/got3" 2> "$T/err3" &
pid=$!
for _ in $(seq 600); do [ -e "$T/waiting" ] && break; sleep 0.05; done
[ -e "$T/waiting" ] || fail "the exec'd image did not start"
size=$(stat -c %s "$VOL/manifest.log")
echo "  manifest.log after the write and the exec: $size bytes"
[ "$size" -gt 48 ] || fail "the write left no record in the manifest log ($size bytes)"
truncate -s 48 "$VOL/manifest.log"
touch "$T/go"
wait $pid
rc=$?
echo "  after the log was cut back: exit $rc, output '$(cat "$T/got3")', error '$(tr '\n' ' ' < "$T/err3")'"
grep "cannot open the protected volume" "$T/trace3" | sed 's/^/  trace: /'
grep -q SCPMARK_start "$T/got3" && fail "the state before the exec'ing image's write was served"
[ $rc -ne 0 ] || fail "the read after the log was cut back reported success"
grep -q "cannot open the protected volume.*rolled back" "$T/trace3" ||
    fail "the new image did not refuse the volume as rolled back"
echo PASS
