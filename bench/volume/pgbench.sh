#!/usr/bin/env bash
# bench/volume/pgbench.sh - PostgreSQL 15 pgbench (TPC-B like; scale 10, 4 clients, 2 threads)
# with the server's whole data directory on a protected volume under `scpctl run`, against the
# same server on a plain directory of the same disk; same run, ratios printed. The server runs
# as the ordinary user postgres (setpriv), as in tests/shield/postgres.sh; pgbench is the
# client, outside the shield in both cases (it talks to the server over a Unix socket).
# With STRACE=1 (the default) a further run of each (base too, with AB) is traced (the server under strace -f -c,
# from its start to its shutdown) and the flush calls per transaction are printed.
#
#   bench/volume/pgbench.sh [BUILD_DIR]
#
# With AB=OTHER_BUILD_DIR a third server runs in each round: the same volume setup under that
# build's scpctl ("base", e.g. main built elsewhere), and the ratios scp/base are printed too
# (before/after of a change, in the same run).
# With SHIELD=1 a further server runs in each round under `scpctl run` with its data directory
# on a plain directory ("shield": the container and the shield without a protected volume),
# which splits scp's distance to plain into the shield's part and the volume's.
#
# Each run also prints the server's minor page faults per transaction (the postmaster with the
# children it reaped, and its live children, as for the CPU): unlike the CPU, a count that the
# machine's load does not move.
# WARM=N: in each round, a pgbench run of N seconds before the timed one, in the same server.
#   Every round starts its server with empty shared buffers, so a timed run alone measures the
#   buffers filling from the files (each miss a read: in scp a ciphertext read and its
#   decryption) as much as the steady state; with WARM the timed run is the steady state, and
#   the warm-up runs' tps are printed too (the cold start, as before). 0 by default.
# TXNS=N runs each client N transactions (pgbench -t) instead of SECS seconds in the timed
# rounds: every build then runs the same transactions, so that counts per transaction (the
# faults) compare without the fixed costs of a run (the backends' start) spread differently.
# The summary gives the medians of each build's figures, each round's ratio, and the median of
# the rounds' ratios with a 90% bootstrap interval (the rounds resampled): on a machine whose
# rounds spread as far as 0.6-1.0x, whether a target is met robustly is whether the interval
# clears it, not whether one run's median does.
# CHUNK=N: the scp volume's chunk size (shield-mkvol's third argument, as `scpctl volume create
#   --chunk-size N`; 4096 by default); BASE_CHUNK=N the base volume's (with AB; CHUNK's by
#   default). PostgreSQL's pages are 8 KiB: CHUNK=8192 is its recordsize, as for ZFS.
# Environment: ROUNDS=3 (median; plain and scp alternate within a round), SECS=20 (each
#   pgbench run), SCALE=10, CLIENTS=4, THREADS=2, BASE=/var/tmp, STRACE=1, STRACE_SECS=10.
#   GROWN=1: the traced runs also log every call (strace -C -y) and count the flushes of a file
#   that grew (or was cut) since its last flush: on ext4 such an fdatasync also writes the
#   inode and the block allocation through the file system's journal, where one of a file
#   that kept its length writes the data alone (load-independent, unlike the tps).
#   STRACE_ALL=1: the traced runs count every system call (strace -f -c), and print the total
#   and each call made at least 0.1 times per transaction (load-independent).
#   IO=1: a further run of each with perf, machine-wide over STRACE_SECS-4 seconds: the
#   fdatasync/fsync calls per transaction and their mean time (perf trace -s), jbd2 commits,
#   ext4 syncs and block requests per transaction (perf stat): where a flush costs more.
#   PERF_EVENTS=E1,E2 adds perf events to that count (e.g. context-switches: per transaction,
#   machine-wide).
#   IO=2 adds the block requests' kinds and sizes, IO=3 the server's CPU by object
#   (PERF_SORT=dso,sym: by function; PERF_MIN=0.5, the least share printed, in %); IO=4 the
#   server's page faults over 4 s, every one (perf record -e page-faults -c 1), by the function
#   that faulted (a kernel function: a system call's copy into or out of a page not yet mapped).
#   IO=5 the server's CPU by function of the shield library, inclusive (perf record -g over
#   4 s at PERF_HZ samples a second, 499 by default; bench/volume/perfshare.py): which of scp's
#   paths the extra CPU is on. PERF_KEEP=DIR keeps the samples' call chains in DIR/pcg-FS.txt.
#   VSTATS=1: after the rounds, the volume library's event counters (SCP_VOLUME_STATS,
#   src/volume/vstats.h) of the scp server: one start and stop alone, one with a pgbench run of
#   STRACE_SECS; each counter's difference per transaction (load-independent; with
#   SCP_VOLUME_STATS_CLOCK=wall exported, the timed sections in wall-clock time: what the
#   callers wait in them, the volume lock and the flushes included; and how much of the run
#   the volume lock was held, with the takes that waited for it). STRACE_Y=1 adds
#   a run under `strace -f -y` and its system calls per transaction by call and by the
#   volume's object they name (lock file, journal, manifest log, table, data, ...).
#   WAITS=1: a further run of each (STRACE_SECS) sampled every 20 ms by one psql session
#   (WAIT_SAMPLES, by default as many as fit in the run): the share of the client backends' time in each wait event of
#   pg_stat_activity, and from it how often the WAL's write or flush is under way
#   (IO:WALSync, IO:WALWrite) and how many backends wait for WALWriteLock: whether the WAL's
#   critical section, which PostgreSQL runs one backend at a time, is what bounds the rate.
#   SCP_ENV='VAR=VALUE ...', BASE_ENV=...: environment given to the scp (base) server only, e.g.
#   `AB=build SCP_ENV=SCP_VOLUME_FAMILY=1` runs one build with a switch on (scp) and off (base)
#   in the same rounds. With AB and VSTATS=1 the base server's counters are printed too.
# Needs root (to become postgres), PostgreSQL 15 (Debian), strace for the flush counts.
set -uo pipefail
B=$(cd "${1:-build}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
SCPCTL=$B/src/scpctl
MKVOL=$B/tests/shield/shield-mkvol
PGBIN=/usr/lib/postgresql/15/bin
ROUNDS=${ROUNDS:-3} SECS=${SECS:-20} SCALE=${SCALE:-10} CLIENTS=${CLIENTS:-4} THREADS=${THREADS:-2}
STRACE=${STRACE:-1} STRACE_SECS=${STRACE_SECS:-10} WARM=${WARM:-0}
[ -x $PGBIN/initdb ] && command -v pgbench >/dev/null || { echo "PostgreSQL 15 not installed"; exit 77; }
[ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 || { echo "needs root and the user postgres"; exit 77; }
T=$(mktemp -d "${BASE:-/var/tmp}/scp-pgbench-vol-flush.XXXXXX") || exit 1
chmod 755 "$T" && chown postgres: "$T"
AS="setpriv --reuid=postgres --regid=postgres --init-groups"
MNT=/scp-pgbench-$$/pgdata
SERVER_PID=
cleanup() {
    { echo >&9; } 2>/dev/null
    [ -n "$SERVER_PID" ] && wait "$SERVER_PID" 2>/dev/null
    [ "${KEEP:-0}" = 1 ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
$AS "$MKVOL" "$T/key" "$T/vol" ${CHUNK:-} || exit 1
FSLIST="plain scp"
if [ -n "${AB:-}" ]; then
    AB=$(cd "$AB" && pwd)
    $AS "$AB/tests/shield/shield-mkvol" "$T/key-base" "$T/vol-base" ${BASE_CHUNK:-${CHUNK:-}} || exit 1
    FSLIST="plain scp base"
fi
[ "${SHIELD:-0}" = 1 ] && FSLIST="$FSLIST shield"
$AS mkdir -p "$T/plain" "$T/shield" "$T/sock-plain" "$T/sock-scp" "$T/sock-base" "$T/sock-shield"

pre() {
    [ "$1" = scp ] && echo "${SCP_ENV:+env $SCP_ENV }$SCPCTL run --volume $T/vol:$MNT --key-file $T/key --"
    [ "$1" = base ] && echo "${BASE_ENV:+env $BASE_ENV }$AB/src/scpctl run --volume $T/vol-base:$MNT --key-file $T/key-base --"
    [ "$1" = shield ] && echo "$SCPCTL run --"
}
datadir() {
    case $1 in plain) echo "$T/plain/db" ;; shield) echo "$T/shield/db" ;; *) echo "$MNT/db" ;; esac
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
vals() { echo "$1" | tr ' ' '\n' | grep .; } # "V1 V2 ...": one per line
med_of() { vals "$1" | median; } # "V1 V2 ...": their median
per_round() { # "A1 A2 ..." "B1 B2 ...": " B1/A1 B2/A2 ..."
    paste -d' ' <(vals "$1") <(vals "$2") | awk '{printf " %.2f", ($1 > 0 ? $2 / $1 : 0)}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", (b > 0 ? a / b : 0)}'; } # A/B
round_ci() { # "A1 A2 ..." "B1 B2 ...": the median of the rounds' Bi/Ai and a 90% bootstrap interval
    # of that median (2,000 resamples of the rounds, a fixed seed): how far this machine's noise
    # lets one run's median move; with under 5 rounds the interval says little
    python3 - "$1" "$2" <<'PY'
import random, statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
r = [y / x for x, y in zip(a, b) if x > 0]
if not r:
    sys.exit(0)
rng, n = random.Random(1), 2000
meds = sorted(statistics.median(rng.choices(r, k=len(r))) for _ in range(n))
print("%.2fx (90%% bootstrap interval %.2f-%.2f over %d rounds)"
      % (statistics.median(r), meds[n // 20], meds[n - n // 20 - 1], len(r)))
PY
}
load() { cut -d' ' -f1 /proc/loadavg; }

initdb_in() { # FS: initdb (under the shield for scp)
    (cd "$T" && SCP_QUIET=1 $AS $(pre "$1") $PGBIN/initdb -D "$(datadir "$1")" -A trust -U postgres \
        >"$T/initdb-$1.log" 2>&1) || { cat "$T/initdb-$1.log"; exit 1; }
}

start_server() { # FS [TRACE]: start the server in the background (the run ends when it stops);
    # with TRACE, under strace -f -c (the whole server: start, the run, the shutdown checkpoint);
    # TRACE y: under strace -f -y, every call with its paths
    local fs=$1 pg tr=""
    rm -f "$T/stop"; mkfifo -m 666 "$T/stop"
    if [ "${2:-}" = y ]; then # (every call, with its paths: vstats)
        tr="strace -f -y -qq -o $T/sty-$fs"
    elif [ -n "${2:-}" ] && [ "${STRACE_ALL:-0}" = 1 ]; then
        tr="strace -f -c -o $T/strace-$fs.txt"
    elif [ -n "${2:-}" ] && [ "${GROWN:-0}" = 1 ]; then
        tr="strace -f -C -y -o $T/strace-$fs.txt -e trace=fdatasync,fsync,sync_file_range,pwrite64,write,ftruncate"
    elif [ -n "${2:-}" ]; then
        tr="strace -f -c -o $T/strace-$fs.txt -e trace=fdatasync,fsync,sync_file_range,pwrite64,write"
    fi
    pg="$PGBIN/pg_ctl -D $(datadir "$fs") -l $T/pg-$fs.log -o \"-c listen_addresses='' -k $T/sock-$fs\" -w"
    # (the shell waits for stop_server's line on a FIFO: a loop of `sleep 0.2` here ran five
    # programs a second under scpctl run, each paying the shield's start, beside the server)
    (cd "$T" && SCP_QUIET=1 $tr $AS $(pre "$fs") sh -c "$pg start >/dev/null || exit 1
        read _ 0<>$T/stop; $pg stop >/dev/null") &
    SERVER_PID=$!
    exec 9<>"$T/stop" # (held open here, so that a line written before the shell reads stays)
    for _ in $(seq 1 300); do
        $AS $PGBIN/pg_isready -q -h "$T/sock-$fs" && return 0
        sleep 0.2
    done
    echo "the $fs server did not start"; tail -20 "$T/pg-$fs.log"; exit 1
}

stop_server() {
    echo >&9
    wait "$SERVER_PID"
    exec 9>&-
    SERVER_PID=
}

traced_pgbench() { # FS OUT: the further runs' pgbench (STRACE_SECS), its output in $T/OUT-FS
    $AS pgbench -h "$T/sock-$1" -U postgres -c "$CLIENTS" -j "$THREADS" -T "$STRACE_SECS" postgres >"$T/$2-$1" 2>&1
}

server_ticks() { # FS: CPU clock ticks (user + system) of the server: the postmaster with the
    # children it reaped, and its live children
    local pm p t=0
    pm=$(pgrep -f -- "postgres -D $(datadir "$1")" | head -1)
    [ -n "$pm" ] || { echo 0; return; }
    t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat")
    for p in $(pgrep -P "$pm"); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}

server_faults() { # FS: minor page faults of the server (as server_ticks counts its CPU)
    local pm p t=0
    pm=$(pgrep -f -- "postgres -D $(datadir "$1")" | head -1)
    [ -n "$pm" ] || { echo 0; return; }
    t=$(awk '{print $10 + $11}' "/proc/$pm/stat")
    for p in $(pgrep -P "$pm"); do
        t=$((t + $(awk '{print $10}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}

runlen() { # SECONDS: pgbench's run length (-T), or with TXNS a count per client (-t)
    [ -n "${TXNS:-}" ] && echo "-t $TXNS" || echo "-T $1"
}

bench() { # FS SECONDS -> "tps cpu_ms_per_txn faults_per_txn" (tps excluding connection time)
    local c0 c1 f0 f1 n
    c0=$(server_ticks "$1")
    f0=$(server_faults "$1")
    $AS pgbench -h "$T/sock-$1" -U postgres -c "$CLIENTS" -j "$THREADS" $(runlen "$2") postgres >"$T/out-$1" 2>&1 ||
        { cat "$T/out-$1" >&2; echo "0 0"; return; }
    sleep 1 # (the backends exit and are reaped)
    c1=$(server_ticks "$1")
    f1=$(server_faults "$1")
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/out-$1")
    echo "$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$T/out-$1" | tail -1) $(awk -v d=$((c1 - c0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (n > 0 ? d * 1000 / hz / n : 0)}') $(awk -v d=$((f1 - f0)) -v n="$n" 'BEGIN {printf "%.1f", (n > 0 ? d / n : 0)}')"
}

flushes() { # FS: one run of the server under strace; flush calls per transaction
    local fs=$1 n
    start_server "$fs" trace
    traced_pgbench "$fs" sout
    stop_server
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/sout-$fs")
    awk -v fs="$fs" -v n="$n" '$NF ~ /^(fdatasync|fsync|sync_file_range|pwrite64|write)$/ && NF >= 5 {
        printf "  %s %s: %d calls, %.2f per txn (%d txns; server start and shutdown included)\n", fs, $NF, $4, $4 / n, n }' "$T/strace-$fs.txt"
    [ "${STRACE_ALL:-0}" = 1 ] && awk -v fs="$fs" -v n="$n" '
        $NF == "total" { printf "  %s all system calls: %d, %.2f per txn\n", fs, $4, $4 / n }
        $NF ~ /^[a-z_0-9]+$/ && $NF != "total" && NF >= 5 && $4 / n >= 0.1 && $NF !~ /^(fdatasync|fsync|sync_file_range|pwrite64|write)$/ {
            printf "  %s %s: %.2f per txn\n", fs, $NF, $4 / n }' "$T/strace-$fs.txt"
    # (not for plain: PostgreSQL lays out its WAL segments with pwritev, which is not traced,
    # so the lengths would be unknown; the volume's objects are written with pwrite64 only)
    [ "${GROWN:-0}" = 1 ] && [ "$fs" != plain ] && python3 - "$T/strace-$fs.txt" "$fs" "$n" <<'PY'
import re, sys
# Each file's length as the trace shows it (pwrite64 ends, ftruncate), and at each fdatasync
# whether it changed since that file's last flush (or this is its first in the trace: the
# lengths from before the trace are not known, which counts against the build that keeps
# files long).
size, synced, grown, total = {}, {}, 0, 0
pw = re.compile(r'^\d+ pwrite64\(\d+<([^>]*)>, .*, (\d+), (\d+)(?:\)| <unfinished)')
ft = re.compile(r'^\d+ ftruncate\(\d+<([^>]*)>, (\d+)')
fd = re.compile(r'^\d+ fdatasync\(\d+<([^>]*)>')
for line in open(sys.argv[1], errors='replace'):
    m = pw.match(line)
    if m:
        p, n, off = m.group(1), int(m.group(2)), int(m.group(3))
        size[p] = max(size.get(p, 0), off + n)
        continue
    m = ft.match(line)
    if m:
        size[m.group(1)] = int(m.group(2))
        continue
    m = fd.match(line)
    if m:
        p = m.group(1)
        total += 1
        if synced.get(p) != size.get(p, 0):
            grown += 1
        synced[p] = size.get(p, 0)
txns = int(sys.argv[3] or 0)
print("  %s fdatasync of a file whose length changed since its last flush: %d of %d, %.2f per txn"
      % (sys.argv[2], grown, total, grown / txns if txns else 0))
PY
}

iostats() { # FS: the flushes as the kernel sees them, machine-wide (see IO above)
    local fs=$1 n
    start_server "$fs"
    traced_pgbench "$fs" iout &
    local pb=$!
    sleep 2
    perf trace -s -e fdatasync,fsync -a -o "$T/ptrace-$fs" -- sleep $((STRACE_SECS - 4)) >/dev/null 2>&1 &
    local pt=$!
    perf stat -x, -a -o "$T/pstat-$fs" -e jbd2:jbd2_start_commit,ext4:ext4_sync_file_enter,block:block_rq_issue${PERF_EVENTS:+,$PERF_EVENTS} \
        -- sleep $((STRACE_SECS - 4)) >/dev/null 2>&1
    wait $pt
    # IO=3: where the server's CPU goes, by symbol (perf record -a, 4 s; self time)
    [ "${IO:-0}" = 3 ] && perf record -q -F 1999 -a -o "$T/pcpu-$fs" -- sleep 4 >/dev/null 2>&1 &&
        perf report -i "$T/pcpu-$fs" --no-children --comm postgres --sort "${PERF_SORT:-dso}" --percent-limit "${PERF_MIN:-0.5}" \
            --stdio 2>/dev/null | grep -v "^#" | grep . | head -45 | sed "s/^/  $fs /"
    # IO=5: the server's CPU by function of the shield library (libscp-shield.so, which holds
    # the volume code), inclusive: each function's share of the server's samples with it on
    # the stack (perf record -g --call-graph dwarf, 4 s); and the shares by object
    [ "${IO:-0}" = 5 ] && perf record -q -F "${PERF_HZ:-499}" -a --call-graph dwarf,16384 -o "$T/pcg-$fs" -- sleep 4 >/dev/null 2>&1 &&
        perf script -i "$T/pcg-$fs" --comm postgres -F ip,sym,dso 2>/dev/null |
        tee "${PERF_KEEP:-/dev/null}${PERF_KEEP:+/pcg-$fs.txt}" | python3 "$(dirname "$0")/perfshare.py" "${PERF_MIN:-0.5}" | head -60 | sed "s/^/  $fs /"
    # IO=4: the server's page faults by faulting function (every fault for 4 s)
    [ "${IO:-0}" = 4 ] && perf record -q -e page-faults -c 1 -a -o "$T/pflt-$fs" -- sleep 4 >/dev/null 2>&1 &&
        perf report -i "$T/pflt-$fs" -n --no-children --comm postgres --sort dso,sym --percent-limit 1 \
            --stdio 2>/dev/null | grep -v "^#" | grep . | head -12 | sed "s/^/  $fs faults /"
    # IO=2: the block requests' kinds and sizes (rwbs: W write, F flush, S sync, FUA)
    [ "${IO:-0}" = 2 ] && perf record -q -g -e block:block_rq_issue -a -o "$T/prec-$fs" -- sleep 1 >/dev/null 2>&1 &&
        perf script -i "$T/prec-$fs" 2>/dev/null | awk -v fs="$fs" '{ for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,[0-9]+$/) { k = $(i + 1) " " $(i + 2); n[k]++ } }
            END { for (k in n) printf "  %s block requests (rwbs bytes): %s x%d\n", fs, k, n[k] }' | sort -t x -k2 -rn | head -8
    wait $pb
    stop_server
    n=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$T/iout-$fs" | tail -1)
    # (per transaction at the run's own rate over the traced seconds; perf trace -s prints, per
    # thread, calls and msec total: summed over threads)
    awk -v fs="$fs" -v tps="$n" -v secs=$((STRACE_SECS - 4)) '
        $1 ~ /^(fdatasync|fsync)$/ && NF >= 7 { c[$1] += $2; ms[$1] += $4 }
        END { for (k in c) printf "  %s %s: %.2f per txn, mean %.1f us\n", fs, k, c[k] / (tps * secs), c[k] ? ms[k] * 1000 / c[k] : 0 }' "$T/ptrace-$fs"
    awk -F, -v fs="$fs" -v tps="$n" -v secs=$((STRACE_SECS - 4)) '
        $3 != "" && $1 ~ /^[0-9]+$/ { printf "  %s %s: %.2f per txn\n", fs, $3, $1 / (tps * secs) }' "$T/pstat-$fs"
    [ "${IO:-0}" = 4 ] && perf script -i "$T/pflt-$fs" --comm postgres 2>/dev/null | wc -l |
        awk -v fs="$fs" -v tps="$n" '{ printf "  %s server page faults: %d in 4 s, %.3f per txn\n", fs, $1, $1 / (tps * 4) }'
}

vstats() { # FS: the library's counters per transaction (see VSTATS above)
    local fs=$1 n
    rm -f "$T/vst-idle" "$T/vst-run"
    SCP_VOLUME_STATS=$T/vst-idle start_server "$fs"
    stop_server
    SCP_VOLUME_STATS=$T/vst-run start_server "$fs"
    traced_pgbench "$fs" vout
    stop_server
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/vout-$fs")
    python3 "$HERE/vstats_diff.py" "$T/vst-idle" "$T/vst-run" "$n" "$fs" txn "$STRACE_SECS"
    [ "${STRACE_Y:-0}" = 1 ] || return 0
    rm -f "$T/sty-$fs"
    start_server "$fs" y
    traced_pgbench "$fs" yout
    stop_server
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/yout-$fs")
    python3 - "$T/sty-$fs" "$n" "$fs" <<'PY'
import collections, re, sys
# every call line of strace -f -y: "PID call(FD<path>, ...) = R"; the object kind from the path
call = re.compile(r'^\d+ +([a-z_0-9]+)\((?:(-?\d+)<([^>]*)>)?(.*)')
res = re.compile(r'= (-?\d+)')
def kind(p):
    if p is None: return '-'
    b = p.rsplit('/', 1)[-1]
    if b == 'lock': return 'lock'
    if b == 'manifest.log': return 'mlog'
    if b.startswith('manifest') or b.startswith('slot'): return 'slot'
    m = re.search(r'\.([a-z])$', b)
    if m and '/objects/' in p: return 'obj.' + m.group(1)
    if 'socket:' in p or 'pipe:' in p: return p.split(':')[0]
    return 'other'
n = int(sys.argv[2] or 0)
cnt, byt = collections.Counter(), collections.Counter()
for line in open(sys.argv[1], errors='replace'):
    m = call.match(line)
    if not m: continue
    k = (m.group(1), kind(m.group(3)))
    cnt[k] += 1
    if m.group(1) in ('pread64', 'pwrite64', 'read', 'write'):
        r = res.search(line.rsplit(')', 1)[-1] if ')' in line else '')
        if r and int(r.group(1)) > 0: byt[k] += int(r.group(1))
tot = sum(cnt.values())
print("  %s strace -f -y: %d txns, %.2f system calls per txn (start and stop included); per txn, at least 0.05:" % (sys.argv[3], n, tot / n if n else 0))
for k, c in sorted(cnt.items(), key=lambda x: -x[1]):
    if n and c / n >= 0.05:
        print("    %-12s %-10s %7.2f%s" % (k[0], k[1], c / n, ("   %8.0f bytes" % (byt[k] / n)) if byt[k] else ""))
PY
}

waits() { # FS: where the client backends are, sampled (see WAITS above)
    # (each sample is numbered: an instant counts only if it saw a backend, so that samples
    # taken after pgbench ended do not dilute the shares; the default fits in the run)
    local fs=$1 n=${WAIT_SAMPLES:-$(((STRACE_SECS - 3) * 40))} i
    for i in $(seq 1 "$n"); do
        echo "select $i || ' ' || coalesce(wait_event_type, '-') || ':' || coalesce(wait_event, 'running') from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid(); select pg_sleep(0.02);"
    done >"$T/waits.sql"
    chmod 644 "$T/waits.sql"
    start_server "$fs"
    traced_pgbench "$fs" wout &
    local pb=$!
    sleep 2
    $AS psql -h "$T/sock-$fs" -U postgres -At -f "$T/waits.sql" postgres 2>/dev/null | grep : >"$T/waits-$fs"
    wait "$pb"
    stop_server
    awk -v fs="$fs" '{ seen[$1] = 1; c[$2]++; t++ } END {
        for (k in seen) m++
        printf "  %s: %d samples at %d instants, the share of the samples in each state:\n", fs, t, m
        for (k in c) if (c[k] / t >= 0.005) printf "    %-24s %5.1f%%\n", k, 100 * c[k] / t
        printf "    (WAL I/O at %.0f%% of instants: IO:WALSync + IO:WALWrite; %.2f backends waiting for WALWriteLock on average)\n",
            100 * (c["IO:WALSync"] + c["IO:WALWrite"]) / m, c["LWLock:WALWrite"] / m }' "$T/waits-$fs"
}

declare -A TPS CPU FLT WTPS
for fs in $FSLIST; do
    initdb_in "$fs"
    start_server "$fs"
    $AS pgbench -h "$T/sock-$fs" -U postgres -q -i -s "$SCALE" postgres >"$T/init-$fs" 2>&1 || { cat "$T/init-$fs"; exit 1; }
    stop_server
done
echo "pgbench scale $SCALE, $CLIENTS clients, $THREADS threads, ${SECS}s runs, $ROUNDS rounds, data under ${BASE:-/var/tmp}$([ "$WARM" -gt 0 ] && echo ", each after a ${WARM}s warm-up run")"
for r in $(seq 1 "$ROUNDS"); do
    for fs in $FSLIST; do
        start_server "$fs"
        if [ "$WARM" -gt 0 ]; then # (the cold run: shared_buffers fill from the files)
            read -r wv _ _ < <(bench "$fs" "$WARM")
            WTPS[$fs]="${WTPS[$fs]:-} $wv"
            echo "  round $r $fs: warm-up ${WARM}s from a cold start: $wv tps"
        fi
        read -r v cpu flt < <(bench "$fs" "$SECS")
        stop_server
        TPS[$fs]="${TPS[$fs]:-} $v"
        CPU[$fs]="${CPU[$fs]:-} $cpu"
        FLT[$fs]="${FLT[$fs]:-} $flt"
        echo "  round $r $fs: $v tps, server CPU $cpu ms per transaction, $flt minor faults per transaction (load $(load))"
    done
done
if [ "$STRACE" = 1 ] && command -v strace >/dev/null; then
    for fs in $FSLIST; do flushes "$fs"; done
fi
if [ "${IO:-0}" != 0 ] && command -v perf >/dev/null; then
    for fs in $FSLIST; do iostats "$fs"; done
fi
[ "${VSTATS:-0}" = 1 ] && vstats scp
[ "${WAITS:-0}" = 1 ] && for fs in $FSLIST; do waits "$fs"; done
[ "${VSTATS:-0}" = 1 ] && [ -n "${AB:-}" ] && vstats base
if [ "$WARM" -gt 0 ]; then
    wp=$(med_of "${WTPS[plain]:-}")
    ws=$(med_of "${WTPS[scp]:-}")
    echo "median tps of the warm-up runs (from a cold start, ${WARM}s): plain $wp, scp $ws, scp/plain $(ratio "$ws" "$wp")"
fi
p=$(med_of "${TPS[plain]:-}")
s=$(med_of "${TPS[scp]:-}")
echo "median tps: plain $p, scp $s, scp/plain $(ratio "$s" "$p")"
pc=$(med_of "${CPU[plain]:-}")
sc=$(med_of "${CPU[scp]:-}")
echo "median server CPU per transaction: plain $pc ms, scp $sc ms, scp/plain $(ratio "$sc" "$pc")"
echo "median minor page faults per transaction:$(for fs in $FSLIST; do echo -n " $fs $(med_of "${FLT[$fs]:-}")"; done)"
echo "per round scp/plain:$(per_round "${TPS[plain]:-}" "${TPS[scp]:-}")"
echo "median of the per-round ratios: tps $(round_ci "${TPS[plain]:-}" "${TPS[scp]:-}"); server CPU per transaction $(round_ci "${CPU[plain]:-}" "${CPU[scp]:-}")"
if [ -n "${AB:-}" ]; then
    bt=$(med_of "${TPS[base]:-}")
    bc=$(med_of "${CPU[base]:-}")
    echo "base ($AB): median tps $bt ($(ratio "$bt" "$p") of plain), CPU $bc ms per transaction"
    echo "scp/base: tps $(ratio "$s" "$bt"), CPU per transaction $(ratio "$sc" "$bc"); per round tps:$(per_round "${TPS[base]:-}" "${TPS[scp]:-}")"
    echo "scp/base, median of the per-round ratios: tps $(round_ci "${TPS[base]:-}" "${TPS[scp]:-}"); CPU per transaction $(round_ci "${CPU[base]:-}" "${CPU[scp]:-}")"
fi
if [ "${SHIELD:-0}" = 1 ]; then
    ht=$(med_of "${TPS[shield]:-}")
    hc=$(med_of "${CPU[shield]:-}")
    echo "shield without a volume: median tps $ht ($(ratio "$ht" "$p") of plain; scp $(ratio "$s" "$ht") of it), CPU $hc ms per transaction ($(ratio "$hc" "$pc") of plain)"
fi
