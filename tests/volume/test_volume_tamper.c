/* test_volume_tamper - every attack on the untrusted volume directory ends in the exact error,
 * and no unauthenticated byte is ever returned.
 *
 * Setup (chunk 4096): directory "confidential-dir-Q7" with file A "secret-report-name.txt"
 * (6 chunks, the last partial, the plaintext marker spread through it), file B "ledger-b.bin"
 * (same size), then a commit that rewrites part of chunk 2 of A. Snapshots: v1 (before that
 * commit, tag T1) and v2 (after, tag T2). Each attack runs on a fresh copy of v2 and is opened
 * with T2 as the expected tag (as a freshness service would), unless noted.
 *
 * For each attack the outcome is one of: opening the volume fails, opening the file fails, or a
 * read fails, with the code (and sys) the attack must produce; any read that succeeds must
 * return exactly the right bytes (reads go chunk by chunk, so a partial success is checked
 * too); the file not attacked still reads correctly; verify reports the attacked file.
 * A read that fails on a modified chunk must not have left that chunk's decrypted,
 * unauthenticated plaintext in the caller's buffer.
 *
 * Exact errors asserted (INTEGRITY always with sys EIO):
 *   wrong key                          SCP_E_KEY
 *   scpvol.hdr byte flipped            SCP_E_KEY for the volume id and MAC (the MAC doubles as
 *                                      the key check: a modified header cannot be told from a
 *                                      wrong key); for magic / version / chunk size fields
 *                                      SCP_E_FORMAT, SCP_E_INTEGRITY or SCP_E_KEY
 *   chunk byte flipped (.d), table byte flipped (.t), .d or .t truncated, chunks swapped within
 *   a file, objects of two files swapped, one chunk replayed, a file's objects rolled back,
 *   .d / .t deleted                    SCP_E_INTEGRITY
 *   junk appended to .d / .t           no wrong bytes; detection (SCP_E_INTEGRITY from a read or
 *                                      a verify problem) only with SCP_TEST_STRICT=1, since the
 *                                      library ignores bytes past the file's chunks (reported)
 *   manifest: newest slot flipped, deleted or junk appended, opened with T2
 *                                      SCP_E_ROLLBACK (the older slot still authenticates,
 *                                      and is older than T2) or SCP_E_INTEGRITY
 *   both manifest slots flipped        SCP_E_INTEGRITY
 *   whole directory rolled back to v1, opened with T2        SCP_E_ROLLBACK
 *   T2 with a modified MAC (same generation, other state)    SCP_E_INTEGRITY
 * Also: no file under the volume directory contains the plaintext marker or a file or
 * directory name; identical plaintext chunks never give identical ciphertext.
 */
#include <sys/wait.h>

#include "testutil.h"

#define CS 4096u
#define NCH 6
#define FSIZE (5 * CS + 1000)
#define ENT 44 /* SCP_CHUNK_ENTRY_LEN: subkey salt + nonce + GCM tag per chunk in the .t table */

static const char MARKER[] = "SCP-PLAINTEXT-MARKER-d41d8cd98f00";
static const char DIRN[] = "confidential-dir-Q7";
static const char PA[] = "confidential-dir-Q7/secret-report-name.txt";
static const char PB[] = "ledger-b.bin";

static uint8_t key[SCP_VOLUME_KEY_LEN];
static uint8_t contA1[FSIZE], contA2[FSIZE], contB[FSIZE];
static scp_volume_tag T1, T2;
static char *root, *v1, *v2, *v2j;
static char idA1[64], idA2[64], idB[64]; /* object stems (file ids in hex) */

/* ---- host-side helpers --------------------------------------------------------------- */

static char *objpath(const char *vol, const char *id, const char *ext) {
    char rel[128];
    snprintf(rel, sizeof rel, "objects/%s%s", id, ext);
    return tu_path(vol, rel);
}

/* Stems of objects/<stem>.d files. Returns count, fills stems (caller frees). */
static int list_stems(const char *vol, char stems[][64], int max) {
    char *od = tu_path(vol, "objects");
    DIR *d = opendir(od);
    free(od);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l > 2 && l < 60 && !strcmp(de->d_name + l - 2, ".d") && n < max) {
            memcpy(stems[n], de->d_name, l - 2);
            stems[n][l - 2] = 0;
            n++;
        }
    }
    closedir(d);
    return n;
}

/* The stem present in `vol` that is not in the list `not` (exactly one expected). */
static void new_stem(const char *vol, char not[][64], int nnot, char out[64]) {
    char s[32][64];
    int n = list_stems(vol, s, 32), found = 0;
    for (int i = 0; i < n; i++) {
        int old = 0;
        for (int j = 0; j < nnot; j++) old |= !strcmp(s[i], not[j]);
        if (!old) {
            REQUIRE(!found);
            memcpy(out, s[i], 64);
            found = 1;
        }
    }
    REQUIRE(found);
}

static void flip_byte(const char *path, long off) {
    int fd = open(path, O_RDWR);
    REQUIRE(fd >= 0);
    if (off < 0) off += lseek(fd, 0, SEEK_END);
    uint8_t b;
    REQUIRE(pread(fd, &b, 1, off) == 1);
    b ^= 0x40;
    REQUIRE(pwrite(fd, &b, 1, off) == 1);
    close(fd);
}

