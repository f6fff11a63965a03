#!/bin/sh
# fchdir out of a volume (tests/shield/fchdir.sh): with the working directory in a protected
# volume, a program that fchdirs to an ordinary directory must then create, stat and list
# relative names there, not in the volume. rsync's receiver does exactly that (it opens the
# destination O_PATH and fchdirs to it): until session 55 `rsync -a VOLUME/dir/ OUTSIDE/` run
# from inside the volume wrote the files into the volume's root, copied nothing out and exited
# 0. Checked with rsync (both ways, with and without --checksum), with python's os.fchdir out
# and back in, with a raw fchdir system call out (python's ctypes), and on a plain directory first.
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
export SCP_QUIET=1
command -v rsync >/dev/null || { echo "rsync not installed: skipped"; exit 77; }
SRC=/usr/share/doc/coreutils
want=$(ls "$SRC" | wc -l)
[ "$want" -gt 3 ] || { echo "$SRC too small: skipped"; exit 77; }
mkdir -p "$T/out"
out=$(run sh -c "cd '$MNT' && rsync -a '$SRC/' '$MNT/docs/' && rsync -a '$MNT/docs/' '$T/out/a/' &&
    rsync -a --checksum docs/ '$T/out/b/' && echo rsync-done" 2>&1) || fail "rsync: $out"
echo "$out"
for d in a b; do
    diff -r "$SRC" "$T/out/$d" >/dev/null || fail "rsync out of the volume ($d) did not copy $SRC: $(ls "$T/out/$d" | wc -l) of $want files"
done
strays=$(run ls "$MNT") || fail "ls of the volume"
[ "$strays" = docs ] || fail "the volume's root holds more than docs: $(echo $strays)"
# python: fchdir out, create a relative name, fchdir back into the volume, create one there
out=$(run python3 -c "
import os
os.chdir('$MNT')
out = os.open('$T/out', os.O_RDONLY | os.O_DIRECTORY)
vol = os.open('$MNT/docs', os.O_RDONLY | os.O_DIRECTORY)
os.fchdir(out)
open('rel.txt', 'w').write('SCPMARK_outside\n')
print('cwd', os.getcwd(), sorted(os.listdir('.'))[:3])
os.fchdir(vol)
open('rel.txt', 'w').write('SCPMARK_inside\n')
print('cwd', os.getcwd())
" 2>&1) || fail "python: $out"
echo "$out"
echo "$out" | grep -qx "cwd $T/out \['a', 'b', 'rel.txt'\]" || fail "after fchdir out: wrong cwd or listing"
echo "$out" | grep -qx "cwd $MNT/docs" || fail "after fchdir back in: wrong cwd"
[ "$(cat "$T/out/rel.txt")" = SCPMARK_outside ] || fail "the relative name after fchdir out is not outside"
got=$("$SCPCTL" volume cat "$VOL" docs/rel.txt --key-file "$KEY") || fail "volume cat docs/rel.txt"
[ "$got" = SCPMARK_inside ] || fail "the relative name after fchdir back in is not in the volume"
# a raw fchdir system call (libc's syscall(); glibc's nftw with FTW_CHDIR makes one inside libc)
# out of the volume: trapped by the code rule, so the relative name lands outside too
out=$(run python3 -c "
import os, ctypes
os.chdir('$MNT/docs')
out = os.open('$T/out', os.O_RDONLY | os.O_DIRECTORY)
libc = ctypes.CDLL(None, use_errno=True)
if libc.syscall(81, out) != 0: raise SystemExit('raw fchdir failed: errno %d' % ctypes.get_errno())
open('raw.txt', 'w').write('SCPMARK_raw\\n')
print('cwd', os.getcwd())
" 2>&1) || fail "python, raw fchdir: $out"
echo "$out"
echo "$out" | grep -qx "cwd $T/out" || fail "after a raw fchdir out: wrong cwd"
[ "$(cat "$T/out/raw.txt" 2>/dev/null)" = SCPMARK_raw ] || fail "the relative name after a raw fchdir out is not outside"
"$SCPCTL" volume cat "$VOL" docs/raw.txt --key-file "$KEY" >/dev/null 2>&1 && fail "the relative name after a raw fchdir out went into the volume"
check_no_plaintext SCPMARK_inside
echo PASS
