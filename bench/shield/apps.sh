#!/usr/bin/env bash
# bench/shield/apps.sh - real programs on a protected volume (under scpctl run) against the same
# programs on a plain directory, in the same run, with ratios (shielded / plain).
#
#   bench/shield/apps.sh [BUILD_DIR]      (default build; needs redis, sqlite3, nginx, wrk)
#
# Environment: ROUNDS=3 (median of rounds; plain and shielded alternate within a round),
#   REQS=100000 (redis-benchmark requests), SECS=5 (wrk duration), ROWS=100000 (sqlite rows),
#   BASE=/var/tmp (where volumes and plain directories live), ONLY="redis sqlite nginx",
#   CHUNK=4096 (the volume's chunk size, 4096..65536), AB=OTHER_BUILD_DIR (adds a "base" mode:
#   the same programs under OTHER_BUILD_DIR's scpctl on a volume of its own, in the same
#   rounds, with a shielded/base column: an A/B of two builds against one plain).
# Workloads:
#   redis  redis-server, appendonly yes, appendfsync everysec; redis-benchmark -c 50 SET and
#          GET, without pipelining and with -P 16
#   sqlite sqlite3 CLI: ROWS inserts in one transaction, 2000 one-row transactions (rollback
#          journal), a full scan and 2000 point selects
#   nginx  nginx (sendfile on, 1 worker): wrk -t2 -c50 on a 4 KiB and a 1 MiB static file,
#          without and with open_file_cache (nginx-ofc: descriptors kept open across requests);
#          NGX_USER=root (the worker's user: www-data has its search permission checked on
#          every directory of every path), FILL=0 (one-byte files beside them in the served
#          tree, in directories of 1,000: a site, or a volume, of many files)
# Prints throughput and, load-independent, CPU time per operation (the server's utime+stime for
# redis and nginx's worker, 10 ms ticks; perf's task-clock for sqlite3), both with ratios.
set -uo pipefail
B=${1:-build}
SCPCTL=$B/src/scpctl
MKVOL=$B/tests/shield/shield-mkvol
ROUNDS=${ROUNDS:-3}
REQS=${REQS:-100000}
SECS=${SECS:-5}
ROWS=${ROWS:-100000}
ONLY=${ONLY:-redis sqlite nginx}
T=$(mktemp -d "${BASE:-/var/tmp}/scp-shield-bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

free_port() {
    while :; do
        p=$(shuf -i 20000-60999 -n 1)
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A R # results: R[workload,mode] = "v1 v2 ..."
add() { R[$1,$2]="${R[$1,$2]:-} $3"; echo "  $1 $2: $3"; }
# CPU time per operation (microseconds; utime + stime of the server process, or perf's
# task-clock of the sqlite3 process tree): unlike the throughput it does not move with the
# machine's load. C[workload,mode] as R.
declare -A C
addc() { C[$1,$2]="${C[$1,$2]:-} $3"; echo "  $1 $2: $3 us cpu/op"; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

# setup: one volume (and one for AB's build), one plain dir
AB=${AB:-}
MODES="plain shield"
"$MKVOL" "$T/key" "$T/vol" "${CHUNK:-4096}" || exit 1
if [ -n "$AB" ]; then
    "$AB/tests/shield/shield-mkvol" "$T/keyb" "$T/volb" "${CHUNK:-4096}" || exit 1
    MODES="plain shield base"
fi
mkdir -p "$T/plain"
# prefix MODE: the command prefix that runs a program in that mode, and its data dir
pre() {
    if [ "$1" = shield ]; then echo "$SCPCTL run --volume $T/vol:$T/mnt --key-file $T/key --"; fi
    if [ "$1" = base ]; then echo "$AB/src/scpctl run --volume $T/volb:$T/mntb --key-file $T/keyb --"; fi
}
dir() { case $1 in shield) echo "$T/mnt" ;; base) echo "$T/mntb" ;; *) echo "$T/plain" ;; esac; }

