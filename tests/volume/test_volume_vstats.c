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
 * 4. an open reads one manifest slot, not two (manifest.c, mlog_load): a volume whose log
 *    continues the newer of two authentic durable slots (a fold at a close) opens with
 *    slot_open 1; with the older slot's header claiming a generation past the log's end, the
 *    open authenticates that slot too (2), finds it forged, and still reads the file as the
 *    log's end has it.
 * 5. an open collects removed files' objects only when it can find some to remove (manifest.c,
 *    vol_collect_garbage, the collection's mark): while this process holds the volume, another
 *    renames a new file over one that the base slot names (as git writes its index); the
 *    first open after reads the objects directory
 *    (gc_scan 1) and leaves the old file's objects, the next skips it (gc_skip 1, gc_scan 0);
 *    after a fold (a long log folded at a close) the next open reads it, and they are gone.
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

static const uint8_t load_key[SCP_VOLUME_KEY_LEN] = {9, 9, 9};

/* Open the volume dir/vol and check /a: "v3" (the log's end: load_setup). */
static void load_worker(const char *dir) {
    char *vd = tu_path(dir, "vol");
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, load_key, NULL, &e), e);
    char buf[8] = {0};
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "/a", O_RDONLY, 0, &e), e);
    CHECK(scp_vfile_pread(f, buf, sizeof buf, 0, &e) == 2 && memcmp(buf, "v3", 2) == 0);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    free(vd);
    exit(tu_failures ? 1 : 0);
}

/* The collection's worker: open, read /b, exit. */
static void gc_worker(const char *dir) {
    char *vd = tu_path(dir, "vol");
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, load_key, NULL, &e), e);
    tu_check_content(v, "/b", "bb");
    /* (no close: a shielded program's image exits with the volume open; a close would fold
     * the log) */
    free(vd);
    exit(tu_failures ? 1 : 0);
}

/* A volume in dir/vol whose two durable slots both authenticate and whose log continues the
 * newer one with records past it: 600 chmods, folded at the close (a log of records longer
 * than 32 KiB and than the manifest: volume.c, the exit fold), then a rewrite of /a and a few
 * chmods that stay in the log. */
