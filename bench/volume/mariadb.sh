#!/usr/bin/env bash
# bench/volume/mariadb.sh - MariaDB 10.11 with sysbench oltp_write_only, the server's data
# directory on a protected volume under `scpctl run` against the same server on a plain
# directory of the same disk; same run, ratios printed. The server runs as mysql (setpriv) with
# InnoDB's default options, as in tests/shield/mariadb.sh (on the volume it falls back to
# simulated AIO, see docs/shield.md); sysbench is the client, outside the shield in both cases
# (Unix socket). Besides tps, the server's CPU time (utime + stime of mariadbd) per transaction.
#
#   bench/volume/mariadb.sh [BUILD_DIR]
#
# SH=1 adds runs where mariadbd is exec'd by a shell that forked first (`sh -c 'true & wait;
# exec mariadbd ...'`, as an entrypoint script does: "scp-sh"); AB=OTHER_BUILD_DIR adds the same
# runs with another build ("ab", "ab-sh"), each on its own volume, in the same rounds. DW0=1
# adds "scp-dw0": this build's server with innodb_doublewrite=0 (bench/RESULTS.md "maria17":
# in a run of this length InnoDB writes no data page, so the doublewrite buffer is idle).
# STATUS=1 prints, after each run, InnoDB's own counters per transaction (pages written,
# doublewrite pages, data writes, flushes).
#
# Environment: ROUNDS=3 (median; plain and scp alternate within a round), SECS=20 (each run),
#   TABLES=4, ROWS=10000, THREADS=4, BASE=/var/tmp, STRACE=0 (1: one more run of each under
#   strace -f -c, from the server's start to its shutdown: flush calls per transaction;
#   STRACE_ALL=1: every call, those at 0.05 or more per transaction printed), PERF=1 (one more
#   run of each under `perf record -g -p` of the server: the shares of its samples by object,
#   perf.data kept in the temporary directory with KEEP=1).
# Needs root (to become mysql), mariadb-server and sysbench.
set -uo pipefail
B=$(cd "${1:-build}" && pwd)
SCPCTL=$B/src/scpctl
MKVOL=$B/tests/shield/shield-mkvol
ROUNDS=${ROUNDS:-3} SECS=${SECS:-20} TABLES=${TABLES:-4} ROWS=${ROWS:-10000} THREADS=${THREADS:-4}
command -v mariadb-install-db >/dev/null && command -v sysbench >/dev/null || { echo "mariadb-server or sysbench not installed"; exit 77; }
[ "$(id -u)" = 0 ] && id mysql >/dev/null 2>&1 || { echo "needs root and the user mysql"; exit 77; }
T=$(mktemp -d "${BASE:-/var/tmp}/scp-mariadb-bench.XXXXXX") || exit 1
chmod 755 "$T" && chown mysql: "$T"
AS="setpriv --reuid=mysql --regid=mysql --init-groups"
MNT=/scp-mariadb-bench-$$/data
SERVER_PID= SERVER_FS=
cleanup() {
    [ -n "$SERVER_PID" ] && stop_server
    [ "${KEEP:-0}" = 1 ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
$AS "$MKVOL" "$T/key" "$T/vol" || exit 1
$AS mkdir -p "$T/plain"

FSES="plain scp"
[ "${SH:-0}" = 1 ] && FSES="$FSES scp-sh"
[ "${DW0:-0}" = 1 ] && FSES="$FSES scp-dw0"
if [ -n "${AB:-}" ]; then
    AB=$(cd "$AB" && pwd)
    FSES="$FSES ab"
    [ "${SH:-0}" = 1 ] && FSES="$FSES ab-sh"
fi
for fs in $FSES; do [ "$fs" = plain ] || cp -a "$T/vol" "$T/vol-$fs"; done
pre() { # FS: the launcher, with the build and volume of FS
    case $1 in
    plain) ;;
    ab*) echo "$AB/src/scpctl run --volume $T/vol-$1:$MNT --key-file $T/key --" ;;
    *) echo "$SCPCTL run --volume $T/vol-$1:$MNT --key-file $T/key --" ;;
    esac
}
via() { case $1 in *-sh) echo "sh -c 'true & wait; exec \"\$0\" \"\$@\"'" ;; esac; }
opts() { case $1 in *-dw0) echo "--innodb-doublewrite=0" ;; esac; }
datadir() { if [ "$1" = plain ]; then echo "$T/plain/data"; else echo "$MNT"; fi; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
load() { cut -d' ' -f1 /proc/loadavg; }
SQL() { mariadb --no-defaults -S "$T/sock-$1" -uroot -N -B -e "$2"; }

install_in() { # FS
    (cd "$T" && SCP_QUIET=1 $AS $(pre "$1") mariadb-install-db --no-defaults --datadir="$(datadir "$1")" \
        --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve --tmpdir="$T" \
        >"$T/install-$1.log" 2>&1) || { tail -30 "$T/install-$1.log"; exit 1; }
}

# The server is the program `scpctl run` starts (no shell in between): a shell that forks before
# it execs mariadbd would put the volume in shared mode for mariadbd too (docs/shield.md,
# "fork"), a commit per write, which a server started on its own does not pay.
start_server() { # FS [trace]: mariadbd in the background
    local fs=$1 tr=""
    [ -n "${2:-}" ] && tr="strace -f -c -o $T/strace-$fs.txt -e trace=fsync,fdatasync,sync_file_range,pwrite64,pwritev,io_submit"
    [ -n "${2:-}" ] && [ "${STRACE_ALL:-0}" = 1 ] && tr="strace -f -c -o $T/strace-$fs.txt"
    (cd "$T" && SCP_QUIET=1 eval exec $tr $AS $(pre "$fs") $(via "$fs") /usr/sbin/mariadbd --no-defaults $(opts "$fs") --datadir="$(datadir "$fs")" \
        --socket="$T/sock-$fs" --skip-networking --pid-file="$T/pid-$fs" --log-error="$T/err-$fs.log" --tmpdir="$T" \
        2>/dev/null) &
    SERVER_PID=$! SERVER_FS=$fs
    for _ in $(seq 1 600); do
        SQL "$fs" "select 1" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "the $fs server did not start"; tail -20 "$T/err-$fs.log"; exit 1
}

stop_server() {
    mariadb-admin --no-defaults -S "$T/sock-$SERVER_FS" -uroot shutdown >/dev/null 2>&1 || kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID"
    SERVER_PID=
}

server_ticks() { awk '{print $14 + $15}' "/proc/$(cat "$T/pid-$1")/stat"; }

SB() { # FS COMMAND [ARGS]
    local fs=$1 cmd=$2; shift 2
    sysbench oltp_write_only --db-driver=mysql --mysql-socket="$T/sock-$fs" --mysql-user=root \
        --mysql-db=sbtest --tables="$TABLES" --table-size="$ROWS" "$@" "$cmd"
}

bench() { # FS -> "tps cpu_ms_per_txn"
    local c0 c1 n
    c0=$(server_ticks "$1")
    SB "$1" run --threads="$THREADS" --time="$SECS" >"$T/out-$1" 2>&1 || { cat "$T/out-$1" >&2; echo "0 0"; return; }
    c1=$(server_ticks "$1")
    n=$(sed -n 's/^ *transactions: *\([0-9]*\).*/\1/p' "$T/out-$1")
    echo "$(sed -n 's/^ *transactions: *[0-9]* *(\([0-9.]*\) per sec.*/\1/p' "$T/out-$1") $(awk -v d=$((c1 - c0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.3f", (n > 0 ? d * 1000 / hz / n : 0)}')"
}