bench_redis() { # MODE
    local mode=$1 port d
    port=$(free_port)
    d=$(dir "$mode")/redis
    $(pre "$mode") mkdir -p "$d"
    $(pre "$mode") redis-server --port "$port" --bind 127.0.0.1 --protected-mode no --dir "$d" \
        --appendonly yes --appendfsync everysec --save "" --logfile "$T/redis-$mode.log" &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 100); do [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
    for p in 1 16; do
        local c0 c1
        c0=$(ticks "$pid")
        while read -r op pp rps; do add "redis-$op-P$pp" "$mode" "$rps"; done < <(
            redis-benchmark -p "$port" -c 50 -n "$REQS" -P $p -t set,get -q 2>/dev/null | tr '\r' '\n' |
            awk -v p=$p '/requests per second/ {gsub(":","",$1); print $1, p, $2}')
        c1=$(ticks "$pid")
        addc "redis-SET+GET-P$p" "$mode" "$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v n="$REQS" 'BEGIN {printf "%.2f", t * 1e6 / hz / (2 * n)}')"
    done
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
    wait "$pid" 2>/dev/null
    $(pre "$mode") rm -rf "$d"
}

# cpu_of OPS CMD...: run CMD under perf stat; prints CPU microseconds per op of its process tree
cpu_of() {
    local ops=$1
    shift
    perf stat -x, -e task-clock -o "$T/cpu" -- "$@"
    awk -F, -v n="$ops" '/task-clock/ {printf "%.2f", $1 * 1000 / n}' "$T/cpu" > "$T/cpu.op"
}
bench_sqlite() { # MODE
    local mode=$1 db t0 t1
    db=$(dir "$mode")/bench.db
    t0=$(date +%s%N)
    cpu_of "$ROWS" $(pre "$mode") sqlite3 "$db" "PRAGMA journal_mode=DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
        BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<$ROWS)
        INSERT INTO t SELECT x, printf('value-%08d-padding-padding-padding', x) FROM c; COMMIT;" >/dev/null
    t1=$(date +%s%N)
    add sqlite-bulk-insert-rows/s "$mode" "$(( ROWS * 1000000000 / (t1 - t0) ))"
    addc sqlite-bulk-insert-row "$mode" "$(cat "$T/cpu.op")"
    { for i in $(seq 1 2000); do echo "INSERT INTO t(v) VALUES('txn-$i');"; done; } > "$T/txn.sql"
    t0=$(date +%s%N)
    cpu_of 2000 $(pre "$mode") sqlite3 "$db" < "$T/txn.sql"
    t1=$(date +%s%N)
    add sqlite-txn/s "$mode" "$(( 2000 * 1000000000 / (t1 - t0) ))"
    addc sqlite-txn "$mode" "$(cat "$T/cpu.op")"
    { for i in $(seq 1 2000); do echo "SELECT v FROM t WHERE id = $(( (i * 7919) % ROWS + 1 ));"; done
      echo "SELECT count(*), sum(length(v)) FROM t;"; } > "$T/sel.sql"
    t0=$(date +%s%N)
    cpu_of 2001 $(pre "$mode") sqlite3 "$db" < "$T/sel.sql" >/dev/null
    t1=$(date +%s%N)
    add sqlite-select/s "$mode" "$(( 2001 * 1000000000 / (t1 - t0) ))"
    addc sqlite-select "$mode" "$(cat "$T/cpu.op")"
    $(pre "$mode") rm -f "$db"
}

