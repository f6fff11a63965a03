#!/bin/bash
# The socket API on shielded connections (docs/shield.md "Network shield"), call by call, with a
# shielded Python server and clients nobody here wrote (Python's ssl, openssl s_client):
#  - accept4 with SOCK_NONBLOCK|SOCK_CLOEXEC gives a connection with both flags set;
#  - recvmsg/sendmsg (two buffers) and readv/writev carry the plaintext, the wire TLS;
#  - epoll with EPOLLRDHUP|EPOLLET reports the peer's close after its last bytes;
#  - SO_LINGER: a close right after a 1 MB reply still delivers all of it;
#  - UDP to the named port is refused (EACCES), never sent; UDP to another port is not filtered;
#  - a socketpair is left alone (its bytes are the program's own);
#  - `default: refuse`: a listen on a port the policy does not name gets EACCES, a connect
#    elsewhere ECONNREFUSED; `default: allow` lets a plaintext connect through;
#  - `min_tls: "1.2"` admits a TLS 1.2 client, the default (1.3) refuses it;
#  - a listening socket inherited across exec keeps serving TLS in the new image;
#  - a loopback capture of the whole run holds no plaintext marker on the shielded ports.
source "$(dirname "$0")/lib.sh" "$@"
command -v python3 >/dev/null && command -v openssl >/dev/null || { echo "SKIP: no python3/openssl"; exit 0; }

start_cas_p1
# ctypes (for accept4) is a module the trusted-file manifest must list when scpctl checks one
# (and the exec case's new image is python3 itself: a trusted file of the measurement)
PYEXE=$(readlink -f /usr/bin/python3)
PYT=(--trusted "$PYEXE")
CTYPES=$(ls /usr/lib/python3*/lib-dynload/_ctypes.*.so 2>/dev/null | head -1)
[ -n "$CTYPES" ] && PYT+=(--trusted "$CTYPES")
measure_copy MP /usr/bin/python3 "${PYT[@]}"
PORT=$(freeport)      # the server's listen port (TLS, min_tls 1.2)
PORT2=$(freeport)     # a strict server (TLS 1.3 only)
OPEN=$(freeport)      # a port the policy does not name (listen refused)
PLAIN=$(freeport)     # a plaintext listener outside the shield
PX=$(freeport)        # the exec case's listen port
UDPP=$(freeport)      # a UDP port the policy does not name
MARK=SCPSOCKAPI$RANDOM$RANDOM
VECBIG="1000, 17000, 3, 40000, 20480, 70001" # writev pieces (bytes): 148,484 in all

cat >"$T/api.py" <<PY
import ctypes, errno, os, select, socket, sys
MARK = b"$MARK"
VECBIG = ($VECBIG)
libc = ctypes.CDLL(None, use_errno=True)
def log(*a): print(*a, flush=True)
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", $PORT)); ls.listen(16)

# what the policy's default (refuse) says about other ports, before any client comes
try:
    o = socket.socket(); o.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    o.bind(("127.0.0.1", $OPEN)); o.listen(); log("listen-unnamed: allowed")
except OSError as e: log("listen-unnamed:", errno.errorcode.get(e.errno, e.errno))
try:
    socket.create_connection(("127.0.0.1", $PLAIN), timeout=5); log("connect-unnamed: allowed")
except OSError as e: log("connect-unnamed:", errno.errorcode.get(e.errno, e.errno))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(MARK + b"-udp-named", ("127.0.0.1", $PORT)); log("udp-named: sent")
except OSError as e: log("udp-named:", errno.errorcode.get(e.errno, e.errno))
try:
    u.sendto(b"udp-other", ("127.0.0.1", $UDPP)); log("udp-other: sent")
except OSError as e: log("udp-other:", errno.errorcode.get(e.errno, e.errno))
a, b = socket.socketpair()
a.sendall(MARK + b"-pair"); log("socketpair:", b.recv(100).decode())
a.close(); b.close()
try:
    d = socket.create_connection(("localhost", $PORT2), timeout=10)
    log("dns-peer:", d.recv(100).decode().strip()); d.close()
