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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "volume/internal.h"
#include "volume/marena.h"
#include "volume/vstats.h"

long man_find(const scp_manifest *m, const char *path) {
    assert(path); /* (a loaded file's path goes NULL when another process removes its name) */
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(m->e[mid]->path, path);
        if (c == 0) return (long)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

int man_insert(scp_manifest *m, const scp_mentry *e, scp_err *err) {
    if (m->n == m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 16;
        scp_mentry **ne = realloc(m->e, ncap * sizeof(scp_mentry *));
        if (!ne) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory growing the manifest");
        m->e = ne;
        m->cap = ncap;
    }
    scp_mentry *x = m->nspare ? m->spare[--m->nspare] : malloc(sizeof *x);
    if (!x) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory growing the manifest");
    *x = *e;
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(m->e[mid]->path, e->path) < 0) lo = mid + 1;
        else hi = mid;
    }
    memmove(&m->e[lo + 1], &m->e[lo], (m->n - lo) * sizeof(scp_mentry *));
    m->ver++;
    m->e[lo] = x;
    if (!m->e[lo]->nlink) m->e[lo]->nlink = 1; /* a new name of its own */
    m->n++;
    return 0;
}

int man_reserve(scp_manifest *m, unsigned k) {
    assert(k <= sizeof m->spare / sizeof m->spare[0]);
    while (m->nspare < k) {
        scp_mentry *x = malloc(sizeof *x);
        if (!x) return -1;
        m->spare[m->nspare++] = x;
    }
    return 0;
}

long man_find_id(const scp_manifest *m, const uint8_t id[SCP_FILEID_LEN], long skip) {
    for (size_t k = 0; k < m->n; k++)
        if ((long)k != skip && memcmp(m->e[k]->id, id, SCP_FILEID_LEN) == 0) return (long)k;
    return -1;
}

void man_links_add(scp_manifest *m, const uint8_t id[SCP_FILEID_LEN], int delta) {
    m->ver++;
    for (size_t k = 0; k < m->n; k++)
        if (memcmp(m->e[k]->id, id, SCP_FILEID_LEN) == 0) m->e[k]->nlink = (uint32_t)((int)m->e[k]->nlink + delta);
}

void man_sync_links(scp_manifest *m, size_t i) {
    const scp_mentry *src = m->e[i];
    if (src->nlink <= 1) return;
    m->ver++; /* (other entries than i change) */
    for (size_t k = 0; k < m->n; k++) {
        scp_mentry *d = m->e[k];
        if (k == i || memcmp(d->id, src->id, SCP_FILEID_LEN) != 0) continue;
        d->size = src->size;
        memcpy(d->root, src->root, SCP_HASH_LEN);
        d->mode = src->mode;
        d->uid = src->uid;
        d->gid = src->gid;
        d->mtime_ns = src->mtime_ns;
        d->ctime_ns = src->ctime_ns;
        d->atime_ns = src->atime_ns;
        assert(scp_mentry_same_file(d, src));
    }
}

/* The entry of path's parent directory, or -1. A name directly under the root has the root's
 * own entry as its parent once there is one (SCP_ROOT_ENTRY: made by a setattr of the root);
 * until then none, so that making names never adds the entry (a build before it refuses a
 * manifest that has it). */
static long parent_index(const scp_manifest *m, const char *path) {
    long i = scp_manifest_parent(m, path);
    if (i == SCP_PARENT_ROOT) return scp_is_root_entry(path) ? -1 : man_find(m, SCP_ROOT_ENTRY);
    return i >= 0 ? i : -1;
}

/* Entry i's (-1: none) mtime = ctime = now; its old times back. */
static man_dtimes dir_touch(scp_manifest *m, long i, int64_t now) {
    man_dtimes saved = {0, 0};
    if (i < 0) return saved;
    m->ver++;
    saved.mtime_ns = m->e[i]->mtime_ns;
    saved.ctime_ns = m->e[i]->ctime_ns;
    m->e[i]->mtime_ns = m->e[i]->ctime_ns = now;
    return saved;
}

man_dtimes man_parent_touch(scp_manifest *m, const char *path, int64_t now) {
    return dir_touch(m, parent_index(m, path), now);
}

void man_parent_untouch(scp_manifest *m, const char *path, man_dtimes saved) {
    long i = parent_index(m, path);
    if (i < 0) return;
    m->ver++;
    m->e[i]->mtime_ns = saved.mtime_ns;
    m->e[i]->ctime_ns = saved.ctime_ns;
}

void man_ctime_touch(scp_manifest *m, size_t i, int64_t now) {
    m->ver++;
    m->e[i]->ctime_ns = now;
    man_sync_links(m, i);
}

void man_remove(scp_manifest *m, size_t i) {
    m->ver++;
    marena_free(m->e[i]->path);
    marena_free(m->e[i]->target);
    if (m->nspare < sizeof m->spare / sizeof m->spare[0]) m->spare[m->nspare++] = m->e[i];
    else marena_free(m->e[i]);
    memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof(scp_mentry *));
    m->n--;
}

/* The volume tag of generation gen whose state hash is h: format 2, SHA-256 of the manifest
 * body; format 3, the state hash that the slot carries or the log's chain gives. */
static void tag_of(scp_volume *v, uint64_t gen, const uint8_t h[32], scp_volume_tag *out) {
    uint8_t g[8];
    scp_put_u64(g, gen);
    struct scp_buf parts[4] = {{v->mlog ? "scp/v3/tag" : "scp/v1/tag", 10},
                               {v->volid, SCP_VOLID_LEN}, {g, 8}, {h, 32}};
    memcpy(out->bytes, g, 8);
    /* HMAC cannot fail short of an OpenSSL malfunction; a zero MAC then fails every check. */
    if (scp_hmac(v->k_tag, 32, parts, 4, out->bytes + 8, NULL) < 0) memset(out->bytes + 8, 0, 32);
}

static void tag_compute(scp_volume *v, uint64_t gen, const uint8_t *body, size_t len,
                        scp_volume_tag *out) {
    uint8_t h[32];
    scp_sha256_buf(body, len, h);
    tag_of(v, gen, h, out);
}

/* Format 3 leaves the tags due where a state moves (mlog_took: every lazy commit; a catch-up:
 * every other process's commit) and computes them only when they are read: an HMAC each, which
 * the per-write publication and every catch-up of shared mode paid for a tag that only an
 * fsync reports. cur_tag is the tag of (gen, statehash) as they stand when it is settled;
 * every place that moves them leaves it due or sets it, so it is never settled for another
 * state. tag keeps the pair it was due for (tag_gen, tag_sh), which a later commit does not
 * move. */
void vol_tags_settle(scp_volume *v) {
    if (v->cur_tag_due) {
        assert(v->mlog);
        tag_of(v, v->gen, v->statehash, &v->cur_tag);
        v->cur_tag_due = 0;
    }
    if (v->tag_due) { /* (a durable commit's without a report: the state's own, computed once) */
        if (v->mlog && v->tag_gen == v->gen && memcmp(v->tag_sh, v->statehash, SCP_HASH_LEN) == 0)
            v->tag = v->cur_tag;
        else
            tag_of(v, v->tag_gen, v->tag_sh, &v->tag);
        v->tag_due = 0;
    }
}

/* The fold epoch (internal.h, VOL_MLOG_EPOCH_OFF): 0 without the mapped page, which makes
 * every catch-up read the slot headers, as before. */
static uint64_t mlog_epoch(scp_volume *v) {
    return v->hint ? __atomic_load_n(v->hint + VOL_MLOG_EPOCH_OFF / 8, __ATOMIC_ACQUIRE) : 0;
}

/* Before a durable slot write or the start of a new log (caller holds vol_lock): other
 * processes' next catch-up reads the slot headers again. Moved first, so that a committer that
 * dies between the slot and the new log header has moved it too. */
static void mlog_epoch_bump(scp_volume *v) {
    if (!v->hint) return; /* (not mapped yet: the open or the create writing the first slot) */
    assert(VOL_LOCK_HELD(v));
    uint64_t e = __atomic_load_n(v->hint + VOL_MLOG_EPOCH_OFF / 8, __ATOMIC_RELAXED) + 1;
    __atomic_store_n(v->hint + VOL_MLOG_EPOCH_OFF / 8, e, __ATOMIC_RELEASE);
    /* (this process knows what it writes next: the slot and the log header are its own) */
    v->ml_epoch = e;
}

/* The log's 16 bytes before ml_end are at p (ml_end just moved): see ml_tail. */
static void mlog_tail_note(scp_volume *v, const uint8_t *p) {
    memcpy(v->ml_tail, p, sizeof v->ml_tail);
    v->ml_tail_at = v->ml_end;
}

/* A slot's generation and salt as its header says, unauthenticated (the header is in the
 * seal's AAD: an authentic slot has these). Returns 0, or -1 if there is no header. */
static int slot_peek_id(scp_volume *v, int i, uint64_t *gen, uint8_t salt[SCP_SALT_LEN]) {
    uint8_t h[SCP_MANSLOT_HDR_LEN];
    if (v->slotfd[i] < 0 || scp_pread_full(v->slotfd[i], h, sizeof h, 0) != (ssize_t)sizeof h ||
        memcmp(h, "SCPMAN\0\2", 8) != 0)
        return -1;
    *gen = scp_get_u64(h + 8);
    memcpy(salt, h + 16, SCP_SALT_LEN);
    return 0;
}

/* Generation a slot's header claims (unauthenticated), or 0. */
static uint64_t slot_peek(scp_volume *v, int i) {
    uint64_t gen;
    uint8_t salt[SCP_SALT_LEN];
    return slot_peek_id(v, i, &gen, salt) == 0 ? gen : 0;
}

/* One byte of the lock file, shared by every process that opens the volume (crash-consistency
 * bookkeeping, not security: a host that changes it can only cost a sync or an orphan). */
static int lockbyte_get(scp_volume *v, off_t off) {
    uint8_t b = 0;
    if (v->hint) return ((const uint8_t *)v->hint)[off] != 0; /* (mapped: lock_page below) */
    return v->lockfd >= 0 && pread(v->lockfd, &b, 1, off) == 1 && b;
}
void vol_lockbyte_set(scp_volume *v, off_t off, int on) {
    uint8_t b = (uint8_t)(on != 0);
    if (v->lockfd >= 0 && lockbyte_get(v, off) != on) (void)!pwrite(v->lockfd, &b, 1, off);
}

/* The lock file's first pages where they are mapped (volume.c, hint_map), else NULL. The
 * lists and the mark below are read and written there, without a system call, as the same
 * bytes of the page cache that pread and pwrite reach; only the one-flush list's additions,
 * which must be durable, still go through pwrite and fdatasync. */
static uint8_t *lock_page(scp_volume *v) { return (uint8_t *)v->hint; }

int vol_lazy_add(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], int inplace) {
    if (v->lockfd < 0) return -1;
    /* The list, its ids and its marks lie in one span of the lock file's first page: read
     * once (from the mapping when there is one, as lazy_sync reads the count: the page cache's
     * bytes either way) and written back through the mapping (the entry and its mark, then the
     * count: a kill between leaves the entry uncounted), or without one with one pwrite (a
     * kill leaves it whole or not at all). Every reader and writer of the list holds the
     * volume lock, and the span is one 4 KiB page (a power cut keeps it or not; the list is
     * not synced and not trusted either way). A WAL write after every fsync in PostgreSQL's
     * server adds its file: this took three preads and three pwrites per add, then one. */
    enum { SPAN = VOL_LAZY_INPLACE_OFF + (VOL_LAZY_MAX + 7) / 8 - VOL_LAZY_OFF };
    _Static_assert(VOL_LAZY_OFF / 4096 == (VOL_LAZY_OFF + SPAN - 1) / 4096,
                   "the lazy list spans two pages");
    uint8_t b[SPAN];
    if (v->hint) memcpy(b, (const uint8_t *)v->hint + VOL_LAZY_OFF, SPAN); /* (mapped: lock_page) */
    else if (pread(v->lockfd, b, SPAN, VOL_LAZY_OFF) != SPAN) memset(b, 0, SPAN);
    uint8_t *ids = b + 16, *marks = b + (VOL_LAZY_INPLACE_OFF - VOL_LAZY_OFF);
    uint32_t n = scp_get_u32(b);
    if (n > VOL_LAZY_MAX) n = 0; /* (not ours: start over; the next durable commit is ours) */
    for (uint32_t i = 0; i < n; i++)
        if (memcmp(ids + i * SCP_FILEID_LEN, id, SCP_FILEID_LEN) == 0) {
            if (!inplace || (marks[i / 8] >> (i % 8) & 1)) return 0;
            uint8_t nb = (uint8_t)(marks[i / 8] | 1u << (i % 8));
            if (v->hint) {
                lock_page(v)[VOL_LAZY_INPLACE_OFF + i / 8] = nb;
                return 0;
            }
            return pwrite(v->lockfd, &nb, 1, VOL_LAZY_INPLACE_OFF + i / 8) == 1 ? 0 : -1;
        }
    if (n == VOL_LAZY_MAX) return -1;
    /* entry n with its mark (a new entry starts without one unless inplace), then the count */
    memcpy(ids + n * SCP_FILEID_LEN, id, SCP_FILEID_LEN);
    marks[n / 8] = inplace ? (uint8_t)(marks[n / 8] | 1u << (n % 8))
                           : (uint8_t)(marks[n / 8] & ~(1u << (n % 8)));
    scp_put_u32(b, n + 1);
    if (v->hint) {
        uint8_t *m = lock_page(v);
        memcpy(m + VOL_LAZY_OFF + 16 + n * SCP_FILEID_LEN, id, SCP_FILEID_LEN);
        m[VOL_LAZY_INPLACE_OFF + n / 8] = marks[n / 8];
        __atomic_signal_fence(__ATOMIC_RELEASE); /* (one thread's stores: a kill is the risk) */
        memcpy(m + VOL_LAZY_OFF, b, 4);
        return 0;
    }
    return pwrite(v->lockfd, b, SPAN, VOL_LAZY_OFF) == SPAN ? 0 : -1;
}

int vol_lazy_listed(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]) {
    uint8_t c[4] = {0};
    if (v->hint) memcpy(c, (const uint8_t *)v->hint + VOL_LAZY_OFF, 4); /* (mapped: lock_page) */
    else if (v->lockfd < 0 || pread(v->lockfd, c, 4, VOL_LAZY_OFF) != 4) return 0;
    uint32_t n = scp_get_u32(c);
    if (n == 0) return 0;
    if (n > VOL_LAZY_MAX) return 1; /* (not ours: as if listed, the safe side) */
    uint8_t ids[VOL_LAZY_MAX * SCP_FILEID_LEN];
    if (v->hint) memcpy(ids, (const uint8_t *)v->hint + VOL_LAZY_OFF + 16, n * SCP_FILEID_LEN);
    else if (pread(v->lockfd, ids, n * SCP_FILEID_LEN, VOL_LAZY_OFF + 16) != (ssize_t)(n * SCP_FILEID_LEN))
        return 1;
    for (uint32_t i = 0; i < n; i++)
        if (memcmp(ids + i * SCP_FILEID_LEN, id, SCP_FILEID_LEN) == 0) return 1;
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

#define LAZY_SYNCFS_MIN 8 /* (lazy_sync: more listed files than this, one syncfs) */

/* Before a durable manifest: sync the journal of every file with lazy commits (any process's),
 * since the manifest names their roots, and the data objects of those marked as having chunks
 * written in place (the journal holds only their entries). Returns the list's length (to empty
 * it after), or -1. */
static long lazy_sync(scp_volume *v, const uint8_t *skip_j, scp_err *err) {
    uint8_t c[4] = {0};
    if (v->hint) memcpy(c, (const uint8_t *)v->hint + VOL_LAZY_OFF, 4); /* (mapped: lock_page) */
    else if (v->lockfd < 0 || pread(v->lockfd, c, 4, VOL_LAZY_OFF) != 4) return 0;
    uint32_t n = scp_get_u32(c);
    if (n == 0) return 0;
    if (n > VOL_LAZY_MAX) n = VOL_LAZY_MAX;
    uint8_t ids[VOL_LAZY_MAX * SCP_FILEID_LEN], marks[(VOL_LAZY_MAX + 7) / 8];
    if (v->hint) { /* (the same page cache bytes as a pread: two system calls fewer per fsync) */
        memcpy(ids, (const uint8_t *)v->hint + VOL_LAZY_OFF + 16, n * SCP_FILEID_LEN);
        memcpy(marks, (const uint8_t *)v->hint + VOL_LAZY_INPLACE_OFF, sizeof marks);
    } else {
        if (pread(v->lockfd, ids, n * SCP_FILEID_LEN, VOL_LAZY_OFF + 16) != (ssize_t)(n * SCP_FILEID_LEN))
            return 0;
        /* Unreadable marks: sync every data object (slower, never less durable). */
        if (pread(v->lockfd, marks, sizeof marks, VOL_LAZY_INPLACE_OFF) != (ssize_t)sizeof marks)
            memset(marks, 0xff, sizeof marks);
    }
    /* Many files outside shared mode (lazy closes: a tree's new files, from tar, pip or a
     * checkout): one syncfs of the volume's file system instead of up to two fdatasyncs per
     * file, each a device flush. It also writes the dirty data of other files there, and the
     * caller's own journal (skip_j) ahead of its commit point, which is harmless: that journal
     * names nothing until the manifest-log record that the caller writes after this. syncfs
     * reports a write-back error of the file system since objfd was opened (Linux 5.8). */
    if (n > LAZY_SYNCFS_MIN && !v->shared) {
        VSTAT(flush);
        if (syncfs(v->objfd) < 0)
            return scp_fail_errno(err, "cannot sync the files' objects before the manifest");
        return n;
    }
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *id = ids + i * SCP_FILEID_LEN;
        /* (skip_j: the journal that the caller syncs last, as its commit point) */
        int rc = skip_j && memcmp(id, skip_j, SCP_FILEID_LEN) == 0 ? 0 : sync_object(v, id, ".j");
        if (rc == 0 && (marks[i / 8] >> (i % 8) & 1))
            rc = sync_object(v, id, ".d") < 0 || sync_object(v, id, ".s") < 0 ? -1 : 0;
        if (rc < 0) return scp_fail_errno(err, "cannot sync a file's objects before the manifest");
    }
    return n;
}

/* Seal plaintext pt as a slot of generation gen into a malloc'd buffer (header, ciphertext,
 * tag). A fresh salt (16) and nonce (12) per seal: each seal has its own key (format.h). */
