#!/usr/bin/env bash
# bench/memsafe/redis.sh - redis 7.0 (Debian 12's source package, its own make build with
# MALLOC=libc so that the memsafe runtime is its allocator) under each compiler configuration:
# redis-benchmark -P 16 on loopback (requests/s, server peak RSS), and optionally part of
# redis's own test suite (TESTS="unit/type/string unit/type/list ...") against each build.
#
#   bench/memsafe/redis.sh BUILD_DIR [SRC_DIR]
#   WORK=/tmp/scp-ms-bench  N=200000  ROUNDS=3  VARIANTS="plain hardening harden full asan"  TESTS=...
#   (also harden-types, full-types, and mainharden, mainfull with AB=BUILD_DIR: bench/memsafe/lib.sh)
#   ICOUNT_N=20000 (requests of each kind for the server's instruction count under valgrind;
#   0: skip it)
set -euo pipefail
build=$(cd "$1" && pwd)
scpcc=$build/scp-cc
WORK=${WORK:-/tmp/scp-ms-bench}
N=${N:-200000}
ROUNDS=${ROUNDS:-3}
VARIANTS=${VARIANTS:-plain hardening harden full asan}
TESTS=${TESTS:-}
ICOUNT_N=${ICOUNT_N:-20000}
mkdir -p "$WORK"
# The asan build runs its own tools (lemon) and these leak by design: no leak report.
export ASAN_OPTIONS=detect_leaks=0
. "$(dirname "$0")/lib.sh"
src=${2:-}
if [ -n "$src" ]; then src=$(cd "$src" && pwd) || exit 2; else src=$(debian_source redis 'redis-7.*') || exit 2; fi


for v in $VARIANTS; do
    d=$WORK/redis-$v
    [ -x "$d/src/redis-server" ] && continue
    rm -rf "$d"
    cp -a "$src" "$d"
    echo "== building redis ($v: CC=$(cc_for $v))" >&2
    ldflags=''
    [ $v = asan ] && ldflags=-fsanitize=address
    # one make in src/ for the three goals: the top-level Makefile hands each goal to a make
    # of its own, and with -j2 two of them built deps/ at once (libhdrhistogram.a went missing)
    (cd "$d" && nice make -C src -j2 MALLOC=libc BUILD_TLS=no USE_SYSTEMD=no CC="$(cc_for $v)" \
        OPTIMIZATION=-O2 LDFLAGS="$ldflags" redis-server redis-benchmark redis-cli >make.log 2>&1) || {
        echo "redis.sh: build of $v failed, see $d/make.log" >&2
        exit 1
    }
    # The test suite looks for src/redis-server and src/redis-check-aof (a copy of the server).
    for t in redis-check-aof redis-check-rdb redis-sentinel; do ln -sf redis-server "$d/src/$t"; done
done

