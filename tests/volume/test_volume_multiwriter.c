/* test_volume_multiwriter - several processes write the same files of one volume.
 *
 * The writer lock lets one process at a time write a file; this suite checks that each writer
 * starts from the newest commit, so that every committed write survives, in commit order, as on
 * a local file system:
 *   pairs    process 2 holds file f at an older version (open, or closed but kept in its file
 *            cache); process 1 (a forked child with its own scp_volume_open) writes f, commits
 *            and closes; then process 2 writes and commits. Cases: append vs overwrite,
 *            overwrite vs overwrite of the same chunk and of different chunks, append vs
 *            O_APPEND, truncate vs overwrite; each also with the generation hint reset by the
 *            "host" (process 2's generation written into bytes 0-7 of `lock`). Asserts the
 *            exact bytes a fresh process reads and that scp_volume_verify finds no problem.
 *   random   4 processes run sessions (open, random pwrite/truncate/fsync, close) on 3 shared
 *            files, a session at a time per file under a host flock, and publish each committed
 *            session to a model in shared memory; they keep handles open across other
 *            processes' sessions and sometimes reset the hint. The final contents must equal
 *            the model, and the volume must verify.
 *   usage: test_volume_multiwriter [pairs|random|all] [seed]
 */
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "testutil.h"

#define CS 4096u

static uint8_t g_key[SCP_VOLUME_KEY_LEN];
static char *g_vd;

static scp_volume *vopen(void) {
    scp_err e;
    return REQUIRE_PTR(scp_volume_open(g_vd, g_key, NULL, &e), e);
}

static uint64_t vgen(scp_volume *v) {
    scp_err e;
    scp_volume_info info;
    REQUIRE_OK(scp_volume_info_get(v, &info, &e), e);
    return info.generation;
}

/* What a host can do: write a generation into the hint (bytes 0-7 of `lock`, native order). */
static void host_set_hint(uint64_t gen) {
    char *p = tu_path(g_vd, "lock");
    int fd = open(p, O_WRONLY);
    if (fd < 0 || pwrite(fd, &gen, 8, 0) != 8) tu_die("write lock");
    close(fd);
    free(p);
}

static void fill(uint8_t *b, size_t n, char c) { memset(b, c, n); }

