/* tests/volume/test_volume_vstats.c - the library's shared-mode counters (SCP_VOLUME_STATS,
 * src/volume/vstats.h), a measurement aid that bench/volume/pgbench.sh reads.
 *
 * Asserts, from the line the library writes:
 * 1. a fork family counts together: a process opens a volume in shared mode, forks a child
 *    that writes N times and leaves with _exit (no destructor runs: PostgreSQL's backends'
 *    counts were lost that way), then writes N times itself and exits; exactly one line is
 *    written, by that process, and it counts both processes' writes (pwrite_calls 2N + 1,
 *    lazy commits, volume locks, the other process's manifest-log records caught up on, a
 *    follow of its journal records) and their CPU time (pwrite_ns);
 * 2. off without the variable: the same run appends nothing (to the file of the first run).
 * 3. the plaintext cache stops filling entries for a file whose cached chunks are not read
 *    again (src/volume/cache.c, pc_useful): a process in shared mode writes W whole chunks of
 *    one file twice and never reads them (PostgreSQL's relation files and WAL), and writes R
 *    chunks of another twice and reads them again and again; the first file's fills stop
 *    after the judgement (pc_skip counts the refused ones), the second's reads still hit.
 * Each run is a fresh exec of this binary (the library reads the variable as it loads).
 */
#include <sys/wait.h>

#include "testutil.h"

#define N 20
#define CS 4096u

/* A new volume in DIR, opened in shared mode (each worker's start); *vd is its path. */
static scp_volume *new_shared(const char *dir, char **vd) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    memset(key, 7, sizeof key);
    *vd = tu_path(dir, "vol");
    scp_err e;
    tu_err_clear(&e);
    REQUIRE_OK(scp_volume_create(*vd, key, CS, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(*vd, key, NULL, &e), e);
    scp_volume_set_shared(v);
    return v;
}

static void worker(const char *dir) {
    char *vd;
    scp_volume *v = new_shared(dir, &vd);
    scp_err e;
    tu_err_clear(&e);
    uint8_t buf[CS];
    memset(buf, 1, sizeof buf);
    REQUIRE_OK(tu_vput(v, "/f", buf, sizeof buf, &e), e);
    pid_t c = fork();
    REQUIRE(c >= 0);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "/f", O_RDWR, 0, &e), e);
    for (int i = 0; i < N; i++) {
        buf[0] = (uint8_t)(c == 0 ? i : 100 + i);
        REQUIRE(scp_vfile_pwrite(f, buf, 64, (uint64_t)(c == 0 ? 0 : 64), &e) == 64);
    }
    if (c == 0) _exit(tu_failures ? 1 : 0);
    int st;
    REQUIRE(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    buf[0] = 0;
    REQUIRE(scp_vfile_pwrite(f, buf, 64, 128, &e) == 64); /* (after the child's: a catch-up) */
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    free(vd);
    exit(tu_failures ? 1 : 0);
}

#define W 2048 /* chunks written and never read */
#define R 64   /* chunks written, then read RP times each */
#define RP 20

