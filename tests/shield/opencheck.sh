#!/bin/bash
# tests/shield/opencheck.sh SCPCTL MKVOL - scpctl run's early volume check, made by the shield
# before main when the program names a path in the volume (docs/runtime.md, "The volume check
# at start"): a wrong key, a missing directory, a directory that is no volume, a modified
# header or manifest stop the program before it runs, with the same line and exit status as
# the launcher's own open (for a program that names no path in the volume, and in a container,
# where the launcher still opens it); the volume is opened once per run, not twice (on main: the launcher's
# open, then the program's: scpvol.hdr read twice); the checked volume serves the program's
# first use, and a program that execs or forks before using it hands on a working volume.
. "$(dirname "$0")/lib.sh"
setup "$@"
export SCP_QUIET=1
command -v python3 >/dev/null || { echo "SKIP: needs python3"; exit 77; }
"$SCPCTL" volume keygen "$T/other" >/dev/null 2>&1 || fail "keygen"
echo SCPMARK_oc > "$T/src"
run cp "$T/src" "$MNT/f" || fail "cp into the volume"
mkdir "$T/empty"
cp -a "$VOL" "$T/tamh"
flip_byte "$T/tamh/scpvol.hdr" 40 || fail "flip the header"
cp -a "$VOL" "$T/tamm"
for f in "$T"/tamm/manifest*; do
    [ -s "$f" ] || continue # an empty copy (never written) authenticates nothing already
    flip_byte "$f" $(($(stat -c %s "$f") / 2)) || fail "flip $f"
done
# the program says so when it runs (the container's /tmp is its own: no mark in a file); it
# names $MNT/f (the shield's check) or nothing in the volume (the launcher's)
prog_named() { echo python3 -c "print('SCPRAN')" "$MNT/f"; }
prog_plain() { echo python3 -c "print('SCPRAN')"; }
# expect CODE REGEX DIR KEY MODE PROG: the run fails with CODE and the line, the program never ran
expect() {
    # shellcheck disable=SC2046
    out=$("$SCPCTL" run $5 --volume "$3:$MNT" --key-file "$4" -- $($6) 2>&1)
    rc=$?
    [ "$rc" = "$1" ] || fail "$6 $5 on $3: exit $rc, want $1 ($out)"
    echo "$out" | grep -q -x -- "$2" || fail "$6 $5 on $3: '$out', want '$2'"
    case $out in *SCPRAN*) fail "$6 $5 on $3: the program ran" ;; esac
    return 0
}
# (in a container the launcher opens the volumes as before; there only a run that succeeds: an
# early failure there hangs an ASan/LSan build's scpctl in its exit's leak check, main's too)
for mode in "" --container; do
    for prog in prog_named prog_plain; do
        if [ -n "$mode" ]; then
            # shellcheck disable=SC2046
            out=$("$SCPCTL" run $mode --volume "$VOL:$MNT" --key-file "$KEY" -- $($prog)) || fail "$prog $mode on the volume"
            [ "$out" = SCPRAN ] || fail "$prog $mode did not run: '$out'"
            continue
        fi
        note "${mode:-plain} $prog"
        expect 4 "scpctl: volume $VOL: wrong key for volume '$VOL' (or its header was modified); check --key-file" "$VOL" "$T/other" "$mode" $prog
        expect 1 "scpctl: volume $T/nope: cannot open volume directory '$T/nope': No such file or directory" "$T/nope" "$KEY" "$mode" $prog
        expect 1 "scpctl: volume $T/empty: '$T/empty' is not an SCP volume (no scpvol.hdr); create one with 'scpctl volume create'" "$T/empty" "$KEY" "$mode" $prog
        expect 4 "scpctl: volume $T/tamh: wrong key for volume '$T/tamh' (or its header was modified); check --key-file" "$T/tamh" "$KEY" "$mode" $prog
        expect 3 "scpctl: volume $T/tamm: the volume manifest fails authentication in every copy .*; the volume was modified or damaged" "$T/tamm" "$KEY" "$mode" $prog
        # shellcheck disable=SC2046
        out=$("$SCPCTL" run $mode --volume "$VOL:$MNT" --key-file "$KEY" -- $($prog)) || fail "$prog $mode on the volume"
        [ "$out" = SCPRAN ] || fail "$prog $mode did not run: '$out'"
    done
done

note "the checked volume serves the first use; exec and fork before it"
"$SCPCTL" run --trace="$T/tr1" --volume "$VOL:$MNT" --key-file "$KEY" -- cat "$MNT/f" > "$T/got" || fail "cat"
grep -q SCPMARK_oc "$T/got" || fail "cat read '$(cat "$T/got")'"
grep -q "volume at $MNT checked before main" "$T/tr1" || fail "cat's volume was not checked by the shield"
[ "$(grep -c "volume at $MNT opened" "$T/tr1")" = 1 ] || fail "the volume was not opened exactly once"
got=$("$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- env cat "$MNT/f") || fail "env cat"
[ "$got" = SCPMARK_oc ] || fail "env (checked, exec'd cat unused) then cat read '$got'"
got=$("$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- python3 -c "
import os, sys
pid = os.fork()
if pid == 0:
    print(open(sys.argv[1]).read().strip()); sys.stdout.flush(); os._exit(0)
os.waitpid(pid, 0)
print(open(sys.argv[1]).read().strip())" "$MNT/f") || fail "fork before the first use"
[ "$got" = "SCPMARK_oc
SCPMARK_oc" ] || fail "fork before the first use: '$got'"
# a working directory inside the mount names it too (the shield's check; the launcher's for sh
# -c alone)
S=$(cd "$(dirname "$SCPCTL")" && pwd)/$(basename "$SCPCTL")
mkdir -p "$MNT"
got=$(cd "$MNT" && "$S" run --trace="$T/tr2" --volume "$VOL:$MNT" --key-file "$T/other" -- sh -c "echo SCPRAN" 2>&1)
[ $? = 4 ] || fail "sh started in the mount with the wrong key: '$got'"
got=$(cd "$MNT" && "$S" run --trace="$T/tr2" --volume "$VOL:$MNT" --key-file "$KEY" -- sh -c "cat f" 2>&1)
[ "$got" = SCPMARK_oc ] || fail "sh started in the mount: '$got'"
grep -q "volume at $MNT checked before main" "$T/tr2" || fail "sh's volume (its cwd) was not checked by the shield"

if command -v strace >/dev/null; then
    note "one open of the volume per run (the header read once)"
    strace -f -qq -e trace=openat -o "$T/st" "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- cat "$MNT/f" > /dev/null ||
        fail "cat under strace"
    n=$(grep -c 'scpvol.hdr' "$T/st")
    [ "$n" = 1 ] || fail "the volume's header was opened $n times in one run of cat (want 1: the launcher's open and the program's are one)"
fi
echo PASS
