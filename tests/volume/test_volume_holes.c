/* tests/volume/test_volume_holes.c - unwritten chunks (extending truncates, fallocate).
 *
 * Asserts: chunks that an extending truncate reserved and a commit made part of the file read
 * as zeros; the first write to them is written in place like a fresh write (the journal grows
 * by the commit record's entries, not by a copy of the data); they read back right in the
 * writing process and after the volume is reopened; a writer killed after such a write but
 * before its commit leaves zeros (the committed state); and a file whose unwritten chunks were
 * rewritten through the journal again (second write) still reads right after a reopen.
 * Overwrites: a large chunk-aligned overwrite of written chunks goes to their other slots
 * without a copy in the journal, and a second one back to the first slots; both read right
 * after a reopen; a writer killed after a large overwrite, before its commit, leaves the old
 * content; and flipping an entry's slot selector in the table is an integrity error.
 * Zero ranges (scp_vfile_zero_range, fallocate's PUNCH_HOLE and ZERO_RANGE): in shared mode,
 * through an O_APPEND handle, a range across chunk edges and one larger than a write piece
 * read as zeros at once, in another handle, and after a reopen; keep_size keeps the size, a
 * range past the end without it grows the file as a hole, and a range over holes writes
 * nothing; an empty range is EINVAL.
 */
#include <signal.h>
#include <sys/wait.h>

#include "testutil.h"

#define MIB (1u << 20)
#define FSIZE (8u * MIB)

/* The bytes of every journal object of the volume. */
static uint64_t journal_bytes(const char *dir) {
    uint64_t total = 0;
    REQUIRE(tu_objects(dir, ".j", &total) >= 0);
    return total;
}

static void check_content(scp_volume *v, const uint8_t *model, const char *when) {
    scp_err e;
    scp_vfile *f = scp_vfile_open(v, "f", O_RDONLY, 0, &e);
    REQUIRE_OK(f ? 0 : -1, e);
    uint8_t *buf = malloc(FSIZE);
    REQUIRE(buf);
    ssize_t r = scp_vfile_pread(f, buf, FSIZE, 0, &e);
    CHECKF(r == (ssize_t)FSIZE, "%s: read %zd bytes of %u (%s)", when, r, FSIZE, e.msg);
    if (r == (ssize_t)FSIZE) {
        size_t k = 0;
        while (k < FSIZE && buf[k] == model[k]) k++;
        CHECKF(k == FSIZE, "%s: content differs from the model at byte %zu", when, k);
    }
    free(buf);
    CHECK_OK(scp_vfile_close(f, &e), e);
}

/* The disk blocks (bytes) allocated to the volume's data objects. */
static uint64_t data_blocks(const char *dir) {
    char *objs = tu_path(dir, "objects");
    DIR *d = opendir(objs);
    REQUIRE(d);
    uint64_t total = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l <= 2 || strcmp(de->d_name + l - 2, ".d") != 0) continue;
        char *p = tu_path(objs, de->d_name);
        struct stat st;
        if (stat(p, &st) == 0) total += (uint64_t)st.st_blocks * 512;
        free(p);
    }
    closedir(d);
    free(objs);
    return total;
}

/* scp_vfile_allocate (the shield's fallocate): the blocks of the range are reserved in the
 * data object before any write, the size grows (or not, keep_size), the range reads as zeros,
 * the first write into it goes in place (no journal copy), and bad ranges are refused with
 * the size unchanged. */
