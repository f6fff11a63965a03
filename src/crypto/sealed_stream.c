/* crypto/sealed_stream.c - sealed record streams (format and guarantees: scp/sealed_stream.h). */
#include "scp/sealed_stream.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/bytes.h"
#include "common/util.h"
#include "crypto/crypto.h"

static const char MAGIC[4] = {'S', 'C', 'R', '1'};
#define HDR_BODY_MAX (1u + 1u + SCP_SS_ID_LEN + 8u + 3u * 256u)
#define END_BODY_LEN (1u + SCP_SS_ID_LEN)
#define MAX_MISSING 4096u /* per stream: gaps beyond this are counted, not tracked */

int scp_ss_service_key(const uint8_t session_key[SCP_SS_KEY_LEN], const char *service,
                       uint8_t out[SCP_SS_KEY_LEN], scp_err *err) {
    uint8_t h[SCP_SHA256_LEN];
    scp_sha256_buf(service, strlen(service), h);
    return scp_derive_key(session_key, "scp console service v1", h, sizeof h, out, err);
}

static int stream_key(const uint8_t service_key[SCP_SS_KEY_LEN], const uint8_t id[SCP_SS_ID_LEN],
                      uint8_t out[SCP_SS_KEY_LEN], scp_err *err) {
    return scp_derive_key(service_key, "scp sealed stream v1", id, SCP_SS_ID_LEN, out, err);
}

static void nonce_of(uint64_t seq, uint8_t nonce[SCP_AEAD_NONCE_LEN]) {
    memset(nonce, 0, 4);
    scp_put_u64(nonce + 4, seq);
}

static void put_head(uint8_t *p, int type, const uint8_t id[SCP_SS_ID_LEN], uint64_t seq, int64_t t,
                     uint32_t len) {
    memcpy(p, MAGIC, 4);
    p[4] = (uint8_t)type;
    memcpy(p + 5, id, SCP_SS_ID_LEN);
    scp_put_u64(p + 21, seq);
    scp_put_u64(p + 29, (uint64_t)t);
    scp_put_u32(p + 37, len);
}

/* ---- writing ------------------------------------------------------------------------------ */

static int copy_name(char *dst, size_t cap, const char *src, const char *what, scp_err *err) {
    size_t n = src ? strlen(src) : 0;
    if (n >= cap) return scp_fail(err, SCP_E_INVAL, EINVAL, "sealed stream: the %s is too long", what);
    memcpy(dst, src ? src : "", n + 1);
    return 0;
}

int scp_ss_writer_start(scp_ss_writer *w, const uint8_t service_key[SCP_SS_KEY_LEN], int kind,
                        const char *name, const char *session, const char *service, int relation,
                        const uint8_t *parent_id, uint64_t parent_seq, const uint8_t *id,
                        scp_err *err) {
    memset(w, 0, sizeof *w);
    if (kind < SCP_SS_STDIN || kind > SCP_SS_OTHER || relation < SCP_SS_ROOT || relation > SCP_SS_EXEC)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "sealed stream: bad kind or relation");
    if (copy_name(w->name, sizeof w->name, name, "stream name", err) ||
        copy_name(w->session, sizeof w->session, session, "session name", err) ||
        copy_name(w->service, sizeof w->service, service, "service name", err))
        return -1;
    memcpy(w->service_key, service_key, SCP_SS_KEY_LEN);
    w->kind = (uint8_t)kind;
    w->relation = (uint8_t)relation;
    if (parent_id) memcpy(w->parent_id, parent_id, SCP_SS_ID_LEN);
    w->parent_seq = parent_seq;
    if (id) memcpy(w->id, id, SCP_SS_ID_LEN);
    else if (scp_random(w->id, SCP_SS_ID_LEN, err) < 0) return -1;
    return stream_key(w->service_key, w->id, w->key, err);
}

int scp_ss_writer_restart(scp_ss_writer *w, int relation, const uint8_t *id, scp_err *err) {
    uint8_t parent[SCP_SS_ID_LEN];
    memcpy(parent, w->id, sizeof parent);
    uint64_t pseq = w->seq;
    w->seq = 0;
    w->ended = 0;
    w->relation = (uint8_t)relation;
    memcpy(w->parent_id, parent, sizeof parent);
    w->parent_seq = pseq;
    if (id) memcpy(w->id, id, SCP_SS_ID_LEN);
    else if (scp_random(w->id, SCP_SS_ID_LEN, err) < 0) return -1;
    return stream_key(w->service_key, w->id, w->key, err);
}

