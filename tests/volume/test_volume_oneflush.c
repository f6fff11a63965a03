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
 *   rollback  sqlite's rollback-journal transaction, repeated: create "wal-journal", write and
 *             fsync it, rewrite a frame of "wal" and fsync it, unlink "wal-journal". The lazy
 *             records of the create and the unlink ride in the next commit's journal ahead of
 *             its own record (no sync of manifest.log of their own): at most plain's four
 *             flushes per transaction on average (counted: before, six and an fsync). Then a
 *             writer doing the same dies, the power cut loses manifest.log's unsynced appends
 *             (cut back to its size after its first transaction): the volume opens with the
 *             last tag, reads every frame, and verify finds nothing missing (the objects of a
 *             removed journal file whose journal still held records were kept)
 *   reuse     a file rewritten until its journal log is closed and a new one starts twice: the
 *             new log is written over the old one's bytes (the journal object is not cut back,
 *             so an fdatasync writes no inode or allocation), and a writer that dies in the
 *             second reused log, after a power cut that loses manifest.log's unsynced appends,
 *             opens with its last tag and reads the last commit: the old log's tail behind the
 *             new one is never taken for records
 *   shared    shared mode (PostgreSQL's processes): the same frames, each written by a child
 *             process without an fsync (a lazy commit) and fsynced by the parent: at most one
 *             flush per fsync after the first two (the journal that holds the durable record
 *             and the copies of the log's unsynced records), a tag per fsync; then the child
 *             writes once more and both die without closing anything, and the power cut loses
 *             manifest.log's appends after its last sync: the volume opens with the parent's
 *             last tag and reads every fsynced frame (each fsync's records are in the file's
 *             journal behind the last commit record; the child's next write went behind them,
 *             not over them)
 *             Also: the journal objects grow between at most 1 in 8 fsyncs (preallocated
 *             journals: the appender keeps the object ahead of the log with zeros, so that an
 *             fdatasync on ext4 writes no inode or allocation; before, every fsync found it grown)
 *   sharedfast the same, but before its last write of wal the child reads wal (taking in the
 *             parent's last fsync) and writes another file (taking in the volume's newest
 *             generation), so that the write may take the lock-free fast path: it still goes
 *             behind the parent's run because the one-flush commit raised wal's per-file hint
 *             and the read stepped over the run before it recorded the file as seen
 *   sharedhint the same as shared, but after each write the child sets the lock file's
 *             journal end hints (not trusted) to values that name no record boundary, and the
 *             parent reads each frame back before its fsync: every read and the power cut's
 *             open still find every commit (a walk that ran out of bytes reads on)
 *   redolog   InnoDB's redo log on a volume: a file reserved by an extending truncate (as its
 *             fallocate), then written at its end in 512-byte blocks with an fsync after each
 *             (so every eighth commit fills a reserved 4 KiB chunk): at most one flush per commit
 *             after the first two (before: two for a commit that filled a hole, .d and the
 *             journal); then a writer doing the same dies right after a commit that filled a
 *             hole, and the power cut loses that chunk's bytes written in place (zeroed in
 *             .d): the open reads it back from the journal's copy
 *   deadmark  a committer dies right after its one-flush commit's journal sync (its commit
 *             point), before its append to manifest.log, beside a process that has the volume
 *             open: that process's next read takes the dead one's commit (as a process that
 *             opens later does, from the journal), and its own commit then goes on top of it
 *             (on 577dcf3 it read the state before it; the one that opened later read the
 *             commit; and once the first committed through the log, every process read the
 *             state before it again)
 *   forkrepair a fork child's first volume call (its repair) after the parent's one-flush
 *             commits: it reads none of the listed journal (the process's read bytes, from
 *             /proc/self/io, grow by less than the journal's size; every fork child of a
 *             busy writer read it whole until session 29) and sees the last commit; then a
 *             committer of the family dies past its commit point, before its log append (as
 *             deadmark), and the next fork child's repair takes its commit (the mark)
 * Ported from branch sqlite2 (format 2: a manifest copy in the journal, a scratch slot lost).
 */
#include <dirent.h>
#include <sys/stat.h>

#include "scenario.h"
#include "volume/internal.h"

