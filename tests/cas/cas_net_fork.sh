#!/bin/bash
# The network shield's process semantics (docs/shield.md "fork, exec and threads"), with real
# programs and real TLS clients: a Python server that forks with a connection open (at a number
# above the shield's reserved descriptor range), parent and
# child both writing and the child reading; a server that execs a new image on the connection
# (it reads and answers on its stdin and stdout); both end with close_notify. Threads: one
# thread blocked reading a connection while another writes on it (a threaded server, and a
# shielded threaded client); a thread asleep in poll while another drains the socket and leaves
# plaintext in the shield. Session resumption: `openssl s_client -sess_out/-sess_in` resumes
# against a shielded server, and a shielded client's second connection to `openssl s_server
# -www` resumes (the server's status page says "Reused"). A loopback capture holds no
# plaintext marker.
source "$(dirname "$0")/lib.sh" "$@"
command -v python3 >/dev/null && command -v tcpdump >/dev/null || { echo "SKIP: no python3 or tcpdump"; exit 0; }

start_cas_p1
# the image the exec test starts is a trusted file of the measurement (docs/shield.md, trusted files)
PYEXE=$(readlink -f /usr/bin/python3)
PYT=(--trusted "$PYEXE")
measure_copy MP /usr/bin/python3 "${PYT[@]}"
PF=$(freeport)
PE=$(freeport)
PT=$(freeport)
PR=$(freeport)
PS=$(freeport)
# a CA of the test's own for `openssl s_server` (the shielded client's peer rule names it)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/tca.key" -out "$T/tca.crt" \
    -subj /CN=scp-test-ca -days 2 >/dev/null 2>&1 || fail "cannot make a test CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srv.key" -out "$T/srv.csr" \
    -subj /CN=resume.test >/dev/null 2>&1 || fail "cannot make a server key"
printf 'subjectAltName=IP:127.0.0.1\n' >"$T/srv.ext"
openssl x509 -req -in "$T/srv.csr" -CA "$T/tca.crt" -CAkey "$T/tca.key" -CAcreateserial -days 2 \
    -extfile "$T/srv.ext" -out "$T/srv.crt" >/dev/null 2>&1 || fail "cannot issue the server certificate"
MARK=SCPFORKMARK$RANDOM$RANDOM

# accepts, reads a line, answers; forks: the child writes, reads the next line and answers;
# the parent waits for it, writes again and closes
# (with 3100 descriptors open first: the connection's number lies above the shield's reserved
# range, 2048-3071, which the network shield's table covered no more: docs/shield.md "Reserved
# descriptors")
cat >"$T/fork.py" <<PY
import os, socket
# (not the resource module: an extension module that is not a trusted file cannot be mapped)
soft = int([l for l in open("/proc/self/limits") if l.startswith("Max open files")][0].split()[3])
pad = [os.open("/dev/null", os.O_RDONLY) for _ in range(3100)] if soft >= 4096 else []
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", $PF)); ls.listen()
c, _ = ls.accept()
assert not pad or c.fileno() >= 3072, c.fileno()
line = c.recv(100)
c.sendall(b"parent-before-" + line)
pid = os.fork()
if pid == 0:
    c.sendall(b"child-$MARK\\n")
    c.sendall(b"child-read-" + c.recv(100))
    os._exit(0)
os.waitpid(pid, 0)
c.sendall(b"parent-after-$MARK\\n")
c.close()
PY
# accepts, answers, puts the connection on stdin and stdout and execs a new image that answers
cat >"$T/exec.py" <<PY
import os, socket, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", $PE)); ls.listen()
c, _ = ls.accept()
c.sendall(b"before-exec-" + c.recv(100))
os.dup2(c.fileno(), 0); os.dup2(c.fileno(), 1)
os.execv("$PYEXE", ["python3", "-c", "import sys; l = sys.stdin.readline(); print('exec-' + l.strip() + '-$MARK')"])
PY
# threads: one blocks in recv while another writes (two clients), then a poll loop that must be
# woken when the other thread leaves plaintext buffered in the shield
cat >"$T/threads.py" <<PY
import select, socket, threading, time
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", $PT)); ls.listen()
def reader_writer(c):
    got = []
    r = threading.Thread(target=lambda: got.append(c.recv(100)))
    r.start()
    time.sleep(0.3)  # lets the reader block first (the order does not change what must happen)
    for i in range(3):
        c.sendall(b"tick-%d-$MARK\n" % i)
    r.join()
    c.sendall(b"reader-got-" + got[0])
    c.close()
