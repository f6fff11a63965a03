/* tests/volume/test_volume_pcfail.c - a power cut after an fsync whose journal write failed.
 *
 * An fsync's one-flush durable commit writes its run (the type 3 records behind the file's
 * last commit record; in ordinary mode with the commit's chunk and commit records ahead of it)
 * in one journal pwrite, and the journal's sync is the commit point (docs/volume-format.md,
 * "Manifest log", one-flush commits). Here that pwrite fails with ENOSPC after half of its
 * bytes landed (the binary's pwrite wrapper, as test_volume_catchup's pwfail): half a record
 * lies in the journal. The process then writes on and fsyncs again (a second run: over the
 * half record or behind it?), or dies. Power cuts are built by hand, deterministically: the
 * volume directory is copied when the last successful fsync returned (the base), every write
 * and truncation of a volume file after it is recorded (split into 4 KiB-aligned pieces), and
 * a sync of a file makes its earlier pieces durable. A crash image is the base plus the
 * durable pieces plus a chosen subset of the others (all, none, each prefix in order, all but
 * one, and seeded random subsets), at four cuts:
 *   A  right after the failed fsync returned (the half record pending);
 *   B  after more writes, before the second fsync (the process dies there);
 *   C  inside the second fsync, at the entry of its journal's fdatasync (the commit point);
 *   D  after the second fsync returned (everything that was written kept).
 * Asserted on each image: it opens, scp_volume_verify finds nothing, and the file reads as
 * one of its states since its last successful fsync (the base's state or the state after a
 * later write: never a mix, never older; at D only the last state). Both in shared mode and
 * in ordinary mode, each with the failure once (the rest of the short write fails: a retry
 * inside the fsync works) and with every journal pwrite failing until the fsync returned;
 * in ordinary mode also with the disk full to the end (the second fsync and the close fail,
 * the queue kept since the first failure goes with the file; the states allowed then are all
 * those since the base). Also asserted: the failed fsync reports ENOSPC, the second succeeds, the
 * process reads its last writes throughout, and the real volume reopens at the last state.
 * Later forms (session 22, enum below: what follows the failed fsync), in ordinary mode: the
 * close instead of the second fsync (one handle; a read-only one closed last), the shield's
 * fork prepare (shared mode, a commit that fails again with the disk still full, then shared
 * writes), and a fork (the child reads f, tries to write it, and in shared mode writes and
 * fsyncs it; its records come back to the parent through a pipe, so the crash images hold the
 * writes of both). A close or an fsync that returns success promises the last state; one that
 * fails, nothing since the last success.
 * And a writer killed at its one-flush commit's journal sync, then another process's open
 * (run_kill). Usage: test_volume_pcfail [shared|ordinary|""] [fsync|close|close2|share|fork|forksh|kill]
 * ("later": all but fsync; ctest runs "" fsync and "" later as two tests)
 */
#include "testutil.h"
#include "volume/format.h"

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
int __real_ftruncate(int fd, off_t len);
int __wrap_ftruncate(int fd, off_t len);
int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
int __real_fsync(int fd);
int __wrap_fsync(int fd);

#define CS 4096u
#define NP 8 /* the file's pieces (chunks) */
#define MAXOPS 20000
#define MAXSTATES 64

enum { OP_WRITE, OP_TRUNC, OP_SYNC /* (a fork child's sync, sent to the parent) */ };
typedef struct op {
    char rel[160]; /* path under the volume directory */
    int type;
    uint64_t off, len; /* write: a piece; trunc: the new size in off */
    uint8_t *data;
    int synced; /* a later sync of that file returned */
} op;

typedef struct cut {
    const char *name;
    size_t nops;
    char *synced; /* each op's synced flag at the cut */
    int lo, hi;   /* the states the file may read as: [lo, hi] */
} cut;

static struct {
    int on;
    char root[4096];
    size_t rootlen;
    op *ops;
    size_t n;
    int fail;       /* 1: fail the next journal pwrite of records (ENOSPC after half); 2: fail
                     * the next journal pwrite outright (the rest of the short write) */
    int persist;    /* while set, every journal pwrite fails after the first (a full disk) */
    int fail_done;  /* the failure happened: 1 */
    uint64_t fail_off, fail_len;
    int fail_type;  /* the type of the first record in the failed pwrite */
    int watch_j;    /* record the offsets of journal pwrites of records while set */
    int nj;         /* the journal pwrites seen while watch_j: offset, length, first type */
    uint64_t j_off[8], j_len[8];
    int j_type[8];
    int cut_at_jsync; /* take cut C at the next journal fdatasync */
    cut *jsync_cut;
    int in_child;     /* a fork child: its syncs are recorded too (OP_SYNC), for the parent */
    int fail_apply;   /* 1: armed; 2 (after a journal sync returned): the next pwrite of a
                       * data or table object fails with ENOSPC (the apply after the commit
                       * point) */
    int kill_jsync;   /* a fork child dies at its next journal sync, before it (its records
                       * sent to the parent through this descriptor + 1) */
} R;

