#!/usr/bin/env bash
# bench/memsafe/nginx.sh - nginx 1.22 (Debian 12's source package, its own configure/make) built
# plain (clang-16 -O2) and with scp-cc --memsafe, serving static files and 404s to wrk on
# loopback: requests/s, the worker's CPU time per request (user+sys from /proc/PID/stat: the
# figure that a shared machine's load moves least), and zero false positives (every response
# as expected, no memsafe report in the error log, the worker still alive).
#
#   bench/memsafe/nginx.sh BUILD_DIR [SRC_DIR]
#   WORK=/tmp/scp-ms-bench  DURATION=10  VARIANTS="plain harden full" (the variants of lib.sh's cc_for)
set -euo pipefail
build=$(cd "$1" && pwd)
scpcc=$build/scp-cc
. "$(dirname "$0")/lib.sh"
WORK=${WORK:-/tmp/scp-ms-bench}
DURATION=${DURATION:-10}
VARIANTS=${VARIANTS:-plain harden full}
command -v wrk >/dev/null || { echo "nginx.sh: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
mkdir -p "$WORK"
src=${2:-}
if [ -z "$src" ]; then
    src=$(ls -d "$WORK"/src/nginx-1.* 2>/dev/null | head -1 || true)
    if [ -z "$src" ]; then
        mkdir -p "$WORK/src"
        (cd "$WORK/src" && apt-get source nginx >/dev/null 2>&1) || {
            echo "nginx.sh: apt-get source nginx failed (no deb-src line in the apt sources?)" >&2
            exit 2
        }
        src=$(ls -d "$WORK"/src/nginx-1.* | head -1)
    fi
fi
src=$(cd "$src" && pwd)

for v in $VARIANTS; do
    d=$WORK/nginx-$v
    [ -x "$d/objs/nginx" ] && continue
    rm -rf "$d"
    cp -a "$src" "$d"
    # nginx's configure takes a compiler path, not a command line: a one-line wrapper.
    # (cc_for's command line, its words as they are: no variant's has quoted spaces)
    printf '#!/bin/sh\nexec %s "$@"\n' "$(cc_for "$v")" >"$d/cc"
    chmod +x "$d/cc"
    echo "== building nginx ($v)" >&2
    (cd "$d" && ./configure --with-cc="$d/cc" --with-cc-opt="-O2 -g" --prefix="$d/run" \
        --without-http_rewrite_module --without-http_gzip_module --with-threads >configure.log 2>&1 &&
        nice make -j2 >make.log 2>&1) || {
        echo "nginx.sh: build of $v failed, see $d/*.log" >&2
        exit 1
    }
done

# Content: a small page, a 64 KiB file, and a directory listing (autoindex).
www=$WORK/nginx-www
mkdir -p "$www/dir"
echo '<html><body>memsafe nginx</body></html>' >"$www/index.html"
head -c 65536 /dev/urandom >"$www/big.bin"
for i in $(seq 1 40); do echo "file $i" >"$www/dir/f$i.txt"; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %-10s %10s %8s %14s %8s %s\n' variant url req/s ratio cpu_us/req ratio errors
declare -A base_r base_c
fails=0
for v in $VARIANTS; do
    d=$WORK/nginx-$v
    port=$((20000 + RANDOM % 30000))
    mkdir -p "$d/run/logs"
    cat >"$d/run/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $d/run/nginx.pid;
error_log $d/run/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$port;
        root $www;
        location /dir/ { autoindex on; }
    }
}
EOF
    : >"$d/run/logs/error.log"
    "$d/objs/nginx" -p "$d/run" -c "$d/run/nginx.conf" 2>"$d/run/stderr" &
    master=$!
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
    worker=$(pgrep -P "$master" | head -1)
    for url in / /big.bin /dir/ /missing; do
        want=200
        [ "$url" = /missing ] && want=404
        got=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$url")
        [ "$got" = "$want" ] || { echo "nginx.sh: $v $url answered $got, not $want" >&2; fails=$((fails + 1)); }
        c0=$(cpu_ticks "$worker")
        out=$(wrk -t1 -c16 -d"${DURATION}s" "http://127.0.0.1:$port$url" 2>&1)
        c1=$(cpu_ticks "$worker")
        req=$(echo "$out" | awk '/requests in/ {print $1}')
        rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
        # wrk counts non-2xx/3xx responses and socket errors; the 404 URL is expected to be non-2xx.
        bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
        sock=$(echo "$out" | awk '/Socket errors/ {print}')
        errs=0
        [ "$url" != /missing ] && [ -n "$bad" ] && errs=$bad
        [ -n "$sock" ] && errs="$errs; $sock"
        [ "$errs" = 0 ] || fails=$((fails + 1))
        cpu=$(echo "scale=2; ($c1 - $c0) * 10000 / $req" | bc) # ticks are 10 ms
        [ -n "${base_r[$url]:-}" ] || { base_r[$url]=$rps; base_c[$url]=$cpu; }
        printf '%-8s %-10s %10s %8s %14s %8s %s\n' "$v" "$url" "$rps" \
            "$(echo "scale=3; ${base_r[$url]} / $rps" | bc)" "$cpu" \
            "$(echo "scale=3; $cpu / ${base_c[$url]}" | bc)" "$errs"
    done
    kill -0 "$worker" 2>/dev/null || { echo "nginx.sh: $v worker died" >&2; fails=$((fails + 1)); }
    kill "$master"
    wait "$master" 2>/dev/null || true
    if grep -q 'memsafe:\|signal' "$d/run/logs/error.log" "$d/run/stderr"; then
        echo "nginx.sh: $v: error log:" >&2
        grep 'memsafe:\|signal' "$d/run/logs/error.log" "$d/run/stderr" >&2
        fails=$((fails + 1))
    fi
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(ratio of req/s: first variant's over this one's, the slowdown; cpu_us/req: the worker's user+sys per request)"
[ $fails -eq 0 ] && echo "no false positive: every response as expected, no memsafe report, workers alive" ||
    { echo "nginx.sh: $fails problems" >&2; exit 1; }
