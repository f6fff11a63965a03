#!/bin/bash
# EPOLLEXCLUSIVE on a shielded listening socket (docs/shield.md "Readiness"): a shielded Python
# server forks four workers that each wait in their own epoll set on the one listening socket
# (EPOLLIN | EPOLLEXCLUSIVE, non-blocking accept, as nginx with accept_mutex off); 40 TLS
# clients one after the other and 40 at once (a real TLS client, Python's ssl) each get exactly
# one answer, every request is served exactly once, and a second round of 80 is served too (no
# worker hangs in a handshake or after an accept that lost the race).
source "$(dirname "$0")/lib.sh" "$@"
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 0; }

start_cas_p1
measure_copy MP /usr/bin/python3
PORT=$(freeport)

cat >"$T/prefork.py" <<PY
import os, select, socket, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", $PORT)); ls.listen(128); ls.setblocking(False)
def worker(n):
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
    while True:
        ep.poll()
        try:
            c, _ = ls.accept()
        except BlockingIOError:
            print("worker %d lost the race" % n, flush=True)
            continue
        try:
            c.settimeout(10)
            req = c.recv(100)
            if req:
                c.sendall(b"worker-%d-%d-" % (n, os.getpid()) + req)
                print("served %s by %d" % (req.decode().strip(), n), flush=True)
        except OSError as e:
            print("worker %d: %s" % (n, e), flush=True)
        c.close()
pids = []
for n in range(4):
    pid = os.fork()
    if pid == 0:
        worker(n)
    pids.append(pid)
print("workers " + " ".join(map(str, pids)), flush=True)
for p in pids: os.waitpid(p, 0)
PY
cat >"$T/client.py" <<PY
import socket, ssl, sys, threading
ctx = ssl.create_default_context(cafile="$CA")
def one(i, out):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", $PORT), timeout=20), server_hostname="127.0.0.1")
    s.sendall(b"req-%s\n" % i.encode())
    got = b""
    while True:
        d = s.recv(100)
        if not d: break
        got += d
    out.append(got.decode().strip())
    s.close()
res = []
for i in range(40): one("s%d" % i, res)
ts = [threading.Thread(target=one, args=("c%d" % i, res)) for i in range(40)]
for t in ts: t.start()
for t in ts: t.join()
for r in res: print(r)
PY
cat >"$T/s.yaml" <<YAML
name: netepollex
services:
  - name: prefork
    measurements: [$MP]
    command: [python3, /srv/prefork.py]
    files:
      - path: /srv/prefork.py
        content: |
$(yaml_file "$T/prefork.py")
    network:
      certificate: tls
      listen: [{port: $PORT}]
secrets:
  - {name: tls, kind: x509, common_name: prefork.test, ip: [127.0.0.1]}
YAML
expect_rc 0 "$SCPCTL" session create "$T/s.yaml"
"$SCPCTL" run --session netepollex --service prefork --platform-key "$T/p1.key" --volume-dir "$T/vols" \
    -- "$T/bin/python3" >"$T/srv.out" 2>"$T/srv.err" &
SRV=$!
cleanup_all() {
    kill "$SRV" 2>/dev/null
    wait "$SRV" 2>/dev/null
    cleanup
}
trap cleanup_all EXIT
for _ in $(seq 150); do grep -q "^workers" "$T/srv.out" 2>/dev/null && break; sleep 0.1; done
grep -q "^workers" "$T/srv.out" || fail "the workers did not start: $(cat "$T/srv.err")"
timeout 120 python3 "$T/client.py" >"$T/cli.out" 2>"$T/cli.err" || fail "the clients (a worker hung?): $(tail -5 "$T/cli.err"; tail -5 "$T/srv.out" "$T/srv.err")"
[ "$(grep -c '^worker-[0-3]-[0-9]*-req-[sc][0-9]*$' "$T/cli.out")" = 80 ] || fail "not 80 answers: $(sort "$T/cli.out" | uniq -c | head)"
for i in $(seq 0 39); do
    for k in s c; do
        [ "$(grep -c "^served req-$k$i by" "$T/srv.out")" = 1 ] || fail "req-$k$i served $(grep -c "^served req-$k$i by" "$T/srv.out") times"
    done
done
W=$(sed -n 's/^served req-[sc][0-9]* by //p' "$T/srv.out" | sort -u | tr '\n' ' ')
echo "ok: 80 TLS connections (40 one after the other, 40 at once), each accepted and served once; workers that served: $W; races lost: $(grep -c 'lost the race' "$T/srv.out")"
grep "^worker [0-3]: " "$T/srv.out" && fail "a worker's connection failed"
timeout 30 python3 "$T/client.py" >"$T/cli2.out" 2>"$T/cli2.err" || fail "the second round: $(tail -3 "$T/cli2.err")"
[ "$(grep -c '^worker-' "$T/cli2.out")" = 80 ] || fail "second round: not 80 answers"
echo "ok: a second round of 80 is served too (no worker hangs)"
echo "PASS"
