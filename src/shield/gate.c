/* shield/gate.c - the fixed-address syscall gate and the seccomp filter.
 *
 * The filter runs on every system call of every thread. It is generated from the system call
 * table (table.def): a call that is not there is let through at once, so the kernel's seccomp
 * action cache keeps all other system calls (epoll, sockets, futex, ...) free. For the calls
 * in the table it tests the descriptor argument(s) against the range and traps (SIGSYS) when it
 * is reserved, except when the instruction pointer is the shield's gate. Calls from foreign
 * ABIs (int 0x80, x32) fail with ENOSYS, and io_uring is refused (ENOSYS) because its
 * operations name descriptors in memory where BPF cannot look; so is io_setup (kernel AIO)
 * when the program has protected volumes.
 *
 * A protected description (or a sealed console stream) moved to an ordinary number later
 * (dup2 onto stdout by dd, sort -o, a shell redirection) gets a small filter of its own for
 * that one number (full = 0); the console's 0-2 at start are in the main part instead. Filters
 * cannot be removed, so after the alias is gone the SIGSYS handler forwards calls on that
 * number through the gate.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shield/internal.h"

static const unsigned char gate_code[] = {
    0x48, 0x89, 0xf8,             /* mov rax, rdi */
    0x48, 0x89, 0xf7,             /* mov rdi, rsi */
    0x48, 0x89, 0xd6,             /* mov rsi, rdx */
    0x48, 0x89, 0xca,             /* mov rdx, rcx */
    0x4d, 0x89, 0xc2,             /* mov r10, r8 */
    0x4d, 0x89, 0xc8,             /* mov r8, r9 */
    0x4c, 0x8b, 0x4c, 0x24, 0x08, /* mov r9, [rsp+8] */
    0x0f, 0x05,                   /* syscall */
    0xc3,                         /* ret */
};
#define GATE_RET_OFF 25 /* instruction pointer the kernel reports: just after `syscall` */

/* rt_sigreturn trampoline for the SIGSYS handler, which the shield installs through the gate
 * (libc's sigaction would be trapped by an inherited filter before the handler exists) */
static const unsigned char restorer_code[] = {
    0xb8, 0x0f, 0x00, 0x00, 0x00, /* mov eax, 15 (rt_sigreturn) */
    0x0f, 0x05,                   /* syscall */
};
#define RESTORER_OFF 64

typedef long (*gate_fn)(long, long, long, long, long, long, long);

/* Set once the gate page is mapped. Before that (other libraries' constructors, which may run
 * before the shield's and call its wrappers) this image has no filter of its own yet, and a
 * call goes to the kernel directly. */
static int gate_mapped;

long sh_gate_direct(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
    return ((gate_fn)SCP_SHIELD_GATE_ADDR)(nr, a1, a2, a3, a4, a5, a6);
}

long sh_gate(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
    if (__builtin_expect(!__atomic_load_n(&gate_mapped, __ATOMIC_RELAXED), 0)) {
        long r = syscall(nr, a1, a2, a3, a4, a5, a6);
        return r == -1 ? -errno : r;
    }
    return sh_gate_direct(nr, a1, a2, a3, a4, a5, a6);
}

int sh_gate_map(int forward_only, scp_err *err) {
    void *want = (void *)SCP_SHIELD_GATE_ADDR;
    void *p = mmap(want, 4096, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED)
        return scp_fail_errno(err, "cannot map the shield's syscall gate at %p", want);
    if (p != want) {
        munmap(p, 4096);
        return scp_fail(err, SCP_E_SYS, EEXIST, "the shield's syscall gate address is taken");
    }
    memcpy(p, gate_code, sizeof gate_code);
    memcpy((char *)p + RESTORER_OFF, restorer_code, sizeof restorer_code);
    if (mprotect(p, 4096, PROT_READ | PROT_EXEC))
        return scp_fail_errno(err, "cannot make the syscall gate executable");
    if (!forward_only) __atomic_store_n(&gate_mapped, 1, __ATOMIC_RELAXED);
    return 0;
}

struct ksigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    uint64_t mask;
};
#define KSA_RESTORER 0x04000000ul

