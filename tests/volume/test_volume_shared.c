/* tests/volume/test_volume_shared.c - shared mode (scp_volume_set_shared): lazy commits.
 *
 * Processes of one program (a forked server) write one file without an fsync and read each
 * other's writes. Asserts, through the public API and the bytes of the volume directory:
 * 1. visible: a write in one process is read by the other at once;
 *    not durable: it leaves both durable manifest slots as they were (no durable commit: a
 *    write costs no flush), and an fsync in the other process makes it durable (a durable
 *    slot's generation moves past the scratch one's);
 * 2. kill: a writer killed (SIGKILL) between its write and an fsync leaves a volume that opens
 *    clean and verifies, holding at least the last fsynced state: here the killed writer's
 *    write as well, since the page cache kept its journal (open makes it durable);
 * 4. per file: after another process extends two files, taking in one of them (its size)
 *    does not make this process take the other's old size as current (PostgreSQL's "unexpected
 *    data beyond EOF": a backend read the free-space map's size, then the relation's, stale);
 * 3. power cut: the same, but the journal records of the lazy write are lost while the scratch
 *    slot that names them landed (what a power cut may leave, since neither was synced): the
 *    volume opens clean (no integrity error), verifies, and reads the last fsynced state.
 * 5. in place (fio's forked job: 1 MiB writes to a fallocated file, then appends): whole-chunk
 *    writes that fill holes of the committed state, or extend the file, go in place without a
 *    copy in the journal (the journal grows by a commit record, not by the data), are seen by
 *    the other process at once, survive a kill of the writer, and after a power cut that kept
 *    the journal and the scratch slot but lost the in-place chunks (never synced), the volume
 *    opens clean and reads the last fsynced state (it does not take the lazy state whose
 *    chunks are gone).
 * 6. per-file hints (file_hints below): a read and a size of a file that no other process
 *    committed since take no volume lock, and a file another process wrote is still read new.
 * 7. covered fsync (covered_fsync below): an fsync whose lazy writes another process's fsync
 *    already made durable writes no manifest.
 * 8. overwrites in place (overwrite_inplace below): a large overwrite goes to the chunks'
 *    other slots, not through the journal, is read by the other process, and never lands on
 *    a slot that the durable state names: after a kill the newest state opens, after a power
 *    cut that lost the journal records (not the in-place chunks) the fsynced one does.
 */
#include <poll.h>
#include <signal.h>

#include "volume/internal.h"
#include "scenario.h"
#include "vlockhold.h"

#define CS 4096u
#define SZ (8u * CS)

static uint8_t key[SCP_VOLUME_KEY_LEN];

static void fill(uint8_t *b, char c) { memset(b, c, SZ); }

/* Each scenario's start: a new volume at vol (chunks of CS bytes), opened in shared mode. */
static scp_volume *shared_volume(const char *vol) {
    scp_err e;
    tu_err_clear(&e);
    tu_rm_rf(vol);
    REQUIRE(scp_volume_create(vol, key, CS, &e) == 0);
    scp_volume *v = scp_volume_open(vol, key, NULL, &e);
    REQUIRE(v != NULL);
    scp_volume_set_shared(v);
    return v;
}

/* A power cut's view: save the volume's objects *ext (".j" journals, ".d" data) as the last
 * fsync left them into dir, and later put them back over what came after. */
static void save_objects(const char *vol, const char *ext, const char *dir) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir '%s' && cp -p '%s'/objects/*%s '%s'/", dir, dir, vol, ext, dir);
    REQUIRE(system(cmd) == 0);
}
static void restore_objects(const char *dir, const char *ext, const char *vol) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cp -p '%s'/*%s '%s'/objects/", dir, ext, vol);
    REQUIRE(system(cmd) == 0);
}

/* Generation a manifest slot's header claims (bytes 8-15, big-endian), or 0. */
static uint64_t slot_gen(const char *vol, int i) {
    char p[4096];
    snprintf(p, sizeof p, "%s/manifest.%d", vol, i);
    size_t len;
    uint8_t *b = tu_read_file(p, &len);
    uint64_t g = 0;
    if (b && len >= 16)
        for (int k = 8; k < 16; k++) g = g << 8 | b[k];
    free(b);
    return g;
}
static uint64_t be64(const uint8_t *p) {
    uint64_t g = 0;
    for (int k = 0; k < 8; k++) g = g << 8 | p[k];
    return g;
}
/* Format 3: generations of the manifest log's last record and of its last durable one, from
 * the records' plaintext headers (u32 length, u32 flags, u64 generation; format.h). */
