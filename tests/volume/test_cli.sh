#!/usr/bin/env bash
# test_cli.sh - `scpctl volume ...` end to end: keygen, create, import, ls, cat, put, export,
# verify, info, --expect-tag; key file refused when group/other can access it (exit 4); wrong
# key (exit 4); a tampered chunk makes verify exit 3 and name the file and the offset; a
# rolled-back volume with --expect-tag exits 3; a volume on a read-only mount fails with a
# message that says so (exit 1); --help at every level exits 0; bad command
# lines exit 2; `scpctl image` through scpctl-image, the CAS commands through scpctl-cas. Usage: test_cli.sh PATH/TO/scpctl
. "$(dirname "$0")/../cli/lib.sh"
cli_setup test_cli.sh "$@"
# expect CODE DESCRIPTION -- CMD...: run CMD, output in $T/out and $T/err, check exit code.
expect() { exits "$1" "$2 (cmd: ${*:4})" "${@:4}"; }
contains() { # FILE PATTERN DESCRIPTION
    grep -q -- "$2" "$1" || { fail "$3: '$2' not in output"; sed 's/^/    | /' "$1" | head -10 >&2; }
}

# ---- help and usage ------------------------------------------------------------------------
expect 0 "scpctl --help" -- "$SCPCTL" --help
contains out volume "top-level help lists 'volume'"
expect 0 "scpctl help" -- "$SCPCTL" help
expect 2 "scpctl without arguments" -- "$SCPCTL"
expect 2 "unknown command" -- "$SCPCTL" nosuchcommand
# scpctl image's build, inspect and verify run in scpctl-image beside scpctl (cli/cmd_image.c):
# the same help and exit codes through it, scpctl itself without libarchive, and a clear error
# when scpctl-image is missing
expect 0 "scpctl image --help (scpctl-image)" -- "$SCPCTL" image --help
contains out "scpctl image inspect" "scpctl image --help"
expect 2 "scpctl image without subcommand" -- "$SCPCTL" image
expect 2 "unknown image subcommand" -- "$SCPCTL" image nosuch
expect 1 "scpctl image inspect of a missing file" -- "$SCPCTL" image inspect "$T/no-such.tar"
if ldd "$SCPCTL" | grep -q libarchive; then fail "scpctl links libarchive (its image commands belong in scpctl-image)"; fi
mkdir -p "$T/alone" && cp "$SCPCTL" "$T/alone/scpctl"
expect 1 "scpctl image without scpctl-image beside it" -- "$T/alone/scpctl" image inspect x.tar
contains err "scpctl-image" "the missing scpctl-image is named"
# The CAS commands, `run --cas` and `image entry` run in scpctl-cas beside scpctl (cli/tool.c):
# their help and errors through it, and scpctl itself loads only libc and libcrypto, so that a
# short `scpctl run` (development mode) does not load the CAS side's libraries at its start
expect 0 "scpctl cas --help (scpctl-cas)" -- "$SCPCTL" cas --help
contains out "scpctl cas serve" "scpctl cas --help"
expect 0 "scpctl session --help (scpctl-cas)" -- "$SCPCTL" session --help
expect 2 "scpctl run --cas without --session (scpctl-cas)" -- "$SCPCTL" run --cas 127.0.0.1:1 -- true
contains err "needs --session" "scpctl run --cas's own check"
for lib in libssl libsqlite3 libyaml libjansson libarchive; do
    if ldd "$SCPCTL" | grep -q "$lib"; then fail "scpctl links $lib (its commands belong in scpctl-cas or scpctl-image)"; fi
done
expect 1 "scpctl cas without scpctl-cas beside it" -- "$T/alone/scpctl" cas --help
contains err "scpctl-cas" "the missing scpctl-cas is named"
expect 0 "scpctl volume --help" -- "$SCPCTL" volume --help
expect 0 "scpctl volume -h" -- "$SCPCTL" volume -h
expect 2 "scpctl volume without subcommand" -- "$SCPCTL" volume
expect 2 "unknown volume subcommand" -- "$SCPCTL" volume nosuch
for sub in keygen create import export ls cat put verify info mkdir rm; do
    expect 0 "scpctl volume $sub --help" -- "$SCPCTL" volume "$sub" --help
    [ -s out ] || fail "scpctl volume $sub --help printed nothing on stdout"