long sh_ksigaction(int sig, const struct sh_ksigaction *act, struct sh_ksigaction *old) {
    struct ksigaction k;
    if (act) k = (struct ksigaction){act->handler, act->flags | KSA_RESTORER,
                                     (void *)(SCP_SHIELD_GATE_ADDR + RESTORER_OFF), act->mask};
    struct ksigaction o;
    long r = sh_gate(SYS_rt_sigaction, sig, act ? (long)&k : 0, old ? (long)&o : 0, 8, 0, 0);
    if (r == 0 && old) *old = (struct sh_ksigaction){o.handler, o.flags, o.mask};
    return r;
}

int sh_install_sigsys(void (*handler)(int, siginfo_t *, void *), scp_err *err) {
    struct ksigaction ksa = {(void *)handler, SA_SIGINFO | SA_NODEFER | KSA_RESTORER,
                             (void *)(SCP_SHIELD_GATE_ADDR + RESTORER_OFF), 0};
    long r = sh_gate_direct(SYS_rt_sigaction, SIGSYS, (long)&ksa, 0, 8, 0, 0);
    if (r < 0) return scp_fail(err, SCP_E_SYS, (int)-r, "cannot install the SIGSYS handler");
    return 0;
}

/* ---- a tiny BPF assembler with forward labels ------------------------------------------- */

#define MAXI 1024
struct fixup {
    int at, field, label; /* field 1: jt, 2: jf, 3: the offset of an unconditional jump */
};
/* fixed labels; a block per descriptor-argument mask gets its own from L_FDS on, and the
 * trampolines of far jumps (stub) theirs from L_STUB on, so that the other labels keep their
 * numbers from one assembly pass to the next */
enum { L_NONE, L_TRAP, L_ENOSYS, L_EPERM, L_IPCHECK, L_CR, L_ALLOW2, L_ALLOW3, L_SIG, L_MASK, L_LOWOK, L_FDS,
       L_DYN = L_FDS + 256, L_STUB = L_DYN + 512, NLABELS = L_STUB + 256 };

struct route_ent { /* a system call number and the label the filter sends it to */
    uint32_t nr;
    int to;
};
struct prog {
    unsigned char far[NLABELS]; /* labels too far for a conditional jump: kept across passes */
    uint32_t low;               /* sh_filter_spec's low numbers, which range_test guards too */
    struct sock_filter ins[MAXI];
    struct route_ent ents[SH_SYS_MAX]; /* the numbers to dispatch on, ascending */
    int n;
    int label_at[NLABELS];
    int nlabels, nstubs; /* labels handed out by new_label and by dispatch's trampolines */
    /* pending jumps: instruction index, which field, label */
    struct fixup fix[MAXI];
    int nfix;
    int bad;
};

static void prog_reset(struct prog *p) {
    memset(&p->ins, 0, sizeof *p - offsetof(struct prog, ins));
    p->nlabels = L_DYN;
    p->nstubs = L_STUB;
}
static void emit(struct prog *p, uint16_t code, uint32_t k) {
    if (p->n >= MAXI) { p->bad = 1; return; }
    p->ins[p->n++] = (struct sock_filter)BPF_STMT(code, k);
}
/* conditional jump: jt/jf are labels (0 = fall through to the next instruction) */
static void jump(struct prog *p, uint16_t code, uint32_t k, int jt, int jf) {
    if (p->n >= MAXI || p->nfix + 2 > MAXI) { p->bad = 1; return; }
    int at = p->n;
    p->ins[p->n++] = (struct sock_filter)BPF_JUMP(code, k, 0, 0);
    if (jt) p->fix[p->nfix++] = (struct fixup){at, 1, jt};
    if (jf) p->fix[p->nfix++] = (struct fixup){at, 2, jf};
}
/* unconditional jump (32-bit offset): the way to a label more than 255 instructions on */
static void jump_far(struct prog *p, int to) {
    if (p->n >= MAXI || p->nfix + 1 > MAXI) { p->bad = 1; return; }
    p->fix[p->nfix++] = (struct fixup){p->n, 3, to};
    p->ins[p->n++] = (struct sock_filter)BPF_STMT(BPF_JMP | BPF_JA, 0);
}
static void label(struct prog *p, int l) { p->label_at[l] = p->n; }
static int new_label(struct prog *p) {
    if (p->nlabels >= L_STUB) { p->bad = 1; return L_TRAP; }
    return p->nlabels++;
}
/* 0: assembled; 1: some conditional jump was too long, its label is now marked far (assemble
 * again); -1: cannot assemble */
