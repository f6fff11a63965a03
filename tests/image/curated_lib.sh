# tests/image/curated_lib.sh - what the tests of the curated secure images (images/, tests/image/
# NAME.sh) share: a real CAS, a platform and the local attestation service; the image built by
# images/build.sh and its session created; docker run with the documented flags; the checks that
# a tampered image and a session naming another measurement get no secrets.
# Usage: source curated_lib.sh SCPCTL NAME   (sets T, CA, PORT, S (session), M, HASH, PW, TAG, VOL)
# PW is the session's secret $PWSECRET (default: password).
# Exits 77 (skipped) without a Docker engine or a way to make the base image.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCPCTL=$(realpath "$1")
CURATED=$2
source "$HERE/../cas/lib.sh" "$SCPCTL" none
sh "$HERE/../../scripts/start-docker.sh" || { echo "no Docker engine: skipped"; exit 77; }
docker image inspect scp-debian:bookworm >/dev/null 2>&1 || command -v debootstrap >/dev/null ||
    { echo "no base image and no debootstrap: skipped"; exit 77; }
note() { echo "-- $*"; }
TAG=scptest-images-$CURATED-$$
VOL=$TAG-vol
SERVE=
curated_cleanup() {
    docker rm -f $TAG-c1 $TAG-c2 $TAG-c3 $TAG-c4 $TAG-tampered $TAG-bad >/dev/null 2>&1
    docker volume rm -f $VOL >/dev/null 2>&1
    docker rmi -f $TAG/$CURATED:1 $TAG/$CURATED:tampered >/dev/null 2>&1
    [ -n "$SERVE" ] && kill "$SERVE" 2>/dev/null
    cleanup
}
trap curated_cleanup EXIT

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

note "images/build.sh $CURATED: base, Debian's package, the secure image, the session"
PORT=$(freeport)
S=$CURATED$$
bash "$HERE/../../images/build.sh" "$CURATED" -t $TAG/$CURATED:1 --session $S --port "$PORT" --out "$T" \
    --scpctl "$SCPCTL" >"$T/build.log" 2>&1 || fail "images/build.sh: $(tail -20 "$T/build.log")"
