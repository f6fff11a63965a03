/* tests/volume/test_volume_redo.c - a read-only load's redo of a kept journal (commit.c,
 * try_replay): what it writes, and in how many calls.
 *
 * A sole holder's lazy close leaves a short log in place, and a read-only load by another
 * handle redoes it into the table and data objects without a flush, at every load
 * (docs/volume-format.md); a shared writer's log (its preallocated zeros past the last commit)
 * is redone and emptied by the first load. The binary wraps pwrite and pwritev (-Wl,--wrap)
 * to count the library's writes. Steps:
 *   fresh    a 600-chunk file written front to back by a sole holder with lazy closes (as the
 *            shield writes; its log holds the table entries only): two loads read it back
 *            whole, and each redo writes the table in at most 4 calls (one per run of
 *            entries; before, one pwrite per entry: 600)
 *   over     a shared child that ends without closing, as the shield's processes do, after
 *            overwrites that go through the log (partial chunks): chunk 5 three times (the
 *            last must win), a run of 150 chunks (more than one pwritev's 64), and chunks 300,
 *            302 and 304 (runs of one); the next two loads read every byte as a model of the
 *            file says, and the redo makes at most 16 writes (before, ~310)
 *   tamper   in a copy of that volume, a byte of a chunk record's ciphertext changed: the load
 *            fails with SCP_E_INTEGRITY, as before
 */
#include <sys/uio.h>

#include "testutil.h"

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __real_pwritev(int fd, const struct iovec *iov, int n, off_t off);
ssize_t __wrap_pwritev(int fd, const struct iovec *iov, int n, off_t off);

static long nwrites;

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off) {
    nwrites++;
    return __real_pwrite(fd, buf, n, off);
}
ssize_t __wrap_pwritev(int fd, const struct iovec *iov, int n, off_t off) {
    nwrites++;
    return __real_pwritev(fd, iov, n, off);
}

#define CS 4096u
#define NCH 600u
static const uint8_t KEY[SCP_VOLUME_KEY_LEN] = {0x52, 0x45, 0x44, 0x4f};
static uint8_t model[NCH * CS];

/* Open the volume afresh, load "f" read-only (the redo), read it whole against the model.
 * Returns the writes the load made. */
static long load_and_check(const char *dir, const char *what) {
    scp_err e;
    scp_volume *v = REQUIRE_PTR(scp_volume_open(dir, KEY, NULL, &e), e);
    nwrites = 0;
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "f", O_RDONLY, 0, &e), e);
    long n = nwrites;
    static uint8_t got[NCH * CS];
    ssize_t r = scp_vfile_pread(f, got, sizeof got, 0, &e);
    CHECKF(r == (ssize_t)sizeof got, "%s: read %zd of %zu bytes (%s)", what, r, sizeof got,
           r < 0 ? e.msg : "short");
    if (r == (ssize_t)sizeof got)
        for (uint32_t i = 0; i < NCH; i++)
            CHECKF(memcmp(got + i * CS, model + i * CS, CS) == 0, "%s: chunk %u reads other "
                   "bytes than were written", what, i);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    return n;
}

/* Write len bytes of fill at off, in the file (unless f is NULL) and in the model. */
static void put(scp_vfile *f, uint64_t off, size_t len, uint8_t fill) {
    scp_err e;
    uint8_t *b = malloc(len);
    REQUIRE(b);
    for (size_t i = 0; i < len; i++) b[i] = (uint8_t)(fill + i * 7);
    REQUIRE(!f || scp_vfile_pwrite(f, b, len, off, &e) == (ssize_t)len);
    memcpy(model + off, b, len);
    free(b);
}