static int resolve(struct prog *p) {
    int again = 0;
    for (int i = 0; i < p->nfix; i++) {
        const struct fixup *f = &p->fix[i];
        int off = p->label_at[f->label] - f->at - 1;
        if (off < 0) return -1; /* a label never placed, or behind the jump */
        if (f->field == 3) p->ins[f->at].k = (uint32_t)off;
        else if (off > 255) {
            if (!p->far[f->label]) again = 1;
            p->far[f->label] = 1;
        } else if (f->field == 1) p->ins[f->at].jt = (uint8_t)off;
        else p->ins[f->at].jf = (uint8_t)off;
    }
    return p->bad ? -1 : again;
}

/* ---- dispatch on the system call number ------------------------------------------------ */

/* The filter runs on every system call the program makes, listed or not (the kernel skips it
 * only for numbers that every filter allows whatever the arguments), so the number is
 * dispatched by a binary search over the sorted numbers: for the 80-odd numbers of an image's
 * filter at most 7 comparisons on the way to a group of at most DISPATCH_LEAF, where a chain
 * of one comparison per number used to cost up to one per entry (60 for openat). A leaf whose
 * target lies too far for a conditional jump goes there through an unconditional one placed
 * after the leaf (one more instruction for that call). */
#define DISPATCH_LEAF 4

static void dispatch(struct prog *p, const struct route_ent *e, int n) {
    if (n <= DISPATCH_LEAF) {
        int via[DISPATCH_LEAF];
        for (int i = 0; i < n; i++) {
            assert(i == 0 || e[i - 1].nr < e[i].nr);
            via[i] = e[i].to;
            if (p->far[e[i].to]) {
                if (p->nstubs >= NLABELS) p->bad = 1;
                else via[i] = p->nstubs++;
            }
            jump(p, BPF_JMP | BPF_JEQ | BPF_K, e[i].nr, via[i], 0);
        }
        emit(p, BPF_RET | BPF_K, SECCOMP_RET_ALLOW); /* a number the filter does not route */
        for (int i = 0; i < n; i++) {
            if (via[i] == e[i].to) continue;
            label(p, via[i]);
            jump_far(p, e[i].to);
        }
        return;
    }
    int mid = n / 2, right = new_label(p);
    jump(p, BPF_JMP | BPF_JGE | BPF_K, e[mid].nr, right, 0);
    dispatch(p, e, mid);
    label(p, right);
    dispatch(p, e + mid, n - mid);
}

#define ARG_LO(i) ((uint32_t)offsetof(struct seccomp_data, args[i]))
#define IP_LO ((uint32_t)offsetof(struct seccomp_data, instruction_pointer))
#define IP_HI (IP_LO + 4)

/* The number in A (below the reserved range) is one of p->low: to `hit`, else to `miss`.
 * First one comparison with the highest (the common case: an ordinary descriptor above
 * them), then one run of consecutive numbers [a, b) after the other, in ascending order. */
static void low_test(struct prog *p, int hit, int miss) {
    const uint32_t m = p->low, top = 32u - (uint32_t)__builtin_clz(m);
    assert(m != 0);
    jump(p, BPF_JMP | BPF_JGE | BPF_K, top, miss, 0);
    for (uint32_t a = 0; a < top;) {
        if (!(m >> a & 1)) {
            a++;
            continue;
        }
        uint32_t b = a;
        while (b < top && (m >> b & 1)) b++;
        if (b == top) { /* the last run: below top, so a number >= a is in it */
            jump(p, BPF_JMP | BPF_JGE | BPF_K, a, hit, miss);
        } else {
            int next = new_label(p);
            if (a) jump(p, BPF_JMP | BPF_JGE | BPF_K, a, 0, miss);
            jump(p, BPF_JMP | BPF_JGE | BPF_K, b, next, hit);
            label(p, next);
        }
        a = b;
    }
}

/* A reserved-range test on argument i: jumps to `hit` when base <= arg < base+count (or the
 * argument is one of p->low), else to `miss`. The kernel reads descriptor arguments as 32-bit
 * ints: only the low word counts. */
