#!/bin/sh
# A pid file polled by fresh processes (fopen, fscanf: as pg_ctl polls postmaster.pid) while
# another process writes, rewrites and removes it (tests/shield/pidfile.c): no reading process
# dies, no read fails or sees a mix of versions. On a plain directory first, then on a
# protected volume under the shield (about 1 reading process in 30 died of SIGSEGV there before
# the fix of file_refresh: CI's stop 49; about 1 read in 10,000 failed with EIO until the
# reload of an unnamed file). Then the same with the file replaced by a rename over it.
# usage: pidfile.sh SCPCTL MKVOL PIDFILE [SECONDS]
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
PIDFILE=$3
SECS=${4:-4}
export SCP_QUIET=1
both_ways "$PIDFILE" "$SECS" 2
# the file replaced by a rename over it (and removed every third time) instead of rewritten
run "$PIDFILE" "$MNT" 3 2 rename || fail "under the shield, replaced by rename (see above)"
"$SCPCTL" volume verify "$VOL" --key-file "$KEY" >/dev/null || fail "the volume does not verify"
echo PASS
