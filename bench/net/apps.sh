#!/usr/bin/env bash
# bench/net/apps.sh - the network shield with nginx (wrk over HTTPS) and memcached (memcslap),
# against the programs' own TLS and stunnel4, same run. About 3-4 minutes with the defaults.
#
#   bench/net/apps.sh [BUILD_DIR]     (needs nginx, wrk, memcached, memcslap, stunnel4, openssl)
#
# nginx 1.22 (one worker, keep-alive without a request limit, files from a host directory):
#   shield   nginx with a plain HTTP configuration under `scpctl run --cas`, its port in the
#            policy's network section (TLS 1.3 by the shield, P-256 certificate from CAS)
#   nginx    nginx's own TLS (`listen ... ssl`, TLS 1.3, a P-256 certificate)
#   stunnel  stunnel4 (TLS 1.3, same certificate) in front of plain nginx
#   client   wrk -t 1 -c 1 and -c 50, DUR seconds, GET of a 100-byte file and a 16 KiB file
# memcached 1.6 (-t 1):
#   shield   memcached under the shield (TLS 1.3 by the shield)
#   memc     memcached's own TLS (-Z, same certificate)
#   stunnel  stunnel4 in front of plain memcached
#   client   memcslap (libmemcached-tools; Debian has no TLS-speaking memcached load generator),
#            itself run under the shield with a peer rule for each server, so the client side
#            is the same TLS code for all three; -t set and -t get (which first sets its keys),
#            -c 1 and -c 8 threads, MEMC_N operations per thread; its small default values.
# Printed: requests per second (medians of ROUNDS rounds) and the servers' CPU time per request
# (utime+stime of the server's processes from /proc/PID/stat; for stunnel, stunnel's and its
# plain server's), which moves far less with the machine's load; ratios shield/own TLS and
# shield/stunnel. Environment: ROUNDS=3, DUR=3 (wrk seconds), MEMC_N=3000, PARTS="nginx memcached",
# FILTERCOUNT=1 (also print shield-filtercount for the shielded nginx worker: load-independent),
# FILTERDUMP=FILE (save that worker's filters for shield-filtercmp; ROUNDS=0 to do only that);
# STRACE=1 adds the shielded nginx worker's system calls per request (strace -c -f; not timed).
# NET_LEAN=0: every shielded program (servers and memcslap) with SCP_NET_LEAN=0 in its policy's
# environment, OpenSSL's record layer after the handshake instead of the shield's lean one.
set -uo pipefail
B=${1:-build}
SCPCTL=$(readlink -f "$B/src/scpctl")
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-3}
MEMC_N=${MEMC_N:-3000}
PARTS=${PARTS:-nginx memcached}
T=$(mktemp -d /var/tmp/scp-net-apps.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
BENCH=bench/net/apps
. "$(dirname "$0")/lib.sh"
med() { echo "$1" | tr ' ' '\n' | grep . | median; }
for p in nginx wrk memcached memcslap stunnel4 openssl; do command -v $p >/dev/null || die "needs $p"; done

bench_cas
mkdir -p "$T/bin" "$T/www"
for p in nginx memcached memcslap; do cp "$(command -v $p)" "$T/bin/$p"; done
MN=$("$SCPCTL" platform measure -- "$T/bin/nginx" 2>/dev/null) || die "measure"
MM=$("$SCPCTL" platform measure -- "$T/bin/memcached" 2>/dev/null) || die "measure"
MS=$("$SCPCTL" platform measure -- "$T/bin/memcslap" 2>/dev/null) || die "measure"
head -c 100 /dev/urandom | base64 -w0 | head -c 100 >"$T/www/small"
head -c 12288 /dev/urandom | base64 -w0 | head -c 16384 >"$T/www/16k"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$T/k.pem" -out "$T/c.pem" >/dev/null 2>&1 || die "openssl req"
NS=$(free_port) NT=$(free_port) NP=$(free_port) NU=$(free_port)
MSP=$(free_port) MZ=$(free_port) MP=$(free_port) MU=$(free_port)
nginx_conf() { # listen-directive extra-server-lines
    printf '%s' "user root root; daemon off; master_process on; worker_processes 1; error_log stderr; pid $T/ngx-$RANDOM.pid;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 60;
  client_body_temp_path $T/ngxtmp; proxy_temp_path $T/ngxtmp; fastcgi_temp_path $T/ngxtmp; uwsgi_temp_path $T/ngxtmp; scgi_temp_path $T/ngxtmp;
  server { listen $1; $2 root $T/www; } }
"
}
mkdir -p "$T/ngxtmp"
# the policy's environment of every shielded program (NET_LEAN=0: OpenSSL's record layer)
LEANENV="    environment: {SCP_NET_LEAN: \"${NET_LEAN:-1}\"}"
SHIELD_CONF=$(nginx_conf "127.0.0.1:$NS" "" | sed 's/\\/\\\\/g; s/"/\\"/g' | awk '{printf "%s\\n", $0}')
{
    cat <<YAML
name: appbench
services:
  - name: nginx
    measurements: [$MN]
$LEANENV
    command: [nginx, -c, /etc/nginx/scp.conf]
    files:
      - path: /etc/nginx/scp.conf
        content: "$SHIELD_CONF"
    network: {certificate: tls, listen: [{port: $NS}]}
  - name: memcached
    measurements: [$MM]
$LEANENV
    command: [memcached, -u, root, -l, 127.0.0.1, -p, "$MSP", -U, "0", -t, "1"]
    network: {certificate: tls, listen: [{port: $MSP}]}
YAML
    for srv in shield memc stunnel; do
        case $srv in shield) port=$MSP ;; memc) port=$MZ ;; stunnel) port=$MU ;; esac
        for c in 1 8; do
            for op in set get; do
                cat <<YAML
  - name: slap-$srv-$c-$op
    measurements: [$MS]
