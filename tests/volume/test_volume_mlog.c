/* test_volume_mlog - the manifest log of format 3 (docs/volume-format.md, "Manifest log").
 *
 *   cost      a volume of 1,000 entries; one more file commit leaves both durable slots
 *             byte for byte as they were and grows manifest.log by one record of under 1 KiB
 *             (format 2 sealed and wrote the whole ~110 KiB manifest at every commit)
 *   catch-up  a second opener of the volume (its own descriptors and locks) reads under
 *             16 KiB (rchar, /proc/self/io) to see that commit (format 2: every slot, ~330 KiB)
 *   delta     the same volume in shared mode: 64 writes of one file (a lazy commit and a
 *             record each) and an fsync, around a create and a rename: each content commit's
 *             delta looks at the paths it changed, not the whole manifest (ml_delta_seen;
 *             before, both manifests whole: 2,002+ entries per record); another opener and a
 *             fresh open read every change (debug builds also check each such delta against
 *             the whole comparison, mlog_delta)
 *   attacks   on a copy of the volume taken after five commits, opened with the tag of the
 *             fifth: the log's last record cut off, a middle record dropped, two records
 *             swapped, the last record replaced by the one before it (a replayed delta), a
 *             ciphertext byte or the record's generation changed, the header's base changed,
 *             the log replaced by an older copy of itself: each must fail with SCP_E_ROLLBACK
 *             or SCP_E_INTEGRITY; opened without a tag, the file reads as one of its five
 *             committed versions, never other bytes, at an older generation (a prefix of the
 *             log: records after a gap or out of order are never applied)
 *   fold      a close after commits writes the state to a slot under the same generation:
 *             the tag taken before the close still opens the volume, the log is a bare header
 *   links     a file with three names (hard links) in the slot; three writers, each killed
 *             (SIGKILL, no close: no fold, their records stay in the log) after one step:
 *             append through one name and fsync, append through another and fsync, unlink
 *             the first and sync. After each kill, an opener that was open throughout (its
 *             catch-up applies the new records) and a fresh open (the slot and the whole log)
 *             see every name of the file with the same bytes, the ones of that step, and
 *             nlink equal to the number of names (3, 3, then 2)
 *   fork      two copies of one volume each commit other bytes up to the same generation; a
 *             copy replaced by the other, log-extended (not folded) state is refused with the
 *             tag of its own state (SCP_E_INTEGRITY: same generation, another state), as is a
 *             log cut back to an older generation (SCP_E_ROLLBACK): the tag of a log state
 *             binds the chain of its records, not only its generation
 *   openfold  a volume of 40 files (a manifest of about 4 KB) in shared mode: 100 writes of one
 *             file (a record each), then a new opener leaves the short log as it is; 1,400
 *             more, then a new opener (as an exec'd image of a shared family opens it) walks
 *             the log, past 64 KiB and twice the manifest, and folds it into a slot (a bare
 *             header left; before: up to 1 MiB, walked again by every opener); it, an opener
 *             open throughout (its catch-up meets the fold) and a fresh open read the last
 *             write, also after the writer goes on
 *   sampled   (builds with asserts) the check of a listed delta against the whole manifest
 *             (mlog_delta) runs for each of an open volume's first 4,096 records of a small
 *             manifest, then for every 64th: 4,224 shared-mode writes of one file, the last
 *             128 records checked twice (before: all 128, at every commit of a long-running
 *             server, bench/RESULTS.md "maria17")
 */
#include <signal.h>
#include <sys/wait.h>

#include <dirent.h>

#include "testutil.h"
#include "volume/internal.h"

#define NFILES 1000

static uint8_t key[SCP_VOLUME_KEY_LEN];
static char *root;

static long fsz(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* Bytes this process has read so far (all read system calls). */
static long long rchar(void) {
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    long long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "rchar: %lld", &v) == 1) break;
    if (f) fclose(f);
    return v;
}

