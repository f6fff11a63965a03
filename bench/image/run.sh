#!/usr/bin/env bash
# bench/image/run.sh - the curated secure images (images/) against the same Debian service in a
# plain Docker container made from the same base image, same run, same client.
#
#   bench/image/run.sh [redis|nginx|memcached|all] [BUILD_DIR]     (default: all, build)
#
# For each service, side by side on the host's loopback (--network host):
#   secure  the curated secure image (images/build.sh) under docker run with a real CAS and the
#           local attestation service: its session's configuration, data on a protected volume,
#           TLS by the network shield with the certificate CAS issued
#   plain   the service's Debian image (scp-NAME-base:bookworm, what the secure image is made
#           from) run as is, the same configuration, data in a Docker volume, no TLS
#   tls     (redis, nginx) the plain container with the service's own TLS (same kind of key, P-256)
# Clients: redis-benchmark (--tls for secure and tls), wrk for nginx (HTTPS for secure and tls),
# memcaslap (libmemcached-tools, 90% get / 10% set, 2 threads x 16 connections; it speaks no
# TLS, so for secure and tls it runs under the network shield itself, `scpctl run` with a client
# session: TLS in its own process; MEMC_STUNNEL=1: through stunnel4 in client mode instead, as
# before; plain: the same memcaslap, no TLS; its CPU per request is printed as well).
# ROUNDS rounds (default 3), the servers interleaved in each round; the median is printed with the ratios secure/plain and secure/tls. Beside
# throughput, the CPU time of each container (its cgroup's cpuacct: the service, and for secure
# also the entry and the shield) per request, which does not move with the machine's load.
# Environment: ROUNDS=3, REQS=30000 (redis requests per test at -c 50, a fifth at -c 1), SECS=4
# (wrk and memcaslap seconds per run). All three services take about 5 minutes. PERF=DIR: each
# service's profiles (server and client, first round; PERF_FREQ=499 samples a second) and system
# calls per request (the servers' in the first round, perf_start below; the clients' in the second).
# The clients run in a cpuacct cgroup of their own: their CPU per request is printed beside the
# servers', and the bound the two set together when both are CPU-bound on the same cores. AB=BUILD_DIR (nginx): a fourth server,
# the secure image made with that build's scpctl (another tree's runtime and shield), same run.
set -uo pipefail
WHAT=${1:-all}
B=${2:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SCPCTL=$(readlink -f "$B/src/scpctl")
[ -x "$SCPCTL" ] || { echo "bench/image: no $B/src/scpctl (build first)" >&2; exit 1; }
AB=${AB:-}
[ -z "$AB" ] || [ -x "$AB/src/scpctl" ] || { echo "bench/image: no $AB/src/scpctl (AB= a build directory)" >&2; exit 1; }
ROUNDS=${ROUNDS:-3}
REQS=${REQS:-30000}
SECS=${SECS:-4}
T=$(mktemp -d /var/tmp/scp-image-bench.XXXXXX)
N=scpbench-images-$$
PIDS=()
cleanup() {
    docker rm -f $(docker ps -aq --filter "name=^$N-") >/dev/null 2>&1
    docker volume rm -f $(docker volume ls -q --filter "name=^$N-") >/dev/null 2>&1
    docker rmi -f $(docker images -q "$N/*") >/dev/null 2>&1
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rmdir "/sys/fs/cgroup/cpuacct/$N-client" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
BENCH=bench/image
. "$ROOT/bench/net/lib.sh" # die, free_port, median, tree, cpu_of, bench_cas
sh "$ROOT/scripts/start-docker.sh" || die "no Docker engine"

# CAS and a platform (bench_cas: SCP_CAS, SCP_CAS_PIN, SCP_IDENTITY, $T/p.key), the local
# attestation service
bench_cas
CA=$T/data/service-ca.crt
mkdir -p "$T/sock"
"$SCPCTL" platform serve --key "$T/p.key" --socket "$T/sock/attest.sock" >"$T/serve.log" 2>&1 &
PIDS+=($!)
# the plain containers' own TLS: a P-256 certificate of a local CA, as CAS issues for secure
mkdir -p "$T/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
    -keyout "$T/tls/ca.key" -out "$T/tls/ca.crt" >/dev/null 2>&1 &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
        -keyout "$T/tls/server.key" -out "$T/tls/server.csr" >/dev/null 2>&1 &&
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$T/tls/ext" &&
    openssl x509 -req -in "$T/tls/server.csr" -CA "$T/tls/ca.crt" -CAkey "$T/tls/ca.key" -CAcreateserial \
        -days 2 -extfile "$T/tls/ext" -out "$T/tls/server.crt" >/dev/null 2>&1 || die "openssl"
chmod 0644 "$T/tls"/*

# cg_ns NAME: CPU time (ns) the container's processes used so far (cgroup v1 or v2)
cg_ns() {
    local id
    id=$(docker inspect -f '{{.Id}}' "$1")
    if [ -r "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage" ]; then
        cat "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage"
    else
        local f
        f=$(find /sys/fs/cgroup -maxdepth 3 -path "*$id*" -name cpu.stat | head -1)
        echo $(($(awk '/^usage_usec/{print $2}' "$f") * 1000))
    fi
}
RUNFLAGS=(--network host -e SCP_CAS="$SCP_CAS" -e SCP_CAS_PIN="$SCP_CAS_PIN" -v "$T/sock:/run/scp")
# secure_start NAME PORT [SED] [KIND]: build the secure image, create its session (SED applied to
# the template), docker run it as $N-NAME-KIND (default secure; base: made with $AB's scpctl, so
# with its runtime and shield, under its own session)
secure_start() {
    local name=$1 port=$2 kind=${4:-secure}
    local ctl=$SCPCTL out=$T sess=$N-$name
    [ "$kind" = base ] && ctl=$(readlink -f "$AB/src/scpctl") out=$T/ab sess=$N-$name-ab
    mkdir -p "$out"
    bash "$ROOT/images/build.sh" "$name" -t "$N/$name:$kind" --session "$sess" --port "$port" --out "$out" \
        --scpctl "$ctl" >"$out/$name.build.log" 2>&1 || die "images/build.sh $name: $(tail -5 "$out/$name.build.log")"
    [ -n "${3:-}" ] && sed -i -e "$3" "$out/$name.session.yaml"
    "$SCPCTL" session create "$out/$name.session.yaml" >/dev/null 2>"$out/$name.session.err" ||
        die "session create: $(cat "$out/$name.session.err")"
    docker run -d --name "$N-$name-$kind" "${RUNFLAGS[@]}" -v "$N-$name-$kind:/scp-volumes" "$N/$name:$kind" >/dev/null ||
        die "docker run $name ($kind)"
}
# wait_for WHAT CMD...: until CMD succeeds (60 s)
wait_for() {
    local what=$1
    shift
    for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "$what did not answer: $(docker logs "$N-$what" 2>&1 | tail -5)"
}
load() { awk '{print $1}' /proc/loadavg; }
declare -A RPS CPU
# record SERVICE/WORKLOAD SERVER RPS CPU_NS REQUESTS
record() {
    RPS[$1/$2]+="$3 "
    CPU[$1/$2]+="$(awk -v c="$4" -v n="$5" 'BEGIN{printf "%.1f", c / n / 1000}') "
}
# the clients' CPU time: a cpuacct cgroup of the benchmark's own (cgroup v1; none: not measured).
# in_cg CMD...: CMD in it, under the profiler command in the array PROF if not empty (which stays
# outside: its own CPU is not counted); cg_usage: its CPU ns so far;
# record_cli SERVICE/WORKLOAD SERVER NS REQUESTS
CG=/sys/fs/cgroup/cpuacct/$N-client
mkdir -p "$CG" 2>/dev/null || CG=
cg_usage() { if [ -n "$CG" ]; then cat "$CG/cpuacct.usage"; else echo 0; fi; }
PROF=()
# prof_client PREFIX ROUND: PROF for the client's run: with PERF=DIR, its profile in the first
# round (PREFIX.client.data) and its system calls in the second (PREFIX.client.stat)
prof_client() {
    PROF=()
    [ -n "${PERF:-}" ] || return 0
    case $2 in
    1) PROF=(perf record -q -g -F "${PERF_FREQ:-499}" -o "$1.client.data") ;;
    2) PROF=(perf stat -e raw_syscalls:sys_enter -x "," -o "$1.client.stat") ;;
    esac
}
# client_calls PREFIX REQUESTS ROUND: the client's system calls per request, after round 2
client_calls() {
    [ -n "${PERF:-}" ] && [ "$3" = 2 ] || return 0
    awk -F, -v n="$2" -v f="$1" '/raw_syscalls/{printf "%s client: %.2f system calls per request\n", f, $1 / n}' "$1.client.stat" >&2
}
in_cg() {
    local pre=()
    [ ${#PROF[@]} -gt 0 ] && pre=("${PROF[@]}" --)
    # shellcheck disable=SC2016 # expanded by that sh
    "${pre[@]}" sh -c 'if [ -n "$0" ]; then echo $$ >"$0/cgroup.procs"; fi; exec "$@"' "$CG" "$@"
}
declare -A CLI
record_cli() { CLI[$1/$2]+="$(awk -v c="$3" -v n="$4" 'BEGIN{printf "%.1f", c / n / 1000}') "; }
# report SERVICE WORKLOAD... : the medians and the ratios
report() {
    local svc=$1
    shift
    printf '\n%s (median of %s rounds; load average %s at the end)\n' "$svc" "$ROUNDS" "$(load)"
    printf '%-22s %10s %10s %10s %8s %8s | %9s %9s %9s %8s %8s\n' workload secure plain tls s/plain s/tls \
        "us/req s" "us/req p" "us/req t" cpu:s/p cpu:s/t
    for w in "$@"; do
        local rs rp rt cs cp ct
        rs=$(echo ${RPS[$svc-$w/secure]:-0} | tr ' ' '\n' | median)
        rp=$(echo ${RPS[$svc-$w/plain]:-0} | tr ' ' '\n' | median)
        rt=$(echo ${RPS[$svc-$w/tls]:-0} | tr ' ' '\n' | median)
        cs=$(echo ${CPU[$svc-$w/secure]:-0} | tr ' ' '\n' | median)
        cp=$(echo ${CPU[$svc-$w/plain]:-0} | tr ' ' '\n' | median)
        ct=$(echo ${CPU[$svc-$w/tls]:-0} | tr ' ' '\n' | median)
        if [ -n "${RPS[$svc-$w/base]:-}" ]; then
            local rb cb
            rb=$(echo ${RPS[$svc-$w/base]} | tr ' ' '\n' | median)
            cb=$(echo ${CPU[$svc-$w/base]} | tr ' ' '\n' | median)
            awk -v w="$w" -v rs="$rs" -v rb="$rb" -v cs="$cs" -v cb="$cb" 'BEGIN{printf "%-22s AB base %10.0f req/s %9.1f us/req: secure/base %.2fx, CPU/req %.2fx\n", w, rb, cb, rs/rb, cs/cb}'
        fi
        awk -v w="$w" -v rs="$rs" -v rp="$rp" -v rt="$rt" -v cs="$cs" -v cp="$cp" -v ct="$ct" 'function r(a,b){return b>0?sprintf("%.2fx",a/b):"-"}
            BEGIN{printf "%-22s %10.0f %10.0f %10.0f %8s %8s | %9.1f %9.1f %9.1f %8s %8s\n", w, rs, rp, rt, r(rs,rp), r(rs,rt), cs, cp, ct, r(cs,cp), r(cs,ct)}'
        [ -n "${CLI[$svc-$w/secure]:-}" ] || continue
        # the client's CPU per request, and the bound it sets: server and client share the
        # machine's cores, so when both are CPU-bound the rates go as the inverse of their sum
        local ks kp kt
        ks=$(echo ${CLI[$svc-$w/secure]} | tr ' ' '\n' | median)
        kp=$(echo ${CLI[$svc-$w/plain]:-0} | tr ' ' '\n' | median)
        kt=$(echo ${CLI[$svc-$w/tls]:-0} | tr ' ' '\n' | median)
        awk -v w="$w" -v ks="$ks" -v kp="$kp" -v kt="$kt" -v cs="$cs" -v cp="$cp" -v ct="$ct" 'function r(a,b){return b>0?sprintf("%.2fx",a/b):"-"}
            BEGIN{printf "%-22s client us/req %.1f / %.1f / %.1f; server+client %.1f / %.1f / %.1f: CPU-bound secure/plain %s, secure/tls %s\n", w, ks, kp, kt, cs+ks, cp+kp, ct+kt, r(cp+kp,cs+ks), r(ct+kt,cs+ks)}'
    done
}

bench_redis() {
    command -v redis-benchmark >/dev/null || die "redis-benchmark not installed (redis-tools)"
    local ps pp pt
    ps=$(free_port) pp=$(free_port) pt=$(free_port)
    secure_start redis "$ps"
    local pw
    pw=$("$SCPCTL" session secret "$N-redis" password) || die "no password"
    # the same configuration as images/redis/session.yaml, and the same password
    local conf=(--bind 127.0.0.1 --protected-mode no --requirepass "$pw" --dir /var/lib/redis --appendonly yes
        --appendfsync everysec --save "")
    docker run -d --name "$N-redis-plain" --network host -v "$N-redis-plain:/var/lib/redis" scp-redis-base:bookworm \
        --port "$pp" "${conf[@]}" >/dev/null || die "docker run redis (plain)"
    docker run -d --name "$N-redis-tls" --network host -v "$N-redis-tls:/var/lib/redis" -v "$T/tls:/tls:ro" \
        scp-redis-base:bookworm --port 0 --tls-port "$pt" --tls-cert-file /tls/server.crt --tls-key-file /tls/server.key \
        --tls-auth-clients no "${conf[@]}" >/dev/null || die "docker run redis (tls)"
    local -A cli=(
        [secure]="-p $ps --tls --cacert $CA"
        [plain]="-p $pp"
        [tls]="-p $pt --tls --cacert $T/tls/ca.crt"
    )
    for s in secure plain tls; do
        # shellcheck disable=SC2086
        wait_for "redis-$s" sh -c "redis-cli -h 127.0.0.1 ${cli[$s]} --no-auth-warning -a '$pw' ping | grep -q PONG"
    done
    for r in $(seq "$ROUNDS"); do
        for t in set get; do
            for c in 1 50; do
                for s in secure plain tls; do
                    local n=$REQS
                    [ "$c" = 1 ] && n=$((REQS / 5))
                    local c0 c1 out
                    c0=$(cg_ns "$N-redis-$s")
                    [ -n "${PERF:-}" ] && [ "$r" = 1 ] && perf_start "$N-redis-$s" "$PERF/redis-$s-$t-c$c"
                    local k0 k1
                    prof_client "${PERF:-}/redis-$s-$t-c$c" "$r"
                    k0=$(cg_usage)
                    # shellcheck disable=SC2086
                    out=$(in_cg redis-benchmark -h 127.0.0.1 ${cli[$s]} -a "$pw" -t $t -n $n -c $c -d 64 -r 100000 -q 2>&1)
                    c1=$(cg_ns "$N-redis-$s") k1=$(cg_usage)
                    [ -n "${PERF:-}" ] && [ "$r" = 1 ] && perf_stop "$PERF/redis-$s-$t-c$c" "$n"
                    local rps
                    rps=$(echo "$out" | tr '\r' '\n' | awk -F': ' '/requests per second/{split($2,a," "); v=a[1]} END{print v+0}')
                    [ "${rps%.*}" -gt 0 ] 2>/dev/null || die "redis-benchmark against $s: $out"
                    record "redis-${t^^} -c $c" $s "$rps" $((c1 - c0)) $n
                    record_cli "redis-${t^^} -c $c" $s $((k1 - k0)) $n
                    client_calls "${PERF:-}/redis-$s-$t-c$c" "$n" "$r"
                done
            done
        done
        echo "redis round $r done (load $(load))" >&2
    done
    report redis "SET -c 1" "SET -c 50" "GET -c 1" "GET -c 50"
}

# PERF=DIR (first round): perf_start CONTAINER PREFIX samples the container's
# processes during the client's run (perf record -g: PREFIX.data) and counts their
# system calls (perf stat: PREFIX.stat); perf_stop PREFIX REQUESTS ends both and prints the
# system calls per request.
PERF_PIDS=()
perf_start() {
    local pids
    pids=$(docker top "$1" -eo pid | awk 'NR > 1 {printf "%s%s", s, $1; s = ","}')
    [ -n "$pids" ] || die "no processes in $1"
    mkdir -p "$PERF"
    PERF_PIDS=()
    perf stat -e raw_syscalls:sys_enter -x, -p "$pids" -o "$2.stat" >/dev/null 2>&1 &
    PERF_PIDS+=($!)
    perf record -q -g -F "${PERF_FREQ:-499}" -p "$pids" -o "$2.data" >/dev/null 2>&1 &
    PERF_PIDS+=($!)
}
perf_stop() {
    local p
    for p in "${PERF_PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
    for p in "${PERF_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    awk -F, -v n="$2" -v f="$1" '/raw_syscalls/{printf "%s: %.2f system calls per request\n", f, $1 / n}' "$1.stat" >&2
}

# render_conf NAME PORT [LISTEN-LINE]: images/NAME/scp.conf for a plain container
render_conf() {
    sed -e "s|listen @PORT@;|${3:-listen $2;}|" "$ROOT/images/$1/scp.conf"
}
bench_nginx() {
    command -v wrk >/dev/null || die "wrk not installed"
    local ps pp pt
    ps=$(free_port) pp=$(free_port) pt=$(free_port)
    secure_start nginx "$ps"
    local pw pb servers="secure plain tls"
    pb=$(free_port)
    pw=$("$SCPCTL" session secret "$N-nginx" password) || die "no password"
    local -A pws=([secure]=$pw [plain]=$pw [tls]=$pw)
    if [ -n "$AB" ]; then
        secure_start nginx "$pb" "" base
        pws[base]=$("$SCPCTL" session secret "$N-nginx-ab" password) || die "no password (base)"
        servers="secure plain tls base"
    fi
    mkdir -p "$T/nginx"
    printf 'scp:{PLAIN}%s\n' "$pw" >"$T/nginx/htpasswd"
    render_conf nginx "$pp" >"$T/nginx/plain.conf"
    render_conf nginx "$pt" "listen $pt ssl; ssl_certificate /tls/server.crt; ssl_certificate_key /tls/server.key; ssl_protocols TLSv1.3;" \
        >"$T/nginx/tls.conf"
    for s in plain tls; do
        # the workers run as www-data (images/nginx/scp.conf): the plain container's fresh Docker
        # volume must be theirs, as the shield makes the secure image's volume. Not empty, or
        # Docker copies the image's (root's) directory over it again at the next mount.
        docker run --rm --entrypoint sh -v "$N-nginx-$s:/srv/www" scp-nginx-base:bookworm \
            -c 'mkdir -p /srv/www/.tmp && chown -R www-data:www-data /srv/www' ||
            die "chown the plain nginx volume ($s)"
        docker run -d --name "$N-nginx-$s" --network host -v "$N-nginx-$s:/srv/www" -v "$T/tls:/tls:ro" \
            -v "$T/nginx/$s.conf:/etc/nginx/scp.conf:ro" -v "$T/nginx/htpasswd:/etc/nginx/scp.htpasswd:ro" \
            scp-nginx-base:bookworm >/dev/null || die "docker run nginx ($s)"
    done
    local -A url=([secure]="https://127.0.0.1:$ps" [plain]="http://127.0.0.1:$pp" [tls]="https://127.0.0.1:$pt" [base]="https://127.0.0.1:$pb")
    local -A ca=([secure]="$CA" [plain]="$CA" [tls]="$T/tls/ca.crt" [base]="$CA")
    head -c 1024 /dev/urandom | base64 -w 64 | head -c 1024 >"$T/nginx/1k.html"
    head -c 102400 /dev/urandom >"$T/nginx/100k.bin"
    for s in $servers; do
        wait_for "nginx-$s" sh -c "[ \"\$(curl -s --cacert ${ca[$s]} -o /dev/null -w '%{http_code}' ${url[$s]}/)\" != 000 ]"
        for f in 1k.html 100k.bin; do
            [ "$(curl -s --cacert "${ca[$s]}" -o /dev/null -w '%{http_code}' -u "scp:${pws[$s]}" -T "$T/nginx/$f" "${url[$s]}/$f")" = 201 ] ||
                die "PUT $f to nginx ($s)"
        done
        # the TLS servers' protocol and cipher, as curl negotiates them (wrk's OpenSSL: the same defaults)
        [ "$s" = plain ] || echo "nginx-$s: $(curl -sv --cacert "${ca[$s]}" -o /dev/null "${url[$s]}/1k.html" 2>&1 |
            sed -n 's/.*SSL connection using //p')" >&2
    done
    for r in $(seq "$ROUNDS"); do
        for f in 1k.html 100k.bin; do
            for s in $servers; do
                local c0 c1 out rps reqs
                c0=$(cg_ns "$N-nginx-$s")
                [ -n "${PERF:-}" ] && [ "$r" = 1 ] && perf_start "$N-nginx-$s" "$PERF/nginx-$s-$f"
                local k0 k1
                prof_client "${PERF:-}/nginx-$s-$f" "$r"
                k0=$(cg_usage)
                out=$(in_cg wrk -t 2 -c 50 -d "${SECS}s" "${url[$s]}/$f" 2>&1)
                c1=$(cg_ns "$N-nginx-$s") k1=$(cg_usage)
                [ -n "${PERF:-}" ] && [ "$r" = 1 ] && perf_stop "$PERF/nginx-$s-$f" "$(echo "$out" | awk '/requests in/{print $1}')"
                rps=$(echo "$out" | awk '/^Requests\/sec:/{print $2}')
                reqs=$(echo "$out" | awk '/requests in/{print $1}')
                [ -n "$rps" ] && [ "${reqs:-0}" -gt 0 ] || die "wrk against nginx ($s): $out"
                echo "$out" | grep -q "Non-2xx" && die "wrk against nginx ($s): errors: $out"
                record "nginx-GET $f" $s "$rps" $((c1 - c0)) "$reqs"
                record_cli "nginx-GET $f" $s $((k1 - k0)) "$reqs"
                client_calls "${PERF:-}/nginx-$s-$f" "$reqs" "$r"
            done
        done
        echo "nginx round $r done (load $(load))" >&2
    done
    report nginx "GET 1k.html" "GET 100k.bin"
}

bench_memcached() {
    command -v memcaslap >/dev/null || die "memcaslap not installed (libmemcached-tools)"
    local ps pp pt
    ps=$(free_port) pp=$(free_port) pt=$(free_port)
    # the session's memcached without -Y: memcaslap has no ASCII authentication (it is one
    # request per connection, outside the measured loop)
    secure_start memcached "$ps" 's|, -Y, /etc/memcached/scp.auth||'
    local conf=(-u memcache -l 127.0.0.1 -U 0 -m 256 -c 1024 -t 2)
    docker run -d --name "$N-memcached-plain" --network host scp-memcached-base:bookworm -p "$pp" "${conf[@]}" >/dev/null ||
        die "docker run memcached (plain)"
    docker run -d --name "$N-memcached-tls" --network host -v "$T/tls:/tls:ro" scp-memcached-base:bookworm -p "$pt" \
        "${conf[@]}" -Z -o ssl_chain_cert=/tls/server.crt,ssl_key=/tls/server.key,ssl_min_version=3 >/dev/null ||
        die "docker run memcached (tls)"
    # memcaslap speaks no TLS: for secure and tls it runs under the network shield itself
    # (`scpctl run`, a session of its own whose peer rules name the two TLS ports: TLS in the
    # client's own process, verifying CAS's service CA for secure, the bench CA for tls), so
    # that no tunnel process bounds the figure; plain gets the same memcaslap unshielded.
    # MEMC_STUNNEL=1 runs the old way instead: stunnel4 in client mode in front of secure and tls.
    mkdir -p "$T/bin" && cp "$(command -v memcaslap)" "$T/bin/memcaslap"
    local ms
    ms=$("$SCPCTL" platform measure -- "$T/bin/memcaslap" 2>/dev/null) || die "platform measure memcaslap"
    local margs="-t, ${SECS}s, -T, \"2\", -c, \"16\""
    cat >"$T/memclient.session.yaml" <<YAML
name: $N-memclient
services:
  - name: secure
    measurements: [$ms]
    command: [memcaslap, -s, "127.0.0.1:$ps", $margs]
    network:
      peers: [{host: 127.0.0.1, port: $ps}]
  - name: tls
    measurements: [$ms]
    command: [memcaslap, -s, "127.0.0.1:$pt", $margs]
    network:
      peers: [{host: 127.0.0.1, port: $pt, ca: benchca}]
secrets:
  - name: benchca
    kind: explicit
    value: |
$(sed 's/^/      /' "$T/tls/ca.crt")
YAML
    "$SCPCTL" session create "$T/memclient.session.yaml" >/dev/null 2>"$T/memclient.err" ||
        die "session create (client): $(cat "$T/memclient.err")"
    local -A addr=([secure]="127.0.0.1:$ps" [plain]="127.0.0.1:$pp" [tls]="127.0.0.1:$pt")
    if [ -n "${MEMC_STUNNEL:-}" ]; then
        command -v stunnel4 >/dev/null || die "stunnel4 not installed"
        local ls lt
        ls=$(free_port) lt=$(free_port)
        cat >"$T/stunnel.conf" <<CONF
foreground = yes
pid =
[secure]
client = yes
accept = 127.0.0.1:$ls
connect = 127.0.0.1:$ps
CAfile = $CA
verifyChain = yes
[tls]
client = yes
accept = 127.0.0.1:$lt
connect = 127.0.0.1:$pt
CAfile = $T/tls/ca.crt
verifyChain = yes
CONF
        stunnel4 "$T/stunnel.conf" >"$T/stunnel.log" 2>&1 &
        PIDS+=($!)
        addr[secure]=127.0.0.1:$ls addr[tls]=127.0.0.1:$lt
    fi
    # the client side's CPU time (in_cg): stunnel's too
    [ -n "$CG" ] && [ -n "${MEMC_STUNNEL:-}" ] && echo "${PIDS[-1]}" >"$CG/cgroup.procs"
    wait_for memcached-plain sh -c "memcstat --servers=${addr[plain]} | grep -q pid"
    # memcstat speaks no TLS: openssl s_client (verifying each server's CA) asks for stats
    local -A ca=([secure]="$CA" [tls]="$T/tls/ca.crt") port=([secure]=$ps [tls]=$pt)
    for s in secure tls; do
        wait_for "memcached-$s" sh -c "printf 'stats\r\nquit\r\n' | timeout 5 openssl s_client -quiet -verify_return_error \
            -CAfile ${ca[$s]} -connect 127.0.0.1:${port[$s]} 2>/dev/null | grep -q 'STAT pid'"
    done
    for r in $(seq "$ROUNDS"); do
        for s in secure plain tls; do
            local c0 c1 k0 k1 out tps ops
            c0=$(cg_ns "$N-memcached-$s") k0=$(cg_usage)
            [ -n "${PERF:-}" ] && [ "$r" = 1 ] && perf_start "$N-memcached-$s" "$PERF/memcached-$s"
            prof_client "${PERF:-}/memcached-$s" "$r"
            # shellcheck disable=SC2046
            out=$(in_cg $(mc_client "$s") 2>&1)
            c1=$(cg_ns "$N-memcached-$s") k1=$(cg_usage)
            tps=$(echo "$out" | awk '/^Run time:/{print $7}')
            ops=$(echo "$out" | awk '/^Run time:/{print $5}')
            [ "${ops:-0}" -gt 0 ] 2>/dev/null || die "memcaslap against memcached ($s): $(echo "$out" | tail -5)"
            [ -n "${PERF:-}" ] && [ "$r" = 1 ] && perf_stop "$PERF/memcached-$s" "$ops"
            record "memcached-get 90%/set 10%" $s "$tps" $((c1 - c0)) "$ops"
            record_cli "memcached-get 90%/set 10%" $s $((k1 - k0)) "$ops"
            client_calls "${PERF:-}/memcached-$s" "$ops" "$r"
        done
        echo "memcached round $r done (load $(load))" >&2
    done
    echo "memcached client: memcaslap$([ -n "${MEMC_STUNNEL:-}" ] && echo " + stunnel4" || echo ", shielded for secure and tls")" >&2
    report memcached "get 90%/set 10%"
}
# mc_client SERVER: the command of one memcaslap run against SERVER (secure and tls: shielded,
# unless MEMC_STUNNEL); words without spaces
mc_client() {
    if [ "$1" = plain ] || [ -n "${MEMC_STUNNEL:-}" ]; then
        echo memcaslap -s "${addr[$1]}" -t "${SECS}s" -T 2 -c 16
    else
        echo "$SCPCTL" run --session "$N-memclient" --service "$1" --platform-key "$T/p.key" -- "$T/bin/memcaslap"
    fi
}

case $WHAT in
redis) bench_redis ;;
nginx) bench_nginx ;;
memcached) bench_memcached ;;
all) bench_redis; bench_nginx; bench_memcached ;;
*) die "unknown service '$WHAT' (redis, nginx, memcached, all)" ;;
esac
