#!/bin/bash
# nginx with Debian's default privilege drop (master as root, `user www-data;` workers) serves
# files from a protected volume: the worker, no longer root, still reaches the volume's backing
# store through the shield, and the volume's own ownership and modes apply to it (a root-owned
# file of mode 0600 in the volume is 403 for the worker, as on a real file system).
. "$(dirname "$0")/lib.sh"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] && command -v curl >/dev/null || { echo "nginx or curl not installed: skipped"; exit 77; }
[ "$(id -u)" = 0 ] && id www-data >/dev/null 2>&1 || { echo "needs root and a www-data user: skipped"; exit 77; }
setup "$@"
fail() { echo "FAIL: $*" >&2; [ -f "$T/error.log" ] && tail -20 "$T/error.log" >&2; exit 1; }
chmod 755 "$T"

PORT=$(free_port)
mkdir -p "$T/tmp"
cat > "$T/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
user www-data;
pid $T/nginx.pid;
error_log $T/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    client_body_temp_path $T/tmp/body;
    proxy_temp_path $T/tmp/proxy;
    fastcgi_temp_path $T/tmp/fastcgi;
    uwsgi_temp_path $T/tmp/uwsgi;
    scgi_temp_path $T/tmp/scgi;
    server {
        listen 127.0.0.1:$PORT;
        root $MNT/www;
    }
}
CONF

M=SCPMARK_nginx_drop
{ echo "<html>$M</html>"; } > "$T/index.html"
i=0; while [ $i -lt 5000 ]; do echo "$M line $i ----------------------------------------------"; i=$((i+1)); done > "$T/big.txt"
echo "secret $M" > "$T/secret.txt"
run sh -c "mkdir $MNT/www && cp $T/index.html $T/big.txt $T/secret.txt $MNT/www/ &&
           chmod 644 $MNT/www/index.html $MNT/www/big.txt && chmod 600 $MNT/www/secret.txt" ||
    fail "populate the volume"

NPID=
start() {
    "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- "$NGINX" -c "$T/nginx.conf" -e "$T/error.log" &
    NPID=$!
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/" && return 0
        kill -0 $NPID 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
stop() { kill -QUIT $NPID 2>/dev/null; wait $NPID 2>/dev/null; }
trap 'kill $NPID 2>/dev/null; rm -rf "$T"' EXIT

note "start nginx (user www-data)"
start || { cat "$T/error.log" >&2; fail "nginx did not start"; }
pgrep -u www-data -f "nginx: worker" >/dev/null || fail "no nginx worker runs as www-data"
code=$(curl -s -o "$T/got.html" -w '%{http_code}' "http://127.0.0.1:$PORT/index.html")
[ "$code" = 200 ] || fail "index.html: HTTP $code, expected 200"
cmp "$T/got.html" "$T/index.html" || fail "index.html differs"
code=$(curl -s -o "$T/got.txt" -w '%{http_code}' "http://127.0.0.1:$PORT/big.txt")
[ "$code" = 200 ] || fail "big.txt: HTTP $code, expected 200"
cmp "$T/got.txt" "$T/big.txt" || fail "big.txt differs"
code=$(curl -s -o "$T/got.secret" -w '%{http_code}' "http://127.0.0.1:$PORT/secret.txt")
[ "$code" = 403 ] || fail "secret.txt (0600, root): HTTP $code, expected 403"
grep -q "$M" "$T/got.secret" && fail "the 0600 root file's content was served"
stop
check_no_plaintext "$M"
echo PASS
