/* fuzz/fuzz_journal.c - scp_journal_find and scp_journal_replay against an independent reading
 * of the journal format (format.h, "journal: file objects/<id>.j").
 *
 * Input: byte 0 = parameters, byte 1 = target, byte 2 = failing call, the rest = the journal.
 *   byte 0 bits 0-3: chunk size 16 << (n % 13), i.e. 16 B .. 64 KiB (the library takes the chunk
 *                    size from the authenticated volume header, so any power of two is a valid
 *                    caller; small ones let short inputs hold whole records);
 *          bits 4-5: callbacks of the second replay: 0 both, 1 chunk only, 2 entry only, 3 none;
 *          bit 7:    repair: before reading, encrypt every commit record's payload bytes and every
 *                    chunk record's ciphertext in place (as if they were the plaintext) under the
 *                    harness's file key (a chunk under the subkey its header's salt names, with
 *                    its header's nonce) and store the right GCM tags and chain values, so that
 *                    mutations get past the tags and the checksum and reach the code behind
 *                    them. The
 *                    repair walk is lenient (any magic, reserved field, commit index and entry
 *                    index; a record of another type read as a commit record, or with bit 6 as a
 *                    chunk record), so that a parser accepting more than format.h allows is
 *                    caught behind the checksum too.
 *   byte 1: the (root, size) looked for. With k = bits 0-4 and at least one commit that checks
 *           out: the k-th such commit (mod their number; from the end if bit 7), as is (bits
 *           5-6 = 0), with size + 1 (1), with one root byte flipped (2); otherwise (3, or no
 *           commit) a made-up target: root = 32 bytes 8k, size k.
 *   byte 2: the second replay's callbacks fail on this call (1-based; 0: never).
 * Asserts: no memory error; find's verdict and view (new_size, end, ncommits, nchunks) equal the
 * reference's; find on the journal cut just past the commit found gives the same view; when
 * the first commit that checks out ends before it, scp_journal_find_from from that commit's end
 * and chain (what a process that follows the log holds) finds that commit or a later one (a
 * follower checks no chunk record and takes each authentic commit's chain value, format.h),
 * with the same chain value if the same, and replay from there walks without a memory error;
 * scp_journal_find_from_at over a buffer of only the bytes from that point on (a follower's
 * read) gives the same view, and its replay walks that buffer without a memory error;
 * replay
 * with both callbacks hands out exactly the chunk records (pointers into the buffer, NULL for a
 * dead one) and the live decrypted commit entries (same bytes) before `end`, in file order (a
 * record is dead when its commit or a later one up to `end` leaves the file too short for its
 * index); with fewer callbacks it
 * hands out the same sequence minus the kinds left out; a failing callback stops it at once
 * with -1; scp_journal_mrecs hands out exactly as many type 3 records (within the buffer) as
 * are in the runs directly behind commit records that check out; a commit found ends behind its
 * run. Commit payloads and chunk records are decrypted here with the crypto primitives (key
 * derivation and AES-GCM), the layout is read independently. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "fuzz_util.h"
#include "volume/format.h"

/* The layout, written out from the spec (and checked against the header's constants). */
#define J_HDR 40      /* magic (8) | salt (32) */
#define J_REC 16      /* u32 type | u32 zero | u64 index (chunk) or count (commit) */
#define J_CHDR 60     /* a chunk record's header: J_REC | salt (16) | nonce (12) | tag (16) */
#define J_ENT 52      /* u64 index | salt (16) | nonce (12) | tag (16) */
#define J_COMMIT0 116 /* header | chain (32) | nonce (12) | enc(u64 size | root (32)) | GCM tag */
#define J_PT(count) (8 + (size_t)(count) * J_ENT + 32)
#define J_MREC_MAX (28 + 65536 + 16) /* a type 3 record's payload: a manifest-log record */
_Static_assert(SCP_JREC_MLOG == 3 && SCP_JMREC_MAX == J_MREC_MAX, "journal type 3 layout");
/* The file the journal belongs to (key derivation and associated data). */
static const uint8_t file_key[32] = {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                                     0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                                     0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                                     0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11};
static const uint8_t file_id[16] = {0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
                                    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22};
static const uint8_t vol_id[32] = {0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33,
                                   0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33,
                                   0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33,
                                   0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33};