$LEANENV
    command: [memcslap, -s, "127.0.0.1:$port", -t, $op, -c, "$c", -e, "$MEMC_N"]
    network:
      certificate: tls
      peers: [{host: 127.0.0.1, port: $MSP}, {host: 127.0.0.1, port: $MZ, ca: selfca}, {host: 127.0.0.1, port: $MU, ca: selfca}]
YAML
            done
        done
    done
    echo "secrets:"
    echo "  - {name: tls, kind: x509, common_name: bench, ip: [127.0.0.1]}"
    echo "  - name: selfca"
    echo "    kind: explicit"
    echo "    value: |"
    sed 's/^/      /' "$T/c.pem"
} >"$T/s.yaml"
"$SCPCTL" session create "$T/s.yaml" >"$T/session.out" 2>&1 || die "session create: $(cat "$T/session.out")"
RUN=("$SCPCTL" run --session appbench --platform-key "$T/p.key" --volume-dir "$T/vols")

find_in() { # pid comm -> the first descendant with that name
    local p
    for _ in $(seq 100); do
        for p in $(tree "$1"); do [ "$(cat /proc/$p/comm 2>/dev/null)" = "$2" ] && { echo "$p"; return; }; done
        sleep 0.1
    done
}
LOADS=("$(cut -d' ' -f1 /proc/loadavg)")
declare -A R C