size_t scp_ss_header_size(const scp_ss_writer *w) {
    return SCP_SS_OVERHEAD + 2 + SCP_SS_ID_LEN + 8 + 3 + strlen(w->name) + strlen(w->session) +
           strlen(w->service);
}

static ssize_t seal_frame(scp_ss_writer *w, int type, const void *pt, size_t n, int64_t t, uint8_t *out,
                          size_t cap, scp_err *err) {
    if (w->ended) return scp_fail(err, SCP_E_INVAL, EPIPE, "sealed stream: the stream has ended");
    if (cap < n + SCP_SS_OVERHEAD) return scp_fail(err, SCP_E_INVAL, EINVAL, "sealed stream: buffer too small");
    uint8_t nonce[SCP_AEAD_NONCE_LEN];
    nonce_of(w->seq, nonce);
    put_head(out, type, w->id, w->seq, t, (uint32_t)n);
    /* in place or from elsewhere: the plaintext goes where the ciphertext will be */
    if (n && pt != out + SCP_SS_HEAD_LEN) memmove(out + SCP_SS_HEAD_LEN, pt, n);
    if (scp_aead_seal(w->key, nonce, out, SCP_SS_HEAD_LEN, out + SCP_SS_HEAD_LEN, n, out + SCP_SS_HEAD_LEN,
                      out + SCP_SS_HEAD_LEN + n, err) < 0)
        return -1;
    w->seq++;
    return (ssize_t)(n + SCP_SS_OVERHEAD);
}

ssize_t scp_ss_seal_header(scp_ss_writer *w, int64_t time_ns, uint8_t *out, size_t cap, scp_err *err) {
    if (w->seq != 0) return scp_fail(err, SCP_E_INVAL, EINVAL, "sealed stream: the header was written");
    uint8_t body[HDR_BODY_MAX];
    size_t o = 0;
    body[o++] = w->kind;
    body[o++] = w->relation;
    memcpy(body + o, w->parent_id, SCP_SS_ID_LEN);
    o += SCP_SS_ID_LEN;
    scp_put_u64(body + o, w->parent_seq);
    o += 8;
    const char *s[3] = {w->name, w->session, w->service};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(s[i]);
        assert(l < 256);
        body[o++] = (uint8_t)l;
        memcpy(body + o, s[i], l);
        o += l;
    }
    assert(o + SCP_SS_OVERHEAD == scp_ss_header_size(w));
    return seal_frame(w, SCP_SS_T_HEADER, body, o, time_ns, out, cap, err);
}

ssize_t scp_ss_seal_data(scp_ss_writer *w, const void *pt, size_t n, int64_t time_ns, uint8_t *out,
                         size_t cap, scp_err *err) {
    if (n == 0 || n > SCP_SS_MAX_DATA)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "sealed stream: a data record holds 1 to %u bytes",
                        SCP_SS_MAX_DATA);
    if (w->seq == 0) return scp_fail(err, SCP_E_INVAL, EINVAL, "sealed stream: the header comes first");
    return seal_frame(w, SCP_SS_T_DATA, pt, n, time_ns, out, cap, err);
}

ssize_t scp_ss_seal_end(scp_ss_writer *w, int reason, const uint8_t *next_id, int64_t time_ns,
                        uint8_t *out, size_t cap, scp_err *err) {
    if (w->seq == 0) return scp_fail(err, SCP_E_INVAL, EINVAL, "sealed stream: the header comes first");
    uint8_t body[END_BODY_LEN] = {0};
    body[0] = (uint8_t)reason;
    if (next_id) memcpy(body + 1, next_id, SCP_SS_ID_LEN);
    ssize_t r = seal_frame(w, SCP_SS_T_END, body, sizeof body, time_ns, out, cap, err);
    if (r >= 0) w->ended = 1;
    return r;
}

/* ---- reading ------------------------------------------------------------------------------ */