static int slot_seal(scp_volume *v, uint64_t gen, const uint8_t *pt, size_t ptlen, uint8_t **out,
                     size_t *out_len, scp_err *err) {
    if (ptlen > SCP_MANIFEST_MAX_BODY)
        return scp_fail(err, SCP_E_NOTSUP, EFBIG, "the manifest would exceed %u bytes",
                        SCP_MANIFEST_MAX_BODY);
    size_t slen = SCP_MANSLOT_HDR_LEN + ptlen + SCP_GCMTAG_LEN;
    uint8_t *slot = malloc(slen);
    if (!slot) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory writing the manifest");
    memcpy(slot, "SCPMAN\0\2", 8);
    scp_put_u64(slot + 8, gen);
    scp_put_u32(slot + 44, (uint32_t)ptlen);
    uint8_t aad[SCP_VOLID_LEN + SCP_MANSLOT_HDR_LEN], key[32];
    int rc = scp_random(slot + 16, SCP_SALT_LEN + SCP_NONCE_LEN, err);
    if (rc == 0) rc = scp_derive_key(v->k_man, SCP_LABEL_SEAL, slot + 16, SCP_SALT_LEN, key, err);
    if (rc == 0) {
        memcpy(aad, v->volid, SCP_VOLID_LEN);
        memcpy(aad + SCP_VOLID_LEN, slot, SCP_MANSLOT_HDR_LEN);
        rc = scp_aead_seal(key, slot + 32, aad, sizeof aad, pt, ptlen, slot + SCP_MANSLOT_HDR_LEN,
                           slot + SCP_MANSLOT_HDR_LEN + ptlen, err);
    }
    scp_wipe(key, sizeof key);
    if (rc < 0) {
        free(slot);
        return -1;
    }
    *out = slot;
    *out_len = slen;
    return 0;
}

/* What a durable commit does before its commit point: make the objects that the manifest
 * names durable (files created lazily, by any process, since the last durable commit), and
 * the journals of the files with lazy commits. Returns the lazy list's length (to empty it
 * after the commit point), or -1. */
static long durable_prepare(scp_volume *v, const uint8_t *skip_j, scp_err *err) {
    if (v->objdir_dirty || lockbyte_get(v, VOL_LOCKBYTE_OBJDIR)) {
        if (fsync(v->objfd) < 0) return scp_fail_errno(err, "cannot sync the objects directory");
        v->objdir_dirty = 0;
        vol_lockbyte_set(v, VOL_LOCKBYTE_OBJDIR, 0);
    }
    return lazy_sync(v, skip_j, err);
}

/* After a commit point: the state in memory is generation gen, durable or not. */
static void commit_done(scp_volume *v, uint64_t gen, int durable, long nlazy) {
    v->gen = gen;
    v->lazy = !durable;
    v->man_scratch = !durable;
    if (durable) v->dur_gen = gen;
    if (nlazy > 0) { /* (the list emptied: through the mapping when there is one) */
        uint8_t zero[4] = {0};
        if (v->hint) memcpy(lock_page(v) + VOL_LAZY_OFF, zero, 4);
        else (void)!pwrite(v->lockfd, zero, 4, VOL_LAZY_OFF);
    }
    if (durable) {
        if (v->cb) { /* (reported now: the HMAC now) */
            vol_tags_settle(v); /* (cur_tag of gen and the state hash, now both this commit's) */
            v->tag = v->cur_tag;
            v->tag_due = 0;
            v->cb(v->cb_ctx, &v->tag);
        } else if (v->cur_tag_due) {
            /* Nobody is told (no tag socket: `scpctl run` without attestation): the tag is the
             * one of this generation and state hash, computed when read (vol_tags_settle:
             * scp_volume_tag_get, info, the open's check), as a lazy commit's. One HMAC per
             * durable commit fewer: sqlite's every WAL transaction. */
            v->tag_due = 1;
            v->tag_gen = gen;
            memcpy(v->tag_sh, v->statehash, SCP_HASH_LEN);
        } else {
            v->tag = v->cur_tag;
            v->tag_due = 0;
        }
        vol_doomed_drain(v);
    }
}

static int mlog_commit(scp_volume *v, int durable, scp_err *err);
static void jlist_clear(scp_volume *v);

static int commit_manifest(scp_volume *v, int durable, scp_err *err);

int vol_commit_manifest(scp_volume *v, int durable, scp_err *err) {
    /* (or a create or an open writing before the lock page is mapped: nobody else is there) */
    assert(!v->hint || VOL_LOCK_HELD(v));
    /* (a durable commit empties the lazy list: it names what this process followed past the
     * named commits first, R3's smallest form; a lazy one that has to write a whole slot
     * does the same, in mlog_full) */
    struct past_names pn;
    pn.n = 0;
    if (durable) (void)vol_past_name(v, NULL, 0, &pn);
    int rc = commit_manifest(v, durable, err);
    if (pn.n) vol_past_named(v, &pn, rc == 0);
    return rc;
}

static int commit_manifest(scp_volume *v, int durable, scp_err *err) {
    /* (announced before anything is written: a process whose mark is the counter's value then
     * takes the lock and reads what this writes, even if this committer dies half way) */
    (void)vol_pub_take(v);
    if (v->mlog) return mlog_commit(v, durable, err);
    uint8_t *body = NULL, *slot = NULL;
    size_t blen = 0, slen = 0;
    if (scp_manifest_encode(&v->man, &body, &blen, err) < 0) return -1;
    uint64_t gen = v->gen + 1;
    int rc = slot_seal(v, gen, body, blen, &slot, &slen, err);
    /* A durable commit overwrites the OLDER of the two durable slots: the newer stays intact
     * if this write is torn. A lazy commit goes to the scratch slot without a sync: if a power
     * cut loses or tears it, the durable slots still hold the last durable state, which is all
     * POSIX promises before an fsync. */
    int fd = v->slotfd[2], si = 2;
    if (durable) {
        si = v->slot_gen[0] <= v->slot_gen[1] ? 0 : 1;
        fd = v->slotfd[si];
    }
    long nlazy = rc == 0 && durable ? durable_prepare(v, NULL, err) : 0;
    if (nlazy < 0) rc = -1;
    if (rc == 0 && fd < 0) rc = scp_fail(err, SCP_E_SYS, EBADF, "the volume has no scratch slot (manifest.2)");
    if (rc == 0 && (scp_pwrite_full(fd, slot, slen, 0) < 0 || ftruncate(fd, (off_t)slen) < 0 ||
                    (durable && fdatasync(fd) < 0)))
        rc = scp_fail_errno(err, "cannot write the volume manifest");
    if (rc == 0) {
        if (si < 2) v->slot_gen[si] = gen;
        tag_compute(v, gen, body, blen, &v->cur_tag);
        v->cur_tag_due = 0;
        commit_done(v, gen, durable, nlazy);
    }
    free(slot);
    scp_wipe(body, blen);
    free(body);
    return rc;
}

/* What one authentic slot holds besides its manifest, and, between slot_open and slot_parse,
 * its decrypted body (the manifest's plaintext: wiped when released). The body is decrypted in
 * place, inside the mapping the slot was read into (buf). */
struct slot_info {
    uint64_t gen;
    uint8_t salt[SCP_SALT_LEN];
    uint8_t sh[SCP_HASH_LEN]; /* state hash (format 3; format 2: SHA-256 of the body) */
    scp_volume_tag tag;
    uint8_t *buf;  /* the slot as read (scp_read_file_mapped), NULL when released */
    size_t buf_len;
    uint8_t *body; /* inside buf (the encoded manifest at body + skip) */
    size_t body_len, skip;
};

static void slot_release(struct slot_info *si) {
    if (si->body) scp_wipe(si->body, si->body_len);
    scp_file_copy_free(si->buf, si->buf_len);
    si->buf = si->body = NULL;
    si->buf_len = si->body_len = 0;
}

/* Read and authenticate one slot, keeping its body for slot_parse. Returns 0, or -1. A load
 * (vol_load_manifest) parses only the slot it builds on: a parse of a large manifest is an
 * allocation per entry and its path, which every exec'd image that touches the volume pays.
 * The slot is read into a mapping populated in one call and decrypted in place: a slot of
 * 30,000 entries is 3 MB, whose page faults one at a time, twice (the ciphertext's buffer and
 * the plaintext's), were a fifth of such an image's first volume call. */
static int slot_open(scp_volume *v, int i, struct slot_info *si, scp_err *err) {
    char name[16];
    snprintf(name, sizeof name, "manifest.%u", (unsigned)i % 3);
    uint8_t *buf = NULL;
    size_t len = 0;
    scp_manslot s;
    si->buf = si->body = NULL;
    si->buf_len = si->body_len = 0;
    VSTAT(slot_open);
    if (scp_read_file_mapped(v->dirfd, name, SCP_MANIFEST_MAX_BODY + 64, &buf, &len, err) < 0)
        return -1;
    if (scp_manslot_parse(buf, len, &s, err) < 0) goto fail;
    uint8_t aad[SCP_VOLID_LEN + SCP_MANSLOT_HDR_LEN];
    memcpy(aad, v->volid, SCP_VOLID_LEN);
    memcpy(aad + SCP_VOLID_LEN, buf, SCP_MANSLOT_HDR_LEN);
    uint8_t key[32];
    uint8_t *body = buf + SCP_MANSLOT_HDR_LEN; /* (s.ciphertext, decrypted over itself) */
    assert(s.ciphertext == body);
    int opened = scp_derive_key(v->k_man, SCP_LABEL_SEAL, s.salt, SCP_SALT_LEN, key, err) == 0 &&
                 scp_aead_open(key, s.nonce, aad, sizeof aad, s.ciphertext, s.body_len, s.tag,
                               body, err) == 0; /* (a failed open zeroes what it decrypted) */
    scp_wipe(key, sizeof key);
    if (!opened) goto fail;
    /* Format 3: the state hash, then the body. */
    size_t skip = v->mlog ? SCP_STATEHASH_LEN : 0;
    if (s.body_len < skip) {
        scp_fail(err, SCP_E_INTEGRITY, EIO, "manifest slot is too short for its state hash");
        scp_wipe(body, s.body_len);
        goto fail;
    }
    si->gen = s.generation;
    memcpy(si->salt, s.salt, SCP_SALT_LEN);
    if (v->mlog) memcpy(si->sh, body, SCP_HASH_LEN);
    else scp_sha256_buf(body, s.body_len, si->sh);
    tag_of(v, s.generation, si->sh, &si->tag);
    si->buf = buf;
    si->buf_len = len;
    si->body = body;
    si->body_len = s.body_len;
    si->skip = skip;
    return 0;
fail:
    scp_file_copy_free(buf, len);
    return -1;
}

/* Parse the manifest of a slot that slot_open authenticated, and release its body. An
 * authentic body that does not parse (another build's format, a bug) fails the caller: it is
 * the state the volume's writer made, and taking an older slot instead would lose its changes
 * without a word. */
static int slot_parse(struct slot_info *si, scp_manifest *m, scp_err *err) {
    assert(si->body);
    int rc = scp_manifest_parse(si->body + si->skip, si->body_len - si->skip, m, err);
    slot_release(si);
    return rc;
}

/* Read, authenticate and parse one slot. Returns 0 with *m filled, or -1. */
static int slot_load(scp_volume *v, int i, scp_manifest *m, struct slot_info *si, scp_err *err) {
    if (slot_open(v, i, si, err) < 0) return -1;
    return slot_parse(si, m, err);
}

/* Keep what a load found of the durable slots: an authenticated one's generation, salt and
 * state hash; one not authenticated (or not read) counts as generation 0. */
static void slots_note(scp_volume *v, const int ok[2], const struct slot_info si[2]) {
    for (int i = 0; i < 2; i++) {
        v->slot_gen[i] = ok[i] ? si[i].gen : 0;
        memcpy(v->slot_salt[i], si[i].salt, SCP_SALT_LEN);
        memcpy(v->slot_sh[i], si[i].sh, SCP_HASH_LEN);
    }
}

/* A load found no authentic state: -1 with the first slot's own reason (e: each slot's). */
static int slots_unauthentic(scp_err *err, const scp_err e[2]) {
    return scp_fail(err, SCP_E_INTEGRITY, EIO,
                    "the volume manifest fails authentication in every copy (%s); the volume was "
                    "modified or damaged",
                    e[0].msg[0] ? e[0].msg : e[1].msg);
}

static int mlog_load(scp_volume *v, scp_err *err);

/* Load the newest authentic state: a manifest slot (durable or scratch) or, format 3, the end
 * of the manifest log (mlog_load). Only the slot built on is parsed. */
int vol_load_manifest(scp_volume *v, scp_err *err) {
    assert(v->ml_defer_len == 0); /* (nothing of the state in memory is only there) */
    if (v->mlog) {
        /* (read before the slots: a fold after this read moves it again) */
        v->ml_epoch = mlog_epoch(v);
        return mlog_load(v, err);
    }
    v->ml_epoch = 0;
    struct slot_info si[3];
    scp_err e[3];
    memset(e, 0, sizeof e);
    memset(si, 0, sizeof si);
    int ok[3], best = -1;
    for (int i = 0; i < 3; i++) {
        ok[i] = v->slotfd[i] >= 0 && slot_open(v, i, &si[i], &e[i]) == 0;
        if (ok[i] && (best < 0 || si[i].gen > si[best].gen)) best = i;
    }
    if (best < 0) return slots_unauthentic(err, e);
    /* never go back in one process's lifetime */
    if (si[best].gen < v->gen) {
        for (int i = 0; i < 3; i++)
            if (ok[i]) slot_release(&si[i]);
        return scp_fail(err, SCP_E_ROLLBACK, EIO,
                        "the volume manifest went back from generation %llu to %llu while open",
                        (unsigned long long)v->gen, (unsigned long long)si[best].gen);
    }
    slots_note(v, ok, si);
    scp_manifest m = {0};
    int rc = slot_parse(&si[best], &m, err);
    for (int i = 0; i < 3; i++)
        if (ok[i]) slot_release(&si[i]);
    if (rc < 0) return -1;
    scp_manifest_free(&v->man);
    v->man = m;
    v->gen = si[best].gen;
    v->tag = v->cur_tag = si[best].tag;
    v->cur_tag_due = v->tag_due = 0;
    v->man_scratch = best == 2;
    return 0;
}

uint64_t vol_durable_generation(scp_volume *v) {
    if (v->mlog) return v->dur_gen; /* (under vol_lock: the log was read up to its end) */
    uint64_t a = slot_peek(v, 0), b = slot_peek(v, 1);
    return a > b ? a : b;
}

static int mlog_changed(scp_volume *v);

/* Highest generation claimed by the slot headers (unauthenticated: only a hint to reload). */
uint64_t vol_peek_generation(scp_volume *v) {
    uint64_t best = 0;
    for (int i = 0; i < (v->mlog ? 2 : 3); i++) {
        uint64_t g = slot_peek(v, i);
        if (g > best) best = g;
    }
    if (v->mlog && best <= v->gen && mlog_changed(v)) best = v->gen + 1;
    return best;
}


/* ---- the manifest log (format 3; format.h has the layout, docs/volume-format.md the design) --
 * A commit seals the entries that changed since the state at the log's end (`disk`) as one
 * record and appends it: a lazy commit without a sync, a durable one with an fdatasync of the
 * log. Another process takes in only the records after the offset it has read to. A commit
 * that cannot append (no usable log, a long log: mlog_long, a delta past SCP_MREC_MAX_BODY)
 * writes the whole manifest to the durable slot that the log does not continue, syncs it, and
 * starts a new log from it. */
#ifndef SCP_MLOG_MAX_BYTES
#define SCP_MLOG_MAX_BYTES (1u << 20)
#endif
#define MLOG_MAX_RECS 16384u /* records per log key: far below GCM's random-nonce bound */
#define MLOG_READ_MAX (2 * SCP_MLOG_MAX_BYTES + 2 * SCP_MREC_MAX_BODY)

/* Is the log due for a fold (a slot of the whole state and a new log)? (A long log is also
 * folded by the next process that opens the volume and walks it: vol_open_fold.) */
static int mlog_long(scp_volume *v) {
    return v->ml_end > SCP_MLOG_MAX_BYTES || v->ml_nrec >= MLOG_MAX_RECS;
}

static int mentry_eq(const scp_mentry *a, const scp_mentry *b) {
    return a->type == b->type && memcmp(a->id, b->id, SCP_FILEID_LEN) == 0 && a->size == b->size &&
           memcmp(a->root, b->root, SCP_HASH_LEN) == 0 && a->mode == b->mode && a->uid == b->uid &&
           a->gid == b->gid && a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns &&
           a->atime_ns == b->atime_ns && !a->target == !b->target &&
           (!a->target || strcmp(a->target, b->target) == 0);
}

int man_entry_dup(scp_mentry *dst, const scp_mentry *src, const char *path) {
    *dst = *src;
    dst->path = strdup(path ? path : src->path);
    dst->target = src->target ? strdup(src->target) : NULL;
    if (dst->path && (dst->target || !src->target)) return 0;
    man_entry_clear(dst);
    return -1;
}

void man_entry_clear(scp_mentry *e) {
    marena_free(e->path);
    marena_free(e->target);
    e->path = e->target = NULL;
}

/* A string of dst's: from its arena while it has room. */
static char *copy_str(scp_manifest *dst, const char *s) {
    size_t n = strlen(s) + 1;
    char *p = marena_alloc(dst->arena, n);
    if (!p) return strdup(s);
    memcpy(p, s, n);
    return p;
}

/* dst = a copy of src; -1 when out of memory. A large one is cut from one arena (marena.h),
 * sized by a first pass over the strings: the copy of the on-disk state that every load
 * makes was a tenth of an exec'd image's first volume call on a volume of 30,000 entries. */
static int man_copy(scp_manifest *dst, const scp_manifest *src) {
    memset(dst, 0, sizeof *dst);
    dst->e = malloc((src->n ? src->n : 1) * sizeof(scp_mentry *));
    if (!dst->e) return -1;
    dst->cap = src->n ? src->n : 1;
    if (src->n >= MARENA_MIN_ENTRIES) {
        size_t bytes = 0;
        for (size_t i = 0; i < src->n; i++) {
            const scp_mentry *e = src->e[i];
            bytes += marena_piece(sizeof *e) + marena_piece(strlen(e->path) + 1) +
                     (e->target ? marena_piece(strlen(e->target) + 1) : 0);
        }
        dst->arena = marena_new(bytes);
    }
    for (; dst->n < src->n; dst->n++) {
        const scp_mentry *e = src->e[dst->n];
        scp_mentry *x = marena_alloc(dst->arena, sizeof *x);
        if (!x && !(x = malloc(sizeof *x))) goto nomem;
        *x = *e;
        x->path = copy_str(dst, e->path);
        x->target = e->target ? copy_str(dst, e->target) : NULL;
        if (!x->path || (e->target && !x->target)) {
            man_entry_clear(x);
            marena_free(x);
            goto nomem;
        }
        dst->e[dst->n] = x;
    }
    return 0;
nomem:
    scp_manifest_free(dst);
    return -1;
}

