/* tests/volume/test_volume_sparse.c - a large sparse file's chunk table.
 *
 * Asserts: an extending truncate to 4 GiB leaves the table object (.t) with almost no blocks
 * (its holes are the file system's holes, not written zeros); an open of the file and reads
 * across it do not bring the 46 MB table into memory (the process's resident set grows by less
 * than a quarter of it); writes far apart read back after a reopen, zeros between them; a byte
 * the host writes into a hole of .t, and a hole the host punches over a written entry, are each
 * an integrity error, and the table reads right again once the hole's byte is zero again (a
 * page of written zeros is the same as a hole); a shrink and an extension make the dropped
 * write read as zeros; and in shared mode a forked child's truncate and far write read right
 * in the parent.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include "testutil.h"
#include "volume/format.h"
#include "volume/internal.h"

#define GIB (1ull << 30)
#define BIG (4 * GIB)
#define FAR 3000000000ull /* a write far inside */

static uint32_t cs;

/* The bytes allocated on disk to the volume's only table object, and its size. */
static uint64_t table_blocks(const char *dir, uint64_t *size) {
    char *t = tu_only_object(dir, ".t");
    REQUIRE(t);
    struct stat st;
    REQUIRE(stat(t, &st) == 0);
    free(t);
    if (size) *size = (uint64_t)st.st_size;
    return (uint64_t)st.st_blocks * 512;
}

/* The process's resident set in KiB (VmRSS). */
static long rss_kib(void) {
    FILE *fp = fopen("/proc/self/status", "r");
    REQUIRE(fp);
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(fp);
    REQUIRE(kib >= 0);
    return kib;
}

static void put(scp_vfile *f, const void *b, size_t n, uint64_t off) {
    scp_err e;
    REQUIRE_OK(scp_vfile_pwrite(f, b, n, off, &e) == (ssize_t)n ? 0 : -1, e);
}

/* f's n bytes at off are b (or zeros when b is NULL); returns 0, or the error's code. */
static int expect(scp_vfile *f, const void *b, size_t n, uint64_t off, const char *what) {
    uint8_t got[8192];
    scp_err e;
    REQUIRE(n <= sizeof got);
    tu_err_clear(&e);
    ssize_t r = scp_vfile_pread(f, got, n, off, &e);
    if (r < 0) return e.code ? (int)e.code : -1;
    int same = r == (ssize_t)n;
    for (size_t k = 0; same && k < n; k++) same = got[k] == (b ? ((const uint8_t *)b)[k] : 0);
    CHECKF(same, "%s: the %zu bytes at %llu read wrong (%zd read)", what, n,
           (unsigned long long)off, r);
    return 0;
}

static void check_far(scp_vfile *f, const uint8_t *data, const char *what) {
    CHECK(expect(f, "hello", 5, FAR, what) == 0);
    CHECK(expect(f, data, 4096, GIB + 100, what) == 0);
    CHECK(expect(f, "z", 1, BIG - 1, what) == 0);
    CHECK(expect(f, NULL, 4096, 2 * GIB, what) == 0);
    CHECK(expect(f, NULL, 100, FAR - 100, what) == 0);
    CHECK(expect(f, NULL, 4096, 7, what) == 0);
}

/* Open f in a fresh open of the volume; the error's code of the first failing step, or 0 with
 * the content checked. */
static int open_check(const char *dir, const uint8_t *key, const uint8_t *data, const char *what) {
    scp_err e;
    scp_volume *v = REQUIRE_PTR(scp_volume_open(dir, key, NULL, &e), e);
    tu_err_clear(&e);
    scp_vfile *f = scp_vfile_open(v, "s", O_RDONLY, 0, &e);
    int rc = f ? 0 : (int)e.code;
    if (f) {
        rc = expect(f, "hello", 5, FAR, what);
        if (rc == 0) check_far(f, data, what);
        (void)scp_vfile_close(f, &e);
    }
    CHECK_OK(scp_volume_close(v, &e), e);
    return rc;
}

/* The table's byte for chunk i's entry, in the only .t object, set to b. */
static void poke_table(const char *dir, uint64_t i, uint8_t b) {
    char *t = tu_only_object(dir, ".t");
    int fd = open(t, O_WRONLY);
    REQUIRE(fd >= 0 && pwrite(fd, &b, 1, (off_t)(i * SCP_CHUNK_ENTRY_LEN + 3)) == 1);
    close(fd);
    free(t);
}

static void check_shared(const char *dir, const uint8_t *key, const uint8_t *data) {
    scp_err e;
    scp_volume *v = REQUIRE_PTR(scp_volume_open(dir, key, NULL, &e), e);
    scp_volume_set_shared(v);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        scp_vfile *f = scp_vfile_open(v, "t", O_RDWR | O_CREAT, 0600, &e);
        if (!f || scp_vfile_truncate(f, 2 * GIB, &e) < 0 ||
            scp_vfile_pwrite(f, data, 8192, GIB + 4096 * 3, &e) != 8192 ||
            scp_vfile_close(f, &e) < 0)
            _exit(2);
        _exit(0);
    }
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the shared child failed (%d)", st);
    scp_volume_refresh(v);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "t", O_RDONLY, 0, &e), e);
    CHECK(expect(f, data, 8192, GIB + 4096 * 3, "shared, in the parent") == 0);
    CHECK(expect(f, NULL, 4096, GIB - 4096, "shared, in the parent") == 0);
    CHECK(expect(f, NULL, 1, 2 * GIB - 1, "shared, in the parent") == 0);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
}

