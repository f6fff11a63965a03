/* volume/format.c - parsers and encoders of the on-disk structures (see format.h).
 *
 * Every input here comes from an untrusted disk. The rule is: check a length before reading the
 * bytes it covers, and check every field before it is used as a size or an index.
 */
#include "volume/format.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/volume.h"
#include "volume/marena.h"
#include "volume/vstats.h"

static const uint8_t volhdr_magic[8] = {'S', 'C', 'P', 'V', 'O', 'L', 0, 1};
static const uint8_t manslot_magic[8] = {'S', 'C', 'P', 'M', 'A', 'N', 0, 2};
static const uint8_t mlog_magic[8] = {'S', 'C', 'P', 'M', 'L', 'O', 'G', 1};
static const uint8_t journal_magic[8] = {'S', 'C', 'P', 'J', 'R', 'N', 0, 4};

static int bad(scp_err *err, scp_code code, const char *what) {
    return scp_fail(err, code, EIO, "%s", what);
}

int scp_volhdr_parse(const uint8_t *buf, size_t len, scp_volhdr *out, scp_err *err) {
    if (len != SCP_VOLHDR_LEN || memcmp(buf, volhdr_magic, 6) != 0)
        return bad(err, SCP_E_FORMAT, "not an SCP volume (bad header magic or size)");
    if (memcmp(buf, volhdr_magic, 8) != 0 || scp_get_u32(buf + 8) < SCP_FMT_VERSION_MIN ||
        scp_get_u32(buf + 8) > SCP_FMT_VERSION)
        return scp_fail(err, SCP_E_FORMAT, EIO,
                        "SCP volume format version %u is not supported (this build reads version "
                        "%u; copy the files out with the release that wrote it, `scpctl volume "
                        "export`, and into a new volume with `scpctl volume import`)",
                        (unsigned)scp_get_u32(buf + 8), SCP_FMT_VERSION);
    out->version = scp_get_u32(buf + 8);
    out->chunk_size = scp_get_u32(buf + 12);
    uint32_t cs = out->chunk_size;
    if (!scp_volume_chunk_ok(cs))
        return bad(err, SCP_E_INTEGRITY, "volume header has an invalid chunk size");
    memcpy(out->volid, buf + 16, SCP_VOLID_LEN);
    memcpy(out->mac, buf + SCP_VOLHDR_MAC_OFF, SCP_HASH_LEN);
    return 0;
}

void scp_volhdr_encode(const scp_volhdr *h, uint8_t out[SCP_VOLHDR_LEN]) {
    memcpy(out, volhdr_magic, 8);
    scp_put_u32(out + 8, h->version);
    scp_put_u32(out + 12, h->chunk_size);
    memcpy(out + 16, h->volid, SCP_VOLID_LEN);
    memcpy(out + SCP_VOLHDR_MAC_OFF, h->mac, SCP_HASH_LEN);
}

int scp_manslot_parse(const uint8_t *buf, size_t len, scp_manslot *out, scp_err *err) {
    if (len < SCP_MANSLOT_HDR_LEN + SCP_GCMTAG_LEN || memcmp(buf, manslot_magic, 8) != 0)
        return bad(err, SCP_E_INTEGRITY, "manifest slot is torn or not a manifest");
    out->generation = scp_get_u64(buf + 8);
    memcpy(out->salt, buf + 16, SCP_SALT_LEN);
    memcpy(out->nonce, buf + 32, SCP_NONCE_LEN);
    out->body_len = scp_get_u32(buf + 44);
    if (out->body_len > SCP_MANIFEST_MAX_BODY ||
        (size_t)out->body_len != len - SCP_MANSLOT_HDR_LEN - SCP_GCMTAG_LEN)
        return bad(err, SCP_E_INTEGRITY, "manifest slot length does not match its contents");
    out->ciphertext = buf + SCP_MANSLOT_HDR_LEN;
    out->tag = buf + SCP_MANSLOT_HDR_LEN + out->body_len;
    return 0;
}

int scp_path_normalize(const char *in, char *out, size_t out_size, scp_err *err) {
    size_t o = 0;
    if (out_size == 0) return scp_fail(err, SCP_E_INVAL, EINVAL, "no room for a path");
    const char *p = in;
    while (*p == '/') p++;
    while (*p) {
        const char *s = p;
        while (*p && *p != '/') p++;
        size_t n = (size_t)(p - s);
        while (*p == '/') p++;
        if (n == 0) continue;
        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return scp_fail(err, SCP_E_INVAL, EINVAL,
                            "path '%s' has a '.' or '..' component; give a plain path inside "
                            "the volume",
                            in);
        if (n > SCP_MAX_NAME)
            return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "a name in '%s' is over %d bytes", in,
                            SCP_MAX_NAME);
        if (o + (o ? 1 : 0) + n + 1 > out_size || o + n + 1 > SCP_MAX_PATH)
            return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "path '%s' is too long", in);
        if (o) out[o++] = '/';
        memcpy(out + o, s, n);
        o += n;
    }
    out[o] = '\0';
    return 0;
}

/* Entry layout sizes. */
#define MENTRY_FIXED (1 + 2 + SCP_FILEID_LEN + 8 + SCP_HASH_LEN + 4 + 4 + 4 + 8)

long scp_manifest_parent(const scp_manifest *m, const char *path) {
    const char *slash = strrchr(path, '/');
    /* (a name directly under the root, or the root's own entry, "/", whose parent is itself) */
    if (!slash || scp_is_root_entry(path)) return SCP_PARENT_ROOT;
    size_t plen = (size_t)(slash - path);
    /* Binary search for the entry that equals path's first plen bytes: an entry that has them
     * as a prefix and goes on sorts after it. */
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strncmp(m->e[mid]->path, path, plen);
        if (c == 0 && m->e[mid]->path[plen] != '\0') c = 1;
        if (c < 0) lo = mid + 1;
        else if (c > 0) hi = mid;
        else return m->e[mid]->type == SCP_MTYPE_DIR ? (long)mid : SCP_PARENT_NONE;
    }
    return SCP_PARENT_NONE;
}

int scp_node_type_ok(uint32_t mode) {
    uint32_t t = mode & S_IFMT;
    return t == S_IFIFO || t == S_IFSOCK || t == S_IFCHR || t == S_IFBLK;
}

/* An entry's id and its index, sorted by id to find the entries that share one. */
struct id_ref {
    uint8_t id[SCP_FILEID_LEN];
    uint32_t i;
};
static int id_cmp(const void *a, const void *b) { return memcmp(a, b, SCP_FILEID_LEN); }

int scp_mentry_same_file(const scp_mentry *a, const scp_mentry *b) {
    return a->type == b->type && a->type != SCP_MTYPE_DIR && a->size == b->size &&
           memcmp(a->root, b->root, SCP_HASH_LEN) == 0 && a->mode == b->mode && a->uid == b->uid &&
           a->gid == b->gid && a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns &&
           a->atime_ns == b->atime_ns &&
           (a->target ? b->target && strcmp(a->target, b->target) == 0 : !b->target);
}