static void log_gens(const char *vol, uint64_t *last, uint64_t *durable) {
    char p[4096];
    snprintf(p, sizeof p, "%s/manifest.log", vol);
    size_t len, off = 48;
    uint8_t *b = tu_read_file(p, &len);
    *last = *durable = 0;
    while (b && len >= off + 44) {
        size_t blen = (size_t)b[off] << 24 | (size_t)b[off + 1] << 16 | (size_t)b[off + 2] << 8 | b[off + 3];
        if (len - off - 44 < blen) break;
        *last = be64(b + off + 8);
        if (b[off + 7] & 1) *durable = *last;
        off += 44 + blen;
    }
    free(b);
}
/* The newest durable state's generation: a durable slot's or a durable log record's. */
static uint64_t durable_gen(const char *vol) {
    uint64_t a = slot_gen(vol, 0), b = slot_gen(vol, 1), l, d;
    log_gens(vol, &l, &d);
    if (d > a) a = d;
    return a > b ? a : b;
}
/* The newest published (lazy) state's generation: the scratch slot's (format 2) or the log's. */
static uint64_t published_gen(const char *vol) {
    uint64_t l, d, s = slot_gen(vol, 2);
    log_gens(vol, &l, &d);
    return l > s ? l : s;
}

static void expect_content(const char *vol, const uint8_t *want, const char *what) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = scp_volume_open(vol, key, NULL, &e);
    CHECKF(v != NULL, "%s: the volume does not open: %s", what, e.msg);
    if (!v) return;
    long bad = scp_volume_verify(v, NULL, NULL, NULL, &e);
    CHECKF(bad == 0, "%s: verify reports %ld problem(s): %s", what, bad, e.msg);
    scp_vfile *f = scp_vfile_open(v, "f", O_RDONLY, 0, &e);
    CHECKF(f != NULL, "%s: cannot open f: %s", what, e.msg);
    if (f) {
        uint8_t *got = malloc(SZ);
        ssize_t r = scp_vfile_pread(f, got, SZ, 0, &e);
        CHECKF(r == (ssize_t)SZ, "%s: read of f: %zd (%s)", what, r, e.msg);
        CHECKF(r == (ssize_t)SZ && memcmp(got, want, SZ) == 0, "%s: f holds other bytes", what);
        free(got);
        scp_vfile_close(f, &e);
    }
    CHECK(scp_volume_close(v, &e) == 0);
}

/* One scenario: a durable base (fsynced 'A'), then a forked child overwrites chunks 2-3 with
 * 'B' and stops; the parent reads 'B' there. Returns with the child killed and the volume
 * closed in the parent. fsync_in_parent: the parent fsyncs the file after reading. */
static void scenario(const char *vol, const char *jsave, int fsync_in_parent) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = shared_volume(vol);
    uint8_t *buf = malloc(SZ);
    fill(buf, 'A');
    scp_vfile *f = scp_vfile_open(v, "f", O_RDWR | O_CREAT, 0600, &e);
    REQUIRE(f != NULL);
    REQUIRE(scp_vfile_pwrite(f, buf, SZ, 0, &e) == (ssize_t)SZ);
    REQUIRE(scp_vfile_fsync(f, &e) == 0);
    uint64_t g0 = durable_gen(vol);
    if (jsave) save_objects(vol, ".j", jsave); /* the journals as the last fsync left them on disk */
    int ready[2];
    REQUIRE(pipe(ready) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        uint8_t b[2 * CS];
        memset(b, 'B', sizeof b);
        scp_err ce;
        ssize_t w = scp_vfile_pwrite(f, b, sizeof b, 2 * CS, &ce);
        char c = w == (ssize_t)sizeof b ? 'y' : 'n';
        if (c == 'n') fprintf(stderr, "child write: %s\n", ce.msg);
        (void)!write(ready[1], &c, 1);
        for (;;) pause(); /* killed here, between its write and any fsync */
    }
    char c = 0;
    REQUIRE(read(ready[0], &c, 1) == 1);
    CHECKF(c == 'y', "the child's write failed");
    close(ready[0]);
    close(ready[1]);
    /* 1. visible at once, and not durable */
    uint8_t got[2 * CS];
    ssize_t r = scp_vfile_pread(f, got, sizeof got, 2 * CS, &e);
    CHECKF(r == (ssize_t)sizeof got, "parent read: %zd (%s)", r, e.msg);
    uint8_t wantb[2 * CS];
    memset(wantb, 'B', sizeof wantb);
    CHECKF(memcmp(got, wantb, sizeof got) == 0, "the parent does not see the child's write");
    CHECKF(durable_gen(vol) == g0,
           "a write in shared mode made a durable commit (durable generation %llu -> %llu): it "
           "should wait for an fsync",
           (unsigned long long)g0, (unsigned long long)durable_gen(vol));
    CHECKF(published_gen(vol) > g0, "the write is not published (scratch slot or manifest log)");
    if (fsync_in_parent) {
        CHECK_OK(scp_vfile_fsync(f, &e), e);
        CHECKF(durable_gen(vol) > g0 && durable_gen(vol) >= published_gen(vol),
               "an fsync in the other process did not make the write durable");
    }
    /* 2. kill the writer; this process goes away without a sync either */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    scp_vfile_close(f, &e);
    free(buf);
    /* (a close would sync what this process left pending: drop the state as an exit would) */
}