/* The path of fd relative to the volume directory into rel (0), or -1 (not under it). */
static int rel_of_fd(int fd, char *rel, size_t cap) {
    char p[64], t[4096];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, t, sizeof t - 1);
    if (n < 0) return -1;
    t[n] = 0;
    if ((size_t)n <= R.rootlen || strncmp(t, R.root, R.rootlen) || t[R.rootlen] != '/') return -1;
    if (strlen(t + R.rootlen + 1) >= cap) return -1;
    snprintf(rel, cap, "%s", t + R.rootlen + 1);
    return 0;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void add_op(const char *rel, int type, uint64_t off, uint64_t len, const void *data) {
    if (R.n == MAXOPS) tu_die("too many recorded operations");
    op *o = &R.ops[R.n++];
    snprintf(o->rel, sizeof o->rel, "%s", rel);
    o->type = type;
    o->off = off;
    o->len = len;
    o->synced = 0;
    o->data = NULL;
    if (type == OP_WRITE) {
        o->data = malloc(len ? len : 1);
        if (!o->data) tu_die("malloc");
        memcpy(o->data, data, len);
    }
}

/* A write landed: recorded in 4 KiB-aligned pieces (what a power cut keeps or drops). */
static void record_write(const char *rel, const void *buf, size_t n, uint64_t off) {
    const uint8_t *b = buf;
    while (n > 0) {
        uint64_t end = (off / CS + 1) * CS;
        size_t k = end - off < n ? (size_t)(end - off) : n;
        add_op(rel, OP_WRITE, off, k, b);
        b += k;
        off += k;
        n -= k;
    }
}

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off) {
    char rel[160];
    if ((!R.on && !R.persist) || rel_of_fd(fd, rel, sizeof rel) < 0)
        return __real_pwrite(fd, buf, n, off);
    int jrn = ends_with(rel, ".j");
    size_t z = 0;
    while (z < n && !((const uint8_t *)buf)[z]) z++;
    int records = jrn && z < n; /* (not journal_room's zeros, nor a lone end mark) */
    if (records && R.fail == 1) {
        R.fail = 0;
        R.fail_done = 1;
        R.fail_off = (uint64_t)off;
        R.fail_len = n;
        R.fail_type = n >= 4 ? (int)((const uint8_t *)buf)[3] : -1; /* (a u32, big-endian) */
        ssize_t r = n > 1 ? __real_pwrite(fd, buf, n / 2, off) : 0;
        if (r > 0) {
            if (R.on) record_write(rel, buf, (size_t)r, (uint64_t)off);
            R.fail = 2; /* (the call for the rest fails outright) */
            return r;
        }
        errno = ENOSPC;
        return -1;
    }
    if (R.fail_apply == 2 && (ends_with(rel, ".d") || ends_with(rel, ".t"))) {
        R.fail_apply = 0;
        R.fail_done = 1;
        errno = ENOSPC;
        return -1;
    }
    if (jrn && (R.fail == 2 || (R.persist && R.fail_done))) {
        R.fail = 0;
        errno = ENOSPC;
        return -1;
    }
    if (records && R.watch_j && R.nj < 8) {
        R.j_off[R.nj] = (uint64_t)off;
        R.j_len[R.nj] = n;
        R.j_type[R.nj++] = n >= 4 ? ((const uint8_t *)buf)[3] : -1;
    }
    ssize_t r = __real_pwrite(fd, buf, n, off);
    if (r > 0 && R.on) record_write(rel, buf, (size_t)r, (uint64_t)off);
    return r;
}

int __wrap_ftruncate(int fd, off_t len) {
    char rel[160];
    int r = __real_ftruncate(fd, len);
    if (r == 0 && R.on && rel_of_fd(fd, rel, sizeof rel) == 0) add_op(rel, OP_TRUNC, (uint64_t)len, 0, NULL);
    return r;
}

static void take_cut(cut *c, const char *name, int lo, int hi) {
    c->name = name;
    c->nops = R.n;
    c->synced = malloc(R.n ? R.n : 1);
    if (!c->synced) tu_die("malloc");
    for (size_t i = 0; i < R.n; i++) c->synced[i] = (char)R.ops[i].synced;
    c->lo = lo;
    c->hi = hi;
}

static int cut_lo, cut_hi; /* the states cut C allows */

/* A sync of fd returned: every recorded piece of its file is durable. */
static void synced(int fd, int r) {
    char rel[160];
    if (!R.on || rel_of_fd(fd, rel, sizeof rel) < 0) return;
    if (R.cut_at_jsync && ends_with(rel, ".j")) { /* cut C: before the commit point's sync */
        R.cut_at_jsync = 0;
        take_cut(R.jsync_cut, "C (at the second fsync's journal sync)", cut_lo, cut_hi);
    }
    if (r != 0) return;
    for (size_t i = 0; i < R.n; i++)
        if (!strcmp(R.ops[i].rel, rel)) R.ops[i].synced = 1;
    if (R.in_child) add_op(rel, OP_SYNC, 0, 0, NULL);
}

/* ---- a fork child's records -----------------------------------------------------------------
 * A child inherits the recording; what it writes and syncs (ops from n0 on) goes to the parent
 * through a pipe when it is done, and the parent appends it to its own (the two take turns: the
 * parent waits meanwhile), a sync marking the parent's earlier pieces of that file durable. */
struct op_wire {
    char rel[160];
    int type;
    uint64_t off, len;
};

