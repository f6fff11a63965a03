#!/bin/bash
# The shield's trapped calls made from small stacks (tests/shield/smallstack.c): a
# CLONE_VM|CLONE_VFORK child on a 16 KiB stack execs (raw execve) a shell that writes a
# protected file; a thread with a 32 KiB stack makes raw path calls on the volume; a handler
# on the program's own 16 KiB sigaltstack makes them too, and finds itself on that stack. The
# SIGSYS handler serves them on a stack of its own (docs/shield.md, "Stack budget"): on the
# interrupted stack they overflowed it (SIGSEGV; glibc's posix_spawn child under clang -O3).
# A thread made with PTHREAD_STACK_MIN makes libc's calls on the volume, which the shield
# interposes; they too run their served work on the shield's stack (they overflowed the
# thread's 16 KiB, and stacks up to 48 KiB).
# usage: smallstack.sh SCPCTL MKVOL SMALLSTACK-PROGRAM
. "$(dirname "$0")/lib.sh"
setup "$1" "$2"
PROG=$3
export SCP_QUIET=1
cat_vol() { "$SCPCTL" volume cat --key-file "$KEY" "$VOL" "$1"; }

for c in clone thread altstack libc; do
    out=$(run "$PROG" "$MNT" $c 2>&1) || fail "$c: $out"
    note "$out"
done
[ "$(cat_vol spawned)" = spawned ] || fail "volume cat spawned: '$(cat_vol spawned)'"
[ "$(cat_vol thread)" = thread ] || fail "volume cat thread: '$(cat_vol thread)'"
[ "$(cat_vol altstack)" = altstack ] || fail "volume cat altstack: '$(cat_vol altstack)'"
[ "$(cat_vol libc)" = libc ] || fail "volume cat libc: '$(cat_vol libc)'"
echo PASS
