#!/usr/bin/env bash
# bench/volume/sqlite.sh - sqlite3 CLI one-row transactions on a protected volume (under
# scpctl run) against the same on a plain directory, same run, ratios printed; and, with
# STRACE=1, the flushes and other calls per transaction of each (strace -f -c: the writes,
# preads, getpid and stats of the volume's catch-up under its lock).
#
#   bench/volume/sqlite.sh [BUILD_DIR]
#
# Environment: ROUNDS=3 (median; plain and scp alternate within a round), TXNS=2000,
#   MODES="wal delete" (wal = journal_mode=WAL, synchronous=FULL; delete = rollback journal,
#   synchronous=FULL, the default), BASE=/var/tmp, STRACE=0|1 (STRACE_ALL=1: every system call, fcntl and the total among them), CPU=0|1 (perf stat of the
#   sqlite3 process: task-clock and block requests issued per transaction, figures that move
#   less with the machine's load than throughput does; needs perf; CPU_ROUNDS=N repeats it,
#   the file systems alternating, for medians at a busy machine), PROFILE=0|1 (perf record
#   of the scp sqlite3 in each mode: the share of its CPU samples in each library, and the
#   volume library's and OpenSSL's samples per sqlite's own, a ratio of one run),
#   CALLS=0|1 (the shield's side of a transaction, volume lines only: SIGSYS traps per
#   transaction, from the kernel's signal:signal_generate events, and the calls that reach the
#   shield's interposed libc functions per transaction, from uprobes on that build's
#   libscp-shield.so (perf probe, added and deleted here; the volume library's own calls
#   through those functions, its journal's fdatasync say, count too); needs root and perf),
#   AB=OTHER_BUILD (optional: also run the volume lines with that build's scpctl, as "base",
#   on a volume of its own, alternating with plain and scp within each round; prints
#   scp/base too).
# Each round's time is the whole sqlite3 command's, start-up included (for scp: scpctl run's
# container, the volume's open, the shield's start: about 40 ms against plain's 2). The
# start-up alone (sqlite3 "SELECT 1", median of 5) is measured too, and a second table gives
# the rates with it taken out: TXNS / (TXNS / rate - start-up).
set -uo pipefail
B=${1:-build}
SCPCTL=$B/src/scpctl
MKVOL=$B/tests/shield/shield-mkvol
if [ -n "${AB:-}" ]; then
    [ -x "$AB/src/scpctl" ] || { echo "sqlite.sh: AB=$AB holds no src/scpctl" >&2; exit 2; }
    FSES="plain scp base"
else
    FSES="plain scp"
fi
ROUNDS=${ROUNDS:-3}
TXNS=${TXNS:-2000}
MODES=${MODES:-wal delete}
T=$(mktemp -d "${BASE:-/var/tmp}/scp-sqlite-bench.XXXXXX")
trap 'rm -rf "$T"' EXIT
"$MKVOL" "$T/key" "$T/vol" 4096 || exit 1
# (the base volume is made by the base build: the two builds may write different formats)
if [ -n "${AB:-}" ]; then "$AB/tests/shield/shield-mkvol" "$T/bkey" "$T/bvol" 4096 >/dev/null || exit 1; fi
mkdir -p "$T/plain"
pre() {
    case $1 in
    scp) echo "$SCPCTL run --volume $T/vol:$T/mnt --key-file $T/key --" ;;
    base) echo "$AB/src/scpctl run --volume $T/bvol:$T/bmnt --key-file $T/bkey --" ;;
    esac
}
dir() { case $1 in scp) echo "$T/mnt" ;; base) echo "$T/bmnt" ;; *) echo "$T/plain" ;; esac; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A R C
pragma() { if [ "$1" = wal ]; then echo "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"; else echo "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL;"; fi; }
{ for i in $(seq 1 "$TXNS"); do echo "INSERT INTO t(v) VALUES('txn-$i');"; done; } > "$T/txn.sql"

run_once() { # FS JMODE -> txn/s
    local fs=$1 jm=$2 db t0 t1
    db=$(dir "$fs")/bench-$jm.db
    $(pre "$fs") sqlite3 "$db" "$(pragma "$jm") CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);" >/dev/null
    { pragma "$jm"; cat "$T/txn.sql"; } > "$T/run.sql"
    t0=$(date +%s%N)
    $(pre "$fs") sqlite3 "$db" < "$T/run.sql" >/dev/null
    t1=$(date +%s%N)
    $(pre "$fs") rm -f "$db" "$db-wal" "$db-shm" "$db-journal"
    echo $(( TXNS * 1000000000 / (t1 - t0) ))
}