static long fsize(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void swap_ranges(const char *path, long a, long b, long n) {
    int fd = open(path, O_RDWR);
    REQUIRE(fd >= 0);
    uint8_t *x = malloc((size_t)n), *y = malloc((size_t)n);
    REQUIRE(pread(fd, x, (size_t)n, a) == n && pread(fd, y, (size_t)n, b) == n);
    REQUIRE(pwrite(fd, y, (size_t)n, a) == n && pwrite(fd, x, (size_t)n, b) == n);
    close(fd);
    free(x);
    free(y);
}

static void append_junk(const char *path, size_t n) {
    int fd = open(path, O_WRONLY | O_APPEND);
    REQUIRE(fd >= 0);
    uint8_t junk[65536];
    tu_rng r = {n};
    tu_fill(&r, junk, n);
    REQUIRE(write(fd, junk, n) == (ssize_t)n);
    close(fd);
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    uint8_t *b = tu_read_file(from, &n);
    REQUIRE(b);
    REQUIRE(tu_write_file(to, b, n, 0600) == 0);
    free(b);
}

/* Generation in a manifest slot header (plaintext u64 at offset 8), 0 if empty. */
static uint64_t slot_gen(const char *vol, int i) {
    char name[32];
    snprintf(name, sizeof name, "manifest.%d", i);
    char *p = tu_path(vol, name);
    size_t n;
    uint8_t *b = tu_read_file(p, &n);
    free(p);
    uint64_t g = (b && n >= 16) ? tu_be64(b + 8) : 0;
    free(b);
    return g;
}
static char *slot_path(const char *vol, int i) {
    char name[32];
    snprintf(name, sizeof name, "manifest.%d", i);
    return tu_path(vol, name);
}
static int newest_slot(const char *vol) { return slot_gen(vol, 1) > slot_gen(vol, 0); }

/* ---- running an attack ----------------------------------------------------------------- */

typedef struct outcome {
    int stage;   /* 0 undetected, 1 volume open failed, 2 file open failed, 3 read failed */
    scp_code code;
    int sys;
    const char *file; /* which file failed (stage 2/3) */
    long read_off;
    int wrong_bytes;  /* a read returned bytes that differ from the truth */
    int leaked;       /* unauthenticated plaintext left in the buffer of a failed read */
    long problems;    /* verify result (-2 = not run) */
    int verify_named[2];
    int64_t verify_off[2];
    int other_ok[2];  /* file read fully and correctly */
    char msg[320];
} outcome;

static const uint8_t *truth_of(int fi) { return fi == 0 ? contA2 : contB; }
static const char *path_of(int fi) { return fi == 0 ? PA : PB; }

typedef struct vctx {
    outcome *o;
} vctx;
static void vproblem(void *ctx, const char *path, int64_t off, const char *msg) {
    outcome *o = ((vctx *)ctx)->o;
    for (int i = 0; i < 2; i++)
        if (path && !strcmp(path, path_of(i))) {
            if (!o->verify_named[i]) o->verify_off[i] = off;
            o->verify_named[i] = 1;
        }
    if (getenv("TAMPER_VERBOSE")) fprintf(stderr, "    verify: '%s' @%lld: %s\n", path, (long long)off, msg);
}

/* tampered_chunk: index of a chunk of file `tfile` whose ciphertext was modified (-1 none):
 * a failed read of it must not leave its (flipped) plaintext in the buffer. */
static void run_attack(const char *dir, const scp_volume_tag *expected, outcome *o, int tfile,
                       int tampered_chunk, const uint8_t *truth_override[2]) {
    memset(o, 0, sizeof *o);
    o->problems = -2;
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = scp_volume_open(dir, key, expected, &e);
    if (!v) {
        o->stage = 1;
        o->code = e.code;
        o->sys = e.sys;
        snprintf(o->msg, sizeof o->msg, "%s", e.msg);
        return;
    }
    for (int fi = 0; fi < 2; fi++) {
        const uint8_t *truth = truth_override && truth_override[fi] ? truth_override[fi] : truth_of(fi);
        tu_err_clear(&e);
        scp_vfile *f = scp_vfile_open(v, path_of(fi), O_RDONLY, 0, &e);
        if (!f) {
            if (!o->stage) {
                o->stage = 2;
                o->code = e.code;
                o->sys = e.sys;
                o->file = path_of(fi);
                snprintf(o->msg, sizeof o->msg, "%s", e.msg);
            }
            continue;
        }
        int ok = 1;
        uint64_t sz = scp_vfile_size(f);
        if (sz != FSIZE) ok = 0;
        uint8_t buf[CS];
        for (uint64_t off = 0; off < FSIZE + CS; off += CS) {
            memset(buf, 0xA5, sizeof buf);
            tu_err_clear(&e);
            ssize_t r = scp_vfile_pread(f, buf, CS, off, &e);
            if (r < 0) {
                ok = 0;
                if (!o->stage) {
                    o->stage = 3;
                    o->code = e.code;
                    o->sys = e.sys;
                    o->file = path_of(fi);
                    o->read_off = (long)off;
                    snprintf(o->msg, sizeof o->msg, "%s", e.msg);
                }
                if (fi == tfile && (long)(off / CS) == tampered_chunk) {
                    size_t want = off < FSIZE ? (FSIZE - off < CS ? FSIZE - off : CS) : 0, same = 0;
                    for (size_t k = 0; k < want; k++) same += buf[k] == truth[off + k];
                    if (want && same > want / 2) o->leaked = 1;
                }
                continue;
            }
            size_t want = off < FSIZE ? (FSIZE - off < CS ? FSIZE - off : CS) : 0;
            if ((size_t)r > want || memcmp(buf, truth + off, (size_t)r) != 0) {
                /* returned bytes that are not the file's (or beyond its true size) */
                o->wrong_bytes = 1;
                ok = 0;
            }
            if ((size_t)r != want) ok = 0;
        }
        scp_vfile_close(f, &e);
        o->other_ok[fi] = ok;
    }
    vctx vc = {o};
    tu_err_clear(&e);
    o->problems = scp_volume_verify(v, vproblem, NULL, &vc, &e);
    scp_volume_close(v, &e);
}

static int code_in(scp_code c, const scp_code *set, int n) {
    for (int i = 0; i < n; i++)
        if (set[i] == c) return 1;
    return 0;
}

/* Fresh copy of a snapshot. */
static char *fresh(const char *from, const char *name) {
    char *d = tu_path(root, name);
    tu_rm_rf(d);
    REQUIRE(tu_copy_tree(from, d) == 0);
    return d;
}

static int nattacks;

/* Check an outcome: detected with a code in `codes`; no wrong bytes; no leak; the other file
 * (if `other` >= 0) reads fine when the volume opened; verify names the attacked file. */
static void expect(const char *name, const outcome *o, const scp_code *codes, int ncodes,
                   int attacked, int other) {
    nattacks++;
    char want[128] = "";
    for (int i = 0; i < ncodes; i++) {
        strcat(want, scp_code_name(codes[i]));
        if (i + 1 < ncodes) strcat(want, "|");
    }
    static const char *const stages[] = {"UNDETECTED", "volume open", "file open", "read"};
    if (o->stage == 3)
        printf("  %-48s -> %s: %s (sys %d) on '%s' at offset %ld\n", name, stages[o->stage],
               scp_code_name(o->code), o->sys, o->file, o->read_off);
    else
        printf("  %-48s -> %s: %s (sys %d)%s%s\n", name, stages[o->stage],
               o->stage ? scp_code_name(o->code) : "-", o->sys, o->stage == 2 ? " on " : "",
               o->stage == 2 ? o->file : "");
    CHECKF(!o->wrong_bytes, "%s: a read returned wrong bytes (unauthenticated data)", name);
    CHECKF(!o->leaked, "%s: a failed read left the tampered chunk's decrypted plaintext in the "
                       "caller's buffer", name);
    CHECKF(o->stage != 0, "%s: attack not detected (all reads succeeded), want %s", name, want);
    if (o->stage) {
        CHECKF(code_in(o->code, codes, ncodes), "%s: error %s (sys %d, '%s'), want %s", name,
               scp_code_name(o->code), o->sys, o->msg, want);
        if (o->code == SCP_E_INTEGRITY || o->code == SCP_E_ROLLBACK)
            CHECKF(o->sys == EIO, "%s: sys %d, want EIO", name, o->sys);
        if (o->stage >= 2 && attacked >= 0)
            CHECKF(!strcmp(o->file, path_of(attacked)), "%s: failure reported on '%s', want '%s'",
                   name, o->file, path_of(attacked));
    }
    if (o->stage >= 2) {
        if (other >= 0) CHECKF(o->other_ok[other], "%s: untouched file '%s' no longer reads", name,
                               path_of(other));
        if (attacked >= 0) {
            CHECKF(o->problems > 0, "%s: verify found %ld problems", name, o->problems);
            CHECKF(o->verify_named[attacked], "%s: verify did not name '%s'", name,
                   path_of(attacked));
        }
        if (other >= 0)
            CHECKF(!o->verify_named[other], "%s: verify named the untouched file '%s'", name,
                   path_of(other));
    }
}

static const scp_code C_INT[] = {SCP_E_INTEGRITY};
static const scp_code C_ROLL[] = {SCP_E_ROLLBACK};
static const scp_code C_ROLL_INT[] = {SCP_E_ROLLBACK, SCP_E_INTEGRITY};
static const scp_code C_KEY[] = {SCP_E_KEY};
static const scp_code C_HDR[] = {SCP_E_KEY, SCP_E_FORMAT, SCP_E_INTEGRITY};
static int strict; /* SCP_TEST_STRICT=1: also the checks of known, reported findings */

/* ---- setup ----------------------------------------------------------------------------- */

static void setup(void) {
    tu_rng r = {20261125};
    tu_key(&r, key);
    tu_fill(&r, contA1, FSIZE);
    tu_fill(&r, contB, FSIZE);
    /* the marker everywhere: start, across chunk boundaries, end */
    size_t ml = strlen(MARKER);
    for (size_t off = 0; off + ml <= FSIZE; off += 1500) memcpy(contA1 + off, MARKER, ml);
    memcpy(contA1 + CS - 10, MARKER, ml);
    memcpy(contA1 + FSIZE - ml, MARKER, ml);
    memcpy(contA2, contA1, FSIZE);
    tu_fill(&r, contA2 + 2 * CS + 100, 200); /* the second commit changes chunk 2 only */

    root = tu_tmpdir("tamper");
    char *vd = tu_path(root, "work");
    v1 = tu_path(root, "v1");
    v2 = tu_path(root, "v2");
    scp_err e;
    REQUIRE_OK(scp_volume_create(vd, key, CS, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    REQUIRE_OK(scp_volume_mkdir(v, DIRN, 0700, &e), e);
    REQUIRE_OK(tu_vput(v, PA, contA1, FSIZE, &e), e);
    char none[1][64];
    new_stem(vd, none, 0, idA1);
    REQUIRE_OK(tu_vput(v, PB, contB, FSIZE, &e), e);
    char one[1][64];
    memcpy(one[0], idA1, 64);
    new_stem(vd, one, 1, idB);
    scp_volume_tag_get(v, &T1);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    REQUIRE(tu_copy_tree(vd, v1) == 0);

    v = REQUIRE_PTR(scp_volume_open(vd, key, &T1, &e), e);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, PA, O_RDWR, 0, &e), e);
    REQUIRE(scp_vfile_pwrite(f, contA2 + 2 * CS + 100, 200, 2 * CS + 100, &e) == 200);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    scp_volume_tag_get(v, &T2);
    REQUIRE(tu_tag_gen(&T2) > tu_tag_gen(&T1));
    REQUIRE_OK(scp_volume_close(v, &e), e);
    REQUIRE(tu_copy_tree(vd, v2) == 0);
    char bonly[1][64];
    memcpy(bonly[0], idB, 64);
    new_stem(v2, bonly, 1, idA2);
    char *ad = objpath(v2, idA2, ".d"), *at = objpath(v2, idA2, ".t");
    printf("objects: A %s (after commit 2: %s), B %s; object sizes A.d %ld A.t %ld\n", idA1,
           idA2, idB, fsize(ad), fsize(at));
    free(ad);
    free(at);
    tu_rm_rf(vd);
    free(vd);

    /* Sanity: the pristine copy opens with T2 and reads right, verify is clean. */
    outcome o;
    run_attack(v2, &T2, &o, -1, -1, NULL);
    REQUIRE(o.stage == 0 && o.other_ok[0] && o.other_ok[1] && o.problems == 0);
    /* The journals still hold the last commits (A's commit 2; a read-only load leaves a short
     * journal since session 51, where until then the open above emptied them): v2j keeps them,
     * for attack_healed; the attacks on v2 find them empty, as a writer's checkpoint leaves
     * them, so that what an attack changes is not redone from a log before it is read. */
    v2j = tu_path(root, "v2j");
    REQUIRE(tu_copy_tree(v2, v2j) == 0);
    char *aj = objpath(v2, idA2, ".j"), *bj = objpath(v2, idB, ".j");
    REQUIRE(truncate(aj, 0) == 0 && truncate(bj, 0) == 0);
    free(aj);
    free(bj);
    run_attack(v2, &T2, &o, -1, -1, NULL);
    REQUIRE(o.stage == 0 && o.other_ok[0] && o.other_ok[1] && o.problems == 0);
}

/* A table entry that the journal's last commit names, flipped while that journal is there: the
 * load redoes the commit from the log (authenticated) over it, and every read returns the
 * committed bytes. Healing, not detection: what is checked is that no wrong byte is served. */
static void attack_healed(void) {
    char *d = fresh(v2j, "atk");
    char *pt = objpath(d, idA2, ".t");
    flip_byte(pt, 2 * ENT + 5);
    outcome o;
    run_attack(d, &T2, &o, 0, -1, NULL);
    nattacks++;
    printf("  %-48s -> %s\n", "table entry 2 flipped, journal redoes it",
           o.stage == 0 ? "redone from the journal, reads right" : o.msg);
    CHECKF(!o.wrong_bytes && !o.leaked, "table entry 2 flipped with the journal: wrong bytes served");
    CHECKF(o.stage == 0 && o.other_ok[0] && o.other_ok[1],
           "table entry 2 flipped with the journal that redoes it: not redone (%s)", o.msg);
    free(pt);
    tu_rm_rf(d);
    free(d);
}

/* ---- attacks ------------------------------------------------------------------------------ */

static void attack_key(void) {
    outcome o;
    uint8_t saved[SCP_VOLUME_KEY_LEN];
    memcpy(saved, key, sizeof key);
    key[7] ^= 1;
    run_attack(v2, &T2, &o, -1, -1, NULL);
    memcpy(key, saved, sizeof key);
    expect("wrong key", &o, C_KEY, 1, -1, -1);
    CHECKF(o.stage == 1, "wrong key: must fail at volume open");
}

static void attack_header(void) {
    static const struct {
        long off;
        const char *what;
        int format_ok;
    } pos[] = {{0, "magic", 1},           {8, "version", 1}, {12, "chunk size", 1},
               {14, "chunk size (mid)", 1}, {16, "volume id", 0}, {47, "volume id end", 0},
               {48, "MAC", 0},            {79, "MAC end", 0}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
        char *d = fresh(v2, "atk");
        char *h = tu_path(d, "scpvol.hdr");
        flip_byte(h, pos[i].off);
        outcome o;
        run_attack(d, &T2, &o, -1, -1, NULL);
        char name[96];
        snprintf(name, sizeof name, "scpvol.hdr flip @%ld (%s)", pos[i].off, pos[i].what);
        expect(name, &o, pos[i].format_ok ? C_HDR : C_KEY, pos[i].format_ok ? 3 : 1, -1, -1);
        CHECKF(o.stage == 1, "%s: must fail at volume open", name);
        free(h);
        free(d);
    }
    char *d = fresh(v2, "atk");
    char *h = tu_path(d, "scpvol.hdr");
    append_junk(h, 16);
    outcome o;
    run_attack(d, &T2, &o, -1, -1, NULL);
    expect("scpvol.hdr junk appended", &o, C_HDR, 3, -1, -1);
    free(h);
    tu_rm_rf(d);
    free(d);
}

static void attack_chunks(void) {
    outcome o;
    struct {
        const char *name;
        int kind;
        long arg;
    } atk[] = {
        {"chunk 0 byte flipped (.d)", 0, 0},
        {"chunk 3 byte flipped (.d)", 0, 3},
        {"last (partial) chunk flipped (.d)", 0, 5},
        {"table entry 2 subkey salt flipped (.t)", 1, 2 * ENT + 5},
        {"table entry 1 nonce flipped (.t)", 1, 1 * ENT + 16 + 3},
        {"table entry 4 tag flipped (.t)", 1, 4 * ENT + 28 + 4},
        {"table last byte flipped (.t)", 1, -1},
        {".d truncated by 100 bytes", 2, 100},
        {".d truncated to one chunk", 3, CS},
        {".d truncated to 0", 3, 0},
        {".t truncated by 10 bytes", 4, 10},
        {".t truncated to 0", 5, 0},
        {"chunks 1 and 3 swapped (.d and .t)", 6, 0},
        {"chunks 1 and 3 swapped (.d only)", 7, 0},
        {"junk appended to .d (100 bytes)", 8, 100},
        {"junk appended to .d (one chunk)", 8, CS},
        {"junk appended to .t (one entry)", 9, ENT},
        {".d deleted", 10, 0},
        {".t deleted", 11, 0},
    };
    for (size_t i = 0; i < sizeof atk / sizeof atk[0]; i++) {
        char *d = fresh(v2, "atk");
        char *pd = objpath(d, idA2, ".d"), *pt = objpath(d, idA2, ".t");
        int tchunk = -1;
        long dl = fsize(pd), tl = fsize(pt);
        switch (atk[i].kind) {
        case 0:
            flip_byte(pd, atk[i].arg * CS + 77);
            tchunk = (int)atk[i].arg;
            break;
        case 1: flip_byte(pt, atk[i].arg); break;
        case 2: REQUIRE(truncate(pd, dl - atk[i].arg) == 0); break;
        case 3: REQUIRE(truncate(pd, atk[i].arg) == 0); break;
        case 4: REQUIRE(truncate(pt, tl - atk[i].arg) == 0); break;
        case 5: REQUIRE(truncate(pt, atk[i].arg) == 0); break;
        case 6:
            swap_ranges(pd, 1 * CS, 3 * CS, CS);
            swap_ranges(pt, 1 * ENT, 3 * ENT, ENT);
            break;
        case 7: swap_ranges(pd, 1 * CS, 3 * CS, CS); break;
        case 8: append_junk(pd, (size_t)atk[i].arg); break;
        case 9: append_junk(pt, (size_t)atk[i].arg); break;
        case 10: unlink(pd); break;
        case 11: unlink(pt); break;
        }
        run_attack(d, &T2, &o, 0, tchunk, NULL);
        if ((atk[i].kind == 8 || atk[i].kind == 9) && !strict && o.stage == 0) {
            /* Known finding (reported): bytes appended to .d/.t past the file's chunks are
             * neither read nor flagged by verify. No wrong byte can come of it, which is
             * checked here; the detection itself only with SCP_TEST_STRICT=1. */
            nattacks++;
            printf("  %-48s -> not detected (reads right; strict mode asserts detection)\n",
                   atk[i].name);
            CHECKF(!o.wrong_bytes && o.other_ok[0] && o.other_ok[1], "%s: wrong bytes", atk[i].name);
            free(pd);
            free(pt);
            free(d);
            continue;
        }
        expect(atk[i].name, &o, C_INT, 1, 0, 1);
        if (atk[i].kind == 0 && o.stage == 3)
            CHECKF(o.read_off == atk[i].arg * CS,
                   "%s: first failing read at offset %ld, want %ld (the chunks before it are "
                   "intact)", atk[i].name, o.read_off, atk[i].arg * (long)CS);
        if (atk[i].kind == 0 && o.verify_named[0])
            CHECKF(o.verify_off[0] >= atk[i].arg * CS && o.verify_off[0] < (atk[i].arg + 1) * CS,
                   "%s: verify reported offset %lld, want the chunk at %ld", atk[i].name,
                   (long long)o.verify_off[0], atk[i].arg * (long)CS);
        free(pd);
        free(pt);
        free(d);
    }
}

static void attack_swap_files(void) {
    /* A and B have the same size: swap all their objects. */
    char *d = fresh(v2, "atk");
    char *ad = objpath(d, idA2, ".d"), *at = objpath(d, idA2, ".t");
    char *bd = objpath(d, idB, ".d"), *bt = objpath(d, idB, ".t");
    char *tmp = tu_path(d, "tmp");
    REQUIRE(rename(ad, tmp) == 0 && rename(bd, ad) == 0 && rename(tmp, bd) == 0);
    REQUIRE(rename(at, tmp) == 0 && rename(bt, at) == 0 && rename(tmp, bt) == 0);
    outcome o;
    run_attack(d, &T2, &o, 0, -1, NULL);
    expect("objects of A and B swapped", &o, C_INT, 1, -1, -1);
    CHECKF(o.stage == 1 || (o.verify_named[0] && o.verify_named[1]),
           "objects of A and B swapped: verify must name both files");
    /* only the data files swapped */
    tu_rm_rf(d);
    free(d);
    d = fresh(v2, "atk");
    free(ad);
    free(bd);
    ad = objpath(d, idA2, ".d");
    bd = objpath(d, idB, ".d");
    free(tmp);
    tmp = tu_path(d, "tmp");
    REQUIRE(rename(ad, tmp) == 0 && rename(bd, ad) == 0 && rename(tmp, bd) == 0);
    run_attack(d, &T2, &o, 0, -1, NULL);
    expect("data (.d) of A and B swapped", &o, C_INT, 1, -1, -1);
    /* chunk 1 of B copied over chunk 1 of A, with its table entry */
    tu_rm_rf(d);
    free(d);
    d = fresh(v2, "atk");
    char *pad = objpath(d, idA2, ".d"), *pat = objpath(d, idA2, ".t");
    char *pbd = objpath(d, idB, ".d"), *pbt = objpath(d, idB, ".t");
    {
        size_t n1, n2;
        uint8_t *bdat = tu_read_file(pbd, &n1), *btab = tu_read_file(pbt, &n2);
        REQUIRE(bdat && btab && n1 >= 2 * CS && n2 >= 2 * ENT);
        int fd = open(pad, O_RDWR);
        REQUIRE(pwrite(fd, bdat + CS, CS, CS) == CS);
        close(fd);
        fd = open(pat, O_RDWR);
        REQUIRE(pwrite(fd, btab + ENT, ENT, ENT) == ENT);
        close(fd);
        free(bdat);
        free(btab);
    }
    run_attack(d, &T2, &o, 0, -1, NULL);
    expect("chunk 1 of B (with its entry) moved into A", &o, C_INT, 1, 0, 1);
    tu_rm_rf(d);
    free(d);
    free(ad); free(at); free(bd); free(bt); free(tmp); free(pad); free(pat); free(pbd); free(pbt);
}

/* Replay: bring back bytes of A's objects from v1 (before the commit that changed chunk 2). */
static void attack_replay(void) {
    outcome o;
    if (strcmp(idA1, idA2)) {
        printf("  (A's objects were renamed by the commit: %s -> %s)\n", idA1, idA2);
    }
    for (int variant = 0; variant < 4; variant++) {
        char *d = fresh(v2, "atk");
        char *od = objpath(v1, idA1, ".d"), *ot = objpath(v1, idA1, ".t");
        char *nd = objpath(d, idA2, ".d"), *nt = objpath(d, idA2, ".t");
        const char *name = "";
        if (variant == 0) { /* chunk 2 of the old .d only */
            size_t n;
            uint8_t *old = tu_read_file(od, &n);
            REQUIRE(old && n >= 3 * CS);
            int fd = open(nd, O_RDWR);
            REQUIRE(pwrite(fd, old + 2 * CS, CS, 2 * CS) == CS);
            close(fd);
            free(old);
            name = "old chunk 2 replayed (.d only)";
        } else if (variant == 1) { /* chunk 2 and its old table entry */
            size_t n, m;
            uint8_t *old = tu_read_file(od, &n), *oldt = tu_read_file(ot, &m);
            REQUIRE(old && oldt && n >= 3 * CS && m >= 3 * ENT);
            int fd = open(nd, O_RDWR);
            REQUIRE(pwrite(fd, old + 2 * CS, CS, 2 * CS) == CS);
            close(fd);
            fd = open(nt, O_RDWR);
            REQUIRE(pwrite(fd, oldt + 2 * ENT, ENT, 2 * ENT) == ENT);
            close(fd);
            free(old);
            free(oldt);
            name = "old chunk 2 replayed with its table entry";
        } else if (variant == 2) { /* every byte that differs, both objects */
            size_t n1, n2, m1, m2;
            uint8_t *o1 = tu_read_file(od, &n1), *c1 = tu_read_file(nd, &n2);
            uint8_t *o2 = tu_read_file(ot, &m1), *c2 = tu_read_file(nt, &m2);
            REQUIRE(o1 && c1 && o2 && c2);
            size_t k1 = n1 < n2 ? n1 : n2, k2 = m1 < m2 ? m1 : m2;
            for (size_t k = 0; k < k1; k++) c1[k] = o1[k];
            for (size_t k = 0; k < k2; k++) c2[k] = o2[k];
            REQUIRE(tu_write_file(nd, c1, n2, 0600) == 0 && tu_write_file(nt, c2, m2, 0600) == 0);
            free(o1); free(c1); free(o2); free(c2);
            name = "A's objects rolled back in place (bytes)";
        } else { /* whole object files of v1 copied in */
            copy_file(od, nd);
            copy_file(ot, nt);
            name = "A's object files rolled back (copied from v1)";
        }
        run_attack(d, &T2, &o, 0, variant <= 1 ? 2 : -1, NULL);
        expect(name, &o, C_INT, 1, 0, 1);
        free(od); free(ot); free(nd); free(nt);
        tu_rm_rf(d);
        free(d);
    }
}

static void attack_manifest(void) {
    outcome o;
    int nw = newest_slot(v2);
    printf("  (manifest slots: generation %llu in manifest.0, %llu in manifest.1; T1 %llu, T2 "
           "%llu)\n", (unsigned long long)slot_gen(v2, 0), (unsigned long long)slot_gen(v2, 1),
           (unsigned long long)tu_tag_gen(&T1), (unsigned long long)tu_tag_gen(&T2));
    REQUIRE(slot_gen(v2, nw) == tu_tag_gen(&T2));
    static const long offs[] = {0, 9, 15, 20, 29, 40, -1, -5};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        char *d = fresh(v2, "atk");
        char *s = slot_path(d, nw);
        flip_byte(s, offs[i]);
        run_attack(d, &T2, &o, -1, -1, NULL);
        char name[96];
        snprintf(name, sizeof name, "newest manifest slot flipped @%ld", offs[i]);
        expect(name, &o, C_ROLL_INT, 2, -1, -1);
        CHECKF(o.stage == 1, "%s: must fail at volume open", name);
        /* without the expected tag: the older slot may be used, but never wrong bytes */
        const uint8_t *t1[2] = {contA1, NULL};
        run_attack(d, NULL, &o, 0, -1, t1);
        CHECKF(!o.wrong_bytes, "%s, no tag: wrong bytes returned", name);
        CHECKF(o.stage == 0 || o.code == SCP_E_INTEGRITY,
               "%s, no tag: error %s, want integrity or the older state", name,
               scp_code_name(o.code));
        free(s);
        free(d);
    }
    {
        char *d = fresh(v2, "atk");
        char *s = slot_path(d, nw);
        REQUIRE(unlink(s) == 0);
        run_attack(d, &T2, &o, -1, -1, NULL);
        expect("newest manifest slot deleted", &o, C_ROLL_INT, 2, -1, -1);
        free(s);
        free(d);
        d = fresh(v2, "atk");
        s = slot_path(d, nw);
        REQUIRE(truncate(s, 0) == 0);
        run_attack(d, &T2, &o, -1, -1, NULL);
        expect("newest manifest slot emptied", &o, C_ROLL_INT, 2, -1, -1);
        free(s);
        free(d);
        d = fresh(v2, "atk");
        s = slot_path(d, nw);
        append_junk(s, 16);
        run_attack(d, &T2, &o, -1, -1, NULL);
        expect("junk appended to the newest manifest slot", &o, C_ROLL_INT, 2, -1, -1);
        free(s);
        free(d);
        d = fresh(v2, "atk");
        s = slot_path(d, !nw);
        REQUIRE(unlink(s) == 0);
        run_attack(d, &T2, &o, -1, -1, NULL);
        nattacks++;
        printf("  %-48s -> %s\n", "older manifest slot deleted (harmless)",
               o.stage ? scp_code_name(o.code) : "opens, reads right");
        CHECKF(o.stage == 0 && o.other_ok[0] && o.other_ok[1] && o.problems == 0,
               "older manifest slot deleted: the newest slot alone must open the volume (%s)",
               o.msg);
        free(s);
        free(d);
        d = fresh(v2, "atk");
        char *s0 = slot_path(d, 0), *s1 = slot_path(d, 1), *s2 = slot_path(d, 2);
        flip_byte(s0, 40);
        flip_byte(s1, 40);
        REQUIRE(truncate(s2, 0) == 0);
        run_attack(d, NULL, &o, -1, -1, NULL);
        expect("every manifest slot flipped or emptied (no tag)", &o, C_INT, 1, -1, -1);
        CHECKF(o.stage == 1, "every slot flipped: must fail at volume open");
        free(s0);
        free(s1);
        free(s2);
        tu_rm_rf(d);
        free(d);
        d = fresh(v2, "atk");
        s0 = slot_path(d, 0);
        s1 = slot_path(d, 1);
        s2 = slot_path(d, 2);
        REQUIRE(unlink(s0) == 0 && unlink(s1) == 0);
        unlink(s2);
        run_attack(d, NULL, &o, -1, -1, NULL);
        static const scp_code c[] = {SCP_E_INTEGRITY, SCP_E_FORMAT};
        expect("every manifest slot deleted (no tag)", &o, c, 2, -1, -1);
        CHECKF(o.stage == 1, "every slot deleted: must fail at volume open");
        free(s0);
        free(s1);
        free(s2);
        tu_rm_rf(d);
        free(d);
    }
    /* The two slots exchanged (names swapped): each slot's AAD does not name its position, but
     * the newest generation is still found; must not yield wrong bytes. */
    {
        char *d = fresh(v2, "atk");
        char *s0 = slot_path(d, 0), *s1 = slot_path(d, 1), *tmp = tu_path(d, "tmp");
        REQUIRE(rename(s0, tmp) == 0 && rename(s1, s0) == 0 && rename(tmp, s1) == 0);
        run_attack(d, &T2, &o, -1, -1, NULL);
        nattacks++;
        printf("  %-48s -> %s\n", "manifest slots exchanged",
               o.stage ? scp_code_name(o.code) : "opens, reads right");
        CHECKF(!o.wrong_bytes, "manifest slots exchanged: wrong bytes");
        free(s0); free(s1); free(tmp);
        tu_rm_rf(d);
        free(d);
    }
}

