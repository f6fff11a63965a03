/* A memcpy of constant length (a record copied whole, sqlite's memcpy(pTo, pFrom, MEMCELLSIZE))
 * out of a heap object too small for it: an over-read, as Heartbleed's, at a length the compiler
 * knows. The instrumentation checks such a memcpy as a scalar access of that size (instr.c,
 * mem_access): one compare for a pointer that is its own base, not the three of the check of any
 * length. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec {
    char tag[16];
    long id;
};

/* noinline: the source is an argument here, not a malloc whose size the compiler sees. */
__attribute__((noinline)) static void copy(struct rec *to, const struct rec *from)
{
    memcpy(to, from, sizeof *to);
}

int main(int argc, char **argv)
{
    size_t short_by = argc > 1 ? strtoul(argv[1], NULL, 10) : 0;
    struct rec *from = calloc(1, sizeof *from - short_by), *to = malloc(sizeof *to);
    if (!from || !to || short_by >= sizeof *from)
        return 1;
    copy(to, from);
    printf("tag %.4s id %ld\n", to->tag, to->id);
    free(from);
    free(to);
    return 0;
}
