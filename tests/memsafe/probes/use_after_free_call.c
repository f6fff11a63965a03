/* A write to a heap object after a function it was handed to freed it. The same field was
 * written (and checked) before the call, so only forgetting that check at the call catches
 * the second write: the instrumentation may keep a check across a call only when the
 * optimizer proved that the callee frees nothing (nofree); release() frees. The two checks
 * share one lookup (instr.c, share_lookups): the second reads the limit again from the slot
 * the first found, and finds the object freed. */
#include <stdio.h>
#include <stdlib.h>

struct rec {
    long pad[2];
    int id, flags;
};

__attribute__((noinline)) static void release(struct rec *r, int really)
{
    if (really)
        free(r);
}

__attribute__((noinline)) static void show(const struct rec *r, int freed)
{
    if (!freed)
        printf("id %d\n", r->id);
}

int main(int argc, char **argv)
{
    int bad = argc > 1 && atoi(argv[1]) != 0;
    /* A size the compiler does not know: accesses into a malloc of constant size are not
     * checked at all (see docs/memsafe.md). */
    struct rec *r = malloc(sizeof *r + (size_t)(argc > 2));
    if (!r)
        return 1;
    r->id = 1;
    release(r, bad);
    r->id = 2; /* after the free when bad */
    show(r, bad);
    if (!bad)
        free(r);
    return 0;
}
