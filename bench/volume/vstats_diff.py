#!/usr/bin/env python3
"""bench/volume/vstats_diff.py IDLE RUN N LABEL UNIT - the volume library's counters
(SCP_VOLUME_STATS files: one "vstats pid=... name=value ..." line per process) of a server's
run minus those of a start and stop alone, per UNIT (N of them in the run). Used by
bench/volume/pgbench.sh (per transaction) and pgbench_connect.sh (per connection). A sixth
argument, the run's length in seconds, adds how much of it the volume lock was held."""
import collections
import os
import sys


def sums(path):
    c, procs = collections.Counter(), 0
    try:
        for line in open(path):
            if not line.startswith('vstats '):
                continue
            procs += 1
            for kv in line.split()[2:]:
                k, v = kv.split('=')
                c[k] += int(v)
    except FileNotFoundError:
        pass
    return c, procs


idle, pi = sums(sys.argv[1])
run, pr = sums(sys.argv[2])
n = int(sys.argv[3] or 0)
label, unit = sys.argv[4], sys.argv[5]
print("  %s volume counters: %d %ss, %d processes (start and stop alone: %d), per %s "
      "(run - start/stop alone):" % (label, n, unit, pr, pi, unit))
each = run['timer_ns_each'] / max(pr, 1)
for k in run:
    if not n or k == 'timer_ns_each':
        continue
    if k.endswith('_ns'):  # CPU time in a section: microseconds per unit
        print("    %-20s %10.3f us (run %.1f ms, start/stop %.1f ms)"
              % (k, (run[k] - idle[k]) / n / 1000, run[k] / 1e6, idle[k] / 1e6))
    else:
        print("    %-20s %10.3f   (run %d, start/stop %d)" % (k, (run[k] - idle[k]) / n, run[k], idle[k]))
if n and run['timer_reads']:
    print("    (the timed sections' own clock reads: %.0f ns each, %.2f us per %s, inside the outer "
          "sections' figures)" % (each, (run['timer_reads'] - idle['timer_reads']) * each / n / 1000, unit))
# With the run's length in seconds (a 6th argument) and wall-clock sections
# (SCP_VOLUME_STATS_CLOCK=wall): how much of the run the volume lock was held, by all holders
# together (one holder at a time: a share of 1.0 is a lock never free), and how long a take
# that found it held waited on average.
if (n and len(sys.argv) > 6 and float(sys.argv[6]) > 0 and run['vol_hold_ns'] and
        os.environ.get('SCP_VOLUME_STATS_CLOCK') == 'wall'):
    secs = float(sys.argv[6])
    waits = run['ofd_lock_wait'] - idle['ofd_lock_wait']
    print("    the volume lock held %.0f%% of the run's %.0f s; %d takes of %d "
          "waited, %.0f us each on average"
          % (100 * (run['vol_hold_ns'] - idle['vol_hold_ns']) / 1e9 / secs, secs, waits,
             run['ofd_lock'] - idle['ofd_lock'],
             (run['ofd_wait_ns'] - idle['ofd_wait_ns']) / max(waits, 1) / 1000))
