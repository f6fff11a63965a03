#!/bin/bash
# bench/shield/stackusage.sh BUILD_DIR [SOURCE_DIR] - the stack frames of the shield's trap
# path (docs/shield.md, "Stack budget"): src/shield/init.c and core.c compiled again with
# BUILD_DIR's own commands (its compiler and flags) plus -fstack-usage, from SOURCE_DIR
# (default: BUILD_DIR's source tree; another tree, e.g. main's, to compare), into a
# temporary directory. Prints the frames of the functions on the exec and path-call chains,
# bytes, largest first (an inlined function has no line of its own).
set -euo pipefail
B=$(cd "${1:?usage: stackusage.sh BUILD_DIR [SOURCE_DIR]}" && pwd)
HOME_SRC=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$B/CMakeCache.txt")
SRC=$(cd "${2:-$HOME_SRC}" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$B"
ninja -t commands src/libscp-shield.so | grep -E " -c [^ ]*src/shield/(init|core)\.c" | while read -r cmd; do
    f=$(echo "$cmd" | grep -oE '[^ ]*src/shield/[a-z_]+\.c' | tail -1)
    b=$(basename "$f" .c)
    cmd=$(echo "$cmd" | sed -E "s#$HOME_SRC#$SRC#g; s# -o [^ ]+# -o $T/$b.o#; s# -MD -MT [^ ]+ -MF [^ ]+##")
    eval "$cmd -fstack-usage"
done
cat "$T"/*.su | awk -F'\t' '{ n = split($1, p, ":"); printf "%8d  %s\n", $2, p[n] }' |
    grep -E ' (on_sigsys|trap_run|trap_serve|sh_syscall|sh_syscall_|sh_execve|sh_execve_|sh_abspath|abspath_compute|sh_classify|sh_trusted_exec_check|path_run|path_call|sh_path_syscall)$' |
    sort -rn
