#!/bin/bash
# images/build.sh - build a curated secure image (images/README.md):
#   1. the base scp-debian:bookworm (images/base/build.sh, built once and cached),
#   2. the service's Debian image scp-NAME-base:bookworm from images/NAME/Dockerfile,
#   3. the secure image with `scpctl image build --protect` (images/NAME/image.conf: PROTECT),
#      loaded into the engine as TAG,
#   4. the session template images/NAME/session.yaml with the measurement, written to
#      OUT/NAME.session.yaml (create it with `scpctl session create`).
# Usage: images/build.sh NAME [-t TAG] [--session S] [--port PORT] [--out DIR] [--scpctl PATH]
# Prints the measurement on stdout's last line ("measurement HEX").
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
NAME=${1:?usage: images/build.sh NAME [-t TAG] [--session S] [--port PORT] [--out DIR]}
shift
[ -f "$HERE/$NAME/Dockerfile" ] || { echo "images/build.sh: no image '$NAME' (images/$NAME/Dockerfile)" >&2; exit 2; }
# shellcheck source=/dev/null
source "$HERE/$NAME/image.conf"
TAG=scp-$NAME:secure SESSION=$NAME OUT=. SCPCTL=${SCPCTL:-}
while [ $# -gt 0 ]; do
    case $1 in
    -t) TAG=$2; shift 2 ;;
    --session) SESSION=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --scpctl) SCPCTL=$2; shift 2 ;;
    *) echo "images/build.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
[ -n "$SCPCTL" ] || SCPCTL=$(command -v scpctl || echo "$HERE/../build/src/scpctl")
BASE=${SCP_SERVICE_BASE:-scp-$NAME-base:bookworm}
mkdir -p "$OUT"
t0=$(date +%s)
bash "$HERE/base/build.sh" "${SCP_IMAGE_CACHE:-$HERE/../build/images}"
t1=$(date +%s)
# --network host: the build's apt-get reaches Debian's mirror the way the host does
docker build -q --network host -t "$BASE" "$HERE/$NAME" >/dev/null
t2=$(date +%s)
protect=()
for p in $PROTECT; do protect+=(--protect "$p"); done
"$SCPCTL" image build "$BASE" -t "$TAG" --session "$SESSION" --service "$NAME" "${protect[@]}" \
    --template "$OUT/$NAME.generated.yaml" >"$OUT/$NAME.build.out"
t3=$(date +%s)
M=$(awk '/^measurement /{print $2}' "$OUT/$NAME.build.out")
[ ${#M} -eq 64 ] || { echo "images/build.sh: no measurement from scpctl image build" >&2; exit 1; }
# a line "@FILE:NAME@" is the file images/NAME/NAME, each of its lines indented as that line
awk -v dir="$HERE/$NAME" 'match($0, /^ *@FILE:[^@]+@$/) {
        ind = substr($0, 1, index($0, "@") - 1); f = substr($0, index($0, ":") + 1); sub(/@$/, "", f)
        while ((getline l < (dir "/" f)) > 0) print ind l
        close(dir "/" f); next
    } { print }' "$HERE/$NAME/session.yaml" |
    sed -e "s/@SESSION@/$SESSION/g" -e "s/@MEASUREMENT@/$M/g" -e "s/@PORT@/$PORT/g" >"$OUT/$NAME.session.yaml"
echo "images/build.sh: base $((t1 - t0)) s, $BASE $((t2 - t1)) s, secure image $TAG $((t3 - t2)) s" >&2
echo "session template $OUT/$NAME.session.yaml"
echo "measurement $M"