except OSError as e: log("dns-peer:", e)
# a non-blocking connect, then epoll: EPOLLOUT for the connect, EPOLLIN for the server's words
d = socket.socket(); d.setblocking(False)
try: d.connect(("127.0.0.1", $PORT2))
except BlockingIOError: pass
ep = select.epoll(); ep.register(d.fileno(), select.EPOLLOUT)
got = "timed out" if not ep.poll(10) else ""
ep.modify(d.fileno(), select.EPOLLIN)
for _ in range(50):
    if got or not ep.poll(10): break
    try: got = d.recv(100).decode().strip()
    except BlockingIOError: pass
log("nb-epoll:", got or "timed out"); d.close(); ep.close()
log("ready")

def accept4():
    select.select([ls], [], [], 30)
    fd = libc.accept4(ls.fileno(), None, None, socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    if fd < 0: raise OSError(ctypes.get_errno(), "accept4")
    import fcntl
    nb = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)
    ce = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
    return socket.socket(fileno=fd), nb, ce

def wait(c, ev, t=20):
    ep = select.epoll(); ep.register(c.fileno(), ev)
    r = ep.poll(t); ep.close()
    return r[0][1] if r else 0

def readline(c):
    buf = b""
    while not buf.endswith(b"\n"):
        if not wait(c, select.EPOLLIN): raise SystemExit("timed out reading a line: %r" % buf)
        try:
            d = c.recv(1)
        except BlockingIOError: continue
        if not d: break
        buf += d
    return buf

