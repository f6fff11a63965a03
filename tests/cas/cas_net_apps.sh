#!/bin/bash
# The network shield with nginx and memcached (docs/shield.md "Network shield"): real programs,
# clients nobody here wrote, a loopback capture that must hold no plaintext marker.
#  - nginx with a plain HTTP configuration, shielded: curl and wrk (-c 50, 16 KiB and small
#    files) over HTTPS complete with no socket errors or timeouts;
#  - 2,000 TLS connections open at once to the shielded nginx, every one served;
#  - the event-loop torture against nginx: pipelined requests, a half-closed connection
#    (close_notify and TCP FIN after the request), a client that stops reading 40 replies of
#    1 MiB while others are served, a client that sends its TLS bytes one at a time;
#  - memcached shielded with `client_certificate: required`, and shielded memccp/memccat as
#    clients (peer rule): both ends attested (each holds only the certificate CAS issued after
#    attestation, and each verifies the other's); a TLS client without that certificate and a
#    plaintext client get nothing.
source "$(dirname "$0")/lib.sh" "$@"
for p in nginx curl wrk memcached memccp memccat tcpdump; do
    command -v $p >/dev/null || { echo "SKIP: no $p"; exit 0; }
done
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 4500 ] || { echo "SKIP: descriptor limit $(ulimit -n) is below 4500"; exit 0; }

start_cas_p1
# what the programs read must be outside /tmp (a shielded run has a private /tmp)
W=$(mktemp -d /var/tmp/scp-net-apps.XXXXXX)
mkdir -p "$W/www" "$W/ngxtmp"
for p in nginx memcached memccp memccat; do measure_copy "M_$p" $p; done
PN=$(freeport)
PM=$(freeport)
MARK=SCPAPPMARK$RANDOM$RANDOM
printf '%s-small\n' "$MARK" >"$W/www/small"
python3 -c "import sys; sys.stdout.write(('$MARK-16k ' * 2000)[:16384])" >"$W/www/16k"
for i in $(seq 64); do cat "$W/www/16k"; done >"$W/www/1m"
printf '%s-memcached' "$MARK" >"$W/mcvalue"
NGX="user root root; daemon off; master_process on; worker_processes 2; worker_rlimit_nofile 8192; error_log stderr; pid $W/ngx.pid;\\nevents { worker_connections 4096; }\\nhttp { access_log off; keepalive_requests 100000; client_body_temp_path $W/ngxtmp; proxy_temp_path $W/ngxtmp; fastcgi_temp_path $W/ngxtmp; uwsgi_temp_path $W/ngxtmp; scgi_temp_path $W/ngxtmp; server { listen 127.0.0.1:$PN; root $W/www; } }\\n"
cat >"$T/apps.yaml" <<YAML
name: apps
services:
  - name: nginx
    measurements: [$M_nginx]
    command: [nginx, -c, /etc/nginx/scp.conf]
    files:
      - {path: /etc/nginx/scp.conf, content: "$NGX"}
    network: {certificate: tls, listen: [{port: $PN}]}
  - name: memcached
    measurements: [$M_memcached]
    command: [memcached, -u, root, -l, 127.0.0.1, -p, "$PM", -U, "0", -t, "2"]
    network:
      certificate: tls
      listen: [{port: $PM, client_certificate: required}]
  - name: memccp
    measurements: [$M_memccp]
    command: [memccp, --servers=127.0.0.1:$PM, $W/mcvalue]
    network: {certificate: tls, peers: [{host: 127.0.0.1, port: $PM}], default: refuse}
  - name: memccat
    measurements: [$M_memccat]
    command: [memccat, --servers=127.0.0.1:$PM, mcvalue]
    network: {certificate: tls, peers: [{host: 127.0.0.1, port: $PM}], default: refuse}
secrets:
  - {name: tls, kind: x509, common_name: apps, ip: [127.0.0.1]}
YAML
expect_rc 0 "$SCPCTL" session create "$T/apps.yaml"
RUN=("$SCPCTL" run --session apps --platform-key "$T/p1.key" --volume-dir "$T/vols")

capture_start "$T/lo.pcap" "tcp port $PN or tcp port $PM"
"${RUN[@]}" --service nginx -- "$T/bin/nginx" >"$T/nginx.out" 2>"$T/nginx.err" &
NPID=$!
"${RUN[@]}" --service memcached -- "$T/bin/memcached" >"$T/mc.out" 2>"$T/mc.err" &
MPID=$!
cleanup_all() {
    kill "$NPID" "$MPID" 2>/dev/null
    wait "$NPID" "$MPID" 2>/dev/null
    rm -rf "$W"
    cleanup
}
trap cleanup_all EXIT
for _ in $(seq 150); do
    curl -sf --cacert "$CA" "https://127.0.0.1:$PN/small" >"$T/curl.out" 2>/dev/null && break
    kill -0 $NPID 2>/dev/null || fail "nginx exited: $(cat "$T/nginx.err")"
    sleep 0.1