static void cache_worker(const char *dir) {
    char *vd;
    scp_volume *v = new_shared(dir, &vd);
    scp_err e;
    tu_err_clear(&e);
    uint8_t buf[CS];
    memset(buf, 3, sizeof buf);
    scp_vfile *w = REQUIRE_PTR(scp_vfile_open(v, "/w", O_RDWR | O_CREAT, 0600, &e), e);
    /* (the second pass overwrites: a fresh chunk goes in place uncached, do_pwrite; an
     * overwrite of a lazy commit's chunk goes to the journal through the write-back, which
     * caches it) */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < W; i++) {
            buf[0] = (uint8_t)(i + pass);
            REQUIRE(scp_vfile_pwrite(w, buf, CS, (uint64_t)i * CS, &e) == (ssize_t)CS);
        }
    scp_vfile *r = REQUIRE_PTR(scp_vfile_open(v, "/r", O_RDWR | O_CREAT, 0600, &e), e);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < R; i++) {
            buf[0] = (uint8_t)i;
            REQUIRE(scp_vfile_pwrite(r, buf, CS, (uint64_t)i * CS, &e) == (ssize_t)CS);
        }
    for (int p = 0; p < RP; p++)
        for (int i = 0; i < R; i++) {
            REQUIRE(scp_vfile_pread(r, buf, CS, (uint64_t)i * CS, &e) == (ssize_t)CS);
            CHECK(buf[0] == (uint8_t)i && buf[1] == 3);
        }
    REQUIRE_OK(scp_vfile_close(w, &e), e);
    REQUIRE_OK(scp_vfile_close(r, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    free(vd);
    exit(tu_failures ? 1 : 0);
}

/* Run this binary as a worker on dir, with SCP_VOLUME_STATS=stats (NULL: unset). Its pid. */
static pid_t run_worker(char *self, const char *mode, const char *dir, const char *stats) {
    pid_t p = fork();
    REQUIRE(p >= 0);
    if (p == 0) {
        if (stats) setenv("SCP_VOLUME_STATS", stats, 1);
        else unsetenv("SCP_VOLUME_STATS");
        char *argv[] = {self, (char *)mode, (char *)dir, NULL};
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    int st;
    REQUIRE(waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return p;
}

/* The value of " name=" in line, or 0 if absent. */
static unsigned long long field(const char *line, const char *name) {
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", name);
    const char *p = strstr(line, pat);
    return p ? strtoull(p + strlen(pat), NULL, 10) : 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "worker") == 0) worker(argv[2]);
    if (argc == 3 && strcmp(argv[1], "cache") == 0) cache_worker(argv[2]);
    char *root = tu_tmpdir("vstats");
    char *d1 = tu_path(root, "on"), *d2 = tu_path(root, "off");
    char *stats = tu_path(root, "stats");
    REQUIRE(mkdir(d1, 0700) == 0 && mkdir(d2, 0700) == 0);

    tu_context = "family";
    pid_t w = run_worker(argv[0], "worker", d1, stats);
    size_t len = 0;
    char *txt = (char *)tu_read_file(stats, &len);
    REQUIRE(txt != NULL);
    if (txt) {
        txt = realloc(txt, len + 1);
        txt[len] = 0;
        char head[64];
        snprintf(head, sizeof head, "vstats pid=%ld ", (long)w);
        CHECK(strncmp(txt, head, strlen(head)) == 0);
        CHECK(strchr(txt, '\n') == txt + len - 1); /* one line */
        CHECK(field(txt, "pwrite_calls") == 2 * N + 2); /* (tu_vput's, the child's, ours) */
        CHECK(field(txt, "commit_lazy") >= 2 * N);
        CHECK(field(txt, "vol_lock") >= 2 * N);
        CHECK(field(txt, "mlog_rec_open") >= 1); /* the other process's records */
        CHECK(field(txt, "follow") >= 1);        /* and its journal's */
        CHECK(field(txt, "pwrite_ns") > 0);
        if (tu_failures) fprintf(stderr, "the line: %s", txt);
        free(txt);
    }

    tu_context = "off";
    run_worker(argv[0], "worker", d2, NULL);
    struct stat sb;
    CHECK(stat(stats, &sb) == 0 && (size_t)sb.st_size == len); /* (nothing appended to the other) */

    tu_context = "cache";
    char *d3 = tu_path(root, "cache"), *stats3 = tu_path(root, "stats-cache");
    REQUIRE(mkdir(d3, 0700) == 0);
    run_worker(argv[0], "cache", d3, stats3);
    txt = (char *)tu_read_file(stats3, &len);
    REQUIRE(txt != NULL);
    if (txt) {
        txt = realloc(txt, len + 1);
        txt[len] = 0;
        /* /w: 512 fills judged (no hit), then one take in 64: about 536, and /r's 64 */
        CHECK(field(txt, "pc_skip") >= W - 600);
        CHECK(field(txt, "pc_fill") <= 700);
        CHECK(field(txt, "pc_hit") >= (unsigned long long)RP * R); /* /r's reads, all cached */
        if (tu_failures) fprintf(stderr, "the line: %s", txt);
        free(txt);
    }
    free(d3);
    free(stats3);

    tu_rm_rf(root);
    free(root);
    free(d1);
    free(d2);
    free(stats);
    return tu_exit_code("test_volume_vstats");
}
