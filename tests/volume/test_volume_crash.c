/* test_volume_crash - SIGKILL at random instants, and torn copies of a live volume.
 *
 * Part 1 (kills). Rounds on one volume with three files (chunk 4096). In each round a child
 * process opens the volume and runs a randomized workload from a seed: pwrite (random offsets
 * and lengths, some spanning chunks, some growing the file), truncate (down and up), fsync,
 * close+reopen of a file (a commit), close+reopen with O_TRUNC, and the atomic-replace pattern
 * (write "c/tmp" whole, rename it over the file); data carries a plaintext marker. After every commit the
 * child writes {op index, file, volume tag} to a pipe. The parent SIGKILLs it after a random
 * delay (from "during volume open" to "after the workload ended"), then replays the same
 * workload in memory (it knows the starting contents: what it read after the previous round),
 * and asserts after each kill:
 *   - the volume opens with the last tag the child reported as `expected` (no rollback of a
 *     finished commit), and scp_volume_verify reports 0 problems;
 *   - each file reads EXACTLY its content at its last reported commit, or at the one commit op
 *     the child may have finished but not yet reported (the first commit op after the last
 *     report; for a replace or O_TRUNC reopen, the state at its close or the final one):
 *     the volume.h contract "after a crash each file reads as its last committed state". So
 *     every fsynced byte reads back and no mix of states that never existed is accepted;
 *   - every few rounds, no file under the volume directory holds the plaintext marker (the
 *     journal of an interrupted commit included).
 * About 300 kills in a bounded time (SCP_CRASH_KILLS and SCP_CRASH_SECONDS override).
 * "sole" runs the kills with the child as the volume's sole holder (scp_volume_go_private:
 * commits without the cross-process lock and catch-up, table writes deferred to the log);
 * "solelazy" also closes new files lazily (scp_volume_set_lazy_close: the atomic replace's
 * temporary file), as the shield runs a program.
 *
 * Part 2 (torn copies, a stand-in for a power cut). A writer child commits a stream of changes
 * to file "busy" while the parent copies the volume directory at random instants, file by
 * file, in different orders (objects first or manifests first). Such a copy is not a state the
 * disk could have been in after a power cut with correct fsync ordering (files are read at
 * different instants), so errors are allowed; what must never happen is a wrong byte. For each
 * copy: opening may fail, but only with an integrity/rollback error; if it opens, file
 * "static" (committed before the writer started and never touched again) reads exactly right
 * and verify does not name it; "busy" reads either an integrity error (EIO) or exactly one of
 * the states the writer committed (or its initial state), never anything else.
 */
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "testutil.h"
#define WL_MAXSZ (160u * 1024)
#define WL_MARKER "CRASH-PLAINTEXT-MARKER-5a17"
#include "workload.h"

#define NOPS 400
#define HASHLEN 32

static void sha256(const uint8_t *p, size_t n, uint8_t out[HASHLEN]) {
    unsigned len = HASHLEN;
    REQUIRE(EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) == 1);
}

typedef struct report {
    uint32_t opidx, file;
    scp_volume_tag tag;
} report;

static int crash_sole; /* "sole": the child takes the private lock (the sole holder) */
static int crash_lazy; /* "solelazy": and closes new files lazily (scp_volume_set_lazy_close) */

