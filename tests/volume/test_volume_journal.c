/* tests/volume/test_volume_journal.c - the journal of format 4 (format.h, "journal"): its chain
 * covers record headers only, each chunk record carries the entry its ciphertext was sealed
 * under, and each commit record authenticates the chain value before it.
 *
 * Part 1 builds logs with the library's encoders (real keys, real seals) and checks what the
 * walks find in them after what a host can do to a log or a power cut can leave of it:
 *   intact      the full walk finds every commit; a follower from the first commit's end finds
 *               the second with the same chain value (without hashing what is between)
 *   chunkct     a byte of a chunk's ciphertext changed behind its intact header: the log ends
 *               before that record (no commit after it is found, no type 3 record after it is
 *               handed out); also a torn chunk (its ciphertext zeroed, header and commit intact:
 *               what a power cut that lost one page of a one-flush commit leaves)
 *   splice      a chunk record of another log of the same file (same index, authentic there), and
 *               one of another file (same index, same log key): not taken
 *   swap        two chunk records of one commit exchanged: not taken
 *   chainfix    records exchanged and the commit's stored chain value recomputed to match (the
 *               chain is unkeyed): the commit does not authenticate, for the full walk and for a
 *               follower
 *   truncate    the log cut inside a chunk's ciphertext and inside a commit record: the commit
 *               before is found, that one not
 *   oldlog      a commit record of an older log of the file behind the new log's records: not
 *               taken (another key)
 * Part 2, on a volume: a journal that recovery needs (the in-place applies lost, as a power cut
 * can) redoes its commit; with a byte of a chunk record's ciphertext changed, the file fails to
 * load with SCP_E_INTEGRITY and replay writes nothing of the record into the data object.
 * Part 3, a power cut during a one-flush commit's sync: a writer (a child) overwrites one chunk
 * per commit, each commit one fdatasync of the journal (its commit point), and dies; the image
 * keeps manifest.log as of its last sync, the data and table as before the last commit's apply,
 * and the journal whole but for the last commit's chunk ciphertext (zeros: that page did not
 * land), its header, commit record and manifest-log record landed. The volume must open at the
 * commit before (the fsync never returned), read every earlier frame, and verify clean; the
 * same image with the chunk intact opens at the last commit (the control).
 */
#include "scenario.h"
#include "testutil.h"

#include "crypto/crypto.h"
#include "common/util.h"
#include "volume/format.h"

#define CS 4096u

static const uint8_t volid[SCP_VOLID_LEN] = {7, 7, 7};
static const uint8_t fkey[32] = {1, 2, 3, 4, 5};
static const uint8_t fkey2[32] = {9, 8, 7};
static const uint8_t fid[SCP_FILEID_LEN] = {0xf1, 0xf2};

/* A log under construction. */
typedef struct jlog {
    uint8_t *b;
    size_t len, cap;
    uint8_t chain[SCP_HASH_LEN], key[32];
    size_t commit_end[8]; /* end of each commit (and its run) */
    size_t chunk_off[16]; /* offset of each chunk record */
    int ncommit, nchunk;
} jlog;

static void jl_room(jlog *l, size_t n) {
    if (l->len + n <= l->cap) return;
    l->cap = (l->len + n) * 2;
    l->b = realloc(l->b, l->cap);
    if (!l->b) tu_die("realloc");
}

static void jl_start(jlog *l, uint8_t saltb) {
    memset(l, 0, sizeof *l);
    uint8_t salt[SCP_HASH_LEN];
    memset(salt, saltb, sizeof salt);
    jl_room(l, SCP_JRN_HDR_LEN);
    scp_journal_start(l->b, salt, l->chain);
    REQUIRE(scp_journal_key(fkey, l->b, l->key, NULL) == 0);
    l->len = SCP_JRN_HDR_LEN;
}