struct stream {
    scp_ss_stream_info info;
    uint8_t key[SCP_SS_KEY_LEN];
    uint64_t next; /* one past the highest sequence number seen */
    int ended, foreign;
    uint64_t end_seq;
    int end_reason;
    uint8_t next_id[SCP_SS_ID_LEN];
    uint64_t *missing; /* sequence numbers below next not seen yet */
    size_t nmissing;
};

struct scp_ss_reader {
    uint8_t service_key[SCP_SS_KEY_LEN];
    char session[65], service[65];
    int check_session, check_service, kind;
    struct stream **s;
    size_t ns;
    uint8_t *buf; /* one frame being assembled */
    size_t have;
    uint64_t off; /* input offset of buf[0] */
    uint8_t *pt;
    uint64_t problems[8], records;
    int stopped;
    /* the input's form, decided by its first five bytes (see the header's "Line form") */
    enum { FORM_UNKNOWN = 0, FORM_BINARY, FORM_LINES } form;
    char *line;        /* FORM_LINES: the line being assembled (at most LINE_CAP bytes kept) */
    size_t line_len;
    int line_long;     /* the line had more than LINE_CAP bytes: the rest was dropped */
    uint64_t in_off;   /* FORM_LINES: input bytes consumed */
    uint64_t unsealed; /* lines that were not records */
};

/* The longest record line without its newline; a longer line is not a record. */
#define LINE_CAP (SCP_SS_MAX_LINE - 1u)

