/* volume/manifest.c - the in-memory manifest (a sorted array of entries) and its commit to the
 * manifest slots on disk: two durable ones, written alternately with a sync, and a scratch slot
 * for namespace operations, written without one (docs/volume-format.md). */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "volume/internal.h"

long man_find(const scp_manifest *m, const char *path) {
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(m->e[mid].path, path);
        if (c == 0) return (long)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

int man_insert(scp_manifest *m, const scp_mentry *e, scp_err *err) {
    if (m->n == m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 16;
        scp_mentry *ne = realloc(m->e, ncap * sizeof *ne);
        if (!ne) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory growing the manifest");
        m->e = ne;
        m->cap = ncap;
    }
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(m->e[mid].path, e->path) < 0) lo = mid + 1;
        else hi = mid;
    }
    memmove(&m->e[lo + 1], &m->e[lo], (m->n - lo) * sizeof *m->e);
    m->e[lo] = *e;
    if (!m->e[lo].nlink) m->e[lo].nlink = 1; /* a new name of its own */
    m->n++;
    return 0;
}

long man_find_id(const scp_manifest *m, const uint8_t id[SCP_FILEID_LEN], long skip) {
    for (size_t k = 0; k < m->n; k++)
        if ((long)k != skip && memcmp(m->e[k].id, id, SCP_FILEID_LEN) == 0) return (long)k;
    return -1;
}

void man_links_add(scp_manifest *m, const uint8_t id[SCP_FILEID_LEN], int delta) {
    for (size_t k = 0; k < m->n; k++)
        if (memcmp(m->e[k].id, id, SCP_FILEID_LEN) == 0) m->e[k].nlink = (uint32_t)((int)m->e[k].nlink + delta);
}

void man_sync_links(scp_manifest *m, size_t i) {
    const scp_mentry *src = &m->e[i];
    if (src->nlink <= 1) return;
    for (size_t k = 0; k < m->n; k++) {
        scp_mentry *d = &m->e[k];
        if (k == i || memcmp(d->id, src->id, SCP_FILEID_LEN) != 0) continue;
        d->size = src->size;
        memcpy(d->root, src->root, SCP_HASH_LEN);
        d->mode = src->mode;
        d->uid = src->uid;
        d->gid = src->gid;
        d->mtime_ns = src->mtime_ns;
        assert(scp_mentry_same_file(d, src));
    }
}

void man_remove(scp_manifest *m, size_t i) {
    free(m->e[i].path);
    free(m->e[i].target);
    memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof *m->e);
    m->n--;
}

static void tag_compute(scp_volume *v, uint64_t gen, const uint8_t *body, size_t len,
                        scp_volume_tag *out) {
    uint8_t h[32], g[8];
    struct scp_buf b = {body, len};
    scp_sha256(&b, 1, h);
    scp_put_u64(g, gen);
    struct scp_buf parts[4] = {{"scp/v1/tag", 10}, {v->volid, SCP_VOLID_LEN}, {g, 8}, {h, 32}};
    memcpy(out->bytes, g, 8);
    /* HMAC cannot fail short of an OpenSSL malfunction; a zero MAC then fails every check. */
    if (scp_hmac(v->k_tag, 32, parts, 4, out->bytes + 8, NULL) < 0) memset(out->bytes + 8, 0, 32);
}

/* Generation a slot's header claims (unauthenticated), or 0. */
static uint64_t slot_peek(scp_volume *v, int i) {
    uint8_t h[16];
    if (v->slotfd[i] >= 0 && scp_pread_full(v->slotfd[i], h, sizeof h, 0) == (ssize_t)sizeof h &&
        memcmp(h, "SCPMAN\0\2", 8) == 0)
        return scp_get_u64(h + 8);
    return 0;
}

/* One byte of the lock file, shared by every process that opens the volume (crash-consistency
 * bookkeeping, not security: a host that changes it can only cost a sync or an orphan). */
static int lockbyte_get(scp_volume *v, off_t off) {
    uint8_t b = 0;
    return v->lockfd >= 0 && pread(v->lockfd, &b, 1, off) == 1 && b;
}
void vol_lockbyte_set(scp_volume *v, off_t off, int on) {
    uint8_t b = (uint8_t)(on != 0);
    if (v->lockfd >= 0 && lockbyte_get(v, off) != on) (void)!pwrite(v->lockfd, &b, 1, off);
}