static void child_workload(const char *vd, const uint8_t *key, uint64_t seed, int wfd) {
    scp_err e;
    scp_volume *v = scp_volume_open(vd, key, NULL, &e);
    if (!v) {
        fprintf(stderr, "crash child: open: %s\n", e.msg);
        _exit(3);
    }
    if (crash_sole && scp_volume_go_private(v) != 1) {
        fprintf(stderr, "crash child: not the sole holder\n");
        _exit(3);
    }
    if (crash_lazy) scp_volume_set_lazy_close(v, 1);
    scp_vfile *f[WL_NF];
    for (int i = 0; i < WL_NF; i++) {
        f[i] = scp_vfile_open(v, WL_FILES[i], O_RDWR, 0, &e);
        if (!f[i]) {
            fprintf(stderr, "crash child: open %s: %s\n", WL_FILES[i], e.msg);
            _exit(3);
        }
    }
    tu_rng r = {seed};
    for (uint32_t i = 0; i < NOPS; i++) {
        op o;
        wl_gen(&r, &o);
        int rc = wl_run(v, f, &o, &e);
        if (rc != 0) {
            fprintf(stderr, "crash child: op %u type %d on %s: %s\n", i, o.type, WL_FILES[o.file],
                    e.msg);
            _exit(4);
        }
        if (wl_is_commit(&o)) {
            report rep = {i, (uint32_t)o.file, {{0}}};
            scp_volume_tag_get(v, &rep.tag);
            if (write(wfd, &rep, sizeof rep) != sizeof rep) _exit(5);
        }
    }
    for (int i = 0; i < WL_NF; i++) scp_vfile_close(f[i], &e);
    scp_volume_close(v, &e);
    _exit(0);
}

static int scan_marker(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int hits = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *c = tu_path(dir, de->d_name);
        struct stat st;
        if (lstat(c, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                hits += scan_marker(c);
            } else {
                size_t n;
                uint8_t *b = tu_read_file(c, &n);
                if (b && tu_memmem(b, n, WL_MARKER, sizeof WL_MARKER - 1)) {
                    CHECKF(0, "plaintext marker found in '%s'", c);
                    hits++;
                }
                free(b);
            }
        }
        free(c);
    }
    closedir(d);
    return hits;
}

static void problem_cb(void *ctx, const char *path, int64_t off, const char *msg) {
    (void)ctx;
    fprintf(stderr, "    verify problem: '%s' @%lld: %s\n", path, (long long)off, msg);
}

/* Describe how content got differs from the candidates (for the failure message). */
static void describe_mismatch(const uint8_t *got, size_t gn, const fbuf *cand, int nc) {
    for (int i = 0; i < nc; i++) {
        size_t k = 0, m = gn < cand[i].n ? gn : cand[i].n;
        while (k < m && got[k] == cand[i].p[k]) k++;
        size_t diff = 0;
        for (size_t j = 0; j < m; j++) diff += got[j] != cand[i].p[j];
        fprintf(stderr, "    candidate %d: size %zu (got %zu), first difference at %zu, %zu bytes "
                        "differ\n", i, cand[i].n, gn, k, diff);
    }
}

