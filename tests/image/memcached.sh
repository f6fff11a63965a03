#!/bin/bash
# tests/image/memcached.sh - the curated secure memcached (images/memcached, images/README.md)
# under `docker run` with a real CAS: Debian's memcached on the local bookworm base, ASCII
# authentication with a password CAS generates (the file injected by CAS), its port TLS through
# the network shield (certificate from CAS), UDP off. A TLS client that verifies CAS's service CA
# (mc.py: Debian's memcached clients speak no TLS) authenticates, sets and gets; without the
# password: refused; a plaintext client gets nothing; the container's filesystem (docker
# export) holds neither the marker nor the password (memcached keeps items in memory, no volume);
# a tampered image and a wrong measurement get no secrets (curated_lib.sh).
# Usage: memcached.sh SCPCTL. Exit 77 (skipped) without Docker.
source "$(dirname "$0")/curated_lib.sh" "$1" memcached
mc() { python3 "$HERE/mc.py" 127.0.0.1 "$PORT" "$CA" "$@"; }
up() { [ "$(mc "scp:$PW" get none 2>/dev/null | tail -1)" = END ]; }

note "docker run: attested; a TLS client (CAS's service CA) authenticates, sets and gets"
start $TAG-c1 up
MARK=scp-images-memcached-marker-$$-$RANDOM
out=$(mc "scp:$PW" set k "$MARK" get k) || fail "mc: $out"
[ "$out" = "$(printf 'STORED\nSTORED\n%s' "$MARK")" ] || fail "set/get: $out"
out=$(mc - get k 2>&1)
case $out in *"$MARK"*) fail "read without the password: $out" ;; *"CLIENT_ERROR unauthenticated"*) ;; *) fail "no refusal without the password: $out" ;; esac
out=$(mc "scp:wrong" get k 2>&1)
case $out in *"$MARK"*) fail "read with a wrong password: $out" ;; esac
out=$(timeout 10 python3 "$HERE/mc.py" 127.0.0.1 "$PORT" - - plain 2>&1)
case $out in *"$MARK"* | *END*) fail "a plaintext client got an answer: $out" ;; esac

note "the container's filesystem holds neither the marker nor the password"
docker export $TAG-c1 | grep -aq -e "$MARK" -e "$PW" && fail "the marker or the password is in the container's filesystem"
docker logs $TAG-c1 2>&1 | grep -q "$PW" && fail "the password is in docker logs"
stop $TAG-c1

refused_checks
echo "images memcached: ok"