innodb_status() { # FS: InnoDB's counters since the server's start, per transaction of the last run
    local n
    n=$(sed -n 's/^ *transactions: *\([0-9]*\).*/\1/p' "$T/out-$1")
    SQL "$1" "show global status where variable_name in ('Innodb_pages_written', 'Innodb_dblwr_pages_written',
        'Innodb_data_fsyncs', 'Innodb_os_log_fsyncs', 'Innodb_data_writes')" |
        awk -v fs="$1" -v n="$n" '{printf "%s %s %.3f/txn;", (NR == 1 ? "status " fs ":" : ""), $1, (n > 0 ? $2 / n : 0)} END {print ""}'
}

echo "MariaDB $(mariadbd --version | awk '{print $3}'), sysbench oltp_write_only: $TABLES tables x $ROWS rows, $THREADS threads, ${SECS}s runs, $ROUNDS rounds"
for fs in $FSES; do
    install_in "$fs"
    start_server "$fs"
    SQL "$fs" "create database sbtest" && SB "$fs" prepare >/dev/null || { echo "sysbench prepare ($fs) failed"; exit 1; }
    stop_server
done
for fs in $FSES; do : >"$T/res-$fs"; done
for r in $(seq 1 "$ROUNDS"); do
    for fs in $FSES; do
        start_server "$fs"
        l=$(load)
        res=$(bench "$fs")
        [ "${STATUS:-0}" = 1 ] && innodb_status "$fs"
        stop_server
        echo "$res" >>"$T/res-$fs"
        printf "round %d %-7s tps %8s  server CPU ms/txn %6s  (load %s)\n" "$r" "$fs" ${res} "$l"
    done