int __real_fdatasync(int fd);
int __real_fsync(int fd);
int __wrap_fdatasync(int fd);
int __wrap_fsync(int fd);
static long nflush;
static dev_t mlog_dev; /* manifest.log of the volume under test, to see its syncs */
static ino_t mlog_ino;
static off_t mlog_synced; /* its size at its last sync */
int __wrap_fdatasync(int fd) {
    nflush++;
    struct stat st;
    int rc = __real_fdatasync(fd);
    if (rc == 0 && mlog_ino && fstat(fd, &st) == 0 && st.st_ino == mlog_ino && st.st_dev == mlog_dev)
        mlog_synced = st.st_size;
    return rc;
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

/* What a writer that died hands back: its last tag, and manifest.log's size as of its last sync. */
struct died {
    scp_volume_tag t;
    off_t synced;
};

/* In a writer's child process: the volume at vd and its file "wal", open (else the child exits 2). */
static scp_vfile *child_wal(const char *vd, const uint8_t key[SCP_VOLUME_KEY_LEN], scp_volume **v) {
    scp_err e;
    *v = scp_volume_open(vd, key, NULL, &e);
    scp_vfile *f = *v ? scp_vfile_open(*v, "wal", O_RDWR, 0, &e) : NULL;
    if (!f) _exit(2);
    return f;
}

/* A child opens the volume, commits NCOMMITS frames one at a time, hands the last tag over and
 * dies without closing anything. Returns that tag; *synced: manifest.log's size after the first
 * commit (the last one that synced the log). */
static scp_volume_tag writer_dies(const char *vd, const uint8_t key[SCP_VOLUME_KEY_LEN],
                                  off_t *synced) {
    struct died out;
    tu_child c;
    if (tu_child_start(&c)) {
        scp_volume *v;
        scp_vfile *f = child_wal(vd, key, &v);
        commit_frame(f, 0);
        char *lp = tu_path(vd, "manifest.log");
        struct stat st;
        if (stat(lp, &st) < 0) _exit(4);
        for (int k = 1; k < NCOMMITS; k++) commit_frame(f, k);
        scp_volume_tag_get(v, &out.t);
        out.synced = st.st_size;
        tu_child_exit(&c, &out, sizeof out);
    }
    REQUIRE(tu_child_wait(&c, &out, sizeof out));
    *synced = out.synced;
    return out.t;
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
        size_t cut = 0, last = 0, end = 40;
        for (size_t off = 40; off + 16 <= jlen;) {
            uint32_t type = (uint32_t)(tu_be64(j + off) >> 32); /* u32 type | u32 zero */
            uint64_t n = tu_be64(j + off + 8);
            /* (format 4: a chunk record's header holds its 44-byte entry; a commit record
             * is header | chain value | nonce | size, entries, root | tag; the log ends at a
             * header of zeros, the room kept ahead of it: journal_room) */
            size_t len = type == 1 ? 16 + 44 + 4096 : type == 2 ? 16 + 32 + 12 + 8 + n * 52 + 32 + 16
                         : type == 3 ? 16 + n : 0;
            if (!len || off + len > jlen) break;
            if (type == 3) { /* (cut after the last but one copy: the log's last record is one) */
                cut = last;
                last = off + len;
            }
            off += len;
            end = off;
        }
        REQUIRE(last == end);
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

/* One rollback-journal transaction k (sqlite's journal_mode=DELETE, synchronous=FULL, in
 * the order sqlite makes its calls); returns the flushes it took. */
static long rollback_txn(scp_volume *v, scp_vfile *db, int k) {
    scp_err e;
    uint8_t b[FRAME];
    long before = nflush;
    scp_vfile *j = REQUIRE_PTR(scp_vfile_open(v, "wal-journal", O_RDWR | O_CREAT, 0600, &e), e);
    frame(b, k + 1000);
    REQUIRE(scp_vfile_pwrite(j, b, 512, 0, &e) == 512);
    REQUIRE_OK(scp_vfile_fsync(j, &e), e);
    REQUIRE_OK(scp_volume_sync(v, &e), e); /* sqlite fsyncs the directory (the shield: this) */
    REQUIRE_OK(scp_vfile_close(j, &e), e);
    frame(b, k);
    REQUIRE(scp_vfile_pwrite(db, b, FRAME, (uint64_t)(k % NCOMMITS) * FRAME, &e) == FRAME);
    REQUIRE_OK(scp_vfile_fsync(db, &e), e);
    REQUIRE_OK(scp_volume_unlink(v, "wal-journal", &e), e);
    return nflush - before;
}

static int expect[NCOMMITS]; /* the frame each place of "wal" holds (frame(b, expect[p])) */
/* ... or, at place alt_place (-1: none), frame alt_frame: a lazy write after the last fsync,
 * which the open may take (its commit record is in the journal past the root the manifest
 * names: docs/volume-format.md, "Settle", S2-S3) or not (a power cut may lose it) */
static int alt_place = -1, alt_frame;
static void expect_txns(int from, int to) {
    for (int k = from; k < to; k++) expect[k % NCOMMITS] = k;
    alt_place = -1;
}

static void check_frames(scp_volume *v, const char *what) {
    scp_err e;
    size_t n;
    uint8_t *got = tu_vget(v, "wal", &n, &e), b[FRAME];
    CHECKF(got && n == FSIZE, "%s: read back: %s", what, got ? "wrong size" : e.msg);
    int bad = 0;
    for (int k = 0; got && n == FSIZE && k < NCOMMITS; k++) {
        frame(b, expect[k]);
        int differs = memcmp(got + (size_t)k * FRAME, b, FRAME) != 0;
        if (differs && k == alt_place) {
            frame(b, alt_frame);
            differs = memcmp(got + (size_t)k * FRAME, b, FRAME) != 0;
        }
        bad += differs;
    }
    CHECKF(!bad, "%s: %d frames differ from the last commits", what, bad);
    long probs = scp_volume_verify(v, NULL, NULL, NULL, &e);
    CHECKF(probs == 0, "%s: verify found %ld problems", what, probs);
    free(got);
}

/* A child runs `txns` transactions of kind `rollback` (1) or WAL frames (0) and dies without
 * closing anything, after writing the last tag and the size manifest.log had after
 * transaction `mark` into the pipe. */
static scp_volume_tag child_dies(const char *vd, const uint8_t key[SCP_VOLUME_KEY_LEN],
                                 int rollback, int txns, int mark, off_t *synced) {
    struct died out;
    tu_child c;
    if (tu_child_start(&c)) {
        scp_volume *v;
        scp_vfile *f = child_wal(vd, key, &v);
        char *lp = tu_path(vd, "manifest.log");
        struct stat st = {0};
        if (stat(lp, &st) < 0) _exit(4);
        mlog_dev = st.st_dev;
        mlog_ino = st.st_ino;
        mlog_synced = 0;
        off_t at_mark = 0;
        for (int k = 0; k < txns; k++) {
            if (rollback) rollback_txn(v, f, k);
            else commit_frame(f, k % NCOMMITS);
            if (k == mark) at_mark = mlog_synced;
        }
        /* (the log as of its last sync; also when that was before the mark) */
        out.synced = mlog_synced > at_mark ? mlog_synced : at_mark;
        scp_volume_tag_get(v, &out.t);
        tu_child_exit(&c, &out, sizeof out);
    }
    REQUIRE(tu_child_wait(&c, &out, sizeof out));
    *synced = out.synced;
    return out.t;
}

/* The power cut: manifest.log's appends after `synced` are lost; then the volume must open
 * with the writer's last tag and read its last commits. */
static void cut_and_check(const char *vd, const uint8_t key[SCP_VOLUME_KEY_LEN],
                          const scp_volume_tag *t, off_t synced, const char *what) {
    char *lp = tu_path(vd, "manifest.log");
    struct stat st;
    REQUIRE(stat(lp, &st) == 0 && st.st_size > synced);
    REQUIRE(truncate(lp, synced) == 0);
    printf("%s: manifest.log cut from %lld to %lld bytes\n", what, (long long)st.st_size,
           (long long)synced);
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = scp_volume_open(vd, key, t, &e);
    CHECKF(v, "%s: open with the writer's last tag after the log's appends were lost: %s (%s)",
           what, e.msg, scp_code_name(e.code));
    if (v) {
        check_frames(v, what);
        printf("%s: opened at generation %llu (the writer's last tag)\n", what,
               (unsigned long long)tu_tag_gen(t));
        REQUIRE_OK(scp_volume_close(v, &e), e);
    }
    free(lp);
}

static void test_rollback(void) {
    tu_rng rng = {14};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    setup(&rng, key, &root, &vd);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDWR, 0, &e), e);
    long first = rollback_txn(v, f, 0) + rollback_txn(v, f, 1), rest = 0;
    int n = 3 * NCOMMITS;
    for (int k = 2; k < n; k++) rest += rollback_txn(v, f, k);
    printf("rollback: first two transactions %ld flushes, then %ld flushes for %d transactions "
           "(%.2f each; plain: 4)\n",
           first, rest, n - 2, (double)rest / (n - 2));
    CHECKF(rest <= 4 * (long)(n - 2) + (n - 2) / 8,
           "rollback-journal transactions took %.2f flushes each, want about plain's 4",
           (double)rest / (n - 2));
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    expect_txns(0, n);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    check_frames(v, "rollback (reopened)");
    REQUIRE_OK(scp_volume_close(v, &e), e);
    /* A writer dies after 40 transactions; the log keeps only what it had at its last sync. */
    off_t synced = 0;
    scp_volume_tag t = child_dies(vd, key, 1, 40, 0, &synced);
    expect_txns(0, 40);
    cut_and_check(vd, key, &t, synced, "rollback power cut");
    tu_rm_rf(root);
    free(root);
    free(vd);
}

