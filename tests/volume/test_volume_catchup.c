/* test_volume_catchup - what a shared-mode catch-up of the manifest log costs, and that the
 * tags it no longer computes at once are still right (docs/volume-format.md, "Manifest log",
 * catch-up; "Shared mode").
 *
 * The binary wraps pread and scp_hmac (-Wl,--wrap) to count, in one process, the reads of the
 * manifest slots' headers and the tag HMACs that its catch-ups and its own lazy commits make.
 *   catchup   two processes of a program in shared mode (PostgreSQL's backends): B writes
 *             "rel" (a lazy commit: a manifest-log record each), A then reads "rel" (its
 *             catch-up walks B's record under the volume lock) and writes "wal" (a lazy commit
 *             of its own), 64 times. A's catch-ups read no slot header (the lock file's fold
 *             epoch did not move: no slot was written) and neither they nor A's lazy commits
 *             compute a tag (before: two header reads per catch-up, an HMAC per catch-up and
 *             per commit). Then A fsyncs "wal" (a durable commit: its tag is reported), B
 *             catches up and reads its tag, and A reads its tag and the volume's info tag: all
 *             agree with the reported tag. Then A closes (a fold: the state into a slot, a new
 *             log; the epoch moves): B's next catch-up takes in that state, and the volume
 *             opens with the reported tag after both closed. The largest allocation of A's
 *             catch-ups and writes (malloc wrapped): a follow reads what B appended into a
 *             buffer that size, not one as long as the journal object.
 *   writers   A and B write one file in turns: A's write follows B's appends under the writer
 *             lock with one read of the journal's header (pread wrapped), not two.
 *   tablehash the same in the last segment of the first of two table pages: A's follow and
 *             its own commit rehash that segment of that page (scp_sha256_mid_update wrapped),
 *             not the whole page the follow changed nor the file's last page.
 *   opener    A writes a file (lazy commits, shared mode), then B opens it: B's load walks A's
 *             log without authenticating any chunk record's ciphertext (scp_aead_open wrapped:
 *             no chunk-sized open during the open; each chunk is checked when read), and reads
 *             every piece back right.
 *   lazylist  one process, a lazy write and an fsync in turns: each write lists the file in the
 *             lock file's list of lazy files with no pread and one pwrite of the lock file.
 *   endmark   shared mode, lazy writes until the log passes its limit (a durable commit, its
 *             commit record not queued): no pwrite of a journal is an end mark alone.
 *   dropkill  a writer killed at each step of a dropped log written over (before and after the
 *             drop's zeros, after the new log's header, after its first records) while another
 *             process reads the file: it reads every piece right, writes on, and the volume
 *             reopens and verifies with every piece.
 *   pwfail    a shared-mode writer whose journal pwrite fails once (EIO; then ENOSPC after
 *             half of it was written) in the middle of a run of lazy commits (a write's, then
 *             an fsync's one-flush run) writes on and fsyncs: the failed call reports the
 *             error, every write that returned reads back in the writer, in another process
 *             meanwhile and in a fresh open after (main: the next write began a new log over
 *             lazy commits that .t lacks, and the other process could not load the file).
 *   loadfail  one shared-mode process whose journal pwrite fails once (the rejoin: the file is
 *             taken in again from .t and the log) and whose load then fails once too (a pread of
 *             .t, or of the journal): once the fault is gone, with no commit in between, every
 *             read (or, first, a write) succeeds (main: the file stayed unloaded, every read
 *             failing, until its next commit moved the manifest's entry: file_refresh reloaded
 *             only a stale log or an entry naming another root). And outside shared mode,
 *             an fsync whose apply fails after its commit point (a .t pwrite) and whose reload
 *             then fails (a .t pread), the writer lock held: the same.
 *   torn      a reader follows (step 3: past the commit the manifest names) while the writer's
 *             pwrite of a commit is landing, torn: the chunk record's index not there yet (or
 *             another chunk's index there, as in a log written over), the commit record there.
 *             Every place reads right (see torn_with).
 */
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sys/stat.h>

#include "crypto/crypto.h"
#include "volume/format.h"
#include "volume/internal.h"
#include "scenario.h"

ssize_t __real_pread(int fd, void *buf, size_t n, off_t off);
ssize_t __wrap_pread(int fd, void *buf, size_t n, off_t off);
ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
int __real_fcntl(int fd, int cmd, ...);
int __wrap_fcntl(int fd, int cmd, ...);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
int __real_scp_hmac(const uint8_t *key, size_t key_len, const struct scp_buf *parts, size_t n,
                    uint8_t out[32], scp_err *err);
int __wrap_scp_hmac(const uint8_t *key, size_t key_len, const struct scp_buf *parts, size_t n,
                    uint8_t out[32], scp_err *err);
void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
void __real_scp_sha256_mid_update(scp_sha256_mid *m, const void *p, size_t n);
void __wrap_scp_sha256_mid_update(scp_sha256_mid *m, const void *p, size_t n);
int __real_scp_aead_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                         size_t aad_len, const uint8_t *ct, size_t len, const uint8_t tag[16],
                         uint8_t *pt, scp_err *err);
int __wrap_scp_aead_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                         size_t aad_len, const uint8_t *ct, size_t len, const uint8_t tag[16],
                         uint8_t *pt, scp_err *err);

#define ROUNDS 64
#define PIECE 4096
/* The AAD of a journal commit record (format.c JAAD_LEN: file id, offset, record header and
 * chain value); a chunk's is 56 bytes, a manifest-log record's 92 */
#define COMMIT_AAD_LEN (SCP_FILEID_LEN + 8 + SCP_JREC_HDR_LEN + SCP_HASH_LEN)
/* Larger than a chunk record (what a write seals): a buffer for more than one record, as a
 * follow reads (the other process's chunk record and commit record) */
#define FOLLOW_MIN (SCP_JCHUNK_HDR_LEN + PIECE)

static int counting;
static long lock_reads, lock_writes; /* preads and pwrites of the lock file while counting */
static long vol_locks; /* takes of the volume lock (the lock file's byte 0) while counting */
static long j_writes, j_lone_marks; /* pwrites of journals not all zeros; end marks alone */
/* dropkill: the step of a dropped log at which this process kills itself (0: none), and whether
 * it saw the drop (a write of zeros over a journal's header and first record header) */
enum { DK_NONE, DK_BEFORE_DROP, DK_AFTER_DROP, DK_AFTER_HEADER, DK_AFTER_RECORD, DK_N };
static int dk_point, dk_dropped;
/* dropkill: the child's step, in memory the reader sees (0 writing the first log, 1 the drop's
 * zeros written, 2 the new log's header, 3 its first record), for the reader's report */
static volatile int *dk_phase;
/* pwfail: the errno the next journal pwrite of records fails with (0: none), once; ENOSPC
 * writes half of it first (a short write; -ENOSPC: the call for the rest then fails) */
static int pw_fail;
/* loadfail: once pw_fail has fired, the next pread of an object whose name ends in this (".t",
 * ".j") fails with EIO, once: the shared-mode rejoin's load of the file fails half-way */
static const char *pr_fail_suffix;
static int pr_fail_armed;
/* loadfail ordinary: the next pwrite of a chunk table object (.t) fails with ENOSPC, once (an
 * fsync's apply after its commit point), arming pr_fail_suffix as pw_fail does */
static int t_fail;
/* torn: the writer's next journal pwrite that begins with a chunk record is torn as a reader's
 * copy that overtook the writer's part-way sees it: all of it but the record's index (bytes
 * 8-15, the previous append's end mark, zeros, until then), a pause while tn[0] is 2 (the
 * reader follows meanwhile: tn[1] to 2 when done), then the index */
static int tn_arm;
static volatile int *tn;
static long slot_reads, hmacs, jhdr_reads, chunk_opens, commit_opens, big_allocs;
static size_t table_bytes; /* hashed by scp_sha256_mid_update: the chunk table's pages, root */
static size_t max_alloc; /* the largest malloc of libscp while counting */

void *__wrap_malloc(size_t n) {
    if (counting && n > max_alloc) max_alloc = n;
    if (counting && n > FOLLOW_MIN) big_allocs++;
    return __real_malloc(n);
}

/* Does the path fd names end in `suffix`? */
static int fd_ends_with(int fd, const char *suffix) {
    char p[64], t[4096];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, t, sizeof t - 1);
    size_t k = strlen(suffix);
    if (n < 0 || (size_t)n < k) return 0;
    t[n] = 0;
    return !strcmp(t + n - k, suffix);
}

/* Is fd a file's journal object (objects/....j)? */
static int is_journal(int fd) { return fd_ends_with(fd, ".j"); }

/* Is fd one of the volume's manifest slots (manifest.0, manifest.1)? */
static int is_slot(int fd) { return fd_ends_with(fd, "/manifest.0") || fd_ends_with(fd, "/manifest.1"); }

/* (every command the library uses takes one argument, a pointer or an int: passed on as the
 * pointer it is, or the int widened, as the syscall reads it) */
