/* Facts through a PHI (instr.c, phi_facts): a pointer that two ways in load from different places
 * and both check (r->tail stored on each) is checked where they join without a check of its own
 * (join: r->a after the join, covered by both). What must stay checked: the join after a way in
 * that did not check (partial), and after one that checked and then called a function that freed
 * the object (freed: reported as a use of a freed object). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec {
    long a, b;
    int tail;
};

#define NOINLINE __attribute__((noinline))

NOINLINE static void release(struct rec *r, int really)
{
    if (really)
        free(r);
}

NOINLINE static void join(struct rec **v, int which)
{
    struct rec *r;
    if (which) {
        r = v[0];
        r->tail = 1;
    } else {
        r = v[1];
        r->tail = 2;
        r->b = 4;
    }
    r->a = 3;
}

NOINLINE static void partial(struct rec **v, int which)
{
    struct rec *r;
    if (which) {
        r = v[0];
        r->tail = 1;
    } else {
        r = v[1];
    }
    r->a = 3;
    r->tail += 5;
}

NOINLINE static void freed(struct rec **v, int which, int really)
{
    struct rec *r;
    if (which) {
        r = v[0];
        r->tail = 1;
        release(r, really);
    } else {
        r = v[1];
        r->tail = 2;
        r->b = 4;
    }
    r->tail = 3; /* after the free when really */
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    const char *mode = argv[1];
    /* Sizes the compiler does not know: accesses into a malloc of constant size are not checked. */
    size_t n = (size_t)atoi(argv[2]);
    struct rec *v[2];
    v[0] = calloc(1, sizeof(struct rec) + (size_t)(argc > 4));
    v[1] = calloc(1, n);
    if (!v[0] || !v[1])
        return 1;
    int which = argc > 3 && argv[3][0] == '1';
    int bad = n < sizeof(struct rec);
    if (!strcmp(mode, "join"))
        join(v, which);
    else if (!strcmp(mode, "partial"))
        partial(v, which);
    else if (!strcmp(mode, "freed")) {
        freed(v, which, bad);
        if (bad)
            v[0] = NULL;
    }
    printf("%ld %ld\n", v[0] ? v[0]->a : 0, bad ? 0 : v[1]->a);
    free(v[0]);
    free(v[1]);
    return 0;
}