static uint64_t file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void test_reuse(void) {
    tu_rng rng = {15};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    setup(&rng, key, &root, &vd);
    char *jp = journal_path(vd);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDWR, 0, &e), e);
    /* Until two new logs have started (a new header salt at bytes 8-39 of the journal). */
    uint8_t salt[32] = {0};
    int restarts = 0, k = 0, shrunk = 0;
    uint64_t longest = 0;
    for (; restarts < 2 && k < 20000; k++) {
        commit_frame(f, k % NCOMMITS);
        int fd = open(jp, O_RDONLY);
        uint8_t s[32];
        REQUIRE(fd >= 0 && pread(fd, s, 32, 8) == 32);
        close(fd);
        uint64_t len = file_size(jp);
        if (k > 0 && memcmp(s, salt, 32) != 0) {
            restarts++;
            printf("reuse: a new log after %d commits: the journal object is %llu bytes (the "
                   "old log's were %llu)\n",
                   k, (unsigned long long)len, (unsigned long long)longest);
            shrunk += len < longest; /* (truncated, the new log's header and first commit) */
        }
        memcpy(salt, s, 32);
        if (len > longest) longest = len;
    }
    REQUIRE(restarts == 2);
    CHECKF(!shrunk, "a new journal log cut the journal object back (want it written over the "
                    "old log's bytes)");
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    /* A writer that dies inside a log written over an older one: its first commits run the
     * journal past its limit (its first log), the next ones go over that log's bytes. */
    off_t synced = 0;
    int txns = k + 40;
    scp_volume_tag t = child_dies(vd, key, 0, txns, k + 5, &synced);
    expect_txns(0, NCOMMITS); /* (commit_frame(f, p) writes frame p at place p) */
    printf("reuse: the writer made %d commits; the journal object is %llu bytes\n", txns,
           (unsigned long long)file_size(jp));
    cut_and_check(vd, key, &t, synced, "reuse power cut");
    free(jp);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* Shared mode: a new log is written over the old one's bytes too (journal_drop, journal_reset
 * in commit.c), so the journal object keeps its length across logs and journal_room writes no
 * zeros for the next log; a fork reads every frame back while the logs restart under it. */
