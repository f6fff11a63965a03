/* Correct C that stresses the pointer patterns a bounds checker must not flag: one-past-the-end
 * pointers kept in structs and walked back, pointer loops (PHIs), selects between buffers,
 * interior pointers, flexible array members, realloc'd vectors, libc-allocated buffers
 * (getline, strdup, open_memstream), zero-length copies at the end, overlapping memmove,
 * atomics and threads. It prints a checksum that must equal the plain build's. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t sum;

static void mix(uint64_t v)
{
    sum = (sum ^ v) * 0x100000001b3ULL;
}

struct span {
    unsigned char *begin, *end; /* end: one past the last byte */
};

static void fill_backwards(struct span *s)
{
    unsigned char *p = s->end;
    while (p > s->begin) {
        --p;
        *p = (unsigned char)(p - s->begin);
    }
}

struct rec {
    size_t n;
    int v[];
};

struct vec {
    int *a;
    size_t len, cap;
};

static void push(struct vec *v, int x)
{
    if (v->len == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 1;
        v->a = realloc(v->a, v->cap * sizeof *v->a);
    }
    v->a[v->len++] = x;
}

static int cmp(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

struct node {
    struct node *next;
    char key[24];
};

static _Atomic long counter;

static void *worker(void *arg)
{
    long id = (long)arg;
    for (int i = 0; i < 2000; i++) {
        size_t n = 1 + (size_t)(i * 31 + id) % 700;
        char *b = malloc(n);
        memset(b, (int)id, n);
        b[n - 1] = 0;
        atomic_fetch_add(&counter, (long)strlen(b));
        free(b);
    }
    long *cell = malloc(sizeof *cell);
    *cell = id;
    return cell;
}

/* Clears arr until it meets `stop` (bound: far past the object); returns where it stopped. */
__attribute__((noinline)) static size_t scp_test_clear_until(int *arr, size_t bound, int stop)
{
    for (size_t i = 0; i < bound; i++) {
        if (arr[i] == stop)
            return i;
        arr[i] = 0;
    }
    return bound;
}

/* A loop that is not counted (it stops at `stop`), calling only a function that frees nothing:
 * the bounds of dst and src are read once before it. Called on stack buffers (outside the
 * heap: every check passes) and on heap buffers that it fills to their last byte. */
__attribute__((noinline)) static unsigned scp_test_weight(char c)
{
    return (unsigned)(c & 0x7f) * 3u;
}

__attribute__((noinline)) static size_t scp_test_copy_until(char *dst, const char *src, char stop)
{
    size_t i = 0;
    unsigned w = 0;
    do {
        w += scp_test_weight(src[i]);
        dst[i] = src[i];
    } while (src[i++] != stop);
    return i + w;
}

struct pt {
    long x;
    short y;
};

__attribute__((noinline)) static void scp_test_fill_pts(struct pt *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i].x = (long)i;
        p[i].y = (short)(i * 2);
    }
}

