/* bench/volume/sharedwrite_cpu.c - CPU per shared-mode 4 KiB write of one file in a volume
 * of N entries: the writer's side of a publication (journal record, commit record,
 * manifest-log record), in one process, with an fsync every 16 writes. Load-independent
 * (the process's own CPU time); branch lazy15 measured the manifest-log delta with it.
 *
 *   build/bench/volume/sharedwrite_cpu /dev/shm/VOLDIR ENTRIES WRITES   (VOLDIR must not exist)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
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

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: sharedwrite_cpu NEW_DIR ENTRIES WRITES\n");
        return 2;
    }
    const char *vd = argv[1];
    int nfiles = atoi(argv[2]), nw = atoi(argv[3]);
    uint8_t key[SCP_VOLUME_KEY_LEN];
    for (size_t i = 0; i < sizeof key; i++) key[i] = (uint8_t)(i * 7 + 1);
    scp_err e;
    if (scp_volume_create(vd, key, 4096, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return 1; }
    scp_volume *v = scp_volume_open(vd, key, NULL, &e);
    scp_volume_mkdir(v, "base", 0700, &e);
    for (int i = 0; i < nfiles; i++) {
        char p[64];
        snprintf(p, sizeof p, "base/relation-%05d", i);
        scp_vfile *f = scp_vfile_open(v, p, O_RDWR | O_CREAT, 0600, &e);
        scp_vfile_pwrite(f, p, strlen(p), 0, &e);
        scp_vfile_close(f, &e);
    }
    scp_volume_close(v, &e);
    v = scp_volume_open(vd, key, NULL, &e);
    scp_volume_set_shared(v);
    char fp[64];
    snprintf(fp, sizeof fp, "base/relation-%05d", nfiles / 2);
    scp_vfile *f = scp_vfile_open(v, fp, O_RDWR, 0, &e);
    static uint8_t buf[4096];
    uint32_t x = 12345;
    double c0 = cpu(), u0 = ucpu();
    for (int k = 0; k < nw; k++) {
        x = x * 1103515245u + 12345u;
        memset(buf, (int)(x >> 24), sizeof buf);
        if (scp_vfile_pwrite(f, buf, sizeof buf, (uint64_t)((x >> 8) % 256) * 4096, &e) != 4096) {
            fprintf(stderr, "write: %s\n", e.msg);
            return 1;
        }
        if (k % 16 == 15 && scp_vfile_fsync(f, &e) < 0) { fprintf(stderr, "fsync: %s\n", e.msg); return 1; }
    }
    double c1 = cpu(), u1 = ucpu();
    printf("%d entries, %d writes (an fsync every 16): CPU %.1f us per write (user %.1f)\n", nfiles + 1, nw,
           (c1 - c0) * 1e6 / nw, (u1 - u0) * 1e6 / nw);
    scp_vfile_close(f, &e);
    scp_volume_close(v, &e);
    return 0;
}
