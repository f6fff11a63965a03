/* A field written after a check of a later field of the same record, in a block that check
 * dominates: set() checks r->c (bytes 16-23); r is its own base (an argument), so that check
 * shows the object holds bytes 0-23 too, and r->a's store (bytes 0-7) needs no check of its own
 * (probes.sh counts 1 check in this file). A record too small for r->c is reported at r->c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec {
    long a, b, c;
};

__attribute__((noinline)) static void set(struct rec *r, int k)
{
    r->c = 3; /* past the end when the record is shorter than 24 bytes */
    if (k > 0)
        r->a = k;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : sizeof(struct rec);
    struct rec *r = malloc(n);
    if (!r)
        return 1;
    memset(r, 0, n);
    set(r, argc);
    printf("a %ld\n", r->a);
    free(r);
    return 0;
}
