/* An invalid free: a pointer into the middle of an allocation is freed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    char *line = malloc(64);
    strcpy(line, "   key=value");
    char *p = line;
    if (argc > 1)
        while (*p == ' ')
            p++; /* trimmed, and then the trimmed pointer is freed */
    printf("%s\n", p);
    free(p);
    return 0;
}