_Static_assert(SCP_JRN_HDR_LEN == J_HDR && SCP_JREC_HDR_LEN == J_REC, "journal layout");
_Static_assert(SCP_JCHUNK_HDR_LEN == J_CHDR, "journal layout");
_Static_assert(SCP_JENTRY_LEN == J_ENT && SCP_JCOMMIT_LEN(0) == J_COMMIT0, "journal layout");
_Static_assert(SCP_JREC_CHUNK == 1 && SCP_JREC_COMMIT == 2, "journal record types");

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) << 32 | rd32(p + 4); }

static int noop_chunk(void *ctx, uint64_t index, const uint8_t *ct) {
    (void)ctx, (void)index, (void)ct;
    return 0;
}
static int noop_entry(void *ctx, uint64_t index, const uint8_t *e) {
    (void)ctx, (void)index, (void)e;
    return 0;
}

enum { EV_CHUNK = 1, EV_ENTRY = 2 };
struct ev {
    int kind;
    uint64_t index;
    size_t off; /* of the chunk's ciphertext, or of the entry's nonce */
};
struct commit {
    size_t end;       /* just past the record */
    uint64_t size;    /* new size */
    uint8_t root[32]; /* target root */
    size_t nev;       /* events up to and including this commit's entries */
    uint64_t nchunks; /* chunk records before it */
};
struct ref;
/* scp_journal_commits's commits against the reference's (stop: stop after this one) */
struct seen_commits {
    const struct ref *r;
    size_t n;
    int bad;
    size_t stop;
};
static int seen_commit(void *ctx, size_t off, size_t end, const uint8_t *pt, uint64_t count);
struct ref {
    struct ev *ev;
    size_t nev;
    struct commit *c;
    size_t nc;
    uint8_t **pt; /* each commit's decrypted payload: an entry event's off is into pt[commit] */
    size_t npt;
    size_t nmrec; /* manifest-log records (type 3) directly behind a commit that checks out */
};

/* The log's key and a commit record's associated data (format.h). */
static void log_key(const uint8_t *b, uint8_t key[32]) {
    FUZZ_CHECK(scp_derive_key(file_key, "scp/v2/journal", b + 8, 32, key, NULL) == 0);
}
static void commit_aad(const uint8_t *b, size_t off, uint8_t aad[72]) {
    memcpy(aad, file_id, 16);
    for (int i = 0; i < 8; i++) aad[16 + i] = (uint8_t)((uint64_t)off >> (56 - 8 * i));
    memcpy(aad + 24, b + off, J_REC + 32); /* header and stored chain value */
}
/* A chunk record's subkey (from the salt in its header) and associated data. */
static void chunk_crypto(const uint8_t *rec, uint8_t key[32], uint8_t aad[56]) {
    FUZZ_CHECK(scp_derive_key(file_key, "scp/v2/chunk", rec + J_REC, 16, key, NULL) == 0);
    memcpy(aad, vol_id, 32);
    memcpy(aad + 32, file_id, 16);
    memcpy(aad + 48, rec + 8, 8); /* the index, big-endian as stored */
}
static int chunk_ok(const uint8_t *rec, uint32_t cs) {
    uint8_t key[32], aad[56], *pt = malloc(cs);
    FUZZ_CHECK(pt != NULL);
    chunk_crypto(rec, key, aad);
    int ok = scp_aead_open(key, rec + J_REC + 16, aad, sizeof aad, rec + J_CHDR, cs,
                           rec + J_REC + 28, pt, NULL) == 0;
    free(pt);
    return ok;
}

/* The repair (see the top): a lenient walk that stores the chain value in each commit-shaped
 * record it reaches. */