flushes() { # FS JMODE -> per-transaction counts of each flush call
    local fs=$1 jm=$2 db n=$(( TXNS < 500 ? TXNS : 500 ))
    db=$(dir "$fs")/bench-s-$jm.db
    $(pre "$fs") sqlite3 "$db" "$(pragma "$jm") CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);" >/dev/null
    { pragma "$jm"; head -n 500 "$T/txn.sql"; } > "$T/s.sql"
    # (STRACE_ALL=1: every call of the run, fcntl and the total among them; the calls of the
    # start are in the counts too, divided by the transactions)
    local sel=fdatasync,fsync,msync,ftruncate,sync_file_range,pwrite64,write,pread64,getpid,newfstatat
    if [ "${STRACE_ALL:-0}" = 1 ]; then
        strace -f -c -o "$T/strace.txt" $(pre "$fs") sqlite3 "$db" < "$T/s.sql" >/dev/null
        sel='[a-z_0-9]+|total'
    else
        strace -f -c -o "$T/strace.txt" -e trace=$sel $(pre "$fs") sqlite3 "$db" < "$T/s.sql" >/dev/null
        sel="${sel//,/|}"
    fi
    $(pre "$fs") rm -f "$db" "$db-wal" "$db-shm" "$db-journal"
    awk -v fs="$fs" -v jm="$jm" -v n="$n" -v sel="^($sel)\$" '$NF ~ sel && $4 ~ /^[0-9]+$/ {
        printf "  %s %s %s: %.2f per txn\n", fs, jm, $NF, $4 / n }' "$T/strace.txt"
}

cpu() { # FS JMODE -> CPU time and block requests per transaction (perf stat)
    local fs=$1 jm=$2 db
    db=$(dir "$fs")/bench-c-$jm.db
    $(pre "$fs") sqlite3 "$db" "$(pragma "$jm") CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);" >/dev/null
    { pragma "$jm"; cat "$T/txn.sql"; } > "$T/c.sql"
    perf stat -x, -e task-clock,block:block_rq_issue -o "$T/perf.txt" \
        $(pre "$fs") sqlite3 "$db" < "$T/c.sql" >/dev/null
    $(pre "$fs") rm -f "$db" "$db-wal" "$db-shm" "$db-journal"
    awk -F, -v fs="$fs" -v jm="$jm" -v n="$TXNS" '/task-clock/ {tc = $1} /block_rq_issue/ {io = $1}
        END { printf "  %s %s: %.1f us CPU, %.2f block requests per txn\n", fs, jm, tc * 1000 / n, io / n }' "$T/perf.txt"
}

profile() { # JMODE -> where the scp sqlite3's CPU samples fall, by library (perf record)
    local jm=$1 db
    db=$T/mnt/bench-p-$jm.db
    $(pre scp) sqlite3 "$db" "$(pragma "$jm") CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);" >/dev/null
    { pragma "$jm"; cat "$T/txn.sql"; } > "$T/p.sql"
    perf record -F 2000 -o "$T/perf.data" $(pre scp) sqlite3 "$db" < "$T/p.sql" >/dev/null 2>&1
    $(pre scp) rm -f "$db" "$db-wal" "$db-shm" "$db-journal"
    perf report -q -i "$T/perf.data" --sort comm,dso 2>/dev/null | awk -v jm="$jm" '
        $2 == "sqlite3" { sub(/%/, "", $1); s[$3] += $1; t += $1 }
        END { if (t == 0) exit
              k = s["[kernel.kallsyms]"]; c = s["libcrypto.so.3"]; q = s["libsqlite3.so.0.8.6"]
              v = s["libscp-shield.so"]; l = s["libc.so.6"]
              printf "  scp %s sqlite3 samples: kernel %.1f%%, libsqlite3 %.1f%%, libcrypto %.1f%%, libscp-shield %.1f%%, libc %.1f%%\n", jm, 100 * k / t, 100 * q / t, 100 * c / t, 100 * v / t, 100 * l / t
              if (q > 0) printf "  scp %s per libsqlite3 sample: libcrypto %.2f, libscp-shield %.2f, kernel %.2f\n", jm, c / q, v / q, k / q }'
}

calls() { # FS JMODE -> SIGSYS traps and interposed calls per transaction (perf stat)
    local fs=$1 jm=$2 db lib ev=() f
    db=$(dir "$fs")/bench-k-$jm.db
    case $fs in scp) lib=$B/src/libscp-shield.so ;; base) lib=$AB/src/libscp-shield.so ;; *) return ;; esac
    lib=$(realpath "$lib")
    $(pre "$fs") sqlite3 "$db" "$(pragma "$jm") CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);" >/dev/null
    { pragma "$jm"; cat "$T/txn.sql"; } > "$T/k.sql"
    for f in pwrite pwrite64 pread pread64 fdatasync fsync fcntl fcntl64 fstat fstat64 stat stat64 \
             lstat lstat64 openat openat64 open open64 close mmap mmap64 ftruncate ftruncate64; do
        # (the shield defines pwrite and pwrite64, and the like, as functions of their own)
        if perf probe -q -x "$lib" --add "scpk_$fs$f=$f" 2>/dev/null; then ev+=(-e "probe_libscp:scpk_$fs$f"); fi
    done
    perf stat -x, -e signal:signal_generate --filter 'sig == 31' "${ev[@]}" -o "$T/k.txt" \
        $(pre "$fs") sqlite3 "$db" < "$T/k.sql" >/dev/null
    perf probe -q -d "probe_libscp:scpk_$fs*" 2>/dev/null
    $(pre "$fs") rm -f "$db" "$db-wal" "$db-shm" "$db-journal"
    awk -F, -v fs="$fs" -v jm="$jm" -v n="$TXNS" '$3 ~ /signal_generate/ { printf "  %s %s: %.3f SIGSYS traps per txn;", fs, jm, $1 / n }
        $3 ~ /scpk_/ { sub(/.*scpk_(scp|base)/, "", $3); if ($1 > 0) printf " %s %.2f", $3, $1 / n }
        END { printf " (interposed calls per txn)\n" }' "$T/k.txt"
}

