#!/bin/bash
# bench/image/mariadb.sh - sysbench oltp against the curated secure MariaDB (images/mariadb) and
# the same Debian mariadb-server in a plain Docker container made from the same base image, same
# configuration (images/mariadb/scp.cnf), same client, on the host's loopback (--network host).
#
#   bench/image/mariadb.sh [BUILD_DIR]        (default build; needs scp-debian:bookworm)
#
#   secure      the secure image under docker run with a real CAS and the local attestation
#               service: data directory on a protected volume, USER mysql under the shield, the
#               port TLS through the network shield (`protocol: mysql`: MySQL's own TLS start);
#               sysbench is itself a shielded client (`scpctl run` with a session whose peer
#               rule, `protocol: mysql`, names the port and verifies CAS's service CA): the TLS
#               of both ends in their own processes, as with a client library's own TLS
#   plain       the base image run as is, data in a Docker volume, plain TCP (no TLS)
#   plain+tls   the plain container behind a socat TLS server on the host, sysbench through a
#               socat client tunnel: the cost of tunnels and TLS without the shield
#   plain+ssl   the plain container's mariadbd with its own TLS (ssl-cert, ssl-key: the same
#               server as plain's, which also takes plain connections) and sysbench's
#               (--mysql-ssl=on, Connector/C): TLS at both ends in the processes, no shield
# mariadb-install-db and sysbench prepare once each, then ROUNDS rounds of sysbench TEST (THREADS
# threads, SECS seconds) with the servers interleaved; medians and the ratios. Beside throughput,
# the CPU time of each container (its cgroup's cpuacct.usage: mariadbd, and for secure also the
# entry and the shield) per transaction, which moves less with the load than throughput; the
# client side's (sysbench, the shielded client's launcher, the socat tunnels: a cpuacct cgroup of
# the benchmark's own) per transaction; and how much of the machine was idle during the run
# (from /proc/stat, in % of one core): on two cores the client and the server share the CPU, so
# a server that is not CPU-bound while the machine has no idle time waits for its client.
# Environment: TEST=oltp_read_write TABLES=4 ROWS=10000 THREADS=4 SECS=15 ROUNDS=3, FLUSH_AT_COMMIT=
# (1: innodb_flush_log_at_trx_commit = 1 in both servers instead of the image's 2), RESTART=1
# (both containers stopped and started again after sysbench prepare, so that the rounds measure
# the server of every later start: the secure image's shell then execs mariadbd without forking
# first, where the first start forked for mariadb-install-db). About 6 minutes.
# Besides the ratio of the medians, the median of the per-round ratios (the four runs of a round
# are a minute apart, so they share more of the machine's load).
set -uo pipefail
B=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SCPCTL=$(readlink -f "$B/src/scpctl")
[ -x "$SCPCTL" ] || { echo "bench/image/mariadb: no $B/src/scpctl (build first)" >&2; exit 1; }
command -v sysbench >/dev/null && command -v socat >/dev/null && command -v mariadb >/dev/null ||
    { echo "bench/image/mariadb: needs sysbench, socat and the mariadb client" >&2; exit 1; }
