#!/usr/bin/env bash
# bench/memsafe/sqlite.sh - sqlite 3.40 (Debian 12's source package) built with its own
# autotools build under each compiler configuration, then speedtest1: time, peak memory, and
# the --verify output compared with the plain build (a false positive would abort or differ).
#
#   bench/memsafe/sqlite.sh BUILD_DIR [SRC_DIR]
#     BUILD_DIR  the CMake build with scp-cc (e.g. build)
#     SRC_DIR    an unpacked sqlite3 source (default: apt-get source sqlite3 into $WORK)
#   WORK=/tmp/scp-ms-bench  RUNS=3  SIZE=50  VARIANTS="plain hardening harden full asan"
#   (also harden-types, full-types, and mainharden, mainfull with AB=BUILD_DIR: bench/memsafe/lib.sh)
#   ICOUNT_SIZE=2 (speedtest1 size for the instruction counts under valgrind; 0: skip them)
set -euo pipefail
build=$(cd "$1" && pwd)
scpcc=$build/scp-cc
WORK=${WORK:-/tmp/scp-ms-bench}
RUNS=${RUNS:-3}
SIZE=${SIZE:-50}
VARIANTS=${VARIANTS:-plain hardening harden full asan}
ICOUNT_SIZE=${ICOUNT_SIZE:-2}
mkdir -p "$WORK"
# The asan build runs its own tools (lemon) and these leak by design: no leak report.
export ASAN_OPTIONS=detect_leaks=0
. "$(dirname "$0")/lib.sh"
src=${2:-}
if [ -n "$src" ]; then src=$(cd "$src" && pwd) || exit 2; else src=$(debian_source sqlite3 'sqlite3-3.*') || exit 2; fi


for v in $VARIANTS; do
    d=$WORK/sqlite-$v
    [ -x "$d/speedtest1" ] && continue
    rm -rf "$d"
    mkdir -p "$d"
    echo "== building sqlite ($v: CC=$(cc_for $v))" >&2
    (cd "$d" && "$src/configure" CC="$(cc_for $v)" CFLAGS="-O2" --disable-tcl --disable-readline \
        --disable-shared >configure.log 2>&1 && nice make speedtest1 >make.log 2>&1) || {
        echo "sqlite.sh: build of $v failed, see $d/*.log" >&2
        exit 1
    }
done

db=$WORK/speedtest.db
# Wall time moves 2x with the load of a shared machine; the process's own CPU time
# (user+sys, from /usr/bin/time) moves much less, and is the figure to compare.
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %8s %7s %9s %7s %12s %7s %s\n' variant "wall(s)" ratio "cpu(s)" ratio "peakRSS(KB)" ratio verify
base_t='' base_c='' base_m=''
median() { sort -n | sed -n "$(((RUNS + 1) / 2))p"; }
for v in $VARIANTS; do
    d=$WORK/sqlite-$v
    times=() cpus=() mems=()
    for r in $(seq "$RUNS"); do
        rm -f "$db"
        /usr/bin/time -f '%e %U %S %M' -o "$d/time.txt" "$d/speedtest1" --size "$SIZE" --verify "$db" >"$d/out.txt" 2>&1
        read -r t u s m <"$d/time.txt"
        times+=("$t") cpus+=("$(echo "$u + $s" | bc)") mems+=("$m")
    done
    t=$(printf '%s\n' "${times[@]}" | median)
    c=$(printf '%s\n' "${cpus[@]}" | median)
    m=$(printf '%s\n' "${mems[@]}" | median)
    # The verify lines without the timings.
    sed -E 's/[0-9]+\.[0-9]+s$//' "$d/out.txt" | grep -v -i 'total\|elapsed' >"$d/verify.txt" || true
    same=n/a
    if [ "$v" != plain ] && [ -f "$WORK/sqlite-plain/verify.txt" ]; then
        cmp -s "$d/verify.txt" "$WORK/sqlite-plain/verify.txt" && same=identical || same=DIFFERENT
    fi
    [ -n "$base_t" ] || { base_t=$t; base_c=$c; base_m=$m; }
    printf '%-10s %8s %7s %9s %7s %12s %7s %s\n' "$v" "$t" "$(echo "scale=3; $t / $base_t" | bc)" \
        "$c" "$(echo "scale=3; $c / $base_c" | bc)" "$m" "$(echo "scale=2; $m / $base_m" | bc)" "$same"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(medians of $RUNS runs of speedtest1 --size $SIZE; ratios to the first variant; cpu = user+sys)"

# Instructions executed, counted by valgrind (callgrind): the same on a quiet or a loaded
# machine. A smaller size keeps it short (valgrind runs the program 20-50x slower).
if [ "$ICOUNT_SIZE" != 0 ] && command -v valgrind >/dev/null; then
    printf '%-10s %16s %8s\n' variant instructions ratio
    base_i=''
    for v in $VARIANTS; do
        [ "$v" = asan ] && continue # ASan's shadow memory does not run under valgrind
        rm -f "$db"
        i=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$WORK/sqlite-$v/speedtest1" \
            --size "$ICOUNT_SIZE" "$db" 2>&1 >/dev/null | sed -n 's/.*Collected : //p')
        [ -n "$base_i" ] || base_i=$i
        printf '%-10s %16s %8s\n' "$v" "$i" "$(echo "scale=3; $i / $base_i" | bc)"
    done
    echo "(instructions of speedtest1 --size $ICOUNT_SIZE under valgrind --tool=callgrind)"
fi
rm -f "$db"