scp_ss_reader *scp_ss_reader_new(const uint8_t service_key[SCP_SS_KEY_LEN], const char *session,
                                 const char *service, scp_err *err) {
    scp_ss_reader *r = calloc(1, sizeof *r);
    if (r) {
        r->buf = malloc(SCP_SS_MAX_FRAME);
        r->pt = malloc(SCP_SS_MAX_DATA);
    }
    if (!r || !r->buf || !r->pt) {
        scp_ss_reader_free(r);
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    memcpy(r->service_key, service_key, SCP_SS_KEY_LEN);
    r->kind = -1;
    if (session && copy_name(r->session, sizeof r->session, session, "session name", err) == 0) r->check_session = 1;
    if (service && copy_name(r->service, sizeof r->service, service, "service name", err) == 0) r->check_service = 1;
    if ((session && !r->check_session) || (service && !r->check_service)) {
        scp_ss_reader_free(r);
        return NULL;
    }
    return r;
}

void scp_ss_reader_expect_kind(scp_ss_reader *r, int kind) { r->kind = kind; }

void scp_ss_reader_free(scp_ss_reader *r) {
    if (!r) return;
    for (size_t i = 0; i < r->ns; i++) {
        free(r->s[i]->missing);
        scp_wipe(r->s[i], sizeof *r->s[i]);
        free(r->s[i]);
    }
    free(r->s);
    if (r->pt) scp_wipe(r->pt, SCP_SS_MAX_DATA);
    free(r->pt);
    free(r->buf);
    free(r->line);
    scp_wipe(r->service_key, sizeof r->service_key);
    free(r);
}

uint64_t scp_ss_reader_problems(const scp_ss_reader *r, int problem) {
    return problem > 0 && problem < 8 ? r->problems[problem] : 0;
}
uint64_t scp_ss_reader_records(const scp_ss_reader *r) { return r->records; }
uint64_t scp_ss_reader_unsealed(const scp_ss_reader *r) { return r->unsealed; }

int scp_ss_reader_clean(const scp_ss_reader *r) {
    for (int i = 1; i < 8; i++)
        if (r->problems[i]) return 0;
    for (size_t i = 0; i < r->ns; i++)
        if (!r->s[i]->ended || r->s[i]->nmissing) return 0;
    return r->have == 0 && r->line_len == 0;
}

static void short_id(const uint8_t id[SCP_SS_ID_LEN], char out[9]) { scp_hex(id, 4, out); }

static int emit(scp_ss_reader *r, scp_ss_event *ev) {
    if (r->stopped) return -1;
    ev->offset = r->off;
    if (ev->type == SCP_SS_EV_PROBLEM && ev->problem > 0 && ev->problem < 8) r->problems[ev->problem] += ev->count;
    return 0;
}

static int problem(scp_ss_reader *r, scp_ss_event_fn fn, void *arg, struct stream *st, int kind, uint64_t seq,
                   uint64_t count, const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static int problem(scp_ss_reader *r, scp_ss_event_fn fn, void *arg, struct stream *st, int kind, uint64_t seq,
                   uint64_t count, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    scp_ss_event ev = {.type = SCP_SS_EV_PROBLEM, .stream = st ? &st->info : NULL, .seq = seq, .problem = kind,
                       .count = count, .msg = msg};
    if (emit(r, &ev) < 0) return -1;
    if (fn && fn(arg, &ev)) r->stopped = 1;
    return 0;
}

/* "stdout stream 1a2b3c4d" for messages */
static const char *label(const struct stream *st, char *buf, size_t n) {
    char id[9];
    short_id(st->info.id, id);
    snprintf(buf, n, "%.40s stream %s", st->info.have_header ? st->info.name : "(header missing)", id);
    return buf;
}

static struct stream *find(scp_ss_reader *r, const uint8_t id[SCP_SS_ID_LEN]) {
    for (size_t i = r->ns; i-- > 0;)
        if (!memcmp(r->s[i]->info.id, id, SCP_SS_ID_LEN)) return r->s[i];
    return NULL;
}

static int missing_take(struct stream *st, uint64_t seq) {
    for (size_t i = 0; i < st->nmissing; i++)
        if (st->missing[i] == seq) {
            st->missing[i] = st->missing[--st->nmissing];
            return 1;
        }
    return 0;
}

static void missing_add(struct stream *st, uint64_t from, uint64_t to) {
    if (!st->missing) st->missing = malloc(MAX_MISSING * sizeof *st->missing);
    for (uint64_t s = from; s < to && st->missing && st->nmissing < MAX_MISSING; s++) st->missing[st->nmissing++] = s;
}

static int parse_header(scp_ss_reader *r, struct stream *st, const uint8_t *b, size_t n) {
    if (n < 2 + SCP_SS_ID_LEN + 8 + 3) return -1;
    scp_ss_stream_info *in = &st->info;
    in->kind = b[0];
    in->relation = b[1];
    memcpy(in->parent_id, b + 2, SCP_SS_ID_LEN);
    in->parent_seq = scp_get_u64(b + 2 + SCP_SS_ID_LEN);
    size_t o = 2 + SCP_SS_ID_LEN + 8;
    char s[3][256];
    for (int i = 0; i < 3; i++) {
        if (o >= n || o + 1 + b[o] > n) return -1;
        memcpy(s[i], b + o + 1, b[o]);
        s[i][b[o]] = 0;
        if (memchr(s[i], 0, b[o])) return -1;
        o += 1 + (size_t)b[o];
    }
    if (o != n || in->kind > SCP_SS_OTHER || in->relation > SCP_SS_EXEC) return -1;
    memcpy(in->name, s[0], sizeof in->name);
    in->have_header = 1;
    st->foreign = (r->check_session && strcmp(s[1], r->session) != 0) || (r->check_service && strcmp(s[2], r->service) != 0) ||
                  (r->kind >= 0 && in->kind != r->kind);
    return 0;
}

/* One complete frame in r->buf. */
static int frame(scp_ss_reader *r, scp_ss_event_fn fn, void *arg, scp_err *err) {
    const uint8_t *h = r->buf;
    int type = h[4];
    uint64_t seq = scp_get_u64(h + 21);
    int64_t t = (int64_t)scp_get_u64(h + 29);
    size_t n = scp_get_u32(h + 37);
    char lb[64], id8[9];
    short_id(h + 5, id8);
    struct stream *st = find(r, h + 5), fresh;
    const uint8_t *key = st ? st->key : NULL;
    if (!st) {
        memset(&fresh, 0, sizeof fresh);
        if (stream_key(r->service_key, h + 5, fresh.key, err) < 0) return -1;
        key = fresh.key;
    }
    uint8_t nonce[SCP_AEAD_NONCE_LEN];
    nonce_of(seq, nonce);
    if (scp_aead_open(key, nonce, h, SCP_SS_HEAD_LEN, h + SCP_SS_HEAD_LEN, n, h + SCP_SS_HEAD_LEN + n, r->pt, NULL) <
        0) {
        if (!st) scp_wipe(fresh.key, sizeof fresh.key);
        return problem(r, fn, arg, st, SCP_SS_FORGED, seq, 1,
                       "a record (stream %s, seq %llu) does not authenticate: it was changed, or it is not of this "
                       "service (wrong key)",
                       id8, (unsigned long long)seq);
    }
    r->records++;
    if (!st) {
        if (r->ns >= SCP_SS_MAX_STREAMS)
            return scp_fail(err, SCP_E_INVAL, EINVAL, "more than %u streams in one input", SCP_SS_MAX_STREAMS);
        st = calloc(1, sizeof *st);
        struct stream **ns = st ? realloc(r->s, (r->ns + 1) * sizeof *ns) : NULL;
        if (!ns) {
            free(st);
            return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        }
        r->s = ns;
        r->s[r->ns++] = st;
        memcpy(st->key, fresh.key, sizeof st->key);
        scp_wipe(fresh.key, sizeof fresh.key);
        memcpy(st->info.id, h + 5, SCP_SS_ID_LEN);
    }
    if ((type == SCP_SS_T_HEADER) != (seq == 0) || (type == SCP_SS_T_END && n != END_BODY_LEN) ||
        (type == SCP_SS_T_HEADER && parse_header(r, st, r->pt, n) < 0))
        return problem(r, fn, arg, st, SCP_SS_FORGED, seq, 1,
                       "%s: an authentic record (seq %llu) is malformed; the writer is broken",
                       label(st, lb, sizeof lb), (unsigned long long)seq);
    if (type == SCP_SS_T_HEADER && st->foreign)
        return problem(r, fn, arg, st, SCP_SS_FOREIGN, seq, 1,
                       "%s belongs to another session, service or direction than expected; its records are ignored",
                       label(st, lb, sizeof lb));
    if (st->ended && seq > st->end_seq)
        return problem(r, fn, arg, st, SCP_SS_AFTER_END, seq, 1, "%s: record %llu comes after its end record %llu",
                       label(st, lb, sizeof lb), (unsigned long long)seq, (unsigned long long)st->end_seq);
    if (seq + 1 < seq) return problem(r, fn, arg, st, SCP_SS_FORGED, seq, 1, "sequence number overflow");
    if (seq > st->next) {
        uint64_t gap = seq - st->next;
        if (problem(r, fn, arg, st, SCP_SS_DROPPED, seq, gap, "%s: %llu record(s) from %llu missing (dropped) before record %llu",
                    label(st, lb, sizeof lb), (unsigned long long)gap, (unsigned long long)st->next,
                    (unsigned long long)seq) < 0)
            return -1;
        missing_add(st, st->next, seq);
        st->next = seq + 1;
    } else if (seq < st->next) {
        if (!missing_take(st, seq))
            return problem(r, fn, arg, st, SCP_SS_REPLAYED, seq, 1, "%s: record %llu was seen before (replayed)",
                           label(st, lb, sizeof lb), (unsigned long long)seq);
        r->problems[SCP_SS_DROPPED]--; /* it was counted as missing */
        if (problem(r, fn, arg, st, SCP_SS_REORDERED, seq, 1,
                    "%s: record %llu arrived after later records (reordered); its bytes follow here",
                    label(st, lb, sizeof lb), (unsigned long long)seq) < 0)
            return -1;
    } else {
        st->next = seq + 1;
    }
    if (st->foreign) return 0;
    scp_ss_event ev = {.stream = &st->info, .seq = seq, .time_ns = t};
    if (type == SCP_SS_T_DATA) {
        ev.type = SCP_SS_EV_DATA;
        ev.data = r->pt;
        ev.len = n;
    } else if (type == SCP_SS_T_END) {
        st->ended = 1;
        st->end_seq = seq;
        st->end_reason = r->pt[0];
        memcpy(st->next_id, r->pt + 1, SCP_SS_ID_LEN);
        if (seq + 1 < st->next) {
            /* records numbered after this end were seen already */
            uint64_t k = st->next - seq - 1;
            st->next = seq + 1;
            if (problem(r, fn, arg, st, SCP_SS_AFTER_END, seq, k, "%s: %llu record(s) numbered after its end record",
                        label(st, lb, sizeof lb), (unsigned long long)k) < 0)
                return -1;
        }
        ev.type = SCP_SS_EV_END;
    } else {
        return 0;
    }
    if (emit(r, &ev) < 0) return -1;
    if (fn && fn(arg, &ev)) r->stopped = 1;
    return 0;
}

static int stopped(scp_err *err) { return scp_fail(err, SCP_E_INVAL, ECANCELED, "stopped by the caller"); }

static int binary_feed(scp_ss_reader *r, const uint8_t *p, size_t n, scp_ss_event_fn fn, void *arg, scp_err *err) {
    while (n) {
        if (r->stopped) return stopped(err);
        size_t want = SCP_SS_HEAD_LEN;
        if (r->have >= SCP_SS_HEAD_LEN) want = SCP_SS_OVERHEAD + scp_get_u32(r->buf + 37);
        size_t k = want - r->have < n ? want - r->have : n;
        memcpy(r->buf + r->have, p, k);
        r->have += k;
        p += k;
        n -= k;
        if (r->have < want) break;
        if (want == SCP_SS_HEAD_LEN) {
            if (memcmp(r->buf, MAGIC, 4) != 0)
                return scp_fail(err, SCP_E_FORMAT, EINVAL,
                                "byte %llu: not a sealed record (plain bytes, or a corrupted stream)",
                                (unsigned long long)r->off);
            if (r->buf[4] < SCP_SS_T_HEADER || r->buf[4] > SCP_SS_T_END ||
                scp_get_u32(r->buf + 37) > SCP_SS_MAX_DATA)
                return scp_fail(err, SCP_E_FORMAT, EINVAL, "byte %llu: a record with a bad type or length",
                                (unsigned long long)r->off);
            continue; /* now the whole frame's length is known */
        }
        if (frame(r, fn, arg, err) < 0) return -1;
        r->off += r->have;
        r->have = 0;
    }
    return r->stopped ? stopped(err) : 0;
}

/* ---- line form ------------------------------------------------------------------------------ */

size_t scp_ss_frame_line(const uint8_t *frame, size_t n, char *out) {
    assert(n <= SCP_SS_MAX_FRAME);
    static const char prefix[5] = {'S', 'C', 'R', '1', ':'}; /* SCP_SS_LINE_PREFIX, no NUL */
    memcpy(out, prefix, sizeof prefix);
    size_t b = scp_b64enc_to(frame, n, out + 5);
    out[5 + b] = '\n';
    assert(6 + b <= SCP_SS_LINE_LEN(n));
    return 6 + b;
}

/* A record line's Base64 (b, n bytes, without prefix and newline): decoded into r->buf, it
 * must be exactly one frame, then read as a binary one. Anything else is a forged record: the
 * line form can resynchronize at the next line, so reading goes on. */
/* The first five bytes of a frame: the magic and a frame type (binary input starts so; no line does). */
static int frame_start(const uint8_t *b) {
    return memcmp(b, MAGIC, 4) == 0 && b[4] >= SCP_SS_T_HEADER && b[4] <= SCP_SS_T_END;
}

static int record_line(scp_ss_reader *r, const char *b, size_t n, scp_ss_event_fn fn, void *arg, scp_err *err) {
    size_t len;
    /* (len <= SCP_SS_MAX_FRAME, so a matching length field is at most SCP_SS_MAX_DATA) */
    if (r->line_long || scp_b64dec_to(b, n, r->buf, SCP_SS_MAX_FRAME, &len) < 0 || len < SCP_SS_OVERHEAD ||
        !frame_start(r->buf) || len != SCP_SS_OVERHEAD + scp_get_u32(r->buf + 37))
        return problem(r, fn, arg, NULL, SCP_SS_FORGED, 0, 1,
                       "a record line is malformed (not one sealed record in Base64): changed or cut");
    r->have = len;
    int rc = frame(r, fn, arg, err);
    r->have = 0;
    return rc;
}

static int line_done(scp_ss_reader *r, scp_ss_event_fn fn, void *arg, scp_err *err) {
    size_t len = r->line_len;
    if (len && !r->line_long && r->line[len - 1] == '\r') len--; /* a CRLF channel */
    int rc;
    if (len >= 5 && memcmp(r->line, SCP_SS_LINE_PREFIX, 5) == 0) {
        rc = record_line(r, r->line + 5, len - 5, fn, arg, err);
    } else {
        r->unsealed++;
        scp_ss_event ev = {.type = SCP_SS_EV_UNSEALED, .data = (const uint8_t *)r->line, .len = len};
        rc = emit(r, &ev);
        if (rc == 0 && fn && fn(arg, &ev)) r->stopped = 1;
    }
    r->line_len = 0;
    r->line_long = 0;
    r->off = r->in_off; /* where the next line starts */
    return rc;
}

static int lines_feed(scp_ss_reader *r, const uint8_t *p, size_t n, scp_ss_event_fn fn, void *arg, scp_err *err) {
    if (!r->line && !(r->line = malloc(LINE_CAP))) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    while (n) {
        if (r->stopped) return stopped(err);
        const uint8_t *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        size_t keep = take < LINE_CAP - r->line_len ? take : LINE_CAP - r->line_len;
        memcpy(r->line + r->line_len, p, keep);
        r->line_len += keep;
        if (keep < take) r->line_long = 1;
        r->in_off += take + (nl != NULL);
        p += take + (nl != NULL);
        n -= take + (nl != NULL);
        if (nl && line_done(r, fn, arg, err) < 0) return r->stopped ? stopped(err) : -1;
    }
    return r->stopped ? stopped(err) : 0;
}

int scp_ss_reader_feed(scp_ss_reader *r, const void *buf, size_t n, scp_ss_event_fn fn, void *arg, scp_err *err) {
    const uint8_t *p = buf;
    if (r->form == FORM_UNKNOWN) {
        /* five bytes decide: the magic and a frame type is binary, anything else lines */
        size_t k = 5 - r->have < n ? 5 - r->have : n;
        memcpy(r->buf + r->have, p, k);
        r->have += k;
        p += k;
        n -= k;
        if (r->have < 5) return 0;
        if (frame_start(r->buf)) {
            r->form = FORM_BINARY; /* the five bytes stay in buf: the frame's start */
        } else {
            uint8_t first[5];
            memcpy(first, r->buf, 5);
            r->have = 0;
            r->form = FORM_LINES;
            if (lines_feed(r, first, 5, fn, arg, err) < 0) return -1;
        }
    }
    return r->form == FORM_LINES ? lines_feed(r, p, n, fn, arg, err) : binary_feed(r, p, n, fn, arg, err);
}

int scp_ss_reader_finish(scp_ss_reader *r, scp_ss_event_fn fn, void *arg, scp_err *err) {
    char lb[64];
    if (r->form == FORM_UNKNOWN && r->have) {
        /* fewer than five bytes in all: not a frame's start, so a (short) line */
        uint8_t first[5];
        size_t k = r->have;
        memcpy(first, r->buf, k);
        r->have = 0;
        r->form = FORM_LINES;
        if (lines_feed(r, first, k, fn, arg, err) < 0) return -1;
    }
    if (r->form == FORM_LINES && (r->line_len || r->line_long) && line_done(r, fn, arg, err) < 0) return -1;
    if (r->have && problem(r, fn, arg, NULL, SCP_SS_TRUNCATED, 0, 1,
                           "the input ends inside a record (%zu of its bytes are there): truncated", r->have) < 0)
        return stopped(err);
    for (size_t i = 0; i < r->ns; i++) {
        struct stream *st = r->s[i];
        if (st->foreign) continue;
        if (!st->ended) {
            if (problem(r, fn, arg, st, SCP_SS_TRUNCATED, st->next, 1,
                        "%s has no end record: truncated after record %llu (or its process was killed)",
                        label(st, lb, sizeof lb), (unsigned long long)(st->next - 1)) < 0)
                return stopped(err);
        } else if (st->end_reason == SCP_SS_END_EXEC && !find(r, st->next_id)) {
            char nid[9];
            short_id(st->next_id, nid);
            if (problem(r, fn, arg, st, SCP_SS_TRUNCATED, st->end_seq, 1,
                        "%s ended with an exec, but the stream %s of the new image is missing",
                        label(st, lb, sizeof lb), nid) < 0)
                return stopped(err);
        }
    }
    return r->stopped ? stopped(err) : 0;
}