for _ in range(5):
    c, nb, ce = accept4()
    log("accept4: nonblock=%s cloexec=%s" % (nb, ce))
    cmd = readline(c).strip()
    if cmd == b"MSG":
        wait(c, select.EPOLLIN)
        data, anc, flags, addr = c.recvmsg(100)
        n = c.sendmsg([b"msg-a-", b"msg-b-", MARK, b"-", data, b"\n"])
        log("msg: got %r, sent %d" % (data, n))
    elif cmd == b"VEC":
        wait(c, select.EPOLLIN)
        b1, b2 = bytearray(4), bytearray(60)
        n = os.readv(c.fileno(), [b1, b2])
        got = bytes(b1 + b2)[:n]
        m = os.writev(c.fileno(), [b"vec-a-", b"vec-b-", MARK, b"-", got, b"\n"])
        log("vec: got %r, sent %d" % (got, m))
        # a vector over many records, its pieces across record boundaries (a blocking
        # socket: the whole of it, as the kernel's writev)
        c.setblocking(True)
        m = os.writev(c.fileno(), [bytes([65 + i]) * k for i, k in enumerate(VECBIG)])
        log("vec: big sent %d" % m)
    elif cmd == b"RDHUP":
        seen, data = 0, b""
        for _ in range(50):
            ev = wait(c, select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET)
            seen |= ev
            try:
                while True:
                    d = c.recv(100)
                    if not d: break
                    data += d
            except (BlockingIOError, ConnectionResetError): pass
            if seen & select.EPOLLRDHUP: break
        log("rdhup: events=%#x rdhup=%s data=%r" % (seen, bool(seen & select.EPOLLRDHUP), data))
    elif cmd == b"LINGER":
        import struct
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 10))
        c.setblocking(True)
        c.sendall((MARK + b"-linger ") * (1048576 // (len(MARK) + 8)) + b"END\n")
        log("linger: sent")
    elif cmd == b"SENDFILE":
        c.setblocking(True)
        with open("/tmp/sockapi-$MARK", "wb") as f: f.write(b"sendfile-" + MARK + b"-" * 200000 + b"END\n")
        with open("/tmp/sockapi-$MARK", "rb") as f:
            off, size, calls = 0, os.fstat(f.fileno()).st_size, 0
            while off < size: off += os.sendfile(c.fileno(), f.fileno(), off, size - off); calls += 1
        os.unlink("/tmp/sockapi-$MARK")
        log("sendfile: sent %d in %d calls" % (off, calls))
    c.close()
# a write before the handshake has ended (nothing read yet; the client holds back its Finished):
# kept up to 256 KiB, a larger write short, the rest written once the handshake ends
c, nb, ce = accept4()
early = MARK + b"-early-" + b"E" * 300000
try: n = os.write(c.fileno(), early)
except BlockingIOError: n = -1
log("early: wrote %d" % n)
c.setblocking(True)
c.sendall(early[max(n, 0):])
c.close()
log("done")
PY
cat >"$T/strict.py" <<PY
import socket
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", $PORT2)); ls.listen()
o = socket.create_connection(("127.0.0.1", $PLAIN), timeout=5); o.sendall(b"allowed-plain"); o.close()
print("ready", flush=True)
while True:
    c, _ = ls.accept()
    try: c.sendall(b"strict-$MARK\n")
    except OSError as e: print("strict: send:", e, flush=True)
    c.close()
PY
# a server that listens, then execs a new image that inherits the listening socket and accepts
# on it (nginx's binary upgrade, socket activation)
cat >"$T/reexec.py" <<PY
import os, socket, sys
if len(sys.argv) < 2:
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", $PX)); ls.listen(); ls.set_inheritable(True)
    os.execv("$PYEXE", ["python3", "/srv/reexec.py", str(ls.fileno())])
ls = socket.socket(fileno=int(sys.argv[1]))
print("ready", flush=True)
c, _ = ls.accept()
c.sendall(b"after-exec-$MARK-" + c.recv(100)); c.close()
PY
cat >"$T/s.yaml" <<YAML
name: sockapi
services:
  - name: api
    measurements: [$MP]
    command: [python3, /srv/api.py]
    files:
      - path: /srv/api.py
        content: |
$(yaml_file "$T/api.py")
    network:
      certificate: tls
      listen: [{port: $PORT}]
      peers: [{host: localhost, port: $PORT2, name: 127.0.0.1}]
      default: refuse
      min_tls: "1.2"
  - name: strict
    measurements: [$MP]
    command: [python3, /srv/strict.py]
    files:
      - path: /srv/strict.py
        content: |
$(yaml_file "$T/strict.py")
    network:
      certificate: tls
      listen: [{port: $PORT2}]
      default: allow
  - name: reexec
    measurements: [$MP]
    command: [python3, /srv/reexec.py]
    files:
      - path: /srv/reexec.py
        content: |
$(yaml_file "$T/reexec.py")
    network:
      certificate: tls
      listen: [{port: $PX}]
secrets:
  - {name: tls, kind: x509, common_name: sockapi.test, ip: [127.0.0.1]}
YAML
expect_rc 0 "$SCPCTL" session create "$T/s.yaml"

# a plaintext listener and a UDP receiver outside the shield (the 'allowed' and 'other' routes)
cat >"$T/outside.py" <<PY
import socket, select
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", $PLAIN)); t.listen()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", $UDPP))
n = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); n.bind(("127.0.0.1", $PORT))
print("ready", flush=True)
while True:
    r, _, _ = select.select([t, u, n], [], [])
    if t in r:
        c, _ = t.accept(); c.settimeout(5)
        try: print("tcp:", c.recv(100).decode(), flush=True)
        except OSError: print("tcp: (nothing)", flush=True)
        c.close()
    if u in r: print("udp-other:", u.recv(100).decode(), flush=True)
    if n in r: print("udp-named:", n.recv(100).decode(), flush=True)
PY
CAP="$T/lo.pcap"
HAVE_TCPDUMP=$(command -v tcpdump || true)
[ -z "$HAVE_TCPDUMP" ] || capture_start "$CAP" "tcp port $PORT or tcp port $PORT2 or tcp port $PX or udp port $PORT"
python3 "$T/outside.py" >"$T/outside.out" 2>&1 &
OUT=$!
RUN=("$SCPCTL" run --session sockapi --platform-key "$T/p1.key" --volume-dir "$T/vols" "${PYT[@]}")
cleanup_all() {
    for p in ${SRV:-} ${SRV2:-} $OUT; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    cleanup
}
trap cleanup_all EXIT
for _ in $(seq 50); do grep -q ready "$T/outside.out" 2>/dev/null && break; sleep 0.1; done
"${RUN[@]}" --service strict -- "$T/bin/python3" >"$T/strict.out" 2>"$T/strict.err" &
SRV2=$!
for _ in $(seq 200); do grep -q ready "$T/strict.out" 2>/dev/null && break; sleep 0.1; done
"${RUN[@]}" --service api -- "$T/bin/python3" >"$T/api.out" 2>"$T/api.err" &
SRV=$!
for _ in $(seq 200); do grep -q ready "$T/api.out" 2>/dev/null && grep -q ready "$T/strict.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$T/api.out" || fail "the api server did not start: $(cat "$T/api.out" "$T/api.err")"
grep -q ready "$T/strict.out" || fail "the strict server did not start: $(cat "$T/strict.err")"

