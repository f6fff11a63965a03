/* Heap writes in loops that may leave early (a `break` on the input): the loop range check does
 * not cover them, so each store is checked (ms22 versioned such loops, a copy without the checks
 * taken when one range test passed; measured no gain, not kept: bench/RESULTS.md "ms22").
 *   loop_early_exit up N STOP     a[i] for i = 0 .. N-1, leaving at i == STOP: past a 16-int array
 *                                 on the last iteration (N 17), or in the middle (N 40)
 *   loop_early_exit down N STOP   a[i - 4] for i = N-1 down to 0, leaving at i < STOP: below the
 *                                 array in the middle (STOP 0: at i == 3), past it at once (N 21)
 *   loop_early_exit zero N STOP   a[i] for i = N-1 down to 0, leaving at i < STOP: past the array
 *                                 on the first iteration (N 17)
 * A STOP that ends the loop before the array's end runs silently though the bound is past it. */
#include <stdio.h>
#include <stdlib.h>

static int *a;
static unsigned char *in;

__attribute__((noinline)) static int up(int n)
{
    int i;
    for (i = 0; i < n; i++) {
        if (!in[i])
            break;
        a[i] = i * 3;
    }
    return i;
}

__attribute__((noinline)) static int down(int n)
{
    int i;
    for (i = n - 1; i >= 0; i--) {
        if (!in[i])
            break;
        a[i - 4] = i;
    }
    return i;
}

__attribute__((noinline)) static int down0(int n)
{
    int i;
    for (i = n - 1; i >= 0; i--) {
        if (!in[i])
            break;
        a[i] = i;
    }
    return i;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    char mode = argv[1][0];
    int n = atoi(argv[2]), stop = atoi(argv[3]), dir = mode == 'u';
    if (n < 0 || n > 64)
        return 2;
    a = calloc(16, sizeof *a);
    in = malloc(64);
    for (int k = 0; k < 64; k++)
        in[k] = dir ? k < stop : k >= stop;
    int i = dir ? up(n) : mode == 'd' ? down(n) : down0(n);
    printf("left at %d, a[3] = %d\n", i, a[3]);
    free(in);
    free(a);
    return 0;
}
