#!/bin/sh
# tests/memsafe/programs.sh SCP_CC SRC_DIR - correct programs under scp-cc: the runtime's unit
# tests (test_alloc.c, in harden and full mode), and correct.c built by make with
# CC="scp-cc --memsafe[=full]" from two translation units with dependency files (also with
# --trust-types), whose output must equal the plain build's.
set -u
scpcc=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0 pass=0

# In harden and in full mode: the runtime's policy follows the mode of the program's code.
for m in harden full; do
    def=''
    [ $m = harden ] || def=-DMS_TEST_FULL
    if "$scpcc" --memsafe=$m $def -O2 -g -Wall -Wextra -Werror -o "$tmp/test_alloc" "$src/test_alloc.c" &&
        "$tmp/test_alloc"; then
        pass=$((pass + 1))
    else
        echo "FAIL: runtime unit tests ($m)"; fail=$((fail + 1))
    fi
done

# A program's own make build: compile and link steps separate, -MD dependency files.
mkdir -p "$tmp/proj"
cp "$src/correct.c" "$tmp/proj/main.c"
cat >"$tmp/proj/extra.c" <<'C'
#include <stdlib.h>
#include <string.h>
char *scp_test_join(const char *a, const char *b);
char *scp_test_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *r = malloc(la + lb + 1);
    memcpy(r, a, la);
    memcpy(r + la, b, lb + 1);
    return r;
}
C
printf 'prog: main.o extra.o\n\t$(CC) $(CFLAGS) -o $@ main.o extra.o -lpthread\n%%.o: %%.c\n\t$(CC) $(CFLAGS) -MD -c -o $@ $<\n' >"$tmp/proj/Makefile"
ref=''
for mode in plain harden full full-types; do
    case $mode in
    plain) cc=clang-16 ;;
    harden) cc="$scpcc --memsafe" ;;
    full) cc="$scpcc --memsafe=full" ;;
    full-types) cc="$scpcc --memsafe=full --trust-types" ;;
    esac
    rm -f "$tmp/proj"/*.o "$tmp/proj"/*.d "$tmp/proj/prog"
    if ! make -s -C "$tmp/proj" CC="$cc" CFLAGS="-O2 -Wall -Werror -pthread" >"$tmp/make.log" 2>&1; then
        echo "FAIL: make with CC=$cc"; cat "$tmp/make.log"; fail=$((fail + 1)); continue
    fi
    if [ ! -s "$tmp/proj/main.d" ] || ! grep -q '^main.o:' "$tmp/proj/main.d"; then
        echo "FAIL: $mode: main.d missing or names the wrong target"; fail=$((fail + 1)); continue
    fi
    out=$("$tmp/proj/prog" 2>&1)
    rc=$?
    [ -n "$ref" ] || ref=$out
    if [ $rc -ne 0 ] || [ "$out" != "$ref" ]; then
        echo "FAIL: $mode: exit $rc, output '$out', plain '$ref'"; fail=$((fail + 1)); continue
    fi
    echo "ok   $mode: $out"
    pass=$((pass + 1))
done

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
