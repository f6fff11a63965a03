#!/bin/bash
# deploy/swarm/build.sh [BUILD_DIR] - the two images of CAS on PostgreSQL for a swarm
# (deploy/swarm/README.md): scp-cas:swarm (scpctl and scpctl-cas from BUILD_DIR, default build)
# and scp-cas-db:swarm (Debian's PostgreSQL 15), both on the local bookworm base, which
# images/base/build.sh makes if the engine lacks it. Prints the two tags.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
B=$(realpath "${1:-$HERE/../../build}")
for f in scpctl scpctl-cas; do
    [ -x "$B/src/$f" ] || { echo "build.sh: $B/src/$f not found (build first: ninja -C build)" >&2; exit 1; }
done
docker image inspect scp-debian:bookworm >/dev/null 2>&1 || bash "$HERE/../../images/base/build.sh" "$B/images" >&2
CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
cp "$HERE/cas/Dockerfile" "$CTX/"
mkdir "$CTX/bin"
cp "$B/src/scpctl" "$B/src/scpctl-cas" "$CTX/bin/"
docker build -q --network host -t scp-cas:swarm "$CTX" >/dev/null
docker build -q --network host -t scp-cas-db:swarm "$HERE/cas-db" >/dev/null
echo scp-cas:swarm
echo scp-cas-db:swarm
