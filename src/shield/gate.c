/* shield/gate.c - the fixed-address syscall gate and the seccomp filter.
 *
 * The filter runs on every system call of every thread. It lets a call through at once unless
 * the call is one that can take a descriptor in the reserved range (or execve), so the kernel's
 * seccomp action cache keeps all other system calls (epoll, sockets, futex, ...) free. For the
 * listed calls it tests the descriptor argument(s) against the range and traps (SIGSYS) when it
 * is reserved, except when the instruction pointer is the shield's gate. Calls from foreign
 * ABIs (int 0x80, x32) fail with ENOSYS, and io_uring is refused (ENOSYS) because its
 * operations name descriptors in memory where BPF cannot look.
 *
 * A protected description moved to an ordinary number (dup2 onto stdout by dd, sort -o, a
 * shell redirection) gets a small filter of its own for that one number (full = 0); filters
 * cannot be removed, so after the alias is gone the SIGSYS handler forwards calls on that
 * number through the gate.
 */
#include <errno.h>
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

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

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

long sh_gate(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
    return ((gate_fn)SCP_SHIELD_GATE_ADDR)(nr, a1, a2, a3, a4, a5, a6);
}

int sh_gate_map(scp_err *err) {
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
    return 0;
}

struct ksigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    uint64_t mask;
};
#define KSA_RESTORER 0x04000000ul

int sh_install_sigsys(void (*handler)(int, siginfo_t *, void *), scp_err *err) {
    struct ksigaction ksa = {(void *)handler, SA_SIGINFO | SA_NODEFER | KSA_RESTORER,
                             (void *)(SCP_SHIELD_GATE_ADDR + RESTORER_OFF), 0};
    long r = sh_gate(SYS_rt_sigaction, SIGSYS, (long)&ksa, 0, 8, 0, 0);
    if (r < 0) return scp_fail(err, SCP_E_SYS, (int)-r, "cannot install the SIGSYS handler");
    return 0;
}

/* ---- a tiny BPF assembler with forward labels ------------------------------------------- */

#define MAXI 512
struct fixup {
    int at, field, label;
};
enum { L_ALLOW = 1, L_TRAP, L_ENOSYS, L_IPCHECK, L_A0, L_A01, L_A02, L_A1, L_A2, L_A4, L_CR,
       L_A01b, L_A02b, L_ALLOW2, L_ALLOW3, L_SIG, L_MASK, NLABELS };

struct prog {
    struct sock_filter ins[MAXI];
    int n;
    int label_at[NLABELS];
    /* pending jumps: instruction index, which field, label */
    struct fixup fix[MAXI];
    int nfix;
    int bad;
};

static void emit(struct prog *p, uint16_t code, uint32_t k) {
    if (p->n >= MAXI) { p->bad = 1; return; }
    p->ins[p->n++] = (struct sock_filter)BPF_STMT(code, k);
}
/* conditional jump: jt/jf are labels (0 = fall through to the next instruction) */
static void jump(struct prog *p, uint16_t code, uint32_t k, int jt, int jf) {
    if (p->n >= MAXI) { p->bad = 1; return; }
    int at = p->n;
    p->ins[p->n++] = (struct sock_filter)BPF_JUMP(code, k, 0, 0);
    if (jt) p->fix[p->nfix++] = (struct fixup){at, 1, jt};
    if (jf) p->fix[p->nfix++] = (struct fixup){at, 2, jf};
}
static void label(struct prog *p, int l) { p->label_at[l] = p->n; }
static int resolve(struct prog *p) {
    for (int i = 0; i < p->nfix; i++) {
        int off = p->label_at[p->fix[i].label] - p->fix[i].at - 1;
        if (off < 0 || off > 255) return -1;
        if (p->fix[i].field == 1) p->ins[p->fix[i].at].jt = (uint8_t)off;
        else p->ins[p->fix[i].at].jf = (uint8_t)off;
    }
    return p->bad ? -1 : 0;
}

