#!/bin/bash
# tests/image/redis.sh - the curated secure redis (images/redis, images/README.md) under
# `docker run` with a real CAS: built from Debian's redis-server package on the local bookworm
# base (images/build.sh), its session from images/redis/session.yaml (a password CAS generates
# in the injected configuration, a certificate CAS issues for the network shield, the data
# directory a protected volume). redis-cli --tls, verifying CAS's service CA, writes and reads;
# a plaintext client gets nothing; the configuration is the tuned one (AOF, everysec); the
# Docker volume holds no plaintext marker and nothing reached the image's data directory or
# /etc/redis; after docker stop and docker run the data is back; an image with a changed file in
# a layer (re-imported) and a session listing another measurement get no secrets.
# Usage: redis.sh SCPCTL. Exit 77 (skipped) without a Docker engine, debootstrap or redis-cli.
HERE=$(cd "$(dirname "$0")" && pwd)
SCPCTL=$(realpath "$1")
source "$HERE/../cas/lib.sh" "$SCPCTL" none
command -v redis-cli >/dev/null || { echo "redis-cli not installed: skipped"; exit 77; }
sh "$HERE/../../scripts/start-docker.sh" || { echo "no Docker engine: skipped"; exit 77; }
docker image inspect scp-debian:bookworm >/dev/null 2>&1 || command -v debootstrap >/dev/null ||
    { echo "no base image and no debootstrap: skipped"; exit 77; }
note() { echo "-- $*"; }
TAG=scptest-images-redis-$$
VOL=$TAG-vol
SERVE=
docker_cleanup() {
    docker rm -f $TAG-c1 $TAG-c2 $TAG-tampered $TAG-bad >/dev/null 2>&1
    docker volume rm -f $VOL $VOL-2 >/dev/null 2>&1
    docker rmi -f $TAG/redis:1 $TAG/redis:tampered >/dev/null 2>&1
    [ -n "$SERVE" ] && kill "$SERVE" 2>/dev/null
    cleanup
}
trap docker_cleanup EXIT

A=$T/admin.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
export SCP_IDENTITY=$A
start_cas --admin "$A"
CA=$T/data/service-ca.crt
expect_rc 0 "$SCPCTL" platform create-key "$T/p.key"
expect_rc 0 "$SCPCTL" platform enroll --name p --key "$T/p.key"
mkdir "$T/sock"
"$SCPCTL" platform serve --key "$T/p.key" --socket "$T/sock/attest.sock" >"$T/serve.log" 2>&1 &
SERVE=$!
for _ in $(seq 50); do [ -S "$T/sock/attest.sock" ] && break; sleep 0.1; done

note "images/build.sh redis: base, Debian's redis-server, the secure image, the session"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
S=redis$$
bash "$HERE/../../images/build.sh" redis -t $TAG/redis:1 --session $S --port "$PORT" --out "$T" \
    --scpctl "$SCPCTL" >"$T/build.log" 2>&1 || fail "images/build.sh: $(tail -20 "$T/build.log")"