M=$(awk '/^measurement /{print $2}' "$T/build.log")
grep -q "measurements: \[$M\]" "$T/$CURATED.session.yaml" || fail "template: $(cat "$T/$CURATED.session.yaml")"
expect_rc 0 "$SCPCTL" session create "$T/$CURATED.session.yaml"
HASH=$(awk '/^hash /{print $2}' "$T/last.out")
expect_rc 0 "$SCPCTL" session secret $S "${PWSECRET:-password}"
PW=$(cat "$T/last.out")
[ ${#PW} -eq 32 ] || fail "no password from CAS"

# exactly the flags of docs/image.md: the default seccomp profile and capabilities
RUNFLAGS=(--network host -e SCP_CAS="$SCP_CAS" -e SCP_CAS_PIN="$SCP_CAS_PIN" -v "$T/sock:/run/scp" -v "$VOL:/scp-volumes")
# run_to_end NAME IMAGE: a container that must stop by itself; its exit code (99: still running after 60 s)
run_to_end() {
    docker run -d --name "$1" "${RUNFLAGS[@]}" "$2" >/dev/null || fail "docker run $1"
    local rc
    rc=$(timeout 60 docker wait "$1") || rc=99
    docker logs "$1" >"$T/$1.log" 2>&1
    [ "$rc" = 99 ] && docker rm -f "$1" >/dev/null
    return "$rc"
}
# start NAME READY-COMMAND...: docker run the secure image until READY-COMMAND succeeds (30 s,
# $START_SECS)
start() {
    local name=$1
    shift
    docker run -d --name "$name" "${RUNFLAGS[@]}" $TAG/$CURATED:1 >/dev/null || fail "docker run"
    local end=$((SECONDS + ${START_SECS:-30}))
    while [ $SECONDS -lt $end ]; do
        "$@" >/dev/null 2>&1 && return 0
        [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] || fail "container exited: $(docker logs "$name" 2>&1 | tail -20)"
        sleep 0.1
    done
    fail "$CURATED in the container did not answer over TLS: $(docker logs "$name" 2>&1 | tail -5)"
}
# no_plaintext MARK PATH...: the Docker volume holds files, none with MARK or the password; nothing
# reached PATH... (the protected directory, the injected configuration) in the container's layer
no_plaintext() {
    local mark=$1
    shift
    VD=$(docker volume inspect -f '{{.Mountpoint}}' $VOL)
    [ -n "$(find "$VD" -type f -size +0 | head -1)" ] || fail "the Docker volume is empty: $(ls -R "$VD")"
    grep -rqa "$mark" "$VD" && fail "the marker is in plaintext in the Docker volume"
    grep -rqa "$PW" "$VD" && fail "the password is in plaintext in the Docker volume"
    docker diff $TAG-c1 >"$T/diff"
    for p in "$@"; do
        grep -q "^[AC] $p" "$T/diff" && fail "files reached the container's layer under $p: $(cat "$T/diff")"
    done
    docker logs $TAG-c1 2>&1 | grep -q "$PW" && fail "the password is in docker logs"
    return 0
}
# stop NAME: docker stop, exit code 0
stop() {
    docker stop -t 20 "$1" >/dev/null || fail "docker stop"
    [ "$(docker inspect -f '{{.State.ExitCode}}' "$1")" = 0 ] || fail "exit code after docker stop: $(docker logs "$1" 2>&1 | tail -40)"
    docker rm "$1" >/dev/null
}
# refused_checks: the image with one changed file in a layer (libc in the base layer, the archive's
# digests recomputed, re-imported) and a session whose measurement is not the image's get no
# secrets: the container stops with CAS's reason, never prints the password.
refused_checks() {
    note "the image with one changed file in a layer (libc, re-imported): no secrets"
    docker save $TAG/$CURATED:1 -o "$T/secure.tar" || fail "docker save"
    python3 "$HERE/archive.py" tamper "$T/secure.tar" "$T/tampered.tar" usr/lib/x86_64-linux-gnu/libc.so.6 || fail "tamper"
    rm -f "$T/secure.tar"
    docker load -i "$T/tampered.tar" >"$T/load.out" || fail "docker load of the tampered image"
    rm -f "$T/tampered.tar"
    local id rc
    id=$(sed -n 's/^Loaded image ID: //p;s/^Loaded image: //p' "$T/load.out" | head -1)
    docker tag "$id" $TAG/$CURATED:tampered || fail "docker tag: $(cat "$T/load.out")"
    run_to_end $TAG-tampered $TAG/$CURATED:tampered
    rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 99 ] || fail "the tampered image's container exited $rc (99: still running)"
    grep -q "CAS refused.*wrong_measurement" "$T/$TAG-tampered.log" || fail "docker logs lacks CAS's reason: $(cat "$T/$TAG-tampered.log")"

    note "a session whose measurement is not the image's: no secrets"
    sed -e "s/measurements: \[.*\]/measurements: [$(printf '%064d' 0)]/" "$T/$CURATED.session.yaml" >"$T/wrong.yaml"
    expect_rc 0 "$SCPCTL" session update "$T/wrong.yaml" --predecessor "$HASH"
    run_to_end $TAG-bad $TAG/$CURATED:1
    rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 99 ] || fail "a refused container exited $rc"
    grep -q "CAS refused.*wrong_measurement" "$T/$TAG-bad.log" || fail "docker logs lacks CAS's reason: $(cat "$T/$TAG-bad.log")"
    grep -q "$PW" "$T/$TAG-bad.log" "$T/$TAG-tampered.log" && fail "a refused container printed the password"
    return 0
}
