#!/bin/sh
# Owners and modes inside a volume are enforced for static programs too (busybox-static, a Go
# program built here), which the supervisor serves (src/runtime/notify.c): each served call is
# checked with the credentials of the calling thread, read for that call, with the shield's
# rules (src/shield/perm.c). So a static program that runs as another user gets EACCES/EPERM
# where the kernel would, also after it changed its ids by raw system call (busybox su, Go's
# syscall.Setuid), which the supervisor never sees, and its new files get its ids.
# usage: static_creds.sh SCPCTL MKVOL
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
static_setup "$1" "$2"
# populate as root through the preloaded shield (dash is dynamic)
run sh -c "echo SCPSC_secret > $MNT/secret && chmod 600 $MNT/secret && echo SCPSC_pub > $MNT/pub &&
           chmod 644 $MNT/pub && mkdir $MNT/rootdir && echo SCPSC_x > $MNT/rootdir/x &&
           mkdir $MNT/nbdir && chown 65534:65534 $MNT/nbdir && mkdir $MNT/closed &&
           echo SCPSC_in > $MNT/closed/f && chmod 644 $MNT/closed/f && chmod 700 $MNT/closed" 2>/dev/null ||
    fail populate
# expect WANT WHAT OUTPUT: OUTPUT contains WANT
expect() {
    case "$3" in *"$1"*) echo "ok   $2 ($1)" ;; *) fail "$2: got '$3', expected '$1'" ;; esac
}
unchanged() {
    [ "$(cat_vol pub)" = SCPSC_pub ] && [ "$(cat_vol secret)" = SCPSC_secret ] && [ "$(cat_vol rootdir/x)" = SCPSC_x ] ||
        fail "$1: root's files changed: pub '$(cat_vol pub)', secret '$(cat_vol secret)', rootdir/x '$(cat_vol rootdir/x)'"
}
if [ -n "$BB" ]; then
    chmod 755 "$T" && ln -s "$BB" "$T/sh"
    # bbnb CMD: busybox sh as nobody, changed by busybox su's own raw setgid/setuid (static):
    # the supervisor started by scpctl run is root, the program is not
    bbnb() { timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$BB" su -s "$T/sh" nobody -c "$1" 2>&1; }
    expect "SCPSC_pub" "busybox as nobody reads a 0644 file" "$(bbnb "cat $MNT/pub")"
    expect "Permission denied" "busybox as nobody reads a 0600 root file" "$(bbnb "cat $MNT/secret")"
    expect "Permission denied" "busybox as nobody appends to a 0644 root file" "$(bbnb "echo SCPSC_bad >> $MNT/pub")"
    expect "Permission denied" "busybox as nobody creates in a root 0755 dir" "$(bbnb "echo SCPSC_bad > $MNT/rootdir/new")"
    expect "Permission denied" "busybox as nobody removes from a root 0755 dir" "$(bbnb "rm -f $MNT/rootdir/x")"
    expect "Permission denied" "busybox as nobody stats into a 0700 root dir" "$(bbnb "stat -c %s $MNT/closed/f")"
    expect "Operation not permitted" "busybox as nobody chmods a root file" "$(bbnb "chmod 666 $MNT/secret")"
    expect "Operation not permitted" "busybox as nobody chowns a root file" "$(bbnb "chown 65534 $MNT/secret")"
    expect "Operation not permitted" "busybox as nobody sets explicit times" "$(bbnb "touch -d '2001-09-09 01:46:40' $MNT/pub")"
    expect "NOTW" "busybox as nobody: test -w of a root 0644 file" "$(bbnb "test -w $MNT/pub && echo W || echo NOTW")"
    expect "65534 65534 640" "busybox as nobody: its new file is its own" \
        "$(bbnb "umask 027; echo SCPSC_mine > $MNT/nbdir/bb && stat -c '%u %g %a' $MNT/nbdir/bb")"
    [ "$(cat_vol nbdir/bb)" = SCPSC_mine ] || fail "nbdir/bb: the volume holds '$(cat_vol nbdir/bb)'"
    expect "SCPSC_secret" "busybox as root reads the 0600 file" \
        "$(timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$BB" cat "$MNT/secret" 2>&1)"
    unchanged "busybox as nobody"
    if command -v setpriv >/dev/null; then
        # a shielded (dynamic) setpriv drops to nobody and execs busybox: the supervisor is
        # started by the shield after the drop
        expect "Permission denied" "setpriv to nobody, then busybox reads a 0600 root file" \
            "$(timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- \
                setpriv --reuid=65534 --regid=65534 --clear-groups "$BB" cat "$MNT/secret" 2>&1)"
        expect "SCPSC_pub" "setpriv to nobody, then busybox reads a 0644 file" \
            "$(timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- \
                setpriv --reuid=65534 --regid=65534 --clear-groups "$BB" cat "$MNT/pub" 2>&1)"
    fi
else
    echo "SKIP busybox: busybox-static is not installed"
fi
if [ -n "$GO" ]; then
    build_gofiles
    out=$(timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$T/gofiles" "$MNT" creds 2>&1)
    echo "$out" | sed 's/^/  go: /'
    want="root reads secret: ok
nobody reads secret: permission denied
nobody reads pub: ok
nobody appends to pub: permission denied
nobody creates in rootdir: permission denied
nobody chmods secret: operation not permitted
nobody removes rootdir/x: permission denied
nobody renames rootdir/x: permission denied
nobody mkdirs in rootdir: permission denied
nobody truncates pub: permission denied
nobody access(W) pub: permission denied
nobody creates in nbdir: ok
owner of nbdir/mine: 65534 65534"
    [ "$out" = "$want" ] || fail "go: after syscall.Setuid(65534) the answers differ from the kernel's (expected above)"
    echo "ok   go: after syscall.Setuid its new identity is enforced"
    [ "$(cat_vol nbdir/mine)" = SCPGO_creds_mine ] || fail "nbdir/mine: the volume holds '$(cat_vol nbdir/mine)'"
    unchanged "go as nobody"
else
    echo "SKIP go: golang-go is not installed"
fi
"$SCPCTL" volume verify "$VOL" --key-file "$KEY" >/dev/null || fail "the volume does not verify"
check_no_plaintext SCPSC_
check_no_plaintext SCPGO_
echo PASS