grep -q "^listen-unnamed: EACCES$" "$T/api.out" || fail "listen on an unnamed port under refuse: $(grep listen-unnamed "$T/api.out")"
grep -q "^connect-unnamed: ECONNREFUSED$" "$T/api.out" || fail "connect under refuse: $(grep connect-unnamed "$T/api.out")"
grep -q "^udp-named: EACCES$" "$T/api.out" || fail "UDP to the named port: $(grep udp-named "$T/api.out")"
grep -q "^udp-other: sent$" "$T/api.out" || fail "UDP to another port: $(grep udp-other "$T/api.out")"
grep -q "^socketpair: $MARK-pair$" "$T/api.out" || fail "socketpair: $(grep socketpair "$T/api.out")"
grep -q "^dns-peer: strict-$MARK$" "$T/api.out" || fail "a peer named by DNS (localhost): $(grep dns-peer "$T/api.out"; cat "$T/api.err"; echo STRICT; cat "$T/strict.out" "$T/strict.err")"
grep -q "^nb-epoll: strict-$MARK$" "$T/api.out" || fail "a non-blocking connect to a peer, then epoll: $(grep nb-epoll "$T/api.out")"
echo "ok: a peer named by a DNS name (localhost) is reached over TLS (the 1.3-only server answered), with a blocking connect and with a non-blocking connect then epoll"
echo "ok: under default refuse: listen elsewhere EACCES, connect elsewhere ECONNREFUSED, UDP to the named port EACCES; UDP elsewhere and a socketpair untouched"

cat >"$T/cli.py" <<PY
import socket, ssl, sys, time
VECBIG = ($VECBIG)
ctx = ssl.create_default_context(cafile="$CA")
def conn():
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", $PORT), timeout=20), server_hostname="127.0.0.1")
def readall(s):
    got = b""
    while True:
        try: d = s.recv(65536)
        except (ssl.SSLError, ConnectionResetError) as e: print("err", e); break
        if not d: break
        got += d
    return got
s = conn(); s.sendall(b"MSG\n"); time.sleep(0.2); s.sendall(b"hello-msg"); print(readall(s).decode().strip()); s.close()
s = conn(); s.sendall(b"VEC\n"); time.sleep(0.2); s.sendall(b"hello-vec"); g = readall(s); s.close()
line, _, rest = g.partition(b"\n")
print(line.decode())
print("vecbig %d %s" % (len(rest), rest == b"".join(bytes([65 + i]) * k for i, k in enumerate(VECBIG))))
s = conn(); s.sendall(b"RDHUP\n"); time.sleep(0.2); s.sendall(b"last-bytes"); time.sleep(0.2); s.close(); time.sleep(0.5)
s = conn(); s.sendall(b"LINGER\n"); g = readall(s); print("linger %d %s" % (len(g), g.endswith(b"END\n"))); s.close()
s = conn(); s.sendall(b"SENDFILE\n"); g = readall(s); print("sendfile %d %s %s" % (len(g), g.startswith(b"sendfile-$MARK-"), g.endswith(b"END\n"))); s.close()
raw = socket.create_connection(("127.0.0.1", $PORT), timeout=20)
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
t = ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")
try: t.do_handshake()
except ssl.SSLWantReadError: pass
raw.sendall(out.read()) # the ClientHello; the Finished waits until the server has written
time.sleep(1)
got, hs, eof = b"", False, False
while not eof:
    d = raw.recv(65536)
    if d: inc.write(d)
    else: inc.write_eof()
    try:
        if not hs: t.do_handshake(); hs = True
        while True:
            x = t.read(65536)
            if not x: eof = True; break # close_notify
            got += x
    except ssl.SSLWantReadError: pass
    except ssl.SSLError: break
    o = out.read()
    if o: raw.sendall(o)
    if not d: break
