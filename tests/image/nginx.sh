#!/bin/bash
# tests/image/nginx.sh - the curated secure nginx (images/nginx, images/README.md) under
# `docker run` with a real CAS: Debian's nginx on the local bookworm base, its configuration and
# password file injected by CAS, its port HTTPS through the network shield (certificate from
# CAS), the content directory /srv/www a protected volume. curl over HTTPS (CAS's service CA)
# uploads pages with WebDAV PUT and the password CAS generated (without it: 401) and reads them
# back, a 1 MiB file too (nginx's sendfile from the protected volume into the TLS connection);
# plain HTTP gets no page; the Docker volume holds no plaintext marker and nothing reached
# /srv/www or the configuration in the container's layer; after docker stop and docker run the
# pages are back; a tampered image and a wrong measurement get no secrets (curated_lib.sh).
# nginx runs with Debian's `user www-data;`: the test checks the workers' uid (docker top).
# Usage: nginx.sh SCPCTL. Exit 77 (skipped) without Docker or curl.
command -v curl >/dev/null || { echo "curl not installed: skipped"; exit 77; }
source "$(dirname "$0")/curated_lib.sh" "$1" nginx
URL=https://127.0.0.1:$PORT
get() { curl -sS --cacert "$CA" --max-time 20 "$@"; }
up() { [ "$(get -o /dev/null -w '%{http_code}' "$URL/" 2>/dev/null)" != 000 ]; }

note "docker run: attested; curl over HTTPS uploads with the password CAS generated and reads back"
start $TAG-c1 up
MARK=scp-images-nginx-marker-$$-$RANDOM
echo "<h1>$MARK</h1>" >"$T/index.html"
{ head -c 524288 /dev/urandom; echo "$MARK"; head -c 524288 /dev/urandom; } >"$T/big.bin"
code=$(get -o /dev/null -w '%{http_code}' -T "$T/index.html" "$URL/site/index.html")
[ "$code" = 401 ] || fail "PUT without the password: HTTP $code"
code=$(get -o /dev/null -w '%{http_code}' -u "scp:wrong" -T "$T/index.html" "$URL/site/index.html")
[ "$code" = 401 ] || fail "PUT with a wrong password: HTTP $code"
for f in index.html big.bin; do
    code=$(get -o /dev/null -w '%{http_code}' -u "scp:$PW" -T "$T/$f" "$URL/site/$f")
    [ "$code" = 201 ] || fail "PUT $f: HTTP $code: $(docker logs $TAG-c1 2>&1 | tail -5)"
done
[ "$(get "$URL/site/index.html")" = "<h1>$MARK</h1>" ] || fail "GET index.html: $(get "$URL/site/index.html")"
get "$URL/site/big.bin" -o "$T/big.got" || fail "GET big.bin"
cmp -s "$T/big.bin" "$T/big.got" || fail "GET big.bin: other bytes ($(stat -c %s "$T/big.got") of $(stat -c %s "$T/big.bin"))"
[ "$(get -o /dev/null -w '%{http_code}' "$URL/.tmp/")" = 403 ] || fail "the upload directory is served"
# Debian's `user www-data;`: the master stays root, the workers (which wrote the uploads) are www-data
WWW=$(docker run --rm --entrypoint /usr/bin/id $TAG/$CURATED:1 -u www-data)
docker top $TAG-c1 -eo pid,uid,args >"$T/top"
grep -Eq "^ *[0-9]+ +$WWW +nginx: worker" "$T/top" || fail "no nginx worker runs as www-data (uid $WWW): $(cat "$T/top")"
grep -E "nginx: worker" "$T/top" | grep -Evq "^ *[0-9]+ +$WWW " && fail "an nginx worker does not run as www-data: $(cat "$T/top")"
grep -Eq "^ *[0-9]+ +0 +nginx: master" "$T/top" || fail "the nginx master does not run as root: $(cat "$T/top")"
out=$(curl -s --max-time 10 "http://127.0.0.1:$PORT/site/index.html" 2>&1)
case $out in *"$MARK"*) fail "plain HTTP got the page" ;; esac

note "the Docker volume holds no plaintext; nothing reached /srv/www or the configuration"
no_plaintext "$MARK" /srv/www/ /etc/nginx/scp

note "docker stop, docker run again: the pages are back"
stop $TAG-c1
start $TAG-c2 up
[ "$(get "$URL/site/index.html")" = "<h1>$MARK</h1>" ] || fail "the page did not come back"
get "$URL/site/big.bin" | cmp -s - "$T/big.bin" || fail "big.bin did not come back"
stop $TAG-c2

refused_checks
echo "images nginx: ok"
