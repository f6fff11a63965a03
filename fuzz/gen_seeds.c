/* fuzz/gen_seeds.c - writes the seed corpora of the fuzz targets into DIR/<target>/.
 *
 *   fuzz_gen_seeds DIR        (DIR is usually fuzz/corpus)
 *
 * Seeds are made with the library (a real volume from volfix.c, the encoders of format.h) and
 * kept small. The end-to-end seeds are attack descriptions (see fuzz_volume_open.c) that name
 * files by their number in the fixture's universe, which is stable from run to run. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "volfix.h"
#include "volume/format.h"

static const char *outdir;
static int nwritten;

static void seed(const char *target, const char *name, const void *data, size_t len) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", outdir, target);
    mkdir(outdir, 0755);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/%s", outdir, target, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "gen_seeds: cannot write %s: %s\n", p, strerror(errno));
        exit(1);
    }
    nwritten++;
}

static void volhdr_seeds(const vf_fixture *fx) {
    long h = vf_find(fx, "scpvol.hdr");
    const vf_blob *b = &fx->snap[fx->nsnap - 1].f[h];
    seed("fuzz_volhdr", "real-4k", b->data, b->len);
    scp_volhdr v = {.version = SCP_FMT_VERSION, .chunk_size = 65536};
    memset(v.volid, 0x42, sizeof v.volid);
    uint8_t out[SCP_VOLHDR_LEN];
    scp_volhdr_encode(&v, out);
    seed("fuzz_volhdr", "chunk-64k", out, sizeof out);
    v.version = 2;
    scp_volhdr_encode(&v, out);
    seed("fuzz_volhdr", "version-2", out, sizeof out);
}

static void manifest_seeds(const vf_fixture *fx) {
    const vf_snap *last = &fx->snap[fx->nsnap - 1];
    const char *slots[2] = {"manifest.0", "manifest.1"};
    for (int i = 0; i < 2; i++) {
        const vf_blob *b = &last->f[vf_find(fx, slots[i])];
        if (b->present && b->len) seed("fuzz_manifest", slots[i], b->data, b->len);
    }
    /* Bodies. */
    static const struct {
        int type;
        const char *path;
        uint64_t size;
    } ents[] = {{2, "d", 0}, {1, "d/b.bin", 4106}, {2, "d/sub", 0}, {1, "d/sub/x", 1}, {1, "z", 7}};
    for (size_t n = 0; n <= 5; n += 1) {
        if (n == 1 || n == 3) continue;
        scp_manifest m = {0};
        scp_mentry e[5];
        memset(e, 0, sizeof e);
        for (size_t i = 0; i < n; i++) {
            e[i].type = (uint8_t)ents[i].type;
            e[i].path = (char *)ents[i].path;
            memset(e[i].id, (int)(0x10 + i), SCP_FILEID_LEN);
            e[i].size = ents[i].size;
            if (e[i].type == 1) memset(e[i].root, (int)(0x80 + i), SCP_HASH_LEN);
            e[i].mode = e[i].type == 2 ? 0750 : 0640;
            e[i].uid = e[i].gid = 1000;
            e[i].mtime_ns = 1700000000000000000ll + (int64_t)i;
            e[i].ctime_ns = e[i].mtime_ns + (int64_t)(i % 2); /* both encodings (format.h, times) */
            e[i].atime_ns = e[i].mtime_ns;
        }
        scp_mentry *ep[5] = {&e[0], &e[1], &e[2], &e[3], &e[4]};
        m.e = ep;
        m.n = m.cap = n;
        uint8_t *body;
        size_t len;
        if (scp_manifest_encode(&m, &body, &len, NULL) < 0) exit(1);
        char name[32];
        snprintf(name, sizeof name, "body-%zu", n);
        seed("fuzz_manifest", name, body, len);
        free(body);
    }
    { /* the root's own entry (format.h, SCP_ROOT_ENTRY) before a directory and its file */
        scp_mentry e[3];
        memset(e, 0, sizeof e);
        const char *paths[3] = {SCP_ROOT_ENTRY, "d", "d/f"};
        for (size_t i = 0; i < 3; i++) {
            e[i].type = i == 2 ? 1 : 2;
            e[i].path = (char *)paths[i];
            memset(e[i].id, (int)(0x20 + i), SCP_FILEID_LEN);
            e[i].mode = 0700 | SCP_MODE_OWNED;
            e[i].mtime_ns = e[i].atime_ns = 1700000000000000000ll;
            e[i].ctime_ns = e[i].mtime_ns + 1;
        }
        scp_mentry *ep[3] = {&e[0], &e[1], &e[2]};
        scp_manifest m = {.e = ep, .n = 3, .cap = 3};
        uint8_t *body;
        size_t len;
        if (scp_manifest_encode(&m, &body, &len, NULL) < 0) exit(1);
        seed("fuzz_manifest", "body-root", body, len);
        free(body);
    }
}