raw.close()
print("early %d %s" % (len(got), got == b"$MARK-early-" + b"E" * 300000))
PY
timeout 60 python3 "$T/cli.py" >"$T/cli.out" 2>"$T/cli.err" || fail "the client: $(tail -3 "$T/cli.err"; cat "$T/api.out" "$T/api.err")"
for _ in $(seq 100); do grep -q "^done" "$T/api.out" && break; sleep 0.1; done
[ "$(grep -c '^accept4: nonblock=True cloexec=True$' "$T/api.out")" = 5 ] || fail "accept4 flags: $(grep accept4 "$T/api.out")"
echo "ok: accept4(SOCK_NONBLOCK|SOCK_CLOEXEC) gives both flags on 5 of 5 shielded connections"
grep -qx "early: wrote 262144" "$T/api.out" && grep -qx "early $((${#MARK} + 7 + 300000)) True" "$T/cli.out" ||
    fail "a write of 300 kB before the handshake: $(grep early "$T/api.out" "$T/cli.out")"
echo "ok: a write before the handshake ends keeps 256 KiB (a short write), the rest follows it"
grep -qx "sendfile $((9 + ${#MARK} + 200000 + 4)) True True" "$T/cli.out" || fail "sendfile from a plain file into the shielded socket: $(grep sendfile "$T/cli.out" "$T/api.out")"
# a blocking socket: the kernel's sendfile sends it all in one call, and so does the shield's
grep -qx "sendfile: sent $((9 + ${#MARK} + 200000 + 4)) in 1 calls" "$T/api.out" ||
    fail "sendfile of 200 kB into a blocking shielded socket: not in one call: $(grep sendfile "$T/api.out")"
echo "ok: sendfile of a 200 kB plain file into the shielded socket arrives whole, in one call as the kernel's"
grep -qx "msg-a-msg-b-$MARK-hello-msg" "$T/cli.out" || fail "recvmsg/sendmsg: $(cat "$T/cli.out"; grep msg: "$T/api.out")"
grep -qx "vec-a-vec-b-$MARK-hello-vec" "$T/cli.out" || fail "readv/writev: $(cat "$T/cli.out"; grep vec: "$T/api.out")"
grep -qx "vecbig 148484 True" "$T/cli.out" || fail "writev of 148,484 bytes in 6 pieces: $(grep vecbig "$T/cli.out"; grep vec: "$T/api.out")"
echo "ok: recvmsg/sendmsg with two buffers and readv/writev carry the plaintext (writev: 145 KiB in 6 pieces too)"
grep -q "^rdhup: .* rdhup=True data=b'last-bytes'$" "$T/api.out" || fail "EPOLLRDHUP: $(grep rdhup "$T/api.out")"
echo "ok: edge-triggered epoll reports EPOLLRDHUP after the peer's last bytes ($(grep -o 'events=[0-9a-fx]*' "$T/api.out"))"
grep -q "^linger [0-9]* True$" "$T/cli.out" || fail "SO_LINGER close lost the reply's end: $(grep linger "$T/cli.out")"
[ "$(sed -n 's/^linger \([0-9]*\) True$/\1/p' "$T/cli.out")" -ge 1040000 ] || fail "SO_LINGER: short reply: $(grep linger "$T/cli.out")"
echo "ok: SO_LINGER then close right after a 1 MB reply: $(sed -n 's/^linger \([0-9]*\) .*/\1/p' "$T/cli.out") bytes arrive, ending in END"

# TLS versions: min_tls 1.2 admits a TLS 1.2 client (the api server has ended its loop, so use
# a fresh run of it); the strict server (default 1.3) refuses one and serves a 1.3 client
kill "$SRV" 2>/dev/null; wait "$SRV" 2>/dev/null
"${RUN[@]}" --service api -- "$T/bin/python3" >"$T/api2.out" 2>"$T/api2.err" &
SRV=$!
for _ in $(seq 200); do grep -q ready "$T/api2.out" 2>/dev/null && break; sleep 0.1; done
(echo MSG; sleep 0.5; echo hello12) | timeout 30 openssl s_client -tls1_2 -CAfile "$CA" -verify_return_error \
    -connect 127.0.0.1:"$PORT" -ign_eof >"$T/t12.out" 2>&1
