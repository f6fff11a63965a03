# tests/cas/lib.sh - helpers for the CAS integration tests (sourced).
# Usage: source lib.sh SCPCTL CAS_PROBE
set -u
SCPCTL=$1
PROBE=$2
T=$(mktemp -d "${TMPDIR:-/tmp}/scp-cas-test.XXXXXX")
export SCP_HOME=$T/home
unset SCP_CAS SCP_CAS_PIN SCP_IDENTITY
CAS_PID=
# The daemon's sanitizer options, as the suite set them (start_cas uses these even after
# client_leaks_off).
CAS_ASAN_OPTIONS=${ASAN_OPTIONS-}

# client_leaks_off: under the sanitizers (.ci/sanitize.sh), the client commands this test runs
# from here on skip LeakSanitizer's exit scan; the CAS daemon keeps it. The scan costs 50-60 ms
# per process on CI's kind of machine (it reads libasan's 5.6 MB .bss, a page fault per page):
# about a sixth of the ASan time of a test that runs dozens of clients (cas_audit alone 33.6 ->
# 27.8 s). ASan's and UBSan's checks stay on, and the other CAS tests run the same client code
# with the leak check.
client_leaks_off() {
    [ -n "${ASAN_OPTIONS:-}" ] && export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
    return 0
}

fail() {
    echo "FAIL: $*" >&2
    [ -f "$T/cas.err" ] && { echo "--- cas stderr:" >&2; tail -20 "$T/cas.err" >&2; }
    exit 1
}

# measure_copy VAR PROGRAM [platform measure options...]: copy PROGRAM (a name in PATH or a
# path; symlinks resolved) to $T/bin/NAME, and set VAR to the measurement of the copy (with the
# options, e.g. --trusted FILE). The test runs $T/bin/NAME: what was measured is what runs.
measure_copy() {
    local var=$1 prog=$2 src
    shift 2
    src=$(readlink -f "$(command -v "$prog")") || fail "no $prog"
    mkdir -p "$T/bin"
    cp "$src" "$T/bin/$(basename "$prog")"
    expect_rc 0 "$SCPCTL" platform measure "$@" -- "$T/bin/$(basename "$prog")"
    printf -v "$var" '%s' "$(cat "$T/last.out")"
}

# user_dir USER: for a service that `scpctl run` starts as USER (setpriv, AS=(...) set here):
# W, a directory outside $T (which is 0700) owned by USER, with a copy of p1.key USER can read.
# The caller removes W.
user_dir() {
    AS=(setpriv --reuid="$1" --regid="$1" --init-groups)
    W=$(mktemp -d /var/tmp/scp-net-user.XXXXXX) || fail "mktemp"
    chmod 755 "$W"
    cp "$T/p1.key" "$W/p1.key"
    chown -R "$1": "$W"
}

# freeport: a port below the ephemeral range, reserved for this test (tests/port.sh).
source "$(dirname "${BASH_SOURCE[0]}")/../port.sh"
freeport() { free_port; }

cleanup() {
    capture_kill
    pg_store_cleanup
    if [ -n "$CAS_PID" ]; then
        kill -TERM "$CAS_PID" 2>/dev/null
        wait "$CAS_PID" 2>/dev/null
    fi
    rm -rf "$T"
}
trap cleanup EXIT
[ -n "${CAS_TEST_DEBUG:-}" ] && set -x

# CAS_TEST_STORE=pg: the test's CAS keeps its state in a PostgreSQL database that this script
# starts (tests/cas/pgstore.sh) instead of DATA/cas.db; db_sql runs SQL on whichever it is.
source "$(dirname "${BASH_SOURCE[0]}")/pgstore.sh"
if [ "${CAS_TEST_STORE:-}" = pg ]; then
    pg_store_usable || { echo "SKIP: no PostgreSQL 15 or not root (CAS_TEST_STORE=pg)"; exit 0; }
    pg_store_start
else
    unset CAS_STORE
fi
db_sql() {
    if [ -n "${CAS_STORE:-}" ]; then pg_sql "$1"; else sqlite3 "$T/data/cas.db" "$1"; fi
}
# db_wipe: after `rm -rf $T/data` (a new CAS), its database goes too
db_wipe() {
    [ -n "${CAS_STORE:-}" ] || return 0
    pg_sql "DROP SCHEMA public CASCADE; CREATE SCHEMA public" >/dev/null || fail "cannot empty the database"
}
# db_grep PATTERN...: whether the store's bytes on disk (cas.db and its WAL, or the whole
# PostgreSQL data directory: tables, WAL) hold one of the patterns; prints the file.
db_grep() {
    local args=() p
    for p in "$@"; do args+=(-e "$p"); done
    if [ -n "${CAS_STORE:-}" ]; then
        pg_sql "CHECKPOINT" >/dev/null
        grep -r -a -l "${args[@]}" "$PG_DIR/db"
    else
        grep -a -l "${args[@]}" "$T/data"/cas.db*
    fi
}

