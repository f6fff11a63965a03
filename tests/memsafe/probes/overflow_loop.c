/* A heap write past the allocation in a loop that is not counted (it stops at the end of its
 * input, not at a bound): strcpy's loop, written out, into an 8-byte record. The record's
 * bounds are read once before the loop (the loop calls nothing that could free it); each
 * store in the loop is still checked against them. */
#include <stdio.h>
#include <stdlib.h>

struct rec {
    unsigned len;
    char name[8];
};

int main(int argc, char **argv)
{
    const char *in = argc > 1 ? argv[1] : "abc";
    struct rec *r = malloc(sizeof *r);
    unsigned i = 0;
    char c;
    do {
        c = in[i];
        r->name[i] = c; /* 8 or more characters in the test: past the record */
        i++;
    } while (c != 0);
    r->len = i - 1;
    printf("%u %s\n", r->len, r->name);
    free(r);
    return 0;
}
