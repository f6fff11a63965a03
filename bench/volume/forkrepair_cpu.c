/* bench/volume/forkrepair_cpu.c - a fork child's first volume call (its repair: fresh lock
 * and descriptors, and the manifest brought up to date), CPU and wall time, against the same
 * call in the parent. A volume of ENTRIES files and a manifest log of about RECORDS records
 * (lazy commits of one file in shared mode, as PostgreSQL's backends make them); then ROUNDS
 * times: fork a child whose first call is a stat of another file, and report the child's
 * time for it. PostgreSQL forks a backend per connection (bench/volume/pgbench_connect.sh).
 * Load-independent figure: the child's thread CPU time.
 *
 *   build/bench/volume/forkrepair_cpu /dev/shm/NEWDIR ENTRIES RECORDS ROUNDS
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "scp/volume.h"

static double clk(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: forkrepair_cpu NEW_DIR ENTRIES RECORDS ROUNDS\n");
        return 2;
    }
    const char *vd = argv[1];
    int nfiles = atoi(argv[2]), nrec = atoi(argv[3]), rounds = atoi(argv[4]);
    uint8_t key[SCP_VOLUME_KEY_LEN];
    for (size_t i = 0; i < sizeof key; i++) key[i] = (uint8_t)(i * 5 + 3);
    scp_err e;
    if (scp_volume_create(vd, key, 4096, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return 1; }
    scp_volume *v = scp_volume_open(vd, key, NULL, &e);
    if (!v) { fprintf(stderr, "%s\n", e.msg); return 1; }
    scp_volume_set_shared(v);
    scp_volume_mkdir(v, "base", 0700, &e);
    char p[64], buf[64];
    for (int i = 0; i < nfiles; i++) {
        snprintf(p, sizeof p, "base/relation-%05d", i);
        scp_vfile *f = scp_vfile_open(v, p, O_RDWR | O_CREAT, 0600, &e);
        if (!f || scp_vfile_pwrite(f, p, strlen(p), 0, &e) < 0 || scp_vfile_close(f, &e) < 0) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
    }
    if (scp_volume_sync(v, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return 1; }
    scp_vfile *w = scp_vfile_open(v, "base/relation-00000", O_RDWR, 0, &e);
    for (int i = 0; w && i < nrec; i++) { /* (one lazy commit each: a manifest-log record) */
        memset(buf, i, sizeof buf);
        if (scp_vfile_pwrite(w, buf, sizeof buf, 64, &e) != (ssize_t)sizeof buf) w = NULL;
    }
    if (!w) { fprintf(stderr, "%s\n", e.msg); return 1; }
    int pfd[2];
    if (pipe(pfd) < 0) return 1;
    double cpu = 0, wall = 0, pcpu = 0;
    scp_vstat st;
    for (int r = 0; r < rounds; r++) {
        pid_t c = fork();
        if (c < 0) return 1;
        if (c == 0) {
            double t[2] = {clk(CLOCK_THREAD_CPUTIME_ID), clk(CLOCK_MONOTONIC)};
            if (scp_volume_stat(v, "base/relation-00001", &st, &e) < 0) _exit(1);
            t[0] = clk(CLOCK_THREAD_CPUTIME_ID) - t[0];
            t[1] = clk(CLOCK_MONOTONIC) - t[1];
            _exit(write(pfd[1], t, sizeof t) == (ssize_t)sizeof t ? 0 : 1);
        }
        double t[2];
        int ws;
        if (read(pfd[0], t, sizeof t) != (ssize_t)sizeof t || waitpid(c, &ws, 0) != c || !WIFEXITED(ws) ||
            WEXITSTATUS(ws) != 0)
            return 1;
        cpu += t[0];
        wall += t[1];
        /* the parent's own next call after the child's (a catch-up of nothing, as a reference) */
        double t0 = clk(CLOCK_THREAD_CPUTIME_ID);
        if (scp_volume_stat(v, "base/relation-00002", &st, &e) < 0) return 1;
        pcpu += clk(CLOCK_THREAD_CPUTIME_ID) - t0;
    }
    printf("forkrepair_cpu: %d entries, %d records: a fork child's first call %.1f us CPU, %.1f us "
           "wall (mean of %d); the parent's next call %.1f us CPU\n",
           nfiles, nrec, cpu * 1e6 / rounds, wall * 1e6 / rounds, rounds, pcpu * 1e6 / rounds);
    scp_vfile_close(w, &e);
    scp_volume_close(v, &e);
    return 0;
}
