/* tests/volume/test_volume_sync_checkpoint.c - shared mode checkpoints a long journal log at
 * an fsync (SCP_SHARED_CHECKPOINT_AT_SYNC, file_sync_shared), so that a process that loads the
 * file later reads and walks little of it.
 *
 * PostgreSQL forks a backend per connection, and each one takes the WAL and the tables it
 * touches anew: it read the whole log of each (up to SCP_JOURNAL_MAX, 8 MiB) before the fsync
 * checkpoint (bench/RESULTS.md, session 31). Asserted, in shared mode:
 * 1. P writes a 256 KiB file fresh and fsyncs it, then overwrites it with 4 KiB writes (each a
 *    lazy commit: its chunk record goes to the log) until ~3 MiB went to the log, with no
 *    fsync. A fresh process Q (its own open of the volume) then reads the file whole: right
 *    bytes, and more than 2 MiB read (the log: nothing checkpointed it; the threshold only
 *    acts at an fsync).
 * 2. P fsyncs. A fresh process R reads the file whole: right bytes, less than 1 MiB read.
 * 3. S opens the volume and reads the file (loaded from the new log); P writes on past the
 *    threshold and fsyncs twice (a checkpoint drops the log S loaded, and a new one is
 *    written over it); then S reads the file whole: P's bytes (it finds its log replaced and
 *    reloads). A fresh load reads them too, the volume verifies, and reopens with every byte.
 */
#include <sys/wait.h>

#include "scenario.h"

#define FSIZE (256u << 10)
#define CS 4096u

static uint8_t want[FSIZE];

/* Overwrite n chunks of f (and of want) from the rng, one 4 KiB write each. */
static void overwrite(scp_vfile *f, tu_rng *rng, int n) {
    scp_err e;
    tu_err_clear(&e);
    for (int i = 0; i < n; i++) {
        uint64_t c = tu_below(rng, FSIZE / CS);
        tu_fill(rng, want + c * CS, CS);
        REQUIRE(scp_vfile_pwrite(f, want + c * CS, CS, c * CS, &e) == (ssize_t)CS);
    }
}

/* A fresh open of the volume (another process's view): reads the file whole, returns the bytes
 * this took from the kernel, -1 if the content is wrong. */
static long long fresh_read(const char *vd, const uint8_t key[SCP_VOLUME_KEY_LEN]) {
    scp_err e;
    tu_err_clear(&e);
    long long r0 = tu_rchar();
    scp_volume *v = scp_volume_open(vd, key, NULL, &e);
    if (!v) return -1;
    scp_volume_set_shared(v);
    size_t n = 0;
    uint8_t *got = tu_vget(v, "wal", &n, &e);
    long long took = tu_rchar() - r0;
    int ok = got && n == FSIZE && memcmp(got, want, FSIZE) == 0;
    free(got);
    if (scp_volume_close(v, &e) < 0) ok = 0;
    return ok ? took : -1;
}

/* fresh_read in a child process (scenario.h); -2 if the child failed */
static long long fresh_read_child(const char *vd, const uint8_t key[SCP_VOLUME_KEY_LEN]) {
    tu_child c;
    if (tu_child_start(&c)) {
        long long took = fresh_read(vd, key);
        tu_child_exit(&c, &took, sizeof took);
    }
    long long took = -2;
    return tu_child_wait(&c, &took, sizeof took) ? took : -2;
}

int main(void) {
    tu_rng rng = {.s = 0x5c};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = tu_new_volume_chunk(&rng, "syncckpt", CS, key, &root, &vd);
    scp_volume_set_shared(v);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDWR | O_CREAT, 0600, &e), e);
    tu_fill(&rng, want, FSIZE);
    REQUIRE(scp_vfile_pwrite(f, want, FSIZE, 0, &e) == (ssize_t)FSIZE);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    overwrite(f, &rng, 768); /* (~3 MiB of chunk records) */
    long long q = fresh_read_child(vd, key);
    CHECKF(q > (2ll << 20), "sync_checkpoint: a load before the fsync read %lld bytes (want the log's ~3 MiB)", q);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    long long r = fresh_read_child(vd, key);
    CHECKF(r >= 0 && r < (1ll << 20), "sync_checkpoint: a load after the fsync read %lld bytes (want < 1 MiB)", r);
    printf("sync_checkpoint: a fresh load read %lld bytes before the fsync, %lld after\n", q, r);
    /* a process with the file loaded from the dropped log: it reloads */
    int go[2], done[2];
    REQUIRE(pipe(go) == 0 && pipe(done) == 0);
    pid_t c = fork();
    REQUIRE(c >= 0);
    if (c == 0) {
        close(go[1]);
        close(done[0]);
        scp_err ce;
        tu_err_clear(&ce);
        scp_volume *w = scp_volume_open(vd, key, NULL, &ce);
        if (!w) _exit(2);
        scp_volume_set_shared(w);
        scp_vfile *g = scp_vfile_open(w, "wal", O_RDONLY, 0, &ce);
        uint8_t b[64];
        if (!g || scp_vfile_pread(g, b, sizeof b, 0, &ce) != (ssize_t)sizeof b) _exit(3);
        if (write(done[1], "l", 1) != 1) _exit(4);
        for (size_t got = 0; got < FSIZE;) { /* (the parent's want after its writes) */
            ssize_t k = read(go[0], want + got, FSIZE - got);
            if (k <= 0) _exit(5);
            got += (size_t)k;
        }
        static uint8_t all[FSIZE];
        if (scp_vfile_pread(g, all, FSIZE, 0, &ce) != (ssize_t)FSIZE) _exit(6);
        if (memcmp(all, want, FSIZE) != 0) _exit(7);
        scp_vfile_close(g, &ce);
        _exit(scp_volume_close(w, &ce) < 0 ? 8 : 0);
    }
    close(go[0]);
    close(done[1]);
    char x;
    REQUIRE(read(done[0], &x, 1) == 1);
    overwrite(f, &rng, 300); /* (past the threshold again: another checkpoint at the fsync) */
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    overwrite(f, &rng, 20);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    for (size_t put = 0; put < FSIZE;) {
        ssize_t k = write(go[1], want + put, FSIZE - put);
        REQUIRE(k > 0);
        put += (size_t)k;
    }
    int st;
    REQUIRE(waitpid(c, &st, 0) == c);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0,
           "sync_checkpoint: the reader that had the dropped log loaded: status %d (7: wrong bytes)", st);
    CHECK(fresh_read_child(vd, key) >= 0);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK(scp_volume_verify(v, NULL, NULL, NULL, &e) == 0);
    CHECK_OK(scp_volume_close(v, &e), e);
    CHECK(fresh_read(vd, key) >= 0);
    tu_rm_rf(root);
    free(root);
    free(vd);
    return tu_exit_code("volume_sync_checkpoint");
}
