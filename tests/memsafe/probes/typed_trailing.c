/* What --trust-types still checks (docs/memsafe.md): a store into a struct's trailing array
 * (`char data[1]`, the pre-C99 flexible array: allocated as offsetof(struct msg, data) + n) is
 * indexed memory, not a field, even at the constant index 0 (getelementptr %struct.msg, m, 0, 1,
 * 0 walks the array): it stays checked with the rule on. With n = 0 the store is one byte past
 * the 4-byte object. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

struct msg {
    int len;
    char data[1];
};

__attribute__((noinline)) static void put(struct msg *m, int len)
{
    m->len = len;
    m->data[0] = 'x'; /* past the end when len is 0 */
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1;
    struct msg *m = malloc(offsetof(struct msg, data) + (size_t)n);
    if (!m)
        return 1;
    put(m, n);
    printf("len %d\n", m->len);
    free(m);
    return 0;
}