#define ARG_LO(i) ((uint32_t)offsetof(struct seccomp_data, args[i]))
#define IP_LO ((uint32_t)offsetof(struct seccomp_data, instruction_pointer))
#define IP_HI (IP_LO + 4)

/* A reserved-range test on argument i: jumps to `hit` when base <= arg < base+count, else
 * falls through. The kernel reads descriptor arguments as 32-bit ints: only the low word counts. */
static void range_test(struct prog *p, int argi, uint32_t base, uint32_t end, int hit, int miss) {
    emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(argi));
    jump(p, BPF_JMP | BPF_JGE | BPF_K, base, 0, miss);
    jump(p, BPF_JMP | BPF_JGE | BPF_K, end, miss, hit);
}

int sh_filter_install(int base, int count, int full, scp_err *err) {
    static const int arg0[] = {
        SYS_read, SYS_write, SYS_pread64, SYS_pwrite64, SYS_readv, SYS_writev, SYS_close,
        SYS_fstat, SYS_lseek, SYS_ioctl, SYS_preadv, SYS_pwritev, SYS_preadv2, SYS_pwritev2,
        SYS_dup, SYS_fcntl, SYS_flock, SYS_fsync, SYS_fdatasync, SYS_ftruncate, SYS_getdents,
        SYS_getdents64, SYS_fchdir, SYS_fchmod, SYS_fchown, SYS_fstatfs, SYS_readahead,
        SYS_fsetxattr, SYS_fgetxattr, SYS_flistxattr, SYS_fremovexattr, SYS_fadvise64,
        SYS_openat, SYS_mkdirat, SYS_mknodat, SYS_fchownat, SYS_futimesat, SYS_newfstatat,
        SYS_unlinkat, SYS_readlinkat, SYS_fchmodat, SYS_faccessat, SYS_sync_file_range,
        SYS_vmsplice, SYS_utimensat, SYS_fallocate, SYS_name_to_handle_at, SYS_syncfs,
        SYS_statx, SYS_openat2, SYS_faccessat2, SYS_execveat, SYS_fchmodat2,
    };
    static const int arg01[] = {SYS_dup2, SYS_dup3, SYS_sendfile, SYS_tee};
    static const int arg02[] = {SYS_splice, SYS_copy_file_range, SYS_renameat, SYS_renameat2,
                                SYS_linkat};
    static const int arg1[] = {SYS_symlinkat};
    static const int arg2[] = {SYS_epoll_ctl};
    static const int arg4[] = {SYS_mmap};
    uint32_t lo = (uint32_t)base, hi = (uint32_t)(base + count);

    struct prog *p = mmap(NULL, sizeof *p, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return scp_fail_errno(err, "cannot build the seccomp filter");
    memset(p, 0, sizeof *p);

    if (full) {
        emit(p, BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, arch));
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, L_ENOSYS);
    }
    emit(p, BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, nr));
    if (full) {
        jump(p, BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, L_ENOSYS, 0); /* x32 */
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_execve, L_IPCHECK, 0);
        /* execveat of any descriptor (fexecve) too: every exec is re-shielded and checked
         * against the trusted-file manifest (trusted.c) */
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_execveat, L_IPCHECK, 0);
        /* openat2 has no libc wrapper to interpose: trap every one and look at its path */
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, L_IPCHECK, 0);
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_setup, L_ENOSYS, 0);
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_enter, L_ENOSYS, 0);
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_register, L_ENOSYS, 0);
    }
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_close_range, L_CR, 0);
    if (full) { /* rt_sigaction(SIGSYS, ...): glibc's posix_spawn child resets handlers */
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_rt_sigaction, L_SIG, 0);
        /* a seccomp trap while SIGSYS is blocked kills: no call may block it */
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_rt_sigprocmask, L_MASK, 0);
    }
    for (size_t i = 0; i < sizeof arg0 / sizeof arg0[0]; i++)
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)arg0[i], L_A0, 0);
    for (size_t i = 0; i < sizeof arg01 / sizeof arg01[0]; i++)
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)arg01[i], L_A01, 0);
    for (size_t i = 0; i < sizeof arg02 / sizeof arg02[0]; i++)
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)arg02[i], L_A02, 0);
    for (size_t i = 0; i < sizeof arg1 / sizeof arg1[0]; i++)
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)arg1[i], L_A1, 0);
    for (size_t i = 0; i < sizeof arg2 / sizeof arg2[0]; i++)
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)arg2[i], L_A2, 0);
    for (size_t i = 0; i < sizeof arg4 / sizeof arg4[0]; i++)
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)arg4[i], L_A4, 0);
    label(p, L_ALLOW);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_ALLOW);

    label(p, L_A0);
    range_test(p, 0, lo, hi, L_IPCHECK, L_ALLOW2);
    label(p, L_A01);
    range_test(p, 0, lo, hi, L_IPCHECK, L_A01b);
    label(p, L_A01b);
    range_test(p, 1, lo, hi, L_IPCHECK, L_ALLOW2);
    label(p, L_A02);
    range_test(p, 0, lo, hi, L_IPCHECK, L_A02b);
    label(p, L_A02b);
    range_test(p, 2, lo, hi, L_IPCHECK, L_ALLOW2);
    label(p, L_A1);
    range_test(p, 1, lo, hi, L_IPCHECK, L_ALLOW2);
    label(p, L_A2);
    range_test(p, 2, lo, hi, L_IPCHECK, L_ALLOW2);
    label(p, L_A4);
    range_test(p, 4, lo, hi, L_IPCHECK, L_ALLOW2);
    /* close_range(first, last, flags) overlaps [lo, hi) iff first < hi && last >= lo */
    label(p, L_CR);
    emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(0));
    jump(p, BPF_JMP | BPF_JGE | BPF_K, hi, L_ALLOW2, 0);
    emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(1));
    jump(p, BPF_JMP | BPF_JGE | BPF_K, lo, L_IPCHECK, L_ALLOW2);

    /* rt_sigprocmask(how, set, ...) may block SIGSYS when how != SIG_UNBLOCK and set != NULL */
    label(p, L_MASK);
    emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(0));
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, SIG_UNBLOCK, L_ALLOW2, 0);
    emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(1));
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 0, L_IPCHECK);
    emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(1) + 4);
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, 0, L_ALLOW2, L_IPCHECK);
    label(p, L_SIG);
    emit(p, BPF_LD | BPF_W | BPF_ABS, ARG_LO(0));
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, SIGSYS, L_IPCHECK, L_ALLOW2);
    label(p, L_ALLOW2);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    label(p, L_IPCHECK);
    emit(p, BPF_LD | BPF_W | BPF_ABS, IP_HI);
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)((SCP_SHIELD_GATE_ADDR + GATE_RET_OFF) >> 32), 0, L_TRAP);
    emit(p, BPF_LD | BPF_W | BPF_ABS, IP_LO);
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(SCP_SHIELD_GATE_ADDR + GATE_RET_OFF), L_ALLOW3, L_TRAP);
    label(p, L_TRAP);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_TRAP);
    label(p, L_ENOSYS);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA));
    label(p, L_ALLOW3);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_ALLOW);

    int rc = -1;
    if (resolve(p)) {
        scp_fail(err, SCP_E_INVAL, EINVAL, "internal error: the seccomp filter does not assemble");
        goto out;
    }
    struct sock_fprog fprog = {.len = (unsigned short)p->n, .filter = p->ins};
    if (full && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
        scp_fail_errno(err, "cannot set no_new_privs for the seccomp filter");
        goto out;
    }
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog)) {
        scp_fail_errno(err, "cannot install the shield's seccomp filter");
        goto out;
    }
    rc = 0;
out:
    munmap(p, sizeof *p);
    return rc;
}