/* The index of the first entry that sorts at or after path[0..pl) + ch. */
static size_t man_bound(const scp_manifest *m, const char *path, size_t pl, char ch) {
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *q = m->e[mid]->path;
        int c = strncmp(q, path, pl);
        if (c == 0) c = (unsigned char)q[pl] - (unsigned char)ch;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

size_t vol_man_below(const scp_manifest *m, const char *path) {
    return man_bound(m, path, strlen(path), '/');
}

size_t vol_man_past(const scp_manifest *m, const char *path, size_t pl) {
    return man_bound(m, path, pl, '0'); /* ('0' follows '/': past every path + "/...") */
}

size_t vol_man_next_child(const scp_manifest *m, size_t pl, size_t k) {
    const char *q = m->e[k]->path, *slash = strchr(q + pl, '/');
    if (!slash) return k + 1;
    size_t next = vol_man_past(m, q, (size_t)(slash - q));
    assert(next > k);
    return next;
}

int man_has_child(const scp_manifest *m, const char *path) {
    size_t pl = strlen(path), lo = vol_man_below(m, path);
    return lo < m->n && strncmp(m->e[lo]->path, path, pl) == 0 && m->e[lo]->path[pl] == '/';
}

/* Hard links (format.h): the ids whose set of names a delta may have changed, to count again
 * after it. Past RELINK_MAX of them, every id is counted (one sort of the manifest). */
#define RELINK_MAX 16
struct relink {
    uint8_t id[RELINK_MAX][SCP_FILEID_LEN];
    size_t n;
    int all;
};
static void relink_note(struct relink *r, const uint8_t id[SCP_FILEID_LEN]) {
    if (r->all) return;
    if (r->n == RELINK_MAX) {
        r->all = 1;
        return;
    }
    memcpy(r->id[r->n++], id, SCP_FILEID_LEN);
}

/* Count the names of id into their nlink; -1 if they do not agree (or one is a directory
 * that shares its id). */
static int relink_one(scp_manifest *m, const uint8_t id[SCP_FILEID_LEN]) {
    long first = -1;
    uint32_t names = 0;
    for (size_t k = 0; k < m->n; k++) {
        if (memcmp(m->e[k]->id, id, SCP_FILEID_LEN) != 0) continue;
        if (first < 0) first = (long)k;
        else if (!scp_mentry_same_file(m->e[first], m->e[k])) return -1;
        names++;
    }
    if (names == 1) m->e[first]->nlink = 1;
    for (size_t k = 0; names > 1 && k < m->n; k++)
        if (memcmp(m->e[k]->id, id, SCP_FILEID_LEN) == 0) m->e[k]->nlink = names;
    return 0;
}

static int relink(scp_manifest *m, const struct relink *r, scp_err *err) {
    int rc = 0;
    if (r->all) rc = scp_manifest_count_links(m);
    for (size_t k = 0; !r->all && rc == 0 && k < r->n; k++) rc = relink_one(m, r->id[k]);
    if (rc == -2) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory applying a manifest delta");
    if (rc < 0)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "manifest delta leaves names of one file that disagree (hard links)");
    return 0;
}

int scp_manifest_apply(scp_manifest *m, const scp_mdelta *d, const scp_manifest *after,
                       void (*on_leave)(void *ctx, const scp_mentry *e), void *ctx, scp_err *err) {
    m->ver++; /* (puts replace entries in place, past man_insert) */
    /* Every entry of m has its nlink right (parsed, or kept so here); a name whose file had
     * only this one (nlink 1) and that keeps its id needs no count: no other entry has it. */
    struct relink r = {.n = 0};
    int lost = d->ndel > 0;
    for (size_t k = 0; k < d->ndel; k++) {
        long i = man_find(m, d->del[k]);
        if (i < 0) return scp_fail(err, SCP_E_INTEGRITY, EIO, "manifest delta removes a path it does not have");
        if (m->e[i]->nlink != 1) relink_note(&r, m->e[i]->id); /* the file's other names */
        if (on_leave) on_leave(ctx, m->e[i]);
        man_remove(m, (size_t)i);
    }
    for (size_t k = 0; k < d->ndel; k++)
        if (man_has_child(m, d->del[k]))
            return scp_fail(err, SCP_E_INTEGRITY, EIO, "manifest delta removes a directory that keeps entries");
    for (size_t k = 0; k < d->nput; k++) {
        const scp_mentry *p = &d->put[k];
        if (!scp_manifest_parent_is_dir(m, p->path))
            return scp_fail(err, SCP_E_INTEGRITY, EIO, "manifest delta puts an entry outside a directory");
        scp_mentry e;
        if (man_entry_dup(&e, p, NULL) < 0)
            return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory applying a manifest delta");
        e.nlink = 1;
        long i = man_find(m, p->path);
        if (i >= 0) {
            if (m->e[i]->type == SCP_MTYPE_DIR && p->type != SCP_MTYPE_DIR && man_has_child(m, p->path)) {
                man_entry_clear(&e);
                return scp_fail(err, SCP_E_INTEGRITY, EIO, "manifest delta turns a directory with entries into a file");
            }
            int same_id = memcmp(m->e[i]->id, p->id, SCP_FILEID_LEN) == 0;
            lost |= !same_id;
            if (!same_id && on_leave) on_leave(ctx, m->e[i]);
            if (!same_id && m->e[i]->nlink != 1) relink_note(&r, m->e[i]->id);
            if (!same_id || m->e[i]->nlink != 1) relink_note(&r, p->id);
            man_entry_clear(m->e[i]);
            *m->e[i] = e;
        } else if (man_insert(m, &e, err) < 0) {
            man_entry_clear(&e);
            return -1;
        } else {
            /* a new name: maybe of a file that has others (no count when after says it has none:
             * e.nlink is 1 already) */
            long j = after ? man_find(after, p->path) : -1;
            if (j < 0 || after->e[j]->nlink != 1 || memcmp(after->e[j]->id, p->id, SCP_FILEID_LEN) != 0)
                relink_note(&r, p->id);
        }
    }
    return relink(m, &r, err) < 0 ? -1 : lost;
}

/* A manifest-log record body of len bytes (the caller's sum): np puts, the entries of cur at
 * put[], then nd removals, the paths of old at del[]. NULL when out of memory. */
static uint8_t *delta_body(const scp_manifest *old, const scp_manifest *cur, const size_t *put,
                           size_t np, const size_t *del, size_t nd, size_t len) {
    uint8_t *b = malloc(len);
    if (!b) return NULL;
    uint8_t *p = b;
    scp_put_u32(p, (uint32_t)np);
    scp_put_u32(p + 4, (uint32_t)nd);
    p += 8;
    for (size_t k = 0; k < np; k++) p = scp_mentry_encode(cur->e[put[k]], p);
    for (size_t k = 0; k < nd; k++) {
        size_t pl = strlen(old->e[del[k]]->path);
        scp_put_u16(p, (uint16_t)pl);
        memcpy(p + 2, old->e[del[k]]->path, pl);
        p += 2 + pl;
    }
    assert((size_t)(p - b) == len);
    return b;
}

/* The delta from `old` to `cur` (both sorted) as a record body. *nchanged: puts + removals. */
static int man_diff_encode(const scp_manifest *old, const scp_manifest *cur, uint8_t **out,
                           size_t *out_len, size_t *nchanged, scp_err *err) {
    size_t np = 0, nd = 0, cap = 16, len = 8;
    size_t *put = malloc(cap * sizeof *put), *del = malloc(cap * sizeof *del);
    size_t i = 0, j = 0;
    while (put && del && (i < old->n || j < cur->n)) {
        int c = i == old->n ? 1 : j == cur->n ? -1 : strcmp(old->e[i]->path, cur->e[j]->path);
        if ((np == cap || nd == cap)) {
            cap *= 2;
            size_t *a = realloc(put, cap * sizeof *put), *b = a ? realloc(del, cap * sizeof *del) : NULL;
            if (a) put = a;
            if (b) del = b;
            if (!a || !b) break;
        }
        if (c < 0) { /* only in old: removed */
            del[nd++] = i;
            len += 2 + strlen(old->e[i++]->path);
        } else if (c > 0) { /* only in cur: added */
            len += scp_mentry_encoded_len(cur->e[j]);
            put[np++] = j++;
        } else {
            if (!mentry_eq(old->e[i], cur->e[j])) {
                len += scp_mentry_encoded_len(cur->e[j]);
                put[np++] = j;
            }
            i++;
            j++;
        }
    }
    uint8_t *b = NULL;
    if (put && del && i == old->n && j == cur->n) b = delta_body(old, cur, put, np, del, nd, len);
    free(put);
    free(del);
    if (!b) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory encoding a manifest delta");
    *out = b;
    *out_len = len;
    *nchanged = np + nd;
    return 0;
}

/* ---- the delta from the changed entries ----
 * A content commit changes the entries of its file's names and nothing else (commit_name),
 * and shared mode makes one per write: comparing the whole manifest with `disk` for its delta
 * (man_diff_encode) cost O(entries) per write, 20 us of PostgreSQL's per-transaction 217 with
 * its 1,000 entries (bench/RESULTS.md, "pgpub14"). So the volume keeps the paths such commits
 * changed since `man` last equalled `disk` (v->mchg), and the delta is built from those alone
 * when that list is known complete: mchg_ok (reset where `disk` becomes `man`: mlog_took,
 * mlog_full, a load) and man.ver == mchg_ver (every other change of `man` goes through a
 * helper that moves ver, or calls vol_mchg_off). A catch-up applies the same records to both
 * (vol_refresh_manifest), so the paths where they differ stay among the listed ones. In any
 * other case the whole manifest is compared, as before; builds with asserts compare it too
 * and assert that both give the same bytes (a change that recorded itself nowhere would be
 * left out of the log; sampled above 256 entries, mlog_delta). */
static void mchg_free(scp_volume *v) {
    for (uint32_t k = 0; k < v->mchg_n; k++) free(v->mchg[k]);
    v->mchg_n = 0;
}

void vol_mchg_off(scp_volume *v) {
    mchg_free(v);
    v->mchg_ok = 0;
}

/* `man` equals `disk` now. */
static void mchg_reset(scp_volume *v) {
    mchg_free(v);
    v->mchg_ok = 1;
    v->mchg_ver = v->man.ver;
}

void vol_mchg_note(scp_volume *v, const char *path) {
    if (!v->mchg_ok) return;
    for (uint32_t k = 0; k < v->mchg_n; k++)
        if (strcmp(v->mchg[k], path) == 0) return;
    char *p = v->mchg_n < VOL_MCHG_MAX ? strdup(path) : NULL;
    if (!p) { /* (too many, or no memory: the whole comparison finds them) */
        vol_mchg_off(v);
        return;
    }
    v->mchg[v->mchg_n++] = p;
}

static int mchg_usable(const scp_volume *v) { return v->mchg_ok && v->man.ver == v->mchg_ver; }

int vol_mchg_usable(const scp_volume *v) { return mchg_usable(v); }

/* vol_man_name_changed with path's parent index pi (-1: none) found already. */
static void name_changed_at(scp_volume *v, int usable, const char *path, long pi,
                            const uint8_t id[SCP_FILEID_LEN], int others) {
    if (!usable) return;
    vol_mchg_note(v, path);
    if (pi >= 0) vol_mchg_note(v, v->man.e[pi]->path);
    uint32_t left = others ? v->man.n : 0, seen = 0;
    for (size_t k = 0; k < v->man.n && seen < left && v->mchg_ok; k++)
        if (memcmp(v->man.e[k]->id, id, SCP_FILEID_LEN) == 0) {
            left = v->man.e[k]->nlink; /* (every name has the count: stop at the last) */
            seen++;
            vol_mchg_note(v, v->man.e[k]->path);
        }
    if (v->mchg_ok) v->mchg_ver = v->man.ver;
}

void vol_man_name_changed(scp_volume *v, int usable, const char *path,
                          const uint8_t id[SCP_FILEID_LEN], int others) {
    if (usable) name_changed_at(v, usable, path, parent_index(&v->man, path), id, others);
}

/* Without the notes a create's record came from man_diff_encode, a strcmp of every path
 * against `disk`'s: each create cost O(entries), and an import of 30,000 small files spent a
 * fifth of its time there (bench/RESULTS.md, session 58). The list stays complete only if
 * nothing else changed `man` since it was (mchg_usable, read first): the insert and the
 * parent's times are the only changes between, and both paths are noted. */
int vol_man_create(scp_volume *v, const scp_mentry *e, int64_t now, man_dtimes *dt, scp_err *err) {
    int track = mchg_usable(v);
    const char *path = e->path; /* (man takes it: valid while the entry is in man) */
    /* A directory with the set-group-ID bit gives a new entry its group, and a new directory
     * the bit too (BSD group semantics, as the kernel's inode_init_owner; shared project
     * directories, `git init --shared`). Not carried over: the kernel's clearing of a new
     * file's own S_ISGID for a creator outside that group, which needs its groups. A
     * directory made before owners were recorded (no SCP_MODE_OWNED) has no group to give. */
    scp_mentry in = *e;
    long pi = parent_index(&v->man, path);
    const scp_mentry *parent = pi >= 0 ? v->man.e[pi] : NULL;
    if (parent && (parent->mode & (S_ISGID | SCP_MODE_OWNED)) == (S_ISGID | SCP_MODE_OWNED)) {
        in.gid = parent->gid;
        if (in.type == SCP_MTYPE_DIR) in.mode |= S_ISGID;
    }
    if (man_insert(&v->man, &in, err) < 0) return -1;
    if (parent && v->man.e[pi] != parent) pi++; /* (inserted at or before it: one place on) */
    assert(!parent || v->man.e[pi] == parent);
    *dt = dir_touch(&v->man, pi, now);
    name_changed_at(v, track, path, pi, NULL, 0); /* (the name and its directory) */
    return 0;
}

static int cmp_pathp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The delta from `old` to `cur` when they differ at most at paths[0..n) (sorted, distinct):
 * the bytes man_diff_encode gives (puts in cur's order, removals in old's: both the paths'
 * order), found with 2n lookups instead of a pass over both. */
static int man_delta_encode(const scp_manifest *old, const scp_manifest *cur, char *const *paths,
                            size_t n, uint8_t **out, size_t *out_len, size_t *nchanged,
                            scp_err *err) {
    assert(n <= VOL_MCHG_MAX);
    size_t put[VOL_MCHG_MAX], del[VOL_MCHG_MAX];
    size_t np = 0, nd = 0, len = 8;
    for (size_t k = 0; k < n; k++) {
        assert(k == 0 || strcmp(paths[k - 1], paths[k]) < 0);
        long i = man_find(old, paths[k]), j = man_find(cur, paths[k]);
        if (j >= 0 && (i < 0 || !mentry_eq(old->e[i], cur->e[j]))) {
            len += scp_mentry_encoded_len(cur->e[j]);
            put[np++] = (size_t)j;
        } else if (j < 0 && i >= 0) {
            len += 2 + strlen(old->e[i]->path);
            del[nd++] = (size_t)i;
        }
    }
    uint8_t *b = delta_body(old, cur, put, np, del, nd, len);
    if (!b) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory encoding a manifest delta");
    *out = b;
    *out_len = len;
    *nchanged = np + nd;
    return 0;
}

/* The delta from `disk` to `man` (mlog_seal): from the changed paths when their list is
 * complete, else by comparing the whole manifest. */
static int mlog_delta(scp_volume *v, uint8_t **out, size_t *out_len, size_t *nchanged, scp_err *err) {
#ifndef NDEBUG
    v->ml_check_now = 1;
#endif
    if (!mchg_usable(v)) {
        v->ml_delta_seen += v->disk.n + v->man.n;
        return man_diff_encode(&v->disk, &v->man, out, out_len, nchanged, err);
    }
    v->ml_delta_seen += v->mchg_n;
    qsort(v->mchg, v->mchg_n, sizeof *v->mchg, cmp_pathp);
    if (man_delta_encode(&v->disk, &v->man, v->mchg, v->mchg_n, out, out_len, nchanged, err) < 0)
        return -1;
#ifndef NDEBUG
    /* The list must hold every change: the whole comparison gives the same bytes. The default
     * build (RelWithDebInfo) keeps asserts and is the one measured and shipped, so the check
     * that costs what this saves runs for every record of a manifest up to 256 entries (every
     * test volume but a few) while the volume is open for its first 4,096 records, and for
     * every 64th record after that or of a larger manifest: a long-running server's every
     * commit paid it (MariaDB's data directory, 209 entries: with the two whole-manifest
     * name checks it guards in mlog_check, about 3 us of a commit; bench/RESULTS.md "maria17").
     * In a larger manifest every (entries / 16)-th record, so that the check costs about 16
     * entries' comparisons a record whatever the size: at every 64th, a tar -x of 30,000 files
     * spent 7% of its time in it (bench/RESULTS.md, session 58). The next check's record is
     * kept, not found as `nrec % every == 0`: with `every` growing by one each 16 creates
     * (80 records of tar -x), the remainder met 0 about once per change of `every`, so the
     * check ran every ~80 records whatever the size, O(entries) a record: 21 million entries
     * compared in that tar -x, a quarter of its time (session 60). */
    uint64_t nrec = ++v->ml_checks, every = v->man.n / 16 > 64 ? v->man.n / 16 : 64;
    v->ml_check_now = (v->man.n <= 256 && nrec <= 4096) || nrec >= v->ml_check_next;
    if (v->ml_check_now) v->ml_check_next = nrec + every;
    if (v->ml_check_now) {
        uint8_t *full = NULL;
        size_t flen = 0, fchg = 0;
        if (man_diff_encode(&v->disk, &v->man, &full, &flen, &fchg, NULL) == 0) {
            assert(flen == *out_len && fchg == *nchanged && memcmp(full, *out, flen) == 0);
            scp_wipe(full, flen);
            free(full);
        }
    }
#endif
    return 0;
}

/* The fork family's region (internal.h, struct vol_fam). */
void (*vol_test_fam_midstore)(void);