int __wrap_fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (counting && (cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW) && fd_ends_with(fd, "/lock")) {
        const struct flock *fl = arg;
        if (fl->l_type == F_WRLCK && fl->l_start == 0 && fl->l_len == 1) vol_locks++;
    }
    return __real_fcntl(fd, cmd, arg);
}

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off) {
    if (counting && fd_ends_with(fd, "/lock")) lock_writes++;
    if (counting && is_journal(fd)) {
        static const uint8_t zero[SCP_JREC_HDR_LEN];
        size_t z = 0;
        while (z < n && !((const uint8_t *)buf)[z]) z++;
        if (z < n) j_writes++; /* (zeros: journal_room's, ahead of a growing log, or a mark) */
        j_lone_marks += n == SCP_JREC_HDR_LEN && off > 0 && !memcmp(buf, zero, n);
    }
    if (pw_fail && is_journal(fd)) {
        size_t z = 0;
        while (z < n && !((const uint8_t *)buf)[z]) z++;
        if (z < n) { /* (not journal_room's zeros) */
            int err = pw_fail;
            pw_fail = 0;
            if (pr_fail_suffix) pr_fail_armed = 1;
            if (err == ENOSPC && n > 1) {
                ssize_t r = __real_pwrite(fd, buf, n / 2, off);
                if (r > 0) {
                    pw_fail = -ENOSPC; /* (the call for the rest fails outright) */
                    return r;
                }
            }
            errno = err < 0 ? -err : err;
            return -1;
        }
    }
    if (t_fail && fd_ends_with(fd, ".t")) {
        t_fail = 0;
        if (pr_fail_suffix) pr_fail_armed = 1;
        errno = ENOSPC;
        return -1;
    }
    if (tn_arm && n > SCP_JCHUNK_HDR_LEN && off >= SCP_JRN_HDR_LEN &&
        scp_get_u32(buf) == SCP_JREC_CHUNK && is_journal(fd)) {
        int mode = tn_arm;
        tn_arm = 0;
        const uint8_t *p = buf;
        /* (mode 2: the index bytes of another chunk's header there first, as a log written
         * over holds the dropped log's header at that offset) */
        uint8_t other[8];
        memcpy(other, p + 8, 8);
        other[7] ^= 5;
        if (__real_pwrite(fd, p, 8, off) != 8 || __real_pwrite(fd, p + 16, n - 16, off + 16) != (ssize_t)(n - 16) ||
            (mode == 2 && __real_pwrite(fd, other, 8, off + 8) != 8))
            return -1;
        __atomic_store_n(&tn[0], 2, __ATOMIC_SEQ_CST);
        for (int i = 0; i < 30000 && __atomic_load_n(&tn[1], __ATOMIC_SEQ_CST) < 2; i++) usleep(1000);
        return __real_pwrite(fd, p + 8, 8, off + 8) == 8 ? (ssize_t)n : -1;
    }
    if (dk_point && is_journal(fd)) {
        size_t z = 0;
        while (z < n && !((const uint8_t *)buf)[z]) z++;
        int drop = off == 0 && n == SCP_JRN_HDR_LEN + SCP_JREC_HDR_LEN && z == n;
        int header = off == 0 && n >= SCP_JRN_HDR_LEN && z < n;
        if (drop && dk_point == DK_BEFORE_DROP) raise(SIGKILL);
        ssize_t r = __real_pwrite(fd, buf, n, off);
        if (drop) dk_dropped = 1;
        if (dk_phase) {
            int ph = drop ? 1 : dk_dropped && header ? 2 : dk_dropped && off == SCP_JRN_HDR_LEN && z < n ? 3 : 0;
            if (ph > *dk_phase) __atomic_store_n(dk_phase, ph, __ATOMIC_SEQ_CST);
        }
        if ((drop && dk_point == DK_AFTER_DROP) ||
            (dk_dropped && header && dk_point == DK_AFTER_HEADER) ||
            (dk_dropped && off == SCP_JRN_HDR_LEN && z < n && dk_point == DK_AFTER_RECORD))
            raise(SIGKILL);
        return r;
    }
    return __real_pwrite(fd, buf, n, off);
}

ssize_t __wrap_pread(int fd, void *buf, size_t n, off_t off) {
    if (counting && fd_ends_with(fd, "/lock")) lock_reads++;
    if (counting && is_slot(fd)) slot_reads++;
    if (counting && off == 0 && n == SCP_JRN_HDR_LEN && is_journal(fd)) jhdr_reads++;
    if (pr_fail_armed && pr_fail_suffix && fd_ends_with(fd, pr_fail_suffix)) {
        pr_fail_armed = 0;
        pr_fail_suffix = NULL; /* (fired: the test checks it did) */
        errno = EIO;
        return -1;
    }
    return __real_pread(fd, buf, n, off);
}

int __wrap_scp_hmac(const uint8_t *key, size_t key_len, const struct scp_buf *parts, size_t n,
                    uint8_t out[32], scp_err *err) {
    if (counting) hmacs++;
    return __real_scp_hmac(key, key_len, parts, n, out, err);
}


void __wrap_scp_sha256_mid_update(scp_sha256_mid *m, const void *p, size_t n) {
    if (counting) table_bytes += n;
    __real_scp_sha256_mid_update(m, p, n);
}

int __wrap_scp_aead_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                         size_t aad_len, const uint8_t *ct, size_t len, const uint8_t tag[16],
                         uint8_t *pt, scp_err *err) {
    if (counting && len == PIECE) chunk_opens++; /* (the volume's chunk size) */
    if (counting && aad_len == COMMIT_AAD_LEN) commit_opens++;
    return __real_scp_aead_open(key, nonce, aad, aad_len, ct, len, tag, pt, err);
}

static scp_volume_tag reported;
static long nreported;
static void on_tag(void *ctx, const scp_volume_tag *t) {
    (void)ctx;
    reported = *t;
    nreported++;
}

struct report {
    long slot_reads, hmacs, catchups, badread, nreported;
    size_t max_alloc;
    int tags_agree, info_agrees, b_agrees, b_refolded;
    uint64_t b_gen, a_gen;
    scp_volume_tag tag;
};

static void piece(uint8_t *b, int who, int k) {
    for (int i = 0; i < PIECE; i++) b[i] = (uint8_t)(who * 97 + k * 31 + i);
}

static void run_a(const char *vd, const uint8_t key[SCP_VOLUME_KEY_LEN], tu_child *me) {
    scp_err e;
    struct report r = {0};
    scp_volume *v = scp_volume_open(vd, key, NULL, &e);
    if (!v) _exit(2);
    scp_volume_set_shared(v);
    scp_volume_on_commit(v, on_tag, NULL);
    scp_vfile *wal = scp_vfile_open(v, "wal", O_RDWR, 0, &e);
    scp_vfile *rel = scp_vfile_open(v, "rel", O_RDWR, 0, &e);
    if (!wal || !rel) _exit(2);
    int go[2], done[2];
    if (pipe(go) < 0 || pipe(done) < 0) _exit(2);
    pid_t b = fork();
    if (b < 0) _exit(2);
    if (b == 0) { /* B: a piece of rel per turn, no fsync; then the tag checks */
        close(go[1]);
        close(done[0]);
        uint8_t buf[PIECE];
        char c;
        for (int k = 0; k < ROUNDS; k++) {
            if (read(go[0], &c, 1) != 1) _exit(5);
            piece(buf, 1, k);
            if (scp_vfile_pwrite(rel, buf, PIECE, (uint64_t)k * PIECE, &e) != PIECE) _exit(6);
            if (write(done[1], "w", 1) != 1) _exit(7);
        }
        /* After A's fsync: catch up (a read of wal), then the tag of the state taken in, in
         * the pipe as 8 + 40 bytes (generation, tag); then after A's fold, the same again. */
        for (int round = 0; round < 2; round++) {
            if (read(go[0], &c, 1) != 1) _exit(8);
            if (scp_vfile_pread(wal, buf, PIECE, 0, &e) != PIECE) _exit(9);
            scp_volume_info info;
            if (scp_volume_info_get(v, &info, &e) < 0) _exit(10);
            scp_volume_tag t;
            scp_volume_tag_get(v, &t);
            uint8_t out[8 + 2 * SCP_VOLUME_TAG_LEN];
            memcpy(out, &info.generation, 8);
            memcpy(out + 8, t.bytes, SCP_VOLUME_TAG_LEN);
            memcpy(out + 8 + SCP_VOLUME_TAG_LEN, info.tag.bytes, SCP_VOLUME_TAG_LEN);
            if (write(done[1], out, sizeof out) != (ssize_t)sizeof out) _exit(11);
        }
        if (scp_vfile_close(wal, &e) < 0 || scp_vfile_close(rel, &e) < 0 ||
            scp_volume_close(v, &e) < 0)
            _exit(12);
        _exit(0);
    }
    close(go[0]);
    close(done[1]);
    char c;
    uint8_t buf[PIECE], want[PIECE];
    for (int k = 0; k < ROUNDS; k++) {
        if (write(go[1], "g", 1) != 1 || read(done[0], &c, 1) != 1) _exit(13);
        counting = 1;
        /* the catch-up: B's record of rel, walked under the volume lock */
        piece(want, 1, k);
        r.badread += scp_vfile_pread(rel, buf, PIECE, (uint64_t)k * PIECE, &e) != PIECE ||
                     memcmp(buf, want, PIECE) != 0;
        /* a lazy commit of A's own */
        piece(buf, 2, k);
        if (scp_vfile_pwrite(wal, buf, PIECE, (uint64_t)k * PIECE, &e) != PIECE) _exit(14);
        counting = 0;
        r.catchups++;
    }
    r.slot_reads = slot_reads;
    r.hmacs = hmacs;
    r.max_alloc = max_alloc;
    /* A durable commit: its tag is reported (computed then) */
    if (scp_vfile_fsync(wal, &e) < 0) _exit(15);
    r.nreported = nreported;
    scp_volume_tag t;
    scp_volume_tag_get(v, &t);
    scp_volume_info info;
    if (scp_volume_info_get(v, &info, &e) < 0) _exit(16);
    r.tags_agree = !memcmp(t.bytes, reported.bytes, SCP_VOLUME_TAG_LEN);
    r.info_agrees = !memcmp(info.tag.bytes, reported.bytes, SCP_VOLUME_TAG_LEN);
    r.a_gen = info.generation;
    uint8_t got[8 + 2 * SCP_VOLUME_TAG_LEN];
    if (write(go[1], "g", 1) != 1 || read(done[0], got, sizeof got) != (ssize_t)sizeof got) _exit(17);
    memcpy(&r.b_gen, got, 8);
    r.b_agrees = r.b_gen == info.generation &&
                 !memcmp(got + 8, reported.bytes, SCP_VOLUME_TAG_LEN) &&
                 !memcmp(got + 8 + SCP_VOLUME_TAG_LEN, reported.bytes, SCP_VOLUME_TAG_LEN);
    r.tag = reported;
    /* A fold: A closes (the state into a slot under the same generation and tag, a new log:
     * the epoch moves); B's next catch-up must take it in */
    if (scp_vfile_close(wal, &e) < 0 || scp_vfile_close(rel, &e) < 0 || scp_volume_close(v, &e) < 0)
        _exit(18);
    if (write(go[1], "g", 1) != 1 || read(done[0], got, sizeof got) != (ssize_t)sizeof got) _exit(19);
    uint64_t bg;
    memcpy(&bg, got, 8);
    r.b_refolded = bg == r.a_gen && !memcmp(got + 8 + SCP_VOLUME_TAG_LEN, reported.bytes,
                                            SCP_VOLUME_TAG_LEN);
    int st;
    if (waitpid(b, &st, 0) != b || !WIFEXITED(st) || WEXITSTATUS(st) != 0) _exit(21);
    tu_child_exit(me, &r, sizeof r);
}

