#!/usr/bin/env python3
# bench/volume/fsyncsize.py - does a flush cost more when a commit covers more blocks? An
# fdatasync after each of N writes into a file laid out with written zeros first (no growth,
# as PostgreSQL's WAL segment and the volume's preallocated journal), for the shapes of a
# PostgreSQL WAL write on plain disk and under the volume (docs/volume-format.md, "Shared
# mode"): "page" an 8 KiB page rewritten 8 times and then the next (two blocks a flush),
# "page4k" the same with 4 KiB, "append" 8 KiB appends, "journal" the volume's journal append
# of one 8 KiB chunk (8,548 bytes) and its 281-byte commit record (three blocks a flush, each
# flush rewriting the last one's partial block), "journal-pad" the same padded to a block.
# Three rounds, alternating; median and mean latency per fdatasync.
#
#   python3 bench/volume/fsyncsize.py DIR [N=300]
import os, statistics, sys, time

d = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 300
buf = os.urandom(16384)


def run(mode):
    p = os.path.join(d, "fsyncsize-" + mode)
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.pwrite(fd, bytes(N * 12288 + 65536), 0)
    os.fdatasync(fd)
    ts, off = [], 0
    for i in range(N):
        if mode == "page":
            os.pwrite(fd, buf[:8192], (i // 8) * 8192)
        elif mode == "page4k":
            os.pwrite(fd, buf[:4096], (i // 8) * 4096)
        elif mode == "append":
            os.pwrite(fd, buf[:8192], off)
            off += 8192
        else:
            os.pwrite(fd, buf[:8548], off)
            os.pwrite(fd, buf[:281], off + 8548)
            off += 12288 if mode == "journal-pad" else 8829
        t = time.perf_counter()
        os.fdatasync(fd)
        ts.append(time.perf_counter() - t)
    os.close(fd)
    os.unlink(p)
    return statistics.median(ts) * 1e6, statistics.mean(ts) * 1e6


for r in range(3):
    for m in ("page", "page4k", "append", "journal", "journal-pad"):
        med, mean = run(m)
        print(f"round {r + 1} {m:11s}: fdatasync median {med:.0f} us, mean {mean:.0f} us", flush=True)