void vol_fam_map(scp_volume *v) {
    const char *s = getenv("SCP_VOLUME_FAMILY");
    if (!s || strcmp(s, "1") != 0 || !v->mlog) return;
    void *m = mmap(NULL, sizeof(struct vol_fam), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (m == MAP_FAILED) return; /* (the file protocol alone, as with the switch off) */
    /* plaintext deltas (names, roots): kept out of core dumps, as the volume's own memory */
    madvise(m, sizeof(struct vol_fam), MADV_DONTDUMP);
    v->fam = m;
}

void vol_fam_unmap(scp_volume *v) {
    /* Not wiped: the other members still use it; the kernel frees it with the last mapping. */
    if (v->fam) munmap(v->fam, sizeof(struct vol_fam));
    v->fam = NULL;
}

/* Keep rec's plaintext (body, blen) for the family: rec is the record of generation gen
 * sealed at the log's end (chain value v->ml_chain before it). Under the volume lock. */
static void fam_store(scp_volume *v, uint64_t gen, const uint8_t *rec, size_t rlen,
                      const uint8_t *body, size_t blen) {
    if (!v->fam || blen > VOL_FAM_BODY) return;
    uint8_t chain[SCP_HASH_LEN];
    memcpy(chain, v->ml_chain, SCP_HASH_LEN);
    scp_journal_chain(chain, rec, rlen);
    struct vol_fam_ent *e = &v->fam->ent[gen % VOL_FAM_SLOTS];
    /* odd while written; a dead writer's odd value moves on to the next odd one */
    uint64_t seq = (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) + 1) | 1;
    __atomic_store_n(&e->seq, seq, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    e->gen = gen;
    memcpy(e->chain, chain, SCP_HASH_LEN);
    e->len = (uint32_t)blen;
    if (vol_test_fam_midstore) vol_test_fam_midstore();
    memcpy(e->body, body, blen);
    __atomic_store_n(&e->seq, seq + 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&v->fam->stores, 1, __ATOMIC_RELAXED);
}

/* The plaintext of the record of generation gen whose chain value after it is chain, copied
 * to out (VOL_FAM_BODY bytes): its length, or -1 if the region does not hold it whole. An
 * equal chain value means the same chain before and the same record bytes (SHA-256), and the
 * chain binds the log's header, hence its key: the entry holds what decrypting them gives. */
static long fam_take(scp_volume *v, uint64_t gen, const uint8_t chain[SCP_HASH_LEN], uint8_t *out) {
    const struct vol_fam_ent *e = &v->fam->ent[gen % VOL_FAM_SLOTS];
    uint64_t s1 = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
    long len = -1;
    if (!(s1 & 1) && s1 != 0) {
        uint64_t g = e->gen;
        uint8_t c[SCP_HASH_LEN];
        memcpy(c, e->chain, SCP_HASH_LEN);
        uint32_t n = e->len;
        if (n <= VOL_FAM_BODY) memcpy(out, e->body, n);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) == s1 && g == gen && n <= VOL_FAM_BODY &&
            memcmp(c, chain, SCP_HASH_LEN) == 0)
            len = n;
    }
    __atomic_add_fetch(len >= 0 ? &v->fam->hits : &v->fam->misses, 1, __ATOMIC_RELAXED);
    if (len >= 0) VSTAT(fam_hit);
    else VSTAT(fam_miss);
    return len;
}

static void mlog_chain0(const uint8_t hdr[SCP_MLOG_HDR_LEN], const uint8_t base_sh[SCP_HASH_LEN],
                        uint8_t out[SCP_HASH_LEN]) {
    struct scp_buf parts[3] = {{"scp/v3/mlog", 11}, {hdr, SCP_MLOG_HDR_LEN}, {base_sh, SCP_HASH_LEN}};
    scp_sha256(parts, 3, out);
}

/* Walk records of a log held in buf (from offset 0; records start at w->off, where the chain
 * value is w->chain and the generation w->gen) and apply each that checks out to w->m (and
 * w->m2), stopping at the first that does not, or after generation stop_gen. */
struct mlog_walk {
    const uint8_t *buf;
    size_t len, off;
    uint8_t chain[SCP_HASH_LEN];
    uint64_t gen, stop_gen, nrec, dur_gen;
    size_t dur_off;   /* just past the last durable record walked (0: none) */
    int last_durable, removed;
    long adopted; /* records taken in from journals (mlog_adopt_journals) */
    scp_manifest *m, *m2;
    void (*on_put)(void *ctx, const scp_mentry *e);
    /* (an entry of w->m about to go: a name removed, or a put of another file at its path;
     * called with the volume) */
    void (*on_leave)(void *v, const scp_mentry *e);
    void *ctx;
};

/* (vol_note_leaving as scp_manifest_apply's on_leave) */
static void note_leaving(void *v, const scp_mentry *e) { vol_note_leaving(v, e); }

static int mlog_walk(scp_volume *v, struct mlog_walk *w, scp_err *err) {
    while (w->off < w->len && w->gen < w->stop_gen) {
        scp_mrec r;
        if (scp_mrec_parse(w->buf + w->off, w->len - w->off, &r, NULL) < 0 || r.generation != w->gen + 1)
            break;
        uint8_t aad[SCP_VOLID_LEN + SCP_HASH_LEN + SCP_MREC_HDR_LEN];
        memcpy(aad, v->volid, SCP_VOLID_LEN);
        memcpy(aad + SCP_VOLID_LEN, w->chain, SCP_HASH_LEN);
        memcpy(aad + SCP_VOLID_LEN + SCP_HASH_LEN, w->buf + w->off, SCP_MREC_HDR_LEN);
        uint64_t t = VSTAT_T0();
        scp_mdelta d;
        int ok = 0, have_chain = 0;
        uint8_t chain[SCP_HASH_LEN];
        if (v->fam) { /* the family's copy of this record's plaintext, if it is these bytes */
            uint8_t fb[VOL_FAM_BODY];
            memcpy(chain, w->chain, SCP_HASH_LEN);
            scp_journal_chain(chain, w->buf + w->off, r.len);
            have_chain = 1;
            long n = fam_take(v, r.generation, chain, fb);
            if (n >= 0) {
                /* (equal chain values: equal bytes, so the same length as the record says) */
                assert((size_t)n == r.body_len);
                ok = scp_mdelta_parse(fb, (size_t)n, &d, NULL) == 0;
                scp_wipe(fb, (size_t)n);
                if (!ok) break; /* (cannot happen: what its sealer parsed back) */
            }
        }
        if (!ok) {
            uint8_t *body = malloc(r.body_len ? r.body_len : 1);
            if (!body) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory reading the manifest log");
            ok = scp_aead_open(v->ml_key, r.nonce, aad, sizeof aad, r.ciphertext, r.body_len, r.tag,
                               body, NULL) == 0 &&
                 scp_mdelta_parse(body, r.body_len, &d, NULL) == 0;
            scp_wipe(body, r.body_len);
            free(body);
        }
        if (!ok) break; /* a torn tail, or not ours: the log ends here */
        VSTAT(mlog_rec_open);
        VSTAT_ADD(mlog_rec_bytes, r.len);
        VSTAT_T1(mlog_open_ns, t);
        t = VSTAT_T0();
        int rc = scp_manifest_apply(w->m, &d, NULL, w->on_leave, v, err);
        if (rc > 0) w->removed = 1;
        if (rc >= 0 && w->m2) rc = scp_manifest_apply(w->m2, &d, NULL, NULL, NULL, err);
        for (size_t k = 0; rc >= 0 && w->on_put && k < d.nput; k++) w->on_put(w->ctx, &d.put[k]);
        scp_mdelta_free(&d);
        if (rc < 0) return -1; /* authentic but inapplicable: not a crash outcome */
        VSTAT_T1(mlog_apply_ns, t);
        t = VSTAT_T0();
        if (have_chain)
            memcpy(w->chain, chain, SCP_HASH_LEN);
        else
            scp_journal_chain(w->chain, w->buf + w->off, r.len);
        VSTAT_T1(mlog_chain_ns, t);
        w->off += r.len;
        w->gen = r.generation;
        w->nrec++;
        w->last_durable = (r.flags & SCP_MREC_DURABLE) != 0;
        if (w->last_durable) {
            w->dur_gen = w->gen;
            w->dur_off = w->off;
        }
    }
    return 0;
}

/* Start a new log that continues durable slot si, whose state is the one in memory. */
static int mlog_restart(scp_volume *v, int si, scp_err *err) {
    scp_mlog_hdr h = {.base_gen = v->slot_gen[si]};
    memcpy(h.base_salt, v->slot_salt[si], SCP_SALT_LEN);
    uint8_t hdr[SCP_MLOG_HDR_LEN];
    v->ml_base = -1;
    if (scp_random(h.log_salt, SCP_SALT_LEN, err) < 0) return -1;
    mlog_epoch_bump(v);
    scp_mlog_hdr_encode(&h, hdr);
    if (scp_derive_key(v->k_man, SCP_LABEL_MLOG, h.log_salt, SCP_SALT_LEN, v->ml_key, err) < 0)
        return -1;
    /* Not synced: until a durable record syncs it, a power cut may leave the old log or a torn
     * header, which no longer continues the newest slot (ignored, or ended by its chain). */
    /* (a new log continues a slot that holds the state in memory: nothing deferred is left) */
    assert(v->ml_defer_len == 0);
    if (ftruncate(v->mlog_fd, 0) < 0 || scp_pwrite_full(v->mlog_fd, hdr, sizeof hdr, 0) < 0)
        return scp_fail_errno(err, "cannot start a new manifest log");
    memcpy(v->ml_hdr, hdr, sizeof hdr);
    mlog_chain0(hdr, v->slot_sh[si], v->ml_chain);
    v->ml_end = v->ml_size = SCP_MLOG_HDR_LEN;
    mlog_tail_note(v, hdr + SCP_MLOG_HDR_LEN - sizeof v->ml_tail); /* (the log salt) */
    v->ml_nrec = 0;
    v->ml_base = si;
    v->ml_adopt = -1;
    v->ml_dur_end = 0; /* (the header is not synced yet) */
    return 0;
}

static void defer_drop(scp_volume *v);

/* Write the whole state to the durable slot that the log does not continue, then start a new
 * log from it. same_gen: the state in memory is the committed one (a fold at close), written
 * under its own generation and state hash, so that its tag does not change; else a new
 * generation whose state hash is the body's SHA-256. Always durable. */
static int mlog_full_write(scp_volume *v, int same_gen, scp_err *err);

/* A slot of the whole state, a durable commit (same_gen: of the state of the generation in
 * memory, already committed through the log or a journal; else of a new one). */
static int mlog_full(scp_volume *v, int same_gen, scp_err *err) {
    /* (a new generation names what this process followed past the named commits first, as
     * vol_commit_manifest does; the same one cannot: vol_past_commit before a fold) */
    struct past_names pn;
    pn.n = 0;
    if (!same_gen) (void)vol_past_name(v, NULL, 0, &pn);
    int rc = mlog_full_write(v, same_gen, err);
    if (pn.n) vol_past_named(v, &pn, rc == 0);
    return rc;
}

static int mlog_full_write(scp_volume *v, int same_gen, scp_err *err) {
    uint8_t *body = NULL, *slot = NULL, sh[SCP_HASH_LEN];
    size_t blen = 0, slen = 0;
    if (scp_manifest_encode(&v->man, &body, &blen, err) < 0) return -1;
    uint8_t *pt = malloc(SCP_STATEHASH_LEN + blen);
    if (!pt) {
        scp_wipe(body, blen);
        free(body);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory writing the manifest");
    }
    if (same_gen) memcpy(sh, v->statehash, SCP_HASH_LEN);
    else scp_sha256_buf(body, blen, sh);
    memcpy(pt, sh, SCP_HASH_LEN);
    memcpy(pt + SCP_HASH_LEN, body, blen);
    scp_wipe(body, blen);
    free(body);
    uint64_t gen = same_gen ? v->gen : v->gen + 1;
    int keep = v->ml_base >= 0 ? v->ml_base : v->ml_adopt;
    int si = keep >= 0 ? 1 - keep : (v->slot_gen[0] <= v->slot_gen[1] ? 0 : 1);
    int rc = slot_seal(v, gen, pt, SCP_STATEHASH_LEN + blen, &slot, &slen, err);
    scp_wipe(pt, SCP_STATEHASH_LEN + blen);
    free(pt);
    long nlazy = rc == 0 ? durable_prepare(v, NULL, err) : 0;
    if (nlazy < 0) rc = -1;
    if (rc == 0) mlog_epoch_bump(v);
    if (rc == 0 && (scp_pwrite_full(v->slotfd[si], slot, slen, 0) < 0 ||
                    ftruncate(v->slotfd[si], (off_t)slen) < 0 || fdatasync(v->slotfd[si]) < 0))
        rc = scp_fail_errno(err, "cannot write the volume manifest");
    if (rc == 0) { /* the commit point */
        jlist_clear(v); /* (the slot holds every state that a listed journal could) */
        /* (and the state of the sole holder's deferred records: the new log starts past them) */
        defer_drop(v);
        v->slot_gen[si] = gen;
        memcpy(v->slot_salt[si], slot + 16, SCP_SALT_LEN);
        memcpy(v->slot_sh[si], sh, SCP_HASH_LEN);
        memcpy(v->statehash, sh, SCP_HASH_LEN);
        tag_of(v, gen, sh, &v->cur_tag);
        v->cur_tag_due = 0;
        scp_manifest fresh;
        if (man_copy(&fresh, &v->man) == 0) {
            scp_manifest_free(&v->disk);
            v->disk = fresh;
            mchg_reset(v);
            v->ml_adopt = si;
            /* (a failure leaves no usable log: the next commit writes a slot again) */
            (void)mlog_restart(v, si, NULL);
        } else {
            v->ml_base = v->ml_adopt = -1;
            vol_mchg_off(v);
        }
        commit_done(v, gen, 1, nlazy);
    }
    free(slot);
    return rc;
}

/* Does the state in memory keep the manifest's rules where delta d (from `disk` to `man`)
 * changes it? The checks that applying d to `disk` makes (scp_manifest_apply), made on `man`,
 * which is what that apply yields: a record that an opener would refuse must never be written,
 * since it ends every later walk with an error and the volume would not open. */
static int names_agree(const scp_manifest *m, const uint8_t id[SCP_FILEID_LEN]) {
    long first = -1;
    for (size_t k = 0; k < m->n; k++) {
        if (memcmp(m->e[k]->id, id, SCP_FILEID_LEN) != 0) continue;
        if (first < 0) first = (long)k;
        else if (!scp_mentry_same_file(m->e[first], m->e[k])) return 0;
    }
    return 1;
}

static int mlog_check(const scp_volume *v, const scp_mdelta *d, scp_err *err) {
    const scp_manifest *m = &v->man;
    for (size_t k = 0; k < d->ndel; k++) {
        long i = man_find(&v->disk, d->del[k]);
        /* (a name of its own, nlink 1 in `disk`, leaves no other name of its file behind: the
         * entries of `man` with its id are the puts of this delta (a rename's target, a link
         * made beside it), whose names the put checks below compare; no scan here) */
        assert(i < 0 || v->disk.e[i]->nlink != 1 || !v->ml_check_now ||
               names_agree(m, v->disk.e[i]->id));
        if (i < 0 || man_find(m, d->del[k]) >= 0 || man_has_child(m, d->del[k]) ||
            (v->disk.e[i]->nlink != 1 && !names_agree(m, v->disk.e[i]->id)))
            return scp_fail(err, SCP_E_INTEGRITY, EIO,
                            "refusing a manifest record that removes '%s' inconsistently",
                            d->del[k]);
    }
    for (size_t k = 0; k < d->nput; k++) {
        const scp_mentry *p = &d->put[k];
        long i = man_find(&v->disk, p->path), j = man_find(m, p->path);
        /* A put that keeps the id of a file with this one name, before and after, changes no
         * other entry's names: the apply skips counting them on the same ground (nlink 1,
         * scp_manifest_apply), so the scans of the whole manifest are skipped here too. */
        int one_name = i >= 0 && j >= 0 && v->disk.e[i]->nlink == 1 && m->e[j]->nlink == 1 &&
                       memcmp(v->disk.e[i]->id, p->id, SCP_FILEID_LEN) == 0;
        /* A new name of a file with this one name (a create, or a rename's target): no other
         * entry of `man` has its id, so its names agree without a scan (which made every
         * create O(entries)); the apply counts them (relink_one), as for any new name. */
        int new_one = i < 0 && j >= 0 && m->e[j]->nlink == 1 && memcmp(m->e[j]->id, p->id, SCP_FILEID_LEN) == 0;
#ifndef NDEBUG
        assert(!one_name || !v->ml_check_now ||
               (names_agree(m, p->id) && names_agree(m, v->disk.e[i]->id)));
        assert(!new_one || !v->ml_check_now || man_find_id(m, p->id, j) < 0);
#endif
        one_name |= new_one;
        if (!scp_manifest_parent_is_dir(m, p->path) ||
            (p->type != SCP_MTYPE_DIR && man_has_child(m, p->path)) ||
            (!one_name && (!names_agree(m, p->id) || (i >= 0 && !names_agree(m, v->disk.e[i]->id)))))
            return scp_fail(err, SCP_E_INTEGRITY, EIO,
                            "refusing a manifest record whose entry '%s' breaks the manifest's "
                            "rules (the names of one file disagree, or no parent directory)",
                            p->path);
    }
    return 0;
}

/* Seal the delta from `disk` to `man` as the record of generation gen + 1 (*rec, *rlen; *d:
 * the delta parsed back, what `disk` becomes). Returns 0, 1 if the delta is past max_body
 * (nothing sealed), or -1. */
static int mlog_seal(scp_volume *v, int durable, size_t max_body, uint8_t **rec_out,
                     size_t *rlen_out, scp_mdelta *d, scp_err *err) {
    uint8_t *body = NULL;
    size_t blen = 0, nchg = 0;
    memset(d, 0, sizeof *d);
    if (mlog_delta(v, &body, &blen, &nchg, err) < 0) return -1;
    if (blen > max_body) {
        scp_wipe(body, blen);
        free(body);
        return 1;
    }
    size_t rlen = SCP_MREC_HDR_LEN + blen + SCP_GCMTAG_LEN;
    uint8_t *rec = malloc(rlen);
    int rc = rec ? 0 : scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory writing the manifest log");
    if (rc == 0) {
        scp_put_u32(rec, (uint32_t)blen);
        scp_put_u32(rec + 4, durable ? SCP_MREC_DURABLE : 0);
        scp_put_u64(rec + 8, v->gen + 1);
        rc = scp_random_public(rec + 16, SCP_NONCE_LEN, err);
    }
    if (rc == 0) {
        uint8_t aad[SCP_VOLID_LEN + SCP_HASH_LEN + SCP_MREC_HDR_LEN];
        memcpy(aad, v->volid, SCP_VOLID_LEN);
        memcpy(aad + SCP_VOLID_LEN, v->ml_chain, SCP_HASH_LEN);
        memcpy(aad + SCP_VOLID_LEN + SCP_HASH_LEN, rec, SCP_MREC_HDR_LEN);
        rc = scp_aead_seal(v->ml_key, rec + 16, aad, sizeof aad, body, blen, rec + SCP_MREC_HDR_LEN,
                           rec + SCP_MREC_HDR_LEN + blen, err);
        VSTAT(mlog_seal);
    }
    /* What the record says is what `disk` becomes (parsed back: the walk's own path). */
    if (rc == 0) rc = scp_mdelta_parse(body, blen, d, err);
    if (rc == 0) rc = mlog_check(v, d, err);
    if (rc == 0) fam_store(v, v->gen + 1, rec, rlen, body, blen);
    scp_wipe(body, blen);
    free(body);
    if (rc < 0) {
        scp_mdelta_free(d);
        memset(d, 0, sizeof *d);
        free(rec);
        return -1;
    }
    *rec_out = rec;
    *rlen_out = rlen;
    return 0;
}