/* Manifest log seeds: the fixture's log as written, and delta bodies built with the entry
 * encoder (puts, removals, both). */
static void mlog_seeds(const vf_fixture *fx) {
    const vf_snap *last = &fx->snap[fx->nsnap - 1];
    long li = vf_find(fx, "manifest.log");
    if (li >= 0 && last->f[li].present && last->f[li].len)
        seed("fuzz_mlog", "log", last->f[li].data, last->f[li].len);
    for (int k = 0; k < 3; k++) {
        uint8_t b[1024], *p = b + 8;
        scp_mentry e[2];
        memset(e, 0, sizeof e);
        e[0].type = 2;
        e[0].path = (char *)"d/new";
        memset(e[0].id, 0x61, SCP_FILEID_LEN);
        e[0].mode = 0750;
        e[1].type = 1;
        e[1].path = (char *)"d/new/file";
        memset(e[1].id, 0x62, SCP_FILEID_LEN);
        e[1].size = 4106;
        memset(e[1].root, 0x63, SCP_HASH_LEN);
        e[1].mode = 0640;
        uint32_t np = k == 1 ? 0 : 2, nd = k == 0 ? 0 : 1;
        for (uint32_t i = 0; i < np; i++) p = scp_mentry_encode(&e[i], p);
        if (nd) {
            scp_put_u16(p, 5);
            memcpy(p + 2, "d/s/x", 5);
            p += 7;
        }
        scp_put_u32(b, np);
        scp_put_u32(b + 4, nd);
        char name[32];
        snprintf(name, sizeof name, "delta-%d", k);
        seed("fuzz_mlog", name, b, (size_t)(p - b));
    }
}

/* Journal seeds: byte 0 = parameters, byte 1 = target, byte 2 = failing call (see
 * fuzz_journal.c), then a log built with the library's chain functions. */
static uint8_t jb[16384];
static size_t jlen;
static uint8_t jchain[SCP_HASH_LEN];

static void jb_start(uint8_t p, uint8_t sel, uint8_t fail_at, uint8_t salt) {
    uint8_t s[SCP_HASH_LEN];
    memset(s, salt, sizeof s);
    jb[0] = p;
    jb[1] = sel;
    jb[2] = fail_at;
    scp_journal_start(jb + 3, s, jchain);
    jlen = 3 + SCP_JRN_HDR_LEN;
}

/* The file key and id that fuzz_journal.c uses. */
static const uint8_t jkey_file[32] = {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                                      0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                                      0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                                      0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11};
static const uint8_t jfile_id[SCP_FILEID_LEN] = {0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
                                                0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22};

/* The volume id that fuzz_journal.c uses (chunk records' associated data). */
static const uint8_t jvol_id[SCP_VOLID_LEN] = {0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33,
                                               0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33,
                                               0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33,
                                               0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33};

/* A chunk record of `index`: `fill` bytes sealed under the file's subkey of a salt of `fill`
 * bytes, its entry in the header, the header chained (format.h). */
