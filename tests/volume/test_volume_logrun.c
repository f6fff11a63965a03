/* tests/volume/test_volume_logrun.c - a power cut that keeps a durable commit's type 3 run and
 * loses the new log in front of it, which was written over an old log of the same shape.
 *
 * The power cut that test_volume_powercut_tight 1 838386 shared found with session 20's
 * one-pwrite end mark (bench/RESULTS.md, "em21"), built here by hand so that it does not
 * depend on where a random cut falls. Shared mode; a file of 4 chunks is extended by 3 (its
 * first lazy commit starts log 1 at offset 0, its commit record ends at offset X), synced,
 * cut back to 4 chunks (a durable shrink; the next write starts a new log), extended by 3
 * again (log 2 is written over log 1 from offset 0: a header of another salt, then a commit
 * record of the same length, ending at the same X) and synced: the fsync's one-flush durable
 * commit writes its type 3 run at X and syncs the journal (the commit point). The image is the
 * disk after a power cut just before that sync that kept the run and lost every other unsynced
 * byte of the journal (log 2's header and commit record), and kept manifest.log's unsynced
 * lazy record of the second extension: then the journal's bytes up to X are log 1's, whose
 * first commit record checks out and ends exactly where the run begins.
 *
 * Asserted: the volume opens, verify finds nothing, and the file reads its last durable
 * state (4 chunks: the fsync had not returned). Before the fix the open took the run's
 * durable record from the journal (it sat behind a commit record that checks out, but one of
 * the old log), so the durable state named the second extension, whose commit record was
 * lost with log 2: "its chunk table does not match the manifest", a file lost.
 * Also a control: the same image with the run's bytes as written (nothing lost) opens at the
 * synced state (7 chunks).
 */
#include "testutil.h"

#define CS 4096u

static uint8_t *read_obj(const char *path, size_t *n) {
    uint8_t *b = tu_read_file(path, n);
    REQUIRE(b);
    return b;
}

/* Open image dir and check that "f" reads want[0, wn) and that verify finds nothing. */
static void check_image(const char *dir, const uint8_t *key, const uint8_t *want, size_t wn,
                        const char *what) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = scp_volume_open(dir, key, NULL, &e);
    CHECKF(v != NULL, "%s: open: %s", what, e.msg);
    if (!v) return;
    long probs = scp_volume_verify(v, NULL, NULL, NULL, &e);
    CHECKF(probs == 0, "%s: verify: %ld problems", what, probs);
    size_t n = 0;
    tu_err_clear(&e);
    uint8_t *b = tu_vget(v, "f", &n, &e);
    CHECKF(b != NULL, "%s: reading f: %s", what, e.msg);
    if (b) CHECKF(n == wn && memcmp(b, want, n) == 0, "%s: f reads %zu bytes, not its state of %zu",
                  what, n, wn);
    free(b);
    scp_volume_close(v, &e);
}

int main(void) {
    tu_rng rng = {0x10c2};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    scp_volume *v = tu_new_volume_chunk(&rng, "logrun", CS, key, &root, &vd);
    size_t full = 7 * CS;
    uint8_t *base = malloc(full), *ext1 = malloc(3 * CS), *ext2 = malloc(3 * CS);
    REQUIRE(base && ext1 && ext2);
    tu_fill(&rng, base, full);
    tu_fill(&rng, ext1, 3 * CS);
    tu_fill(&rng, ext2, 3 * CS);
    REQUIRE_OK(tu_vput(v, "f", base, 4 * CS, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    scp_volume_set_shared(v);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "f", O_RDWR, 0, &e), e);
    char *jpath = tu_only_object(vd, ".j"), *mlpath = tu_path(vd, "manifest.log");

    /* extended by 3 chunks, synced, cut back (a durable shrink: the next write starts a new
     * log), twice: the second time log 1 starts at offset 0 with that extension's commit */
    for (int i = 0; i < 2; i++) {
        REQUIRE(scp_vfile_pwrite(f, ext1, 3 * CS, 4 * CS, &e) == (ssize_t)(3 * CS));
        REQUIRE_OK(scp_vfile_fsync(f, &e), e);
        REQUIRE_OK(scp_vfile_truncate(f, 4 * CS, &e), e);
    }
    size_t n_old, n_j2, n_j3, n_ml;
    uint8_t *old = read_obj(jpath, &n_old); /* log 1 as the shrink's sync left it */

    /* log 2 over it: the same first commit, then the fsync's run */
    REQUIRE(scp_vfile_pwrite(f, ext2, 3 * CS, 4 * CS, &e) == (ssize_t)(3 * CS));
    uint8_t *j2 = read_obj(jpath, &n_j2), *ml = read_obj(mlpath, &n_ml);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    uint8_t *j3 = read_obj(jpath, &n_j3);
    char *img = tu_path(root, "img"), *img_ok = tu_path(root, "img_ok");
    REQUIRE(tu_copy_tree(vd, img) == 0);
    REQUIRE(tu_copy_tree(vd, img_ok) == 0);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);

    /* The set-up is what the test is about: log 2 begins at 0 with another header, and its
     * first commit ends where log 1's did (the run, the first bytes the fsync changed). */
    REQUIRE(n_old >= 40 && n_j2 >= 40 && n_j3 >= n_j2);
    CHECKF(memcmp(old, j2, 40) != 0, "set-up: the second extension did not start a new log");
    size_t x = 40;
    while (x < n_j2 && j2[x] == j3[x]) x++;
    /* (the first byte the fsync changed is the run's type, 3, in its first header's first
     * word: the end mark's zeros were there) */
    CHECKF(x >= 43 && x < n_j3 && j3[x] == 3, "set-up: the fsync wrote no run behind the commit");
    x -= 3;
    CHECKF(x < n_j2 && x < n_old, "set-up: no run found (x %zu)", x);
    CHECKF(memcmp(old + 40, j2 + 40, x - 40) != 0, "set-up: log 2's first commit is log 1's");
    if (tu_failures) return tu_exit_code("test_volume_logrun");

    /* The power cut: log 2's header and first commit lost (log 1's bytes there), the run
     * kept; manifest.log as before the fsync (its lazy record of the second extension kept). */
    char *ij = tu_path(img, jpath + strlen(vd) + 1), *iml = tu_path(img, "manifest.log");
    uint8_t *cut = malloc(n_j3);
    REQUIRE(cut);
    memcpy(cut, j3, n_j3);
    memcpy(cut, old, x);
    REQUIRE(tu_write_file(ij, cut, n_j3, 0600) == 0);
    REQUIRE(tu_write_file(iml, ml, n_ml, 0600) == 0);
    check_image(img, key, base, 4 * CS, "run kept, log 2 lost");

    /* Control: everything landed; the fsync returned, the state is the second extension. */
    memcpy(base + 4 * CS, ext2, 3 * CS);
    check_image(img_ok, key, base, full, "nothing lost");

    tu_rm_rf(root);
    free(ij);
    free(iml);
    free(cut);
    free(img);
    free(img_ok);
    free(old);
    free(j2);
    free(j3);
    free(ml);
    free(jpath);
    free(mlpath);
    free(base);
    free(ext1);
    free(ext2);
    free(root);
    free(vd);
    return tu_exit_code("test_volume_logrun");
}