/* Mark entry k of the lazy list as having chunks written in place (its bit in the map at
 * VOL_LAZY_INPLACE_OFF); on=0 clears it (a new entry starts without). */
static int lazy_mark(scp_volume *v, uint32_t k, int on) {
    uint8_t b = 0;
    off_t off = VOL_LAZY_INPLACE_OFF + k / 8;
    if (pread(v->lockfd, &b, 1, off) < 0) return -1;
    uint8_t nb = on ? (uint8_t)(b | 1u << (k % 8)) : (uint8_t)(b & ~(1u << (k % 8)));
    return nb == b || pwrite(v->lockfd, &nb, 1, off) == 1 ? 0 : -1;
}

int vol_lazy_add(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], int inplace) {
    uint8_t c[4] = {0};
    if (v->lockfd < 0) return -1;
    (void)!pread(v->lockfd, c, 4, VOL_LAZY_OFF);
    uint32_t n = scp_get_u32(c);
    if (n > VOL_LAZY_MAX) n = 0; /* (not ours: start over; the next durable commit is ours) */
    uint8_t ids[VOL_LAZY_MAX * SCP_FILEID_LEN];
    if (n && pread(v->lockfd, ids, n * SCP_FILEID_LEN, VOL_LAZY_OFF + 16) != (ssize_t)(n * SCP_FILEID_LEN))
        n = 0;
    for (uint32_t i = 0; i < n; i++)
        if (memcmp(ids + i * SCP_FILEID_LEN, id, SCP_FILEID_LEN) == 0)
            return inplace ? lazy_mark(v, i, 1) : 0;
    if (n == VOL_LAZY_MAX) return -1;
    scp_put_u32(c, n + 1);
    /* The mark before the count: a listed file is never seen without its mark. */
    if (lazy_mark(v, n, inplace) < 0 ||
        pwrite(v->lockfd, id, SCP_FILEID_LEN, VOL_LAZY_OFF + 16 + n * SCP_FILEID_LEN) != SCP_FILEID_LEN ||
        pwrite(v->lockfd, c, 4, VOL_LAZY_OFF) != 4)
        return -1;
    return 0;
}

/* fdatasync objects/<id><ext> if it exists (a file removed since, or never ours, is skipped). */
static int sync_object(scp_volume *v, const uint8_t *id, const char *ext) {
    char name[48];
    vol_object_name(id, ext, name);
    int fd = openat(v->objfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return 0;
    int rc = fdatasync(fd);
    close(fd);
    return rc;
}

/* Before a durable manifest: sync the journal of every file with lazy commits (any process's),
 * since the manifest names their roots, and the data objects of those marked as having chunks
 * written in place (the journal holds only their entries). Returns the list's length (to empty
 * it after), or -1. */
static long lazy_sync(scp_volume *v, scp_err *err) {
    uint8_t c[4] = {0};
    if (v->lockfd < 0 || pread(v->lockfd, c, 4, VOL_LAZY_OFF) != 4) return 0;
    uint32_t n = scp_get_u32(c);
    if (n == 0) return 0;
    if (n > VOL_LAZY_MAX) n = VOL_LAZY_MAX;
    uint8_t ids[VOL_LAZY_MAX * SCP_FILEID_LEN], marks[(VOL_LAZY_MAX + 7) / 8];
    if (pread(v->lockfd, ids, n * SCP_FILEID_LEN, VOL_LAZY_OFF + 16) != (ssize_t)(n * SCP_FILEID_LEN))
        return 0;
    /* Unreadable marks: sync every data object (slower, never less durable). */
    if (pread(v->lockfd, marks, sizeof marks, VOL_LAZY_INPLACE_OFF) != (ssize_t)sizeof marks)
        memset(marks, 0xff, sizeof marks);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *id = ids + i * SCP_FILEID_LEN;
        int rc = sync_object(v, id, ".j");
        if (rc == 0 && (marks[i / 8] >> (i % 8) & 1))
            rc = sync_object(v, id, ".d") < 0 || sync_object(v, id, ".s") < 0 ? -1 : 0;
        if (rc < 0) return scp_fail_errno(err, "cannot sync a file's objects before the manifest");
    }
    return n;
}

