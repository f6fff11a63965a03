/* A loop's pointer that changes now and then (a new record every 8 iterations, in a branch),
 * with a call in the loop that may free: the address of the record's limit is found where each
 * new record is made and carried round the loop beside the pointer (instr.c, web_ctx), and each
 * check reads the limit there again. A write after the call freed the record is reported (argument
 * N: step() frees it at iteration N), and so is a write past its end (argument "over"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec {
    long pad[2];
    int n[6];
};

__attribute__((noinline)) static int step(struct rec *r, int i, int free_at)
{
    if (i == free_at) {
        free(r);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int over = argc > 1 && strcmp(argv[1], "over") == 0;
    int free_at = argc > 1 && !over ? atoi(argv[1]) : -1;
    int count = 20 + (argc > 3);
    /* A size the compiler does not know (see use_after_free_call.c). */
    size_t size = sizeof(struct rec) + (size_t)(argc > 2);
    struct rec *r = malloc(size);
    if (!r)
        return 1;
    long sum = 0;
    for (int i = 0; i < count; i++) {
        if (i % 8 == 7) {
            struct rec *next = malloc(size);
            if (!next)
                return 1;
            free(r);
            r = next;
        }
        r->n[over && i == 10 ? 6 : i % 6] = i; /* after the free at i > free_at; past the end at 10 */
        sum += r->n[i % 6];
        if (step(r, i, free_at))
            sum++;
    }
    printf("%ld\n", sum);
    free(r);
    return 0;
}
