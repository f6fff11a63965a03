#!/usr/bin/env bash
# bench/net/run.sh - the network shield against redis-server's own TLS and stunnel4, same run.
#
#   bench/net/run.sh [BUILD_DIR]          (default build; needs redis-server, redis-benchmark,
#                                          stunnel4, openssl; runs a CAS on a free port)
#
# Four servers run side by side, each a redis-server 7 (appendonly no, save ""):
#   shield   plain redis under `scpctl run --cas`, its port in the policy's network section:
#            TLS 1.3 by the shield with the certificate CAS issued (P-256); after the
#            handshake, the shield's lean record layer (docs/shield.md)
#   shield0  the same with SCP_NET_LEAN=0 in the policy's environment: OpenSSL's record layer
#            throughout (the A/B of the lean layer, printed in a second table)
#   redis    redis-server --tls-port with a P-256 certificate (its own TLS, OpenSSL 3)
#   stunnel  stunnel4 (TLS 1.3, same certificate) in front of a plain redis-server
# Clients: redis-benchmark --tls -t set,get -q, at -c 1 and -c 50, value sizes 3 bytes and
# 16 KiB (-d). ROUNDS rounds (default 3), servers interleaved within a round; the median of the
# rounds is printed with the ratios shield/redis and shield/stunnel.
# Environment: ROUNDS=3, REQS=20000 (requests at -c 50), REQS1=5000 (at -c 1; a tenth of it for
# SET of 16 KiB values, where every server runs at about 25 rps: redis-benchmark's own
# Nagle/delayed-ACK stall), CONNS="1 50", SIZES="3 16384" (a subset for a quick look),
# FILTERCOUNT=1 (also print shield-filtercount for the shielded redis-server).
# Printed beside the throughput: the servers' CPU time per request (utime+stime from
# /proc/PID/stat; for stunnel, stunnel's and its plain redis's), which the load moves far less.
set -uo pipefail
B=${1:-build}
SCPCTL=$(readlink -f "$B/src/scpctl")
ROUNDS=${ROUNDS:-3}
REQS=${REQS:-20000}
REQS1=${REQS1:-5000}
CONNS=${CONNS:-1 50}
SIZES=${SIZES:-3 16384}
T=$(mktemp -d /var/tmp/scp-net-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
BENCH=bench/net
. "$(dirname "$0")/lib.sh"

bench_cas
mkdir -p "$T/bin"
cp "$(command -v redis-server)" "$T/bin/redis-server"
M=$("$SCPCTL" platform measure -- "$T/bin/redis-server" 2>/dev/null) || die "measure"
PS=$(free_port) PR=$(free_port) PP=$(free_port) PU=$(free_port) PS0=$(free_port)
cat >"$T/s.yaml" <<YAML
name: netbench
services:
  - name: redis
    measurements: [$M]
    command: [redis-server, --port, "$PS", --bind, 127.0.0.1, --save, "", --appendonly, "no", --protected-mode, "no"]
    network: {certificate: tls, listen: [{port: $PS}]}
  - name: redis0
    measurements: [$M]
    command: [redis-server, --port, "$PS0", --bind, 127.0.0.1, --save, "", --appendonly, "no", --protected-mode, "no"]
    environment: {SCP_NET_LEAN: "0"}
    network: {certificate: tls, listen: [{port: $PS0}]}
secrets:
  - {name: tls, kind: x509, common_name: redis, ip: [127.0.0.1]}
YAML
"$SCPCTL" session create "$T/s.yaml" >/dev/null 2>&1 || die "session create"
"$SCPCTL" run --session netbench --service redis --platform-key "$T/p.key" --volume-dir "$T/vols" -- "$T/bin/redis-server" \
    >"$T/shield.out" 2>"$T/shield.err" &
RUNPID=$!
PIDS+=($!)
"$SCPCTL" run --session netbench --service redis0 --platform-key "$T/p.key" --volume-dir "$T/vols" -- "$T/bin/redis-server" \
    >"$T/shield0.out" 2>"$T/shield0.err" &
RUNPID0=$!
PIDS+=($!)
# the same kind of key for the others: P-256, self-signed
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=redis \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$T/k.pem" -out "$T/c.pem" >/dev/null 2>&1 || die "openssl req"
redis-server --port 0 --tls-port "$PR" --bind 127.0.0.1 --save "" --appendonly no --tls-cert-file "$T/c.pem" \
    --tls-key-file "$T/k.pem" --tls-ca-cert-file "$T/c.pem" --tls-auth-clients no --tls-protocols TLSv1.3 >"$T/redis.out" 2>&1 &
RTPID=$!
PIDS+=($!)
redis-server --port "$PP" --bind 127.0.0.1 --save "" --appendonly no >"$T/plain.out" 2>&1 &
PLPID=$!
PIDS+=($!)
cat >"$T/stunnel.conf" <<CONF
foreground = yes
pid =
sslVersionMin = TLSv1.3
[redis]
accept = 127.0.0.1:$PU
connect = 127.0.0.1:$PP
cert = $T/c.pem
key = $T/k.pem
CONF
stunnel4 "$T/stunnel.conf" >"$T/stunnel.out" 2>&1 &
STPID=$!
PIDS+=($!)
CA_S=$T/data/service-ca.crt
cli() { redis-cli --tls --cacert "$1" -p "$2" ping 2>/dev/null; }
for _ in $(seq 100); do
    [ "$(cli "$CA_S" "$PS")" = PONG ] && [ "$(cli "$CA_S" "$PS0")" = PONG ] && [ "$(cli "$T/c.pem" "$PR")" = PONG ] && [ "$(cli "$T/c.pem" "$PU")" = PONG ] && break
    sleep 0.1
done
[ "$(cli "$CA_S" "$PS")" = PONG ] || die "shielded redis does not answer: $(cat "$T/shield.err")"
[ "$(cli "$CA_S" "$PS0")" = PONG ] || die "shielded redis (SCP_NET_LEAN=0) does not answer: $(cat "$T/shield0.err")"
[ "$(cli "$T/c.pem" "$PR")" = PONG ] || die "redis TLS does not answer"
[ "$(cli "$T/c.pem" "$PU")" = PONG ] || die "stunnel does not answer: $(cat "$T/stunnel.out")"

# Server CPU (utime+stime of the server's processes, /proc/PID/stat, in clock ticks): the figure
# that does not move with the machine's load. The shielded redis is the redis-server under scpctl.
SPID=
for _ in $(seq 50); do
    for p in $(tree "$RUNPID"); do [ "$(cat /proc/$p/comm 2>/dev/null)" = redis-server ] && SPID=$p; done
    [ -n "$SPID" ] && break
    sleep 0.1
done
[ -n "$SPID" ] || die "cannot find the shielded redis-server"
SPID0=
for _ in $(seq 50); do
    for p in $(tree "$RUNPID0"); do [ "$(cat /proc/$p/comm 2>/dev/null)" = redis-server ] && SPID0=$p; done
    [ -n "$SPID0" ] && break
    sleep 0.1
done
[ -n "$SPID0" ] || die "cannot find the shielded redis-server (SCP_NET_LEAN=0)"
# FILTERCOUNT=1: the BPF instructions its seccomp filters run per call (load-independent)
[ "${FILTERCOUNT:-0}" = 1 ] && { "$B/bench/shield/shield-filtercount" "$SPID" >&2 || true; }
declare -A R C
bench() { # mode port ca clients size op -> rps, and server CPU us/request in C
    local n=$REQS pids
    [ "$3" = 1 ] && n=$REQS1
    # SET of 16 KiB: about 25 rps at -c 1 and 1100 at -c 50 for all three servers (the client's
    # Nagle/delayed ACK, not a server cost): fewer requests there
    [ "$4" -gt 1000 ] && [ "$5" = set ] && { [ "$3" = 1 ] && n=$((REQS1 / 50)) || n=$((REQS / 10)); }
    case $mode in shield) pids=$SPID ;; shield0) pids=$SPID0 ;; redis) pids=$RTPID ;; stunnel) pids="$STPID $PLPID" ;; esac
    local c0 c1 out
    c0=$(cpu_of $pids)
    out=$(redis-benchmark --tls --cacert "$2" -p "$1" -c "$3" -n "$n" -d "$4" -t "$5" -q 2>/dev/null |
        tr '\r' '\n' | awk '/ requests per second/ {printf "%s", $2}')
    c1=$(cpu_of $pids)
    C[$mode,$3,$4,$5]+="$(echo "($c1 - $c0) * 1000000 / $TCK / $n" | bc -l) "
    R[$mode,$3,$4,$5]+="${out:-0} "
}
LOADS=()
for r in $(seq "$ROUNDS"); do
    LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
    for c in $CONNS; do
        for d in $SIZES; do
            for op in set get; do
                for mode in shield shield0 redis stunnel; do
                    case $mode in
                    shield) bench "$PS" "$CA_S" "$c" "$d" "$op" ;;
                    shield0) bench "$PS0" "$CA_S" "$c" "$d" "$op" ;;
                    redis) bench "$PR" "$T/c.pem" "$c" "$d" "$op" ;;
                    stunnel) bench "$PU" "$T/c.pem" "$c" "$d" "$op" ;;
                    esac
                done
            done
        done
    done
    echo "round $r done" >&2
