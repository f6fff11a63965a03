/* tests/volume/test_volume_root.c - the content root computed from midstates (chunk.c,
 * table_root) on a file long enough to have several of the root's midstates (one per 32 table
 * pages: 32 MiB of 4 KiB chunks).
 *
 * Asserts: commits that change chunks in pages before, inside and after the root's midstates
 * (the first page, the last, several at once, one of them twice, and a size change) each name the
 * root that a fresh load computes from the whole table: the volume reopens, every written chunk
 * reads back and the holes read as zeros. A midstate left standing after an earlier page's hash
 * changed makes a commit name a root that the table on disk does not have, and the reopen fails.
 */
#include "testutil.h"

#define CS 4096u
#define PAGE_BYTES (256ull * CS) /* one table page's worth of chunks */
#define NPAGES 100ull
#define FSIZE (NPAGES * PAGE_BYTES)

static const uint64_t pages[] = {90, 0, 70, 40, 99, 31, 32, 33, 64, 1, 0, 95};

static void put(scp_vfile *f, uint64_t page, uint64_t k, uint8_t tag) {
    uint8_t buf[CS];
    scp_err e;
    memset(buf, tag, CS);
    REQUIRE_OK(scp_vfile_pwrite(f, buf, CS, page * PAGE_BYTES + (k % 256) * CS, &e) == CS ? 0 : -1, e);
}

static void check(scp_volume *v, uint64_t size, const char *when) {
    scp_err e;
    scp_vfile *f = scp_vfile_open(v, "f", O_RDONLY, 0, &e);
    CHECKF(f != NULL, "%s: the file does not open (%s)", when, e.msg);
    if (!f) return;
    CHECKF(scp_vfile_size(f) == size, "%s: size %llu, not %llu", when,
           (unsigned long long)scp_vfile_size(f), (unsigned long long)size);
    uint8_t buf[CS];
    for (size_t i = 0; i < sizeof pages / sizeof *pages; i++) {
        uint64_t off = pages[i] * PAGE_BYTES + (i % 256) * CS;
        if (off >= size) continue;
        /* (the last write of the chunk: page 0 is written twice, at distinct chunks) */
        ssize_t r = scp_vfile_pread(f, buf, CS, off, &e);
        CHECKF(r == CS && buf[0] == (uint8_t)('a' + i) && buf[CS - 1] == (uint8_t)('a' + i),
               "%s: chunk of page %llu read %zd bytes, first %d (%s)", when,
               (unsigned long long)pages[i], r, r > 0 ? buf[0] : -1, r < 0 ? e.msg : "");
    }
    ssize_t r = scp_vfile_pread(f, buf, CS, 50 * PAGE_BYTES + 200 * CS, &e);
    CHECKF(r == CS && buf[0] == 0 && buf[CS - 1] == 0, "%s: a hole did not read as zeros", when);
    CHECK_OK(scp_vfile_close(f, &e), e);
}

/* Growth (table_mark_resize): appends that end inside a segment, at a segment's end, at a
 * page's end, from a page's start, by one byte, across several pages, an extension by
 * truncate (a hole) and a write below the old end after a growth; each committed, then the
 * volume reopened and the whole file read back against the model (a page hash left stale by
 * a growth makes the commit name a root the table does not have: the reopen fails). In the
 * ordinary mode and in shared mode (a commit per write). */
