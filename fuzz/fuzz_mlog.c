/* fuzz/fuzz_mlog.c - the manifest log's parsers (format 3): log header, record framing, delta
 * body, and the application of a delta to a manifest.
 *
 * Every input is tried as a log file (header, then records back to back, as the volume walks
 * them) and as a decrypted delta body applied to a small fixed manifest.
 * Asserts:
 *   log: no memory error; an accepted header is the magic and its fields at their offsets; each
 *     accepted record lies inside the buffer (header, body_len bytes, tag), its flags are 0 or
 *     durable, its body at most SCP_MREC_MAX_BODY; a refusal is SCP_E_INTEGRITY/EIO.
 *   delta: no memory error, no leak; a refused body leaves the delta empty; an accepted one has
 *     normalized non-empty paths, puts and removals each strictly increasing, none in both, and
 *     valid entries (types, directory sizes, link targets). Applied to the fixed manifest: on
 *     success the result satisfies every manifest invariant (sorted, each parent an existing
 *     directory), holds every put as given, none of the removed paths, and encodes to a body
 *     that the manifest parser accepts, whose entries have the same nlink (hard links: the
 *     names of an id agree and each counts them; the fixed manifest has a file with two); it
 *     returns 1 exactly when it removed a path or gave one another id. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "volume/format.h"

static void check_log(const uint8_t *data, size_t size) {
    scp_mlog_hdr h;
    scp_err err;
    if (scp_mlog_hdr_parse(data, size, &h, &err) < 0) {
        FUZZ_CHECK(err.code == SCP_E_INTEGRITY && err.sys == EIO);
        return;
    }
    FUZZ_CHECK(size >= SCP_MLOG_HDR_LEN && memcmp(data, "SCPMLOG\1", 8) == 0);
    FUZZ_CHECK(h.base_gen == scp_get_u64(data + 8));
    FUZZ_CHECK(memcmp(h.base_salt, data + 16, SCP_SALT_LEN) == 0);
    FUZZ_CHECK(memcmp(h.log_salt, data + 32, SCP_SALT_LEN) == 0);
    size_t off = SCP_MLOG_HDR_LEN;
    while (off < size) {
        scp_mrec r;
        if (scp_mrec_parse(data + off, size - off, &r, &err) < 0) {
            FUZZ_CHECK(err.code == SCP_E_INTEGRITY && err.sys == EIO);
            break;
        }
        FUZZ_CHECK(r.body_len <= SCP_MREC_MAX_BODY);
        FUZZ_CHECK((r.flags & ~SCP_MREC_DURABLE) == 0);
        FUZZ_CHECK(r.len == (size_t)SCP_MREC_HDR_LEN + r.body_len + SCP_GCMTAG_LEN);
        FUZZ_CHECK(r.len <= size - off);
        FUZZ_CHECK(r.nonce == data + off + 16 && r.ciphertext == data + off + SCP_MREC_HDR_LEN);
        FUZZ_CHECK(r.tag + SCP_GCMTAG_LEN == data + off + r.len);
        FUZZ_CHECK(r.generation == scp_get_u64(data + off + 8));
        off += r.len;
    }
}

static int normalized(const char *p) {
    static char norm[SCP_MAX_PATH + 1];
    return p && p[0] && scp_path_normalize(p, norm, sizeof norm, NULL) == 0 && strcmp(norm, p) == 0;
}

/* d (dir), d/f (file), d/g (a second name of d/f), d/s (dir), d/s/x (file), z (link) */
static void base_manifest(scp_manifest *m) {
    static const struct {
        uint8_t type;
        const char *path;
        int id, nlink;
    } ents[] = {{2, "d", 0, 1}, {1, "d/f", 1, 2}, {1, "d/g", 1, 2}, {2, "d/s", 3, 1},
                {1, "d/s/x", 4, 1}, {4, "z", 5, 1}};
    const size_t n = sizeof ents / sizeof ents[0];
    memset(m, 0, sizeof *m);
    m->e = calloc(n, sizeof *m->e);
    FUZZ_CHECK(m->e);
    m->cap = n;
    for (size_t i = 0; i < n; i++) {
        scp_mentry *e = calloc(1, sizeof *e);
        FUZZ_CHECK(e);
        m->e[m->n++] = e;
        e->type = ents[i].type;
        e->path = strdup(ents[i].path);
        memset(e->id, 0x10 + ents[i].id, SCP_FILEID_LEN);
        e->nlink = (uint32_t)ents[i].nlink;
        e->mode = 0640;
        if (e->type == 4) {
            e->target = strdup("d/f");
            e->size = 3;
        }
    }
}