static void attack_rollback(void) {
    outcome o;
    char *d = fresh(v1, "atk");
    run_attack(d, &T2, &o, -1, -1, NULL);
    expect("whole volume rolled back to v1, opened with T2", &o, C_ROLL, 1, -1, -1);
    CHECKF(o.stage == 1, "rollback must fail at volume open");
    /* the same old state with its own tag is fine */
    const uint8_t *t1[2] = {contA1, NULL};
    run_attack(d, &T1, &o, -1, -1, t1);
    CHECKF(o.stage == 0 && o.other_ok[0] && o.other_ok[1] && o.problems == 0,
           "v1 opened with T1 must read v1's content (%s)", o.msg);
    tu_rm_rf(d);
    free(d);
    /* a tag of the same generation but another MAC */
    scp_volume_tag forged = T2;
    forged.bytes[20] ^= 1;
    run_attack(v2, &forged, &o, -1, -1, NULL);
    expect("expected tag with another MAC (same generation)", &o, C_INT, 1, -1, -1);
    CHECKF(o.stage == 1, "forged tag must fail at volume open");
    /* a tag from the future */
    scp_volume_tag future = T2;
    future.bytes[7] += 1;
    run_attack(v2, &future, &o, -1, -1, NULL);
    expect("expected tag newer than the volume", &o, C_ROLL, 1, -1, -1);
    /* a newer state than the expected tag is accepted */
    run_attack(v2, &T1, &o, -1, -1, NULL);
    CHECKF(o.stage == 0 && o.other_ok[0], "v2 opened with the older T1 must open (%s)", o.msg);
    /* whole directory replaced by v1 without objects of A (mixed): manifest of v2, objects v1 */
    d = fresh(v2, "atk");
    char *od = tu_path(d, "objects"), *o1 = tu_path(v1, "objects");
    tu_rm_rf(od);
    REQUIRE(tu_copy_tree(o1, od) == 0);
    run_attack(d, &T2, &o, 0, -1, NULL);
    expect("manifest of v2 with all objects of v1", &o, C_INT, 1, 0, 1);
    free(od);
    free(o1);
    tu_rm_rf(d);
    free(d);
}

