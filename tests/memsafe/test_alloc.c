/* Unit tests of the memsafe runtime, built with scp-cc --memsafe (so the program runs on the
 * memsafe malloc and its accesses are checked). Violations are tested in forked children:
 * each must die by SIGABRT with the report on stderr. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/memsafe/rt/layout.h"

static int failures;

#define EXPECT(cond)                                                                     \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);              \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

/* The bytes are touched through a pointer the compiler cannot see through. */
static void *(*volatile opaque)(void *, int, size_t) = memset;

/* Run fn(arg) in a child; true if it aborted with `needle` in its stderr. */
static int aborts_with(void (*fn)(size_t), size_t arg, const char *needle)
{
    int fds[2];
    if (pipe(fds) != 0)
        return 0;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    char buf[2048];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof buf - 1 && (r = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)r;
    buf[len] = 0;
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    int ok = WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(buf, needle) != NULL;
    if (!ok)
        fprintf(stderr, "child (arg %zu) did not abort with '%s'; stderr: %s\n", arg, needle, buf);
    return ok;
}

/* Every size up to 5000 and a spread above: the whole object is usable, and one byte past
 * it (in the class's rounding, or the next object) is reported with its exact size. */
static void write_past_end(size_t n)
{
    char *p = malloc(n);
    opaque(p, 0, n);
    p[n] = 1;
}

static void test_sizes(void)
{
    for (size_t n = 0; n <= 5000; n++) {
        unsigned char *p = malloc(n);
        EXPECT(p != NULL);
        EXPECT(((uintptr_t)p & 15) == 0);
        EXPECT(malloc_usable_size(p) == n);
        opaque(p, 0xa5, n);
        if (n > 0)
            p[n - 1] = 7; /* the last byte: in bounds */
        free(p);
    }
    for (size_t n = 5001; n < (size_t)300 << 20; n = n * 3 / 2 + 11) {
        unsigned char *p = malloc(n);
        EXPECT(p != NULL);
        p[0] = 1;
        p[n - 1] = 2;
        free(p);
    }
    static const size_t probes[] = { 1, 15, 16, 17, 100, 128, 4095, 4096, 10000, 1000000 };
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
        EXPECT(aborts_with(write_past_end, probes[i], "heap buffer overflow"));
}

/* A store through its argument: the check's base is the pointer passed, wherever it points. */
static void poke_byte(unsigned char *q)
{
    *q = 3;
}
static void (*volatile poke)(unsigned char *) = poke_byte;

/* Objects sit at multiples of their class size from address 0 and a check finds a base's object
 * by multiplying by the size's reciprocal (layout.h): a pointer to the last bytes of an object of
 * a class above 1 MiB that is not a power of two would find the next object's index unless the
 * class keeps those bytes unused. For every class from 1 MiB up, a request of its size less
 * the extra byte (the largest it could hold): pointers to the last bytes are their object's,
 * and one past its end is an overflow. */
static void write_past_big_end(size_t n)
{
    unsigned char *p = malloc(n);
    poke(p + n);
}

static void test_big_classes(void)
{
    for (size_t pow = (size_t)1 << 20; pow < (size_t)1 << 28; pow *= 2) {
        for (size_t d = pow + pow / 8; d < 2 * pow; d += pow / 8) {
            size_t n = d - 1;
            unsigned char *p = malloc(n);
            EXPECT(p != NULL);
            for (size_t back = 1; back <= 512 && p; back *= 2)
                poke(p + n - back); /* aborts the test (use of a freed object) if misplaced */
            free(p);
        }
    }
    EXPECT(aborts_with(write_past_big_end, ((size_t)15 << 24) - 1, "heap buffer overflow"));
}

static void test_realloc_calloc_align(void)
{
    char *p = malloc(10);
    memcpy(p, "0123456789", 10);
    for (size_t n = 11; n < 100000; n *= 2) {
        p = realloc(p, n);
        EXPECT(p && memcmp(p, "0123456789", 10) == 0);
        EXPECT(malloc_usable_size(p) == n);
        p[n - 1] = 'x';
    }
    p = realloc(p, 5);
    EXPECT(p && memcmp(p, "01234", 5) == 0 && malloc_usable_size(p) == 5);
    free(p);

    unsigned char *z = calloc(1000, 3);
    size_t nz = 0;
    for (size_t i = 0; i < 3000; i++)
        nz += z[i] != 0;
    EXPECT(nz == 0);
    free(z);
    errno = 0;
    void *volatile huge = calloc(SIZE_MAX / 2, 3); /* volatile: the compiler may not elide it */
    EXPECT(huge == NULL && errno == ENOMEM);

    static const size_t aligns[] = { 16, 32, 64, 256, 4096 };
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        void *a = NULL;
        EXPECT(posix_memalign(&a, aligns[i], 100) == 0);
        EXPECT(((uintptr_t)a & (aligns[i] - 1)) == 0);
        opaque(a, 0, 100);
        free(a);
        a = aligned_alloc(aligns[i], 3 * aligns[i]);
        EXPECT(a && ((uintptr_t)a & (aligns[i] - 1)) == 0);
        free(a);
    }
    void *a = NULL;
    EXPECT(posix_memalign(&a, 24, 10) == EINVAL);
}

