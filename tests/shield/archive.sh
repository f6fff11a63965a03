#!/bin/sh
# Copying trees with owners, modes, times and links into and out of a protected volume with the
# tools people use for it (issue 12's compatibility list): rsync -a, cp -a, tar (create and
# extract, pax format for nanosecond times, owners kept as root does), and a perl script that writes, renames and lists files.
# Each copy in the volume must show the source's names, types, modes, owners (when run as root),
# modification times and link targets, as find(1) under the shield reports them; the bytes come
# back through `scpctl volume cat`, a tar made inside the volume unpacks on the host to the same
# tree, and the backing directory holds no plaintext.
. "$(dirname "$0")/lib.sh"
setup "$@"
command -v rsync >/dev/null && command -v perl >/dev/null && command -v tar >/dev/null ||
    { echo "SKIP: rsync, perl or tar missing"; exit 77; }

M=SCPMARK_arch1ve_4c2e
S=$T/src
mkdir -p "$S/dir/sub" "$S/private"
echo "$M plain file" >"$S/a.txt"
head -c 300000 /dev/urandom | od -An -tx1 | sed "s/^/$M /" >"$S/dir/big.txt"
printf '#!/bin/sh\necho %s\n' "$M" >"$S/dir/run.sh"
echo "$M secret" >"$S/private/key"
ln -s ../a.txt "$S/dir/link-to-a"
ln -s missing-target "$S/dangling"
chmod 0640 "$S/a.txt"; chmod 0755 "$S/dir/run.sh"; chmod 0600 "$S/private/key"
chmod 0750 "$S/private"; chmod 2775 "$S/dir/sub"; chmod 0644 "$S/dir/big.txt"
touch -d '2021-03-04 05:06:07.123456789' "$S/a.txt" "$S/dir/big.txt"
touch -d '2019-12-31 23:59:58' "$S/private/key" "$S/dir/run.sh"
ROOT=0
if [ "$(id -u)" = 0 ]; then
    ROOT=1
    chown 1234:2345 "$S/a.txt"
    chown 65534:65534 "$S/private" "$S/private/key"
    chown -h 4321:4321 "$S/dir/link-to-a"
fi
# what a copy must show: path, type, mode, owner and group (as root), mtime (files), link target
listing() { # DIR [run]
    d=$1; shift
    if [ "$ROOT" = 1 ]; then own='%U:%G'; else own='-'; fi
    "$@" find "$d" -mindepth 1 \( -type l -printf "%P %y $own -> %l\n" \) -o \
        \( -type d -printf "%P %y %m $own\n" \) -o \( -type f -printf "%P %y %m $own %T@\n" \) | sort
}
listing "$S" >"$T/want"

note "rsync -a into the volume"
run rsync -a "$S/" "$MNT/r/" || fail "rsync -a into the volume"
listing "$MNT/r" run >"$T/got-r" || fail "find in the volume"
diff "$T/want" "$T/got-r" >&2 || fail "rsync -a: the volume's copy differs from the source (above: < source, > volume)"

note "cp -a into the volume"
run cp -a "$S" "$MNT/c" || fail "cp -a into the volume"
listing "$MNT/c" run >"$T/got-c"
diff "$T/want" "$T/got-c" >&2 || fail "cp -a: the volume's copy differs from the source"

note "tar into the volume (extracted by a shielded tar, owners kept as root)"
tar --format=posix -cf "$T/src.tar" -C "$S" . || fail "tar of the source"
run sh -c "mkdir '$MNT/t' && tar xpf '$T/src.tar' -C '$MNT/t'" || fail "tar x into the volume"
listing "$MNT/t" run >"$T/got-t"
diff "$T/want" "$T/got-t" >&2 || fail "tar x: the volume's copy differs from the source"

note "the bytes, through scpctl volume cat"
for f in a.txt dir/big.txt dir/run.sh private/key; do
    for top in r c t; do
        "$SCPCTL" volume cat "$VOL" "$top/$f" --key-file "$KEY" | cmp -s - "$S/$f" || fail "$top/$f: other bytes in the volume"
    done
done
[ "$(run sh "$MNT/r/dir/run.sh")" = "$M" ] || fail "the copied script does not run from the volume"

note "tar out of the volume: unpacks on the host to the same tree"
run tar --format=posix -cf "$T/out.tar" -C "$MNT/r" . || fail "tar c of the volume's copy"
mkdir "$T/back" && tar xpf "$T/out.tar" -C "$T/back" || fail "tar x on the host"
listing "$T/back" >"$T/got-back"
diff "$T/want" "$T/got-back" >&2 || fail "a tar made in the volume unpacks to another tree"
diff -r --no-dereference "$S" "$T/back" >&2 || fail "a tar made in the volume unpacks to other bytes"

note "rsync -a again: nothing to send (sizes and times match), then one changed file"
n=$(run rsync -a --itemize-changes "$S/" "$MNT/r/" | grep -c '^[<>c]' || true)
[ "$n" = 0 ] || fail "a second rsync -a sent $n entries: the volume reports other sizes or times"
echo "$M changed" >>"$S/a.txt"; touch -d '2022-01-01' "$S/a.txt"
run rsync -a "$S/" "$MNT/r/" || fail "rsync -a of a change"
"$SCPCTL" volume cat "$VOL" r/a.txt --key-file "$KEY" | cmp -s - "$S/a.txt" || fail "rsync of a changed file: other bytes"

note "perl: write, rename, append, list, stat"
run perl -e '
    my $d = shift; mkdir "$d/p" or die "mkdir: $!";
    open(my $f, ">", "$d/p/new.tmp") or die "open: $!"; print $f "'"$M"' from perl\n"; close $f or die;
    rename("$d/p/new.tmp", "$d/p/final.txt") or die "rename: $!";
    open($f, ">>", "$d/p/final.txt") or die; print $f "appended\n"; close $f;
    chmod 0604, "$d/p/final.txt" or die "chmod: $!";
    opendir(my $h, "$d/p") or die; my @n = grep { !/^\./ } readdir $h; closedir $h;
    my @st = stat("$d/p/final.txt"); printf "%s %o %d\n", join(",", @n), $st[2] & 07777, $st[7];
' "$MNT" >"$T/perl.out" || fail "perl on the volume"
[ "$(cat "$T/perl.out")" = "final.txt 604 $(( ${#M} + 11 + 9 ))" ] || fail "perl saw: $(cat "$T/perl.out")"
printf '%s from perl\nappended\n' "$M" >"$T/perl.want"
"$SCPCTL" volume cat "$VOL" p/final.txt --key-file "$KEY" | cmp -s - "$T/perl.want" || fail "perl's file in the volume holds other bytes"

check_no_plaintext "$M"
echo "PASS (rsync -a, cp -a, tar both ways, perl; owners checked: $ROOT)"