static void ops_send(int fd, size_t n0) {
    for (size_t i = n0; i < R.n; i++) {
        struct op_wire w;
        memset(&w, 0, sizeof w);
        memcpy(w.rel, R.ops[i].rel, sizeof w.rel);
        w.type = R.ops[i].type;
        w.off = R.ops[i].off;
        w.len = R.ops[i].len;
        tu_turn_write(fd, &w, sizeof w);
        if (w.type == OP_WRITE && w.len) tu_turn_write(fd, R.ops[i].data, (size_t)w.len);
    }
}

/* Read the child's records until it closes the pipe. */
static void ops_receive(int fd) {
    for (;;) {
        struct op_wire w;
        memset(&w, 0, sizeof w); /* (filled by the reads below) */
        size_t g = 0;
        while (g < sizeof w) {
            ssize_t r = read(fd, (uint8_t *)&w + g, sizeof w - g);
            if (r <= 0) {
                REQUIRE(g == 0);
                return;
            }
            g += (size_t)r;
        }
        w.rel[sizeof w.rel - 1] = 0;
        if (w.type == OP_SYNC) {
            for (size_t i = 0; i < R.n; i++)
                if (!strcmp(R.ops[i].rel, w.rel)) R.ops[i].synced = 1;
            continue;
        }
        uint8_t *b = malloc(w.len ? (size_t)w.len : 1);
        REQUIRE(b);
        if (w.type == OP_WRITE && w.len) tu_turn_read(fd, b, (size_t)w.len);
        add_op(w.rel, w.type, w.off, w.len, b);
        free(b);
    }
}

static void ops_send(int fd, size_t n0);
static size_t kill_n0;

int __wrap_fdatasync(int fd) {
    char rel[160];
    if (R.kill_jsync && R.on && rel_of_fd(fd, rel, sizeof rel) == 0 && ends_with(rel, ".j")) {
        ops_send(R.kill_jsync - 1, kill_n0); /* (killed: what it wrote stays unsynced) */
        _exit(0);
    }
    if (R.cut_at_jsync) synced(fd, -1); /* (the cut is taken before the sync) */
    int r = __real_fdatasync(fd);
    synced(fd, r);
    if (R.fail_apply == 1 && r == 0 && R.on && rel_of_fd(fd, rel, sizeof rel) == 0 && ends_with(rel, ".j"))
        R.fail_apply = 2;
    return r;
}

int __wrap_fsync(int fd) {
    if (R.cut_at_jsync) synced(fd, -1);
    int r = __real_fsync(fd);
    synced(fd, r);
    return r;
}

/* ---- the image -------------------------------------------------------------------------- */

/* Write into img the base plus the durable pieces and those of the cut that keep[] keeps. */
static void build_image(const char *base, const char *img, const cut *c, const char *keep) {
    tu_rm_rf(img);
    REQUIRE(tu_copy_tree(base, img) == 0);
    char *done = calloc(c->nops ? c->nops : 1, 1);
    REQUIRE(done);
    for (size_t i = 0; i < c->nops; i++) {
        if (done[i]) continue;
        const char *rel = R.ops[i].rel;
        char *path = tu_path(img, rel);
        size_t n = 0, cap;
        uint8_t *b = tu_read_file(path, &n);
        if (!b) {
            n = 0;
            b = malloc(1);
            REQUIRE(b);
        }
        cap = n;
        int changed = 0;
        for (size_t k = i; k < c->nops; k++) {
            op *o = &R.ops[k];
            if (strcmp(o->rel, rel)) continue;
            done[k] = 1;
            if (!c->synced[k] && !keep[k]) continue;
            changed = 1;
            uint64_t end = o->type == OP_WRITE ? o->off + o->len : o->off;
            if (end > cap) {
                uint8_t *nb = realloc(b, (size_t)end);
                REQUIRE(nb);
                b = nb;
                cap = (size_t)end;
            }
            if (end > n) memset(b + n, 0, (size_t)(end - n));
            if (o->type == OP_WRITE) {
                memcpy(b + o->off, o->data, (size_t)o->len);
                if (end > n) n = (size_t)end;
            } else {
                n = (size_t)o->off;
            }
        }
        if (changed) REQUIRE(tu_write_file(path, b, n, 0600) == 0);
        free(b);
        free(path);
    }
    free(done);
}

static uint8_t states[MAXSTATES][NP * CS];
static int nstates;

static int last_state; /* the state the last image checked read as (-1: none) */