static void two_files(const char *vol) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = shared_volume(vol);
    scp_vfile *x = scp_vfile_open(v, "x", O_RDWR | O_CREAT, 0600, &e);
    scp_vfile *y = scp_vfile_open(v, "y", O_RDWR | O_CREAT, 0600, &e);
    REQUIRE(x && y);
    CHECK(scp_vfile_size(x) == 0 && scp_vfile_size(y) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        uint8_t b[2 * CS];
        memset(b, 'x', sizeof b);
        scp_err ce;
        int ok = scp_vfile_pwrite(x, b, sizeof b, 0, &ce) == (ssize_t)sizeof b &&
                 scp_vfile_pwrite(y, b, sizeof b, 0, &ce) == (ssize_t)sizeof b;
        _exit(ok ? 0 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child's writes failed");
    CHECKF(scp_vfile_size(y) == 2 * CS, "y: size %llu after the other process extended it",
           (unsigned long long)scp_vfile_size(y));
    CHECKF(scp_vfile_size(x) == 2 * CS,
           "x: size %llu after the other process extended it (and y's size was taken in first)",
           (unsigned long long)scp_vfile_size(x));
    scp_vfile_close(x, &e);
    scp_vfile_close(y, &e);
    CHECK(scp_volume_close(v, &e) == 0);
}

/* One byte over a pipe, waiting at most secs for it (a deadlock detector, not a timing
 * check: what is waited for needs no lock unless it is broken). Returns the byte, or 0. */
static char pipe_get(int fd, int secs) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    char c = 0;
    if (poll(&pfd, 1, secs * 1000) == 1 && read(fd, &c, 1) != 1) c = 0;
    return c;
}

/* which per-file hint slot f's id falls in (as volume.c's file_hint_slot) */
static unsigned hint_slot(scp_vfile *f) {
    uint64_t h;
    memcpy(&h, f->f->id, sizeof h);
    return (unsigned)(h % VOL_FILE_HINTS);
}

/* 6. per-file hints: another process reads and sizes a file that nobody committed since it
 *    last looked without the volume lock, while the volume's generation moved (other files
 *    were written) and a third party holds that lock (as a durable commit does across its
 *    flushes: PostgreSQL's backends waited there at every lseek of a relation); and once the
 *    lock is free it still reads the new bytes of a file that was written meanwhile. */