bench_nginx() { # MODE CACHE(0|1)
    local mode=$1 cache=$2 port d ofc="" tag=""
    if [ "$cache" = 1 ]; then ofc="open_file_cache max=1000 inactive=60s;"; tag="-ofc"; fi
    port=$(free_port)
    d=$(dir "$mode")/www
    $(pre "$mode") mkdir -p "$d"
    $(pre "$mode") cp "$T/small.bin" "$T/large.bin" "$d/"
    [ "${FILL:-0}" -gt 0 ] && $(pre "$mode") tar -xf "$T/fill.tar" -C "$d"
    $(pre "$mode") chmod -R a+rX "$d"
    mkdir -p "$T/ngx-$mode"
    cat > "$T/ngx-$mode/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
user ${NGX_USER:-root};
pid $T/ngx-$mode/nginx.pid;
error_log $T/ngx-$mode/error.log;
events { worker_connections 256; }
http {
    access_log off;
    sendfile on;
    $ofc
    client_body_temp_path $T/ngx-$mode/body;
    proxy_temp_path $T/ngx-$mode/proxy;
    fastcgi_temp_path $T/ngx-$mode/fastcgi;
    uwsgi_temp_path $T/ngx-$mode/uwsgi;
    scgi_temp_path $T/ngx-$mode/scgi;
    server { listen 127.0.0.1:$port; root $d; }
}
CONF
    $(pre "$mode") "$NGINX" -c "$T/ngx-$mode/nginx.conf" -e "$T/ngx-$mode/error.log" &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/small.bin" && break; sleep 0.1; done
    local wpid c0 c1 rps
    wpid=$(pgrep -P "$pid" | head -1) # the worker (master_process on, one worker)
    for f in small large; do
        c0=$(ticks "$wpid")
        rps=$(wrk -t2 -c50 -d"${SECS}s" "http://127.0.0.1:$port/$f.bin" 2>/dev/null | awk '/Requests\/sec/ {print $2}')
        c1=$(ticks "$wpid")
        [ -n "$rps" ] || continue
        add "nginx$tag-$f-req/s" "$mode" "$rps"
        addc "nginx$tag-$f-req" "$mode" "$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v r="$rps" -v s="$SECS" 'BEGIN {printf "%.2f", t * 1e6 / hz / (r * s)}')"
    done
    kill -QUIT "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    $(pre "$mode") rm -rf "$d"
}

if [ "${FILL:-0}" -gt 0 ]; then
    chmod 755 "$T" # (the worker's user reaches the configuration and the plain tree)
    bash "$(dirname "$0")/smalltree.sh" "$T/fill.tar" "$FILL" || exit 1
fi
head -c 4096 /dev/urandom > "$T/small.bin"
head -c 1048576 /dev/urandom > "$T/large.bin"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
    echo "== round $r"
    for mode in $MODES; do
        [[ $ONLY == *redis* ]] && command -v redis-benchmark >/dev/null && bench_redis "$mode"
        [[ $ONLY == *sqlite* ]] && command -v sqlite3 >/dev/null && bench_sqlite "$mode"
        [[ $ONLY == *nginx* ]] && command -v wrk >/dev/null && bench_nginx "$mode" 0 && bench_nginx "$mode" 1
    done
done

echo
# table TITLE RATIO_NOTE ARRAY: medians per workload and mode, shielded/plain (and with AB,
# base/plain and shielded/base)
table() {
    local -n A=$3
    if [ -n "$AB" ]; then
        echo "| $1 | plain | shielded | base | ratio $2 | base/plain | shielded/base |"
        echo "|---|---:|---:|---:|---:|---:|---:|"
    else
        echo "| $1 | plain | shielded | ratio $2 |"
        echo "|---|---:|---:|---:|"
    fi
    for k in "${!A[@]}"; do echo "${k%,*}"; done | sort -u | while read -r w; do
        p=$(echo ${A[$w,plain]:-} | tr ' ' '\n' | median)
        s=$(echo ${A[$w,shield]:-} | tr ' ' '\n' | median)
        b=$(echo ${A[$w,base]:-} | tr ' ' '\n' | median)
        [ -n "$p" ] && [ -n "$s" ] || continue
        if [ -n "$AB" ] && [ -n "$b" ]; then
            awk -v w="$w" -v p="$p" -v s="$s" -v b="$b" 'BEGIN { printf "| %s | %s | %s | %s | %.2fx | %.2fx | %.2fx |\n", w, p, s, b, (p > 0 ? s / p : 0), (p > 0 ? b / p : 0), (b > 0 ? s / b : 0) }'
        else
            awk -v w="$w" -v p="$p" -v s="$s" 'BEGIN { printf "| %s | %s | %s | %.2fx |\n", w, p, s, (p > 0 ? s / p : 0) }'
        fi
    done
}
table workload "(shielded/plain)" R
echo
table "CPU per operation (us)" "(shielded/plain: above 1 costs more)" C
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