/* Open img and check it; returns 1 if it failed a check (the details printed). */
static int check_image(const char *img, const uint8_t *key, const cut *c, const char *what) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = scp_volume_open(img, key, NULL, &e);
    if (!v) {
        tu_fail_at(__FILE__, __LINE__, "%s, %s: the volume does not open: %s", c->name, what, e.msg);
        return 1;
    }
    int bad = 0;
    long probs = scp_volume_verify(v, NULL, NULL, NULL, &e);
    if (probs != 0) {
        tu_fail_at(__FILE__, __LINE__, "%s, %s: verify found %ld problems (%s)", c->name, what,
                   probs, probs < 0 ? e.msg : "");
        bad = 1;
    }
    size_t n = 0;
    tu_err_clear(&e);
    uint8_t *b = tu_vget(v, "f", &n, &e);
    if (!b) {
        tu_fail_at(__FILE__, __LINE__, "%s, %s: reading f: %s", c->name, what, e.msg);
        bad = 1;
    } else {
        int which = -1;
        for (int s = c->lo; s <= c->hi && which < 0; s++)
            if (n == sizeof states[s] && !memcmp(b, states[s], n)) which = s;
        last_state = which;
        if (which < 0) {
            int older = -1;
            for (int s = 0; s < c->lo && older < 0; s++)
                if (n == sizeof states[s] && !memcmp(b, states[s], n)) older = s;
            tu_fail_at(__FILE__, __LINE__, "%s, %s: f reads %zu bytes, none of its states %d-%d%s%d",
                       c->name, what, n, c->lo, c->hi,
                       older >= 0 ? " (an older one: state " : " (a mix: ", older);
            bad = 1;
        }
    }
    free(b);
    if (scp_volume_close(v, &e) < 0) {
        tu_fail_at(__FILE__, __LINE__, "%s, %s: close: %s", c->name, what, e.msg);
        bad = 1;
    }
    return bad;
}

/* Every image of the cut: all pending pieces kept, none, each prefix, all but one (unless
 * light), and nrand random subsets. Returns how many images were checked. */
static int check_cut(const char *base, const char *img, const uint8_t *key, const cut *c,
                     tu_rng *rng, size_t nrand, int light, int *nbad) {
    size_t np = 0, *pend = malloc((c->nops ? c->nops : 1) * sizeof *pend);
    char *keep = calloc(c->nops ? c->nops : 1, 1);
    REQUIRE(pend && keep);
    for (size_t i = 0; i < c->nops; i++)
        if (!c->synced[i]) pend[np++] = i;
    int images = 0;
    char what[320];
    /* (k == np + 1 .. 2np: all but one, unless light; then random subsets) */
    size_t total = 2 * np + 1 + nrand;
    for (size_t k = 0; k <= total; k++) {
        memset(keep, 0, c->nops);
        if (light && k > np && k <= 2 * np) continue;
        if (k <= np) { /* the first k pending pieces in order: k == np keeps all */
            for (size_t j = 0; j < k; j++) keep[pend[j]] = 1;
            snprintf(what, sizeof what, "the first %zu of %zu pending pieces kept", k, np);
        } else if (k <= 2 * np) {
            for (size_t j = 0; j < np; j++) keep[pend[j]] = j != k - np - 1;
            snprintf(what, sizeof what, "all of %zu pending pieces but #%zu (%s @%llu) kept", np,
                     k - np - 1, R.ops[pend[k - np - 1]].rel,
                     (unsigned long long)R.ops[pend[k - np - 1]].off);
        } else {
            if (!np) break;
            for (size_t j = 0; j < np; j++) keep[pend[j]] = tu_pct(rng, 50);
            snprintf(what, sizeof what, "random subset %zu of %zu pending pieces", k - 2 * np, np);
        }
        build_image(base, img, c, keep);
        *nbad += check_image(img, key, c, what);
        images++;
        if (*nbad >= 6) break; /* (enough said) */
    }
    free(pend);
    free(keep);
    return images;
}

static void fill_piece(uint8_t *b, int k) {
    memset(b, 0, CS);
    snprintf((char *)b, CS, "pcfail write %d", k);
    for (size_t i = 32; i < CS; i++) b[i] = (uint8_t)(k * 31 + i);
}

static int wseq; /* the write number */

/* Write piece p (a new state of f) and remember the state. Returns 0, or -1 if the write
 * failed (reported; no state remembered). */
static int put(scp_vfile *f, int p) {
    uint8_t b[CS];
    scp_err e;
    fill_piece(b, ++wseq);
    ssize_t w = scp_vfile_pwrite(f, b, CS, (uint64_t)p * CS, &e);
    CHECKF(w == (ssize_t)CS, "write %d at piece %d returned %zd: %s", wseq, p, w, w < 0 ? e.msg : "");
    if (w != (ssize_t)CS) return -1;
    REQUIRE(nstates < MAXSTATES);
    memcpy(states[nstates], states[nstates - 1], NP * CS);
    memcpy(states[nstates] + (size_t)p * CS, b, CS);
    nstates++;
    return 0;
}

/* The process reads its last state of f. */
static void reads_last(scp_vfile *f, const char *when) {
    uint8_t b[NP * CS];
    scp_err e;
    ssize_t r = scp_vfile_pread(f, b, sizeof b, 0, &e);
    CHECKF(r == (ssize_t)sizeof b && !memcmp(b, states[nstates - 1], sizeof b),
           "%s: the writer does not read its last state (%zd%s%s)", when, r, r < 0 ? ": " : "",
           r < 0 ? e.msg : "");
}

/* Which of the states lo..hi b holds (-1: none). */
static int state_of(const uint8_t *b, int lo, int hi) {
    for (int s = lo; s <= hi; s++)
        if (!memcmp(b, states[s], NP * CS)) return s;
    return -1;
}