def wake_loop(c, rounds):
    p = select.poll(); p.register(c.fileno(), select.POLLIN)
    for i in range(rounds):
        taken = threading.Event()
        t = threading.Thread(target=lambda: (c.recv(1), taken.set()))
        t.start()
        c.sendall(b"go\n")
        # poll while the other thread takes one byte: the rest of the record then waits in the
        # shield with the kernel socket empty, and a poll asleep in the kernel must be woken
        while True:
            done = taken.is_set()
            if not p.poll(10000): raise SystemExit("poll slept with plaintext buffered, round %d" % i)
            if done: break
        t.join()
        rest = c.recv(100)
        assert rest == b"bcdefgh\n", rest
        c.sendall(b"ok\n")
    c.close()
for _ in range(2):
    reader_writer(ls.accept()[0])
wake_loop(ls.accept()[0], 300)
PY
# a shielded client: one thread blocks reading while the main thread writes
cat >"$T/tclient.py" <<PY
import socket, threading, time
s = socket.create_connection(("127.0.0.1", $PT))
got = []
def rd():
    buf = b""
    while True:
        d = s.recv(4096)
        if not d: break
        buf += d
    got.append(buf)
t = threading.Thread(target=rd); t.start()
time.sleep(0.5)
s.sendall(b"stop\n")
t.join()
print(got[0].decode(), end="")
PY
# serves connections until killed: reads a line, answers it, closes
cat >"$T/resume.py" <<PY
import socket
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", $PR)); ls.listen()
while True:
    c, _ = ls.accept()
    try: c.sendall(b"echo-" + c.recv(100))
    except OSError: pass
    c.close()
PY
# a shielded client: two connections to the same server, one after the other
cat >"$T/rclient.py" <<PY
import socket
for i in range(2):
    s = socket.create_connection(("127.0.0.1", $PS))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    page = b""
    while True:
        d = s.recv(65536)
        if not d: break
        page += d
    s.close()
    print("connection", i + 1, "Reused" if b"Reused, TLS" in page else "New" if b"New, TLS" in page else page)
PY
cat >"$T/net.yaml" <<YAML
name: netfork
services:
  - name: fork
    measurements: [$MP]
    command: [python3, /srv/fork.py]
    files:
      - path: /srv/fork.py
        content: |
$(yaml_file "$T/fork.py")
    network:
      certificate: tls
      listen: [{port: $PF}]
  - name: exec
    measurements: [$MP]
    command: [python3, /srv/exec.py]
    files:
      - path: /srv/exec.py
        content: |
$(yaml_file "$T/exec.py")
    network:
      certificate: tls
      listen: [{port: $PE}]
  - name: threads
    measurements: [$MP]
    command: [python3, /srv/threads.py]
    files:
      - path: /srv/threads.py
        content: |
$(yaml_file "$T/threads.py")
    network:
      certificate: tls
      listen: [{port: $PT}]
  - name: tclient
    measurements: [$MP]
    command: [python3, /srv/tclient.py]
    files:
      - path: /srv/tclient.py
        content: |
$(yaml_file "$T/tclient.py")
    network:
      certificate: tls
      peers: [{host: 127.0.0.1, port: $PT, name: 127.0.0.1}]
  - name: resume
    measurements: [$MP]
    command: [python3, /srv/resume.py]
    files:
      - path: /srv/resume.py
        content: |
$(yaml_file "$T/resume.py")
    network:
      certificate: tls
      listen: [{port: $PR}]
  - name: rclient
    measurements: [$MP]
    command: [python3, /srv/rclient.py]
    files:
      - path: /srv/rclient.py
        content: |
$(yaml_file "$T/rclient.py")
    network:
      peers: [{host: 127.0.0.1, port: $PS, name: 127.0.0.1, ca: testca}]
secrets:
  - name: testca
    kind: explicit
    value: |
$(sed 's/^/      /' "$T/tca.crt")
  - {name: tls, kind: x509, common_name: fork.net, dns: [localhost], ip: [127.0.0.1]}
