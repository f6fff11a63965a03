/* test_volume_exitfold - scp_volume_fold_at_exit (docs/volume-format.md, "Folding"): a
 * process that ends without scp_volume_close (the shield's exit) folds the manifest log into a
 * slot when it is the volume's sole holder and the log is long; the state and its tag stay.
 * Each case is a child that commits a file COMMITS times (one record each), calls it and
 * _exits without closing, as the shield's exit does:
 *   long     private, >= 32 KiB of records: 1, the log a bare header, the tag of the last
 *            commit unchanged; an open with that tag as expected finds every write
 *   short    private, 20 records: 0, the records stay
 *   ordinary not private (another process has the volume open): 0 however long the log
 *   shared   private, then scp_volume_set_shared: 0
 */
#include <sys/stat.h>

#include "scenario.h"

#define CS 4096
static uint8_t key[SCP_VOLUME_KEY_LEN];

static long log_size(const char *vol) {
    char *p = tu_path(vol, "manifest.log");
    struct stat st;
    long n = stat(p, &st) == 0 ? (long)st.st_size : -1;
    free(p);
    return n;
}

enum mode { M_PRIVATE, M_ORDINARY, M_SHARED };
struct out {
    int fold;                 /* scp_volume_fold_at_exit's result */
    long before, after;       /* manifest.log's size around it */
    scp_volume_tag tag, tag2; /* the last commit's tag; the tag after the call */
};

/* The child: COMMITS commits of file "f" (its value i at offset 0), then the call. */
static void child_run(const char *vol, enum mode m, int commits, struct out *o) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vol, key, NULL, &e), e);
    if (m != M_ORDINARY) REQUIRE(scp_volume_go_private(v) == 1);
    if (m == M_SHARED) scp_volume_set_shared(v);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "f", O_RDWR | O_CREAT, 0600, &e), e);
    for (int i = 1; i <= commits; i++) {
        uint32_t x = (uint32_t)i;
        REQUIRE(scp_vfile_pwrite(f, &x, sizeof x, 0, &e) == (ssize_t)sizeof x);
        REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    }
    scp_volume_tag_get(v, &o->tag);
    o->before = log_size(vol);
    o->fold = scp_volume_fold_at_exit(v, &e);
    o->after = log_size(vol);
    scp_volume_tag_get(v, &o->tag2);
    /* (no close: the process ends as a shielded program does, its files still open) */
}

static struct out run_case(const char *vol, enum mode m, int commits) {
    struct out o;
    memset(&o, 0, sizeof o);
    tu_child c;
    if (tu_child_start(&c)) {
        child_run(vol, m, commits, &o);
        tu_child_exit(&c, &o, sizeof o);
    }
    REQUIRE(tu_child_wait(&c, &o, sizeof o));
    return o;
}

/* The file's value, read by a fresh open that expects the tag (an older state: ROLLBACK) */
static uint32_t value_after(const char *vol, const scp_volume_tag *expect) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vol, key, expect, &e), e);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "f", O_RDONLY, 0, &e), e);
    uint32_t x = 0;
    CHECK(scp_vfile_pread(f, &x, sizeof x, 0, &e) == (ssize_t)sizeof x);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    return x;
}

static void fresh(const char *vol) {
    scp_err e;
    tu_err_clear(&e);
    tu_rm_rf(vol);
    REQUIRE(scp_volume_create(vol, key, CS, &e) == 0);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    tu_rng rng = {0x5e126};
    tu_key(&rng, key);
    char *dir = tu_tmpdir("exitfold");
    char *vol = tu_path(dir, "vol");

    fresh(vol);
    struct out o = run_case(vol, M_PRIVATE, 400);
    CHECKF(o.before >= 48 + (long)SCP_VOLUME_EXIT_FOLD_MIN, "long: 400 commits left %ld bytes of log", o.before);
    CHECKF(o.fold == 1 && o.after == 48, "long: folded %d, the log %ld -> %ld bytes (want 1, a 48-byte header)",
           o.fold, o.before, o.after);
    CHECKF(memcmp(&o.tag, &o.tag2, sizeof o.tag) == 0, "long: the fold changed the tag");
    CHECKF(value_after(vol, &o.tag) == 400, "long: the last write is not what a fresh open reads");

    fresh(vol);
    o = run_case(vol, M_PRIVATE, 20);
    CHECKF(o.fold == 0 && o.after == o.before && o.before > 48,
           "short: folded %d, the log %ld -> %ld bytes (want 0 and its records kept)", o.fold, o.before, o.after);
    CHECKF(value_after(vol, &o.tag) == 20, "short: the last write is lost");

    fresh(vol);
    {
        /* another holder: the child stays in the ordinary mode */
        scp_err e;
        tu_err_clear(&e);
        scp_volume *other = REQUIRE_PTR(scp_volume_open(vol, key, NULL, &e), e);
        o = run_case(vol, M_ORDINARY, 400);
        CHECKF(o.fold == 0 && o.after == o.before && o.before >= 48 + (long)SCP_VOLUME_EXIT_FOLD_MIN,
               "ordinary: folded %d, the log %ld -> %ld bytes (want 0, the long log kept)", o.fold, o.before, o.after);
        CHECK_OK(scp_volume_close(other, &e), e);
    }

    fresh(vol);
    o = run_case(vol, M_SHARED, 400);
    CHECKF(o.fold == 0 && o.after == o.before && o.before >= 48 + (long)SCP_VOLUME_EXIT_FOLD_MIN,
           "shared: folded %d, the log %ld -> %ld bytes (want 0, the long log kept)", o.fold, o.before, o.after);
    CHECKF(value_after(vol, &o.tag) == 400, "shared: the last write is lost");

    tu_rm_rf(dir);
    free(vol);
    free(dir);
    return tu_exit_code("test_volume_exitfold");
}
