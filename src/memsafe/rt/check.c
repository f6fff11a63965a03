/* memsafe/rt/check.c - the bounds checks that instrumented code calls.
 *
 * Compiled twice: into the runtime library, and to LLVM bitcode that the instrumentation
 * tool links into every instrumented module and marks internal, so that the optimizer inlines
 * the fast path (a table load, a multiply, the object's limit and one compare) and only a
 * violation, or an access below its base pointer, calls out of line.
 */
#include "layout.h"

/* The table index of b's region (layout.h). A user-space address is below 2^47, so b >> 36 is
 * below MS_TABLE_LEN as it is: a check made right before its access uses it unmasked (one
 * instruction less per lookup). A pointer with higher bits set is not one the program can
 * access (non-canonical, or the kernel's): its access would fault, and its check faults or
 * aborts first, reading past the table. The lookups made for a pointer the program may never
 * access (before a loop, for a value that is then not used; the exact check, the report) mask
 * the index, so that they read inside the table whatever the pointer. */
static inline uintptr_t ms_rix(uintptr_t b)
{
    uintptr_t i = b >> MS_REGION_SHIFT;
    /* An empty asm between the shift and the scaling (ms_tab): without it the optimizer makes
     * (b >> 36) * 8 into (b >> 33) & ~7, the and again. */
    __asm__("" : "+r"(i));
    return i;
}

static inline uintptr_t ms_rix_masked(uintptr_t b)
{
    return (b >> MS_REGION_SHIFT) & (MS_TABLE_LEN - 1);
}

/* Entry i of the table array at `arr`: integer arithmetic and a cast, so that the load's address
 * is an inttoptr (instr.c marks such loads !invariant.load) and compiles to arr(,%i,8). (Indexed
 * as an array of a constant pointer instead, the code generator kept the constant in a register.) */
static inline uint64_t ms_tab(uintptr_t arr, uintptr_t i)
{
    return *(const uint64_t *)(arr + i * 8);
}

/* The limit of the object b points into (layout.h): its address + requested size + 1 while it is
 * allocated, 0 once it is freed, UINT64_MAX outside the heap (there the entry's magic is 0, so
 * the index is 0, and its meta is a one-entry array holding UINT64_MAX, alloc.c). Every load is
 * made whatever the pointer: a check is straight-line code up to its one branch, so the
 * optimizer can hoist its loads out of a loop that makes no call, or share them with an earlier
 * check of the same base (instr.c puts them in an alias scope of their own: no store of the
 * program writes them). */
static inline const uint64_t *ms_slot_in(uintptr_t b, uintptr_t i)
{
    const uint64_t *meta = (const uint64_t *)ms_tab(MS_TAB_META, i);
    /* meta points below its array by the index of the region's first object (alloc.c), so that
     * the index needs no subtraction; indexed as an array, so the scaling is part of the load's
     * address (integer arithmetic here made the optimizer fold it into a 128-bit shift). */
    return &meta[ms_object_index(b, ms_tab(MS_TAB_MAGIC, i))];
}

/* The slot of a pointer the program may never access (masked index). */
static inline const uint64_t *ms_slot(uintptr_t b)
{
    return ms_slot_in(b, ms_rix_masked(b));
}

/* The limit for a check made right before its access (unmasked index, see ms_rix). */
static inline uint64_t ms_limit(uintptr_t b)
{
    return __atomic_load_n(ms_slot_in(b, ms_rix(b)), __ATOMIC_RELAXED);
}

/* [ptr, ptr + n) against the object of base, exactly: its start is needed too (an access may
 * start below base and still be inside the object). Out of line, for the checks whose fast
 * path does not decide (an access below its base pointer); reports or returns. preserve_most:
 * the caller keeps its registers across the call, so the rare slow path costs the fast path
 * nothing (no spills around it). */
MS_SLOW_CC __attribute__((noinline, cold)) void __scp_ms_check_exact(const void *base, const void *ptr, uint64_t n, const char *site)
{
    uintptr_t b = (uintptr_t)base, i = ms_rix_masked(b);
    uint64_t size = ms_tab(MS_TAB_SIZE, i);
    if (size == 0)
        return; /* not a heap pointer */
    uint64_t idx = ms_object_index(b, ms_tab(MS_TAB_MAGIC, i));
    uintptr_t obj = idx * size;
    uint64_t lim = __atomic_load_n(ms_slot_in(b, i), __ATOMIC_RELAXED);
    uint64_t rel = (uintptr_t)ptr - obj; /* wraps to a huge value below the object */
    /* In bounds iff rel + n < lim - obj (requested + 1), written so that neither side can
     * wrap; a freed object (lim 0) makes lim - obj wrap to a huge value: tested first. */
    if (lim == 0 || rel >= lim - obj || n >= lim - obj - rel)
        __scp_ms_report(base, ptr, n, site);
}

