#!/bin/bash
# The network shield's lean TLS 1.3 record layer (docs/shield.md "The lean record layer") against
# real peers: openssl s_client and s_server, which send KeyUpdate on request (`k`, and `K`
# with update_requested), session tickets and close_notify, and a Python client that forges a
# record. Server side: a shielded echo server answers s_client across both kinds of KeyUpdate
# (its own KeyUpdate must come back after `K`), sends 1 MB in one write (batches of records),
# and ends with close_notify; a record whose tag does not match ends the connection with a
# bad_record_mac alert and the layer's log line. Client side: a shielded client talks to
# s_server, whose tickets come first (OpenSSL's part), then KeyUpdates (the layer's part), and
# sees the server's close_notify as the end of the stream. SCP_NET_LEAN=0 in the policy's
# environment keeps OpenSSL's record layer: the forged record then gets OpenSSL's log line.
source "$(dirname "$0")/lib.sh" "$@"
command -v openssl >/dev/null || { echo "SKIP: no openssl"; exit 0; }

start_cas_p1
mkdir -p "$T/bin"
cp "$(readlink -f /usr/bin/python3)" "$T/bin/python3"
expect_rc 0 "$SCPCTL" platform measure -- "$T/bin/python3"
MP=$(cat "$T/last.out")
PORT=$(freeport)
PORT0=$(freeport)
SPORT=$(freeport)

# the shielded echo server: a line back in upper case, BIG: 1 MB in one sendall, BYE: close
cat >"$T/echo.py" <<'PY'
import socket, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen()
while True:
    c, _ = ls.accept()
    f = c.makefile("rb")
    try:
        for line in f:
            if line.strip() == b"BIG": c.sendall(b"x" * 1000000 + b"\n")
            elif line.strip() == b"BYE": break
            else: c.sendall(line.upper())
    except OSError as e:
        sys.stderr.write("echo: %s\n" % e)
    f.close(); c.close()
PY
# the shielded client: a reader thread prints every line; the writer sends ping1..ping4 a
# second apart (while s_server sends its KeyUpdates), then waits for the server's end
cat >"$T/client.py" <<'PY'
import socket, sys, threading, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def reader():
    f = c.makefile("rb")
    for line in f: print("got", line.decode().strip(), flush=True)
    print("eof", flush=True)
t = threading.Thread(target=reader); t.start()
for i in range(1, 5):
    c.sendall(b"ping%d\n" % i); time.sleep(1)
t.join(30)
PY
cat >"$T/lean.yaml" <<YAML
name: lean
services:
  - name: echo
    measurements: [$MP]
    command: [python3, /srv/echo.py, "$PORT"]
    files:
      - path: /srv/echo.py
        content: |
$(yaml_file "$T/echo.py")
    network:
      certificate: tls
      listen: [{port: $PORT}]
  - name: echo0
    measurements: [$MP]
    command: [python3, /srv/echo.py, "$PORT0"]
    environment: {SCP_NET_LEAN: "0"}
    files:
      - path: /srv/echo.py
        content: |
$(yaml_file "$T/echo.py")
    network:
      certificate: tls
      listen: [{port: $PORT0}]
  - name: client
    measurements: [$MP]
    command: [python3, /srv/client.py, "$SPORT"]
    files:
      - path: /srv/client.py
        content: |
$(yaml_file "$T/client.py")
    network:
      certificate: tls
      peers: [{host: 127.0.0.1, port: $SPORT, name: 127.0.0.1}]
  - name: srv
    measurements: [$MP]
    files:
      - {path: /tls.crt, content: "\$\$SCP::tls:crt\$\$"}
      - {path: /tls.key, content: "\$\$SCP::tls:key\$\$"}
secrets:
  - {name: tls, kind: x509, common_name: lean.net, dns: [localhost], ip: [127.0.0.1]}
YAML
expect_rc 0 "$SCPCTL" session create "$T/lean.yaml"
RUN=("$SCPCTL" run --session lean --platform-key "$T/p1.key" --volume-dir "$T/vols")
"${RUN[@]}" --service echo -- "$T/bin/python3" >"$T/echo.out" 2>"$T/echo.err" &
EPID=$!
"${RUN[@]}" --service echo0 -- "$T/bin/python3" >"$T/echo0.out" 2>"$T/echo0.err" &
EPID0=$!
SPID=
cleanup_all() {
    kill "$EPID" "$EPID0" $SPID 2>/dev/null; wait "$EPID" "$EPID0" $SPID 2>/dev/null
    cleanup
}
trap cleanup_all EXIT
for p in "$PORT" "$PORT0"; do
    for _ in $(seq 100); do
        openssl s_client -connect 127.0.0.1:$p -CAfile "$CA" </dev/null >/dev/null 2>&1 && break
        sleep 0.1
    done
done
kill -0 $EPID || fail "the echo server exited: $(cat "$T/echo.err")"

# s_client: data, K (update_requested), data, k, data, 1 MB, BYE (the server's close_notify)
{ echo hello1; sleep 0.5; echo K; sleep 0.5; echo hello2; sleep 0.5; echo k; sleep 0.5; echo hello3; sleep 0.5
  echo BIG; sleep 1.5; echo BYE; sleep 1; } |
    openssl s_client -connect 127.0.0.1:$PORT -CAfile "$CA" -tls1_3 -msg >"$T/sc.out" 2>"$T/sc.err"