static void repair(uint8_t *b, size_t len, uint32_t cs, int other_as_chunk) {
    if (len < J_HDR) return;
    uint8_t chain[32], next[32], key[32], aad[72];
    log_key(b, key);
    scp_sha256_buf(b, J_HDR, chain);
    size_t off = J_HDR;
    while (len - off >= J_REC) {
        uint32_t type = rd32(b + off);
        if (type == 1 || other_as_chunk) {
            if (len - off - J_REC < J_CHDR - J_REC + (size_t)cs) return;
            uint8_t ck[32], caad[56];
            chunk_crypto(b + off, ck, caad);
            FUZZ_CHECK(scp_aead_seal(ck, b + off + J_REC + 16, caad, sizeof caad, b + off + J_CHDR,
                                     cs, b + off + J_CHDR, b + off + J_REC + 28, NULL) == 0);
            struct scp_buf parts[2] = {{chain, 32}, {b + off, J_CHDR}};
            scp_sha256(parts, 2, next);
            memcpy(chain, next, 32);
            off += J_CHDR + (size_t)cs;
            continue;
        }
        if (type == 3) {
            uint64_t n = rd64(b + off + 8);
            if (n > J_MREC_MAX || n > len - off - J_REC) return;
            struct scp_buf parts[2] = {{chain, 32}, {b + off, J_REC}};
            scp_sha256(parts, 2, next);
            memcpy(chain, next, 32);
            off += J_REC + (size_t)n;
            continue;
        }
        if (len - off < J_COMMIT0) return;
        uint64_t count = rd64(b + off + 8);
        if (count > (len - off - J_COMMIT0) / J_ENT) return;
        size_t nonce = off + J_REC + 32, ct = nonce + 12, end = ct + J_PT(count) + 16;
        memcpy(b + off + J_REC, chain, 32);
        commit_aad(b, off, aad);
        FUZZ_CHECK(scp_aead_seal(key, b + nonce, aad, sizeof aad, b + ct, J_PT(count),
                                 b + ct, b + ct + J_PT(count), NULL) == 0);
        struct scp_buf parts[2] = {{chain, 32}, {b + off, end - off}};
        scp_sha256(parts, 2, next);
        memcpy(chain, next, 32);
        off = end;
    }
}

/* Walk the log as format.h describes it. */
static void ref_walk(const uint8_t *b, size_t len, uint32_t cs, struct ref *r) {
    r->nev = r->nc = 0;
    /* Every event takes at least 32 bytes (a chunk record) or 36 (an entry); a commit 96. */
    r->ev = malloc((len / 32 + 1) * sizeof *r->ev);
    r->c = malloc((len / J_COMMIT0 + 1) * sizeof *r->c);
    r->pt = malloc((len / J_COMMIT0 + 1) * sizeof *r->pt);
    r->npt = r->nmrec = 0;
    FUZZ_CHECK(r->ev && r->c && r->pt);
    if (len < J_HDR || memcmp(b, "SCPJRN\0\4", 8) != 0) return;
    uint8_t chain[32], key[32], aad[72];
    log_key(b, key);
    scp_sha256_buf(b, J_HDR, chain);
    uint64_t nchunks = 0;
    size_t off = J_HDR;
    int after_commit = 0;
    for (;;) {
        if (len - off < J_REC || rd32(b + off + 4) != 0) return;
        uint32_t type = rd32(b + off);
        uint64_t index = rd64(b + off + 8);
        uint8_t next[32];
        if (type == 1) {
            if (len - off - J_REC < J_CHDR - J_REC + (size_t)cs) return;
            if (!chunk_ok(b + off, cs)) return; /* its ciphertext fails its header's tag */
            struct scp_buf parts[2] = {{chain, 32}, {b + off, J_CHDR}};
            scp_sha256(parts, 2, next);
            memcpy(chain, next, 32);
            r->ev[r->nev++] = (struct ev){EV_CHUNK, index, off + J_CHDR};
            off += J_CHDR + (size_t)cs;
            nchunks++;
            after_commit = 0;
            continue;
        }
        if (type == 3) {
            /* chained and skipped; counted when in the run of type 3 records directly behind a
             * commit (a one-flush commit's, with the lazy records it carries), and that run is
             * part of the commit: the commit's end moves behind it (the next append goes there) */
            if (index > J_MREC_MAX || index > len - off - J_REC) return;
            struct scp_buf parts[2] = {{chain, 32}, {b + off, J_REC}};
            scp_sha256(parts, 2, next);
            memcpy(chain, next, 32);
            r->nmrec += after_commit;
            off += J_REC + (size_t)index;
            if (after_commit) r->c[r->nc - 1].end = off;
            continue;
        }
        if (type != 2) return;
        if (len - off < J_COMMIT0) return;
        uint64_t count = index;
        size_t room = len - off - J_COMMIT0;
        if (count > room / J_ENT) return;
        size_t nonce = off + J_REC + 32, ct = nonce + 12, rend = ct + J_PT(count) + 16;
        if (memcmp(chain, b + off + J_REC, 32) != 0) return;
        struct scp_buf parts[2] = {{chain, 32}, {b + off, rend - off}};
        scp_sha256(parts, 2, next);
        uint8_t *pt = malloc(J_PT(count));
        FUZZ_CHECK(pt != NULL);
        commit_aad(b, off, aad);
        if (scp_aead_open(key, b + nonce, aad, sizeof aad, b + ct, J_PT(count),
                          b + ct + J_PT(count), pt, NULL) != 0) {
            free(pt);
            return;
        }
        uint64_t size = rd64(pt);
        for (uint64_t i = 0; i < count; i++)
            /* index < size / cs + 1: the library's rule (format.h's layout does not say it) */
            if (rd64(pt + 8 + i * J_ENT) > size / cs) {
                free(pt);
                return;
            }
        memcpy(chain, next, 32);
        for (uint64_t i = 0; i < count; i++)
            r->ev[r->nev++] = (struct ev){EV_ENTRY, rd64(pt + 8 + i * J_ENT), r->npt};
        r->c[r->nc] = (struct commit){rend, size, {0}, r->nev, nchunks};
        memcpy(r->c[r->nc++].root, pt + J_PT(count) - 32, 32);
        r->pt[r->npt++] = pt;
        /* an entry event's off: commit number in the high bits, entry offset in pt below */
        for (uint64_t i = 0; i < count; i++)
            r->ev[r->nev - count + i].off = (r->npt - 1) << 32 | (size_t)(8 + i * J_ENT + 8);
        off = rend;
        after_commit = 1;
    }
}