/* ---- confidentiality ------------------------------------------------------------------ */

static void scan_tree(const char *dir, const char *const *needles, int nn, int *hits) {
    DIR *d = opendir(dir);
    REQUIRE(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        for (int i = 0; i < nn; i++)
            if (strstr(de->d_name, needles[i])) {
                CHECKF(0, "host name '%s/%s' contains '%s'", dir, de->d_name, needles[i]);
                (*hits)++;
            }
        char *c = tu_path(dir, de->d_name);
        struct stat st;
        lstat(c, &st);
        if (S_ISDIR(st.st_mode)) {
            scan_tree(c, needles, nn, hits);
        } else {
            size_t n;
            uint8_t *b = tu_read_file(c, &n);
            for (int i = 0; b && i < nn; i++) {
                size_t l = strlen(needles[i]);
                if (tu_memmem(b, n, needles[i], l)) {
                    CHECKF(0, "'%s' contains '%s' in plaintext", c, needles[i]);
                    (*hits)++;
                }
                if (l > 12 && tu_memmem(b, n, needles[i], 12)) {
                    CHECKF(0, "'%s' contains the first 12 bytes of '%s'", c, needles[i]);
                    (*hits)++;
                }
            }
            free(b);
        }
        free(c);
    }
    closedir(d);
}