if [[ " $PARTS " == *" nginx "* ]]; then
    "${RUN[@]}" --service nginx -- "$T/bin/nginx" >"$T/n-shield.out" 2>&1 &
    RN=$!
    PIDS+=($RN)
    nginx_conf "127.0.0.1:$NT ssl" "ssl_certificate $T/c.pem; ssl_certificate_key $T/k.pem; ssl_protocols TLSv1.3;" >"$T/n-tls.conf"
    nginx -c "$T/n-tls.conf" >"$T/n-tls.out" 2>&1 &
    NTPID=$!
    PIDS+=($NTPID)
    nginx_conf "127.0.0.1:$NP" "" >"$T/n-plain.conf"
    nginx -c "$T/n-plain.conf" >"$T/n-plain.out" 2>&1 &
    NPPID=$!
    PIDS+=($NPPID)
    printf 'foreground = yes\npid =\nsslVersionMin = TLSv1.3\n[web]\naccept = 127.0.0.1:%s\nconnect = 127.0.0.1:%s\ncert = %s\nkey = %s\n' \
        "$NU" "$NP" "$T/c.pem" "$T/k.pem" >"$T/st-n.conf"
    stunnel4 "$T/st-n.conf" >"$T/st-n.out" 2>&1 &
    SNPID=$!
    PIDS+=($SNPID)
    CA_S=$T/data/service-ca.crt
    for _ in $(seq 100); do
        curl -sf --cacert "$CA_S" "https://127.0.0.1:$NS/small" >/dev/null && curl -sfk "https://127.0.0.1:$NT/small" >/dev/null &&
            curl -sfk "https://127.0.0.1:$NU/small" >/dev/null && break
        sleep 0.1
    done
    cmp -s <(curl -sf --cacert "$CA_S" "https://127.0.0.1:$NS/16k") "$T/www/16k" || die "shielded nginx: $(cat "$T/n-shield.out")"
    cmp -s <(curl -sfk "https://127.0.0.1:$NT/16k") "$T/www/16k" || die "nginx TLS: $(cat "$T/n-tls.out")"
    cmp -s <(curl -sfk "https://127.0.0.1:$NU/16k") "$T/www/16k" || die "stunnel+nginx: $(cat "$T/st-n.out")"
    NSPIDS=$(tree "$RN" | while read -r p; do [ "$(cat /proc/$p/comm 2>/dev/null)" = nginx ] && echo "$p"; done | tr '\n' ' ')
    # FILTERCOUNT=1: the BPF instructions the shielded nginx worker's seccomp filters run per call
    if [ "${FILTERCOUNT:-0}" = 1 ]; then
        echo "== shield-filtercount, shielded nginx worker" >&2
        "$B/bench/shield/shield-filtercount" "$(echo $NSPIDS | awk '{print $NF}')" >&2 || true
    fi
    # FILTERDUMP=FILE: save the worker's filters for bench/shield/filtercmp.c (FILTERCMP: the tool)
    if [ -n "${FILTERDUMP:-}" ]; then
        "${FILTERCMP:-$B/bench/shield/shield-filtercmp}" dump "$(echo $NSPIDS | awk '{print $NF}')" "$FILTERDUMP" >&2 || true
    fi
    [ "$ROUNDS" = 0 ] && exit 0
    NTPIDS=$(tree "$NTPID" | tr '\n' ' ')
    NUPIDS="$SNPID $(tree "$NPPID" | tr '\n' ' ')"
    for r in $(seq "$ROUNDS"); do
        for c in 1 50; do
            for f in small 16k; do
                for srv in shield nginx stunnel; do
                    case $srv in shield) port=$NS pids=$NSPIDS ;; nginx) port=$NT pids=$NTPIDS ;; stunnel) port=$NU pids=$NUPIDS ;; esac
                    c0=$(cpu_of $pids)
                    out=$(wrk -t 1 -c "$c" -d "${DUR}s" "https://127.0.0.1:$port/$f" 2>&1)
                    c1=$(cpu_of $pids)
                    n=$(echo "$out" | awk '/requests in/ {print $1}')
                    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
                    echo "$out" | grep -q -E "Socket errors|Non-2xx" && echo "wrk $srv -c $c $f: $(echo "$out" | grep -E 'Socket errors|Non-2xx')" >&2
                    R[nginx,$srv,$c,$f]+="${rps:-0} "
                    C[nginx,$srv,$c,$f]+="$(echo "($c1 - $c0) * 1000000 / $TCK / (${n:-0} + 1)" | bc -l) "
                done
            done
        done
        LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
        echo "nginx round $r done" >&2
    done
    if [ -n "${STRACE:-}" ]; then # the shielded worker's system calls per request (strace -c -f)
        command -v strace >/dev/null || die "STRACE=1 needs strace"
        W=
        for p in $NSPIDS; do
            pp=$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null)
            [[ " $NSPIDS " == *" $pp "* ]] && W=$p
        done
        [ -n "$W" ] || die "no shielded nginx worker"
        strace -c -f -p "$W" -o "$T/strace.out" 2>/dev/null &
        SP=$!
        sleep 1
        out=$(wrk -t 1 -c 1 -d "${DUR}s" "https://127.0.0.1:$NS/small" 2>&1)
        kill -INT "$SP"
        wait "$SP"
        n=$(echo "$out" | awk '/requests in/ {print $1}')
        echo "strace -c -f of the shielded nginx worker, wrk -c 1 GET /small, ${n:-0} requests: system calls per request"
        awk -v n="${n:-0}" '$NF ~ /^[a-z_0-9]+$/ && $NF != "syscall" && $NF != "total" {
            c = $4; if (n > 0 && c / n >= 0.05) printf "  %-20s %6.2f\n", $NF, c / n }' "$T/strace.out"
    fi
fi