done
expect 2 "create with an unknown option" -- "$SCPCTL" volume create v --bogus
expect 2 "create --chunk-size 1000 (not a power of two)" -- "$SCPCTL" volume create v --key-file k --chunk-size 1000
expect 2 "create --chunk-size 2048 (below 4096)" -- "$SCPCTL" volume create v --key-file k --chunk-size 2048
expect 2 "--expect-tag that is not a tag" -- "$SCPCTL" volume ls v --key-file k --expect-tag abc
expect 2 "--key for --key-file" -- "$SCPCTL" volume ls v --key k
contains "$T/err" "given with --key-file" "--key names --key-file"
expect 2 "create without a directory" -- "$SCPCTL" volume create

# ---- keygen ------------------------------------------------------------------------------
expect 0 "keygen" -- "$SCPCTL" volume keygen k1
[ "$(stat -c %a k1)" = 600 ] || fail "keygen: mode $(stat -c %a k1), want 600"
[ "$(stat -c %s k1)" = 32 ] || fail "keygen: $(stat -c %s k1) bytes, want 32"
expect 0 "second keygen" -- "$SCPCTL" volume keygen k2
cmp -s k1 k2 && fail "two keygens wrote the same key"

# ---- create, import ------------------------------------------------------------------------
MARK=CLI-PLAINTEXT-MARKER-93c1
mkdir -p src/sub/deeper src/emptydir
source "$(dirname "${BASH_SOURCE[0]}")/../tamper.sh"
printf 'hello %s\n' "$MARK" > src/hello.txt
: > src/empty
head -c 300000 /dev/urandom > src/big.bin
printf '%s' "$MARK" >> src/big.bin
printf 'nested %s\n' "$MARK" > "src/sub/with space.txt"
head -c 5000 /dev/urandom > src/sub/deeper/five-k
expect 2 "create without --key-file (a command-line error)" -- "$SCPCTL" volume create vol
expect 0 "create" -- "$SCPCTL" volume create vol --key-file k1
[ -f vol/scpvol.hdr ] || fail "create: no scpvol.hdr"
expect 1 "create in a non-empty directory" -- "$SCPCTL" volume create vol --key-file k1
expect 0 "create with chunk size 65536" -- "$SCPCTL" volume create vol64 --key-file k1 --chunk-size 65536
expect 0 "info vol64" -- "$SCPCTL" volume info vol64 --key-file k1
contains out 65536 "info shows chunk size 65536"
expect 0 "import" -- "$SCPCTL" volume import src imp --key-file k1
if grep -rqa -- "$MARK" imp; then fail "plaintext marker found under the volume directory"; fi
if find imp | grep -q -e hello -e 'with space' -e deeper -e big.bin; then
    fail "file names visible on the host"; fi

# ---- ls, cat -------------------------------------------------------------------------------
expect 0 "ls" -- "$SCPCTL" volume ls imp --key-file k1
for n in hello.txt empty big.bin sub emptydir; do contains out "$n" "ls lists $n"; done
expect 0 "ls sub" -- "$SCPCTL" volume ls imp sub --key-file k1
contains out "with space.txt" "ls sub lists 'with space.txt'"
expect 0 "ls -R" -- "$SCPCTL" volume ls imp -R --key-file k1
contains out five-k "ls -R reaches sub/deeper/five-k"
expect 0 "ls -l" -- "$SCPCTL" volume ls imp -l --key-file k1
contains out 300025 "ls -l shows the size of big.bin"
expect 0 "cat hello.txt" -- "$SCPCTL" volume cat imp hello.txt --key-file k1
cmp -s out src/hello.txt || fail "cat hello.txt differs"
expect 0 "cat big.bin" -- "$SCPCTL" volume cat imp big.bin --key-file k1
cmp -s out src/big.bin || fail "cat big.bin differs"
expect 0 "cat 'sub/with space.txt'" -- "$SCPCTL" volume cat imp "sub/with space.txt" --key-file k1
cmp -s out "src/sub/with space.txt" || fail "cat 'sub/with space.txt' differs"
expect 0 "cat empty" -- "$SCPCTL" volume cat imp empty --key-file k1
[ -s out ] && fail "cat of an empty file printed bytes"
expect 1 "cat a missing file" -- "$SCPCTL" volume cat imp nosuch --key-file k1

