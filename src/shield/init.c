/* shield/init.c - start-up before main(), the SIGSYS handler and exec (the volumes' opening, at
 * first use or before main, is volopen.c's).
 *
 * Start-up order matters: the configuration descriptor is read and closed and its variable
 * removed from the environment first; then the gate page is mapped, the reserved range filled
 * with placeholders, the volumes opened, the SIGSYS handler installed and, last, the seccomp
 * filter, one for all of the image's rules (with TSYNC, so threads started by earlier
 * constructors are covered too).
 */
#include <assert.h>
#include <dlfcn.h>
#include <emmintrin.h> /* SSE2, every x86-64: the code scan */
#include <link.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h> /* OPENSSL_cleanup, which the shield defines */
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "shield/internal.h"
#include "runtime/notify.h"
#include "shield/net.h"

#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1
#endif

__attribute__((noreturn)) static void die(const char *what, const scp_err *e) {
    char buf[600];
    int n = snprintf(buf, sizeof buf, "scp-shield: %s%s%s; refusing to run the program\n", what,
                     e ? ": " : "", e ? e->msg : "");
    if (n > 0) {
        ssize_t w = write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
        (void)w;
    }
    _exit(126);
}

#define SIGSYS_BIT (1ull << (SIGSYS - 1))

/* A trapped rt_sigprocmask (glibc's own sigsetmask, sigprocmask inside libc, a raw syscall)
 * is about the interrupted code's mask, which is uc_sigmask: the thread's mask while this
 * handler runs is thrown away by sigreturn. The kernel still does the work (it checks `how`,
 * the size and both pointers, and fails with EINVAL or EFAULT as it would): the handler's
 * mask is first set to the interrupted one, the call made on it, and the result, with SIGSYS
 * taken out again, becomes the mask that sigreturn restores. */
static long trap_sigprocmask(ucontext_t *uc, const long a[6]) {
    uint64_t interrupted, now;
    /* the kernel's sigset_t, the first 8 bytes of uc_sigmask, is all that sigreturn reads */
    memcpy(&interrupted, &uc->uc_sigmask, sizeof interrupted);
    interrupted &= ~SIGSYS_BIT;
    sh_gate_direct(SYS_rt_sigprocmask, SIG_SETMASK, (long)&interrupted, 0, 8, 0, 0);
    long r = sh_gate_direct(SYS_rt_sigprocmask, a[0], a[1], a[2], a[3], 0, 0);
    /* read back even after an error: a bad old-set pointer fails after the mask changed */
    sh_gate_direct(SYS_rt_sigprocmask, SIG_BLOCK, 0, (long)&now, 8, 0, 0);
    if (now & SIGSYS_BIT) { /* a trap with SIGSYS blocked kills the thread */
        now &= ~SIGSYS_BIT;
        sh_gate_direct(SYS_rt_sigprocmask, SIG_SETMASK, (long)&now, 0, 8, 0, 0);
    }
    memcpy(&uc->uc_sigmask, &now, sizeof now);
    sh_nf_set_mask(now); /* the mask the thread goes on with */
    return r;
}

/* Set when sh_ctor has set the shield up; the SIGSYS handler is installed long before (see
 * there) and until then only lets trapped calls through. */
static int sigsys_serving;
/* This image's filter is installed (sh_ctor's last step): before it the shield starts no
 * thread (internal.h) */
int sh_filter_up;

/* ---- the trap's own stack ------------------------------------------------------------------
 * A served trap (an exec, a path call) runs deep: the exec path's frames alone came to 35 KiB
 * under clang -O3 (docs/shield.md, "Stack budget"), and the SIGSYS handler is entered on
 * whatever stack the call was made from. glibc's posix_spawn child runs on a 36 KiB stack of
 * its own (clone3 with CLONE_VM|CLONE_VFORK), and its execve overflowed it; a thread made with
 * a small stack, or a cgo program's goroutine, is no better off. So the handler moves the
 * served work onto a stack the shield owns, one per thread, mapped at the thread's first
 * served trap. Not with sigaltstack and SA_ONSTACK: the alternate stack is the program's
 * (Rust installs an 8 KiB one in every thread, for its overflow handler; a program's own
 * sigaltstack call would replace the shield's, or the shield's its), and the kernel drops it
 * in every thread made with CLONE_VM. Only the signal frame and on_sigsys's own few hundred
 * bytes stay on the interrupted stack.
 *
 * Per thread (TLS): a vfork or posix_spawn child shares its parent thread's TLS and memory,
 * and so its trap stack; the parent is suspended until the child execs or exits, so the child
 * may use it, unless the parent itself is on it (it vforked from inside a trap: the shield's
 * own clones there do not share memory, but the rule costs one getpid only then). The busy
 * mark a child leaves behind when its exec succeeds is stale once the parent runs again. */
#define TRAP_STACK (256u << 10) /* reserved (NORESERVE: pages are taken as touched); its top SH_SCRATCH_SIZE bytes are the thread's scratch (sh_scratch) */
#define TRAP_GUARD 4096u        /* below it: an overflow faults instead of writing on */
static __thread char *trap_stk; /* its lowest usable byte, or NULL */
static __thread int trap_stk_busy;
static pthread_key_t trap_stk_key; /* its destructor unmaps the thread's stack at thread exit */
static int trap_stk_key_ok;

/* long sh_run_on(void *top, long (*fn)(void *), void *arg): fn(arg) with the stack pointer at
 * top (16-byte aligned), back on the caller's stack afterwards. The frame pointer keeps the
 * caller's stack, and the CFI names it, so a debugger's backtrace crosses over. */
long sh_run_on(void *top, long (*fn)(void *), void *arg);
__asm__(".text\n"
        ".p2align 4\n"
        ".globl sh_run_on\n"
        ".hidden sh_run_on\n"
        ".type sh_run_on, @function\n"
        "sh_run_on:\n"
        ".cfi_startproc\n"
        "  push %rbp\n"
        "  .cfi_def_cfa_offset 16\n"
        "  .cfi_offset %rbp, -16\n"
        "  mov %rsp, %rbp\n"
        "  .cfi_def_cfa_register %rbp\n"
        "  mov %rdi, %rsp\n"
        "  mov %rdx, %rdi\n"
        "  call *%rsi\n"
        "  mov %rbp, %rsp\n"
        "  pop %rbp\n"
        "  .cfi_def_cfa %rsp, 8\n"
        "  ret\n"
        ".cfi_endproc\n"
        ".size sh_run_on, .-sh_run_on\n");

static void trap_stk_free(void *p) {
    if (p == trap_stk) trap_stk = NULL; /* (a later trap of this exiting thread maps a new one) */
    sh_gate(SYS_munmap, (long)((char *)p - TRAP_GUARD), TRAP_STACK + TRAP_GUARD, 0, 0, 0, 0);
}

/* This thread's trap stack, mapped now if need be; NULL when none can be had (no memory):
 * the caller then stays on the stack it is on. Runs in the handler: system calls through the
 * gate, no malloc; pthread_setspecific of a key below 32 writes the thread's own array. */
