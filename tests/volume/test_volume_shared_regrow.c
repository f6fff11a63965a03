/* test_volume_shared_regrow - two processes in shared mode take turns writing and truncating
 * one file (each op's result handed to the other through a pipe, which checks that it reads
 * exactly that first). The case found by test_volume_forkstress: a chunk journaled by one
 * process (an overwrite), the file shrunk below it, then grown past it by the other process
 * with a write beyond the end. The writer followed the log only up to the shrunk size, so it
 * did not know that the chunk had a record in the open log and wrote it in place (slot 0); a
 * later load walks the whole log, maps the chunk to the older record and fails authentication
 * ("chunk at offset 8192 fails authentication"), for every process, a fresh one too.
 * Fixed in follow_chunk (commit.c): every chunk record joins jlogged, within the size or not.
 *   usage: test_volume_shared_regrow [seed ops]...  (default: the seeds that failed)
 */
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "testutil.h"

#define MAXSZ 20480u

static uint8_t g_key[SCP_VOLUME_KEY_LEN];
static char *g_vd;

/* Process `me` (0 or 1) does ops me, me + 2, ...; returns 0 if every check passed. */
static int turns(uint64_t seed, int nops, int me, int in, int out) {
    scp_err e;
    scp_volume *v = REQUIRE_PTR(scp_volume_open(g_vd, g_key, NULL, &e), e);
    scp_volume_set_shared(v);
    scp_vfile *h = REQUIRE_PTR(scp_vfile_open(v, "f", O_RDWR, 0, &e), e);
    static uint8_t model[MAXSZ], buf[MAXSZ];
    uint32_t msize = 0;
    for (int i = me; i < nops; i += 2) {
        if (i > 0) {
            tu_turn_read(in, &msize, 4);
            tu_turn_read(in, model, msize);
        }
        uint64_t sz = scp_vfile_size(h);
        ssize_t r = scp_vfile_pread(h, buf, MAXSZ, 0, &e);
        CHECKF(sz == msize && r == (ssize_t)msize && memcmp(buf, model, msize) == 0,
               "seed %llu, before op %d (process %d): size %llu, read %zd (%s), want %u bytes",
               (unsigned long long)seed, i, me, (unsigned long long)sz, r, r < 0 ? e.msg : "ok",
               msize);
        if (tu_failures) return 1;
        tu_rng orng = {seed * 1000 + (uint64_t)i};
        if (tu_pct(&orng, 70)) {
            uint64_t off = tu_below(&orng, MAXSZ), len = tu_range(&orng, 1, 6000);
            if (off + len > MAXSZ) len = MAXSZ - off;
            uint8_t w[6000];
            tu_fill(&orng, w, len);
            REQUIRE(scp_vfile_pwrite(h, w, len, off, &e) == (ssize_t)len);
            if (off > msize) memset(model + msize, 0, off - msize);
            memcpy(model + off, w, len);
            if (off + len > msize) msize = (uint32_t)(off + len);
        } else {
            uint64_t s = tu_below(&orng, MAXSZ + 1);
            REQUIRE_OK(scp_vfile_truncate(h, s, &e), e);
            if (s > msize) memset(model + msize, 0, s - msize);
            msize = (uint32_t)s;
        }
        if (tu_pct(&orng, 50)) REQUIRE_OK(scp_vfile_fsync(h, &e), e);
        if (i + 1 >= nops) break; /* the other process has done its last op and may be gone */
        tu_turn_write(out, &msize, 4);
        tu_turn_write(out, model, msize);
    }
    REQUIRE_OK(scp_vfile_close(h, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    return 0;
}

static void one(uint64_t seed, int nops) { tu_two_procs_on_f("regrow", turns, seed, nops, g_key, &g_vd); }

int main(int argc, char **argv) {
    /* A failed peer shows as exit 3 or a failed check, not as this process killed by a write
     * to its closed pipe. */
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 3) {
        for (int i = 1; i + 1 < argc; i += 2) one(strtoull(argv[i], NULL, 10), atoi(argv[i + 1]));
    } else {
        one(41, 7);  /* write, overwrite (journaled), shrink, shrink, grow past it */
        one(20, 12);
        for (uint64_t s = 1; s <= 60; s++) one(s, 16);
    }
    return tu_exit_code("test_volume_shared_regrow");
}