done
if [ "${STRACE:-0}" = 1 ]; then
    for fs in $FSES; do
        start_server "$fs" trace
        res=$(bench "$fs")
        stop_server
        n=$(sed -n 's/^ *transactions: *\([0-9]*\).*/\1/p' "$T/out-$fs")
        awk -v fs="$fs" -v n="$n" -v all="${STRACE_ALL:-0}" '$4 ~ /^[0-9]+$/ && $NF != "total" &&
            ((all == 1 && n > 0 && $4 / n >= 0.05) || $NF ~ /^(fsync|fdatasync|sync_file_range|pwrite64|pwritev|io_submit)$/) {
            printf "strace %-5s %-16s %8d calls, %.3f per txn\n", fs, $NF, $4, (n > 0 ? $4 / n : 0) }' "$T/strace-$fs.txt"
        [ "${STRACE_ALL:-0}" = 1 ] && awk -v fs="$fs" -v n="$n" '$NF == "total" {
            printf "strace %-5s %-16s %8d calls, %.3f per txn\n", fs, "(all)", $4, (n > 0 ? $4 / n : 0) }' "$T/strace-$fs.txt"
    done
fi
if [ "${PERF:-0}" = 1 ]; then
    for fs in $FSES; do
        start_server "$fs"
        perf record -q -g -o "$T/perf-$fs.data" -p "$(cat "$T/pid-$fs")" >/dev/null 2>&1 &
        pp=$!
        sleep 0.5
        res=$(bench "$fs")
        kill -INT $pp; wait $pp
        stop_server
        echo "perf $fs: tps ${res% *}, server CPU ms/txn ${res#* } (under perf); samples by object:"
        perf report -q -i "$T/perf-$fs.data" --no-children --sort dso 2>/dev/null | awk 'NF >= 2 && $1 + 0 >= 0.5 {printf "perf %-5s %7s %s\n", "'"$fs"'", $1, $2}' | head -14
    done
fi
grep -q "falling back to innodb_use_native_aio=OFF" "$T/err-scp.log" && echo "(scp: InnoDB fell back to simulated AIO)"
for fs in $FSES; do
    printf "median %-7s tps %8s  server CPU ms/txn %6s\n" "$fs" "$(cut -d' ' -f1 "$T/res-$fs" | median)" "$(cut -d' ' -f2 "$T/res-$fs" | median)"
done
tp=$(cut -d' ' -f1 "$T/res-plain" | median) ts=$(cut -d' ' -f1 "$T/res-scp" | median)
cp_=$(cut -d' ' -f2 "$T/res-plain" | median) cs=$(cut -d' ' -f2 "$T/res-scp" | median)
printf "median: plain %s tps, %s ms CPU/txn; scp %s tps, %s ms CPU/txn\n" "$tp" "$cp_" "$ts" "$cs"
awk -v a="$tp" -v b="$ts" -v c="$cp_" -v d="$cs" 'BEGIN {printf "ratio scp/plain: tps %.2f, server CPU per txn %.2f\n", (a > 0 ? b / a : 0), (c > 0 ? d / c : 0)}'