/* Does any id appear twice? An open-addressed table of the ids' indexes (ids are random: their
 * first 8 bytes spread them), so that a manifest without hard links, the common case, is
 * counted in one pass: the sort below was 7% of an exec's first volume call on a volume of
 * 30,000 entries (bench/RESULTS.md, session 60). 1 yes, 0 no, -1 out of memory. */
static int ids_repeat(const struct id_ref *ids, size_t n) {
    size_t cap = 64;
    while (cap < 2 * n) cap *= 2;
    uint32_t *slot = malloc(cap * sizeof *slot);
    if (!slot) return -1;
    memset(slot, 0xff, cap * sizeof *slot); /* (UINT32_MAX: empty) */
    int rep = 0;
    for (size_t i = 0; i < n && !rep; i++) {
        uint64_t h;
        memcpy(&h, ids[i].id, sizeof h);
        size_t k = (size_t)(h * UINT64_C(0x9E3779B97F4A7C15) >> 32) & (cap - 1);
        for (; slot[k] != UINT32_MAX; k = (k + 1) & (cap - 1))
            if (memcmp(ids[slot[k]].id, ids[i].id, SCP_FILEID_LEN) == 0) {
                rep = 1;
                break;
            }
        slot[k] = (uint32_t)i;
    }
    free(slot);
    return rep;
}

/* Entries that share an id are hard links of one file: check that they agree, and count them
 * into every entry's nlink. ids holds every entry's id and index. */
static int count_links(scp_manifest *m, struct id_ref *ids) {
    int rep = ids_repeat(ids, m->n);
    if (rep == 0) {
        for (size_t i = 0; i < m->n; i++) m->e[i]->nlink = 1;
        return 0;
    }
    qsort(ids, m->n, sizeof *ids, id_cmp); /* (out of memory above: the sort alone decides) */
    for (size_t s = 0, k; s < m->n; s = k) {
        for (k = s + 1; k < m->n && memcmp(ids[k].id, ids[s].id, SCP_FILEID_LEN) == 0; k++)
            if (!scp_mentry_same_file(m->e[ids[s].i], m->e[ids[k].i])) return -1;
        for (size_t j = s; j < k; j++) m->e[ids[j].i]->nlink = (uint32_t)(k - s);
    }
    return 0;
}

int scp_manifest_count_links(scp_manifest *m) {
    struct id_ref *ids = malloc((m->n ? m->n : 1) * sizeof *ids);
    if (!ids) return -2;
    for (size_t i = 0; i < m->n; i++) {
        memcpy(ids[i].id, m->e[i]->id, SCP_FILEID_LEN);
        ids[i].i = (uint32_t)i;
    }
    int rc = count_links(m, ids);
    free(ids);
    return rc;
}

/* n bytes for a parsed entry's string: from the manifest's arena while it has room. */
static char *str_alloc(marena *a, size_t n) {
    char *p = marena_alloc(a, n);
    return p ? p : malloc(n);
}

/* One entry at body + *off (from its type byte through a link's target): fields checked one
 * by one; sortedness, parents and ids are the caller's. Strings come from a (NULL: malloc).
 * Returns 0, -1 (malformed; e->path and e->target may be set: the caller frees them) or -2
 * (out of memory). */
static int mentry_parse(const uint8_t *body, size_t len, size_t *offp, scp_mentry *e, marena *a) {
    char norm[SCP_MAX_PATH + 1];
    size_t off = *offp;
    if (len - off < MENTRY_FIXED) return -1;
    int times = (body[off] & SCP_MTYPE_TIMES) != 0;
    e->type = body[off] & (uint8_t)~SCP_MTYPE_TIMES;
    uint16_t plen = scp_get_u16(body + off + 1);
    off += 3;
    if ((e->type < SCP_MTYPE_FILE || e->type > SCP_MTYPE_LINK) || plen == 0 || plen > SCP_MAX_PATH ||
        len - off < (size_t)plen + MENTRY_FIXED - 3)
        return -1;
    e->path = str_alloc(a, (size_t)plen + 1);
    if (!e->path) return -2;
    memcpy(e->path, body + off, plen);
    e->path[plen] = '\0';
    off += plen;
    if (strlen(e->path) != plen) return -1;
    if (scp_is_root_entry(e->path) ? e->type != SCP_MTYPE_DIR
                                   : scp_path_normalize(e->path, norm, sizeof norm, NULL) < 0 ||
                                         strcmp(norm, e->path) != 0 || norm[0] == '\0')
        return -1;
    memcpy(e->id, body + off, SCP_FILEID_LEN);
    off += SCP_FILEID_LEN;
    e->size = scp_get_u64(body + off);
    off += 8;
    memcpy(e->root, body + off, SCP_HASH_LEN);
    off += SCP_HASH_LEN;
    e->mode = scp_get_u32(body + off);
    e->uid = scp_get_u32(body + off + 4);
    e->gid = scp_get_u32(body + off + 8);
    e->mtime_ns = (int64_t)scp_get_u64(body + off + 12);
    off += 20;
    e->ctime_ns = e->atime_ns = e->mtime_ns; /* an entry from before times: ctime reads as mtime */
    if (times) {
        if (len - off < 16) return -1;
        e->ctime_ns = (int64_t)scp_get_u64(body + off);
        e->atime_ns = (int64_t)scp_get_u64(body + off + 8);
        off += 16;
        if (e->ctime_ns == e->mtime_ns && e->atime_ns == e->mtime_ns) return -1; /* one encoding */
    }
    if (e->type == 2 && e->size != 0) return -1;
    if (e->type == SCP_MTYPE_NODE && !scp_node_type_ok(e->mode)) return -1;
    if (e->type == SCP_MTYPE_LINK) {
        if (len - off < 2) return -1;
        uint16_t tlen = scp_get_u16(body + off);
        off += 2;
        if (tlen == 0 || tlen > SCP_MAX_PATH || len - off < tlen || e->size != tlen ||
            memchr(body + off, 0, tlen))
            return -1;
        if (!(e->target = str_alloc(a, (size_t)tlen + 1))) return -2;
        memcpy(e->target, body + off, tlen);
        e->target[tlen] = '\0';
        off += tlen;
    }
    if (e->size > (UINT64_C(1) << 50)) return -1; /* 1 PiB: far beyond any real file */
    *offp = off;
    return 0;
}