static char *trap_stk_get(void) {
    if (trap_stk) return trap_stk;
    long m = sh_gate(SYS_mmap, 0, TRAP_STACK + TRAP_GUARD, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if ((unsigned long)m > -4096ul) return NULL;
    sh_gate(SYS_mprotect, m, TRAP_GUARD, PROT_NONE, 0, 0, 0);
    trap_stk = (char *)m + TRAP_GUARD;
    if (trap_stk_key_ok) pthread_setspecific(trap_stk_key, trap_stk);
    return trap_stk;
}

/* A served trap: what the handler does after it has decided (on_sigsys) */
struct trap {
    long nr, r;
    const long *a;
    int serve;
};

static long trap_serve(void *tv) {
    struct trap *t = tv;
    if (t->nr == SYS_mmap && sh_trusted_mmap(t->a, 0, &t->r)) /* the loader maps a file (trusted.c) */
        return 0;
    if (t->serve) t->r = sh_syscall(t->nr, t->a);
    else if (!sh_net_trap(t->nr, t->a, &t->r)) t->r = sh_gate(t->nr, t->a[0], t->a[1], t->a[2], t->a[3], t->a[4], t->a[5]);
    return 0;
}

/* Who marked this thread's shield stack busy (trap_stk_busy). An interposed call runs with
 * signals open, so a mark of STK_CALL found from off the stack is a genuine nesting (a signal
 * handler of the program on its alternate stack, calling in while the interrupted call is on
 * the shield's stack) and the newcomer stays where it is. The SIGSYS handler runs with signals
 * blocked, so a mark of STK_TRAP found from off the stack is a vfork child's (its parent
 * suspended on the stack, or a mark left when the child's exec succeeded: stale once the
 * parent runs again, which getpid tells apart). */
enum { STK_FREE, STK_CALL, STK_TRAP };

char *sh_scratch(void) {
    char *stk = trap_stk_get();
    return stk ? stk + TRAP_STACK - SH_SCRATCH_SIZE : NULL;
}

static long on_stack(long (*fn)(void *), void *arg, int user) {
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    char *stk = trap_stk;
    /* on it already: a trap nested in a served one (the shield's own calls through libc), a
     * trapped call of an interposed one, a signal handler run on it */
    if (stk && sp >= (uintptr_t)stk && sp < (uintptr_t)stk + TRAP_STACK) return fn(arg);
    int busy = trap_stk_busy;
    if (busy == STK_CALL) return fn(arg);
    if (busy == STK_TRAP && (pid_t)sh_gate(SYS_getpid, 0, 0, 0, 0, 0, 0) != sh.pid) return fn(arg);
    if (!(stk = trap_stk_get())) return fn(arg);
    trap_stk_busy = user;
    long r = sh_run_on(stk + TRAP_STACK - SH_SCRATCH_SIZE, fn, arg);
    trap_stk_busy = STK_FREE; /* (a longjmp out of fn leaves the mark: later calls stay put) */
    return r;
}

long sh_on_stack(long (*fn)(void *), void *arg) { return on_stack(fn, arg, STK_CALL); }

static void trap_run(struct trap *t) { on_stack(trap_serve, t, STK_TRAP); }

static void on_sigsys(int sig, siginfo_t *si, void *ucv) {
    (void)sig;
    if (si->si_code != SYS_SECCOMP) return;
    ucontext_t *uc = ucv;
    greg_t *g = uc->uc_mcontext.gregs;
    int saved = errno;
    long a[6] = {(long)g[REG_RDI], (long)g[REG_RSI], (long)g[REG_RDX],
                 (long)g[REG_R10], (long)g[REG_R8], (long)g[REG_R9]};
    const struct sh_sysent *s = sh_sys(si->si_syscall);
    if (s && s->handler == HND_UCTX) { /* rt_sigprocmask: acts on the interrupted context */
        g[REG_RAX] = (greg_t)trap_sigprocmask(uc, a);
        errno = saved;
        return;
    }
    if (!__atomic_load_n(&sigsys_serving, __ATOMIC_ACQUIRE)) {
        /* this image's start-up: an inherited rule (an earlier image's code range, where this
         * image's libc now lies) trapped a call of the start-up itself; the kernel carries it
         * out, as it would have without that rule. So for every trap of an image the shield
         * only keeps alive (forward_only), except that SIGSYS stays this handler's, as when
         * the shield serves (core.c): its action is reported and not changed. */
        if (si->si_syscall == SYS_rt_sigaction && a[0] == SIGSYS) {
            if (a[2]) sh_gate_direct(SYS_rt_sigaction, SIGSYS, 0, a[2], a[3], 0, 0);
            g[REG_RAX] = 0;
        } else
            g[REG_RAX] = (greg_t)sh_gate_direct(si->si_syscall, a[0], a[1], a[2], a[3], a[4], a[5]);
        errno = saved;
        return;
    }
    /* A path call trapped by the code filter is served unless the shield itself made it
     * (the volume library's own files, or a call made while serving a trap): those go on to
     * the kernel, as does a call on an ordinary number that once was an alias. */
    uint64_t interrupted;
    memcpy(&interrupted, &uc->uc_sigmask, sizeof interrupted);
    int nf_was = sh_nf_trap_enter(interrupted); /* the mask this handler runs with, exactly */
    int was = sh_in_trap;
    struct trap t = {.nr = si->si_syscall, .a = a};
    t.serve = sh_trap_involves_prot(si->si_syscall, a) ||
              (s && (s->handler == HND_PATH || s->handler == HND_CWD) && !was && !sh_in_lib);
    sh_in_trap = 1;
    trap_run(&t);
    sh_in_trap = was;
    sh_nf_mask_leave(nf_was);
    if (!was && sh_sig_deferred) sh_sig_trap_leave(interrupted); /* delivered at the return */
    g[REG_RAX] = (greg_t)t.r;
    errno = saved;
}

/* The code whose path calls the code filter traps: the program's own (when it is position
 * independent: a fixed-address program's range would be where the next image, a static
 * binary, may well run before it has a handler) and libc's (raw syscall(), glibc-internal
 * opens such as mkstemp's). Not the loader's, which the next image's loader must not meet.
 *
 * Not their whole text: the rule outlives this image (filters survive exec), and every later
 * image's loader and start-up run unprotected by a handler wherever the rule still traps
 * (docs/shield.md, "Why the instruction pointer"). Only a `syscall` instruction makes a call,
 * and the kernel reports the address after it; libc's 526 of them lie on 60 of its 340 pages.
 * So the rule covers the addresses just after every 0f 05 byte pair in the code (each real
 * instruction among them: an exact superset), gathered into at most MAXCODE ranges by
 * splitting at the widest gaps: libc's 1.4 MB of text becomes about 110 KB of ranges, and a
 * program without a system call instruction of its own (bash, python3) adds none. */
#define MAXCODE 32
struct code_ranges {
    uintptr_t lo[MAXCODE], hi[MAXCODE];
    int n;
};
struct code_sites { /* the addresses after each 0f 05 pair, while they are gathered */
    uintptr_t *a;
    size_t n, cap;
    int main_seen, failed;
};

static void sites_add(struct code_sites *s, uintptr_t a) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        uintptr_t *na = realloc(s->a, cap * sizeof *na);
        if (!na) {
            s->failed = 1;
            return;
        }
        s->a = na;
        s->cap = cap;
    }
    s->a[s->n++] = a;
}

/* Every exec scans the program's and libc's code (libc 1.4 MB, a large server tens of MB), so
 * 16 positions at a time: 0x0f is one of x86's commonest bytes (two-byte opcodes), and a
 * memchr restarted at each was 8-9x slower (libc 0.76 ms against 0.09, mariadbd's 9.4 MB 5.5
 * ms against 0.9, measured with both loops over the files' executable segments). */
static void sites_scan(struct code_sites *s, const unsigned char *p, size_t len) {
    const __m128i op0 = _mm_set1_epi8(0x0f), op1 = _mm_set1_epi8(0x05);
    size_t i = 0;
    for (; i + 17 <= len; i += 16) { /* pairs starting at i .. i+15, reading up to i+16 */
        __m128i x = _mm_loadu_si128((const __m128i *)(p + i));
        __m128i y = _mm_loadu_si128((const __m128i *)(p + i + 1));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(x, op0), _mm_cmpeq_epi8(y, op1)));
        for (; m; m &= m - 1) sites_add(s, (uintptr_t)(p + i + (unsigned)__builtin_ctz(m) + 2));
    }
    for (; i + 2 <= len; i++)
        if (p[i] == 0x0f && p[i + 1] == 0x05) sites_add(s, (uintptr_t)(p + i + 2));
}

