/* A double free: an error path frees what the normal path frees again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse(char *buf, int fail)
{
    if (fail) {
        free(buf);
        return -1;
    }
    return 0;
}

/* The buffer is handed to the outside world, as a real program would, so the compiler cannot
 * drop the allocation. */
char *volatile last_config;

int main(int argc, char **argv)
{
    char *buf = malloc(100);
    strcpy(buf, "config");
    last_config = buf;
    int fail = argc > 1 && atoi(argv[1]);
    if (parse(buf, fail) < 0)
        printf("parse failed\n");
    free(buf);
    return 0;
}
