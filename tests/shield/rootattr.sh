#!/bin/sh
# tests/shield/rootattr.sh SCPCTL MKVOL - the volume root's mode, owner and times under the
# shield (its own manifest entry, docs/volume-format.md): chmod, chown and touch of the mount
# point change what stat shows, in this run and the next; fchmod of a descriptor of the root
# too; the root's mode is enforced on another user (search and listing); and a name made in
# the root moves its mtime. Before session 56 every one of these calls exited 0 and changed
# nothing.
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
export SCP_QUIET=1
command -v setpriv >/dev/null && id nobody >/dev/null 2>&1 || { echo "setpriv or nobody missing: skipped"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "needs root (chown, another user): skipped"; exit 77; }
out=$(run sh -c "mkdir '$MNT/sub' && echo x > '$MNT/sub/f' &&
    stat -c '%a %U' '$MNT' && chmod 710 '$MNT' && chown nobody:nogroup '$MNT' &&
    touch -d '2001-02-03 04:05:06 UTC' '$MNT' && stat -c '%a %U %G %Y' '$MNT'" 2>&1) || fail "first run: $out"
echo "$out"
[ "$(echo "$out" | sed -n 1p)" = "755 root" ] || fail "a new volume's root is not 0755 shown as the caller's"
[ "$(echo "$out" | sed -n 2p)" = "710 nobody nogroup 981173106" ] || fail "chmod/chown/touch of the root did not show"
out=$(run stat -c '%a %U %G %Y' "$MNT" 2>&1) || fail "second run: $out"
[ "$out" = "710 nobody nogroup 981173106" ] || fail "the root's attributes did not persist: $out"
out=$(run python3 -c "
import os, stat
fd = os.open('$MNT', os.O_RDONLY | os.O_DIRECTORY)
os.fchmod(fd, 0o751)
print(oct(stat.S_IMODE(os.fstat(fd).st_mode)), oct(stat.S_IMODE(os.stat('$MNT').st_mode)))
" 2>&1) || fail "python fchmod: $out"
[ "$out" = "0o751 0o751" ] || fail "fchmod of the root's descriptor: $out"
# 0751, owner nobody: another user may search (x) but not list (no r); with 0750 not even search
out=$(run sh -c "setpriv --reuid=1000 --regid=1000 --clear-groups cat '$MNT/sub/f' &&
    ! setpriv --reuid=1000 --regid=1000 --clear-groups ls '$MNT' 2>/dev/null && chmod 750 '$MNT' &&
    ! setpriv --reuid=1000 --regid=1000 --clear-groups cat '$MNT/sub/f' 2>/dev/null &&
    setpriv --reuid=65534 --regid=65534 --clear-groups cat '$MNT/sub/f' && echo enforced" 2>&1) ||
    fail "the root's mode as another user: $out"
echo "$out" | tail -1 | grep -qx enforced || fail "the root's mode as another user: $out"
# once the root has attributes, a name made in it moves its mtime, as any directory's
out=$(run sh -c "touch -d '2001-02-03 04:05:06 UTC' '$MNT' && touch '$MNT/new' && stat -c %Y '$MNT'" 2>&1) ||
    fail "a name made in the root: $out"
[ "$out" -gt 981173106 ] 2>/dev/null || fail "a name made in the root left its mtime at $out"
echo "root attributes: ok"