/* format.h's dead records: event i, of a replay that ends at commit `last`, is handed out only
 * if its index is below the chunk count that its own commit and every later one up to `last`
 * leave (a truncate between kills it). The event's commit: the first whose events include it. */
static int ev_live(const struct ref *r, size_t i, size_t last, uint32_t cs) {
    size_t k = 0;
    while (r->c[k].nev <= i) k++;
    for (; k <= last; k++)
        if (r->ev[i].index >= r->c[k].size / cs + (r->c[k].size % cs != 0)) return 0;
    return 1;
}

struct cbctx {
    const uint8_t *buf;
    size_t end;
    uint32_t cs;
    const struct ref *r;
    size_t last;  /* the commit the replay ends at */
    size_t limit; /* events before end */
    size_t pos;   /* next expected event */
    int mask;     /* kinds handed out */
    unsigned calls, fail_at;
};

static int expect(struct cbctx *c, int kind, uint64_t index, const uint8_t *p, size_t plen) {
    /* (a dead entry is not handed out; a dead chunk record is, with no ciphertext) */
    while (c->pos < c->limit &&
           (!(c->r->ev[c->pos].kind & c->mask) ||
            (c->r->ev[c->pos].kind == EV_ENTRY && !ev_live(c->r, c->pos, c->last, c->cs))))
        c->pos++;
    FUZZ_CHECK(c->pos < c->limit); /* nothing beyond the commit found */
    size_t at = c->pos++;
    const struct ev *e = &c->r->ev[at];
    FUZZ_CHECK(e->kind == kind && e->index == index);
    if (kind == EV_CHUNK && !ev_live(c->r, at, c->last, c->cs)) {
        FUZZ_CHECK(p == NULL);
    } else if (kind == EV_CHUNK) {
        FUZZ_CHECK(p == c->buf + e->off); /* in file order, none skipped, none invented */
        FUZZ_CHECK(e->off + plen <= c->end);
    } else { /* the same bytes as the reference's decryption */
        FUZZ_CHECK(memcmp(p, c->r->pt[e->off >> 32] + (e->off & 0xffffffffu), plen) == 0);
    }
    c->calls++;
    return c->fail_at && c->calls == c->fail_at ? -1 : 0;
}

static int chunk_cb(void *ctx, uint64_t index, const uint8_t *ct) {
    struct cbctx *c = ctx;
    FUZZ_CHECK(c->mask & EV_CHUNK);
    return expect(c, EV_CHUNK, index, ct, c->cs);
}

static int entry_cb(void *ctx, uint64_t index, const uint8_t *ent) {
    struct cbctx *c = ctx;
    FUZZ_CHECK(c->mask & EV_ENTRY);
    return expect(c, EV_ENTRY, index, ent, SCP_CHUNK_ENTRY_LEN);
}

