# tests/shield/lib.sh - helpers shared by the shield tests (sourced, POSIX sh).
# Usage in a test:  . "$(dirname "$0")/lib.sh"; setup "$@"
# Provides: $T (temp dir, removed at exit), $VOL (volume dir), $MNT (mount point), $KEY,
#           run PROGRAM ARGS...   (runs under scpctl run with the volume at $MNT)
#           fail MSG, check_no_plaintext MARKER, tamper_largest
#           static_setup SCPCTL MKVOL (the static-program tests: $BB, $GO, cat_vol, build_gofiles)

set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "-- $*"; }

setup() {
    SCPCTL=$1
    MKVOL=$2
    T=$(mktemp -d "${TMPDIR:-/tmp}/scp-shield-test.XXXXXX") || exit 1
    trap 'rm -rf "$T"' EXIT
    VOL=$T/vol
    MNT=$T/mnt
    KEY=$T/key
    "$MKVOL" "$KEY" "$VOL" || fail "cannot create a volume"
}

run() { "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$@"; }

# both_ways PROG SECS ARGS...: a multi-process idiom test's program (pidfile.c, lockfile.c) on
# a plain directory for 1 s, then under the shield on the volume for SECS s: PROG DIR SECONDS
# ARGS..., which checks its own outcome and exits non-zero when it fails
both_ways() {
    prog=$1 secs=$2
    shift 2
    mkdir -p "$T/plain"
    "$prog" "$T/plain" 1 "$@" || fail "without the shield, on a plain directory (see above)"
    run "$prog" "$MNT" "$secs" "$@" || fail "under the shield, on a protected volume (see above)"
}

# static_setup SCPCTL MKVOL: setup, and the static programs that scpctl run serves from its
# supervisor: BB (busybox-static) and GO (the go compiler), each empty when not installed;
# skips the test (77) when neither is. The supervisor's notes are kept quiet (SCP_QUIET).
static_setup() {
    setup "$1" "$2"
    BB=$(command -v busybox || true)
    GO=$(command -v go || true)
    [ -n "$BB" ] && file -L "$BB" 2>/dev/null | grep -q 'statically linked' || BB=""
    [ -n "$BB$GO" ] || { echo "SKIP: neither busybox-static nor go (golang-go) is installed"; exit 77; }
    export SCP_QUIET=1
}

# cat_vol NAME: the volume's file NAME as scpctl decrypts it (nothing when it cannot).
cat_vol() { "$SCPCTL" volume cat --key-file "$KEY" "$VOL" "$1" 2>/dev/null; }

# build_gofiles: the static Go test program (tests/shield/go/gofiles.go) as $T/gofiles.
build_gofiles() {
    GOCACHE=$T/gocache GOPATH=$T/gopath GO111MODULE=off CGO_ENABLED=0 \
        "$GO" build -o "$T/gofiles" "$(dirname "$0")/go/gofiles.go" || fail "go build failed"
}

# The backing directory must not contain the marker anywhere (names or contents).
# A process outside the shield that writes 0 to the volume's "shared wanted" word (VOL_WANT_OFF
# 64 of the lock file, src/volume/internal.h) in a loop, as another process's go_private or
# try_sole does (and the host may): $T/clearing exists once it runs. Sets CLEARER (its pid).
start_clearer() {
    cat > "$T/clear.py" <<EOF
import mmap, os
m = mmap.mmap(os.open("$VOL/lock", os.O_RDWR), 4096)
open("$T/clearing", "w").close()
zero = bytes(4)
while True:
    m[64:68] = zero
EOF
    python3 "$T/clear.py" & CLEARER=$!
}

check_no_plaintext() {
    if grep -r -a -l -F -- "$1" "$VOL" >/dev/null 2>&1; then
        grep -r -a -l -F -- "$1" "$VOL" >&2
        fail "plaintext marker '$1' found in the backing directory"
    fi
    if find "$VOL" | grep -F -- "$1" >/dev/null; then fail "marker in a file name"; fi
}

# Flip one byte in the middle of the largest data object (.d) of the volume, with every journal
# emptied first, as a writer's checkpoint leaves it (the program has exited: what the journals
# hold is applied). A short journal that a read-only load leaves (since session 51; the first
# load used to empty it) would redo the chunks it names over the flip: the file then reads
# right, which is healing from an authenticated log, not the detection checked here.
tamper_largest() {
    find "$VOL" -type f -name '*.j' -exec truncate -s 0 {} +
    f=$(find "$VOL" -type f -name '*.d' -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
    [ -n "$f" ] || fail "no data file to tamper with"
    size=$(stat -c %s "$f")
    off=$((size / 2))
    flip_byte "$f" $off || fail "tamper failed"
    note "tampered with $(basename "$f") at offset $off"
}

# free_port (tests/port.sh): a port below the ephemeral range, reserved for this test. (Found
# from $0: the tests that source this file live beside it, and some run under sh, which has
# no BASH_SOURCE.)
. "$(dirname "$0")/../port.sh"
. "$(dirname "$0")/../tamper.sh"

# pg_setup SCPCTL MKVOL: PostgreSQL 15 (Debian's) as user postgres on a fresh protected volume
# that it owns; skips (77) without PostgreSQL 15, setpriv, the user or root. Sets PGBIN SCPCTL
# MKVOL T VOL KEY, PGD (the mount point: a directory that does not exist on the host) and AS
# (the command prefix that becomes postgres); fail shows the server log's tail.
pg_setup() {
    PGBIN=/usr/lib/postgresql/15/bin
    [ -x $PGBIN/initdb ] && [ -x $PGBIN/pg_ctl ] && command -v pgbench >/dev/null ||
        { echo "PostgreSQL 15 not installed: skipped"; exit 77; }
    fail() { echo "FAIL: $*" >&2; [ -f "$T/pg.log" ] && tail -20 "$T/pg.log" >&2; exit 1; }
    db_setup postgres "$1" "$2"
    PGD=/scp-pg-$$-$RANDOM/pgdata
}

# db_setup USER SCPCTL MKVOL: a database server's test as USER (postgres, mysql): skips (77)
# without setpriv, the user or root; sets SCPCTL MKVOL, T (a temp dir USER owns; the caller
# removes it), VOL and KEY (a fresh protected volume USER owns) and AS (the command prefix that
# becomes USER).
db_setup() {
    command -v setpriv >/dev/null && id "$1" >/dev/null 2>&1 || { echo "setpriv or user $1 missing: skipped"; exit 77; }
    [ "$(id -u)" = 0 ] || { echo "needs root (to become $1): skipped"; exit 77; }
    SCPCTL=$2
    MKVOL=$3
    T=$(mktemp -d "${TMPDIR:-/tmp}/scp-shield-test.XXXXXX") || exit 1
    chmod 755 "$T" && chown "$1": "$T"
    VOL=$T/vol
    KEY=$T/key
    AS="setpriv --reuid=$1 --regid=$1 --init-groups"
    $AS "$MKVOL" "$KEY" "$VOL" || fail "cannot create a volume as $1"
}
