/* memsafe/rt/alloc.c - the memsafe allocator: malloc and friends for instrumented programs.
 *
 * It replaces the C library's malloc for the whole process (so libc's own allocations, e.g.
 * strdup or fopen, come from here too). Each size class has its own region (layout.h), so the
 * checks find an object's base and size from any pointer with one table lookup; the end of
 * each object (its address + requested size + 1) is kept in a per-region side array (meta) so
 * that checks use the exact bounds, not the class size. One extra byte is allocated past each object so that
 * a one-past-the-end pointer still belongs to its own object.
 *
 * Per-thread caches hold freed objects of each class; a global free list and a bump pointer
 * per class, under one mutex per class, refill them. Requests larger than the largest class
 * are plain mmaps, tracked in a small table so that free can tell them from invalid pointers.
 *
 * The runtime must not call malloc itself, nor print through stdio (a report may come while
 * stdio's own locks are held): reports are formatted into a stack buffer and written to fd 2.
 */
#include "layout.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <malloc.h>

#define MS_STEPS_PER_DOUBLING 8
/* Three classes more just above a page, 4,224, 4,352 and 4,480 bytes, between 4,096 and 4,608:
 * a page-sized buffer with a small header (sqlite's page-cache entries, 4,096 + 264 bytes, 926
 * of them at sqlite's peak), or a page exactly (4,096 + the extra byte), took the 4,608-byte
 * class, 5-12% over. Only there: 32 classes in all of (4 KiB, 8 KiB] spread sqlite's transient
 * 5-8 KiB buffers over more classes, each keeping its freed objects resident in the thread's
 * cache, and cost more than they saved (bench/RESULTS.md, ms25). */
#define MS_FINE_BASE 4096
#define MS_FINE_STEP 128
#define MS_FINE_CLASSES 3
#define MS_MAX_CLASSES 200
#define MS_TC_BYTES (32 * 1024)    /* cached bytes per class and thread before flushing */
#define MS_REFILL_BYTES (16 * 1024) /* objects moved per refill, in bytes */
#define MS_LARGE_SLOTS 65536
#define MS_RELEASE_BYTES (64 * 1024) /* freed objects of classes this big return their pages */
#define MS_DECAY_BYTES (16 * 1024)    /* in full mode, freed objects from this big decay (below) */
#define MS_DECAY_FREES 1024           /* ...: their pages go back once this many frees passed */
#define MS_DECAY_SCAN 64              /* a thread looks for such objects every this many frees */
#define MS_RELEASED UINT64_MAX         /* the stamp of a cached object whose pages are gone */

/* Defined (weak, 1) by every module that scp-ms-instr instruments in full mode (instr.c): such a
 * program gives back the pages of freed 16-64 KiB objects too, once they have stayed unused for
 * MS_DECAY_FREES frees of the thread (a decaying release). Full mode's memory is the one over
 * issue 17's 1.3x (sqlite's speedtest1 --size 20: freed 16-64 KiB objects are 224 KB of the peak,
 * bench/RESULTS.md, ms18), and giving them back at once cost 6,000 page faults as sqlite reused
 * them right away (3.6% of its CPU; ms18, ms19); those it reuses within a few hundred frees keep
 * their pages, those left in a cache give them back (bench/RESULTS.md, ms20). Harden mode keeps
 * them: its memory is well under 1.3x. */
extern const unsigned char __scp_ms_full_mode __attribute__((weak));
static unsigned ms_class_index(size_t need);
static unsigned ms_decay_lo, ms_decay_hi; /* the classes that decay: [lo, hi); none if equal */

/* The entry of an address outside every heap region: size 0, magic 0 (so the index is 0) and
 * a meta array that can be read at that index, whose limit UINT64_MAX no access reaches. The
 * checks read an entry's fields and meta entry without first testing size (see check.c), so
 * every entry needs a readable meta before any instrumented code runs. */
static const uint64_t ms_no_meta[1] = { UINT64_MAX };

/* The allocator's own copy of the table (layout.h): regions, found by address. The checks read
 * the same values from the arrays at MS_TABLE_ADDR, written once with these (ms_init_regions). */
static struct ms_region ms_regions[MS_TABLE_LEN];

/* The checks' table lives at a fixed address (layout.h, MS_TABLE_ADDR), so that the checks
 * address it with a constant: mapped by the program's .preinit_array, which the dynamic linker
 * runs before the constructors of any shared library (an instrumented library's constructor may
 * run checks), and by the first malloc if that comes earlier (a static program). Single-threaded
 * at both times. */