/* What follows the failed fsync:
 *   FSYNC  more writes, then a second fsync (the test's first form);
 *   CLOSE  more writes, then the close (the last handle: its commit, the writer lock let go and
 *          the file's state freed; a close that could not make the data durable must fail);
 *   CLOSE2 the same with a read-only handle open too, closed last (the commit is the writer
 *          handle's; the writer lock goes, and the state is freed, with the read-only one);
 *   SHARE  the shield's fork prepare (sh_go_shared: shared mode, an fsync of the file, a sync
 *          of the volume, shared mode again), with the disk still full during its fsync unless
 *          the failure was once; then more writes in shared mode (lazy commits) and an fsync;
 *   FORK   a fork (the library's handlers alone, ordinary mode); the parent writes on, then the
 *          child reads f and tries to write it (the parent holds the writer lock: EBUSY), and
 *          exits; the parent fsyncs;
 *   FORKSH SHARE, then a fork; the parent writes on, then the child reads f, writes a piece of
 *          its own and fsyncs, and exits; the parent writes once more and fsyncs;
 *   APPLY  not a failed journal write: the first fsync's apply after its commit point fails
 *          (the next pwrite of .d or .t after the journal's sync: ENOSPC); then as FSYNC. */
enum { SC_FSYNC, SC_CLOSE, SC_CLOSE2, SC_SHARE, SC_FORK, SC_FORKSH, SC_APPLY, SC_N };
static const char *const sc_name[SC_N] = {"fsync", "close", "close2", "share", "fork", "forksh", "apply"};

/* The shield's fork prepare (src/shield/core.c, sh_go_shared and sh_commit_all). */
static int go_shared(scp_volume *v, scp_vfile *f) {
    scp_err e;
    scp_volume_set_shared(v);
    int rc = scp_vfile_fsync(f, &e);
    if (scp_volume_sync(v, &e) < 0) rc = -1;
    scp_volume_set_shared(v);
    return rc;
}

/* The fork child (FORK, FORKSH): waits for the parent's go (its write count), reads f and sends
 * it, writes a piece (FORKSH: and fsyncs), sends the two results and its records. */
static void child(int sc, scp_vfile *f, int in, int out) {
    R.in_child = 1;
    R.cut_at_jsync = 0;
    size_t n0 = R.n;
    alarm(30); /* (a child that waits for ever for a writer lock the parent keeps: a failure) */
    int ws;
    tu_turn_read(in, &ws, sizeof ws);
    uint8_t b[NP * CS];
    scp_err e;
    memset(b, 0, sizeof b);
    ssize_t r = scp_vfile_pread(f, b, sizeof b, 0, &e);
    if (r != (ssize_t)sizeof b) fprintf(stderr, "child: read f: %zd %s\n", r, r < 0 ? e.msg : "");
    tu_turn_write(out, b, sizeof b);
    uint8_t p[CS];
    fill_piece(p, ws + 1);
    int res[2];
    res[0] = (int)scp_vfile_pwrite(f, p, CS, 6 * CS, &e);
    res[1] = res[0] == (int)CS && sc == SC_FORKSH ? scp_vfile_fsync(f, &e) : 1;
    if (res[0] != (int)CS || res[1] < 0) fprintf(stderr, "child: write/fsync: %d %d: %s\n", res[0], res[1], e.msg);
    tu_turn_write(out, res, sizeof res);
    ops_send(out, n0);
    _exit(0);
}

