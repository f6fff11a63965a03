#!/bin/sh
# The bypass suite: tests/shield/bypass.c under the shield, then proof that no plaintext
# reached the backing store and nothing appeared at the mount point on the host.
# usage: bypass.sh SCPCTL MKVOL BYPASS STATIC_HELPER
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
BYPASS=$3
HELPER=$4
run "$BYPASS" "$MNT" "$HELPER" || fail "a bypass case failed (see above)"
# a shell redirection to /proc/self/fd/N of a protected descriptor: served (the bytes are in
# the volume) or an error, never success with the bytes lost
if run sh -c 'exec 3>"$1/shellfd.txt"; echo SCPBYPASS_shellfd >/proc/self/fd/3' sh "$MNT"; then
    out=$("$SCPCTL" volume cat --key-file "$KEY" "$VOL" shellfd.txt) || fail "volume cat failed"
    [ "$out" = SCPBYPASS_shellfd ] || fail "echo >/proc/self/fd/3 reported success, the volume holds '$out'"
    echo "ok   shell echo >/proc/self/fd/3 (bytes in the volume)"
else
    echo "ok   shell echo >/proc/self/fd/3 (refused)"
fi
check_no_plaintext SCPBYPASS
[ -z "$(ls -A "$MNT")" ] || fail "files appeared at the mount point on the host: $(ls -A "$MNT")"
echo PASS