static void ms_map_table(void)
{
    static const char msg[] = "memsafe: cannot map the region table at its fixed address (0x40000000)\n";
    static int mapped;
    if (mapped)
        return;
    void *want = (void *)(uintptr_t)MS_TABLE_ADDR;
    void *got = mmap(want, MS_TABLE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                     -1, 0);
    if (got != want) {
        if (write(2, msg, sizeof msg - 1) < 0) {
            /* nothing more to say */
        }
        abort();
    }
    /* Most of the table is entries of no heap region, and a check of a pointer there (the
     * stack, the program's globals, a library's data) reads one of them. Their size and magic
     * are 0: those pages of the size and magic arrays are never written, and read as zeroes
     * without becoming resident. Their meta must point to a readable limit (ms_no_meta): the
     * meta array's pages past the heap regions' entries are views of one shared page that holds
     * such entries, read only, so that those pages cost one page, and in the resident set only
     * the few that checks read. Where the views cannot be made (mremap), the entries are written
     * in private pages. */
    const size_t page = 4096, per_page = page / sizeof(uint64_t *), meta_pages = MS_TABLE_LEN / per_page;
    size_t first_shared = (MS_FIRST_REGION + MS_MAX_CLASSES + per_page - 1) / per_page;
    char *meta_at = (char *)(uintptr_t)MS_TAB_META;
    uint64_t **tpl = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    size_t shared = 0;
    if (tpl != MAP_FAILED) {
        for (size_t i = 0; i < per_page; i++)
            tpl[i] = (uint64_t *)ms_no_meta;
        mprotect(tpl, page, PROT_READ);
        for (size_t pg = first_shared; pg < meta_pages; pg++, shared++) {
            void *at = meta_at + pg * page;
            if (mremap(tpl, 0, page, MREMAP_MAYMOVE | MREMAP_FIXED, at) != at)
                break;
        }
        munmap(tpl, page);
    }
    if (shared != meta_pages - first_shared) {
        /* (any views made are replaced by private pages again) */
        if (mmap(meta_at, meta_pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) !=
            meta_at) {
            if (write(2, msg, sizeof msg - 1) < 0) {
                /* nothing more to say */
            }
            abort();
        }
        first_shared = meta_pages;
    }
    for (size_t i = 0; i < first_shared * per_page; i++)
        __scp_ms_tab_meta[i] = (uint64_t *)ms_no_meta;
    mapped = 1;
}

static void ms_init(void);

/* The whole allocator starts here, not only the table: then no entry of the table changes once
 * instrumented code runs (the heap regions' entries are written by ms_init_regions), which the
 * checks' loads of it are marked as (!invariant.load, instr.c). */
static void ms_preinit(int argc, char **argv, char **envp)
{
    (void)argc;
    (void)argv;
    (void)envp;
    ms_init();
}
__attribute__((section(".preinit_array"), used)) static void (*const ms_preinit_fn)(int, char **, char **) = ms_preinit;

struct ms_class {
    pthread_mutex_t lock;
    uint64_t size;
    uintptr_t start;     /* region start */
    uintptr_t bump;      /* next never-used object (down: the end of the last one taken) */
    uintptr_t committed; /* end of the read-write part of the region (down: its start) */
    int down;            /* objects taken from the region's top downward (ms_init_regions) */
    void *free_list;     /* objects returned by threads; link in the first word */
};

/* A thread's objects of each class: a free list of returned objects, and a span of objects
 * never used yet, [fresh, fresh_end), taken from the class's bump pointer without writing to
 * them: a refill must not make pages resident before they are used. */
struct ms_tcache {
    void *head[MS_MAX_CLASSES];
    uint32_t count[MS_MAX_CLASSES];
    uintptr_t fresh[MS_MAX_CLASSES];
    uintptr_t fresh_end[MS_MAX_CLASSES];
    uint64_t frees; /* the thread's frees, counted when classes decay: the decay's clock */
};

struct ms_large {
    uintptr_t addr; /* 0: empty, 1: deleted */
    size_t size;    /* requested */
    size_t map_len;
};

static struct ms_class ms_classes[MS_MAX_CLASSES];
static unsigned ms_nclasses;
static int ms_ready;
static int ms_init_lock;
static pthread_key_t ms_tc_key;
static __thread struct ms_tcache ms_tc;
static __thread int ms_tc_registered;

static pthread_mutex_t ms_large_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ms_large *ms_large_tab;

/* ---- reports ---------------------------------------------------------------------------- */

