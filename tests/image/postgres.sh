#!/bin/bash
# tests/image/postgres.sh - the curated secure PostgreSQL (images/postgres) under docker run with a
# real CAS: Debian's postgresql-15 on scp-debian:bookworm, USER postgres, the data directory
# protected. The first start runs initdb with the superuser password CAS generates (injected,
# never on disk); psql on the host connects with it; a marker row is written; the Docker volume
# holds files but no plaintext of it nor the password, nothing reached the data directory in the
# container's layer, docker logs lacks the password; docker stop is prompt and clean (exit 0) and
# a new docker run has the row back; the image with one changed file in a layer (libc, the
# archive's digests recomputed, re-imported) and a session listing another measurement get nothing
# (non-zero exit, CAS's reason, no password in the logs).
# Usage: postgres.sh SCPCTL   (skipped, 77, without scp-debian:bookworm: images/base/build.sh)
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../cas/lib.sh" "$(realpath "$1")" none
SCPCTL=$(realpath "$1")
command -v psql >/dev/null || { echo "psql not installed: skipped"; exit 77; }
sh "$HERE/../../scripts/start-docker.sh" || fail "no Docker engine (scripts/start-docker.sh)"
docker image inspect scp-debian:bookworm >/dev/null 2>&1 ||
    { echo "no base image scp-debian:bookworm (images/base/build.sh): skipped"; exit 77; }
note() { echo "-- $*"; }
TAG=scptest-pg-$$
VOL=scptest-pg-vol-$$
BASE=${SCP_PG_BASE:-scp-postgres-base-image-runtime:bookworm}
SERVE=
docker_cleanup() {
    docker rm -f $TAG-c1 $TAG-c2 $TAG-bad $TAG-tampered >/dev/null 2>&1
    docker volume rm -f $VOL >/dev/null 2>&1
    docker rmi -f $TAG/pg-secure:1 $TAG/pg-secure:2 $TAG/pg-secure:tampered >/dev/null 2>&1
    [ -n "$SERVE" ] && kill "$SERVE" 2>/dev/null
    cleanup
}
trap docker_cleanup EXIT

note "the PostgreSQL base image (docker build images/postgres) and its secure image"
docker build -q --network host -t "$BASE" "$HERE/../../images/postgres" >/dev/null 2>"$T/dbuild.err" ||
    fail "docker build images/postgres: $(cat "$T/dbuild.err")"
"$SCPCTL" image build "$BASE" -t $TAG/pg-secure:1 --session pg --service postgres \
    --protect /var/lib/postgresql/data -o "$T/pg.tar" >"$T/build.out" 2>"$T/build.err" || fail "image build: $(cat "$T/build.err")"
docker load -i "$T/pg.tar" >/dev/null || fail "docker load"
M=$(awk '/^measurement /{print $2}' "$T/build.out")

A=$T/admin.pem
expect_rc 0 "$SCPCTL" cas identity --out "$A"
export SCP_IDENTITY=$A
start_cas --admin "$A"
expect_rc 0 "$SCPCTL" platform create-key "$T/p.key"
expect_rc 0 "$SCPCTL" platform enroll --name p --key "$T/p.key"
mkdir "$T/sock"
"$SCPCTL" platform serve --key "$T/p.key" --socket "$T/sock/attest.sock" >"$T/serve.log" 2>&1 &
SERVE=$!
for _ in $(seq 50); do [ -S "$T/sock/attest.sock" ] && break; sleep 0.1; done