/* A new volume holding the named files (NULL-terminated), each `pieces` pieces of zero bytes
 * (0: ROUNDS), synced and closed: the test's children open it themselves. */
static void make_zero_volume(uint64_t seed, const char *name, const char *const *files,
                             size_t pieces, uint8_t key[SCP_VOLUME_KEY_LEN], char **root,
                             char **vd) {
    tu_rng rng = {seed};
    scp_err e;
    scp_volume *v = tu_new_volume(&rng, name, key, root, vd);
    size_t len = (pieces ? pieces : ROUNDS) * PIECE;
    uint8_t *z = calloc(1, len);
    REQUIRE(z);
    for (; *files; files++) REQUIRE_OK(tu_vput(v, *files, z, len, &e), e);
    free(z);
    REQUIRE_OK(scp_volume_sync(v, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
}

/* make_zero_volume with the one file "wal" of `pieces` pieces, opened (*v; put in shared mode
 * first when shared is set) and "wal" opened for reading and writing. */
static scp_vfile *open_zero_wal(uint64_t seed, const char *name, size_t pieces, int shared,
                                uint8_t key[SCP_VOLUME_KEY_LEN], char **root, char **vd,
                                scp_volume **v) {
    scp_err e;
    make_zero_volume(seed, name, (const char *const[]){"wal", NULL}, pieces, key, root, vd);
    *v = REQUIRE_PTR(scp_volume_open(*vd, key, NULL, &e), e);
    if (shared) scp_volume_set_shared(*v);
    return REQUIRE_PTR(scp_vfile_open(*v, "wal", O_RDWR, 0, &e), e);
}

static void test_catchup(void) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    make_zero_volume(21, "catchup", (const char *const[]){"wal", "rel", NULL}, 0, key, &root, &vd);
    struct report r;
    tu_child a;
    if (tu_child_start(&a)) run_a(vd, key, &a);
    REQUIRE(tu_child_wait(&a, &r, sizeof r));
    printf("catchup: %ld catch-ups and lazy commits: %ld slot header reads, %ld tag HMACs; "
           "%ld tags reported at the fsync; B at generation %llu, A at %llu\n",
           r.catchups, r.slot_reads, r.hmacs, r.nreported, (unsigned long long)r.b_gen,
           (unsigned long long)r.a_gen);
    CHECKF(r.badread == 0, "catchup: %ld pieces of rel read back wrong after B's write", r.badread);
    /* (no slot was written: the fold epoch did not move) */
    CHECKF(r.slot_reads <= ROUNDS / 8, "catchup: %ld reads of the slot headers in %ld catch-ups, "
                                       "want at most %d",
           r.slot_reads, r.catchups, ROUNDS / 8);
    CHECKF(r.hmacs <= ROUNDS / 8, "catchup: %ld tag HMACs in %ld catch-ups and lazy commits, "
                                  "want at most %d",
           r.hmacs, r.catchups, ROUNDS / 8);
    /* A's follows of B's appends to rel's journal read only what B appended since (one piece's
     * records), into a buffer that size: before, each follow allocated a buffer as long as the
     * whole journal object (which runs up to 1 MiB ahead of the log with zeros), fresh memory
     * that the kernel's copy page-faulted in (pgbench: a third of the follow's CPU). Every other
     * allocation of these calls is a chunk or a record. */
    printf("catchup: the largest allocation in A's catch-ups and writes: %zu bytes\n", r.max_alloc);
    CHECKF(r.max_alloc <= 64u << 10, "catchup: an allocation of %zu bytes in A's catch-ups and "
                                     "writes, want at most 64 KiB (a follow's buffer as long as "
                                     "the journal object?)",
           r.max_alloc);
    CHECKF(r.nreported == 1, "catchup: %ld tags reported by one fsync", r.nreported);
    CHECKF(r.tags_agree && r.info_agrees, "catchup: A's tag (%d) or info tag (%d) is not the "
                                          "reported one",
           r.tags_agree, r.info_agrees);
    CHECKF(r.b_agrees, "catchup: B, caught up, has another tag or generation than A reported");
    CHECKF(r.b_refolded, "catchup: after A's fold, B's catch-up did not take in A's state");
    /* the volume opens with the last tag (a fold at close keeps it) */
    tu_err_clear(&e);
    scp_volume *v = scp_volume_open(vd, key, &r.tag, &e);
    CHECKF(v != NULL, "catchup: the volume does not open with the last tag: %s", v ? "" : e.msg);
    if (v) REQUIRE_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(root);
    free(root);
    free(vd);
}


/* writers: A and B write one file in turns (PostgreSQL's backends and the WAL), A's write
 * takes the writer lock after B's lazy commit, so its catch-up follows B's appends to the
 * file's journal. That catch-up checks the log (file_log_stale: its length and header) and
 * follows it under the writer lock, where no one else changes either: one read of the
 * journal's header per write (before: two, the follow read it again; an fstat too). Every
 * piece reads back right afterwards. */
struct wreport {
    long jhdr_reads, writes, bad, commit_opens, big_allocs, vol_locks;
    size_t table_bytes;
};

/* (tablehash: the file and the chunk the writers' pieces start at) */
static const char *w_file = "rel";
static uint64_t w_first;

static void run_w(const char *vd, const uint8_t key[SCP_VOLUME_KEY_LEN], tu_child *me) {
    scp_err e;
    struct wreport r = {0};
    scp_volume *v = scp_volume_open(vd, key, NULL, &e);
    if (!v) _exit(2);
    scp_volume_set_shared(v);
    scp_vfile *rel = scp_vfile_open(v, w_file, O_RDWR, 0, &e);
    if (!rel) _exit(2);
    int go[2], done[2];
    if (pipe(go) < 0 || pipe(done) < 0) _exit(2);
    pid_t b = fork();
    if (b < 0) _exit(2);
    uint8_t buf[PIECE], want[PIECE];
    char c;
    if (b == 0) {
        close(go[1]);
        close(done[0]);
        for (int k = 0; k < ROUNDS / 2; k++) {
            if (read(go[0], &c, 1) != 1) _exit(5);
            piece(buf, 1, k);
            if (scp_vfile_pwrite(rel, buf, PIECE, (w_first + (uint64_t)(2 * k)) * PIECE, &e) != PIECE)
                _exit(6);
            if (write(done[1], "w", 1) != 1) _exit(7);
        }
        if (scp_vfile_close(rel, &e) < 0 || scp_volume_close(v, &e) < 0) _exit(8);
        _exit(0);
    }
    close(go[0]);
    close(done[1]);
    for (int k = 0; k < ROUNDS / 2; k++) {
        if (write(go[1], "g", 1) != 1 || read(done[0], &c, 1) != 1) _exit(13);
        piece(buf, 2, k);
        counting = 1;
        if (scp_vfile_pwrite(rel, buf, PIECE, (w_first + (uint64_t)(2 * k + 1)) * PIECE, &e) != PIECE)
            _exit(14);
        counting = 0;
        r.writes++;
        for (int j = 0; j < 2; j++) {
            piece(want, 1 + j, k);
            r.bad += scp_vfile_pread(rel, buf, PIECE, (w_first + (uint64_t)(2 * k + j)) * PIECE, &e) != PIECE ||
                     memcmp(buf, want, PIECE) != 0;
        }
    }
    r.jhdr_reads = jhdr_reads;
    r.vol_locks = vol_locks;
    r.table_bytes = table_bytes;
    r.commit_opens = commit_opens;
    r.big_allocs = big_allocs;
    int st;
    if (waitpid(b, &st, 0) != b || !WIFEXITED(st) || WEXITSTATUS(st) != 0) _exit(21);
    if (scp_vfile_close(rel, &e) < 0 || scp_volume_close(v, &e) < 0) _exit(22);
    tu_child_exit(me, &r, sizeof r);
}

static void test_writers(void) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    make_zero_volume(22, "writers", (const char *const[]){"rel", NULL}, 0, key, &root, &vd);
    struct wreport r;
    tu_child a;
    if (tu_child_start(&a)) run_w(vd, key, &a);
    REQUIRE(tu_child_wait(&a, &r, sizeof r));
    printf("writers: %ld writes after the other process's: %ld reads of the journal's header, "
           "%ld commit records opened, %ld allocations over %d bytes, %ld takes of the volume "
           "lock\n",
           r.writes, r.jhdr_reads, r.commit_opens, r.big_allocs, (int)FOLLOW_MIN, r.vol_locks);
    CHECKF(r.bad == 0, "writers: %ld pieces read back wrong", r.bad);
    CHECKF(r.jhdr_reads <= r.writes, "writers: %ld reads of the journal's header in %ld writes "
                                     "that follow another process's, want at most one each",
           r.jhdr_reads, r.writes);
    /* (branch pg18) A's follow walks B's one commit record (opening it to find the root) and
     * replays it with the payload the walk opened: one open per write, not two. Its read
     * buffer (a chunk record and more) stays with the file between follows: not one
     * allocation over a chunk per write (fresh memory, page-faulted in at each follow). */
    CHECKF(r.commit_opens <= r.writes, "writers: %ld commit records opened in %ld writes that "
                                       "follow one commit of another process, want one each",
           r.commit_opens, r.writes);
    CHECKF(r.big_allocs <= r.writes / 4, "writers: %ld allocations over %d bytes in %ld writes, "
                                         "want at most %ld (a follow buffer each time?)",
           r.big_allocs, (int)FOLLOW_MIN, r.writes, r.writes / 4);
    /* (session 35) A small write's catch-up and its lazy commit are one volume-lock section
     * (writer_refresh keeps the lock, file_commit_lazy_run names the write under it): one
     * take per write, not two */
    CHECKF(r.vol_locks <= r.writes, "writers: %ld takes of the volume lock in %ld small writes, "
                                    "want at most one each",
           r.vol_locks, r.writes);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* tablehash: the writers in the last segment (SCP_PAGE_SEG entries) of the first of the two
 * table pages of a file of 512 chunks. A's write follows B's (one entry changed there) and
 * commits its own (one more): each rehashes that segment of the first page (the midstate before
 * it stands for the rest) and the root, about 2 x 2.9 KB per write. Before, the follow marked
 * the whole page of each entry it took in and, at every follow, the file's last page (as if the
 * chunk count had changed): 2 x 11 KiB more per write. */