/* Append rec at ml_end (a torn tail beyond it is cut); sync if durable. */
static int mlog_append(scp_volume *v, const uint8_t *rec, size_t rlen, int sync, scp_err *err) {
    uint64_t end = v->ml_end + rlen;
    if (scp_pwrite_full(v->mlog_fd, rec, rlen, v->ml_end) < 0 ||
        (v->ml_size > end && ftruncate(v->mlog_fd, (off_t)end) < 0) ||
        (sync && fdatasync(v->mlog_fd) < 0)) {
        if (v->ml_size < end) v->ml_size = end; /* (what landed is cut at the next append) */
        return scp_fail_errno(err, "cannot append to the manifest log");
    }
    return 0;
}

/* After rec (delta d, generation gen + 1) is the log's last record: the state in memory. */
static void mlog_took(scp_volume *v, const uint8_t *rec, size_t rlen, const scp_mdelta *d,
                      int durable, long nlazy) {
    /* (d is the whole difference from `disk` to `man`, so `man` is what the apply yields) */
    if (scp_manifest_apply(&v->disk, d, &v->man, NULL, NULL, NULL) < 0) {
        /* cannot happen (mlog_check passed); start over from the slot next time */
        v->ml_base = v->ml_adopt = -1;
        vol_mchg_off(v);
    } else {
        mchg_reset(v); /* (`disk` is `man` now) */
#ifndef NDEBUG
        /* (the names it did not count have the count that `man` keeps; as the whole-manifest
         * comparison in mlog_delta, sampled) */
        for (size_t k = 0; v->ml_check_now && k < d->nput; k++) {
            long a = man_find(&v->disk, d->put[k].path), b = man_find(&v->man, d->put[k].path);
            assert(a >= 0 && b >= 0 && v->disk.e[a]->nlink == v->man.e[b]->nlink);
        }
#endif
    }
    scp_journal_chain(v->ml_chain, rec, rlen);
    v->ml_end += rlen;
    v->ml_size = v->ml_end;
    assert(rlen >= SCP_MREC_HDR_LEN + SCP_GCMTAG_LEN);
    mlog_tail_note(v, rec + rlen - sizeof v->ml_tail); /* (its tag) */
    v->ml_nrec++;
    memcpy(v->statehash, v->ml_chain, SCP_HASH_LEN);
    v->cur_tag_due = 1; /* (of gen + 1, which commit_done makes gen) */
    commit_done(v, v->gen + 1, durable, nlazy);
}


/* The lock file's list of journals with one-flush records (internal.h). */
static uint32_t jlist_read(scp_volume *v, uint8_t ids[VOL_JLIST_MAX * SCP_FILEID_LEN]) {
    uint8_t c[4] = {0}, *m = lock_page(v);
    if (m) {
        memcpy(c, m + VOL_JLIST_OFF, 4);
        uint32_t n = scp_get_u32(c);
        if (n > VOL_JLIST_MAX) n = VOL_JLIST_MAX;
        memcpy(ids, m + VOL_JLIST_OFF + 16, n * SCP_FILEID_LEN);
        return n;
    }
    if (v->lockfd < 0 || pread(v->lockfd, c, 4, VOL_JLIST_OFF) != 4) return 0;
    uint32_t n = scp_get_u32(c);
    if (n > VOL_JLIST_MAX) n = VOL_JLIST_MAX; /* (not ours: look at what fits) */
    ssize_t got = n ? pread(v->lockfd, ids, n * SCP_FILEID_LEN, VOL_JLIST_OFF + 16) : 0;
    /* (a short list: the ids that are there) */
    return got > 0 ? (uint32_t)((size_t)got / SCP_FILEID_LEN) : 0;
}

int vol_jlist_has(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]) {
    uint8_t ids[VOL_JLIST_MAX * SCP_FILEID_LEN];
    uint32_t n = jlist_read(v, ids);
    for (uint32_t i = 0; i < n; i++)
        if (memcmp(ids + i * SCP_FILEID_LEN, id, SCP_FILEID_LEN) == 0) return 1;
    return 0;
}

/* List id, durably (a journal becomes a commit point only once an open would look in it).
 * Returns 0, or -1 if the list is full or cannot be written. */
static int jlist_add(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]) {
    uint8_t ids[VOL_JLIST_MAX * SCP_FILEID_LEN], c[4];
    uint32_t n = jlist_read(v, ids);
    for (uint32_t i = 0; i < n; i++)
        if (memcmp(ids + i * SCP_FILEID_LEN, id, SCP_FILEID_LEN) == 0) return 0;
    if (n == VOL_JLIST_MAX) return -1;
    scp_put_u32(c, n + 1);
    if (pwrite(v->lockfd, id, SCP_FILEID_LEN, VOL_JLIST_OFF + 16 + n * SCP_FILEID_LEN) != SCP_FILEID_LEN ||
        pwrite(v->lockfd, c, 4, VOL_JLIST_OFF) != 4 || fdatasync(v->lockfd) < 0)
        return -1;
    return 0;
}

/* The mark (the lock file's first pages): the generation of a one-flush commit under way, or
 * of one that failed with this bit (vol_commit_oneflush, mlog_adopt_journals). */
#define JMARK_FAILED (1ull << 63)
static uint64_t jmark_get(scp_volume *v) {
    uint8_t b[8], *m = lock_page(v);
    if (m) return scp_get_u64(memcpy(b, m + VOL_JMARK_OFF, 8));
    return v->lockfd >= 0 && pread(v->lockfd, b, 8, VOL_JMARK_OFF) == 8 ? scp_get_u64(b) : 0;
}
static void jmark_set(scp_volume *v, uint64_t gen) {
    uint8_t b[8], *m = lock_page(v);
    scp_put_u64(b, gen);
    if (m) memcpy(m + VOL_JMARK_OFF, b, 8);
    else if (v->lockfd >= 0) (void)!pwrite(v->lockfd, b, 8, VOL_JMARK_OFF);
}

/* manifest.log was synced with every record this process took in (or a slot holds the
 * state): no journal is needed to recover any of them, so the list and the mark go (unsynced:
 * a stale list only makes an open look in more journals). */
static void jlist_prelist(scp_volume *v);
static void jlist_clear(scp_volume *v) {
    uint8_t z[12] = {0}, *m = lock_page(v);
    if (m) { /* (only what is set: a store dirties the page, which the kernel then writes) */
        if (memcmp(m + VOL_JMARK_OFF, z, 8) != 0) memset(m + VOL_JMARK_OFF, 0, 8);
        if (memcmp(m + VOL_JLIST_OFF, z, 4) != 0) memset(m + VOL_JLIST_OFF, 0, 4);
        jlist_prelist(v);
        return;
    }
    if (v->lockfd < 0) return;
    if (jmark_get(v)) (void)!pwrite(v->lockfd, z, 8, VOL_JMARK_OFF);
    uint8_t c[4] = {0};
    if (pread(v->lockfd, c, 4, VOL_JLIST_OFF) == 4 && scp_get_u32(c))
        (void)!pwrite(v->lockfd, z, 4, VOL_JLIST_OFF);
    jlist_prelist(v);
}

/* Outside shared mode, right after the list was emptied: list the ids kept for reuse
 * (vol_doomed_drain) that the next creates take first, with one sync, so that each such
 * file's first one-flush commit finds its journal listed (jlist_add) instead of syncing the
 * lock file itself: sqlite's rollback journal is a new file each transaction, and that sync
 * was one of its five flushes. Four places stay free for other files. Listing a journal that
 * holds nothing of its own only makes an open look in it: its old records (of the removed
 * file, the same key) are of generations the synced log already holds, and fail the
 * adoption's generation and chain test. If the sync fails, the list is emptied again (not
 * durably: a stale list is harmless) and creates list themselves as before. */
static void jlist_prelist(scp_volume *v) {
    if (v->shared || v->nspare == 0 || v->lockfd < 0) return;
    uint8_t ids[VOL_JLIST_MAX * SCP_FILEID_LEN], c[4], z[4] = {0};
    size_t n = 0;
    /* (the spares are taken from the end; only journals up to 1 MiB, since an open after a
     * crash reads every listed one whole) */
    for (size_t k = v->nspare; k-- > 0 && n < VOL_JLIST_MAX - 4;) {
        char name[48];
        struct stat st;
        vol_object_name(v->spare[k], ".j", name);
        if (scp_fstatat_notime(v->objfd, name, AT_SYMLINK_NOFOLLOW, &st) == 0 &&
            st.st_size > (1 << 20))
            continue;
        memcpy(ids + n++ * SCP_FILEID_LEN, v->spare[k], SCP_FILEID_LEN);
    }
    if (n == 0) return;
    scp_put_u32(c, (uint32_t)n);
    if (pwrite(v->lockfd, ids, n * SCP_FILEID_LEN, VOL_JLIST_OFF + 16) != (ssize_t)(n * SCP_FILEID_LEN) ||
        pwrite(v->lockfd, c, 4, VOL_JLIST_OFF) != 4 || fdatasync(v->lockfd) < 0)
        (void)!pwrite(v->lockfd, z, 4, VOL_JLIST_OFF);
}

/* ---- the sole holder's deferred manifest-log records ---------------------------------------
 * A one-flush commit's record is durable once its journal is synced (the commit point); its
 * append to manifest.log, unsynced, is for the other processes' catch-up and for a later sync
 * of the log that lets the journals go. The sole holder has no other process to catch up
 * (none is past its open until the holding ends), so it keeps the records and writes them
 * with one pwrite: when MLOG_DEFER_BYTES or MLOG_DEFER_RECS are reached, before anything else
 * writes, syncs or folds the log (mlog_commit, vol_mlog_sync, mlog_full), and when the holding
 * ends (volume.c, sole_set: the release, shared mode, the close, a fork's prepare). A crash
 * meanwhile leaves them where a power cut that lost the log's unsynced tail leaves them: in
 * the listed journals, which the next open adopts (docs/volume-format.md, "Sole holder"). */
#define MLOG_DEFER_BYTES (32u << 10)
#define MLOG_DEFER_RECS 256

/* Keep rec (sealed at the log's end, not yet taken in) for a later write. Caller holds
 * v->mu. 0 if kept, -1 if not (not the sole holder, a torn tail to cut first, a failed
 * earlier write, or no memory): append it now, or fold. */
static int mlog_defer(scp_volume *v, const uint8_t *rec, size_t rlen) {
    if (v->sole != SOLE_FRESH || v->shared) return -1;
    assert(scp_mutex_held(&v->mu));
    pthread_mutex_lock(&v->ml_defer_mu);
    int ok = !v->ml_defer_bad && (v->ml_defer_len || v->ml_size == v->ml_end);
    if (ok) {
        uint8_t *p = scp_grow(v->ml_defer, &v->ml_defer_cap, v->ml_defer_len + rlen, 4096);
        if (p) v->ml_defer = p;
        else ok = 0;
    }
    if (ok) {
        if (!v->ml_defer_len) v->ml_defer_at = v->ml_end;
        assert(v->ml_defer_at + v->ml_defer_len == v->ml_end);
        memcpy(v->ml_defer + v->ml_defer_len, rec, rlen);
        v->ml_defer_len += rlen;
        v->ml_defer_n++;
    }
    pthread_mutex_unlock(&v->ml_defer_mu);
    return ok ? 0 : -1;
}

/* Write the deferred records where they belong; they leave memory either way. -1 if the
 * write failed (some of it may have landed; ml_defer_bad makes the next commit fold, which
 * cuts it). Caller holds v->mu or a file's rw. */
static int defer_flush(scp_volume *v) {
    pthread_mutex_lock(&v->ml_defer_mu);
    int rc = v->ml_defer_bad ? -1 : 0;
    if (v->ml_defer_len) {
        if (scp_pwrite_full(v->mlog_fd, v->ml_defer, v->ml_defer_len, (off_t)v->ml_defer_at) < 0) {
            rc = -1;
            v->ml_defer_bad = 1;
        }
        v->ml_defer_len = v->ml_defer_n = 0;
        if (v->ml_defer_cap > 4 * MLOG_DEFER_BYTES) { /* (a large delta's: let go) */
            free(v->ml_defer);
            v->ml_defer = NULL;
            v->ml_defer_cap = 0;
        }
    }
    pthread_mutex_unlock(&v->ml_defer_mu);
    return rc;
}

/* The log has a new start (a fold's slot holds the state): nothing deferred belongs to it. */
static void defer_drop(scp_volume *v) {
    pthread_mutex_lock(&v->ml_defer_mu);
    v->ml_defer_len = v->ml_defer_n = 0;
    v->ml_defer_bad = 0;
    pthread_mutex_unlock(&v->ml_defer_mu);
}

int vol_mlog_defer_write(scp_volume *v, scp_err *err) {
    /* (set only by the sole holder, under mu: read here by a caller that holds it, or by
     * the volume's creation, which has none) */
    if (!v->ml_defer_len && !v->ml_defer_bad) return 0;
    assert(scp_mutex_held(&v->mu));
    if (defer_flush(v) == 0) return 0;
    /* As after a failed append: the records are in the listed journals only, so the state
     * goes to a slot (its sync is the commit point of a fold of the same generation). */
    if (mlog_full(v, 1, NULL) == 0) return 0;
    v->ml_base = v->ml_adopt = -1; /* (the next commit writes a slot) */
    return scp_fail(err, SCP_E_SYS, EIO, "cannot append to the manifest log (deferred records)");
}

int vol_mlog_sync(scp_volume *v, scp_err *err) {
    if (!v->mlog || v->mlog_fd < 0) return 0;
    /* (the sole holder's deferred records are part of what a listed journal may hold) */
    /* (a failed write leaves a gap that the next commit's fold closes; the journals stay) */
    if (defer_flush(v) < 0)
        return scp_fail(err, SCP_E_SYS, EIO, "cannot append to the manifest log (deferred records)");
    /* Not under the lock: the log is synced as it stands, and every state it can stand in
     * is one the slots and journals recover (a fold synced its slot before restarting it). */
    if (fdatasync(v->mlog_fd) < 0) return scp_fail_errno(err, "cannot sync the manifest log");
    return 0;
}

/* ---- lazy records carried by a one-flush commit ----------------------------------------------
 * A lazy record (a namespace operation: sqlite's rollback journal is created and deleted in
 * every transaction) leaves the log's end unsynced, and the next commit had to sync the log
 * first: two flushes. The lazy records this process appended since its last sync are kept as
 * written, and a one-flush commit puts them into its journal ahead of its own record, all
 * behind its commit record: the journal's one sync makes every record up to the commit's
 * durable, and an open that adopts from the journal (mlog_adopt_journals) takes them in
 * generation order, each only where the log that landed ends (docs/volume-format.md). */
#define PEND_MAX_RECS 64 /* (shared mode: the lazy records of every process between two fsyncs) */

static int pend_valid(const scp_volume *v) {
    return v->ml_dur_end && v->ml_pend_at == v->ml_dur_end &&
           v->ml_dur_end + v->ml_pend_len == v->ml_end;
}

/* After this process appended the lazy record rec at end_before (now taken in). */
static void pend_add(scp_volume *v, const uint8_t *rec, size_t rlen, uint64_t end_before) {
    int ok = v->ml_dur_end && v->ml_pend_at == v->ml_dur_end &&
             v->ml_dur_end + v->ml_pend_len == end_before && v->ml_pend_n < PEND_MAX_RECS &&
             v->ml_pend_len + rlen + (v->ml_pend_n + 1) * SCP_JREC_HDR_LEN <= SCP_JMREC_MAX;
    if (ok) {
        uint8_t *p = scp_grow(v->ml_pend, &v->ml_pend_cap, v->ml_pend_len + rlen, 1024);
        if (p) v->ml_pend = p;
        else ok = 0;
    }
    if (!ok) {
        v->ml_pend_at = 0; /* (the next commit syncs the log first, as before) */
        return;
    }
    memcpy(v->ml_pend + v->ml_pend_len, rec, rlen);
    v->ml_pend_len += rlen;
    v->ml_pend_n++;
}

/* The log is durable up to ml_end: nothing to carry. */
static void pend_reset(scp_volume *v) {
    v->ml_pend_len = v->ml_pend_n = 0;
    v->ml_pend_at = v->ml_dur_end;
}

/* The length of the manifest-log record at p (its header's length field counts the body). */
static size_t pend_rec_len(const uint8_t *p) {
    return SCP_MREC_HDR_LEN + (size_t)scp_get_u32(p) + SCP_GCMTAG_LEN;
}

/* Shared mode, the catch-up (vol_refresh_manifest): the records of other processes walked in
 * buf (the log from ml_end, w's offsets relative to it). A durable record among them makes the
 * log durable up to it: that process synced the log after appending it, or put it and the
 * unsynced records before it into a listed journal that it synced first, both under the volume
 * lock. The lazy records past it are kept as this process's own would be, so that this
 * process's next fsync can carry them (vol_commit_oneflush). */
static void pend_walked(scp_volume *v, const uint8_t *buf, const struct mlog_walk *w) {
    size_t from = 0;
    if (w->dur_off) {
        v->ml_dur_end = v->ml_end + w->dur_off;
        pend_reset(v);
        from = w->dur_off;
    }
    for (size_t off = from, n; off < w->off; off += n) {
        n = pend_rec_len(buf + off);
        assert(off + n <= w->off);
        pend_add(v, buf + off, n, v->ml_end + off);
    }
}

static int mlog_commit(scp_volume *v, int durable, scp_err *err) {
    /* (the sole holder's deferred records first: this record goes behind them, and a durable
     * one's sync must cover them; a failed write folds, and the checks below see the result) */
    if (vol_mlog_defer_write(v, err) < 0) return -1;
    if (v->ml_base < 0 && v->ml_adopt >= 0) (void)mlog_restart(v, v->ml_adopt, NULL);
    if (v->ml_base < 0 || mlog_long(v)) return mlog_full(v, 0, err);
    uint8_t *rec = NULL;
    size_t rlen = 0;
    scp_mdelta d;
    int rc = mlog_seal(v, durable, SCP_MREC_MAX_BODY, &rec, &rlen, &d, err);
    if (rc > 0) return mlog_full(v, 0, err);
    long nlazy = rc == 0 && durable ? durable_prepare(v, NULL, err) : 0;
    if (nlazy < 0) rc = -1;
    /* A durable commit's fdatasync covers every record before it (the commit point). */
    if (rc == 0) rc = mlog_append(v, rec, rlen, durable, err);
    if (rc == 0) {
        uint64_t end = v->ml_end;
        mlog_took(v, rec, rlen, &d, durable, nlazy);
        if (durable) {
            v->ml_dur_end = v->ml_end;
            pend_reset(v);
            jlist_clear(v);
        } else {
            pend_add(v, rec, rlen, end);
        }
    }
    scp_mdelta_free(&d);
    free(rec);
    return rc;
}

void (*vol_test_oneflush_synced)(scp_volume *v);

