/* shield/nofault.c - copies from and to the program's memory that recover from a fault.
 *
 * Every pointer the shield reads from the program may be bad, and the kernel answers EFAULT,
 * so must the shield. It used to ask the kernel first, one rt_sigprocmask per page touched
 * (core.c page_ok): a system call on every open, stat and chmod. Now it copies directly, with
 * two small routines (sh_nf_copy, sh_nf_strcpy) whose every load and store lies in one range
 * of code, and a SIGSEGV/SIGBUS handler of its own that, for a fault whose instruction pointer
 * is in that range, resumes at the routines' common exit with -EFAULT (what the kernel's
 * exception table does for copy_from_user). The decision is by the faulting instruction only,
 * so it needs no per-thread state and holds for every thread, on any stack.
 *
 * Every other SIGSEGV/SIGBUS belongs to the program and reaches it as the kernel would
 * deliver it:
 * - the program's sigaction/signal for these two signals are served here (interpose.c): the
 *   action it sets is kept and reported back as it was set, and the kernel's action becomes
 *   this file's handler with the program's flags (SA_ONSTACK, SA_NODEFER, SA_RESTART) and
 *   mask, so the kernel builds the frame where and with the mask it would have for the
 *   program's handler (alternate stack included), and the handler is called with the same
 *   siginfo (si_addr) and ucontext; SA_RESETHAND is done here;
 * - SIG_DFL, or SIG_IGN for a fault (which the kernel never ignores): the kernel's action is
 *   set back to SIG_DFL and the signal is queued again to this thread with its own siginfo:
 *   the thread dies of it as it would have, with its core;
 * - SIG_IGN for a signal sent by kill(): dropped, as the kernel does.
 *
 * A fault with SIGSEGV or SIGBUS blocked is not delivered: the kernel resets the action and
 * kills the process. So the fast copies are used only where the shield knows both are
 * unblocked (sh_nf_usable); elsewhere the page probe stays. The shield sees every change of
 * the mask that the program can make: sigprocmask/pthread_sigmask (interposed), every other
 * rt_sigprocmask (trapped: init.c, exact), the temporary masks of sigsuspend, ppoll, pselect
 * and epoll_pwait (interposed), and the masks its own handlers for these two signals run
 * with. A handler of another signal whose sa_mask holds SIGSEGV or SIGBUS (set through
 * sigaction) turns the fast copies off for the process. Not seen, and so not covered: a raw
 * rt_sigaction of SIGSEGV/SIGBUS (not through libc's sigaction or signal), which replaces the
 * shield's handler (a bad pointer then reaches the program's handler, or kills it), a raw
 * rt_sigaction of another signal with SIGSEGV/SIGBUS in its mask, a handler that changes
 * its uc_sigmask to block them on return or unblocks them while the interrupted code had them
 * blocked; see docs/shield.md "Bad pointers".
 */
#include <assert.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "shield/internal.h"

/* The routines. No stack use, so the fix-up's `ret` returns to the caller. The direction flag
 * is clear at every call (the ABI) and in a signal handler (the kernel clears it). */
__asm__(".text\n"
        ".p2align 4\n"
        ".globl sh_nf_copy\n"
        ".hidden sh_nf_copy\n"
        ".type sh_nf_copy,@function\n"
        "sh_nf_copy:\n"
        "nf_begin:\n"
        "    mov %rdx, %rcx\n"
        "    rep movsb\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".size sh_nf_copy, .-sh_nf_copy\n"
        ".globl sh_nf_strcpy\n"
        ".hidden sh_nf_strcpy\n"
        ".type sh_nf_strcpy,@function\n"
        "sh_nf_strcpy:\n"
        "    xor %ecx, %ecx\n"
        "    test %rdx, %rdx\n"
        "    jz 2f\n"
        "1:  movzbl (%rsi,%rcx), %eax\n"
        "    mov %al, (%rdi,%rcx)\n"
        "    test %al, %al\n"
        "    jz 2f\n"
        "    inc %rcx\n"
        "    cmp %rdx, %rcx\n"
        "    jb 1b\n"
        "2:  mov %rcx, %rax\n"
        "    ret\n"
        ".size sh_nf_strcpy, .-sh_nf_strcpy\n"
        "nf_end:\n"
        "nf_fixup:\n"
        "    mov $-14, %rax\n" /* -EFAULT */
        "    ret\n"
        ".globl sh_nf_range\n"
        ".hidden sh_nf_range\n"
        ".section .data.rel.ro,\"aw\"\n"
        ".p2align 3\n"
        "sh_nf_range:\n"
        "    .quad nf_begin, nf_end, nf_fixup\n"
        ".text\n");