note "the session from images/postgres/session.yaml"
PORT=$(freeport)
sed -e "s/@SESSION@/pg/g" -e "s/@MEASUREMENT@/$M/g" -e "s/@PORT@/$PORT/g" "$HERE/../../images/postgres/session.yaml" >"$T/pg.yaml"
expect_rc 0 "$SCPCTL" session create "$T/pg.yaml"
PW=$("$SCPCTL" session secret pg pgpass 2>/dev/null)
[ ${#PW} -eq 24 ] || fail "no generated password ($("$SCPCTL" session secret pg pgpass 2>&1))"
CA=$T/data/service-ca.crt
# TLS, verifying CAS's service CA and the name (the certificate's IP address)
sqlq() { PGPASSWORD=$PW psql "host=127.0.0.1 port=$PORT user=postgres dbname=postgres sslmode=verify-full sslrootcert=$CA" -At "$@"; }

RUNFLAGS=(--network host -e SCP_CAS="$SCP_CAS" -e SCP_CAS_PIN="$SCP_CAS_PIN" -v "$T/sock:/run/scp" -v "$VOL:/scp-volumes")
start() { # NAME
    docker run -d --name "$1" "${RUNFLAGS[@]}" $TAG/pg-secure:1 >/dev/null || fail "docker run"
    for _ in $(seq 600); do
        sqlq -c 'select 1' >/dev/null 2>&1 && return 0
        [ "$(docker inspect -f '{{.State.Running}}' "$1")" = true ] || fail "container exited: $(docker logs "$1" 2>&1 | tail -20)"
        sleep 0.1
    done
    fail "postgres did not answer: $(docker logs "$1" 2>&1 | tail -20)"
}

# refused NAME IMAGE WHAT: a container NAME of IMAGE that CAS refuses: it stops by itself, non-zero,
# within 60 s, with CAS's reason in docker logs and never the password, and no postgres answers.
refused() {
    local name=$1 image=$2 what=$3 rc
    docker run -d --name "$name" "${RUNFLAGS[@]}" "$image" >/dev/null || fail "docker run $name"
    rc=$(timeout 60 docker wait "$name") || rc=99
    docker logs "$name" >"$T/$name.log" 2>&1
    [ "$rc" != 0 ] && [ "$rc" != 99 ] || fail "$what: the container exited $rc (99: still running)"
    grep -q "CAS refused.*wrong_measurement" "$T/$name.log" || fail "$what: docker logs lacks CAS's reason: $(cat "$T/$name.log")"
    grep -q "$PW" "$T/$name.log" && fail "$what: the container printed the password"
    sqlq -c 'select 1' >/dev/null 2>&1 && fail "$what: a postgres answers"
    return 0
}

note "docker run: initdb on the first start, psql with CAS's password"
start $TAG-c1
MARK=scp-pg-marker-$$-$RANDOM
sqlq -c "create table marker(t text); insert into marker values ('$MARK')" >/dev/null || fail "create table"
[ "$(sqlq -c 'select t from marker')" = "$MARK" ] || fail "select"
PGPASSWORD=wrong psql "host=127.0.0.1 port=$PORT user=postgres dbname=postgres sslmode=verify-full sslrootcert=$CA" -At \
    -c 'select 1' >/dev/null 2>&1 && fail "a wrong password was accepted"
out=$(PGPASSWORD=$PW psql "host=127.0.0.1 port=$PORT user=postgres dbname=postgres sslmode=disable" -At -c 'select t from marker' 2>&1)
case $out in *"$MARK"*) fail "a plaintext client read the row" ;; *"closed the connection"*) ;; *) fail "no refusal of a plaintext client: $out" ;; esac
# the network shield speaks TLS for postgres (ssl=off): psql sees TLS 1.3, postgres does not
sqlq -c '\conninfo' | grep -q "SSL connection (protocol: TLSv1.3" || fail "the connection is not TLS: $(sqlq -c '\conninfo')"
[ "$(sqlq -c 'select ssl from pg_stat_ssl where pid = pg_backend_pid()')" = f ] || fail "postgres itself speaks TLS (not the shield)"
PGUID=$(docker run --rm --entrypoint /usr/bin/id "$BASE" -u postgres)
docker top $TAG-c1 -eo pid,uid,comm | grep -E " $PGUID +postgres\$" >/dev/null ||
    fail "postgres does not run as the image's USER (uid $PGUID): $(docker top $TAG-c1 -eo pid,uid,comm)"
sqlq -c checkpoint >/dev/null

