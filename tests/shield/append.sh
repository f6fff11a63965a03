#!/bin/sh
# Three processes appending lines to one file at once (tests/shield/append.c), in its three
# modes: one O_APPEND descriptor each (nginx's workers and their access log), the same under
# flock(2) with records in two writes (a logger, a mail spool), and an open per line (a
# shell's >>). No line is lost, torn or written over: on a plain directory first, then on a
# protected volume under the shield (the processes share it in shared mode), whose file must
# then read back the same through scpctl volume cat.
# usage: append.sh SCPCTL MKVOL APPEND [SECONDS]
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
APPEND=$3
SECS=${4:-1}
export SCP_QUIET=1
mkdir "$T/plain"
for m in held flock open; do
    "$APPEND" "$T/plain" 1 3 $m || fail "$m: without the shield, on a plain directory"
    run "$APPEND" "$MNT" "$SECS" 3 $m > "$T/out.$m" || { cat "$T/out.$m"; fail "$m: under the shield, on a protected volume"; }
    cat "$T/out.$m"
done
# every line's padding runs through the alphabet
check_no_plaintext abcdefghijklmnopqrstuvwxyz
"$SCPCTL" volume verify "$VOL" --key-file "$KEY" >/dev/null || fail "the volume does not verify"
# read from outside, each file is the lines the program checked inside
for m in held flock open; do
    want=$(sed -n 's/^\([0-9]*\) lines, \([0-9]*\) bytes$/\1 \2/p' "$T/out.$m")
    got=$(cat_vol log.$m | wc -l -c | awk '{print $1, $2}')
    [ -n "$want" ] && [ "$got" = "$want" ] || fail "$m: scpctl volume cat reads '$got' (lines, bytes), the program checked '$want'"
done
echo PASS