static void confidentiality(void) {
    static const char *const needles[] = {MARKER, "confidential-dir", "secret-report-name",
                                          "ledger-b", "SCP-PLAINTEXT"};
    int hits = 0;
    scan_tree(v1, needles, 5, &hits);
    scan_tree(v2, needles, 5, &hits);
    /* a volume captured in the middle of writes (data buffered, write-back to the journal) */
    char *d = tu_path(root, "live");
    scp_err e;
    REQUIRE_OK(scp_volume_create(d, key, CS, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(d, key, NULL, &e), e);
    REQUIRE_OK(scp_volume_mkdir(v, DIRN, 0700, &e), e);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, PA, O_RDWR | O_CREAT, 0600, &e), e);
    /* 20 MiB of marker text: more than the write-back limit, so some goes to disk uncommitted */
    static uint8_t big[1 << 20];
    size_t ml = strlen(MARKER);
    for (size_t off = 0; off + ml <= sizeof big; off += ml) memcpy(big + off, MARKER, ml);
    for (int i = 0; i < 20; i++)
        REQUIRE(scp_vfile_pwrite(f, big, sizeof big, (uint64_t)i * sizeof big, &e) ==
                (ssize_t)sizeof big);
    scan_tree(d, needles, 5, &hits); /* uncommitted, partly written back */
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    scan_tree(d, needles, 5, &hits);
    /* identical plaintext chunks must not give identical ciphertext (fresh nonce per chunk,
     * and the same chunk rewritten with the same bytes gets a new ciphertext) */
    char none[1][64];
    char id[64];
    new_stem(d, none, 0, id);
    char *pd = objpath(d, id, ".d");
    size_t n;
    uint8_t *before = tu_read_file(pd, &n);
    REQUIRE(before && n >= 4 * CS);
    CHECKF(memcmp(before, before + CS, CS) != 0 && memcmp(before + CS, before + 3 * CS, CS) != 0,
           "identical plaintext chunks stored as identical ciphertext (nonce reuse?)");
    REQUIRE(scp_vfile_pwrite(f, big, CS, 0, &e) == CS); /* same bytes again */
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    size_t n2;
    uint8_t *after = tu_read_file(pd, &n2);
    REQUIRE(after && n2 >= CS);
    CHECKF(memcmp(before, after, CS) != 0,
           "rewriting chunk 0 with the same bytes kept the same ciphertext (nonce reuse)");
    free(before);
    free(after);
    free(pd);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    scan_tree(d, needles, 5, &hits);
    printf("  %-48s -> %d hits\n", "plaintext scan (marker and names)", hits);
    tu_rm_rf(d);
    free(d);
}