# ---- info and tags, put ---------------------------------------------------------------------
expect 0 "info" -- "$SCPCTL" volume info imp --key-file k1
contains out "chunk size: *4096" "info chunk size"
contains out "files: *5" "info file count (5 files)"
TAG1=$(sed -n 's/^tag: *//p' out)
[[ "$TAG1" =~ ^[0-9a-f]{80}$ ]] || fail "info: tag '$TAG1' is not 80 hex digits"
cp -a imp imp-old
head -c 70000 /dev/urandom > local.bin
expect 0 "put from a file" -- "$SCPCTL" volume put imp sub/put.bin local.bin --key-file k1
printf 'from stdin %s\n' "$MARK" > stdin.txt
expect 0 "put from stdin" -- bash -c '"$0" volume put imp stdin.txt --key-file k1 < stdin.txt' "$SCPCTL"
expect 0 "cat put.bin" -- "$SCPCTL" volume cat imp sub/put.bin --key-file k1
cmp -s out local.bin || fail "cat sub/put.bin differs from what was put"
expect 0 "cat stdin.txt" -- "$SCPCTL" volume cat imp stdin.txt --key-file k1
cmp -s out stdin.txt || fail "cat stdin.txt differs from what was put"
expect 0 "put over an existing file" -- "$SCPCTL" volume put imp hello.txt stdin.txt --key-file k1
expect 0 "cat replaced hello.txt" -- "$SCPCTL" volume cat imp hello.txt --key-file k1
cmp -s out stdin.txt || fail "put did not replace hello.txt"
expect 0 "info after put" -- "$SCPCTL" volume info imp --key-file k1
TAG2=$(sed -n 's/^tag: *//p' out)
[ "$TAG1" != "$TAG2" ] || fail "tag did not change after put"
expect 0 "info --expect-tag (current)" -- "$SCPCTL" volume info imp --key-file k1 --expect-tag "$TAG2"
expect 0 "info --expect-tag (older tag: newer state accepted)" -- "$SCPCTL" volume info imp --key-file k1 --expect-tag "$TAG1"
expect 3 "rolled-back volume with --expect-tag" -- "$SCPCTL" volume verify imp-old --key-file k1 --expect-tag "$TAG2"
expect 3 "rolled-back volume: cat with --expect-tag" -- "$SCPCTL" volume cat imp-old hello.txt --key-file k1 --expect-tag "$TAG2"
expect 0 "old volume with its own tag" -- "$SCPCTL" volume verify imp-old --key-file k1 --expect-tag "$TAG1"
"$SCPCTL" volume info imp --key-file k1 --expect-tag nothex >/dev/null 2>&1
rc=$?; [ $rc = 1 ] || [ $rc = 2 ] || fail "malformed --expect-tag: exit $rc, want 1 or 2"

# ---- export ------------------------------------------------------------------------------
expect 0 "export" -- "$SCPCTL" volume export imp exported --key-file k1
mkdir -p want && cp -a src/. want/ && cp local.bin want/sub/put.bin && cp stdin.txt want/stdin.txt && cp stdin.txt want/hello.txt
diff -r want exported >/dev/null || { fail "export differs from the source tree"; diff -r want exported | head -5 >&2; }
expect 0 "verify" -- "$SCPCTL" volume verify imp --key-file k1
contains out "ok" "verify says ok"