static void test_shared_reuse(void) {
    tu_rng rng = {19};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    setup(&rng, key, &root, &vd);
    char *jp = journal_path(vd);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDWR, 0, &e), e);
    scp_volume_set_shared(v);
    uint8_t salt[32] = {0}, zero[32] = {0};
    int restarts = 0, k = 0, shrunk = 0, badread = 0;
    uint64_t longest = 0;
    for (; restarts < 3 && k < 40000; k++) {
        commit_frame(f, k % NCOMMITS);
        int fd = open(jp, O_RDONLY);
        uint8_t s[32];
        REQUIRE(fd >= 0);
        if (pread(fd, s, 32, 8) != 32) memset(s, 0, 32); /* (main's drop: truncated) */
        close(fd);
        uint64_t len = file_size(jp);
        if (!memcmp(s, zero, 32)) continue; /* (dropped, the next log not begun yet) */
        if (memcmp(salt, zero, 32) && memcmp(s, salt, 32)) {
            restarts++;
            printf("sharedreuse: a new log after %d commits: the journal object is %llu bytes "
                   "(the old log's were %llu)\n",
                   k, (unsigned long long)len, (unsigned long long)longest);
            shrunk += len < longest;
            /* a fork that had followed the old log reads the new one */
            pid_t pid = fork();
            REQUIRE(pid >= 0);
            if (pid == 0) {
                int bad = 0;
                for (int p = 0; p < NCOMMITS && p <= k; p++) {
                    uint8_t b[FRAME], want[FRAME];
                    int last = k - ((k - p) % NCOMMITS); /* the last k' <= k at place p */
                    frame(want, last % NCOMMITS);
                    if (scp_vfile_pread(f, b, FRAME, (uint64_t)p * FRAME, &e) != FRAME ||
                        memcmp(b, want, FRAME))
                        bad++;
                }
                _exit(bad ? 1 : 0);
            }
            int st;
            REQUIRE(waitpid(pid, &st, 0) == pid);
            badread += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
        }
        memcpy(salt, s, 32);
        if (len > longest) longest = len;
    }
    REQUIRE(restarts == 3);
    CHECKF(!shrunk, "sharedreuse: a new journal log cut the journal object back in shared mode "
                    "(want it written over the old log's bytes)");
    CHECKF(!badread, "sharedreuse: %d forks read frames wrong after a new log", badread);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDONLY, 0, &e), e);
    expect_txns(0, NCOMMITS);
    int bad = 0;
    for (int p = 0; p < NCOMMITS; p++) {
        uint8_t b[FRAME], want[FRAME];
        int last = (k - 1) - (((k - 1) - p) % NCOMMITS);
        frame(want, last % NCOMMITS);
        bad += scp_vfile_pread(f, b, FRAME, (uint64_t)p * FRAME, &e) != FRAME ||
               memcmp(b, want, FRAME);
    }
    CHECKF(!bad, "sharedreuse: %d frames wrong after the reopen", bad);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    free(jp);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* Shared mode: process A (the fsyncer, as a PostgreSQL backend's WAL flush) and its fork B
 * (the writer). B writes frame k lazily, A fsyncs it; A reports each fsync's flushes, then its
 * last tag and the log's size after its first fsync (the last that synced the log). */
struct shared_report {
    long first, rest, most, fsyncs, tags;
    long grew;    /* fsyncs (after the first two) that found the journals longer than the last */
    long badread; /* frames A read back wrong after B's write (mode "sharedhint") */
    scp_volume_tag tag;
    off_t synced;
};

/* The bytes of every journal object of the volume (objects/<id>.j). */
static off_t journals_size(const char *vd) {
    char *objs = tu_path(vd, "objects");
    DIR *d = opendir(objs);
    off_t sum = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        struct stat st;
        if (n > 2 && !strcmp(de->d_name + n - 2, ".j") && fstatat(dirfd(d), de->d_name, &st, 0) == 0)
            sum += st.st_size;
    }
    if (d) closedir(d);
    free(objs);
    return sum;
}