/* Count the backing files under dir that hold any of the n byte strings needles[i] (len each). */
static int scan_bytes(const char *dir, const uint8_t (*needles)[8], const size_t *lens, int n) {
    DIR *d = opendir(dir);
    REQUIRE(d);
    int hits = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *c = tu_path(dir, de->d_name);
        struct stat st;
        lstat(c, &st);
        if (S_ISDIR(st.st_mode)) {
            hits += scan_bytes(c, needles, lens, n);
        } else {
            size_t len;
            uint8_t *b = tu_read_file(c, &len);
            for (int i = 0; b && i < n; i++)
                if (tu_memmem(b, len, needles[i], lens[i])) {
                    CHECKF(0, "'%s' holds the file size 10007 (encoding %d)", c, i);
                    hits++;
                }
            free(b);
        }
        free(c);
    }
    closedir(d);
    return hits;
}

/* The disk shows sizes only to the chunk: a 10007-byte file, written in one go or in two
 * committed appends, must leave no encoding of 10007 in any backing file (journal commit
 * records carried it in the clear before format 2). */
static void size_leak(void) {
    uint8_t needles[4][8] = {{0}};
    size_t lens[4] = {4, 4, 8, 8};
    uint32_t sz = 10007;
    for (int k = 0; k < 4; k++) { /* u32 LE, u32 BE, u64 LE, u64 BE */
        for (int b = 0; b < 4; b++) {
            uint8_t byte = (uint8_t)(sz >> (8 * b));
            if (k == 0 || k == 2) needles[k][b] = byte;
            else needles[k][lens[k] - 1 - (size_t)b] = byte;
        }
    }
    static uint8_t data[10007];
    tu_rng r = {10007};
    tu_fill(&r, data, sizeof data);
    char *d = tu_path(root, "sizeleak");
    scp_err e;
    REQUIRE_OK(scp_volume_create(d, key, CS, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(d, key, NULL, &e), e);
    REQUIRE_OK(tu_vput(v, "one", data, sizeof data, &e), e);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "two", O_RDWR | O_CREAT, 0600, &e), e);
    REQUIRE(scp_vfile_pwrite(f, data, 5000, 0, &e) == 5000);
    REQUIRE_OK(scp_vfile_fsync(f, &e), e);
    REQUIRE(scp_vfile_pwrite(f, data + 5000, 5007, 5000, &e) == 5007);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    int hits = scan_bytes(d, needles, lens, 4);
    nattacks++;
    printf("  %-48s -> %d files hold it\n", "exact size 10007 on disk after close", hits);
    /* and the volume still reads back */
    v = REQUIRE_PTR(scp_volume_open(d, key, NULL, &e), e);
    size_t n;
    uint8_t *got = tu_vget(v, "two", &n, &e);
    CHECKF(got && n == sizeof data && memcmp(got, data, n) == 0, "size-leak file reads back");
    free(got);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    tu_rm_rf(d);
    free(d);
}