int scp_manifest_parse(const uint8_t *body, size_t len, scp_manifest *out, scp_err *err) {
    memset(out, 0, sizeof *out);
    if (len < 4) return bad(err, SCP_E_INTEGRITY, "manifest body too short");
    uint32_t count = scp_get_u32(body);
    if ((size_t)count > (len - 4) / MENTRY_FIXED)
        return bad(err, SCP_E_INTEGRITY, "manifest entry count exceeds its size");
    out->e = calloc(count ? count : 1, sizeof(scp_mentry *));
    if (!out->e) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory parsing the manifest");
    out->cap = count ? count : 1;
    /* A large manifest's entries and strings come from one populated arena (marena.h): an
     * entry's two strings take at most its bytes in the body beyond the fixed fields, plus a
     * NUL and alignment each; what does not fit (never, by that bound) comes from malloc. */
    if (count >= MARENA_MIN_ENTRIES) {
        size_t per = marena_piece(sizeof(scp_mentry)) + 2 * MARENA_ALIGN;
        out->arena = marena_new((size_t)count * per + (len - 4 - (size_t)count * MENTRY_FIXED));
    }
    size_t off = 4;
    struct id_ref *ids = malloc((size_t)(count ? count : 1) * sizeof *ids);
    if (!ids) goto nomem;
    /* The last parent directory found: in path order most entries share their predecessor's
     * (a binary search per entry was 6% of an exec's first volume call on a volume of 30,000
     * entries). Its entry precedes every entry below it, so it is parsed already. */
    long dir = -1;
    size_t dir_len = 0;
    for (uint32_t i = 0; i < count; i++) {
        scp_mentry *e = marena_alloc(out->arena, sizeof *e); /* (zeroed, as calloc's) */
        if (!e && !(e = calloc(1, sizeof *e))) goto nomem;
        int r = mentry_parse(body, len, &off, e, out->arena);
        if (e->path) out->e[out->n++] = e; /* (freed with the manifest, even if malformed) */
        else marena_free(e);
        if (r == -2) goto nomem;
        if (r < 0) goto malformed;
        if (out->n > 1 && strcmp(out->e[out->n - 2]->path, e->path) >= 0) goto malformed;
        const char *slash = strrchr(e->path, '/');
        /* (entry dir, a directory, is the parent itself when its path is the prefix: paths
         * are unique) */
        int same_dir = dir >= 0 && slash && (size_t)(slash - e->path) == dir_len &&
                       !scp_is_root_entry(e->path) && memcmp(out->e[dir]->path, e->path, dir_len) == 0;
        if (!same_dir) {
            long p = scp_manifest_parent(out, e->path);
            if (p == SCP_PARENT_NONE) goto malformed;
            if (p >= 0) {
                dir = p;
                dir_len = strlen(out->e[p]->path);
            }
        }
        memcpy(ids[i].id, e->id, SCP_FILEID_LEN);
        ids[i].i = i;
    }
    if (off != len) goto malformed;
    if (count_links(out, ids) < 0) goto malformed;
    free(ids);
    return 0;
malformed:
    free(ids);
    scp_manifest_free(out);
    return bad(err, SCP_E_INTEGRITY, "manifest body is malformed");
nomem:
    free(ids);
    scp_manifest_free(out);
    return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory parsing the manifest");
}

/* ctime and atime are written only when one differs from mtime (format.h). */
static int mentry_has_times(const scp_mentry *e) {
    return e->ctime_ns != e->mtime_ns || e->atime_ns != e->mtime_ns;
}

size_t scp_mentry_encoded_len(const scp_mentry *e) {
    return MENTRY_FIXED + strlen(e->path) + (e->target ? 2 + strlen(e->target) : 0) +
           (mentry_has_times(e) ? 16 : 0);
}

uint8_t *scp_mentry_encode(const scp_mentry *e, uint8_t *p) {
    size_t plen = strlen(e->path);
    assert(!(e->type & SCP_MTYPE_TIMES));
    *p++ = (uint8_t)(e->type | (mentry_has_times(e) ? SCP_MTYPE_TIMES : 0));
    scp_put_u16(p, (uint16_t)plen);
    p += 2;
    memcpy(p, e->path, plen);
    p += plen;
    memcpy(p, e->id, SCP_FILEID_LEN);
    p += SCP_FILEID_LEN;
    scp_put_u64(p, e->size);
    p += 8;
    memcpy(p, e->root, SCP_HASH_LEN);
    p += SCP_HASH_LEN;
    scp_put_u32(p, e->mode);
    scp_put_u32(p + 4, e->uid);
    scp_put_u32(p + 8, e->gid);
    scp_put_u64(p + 12, (uint64_t)e->mtime_ns);
    p += 20;
    if (mentry_has_times(e)) {
        scp_put_u64(p, (uint64_t)e->ctime_ns);
        scp_put_u64(p + 8, (uint64_t)e->atime_ns);
        p += 16;
    }
    if (e->target) {
        size_t tlen = strlen(e->target);
        scp_put_u16(p, (uint16_t)tlen);
        memcpy(p + 2, e->target, tlen);
        p += 2 + tlen;
    }
    return p;
}

size_t scp_manifest_encoded_len(const scp_manifest *m) {
    size_t len = 4;
    for (size_t i = 0; i < m->n; i++) len += scp_mentry_encoded_len(m->e[i]);
    return len;
}

int scp_manifest_encode(const scp_manifest *m, uint8_t **out, size_t *out_len, scp_err *err) {
    size_t len = scp_manifest_encoded_len(m);
    uint8_t *b = malloc(len), *p = b;
    if (!b) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory encoding the manifest");
    scp_put_u32(p, (uint32_t)m->n);
    p += 4;
    for (size_t i = 0; i < m->n; i++) p = scp_mentry_encode(m->e[i], p);
    *out = b;
    *out_len = len;
    return 0;
}

int scp_mlog_hdr_parse(const uint8_t *buf, size_t len, scp_mlog_hdr *out, scp_err *err) {
    if (len < SCP_MLOG_HDR_LEN || memcmp(buf, mlog_magic, 8) != 0)
        return bad(err, SCP_E_INTEGRITY, "manifest log header is torn or not a manifest log");
    out->base_gen = scp_get_u64(buf + 8);
    memcpy(out->base_salt, buf + 16, SCP_SALT_LEN);
    memcpy(out->log_salt, buf + 32, SCP_SALT_LEN);
    return 0;
}

void scp_mlog_hdr_encode(const scp_mlog_hdr *h, uint8_t out[SCP_MLOG_HDR_LEN]) {
    memcpy(out, mlog_magic, 8);
    scp_put_u64(out + 8, h->base_gen);
    memcpy(out + 16, h->base_salt, SCP_SALT_LEN);
    memcpy(out + 32, h->log_salt, SCP_SALT_LEN);
}

int scp_mrec_parse(const uint8_t *buf, size_t len, scp_mrec *out, scp_err *err) {
    if (len < SCP_MREC_HDR_LEN + SCP_GCMTAG_LEN)
        return bad(err, SCP_E_INTEGRITY, "manifest log record is torn");
    out->body_len = scp_get_u32(buf);
    out->flags = scp_get_u32(buf + 4);
    out->generation = scp_get_u64(buf + 8);
    if (out->body_len > SCP_MREC_MAX_BODY || (out->flags & ~SCP_MREC_DURABLE) != 0 ||
        len - SCP_MREC_HDR_LEN - SCP_GCMTAG_LEN < out->body_len)
        return bad(err, SCP_E_INTEGRITY, "manifest log record is torn or malformed");
    out->nonce = buf + 16;
    out->ciphertext = buf + SCP_MREC_HDR_LEN;
    out->tag = buf + SCP_MREC_HDR_LEN + out->body_len;
    out->len = (size_t)SCP_MREC_HDR_LEN + out->body_len + SCP_GCMTAG_LEN;
    return 0;
}

