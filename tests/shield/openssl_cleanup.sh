#!/bin/bash
# tests/shield/openssl_cleanup.sh SCPCTL MKVOL HELPER - a program that calls OPENSSL_cleanup()
# (mariadbd does, at the end of its shutdown) shares libcrypto with the shield, whose commits,
# reads and console streams still need it afterwards. The program's cleanup is deferred until the
# shield's exit-time commits are done (docs/shield.md, "Exit"): the program exits 0 and the volume
# holds what it wrote, both when it had synced everything before the cleanup (the exit then
# writes a durable manifest slot after a one-flush commit) and when it writes after the cleanup.
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
HELPER=$3
export SCP_QUIET=1
for mode in synced after; do
    note "$mode: OPENSSL_cleanup() in the program, then exit"
    out=$(run "$HELPER" "$mode" "$MNT/$mode.txt" 2>"$T/$mode.err")
    rc=$?
    [ $rc -eq 0 ] && [ "$out" = written ] || fail "$mode: exit code $rc, output '$out': $(tail -5 "$T/$mode.err")"
    got=$("$SCPCTL" volume cat --key-file "$KEY" "$VOL" "$mode.txt" 2>&1)
    [ "$got" = "SCPMARK_openssl_cleanup_$mode" ] || fail "$mode: the volume holds '$got'"
done
"$SCPCTL" volume verify "$VOL" --key-file "$KEY" >/dev/null || fail "the volume does not verify"
check_no_plaintext SCPMARK_openssl_cleanup
echo PASS