#define TH_PIECES 512
#define TH_SEG_BYTES (64 * SCP_CHUNK_ENTRY_LEN)
static void test_tablehash(void) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    make_zero_volume(23, "tablehash", (const char *const[]){"big", NULL}, TH_PIECES, key, &root, &vd);
    w_file = "big";
    w_first = 256 - ROUNDS; /* (ROUNDS pieces: the first page's last segment) */
    struct wreport r;
    tu_child a;
    if (tu_child_start(&a)) run_w(vd, key, &a);
    REQUIRE(tu_child_wait(&a, &r, sizeof r));
    w_file = "rel";
    w_first = 0;
    printf("tablehash: %ld writes after the other process's: %zu bytes of table hashing (%zu per "
           "write)\n",
           r.writes, r.table_bytes, r.writes ? r.table_bytes / (size_t)r.writes : 0);
    CHECKF(r.bad == 0, "tablehash: %ld pieces read back wrong", r.bad);
    CHECKF(r.table_bytes <= (size_t)r.writes * 3 * TH_SEG_BYTES,
           "tablehash: %zu bytes of table hashing in %ld writes, want at most %d per write (the "
           "changed segment twice and the root: a whole page rehashed?)",
           r.table_bytes, r.writes, 3 * TH_SEG_BYTES);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* opener: A writes OP_PIECES pieces of "rel" (lazy commits: they stay in its log), then B, a
 * process of the same program that has not loaded "rel", opens it. B's load walks A's log
 * from its start, chaining the record headers and opening the commit records, but opens no
 * chunk record's ciphertext: the chunk table it builds (which must give the manifest's root)
 * checks each chunk when it is read, and which commits of a log landed after a crash was
 * decided when the volume opened (docs/volume-format.md, "Shared mode", a live load). Before,
 * the load authenticated every chunk record (PostgreSQL's backends, each opening a new WAL
 * segment: 12 us per transaction in lazy16's profile). */
#define OP_PIECES 32
struct oreport {
    long chunk_opens, commit_opens, bad;
};

static void run_o(const char *vd, const uint8_t key[SCP_VOLUME_KEY_LEN], tu_child *me) {
    scp_err e;
    struct oreport r = {0};
    scp_volume *v = scp_volume_open(vd, key, NULL, &e);
    if (!v) _exit(2);
    scp_volume_set_shared(v);
    int done[2], seen[2];
    if (pipe(done) < 0 || pipe(seen) < 0) _exit(2);
    pid_t a = fork();
    if (a < 0) _exit(2);
    uint8_t buf[PIECE], want[PIECE];
    char c;
    if (a == 0) {
        close(done[0]);
        close(seen[1]);
        scp_vfile *rel = scp_vfile_open(v, "rel", O_RDWR, 0, &e);
        if (!rel) _exit(3);
        for (int k = 0; k < OP_PIECES; k++) {
            piece(buf, 1, k);
            if (scp_vfile_pwrite(rel, buf, PIECE, (uint64_t)k * PIECE, &e) != PIECE) _exit(4);
        }
        /* (open until B has read: A's log stays as it wrote it) */
        if (write(done[1], "w", 1) != 1 || read(seen[0], &c, 1) != 1) _exit(5);
        if (scp_vfile_close(rel, &e) < 0 || scp_volume_close(v, &e) < 0) _exit(6);
        _exit(0);
    }
    close(done[1]);
    close(seen[0]);
    if (read(done[0], &c, 1) != 1) _exit(13);
    counting = 1;
    scp_vfile *rel = scp_vfile_open(v, "rel", O_RDONLY, 0, &e);
    counting = 0;
    if (!rel) {
        fprintf(stderr, "opener: B's open: %s\n", e.msg);
        _exit(14);
    }
    r.chunk_opens = chunk_opens;
    r.commit_opens = commit_opens;
    for (int k = 0; k < OP_PIECES; k++) {
        piece(want, 1, k);
        ssize_t got = scp_vfile_pread(rel, buf, PIECE, (uint64_t)k * PIECE, &e);
        if (got != PIECE) fprintf(stderr, "opener: B's read of piece %d: %s\n", k, e.msg);
        r.bad += got != PIECE || memcmp(buf, want, PIECE) != 0;
    }
    if (write(seen[1], "r", 1) != 1) _exit(15);
    int st;
    if (waitpid(a, &st, 0) != a || !WIFEXITED(st) || WEXITSTATUS(st) != 0) _exit(21);
    if (scp_vfile_close(rel, &e) < 0 || scp_volume_close(v, &e) < 0) _exit(22);
    tu_child_exit(me, &r, sizeof r);
}

static void test_opener(void) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    make_zero_volume(24, "opener", (const char *const[]){"rel", NULL}, 0, key, &root, &vd);
    struct oreport r;
    tu_child b;
    if (tu_child_start(&b)) run_o(vd, key, &b);
    REQUIRE(tu_child_wait(&b, &r, sizeof r));
    printf("opener: B's open of a file with %d lazy commits of A in its log: %ld chunk records "
           "authenticated, %ld commit records opened\n",
           OP_PIECES, r.chunk_opens, r.commit_opens);
    CHECKF(r.bad == 0, "opener: %ld pieces read back wrong", r.bad);
    CHECKF(r.chunk_opens == 0, "opener: B's open authenticated %ld chunks of A's log, want none",
           r.chunk_opens);
    /* (branch pg18: the load's walk keeps each commit payload it opened for the replay) */
    CHECKF(r.commit_opens <= OP_PIECES + 4, "opener: B's open opened %ld commit records of a "
                                            "log of %d of A's and a few more, want each once",
           r.commit_opens, OP_PIECES);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* lazylist: one process in shared mode writes "wal" (a lazy commit) and fsyncs it (a durable
 * commit, which empties the lock file's list of files with lazy commits), 64 times, as a
 * PostgreSQL backend's commit does. Each write lists the file again: the list, its ids and
 * marks are read from the lock file's mapping and written back with one pwrite (branch pg19).
 * Before, each write read the count, the ids and the mark byte (3 preads) and wrote the mark
 * byte when it changed, the id and the count (2-3 pwrites), and each fsync read the ids and
 * the marks (2 preads; the count came from the mapping already). Counted: the lock file's
 * preads and pwrites during the writes and fsyncs (the fsync's own, emptying the list: one
 * pwrite each). */
static void test_lazylist(void) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    scp_volume *v;
    scp_vfile *f = open_zero_wal(23, "lazylist", 0, 0, key, &root, &vd, &v);
    scp_volume_set_shared(v);
    uint8_t b[PIECE];
    long writes = 0;
    for (int k = 0; k < ROUNDS; k++) {
        memset(b, 'a' + k % 26, sizeof b);
        counting = 1;
        REQUIRE(scp_vfile_pwrite(f, b, PIECE, (uint64_t)k * PIECE, &e) == PIECE);
        writes++;
        REQUIRE_OK(scp_vfile_fsync(f, &e), e); /* (its lazy_sync reads the list: counted too) */
        counting = 0;
    }
    printf("lazylist: %ld lazy writes and fsyncs: %ld preads and %ld pwrites of the lock file\n",
           writes, lock_reads, lock_writes);
    CHECKF(lock_reads == 0, "lazylist: %ld preads of the lock file in %ld writes, want none (the "
                            "list is read from the mapping)", lock_reads, writes);
    /* (and, once, the one-flush journal list's entry and count: "One-flush durable commits") */
    CHECKF(lock_writes <= 2 * writes + 2, "lazylist: %ld pwrites of the lock file in %ld writes "
                                          "and fsyncs, want two each and two more (the list's "
                                          "span in one pwrite, the count emptied)",
           lock_writes, writes);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDONLY, 0, &e), e);
    int bad = 0;
    for (int k = 0; k < ROUNDS; k++) {
        uint8_t want[PIECE];
        memset(want, 'a' + k % 26, sizeof want);
        bad += scp_vfile_pread(f, b, PIECE, (uint64_t)k * PIECE, &e) != PIECE ||
               memcmp(b, want, PIECE);
    }
    CHECKF(!bad, "lazylist: %d pieces read back wrong after the reopen", bad);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* endmark: shared mode writes a record header of zeros behind every append to a journal (the
 * end mark: docs/volume-format.md, "A dropped log written over"). A record that is not queued
 * (the commit record of a durable commit, whose queue is off in shared mode; a write-back in the
 * middle of a long write) went out in one pwrite and its mark in another (branch pg19); now both
 * go in one. One process writes 4 KiB pieces without an fsync (each a lazy commit that journals
 * the overwritten chunk) until its log passes 8 MiB (SCP_JOURNAL_MAX), where the lazy commit falls back
 * to a durable one (a checkpoint, the log dropped), twice; then every piece reads back in a
 * fresh open. Counted: the journals' pwrites of records (not journal_room's zeros ahead of a
 * growing log), and those that are 16 bytes of zeros alone. */
