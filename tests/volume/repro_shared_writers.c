/* tests/volume/repro_shared_writers.c - a reproducer, NOT registered with ctest (it fails on
 * main at cdc430c as on this branch): shared mode (scp_volume_set_shared) with N processes
 * (default 4) that each append and overwrite 8 KiB pages of the same two files, read pages
 * back, and now and then fsync and rewrite one of 100 small files, as PostgreSQL's backends
 * do. Every page is stamped with its index, so a read must return its stamp or zeros.
 *
 *   repro_shared_writers DIR [N]     (DIR: a new directory, e.g. on /dev/shm)
 *
 * Observed (2026-11-29, 2 cores, loaded): with 2-4 processes most runs fail within seconds:
 * "chunk at offset X fails authentication" on reads, and `scp_volume_verify` after all
 * processes closed reports hundreds of chunks whose table entry names data that is not in
 * the data object; with 1 process it passes. The same failure as pgbench's "could not read
 * block N of base/5/16396" under load (bench/RESULTS.md, "the manifest log"). */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "scp/volume.h"
#define PG 8192
static uint8_t key[32];
static int bad;
static void stamp(uint8_t *b, uint64_t idx, uint32_t who, uint32_t ver) {
    for (size_t i = 0; i < PG; i += 16) { memcpy(b + i, &idx, 8); memcpy(b + i + 8, &who, 4); memcpy(b + i + 12, &ver, 4); }
}
/* A page reads as its stamp or as zeros (a page appended by another process and not yet
 * written there). */
static int check(const uint8_t *b, uint64_t idx) {
    uint64_t x; memcpy(&x, b, 8);
    if (x == 0) { for (size_t i = 0; i < PG; i++) if (b[i]) return 0; return 1; }
    if (x != idx) return 0;
    for (size_t i = 16; i < PG; i += 16) if (memcmp(b, b + i, 16)) return 0;
    return 1;
}
static void worker(scp_volume *v, int who) {
    scp_err e;
    srand(who * 7919 + 1);
    char p[64];
    scp_vfile *f[2];
    f[0] = scp_vfile_open(v, "big0", O_RDWR, 0, &e);
    f[1] = scp_vfile_open(v, "big1", O_RDWR, 0, &e);
    if (!f[0] || !f[1]) { fprintf(stderr, "open: %s\n", e.msg); exit(1); }
    uint8_t b[PG];
    for (int it = 0; it < 3000; it++) {
        int k = rand() % 2;
        uint64_t sz = scp_vfile_size(f[k]);
        uint64_t npg = sz / PG;
        int op = rand() % 10;
        if (op < 4 || npg == 0) { /* append */
            stamp(b, npg + 1, who, it);
            if (scp_vfile_pwrite(f[k], b, PG, npg * PG, &e) != PG) { fprintf(stderr, "%d append: %s\n", who, e.msg); bad = 1; break; }
        } else if (op < 7) { /* overwrite */
            uint64_t i = rand() % npg;
            stamp(b, i + 1, who, it);
            if (scp_vfile_pwrite(f[k], b, PG, i * PG, &e) != PG) { fprintf(stderr, "%d overwrite: %s\n", who, e.msg); bad = 1; break; }
        } else if (op < 9) { /* read */
            uint64_t i = rand() % npg;
            ssize_t r = scp_vfile_pread(f[k], b, PG, i * PG, &e);
            if (r != PG || !check(b, i + 1)) { fprintf(stderr, "%d read big%d page %llu: %zd %s\n", who, k, (unsigned long long)i, r, r < 0 ? e.msg : "bad stamp"); bad = 1; break; }
        } else {
            if (scp_vfile_fsync(f[k], &e) < 0) { fprintf(stderr, "%d fsync: %s\n", who, e.msg); bad = 1; break; }
            snprintf(p, sizeof p, "small%d", rand() % 100);
            scp_vfile *s = scp_vfile_open(v, p, O_RDWR | O_CREAT, 0644, &e);
            if (s) { scp_vfile_pwrite(s, p, strlen(p), 0, &e); scp_vfile_close(s, &e); }
        }
    }
    scp_vfile_close(f[0], &e);
    scp_vfile_close(f[1], &e);
    scp_volume_close(v, &e);
    exit(bad);
}
int main(int argc, char **argv) {
    const char *dir = argv[1];
    int np = argc > 2 ? atoi(argv[2]) : 4;
    memset(key, 3, sizeof key);
    scp_err e;
    if (scp_volume_create(dir, key, 4096, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return 1; }
    scp_volume *v = scp_volume_open(dir, key, NULL, &e);
    for (int k = 0; k < 2; k++) { scp_vfile *f = scp_vfile_open(v, k ? "big1" : "big0", O_RDWR | O_CREAT, 0644, &e); scp_vfile_close(f, &e); }
    scp_volume_set_shared(v);
    pid_t pids[16];
    for (int i = 0; i < np; i++) { pids[i] = fork(); if (pids[i] == 0) worker(v, i + 1); }
    int fails = 0;
    for (int i = 0; i < np; i++) { int st; waitpid(pids[i], &st, 0); if (!WIFEXITED(st) || WEXITSTATUS(st)) fails++; }
    scp_volume_close(v, &e);
    v = scp_volume_open(dir, key, NULL, &e);
    if (!v) { fprintf(stderr, "reopen: %s\n", e.msg); return 1; }
    long probs = scp_volume_verify(v, NULL, NULL, NULL, &e);
    printf("workers failed: %d, verify problems: %ld\n", fails, probs);
    scp_volume_close(v, &e);
    return fails || probs;
}
