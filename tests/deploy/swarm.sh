#!/bin/bash
# tests/deploy/swarm.sh SCPCTL - CAS on PostgreSQL and a secure redis as services of a one-node
# Docker swarm (deploy/swarm/README.md), with a real engine:
#  - deploy/swarm/build.sh's images, the two secrets, the overlay network; cas-stack.yml
#    deployed: CAS starts before its database, fails, and the swarm starts it again until
#    PostgreSQL answers (its first start takes back the keys it made); the operator pins CAS's
#    fingerprint from the service's log and manages it from the host;
#  - the curated secure redis (images/build.sh) deployed with redis-stack.yml: attested by that
#    CAS through the node's attestation service, redis-cli --tls writes and reads;
#  - the database holds no secret and no policy in plaintext (its files, read in its
#    container), and CAS's arguments hold no password;
#  - the database's container killed: the swarm starts it again and CAS serves again without
#    a restart; CAS's service restarted (docker service update --force): same fingerprint,
#    same sessions; redis's restarted: attested again, its data back.
# Exit 77 (skipped) without Docker, a swarm-capable engine, redis-cli or a way to make the base
# image; an engine already in a swarm is used as it is and left in it.
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$HERE/../cas/lib.sh" "$(realpath "$1")" none
SCPCTL=$(realpath "$1")
B=$(dirname "$(dirname "$SCPCTL")")
note() { echo "-- $* ($(date -u +%T))"; }
skip() { echo "SKIP: $*"; exit 77; }
command -v redis-cli >/dev/null || skip "no redis-cli"
[ "$(id -u)" = 0 ] || skip "needs root (the attestation service's socket, docker)"
sh "$ROOT/scripts/start-docker.sh" >/dev/null 2>&1 || skip "no Docker engine"
docker image inspect scp-debian:bookworm >/dev/null 2>&1 || command -v debootstrap >/dev/null ||
    skip "no base image and no debootstrap"
for s in cas_db_password cas_pgpass; do
    docker secret inspect $s >/dev/null 2>&1 && skip "the swarm already has a secret $s"
done

P=scptest-swarm-$$
NET=scp
OWN_SWARM=
SERVE=
swarm_cleanup() {
    docker stack rm $P-redis $P >/dev/null 2>&1
    for _ in $(seq 60); do
        [ -z "$(docker ps -aq --filter label=com.docker.stack.namespace=$P)$(docker ps -aq --filter label=com.docker.stack.namespace=$P-redis)" ] && break
        sleep 1
    done
    docker secret rm cas_db_password cas_pgpass >/dev/null 2>&1
    docker network rm $NET >/dev/null 2>&1
    docker volume rm -f ${P}_cas-db ${P}_cas-data $P-redis_redis-data >/dev/null 2>&1
    docker rmi -f $P/redis:1 >/dev/null 2>&1
    [ -n "$OWN_SWARM" ] && docker swarm leave --force >/dev/null 2>&1
    [ -n "$SERVE" ] && kill "$SERVE" 2>/dev/null
    cleanup
}
trap swarm_cleanup EXIT

note "a one-node swarm, the images (deploy/swarm/build.sh), the secrets, the network"
if [ "$(docker info -f '{{.Swarm.LocalNodeState}}')" != active ]; then
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null 2>&1 || skip "docker swarm init failed"
    OWN_SWARM=1
fi
docker network inspect $NET >/dev/null 2>&1 && skip "the engine already has a network $NET"
bash "$ROOT/deploy/swarm/build.sh" "$B" >"$T/build.log" 2>&1 || fail "deploy/swarm/build.sh: $(tail -20 "$T/build.log")"
DBPW=$(openssl rand -hex 24)
printf %s "$DBPW" | docker secret create cas_db_password - >/dev/null || fail "docker secret create"
printf 'cas-db:5432:cas:cas:%s\n' "$DBPW" | docker secret create cas_pgpass - >/dev/null || fail "docker secret create"
docker network create -d overlay --attachable $NET >/dev/null || fail "docker network create"

note "cas-stack.yml: CAS on PostgreSQL"
A=$T/admin.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
ADMIN=$(cat "$T/last.out")
export SCP_IDENTITY=$A
CASPORT=$(freeport)
SCP_ADMIN_ID=$ADMIN SCP_CAS_PORT=$CASPORT docker stack deploy -c "$ROOT/deploy/swarm/cas-stack.yml" $P >"$T/deploy.log" 2>&1 ||
    fail "docker stack deploy: $(cat "$T/deploy.log")"