static void test_endmark(void) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    scp_volume *v;
    scp_vfile *f = open_zero_wal(24, "endmark", 16, 0, key, &root, &vd, &v);
    scp_volume_set_shared(v);
    uint8_t b[PIECE];
    /* (a piece's chunk record and commit record: about 4.3 KiB; two logs of 8 MiB) */
    int writes = (int)(2 * ((8u << 20) / (PIECE + 256)) + 64); /* (SCP_JOURNAL_MAX: internal.h) */
    j_writes = j_lone_marks = 0;
    counting = 1;
    for (int k = 0; k < writes; k++) {
        memset(b, 'a' + k % 26, sizeof b);
        REQUIRE(scp_vfile_pwrite(f, b, PIECE, (uint64_t)(k % 16) * PIECE, &e) == PIECE);
    }
    counting = 0;
    printf("endmark: %d lazy writes: %ld pwrites of records to the journal, %ld pwrites of an "
           "end mark alone\n",
           writes, j_writes, j_lone_marks);
    CHECKF(j_lone_marks == 0, "endmark: %ld pwrites of a journal were an end mark alone (want it "
                              "in the pwrite of the record it follows)", j_lone_marks);
    CHECKF(j_writes <= writes + 8, "endmark: %ld pwrites of records to the journal for %d "
                                   "writes, want one each and a few at the new logs",
           j_writes, writes);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDONLY, 0, &e), e);
    int bad = 0;
    for (int p = 0; p < 16; p++) {
        uint8_t want[PIECE];
        int last = writes - 1 - ((writes - 1 - p) % 16); /* the last k at place p */
        memset(want, 'a' + last % 26, sizeof want);
        bad += scp_vfile_pread(f, b, PIECE, (uint64_t)p * PIECE, &e) != PIECE ||
               memcmp(b, want, PIECE);
    }
    CHECKF(!bad, "endmark: %d pieces read back wrong after the reopen", bad);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* dropkill: a shared-mode log is dropped after its checkpoint (journal_drop: zeros over its
 * header and first record header, the journal end hint set back) and the next log is written
 * over the old one's bytes (docs/volume-format.md, "A dropped log written over"). A child
 * writes 4 KiB pieces (lazy commits that journal each overwritten chunk) until its log passes
 * 8 MiB and is dropped, and kills itself at one step of the drop and the new log (the pwrite
 * wrapper); meanwhile the parent reads pieces (following the child's log, so that it holds
 * offsets into the log being dropped). Then the parent reads every piece (each as the child's
 * last write there that returned, or the one in progress), writes every piece over (it takes
 * the log the child left), fsyncs, and the volume reopens with them, verify finding nothing. */
#define DK_PIECES 16
static void dk_piece(uint8_t *b, int k) {
    memset(b, 0, PIECE);
    snprintf((char *)b, PIECE, "dropkill piece %d of write %d", k % DK_PIECES, k);
}

/* dropkill: at the reader's first wrong read in a run, what its state held at the last failed
 * chunk read of that read (the library's test hook vol_test_chunk_failed, which fills
 * dk_state; the read's retries call it again): where the journal map puts the chunk (or its
 * slot), its place in the log (j_end) and the journal end hint, whether it followed past the
 * commit the manifest named (past; c_root and m_root, c_size and m_size), the table entry's
 * tag, the writer's step, and the records on disk at the mapped place and after it (type,
 * index, the tag of a chunk record's entry): for the next race of this kind, what to read. */
static char dk_state[2048];
static size_t dk_state_len;
static void dk_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void dk_say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dk_state + dk_state_len, sizeof dk_state - dk_state_len, fmt, ap);
    va_end(ap);
    if (n > 0) dk_state_len += (size_t)n < sizeof dk_state - dk_state_len ? (size_t)n : sizeof dk_state - dk_state_len - 1;
}
static void dk_hex4(const uint8_t *p, char *o) { snprintf(o, 9, "%02x%02x%02x%02x", p[0], p[1], p[2], p[3]); }
static void dk_chunk_failed(scp_file *f, uint64_t i) {
    uint64_t joff = 0;
    int mapped = u64map_get(&f->jmap, i, &joff);
    char cr[9], mr[9], te[9];
    dk_hex4(f->c_root, cr);
    dk_hex4(f->m_root, mr);
    dk_hex4(ent(f, i) + SCP_ENT_TAG_OFF, te);
    dk_state_len = 0;
    dk_state[0] = 0;
    dk_say("  the state at its failed chunk read (chunk %llu): %s %llu; j_end %llu, end hint %llu; "
           "past %d, c_root %s.. c_size %llu, m_root %s.. m_size %llu; the table's entry: slot %d, "
           "tag %s..; writer's step %d\n",
           (unsigned long long)i, mapped ? "the journal map puts it at" : "not in the journal map; slot",
           (unsigned long long)(mapped ? joff : (uint64_t)SCP_ENT_SLOT(ent(f, i))),
           (unsigned long long)f->j_end, (unsigned long long)vol_jend_hint(f->vol, f->id), f->past,
           cr, (unsigned long long)f->c_size, mr, (unsigned long long)f->m_size,
           SCP_ENT_SLOT(ent(f, i)), te, dk_phase ? *dk_phase : -1);
    if (!mapped || f->fd_j < 0) return;
    uint64_t off = joff;
    for (int k = 0; k < 4; k++) { /* the mapped record and the three after it, as on disk now */
        uint8_t h[SCP_JCHUNK_HDR_LEN];
        if (__real_pread(f->fd_j, h, sizeof h, (off_t)off) != (ssize_t)sizeof h) break;
        uint32_t type = scp_get_u32(h);
        char rt[9];
        dk_hex4(h + SCP_JREC_HDR_LEN + SCP_ENT_TAG_OFF, rt);
        dk_say("    record at %llu: type %u, %s %llu%s%s\n", (unsigned long long)off, type,
               type == SCP_JREC_CHUNK ? "index" : "count or length",
               (unsigned long long)scp_get_u64(h + 8), type == SCP_JREC_CHUNK ? ", entry tag " : "",
               type == SCP_JREC_CHUNK ? rt : "");
        if (type == SCP_JREC_CHUNK) off += SCP_JCHUNK_HDR_LEN + f->vol->cs;
        else if (type == SCP_JREC_COMMIT) off += SCP_JCOMMIT_LEN(scp_get_u64(h + 8));
        else if (type == SCP_JREC_MLOG) off += SCP_JREC_HDR_LEN + scp_get_u64(h + 8);
        else break;
    }
}