void scp_mdelta_free(scp_mdelta *d) {
    for (size_t i = 0; d->put && i < d->nput; i++) {
        free(d->put[i].path);
        free(d->put[i].target);
    }
    for (size_t i = 0; d->del && i < d->ndel; i++) free(d->del[i]);
    free(d->put);
    free(d->del);
    memset(d, 0, sizeof *d);
}

int scp_mdelta_parse(const uint8_t *body, size_t len, scp_mdelta *out, scp_err *err) {
    memset(out, 0, sizeof *out);
    if (len < 8) return bad(err, SCP_E_INTEGRITY, "manifest delta too short");
    uint32_t np = scp_get_u32(body), nd = scp_get_u32(body + 4);
    if ((size_t)np > (len - 8) / MENTRY_FIXED || (size_t)nd > (len - 8) / 3)
        return bad(err, SCP_E_INTEGRITY, "manifest delta counts exceed its size");
    out->put = calloc(np ? np : 1, sizeof *out->put);
    out->del = calloc(nd ? nd : 1, sizeof *out->del);
    if (!out->put || !out->del) goto nomem;
    size_t off = 8;
    char norm[SCP_MAX_PATH + 1];
    for (uint32_t i = 0; i < np; i++) {
        scp_mentry *e = &out->put[i];
        int r = mentry_parse(body, len, &off, e, NULL); /* (a delta is small: malloc) */
        out->nput = i + 1; /* (what was set is freed with the delta) */
        if (r == -2) goto nomem;
        if (r < 0 || (i > 0 && strcmp(out->put[i - 1].path, e->path) >= 0)) goto malformed;
    }
    for (uint32_t i = 0; i < nd; i++) {
        if (len - off < 2) goto malformed;
        uint16_t plen = scp_get_u16(body + off);
        off += 2;
        if (plen == 0 || plen > SCP_MAX_PATH || len - off < plen) goto malformed;
        char *p = malloc((size_t)plen + 1);
        if (!p) goto nomem;
        memcpy(p, body + off, plen);
        p[plen] = '\0';
        out->del[out->ndel++] = p;
        off += plen;
        if (strlen(p) != plen || scp_path_normalize(p, norm, sizeof norm, NULL) < 0 ||
            strcmp(norm, p) != 0 || (i > 0 && strcmp(out->del[i - 1], p) >= 0))
            goto malformed;
    }
    if (off != len) goto malformed;
    /* Both lists are sorted: one merge finds a path in both. */
    for (size_t i = 0, j = 0; i < out->nput && j < out->ndel;) {
        int c = strcmp(out->put[i].path, out->del[j]);
        if (c == 0) goto malformed;
        if (c < 0) i++;
        else j++;
    }
    return 0;
malformed:
    scp_mdelta_free(out);
    return bad(err, SCP_E_INTEGRITY, "manifest delta is malformed");
nomem:
    scp_mdelta_free(out);
    return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory parsing a manifest delta");
}

/* Free p, one of m's pieces: those of m's own arena are only counted (*mine), and counted off
 * the arena at once (no registry look-up and atomic per piece). */
static void piece_free(const scp_manifest *m, void *p, size_t *mine) {
    if (marena_owns(m->arena, p)) (*mine)++;
    else marena_free(p);
}

void scp_manifest_free(scp_manifest *m) {
    size_t mine = 0;
    for (size_t i = 0; i < m->n; i++) {
        piece_free(m, m->e[i]->path, &mine);
        if (m->e[i]->target) piece_free(m, m->e[i]->target, &mine);
        piece_free(m, m->e[i], &mine);
    }
    free(m->e);
    for (unsigned k = 0; k < m->nspare; k++) piece_free(m, m->spare[k], &mine);
    marena_drop(m->arena, mine);
    memset(m, 0, sizeof *m);
}

void scp_journal_start(uint8_t hdr[SCP_JRN_HDR_LEN], const uint8_t salt[SCP_HASH_LEN],
                       uint8_t chain[SCP_HASH_LEN]) {
    memcpy(hdr, journal_magic, 8);
    memcpy(hdr + 8, salt, SCP_HASH_LEN);
    scp_sha256_buf(hdr, SCP_JRN_HDR_LEN, chain);
}

void scp_journal_chain(uint8_t chain[SCP_HASH_LEN], const uint8_t *rec, size_t len) {
    struct scp_buf parts[2] = {{chain, SCP_HASH_LEN}, {rec, len}};
    scp_sha256(parts, 2, chain);
}

void scp_chunk_aad(const uint8_t volid[SCP_VOLID_LEN], const uint8_t id[SCP_FILEID_LEN],
                   uint64_t index, uint8_t aad[SCP_CHUNK_AAD_LEN]) {
    memcpy(aad, volid, SCP_VOLID_LEN);
    memcpy(aad + SCP_VOLID_LEN, id, SCP_FILEID_LEN);
    scp_put_u64(aad + SCP_VOLID_LEN + SCP_FILEID_LEN, index);
}

int scp_journal_key(const uint8_t file_key[32], const uint8_t hdr[SCP_JRN_HDR_LEN],
                    uint8_t out[32], scp_err *err) {
    return scp_derive_key(file_key, SCP_LABEL_JOURNAL, hdr + 8, SCP_HASH_LEN, out, err);
}

/* AAD of the commit record at offset off: file id || u64 offset || the record's header and
 * stored chain value (so the chain value is authenticated under the log's key). */
#define JCOMMIT_AUTH (SCP_JREC_HDR_LEN + SCP_HASH_LEN)
#define JAAD_LEN (SCP_FILEID_LEN + 8 + JCOMMIT_AUTH)
static void commit_aad(const uint8_t id[SCP_FILEID_LEN], uint64_t off, const uint8_t *rec,
                       uint8_t aad[JAAD_LEN]) {
    memcpy(aad, id, SCP_FILEID_LEN);
    scp_put_u64(aad + SCP_FILEID_LEN, off);
    memcpy(aad + SCP_FILEID_LEN + 8, rec, JCOMMIT_AUTH);
}

int scp_journal_commit_seal(const uint8_t key[32], const uint8_t id[SCP_FILEID_LEN], uint64_t off,
                            uint64_t count, const uint8_t *pt, uint8_t chain[SCP_HASH_LEN],
                            uint8_t *rec, scp_err *err) {
    size_t rlen = SCP_JCOMMIT_LEN(count), ptlen = SCP_JCOMMIT_PT_LEN(count);
    uint8_t *nonce = rec + JCOMMIT_AUTH, *ct = nonce + SCP_NONCE_LEN, aad[JAAD_LEN];
    scp_put_u32(rec, SCP_JREC_COMMIT);
    scp_put_u32(rec + 4, 0);
    scp_put_u64(rec + 8, count);
    memcpy(rec + SCP_JREC_HDR_LEN, chain, SCP_HASH_LEN);
    commit_aad(id, off, rec, aad);
    /* A random nonce under the log's own key: a log holds at most SCP_JOURNAL_MAX bytes of
     * records, so far below 2^20 commits. */
    if (scp_random_public(nonce, SCP_NONCE_LEN, err) < 0 ||
        scp_aead_seal(key, nonce, aad, sizeof aad, pt, ptlen, ct, ct + ptlen, err) < 0)
        return -1;
    scp_journal_chain(chain, rec, rlen);
    return 0;
}