/* The report of a failed check_at, out of the program's hot code. In the checks' bitcode, which
 * is inlined into every instrumented function (MS_CHECK_BITCODE, CMakeLists.txt), the cold path
 * left in the function is one `jmp` (5 bytes) into a section of its own, scp_ms_far, which the
 * linker places after all the program's code (a name no .text pattern of its script takes, so
 * it is not mixed with the unlikely code that does run, like the exact check): there
 *     push BASE; call __scp_ms_report_far; .long SITE - .; .quad LO, END
 * (__scp_ms_report_far, alloc.c, reads the record after its return address). The report is the
 * same as __scp_ms_report's. Why: a program's text is resident in the 64 KiB pieces the kernel
 * maps around each fault, and the report calls interleaved with the hot code (arguments, the
 * site's address, the call: 24 bytes each, 15,700 of them in sqlite built in full mode) made
 * every piece larger; in their own section they are never touched (bench/RESULTS.md, msfull).
 * SITE, LO and END are constants at every call once inlined (instr.c passes them so), as the
 * "i" constraints need. The runtime's own copy of the checks (compiled by the project's
 * compiler, where nothing is inlined) calls __scp_ms_report. */
#if defined(MS_CHECK_BITCODE) && defined(__x86_64__)
#define MS_FAR_SECTION "scp_ms_far"
#define ms_report_at(base, lo, end, site)                                                               \
    do {                                                                                              \
        __asm__ volatile("jmp 1f\n\t"                                                                  \
                         ".pushsection " MS_FAR_SECTION ",\"ax\",@progbits\n"                          \
                         "1:\tpush %0\n\t"                                                            \
                         "call __scp_ms_report_far\n\t"                                               \
                         ".long %c1 - .\n\t"                                                          \
                         ".quad %c2, %c3\n\t"                                                         \
                         ".popsection"                                                                \
                         :                                                                            \
                         : "r"(base), "i"(site), "i"(lo), "i"(end));                                 \
        __builtin_unreachable();                                                                      \
    } while (0)
#else
#define ms_report_at(base, lo, end, site) __scp_ms_report(base, (const char *)(base) + (lo), (end) - (lo), site)
#endif

/* The exact check of a scalar access whose fast path did not decide (n and site constants once
 * inlined, as for ms_report_at). In the checks' bitcode the call's set-up is not left in the
 * program's code: the cold path there is one `jmp` into scp_ms_far, where
 *     lea -128(%rsp),%rsp; push BASE; push PTR; call __scp_ms_exact_far; .long SITE - .; .quad N
 *     lea 144(%rsp),%rsp; jmp back
 * (__scp_ms_exact_far, alloc.c, makes the exact check in assembly and keeps every register; the
 * red zone is stepped over, since the function may be a leaf that keeps data below %rsp). Why:
 * the call's arguments and the call (about 25 bytes) at each of the 9,000 such checks of sqlite
 * built in full mode sat in the pieces of text that run, resident (bench/RESULTS.md, ms20), and
 * the call's fixed argument registers constrained the fast path's register choice. */
#if defined(MS_CHECK_BITCODE) && defined(__x86_64__)
#define ms_exact_at(base, ptr, n, site)                                                               \
    __asm__ volatile("jmp 1f\n"                                                                       \
                     "2:\n\t"                                                                         \
                     ".pushsection " MS_FAR_SECTION ",\"ax\",@progbits\n"                              \
                     "1:\tlea -128(%%rsp), %%rsp\n\t"                                                 \
                     "push %0\n\t"                                                                    \
                     "push %1\n\t"                                                                    \
                     "call __scp_ms_exact_far\n\t"                                                    \
                     ".long %c2 - .\n\t"                                                              \
                     ".quad %c3\n\t"                                                                  \
                     "lea 144(%%rsp), %%rsp\n\t"                                                      \
                     "jmp 2b\n\t"                                                                     \
                     ".popsection"                                                                     \
                     :                                                                                 \
                     : "r"(base), "r"(ptr), "i"(site), "i"(n)                                          \
                     : "cc")
#else
#define ms_exact_at(base, ptr, n, site) __scp_ms_check_exact(base, ptr, n, site)
#endif

/* A scalar access: n is a constant below 2^40 (instr.c). ptr + n cannot wrap for an address a
 * program can use (only for a pointer in the top 2^40 bytes of the address space, which is
 * the kernel's: the access itself faults). Below base goes to the exact check; at or above base,
 * the limit decides (base is in its object, so ptr >= base is not below the object). */
void __scp_ms_check(const void *base, const void *ptr, uint64_t n, const char *site)
{
    uint64_t lim = ms_limit((uintptr_t)base);
    if (__builtin_expect(((uintptr_t)ptr < (uintptr_t)base) | ((uintptr_t)ptr + n >= lim), 0))
        ms_exact_at(base, ptr, n, site);
}