/* Another process commits; the host then puts older objects back under a process that holds
 * the file open. Its next reads must fail or show the newest commit (a journal replay may
 * restore it), never the old bytes or the state it had loaded: a reload that fails its root
 * check must not leave the table it read from disk in use. */
static void attack_reload_rollback(void) {
    char *d = tu_path(root, "reload");
    scp_err e;
    REQUIRE_OK(scp_volume_create(d, key, 4096, &e), e);
    scp_volume *a = REQUIRE_PTR(scp_volume_open(d, key, NULL, &e), e);
    scp_volume *b = REQUIRE_PTR(scp_volume_open(d, key, NULL, &e), e); /* "another process" */
    static uint8_t buf[4 * 4096];
    memset(buf, 'A', sizeof buf);
    REQUIRE_OK(tu_vput(b, "x", buf, sizeof buf, &e), e);
    char stems[4][64];
    REQUIRE(list_stems(d, stems, 4) == 1);
    char *od = objpath(d, stems[0], ".d"), *ot = objpath(d, stems[0], ".t");
    char *sd = tu_path(root, "reload-A.d"), *st = tu_path(root, "reload-A.t");
    copy_file(od, sd);
    copy_file(ot, st);
    memset(buf, 'B', sizeof buf);
    REQUIRE_OK(tu_vput(b, "x", buf, sizeof buf, &e), e);
    scp_vfile *h = REQUIRE_PTR(scp_vfile_open(a, "x", O_RDONLY, 0, &e), e);
    uint8_t got[4096];
    REQUIRE(scp_vfile_pread(h, got, 4096, 0, &e) == 4096 && got[0] == 'B');
    memset(buf, 'C', sizeof buf);
    REQUIRE_OK(tu_vput(b, "x", buf, sizeof buf, &e), e);
    copy_file(sd, od); /* the host: version A back on disk, and no journal to redo C from */
    copy_file(st, ot);
    char *oj = objpath(d, stems[0], ".j");
    REQUIRE(truncate(oj, 0) == 0);
    free(oj);
    for (int k = 0; k < 3; k++) {
        memset(got, 0, sizeof got);
        tu_err_clear(&e);
        ssize_t r = scp_vfile_pread(h, got, 4096, 4096, &e);
        CHECKF((r < 0 && e.code == SCP_E_INTEGRITY) || (r == 4096 && got[0] == 'C' && got[4095] == 'C'),
               "reload after a rollback of the objects, read %d: %zd bytes starting '%c' (%s); "
               "want EIO or the newest commit",
               k, r, r > 0 ? got[0] : '-', r < 0 ? e.msg : "");
    }
    nattacks++;
    scp_vfile_close(h, &e);
    scp_volume_close(a, &e);
    scp_volume_close(b, &e);
    free(od);
    free(ot);
    free(sd);
    free(st);
    free(d);
}

/* ---- attacks on availability: garbage collection, journal size, slot choice ------------- */

/* Names and sizes of the files in objects/, sorted, as one string. */
static char *objects_listing(const char *vol) {
    char *od = tu_path(vol, "objects");
    char names[64][80];
    int n = 0;
    DIR *d = opendir(od);
    REQUIRE(d);
    struct dirent *de;
    while ((de = readdir(d)) && n < 64) {
        if (de->d_name[0] == '.') continue;
        char *p = tu_path(od, de->d_name);
        snprintf(names[n++], sizeof names[0], "%.60s:%ld", de->d_name, fsize(p));
        free(p);
    }
    closedir(d);
    free(od);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    char *out = calloc((size_t)n + 1, sizeof names[0]);
    REQUIRE(out);
    for (int i = 0; i < n; i++) strcat(strcat(out, names[i]), " ");
    return out;
}

/* The host rolls the manifest slots back after a newer durable state, while the lock file says
 * removed files' objects may be left (a process exited without a sync). Opening with the newer
 * tag must fail with SCP_E_ROLLBACK before garbage collection deletes the newer state's
 * objects, which the owner needs to recover it. */
