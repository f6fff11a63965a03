/* memsafe/rt/check.c - the bounds checks that instrumented code calls.
 *
 * Compiled twice: into the runtime library, and to LLVM bitcode that the instrumentation
 * tool links into every instrumented module and marks internal, so that the optimizer inlines
 * them and only a violation calls into the runtime.
 *
 * A check has two halves. Where a pointer's object is (its metadata slot and its start)
 * follows from the pointer alone, through the region table, which does not change once a heap
 * pointer exists: __scp_ms_meta and __scp_ms_obj, computed once per base pointer when it has
 * several checks. Whether the object holds the access depends on its requested size, which
 * malloc, realloc and free change: __scp_ms_check_at loads it at each check (one load, a
 * subtraction, two compares; a null slot means "not a heap pointer", one compare).
 */
#include "layout.h"

/* The object's metadata slot, or null if base is not in a heap region: the table entry of a
 * non-heap address is all zeros, so meta and magic are 0 and the sum stays 0, no branch. */
const uint32_t *__scp_ms_meta(const void *base)
{
    uintptr_t b = (uintptr_t)base;
    const struct ms_region *r = &__scp_ms_regions[(b >> MS_REGION_SHIFT) & (MS_TABLE_LEN - 1)];
    uint64_t idx = (uint64_t)(((unsigned __int128)(b & MS_REGION_MASK) * r->magic) >> 64);
    return (const uint32_t *)((uintptr_t)r->meta + idx * sizeof(uint32_t));
}

/* The start of base's object (meaningless when __scp_ms_meta(base) is null). */
uintptr_t __scp_ms_obj(const void *base)
{
    uintptr_t b = (uintptr_t)base;
    const struct ms_region *r = &__scp_ms_regions[(b >> MS_REGION_SHIFT) & (MS_TABLE_LEN - 1)];
    uint64_t off = b & MS_REGION_MASK;
    uint64_t idx = (uint64_t)(((unsigned __int128)off * r->magic) >> 64);
    return b - off + idx * r->size;
}

static inline int ms_out_of_bounds(const uint32_t *meta, uintptr_t obj, const void *ptr, uint64_t n)
{
    if (!meta)
        return 0;
    uint64_t lim = __atomic_load_n(meta, __ATOMIC_RELAXED); /* requested + 1, 0 if free */
    uint64_t rel = (uintptr_t)ptr - obj; /* wraps to a huge value below the object */
    /* In bounds iff rel + n <= requested, written so that neither side can wrap. */
    return rel >= lim || n >= lim - rel;
}

void __scp_ms_check_at(const uint32_t *meta, uintptr_t obj, const void *base, const void *ptr,
                       uint64_t n, const char *site)
{
    if (__builtin_expect(ms_out_of_bounds(meta, obj, ptr, n), 0))
        __scp_ms_report(base, ptr, n, site);
}

void __scp_ms_check(const void *base, const void *ptr, uint64_t n, const char *site)
{
    __scp_ms_check_at(__scp_ms_meta(base), __scp_ms_obj(base), base, ptr, n, site);
}

/* memcpy/memmove/memset: a zero length touches nothing, whatever the pointer. */
void __scp_ms_check_mem(const void *base, const void *ptr, uint64_t n, const char *site)
{
    if (n != 0)
        __scp_ms_check(base, ptr, n, site);
}
