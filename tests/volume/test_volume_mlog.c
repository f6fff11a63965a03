/* test_volume_mlog - the manifest log of format 3 (docs/volume-format.md, "Manifest log").
 *
 *   cost      a volume of 1,000 entries; one more file commit leaves both durable slots
 *             byte for byte as they were and grows manifest.log by one record of under 1 KiB
 *             (format 2 sealed and wrote the whole ~110 KiB manifest at every commit)
 *   catch-up  a second opener of the volume (its own descriptors and locks) reads under
 *             16 KiB (rchar, /proc/self/io) to see that commit (format 2: every slot, ~330 KiB)
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
 */
#include "testutil.h"

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

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    tu_rng rng = {0x6d6c6f67};
    tu_key(&rng, key);
    root = tu_tmpdir("mlog");
    printf("commit cost and catch-up:\n");
    test_cost_and_catch_up();
    printf("attacks on the manifest log:\n");
    test_attacks();
    tu_rm_rf(root);
    free(root);
    return tu_exit_code("test_volume_mlog");
}
