/* Accesses covered by an earlier check of the same pointer on every path to them (instr.c,
 * scalar_access and mem_access), which probes.sh counts (2 checks in this file):
 * - set() checks r->c (bytes 16-23); r is its own base (an argument), so that check shows the
 *   object holds bytes 0-23 too, and r->a's store (bytes 0-7), in a block the check dominates,
 *   needs no check of its own;
 * - clear()'s memset of the whole record is checked (a constant length), and covers the store
 *   to r->b after it.
 * A record too small for them is reported at the first: clear()'s memset. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec {
    long a, b, c;
};

__attribute__((noinline)) static void set(struct rec *r, int k)
{
    r->c = 3;
    if (k > 0)
        r->a = k;
}

__attribute__((noinline)) static void clear(struct rec *r, int k)
{
    memset(r, 0, sizeof *r); /* past the end when the record is shorter than 24 bytes */
    r->b = k;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : sizeof(struct rec);
    struct rec *r = malloc(n);
    if (!r)
        return 1;
    clear(r, argc);
    set(r, argc);
    printf("a %ld b %ld\n", r->a, r->b);
    free(r);
    return 0;
}