# start_cas [serve options]: start the daemon on a free port with data in $T/data.
start_cas() {
    rm -f "$T/port"
    ASAN_OPTIONS=$CAS_ASAN_OPTIONS "$SCPCTL" cas serve --data "$T/data" ${CAS_STORE:+--store "$CAS_STORE"} --listen 127.0.0.1:0 --port-file "$T/port" "$@" >"$T/cas.out" 2>"$T/cas.err" &
    CAS_PID=$!
    for _ in $(seq 200); do
        [ -s "$T/port" ] && break
        kill -0 "$CAS_PID" 2>/dev/null || fail "cas serve died: $(cat "$T/cas.err")"
        sleep 0.05
    done
    [ -s "$T/port" ] || fail "cas serve did not start"
    grep -q "^scp-cas: WARNING: running with the 'sim' TEE backend: memory is NOT protected" "$T/cas.err" ||
        fail "CAS in sim mode did not say that memory is not protected: $(cat "$T/cas.err")"
    ADDR=127.0.0.1:$(cat "$T/port")
    PIN=$(sed -n 's/.*fingerprint (pin this): \([0-9a-f]*\).*/\1/p' "$T/cas.out")
    [ ${#PIN} -eq 64 ] || fail "no CA fingerprint printed"
    export SCP_CAS=$ADDR SCP_CAS_PIN=$PIN
}

# stop_cas: SIGTERM, and the daemon must exit 0.
stop_cas() {
    kill -TERM "$CAS_PID"
    wait "$CAS_PID"
    local rc=$?
    CAS_PID=
    [ $rc -eq 0 ] || fail "cas serve exited $rc after SIGTERM"
}

# expect_rc WANT CMD...: run CMD; its exit code must be WANT. Output in $T/last.out/.err.
expect_rc() {
    local want=$1
    shift
    "$@" >"$T/last.out" 2>"$T/last.err"
    local rc=$?
    [ $rc -eq "$want" ] || fail "'$*' exited $rc, want $want: $(cat "$T/last.err" "$T/last.out" | head -5)"
}

# expect_err WANT_RC PATTERN CMD...: like expect_rc, and stderr must match PATTERN.
expect_err() {
    local want=$1 pat=$2
    shift 2
    expect_rc "$want" "$@"
    grep -q -- "$pat" "$T/last.err" || fail "'$*': stderr lacks '$pat': $(cat "$T/last.err")"
}

alive() { kill -0 "$CAS_PID" 2>/dev/null || fail "cas serve died"; }

# ---- loopback captures: what a man in the middle on the host sees --------------------------
declare -A CAP_PIDS=()

# capture_start FILE FILTER: capture loopback packets matching FILTER (tcpdump's syntax) into
# FILE, in the background until capture_check_no FILE (or the test's cleanup); returns once
# tcpdump listens. The timeout only keeps an orphaned tcpdump from outliving a killed test.
capture_start() {
    local file=$1 filter=$2
    timeout 600 tcpdump -i lo -U --immediate-mode -s 0 -w "$file" "$filter" >/dev/null 2>"$file.err" &
    CAP_PIDS[$file]=$!
    for _ in $(seq 50); do grep -q "listening on" "$file.err" 2>/dev/null && break; sleep 0.1; done
}

# capture_stop FILE: let the last packets land, then end FILE's capture.
capture_stop() {
    local pid=${CAP_PIDS[$1]:-}
    [ -n "$pid" ] || return 0
    sleep 0.5
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    unset "CAP_PIDS[$1]"
}

capture_kill() {
    local f
    for f in "${!CAP_PIDS[@]}"; do
        kill "${CAP_PIDS[$f]}" 2>/dev/null
        wait "${CAP_PIDS[$f]}" 2>/dev/null
    done
    CAP_PIDS=()
}

# capture_check_no FILE MARK...: end FILE's capture; it must hold packets, and none of the
# MARKs (fixed strings) anywhere in them. Sets CAP_PACKETS to the number of packets.
capture_check_no() {
    local file=$1 m
    shift
    capture_stop "$file"
    CAP_PACKETS=$(tcpdump -r "$file" 2>/dev/null | wc -l)
    [ "$CAP_PACKETS" -gt 0 ] || fail "the capture $file holds no packets: $(cat "$file.err")"
    for m in "$@"; do
        grep -aqF -- "$m" "$file" && fail "'$m' is on the wire in plaintext (capture $file)"
    done
    return 0
}

# PID and all its descendants.
# a file's lines indented to sit under `content: |` of a service's files entry in a policy
yaml_file() { sed 's/^/          /' "$1"; }

tree() {
    echo "$1"
    for c in $(pgrep -P "$1"); do tree "$c"; done
}
# The redis-server among PID's descendants (other tests run redis servers of their own, so
# the newest redis-server on the machine need not be this test's).
redis_in() {
    for p in $(tree "$1"); do
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q '^redis-server' && echo "$p"
    done | tail -1
}

# The sim platform p1 ($T/p1.key) enrolled in the running CAS; CA is CAS's service CA.
enroll_p1() {
    expect_rc 0 "$SCPCTL" platform create-key "$T/p1.key"
    expect_rc 0 "$SCPCTL" platform enroll --name p1 --key "$T/p1.key"
    CA=$T/data/service-ca.crt
    [ -s "$CA" ] || fail "no service CA in CAS's data directory"
}

# An admin identity A (exported as SCP_IDENTITY), CAS started with it (extra arguments go to
# start_cas), and p1 enrolled.
start_cas_p1() {
    A=$T/admin.pem
    expect_rc 0 "$SCPCTL" cas identity --out "$A"
    export SCP_IDENTITY=$A
    start_cas --admin "$A" "$@"
    enroll_p1
}
