/* bench/volume/seqwrite_cpu.c - CPU per MiB of 1 MiB sequential writes to a fresh file in a
 * volume, as fio's seq-write-fresh job makes them (issue 13's tmpfs line), in one process:
 * the volume library alone, without fio, the shield or scpctl. Load-independent figures: the
 * process's CPU time (all threads: the sealing pool's workers included) per MiB, and the
 * wall time. MODE: shared (fio's forked job writes in shared mode: a lazy commit per write),
 * private (the ordinary mode: one commit at the fsync).
 *
 *   build/bench/volume/seqwrite_cpu /dev/shm/VOLDIR MIB [shared|private] [plain]
 *   (VOLDIR must not exist; "plain" writes VOLDIR.plain with pwrite instead, for the baseline)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "scp/volume.h"

static double cpu(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}
static double ucpu(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6;
}
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: seqwrite_cpu NEW_DIR MIB [shared|private] [plain]\n");
        return 2;
    }
    const char *vd = argv[1];
    int mib = atoi(argv[2]);
    int shared = argc < 4 || strcmp(argv[3], "private") != 0;
    int plain = argc > 4 && strcmp(argv[4], "plain") == 0;
    static uint8_t buf[1 << 20];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 131 + 7);
    double c0, u0, t0, c1, u1, t1;
    if (plain) {
        char p[4096];
        snprintf(p, sizeof p, "%s.plain", vd);
        int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0) { perror(p); return 1; }
        c0 = cpu(), u0 = ucpu(), t0 = now();
        for (int k = 0; k < mib; k++)
            if (pwrite(fd, buf, sizeof buf, (off_t)k << 20) != (ssize_t)sizeof buf) { perror("pwrite"); return 1; }
        fsync(fd);
        close(fd);
        c1 = cpu(), u1 = ucpu(), t1 = now();
        unlink(p); /* (outside the figures: freeing the pages is the file's removal, not its write) */
    } else {
        uint8_t key[SCP_VOLUME_KEY_LEN];
        for (size_t i = 0; i < sizeof key; i++) key[i] = (uint8_t)(i * 7 + 1);
        scp_err e;
        if (scp_volume_create(vd, key, 4096, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return 1; }
        scp_volume *v = scp_volume_open(vd, key, NULL, &e);
        if (!v) { fprintf(stderr, "%s\n", e.msg); return 1; }
        if (shared) scp_volume_set_shared(v);
        scp_vfile *f = scp_vfile_open(v, "f", O_RDWR | O_CREAT, 0600, &e);
        if (!f) { fprintf(stderr, "%s\n", e.msg); return 1; }
        c0 = cpu(), u0 = ucpu(), t0 = now();
        for (int k = 0; k < mib; k++)
            if (scp_vfile_pwrite(f, buf, sizeof buf, (uint64_t)k << 20, &e) != (ssize_t)sizeof buf) {
                fprintf(stderr, "write: %s\n", e.msg);
                return 1;
            }
        if (scp_vfile_fsync(f, &e) < 0) { fprintf(stderr, "fsync: %s\n", e.msg); return 1; }
        scp_vfile_close(f, &e);
        scp_volume_close(v, &e);
        c1 = cpu(), u1 = ucpu(), t1 = now();
    }
    printf("%s %s %d MiB: CPU %.3f ms per MiB (user %.3f), %.0f MB/s\n", plain ? "plain" : "volume",
           shared ? "shared" : "private", mib, (c1 - c0) * 1e3 / mib, (u1 - u0) * 1e3 / mib,
           mib * 1.048576 / (t1 - t0));
    return 0;
}
