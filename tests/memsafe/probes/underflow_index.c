/* A heap write by a negative index from a pointer into the middle of a record. The check
 * compares the address with the pointer's limit and, for an address below the pointer, asks
 * the out-of-line exact check: in bounds while the index stays inside the record (the benign
 * run writes its first byte), reported once it reaches before the record's start. */
#include <stdio.h>
#include <stdlib.h>

static char *volatile mid; /* volatile: loaded from memory, a pointer that is its own base */

int main(int argc, char **argv)
{
    long back = argc > 1 ? strtol(argv[1], NULL, 10) : 1;
    char *rec = calloc(32, 1);
    if (!rec)
        return 1;
    mid = rec + 16;
    char *m = mid;
    m[-back] = 'x'; /* before the record when back > 16 */
    printf("%d\n", rec[0]);
    free(rec);
    return 0;
}
