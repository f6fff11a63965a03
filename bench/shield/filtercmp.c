/* bench/shield/filtercmp.c - do two processes' seccomp filters give the same verdicts?
 *
 *   shield-filtercmp dump PID FILE     (root: PTRACE_SECCOMP_GET_FILTER) save PID's filters
 *   shield-filtercmp cmp OLD NEW       compare two saved stacks; exit 1 when they differ
 *   shield-filtercmp time OLD NEW [N]  CPU time per system call under each saved stack
 *
 * Made to check that a change in how the shield builds its filters (gate.c) keeps what they
 * decide: run the same program under the old and the new build, dump a process of each, and
 * compare. The verdict of a stack is the most severe of its filters' (as the kernel takes it).
 * Each call is tried from the same kinds of code in both processes (the gate, libc, the loader,
 * the program, the shield library, an address below 4 GiB, one in no mapping; found in
 * /proc/PID/maps, since address randomization puts them elsewhere in each) with arguments drawn
 * from values that the rules test (descriptors in and out of the reserved range, found as the
 * top 1024 numbers of /proc/PID/fd; AT_FDCWD, NULL, SIGSYS, SIG_UNBLOCK, F_DUPFD(_CLOEXEC),
 * AT_EMPTY_PATH, -1), for every number below 470, some x32 numbers, and the i386 ABI. Only the
 * classic-BPF instructions the shield's filters use are known.
 *
 * time: installs no stack, OLD and NEW in turn in a child each (5 rounds, interleaved) and
 * times N raw pread64 and read calls of one byte from /dev/zero there: calls that every
 * shield filter looks at and lets through from the program's code. Prints the least CPU time
 * (user + system) per call of each over the rounds, which the machine's load moves far less
 * than wall time, and what each stack adds to the call without filters. */
#include <dirent.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bpf_run.h"

#define MAXF 16
#define MAXI 4096
enum { IP_GATE, IP_LIBC, IP_LD, IP_PROG, IP_SHIELD, IP_LOW, IP_OTHER, NIP };
static const char *const ip_name[NIP] = {"gate", "libc", "loader", "program", "shield", "low", "unmapped"};
struct stack {
    int nf, len[MAXF]; /* filter 0 is the oldest (PTRACE_SECCOMP_GET_FILTER's order) */
    struct sock_filter f[MAXF][MAXI];
    uint64_t ip[NIP];
    int lo, hi; /* the reserved descriptor range */
};

static int run(const struct sock_filter *f, int n, const struct seccomp_data *d, uint32_t *ret) {
    int count;
    return bpf_run(f, n, d, ret, &count);
}

static int severity(uint32_t r) {
    switch (r & SECCOMP_RET_ACTION_FULL) {
    case SECCOMP_RET_KILL_PROCESS: return 8;
    case SECCOMP_RET_KILL_THREAD: return 7;
    case SECCOMP_RET_TRAP: return 6;
    case SECCOMP_RET_ERRNO: return 5;
    case SECCOMP_RET_USER_NOTIF: return 4;
    case SECCOMP_RET_TRACE: return 3;
    case SECCOMP_RET_LOG: return 2;
    case SECCOMP_RET_ALLOW: return 1;
    default: return 9; /* unknown actions kill */
    }
}

static uint32_t verdict(const struct stack *s, const struct seccomp_data *d) {
    uint32_t best = SECCOMP_RET_ALLOW, r;
    for (int i = s->nf - 1; i >= 0; i--) { /* newest first: of equal severity, the newest's counts */
        if (run(s->f[i], s->len[i], d, &r)) {
            fprintf(stderr, "shield-filtercmp: filter %d has an instruction this tool does not know\n", i);
            exit(2);
        }
        if (severity(r) > severity(best)) best = r;
    }
    return best;
}

