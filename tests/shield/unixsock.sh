#!/bin/bash
# UNIX sockets named in a protected volume (docs/shield.md, "UNIX sockets"): bind makes a socket
# node in the volume (owner, mode from the umask) and binds the kernel socket in the volume's
# rendezvous directory; connect/sendto resolve the node as the kernel would.
#  - python3: bind, connect, accept, data both ways; stream and datagram; getsockname,
#    getpeername and accept's address give the program's path; the node's lstat; rename and
#    link keep it reachable, unlink makes it unreachable (ENOENT), a node without a listener and
#    a file that is not a socket give ECONNREFUSED, bind over a name EADDRINUSE, a missing
#    directory ENOENT; another user without write permission on the node gets EACCES;
#  - redis-server with `unixsocket` in the volume, redis-cli -s and socat as clients (both in
#    the same run: only processes that see the volume see the name);
#  - nothing sent over the sockets is stored in the volume (marker scan).
. "$(dirname "$0")/lib.sh"
setup "$@"
export SCP_QUIET=1

note "python3: sockets named in the volume"
run mkdir "$MNT/run" || fail "mkdir in the volume"
run sh -c "echo x > '$MNT/run/taken'" || fail "a file in the volume"
out=$(run python3 - "$MNT" "$T" 2> "$T/py.err" <<'PY'
import errno, os, socket, stat, sys
mnt, tmp = sys.argv[1], sys.argv[2]
def err(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
def connect(p, kind=socket.SOCK_STREAM):
    c = socket.socket(socket.AF_UNIX, kind)
    c.connect(p)
    return c
os.umask(0o022)
# the errno of each bind, as the kernel gives them on a writable file system
res = []
for p in (mnt + "/run/s.sock", mnt + "/top.sock", mnt + "/nosuch/s.sock", mnt + "/run/taken",
          "\0scp-unixsock-%d" % os.getpid(), tmp + "/outside.sock"):
    res.append(err(lambda: socket.socket(socket.AF_UNIX).bind(p)))
print("bind", *res)
srv = socket.socket(socket.AF_UNIX)
srv.bind(mnt + "/run/srv.sock")
srv.listen(8)
st = os.lstat(mnt + "/run/srv.sock")
print("node", "sock" if stat.S_ISSOCK(st.st_mode) else "not-a-socket", oct(st.st_mode & 0o7777), st.st_uid == os.geteuid())
print("getsockname", srv.getsockname() == mnt + "/run/srv.sock")
c = connect(mnt + "/run/srv.sock")
a, addr = srv.accept()
c.sendall(b"SCPMARK_unix_ping")
got = a.recv(100)
a.sendall(b"SCPMARK_unix_pong")
print("data", got == b"SCPMARK_unix_ping" and c.recv(100) == b"SCPMARK_unix_pong")
print("getpeername", c.getpeername() == mnt + "/run/srv.sock", "accepted", a.getsockname() == mnt + "/run/srv.sock")
# a client bound in the volume: accept reports its path
cb = socket.socket(socket.AF_UNIX)
cb.bind(mnt + "/run/client.sock")
cb.connect(mnt + "/run/srv.sock")
a2, addr2 = srv.accept()
print("accept-address", addr2 == mnt + "/run/client.sock")
# the name moves and multiplies; the socket stays the same
os.rename(mnt + "/run/srv.sock", mnt + "/run/moved.sock")
c2 = connect(mnt + "/run/moved.sock"); srv.accept()[0].sendall(b"m")
os.link(mnt + "/run/moved.sock", mnt + "/run/linked.sock")
c3 = connect(mnt + "/run/linked.sock"); srv.accept()[0].sendall(b"l")
os.chdir(mnt + "/run")
c4 = connect("moved.sock"); srv.accept()[0].sendall(b"r")
print("rename-link-relative", c2.recv(1) + c3.recv(1) + c4.recv(1) == b"mlr",
      err(lambda: connect(mnt + "/run/srv.sock")))
# unlink of the last name removes the host socket in the rendezvous directory
host = lambda: len(os.listdir(tmp + "/vol/sock"))
n0 = host()
os.unlink(mnt + "/run/moved.sock")
n1 = host()
os.unlink(mnt + "/run/linked.sock")
print("unlinked", err(lambda: connect(mnt + "/run/moved.sock")), os.path.lexists(mnt + "/run/moved.sock"),
      "host sockets", n0 - n1, n1 - host())
# a name without a listener, a file, a directory, a path through a file
lone = socket.socket(socket.AF_UNIX); lone.bind(mnt + "/run/lone.sock"); lone.close()
print("refused", *[err(lambda: connect(mnt + p)) for p in ("/run/lone.sock", "/run/taken", "/run", "/run/taken/x")])
# datagrams by sendto, both ends named in the volume
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); d.bind(mnt + "/run/d.sock")
e = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); e.bind(mnt + "/run/e.sock")
e.sendto(b"SCPMARK_unix_dgram", mnt + "/run/d.sock")
data, frm = d.recvfrom(100)
print("dgram", data == b"SCPMARK_unix_dgram", err(lambda: e.sendto(b"x", mnt + "/run/nosuch.sock")))
# another user: write permission on the node decides (as Linux's connect)
if os.geteuid() == 0:
    srv2 = socket.socket(socket.AF_UNIX); srv2.bind(mnt + "/run/private.sock"); srv2.listen(1)
    srv3 = socket.socket(socket.AF_UNIX); srv3.bind(mnt + "/run/open.sock"); srv3.listen(1)
    os.chmod(mnt + "/run/private.sock", 0o700)
    os.chmod(mnt + "/run/open.sock", 0o777)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setgid(65534); os.setuid(65534)
        os.write(w, (err(lambda: connect(mnt + "/run/private.sock")) + " " +
                     err(lambda: connect(mnt + "/run/open.sock"))).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    print("nobody", os.read(r, 100).decode())
else:
    print("nobody EACCES ok")
PY
) || fail "python3 exited $?: $(cat "$T/py.err")"
echo "$out" | sed 's/^/  /'
want="bind ok ok ENOENT EADDRINUSE ok ok
node sock 0o755 True
getsockname True
data True
getpeername True accepted True
accept-address True
rename-link-relative True ENOENT
unlinked ENOENT False host sockets 0 1
refused ECONNREFUSED ECONNREFUSED ECONNREFUSED ENOTDIR
dgram True ENOENT
nobody EACCES ok"
[ "$out" = "$want" ] || fail "python3's view differs; want:
$want"
[ -s "$T/py.err" ] && fail "standard error: $(cat "$T/py.err")"