int vol_commit_manifest(scp_volume *v, int durable, scp_err *err) {
    uint8_t *body = NULL;
    size_t blen = 0;
    if (scp_manifest_encode(&v->man, &body, &blen, err) < 0) return -1;
    if (blen > SCP_MANIFEST_MAX_BODY) {
        free(body);
        return scp_fail(err, SCP_E_NOTSUP, EFBIG, "the manifest would exceed %u bytes",
                        SCP_MANIFEST_MAX_BODY);
    }
    uint64_t gen = v->gen + 1;
    size_t slen = SCP_MANSLOT_HDR_LEN + blen + SCP_GCMTAG_LEN;
    uint8_t *slot = malloc(slen);
    if (!slot) {
        free(body);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory writing the manifest");
    }
    memcpy(slot, "SCPMAN\0\2", 8);
    scp_put_u64(slot + 8, gen);
    scp_put_u32(slot + 44, (uint32_t)blen);
    uint8_t aad[SCP_VOLID_LEN + SCP_MANSLOT_HDR_LEN], key[32];
    /* A fresh salt (16) and nonce (12) per seal: each seal has its own key (format.h). */
    int rc = scp_random(slot + 16, SCP_SALT_LEN + SCP_NONCE_LEN, err);
    if (rc == 0) rc = scp_derive_key(v->k_man, SCP_LABEL_SEAL, slot + 16, SCP_SALT_LEN, key, err);
    if (rc == 0) {
        memcpy(aad, v->volid, SCP_VOLID_LEN);
        memcpy(aad + SCP_VOLID_LEN, slot, SCP_MANSLOT_HDR_LEN);
        rc = scp_aead_seal(key, slot + 32, aad, sizeof aad, body, blen,
                           slot + SCP_MANSLOT_HDR_LEN, slot + SCP_MANSLOT_HDR_LEN + blen, err);
    }
    scp_wipe(key, sizeof key);
    /* A durable commit makes the objects that the manifest names durable first (files created
     * lazily, by any process, since the last durable commit), then overwrites the OLDER of the
     * two durable slots: the newer stays intact if this write is torn. A lazy commit goes to
     * the scratch slot without a sync: if a power cut loses or tears it, the durable slots
     * still hold the last durable state, which is all POSIX promises before an fsync. */
    int fd = v->slotfd[2], si = 2;
    if (durable) {
        si = v->slot_gen[0] <= v->slot_gen[1] ? 0 : 1;
        fd = v->slotfd[si];
        if (rc == 0 && (v->objdir_dirty || lockbyte_get(v, VOL_LOCKBYTE_OBJDIR))) {
            if (fsync(v->objfd) < 0)
                rc = scp_fail_errno(err, "cannot sync the objects directory");
            else {
                v->objdir_dirty = 0;
                vol_lockbyte_set(v, VOL_LOCKBYTE_OBJDIR, 0);
            }
        }
    }
    long nlazy = rc == 0 && durable ? lazy_sync(v, err) : 0;
    if (nlazy < 0) rc = -1;
    if (rc == 0 && fd < 0) rc = scp_fail(err, SCP_E_SYS, EBADF, "the volume has no scratch slot (manifest.2)");
    if (rc == 0 && (scp_pwrite_full(fd, slot, slen, 0) < 0 || ftruncate(fd, (off_t)slen) < 0 ||
                    (durable && fdatasync(fd) < 0)))
        rc = scp_fail_errno(err, "cannot write the volume manifest");
    if (rc == 0) {
        v->gen = gen;
        if (si < 2) v->slot_gen[si] = gen;
        v->lazy = !durable;
        v->man_scratch = !durable;
        if (nlazy > 0) {
            uint8_t zero[4] = {0};
            (void)!pwrite(v->lockfd, zero, 4, VOL_LAZY_OFF);
        }
        tag_compute(v, gen, body, blen, &v->cur_tag);
        if (durable) {
            v->tag = v->cur_tag;
            if (v->cb) v->cb(v->cb_ctx, &v->tag);
            vol_doomed_drain(v);
        }
    }
    free(slot);
    scp_wipe(body, blen);
    free(body);
    return rc;
}

