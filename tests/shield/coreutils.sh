#!/bin/sh
# Coreutils over protected files: cp, cat, dd, sort, tail, sha256sum under `scpctl run`.
# Asserts the program sees the plaintext, the backing store holds none of it, and a tampered
# chunk makes the program fail with an I/O error.
. "$(dirname "$0")/lib.sh"
setup "$@"

M=SCPMARK_c0reutils_7d1f
i=0
while [ $i -lt 3000 ]; do
    echo "$M line $(( (i * 7919) % 3000 )) padding-padding-padding-padding-padding"
    i=$((i + 1))
done > "$T/plain.txt"
want=$(sha256sum < "$T/plain.txt" | cut -d' ' -f1)

note cp in and out
run cp "$T/plain.txt" "$MNT/a.txt" || fail "cp into the volume"
run cp "$MNT/a.txt" "$T/out.txt" || fail "cp out of the volume"
cmp "$T/plain.txt" "$T/out.txt" || fail "cp round trip differs"

note cat
got=$(run cat "$MNT/a.txt" | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "cat shows other bytes"

note sha256sum
got=$(run sha256sum "$MNT/a.txt" | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "sha256sum of the protected file differs"

note dd of= and if=
run dd if="$T/plain.txt" of="$MNT/dd.bin" bs=4096 2>/dev/null || fail "dd into the volume"
got=$(run dd if="$MNT/dd.bin" bs=1000 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "dd round trip differs"
run dd if="$T/plain.txt" of="$MNT/dd.bin" bs=100 seek=3 count=2 conv=notrunc 2>/dev/null || fail "dd seek"
run dd if="$MNT/dd.bin" bs=100 skip=3 count=2 2>/dev/null > "$T/dd-part"
dd if="$T/plain.txt" bs=100 count=2 2>/dev/null | cmp - "$T/dd-part" || fail "dd seek/skip differs"

note "dd oflag=direct, iflag=direct (O_DIRECT accepted and ignored; unaligned tail)"
run dd if="$T/plain.txt" of="$MNT/direct.bin" bs=4096 oflag=direct 2>"$T/dd.err" || { cat "$T/dd.err"; fail "dd oflag=direct"; }
"$SCPCTL" volume cat "$VOL" direct.bin --key-file "$KEY" | cmp - "$T/plain.txt" || fail "dd oflag=direct stored other bytes"
got=$(run dd if="$MNT/direct.bin" bs=4096 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "dd iflag=direct read other bytes"

note sort -o
run sort -o "$MNT/sorted.txt" "$MNT/a.txt" || fail "sort -o into the volume"
got=$(run cat "$MNT/sorted.txt" | sha256sum | cut -d' ' -f1)
exp=$(sort "$T/plain.txt" | sha256sum | cut -d' ' -f1)
[ "$got" = "$exp" ] || fail "sort output differs"

note tail
run tail -n 7 "$MNT/a.txt" > "$T/tail.txt" || fail "tail"
tail -n 7 "$T/plain.txt" | cmp - "$T/tail.txt" || fail "tail differs"
run tail -c 100 "$MNT/a.txt" > "$T/tail.txt" || fail "tail -c"
tail -c 100 "$T/plain.txt" | cmp - "$T/tail.txt" || fail "tail -c differs"

note ls, mkdir, mv, rm
run mkdir -p "$MNT/d/e" || fail "mkdir -p"
run mv "$MNT/sorted.txt" "$MNT/d/e/s.txt" || fail "mv"
out=$(run ls "$MNT/d/e") || fail "ls"
[ "$out" = "s.txt" ] || fail "ls shows '$out'"
run rm "$MNT/d/e/s.txt" || fail "rm"
run test -e "$MNT/d/e/s.txt" && fail "removed file still there"

note a shell redirection inside the shielded program
run sh -c "cat '$MNT/a.txt' | sort | sha256sum > '$T/sh.out'" || fail "sh pipeline"
[ "$(cut -d' ' -f1 "$T/sh.out")" = "$exp" ] || fail "pipeline output differs"

note "shell redirections onto protected files (the descriptor crosses exec)"
run sh -c "sort '$MNT/a.txt' > '$MNT/r.txt'; echo tail-line >> '$MNT/r.txt'; cat < '$MNT/r.txt' > '$T/r.out'" ||
    fail "sh redirections"
{ sort "$T/plain.txt"; echo tail-line; } | cmp - "$T/r.out" || fail "redirected output differs"

check_no_plaintext "$M"
[ ! -e "$MNT/a.txt" ] || fail "the mount point shows files outside the shield"

note tamper
run rm -r "$MNT/dd.bin" "$MNT/direct.bin" "$MNT/d" "$MNT/r.txt" || fail "rm -r"
[ "$(run ls "$MNT")" = a.txt ] || fail "the volume should hold only a.txt now"
tamper_largest
if run cat "$MNT/a.txt" > "$T/tampered.out" 2> "$T/tampered.err"; then
    fail "cat of a tampered file succeeded"
fi
grep -q "Input/output error" "$T/tampered.err" || { cat "$T/tampered.err" >&2; fail "no I/O error reported"; }
echo PASS
