/* tests/volume/test_volume_reload_pages.c - a process whose loaded journal log another process
 * dropped reloads the file's table from .t (file_load_follow) and keeps the hashes of the
 * table's pages that read as they were (table_reload). Asserted, in shared mode, on a 4 MiB
 * file (1,024 chunks: four pages of 256 table entries):
 * 1. S loads the file; P overwrites chunks of the first page only, past the checkpoint
 *    threshold, and fsyncs (the checkpoint drops the log S loaded), writes on and fsyncs
 *    again (a new log over the old one's bytes). S reads the whole file: P's bytes (the three
 *    kept pages and the rehashed one make the manifest's root).
 * 2. The same, and then one entry of the third page (unchanged in S's memory) is changed in
 *    .t on disk before S reads: S's reload must find the root wrong ("does not match the
 *    manifest") and read nothing of it, never keep the page's old hash for what .t now holds.
 */
#include <sys/wait.h>

#include "scenario.h"

#define CS 4096u
#define NCH 1024u
#define FSIZE (NCH * CS)
#define PAGE 256u /* (SCP_TABLE_PAGE) */
#define ENT 44u   /* (SCP_CHUNK_ENTRY_LEN) */

static uint8_t want[FSIZE], all[FSIZE];

/* Overwrite n chunks of the first table page of f (and of want), one 4 KiB write each. */
static void overwrite_first_page(scp_vfile *f, tu_rng *rng, int n) {
    scp_err e;
    tu_err_clear(&e);
    for (int i = 0; i < n; i++) {
        uint64_t c = tu_below(rng, PAGE);
        tu_fill(rng, want + c * CS, CS);
        REQUIRE(scp_vfile_pwrite(f, want + c * CS, CS, c * CS, &e) == (ssize_t)CS);
    }
}

/* The reader S: loads the file, says so, waits for the parent's go and the bytes it wrote,
 * then reads the file whole. 0: P's bytes; 7: wrong bytes; 9: the read failed as tampered;
 * others: setup failures. */
static int reader(const char *vd, const uint8_t key[SCP_VOLUME_KEY_LEN], int go, int done) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *w = scp_volume_open(vd, key, NULL, &e);
    if (!w) return 2;
    scp_volume_set_shared(w);
    scp_vfile *g = scp_vfile_open(w, "wal", O_RDONLY, 0, &e);
    uint8_t b[64];
    if (!g || scp_vfile_pread(g, b, sizeof b, 0, &e) != (ssize_t)sizeof b) return 3;
    if (write(done, "l", 1) != 1) return 4;
    for (size_t got = 0; got < FSIZE;) {
        ssize_t k = read(go, want + got, FSIZE - got);
        if (k <= 0) return 5;
        got += (size_t)k;
    }
    ssize_t r = scp_vfile_pread(g, all, FSIZE, 0, &e);
    int rc = r == (ssize_t)FSIZE ? (memcmp(all, want, FSIZE) == 0 ? 0 : 7)
                                 : (e.code == SCP_E_INTEGRITY && strstr(e.msg, "does not match") ? 9 : 6);
    scp_vfile_close(g, &e);
    scp_volume_close(w, &e);
    return rc;
}

/* One round: returns the reader's result (see reader; 128: the child failed). */
static int round_with(scp_vfile *f, tu_rng *rng, const char *vd, const uint8_t key[SCP_VOLUME_KEY_LEN],
                      int tamper) {
    scp_err e;
    tu_err_clear(&e);
    int go[2], done[2];
    REQUIRE(pipe(go) == 0 && pipe(done) == 0);
    tu_child c;
    if (tu_child_start(&c)) {
        close(go[1]);
        close(done[0]);
        int st = reader(vd, key, go[0], done[1]);
        tu_child_exit(&c, &st, sizeof st);
    }
    close(go[0]);
    close(done[1]);
    char x;
    REQUIRE(read(done[0], &x, 1) == 1);
    overwrite_first_page(f, rng, 300); /* (1.2 MiB of log: a checkpoint at the fsync) */
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    overwrite_first_page(f, rng, 20);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    if (tamper) { /* entry 2 * PAGE + 88 of .t: a GCM tag's last byte */
        char *t = tu_only_object(vd, ".t");
        REQUIRE(t != NULL);
        int fd = open(t, O_RDWR);
        REQUIRE(fd >= 0);
        uint8_t byte;
        off_t at = (off_t)(2 * PAGE + 88) * ENT + ENT - 1;
        REQUIRE(pread(fd, &byte, 1, at) == 1);
        byte ^= 0x40;
        REQUIRE(pwrite(fd, &byte, 1, at) == 1);
        close(fd);
        free(t);
    }
    for (size_t put = 0; put < FSIZE;) {
        ssize_t k = write(go[1], want + put, FSIZE - put);
        REQUIRE(k > 0);
        put += (size_t)k;
    }
    close(go[1]);
    close(done[0]);
    int st = 128;
    return tu_child_wait(&c, &st, sizeof st) ? st : 128;
}

int main(void) {
    tu_rng rng = {.s = 0x7a};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = tu_new_volume_chunk(&rng, "reloadpages", CS, key, &root, &vd);
    scp_volume_set_shared(v);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDWR | O_CREAT, 0600, &e), e);
    tu_fill(&rng, want, FSIZE);
    REQUIRE(scp_vfile_pwrite(f, want, FSIZE, 0, &e) == (ssize_t)FSIZE);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    int st = round_with(f, &rng, vd, key, 0);
    CHECKF(st == 0, "reload_pages: the reader of a dropped log: status %d (7: wrong bytes, 9: tampering reported)", st);
    st = round_with(f, &rng, vd, key, 1);
    CHECKF(st == 9, "reload_pages: .t changed in a page the reader kept: status %d (want 9: tampering reported; "
                    "0 or 7: the change was not seen)", st);
    CHECK_OK(scp_vfile_close(f, &e), e);
    scp_volume_close(v, &e);
    tu_rm_rf(root);
    free(root);
    free(vd);
    return tu_exit_code("volume_reload_pages");
}
