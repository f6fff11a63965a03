#!/bin/bash
# tests/image/docker_run.sh - docker run of a secure image, end to end with a real CAS
# (docs/image.md "Running under Docker"): redis-server's secure image, built with /data
# protected, runs with Docker's default seccomp profile and capabilities; its entry attests
# through the local attestation service, gets its command (a password CAS generated) and the
# volume key from CAS; the named Docker volume holds no plaintext and the image's /data stays
# empty (the shield serves it, nothing reaches the container's layer); after docker stop and a new
# docker run the data is back (the tag CAS holds is checked); a session that lists another
# measurement gets nothing (non-zero exit, CAS's reason in docker logs); no SCP_CAS: a clear error.
# Usage: docker_run.sh SCPCTL
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../cas/lib.sh" "$(realpath "$1")" none
SCPCTL=$(realpath "$1")
command -v redis-cli >/dev/null || { echo "redis-cli not installed: skipped"; exit 77; }
sh "$HERE/../../scripts/start-docker.sh" || fail "no Docker engine (scripts/start-docker.sh)"
note() { echo "-- $*"; }
TAG=scptest-run-$$
VOL=scptest-run-vol-$$
SERVE=
docker_cleanup() {
    docker rm -f $TAG-c1 $TAG-c2 $TAG-old $TAG-bad $TAG-nocas $TAG-sh $TAG-sht $TAG-tamper >/dev/null 2>&1
    docker volume rm -f $VOL >/dev/null 2>&1
    docker rmi -f $TAG/redis-base:1 $TAG/redis-secure:1 $TAG/redis-secure:2 $TAG/sh-secure:1 $TAG/sh-secure:2 $TAG/sh-tampered:1 >/dev/null 2>&1
    [ -n "$SERVE" ] && kill "$SERVE" 2>/dev/null
    cleanup
}
trap docker_cleanup EXIT

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

note "the base image (redis-server, sh, sleep and their libraries; USER redis) and its secure image, /data protected"
R=$T/root
mkdir -p "$R/usr/bin" "$R/bin" "$R/data" "$R/etc/redis" "$R/tmp"
CONF_MARK=scp-conf-marker-$$-$RANDOM
printf '# %s\nmaxmemory-policy allkeys-lru\n' "$CONF_MARK" >"$R/etc/redis/redis.conf"
cp /usr/bin/redis-server "$R/usr/bin/"
cp /bin/dash "$R/bin/sh"
cp /bin/sleep "$R/bin/"
for l in $(ldd /usr/bin/redis-server /bin/dash /bin/sleep | awk '$2 == "=>" {print $3} $1 ~ /^\/.*[^:]$/ {print $1}' | sort -u); do
    mkdir -p "$R$(dirname "$l")"
    cp -L "$l" "$R$l"
done
printf 'root:x:0:0::/:/bin/sh\nredis:x:999:998::/data:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\nredis:x:998:\nscpextra:x:997:redis\n' >"$R/etc/group"
tar -C "$R" -c . | docker import -c 'ENTRYPOINT ["/usr/bin/redis-server"]' -c 'WORKDIR /data' -c 'USER redis' - \
    $TAG/redis-base:1 >/dev/null || fail "docker import"
