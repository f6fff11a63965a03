#!/bin/bash
# scpctl run: usage and exit codes, and where the key must never appear: the program's
# environment (initial block and current), its command line, its open descriptors (the
# configuration memfd is closed before main) and the trace.
. "$(dirname "$0")/lib.sh"
setup "$@"

"$SCPCTL" run --help | grep -q "usage: scpctl run" || fail "--help"
"$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" >/dev/null 2>&1; [ $? = 2 ] || fail "no program: want exit 2"
"$SCPCTL" run --volume "$VOL" --key-file "$KEY" -- true >/dev/null 2>&1; [ $? = 2 ] || fail "bad --volume: want exit 2"
"$SCPCTL" run --volume "$VOL:$MNT" -- true >/dev/null 2>&1; [ $? = 2 ] || fail "no key: want exit 2"
"$SCPCTL" volume keygen "$T/other" >/dev/null 2>&1 || fail "keygen"
"$SCPCTL" run --volume "$VOL:$MNT" --key-file "$T/other" -- true >/dev/null 2>&1; [ $? = 4 ] || fail "wrong key: want exit 4"
"$SCPCTL" run --volume "$VOL:relative" --key-file "$KEY" -- true >/dev/null 2>&1; [ $? = 2 ] || fail "relative mount: want 2"
"$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- sh -c 'exit 7'; [ $? = 7 ] || fail "exit status not passed on"

hex() { od -An -v -tx1 | tr -d ' \n'; }
keyhex=$(hex < "$KEY")
"$SCPCTL" run --trace="$T/trace" --volume "$VOL:$MNT" --key-file "$KEY" -- \
    sh -c 'cat /proc/$$/environ > "$1/environ"; cat /proc/$$/cmdline > "$1/cmdline";
           env > "$1/env"; ls -l /proc/$$/fd/ > "$1/fds"; echo x > "$2/f"; cat "$2/f" > /dev/null' \
    sh "$T" "$MNT" || fail "run sh"
for f in environ cmdline env fds trace; do
    [ -s "$T/$f" ] || fail "$f is empty"
    case $(hex < "$T/$f") in *"$keyhex"*) fail "the key appears in $f" ;; esac
done
grep -q SCP_SHIELD "$T/env" && fail "the configuration variable is still in the environment"
grep -q libscp-shield "$T/env" && fail "LD_PRELOAD still names the shield"
grep -q scp-shield-config "$T/fds" && fail "the configuration memfd is still open"
grep -q "openat('f' in volume 0)" "$T/trace" || fail "the trace does not show the protected open"
echo PASS
