/* shield/nofault.c - copies from and to the program's memory that recover from a fault.
 *
 * Every pointer the shield reads from the program may be bad, and the kernel answers EFAULT,
 * so must the shield. It used to ask the kernel first, one rt_sigprocmask per page touched
 * (usermem.c, sh_page_ok): a system call on every open, stat and chmod. Now it copies directly, with
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
 *
 * The same table holds the program's actions for the other catchable signals, whose handlers
 * the shield wraps so that they never run while their thread is inside the shield (on_signal
 * below; docs/shield.md, "The program's other signal handlers never run inside the shield").
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
 * is clear at every call (the ABI) and in a signal handler (the kernel clears it). The section
 * is pushed and popped, not set: gcc -O0 emits this block between a thread-local variable's
 * `.section .tbss` and its label, which would otherwise land in .text. */
__asm__(".pushsection .text\n"
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
        ".popsection\n");
extern const uintptr_t sh_nf_range[3];
_Static_assert(EFAULT == 14, "the fix-up returns -14");

#define NF_BITS ((1ull << (SIGSEGV - 1)) | (1ull << (SIGBUS - 1)))
#define SYS_BIT (1ull << (SIGSYS - 1))

static struct {
    int ready;  /* the handler is the kernel's action for both signals */
    int hazard; /* some handler runs with SIGSEGV or SIGBUS blocked: never fast */
    int defer;  /* the other signals' handlers are the shield's wrapper (on_signal) */
    /* the program's actions, by signal number, for the signals the shield owns (sh_nf_owns,
     * sh_sig_defers), under a sequence lock: the handlers read them, sh_nf_sigaction writes
     * them with every signal blocked */
    unsigned seq;
    int lock;
    struct sh_ksigaction prog[SH_NSIG + 1];
    /* prog[sig] holds the program's action: read from the kernel at start (SIGSEGV, SIGBUS) or
     * at the program's first sigaction for sig (one system call per signal it uses, not 60 per
     * start); until then the kernel's action is the program's own */
    unsigned char known[SH_NSIG + 1];
} nf;

/* 1 while SIGSEGV or SIGBUS may be blocked in this thread */
static __thread int nf_unsafe;

int sh_nf_usable(void) {
    return __atomic_load_n(&nf.ready, __ATOMIC_ACQUIRE) && !__atomic_load_n(&nf.hazard, __ATOMIC_RELAXED) &&
           !nf_unsafe;
}

int sh_nf_owns(int sig) { return (sig == SIGSEGV || sig == SIGBUS) && __atomic_load_n(&nf.ready, __ATOMIC_ACQUIRE); }

static void prog_read(int sig, struct sh_ksigaction *a) {
    unsigned s;
    do {
        s = __atomic_load_n(&nf.seq, __ATOMIC_ACQUIRE);
        *a = nf.prog[sig];
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
    } while ((s & 1) || s != __atomic_load_n(&nf.seq, __ATOMIC_RELAXED));
}

static void on_fault(int sig, siginfo_t *si, void *ucv);
static void on_signal(int sig, siginfo_t *si, void *ucv);
static long take_over(int sig);

static int is_fault(int sig) { return sig == SIGSEGV || sig == SIGBUS; }

/* The kernel's action that delivers sig as the program's action a would be delivered: through
 * on_fault (SIGSEGV, SIGBUS: always), through on_signal (the others' handlers), or the
 * program's SIG_DFL or SIG_IGN itself (nothing of the program's runs: nothing to defer). */
static long mirror(int sig, const struct sh_ksigaction *a) {
    const unsigned long keep = SA_ONSTACK | SA_NODEFER | SA_RESTART | SA_NOCLDSTOP | SA_NOCLDWAIT;
    int handler = a->handler != SIG_DFL && a->handler != SIG_IGN;
    struct sh_ksigaction k = {(void *)on_fault, SA_SIGINFO | SA_ONSTACK, 0};
    if (handler || !is_fault(sig)) {
        k.handler = handler ? (is_fault(sig) ? (void *)on_fault : (void *)on_signal) : a->handler;
        k.flags = SA_SIGINFO | (a->flags & keep);
        k.mask = a->mask & ~SYS_BIT; /* a trap with SIGSYS blocked kills the thread */
    }
    return sh_ksigaction(sig, &k, NULL);
}

