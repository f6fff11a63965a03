/* A write to a heap object after a call in the same loop freed it. The loop calls a function
 * that may free (step() frees the record at the iteration given on the command line), so the
 * record's limit is not read once before the loop: only where its limit is found (the address
 * of its metadata, found once before the loop) may be; each check reads the limit again, and
 * the write after the free is reported. A second, later write past the end (argument "over")
 * is reported too: the same checks, with the bounds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec {
    long pad[2];
    int n[6];
};

__attribute__((noinline)) static int step(struct rec *r, int i, int free_at)
{
    if (i == free_at) {
        free(r);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int free_at = argc > 1 && strcmp(argv[1], "over") != 0 ? atoi(argv[1]) : -1;
    int count = argc > 1 && strcmp(argv[1], "over") == 0 ? 7 : 6;
    /* A size the compiler does not know (see use_after_free_call.c). */
    struct rec *r = malloc(sizeof *r + (size_t)(argc > 2));
    if (!r)
        return 1;
    int freed = 0;
    for (int i = 0; i < count; i++) {
        r->n[i] = i; /* after the free when free_at < i; past the end at i == 6 */
        freed |= step(r, i, free_at);
    }
    if (!freed) {
        printf("%d\n", r->n[5]);
        free(r);
    }
    return 0;
}