int main(void) {
    tu_rng rng = {7};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *dir;
    cs = tu_test_chunk(4096);
    scp_volume *v = tu_new_volume_chunk(&rng, "sparse", cs, key, &root, &dir);
    scp_err e;
    uint8_t data[8192];
    tu_fill(&rng, data, sizeof data);
    const uint64_t entries = BIG / cs, tbytes = entries * SCP_CHUNK_ENTRY_LEN;

    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "s", O_RDWR | O_CREAT, 0600, &e), e);
    REQUIRE_OK(scp_vfile_truncate(f, BIG, &e), e);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    uint64_t tsize, tb = table_blocks(dir, &tsize);
    printf("4 GiB truncate: .t %llu bytes, %llu allocated\n", (unsigned long long)tsize,
           (unsigned long long)tb);
    CHECKF(tb < 256 << 10, "the table of a 4 GiB hole takes %llu bytes on disk",
           (unsigned long long)tb);
    put(f, "hello", 5, FAR);
    put(f, data, 4096, GIB + 100);
    put(f, "z", 1, BIG - 1);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    check_far(f, data, "in the writer");
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    tb = table_blocks(dir, &tsize);
    CHECKF(tsize == tbytes, ".t is %llu bytes, not %llu", (unsigned long long)tsize,
           (unsigned long long)tbytes);
    CHECKF(tb < 256 << 10, "the table of a 4 GiB file with 4 writes takes %llu bytes on disk",
           (unsigned long long)tb);

    /* An open and reads do not bring the table into memory. */
    v = REQUIRE_PTR(scp_volume_open(dir, key, NULL, &e), e);
    long r0 = rss_kib();
    f = REQUIRE_PTR(scp_vfile_open(v, "s", O_RDONLY, 0, &e), e);
    check_far(f, data, "after a reopen");
    long grew = rss_kib() - r0;
    printf("open and reads of the 4 GiB file: resident set +%ld KiB (table %llu KiB)\n", grew,
           (unsigned long long)(tbytes >> 10));
    CHECKF((uint64_t)grew < tbytes / 4 / 1024, "the open's resident set grew by %ld KiB", grew);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);

    /* The host's changes to .t's holes and data. */
    uint64_t hole_i = 2 * GIB / cs + 3 * SCP_TABLE_PAGE + 5, far_i = FAR / cs;
    poke_table(dir, hole_i, 0x5a);
    CHECKF(open_check(dir, key, data, "a byte in a hole") == SCP_E_INTEGRITY,
           "a byte written into a hole of .t was not an integrity error");
    poke_table(dir, hole_i, 0);
    CHECKF(open_check(dir, key, data, "the byte zero again") == 0,
           "a written page of zeros in .t did not read as holes");
    {
        /* (the journal of the last writes is set aside first: a load redoes it into .t, which
         * would put the punched entry back, as it must) */
        char *t = tu_only_object(dir, ".t"), *j = tu_only_object(dir, ".j");
        size_t jlen;
        uint8_t *jsave = tu_read_file(j, &jlen);
        REQUIRE(jsave && truncate(j, 0) == 0);
        CHECKF(open_check(dir, key, data, "the journal set aside") == 0,
               "the table without its journal does not read right");
        int fd = open(t, O_RDWR);
        REQUIRE(fd >= 0);
        uint8_t save[4096];
        off_t at = (off_t)(far_i * SCP_CHUNK_ENTRY_LEN / 4096 * 4096);
        REQUIRE(pread(fd, save, sizeof save, at) == (ssize_t)sizeof save);
        REQUIRE(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at, 4096) == 0);
        CHECKF(open_check(dir, key, data, "a punched entry") == SCP_E_INTEGRITY,
               "a hole punched over a written entry of .t was not an integrity error");
        REQUIRE(pwrite(fd, save, sizeof save, at) == (ssize_t)sizeof save);
        close(fd);
        REQUIRE(tu_write_file(j, jsave, jlen, 0600) == 0);
        free(jsave);
        free(t);
        free(j);
        CHECK(open_check(dir, key, data, "the entry back") == 0);
    }

    /* A shrink below the far write and an extension again: zeros there. */
    v = REQUIRE_PTR(scp_volume_open(dir, key, NULL, &e), e);
    f = REQUIRE_PTR(scp_vfile_open(v, "s", O_RDWR, 0, &e), e);
    REQUIRE_OK(scp_vfile_truncate(f, 2 * GIB, &e), e);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    REQUIRE_OK(scp_vfile_truncate(f, BIG, &e), e);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    CHECK(expect(f, NULL, 5, FAR, "shrunk and extended") == 0);
    CHECK(expect(f, data, 4096, GIB + 100, "shrunk and extended") == 0);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(dir, key, NULL, &e), e);
    f = REQUIRE_PTR(scp_vfile_open(v, "s", O_RDONLY, 0, &e), e);
    CHECK(expect(f, NULL, 5, FAR, "shrunk and extended, reopened") == 0);
    CHECK(expect(f, NULL, 1, BIG - 1, "shrunk and extended, reopened") == 0);
    CHECK(expect(f, data, 4096, GIB + 100, "shrunk and extended, reopened") == 0);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);

    check_shared(dir, key, data);
    v = REQUIRE_PTR(scp_volume_open(dir, key, NULL, &e), e);
    f = REQUIRE_PTR(scp_vfile_open(v, "t", O_RDONLY, 0, &e), e);
    CHECK(expect(f, data, 8192, GIB + 4096 * 3, "shared, reopened") == 0);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);

    tu_rm_rf(root);
    free(root);
    free(dir);
    return tu_exit_code("volume_sparse");
}