/* A chunk record of `index` sealed under file key k (salt and nonce from `seed`). */
static void jl_chunk(jlog *l, const uint8_t k[32], uint64_t index, uint8_t fill, uint8_t seed) {
    jl_room(l, SCP_JCHUNK_HDR_LEN + CS);
    uint8_t *r = l->b + l->len, pt[CS], sk[32], aad[SCP_CHUNK_AAD_LEN];
    memset(r, 0, SCP_JREC_HDR_LEN);
    scp_put_u32(r, SCP_JREC_CHUNK);
    scp_put_u64(r + 8, index);
    uint8_t *e = r + SCP_JREC_HDR_LEN;
    memset(e, seed, SCP_SALT_LEN);
    memset(e + SCP_ENT_NONCE_OFF, seed ^ 0x5a, SCP_NONCE_LEN);
    e[SCP_ENT_NONCE_OFF] &= 0xfe; /* slot 0 */
    memset(pt, fill, sizeof pt);
    REQUIRE(scp_derive_key(k, SCP_LABEL_CHUNK, e, SCP_SALT_LEN, sk, NULL) == 0);
    scp_chunk_aad(volid, fid, index, aad);
    REQUIRE(scp_aead_seal(sk, e + SCP_ENT_NONCE_OFF, aad, sizeof aad, pt, CS,
                          r + SCP_JCHUNK_HDR_LEN, e + SCP_ENT_TAG_OFF, NULL) == 0);
    scp_journal_chain(l->chain, r, SCP_JCHUNK_HDR_LEN);
    l->chunk_off[l->nchunk++] = l->len;
    l->len += SCP_JCHUNK_HDR_LEN + CS;
}

/* A commit record naming (size, root = 32 bytes rootb) with one entry per index, and a type 3
 * record behind it (a one-flush commit's manifest-log record; its bytes are opaque here). */
static void jl_commit(jlog *l, uint64_t size, const uint64_t *idx, size_t n, uint8_t rootb) {
    size_t rlen = SCP_JCOMMIT_LEN(n), ptlen = SCP_JCOMMIT_PT_LEN(n);
    jl_room(l, rlen + SCP_JREC_HDR_LEN + 64);
    uint8_t *pt = calloc(1, ptlen), *p = pt + 8;
    scp_put_u64(pt, size);
    for (size_t i = 0; i < n; i++, p += SCP_JENTRY_LEN) scp_put_u64(p, idx[i]);
    memset(p, rootb, SCP_HASH_LEN);
    REQUIRE(scp_journal_commit_seal(l->key, fid, l->len, n, pt, l->chain, l->b + l->len, NULL) == 0);
    free(pt);
    l->len += rlen;
    uint8_t *r = l->b + l->len;
    scp_put_u32(r, SCP_JREC_MLOG);
    scp_put_u32(r + 4, 0);
    scp_put_u64(r + 8, 64);
    memset(r + SCP_JREC_HDR_LEN, 0xee, 64);
    scp_journal_chain(l->chain, r, SCP_JREC_HDR_LEN);
    l->len += SCP_JREC_HDR_LEN + 64;
    l->commit_end[l->ncommit++] = l->len;
}

static uint8_t root_of(uint8_t b, uint8_t out[SCP_HASH_LEN]) {
    memset(out, b, SCP_HASH_LEN);
    return b;
}

/* Which commit (1-based, 0: none) the full walk finds for commit k's target, on buf. */
static int found(const uint8_t *buf, size_t len, int k, scp_journal_view *v) {
    uint8_t root[SCP_HASH_LEN];
    root_of((uint8_t)(0xa0 + k), root);
    scp_journal_view tmp;
    if (!v) v = &tmp;
    return scp_journal_find(buf, len, CS, volid, fkey, fid, root, (uint64_t)k * 2 * CS, v) == 1;
}

static void count_mrec(void *ctx, const uint8_t *rec, size_t len, const uint8_t *root,
                       uint64_t size) {
    (void)rec, (void)len, (void)root, (void)size;
    ++*(int *)ctx;
}
static int mrecs(const uint8_t *buf, size_t len) {
    int n = 0;
    scp_journal_mrecs(buf, len, CS, volid, fkey, fid, count_mrec, &n);
    return n;
}