static void check_allocate(const char *dir, const uint8_t key[SCP_VOLUME_KEY_LEN], const uint8_t *data) {
    scp_err e;
    scp_volume *v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    scp_vfile *g = scp_vfile_open(v, "g", O_RDWR | O_CREAT, 0600, &e);
    REQUIRE_OK(g ? 0 : -1, e);
    REQUIRE_OK(scp_vfile_fsync(g, &e), e);
    uint64_t b0 = data_blocks(dir);
    REQUIRE_OK(scp_vfile_allocate(g, 0, 4 * MIB, 0, &e), e);
    uint64_t b1 = data_blocks(dir);
    CHECKF(scp_vfile_size(g) == 4 * MIB, "allocate: size %llu, not 4 MiB",
           (unsigned long long)scp_vfile_size(g));
    CHECKF(b1 >= b0 + 4 * MIB, "allocate: %llu bytes of blocks reserved for 4 MiB",
           (unsigned long long)(b1 - b0));
    /* beyond the size with keep_size: blocks, not size */
    REQUIRE_OK(scp_vfile_allocate(g, 4 * MIB, 2 * MIB + 100, 1, &e), e);
    uint64_t b2 = data_blocks(dir);
    CHECKF(scp_vfile_size(g) == 4 * MIB, "allocate keep_size: size %llu, not 4 MiB",
           (unsigned long long)scp_vfile_size(g));
    CHECKF(b2 >= b1 + 2 * MIB + 4096, "allocate keep_size: %llu bytes of blocks reserved for 2 MiB + 100",
           (unsigned long long)(b2 - b1));
    /* reads zeros, before and after a commit */
    uint8_t *buf = malloc(4 * MIB), *zero = calloc(1, 4 * MIB);
    REQUIRE(buf && zero);
    CHECK(scp_vfile_pread(g, buf, 4 * MIB, 0, &e) == (ssize_t)(4 * MIB) && memcmp(buf, zero, 4 * MIB) == 0);
    REQUIRE_OK(scp_vfile_fsync(g, &e), e);
    uint64_t j0 = journal_bytes(dir);
    REQUIRE_OK(scp_vfile_pwrite(g, data, 2 * MIB, MIB, &e), e);
    REQUIRE_OK(scp_vfile_fsync(g, &e), e);
    uint64_t j1 = journal_bytes(dir);
    CHECKF(j1 < j0 + 256 * 1024, "first write into an allocated range: the journal grew by %llu bytes",
           (unsigned long long)(j1 - j0));
    /* bad ranges: refused, size unchanged */
    CHECKF(scp_vfile_allocate(g, UINT64_C(1) << 50, 4096, 0, &e) < 0 && e.sys == EFBIG,
           "allocate past the maximum size: not EFBIG (%s)", e.msg);
    CHECKF(scp_vfile_allocate(g, 0, 0, 0, &e) < 0 && e.sys == EINVAL,
           "allocate of an empty range: not EINVAL (%s)", e.msg);
    CHECK(scp_vfile_size(g) == 4 * MIB);
    CHECK_OK(scp_vfile_close(g, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    /* after a reopen: zeros, the write, zeros */
    v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    g = scp_vfile_open(v, "g", O_RDONLY, 0, &e);
    REQUIRE_OK(g ? 0 : -1, e);
    ssize_t r = scp_vfile_pread(g, buf, 4 * MIB, 0, &e);
    CHECKF(r == (ssize_t)(4 * MIB) && memcmp(buf, zero, MIB) == 0 && memcmp(buf + MIB, data, 2 * MIB) == 0 &&
               memcmp(buf + 3 * MIB, zero, MIB) == 0,
           "allocated file after a reopen: read %zd bytes, not zeros, the write, zeros (%s)", r, e.msg);
    CHECK_OK(scp_vfile_close(g, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    free(buf);
    free(zero);
}

static void check_zero_range(const char *dir, const uint8_t key[SCP_VOLUME_KEY_LEN], const uint8_t *data) {
    scp_err e;
    scp_volume *v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    scp_volume_set_shared(v);
    const uint64_t size = 6 * MIB + 123;
    uint8_t *model = malloc(size + 2 * MIB), *buf = malloc(size + 2 * MIB);
    REQUIRE(model && buf);
    scp_vfile *z = scp_vfile_open(v, "z", O_RDWR | O_CREAT, 0600, &e);
    REQUIRE_OK(z ? 0 : -1, e);
    for (uint64_t at = 0; at < size; at += 4 * MIB) {
        size_t n = (size_t)(size - at < 4 * MIB ? size - at : 4 * MIB);
        REQUIRE(scp_vfile_pwrite(z, data, n, at, &e) == (ssize_t)n);
        memcpy(model + at, data, n);
    }
    REQUIRE_OK(scp_vfile_close(z, &e), e);
    /* through an O_APPEND handle: at the offset, not at the end */
    scp_vfile *a = scp_vfile_open(v, "z", O_WRONLY | O_APPEND, 0, &e);
    REQUIRE_OK(a ? 0 : -1, e);
    CHECK_OK(scp_vfile_zero_range(a, 4000, 10000, 1, &e), e);          /* across chunk edges */
    memset(model + 4000, 0, 10000);
    CHECK_OK(scp_vfile_zero_range(a, MIB - 5, 4 * MIB + 17, 1, &e), e); /* more than a piece */
    memset(model + MIB - 5, 0, 4 * MIB + 17);
    CHECK_OK(scp_vfile_zero_range(a, size - 50, 1000, 1, &e), e);       /* across the end, kept */
    memset(model + size - 50, 0, 50);
    CHECKF(scp_vfile_size(a) == size, "zero range keep_size: size %llu, not %llu",
           (unsigned long long)scp_vfile_size(a), (unsigned long long)size);
    CHECKF(scp_vfile_zero_range(a, 0, 0, 1, &e) < 0 && e.sys == EINVAL,
           "zero range of an empty range: not EINVAL (%s)", e.msg);
    scp_vfile *r = scp_vfile_open(v, "z", O_RDONLY, 0, &e);
    REQUIRE_OK(r ? 0 : -1, e);
    CHECKF(scp_vfile_pread(r, buf, size, 0, &e) == (ssize_t)size && memcmp(buf, model, size) == 0,
           "zero range: another handle reads other bytes (%s)", e.msg);
    CHECK_OK(scp_vfile_close(r, &e), e);
    /* past the end without keep_size: grows as a hole */
    CHECK_OK(scp_vfile_zero_range(a, size + MIB, 4096, 0, &e), e);
    memset(model + size, 0, MIB + 4096);
    uint64_t grown = size + MIB + 4096;
    CHECKF(scp_vfile_size(a) == grown, "zero range past the end: size %llu, not %llu",
           (unsigned long long)scp_vfile_size(a), (unsigned long long)grown);
    /* a range over holes writes nothing (cp --sparse=always punches its copy's holes) */
    CHECK_OK(scp_vfile_fsync(a, &e), e);
    uint64_t jb = journal_bytes(dir), db = data_blocks(dir);
    CHECK_OK(scp_vfile_zero_range(a, size + 8192, MIB, 1, &e), e);
    CHECK_OK(scp_vfile_fsync(a, &e), e);
    CHECKF(journal_bytes(dir) == jb && data_blocks(dir) == db,
           "a zero range over holes wrote: journals %llu -> %llu bytes, data %llu -> %llu",
           (unsigned long long)jb, (unsigned long long)journal_bytes(dir), (unsigned long long)db,
           (unsigned long long)data_blocks(dir));
    CHECK_OK(scp_vfile_fsync(a, &e), e);
    CHECK_OK(scp_vfile_close(a, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    r = scp_vfile_open(v, "z", O_RDONLY, 0, &e);
    REQUIRE_OK(r ? 0 : -1, e);
    ssize_t got = scp_vfile_pread(r, buf, grown + 10, 0, &e);
    CHECKF(got == (ssize_t)grown && memcmp(buf, model, grown) == 0,
           "zero range after a reopen: read %zd bytes, not the model's %llu (%s)", got,
           (unsigned long long)grown, got < 0 ? e.msg : "other bytes");
    CHECK_OK(scp_vfile_close(r, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    free(model);
    free(buf);
}

int main(void) {
    tu_rng rng = {42};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *dir;
    scp_volume *v = tu_new_volume(&rng, "holes", key, &root, &dir);
    scp_err e;
    uint8_t *model = calloc(1, FSIZE), *data = malloc(4 * MIB);
    REQUIRE(model && data);
    tu_fill(&rng, data, 4 * MIB);

    scp_vfile *f = scp_vfile_open(v, "f", O_RDWR | O_CREAT, 0600, &e);
    REQUIRE_OK(f ? 0 : -1, e);
    /* 64 KiB of data, then reserve up to 8 MiB (what the shield does for fallocate). */
    REQUIRE_OK(scp_vfile_pwrite(f, data, 64 << 10, 0, &e), e);
    memcpy(model, data, 64 << 10);
    REQUIRE_OK(scp_vfile_truncate(f, FSIZE, &e), e);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    uint64_t j0 = journal_bytes(dir);

    /* First write to the unwritten chunks: 2 MiB chunk-aligned, and a partial chunk. */
    REQUIRE_OK(scp_vfile_pwrite(f, data + 64 * 1024, 2 * MIB, 1 * MIB, &e), e);
    memcpy(model + 1 * MIB, data + 64 * 1024, 2 * MIB);
    REQUIRE_OK(scp_vfile_pwrite(f, data + 7, 100, 5 * MIB + 10, &e), e);
    memcpy(model + 5 * MIB + 10, data + 7, 100);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    uint64_t j1 = journal_bytes(dir);
    printf("journal grew by %llu bytes for a 2 MiB first write to reserved chunks\n",
           (unsigned long long)(j1 - j0));
    CHECKF(j1 - j0 < MIB / 4,
           "the first write to reserved chunks went through the journal (%llu bytes): it "
           "should cost a fresh write",
           (unsigned long long)(j1 - j0));
    check_content(v, model, "after the first write");

    /* A second write to the same chunks is an overwrite (journaled); content stays right. */
    REQUIRE_OK(scp_vfile_pwrite(f, data + 3 * MIB, 64 << 10, 1 * MIB + 4096, &e), e);
    memcpy(model + 1 * MIB + 4096, data + 3 * MIB, 64 << 10);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    CHECK_OK(scp_vfile_close(f, &e), e);
    check_content(v, model, "after the overwrite");
    CHECK_OK(scp_volume_close(v, &e), e);

    v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    check_content(v, model, "after reopening");
    CHECK_OK(scp_volume_close(v, &e), e);

    /* A writer killed after writing reserved chunks in place, before committing them. */
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        scp_volume *cv = scp_volume_open(dir, key, NULL, &e);
        scp_vfile *cf = cv ? scp_vfile_open(cv, "f", O_RDWR, 0, &e) : NULL;
        if (!cf) _exit(2);
        if (scp_vfile_pwrite(cf, data, 2 * MIB, 6 * MIB, &e) != (ssize_t)(2 * MIB)) _exit(3);
        kill(getpid(), SIGKILL);
        _exit(4);
    }
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the writer did not get to its kill (%d)",
           st);
    v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    check_content(v, model, "after a writer was killed before committing reserved chunks");
    CHECK_OK(scp_volume_close(v, &e), e);

    /* Large overwrites of written chunks: the other slot, then back. */
    v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    f = scp_vfile_open(v, "f", O_RDWR, 0, &e);
    REQUIRE_OK(f ? 0 : -1, e);
    for (int pass = 0; pass < 2; pass++) {
        uint64_t jb = journal_bytes(dir);
        const uint8_t *src = data + (pass ? 512 << 10 : 4096);
        REQUIRE_OK(scp_vfile_pwrite(f, src, 2 * MIB, 1 * MIB, &e), e);
        memcpy(model + 1 * MIB, src, 2 * MIB);
        REQUIRE_OK(scp_vfile_fsync(f, &e), e);
        uint64_t ja = journal_bytes(dir);
        printf("overwrite %d: journal grew by %lld bytes for a 2 MiB overwrite\n", pass + 1,
               (long long)(ja - jb));
        CHECKF(ja < jb || ja - jb < MIB / 4,
               "overwrite %d: a 2 MiB overwrite went through the journal (%llu bytes)", pass + 1,
               (unsigned long long)(ja - jb));
        check_content(v, model, pass ? "after the second overwrite" : "after the first overwrite");
    }
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    check_content(v, model, "after the overwrites and a reopen");
    CHECK_OK(scp_volume_close(v, &e), e);

    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        scp_volume *cv = scp_volume_open(dir, key, NULL, &e);
        scp_vfile *cf = cv ? scp_vfile_open(cv, "f", O_RDWR, 0, &e) : NULL;
        if (!cf) _exit(2);
        if (scp_vfile_pwrite(cf, data + 99, 2 * MIB, 0, &e) != (ssize_t)(2 * MIB)) _exit(3);
        kill(getpid(), SIGKILL);
        _exit(4);
    }
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the writer did not get to its kill (%d)",
           st);
    v = scp_volume_open(dir, key, NULL, &e);
    REQUIRE_OK(v ? 0 : -1, e);
    check_content(v, model, "after a writer was killed before committing an overwrite");
    CHECK_OK(scp_volume_close(v, &e), e);

    /* Flip the slot selector (the nonce's low bit) of chunk 300's entry: an integrity error. */
    {
        char *objs = tu_path(dir, "objects");
        DIR *d = opendir(objs);
        REQUIRE(d);
        struct dirent *de;
        char *tpath = NULL;
        while ((de = readdir(d)))
            if (strlen(de->d_name) > 2 && !strcmp(de->d_name + strlen(de->d_name) - 2, ".t"))
                tpath = tu_path(objs, de->d_name);
        closedir(d);
        REQUIRE(tpath);
        /* (the journal emptied, as a writer's checkpoint leaves it: a short journal that the
         * last load left would redo entry 300 over the flip, which is healing, not the
         * detection checked here; test_volume_tamper, attack_healed) */
        char *jpath = strdup(tpath);
        jpath[strlen(jpath) - 1] = 'j';
        REQUIRE(truncate(jpath, 0) == 0 || errno == ENOENT);
        free(jpath);
        int fd = open(tpath, O_RDWR);
        REQUIRE(fd >= 0);
        uint8_t b;
        off_t at = (off_t)300 * 44 + 16; /* entry 300, first nonce byte */
        REQUIRE(pread(fd, &b, 1, at) == 1);
        b ^= 1;
        REQUIRE(pwrite(fd, &b, 1, at) == 1);
        close(fd);
        v = scp_volume_open(dir, key, NULL, &e);
        REQUIRE_OK(v ? 0 : -1, e);
        scp_vfile *tf = scp_vfile_open(v, "f", O_RDONLY, 0, &e);
        uint8_t tmp[4096];
        ssize_t r = tf ? scp_vfile_pread(tf, tmp, sizeof tmp, 300 * 4096, &e) : -1;
        CHECKF(r < 0 && e.code == SCP_E_INTEGRITY,
               "a flipped slot selector was not detected (read %zd, %s)", r, e.msg);
        if (tf) scp_vfile_close(tf, &e);
        scp_volume_close(v, &e);
        free(tpath);
        free(objs);
    }

    check_allocate(dir, key, data);
    check_zero_range(dir, key, data);

    free(model);
    free(data);
    tu_rm_rf(root);
    free(dir);
    free(root);
    return tu_exit_code("test_volume_holes");
}