/* The one-flush commit (internal.h; crash argument in docs/volume-format.md). In shared mode
 * it is an fsync's durable commit ("Shared mode", one-flush durable commits): f's last commit
 * may be a lazy one, and the records past the durable end are the lazy records of every
 * process since the last durable one (ml_pend, kept as walked or written). */
int vol_commit_oneflush(scp_volume *v, scp_file *f, scp_err *err) {
    assert(VOL_LOCK_HELD(v) && FILE_WR_HELD(f));
    (void)vol_pub_take(v); /* (announced first, as vol_commit_manifest does) */
    /* Only onto a log that is durable up to its end (its header and every record before this
     * one are synced or in listed journals: an open reaches this record's place), and not
     * after a committer that died between its journal's sync and its append to the log (its
     * record, of the same generation and place, may lie in its journal). Or onto one whose
     * records past the durable end are kept as written (ml_pend): they go into the journal
     * ahead of this one, and the same sync makes them durable. */
    int carry = v->ml_dur_end != v->ml_end;
    if (!v->mlog || v->ml_base < 0 || (carry && !pend_valid(v)) ||
        mlog_long(v) || jmark_get(v))
        return 1;
    /* Shared mode: the records go behind f's last commit record, which an open must find
     * (j_tail_commit), and f's journal is ours to append to (the caller is its writer) */
    assert(!v->shared || f->writer);
    if (v->shared && (!f->j_end || !f->j_tail_commit || f->modified || f->fd_j < 0 ||
                      f->j_end > SCP_JOURNAL_MAX))
        return 1;
    uint8_t *rec = NULL;
    size_t rlen = 0;
    scp_mdelta d;
    struct past_names pn; /* (as vol_commit_manifest: R3's smallest form) */
    pn.n = 0;
    uint64_t t = VSTAT_T0();
    (void)vol_past_name(v, NULL, 0, &pn);
    int rc = mlog_seal(v, 1, SCP_JMREC_MAX_BODY, &rec, &rlen, &d, err);
    VSTAT_T1(oneflush_seal_ns, t);
    if (rc != 0) {
        if (pn.n) vol_past_named(v, &pn, 0);
        return rc;
    }
    /* (all of it within the one manifest-log record a journal allows per commit; f's own
     * journal is not synced ahead: its sync below is the commit point) */
    size_t pend_bytes = carry ? v->ml_pend_len + v->ml_pend_n * SCP_JREC_HDR_LEN : 0;
    t = VSTAT_T0();
    long nlazy = pend_bytes + rlen > SCP_JMREC_MAX ? 0 : durable_prepare(v, f->id, err);
    VSTAT_T1(oneflush_prep_ns, t);
    if (pend_bytes + rlen > SCP_JMREC_MAX) rc = 1;
    else if (nlazy < 0) rc = -1;
    else if (jlist_add(v, f->id) < 0) rc = 1;
    if (rc == 0) {
        f->jl_fresh = 0; /* (its journal now holds a record that only it may keep) */
        jmark_set(v, v->gen + 1);
        /* Before the run goes behind f's last commit: the run names no root of f, yet it moves
         * f's journal end, and a writer in another process appends there only after it took in
         * every commit that raised f's hint (writer_refresh), stepping over the run
         * (journal_skip_mrecs). As any commit that touches a file does (commit_name). */
        vol_file_hint_bump(v, f->id);
        int was_on = f->jq_on;
        f->jq_on = 1; /* (one pwrite for the run; drained below, under the locks) */
        t = VSTAT_T0();
        for (size_t off = 0, n; carry && rc == 0 && off < v->ml_pend_len; off += n) {
            n = pend_rec_len(v->ml_pend + off);
            assert(off + n <= v->ml_pend_len);
            rc = journal_put_mlog(f, v->ml_pend + off, n, err);
        }
        if (rc == 0 && (journal_put_mlog(f, rec, rlen, err) < 0 || journal_drain(f, err) < 0)) rc = -1;
        VSTAT_T1(oneflush_put_ns, t);
        if (rc == 0) {
            uint64_t ts = VSTAT_T0();
            if (fdatasync(f->fd_j) < 0) rc = scp_fail_errno(err, "cannot sync the journal of '%s'", f->path);
            VSTAT_T1(oneflush_sync_ns, ts);
        }
        if (rc < 0) (void)journal_drain(f, NULL);
        f->jq_on = was_on;
        if (rc < 0) {
            /* The record may have landed: the next commit goes through the synced log, whose
             * walk then passes this record's place with a record of its own. Until then the
             * mark says that it failed, so that no open takes it (mlog_adopt_journals): this
             * process goes on without it. */
            v->ml_dur_end = 0;
            jmark_set(v, (v->gen + 1) | JMARK_FAILED);
        }
    }
    if (rc == 0 && vol_test_oneflush_synced) vol_test_oneflush_synced(v);
    t = VSTAT_T0();
    if (rc == 0) { /* the commit point has passed */
        /* The sole holder keeps the record for a later write of several (mlog_defer); anyone
         * else appends it now, behind what was deferred (none: only the sole holder defers) */
        int deferred = mlog_defer(v, rec, rlen) == 0;
        int appended = deferred || (defer_flush(v) == 0 && mlog_append(v, rec, rlen, 0, NULL) == 0);
        jmark_set(v, 0);
        /* The removal of a file whose journal is listed may be durable now (a carried lazy
         * record) while the records in that journal are not yet in the synced log: its
         * objects go at the next durable commit through the log (mlog_commit), not now. */
        v->doom_keep_listed = 1;
        mlog_took(v, rec, rlen, &d, 1, nlazy);
        v->doom_keep_listed = 0;
        v->ml_dur_end = v->ml_end;
        pend_reset(v);
        /* (the record is in the journal only: a full slot of this state takes over) */
        if (!appended && mlog_full(v, 1, NULL) < 0) v->ml_base = v->ml_adopt = -1;
        /* (a full buffer is written now: one pwrite for its records) */
        if (deferred && (v->ml_defer_len >= MLOG_DEFER_BYTES || v->ml_defer_n >= MLOG_DEFER_RECS))
            (void)vol_mlog_defer_write(v, NULL);
    }
    if (pn.n) vol_past_named(v, &pn, rc == 0);
    VSTAT_T1(oneflush_after_ns, t);
    scp_mdelta_free(&d);
    free(rec);
    return rc;
}

/* The type 3 records (format.h) of one journal whose generation is past gen, appended to *c. */
struct cand {
    uint8_t *rec;
    size_t len;
    uint64_t gen;
    uint8_t id[SCP_FILEID_LEN];   /* the file whose journal holds it */
    uint8_t root[SCP_HASH_LEN];   /* what the commit record that its run follows names */
    uint64_t size;
};
struct cands {
    struct cand *a;
    size_t n, cap;
};

struct cand_ctx {
    struct cands *c;
    uint64_t gen;
    const uint8_t *id;
    int nomem;
};

static void cand_take(void *ctx, const uint8_t *rec, size_t len, const uint8_t root[SCP_HASH_LEN],
                      uint64_t size) {
    struct cand_ctx *x = ctx;
    struct cands *c = x->c;
    if (x->nomem || len < SCP_MREC_HDR_LEN || scp_get_u64(rec + 8) <= x->gen) return;
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16;
        struct cand *na = realloc(c->a, ncap * sizeof *na);
        if (!na) {
            x->nomem = 1;
            return;
        }
        c->a = na;
        c->cap = ncap;
    }
    uint8_t *copy = malloc(len);
    if (!copy) {
        x->nomem = 1;
        return;
    }
    memcpy(copy, rec, len);
    struct cand *k = &c->a[c->n++];
    k->rec = copy;
    k->len = len;
    k->gen = scp_get_u64(rec + 8);
    memcpy(k->id, x->id, SCP_FILEID_LEN);
    memcpy(k->root, root, SCP_HASH_LEN);
    k->size = size;
}

/* A journal larger than this is not read for one-flush records (a writer closes its log past
 * SCP_JOURNAL_MAX; what is left past it is a big last commit, not worth the memory here: the
 * open then finds an older state, as after the loss of that commit). */
#define JOURNAL_SCAN_MAX (64u << 20)

/* The one-flush records of one listed journal past generation gen, appended to *c: only those
 * behind a commit record that checks out (scp_journal_mrecs), so that a record that landed
 * without its commit's data is never taken. */
static int journal_cands(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], uint64_t gen,
                         struct cands *c) {
    char name[48];
    vol_object_name(id, ".j", name);
    uint8_t *buf = NULL, fkey[32];
    size_t len = 0, n0 = c->n;
    /* (a populated mapping: a journal of megabytes, read at every open) */
    if (scp_read_file_mapped(v->objfd, name, JOURNAL_SCAN_MAX, &buf, &len, NULL) < 0) return 0;
    struct cand_ctx x = {c, gen, id, 0};
    if (vol_file_key(v, id, fkey, NULL) == 0)
        scp_journal_mrecs(buf, len, v->cs, v->volid, fkey, id, cand_take, &x);
    scp_wipe(fkey, sizeof fkey);
    scp_file_copy_free(buf, len);
    /* What was read may be in the page cache only: a committer killed between its journal
     * pwrite and its sync (or whose sync failed: then the mark says so, mlog_adopt_journals)
     * leaves records that a power cut can still take away. The manifest log is about to name
     * them durably, so the journal is synced first (everything read was written before this
     * sync); if that fails, none of its records are taken. Only an open that finds records
     * past the log's end pays it (a crash, a kill, a failure). */
    if (c->n > n0) {
        int fd = openat(v->objfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0 || fdatasync(fd) < 0) {
            while (c->n > n0) free(c->a[--c->n].rec);
        }
        if (fd >= 0) close(fd);
    }
    return x.nomem ? -1 : 0;
}

static const scp_mentry *entry_by_id(const scp_manifest *m, const uint8_t id[SCP_FILEID_LEN]);

/* Does the durable record k (just applied to m) make durable the state that the commit record
 * its run follows names? A one-flush commit puts its run behind its file's last commit record,
 * under the file's writer lock, so the file's entry after the run's durable record (its last)
 * is that commit's state, unless a record of the run removed the file (vol_commit_oneflush,
 * file_sync_shared: the file's journal ends behind a commit record that names its current
 * root). A run found behind another commit record is a newer log's, written over an older log
 * from offset 0, whose header and records a power cut lost while the run landed behind a
 * commit record of the older log that ends where the newer log's did (test_volume_logrun):
 * its durable record would name a state whose commit record is gone. */
static int run_follows_commit(const scp_manifest *m, const struct cand *k) {
    const scp_mentry *e = entry_by_id(m, k->id);
    return !e || (e->size == k->size && memcmp(e->root, k->root, SCP_HASH_LEN) == 0);
}

/* One-flush commits (docs/volume-format.md): after the walk of the log (w), take in from the
 * listed journals each record of the next generation that authenticates at the chain value
 * reached, and repeat, up to the first durable record that does not pass run_follows_commit;
 * append what was taken to manifest.log and sync it. Returns how many were taken, or -1. */
static long mlog_adopt_journals(scp_volume *v, struct mlog_walk *w, scp_err *err) {
    uint8_t ids[VOL_JLIST_MAX * SCP_FILEID_LEN];
    uint32_t nid = jlist_read(v, ids);
    struct cands c = {0};
    long took = 0;
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < nid; i++)
        if (journal_cands(v, ids + i * SCP_FILEID_LEN, w->gen, &c) < 0)
            rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory reading the journals");
    /* The walk applies a record before it is known to be durable: the state before the first
     * one, to go back to and take again up to (not including) a durable record refused. The
     * same records fit the same places again, so what the first pass wrote to manifest.log
     * before the refused one is written again, byte for byte. */
    struct mlog_walk w0 = *w;
    scp_manifest m0 = {0};
    if (rc == 0 && c.n && man_copy(&m0, w->m) < 0)
        rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory reading the journals");
    uint64_t cap = UINT64_MAX; /* (take no record of this generation or later) */
    /* A one-flush commit that failed in a process that lives on (vol_commit_oneflush: its
     * journal's pwrite or sync failed, and the mark says so): its record may lie in its
     * journal, but that process took the commit as not made and goes on from the state
     * before it (its uncommitted writes kept, its next commit naming this generation in the
     * synced log). Taken here (another process's open, or its own fork child's repair) it
     * became the durable state under the writer: its next commit failed as "another process
     * committed it" (a false report of tampering) and the writes after it were lost
     * (test_volume_pcfail "fork"). Never acknowledged, it is not taken: the state before it
     * is the one an fsync returned. */
    uint64_t mark = jmark_get(v);
    if (mark & JMARK_FAILED) cap = mark & ~JMARK_FAILED;
    for (int progress = 1; rc == 0 && progress;) {
        progress = 0;
        for (size_t k = 0; rc == 0 && k < c.n; k++) {
            if (c.a[k].gen != w->gen + 1 || c.a[k].gen >= cap) continue;
            struct mlog_walk one = *w;
            one.buf = c.a[k].rec;
            one.len = c.a[k].len;
            one.off = 0;
            one.nrec = 0;
            one.stop_gen = w->gen + 1;
            if (mlog_walk(v, &one, err) < 0) rc = -1;
            else if (one.nrec == 1 && one.off == one.len && one.last_durable &&
                     !run_follows_commit(w->m, &c.a[k])) {
                /* back to the log's end and take again up to this generation */
                cap = c.a[k].gen;
                scp_manifest_free(w->m);
                if (man_copy(w->m, &m0) < 0) {
                    rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory reading the journals");
                    break;
                }
                *w = w0;
                took = 0;
                progress = 1;
                break;
            } else if (one.nrec == 1 && one.off == one.len) {
                if (scp_pwrite_full(v->mlog_fd, c.a[k].rec, c.a[k].len, (off_t)w->off) < 0) {
                    rc = scp_fail_errno(err, "cannot append to the manifest log");
                    break;
                }
                memcpy(w->chain, one.chain, SCP_HASH_LEN);
                w->gen = one.gen;
                w->dur_gen = one.dur_gen;
                w->last_durable = one.last_durable;
                w->removed |= one.removed;
                w->off += c.a[k].len;
                w->nrec++;
                took++;
                progress = 1;
            }
        }
    }
    /* Durable in the log now, so that the journals may be emptied. */
    if (rc == 0 && took > 0 &&
        (ftruncate(v->mlog_fd, (off_t)w->off) < 0 || fdatasync(v->mlog_fd) < 0))
        rc = scp_fail_errno(err, "cannot sync the manifest log");
    if (rc == 0 && took > 0) {
        w->adopted = took;
        jlist_clear(v);
    }
    for (size_t k = 0; k < c.n; k++) free(c.a[k].rec);
    free(c.a);
    scp_manifest_free(&m0);
    return rc < 0 ? -1 : took;
}

/* Format 3's load. Read the log whole; walk it from its base slot when it continues one
 * (authenticated, parsed, walked in place). Chooses the newest state: a slot's or the log's
 * end (a slot on a tie: a fold). The other durable slot is authenticated only when it could
 * win: when the log continues no authentic slot, or when its header's generation is not
 * below the log's end. Its header is in its seal's AAD, so an authentic slot with a lower
 * generation loses to the log's end, and one whose header the host changed fails
 * authentication: either way the log's end is chosen, as when it is not read. Then it counts
 * as unknown (slot_gen 0), which only a fold reads, and a fold writes the slot the log does
 * not continue. An exec'd image reads one slot of a large manifest, not two. */