done
LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
med() { echo "$1" | tr ' ' '\n' | grep . | median; }
echo "redis-benchmark --tls, medians of $ROUNDS rounds; load average (1 min) at each round's start and at the end: ${LOADS[*]}"
printf "%-20s %9s %9s %9s %8s %8s | %7s %7s %7s %8s %8s\n" "workload" "shield" "redis-tls" "stunnel" "sh/redis" "sh/stun" \
    "cpu-sh" "cpu-red" "cpu-stu" "sh/redis" "sh/stun"
printf "%-20s %38s %8s | %-23s %8s %8s\n" "" "requests per second" "" "server CPU us/request" "" ""
for c in $CONNS; do
    for d in $SIZES; do
        for op in set get; do
            s=$(med "${R[shield,$c,$d,$op]}") rr=$(med "${R[redis,$c,$d,$op]}") u=$(med "${R[stunnel,$c,$d,$op]}")
            cs=$(med "${C[shield,$c,$d,$op]}") cr=$(med "${C[redis,$c,$d,$op]}") cu=$(med "${C[stunnel,$c,$d,$op]}")
            printf "%-20s %9.0f %9.0f %9.0f %7.2fx %7.2fx | %7.1f %7.1f %7.1f %7.2fx %7.2fx\n" "$op -c $c -d $d" "$s" "$rr" "$u" \
                "$(echo "$s / $rr" | bc -l)" "$(echo "$s / $u" | bc -l)" "$cs" "$cr" "$cu" \
                "$(echo "$cs / ($cr + 0.0001)" | bc -l)" "$(echo "$cs / ($cu + 0.0001)" | bc -l)"
        done
    done
done
echo
echo "the lean record layer A/B: shield (lean) against shield0 (SCP_NET_LEAN=0, OpenSSL's record layer), same run"
printf "%-20s %9s %9s %8s | %7s %7s %8s\n" "workload" "lean" "openssl" "rps" "cpu-ln" "cpu-os" "cpu"
for c in $CONNS; do
    for d in $SIZES; do
        for op in set get; do
            s=$(med "${R[shield,$c,$d,$op]}") s0=$(med "${R[shield0,$c,$d,$op]}")
            cs=$(med "${C[shield,$c,$d,$op]}") cs0=$(med "${C[shield0,$c,$d,$op]}")
            printf "%-20s %9.0f %9.0f %7.2fx | %7.1f %7.1f %7.2fx\n" "$op -c $c -d $d" "$s" "$s0" "$(echo "$s / $s0" | bc -l)" \
                "$cs" "$cs0" "$(echo "$cs / ($cs0 + 0.0001)" | bc -l)"
        done
    done
done