static void dropkill_at(int point) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    char name[32];
    snprintf(name, sizeof name, "dropkill%d", point);
    scp_volume *v;
    scp_vfile *f = open_zero_wal(30 + (uint64_t)point, name, DK_PIECES, 1, key, &root, &vd, &v);
    uint8_t b[PIECE], want[PIECE], old[PIECE];
    /* the child's count of writes that returned, and whether it is done */
    volatile int *acked = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(acked != MAP_FAILED);
    acked[0] = acked[1] = acked[2] = 0;
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dk_point = point;
        dk_phase = &acked[2];
        scp_vfile *w = scp_vfile_open(v, "wal", O_RDWR, 0, &e);
        for (int k = 0; w && k < 2 * (int)((8u << 20) / (PIECE + 256)) + 64; k++) {
            dk_piece(b, k);
            if (scp_vfile_pwrite(w, b, PIECE, (uint64_t)(k % DK_PIECES) * PIECE, &e) != PIECE) _exit(2);
            __atomic_store_n(&acked[0], k + 1, __ATOMIC_SEQ_CST);
        }
        __atomic_store_n(&acked[1], 1, __ATOMIC_SEQ_CST);
        _exit(3); /* (never reached the kill: the parent counts it as a failure) */
    }
    int readbad = 0, reads = 0, st = 0;
    vol_test_chunk_failed = dk_chunk_failed;
    /* what each wrong read was: a failed read, other bytes (not a piece), another piece, an
     * older write than the last that returned; the first few told in full */
    int nfail = 0, nother = 0, nwrongp = 0, nolder = 0, told = 0, first = 0, lastbad = 0, kfirst = 0,
        klast = 0;
    for (int i = 0; waitpid(pid, &st, WNOHANG) == 0; i++) {
        int k = __atomic_load_n(&acked[0], __ATOMIC_SEQ_CST), p = i % DK_PIECES;
        if (k <= p) continue;
        int ph0 = __atomic_load_n(&acked[2], __ATOMIC_SEQ_CST);
        reads++;
        int last = k - 1 - ((k - 1 - p) % DK_PIECES); /* the last write at p that returned */
        dk_state_len = 0;
        dk_state[0] = 0;
        ssize_t r = scp_vfile_pread(f, b, PIECE, (uint64_t)p * PIECE, &e);
        int ph1 = __atomic_load_n(&acked[2], __ATOMIC_SEQ_CST);
        /* (a later write at p may have returned since k was read: its number is larger) */
        const char *wn = r == PIECE && !memcmp(b, "dropkill piece ", 15) ? strstr((char *)b, "write ") : NULL;
        int got = wn ? atoi(wn + 6) : -1;
        dk_piece(want, got < 0 ? 0 : got);
        int kind = r != PIECE ? 1 : got < 0 || memcmp(b, want, PIECE) ? 2 : got % DK_PIECES != p ? 3
                 : got < last ? 4 : 0;
        nfail += kind == 1;
        nother += kind == 2;
        nwrongp += kind == 3;
        nolder += kind == 4;
        readbad += kind != 0;
        if (kind && !first) first = reads, kfirst = k;
        if (kind) lastbad = reads, klast = k;
        if (kind && told++ < 8)
            printf("dropkill %d: read %d of piece %d: %s (got write %d, last returned %d, acked %d, "
                   "writer's step %d..%d)\n", point, reads, p,
                   kind == 1 ? e.msg : kind == 2 ? "other bytes" : kind == 3 ? "another piece" : "an older write",
                   got, last, k, ph0, ph1);
        if (kind && told == 1 && dk_state_len) fputs(dk_state, stdout);
    }
    if (readbad)
        printf("dropkill %d: wrong reads: %d failed, %d other bytes, %d another piece, %d older; "
               "reads %d (after %d writes) to %d (after %d writes) of %d\n",
               point, nfail, nother, nwrongp, nolder, first, kfirst, lastbad, klast, reads);
    vol_test_chunk_failed = NULL;
    int k = acked[0];
    printf("dropkill %d: the writer died after %d writes (%s), the reader read %d times\n", point, k,
           WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? "killed" : "not killed", reads);
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "dropkill %d: the writer was not killed at "
           "its step (status %d)", point, st);
    CHECKF(!readbad, "dropkill %d: %d of the reader's reads wrong while the writer wrote", point,
           readbad);
    /* every piece: the last write there that returned, or the one in progress (write k) */
    int bad = 0;
    for (int p = 0; p < DK_PIECES; p++) {
        int last = k > p ? k - 1 - ((k - 1 - p) % DK_PIECES) : -1;
        if (last < 0) memset(want, 0, PIECE);
        else dk_piece(want, last);
        dk_piece(old, k); /* (the write in progress, if it was at p) */
        ssize_t r = scp_vfile_pread(f, b, PIECE, (uint64_t)p * PIECE, &e);
        bad += r != PIECE || (memcmp(b, want, PIECE) && (k % DK_PIECES != p || memcmp(b, old, PIECE)));
    }
    CHECKF(!bad, "dropkill %d: %d pieces wrong after the writer died", point, bad);
    /* the parent writes on, in the log the child left (dropped, begun, or with a record) */
    for (int p = 0; p < DK_PIECES; p++) {
        dk_piece(b, 100000 + p);
        CHECKF(scp_vfile_pwrite(f, b, PIECE, (uint64_t)p * PIECE, &e) == PIECE,
               "dropkill %d: the write after the kill failed: %s", point, e.msg);
    }
    CHECKF(scp_vfile_fsync(f, &e) == 0, "dropkill %d: fsync: %s", point, e.msg);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    munmap((void *)acked, 4096);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDONLY, 0, &e), e);
    bad = 0;
    for (int p = 0; p < DK_PIECES; p++) {
        dk_piece(want, 100000 + p);
        bad += scp_vfile_pread(f, b, PIECE, (uint64_t)p * PIECE, &e) != PIECE || memcmp(b, want, PIECE);
    }
    CHECKF(!bad, "dropkill %d: %d pieces wrong after the reopen", point, bad);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    long probs = scp_volume_verify(v, NULL, NULL, NULL, &e);
    CHECKF(probs == 0, "dropkill %d: verify found %ld problems", point, probs);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

static void test_dropkill(void) {
    for (int point = DK_BEFORE_DROP; point < DK_N; point++) dropkill_at(point);
}

/* pwfail: a failed journal pwrite in shared mode (a lazy commit's drain of its queued records,
 * or, at_fsync, the one-flush run of an fsync). A child writes 4 KiB pieces without an fsync
 * (lazy commits); its write PW_FAIL_AT (or the fsync right after it) fails once in the
 * journal's pwrite (errno err; ENOSPC after half the bytes were written). Then it reads that
 * place back, writes on, and fsyncs. Meanwhile, after the first write that followed the
 * failure and again after the fsync, the parent reads every piece. Then a fresh open reads
 * every piece and verify finds nothing. Each piece must read as the last write there that
 * returned success (or a later one, or the failed write: a failed write may have written);
 * the failing call must report err. On main a failed drain set the log's end to 0 and the next
 * write's commit began a new log over the lazy commits that .t lacks: all 16 of the parent's
 * reads failed ("chunk table does not match the manifest") until the writer's fsync, whose
 * durable commit wrote its table to .t (so a writer killed before it left the file unreadable
 * to others until a reopen settled the volume back to its last durable state). */
#define PW_PIECES 16
#define PW_FAIL_AT 21
#define PW_WRITES (PW_FAIL_AT + PW_PIECES + 5)
static void pw_piece(uint8_t *b, int k) {
    memset(b, 0, PIECE);
    snprintf((char *)b, PIECE, "pwfail piece %d of write %d", k % PW_PIECES, k);
}

/* The write number that place p reads as (-1: zeros, -2: an error or other bytes). */
static int pw_read(scp_vfile *f, int p) {
    uint8_t b[PIECE], want[PIECE];
    scp_err e;
    if (scp_vfile_pread(f, b, PIECE, (uint64_t)p * PIECE, &e) != PIECE) return -2;
    memset(want, 0, PIECE);
    if (!memcmp(b, want, PIECE)) return -1;
    const char *wn = !memcmp(b, "pwfail piece ", 13) ? strstr((char *)b, "write ") : NULL;
    int got = wn ? atoi(wn + 6) : -2;
    if (got < 0) return -2;
    pw_piece(want, got);
    return got % PW_PIECES == p && !memcmp(b, want, PIECE) ? got : -2;
}

/* How many places read wrong after writes [0, acked) returned (all but PW_FAIL_AT, if
 * failed): each must read as its last successful write, a later write (at most below upto),
 * or the failed one. */
static int pw_check(scp_vfile *f, int acked, int upto, int failed) {
    int bad = 0;
    for (int p = 0; p < PW_PIECES; p++) {
        int last = -1;
        for (int k = 0; k < acked; k++)
            if (k % PW_PIECES == p && !(failed && k == PW_FAIL_AT)) last = k;
        int got = pw_read(f, p);
        bad += got == -2 || (got < last && !(failed && got == PW_FAIL_AT)) || got >= upto;
    }
    return bad;
}

/* The child's report: what each write returned (1, or -errno), its read of the failed place
 * after the failure, its fsync's result and the parent's turn. */
struct pw_shared {
    int ret[PW_WRITES], fail_rc, read_after, fsync_rc, fsync_errno, stage, parent_stage;
};

static void pw_wait(volatile int *at, int want) {
    for (int i = 0; i < 30000 && __atomic_load_n(at, __ATOMIC_SEQ_CST) < want; i++) usleep(1000);
}

/* After the writer closed: a fresh open of vd reads every place as its last write when the
 * last fsync promised it (promised), and verify finds nothing. */
static void pw_reopen_check(const char *vd, const uint8_t *key, int promised, int failed,
                            const char *what, int err) {
    scp_err e;
    scp_volume *v = scp_volume_open(vd, key, NULL, &e);
    CHECKF(v, "%s %d: the volume does not open after: %s", what, err, e.msg);
    if (!v) return;
    scp_vfile *f = scp_vfile_open(v, "wal", O_RDONLY, 0, &e);
    CHECKF(f, "%s %d: the file does not open after: %s", what, err, e.msg);
    int bad = f ? pw_check(f, PW_WRITES, PW_WRITES, failed) : PW_PIECES;
    CHECKF(!promised || !bad, "%s %d: the fsync returned success, and %d places read wrong in a "
                              "fresh open", what, err, bad);
    if (f) REQUIRE_OK(scp_vfile_close(f, &e), e);
    long probs = scp_volume_verify(v, NULL, NULL, NULL, &e);
    CHECKF(probs == 0, "%s %d: verify found %ld problems", what, err, probs);
    REQUIRE_OK(scp_volume_close(v, &e), e);
}

