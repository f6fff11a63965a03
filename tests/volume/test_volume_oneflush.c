/* test_volume_oneflush - one-flush commits (docs/volume-format.md, "One-flush commits").
 *
 * The binary wraps fdatasync and fsync (-Wl,--wrap) to count the flushes the library makes.
 *   count     a file rewritten in small pieces and fsynced 64 times, as sqlite's WAL is (a
 *             4120-byte frame per transaction, not chunk-aligned): at most one flush per
 *             commit after the first two (the first after an open goes through the synced
 *             manifest log, the second lists the journal in the lock file), plain's count,
 *             and a tag per commit
 *   lostlog   a writer process commits that way and dies without closing the volume; the
 *             power cut then loses manifest.log's unsynced appends (the log is cut back to its
 *             size after the writer's first commit, the last one that synced it): the volume
 *             opens with the last tag the writer was given, at its generation, and reads the
 *             last commit (each commit's manifest-log record in the file's journal is its
 *             commit point, and the open takes them from there)
 *   dropped   the same, and the host also cuts the journal back to before the last commit: the
 *             open with the last tag fails with SCP_E_ROLLBACK (the commit cannot be dropped
 *             unnoticed)
 * Ported from branch sqlite2 (format 2: a manifest copy in the journal, a scratch slot lost).
 */
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "testutil.h"

int __real_fdatasync(int fd);
int __real_fsync(int fd);
int __wrap_fdatasync(int fd);
int __wrap_fsync(int fd);
static long nflush;
int __wrap_fdatasync(int fd) {
    nflush++;
    return __real_fdatasync(fd);
}
int __wrap_fsync(int fd) {
    nflush++;
    return __real_fsync(fd);
}

#define FRAME 4120 /* a sqlite WAL frame: 24-byte header and a 4096-byte page */
#define NCOMMITS 64
#define FSIZE (NCOMMITS * FRAME)

static long ntags;
static void count_tag(void *ctx, const scp_volume_tag *t) {
    (void)t;
    (void)ctx;
    ntags++;
}

static void frame(uint8_t *b, int k) {
    for (int i = 0; i < FRAME; i++) b[i] = (uint8_t)(k * 31 + i);
}

