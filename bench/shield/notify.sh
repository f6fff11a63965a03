#!/bin/sh
# bench/shield/notify.sh BUILD_DIR - static images served by the supervisor (seccomp user
# notification) against the shield's trap path and native: cost per call (notifybench.c) and
# a Go program's file workload (gobench.go). One command, a few minutes at most; prints the
# load average with the figures. N (calls per loop, default 3000), GON (Go files, default 300).
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
    for i in 1 2 3; do
        rm -rf "$T/goplain"/*
        n=$("$T/gobench" "$T/goplain" "$GON")
        "$S" volume mkdir "$T/vol" "g$i" --key-file "$T/key" >/dev/null
        s=$(run "$T/gobench" "$T/mnt/g$i" "$GON" 2>&1 || true)
        echo "go workload ($GON files: create, write 4K, fsync, close, rename; read back; readdir), round $i: native $n ms, scp $s ms, ratio $(awk -v a="$s" -v b="$n" 'BEGIN{printf "%.1f", a/b}')x"
    done
fi