static void run_kills(void) {
    tu_context = "kills";
    long want_kills = getenv("SCP_CRASH_KILLS") ? atol(getenv("SCP_CRASH_KILLS")) : 300;
    double budget = getenv("SCP_CRASH_SECONDS") ? atof(getenv("SCP_CRASH_SECONDS")) : 90.0; /* a floor for loaded or sanitized runs; 300 kills take ~20 s here */
    tu_rng master = {0xc4a5};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    tu_key(&master, key);
    char *root = tu_tmpdir("crash");
    char *vd = tu_path(root, "vol");
    scp_err e;
    REQUIRE_OK(scp_volume_create(vd, key, tu_test_chunk(WL_CS), &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    REQUIRE_OK(scp_volume_mkdir(v, "c", 0700, &e), e);
    for (int i = 0; i < WL_NF; i++) REQUIRE_OK(tu_vput(v, WL_FILES[i], "", 0, &e), e);
    scp_volume_tag tag;
    scp_volume_tag_get(v, &tag);
    REQUIRE_OK(scp_volume_close(v, &e), e);

    fbuf cur[WL_NF], sim[WL_NF], cand[3];
    for (int i = 0; i < WL_NF; i++) {
        cur[i].p = calloc(1, WL_MAXSZ + 5 * WL_CS);
        sim[i].p = calloc(1, WL_MAXSZ + 5 * WL_CS);
        cur[i].n = 0;
    }
    for (int i = 0; i < 3; i++) cand[i].p = malloc(WL_MAXSZ + 5 * WL_CS);

    double t0 = tu_now(), full = 0;
    long kills = 0, rounds = 0, completed = 0, unreported = 0;
    long hist[3] = {0};
    while (kills < want_kills && tu_now() - t0 < budget && tu_failures == 0) {
        uint64_t seed = tu_next(&master);
        int pfd[2];
        REQUIRE(pipe(pfd) == 0);
        fflush(NULL);
        double ts = tu_now();
        pid_t pid = fork();
        if (pid < 0) tu_die("fork");
        if (pid == 0) {
            close(pfd[0]);
            child_workload(vd, key, seed, pfd[1]);
        }
        close(pfd[1]);
        int killed = 0;
        double delay = 0;
        if (rounds == 0) {
            /* the first round runs to the end: it measures how long a workload takes */
        } else {
            delay = tu_below(&master, 1000) / 1000.0 * full * 1.1;
            struct timespec ts2 = {(time_t)delay, (long)((delay - (time_t)delay) * 1e9)};
            nanosleep(&ts2, NULL);
            killed = kill(pid, SIGKILL) == 0;
        }
        int st;
        REQUIRE(waitpid(pid, &st, 0) == pid);
        if (rounds == 0) full = tu_now() - ts;
        rounds++;
        if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) kills++;
        else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            completed++;
            /* finished before its kill: the first round, which sets the kill window, ran
             * slower than the workload runs now (a load spike); narrow the window, or most
             * rounds end before their kill and too few kills fit in the budget */
            if (rounds > 1) full *= 0.9;
        }
        else CHECKF(0, "round %ld: child failed (status 0x%x)", rounds, st);
        (void)killed;
        /* all reports */
        long last_any = -1, last_f[WL_NF] = {-1, -1, -1};
        report rep, last_rep;
        int have_rep = 0;
        ssize_t got;
        while ((got = read(pfd[0], &rep, sizeof rep)) == sizeof rep) {
            last_any = rep.opidx;
            last_f[rep.file] = rep.opidx;
            last_rep = rep;
            have_rep = 1;
        }
        CHECKF(got == 0, "round %ld: torn report on the pipe (%zd)", rounds, got);
        close(pfd[0]);
        if (have_rep) tag = last_rep.tag;

        /* replay: the state of each file at its last reported commit, and the state at the
         * first commit after the last report (the child may have finished it unreported) */
        for (int i = 0; i < WL_NF; i++) {
            memcpy(sim[i].p, cur[i].p, cur[i].n);
            sim[i].n = cur[i].n;
        }
        fbuf at_last[WL_NF];
        for (int i = 0; i < WL_NF; i++) {
            at_last[i].p = malloc(WL_MAXSZ + 5 * WL_CS);
            memcpy(at_last[i].p, cur[i].p, cur[i].n);
            at_last[i].n = cur[i].n;
        }
        int extra_file = -1;
        fbuf pre;
        pre.p = malloc(WL_MAXSZ + 5 * WL_CS);
        pre.n = 0;
        tu_rng r = {seed};
        for (long i = 0; i < NOPS; i++) {
            op o;
            wl_gen(&r, &o);
            if (wl_is_commit(&o) && i > last_any) { /* the state before this op (its close) */
                memcpy(pre.p, sim[o.file].p, sim[o.file].n);
                pre.n = sim[o.file].n;
            }
            wl_model(sim, &o);
            if (!wl_is_commit(&o)) continue;
            if (i <= last_any) {
                if (i == last_f[o.file]) {
                    memcpy(at_last[o.file].p, sim[o.file].p, sim[o.file].n);
                    at_last[o.file].n = sim[o.file].n;
                }
            } else {
                extra_file = o.file; /* the first commit after the last report */
                break;
            }
        }
        /* no commit op after the last report: the child's final closes commit every file's
         * end state (unreported) */
        if (extra_file < 0) extra_file = WL_NF;
        /* open with the last reported tag: a finished commit must never be lost */
        tu_err_clear(&e);
        v = scp_volume_open(vd, key, &tag, &e);
        if (!v) {
            CHECKF(0, "round %ld (seed %llu): open after kill: %s (%s)", rounds,
                   (unsigned long long)seed, e.msg, scp_code_name(e.code));
            for (int i = 0; i < WL_NF; i++) free(at_last[i].p);
            free(pre.p);
            break;
        }
        long probs = scp_volume_verify(v, problem_cb, NULL, NULL, &e);
        CHECKF(probs == 0, "round %ld (seed %llu): verify after kill: %ld problems (%s)", rounds,
               (unsigned long long)seed, probs, probs < 0 ? e.msg : "");
        for (int i = 0; i < WL_NF; i++) {
            size_t n;
            tu_err_clear(&e);
            uint8_t *b = tu_vget(v, WL_FILES[i], &n, &e);
            if (!b) {
                CHECKF(0, "round %ld (seed %llu): reading %s after kill: %s", rounds,
                       (unsigned long long)seed, WL_FILES[i], e.msg);
                continue;
            }
            int nc = 0;
            cand[nc].n = at_last[i].n;
            memcpy(cand[nc++].p, at_last[i].p, at_last[i].n);
            if (extra_file == i || extra_file == WL_NF) {
                cand[nc].n = sim[i].n;
                memcpy(cand[nc++].p, sim[i].p, sim[i].n);
            }
            if (extra_file == i) { /* a replace or O_TRUNC reopen commits twice: close, then */
                cand[nc].n = pre.n;
                memcpy(cand[nc++].p, pre.p, pre.n);
            }
            int which = -1;
            for (int c = 0; c < nc && which < 0; c++)
                if (cand[c].n == n && !memcmp(cand[c].p, b, n)) which = c;
            if (which < 0) {
                CHECKF(0, "round %ld (seed %llu, killed after %.1f ms, last report op %ld): %s "
                          "reads a state that was never committed (%zu bytes)", rounds,
                       (unsigned long long)seed, delay * 1000, last_any, WL_FILES[i], n);
                describe_mismatch(b, n, cand, nc);
            } else {
                hist[which]++;
                if (which >= 1) unreported++;
            }
            memcpy(cur[i].p, b, n);
            cur[i].n = n;
            free(b);
        }
        scp_volume_tag_get(v, &tag);
        tu_err_clear(&e);
        CHECK_OK(scp_volume_close(v, &e), e);
        for (int i = 0; i < WL_NF; i++) free(at_last[i].p);
        free(pre.p);
        if (rounds % 16 == 0) scan_marker(vd);
    }
    scan_marker(vd);
    printf("kills: %ld rounds in %.1fs (%ld killed, %ld ran to the end; a full workload takes "
           "%.0f ms); states after kill: %ld at the last reported commit, %ld at a commit the "
           "child finished but had not reported\n",
           rounds, tu_now() - t0, kills, completed, full * 1000, hist[0], unreported);
    CHECKF(kills >= 50 || tu_failures, "only %ld kills", kills);
    for (int i = 0; i < WL_NF; i++) {
        free(cur[i].p);
        free(sim[i].p);
    }
    for (int i = 0; i < 3; i++) free(cand[i].p);
    if (!tu_failures) tu_rm_rf(root);
    else fprintf(stderr, "  volume kept in %s\n", root);
    free(root);
    free(vd);
    tu_context = "";
}