done
grep -qx "$MARK-small" "$T/curl.out" || fail "curl over HTTPS: $(cat "$T/curl.out" "$T/nginx.err")"
curl -sf --cacert "$CA" "https://127.0.0.1:$PN/16k" | cmp -s - "$W/www/16k" || fail "the 16 KiB file came back different"
echo "ok: nginx (plain HTTP configuration) serves HTTPS to curl"

# wrk: 50 connections, 2 s per file; any socket error (connect, read, write, timeout) or a
# non-2xx answer fails the test
for f in small 16k; do
    wrk -t 2 -c 50 -d 2s --timeout 5s "https://127.0.0.1:$PN/$f" >"$T/wrk-$f.out" 2>&1 || fail "wrk: $(cat "$T/wrk-$f.out")"
    n=$(awk '/requests in/ {print $1}' "$T/wrk-$f.out")
    [ "${n:-0}" -gt 100 ] || fail "wrk /$f completed ${n:-no} requests: $(cat "$T/wrk-$f.out")"
    grep -q -E "Socket errors|Non-2xx" "$T/wrk-$f.out" && fail "wrk /$f: $(grep -E 'Socket errors|Non-2xx' "$T/wrk-$f.out")"
    echo "ok: wrk -c 50 /$f: $n requests, no socket errors or timeouts"
done

# 2,000 connections at once, then a request on each; and the torture cases
python3 - "$PN" "$CA" "$MARK" "$W/www/16k" >"$T/torture.out" 2>&1 <<'PY' || fail "nginx torture: $(cat "$T/torture.out"; tail -5 "$T/nginx.err")"
import socket, ssl, sys, time, selectors
port, ca, mark, big = int(sys.argv[1]), sys.argv[2], sys.argv[3], open(sys.argv[4], "rb").read()
ctx = ssl.create_default_context(cafile=ca); ctx.check_hostname = False
small = (mark + "-small\n").encode()
def req(path, close=False):
    return ("GET /%s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, "Connection: close\r\n" if close else "")).encode()
def read_responses(s, count, body, buf=b""):
    """read count HTTP responses with this body from a blocking (TLS) socket; returns the rest"""
    got = 0
    want = len(body)
    while got < count:
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d: raise SystemExit("EOF after %d responses" % got)
            buf += d
        head, buf = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200"), head
        while len(buf) < want:
            d = s.recv(65536)
            if not d: raise SystemExit("EOF in a body after %d responses" % got)
            buf += d
        assert buf[:want] == body, "a body came back different"
        buf = buf[want:]
        got += 1
    return buf

# 1. 2,000 connections open at the same time (handshakes in parallel, non-blocking). Each is
# wrapped once its connect completed: Python's wrap_socket of a socket still connecting (the
# listen queue full on a loaded machine) reads it and fails with EAGAIN.
N = 2000
sel = selectors.DefaultSelector()
raws, conns = [], []
for i in range(N):
    raw = socket.socket(); raw.setblocking(False)
    raw.connect_ex(("127.0.0.1", port))
    raws.append(raw)
    sel.register(raw, selectors.EVENT_WRITE)
connecting, deadline = N, time.time() + 120
while connecting:
    if time.time() > deadline: raise SystemExit("%d of %d connects unfinished" % (connecting, N))
    for key, ev in sel.select(timeout=5):
        err = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err: raise SystemExit("connect failed: %s" % err)
        sel.unregister(key.fileobj); connecting -= 1
for raw in raws:
    s = ctx.wrap_socket(raw, do_handshake_on_connect=False)
    conns.append(s)
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, "hs")
pending, deadline = N, time.time() + 120
while pending:
    if time.time() > deadline: raise SystemExit("%d of %d handshakes unfinished" % (pending, N))
    for key, ev in sel.select(timeout=5):
        s = key.fileobj
        try:
            s.do_handshake()
            sel.unregister(s); pending -= 1
        except ssl.SSLWantReadError: sel.modify(s, selectors.EVENT_READ)
        except ssl.SSLWantWriteError: sel.modify(s, selectors.EVENT_WRITE)
for s in conns:
    s.setblocking(True); s.settimeout(60); s.sendall(req("small"))
for s in conns:
    read_responses(s, 1, small)
for s in conns: s.close()
print("2000 connections open at once, all served")

def tls():
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port))); s.settimeout(60); return s

# 2. pipelined: 50 requests in one write
s = tls(); s.sendall(req("small") * 49 + req("16k"))
rest = read_responses(s, 49, small); assert read_responses(s, 1, big, rest) == b""; s.close()
print("50 pipelined requests answered in order")

# 3. half-closed: the request, then close_notify and TCP FIN; the response still arrives
raw = socket.create_connection(("127.0.0.1", port)); raw.settimeout(60)
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out)
def pump(one=False):
    data = out.read()
    if one:
        for i in range(len(data)): raw.send(data[i:i+1]); time.sleep(0.0005)
    else:
        raw.sendall(data)
while True:
    try: obj.do_handshake(); break
    except ssl.SSLWantReadError: pump(); inc.write(raw.recv(65536))
