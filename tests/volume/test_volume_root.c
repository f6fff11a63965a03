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
    tu_rm_rf(root);
    free(dir);
    free(root);
    return tu_exit_code("test_volume_root");
}
