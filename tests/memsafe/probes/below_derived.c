/* A heap store below a pointer derived from its base by a variable offset (z = base + i, then
 * z[-1], as in a backward scan: sqlite's `while (z[-1] ...) z--`, its parser's yymsp[-k]). In
 * full mode it gets the check that finds the object's start inline (instr.c, flush_groups), in
 * harden the general one, whose out-of-line exact check decides; both report the store once it
 * lands before the record. The benign run stores at the record's first byte (i = 1); the bad
 * one a byte before it (i = 0). */
#include <stdio.h>
#include <stdlib.h>

static char *volatile rec_p; /* volatile: loaded from memory, a pointer that is its own base */

int main(int argc, char **argv)
{
    long i = argc > 1 ? strtol(argv[1], NULL, 10) : 1;
    char *rec = calloc(32, 1);
    if (!rec)
        return 1;
    rec_p = rec;
    char *b = rec_p;
    char *z = b + i;
    z[-1] = 'x'; /* before the record when i is 0 */
    printf("%d\n", rec[0]);
    free(rec);
    return 0;
}