static void pwfail_with(int err, int at_fsync) {
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    char name[32];
    snprintf(name, sizeof name, "pwfail%d%s", err, at_fsync ? "f" : "");
    make_zero_volume(40 + (uint64_t)err, name, (const char *const[]){"wal", NULL}, PW_PIECES, key,
                     &root, &vd);
    struct pw_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(sh != MAP_FAILED);
    memset(sh, 0, sizeof *sh);
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        uint8_t b[PIECE];
        scp_volume *cv = scp_volume_open(vd, key, NULL, &e);
        if (!cv) _exit(2);
        scp_volume_set_shared(cv);
        scp_vfile *w = scp_vfile_open(cv, "wal", O_RDWR, 0, &e);
        if (!w) _exit(2);
        for (int k = 0; k < PW_WRITES; k++) {
            pw_piece(b, k);
            if (k == PW_FAIL_AT && !at_fsync) pw_fail = err;
            ssize_t r = scp_vfile_pwrite(w, b, PIECE, (uint64_t)(k % PW_PIECES) * PIECE, &e);
            pw_fail = 0;
            sh->ret[k] = r == PIECE ? 1 : r < 0 ? -e.sys : 0;
            /* (a durable commit first: the lazy records behind the next are then kept as
             * written, and the next fsync writes them into the journal with its own record:
             * vol_commit_oneflush's run, one pwrite) */
            if (k == 4 && at_fsync && scp_vfile_fsync(w, &e) < 0) _exit(5);
            if (k == PW_FAIL_AT && at_fsync) { /* the fsync's journal pwrite (its run) fails */
                pw_fail = err;
                int frc = scp_vfile_fsync(w, &e);
                pw_fail = 0;
                sh->fail_rc = frc ? -e.sys : 1;
            } else if (k == PW_FAIL_AT) {
                sh->fail_rc = sh->ret[k];
            }
            if (k == PW_FAIL_AT) sh->read_after = pw_read(w, k % PW_PIECES);
            if (k == PW_FAIL_AT + 1) { /* the parent reads now: the first write after it */
                __atomic_store_n(&sh->stage, 1, __ATOMIC_SEQ_CST);
                pw_wait(&sh->parent_stage, 1);
            }
        }
        sh->fsync_rc = scp_vfile_fsync(w, &e);
        sh->fsync_errno = sh->fsync_rc ? e.sys : 0;
        __atomic_store_n(&sh->stage, 2, __ATOMIC_SEQ_CST);
        pw_wait(&sh->parent_stage, 2);
        int rc = scp_vfile_close(w, &e) == 0 && scp_volume_close(cv, &e) == 0 ? 0 : 4;
        _exit(rc);
    }
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    scp_volume_set_shared(v);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "wal", O_RDONLY, 0, &e), e);
    pw_wait(&sh->stage, 1);
    int bad1 = pw_check(f, PW_FAIL_AT + 2, PW_WRITES, !at_fsync);
    __atomic_store_n(&sh->parent_stage, 1, __ATOMIC_SEQ_CST);
    pw_wait(&sh->stage, 2);
    int bad2 = pw_check(f, PW_WRITES, PW_WRITES, !at_fsync);
    __atomic_store_n(&sh->parent_stage, 2, __ATOMIC_SEQ_CST);
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    int failed_ok = 0, later_bad = 0;
    for (int k = 0; k < PW_WRITES; k++) {
        if (k != PW_FAIL_AT || at_fsync) later_bad += sh->ret[k] != 1;
    }
    failed_ok = sh->fail_rc == -err;
    printf("pwfail %s: %s %d returned %d, its place read back in the writer as write %d; "
           "%d other writes failed; fsync %d (errno %d); the reader's wrong places: %d after the "
           "next write, %d after the fsync\n",
           err == EIO ? "EIO" : "ENOSPC", at_fsync ? "the fsync after write" : "write", PW_FAIL_AT,
           sh->fail_rc, sh->read_after,
           later_bad, sh->fsync_rc, sh->fsync_errno, bad1, bad2);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "pwfail %d: the writer exited with status %d", err, st);
    CHECKF(failed_ok, "pwfail %d: the call whose journal pwrite failed returned %d, want -%d", err,
           sh->fail_rc, err);
    CHECKF(sh->read_after == PW_FAIL_AT || (!at_fsync && sh->read_after == PW_FAIL_AT - PW_PIECES),
           "pwfail %d: the writer read its failed write's place as %d", err, sh->read_after);
    /* A write after the failure may report it too (as a kernel file system's fsync reports
     * a writeback error), but then every later fsync must: nothing is promised past it */
    int promised = sh->fsync_rc == 0;
    CHECKF(!bad1, "pwfail %d: %d places read wrong in another process after the first write "
                  "that followed the failure", err, bad1);
    CHECKF(!promised || !bad2, "pwfail %d: the fsync returned success, and %d places read wrong "
                               "in another process after it", err, bad2);
    CHECKF(!promised || !later_bad, "pwfail %d: the fsync returned success after %d writes "
                                    "that failed", err, later_bad);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    munmap(sh, sizeof *sh);
    pw_reopen_check(vd, key, promised, !at_fsync, "pwfail", err);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* pwfail ordinary: the same failure outside shared mode, in one process. Writes are buffered
 * until a commit; the fsync after write PW_FAIL_AT has its journal pwrite fail once (the
 * queued chunk and commit records of a journaled commit: journal_drain). The fsync must report
 * err; every place must still read as its last write in this process; the writes go on and a
 * last fsync follows; if that fsync reports success, every place reads as its last write, in
 * this process, after a close and in a fresh open, and verify finds nothing. */