/* ---- part 2: torn copies ------------------------------------------------------------------ */

#define TNOPS 8000
#define STATIC_SIZE (150u * 1024 + 123)

/* Copy the volume directory file by file; order 0: natural, 1: objects/ first, 2: manifests
 * and header first, then objects/. */
static void copy_volume(const char *src, const char *dst, int order) {
    REQUIRE(mkdir(dst, 0700) == 0);
    static const char *const top[] = {"scpvol.hdr", "manifest.0", "manifest.1", "lock"};
    char *so = tu_path(src, "objects"), *dob = tu_path(dst, "objects");
    if (order == 1) tu_copy_tree(so, dob);
    for (int i = 0; i < 4; i++) {
        char *a = tu_path(src, top[order == 2 ? i : 3 - i]), *b = tu_path(dst, top[order == 2 ? i : 3 - i]);
        size_t n;
        uint8_t *buf = tu_read_file(a, &n);
        if (buf) tu_write_file(b, buf, n, 0600);
        free(buf);
        free(a);
        free(b);
    }
    if (order != 1) tu_copy_tree(so, dob);
    free(so);
    free(dob);
}

typedef struct hset {
    uint8_t (*h)[HASHLEN];
    size_t n, cap;
} hset;
static void hset_add(hset *s, const uint8_t h[HASHLEN]) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->h = realloc(s->h, s->cap * HASHLEN);
    }
    memcpy(s->h[s->n++], h, HASHLEN);
}
static int hset_has(const hset *s, const uint8_t h[HASHLEN]) {
    for (size_t i = 0; i < s->n; i++)
        if (!memcmp(s->h[i], h, HASHLEN)) return 1;
    return 0;
}