/* The length of the commit record at buf+off if it is whole, or 0. */
static size_t commit_len(const uint8_t *rec, size_t len, size_t off, uint64_t *count) {
    if (len - off < SCP_JCOMMIT_LEN(0)) return 0;
    *count = scp_get_u64(rec + 8);
    if (*count > (len - off - SCP_JCOMMIT_LEN(0)) / SCP_JENTRY_LEN) return 0;
    return SCP_JCOMMIT_LEN(*count);
}

/* Decrypt the payload of the whole commit record rec, at offset off of its journal, into a
 * malloc'd buffer and check its entries; NULL if it does not authenticate, is not sane, or
 * memory runs out. */
static uint8_t *commit_open(const uint8_t *rec, size_t off, uint64_t count, uint32_t cs,
                            const uint8_t key[32], const uint8_t id[SCP_FILEID_LEN]) {
    size_t ptlen = SCP_JCOMMIT_PT_LEN(count);
    const uint8_t *nonce = rec + JCOMMIT_AUTH, *ct = nonce + SCP_NONCE_LEN;
    uint8_t aad[JAAD_LEN], *pt = malloc(ptlen);
    if (!pt) return NULL;
    commit_aad(id, off, rec, aad);
    VSTAT(jcommit_open);
    VSTAT_ADD(jcommit_open_bytes, ptlen);
    if (scp_aead_open(key, nonce, aad, sizeof aad, ct, ptlen, ct + ptlen, pt, NULL) < 0) {
        free(pt);
        return NULL;
    }
    uint64_t max_index = scp_get_u64(pt) / cs + 1;
    for (uint64_t i = 0; i < count; i++)
        if (scp_get_u64(pt + 8 + i * SCP_JENTRY_LEN) >= max_index) {
            scp_wipe(pt, ptlen);
            free(pt);
            return NULL;
        }
    return pt;
}

scp_journal_kept scp_journal_kept_from(const scp_journal_kept *k, size_t at) {
    size_t i = 0;
    while (i < k->n && k->off[i] < at) i++;
    for (size_t j = i + 1; j < k->n; j++) assert(k->off[j - 1] < k->off[j]); /* walk order */
    scp_journal_kept v = *k;
    if (i > 0) { /* (an empty k may hold NULL arrays: no arithmetic on them) */
        v.pt += i;
        v.count += i;
        v.off += i;
        v.n -= i;
    }
    v.cap = v.n; /* (a view: nothing beyond its payloads is its own) */
    v.opens = 0;
    return v;
}

void scp_journal_kept_free(scp_journal_kept *k) {
    if (!k) return;
    for (size_t i = 0; i < k->n; i++) {
        scp_wipe(k->pt[i], SCP_JCOMMIT_PT_LEN(k->count[i]));
        free(k->pt[i]);
    }
    free(k->pt);
    free(k->count);
    free(k->off);
    k->pt = NULL;
    k->count = NULL;
    k->off = NULL;
    k->n = k->cap = 0;
}

/* Keep the opened payload pt (of `count` entries, the record at journal offset off) in k: 0 if
 * k took it, -1 if not (no memory: the caller frees it, and the replay opens that record
 * again). */
static int kept_push(scp_journal_kept *k, uint8_t *pt, uint64_t count, size_t off) {
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 8;
        uint8_t **np = realloc(k->pt, cap * sizeof *np);
        if (!np) return -1;
        k->pt = np;
        uint64_t *nc = realloc(k->count, cap * sizeof *nc);
        if (!nc) return -1;
        k->count = nc;
        size_t *no = realloc(k->off, cap * sizeof *no);
        if (!no) return -1;
        k->off = no;
        k->cap = cap;
    }
    k->pt[k->n] = pt;
    k->off[k->n] = off;
    k->count[k->n++] = count;
    return 0;
}

/* What a walk checks the chunk records with: their headers chained (every walk), and with
 * headers_only 0 (a full walk with the volume id) their ciphertext too. */
#define CHECK_KEYS 8 /* subkeys kept: a writer keeps one salt for 2^20 seals, and in shared mode
                      * each process that appends to the log writes under its own */
struct chunk_check {
    const uint8_t *volid, *file_key, *id;
    int headers_only; /* chain the headers, check no ciphertext (scp_journal_find_live) */
    uint8_t salt[CHECK_KEYS][SCP_SALT_LEN], key[CHECK_KEYS][32];
    unsigned n, next;
    uint8_t *scratch; /* chunk_size bytes for the plaintext, wiped after each check */
};

/* The chunk record at rec (whole) authenticates under the table entry in its header. */
static int chunk_rec_ok(struct chunk_check *c, const uint8_t *rec, uint32_t cs) {
    const uint8_t *e = rec + SCP_JREC_HDR_LEN;
    uint8_t aad[SCP_CHUNK_AAD_LEN];
    unsigned k = 0;
    while (k < c->n && memcmp(c->salt[k], e, SCP_SALT_LEN) != 0) k++;
    if (k == c->n) {
        uint8_t key[32];
        if (scp_derive_key(c->file_key, SCP_LABEL_CHUNK, e, SCP_SALT_LEN, key, NULL) < 0)
            return 0;
        k = c->next;
        memcpy(c->key[k], key, sizeof key);
        scp_wipe(key, sizeof key);
        memcpy(c->salt[k], e, SCP_SALT_LEN);
        c->next = (k + 1) % CHECK_KEYS;
        if (c->n < CHECK_KEYS) c->n++;
    }
    scp_chunk_aad(c->volid, c->id, scp_get_u64(rec + 8), aad);
    VSTAT(jchunk_auth);
    int ok = scp_aead_open(c->key[k], e + SCP_ENT_NONCE_OFF, aad, sizeof aad,
                           rec + SCP_JCHUNK_HDR_LEN, cs, e + SCP_ENT_TAG_OFF, c->scratch, NULL) == 0;
    scp_wipe(c->scratch, cs);
    return ok;
}

/* What a walk reports besides the commit it looks for (scp_journal_commits): every chunk
 * record and every commit record that checks out, in order. */
struct walk_obs {
    scp_journal_chunkrec_cb chunk;
    scp_journal_commit_cb commit;
    void *ctx;
};

/* Walk the records of the journal from offset `off`, where the chain stands at `chain`, while
 * the log holds; buf holds the journal's bytes from offset base (at most off) to len;
 * the first record that does not fit or check out ends the log. With cc the chain runs over
 * every header and is compared with each commit record's, and (unless cc->headers_only) every
 * chunk record is checked; without, each commit record that authenticates gives the chain
 * value (no caller walks so since session 24: see scp_journal_follow_from_at_kept). Fills
 * *out for the last commit record that names root and size (1), or returns 0. */