static int code_cb(struct dl_phdr_info *info, size_t size, void *ctx) {
    (void)size;
    struct code_sites *s = ctx;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    size_t nl = strlen(name);
    int main_prog = name[0] == 0 && !s->main_seen;
    int libc = nl >= 10 && !strcmp(name + nl - 10, "/libc.so.6");
    if (main_prog) s->main_seen = 1;
    if (main_prog && info->dlpi_addr == 0) return 0; /* fixed address: see above */
    if (!main_prog && !libc) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        size_t len = ph->p_filesz < ph->p_memsz ? ph->p_filesz : ph->p_memsz;
        sites_scan(s, (const unsigned char *)(info->dlpi_addr + ph->p_vaddr), len);
    }
    return 0;
}

static int cmp_addr(const void *x, const void *y) {
    uintptr_t a = *(const uintptr_t *)x, b = *(const uintptr_t *)y;
    return a < b ? -1 : a > b;
}

static void code_ranges(struct code_ranges *c) {
    c->n = 0;
    if (getenv("SCP_SHIELD_NO_RAW")) return; /* raw path calls fail closed instead */
    struct code_sites s = {0};
    dl_iterate_phdr(code_cb, &s);
    if (s.failed) {
        sh_trace("raw path calls are not served in this image: out of memory");
        goto out;
    }
    if (!s.n) {
        sh_trace("raw path calls are not served in this image: no code found");
        goto out;
    }
    qsort(s.a, s.n, sizeof *s.a, cmp_addr);
    /* cut after the sites followed by the MAXCODE - 1 widest gaps; each range runs from its
     * first site to its last. The widest are kept in cut[] by insertion, widest first (a
     * sort of all gaps cost more than the scan), then put in address order. */
    size_t cut[MAXCODE - 1], cuts = 0;
    for (size_t i = 0; i + 1 < s.n; i++) {
        uintptr_t g = s.a[i + 1] - s.a[i];
        if (cuts == MAXCODE - 1 && g <= s.a[cut[cuts - 1] + 1] - s.a[cut[cuts - 1]]) continue;
        size_t k = cuts < MAXCODE - 1 ? cuts++ : cuts - 1;
        for (; k > 0 && s.a[cut[k - 1] + 1] - s.a[cut[k - 1]] < g; k--) cut[k] = cut[k - 1];
        cut[k] = i;
    }
    for (size_t k = 1; k < cuts; k++) /* address order */
        for (size_t j = k; j > 0 && cut[j - 1] > cut[j]; j--) {
            size_t t = cut[j];
            cut[j] = cut[j - 1];
            cut[j - 1] = t;
        }
    size_t first = 0;
    for (size_t k = 0; k <= cuts; k++) {
        size_t last = k < cuts ? cut[k] : s.n - 1;
        c->lo[c->n] = s.a[first];
        c->hi[c->n] = s.a[last] + 1;
        c->n++;
        first = last + 1;
    }
    assert(c->n <= MAXCODE && first == s.n);
    uintptr_t bytes = 0;
    for (int k = 0; k < c->n; k++) bytes += c->hi[k] - c->lo[k];
    sh_trace("code rule: %zu system call sites in %d ranges of %lu bytes", s.n, c->n, (unsigned long)bytes);
out:
    free(s.a);
}

/* Fork. The child has only the forking thread: every lock that the child may need must be free
 * or held by this thread at the fork, so the prepare handlers take them all, always in this
 * order (glibc runs prepare handlers in the reverse order of their registration):
 *   1. the console's output streams' locks (console.c, registered last: runs first), so that
 *      no thread is inside OpenSSL sealing a record;
 *   2. vol_open_mu (here): no volume half-opened;
 *   3. sh_fork_share(1) (holding.c): the holdings' priv_mu, held (no holding taken back
 *      between its end here and the fork), sh_commit_all with the volume library's locks,
 *      taken and released, then sh.mu, held;
 *   4. the volume library's locks (volume.c fork_prepare: each volume's mu, each file's rw),
 *   5. the crypto layer's context list (aead.c tls_prepare).
 * sh_ctor registers 4 and 5 before 2-3, and sh_console_init 1 after them; a handler that
 * registered later than 1 would run before it (the crypto layer's did, left to its first use:
 * a thread's first sealed write then waited for it, and the fork for that thread's stream).
 * A thread that holds one of these never waits for an earlier one. The slots of the shared
 * offsets' region (struct sh_ofd) are not taken: their mutexes live in a MAP_SHARED region, so
 * the child does not get a copy but the very mutex, which the parent's thread unlocks when its
 * call ends (a robust mutex would only recover from a holder that died). A thread holding a
 * slot waits for no lock of this list but the volume library's (its read or write), which the
 * fork takes after sh.mu and which that thread releases without waiting for sh.mu. */
static void atfork_prepare(void) {
    assert(sh_console_fork_ready());
    /* a volume is never half-opened in the child: a late open (sh_volume_ready) ends first,
     * and one after the fork sees the shared flag that sh_fork_share sets */
    sh_vol_fork_prepare(); /* (volopen.c: vol_open_mu, and the checked volumes closed) */
    /* volumes to shared mode, open descriptions to shared offsets with a reference for the
     * child; returns holding sh.mu (holding.c). A vfork does not come here: vfork and
     * posix_spawn call sh_fork_share(0) themselves (interpose.c). */
    sh_fork_share(1);
}
static void atfork_parent(void) {
    pthread_mutex_unlock(&sh.mu);
    sh_priv_fork_done();
    sh_vol_fork_done();
}
static void atfork_child(void) {
    sh_fork_child_guards();
    pthread_mutex_unlock(&sh.mu);
    sh_vol_fork_done();
    sh.pid = (pid_t)syscall(SYS_getpid);
    sh_vfork_cwd_reset(); /* (an earlier vfork child's view: a reused pid must not take it) */
}

/* Remove our library from LD_PRELOAD (the shield puts it back at exec), and the copies of
 * libraries from the volumes that the exec preloaded (libs.c). */
static void scrub_preload(void) {
    const char *pl = getenv("LD_PRELOAD");
    if (!pl) return;
    char out[4096];
    size_t o = 0;
    const char *p = pl;
    while (*p) {
        while (*p == ':' || *p == ' ') p++;
        const char *s = p;
        while (*p && *p != ':' && *p != ' ') p++;
        size_t len = (size_t)(p - s);
        if (!len) continue;
        if (len == strlen(sh.self_path) && !memcmp(s, sh.self_path, len)) continue;
        if (sh_libs_is_preloaded(s, len)) continue;
        if (o + len + 2 > sizeof out) break;
        if (o) out[o++] = ':';
        memcpy(out + o, s, len);
        o += len;
    }
    out[o] = 0;
    if (o) setenv("LD_PRELOAD", out, 1);
    else unsetenv("LD_PRELOAD");
}

/* The launch memfd (scp/shield.h): real arguments and environment. glibc runs constructors
 * with (argc, argv, envp); argv is the very array main() gets, while /proc/PID/cmdline and
 * environ show the strings on the initial stack, which stay the launcher's placeholders. The
 * values live in a buffer that is never freed (the program may keep pointers into it). */
