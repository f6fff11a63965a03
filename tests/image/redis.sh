#!/bin/bash
# tests/image/redis.sh - the curated secure redis (images/redis, images/README.md) under
# `docker run` with a real CAS: built from Debian's redis-server package on the local bookworm
# base (images/build.sh), its session from images/redis/session.yaml (a password CAS generates
# in the injected configuration, a certificate CAS issues for the network shield, the data
# directory a protected volume). redis-cli --tls, verifying CAS's service CA, writes and reads;
# a plaintext client gets nothing; the configuration is the tuned one (AOF, everysec); the
# Docker volume holds no plaintext marker and nothing reached the image's data directory or
# /etc/redis; after docker stop and docker run the data is back; an image with a changed file in
# a layer (re-imported) and a session listing another measurement get no secrets
# (curated_lib.sh). Usage: redis.sh SCPCTL. Exit 77 (skipped) without Docker or redis-cli.
command -v redis-cli >/dev/null || { echo "redis-cli not installed: skipped"; exit 77; }
source "$(dirname "$0")/curated_lib.sh" "$1" redis
cli() { redis-cli --tls --cacert "$CA" -h 127.0.0.1 -p "$PORT" --no-auth-warning -a "$PW" "$@"; }
ping() { [ "$(cli ping)" = PONG ]; }

note "docker run: attested; redis-cli --tls (CAS's service CA) writes and reads"
start $TAG-c1 ping
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
no_plaintext "$MARK" /var/lib/redis/ /etc/redis/

note "docker stop, docker run again: the data is back"
stop $TAG-c1
start $TAG-c2 ping
[ "$(cli get k)" = "$MARK" ] || fail "the data did not come back"
stop $TAG-c2

note "identity: instance: the container makes its own key; CAS certifies it for the image's measurement"
# update_session FROM TO SED CHECK: the session FROM edited by SED, which must then contain CHECK
update_session() {
    sed -e "$3" "$1" >"$2"
    grep -q "$4" "$2" || fail "cannot make the session ($4): $(cat "$2")"
    expect_rc 0 "$SCPCTL" session update "$2" --predecessor "$HASH"
    HASH=$(awk '/^hash /{print $2}' "$T/last.out")
}
update_session "$T/$CURATED.session.yaml" "$T/inst.yaml" 's/^      certificate: tls$/      certificate: tls\n      identity: instance/' 'identity: instance'
start $TAG-c3 ping
openssl s_client -connect 127.0.0.1:"$PORT" -CAfile "$CA" </dev/null 2>/dev/null |
    openssl x509 -noout -ext subjectAltName >"$T/san.txt" 2>&1 || fail "no certificate: $(cat "$T/san.txt")"
grep -q "URI:scp-measurement:$M" "$T/san.txt" && grep -q "URI:scp-service:redis" "$T/san.txt" ||
    fail "the served certificate is not the per-instance one for measurement $M: $(cat "$T/san.txt")"
grep -q "evidence for $S/redis, measurement $M, with an instance key" "$T/serve.log" ||
    fail "the attestation service's log: $(tail -3 "$T/serve.log")"
[ "$(cli get k)" = "$MARK" ] || fail "the data is not there under the per-instance identity"
stop $TAG-c3

note "console sealed: docker logs holds sealed lines only (Docker's log keeps text); scpctl logs gives redis's log back"
update_session "$T/inst.yaml" "$T/con.yaml" 's/^    volumes: \[data\]$/    volumes: [data]\n    console: {stdout: sealed, stderr: sealed}/' 'console: {stdout: sealed'
start $TAG-c4 ping
[ "$(cli get k)" = "$MARK" ] || fail "the data is not there with the sealed console"
docker stop -t 20 $TAG-c4 >/dev/null || fail "docker stop"
docker logs $TAG-c4 >"$T/c4.out" 2>"$T/c4.err" || fail "docker logs"
[ "$(docker inspect -f '{{.State.ExitCode}}' $TAG-c4)" = 0 ] || fail "exit code after docker stop: $(tail -5 "$T/c4.err")"
grep -aq 'Ready to accept connections' "$T/c4.out" "$T/c4.err" && fail "redis's log is in plaintext in docker logs"
grep -q '^SCR1:' "$T/c4.out" || fail "no sealed record line on docker logs' stdout: $(head -c 300 "$T/c4.out")"
grep -av '^SCR1:' "$T/c4.out" | grep -q . && fail "docker logs' stdout holds lines that are not sealed records"
expect_rc 0 "$SCPCTL" logs $S redis "$T/c4.out"
grep -q 'Ready to accept connections' "$T/last.out" || fail "scpctl logs lacks redis's start: $(head -5 "$T/last.out")"
grep -q 'ready to exit' "$T/last.out" || fail "scpctl logs lacks redis's shutdown (SIGTERM): $(tail -3 "$T/last.out")"
expect_rc 0 "$SCPCTL" logs $S redis "$T/c4.err" # stderr: the streams' header and end, nothing written
# a changed character in a record line, and a deleted line: reported, exit 3
awk 'NR == 3 { $0 = substr($0, 1, 40) (substr($0, 41, 1) == "A" ? "B" : "A") substr($0, 42) } { print }' "$T/c4.out" >"$T/c4.bad"
expect_err 3 'does not authenticate' "$SCPCTL" logs $S redis "$T/c4.bad"
sed -e '3d' "$T/c4.out" >"$T/c4.cut"
expect_err 3 'missing' "$SCPCTL" logs $S redis "$T/c4.cut"
docker rm -f $TAG-c4 >/dev/null 2>&1

refused_checks
echo "images redis: ok"