static int journal_walk(const uint8_t *buf, size_t base, size_t len, size_t off, uint32_t chunk_size,
                        const uint8_t key[32], const uint8_t id[SCP_FILEID_LEN],
                        uint8_t chain[SCP_HASH_LEN], struct chunk_check *cc,
                        const uint8_t root[SCP_HASH_LEN], uint64_t size, scp_journal_view *out,
                        scp_journal_mrec_cb mrec_cb, void *ctx, scp_journal_kept *kept,
                        const struct walk_obs *obs, int past) {
    assert(base <= off && off <= len);
    assert(root || past); /* (no root: every commit from off on is past the named one) */
    assert(!kept || kept->n == 0); /* (the replay pairs kept[i] with the i-th commit from off) */
#define AT(o) (buf + ((o) - base))
    uint64_t nchunks = 0, ncommits = 0;
    /* after_commit: the records since the last commit record that checks out are all type 3
     * (a run: one one-flush commit's, or a shared-mode durable commit's copies of the log's
     * unsynced records and its own). run: that commit is the one found. */
    int found = 0, after_commit = 0, run = 0, cut = 0, passed = root == NULL;
    out->named_end = off; /* (past mode: where the replay of commits past the named one starts) */
    uint8_t last_root[SCP_HASH_LEN] = {0}; /* what the last commit record that checked out names */
    uint64_t last_size = 0;
    out->start = off;
    /* (every decision below depends on len only through the fit tests, which set cut: a walk
     * that ends without cut ends at the same place in any longer buffer) */
    while ((cut = len - off < SCP_JREC_HDR_LEN) == 0 && scp_get_u32(AT(off) + 4) == 0) {
        uint32_t type = scp_get_u32(AT(off));
        if (type == SCP_JREC_CHUNK) {
            if ((cut = len - off - SCP_JREC_HDR_LEN < SCP_CHUNK_ENTRY_LEN + (size_t)chunk_size) != 0)
                break;
            /* (a torn or changed ciphertext ends the log here, as a torn header does) */
            if (cc && !cc->headers_only && !chunk_rec_ok(cc, AT(off), chunk_size)) break;
            if (cc) scp_journal_chain(chain, AT(off), SCP_JCHUNK_HDR_LEN);
            if (obs && obs->chunk) obs->chunk(obs->ctx, scp_get_u64(AT(off) + 8));
            off += SCP_JCHUNK_HDR_LEN + (size_t)chunk_size;
            nchunks++;
            after_commit = run = 0;
            continue;
        }
        if (type == SCP_JREC_MLOG) {
            uint64_t n = scp_get_u64(AT(off) + 8);
            if (n > SCP_JMREC_MAX) break;
            if ((cut = n > len - off - SCP_JREC_HDR_LEN) != 0) break;
            /* (whole, and behind a commit record that checks out: the chain covers every
             * header of the log up to that record and each chunk checked out, so that
             * commit's data all landed) */
            if (after_commit && mrec_cb)
                mrec_cb(ctx, AT(off) + SCP_JREC_HDR_LEN, (size_t)n, last_root, last_size);
            scp_journal_chain(chain, AT(off), SCP_JREC_HDR_LEN);
            off += SCP_JREC_HDR_LEN + (size_t)n;
            /* (after_commit stays: a one-flush commit may carry earlier lazy records of the
             * log ahead of its own, all behind its commit record) */
            if (run) { /* the next append goes behind the run, never over it */
                out->end = off;
                memcpy(out->chain, chain, SCP_HASH_LEN);
            }
            continue;
        }
        uint64_t count;
        if (type != SCP_JREC_COMMIT) break;
        size_t rlen = commit_len(AT(off), len, off, &count);
        if ((cut = rlen == 0) != 0) break; /* (commit_len fails only for lack of bytes) */
        const uint8_t *stored = AT(off) + SCP_JREC_HDR_LEN;
        if (cc && memcmp(chain, stored, SCP_HASH_LEN) != 0) break;
        uint8_t *pt = commit_open(AT(off), off, count, chunk_size, key, id);
        if (!pt) break;
        /* (authenticated: the stored value is the one its writer chained to) */
        memcpy(chain, stored, SCP_HASH_LEN);
        scp_journal_chain(chain, AT(off), rlen);
        size_t ptlen = SCP_JCOMMIT_PT_LEN(count);
        uint64_t csize = scp_get_u64(pt);
        int named = root && csize == size && memcmp(pt + ptlen - SCP_HASH_LEN, root, SCP_HASH_LEN) == 0;
        /* (past mode: the named commit, then every later one that checks out: the last is found) */
        int match = named || (past && passed);
        if (named) passed = 1;
        memcpy(last_root, pt + ptlen - SCP_HASH_LEN, SCP_HASH_LEN);
        last_size = csize;
        int stop = obs && obs->commit && obs->commit(obs->ctx, off, off + rlen, pt, count) != 0;
        if (!kept || kept_push(kept, pt, count, off) < 0) {
            scp_wipe(pt, ptlen);
            free(pt);
        }
        if (stop) break; /* (the observer has what it wanted) */
        off += rlen;
        ncommits++;
        after_commit = 1;
        run = match;
        if (named) out->named_end = off;
        if (match) {
            found = 1;
            memcpy(out->root, last_root, SCP_HASH_LEN);
            out->new_size = csize;
            out->end = off;
            out->ncommits = ncommits;
            out->nchunks = nchunks;
            memcpy(out->chain, chain, SCP_HASH_LEN);
        }
    }
#undef AT
    out->cut = cut;
    out->base = base;
    if (found) memcpy(out->key, key, 32);
    return found;
}

/* A full walk of the whole journal in buf (from its header), checking every record. */
static int journal_walk_full(const uint8_t *buf, size_t len, uint32_t chunk_size,
                             const uint8_t volid[SCP_VOLID_LEN], const uint8_t file_key[32],
                             const uint8_t id[SCP_FILEID_LEN], const uint8_t root[SCP_HASH_LEN],
                             uint64_t size, scp_journal_view *out, scp_journal_mrec_cb mrec_cb,
                             void *ctx, scp_journal_kept *kept, const struct walk_obs *obs,
                             int past) {
    memset(out, 0, sizeof *out);
    if (len < SCP_JRN_HDR_LEN || memcmp(buf, journal_magic, 8) != 0) return 0;
    uint8_t key[32], chain[SCP_HASH_LEN];
    struct chunk_check cc = {.volid = volid, .file_key = file_key, .id = id,
                             .headers_only = volid == NULL};
    if (!cc.headers_only && !(cc.scratch = malloc(chunk_size))) return 0;
    int found = 0;
    if (scp_journal_key(file_key, buf, key, NULL) == 0) {
        scp_sha256_buf(buf, SCP_JRN_HDR_LEN, chain);
        found = journal_walk(buf, 0, len, SCP_JRN_HDR_LEN, chunk_size, key, id, chain, &cc, root,
                             size, out, mrec_cb, ctx, kept, obs, past);
    }
    scp_wipe(key, sizeof key);
    scp_wipe(cc.key, sizeof cc.key);
    free(cc.scratch);
    return found;
}

