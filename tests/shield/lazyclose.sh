#!/bin/sh
# A new file's close under the shield commits without a sync (scp_volume_set_lazy_close;
# docs/volume-format.md, "Lazy close"), as a close on a file system does: Debian's python3
# creates 200 small files in a protected volume; the volume library's counters
# (SCP_VOLUME_STATS) must show a lazy commit per close and a handful of flushes in all (each
# close was a durable commit before: at least one flush per file), and a second run reads every
# file back. Then a program that creates files in a loop is killed (SIGKILL): every file it
# closed reads back whole in the next run, the one it was writing is whole or empty, the volume
# verifies, and the backing directory holds no plaintext.
. "$(dirname "$0")/lib.sh"
setup "$@"
PY=/usr/bin/python3
[ -x $PY ] || { echo "SKIP: python3 missing"; exit 77; }
export SCP_QUIET=1
M=SCPMARK_lazy_c10se_7f3a
N=200

cat >"$T/make.py" <<EOF
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
i = 0
while n < 0 or i < n:
    with open(f"{d}/f{i}", "w") as f:
        f.write(f"$M {i}\n" * (1 + i % 300))
    i += 1
EOF
cat >"$T/check.py" <<EOF
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
names = sorted(os.listdir(d), key=lambda s: int(s[1:]))
if n >= 0 and len(names) != n:
    sys.exit(f"{len(names)} files, not {n}")
last = len(names) - 1
for k, name in enumerate(names):
    i = int(name[1:])
    if i != k:
        sys.exit(f"file f{k} is missing (found {name})")
    got = open(f"{d}/{name}").read()
    want = f"$M {i}\n" * (1 + i % 300)
    if got != want and not (n < 0 and k == last and got == ""):
        sys.exit(f"{name}: {len(got)} bytes, not the {len(want)} written")
print(len(names))
EOF

note "$N new files closed: lazy commits, few flushes"
SCP_VOLUME_STATS=$T/stats run $PY "$T/make.py" "$MNT/a" $N || fail "python could not create the files"
lazy=$(tr ' ' '\n' <"$T/stats" | sed -n 's/^commit_lazy=//p' | head -1)
flushes=$(tr ' ' '\n' <"$T/stats" | sed -n 's/^flush=//p' | head -1)
echo "lazy commits ${lazy:-none}, flushes ${flushes:-none}"
[ "${lazy:-0}" -ge $N ] || fail "$N closes made ${lazy:-no} lazy commits"
[ "${flushes:-999}" -le 10 ] || fail "$N closes made ${flushes:-no count of} flushes (a durable commit each?)"
got=$(run $PY "$T/check.py" "$MNT/a" $N) || fail "the files read back wrong in the next run: $got"
[ "$got" = $N ] || fail "read back $got files, not $N"
"$SCPCTL" volume verify --key-file "$KEY" "$VOL" >/dev/null || fail "verify after the lazy closes"

note "a program killed while it creates files"
run $PY "$T/make.py" "$MNT/k" -1 &
pid=$!
i=0
while [ $i -lt 100 ]; do # (until it has closed a few hundred files, at most 10 s)
    c=$(ls "$VOL/objects" 2>/dev/null | wc -l)
    [ "$c" -gt 1500 ] && break
    sleep 0.1
    i=$((i + 1))
done
pkill -KILL -f "$T/make.py" || fail "the writer was not running"
wait $pid 2>/dev/null
got=$(run $PY "$T/check.py" "$MNT/k" -1) || fail "after the kill: $got"
echo "the killed program's files read back: $got"
[ "$got" -gt 100 ] || fail "only $got files before the kill"
"$SCPCTL" volume verify --key-file "$KEY" "$VOL" >/dev/null || fail "verify after the kill"
check_no_plaintext "$M"
echo "PASS"
