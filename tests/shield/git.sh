#!/bin/sh
# git on a protected volume, in a subdirectory of the mount: init, add, commit, gc, fsck, log
# and a clone from a plain repository. git creates its object and lock files with mkstemp
# (glibc opens them by an internal call no interposed symbol sees) and runs its helpers by
# exec from inside the volume (the working directory must survive the exec).
# Checked from outside with `scpctl volume cat`, and the backing store holds no plaintext.
# usage: git.sh SCPCTL MKVOL
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
command -v git >/dev/null 2>&1 || { echo "SKIP: git not installed"; exit 77; }
G="git -c user.name=scp -c user.email=scp@example.invalid -c init.defaultBranch=main"
mkdir "$T/plain" && (cd "$T/plain" && $G init -q && echo SCPGITPLAIN_marker >p.txt && $G add p.txt &&
                     $G commit -qm plain) || fail "cannot make the plain repository"
run sh -c '
set -e
cd "$1" && mkdir r && cd r
[ "$(/bin/pwd)" = "$1/r" ] || { echo "cwd lost across exec: $(/bin/pwd)"; exit 1; }
'"$G"' init -q
echo SCPGITWORK_marker_0123456789 > a.txt
mkdir sub && echo SCPGITSUB_marker > sub/b.txt
'"$G"' add a.txt sub/b.txt
'"$G"' commit -qm "first commit"
'"$G"' gc -q
'"$G"' fsck --full --strict
[ "$('"$G"' log --format=%s)" = "first commit" ]
[ "$('"$G"' show HEAD:a.txt)" = SCPGITWORK_marker_0123456789 ]
cd "$1" && '"$G"' clone -q "$2" clone && [ "$(cat clone/p.txt)" = SCPGITPLAIN_marker ]
' sh "$MNT" "$T/plain" || fail "git on the protected volume failed"
cat_vol() { "$SCPCTL" volume cat --key-file "$KEY" "$VOL" "$1"; }
[ "$(cat_vol r/.git/HEAD)" = "ref: refs/heads/main" ] || fail "r/.git/HEAD in the volume: '$(cat_vol r/.git/HEAD)'"
[ "$(cat_vol r/a.txt)" = SCPGITWORK_marker_0123456789 ] || fail "r/a.txt not in the volume"
"$SCPCTL" volume ls --key-file "$KEY" "$VOL" r/.git/objects/pack | grep -q '\.pack$' ||
    fail "no pack in r/.git/objects/pack after gc"
[ "$(cat_vol clone/p.txt)" = SCPGITPLAIN_marker ] || fail "the clone's checkout is not in the volume"
check_no_plaintext SCPGITWORK
check_no_plaintext SCPGITPLAIN
echo PASS