if [ "${CALLS:-0}" = 1 ]; then
    for jm in $MODES; do for fs in $FSES; do calls "$fs" "$jm"; done; done
fi
if [ "${PROFILE:-0}" = 1 ]; then
    for jm in $MODES; do profile "$jm"; done
fi
if [ "${CPU:-0}" = 1 ]; then
    for r in $(seq 1 "${CPU_ROUNDS:-1}"); do
        for jm in $MODES; do for fs in $FSES; do cpu "$fs" "$jm"; done; done
    done
fi
if [ "${STRACE:-0}" = 1 ]; then
    for jm in $MODES; do for fs in $FSES; do flushes "$fs" "$jm"; done; done
fi
startup_ms() { # FS -> milliseconds of one sqlite3 "SELECT 1" run on that file system, median of 5
    local fs=$1 t0 t1
    for _ in 1 2 3 4 5; do
        t0=$(date +%s%N)
        $(pre "$fs") sqlite3 "$(dir "$fs")/startup.db" "SELECT 1;" >/dev/null
        t1=$(date +%s%N)
        echo $(( (t1 - t0) / 1000 ))
    done | median | awk '{ printf "%.1f", $1 / 1000 }'
    $(pre "$fs") rm -f "$(dir "$fs")/startup.db"
}
declare -A SU
for fs in $FSES; do SU[$fs]=$(startup_ms "$fs"); done
echo "  start-up (sqlite3 'SELECT 1', the whole command, median of 5): $(for fs in $FSES; do printf '%s %s ms  ' "$fs" "${SU[$fs]}"; done)"
for r in $(seq 1 "$ROUNDS"); do
    for jm in $MODES; do for fs in $FSES; do
        v=$(run_once "$fs" "$jm"); R[$jm,$fs]="${R[$jm,$fs]:-} $v"; echo "  round $r $jm $fs: $v txn/s"
    done; done
done
[ "$ROUNDS" -gt 0 ] || exit 0 # (ROUNDS=0: the CPU, strace or call counts only, no tables)
if [ -n "${AB:-}" ]; then
    echo "| sqlite3, $TXNS one-row transactions | plain txn/s | scp txn/s | base txn/s | scp/plain | base/plain | scp/base |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
else
    echo "| sqlite3, $TXNS one-row transactions | plain txn/s | scp txn/s | scp/plain |"
    echo "|---|---:|---:|---:|"
fi
for jm in $MODES; do
    p=$(echo ${R[$jm,plain]} | tr ' ' '\n' | median); s=$(echo ${R[$jm,scp]} | tr ' ' '\n' | median)
    if [ -n "${AB:-}" ]; then
        b=$(echo ${R[$jm,base]} | tr ' ' '\n' | median)
        awk -v j="$jm" -v p="$p" -v s="$s" -v b="$b" 'BEGIN { printf "| %s | %s | %s | %s | %.2fx | %.2fx | %.2fx |\n", j, p, s, b, s / p, b / p, s / b }'
    else
        awk -v j="$jm" -v p="$p" -v s="$s" 'BEGIN { printf "| %s | %s | %s | %.2fx |\n", j, p, s, s / p }'
    fi
done
# the same medians with each command's start-up taken out
echo
echo "| $TXNS one-row transactions, start-up taken out | plain txn/s | scp txn/s |${AB:+ base txn/s |} scp/plain |${AB:+ scp/base |}"
echo "|---|---:|---:|${AB:+---:|}---:|${AB:+---:|}"
for jm in $MODES; do
    line="| $jm"
    for fs in $FSES; do
        m=$(echo ${R[$jm,$fs]} | tr ' ' '\n' | median)
        C[$fs]=$(awk -v n="$TXNS" -v r="$m" -v su="${SU[$fs]}" 'BEGIN { t = n / r - su / 1000; printf "%d", (t > 0 ? n / t : 0) }')
        line="$line | ${C[$fs]}"
    done
    line="$line | $(awk -v s="${C[scp]}" -v p="${C[plain]}" 'BEGIN { printf "%.2fx", s / p }')"
    [ -n "${AB:-}" ] && line="$line | $(awk -v s="${C[scp]}" -v b="${C[base]}" 'BEGIN { printf "%.2fx", s / b }')"
    echo "$line |"
done
