#!/bin/sh
# A program lists its own descriptors (/proc/self/fd, /dev/fd, /proc/PID/fd; readdir and the
# getdents64 function) and closes what it finds, as daemons do (tests/shield/fdlist.c): the
# listing names exactly the numbers the program has open, its protected files included, and
# not the volume library's or the reserved range's; every close succeeds, and the file is
# written after them. On a plain directory first, then under the shield. Then `ls -l
# /proc/self/fd` in a shell with a protected file open: exit 0, the file's link shown.
# usage: fdlist.sh SCPCTL MKVOL FDLIST
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
FDLIST=$3
export SCP_QUIET=1
both_ways "$FDLIST" 1
got=$("$SCPCTL" volume cat "$VOL" f --key-file "$KEY") || fail "volume cat"
[ "$got" = SCPMARK_fdlist ] || fail "the volume's f holds '$got'"
out=$(run sh -c "exec 5>$MNT/g; exec 7<$MNT/g; ls -l /proc/self/fd") || fail "ls -l /proc/self/fd exited $?: $out"
echo "$out"
echo "$out" | grep -q " 5 -> $MNT/g\$" || fail "ls -l does not show 5 -> $MNT/g"
echo "$out" | grep -q "^lr-x------ .* 7 -> $MNT/g\$" || fail "ls -l does not show 7 as a read-only link"
echo "$out" | grep -qE ' (1[5-9][0-9][0-9]|[23][0-9][0-9][0-9]) ' && fail "ls -l lists a number of the shield's"
check_no_plaintext SCPMARK_fdlist
echo PASS