static void replay_k(const uint8_t *buf, const scp_journal_view *v, uint32_t cs,
                     const struct ref *r, size_t last, int mask, unsigned fail_at,
                     scp_journal_kept *kept) {
    size_t limit = r->c[last].nev;
    struct cbctx c = {buf, v->end, cs, r, last, limit, 0, mask, 0, fail_at};
    size_t handed = 0; /* events the walk should hand out */
    for (size_t i = 0; i < limit; i++)
        handed += (r->ev[i].kind & mask) != 0 && (r->ev[i].kind == EV_CHUNK || ev_live(r, i, last, cs));
    int rc = scp_journal_replay_kept(buf, v, kept, 0, cs, file_id, (mask & EV_CHUNK) ? chunk_cb : NULL,
                                     (mask & EV_ENTRY) ? entry_cb : NULL, &c, NULL);
    if (fail_at && fail_at <= handed) {
        FUZZ_CHECK(rc == -1 && c.calls == fail_at); /* stopped at once */
    } else {
        FUZZ_CHECK(rc == 0 && c.calls == handed);
    }
}

static void replay(const uint8_t *buf, const scp_journal_view *v, uint32_t cs, const struct ref *r,
                   size_t last, int mask, unsigned fail_at) {
    replay_k(buf, v, cs, r, last, mask, fail_at, NULL);
}

struct mrecs {
    const uint8_t *buf;
    size_t len, n;
};
static void count_mrec(void *ctx, const uint8_t *rec, size_t len, const uint8_t *root,
                      uint64_t size) {
    (void)root, (void)size;
    struct mrecs *m = ctx;
    FUZZ_CHECK(rec >= m->buf && len <= m->len && (size_t)(rec - m->buf) <= m->len - len);
    m->n++;
}

