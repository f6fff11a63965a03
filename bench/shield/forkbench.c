/* bench/shield/forkbench.c - what one fork costs a program (the shield's reserved descriptor
 * range is copied with the descriptor table at every fork: docs/shield.md "Reserved descriptors").
 * usage: shield-forkbench [ITERATIONS [COUNT BASE]]
 * With COUNT and BASE (natively: what the reserved range costs by itself), first fills the
 * numbers [BASE, BASE + COUNT) with `/` opened O_PATH, as the shield's placeholders.
 * ITERATIONS times fork, _exit(0) in the child, waitpid in the parent. Prints the CPU time per
 * fork of the parent and its children together (user + system: the load-independent figure),
 * the wall time per fork, the number of open descriptors and the highest one (the length of
 * the table the kernel copies). Run once natively and once under `scpctl run` (startup.sh). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double tv_ns(struct timeval t) { return t.tv_sec * 1e9 + t.tv_usec * 1e3; }

static double cpu_all(void) { /* this process and its waited-for children */
    struct rusage s, c;
    getrusage(RUSAGE_SELF, &s);
    getrusage(RUSAGE_CHILDREN, &c);
    return tv_ns(s.ru_utime) + tv_ns(s.ru_stime) + tv_ns(c.ru_utime) + tv_ns(c.ru_stime);
}

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 2000;
    if (n <= 0) {
        fprintf(stderr, "usage: shield-forkbench [ITERATIONS]\n");
        return 2;
    }
    if (argc > 3) {
        long count = atol(argv[2]), base = atol(argv[3]);
        struct rlimit rl;
        int ph = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (ph < 0 || count < 0 || base < 3 || getrlimit(RLIMIT_NOFILE, &rl) || (rlim_t)(base + count) > rl.rlim_cur) {
            fprintf(stderr, "shield-forkbench: cannot place %ld descriptors at %ld\n", count, base);
            return 2;
        }
        for (long fd = base; fd < base + count; fd++)
            if (dup3(ph, (int)fd, O_CLOEXEC) < 0) {
                perror("dup3");
                return 2;
            }
        close(ph);
    }
    int open_fds = 0, top = -1;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            int fd = atoi(e->d_name);
            if (fd == dirfd(d)) continue;
            open_fds++;
            if (fd > top) top = fd;
        }
        closedir(d);
    }
    double c0 = cpu_all(), w0 = wall();
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p < 0) {
            perror("fork");
            return 1;
        }
        if (p == 0) _exit(0);
        int st;
        if (waitpid(p, &st, 0) != p || !WIFEXITED(st)) {
            fprintf(stderr, "waitpid failed\n");
            return 1;
        }
    }
    double c1 = cpu_all(), w1 = wall();
    printf("per fork: cpu %.1f us, wall %.1f us (%ld forks; %d open descriptors, highest %d)\n",
           (c1 - c0) / n / 1e3, (w1 - w0) / n / 1e3, n, open_fds, top);
    return 0;
}