/* Read and authenticate one slot. Returns 0 with *m filled, or -1. */
static int slot_load(scp_volume *v, int i, scp_manifest *m, uint64_t *gen, scp_volume_tag *tag,
                     scp_err *err) {
    char name[16];
    snprintf(name, sizeof name, "manifest.%u", (unsigned)i % 3);
    uint8_t *buf = NULL, *body = NULL;
    size_t len = 0;
    scp_manslot s;
    int rc = -1;
    if (scp_read_file(v->dirfd, name, SCP_MANIFEST_MAX_BODY + 64, &buf, &len, err) < 0) return -1;
    if (scp_manslot_parse(buf, len, &s, err) < 0) goto out;
    body = malloc(s.body_len ? s.body_len : 1);
    if (!body) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory reading the manifest");
        goto out;
    }
    uint8_t aad[SCP_VOLID_LEN + SCP_MANSLOT_HDR_LEN];
    memcpy(aad, v->volid, SCP_VOLID_LEN);
    memcpy(aad + SCP_VOLID_LEN, buf, SCP_MANSLOT_HDR_LEN);
    uint8_t key[32];
    int opened = scp_derive_key(v->k_man, SCP_LABEL_SEAL, s.salt, SCP_SALT_LEN, key, err) == 0 &&
                 scp_aead_open(key, s.nonce, aad, sizeof aad, s.ciphertext, s.body_len, s.tag,
                               body, err) == 0;
    scp_wipe(key, sizeof key);
    if (!opened) goto out;
    if (scp_manifest_parse(body, s.body_len, m, err) < 0) goto out;
    *gen = s.generation;
    tag_compute(v, s.generation, body, s.body_len, tag);
    rc = 0;
out:
    if (body) scp_wipe(body, s.body_len);
    free(body);
    free(buf);
    return rc;
}

/* Load the newest authentic manifest slot (durable or scratch). */
int vol_load_manifest(scp_volume *v, scp_err *err) {
    scp_manifest m[3] = {{0}};
    uint64_t gen[3] = {0, 0, 0};
    scp_volume_tag tag[3];
    scp_err e[3];
    memset(e, 0, sizeof e);
    int ok[3], best = -1;
    for (int i = 0; i < 3; i++) {
        ok[i] = v->slotfd[i] >= 0 && slot_load(v, i, &m[i], &gen[i], &tag[i], &e[i]) == 0;
        if (ok[i] && (best < 0 || gen[i] > gen[best])) best = i;
    }
    if (best < 0) {
        scp_fail(err, SCP_E_INTEGRITY, EIO,
                 "the volume manifest fails authentication in every copy (%s); the volume was "
                 "modified or damaged",
                 e[0].msg);
        return -1;
    }
    if (gen[best] < v->gen) { /* never go back in one process's lifetime */
        for (int i = 0; i < 3; i++)
            if (ok[i]) scp_manifest_free(&m[i]);
        return scp_fail(err, SCP_E_ROLLBACK, EIO,
                        "the volume manifest went back from generation %llu to %llu while open",
                        (unsigned long long)v->gen, (unsigned long long)gen[best]);
    }
    scp_manifest_free(&v->man);
    v->man = m[best];
    v->gen = gen[best];
    for (int i = 0; i < 2; i++) v->slot_gen[i] = ok[i] ? gen[i] : 0;
    v->tag = v->cur_tag = tag[best];
    v->man_scratch = best == 2;
    for (int i = 0; i < 3; i++)
        if (ok[i] && i != best) scp_manifest_free(&m[i]);
    return 0;
}

uint64_t vol_durable_generation(scp_volume *v) {
    uint64_t a = slot_peek(v, 0), b = slot_peek(v, 1);
    return a > b ? a : b;
}

