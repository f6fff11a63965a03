#!/bin/bash
# The sole holder (docs/volume-format.md, "Sole holder"): a program started by scpctl run that
# does not fork holds the volume's private lock, so its commits skip the cross-process lock and
# catch-up and its table writes wait. Other programs that open the volume meanwhile, `scpctl
# volume cat` and a second `scpctl run`, wait for its watcher to let go (at once; the holder
# goes shared, as another program may write its files), then read what it committed to a file
# it still holds open (from .t: the
# release writes the deferred entries), and write a file of their own, which the holder then
# reads (it catches up again). Every run under a timeout: a newcomer that waited forever is a
# failure. Without the open's wait the holder's later commits would go over the newcomer's;
# without the release's table writes the newcomers' reads fail ("its chunk table does not
# match the manifest").
# With a third argument `cwd` the holder starts with its working directory in the mount: its
# shield then opens the volume while it starts, before its seccomp filter is installed, and the
# watcher thread must not start until the filter is in (init.c, open_volume: a thread made
# before the filter was killed by SIGSYS at its first rt_sigprocmask).
# usage: sole_newcomer.sh SCPCTL MKVOL [cwd]
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "python3 not installed: skipped"; exit 77; }
setup "$1" "$2"
MODE=${3:-}
HOLDER_CWD=.
if [ "$MODE" = cwd ]; then
    mkdir -p "$MNT" # the mount covers it in the run's namespace: the cwd is the mount's root
    HOLDER_CWD=$MNT
fi
. "$(dirname "$0")/sole_lib.sh"
sole_holder_start "$HOLDER_CWD"
sole_newcomers
grep -q "no other process has it open, private" "$T/p.trace" ||
    fail "the holder did not become the sole holder (the test would prove nothing)"
if [ "$MODE" = cwd ]; then # the case this mode is for: opened before the filter went in
    o=$(grep -n "volume at .* opened" "$T/p.trace" | head -1 | cut -d: -f1)
    f=$(grep -n "shield filter:" "$T/p.trace" | head -1 | cut -d: -f1)
    [ -n "$o" ] && [ -n "$f" ] && [ "$o" -lt "$f" ] ||
        fail "the holder did not open the volume while it started (the test would prove nothing)"
fi
echo "ok: newcomers get in beside the sole holder${MODE:+ (started in the mount)}, read its commits, and it reads theirs"