grep -q "Protocol *: TLSv1.2" "$T/t12.out" || fail "a TLS 1.2 client against min_tls 1.2: $(grep -i 'protocol\|error\|alert' "$T/t12.out" | head -3)"
grep -q "msg-a-msg-b-$MARK-hello12" "$T/t12.out" || fail "TLS 1.2: no answer: $(tail -3 "$T/t12.out"; tail -3 "$T/api2.out" "$T/api2.err")"
echo "ok: min_tls 1.2 admits openssl s_client -tls1_2 ($(grep -o 'Protocol *: TLSv1.2' "$T/t12.out" | head -1))"
timeout 20 openssl s_client -tls1_2 -CAfile "$CA" -connect 127.0.0.1:"$PORT2" </dev/null >"$T/s12.out" 2>&1
grep -q "strict-$MARK" "$T/s12.out" && fail "the 1.3-only server answered a TLS 1.2 client"
grep -qi "alert\|error" "$T/s12.out" || fail "no handshake failure shown for TLS 1.2 against the 1.3-only server: $(tail -3 "$T/s12.out")"
timeout 20 openssl s_client -CAfile "$CA" -verify_return_error -ign_eof -connect 127.0.0.1:"$PORT2" </dev/null >"$T/s13.out" 2>&1
grep -q "strict-$MARK" "$T/s13.out" || fail "a TLS 1.3 client of the strict server: $(tail -3 "$T/s13.out")"
echo "ok: the default (TLS 1.3 only) refuses s_client -tls1_2 ($(grep -o -i 'alert [a-z ]*\|tlsv1 alert [a-z ]*' "$T/s12.out" | head -1)) and serves TLS 1.3"

# default allow: the strict service connected in plaintext to a port no rule names
grep -q "^udp-other: udp-other$" "$T/outside.out" || fail "the UDP datagram to another port did not arrive: $(cat "$T/outside.out")"
grep -q "^udp-named:" "$T/outside.out" && fail "a UDP datagram to the named port left the shield: $(grep udp-named "$T/outside.out")"
[ "$(grep -c '^tcp:' "$T/outside.out")" = 1 ] && grep -q '^tcp: allowed-plain$' "$T/outside.out" ||
    fail "plaintext listener: want only the allowed service's connect: $(grep '^tcp' "$T/outside.out")"
echo "ok: outside the shield: the UDP datagram to another port arrived, nothing on the named UDP port; default allow connected in plaintext, refuse did not"

# exec keeps a listening socket: the new image's accepted connection is TLS
"${RUN[@]}" --service reexec -- "$T/bin/python3" >"$T/rx.out" 2>"$T/rx.err" &
RX=$!
for _ in $(seq 200); do grep -q ready "$T/rx.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$T/rx.out" || fail "the exec'ing server did not start: $(cat "$T/rx.err")"
python3 -c "
import socket, ssl
ctx = ssl.create_default_context(cafile='$CA')
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', $PX), timeout=20), server_hostname='127.0.0.1')
s.sendall(b'hi'); print(s.recv(200).decode())" >"$T/rxcli.out" 2>&1 || fail "exec: the TLS client: $(cat "$T/rxcli.out" "$T/rx.err")"
wait $RX || fail "the exec'ing server failed: $(cat "$T/rx.err")"
grep -qx "after-exec-$MARK-hi" "$T/rxcli.out" || fail "exec: got $(cat "$T/rxcli.out")"
echo "ok: a listening socket inherited across exec: the new image's connection is TLS (verified by CAS's CA)"

if [ -n "$HAVE_TCPDUMP" ]; then
    capture_check_no "$CAP" "$MARK"
    echo "ok: the capture ($CAP_PACKETS packets) holds no plaintext marker"
fi
echo "PASS"