/* The standard log: commit 1 = chunks 0, 1; commit 2 = chunks 2, 3 (each with a type 3 run). */
static void std_log(jlog *l, uint8_t saltb) {
    jl_start(l, saltb);
    jl_chunk(l, fkey, 0, 'a', 1);
    jl_chunk(l, fkey, 1, 'b', 1);
    jl_commit(l, 2 * CS, (const uint64_t[]){0, 1}, 2, 0xa1);
    jl_chunk(l, fkey, 2, 'c', 1);
    jl_chunk(l, fkey, 3, 'd', 1);
    jl_commit(l, 4 * CS, (const uint64_t[]){2, 3}, 2, 0xa2);
}

static uint8_t *dup_log(const jlog *l) {
    uint8_t *b = malloc(l->len);
    if (!b) tu_die("malloc");
    memcpy(b, l->b, l->len);
    return b;
}

/* What a replay hands out: one bit per chunk record's index (1 << i; a dead one, with no
 * ciphertext, 65536 << i), one per entry's (256 << i). */
static int hand_chunk(void *ctx, uint64_t index, const uint8_t *ct) {
    *(unsigned *)ctx |= (ct ? 1u : 65536u) << index;
    return 0;
}
static int hand_entry(void *ctx, uint64_t index, const uint8_t *e) {
    (void)e;
    *(unsigned *)ctx |= 256u << index;
    return 0;
}

/* dead: a log where the file grew to 4 chunks (chunk 3 journaled), was cut to 1 chunk, and grew
 * back to 4 with nothing journaled (what a commit of fresh chunks written in place appends; the
 * table on disk holds their entries, or holes). A replay to the last commit must not hand out
 * chunk 3's record or entry: that was volume_powercut's tight run 39210 (shared), where the
 * replay after a cut between the manifest's sync and the apply put chunks' entries from before
 * the truncate over the table's, and the file no longer loaded. A dead chunk record is handed
 * out without its ciphertext (a follow still notes that the log names the chunk). Replayed to
 * the first commit, they are live. */
static void part1_dead(void) {
    jlog l;
    jl_start(&l, 0x66);
    jl_chunk(&l, fkey, 3, 'd', 3);
    jl_chunk(&l, fkey, 0, 'a', 3);
    jl_commit(&l, 4 * CS, (const uint64_t[]){0, 3}, 2, 0xb1); /* grows to 4 */
    jl_commit(&l, CS - 7, NULL, 0, 0xb2);                     /* cut to 1 */
    jl_commit(&l, 4 * CS, NULL, 0, 0xb3);                     /* grows back, in place */
    jl_chunk(&l, fkey, 2, 'c', 3);
    jl_commit(&l, 4 * CS, (const uint64_t[]){2}, 1, 0xb4);
    uint8_t root[SCP_HASH_LEN];
    scp_journal_view v;
    unsigned got = 0;
    scp_err e;
    root_of(0xb1, root);
    REQUIRE(scp_journal_find(l.b, l.len, CS, volid, fkey, fid, root, 4 * CS, &v) == 1);
    CHECK(scp_journal_replay(l.b, &v, CS, fid, hand_chunk, hand_entry, &got, &e) == 0);
    CHECKF(got == (1u | 8u | 256u | 2048u), "replayed to the first commit, chunks 0 and 3 are live "
                                             "(got %#x)", got);
    root_of(0xb3, root);
    REQUIRE(scp_journal_find(l.b, l.len, CS, volid, fkey, fid, root, 4 * CS, &v) == 1);
    got = 0;
    CHECK(scp_journal_replay(l.b, &v, CS, fid, hand_chunk, hand_entry, &got, &e) == 0);
    CHECKF(got == (1u | 256u | (65536u << 3)), "replayed past the truncate, chunk 3's record and "
                                                "entry are dead (got %#x)", got);
    root_of(0xb4, root);
    REQUIRE(scp_journal_find(l.b, l.len, CS, volid, fkey, fid, root, 4 * CS, &v) == 1);
    got = 0;
    CHECK(scp_journal_replay(l.b, &v, CS, fid, hand_chunk, hand_entry, &got, &e) == 0);
    CHECKF(got == (1u | 4u | 256u | 1024u | (65536u << 3)), "a record after the truncate is live "
                                                             "(got %#x)", got);
    /* Split in two views at the first commit (a follow: named, then past): the first view's
     * records die by the second view's truncate when the horizon says so */
    scp_journal_view ja = v;
    ja.end = l.commit_end[0];
    got = 0;
    CHECK(scp_journal_replay_kept(l.b, &ja, NULL, v.end, CS, fid, hand_chunk, hand_entry, &got,
                                  &e) == 0);
    CHECKF(got == (1u | 256u | (65536u << 3)), "a truncate past the first view kills its records "
                                                "(got %#x)", got);
    got = 0;
    CHECK(scp_journal_replay_kept(l.b, &ja, NULL, 0, CS, fid, hand_chunk, hand_entry, &got, &e) == 0);
    CHECKF(got == (1u | 8u | 256u | 2048u), "without a horizon, the first view alone (got %#x)", got);
    printf("  records before a truncate that a later commit grew back over: not replayed\n");
    free(l.b);
}