static void range_test(struct prog *p, int argi, uint32_t base, uint32_t end, int hit, int miss) {
    emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(argi));
    if (!p->low) {
        jump(p, BPF_JMP | BPF_JGE | BPF_K, base, 0, miss);
        jump(p, BPF_JMP | BPF_JGE | BPF_K, end, miss, hit);
        return;
    }
    int l_low = new_label(p);
    jump(p, BPF_JMP | BPF_JGE | BPF_K, base, 0, l_low);
    jump(p, BPF_JMP | BPF_JGE | BPF_K, end, miss, hit);
    label(p, l_low);
    low_test(p, hit, miss);
}

static int is_trace_nr(long nr) { return nr == SYS_ptrace || nr == SYS_process_vm_readv || nr == SYS_process_vm_writev; }

/* Jumps to `hit` when the instruction pointer lies in [lo, hi), else falls through (split so
 * that no piece crosses a 4 GiB line: the pointer is compared a 32-bit word at a time). */
static void ip_range_test(struct prog *p, uintptr_t lo, uintptr_t hi, int hit) {
    for (uintptr_t a = lo; a < hi;) {
        uintptr_t line = (a | 0xffffffffu) + 1, b = hi < line ? hi : line;
        int next = new_label(p);
        emit(p, BPF_LD | BPF_W | BPF_ABS, IP_HI);
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(a >> 32), 0, next);
        emit(p, BPF_LD | BPF_W | BPF_ABS, IP_LO);
        if (b == line) jump(p, BPF_JMP | BPF_JGE | BPF_K, (uint32_t)a, hit, next);
        else {
            jump(p, BPF_JMP | BPF_JGE | BPF_K, (uint32_t)a, 0, next);
            jump(p, BPF_JMP | BPF_JGE | BPF_K, (uint32_t)b, next, hit);
        }
        label(p, next);
        a = b;
    }
}

/* The instruction pointer in one of n ranges, ascending and apart (the code rule's, up to 32):
 * one test of the high half per run of ranges that lie within one 4 GiB line, then two
 * comparisons per range, leaving at the first range whose start lies above the pointer. A call
 * from the gate, the common one, costs the one test per run. */
static void ip_ranges_test(struct prog *p, const uintptr_t *lo, const uintptr_t *hi, int n, int hit) {
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && (lo[j] >> 32) == (lo[i] >> 32) && (hi[j] >> 32) == (lo[i] >> 32)) j++;
        if (j == i) { /* reaches a 4 GiB line */
            ip_range_test(p, lo[i], hi[i], hit);
            i++;
            continue;
        }
        int next = new_label(p);
        emit(p, BPF_LD | BPF_W | BPF_ABS, IP_HI);
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(lo[i] >> 32), 0, next);
        emit(p, BPF_LD | BPF_W | BPF_ABS, IP_LO);
        for (int k = i; k < j; k++) {
            assert(lo[k] < hi[k] && (k == i || hi[k - 1] <= lo[k]));
            int nk = k + 1 < j ? new_label(p) : next;
            jump(p, BPF_JMP | BPF_JGE | BPF_K, (uint32_t)lo[k], 0, next);
            jump(p, BPF_JMP | BPF_JGE | BPF_K, (uint32_t)hi[k], nk, hit);
            if (nk != next) label(p, nk);
        }
        label(p, next);
        i = j;
    }
}

/* Where the table sends system call nr in the main part: a label, or L_NONE (allowed at
 * once). A per-number filter (full = 0) has only the descriptor tests and close_range. */
static int route(const struct sh_sysent *s, int full) {
    switch (s->filter) {
    case FILT_FD: return L_FDS + s->fds;
    case FILT_ALWAYS: return full ? L_LOWOK : s->fds ? L_FDS + s->fds : L_NONE;
    case FILT_ENOSYS: return full ? L_ENOSYS : L_NONE;
    case FILT_ENOSYS_VOL: return full && sh.nvol ? L_ENOSYS : L_NONE;
    case FILT_CLOSE_RANGE: return L_CR;
    case FILT_SIGACTION: return full ? L_SIG : L_NONE;
    case FILT_SIGMASK: return full ? L_MASK : L_NONE;
    default: return L_NONE;
    }
}

/* ---- the shield's filter ------------------------------------------------------------------ */

