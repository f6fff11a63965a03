/* bench/volume/volcommit.c - the manifest's share of a commit, by volume size.
 *
 *   volcommit DIR [N]   (DIR: a new directory, on tmpfs so that flushes cost no waiting)
 *
 * Makes a volume of N + 1 entries (N files in one directory, default 1000), then measures the
 * process CPU time (getrusage: load-independent) of 400 commits of one small file (open,
 * write, fsync, close) and of 400 catch-ups of a second opener of the volume (a stat after each
 * commit: it takes in the other's commit). Format 2 resealed and rewrote the whole manifest at
 * each commit and every other process read every slot; format 3 appends a record of what
 * changed and the other opener reads only the new records (docs/volume-format.md). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "scp/volume.h"
static double cpu(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}
static void put(scp_volume *v, const char *p, const char *s) {
    scp_err e;
    scp_vfile *f = scp_vfile_open(v, p, O_RDWR | O_CREAT, 0644, &e);
    if (!f || scp_vfile_pwrite(f, s, strlen(s), 0, &e) < 0 || scp_vfile_fsync(f, &e) < 0 ||
        scp_vfile_close(f, &e) < 0) { fprintf(stderr, "%s\n", e.msg); exit(1); }
}
int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: volcommit DIR [N]\n");
        return 2;
    }
    const char *dir = argv[1];
    int n = argc > 2 ? atoi(argv[2]) : 1000, iters = 400;
    uint8_t key[32];
    memset(key, 7, sizeof key);
    scp_err e;
    if (scp_volume_create(dir, key, 4096, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return 1; }
    scp_volume *v = scp_volume_open(dir, key, NULL, &e);
    scp_volume_mkdir(v, "base", 0700, &e);
    char p[64];
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof p, "base/rel-%05d", i);
        put(v, p, "x");
    }
    scp_volume_close(v, &e);
    v = scp_volume_open(dir, key, NULL, &e);
    scp_volume *w = scp_volume_open(dir, key, NULL, &e);
    scp_vstat st;
    double c0 = cpu();
    for (int i = 0; i < iters; i++) put(v, "base/rel-00500", i % 2 ? "odd" : "even");
    double c1 = cpu();
    double cu = 0;
    for (int i = 0; i < iters; i++) {
        put(v, "base/rel-00500", i % 2 ? "odd" : "even");
        double a = cpu();
        scp_volume_stat(w, "base/rel-00500", &st, &e);
        cu += cpu() - a;
    }
    printf("%d entries: %.1f us CPU per commit (open+write+fsync+close of one file), %.1f us per catch-up of another opener\n",
           n + 1, (c1 - c0) / iters * 1e6, cu / iters * 1e6);
    scp_volume_close(w, &e);
    scp_volume_close(v, &e);
    return 0;
}