docker save $TAG/redis-base:1 -o "$T/base.tar" || fail "docker save"
build() { # TAG SESSION [BASE [PROTECT [OPTIONS...]]] (PROTECT: /data by default, - for none)
    local tag=$1 ses=$2 base=${3:-$T/base.tar} prot=${4:-/data}
    shift $(($# < 4 ? $# : 4))
    [ "$prot" != - ] && set -- --protect "$prot" "$@"
    "$SCPCTL" image build "$base" -t "$tag" --session "$ses" --service redis "$@" \
        -o "$T/$ses.tar" >"$T/$ses.out" 2>"$T/$ses.err" || fail "image build: $(cat "$T/$ses.err")"
    docker load -i "$T/$ses.tar" >/dev/null || fail "docker load"
}
build $TAG/redis-secure:1 db "$T/base.tar" /data --protect /etc/redis
grep -qa "$CONF_MARK" "$T/db.tar" && fail "the secure image holds /etc/redis/redis.conf in plaintext"
M=$(awk '/^measurement /{print $2}' "$T/db.out")

note "the session from the generated template, with a password CAS generates in the command"
PORT=$(freeport)
sed -e "s|^    command: .*|    command: [redis-server, /etc/redis/redis.conf, --port, \"$PORT\", --bind, 127.0.0.1, --dir, /data, --appendonly, \"yes\", --appendfsync, always, --save, \"\", --requirepass, \"\$\$SCP::pw\$\$\"]|" \
    "$T/db.tar.session.yaml" >"$T/db.yaml"
grep -q '^secrets:' "$T/db.yaml" || fail "the template lacks the seed's secret: $(cat "$T/db.yaml")"
printf '  - {name: pw, kind: ascii, size: 32}\n' >>"$T/db.yaml"
grep -q "measurements: \[$M\]" "$T/db.yaml" || fail "template: $(cat "$T/db.yaml")"
expect_rc 0 "$SCPCTL" session create "$T/db.yaml"
config() { "$SCPCTL" platform attest --key "$T/p.key" --session db --service redis --measurement "$M" 2>/dev/null; }
PW=$(config | python3 -c 'import json,sys; c=json.load(sys.stdin)["command"]; print(c[c.index("--requirepass")+1])')
[ ${#PW} -eq 32 ] || fail "no password in the configuration"
cli() { redis-cli -p "$PORT" --no-auth-warning -a "$PW" "$@"; }

# exactly these flags; default seccomp profile and capabilities
RUNFLAGS=(--network host -e SCP_CAS="$SCP_CAS" -e SCP_CAS_PIN="$SCP_CAS_PIN" -v "$T/sock:/run/scp" -v "$VOL:/scp-volumes")
# run_to_end NAME [DOCKER-RUN-ARGS...] IMAGE: a container that must stop by itself; its exit code
# (a container still running after 60 s, i.e. a service that was let start, is 99)
run_to_end() {
    local name=$1
    shift
    docker run -d --name "$name" "$@" >/dev/null || fail "docker run $name"
    local rc
    rc=$(timeout 60 docker wait "$name") || rc=99
    docker logs "$name" >"$T/$name.log" 2>&1
    [ "$rc" = 99 ] && docker rm -f "$name" >/dev/null
    return "$rc"
}
start() { # NAME
    docker run -d --name "$1" "${RUNFLAGS[@]}" $TAG/redis-secure:1 >/dev/null || fail "docker run"
    for _ in $(seq 150); do
        [ "$(cli ping 2>/dev/null)" = PONG ] && return 0
        [ "$(docker inspect -f '{{.State.Running}}' "$1")" = true ] || fail "container exited: $(docker logs "$1" 2>&1 | tail -5)"
        sleep 0.1
    done
    fail "redis in the container did not answer: $(docker logs "$1" 2>&1 | tail -5)"
}

note "docker run: attested, redis-cli writes and reads"
start $TAG-c1
MARK=scp-docker-marker-$$-$RANDOM
[ "$(cli set k "$MARK")" = OK ] || fail "SET"
[ "$(cli get k)" = "$MARK" ] || fail "GET"
redis-cli -p "$PORT" get k 2>&1 | grep -q NOAUTH || fail "redis answers without the password CAS generated"

note "the image's USER: redis-server runs as redis (uid 999, gid 998, group scpextra), the entry as root"
docker top $TAG-c1 -eo pid,uid,gid,comm >"$T/top"
grep -Eq ' 999 +998 +redis-server' "$T/top" || fail "redis-server does not run as the image's USER redis: $(cat "$T/top")"
RPID=$(docker top $TAG-c1 -eo pid,comm | awk '$2=="redis-server"{print $1}')
grep -Eq '^Groups:.*\b997\b' "/proc/$RPID/status" || fail "no supplementary group scpextra: $(grep Groups "/proc/$RPID/status")"
grep -Eq '^ *[0-9]+ +0 +0 ' "$T/top" || fail "the entry does not run as root: $(cat "$T/top")"
[ "$(cli bgsave)" = "Background saving started" ] || fail "BGSAVE as redis"

note "the configuration sealed at build: redis read it from its protected volume"
[ "$(cli config get maxmemory-policy | tail -1)" = allkeys-lru ] || fail "redis did not read the sealed /etc/redis/redis.conf"

note "the Docker volume holds no plaintext; nothing reached the image's /data (the shield serves it)"
VD=$(docker volume inspect -f '{{.Mountpoint}}' $VOL)
[ -n "$(find "$VD" -type f | head -1)" ] || fail "the Docker volume is empty: $(ls -R "$VD")"
grep -rqa "$MARK" "$VD" && fail "the marker is in plaintext in the Docker volume"
grep -rqa "$CONF_MARK" "$VD" && fail "the sealed configuration is in plaintext in the Docker volume"
docker diff $TAG-c1 >"$T/diff"
grep -q '^[AC] /data/' "$T/diff" && fail "files reached the container's /data: $(cat "$T/diff")"
G1=$(config | python3 -c 'import json,sys; t=json.load(sys.stdin)["volumes"][0]["expected_tag"]; print(int(t[:16],16) if t else -1)')
[ "$G1" -ge 1 ] || fail "CAS holds no tag for the volume ($G1)"

note "docker stop, docker run again: the data is back"
t0=$(date +%s)
docker stop -t 30 $TAG-c1 >/dev/null || fail "docker stop"
[ $(($(date +%s) - t0)) -le 8 ] || fail "docker stop took $(($(date +%s) - t0)) s (SIGTERM not forwarded?)"
[ "$(docker inspect -f '{{.State.ExitCode}}' $TAG-c1)" = 0 ] || fail "exit code after docker stop: $(docker logs $TAG-c1 2>&1 | tail -5)"
docker rm $TAG-c1 >/dev/null
cp -a "$VD" "$T/old-volume"
start $TAG-c2
[ "$(cli get k)" = "$MARK" ] || fail "the data did not come back"
[ "$(cli set k2 later)" = OK ] || fail "SET after the restart"
docker stop -t 20 $TAG-c2 >/dev/null

note "the Docker volume put back as it was before the last start (a rollback): refused"
rm -rf "$VD" && cp -a "$T/old-volume" "$VD" || fail "cannot roll the volume back"
run_to_end $TAG-old "${RUNFLAGS[@]}" $TAG/redis-secure:1
rc=$?
[ $rc -eq 3 ] && grep -q "rolled back" "$T/$TAG-old.log" || fail "a rolled-back volume: exit $rc: $(cat "$T/$TAG-old.log")"

note "a session whose measurement is not the image's: nothing released, non-zero exit, CAS's reason"
build $TAG/redis-secure:2 wrong
sed -e "s|^name: .*|name: wrong|" -e "s|measurements: \[.*\]|measurements: [$(printf '%064d' 0)]|" \
    "$T/wrong.tar.session.yaml" >"$T/wrong.yaml"
expect_rc 0 "$SCPCTL" session create "$T/wrong.yaml"
run_to_end $TAG-bad "${RUNFLAGS[@]}" $TAG/redis-secure:2
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 99 ] || fail "a refused container exited $rc (99: still running)"
grep -q "CAS refused.*wrong_measurement" "$T/$TAG-bad.log" || fail "docker logs lacks CAS's reason: $(cat "$T/$TAG-bad.log")"

note "PID 1: orphans reaped; the whole /scp/trusted under the shield (sleep and redis-server run from sh)"
# a secure image of sh from the same files: the program measured is sh; sleep and redis-server are
# only in /scp/trusted. An orphan (the inner sh's background sleep) is re-parented to the entry.
# The image's Env (ENV lines) reaches the program beneath the policy's environment, which wins
# for a name both set; it is in image.json, so another value is another measurement.
shimg() { # TAG ENV...: the sh image with these ENV lines, saved as $T/TAG.tar
    local t=$1 c=(-c 'ENTRYPOINT ["/bin/sh"]')
    shift
    for e in "$@"; do c+=(-c "ENV $e"); done
    tar -C "$R" -c . | docker import "${c[@]}" - $TAG/sh-base:$t >/dev/null || fail "docker import sh"
    docker save $TAG/sh-base:$t -o "$T/sh-base-$t.tar" || fail "docker save sh"
    docker rmi $TAG/sh-base:$t >/dev/null
}
shimg 1 'SCP_IMG_VAR="from the image"' SCP_IMG_OVER=image
build $TAG/sh-secure:1 shs "$T/sh-base-1.tar" -
shimg 2 'SCP_IMG_VAR="from another image"' SCP_IMG_OVER=image
"$SCPCTL" image build "$T/sh-base-2.tar" -t $TAG/sh-secure:2 --session shs --service redis -o "$T/sh2.tar" \
    >"$T/sh2.out" 2>"$T/sh2.err" || fail "image build: $(cat "$T/sh2.err")"
[ "$(awk '/^measurement /{print $2}' "$T/sh2.out")" != "$(awk '/^measurement /{print $2}' "$T/shs.out")" ] ||
    fail "an image with another Env value has the same measurement"
shimg 3 LD_PRELOAD=/tmp/x.so
expect_rc 1 "$SCPCTL" image build "$T/sh-base-3.tar" -t $TAG/sh-secure:3 --session shs --service redis -o "$T/sh3.tar"
grep -q "the image's Env sets LD_PRELOAD" "$T/last.err" || fail "an image whose Env sets LD_PRELOAD: $(cat "$T/last.err")"
SCRIPT='sh -c "sleep 0.2 &"; sleep 1; redis-server --version; echo "seed=[$SCP_SEED_x]"; echo "env=[$SCP_IMG_VAR][$SCP_IMG_OVER]"; echo scp-started; trap "echo scp-term; exit 7" TERM; sleep 1000 & wait'
# an SCP_SEED_ variable of the policy is the entry's: the program never sees it
sed -e "s|^    command: .*|    command: [/bin/sh, -c, '${SCRIPT//&/\\&}']\n    environment: {SCP_SEED_x: \"$(printf '%064d' 7)\", SCP_IMG_OVER: policy}|" \
    "$T/shs.tar.session.yaml" >"$T/shs.yaml"
expect_rc 0 "$SCPCTL" session create "$T/shs.yaml"
waitlog() { # NAME PATTERN: until docker logs NAME shows PATTERN or the container stops
    for _ in $(seq 150); do
        docker logs "$1" 2>&1 | grep -q "$2" && return 0
        [ "$(docker inspect -f '{{.State.Running}}' "$1")" = true ] || break
        sleep 0.1
    done
    return 1
}
docker run -d --name $TAG-sh "${RUNFLAGS[@]}" $TAG/sh-secure:1 >/dev/null || fail "docker run sh"
waitlog $TAG-sh scp-started || fail "the sh service did not start: $(docker logs $TAG-sh 2>&1 | tail -5)"
docker logs $TAG-sh >"$T/sh.log" 2>&1
grep -q "Redis server v=" "$T/sh.log" || fail "redis-server (listed in /scp/trusted) did not run: $(cat "$T/sh.log")"
grep -q "refused" "$T/sh.log" && fail "the shield refused a file of the image: $(cat "$T/sh.log")"
grep -q '^seed=\[\]$' "$T/sh.log" || fail "the program saw an SCP_SEED_ variable: $(cat "$T/sh.log")"
grep -q '^env=\[from the image\]\[policy\]$' "$T/sh.log" ||
    fail "the image's Env did not reach the program beneath the policy's: $(grep '^env=' "$T/sh.log")"
# the entry's children as the host sees them (docker top reads the cgroup, which zombies have left)
EPID=$(docker inspect -f '{{.State.Pid}}' $TAG-sh)
for c in $(cat /proc/"$EPID"/task/*/children); do
    grep -q '^State:.*Z' "/proc/$c/status" 2>/dev/null && fail "a zombie under the entry (PID 1 does not reap): $(grep Name "/proc/$c/status")"
done
t0=$(date +%s)
docker stop -t 30 $TAG-sh >/dev/null || fail "docker stop sh"
[ $(($(date +%s) - t0)) -le 8 ] || fail "docker stop of sh took $(($(date +%s) - t0)) s"
[ "$(docker inspect -f '{{.State.ExitCode}}' $TAG-sh)" = 7 ] || fail "the service's exit code (7) was not propagated: $(docker inspect -f "{{.State.ExitCode}}" $TAG-sh): $(docker logs $TAG-sh 2>&1)"
docker logs $TAG-sh 2>&1 | grep -q scp-term || fail "the service did not get SIGTERM"

note "a library of the image replaced in a new layer (same measurement): redis-server does not run with it"
LZF=$(ldd /usr/bin/redis-server | grep -o '/[^ ]*liblzf[^ ]*')
cp -L "$LZF" "$T/liblzf" && printf 'tampered' >>"$T/liblzf"
docker create --name $TAG-tamper $TAG/sh-secure:1 >/dev/null || fail "docker create"
docker cp "$T/liblzf" "$TAG-tamper:$LZF" || fail "docker cp"
docker commit $TAG-tamper $TAG/sh-tampered:1 >/dev/null || fail "docker commit"
docker rm $TAG-tamper >/dev/null
docker run -d --name $TAG-sht "${RUNFLAGS[@]}" $TAG/sh-tampered:1 >/dev/null || fail "docker run tampered"
waitlog $TAG-sht scp-started
docker stop -t 30 $TAG-sht >/dev/null 2>&1
docker logs $TAG-sht >"$T/$TAG-sht.log" 2>&1
grep -q "Redis server v=" "$T/$TAG-sht.log" && fail "redis-server ran with a tampered library: $(cat "$T/$TAG-sht.log")"
grep -q "liblzf.*differs from the measured trusted-file manifest" "$T/$TAG-sht.log" ||
    fail "no refusal naming the tampered library: $(cat "$T/$TAG-sht.log")"

note "no SCP_CAS: a clear error"
run_to_end $TAG-nocas -v "$T/sock:/run/scp" $TAG/redis-secure:1
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 99 ] || fail "a container without SCP_CAS exited $rc"
grep -q "SCP_CAS is not set" "$T/$TAG-nocas.log" || fail "no clear error: $(cat "$T/$TAG-nocas.log")"
echo "image docker run: ok"