/* The kernel runs every installed filter on every system call that some filter cannot decide
 * by its number alone, and the fixed cost of running one filter came to outweigh the
 * instructions in it; so an image's rules are one program. Each rule below decides "trap
 * unless from the gate" (or ENOSYS) on its own, and a call is trapped when any rule says so,
 * which is what separate filters gave (the kernel takes the most severe verdict):
 *   main     a descriptor argument in the reserved range; exec, openat2, a SIGSYS handler,
 *            a mask that could block SIGSYS, close_range over the range; io_uring and foreign
 *            ABIs: ENOSYS. Installed by the first shielded image only: filters survive exec,
 *            and the next image's numbers are the same (count = 0 leaves it out). It also
 *            guards the low numbers (the sealed console streams' 0-2: low_test) as the range,
 *            and in a container answers ptrace and process_vm_readv/writev with EPERM
 *            (deny_trace): both were filters of their own.
 *   net      the calls that could put a shielded connection's bytes on the wire or copy its
 *            descriptor (net_io.c): all of them, fcntl only for F_DUPFD(_CLOEXEC).
 *   code     path calls from this image's program and libc (see sh_code_ranges in init.c).
 *   loader   mmap of a file from the loader's text (trusted.c, sh_trusted_arm).
 * The gate lies in none of the code or loader ranges, so sending a call to the gate check is
 * the same as trapping it there. Per number, the main rule comes first and falls through to
 * the one other rule that may apply (the tables give no number two of net, code and loader). */
struct fdblk { /* a descriptor test block, and where a call that passes it goes on */
    int mask, tail, label;
};
struct shape { /* a path test block, shared by the calls with the same (path, dirfd, empty) */
    int8_t path, dirfd, empty;
    int label;
};

static int has_nr(const int *nrs, int n, long nr) {
    for (int i = 0; i < n; i++)
        if (nrs[i] == nr) return 1;
    return 0;
}