if [[ " $PARTS " == *" memcached "* ]]; then
    "${RUN[@]}" --service memcached -- "$T/bin/memcached" >"$T/m-shield.out" 2>&1 &
    RM=$!
    PIDS+=($RM)
    memcached -u root -l 127.0.0.1 -p "$MZ" -U 0 -t 1 -Z -o "ssl_chain_cert=$T/c.pem,ssl_key=$T/k.pem" >"$T/m-tls.out" 2>&1 &
    MZPID=$!
    PIDS+=($MZPID)
    memcached -u root -l 127.0.0.1 -p "$MP" -U 0 -t 1 >"$T/m-plain.out" 2>&1 &
    MPPID=$!
    PIDS+=($MPPID)
    printf 'foreground = yes\npid =\nsslVersionMin = TLSv1.3\n[mc]\naccept = 127.0.0.1:%s\nconnect = 127.0.0.1:%s\ncert = %s\nkey = %s\n' \
        "$MU" "$MP" "$T/c.pem" "$T/k.pem" >"$T/st-m.conf"
    stunnel4 "$T/st-m.conf" >"$T/st-m.out" 2>&1 &
    SMPID=$!
    PIDS+=($SMPID)
    MSPID=$(find_in "$RM" memcached)
    [ -n "$MSPID" ] || die "shielded memcached: $(cat "$T/m-shield.out")"
    sleep 0.5
    for r in $(seq "$ROUNDS"); do
        for c in 1 8; do
            for op in set get; do
                for srv in shield memc stunnel; do
                    case $srv in shield) pids=$MSPID ;; memc) pids=$MZPID ;; stunnel) pids="$SMPID $MPPID" ;; esac
                    c0=$(cpu_of $pids)
                    out=$("${RUN[@]}" --service "slap-$srv-$c-$op" -- "$T/bin/memcslap" 2>&1)
                    c1=$(cpu_of $pids)
                    # "Time to get N keys by T threads: S seconds" (get first sets MEMC_N keys)
                    line=$(echo "$out" | grep "Time to $op .* threads:")
                    n=$(echo "$line" | awk '{print $4}')
                    s=$(echo "$line" | awk '{print $(NF-1)}')
                    [ -n "$n" ] && [ -n "$s" ] || { echo "memcslap $srv $c $op: $out" >&2; n=0 s=1; }
                    ops=$n
                    [ "$op" = get ] && ops=$((n + MEMC_N))
                    R[memc,$srv,$c,$op]+="$(echo "$n / $s" | bc -l) "
                    C[memc,$srv,$c,$op]+="$(echo "($c1 - $c0) * 1000000 / $TCK / ($ops + 1)" | bc -l) "
                done
            done
        done
        LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
        echo "memcached round $r done" >&2
    done
fi

echo "medians of $ROUNDS rounds; load average (1 min) at the start and after each round: ${LOADS[*]}"
row() { # label key-prefix own-name
    local s o u cs co cu
    s=$(med "${R[$2,shield,$3]}") o=$(med "${R[$2,$4,$3]}") u=$(med "${R[$2,stunnel,$3]}")
    cs=$(med "${C[$2,shield,$3]}") co=$(med "${C[$2,$4,$3]}") cu=$(med "${C[$2,stunnel,$3]}")
    printf "%-24s %9.0f %9.0f %9.0f %7.2fx %7.2fx | %7.1f %7.1f %7.1f %7.2fx %7.2fx\n" "$1" "$s" "$o" "$u" \
        "$(echo "$s / ($o + 0.0001)" | bc -l)" "$(echo "$s / ($u + 0.0001)" | bc -l)" "$cs" "$co" "$cu" \
        "$(echo "$cs / ($co + 0.0001)" | bc -l)" "$(echo "$cs / ($cu + 0.0001)" | bc -l)"
}
hdr() {
    printf "%-24s %9s %9s %9s %8s %8s | %7s %7s %7s %8s %8s\n" "$1" shield "$2" stunnel "sh/own" "sh/stun" cpu-sh "cpu-own" cpu-stu sh/own sh/stun
    printf "%-24s %38s %8s | %-23s\n" "" "requests per second" "" "server CPU us/request"
}
if [[ " $PARTS " == *" nginx "* ]]; then
    hdr "wrk (nginx)" nginx-tls
    for c in 1 50; do for f in small 16k; do row "GET /$f -c $c" nginx "$c,$f" nginx; done; done
fi
if [[ " $PARTS " == *" memcached "* ]]; then
    hdr "memcslap (memcached)" memc-tls
    for c in 1 8; do for op in set get; do row "$op -c $c" memc "$c,$op" memc; done; done
fi