static void check_manifest(const scp_manifest *m) {
    for (size_t i = 0; i < m->n; i++) {
        const scp_mentry *e = m->e[i];
        FUZZ_CHECK(normalized(e->path));
        if (i > 0) FUZZ_CHECK(strcmp(m->e[i - 1]->path, e->path) < 0);
        const char *slash = strrchr(e->path, '/');
        if (slash) {
            size_t pl = (size_t)(slash - e->path);
            int found = 0;
            for (size_t j = 0; j < i && !found; j++)
                found = strlen(m->e[j]->path) == pl && memcmp(m->e[j]->path, e->path, pl) == 0 &&
                        m->e[j]->type == SCP_MTYPE_DIR;
            FUZZ_CHECK(found);
        }
    }
}

static void check_delta(const uint8_t *data, size_t size) {
    scp_mdelta d;
    scp_err err;
    memset(&d, 0xA5, sizeof d);
    if (scp_mdelta_parse(data, size, &d, &err) < 0) {
        FUZZ_CHECK(d.put == NULL && d.del == NULL && d.nput == 0 && d.ndel == 0);
        FUZZ_CHECK(err.sys == EIO || err.sys == ENOMEM);
        return;
    }
    FUZZ_CHECK(d.nput == scp_get_u32(data) && d.ndel == scp_get_u32(data + 4));
    for (size_t i = 0; i < d.nput; i++) {
        const scp_mentry *e = &d.put[i];
        FUZZ_CHECK(normalized(e->path));
        FUZZ_CHECK(e->type >= 1 && e->type <= 4);
        FUZZ_CHECK((e->type == SCP_MTYPE_LINK) == (e->target != NULL));
        if (e->type == SCP_MTYPE_DIR) FUZZ_CHECK(e->size == 0);
        if (i > 0) FUZZ_CHECK(strcmp(d.put[i - 1].path, e->path) < 0);
        for (size_t j = 0; j < d.ndel; j++) FUZZ_CHECK(strcmp(d.del[j], e->path) != 0);
    }
    for (size_t i = 0; i < d.ndel; i++) {
        FUZZ_CHECK(normalized(d.del[i]));
        if (i > 0) FUZZ_CHECK(strcmp(d.del[i - 1], d.del[i]) < 0);
    }
    scp_manifest m;
    base_manifest(&m);
    int lost = 0;
    for (size_t i = 0; i < d.nput; i++)
        for (size_t k = 0; k < m.n; k++)
            if (!strcmp(m.e[k]->path, d.put[i].path)) lost |= memcmp(m.e[k]->id, d.put[i].id, SCP_FILEID_LEN) != 0;
    int rc = scp_manifest_apply(&m, &d, NULL, NULL, NULL, &err);
    if (rc >= 0) {
        FUZZ_CHECK(rc == (d.ndel > 0 || lost)); /* a path lost its entry or its id */
        check_manifest(&m);
        for (size_t i = 0; i < d.nput; i++) {
            size_t k = 0;
            while (k < m.n && strcmp(m.e[k]->path, d.put[i].path) != 0) k++;
            FUZZ_CHECK(k < m.n && m.e[k]->type == d.put[i].type && m.e[k]->size == d.put[i].size &&
                       memcmp(m.e[k]->id, d.put[i].id, SCP_FILEID_LEN) == 0);
        }
        for (size_t i = 0; i < d.ndel; i++)
            for (size_t k = 0; k < m.n; k++) FUZZ_CHECK(strcmp(m.e[k]->path, d.del[i]) != 0);
        uint8_t *enc = NULL;
        size_t enc_len = 0;
        FUZZ_CHECK(scp_manifest_encode(&m, &enc, &enc_len, &err) == 0);
        scp_manifest m2;
        FUZZ_CHECK(scp_manifest_parse(enc, enc_len, &m2, &err) == 0);
        FUZZ_CHECK(m2.n == m.n);
        for (size_t i = 0; i < m.n && i < m2.n; i++) FUZZ_CHECK(m2.e[i]->nlink == m.e[i]->nlink);
        scp_manifest_free(&m2);
        free(enc);
    }
    scp_manifest_free(&m);
    scp_mdelta_free(&d);
    FUZZ_CHECK(d.put == NULL && d.del == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_log(data, size);
    check_delta(data, size);
    return 0;
}
