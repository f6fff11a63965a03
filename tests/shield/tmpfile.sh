#!/bin/bash
# O_TMPFILE on a protected volume (docs/shield.md): a nameless protected file that reads,
# writes, fstats (nlink 0), fsyncs and maps like any other; linkat (AT_EMPTY_PATH, and
# /proc/self/fd/N with AT_SYMLINK_FOLLOW) gives it a name with the bytes written (EEXIST over a
# name, ENOENT with O_EXCL, as the kernel); closed or killed without a name it leaves no name
# in the volume. Python's tempfile.TemporaryFile (which opens with O_TMPFILE) on the volume.
# Checked from outside with `scpctl volume cat`/`ls`, and the backing store holds no plaintext.
# usage: tmpfile.sh SCPCTL MKVOL TMPFILE-PROGRAM
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
PROG=$3
export SCP_QUIET=1
cat_vol() { "$SCPCTL" volume cat --key-file "$KEY" "$VOL" "$1"; }
ls_vol() { "$SCPCTL" volume ls --key-file "$KEY" "$VOL" "$@"; }

note "a C program: O_TMPFILE, linkat both ways, O_EXCL, a file closed without a name"
run sh -c 'mkdir "$1/d" && exec "$2" "$1/d"' sh "$MNT" "$PROG" || fail "the O_TMPFILE program failed"
[ "$(cat_vol d/a)" = SCPTMP_a ] || fail "volume cat d/a: '$(cat_vol d/a)'"
[ "$(cat_vol d/b)" = SCPTMP_b ] || fail "volume cat d/b: '$(cat_vol d/b)'"
[ "$(ls_vol d | sort | tr '\n' ' ')" = "a b " ] || fail "volume ls d: '$(ls_vol d | tr '\n' ' ')'"
nobj=$(find "$VOL/objects" -type f | wc -l)

note "python3 tempfile.TemporaryFile on the volume"
if command -v python3 >/dev/null 2>&1; then
    run python3 - "$MNT/d" <<'PY' || fail "python3 TemporaryFile on the volume failed"
import os, sys, tempfile
with tempfile.TemporaryFile(dir=sys.argv[1]) as f:
    f.write(b"SCPTMP_python\n" * 1000)
    f.flush()
    os.fsync(f.fileno())
    f.seek(0)
    assert f.read() == b"SCPTMP_python\n" * 1000
    assert os.fstat(f.fileno()).st_nlink == 0, os.fstat(f.fileno()).st_nlink
    assert sorted(os.listdir(sys.argv[1])) == ["a", "b"], os.listdir(sys.argv[1])
PY
    [ "$(ls_vol d | sort | tr '\n' ' ')" = "a b " ] || fail "python's temporary file left a name"
fi

note "killed with a nameless file open: no name in the volume"
run "$PROG" "$MNT/d" crash && fail "the crash run was not killed"
[ "$(ls_vol d | sort | tr '\n' ' ')" = "a b " ] || fail "a killed nameless file left a name: '$(ls_vol d | tr '\n' ' ')'"
"$SCPCTL" volume verify --key-file "$KEY" "$VOL" >/dev/null || fail "volume verify after the crash"
[ "$(find "$VOL/objects" -type f | wc -l)" -gt "$nobj" ] || fail "the killed nameless file left no objects (test broken?)"
note "the objects left by the kill go at the garbage collection after the next removal"
run python3 -c 'import sys, tempfile; tempfile.TemporaryFile(dir=sys.argv[1]).write(b"SCPTMP_x")' "$MNT/d" ||
    fail "a run after the crash failed"
run ls "$MNT/d" >/dev/null || fail "ls after the crash failed"
[ "$(find "$VOL/objects" -type f | wc -l)" = "$nobj" ] ||
    fail "objects of nameless files were not collected: $(find "$VOL/objects" -type f | wc -l), want $nobj"
[ "$(cat_vol d/a)" = SCPTMP_a ] && [ "$(cat_vol d/b)" = SCPTMP_b ] || fail "the named files changed"
check_no_plaintext SCPTMP
echo PASS
