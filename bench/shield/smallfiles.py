"""bench/shield/smallfiles.py DIR [N] - create N small files (300 bytes, in directories of 50),
then read them all back in the same process: microseconds per file for each phase.
bench/shield/smallfiles.sh runs it natively and under the shield."""
import os
import sys
import time

d = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
t0 = time.time()
for i in range(n):
    sub = f"{d}/p{i // 50}"
    if i % 50 == 0:
        os.makedirs(sub, exist_ok=True)
    with open(f"{sub}/f{i % 50}.py", "w") as f:
        f.write("x = 1\n" * 50)
t1 = time.time()
got = 0
for root, _dirs, files in os.walk(d):
    for fn in files:
        with open(os.path.join(root, fn)) as f:
            got += len(f.read()) > 0
t2 = time.time()
print(f"create {(t1 - t0) / n * 1e6:.0f} us/file, read back {(t2 - t1) / n * 1e6:.0f} us/file ({got} files)")
