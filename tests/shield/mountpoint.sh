#!/bin/bash
# A mount point needs no directory on the host: an ordinary user (setpriv to nobody) runs
# `scpctl run --volume V:/scp-mp-XXX/data`, where neither /scp-mp-XXX nor anything below it
# exists and the user could not create it. The program writes through the mount (read back
# with `scpctl volume cat`, ciphertext on disk), still sees the rest of / (the covered parent
# shows its entries again), keeps its working directory, cannot create a name in the covered
# directory (EROFS, not a file that vanishes), and nothing appears on the host.
. "$(dirname "$0")/lib.sh"
command -v setpriv >/dev/null || { echo "setpriv not installed: skipped"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "needs root (to become an ordinary user): skipped"; exit 77; }
SCPCTL=$1
MKVOL=$2
T=$(mktemp -d "${TMPDIR:-/tmp}/scp-shield-test.XXXXXX") || exit 1
TOP=/scp-mp-$$-$RANDOM
trap 'rm -rf "$T"' EXIT
chmod 755 "$T" && chown nobody: "$T"
NB="setpriv --reuid=65534 --regid=65534 --clear-groups"
VOL=$T/vol
KEY=$T/key
$NB "$MKVOL" "$KEY" "$VOL" || fail "cannot create a volume as nobody"
[ -e "$TOP" ] && fail "$TOP exists"
M=SCPMARK_mountpoint
out=$(cd "$T" && $NB "$SCPCTL" run --volume "$VOL:$TOP/data" --key-file "$KEY" -- sh -c "
    echo '$M' > $TOP/data/f && cat $TOP/data/f && pwd &&
    head -1 /etc/passwd | cut -d: -f1-4 && ls /proc/self/fd >/dev/null && echo proc-ok &&
    if touch $TOP/stray 2>$T/touch.err; then echo stray-created; else cat $T/touch.err; fi &&
    if touch /scp-mp-stray-$$ 2>$T/touch.err; then echo stray-created; else cat $T/touch.err; fi" 2>&1)
echo "$out"
case "$out" in *"cannot create mount point"*) fail "the mount point was not made";; esac
for want in "$M" "$T" "root:x:0:0" proc-ok "touch: cannot touch '$TOP/stray': Read-only file system" \
            "touch: cannot touch '/scp-mp-stray-$$': Read-only file system"; do
    printf '%s\n' "$out" | grep -qxF -- "$want" || fail "expected the line '$want'"
done
printf '%s\n' "$out" | grep -q stray-created && fail "a name was created in the covered directory"
[ -e "$TOP" ] || [ -e "/scp-mp-stray-$$" ] && fail "something was created on the host"
got=$("$SCPCTL" volume cat "$VOL" f --key-file "$KEY") || fail "volume cat"
[ "$got" = "$M" ] || fail "volume cat gave '$got'"
check_no_plaintext "$M"
echo PASS