if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    note "redis-server with unixsocket in the volume; redis-cli -s and socat in the same run"
    cat > "$T/redis.conf" <<CONF
port 0
unixsocket $MNT/run/redis.sock
unixsocketperm 770
daemonize no
dir $MNT
appendonly no
dbfilename dump.rdb
save ""
logfile $T/redis.log
CONF
    # shellcheck disable=SC2016
    out=$(timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- sh -c '
        redis-server "$1" & pid=$!
        for _ in $(seq 1 100); do
            [ "$(redis-cli -s "$2" ping 2>/dev/null)" = PONG ] && break
            sleep 0.1
        done
        stat -c "%F %a" "$2"
        redis-cli -s "$2" set k SCPMARK_unix_redis
        printf "GET k\r\n" | socat - UNIX-CONNECT:"$2" | tr -d "\r"
        redis-cli -s "$2" save
        redis-cli -s "$2" shutdown nosave
        wait $pid
        echo "exit $?"' sh "$T/redis.conf" "$MNT/run/redis.sock" 2>&1)
    echo "$out" | sed 's/^/  /'
    want="socket 770
OK
\$18
SCPMARK_unix_redis
OK
exit 0"
    [ "$out" = "$want" ] || fail "redis over a socket in the volume; want:
$want
log: $(tail -5 "$T/redis.log")"
    "$SCPCTL" volume cat --key-file "$KEY" "$VOL" dump.rdb | grep -a -q SCPMARK_unix_redis ||
        fail "dump.rdb in the volume lacks the value"
else
    echo "SKIP redis: not installed"
fi

note "nothing sent over the sockets is in the volume"
check_no_plaintext SCPMARK_unix_ping
check_no_plaintext SCPMARK_unix_pong
check_no_plaintext SCPMARK_unix_dgram
# (the redis value is in dump.rdb, encrypted: the scan must not find it either)
check_no_plaintext SCPMARK_unix_redis
echo "  rendezvous sockets: $(ls "$VOL/sock" | wc -l) in $VOL/sock ($(stat -c %a "$VOL/sock"))"
echo PASS
