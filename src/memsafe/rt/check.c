/* memsafe/rt/check.c - the bounds checks that instrumented code calls.
 *
 * Compiled twice: into the runtime library, and to LLVM bitcode that the instrumentation
 * tool links into every instrumented module and marks internal, so that the optimizer inlines
 * the fast path (one table load and a compare for non-heap pointers; a multiply and one meta
 * load more for heap pointers) and only a violation calls into the runtime.
 */
#include "layout.h"

static inline int ms_out_of_bounds(const void *base, const void *ptr, uint64_t n)
{
    uintptr_t b = (uintptr_t)base;
    const struct ms_region *r = &__scp_ms_regions[(b >> MS_REGION_SHIFT) & (MS_TABLE_LEN - 1)];
    uint64_t size = r->size;
    /* No hint here: in a program whose stack and global accesses were pruned, most checked
     * pointers are heap ones. */
    if (size == 0)
        return 0;
    uintptr_t start = r->start;
    uint64_t idx = (uint64_t)(((unsigned __int128)(b - start) * r->magic) >> 64);
    uintptr_t obj = start + idx * size;
    uint64_t lim = __atomic_load_n(&r->meta[idx], __ATOMIC_RELAXED); /* requested + 1, 0 if free */
    uint64_t rel = (uintptr_t)ptr - obj; /* wraps to a huge value below the object */
    /* In bounds iff rel + n <= requested, written so that neither side can wrap. */
    return rel >= lim || n >= lim - rel;
}

void __scp_ms_check(const void *base, const void *ptr, uint64_t n, const char *site)
{
    if (__builtin_expect(ms_out_of_bounds(base, ptr, n), 0))
        __scp_ms_report(base, ptr, n, site);
}

/* memcpy/memmove/memset: a zero length touches nothing, whatever the pointer. */
void __scp_ms_check_mem(const void *base, const void *ptr, uint64_t n, const char *site)
{
    if (n != 0 && __builtin_expect(ms_out_of_bounds(base, ptr, n), 0))
        __scp_ms_report(base, ptr, n, site);
}