static void file_hints(const char *vol) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = shared_volume(vol);
    uint8_t *buf = malloc(SZ);
    scp_vfile *x = scp_vfile_open(v, "x", O_RDWR | O_CREAT, 0600, &e);
    REQUIRE(x != NULL);
    /* y must not share a hint slot with x or z (ids are random; 1,024 slots): a shared slot
     * makes y's read take the lock by design: a chance of 2 in 1,024 per run, which CI met once */
    scp_vfile *y = NULL, *z = NULL;
    for (int k = 0; k < 16 && !(y && z); k++) {
        char yn[8], zn[8];
        snprintf(yn, sizeof yn, "y%d", k);
        snprintf(zn, sizeof zn, "z%d", k);
        y = scp_vfile_open(v, yn, O_RDWR | O_CREAT, 0600, &e);
        z = scp_vfile_open(v, zn, O_RDWR | O_CREAT, 0600, &e);
        REQUIRE(y && z);
        if (hint_slot(y) == hint_slot(x) || hint_slot(y) == hint_slot(z)) {
            scp_vfile_close(y, &e);
            scp_vfile_close(z, &e);
            y = z = NULL;
        }
    }
    REQUIRE(y && z);
    fill(buf, 'X');
    REQUIRE(scp_vfile_pwrite(x, buf, SZ, 0, &e) == (ssize_t)SZ);
    fill(buf, 'Y');
    REQUIRE(scp_vfile_pwrite(y, buf, SZ, 0, &e) == (ssize_t)SZ);
    REQUIRE(scp_vfile_fsync(y, &e) == 0);
    int up[2], down[2];
    REQUIRE(pipe(up) == 0 && pipe(down) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) { /* the reader: looks at both files, then waits for the writer's turns */
        scp_err ce;
        uint8_t *b = malloc(SZ);
        char c = scp_vfile_pread(x, b, SZ, 0, &ce) == (ssize_t)SZ && scp_vfile_pread(y, b, SZ, 0, &ce) == (ssize_t)SZ ? 'r' : 'n';
        if (write(up[1], &c, 1) != 1 || pipe_get(down[0], 60) != 'g') _exit(2);
        memset(b, 0, SZ);
        c = scp_vfile_size(y) == SZ && scp_vfile_pread(y, b, SZ, 0, &ce) == (ssize_t)SZ && b[0] == 'Y' &&
                    b[SZ - 1] == 'Y'
                ? 'y'
                : 'n';
        if (write(up[1], &c, 1) != 1 || pipe_get(down[0], 60) != 'g') _exit(2);
        memset(b, 0, SZ);
        c = scp_vfile_pread(x, b, SZ, 0, &ce) == (ssize_t)SZ && b[0] == 'C' && b[CS] == 'X' ? 'x' : 'n';
        if (write(up[1], &c, 1) != 1) _exit(2);
        free(b);
        _exit(0);
    }
    CHECKF(pipe_get(up[0], 60) == 'r', "the reader could not read x and y");
    /* The volume's generation moves (z), and x changes (its first chunk). */
    fill(buf, 'Z');
    REQUIRE(scp_vfile_pwrite(z, buf, SZ, 0, &e) == (ssize_t)SZ);
    memset(buf, 'C', CS);
    REQUIRE(scp_vfile_pwrite(x, buf, CS, 0, &e) == (ssize_t)CS);
    /* A third party holds the volume lock (as the library takes it: vlockhold.h). */
    tu_vlock held = tu_vlock_hold(vol);
    REQUIRE(write(down[1], "g", 1) == 1);
    char got = pipe_get(up[0], 30);
    CHECKF(got == 'y', "the reader's read and size of y, which nobody wrote since it last looked, %s",
           got == 'n' ? "returned other bytes or sizes" : "waited for the volume lock (30 s)");
    tu_vlock_release(&held);
    if (got == 0) got = pipe_get(up[0], 60); /* (the read that waited, once the lock is free) */
    REQUIRE(write(down[1], "g", 1) == 1);
    CHECKF(pipe_get(up[0], 60) == 'x', "the reader did not see the other process's write to x");
    int st;
    waitpid(pid, &st, 0);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the reader failed");
    close(up[0]);
    close(up[1]);
    close(down[0]);
    close(down[1]);
    free(buf);
    scp_vfile_close(x, &e);
    scp_vfile_close(y, &e);
    scp_vfile_close(z, &e);
    CHECK(scp_volume_close(v, &e) == 0);
}

/* 6b. journal end hints of two files that share a slot: a value the other file stored is no
 *    hint for this one, even when it equals this file's end (an end of the other's log equal
 *    to ours made file_tail_moved skip its look, and a read miss a commit appended to ours). */
static void jend_collision(const char *vol) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = shared_volume(vol);
    enum { N = 400 };
    scp_vfile *fs[N] = {0};
    scp_vfile *a = NULL, *b = NULL;
    for (int k = 0; k < N && !b; k++) {
        char n[16];
        snprintf(n, sizeof n, "c%d", k);
        fs[k] = scp_vfile_open(v, n, O_RDWR | O_CREAT, 0600, &e);
        REQUIRE(fs[k] != NULL);
        for (int j = 0; j < k && !b; j++)
            if (hint_slot(fs[j]) == hint_slot(fs[k])) /* (jend slots use the same index) */ a = fs[j], b = fs[k];
    }
    REQUIRE(a && b); /* (400 ids in 1,024 slots: a shared one but for odds of about 1e-34) */
    uint8_t buf[CS];
    memset(buf, 'a', sizeof buf);
    REQUIRE(scp_vfile_pwrite(a, buf, sizeof buf, 0, &e) == (ssize_t)sizeof buf);
    uint64_t end = a->f->j_end;
    REQUIRE(end > 0);
    CHECKF(vol_jend_hint(v, a->f->id) == end, "a's own hint: %llu, want its end %llu",
           (unsigned long long)vol_jend_hint(v, a->f->id), (unsigned long long)end);
    vol_jend_hint_set(v, b->f->id, end);
    CHECKF(vol_jend_hint(v, a->f->id) == 0, "the other file's value read as a's hint (%llu)",
           (unsigned long long)vol_jend_hint(v, a->f->id));
    CHECK(vol_jend_hint(v, b->f->id) == end);
    /* something appended at a's end (a record header's bytes), with b's equal end in the slot */
    uint8_t rec[SCP_JREC_HDR_LEN], zero[SCP_JREC_HDR_LEN] = {0};
    memset(rec, 0x5a, sizeof rec);
    REQUIRE(pwrite(a->f->fd_j, rec, sizeof rec, (off_t)end) == (ssize_t)sizeof rec);
    CHECKF(file_tail_moved(a->f) == 1, "a record at a's end not seen while the other file's "
                                       "slot value equals that end");
    /* and after a look that found nothing there, with the other file's value unchanged */
    REQUIRE(pwrite(a->f->fd_j, zero, sizeof zero, (off_t)end) == (ssize_t)sizeof zero);
    CHECK(file_tail_moved(a->f) == 0);
    REQUIRE(pwrite(a->f->fd_j, rec, sizeof rec, (off_t)end) == (ssize_t)sizeof rec);
    CHECKF(file_tail_moved(a->f) == 1, "an earlier look's memo hid a record at a's end");
    REQUIRE(pwrite(a->f->fd_j, zero, sizeof zero, (off_t)end) == (ssize_t)sizeof zero);
    for (int k = 0; k < N; k++)
        if (fs[k]) scp_vfile_close(fs[k], &e);
    CHECK(scp_volume_close(v, &e) == 0);
}

