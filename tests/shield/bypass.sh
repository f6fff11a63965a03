#!/bin/sh
# The bypass suite: tests/shield/bypass.c under the shield, then proof that no plaintext
# reached the backing store and nothing appeared at the mount point on the host.
# usage: bypass.sh SCPCTL MKVOL BYPASS STATIC_HELPER
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
BYPASS=$3
HELPER=$4
run "$BYPASS" "$MNT" "$HELPER" || fail "a bypass case failed (see above)"
check_no_plaintext SCPBYPASS
[ -z "$(ls -A "$MNT")" ] || fail "files appeared at the mount point on the host: $(ls -A "$MNT")"
echo PASS