# the fingerprint from the service's log, then an answer from CAS on the published port
PIN=
for _ in $(seq 180); do
    PIN=$(docker service logs --raw ${P}_scp-cas 2>/dev/null | sed -n 's/.*fingerprint (pin this): \([0-9a-f]*\).*/\1/p' | tail -1)
    [ ${#PIN} -eq 64 ] && "$SCPCTL" cas status --cas 127.0.0.1:$CASPORT --pin "$PIN" >/dev/null 2>&1 && break
    sleep 1
done
[ ${#PIN} -eq 64 ] || fail "CAS did not start in the swarm: $(docker service ps --no-trunc ${P}_scp-cas 2>&1 | tail -5; docker service logs --raw ${P}_scp-cas 2>&1 | tail -10)"
export SCP_CAS=127.0.0.1:$CASPORT SCP_CAS_PIN=$PIN
expect_rc 0 "$SCPCTL" cas status
docker service logs --raw ${P}_scp-cas 2>&1 | grep -q "refusing to start" &&
    fail "a start of CAS was refused: $(docker service logs --raw ${P}_scp-cas 2>&1 | grep refusing)"
CASC=$(docker ps -q --filter label=com.docker.swarm.service.name=${P}_scp-cas | head -1)
[ -n "$CASC" ] || fail "no CAS container"
docker exec "$CASC" cat /proc/1/cmdline | tr '\0' ' ' | grep -q "$DBPW" && fail "the database password is in CAS's arguments"

note "the curated secure redis (images/build.sh), its session, the node's attestation service"
expect_rc 0 "$SCPCTL" platform create-key "$T/p.key"
expect_rc 0 "$SCPCTL" platform enroll --name node1 --key "$T/p.key"
mkdir -m 0755 "$T/sock"
chmod 0755 "$T"
"$SCPCTL" platform serve --key "$T/p.key" --socket "$T/sock/attest.sock" >"$T/serve.log" 2>&1 &
SERVE=$!
for _ in $(seq 50); do [ -S "$T/sock/attest.sock" ] && break; sleep 0.1; done
RPORT=$(freeport)
S=swarmredis$$
bash "$ROOT/images/build.sh" redis -t $P/redis:1 --session $S --port "$RPORT" --out "$T" --scpctl "$SCPCTL" \
    >"$T/rbuild.log" 2>&1 || fail "images/build.sh: $(tail -20 "$T/rbuild.log")"
expect_rc 0 "$SCPCTL" session create "$T/redis.session.yaml"
expect_rc 0 "$SCPCTL" session secret $S password
RPW=$(cat "$T/last.out")
[ ${#RPW} -eq 32 ] || fail "no password from CAS"
# CAS's service CA, which the network shield's certificates chain to (clients of redis verify it)
docker cp "$CASC:/var/lib/scp-cas/service-ca.crt" "$T/service-ca.crt" >/dev/null 2>&1 || fail "no service CA"
cli() { redis-cli --tls --cacert "$T/service-ca.crt" -h 127.0.0.1 -p "$RPORT" --no-auth-warning -a "$RPW" "$@"; }
redis_up() { # wait for PONG over TLS (120 s)
    for _ in $(seq 240); do
        [ "$(cli ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.5
    done
    fail "redis did not answer: $(docker service ps --no-trunc $P-redis_redis 2>&1 | tail -3; docker service logs --raw $P-redis_redis 2>&1 | tail -10)"
}

note "redis-stack.yml: the secure redis as a service, attested by the CAS in the swarm"
SCP_REDIS_IMAGE=$P/redis:1 SCP_CAS_PIN=$PIN SCP_REDIS_PORT=$RPORT SCP_LAS_DIR=$T/sock \
    docker stack deploy -c "$ROOT/deploy/swarm/redis-stack.yml" $P-redis >"$T/rdeploy.log" 2>&1 ||
    fail "docker stack deploy redis: $(cat "$T/rdeploy.log")"
redis_up
MARK=scp-swarm-marker-$$-$RANDOM
[ "$(cli set k "$MARK")" = OK ] || fail "SET"
[ "$(cli get k)" = "$MARK" ] || fail "GET"
grep -q "evidence for $S/redis" "$T/serve.log" || fail "the node's attestation service made no evidence: $(tail -3 "$T/serve.log")"

note "the database: no secret, no policy text in its files"
DBC=$(docker ps -q --filter label=com.docker.swarm.service.name=${P}_cas-db | head -1)
[ -n "$DBC" ] || fail "no database container"
docker exec "$DBC" psql -h /tmp -U postgres -d cas -qAtc "CHECKPOINT" >/dev/null || fail "CHECKPOINT"
docker exec "$DBC" grep -rqa "$S" /var/lib/postgresql/data/cluster ||
    fail "the session's name is not in the database's files (were they searched?)"
for s in "$RPW" "requirepass"; do
    docker exec "$DBC" grep -rqa -- "$s" /var/lib/postgresql/data/cluster && fail "'$s' in plaintext in the database's files"
done

note "the database's container killed: the swarm starts it again, CAS serves again without a restart"
# serves_again WHY: CAS answers for the session within 120 s, or the test fails saying WHY
serves_again() {
    for _ in $(seq 120); do
        "$SCPCTL" session show $S >/dev/null 2>&1 && return 0
        sleep 1
    done
    fail "$1"
}
docker kill "$DBC" >/dev/null
serves_again "CAS did not serve again after the database came back"
[ "$(docker ps -q --filter label=com.docker.swarm.service.name=${P}_scp-cas | head -1)" = "$CASC" ] ||
    fail "CAS's container was replaced (it should have reconnected)"

note "CAS's service restarted: same fingerprint, same session; redis's restarted: attested again, its data back"
docker service update --force ${P}_scp-cas >/dev/null 2>&1 || fail "docker service update scp-cas"
serves_again "CAS did not come back with the same fingerprint and its sessions"
docker service update --force $P-redis_redis >/dev/null 2>&1 || fail "docker service update redis"
redis_up
[ "$(cli get k)" = "$MARK" ] || fail "redis's data did not come back"
[ "$(grep -c "evidence for $S/redis" "$T/serve.log")" -ge 2 ] || fail "redis was not attested again"
expect_err 0 "audit chain verified" "$SCPCTL" cas audit --verify
echo "deploy swarm: ok"