static void jb_chunk(uint32_t cs, uint64_t index, uint8_t fill) {
    uint8_t *r = jb + jlen, *e = r + SCP_JREC_HDR_LEN, key[32], aad[SCP_CHUNK_AAD_LEN];
    static uint8_t pt[65536];
    memset(r, 0, SCP_JCHUNK_HDR_LEN);
    scp_put_u32(r, SCP_JREC_CHUNK);
    scp_put_u64(r + 8, index);
    memset(e, fill, SCP_SALT_LEN);
    memset(e + SCP_ENT_NONCE_OFF, fill ^ 0x0f, SCP_NONCE_LEN);
    memset(pt, fill, cs);
    scp_chunk_aad(jvol_id, jfile_id, index, aad);
    if (scp_derive_key(jkey_file, SCP_LABEL_CHUNK, e, SCP_SALT_LEN, key, NULL) < 0 ||
        scp_aead_seal(key, e + SCP_ENT_NONCE_OFF, aad, sizeof aad, pt, cs,
                      r + SCP_JCHUNK_HDR_LEN, e + SCP_ENT_TAG_OFF, NULL) < 0)
        abort();
    scp_journal_chain(jchain, r, SCP_JCHUNK_HDR_LEN);
    jlen += SCP_JCHUNK_HDR_LEN + cs;
}

/* A commit record naming (root = 32 bytes `rootb`, size) with entries for indexes idx[0..n),
 * encrypted as the library does (the journal starts at jb + 3). */
static void jb_commit(uint64_t size, const uint64_t *idx, size_t n, uint8_t rootb) {
    uint8_t *r = jb + jlen, pt[SCP_JCOMMIT_PT_LEN(8)], key[32];
    if (n > 8) abort();
    scp_put_u64(pt, size);
    uint8_t *e = pt + 8;
    for (size_t i = 0; i < n; i++, e += SCP_JENTRY_LEN) {
        scp_put_u64(e, idx[i]);
        memset(e + 8, (int)(0x50 + i), SCP_CHUNK_ENTRY_LEN);
    }
    memset(e, rootb, SCP_HASH_LEN);
    if (scp_journal_key(jkey_file, jb + 3, key, NULL) < 0 ||
        scp_journal_commit_seal(key, jfile_id, jlen - 3, n, pt, jchain, r, NULL) < 0)
        abort();
    jlen += SCP_JCOMMIT_LEN(n);
}

static void jb_emit(const char *name) { seed("fuzz_journal", name, jb, jlen); }

/* Three commits at chunk size cs: overwrite chunk 0 and 1, append chunk 2, overwrite 0 again. */
static void jb_three(uint32_t cs) {
    jb_chunk(cs, 0, 0x30);
    jb_chunk(cs, 1, 0x31);
    jb_commit(2 * (uint64_t)cs, (const uint64_t[]){0, 1}, 2, 0xA1);
    jb_chunk(cs, 2, 0x32);
    jb_commit(3 * (uint64_t)cs - 5, (const uint64_t[]){2}, 1, 0xA2);
    jb_chunk(cs, 0, 0x33);
    jb_commit(3 * (uint64_t)cs - 5, (const uint64_t[]){0}, 1, 0xA3);
}

