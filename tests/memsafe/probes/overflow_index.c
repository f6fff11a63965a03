/* A heap write past the allocation by index (off-by-n in a loop bound). */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 10;
    int *a = malloc(10 * sizeof *a);
    for (int i = 0; i < n; i++) /* n is 11 in the test: one element too many */
        a[i] = i;
    printf("a[9] = %d\n", a[9]);
    free(a);
    return 0;
}
