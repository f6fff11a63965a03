#!/bin/bash
# A private holding's watcher thread returns when its holding ends, whoever ends it: here a
# fork (the fork's prepare ends the holding, sh_fork_share), while another process clears the
# volume's shared "wanted" word. The end sets the word and wakes the watcher, but any other
# process's scp_volume_go_private or scp_volume_try_sole clears the word once the private lock
# is gone (and the host can write it: it is not trusted), so a watcher that looked at the word
# after such a clear slept on until the next newcomer, holding one of the 16 places of the
# watcher list: after 16 such ends a new holding got no watcher and stayed shared. Each holding
# now has its own stop word, set and woken by the end of that holding (docs/shield.md).
# A clearer outside the shield writes 0 to the word (VOL_WANT_OFF 64 of the lock file,
# src/volume/internal.h) in a loop; python3 under the shield takes its holding back (a read
# 0.15 s after the fork: sh_resole_poll tries every 0.1 s), then forks a child that exits at
# once, 20 times; after each fork's end the watcher of the ended holding must be gone.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "python3 not installed: skipped"; exit 77; }
setup "$@"
run sh -c "echo pub > $MNT/pub" 2>/dev/null || fail populate
cat > "$T/forks.py" <<EOF
import os, time
while not os.path.exists("$T/clearing"): time.sleep(0.01)
def threads(): return len(os.listdir("/proc/self/task"))
most = 0
for k in range(20):
    time.sleep(0.15)
    open("$MNT/pub").read()  # private again, with a new watcher (a second thread)
    pid = os.fork()          # the fork's prepare ends the holding
    if pid == 0: os._exit(0)
    os.waitpid(pid, 0)
    # the ended holding's watcher returns at once (1 s of grace on a loaded machine)
    end = time.monotonic() + 1.0
    while threads() > 1 and time.monotonic() < end: time.sleep(0.005)
    most = max(most, threads())
time.sleep(0.15)
open("$MNT/pub").read()
n = threads()
print("ok" if most == 1 and n == 2 else "threads after the forks: at most %d, at the end %d (want 1 and 2)" % (most, n))
EOF
start_clearer
got=$(timeout 60 "$SCPCTL" run --volume "$VOL:$MNT" --key-file "$KEY" -- python3 "$T/forks.py" 2>&1 | grep -v 'development mode')
kill "$CLEARER" 2>/dev/null; wait "$CLEARER" 2>/dev/null
[ "$got" = "ok" ] || fail "watchers of ended holdings beside a cleared 'wanted' word: '$got'"
echo PASS
