/* fuzz/fuzz_manifest.c - the manifest slot parser and the manifest body parser/encoder.
 *
 * Every input is tried both as a slot file (manifest.0/1) and as a decrypted manifest body.
 * Asserts:
 *   slot: no memory error; an accepted slot is exactly header + body + tag, its pointers lie
 *     inside the buffer and its fields are the bytes at their documented offsets.
 *   body: no memory error, no leak; a refused body leaves the manifest empty; an accepted one
 *     satisfies every invariant the format promises (types, normalized non-empty paths or the
 *     root's own entry "/", a directory, in strictly increasing order, each parent an existing directory, directories of size 0,
 *     an id shared only by hard links: entries that are not directories and agree on type,
 *     size, root, mode, owner, times and target, each with nlink = the number of entries of its
 *     id), encodes back to exactly the input (canonical form), and the round trip
 *     parse(encode(parse(x))) == parse(x) holds field by field (nlink included). */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "volume/format.h"

static void check_slot(const uint8_t *data, size_t size) {
    scp_manslot s;
    scp_err err;
    memset(&s, 0, sizeof s);
    if (scp_manslot_parse(data, size, &s, &err) < 0) {
        FUZZ_CHECK(err.code == SCP_E_INTEGRITY && err.sys == EIO);
        return;
    }
    FUZZ_CHECK(size >= SCP_MANSLOT_HDR_LEN + SCP_GCMTAG_LEN);
    FUZZ_CHECK(memcmp(data, "SCPMAN\0\2", 8) == 0);
    FUZZ_CHECK(s.body_len <= SCP_MANIFEST_MAX_BODY);
    FUZZ_CHECK((size_t)s.body_len + SCP_MANSLOT_HDR_LEN + SCP_GCMTAG_LEN == size);
    FUZZ_CHECK(s.ciphertext == data + SCP_MANSLOT_HDR_LEN);
    FUZZ_CHECK(s.tag == data + SCP_MANSLOT_HDR_LEN + s.body_len);
    FUZZ_CHECK(s.tag + SCP_GCMTAG_LEN == data + size);
    FUZZ_CHECK(s.generation == scp_get_u64(data + 8));
    FUZZ_CHECK(memcmp(s.salt, data + 16, SCP_SALT_LEN) == 0);
    FUZZ_CHECK(memcmp(s.nonce, data + 32, SCP_NONCE_LEN) == 0);
    FUZZ_CHECK(s.body_len == scp_get_u32(data + 44));
}

static int entry_eq(const scp_mentry *a, const scp_mentry *b) {
    return a->type == b->type && strcmp(a->path, b->path) == 0 &&
           memcmp(a->id, b->id, SCP_FILEID_LEN) == 0 && a->size == b->size &&
           memcmp(a->root, b->root, SCP_HASH_LEN) == 0 && a->mode == b->mode && a->uid == b->uid &&
           a->gid == b->gid && a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns &&
           a->atime_ns == b->atime_ns && !a->target == !b->target &&
           (!a->target || strcmp(a->target, b->target) == 0) && a->nlink == b->nlink;
}

static void check_invariants(const scp_manifest *m) {
    static char norm[SCP_MAX_PATH + 1];
    for (size_t i = 0; i < m->n; i++) {
        const scp_mentry *e = m->e[i];
        /* file, directory, node (FIFO/device: metadata only), symbolic link (format.h) */
        FUZZ_CHECK(e->type >= 1 && e->type <= 4);
        FUZZ_CHECK((e->type == 4) == (e->target != NULL));
        if (e->target) FUZZ_CHECK(strlen(e->target) >= 1 && strlen(e->target) <= SCP_MAX_PATH && e->size == strlen(e->target));
        FUZZ_CHECK(e->path != NULL && e->path[0] != '\0');
        size_t plen = strlen(e->path);
        FUZZ_CHECK(plen <= SCP_MAX_PATH);
        if (scp_is_root_entry(e->path)) { /* the root's own entry "/": a directory (format.h) */
            FUZZ_CHECK(e->type == 2);
        } else {
            FUZZ_CHECK(scp_path_normalize(e->path, norm, sizeof norm, NULL) == 0);
            FUZZ_CHECK(strcmp(norm, e->path) == 0);
        }
        if (i > 0) FUZZ_CHECK(strcmp(m->e[i - 1]->path, e->path) < 0);
        if (e->type == 2) FUZZ_CHECK(e->size == 0);
        /* The parent (everything before the last '/') is an earlier directory entry. */
        const char *slash = strrchr(e->path, '/');
        if (slash && !scp_is_root_entry(e->path)) {
            size_t pl = (size_t)(slash - e->path);
            int found = 0;
            for (size_t j = 0; j < i && !found; j++)
                found = strlen(m->e[j]->path) == pl && memcmp(m->e[j]->path, e->path, pl) == 0 &&
                        m->e[j]->type == 2;
            FUZZ_CHECK(found);
        }
        /* hard links: names of one file share its id and all its metadata (format.h) */
        uint32_t names = 0;
        for (size_t j = 0; j < m->n; j++) {
            const scp_mentry *o = m->e[j];
            if (memcmp(o->id, e->id, SCP_FILEID_LEN) != 0) continue;
            names++;
            if (j == i) continue;
            FUZZ_CHECK(e->type != 2 && o->type == e->type && o->size == e->size &&
                       memcmp(o->root, e->root, SCP_HASH_LEN) == 0 && o->mode == e->mode &&
                       o->uid == e->uid && o->gid == e->gid && o->mtime_ns == e->mtime_ns &&
                       o->ctime_ns == e->ctime_ns && o->atime_ns == e->atime_ns);
            FUZZ_CHECK(!o->target == !e->target && (!e->target || strcmp(o->target, e->target) == 0));
        }
        FUZZ_CHECK(e->nlink == names);
    }
}

static void check_body(const uint8_t *data, size_t size) {
    scp_manifest m;
    scp_err err;
    memset(&m, 0xA5, sizeof m);
    if (scp_manifest_parse(data, size, &m, &err) < 0) {
        FUZZ_CHECK(m.n == 0 && m.e == NULL && m.cap == 0);
        FUZZ_CHECK(err.sys == EIO || err.sys == ENOMEM);
        return;
    }
    FUZZ_CHECK(m.n <= m.cap);
    FUZZ_CHECK(m.n == scp_get_u32(data));
    check_invariants(&m);
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    FUZZ_CHECK(scp_manifest_encode(&m, &enc, &enc_len, &err) == 0);
    FUZZ_CHECK(enc_len == size && memcmp(enc, data, size) == 0);
    scp_manifest m2;
    FUZZ_CHECK(scp_manifest_parse(enc, enc_len, &m2, &err) == 0);
    FUZZ_CHECK(m2.n == m.n);
    for (size_t i = 0; i < m.n; i++) FUZZ_CHECK(entry_eq(m.e[i], m2.e[i]));
    free(enc);
    scp_manifest_free(&m2);
    scp_manifest_free(&m);
    FUZZ_CHECK(m.n == 0 && m.e == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_slot(data, size);
    check_body(data, size);
    return 0;
}