/* 7. covered fsync: a process whose lazy write another process's fsync has since made durable
 *    writes no manifest when it fsyncs in turn (PostgreSQL's backends fsync the WAL one after
 *    another): the durable and published generations stay where that fsync left them, and the
 *    write is there after a reopen. */
static void covered_fsync(const char *vol) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = shared_volume(vol);
    uint8_t *buf = malloc(SZ);
    scp_vfile *x = scp_vfile_open(v, "x", O_RDWR | O_CREAT, 0600, &e);
    scp_vfile *y = scp_vfile_open(v, "y", O_RDWR | O_CREAT, 0600, &e);
    REQUIRE(x && y);
    fill(buf, 'A');
    REQUIRE(scp_vfile_pwrite(x, buf, SZ, 0, &e) == (ssize_t)SZ);
    REQUIRE(scp_vfile_pwrite(y, buf, SZ, 0, &e) == (ssize_t)SZ);
    REQUIRE(scp_vfile_fsync(x, &e) == 0);
    int up[2], down[2];
    REQUIRE(pipe(up) == 0 && pipe(down) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        scp_err ce;
        uint8_t b[CS];
        memset(b, 'B', sizeof b);
        char c = scp_vfile_pwrite(y, b, sizeof b, CS, &ce) == (ssize_t)sizeof b ? 'w' : 'n';
        if (write(up[1], &c, 1) != 1 || pipe_get(down[0], 60) != 'g') _exit(2);
        c = scp_vfile_fsync(y, &ce) == 0 ? 's' : 'n';
        if (write(up[1], &c, 1) != 1) _exit(2);
        _exit(0);
    }
    CHECKF(pipe_get(up[0], 60) == 'w', "the child's write failed");
    memset(buf, 'C', CS);
    REQUIRE(scp_vfile_pwrite(x, buf, CS, 0, &e) == (ssize_t)CS);
    REQUIRE(scp_vfile_fsync(x, &e) == 0); /* durable: the child's write to y too */
    uint64_t d0 = durable_gen(vol), p0 = published_gen(vol);
    REQUIRE(write(down[1], "g", 1) == 1);
    CHECKF(pipe_get(up[0], 60) == 's', "the child's fsync failed");
    uint64_t d1 = durable_gen(vol), p1 = published_gen(vol);
    CHECKF(d1 == d0 && p1 == p0,
           "an fsync whose write was already durable wrote a manifest (durable generation %llu -> "
           "%llu, published %llu -> %llu)",
           (unsigned long long)d0, (unsigned long long)d1, (unsigned long long)p0,
           (unsigned long long)p1);
    int st;
    waitpid(pid, &st, 0);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child failed");
    close(up[0]);
    close(up[1]);
    close(down[0]);
    close(down[1]);
    scp_vfile_close(x, &e);
    scp_vfile_close(y, &e);
    CHECK(scp_volume_close(v, &e) == 0);
    /* The state the fsyncs promised, after a reopen. */
    v = scp_volume_open(vol, key, NULL, &e);
    REQUIRE(v != NULL);
    y = scp_vfile_open(v, "y", O_RDONLY, 0, &e);
    REQUIRE(y != NULL);
    memset(buf, 0, SZ);
    CHECK(scp_vfile_pread(y, buf, SZ, 0, &e) == (ssize_t)SZ && buf[0] == 'A' && buf[CS] == 'B' &&
          buf[2 * CS] == 'A');
    scp_vfile_close(y, &e);
    CHECK(scp_volume_close(v, &e) == 0);
    free(buf);
}

