/* bench/shield/trapbench.c - what the shield costs per call.
 * usage: shield-trapbench DIR [ITERATIONS]
 * Run once plainly and once under `scpctl run` with a volume at DIR (see run.sh). Prints
 * ns/op for: an unlisted syscall (getppid: filter cost only), pread of 4 KiB on an ordinary
 * file (wrapper + filter), and pread of 4 KiB on a file in DIR through the libc symbol (the
 * fast path, no trap) and through a raw syscall instruction (the SIGSYS trap path); stat of
 * an ordinary path and of a file in DIR (path classification) through libc and by raw
 * syscall (the code filter's trap path), open+close of an ordinary file, and 64-byte writes
 * and reads at the cursor of a file in DIR. Wall and CPU time per operation. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* the process's CPU time (user + system, ns): unlike the wall time, it does not grow with the
 * machine's load (waiting for a core), so runs on a shared machine stay comparable */
static double cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}
static double t, c;
static void start(void) {
    t = now();
    c = cpu();
}
static void report(const char *what, long ops) {
    double w = (now() - t) / ops, u = (cpu() - c) / ops;
    printf("%-30s %8.1f ns/op  cpu %8.1f ns/op\n", what, w, u);
}

/* Cursor I/O on the file in DIR: 64-byte writes and reads that move the description's offset
 * (back to 0 every 64, so the file stays in one chunk). Wall and CPU ns per call. */
static int cursor_loops(int fd, long n) {
    char b[64];
    memset(b, 'y', sizeof b);
    double t0 = now(), c0 = cpu();
    for (long i = 0; i < n; i++)
        if (((i & 63) == 0 && lseek(fd, 0, SEEK_SET) != 0) || write(fd, b, sizeof b) != (ssize_t)sizeof b) return 1;
    printf("write 64B at the cursor in DIR %8.1f ns/op %8.1f cpu-ns/op\n", (now() - t0) / n, (cpu() - c0) / n);
    t0 = now(), c0 = cpu();
    for (long i = 0; i < n; i++)
        if (((i & 63) == 0 && lseek(fd, 0, SEEK_SET) != 0) || read(fd, b, sizeof b) != (ssize_t)sizeof b) return 1;
    printf("read 64B at the cursor in DIR  %8.1f ns/op %8.1f cpu-ns/op\n", (now() - t0) / n, (cpu() - c0) / n);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long n = argc > 2 ? atol(argv[2]) : 200000;
    char buf[4096], path[4096];
    memset(buf, 'x', sizeof buf);
    snprintf(path, sizeof path, "%s/trapbench.dat", argv[1]);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fsync(fd)) {
        perror(path);
        return 1;
    }
    /* "cursor": only the cursor loops; "cursor-fork": the same in a forked child, on the
     * description it shares with its parent (bench/shield/ofd.sh) */
    if (argc > 3 && !strncmp(argv[3], "cursor", 6)) {
        int forked = !strcmp(argv[3], "cursor-fork");
        pid_t pid = forked ? fork() : 0;
        if (pid > 0) {
            int st;
            waitpid(pid, &st, 0);
            return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
        }
        if (pid < 0) return 1;
        int r = cursor_loops(fd, n);
        fflush(stdout);
        if (forked) _exit(r);
        return r;
    }
    char tmpl[] = "/tmp/trapbench-XXXXXX";
    int plain = mkstemp(tmpl);
    unlink(tmpl);
    if (plain < 0 || write(plain, buf, sizeof buf) != (ssize_t)sizeof buf) return 1;

    start();
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    report("getppid (raw, unlisted)", n);
    start();
    for (long i = 0; i < n; i++)
        if (pread(plain, buf, sizeof buf, 0) != (ssize_t)sizeof buf) return 1;
    report("pread 4K ordinary file (libc)", n);
    start();
    for (long i = 0; i < n; i++)
        if (pread(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf) return 1;
    report("pread 4K in DIR (libc)", n);
    start();
    for (long i = 0; i < n; i++)
        if (syscall(SYS_pread64, fd, buf, sizeof buf, 0L) != (long)sizeof buf) return 1;
    report("pread 4K in DIR (raw syscall)", n);
    start();
    for (long i = 0; i < n; i++)
        if (syscall(SYS_lseek, fd, 0L, (long)SEEK_CUR) < 0) return 1;
    report("lseek in DIR (raw syscall)", n);
    start();
    for (long i = 0; i < n; i++) {
        struct stat st;
        if (stat("/tmp", &st)) return 1;
    }
    report("stat ordinary path (libc)", n);
    start();
    for (long i = 0; i < n; i++) {
        struct stat st;
        if (stat(path, &st)) return 1;
    }
    report("stat in DIR (libc)", n);
    /* the same by raw syscall: under the shield the code filter traps it (served in DIR,
     * passed through the gate elsewhere) */
    start();
    for (long i = 0; i < n; i++) {
        struct stat st;
        if (syscall(SYS_newfstatat, (long)AT_FDCWD, "/tmp", &st, 0L)) return 1;
    }
    report("stat ordinary path (raw)", n);
    start();
    for (long i = 0; i < n; i++) {
        struct stat st;
        if (syscall(SYS_newfstatat, (long)AT_FDCWD, path, &st, 0L)) return 1;
    }
    report("stat in DIR (raw)", n);
    start();
    for (long i = 0; i < n; i++) {
        long f = syscall(SYS_openat, (long)AT_FDCWD, "/etc/hostname", (long)O_RDONLY, 0L);
        if (f < 0 || syscall(SYS_close, f)) return 1;
    }
    report("open+close ordinary (raw)", n);
    start();
    for (long i = 0; i < n; i++) {
        int f = open("/etc/hostname", O_RDONLY);
        if (f < 0 || close(f)) return 1;
    }
    report("open+close ordinary (libc)", n);
    if (cursor_loops(fd, n / 4)) return 1;
    if (argc > 3 && !strcmp(argv[3], "fork")) { /* the same loop in a forked child (nginx's worker) */
        pid_t pid = fork();
        if (pid > 0) {
            int st;
            waitpid(pid, &st, 0);
            return 0;
        }
        printf("(in a forked child)\n");
    }
    start();
    long m = n / 20;
    for (long i = 0; i < m; i++) {
        int f = open(path, O_RDONLY);
        struct stat st;
        if (f < 0 || fstat(f, &st) || pread(f, buf, sizeof buf, 0) != (ssize_t)sizeof buf) return 1;
        close(f);
    }
    report("open+fstat+pread 4K+close DIR", m);
    close(fd);
    close(plain);
    return 0;
}
