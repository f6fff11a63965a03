#!/bin/bash
# nginx (Debian's nginx-light) with sendfile on serves static files from a protected
# directory (master + worker: the worker is a fork); the client receives the plaintext,
# the backing dir holds none of it, and a tampered file is not served.
. "$(dirname "$0")/lib.sh"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] && command -v curl >/dev/null || { echo "nginx or curl not installed: skipped"; exit 77; }
setup "$@"
fail() { echo "FAIL: $*" >&2; [ -f "$T/error.log" ] && tail -20 "$T/error.log" >&2; exit 1; }

PORT=$(free_port)
mkdir -p "$T/tmp"
cat > "$T/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
user root;
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

M=SCPMARK_nginx_static
{ echo "<html>$M</html>"; } > "$T/index.html"
i=0; while [ $i -lt 20000 ]; do echo "$M line $i ----------------------------------------------"; i=$((i+1)); done > "$T/big.txt"
run mkdir "$MNT/www" || fail mkdir
run cp "$T/index.html" "$T/big.txt" "$MNT/www/" || fail "cp into the volume"

NPID=
start() {
    # not through run(): $! must be the program itself (scpctl execs it)
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

note "start nginx (sendfile on)"
start || { cat "$T/error.log" >&2; fail "nginx did not start"; }
curl -s "http://127.0.0.1:$PORT/index.html" | cmp - "$T/index.html" || fail "index.html differs"
curl -s "http://127.0.0.1:$PORT/big.txt" | cmp - "$T/big.txt" || fail "big.txt differs"
curl -s -r 1000-1999 "http://127.0.0.1:$PORT/big.txt" | cmp - <(dd if="$T/big.txt" bs=1000 skip=1 count=1 2>/dev/null) ||
    fail "range request differs"
for _ in 1 2 3 4 5 6 7 8; do curl -s "http://127.0.0.1:$PORT/big.txt" | cmp -s - "$T/big.txt" || fail "repeated get differs"; done
stop
check_no_plaintext "$M"

note tamper
run rm "$MNT/www/index.html" || fail rm
tamper_largest
start || { cat "$T/error.log" >&2; fail "nginx did not start after tamper"; }
curl -s "http://127.0.0.1:$PORT/big.txt" > "$T/got.txt"
cmp -s "$T/got.txt" "$T/big.txt" && fail "nginx served a tampered file as if intact"
stop
grep -q "Input/output error" "$T/error.log" || { tail "$T/error.log" >&2; fail "no I/O error in the nginx log"; }
echo PASS