static void pwfail_ordinary(int err) {
    uint8_t key[SCP_VOLUME_KEY_LEN], b[PIECE];
    char *root, *vd;
    scp_err e;
    char name[32];
    snprintf(name, sizeof name, "pwfailord%d", err);
    scp_volume *v;
    scp_vfile *w = open_zero_wal(60 + (uint64_t)err, name, PW_PIECES, 0, key, &root, &vd, &v);
    int later_bad = 0, fail_rc = 0, bad_after = 0;
    for (int k = 0; k < PW_WRITES; k++) {
        pw_piece(b, k);
        later_bad += scp_vfile_pwrite(w, b, PIECE, (uint64_t)(k % PW_PIECES) * PIECE, &e) != PIECE;
        if (k == 4 && scp_vfile_fsync(w, &e) < 0) later_bad++;
        if (k == PW_FAIL_AT) {
            pw_fail = err;
            fail_rc = scp_vfile_fsync(w, &e) ? -e.sys : 1;
            pw_fail = 0;
            bad_after = pw_check(w, k + 1, k + 1, 0);
        }
    }
    int frc = scp_vfile_fsync(w, &e);
    int bad1 = pw_check(w, PW_WRITES, PW_WRITES, 0);
    printf("pwfail ordinary %s: the fsync after write %d returned %d; wrong places right after it "
           "%d; %d other calls failed; the last fsync %d; wrong places after it %d\n",
           err == EIO ? "EIO" : "ENOSPC", PW_FAIL_AT, fail_rc, bad_after, later_bad, frc, bad1);
    CHECKF(fail_rc == -err, "pwfail ordinary %d: the fsync whose journal pwrite failed returned %d",
           err, fail_rc);
    CHECKF(!bad_after, "pwfail ordinary %d: %d places read wrong right after the failed fsync", err,
           bad_after);
    int promised = frc == 0;
    CHECKF(!promised || !bad1, "pwfail ordinary %d: the last fsync returned success and %d places "
                               "read wrong", err, bad1);
    int crc = scp_vfile_close(w, &e);
    CHECKF(!promised || crc == 0, "pwfail ordinary %d: close after a good fsync failed: %s", err,
           e.msg);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    pw_reopen_check(vd, key, promised, 0, "pwfail ordinary", err);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

static void test_pwfail(void) {
    pwfail_with(EIO, 0);
    pwfail_with(ENOSPC, 0);
    pwfail_with(EIO, 1);
    pwfail_with(ENOSPC, 1);
    pwfail_ordinary(EIO);
    pwfail_ordinary(ENOSPC);
}

/* loadfail (see the top): after the failed write, a read (write_first: a write) and then every
 * place reads as its last write that returned (or the failed one); writes go on, an fsync,
 * and a fresh open reads them and verifies. */
static void loadfail_with(const char *suffix, int write_first) {
    uint8_t key[SCP_VOLUME_KEY_LEN], b[PIECE];
    char *root, *vd;
    scp_err e;
    char name[32];
    snprintf(name, sizeof name, "loadfail%c%d", suffix[1], write_first);
    scp_volume *v;
    scp_vfile *f = open_zero_wal(50 + (uint64_t)suffix[1] + (uint64_t)write_first, name, PW_PIECES,
                                 1, key, &root, &vd, &v);
    for (int k = 0; k < PW_FAIL_AT; k++) {
        pw_piece(b, k);
        REQUIRE(scp_vfile_pwrite(f, b, PIECE, (uint64_t)(k % PW_PIECES) * PIECE, &e) == PIECE);
    }
    pw_fail = EIO;
    pr_fail_suffix = suffix;
    pw_piece(b, PW_FAIL_AT);
    ssize_t r = scp_vfile_pwrite(f, b, PIECE, (uint64_t)(PW_FAIL_AT % PW_PIECES) * PIECE, &e);
    int fired = pr_fail_suffix == NULL;
    pw_fail = 0;
    pr_fail_suffix = NULL;
    pr_fail_armed = 0;
    CHECKF(r < 0 && e.sys == EIO, "loadfail %s: the write whose journal pwrite failed returned %zd "
                                  "(errno %d), want EIO", suffix, r, r < 0 ? e.sys : 0);
    CHECKF(fired, "loadfail %s: the rejoin's load read no %s object (the test's fault never fired)",
           suffix, suffix);
    int acked = PW_FAIL_AT + 1, wrc = 1;
    if (write_first) {
        pw_piece(b, acked);
        wrc = scp_vfile_pwrite(f, b, PIECE, (uint64_t)(acked % PW_PIECES) * PIECE, &e) == PIECE;
        CHECKF(wrc, "loadfail %s: the first write after the failed load failed: %s", suffix, e.msg);
        acked++;
    }
    int bad = pw_check(f, acked, PW_WRITES, 1);
    printf("loadfail %s%s: after the failed write and load, %d places read wrong\n", suffix,
           write_first ? " (a write first)" : "", bad);
    CHECKF(!bad, "loadfail %s: %d places read wrong after the failed load, with the fault gone "
                 "(the file left unloaded)", suffix, bad);
    int later_bad = 0;
    for (int k = acked; k < PW_WRITES; k++) {
        pw_piece(b, k);
        later_bad += scp_vfile_pwrite(f, b, PIECE, (uint64_t)(k % PW_PIECES) * PIECE, &e) != PIECE;
    }
    CHECKF(!later_bad, "loadfail %s: %d writes failed after the failed load", suffix, later_bad);
    int frc = scp_vfile_fsync(f, &e);
    CHECKF(frc == 0, "loadfail %s: the fsync failed: %s", suffix, e.msg);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    if (!bad && !later_bad && frc == 0 && wrc) pw_reopen_check(vd, key, 1, 1, "loadfail", EIO);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* loadfail ordinary: outside shared mode, an fsync whose apply fails after its commit point
 * (a pwrite of .t) takes the file in again as the manifest names it (commit_reload) holding
 * the writer lock, and that load fails too (the next pread of .t): every place must still read
 * as its last write, and the writes, an fsync and a fresh open go on (main: the writer kept
 * its lock to the close and file_refresh skipped a writer's file: every read and write of
 * it failed until the close). */
static void loadfail_ordinary(void) {
    uint8_t key[SCP_VOLUME_KEY_LEN], b[PIECE];
    char *root, *vd;
    scp_err e;
    scp_volume *v;
    scp_vfile *w = open_zero_wal(70, "loadfailord", PW_PIECES, 0, key, &root, &vd, &v);
    int later_bad = 0, fail_rc = 0, bad_after = -1, fired = 0;
    for (int k = 0; k < PW_WRITES; k++) {
        pw_piece(b, k);
        later_bad += scp_vfile_pwrite(w, b, PIECE, (uint64_t)(k % PW_PIECES) * PIECE, &e) != PIECE;
        if (k == 4 && scp_vfile_fsync(w, &e) < 0) later_bad++;
        if (k == PW_FAIL_AT) {
            t_fail = 1;
            pr_fail_suffix = ".t";
            fail_rc = scp_vfile_fsync(w, &e) ? -e.sys : 1;
            fired = pr_fail_suffix == NULL;
            t_fail = 0;
            pr_fail_suffix = NULL;
            pr_fail_armed = 0;
            bad_after = pw_check(w, k + 1, k + 1, 0);
        }
    }
    int frc = scp_vfile_fsync(w, &e);
    int bad1 = pw_check(w, PW_WRITES, PW_WRITES, 0);
    printf("loadfail ordinary: the fsync whose apply and reload failed returned %d; wrong places "
           "right after it %d; %d other calls failed; the last fsync %d; wrong places after it %d\n",
           fail_rc, bad_after, later_bad, frc, bad1);
    CHECKF(fired, "loadfail ordinary: the reload read no .t (the test's fault never fired)");
    CHECKF(fail_rc == -ENOSPC, "loadfail ordinary: the fsync whose apply failed returned %d", fail_rc);
    CHECKF(!bad_after, "loadfail ordinary: %d places read wrong after the failed reload, with the "
                       "fault gone (the file left unloaded)", bad_after);
    CHECKF(!later_bad, "loadfail ordinary: %d writes failed after the failed reload", later_bad);
    CHECKF(frc == 0 && !bad1, "loadfail ordinary: the last fsync returned %d, %d places wrong", frc,
           bad1);
    REQUIRE_OK(scp_vfile_close(w, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    if (frc == 0 && !bad1) pw_reopen_check(vd, key, 1, 0, "loadfail ordinary", ENOSPC);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* torn (lazy publication step 3's race, issue 13; docs/volume-format.md, "What a follow
 * trusts"): a shared-mode reader follows the log past the commit the manifest names while the
 * writer's pwrite of the next commit is still landing. Here that pwrite is torn by the test
 * (the wrapper above): the chunk record's index still reads as the end mark's zeros while its
 * ciphertext and the commit record are there. The writer writes TN_K pieces (lazy commits);
 * the reader reads them all after the first 10 (so that it follows from its place in the
 * log), and again while write TN_K (piece TN_K % 16) is torn, and once more after it returned.
 * With lazy22's step 3 the follow took commit TN_K (its record authenticates) with the chunk
 * record mapped to piece 0: piece 8's new entry over its old record, "fails authentication"
 * until its next write (dropkill's 2 failed reads in session 23, CI's 41). */
#define TN_K 24
static void torn_with(int mode) {
    uint8_t key[SCP_VOLUME_KEY_LEN], b[PIECE];
    char *root, *vd;
    scp_err e;
    scp_volume *v;
    scp_vfile *f = open_zero_wal(80 + (uint64_t)mode, mode == 1 ? "torn" : "tornother", PW_PIECES,
                                 1, key, &root, &vd, &v);
    REQUIRE(scp_vfile_pread(f, b, PIECE, 0, &e) == PIECE);
    tn = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(tn != MAP_FAILED);
    tn[0] = tn[1] = 0;
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        scp_vfile *w = scp_vfile_open(v, "wal", O_RDWR, 0, &e);
        for (int k = 0; w && k <= TN_K; k++) {
            if (k == 10) {
                __atomic_store_n(&tn[0], 1, __ATOMIC_SEQ_CST);
                pw_wait(&tn[1], 1);
            }
            tn_arm = k == TN_K ? mode : 0;
            pw_piece(b, k);
            if (scp_vfile_pwrite(w, b, PIECE, (uint64_t)(k % PW_PIECES) * PIECE, &e) != PIECE) _exit(2);
        }
        _exit(w && !tn_arm ? 0 : 3);
    }
    pw_wait(&tn[0], 1);
    int bad0 = pw_check(f, 10, 10, 0);
    __atomic_store_n(&tn[1], 1, __ATOMIC_SEQ_CST);
    pw_wait(&tn[0], 2);
    /* (write TN_K is landing: every place reads as its last write, or piece TN_K % 16 as TN_K) */
    int bad = 0, torn_p = TN_K % PW_PIECES, got_p = -3;
    vol_test_chunk_failed = dk_chunk_failed; /* (dropkill's report of the state, if one fails) */
    for (int p = 0; p < PW_PIECES; p++) {
        dk_state_len = 0;
        dk_state[0] = 0;
        int got = pw_read(f, p), last = TN_K - 1 - ((TN_K - 1 - p) % PW_PIECES);
        if (p == torn_p) got_p = got;
        int wrong = got != last && !(p == torn_p && got == TN_K);
        if (wrong && !bad) printf("torn: piece %d read as %d (want %d)\n%s", p, got, last, dk_state);
        bad += wrong;
    }
    vol_test_chunk_failed = NULL;
    __atomic_store_n(&tn[1], 2, __ATOMIC_SEQ_CST);
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    int bad2 = pw_check(f, TN_K + 1, TN_K + 1, 0);
    printf("torn (%s): the reader's wrong places: %d before, %d while write %d landed torn (piece %d "
           "read as write %d), %d after it returned\n", mode == 1 ? "the index not there yet" :
           "another chunk's index there first", bad0, bad, TN_K, torn_p, got_p, bad2);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "torn: the writer exited with status %d", st);
    CHECKF(tn[0] == 2, "torn: the writer's pwrite was never torn");
    CHECKF(!bad0 && !bad && !bad2, "torn: the reader read %d, %d and %d places wrong (before, while "
                                   "a write landed torn, after)", bad0, bad, bad2);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    munmap((void *)tn, 4096);
    tn = NULL;
    tu_rm_rf(root);
    free(root);
    free(vd);
}

static void test_torn(void) {
    torn_with(1);
    torn_with(2);
}

static void test_loadfail(void) {
    loadfail_ordinary();
    loadfail_with(".t", 0);
    loadfail_with(".j", 0);
    loadfail_with(".t", 1);
    loadfail_with(".j", 1);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && !strcmp(argv[1], "endmark")) test_endmark();
    if (argc > 1 && !strcmp(argv[1], "dropkill")) test_dropkill();
    if (argc > 1 && !strcmp(argv[1], "pwfail")) test_pwfail();
    if (argc > 1 && !strcmp(argv[1], "loadfail")) test_loadfail();
    if (argc > 1 && !strcmp(argv[1], "torn")) test_torn();
    if (argc > 1) return tu_exit_code("test_volume_catchup");
    test_catchup();
    test_writers();
    test_opener();
    test_tablehash();
    test_lazylist();
    test_endmark();
    test_dropkill();
    test_pwfail();
    test_loadfail();
    test_torn();
    return tu_exit_code("test_volume_catchup");
}