/* Set the program's action for sig (a; NULL: keep) and/or read the previous one (old). */
static long prog_update(int sig, const struct sh_ksigaction *a, struct sh_ksigaction *old) {
    uint64_t all = ~0ull, was;
    sh_gate(SYS_rt_sigprocmask, SIG_BLOCK, (long)&all, (long)&was, 8, 0, 0);
    while (__atomic_exchange_n(&nf.lock, 1, __ATOMIC_ACQUIRE)) sched_yield();
    long r = nf.known[sig] ? 0 : take_over(sig); /* no handler of ours reads it yet */
    if (r == 0 && old) *old = nf.prog[sig];
    if (a && r == 0) {
        __atomic_store_n(&nf.seq, nf.seq + 1, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        nf.prog[sig] = *a;
        __atomic_store_n(&nf.seq, nf.seq + 1, __ATOMIC_RELEASE);
        r = mirror(sig, a);
    }
    __atomic_store_n(&nf.lock, 0, __ATOMIC_RELEASE);
    sh_gate(SYS_rt_sigprocmask, SIG_SETMASK, (long)&was, 0, 8, 0, 0);
    return r;
}

/* this thread's own copy of sig, with its siginfo, queued again */
static void requeue(int sig, const siginfo_t *si) {
    sh_gate(SYS_rt_tgsigqueueinfo, sh_gate(SYS_getpid, 0, 0, 0, 0, 0, 0), sh_gate(SYS_gettid, 0, 0, 0, 0, 0, 0), sig,
            (long)si, 0, 0);
}

/* The default action: blocked in the handler (no SA_NODEFER), the signal queued again is
 * delivered with it when the handler returns. */
static void default_action(int sig, const siginfo_t *si) {
    int saved = errno;
    struct sh_ksigaction dfl = {SIG_DFL, 0, 0};
    sh_ksigaction(sig, &dfl, NULL);
    requeue(sig, si);
    errno = saved;
}

static void reset_hand(int sig, const struct sh_ksigaction *a) {
    if (!(a->flags & SA_RESETHAND)) return;
    struct sh_ksigaction dfl = {SIG_DFL, 0, 0};
    int saved = errno;
    prog_update(sig, &dfl, NULL);
    errno = saved;
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
        default_action(sig, si);
        return;
    }
    reset_hand(sig, &a);
    int was = nf_unsafe;
    nf_unsafe = 1; /* the handler's own signal (and maybe the other) is blocked while it runs */
    /* x86-64: the kernel passes siginfo and ucontext to every handler, SA_SIGINFO or not */
    ((void (*)(int, siginfo_t *, void *))a.handler)(sig, si, ucv);
    nf_unsafe = was;
}

/* ---- the other signals: the program's handlers never run inside the shield ----------------
 * The volume library and the shield's tables are not reentrant: a handler that writes or
 * fsyncs a protected file, or calls _exit or exit (which commit every open file), while its
 * thread is inside them (sh_in_lib) would start a second commit of a file mid-commit, or wait
 * for a lock its own thread holds. So a signal that lands there is deferred: blocked in this
 * thread until the shield leaves (sh_lib_leave, or the return from the SIGSYS handler) and
 * queued again with its own siginfo, so the kernel delivers it then, once, as it would have
 * (a standard signal sent again meanwhile merges with it, as the kernel merges them). Cost:
 * a thread-local test per signal and per leave; system calls only when a signal is
 * deferred. */
__thread uint64_t sh_sig_deferred;