static void test_cost_and_catch_up(void) {
    char *vd = tu_path(root, "cost");
    scp_err e;
    REQUIRE_OK(scp_volume_create(vd, key, 4096, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    REQUIRE_OK(scp_volume_mkdir(v, "base", 0700, &e), e);
    for (int i = 0; i < NFILES; i++) {
        char p[64];
        snprintf(p, sizeof p, "base/relation-%05d", i);
        REQUIRE_OK(tu_vput(v, p, p, strlen(p), &e), e);
    }
    REQUIRE_OK(scp_volume_close(v, &e), e); /* folds: the 1,000 entries in a slot */
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    scp_volume *w = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    scp_vstat st;
    REQUIRE_OK(scp_volume_stat(w, "base/relation-00500", &st, &e), e);
    char *s0 = tu_path(vd, "manifest.0"), *s1 = tu_path(vd, "manifest.1"),
         *lg = tu_path(vd, "manifest.log");
    size_t n0, n1, m0, m1;
    uint8_t *a0 = tu_read_file(s0, &n0), *a1 = tu_read_file(s1, &n1);
    long log0 = fsz(lg);
    printf("  %d entries: slots %zu and %zu bytes, log %ld bytes\n", NFILES + 1, n0, n1, log0);
    REQUIRE_OK(tu_vput(v, "base/relation-00500", "changed", 7, &e), e); /* a durable commit */
    uint8_t *b0 = tu_read_file(s0, &m0), *b1 = tu_read_file(s1, &m1);
    long log1 = fsz(lg);
    int same = a0 && b0 && a1 && b1 && n0 == m0 && n1 == m1 && !memcmp(a0, b0, n0) &&
               !memcmp(a1, b1, n1);
    printf("  one file commit: slots %s, log +%ld bytes\n", same ? "unchanged" : "REWRITTEN",
           log1 - log0);
    CHECKF(same, "a commit of one file rewrote a manifest slot (%zu/%zu -> %zu/%zu bytes)", n0,
           n1, m0, m1);
    CHECKF(log1 > log0 && log1 - log0 < 1024,
           "a commit of one file grew the manifest log by %ld bytes (want one record, < 1 KiB)",
           log1 - log0);
    /* The other opener catches up by reading the new record only. */
    long long r0 = rchar();
    tu_err_clear(&e);
    CHECK_OK(scp_volume_stat(w, "base/relation-00500", &st, &e), e);
    long long r1 = rchar();
    printf("  the other opener read %lld bytes to catch up\n", r1 - r0);
    CHECKF(st.size == 7, "the other opener sees size %llu, want 7", (unsigned long long)st.size);
    CHECKF(r1 - r0 < 16384, "the other opener read %lld bytes to catch up (want < 16 KiB)", r1 - r0);
    size_t n;
    uint8_t *got = tu_vget(w, "base/relation-00500", &n, &e);
    CHECKF(got && n == 7 && !memcmp(got, "changed", 7), "the other opener reads %s",
           got ? "other bytes" : e.msg);
    free(got);
    CHECK_OK(scp_volume_close(w, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    free(a0);
    free(a1);
    free(b0);
    free(b1);
    free(s0);
    free(s1);
    free(lg);
    free(vd);
}


/* The delta of a content commit is found from the paths it changed (manifest.c, mlog_delta). */
static void test_delta(void) {
    char *vd = tu_path(root, "cost"); /* (test_cost_and_catch_up's volume: 1,001 entries) */
    char *lg = tu_path(vd, "manifest.log");
    scp_err e;
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    scp_volume *w = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    scp_volume_set_shared(v);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "base/relation-00123", O_RDWR, 0, &e), e);
    uint8_t buf[4096];
    uint64_t seen = 0;
    long records = 0;
    for (int k = 0; k < 64; k++) {
        if (k == 20) { /* namespace operations between: they compare the whole manifest */
            REQUIRE_OK(tu_vput(v, "base/new-one", "n", 1, &e), e);
            REQUIRE_OK(scp_volume_rename(v, "base/new-one", "base/new-two", &e), e);
        }
        memset(buf, 'a' + k % 26, sizeof buf);
        long log0 = fsz(lg);
        uint64_t s0 = v->ml_delta_seen;
        CHECK(scp_vfile_pwrite(f, buf, sizeof buf, (uint64_t)k * 512, &e) == (ssize_t)sizeof buf);
        seen += v->ml_delta_seen - s0;
        records += fsz(lg) > log0;
    }
    CHECK_OK(scp_vfile_fsync(f, &e), e);
    printf("  64 shared-mode writes of one file: %ld records, the deltas looked at %llu entries\n",
           records, (unsigned long long)seen);
    CHECKF(records == 64, "%ld of 64 writes appended a manifest-log record", records);
    CHECKF(seen <= 64, "64 one-file commits looked at %llu entries for their deltas (want one "
           "each; the whole manifest is %d)", (unsigned long long)seen, NFILES + 2);
    size_t n;
    uint8_t *got = tu_vget(w, "base/relation-00123", &n, &e);
    CHECKF(got && n == 63 * 512 + 4096 && got[63 * 512] == 'a' + 63 % 26 && got[0] == 'a',
           "the other opener reads %s", got ? "other bytes" : e.msg);
    free(got);
    scp_vstat st;
    CHECK_OK(scp_volume_stat(w, "base/new-two", &st, &e), e);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(w, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    got = tu_vget(v, "base/relation-00123", &n, &e);
    CHECKF(got && n == 63 * 512 + 4096 && got[63 * 512] == 'a' + 63 % 26,
           "a fresh open reads %s", got ? "other bytes" : e.msg);
    free(got);
    CHECK_OK(scp_volume_stat(v, "base/new-two", &st, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    free(lg);
    free(vd);
}

/* ---- attacks on the log ------------------------------------------------------------------ */

#define NVER 5
static char ver[NVER][32];
static scp_volume_tag T;
static char *pristine, *older_log;

/* Offsets of the records of a log (framing from their plaintext headers), -1 terminated. */
static int records(const uint8_t *b, size_t len, size_t *off, int max) {
    size_t o = 48;
    int k = 0;
    while (k < max && len >= o + 44) {
        size_t blen = (size_t)b[o] << 24 | (size_t)b[o + 1] << 16 | (size_t)b[o + 2] << 8 | b[o + 3];
        if (len - o - 44 < blen) break;
        off[k++] = o;
        o += 44 + blen;
    }
    off[k] = o;
    return k;
}

static void attack(const char *name, void (*mutate)(uint8_t *b, size_t *len, size_t *off, int k)) {
    char *d = tu_path(root, "attack");
    tu_rm_rf(d);
    REQUIRE(tu_copy_tree(pristine, d) == 0);
    char *lg = tu_path(d, "manifest.log");
    size_t len;
    uint8_t *b = tu_read_file(lg, &len);
    REQUIRE(b);
    b = realloc(b, 2 * len + 4096);
    size_t off[64];
    int k = records(b, len, off, 63);
    REQUIRE(k >= NVER);
    mutate(b, &len, off, k);
    REQUIRE(tu_write_file(lg, b, len, 0600) == 0);
    free(b);
    /* The host also empties the lock file's list of journals (count at 4104, untrusted): the
     * last commits' records are carried in their files' journals as well (one-flush commits,
     * which carry the lazy records before them), and an open takes them from there; only
     * without that (or without the journals' records) does the log alone decide. */
    char *lk = tu_path(d, "lock");
    int lfd = open(lk, O_WRONLY);
    REQUIRE(lfd >= 0 && pwrite(lfd, "\0\0\0\0", 4, 4104) == 4 && close(lfd) == 0);
    free(lk);
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = scp_volume_open(d, key, &T, &e);
    int refused = !v && (e.code == SCP_E_ROLLBACK || e.code == SCP_E_INTEGRITY);
    printf("  %-44s -> %s\n", name, v ? "OPENED" : scp_code_name(e.code));
    CHECKF(refused, "%s: opened with the newest tag: %s", name, v ? "accepted" : e.msg);
    if (v) scp_volume_close(v, &e);
    /* Without the tag: an older state at worst, never bytes that were not committed. */
    tu_err_clear(&e);
    v = scp_volume_open(d, key, NULL, &e);
    if (v) {
        /* a prefix of the log: an older generation, never the newest one rebuilt otherwise */
        scp_volume_tag t;
        scp_volume_tag_get(v, &t);
        CHECKF(tu_tag_gen(&t) < tu_tag_gen(&T),
               "%s: without a tag the volume opens at generation %llu (newest %llu): records "
               "that do not continue the chain were applied",
               name, (unsigned long long)tu_tag_gen(&t), (unsigned long long)tu_tag_gen(&T));
        size_t n;
        uint8_t *got = tu_vget(v, "m", &n, &e);
        int known = got && n == 0; /* (each put's O_TRUNC open commits an empty file first) */
        for (int i = 0; got && i < NVER; i++)
            known |= n == strlen(ver[i]) && !memcmp(got, ver[i], n);
        CHECKF(!got || known, "%s: without a tag 'm' reads %zu bytes that were never committed",
               name, n);
        free(got);
        scp_volume_close(v, &e);
    }
    free(lg);
    tu_rm_rf(d);
    free(d);
}

static void cut_last(uint8_t *b, size_t *len, size_t *off, int k) {
    (void)b;
    *len = off[k - 1];
}
static void drop_middle(uint8_t *b, size_t *len, size_t *off, int k) {
    size_t a = off[k - 3], z = off[k - 2]; /* the third record from the end */
    memmove(b + a, b + z, *len - z);
    *len -= z - a;
}
static void swap_two(uint8_t *b, size_t *len, size_t *off, int k) {
    (void)len;
    size_t a = off[k - 3], m = off[k - 2], z = off[k - 1];
    uint8_t *tmp = malloc(z - a);
    REQUIRE(tmp);
    memcpy(tmp, b + m, z - m);
    memcpy(tmp + (z - m), b + a, m - a);
    memcpy(b + a, tmp, z - a);
    free(tmp);
}
static void replay_previous(uint8_t *b, size_t *len, size_t *off, int k) {
    size_t a = off[k - 2], z = off[k - 1];
    memcpy(b + off[k - 1], b + a, z - a);
    *len = off[k - 1] + (z - a);
}
static void flip_ciphertext(uint8_t *b, size_t *len, size_t *off, int k) {
    (void)len;
    b[off[k - 1] + 30] ^= 0x01;
}
static void raise_generation(uint8_t *b, size_t *len, size_t *off, int k) {
    (void)len;
    b[off[k - 1] + 15] += 1;
}
static void change_base(uint8_t *b, size_t *len, size_t *off, int k) {
    (void)len, (void)off, (void)k;
    b[15] ^= 0x01; /* the base generation's low byte */
}
static void older_copy(uint8_t *b, size_t *len, size_t *off, int k) {
    (void)off, (void)k;
    size_t n;
    uint8_t *o = tu_read_file(older_log, &n);
    REQUIRE(o);
    memcpy(b, o, n);
    *len = n;
    free(o);
}

static void test_attacks(void) {
    char *vd = tu_path(root, "work");
    pristine = tu_path(root, "pristine");
    older_log = tu_path(root, "older.log");
    scp_err e;
    REQUIRE_OK(scp_volume_create(vd, key, 4096, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    REQUIRE_OK(scp_volume_mkdir(v, "d", 0700, &e), e);
    for (int i = 0; i < NVER; i++) {
        snprintf(ver[i], sizeof ver[i], "version %d of m", i + 1);
        REQUIRE_OK(tu_vput(v, "m", ver[i], strlen(ver[i]), &e), e); /* a durable commit */
        char other[16];
        snprintf(other, sizeof other, "d/o%d", i);
        REQUIRE_OK(tu_vput(v, other, "o", 1, &e), e);
        if (i == 2) {
            char *lg = tu_path(vd, "manifest.log");
            size_t n;
            uint8_t *b = tu_read_file(lg, &n);
            REQUIRE(b && tu_write_file(older_log, b, n, 0600) == 0);
            free(b);
            free(lg);
        }
    }
    scp_volume_tag_get(v, &T);
    REQUIRE(tu_copy_tree(vd, pristine) == 0); /* the state in the log, before any fold */
    /* sanity: the copy opens with T and reads the fifth version */
    scp_volume *c = scp_volume_open(pristine, key, &T, &e);
    CHECKF(c, "the untouched copy does not open with its tag: %s", e.msg);
    if (c) {
        size_t n;
        uint8_t *got = tu_vget(c, "m", &n, &e);
        CHECKF(got && n == strlen(ver[NVER - 1]) && !memcmp(got, ver[NVER - 1], n),
               "the untouched copy reads %s", got ? "other bytes" : e.msg);
        free(got);
        scp_err ce;
        scp_volume_close(c, &ce);
        tu_rm_rf(pristine);
        REQUIRE(tu_copy_tree(vd, pristine) == 0); /* (its close folded the copy's log) */
    }
    attack("the last record cut off (truncation)", cut_last);
    attack("a middle record dropped", drop_middle);
    attack("two records swapped (reorder)", swap_two);
    attack("the last record replaced by the one before", replay_previous);
    attack("a ciphertext byte of the last record flipped", flip_ciphertext);
    attack("the last record's generation raised", raise_generation);
    attack("the header's base generation changed", change_base);
    attack("the log replaced by an older copy", older_copy);

    /* fold: the close writes the state to a slot under the same generation */
    REQUIRE_OK(scp_volume_close(v, &e), e);
    char *lg = tu_path(vd, "manifest.log");
    CHECKF(fsz(lg) == 48, "after a close the log holds %ld bytes, want a bare 48-byte header",
           fsz(lg));
    v = scp_volume_open(vd, key, &T, &e);
    CHECKF(v, "the tag taken before the close does not open the folded volume: %s", e.msg);
    if (v) {
        scp_volume_tag t2;
        scp_volume_tag_get(v, &t2);
        CHECKF(!memcmp(&t2, &T, sizeof T), "the fold changed the volume tag");
        scp_volume_close(v, &e);
    }
    free(lg);
    tu_rm_rf(pristine);
    free(pristine);
    free(older_log);
    free(vd);
}


/* ---- hard links in delta records ------------------------------------------------------- */

static const char *link_names[3] = {"x", "d/y", "z"};

/* What the names read in v: all present names must read the same bytes, one of the
 * committed contents, and report nlink = the number of present names. Returns a bit set:
 * 1 "base+one" with 3 names, 2 "base+one+two" with 3 names, 4 "base+one+two" with 2. */
static int observe(scp_volume *v, const char *what) {
    static const char *contents[3] = {"base", "base+one", "base+one+two"};
    scp_err e;
    int present = 0, c = -1, x_gone = 0;
    for (int k = 0; k < 3; k++) {
        scp_vstat st;
        tu_err_clear(&e);
        if (scp_volume_stat(v, link_names[k], &st, &e) < 0) {
            CHECKF(k == 0 && e.code == SCP_E_NOENT, "%s: '%s' is missing: %s", what, link_names[k], e.msg);
            x_gone = 1;
            continue;
        }
        present++;
        size_t n;
        uint8_t *got = tu_vget(v, link_names[k], &n, &e);
        int which = -1;
        for (int i = 0; got && i < 3; i++)
            if (n == strlen(contents[i]) && !memcmp(got, contents[i], n)) which = i;
        CHECKF(which >= 0, "%s: '%s' reads '%.*s', never committed (%s)", what, link_names[k],
               got ? (int)n : 0, got ? (const char *)got : "", got ? "" : e.msg);
        CHECKF(c < 0 || which == c, "%s: the names disagree: '%s' reads '%s', another '%s'",
               what, link_names[k], which >= 0 ? contents[which] : "?", contents[c]);
        if (c < 0) c = which;
        free(got);
    }
    for (int k = x_gone; k < 3; k++) {
        scp_vstat st;
        if (scp_volume_stat(v, link_names[k], &st, &e) == 0)
            CHECKF(st.nlink == (uint32_t)present, "%s: '%s' reports nlink %u, with %d names", what,
                   link_names[k], (unsigned)st.nlink, present);
    }
    return c == 1 && present == 3 ? 1 : c == 2 && present == 3 ? 2 : c == 2 && present == 2 ? 4 : 0;
}

static void append_sync(scp_volume *v, const char *path, const char *s) {
    scp_err e;
    scp_vfile *f = scp_vfile_open(v, path, O_RDWR | O_APPEND, 0, &e);
    if (!f || scp_vfile_write(f, s, strlen(s), &e) != (ssize_t)strlen(s) ||
        scp_vfile_fsync(f, &e) < 0 || scp_vfile_close(f, &e) < 0)
        _exit(4);
}

/* A writer that opens vd, takes one step (each durable) and is killed without a close: its
 * records stay in the log (no fold). */
static void killed_writer(const char *vd, int step) {
    pid_t pid = fork();
    if (pid < 0) tu_die("fork");
    if (pid == 0) {
        scp_err e;
        scp_volume *cv = scp_volume_open(vd, key, NULL, &e);
        if (!cv) _exit(3);
        if (step == 0) append_sync(cv, "d/y", "+one");
        if (step == 1) append_sync(cv, "z", "+two");
        if (step == 2 && (scp_volume_unlink(cv, "x", &e) < 0 || scp_volume_sync(cv, &e) < 0))
            _exit(5);
        raise(SIGKILL);
        _exit(6);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid) tu_die("waitpid");
    REQUIRE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

/* A fresh open of a copy of vd (its close folds the copy's log, not vd's). */
static int observe_copy(const char *vd, const char *what) {
    char *d = tu_path(root, "links-copy");
    tu_rm_rf(d);
    REQUIRE(tu_copy_tree(vd, d) == 0);
    scp_err e;
    scp_volume *v = scp_volume_open(d, key, NULL, &e);
    CHECKF(v, "%s: %s", what, e.msg);
    int seen = v ? observe(v, what) : 0;
    if (v) CHECK_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(d);
    free(d);
    return seen;
}

static void test_links(void) {
    char *vd = tu_path(root, "links");
    scp_err e;
    REQUIRE_OK(scp_volume_create(vd, key, 4096, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    REQUIRE_OK(scp_volume_mkdir(v, "d", 0700, &e), e);
    for (int i = 0; i < 20; i++) { /* other entries around the names */
        char p[32];
        snprintf(p, sizeof p, "d/other-%02d", i);
        REQUIRE_OK(tu_vput(v, p, p, strlen(p), &e), e);
    }
    REQUIRE_OK(tu_vput(v, "x", "base", 4, &e), e);
    REQUIRE_OK(scp_volume_link(v, "x", "d/y", &e), e);
    REQUIRE_OK(scp_volume_link(v, "d/y", "z", &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e); /* folds: the three names in a slot */
    scp_volume *w = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    observe(w, "before the writers");
    char *lg = tu_path(vd, "manifest.log");
    static const char *steps[3] = {"a write through 'd/y'", "a write through 'z'", "unlink 'x'"};
    static const int want[3] = {1, 2, 4};
    for (int step = 0; step < 3; step++) {
        killed_writer(vd, step);
        char what[96];
        snprintf(what, sizeof what, "after %s and a kill, the opener open throughout", steps[step]);
        int got = observe(w, what);
        CHECKF(got == want[step], "%s sees state %d, want %d", what, got, want[step]);
        snprintf(what, sizeof what, "after %s and a kill, a fresh open", steps[step]);
        got = observe_copy(vd, what);
        CHECKF(got == want[step], "%s sees state %d, want %d", what, got, want[step]);
    }
    size_t len, off[64];
    uint8_t *b = tu_read_file(lg, &len);
    REQUIRE(b);
    int k = records(b, len, off, 63);
    free(b);
    printf("  a file with 3 names, 3 killed writers: %d records in the log (%zu bytes), every "
           "name checked after each\n", k, len);
    CHECKF(k >= 3, "the log holds %d records after three killed writers (want >= 3: no fold)", k);
    CHECK_OK(scp_volume_close(w, &e), e);
    free(lg);
    free(vd);
}

/* ---- a forked history at the same generation ------------------------------------------- */

static void test_fork(void) {
    char *a = tu_path(root, "fork-a"), *bdir = tu_path(root, "fork-b"),
         *swapped = tu_path(root, "fork-swapped");
    scp_err e;
    REQUIRE_OK(scp_volume_create(a, key, 4096, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(a, key, NULL, &e), e);
    REQUIRE_OK(tu_vput(v, "m", "base", 4, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    REQUIRE(tu_copy_tree(a, bdir) == 0);
    /* the same steps on both copies, other bytes: the same generations, other states */
    scp_volume *va = REQUIRE_PTR(scp_volume_open(a, key, NULL, &e), e);
    scp_volume *vb = REQUIRE_PTR(scp_volume_open(bdir, key, NULL, &e), e);
    REQUIRE_OK(tu_vput(va, "m", "history A", 9, &e), e);
    REQUIRE_OK(tu_vput(vb, "m", "history B", 9, &e), e);
    scp_volume_tag ta, tb;
    scp_volume_tag_get(va, &ta);
    scp_volume_tag_get(vb, &tb);
    printf("  two histories at generations %llu and %llu\n", (unsigned long long)tu_tag_gen(&ta),
           (unsigned long long)tu_tag_gen(&tb));
    REQUIRE(tu_tag_gen(&ta) == tu_tag_gen(&tb));
    /* the host puts B's log-extended state (open, not folded) where A was */
    REQUIRE(tu_copy_tree(bdir, swapped) == 0);
    char *lg = tu_path(swapped, "manifest.log");
    CHECKF(fsz(lg) > 48, "the copy's log holds no records (%ld bytes)", fsz(lg));
    tu_err_clear(&e);
    scp_volume *s = scp_volume_open(swapped, key, &ta, &e);
    printf("  the other history at the same generation, with A's tag -> %s\n",
           s ? "OPENED" : scp_code_name(e.code));
    CHECKF(!s && e.code == SCP_E_INTEGRITY,
           "the other history's log state at the same generation opens with A's tag: %s",
           s ? "accepted" : e.msg);
    if (s) scp_volume_close(s, &e);
    /* A's own log state cut back by a record: A's last commit was a one-flush commit, whose
     * record the file's journal holds too (its commit point), so the open takes it from
     * there: A's state, as a power cut that lost the log's unsynced append would leave it */
    tu_rm_rf(swapped);
    REQUIRE(tu_copy_tree(a, swapped) == 0);
    size_t len, off[64];
    uint8_t *b = tu_read_file(lg, &len);
    int k = b ? records(b, len, off, 63) : 0;
    REQUIRE(k >= 1 && tu_write_file(lg, b, off[k - 1], 0600) == 0);
    tu_err_clear(&e);
    s = scp_volume_open(swapped, key, &ta, &e);
    printf("  A's log cut by its last record, with A's tag -> %s\n",
           s ? "OPENED (the record taken from the file's journal)" : scp_code_name(e.code));
    CHECKF(s != NULL, "A's log cut back (its record still in the journal) does not open: %s", e.msg);
    if (s) {
        size_t n = 0;
        uint8_t *got = tu_vget(s, "m", &n, &e);
        CHECKF(got && n == 9 && memcmp(got, "history A", 9) == 0,
               "A's state taken from the journal reads %.*s", (int)n, got ? (char *)got : "");
        free(got);
        scp_volume_close(s, &e);
    }
    /* cut in both places (the log and every journal): an older generation */
    tu_rm_rf(swapped);
    REQUIRE(tu_copy_tree(a, swapped) == 0);
    REQUIRE(tu_write_file(lg, b, off[k - 1], 0600) == 0);
    free(b);
    char *objs = tu_path(swapped, "objects");
    DIR *dir = opendir(objs);
    REQUIRE(dir != NULL);
    for (struct dirent *de; (de = readdir(dir));) {
        size_t nl = strlen(de->d_name);
        if (nl < 2 || strcmp(de->d_name + nl - 2, ".j") != 0) continue;
        char *j = tu_path(objs, de->d_name);
        REQUIRE(truncate(j, 0) == 0);
        free(j);
    }
    closedir(dir);
    free(objs);
    tu_err_clear(&e);
    s = scp_volume_open(swapped, key, &ta, &e);
    printf("  A's log and journals cut by its last record, with A's tag -> %s\n",
           s ? "OPENED" : scp_code_name(e.code));
    CHECKF(!s && e.code == SCP_E_ROLLBACK, "A's log and journal cut back open with A's tag: %s",
           s ? "accepted" : e.msg);
    if (s) scp_volume_close(s, &e);
    /* the untouched log state opens with its own tag */
    tu_rm_rf(swapped);
    REQUIRE(tu_copy_tree(a, swapped) == 0);
    s = scp_volume_open(swapped, key, &ta, &e);
    CHECKF(s, "A's untouched log state does not open with its tag: %s", e.msg);
    if (s) scp_volume_close(s, &e);
    CHECK_OK(scp_volume_close(va, &e), e);
    CHECK_OK(scp_volume_close(vb, &e), e);
    tu_rm_rf(swapped);
    free(lg);
    free(a);
    free(bdir);
    free(swapped);
}

/* ---- the writer checks its record before appending it ----------------------------------
 * A record that an opener would refuse (here: two names of one file that disagree, as a bug in
 * a writer could leave its manifest in memory) must not reach the log: every later walk would
 * end with an error and the volume would not open. A child makes its in-memory manifest so,
 * commits and dies without closing (no fold to hide the record): the commit is refused, and
 * the volume opens with both names reading the file. */
static void test_check(void) {
    char *vd = tu_path(root, "check");
    scp_err e;
    REQUIRE_OK(scp_volume_create(vd, key, 4096, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    REQUIRE_OK(tu_vput(v, "f", "linked", 6, &e), e);
    REQUIRE_OK(scp_volume_link(v, "f", "g", &e), e);
    REQUIRE_OK(scp_volume_sync(v, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        scp_volume *c = scp_volume_open(vd, key, NULL, &e);
        if (!c || vol_lock(c, &e) < 0) _exit(2);
        long i = man_find(&c->man, "f");
        if (i < 0) _exit(3);
        c->man.e[i]->mode ^= 0100; /* one name only */
        vol_mchg_note(c, "f"); /* (a change that says where it is: mlog_delta) */
        int rc = vol_commit_manifest(c, 1, &e);
        vol_unlock(c);
        _exit(rc < 0 && e.code == SCP_E_INTEGRITY ? 0 : 1);
    }
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid && WIFEXITED(st));
    printf("  a record whose names of one file disagree -> %s\n",
           WEXITSTATUS(st) == 0 ? "refused by the writer" : "WRITTEN");
    CHECKF(WEXITSTATUS(st) == 0, "the writer appended a record with disagreeing names (exit %d)",
           WEXITSTATUS(st));
    tu_err_clear(&e);
    v = scp_volume_open(vd, key, NULL, &e);
    printf("  the volume after it -> %s\n", v ? "opens" : e.msg);
    CHECKF(v != NULL, "the volume does not open after the refused record: %s", e.msg);
    for (int k = 0; v && k < 2; k++) {
        size_t n = 0;
        uint8_t *got = tu_vget(v, k ? "g" : "f", &n, &e);
        CHECKF(got && n == 6 && memcmp(got, "linked", 6) == 0, "name %s does not read the file",
               k ? "g" : "f");
        free(got);
    }
    if (v) scp_volume_close(v, &e);
    free(vd);
}

/* ---- an opener folds the long log it walked ---- */
static void test_openfold(void) {
    char *vd = tu_path(root, "openfold");
    char *lg = tu_path(vd, "manifest.log");
    scp_err e;
    REQUIRE_OK(scp_volume_create(vd, key, 4096, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    REQUIRE_OK(scp_volume_mkdir(v, "e", 0755, &e), e);
    for (int k = 0; k < 40; k++) {
        char name[32];
        snprintf(name, sizeof name, "e/file-%03d", k);
        REQUIRE_OK(tu_vput(v, name, name, strlen(name), &e), e);
    }
    scp_volume *w = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    scp_volume_set_shared(v); /* a lazy commit and a record per write */
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "e/hot", O_RDWR | O_CREAT, 0600, &e), e);
    pthread_mutex_lock(&v->mu);
    uint64_t enc = scp_manifest_encoded_len(&v->man);
    pthread_mutex_unlock(&v->mu);
    char b[16];
    int k = 0;
    for (; k < 100; k++) {
        int len = snprintf(b, sizeof b, "%06d", k);
        REQUIRE(scp_vfile_pwrite(f, b, (size_t)len, 0, &e) == len);
    }
    long short_log = fsz(lg);
    scp_volume *u = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    CHECKF(fsz(lg) == short_log, "an open folded a short log (%ld -> %ld bytes)", short_log, fsz(lg));
    CHECK_OK(scp_volume_close(u, &e), e);
    for (; k < 1500; k++) {
        int len = snprintf(b, sizeof b, "%06d", k);
        REQUIRE(scp_vfile_pwrite(f, b, (size_t)len, 0, &e) == len);
    }
    long long_log = fsz(lg);
    u = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e); /* walks the log, then folds it */
    long after = fsz(lg);
    printf("  a %llu-byte manifest, 1,500 shared-mode writes: a new opener walked %ld bytes of "
           "log and left %ld (a short log of %ld bytes was left as it was)\n",
           (unsigned long long)enc, long_log, after, short_log);
    CHECKF(short_log > 4096 && short_log < (64 << 10), "100 writes left %ld bytes of log", short_log);
    CHECKF(long_log > (long)(2 * enc) && long_log > (64 << 10), "1,500 writes left %ld bytes of log",
           long_log);
    CHECKF(after < 1024, "the opener of a %ld-byte log beside a %llu-byte manifest left %ld bytes "
           "(want a fold: a bare header)", long_log, (unsigned long long)enc, after);
    size_t got_n = 0;
    uint8_t *got = tu_vget(u, "e/hot", &got_n, &e);
    CHECKF(got && got_n == 6 && memcmp(got, "001499", 6) == 0, "the folding opener reads %s",
           got ? "other bytes" : e.msg);
    free(got);
    got = tu_vget(w, "e/hot", &got_n, &e); /* open throughout: its catch-up meets the fold */
    CHECKF(got && got_n == 6 && memcmp(got, "001499", 6) == 0, "the other opener reads %s after "
           "the fold", got ? "other bytes" : e.msg);
    free(got);
    for (; k < 1510; k++) { /* the writer goes on after the fold */
        int len = snprintf(b, sizeof b, "%06d", k);
        REQUIRE(scp_vfile_pwrite(f, b, (size_t)len, 0, &e) == len);
    }
    got = tu_vget(u, "e/hot", &got_n, &e);
    CHECKF(got && got_n == 6 && memcmp(got, "001509", 6) == 0, "the folding opener reads %s after "
           "more writes", got ? "other bytes" : e.msg);
    free(got);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(u, &e), e);
    CHECK_OK(scp_volume_close(w, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    got = tu_vget(v, "e/hot", &got_n, &e);
    CHECKF(got && got_n == 6 && memcmp(got, "001509", 6) == 0, "a fresh open reads %s",
           got ? "other bytes" : e.msg);
    free(got);
    for (int j = 0; j < 40; j++) {
        char name[32];
        snprintf(name, sizeof name, "e/file-%03d", j);
        got = tu_vget(v, name, &got_n, &e);
        CHECKF(got && got_n == strlen(name) && memcmp(got, name, got_n) == 0,
               "a fresh open reads %s for %s", got ? "other bytes" : e.msg, name);
        free(got);
    }
    CHECK_OK(scp_volume_close(v, &e), e);
    free(lg);
    free(vd);
}

/* ---- a long run's whole-manifest checks are sampled ---- */
static void test_sampled(void) {
#ifdef NDEBUG
    printf("  (a build without asserts makes no such check)\n");
#else
    char *vd = tu_path(root, "sampled");
    scp_err e;
    REQUIRE_OK(scp_volume_create(vd, key, 4096, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    for (int k = 0; k < 8; k++) { /* a small manifest, as the tests' and MariaDB's (209) */
        char name[16];
        snprintf(name, sizeof name, "g%d", k);
        REQUIRE_OK(tu_vput(v, name, "x", 1, &e), e);
    }
    scp_volume_set_shared(v); /* a commit and a record per write */
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "f", O_RDWR | O_CREAT, 0600, &e), e);
    /* (the 8 puts above were records too: the last 128 writes are records 4,105 to 4,232) */
    int early = 0, checked = 0, n = 4096 + 128;
    for (int k = 0; k < n; k++) {
        char b[16];
        int len = snprintf(b, sizeof b, "%d", k);
        REQUIRE(scp_vfile_pwrite(f, b, (size_t)len, 0, &e) == len);
        if (k < 128) early += v->ml_check_now;
        if (k >= n - 128) checked += v->ml_check_now;
    }
    printf("  %d shared-mode writes: %d of the first 128 records and %d of the last 128 checked "
           "against the whole manifest\n", n, early, checked);
    CHECKF(early == 128, "%d of the first 128 records were checked whole (want all)", early);
    CHECKF(checked >= 1 && checked <= 3, "%d of the last 128 records were checked whole (want "
           "every 64th after the first 4,096)", checked);
    CHECK_OK(scp_vfile_close(f, &e), e);
    CHECK_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    size_t got_n = 0;
    uint8_t *got = tu_vget(v, "f", &got_n, &e);
    CHECKF(got && got_n == 4 && memcmp(got, "4223", 4) == 0, "a fresh open reads %s",
           got ? "other bytes" : e.msg);
    free(got);
    CHECK_OK(scp_volume_close(v, &e), e);
    free(vd);
#endif
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    tu_rng rng = {0x6d6c6f67};
    tu_key(&rng, key);
    root = tu_tmpdir("mlog");
    printf("commit cost and catch-up:\n");
    test_cost_and_catch_up();
    printf("the delta of a content commit:\n");
    test_delta();
    printf("attacks on the manifest log:\n");
    test_attacks();
    printf("hard links in the log:\n");
    test_links();
    printf("a forked history:\n");
    test_fork();
    printf("the writer's check of its record:\n");
    test_check();
    printf("an opener of a long log:\n");
    test_openfold();
    printf("the whole-manifest check of a long run:\n");
    test_sampled();
    tu_rm_rf(root);
    free(root);
    return tu_exit_code("test_volume_mlog");
}
