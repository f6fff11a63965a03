#!/usr/bin/env python3
"""bench/memsafe/speedtest_ab.py - sqlite's speedtest1 binaries against each other in the same
rounds: the figure issue 17's time targets are judged on.

    bench/memsafe/speedtest_ab.py SIZE ROUNDS PLAIN BIN...     (WORK=/tmp/scp-ms-bench)

Each round runs every binary once (`--size SIZE --verify`, at nice 5), in an order rotated by
one each round (no binary always runs first or after the same one). Per binary: the median
CPU time (user + sys, microseconds, from wait4 through ru.c), the median of its per-round ratios
to PLAIN (a round's binaries ran under about the same load, so the ratio moves less than either
time), their range, the least CPU time of any round and its ratio to PLAIN's least (the other
jobs on the machine only ever add time: on a loaded machine the least moves less than the
median, bench/RESULTS.md ms21), the peak RSS likewise, the minor faults, and whether the --verify output
(timings cut) is the same as PLAIN's. The load average before and after is printed: report it.
The binaries' pages are dropped from the page cache first and each is run once unmeasured
(a file read whole is cached in large folios, whose pages a fault in the code maps together:
bench/RESULTS.md, ms19). A binary just written by the linker has dirty pages, which the drop
does not drop: sync first. Instructions, the load-independent count, are callgrind's
(bench/RESULTS.md, ms20: `valgrind --tool=callgrind BIN --size 2 DB`)."""
import os, re, statistics, subprocess, sys, time

size, rounds, bins = sys.argv[1], int(sys.argv[2]), [os.path.abspath(b) for b in sys.argv[3:]]
work = os.environ.get('WORK', '/tmp/scp-ms-bench') + '/speedtest_ab'
os.makedirs(work, exist_ok=True)
ru = work + '/ru'
if not os.path.exists(ru):
    subprocess.run(['cc', '-O2', '-o', ru, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ru.c')], check=True)
db, out = work + '/db', work + '/out'


def rm(path):
    if os.path.exists(path):
        os.unlink(path)


def verify_text(path):
    lines = open(path, errors='replace').read().splitlines()
    return '\n'.join(re.sub(r'[0-9]+\.[0-9]+s$', '', l) for l in lines if 'TOTAL' not in l.upper())


for b in bins:
    fd = os.open(b, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    rm(db)
    subprocess.run([b, '--size', '1', db], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
load = lambda: ' '.join(open('/proc/loadavg').read().split()[:3])
print('load before %s at %s' % (load(), time.strftime('%H:%M:%SZ', time.gmtime())), flush=True)
res, texts = {b: [] for b in bins}, {}
for r in range(rounds):
    k = r % len(bins)
    for b in bins[k:] + bins[:k]:
        rm(db)
        with open(out, 'wb') as o:
            subprocess.run([ru, work + '/ru.txt', b, '--size', size, '--verify', db], stdout=o, stderr=subprocess.STDOUT, check=True)
        us, rss, flt, st = map(int, open(work + '/ru.txt').read().split())
        if st != 0:
            sys.exit('%s: wait status %d (see %s)' % (b, st, out))
        t = verify_text(out)
        texts[b] = t if texts.get(b, t) == t else None
        res[b].append((us / 1e6, rss, flt))
print('load after  %s at %s' % (load(), time.strftime('%H:%M:%SZ', time.gmtime())))
med, b0 = statistics.median, bins[0]
for b in bins:
    rc = [x[0] / y[0] for x, y in zip(res[b], res[b0])]
    rm_ = [x[1] / y[1] for x, y in zip(res[b], res[b0])]
    mn = min(x[0] for x in res[b])
    print('%-14s cpu %.4f s  %.3fx [%.3f-%.3f]  min %.4f s %.3fx  rss %6d KB  %.3fx [%.3f-%.3f]  faults %6d  verify %s' % (
        os.path.basename(b), med([x[0] for x in res[b]]), med(rc), min(rc), max(rc), mn, mn / min(x[0] for x in res[b0]),
        med([x[1] for x in res[b]]), med(rm_), min(rm_), max(rm_), med([x[2] for x in res[b]]),
        'same' if texts[b] is not None and texts[b] == texts[b0] else 'DIFF'))
