/* tests/volume/test_volume_fork_catchup.c - a fork child's first volume call catches up from
 * its parent's manifest instead of loading the whole manifest log again.
 *
 * A fork child's repair (vol_check_fork) dropped the manifest it inherited and loaded the volume
 * from generation 0: the slot and every record of manifest.log since its last fold, up to
 * 16,384 records decrypted. PostgreSQL forks a backend per connection, and each one spent
 * 72-79 ms there (bench/RESULTS.md, session 30). The parent's fork prepare holds the volume's
 * mutex and every file's writer lock, so the copy is a state the parent had between calls;
 * the child now reads only what other processes appended since (volume.c, fork_catch_up).
 *
 * Asserted, in ordinary and in shared mode: P builds a log of NREC namespace records, writes
 * and syncs file a and keeps it open, then forks C, which makes no volume call until P has,
 * after the fork, renamed a to b, created `after`, removed d0, synced and closed a. Then C's first call
 * (a stat of `after`) sees P's post-fork state, and reads less than a quarter of manifest.log
 * (rchar; the whole-log load read all of it); d0 and a are gone for C too; C writes through
 * its inherited handle of a and syncs it, and P then finds the write under b and no file a
 * (the handle's path follows the rename: the whole-log load kept the parent's path); the
 * volume verifies, and a fresh open sees the same.
 */
#include <sys/wait.h>

#include "testutil.h"

#define NREC 400

static off_t file_size(const char *dir, const char *name) {
    char *p = tu_path(dir, name);
    struct stat st;
    off_t n = stat(p, &st) == 0 ? st.st_size : -1;
    free(p);
    return n;
}

/* The child: waits for P's go, then its first volume call; reports what it read. */
static int child(scp_volume *v, scp_vfile *fa, int go, int out) {
    char c;
    if (read(go, &c, 1) != 1) return 2;
    scp_err e;
    tu_err_clear(&e);
    scp_vstat st;
    long long r0 = tu_rchar();
    if (scp_volume_stat(v, "after", &st, &e) < 0) {
        fprintf(stderr, "fork_catchup: the child does not see `after`: %s\n", e.msg);
        return 3;
    }
    long long got = tu_rchar() - r0;
    if (write(out, &got, sizeof got) != (ssize_t)sizeof got) return 4;
    if (scp_volume_stat(v, "d0", &st, &e) == 0 || scp_volume_stat(v, "a", &st, &e) == 0) {
        fprintf(stderr, "fork_catchup: the child still sees d0 or a\n");
        return 5;
    }
    if (scp_vfile_pwrite(fa, "C", 1, 0, &e) != 1 || scp_vfile_fsync(fa, &e) < 0 ||
        scp_vfile_close(fa, &e) < 0) {
        fprintf(stderr, "fork_catchup: the child's write: %s\n", e.msg);
        return 6;
    }
    return scp_volume_close(v, &e) < 0 ? 7 : 0;
}

static void one(int shared) {
    tu_rng rng = {.s = 0xfc + (uint64_t)shared};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    scp_err e;
    tu_err_clear(&e);
    char *root, *vd;
    scp_volume *v = tu_new_volume(&rng, shared ? "fcatch-s" : "fcatch", key, &root, &vd);
    if (shared) scp_volume_set_shared(v);
    char name[32];
    for (int i = 0; i < NREC; i++) {
        snprintf(name, sizeof name, "d%d", i);
        REQUIRE_OK(scp_volume_mkdir(v, name, 0700, &e), e);
    }
    scp_vfile *fa = REQUIRE_PTR(scp_vfile_open(v, "a", O_RDWR | O_CREAT, 0600, &e), e);
    REQUIRE(scp_vfile_pwrite(fa, "AA", 2, 0, &e) == 2);
    REQUIRE_OK(scp_vfile_fsync(fa, &e), e);
    off_t logsz = file_size(vd, "manifest.log");
    REQUIRE(logsz > 0);
    int go[2], out[2];
    REQUIRE(pipe(go) == 0 && pipe(out) == 0);
    pid_t c = fork();
    REQUIRE(c >= 0);
    if (c == 0) {
        close(go[1]);
        close(out[0]);
        _exit(child(v, fa, go[0], out[1]));
    }
    close(go[0]);
    close(out[1]);
    REQUIRE_OK(scp_volume_rename(v, "a", "b", &e), e);
    REQUIRE_OK(tu_vput(v, "after", "x", 1, &e), e);
    REQUIRE_OK(scp_volume_rmdir(v, "d0", &e), e);
    REQUIRE_OK(scp_volume_sync(v, &e), e);
    REQUIRE_OK(scp_vfile_close(fa, &e), e); /* (its writer lock: the child writes a) */
    REQUIRE(write(go[1], "g", 1) == 1);
    long long got = -1;
    CHECK(read(out[0], &got, sizeof got) == (ssize_t)sizeof got);
    int status;
    REQUIRE(waitpid(c, &status, 0) == c);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork_catchup%s: the child's status %d",
           shared ? " (shared)" : "", status);
    CHECKF(got >= 0 && got < (long long)logsz / 4,
           "fork_catchup%s: the child's first call read %lld bytes (manifest.log: %lld)",
           shared ? " (shared)" : "", got, (long long)logsz);
    printf("fork_catchup%s: the child's first call read %lld bytes (manifest.log: %lld, %d records)\n",
           shared ? " (shared)" : "", got, (long long)logsz, NREC + 2);
    /* P: the child's write is b's; there is no a */
    for (int pass = 0; pass < 2; pass++) {
        scp_vstat st;
        CHECKF(scp_volume_stat(v, "a", &st, &e) < 0, "fork_catchup: a exists again (pass %d)", pass);
        size_t n = 0;
        uint8_t *got_b = tu_vget(v, "b", &n, &e);
        CHECKF(got_b && n == 2 && memcmp(got_b, "CA", 2) == 0, "fork_catchup: b is not the child's (pass %d)",
               pass);
        free(got_b);
        CHECK(scp_volume_verify(v, NULL, NULL, NULL, &e) == 0);
        if (pass == 0) {
            CHECK_OK(scp_volume_close(v, &e), e);
            v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
        }
    }
    CHECK_OK(scp_volume_close(v, &e), e);
    close(go[1]);
    close(out[0]);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

int main(void) {
    one(0);
    one(1);
    return tu_exit_code("volume_fork_catchup");
}