static void apply_launch(int argc, char **argv) {
    const char *v = getenv(SCP_SHIELD_ENV_LAUNCH_FD);
    if (!v) return;
    char *end;
    long fd = strtol(v, &end, 10);
    if (*end || fd < 0 || fd > INT_MAX) die("bad " SCP_SHIELD_ENV_LAUNCH_FD, NULL);
    struct stat st;
    if (sh_gate(SYS_fstat, fd, (long)&st, 0, 0, 0, 0) < 0 || st.st_size < 14 ||
        (uint64_t)st.st_size > SCP_SHIELD_LAUNCH_MAX)
        die("bad launch descriptor", NULL);
    size_t len = (size_t)st.st_size, got = 0;
    char *buf = malloc(len);
    if (!buf) die("out of memory", NULL);
    while (got < len) {
        long r = sh_gate(SYS_pread64, fd, (long)(buf + got), (long)(len - got), (long)got, 0, 0);
        if (r == -EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
    unsetenv(SCP_SHIELD_ENV_LAUNCH_FD);
    if (got != len || memcmp(buf, "SCPL1\n", 6) != 0) die("malformed launch descriptor", NULL);
    uint32_t nargs = (uint32_t)((uint8_t)buf[6] | (uint8_t)buf[7] << 8 | (uint8_t)buf[8] << 16 | (uint32_t)(uint8_t)buf[9] << 24);
    uint32_t nenv = (uint32_t)((uint8_t)buf[10] | (uint8_t)buf[11] << 8 | (uint8_t)buf[12] << 16 | (uint32_t)(uint8_t)buf[13] << 24);
    if (argc < 1 || nargs > (uint32_t)argc - 1) die("the launch descriptor has more arguments than the program got", NULL);
    size_t off = 14;
    for (uint32_t i = 0; i < nargs + nenv; i++) {
        char *s = buf + off;
        char *nul = off < len ? memchr(s, 0, len - off) : NULL;
        if (!nul) die("malformed launch descriptor", NULL);
        if (i < nargs) argv[1 + i] = s;
        else if (!strchr(s, '=') || putenv(s) != 0) die("malformed launch environment", NULL);
        off = (size_t)(nul - buf) + 1;
    }
}

/* The top numbers of the range that nothing holds (fewer volumes, no trace file, no sealed
 * console stream) get a placeholder too, last, once everything that goes there is in place:
 * otherwise a program that uses up every lower number is handed them (tests/shield/startup.sh). */
static void fill_own_numbers(void) {
    for (int fd = sh.base + sh.nslots; fd < sh.hi; fd++)
        if (sh_gate(SYS_fcntl, fd, F_GETFD, 0, 0, 0, 0) == -EBADF &&
            sh_gate(SYS_dup3, sh.placeholder, fd, O_CLOEXEC, 0, 0, 0) < 0)
            die("cannot reserve the protected descriptor range", NULL);
}

/* The st_dev that volume i's names show (fileops.c's fill_stat; scp_shield_volume_minor says
 * how the minor is drawn from the volume directory's host identity). */
static dev_t volume_dev(int i) {
    struct stat st;
    unsigned taken[SCP_SHIELD_MAX_VOLUMES];
    for (int j = 0; j < i; j++) taken[j] = minor(sh.vol[j].dev);
    if (sh_gate(SYS_fstat, sh.cfg.vol[i].dirfd, (long)&st, 0, 0, 0, 0) != 0) memset(&st, 0, sizeof st);
    return makedev(SCP_SHIELD_DEV_MAJOR,
                   scp_shield_volume_minor((uint64_t)st.st_dev, (uint64_t)st.st_ino, taken, (unsigned)i));
}

/* The slots' numbers [base, base + nslots) each get a placeholder that is not close-on-exec,
 * so that an exec into the next shielded image keeps them and that image fills only the
 * numbers the kernel closed: the slots of protected files opened close-on-exec, numbers a
 * vfork child closed. A dup3 onto each of the 1,008 numbers, and the kernel's close of each at
 * the exec, were a third of what an exec under the shield cost over a native one (docs/
 * shield.md, "Reserved descriptors"). inherited: this image was exec'd by a shielded one (the
 * configuration says its filter is installed), whose range held nothing but its placeholders
 * (no call of the program can put another file at a reserved number: gate.c, do_dup_to), so
 * an open number in the range is one of them; the first image fills every number, whatever
 * its launcher left there. A static image is not shielded and gets none (sh_execve_). */
static void reserve_slots(int inherited) {
    int end = sh.base + sh.nslots;
    if (!inherited) {
        for (int fd = sh.base; fd < end; fd++)
            if (sh_gate(SYS_dup3, sh.placeholder, fd, 0, 0, 0, 0) < 0)
                die("cannot reserve the protected descriptor range", NULL);
        return;
    }
    /* F_DUPFD takes the lowest free number at or above base: each call fills one hole, and
     * the first that lands at or above end says there is none left below it */
    for (;;) {
        long r = sh_gate(SYS_fcntl, sh.placeholder, F_DUPFD, sh.base, 0, 0, 0);
        if (r == -EMFILE) break; /* (nothing free up to the limit, which is at least end) */
        if (r < 0) die("cannot reserve the protected descriptor range", NULL);
        if (r >= end) {
            sh_gate(SYS_close, r, 0, 0, 0, 0, 0);
            break;
        }
    }
}

static void commit_at_exit(void);
/* An image that a supervisor serves, exec'd by a shielded one (sh_exec_image: a static
 * program's dynamic child, a Go program at a fixed address): it has no configuration, and the
 * shield serves nothing in it, but the filter it inherited traps its libc's exec, SIGSYS
 * handler and signal mask (above 4 GiB, not from the gate), and a trap with no handler kills.
 * So the gate and the handler, which carries every trap out through the gate (sigsys_serving
 * stays 0) and keeps SIGSYS its own. The library's own pass-through calls stay libc's
 * (forward_only in sh_gate_map), where the supervisor's filter sees them. */
static void forward_only(void) {
    scp_err e;
    if (sh_gate_map(1, &e) == 0) (void)sh_install_sigsys(on_sigsys, &e);
}

__attribute__((constructor(101))) static void sh_ctor(int argc, char **argv, char **envp) {
    (void)envp;
    const char *v = getenv(SCP_SHIELD_ENV_FD);
    if (!v) {
        if (getenv(SCP_SHIELD_ENV_FORWARD)) forward_only();
        return;
    }
    scp_err e;
    char *end;
    long cfd = strtol(v, &end, 10);
    if (*end || cfd < 0 || cfd > 1000000) die("bad " SCP_SHIELD_ENV_FD, NULL);
    /* The gate first: an inherited filter traps calls on reserved or aliased numbers, and the
     * configuration descriptor may be one of those. */
    if (sh_gate_map(0, &e)) die("cannot map the syscall gate", &e);
    /* The handler second, before this image makes any path call of its own. Filters survive
     * exec: an earlier image's code rule traps path calls from where that image's libc lay,
     * and this image's libc may lie there now (ASLR places it anywhere in a 2^40-byte window;
     * each shielded image of the exec chain adds a rule). A trap with no handler kills the
     * process: a bash deep in pyenv's exec chain died of SIGSYS at the getcwd below, made
     * through libc's syscall(). Until the shield is set up the handler only lets calls
     * through (sigsys_serving). The loader's own path calls, before this library is loaded,
     * stay exposed: docs/shield.md, "Why the instruction pointer". */
    if (sh_install_sigsys(on_sigsys, &e)) die("cannot install the SIGSYS handler", &e);
    /* (a key below 32: its pthread_setspecific, made in the handler, allocates nothing) */
    trap_stk_key_ok = pthread_key_create(&trap_stk_key, trap_stk_free) == 0 && trap_stk_key < 32;
    size_t csz = scp_shield_config_size();
    char *cbuf = malloc(csz);
    if (!cbuf) die("out of memory", NULL);
    size_t got = 0;
    while (got < csz) {
        long r = sh_gate(SYS_pread64, cfd, (long)(cbuf + got), (long)(csz - got), (long)got, 0, 0);
        if (r == -EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    sh_gate(SYS_close, cfd, 0, 0, 0, 0, 0);
    if (scp_shield_config_parse(cbuf, got, &sh.cfg, &e)) die("cannot read the configuration", &e);
    /* execve made this image dumpable again: no ptrace, /proc/PID/mem or core dump of it by
     * another process of the same uid without CAP_SYS_PTRACE */
    if (sh.cfg.flags & SCP_SHIELD_F_NODUMP) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    scp_wipe(cbuf, csz);
    free(cbuf);
    /* the keys move to a page of their own: locked in memory, left out of core dumps */
    sh.keys = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (sh.keys == MAP_FAILED) die("out of memory", NULL);
    madvise(sh.keys, 4096, MADV_DONTDUMP);
    (void)mlock(sh.keys, 4096);
    for (uint32_t i = 0; i < sh.cfg.nvol; i++) {
        memcpy(sh.keys[i], sh.cfg.vol[i].key, SCP_VOLUME_KEY_LEN);
        scp_wipe(sh.cfg.vol[i].key, SCP_VOLUME_KEY_LEN);
    }
    unsetenv(SCP_SHIELD_ENV_FD);
    apply_launch(argc, argv);
    if (sh_injected_load(&e)) die("cannot read the injected files", &e);
    if (sh_trusted_load(&e) || sh_trusted_check_mapped(&e)) die("trusted files", &e);

    Dl_info di;
    if (dladdr((void *)sh_ctor, &di) && di.dli_fname && strlen(di.dli_fname) < sizeof sh.self_path)
        strcpy(sh.self_path, di.dli_fname);
    else die("cannot find the shield library's own path", NULL);
    sh_libs_start();
    scrub_preload();
    sh_libs_close_preloaded();

    sh.umask = umask(022);
    umask(sh.umask);
    /* the library's zone and the measured descriptors lie below the range */
    if (sh.cfg.fd_base < 2 * SH_LIB_ZONE || sh.cfg.fd_base > (1u << 20)) die("bad reserved descriptor range", NULL);
    sh.lo = (int)sh.cfg.fd_base;
    sh.hi = sh.lo + (int)SCP_SHIELD_FD_COUNT;
    sh.base = sh.lo;
    sh.nslots = (int)(SCP_SHIELD_FD_COUNT - SCP_SHIELD_OWN_FDS);
    sh.pid = (pid_t)syscall(SYS_getpid);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl)) die("getrlimit", NULL);
    if (rl.rlim_cur < (rlim_t)sh.hi) {
        if (rl.rlim_max < (rlim_t)sh.hi) die("the descriptor limit is below the reserved range", NULL);
        rl.rlim_cur = (rlim_t)sh.hi;
        if (setrlimit(RLIMIT_NOFILE, &rl)) die("cannot raise the descriptor limit", NULL);
    }
    sh.slot = calloc((size_t)sh.nslots, sizeof *sh.slot);
    sh.slot_cloexec = calloc((size_t)sh.nslots, 1);
    sh.alias = calloc((size_t)sh.lo, sizeof *sh.alias);
    sh.alias_filtered = calloc((size_t)sh.lo, 1);
    if (!sh.slot || !sh.slot_cloexec || !sh.alias || !sh.alias_filtered) die("out of memory", NULL);
    /* (the placeholders below are not close-on-exec: reserve_slots) */
    /* a directory: a raw reopen through /proc/self/fd/N, which the shield cannot see, then
     * fails (EISDIR for writing) where /dev/null would swallow the bytes */
    int ph = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    /* at a number of the shield's own: at the lowest free one (often 3) it was the number that
     * `exec 3>/mnt/f` makes an alias, and dup3 of the placeholder onto itself failed (EINVAL) */
    sh.placeholder = ph < 0 ? -1 : (int)sh_gate(SYS_dup3, ph, SH_PLACEHOLDER_FD(), O_CLOEXEC, 0, 0, 0);
    if (ph >= 0) close(ph);
    if (sh.placeholder < 0) die("cannot open the placeholder /", NULL);
    reserve_slots((sh.cfg.flags & SCP_SHIELD_F_FILTER_INSTALLED) != 0);

    const char *bad_tag = sh_vol_tag_init();
    if (bad_tag) die(bad_tag, NULL);
    if (sh.cfg.nvol) {
        /* What opening the volumes here did before they were opened at their first use: the
         * volume library's (and crypto layer's) fork handlers come before the shield's (prepare
         * handlers run in the reverse order: the shield's commit first, then they take their
         * locks); OpenSSL itself is loaded at its first use, unless the program links it
         * (openssl_lazy.c: then its exit cleanup is registered here, before the program's
         * exit handlers, and runs after the shield's destructor, whose commits use it). */
        scp_volume_atfork_register();
        sh_openssl_early(commit_at_exit);
    }
    for (uint32_t i = 0; i < sh.cfg.nvol; i++) { /* opened at first use: sh_volume_ready */
        struct sh_volume *sv = &sh.vol[i];
        snprintf(sv->dirpath, sizeof sv->dirpath, "/proc/self/fd/%d", sh.cfg.vol[i].dirfd);
        sv->dev = volume_dev((int)i);
        strcpy(sv->mount, sh.cfg.vol[i].mount);
        sv->mlen = strlen(sv->mount);
        if (sv->mlen == 1) sv->mlen = 0; /* "/" */
        sh.nvol++;
    }
    /* before the working directory's open below, which takes what it opens */
    if (sh.cfg.flags & SCP_SHIELD_F_OPEN_CHECK) sh_vol_open_check();

    if (!syscall(SYS_getcwd, sh.cwd, sizeof sh.cwd)) sh.cwd[0] = 0;
    {
        char rel[PATH_MAX];
        int vol;
        /* started inside a protected mount: keep the view, move the real cwd to the mount */
        sh.active = 1;
        if (sh.cwd[0] == '/' && sh_classify(AT_FDCWD, sh.cwd, &vol, rel, sizeof rel) != 0) sh.vcwd = 1;
        /* exec'd from a shielded image whose cwd was inside a mount: the kernel's cwd is that
         * mount's point; the directory below it comes with the configuration */
        sh.cfg.vcwd[sizeof sh.cfg.vcwd - 1] = 0;
        if (sh.vcwd && sh.cfg.vcwd[0] == '/' && sh_classify(AT_FDCWD, sh.cfg.vcwd, &vol, rel, sizeof rel) > 0 &&
            !strcmp(sh.cwd, sh.vol[vol].mount))
            snprintf(sh.cwd, sizeof sh.cwd, "%s", sh.cfg.vcwd);
        sh.active = 0;
    }

    if (sh_net_load(&e)) die("cannot read the network configuration", &e);
    sh_nf_install(); /* without it, the page probes stay (nofault.c) */
    /* the crypto layer's fork handlers before ours, and so before the console's (registered in
     * sh_console_init): its prepare (the context list's lock) then runs after theirs. Left to
     * its first use, which may come later (a thread's first sealed console write, with no
     * volume), it ran first, and a fork waited for the console lock of a thread that waited
     * for the context list's lock (the fork's lock order: atfork_prepare) */
    scp_crypto_atfork_register();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);

    /* The image's rules make one seccomp filter (gate.c): the main rule (the first shielded
     * image only: filters survive exec), the network shield's, the loader's mappings and the
     * path calls of this image's code. It goes in last, with TSYNC, before main(). */
    struct sh_filter_spec fs = {.full = 1};
    if (!(sh.cfg.flags & SCP_SHIELD_F_FILTER_INSTALLED)) {
        fs.lo = sh.lo;
        fs.count = (int)SCP_SHIELD_FD_COUNT;
        fs.deny_trace = (sh.cfg.flags & SCP_SHIELD_F_NOPTRACE) != 0; /* the container's rule */
    }
    if (sh_trusted_arm(&fs.ldr_lo, &fs.ldr_hi, &e)) die("trusted files", &e);
    /* the sealed streams' numbers go into the main part (one filter fewer per number) */
    if (sh_console_init(fs.count ? &fs.low : NULL, &e)) die("cannot start the console shield", &e);
    if (sh_net_on && sh_net_filter_nrs(&fs.net_nrs, &fs.nnet, &e)) die("cannot set up the network shield's filter rules", &e);
    sh_exec_adopt();
    fill_own_numbers();
    sh.active = 1;
    __atomic_store_n(&sigsys_serving, 1, __ATOMIC_RELEASE);
    struct code_ranges c;
    code_ranges(&c);
    fs.code_lo = c.lo;
    fs.code_hi = c.hi;
    fs.ncode = c.n;
    int len = sh_shield_filter_install(&fs, &e);
    if (len < 0 && fs.ncode) { /* seccomp's limit on all filters' length, deep in an exec chain */
        sh_trace("raw path calls are not served in this image: %s", e.msg);
        fs.ncode = 0;
        len = fs.count || fs.nnet || fs.ldr_lo ? sh_shield_filter_install(&fs, &e) : 0;
    }
    if (len < 0) die("cannot install the filter", &e);
    __atomic_store_n(&sh_filter_up, 1, __ATOMIC_RELEASE);
    sh_priv_poll(); /* the watchers of volumes opened above (the cwd's), now that threads may start */
    sh.cfg.flags |= SCP_SHIELD_F_FILTER_INSTALLED;
    sh_trace("shield filter: %d instructions (%s%s%s%s%s%s)", len, fs.count ? "main " : "", fs.low ? "console " : "",
             fs.deny_trace ? "no-ptrace " : "", fs.nnet ? "network " : "", fs.ldr_lo ? "loader " : "",
             fs.ncode ? "code" : "");
    sh_trusted_timing();
    sh_trace("shield active: %d volume(s), reserved descriptors %d-%d", sh.nvol, sh.lo, sh.hi - 1);
}

/* The destructor's commit, also run from atexit when OpenSSL's cleanup would otherwise come
 * first (openssl_lazy.c) */
static void commit_at_exit(void) { (void)sh_exit_commit(1); }

/* At exit the kernel would keep what was written to a file even if it was never closed; the
 * volume library keeps written bytes in memory until a commit. So: flush stdio (glibc flushes
 * it only after the destructors) and commit every open protected file. */
static void openssl_release(void);
__attribute__((destructor)) static void sh_dtor(void) {
    if (sh_exit_commit(1)) {
        sh_ofd_release_all();
        sh_console_exit();
    }
    openssl_release();
}

/* ---- OPENSSL_cleanup: the program and the shield share one libcrypto ------------------------
 * A program may tear OpenSSL down itself before it exits (mariadbd does, after "Shutdown
 * complete"). The shield still needs it after that call: the destructor's commits (random
 * nonces, sealing), reads and writes of protected files the program makes later, the console's
 * records. After the real cleanup those use freed state (mariadbd died of SIGSEGV in
 * RAND_bytes under the destructor's manifest write). So while the shield may still use it, a
 * call only records the request, and the destructor makes it after its own last use; OpenSSL's
 * own exit handler, if it comes here (its address may bind to this definition) before then,
 * waits the same way. After OPENSSL_cleanup a program may call no OpenSSL function, so it
 * cannot tell the difference. */
static int openssl_stop_wanted, openssl_shield_done;

static void openssl_stop(void) {
    void (*real_cleanup)(void) = (void (*)(void))dlsym(RTLD_NEXT, "OPENSSL_cleanup");
    /* the program's libcrypto (a program that calls OPENSSL_cleanup links it); the shield's
     * lazily loaded copy of the same library is that one (openssl_lazy.c) */
    if (real_cleanup) real_cleanup();
}

SH_EXPORT void OPENSSL_cleanup(void) {
    if (sh.active && !__atomic_load_n(&openssl_shield_done, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&openssl_stop_wanted, 1, __ATOMIC_RELEASE);
        return;
    }
    openssl_stop();
}

/* The destructor's last step: from now on the shield uses OpenSSL no more in this process. */
static void openssl_release(void) {
    __atomic_store_n(&openssl_shield_done, 1, __ATOMIC_RELEASE);
    if (__atomic_load_n(&openssl_stop_wanted, __ATOMIC_ACQUIRE)) openssl_stop();
}

/* ---- exec: the new image is shielded again ------------------------------------------------ */

static int starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* The sealed library copies an exec was to preload (sh_libs_exec), after it failed or went */
static void close_libs(const int *fd, long n) {
    for (long i = 0; i < n; i++) sh_gate(SYS_close, fd[i], 0, 0, 0, 0, 0);
}

/* libs: 1 to look for libraries in the volumes (sh_libs_exec), origin: as sh_execve_image's */
static long sh_execve_(int dirfd, const char *path, char *const argv[], char *const envp[], int flags, int libs,
                       const char *origin);
static long execve_out(int dirfd, const char *path, char *const argv[], char *const envp[], int flags, int libs,
                       const char *origin) {
    int was_trap = sh_in_trap;
    sh_in_trap = 0;
    long r = sh_execve_(dirfd, path, argv, envp, flags, libs, origin);
    sh_in_trap = was_trap;
    return r;
}
long sh_execve(int dirfd, const char *path, char *const argv[], char *const envp[], int flags) {
    return execve_out(dirfd, path, argv, envp, flags, 1, NULL);
}
long sh_execve_image(int fd, char *const argv[], char *const envp[], const char *origin) {
    return execve_out(fd, "", argv, envp, AT_EMPTY_PATH, 1, origin);
}
long sh_execve_shell(char *const argv[], char *const envp[]) {
    return execve_out(AT_FDCWD, "/bin/sh", argv, envp, 0, 0, NULL);
}

/* The protected files cc hands on at ordinary numbers (a redirection before the exec), as
 * the supervisor takes them: one per description, however many numbers share it (file[]
 * gives each entry's, or -1). Slots are not handed on: a served image gets none
 * (slots_cloexec); a description whose first entry is a slot is handed for its numbers. */
static unsigned handed_files(const scp_shield_config *cc, struct scp_notify_file *hf, int *file) {
    int of[SCP_SHIELD_MAX_INHERIT]; /* by a description's first entry (inherit_link's share) */
    unsigned n = 0;
    assert(cc->ninherit <= SCP_SHIELD_MAX_INHERIT);
    for (uint32_t i = 0; i < cc->ninherit; i++) {
        const scp_shield_inherit *e = &cc->inherit[i];
        uint32_t d = e->share >= 0 && (uint32_t)e->share < i ? (uint32_t)e->share : i;
        of[i] = -1;
        file[i] = -1;
        if (e->fd < 0 || e->fd >= sh.lo) continue;
        if (of[d] < 0) {
            hf[n] = (struct scp_notify_file){(unsigned)e->vol, e->path, e->flags, e->offset,
                                             sh.ofd_map && e->ofd >= 0 ? &sh.ofd_map[e->ofd].off : NULL};
            of[d] = (int)n++;
        }
        file[i] = of[d];
    }
    return n;
}

/* A static target cannot take the shield, and a Go program at a fixed address makes its file
 * calls where the code rule cannot trap them (scp_notify_image): a supervisor serves their
 * files from outside (runtime/notify.c). Returns the socket to hand it the listener, or -1 when
 * the target is neither or no supervisor could start: a static image then runs unserved (its
 * path calls under a mount reach the empty read-only mount point and fail), a Go program
 * shielded. *served says whether the image goes without the shield. The protected files cc
 * hands on at ordinary numbers get the supervisor's descriptions of them there (the
 * placeholder's numbers are listed in placed[], *nplaced, to put it back if the exec fails). */
static int image_supervisor(int dirfd, const char *path, int flags, const scp_shield_config *cc, int *placed,
                            int *nplaced, int *served) {
    *nplaced = 0;
    *served = 0;
    int fd = (flags & AT_EMPTY_PATH) && path && !*path
                 ? (int)sh_gate(SYS_fcntl, dirfd, F_DUPFD_CLOEXEC, 3, 0, 0, 0)
                 : (int)sh_gate(SYS_openat, dirfd, (long)path, O_RDONLY | O_CLOEXEC, 0, 0, 0);
    if (fd < 0) return -1;
    int st = scp_notify_image(fd);
    sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
    if (!scp_notify_serves(st)) return -1;
    *served = st == SCP_IMAGE_STATIC;
    if (!sh.nvol) return -1;
    struct scp_notify_volume nv[SCP_SHIELD_MAX_VOLUMES];
    /* the volume directories at ordinary numbers: the supervisor opens them through libc,
     * whose path calls the shield passes through for those (a reserved number's link is
     * the shield's own business) */
    int low[SCP_SHIELD_MAX_VOLUMES], n = 0;
    for (; n < sh.nvol; n++) {
        int dfd = -1;
        if (sscanf(sh.vol[n].dirpath, "/proc/self/fd/%d", &dfd) != 1 ||
            (low[n] = (int)sh_gate(SYS_fcntl, dfd, F_DUPFD_CLOEXEC, 3, 0, 0, 0)) < 0)
            break;
        nv[n] = (struct scp_notify_volume){sh.vol[n].mount, low[n], sh.keys[n]};
    }
    scp_err e;
    char view[PATH_MAX]; /* the working directory below a mount point, which the image keeps */
    struct scp_notify_file hf[SCP_SHIELD_MAX_INHERIT];
    int file[SCP_SHIELD_MAX_INHERIT], got[SCP_SHIELD_MAX_INHERIT];
    unsigned nhf = handed_files(cc, hf, file);
    struct scp_notify_start start = {sh_cwd_view(view) ? view : NULL, 1, hf, nhf, got};
    int sock = n == sh.nvol ? scp_notify_spawn(nv, (unsigned)sh.nvol, &start, &e)
                            : scp_fail(&e, SCP_E_SYS, EMFILE, "no descriptor for a volume directory");
    for (int i = 0; i < n; i++) sh_gate(SYS_close, low[i], 0, 0, 0, 0, 0);
    for (uint32_t i = 0; sock >= 0 && i < cc->ninherit; i++) {
        int d = file[i] >= 0 ? got[file[i]] : -1;
        if (d >= 0 && sh_gate(SYS_dup3, d, cc->inherit[i].fd, 0, 0, 0, 0) >= 0) {
            placed[(*nplaced)++] = cc->inherit[i].fd;
            sh_trace("exec: descriptor %d ('%s') handed to the supervisor", cc->inherit[i].fd, cc->inherit[i].path);
        }
    }
    for (unsigned i = 0; sock >= 0 && i < nhf; i++)
        if (got[i] >= 0) sh_gate(SYS_close, got[i], 0, 0, 0, 0, 0);
    sh_trace("exec of '%s' (%s): %s", path ? path : "(null)", st == SCP_IMAGE_STATIC ? "static" : "Go at a fixed address",
             sock < 0 ? e.msg : "served by a supervisor");
    if (sock >= 0) *served = 1;
    return sock;
}

/* After a failed exec: the placeholder again where image_supervisor put the supervisor's
 * descriptions (the numbers name the protected files the shield still serves). */
static void unplace(const int *placed, int n) {
    for (int i = 0; i < n; i++) sh_gate(SYS_dup3, sh.placeholder, placed[i], 0, 0, 0, 0);
}

/* Before an exec into a static image (on 1): every slot's placeholder close-on-exec, in one
 * call. After that exec failed (on 0): back to what the slots say (slot_cloexec: the program's
 * own flag of an open slot, the last user's of a free one; the kernel's table here, a vfork
 * child's own copy included, held those before). */
static void slots_cloexec(int on) {
    int end = sh.base + sh.nslots;
    if (on) {
        if (sh_gate(SYS_close_range, sh.base, end - 1, CLOSE_RANGE_CLOEXEC, 0, 0, 0) == 0) return;
        for (int fd = sh.base; fd < end; fd++) sh_gate(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC, 0, 0, 0);
        return;
    }
    for (int i = 0; i < sh.nslots; i++)
        if (!sh.slot_cloexec[i]) sh_gate(SYS_fcntl, sh.base + i, F_SETFD, 0, 0, 0, 0);
}

static long sh_execve_(int dirfd, const char *path_in, char *const argv[], char *const envp[], int flags, int libs,
                       const char *origin) {
    /* rel: the path below a mount is not wanted, only whether there is one: a path inside a
     * mount classifies as the mount's number, or as an error when rel is too short for it,
     * and both are refused alike (one PATH_MAX buffer fewer on the trap's stack) */
    char rel[1], copy[PATH_MAX];
    int vol;
    /* one copy of the path: classified, checked against the trusted files and executed alike
     * (another thread could change the program's string in between; path.c, path_copy) */
    long pl = path_in ? sh_copy_path_in(path_in, copy, sizeof copy) : 0;
    if (pl < 0) return pl;
    const char *path = path_in ? copy : NULL;
    int c = sh_classify(dirfd, path, &vol, rel, sizeof rel);
    if (c != 0) return sh_exec_in_volume(dirfd, path, argv, envp, flags); /* exec_script.c */
    long tc = sh_trusted_exec_check(dirfd, path, flags);
    if (tc < 0) return tc;
    /* the libraries it needs from the volumes, preloaded from sealed copies (libs.c); before
     * the commit and the volumes' drop below, which an error return must not have made */
    int libfd[SH_LIBS_MAX];
    long nlib = libs ? sh_libs_exec(dirfd, path, flags, origin, envp, libfd, SH_LIBS_MAX) : 0;
    if (nlib == -EAGAIN) return sh_exec_through_shell(dirfd, path, argv, envp);
    if (nlib < 0) return nlib;
    /* A vfork/posix_spawn child shares our memory (and this thread's TLS): only the real
     * owner commits, and the thread-local flags must read as in the parent when exec
     * succeeds and the parent resumes. */
    int owner = syscall(SYS_getpid) == sh.pid;
    if (owner) sh_commit_all();
    if (owner) sh_vol_exec_drop(); /* the next image opens at first use */
    if (sh_net_on && owner) { /* established connections: to a relay (net_relay.c) */
        long nr = sh_net_exec_relay();
        if (nr < 0) {
            close_libs(libfd, nlib);
            return nr;
        }
    }
    size_t n = 0;
    const char *old_pl = NULL;
    if (envp)
        for (; envp[n]; n++)
            if (starts(envp[n], "LD_PRELOAD=")) old_pl = envp[n] + 11;
    size_t strsz = strlen(sh.self_path) + (old_pl ? strlen(old_pl) : 0) + 64 * 6 + 32 * (size_t)nlib;
    size_t size = (n + 8) * sizeof(char *) + strsz + 128;
    char **env = (char **)syscall(SYS_mmap, NULL, size, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if ((unsigned long)env > -4096ul) {
        close_libs(libfd, nlib);
        return (long)env;
    }
    char *strs = (char *)(env + n + 8);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!starts(envp[i], "LD_PRELOAD=") && !starts(envp[i], SCP_SHIELD_ENV_FD "=") &&
            !starts(envp[i], SCP_SHIELD_ENV_FILES_FD "=") && !starts(envp[i], SCP_SHIELD_ENV_TRUSTED_FD "=") &&
            !starts(envp[i], SCP_SHIELD_ENV_CONSOLE_FD "=") && !starts(envp[i], SCP_SHIELD_ENV_NET_FD "=") &&
            !starts(envp[i], SCP_SHIELD_ENV_LIBS "=") && !starts(envp[i], SCP_SHIELD_ENV_FORWARD "="))
            env[k++] = envp[i];
    size_t k_own = k; /* the shield's variables come after: a static image does not get them */
    scp_shield_config *cc = (scp_shield_config *)syscall(SYS_mmap, NULL, sizeof *cc, PROT_READ | PROT_WRITE,
                                                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if ((unsigned long)cc > -4096ul) {
        syscall(SYS_munmap, env, size);
        return (long)cc;
    }
    madvise(cc, sizeof *cc, MADV_DONTDUMP);
    memcpy(cc, &sh.cfg, sizeof *cc);
    for (uint32_t i = 0; i < cc->nvol; i++) {
        memcpy(cc->vol[i].key, sh.keys[i], SCP_VOLUME_KEY_LEN);
        scp_volume *v = __atomic_load_n(&sh.vol[i].v, __ATOMIC_ACQUIRE);
        if (v) { /* committed above (unless in a vfork child: then the parent's last state) */
            scp_volume_tag_get(v, &cc->vol[i].seen);
            cc->vol[i].have_seen = 1;
        }
    }
    int held[64], ntook = 0;
    struct sh_ofd *took[SCP_SHIELD_MAX_INHERIT];
    int nheld = sh_exec_prepare(cc, held, 64, took, &ntook);
    /* also in a vfork child (dash execs from one): the supervisor is started by raw clones,
     * which run no fork handlers on the memory it shares with its parent */
    int served, placed[SCP_SHIELD_MAX_INHERIT], nplaced;
    int notify_sock = image_supervisor(dirfd, path, flags, cc, placed, &nplaced, &served);
    int mfd = scp_shield_config_to_memfd(cc, NULL);
    scp_wipe(cc, sizeof *cc);
    syscall(SYS_munmap, cc, sizeof *cc);
    int ffd = mfd < 0 ? -1 : sh_injected_to_memfd(); /* the injected files go on with the image */
    int tfd = mfd < 0 || ffd == -2 ? -1 : sh_trusted_to_memfd(); /* and so does the manifest */
    int cfd = mfd < 0 || ffd == -2 || tfd == -2 ? -1 : sh_console_exec_prepare(); /* and the console streams */
    int nfd = mfd < 0 || ffd == -2 || tfd == -2 || cfd == -2 ? -1 : sh_net_to_memfd(); /* and the network's */
    if (mfd < 0 || ffd == -2 || tfd == -2 || cfd == -2 || nfd == -2) {
        if (tfd >= 0) sh_gate(SYS_close, tfd, 0, 0, 0, 0, 0);
        if (cfd >= 0) sh_gate(SYS_close, cfd, 0, 0, 0, 0, 0);
        if (mfd >= 0) sh_gate(SYS_close, mfd, 0, 0, 0, 0, 0);
        if (ffd >= 0) sh_gate(SYS_close, ffd, 0, 0, 0, 0, 0);
        for (int i = 0; i < nheld; i++) sh_gate(SYS_close, held[i], 0, 0, 0, 0, 0);
        if (notify_sock >= 0) sh_gate(SYS_close, notify_sock, 0, 0, 0, 0, 0);
        unplace(placed, nplaced);
        sh_exec_failed(took, ntook);
        close_libs(libfd, nlib);
        syscall(SYS_munmap, env, size);
        return -EMFILE;
    }
    int l1 = snprintf(strs, strsz, "LD_PRELOAD=%s", sh.self_path);
    /* (not for an image a supervisor serves: the variable stays for its descendants, where
     * those numbers are not the copies; it preloaded none before forward_only either) */
    for (long i = 0; notify_sock < 0 && i < nlib; i++)
        l1 += snprintf(strs + l1, strsz - (size_t)l1, ":/proc/self/fd/%d", libfd[i]);
    if (old_pl && *old_pl) l1 += snprintf(strs + l1, strsz - (size_t)l1, ":%s", old_pl);
    env[k++] = strs;
    char *s2 = strs + l1 + 1;
    int l2 = snprintf(s2, strsz - (size_t)l1 - 1, "%s=%d", SCP_SHIELD_ENV_FD, mfd);
    env[k++] = s2;
    char *s3 = s2 + l2 + 1;
    if (ffd >= 0) {
        int l3 = snprintf(s3, 64, "%s=%d", SCP_SHIELD_ENV_FILES_FD, ffd);
        env[k++] = s3;
        s3 += l3 + 1;
    }
    if (tfd >= 0) {
        int l4 = snprintf(s3, 64, "%s=%d", SCP_SHIELD_ENV_TRUSTED_FD, tfd);
        env[k++] = s3;
        s3 += l4 + 1;
    }
    if (cfd >= 0) {
        int l5 = snprintf(s3, 64, "%s=%d", SCP_SHIELD_ENV_CONSOLE_FD, cfd);
        env[k++] = s3;
        s3 += l5 + 1;
    }
    if (nfd >= 0) {
        int l6 = snprintf(s3, 64, "%s=%d", SCP_SHIELD_ENV_NET_FD, nfd);
        env[k++] = s3;
        s3 += l6 + 1;
    }
    if (nlib > 0) {
        int l7 = snprintf(s3, 32, "%s=", SCP_SHIELD_ENV_LIBS);
        for (long i = 0; i < nlib; i++) l7 += snprintf(s3 + l7, 32, "%s%d", i ? "," : "", libfd[i]);
        env[k++] = s3;
    }
    env[k] = NULL;
    if (notify_sock >= 0) {
        /* a static image reads no configuration (it holds the keys): none of it goes on */
        int pass[] = {mfd, ffd, tfd, cfd, nfd};
        for (unsigned i = 0; i < sizeof pass / sizeof pass[0]; i++)
            if (pass[i] >= 0) sh_gate(SYS_fcntl, pass[i], F_SETFD, FD_CLOEXEC, 0, 0, 0);
        /* and a dynamic program it starts is served by its supervisor too, without a shield
         * that serves: the library only keeps it alive (forward_only), and so every dynamic
         * image below it, which keeps the variables (a static image ignores them) */
        env[k_own] = strs; /* (LD_PRELOAD, built above) */
        static char forward_var[] = SCP_SHIELD_ENV_FORWARD "=1";
        env[k_own + 1] = forward_var;
        env[k_own + 2] = NULL;
        scp_err e;
        if (scp_notify_attach(notify_sock, &e)) sh_trace("exec of static '%s': %s", path ? path : "(null)", e.msg);
    }
    else
        sh_trace("exec of '%s': the new image is shielded again", path ? path : "(null)");
    sh_nf_exec(0); /* SIG_IGN of SIGSEGV/SIGBUS goes on to the new image, as the kernel keeps it */
    /* a static image takes no shield: the slots' placeholders are not handed to it (they stay
     * for a shielded one: reserve_slots), as if they were close-on-exec */
    if (served) slots_cloexec(1);
    long r = dirfd == AT_FDCWD && !flags
                 ? sh_gate(SYS_execve, (long)path, (long)argv, (long)env, 0, 0, 0)
                 : sh_gate(SYS_execveat, dirfd, (long)path, (long)argv, (long)env, flags, 0);
    sh_gate(SYS_close, mfd, 0, 0, 0, 0, 0);
    if (ffd >= 0) sh_gate(SYS_close, ffd, 0, 0, 0, 0, 0);
    if (tfd >= 0) sh_gate(SYS_close, tfd, 0, 0, 0, 0, 0);
    if (cfd >= 0) sh_gate(SYS_close, cfd, 0, 0, 0, 0, 0);
    if (nfd >= 0) sh_gate(SYS_close, nfd, 0, 0, 0, 0, 0);
    close_libs(libfd, nlib);
    for (int i = 0; i < nheld; i++) sh_gate(SYS_close, held[i], 0, 0, 0, 0, 0);
    unplace(placed, nplaced);
    sh_exec_failed(took, ntook);
    if (served) slots_cloexec(0);
    sh_nf_exec(1);
    syscall(SYS_munmap, env, size);
    return r;
}