int scp_journal_find(const uint8_t *buf, size_t len, uint32_t chunk_size,
                     const uint8_t volid[SCP_VOLID_LEN], const uint8_t file_key[32],
                     const uint8_t id[SCP_FILEID_LEN], const uint8_t root[SCP_HASH_LEN],
                     uint64_t size, scp_journal_view *out) {
    return journal_walk_full(buf, len, chunk_size, volid, file_key, id, root, size, out, NULL,
                             NULL, NULL, NULL, 0);
}

int scp_journal_follow_live_kept(const uint8_t *buf, size_t len, uint32_t chunk_size,
                                 const uint8_t file_key[32], const uint8_t id[SCP_FILEID_LEN],
                                 const uint8_t root[SCP_HASH_LEN], uint64_t size, int past,
                                 scp_journal_view *out, scp_journal_kept *kept) {
    /* (no volume id: chunk_rec_ok's AAD is never built) */
    return journal_walk_full(buf, len, chunk_size, NULL, file_key, id, root, size, out, NULL,
                             NULL, kept, NULL, past);
}

int scp_journal_find_live_kept(const uint8_t *buf, size_t len, uint32_t chunk_size,
                               const uint8_t file_key[32], const uint8_t id[SCP_FILEID_LEN],
                               const uint8_t root[SCP_HASH_LEN], uint64_t size,
                               scp_journal_view *out, scp_journal_kept *kept) {
    return scp_journal_follow_live_kept(buf, len, chunk_size, file_key, id, root, size, 0, out,
                                        kept);
}

int scp_journal_find_live(const uint8_t *buf, size_t len, uint32_t chunk_size,
                          const uint8_t file_key[32], const uint8_t id[SCP_FILEID_LEN],
                          const uint8_t root[SCP_HASH_LEN], uint64_t size,
                          scp_journal_view *out) {
    return scp_journal_find_live_kept(buf, len, chunk_size, file_key, id, root, size, out, NULL);
}

int scp_journal_follow_from_at_kept(const uint8_t *buf, size_t base, size_t len, size_t from,
                                    uint32_t chunk_size, const uint8_t log_key[32],
                                    const uint8_t chain_at[SCP_HASH_LEN],
                                    const uint8_t id[SCP_FILEID_LEN],
                                    const uint8_t root[SCP_HASH_LEN], uint64_t size, int past,
                                    scp_journal_view *out, scp_journal_kept *kept) {
    memset(out, 0, sizeof *out);
    if (from < SCP_JRN_HDR_LEN || from > len || base > from) return 0;
    uint8_t chain[SCP_HASH_LEN];
    memcpy(chain, chain_at, SCP_HASH_LEN);
    /* The chain runs over every record header from `from` on and must equal each commit
     * record's stored value (headers_only: no ciphertext checked): a commit record
     * authenticates its own offset and chain value, not the chunk record headers in front of
     * it, and a follow reads the log while a writer's pwrite may still be landing in it (step
     * 3 takes commits that no manifest names yet: the pwrite of the next one may be in
     * progress), so the buffer can hold a commit record that landed behind a chunk record
     * header that had not yet (a reader's copy that overtook the writer's part-way): its index
     * still the end mark's zeros, or an older log's header. Unchained, the follow took the
     * commit's entries with its chunk record mapped to another chunk (docs/volume-format.md,
     * "What a follow trusts"; test_volume_catchup "torn"). */
    struct chunk_check cc = {.id = id, .headers_only = 1};
    return journal_walk(buf, base, len, from, chunk_size, log_key, id, chain, &cc, root, size,
                        out, NULL, NULL, kept, NULL, past);
}

int scp_journal_find_from_at_kept(const uint8_t *buf, size_t base, size_t len, size_t from,
                                  uint32_t chunk_size, const uint8_t log_key[32],
                                  const uint8_t chain_at[SCP_HASH_LEN],
                                  const uint8_t id[SCP_FILEID_LEN], const uint8_t root[SCP_HASH_LEN],
                                  uint64_t size, scp_journal_view *out, scp_journal_kept *kept) {
    assert(root);
    return scp_journal_follow_from_at_kept(buf, base, len, from, chunk_size, log_key, chain_at,
                                           id, root, size, 0, out, kept);
}

int scp_journal_find_from_at(const uint8_t *buf, size_t base, size_t len, size_t from,
                             uint32_t chunk_size, const uint8_t log_key[32],
                             const uint8_t chain_at[SCP_HASH_LEN], const uint8_t id[SCP_FILEID_LEN],
                             const uint8_t root[SCP_HASH_LEN], uint64_t size,
                             scp_journal_view *out) {
    return scp_journal_find_from_at_kept(buf, base, len, from, chunk_size, log_key, chain_at, id,
                                         root, size, out, NULL);
}

int scp_journal_find_from(const uint8_t *buf, size_t len, size_t from, uint32_t chunk_size,
                          const uint8_t log_key[32], const uint8_t chain_at[SCP_HASH_LEN],
                          const uint8_t id[SCP_FILEID_LEN], const uint8_t root[SCP_HASH_LEN],
                          uint64_t size, scp_journal_view *out) {
    return scp_journal_find_from_at(buf, 0, len, from, chunk_size, log_key, chain_at, id, root,
                                    size, out);
}

void scp_journal_mrecs(const uint8_t *buf, size_t len, uint32_t chunk_size,
                       const uint8_t volid[SCP_VOLID_LEN], const uint8_t file_key[32],
                       const uint8_t id[SCP_FILEID_LEN], scp_journal_mrec_cb cb, void *ctx) {
    scp_journal_view jv;
    uint8_t none[SCP_HASH_LEN] = {0};
    (void)journal_walk_full(buf, len, chunk_size, volid, file_key, id, none, UINT64_MAX, &jv, cb,
                            ctx, NULL, NULL, 0);
    scp_wipe(&jv, sizeof jv);
}

void scp_journal_commits(const uint8_t *buf, size_t len, uint32_t chunk_size,
                         const uint8_t volid[SCP_VOLID_LEN], const uint8_t file_key[32],
                         const uint8_t id[SCP_FILEID_LEN], scp_journal_chunkrec_cb chunk_cb,
                         scp_journal_commit_cb commit_cb, void *ctx) {
    assert(volid); /* (a full walk: every chunk record checked) */
    scp_journal_view jv;
    uint8_t none[SCP_HASH_LEN] = {0};
    struct walk_obs obs = {.chunk = chunk_cb, .commit = commit_cb, .ctx = ctx};
    (void)journal_walk_full(buf, len, chunk_size, volid, file_key, id, none, UINT64_MAX, &jv, NULL,
                            NULL, NULL, &obs, 0);
    scp_wipe(&jv, sizeof jv);
}

int scp_journal_replay(const uint8_t *buf, const scp_journal_view *v, uint32_t chunk_size,
                       const uint8_t id[SCP_FILEID_LEN], scp_journal_chunk_cb chunk_cb,
                       scp_journal_entry_cb entry_cb, void *ctx, scp_err *err) {
    return scp_journal_replay_kept(buf, v, NULL, 0, chunk_size, id, chunk_cb, entry_cb, ctx, err);
}