static void journal_seeds(const vf_fixture *fx) {
    /* cs 16 (param 0), target the middle commit, both callbacks. */
    jb_start(0x00, 0x01, 0, 0x11);
    jb_three(16);
    jb_emit("cs16-3commits");
    /* The last commit, counted from the end; repair on; the second replay fails on call 2. */
    jb_start(0x80, 0x80, 2, 0x12);
    jb_three(16);
    jb_emit("cs16-last-cbfail");
    /* The same with the repair walk reading records of other types as chunk records. */
    jb[1] = 0x00;
    jb[0] = 0xC0;
    jb_emit("cs16-repair-other-as-chunk");
    /* Two commits naming the same state (a setattr-like commit with no entries): the last one
     * is the one found. Chunk callbacks only. */
    jb_start(0x10, 0x00, 0, 0x13);
    jb_chunk(16, 0, 0x40);
    jb_commit(16, (const uint64_t[]){0}, 1, 0xB1);
    jb_commit(16, NULL, 0, 0xB1);
    jb_chunk(16, 1, 0x41);
    jb_commit(32, (const uint64_t[]){1}, 1, 0xB2);
    jb_emit("cs16-dup-state");
    /* A commit whose size does not match, entry callbacks only; a torn chunk record after it. */
    jb_start(0x21, 0x20, 0, 0x14);
    jb_chunk(32, 0, 0x50);
    jb_commit(100, (const uint64_t[]){0, 3}, 2, 0xC1);
    jb_chunk(32, 1, 0x51);
    jlen -= 7;
    jb_emit("cs32-size-mismatch-torn");
    /* A new log over a longer old one: the old log's tail is left behind and stays stale. */
    {
        jb_start(0x01, 0x00, 0, 0x21);
        jb_three(32);
        jb_chunk(32, 3, 0x34);
        jb_commit(4 * 32, (const uint64_t[]){3}, 1, 0xA4);
        static uint8_t old[sizeof jb];
        size_t oldlen = jlen;
        memcpy(old, jb, jlen);
        /* Same shape as the old log's first commit, so that the tail starts on a record:
         * a chunk record that checks out, then a commit record whose chain value fails. */
        jb_start(0x01, 0x00, 0, 0x22);
        jb_chunk(32, 1, 0x60);
        jb_chunk(32, 2, 0x61);
        jb_commit(4 * 32, (const uint64_t[]){1, 2}, 2, 0xD1);
        memcpy(jb + jlen, old + jlen, oldlen - jlen);
        jlen = oldlen;
        jb_emit("cs32-new-log-stale-tail");
        jb[1] = 0x60; /* a made-up target: nothing found */
        jb_emit("cs32-new-log-no-target");
    }
    /* A commit record with a wrong GCM tag, and the repair bit that fixes it. */
    jb_start(0x80, 0x00, 1, 0x15);
    jb_chunk(16, 0, 0x70);
    jb_commit(8, (const uint64_t[]){0}, 1, 0xE1);
    jb[jlen - 1] ^= 1;
    jb_emit("cs16-repair");
    /* Chunk size 4096 (param 8): one overwrite and a commit with no new chunk. */
    jb_start(0x08, 0x81, 0, 0x16);
    jb_chunk(4096, 1, 0x35);
    jb_commit(3 * 4096 + 10, (const uint64_t[]){1, 3}, 2, 0xF1);
    jb_commit(3 * 4096 + 10, NULL, 0, 0xF2);
    jb_emit("cs4k-2commits");
    /* A real journal from a crash-point snapshot (chunk size 4096: param 8), the shortest with a
     * commit; target its last commit. Its commit payloads are sealed under the fixture's random
     * file key, which the harness does not know: it exercises the walk and the chain, and the
     * repair bit (param 0x80) turns it into one whose commits authenticate under the harness's
     * key (with the ciphertext as their plaintext). */
    const vf_blob *best = NULL;
    for (size_t k = 0; k < fx->nsnap; k++) {
        for (size_t i = 0; i < fx->nuniv; i++) {
            const vf_blob *b = &fx->snap[k].f[i];
            size_t nl = strlen(fx->univ[i]);
            if (!b->present || b->len <= SCP_JRN_HDR_LEN || strcmp(fx->univ[i] + nl - 2, ".j") != 0)
                continue;
            if (!best || b->len < best->len) best = b;
        }
    }
    if (best) {
        uint8_t *s = malloc(best->len + 3);
        s[0] = 0x88;
        s[1] = 0x80;
        s[2] = 0;
        memcpy(s + 3, best->data, best->len);
        seed("fuzz_journal", "real-4k", s, best->len + 3);
        free(s);
    }
}

