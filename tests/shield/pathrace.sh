#!/bin/sh
# The path is read once: a path that another thread of the program changes during a path call
# is classified and handed to the kernel as the same string (tests/shield/pathrace.c).
# usage: pathrace.sh SCPCTL MKVOL PATHRACE [ROUNDS]
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
PATHRACE=$3
ROUNDS=${4:-20000}
# the host's twin of the mount point: the same path but its last byte
mkdir "$T/mnu" && echo host >"$T/mnu/f" || fail "setup"
run "$PATHRACE" "$MNT" "$ROUNDS" || fail "a path call acted on a path the shield did not classify (see above)"
[ -z "$(ls -A "$MNT" 2>/dev/null)" ] || fail "files appeared at the mount point on the host: $(ls -A "$MNT")"
[ "$(cat "$T/mnu/f")" = host ] || fail "the host file changed"
echo PASS