/* An access that starts below its base pointer (an sds string's header at s[-1], s - 3, ...):
 * the fast path needs the object's start, idx * size, as the exact check does, but inline, so
 * that a header read costs a multiply and a compare more than a check above the base, not a
 * call (full mode's redis: 32 calls of __scp_ms_check_exact per request, 1,300 instructions).
 * Outside the heap the entry's size and magic are 0: the start is 0 and the limit UINT64_MAX,
 * so the access passes; a freed object's limit 0 sends it to the exact check, which reports. */
void __scp_ms_check_below(const void *base, const void *ptr, uint64_t n, const char *site)
{
    uintptr_t b = (uintptr_t)base, p = (uintptr_t)ptr, i = ms_rix(b);
    const uint64_t *meta = (const uint64_t *)ms_tab(MS_TAB_META, i);
    uint64_t idx = ms_object_index(b, ms_tab(MS_TAB_MAGIC, i));
    uintptr_t obj = idx * ms_tab(MS_TAB_SIZE, i);
    uint64_t lim = __atomic_load_n(&meta[idx], __ATOMIC_RELAXED);
    if (__builtin_expect((p < obj) | (p + n >= lim), 0))
        ms_exact_at(base, ptr, n, site);
}

/* The bytes [base + lo, base + end), with 0 <= lo < end < 2^40 constants of the instrumented
 * code (an access, or merged accesses, at constant offsets from a pointer that is its own
 * base: a pointer loaded from memory, an argument, a malloc result). The access cannot start
 * before the object: one compare against the limit, and the accessed address is not needed
 * (fewer live registers around the check). */
void __scp_ms_check_at(const void *base, uint64_t lo, uint64_t end, const char *site)
{
    if (__builtin_expect((uintptr_t)base + end >= ms_limit((uintptr_t)base), 0))
        ms_report_at(base, lo, end, site);
}

/* Any length n (memcpy/memmove/memset, a loop's range): no term may wrap. A zero length touches
 * nothing, whatever the pointer. */
static inline int ms_range_fails(uint64_t lim, const void *base, const void *ptr, uint64_t n)
{
    uintptr_t p = (uintptr_t)ptr;
    return (p < (uintptr_t)base) | (p >= lim) | (n >= lim - p);
}

/* The masked lookup: a zero length passes whatever the pointer, and memcpy(dst, src, 0) may
 * name any. */
void __scp_ms_check_mem(const void *base, const void *ptr, uint64_t n, const char *site)
{
    if (n != 0 && __builtin_expect(ms_range_fails(__atomic_load_n(ms_slot((uintptr_t)base), __ATOMIC_RELAXED), base, ptr, n), 0))
        __scp_ms_check_exact(base, ptr, n, site);
}

/* A base's limit read once before a loop that cannot free (instr.c, hoist_loop_lookups). Safe to
 * run for any pointer: every table entry has a readable meta. */
uint64_t __scp_ms_lookup_lim(const void *base)
{
    return __atomic_load_n(ms_slot((uintptr_t)base), __ATOMIC_RELAXED);
}

/* The checks against such a limit: __scp_ms_check, _at and _mem with the lookup done. */
void __scp_ms_check_lk(uint64_t lim, const void *base, const void *ptr, uint64_t n, const char *site)
{
    if (__builtin_expect(((uintptr_t)ptr < (uintptr_t)base) | ((uintptr_t)ptr + n >= lim), 0))
        ms_exact_at(base, ptr, n, site);
}

void __scp_ms_check_lk_at(uint64_t lim, const void *base, uint64_t lo, uint64_t end, const char *site)
{
    if (__builtin_expect((uintptr_t)base + end >= lim, 0))
        ms_report_at(base, lo, end, site);
}

void __scp_ms_check_lk_mem(uint64_t lim, const void *base, const void *ptr, uint64_t n, const char *site)
{
    if (n != 0 && __builtin_expect(ms_range_fails(lim, base, ptr, n), 0))
        __scp_ms_check_exact(base, ptr, n, site);
}

/* The address of the limit of the object base points into, found once before a loop that may
 * free (instr.c, hoist_loop_lookups): the table is written once, at the allocator's start, so
 * the same base finds the same slot at every iteration, and reading the slot again at each check
 * (__scp_ms_slot_lim) gives what a full lookup would: the object's limit, 0 once it is freed, a
 * new object's limit once it is reused. Safe to run for any pointer, like __scp_ms_lookup_lim. */
const uint64_t *__scp_ms_lookup_slot(const void *base)
{
    return ms_slot((uintptr_t)base);
}

/* The same for a base whose first check is made right before its access (instr.c,
 * share_lookups): the unmasked index, as that check's own lookup, so that the optimizer makes
 * the two one. */
const uint64_t *__scp_ms_lookup_slot_at(const void *base)
{
    return ms_slot_in((uintptr_t)base, ms_rix((uintptr_t)base));
}

uint64_t __scp_ms_slot_lim(const uint64_t *slot)
{
    return __atomic_load_n(slot, __ATOMIC_RELAXED);
}
