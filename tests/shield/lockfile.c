/* tests/shield/lockfile.c - a lock file taken with O_CREAT|O_EXCL by several processes at once,
 * as git takes index.lock and many daemons their pid or lock files.
 *
 * usage: shield-lockfile DIR SECONDS PROCESSES
 *
 * Each process loops: create DIR/lock exclusively (EEXIST: another holds it, try again); under
 * it, read DIR/counter, write the number plus one to a file of its own and rename that over
 * DIR/counter; close and remove the lock. Each reports its increments through a pipe. The
 * exclusive create is the only mutual exclusion, so a lost update (two holders at once, or a
 * read that saw an older counter) leaves the counter below the sum.
 * Exits 0 if the counter equals the sum of the increments, every process made at least one,
 * and no call failed other than the create's EEXIST. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "workers.h"

static long read_counter(const char *path) {
    char b[64] = {0};
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, b, sizeof b - 1) : -1;
    if (fd >= 0) close(fd);
    if (n <= 0) {
        printf("read %s: %s\n", path, n < 0 ? strerror(errno) : "empty");
        return -1;
    }
    return atol(b);
}

static int write_file(const char *path, long v) {
    char b[64];
    int len = snprintf(b, sizeof b, "%ld\n", v);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, b, (size_t)len) != len || close(fd) != 0) {
        printf("write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* one process's loop: its increments, or -1 after a failed call */
static long contend(const char *dir, long long end) {
    char lock[4200], counter[4200], mine[4200];
    snprintf(lock, sizeof lock, "%s/lock", dir);
    snprintf(counter, sizeof counter, "%s/counter", dir);
    snprintf(mine, sizeof mine, "%s/counter.%d", dir, (int)getpid());
    long n = 0;
    while (now_ms() < end) {
        int l = open(lock, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (l < 0) {
            if (errno == EEXIST) continue;
            printf("create the lock: %s\n", strerror(errno));
            return -1;
        }
        long v = read_counter(counter);
        if (v < 0 || write_file(mine, v + 1) < 0) return -1;
        if (rename(mine, counter) != 0 || close(l) != 0 || unlink(lock) != 0) {
            printf("rename, close or remove the lock: %s\n", strerror(errno));
            return -1;
        }
        n++;
    }
    return n;
}

struct job {
    const char *dir;
    long long end;
};

static long job_run(int k, void *ctx) {
    (void)k;
    const struct job *j = ctx;
    return contend(j->dir, j->end);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s DIR SECONDS PROCESSES\n", argv[0]);
        return 2;
    }
    int nproc = atoi(argv[3]);
    if (nproc < 1 || nproc > 16) return fprintf(stderr, "PROCESSES: 1..16\n"), 2;
    char counter[4200];
    snprintf(counter, sizeof counter, "%s/counter", argv[1]);
    if (write_file(counter, 0) < 0) return 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct job j = {argv[1], now_ms() + 1000LL * atoi(argv[2])};
    long made[16], sum = 0;
    int bad = run_workers("increments", nproc, job_run, &j, made);
    for (int k = 0; k < nproc; k++) sum += made[k] > 0 ? made[k] : 0;
    long v = read_counter(counter);
    printf("counter %ld, increments %ld\n", v, sum);
    return bad || v != sum;
}