static int dump(int pid, const char *file) {
    static struct stack s;
    char p[64], line[4352];
    s.ip[IP_GATE] = 0x2c5c00000000ull + 25; /* SCP_SHIELD_GATE_ADDR + GATE_RET_OFF */
    s.ip[IP_LOW] = 0x401000;
    s.ip[IP_OTHER] = 0x7ffd00001000ull;
    snprintf(p, sizeof p, "/proc/%d/maps", pid);
    FILE *m = fopen(p, "r");
    if (!m) return perror(p), 1;
    int prog_seen = 0;
    while (fgets(line, sizeof line, m)) {
        unsigned long a, b;
        char perm[8], path[4096] = "";
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %4095s", &a, &b, perm, path) < 3 || perm[2] != 'x') continue;
        uint64_t mid = a + (b - a) / 2;
        if (strstr(path, "/libc.so.6")) s.ip[IP_LIBC] = mid;
        else if (strstr(path, "/ld-linux")) s.ip[IP_LD] = mid;
        else if (strstr(path, "libscp-shield")) s.ip[IP_SHIELD] = mid;
        else if (!prog_seen && path[0] == '/') s.ip[IP_PROG] = mid, prog_seen = 1;
    }
    fclose(m);
    snprintf(p, sizeof p, "/proc/%d/fd", pid);
    DIR *dd = opendir(p);
    if (!dd) return perror(p), 1;
    int top = 0;
    for (struct dirent *e; (e = readdir(dd));)
        if (atoi(e->d_name) > top) top = atoi(e->d_name);
    closedir(dd);
    s.hi = top + 1;
    s.lo = s.hi - 1024;
    if (ptrace(PTRACE_SEIZE, pid, 0, 0)) return perror("shield-filtercmp: ptrace seize"), 1;
    ptrace(PTRACE_INTERRUPT, pid, 0, 0);
    waitpid(pid, NULL, __WALL);
    for (s.nf = 0; s.nf < MAXF; s.nf++) {
        long n = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, s.nf, NULL);
        if (n <= 0 || n > MAXI || ptrace(PTRACE_SECCOMP_GET_FILTER, pid, s.nf, s.f[s.nf]) != n) break;
        s.len[s.nf] = (int)n;
    }
    ptrace(PTRACE_DETACH, pid, 0, 0);
    FILE *o = fopen(file, "w");
    if (!o || fwrite(&s, sizeof s, 1, o) != 1 || fclose(o)) return perror(file), 1;
    printf("pid %d: %d filters, lengths (oldest first):", pid, s.nf);
    for (int i = 0; i < s.nf; i++) printf(" %d", s.len[i]);
    printf("; reserved %d-%d\n", s.lo, s.hi - 1);
    return 0;
}

static uint64_t arg_value(const struct stack *s, int k) {
    static const uint64_t fixed[] = {5, (uint64_t)-100 /* AT_FDCWD */, 0, 0x7ffd00000000ull, 31 /* SIGSYS */,
                                     1 /* SIG_UNBLOCK, F_DUPFD_CLOEXEC's neighbour */, 1030 /* F_DUPFD_CLOEXEC */,
                                     0x1000 /* AT_EMPTY_PATH */, 0x1100, 0xffffffffull, 2};
    enum { NFIXED = sizeof fixed / sizeof fixed[0] };
    if (k < NFIXED) return fixed[k];
    switch (k - NFIXED) {
    case 0: return (uint64_t)s->lo;
    case 1: return (uint64_t)s->lo + 500;
    case 2: return (uint64_t)s->hi - 1;
    default: return (uint64_t)s->hi;
    }
}
#define NVALUES 15

static int load(const char *file, struct stack *s) {
    FILE *f = fopen(file, "r");
    if (!f || fread(s, sizeof *s, 1, f) != 1) return perror(file), 1;
    fclose(f);
    return 0;
}

static double cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* In a child: install s (oldest filter first; NULL: none), then N calls of each kind; the CPU
 * ns per call go to out, shared memory (a write would trap: the network rules). */
static void time_child(const struct stack *s, long n, double *out) {
    if (s) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) _exit(1);
        for (int i = 0; i < s->nf; i++) {
            struct sock_fprog p = {.len = (unsigned short)s->len[i], .filter = (struct sock_filter *)s->f[i]};
            if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p)) _exit(1);
        }
    }
    int fd = open("/dev/zero", O_RDONLY);
    char b;
    for (int k = 0; k < 2; k++) {
        double t0 = cpu_ns();
        for (long i = 0; i < n; i++)
            if (k == 0) syscall(SYS_pread64, fd, &b, 1L, 0L);
            else syscall(SYS_read, fd, &b, 1L);
        out[k] = (cpu_ns() - t0) / (double)n;
    }
    _exit(0);
}