static void defer(int sig, const siginfo_t *si, ucontext_t *uc) {
    uint64_t bit = 1ull << (sig - 1), m;
    /* blocked first: with SA_NODEFER the queued copy would come straight back */
    sh_gate(SYS_rt_sigprocmask, SIG_BLOCK, (long)&bit, 0, 8, 0, 0);
    memcpy(&m, &uc->uc_sigmask, sizeof m); /* and after this handler returns */
    m |= bit;
    memcpy(&uc->uc_sigmask, &m, sizeof m);
    requeue(sig, si);
    sh_sig_deferred |= bit;
}

void sh_sig_deliver(void) {
    assert(!sh_in_lib);
    /* inside the SIGSYS handler the interrupted context's mask (never blocking them) comes
     * back at its return: they are delivered then, on the program's own context */
    if (sh_in_trap) return;
    uint64_t d = sh_sig_deferred;
    sh_sig_deferred = 0;
    sh_gate(SYS_rt_sigprocmask, SIG_UNBLOCK, (long)&d, 0, 8, 0, 0);
}

void sh_sig_trap_leave(uint64_t interrupted) {
    assert(!sh_in_lib && !(interrupted & sh_sig_deferred));
    (void)interrupted;
    sh_sig_deferred = 0;
}

static void on_signal(int sig, siginfo_t *si, void *ucv) {
    if (sh_in_lib) {
        int saved = errno;
        defer(sig, si, ucv);
        errno = saved;
        return;
    }
    struct sh_ksigaction a;
    prog_read(sig, &a);
    if (a.handler == SIG_IGN) return; /* changed since the kernel chose this handler */
    if (a.handler == SIG_DFL) {
        default_action(sig, si);
        return;
    }
    reset_hand(sig, &a);
    ((void (*)(int, siginfo_t *, void *))a.handler)(sig, si, ucv);
}

/* not: the faults (nofault's own, or not deferrable: SIGILL, SIGFPE, SIGTRAP), SIGSYS (the
 * shield's), SIGKILL and SIGSTOP, glibc's own two (32, 33: its sigaction refuses them) */
static int deferrable(int sig) {
    return sig > 0 && sig <= SH_NSIG && sig != SIGSEGV && sig != SIGBUS && sig != SIGILL && sig != SIGFPE &&
           sig != SIGTRAP && sig != SIGSYS && sig != SIGKILL && sig != SIGSTOP && sig != 32 && sig != 33;
}

int sh_sig_defers(int sig) { return deferrable(sig) && __atomic_load_n(&nf.defer, __ATOMIC_ACQUIRE); }

/* The program's action for sig as the kernel holds it (SIG_IGN kept across exec, or a handler
 * that an earlier constructor set), taken into the table and mirrored. */
static long take_over(int sig) {
    struct sh_ksigaction cur;
    long r = sh_ksigaction(sig, NULL, &cur);
    if (r < 0) return r;
    cur.flags &= ~0x04000000ul; /* SA_RESTORER: the kernel's detail, not the program's */
    nf.prog[sig] = cur;
    nf.known[sig] = 1;
    return cur.handler == SIG_DFL || cur.handler == SIG_IGN ? 0 : mirror(sig, &cur);
}

void sh_nf_install(void) {
    if (take_over(SIGSEGV) < 0) return;
    if (take_over(SIGBUS) < 0) {
        sh_ksigaction(SIGSEGV, &nf.prog[SIGSEGV], NULL);
        return;
    }
    if (mirror(SIGSEGV, &nf.prog[SIGSEGV]) < 0 || mirror(SIGBUS, &nf.prog[SIGBUS]) < 0) {
        sh_ksigaction(SIGSEGV, &nf.prog[SIGSEGV], NULL);
        sh_ksigaction(SIGBUS, &nf.prog[SIGBUS], NULL);
        return;
    }
    __atomic_store_n(&nf.ready, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&nf.defer, 1, __ATOMIC_RELEASE); /* the others: at their first sigaction */
}

long sh_nf_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    assert(sh_nf_owns(sig) || sh_sig_defers(sig));
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
