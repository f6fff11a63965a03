#!/bin/sh
# tests/runtime/early_fail.sh - `scpctl run --container` that fails before the program starts
# ends at once with its message and exit status: a wrong key, a missing volume or key file, a
# missing rootfs (failures in scpctl itself, after the container's namespaces were prepared),
# and a program that cannot be executed (in the container's program process, after the seal).
# Under the ASan build (.ci/sanitize.sh, detect_leaks=1) the first four hung in LeakSanitizer's
# exit-time check when the pid namespace was unshared before the failure (its tracer, a child in
# the new namespace, saw no parent and never reported back), and the last one ended in
# "LeakSanitizer has encountered a fatal error" (134): the seal's seccomp rule refuses ptrace.
# As root, and as nobody through a user namespace when that is allowed.
# Usage: early_fail.sh SCPCTL MKVOL [NOFORK]
set -u
SCPCTL=$1
MKVOL=$2
NOFORK=${3:-}
export SCP_QUIET=1
T=$(mktemp -d "${TMPDIR:-/tmp}/scp-early-fail.XXXXXX") || exit 1
chmod 755 "$T"
trap 'rm -rf "$T"' EXIT
FAILS=0
fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
note() { echo "-- $*"; }

# expect WHO AS WANT PATTERN SCPCTL-RUN-ARGS...: exit WANT within 15 s, PATTERN on stderr, no
# sanitizer report. PRE: a command (with its arguments) that runs scpctl
expect() {
    who=$1 as=$2 want=$3 pat=$4
    shift 4
    # shellcheck disable=SC2086  # $as and $PRE are word lists
    $as timeout 15 ${PRE:-} "$SCPCTL" run "$@" >"$T/out" 2>"$T/err"
    got=$?
    if [ "$got" = 124 ]; then
        fail "$who: 'scpctl run $*' still running after 15 s (hung in its exit?)"
    elif [ "$got" != "$want" ]; then
        fail "$who: 'scpctl run $*' exited $got, want $want"
    fi
    seen=1
    grep -q -- "${pat:-^}" "$T/err" || [ -z "$pat" ] || { seen=0; fail "$who: '$pat' not on stderr of 'scpctl run $*'"; }
    if grep -q 'Sanitizer' "$T/err"; then seen=0; fail "$who: a sanitizer report from 'scpctl run $*'"; fi
    if [ "$got" != "$want" ] || [ "$seen" = 0 ]; then
        sed 's/^/    | /' "$T/err" | head -8 >&2
    fi
}

# cases WHO AS DIR: DIR holds the volume vol and its key key (readable by WHO)
cases() {
    who=$1 as=$2 d=$3
    head -c 32 /dev/urandom >"$d/wrongkey" && chmod 600 "$d/wrongkey"
    [ -z "$as" ] || chown --reference="$d/key" "$d/wrongkey"
    for c in --container "--net none"; do
        note "$who $c: a wrong key, a missing volume, a missing key file, a program that cannot run"
        # shellcheck disable=SC2086  # $c is one or two words
        expect "$who" "$as" 4 "wrong key" $c --volume "$d/vol:/scp-m" --key-file "$d/wrongkey" -- cat /scp-m/f
        # shellcheck disable=SC2086
        expect "$who" "$as" 1 "cannot open volume directory" $c --volume "$d/none:/scp-m" --key-file "$d/key" -- true
        # shellcheck disable=SC2086
        expect "$who" "$as" 4 "does not exist" $c --volume "$d/vol:/scp-m" --key-file "$d/nokey" -- true
        # shellcheck disable=SC2086
        expect "$who" "$as" 1 "cannot run /nonexistent/prog" $c --volume "$d/vol:/scp-m" --key-file "$d/key" -- /nonexistent/prog
        # shellcheck disable=SC2086
        expect "$who" "$as" 1 "cannot run /etc: Permission denied" $c -- /etc
    done
    note "$who: a missing rootfs"
    expect "$who" "$as" 1 "rootfs /nonexistent-rootfs is not a directory" --rootfs /nonexistent-rootfs -- true
    # The init's fork fails after the pid namespace was made (NOFORK's filter answers forks with
    # EAGAIN, as the process limit would; clones that share the memory go on). scpctl's own next
    # children land in that namespace from then on, so it must end with _exit, as the
    # container's processes do: with exit(), LeakSanitizer's exit-time tracer was that
    # namespace's pid 1, saw no parent and never reported back (ASan build: the exit hung).
    if [ -n "$NOFORK" ]; then
        note "$who: the container's init cannot be forked"
        PRE=$NOFORK
        expect "$who" "$as" 1 "cannot start the container: Resource temporarily unavailable" \
            --container --volume "$d/vol:/scp-m" --key-file "$d/key" -- true
        PRE=
    fi
    note "$who: the same container runs when nothing is wrong"
    expect "$who" "$as" 0 "" --container --volume "$d/vol:/scp-m" --key-file "$d/key" -- true
    expect "$who" "$as" 3 "" --container -- sh -c 'exit 3'
}

"$MKVOL" "$T/key" "$T/vol" || { echo "FAIL: cannot create a volume" >&2; exit 1; }
cases "$(id -un)" "" "$T"
if [ "$(id -u)" = 0 ]; then
    if setpriv --reuid=nobody --regid=nogroup --clear-groups unshare -U true 2>/dev/null; then
        AS="setpriv --reuid=nobody --regid=nogroup --clear-groups"
        mkdir "$T/nv" && chmod 777 "$T/nv"
        $AS "$MKVOL" "$T/nv/key" "$T/nv/vol" || { echo "FAIL: nobody: cannot create a volume" >&2; exit 1; }
        cases nobody "$AS" "$T/nv"
    else
        note "user namespaces unavailable to ordinary users here: the nobody cases skipped"
    fi
fi
[ "$FAILS" = 0 ] || { echo "$FAILS check(s) failed" >&2; exit 1; }
echo OK
