/* fuzz/fuzz_journal.c - scp_journal_parse against an independent reading of the format.
 *
 * Input: byte 0 = parameters, the rest = the journal file.
 *   bits 0-3: chunk size 16 << (n % 13), i.e. 16 B .. 64 KiB (the parser takes the chunk size
 *             from the authenticated volume header, so any power of two is a valid caller; small
 *             ones let short inputs hold whole records);
 *   bit 7:    repair the commit record's SHA-256 before parsing, so that mutations get past the
 *             checksum and reach the code behind it;
 *   bit 6:    make the chunk callback fail on its second call.
 * Asserts: no memory error; the parser's verdict (1 valid / 0 stale / -1 callback error) and
 * every field of its view equal those of the reference reading below; entries and every chunk
 * handed to the callback lie inside the buffer, before the commit record, in file order, and
 * the callback sees exactly nchunks records, and only for a journal that is valid. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "fuzz_util.h"
#include "journal_sum.h"
#include "volume/format.h"

#define JENTRY (8 + SCP_CHUNK_ENTRY_LEN)

struct ref {
    int verdict;
    uint64_t nchunks, new_size, nentries;
    size_t commit_off, entries_off, sum_off;
};

/* Reference reading, written from the layout in format.h. */
static void ref_parse(const uint8_t *b, size_t len, uint32_t cs, struct ref *r) {
    memset(r, 0, sizeof *r);
    if (len < SCP_JRN_HDR_LEN || memcmp(b, "SCPJRN\0\1", 8) != 0) return;
    size_t off = SCP_JRN_HDR_LEN;
    for (;;) {
        if (len - off < SCP_JREC_HDR_LEN) return; /* torn, no commit */
        uint32_t type = scp_get_u32(b + off);
        if (scp_get_u32(b + off + 4) != 0) return;
        if (type == SCP_JREC_CHUNK) {
            if ((len - off - SCP_JREC_HDR_LEN) < cs) return;
            off += SCP_JREC_HDR_LEN + cs;
            r->nchunks++;
            continue;
        }
        if (type != SCP_JREC_COMMIT) return;
        break;
    }
    r->commit_off = off;
    off += SCP_JREC_HDR_LEN;
    if (len - off < 16) return;
    r->new_size = scp_get_u64(b + off);
    r->nentries = scp_get_u64(b + off + 8);
    off += 16;
    /* nentries entries and a 32-byte sum must fit (no overflow: compare by division). */
    if (r->nentries > (len - off) / JENTRY) return;
    if ((len - off) - r->nentries * JENTRY < 32) return;
    r->entries_off = off;
    r->sum_off = off + (size_t)r->nentries * JENTRY;
    r->verdict = 2; /* structurally complete; the sum decides */
}

static int ref_sum_ok(const uint8_t *b, const struct ref *r, uint32_t cs) {
    uint8_t sum[32];
    fz_journal_sum(b, r->commit_off, r->sum_off, cs, sum);
    return memcmp(sum, b + r->sum_off, 32) == 0;
}

struct cbctx {
    const uint8_t *buf;
    size_t len, commit_off, next_off;
    uint32_t cs;
    uint64_t calls;
    int fail_second;
};

static int chunk_cb(void *ctx, uint64_t index, const uint8_t *ct) {
    struct cbctx *c = ctx;
    FUZZ_CHECK(ct >= c->buf + SCP_JRN_HDR_LEN + SCP_JREC_HDR_LEN);
    size_t off = (size_t)(ct - c->buf) - SCP_JREC_HDR_LEN; /* the record header */
    FUZZ_CHECK(off == c->next_off);                         /* records in order, none skipped */
    FUZZ_CHECK(off + SCP_JREC_HDR_LEN + c->cs <= c->commit_off);
    FUZZ_CHECK(scp_get_u32(c->buf + off) == SCP_JREC_CHUNK);
    FUZZ_CHECK(index == scp_get_u64(c->buf + off + 8));
    c->next_off = off + SCP_JREC_HDR_LEN + c->cs;
    c->calls++;
    if (c->fail_second && c->calls == 2) return -1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t p = data[0];
    uint32_t cs = 16u << ((p & 15) % 13);
    size_t len = size - 1;
    uint8_t *buf = malloc(len ? len : 1); /* exact size, so that ASan sees any overread */
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, data + 1, len);

    struct ref r;
    ref_parse(buf, len, cs, &r);
    if ((p & 0x80) && r.verdict == 2) /* repair the sum */
        fz_journal_sum(buf, r.commit_off, r.sum_off, cs, buf + r.sum_off);
    if (r.verdict == 2) {
        r.verdict = ref_sum_ok(buf, &r, cs) ? 1 : 0;
        uint64_t max_index = r.new_size / cs + 1;
        for (uint64_t i = 0; r.verdict == 1 && i < r.nentries; i++)
            if (scp_get_u64(buf + r.entries_off + i * JENTRY) >= max_index) r.verdict = 0;
    }

    /* Without a callback. */
    scp_journal_view v;
    scp_err err;
    memset(&v, 0xA5, sizeof v);
    int rc = scp_journal_parse(buf, len, cs, &v, NULL, NULL, &err);
    FUZZ_CHECK(rc == r.verdict);
    if (rc == 1) {
        FUZZ_CHECK(v.new_size == r.new_size && v.nentries == r.nentries);
        FUZZ_CHECK(v.nchunks == r.nchunks);
        FUZZ_CHECK(v.entries == buf + r.entries_off);
        FUZZ_CHECK(v.chunk_recs_off == SCP_JRN_HDR_LEN);
        FUZZ_CHECK(memcmp(v.target_root, buf + 8, SCP_HASH_LEN) == 0);
        FUZZ_CHECK(r.sum_off + 32 <= len);
    }

    /* With a callback. */
    struct cbctx c = {buf, len, r.commit_off, SCP_JRN_HDR_LEN, cs, 0, (p & 0x40) != 0};
    rc = scp_journal_parse(buf, len, cs, &v, chunk_cb, &c, &err);
    if (r.verdict != 1) {
        FUZZ_CHECK(rc == 0 && c.calls == 0); /* no chunk of a stale journal is ever handed out */
    } else if (c.fail_second && r.nchunks >= 2) {
        FUZZ_CHECK(rc == -1 && c.calls == 2);
    } else {
        FUZZ_CHECK(rc == 1 && c.calls == r.nchunks);
        FUZZ_CHECK(c.next_off == r.commit_off);
    }
    free(buf);
    return 0;
}