/* A fresh volume with file "f" holding `init` (len bytes). */
static void setup(const char *tag, tu_rng *rng, const uint8_t *init, size_t len) {
    scp_err e;
    char *root;
    scp_volume *v = tu_new_volume(rng, tag, g_key, &root, &g_vd);
    REQUIRE_OK(tu_vput(v, "f", init, len, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    free(root);
}

static void problem_cb(void *ctx, const char *path, int64_t off, const char *msg) {
    (void)ctx;
    tu_fail_at(__FILE__, __LINE__, "verify: %s at %lld: %s", path, (long long)off, msg);
}

/* A fresh process's view: f must read exactly want, and the volume must verify. */
static void check_final(const char *name, const uint8_t *want, size_t wlen) {
    pid_t pid = fork();
    if (pid < 0) tu_die("fork");
    if (pid == 0) {
        scp_err e;
        tu_context = name;
        tu_failures = 0; /* the parent's are the parent's to report */
        scp_volume *v = vopen();
        size_t n;
        uint8_t *got = tu_vget(v, "f", &n, &e);
        CHECKF(got, "%s: read f: %s", name, e.msg);
        if (got) {
            CHECKF(n == wlen, "%s: f has %zu bytes, want %zu", name, n, wlen);
            size_t k = 0;
            while (k < n && k < wlen && got[k] == want[k]) k++;
            CHECKF(n != wlen || k == n, "%s: f differs at byte %zu: 0x%02x, want 0x%02x", name, k,
                   got[k], want[k]);
        }
        free(got);
        long probs = scp_volume_verify(v, problem_cb, NULL, NULL, &e);
        CHECKF(probs == 0, "%s: verify found %ld problem(s)", name, probs);
        scp_volume_close(v, &e);
        _exit(tu_failures ? 1 : 0);
    }
    int st;
    waitpid(pid, &st, 0);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: final check failed", name);
}

/* ---- the two-process sequences ---------------------------------------------------------- */

enum op { OP_PWRITE, OP_APPEND, OP_TRUNC };
struct step {
    enum op op;
    uint64_t off;  /* pwrite offset, or truncate size */
    size_t len;
    char c;
};

/* Apply one step through handle h (opened O_RDWR, or O_RDWR|O_APPEND for OP_APPEND). */
static int do_step(scp_vfile *h, const struct step *s, scp_err *e) {
    uint8_t buf[4 * CS];
    fill(buf, s->len, s->c);
    switch (s->op) {
    case OP_PWRITE: return scp_vfile_pwrite(h, buf, s->len, s->off, e) == (ssize_t)s->len ? 0 : -1;
    case OP_APPEND: return scp_vfile_write(h, buf, s->len, e) == (ssize_t)s->len ? 0 : -1;
    case OP_TRUNC: return scp_vfile_truncate(h, s->off, e);
    }
    return -1;
}

/* The same on the expected bytes. */
static void model_step(uint8_t *m, size_t *len, const struct step *s) {
    switch (s->op) {
    case OP_PWRITE:
        if (s->off + s->len > *len) {
            memset(m + *len, 0, s->off + s->len - *len);
            *len = s->off + s->len;
        }
        memset(m + s->off, s->c, s->len);
        break;
    case OP_APPEND:
        memset(m + *len, s->c, s->len);
        *len += s->len;
        break;
    case OP_TRUNC:
        if (s->off > *len) memset(m + *len, 0, s->off - *len);
        *len = s->off;
        break;
    }
}

/* Process 1 (a child with its own volume handle): s1, commit, close. */
static void process1(const struct step *s1) {
    pid_t pid = fork();
    if (pid < 0) tu_die("fork");
    if (pid == 0) {
        scp_err e;
        scp_volume *v = vopen();
        scp_vfile *h = REQUIRE_PTR(
            scp_vfile_open(v, "f", O_RDWR | (s1->op == OP_APPEND ? O_APPEND : 0), 0, &e), e);
        REQUIRE_OK(do_step(h, s1, &e), e);
        REQUIRE_OK(scp_vfile_close(h, &e), e);
        REQUIRE_OK(scp_volume_close(v, &e), e);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* held: process 2 keeps f open across process 1's commit; otherwise it closed f (the state
 * stays in its file cache) and reopens it, after the host reset the hint if `hint`. */
static void run_pair(const char *name, const uint8_t *init, size_t ilen, const struct step *s1,
                     const struct step *s2, int held, int hint) {
    char label[160];
    snprintf(label, sizeof label, "%s (%s%s)", name, held ? "held open" : "cached",
             hint ? ", hint reset" : "");
    tu_context = label;
    tu_rng rng = {ilen * 31 + (uint64_t)s1->c * 7 + (uint64_t)s2->c};
    setup("mw", &rng, init, ilen);
    scp_err e;
    scp_volume *v = vopen();
    int fl2 = O_RDWR | (s2->op == OP_APPEND ? O_APPEND : 0);
    scp_vfile *h = REQUIRE_PTR(scp_vfile_open(v, "f", fl2, 0, &e), e);
    uint8_t probe[16];
    REQUIRE(scp_vfile_pread(h, probe, sizeof probe, 0, &e) >= 0); /* state loaded, chunk cached */
    uint64_t gen2 = vgen(v);
    if (!held) REQUIRE_OK(scp_vfile_close(h, &e), e);
    process1(s1);
    if (hint) host_set_hint(gen2);
    if (!held) h = REQUIRE_PTR(scp_vfile_open(v, "f", fl2, 0, &e), e);
    int rc = do_step(h, s2, &e);
    CHECKF(rc == 0, "process 2's write failed: %s (%s)", e.msg, scp_code_name(e.code));
    rc = scp_vfile_close(h, &e);
    CHECKF(rc == 0, "process 2's commit failed: %s (%s)", e.msg, scp_code_name(e.code));
    REQUIRE_OK(scp_volume_close(v, &e), e);
    uint8_t want[16 * CS];
    size_t wlen = ilen;
    memcpy(want, init, ilen);
    model_step(want, &wlen, s1);
    model_step(want, &wlen, s2);
    check_final(label, want, wlen);
    char *root = strdup(g_vd);
    *strrchr(root, '/') = '\0';
    tu_rm_rf(root);
    free(root);
    free(g_vd);
    tu_context = "";
}

static void test_pairs(void) {
    uint8_t a1[CS], a2[2 * CS];
    fill(a1, CS, 'A');
    fill(a2, 2 * CS, 'A');
    struct {
        const char *name;
        const uint8_t *init;
        size_t ilen;
        struct step s1, s2;
    } cases[] = {
        /* the sequence: A, then B appended by 1, C over chunk 0 by 2: CB */
        {"append vs overwrite", a1, CS, {OP_APPEND, 0, CS, 'B'}, {OP_PWRITE, 0, CS, 'C'}},
        {"append vs partial overwrite", a1, CS, {OP_APPEND, 0, 100, 'B'}, {OP_PWRITE, 10, 20, 'C'}},
        {"same chunk", a2, 2 * CS, {OP_PWRITE, 0, CS, 'B'}, {OP_PWRITE, 100, 50, 'C'}},
        {"different chunks", a2, 2 * CS, {OP_PWRITE, CS, CS, 'B'}, {OP_PWRITE, 0, CS, 'C'}},
        {"different chunks, partial", a2, 2 * CS, {OP_PWRITE, CS + 7, 9, 'B'},
         {OP_PWRITE, 5, 3, 'C'}},
        {"append vs append", a1, CS, {OP_APPEND, 0, 3000, 'B'}, {OP_APPEND, 0, 5000, 'C'}},
        {"truncate vs overwrite", a2, 2 * CS, {OP_TRUNC, 100, 0, 'T'}, {OP_PWRITE, 50, 10, 'C'}},
        {"overwrite vs truncate", a2, 2 * CS, {OP_PWRITE, CS, 10, 'B'}, {OP_TRUNC, CS + 5, 0, 'T'}},
        {"extend vs overwrite", a1, CS, {OP_PWRITE, 3 * CS, 2 * CS, 'B'},
         {OP_PWRITE, CS - 2, 4, 'C'}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int mode = 0; mode < 3; mode++) /* held; cached; cached with the hint reset */
            run_pair(cases[i].name, cases[i].init, cases[i].ilen, &cases[i].s1, &cases[i].s2,
                     mode == 0, mode == 2);
}

/* ---- many processes against a model ----------------------------------------------------- */

#define NPROC 4
#define NFILES 3
#define MAXSZ (12 * CS + 777)
#define SESSIONS 40

struct model {
    uint64_t len[NFILES];
    uint8_t data[NFILES][MAXSZ];
    uint64_t sessions, stale_writes;
};

static const char *fname[NFILES] = {"m0", "m1", "m2"};

static void rnd_worker(struct model *m, const char *lockdir, int p, uint64_t seed) {
    scp_err e;
    tu_rng rng = {seed * 1000 + (uint64_t)p};
    char ctx[64];
    snprintf(ctx, sizeof ctx, "process %d", p);
    tu_context = ctx;
    scp_volume *v = vopen();
    scp_vfile *held[NFILES] = {0}; /* opened O_RDWR, not yet written: goes stale */
    uint64_t my_gen = 0;           /* our generation after our last session */
    static uint8_t local[MAXSZ];
    uint8_t buf[3 * CS];
    for (int s = 0; s < SESSIONS && !tu_failures; s++) {
        int fi = (int)tu_below(&rng, NFILES);
        char lp[512];
        snprintf(lp, sizeof lp, "%s/%s", lockdir, fname[fi]);
        int lfd = open(lp, O_RDWR | O_CREAT, 0600);
        /* Opens too: a load that replays a journal holds the writer lock for a moment, and a
         * write then would get EBUSY (a retry would do; the sessions here do not retry). */
        if (lfd < 0 || flock(lfd, LOCK_EX) < 0) tu_die("flock");
        if (!held[fi] && tu_pct(&rng, 50)) { /* keep a handle over others' sessions */
            held[fi] = scp_vfile_open(v, fname[fi], O_RDWR, 0, &e);
            CHECKF(held[fi], "open %s: %s", fname[fi], e.msg);
            flock(lfd, LOCK_UN);
            close(lfd);
            usleep((useconds_t)tu_below(&rng, 2000));
            continue;
        }
        size_t len = m->len[fi];
        memcpy(local, m->data[fi], len);
        scp_vfile *h = held[fi];
        held[fi] = NULL;
        if (!h) {
            if (my_gen && tu_pct(&rng, 50)) host_set_hint(my_gen); /* the host resets it */
            h = scp_vfile_open(v, fname[fi], O_RDWR, 0, &e);
            CHECKF(h, "open %s: %s", fname[fi], e.msg);
        } else {
            __atomic_add_fetch(&m->stale_writes, 1, __ATOMIC_RELAXED);
        }
        int nops = (int)tu_range(&rng, 1, 4), ok = h != NULL;
        for (int k = 0; ok && k < nops; k++) {
            unsigned what = (unsigned)tu_below(&rng, 10);
            if (what < 7) {
                uint64_t off = tu_below(&rng, MAXSZ - 1);
                size_t n = (size_t)tu_range(&rng, 1, sizeof buf);
                if (off + n > MAXSZ) n = (size_t)(MAXSZ - off);
                tu_fill(&rng, buf, n);
                ok = scp_vfile_pwrite(h, buf, n, off, &e) == (ssize_t)n;
                CHECKF(ok, "pwrite %s: %s (%s)", fname[fi], e.msg, scp_code_name(e.code));
                if (off > len) memset(local + len, 0, off - len);
                memcpy(local + off, buf, n);
                if (off + n > len) len = off + n;
            } else if (what < 9) {
                uint64_t ns = tu_below(&rng, MAXSZ);
                ok = scp_vfile_truncate(h, ns, &e) == 0;
                CHECKF(ok, "truncate %s: %s (%s)", fname[fi], e.msg, scp_code_name(e.code));
                if (ns > len) memset(local + len, 0, ns - len);
                len = ns;
            } else {
                ok = scp_vfile_fsync(h, &e) == 0;
                CHECKF(ok, "fsync %s: %s (%s)", fname[fi], e.msg, scp_code_name(e.code));
            }
        }
        if (h) {
            int rc = scp_vfile_close(h, &e);
            CHECKF(rc == 0, "close %s: %s (%s)", fname[fi], e.msg, scp_code_name(e.code));
            ok = ok && rc == 0;
        }
        if (ok) { /* committed: publish */
            memcpy(m->data[fi], local, len);
            m->len[fi] = len;
            __atomic_add_fetch(&m->sessions, 1, __ATOMIC_RELAXED);
        }
        my_gen = vgen(v);
        flock(lfd, LOCK_UN);
        close(lfd);
    }
    for (int fi = 0; fi < NFILES; fi++)
        if (held[fi]) scp_vfile_close(held[fi], &e);
    scp_volume_close(v, &e);
}

static void test_random(uint64_t seed) {
    tu_context = "random";
    tu_rng rng = {seed};
    char *root;
    scp_err e;
    scp_volume *v = tu_new_volume(&rng, "mwr", g_key, &root, &g_vd);
    struct model *m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                           -1, 0);
    if (m == MAP_FAILED) tu_die("mmap");
    memset(m, 0, sizeof *m);
    for (int fi = 0; fi < NFILES; fi++) REQUIRE_OK(tu_vput(v, fname[fi], "", 0, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    char *lockdir = tu_path(root, "locks");
    if (mkdir(lockdir, 0700) < 0) tu_die("mkdir");
    pid_t pids[NPROC];
    for (int p = 0; p < NPROC; p++) {
        pids[p] = fork();
        if (pids[p] < 0) tu_die("fork");
        if (pids[p] == 0) {
            rnd_worker(m, lockdir, p, seed);
            _exit(tu_failures ? 1 : 0);
        }
    }
    for (int p = 0; p < NPROC; p++) {
        int st;
        waitpid(pids[p], &st, 0);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "process %d failed (status 0x%x)", p, st);
    }
    v = vopen();
    for (int fi = 0; fi < NFILES; fi++) {
        size_t n;
        uint8_t *got = tu_vget(v, fname[fi], &n, &e);
        CHECKF(got, "read %s: %s", fname[fi], e.msg);
        if (!got) continue;
        CHECKF(n == m->len[fi], "%s has %zu bytes, the model %llu", fname[fi], n,
               (unsigned long long)m->len[fi]);
        size_t k = 0;
        while (k < n && k < m->len[fi] && got[k] == m->data[fi][k]) k++;
        CHECKF(k == n && n == m->len[fi], "%s differs from the model at byte %zu", fname[fi], k);
        free(got);
    }
    long probs = scp_volume_verify(v, problem_cb, NULL, NULL, &e);
    CHECKF(probs == 0, "verify found %ld problem(s)", probs);
    printf("random: %llu sessions committed (%llu through a handle held across others'), seed "
           "%llu\n",
           (unsigned long long)m->sessions, (unsigned long long)m->stale_writes,
           (unsigned long long)seed);
    scp_volume_close(v, &e);
    munmap(m, sizeof *m);
    tu_rm_rf(root);
    free(root);
    free(lockdir);
    free(g_vd);
    tu_context = "";
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "all";
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : (uint64_t)time(NULL);
    if (!strcmp(what, "pairs") || !strcmp(what, "all")) test_pairs();
    if (!strcmp(what, "random") || !strcmp(what, "all")) test_random(seed);
    return tu_exit_code("test_volume_multiwriter");
}