static void attack_gc_rollback(void) {
    char *d = tu_path(root, "gc");
    scp_err e;
    REQUIRE_OK(scp_volume_create(d, key, CS, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(d, key, NULL, &e), e);
    REQUIRE_OK(tu_vput(v, "a", "old state", 9, &e), e);
    REQUIRE_OK(tu_vput(v, "c", "removed later", 13, &e), e);
    REQUIRE_OK(scp_volume_sync(v, &e), e);
    char *saved[3], *slots[3];
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "gc-slot.%d", i);
        saved[i] = tu_path(root, name);
        slots[i] = slot_path(d, i);
        copy_file(slots[i], saved[i]);
    }
    REQUIRE_OK(tu_vput(v, "b", contB, FSIZE, &e), e); /* the newer state: new objects */
    scp_volume_tag tag;
    REQUIRE_OK(scp_volume_sync(v, &e), e);
    scp_volume_tag_get(v, &tag);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    pid_t pid = fork(); /* a process removes "c" and exits without a sync */
    REQUIRE(pid >= 0);
    if (pid == 0) {
        scp_volume *w = scp_volume_open(d, key, NULL, &e);
        _exit(w && scp_volume_unlink(w, "c", &e) == 0 ? 0 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *newer[3];
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "gc-newer.%d", i);
        newer[i] = tu_path(root, name);
        copy_file(slots[i], newer[i]);
    }
    for (int i = 0; i < 3; i++) copy_file(saved[i], slots[i]); /* the host's rollback */
    char *before = objects_listing(d);
    tu_err_clear(&e);
    v = scp_volume_open(d, key, &tag, &e);
    CHECKF(!v && e.code == SCP_E_ROLLBACK, "rolled-back slots opened with the newer tag: %s (%s)",
           v ? "opened" : e.msg, scp_code_name(e.code));
    if (v) scp_volume_close(v, &e);
    char *after = objects_listing(d);
    CHECKF(!strcmp(before, after),
           "a refused (rolled back) open changed objects/:\n  before: %s\n  after:  %s", before,
           after);
    printf("  gc after a rollback: %s, objects %s\n", scp_code_name(e.code),
           strcmp(before, after) ? "DELETED" : "kept");
    nattacks++;
    /* The owner copies the newer slots back: the volume opens with the tag, "b" reads, and the
     * objects of "c" go once two durable commits have passed its removal. */
    for (int i = 0; i < 3; i++) copy_file(newer[i], slots[i]);
    v = scp_volume_open(d, key, &tag, &e);
    CHECKF(v, "the newer slots copied back: %s", e.msg);
    if (v) {
        size_t n;
        uint8_t *b = tu_vget(v, "b", &n, &e);
        CHECKF(b && n == FSIZE && !memcmp(b, contB, FSIZE), "'b' after the recovery: %s",
               b ? "wrong bytes" : e.msg);
        free(b);
        CHECK_OK(tu_vput(v, "x", "1", 1, &e), e);
        CHECK_OK(tu_vput(v, "x", "2", 1, &e), e);
        CHECK_OK(scp_volume_close(v, &e), e);
    }
    char stems[8][64];
    int nbefore = list_stems(d, stems, 8);
    v = scp_volume_open(d, key, NULL, &e); /* collects */
    CHECKF(v, "reopen: %s", e.msg);
    int nafter = list_stems(d, stems, 8);
    CHECKF(nbefore == 4 && nafter == 3,
           "garbage collection: %d files' objects before, %d after (want 4, then 3: the "
           "removed file's objects gone)",
           nbefore, nafter);
    if (v) {
        size_t n;
        uint8_t *a = tu_vget(v, "a", &n, &e);
        CHECKF(a && n == 9 && !memcmp(a, "old state", 9), "'a' after collection: %s",
               a ? "wrong bytes" : e.msg);
        free(a);
        scp_vstat vs;
        tu_err_clear(&e);
        CHECKF(scp_volume_stat(v, "c", &vs, &e) < 0 && e.code == SCP_E_NOENT, "'c' is back");
        scp_volume_close(v, &e);
    }
    for (int i = 0; i < 3; i++) free(newer[i]);
    for (int i = 0; i < 3; i++) {
        free(saved[i]);
        free(slots[i]);
    }
    free(before);
    free(after);
    free(d);
}

/* The host inflates a file's journal (sparse, so it costs the host nothing): recovery reads a
 * journal whole, so beyond what a writer can produce it must refuse (SCP_E_INTEGRITY) instead
 * of allocating and reading what the host chose. */
static void attack_journal_size(void) {
    char *d = tu_path(root, "jsize");
    scp_err e;
    REQUIRE_OK(scp_volume_create(d, key, CS, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(d, key, NULL, &e), e);
    REQUIRE_OK(tu_vput(v, "j", contA1, FSIZE, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    char stems[2][64];
    REQUIRE(list_stems(d, stems, 2) == 1);
    char *oj = objpath(d, stems[0], ".j");
    REQUIRE(truncate(oj, 300l << 20) == 0);
    v = REQUIRE_PTR(scp_volume_open(d, key, NULL, &e), e);
    tu_err_clear(&e);
    double t0 = tu_now();
    scp_vfile *h = scp_vfile_open(v, "j", O_RDONLY, 0, &e);
    CHECKF(!h && e.code == SCP_E_INTEGRITY && e.sys == EIO,
           "a 300 MiB journal on a %u-byte file: %s (%s), want SCP_E_INTEGRITY", FSIZE,
           h ? "opened" : e.msg, scp_code_name(e.code));
    printf("  300 MiB journal: %s in %.3fs\n", h ? "opened" : scp_code_name(e.code), tu_now() - t0);
    if (h) scp_vfile_close(h, &e);
    scp_volume_close(v, &e);
    nattacks++;
    free(oj);
    free(d);
}

/* The host lowers the generation in the header of the newer durable slot. That slot no longer
 * authenticates (a rollback, which the tag reports), but a process that has the volume open
 * knows it and must not pick it for its next slot write: a torn write there would leave
 * only the older slot. (Format 3 writes a slot when it folds the manifest log, at a close
 * after commits: the close below.) */
static void attack_slot_header(void) {
    char *d = tu_path(root, "slothdr");
    scp_err e;
    REQUIRE_OK(scp_volume_create(d, key, CS, &e), e);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(d, key, NULL, &e), e);
    REQUIRE_OK(tu_vput(v, "s1", "one", 3, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e); /* folds: slot 1 */
    v = REQUIRE_PTR(scp_volume_open(d, key, NULL, &e), e);
    REQUIRE_OK(tu_vput(v, "s2", "two", 3, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e); /* folds: slot 0 */
    v = REQUIRE_PTR(scp_volume_open(d, key, NULL, &e), e);
    int k = newest_slot(d);
    uint64_t g_new = slot_gen(d, k), g_old = slot_gen(d, !k);
    REQUIRE(g_old > 0 && g_new > g_old);
    char *sp = slot_path(d, k);
    int fd = open(sp, O_RDWR);
    uint8_t one[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    REQUIRE(fd >= 0 && pwrite(fd, one, 8, 8) == 8);
    close(fd);
    size_t n0, n1;
    uint8_t *forged = tu_read_file(sp, &n0);
    REQUIRE_OK(tu_vput(v, "s3", "three", 5, &e), e); /* a durable commit */
    REQUIRE_OK(scp_volume_close(v, &e), e);            /* and a slot write */
    uint8_t *now = tu_read_file(sp, &n1);
    int kept = forged && now && n0 == n1 && !memcmp(forged, now, n0);
    CHECKF(kept, "the durable commit after a forged header overwrote the newer durable slot "
                 "(manifest.%d) instead of the older one",
           k);
    CHECKF(slot_gen(d, !k) > g_new, "the older slot was not written (generation %llu)",
           (unsigned long long)slot_gen(d, !k));
    v = scp_volume_open(d, key, NULL, &e);
    CHECKF(v, "reopen: %s", e.msg);
    if (v) {
        scp_vstat vs;
        CHECK_OK(scp_volume_stat(v, "s3", &vs, &e), e);
        scp_volume_close(v, &e);
    }
    printf("  forged slot header: the newer slot %s\n", kept ? "kept" : "OVERWRITTEN");
    nattacks++;
    free(forged);
    free(now);
    free(sp);
    free(d);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    strict = getenv("SCP_TEST_STRICT") && atoi(getenv("SCP_TEST_STRICT"));
    double t0 = tu_now();
    setup();
    printf("attacks (volume in %s):\n", root);
    attack_key();
    attack_header();
    attack_chunks();
    attack_swap_files();
    attack_replay();
    attack_manifest();
    attack_rollback();
    attack_reload_rollback();
    attack_gc_rollback();
    attack_journal_size();
    attack_healed();
    attack_slot_header();
    confidentiality();
    size_leak();
    printf("%d attacks in %.2fs\n", nattacks, tu_now() - t0);
    if (!tu_failures) tu_rm_rf(root);
    else fprintf(stderr, "snapshots kept in %s\n", root);
    return tu_exit_code("test_volume_tamper");
}