YAML
expect_rc 0 "$SCPCTL" session create "$T/net.yaml"
RUN=("$SCPCTL" run --session netfork --platform-key "$T/p1.key" --volume-dir "$T/vols")
PIDS=()
cleanup_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    cleanup
}
trap cleanup_all EXIT

CAP=$T/lo.pcap
capture_start "$CAP" "tcp port $PF or tcp port $PE or tcp port $PT or tcp port $PR or tcp port $PS"

# A real TLS client (CPython's ssl): suppress_ragged_eofs=False, so a TCP end without
# close_notify is an error (SSLEOFError), not an end.
cat >"$T/client.py" <<'PY'
import socket, ssl, sys, time
port, ca, steps = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
ctx = ssl.create_default_context(cafile=ca); ctx.check_hostname = False
for _ in range(200):
    try:
        raw = socket.create_connection(("127.0.0.1", port)); break
    except OSError:
        time.sleep(0.1)
s = ctx.wrap_socket(raw, suppress_ragged_eofs=False)
s.settimeout(30)
got = b""
for st in steps:  # "send:TEXT" sends TEXT and a newline; "wait:TEXT" reads until TEXT has come
    kind, text = st.split(":", 1)
    if kind == "send":
        s.sendall(text.encode() + b"\n")
    else:
        while text.encode() not in got:
            try: d = s.recv(4096)
            except ssl.SSLError as e: raise SystemExit("%s before %r: %r" % (e, text, got))
            if not d: raise SystemExit("ended before %r: %r" % (text, got))
            got += d
while True:
    try: d = s.recv(4096)
    except ssl.SSLError as e: raise SystemExit("%s at the end: %r" % (e, got))
    if not d: break
    got += d
sys.stdout.write(got.decode())
print("END: close_notify")
PY

"${RUN[@]}" "${PYT[@]}" --service fork -- "$T/bin/python3" >"$T/fork.out" 2>"$T/fork.err" &
FPID=$!
PIDS+=($FPID)
python3 "$T/client.py" "$PF" "$CA" send:hello "wait:child-$MARK" send:second >"$T/forkcli.out" 2>&1 ||
    fail "fork: the client failed: $(cat "$T/forkcli.out" "$T/fork.err")"
wait $FPID || fail "the forking server failed: $(cat "$T/fork.err")"
printf 'parent-before-hello\nchild-%s\nchild-read-second\nparent-after-%s\nEND: close_notify\n' "$MARK" "$MARK" >"$T/fork.want"
cmp -s "$T/forkcli.out" "$T/fork.want" || fail "fork: the client got: $(cat "$T/forkcli.out"; cat "$T/fork.err")"
echo "ok: a server that forks with a TLS connection open: parent and child both write, the child reads, close_notify at the end"

"${RUN[@]}" "${PYT[@]}" --service exec -- "$T/bin/python3" >"$T/exec.out" 2>"$T/exec.err" &
EPID=$!
PIDS+=($EPID)
python3 "$T/client.py" "$PE" "$CA" send:hi "wait:before-exec-hi" send:there >"$T/execcli.out" 2>&1 ||
    fail "exec: the client failed: $(cat "$T/execcli.out" "$T/exec.err")"
wait $EPID || fail "the exec'ing server failed: $(cat "$T/exec.err")"
printf 'before-exec-hi\nexec-there-%s\nEND: close_notify\n' "$MARK" >"$T/exec.want"
cmp -s "$T/execcli.out" "$T/exec.want" || fail "exec: the client got: $(cat "$T/execcli.out"; cat "$T/exec.err")"
echo "ok: exec keeps an established TLS connection: the new image reads and answers on it, close_notify at the end"

"${RUN[@]}" "${PYT[@]}" --service threads -- "$T/bin/python3" >"$T/threads.out" 2>"$T/threads.err" &
TPID=$!
PIDS+=($TPID)
python3 "$T/client.py" "$PT" "$CA" "wait:tick-2-$MARK" send:stop >"$T/thrcli.out" 2>&1 ||
    fail "threads: the client failed: $(cat "$T/thrcli.out" "$T/threads.err")"