/* Total bytes of the objects of the volume whose names end in ext (one file here). */
/* The bytes of the objects *ext up to each one's last non-zero byte: shared mode keeps a
 * journal object ahead of its log with zeros (docs/volume-format.md, preallocated journals),
 * so what the log holds is its length without the zeros behind it (every record ends in
 * ciphertext or a chain value). */
static long long objects_bytes(const char *vol, const char *ext) {
    char *objs = tu_path(vol, "objects");
    DIR *d = opendir(objs);
    long long n = d ? 0 : -1;
    size_t el = strlen(ext);
    for (struct dirent *de; d && (de = readdir(d)) != NULL;) {
        size_t nl = strlen(de->d_name), len;
        if (nl <= el || strcmp(de->d_name + nl - el, ext) != 0) continue;
        char *p = tu_path(objs, de->d_name);
        uint8_t *b = tu_read_file(p, &len);
        while (b && len && b[len - 1] == 0) len--;
        n += b ? (long long)len : 0;
        free(b);
        free(p);
    }
    if (d) closedir(d);
    free(objs);
    return n;
}

/* Open the volume and check that f holds exactly want[0, len), or alt[0, alen) if alt. */
static void expect_file(const char *vol, const uint8_t *want, size_t len, const uint8_t *alt,
                        size_t alen, const char *what) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = scp_volume_open(vol, key, NULL, &e);
    CHECKF(v != NULL, "%s: the volume does not open: %s", what, e.msg);
    if (!v) return;
    long bad = scp_volume_verify(v, NULL, NULL, NULL, &e);
    CHECKF(bad == 0, "%s: verify reports %ld problem(s): %s", what, bad, e.msg);
    scp_vfile *f = scp_vfile_open(v, "f", O_RDONLY, 0, &e);
    CHECKF(f != NULL, "%s: cannot open f: %s", what, e.msg);
    if (f) {
        if (alt && scp_vfile_size(f) == alen) {
            want = alt;
            len = alen;
        }
        CHECKF(scp_vfile_size(f) == len, "%s: f has %llu bytes, want %zu", what,
               (unsigned long long)scp_vfile_size(f), len);
        uint8_t *got = calloc(1, len + 1);
        ssize_t r = scp_vfile_pread(f, got, len + 1, 0, &e);
        CHECKF(r == (ssize_t)len, "%s: read of f: %zd (%s)", what, r, e.msg);
        CHECKF(r == (ssize_t)len && memcmp(got, want, len) == 0, "%s: f holds other bytes", what);
        free(got);
        scp_vfile_close(f, &e);
    }
    CHECK(scp_volume_close(v, &e) == 0);
}

/* 5. A durable base: 8 chunks of 'A', then a truncate to 16 (holes), fsynced. A forked child
 * writes 'C' over chunks 8-11 (holes) and 16-19 (appended), whole chunks, without an fsync.
 * dsave: keep the data objects as the fsync left them (a power cut's view). */
static void inplace_scenario(const char *vol, const char *dsave) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = shared_volume(vol);
    uint8_t *buf = malloc(SZ);
    fill(buf, 'A');
    scp_vfile *f = scp_vfile_open(v, "f", O_RDWR | O_CREAT, 0600, &e);
    REQUIRE(f != NULL);
    REQUIRE(scp_vfile_pwrite(f, buf, SZ, 0, &e) == (ssize_t)SZ);
    REQUIRE(scp_vfile_truncate(f, 2 * SZ, &e) == 0);
    REQUIRE(scp_vfile_fsync(f, &e) == 0);
    uint64_t g0 = durable_gen(vol);
    if (dsave) save_objects(vol, ".d", dsave);
    long long j0 = objects_bytes(vol, ".j");
    int ready[2];
    REQUIRE(pipe(ready) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        uint8_t b[4 * CS];
        memset(b, 'C', sizeof b);
        scp_err ce;
        int ok = scp_vfile_pwrite(f, b, sizeof b, 8 * CS, &ce) == (ssize_t)sizeof b &&
                 scp_vfile_pwrite(f, b, sizeof b, 16 * CS, &ce) == (ssize_t)sizeof b;
        char c = ok ? 'y' : 'n';
        if (!ok) fprintf(stderr, "child write: %s\n", ce.msg);
        (void)!write(ready[1], &c, 1);
        for (;;) pause(); /* killed here, between its writes and any fsync */
    }
    char c = 0;
    REQUIRE(read(ready[0], &c, 1) == 1);
    CHECKF(c == 'y', "the child's writes failed");
    close(ready[0]);
    close(ready[1]);
    uint8_t got[4 * CS], wantc[4 * CS];
    memset(wantc, 'C', sizeof wantc);
    CHECKF(scp_vfile_size(f) == 20 * CS, "size %llu after the other process appended",
           (unsigned long long)scp_vfile_size(f));
    ssize_t r = scp_vfile_pread(f, got, sizeof got, 8 * CS, &e);
    CHECKF(r == (ssize_t)sizeof got && memcmp(got, wantc, sizeof got) == 0,
           "the parent does not see the child's write into the holes (%zd: %s)", r, e.msg);
    r = scp_vfile_pread(f, got, sizeof got, 16 * CS, &e);
    CHECKF(r == (ssize_t)sizeof got && memcmp(got, wantc, sizeof got) == 0,
           "the parent does not see the child's append (%zd: %s)", r, e.msg);
    CHECKF(durable_gen(vol) == g0, "a write in shared mode made a durable commit");
    long long jgrow = objects_bytes(vol, ".j") - j0;
    CHECKF(jgrow >= 0 && jgrow < 2 * (long long)CS,
           "the lazy writes of 8 whole chunks (holes filled, appended) grew the journal by %lld "
           "bytes: the data went through the journal instead of in place",
           jgrow);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    scp_vfile_close(f, &e);
    free(buf);
}