static int mlog_load(scp_volume *v, scp_err *err) {
    uint8_t *buf = NULL;
    size_t len = 0, buf_len = 0; /* (len: what is taken of buf) */
    scp_mlog_hdr h;
    struct mlog_walk w;
    memset(&w, 0, sizeof w);
    scp_manifest lm = {0};
    struct slot_info si[2];
    scp_err e[2];
    memset(si, 0, sizeof si);
    memset(e, 0, sizeof e);
    int ok[2] = {0, 0}, tried[2] = {0, 0}, peeked[2];
    uint64_t pgen[2] = {0, 0};
    uint8_t psalt[2][SCP_SALT_LEN];
    int base = -1, rc = 0;
    /* (the headers before the log, as the slots were read before it: a fold writes its slot
     * first) */
    for (int i = 0; i < 2; i++) peeked[i] = slot_peek_id(v, i, &pgen[i], psalt[i]) == 0;
    v->ml_base = v->ml_adopt = -1;
    v->ml_size = 0;
    v->ml_tail_at = 0; /* (none known until a walk or a write notes it) */
    memset(v->ml_hdr, 0, sizeof v->ml_hdr);
    /* (populated in one call, as a slot is: a long log's page faults one at a time cost more
     * than its read) */
    if (scp_read_file_mapped(v->dirfd, "manifest.log", MLOG_READ_MAX, &buf, &len, NULL) == 0) {
        buf_len = len;
        v->ml_size = len;
        if (len >= SCP_MLOG_HDR_LEN) memcpy(v->ml_hdr, buf, SCP_MLOG_HDR_LEN);
        if (scp_mlog_hdr_parse(buf, len, &h, NULL) == 0)
            for (int i = 0; i < 2 && base < 0; i++) {
                if (!peeked[i] || pgen[i] != h.base_gen ||
                    memcmp(psalt[i], h.base_salt, SCP_SALT_LEN) != 0)
                    continue;
                tried[i] = 1;
                ok[i] = slot_open(v, i, &si[i], &e[i]) == 0;
                /* (the authenticated values decide: the file may have changed since the peek) */
                if (ok[i] && si[i].gen == h.base_gen &&
                    memcmp(si[i].salt, h.base_salt, SCP_SALT_LEN) == 0)
                    base = i;
            }
    }
    if (base >= 0 &&
        scp_derive_key(v->k_man, SCP_LABEL_MLOG, h.log_salt, SCP_SALT_LEN, v->ml_key, err) < 0)
        rc = -1;
    if (rc == 0 && base >= 0) {
        if (slot_parse(&si[base], &lm, err) < 0) {
            rc = -1;
        } else {
            w.buf = buf;
            w.len = len;
            w.off = SCP_MLOG_HDR_LEN;
            mlog_chain0(buf, si[base].sh, w.chain);
            w.gen = w.dur_gen = si[base].gen;
            w.stop_gen = UINT64_MAX;
            w.last_durable = 1;
            w.m = &lm;
            if (mlog_walk(v, &w, err) < 0) rc = -1;
        }
    }
    v->ml_dur_end = 0;
    /* Only at a first load (v->gen == 0): the open, and a fork child's repair that loads again
     * from generation 0 (fork_catch_up; it catches up instead when the parent's state was in
     * the log), which reads them when the mark says that a one-flush committer died or the
     * parent's records are in journals only (below). After a power cut every process opens
     * anew. A process that reloads while it runs (another one committed) does not read the listed
     * journals (up to 8 MiB each); what it could find there is a commit whose committer died
     * before its log append, never acknowledged, which the next open takes.
     * Both first loads run under the cross-process lock, which every committer
     * takes except the sole holder (docs/volume-format.md, "Sole holder"), and no process
     * holds the volume alone while another has it open: an open waits for the holder to let
     * go, and a fork child keeps its parent's presence (the inherited lock file description)
     * until its repair takes its own. A holding that let a copy outlive it unrepaired (a
     * process that lets go of the volume at a fork, as session 18's "parking" did) must have
     * the copy wait out any private holder before this load: it adopts listed journals'
     * records and cuts the log to what it read (test_volume_forkstress). */
    int adopt = v->load_kind == VOL_LOAD_ANY ? v->gen == 0 : 1;
    /* A fork child's repair (a first load, v->gen 0) is a load of a process that joins a live
     * family, not an open after a crash: as for a process that reloads while it runs, the
     * journals can hold a record past the log's end only when a one-flush committer died
     * between its journal's sync and its append, and then the mark says so (set and cleared
     * under the volume lock, which this load holds: a live committer is not half-way). The
     * parent's own records are in the log or a slot (fork_in_log; its prepare wrote what it
     * had deferred). Reading every listed journal whole (up to 64 MiB each) was most of a
     * fork child's first call: volume_fork's children read the parent's ~8 MiB journal each,
     * 23% of the machine's CPU in copy_page_to_iter (session 29). */
    if (v->load_kind == VOL_LOAD_FORK_REPAIR && v->fork_in_log) {
        uint64_t mark = jmark_get(v);
        adopt = mark && !(mark & JMARK_FAILED);
    }
    if (rc == 0 && base >= 0 && adopt) {
        long took = mlog_adopt_journals(v, &w, err);
        if (took < 0) rc = -1;
        if (took > 0) len = w.off;
    }
    for (int i = 0; rc == 0 && i < 2; i++)
        if (!tried[i] && (base < 0 || (peeked[i] && pgen[i] >= w.gen))) {
            tried[i] = 1;
            ok[i] = slot_open(v, i, &si[i], &e[i]) == 0;
        }
    slots_note(v, ok, si);
    int best = ok[0] && (!ok[1] || si[0].gen >= si[1].gen) ? 0 : ok[1] ? 1 : -1;
    /* (a log with no records that continues the newest slot is that slot's: keep appending) */
    int use_log = rc == 0 && base >= 0 &&
                  (best < 0 || w.gen > si[best].gen || (base == best && w.nrec == 0));
    uint64_t gen = use_log ? w.gen : best >= 0 ? si[best].gen : 0;
    if (rc == 0 && !use_log && best < 0) rc = slots_unauthentic(err, e);
    if (rc == 0 && gen < v->gen)
        rc = scp_fail(err, SCP_E_ROLLBACK, EIO,
                      "the volume manifest went back from generation %llu to %llu while open",
                      (unsigned long long)v->gen, (unsigned long long)gen);
    /* (the base's manifest is in lm, walked: a slot chosen instead is newer than the log's end,
     * so it is not the base, which the log's records would have made newer) */
    scp_manifest sm = {0};
    assert(rc != 0 || use_log || best != base);
    if (rc == 0 && !use_log && slot_parse(&si[best], &sm, err) < 0) rc = -1;
    scp_manifest *chosen = use_log ? &lm : &sm;
    scp_manifest copy = {0};
    if (rc == 0 && man_copy(&copy, chosen) < 0)
        rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory reading the manifest");
    if (rc == 0) {
        scp_manifest_free(&v->man);
        scp_manifest_free(&v->disk);
        v->man = *chosen;
        memset(chosen, 0, sizeof *chosen);
        v->disk = copy;
        mchg_reset(v);
        v->gen = gen;
        v->ml_size = len;
        if (use_log) {
            v->ml_base = base;
            v->ml_end = w.off;
            /* (records adopted from journals were written past what buf holds) */
            if (!w.adopted && w.off >= sizeof v->ml_tail && w.off <= len)
                mlog_tail_note(v, buf + w.off - sizeof v->ml_tail);
            if (w.off == len && w.adopted) v->ml_dur_end = w.off; /* (synced just now) */
            v->ml_pend_at = 0; /* (nothing to carry: ml_pend is not this log's) */
            v->ml_nrec = w.nrec;
            memcpy(v->ml_chain, w.chain, SCP_HASH_LEN);
            /* (the state of a log without records is its base's) */
            memcpy(v->statehash, w.nrec ? w.chain : si[base].sh, SCP_HASH_LEN);
            v->dur_gen = w.dur_gen;
            v->man_scratch = !w.last_durable;
        } else {
            v->ml_adopt = best;
            memcpy(v->statehash, si[best].sh, SCP_HASH_LEN);
            v->dur_gen = gen;
            v->man_scratch = 0;
        }
        tag_of(v, gen, v->statehash, &v->cur_tag);
        v->tag = v->cur_tag;
        v->cur_tag_due = v->tag_due = 0;
    }
    scp_manifest_free(&lm);
    scp_manifest_free(&sm);
    for (int i = 0; i < 2; i++)
        if (ok[i]) slot_release(&si[i]);
    scp_file_copy_free(buf, buf_len);
    return rc;
}

/* Is the log's header on disk the one read or written last (the same log)? */
static int mlog_header_same(scp_volume *v) {
    uint8_t hdr[SCP_MLOG_HDR_LEN];
    return scp_pread_full(v->mlog_fd, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr &&
           memcmp(hdr, v->ml_hdr, sizeof hdr) == 0;
}

/* Did another process append to the log or start a new one since we read it? */
static int mlog_changed(scp_volume *v) {
    struct stat st;
    if (scp_fstat_notime(v->mlog_fd, &st) < 0) return 1;
    if ((uint64_t)st.st_size == v->ml_size && st.st_size < SCP_MLOG_HDR_LEN) return 0;
    return (uint64_t)st.st_size != v->ml_size || !mlog_header_same(v);
}

/* A catch-up's read of the log from ml_end: on 1, *out holds the n bytes there (inside the
 * allocation *base, which the caller frees) and *size is the log's size they say; 0 when the
 * log is not the one in memory (a new log, one shorter than ml_end, or too long to read: the
 * caller reloads); -1 out of memory. When the 16 bytes before ml_end are known (ml_tail), one
 * pread from there returns them with what follows: bytes that match say that the log is the
 * one in memory, since a new log has a salt of its own (its header's) and so other bytes at
 * any offset past its header, and what follows is new (a short read of a regular file is its
 * end). Otherwise (no match, a read that filled the buffer, none known) the log's size and
 * header are read as well, three system calls where this is one. The bytes are authenticated
 * by the walk either way: this choice only decides whether a reload is needed, and a host
 * that forges the tail can only make a process miss records, as one that holds back the log's
 * growth can. */
#define MLOG_TAIL_READ (4096 - 16) /* (a catch-up reads ~1 KB in PostgreSQL's server) */
static int mlog_read_new(scp_volume *v, uint8_t **base, const uint8_t **out, size_t *n,
                         uint64_t *size) {
    const size_t t = sizeof v->ml_tail;
    *base = NULL;
    if (v->ml_tail_at == v->ml_end && v->ml_end >= SCP_MLOG_HDR_LEN) {
        uint8_t *b = malloc(t + MLOG_TAIL_READ);
        if (!b) return -1;
        /* (one pread, not scp_pread_full's loop, whose second call would only find the end) */
        ssize_t r = pread(v->mlog_fd, b, t + MLOG_TAIL_READ, (off_t)(v->ml_end - t));
        VSTAT(mlog_pread);
        VSTAT_ADD(mlog_pread_bytes, r > 0 ? (uint64_t)r : 0);
        if (r >= (ssize_t)t && (size_t)r < t + MLOG_TAIL_READ && memcmp(b, v->ml_tail, t) == 0) {
            *base = b;
            *out = b + t;
            *n = (size_t)r - t;
            *size = v->ml_end + *n;
            return 1;
        }
        free(b);
        VSTAT(mlog_tail_miss);
    }
    struct stat st;
    if (scp_fstat_notime(v->mlog_fd, &st) < 0 || !mlog_header_same(v) ||
        (uint64_t)st.st_size < v->ml_end || (uint64_t)st.st_size - v->ml_end > MLOG_READ_MAX)
        return 0;
    VSTAT_ADD(mlog_pread, 1);
    VSTAT_ADD(mlog_pread_bytes, SCP_MLOG_HDR_LEN);
    *size = (uint64_t)st.st_size;
    *out = NULL;
    *n = 0;
    if (*size == v->ml_size) return 1; /* (nothing new: not read) */
    size_t m = (size_t)(*size - v->ml_end);
    uint8_t *b = malloc(m ? m : 1);
    if (!b) return -1;
    *base = b;
    *out = b;
    *n = (size_t)scp_pread_full(v->mlog_fd, b, m, (off_t)v->ml_end);
    if (*n > m) *n = 0; /* (a read error: nothing new) */
    VSTAT(mlog_pread);
    VSTAT_ADD(mlog_pread_bytes, m);
    return 1;
}

static int refresh_manifest(scp_volume *v, scp_err *err);

int vol_refresh_manifest(scp_volume *v, scp_err *err) {
    VSTAT(mrefresh);
    uint64_t t = VSTAT_T0();
    int rc = refresh_manifest(v, err);
    VSTAT_T1(mrefresh_ns, t);
    if (rc != 0) VSTAT(mrefresh_moved);
    return rc;
}

/* A catch-up that reads the whole manifest again: the open files note the states named now,
 * which those that lose their names keep (vol_note_named). */
static int reload_manifest(scp_volume *v, scp_err *err) {
    vol_note_named(v);
    return vol_load_manifest(v, err);
}

static int refresh_manifest(scp_volume *v, scp_err *err) {
    assert(v->ml_defer_len == 0); /* (only the sole holder defers, and it does not catch up) */
    if (!v->mlog || v->gen == 0 || v->ml_base < 0) {
        if (v->gen != 0 && vol_peek_generation(v) <= v->gen) return 0;
        return reload_manifest(v, err) < 0 ? -1 : 1;
    }
    /* A one-flush committer that died between its journal's sync (its commit point) and its
     * append to the log: its mark is still set, and we hold the volume lock it held (the mark
     * is set and cleared under it). Its record is durable in its journal, and an open takes
     * it (mlog_adopt_journals); a catch-up from the log alone does not, and once a commit
     * went through the log (as the mark makes every commit do) the dead record's generation
     * was taken: processes had read the commit and then every process read the state before
     * it (test_volume_oneflush "deadmark"). So the first process that finds the mark takes the
     * record in. A record that did not land is never taken: the mark then says so
     * (JMARK_FAILED), for every later open too. */
    uint64_t mark = jmark_get(v);
    if (mark && !(mark & JMARK_FAILED)) {
        VSTAT(mrefresh_reload);
        v->load_kind = VOL_LOAD_DEAD_MARK;
        int rc = reload_manifest(v, err);
        v->load_kind = VOL_LOAD_ANY;
        if (rc == 0 && jmark_get(v) == mark) jmark_set(v, mark | JMARK_FAILED);
        return rc < 0 ? -1 : 1;
    }
    /* Same log, grown: read only its new records. Anything else (a new log, a slot written
     * since, a record that does not check out) reloads the whole state. */
    /* The slot headers only when the fold epoch moved since this process last looked (or
     * there is no mapped page): a slot is written only after the epoch moved (mlog_full). */
    uint64_t epoch = mlog_epoch(v);
    int peek = !v->hint || epoch != v->ml_epoch;
    if (peek && (slot_peek(v, 0) > v->gen || slot_peek(v, 1) > v->gen))
        return VSTAT(mrefresh_reload), reload_manifest(v, err) < 0 ? -1 : 1;
    uint8_t *base;
    const uint8_t *buf;
    size_t n;
    uint64_t size;
    int got = mlog_read_new(v, &base, &buf, &n, &size);
    if (got < 0) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory reading the manifest log");
    if (got == 0) return VSTAT(mrefresh_reload), reload_manifest(v, err) < 0 ? -1 : 1;
    v->ml_epoch = epoch; /* (the slots are not newer than the state in memory at this epoch) */
    if (size == v->ml_size) {
        free(base);
        return 0;
    }
    struct mlog_walk w;
    memset(&w, 0, sizeof w);
    /* (buf holds the log from ml_end: offsets in the walk are relative to it) */
    w.buf = buf;
    w.len = n;
    memcpy(w.chain, v->ml_chain, SCP_HASH_LEN);
    w.gen = v->gen;
    w.dur_gen = v->dur_gen;
    w.last_durable = !v->man_scratch;
    w.stop_gen = UINT64_MAX;
    w.m = &v->man;
    w.m2 = &v->disk;
    w.on_leave = note_leaving;
    int track = mchg_usable(v);
    int rc = mlog_walk(v, &w, err);
    /* (the same records applied to both: where they differ is still among the listed paths) */
    if (rc >= 0 && track) v->mchg_ver = v->man.ver;
    if (rc < 0) { /* the state in memory may be half-changed: start over from the disk */
        free(base);
        return reload_manifest(v, err) < 0 ? -1 : 1;
    }
    v->ml_size = size;
    if (w.nrec == 0) {
        free(base);
        return 0;
    }
    if (v->shared) pend_walked(v, buf, &w);
    v->ml_end += w.off;
    assert(w.off >= sizeof v->ml_tail); /* (a record ends in its tag) */
    mlog_tail_note(v, buf + w.off - sizeof v->ml_tail);
    free(base);
    v->ml_nrec += w.nrec;
    memcpy(v->ml_chain, w.chain, SCP_HASH_LEN);
    memcpy(v->statehash, w.chain, SCP_HASH_LEN);
    v->gen = w.gen;
    v->dur_gen = w.dur_gen;
    v->man_scratch = !w.last_durable;
    /* (no HMAC per catch-up: both tags are the new state's, computed when read) */
    v->cur_tag_due = v->tag_due = 1;
    v->tag_gen = v->gen;
    memcpy(v->tag_sh, v->statehash, SCP_HASH_LEN);
    return w.removed ? 1 : 2;
}

int vol_fold_manifest(scp_volume *v, scp_err *err) {
    if (!v->mlog || v->ml_base < 0 || v->ml_nrec == 0) return 0;
    if (vol_past_commit(v, err) < 0) return -1; /* (a fold's slot is of the same generation) */
    return mlog_full(v, 1, err);
}

/* The newest durable state (format 3: the log up to its last durable record). */
static int durable_state(scp_volume *v, scp_manifest *out) {
    memset(out, 0, sizeof *out);
    if (v->ml_base < 0 || v->dur_gen == v->gen) return man_copy(out, &v->man);
    scp_manifest base = {0};
    struct slot_info si;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = -1;
    if (slot_load(v, v->ml_base, &base, &si, NULL) == 0 &&
        scp_read_file(v->dirfd, "manifest.log", MLOG_READ_MAX, &buf, &len, NULL) == 0 &&
        len >= SCP_MLOG_HDR_LEN && memcmp(buf, v->ml_hdr, SCP_MLOG_HDR_LEN) == 0) {
        struct mlog_walk w;
        memset(&w, 0, sizeof w);
        w.buf = buf;
        w.len = len;
        w.off = SCP_MLOG_HDR_LEN;
        mlog_chain0(buf, si.sh, w.chain);
        w.gen = si.gen;
        w.stop_gen = v->dur_gen;
        w.m = &base;
        if (mlog_walk(v, &w, NULL) == 0 && w.gen == v->dur_gen) {
            *out = base;
            memset(&base, 0, sizeof base);
            rc = 0;
        }
    }
    scp_manifest_free(&base);
    free(buf);
    return rc;
}

struct id_list {
    uint8_t (*ids)[SCP_FILEID_LEN];
    size_t n, cap;
    int nomem;
};
static void id_list_add(void *ctx, const scp_mentry *e) {
    struct id_list *l = ctx;
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 64;
        void *p = realloc(l->ids, nc * sizeof *l->ids);
        if (!p) {
            l->nomem = 1;
            return;
        }
        l->ids = p;
        l->cap = nc;
    }
    memcpy(l->ids[l->n++], e->id, SCP_FILEID_LEN);
}

/* Every id that a record of the log puts (any state a power cut could bring back names only
 * these, the slots' and the current ones). Returns -1 if the log cannot be walked whole. */
static int mlog_ids(scp_volume *v, struct id_list *l) {
    if (!v->mlog || v->ml_base < 0) return 0;
    scp_manifest base = {0};
    struct slot_info si;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = -1;
    if (slot_load(v, v->ml_base, &base, &si, NULL) == 0 &&
        scp_read_file(v->dirfd, "manifest.log", MLOG_READ_MAX, &buf, &len, NULL) == 0 &&
        len >= SCP_MLOG_HDR_LEN) {
        struct mlog_walk w;
        memset(&w, 0, sizeof w);
        w.buf = buf;
        w.len = len;
        w.off = SCP_MLOG_HDR_LEN;
        mlog_chain0(buf, si.sh, w.chain);
        w.gen = si.gen;
        w.stop_gen = UINT64_MAX;
        w.m = &base;
        w.on_put = id_list_add;
        w.ctx = l;
        rc = mlog_walk(v, &w, NULL) == 0 && !l->nomem ? 0 : -1;
    }
    scp_manifest_free(&base);
    free(buf);
    return rc;
}

static int cmp_id(const void *a, const void *b) { return memcmp(a, b, SCP_FILEID_LEN); }

/* The collection's mark for the log as it is (internal.h, VOL_GC_SEEN_OFF): a hash of its
 * header, which a fold or a new log changes; 0 when there is no mapped page or no log walked
 * from a base (nothing is skipped then). */
static uint64_t gc_mark(const scp_volume *v) {
    if (!v->hint || !v->mlog || v->ml_base < 0) return 0;
    uint8_t h[SCP_HASH_LEN];
    scp_sha256_buf(v->ml_hdr, sizeof v->ml_hdr, h);
    uint64_t m = scp_get_u64(h);
    return m ? m : 1;
}