/* Highest generation claimed by the slot headers (unauthenticated: only a hint to reload). */
uint64_t vol_peek_generation(scp_volume *v) {
    uint64_t best = 0;
    for (int i = 0; i < 3; i++) {
        uint64_t g = slot_peek(v, i);
        if (g > best) best = g;
    }
    return best;
}

static int cmp_id(const void *a, const void *b) { return memcmp(a, b, SCP_FILEID_LEN); }

void vol_collect_garbage(scp_volume *v) {
    if (!lockbyte_get(v, VOL_LOCKBYTE_DOOMED)) return;
    /* Keep what any slot names: until two durable commits have passed a removal, a power cut
     * can bring back a state that has the file. And what this process has loaded (a file
     * unlinked while open is still read through its objects). */
    size_t n = 0, cap = 0;
    uint8_t(*ids)[SCP_FILEID_LEN] = NULL;
    scp_manifest m[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        uint64_t gen;
        scp_volume_tag tag;
        scp_err e;
        if (v->slotfd[i] >= 0 && slot_load(v, i, &m[i], &gen, &tag, &e) < 0) {
            m[i].n = 0;
            /* A slot that holds a manifest we cannot read (torn, or a read error) may name
             * objects still needed: keep everything until it is rewritten. */
            if (slot_peek(v, i) != 0) {
                for (int k = 0; k < i; k++) scp_manifest_free(&m[k]);
                return;
            }
        }
        cap += m[i].n;
    }
    for (scp_file *f = v->files; f; f = f->next) cap++;
    ids = malloc((cap ? cap : 1) * sizeof *ids);
    /* A file that an older slot still names but the current manifest does not is collected at
     * a later open, after more durable commits: the flag stays set until none is left. */
    uint8_t(*cur)[SCP_FILEID_LEN] = malloc((v->man.n ? v->man.n : 1) * sizeof *cur);
    for (size_t k = 0; cur && k < v->man.n; k++) memcpy(cur[k], v->man.e[k].id, SCP_FILEID_LEN);
    if (cur) qsort(cur, v->man.n, sizeof *cur, cmp_id);
    int pending = 0;
    for (int i = 0; i < 3; i++) {
        for (size_t k = 0; ids && k < m[i].n; k++) {
            memcpy(ids[n++], m[i].e[k].id, SCP_FILEID_LEN);
            if (!cur || !bsearch(m[i].e[k].id, cur, v->man.n, sizeof *cur, cmp_id)) pending = 1;
        }
        scp_manifest_free(&m[i]);
    }
    free(cur);
    if (!ids) return; /* out of memory: keep every object rather than guess */
    for (scp_file *f = v->files; f; f = f->next) memcpy(ids[n++], f->id, SCP_FILEID_LEN);
    qsort(ids, n, sizeof *ids, cmp_id);
    int dfd = dup(v->objfd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0) close(dfd);
        free(ids);
        return;
    }
    rewinddir(d); /* the duplicate shares its offset with objfd */
    struct dirent *de;
    while ((de = readdir(d))) {
        uint8_t id[SCP_FILEID_LEN];
        char stem[2 * SCP_FILEID_LEN + 1];
        const char *dot = strchr(de->d_name, '.');
        int ours = 0;
        for (int k = 0; dot && k < VOL_NOBJECTS; k++) ours |= strcmp(dot, vol_object_ext[k]) == 0;
        if (!ours || dot - de->d_name != (ptrdiff_t)2 * SCP_FILEID_LEN) continue;
        memcpy(stem, de->d_name, sizeof stem - 1); /* scp_unhex wants the digits alone */
        stem[sizeof stem - 1] = '\0';
        if (scp_unhex(stem, id, SCP_FILEID_LEN) < 0) continue; /* not ours to judge */
        if (!bsearch(id, ids, n, sizeof *ids, cmp_id)) unlinkat(v->objfd, de->d_name, 0);
    }
    closedir(d);
    free(ids);
    if (!pending) vol_lockbyte_set(v, VOL_LOCKBYTE_DOOMED, 0);
}

static const scp_mentry *entry_by_id(const scp_manifest *m, const uint8_t id[SCP_FILEID_LEN]) {
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].type == 1 && memcmp(m->e[i].id, id, SCP_FILEID_LEN) == 0) return &m->e[i];
    return NULL;
}