static void ms_write_all(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(2, s, n);
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

__attribute__((format(printf, 1, 2))) _Noreturn static void ms_die(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0)
        ms_write_all(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    abort();
}

static const struct ms_region *ms_region_of(uintptr_t p)
{
    const struct ms_region *r = &ms_regions[(p >> MS_REGION_SHIFT) & (MS_TABLE_LEN - 1)];
    return r->size ? r : NULL;
}

/* The index of p's object: objects sit at multiples of their class size from address 0
 * (layout.h), and r->meta is indexed by that multiple. */
static uint64_t ms_index_in(const struct ms_region *r, uintptr_t p)
{
    return ms_object_index(p, r->magic);
}

_Noreturn void __scp_ms_report(const void *base, const void *ptr, uint64_t n, const char *site)
{
    uintptr_t b = (uintptr_t)base, p = (uintptr_t)ptr;
    const struct ms_region *r = ms_region_of(b);
    if (!r)
        ms_die("memsafe: bounds check failed on a pointer outside the heap: %s (%llu bytes at %p)\n",
               site, (unsigned long long)n, ptr);
    uint64_t idx = ms_index_in(r, b);
    uintptr_t obj = idx * r->size;
    uint64_t lim = __atomic_load_n(&r->meta[idx], __ATOMIC_RELAXED);
    long long off = (long long)(p - obj);
    if (lim == 0)
        ms_die("memsafe: use of a freed heap object: %s: %llu bytes at offset %lld of a freed "
               "object of the %llu-byte class at %p\n"
               "memsafe: aborting\n",
               site, (unsigned long long)n, off, (unsigned long long)r->size, (void *)obj);
    const char *what = off < 0 ? "heap buffer underflow" : "heap buffer overflow";
    long long req = (long long)(lim - obj - 1);
    ms_die("memsafe: %s: %s: %llu bytes at offset %lld of a %lld-byte heap object at %p "
           "(%lld bytes %s)\n"
           "memsafe: aborting\n",
           what, site, (unsigned long long)n, off, req, (void *)obj, off < 0 ? -off : off + (long long)n - req,
           off < 0 ? "before its start" : "past its end");
}

/* The far report of a failed check_at (check.c, ms_report_at): called from the record
 *     push BASE; call __scp_ms_report_far; .long SITE - .; .quad LO, END
 * in the section of far report paths, with BASE on the stack above the return address, which
 * points at the rest of the record. Never returns, so the stack is only realigned for the C
 * call (the caller's stack may be at any alignment: it did not know it made a call). */
#if defined(__x86_64__)
__asm__(".pushsection .text\n"
        ".globl __scp_ms_report_far\n"
        ".type __scp_ms_report_far,@function\n"
        "__scp_ms_report_far:\n\t"
        "mov (%rsp), %rdi\n\t"
        "mov 8(%rsp), %rsi\n\t"
        "and $-16, %rsp\n\t"
        "call __scp_ms_report_far_record\n\t"
        "ud2\n"
        ".size __scp_ms_report_far, .-__scp_ms_report_far\n"
        ".popsection\n");
#endif

/* The record after the call: the site's text (relative to the field), then the checked range
 * [base + lo, base + end). Read with memcpy: the record is packed. */
__attribute__((used, noreturn, visibility("hidden"))) void __scp_ms_report_far_record(const unsigned char *rec, const void *base);
__attribute__((used, noreturn, visibility("hidden"))) void __scp_ms_report_far_record(const unsigned char *rec, const void *base)
{
    int32_t rel;
    uint64_t lo, end;
    memcpy(&rel, rec, sizeof rel);
    memcpy(&lo, rec + 4, sizeof lo);
    memcpy(&end, rec + 12, sizeof end);
    assert(lo < end);
    __scp_ms_report(base, (const char *)base + lo, end - lo, (const char *)(rec + rel));
}

/* The exact check of a scalar access from the checks' bitcode (check.c, ms_exact_at), entered by
 *     lea -128(%rsp),%rsp; push BASE; push PTR; call __scp_ms_exact_far; .long SITE - .; .quad N
 * from a code path that made no call as far as the compiler knows: so it keeps every register
 * (the flags are the asm's clobber), touches no vector register, and returns past the record.
 * The check is __scp_ms_check_exact's (check.c) on the same table (layout.h): the masked index,
 * size 0 passes, else fails if the limit is 0 (freed), or ptr - obj >= lim - obj, or
 * n >= lim - obj - (ptr - obj). A failure goes to C with the stack realigned (never returns). */
#if defined(__x86_64__)
_Static_assert(MS_TAB_SIZE == 0x40000000 && MS_TAB_MAGIC == 0x40004000 && MS_TAB_META == 0x40008000 &&
                   MS_REGION_SHIFT == 36 && MS_TABLE_LEN == 2048,
               "__scp_ms_exact_far's constants");
__asm__(".pushsection .text\n"
        ".globl __scp_ms_exact_far\n"
        ".type __scp_ms_exact_far,@function\n"
        "__scp_ms_exact_far:\n\t"
        "push %rax\n\t"
        "push %rcx\n\t"
        "push %rdx\n\t"
        "push %rsi\n\t"
        "push %rdi\n\t"
        "push %r8\n\t"            /* 48(%rsp): the record; 56: PTR; 64: BASE */
        "mov 64(%rsp), %rdi\n\t"
        "mov 56(%rsp), %rsi\n\t"
        "mov %rdi, %r8\n\t"
        "shr $36, %r8\n\t"
        "and $2047, %r8\n\t"
        "mov 0x40000000(,%r8,8), %rcx\n\t" /* size */
        "test %rcx, %rcx\n\t"
        "jz 1f\n\t"
        "mov %rdi, %rax\n\t"
        "mulq 0x40004000(,%r8,8)\n\t"      /* rdx: the object's index */
        "mov 0x40008000(,%r8,8), %r8\n\t"
        "mov (%r8,%rdx,8), %r8\n\t"        /* its limit */
        "imul %rdx, %rcx\n\t"              /* its start */
        "test %r8, %r8\n\t"
        "jz 2f\n\t"
        "sub %rcx, %r8\n\t"                /* lim - obj */
        "sub %rcx, %rsi\n\t"               /* ptr - obj */
        "cmp %r8, %rsi\n\t"
        "jae 2f\n\t"
        "sub %rsi, %r8\n\t"
        "mov 48(%rsp), %rax\n\t"
        "cmp 4(%rax), %r8\n\t"             /* n >= lim - obj - (ptr - obj): fails */
        "jbe 2f\n"
        "1:\taddq $12, 48(%rsp)\n\t"
        "pop %r8\n\t"
        "pop %rdi\n\t"
        "pop %rsi\n\t"
        "pop %rdx\n\t"
        "pop %rcx\n\t"
        "pop %rax\n\t"
        "ret\n"
        "2:\tmov 48(%rsp), %rdi\n\t"
        "mov 64(%rsp), %rsi\n\t"
        "mov 56(%rsp), %rdx\n\t"
        "and $-16, %rsp\n\t"
        "call __scp_ms_exact_far_record\n\t"
        "ud2\n"
        ".size __scp_ms_exact_far, .-__scp_ms_exact_far\n"
        ".popsection\n");
#endif

/* __scp_ms_exact_far's failure: the record after its call is the site's text (relative to the
 * field) and the access's length. */
__attribute__((used, noreturn, visibility("hidden"))) void __scp_ms_exact_far_record(const unsigned char *rec, const void *base, const void *ptr);
__attribute__((used, noreturn, visibility("hidden"))) void __scp_ms_exact_far_record(const unsigned char *rec, const void *base, const void *ptr)
{
    int32_t rel;
    uint64_t n;
    memcpy(&rel, rec, sizeof rel);
    memcpy(&n, rec + 4, sizeof n);
    __scp_ms_report(base, ptr, n, (const char *)(rec + rel));
}

/* ---- size classes and regions ------------------------------------------------------------ */

/* ceil(2^64 / size): floor(p * magic / 2^64) == p / size for every byte p of an object
 * (layout.h, ms_object_index and ms_class_room). */
static uint64_t ms_magic(uint64_t size)
{
    return (uint64_t)(((unsigned __int128)1 << 64) / size) + ((size & (size - 1)) != 0);
}

/* Every heap address is below 2^MS_ADDR_BITS, which ms_class_room's margin assumes. */
_Static_assert(((uint64_t)MS_FIRST_REGION + MS_MAX_CLASSES) << MS_REGION_SHIFT <= UINT64_C(1) << MS_ADDR_BITS,
               "the regions must end below 2^MS_ADDR_BITS");

static void ms_init_classes(void)
{
    uint64_t size = 16;
    unsigned c = 0;
    while (size <= MS_MAX_CLASS_SIZE && c < MS_MAX_CLASSES) {
        ms_classes[c].size = size;
        c++;
        uint64_t pow2 = UINT64_C(1) << (63 - __builtin_clzll(size));
        uint64_t step = pow2 / MS_STEPS_PER_DOUBLING;
        if (size >= MS_FINE_BASE && size < MS_FINE_BASE + MS_FINE_CLASSES * MS_FINE_STEP)
            step = MS_FINE_STEP;
        else if (size == MS_FINE_BASE + MS_FINE_CLASSES * MS_FINE_STEP)
            step = MS_FINE_BASE + step - size; /* back on the 8-per-doubling grid */
        size += step < 16 ? 16 : step;
    }
    assert(size > MS_MAX_CLASS_SIZE); /* every class up to MS_MAX_CLASS_SIZE fits in MS_MAX_CLASSES */
    ms_nclasses = c;
}

/* The entries of a class's meta array: one limit per object the region can hold. */
static size_t ms_meta_count(uint64_t size)
{
    return (size_t)((UINT64_C(1) << MS_REGION_SHIFT) / size);
}

static void ms_init_regions(void)
{
    size_t span = (size_t)ms_nclasses << MS_REGION_SHIFT;
    void *want = (void *)((uintptr_t)MS_FIRST_REGION << MS_REGION_SHIFT);
    void *got = mmap(want, span, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (got != want)
        ms_die("memsafe: cannot reserve the heap regions at %p (%zu GiB): %s\n", want,
               span >> 30, strerror(errno));
    /* The classes' meta arrays (8 bytes per possible object: 32 GiB for the 16-byte class,
     * about 130 GiB in all, address space only) in one reservation right after the regions, at a
     * fixed address as they are (valgrind refuses that much address space where it picks). */
    size_t meta_total = 0;
    for (unsigned c = 0; c < ms_nclasses; c++)
        meta_total += ms_meta_count(ms_classes[c].size) * sizeof(uint64_t) + 4096;
    void *meta_want = (char *)want + span;
    char *meta = mmap(meta_want, meta_total, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (meta != meta_want)
        ms_die("memsafe: cannot reserve allocation metadata at %p (%zu GiB): %s\n", meta_want,
               meta_total >> 30, strerror(errno));
    /* Two classes share the page where their arrays meet: a class that holds a few objects
     * writes only the first limits of its array, and with an array each starting on a page of
     * its own that was one 4 KiB page per class in use (84 in sqlite's speedtest1: 336 KB).
     * So the even classes take their objects from the top of their region down, their array
     * ends in the middle of a page (its last entries are the first used), and the next class's
     * array, taken from the bottom up, starts there. */
    for (unsigned c = 0; c < ms_nclasses; c++) {
        struct ms_class *k = &ms_classes[c];
        pthread_mutex_init(&k->lock, NULL);
        k->start = (uintptr_t)want + ((uintptr_t)c << MS_REGION_SHIFT);
        k->down = c % 2 == 0 && c + 1 < ms_nclasses;
        size_t count = ms_meta_count(k->size);
        /* The object indexes the array covers, [lo, lo + count): the first multiple of the class
         * size in the region on, or (down) the last object that ends in it and below. */
        uint64_t lo;
        if (k->down) {
            uint64_t last = (k->start + (UINT64_C(1) << MS_REGION_SHIFT)) / k->size - 1;
            lo = last + 1 - count;
            k->bump = (last + 1) * k->size;
            k->committed = k->start + (UINT64_C(1) << MS_REGION_SHIFT);
            /* The arrays meet in the middle of a page. */
            uintptr_t meet = (((uintptr_t)meta + count * sizeof(uint64_t) - 2048 + 4095) & ~(uintptr_t)4095) + 2048;
            assert(meet % 4096 == 2048 && meet - count * sizeof(uint64_t) >= (uintptr_t)meta);
            meta = (char *)(meet - count * sizeof(uint64_t));
        } else {
            lo = (k->start + k->size - 1) / k->size;
            k->bump = lo * k->size;
            k->committed = k->start;
        }
        assert(lo * k->size >= k->start - k->size &&
               (uintptr_t)meta + count * sizeof(uint64_t) <= (uintptr_t)meta_want + meta_total);
        struct ms_region *r = &ms_regions[MS_FIRST_REGION + c];
        r->magic = ms_magic(k->size);
        /* Indexed by address / size (the checks do not subtract the region start): the array's
         * address less the first index it covers, never dereferenced below `meta`. */
        r->meta = (uint64_t *)((uintptr_t)meta - lo * sizeof(uint64_t));
        meta += count * sizeof(uint64_t);
        r->start = k->start;
        __atomic_store_n(&r->size, k->size, __ATOMIC_RELEASE);
        __scp_ms_tab_magic[MS_FIRST_REGION + c] = r->magic;
        __scp_ms_tab_meta[MS_FIRST_REGION + c] = r->meta;
        __scp_ms_tab_size[MS_FIRST_REGION + c] = r->size;
    }
    ms_large_tab = mmap(NULL, MS_LARGE_SLOTS * sizeof *ms_large_tab, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ms_large_tab == MAP_FAILED)
        ms_die("memsafe: cannot map the large-object table: %s\n", strerror(errno));
}

static void ms_init(void)
{
    if (__atomic_load_n(&ms_ready, __ATOMIC_ACQUIRE))
        return;
    while (__atomic_exchange_n(&ms_init_lock, 1, __ATOMIC_ACQUIRE))
        ;
    if (!ms_ready) {
        ms_map_table();
        ms_init_classes();
        ms_init_regions();
        if (&__scp_ms_full_mode != NULL) {
            ms_decay_lo = ms_class_index(MS_DECAY_BYTES);
            ms_decay_hi = ms_class_index(MS_RELEASE_BYTES);
            assert(ms_classes[ms_decay_lo].size == MS_DECAY_BYTES && ms_classes[ms_decay_hi].size == MS_RELEASE_BYTES);
        }
        __atomic_store_n(&ms_ready, 1, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&ms_init_lock, 0, __ATOMIC_RELEASE);
}

/* The smallest class of at least `need` (>= 1) bytes, computed from the classes' rule
 * (ms_init_classes: 16 to 128 in steps of 16, then 8 per doubling) instead of searched for: a
 * binary search over the classes was most of the 179 instructions that a malloc took in redis
 * (glibc's: about 100). Up to 1 MiB, where every class's room is its size (layout.h). */
#define MS_DIRECT_CLASS_MAX ((size_t)1 << 20)
static unsigned ms_class_index(size_t need)
{
    if (need <= 128)
        return (unsigned)((need + 15) / 16) - 1;
    unsigned k = 63u - (unsigned)__builtin_clzll((unsigned long long)(need - 1)); /* 2^k < need <= 2^(k+1) */
    unsigned step_shift = k - 3; /* steps of 2^k / 8 */
    size_t j = (need - ((size_t)1 << k) + ((size_t)1 << step_shift) - 1) >> step_shift; /* 1..8 */
    unsigned grid = 8 + (k - 7) * MS_STEPS_PER_DOUBLING + (unsigned)j - 1;
    if (need <= MS_FINE_BASE)
        return grid;
    if (need <= MS_FINE_BASE + MS_FINE_CLASSES * MS_FINE_STEP) /* the classes just above a page */
        return grid + (unsigned)((need - MS_FINE_BASE + MS_FINE_STEP - 1) / MS_FINE_STEP) - 1;
    return grid + MS_FINE_CLASSES;
}

/* Smallest class with room for `need` bytes whose size is a multiple of `align` (a power of
 * two): objects sit at multiples of their class size. */
static int ms_class_for(size_t need, size_t align)
{
    if (need > MS_MAX_CLASS_SIZE)
        return -1;
    unsigned lo = 0, hi = ms_nclasses;
    if (need <= MS_DIRECT_CLASS_MAX) {
        lo = ms_class_index(need);
        assert(ms_class_room(ms_classes[lo].size) >= need && (lo == 0 || ms_classes[lo - 1].size < need));
        hi = lo;
    }
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (ms_class_room(ms_classes[mid].size) < need)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (align <= 16)
        return (int)lo; /* every class is a multiple of 16 */
    for (unsigned c = lo; c < ms_nclasses; c++)
        if (ms_classes[c].size % align == 0)
            return (int)c;
    return -1;
}

/* ---- the per-class pools ------------------------------------------------------------------ */

static int ms_commit(struct ms_class *k, uintptr_t end)
{
    size_t page = 1u << 14; /* small steps: a class that holds a few objects costs 16 KiB */
    if (k->down) {
        /* `end` is the lowest address to make usable. */
        if (end >= k->committed)
            return 0;
        uintptr_t from = end & ~(uintptr_t)(page - 1);
        if (end < k->start || from < k->start)
            return -1;
        if (mprotect((void *)from, k->committed - from, PROT_READ | PROT_WRITE) != 0)
            return -1;
        k->committed = from;
        return 0;
    }
    if (end <= k->committed)
        return 0;
    uintptr_t to = (end + page - 1) & ~(uintptr_t)(page - 1);
    if (to - k->start > (UINT64_C(1) << MS_REGION_SHIFT))
        return -1;
    if (mprotect((void *)k->committed, to - k->committed, PROT_READ | PROT_WRITE) != 0)
        return -1;
    k->committed = to;
    return 0;
}

/* Give the calling thread up to `want` objects of class c: returned ones from the global
 * list if there are any (they are resident already), else a span of never-used ones. */
static void ms_refill(unsigned c, unsigned want)
{
    struct ms_class *k = &ms_classes[c];
    assert(!ms_tc.head[c] && ms_tc.fresh[c] == ms_tc.fresh_end[c]);
    pthread_mutex_lock(&k->lock);
    while (want > 0 && k->free_list) {
        void *o = k->free_list;
        k->free_list = *(void **)o;
        *(void **)o = ms_tc.head[c];
        ms_tc.head[c] = o;
        ms_tc.count[c]++;
        want--;
    }
    if (ms_tc.head[c]) {
        /* refilled from the free list */
    } else if (k->down) {
        uintptr_t from = k->bump - want * k->size;
        if (k->bump - k->start >= want * k->size && ms_commit(k, from) == 0) {
            ms_tc.fresh[c] = from;
            ms_tc.fresh_end[c] = k->bump;
            k->bump = from;
        }
    } else if (ms_commit(k, k->bump + want * k->size) == 0) {
        ms_tc.fresh[c] = k->bump;
        k->bump += want * k->size;
        ms_tc.fresh_end[c] = k->bump;
    }
    pthread_mutex_unlock(&k->lock);
}

/* An exiting thread's unused span goes back to the bump pointer if nothing was taken after
 * it, else onto the global free list. */
static void ms_return_fresh(unsigned c)
{
    struct ms_class *k = &ms_classes[c];
    pthread_mutex_lock(&k->lock);
    if (!k->down && k->bump == ms_tc.fresh_end[c]) {
        k->bump = ms_tc.fresh[c];
    } else if (k->down && k->bump == ms_tc.fresh[c]) {
        k->bump = ms_tc.fresh_end[c];
    } else {
        for (uintptr_t o = ms_tc.fresh[c]; o < ms_tc.fresh_end[c]; o += k->size) {
            *(void **)o = k->free_list;
            k->free_list = (void *)o;
        }
    }
    ms_tc.fresh[c] = ms_tc.fresh_end[c] = 0;
    pthread_mutex_unlock(&k->lock);
}

/* The pages of a freed object o of class size `size` but its first (which holds the free-list link
 * and the decay's stamp): kept, they would stay resident in every class a program ever used (a
 * segregated class cannot lend them to another size). */
static void ms_release_pages(uintptr_t o, uint64_t size)
{
    uintptr_t from = (o + 2 * sizeof(uint64_t) + 4095) & ~(uintptr_t)4095;
    uintptr_t to = (o + size) & ~(uintptr_t)4095;
    if (to > from)
        madvise((void *)from, to - from, MADV_DONTNEED);
}

/* The decay (full mode, classes [ms_decay_lo, ms_decay_hi)): a freed object's second word holds
 * the thread's free count at its free; an object still in the thread's cache MS_DECAY_FREES frees
 * later gives its pages back. Only the thread's own cache is looked at: an object on a class's
 * global list may be handed to another thread meanwhile (those are released before they go
 * there, ms_flush). At most MS_TC_BYTES per class are cached, two objects of these classes. */
static void ms_decay(void)
{
    for (unsigned c = ms_decay_lo; c < ms_decay_hi; c++)
        for (void *o = ms_tc.head[c]; o; o = *(void **)o) {
            uint64_t *stamp = (uint64_t *)o + 1;
            if (*stamp != MS_RELEASED && ms_tc.frees - *stamp >= MS_DECAY_FREES) {
                ms_release_pages((uintptr_t)o, ms_classes[c].size);
                *stamp = MS_RELEASED;
            }
        }
}

/* Return `keep`-exceeding objects of class c from this thread's cache to the global list. */
static void ms_flush(unsigned c, unsigned keep)
{
    struct ms_class *k = &ms_classes[c];
    int decays = c >= ms_decay_lo && c < ms_decay_hi;
    pthread_mutex_lock(&k->lock);
    while (ms_tc.count[c] > keep) {
        void *o = ms_tc.head[c];
        ms_tc.head[c] = *(void **)o;
        ms_tc.count[c]--;
        if (decays && ((uint64_t *)o)[1] != MS_RELEASED) {
            ms_release_pages((uintptr_t)o, k->size);
            ((uint64_t *)o)[1] = MS_RELEASED;
        }
        *(void **)o = k->free_list;
        k->free_list = o;
    }
    pthread_mutex_unlock(&k->lock);
}

static void ms_thread_exit(void *unused)
{
    (void)unused;
    for (unsigned c = 0; c < ms_nclasses; c++) {
        if (ms_tc.count[c])
            ms_flush(c, 0);
        if (ms_tc.fresh[c] != ms_tc.fresh_end[c])
            ms_return_fresh(c);
    }
}

static void ms_register_thread(void)
{
    ms_tc_registered = 1;
    pthread_setspecific(ms_tc_key, &ms_tc);
}

static unsigned ms_batch(unsigned c)
{
    uint64_t n = MS_REFILL_BYTES / ms_classes[c].size;
    return n < 1 ? 1 : n > 256 ? 256 : (unsigned)n;
}

static void *ms_alloc_small(unsigned c, size_t req)
{
    void *o;
    if (!ms_tc.head[c] && ms_tc.fresh[c] == ms_tc.fresh_end[c]) {
        ms_refill(c, ms_batch(c));
        if (!ms_tc_registered && ms_ready > 1)
            ms_register_thread();
    }
    if (ms_tc.head[c]) {
        o = ms_tc.head[c];
        ms_tc.head[c] = *(void **)o;
        ms_tc.count[c]--;
        *(void **)o = NULL;
    } else if (ms_tc.fresh[c] != ms_tc.fresh_end[c]) {
        o = (void *)ms_tc.fresh[c]; /* never used: zero, as mmap left it */
        ms_tc.fresh[c] += ms_classes[c].size;
    } else {
        return NULL;
    }
    const struct ms_region *r = &ms_regions[MS_FIRST_REGION + c];
    __atomic_store_n(&r->meta[ms_index_in(r, (uintptr_t)o)], (uintptr_t)o + req + 1, __ATOMIC_RELAXED);
    return o;
}

/* ---- large objects ------------------------------------------------------------------------- */

static size_t ms_large_slot(uintptr_t a)
{
    return (size_t)((a >> 12) * UINT64_C(0x9E3779B97F4A7C15) >> 48) % MS_LARGE_SLOTS;
}

static void *ms_alloc_large(size_t req)
{
    size_t len = (req + 4095) & ~(size_t)4095;
    if (len < req)
        return NULL;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    pthread_mutex_lock(&ms_large_lock);
    size_t s = ms_large_slot((uintptr_t)p);
    for (size_t i = 0; i < MS_LARGE_SLOTS; i++, s = (s + 1) % MS_LARGE_SLOTS) {
        if (ms_large_tab[s].addr <= 1) {
            ms_large_tab[s] = (struct ms_large){ (uintptr_t)p, req, len };
            pthread_mutex_unlock(&ms_large_lock);
            return p;
        }
    }
    pthread_mutex_unlock(&ms_large_lock);
    munmap(p, len);
    return NULL;
}

/* The slot of large object p, or NULL; call with ms_large_lock held. */
static struct ms_large *ms_large_find(uintptr_t p)
{
    size_t s = ms_large_slot(p);
    for (size_t i = 0; i < MS_LARGE_SLOTS; i++, s = (s + 1) % MS_LARGE_SLOTS) {
        if (ms_large_tab[s].addr == p)
            return &ms_large_tab[s];
        if (ms_large_tab[s].addr == 0)
            return NULL;
    }
    return NULL;
}

/* ---- the C allocation interface ------------------------------------------------------------ */

static void *ms_alloc(size_t req, size_t align)
{
    ms_init();
    if (req >= MS_MAX_CLASS_SIZE || align > MS_MAX_CLASS_SIZE) {
        if (align > 4096) {
            errno = EINVAL;
            return NULL;
        }
        void *p = ms_alloc_large(req);
        if (!p)
            errno = ENOMEM;
        return p;
    }
    int c = ms_class_for(req + 1, align < 16 ? 16 : align);
    void *p = c < 0 ? ms_alloc_large(req) : ms_alloc_small((unsigned)c, req);
    if (!p)
        errno = ENOMEM;
    return p;
}

/* Requested size of a live allocation; aborts on pointers that malloc did not return. */
static size_t ms_live_size(const void *ptr, const char *op)
{
    uintptr_t p = (uintptr_t)ptr;
    const struct ms_region *r = ms_region_of(p);
    if (r) {
        uint64_t idx = ms_index_in(r, p);
        uintptr_t obj = idx * r->size;
        uint64_t lim = __atomic_load_n(&r->meta[idx], __ATOMIC_RELAXED);
        if (obj != p)
            ms_die("memsafe: invalid %s: %p points %llu bytes into a heap object at %p, not to its "
                   "start\nmemsafe: aborting\n",
                   op, ptr, (unsigned long long)(p - obj), (void *)obj);
        if (lim == 0)
            ms_die("memsafe: %s of a freed heap object at %p (double free?)\nmemsafe: aborting\n",
                   op, ptr);
        return lim - obj - 1;
    }
    pthread_mutex_lock(&ms_large_lock);
    struct ms_large *l = ms_large_find(p);
    size_t n = l ? l->size : 0;
    pthread_mutex_unlock(&ms_large_lock);
    if (!l)
        ms_die("memsafe: invalid %s: %p was not returned by malloc (or was already freed)\n"
               "memsafe: aborting\n",
               op, ptr);
    return n;
}

void *malloc(size_t n)
{
    return ms_alloc(n, 16);
}

void free(void *ptr)
{
    if (!ptr)
        return;
    uintptr_t p = (uintptr_t)ptr;
    const struct ms_region *r = ms_region_of(p);
    if (!r) {
        pthread_mutex_lock(&ms_large_lock);
        struct ms_large *l = ms_large_find(p);
        struct ms_large gone = l ? *l : (struct ms_large){ 0, 0, 0 };
        if (l)
            l->addr = 1;
        pthread_mutex_unlock(&ms_large_lock);
        if (!l)
            ms_die("memsafe: invalid free: %p was not returned by malloc (or was already freed)\n"
                   "memsafe: aborting\n",
                   ptr);
        munmap((void *)gone.addr, gone.map_len);
        return;
    }
    uint64_t idx = ms_index_in(r, p);
    uintptr_t obj = idx * r->size;
    if (obj != p)
        ms_die("memsafe: invalid free: %p points %llu bytes into a heap object at %p, not to its "
               "start\nmemsafe: aborting\n",
               ptr, (unsigned long long)(p - obj), (void *)obj);
    if (__atomic_exchange_n(&r->meta[idx], 0, __ATOMIC_RELAXED) == 0)
        ms_die("memsafe: double free of the heap object at %p (%llu-byte class)\n"
               "memsafe: aborting\n",
               ptr, (unsigned long long)r->size);
    unsigned c = (unsigned)(r - &ms_regions[MS_FIRST_REGION]);
    /* A big object's pages go back at once, as glibc unmaps its big chunks; from 16 KiB, in full
     * mode, once it has stayed unused (ms_decay). */
    if (r->size >= MS_RELEASE_BYTES)
        ms_release_pages(p, r->size);
    *(void **)ptr = ms_tc.head[c];
    ms_tc.head[c] = ptr;
    if (ms_decay_hi != ms_decay_lo) {
        if (c >= ms_decay_lo && c < ms_decay_hi)
            ((uint64_t *)ptr)[1] = ms_tc.frees;
        if (++ms_tc.frees % MS_DECAY_SCAN == 0)
            ms_decay();
    }
    /* At most MS_TC_BYTES per class and thread (one object of a larger class): a floor of
     * several objects kept 8 MB of 1 MB buffers resident in sqlite's speedtest1. */
    uint64_t cap = MS_TC_BYTES / r->size;
    if (++ms_tc.count[c] > (cap < 1 ? 1 : cap))
        ms_flush(c, ms_tc.count[c] / 2);
}

void *calloc(size_t nmemb, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(nmemb, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    /* ms_alloc, not malloc: compilers turn malloc + memset into a call to calloc. */
    void *p = ms_alloc(n, 16);
    if (p)
        memset(p, 0, n);
    return p;
}

void *realloc(void *ptr, size_t n)
{
    if (!ptr)
        return malloc(n);
    if (n == 0) {
        free(ptr);
        return NULL;
    }
    size_t old = ms_live_size(ptr, "realloc");
    const struct ms_region *r = ms_region_of((uintptr_t)ptr);
    if (r && n + 1 <= ms_class_room(r->size) && n >= r->size / 2) {
        /* Same object: only the recorded size changes. */
        __atomic_store_n(&r->meta[ms_index_in(r, (uintptr_t)ptr)], (uintptr_t)ptr + n + 1,
                         __ATOMIC_RELAXED);
        return ptr;
    }
    void *q = malloc(n);
    if (!q)
        return NULL;
    memcpy(q, ptr, old < n ? old : n);
    free(ptr);
    return q;
}

void *reallocarray(void *ptr, size_t nmemb, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(nmemb, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(ptr, n);
}

static int ms_pow2(size_t a)
{
    return a != 0 && (a & (a - 1)) == 0;
}

void *memalign(size_t align, size_t n)
{
    if (!ms_pow2(align)) {
        errno = EINVAL;
        return NULL;
    }
    return ms_alloc(n, align);
}

void *aligned_alloc(size_t align, size_t n)
{
    return memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (!ms_pow2(align) || align % sizeof(void *) != 0)
        return EINVAL;
    void *p = ms_alloc(n, align);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *valloc(size_t n)
{
    return memalign(4096, n);
}

void *pvalloc(size_t n)
{
    return memalign(4096, (n + 4095) & ~(size_t)4095);
}

size_t malloc_usable_size(void *ptr)
{
    /* The requested size, not the class size: writes into the rounding are reported. */
    return ptr ? ms_live_size(ptr, "malloc_usable_size") : 0;
}

/* ---- process setup --------------------------------------------------------------------- */

static void ms_fork_prepare(void)
{
    pthread_mutex_lock(&ms_large_lock);
    for (unsigned c = 0; c < ms_nclasses; c++)
        pthread_mutex_lock(&ms_classes[c].lock);
}

static void ms_fork_release(void)
{
    for (unsigned c = ms_nclasses; c-- > 0;)
        pthread_mutex_unlock(&ms_classes[c].lock);
    pthread_mutex_unlock(&ms_large_lock);
}

/* After init (which may run inside the first malloc, too early for these): the key whose
 * destructor returns an exiting thread's cache, and the fork handlers that keep the class
 * locks consistent in a child. */
__attribute__((constructor(101))) static void ms_setup(void)
{
    ms_init();
    if (pthread_key_create(&ms_tc_key, ms_thread_exit) == 0)
        __atomic_store_n(&ms_ready, 2, __ATOMIC_RELEASE);
    pthread_atfork(ms_fork_prepare, ms_fork_release, ms_fork_release);
    ms_register_thread();
}
