#!/bin/sh
# Make sure a Docker engine answers on /var/run/docker.sock: start dockerd (Debian's docker.io)
# when none is running, and wait for it. Idempotent; used by .ci/run and the image tests.
# Exit 0 when the engine answers, 1 (with a message) when it cannot be had.
set -u
docker version >/dev/null 2>&1 && exit 0
command -v dockerd >/dev/null 2>&1 || { echo "start-docker: dockerd is not installed (apt-get install docker.io)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "start-docker: no Docker engine answers, and only root can start one" >&2; exit 1; }
LOG=${TMPDIR:-/tmp}/scp-dockerd.log
nohup dockerd >"$LOG" 2>&1 &
i=0
while [ $i -lt 60 ]; do
    docker version >/dev/null 2>&1 && exit 0
    sleep 0.5
    i=$((i + 1))
done
echo "start-docker: dockerd did not answer within 30 s; its log:" >&2
tail -20 "$LOG" >&2
exit 1
