/* shield/usermem.c - copies from and to the program's memory.
 *
 * A bad pointer from the program must give it EFAULT, as the kernel would, never a SIGSEGV
 * inside the shield: the copies go through nofault.c's recovering copy where it may be used,
 * else each page is probed first through a system call that fails with EFAULT. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "shield/internal.h"
#include "shield/core.h"

/* Can the program's 8 bytes at q be read (wr = 0) or written (wr = 1)? The kernel answers:
 * rt_sigprocmask copies its 8-byte set from q (an invalid `how` then changes nothing) or its
 * old mask to q, and fails with EFAULT where a system call would. Protections are per page,
 * so one probe per page that a copy touches answers for the whole copy. A write probe stores
 * 8 bytes at q: its callers keep [q, q+8) inside the bytes they are about to write. Through
 * the gate: the filter traps rt_sigprocmask. */
int sh_page_ok(uintptr_t q, int wr) {
    if (q < 4096) return 0; /* NULL means "no set" to the kernel; page zero is never mapped */
    long r = wr ? sh_gate(SYS_rt_sigprocmask, SIG_BLOCK, 0, (long)q, 8, 0, 0)
                : sh_gate(SYS_rt_sigprocmask, -1, (long)q, 0, 8, 0, 0);
    return r != -EFAULT;
}

/* Probe every page that [a, a + n) touches. A read probe may look at any 8 bytes of the page;
 * a write probe must stay inside [a, a + n), since it stores there: a short part of the first
 * page is probed from a, a short part of the last page up to its end, both then reaching into
 * the neighbouring page the copy also writes. Fewer than 8 bytes to write leave no such
 * window: their pages are probed for reading only, and a read-only page then faults in the
 * copy itself (docs/shield.md "Bad pointers": only without nofault.c's copies). */
static long span_ok(uintptr_t a, size_t n, int wr) {
    uintptr_t end = a + n;
    if (end < a) return -EFAULT;
    if (n < 8) wr = 0;
    for (uintptr_t pg = a & ~(uintptr_t)4095; pg < end; pg += 4096) {
        uintptr_t lo = a > pg ? a : pg, hi = end < pg + 4096 ? end : pg + 4096, q;
        if (!wr) q = lo < pg + 4096 - 8 ? lo : pg + 4096 - 8;
        else q = hi - lo >= 8 || lo == a ? lo : hi - 8;
        assert(!wr || (q >= a && q + 8 <= end));
        if (!sh_page_ok(q, wr)) return -EFAULT;
    }
    return 0;
}

long sh_copy_in(void *dst, const void *src, size_t n) {
    if (n && sh_nf_usable()) return (uintptr_t)src + n < (uintptr_t)src ? -EFAULT : sh_nf_copy(dst, src, n);
    long r = n ? span_ok((uintptr_t)src, n, 0) : 0;
    if (r == 0 && n) memcpy(dst, src, n);
    return r;
}

long sh_copy_out(void *dst, const void *src, size_t n) {
    if (n && sh_nf_usable()) return (uintptr_t)dst + n < (uintptr_t)dst ? -EFAULT : sh_nf_copy(dst, src, n);
    long r = n ? span_ok((uintptr_t)dst, n, 1) : 0;
    if (r == 0 && n) memcpy(dst, src, n);
    return r;
}