int main(void) {
    char *base = tu_tmpdir("redo");
    char *dir = tu_path(base, "vol");
    scp_err e;
    REQUIRE_OK(scp_volume_create(dir, KEY, CS, &e), e);

    printf("fresh\n");
    scp_volume *v = REQUIRE_PTR(scp_volume_open(dir, KEY, NULL, &e), e);
    /* (the sole holder with lazy closes: as the shield writes, cp under scpctl run) */
    REQUIRE(scp_volume_go_private(v) == 1);
    scp_volume_set_lazy_close(v, 1);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "f", O_RDWR | O_CREAT, 0644, &e), e);
    for (uint32_t i = 0; i < NCH; i++) put(f, (uint64_t)i * CS, CS, (uint8_t)i);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    for (int k = 0; k < 2; k++) {
        long n = load_and_check(dir, "fresh");
        printf("  load %d: the redo made %ld writes\n", k + 1, n);
        CHECKF(n <= 4, "fresh: a load's redo made %ld writes (one per run of entries: 1-4)", n);
    }

    printf("over\n");
    /* (a child in shared mode that ends without closing, as the shield's processes do: its
     * commits stay in the file's log, which the loads then redo) */
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        tu_failures = 0; /* (the child's own) */
        v = REQUIRE_PTR(scp_volume_open(dir, KEY, NULL, &e), e);
        scp_volume_set_shared(v);
        f = REQUIRE_PTR(scp_vfile_open(v, "f", O_RDWR, 0, &e), e);
        for (int k = 0; k < 3; k++) put(f, 5 * CS + 100, 1000, (uint8_t)(0x40 + k));
        for (uint32_t i = 100; i < 250; i++) put(f, (uint64_t)i * CS + 10, CS - 20, (uint8_t)(i ^ 0x5a));
        for (uint32_t i = 300; i <= 304; i += 2) put(f, (uint64_t)i * CS + 1, 17, (uint8_t)i);
        REQUIRE_OK(scp_vfile_fsync(f, &e), e);
        _exit(tu_failures ? 1 : 0);
    }
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* (the model, as the child changed it) */
    for (int k = 0; k < 3; k++) put(NULL, 5 * CS + 100, 1000, (uint8_t)(0x40 + k));
    for (uint32_t i = 100; i < 250; i++) put(NULL, (uint64_t)i * CS + 10, CS - 20, (uint8_t)(i ^ 0x5a));
    for (uint32_t i = 300; i <= 304; i += 2) put(NULL, (uint64_t)i * CS + 1, 17, (uint8_t)i);
    char *tdir = tu_path(base, "tampered");
    REQUIRE(tu_copy_tree(dir, tdir) == 0);
    for (int k = 0; k < 2; k++) {
        long n = load_and_check(dir, "over");
        printf("  load %d: the redo made %ld writes\n", k + 1, n);
        CHECKF(n <= 16, "over: a load's redo made %ld writes (runs of chunks and of entries)", n);
    }

    printf("tamper\n");
    char *jp = tu_only_object(tdir, ".j");
    struct stat st;
    REQUIRE(stat(jp, &st) == 0);
    CHECKF(st.st_size > (off_t)(150 * CS), "tamper: the journal (%lld bytes) does not hold the "
           "overwrites' records", (long long)st.st_size);
    int fd = open(jp, O_RDWR);
    REQUIRE(fd >= 0);
    uint8_t b;
    off_t at = st.st_size / 2; /* (inside the run's chunk records) */
    REQUIRE(pread(fd, &b, 1, at) == 1);
    b ^= 0x20;
    REQUIRE(pwrite(fd, &b, 1, at) == 1);
    close(fd);
    v = REQUIRE_PTR(scp_volume_open(tdir, KEY, NULL, &e), e);
    f = scp_vfile_open(v, "f", O_RDONLY, 0, &e);
    CHECKF(!f && e.code == SCP_E_INTEGRITY, "tamper: the load %s", f ? "succeeded" : e.msg);
    if (f) scp_vfile_close(f, &e);
    scp_volume_close(v, &e);
    free(jp);
    free(tdir);

    free(dir);
    tu_rm_rf(base);
    free(base);
    return tu_exit_code("test_volume_redo");
}
