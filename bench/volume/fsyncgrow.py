#!/usr/bin/env python3
# bench/volume/fsyncgrow.py - what an fdatasync of a file that grew costs against one of a file
# that kept its length, on the file system of DIR (docs/volume-format.md, "Shared mode",
# preallocated journals): N appends of 8 KiB, each fdatasync'ed ("grow"), against the same N
# writes over a file laid out with written zeros first ("over", as a preallocated journal or
# PostgreSQL's WAL segment). Three rounds, alternating; median latency and the process's CPU
# (getrusage) per fdatasync.
#
#   python3 bench/volume/fsyncgrow.py DIR [N=200]
import os, resource, statistics, sys, time

d = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 200
buf = os.urandom(8192)


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(mode):
    p = os.path.join(d, "fsyncgrow-" + mode)
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    if mode == "over":
        os.pwrite(fd, bytes(N * 8192), 0)
        os.fdatasync(fd)
    ts, c = [], 0.0
    for i in range(N):
        os.pwrite(fd, buf, i * 8192)
        c0, t = cpu(), time.perf_counter()
        os.fdatasync(fd)
        ts.append(time.perf_counter() - t)
        c += cpu() - c0
    os.close(fd)
    os.unlink(p)
    return statistics.median(ts) * 1e6, c / N * 1e6


for r in range(3):
    for m in ("grow", "over"):
        med, c = run(m)
        print(f"round {r + 1} {m}: fdatasync median {med:.0f} us, CPU {c:.0f} us per call")