static void run(int shared, int persist, int sc) {
    char mode[128];
    snprintf(mode, sizeof mode, "%s, %s%s", shared ? "shared" : "ordinary", sc_name[sc],
             persist == 2   ? ", the disk full to the end"
             : persist == 1 ? ", the disk full until the fsync returned"
                            : "");
    int switching = sc == SC_SHARE || sc == SC_FORKSH;
    tu_rng rng = {(shared ? 0x5c0f21u : 0x0c0f21u) + (unsigned)persist + 16u * (unsigned)sc};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    wseq = 0;
    nstates = 1;
    for (int p = 0; p < NP; p++) fill_piece(states[0] + (size_t)p * CS, 0);
    scp_volume *v = tu_new_volume_chunk(&rng, shared ? "pcfail-s" : "pcfail-o", CS, key, &root, &vd);
    REQUIRE_OK(tu_vput(v, "f", states[0], NP * CS, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    if (shared) scp_volume_set_shared(v);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "f", O_RDWR, 0, &e), e);
    scp_vfile *hr = sc == SC_CLOSE2 ? REQUIRE_PTR(scp_vfile_open(v, "f", O_RDONLY, 0, &e), e) : NULL;
    /* a durable commit, then lazy writes and another (the log and the journal under way, as
     * pwfail's at_fsync: the lazy records behind the first are carried by the next fsync) */
    REQUIRE(put(f, 0) == 0);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    REQUIRE(put(f, 1) == 0);
    REQUIRE(put(f, 2) == 0);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);

    /* The base: the last successful fsync returned. */
    char *base = tu_path(root, "base"), *img = tu_path(root, "img");
    REQUIRE(tu_copy_tree(vd, base) == 0);
    int s_base = nstates - 1, s_lo = s_base; /* (s_lo: the state of the last fsync that returned) */
    snprintf(R.root, sizeof R.root, "%s", vd);
    R.rootlen = strlen(R.root);
    R.n = 0;
    R.on = 1;
    put(f, 3);
    put(f, 1);
    put(f, 4);

    /* The failed fsync: its journal pwrite (the run) fails with ENOSPC after half of it. */
    R.fail = sc != SC_APPLY;
    R.fail_apply = sc == SC_APPLY;
    R.fail_done = 0;
    R.persist = persist;
    int frc = scp_vfile_fsync(f, &e);
    R.fail_apply = 0;
    int ferr = frc < 0 ? e.sys : 0;
    R.fail = 0;
    R.persist = persist == 2 || (persist == 1 && switching); /* (2: every later journal pwrite fails too) */
    cut ca, cb, cc, cd;
    memset(&cc, 0, sizeof cc);
    take_cut(&ca, "A (after the failed fsync)", s_base, nstates - 1);
    CHECKF(R.fail_done, "%s: the fsync wrote nothing to a journal to fail", mode);
    CHECKF((frc < 0 && ferr == ENOSPC) || sc == SC_APPLY,
           "%s: the fsync whose journal pwrite failed returned %d (errno %d), want ENOSPC", mode,
           frc, ferr);
    if (sc == SC_APPLY) printf("%s: the fsync whose apply failed returned %d (errno %d)\n", mode, frc, ferr);
    reads_last(f, "after the failed fsync");
    if (switching) { /* the shield's fork prepare (the disk still full but after a one-off failure) */
        int grc = go_shared(v, f);
        R.persist = persist == 2;
        printf("%s: the fork prepare's commit %s\n", mode, grc == 0 ? "succeeded" : "failed");
        if (grc == 0) s_lo = nstates - 1;
        reads_last(f, "after the fork prepare");
    }
    R.nj = 0;
    R.watch_j = 1; /* (where the writes that follow put their records) */

    /* The process writes on (over the failed fsync's pieces and others). */
    pid_t kid = -1;
    int to_kid[2] = {-1, -1}, from_kid[2] = {-1, -1};
    if (sc == SC_FORK || sc == SC_FORKSH) {
        REQUIRE(pipe(to_kid) == 0 && pipe(from_kid) == 0);
        fflush(NULL);
        kid = fork();
        REQUIRE(kid >= 0);
        if (kid == 0) {
            close(to_kid[1]);
            close(from_kid[0]);
            child(sc, f, to_kid[0], from_kid[1]);
        }
        close(to_kid[0]);
        close(from_kid[1]);
    }
    put(f, 4);
    put(f, 5);
    put(f, 0);
    reads_last(f, "after the writes that followed");
    if (kid > 0) { /* the child's turn */
        tu_turn_write(to_kid[1], &wseq, sizeof wseq);
        uint8_t b[NP * CS];
        int res[2] = {-1, -1};
        size_t g = 0;
        while (g < sizeof b) {
            ssize_t r = read(from_kid[0], b + g, sizeof b - g);
            if (r <= 0) break;
            g += (size_t)r;
        }
        if (g == sizeof b) {
            int which = state_of(b, s_lo, nstates - 1);
            CHECKF(which >= 0, "%s: the fork child reads f as none of its states %d-%d (%s)", mode,
                   s_lo, nstates - 1, state_of(b, 0, s_lo) >= 0 ? "an older one" : "a mix");
            g = 0;
            while (g < sizeof res) {
                ssize_t r = read(from_kid[0], (uint8_t *)res + g, sizeof res - g);
                if (r <= 0) break;
                g += (size_t)r;
            }
        }
        if (g == sizeof res) ops_receive(from_kid[0]);
        int st = 0;
        REQUIRE(waitpid(kid, &st, 0) == kid);
        close(to_kid[1]);
        close(from_kid[0]);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0 && g == sizeof res,
               "%s: the fork child did not finish (status 0x%x)", mode, st);
        if (sc == SC_FORK) {
            CHECKF(res[0] < 0, "%s: the fork child wrote f while its parent held it (%d)", mode, res[0]);
        } else {
            CHECKF(res[0] == (int)CS && res[1] == 0, "%s: the fork child's write and fsync: %d, %d",
                   mode, res[0], res[1]);
            if (res[0] == (int)CS) { /* its state (durable if its fsync returned) */
                REQUIRE(nstates < MAXSTATES);
                memcpy(states[nstates], states[nstates - 1], NP * CS);
                fill_piece(states[nstates] + 6 * CS, ++wseq);
                nstates++;
                if (res[1] == 0) s_lo = nstates - 1;
            }
            put(f, 2); /* (the parent's write on top of the child's) */
        }
        reads_last(f, "after the fork child's turn");
    }
    take_cut(&cb, "B (writes after the failure, before the second fsync)", s_lo, nstates - 1);

    /* The second fsync, or the close; cut C at its journal's sync. */
    cut_lo = s_lo;
    cut_hi = nstates - 1;
    R.jsync_cut = &cc;
    R.cut_at_jsync = 1;
    R.watch_j = 1;
    int src;
    const char *what = sc == SC_CLOSE || sc == SC_CLOSE2 ? "close" : "second fsync";
    if (sc == SC_CLOSE || sc == SC_CLOSE2) {
        src = scp_vfile_close(f, &e);
        f = NULL;
    } else {
        src = scp_vfile_fsync(f, &e);
    }
    R.watch_j = 0;
    CHECKF(persist == 2 ? src < 0 : src == 0, "%s: the %s returned %d: %s", mode, what, src,
           src ? e.msg : "");
    /* (in shared mode every write was committed when it returned, and a close, as POSIX's,
     * promises nothing durable: the volume's close does) */
    int promised = src == 0 && (f || !shared);
    CHECKF(persist == 2 || !R.cut_at_jsync || !promised, "%s: the %s synced no journal", mode, what);
    R.cut_at_jsync = 0;
    if (hr) { /* the read-only handle reads a state since the last fsync, and closes */
        uint8_t b[NP * CS];
        ssize_t r = scp_vfile_pread(hr, b, sizeof b, 0, &e);
        CHECKF(r == (ssize_t)sizeof b && state_of(b, promised ? nstates - 1 : s_lo, nstates - 1) >= 0,
               "%s: the read-only handle reads none of the states since the last fsync (%zd%s%s)",
               mode, r, r < 0 ? ": " : "", r < 0 ? e.msg : "");
        CHECK_OK(scp_vfile_close(hr, &e), e);
    }
    take_cut(&cd, promised ? "D (after it returned)" : "D (after it failed)",
             promised ? nstates - 1 : s_lo, nstates - 1);
    if (f) reads_last(f, "after the second fsync");
    R.on = 0;
    printf("%s: the failed fsync's journal pwrite: offset %llu, %llu bytes, its first record of "
           "type %d (half of it written); %zu writes recorded after the base; the journal "
           "pwrites of records after it, to the %s (offset+length:first type):",
           mode, (unsigned long long)R.fail_off, (unsigned long long)R.fail_len, R.fail_type, R.n,
           what);
    for (int i = 0; i < R.nj; i++)
        printf(" %llu+%llu:%d", (unsigned long long)R.j_off[i], (unsigned long long)R.j_len[i],
               R.j_type[i]);
    printf("%s\n", R.nj ? "" : " none");
    if (f && persist == 2) { /* (its commit fails: the kept queue goes with the file) */
        int crc = scp_vfile_close(f, &e);
        CHECKF(crc < 0, "%s: the close committed with every journal pwrite failing", mode);
        (void)scp_volume_close(v, &e);
    } else {
        if (f) CHECK_OK(scp_vfile_close(f, &e), e);
        if (persist == 2) (void)scp_volume_close(v, &e);
        else {
            CHECK_OK(scp_volume_close(v, &e), e);
            promised = 1;
        }
    }
    R.persist = 0;

    /* The real volume (no power cut) reopens at the last state, or (nothing promised since the
     * last fsync that returned) at a state since it. */
    cut real = {"the real volume", 0, NULL, promised ? nstates - 1 : s_lo, nstates - 1};
    check_image(vd, key, &real, "closed and reopened");
    printf("%s: the real volume reopened reads state %d of %d (the base: %d)\n", mode, last_state,
           nstates - 1, s_base);

    /* (the later forms share the first's steps up to cut A, whose images it checks: theirs
     * from B on, each prefix and 8 random subsets, for the test's time) */
    int nbad = 0, images = 0;
    cut *cuts[] = {&ca, &cb, &cc, &cd};
    for (size_t i = sc == SC_FSYNC ? 0 : 1; i < sizeof cuts / sizeof *cuts; i++) {
        if (!cuts[i]->synced) continue;
        int bad0 = nbad;
        int k = check_cut(base, img, key, cuts[i], &rng, sc == SC_FSYNC ? 12 : 8, sc != SC_FSYNC, &nbad);
        images += k;
        printf("%s: cut %s: %zu recorded writes, %d images, %d failed\n", mode, cuts[i]->name,
               cuts[i]->nops, k, nbad - bad0);
        if (nbad >= 6) break;
    }
    printf("%s: %d crash images checked, %d failed\n", mode, images, nbad);
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) free(cuts[i]->synced);
    for (size_t i = 0; i < R.n; i++) free(R.ops[i].data);
    R.n = 0;
    tu_rm_rf(root);
    free(base);
    free(img);
    free(root);
    free(vd);
}

