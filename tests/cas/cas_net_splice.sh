#!/bin/bash
# splice out of a shielded socket (docs/shield.md "Served calls"): a shielded Python server
# moves what a real TLS client sends into a pipe with os.splice and answers with what came out
# of the pipe. Plaintext arrives in the pipe, never ciphertext; a pipe that is full makes a
# SPLICE_F_NONBLOCK splice fail with EAGAIN and a blocking one wait for room, and no byte of
# 200 kB sent through a 4 KiB pipe is lost or doubled; with nothing to read SPLICE_F_NONBLOCK
# gives EAGAIN; into something that is not a pipe EINVAL; tee and vmsplice on the connection
# fail cleanly (EINVAL, EBADF) and the connection keeps working.
source "$(dirname "$0")/lib.sh" "$@"
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 0; }

start_cas_p1
# ctypes (tee, vmsplice, F_SETPIPE_SZ) is a library the measurement must list (--trusted)
CTYPES=$(ls /usr/lib/python3*/lib-dynload/_ctypes.*.so 2>/dev/null | head -1)
[ -n "$CTYPES" ] || { echo "SKIP: no _ctypes module"; exit 0; }
PYT=(--trusted "$CTYPES")
measure_copy MP /usr/bin/python3 "${PYT[@]}"
PORT=$(freeport)
MARK=SCPSPLICEMARK$RANDOM$RANDOM

cat >"$T/splice.py" <<PY
import ctypes, errno, os, socket, threading, time
F_SETPIPE_SZ = 1031
NB = os.SPLICE_F_NONBLOCK
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", $PORT)); ls.listen()
def err(f):
    try:
        f(); return "none"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
# 1. a line: spliced into a pipe, read from the pipe, answered (connections that end at once,
# the test's probe, are closed: their handshake fails)
r, w = os.pipe()
while True:
    c, _ = ls.accept()
    fd = c.fileno()
    try:
        n = os.splice(fd, w, 65536)
        if n: break
    except ConnectionResetError: pass
    c.close()
c.sendall(b"spliced-%d-" % n + os.read(r, 65536))
# 2. nothing to read: EAGAIN with SPLICE_F_NONBLOCK; into /dev/null (not a pipe): EINVAL
c.sendall(b"nodata-%s-notpipe-%s\n" % (err(lambda: os.splice(fd, w, 100, flags=NB)).encode(),
          err(lambda: os.splice(fd, os.open("/dev/null", os.O_WRONLY), 100)).encode()))
# the connection into a protected file (neither end a pipe): EINVAL as from the kernel, and no
# TLS byte taken from the connection
pf = os.open("/data/f", os.O_WRONLY | os.O_CREAT, 0o600)
c.sendall(b"tofile-%s-sendfile-%s-size-%d\n" % (err(lambda: os.splice(fd, pf, 100)).encode(),
          err(lambda: os.sendfile(pf, fd, None, 100)).encode(), os.fstat(pf).st_size))
# tee and vmsplice on the connection: clean errors from the kernel, the connection unharmed
libc = ctypes.CDLL(None, use_errno=True)
def raw(nr, *a):  # a raw system call: errno name, or "none"
    if libc.syscall(nr, *a) < 0: return errno.errorcode.get(ctypes.get_errno(), "?")
    return "none"
buf = ctypes.create_string_buffer(16)
iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 16)
c.sendall(b"tee-%s-vmsplice-%s\n" % (raw(276, fd, w, 10, 0).encode(), raw(278, fd, ctypes.byref(iov), 1, 0).encode()))
c.sendall(b"then-" + c.recv(100))
# 3. 200 kB through a 4 KiB pipe that starts full
r2, w2 = os.pipe()
libc.fcntl(w2, F_SETPIPE_SZ, 4096)
os.write(w2, b"f" * 4096)
want = int(c.recv(100).split()[0])  # the client says how much, then sends it
full = err(lambda: os.splice(fd, w2, 65536, flags=NB))
threading.Thread(target=lambda: (time.sleep(0.3), os.read(r2, 4096))).start()
t0 = time.time(); first = os.splice(fd, w2, 65536)  # waits for room
waited = time.time() - t0
got = b""
while len(got) < want:
    got += os.read(r2, 65536)
    if len(got) < want:
        try: os.splice(fd, w2, 65536, flags=NB)
        except BlockingIOError: pass
