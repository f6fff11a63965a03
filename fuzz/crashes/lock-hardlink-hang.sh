#!/bin/sh
# Reproducer of a hang found by fuzz_volume_open (input: fuzz_volume_open/timeout-f7b02e62...,
# where the fuzzer made both "lock" and objects/<id>.d symlinks to /dev/zero); this is the
# same thing with a plain hard link, which any attacker with the disk can make.
#
# When "lock" and a file's data object objects/<id>.d are the same inode, the first commit of a
# write to that file blocks forever: acquire_writer() holds an OFD write lock on the whole of
# <id>.d (src/volume/vfile.c), then commit() -> vol_lock() asks F_OFD_SETLKW for a write lock on
# the whole of "lock" (src/volume/volume.c:242) through another open file description of the
# same inode, which conflicts with the first one, in the same process. Reads are unaffected.
# Expected: an error (e.g. objects and lock must be distinct single-link regular files, or the
# two locks taken on disjoint byte ranges so that aliasing cannot self-deadlock).
#   usage: lock-hardlink-hang.sh path/to/scpctl
set -u
scpctl=${1:?usage: $0 path/to/scpctl}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$scpctl" volume keygen "$d/k" 2>/dev/null
"$scpctl" volume create "$d/v" --key-file "$d/k" 2>/dev/null
head -c 10000 /dev/urandom >"$d/data"
"$scpctl" volume put "$d/v" /f "$d/data" --key-file "$d/k" || exit 2
obj=$(ls "$d"/v/objects/*.d | head -1)
rm "$d/v/lock" && ln "$obj" "$d/v/lock"
timeout 10 "$scpctl" volume put "$d/v" /f "$d/data" --key-file "$d/k"
rc=$?
[ "$rc" -eq 124 ] && { echo "BUG: 'scpctl volume put' hung (lock hard-linked to a data object)"; exit 1; }
echo "ok: exit $rc"