static int time_stacks(const struct stack *a, const struct stack *b, long n) {
    const struct stack *st[3] = {NULL, a, b};
    static const char *const name[3] = {"no filter", "OLD", "NEW"};
    double best[3][2];
    for (int k = 0; k < 3; k++) best[k][0] = best[k][1] = 1e18;
    for (int round = 0; round < 5; round++)
        for (int k = 0; k < 3; k++) {
            double *r = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
            int st_ = -1;
            if (r == MAP_FAILED) return perror("mmap"), 2;
            pid_t c = fork();
            if (c == 0) time_child(st[k], n, r);
            waitpid(c, &st_, 0);
            if (!WIFEXITED(st_) || WEXITSTATUS(st_)) return fprintf(stderr, "shield-filtercmp: the %s child failed\n", name[k]), 2;
            for (int j = 0; j < 2; j++)
                if (r[j] < best[k][j]) best[k][j] = r[j];
            munmap(r, 4096);
        }
    double load = -1;
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf", &load) != 1) load = -1;
        fclose(la);
    }
    printf("CPU ns per call, least of 5 rounds of %ld; load average (1 min) %.2f\n", n, load);
    printf("%-10s %8s %8s %12s %12s\n", "stack", "pread64", "read", "+pread64", "+read");
    for (int k = 0; k < 3; k++)
        printf("%-10s %8.1f %8.1f %12.1f %12.1f\n", name[k], best[k][0], best[k][1], best[k][0] - best[0][0],
               best[k][1] - best[0][1]);
    printf("filters: OLD %d, NEW %d; what NEW adds / what OLD adds: pread64 %.2f, read %.2f\n", a->nf, b->nf,
           (best[2][0] - best[0][0]) / (best[1][0] - best[0][0]), (best[2][1] - best[0][1]) / (best[1][1] - best[0][1]));
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "dump")) return dump(atoi(argv[2]), argv[3]);
    if ((argc == 4 || argc == 5) && !strcmp(argv[1], "time")) {
        static struct stack ta, tb;
        if (load(argv[2], &ta) || load(argv[3], &tb)) return 2;
        return time_stacks(&ta, &tb, argc == 5 ? atol(argv[4]) : 1000000);
    }
    if (argc != 4 || strcmp(argv[1], "cmp")) {
        fprintf(stderr, "usage: shield-filtercmp dump PID FILE | cmp OLD NEW | time OLD NEW [N]\n");
        return 2;
    }
    static struct stack a, b;
    if (load(argv[2], &a) || load(argv[3], &b)) return 2;
    static const uint32_t arches[] = {AUDIT_ARCH_X86_64, AUDIT_ARCH_I386};
    long cases = 0, differ = 0;
    srand(1);
    for (int ar = 0; ar < 2; ar++)
        for (uint32_t i = 0; i < 473; i++) {
            uint32_t nr = i < 470 ? i : 0x40000000u + (i - 470) * 9; /* x32: read, mmap, ... */
            for (int ip = 0; ip < NIP; ip++)
                for (int t = 0; t < 3000; t++) {
                    struct seccomp_data da = {.nr = (int)nr, .arch = arches[ar], .instruction_pointer = a.ip[ip]};
                    struct seccomp_data db = da;
                    db.instruction_pointer = b.ip[ip];
                    for (int k = 0; k < 6; k++) { /* first each value in each position, then at random */
                        int v = t < 6 * NVALUES ? (k == t % 6 ? t / 6 : 0) : rand() % NVALUES;
                        da.args[k] = arg_value(&a, v);
                        db.args[k] = arg_value(&b, v);
                    }
                    uint32_t ra = verdict(&a, &da), rb = verdict(&b, &db);
                    cases++;
                    if (ra == rb) continue;
                    if (differ++ < 20)
                        printf("differ: arch %#x nr %#x from %s, args %#llx %#llx %#llx %#llx %#llx %#llx: %#x, %#x\n",
                               arches[ar], nr, ip_name[ip], (unsigned long long)da.args[0],
                               (unsigned long long)da.args[1], (unsigned long long)da.args[2],
                               (unsigned long long)da.args[3], (unsigned long long)da.args[4],
                               (unsigned long long)da.args[5], ra, rb);
                }
        }
    printf("%ld cases, %ld with another verdict\n", cases, differ);
    return differ != 0;
}
