/* bench/volume/syscost.c - what one system call costs on this machine, for reading the volume's
 * system calls per transaction (bench/RESULTS.md, session 58): getppid (the entry and exit
 * alone), the pread and pwrite of a journal record (8,548 bytes, from and into the page cache),
 * a 16-byte pread, fstat and a size-only statx; then a pipe round trip between two processes
 * (two context switches and four calls). Run by hand: syscost DIR (a file is made there). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N 200000

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void report(const char *what, double t0, int n) {
    printf("%-24s %6.2f us\n", what, (now() - t0) / n * 1e6);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: syscost DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/syscost.tmp", argv[1]);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    static char b[8548];
    if (pwrite(fd, b, sizeof b, 0) != (ssize_t)sizeof b) return 1;
    double t = now();
    for (int i = 0; i < N; i++) syscall(SYS_getppid);
    report("getppid", t, N);
    t = now();
    for (int i = 0; i < N; i++)
        if (pread(fd, b, sizeof b, 0) < 0) return 1;
    report("pread 8,548 bytes", t, N);
    t = now();
    for (int i = 0; i < N; i++)
        if (pread(fd, b, 16, 0) < 0) return 1;
    report("pread 16 bytes", t, N);
    t = now();
    for (int i = 0; i < N; i++)
        if (pwrite(fd, b, sizeof b, 4096) < 0) return 1;
    report("pwrite 8,548 bytes", t, N);
    struct stat st;
    t = now();
    for (int i = 0; i < N; i++) fstat(fd, &st);
    report("fstat", t, N);
    struct statx sx;
    t = now();
    for (int i = 0; i < N; i++) statx(fd, "", AT_EMPTY_PATH, STATX_SIZE, &sx);
    report("statx (size)", t, N);
    close(fd);
    unlink(path);

    int a[2], z[2];
    if (pipe(a) || pipe(z)) return 1;
    pid_t c = fork();
    char ch = 0;
    if (c == 0) {
        for (int i = 0; i < N / 10; i++)
            if (read(a[0], &ch, 1) != 1 || write(z[1], &ch, 1) != 1) _exit(1);
        _exit(0);
    }
    t = now();
    for (int i = 0; i < N / 10; i++)
        if (write(a[1], &ch, 1) != 1 || read(z[0], &ch, 1) != 1) return 1;
    report("pipe round trip", t, N / 10);
    waitpid(c, NULL, 0);
    return 0;
}