extern const uintptr_t sh_nf_range[3];
_Static_assert(EFAULT == 14, "the fix-up returns -14");

#define NF_BITS ((1ull << (SIGSEGV - 1)) | (1ull << (SIGBUS - 1)))
#define SYS_BIT (1ull << (SIGSYS - 1))

static struct {
    int ready;  /* the handler is the kernel's action for both signals */
    int hazard; /* some handler runs with SIGSEGV or SIGBUS blocked: never fast */
    /* the program's actions (index 0 SIGSEGV, 1 SIGBUS), under a sequence lock: the
     * handler reads them, sh_nf_sigaction writes them with every signal blocked */
    unsigned seq;
    int lock;
    struct sh_ksigaction prog[2];
} nf;

/* 1 while SIGSEGV or SIGBUS may be blocked in this thread */
static __thread int nf_unsafe;

int sh_nf_usable(void) {
    return __atomic_load_n(&nf.ready, __ATOMIC_ACQUIRE) && !__atomic_load_n(&nf.hazard, __ATOMIC_RELAXED) &&
           !nf_unsafe;
}

int sh_nf_owns(int sig) { return (sig == SIGSEGV || sig == SIGBUS) && __atomic_load_n(&nf.ready, __ATOMIC_ACQUIRE); }

static int slot(int sig) { return sig == SIGSEGV ? 0 : 1; }

static void prog_read(int sig, struct sh_ksigaction *a) {
    unsigned s;
    do {
        s = __atomic_load_n(&nf.seq, __ATOMIC_ACQUIRE);
        *a = nf.prog[slot(sig)];
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
    } while ((s & 1) || s != __atomic_load_n(&nf.seq, __ATOMIC_RELAXED));
}

static void on_fault(int sig, siginfo_t *si, void *ucv);

/* The kernel's action that delivers sig as the program's action a would be delivered. */
static long mirror(int sig, const struct sh_ksigaction *a) {
    struct sh_ksigaction k = {(void *)on_fault, SA_SIGINFO | SA_ONSTACK, 0};
    if (a->handler != SIG_DFL && a->handler != SIG_IGN) {
        k.flags = SA_SIGINFO | (a->flags & (SA_ONSTACK | SA_NODEFER | SA_RESTART));
        k.mask = a->mask & ~SYS_BIT; /* a trap with SIGSYS blocked kills the thread */
    }
    return sh_ksigaction(sig, &k, NULL);
}

