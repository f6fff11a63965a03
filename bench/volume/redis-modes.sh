#!/usr/bin/env bash
# bench/volume/redis-modes.sh - redis-server (AOF on, everysec) under `scpctl run` on a protected
# volume, in each of the volume's modes that a long-running redis passes through, against plain
# redis-server on a plain directory, in the same run:
#   sole      redis alone on its volume: the sole holder (docs/volume-format.md, "Sole holder")
#   after-ls  after one `scpctl volume ls` of its volume: another program opened it, so redis
#             went shared (docs/shield.md, "Two programs on one volume")
#   after-fork after `redis-cli bgrewriteaof`: redis forked its rewrite child, so the family went
#             shared (redis forks on its own for BGSAVE and for the AOF rewrite it starts when
#             the file doubles past 64 MB)
#   beside    while a second `scpctl run` of the volume holds it open (a shell waiting with its
#             working directory in the mount): shared for as long as it does
#   after-beside once that shell exited
# Since branch sole21 redis takes the sole holding back once the other process is gone (the
# `scpctl volume` command closed the volume, the rewrite's child exited): docs/shield.md,
# "Back to the sole holding"; the after-ls and after-fork lines then come back to the sole
# line, and "beside" shows what shared mode still costs.
# For each: SET/s of redis-benchmark and redis's CPU per SET (utime + stime of the server from
# /proc, the load-independent figure), medians of ROUNDS benchmark runs.
#
#   bench/volume/redis-modes.sh [BUILD_DIR]     (default: build)
#
# Environment: ROUNDS=3, N=100000 (SETs per run), CLIENTS=20, TMP=/var/tmp.
set -uo pipefail
B=${1:-build}
SCPCTL=$(realpath "$B/src/scpctl")
ROUNDS=${ROUNDS:-3}
N=${N:-100000}
CLIENTS=${CLIENTS:-20}
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null ||
    { echo "redis-modes.sh: needs redis-server and redis-benchmark (apt-get install redis-server redis-tools)" >&2; exit 1; }
T=$(mktemp -d "${TMP:-/var/tmp}/scp-redis-modes.XXXXXX") || exit 1
PORT=$((21000 + RANDOM % 20000))
RPID=
cleanup() { [ -n "$RPID" ] && redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
export SCP_QUIET=1

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_up() { for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
server_pid() { pgrep -f "redis-server.*:$PORT" | head -1; }

# measure LABEL: ROUNDS benchmark runs; prints "LABEL SET/s us_per_SET"
measure() {
    local label=$1 r rps=() cpu=() pid c0 c1 out hz
    hz=$(getconf CLK_TCK)
    pid=$(server_pid)
    for r in $(seq "$ROUNDS"); do
        c0=$(ticks "$pid")
        out=$(redis-benchmark -p "$PORT" -t set -n "$N" -c "$CLIENTS" -r 100000 -q 2>&1 | tr '\r' '\n' |
            awk '/requests per second/ {v=$2} END {print v}')
        c1=$(ticks "$pid")
        rps+=("$out")
        cpu+=("$(awk -v a="$c0" -v b="$c1" -v n="$N" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz * 1e6 / n}')")
    done
    echo "$label $(printf '%s\n' "${rps[@]}" | median) $(printf '%s\n' "${cpu[@]}" | median)"
}

start() { # DIR [scpctl run prefix...]
    local dir=$1
    shift
    "$@" redis-server --port "$PORT" --bind 127.0.0.1 --dir "$dir" --appendonly yes \
        --appendfsync everysec --save '' >"$T/redis.log" 2>&1 &
    RPID=$!
    wait_up || { echo "redis-modes.sh: redis did not start:" >&2; cat "$T/redis.log" >&2; exit 1; }
}
stop() { redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1; wait "$RPID" 2>/dev/null; RPID=; }

load0=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$T/plain" "$T/mnt"
start "$T/plain"
res=("$(measure plain)")
redis-cli -p "$PORT" bgrewriteaof >/dev/null; sleep 2
res+=("$(measure plain-after-fork)")
stop

"$SCPCTL" volume keygen "$T/key" >/dev/null 2>&1 && "$SCPCTL" volume create "$T/vol" --key-file "$T/key" >/dev/null 2>&1 || exit 1
start /data "$SCPCTL" run --volume "$T/vol:/data" --key-file "$T/key" --
res+=("$(measure sole)")
"$SCPCTL" volume ls "$T/vol" --key-file "$T/key" >/dev/null || echo "redis-modes.sh: volume ls failed" >&2
res+=("$(measure after-ls)")
mkfifo "$T/hold"
# (the shell itself holds the volume open: its working directory lies in the mount)
"$SCPCTL" run --volume "$T/vol:/data" --key-file "$T/key" -- sh -c "cd /data && read x < $T/hold" \
    >/dev/null 2>&1 &
HOLD=$!
sleep 1
res+=("$(measure beside)")
echo go > "$T/hold"
wait "$HOLD" 2>/dev/null
sleep 0.3
res+=("$(measure after-beside)")
stop

rm -rf "$T/vol" && "$SCPCTL" volume create "$T/vol" --key-file "$T/key" >/dev/null 2>&1 || exit 1
start /data "$SCPCTL" run --volume "$T/vol:/data" --key-file "$T/key" --
res+=("$(measure sole2)")
redis-cli -p "$PORT" bgrewriteaof >/dev/null; sleep 2
res+=("$(measure after-fork)")
stop

printf '\nredis %s, AOF everysec, redis-benchmark -t set -n %s -c %s, medians of %s runs\n' \
    "$(redis-server --version | awk '{print $3}')" "$N" "$CLIENTS" "$ROUNDS"
printf 'load average before %s, after %s\n' "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| mode | SET/s | redis CPU per SET (us) | CPU / plain |\n|---|---:|---:|---:|\n'
pcpu=$(printf '%s\n' "${res[@]}" | awk '$1 == "plain" {print $3}')
for l in "${res[@]}"; do
    set -- $l
    printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(awk -v a="$3" -v b="$pcpu" 'BEGIN {printf (b > 0 ? "%.2fx" : "-"), a / b}')"
done
