#!/bin/bash
# bench/image/postgres.sh - pgbench against the curated secure PostgreSQL (images/postgres) and
# the same Debian postgresql-15 in a plain Docker container made from the same base image, same
# flags, same client, on the host's loopback (--network host).
#
#   bench/image/postgres.sh [BUILD_DIR]        (default build; needs scp-debian:bookworm)
#
#   secure  the secure image under docker run with a real CAS and the local attestation service,
#           its data directory on a protected volume (every fsync commits the volume and reports
#           its tag to CAS), running as USER postgres under the shield
#           and TLS (PostgreSQL's own, with the certificate and key CAS injects; pgbench
#           sslmode=verify-full against CAS's service CA)
#   plain   the base image run as is: the same initdb and postgres flags but no TLS, data in a
#           Docker volume
# pgbench -i -s SCALE once each, then ROUNDS rounds of pgbench (TPC-B like, CLIENTS clients,
# SECS seconds) with the two servers interleaved; medians and the ratio secure/plain. Beside
# throughput, the CPU time of each container (its cgroup's cpuacct.usage: postgres, and for
# secure also the entry and the shield) per transaction, which does not move with the load.
# Environment: SCALE=2 CLIENTS=4 SECS=10 ROUNDS=3. About 4 minutes. (Session 7's "unexpected
# data beyond EOF" with several clients, a stale relation size in the volume's multi-process
# path, no longer happens: 4 clients ran 2 x 15 s cleanly at 18:19Z on 2026-11-29.)
set -uo pipefail
B=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SCPCTL=$(readlink -f "$B/src/scpctl")
[ -x "$SCPCTL" ] || { echo "bench/image/postgres: no $B/src/scpctl (build first)" >&2; exit 1; }
SCALE=${SCALE:-2} CLIENTS=${CLIENTS:-4} SECS=${SECS:-10} ROUNDS=${ROUNDS:-3}
# shellcheck source=/dev/null
source "$ROOT/tests/cas/lib.sh" "$SCPCTL" none
N=scpbench-pg-$$
BASE=${SCP_PG_BASE:-scp-postgres-base-image-runtime:bookworm}
SERVE=
bench_cleanup() {
    docker rm -f $N-secure $N-plain >/dev/null 2>&1
    docker volume rm -f $N-svol $N-pvol >/dev/null 2>&1
    docker rmi -f $N/pg-secure:1 >/dev/null 2>&1
    [ -n "$SERVE" ] && kill "$SERVE" 2>/dev/null
    cleanup
}
trap bench_cleanup EXIT
say() { echo "bench/image/postgres: $*" >&2; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
sh "$ROOT/scripts/start-docker.sh" || fail "no Docker engine"
docker image inspect scp-debian:bookworm >/dev/null 2>&1 || fail "no scp-debian:bookworm (images/base/build.sh)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "images: $BASE and its secure image"
docker build -q --network host -t "$BASE" "$ROOT/images/postgres" >/dev/null 2>"$T/dbuild.err" || fail "docker build: $(cat "$T/dbuild.err")"
"$SCPCTL" image build "$BASE" -t $N/pg-secure:1 --session pg --service postgres --protect /var/lib/postgresql/data \
    -o "$T/pg.tar" >"$T/build.out" 2>"$T/build.err" || fail "image build: $(cat "$T/build.err")"
docker load -i "$T/pg.tar" >/dev/null || fail "docker load"
M=$(awk '/^measurement /{print $2}' "$T/build.out")

"$SCPCTL" cas identity --out "$T/admin.pem" >/dev/null 2>&1 || fail "cas identity"
export SCP_IDENTITY=$T/admin.pem
start_cas --admin "$T/admin.pem"
"$SCPCTL" platform create-key "$T/p.key" >/dev/null 2>&1 && "$SCPCTL" platform enroll --name p --key "$T/p.key" >/dev/null 2>&1 ||
    fail "platform"
mkdir "$T/sock"
"$SCPCTL" platform serve --key "$T/p.key" --socket "$T/sock/attest.sock" >"$T/serve.log" 2>&1 &
SERVE=$!
for _ in $(seq 50); do [ -S "$T/sock/attest.sock" ] && break; sleep 0.1; done
SPORT=$(free_port) PPORT=$(free_port)
sed -e "s/@SESSION@/pg/g" -e "s/@MEASUREMENT@/$M/g" -e "s/@PORT@/$SPORT/g" "$ROOT/images/postgres/session.yaml" >"$T/pg.yaml"
"$SCPCTL" session create "$T/pg.yaml" >/dev/null 2>&1 || fail "session create"
PW=$("$SCPCTL" session secret pg pgpass 2>/dev/null)
# the plain server: the session's own command with the port changed and the password from a file
# the script writes itself (the plain container has no CAS to inject it)
CMD=$(sed -n "s/^    command: \[\/bin\/sh, -c, '\(.*\)'\]$/\1/p" "$T/pg.yaml" | sed -e "s/-p $SPORT/-p $PPORT/" \
    -e 's|--pwfile=/run/secrets/pgpass|--pwfile=/tmp/pw|')
[ -n "$CMD" ] || fail "cannot read the command of images/postgres/session.yaml"

say "starting both (initdb on the first start)"
docker run -d --name $N-secure --network host -e SCP_CAS="$SCP_CAS" -e SCP_CAS_PIN="$SCP_CAS_PIN" \
    -v "$T/sock:/run/scp" -v $N-svol:/scp-volumes $N/pg-secure:1 >/dev/null || fail "docker run secure"
docker run -d --name $N-plain --network host -e PW="$PW" -v $N-pvol:/var/lib/postgresql/data \
    --entrypoint /bin/sh "$BASE" -c "printf '%s' \"\$PW\" >/tmp/pw; $CMD" >/dev/null || fail "docker run plain"
export PGPASSWORD=$PW PGSSLROOTCERT=$T/data/service-ca.crt
# the secure server takes TCP only over TLS (the network shield's, with CAS's certificate), the plain one none
sslmode() { if [ "$1" = "$SPORT" ]; then echo verify-full; else echo disable; fi; }
for p in $SPORT $PPORT; do
    PGSSLMODE=$(sslmode "$p")
    export PGSSLMODE
    for _ in $(seq 900); do psql -h 127.0.0.1 -p "$p" -U postgres -At -c 'select 1' postgres >/dev/null 2>&1 && break; sleep 0.2; done
    psql -h 127.0.0.1 -p "$p" -U postgres -At -c 'select 1' postgres >/dev/null 2>&1 ||
        fail "postgres on $p does not answer: $(docker logs $N-secure 2>&1 | tail -5) $(docker logs $N-plain 2>&1 | tail -5)"
    pgbench -h 127.0.0.1 -p "$p" -U postgres -q -i -s "$SCALE" postgres >/dev/null 2>&1 || fail "pgbench -i on $p"
done

cpu_ns() { cat "/sys/fs/cgroup/cpuacct/docker/$(docker inspect -f '{{.Id}}' "$1")/cpuacct.usage" 2>/dev/null || echo 0; }
run() { # NAME PORT: one pgbench run; prints "TPS CPU_US_PER_TXN"
    local c0 c1 out
    PGSSLMODE=$(sslmode "$2")
    export PGSSLMODE
    c0=$(cpu_ns "$1")
    out=$(pgbench -h 127.0.0.1 -p "$2" -U postgres -n -c "$CLIENTS" -j "$(((CLIENTS + 1) / 2))" -T "$SECS" postgres 2>&1) ||
        fail "pgbench on $1: $(echo "$out" | grep -m3 -i 'error')"
    c1=$(cpu_ns "$1")
    local tps txn
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1)
    txn=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
    echo "$tps $(awk -v a="$c0" -v b="$c1" -v n="$txn" 'BEGIN {printf "%.1f", n ? (b - a) / 1000 / n : 0}')"
}
: >"$T/secure" && : >"$T/plain"
for r in $(seq "$ROUNDS"); do
    run $N-secure "$SPORT" >>"$T/secure"
    run $N-plain "$PPORT" >>"$T/plain"
    say "round $r: secure $(tail -1 "$T/secure") plain $(tail -1 "$T/plain") (tps, container CPU us/txn)"
done
st=$(cut -d' ' -f1 "$T/secure" | median) pt=$(cut -d' ' -f1 "$T/plain" | median)
sc=$(cut -d' ' -f2 "$T/secure" | median) pc=$(cut -d' ' -f2 "$T/plain" | median)
echo "pgbench TPC-B-like, scale $SCALE, $CLIENTS clients, ${SECS}s x $ROUNDS rounds (medians), load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '  %-7s %10s tps  %8s us CPU/txn\n' secure "$st" "$sc" plain "$pt" "$pc"
awk -v s="$st" -v p="$pt" -v sc="$sc" -v pc="$pc" 'BEGIN {printf "  secure/plain: throughput %.2fx, CPU per transaction %.2fx\n", p ? s / p : 0, pc ? sc / pc : 0}'