typedef struct vnames {
    int static_named;
} vnames;
static void torn_problem_cb(void *ctx, const char *path, int64_t off, const char *msg) {
    (void)off;
    (void)msg;
    if (path && !strcmp(path, "static")) ((vnames *)ctx)->static_named = 1;
}

static void run_torn(void) {
    tu_context = "torn copies";
    double t0 = tu_now();
    tu_rng master = {0x70e7};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_volume *v = tu_new_volume(&master, "torn", key, &root, &vd); /* chunk 4096 = WL_CS */
    scp_err e;
    static uint8_t st_content[STATIC_SIZE];
    tu_fill(&master, st_content, STATIC_SIZE);
    REQUIRE_OK(tu_vput(v, "static", st_content, STATIC_SIZE, &e), e);
    REQUIRE_OK(tu_vput(v, "busy", "", 0, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);

    /* every state the writer will commit: the initial one, one per commit op, and the one
     * its final close commits */
    uint64_t seed = tu_next(&master);
    hset states = {0};
    fbuf sim[WL_NF];
    for (int i = 0; i < WL_NF; i++) {
        sim[i].p = calloc(1, WL_MAXSZ + 5 * WL_CS);
        sim[i].n = 0;
    }
    uint8_t h[HASHLEN];
    sha256(sim[0].p, 0, h);
    hset_add(&states, h);
    {
        tu_rng r = {seed};
        for (int i = 0; i < TNOPS; i++) {
            op o;
            wl_gen(&r, &o);
            o.file = 0; /* everything goes to "busy" */
            if (o.type >= OP_REPLACE) o.type = OP_FSYNC;
            wl_model(sim, &o);
            if (wl_is_commit(&o)) {
                sha256(sim[0].p, sim[0].n, h);
                hset_add(&states, h);
            }
        }
        /* the writer's final scp_vfile_close commits what its ops after the last commit op
         * (writes, truncates) left */
        sha256(sim[0].p, sim[0].n, h);
        hset_add(&states, h);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) tu_die("fork");
    if (pid == 0) {
        scp_volume *cv = scp_volume_open(vd, key, NULL, &e);
        if (!cv) _exit(3);
        scp_vfile *f = scp_vfile_open(cv, "busy", O_RDWR, 0, &e);
        if (!f) _exit(3);
        tu_rng r = {seed};
        for (int i = 0; i < TNOPS; i++) {
            op o;
            wl_gen(&r, &o);
            if (o.type >= OP_REPLACE) o.type = OP_FSYNC;
            int rc = 0;
            if (o.type == OP_WRITE)
                rc = scp_vfile_pwrite(f, wl_data, o.len, o.off, &e) == (ssize_t)o.len ? 0 : -1;
            else if (o.type == OP_TRUNC)
                rc = scp_vfile_truncate(f, o.off, &e);
            else if (o.type == OP_FSYNC)
                rc = scp_vfile_fsync(f, &e);
            else {
                rc = scp_vfile_close(f, &e);
                f = rc ? NULL : scp_vfile_open(cv, "busy", O_RDWR, 0, &e);
                if (!f) rc = -1;
            }
            if (rc) {
                fprintf(stderr, "torn writer: op %d: %s\n", i, e.msg);
                _exit(4);
            }
        }
        scp_vfile_close(f, &e);
        scp_volume_close(cv, &e);
        _exit(0);
    }
    int ncopies = 0, opened = 0, busy_ok = 0, busy_int = 0, open_fail = 0, live = 0;
    for (int k = 0; k < 60; k++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            pid = -1;
            CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "torn writer failed (status 0x%x)", st);
            break;
        }
        struct timespec ts = {0, (long)tu_below(&master, 2000) * 1000};
        nanosleep(&ts, NULL);
        live++;
        char name[32];
        snprintf(name, sizeof name, "copy%d", k);
        char *cd = tu_path(root, name);
        copy_volume(vd, cd, k % 3);
        ncopies++;
        free(cd);
    }
    if (pid > 0) { /* let it finish: the last copy is of the state its final close commits */
        int st;
        REQUIRE(waitpid(pid, &st, 0) == pid);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "torn writer failed (status 0x%x)", st);
    }
    {
        char name[32];
        snprintf(name, sizeof name, "copy%d", ncopies);
        char *cd = tu_path(root, name);
        copy_volume(vd, cd, 0);
        ncopies++;
        free(cd);
    }
    for (int k = 0; k < ncopies; k++) {
        char name[32];
        snprintf(name, sizeof name, "copy%d", k);
        char *cd = tu_path(root, name);
        tu_err_clear(&e);
        v = scp_volume_open(cd, key, NULL, &e);
        if (!v) {
            open_fail++;
            CHECKF(e.code == SCP_E_INTEGRITY || e.code == SCP_E_ROLLBACK,
                   "copy %d: open failed with %s (%s), want an integrity error or success", k,
                   scp_code_name(e.code), e.msg);
            free(cd);
            continue;
        }
        opened++;
        vnames vn = {0};
        scp_volume_verify(v, torn_problem_cb, NULL, &vn, &e);
        CHECKF(!vn.static_named, "copy %d: verify names the untouched file 'static'", k);
        size_t n;
        tu_err_clear(&e);
        uint8_t *b = tu_vget(v, "static", &n, &e);
        CHECKF(b && n == STATIC_SIZE && !memcmp(b, st_content, n),
               "copy %d: 'static' (untouched while copying) does not read back: %s", k,
               b ? "wrong content" : e.msg);
        free(b);
        tu_err_clear(&e);
        b = tu_vget(v, "busy", &n, &e);
        if (!b) {
            CHECKF(e.code == SCP_E_INTEGRITY && e.sys == EIO,
                   "copy %d: 'busy' fails with %s (sys %d), want integrity/EIO or a committed "
                   "state", k, scp_code_name(e.code), e.sys);
            busy_int++;
        } else {
            sha256(b, n, h);
            CHECKF(hset_has(&states, h),
                   "copy %d: 'busy' reads %zu bytes that are none of the states the writer "
                   "committed: WRONG BYTES", k, n);
            busy_ok++;
        }
        free(b);
        scp_volume_close(v, &e);
        free(cd);
    }
    CHECKF(live >= 20, "only %d copies taken while the writer ran", live);
    printf("torn copies: %d copies in %.1fs; %d opened (busy: %d read a committed state, %d "
           "integrity error), %d refused to open\n",
           ncopies, tu_now() - t0, opened, busy_ok, busy_int, open_fail);
    for (int i = 0; i < WL_NF; i++) free(sim[i].p);
    free(states.h);
    if (!tu_failures) tu_rm_rf(root);
    else fprintf(stderr, "  copies kept in %s\n", root);
    free(root);
    free(vd);
    tu_context = "";
}