static void inplace(const char *vol, const char *dsave) {
    size_t len = 20 * CS;
    uint8_t *want = calloc(1, len);
    memset(want, 'A', SZ);
    memset(want + 8 * CS, 'C', 4 * CS);
    memset(want + 16 * CS, 'C', 4 * CS);
    tu_child c;
    /* killed writer: the page cache kept the in-place chunks, and open takes the lazy state */
    if (tu_child_start(&c)) {
        inplace_scenario(vol, NULL);
        tu_child_exit(&c, NULL, 0);
    }
    CHECKF(tu_child_wait(&c, NULL, 0), "in-place scenario failed");
    expect_file(vol, want, len, NULL, 0, "in place, writer killed before an fsync");
    /* power cut: journal and scratch slot landed, the in-place chunks did not */
    if (tu_child_start(&c)) {
        inplace_scenario(vol, dsave);
        tu_child_exit(&c, NULL, 0);
    }
    CHECKF(tu_child_wait(&c, NULL, 0), "in-place scenario for the power cut failed");
    restore_objects(dsave, ".d", vol);
    /* the last fsynced state; or, if the writes were journaled (not in place), all of them */
    uint8_t *base = calloc(1, 2 * SZ);
    memset(base, 'A', SZ);
    expect_file(vol, base, 2 * SZ, want, len, "in place, power cut that lost the in-place chunks");
    free(base);
    free(want);
}

/* 8. Overwrites in place (a forked job rewriting a file in large writes: fio over an existing
 * file): a durable base of OVN chunks of 'A'; a forked child overwrites it whole with 'B'
 * (in place, to the chunks' second slots: the journal grows by a commit record, not the
 * data), the parent reads 'B' and fsyncs (the child's 'B' is durable now); the child
 * overwrites with 'C' (in place again: the other slot, which the durable 'B' does not name)
 * and then with 'D' (not in place: 'C' is not durable, and the durable 'B' holds the only
 * other slot, so 'D' goes through the journal). The parent reads each. jsave: keep the journal
 * as the fsync left it (a power cut that lost the lazy commits' records but kept the chunks
 * written in place). */
