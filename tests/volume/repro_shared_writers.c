/* tests/volume/repro_shared_writers.c - shared mode (scp_volume_set_shared) with N processes
 * (default 4) that each append and overwrite 8 KiB pages of the same two files, read pages
 * back, and now and then fsync and rewrite one of 100 small files, as PostgreSQL's backends
 * do. Every page is stamped with its index, so a read must return its stamp or zeros; after
 * all processes closed, scp_volume_verify must find nothing. Registered with ctest as
 * volume_shared_writers (also built with 64 KiB journal logs: repro_shared_writers_tight).
 *
 *   repro_shared_writers DIR [NPROC] [RUNS] [ITERS]   (each run in a new volume under DIR)
 *
 * The bug it found (docs/volume-format.md, "Shared mode"): a process that had followed a
 * journal log just before its writer dropped it (checkpoint) kept offsets into it, then
 * appended there and applied what now sat at those offsets to .d as the writer: reads failed
 * with "chunk at offset X fails authentication" and verify reported hundreds of chunks whose
 * table entry names data not in the data object (pgbench: "could not read block N of
 * base/5/16396"). Before the fix: 3 of 10 runs with 2 processes, 6 of 10 with 4, and every run
 * of the 64 KiB-log build failed (2026-11-29, 2 cores, load 2-4); after it: 0 of 10 runs in
 * each of the four (2 and 4 processes, both builds, 3000 operations per process). */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "scp/volume.h"
#include "testutil.h"
#define PG 8192
static uint8_t key[32];
static int bad;
static int iters = 3000; /* operations per process and run */
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
    for (int it = 0; it < iters; it++) {
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
/* One run in a new volume at dir: 1 if it failed. */
static int run_once(const char *dir, int np) {
    scp_err e;
    if (scp_volume_create(dir, key, 4096, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return 1; }
    scp_volume *v = scp_volume_open(dir, key, NULL, &e);
    if (!v) { fprintf(stderr, "open: %s\n", e.msg); return 1; }
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
    printf("%s: workers failed: %d, verify problems: %ld\n", dir, fails, probs);
    fflush(stdout);
    scp_volume_close(v, &e);
    return fails || probs;
}
int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s DIR [NPROC] [RUNS] [ITERS]\n", argv[0]); return 2; }
    const char *dir = argv[1];
    int np = argc > 2 ? atoi(argv[2]) : 4, runs = argc > 3 ? atoi(argv[3]) : 1;
    if (argc > 4) iters = atoi(argv[4]);
    if (np < 1 || np > 16 || runs < 1 || iters < 1) { fprintf(stderr, "NPROC 1-16, RUNS and ITERS >= 1\n"); return 2; }
    memset(key, 3, sizeof key);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) { perror(dir); return 1; }
    int failed = 0;
    for (int r = 0; r < runs; r++) {
        char d[4096];
        snprintf(d, sizeof d, "%s/run-%d-%d", dir, np, r);
        tu_rm_rf(d);
        int bad_run = run_once(d, np);
        failed += bad_run;
        if (!bad_run) tu_rm_rf(d); /* a failed run's volume stays for inspection */
    }
    printf("%d processes: %d of %d runs failed\n", np, failed, runs);
    return failed != 0;
}