pump()
obj.write(req("16k")); pump()
try: obj.unwrap()
except ssl.SSLWantReadError: pass
pump(); raw.shutdown(socket.SHUT_WR)
resp = b""
while True:
    try:
        d = obj.read(65536)
        if not d: break
        resp += d
    except ssl.SSLWantReadError:
        d = raw.recv(65536)
        if not d: break
        inc.write(d)
    except ssl.SSLZeroReturnError: break
assert resp.startswith(b"HTTP/1.1 200") and resp.endswith(big), resp[:200]
print("half-closed after the request: the response arrived complete")

# 3b. pipelined, one TLS record per request, all records in one TCP send: after the server's
# first read the other records wait in the shield while the kernel socket is empty (nginx's
# epoll is edge-triggered), so the shield must report the connection readable
raw = socket.create_connection(("127.0.0.1", port)); raw.settimeout(60)
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out)
while True:
    try: obj.do_handshake(); break
    except ssl.SSLWantReadError: pump(); inc.write(raw.recv(65536))
pump()
for i in range(20): obj.write(req("small", i == 19))
pump()
resp = b""
while True:
    try:
        d = obj.read(65536)
        if not d: break
        resp += d
    except ssl.SSLWantReadError:
        d = raw.recv(65536)
        if not d: break
        inc.write(d)
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError): break
assert resp.count(b"HTTP/1.1 200") == 20 and resp.count(small) == 20, resp[-300:]
print("20 requests in 20 records of one TCP send: all answered")

# 4. a client that asks for 40 x 1 MiB (more than the kernel's socket buffers hold) and stops
# reading; others are served meanwhile
stall = tls(); stall.sendall(req("1m") * 40)
time.sleep(1)
for i in range(30):
    o = tls(); o.sendall(req("small", True)); read_responses(o, 1, small); o.close()
print("others served while one client stalls")
read_responses(stall, 40, big * 64); stall.close()
print("the stalled client got all 40 responses, complete")

# 5. one byte at a time: the handshake and a request dribbled
raw = socket.create_connection(("127.0.0.1", port)); raw.settimeout(60)
raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out)
while True:
    try: obj.do_handshake(); break
    except ssl.SSLWantReadError: pump(True); inc.write(raw.recv(65536))
pump(True)
obj.write(req("small", True)); pump(True)
resp = b""
while not resp.endswith(small):
    try: resp += obj.read(65536)
    except ssl.SSLWantReadError:
        d = raw.recv(65536)
        if not d: break
        inc.write(d)
assert resp.startswith(b"HTTP/1.1 200") and resp.endswith(small), resp
print("one byte at a time: answered")
PY
echo "ok: $(tr '\n' ';' <"$T/torture.out")"
kill -0 $NPID 2>/dev/null || fail "nginx died: $(tail -5 "$T/nginx.err")"

# memcached: both ends shielded and attested
for _ in $(seq 100); do
    python3 - "$PM" "$CA" >"$T/nocert.out" 2>&1 <<'PY' && break
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()
PY
    kill -0 $MPID 2>/dev/null || fail "memcached exited: $(cat "$T/mc.err")"
    sleep 0.1
done
"${RUN[@]}" --service memccp -- "$T/bin/memccp" >"$T/memccp.out" 2>"$T/memccp.err" ||
    fail "shielded memccp failed: $(cat "$T/memccp.out" "$T/memccp.err")"
"${RUN[@]}" --service memccat -- "$T/bin/memccat" >"$T/memccat.out" 2>"$T/memccat.err" ||
    fail "shielded memccat failed: $(cat "$T/memccat.out" "$T/memccat.err")"
[ "$(cat "$T/memccat.out")" = "$MARK-memcached" ] || fail "memccat got '$(cat "$T/memccat.out")': $(cat "$T/memccat.err")"
echo "ok: shielded memccp stores and shielded memccat reads the value through shielded memcached (client certificates required)"
# without the client certificate that CAS issues to attested services: no answer
python3 - "$PM" "$CA" >"$T/nocert.out" 2>&1 <<'PY' || fail "TLS client without certificate: $(cat "$T/nocert.out")"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2]); ctx.check_hostname = False
try:
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
    s.settimeout(10)
    s.sendall(b"get mcvalue\r\n")
    d = s.recv(100)
    assert b"VALUE" not in d, d
    print("no answer:", d)
except (ssl.SSLError, ConnectionResetError, BrokenPipeError, socket.timeout) as e:
    print("refused:", type(e).__name__, e)
PY
grep -q "TLS handshake failed" "$T/mc.err" || fail "no log line for the client without a certificate: $(cat "$T/mc.err")"
timeout 20 memccat --servers=127.0.0.1:$PM mcvalue >"$T/plainmc.out" 2>&1
grep -q "$MARK" "$T/plainmc.out" && fail "a plaintext memccat got the value"
echo "ok: a TLS client without an attested service's certificate, $(cut -c1-60 "$T/nocert.out"), and a plaintext memccat get nothing"

capture_check_no "$T/lo.pcap" "$MARK" "HTTP/1.1 200"
echo "ok: the capture ($CAP_PACKETS packets) holds no marker and no plaintext HTTP"