/* Per-thread caches: objects allocated in one thread and freed in another come back. */
#define NTHREADS 4
#define PER_THREAD 20000
static void *handoff[NTHREADS][PER_THREAD];

static void *producer(void *arg)
{
    size_t t = (size_t)arg;
    for (size_t i = 0; i < PER_THREAD; i++) {
        size_t n = 2 + (i * 7919 + t * 104729) % 3000;
        char *p = malloc(n);
        p[0] = (char)t;
        p[n - 1] = (char)i;
        handoff[t][i] = p;
    }
    return NULL;
}

static void *consumer(void *arg)
{
    size_t t = (size_t)arg;
    for (size_t i = 0; i < PER_THREAD; i++) {
        char *p = handoff[(t + 1) % NTHREADS][i];
        if (p[0] != (char)((t + 1) % NTHREADS))
            abort();
        free(p);
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t th[NTHREADS];
    for (int round = 0; round < 3; round++) {
        for (size_t t = 0; t < NTHREADS; t++)
            pthread_create(&th[t], NULL, producer, (void *)t);
        for (size_t t = 0; t < NTHREADS; t++)
            pthread_join(th[t], NULL);
        for (size_t t = 0; t < NTHREADS; t++)
            pthread_create(&th[t], NULL, consumer, (void *)t);
        for (size_t t = 0; t < NTHREADS; t++)
            pthread_join(th[t], NULL);
    }
}

/* Allocations stored here escape, so the compiler cannot drop a malloc/free pair. */
static void *volatile sink;

static void double_free(size_t n)
{
    void *p = malloc(n);
    sink = p;
    free(p);
    free(p);
}

static void interior_free(size_t n)
{
    char *p = malloc(n);
    sink = p;
    free(p + 1);
}

static void foreign_free(size_t n)
{
    static char not_heap[64];
    free(not_heap + n);
}

static void large_double_free(size_t n)
{
    void *p = malloc(n);
    sink = p;
    free(p);
    free(p);
}

static void underflow(size_t n)
{
    char *p = malloc(n);
    char *volatile q = p;
    q[-1] = 0;
}

static void use_after_free(size_t n)
{
    char *p = malloc(n);
    sink = p;
    free(p);
    char *volatile q = p;
    q[0] = 1; /* not reused yet: the object is marked free */
}

/* The page that holds the limit of p's object. */
static uintptr_t limit_page(const void *p)
{
    uintptr_t i = (uintptr_t)p >> MS_REGION_SHIFT;
    return (uintptr_t)&__scp_ms_tab_meta[i][ms_object_index((uintptr_t)p, __scp_ms_tab_magic[i])] >> 12;
}

/* Memory the runtime needs whatever the program does (alloc.c): the limits of the first objects
 * of two neighbouring classes (16 and 32 bytes) share one page, and the region table's meta pages
 * past the heap entries are read-only views of one shared page. Run first, so that the objects are
 * among the first of their classes. */
static void test_fixed_memory(void)
{
    void *a = malloc(8), *b = malloc(24);
    EXPECT(limit_page(a) == limit_page(b));
    EXPECT(malloc_usable_size(a) == 8 && malloc_usable_size(b) == 24);
    free(a);
    free(b);
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    int shared_ro = 0;
    while (maps && fgets(line, sizeof line, maps))
        if (strncmp(line, "4000b000-", 9) == 0 && strstr(line, " r--s ")) /* the meta array's last page */
            shared_ro = 1;
    if (maps)
        fclose(maps);
    EXPECT(shared_ro);
}

/* A freed object of a class of 64 KiB or more gives back its pages but the first (which holds
 * the free-list link): kept, they would stay resident in every class a program ever used. */
/* Allocates n bytes, touches them, frees them, then makes `churn` frees of small objects: how
 * many of the object's whole pages but the first (the free-list link's) are resident after
 * that; *pages: how many there are. */
static size_t resident_after_churn(size_t n, size_t *pages, unsigned churn)
{
    long page = sysconf(_SC_PAGESIZE);
    char *p = malloc(n);
    opaque(p, 1, n);
    uintptr_t from = ((uintptr_t)p + (uintptr_t)page) & ~((uintptr_t)page - 1);
    *pages = (size_t)(((uintptr_t)p + n) & ~((uintptr_t)page - 1)) / (size_t)page - from / (size_t)page;
    EXPECT(*pages >= 2);
    unsigned char vec[64];
    EXPECT(*pages <= sizeof vec && mincore((void *)from, *pages * (size_t)page, vec) == 0);
    size_t resident = 0;
    for (size_t i = 0; i < *pages; i++)
        resident += vec[i] & 1;
    EXPECT(resident == *pages);
    free(p);
    for (unsigned i = 0; i < churn; i++) {
        char *q = malloc(32);
        opaque(q, 1, 32);
        free(q);
    }
    EXPECT(mincore((void *)from, *pages * (size_t)page, vec) == 0);
    resident = 0;
    for (size_t i = 0; i < *pages; i++)
        resident += vec[i] & 1;
    return resident;
}

/* Freed objects of classes from 64 KiB give their pages back in every mode. */
static void test_released_pages(void)
{
    for (size_t n = 70000; n <= 250000; n += 90000) {
        size_t pages, resident = resident_after_churn(n, &pages, 0);
        if (resident != 0)
            fprintf(stderr, "%zu of %zu pages of a freed %zu-byte object still resident\n", resident, pages, n);
        EXPECT(resident == 0);
    }
}

/* From 16 KiB to 64 KiB they do in a program with full-mode code (built with -DMS_TEST_FULL by
 * programs.sh) once they have stayed unused in the thread's cache for 1,024 of its frees (the
 * decay, alloc.c), not at once (a program that reuses them soon would fault their pages in
 * again); they stay resident in a program without (harden mode: its time target has no room
 * for the page faults of their reuse). */
static void test_released_pages_by_mode(void)
{
#ifdef MS_TEST_FULL
    const int full = 1;
#else
    const int full = 0;
#endif
    for (size_t n = 17000; n <= 60000; n += 21000) {
        size_t pages, resident = resident_after_churn(n, &pages, 0);
        if (resident != pages)
            fprintf(stderr, "%s mode: %zu of %zu pages of a %zu-byte object freed just now resident\n",
                    full ? "full" : "harden", resident, pages, n);
        EXPECT(resident == pages);
        resident = resident_after_churn(n, &pages, 1100);
        if (full ? resident != 0 : resident != pages)
            fprintf(stderr, "%s mode: %zu of %zu pages of a freed %zu-byte object still resident 1,100 frees later\n",
                    full ? "full" : "harden", resident, pages, n);
        EXPECT(full ? resident == 0 : resident == pages);
    }
}

/* The classes just above a page (alloc.c, MS_FINE_CLASSES): a request of 4,096 bytes up to
 * 4,479 (with the extra byte, up to 4,480) takes a class of 4,224, 4,352 or 4,480 bytes, not
 * 4,608 (sqlite's 4,360-byte page-cache entries); above them the classes are 8 per doubling
 * again. The class is the size in the region table's entry of the object's address. */
static void test_page_classes(void)
{
    static const size_t want[][2] = { { 4095, 4096 }, { 4096, 4224 }, { 4223, 4224 }, { 4224, 4352 },
                                      { 4360, 4480 }, { 4479, 4480 }, { 4480, 4608 }, { 4607, 4608 },
                                      { 4608, 5120 }, { 8191, 8192 }, { 8192, 9216 } };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        unsigned char *p = malloc(want[k][0]);
        EXPECT(p != NULL);
        if (!p)
            continue;
        uint64_t cls = __scp_ms_tab_size[(uintptr_t)p >> MS_REGION_SHIFT];
        if (cls != want[k][1])
            fprintf(stderr, "malloc(%zu): class %llu, expected %zu\n", want[k][0], (unsigned long long)cls,
                    want[k][1]);
        EXPECT(cls == want[k][1]);
        EXPECT((uintptr_t)p % want[k][1] == 0);
        opaque(p, 1, want[k][0]);
        free(p);
    }
}

int main(void)
{
    test_page_classes();
    test_fixed_memory();
    test_released_pages();
    test_released_pages_by_mode();
    test_sizes();
    test_realloc_calloc_align();
    test_big_classes();
    test_threads();
    EXPECT(aborts_with(double_free, 40, "double free"));
    EXPECT(aborts_with(interior_free, 40, "invalid free"));
    EXPECT(aborts_with(foreign_free, 8, "invalid free"));
    EXPECT(aborts_with(large_double_free, (size_t)300 << 20, "invalid free"));
    EXPECT(aborts_with(underflow, 100, "heap buffer underflow"));
    EXPECT(aborts_with(use_after_free, 100, "use of a freed heap object"));
    if (failures) {
        fprintf(stderr, "memsafe runtime tests: %d failed\n", failures);
        return 1;
    }
    printf("memsafe runtime tests: all passed\n");
    return 0;
}