static void part1(void) {
    jlog l;
    std_log(&l, 0x33);
    scp_journal_view v1, v2, x;

    /* intact */
    CHECK(found(l.b, l.len, 1, &v1) && v1.end == l.commit_end[0]);
    CHECK(found(l.b, l.len, 2, &v2) && v2.end == l.commit_end[1] && v2.nchunks == 4);
    CHECK(memcmp(v2.chain, l.chain, SCP_HASH_LEN) == 0);
    CHECK(mrecs(l.b, l.len) == 2);
    uint8_t root2[SCP_HASH_LEN];
    root_of(0xa2, root2);
    CHECKF(scp_journal_find_from(l.b, l.len, v1.end, CS, v1.key, v1.chain, fid, root2, 4 * CS, &x) == 1 &&
               x.end == v2.end && memcmp(x.chain, v2.chain, SCP_HASH_LEN) == 0,
           "a follower from commit 1 must find commit 2 with the full walk's chain value");
    printf("  intact: both commits, follower agrees\n");

    /* chunkct: one ciphertext byte of chunk record 2 (commit 2's first) */
    uint8_t *b = dup_log(&l);
    b[l.chunk_off[2] + SCP_JCHUNK_HDR_LEN + 100] ^= 1;
    CHECKF(found(b, l.len, 1, NULL) && !found(b, l.len, 2, NULL),
           "a changed chunk ciphertext behind an intact header must end the log before it");
    CHECKF(mrecs(b, l.len) == 1, "no type 3 record behind a commit after a changed chunk");
    free(b);
    b = dup_log(&l);
    b[l.chunk_off[0] + SCP_JCHUNK_HDR_LEN + CS - 1] ^= 0x80;
    CHECKF(!found(b, l.len, 1, NULL) && !found(b, l.len, 2, NULL) && mrecs(b, l.len) == 0,
           "a changed ciphertext in commit 1 must leave no commit");
    free(b);
    b = dup_log(&l); /* torn: a page of commit 2's chunk lost, its header and the commit kept */
    memset(b + l.chunk_off[3] + SCP_JCHUNK_HDR_LEN, 0, CS);
    CHECKF(found(b, l.len, 1, NULL) && !found(b, l.len, 2, NULL) && mrecs(b, l.len) == 1,
           "a torn chunk of a one-flush commit must not let that commit or its log record count");
    free(b);
    printf("  chunk ciphertext changed or torn behind an intact header: the log ends there\n");

    /* splice: chunk record 2 replaced by one of another log of the file (same index, other
     * seal), then by one of another file (another file key) */
    jlog o;
    jl_start(&o, 0x44);
    jl_chunk(&o, fkey, 2, 'X', 9);
    jl_chunk(&o, fkey2, 2, 'c', 1);
    b = dup_log(&l);
    memcpy(b + l.chunk_off[2], o.b + o.chunk_off[0], SCP_JCHUNK_HDR_LEN + CS);
    CHECKF(found(b, l.len, 1, NULL) && !found(b, l.len, 2, NULL),
           "a chunk record spliced from another log of the file must not be taken");
    memcpy(b + l.chunk_off[2], o.b + o.chunk_off[1], SCP_JCHUNK_HDR_LEN + CS);
    CHECKF(found(b, l.len, 1, NULL) && !found(b, l.len, 2, NULL),
           "a chunk record spliced from another file must not be taken");
    /* the other file's record with this file's header (entry) in front: its ciphertext fails */
    memcpy(b + l.chunk_off[2], l.b + l.chunk_off[2], SCP_JCHUNK_HDR_LEN);
    CHECKF(found(b, l.len, 1, NULL) && !found(b, l.len, 2, NULL),
           "another file's ciphertext behind this file's header must not be taken");
    free(b);
    /* swap: commit 2's two chunk records exchanged */
    b = dup_log(&l);
    memcpy(b + l.chunk_off[2], l.b + l.chunk_off[3], SCP_JCHUNK_HDR_LEN + CS);
    memcpy(b + l.chunk_off[3], l.b + l.chunk_off[2], SCP_JCHUNK_HDR_LEN + CS);
    CHECKF(found(b, l.len, 1, NULL) && !found(b, l.len, 2, NULL),
           "two chunk records exchanged must not be taken");
    free(b);
    printf("  spliced (another log, another file) and swapped chunk records: not taken\n");

    /* chainfix: commit 2's two chunk records exchanged (each still authentic under its own
     * header) and commit 2's stored chain value recomputed over the exchanged headers */
    b = dup_log(&l);
    memcpy(b + l.chunk_off[2], l.b + l.chunk_off[3], SCP_JCHUNK_HDR_LEN + CS);
    memcpy(b + l.chunk_off[3], l.b + l.chunk_off[2], SCP_JCHUNK_HDR_LEN + CS);
    uint8_t c[SCP_HASH_LEN];
    scp_sha256_buf(b, SCP_JRN_HDR_LEN, c);
    size_t off = SCP_JRN_HDR_LEN, c2 = l.chunk_off[3] + SCP_JCHUNK_HDR_LEN + CS;
    while (off < c2) {
        uint32_t t = scp_get_u32(b + off);
        size_t hl = t == SCP_JREC_CHUNK ? SCP_JCHUNK_HDR_LEN
                    : t == SCP_JREC_MLOG ? SCP_JREC_HDR_LEN
                                         : SCP_JCOMMIT_LEN(scp_get_u64(b + off + 8));
        size_t rl = t == SCP_JREC_CHUNK  ? SCP_JCHUNK_HDR_LEN + CS
                    : t == SCP_JREC_MLOG ? SCP_JREC_HDR_LEN + scp_get_u64(b + off + 8)
                                         : hl;
        scp_journal_chain(c, b + off, hl);
        off += rl;
    }
    memcpy(b + c2 + SCP_JREC_HDR_LEN, c, SCP_HASH_LEN);
    CHECKF(found(b, l.len, 1, NULL) && !found(b, l.len, 2, NULL),
           "a commit whose stored chain value was recomputed over changed headers must not "
           "authenticate");
    CHECKF(scp_journal_find_from(b, l.len, v1.end, CS, v1.key, v1.chain, fid, root2, 4 * CS, &x) == 0,
           "a follower must not take a commit whose stored chain value was changed");
    free(b);
    printf("  records exchanged, chain value recomputed: the commit does not authenticate\n");

    /* truncate: inside commit 2's second chunk, inside commit 2's record */
    CHECK(found(l.b, l.chunk_off[3] + 100, 1, NULL) && !found(l.b, l.chunk_off[3] + 100, 2, NULL));
    size_t in_commit = l.chunk_off[3] + SCP_JCHUNK_HDR_LEN + CS + 40;
    CHECK(found(l.b, in_commit, 1, NULL) && !found(l.b, in_commit, 2, NULL));
    CHECK(!found(l.b, l.chunk_off[1] + 10, 1, NULL));
    printf("  truncated logs: the commits before the cut only\n");

    /* oldlog: a new log (another salt) over the old one's bytes: commit 1 of the new log, then
     * the old log's commit 2 where the new log's records end */
    jlog n;
    jl_start(&n, 0x55);
    jl_chunk(&n, fkey, 0, 'z', 2);
    jl_chunk(&n, fkey, 1, 'y', 2);
    jl_commit(&n, 2 * CS, (const uint64_t[]){0, 1}, 2, 0xa1);
    REQUIRE(n.len == l.commit_end[0]); /* (same layout: the old log's commit 2 follows) */
    b = dup_log(&l);
    memcpy(b, n.b, n.len);
    CHECKF(found(b, l.len, 1, NULL) && !found(b, l.len, 2, NULL),
           "an older log's commit behind a new log must not be taken");
    free(b);
    printf("  an older log's records behind a new log: not taken\n");
    free(l.b);
    free(o.b);
    free(n.b);
    part1_dead();
}

