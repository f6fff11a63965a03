#!/bin/bash
# The network shield wakes only the threads that wait for the connection that became ready
# (docs/shield.md "fork, exec and threads"). A shielded threaded Python server: one thread asleep
# in poll on its own connection, the main thread reading another connection a byte at a time, so
# that each record's rest waits in the shield (the connection becomes ready). The idle thread's
# voluntary context switches (/proc/self/task/TID/status) over 300 such reads must stay near 0:
# before, every partial read wrote the wake eventfd and woke every sleeping thread (a MariaDB
# server's connection threads, each polling its own connection, woke each other at every
# query). Then the idle thread must still wake for its own connection's data, and a thread asleep
# in poll on the busy connection itself must still be woken by the other thread's partial read
# (cas_net_fork covers the same with 300 rounds). Real TLS client: CPython's ssl.
source "$(dirname "$0")/lib.sh" "$@"
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 0; }

start_cas_p1
measure_copy MP /usr/bin/python3
PW=$(freeport)
ROUNDS=300

cat >"$T/wake.py" <<PY
import select, socket, threading, time
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", $PW)); ls.listen()
conns = {}
for _ in range(2):
    c, _ = ls.accept()
    conns[c.recv(5)] = c
idle, busy = conns[b"idle\n"], conns[b"busy\n"]
tid, asleep = [], threading.Event()
def idle_wait():
    tid.append(threading.get_native_id())
    p = select.poll(); p.register(idle.fileno(), select.POLLIN)
    asleep.set()
    while not p.poll(60000): pass
    idle.sendall(b"idle-got-" + idle.recv(100))
def switches():
    with open("/proc/self/task/%d/status" % tid[0]) as f:
        for l in f:
            if l.startswith("voluntary_ctxt_switches"): return int(l.split()[1])
t = threading.Thread(target=idle_wait); t.start()
asleep.wait(); time.sleep(0.3)  # in poll by now (were it not, it would only count fewer wakes)
s0 = switches()
busy.sendall(b"ready\n")
for i in range($ROUNDS):
    assert busy.recv(1) == b"a", i  # the rest of the record stays in the shield
    assert busy.recv(100) == b"bcdefgh\n", i
    busy.sendall(b"ok\n")
busy.sendall(b"idle-woken %d\n" % (switches() - s0))
# a thread asleep in poll on the busy connection is woken when this one leaves plaintext on it
p = select.poll(); p.register(busy.fileno(), select.POLLIN)
taken = threading.Event()
r = threading.Thread(target=lambda: (busy.recv(1), taken.set()))
r.start()
busy.sendall(b"go\n")
while True:
    done = taken.is_set()
    if not p.poll(10000): raise SystemExit("poll slept with plaintext buffered")
    if done: break
r.join()
busy.sendall(b"rest-" + busy.recv(100))
busy.close()
t.join()
idle.close()
PY
cat >"$T/net.yaml" <<YAML
name: netwake
services:
  - name: wake
    measurements: [$MP]
    command: [python3, /srv/wake.py]
    files:
      - path: /srv/wake.py
        content: |
$(yaml_file "$T/wake.py")
    network:
      certificate: tls
      listen: [{port: $PW}]
secrets:
  - {name: tls, kind: x509, common_name: wake.net, dns: [localhost], ip: [127.0.0.1]}
YAML
expect_rc 0 "$SCPCTL" session create "$T/net.yaml"
"$SCPCTL" run --session netwake --platform-key "$T/p1.key" --volume-dir "$T/vols" --service wake -- "$T/bin/python3" \
    >"$T/wake.out" 2>"$T/wake.err" &
SPID=$!
trap 'kill $SPID 2>/dev/null; cleanup' EXIT

python3 - "$PW" "$CA" "$ROUNDS" >"$T/cli.out" 2>&1 <<'PY' || fail "client: $(cat "$T/cli.out" "$T/wake.err")"
import socket, ssl, sys, time
port, ca, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca); ctx.check_hostname = False
def conn(name):
    for _ in range(200):
        try:
            raw = socket.create_connection(("127.0.0.1", port)); break
        except OSError:
            time.sleep(0.1)
    s = ctx.wrap_socket(raw, suppress_ragged_eofs=False)
    s.settimeout(60)
    s.sendall(name)
    return s, s.makefile("rb")
idle, fi = conn(b"idle\n")
busy, fb = conn(b"busy\n")
assert fb.readline() == b"ready\n"
for i in range(rounds):
    busy.sendall(b"abcdefgh\n")  # one record
    assert fb.readline() == b"ok\n", i
print(fb.readline().decode().strip())
assert fb.readline() == b"go\n"
busy.sendall(b"xyz\n")  # the poll test: the other thread takes "x"
l = fb.readline()
assert l == b"rest-yz\n", l
idle.sendall(b"wake\n")
l = fi.readline()
assert l == b"idle-got-wake\n", l
print("idle thread woken by its own connection")
PY
wait $SPID || fail "the shielded server failed: $(cat "$T/wake.err")"
cat "$T/cli.out"
n=$(sed -n 's/^idle-woken \([0-9]*\)$/\1/p' "$T/cli.out")
[ -n "$n" ] || fail "no count from the server: $(cat "$T/cli.out")"
# a wake per read would be about $ROUNDS; a few are allowed for what else may wake a thread
[ "$n" -lt 30 ] || fail "a thread asleep on another connection was woken $n times in $ROUNDS partial reads"
echo "ok: a thread asleep in poll on its own connection was woken $n times in $ROUNDS partial reads of another connection"
echo PASS
