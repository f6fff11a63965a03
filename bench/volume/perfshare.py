#!/usr/bin/env python3
"""bench/volume/perfshare.py - read `perf script -F ip,sym,dso` output with call chains on
stdin; print each object's share of the samples (self), then each function of scp's
libraries (a dso whose name has "scp") as an inclusive share: the samples with that function
anywhere on the stack, counted once per sample. Argument: the least share printed, in %.

  perf script -i DATA -F ip,sym,dso | python3 bench/volume/perfshare.py 0.5
"""
import collections
import sys


def samples(lines):
    """Yield each sample's frames, innermost first, as (symbol, dso)."""
    cur = []
    for line in lines:
        line = line.strip()
        if not line:
            if cur:
                yield cur
            cur = []
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        sym = parts[1] if len(parts) > 2 else "?"
        cur.append((sym, parts[-1].strip("()")))
    if cur:
        yield cur


def main():
    least = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    by_dso, incl, n = collections.Counter(), collections.Counter(), 0
    for frames in samples(sys.stdin):
        n += 1
        by_dso[frames[0][1].rsplit("/", 1)[-1]] += 1
        seen = set()
        for sym, dso in frames:
            if "scp" in dso.rsplit("/", 1)[-1] and sym not in seen:
                seen.add(sym)
                incl[sym] += 1
    if not n:
        print("no samples")
        return
    print("samples: %d" % n)
    for dso, c in by_dso.most_common():
        if 100.0 * c / n >= least:
            print("self %5.1f%% %s" % (100.0 * c / n, dso))
    for sym, c in incl.most_common():
        if 100.0 * c / n >= least:
            print("incl %5.1f%% %s" % (100.0 * c / n, sym))


if __name__ == "__main__":
    main()