/* A volume with a file "wal" of FSIZE bytes, durable in a slot, closed. */
static void setup(tu_rng *rng, uint8_t key[SCP_VOLUME_KEY_LEN], char **root, char **vd) {
    scp_err e;
    scp_volume *v = tu_new_volume(rng, "oneflush", key, root, vd);
    uint8_t *z = calloc(1, FSIZE);
    REQUIRE(z);
    REQUIRE_OK(tu_vput(v, "wal", z, FSIZE, &e), e);
    free(z);
    REQUIRE_OK(scp_volume_sync(v, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
}

/* Rewrite frame k of "wal" and fsync; returns the flushes it took. */
static long commit_frame(scp_vfile *f, int k) {
    scp_err e;
    uint8_t b[FRAME];
    frame(b, k);
    long before = nflush;
    REQUIRE(scp_vfile_pwrite(f, b, FRAME, (uint64_t)k * FRAME, &e) == FRAME);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    return nflush - before;
}

static void test_count(void) {
    tu_rng rng = {11};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    setup(&rng, key, &root, &vd);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    scp_volume_on_commit(v, count_tag, NULL);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDWR, 0, &e), e);
    long first = commit_frame(f, 0), rest = 0, most = 0;
    first += commit_frame(f, 1);
    for (int k = 2; k < NCOMMITS; k++) {
        long n = commit_frame(f, k);
        rest += n;
        if (n > most) most = n;
    }
    printf("count: first two commits %ld flushes (through the synced log; the list), then "
           "%ld flushes for %d commits (at most %ld per commit), %ld tags\n",
           first, rest, NCOMMITS - 2, most, ntags);
    CHECKF(most <= 1, "a commit of one frame took %ld flushes, want at most 1 (plain's count)", most);
    CHECKF(ntags == NCOMMITS, "%ld tags reported for %d commits", ntags, NCOMMITS);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    size_t n;
    uint8_t *got = REQUIRE_PTR(tu_vget(v, "wal", &n, &e), e), b[FRAME];
    CHECKF(n == FSIZE, "size %zu after reopen, want %u", n, FSIZE);
    for (int k = 0; k < NCOMMITS && n == FSIZE; k++) {
        frame(b, k);
        CHECKF(!memcmp(got + (size_t)k * FRAME, b, FRAME), "frame %d differs after reopen", k);
    }
    free(got);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* A child opens the volume, commits NCOMMITS frames one at a time, hands the last tag over and
 * dies without closing anything. Returns that tag; *synced: manifest.log's size after the first
 * commit (the last one that synced the log). */
static scp_volume_tag writer_dies(const char *vd, const uint8_t key[SCP_VOLUME_KEY_LEN],
                                  off_t *synced) {
    int p[2];
    REQUIRE(pipe(p) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        scp_err e;
        scp_volume *v = scp_volume_open(vd, key, NULL, &e);
        scp_vfile *f = v ? scp_vfile_open(v, "wal", O_RDWR, 0, &e) : NULL;
        if (!f) _exit(2);
        commit_frame(f, 0);
        char *lp = tu_path(vd, "manifest.log");
        struct stat st;
        if (stat(lp, &st) < 0) _exit(4);
        for (int k = 1; k < NCOMMITS; k++) commit_frame(f, k);
        scp_volume_tag t;
        scp_volume_tag_get(v, &t);
        _exit(write(p[1], &t, sizeof t) == (ssize_t)sizeof t &&
                      write(p[1], &st.st_size, sizeof st.st_size) == (ssize_t)sizeof st.st_size
                  ? 0
                  : 3);
    }
    close(p[1]);
    scp_volume_tag t;
    REQUIRE(read(p[0], &t, sizeof t) == (ssize_t)sizeof t);
    REQUIRE(read(p[0], synced, sizeof *synced) == (ssize_t)sizeof *synced);
    close(p[0]);
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return t;
}

/* The journal object of the volume's only file. */
static char *journal_path(const char *vd) {
    char *od = tu_path(vd, "objects");
    DIR *d = opendir(od);
    REQUIRE(d);
    struct dirent *de;
    char *jp = NULL;
    while ((de = readdir(d)))
        if (strlen(de->d_name) > 2 && !strcmp(de->d_name + strlen(de->d_name) - 2, ".j")) {
            REQUIRE(!jp);
            jp = tu_path(od, de->d_name);
        }
    closedir(d);
    free(od);
    REQUIRE(jp);
    return jp;
}

static void test_log_lost(int drop_last) {
    tu_rng rng = {drop_last ? 13 : 12};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    setup(&rng, key, &root, &vd);
    char *lp = tu_path(vd, "manifest.log");
    char *jp = journal_path(vd);
    off_t synced = 0;
    scp_volume_tag t = writer_dies(vd, key, &synced);
    size_t jlen;
    uint8_t *j = tu_read_file(jp, &jlen);
    REQUIRE(j);
    /* The power cut: manifest.log's appends after its last sync are lost. */
    struct stat st;
    REQUIRE(stat(lp, &st) == 0 && st.st_size > synced);
    REQUIRE(truncate(lp, synced) == 0);
    printf("%s: manifest.log cut from %lld to %lld bytes (its last sync)\n",
           drop_last ? "dropped" : "lostlog", (long long)st.st_size, (long long)synced);
    if (drop_last) {
        /* The host cuts the journal back to before the last commit's records: the last frame's
         * chunk records (two chunks), its commit record and its manifest-log record: cut after
         * the last but one manifest-log record. */
        size_t cut = 0;
        for (size_t off = 40; off + 16 <= jlen;) {
            uint32_t type = (uint32_t)(tu_be64(j + off) >> 32); /* u32 type | u32 zero */
            uint64_t n = tu_be64(j + off + 8);
            size_t len = type == 1 ? 16 + 4096 : type == 2 ? 16 + 12 + 8 + n * 52 + 32 + 16 + 32
                         : type == 3 ? 16 + n : 0;
            if (!len || off + len > jlen) break;
            if (type == 3 && off + len < jlen) cut = off + len; /* after the last but one copy */
            off += len;
        }
        REQUIRE(cut > 0);
        REQUIRE(truncate(jp, (off_t)cut) == 0);
    }
    tu_err_clear(&e);
    scp_volume *v = scp_volume_open(vd, key, &t, &e);
    if (drop_last) {
        CHECKF(!v && e.code == SCP_E_ROLLBACK,
               "dropped: the journal cut before the last commit opened as %s (%s), want "
               "SCP_E_ROLLBACK",
               v ? "a volume" : scp_code_name(e.code), v ? "" : e.msg);
        printf("dropped: %s\n", v ? "opened" : e.msg);
        if (v) scp_volume_close(v, &e);
    } else {
        CHECKF(v, "lostlog: open with the writer's last tag after the log's appends were lost: %s (%s)",
               e.msg, scp_code_name(e.code));
        if (v) {
            size_t n;
            uint8_t *got = tu_vget(v, "wal", &n, &e), b[FRAME];
            CHECKF(got && n == FSIZE, "lostlog: read back: %s", got ? "wrong size" : e.msg);
            int bad = 0;
            for (int k = 0; got && n == FSIZE && k < NCOMMITS; k++) {
                frame(b, k);
                bad += memcmp(got + (size_t)k * FRAME, b, FRAME) != 0;
            }
            CHECKF(!bad, "lostlog: %d frames differ from the last commits", bad);
            long probs = scp_volume_verify(v, NULL, NULL, NULL, &e);
            CHECKF(probs == 0, "lostlog: verify found %ld problems", probs);
            printf("lostlog: opened at generation %llu (the writer's last tag), %d frames read "
                   "back\n",
                   (unsigned long long)tu_tag_gen(&t), bad ? 0 : NCOMMITS);
            free(got);
            REQUIRE_OK(scp_volume_close(v, &e), e);
        }
    }
    free(j);
    free(jp);
    free(lp);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *which = argc > 1 ? argv[1] : "all";
    if (!strcmp(which, "all") || !strcmp(which, "count")) test_count();
    if (!strcmp(which, "all") || !strcmp(which, "lostlog")) test_log_lost(0);
    if (!strcmp(which, "all") || !strcmp(which, "dropped")) test_log_lost(1);
    return tu_exit_code("test_volume_oneflush");
}