static void path_seeds(void) {
    static const char *p[] = {"a", "a/b/c.txt", "//a//b/", "/", "", "./x", "a/../b", "a/./b",
                              "...", "a/..b/.c", "\x80name/with bytes\x7f"};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) {
        char b[64], name[16];
        b[0] = (char)(i % 3 == 2 ? 0x88 : 0); /* some with an 9-byte output buffer */
        size_t l = strlen(p[i]);
        memcpy(b + 1, p[i], l);
        snprintf(name, sizeof name, "p%02zu", i);
        seed("fuzz_path", name, b, l + 1);
    }
    static char big[1 + 300];
    memset(big, 'n', sizeof big);
    big[0] = 0;
    big[1 + 255] = '/';
    seed("fuzz_path", "long-name", big, sizeof big);
}

/* End-to-end attack seeds. */
static uint8_t att[256];
static size_t natt;
static void a8(unsigned v) { att[natt++] = (uint8_t)v; }
static void a16(unsigned v) {
    a8(v >> 8);
    a8(v & 0xff);
}
static void emit(const char *name) {
    seed("fuzz_volume_open", name, att, natt);
    natt = 0;
}

/* Universe numbers of the objects of the file that the final state names `which`
 * (0: first object set to appear, 1: second, ...), extension ext. */
static long object(const vf_fixture *fx, int which, const char *ext) {
    int seen = -1;
    char last[64] = "";
    for (size_t i = 0; i < fx->nuniv; i++) {
        if (strncmp(fx->univ[i], "objects/", 8) != 0) continue;
        if (strncmp(fx->univ[i], last, 40) != 0) {
            snprintf(last, sizeof last, "%s", fx->univ[i]);
            seen++;
        }
        if (seen == which) {
            char name[64];
            snprintf(name, sizeof name, "%.40s%s", fx->univ[i], ext);
            return vf_find(fx, name);
        }
    }
    return -1;
}