/* The live limit of each commit record from v's start to `horizon` (format.h, "dead records"):
 * lim[k] = the fewest chunks that commit k or any later one up to the horizon leaves. A record
 * of chunk i that belongs to commit k (its own entries, or a chunk record in front of it) is
 * live only if i < lim[k]. Each commit's size is read from its kept payload, or from its
 * record opened again (and added to kept when own_kept, the replay's own list in place of the
 * caller's: the replay then takes it from there). kept is never NULL. Returns 0 with *n_out set to the count of commits, -1 with err filled. On
 * entry *lim_out is an array of *n_out limits that the caller owns; on return *lim_out is that
 * array or a malloc'd one (the caller frees it when it is not its own). */
static int live_limits(const uint8_t *buf, const scp_journal_view *v, scp_journal_kept *kept,
                       size_t horizon, uint32_t cs, const uint8_t id[SCP_FILEID_LEN],
                       int own_kept, uint64_t **lim_out, size_t *n_out, scp_err *err) {
    size_t off = v->start ? v->start : SCP_JRN_HDR_LEN, ci = 0, cap = *n_out;
    /* (*lim_out: the caller's array of *n_out limits; a longer run of commits gets its own) */
    uint64_t *stack = *lim_out, *lim = stack;
#define AT(o) (buf + ((o) - v->base))
    while (off < horizon) {
        uint32_t type = scp_get_u32(AT(off));
        if (type == SCP_JREC_CHUNK) {
            off += SCP_JCHUNK_HDR_LEN + cs;
            continue;
        }
        if (type == SCP_JREC_MLOG) {
            off += SCP_JREC_HDR_LEN + (size_t)scp_get_u64(AT(off) + 8);
            continue;
        }
        assert(type == SCP_JREC_COMMIT); /* (the walk accepted every record up to the horizon) */
        uint64_t count = scp_get_u64(AT(off) + 8), size;
        if (ci == cap) {
            cap *= 2;
            uint64_t *nl = realloc(lim == stack ? NULL : lim, cap * sizeof *nl);
            if (!nl) {
                if (lim != stack) free(lim);
                return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory replaying a journal");
            }
            if (lim == stack) memcpy(nl, stack, ci * sizeof *nl);
            lim = nl;
        }
        if (ci < kept->n && kept->off[ci] == off && kept->count[ci] == count) {
            size = scp_get_u64(kept->pt[ci]);
        } else {
            uint8_t *pt = commit_open(AT(off), off, count, cs, v->key, id);
            if (!pt) {
                if (lim != stack) free(lim);
                return scp_fail(err, SCP_E_INTEGRITY, EIO,
                                "a journal commit record no longer authenticates");
            }
            size = scp_get_u64(pt);
            /* (the replay's own list, in walk order: it takes this payload from there) */
            if (!own_kept || kept->n != ci || kept_push(kept, pt, count, off) < 0) {
                if (!own_kept) kept->opens++;
                scp_wipe(pt, SCP_JCOMMIT_PT_LEN(count));
                free(pt);
            }
        }
        lim[ci++] = scp_chunks_in(size, cs);
        off += SCP_JCOMMIT_LEN(count);
    }
#undef AT
    for (size_t k = ci; k-- > 1;)
        if (lim[k] < lim[k - 1]) lim[k - 1] = lim[k];
    *lim_out = lim;
    *n_out = ci;
    return 0;
}

int scp_journal_replay_kept(const uint8_t *buf, const scp_journal_view *v, scp_journal_kept *kept,
                            size_t horizon, uint32_t chunk_size, const uint8_t id[SCP_FILEID_LEN],
                            scp_journal_chunk_cb chunk_cb, scp_journal_entry_cb entry_cb, void *ctx,
                            scp_err *err) {
    size_t off = v->start ? v->start : SCP_JRN_HDR_LEN, ci = 0;
    assert(v->base <= off);
    if (!horizon) horizon = v->end;
    assert(horizon >= v->end);
    /* Without the caller's payloads, the limits' walk opens each commit once into a list of
     * the replay's own, which the replay below then takes its entries from. */
    scp_journal_kept mine;
    memset(&mine, 0, sizeof mine);
    int own_kept = kept == NULL;
    if (own_kept) kept = &mine;
    /* (a follow's few commits fit on the stack: no allocation per follow) */
    uint64_t stack[32], *lim = stack;
    size_t nlim = sizeof stack / sizeof *stack;
    if (live_limits(buf, v, kept, horizon, chunk_size, id, own_kept, &lim, &nlim, err) < 0) {
        scp_journal_kept_free(&mine);
        return -1;
    }
    int rc = 0;
#define AT(o) (buf + ((o) - v->base)) /* (buf holds the journal from offset v->base on) */
    while (rc == 0 && off < v->end) {
        if (scp_get_u32(AT(off)) == SCP_JREC_CHUNK) {
            assert(ci < nlim); /* (a chunk record in [start, end) has its commit before end) */
            uint64_t index = scp_get_u64(AT(off) + 8);
            const uint8_t *ct = index < lim[ci] ? AT(off) + SCP_JCHUNK_HDR_LEN : NULL;
            if (chunk_cb && chunk_cb(ctx, index, ct) < 0) rc = -1;
            off += SCP_JCHUNK_HDR_LEN + chunk_size;
            continue;
        }
        if (scp_get_u32(AT(off)) == SCP_JREC_MLOG) { /* (the manifest's, not the file's) */
            off += SCP_JREC_HDR_LEN + (size_t)scp_get_u64(AT(off) + 8);
            continue;
        }
        uint64_t count = scp_get_u64(AT(off) + 8);
        assert(ci < nlim);
        if (entry_cb) {
            /* The walk's own payload of this record (the ci-th commit from the view's start
             * in both), else: scp_journal_find authenticated this record; it still must, in
             * this buffer. */
            int own = ci < kept->n && kept->off[ci] == off && kept->count[ci] == count;
            uint8_t *pt = own ? kept->pt[ci] : commit_open(AT(off), off, count, chunk_size, v->key, id);
            if (!pt) {
                rc = scp_fail(err, SCP_E_INTEGRITY, EIO,
                              "a journal commit record no longer authenticates");
                break;
            }
            if (!own && !own_kept) kept->opens++;
            const uint8_t *e = pt + 8;
            for (uint64_t i = 0; rc == 0 && i < count; i++) {
                uint64_t index = scp_get_u64(e + i * SCP_JENTRY_LEN);
                if (index < lim[ci]) rc = entry_cb(ctx, index, e + i * SCP_JENTRY_LEN + 8);
            }
            if (!own) { /* (a kept one is the caller's to free: scp_journal_kept_free) */
                scp_wipe(pt, SCP_JCOMMIT_PT_LEN(count));
                free(pt);
            }
        }
        ci++;
        off += SCP_JCOMMIT_LEN(count);
    }
#undef AT
    if (lim != stack) free(lim);
    scp_journal_kept_free(&mine);
    return rc < 0 ? -1 : 0;
}
