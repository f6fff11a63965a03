/* memsafe/rt/check.c - the bounds checks that instrumented code calls.
 *
 * Compiled twice: into the runtime library, and to LLVM bitcode that the instrumentation
 * tool links into every instrumented module and marks internal, so that the optimizer inlines
 * the fast path (one table load and a compare for non-heap pointers; a multiply and one meta
 * load more for heap pointers) and only a violation calls into the runtime.
 */
#include "layout.h"

/* The table entry of b's region. Written as a byte offset, (b >> 31) & (mask << 5), so that the
 * compiled check is a shift and an and (the index form compiles to shift, and, shift). */
static inline const struct ms_region *ms_region_entry(uintptr_t b)
{
    _Static_assert(sizeof(struct ms_region) == 32, "the byte offset below assumes 32-byte entries");
    uintptr_t at = (b >> (MS_REGION_SHIFT - 5)) & ((uintptr_t)(MS_TABLE_LEN - 1) << 5);
    return (const struct ms_region *)((const char *)__scp_ms_regions + at);
}

/* Every load of a check is made whatever the pointer (an entry outside the heap has size 0,
 * magic 0 and a readable meta, alloc.c), and "outside the heap" is one more term of the
 * verdict, not an early return: so a check is straight-line code up to its one branch to the
 * report, and the optimizer can hoist its loads out of a loop that makes no call, or share
 * them with an earlier check of the same base (instr.c puts them in an alias scope of their
 * own: no store of the program writes them). */
static inline int ms_out_of_bounds(const void *base, const void *ptr, uint64_t n)
{
    uintptr_t b = (uintptr_t)base;
    const struct ms_region *r = ms_region_entry(b);
    uint64_t size = r->size;
    uintptr_t start = r->start;
    uint64_t idx = (uint64_t)(((unsigned __int128)(b - start) * r->magic) >> 64);
    uintptr_t obj = start + idx * size;
    uint64_t lim = __atomic_load_n(&r->meta[idx], __ATOMIC_RELAXED); /* requested + 1, 0 if free */
    uint64_t rel = (uintptr_t)ptr - obj; /* wraps to a huge value below the object */
    /* In bounds iff rel + n <= requested, written so that neither side can wrap. */
    return (size != 0) & (rel >= lim || n >= lim - rel);
}

void __scp_ms_check(const void *base, const void *ptr, uint64_t n, const char *site)
{
    if (__builtin_expect(ms_out_of_bounds(base, ptr, n), 0))
        __scp_ms_report(base, ptr, n, site);
}

/* The bytes [base + lo, base + end), with 0 <= lo < end < 2^62 constants of the instrumented
 * code (an access, or merged accesses, at constant offsets from a pointer that is its own
 * base: a pointer loaded from memory, an argument, a malloc result). base's offset in its slot
 * is below 2^28, so nothing can wrap and the access cannot start before the object: one
 * compare against the requested size instead of two, and the accessed address is not needed
 * (fewer live registers around the check). */
void __scp_ms_check_at(const void *base, uint64_t lo, uint64_t end, const char *site)
{
    uintptr_t b = (uintptr_t)base;
    const struct ms_region *r = ms_region_entry(b);
    uint64_t size = r->size;
    uint64_t off = b - r->start;
    uint64_t idx = (uint64_t)(((unsigned __int128)off * r->magic) >> 64);
    uint64_t lim = __atomic_load_n(&r->meta[idx], __ATOMIC_RELAXED); /* requested + 1, 0 if free */
    /* off - idx * size (b's offset in its slot) + end >= lim, without the subtraction. */
    if (__builtin_expect((size != 0) & (off + end >= idx * size + lim), 0))
        __scp_ms_report(base, (const char *)base + lo, end - lo, site);
}

/* memcpy/memmove/memset: a zero length touches nothing, whatever the pointer. */
void __scp_ms_check_mem(const void *base, const void *ptr, uint64_t n, const char *site)
{
    if (n != 0 && __builtin_expect(ms_out_of_bounds(base, ptr, n), 0))
        __scp_ms_report(base, ptr, n, site);
}

/* A base's bounds read once before a loop that cannot free (instr.c, hoist_loop_lookups): the
 * address of its object (0 outside the heap) and its requested size + 1 (0 if free; outside
 * the heap UINT64_MAX, so that every check against them passes). Safe to run for any pointer:
 * every table entry has a readable meta. */
uint64_t __scp_ms_lookup_obj(const void *base)
{
    uintptr_t b = (uintptr_t)base;
    const struct ms_region *r = ms_region_entry(b);
    uint64_t idx = (uint64_t)(((unsigned __int128)(b - r->start) * r->magic) >> 64);
    return r->size != 0 ? r->start + idx * r->size : 0;
}

uint64_t __scp_ms_lookup_lim(const void *base)
{
    uintptr_t b = (uintptr_t)base;
    const struct ms_region *r = ms_region_entry(b);
    uint64_t idx = (uint64_t)(((unsigned __int128)(b - r->start) * r->magic) >> 64);
    return r->size != 0 ? __atomic_load_n(&r->meta[idx], __ATOMIC_RELAXED) : UINT64_MAX;
}

/* The checks against such bounds: __scp_ms_check, _at and _mem with the lookup done. */
void __scp_ms_check_lk(uint64_t obj, uint64_t lim, const void *base, const void *ptr, uint64_t n,
                       const char *site)
{
    uint64_t rel = (uintptr_t)ptr - obj;
    if (__builtin_expect(rel >= lim || n >= lim - rel, 0))
        __scp_ms_report(base, ptr, n, site);
}

void __scp_ms_check_lk_at(uint64_t obj, uint64_t lim, const void *base, uint64_t lo, uint64_t end,
                          const char *site)
{
    /* base is its own base: base - obj is its offset in its slot (0 outside the heap, where obj
     * is 0 and lim UINT64_MAX, and base + end stays below it). */
    if (__builtin_expect((uintptr_t)base - obj + end >= lim, 0))
        __scp_ms_report(base, (const char *)base + lo, end - lo, site);
}

void __scp_ms_check_lk_mem(uint64_t obj, uint64_t lim, const void *base, const void *ptr, uint64_t n,
                           const char *site)
{
    uint64_t rel = (uintptr_t)ptr - obj;
    if (n != 0 && __builtin_expect(rel >= lim || n >= lim - rel, 0))
        __scp_ms_report(base, ptr, n, site);
}
