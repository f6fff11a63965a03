#!/bin/sh
# Several real git processes on one repository at once: three workers clone a bare hub, and
# each commits and pushes to the hub's one branch, pulling with --rebase and pushing again
# when another's push came first (git's ref locks and compare-and-swap of refs: lock files
# made with O_EXCL, renamed over the ref), while a fourth process runs `git gc` on the hub in
# a loop (repack, pack-refs, reflog expiry: packs written and renamed into place, loose
# objects and refs removed). At the end the hub has every worker's commits exactly once and
# `git fsck --full --strict` is clean: on a plain directory first, then on a protected volume
# under the shield, where git's processes share the volume in shared mode.
# (`gc --prune=now` is left out: beside a push it may remove the push's new objects on a
# plain directory too; git's own documentation warns of it.)
# usage: git_concurrent.sh SCPCTL MKVOL [COMMITS]
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
command -v git >/dev/null 2>&1 || { echo "SKIP: git not installed"; exit 77; }
N=${3:-4}
export SCP_QUIET=1
cat > "$T/hub.sh" <<'SCRIPT'
set -e
N=$2
G="git -c user.name=scp -c user.email=scp@example.invalid -c init.defaultBranch=main"
cd "$1"
$G init -q --bare hub.git
$G clone -q hub.git seed 2>/dev/null
(cd seed && echo 0 >base && $G add base && $G commit -qm base && $G push -q origin main)
worker() {
    $G clone -q hub.git "w$1" && cd "w$1" || exit 1
    i=0
    while [ $i -lt "$N" ]; do
        i=$((i + 1))
        echo "SCPGITCONC_marker $1 $i" >"f$1"
        $G add "f$1" && $G commit -qm "w$1 $i" || exit 1
        t=0
        until $G push -q origin main 2>/dev/null; do
            t=$((t + 1))
            [ $t -lt 100 ] || { echo "worker $1: push $i rejected 100 times"; exit 1; }
            $G pull -q --rebase origin main || { echo "worker $1: pull --rebase failed"; exit 1; }
        done
    done
}
gcloop() {
    k=0
    # (and not past the test: killed at its timeout, it leaves this loop behind, whose hub.git
    # is then gone)
    while [ ! -e stop ] && [ -d hub.git ]; do $G -C hub.git gc -q 2>&1 | grep -v 'ignoring extra bitmap' || true; k=$((k + 1)); done
    echo "gc ran $k times"
}
gcloop & g=$!
worker 1 & a=$!
worker 2 & b=$!
worker 3 & c=$!
ok=0
wait $a || ok=1; wait $b || ok=1; wait $c || ok=1
touch stop; wait $g
[ $ok = 0 ] || { echo "a worker failed"; exit 1; }
$G -C hub.git fsck --full --strict 2>&1 | grep -v '^dangling' || true
$G -C hub.git fsck --full --strict --no-dangling >/dev/null 2>&1 || { echo "fsck failed"; exit 1; }
n=$($G -C hub.git rev-list --count main)
[ "$n" = $((3 * N + 1)) ] || { echo "main has $n commits, expected $((3 * N + 1))"; exit 1; }
for w in 1 2 3; do
    m=$($G -C hub.git log --format=%s main | grep -c "^w$w ")
    [ "$m" = "$N" ] || { echo "worker $w: $m commits on main, expected $N"; exit 1; }
    [ "$($G -C hub.git show "main:f$w")" = "SCPGITCONC_marker $w $N" ] ||
        { echo "f$w on main is not worker $w's last"; exit 1; }
done
echo "main has $n commits, each worker's $N once"
SCRIPT
mkdir "$T/plain"
sh "$T/hub.sh" "$T/plain" "$N" || fail "without the shield, on a plain directory"
run sh "$T/hub.sh" "$MNT" "$N" || fail "under the shield, on a protected volume (see above)"
"$SCPCTL" volume verify "$VOL" --key-file "$KEY" >/dev/null || fail "the volume does not verify"
"$SCPCTL" volume ls --key-file "$KEY" "$VOL" hub.git/objects/pack | grep -q '\.pack$' ||
    fail "no pack in hub.git/objects/pack"
check_no_plaintext SCPGITCONC_marker
echo PASS
