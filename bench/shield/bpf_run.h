/* bench/shield/bpf_run.h - a small classic-BPF interpreter for the seccomp filters the shield
 * installs (the instructions gate.c's assembler and the launcher emit), shared by
 * shield-filtercount and shield-filtercmp. */
#ifndef SCP_BENCH_BPF_RUN_H
#define SCP_BENCH_BPF_RUN_H

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdint.h>
#include <string.h>

/* Run filter f (n instructions) on d: 0 with the verdict in *ret and the instructions executed
 * in *count, or -1 for an instruction this interpreter does not know or a fall off the end. */
static inline int bpf_run(const struct sock_filter *f, int n, const struct seccomp_data *d, uint32_t *ret,
                          int *count) {
    uint32_t a = 0;
    int steps = 0;
    for (int pc = 0; pc >= 0 && pc < n;) {
        const struct sock_filter *i = &f[pc];
        steps++;
        switch (i->code) {
        case BPF_LD | BPF_W | BPF_ABS:
            if (i->k > sizeof *d - 4) return -1;
            memcpy(&a, (const char *)d + i->k, 4);
            pc++;
            break;
        case BPF_JMP | BPF_JEQ | BPF_K: pc += 1 + (a == i->k ? i->jt : i->jf); break;
        case BPF_JMP | BPF_JGE | BPF_K: pc += 1 + (a >= i->k ? i->jt : i->jf); break;
        case BPF_JMP | BPF_JGT | BPF_K: pc += 1 + (a > i->k ? i->jt : i->jf); break;
        case BPF_JMP | BPF_JSET | BPF_K: pc += 1 + ((a & i->k) ? i->jt : i->jf); break;
        case BPF_JMP | BPF_JA: pc += 1 + (int)i->k; break;
        case BPF_RET | BPF_K:
            *ret = i->k;
            *count = steps;
            return 0;
        default: return -1;
        }
    }
    return -1;
}

#endif