static int seen_commit(void *ctx, size_t off, size_t end, const uint8_t *pt, uint64_t count) {
    struct seen_commits *sc = ctx;
    const struct ref *r = sc->r;
    if (sc->n >= r->nc) {
        sc->bad = 1;
        return 1;
    }
    const struct commit *c = &r->c[sc->n];
    /* (the reference's end is past the run of type 3 records behind the commit, as a view's
     * is; the walk reports the commit record's own end) */
    if (off >= end || end > c->end || (sc->n > 0 && off < r->c[sc->n - 1].end) ||
        scp_get_u64(pt) != c->size ||
        memcmp(pt + SCP_JCOMMIT_PT_LEN(count) - 32, c->root, 32) != 0)
        sc->bad = 1;
    return sc->n++ == sc->stop;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    uint8_t p = data[0], sel = data[1];
    unsigned fail_at = data[2];
    uint32_t cs = 16u << ((p & 15) % 13);
    size_t len = size - 3;
    uint8_t *buf = malloc(len ? len : 1); /* exact size, so that ASan sees any overread */
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, data + 3, len);

    struct ref r;
    if (p & 0x80) repair(buf, len, cs, (p & 0x40) != 0);
    ref_walk(buf, len, cs, &r);

    /* The target. */
    uint8_t root[32];
    uint64_t tsize;
    unsigned k = sel & 31, mode = (sel >> 5) & 3;
    if (r.nc > 0 && mode != 3) {
        const struct commit *c = &r.c[(sel & 0x80) ? r.nc - 1 - k % r.nc : k % r.nc];
        memcpy(root, c->root, 32);
        tsize = c->size;
        if (mode == 1) tsize++;
        if (mode == 2) root[k] ^= 1;
    } else {
        memset(root, (int)(8 * k), sizeof root);
        tsize = k;
    }
    /* The reference's answer: the last commit that checks out and names them. */
    long want = -1;
    for (size_t i = 0; i < r.nc; i++)
        if (r.c[i].size == tsize && memcmp(r.c[i].root, root, 32) == 0) want = (long)i;

    scp_journal_view v;
    memset(&v, 0xA5, sizeof v);
    int rc = scp_journal_find(buf, len, cs, vol_id, file_key, file_id, root, tsize, &v);
    FUZZ_CHECK(rc == (want >= 0));
    if (rc == 1) {
        const struct commit *c = &r.c[want];
        FUZZ_CHECK(v.new_size == c->size && v.end == c->end);
        FUZZ_CHECK(v.ncommits == (uint64_t)want + 1 && v.nchunks == c->nchunks);
        FUZZ_CHECK(v.end <= len);

        /* Everything after the commit found is irrelevant: cut it off. */
        uint8_t *cut = malloc(v.end);
        FUZZ_CHECK(cut != NULL);
        memcpy(cut, buf, v.end);
        scp_journal_view w;
        memset(&w, 0x5A, sizeof w);
        FUZZ_CHECK(scp_journal_find(cut, v.end, cs, vol_id, file_key, file_id, root, tsize, &w) == 1);
        FUZZ_CHECK(w.new_size == v.new_size && w.end == v.end && w.ncommits == v.ncommits &&
                   w.nchunks == v.nchunks);
        /* A live load's walk (no chunk ciphertext checked) finds the same commit there, with
         * the same chain: every chunk record before it checked out. */
        memset(&w, 0x5A, sizeof w);
        FUZZ_CHECK(scp_journal_find_live(cut, v.end, cs, file_key, file_id, root, tsize, &w) == 1);
        FUZZ_CHECK(w.new_size == v.new_size && w.end == v.end && w.ncommits == v.ncommits &&
                   w.nchunks == v.nchunks && memcmp(w.chain, v.chain, SCP_HASH_LEN) == 0);
        /* The same walk keeping the commit payloads it opened (branch pg18): the same commit,
         * one kept payload per commit record, and the replay from them hands out the same
         * events as the reference's decryption without opening any record again. */
        scp_journal_kept kp;
        memset(&kp, 0, sizeof kp);
        memset(&w, 0x5A, sizeof w);
        FUZZ_CHECK(scp_journal_find_live_kept(cut, v.end, cs, file_key, file_id, root, tsize, &w,
                                              &kp) == 1);
        FUZZ_CHECK(w.end == v.end && w.ncommits == v.ncommits && kp.n == w.ncommits);
        replay_k(cut, &w, cs, &r, (size_t)want, EV_CHUNK | EV_ENTRY, 0, &kp);
        FUZZ_CHECK(kp.opens == 0);
        scp_journal_kept_free(&kp);
        /* Past mode (lazy publication step 3) on the journal cut after the commit found:
         * nothing is past it, so the same commit, named where it ends */
        memset(&w, 0x5A, sizeof w);
        FUZZ_CHECK(scp_journal_follow_live_kept(cut, v.end, cs, file_key, file_id, root, tsize, 1,
                                                &w, NULL) == 1);
        FUZZ_CHECK(w.end == v.end && w.new_size == tsize && memcmp(w.root, root, 32) == 0 &&
                   w.start <= w.named_end && w.named_end <= w.end);
        free(cut);
        /* and on the whole journal: the named commit or one after it, at most as far as a walk
         * that checks no chunk ciphertext goes; a commit the reference found there names what
         * the view says; replayed in two parts at named_end (file_follow_to) without a memory
         * error or a second opening of a kept payload */
        memset(&kp, 0, sizeof kp);
        memset(&w, 0x5A, sizeof w);
        FUZZ_CHECK(scp_journal_follow_live_kept(buf, len, cs, file_key, file_id, root, tsize, 1,
                                                &w, &kp) == 1);
        FUZZ_CHECK(w.end >= v.end && w.named_end >= w.start &&
                   w.named_end <= w.end && w.end <= len);
        for (size_t i = 0; i < r.nc; i++)
            if (r.c[i].end == w.end)
                FUZZ_CHECK(r.c[i].size == w.new_size && memcmp(r.c[i].root, w.root, 32) == 0);
        {
            scp_err e;
            scp_journal_view ja = w, jb = w;
            ja.end = w.named_end;
            jb.start = w.named_end;
            /* scp_journal_kept_from's contract: the payloads of records at named_end or
             * after, the ones before it left to kp, a view that opened nothing yet */
            kp.opens = 7;
            scp_journal_kept kb = scp_journal_kept_from(&kp, w.named_end);
            size_t kk = kp.n - kb.n;
            FUZZ_CHECK(kb.n <= kp.n && kb.opens == 0 && kp.opens == 7);
            for (size_t i = 0; i < kp.n; i++)
                FUZZ_CHECK(i < kk ? kp.off[i] < w.named_end
                                  : kb.pt[i - kk] == kp.pt[i] && kb.off[i - kk] == kp.off[i] &&
                                        kb.count[i - kk] == kp.count[i] && kp.off[i] >= w.named_end);
            kp.opens = 0;
            FUZZ_CHECK(scp_journal_replay_kept(buf, &ja, &kp, w.end, cs, file_id, noop_chunk,
                                               noop_entry, NULL, &e) == 0);
            FUZZ_CHECK(scp_journal_replay_kept(buf, &jb, &kb, 0, cs, file_id, noop_chunk,
                                               noop_entry, NULL, &e) == 0);
            FUZZ_CHECK(kp.opens == 0 && kb.opens == 0);
        }
        scp_journal_kept_free(&kp);

        /* Following from the first commit that checks out, as shared mode does. */
        scp_journal_view u, x;
        if (r.nc > 0 &&
            scp_journal_find(buf, len, cs, vol_id, file_key, file_id, r.c[0].root, r.c[0].size,
                             &u) == 1 &&
            u.end < v.end) {
            FUZZ_CHECK(scp_journal_find_from(buf, len, u.end, cs, u.key, u.chain, file_id, root,
                                             tsize, &x) == 1);
            FUZZ_CHECK(x.end >= v.end && x.new_size == v.new_size && x.start == u.end &&
                       (x.end != v.end || memcmp(x.chain, v.chain, sizeof x.chain) == 0));
            scp_err e;
            FUZZ_CHECK(scp_journal_replay(buf, &x, cs, file_id, noop_chunk, noop_entry, NULL, &e) == 0);
            /* The same follow over a buffer that holds only the bytes from u.end on (exact
             * size: ASan sees a read before or past them), as a follower reads them: the same
             * answer, and its replay hands out the same events. */
            size_t tl = len - u.end;
            uint8_t *tail = malloc(tl ? tl : 1);
            FUZZ_CHECK(tail != NULL);
            memcpy(tail, buf + u.end, tl);
            scp_journal_view y;
            memset(&y, 0x3C, sizeof y);
            FUZZ_CHECK(scp_journal_find_from_at(tail, u.end, len, u.end, cs, u.key, u.chain,
                                                file_id, root, tsize, &y) == 1);
            FUZZ_CHECK(y.end == x.end && y.new_size == x.new_size && y.start == x.start &&
                       y.ncommits == x.ncommits && y.nchunks == x.nchunks && y.base == u.end &&
                       memcmp(y.chain, x.chain, sizeof y.chain) == 0);
            FUZZ_CHECK(scp_journal_replay(tail, &y, cs, file_id, noop_chunk, noop_entry, NULL, &e) == 0);
            /* and keeping the payloads: every commit record up to the one found was kept */
            scp_journal_kept k2;
            memset(&k2, 0, sizeof k2);
            memset(&y, 0x3C, sizeof y);
            FUZZ_CHECK(scp_journal_find_from_at_kept(tail, u.end, len, u.end, cs, u.key, u.chain,
                                                     file_id, root, tsize, &y, &k2) == 1);
            FUZZ_CHECK(y.end == x.end && k2.n >= y.ncommits);
            FUZZ_CHECK(scp_journal_replay_kept(tail, &y, &k2, 0, cs, file_id, noop_chunk, noop_entry,
                                               NULL, &e) == 0 &&
                       k2.opens == 0);
            scp_journal_kept_free(&k2);
            free(tail);
        }

        replay(buf, &v, cs, &r, (size_t)want, EV_CHUNK | EV_ENTRY, 0);
        static const int masks[4] = {EV_CHUNK | EV_ENTRY, EV_CHUNK, EV_ENTRY, 0};
        replay(buf, &v, cs, &r, (size_t)want, masks[(p >> 4) & 3], fail_at);
    }
    /* The manifest-log records that an open may take from this journal: the same number. */
    struct mrecs m = {buf, len, 0};
    scp_journal_mrecs(buf, len, cs, vol_id, file_key, file_id, count_mrec, &m);
    FUZZ_CHECK(m.n == r.nmrec);
    /* The open's settle walk (scp_journal_commits): exactly the reference's commits that check
     * out, in order, with their ends, sizes and roots; and one that stops after the k-th sees
     * no more (the settle ends at a commit whose in-place chunks are missing). */
    struct seen_commits sc = {&r, 0, 0, SIZE_MAX};
    scp_journal_commits(buf, len, cs, vol_id, file_key, file_id, NULL, seen_commit, &sc);
    FUZZ_CHECK(!sc.bad && sc.n == r.nc);
    if (r.nc > 0) {
        struct seen_commits st = {&r, 0, 0, k % r.nc};
        scp_journal_commits(buf, len, cs, vol_id, file_key, file_id, NULL, seen_commit, &st);
        FUZZ_CHECK(!st.bad && st.n == k % r.nc + 1);
    }
    for (size_t i = 0; i < r.npt; i++) free(r.pt[i]);
    free(r.pt);
    free(r.ev);
    free(r.c);
    free(buf);
    return 0;
}
