/* A heap write past the allocation by memcpy: the copy length comes from the input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *input = argc > 1 ? argv[1] : "short";
    char *name = malloc(16);
    memcpy(name, input, strlen(input) + 1); /* no check against 16 */
    printf("name = %.16s\n", name);
    free(name);
    return 0;
}
