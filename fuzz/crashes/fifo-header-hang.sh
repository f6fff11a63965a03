#!/bin/sh
# Reproducer (found by review while writing fuzz_volume_open, not by a fuzzer input; fixed in
# f9c2ae7 "FIFO-safe reads", kept as a regression check):
# a volume whose scpvol.hdr was replaced by a FIFO makes scp_volume_open block forever.
# scp_read_file (src/common/util.c) opens the file O_RDONLY without O_NONBLOCK and checks
# S_ISREG only after the open, which blocks waiting for a writer. The same helper reads the
# manifest slots, but those are opened O_RDWR first by the volume, so they do not block.
# Expected: the open fails at once (SCP_E_FORMAT, "not a regular file").
#   usage: fifo-header-hang.sh path/to/scpctl
set -u
scpctl=${1:?usage: $0 path/to/scpctl}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$scpctl" volume keygen "$d/k" 2>/dev/null
"$scpctl" volume create "$d/v" --key-file "$d/k" 2>/dev/null
rm "$d/v/scpvol.hdr" && mkfifo "$d/v/scpvol.hdr"
timeout 5 "$scpctl" volume info "$d/v" --key-file "$d/k"
rc=$?
[ "$rc" -eq 124 ] && { echo "BUG: 'scpctl volume info' hung on a FIFO header"; exit 1; }
echo "ok: refused with exit $rc"
