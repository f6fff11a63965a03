/* Writes to the fields of one element of a heap array of records, at an index known only at
 * run time (p[i].a, p[i].b: one field GEP each, with a variable index). The instrumentation
 * gives them one check of the bytes they span, from the element's address (instr.c,
 * element_address); the array is one int short in the test, so the last element's last field
 * ends past the object, inside its size class. */
#include <stdio.h>
#include <stdlib.h>

struct rec {
    int id, flags, count, tail;
};

/* noinline: the array is an argument here, not a calloc whose size the compiler sees. */
__attribute__((noinline)) static void fill(struct rec *a, size_t i)
{
    a[i].id = 1;
    a[i].count = 2;
    a[i].tail = 3; /* past the end when the array is short */
}

int main(int argc, char **argv)
{
    size_t n = 4, short_by = argc > 1 && atoi(argv[1]) != 0 ? sizeof(int) : 0;
    size_t i = argc > 2 ? strtoul(argv[2], NULL, 10) : n - 1;
    struct rec *a = calloc(1, n * sizeof *a - short_by);
    if (!a || i >= n)
        return 1;
    fill(a, i);
    printf("id %d count %d\n", a[i].id, a[i].count);
    free(a);
    return 0;
}
