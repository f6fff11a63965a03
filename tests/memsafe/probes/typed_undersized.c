/* The trade of --trust-types (docs/memsafe.md): a store to a field of a record that was
 * allocated too small for it, through a pointer to the record type. C's effective-type rules
 * say a `struct rec *` points to a whole struct rec, so under --trust-types the store
 * `r->tail = 3` (getelementptr %struct.rec, r, 0, 3: a constant field inside sizeof(struct rec))
 * gets no check and runs past the object unreported; without the rule it is caught. The record
 * is 13 bytes in the test, so the store (bytes 12-15) ends 3 bytes past it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec {
    int id, flags, count, tail;
};

/* Not inlined: the pointer is the argument, its own base, its allocation size unknown here. */
__attribute__((noinline)) static void fill(struct rec *r)
{
    r->id = 1;
    r->count = 2;
    r->tail = 3; /* past the end when the record is smaller than 16 bytes */
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : sizeof(struct rec);
    struct rec *r = malloc(n);
    if (!r)
        return 1;
    memset(r, 0, n);
    fill(r);
    printf("id %d count %d\n", r->id, r->count);
    free(r);
    return 0;
}
