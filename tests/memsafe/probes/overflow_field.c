/* A write to a field of a heap record that was allocated too small for it, through a pointer
 * loaded from memory before each access (the common case in real programs: a cursor's page,
 * the current output cell). The record is 13 bytes in the test, so the last field's store
 * (bytes 12-15) ends 3 bytes past the object but inside its 16-byte size class: only an
 * exact-size check sees it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec {
    int id, flags, count, tail;
};

static struct rec *volatile cur; /* volatile: every access loads the pointer afresh */

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : sizeof(struct rec);
    cur = malloc(n);
    if (!cur)
        return 1;
    memset(cur, 0, n);
    cur->id = 1;
    cur->count = 2;
    cur->tail = 3; /* past the end when n < 16 */
    printf("id %d count %d\n", cur->id, cur->count);
    free(cur);
    return 0;
}