/* A writer killed between its one-flush commit's journal pwrite and that journal's sync (the
 * commit point): its record lies in the page cache, in a listed journal. The next open takes it
 * (mlog_adopt_journals: a commit whose fsync never returned may be taken or not) and names it
 * durably in manifest.log; then a power cut. Every image must open at a state since the base:
 * on main the open synced manifest.log and not the journal, and an image that lost the
 * journal's pieces named a state whose records were gone ("chunk table does not match").
 * The writer is a fork child (its records come back through a pipe); the parent then opens
 * the volume. */
static void run_kill(void) {
    const char *mode = "ordinary, a writer killed at its journal sync, then an open";
    tu_rng rng = {0x0c0f21u + 0x100u};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    wseq = 0;
    nstates = 1;
    for (int p = 0; p < NP; p++) fill_piece(states[0] + (size_t)p * CS, 0);
    scp_volume *v = tu_new_volume_chunk(&rng, "pcfail-k", CS, key, &root, &vd);
    REQUIRE_OK(tu_vput(v, "f", states[0], NP * CS, &e), e);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "f", O_RDWR, 0, &e), e);
    REQUIRE(put(f, 0) == 0);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    REQUIRE(put(f, 1) == 0);
    REQUIRE(put(f, 2) == 0);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    char *base = tu_path(root, "base"), *img = tu_path(root, "img");
    REQUIRE(tu_copy_tree(vd, base) == 0);
    int s_base = nstates - 1;
    snprintf(R.root, sizeof R.root, "%s", vd);
    R.rootlen = strlen(R.root);
    R.n = 0;
    R.on = 1;
    int pp[2];
    REQUIRE(pipe(pp) == 0);
    fflush(NULL);
    pid_t kid = fork();
    REQUIRE(kid >= 0);
    if (kid == 0) { /* the writer: three writes, an fsync killed at its journal's sync */
        close(pp[0]);
        R.in_child = 1;
        kill_n0 = R.n;
        scp_volume *cv = scp_volume_open(vd, key, NULL, &e);
        scp_vfile *cf = cv ? scp_vfile_open(cv, "f", O_RDWR, 0, &e) : NULL;
        /* (a first fsync: the first commit after an open does not go in one flush) */
        if (!cf || put(cf, 3) < 0 || scp_vfile_fsync(cf, &e) < 0 || put(cf, 1) < 0 || put(cf, 4) < 0)
            _exit(2);
        R.kill_jsync = pp[1] + 1;
        (void)scp_vfile_fsync(cf, &e);
        _exit(3); /* (no journal sync) */
    }
    close(pp[1]);
    for (int i = 0, pcs[3] = {3, 1, 4}; i < 3; i++) { /* (the child's states, as it wrote them) */
        memcpy(states[nstates], states[nstates - 1], NP * CS);
        fill_piece(states[nstates] + (size_t)pcs[i] * CS, ++wseq);
        nstates++;
    }
    ops_receive(pp[0]);
    close(pp[0]);
    int st = 0;
    REQUIRE(waitpid(kid, &st, 0) == kid);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: the writer was not killed at its journal "
           "sync (status 0x%x)", mode, st);
    cut ck, co;
    s_base++; /* (the child's first fsync returned) */
    take_cut(&ck, "K (the writer killed before its journal sync)", s_base, nstates - 1);
    /* The next open: it may take the killed writer's commit (it did, here) */
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    take_cut(&co, "O (after the next open took it)", s_base, nstates - 1);
    size_t n = 0;
    uint8_t *b = tu_vget(v, "f", &n, &e);
    CHECKF(b && n == NP * CS && state_of(b, s_base, nstates - 1) >= 0, "%s: the open reads f as "
           "none of its states since the base", mode);
    printf("%s: the open reads state %d (its last fsync's: %d, the writer's last: %d)\n", mode,
           b && n == NP * CS ? state_of(b, s_base, nstates - 1) : -1, s_base, nstates - 1);
    free(b);
    CHECK_OK(scp_volume_close(v, &e), e);
    R.on = 0;
    int nbad = 0, images = 0;
    cut *cuts[] = {&ck, &co};
    for (size_t i = 0; i < 2; i++) {
        int bad0 = nbad;
        int k = check_cut(base, img, key, cuts[i], &rng, 8, 1, &nbad);
        images += k;
        printf("%s: cut %s: %zu recorded writes, %d images, %d failed\n", mode, cuts[i]->name,
               cuts[i]->nops, k, nbad - bad0);
        free(cuts[i]->synced);
        if (nbad >= 6) break;
    }
    printf("%s: %d crash images checked, %d failed\n", mode, images, nbad);
    for (size_t i = 0; i < R.n; i++) free(R.ops[i].data);
    R.n = 0;
    tu_rm_rf(root);
    free(base);
    free(img);
    free(root);
    free(vd);
}

