#!/bin/bash
# bench/console/run.sh BUILD_DIR [MIB] [ROUNDS] - the cost of the console shield: the same
# workload under `scpctl run --cas` with stdout plain and with stdout sealed (policy
# `console: {stdout: sealed}`), and `scpctl logs` decrypting the capture. Output goes to a file
# in $BENCH_DIR (default /dev/shm). Prints one line per workload: median seconds of ROUNDS
# (default 3) for plain, sealed, and the ratio; MiB/s of `scpctl logs`.
#   bulk:  head -c MIB MiB </dev/zero | tr '\0' y   (head/tr write 8 KiB, one record each)
#   lines: seq 1 N (stdio fully buffered: 4 KiB writes)
#   line-buffered: stdbuf -oL seq 1 N/10 (one write, so one record, per line: the worst case)
set -eu
BUILD=$(cd "${1:?usage: run.sh BUILD_DIR [MIB] [ROUNDS]}" && pwd)
MIB=${2:-256}
ROUNDS=${3:-3}
SCPCTL=$BUILD/src/scpctl
T=$(mktemp -d "${BENCH_DIR:-/dev/shm}/scp-conbench.XXXXXX")
export SCP_HOME=$T/home
CAS_PID=
cleanup() {
    [ -n "$CAS_PID" ] && kill "$CAS_PID" 2>/dev/null && wait "$CAS_PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
"$SCPCTL" cas identity --out "$T/id.pem" >/dev/null
export SCP_IDENTITY=$T/id.pem
"$SCPCTL" cas serve --data "$T/data" --listen 127.0.0.1:0 --port-file "$T/port" --admin "$T/id.pem" >"$T/cas.out" 2>"$T/cas.err" &
CAS_PID=$!
for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
export SCP_CAS=127.0.0.1:$(cat "$T/port")
export SCP_CAS_PIN=$(sed -n 's/.*fingerprint (pin this): \([0-9a-f]*\).*/\1/p' "$T/cas.out")
"$SCPCTL" platform create-key "$T/p.key" >/dev/null
"$SCPCTL" platform enroll --name p --key "$T/p.key" >/dev/null
mkdir -p "$T/bin"
cp "$(readlink -f /bin/sh)" "$T/bin/sh"
M=$("$SCPCTL" platform measure -- "$T/bin/sh")
cat >"$T/s.yaml" <<YAML
name: bench
services:
  - {name: plain, measurements: [$M], append_args: true, command: [sh, -c]}
  - {name: sealed, measurements: [$M], append_args: true, command: [sh, -c], console: {stdout: sealed}}
YAML
"$SCPCTL" session create "$T/s.yaml" >/dev/null

now() { date +%s.%N; }
# run SERVICE SCRIPT: "wall cpu" seconds for one run (cpu: user + system of scpctl run and every
# process it waited for, the program included), output in $T/out
run() {
    /usr/bin/time -o "$T/time" -f "%e %U %S" "$SCPCTL" run --session bench --service "$1" --platform-key "$T/p.key" \
        --volume-dir "$T/vols" -- "$T/bin/sh" "$2" >"$T/out" 2>"$T/err" || { echo "run failed: $(tail -3 "$T/err")" >&2; exit 1; }
    awk '{print $1, $2 + $3}' "$T/time"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

NLINES=$((MIB * 1024 * 1024 / 8))
declare -A W=(
    [bulk]="head -c ${MIB}M </dev/zero | tr '\\\\0' y"
    [lines]="seq 1 $NLINES"
    [line-buffered]="stdbuf -oL seq 1 $((NLINES / 10))"
)
echo "console bench: $MIB MiB, $ROUNDS rounds, output in $T ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-14s %8s %8s %7s %8s %8s %7s %20s %10s\n' workload plain_s sealed_s ratio p_cpu_s s_cpu_s ratio sealed/plain_bytes logs_MiB/s
for w in bulk lines line-buffered; do
    p=() s=()
    for r in $(seq "$ROUNDS"); do # the order alternates between rounds
        [ $((r % 2)) -eq 0 ] && s+=("$(run sealed "${W[$w]}")")
        p+=("$(run plain "${W[$w]}")")
        plain_bytes=$(stat -c %s "$T/out")
        [ $((r % 2)) -eq 1 ] && s+=("$(run sealed "${W[$w]}")")
    done
    run sealed "${W[$w]}" >/dev/null # the capture that logs reads
    sealed_bytes=$(stat -c %s "$T/out")
    t0=$(now)
    "$SCPCTL" logs bench sealed "$T/out" >"$T/plain.back"
    t1=$(now)
    [ "$(stat -c %s "$T/plain.back")" -eq "$plain_bytes" ] || { echo "logs gave a different size" >&2; exit 1; }
    pm=$(printf '%s\n' "${p[@]}" | cut -d' ' -f1 | median)
    sm=$(printf '%s\n' "${s[@]}" | cut -d' ' -f1 | median)
    pc=$(printf '%s\n' "${p[@]}" | cut -d' ' -f2 | median)
    sc=$(printf '%s\n' "${s[@]}" | cut -d' ' -f2 | median)
    printf '%-14s %8.3f %8.3f %6.2fx %8.3f %8.3f %6.2fx %20s %10.0f\n' "$w" "$pm" "$sm" "$(awk "BEGIN {print $sm / $pm}")" \
        "$pc" "$sc" "$(awk "BEGIN {print $sc / ($pc > 0 ? $pc : 0.001)}")" \
        "$sealed_bytes/$plain_bytes" "$(awk "BEGIN {print $plain_bytes / 1048576 / ($t1 - $t0)}")"
done

# redis-server logging every connection (--loglevel verbose) to stdout, plain or sealed, under
# redis-benchmark without keep-alive (-k 0: one connection, so one log line, per request)
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null || exit 0
cp "$(command -v redis-server)" "$T/bin/redis-server"
MR=$("$SCPCTL" platform measure -- "$T/bin/redis-server")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$T/r.yaml" <<YAML
name: rbench
services:
  - {name: plain, measurements: [$MR], command: [redis-server, --port, "$PORT", --bind, 127.0.0.1, --save, "", --loglevel, verbose, --logfile, ""]}
  - {name: sealed, measurements: [$MR], command: [redis-server, --port, "$PORT", --bind, 127.0.0.1, --save, "", --loglevel, verbose, --logfile, ""], console: {stdout: sealed}}
YAML
"$SCPCTL" session create "$T/r.yaml" >/dev/null
NREQ=${REDIS_REQUESTS:-20000}
printf '%-14s %10s %10s %7s %12s\n' redis-log plain_rps sealed_rps ratio log_bytes
rps() {
    "$SCPCTL" run --session rbench --service "$1" --platform-key "$T/p.key" --volume-dir "$T/vols" -- "$T/bin/redis-server" \
        >"$T/rlog" 2>"$T/rerr" &
    local pid=$!
    for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-benchmark -p "$PORT" -k 0 -c 10 -n "$NREQ" -t ping_inline -q 2>/dev/null | tr '\r' '\n' |
        sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1
    kill -TERM $pid
    wait $pid || true
}
p=() s=()
for r in $(seq "$ROUNDS"); do
    [ $((r % 2)) -eq 0 ] && s+=("$(rps sealed)")
    p+=("$(rps plain)")
    [ $((r % 2)) -eq 1 ] && s+=("$(rps sealed)")
done
[ $((ROUNDS % 2)) -eq 1 ] || rps sealed >/dev/null # the sealed log read back below
pm=$(printf '%s\n' "${p[@]}" | median)
sm=$(printf '%s\n' "${s[@]}" | median)
printf '%-14s %10.0f %10.0f %6.2fx %12s\n' verbose "$pm" "$sm" "$(awk "BEGIN {print $sm / $pm}")" "$(stat -c %s "$T/rlog")"
"$SCPCTL" logs rbench sealed "$T/rlog" | grep -c "Accepted" | sed 's/^/redis log lines "Accepted" read back from the sealed log: /'

