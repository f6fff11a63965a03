#!/bin/bash
# Hard links on a protected volume with real programs: ln, python3's os.link and linkat
# (AT_EMPTY_PATH, /proc/self/fd/N with AT_SYMLINK_FOLLOW), cp -al, tar (an archive of linked
# files restored as links), git clone --local (which hard-links the object files), rename
# between two names of one file (a no-op), EXDEV to outside the volume, EPERM for a directory,
# and busybox-static's ln (the static supervisor) when it is installed.
# Checked from outside with `scpctl volume cat` (every name shows the bytes written through
# another), across a second run (the links survive a restart), and the backing store holds no
# plaintext; removing the last name frees the file's objects.
# usage: hardlinks.sh SCPCTL MKVOL
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 not installed"; exit 77; }
export SCP_QUIET=1
cat_vol() { "$SCPCTL" volume cat --key-file "$KEY" "$VOL" "$1"; }
G="git -c user.name=scp -c user.email=scp@example.invalid -c init.defaultBranch=main"

note "first run: make links with ln, python, cp -al, tar, git clone --local"
run bash -c '
set -eu
cd "$1"
links() { stat -c %h "$1"; }
ino() { stat -c %i "$1"; }
echo SCPLINK_one > a
ln a b
[ "$(links a)" = 2 ] && [ "$(links b)" = 2 ] || { echo "nlink after ln: $(links a) $(links b)"; exit 1; }
[ "$(ino a)" = "$(ino b)" ] || { echo "two inode numbers"; exit 1; }
echo SCPLINK_two >> b
grep -q SCPLINK_two a || { echo "a does not show what was written through b"; exit 1; }
mkdir d
python3 - <<"PY"
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, AT_SYMLINK_FOLLOW, AT_EMPTY_PATH = -100, 0x400, 0x1000
os.link("a", "d/c")
assert os.stat("a").st_nlink == 3, os.stat("a").st_nlink
fd = os.open("d/c", os.O_RDWR | os.O_APPEND)
os.write(fd, b"SCPLINK_three\n")
os.fsync(fd)
assert open("b", "rb").read().endswith(b"SCPLINK_three\n")
# linkat of the open descriptor, and of its /proc/self/fd link
if libc.linkat(fd, b"", AT_FDCWD, b"e", AT_EMPTY_PATH) != 0:
    raise OSError(ctypes.get_errno(), "linkat AT_EMPTY_PATH")
if libc.linkat(AT_FDCWD, b"/proc/self/fd/%d" % fd, AT_FDCWD, b"f", AT_SYMLINK_FOLLOW) != 0:
    raise OSError(ctypes.get_errno(), "linkat /proc/self/fd")
assert os.fstat(fd).st_nlink == 5, os.fstat(fd).st_nlink
# rename between two names of one file: nothing happens (POSIX)
os.rename("a", "e")
assert os.path.exists("a") and os.stat("e").st_nlink == 5
# outside the volume: EXDEV; a directory: EPERM
for src, dst, want in (("a", "/tmp/scp-hardlink-out", errno.EXDEV), ("d", "d2", errno.EPERM)):
    try:
        os.link(src, dst)
        raise SystemExit("link %s -> %s succeeded" % (src, dst))
    except OSError as e:
        assert e.errno == want, (src, e)
os.close(fd)
PY
mkdir t && echo SCPLINK_tree > t/x && ln t/x t/y
cp -al t t2
[ "$(links t/x)" = 4 ] || { echo "cp -al: nlink of t/x is $(links t/x)"; exit 1; }
tar cf arch.tar t
mkdir u && tar xf arch.tar -C u
[ "$(links u/t/x)" = 2 ] && [ "$(ino u/t/x)" = "$(ino u/t/y)" ] ||
    { echo "tar did not restore the link: $(links u/t/x) $(ino u/t/x) $(ino u/t/y)"; exit 1; }
mkdir r && cd r && '"$G"' init -q && echo SCPLINK_git > g.txt && '"$G"' add g.txt && '"$G"' commit -qm one
cd .. && '"$G"' clone -q --local r r2
obj=$(cd r2/.git/objects && find . -type f -path "./??/*" | head -1)
[ -n "$obj" ] && [ "$(links "r2/.git/objects/$obj")" = 2 ] || { echo "git clone --local made no links ($obj)"; exit 1; }
[ "$(cat r2/g.txt)" = SCPLINK_git ] && '"$G"' -C r2 fsck --strict >/dev/null
' sh "$MNT" || fail "the first run failed"

want=$(printf 'SCPLINK_one\nSCPLINK_two\nSCPLINK_three\n')
for n in a b d/c e f; do
    [ "$(cat_vol "$n")" = "$want" ] || fail "volume cat $n: '$(cat_vol "$n")'"
done
[ "$(cat_vol t2/y)" = SCPLINK_tree ] && [ "$(cat_vol u/t/y)" = SCPLINK_tree ] || fail "cp -al or tar copies"
nobj=$(find "$VOL/objects" -type f | wc -l)

note "second run (a restart): the links are there; write through one, remove names"
run bash -c '
set -eu
cd "$1"
[ "$(stat -c %h a)" = 5 ] || { echo "nlink after the restart: $(stat -c %h a)"; exit 1; }
echo SCPLINK_four >> f
grep -q SCPLINK_four b || { echo "b does not show the write through f"; exit 1; }
python3 -c "import os; os.rename(\"t2/x\", \"t2/y\")"   # two names of one file: nothing happens
[ -e t2/x ] && [ "$(stat -c %h t2/y)" = 4 ] || { echo "rename between links changed something"; exit 1; }
rm a b d/c e
[ "$(stat -c %h f)" = 1 ] || { echo "nlink after rm: $(stat -c %h f)"; exit 1; }
' sh "$MNT" || fail "the second run failed"
[ "$(cat_vol f)" = "$want
SCPLINK_four" ] || fail "volume cat f after the second run: '$(cat_vol f)'"
[ "$(find "$VOL/objects" -type f | wc -l)" = "$nobj" ] || fail "objects went while a name was left"

names=f
if [ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
    note "a static program (busybox, served by the supervisor): ln and stat"
    run /bin/busybox sh -c 'cd "$1" && ln f fs && [ "$(stat -c %h fs)" = 2 ]' sh "$MNT" ||
        fail "busybox ln on the volume failed"
    [ "$(cat_vol fs)" = "$(cat_vol f)" ] || fail "volume cat fs after busybox ln: '$(cat_vol fs)'"
    names="f fs"
fi

note "third run: the last name goes, and so do its objects"
run sh -c 'cd "$1" && shift && rm "$@"' sh "$MNT" $names || fail "rm of the last names failed"
left=$(find "$VOL/objects" -type f | wc -l)
[ "$left" -lt "$nobj" ] || fail "the objects of a file without names are still there ($left of $nobj)"
check_no_plaintext SCPLINK
echo PASS