/* ---- part 2: on a volume ------------------------------------------------------------------ */

static char *tmproot;
static const uint8_t key[32] = {0x4b, 0x45, 0x59};

static uint8_t *slurp(const char *p, size_t *n) {
    FILE *fp = fopen(p, "rb");
    REQUIRE(fp);
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    REQUIRE(b && fread(b, 1, (size_t)sz, fp) == (size_t)sz);
    fclose(fp);
    *n = (size_t)sz;
    return b;
}

static void spit(const char *p, const uint8_t *b, size_t n) {
    FILE *fp = fopen(p, "wb");
    REQUIRE(fp && fwrite(b, 1, n, fp) == n && fclose(fp) == 0);
}

/* The offset of the first chunk record of `index` in journal j (0: none). */
static size_t chunk_rec(const uint8_t *j, size_t n, uint64_t index) {
    size_t off = SCP_JRN_HDR_LEN;
    while (n - off >= SCP_JREC_HDR_LEN) {
        uint32_t t = scp_get_u32(j + off);
        uint64_t v = scp_get_u64(j + off + 8);
        if (t == SCP_JREC_CHUNK) {
            if (v == index) return off;
            off += SCP_JCHUNK_HDR_LEN + CS;
        } else if (t == SCP_JREC_MLOG) {
            off += SCP_JREC_HDR_LEN + v;
        } else if (t == SCP_JREC_COMMIT) {
            off += SCP_JCOMMIT_LEN(v);
        } else {
            return 0;
        }
    }
    return 0;
}