M=$(awk '/^measurement /{print $2}' "$T/build.log")
grep -q "measurements: \[$M\]" "$T/redis.session.yaml" || fail "template: $(cat "$T/redis.session.yaml")"
expect_rc 0 "$SCPCTL" session create "$T/redis.session.yaml"
HASH=$(awk '/^hash /{print $2}' "$T/last.out")
expect_rc 0 "$SCPCTL" session secret $S password
PW=$(cat "$T/last.out")
[ ${#PW} -eq 32 ] || fail "no password from CAS"
cli() { redis-cli --tls --cacert "$CA" -h 127.0.0.1 -p "$PORT" --no-auth-warning -a "$PW" "$@"; }

RUNFLAGS=(--network host -e SCP_CAS="$SCP_CAS" -e SCP_CAS_PIN="$SCP_CAS_PIN" -v "$T/sock:/run/scp" -v "$VOL:/scp-volumes")
run_to_end() { # NAME IMAGE: a container that must stop by itself; its exit code (99: still running after 60 s)
    docker run -d --name "$1" "${RUNFLAGS[@]}" "$2" >/dev/null || fail "docker run $1"
    local rc
    rc=$(timeout 60 docker wait "$1") || rc=99
    docker logs "$1" >"$T/$1.log" 2>&1
    [ "$rc" = 99 ] && docker rm -f "$1" >/dev/null
    return "$rc"
}
start() { # NAME
    docker run -d --name "$1" "${RUNFLAGS[@]}" $TAG/redis:1 >/dev/null || fail "docker run"
    for _ in $(seq 300); do
        [ "$(cli ping 2>/dev/null)" = PONG ] && return 0
        [ "$(docker inspect -f '{{.State.Running}}' "$1")" = true ] || fail "container exited: $(docker logs "$1" 2>&1 | tail -5)"
        sleep 0.1
    done
    fail "redis in the container did not answer over TLS: $(docker logs "$1" 2>&1 | tail -5)"
}

note "docker run: attested; redis-cli --tls (CAS's service CA) writes and reads"
start $TAG-c1
MARK=scp-images-redis-marker-$$-$RANDOM
[ "$(cli set k "$MARK")" = OK ] || fail "SET"
[ "$(cli get k)" = "$MARK" ] || fail "GET"
redis-cli --tls --cacert "$CA" -h 127.0.0.1 -p "$PORT" get k 2>&1 | grep -q NOAUTH ||
    fail "redis answers without the password CAS generated"
out=$(timeout 10 redis-cli -h 127.0.0.1 -p "$PORT" --no-auth-warning -a "$PW" get k 2>&1)
case $out in *"$MARK"*) fail "a plaintext client read the value: $out" ;; esac
[ "$(cli config get appendonly | tail -1)" = yes ] && [ "$(cli config get appendfsync | tail -1)" = everysec ] &&
    [ "$(cli config get dir | tail -1)" = /var/lib/redis ] || fail "not the session's configuration"

note "the Docker volume holds no plaintext; nothing reached the image's /var/lib/redis or /etc/redis"
sleep 2 # appendfsync everysec: the AOF reaches the volume within a second
VD=$(docker volume inspect -f '{{.Mountpoint}}' $VOL)
[ -n "$(find "$VD" -type f -size +0 | head -1)" ] || fail "the Docker volume is empty: $(ls -R "$VD")"
grep -rqa "$MARK" "$VD" && fail "the marker is in plaintext in the Docker volume"
grep -rqa "$PW" "$VD" && fail "the password is in plaintext in the Docker volume"
docker diff $TAG-c1 >"$T/diff"
grep -Eq '^[AC] /(var/lib/redis|etc/redis)/' "$T/diff" && fail "files reached the container's layer: $(cat "$T/diff")"
docker logs $TAG-c1 2>&1 | grep -q "$PW" && fail "the password is in docker logs"

note "docker stop, docker run again: the data is back"
docker stop -t 20 $TAG-c1 >/dev/null || fail "docker stop"
[ "$(docker inspect -f '{{.State.ExitCode}}' $TAG-c1)" = 0 ] || fail "exit code after docker stop: $(docker logs $TAG-c1 2>&1 | tail -5)"
docker rm $TAG-c1 >/dev/null
start $TAG-c2
[ "$(cli get k)" = "$MARK" ] || fail "the data did not come back"
docker stop -t 20 $TAG-c2 >/dev/null

note "the image with one changed file in a layer (libc, re-imported): no secrets"
docker save $TAG/redis:1 -o "$T/secure.tar" || fail "docker save"
python3 "$HERE/archive.py" tamper "$T/secure.tar" "$T/tampered.tar" usr/lib/x86_64-linux-gnu/libc.so.6 || fail "tamper"
rm -f "$T/secure.tar"
docker load -i "$T/tampered.tar" >"$T/load.out" || fail "docker load of the tampered image"
rm -f "$T/tampered.tar"
TID=$(sed -n 's/^Loaded image ID: //p' "$T/load.out")
[ -n "$TID" ] || TID=$(sed -n 's/^Loaded image: //p' "$T/load.out")
docker tag "$TID" $TAG/redis:tampered || fail "docker tag $(cat "$T/load.out")"
run_to_end $TAG-tampered $TAG/redis:tampered
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 99 ] || fail "the tampered image's container exited $rc (99: still running)"
grep -q "CAS refused.*wrong_measurement" "$T/$TAG-tampered.log" || fail "docker logs lacks CAS's reason: $(cat "$T/$TAG-tampered.log")"

note "a session whose measurement is not the image's: no secrets"
sed -e "s/measurements: \[.*\]/measurements: [$(printf '%064d' 0)]/" "$T/redis.session.yaml" >"$T/wrong.yaml"
expect_rc 0 "$SCPCTL" session update "$T/wrong.yaml" --predecessor "$HASH"
run_to_end $TAG-bad $TAG/redis:1
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 99 ] || fail "a refused container exited $rc"
grep -q "CAS refused.*wrong_measurement" "$T/$TAG-bad.log" || fail "docker logs lacks CAS's reason: $(cat "$T/$TAG-bad.log")"
grep -q "$PW" "$T/$TAG-bad.log" "$T/$TAG-tampered.log" && fail "a refused container printed the password"
echo "images redis: ok"