int main(int argc, char **argv) {
    R.ops = calloc(MAXOPS, sizeof *R.ops);
    REQUIRE(R.ops);
    signal(SIGPIPE, SIG_IGN); /* (a fork child that died: its pipe's write fails, reported) */
    const char *which = argc > 1 ? argv[1] : "";
    const char *scw = argc > 2 ? argv[2] : "";
    for (int sc = 0; sc < SC_N; sc++) {
        if (*scw && strcmp(scw, sc_name[sc]) && (strcmp(scw, "later") || sc == SC_FSYNC)) continue;
        for (int persist = 0; persist < 3; persist++) {
            /* (shared mode's writes commit at once: with the disk full they fail too; the
             * shield's fork prepare is an ordinary-mode process's, and then the writes after it
             * are shared mode's) */
            if ((!*which || !strcmp(which, "shared")) && persist < 2 && sc == SC_FSYNC)
                run(1, persist, sc);
            /* (close2 differs from close only when the writer's close fails) */
            if ((!*which || !strcmp(which, "ordinary")) && (persist < 2 || (sc != SC_SHARE && sc != SC_FORKSH)) &&
                (sc != SC_CLOSE2 || persist == 2) && (sc != SC_APPLY || persist == 0))
                run(0, persist, sc);
        }
    }
    if ((!*which || !strcmp(which, "ordinary")) && (!*scw || !strcmp(scw, "kill") || !strcmp(scw, "later"))) run_kill();
    free(R.ops);
    return tu_exit_code("test_volume_pcfail");
}