/* Mode "sharedhint": the host writes the lock file's journal end hints (bytes 16384-24575,
 * never trusted) with values that name no record boundary of the log, or none at all. */
static void garble_jend_hints(const char *vd, int k) {
    /* (a frame adds about 8.5 KiB of records: these land inside B's newest records, before
     * them, past the log's end, or say nothing) */
    uint64_t h[1024];
    for (int i = 0; i < 1024; i++)
        h[i] = k % 6 == 5 ? 0 : k % 6 == 4 ? UINT64_MAX / 2 : (uint64_t)k * 9000 + (i % 7) * 1300 + 57;
    char *lp = tu_path(vd, "lock");
    int fd = open(lp, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || pwrite(fd, h, sizeof h, 16384) != (ssize_t)sizeof h) _exit(13);
    close(fd);
    free(lp);
}

enum { SHARED_PLAIN, SHARED_FAST, SHARED_HINT };
static void shared_a(const char *vd, const uint8_t key[SCP_VOLUME_KEY_LEN], int mode, tu_child *me) {
    int fast = mode == SHARED_FAST;
    scp_err e;
    struct shared_report r = {0};
    scp_volume *v = scp_volume_open(vd, key, NULL, &e);
    if (!v) _exit(2);
    scp_volume_set_shared(v);
    ntags = 0; /* (the count is the test's: a test before this one counted its own) */
    scp_volume_on_commit(v, count_tag, NULL);
    scp_vfile *f = scp_vfile_open(v, "wal", O_RDWR, 0, &e);
    scp_vfile *o = fast ? scp_vfile_open(v, "other", O_RDWR | O_CREAT, 0600, &e) : NULL;
    if (!f || (fast && !o)) _exit(2);
    int go[2], done[2];
    if (pipe(go) < 0 || pipe(done) < 0) _exit(2);
    pid_t b = fork();
    if (b < 0) _exit(2);
    if (b == 0) { /* B: a frame per turn, no fsync; then one more, and die */
        close(go[1]);
        close(done[0]);
        uint8_t buf[FRAME];
        char c;
        for (int k = 0; k <= NCOMMITS; k++) {
            if (read(go[0], &c, 1) != 1) _exit(5);
            frame(buf, k == NCOMMITS ? 999 : k);
            /* fast: take in A's last fsync of wal by a read of it, and the volume's newest
             * generation by a write of another file, so that the write of wal below may skip
             * the volume lock (writer_refresh): it must still go behind A's run */
            if (fast && k == NCOMMITS &&
                (scp_vfile_pread(f, buf, FRAME, FRAME, &e) != FRAME ||
                 scp_vfile_pwrite(o, buf, FRAME, 0, &e) != FRAME))
                _exit(12);
            if (fast && k == NCOMMITS) frame(buf, 999);
            if (scp_vfile_pwrite(f, buf, FRAME, (uint64_t)(k % NCOMMITS) * FRAME, &e) != FRAME)
                _exit(6);
            if (mode == SHARED_HINT) garble_jend_hints(vd, k);
            if (write(done[1], "w", 1) != 1) _exit(7);
        }
        _exit(0);
    }
    close(go[0]);
    close(done[1]);
    char c;
    off_t jlen = 0;
    for (int k = 0; k < NCOMMITS; k++) {
        if (write(go[1], "g", 1) != 1 || read(done[0], &c, 1) != 1) _exit(8);
        if (mode == SHARED_HINT) { /* (a read follows B's records: with the hints garbled) */
            uint8_t want[FRAME], got[FRAME];
            frame(want, k);
            r.badread += scp_vfile_pread(f, got, FRAME, (uint64_t)k * FRAME, &e) != FRAME ||
                         memcmp(got, want, FRAME) != 0;
        }
        long before = nflush;
        if (scp_vfile_fsync(f, &e) < 0) _exit(9);
        long n = nflush - before;
        /* (a journal longer at this flush than at the last: on ext4 the flush also wrote the
         * inode and the allocation) */
        off_t js = journals_size(vd);
        if (k >= 2 && js > jlen) r.grew++;
        jlen = js;
        if (k < 2) r.first += n;
        else r.rest += n;
        if (k >= 2 && n > r.most) r.most = n;
        r.fsyncs++;
        if (k == 0) {
            char *lp = tu_path(vd, "manifest.log");
            struct stat st;
            if (stat(lp, &st) < 0) _exit(4);
            r.synced = st.st_size;
            free(lp);
        }
    }
    scp_volume_tag_get(v, &r.tag);
    r.tags = ntags;
    /* B writes once more (over frame 0, lazily): it must go behind A's last records */
    if (write(go[1], "g", 1) != 1 || read(done[0], &c, 1) != 1) _exit(10);
    int st;
    if (waitpid(b, &st, 0) != b || !WIFEXITED(st) || WEXITSTATUS(st) != 0) _exit(11);
    tu_child_exit(me, &r, sizeof r);
}