#define OVN 128u
static void overwrite_scenario(const char *vol, const char *jsave) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = shared_volume(vol);
    size_t len = OVN * CS;
    uint8_t *buf = malloc(len), *got = malloc(len);
    memset(buf, 'A', len);
    scp_vfile *f = scp_vfile_open(v, "f", O_RDWR | O_CREAT, 0600, &e);
    REQUIRE(f != NULL);
    REQUIRE(scp_vfile_pwrite(f, buf, len, 0, &e) == (ssize_t)len);
    REQUIRE(scp_vfile_fsync(f, &e) == 0);
    long long j0 = objects_bytes(vol, ".j");
    int up[2], down[2];
    REQUIRE(pipe(up) == 0 && pipe(down) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const char *steps = "BCD";
        for (int k = 0; k < 3; k++) {
            scp_err ce;
            memset(buf, steps[k], len);
            int ok = scp_vfile_pwrite(f, buf, len, 0, &ce) == (ssize_t)len;
            if (!ok) fprintf(stderr, "child write '%c': %s\n", steps[k], ce.msg);
            char c = ok ? steps[k] : 'n';
            (void)!write(up[1], &c, 1);
            if (k < 2 && pipe_get(down[0], 60) != 'g') _exit(1);
        }
        for (;;) pause(); /* killed here, after its writes and before any fsync */
    }
    const char *steps = "BCD";
    for (int k = 0; k < 3; k++) {
        char c = pipe_get(up[0], 60);
        CHECKF(c == steps[k], "the child's write '%c' failed", steps[k]);
        memset(buf, steps[k], len);
        ssize_t r = scp_vfile_pread(f, got, len, 0, &e);
        CHECKF(r == (ssize_t)len && memcmp(got, buf, len) == 0,
               "the parent does not see the child's overwrite '%c' (%zd: %s)", steps[k], r, e.msg);
        if (k == 0) {
            long long jgrow = objects_bytes(vol, ".j") - j0;
            CHECKF(jgrow >= 0 && jgrow < 2 * (long long)CS,
                   "an overwrite of %u whole chunks in one write grew the journal by %lld bytes: "
                   "the data went through the journal instead of in place",
                   OVN, jgrow);
            REQUIRE(scp_vfile_fsync(f, &e) == 0); /* 'B' is durable */
            if (jsave) save_objects(vol, ".j", jsave);
        }
        if (k < 2) (void)!write(down[1], "g", 1);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    scp_vfile_close(f, &e);
    free(buf);
    free(got);
}

static void overwrite_inplace(const char *vol, const char *jsave) {
    size_t len = OVN * CS;
    uint8_t *want = malloc(len);
    tu_child c;
    /* killed writer: the page cache kept everything; open takes the newest (lazy) state */
    if (tu_child_start(&c)) {
        overwrite_scenario(vol, NULL);
        tu_child_exit(&c, NULL, 0);
    }
    CHECKF(tu_child_wait(&c, NULL, 0), "overwrite scenario failed");
    memset(want, 'D', len);
    expect_file(vol, want, len, NULL, 0, "overwrites in place, writer killed before an fsync");
    /* power cut: the chunks written in place landed, the journal records after the fsync
     * did not: the volume goes back to the fsynced 'B', which neither 'C' nor 'D' may have
     * overwritten */
    if (tu_child_start(&c)) {
        overwrite_scenario(vol, jsave);
        tu_child_exit(&c, NULL, 0);
    }
    CHECKF(tu_child_wait(&c, NULL, 0), "overwrite scenario for the power cut failed");
    restore_objects(jsave, ".j", vol);
    memset(want, 'B', len);
    expect_file(vol, want, len, NULL, 0,
                "overwrites in place, power cut that lost the journal after the fsync");
    free(want);
}

int main(void) {
    tu_rng rng = {20261129};
    tu_key(&rng, key);
    char *dir = tu_tmpdir("shared");
    char *vol = tu_path(dir, "vol"), *jsave = tu_path(dir, "jsave");
    uint8_t *want = malloc(SZ);

    /* fsync in the other process: durable, and kept after the writer's death */
    tu_child c;
    if (tu_child_start(&c)) {
        scenario(vol, NULL, 1);
        tu_child_exit(&c, NULL, 0);
    }
    CHECKF(tu_child_wait(&c, NULL, 0), "scenario with an fsync failed");
    fill(want, 'A');
    memset(want + 2 * CS, 'B', 2 * CS);
    expect_content(vol, want, "fsynced by the other process, writer killed");

    /* no fsync, writer killed: the page cache keeps the lazy write */
    if (tu_child_start(&c)) {
        scenario(vol, NULL, 0);
        tu_child_exit(&c, NULL, 0);
    }
    CHECKF(tu_child_wait(&c, NULL, 0), "scenario without an fsync failed");
    expect_content(vol, want, "writer killed before an fsync");

    /* power cut: the lazy write's journal records are lost, the scratch slot landed */
    if (tu_child_start(&c)) {
        scenario(vol, jsave, 0);
        tu_child_exit(&c, NULL, 0);
    }
    CHECKF(tu_child_wait(&c, NULL, 0), "scenario for the power cut failed");
    restore_objects(jsave, ".j", vol);
    fill(want, 'A');
    expect_content(vol, want, "power cut after a lazy write");

    two_files(vol);
    file_hints(vol);
    jend_collision(vol);
    covered_fsync(vol);

    char *dsave = tu_path(dir, "dsave");
    inplace(vol, dsave);
    overwrite_inplace(vol, dsave);
    free(dsave);

    free(want);
    tu_rm_rf(dir);
    free(jsave);
    free(vol);
    free(dir);
    return tu_exit_code("test_volume_shared");
}
