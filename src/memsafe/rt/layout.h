/* memsafe/rt/layout.h - the address-space layout shared by the allocator and the checks.
 *
 * LowFat-style: every size class owns one region of 2^MS_REGION_SHIFT bytes, and the region
 * index of any address is addr >> MS_REGION_SHIFT. Objects of a class sit at multiples of the
 * class size (from address 0, not from the region start: a check then needs neither the start
 * nor a subtraction), so an object's index is floor(addr / size) and its base index * size; the
 * division is a multiplication by a precomputed reciprocal (ms_object_index). Addresses outside
 * every region (stack, globals, mmap, libc's own data) find size 0 in the table and are not
 * checked.
 */
#ifndef SCP_MEMSAFE_LAYOUT_H
#define SCP_MEMSAFE_LAYOUT_H

#include <stdint.h>

#define MS_REGION_SHIFT 36                     /* 64 GiB per size class */
#define MS_REGION_MASK ((UINT64_C(1) << MS_REGION_SHIFT) - 1)
#define MS_TABLE_LEN 2048                      /* covers the 47-bit user address space */
#define MS_FIRST_REGION 16                     /* class 0 starts at 1 TiB */
#define MS_MAX_CLASS_SIZE (UINT64_C(1) << 28)  /* larger requests go to plain mmap, unchecked */
#define MS_ADDR_BITS 44                        /* every region ends below 2^44 (alloc.c) */

/* floor(p / size), with magic = ceil(2^64 / size) = (2^64 + e) / size, 0 <= e < size:
 * p * magic / 2^64 = p / size + p * e / (size * 2^64), and p * e / 2^64 < size / 2^20 for
 * p < 2^44. So the result is exact for every p whose remainder p % size is below
 * size - size / 2^20: for any p when size <= 2^20 or a power of two (e = 0), and for the bytes
 * an object uses when a class keeps its last size / 2^20 + 1 bytes unused (ms_class_room). */
static inline uint64_t ms_object_index(uint64_t p, uint64_t magic)
{
    return (uint64_t)(((unsigned __int128)p * magic) >> 64);
}

/* The bytes of a class's objects an allocation may use (requested size + 1): all of them, but
 * for classes above 2^20 bytes that are not powers of two, whose last bytes would find the next
 * object's index (at most 257 bytes of a 256 MiB class). */
static inline uint64_t ms_class_room(uint64_t size)
{
    if (size <= (UINT64_C(1) << (64 - MS_ADDR_BITS)) || (size & (size - 1)) == 0)
        return size;
    return size - (size >> (64 - MS_ADDR_BITS)) - 1;
}

/* One region's entry; size 0 marks addresses that are not in a heap region. The allocator keeps
 * these (alloc.c); the checks read the same values from the table's arrays below.
 * meta[i] is the limit of the object at address i * size (meta points below the region's
 * array, by the index of its first object): its address + requested size + 1
 * while it is allocated (an access [p, p + n) is in bounds iff p + n < limit and p is not
 * below the object), and 0 while it is free (so a check against a freed, not yet reused object
 * fails too). An absolute address, not a size, so that a check compares against it directly,
 * without the object's start (size * index) or a test for "outside the heap": there, meta is a
 * one-entry array holding UINT64_MAX. 8 bytes per object (a 32-bit size was 4, but cost a load,
 * a multiply, an add and a branch more in every check). */
struct ms_region {
    uint64_t size;
    uint64_t magic;
    uint64_t *meta;
    uintptr_t start; /* the region's first address (the allocator's; the checks do not need it) */
};

/* The checks' table: three arrays of MS_TABLE_LEN 8-byte entries (size, magic, meta of each
 * region), at a fixed address below 2^31, so that a check addresses them with a constant 32-bit
 * displacement: no register holds their address for the whole function, as one did for a
 * symbol's address in position-independent code (sqlite's speedtest1: 354.6M -> 351.0M
 * instructions). Arrays of 8-byte entries rather than one array of 32-byte structures, so that a
 * region's number, addr >> MS_REGION_SHIFT, is the index as it is, scaled by the address mode
 * (`mulq MAGIC(,%idx,8)`): a 32-byte entry's byte offset took a shift and an and (the and also
 * kept a wild pointer's index in the table; see check.c for where that is still needed). Mapped
 * and written by the runtime before any instrumented code runs (alloc.c, ms_map_table and
 * ms_init_regions), never written again. */
#define MS_TABLE_ADDR UINT64_C(0x40000000)
#define MS_TAB_SIZE (MS_TABLE_ADDR)
#define MS_TAB_MAGIC (MS_TABLE_ADDR + 8 * MS_TABLE_LEN)
#define MS_TAB_META (MS_TABLE_ADDR + 16 * MS_TABLE_LEN)
#define MS_TABLE_BYTES (24 * MS_TABLE_LEN)
#define __scp_ms_tab_size ((uint64_t *)(uintptr_t)MS_TAB_SIZE)
#define __scp_ms_tab_magic ((uint64_t *)(uintptr_t)MS_TAB_MAGIC)
#define __scp_ms_tab_meta ((uint64_t **)(uintptr_t)MS_TAB_META)

/* Abort with a report; `site` describes the access (made by the instrumentation tool). */
__attribute__((cold)) _Noreturn void __scp_ms_report(const void *base, const void *ptr, uint64_t n, const char *site);

void __scp_ms_check(const void *base, const void *ptr, uint64_t n, const char *site);
void __scp_ms_check_at(const void *base, uint64_t lo, uint64_t end, const char *site);
void __scp_ms_check_mem(const void *base, const void *ptr, uint64_t n, const char *site);
void __scp_ms_check_below(const void *base, const void *ptr, uint64_t n, const char *site);
/* The out-of-line exact check (check.c): preserve_most, so that its call site keeps its
 * registers (only clang knows the convention; the copy gcc compiles into the runtime is only
 * called from code gcc compiled). */
#if defined(__clang__) && defined(__x86_64__)
#define MS_SLOW_CC __attribute__((preserve_most))
#else
#define MS_SLOW_CC
#endif
MS_SLOW_CC void __scp_ms_check_exact(const void *base, const void *ptr, uint64_t n, const char *site);
uint64_t __scp_ms_lookup_lim(const void *base);
const uint64_t *__scp_ms_lookup_slot(const void *base);
const uint64_t *__scp_ms_lookup_slot_at(const void *base);
uint64_t __scp_ms_slot_lim(const uint64_t *slot);
void __scp_ms_check_lk(uint64_t lim, const void *base, const void *ptr, uint64_t n, const char *site);
void __scp_ms_check_lk_at(uint64_t lim, const void *base, uint64_t lo, uint64_t end, const char *site);
void __scp_ms_check_lk_mem(uint64_t lim, const void *base, const void *ptr, uint64_t n, const char *site);

#endif
