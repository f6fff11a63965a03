/* Pointer parameters that only ever point outside the heap (instr.c, base_non_heap): an internal
 * function whose every call site passes a stack or global address (or such a parameter of its
 * own caller) needs no check through that parameter, since the check of a pointer outside the
 * heap always passes. What the rule must not drop: a function called with a stack array by one
 * caller and a heap array by another (put), a function called once, with a heap array
 * (put_once), and the end of a chain whose first call passes a heap array (fill_via -> fill). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

NOINLINE static void put(int *a, int i, int v)
{
    a[i] = v;
}

NOINLINE static void put_once(int *a, int i, int v)
{
    a[i] = v;
}

NOINLINE static void put_stack(int *a, int i, int v)
{
    a[i] = v;
}

NOINLINE static void fill(int *a, int i, int v)
{
    a[i] = v;
}

NOINLINE static void fill_via(int *a, int i, int v)
{
    fill(a, i, v);
}

NOINLINE static void fill_stack(int *a, int i, int v)
{
    a[i] = v + 1;
}

NOINLINE static void fill_stack_via(int *a, int i, int v)
{
    fill_stack(a, i, v);
}

static int global_a[16];

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    const char *mode = argv[1];
    int i = atoi(argv[2]);
    int local[16];
    memset(local, 0, sizeof local);
    /* A size the compiler does not know: accesses into a malloc of constant size are not checked. */
    int *heap = calloc(16 + (size_t)(argc > 3), sizeof *heap);
    if (!heap)
        return 1;
    int j = i & 15; /* in bounds of the stack and global arrays */
    put(local, j, 1);
    put_stack(local, j, 2);
    put_stack(global_a, j, 3);
    fill_stack_via(local, j, 4);
    if (!strcmp(mode, "mixed"))
        put(heap, i, 5);
    else if (!strcmp(mode, "once"))
        put_once(heap, i, 6);
    else if (!strcmp(mode, "chain"))
        fill_via(heap, i, 7);
    printf("%d %d %d %d\n", local[j], global_a[j], heap[j], heap[0]);
    free(heap);
    return 0;
}
