/* bench/shield/filtercount.c - how many BPF instructions the seccomp filters of a process
 * execute per system call: a cost figure that the machine's load does not move.
 *
 *   shield-filtercount PID      (root, or CAP_SYS_ADMIN: PTRACE_SECCOMP_GET_FILTER)
 *
 * Reads every filter of PID (the kernel runs them all on each system call, unless every one
 * of them allows the number whatever the arguments) and runs each on a seccomp_data for the
 * listed calls, made from the program's code (an instruction pointer outside the shield's
 * gate) on descriptor 5: prints the instructions each filter executed, newest filter first
 * (PTRACE_SECCOMP_GET_FILTER's index 0 is the oldest), and the total. Only the classic-BPF instructions that the shield's filters use are known;
 * another one stops the run with a message. */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "bpf_run.h"

#define MAXF 16
#define MAXI 4096

/* The instructions executed on d, or -1 for an instruction the interpreter does not know. */
static int run(const struct sock_filter *f, int n, const struct seccomp_data *d) {
    uint32_t ret;
    int count;
    return bpf_run(f, n, d, &ret, &count) == 0 ? count : -1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: shield-filtercount PID\n");
        return 2;
    }
    int pid = atoi(argv[1]);
    if (ptrace(PTRACE_SEIZE, pid, 0, 0)) {
        perror("shield-filtercount: ptrace seize");
        return 1;
    }
    ptrace(PTRACE_INTERRUPT, pid, 0, 0);
    waitpid(pid, NULL, __WALL);
    static struct sock_filter f[MAXF][MAXI];
    int len[MAXF], nf = 0;
    for (; nf < MAXF; nf++) {
        long n = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, nf, NULL);
        if (n <= 0 || n > MAXI) break;
        len[nf] = (int)n;
        if (ptrace(PTRACE_SECCOMP_GET_FILTER, pid, nf, f[nf]) != n) break;
    }
    ptrace(PTRACE_DETACH, pid, 0, 0);
    printf("%d filters, lengths (newest first):", nf);
    for (int i = nf - 1; i >= 0; i--) printf(" %d", len[i]);
    printf("\n");
    static const struct { const char *name; int nr; } calls[] = {
        {"read", SYS_read},         {"write", SYS_write},           {"close", SYS_close},
        {"fstat", SYS_fstat},       {"pread64", SYS_pread64},       {"writev", SYS_writev},
        {"sendmsg", SYS_sendmsg},   {"recvfrom", SYS_recvfrom},     {"openat", SYS_openat},
        {"newfstatat", SYS_newfstatat}, {"epoll_wait", SYS_epoll_wait}, {"accept4", SYS_accept4},
        {"rt_sigprocmask", SYS_rt_sigprocmask}, {"getppid", SYS_getppid},
    };
    for (size_t c = 0; c < sizeof calls / sizeof calls[0]; c++) {
        struct seccomp_data d = {.nr = calls[c].nr, .arch = AUDIT_ARCH_X86_64,
                                 .instruction_pointer = 0x7f0000001000ull, .args = {5, 0x7ffd00000000ull}};
        int total = 0;
        printf("%-15s", calls[c].name);
        for (int i = nf - 1; i >= 0; i--) {
            int k = run(f[i], len[i], &d);
            if (k < 0) {
                printf("  (filter %d: an instruction this tool does not know)\n", i);
                return 1;
            }
            printf(" %4d", k);
            total += k;
        }
        printf("   total %d\n", total);
    }
    return 0;
}
