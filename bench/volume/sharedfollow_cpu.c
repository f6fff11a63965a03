/* bench/volume/sharedfollow_cpu.c - CPU per shared-mode 4 KiB write when two processes write
 * one file in turns (PostgreSQL's backends writing the WAL): each write takes the writer lock
 * after the other process's lazy commit, so its catch-up follows the other's appends to the
 * file's journal (writer_refresh -> file_follow) before it writes; an fsync every 16 writes.
 * Load-independent: the CPU time of both processes (getrusage), and the minor page faults,
 * per write. A volume of N entries, as sharedwrite_cpu. Each write is PIECES 4 KiB chunks (one
 * pwrite, default 1): the other process's follow then reads PIECES chunk records (PostgreSQL's
 * WAL flushes are 8 KiB to tens of KiB).
 *
 *   build/bench/volume/sharedfollow_cpu /dev/shm/VOLDIR ENTRIES WRITES [PIECES]
 *   (VOLDIR must not exist)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include "scp/volume.h"

struct use {
    double cpu;
    long minflt;
};

static struct use now(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    struct use u = {r.ru_utime.tv_sec + r.ru_stime.tv_sec +
                        (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6,
                    r.ru_minflt};
    return u;
}

/* Write in turns with the other process: wait for a byte on in, write, pass a byte on out. */
#define MAX_PIECES 64
static int pieces = 1;

static int turns(scp_vfile *f, int who, int nw, int in, int out, struct use *spent) {
    static uint8_t buf[MAX_PIECES * 4096];
    size_t n = (size_t)pieces * 4096;
    scp_err e;
    char c = 't';
    uint32_t x = 12345u + (uint32_t)who;
    struct use u0 = now();
    for (int k = 0; k < nw; k++) {
        if (read(in, &c, 1) != 1) return -1;
        x = x * 1103515245u + 12345u;
        memset(buf, (int)(x >> 24), n);
        uint64_t at = (uint64_t)((x >> 8) % (256 - (uint32_t)pieces + 1)) * 4096;
        if (scp_vfile_pwrite(f, buf, n, at, &e) != (ssize_t)n) {
            fprintf(stderr, "write: %s\n", e.msg);
            return -1;
        }
        if (k % 16 == 15 && scp_vfile_fsync(f, &e) < 0) {
            fprintf(stderr, "fsync: %s\n", e.msg);
            return -1;
        }
        if (write(out, &c, 1) != 1) return -1;
    }
    struct use u1 = now();
    spent->cpu = u1.cpu - u0.cpu;
    spent->minflt = u1.minflt - u0.minflt;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: sharedfollow_cpu NEW_DIR ENTRIES WRITES [PIECES]\n");
        return 2;
    }
    const char *vd = argv[1];
    int nfiles = atoi(argv[2]), nw = atoi(argv[3]);
    if (argc > 4) pieces = atoi(argv[4]);
    if (pieces < 1 || pieces > MAX_PIECES) {
        fprintf(stderr, "sharedfollow_cpu: PIECES must be 1-%d\n", MAX_PIECES);
        return 2;
    }
    uint8_t key[SCP_VOLUME_KEY_LEN];
    for (size_t i = 0; i < sizeof key; i++) key[i] = (uint8_t)(i * 7 + 1);
    scp_err e;
    if (scp_volume_create(vd, key, 4096, &e) < 0) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    scp_volume *v = scp_volume_open(vd, key, NULL, &e);
    if (!v) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    scp_volume_mkdir(v, "base", 0700, &e);
    static uint8_t zero[256 * 4096];
    for (int i = 0; i <= nfiles; i++) {
        char p[64];
        snprintf(p, sizeof p, i == nfiles ? "wal" : "base/relation-%05d", i);
        scp_vfile *f = scp_vfile_open(v, p, O_RDWR | O_CREAT, 0600, &e);
        if (!f) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        /* the written file: 1 MiB of written chunks, so that every write overwrites one */
        if (i == nfiles) scp_vfile_pwrite(f, zero, sizeof zero, 0, &e);
        else scp_vfile_pwrite(f, p, strlen(p), 0, &e);
        scp_vfile_close(f, &e);
    }
    scp_volume_close(v, &e);
    v = scp_volume_open(vd, key, NULL, &e);
    if (!v) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    scp_volume_set_shared(v);
    scp_vfile *f = scp_vfile_open(v, "wal", O_RDWR, 0, &e);
    int ab[2], ba[2], rep[2];
    if (!f || pipe(ab) < 0 || pipe(ba) < 0 || pipe(rep) < 0) return 1;
    pid_t pid = fork();
    if (pid < 0) return 1;
    struct use mine = {0}, other = {0};
    if (pid == 0) {
        int rc = turns(f, 1, nw, ab[0], ba[1], &mine);
        if (write(rep[1], &mine, sizeof mine) != (ssize_t)sizeof mine) rc = -1;
        scp_vfile_close(f, &e);
        scp_volume_close(v, &e);
        _exit(rc == 0 ? 0 : 1);
    }
    char c = 's';
    if (write(ab[1], &c, 1) != 1) return 1; /* the child writes first */
    int rc = turns(f, 0, nw, ba[0], ab[1], &mine);
    if (rc == 0 && read(rep[0], &other, sizeof other) != (ssize_t)sizeof other) rc = -1;
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) rc = -1;
    if (rc < 0) {
        fprintf(stderr, "sharedfollow_cpu: a process failed\n");
        return 1;
    }
    printf("%d entries, 2 processes x %d writes of %d KiB in turns (an fsync every 16 each): "
           "CPU %.1f us per write, %.2f minor faults per write\n",
           nfiles + 2, nw, pieces * 4, (mine.cpu + other.cpu) * 1e6 / (2.0 * nw),
           (double)(mine.minflt + other.minflt) / (2.0 * nw));
    scp_vfile_close(f, &e);
    scp_volume_close(v, &e);
    return 0;
}