int main(void)
{
    /* spans walked back from the end */
    for (size_t n = 1; n < 3000; n += 7) {
        struct span *s = malloc(sizeof *s);
        s->begin = malloc(n);
        s->end = s->begin + n;
        fill_backwards(s);
        mix(s->end[-1]);
        memcpy(s->end, "", 0); /* zero length at the end: touches nothing */
        free(s->begin);
        free(s);
    }
    /* flexible array member, select between two heap buffers */
    struct rec *a = malloc(sizeof *a + 100 * sizeof(int));
    struct rec *b = malloc(sizeof *b + 50 * sizeof(int));
    a->n = 100;
    b->n = 50;
    for (int i = 0; i < 150; i++) {
        struct rec *r = (i & 1) ? a : b;
        r->v[(size_t)i % r->n] = i;
        mix((uint64_t)r->v[(size_t)i % r->n]);
    }
    /* interior pointer kept and used with a negative offset */
    int *mid = &a->v[50];
    int *volatile kept = mid;
    kept[-50] = 7;
    kept[49] = 8;
    mix((uint64_t)(a->v[0] + a->v[99]));
    free(a);
    free(b);
    /* a realloc'd vector, sorted */
    struct vec v = { 0 };
    for (int i = 0; i < 10000; i++)
        push(&v, (i * 7919) % 10007);
    qsort(v.a, v.len, sizeof *v.a, cmp);
    for (size_t i = 0; i < v.len; i += 97)
        mix((uint64_t)v.a[i]);
    memmove(v.a + 1, v.a, (v.len - 1) * sizeof *v.a); /* overlapping */
    mix((uint64_t)v.a[v.len - 1]);
    free(v.a);
    /* a linked list of strings */
    struct node *head = NULL;
    for (int i = 0; i < 500; i++) {
        struct node *nd = calloc(1, sizeof *nd);
        snprintf(nd->key, sizeof nd->key, "key-%d", i);
        nd->next = head;
        head = nd;
    }
    while (head) {
        struct node *nx = head->next;
        char *dup = strdup(head->key);
        dup[0] = 'K';
        mix(strlen(dup) + (unsigned char)dup[4]);
        free(dup);
        free(head);
        head = nx;
    }
    /* buffers that libc allocates with our malloc */
    char *buf = NULL;
    size_t blen = 0;
    FILE *ms = open_memstream(&buf, &blen);
    for (int i = 0; i < 1000; i++)
        fprintf(ms, "line %d\n", i);
    fclose(ms);
    FILE *in = fmemopen(buf, blen, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, in)) > 0) {
        line[got - 1] = '.';
        mix((uint64_t)got);
    }
    free(line);
    fclose(in);
    free(buf);
    /* 2-D calloc'd table */
    double **m = calloc(64, sizeof *m);
    for (int i = 0; i < 64; i++) {
        m[i] = calloc(64, sizeof **m);
        for (int j = 0; j < 64; j++)
            m[i][j] = i * j;
    }
    double tr = 0;
    for (int i = 0; i < 64; i++) {
        tr += m[i][63 - i];
        free(m[i]);
    }
    free(m);
    mix((uint64_t)tr);
    /* loops whose bound lies past the object but which leave before it (no range check
     * may cover them), and loops that fill an object exactly (one range check covers them) */
    {
        size_t len = 100;
        int *arr = malloc(len * sizeof *arr);
        for (size_t i = 0; i < len; i++)
            arr[i] = (int)(i * 7);
        arr[len - 1] = -1;
        mix((uint64_t)scp_test_clear_until(arr, len * 1000, -1));
        struct pt *pts = malloc(33 * sizeof *pts);
        scp_test_fill_pts(pts, 33);
        for (size_t i = 0; i < 33; i++)
            mix((uint64_t)(pts[i].x + pts[i].y));
        free(pts);
        free(arr);
    }
    /* loops whose bases' bounds are read once before them: stack and heap buffers */
    {
        char sbuf[16], sdst[16];
        memcpy(sbuf, "stack buffer.", 14);
        mix((uint64_t)scp_test_copy_until(sdst, sbuf, '.'));
        mix((uint64_t)(unsigned char)sdst[12]);
        size_t n = 37;
        char *hsrc = malloc(n), *hdst = malloc(n);
        for (size_t i = 0; i < n; i++)
            hsrc[i] = (char)('a' + i % 26);
        hsrc[n - 1] = '!';
        mix((uint64_t)scp_test_copy_until(hdst, hsrc, '!'));
        mix((uint64_t)(unsigned char)hdst[n - 1]);
        free(hsrc);
        free(hdst);
    }
    /* threads */
    pthread_t th[4];
    for (long i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, worker, (void *)(i + 1));
    for (int i = 0; i < 4; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        mix((uint64_t)*(long *)ret);
        free(ret);
    }
    mix((uint64_t)atomic_load(&counter));
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