note "the Docker volume holds no plaintext; docker stop is prompt and clean"
VD=$(docker volume inspect -f '{{.Mountpoint}}' $VOL)
# files, or the scans below would pass on an empty volume whatever postgres wrote elsewhere
[ "$(find "$VD" -type f -size +8k | wc -l)" -ge 3 ] || fail "the Docker volume holds no cluster: $(ls -R "$VD" | head -20)"
grep -rqa "$MARK" "$VD" && fail "the marker is in plaintext in the Docker volume"
grep -rqa "$PW" "$VD" && fail "the password is in plaintext in the Docker volume"
docker diff $TAG-c1 >"$T/diff"
grep -q "^[AC] /var/lib/postgresql/data/" "$T/diff" && fail "files reached the container's layer under the data directory: $(grep data/ "$T/diff" | head)"
docker logs $TAG-c1 2>&1 | grep -q "$PW" && fail "the password is in docker logs"
grep -rqa "PG_VERSION\|pg_wal" "$VD" && fail "file names of the cluster are in plaintext in the Docker volume"
t0=$(date +%s)
docker stop -t 30 $TAG-c1 >/dev/null || fail "docker stop"
[ $(($(date +%s) - t0)) -le 10 ] || fail "docker stop took $(($(date +%s) - t0)) s"
[ "$(docker inspect -f '{{.State.ExitCode}}' $TAG-c1)" = 0 ] || fail "exit code after docker stop: $(docker logs $TAG-c1 2>&1 | tail -5)"
# the session's chunk_size (8192, PostgreSQL's page) is the volume's: the key from the debug path
"$SCPCTL" platform attest --key "$T/p.key" --session pg --service postgres --measurement "$M" 2>/dev/null |
    python3 "$HERE/../cas/volkey.py" "$T/vk" >/dev/null || fail "no volume key from the debug path"
"$SCPCTL" volume info "$VD/pg/data" --key-file "$T/vk" >"$T/info" 2>&1 || fail "volume info: $(cat "$T/info")"
grep -q "^chunk size: *8192$" "$T/info" || fail "the volume's chunk size is not the session's 8192: $(cat "$T/info")"
rm -f "$T/vk"

note "docker run again: the row is back"
start $TAG-c2
[ "$(sqlq -c 'select t from marker')" = "$MARK" ] || fail "the row did not come back"
docker stop -t 30 $TAG-c2 >/dev/null

note "the image with one changed file in a layer (libc, re-imported): nothing released"
docker save $TAG/pg-secure:1 -o "$T/secure.tar" || fail "docker save"
python3 "$HERE/archive.py" tamper "$T/secure.tar" "$T/tampered.tar" usr/lib/x86_64-linux-gnu/libc.so.6 || fail "tamper"
rm -f "$T/secure.tar"
docker load -i "$T/tampered.tar" >"$T/load.out" || fail "docker load of the tampered image"
rm -f "$T/tampered.tar"
id=$(sed -n 's/^Loaded image ID: //p;s/^Loaded image: //p' "$T/load.out" | head -1)
docker tag "$id" $TAG/pg-secure:tampered || fail "docker tag: $(cat "$T/load.out")"
refused $TAG-tampered $TAG/pg-secure:tampered "the tampered image"

note "a session whose measurement is not the image's: nothing released"
"$SCPCTL" image build "$BASE" -t $TAG/pg-secure:2 --session pgwrong --service postgres \
    --protect /var/lib/postgresql/data -o "$T/pg2.tar" >/dev/null 2>"$T/build.err" || fail "image build: $(cat "$T/build.err")"
docker load -i "$T/pg2.tar" >/dev/null || fail "docker load"
sed -e "s|^name: .*|name: pgwrong|" -e "s|measurements: \[.*\]|measurements: [$(printf '%064d' 0)]|" "$T/pg.yaml" >"$T/wrong.yaml"
expect_rc 0 "$SCPCTL" session create "$T/wrong.yaml"
refused $TAG-bad $TAG/pg-secure:2 "a session naming another measurement"
echo "image postgres: ok"