static void load_setup(const char *dir) {
    char *vd = tu_path(dir, "vol");
    scp_err e;
    tu_err_clear(&e);
    REQUIRE_OK(scp_volume_create(vd, load_key, CS, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, load_key, NULL, &e), e);
    REQUIRE_OK(tu_vput(v, "/a", "v1", 2, &e), e);
    for (int i = 0; i < 600; i++) REQUIRE_OK(scp_volume_setattr(v, "/a", 0600 | (i & 7), -1, -1, INT64_MIN, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, load_key, NULL, &e), e);
    REQUIRE_OK(tu_vput(v, "/a", "v3", 2, &e), e);
    for (int i = 0; i < 3; i++) REQUIRE_OK(scp_volume_setattr(v, "/a", 0640 + i, -1, -1, INT64_MIN, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    free(vd);
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

/* The whole of the file at path as a NUL-terminated string (*len its length), or NULL. */
static char *stats_text(const char *path, size_t *len) {
    char *txt = (char *)tu_read_file(path, len);
    char *t = txt ? realloc(txt, *len + 1) : NULL;
    if (!t) {
        free(txt);
        return NULL;
    }
    t[*len] = 0;
    return t;
}

/* Run the load worker on dir with its counters in stats; check that it read `want` manifest
 * slots. */
static void check_slot_reads(char *self, const char *dir, const char *stats, unsigned long long want) {
    run_worker(self, "load", dir, stats);
    size_t len = 0;
    char *txt = stats_text(stats, &len);
    REQUIRE(txt != NULL);
    if (txt) {
        CHECK(field(txt, "slot_open") == want);
        if (field(txt, "slot_open") != want) fprintf(stderr, "the line: %s", txt);
    }
    free(txt);
}

/* Run the gc worker on dir with SCP_VOLUME_STATS=stats; check its gc_scan and gc_skip. The
 * worker exits with the volume open, as a shielded image does: under ASan without the leak
 * check (its exit must still run, for the counters' line). */
static void check_gc(char *self, const char *dir, const char *stats, unsigned long long scans,
                     unsigned long long skips) {
    const char *was = getenv("ASAN_OPTIONS");
    char *keep = was ? strdup(was) : NULL, opts[512];
    snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", keep ? keep : "", keep ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    run_worker(self, "gc", dir, stats);
    if (keep) setenv("ASAN_OPTIONS", keep, 1);
    else unsetenv("ASAN_OPTIONS");
    free(keep);
    size_t len = 0;
    char *txt = stats_text(stats, &len);
    REQUIRE(txt != NULL);
    if (txt) {
        CHECK(field(txt, "gc_scan") == scans && field(txt, "gc_skip") == skips);
        if (tu_failures) fprintf(stderr, "the line: %s", txt);
    }
    free(txt);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "worker") == 0) worker(argv[2]);
    if (argc == 3 && strcmp(argv[1], "cache") == 0) cache_worker(argv[2]);
    if (argc == 3 && strcmp(argv[1], "load") == 0) load_worker(argv[2]);
    if (argc == 3 && strcmp(argv[1], "gc") == 0) gc_worker(argv[2]);
    char *root = tu_tmpdir("vstats");
    char *d1 = tu_path(root, "on"), *d2 = tu_path(root, "off");
    char *stats = tu_path(root, "stats");
    REQUIRE(mkdir(d1, 0700) == 0 && mkdir(d2, 0700) == 0);

    tu_context = "family";
    pid_t w = run_worker(argv[0], "worker", d1, stats);
    size_t len = 0;
    char *txt = stats_text(stats, &len);
    REQUIRE(txt != NULL);
    if (txt) {
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
    txt = stats_text(stats3, &len);
    REQUIRE(txt != NULL);
    if (txt) {
        /* /w: 512 fills judged (no hit), then one take in 64: about 536, and /r's 64 */
        CHECK(field(txt, "pc_skip") >= W - 600);
        CHECK(field(txt, "pc_fill") <= 700);
        CHECK(field(txt, "pc_hit") >= (unsigned long long)RP * R); /* /r's reads, all cached */
        if (tu_failures) fprintf(stderr, "the line: %s", txt);
        free(txt);
    }
    free(d3);
    free(stats3);

    tu_context = "load";
    char *d4 = tu_path(root, "load"), *stats4 = tu_path(root, "stats-load");
    char *stats5 = tu_path(root, "stats-load-forged");
    REQUIRE(mkdir(d4, 0700) == 0);
    load_setup(d4);
    check_slot_reads(argv[0], d4, stats4, 1);
    /* the header of the slot the log does not continue, the older one, claims a generation
     * past the log's end */
    char *slot = NULL;
    uint64_t low = UINT64_MAX;
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof name, "vol/manifest.%d", i);
        char *p = tu_path(d4, name);
        uint8_t *b = tu_read_file(p, &len);
        REQUIRE(b != NULL && len > 48); /* (both written: the creation's and the fold's) */
        uint64_t g = 0;
        for (int k = 8; k < 16; k++) g = g << 8 | b[k]; /* (big-endian: format.c) */
        if (g < low) {
            low = g;
            free(slot);
            slot = p;
        } else {
            free(p);
        }
        free(b);
    }
    uint8_t *sb0 = tu_read_file(slot, &len);
    REQUIRE(sb0 != NULL && len > 16);
    memset(sb0 + 8, 0x7f, 8);
    REQUIRE(tu_write_file(slot, sb0, len, 0600) == 0);
    free(sb0);
    check_slot_reads(argv[0], d4, stats5, 2);
    free(slot);
    free(d4);
    free(stats4);
    free(stats5);

    tu_context = "collection";
    char *d6 = tu_path(root, "gc"), *vd6 = tu_path(d6, "vol"), stats6[3][64];
    for (int i = 0; i < 3; i++) snprintf(stats6[i], sizeof stats6[i], "%s/stats-gc%d", root, i);
    REQUIRE(mkdir(d6, 0700) == 0);
    scp_err e;
    tu_err_clear(&e);
    REQUIRE_OK(scp_volume_create(vd6, load_key, CS, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd6, load_key, NULL, &e), e);
    REQUIRE_OK(tu_vput(v, "/a", "aa", 2, &e), e);
    REQUIRE_OK(tu_vput(v, "/b", "bb", 2, &e), e);
    /* (names enough that the records below are short beside the manifest: an opener folds a
     * log only past twice the manifest's size, volume.c) */
    for (int i = 0; i < 40; i++) {
        char name[64];
        snprintf(name, sizeof name, "/some-file-with-a-longer-name-%03d", i);
        REQUIRE_OK(tu_vput(v, name, "x", 1, &e), e);
    }
    for (int i = 0; i < 600; i++) REQUIRE_OK(scp_volume_setattr(v, "/b", 0600 | (i & 7), -1, -1, INT64_MIN, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e); /* (folded: the base slot names /a) */
    int before = tu_objects(vd6, ".d", NULL);
    /* held open here while the workers run: /a's removal, by one of them, stays in the log
     * (git's commands beside the shell whose working directory is in the volume) */
    v = REQUIRE_PTR(scp_volume_open(vd6, load_key, NULL, &e), e);
    scp_volume_set_shared(v); /* (as the shield's holder of a program's volume) */
    REQUIRE_OK(tu_vput(v, "/a.lock", "a2", 2, &e), e); /* (as git writes its index) */
    REQUIRE_OK(scp_volume_rename(v, "/a.lock", "/a", &e), e);
    check_gc(argv[0], d6, stats6[0], 1, 0);
    check_gc(argv[0], d6, stats6[1], 0, 1);
    CHECK(tu_objects(vd6, ".d", NULL) == before + 1); /* (the old /a: the base names it) */
    /* a log long enough to be folded at the close (as load_setup's) */
    for (int i = 0; i < 600; i++) REQUIRE_OK(scp_volume_setattr(v, "/b", 0600 | (i & 7), -1, -1, INT64_MIN, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    check_gc(argv[0], d6, stats6[2], 1, 0);
    CHECKF(tu_objects(vd6, ".d", NULL) == before, "%d data objects, %d before", tu_objects(vd6, ".d", NULL), before);
    free(d6);
    free(vd6);

    tu_rm_rf(root);
    free(root);
    free(d1);
    free(d2);
    free(stats);
    return tu_exit_code("test_volume_vstats");
}