#define GMAX (3 * PAGE_BYTES + 5 * CS)
static void growth(const char *dir, const uint8_t *key, int shared, uint8_t *model) {
    static const struct { uint64_t off, len; } steps[] = {
        {0, 5 * CS + 100},               /* ends inside the first segment, in a chunk */
        {5 * CS + 100, 11 * CS - 100},   /* to the end of segment 0 */
        {16 * CS, 240 * CS},             /* to the end of page 0 */
        {256 * CS, 256 * CS},            /* page 1 whole, from its start */
        {512 * CS, 1},                   /* one byte into page 2 */
        {512 * CS + 1, 37 * CS},         /* inside page 2, across segments */
        {3 * 256 * CS, 2 * CS},          /* past the hole the truncate left, into page 3 */
        {600 * CS, CS},                  /* below the old end, in page 2 */
        {3 * 256 * CS + 2 * CS, 3 * CS}, /* an append at the end again */
    };
    scp_err e;
    uint64_t size = 0;
    memset(model, 0, GMAX);
    for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
        scp_volume *v = scp_volume_open(dir, key, NULL, &e);
        REQUIRE_OK(v ? 0 : -1, e);
        if (shared) scp_volume_set_shared(v);
        scp_vfile *f = scp_vfile_open(v, "g", O_RDWR | O_CREAT, 0600, &e);
        REQUIRE_OK(f ? 0 : -1, e);
        uint8_t *buf = malloc(steps[k].len);
        REQUIRE(buf != NULL);
        for (uint64_t i = 0; i < steps[k].len; i++) buf[i] = (uint8_t)(k * 37 + i % 251 + 1);
        REQUIRE_OK(scp_vfile_pwrite(f, buf, steps[k].len, steps[k].off, &e) == (ssize_t)steps[k].len ? 0 : -1, e);
        memcpy(model + steps[k].off, buf, steps[k].len);
        free(buf);
        if (steps[k].off + steps[k].len > size) size = steps[k].off + steps[k].len;
        if (k == 5) { /* (an extension by truncate before the next write: a hole) */
            REQUIRE_OK(scp_vfile_truncate(f, 700 * CS + 17, &e), e);
            size = 700 * CS + 17;
        }
        REQUIRE_OK(scp_vfile_fsync(f, &e), e);
        CHECK_OK(scp_vfile_close(f, &e), e);
        CHECK_OK(scp_volume_close(v, &e), e);
        v = scp_volume_open(dir, key, NULL, &e);
        CHECKF(v != NULL, "growth step %zu (%s): the volume does not reopen (%s)", k,
               shared ? "shared" : "ordinary", e.msg);
        if (!v) return;
        f = scp_vfile_open(v, "g", O_RDONLY, 0, &e);
        CHECKF(f != NULL, "growth step %zu (%s): the file does not open (%s)", k,
               shared ? "shared" : "ordinary", e.msg);
        if (f) {
            uint8_t *got = malloc(GMAX);
            REQUIRE(got != NULL);
            ssize_t r = scp_vfile_pread(f, got, GMAX, 0, &e);
            CHECKF(r == (ssize_t)size && memcmp(got, model, size) == 0,
                   "growth step %zu (%s): read %zd bytes of %llu, %s", k, shared ? "shared" : "ordinary",
                   r, (unsigned long long)size, r < 0 ? e.msg : "content differs");
            free(got);
            CHECK_OK(scp_vfile_close(f, &e), e);
        }
        CHECK_OK(scp_volume_close(v, &e), e);
        /* (the next step opens it again, so each step's growth starts from a loaded table) */
    }
    scp_volume *v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    REQUIRE_OK(scp_volume_unlink(v, "g", &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
}

/* The same growths in one open of the file, a commit after each: the table and its midstates
 * are the ones the earlier steps left (a stale page hash carries over to the next root). */
static void growth_one_open(const char *dir, const uint8_t *key, int shared, uint8_t *model) {
    scp_err e;
    scp_volume *v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    if (shared) scp_volume_set_shared(v);
    scp_vfile *f = scp_vfile_open(v, "h", O_RDWR | O_CREAT, 0600, &e);
    REQUIRE_OK(f ? 0 : -1, e);
    uint64_t size = 0;
    memset(model, 0, GMAX);
    static const uint64_t lens[] = {3 * CS + 5, 13 * CS - 5, 240 * CS, 256 * CS, 1, 37 * CS, 7 * CS};
    for (size_t k = 0; k < sizeof lens / sizeof *lens; k++) {
        uint8_t *buf = malloc(lens[k]);
        REQUIRE(buf != NULL);
        for (uint64_t i = 0; i < lens[k]; i++) buf[i] = (uint8_t)(k * 53 + i % 241 + 1);
        REQUIRE_OK(scp_vfile_pwrite(f, buf, lens[k], size, &e) == (ssize_t)lens[k] ? 0 : -1, e);
        memcpy(model + size, buf, lens[k]);
        free(buf);
        size += lens[k];
        if (!shared) REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    }
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    v = scp_volume_open(dir, key, NULL, &e);
    CHECKF(v != NULL, "growths in one open (%s): the volume does not reopen (%s)",
           shared ? "shared" : "ordinary", e.msg);
    if (!v) return;
    f = scp_vfile_open(v, "h", O_RDONLY, 0, &e);
    CHECKF(f != NULL, "growths in one open (%s): the file does not open (%s)",
           shared ? "shared" : "ordinary", e.msg);
    if (f) {
        uint8_t *got = malloc(GMAX);
        REQUIRE(got != NULL);
        ssize_t r = scp_vfile_pread(f, got, GMAX, 0, &e);
        CHECKF(r == (ssize_t)size && memcmp(got, model, size) == 0,
               "growths in one open (%s): read %zd bytes of %llu", shared ? "shared" : "ordinary", r,
               (unsigned long long)size);
        free(got);
        CHECK_OK(scp_vfile_close(f, &e), e);
    }
    REQUIRE_OK(scp_volume_unlink(v, "h", &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
}

int main(void) {
    tu_rng rng = {7};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *dir;
    scp_volume *v = tu_new_volume_chunk(&rng, "root", CS, key, &root, &dir);
    scp_err e;
    scp_vfile *f = scp_vfile_open(v, "f", O_RDWR | O_CREAT, 0600, &e);
    REQUIRE_OK(f ? 0 : -1, e);
    REQUIRE_OK(scp_vfile_truncate(f, FSIZE, &e), e);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    size_t n = sizeof pages / sizeof *pages;
    for (size_t i = 0; i < n; i++) {
        put(f, pages[i], i, (uint8_t)('a' + i));
        /* one commit per write, but pages 40 and 99, and 31, 32 and 33, go together */
        if (pages[i] != 40 && pages[i] != 31 && pages[i] != 32)
            REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    }
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    check(v, FSIZE, "after the commits, reopened");
    /* A size change (the prefix), then a write in an early page at the new size. */
    f = scp_vfile_open(v, "f", O_RDWR, 0, &e);
    REQUIRE_OK(f ? 0 : -1, e);
    REQUIRE_OK(scp_vfile_truncate(f, 96 * PAGE_BYTES, &e), e);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    put(f, 1, 9, 'a' + 9); /* (the same bytes again: a new nonce, so a new entry and page hash) */
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    check(v, 96 * PAGE_BYTES, "after a shrink and a write, reopened");
    CHECK_OK(scp_volume_close(v, &e), e);
    uint8_t *model = malloc(GMAX);
    REQUIRE(model != NULL);
    for (int shared = 0; shared < 2; shared++) {
        growth(dir, key, shared, model);
        growth_one_open(dir, key, shared, model);
    }
    free(model);
    tu_rm_rf(root);
    free(dir);
    free(root);
    return tu_exit_code("test_volume_root");
}
