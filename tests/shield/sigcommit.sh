#!/bin/bash
# Signals that land while the shield commits a protected file (tests/shield/sigcommit.c): a
# timer interrupts a write+fsync loop every 50 us, and its handler calls _exit, calls exit, or
# writes and fsyncs protected files itself; or (thread) it interrupts another thread, whose
# handler calls _exit. Each run must end as the program ends it (no
# SIGSEGV, no assertion, no hang), and afterwards the volume opens and every record reads
# back whole: the one written before the signal or the one after, never a torn one.
# usage: sigcommit.sh SCPCTL MKVOL SIGCOMMIT [ROUNDS]
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
PROG=$3
ROUNDS=${4:-12}
export SCP_QUIET=1

one() { # MODE N: one run, then the check (in a fresh process)
    timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$PROG" "$MNT" "$1" "$2" \
        >"$T/out" 2>&1
    rc=$?
    [ $rc = 124 ] && fail "$1: the program hung (killed after 60 s): $(cat "$T/out")"
    [ $rc = 0 ] || fail "$1: exit status $rc: $(cat "$T/out")"
    got=$(timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$PROG" "$MNT" check 2>&1) ||
        fail "$1: the volume after the run: $got"
}

for mode in _exit exit thread; do
    for i in $(seq "$ROUNDS"); do
        one $mode 5000
        # the handler ends the program once 20 records are fsynced, and says which record
        # main had fsynced last (k: 20, or later when main fsynced more than one record between
        # two ticks, as on tmpfs): record k, or k + 1 when the signal landed in the next one's
        # commit (which _exit or exit then finishes); from another thread, the main thread goes
        # on writing until the exit ends it: k or later
        k=$(sed -n 's/^sigcommit: ended at record \([0-9]*\)$/\1/p' "$T/out")
        [ -n "$k" ] && [ "$k" -ge 20 ] || fail "$mode: the handler did not say where it ended: $(cat "$T/out")"
        n=$(echo "$got" | sed -n 's/^A: record \([0-9]*\).*/\1/p')
        max=$((k + 1))
        [ $mode = thread ] && max=5000
        [ "${n:-0}" -ge "$k" ] && [ "$n" -le $max ] || fail "$mode: $got (record $k to $max expected)"
    done
    note "$mode from the handler, $ROUNDS runs: whole records, the last one $got"
done

rm -rf "$VOL" "$KEY" && "$MKVOL" "$KEY" "$VOL" || fail "cannot create a volume"
for i in 1 2 3; do
    one write 300
    # main: 300 records into A; the handler: one per main record into B and A's second half
    echo "$got" | grep -q '^A: record 300, B: record [0-9]*, A.s second: record [0-9]*$' || fail "write: $got"
done
note "write+fsync from the handler while main writes and fsyncs: $got"
echo PASS
