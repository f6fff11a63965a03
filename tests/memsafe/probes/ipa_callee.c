/* The interprocedural rule (instr.c, ipa_record): an internal function whose every call site
 * had checked the range the function accesses through a pointer argument, with no call that may
 * free between the check and the call, needs no check of its own there. What it must not drop:
 * a callee with one caller that checked and one that did not (mixed), a callee called once by a
 * caller that did not check (once), a callee whose only caller checked, then called a function
 * that freed the object (freed). And what it may drop: set_b()'s check, after cover() stored
 * r->tail, which covers r->b (covered: the overflow is reported at cover()'s store). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec {
    long a, b;
    int tail;
};

#define NOINLINE __attribute__((noinline))

/* `+=`: the callee reads the field too, so that the caller's store before the call is not
 * removed as overwritten (its check would go with it). */
NOINLINE static void set_tail(struct rec *r, int v)
{
    r->tail += v;
}

NOINLINE static void set_tail_once(struct rec *r, int v)
{
    r->tail += v;
}

NOINLINE static void set_tail_freed(struct rec *r, int v)
{
    r->tail += v;
}

NOINLINE static void set_b(struct rec *r, long v)
{
    r->b += v;
}

NOINLINE static void release(struct rec *r, int really)
{
    if (really)
        free(r);
}

NOINLINE static void checked(struct rec *r)
{
    r->tail = 1;
    set_tail(r, 1);
}

NOINLINE static void unchecked(struct rec *r)
{
    set_tail(r, 2);
}

NOINLINE static void cover(struct rec *r)
{
    r->tail = 5;
    set_b(r, 6);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    const char *mode = argv[1];
    /* A size the compiler does not know: accesses into a malloc of constant size are not checked. */
    size_t n = (size_t)atoi(argv[2]);
    struct rec *r = malloc(n);
    if (!r)
        return 1;
    memset(r, 0, n < sizeof *r ? n : sizeof *r);
    int bad = n < sizeof *r;
    if (!strcmp(mode, "mixed")) {
        if (argc > 3)
            checked(r);
        else
            unchecked(r);
    } else if (!strcmp(mode, "once")) {
        set_tail_once(r, 3);
    } else if (!strcmp(mode, "freed")) {
        r->tail = 0;
        release(r, n == 0 || argc > 3);
        set_tail_freed(r, 4); /* after the free when argc > 3 */
        printf("tail %d\n", argc > 3 ? 0 : r->tail);
        if (argc <= 3)
            free(r);
        return 0;
    } else if (!strcmp(mode, "covered")) {
        cover(r);
    }
    printf("a %ld b %ld tail %d\n", bad ? 0 : r->a, bad ? 0 : r->b, bad ? 0 : r->tail);
    free(r);
    return 0;
}