# ---- attributes, links and special files through import and export (cp -a) ---------------
# Modes (set-group-ID too), nanosecond times, numeric owners (as root), a hard link, a symbolic
# link with its own time, a FIFO, a socket; the top directory's mode and time become the
# volume root's and come back onto the output directory. A socket is not exported (warning).
mkdir -p at/d/e
printf 'attr %s\n' "$MARK" > at/d/f
chmod 640 at/d/f && ln at/d/f at/hl && ln -s d/f at/sl && mkfifo at/fifo && chmod 2750 at/d
python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' at/sock
if [ "$(id -u)" = 0 ]; then chown 1234:5678 at/d/f && chown -h 4321:8765 at/sl; fi
touch -d '2020-01-02 03:04:05.123456789 UTC' at/d/f at/d
touch -h -d '2019-05-05 05:05:05' at/sl
chmod 0711 at && touch -d '2018-01-01 01:01:01.5' at
expect 0 "import of attributes and special files" -- "$SCPCTL" volume import at vat --key-file k1
if grep -rqa -- "$MARK" vat; then fail "plaintext marker found under the volume directory (attributes)"; fi
expect 0 "ls -l -R of the attributes volume" -- "$SCPCTL" volume ls vat -l -R --key-file k1
contains out "^d2750 .* d/$" "ls -l shows the set-group-ID directory"
contains out "^l0777 .* sl -> d/f$" "ls -l shows the link and its target"
contains out "^p0644 .* fifo$" "ls -l shows the FIFO"
contains out " 2020-01-02 03:04  d/f$" "ls -l shows the modification time (UTC)"
contains out "^s.* sock$" "ls -l shows the socket"
expect 0 "export of attributes and special files" -- "$SCPCTL" volume export vat oat --key-file k1
contains err "skipping 'sock'" "export names the socket it skips"
listing() { (cd "$1" && find . ! -name sock -printf '%p %M %U:%G %n %T@ %l\n' | sort); }
listing at > at.list && listing oat > oat.list
if ! cmp -s at.list oat.list; then fail "export differs from the imported tree in modes, owners, links or times"; diff at.list oat.list | head -8 >&2; fi
[ "$(stat -c %i oat/d/f)" = "$(stat -c %i oat/hl)" ] || fail "the hard link came back as two files"
[ "$(stat -c '%a %Y' oat)" = "711 1514768461" ] || fail "the output directory has $(stat -c '%a %Y' oat), not the root's 711 1514768461"
cmp -s at/d/f oat/d/f || fail "the exported file's bytes differ"
# export writes nothing through a name an earlier run left: a link planted at hl is replaced
mkdir -p oat2 && printf 'victim\n' > victim && ln -s "$T/victim" oat2/hl
expect 0 "export over a planted link" -- "$SCPCTL" volume export vat oat2 --key-file k1
[ "$(cat victim)" = victim ] || fail "export wrote through a planted symbolic link"
[ -L oat2/hl ] && fail "the planted link is still there"
# OUTDIR given as a link to a directory is followed, as cp follows its destination
mkdir -p oat3real && ln -s oat3real oat3
expect 0 "export to a link to a directory" -- "$SCPCTL" volume export vat oat3 --key-file k1
cmp -s at/d/f oat3real/d/f || fail "export through OUTDIR's link did not land in the directory"
# a root that was never given attributes leaves the output directory's own
expect 0 "create for the root check" -- "$SCPCTL" volume create vnr --key-file k1
expect 0 "put into it" -- "$SCPCTL" volume put vnr one stdin.txt --key-file k1
mkdir -p onr && chmod 0751 onr
expect 0 "export of a volume whose root has no attributes" -- "$SCPCTL" volume export vnr onr --key-file k1
[ "$(stat -c %a onr)" = 751 ] || fail "export changed the mode of the output directory to $(stat -c %a onr)"
# import refuses to put a file where the volume has a directory, and says so
mkdir -p clash && printf 'x\n' > clash/d
expect 1 "import of a file over a directory" -- "$SCPCTL" volume import clash vat --key-file k1
contains err "cannot replace the directory 'd'" "the clash is named"
# an entry that cannot be read is left out and named, as cp -a does, and the rest goes in: a
# file and a directory without read permission, imported by a user who is not their owner
# (as root: nobody, over a tree it owns, in a directory it may enter); the exit says so (1)
mkdir -p pt/p/sub pt/p/locked
printf 'kept %s\n' "$MARK" > pt/p/a && printf 'deep\n' > pt/p/sub/b && printf 'no\n' > pt/p/noread
printf 'c\n' > pt/p/locked/c && chmod 000 pt/p/noread pt/p/locked && cp k1 pt/k && mkdir pt/v
AS=()
if [ "$(id -u)" = 0 ]; then
    chmod 755 "$T" pt && chown -R nobody: pt && AS=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
fi
expect 1 "import with unreadable entries" -- "${AS[@]}" "$SCPCTL" volume import pt/p pt/v --key-file pt/k
contains err "cannot open 'pt/p/noread': Permission denied (left out)" "the unreadable file is named"
contains err "cannot read directory 'pt/p/locked': Permission denied (left out)" "the unreadable directory is named"
contains err "2 entries could not be imported" "the summary counts them"
expect 0 "ls -R of the partly imported volume" -- "${AS[@]}" "$SCPCTL" volume ls pt/v -R --key-file pt/k
[ "$(sort out | tr '\n' ' ')" = "a locked/ sub/ sub/b " ] || fail "the partly imported volume lists '$(sort out | tr '\n' ' ')'"
expect 0 "cat of an imported file beside them" -- "${AS[@]}" "$SCPCTL" volume cat pt/v a --key-file pt/k
contains out "kept $MARK" "the file beside the unreadable ones"
chmod 700 "$T"