static void build(struct prog *p, const struct sh_filter_spec *f) {
    const int full = f->full, main_part = f->count > 0;
    const uint32_t lo = (uint32_t)f->lo, hi = (uint32_t)(f->lo + f->count);
    assert(!f->low || (full && main_part && lo >= 32));
    p->low = full && main_part ? f->low : 0;
    const int l_range = new_label(p), l_fcntl = new_label(p), l_mmap = new_label(p);
    struct shape shapes[16];
    struct fdblk blk[64];
    int nshapes = 0, nblk = 0, use_range = 0, use_fcntl = 0, use_mmap = 0;

    if (full) { /* foreign ABIs: the main rule's ENOSYS, the other rules' business never */
        int l_native = new_label(p);
        emit(p, BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, arch));
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, l_native, 0);
        emit(p, BPF_RET | BPF_K, main_part ? SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA) : SECCOMP_RET_ALLOW);
        label(p, l_native);
    }
    emit(p, BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, nr));
    if (full && main_part) { /* x32 */
        int l_x64 = new_label(p);
        jump(p, BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, l_x64);
        emit(p, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA));
        label(p, l_x64);
    }

    /* the routed numbers, in number order, found by a binary search */
    int nents = 0;
    for (long nr = 0; nr < SH_SYS_MAX; nr++) {
        const struct sh_sysent *s = sh_sys(nr);
        int to = main_part && s ? route(s, full) : L_NONE, tail = L_ALLOW2, rules = 0;
        if (full && has_nr(f->net_nrs, f->nnet, nr)) {
            tail = nr == SYS_fcntl ? l_fcntl : L_IPCHECK;
            use_fcntl |= nr == SYS_fcntl;
            rules++;
        }
        if (full && f->ldr_lo && nr == SYS_mmap) {
            tail = l_mmap;
            use_mmap = 1;
            rules++;
        }
        if (full && f->ncode && s && s->filter != FILT_ALWAYS &&
            (s->filter == FILT_PATH || s->path >= 0 || s->handler == HND_CWD)) {
            rules++;
            use_range = 1;
            if (s->path < 0) tail = l_range; /* getcwd, fchdir: no path to look at */
            else {
                int k;
                for (k = 0; k < nshapes; k++)
                    if (shapes[k].path == s->path && shapes[k].dirfd == s->dirfd && shapes[k].empty == s->empty) break;
                if (k == nshapes) {
                    if (nshapes == 16) { p->bad = 1; return; }
                    shapes[nshapes++] = (struct shape){s->path, s->dirfd, s->empty, new_label(p)};
                }
                tail = shapes[k].label;
            }
        }
        if (rules > 1) { p->bad = 1; return; } /* see above: one rule besides the main one */
        if (full && main_part && f->deny_trace && is_trace_nr(nr)) { /* no other rule has these */
            if (to != L_NONE || rules) { p->bad = 1; return; }
            to = L_EPERM;
        }
        if (to == L_NONE) to = tail;
        else if (tail == L_IPCHECK && to != L_ENOSYS) to = L_IPCHECK;
        else if (to >= L_FDS && to < L_DYN) {
            int k;
            for (k = 0; k < nblk; k++)
                if (blk[k].mask == to - L_FDS && blk[k].tail == tail) break;
            if (k == nblk) {
                if (nblk == 64) { p->bad = 1; return; }
                blk[nblk++] = (struct fdblk){to - L_FDS, tail, new_label(p)};
            }
            to = blk[k].label;
        } else if (tail != L_ALLOW2) { /* ENOSYS and the signal rules end in a verdict of their own */
            p->bad = 1;
            return;
        }
        if (to != L_ALLOW2) p->ents[nents++] = (struct route_ent){(uint32_t)nr, to};
    }
    dispatch(p, p->ents, nents);

    /* a block per descriptor mask: trap when any of its arguments is in the range */
    for (int k = 0; k < nblk; k++) {
        label(p, blk[k].label);
        for (int i = 0; i < 6; i++) {
            if (!(blk[k].mask & (1 << i))) continue;
            int rest = blk[k].mask & ~((1 << (i + 1)) - 1);
            int next = rest ? new_label(p) : blk[k].tail;
            range_test(p, i, lo, hi, L_IPCHECK, next);
            if (rest) label(p, next);
        }
    }
    if (use_fcntl) { /* net: only F_DUPFD and F_DUPFD_CLOEXEC make new descriptors */
        label(p, l_fcntl);
        emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(1));
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, F_DUPFD, L_IPCHECK, 0);
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, F_DUPFD_CLOEXEC, L_IPCHECK, L_ALLOW2);
    }
    if (use_mmap) { /* loader: a mapping of a file (descriptor -1: anonymous) */
        label(p, l_mmap);
        emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(4));
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, 0xffffffffu, L_ALLOW2, 0);
        ip_range_test(p, f->ldr_lo, f->ldr_hi, L_TRAP);
        emit(p, BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    }
    /* code: a path call that cannot name a protected file is let through: a NULL path (the
     * kernel says EFAULT, or futimens acts on its descriptor) and AT_EMPTY_PATH on a
     * descriptor >= 0 (fstat by newfstatat: a reserved descriptor is the main rule's) */
    for (int k = 0; k < nshapes; k++) {
        label(p, shapes[k].label);
        int l_null = new_label(p);
        if (shapes[k].empty >= 0 && shapes[k].dirfd >= 0) {
            emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(shapes[k].empty));
            jump(p, BPF_JMP | BPF_JSET | BPF_K, 0x1000 /* AT_EMPTY_PATH */, 0, l_null);
            emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(shapes[k].dirfd));
            jump(p, BPF_JMP | BPF_JGE | BPF_K, 0x80000000u, l_null, L_ALLOW2); /* AT_FDCWD is < 0 */
        }
        label(p, l_null);
        emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(shapes[k].path));
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 0, l_range);
        emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(shapes[k].path) + 4);
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, 0, L_ALLOW2, l_range);
    }
    if (use_range) { /* code: the instruction pointer in one of the ranges */
        label(p, l_range);
        ip_ranges_test(p, f->code_lo, f->code_hi, f->ncode, L_TRAP);
        emit(p, BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    }

    if (main_part) {
        /* close_range(first, last, flags) overlaps [lo, hi) iff first < hi && last >= lo; the
         * low numbers are tested as the one range from the lowest to the highest (a range that
         * falls between two of them traps too, and the handler serves it as any other) */
        label(p, L_CR);
        emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(0));
        jump(p, BPF_JMP | BPF_JGE | BPF_K, hi, L_ALLOW2, 0);
        emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(1));
        if (!p->low) {
            jump(p, BPF_JMP | BPF_JGE | BPF_K, lo, L_IPCHECK, L_ALLOW2);
        } else {
            jump(p, BPF_JMP | BPF_JGE | BPF_K, lo, L_IPCHECK, 0);
            jump(p, BPF_JMP | BPF_JGE | BPF_K, (uint32_t)__builtin_ctz(p->low), 0, L_ALLOW2);
            emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(0));
            jump(p, BPF_JMP | BPF_JGE | BPF_K, 32u - (uint32_t)__builtin_clz(p->low), L_ALLOW2, L_IPCHECK);
        }
    }
    if (main_part && full) {
        /* rt_sigprocmask(how, set, ...) may block SIGSYS when how != SIG_UNBLOCK and set != NULL */
        label(p, L_MASK);
        emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(0));
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, SIG_UNBLOCK, L_ALLOW2, 0);
        emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(1));
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 0, L_LOWOK);
        emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(1) + 4);
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, 0, L_ALLOW2, L_LOWOK);
        label(p, L_SIG);
        emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(0));
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, SIGSYS, L_LOWOK, L_ALLOW2);
        /* exec, openat2, the signal mask and a SIGSYS handler from code below 4 GiB: a static
         * image (busybox-static and Go load at 0x400000; a shielded image's code and libc are
         * position independent and lie far above). It has no SIGSYS handler, so a trap would
         * kill it; a supervisor serves its files instead (runtime/notify.c, docs/shield.md) */
        label(p, L_LOWOK);
        emit(p, BPF_LD | BPF_W | BPF_ABS, IP_HI);
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, 0, L_ALLOW2, L_IPCHECK);
    }
    label(p, L_ALLOW2);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    label(p, L_IPCHECK);
    if (!full) {
        /* A number's own rule (a dup2 alias's, a console number's) lets calls from code below
         * 4 GiB through, as the main rule does for exec and the signal calls (above): a
         * static image, which has no SIGSYS handler, meets the kernel's descriptor. That is
         * never a protected stream: while the shield has a protected file or a console stream
         * at the number the kernel holds its O_PATH placeholder there (EBADF), and once the
         * number is the program's own again (bash's `echo x > f` restores stdout) it is the
         * program's file. Before, any static program that wrote to such a number was killed
         * (busybox after a builtin's redirection in the same shell). */
        emit(p, BPF_LD | BPF_W | BPF_ABS, IP_HI);
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, 0, L_ALLOW3, 0); /* (forward only: L_ALLOW2 lies above) */
    }
    emit(p, BPF_LD | BPF_W | BPF_ABS, IP_HI);
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)((SCP_SHIELD_GATE_ADDR + GATE_RET_OFF) >> 32), 0, L_TRAP);
    emit(p, BPF_LD | BPF_W | BPF_ABS, IP_LO);
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(SCP_SHIELD_GATE_ADDR + GATE_RET_OFF), L_ALLOW3, L_TRAP);
    label(p, L_TRAP);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_TRAP);
    label(p, L_ENOSYS);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA));
    label(p, L_EPERM);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA));
    label(p, L_ALLOW3);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
}

