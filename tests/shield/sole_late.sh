#!/bin/bash
# The sole holding taken late (docs/volume-format.md, "Sole holder"): a program whose first use
# of its volume is a trapped call (glibc's realpath: its readlink is libc's own, mariadbd's
# first use of its data directory) or comes before the shield's filter is installed (an image
# whose cwd lies in the mount: the curated MariaDB image's /var/lib/mysql) opens the volume in
# the ordinary mode, where no watcher thread can be started; its next call outside a trap then
# makes it the sole holder (sh_sole_try). Before, such a program never got the holding: every
# commit took the cross-process lock and caught up. Then the newcomers of sole_newcomer.sh:
# `scpctl volume cat` and a second `scpctl run` get in (under timeouts), read what it committed
# to a file it still holds open, and it reads theirs.
#   sole_late.sh SCPCTL MKVOL realpath|cwd
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "python3 not installed: skipped"; exit 77; }
MODE=$3
setup "$@"
. "$(dirname "$0")/sole_lib.sh"
sole_holder_start . "$MODE"
# the trace of the holder's last image (in mode cwd the exec keeps the pid: after its exec line)
awk '/the new image is shielded again/ {n = NR} {l[NR] = $0} END {for (i = n + 1; i <= NR; i++) print l[i]}' \
    "$T/p.trace" > "$T/last.trace"
first() { grep -n "$1" "$T/last.trace" | head -1 | cut -d: -f1; }
case $MODE in
realpath) grep -q "trap: volume at .* opened" "$T/last.trace" ||
    { kill $p; fail "the volume was not opened from a trap handler (the test would prove nothing)"; } ;;
cwd) grep -q "exec of .*shielded again" "$T/p.trace" && [ -n "$(first ': volume at .* opened')" ] &&
    [ "$(first ': volume at .* opened')" -lt "$(first ': shield filter')" ] ||
    { kill $p; fail "the exec'd image did not open the volume before its filter (the test would prove nothing)"; } ;;
*) kill $p; fail "mode $MODE" ;;
esac
grep -q ": volume at .*: no other process has it open, private" "$T/last.trace" ||
    { kill $p; fail "the program did not become the sole holder"; }
sole_newcomers
echo "ok ($MODE): the sole holding taken at the first call outside a trap; newcomers get in beside it"