/* The entries that a log's commit records name, the newest per chunk, and the chunks that have
 * a record in the log (whose bytes the log itself redoes). */
struct settle_walk {
    u64map logged;   /* chunk index -> 1 */
    u64map at;       /* chunk index -> its newest entry's place in ents */
    uint8_t *ents;   /* SCP_CHUNK_ENTRY_LEN each */
    size_t n, cap;
    uint64_t nchunks; /* of the state checked: entries beyond it are dead */
};

static int settle_chunk(void *ctx, uint64_t index, const uint8_t *ct) {
    (void)ct;
    struct settle_walk *w = ctx;
    return u64map_put(&w->logged, index, 1) < 0 ? -1 : 0;
}

static int settle_entry(void *ctx, uint64_t index, const uint8_t *e) {
    struct settle_walk *w = ctx;
    uint64_t k;
    if (index >= w->nchunks) return 0;
    if (!u64map_get(&w->at, index, &k)) {
        if (w->n == w->cap) {
            size_t cap = w->cap ? 2 * w->cap : 256;
            uint8_t *p = realloc(w->ents, cap * SCP_CHUNK_ENTRY_LEN);
            if (!p) return -1;
            w->ents = p;
            w->cap = cap;
        }
        k = w->n++;
        if (u64map_put(&w->at, index, k) < 0) return -1;
    }
    memcpy(w->ents + k * SCP_CHUNK_ENTRY_LEN, e, SCP_CHUNK_ENTRY_LEN);
    return 0;
}

/* Do the chunks that the log's commit records name in place (no record of their own in the
 * log: shared mode's fresh and filled-hole writes, chunk_target_shared) authenticate? A lazy
 * commit does not sync them, so a power cut may have kept the commit record and lost them. */