/* Set the program's action for sig (a; NULL: keep) and/or read the previous one (old). */
static long prog_update(int sig, const struct sh_ksigaction *a, struct sh_ksigaction *old) {
    uint64_t all = ~0ull, was;
    sh_gate(SYS_rt_sigprocmask, SIG_BLOCK, (long)&all, (long)&was, 8, 0, 0);
    while (__atomic_exchange_n(&nf.lock, 1, __ATOMIC_ACQUIRE)) sched_yield();
    if (old) *old = nf.prog[slot(sig)];
    long r = 0;
    if (a) {
        __atomic_store_n(&nf.seq, nf.seq + 1, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        nf.prog[slot(sig)] = *a;
        __atomic_store_n(&nf.seq, nf.seq + 1, __ATOMIC_RELEASE);
        r = mirror(sig, a);
    }
    __atomic_store_n(&nf.lock, 0, __ATOMIC_RELEASE);
    sh_gate(SYS_rt_sigprocmask, SIG_SETMASK, (long)&was, 0, 8, 0, 0);
    return r;
}

static void on_fault(int sig, siginfo_t *si, void *ucv) {
    ucontext_t *uc = ucv;
    greg_t *g = uc->uc_mcontext.gregs;
    uintptr_t pc = (uintptr_t)g[REG_RIP];
    if (si->si_code > 0 && pc >= sh_nf_range[0] && pc < sh_nf_range[1]) {
        g[REG_RIP] = (greg_t)sh_nf_range[2]; /* the copy returns -EFAULT */
        return;
    }
    struct sh_ksigaction a;
    prog_read(sig, &a);
    if (a.handler == SIG_IGN && si->si_code <= 0) return; /* sent, and ignored */
    if (a.handler == SIG_DFL || a.handler == SIG_IGN) {
        /* the default action: blocked in this handler (no SA_NODEFER), the signal queued
         * again is delivered with it when the handler returns */
        int saved = errno;
        struct sh_ksigaction dfl = {SIG_DFL, 0, 0};
        sh_ksigaction(sig, &dfl, NULL);
        sh_gate(SYS_rt_tgsigqueueinfo, sh_gate(SYS_getpid, 0, 0, 0, 0, 0, 0),
                sh_gate(SYS_gettid, 0, 0, 0, 0, 0, 0), sig, (long)si, 0, 0);
        errno = saved;
        return;
    }
    if (a.flags & SA_RESETHAND) {
        struct sh_ksigaction dfl = {SIG_DFL, 0, 0};
        int saved = errno;
        prog_update(sig, &dfl, NULL);
        errno = saved;
    }
    int was = nf_unsafe;
    nf_unsafe = 1; /* the handler's own signal (and maybe the other) is blocked while it runs */
    /* x86-64: the kernel passes siginfo and ucontext to every handler, SA_SIGINFO or not */
    ((void (*)(int, siginfo_t *, void *))a.handler)(sig, si, ucv);
    nf_unsafe = was;
}

void sh_nf_install(void) {
    static const int sigs[2] = {SIGSEGV, SIGBUS};
    for (int i = 0; i < 2; i++) {
        /* what this image starts with: SIG_IGN kept across exec, or a handler that an
         * earlier constructor set */
        struct sh_ksigaction cur;
        if (sh_ksigaction(sigs[i], NULL, &cur) < 0) return;
        cur.flags &= ~0x04000000ul; /* SA_RESTORER: the kernel's detail, not the program's */
        nf.prog[i] = cur;
        if (mirror(sigs[i], &cur) < 0) {
            if (i) sh_ksigaction(sigs[0], &nf.prog[0], NULL);
            return;
        }
    }
    __atomic_store_n(&nf.ready, 1, __ATOMIC_RELEASE);
}

long sh_nf_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    assert(sh_nf_owns(sig));
    struct sh_ksigaction a, o;
    if (act) {
        a.handler = (void *)act->sa_handler;
        a.flags = (unsigned long)act->sa_flags;
        memcpy(&a.mask, &act->sa_mask, sizeof a.mask);
    }
    long r = prog_update(sig, act ? &a : NULL, &o);
    if (r == 0 && old) {
        memset(old, 0, sizeof *old);
        old->sa_handler = (void (*)(int))o.handler;
        old->sa_flags = (int)o.flags;
        memcpy(&old->sa_mask, &o.mask, sizeof o.mask);
    }
    return r;
}

void sh_nf_note_handler(int sig, const struct sigaction *act) {
    if (!act || act->sa_handler == SIG_DFL || act->sa_handler == SIG_IGN || sig == SIGSEGV || sig == SIGBUS) return;
    if (sigismember(&act->sa_mask, SIGSEGV) || sigismember(&act->sa_mask, SIGBUS))
        __atomic_store_n(&nf.hazard, 1, __ATOMIC_RELAXED);
}

static uint64_t bits(const sigset_t *set) {
    uint64_t b;
    memcpy(&b, set, sizeof b);
    return b & NF_BITS;
}

void sh_nf_note_mask(int how, const sigset_t *set) {
    if (!set) return;
    uint64_t b = bits(set);
    if (how == SIG_SETMASK) nf_unsafe = b != 0;
    else if (how == SIG_BLOCK && b) nf_unsafe = 1;
    else if (how == SIG_UNBLOCK && b == NF_BITS) nf_unsafe = 0;
}

void sh_nf_set_mask(uint64_t mask) { nf_unsafe = (mask & NF_BITS) != 0; }

int sh_nf_trap_enter(uint64_t mask) {
    int was = nf_unsafe;
    nf_unsafe = (mask & NF_BITS) != 0;
    return was;
}

int sh_nf_mask_enter(const sigset_t *tmp) {
    int was = nf_unsafe;
    if (tmp && bits(tmp)) nf_unsafe = 1;
    return was;
}

void sh_nf_mask_leave(int prev) { nf_unsafe = prev; }

/* exec resets a handler to SIG_DFL but keeps SIG_IGN: the kernel's action becomes the
 * program's SIG_IGN just before (failed = 0), and the shield's handler again after an exec
 * that failed (failed = 1). */
void sh_nf_exec(int failed) {
    if (!__atomic_load_n(&nf.ready, __ATOMIC_ACQUIRE)) return;
    static const int sigs[2] = {SIGSEGV, SIGBUS};
    for (int i = 0; i < 2; i++) {
        struct sh_ksigaction a;
        prog_read(sigs[i], &a);
        if (a.handler != SIG_IGN) continue;
        if (failed) mirror(sigs[i], &a);
        else sh_ksigaction(sigs[i], &a, NULL);
    }
}