port=$((20000 + RANDOM % 20000))
# Requests/s move 2x with the load of a shared machine; the server's own CPU time per request
# (user+sys from /proc/PID/stat, in clock ticks of 10 ms) moves much less: medians of ROUNDS.
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %12s %12s %8s %12s %8s %12s %8s\n' variant SET/s GET/s ratio cpu_us/req ratio peakRSS_KB ratio
base_r='' base_m='' base_c=''
median() { sort -n | sed -n "$(((ROUNDS + 1) / 2))p"; }
# (a run too short for the 10 ms clock ticks measures 0 CPU: no ratio then; raise N)
ratio() { if [ "$(echo "$2 > 0" | bc)" = 1 ]; then echo "scale=3; $1 / $2" | bc; else echo n/a; fi; }
for v in $VARIANTS; do
    d=$WORK/redis-$v
    sets=() gets=() cpus=() mems=()
    for _ in $(seq "$ROUNDS"); do
        "$d/src/redis-server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no >"$d/server.log" 2>&1 &
        pid=$!
        for _ in $(seq 50); do
            "$WORK/redis-plain/src/redis-cli" -p "$port" ping >/dev/null 2>&1 && break
            sleep 0.1
        done
        t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        out=$("$WORK/redis-plain/src/redis-benchmark" -p "$port" -P 16 -n "$N" -r 100000 -d 64 -q -t set,get 2>/dev/null |
            tr '\r' '\n' | grep -E '^(SET|GET):.*requests per second' || true)
        t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        sets+=("$(echo "$out" | awk '/^SET/ {print $2}' | tail -1)")
        gets+=("$(echo "$out" | awk '/^GET/ {print $2}' | tail -1)")
        cpus+=("$(echo "scale=3; ($t1 - $t0) * 10000 / (2 * $N)" | bc)")
        mems+=("$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)")
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        if grep -q 'memsafe:' "$d/server.log"; then
            echo "redis.sh: $v server reported a memsafe violation:" >&2
            grep 'memsafe:' "$d/server.log" >&2
        fi
    done
    set_r=$(printf '%s\n' "${sets[@]}" | median)
    get_r=$(printf '%s\n' "${gets[@]}" | median)
    cpu=$(printf '%s\n' "${cpus[@]}" | median)
    mem=$(printf '%s\n' "${mems[@]}" | median)
    sum=$(echo "$set_r + $get_r" | bc)
    [ -n "$base_r" ] || { base_r=$sum; base_m=$mem; base_c=$cpu; }
    printf '%-10s %12s %12s %8s %12s %8s %12s %8s\n' "$v" "$set_r" "$get_r" \
        "$(echo "scale=3; $base_r / $sum" | bc)" "$cpu" "$(ratio "$cpu" "$base_c")" \
        "$mem" "$(echo "scale=2; $mem / $base_m" | bc)"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(medians of $ROUNDS rounds; ratio: plain requests/s over this build's, i.e. the slowdown, SET+GET summed;"
echo " cpu_us/req: the server's user+sys per request; peakRSS: the server's VmHWM)"

# The server's instructions while it serves the benchmark, counted by valgrind (callgrind; counters
# zeroed after start-up and dumped before shutdown): independent of the machine's load, except
# for the server's timer work (serverCron, 10 times a second), which grows with the time the run
# takes under valgrind, longer for a slower build. The same requests for every build (-r with
# redis-benchmark's fixed seed).
if [ "$ICOUNT_N" != 0 ] && command -v valgrind >/dev/null; then
    printf '%-10s %16s %12s %8s\n' variant instructions instr/req ratio
    base_i=''
    for v in $VARIANTS; do
        [ "$v" = asan ] && continue # ASan's shadow memory does not run under valgrind
        d=$WORK/redis-$v
        # valgrind 3.19 cannot read clang-16's DWARF 5 ("unhandled dwarf2 abbrev form") and gives up.
        objcopy --strip-debug "$d/src/redis-server" "$d/redis-server.nodebug"
        rm -f "$d"/icount.cg*
        valgrind --tool=callgrind --callgrind-out-file="$d/icount.cg" "$d/redis-server.nodebug" --port "$port" \
            --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$d/icount.log" 2>&1 &
        pid=$!
        for _ in $(seq 300); do
            kill -0 "$pid" 2>/dev/null || break
            "$WORK/redis-plain/src/redis-cli" -p "$port" ping >/dev/null 2>&1 && break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            callgrind_control -z "$pid" >/dev/null 2>&1
            timeout 600 "$WORK/redis-plain/src/redis-benchmark" -p "$port" -P 16 -n "$ICOUNT_N" -r 100000 \
                -d 64 -q -t set,get >/dev/null 2>&1 || true
            callgrind_control -d "$pid" >/dev/null 2>&1
        fi
        "$WORK/redis-plain/src/redis-cli" -p "$port" shutdown nosave >/dev/null 2>&1 || true
        wait "$pid" 2>/dev/null || true
        i=$(sed -n 's/^totals: //p' "$d/icount.cg.1" 2>/dev/null || true)
        [ -n "$i" ] || { echo "redis.sh: no instruction count for $v, see $d/icount.log" >&2; continue; }
        [ -n "$base_i" ] || base_i=$i
        printf '%-10s %16s %12s %8s\n' "$v" "$i" "$((i / (2 * ICOUNT_N)))" "$(echo "scale=3; $i / $base_i" | bc)"
    done
    echo "(instructions of redis-server under valgrind --tool=callgrind serving $ICOUNT_N SET and $ICOUNT_N GET, -P 16)"
fi

if [ -n "$TESTS" ]; then
    for v in $VARIANTS; do
        [ "$v" = plain ] && continue
        d=$WORK/redis-$v
        args=()
        for t in $TESTS; do args+=(--single "$t"); done
        echo "== redis test suite on $v: $TESTS" >&2
        (cd "$d" && ./runtest --clients 2 --timeout 600 "${args[@]}" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >"$d/runtest.log"
            grep -q 'All tests passed without errors' "$d/runtest.log") &&
            echo "$v: $(grep -c '^\[ok\]' "$d/runtest.log") tests ok, all passed" ||
            { echo "$v: test suite FAILED:"; grep -E '\[err\]|\[exception\]|memsafe:' "$d/runtest.log" | head; }
    done
fi