TEST=${TEST:-oltp_read_write} TABLES=${TABLES:-4} ROWS=${ROWS:-10000} THREADS=${THREADS:-4}
SECS=${SECS:-15} ROUNDS=${ROUNDS:-3}
# shellcheck source=/dev/null
source "$ROOT/tests/cas/lib.sh" "$SCPCTL" none
N=scpbench-mariadb-$$
BASE=scp-mariadb-base:bookworm
SERVE= TUNNELS=()
CG=/sys/fs/cgroup/cpuacct/$N-client
mkdir -p "$CG" 2>/dev/null || CG=
bench_cleanup() {
    for p in "${TUNNELS[@]}"; do kill "$p" 2>/dev/null; done
    docker rm -f $N-secure $N-plain >/dev/null 2>&1
    docker volume rm -f $N-svol $N-pvol >/dev/null 2>&1
    docker rmi -f $N/mariadb:1 >/dev/null 2>&1
    [ -n "$SERVE" ] && kill "$SERVE" 2>/dev/null
    cleanup
    [ -n "$CG" ] && rmdir "$CG" 2>/dev/null
}
trap bench_cleanup EXIT
say() { echo "bench/image/mariadb: $*" >&2; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sh "$ROOT/scripts/start-docker.sh" || fail "no Docker engine"

"$SCPCTL" cas identity --out "$T/admin.pem" >/dev/null 2>&1 || fail "cas identity"
export SCP_IDENTITY=$T/admin.pem
start_cas --admin "$T/admin.pem"
CA=$T/data/service-ca.crt
"$SCPCTL" platform create-key "$T/p.key" >/dev/null 2>&1 && "$SCPCTL" platform enroll --name p --key "$T/p.key" >/dev/null 2>&1 ||
    fail "platform"
mkdir "$T/sock"
"$SCPCTL" platform serve --key "$T/p.key" --socket "$T/sock/attest.sock" >"$T/serve.log" 2>&1 &
SERVE=$!
SPORT=$(free_port) PPORT=$(free_port) PTUN=$(free_port) PTLS=$(free_port)

say "images: $BASE and its secure image (images/build.sh)"
bash "$ROOT/images/build.sh" mariadb -t $N/mariadb:1 --session mdb --port "$SPORT" --out "$T" --scpctl "$SCPCTL" \
    >"$T/build.log" 2>&1 || fail "images/build.sh: $(tail -5 "$T/build.log")"
[ -n "${FLUSH_AT_COMMIT:-}" ] &&
    sed -i "s/innodb_flush_log_at_trx_commit = 2/innodb_flush_log_at_trx_commit = $FLUSH_AT_COMMIT/" "$T/mariadb.session.yaml"
"$SCPCTL" session create "$T/mariadb.session.yaml" >/dev/null 2>&1 || fail "session create"
PW=$("$SCPCTL" session secret mdb root_password 2>/dev/null)
[ ${#PW} -eq 32 ] || fail "no root password from CAS"

# the TLS certificate of socat's server and of the plain server's own TLS (a benchmark's key,
# readable in the plain container: never a secure image's)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/tls.key" -out "$T/tls.crt" \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -days 2 >/dev/null 2>&1 || fail "openssl req"
# the plain server: the same configuration file and command, the init file written here
mkdir -m 755 "$T/pconf"
sed -e "s/^port = .*/port = $PPORT/" -e "s|^init-file = .*|init-file = /scp-etc/init.sql|" "$ROOT/images/mariadb/scp.cnf" >"$T/pconf/scp.cnf"
sed -n '/path: \/etc\/mysql\/scp-init.sql/,/^    volumes:/p' "$T/mariadb.session.yaml" | sed -e '1,2d' -e '$d' -e 's/^          //' |
    sed -e 's/[$][$]SCP::[a-z_]*_password[$][$]/'"$PW"'/g' >"$T/pconf/init.sql"
grep -q "ALTER USER 'root'@'%' IDENTIFIED BY '$PW'" "$T/pconf/init.sql" || fail "cannot read the init file of the session template"
cp "$T/tls.crt" "$T/tls.key" "$T/pconf/" && printf 'ssl-cert = /scp-etc/tls.crt\nssl-key = /scp-etc/tls.key\nssl-ca = /scp-etc/tls.crt\n' >>"$T/pconf/scp.cnf"
chmod 644 "$T/pconf/"*
# sysbench 1.0's --mysql-ssl=on takes client-key.pem, client-cert.pem and cacert.pem from its
# working directory, and Connector/C sends the certificate: the server's CA is that same
# self-signed certificate, so that it verifies
mkdir "$T/sbssl" && cp "$T/tls.crt" "$T/sbssl/cacert.pem" && cp "$T/tls.crt" "$T/sbssl/client-cert.pem" &&
    cp "$T/tls.key" "$T/sbssl/client-key.pem" || fail "sysbench's TLS files"
[ -n "${FLUSH_AT_COMMIT:-}" ] &&
    sed -i "s/innodb_flush_log_at_trx_commit = 2/innodb_flush_log_at_trx_commit = $FLUSH_AT_COMMIT/" "$T/pconf/scp.cnf"
CMD=$(sed -n "s/^    command: \[\/bin\/sh, -c, '\(.*\)'\]$/\1/p" "$T/mariadb.session.yaml" | sed -e 's|/etc/mysql/scp.cnf|/scp-etc/scp.cnf|')
[ -n "$CMD" ] || fail "cannot read the command of the session template"

# a TLS server in front of the plain server, and the client's tunnel to it
socat OPENSSL-LISTEN:"$PTLS",bind=127.0.0.1,reuseaddr,fork,cert="$T/tls.crt",key="$T/tls.key",verify=0,nodelay TCP:127.0.0.1:"$PPORT",nodelay 2>/dev/null &
TUNNELS+=($!)
socat TCP-LISTEN:"$PTUN",bind=127.0.0.1,reuseaddr,fork,nodelay OPENSSL:127.0.0.1:"$PTLS",cafile="$T/tls.crt",verify=1,commonname=127.0.0.1,nodelay 2>/dev/null &
TUNNELS+=($!)
[ -n "$CG" ] && for p in "${TUNNELS[@]}"; do echo "$p" >"$CG/cgroup.procs"; done # their forks follow

# the shielded client: sysbench under `scpctl run`, its arguments (and the password) in a
# session of its own, TLS by its network shield to the secure server's port
mkdir -p "$T/bin" && cp "$(command -v sysbench)" "$T/bin/sysbench"
MS=$("$SCPCTL" platform measure -- "$T/bin/sysbench" 2>/dev/null) || fail "platform measure sysbench"
# sb_args PORT COMMAND [ARGS]: sysbench's arguments, the one place they are written (the plain
# client's command line and the shielded client's session both take them from here)
sb_args() {
    local p=$1 c=$2
    shift 2
    printf '%s\n' "$TEST" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$p" --mysql-user=root --mysql-password="$PW" \
        --mysql-db=sbtest --tables="$TABLES" --table-size="$ROWS" "$@" "$c"
}
# yaml_cmd PORT COMMAND [ARGS]: the same as a session's command list
yaml_cmd() { sb_args "$@" | awk 'BEGIN {printf "[sysbench"} {gsub(/"/, "\\\""); printf ", \"%s\"", $0} END {print "]"}'; }
cat >"$T/client.session.yaml" <<YAML
name: mdbclient
services:
  - name: sysbench
    measurements: [$MS]
    command: $(yaml_cmd "$SPORT" run --threads="$THREADS" --time="$SECS")
    network:
      peers: [{host: 127.0.0.1, port: $SPORT, protocol: mysql}]
  - name: prepare
    measurements: [$MS]
    command: $(yaml_cmd "$SPORT" prepare)
    network:
      peers: [{host: 127.0.0.1, port: $SPORT, protocol: mysql}]
YAML
"$SCPCTL" session create "$T/client.session.yaml" >/dev/null 2>&1 || fail "session create (client)"

say "starting both (mariadb-install-db on the first start)"
docker run -d --name $N-secure --network host -e SCP_CAS="$SCP_CAS" -e SCP_CAS_PIN="$SCP_CAS_PIN" \
    -v "$T/sock:/run/scp" -v $N-svol:/scp-volumes $N/mariadb:1 >/dev/null || fail "docker run secure"
docker run -d --name $N-plain --network host -v $N-pvol:/var/lib/mysql -v "$T/pconf:/scp-etc:ro" \
    --entrypoint /bin/sh "$BASE" -c "$CMD" >/dev/null || fail "docker run plain"
sqlp() { # PORT SQL: the secure server with the client's own TLS (CAS's service CA), the plain one without
    if [ "$1" = "$SPORT" ]; then
        mariadb --no-defaults --ssl --ssl-ca="$CA" --ssl-verify-server-cert -h 127.0.0.1 -P "$1" -uroot -p"$PW" -N -B -e "$2"
    else
        mariadb --no-defaults --skip-ssl -h 127.0.0.1 -P "$1" -uroot -p"$PW" -N -B -e "$2"
    fi
}
SB() { # PORT COMMAND [ARGS]
    local a
    mapfile -t a < <(sb_args "$@")
    sysbench "${a[@]}"
}
prepare() { # PORT
    if [ "$1" = "$SPORT" ]; then
        "$SCPCTL" run --session mdbclient --service prepare --platform-key "$T/p.key" -- "$T/bin/sysbench"
    else
        SB "$1" prepare
    fi
}
for p in $SPORT $PPORT; do
    for _ in $(seq 900); do sqlp "$p" 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
    sqlp "$p" 'select 1' >/dev/null 2>&1 ||
        fail "mariadb on $p does not answer: $(docker logs $N-secure 2>&1 | tail -5) $(docker logs $N-plain 2>&1 | tail -5)"
    sqlp "$p" 'create database sbtest' && prepare "$p" >/dev/null 2>&1 || fail "sysbench prepare on $p"
done

if [ "${RESTART:-0}" = 1 ]; then
    say "restarting both (the server of every later start)"
    docker stop -t 60 $N-secure $N-plain >/dev/null && docker start $N-secure $N-plain >/dev/null || fail "docker restart"
    for p in $SPORT $PPORT; do
        for _ in $(seq 900); do sqlp "$p" 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
        sqlp "$p" 'select 1' >/dev/null 2>&1 || fail "mariadb on $p does not answer after the restart"
    done
fi

cpu_ns() { cat "/sys/fs/cgroup/cpuacct/docker/$(docker inspect -f '{{.Id}}' "$1")/cpuacct.usage" 2>/dev/null || echo 0; }
client_ns() { if [ -n "$CG" ]; then cat "$CG/cpuacct.usage"; else echo 0; fi; }
idle_ticks() { awk '/^cpu / {print $5 + $6}' /proc/stat; }
client() { # PORT|ssl:PORT|shield: sysbench run, in the client cgroup
    if [ "$1" = shield ]; then
        (if [ -n "$CG" ]; then echo $BASHPID >"$CG/cgroup.procs"; fi
         exec "$SCPCTL" run --session mdbclient --service sysbench --platform-key "$T/p.key" -- "$T/bin/sysbench")
    elif [ "${1#ssl:}" != "$1" ]; then
        (if [ -n "$CG" ]; then echo $BASHPID >"$CG/cgroup.procs"; fi
         cd "$T/sbssl" && SB "${1#ssl:}" run --threads="$THREADS" --time="$SECS" --mysql-ssl=on)
    else
        (if [ -n "$CG" ]; then echo $BASHPID >"$CG/cgroup.procs"; fi
         SB "$1" run --threads="$THREADS" --time="$SECS")
    fi
}
# a process's own CPU time in clock ticks (not its children's)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
run() { # CONTAINER PORT|ssl:PORT|shield: one sysbench run; prints "TPS CONTAINER_CPU_US/TXN CLIENT_CPU_US/TXN IDLE_%"
    # (for the secure container also, to $T/secure-extra: "CAS_US/TXN ENTRY_US/TXN", the CPU of
    # CAS, outside the container, and of the entry, the supervisor that reports volume tags)
    local c0 c1 k0 k1 i0 i1 out n tps a0 a1 e0 e1 ep
    ep=$(docker inspect -f '{{.State.Pid}}' "$1")
    c0=$(cpu_ns "$1") k0=$(client_ns) i0=$(idle_ticks) a0=$(ticks "$CAS_PID") e0=$(ticks "$ep")
    out=$(client "$2" 2>&1) || fail "sysbench on $1 ($2): $(echo "$out" | grep -m3 -i 'error')"
    sleep 0.3 # socat reaps its children (their CPU time is the parent's then)
    c1=$(cpu_ns "$1") k1=$(client_ns) i1=$(idle_ticks) a1=$(ticks "$CAS_PID") e1=$(ticks "$ep")
    n=$(echo "$out" | sed -n 's/^ *transactions: *\([0-9]*\).*/\1/p')
    [ "$2" = shield ] && [ -n "$n" ] && [ "$n" -gt 0 ] && awk -v a=$((a1 - a0)) -v e=$((e1 - e0)) -v n="$n" -v hz="$(getconf CLK_TCK)" \
        'BEGIN {printf "%.0f %.0f\n", a * 1e6 / hz / n, e * 1e6 / hz / n}' >>"$T/secure-extra"
    tps=$(echo "$out" | sed -n 's/^ *transactions: *[0-9]* *(\([0-9.]*\) per sec.*/\1/p')
    [ -n "$n" ] && [ "$n" -gt 0 ] || fail "sysbench on $1 ($2) ran no transaction: $(echo "$out" | tail -5)"
    awk -v t="$tps" -v a="$c0" -v b="$c1" -v k="$k0" -v l="$k1" -v i="$i0" -v j="$i1" -v n="$n" -v s="$SECS" -v hz="$(getconf CLK_TCK)" \
        'BEGIN {printf "%s %.0f %.0f %.0f\n", t, (b - a) / 1000 / n, (l - k) / 1000 / n, (j - i) * 100 / hz / (s + 0.3)}'
}
: >"$T/secure" && : >"$T/plain" && : >"$T/plaintls" && : >"$T/plainssl" && : >"$T/secure-extra"
for r in $(seq "$ROUNDS"); do
    l=$(cut -d' ' -f1 /proc/loadavg)
    run $N-secure shield >>"$T/secure"
    run $N-plain "$PPORT" >>"$T/plain"
    run $N-plain "$PTUN" >>"$T/plaintls"
    run $N-plain "ssl:$PPORT" >>"$T/plainssl"
    say "round $r (load $l): secure $(tail -1 "$T/secure") (CAS, entry $(tail -1 "$T/secure-extra")) plain $(tail -1 "$T/plain") plain+tls $(tail -1 "$T/plaintls") plain+ssl $(tail -1 "$T/plainssl") (tps, container and client CPU us/txn, idle %)"
done
med() { cut -d' ' -f"$2" "$T/$1" | median; }
rr=$(paste -d' ' "$T/secure" "$T/plain" | awk '$5 > 0 {printf "%.3f\n", $1 / $5}' | median)
echo "sysbench $TEST, innodb_flush_log_at_trx_commit=${FLUSH_AT_COMMIT:-2}$([ "${RESTART:-0}" = 1 ] && echo ", restarted"), $TABLES tables x $ROWS rows, $THREADS threads, ${SECS}s x $ROUNDS rounds (medians), load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '  %-12s %9s %14s %11s %9s\n' "" tps "container us" "client us" "idle %"
for f in secure plain plaintls plainssl; do
    case $f in plaintls) name=plain+tls ;; plainssl) name=plain+ssl ;; *) name=$f ;; esac
    printf '  %-12s %9s %14s %11s %9s\n' "$name" "$(med $f 1)" "$(med $f 2)" "$(med $f 3)" "$(med $f 4)"