void vol_collect_garbage(scp_volume *v) {
    assert(VOL_LOCK_HELD(v));
    if (!lockbyte_get(v, VOL_LOCKBYTE_DOOMED)) return;
    uint64_t mark = gc_mark(v);
    if (mark && __atomic_load_n(v->hint + VOL_GC_SEEN_OFF / 8, __ATOMIC_ACQUIRE) == mark) {
        VSTAT(gc_skip);
        return; /* (what was pending under this log still is: internal.h) */
    }
    /* Keep what any slot names: until two durable commits have passed a removal, a power cut
     * can bring back a state that has the file. And what this process has loaded (a file
     * unlinked while open is still read through its objects). */
    size_t n = 0, cap = 0;
    uint8_t(*ids)[SCP_FILEID_LEN] = NULL;
    scp_manifest m[3] = {{0}};
    struct id_list logged = {0};
    if (mlog_ids(v, &logged) < 0) { /* a log we cannot walk may name objects still needed */
        free(logged.ids);
        return;
    }
    /* Format 3: the state is the base slot's (or a log's that continues it), which was synced
     * before any record: no power cut brings back the other slot, nor the scratch slot, which
     * format 3 never writes. Only a host that destroys the base could (a rollback that the tag
     * reports), and then the files removed since may not read (availability). */
    int only = !v->mlog ? -1 : v->ml_base >= 0 ? v->ml_base : v->ml_adopt;
    for (int i = 0; i < 3; i++) {
        struct slot_info si;
        scp_err e;
        if (only >= 0 && i != only) continue;
        if (v->slotfd[i] >= 0 && slot_load(v, i, &m[i], &si, &e) < 0) {
            m[i].n = 0;
            /* A slot that holds a manifest we cannot read (torn, or a read error) may name
             * objects still needed: keep everything until it is rewritten. */
            if (slot_peek(v, i) != 0) {
                for (int k = 0; k < i; k++) scp_manifest_free(&m[k]);
                free(logged.ids);
                return;
            }
        }
        cap += m[i].n;
    }
    for (scp_file *f = v->files; f; f = f->next) cap++;
    cap += logged.n;
    ids = malloc((cap ? cap : 1) * sizeof *ids);
    /* A file that an older slot still names but the current manifest does not is collected at
     * a later open, after more durable commits: the flag stays set until none is left. */
    uint8_t(*cur)[SCP_FILEID_LEN] = malloc((v->man.n ? v->man.n : 1) * sizeof *cur);
    for (size_t k = 0; cur && k < v->man.n; k++) memcpy(cur[k], v->man.e[k]->id, SCP_FILEID_LEN);
    if (cur) qsort(cur, v->man.n, sizeof *cur, cmp_id);
    int pending = 0;
    for (int i = 0; i < 3; i++) {
        for (size_t k = 0; ids && k < m[i].n; k++) {
            memcpy(ids[n++], m[i].e[k]->id, SCP_FILEID_LEN);
            if (!cur || !bsearch(m[i].e[k]->id, cur, v->man.n, sizeof *cur, cmp_id)) pending = 1;
        }
        scp_manifest_free(&m[i]);
    }
    for (size_t k = 0; ids && k < logged.n; k++) {
        memcpy(ids[n++], logged.ids[k], SCP_FILEID_LEN);
        if (!cur || !bsearch(logged.ids[k], cur, v->man.n, sizeof *cur, cmp_id)) pending = 1;
    }
    free(logged.ids);
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
    VSTAT(gc_scan);
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
    else if (mark) __atomic_store_n(v->hint + VOL_GC_SEEN_OFF / 8, mark, __ATOMIC_RELEASE);
}

static const scp_mentry *entry_by_id(const scp_manifest *m, const uint8_t id[SCP_FILEID_LEN]) {
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i]->type == 1 && memcmp(m->e[i]->id, id, SCP_FILEID_LEN) == 0) return m->e[i];
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

/* Chunk index's newest table entry e, kept in ents (SCP_CHUNK_ENTRY_LEN each, n used of cap)
 * at the place at maps it to: the settle's walks keep the last entry per chunk. 0, or -1 out
 * of memory. */
static int ents_put(u64map *at, uint8_t **ents, size_t *n, size_t *cap, uint64_t index, const uint8_t *e) {
    uint64_t k;
    if (!u64map_get(at, index, &k)) {
        if (*n == *cap) {
            size_t c = *cap ? 2 * *cap : 256;
            uint8_t *p = realloc(*ents, c * SCP_CHUNK_ENTRY_LEN);
            if (!p) return -1;
            *ents = p;
            *cap = c;
        }
        k = (*n)++;
        if (u64map_put(at, index, k) < 0) return -1;
    }
    memcpy(*ents + k * SCP_CHUNK_ENTRY_LEN, e, SCP_CHUNK_ENTRY_LEN);
    return 0;
}

static int settle_entry(void *ctx, uint64_t index, const uint8_t *e) {
    struct settle_walk *w = ctx;
    return index >= w->nchunks ? 0 : ents_put(&w->at, &w->ents, &w->n, &w->cap, index, e);
}

/* Does chunk i of file id, written in place under table entry en (slot SCP_ENT_SLOT(en) of
 * fd[]: .d, .s), authenticate? ct and pt: chunk-sized scratch (pt wiped by the caller). */
static int inplace_chunk_ok(scp_volume *v, const uint8_t *id, const uint8_t key[32],
                            const int fd[2], uint64_t i, const uint8_t *en, uint8_t *ct,
                            uint8_t *pt) {
    uint8_t aad[SCP_VOLID_LEN + SCP_FILEID_LEN + 8], sk[32];
    int f = fd[SCP_ENT_SLOT(en)];
    memcpy(aad, v->volid, SCP_VOLID_LEN);
    memcpy(aad + SCP_VOLID_LEN, id, SCP_FILEID_LEN);
    scp_put_u64(aad + SCP_VOLID_LEN + SCP_FILEID_LEN, i);
    int ok = f >= 0 && scp_pread_full(f, ct, v->cs, (off_t)(i * v->cs)) == (ssize_t)v->cs &&
             scp_derive_key(key, SCP_LABEL_CHUNK, en, SCP_SALT_LEN, sk, NULL) == 0 &&
             scp_aead_open(sk, en + SCP_ENT_NONCE_OFF, aad, sizeof aad, ct, v->cs,
                           en + SCP_ENT_TAG_OFF, pt, NULL) == 0;
    scp_wipe(sk, sizeof sk);
    return ok;
}

static void open_slots(scp_volume *v, const uint8_t *id, int fd[2]) {
    for (int s = 0; s < 2; s++) {
        char name[48];
        vol_object_name(id, s ? ".s" : ".d", name);
        fd[s] = openat(v->objfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    }
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
    if (ok) open_slots(v, e->id, fd);
    uint8_t *ct = malloc(v->cs), *pt = malloc(v->cs);
    ok = ok && ct && pt;
    size_t pos = 0;
    uint64_t i, k;
    while (ok && u64map_next(&w.at, &pos, &i, &k)) {
        const uint8_t *en = w.ents + k * SCP_CHUNK_ENTRY_LEN;
        if (u64map_get(&w.logged, i, NULL) || is_hole(en)) continue;
        ok = inplace_chunk_ok(v, e->id, key, fd, i, en, ct, pt);
    }
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
             scp_journal_find(buf, len, v->cs, v->volid, key, e->id, e->root, e->size, &jv) == 1 &&
             inplace_chunks_ok(v, e, buf, &jv, key);
    scp_wipe(key, sizeof key);
    scp_wipe(&jv, sizeof jv);
    free(buf);
    return ok;
}

/* Settle S2-S3 (docs/volume-format.md, "Lock order and settle rules"): the commits of a listed
 * file's log past the one its manifest entry names, C1..Ck, each checked out by the full walk
 * (the chain over every header, every chunk record authenticated); the file takes the last Cj
 * such that the chunks that each of C1..Cj names in place authenticate, never a commit past
 * one that failed: a lost in-place chunk does not break the chain, so the walk itself would go
 * on past it (S3's explicit rule). */
struct later {
    scp_volume *v;
    const uint8_t *id, *key;
    size_t named_end;  /* the end of the commit the manifest names */
    uint64_t nchunks;  /* chunks of the last state taken (the named one at first) */
    u64map logged;     /* chunk index -> 1: a chunk record of it lies in the log so far */
    u64map at;         /* chunk index -> its newest entry's place in ents, so far */
    uint8_t *ents;
    size_t n, cap;
    int fd[2];
    uint8_t *ct, *pt;
    int nomem;
    uint64_t taken;    /* commits taken past the named one */
    uint64_t size;     /* ... the last one's size and root */
    uint8_t root[SCP_HASH_LEN];
};

static void later_chunk(void *ctx, uint64_t index) {
    struct later *w = ctx;
    if (u64map_put(&w->logged, index, 1) < 0) w->nomem = 1;
}

static int later_put(struct later *w, uint64_t index, const uint8_t *e) {
    return ents_put(&w->at, &w->ents, &w->n, &w->cap, index, e);
}

/* Chunk i's newest entry so far, if it is live in a state of n chunks and written in place (no
 * record of its own in the log, not a hole), authenticates; 1 when there is nothing to check. */
static int later_check(struct later *w, uint64_t i, uint64_t n) {
    uint64_t k;
    if (i >= n || u64map_get(&w->logged, i, NULL) || !u64map_get(&w->at, i, &k)) return 1;
    const uint8_t *en = w->ents + k * SCP_CHUNK_ENTRY_LEN;
    return is_hole(en) || inplace_chunk_ok(w->v, w->id, w->key, w->fd, i, en, w->ct, w->pt);
}

static int later_commit(void *ctx, size_t off, size_t end, const uint8_t *pt, uint64_t count) {
    struct later *w = ctx;
    (void)off;
    const uint8_t *e = pt + 8;
    for (uint64_t i = 0; i < count && !w->nomem; i++)
        if (later_put(w, scp_get_u64(e + i * SCP_JENTRY_LEN), e + i * SCP_JENTRY_LEN + 8) < 0)
            w->nomem = 1;
    if (w->nomem) return 1; /* (stop: take what was checked so far) */
    if (end <= w->named_end) return 0; /* (the named commit and those before it: entries only) */
    uint64_t size = scp_get_u64(pt), n = nchunks_of(size, w->v->cs);
    int ok = 1;
    for (uint64_t i = 0; i < count && ok; i++) ok = later_check(w, scp_get_u64(e + i * SCP_JENTRY_LEN), n);
    /* (entries named earlier beyond the size then, live in this state: checked too) */
    if (n > w->nchunks) {
        size_t pos = 0;
        uint64_t i, k;
        while (ok && u64map_next(&w->at, &pos, &i, &k))
            if (i >= w->nchunks) ok = later_check(w, i, n);
    }
    if (!ok) return 1; /* S3: never past a commit whose in-place chunks are not all there */
    w->taken++;
    w->size = size;
    w->nchunks = n;
    memcpy(w->root, pt + SCP_JCOMMIT_PT_LEN(count) - SCP_HASH_LEN, SCP_HASH_LEN);
    return 0;
}

/* For file entry e (listed in the lock file as having lazy commits): 1 with the size and root
 * of the last commit past the one e names that S2-S3 take, 0 if none (or the log does not hold
 * e's commit: a log dropped since, whose state is .t's; e stays). */
static int journal_later(scp_volume *v, const scp_mentry *e, uint64_t *size,
                         uint8_t root[SCP_HASH_LEN]) {
    char name[48];
    vol_object_name(e->id, ".j", name);
    uint8_t *buf = NULL, key[32];
    size_t len = 0;
    scp_journal_view jv;
    struct later w = {.v = v, .id = e->id, .key = key, .fd = {-1, -1}};
    u64map_init(&w.logged);
    u64map_init(&w.at);
    int found = scp_read_file(v->objfd, name, (size_t)1 << 30, &buf, &len, NULL) == 0 &&
                vol_file_key(v, e->id, key, NULL) == 0 &&
                scp_journal_find(buf, len, v->cs, v->volid, key, e->id, e->root, e->size, &jv) == 1;
    if (found) {
        w.named_end = jv.end;
        w.nchunks = nchunks_of(jv.new_size, v->cs);
        w.ct = malloc(v->cs);
        w.pt = malloc(v->cs);
        open_slots(v, e->id, w.fd);
        if (w.ct && w.pt)
            scp_journal_commits(buf, len, v->cs, v->volid, key, e->id, later_chunk, later_commit, &w);
    }
    if (w.taken) {
        *size = w.size;
        memcpy(root, w.root, SCP_HASH_LEN);
    }
    if (w.pt) scp_wipe(w.pt, v->cs);
    free(w.pt);
    free(w.ct);
    for (int s = 0; s < 2; s++)
        if (w.fd[s] >= 0) close(w.fd[s]);
    free(w.ents);
    u64map_free(&w.logged);
    u64map_free(&w.at);
    scp_wipe(key, sizeof key);
    scp_wipe(&jv, sizeof jv);
    free(buf);
    return w.taken > 0;
}

/* S1-S4 for the manifest in memory, before the open's durable record: every file in the lock
 * file's lazy list takes the last commit of its log that S2-S3 take (its objects synced first,
 * so that the durable record names only what is on disk; S4); the times stay the entry's (a
 * commit record holds none). Returns how many files moved. */
static size_t settle_follow(scp_volume *v) {
    uint8_t c[4];
    if (v->lockfd < 0 || pread(v->lockfd, c, 4, VOL_LAZY_OFF) != 4) return 0;
    uint32_t n = scp_get_u32(c);
    if (n == 0 || n > VOL_LAZY_MAX) return 0;
    uint8_t (*ids)[SCP_FILEID_LEN] = malloc((size_t)n * SCP_FILEID_LEN);
    if (!ids) return 0;
    size_t moved = 0;
    if (pread(v->lockfd, ids, (size_t)n * SCP_FILEID_LEN, VOL_LAZY_OFF + 16) ==
        (ssize_t)((size_t)n * SCP_FILEID_LEN)) {
        for (uint32_t j = 0; j < n; j++) {
            const scp_mentry *e = entry_by_id(&v->man, ids[j]);
            uint64_t size;
            uint8_t root[SCP_HASH_LEN];
            if (!e || !journal_later(v, e, &size, root)) continue;
            if (sync_object(v, e->id, ".j") < 0 || sync_object(v, e->id, ".d") < 0 ||
                sync_object(v, e->id, ".s") < 0)
                continue; /* (S4: not named durable unless on disk) */
            for (size_t k = 0; k < v->man.n; k++) { /* (every name of the file) */
                scp_mentry *d = v->man.e[k];
                if (d->type != SCP_MTYPE_FILE || memcmp(d->id, ids[j], SCP_FILEID_LEN) != 0) continue;
                d->size = size;
                memcpy(d->root, root, SCP_HASH_LEN);
            }
            moved++;
        }
    }
    free(ids);
    if (moved) {
        v->man.ver++;
        vol_mchg_off(v); /* (the record's delta from the whole comparison) */
    }
    return moved;
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

/* Are the objects that loading file e opens (.d and .t; .j and .s are made when missing) in the
 * objects directory? */
static int objects_present(scp_volume *v, const scp_mentry *e) {
    static const char *const ext[2] = {".d", ".t"};
    for (int k = 0; k < 2; k++) {
        char name[48];
        struct stat st;
        vol_object_name(e->id, ext[k], name);
        if (scp_fstatat_notime(v->objfd, name, AT_SYMLINK_NOFOLLOW, &st) < 0 ||
            !S_ISREG(st.st_mode))
            return 0;
    }
    return 1;
}

int vol_settle_lazy(scp_volume *v, scp_err *err) {
    assert(VOL_LOCK_HELD(v));
    uint8_t c[4] = {0};
    /* The newest state is a durable one: the listed files' logs may still hold commits past it
     * (a power cut that lost the lazy records, a kill between a commit record and its record) */
    if (!v->man_scratch) return settle_follow(v) ? vol_commit_manifest(v, 1, err) : 0;
    if (v->lockfd < 0 || pread(v->lockfd, c, 4, VOL_LAZY_OFF) != 4) memset(c, 0, sizeof c);
    uint32_t n = scp_get_u32(c);
    /* The newest durable state, to compare with and to fall back to. */
    scp_manifest dm = {0};
    int have_dm = 0;
    if (v->mlog) {
        have_dm = durable_state(v, &dm) == 0;
    } else {
        scp_manifest sm[2] = {{0}};
        struct slot_info si[2];
        int ok[2], best = -1;
        for (int i = 0; i < 2; i++) {
            ok[i] = slot_load(v, i, &sm[i], &si[i], NULL) == 0;
            if (ok[i] && (best < 0 || si[i].gen > si[best].gen)) best = i;
        }
        if (best >= 0) {
            dm = sm[best];
            memset(&sm[best], 0, sizeof sm[best]);
            have_dm = 1;
        }
        for (int i = 0; i < 2; i++)
            if (ok[i]) scp_manifest_free(&sm[i]);
    }
    /* Every file whose content the scratch slot names beyond the durable state, listed in the
     * lock file or not: the list is written without a sync, so a power cut may keep the
     * scratch slot that names a lazy root and lose the list entry (volume_powercut_shared). */
    size_t nlazy = 0;
    int sync_failed = 0; /* (then take the durable state) */
    for (size_t k = 0; have_dm && k < v->man.n; k++) {
        const scp_mentry *e = v->man.e[k];
        if (e->type != SCP_MTYPE_FILE || !entry_is_lazy(&dm, e)) continue;
        nlazy++;
        if (sync_object(v, e->id, ".j") < 0 || sync_object(v, e->id, ".d") < 0 ||
            sync_object(v, e->id, ".s") < 0)
            sync_failed = 1;
    }
    /* Files that the scratch state names and the durable one does not were created since the
     * last durable commit, and their objects' directory entries are synced only by the next
     * durable commit (create_objects, durable_prepare): a power cut may keep the unsynced
     * manifest record that names such a file and lose its .t or .d entry (volume_powercut
     * shared, seed 5088: an atomic replace without a sync, its file's .t lost; the journal
     * redid the lazy commit, so the state was taken, and the file could not be opened). Such a
     * state is not whole: go back to the durable one. A state that is kept and names new files
     * gets the directory synced by the next durable commit (this open's, below, or a later
     * one), asked for again here: the lock byte that asked for it may have been lost too. */
    int lost = 0, created = 0;
    for (size_t k = 0; have_dm && k < v->man.n; k++) {
        const scp_mentry *e = v->man.e[k];
        if (e->type != SCP_MTYPE_FILE || entry_by_id(&dm, e->id)) continue;
        created = 1;
        if (!objects_present(v, e)) lost = 1;
    }
    if (created) vol_lockbyte_set(v, VOL_LOCKBYTE_OBJDIR, 1); /* (not objdir_dirty: a close
                                                                  * that wrote nothing stays so) */
    if (n == 0 && nlazy == 0 && !lost) { /* nothing lazy: the scratch slot holds namespace changes only */
        scp_manifest_free(&dm);
        return 0;
    }
    if (lazy_sync(v, NULL, NULL) < 0) sync_failed = 1;
    int redone = have_dm && !sync_failed && !lost;
    for (size_t k = 0; k < v->man.n && redone; k++) {
        const scp_mentry *e = v->man.e[k];
        if (e->type == SCP_MTYPE_FILE && entry_is_lazy(&dm, e) && !journal_redoes(v, e))
            redone = 0;
    }
    if (!redone && have_dm) { /* back to the durable state, under a newer generation */
        vol_file_hints_bump_all(v); /* (files went back: no reader may skip) */
        scp_manifest_free(&v->man);
        vol_mchg_off(v);
        v->man = dm;
        memset(&dm, 0, sizeof dm);
    }
    scp_manifest_free(&dm);
    (void)settle_follow(v); /* (S2-S4 from whichever state was taken) */
    return vol_commit_manifest(v, 1, err);
}
