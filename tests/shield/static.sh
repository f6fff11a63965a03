#!/bin/sh
# Static programs on a protected volume: busybox-static (sh, cp, tar) and a Go program built
# here (create, write, fsync, rename). Neither has the shield inside (no dynamic loader, no
# LD_PRELOAD), so their path calls under the mount reach the empty read-only mount point:
# each step must store the bytes correctly (read back with `scpctl volume cat`) or fail with
# an error, never be killed by the shield's filters (the code filter traps by instruction
# pointer and must not catch a static image) and never report success while losing data.
# usage: static.sh SCPCTL MKVOL
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
BB=$(command -v busybox || true)
GO=$(command -v go || true)
[ -n "$BB" ] && file -L "$BB" 2>/dev/null | grep -q 'statically linked' || BB=""
[ -n "$BB$GO" ] || { echo "SKIP: neither busybox-static nor go (golang-go) is installed"; exit 77; }
cat_vol() { "$SCPCTL" volume cat --key-file "$KEY" "$VOL" "$1" 2>/dev/null; }
# check RC NAME CONTENT: the step either failed (RC 1..127) or stored exactly CONTENT
check() {
    [ "$1" -lt 128 ] || fail "$2: killed by signal $(($1 - 128))"
    if [ "$1" -eq 0 ]; then
        [ "$(cat_vol "$2")" = "$3" ] || fail "$2: reported success, the volume holds '$(cat_vol "$2")'"
        echo "ok   $2 (stored)"
    else
        echo "ok   $2 (failed with an error, nothing stored)"
    fi
}
mkdir "$T/src"
# each static program runs from a shielded shell (dash is dynamic), so it inherits the
# shell's filters, code filter included
srun() { run sh -c '"$@"' sh "$@"; }
if [ -n "$BB" ]; then
    srun "$BB" sh -c 'echo SCPSTATIC_sh > "$1/sh.txt"' sh "$MNT"; check $? sh.txt SCPSTATIC_sh
    echo SCPSTATIC_cp > "$T/src/cp.txt"
    srun "$BB" cp "$T/src/cp.txt" "$MNT/cp.txt"; check $? cp.txt SCPSTATIC_cp
    echo SCPSTATIC_tar > "$T/src/tar.txt"
    # (one tar, no pipeline: a static image cannot exec, the filter kills its execve)
    tar cf "$T/src.tar" -C "$T/src" tar.txt || fail "cannot make the tar file"
    srun "$BB" tar xf "$T/src.tar" -C "$MNT"; check $? tar.txt SCPSTATIC_tar
else
    echo "SKIP busybox: busybox-static is not installed"
fi
if [ -n "$GO" ]; then
    GOCACHE=$T/gocache GOPATH=$T/gopath GO111MODULE=off CGO_ENABLED=0 \
        "$GO" build -o "$T/gofiles" "$(dirname "$0")/go/gofiles.go" || fail "go build failed"
    # started by scpctl itself: from a shielded parent the inherited filter kills Go at start
    # (its raw rt_sigprocmask traps, and a static image has no handler; docs/shield.md)
    run "$T/gofiles" "$MNT"
    rc=$?
    for i in 0 1 2; do check $rc "go$i.txt" "SCPGO_marker_$i"; done
else
    echo "SKIP go: golang-go is not installed"
fi
check_no_plaintext SCPSTATIC
check_no_plaintext SCPGO
[ -z "$(ls -A "$MNT" 2>/dev/null)" ] || fail "files appeared at the mount point on the host: $(ls -A "$MNT")"
echo PASS
