#!/bin/sh
# Bad pointers and the program's own SIGSEGV handler (tests/shield/badptr.c): the same answers
# without the shield (a plain directory) and under it (a protected volume and a plain
# directory); and the path copy makes no system call of its own (src/shield/nofault.c: no
# rt_sigprocmask page probe per open or stat).
# usage: badptr.sh SCPCTL MKVOL BADPTR
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
BADPTR=$3
export SCP_QUIET=1
mkdir "$T/plain" "$T/plain2"
"$BADPTR" "$T/plain" || fail "without the shield (the kernel's own answers)"
note "without the shield: as above"
run "$BADPTR" "$MNT" || fail "under the shield, on a protected volume"
note "under the shield, protected volume: as above"
run "$BADPTR" "$T/plain2" || fail "under the shield, in a plain directory"
note "under the shield, plain directory: as above"
# SIG_IGN of SIGSEGV and SIGBUS goes on across exec as the kernel keeps it (the shield's
# handler is what the kernel holds while the program runs)
cmd="trap '' SEGV BUS; exec $BADPTR x sigign"
want=$(sh -c "$cmd")
got=$(run sh -c "$cmd")
[ -n "$got" ] && [ "$got" = "$want" ] || fail "after exec: '$got' under the shield, '$want' without"
note "SIG_IGN of SIGSEGV/SIGBUS kept across exec: $got"
if command -v strace >/dev/null; then
    N=2000
    strace -f -qq -c -e trace=rt_sigprocmask -o "$T/strace" \
        "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$BADPTR" "$T/plain2" opens $N ||
        fail "the open loop failed under strace"
    calls=$(awk '$NF == "rt_sigprocmask" { print ($4 ~ /^[0-9]+$/) ? $4 : $3 }' "$T/strace")
    calls=${calls:-0}
    note "rt_sigprocmask calls for $N opens and $N stats (and the start-up): $calls"
    [ "$calls" -lt $((N / 4)) ] || fail "the path copy still probes with a system call ($calls rt_sigprocmask for $N opens + $N stats)"
else
    echo "strace not installed: the system-call count skipped"
fi
echo PASS