static void part2(int tamper) {
    char *d = tu_path(tmproot, tamper ? "vol-tamper" : "vol-redo");
    scp_err e;
    REQUIRE_OK(scp_volume_create(d, key, CS, &e), e);
    static uint8_t buf[4 * CS];
    memset(buf, 'A', sizeof buf);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(d, key, NULL, &e), e);
    REQUIRE_OK(tu_vput(v, "f", buf, sizeof buf, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    char *od = tu_only_object(d, ".d"), *ot = tu_only_object(d, ".t"), *oj = tu_only_object(d, ".j");
    size_t nd, nt;
    uint8_t *sd = slurp(od, &nd), *st = slurp(ot, &nt);
    /* an overwrite of chunk 1, committed through the journal */
    v = REQUIRE_PTR(scp_volume_open(d, key, NULL, &e), e);
    scp_vfile *h = REQUIRE_PTR(scp_vfile_open(v, "f", O_RDWR, 0, &e), e);
    memset(buf, 'B', CS);
    REQUIRE(scp_vfile_pwrite(h, buf, CS, CS, &e) == (ssize_t)CS);
    REQUIRE_OK(scp_vfile_fsync(h, &e), e);
    REQUIRE_OK(scp_vfile_close(h, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    /* the host (or a power cut that lost the unsynced applies): data and table as before */
    spit(od, sd, nd);
    spit(ot, st, nt);
    size_t nj;
    uint8_t *j = slurp(oj, &nj);
    size_t r = chunk_rec(j, nj, 1);
    REQUIRE(r != 0);
    if (tamper) {
        j[r + SCP_JCHUNK_HDR_LEN + 7] ^= 0x10;
        spit(oj, j, nj);
    }
    v = REQUIRE_PTR(scp_volume_open(d, key, NULL, &e), e);
    tu_err_clear(&e);
    h = scp_vfile_open(v, "f", O_RDONLY, 0, &e);
    uint8_t got[CS];
    if (!tamper) {
        CHECKF(h && scp_vfile_pread(h, got, CS, CS, &e) == (ssize_t)CS && got[0] == 'B' &&
                   got[CS - 1] == 'B',
               "the journal must redo the overwrite (%s)", e.msg);
        printf("  a journal that recovery needs redoes its commit\n");
    } else {
        /* (without the check, replay writes the changed ciphertext into .d and the file loads;
         * only a read of that chunk would fail) */
        ssize_t rr = h ? scp_vfile_pread(h, got, CS, 0, &e) : -1;
        CHECKF(!h && e.code == SCP_E_INTEGRITY,
               "a changed chunk record that recovery needs must fail the load with "
               "SCP_E_INTEGRITY; got %s (read of chunk 0: %zd)",
               h ? "a loaded file" : scp_code_name(e.code), rr);
        size_t nd2;
        uint8_t *d2 = slurp(od, &nd2);
        CHECKF(nd2 < 2 * CS || memcmp(d2 + CS, j + r + SCP_JCHUNK_HDR_LEN, CS) != 0,
               "replay must not write a chunk record that fails its tag into the data object");
        free(d2);
        printf("  a changed chunk record behind an intact header: %s\n",
               h ? "loaded" : e.msg);
    }
    if (h) scp_vfile_close(h, &e);
    scp_volume_close(v, &e);
    free(j);
    free(sd);
    free(st);
    free(od);
    free(ot);
    free(oj);
    free(d);
}


/* ---- part 3: a torn one-flush commit -------------------------------------------------------- */

#define NFR 6 /* frames (one chunk each) committed by the writer */

struct torn_out {
    scp_volume_tag prev, last; /* after commit NFR-2 and NFR-1 */
    off_t synced;              /* manifest.log's size after the first commit */
};

static void frame_of(uint8_t *b, int k) { memset(b, 'a' + k, CS); }

static void copy_obj(const char *from, const char *to) {
    size_t n;
    uint8_t *b = slurp(from, &n);
    spit(to, b, n);
    free(b);
}

static void part3(int torn) {
    char *d = tu_path(tmproot, torn ? "vol-torn" : "vol-whole");
    scp_err e;
    REQUIRE_OK(scp_volume_create(d, key, CS, &e), e);
    static uint8_t buf[8 * CS];
    memset(buf, 'i', sizeof buf);
    scp_volume *v = REQUIRE_PTR(scp_volume_open(d, key, NULL, &e), e);
    REQUIRE_OK(tu_vput(v, "w", buf, sizeof buf, &e), e);
    REQUIRE_OK(scp_volume_sync(v, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    char *od = tu_only_object(d, ".d"), *ot = tu_only_object(d, ".t"), *oj = tu_only_object(d, ".j");
    char *lp = tu_path(d, "manifest.log"), *sd = tu_path(tmproot, torn ? "torn.d" : "whole.d"),
         *st = tu_path(tmproot, torn ? "torn.t" : "whole.t");
    struct torn_out out;
    tu_child c;
    if (tu_child_start(&c)) {
        v = scp_volume_open(d, key, NULL, &e);
        scp_vfile *h = v ? scp_vfile_open(v, "w", O_RDWR, 0, &e) : NULL;
        if (!h) _exit(2);
        uint8_t b[CS];
        for (int k = 0; k < NFR; k++) {
            frame_of(b, k);
            if (scp_vfile_pwrite(h, b, CS, (uint64_t)k * CS, &e) != (ssize_t)CS ||
                scp_vfile_fsync(h, &e) < 0)
                _exit(4);
            struct stat sb;
            if (k == 0 && stat(lp, &sb) == 0) out.synced = sb.st_size;
            if (k == NFR - 2) { /* what the last commit's apply will change, as it was before */
                scp_volume_tag_get(v, &out.prev);
                copy_obj(od, sd);
                copy_obj(ot, st);
            }
        }
        scp_volume_tag_get(v, &out.last);
        tu_child_exit(&c, &out, sizeof out); /* (dies without closing) */
    }
    REQUIRE(tu_child_wait(&c, &out, sizeof out));
    /* The power cut during the last commit's journal sync. */
    REQUIRE(truncate(lp, out.synced) == 0);
    copy_obj(sd, od);
    copy_obj(st, ot);
    size_t nj;
    uint8_t *j = slurp(oj, &nj);
    size_t r = 0, off = SCP_JRN_HDR_LEN; /* the last chunk record of index NFR-1 */
    while (nj - off >= SCP_JREC_HDR_LEN) {
        uint32_t t = scp_get_u32(j + off);
        uint64_t n = scp_get_u64(j + off + 8);
        size_t len = t == SCP_JREC_CHUNK ? SCP_JCHUNK_HDR_LEN + CS
                     : t == SCP_JREC_MLOG ? SCP_JREC_HDR_LEN + n
                     : t == SCP_JREC_COMMIT ? SCP_JCOMMIT_LEN(n) : 0;
        if (!len || len > nj - off) break;
        if (t == SCP_JREC_CHUNK && n == NFR - 1) r = off;
        off += len;
    }
    REQUIRE(r != 0);
    if (torn) {
        memset(j + r + SCP_JCHUNK_HDR_LEN, 0, CS);
        spit(oj, j, nj);
    }
    tu_err_clear(&e);
    v = scp_volume_open(d, key, NULL, &e);
    CHECKF(v, "%s: open after the power cut: %s", torn ? "torn" : "whole", e.msg);
    if (v) {
        scp_volume_tag now;
        scp_volume_tag_get(v, &now);
        const scp_volume_tag *want = torn ? &out.prev : &out.last;
        CHECKF(tu_tag_gen(&now) == tu_tag_gen(want),
               "%s: opened at generation %llu, want %llu (%s)", torn ? "torn" : "whole",
               (unsigned long long)tu_tag_gen(&now), (unsigned long long)tu_tag_gen(want),
               torn ? "the commit whose chunk did not land never returned" : "the last commit");
        size_t n;
        uint8_t *got = tu_vget(v, "w", &n, &e), b[CS];
        CHECKF(got && n == sizeof buf, "%s: read back: %s", torn ? "torn" : "whole",
               got ? "wrong size" : e.msg);
        int bad = 0;
        for (int k = 0; got && n == sizeof buf && k < NFR; k++) {
            if (torn && k == NFR - 1) memset(b, 'i', CS);
            else frame_of(b, k);
            bad += memcmp(got + (size_t)k * CS, b, CS) != 0;
        }
        CHECKF(!bad, "%s: %d frames differ", torn ? "torn" : "whole", bad);
        long probs = scp_volume_verify(v, NULL, NULL, NULL, &e);
        CHECKF(probs == 0, "%s: verify found %ld problems", torn ? "torn" : "whole", probs);
        printf("  power cut in a one-flush commit's sync, %s: opened at generation %llu, "
               "%d frames as committed\n",
               torn ? "its chunk torn" : "everything landed", (unsigned long long)tu_tag_gen(&now),
               bad ? -1 : NFR);
        free(got);
        scp_volume_close(v, &e);
    }
    free(j);
    free(od);
    free(ot);
    free(oj);
    free(lp);
    free(sd);
    free(st);
    free(d);
}

int main(int argc, char **argv) {
    /* (argument "cut": part 3 alone; its child exits non-zero once any check has failed) */
    int only3 = argc > 1 && strcmp(argv[1], "cut") == 0;
    tmproot = tu_tmpdir("journal");
    if (!only3) {
        printf("format 4 journal walks:\n");
        part1();
        printf("on a volume:\n");
        part2(0);
        part2(1);
    }
    part3(0);
    part3(1);
    tu_rm_rf(tmproot);
    free(tmproot);
    return tu_exit_code("test_volume_journal");
}