/* Part 3 (long rewrite). A writer rewrites a file many times over without an fsync (after one
 * small commit, so that a journal log is open) and is killed. Recovery reads the journal whole,
 * up to a bound that a writer never passes (it commits a change whose log grows past its limit,
 * as the kernel writes back dirty pages); without that the journal outgrew the bound, and the
 * file was unreadable after the crash. The file must read as one of the states the writer could
 * have committed: each chunk the original or one of the passes, and the volume must verify. */
#define LR_MIB 20
#define LR_PASSES 8
static void run_long_rewrite(void) {
    tu_context = "long rewrite";
    tu_rng rng = {777};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    scp_volume *v = tu_new_volume(&rng, "lrw", key, &root, &vd);
    size_t sz = (size_t)LR_MIB << 20;
    uint8_t *buf = malloc(sz);
    if (!buf) tu_die("malloc");
    memset(buf, 'O', sz);
    REQUIRE_OK(tu_vput(v, "big", buf, sz, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    pid_t pid = fork();
    if (pid < 0) tu_die("fork");
    if (pid == 0) {
        v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
        scp_vfile *h = REQUIRE_PTR(scp_vfile_open(v, "big", O_RDWR, 0, &e), e);
        REQUIRE(scp_vfile_pwrite(h, "P", 1, 0, &e) == 1);
        REQUIRE_OK(scp_vfile_fsync(h, &e), e);
        for (int p = 0; p < LR_PASSES; p++) {
            memset(buf, 'a' + p, sz);
            REQUIRE(scp_vfile_pwrite(h, buf, sz, 0, &e) == (ssize_t)sz);
        }
        _exit(0); /* killed: no close, no fsync */
    }
    int st;
    waitpid(pid, &st, 0);
    REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *od = tu_path(vd, "objects");
    DIR *d = opendir(od);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        const char *dot = strrchr(de->d_name, '.');
        struct stat js;
        if (dot && !strcmp(dot, ".j") && fstatat(dirfd(d), de->d_name, &js, 0) == 0)
            printf("long rewrite: the journal left behind has %lld bytes\n", (long long)js.st_size);
    }
    if (d) closedir(d);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    size_t n;
    uint8_t *got = tu_vget(v, "big", &n, &e);
    CHECKF(got, "the file does not read after the writer died: %s (%s)", e.msg, scp_code_name(e.code));
    if (got) {
        CHECKF(n == sz, "size %zu, want %zu", n, sz);
        for (size_t c = 0; n == sz && c < sz / 4096; c++) {
            uint8_t b = got[c * 4096 + 1];
            int ok = (b == 'O' || (b >= 'a' && b < 'a' + LR_PASSES));
            for (size_t k = 1; ok && k < 4096; k++) ok = got[c * 4096 + k] == b;
            CHECKF(ok, "chunk %zu is not one of the written states", c);
            if (!ok) break;
        }
    }
    free(got);
    long probs = scp_volume_verify(v, problem_cb, NULL, NULL, &e);
    CHECKF(probs == 0, "verify found %ld problem(s)", probs);
    scp_volume_close(v, &e);
    tu_rm_rf(root);
    free(root);
    free(vd);
    free(od);
    free(buf);
    tu_context = "";
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    const char *what = argc > 1 ? argv[1] : "all";
    if (!strcmp(what, "all") || !strcmp(what, "kills")) run_kills();
    if (!strcmp(what, "sole") || !strcmp(what, "solelazy")) { /* the child the sole holder */
        crash_sole = 1;
        crash_lazy = !strcmp(what, "solelazy"); /* (as the shield runs a program) */
        run_kills();
    }
    if (!strcmp(what, "all") || !strcmp(what, "torn")) run_torn();
    if (!strcmp(what, "all") || !strcmp(what, "rewrite")) run_long_rewrite();
    return tu_exit_code("test_volume_crash");
}