printf 'tick-0-%s\ntick-1-%s\ntick-2-%s\nreader-got-stop\nEND: close_notify\n' "$MARK" "$MARK" "$MARK" >"$T/thr.want"
cmp -s "$T/thrcli.out" "$T/thr.want" || fail "threads: the client got: $(cat "$T/thrcli.out" "$T/threads.err")"
echo "ok: a threaded server writes on a connection while another thread is blocked reading it"
timeout 60 "${RUN[@]}" "${PYT[@]}" --service tclient -- "$T/bin/python3" >"$T/tclient.out" 2>"$T/tclient.err" ||
    fail "the shielded threaded client failed: $(cat "$T/tclient.out" "$T/tclient.err" "$T/threads.err")"
printf 'tick-0-%s\ntick-1-%s\ntick-2-%s\nreader-got-stop\n' "$MARK" "$MARK" "$MARK" >"$T/tc.want"
cmp -s "$T/tclient.out" "$T/tc.want" || fail "threads: the shielded client got: $(cat "$T/tclient.out" "$T/tclient.err")"
echo "ok: a shielded threaded client writes while its other thread is blocked reading (both ends shielded)"
python3 - "$PT" "$CA" >"$T/wakecli.out" 2>&1 <<'PY' || fail "wake: $(cat "$T/wakecli.out" "$T/threads.err")"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2]); ctx.check_hostname = False
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
s.settimeout(30)
f = s.makefile("rb")
for i in range(300):
    assert f.readline() == b"go\n"
    s.sendall(b"abcdefgh\n")
    assert f.readline() == b"ok\n", i
print("300 rounds")
PY
wait $TPID || fail "the threaded server failed: $(cat "$T/threads.err")"
echo "ok: a thread asleep in poll is woken when another thread leaves plaintext in the shield ($(cat "$T/wakecli.out"))"

# resumption, server side: s_client's second connection offers the first one's ticket
"${RUN[@]}" "${PYT[@]}" --service resume -- "$T/bin/python3" >"$T/resume.out" 2>"$T/resume.err" &
RPID=$!
PIDS+=($RPID)
sc() { (echo "$1"; sleep 1) | timeout 20 openssl s_client -connect "127.0.0.1:$PR" -CAfile "$T/data/service-ca.crt" \
    -verify_return_error -ign_eof "${@:2}" 2>&1; }
for _ in $(seq 100); do
    sc first -sess_out "$T/sess.pem" >"$T/sc1.out"
    grep -q "echo-first" "$T/sc1.out" && break
    sleep 0.2
done
grep -q "^New, TLSv1.3" "$T/sc1.out" || fail "s_client's first connection: $(cat "$T/sc1.out" "$T/resume.err")"
sc second -sess_in "$T/sess.pem" >"$T/sc2.out"
grep -q "echo-second" "$T/sc2.out" || fail "s_client -sess_in: no answer: $(cat "$T/sc2.out" "$T/resume.err")"
grep -q "^Reused, TLSv1.3" "$T/sc2.out" || fail "s_client -sess_in did not resume: $(grep -E '^(New|Reused)' "$T/sc1.out" "$T/sc2.out")"
echo "ok: openssl s_client -sess_in resumes against the shielded server ($(grep -o '^Reused, TLSv1.3' "$T/sc2.out"))"
kill $RPID 2>/dev/null

# resumption, client side: a shielded client's second connection to openssl s_server resumes
openssl s_server -accept "$PS" -cert "$T/srv.crt" -key "$T/srv.key" -www -naccept 2 >"$T/ss.out" 2>&1 &
SPID=$!
PIDS+=($SPID)
for _ in $(seq 100); do grep -q ACCEPT "$T/ss.out" && break; sleep 0.1; done
timeout 60 "${RUN[@]}" "${PYT[@]}" --service rclient -- "$T/bin/python3" >"$T/rclient.out" 2>"$T/rclient.err" ||
    fail "the shielded client failed: $(cat "$T/rclient.out" "$T/rclient.err" "$T/ss.out")"
printf 'connection 1 New\nconnection 2 Reused\n' >"$T/rc.want"
cmp -s "$T/rclient.out" "$T/rc.want" || fail "the shielded client's connections: $(cat "$T/rclient.out" "$T/rclient.err")"
echo "ok: a shielded client's second connection to openssl s_server resumes the first one's session (full handshakes: 1 of 2)"

capture_check_no "$CAP" "$MARK"
echo "ok: the capture ($CAP_PACKETS packets) holds no plaintext marker"