same = got == bytes(i % 251 for i in range(want))
c.sendall(b"full-%s-first-%d-waited-%d-len-%d-same-%d\n" % (full.encode(), first, waited > 0.2, len(got), same))
# 4. the connection still reads normally
c.sendall(b"after-" + c.recv(100))
c.close()
PY
cat >"$T/client.py" <<PY
import socket, ssl, time
ctx = ssl.create_default_context(cafile="$CA")
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", $PORT), timeout=30), server_hostname="127.0.0.1")
f = s.makefile("rb")
s.sendall(b"line-$MARK\n")
print(f.readline().decode().strip())
print(f.readline().decode().strip())
print(f.readline().decode().strip())
s.sendall(b"next-line\n")  # what a splice into the protected file must not have taken
print(f.readline().decode().strip())
print(f.readline().decode().strip())
data = bytes(i % 251 for i in range(200000))
s.sendall(b"%d \n" % len(data))
time.sleep(0.2)
s.sendall(data)
print(f.readline().decode().strip())
s.sendall(b"end-$MARK\n")
print(f.readline().decode().strip())
PY
cat >"$T/s.yaml" <<YAML
name: netsplice
services:
  - name: splice
    measurements: [$MP]
    command: [python3, /srv/splice.py]
    files:
      - path: /srv/splice.py
        content: |
$(yaml_file "$T/splice.py")
    volumes: [data]
    network:
      certificate: tls
      listen: [{port: $PORT}]
secrets:
  - {name: tls, kind: x509, common_name: splice.test, ip: [127.0.0.1]}
volumes: [{name: data, path: /data}]
YAML
expect_rc 0 "$SCPCTL" session create "$T/s.yaml"
"$SCPCTL" run --session netsplice --service splice --platform-key "$T/p1.key" --volume-dir "$T/vols" \
    "${PYT[@]}" -- "$T/bin/python3" >"$T/srv.out" 2>"$T/srv.err" &
SRV=$!
cleanup_all() {
    kill "$SRV" 2>/dev/null
    wait "$SRV" 2>/dev/null
    cleanup
}
trap cleanup_all EXIT
for _ in $(seq 150); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT)).close()" 2>/dev/null && break
    sleep 0.1
done
timeout 60 python3 "$T/client.py" >"$T/cli.out" 2>"$T/cli.err" || fail "the client: $(cat "$T/cli.err" "$T/srv.err")"
cat "$T/cli.out"
L=$(sed -n 1p "$T/cli.out")
[ "$L" = "spliced-$((${#MARK} + 6))-line-$MARK" ] || fail "splice out of the shielded socket did not give the plaintext line: '$L' $(cat "$T/srv.err")"
echo "ok: os.splice from the shielded socket into a pipe gave the plaintext: $L"
[ "$(sed -n 2p "$T/cli.out")" = "nodata-EAGAIN-notpipe-EINVAL" ] || fail "nothing to read / not a pipe: $(sed -n 2p "$T/cli.out")"
[ "$(sed -n 3p "$T/cli.out")" = "tofile-EINVAL-sendfile-EINVAL-size-0" ] ||
    fail "splice/sendfile from the connection into a protected file: $(sed -n 3p "$T/cli.out")"
[ "$(sed -n 4p "$T/cli.out")" = "tee-EINVAL-vmsplice-EBADF" ] || fail "tee/vmsplice: $(sed -n 4p "$T/cli.out")"
[ "$(sed -n 5p "$T/cli.out")" = "then-next-line" ] || fail "the connection after the refused calls: $(sed -n 5p "$T/cli.out")"
echo "ok: SPLICE_F_NONBLOCK with nothing to read gives EAGAIN, into /dev/null EINVAL, into a protected file EINVAL (splice and sendfile, nothing taken); tee EINVAL and vmsplice EBADF"
[ "$(sed -n 6p "$T/cli.out")" = "full-EAGAIN-first-4096-waited-1-len-200000-same-1" ] ||
    fail "200 kB through a full 4 KiB pipe: $(sed -n 6p "$T/cli.out") $(cat "$T/srv.err")"
echo "ok: a full pipe gives EAGAIN with SPLICE_F_NONBLOCK, a blocking splice waits for room; 200 kB arrive whole, in order"
[ "$(sed -n 7p "$T/cli.out")" = "after-end-$MARK" ] || fail "the connection after splicing: $(sed -n 7p "$T/cli.out")"
echo "ok: the connection reads normally afterwards"
echo "PASS"