static int inplace_chunks_ok(scp_volume *v, const scp_mentry *e, const uint8_t *buf,
                             const scp_journal_view *jv, const uint8_t key[32]) {
    struct settle_walk w = {.nchunks = nchunks_of(e->size, v->cs)};
    u64map_init(&w.logged);
    u64map_init(&w.at);
    int ok = scp_journal_replay(buf, jv, v->cs, e->id, settle_chunk, settle_entry, &w, NULL) == 0;
    int fd[2] = {-1, -1};
    for (int s = 0; s < 2 && ok; s++) {
        char name[48];
        vol_object_name(e->id, s ? ".s" : ".d", name);
        fd[s] = openat(v->objfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    }
    uint8_t *ct = malloc(v->cs), *pt = malloc(v->cs), aad[SCP_VOLID_LEN + SCP_FILEID_LEN + 8], sk[32];
    ok = ok && ct && pt;
    size_t pos = 0;
    uint64_t i, k;
    while (ok && u64map_next(&w.at, &pos, &i, &k)) {
        const uint8_t *en = w.ents + k * SCP_CHUNK_ENTRY_LEN;
        if (u64map_get(&w.logged, i, NULL) || is_hole(en)) continue;
        int f = fd[SCP_ENT_SLOT(en)];
        memcpy(aad, v->volid, SCP_VOLID_LEN);
        memcpy(aad + SCP_VOLID_LEN, e->id, SCP_FILEID_LEN);
        scp_put_u64(aad + SCP_VOLID_LEN + SCP_FILEID_LEN, i);
        ok = f >= 0 && scp_pread_full(f, ct, v->cs, (off_t)(i * v->cs)) == (ssize_t)v->cs &&
             scp_derive_key(key, SCP_LABEL_CHUNK, en, SCP_SALT_LEN, sk, NULL) == 0 &&
             scp_aead_open(sk, en + SCP_ENT_NONCE_OFF, aad, sizeof aad, ct, v->cs,
                           en + SCP_ENT_TAG_OFF, pt, NULL) == 0;
    }
    scp_wipe(sk, sizeof sk);
    if (pt) scp_wipe(pt, v->cs);
    free(ct);
    free(pt);
    for (int s = 0; s < 2; s++)
        if (fd[s] >= 0) close(fd[s]);
    free(w.ents);
    u64map_free(&w.logged);
    u64map_free(&w.at);
    return ok;
}

/* Does file id's journal redo the state that entry e names? (Its commit record is there, and
 * the chunks it names in place are on disk.) */
static int journal_redoes(scp_volume *v, const scp_mentry *e) {
    char name[48];
    vol_object_name(e->id, ".j", name);
    uint8_t *buf = NULL, key[32];
    size_t len = 0;
    scp_journal_view jv;
    int ok = scp_read_file(v->objfd, name, (size_t)1 << 30, &buf, &len, NULL) == 0 &&
             vol_file_key(v, e->id, key, NULL) == 0 &&
             scp_journal_find(buf, len, v->cs, key, e->id, e->root, e->size, &jv) == 1 &&
             inplace_chunks_ok(v, e, buf, &jv, key);
    scp_wipe(key, sizeof key);
    scp_wipe(&jv, sizeof jv);
    free(buf);
    return ok;
}

/* Does the scratch manifest's file entry e name content that the durable manifest dm does
 * not (a lazy commit's)? A file created since, still empty, names none. */
static int entry_is_lazy(const scp_manifest *dm, const scp_mentry *e) {
    const scp_mentry *d = entry_by_id(dm, e->id);
    if (d) return !(d->size == e->size && memcmp(d->root, e->root, SCP_HASH_LEN) == 0);
    uint8_t empty[SCP_HASH_LEN];
    file_empty_root(e->id, empty);
    return !(e->size == 0 && memcmp(e->root, empty, SCP_HASH_LEN) == 0);
}

int vol_settle_lazy(scp_volume *v, scp_err *err) {
    uint8_t c[4] = {0};
    if (!v->man_scratch) return 0; /* the newest state is a durable one */
    if (v->lockfd < 0 || pread(v->lockfd, c, 4, VOL_LAZY_OFF) != 4) memset(c, 0, sizeof c);
    uint32_t n = scp_get_u32(c);
    /* The newest durable state, to compare with and to fall back to. */
    scp_manifest dm[2] = {{0}};
    uint64_t dg[2] = {0, 0};
    scp_volume_tag dt[2];
    int ok[2], best = -1;
    for (int i = 0; i < 2; i++) {
        ok[i] = slot_load(v, i, &dm[i], &dg[i], &dt[i], NULL) == 0;
        if (ok[i] && (best < 0 || dg[i] > dg[best])) best = i;
    }
    /* Every file whose content the scratch slot names beyond the durable state, listed in the
     * lock file or not: the list is written without a sync, so a power cut may keep the
     * scratch slot that names a lazy root and lose the list entry (volume_powercut_shared). */
    size_t nlazy = 0;
    int sync_failed = 0; /* (then take the durable state) */
    for (size_t k = 0; best >= 0 && k < v->man.n; k++) {
        const scp_mentry *e = &v->man.e[k];
        if (e->type != SCP_MTYPE_FILE || !entry_is_lazy(&dm[best], e)) continue;
        nlazy++;
        if (sync_object(v, e->id, ".j") < 0 || sync_object(v, e->id, ".d") < 0 ||
            sync_object(v, e->id, ".s") < 0)
            sync_failed = 1;
    }
    if (n == 0 && nlazy == 0) { /* nothing lazy: the scratch slot holds namespace changes only */
        for (int i = 0; i < 2; i++)
            if (ok[i]) scp_manifest_free(&dm[i]);
        return 0;
    }
    if (lazy_sync(v, NULL) < 0) sync_failed = 1;
    int redone = best >= 0 && !sync_failed;
    for (size_t k = 0; k < v->man.n && redone; k++) {
        const scp_mentry *e = &v->man.e[k];
        if (e->type == SCP_MTYPE_FILE && entry_is_lazy(&dm[best], e) && !journal_redoes(v, e))
            redone = 0;
    }
    if (!redone && best >= 0) { /* back to the durable state, under a newer generation */
        scp_manifest_free(&v->man);
        v->man = dm[best];
        memset(&dm[best], 0, sizeof dm[best]);
    }
    for (int i = 0; i < 2; i++)
        if (ok[i]) scp_manifest_free(&dm[i]);
    return vol_commit_manifest(v, 1, err);
}
