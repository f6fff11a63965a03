#!/usr/bin/env python3
"""tests/image/mc.py - a small memcached ASCII client over TLS (Debian's memcached clients,
libmemcached-tools, speak no TLS and no ASCII authentication).

  mc.py HOST PORT CAFILE USER:PASSWORD|- CMD...   CMD: set KEY VALUE | get KEY | plain
  Prints each reply's first line (get: the value, or END); '-' skips the authentication.
  'plain' connects without TLS, sends "get k" and prints what came back (or nothing)."""
import socket
import ssl
import sys


def reply(f):
    line = f.readline().decode(errors="replace").rstrip("\r\n")
    if line.startswith("VALUE "):
        n = int(line.split()[3])
        v = f.read(n + 2)[:n].decode(errors="replace")
        f.readline()  # END
        return v
    return line


def main():
    host, port, ca, cred = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    cmds = sys.argv[5:]
    if cmds == ["plain"]:
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"get k\r\n")
        try:
            print(s.recv(4096).decode(errors="replace"))
        except OSError:
            pass
        return
    ctx = ssl.create_default_context(cafile=ca)
    s = ctx.wrap_socket(socket.create_connection((host, port), timeout=10), server_hostname=host)
    f = s.makefile("rwb")
    if cred != "-":
        u, p = cred.split(":", 1)
        v = ("%s %s" % (u, p)).encode()
        f.write(b"set auth 0 0 %d\r\n%s\r\n" % (len(v), v))
        f.flush()
        print(reply(f))
    i = 0
    while i < len(cmds):
        if cmds[i] == "set":
            k, v = cmds[i + 1].encode(), cmds[i + 2].encode()
            f.write(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v))
            i += 3
        else:
            f.write(b"get %s\r\n" % cmds[i + 1].encode())
            i += 2
        f.flush()
        print(reply(f))


main()
