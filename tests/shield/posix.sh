#!/bin/bash
# POSIX file semantics inside a protected volume (issue 12, the pjdfstest families): each case
# runs real programs (coreutils, python3) under scpctl run and compares what they see with what
# the kernel gives on a plain directory in the same test. Cases: FIFO and device nodes
# (mkfifo, mknod, stat, chmod, chown, mv, rm), ENOTDIR for a path below a file, symbolic
# links (ln -s, readlink, following, O_NOFOLLOW, loops, dangling links, chown -h, mv, rm),
# EEXIST for O_CREAT|O_EXCL on a directory, a path near PATH_MAX relative to the cwd, sticky
# directories (EPERM for a name neither the caller nor the directory's owner owns).
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { echo "needs root (mknod of devices): skipped"; exit 77; }
command -v python3 >/dev/null || { echo "python3 not installed: skipped"; exit 77; }
setup "$@"
PLAIN=$T/plain
mkdir -p "$PLAIN"
# same SCRIPT in the plain directory and in the volume; the outputs must be equal
same() {
    what=$1 script=$2
    want=$(cd "$PLAIN" && sh -c "$script" 2>&1)
    got=$(run sh -c "cd $MNT && $script" 2>&1 | grep -v 'development mode')
    [ "$got" = "$want" ] || fail "$what: protected volume gave
$got
where a plain directory gives
$want"
    note "$what: ok"
}
PY='import os, sys, errno
def e(f, *a):
    try:
        f(*a); return "ok"
    except OSError as x:
        return errno.errorcode[x.errno]'

same "mkfifo and mknod make nodes that stat reports" \
    'umask 022; mkfifo -m 0640 fifo && mknod cdev c 1 2 && mknod bdev b 7 9 &&
     stat -c "%n %F %a %t:%T %u:%g" fifo cdev bdev'
same "nodes: chmod, chown, rename, listing, unlink" \
    'chmod 0604 fifo && chown 65534:65533 cdev && mv bdev bdev2 && ls -l --time-style=+ . | awk "{print \$1, \$3, \$4, \$NF}" &&
     stat -c "%n %F %a %u:%g" fifo cdev bdev2 && rm fifo cdev bdev2 && ls'
same "a FIFO without writers: a non-blocking read open reads end of file, a write open ENXIO" \
    'mkfifo f && python3 -c "$0
fd = os.open(\"f\", os.O_RDONLY | os.O_NONBLOCK); print(\"read\", os.read(fd, 10)); os.close(fd)
print(\"write\", e(os.open, \"f\", os.O_WRONLY | os.O_NONBLOCK))
print(\"truncate\", e(os.truncate, \"f\", 0))" && rm f' "$PY"
same "mknod of a directory type EPERM, of an existing name EEXIST, as nobody a device EPERM" \
    'touch x && mkdir -m 0777 w && python3 -c "$0
import stat
print(e(os.mknod, \"d\", stat.S_IFDIR | 0o755), e(os.mknod, \"x\", stat.S_IFIFO | 0o644))
os.setgid(65534); os.setuid(65534)
print(e(os.mknod, \"w/c\", stat.S_IFCHR | 0o644, os.makedev(1, 3)), e(os.mkfifo, \"w/f\"))" && ls w && rm -r x w' "$PY"
same "a path below a regular file: ENOTDIR" \
    'touch file && python3 -c "$0
print([e(f, \"file/x\") for f in (os.stat, os.unlink, os.rmdir, os.mkdir, os.listdir)])
print(e(os.chmod, \"file/x/y\", 0o644), e(os.rename, \"file/x\", \"y\"), e(os.rename, \"file\", \"file/y\"))" && rm file' "$PY"
same "symbolic links: ln -s, readlink, stat, following through files and directories" \
    'umask 022; mkdir d && echo inside > d/f && ln -s d ld && ln -s f d/lf && ln -s ld/lf chain &&
     readlink ld chain && stat -c "%n %F %s %a" ld chain && stat -L -c "%n %F %a" ld chain &&
     cat ld/f chain && ls ld && (cd ld && cat lf && ls) && find . | sort'
same "symbolic links: a dangling link creates its target, loops and O_NOFOLLOW give ELOOP" \
    'ln -s new dangling && echo created > dangling && cat new && ln -s loop1 loop2 && ln -s loop2 loop1 &&
     python3 -c "$0
print(e(os.stat, \"loop1\"), e(os.open, \"chain\", os.O_RDONLY | os.O_NOFOLLOW), e(os.open, \"loop1/x\", os.O_RDONLY))
print(e(os.symlink, \"x\", \"chain\"), e(os.readlink, \"d\"), e(os.rmdir, \"ld\"), e(os.open, \"d\", os.O_CREAT | os.O_EXCL))"' "$PY"
same "symbolic links: chown -h, mv and rm act on the link, not the target" \
    'chown -h 65534:65533 ld && chown 65532:65531 chain && mv ld ld2 && stat -c "%n %u:%g" ld2 d d/f &&
     cat ld2/f && rm ld2 chain dangling loop1 loop2 && find . | sort'
same "a path of 4,095 bytes relative to the working directory (the kernel walks it from the cwd)" \
    'python3 -c "$0
parts = [\"a\" * 250] * 16 + [\"b\" * 79]
p = \"/\".join(parts)
for i in range(1, 17): os.mkdir(\"/\".join(parts[:i]))
fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644); os.write(fd, b\"x\"); os.close(fd)
os.truncate(p, 5); print(len(p), os.stat(p).st_size, e(os.unlink, p))" && rm -r aaaa*' "$PY"
same "a sticky directory: only root and the owners of the directory or the name remove or replace it" \
    'mkdir -m 1777 s && touch s/other s/mine s/gone && chown 1000:1000 s/other && chown 65534:65534 s/mine s/gone &&
     python3 -c "$0
os.setgid(65534); os.setuid(65534)
print(e(os.unlink, \"s/other\"), e(os.rename, \"s/other\", \"s/x\"), e(os.rename, \"s/mine\", \"s/other\"))
print(e(os.rename, \"s/mine\", \"s/mine2\"), e(os.unlink, \"s/gone\"))" && ls s && rm -r s' "$PY"
check_no_plaintext "inside"
echo "PASS"