static void test_shared(int mode) {
    const char *name = mode == SHARED_FAST ? "sharedfast" : mode == SHARED_HINT ? "sharedhint" : "shared";
    tu_rng rng = {14};
    printf("%s:\n", name);
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    setup(&rng, key, &root, &vd);
    struct shared_report r;
    tu_child a;
    if (tu_child_start(&a)) shared_a(vd, key, mode, &a);
    REQUIRE(tu_child_wait(&a, &r, sizeof r));
    printf("%s: first two fsyncs %ld flushes, then %ld flushes for %ld fsyncs (at most %ld "
           "per fsync), %ld tags; the journals grew between %ld of those fsyncs\n",
           name, r.first, r.rest, r.fsyncs - 2, r.most, r.tags, r.grew);
    /* Preallocated journals: the appenders keep the journal object ahead of the log with
     * zeros, so most fsyncs flush a journal that did not grow (before: every one grew) */
    CHECKF(r.grew <= NCOMMITS / 8, "%s: the journals grew between %ld of %d fsyncs, want at "
                                   "most %d",
           name, r.grew, NCOMMITS - 2, NCOMMITS / 8);
    CHECKF(r.badread == 0, "%s: %ld frames read back wrong after the other process's write",
           name, r.badread);
    CHECKF(r.most <= 1, "shared: an fsync after another process's write took %ld flushes, want "
                        "at most 1 (plain's count)",
           r.most);
    CHECKF(r.tags == NCOMMITS, "shared: %ld tags reported for %d fsyncs", r.tags, NCOMMITS);
    /* The power cut: manifest.log's appends after its last sync are lost; the fsynced frames
     * stay (the child's write after them went behind their records). That write (frame 999 at
     * place 0) kept its journal records here, past the root the manifest names: the open takes
     * it since step 2 of publishing lazily (settle S2-S3), a state the file had after its last
     * fsync; before, it went back to the fsynced frame. Either is right. */
    expect_txns(0, NCOMMITS);
    alt_place = 0;
    alt_frame = 999;
    cut_and_check(vd, key, &r.tag, r.synced, name);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

#define RBLK 512             /* InnoDB's buffered redo log block */
#define RSTART (16u << 10)    /* written before the reservation */
#define RSIZE (1u << 20)      /* reserved by the extending truncate */
#define RCOMMITS 64           /* eight 4 KiB chunks */

static void redo_block(uint8_t *b, int k) {
    for (int i = 0; i < RBLK; i++) b[i] = (uint8_t)(k * 7 + i + 1);
}

/* Blocks [from, to) of the redo file, each written and fsynced; the most flushes one commit
 * after the first two took. */
static long redo_commits(scp_vfile *f, int from, int to) {
    scp_err e;
    uint8_t b[RBLK];
    long most = 0;
    for (int k = from; k < to; k++) {
        redo_block(b, k);
        long before = nflush;
        REQUIRE(scp_vfile_pwrite(f, b, RBLK, RSTART + (uint64_t)k * RBLK, &e) == RBLK);
        REQUIRE_OK(scp_vfile_fsync(f, &e), e);
        if (k >= from + 2 && nflush - before > most) most = nflush - before;
    }
    return most;
}

static void test_redolog(void) {
    tu_rng rng = {29};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    scp_volume *v = tu_new_volume(&rng, "redolog", key, &root, &vd);
    uint8_t *model = calloc(1, RSIZE);
    REQUIRE(model);
    tu_fill(&rng, model, RSTART);
    REQUIRE_OK(tu_vput(v, "redo", model, RSTART, &e), e);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "redo", O_RDWR, 0, &e), e);
    REQUIRE_OK(scp_vfile_truncate(f, RSIZE, &e), e);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    long most = redo_commits(f, 0, RCOMMITS);
    for (int k = 0; k < RCOMMITS; k++) redo_block(model + RSTART + (size_t)k * RBLK, k);
    printf("redolog: at most %ld flushes per 512-byte commit into reserved chunks\n", most);
    CHECKF(most <= 1, "a commit that filled a reserved chunk took %ld flushes, want 1", most);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);

    /* A writer whose last commit filled a reserved chunk dies; the power cut loses the
     * chunk's bytes in .d (never synced now: its copy in the journal is what is durable). */
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        scp_volume *cv = scp_volume_open(vd, key, NULL, &e);
        scp_vfile *cf = cv ? scp_vfile_open(cv, "redo", O_RDWR, 0, &e) : NULL;
        if (!cf) _exit(2);
        (void)redo_commits(cf, RCOMMITS, 2 * RCOMMITS + 1); /* the last starts a chunk */
        kill(getpid(), SIGKILL);
        _exit(3);
    }
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the redo writer did not get to its kill (%d)", st);
    for (int k = RCOMMITS; k <= 2 * RCOMMITS; k++) redo_block(model + RSTART + (size_t)k * RBLK, k);
    char *dpath = tu_only_object(vd, ".d");
    int fd = open(dpath, O_WRONLY);
    REQUIRE(fd >= 0);
    uint8_t zero[4096] = {0};
    REQUIRE(pwrite(fd, zero, sizeof zero, RSTART + 2 * RCOMMITS * RBLK) == (ssize_t)sizeof zero);
    close(fd);
    free(dpath);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    size_t len = 0;
    uint8_t *got = tu_vget(v, "redo", &len, &e);
    CHECKF(got && len == RSIZE, "redolog: cannot read the file back after the power cut (%s)", e.msg);
    if (got && len == RSIZE) {
        size_t k = 0;
        while (k < RSIZE && got[k] == model[k]) k++;
        CHECKF(k == RSIZE, "redolog: after the power cut the file differs at byte %zu", k);
    }
    free(got);
    CHECK_OK(scp_volume_close(v, &e), e);
    free(model);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

