/* scp-cc --memsafe zeroes the automatic variables of at most SCP_MEMSAFE_ZERO_MAX bytes (1024)
 * and leaves larger ones to the program (scp-ms-autoinit, docs/memsafe.md): this one has one
 * variable of each kind. What the program itself initializes stays initialized, in a large
 * variable too: the explicit `c.init = 0` (redis's aclKeyResultCache, whose zeroing the
 * optimizer had merged with such a store) and a large `= {0}`. dirty() first leaves non-zero
 * bytes on the stack where the variables will be. Prints "ok" or what was not zero. */
#include <stdio.h>
#include <string.h>

struct cache {
    int init;
    char buf[2044];
};

static __attribute__((noinline)) void dirty(void)
{
    volatile char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i | 1);
}

static __attribute__((noinline)) int use(struct cache *c, char *zeroed, char *small)
{
    int bad = 0;
    if (c->init != 0)
        bad |= 1;
    for (size_t i = 0; i < 4096; i++)
        if (zeroed[i])
            bad |= 2;
    for (size_t i = 0; i < 512; i++)
        if (small[i])
            bad |= 4;
    return bad;
}

static __attribute__((noinline)) int run(void)
{
    struct cache c;       /* 2048 bytes: not zeroed, but its init field is the program's */
    char zeroed[4096] = { 0 }; /* the program's own initializer: kept */
    char small[512];      /* at most 1024 bytes: zeroed */
    c.init = 0;
    return use(&c, zeroed, small);
}

int main(void)
{
    dirty();
    int bad = run();
    if (bad)
        printf("not zero:%s%s%s\n", bad & 1 ? " c.init" : "", bad & 2 ? " zeroed[]" : "", bad & 4 ? " small[]" : "");
    else
        printf("ok\n");
    return bad != 0;
}
