#!/bin/sh
# A lock file taken with O_CREAT|O_EXCL by three processes at once, each incrementing a counter
# file (read it, write a copy, rename it over) under the lock (tests/shield/lockfile.c): no
# update is lost, on a plain directory first, then on a protected volume under the shield
# (the processes share it in shared mode).
# usage: lockfile.sh SCPCTL MKVOL LOCKFILE [SECONDS]
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
LOCKFILE=$3
SECS=${4:-4}
export SCP_QUIET=1
both_ways "$LOCKFILE" "$SECS" 3
"$SCPCTL" volume verify "$VOL" --key-file "$KEY" >/dev/null || fail "the volume does not verify"
echo PASS
