#!/bin/sh
# bench/shield/notify.sh BUILD_DIR - static images served by the supervisor (seccomp user
# notification) against the shield's trap path and native: cost per call (notifybench.c) and
# a Go program's file workload (gobench.go). One command, a few minutes at most; prints the
# load average with the figures. N (calls per loop, default 3000), GON (Go files, default 300).
# STRACE=1 adds the supervisor's system calls per Go file (strace). The Go rounds print wall and CPU time (perf stat's task-clock of the whole process tree,
# supervisor included) with the ratios; needs perf (linux-perf) and golang-go.
set -eu
B=${1:-build}
N=${N:-3000}
GON=${GON:-300}
T=$(mktemp -d "${TMPDIR:-/var/tmp}/notifybench.XXXXXX")
trap 'rm -rf "$T"' EXIT
export SCP_QUIET=1
"$B/tests/shield/shield-mkvol" "$T/key" "$T/vol"
mkdir -p "$T/plain" "$T/goplain"
S="$B/src/scpctl"
run() { "$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- "$@"; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== native (static binary, ordinary directory)"
"$B/bench/shield/shield-notifybench-static" "$T/plain" "$N"
echo "== trap path / fast path (dynamic binary under scpctl run, protected volume)"
run "$B/bench/shield/shield-notifybench" "$T/mnt" "$N"
echo "== notification path (static binary under scpctl run, protected volume)"
# the supervisor's CPU time: it is the one process of this run that is not its descendant;
# sampled from /proc just before the benchmark ends (utime+stime, clock ticks)
run "$B/bench/shield/shield-notifybench-static" "$T/mnt" "$N" &
bp=$!
sup=""
while kill -0 $bp 2>/dev/null; do
    p=$(pgrep -n -f "^$S run --volume $T/vol" || true)
    [ -n "$p" ] && [ "$p" != "$bp" ] && sup=$p
    [ -n "$sup" ] && ticks=$(awk '{print $14 + $15}' "/proc/$sup/stat" 2>/dev/null || echo "$ticks")
    sleep 0.2
done
wait $bp
[ -n "$sup" ] && echo "supervisor CPU: $(( ${ticks:-0} * 1000000000 / $(getconf CLK_TCK) / (6 * N) )) ns per notified call (utime+stime over the $((6 * N)) notified calls of the loops: stat 1, open+read+close 2 each; 10 ms ticks)"
if command -v go >/dev/null; then
    GOCACHE=$T/gocache GOPATH=$T/gopath GO111MODULE=off CGO_ENABLED=0 \
        go build -o "$T/gobench" "$(dirname "$0")/gobench.go"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    # CPU: task-clock of the whole process tree (perf stat; under scpctl run that includes
    # the supervisor), which does not grow with the machine's load as the wall time does
    pcpu() { perf stat -x, -e task-clock -o "$T/cpu" -- "$@"; }
    cpu() { awk -F, '/task-clock/ {printf "%.0f", $1}' "$T/cpu"; }
    for i in 1 2 3; do
        rm -rf "$T/goplain"/*
        n=$(pcpu "$T/gobench" "$T/goplain" "$GON"); nc=$(cpu)
        "$S" volume mkdir "$T/vol" "g$i" --key-file "$T/key" >/dev/null
        s=$(pcpu "$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- "$T/gobench" "$T/mnt/g$i" "$GON" 2>&1 || true)
        sc=$(cpu)
        echo "go workload ($GON files: create, write 4K, fsync, close, rename; read back; readdir), round $i: native $n ms wall / $nc ms cpu, scp $s ms / $sc ms cpu, ratio $(awk -v a="$s" -v b="$n" -v c="$sc" -v d="$nc" 'BEGIN{printf "%.1fx wall / %.1fx cpu", a/b, c/d}')"
    done
fi
# STRACE=1: the supervisor's system calls per Go file and per notified call (load-independent;
# strace attached to the supervisor once it is up, so the first few calls may be missed)
if [ "${STRACE:-0}" = 1 ] && command -v strace >/dev/null && [ -x "$T/gobench" ]; then
    "$S" volume mkdir "$T/vol" gs --key-file "$T/key" >/dev/null
    "$S" run --volume "$T/vol:$T/mnt" --key-file "$T/key" -- "$T/gobench" "$T/mnt/gs" "$GON" >/dev/null 2>&1 &
    bp=$!
    sup=""
    while [ -z "$sup" ] && kill -0 $bp 2>/dev/null; do
        p=$(pgrep -n -f "^$S run --volume $T/vol" || true)
        [ -n "$p" ] && [ "$p" != "$bp" ] && sup=$p
    done
    [ -n "$sup" ] && strace -o "$T/tr" -p "$sup" 2>/dev/null || true
    wait $bp || true
    if [ -s "$T/tr" ]; then
        recv=$(grep -c 'SECCOMP_IOCTL_NOTIF_RECV' "$T/tr" || true)
        tot=$(grep -c '^[a-z_0-9]*(' "$T/tr" || true)
        echo "supervisor system calls (strace), go workload: $tot for $recv notified calls: $(awk -v a="$tot" -v b="$GON" 'BEGIN{printf "%.1f", a/b}') per file, $(awk -v a="$tot" -v b="$recv" 'BEGIN{printf "%.2f", a/b}') per notified call"
        sed 's/(.*//' "$T/tr" | grep '^[a-z_0-9]*$' | sort | uniq -c | sort -rn | head -8 |
            awk -v n="$GON" '{printf "  %-18s %.1f per file\n", $2, $1 / n}'
    fi
fi
