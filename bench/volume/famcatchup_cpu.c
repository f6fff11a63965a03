/* bench/volume/famcatchup_cpu.c - CPU per manifest-log record of another process's that a
 * catch-up walks, in a shared-mode fork family, with the family's region on or off
 * (SCP_VOLUME_FAMILY=1 in the environment: docs/volume-format.md, "Fork family's shared
 * state"). A volume of ENTRIES files; each round a forked child writes one file BATCH times
 * (a lazy commit each: one manifest-log record) and leaves without a close (as the shield
 * does: no fold); the parent's next scp_volume_stat of another path catches up on the BATCH
 * records (the volume lock, the log's header and records read, each record decrypted or taken
 * from the region, applied, chained). Load-independent (the thread's own CPU time and minor
 * faults). Keep BATCH x ROUNDS under ~7,000: past 1 MiB of records (~8,000 of these) a
 * child's commit folds the log and the parent's next catch-up reloads the whole state.
 *
 *   [SCP_VOLUME_FAMILY=1] build/bench/volume/famcatchup_cpu /dev/shm/NEWDIR ENTRIES BATCH ROUNDS
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "scp/volume.h"

static long tflt(void) {
    struct rusage r;
    getrusage(RUSAGE_THREAD, &r);
    return r.ru_minflt;
}

static double tcpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: famcatchup_cpu NEW_DIR ENTRIES BATCH ROUNDS\n");
        return 2;
    }
    const char *vd = argv[1];
    int nfiles = atoi(argv[2]), batch = atoi(argv[3]), rounds = atoi(argv[4]);
    uint8_t key[SCP_VOLUME_KEY_LEN];
    for (size_t i = 0; i < sizeof key; i++) key[i] = (uint8_t)(i * 7 + 1);
    scp_err e;
    if (scp_volume_create(vd, key, 4096, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return 1; }
    scp_volume *v = scp_volume_open(vd, key, NULL, &e);
    if (!v) { fprintf(stderr, "%s\n", e.msg); return 1; }
    scp_volume_mkdir(v, "base", 0700, &e);
    for (int i = 0; i < nfiles; i++) {
        char p[64];
        snprintf(p, sizeof p, "base/relation-%05d", i);
        scp_vfile *f = scp_vfile_open(v, p, O_RDWR | O_CREAT, 0600, &e);
        scp_vfile_pwrite(f, p, strlen(p), 0, &e);
        scp_vfile_close(f, &e);
    }
    scp_volume_close(v, &e);
    v = scp_volume_open(vd, key, NULL, &e); /* (the region, if on, is made here) */
    if (!v) { fprintf(stderr, "%s\n", e.msg); return 1; }
    scp_volume_set_shared(v);
    scp_vstat st;
    double total = 0;
    long recs = 0, flt = 0;
    for (int r = 0; r < rounds; r++) {
        pid_t c = fork();
        if (c < 0) return 1;
        if (c == 0) {
            scp_vfile *f = scp_vfile_open(v, "base/relation-00000", O_RDWR, 0, &e);
            char buf[64];
            for (int i = 0; i < batch; i++) {
                memset(buf, i, sizeof buf);
                if (!f || scp_vfile_pwrite(f, buf, sizeof buf, 64, &e) != (ssize_t)sizeof buf) _exit(1);
            }
            _exit(0);
        }
        int ws;
        if (waitpid(c, &ws, 0) != c || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0) return 1;
        double t0 = tcpu();
        long f0 = tflt();
        if (scp_volume_stat(v, "base/relation-00001", &st, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return 1; }
        total += tcpu() - t0;
        flt += tflt() - f0;
        recs += batch;
    }
    printf("famcatchup_cpu: family %s, %d entries, %ld records walked in %d catch-ups: %.3f us and "
           "%.3f minor faults per record\n",
           getenv("SCP_VOLUME_FAMILY") ? getenv("SCP_VOLUME_FAMILY") : "off", nfiles, recs, rounds,
           total * 1e6 / (double)recs, (double)flt / (double)recs);
    scp_volume_close(v, &e);
    return 0;
}
