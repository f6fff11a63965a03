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
note "two volumes: copy between them, rename across them is EXDEV (mv falls back to copy)"
"$MKVOL" "$T/key2" "$T/vol2" || fail "second volume"
two() { "$SCPCTL" run --volume "$VOL:$MNT" --volume "$T/vol2:$T/m2:$T/key2" --key-file "$KEY" -- "$@"; }
echo SCPMARK_two > "$T/two.txt"
two cp "$T/two.txt" "$MNT/two.txt" || fail "cp into volume 1"
two cp "$MNT/two.txt" "$T/m2/copy.txt" || fail "cp from volume 1 to volume 2"
two python3 -c "import os,sys
try: os.rename(sys.argv[1], sys.argv[2]); sys.exit(1)
except OSError as e: sys.exit(0 if e.errno == 18 else 2)" "$MNT/two.txt" "$T/m2/moved.txt" || fail "rename across volumes is not EXDEV"
two mv "$MNT/two.txt" "$T/m2/moved.txt" || fail "mv across volumes"
[ "$(two cat "$T/m2/moved.txt" "$T/m2/copy.txt")" = "SCPMARK_two
SCPMARK_two" ] || fail "contents after mv/cp across volumes"
two test -e "$MNT/two.txt" && fail "mv left the source"
grep -r -q SCPMARK_two "$VOL" "$T/vol2" && fail "plaintext in a backing dir"
echo PASS
