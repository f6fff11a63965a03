/* Stores to the fields of one element of a heap array of records in a block and in the blocks it
 * dominates, at an index known only at run time (sqlite's interpreter: pDest->n = len, then
 * pDest->z = .. on one branch, pDest->flags = .. on the other). The instrumentation checks the
 * element whole at its first store (the element rule, instr.c scalar_access) and the later stores
 * need no check of their own. The array is one int short in the test, so the last element's last
 * field ends past the object: the store to it is in a later block, and the check at the first
 * store, of the whole element, is what reports it. */
#include <stdio.h>
#include <stdlib.h>

struct rec {
    long n, z;
    int flags, tail;
};

/* noinline: the array is an argument here, not a calloc whose size the compiler sees. */
__attribute__((noinline)) static void set(struct rec *a, size_t i, int grow)
{
    a[i].n = 5;
    if (grow) {
        a[i].z = 7;
        a[i].tail = 3; /* past the end when the array is short */
    } else {
        a[i].flags = 1;
    }
}

int main(int argc, char **argv)
{
    size_t n = 4, short_by = argc > 1 && atoi(argv[1]) != 0 ? sizeof(int) : 0;
    struct rec *a = calloc(1, n * sizeof *a - short_by);
    if (!a)
        return 1;
    set(a, n - 1, argc > 2);
    set(a, 0, 0);
    printf("n %ld z %ld flags %d\n", a[n - 1].n, a[n - 1].z, a[0].flags);
    free(a);
    return 0;
}