done
echo "  (container and client: CPU time per transaction; idle: the machine's idle time during the run, % of one core)"
echo "  secure: CAS (outside the container) $(cut -d' ' -f1 "$T/secure-extra" | median) us, the entry (the supervisor reporting volume tags, inside) $(cut -d' ' -f2 "$T/secure-extra" | median) us CPU per transaction"
awk -v s="$(med secure 1)" -v p="$(med plain 1)" -v t="$(med plaintls 1)" -v u="$(med plainssl 1)" \
    -v sc="$(med secure 2)" -v pc="$(med plain 2)" -v sk="$(med secure 3)" -v pk="$(med plain 3)" \
    -v uc="$(med plainssl 2)" -v uk="$(med plainssl 3)" 'BEGIN {
    printf "  secure/plain: throughput %.2fx, container CPU per transaction %.2fx, client CPU per transaction %.2fx\n", p ? s / p : 0, pc ? sc / pc : 0, pk ? sk / pk : 0
    printf "  secure/plain+tls: throughput %.2fx\n", t ? s / t : 0
    printf "  secure/plain+ssl (the server\x27s own TLS): throughput %.2fx, container CPU per transaction %.2fx, client CPU per transaction %.2fx\n", u ? s / u : 0, uc ? sc / uc : 0, uk ? sk / uk : 0 }'
echo "  secure/plain per round: throughput $(paste -d' ' "$T/secure" "$T/plain" | awk '$5 > 0 {printf "%.2f ", $1 / $5}')(median ${rr}x)"
echo "  secure/plain+ssl per round: throughput $(paste -d' ' "$T/secure" "$T/plainssl" | awk '$5 > 0 {printf "%.2f ", $1 / $5}')"