# ---- key files ------------------------------------------------------------------------------
cp k1 k-group && chmod 640 k-group
expect 4 "key file readable by group" -- "$SCPCTL" volume ls imp --key-file k-group
contains err "chmod" "unsafe key message says what to do"
cp k1 k-other && chmod 604 k-other
expect 4 "key file readable by others" -- "$SCPCTL" volume cat imp hello.txt --key-file k-other
cp k1 k-gw && chmod 620 k-gw
expect 4 "key file writable by group" -- "$SCPCTL" volume verify imp --key-file k-gw
expect 4 "create with an unsafe key file" -- "$SCPCTL" volume create vol-unsafe --key-file k-group
head -c 31 k1 > k-short && chmod 600 k-short
expect 4 "key file of 31 bytes" -- "$SCPCTL" volume ls imp --key-file k-short
expect 4 "missing key file" -- "$SCPCTL" volume ls imp --key-file k-nosuch
expect 4 "wrong key" -- "$SCPCTL" volume ls imp --key-file k2
expect 4 "wrong key (verify)" -- "$SCPCTL" volume verify imp --key-file k2
expect 1 "not a volume" -- "$SCPCTL" volume ls src --key-file k1

# ---- tampering -----------------------------------------------------------------------------
cp -a imp tam
# the data object of big.bin is the largest .d file (300025 bytes -> 74 chunks)
BIGD=$(ls -S tam/objects/*.d | head -1)
flip_byte "$BIGD" $((4096 * 7 + 123))
expect 3 "verify of a tampered chunk" -- "$SCPCTL" volume verify tam --key-file k1
cat out err > both
contains both "big.bin" "verify names the tampered file"
contains both "28672" "verify names the offset of the tampered chunk (7 * 4096)"
expect 3 "cat of a tampered file" -- "$SCPCTL" volume cat tam big.bin --key-file k1
contains err "big.bin" "cat's error names the file"
[ "$(stat -c %s out)" -le 28672 ] || fail "cat printed bytes past the tampered chunk"
cmp -s out <(head -c "$(stat -c %s out)" src/big.bin) || fail "cat printed wrong bytes before failing"
expect 0 "cat of an untouched file in a tampered volume" -- "$SCPCTL" volume cat tam sub/deeper/five-k --key-file k1
cmp -s out src/sub/deeper/five-k || fail "untouched file reads wrong"
expect 3 "export of a tampered volume" -- "$SCPCTL" volume export tam out-tam --key-file k1
# (a file that put wrote: its close committed in place, so .t alone holds its table; an
# import's closes are lazy, and a file's log, which redoes its entries, survives them)
expect 0 "create for the table check" -- "$SCPCTL" volume create tam2 --key-file k1
expect 0 "put big.bin" -- "$SCPCTL" volume put tam2 big.bin src/big.bin --key-file k1
HDR_T=$(ls -S tam2/objects/*.t | head -1)
flip_byte "$HDR_T" 5
expect 3 "verify with a tampered chunk table" -- "$SCPCTL" volume verify tam2 --key-file k1
cp -a imp tam3
for s in tam3/manifest.0 tam3/manifest.1; do flip_byte "$s" 40; done
: > tam3/manifest.2
expect 3 "every manifest slot tampered" -- "$SCPCTL" volume ls tam3 --key-file k1

# ---- a read-only mount: a clear error, not "incomplete" ----------------------------------
# Root only: a bind mount made read-only in a mount namespace of its own (as root, a plain
# directory's modes would not stop the opens). A volume is opened read-write even to be read
# (its lock file and manifest), so the open fails; what matters is that it says why.
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
    mkdir ro
    expect 1 "ls of a volume on a read-only mount" -- unshare -m sh -c \
        'mount --bind imp ro && mount -o remount,ro,bind ro && exec "$0" volume ls ro --key-file k1' "$SCPCTL"
    contains err "cannot be opened for writing" "a read-only mount's error says what is wrong"
    contains err "Read-only file system" "a read-only mount's error names the cause"
    contains err "mount it read-write" "a read-only mount's error says what to do"
fi

cli_finish test_cli.sh