static void die_synced(scp_volume *v) {
    (void)v;
    _exit(0); /* (a committer killed past its commit point, before its manifest-log append) */
}

static int frame_is(scp_vfile *f, int k, int want, const char *what) {
    scp_err e;
    tu_err_clear(&e);
    uint8_t b[FRAME], w[FRAME];
    frame(w, want);
    ssize_t r = scp_vfile_pread(f, b, FRAME, (uint64_t)k * FRAME, &e);
    CHECKF(r == FRAME && memcmp(b, w, FRAME) == 0, "deadmark: %s: frame %d is not frame %d's bytes (%zd: %s)",
           what, k, want, r, r < 0 ? e.msg : "other bytes");
    return r == FRAME && memcmp(b, w, FRAME) == 0;
}

static void test_deadmark(void) {
    tu_rng rng = {.s = 0xdead};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    setup(&rng, key, &root, &vd);
    scp_err e;
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDWR, 0, &e), e);
    uint8_t b[FRAME];
    REQUIRE(scp_vfile_pread(f, b, FRAME, 0, &e) == FRAME); /* (loaded at the state before) */
    tu_child c;
    if (tu_child_start(&c)) {
        scp_err ce;
        tu_err_clear(&ce);
        scp_volume *w = scp_volume_open(vd, key, NULL, &ce);
        scp_vfile *g = w ? scp_vfile_open(w, "wal", O_RDWR, 0, &ce) : NULL;
        if (!g) _exit(2);
        for (int k = 0; k < 3; k++) commit_frame(g, k); /* (the third goes one-flush) */
        vol_test_oneflush_synced = die_synced;
        commit_frame(g, 3);
        _exit(5); /* (the hook did not run: no one-flush commit) */
    }
    REQUIRE(tu_child_wait(&c, NULL, 0));
    frame_is(f, 3, 3, "the process that had the volume open, after the committer died");
    tu_child o;
    if (tu_child_start(&o)) { /* a process that opens the volume now */
        scp_err ce;
        tu_err_clear(&ce);
        scp_volume *w = scp_volume_open(vd, key, NULL, &ce);
        scp_vfile *g = w ? scp_vfile_open(w, "wal", O_RDONLY, 0, &ce) : NULL;
        CHECKF(g != NULL, "deadmark: a later open: %s", ce.msg);
        if (g) {
            frame_is(g, 3, 3, "a process that opened later");
            scp_vfile_close(g, &ce);
        }
        if (w) scp_volume_close(w, &ce);
        tu_child_exit(&o, NULL, 0);
    }
    CHECK(tu_child_wait(&o, NULL, 0));
    commit_frame(f, 4);
    for (int k = 0; k <= 4; k++) frame_is(f, k, k, "the first process after its own commit");
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDONLY, 0, &e), e);
    for (int k = 0; k <= 4; k++) frame_is(f, k, k, "reopened");
    CHECK(scp_volume_verify(v, NULL, NULL, NULL, &e) == 0);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(root);
    free(root);
    free(vd);
    printf("deadmark: a one-flush commit whose committer died before its log append is taken by "
           "the processes that have the volume open, as by those that open it later\n");
}

