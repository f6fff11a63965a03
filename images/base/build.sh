#!/bin/bash
# images/base/build.sh - the local base image scp-debian:bookworm that the curated images'
# Dockerfiles start FROM: a minimal Debian bookworm root made with
# `debootstrap --variant=minbase bookworm` from Debian's mirror and loaded with `docker import`
# (no registry other than Debian's mirror is reachable).
#
# Usage: images/base/build.sh [--force] [CACHE_DIR]
# Built once and kept: when the engine already has scp-debian:bookworm, nothing is done. The
# root's tar is also kept as CACHE_DIR/scp-debian-bookworm-YYYYMMDD.tar (default: the build
# directory's images/ cache, $SCP_IMAGE_CACHE or ./build/images), so a new engine (CI) imports it
# in seconds instead of running debootstrap again; a tar older than 30 days is made again (the
# mirror has security updates by then). The image carries the label org.scp.base.date.
# Needs root (debootstrap), debootstrap and a Docker engine.
set -euo pipefail
IMAGE=${SCP_BASE_IMAGE:-scp-debian:bookworm}
MIRROR=${SCP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
force=0
[ "${1:-}" = --force ] && { force=1; shift; }
CACHE=${1:-${SCP_IMAGE_CACHE:-build/images}}
say() { echo "images/base: $*" >&2; }

if [ $force = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "$IMAGE is there (built $(docker image inspect -f '{{index .Config.Labels "org.scp.base.date"}}' "$IMAGE"))"
    exit 0
fi
mkdir -p "$CACHE"
tarball=$(ls -1 "$CACHE"/scp-debian-bookworm-*.tar 2>/dev/null | sort | tail -1 || true)
if [ -n "$tarball" ] && [ $force = 0 ] && [ -n "$(find "$tarball" -mtime -30)" ]; then
    say "importing the cached root $tarball"
else
    command -v debootstrap >/dev/null || { say "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
    [ "$(id -u)" = 0 ] || { say "debootstrap needs root"; exit 1; }
    day=$(date -u +%Y%m%d)
    root=$(mktemp -d "${TMPDIR:-/tmp}/scp-debian-root.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    start=$(date +%s)
    say "debootstrap --variant=minbase bookworm from $MIRROR (a few minutes)"
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$root.log" 2>&1 ||
        { tail -20 "$root.log" >&2; rm -f "$root.log"; say "debootstrap failed"; exit 1; }
    rm -f "$root.log"
    # what an image does not need: the package cache and lists (Dockerfiles run apt-get update)
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
    tarball=$CACHE/scp-debian-bookworm-$day.tar
    tar -C "$root" --numeric-owner -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    find "$CACHE" -name 'scp-debian-bookworm-*.tar' ! -path "$tarball" -delete
    say "debootstrap took $(( $(date +%s) - start )) s"
fi
day=$(basename "$tarball" .tar)
day=${day##*-}
docker import -c "LABEL org.scp.base.date=$day" -c 'CMD ["/bin/bash"]' "$tarball" "$IMAGE" >/dev/null
say "$IMAGE imported from $tarball"
