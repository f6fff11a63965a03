/* bench/shield/notifybench.c - cost per served call: notification path vs trap path vs native.
 * usage: shield-notifybench DIR [ITERATIONS]
 * Built twice (notify.sh): shield-notifybench (dynamic: under scpctl run its raw system calls
 * take the shield's SIGSYS trap path, its libc calls the fast path) and
 * shield-notifybench-static (static: under scpctl run every path call, fsync and close is
 * reported to the supervisor by seccomp user notification). Prints, per operation, wall time
 * and this process's CPU time (user + system) in ns: stat of a 4 KiB file in DIR, and
 * open + 4 KiB read + close of it, both by raw system call; and the same through libc. The
 * supervisor's own CPU time is not in these figures (notify.sh reports it). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
}

static double t0, c0;
static void start(void) { t0 = now(), c0 = cpu(); }
static void stop(const char *what, long n) {
    printf("%-40s %9.0f ns/op wall %9.0f ns/op cpu\n", what, (now() - t0) / n, (cpu() - c0) / n);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long n = argc > 2 ? atol(argv[2]) : 5000;
    char buf[4096], path[4096];
    memset(buf, 'x', sizeof buf);
    snprintf(path, sizeof path, "%s/notifybench.dat", argv[1]);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fsync(fd) || close(fd)) {
        perror(path);
        return 1;
    }
    struct stat st;
    start();
    for (long i = 0; i < n; i++)
        if (syscall(SYS_newfstatat, AT_FDCWD, path, &st, 0) || st.st_size != 4096) return 1;
    stop("stat (raw syscall)", n);
    start();
    for (long i = 0; i < n; i++) {
        int f = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY, 0);
        if (f < 0 || syscall(SYS_read, f, buf, sizeof buf) != (long)sizeof buf || syscall(SYS_close, f)) return 1;
    }
    stop("open+read 4K+close (raw syscall)", n);
    start();
    for (long i = 0; i < n; i++)
        if (stat(path, &st) || st.st_size != 4096) return 1;
    stop("stat (libc)", n);
    start();
    for (long i = 0; i < n; i++) {
        int f = open(path, O_RDONLY);
        if (f < 0 || read(f, buf, sizeof buf) != (ssize_t)sizeof buf || close(f)) return 1;
    }
    stop("open+read 4K+close (libc)", n);
    return 0;
}