static void test_forkrepair(void) {
    tu_rng rng = {.s = 0xf0f0};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    setup(&rng, key, &root, &vd);
    scp_err e;
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDWR, 0, &e), e);
    for (int round = 0; round < 8; round++) /* (one-flush from the third on; a journal of ~4 MiB) */
        for (int k = 0; k < NCOMMITS; k++) commit_frame(f, k);
    uint64_t jbytes = 0; /* (wal's journal: the volume's only one) */
    REQUIRE(tu_objects(vd, ".j", &jbytes) == 1 && jbytes > 0);
    long long jsz = (long long)jbytes;
    int rd[2];
    REQUIRE(pipe(rd) == 0);
    tu_child c;
    if (tu_child_start(&c)) {
        close(rd[0]);
        scp_err ce;
        tu_err_clear(&ce);
        long long r0 = tu_rchar();
        /* the repair, with a file of the child's own: no read of wal */
        scp_vfile *g = scp_vfile_open(v, "child", O_RDWR | O_CREAT, 0600, &ce);
        long long got = tu_rchar() - r0;
        if (write(rd[1], &got, sizeof got) != (ssize_t)sizeof got) _exit(3);
        if (!g) _exit(4);
        scp_vfile_close(g, &ce);
        for (int k = 0; k < NCOMMITS; k++)
            if (!frame_is(f, k, k, "forkrepair: the child")) _exit(5);
        _exit(0);
    }
    close(rd[1]);
    long long got = -1;
    REQUIRE(read(rd[0], &got, sizeof got) == (ssize_t)sizeof got);
    close(rd[0]);
    CHECK(tu_child_wait(&c, NULL, 0));
    CHECKF(got >= 0 && got < jsz / 2, "forkrepair: the child's repair read %lld bytes (the journal: %lld)",
           got, jsz);
    printf("forkrepair: a fork child's repair read %lld bytes (the listed journal: %lld)\n", got, jsz);
    /* a committer of the family dies past its commit point: the next child's repair takes it */
    CHECK_OK(scp_vfile_close(f, &e), e); /* (its writer lock: the child writes wal) */
    tu_child a;
    if (tu_child_start(&a)) {
        scp_err ce;
        scp_vfile *g = scp_vfile_open(v, "wal", O_RDWR, 0, &ce);
        if (!g) _exit(4);
        for (int k = 0; k < 3; k++) commit_frame(g, k); /* (the third goes one-flush) */
        vol_test_oneflush_synced = die_synced;
        uint8_t b[FRAME];
        frame(b, 3 + NCOMMITS / 2); /* (frame 3 gets another frame's bytes) */
        if (scp_vfile_pwrite(g, b, FRAME, 3 * FRAME, &ce) != FRAME) _exit(6);
        (void)scp_vfile_fsync(g, &ce);
        _exit(5);
    }
    REQUIRE(tu_child_wait(&a, NULL, 0));
    tu_child b;
    if (tu_child_start(&b)) {
        scp_err ce;
        scp_vfile *g = scp_vfile_open(v, "child2", O_RDWR | O_CREAT, 0600, &ce);
        if (!g) fprintf(stderr, "forkrepair: the next fork child cannot open a file: %s\n", ce.msg);
        if (!g) _exit(4);
        scp_vfile_close(g, &ce);
        g = scp_vfile_open(v, "wal", O_RDONLY, 0, &ce);
        if (!g) fprintf(stderr, "forkrepair: the next fork child cannot open wal: %s\n", ce.msg);
        if (!g) _exit(6);
        (void)frame_is(g, 3, 3 + NCOMMITS / 2, "forkrepair: the next fork child");
        scp_vfile_close(g, &ce);
        tu_child_exit(&b, NULL, 0);
    }
    CHECK(tu_child_wait(&b, NULL, 0));
    f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDONLY, 0, &e), e);
    (void)frame_is(f, 3, 3 + NCOMMITS / 2, "forkrepair: the parent after the dead committer");
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDONLY, 0, &e), e);
    (void)frame_is(f, 3, 3 + NCOMMITS / 2, "forkrepair: reopened");
    CHECK(scp_volume_verify(v, NULL, NULL, NULL, &e) == 0);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
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
    if (!strcmp(which, "all") || !strcmp(which, "rollback")) test_rollback();
    if (!strcmp(which, "all") || !strcmp(which, "reuse")) test_reuse();
    if (!strcmp(which, "all") || !strcmp(which, "redolog")) test_redolog();
    if (!strcmp(which, "all") || !strcmp(which, "sharedreuse")) test_shared_reuse();
    if (!strcmp(which, "all") || !strcmp(which, "shared")) test_shared(SHARED_PLAIN);
    if (!strcmp(which, "all") || !strcmp(which, "sharedfast")) test_shared(SHARED_FAST);
    if (!strcmp(which, "all") || !strcmp(which, "sharedhint")) test_shared(SHARED_HINT);
    if (!strcmp(which, "all") || !strcmp(which, "deadmark")) test_deadmark();
    if (!strcmp(which, "all") || !strcmp(which, "forkrepair")) test_forkrepair();
    return tu_exit_code("test_volume_oneflush");
}