for w in HELLO1 HELLO2 HELLO3; do
    grep -q "^$w" "$T/sc.out" || fail "s_client did not get $w: $(tail -20 "$T/sc.out"; cat "$T/sc.err" "$T/echo.err")"
done
[ "$(grep -c 'KeyUpdate' "$T/sc.out")" -ge 3 ] ||
    fail "no KeyUpdate came back after K: $(grep KeyUpdate "$T/sc.out")"
grep '<<<.*KeyUpdate' "$T/sc.out" >/dev/null || fail "the server did not answer K with its own KeyUpdate"
X=$(grep -o x "$T/sc.out" | wc -l)
[ "$X" -ge 1000000 ] || fail "1 MB came back as $X bytes"
grep -q "closed\|close notify\|CLOSE NOTIFY\|Alert.*close" "$T/sc.out" "$T/sc.err" ||
    fail "no close_notify at the end: $(tail -5 "$T/sc.out" "$T/sc.err")"
echo "ok: s_client across KeyUpdate (k, and K answered by the server), 1 MB in one write, close_notify"

# a forged record: the layer's alert and log line; with SCP_NET_LEAN=0, OpenSSL's
cat >"$T/forge.py" <<'PY'
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2]); ctx.check_hostname = False
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.settimeout(10)
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
o = ctx.wrap_bio(inc, out)
while True:
    try:
        o.do_handshake(); break
    except ssl.SSLWantReadError:
        s.sendall(out.read()); d = s.recv(65536)
        if not d: sys.exit("closed during the handshake")
        inc.write(d)
s.sendall(out.read())
o.write(b"hello\n"); rec = bytearray(out.read()); rec[-1] ^= 1; s.sendall(rec)
got = b""
while True:
    try: d = s.recv(65536)
    except ConnectionResetError: break
    if not d: break
    got += d
inc.write(got)
try:
    print("read", o.read(100)); sys.exit(1)
except ssl.SSLError as e:
    print(e.reason)
PY
python3 "$T/forge.py" "$PORT" "$CA" >"$T/forge.out" 2>&1 || fail "forged record: $(cat "$T/forge.out")"
grep -q "BAD_RECORD_MAC" "$T/forge.out" || fail "no bad_record_mac alert for a forged record: $(cat "$T/forge.out")"
grep -q "a record failed to open (bad record MAC" "$T/echo.err" ||
    fail "no log line of the lean layer for a forged record: $(cat "$T/echo.err")"
python3 "$T/forge.py" "$PORT0" "$CA" >"$T/forge0.out" 2>&1 || fail "forged record (OpenSSL): $(cat "$T/forge0.out")"
grep -q "TLS read failed" "$T/echo0.err" || fail "SCP_NET_LEAN=0: no log line of OpenSSL's: $(cat "$T/echo0.err")"
grep -q "a record failed to open" "$T/echo0.err" && fail "SCP_NET_LEAN=0 still used the lean layer"
echo "ok: a forged record gets bad_record_mac and the layer's log line; SCP_NET_LEAN=0 keeps OpenSSL's"

# the client side: s_server with the session's certificate (what `platform attest` releases)
expect_rc 0 "$SCPCTL" platform attest --key "$T/p1.key" --session lean --service srv --measurement "$MP"
python3 - "$T/last.out" "$T" <<'PY' || fail "no certificate in the attested configuration"
import json, sys
files = {f["path"]: f["content"] for f in json.load(open(sys.argv[1]))["files"]}
open(sys.argv[2] + "/srv.pem", "w").write(files["/tls.crt"])
open(sys.argv[2] + "/srv.key", "w").write(files["/tls.key"])
PY
mkfifo "$T/s.in"
openssl s_server -accept 127.0.0.1:$SPORT -tls1_3 -naccept 1 -cert "$T/srv.pem" -key "$T/srv.key" -msg \
    <"$T/s.in" >"$T/ss.out" 2>"$T/ss.err" &
SPID=$!
{ sleep 1.5; echo first-line; sleep 1; echo K; sleep 0.5; echo after-K; sleep 0.5; echo k; sleep 0.5; echo after-k
  sleep 1.5; echo Q; sleep 1; } >"$T/s.in" &
for _ in $(seq 100); do grep -q '^ACCEPT' "$T/ss.out" 2>/dev/null && break; sleep 0.05; done
"${RUN[@]}" --service client -- "$T/bin/python3" >"$T/client.out" 2>"$T/client.err" ||
    fail "the shielded client failed: $(cat "$T/client.out" "$T/client.err")"
wait $SPID 2>/dev/null
SPID=
for w in first-line after-K after-k; do
    grep -q "^got $w" "$T/client.out" || fail "the client did not get $w: $(cat "$T/client.out" "$T/client.err")"
done
grep -q "^eof" "$T/client.out" || fail "the client did not see the end: $(cat "$T/client.out")"
for i in 1 2 3 4; do
    grep -q "^ping$i" "$T/ss.out" || fail "s_server did not get ping$i: $(grep -v '^ *[0-9a-f][0-9a-f] ' "$T/ss.out" | tail -20)"
done
grep -q '<<<.*KeyUpdate' "$T/ss.out" || fail "the client did not answer K with its own KeyUpdate"
grep -q '<<<.*NewSessionTicket\|>>>.*NewSessionTicket' "$T/ss.out" || echo "note: no ticket seen in s_server's -msg"
echo "ok: a shielded client to s_server: tickets, KeyUpdate (k and K answered), the server's close_notify"