static void volume_seeds(const vf_fixture *fx) {
    size_t last = fx->nsnap - 1;
    char name[64];
    for (size_t k = 0; k < fx->nsnap; k++) {
        a8((unsigned)k);
        a8(k % 2 ? 3 : 2);
        snprintf(name, sizeof name, "base-%02zu", k);
        emit(name);
    }
    long m0 = vf_find(fx, "manifest.0"), m1 = vf_find(fx, "manifest.1");
    long hdr = vf_find(fx, "scpvol.hdr");
    long ad = object(fx, 0, ".d"), bd = object(fx, 1, ".d"), bt = object(fx, 1, ".t");
    long bj = object(fx, 1, ".j");
    /* Replay the older manifest slot over the newer one, with and without freshness. */
    a8((unsigned)last); a8(3); a8(5); a8((unsigned)m1); a8((unsigned)m0); emit("replay-slot-a");
    a8((unsigned)last); a8(2); a8(5); a8((unsigned)m0); a8((unsigned)m1); emit("replay-slot-b");
    a8((unsigned)last); a8(3); a8(1); a8((unsigned)m0); emit("delete-slot0");
    a8((unsigned)last); a8(3); a8(1); a8((unsigned)m1); emit("delete-slot1");
    if (ad >= 0 && bd >= 0) {
        a8((unsigned)last); a8(3); a8(5); a8((unsigned)bd); a8((unsigned)ad); emit("swap-data");
    }
    if (bt >= 0) {
        for (size_t k = 0; k < fx->nsnap; k += 3) { /* roll back one file's chunk table */
            a8((unsigned)last); a8(2); a8(3); a8((unsigned)bt); a8((unsigned)k);
            snprintf(name, sizeof name, "old-table-%02zu", k);
            emit(name);
        }
        a8((unsigned)last); a8(3); a8(6); a8((unsigned)bt); a16(3); a8(1); emit("flip-table");
    }
    if (bd >= 0) {
        a8((unsigned)last); a8(3); a8(2); a8((unsigned)bd); a16(4096); emit("truncate-data");
        a8((unsigned)last); a8(3); a8(6); a8((unsigned)bd); a16(100); a8(7); emit("flip-data");
        a8((unsigned)last); a8(2); a8(4); a8((unsigned)bd); a16(8192); a8(4);
        a8('X'); a8('X'); a8('X'); a8('X'); emit("patch-hole");
    }
    a8((unsigned)last); a8(1); a8(6); a8((unsigned)hdr); a16(20); a8(0); emit("flip-header");
    a8((unsigned)last); a8(1); a8(6); a8((unsigned)m1); a16(40); a8(0); emit("flip-manifest");
    a8((unsigned)last); a8(1); a8(0); a8((unsigned)hdr); a16(0); emit("empty-header");
    a8((unsigned)last); a8(8); emit("wrong-key");
    /* Not regular files: FIFO (0), directory (1), symlink to /dev/zero (2). */
    a8((unsigned)last); a8(1); a8(7); a8((unsigned)hdr); a8(0); emit("fifo-header");
    a8((unsigned)last); a8(1); a8(7); a8((unsigned)m1); a8(0); emit("fifo-slot");
    a8((unsigned)last); a8(1); a8(7); a8((unsigned)m0); a8(1); emit("dir-slot");
    if (bd >= 0) {
        a8((unsigned)last); a8(3); a8(7); a8((unsigned)bd); a8(2); emit("devzero-data");
        a8((unsigned)last); a8(3); a8(7); a8((unsigned)bt); a8(0); emit("fifo-table");
    }
    if (bj >= 0) {
        a8((unsigned)last); a8(6); a8(1); a8(0); a8(10); a16(5); a8(7); a8((unsigned)bj); a8(2);
        emit("write-devzero-journal");
    }
    /* Writes after tampering (flag 4: [file][mode][len][off:u16] before the ops). */
    for (unsigned f = 0; f < 3; f++) {
        a8((unsigned)last); a8(7); a8(f); a8(0); a8(10); a16(5); /* in place, journaled */
        snprintf(name, sizeof name, "write-%u", f);
        emit(name);
        a8((unsigned)last); a8(6); a8(f); a8(1); a8(0); a16(4000); /* truncate */
        snprintf(name, sizeof name, "truncate-%u", f);
        emit(name);
    }
    if (bd >= 0) { /* a write into a file whose data object was tampered */
        a8((unsigned)last); a8(6); a8(1); a8(0); a8(200); a16(4000);
        a8(6); a8((unsigned)bd); a16(4100); a8(3);
        emit("write-over-flipped");
    }
    /* Crash points with their journal damaged or gone. */
    if (bj >= 0) {
        for (size_t k = 0; k < fx->nsnap; k++) {
            if (!fx->snap[k].crash || !fx->snap[k].f[bj].present || !fx->snap[k].f[bj].len)
                continue;
            a8((unsigned)k); a8(3); a8(1); a8((unsigned)bj);
            snprintf(name, sizeof name, "crash%02zu-nojournal", k);
            emit(name);
            a8((unsigned)k); a8(3); a8(6); a8((unsigned)bj); a16(60); a8(2);
            snprintf(name, sizeof name, "crash%02zu-flipjournal", k);
            emit(name);
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s DIR [TARGET]  (writes DIR/<target>/ seed files)\n", argv[0]);
        return 2;
    }
    outdir = argv[1];
    vf_fixture fx;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    if (vf_build(&fx, base) < 0) return 1;
    const char *only = argc == 3 ? argv[2] : NULL;
#define WANT(t) (!only || strcmp(only, t) == 0)
    if (WANT("fuzz_volhdr")) volhdr_seeds(&fx);
    if (WANT("fuzz_manifest")) manifest_seeds(&fx);
    if (WANT("fuzz_mlog")) mlog_seeds(&fx);
    if (WANT("fuzz_journal")) journal_seeds(&fx);
    if (WANT("fuzz_path")) path_seeds();
    if (WANT("fuzz_volume_open")) volume_seeds(&fx);
#undef WANT
    printf("gen_seeds: %d seeds in %s (fixture: %zu snapshots, %zu states, %zu files)\n",
           nwritten, outdir, fx.nsnap, fx.ntruth, fx.nuniv);
    for (size_t i = 0; i < fx.nuniv; i++) printf("  file %2zu  %s\n", i, fx.univ[i]);
    vf_free(&fx);
    return 0;
}