int sh_shield_filter_install(const struct sh_filter_spec *f, scp_err *err) {
    assert(f->ncode >= 0 && f->nnet >= 0 && (f->count > 0 || f->full));
    struct prog *p = mmap(NULL, sizeof *p, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return scp_fail_errno(err, "cannot build the seccomp filter");
    memset(p->far, 0, sizeof p->far);
    int r = 1;
    for (int pass = 0; pass < 16 && r == 1; pass++) { /* each pass puts more far jumps on trampolines */
        prog_reset(p);
        build(p, f);
        r = resolve(p);
    }
    int rc = -1;
    if (r) {
        scp_fail(err, SCP_E_INVAL, EINVAL, "internal error: the seccomp filter does not assemble");
        goto out;
    }
    struct sock_fprog fprog = {.len = (unsigned short)p->n, .filter = p->ins};
    if (f->full && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
        scp_fail_errno(err, "cannot set no_new_privs for the seccomp filter");
        goto out;
    }
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog)) {
        scp_fail_errno(err, "cannot install the shield's seccomp filter");
        goto out;
    }
    rc = p->n;
out:
    munmap(p, sizeof *p);
    return rc;
}

int sh_filter_install(int base, int count, int full, scp_err *err) {
    struct sh_filter_spec f = {.full = full, .lo = base, .count = count};
    return sh_shield_filter_install(&f, err) < 0 ? -1 : 0;
}
