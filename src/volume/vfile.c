/* volume/vfile.c - the file handle API (scp_vfile_*): opening, the in-process file state and
 * its sharing, writer status, reading and writing through the dirty buffers, verification.
 *
 * The chunk table and chunk crypto are in chunk.c, the plaintext cache in cache.c, commit and
 * recovery in commit.c, becoming a file's writer and shared mode's publication and catch-up in
 * shared.c; internal.h declares what they share.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "crypto/parallel.h"
#include "volume/internal.h"
#include "volume/vstats.h"

#define ENT SCP_CHUNK_ENTRY_LEN
#define WRITE_BATCH_BYTES (4u << 20) /* bytes sealed and written in place per batch */
#define ZERO_PIECE WRITE_BATCH_BYTES   /* scp_vfile_zero_range's writes */

static void file_free(scp_file *f) {
    size_t pos = 0;
    uint64_t k, v;
    while (u64map_next(&f->dirty, &pos, &k, &v)) file_dirty_free(f, v);
    u64map_free(&f->dirty);
    file_dirty_spares_free(f);
    u64map_free(&f->jmap);
    file_ct_forget(f);
    u64map_free(&f->ctc);
    /* (the queue is empty but after a failed drain that no later drain retried: journal_drain
     * keeps it for that; the log on disk then ends at a torn tail, as after a power cut) */
    free(f->jq);
    u64map_free(&f->jlogged);
    u64map_free(&f->unapplied);
    u64map_free(&f->dapply);
    u64map_free(&f->placed);
    if (f->fd_d >= 0) close(f->fd_d);
    if (f->fd_s >= 0) close(f->fd_s);
    if (f->fd_t >= 0) close(f->fd_t);
    if (f->fd_j >= 0) close(f->fd_j);
    table_free(f);
    free(f->changed);
    free(f->page_hash);
    free(f->page_dirty);
    free(f->page_mid);
    free(f->page_mid_n);
    free(f->root_mid);
    free(f->path);
    pthread_rwlock_destroy(&f->rw);
    pc_drop(f);
    pthread_mutex_destroy(&f->pc_mu);
    /* (kept for the next file, wiped: it held the file key; one at a time) */
    scp_volume *vol = f->vol;
    scp_wipe(f, sizeof *f);
    void *old = __atomic_exchange_n(&vol->file_mem, (void *)f, __ATOMIC_ACQ_REL);
    scp_secure_free(old, sizeof *f);
}

void file_discard_uncommitted(scp_file *f) {
    size_t pos = 0;
    uint64_t k, v;
    while (u64map_next(&f->dirty, &pos, &k, &v)) file_dirty_free(f, v);
    u64map_clear(&f->dirty);
    u64map_clear(&f->jmap);
    file_ct_forget(f);
    u64map_clear(&f->placed);
    f->j_end = 0; /* the records after the last commit are dead; the next commit checkpoints */
    f->jq_len = 0; /* (and a queue kept for them: journal_drain; kept only while modified) */
    f->jq_kept = 0;
    f->j_clean = 0;
    f->modified = 0;
}

/* A file created without a durable commit after it may come back from a power cut in the
 * scratch manifest while its objects, whose directory was not synced, did not. Only an empty
 * file can (any content commit syncs the directory first), and its content is known: recreate
 * its objects. Returns -1 with errno if that fails. */
static int empty_lost_objects(scp_volume *v, const scp_mentry *e) {
    uint8_t root[SCP_HASH_LEN];
    if (e->size != 0) return 0;
    file_empty_root(e->id, root);
    if (memcmp(root, e->root, SCP_HASH_LEN) != 0) return 0;
    for (int k = 0; k < 2; k++) { /* data and table; a missing journal is made when needed */
        char name[48];
        vol_object_name(e->id, vol_object_ext[k], name);
        if (faccessat(v->objfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0) continue;
        if (errno != ENOENT) return 0; /* file_open_obj reports it */
        int fd = openat(v->objfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) return -1;
        vol_object_owner(v, fd);
        close(fd);
        if (fsync(v->objfd) < 0) return -1;
    }
    return 0;
}

static scp_file *file_get_fds(scp_volume *v, const scp_mentry *e, int *fd, scp_err *err);

scp_file *file_get(scp_volume *v, const scp_mentry *e, scp_err *err) {
    return file_get_fds(v, e, NULL, err);
}

scp_file *file_get_new(scp_volume *v, const scp_mentry *e, int *fd, scp_err *err) {
    scp_file *f = file_get_fds(v, e, fd, err);
    for (int k = 0; k < VOL_NOBJECTS; k++) /* (a new id is never loaded: taken, or failed) */
        if (fd[k] >= 0) {
            close(fd[k]);
            fd[k] = -1;
        }
    return f;
}

static scp_file *file_get_fds(scp_volume *v, const scp_mentry *e, int *fd, scp_err *err) {
    assert(VOL_MU_HELD(v)); /* (file_get and file_get_new both come through here) */
    for (scp_file *f = v->files; f; f = f->next) {
        if (memcmp(f->id, e->id, SCP_FILEID_LEN) != 0) continue;
        /* Close-to-open consistency: pick up another process's commit if we hold no changes. */
        /* trywrlock: we hold the volume lock, and the lock order is file before volume. If
         * the file is busy, its reader will refresh it on its own (see file_refresh). */
        if (memcmp(f->c_root, e->root, SCP_HASH_LEN) != 0 && !f->modified && !f->writer &&
            pthread_rwlock_trywrlock(&f->rw) == 0) {
            int rc = f->modified ? 0 : file_load(f, e, err);
            pthread_rwlock_unlock(&f->rw);
            if (rc < 0) return NULL;
        }
        f->refs++;
        return f;
    }
    scp_file *f = __atomic_exchange_n(&v->file_mem, NULL, __ATOMIC_ACQ_REL); /* (zeroed) */
    if (!f) f = scp_secure_alloc(sizeof *f); /* holds the file key */
    if (!f) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    f->vol = v;
    f->fd_d = f->fd_t = f->fd_j = f->fd_s = -1;
    pthread_rwlock_init(&f->rw, NULL);
    pthread_mutex_init(&f->pc_mu, NULL);
    pc_setup();
    u64map_init(&f->dirty);
    u64map_init(&f->jmap);
    u64map_init(&f->jlogged);
    u64map_init(&f->unapplied);
    u64map_init(&f->dapply);
    u64map_init(&f->placed);
    u64map_init(&f->pc);
    memcpy(f->id, e->id, SCP_FILEID_LEN);
    f->path = strdup(e->path);
    if (fd) { /* just created, its objects open (file_get_new): nothing is opened or redone */
        assert(fd[0] >= 0 && fd[1] >= 0);
        f->fd_d = fd[0];
        f->fd_t = fd[1];
        f->fd_j = fd[2];
        f->fd_s = fd[3];
        for (int k = 0; k < VOL_NOBJECTS; k++) fd[k] = -1;
        f->objs_new = 1;
    } else if (f->path && empty_lost_objects(v, e) < 0) {
        scp_fail_errno(err, "cannot recreate the objects of empty file '%s'", e->path);
        file_free(f);
        return NULL;
    }
    if (!f->path || vol_file_key(v, f->id, f->key, err) < 0 ||
        (f->fd_d < 0 && (f->fd_d = file_open_obj(f, ".d", O_RDWR, err)) < 0) ||
        (f->fd_t < 0 && (f->fd_t = file_open_obj(f, ".t", O_RDWR, err)) < 0) || file_load(f, e, err) < 0) {
        if (!f->path) scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        file_free(f);
        return NULL;
    }
    f->refs = 1;
    f->next = v->files;
    v->files = f;
    VSTAT(file_new);
    return f;
}

void file_unlist_free(scp_volume *v, scp_file *f) {
    for (scp_file **pp = &v->files; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    if (!f->path) { /* unlinked while open: the last close; or only cached, unlinked now */
        vol_doom_objects(v, f->id);
        /* Its descriptors stay open for the create that may adopt the id (vol_kept_put):
         * not a writer's (its lock would go with them) nor those a fork child shares. */
        if (!f->writer && !f->d_inherited && f->fd_d >= 0 && f->fd_t >= 0) {
            int fd[VOL_NOBJECTS] = {f->fd_d, f->fd_t, f->fd_j, f->fd_s};
            vol_kept_put(v, f->id, fd);
            f->fd_d = f->fd_t = f->fd_j = f->fd_s = -1;
        }
    }
    file_free(f);
}

void file_put(scp_volume *v, scp_file *f) {
    assert(VOL_MU_HELD(v));
    if (--f->refs > 0) return;
    if (!f->path || f->modified || f->writer) {
        file_unlist_free(v, f);
        return;
    }
    /* Keep the closed file's state (descriptors, table) for the next open: servers such as
     * nginx open a file per request. Beyond FILE_CACHE closed files, drop the one that was
     * loaded earliest (the list grows at its head). */
    scp_file *oldest = NULL;
    size_t cached = 0;
    for (scp_file *g = v->files; g; g = g->next)
        if (g->refs == 0) {
            cached++;
            oldest = g;
        }
    if (cached > FILE_CACHE) file_unlist_free(v, oldest);
}

void file_cache_drop(scp_volume *v) {
    for (scp_file *f = v->files, *next; f; f = next) {
        next = f->next;
        if (f->refs == 0) file_unlist_free(v, f);
    }
}

/* A handle joins or leaves the volume's list (caller holds v->mu): a fork child re-initializes
 * every handle's cursor mutex (volume.c). */
static void handle_link(scp_volume *v, scp_vfile *h) {
    assert(VOL_MU_HELD(v));
    h->hprev = NULL;
    h->hnext = v->handles;
    if (v->handles) v->handles->hprev = h;
    v->handles = h;
    v->nhandles++;
}
static void handle_unlink(scp_volume *v, scp_vfile *h) {
    if (h->hprev) h->hprev->hnext = h->hnext;
    else v->handles = h->hnext;
    if (h->hnext) h->hnext->hprev = h->hprev;
    v->nhandles--;
}

/* The open fast path: an existing file whose state this process holds and that no other
 * process has changed (the generation hint is ours, see vol_fresh) needs no lock, no system
 * call and no allocation. Returns the file with a new reference (h joins the volume's handles),
 * or NULL to take the full path. */
static scp_file *file_get_cached(scp_volume *v, const char *path, scp_vfile *h) {
    pthread_mutex_lock(&v->mu);
    scp_file *hit = NULL;
    if (vol_fresh(v)) {
        long i = man_find(&v->man, path);
        if (i >= 0 && v->man.e[i]->type == 1)
            for (scp_file *f = v->files; f; f = f->next)
                if (memcmp(f->id, v->man.e[i]->id, SCP_FILEID_LEN) == 0) {
                    /* and no commit named the file past our generation: a committer killed
                     * after its manifest write and before its store of the volume's hint
                     * leaves that hint at our generation, but the file's slot, raised before
                     * the manifest write (commit_name), says so (test_volume_two_modes,
                     * "killed": a stale read at an open, found by volume_forkstress) */
                    if (memcmp(f->c_root, v->man.e[i]->root, SCP_HASH_LEN) == 0 &&
                        (!v->hint || vol_file_unchanged(v, f->id, __atomic_load_n(&v->pub_at, __ATOMIC_RELAXED)))) {
                        f->refs++;
                        handle_link(v, h);
                        hit = f;
                    }
                    break;
                }
    }
    pthread_mutex_unlock(&v->mu);
    return hit;
}

int file_after_fork(scp_file *f, scp_err *err) {
    /* The descriptors are shared with the parent, and so is its writer lock (an OFD lock on
     * the data object's description): the writer lock is taken through a description of our
     * own, opened when first needed (d_inherited: file_own_d, as the parent does after the
     * fork). Everything else goes through pread, pwrite, fstat and the like, which no open
     * file description's state changes: the inherited ones serve, and a child that never
     * writes a file the parent had loaded opens none of its objects again (a PostgreSQL
     * backend: ~10 files of the postmaster's, 14 system calls each). */
    f->d_inherited = 1;
    f->writer = 0;
    f->w_have = 0; /* our own chunk subkey: the parent's budget count is the parent's */
    /* The parent's journal log is the parent's; in shared mode it is everybody's, and may hold
     * lazy commits that only the log redoes: we append to it when we write (after catching up),
     * never start a new one over it. */
    if (!f->vol->shared) f->j_end = 0;
    f->jq_len = 0; /* (a failed drain's queue, journal_drain, is the parent's too) */
    f->jq_kept = 0;
    f->j_clean = 0;
    /* The sole holder's deferred applies are the parent's to write (its fork prepare wrote
     * them: fork_lock_volume) */
    u64map_clear(&f->dapply);
    file_ct_forget(f); /* (copies of the parent's log's records) */
    if (!f->path) return 0;
    /* Removed by another process since the parent loaded it (a name unlinked or renamed over),
     * its objects deleted once that was durable: the path is stale (the manifest is read
     * again at the next vol_lock). Not a failure of the call that found it: the caller drops
     * a closed file from the cache; an open one reads on through the inherited descriptors,
     * as the parent does, as a file without a name (test_volume_forkstress: a forked child's
     * first call, a read of another file, failed with "data object is missing"). */
    {
        char name[48];
        vol_object_name(f->id, ".d", name);
        if (faccessat(f->vol->objfd, name, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT &&
            !f->modified) {
            free(f->path);
            f->path = NULL;
            return 1;
        }
    }
    /* (the log's descriptor stays open too: chunks whose newest bytes a followed log holds,
     * jmap, are read from it; closed, the child's first read or write of such a chunk once
     * failed with EBADF) */
    if (f->modified) { /* the parent owns its uncommitted writes; we restart from the commit */
        file_discard_uncommitted(f);
        long i = man_find(&f->vol->man, f->path);
        if (i >= 0) return file_load(f, f->vol->man.e[i], err);
    }
    return 0;
}

int file_leave_shared(scp_file *f, scp_err *err) {
    scp_volume *v = f->vol;
    assert(FILE_WR_HELD(f) && VOL_MU_HELD(v) && !v->shared && v->priv);
    assert(!f->modified && !f->writer && f->cstate == CS_IDLE && f->path);
    /* Shared mode's view of the log goes: its records' offsets (jmap), the chunks with a
     * record there (jlogged), the entries that only the log redoes (unapplied: the replay
     * below writes them to .t), its append offset and what it knew of the log's header, end
     * and room. The load then starts from .t with no log of its own (j_end 0), so try_replay
     * takes the writer lock and redoes the log up to the manifest's entry, as an open does. */
    u64map_clear(&f->jmap);
    u64map_clear(&f->jlogged);
    u64map_clear(&f->unapplied);
    u64map_clear(&f->placed);
    assert(!u64map_count(&f->dapply)); /* (the sole holder's only) */
    file_ct_forget(f);
    f->j_end = 0;
    f->j_stale = 0;
    f->j_clean = 0;
    f->j_tail_commit = 0;
    f->j_chk_end = 0;
    f->j_room = 0;
    f->jl_fresh = 0;
    f->lazy_listed = 0; /* (the durable commit emptied the list) */
    f->followed = 0;
    f->past = 0;
    __atomic_store_n(&f->seen_gen, 0, __ATOMIC_RELAXED);
    long i = man_find(&v->man, f->path);
    if (i < 0 || memcmp(v->man.e[i]->id, f->id, SCP_FILEID_LEN) != 0) {
        __atomic_store_n(&f->unloaded, 1, __ATOMIC_RELAXED);
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "'%s' is no longer in the manifest", f->path);
    }
    /* (followed only if the writer lock could not be had: a host's lock; as in any load) */
    return file_load(f, v->man.e[i], err);
}

/* ---- writing ----------------------------------------------------------------------------- */

/* The dirty buffer for chunk i, created (with the chunk's current content unless `whole`)
 * if needed. */
static uint8_t *dirty_chunk(scp_file *f, uint64_t i, int whole, scp_err *err) {
    uint64_t v;
    if (u64map_get(&f->dirty, i, &v)) return (uint8_t *)(uintptr_t)v;
    uint8_t *b = file_dirty_alloc(f); /* (a spare's old plaintext: overwritten whole below) */
    if (!b) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    if (!whole && chunk_load(f, i, b, err) < 0) {
        file_dirty_free(f, (uintptr_t)b);
        return NULL;
    }
    if (u64map_put(&f->dirty, i, (uint64_t)(uintptr_t)b) < 0) {
        file_dirty_free(f, (uintptr_t)b);
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    return b;
}

/* Grow or shrink to `size` (caller holds the write lock and writer status). */
static int set_size(scp_file *f, uint64_t size, scp_err *err) {
    assert(FILE_WR_HELD(f));
    uint32_t cs = f->vol->cs;
    uint64_t oldn = cur_n(f), newn = nchunks_of(size, cs);
    if (size == f->size) return 0;
    if (table_reserve(f, newn, err) < 0) return -1;
    if (size < f->size) {
        /* Zero the tail of the new last chunk so that a later extension reads zeros. */
        if (size % cs) {
            uint64_t last = size / cs;
            if (!chunk_reads_zero(f, last)) {
                uint8_t *b = dirty_chunk(f, last, 0, err);
                if (!b) return -1;
                memset(b + size % cs, 0, cs - size % cs);
            }
        }
        for (uint64_t i = newn; i < oldn; i++) {
            uint64_t v;
            if (u64map_del(&f->dirty, i, &v)) file_dirty_free(f, v);
            u64map_del(&f->jmap, i, NULL);
            if (!is_hole(ent(f, i))) {
                memset(ent(f, i), 0, ENT);
                table_mark(f, i);
            }
        }
    }
    table_mark_resize(f, oldn, newn);
    __atomic_store_n(&f->size, size, __ATOMIC_RELAXED);
    f->modified = 1;
    return 0;
}

/* Long sequential writes: start the disk's writeback every few MiB (without waiting), so the
 * final fdatasync of a commit does not begin from a cold start while encryption sat idle. */
#define KICK_BYTES (8u << 20)
static void kick_writeback(scp_file *f, int fd, size_t n) {
    f->kick_pending += n;
    if (f->kick_pending < KICK_BYTES) return;
    (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE); /* a hint: errors surface at fsync */
    f->kick_pending = 0;
}

/* A run failed part-way: the table holds new entries for every chunk sealed, but a piece whose
 * pwrite failed (or that was never written) may not hold their ciphertext. Give such a chunk
 * back its entry from before the write where the bytes that entry names are untouched: a hole,
 * or an entry in the other slot (the committed one: a chunk keeps the slot it was placed in
 * until the commit). An entry in the same slot (an uncommitted in-place write of this commit
 * window, now overwritten) has nothing left to name; it keeps the new entry and reads as an
 * integrity failure, as before. Every chunk of the run is marked, so the table's page hashes
 * follow the entries. */
static void seal_run_undo(scp_file *f, const struct seal_job *j, const uint8_t *old) {
    for (size_t k = 0; k < j->n; k++) {
        size_t piece = k / j->per;
        const uint8_t *o = old + k * ENT;
        int bad = piece >= j->written || (j->failed >> piece & 1);
        if (bad && (is_hole(o) || SCP_ENT_SLOT(o) != j->slot)) memcpy(ent(f, j->first + k), o, ENT);
        table_mark(f, j->first + k);
    }
}

/* Seal chunks [i, i + n) from src and write them to slot `slot` in place, on several cores
 * for a long run (chunk_seal_range); every chunk is written out when it returns 0. */
static int seal_run(scp_file *f, uint64_t i, size_t n, const uint8_t *src, const uint8_t *nonces,
                    uint8_t *ct, int slot, scp_err *err) {
    _Static_assert(WRITE_BATCH_BYTES / SEAL_PIECE_BYTES <= 64, "a run's pieces fit a bitmap");
    size_t cs = f->vol->cs, per = SEAL_PIECE_BYTES / cs ? SEAL_PIECE_BYTES / cs : 1;
    struct seal_job job = {.f = f, .first = i, .n = n, .per = per, .src = src, .nonces = nonces,
                           .ct = ct, .slot = slot};
    uint8_t *old = malloc(n * ENT); /* the entries before: seal_run_undo */
    if (!old) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    memcpy(old, ent(f, i), n * ENT);
    pthread_mutex_init(&job.mu, NULL);
    *(slot ? &f->s_unsynced : &f->d_unsynced) = 1;
    int rc = scp_parallel_for_grain(n, PARALLEL_MIN, per, chunk_seal_range, &job);
    pthread_mutex_destroy(&job.mu);
    assert(!job.writing);
    if (rc < 0 || job.write_errno) seal_run_undo(f, &job, old);
    free(old);
    if (job.write_errno) {
        errno = job.write_errno;
        return scp_fail_errno(err, "cannot write '%s'", f->path);
    }
    if (rc < 0) return scp_fail(err, SCP_E_CRYPTO, EIO, "AES-256-GCM encryption failed");
    assert(job.written * per >= n && !job.failed);
    return 0;
}

static ssize_t do_pwrite(scp_file *f, const uint8_t *src, size_t n, uint64_t off, scp_err *err) {
    uint32_t cs = f->vol->cs;
    if (off + n < off || off + n > (UINT64_C(1) << 50))
        return scp_fail(err, SCP_E_INVAL, EFBIG, "write beyond the maximum file size");
    if (n == 0) return 0;
    __atomic_store_n(&f->mtime_kept, 0, __ATOMIC_RELAXED); /* a write moves the time again */
    if (f->unloaded)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': its chunk table does not match the manifest; not written",
                        f->path ? f->path : "file");
    if (file_acquire_writer(f, err) < 0) return -1;
    if (off + n > f->size && set_size(f, off + n, err) < 0) return -1;
    f->modified = 1;
    uint64_t cn = com_n(f);
    size_t done = 0;
    while (done < n) {
        uint64_t pos = off + done, i = pos / cs;
        size_t in = (size_t)(pos % cs), len = cs - in;
        if (len > n - done) len = n - done;
        /* A run of whole chunks that may go in place (fresh, unwritten, or a large overwrite
         * into the other slots: chunk_target) is encrypted straight from the caller's buffer
         * and written in place: no copy, no cache, no journal. */
        int over = n - done >= SCP_SLOT_MIN_BYTES, slot = -1;
        if (in == 0 && len == cs) slot = chunk_target(f, i, over);
        if (slot >= 0) {
            size_t run = 1, max_run = WRITE_BATCH_BYTES / cs;
            while (run < max_run && done + (run + 1) * cs <= n &&
                   chunk_target(f, i + run, over) == slot)
                run++;
            if (slot == 1 && file_open_slot(f, 1, err) < 0) return -1;
            for (size_t k = 0; k < run; k++)
                if (i + k < cn && u64map_put(&f->placed, i + k, (uint64_t)slot) < 0)
                    return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
            uint8_t *ct = vol_scratch(run * cs);
            uint8_t nonces[(WRITE_BATCH_BYTES / SCP_VOLUME_MIN_CHUNK) * SCP_NONCE_LEN];
            if (!ct) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
            if (chunk_wkey_reserve(f, run, err) < 0 || scp_random_public(nonces, run * SCP_NONCE_LEN, err) < 0)
                return -1;
            for (size_t k = 0; k < run; k++) {
                uint64_t v;
                if (u64map_del(&f->dirty, i + k, &v)) file_dirty_free(f, v);
            }
            if (seal_run(f, i, run, src + done, nonces, ct, slot, err) < 0) return -1;
            for (size_t k = 0; k < run; k++) table_mark(f, i + k);
            kick_writeback(f, chunk_slot_fd(f, slot), run * cs);
            done += run * cs;
            continue;
        }
        uint8_t *b = dirty_chunk(f, i, len == cs, err);
        if (!b) return -1;
        memcpy(b + in, src + done, len);
        done += len;
    }
    if (u64map_count(&f->dirty) * cs > SCP_DIRTY_LIMIT) {
        file_unkeep_vol(f); /* (the write-back may commit: a section of its own) */
        if (file_writeback(f, err) < 0) return -1;
    }
    if (f->j_end > SCP_JOURNAL_PENDING_MAX) {
        file_unkeep_vol(f);
        if (file_commit(f, err) < 0) return -1;
    }
    return (ssize_t)n;
}

/* ---- reading ------------------------------------------------------------------------------ */

/* A chunk that takes the one-by-one path: dirty, a hole, journaled, or partly requested. */
static int read_one(scp_file *f, uint64_t i, size_t in, size_t len, uint8_t *out, uint8_t *tmp, int fill,
                    scp_err *err) {
    uint32_t cs = f->vol->cs;
    uint64_t v;
    if (u64map_get(&f->dirty, i, &v)) {
        memcpy(out, (const uint8_t *)(uintptr_t)v + in, len);
        return 0;
    }
    if (is_hole(ent(f, i))) {
        memset(out, 0, len);
        return 0;
    }
    struct pchunk *c = fill ? pc_take(f) : NULL; /* (do_pread looked in the cache already) */
    uint8_t *pt = c ? c->data : tmp;
    if (chunk_fetch_ct(f, i, tmp + cs, err) < 0 || chunk_open(f, i, tmp + cs, pt, err) < 0) {
        if (c) pc_free(f, c);
        return -1;
    }
    memcpy(out, pt + in, len);
    if (c) pc_put(f, i, c);
    return 0;
}

/* Whole chunks that can be read straight from their slot object: 1 + the slot, or 0. */
static inline int is_direct(scp_file *f, uint64_t i) {
    const uint8_t *e = ent(f, i);
    if (u64map_get(&f->dirty, i, NULL) || is_hole(e) || u64map_get(&f->jmap, i, NULL)) return 0;
    int slot = SCP_ENT_SLOT(e);
    if (slot == 0 && u64map_get(&f->dapply, i, NULL)) return 0; /* (in the log: chunk_fetch_ct) */
    return chunk_slot_fd(f, slot) >= 0 ? 1 + slot : 0;
}

/* fill: decrypted chunks go into the plaintext cache (0: a handle that reads its file once) */
static ssize_t do_pread(scp_file *f, uint8_t *dst, size_t n, uint64_t off, int fill, scp_err *err) {
    uint32_t cs = f->vol->cs;
    if (f->unloaded)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': its chunk table does not match the manifest (the file was "
                        "modified, truncated, replaced or rolled back)",
                        f->path ? f->path : "(unlinked file)");
    if (off >= f->size) return 0;
    if (n > f->size - off) n = (size_t)(f->size - off);
    uint8_t *tmp = vol_scratch(2 * (size_t)cs);
    if (!tmp) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    size_t done = 0;
    while (done < n) {
        uint64_t i = (off + done) / cs;
        size_t in = (size_t)((off + done) % cs), len = cs - in;
        if (len > n - done) len = n - done;
        if (!u64map_get(&f->dirty, i, NULL) && pc_get(f, i, in, len, dst + done)) {
            done += len;
            continue;
        }
        if (len < cs || !is_direct(f, i)) {
            if (read_one(f, i, in, len, dst + done, tmp, fill, err) < 0) goto fail;
            done += len;
            continue;
        }
        size_t run = 1;
        int direct = is_direct(f, i);
        while (done + (run + 1) * cs <= n && is_direct(f, i + run) == direct &&
               !pc_get(f, i + run, 0, 0, NULL))
            run++;
        struct read_job job = {f, i, dst + done, direct - 1, PTHREAD_MUTEX_INITIALIZER,
                               UINT64_MAX, 0, 0, fill};
        int rc = scp_parallel_for(run, PARALLEL_MIN, chunk_read_range, &job);
        pthread_mutex_destroy(&job.mu);
        if (rc < 0) {
            if (job.bad_kind == 3) {
                errno = job.bad_errno;
                scp_fail_errno(err, "cannot read '%s'", f->path);
            } else {
                chunk_integrity_fail(f, job.bad, job.bad_kind == 1 ? "is missing" : "fails authentication",
                               err);
            }
            goto fail;
        }
        done += run * cs;
    }
    return (ssize_t)n;
fail:
    scp_wipe(dst, n); /* no unauthenticated byte leaves, nor a partial read */
    return -1;
}

/* ---- public file API ---------------------------------------------------------------------- */

static int check_handle(scp_vfile *h, int want_write, scp_err *err) {
    if (!h) return scp_fail(err, SCP_E_INVAL, EBADF, "invalid file handle");
    vol_after_fork_check(h->f->vol);
    /* (a file left unloaded by a failed load: load it again first, see file_refresh) */
    int unloaded = 0;
    if (want_write && __atomic_load_n(&h->f->unloaded, __ATOMIC_RELAXED)) (void)file_refresh(h->f, &unloaded);
    if (unloaded)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': its chunk table does not match the manifest; not written",
                        h->f->path ? h->f->path : "file");
    int acc = h->flags & O_ACCMODE;
    if (want_write && acc == O_RDONLY)
        return scp_fail(err, SCP_E_INVAL, EBADF, "'%s' was opened read-only",
                        h->f->path ? h->f->path : "file");
    if (!want_write && acc == O_WRONLY)
        return scp_fail(err, SCP_E_INVAL, EBADF, "'%s' was opened write-only",
                        h->f->path ? h->f->path : "file");
    return 0;
}

/* A data or slot object up to this size keeps its blocks when its file's objects are
 * adopted: cutting and reallocating them cost more than the creation it replaces (ftruncate
 * was 4% of sqlite's samples in DELETE mode), and the new file reads none of the old bytes. */
#define ADOPT_KEEP_MAX (1u << 20)

/* Take the kept objects of a removed file (vol_doomed_drain) for a new, empty file: the id
 * becomes the new file's, so that no object is created and the objects directory needs no
 * sync (its entries were synced before the removal became durable). The table is cut to
 * zero, and data and slot objects past ADOPT_KEEP_MAX: every chunk read goes through the new
 * file's own entry (a hole reads zeros), and every entry below its committed count is one it
 * wrote (commit_prepare and the apply write the fresh range [cn, n) whole, zeros included),
 * so no old byte is read, cut or not; the journal keeps its blocks (a new log is written over them, as
 * journal_reset does) with its header zeroed, so that no record of the old log is ever read
 * as this file's (the same key: it comes from the id; a chain starts at its header). The
 * objects' descriptors are those the removed file's state kept open (vol_kept_put), or opened
 * here; they go to fd (data, table, journal, slot; -1 where none) for file_get_new. Returns
 * 1 with id and fd set, 0 if there is none or it is unusable (another process's collection
 * may have deleted objects: then the rest go, and the caller creates new ones). Caller holds
 * mu. */
static int adopt_spare(scp_volume *v, uint8_t id[SCP_FILEID_LEN], int fd[VOL_NOBJECTS]) {
    assert(VOL_MU_HELD(v));
    if (v->nspare == 0 || v->shared) return 0;
    /* Not while another process has the volume open: it may hold the removed file open (or
     * loaded, its handle kept), and would then read and write the new file through it under
     * the old name's handle (test_volume_forkstress: two programs, one unlinks or renames over
     * a file the other keeps open, then creates). Its objects go as a removed file's do. */
    if (!vol_alone_now(v)) return 0;
    const uint8_t *sp = v->spare[--v->nspare];
    int kept = vol_kept_take(v, sp, fd), ok = 1;
    if (!kept)
        for (int k = 0; k < VOL_NOBJECTS; k++) fd[k] = -1;
    for (int k = 0; k < VOL_NOBJECTS && ok; k++) {
        /* A kept state without a slot descriptor had no slot object (file_load looks for
         * one) and nothing of this process made one since; a slot object that another
         * process made meanwhile holds only ciphertext that no entry of the new file names.
         * A journal is looked for all the same: its header must be zeroed. */
        if (kept && fd[k] < 0 && k != 2) continue;
        if (fd[k] < 0) {
            char name[48];
            vol_object_name(sp, vol_object_ext[k], name);
            fd[k] = openat(v->objfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
            if (fd[k] < 0) { /* the slot object is made when needed; a journal too (journal_begin) */
                ok = errno == ENOENT && k >= 2;
                continue;
            }
        }
        struct stat st;
        /* (a kept object that another process's collection deleted since: st_nlink 0) */
        if (scp_fstat_notime(fd[k], &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink == 0) ok = 0;
        else if (k == 2) {
            static const uint8_t zero[SCP_JRN_HDR_LEN];
            /* (journal_replay_max of an empty file is above the kept length: a static
             * assertion in commit.c) */
            if ((st.st_size > SCP_JOURNAL_REUSE_MAX && ftruncate(fd[k], SCP_JOURNAL_REUSE_MAX) < 0) ||
                (st.st_size > 0 && scp_pwrite_full(fd[k], zero, sizeof zero, 0) < 0))
                ok = 0;
        } else if (st.st_size > (k == 1 ? 0 : ADOPT_KEEP_MAX) && ftruncate(fd[k], 0) < 0)
            ok = 0;
    }
    if (!ok) {
        for (int k = 0; k < VOL_NOBJECTS; k++)
            if (fd[k] >= 0) {
                close(fd[k]);
                fd[k] = -1;
            }
        vol_doom_objects(v, sp); /* (deleted after the next durable commit) */
        return 0;
    }
    memcpy(id, sp, SCP_FILEID_LEN);
    return 1;
}

/* Create the data, table and journal objects of a new id; their descriptors go to fd (the
 * slot's -1) for file_get_new. On failure none is left open. */
static int create_objects(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], int fd[VOL_NOBJECTS],
                          scp_err *err) {
    for (int k = 0; k < VOL_NOBJECTS; k++) fd[k] = -1;
    for (int k = 0; k < 3; k++) {
        char name[48];
        vol_object_name(id, vol_object_ext[k], name);
        fd[k] = openat(v->objfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
        if (fd[k] < 0) {
            scp_fail_errno(err, "cannot create a file object");
            for (int j = 0; j < k; j++) {
                close(fd[j]);
                fd[j] = -1;
            }
            return -1;
        }
    }
    vol_objects_owner(v, fd, 3);
    /* The directory is synced by the next durable commit (of any process: the lock file
     * carries the flag), before a manifest that a power cut cannot lose names the objects. */
    v->objdir_dirty = 1;
    vol_lockbyte_set(v, VOL_LOCKBYTE_OBJDIR, 1);
    return 0;
}

/* A new handle with its cursor lock, not yet bound to a file; NULL (err set) without memory. */
static scp_vfile *handle_new(int flags, scp_err *err) {
    scp_vfile *h = calloc(1, sizeof *h);
    if (!h) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    h->flags = flags;
    pthread_mutex_init(&h->cur_mu, NULL);
    return h;
}

scp_vfile *scp_vfile_open(scp_volume *v, const char *path, int flags, uint32_t mode,
                          scp_err *err) {
    char p[SCP_MAX_PATH + 1];
    if (scp_path_normalize(path, p, sizeof p, err) < 0) return NULL;
    if (!p[0]) {
        scp_fail(err, SCP_E_ISDIR, EISDIR, "the volume root is a directory");
        return NULL;
    }
    scp_vfile *h = handle_new(flags, err);
    if (!h) return NULL;
    if (!(flags & (O_TRUNC | O_EXCL)) && (h->f = file_get_cached(v, p, h))) return h;
    if (vol_lock(v, err) < 0) {
        free(h);
        return NULL;
    }
    long i = man_find(&v->man, p);
    int rc = 0, adopted = 0;
    int ofd[VOL_NOBJECTS] = {-1, -1, -1, -1}; /* a created file's objects (file_get_new) */
    if (i >= 0 && (flags & O_CREAT) && (flags & O_EXCL))
        rc = scp_fail(err, SCP_E_EXIST, EEXIST, "'%s' already exists in the volume", p);
    else if (i >= 0 && v->man.e[i]->type == 2)
        rc = scp_fail(err, SCP_E_ISDIR, EISDIR, "'%s' is a directory", p);
    else if (i >= 0 && v->man.e[i]->type != SCP_MTYPE_FILE) /* a node: no data in the volume */
        rc = scp_fail(err, SCP_E_INVAL, ENXIO, "'%s' is not a regular file", p);
    else if (i < 0 && !(flags & O_CREAT))
        rc = scp_fail(err, SCP_E_NOENT, ENOENT, "'%s' does not exist in the volume", p);
    if (rc == 0 && i < 0) {
        /* Create: objects first, then the manifest entry (the commit point). */
        const char *slash = strrchr(p, '/');
        if (slash) {
            char parent[SCP_MAX_PATH + 1];
            memcpy(parent, p, (size_t)(slash - p));
            parent[slash - p] = '\0';
            long pi = man_find(&v->man, parent);
            if (pi < 0)
                rc = scp_fail(err, SCP_E_NOENT, ENOENT, "directory '%s' does not exist", parent);
            else if (v->man.e[pi]->type != 2)
                rc = scp_fail(err, SCP_E_NOTDIR, ENOTDIR, "'%s' is not a directory", parent);
        }
        int64_t now = scp_now_ns();
        scp_mentry e = {.type = 1, .mode = mode & 07777, .mtime_ns = now, .ctime_ns = now, .atime_ns = now,
                        .uid = (uint32_t)geteuid(), .gid = (uint32_t)getegid()};
        adopted = rc == 0 && adopt_spare(v, e.id, ofd);
        if (rc == 0 && !adopted) {
            /* (an id is public, the objects' name: scp_random_public) */
            rc = scp_random_public(e.id, SCP_FILEID_LEN, err);
            if (rc == 0) rc = create_objects(v, e.id, ofd, err);
        }
        if (rc == 0) {
            file_empty_root(e.id, e.root);
            e.path = strdup(p);
            man_dtimes dt;
            if (!e.path || vol_man_create(v, &e, now, &dt, err) < 0) {
                free(e.path);
                rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
            } else {
                if (vol_commit_manifest(v, 0, err) < 0) {
                    man_remove(&v->man, (size_t)man_find(&v->man, p));
                    man_parent_untouch(&v->man, p, dt);
                    rc = -1;
                }
            }
        }
    }
    int created = i < 0;
    i = man_find(&v->man, p);
    if (rc == 0 && !(h->f = created ? file_get_new(v, v->man.e[i], ofd, err)
                                    : file_get(v, v->man.e[i], err)))
        rc = -1;
    for (int k = 0; k < VOL_NOBJECTS; k++) /* (a failed create: its objects are orphans) */
        if (ofd[k] >= 0) close(ofd[k]);
    /* The committed size: file_get may have left a busy file's state stale (file_acquire_writer
     * below refreshes it), and an O_TRUNC must not skip a file that only looks empty. */
    uint64_t msize = rc == 0 ? v->man.e[i]->size : 0;
    /* Fresh objects: nothing in them needs a checkpoint before the file's first journal log. */
    if (rc == 0 && created && h->f->refs == 1) h->f->j_clean = 1;
    /* (v->dur_gen is current: the lock's catch-up read the log to its end) */
    if (rc == 0 && created && h->f->refs == 1 && v->mlog) h->f->born_dgen = v->dur_gen + 1;
    /* An adopted id listed ahead (jlist_prelist): its journal holds only the removed file's
     * records, which the synced manifest log holds (its drain followed that sync). */
    if (rc == 0 && adopted && h->f->refs == 1 && vol_jlist_has(v, h->f->id)) h->f->jl_fresh = 1;
    if (rc == 0) handle_link(v, h);
    vol_unlock(v);
    if (rc == 0 && (flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
        pthread_rwlock_wrlock(&h->f->rw);
        if (h->f->size != 0 || h->f->c_size != 0 || msize != 0) {
            rc = file_acquire_writer(h->f, err);
            if (rc == 0) rc = set_size(h->f, 0, err);
            if (rc == 0) rc = file_commit(h->f, err);
            rc = file_shared_publish(h->f, rc, err);
        }
        pthread_rwlock_unlock(&h->f->rw);
        if (rc < 0) {
            scp_vfile_close(h, NULL);
            return NULL;
        }
    }
    if (rc < 0) {
        pthread_mutex_destroy(&h->cur_mu);
        free(h);
        return NULL;
    }
    return h;
}

scp_vfile *scp_vfile_open_nameless(scp_volume *v, const char *dir, int flags, uint32_t mode,
                                   scp_err *err) {
    char p[SCP_MAX_PATH + 1];
    if (scp_path_normalize(dir, p, sizeof p, err) < 0) return NULL;
    if ((flags & O_ACCMODE) == O_RDONLY) {
        scp_fail(err, SCP_E_INVAL, EINVAL, "a nameless file must be opened for writing");
        return NULL;
    }
    scp_vfile *h = handle_new(flags & (O_ACCMODE | O_APPEND), err);
    if (!h) return NULL;
    if (vol_lock(v, err) < 0) {
        pthread_mutex_destroy(&h->cur_mu);
        free(h);
        return NULL;
    }
    long di = p[0] ? man_find(&v->man, p) : -1;
    int rc = 0;
    if (p[0] && di < 0) rc = scp_fail(err, SCP_E_NOENT, ENOENT, "directory '%s' does not exist", p);
    else if (p[0] && v->man.e[di]->type != SCP_MTYPE_DIR)
        rc = scp_fail(err, SCP_E_NOTDIR, ENOTDIR, "'%s' is not a directory", p);
    /* An entry that never enters the manifest: it only seeds the file's state (file_get). */
    scp_mentry e = {.type = SCP_MTYPE_FILE, .mode = mode & 07777, .path = (char *)"(nameless file)"};
    int ofd[VOL_NOBJECTS];
    if (rc == 0) rc = scp_random_public(e.id, SCP_FILEID_LEN, err); /* (public: a name) */
    if (rc == 0) rc = create_objects(v, e.id, ofd, err);
    if (rc == 0) {
        file_empty_root(e.id, e.root);
        if (!(h->f = file_get_new(v, &e, ofd, err))) rc = -1;
    }
    if (rc == 0) {
        scp_file *f = h->f;
        free(f->path);
        f->path = NULL; /* what an unlinked file has: no commit, no writer lock */
        f->nameless = (flags & O_EXCL) ? 2 : 1;
        f->nl_mode = mode & 07777;
        f->nl_uid = (uint32_t)geteuid();
        f->nl_gid = (uint32_t)getegid();
        f->j_clean = 1; /* fresh objects */
        handle_link(v, h);
    }
    vol_unlock(v);
    if (rc < 0) {
        pthread_mutex_destroy(&h->cur_mu);
        free(h);
        return NULL;
    }
    return h;
}

/* The objects still are the ones f reads and writes: another process's garbage collection sees
 * no name for a nameless file and may have removed them. */
static int objects_intact(scp_file *f) {
    const int fds[2] = {f->fd_d, f->fd_t};
    for (int k = 0; k < 3; k++) {
        char name[48];
        struct stat a, b;
        vol_object_name(f->id, vol_object_ext[k], name);
        if (scp_fstatat_notime(f->vol->objfd, name, AT_SYMLINK_NOFOLLOW, &a) < 0) return 0;
        if (k < 2 && (scp_fstat_notime(fds[k], &b) < 0 || a.st_ino != b.st_ino ||
                      a.st_dev != b.st_dev))
            return 0;
    }
    return 1;
}

int file_link_nameless(scp_file *f, const char *to, scp_err *err) {
    scp_volume *v = f->vol;
    pthread_rwlock_wrlock(&f->rw); /* lock order: file, then volume */
    if (vol_lock(v, err) < 0) {
        pthread_rwlock_unlock(&f->rw);
        return -1;
    }
    int rc = 0;
    char *mine = strdup(to);
    int64_t now = scp_now_ns();
    scp_mentry e = {.type = SCP_MTYPE_FILE, .size = f->c_size, .mode = f->nl_mode, .uid = f->nl_uid,
                    .gid = f->nl_gid, .mtime_ns = now, .ctime_ns = now, .atime_ns = now, .path = strdup(to)};
    memcpy(e.id, f->id, SCP_FILEID_LEN);
    memcpy(e.root, f->c_root, SCP_HASH_LEN);
    if (f->nameless != 1) /* another thread named it first, or O_EXCL */
        rc = scp_fail(err, SCP_E_NOENT, ENOENT, "the file has no name left in the volume");
    else if (!mine || !e.path) rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    else if (!objects_intact(f))
        rc = scp_fail(err, SCP_E_INTEGRITY, EIO,
                      "the objects of a nameless file are gone (another process collected them); "
                      "not linked as '%s'", to);
    /* Nobody else can reach the file yet: its writer lock is free, and taking it before the
     * name exists keeps every other process from writing under the new name meanwhile. */
    else if (!file_try_writer_lock(f))
        rc = scp_fail_errno(err, "cannot lock the nameless file for writing");
    if (rc == 0) {
        f->writer = 1;
        e.nlink = 1;
        rc = vol_insert_name(v, &e, err);
        e.path = NULL; /* the manifest's, or freed */
        if (rc < 0) {
            file_writer_unlock(f);
            f->writer = 0;
        }
    }
    free(e.path);
    if (rc == 0) {
        f->path = mine;
        mine = NULL;
        __atomic_store_n(&f->nameless, 0, __ATOMIC_RELEASE);
        __atomic_store_n(&f->seen_gen, vol_pub_mark(v), __ATOMIC_RELAXED);
    }
    free(mine);
    vol_unlock(v);
    /* What was written so far is the named file's content (a kernel file's link shows it). */
    if (rc == 0) rc = file_commit(f, err);
    if (rc == 0 && v->shared) { /* shared mode takes the writer lock per write (file_shared_publish) */
        file_writer_unlock(f);
        f->writer = 0;
        f->j_clean = 0;
    }
    pthread_rwlock_unlock(&f->rw);
    return rc;
}

/* Lazy close (scp_volume_set_lazy_close; docs/volume-format.md, "Lazy close"): the close of a
 * file this process created, whose first content commit this is, while no durable commit has
 * named the file yet, is a lazy commit (file_commit_lazy, as shared mode's writes), durable at
 * the next durable commit. Crash argument: the durable state does not have the file, so
 * nothing it needs is written; every chunk is fresh (committed count 0: no journal record, no
 * second slot), written in place and listed (vol_lazy_add, in-place mark) so that the next
 * durable commit syncs the data and the journal that holds the commit record before its
 * commit point; an open after a kill takes the state only if the journal redoes it
 * (vol_settle_lazy). A commit record longer than half the close's checkpoint bound could be
 * cut by that checkpoint (the close truncates a long log): such files close durably. Caller
 * holds f->rw for writing. On 1 the volume lock is held, kept for the commit (vol_kept): the
 * catch-up that read dur_gen is the one the commit names on. */
static int close_is_lazy(scp_file *f) {
    assert(FILE_WR_HELD(f));
    scp_volume *v = f->vol;
    if (!v->lazy_close || v->shared || !v->mlog || !f->born_dgen || !f->modified || !f->path ||
        f->unloaded || com_n(f) != 0 || f->j_end != 0 || u64map_count(&f->jmap) ||
        cur_n(f) * ENT > SCP_CHECKPOINT_AT_CLOSE / 2)
        return 0;
    if (vol_lock(v, NULL) < 0) return 0;
    if (v->shared || v->dur_gen + 1 != f->born_dgen) {
        vol_unlock(v);
        return 0;
    }
    f->vol_kept = 1;
    return 1;
}

int scp_vfile_close(scp_vfile *h, scp_err *err) {
    if (!h) return 0;
    vol_after_fork_check(h->f->vol);
    scp_file *f = h->f;
    scp_volume *v = f->vol;
    int rc = 0;
    if ((h->flags & O_ACCMODE) != O_RDONLY) {
        pthread_rwlock_wrlock(&f->rw);
        rc = close_is_lazy(f) ? file_commit_lazy(f, err) : file_commit(f, err);
        /* The deferred applies and table writes of the last handle: outside the sole holding
         * (a fork left them) and after a failed commit they are written now, since the writer
         * lock goes with the handle (what they hold was committed before). The sole holder
         * keeps them in the closed file's state instead (branch wal23): the holding's end,
         * a fork's prepare and the file's next writer write them (sole_end,
         * fork_lock_volume, file_acquire_writer), a reload redoes them from the log (file_load),
         * and an unlink drops them with the state. sqlite closes its rollback journal and then
         * removes it in every DELETE-mode transaction, and its -wal file at its last close:
         * the two pwrites (.d and .t) were written only to be discarded. */
        int keep = 0;
        if (rc == 0 && f->refs == 1 && !v->shared) {
            pthread_mutex_lock(&v->mu); /* (v->sole's writer holds it: sole_set) */
            keep = v->sole == SOLE_FRESH;
            assert(!keep || !v->shared); /* (a holding is never shared: sole_set) */
            pthread_mutex_unlock(&v->mu);
        }
        if (f->refs == 1 && !v->shared && !keep) {
            int frc = file_table_flush(f, rc == 0 ? err : NULL);
            if (rc == 0) rc = frc;
        }
        /* The last writer's handle: a long log would make the next process that loads the
         * file redo all of it; checkpoint now instead (a short one is cheaper to redo than
         * two syncs, and sqlite closes its journal file after every transaction). refs is
         * read without the volume mutex: a wrong guess only moves the checkpoint. */
        if (rc == 0 && f->writer && !v->shared && f->refs == 1 && f->j_end > SCP_CHECKPOINT_AT_CLOSE &&
            file_checkpoint(f, err) == 0 && journal_release(f, err) == 0 && ftruncate(f->fd_j, 0) == 0)
            f->j_end = 0;
        pthread_rwlock_unlock(&f->rw);
    }
    pthread_mutex_lock(&v->mu);
    if (f->refs == 1 && f->writer) {
        /* The tail of an older log behind ours (journal_reset) goes, so that the next loader
         * does not read it; while we still hold the writer lock, since the next writer starts
         * its own log over this journal. */
        if (!v->shared && f->j_end && f->j_stale > f->j_end &&
            ftruncate(f->fd_j, (off_t)f->j_end) == 0)
            f->j_stale = 0;
        file_writer_unlock(f);
        f->writer = 0;
        /* Another process may write next and start its own journal log over ours (in shared
         * mode it appends to ours instead: see file_after_fork). */
        if (!v->shared) f->j_end = 0;
        f->j_clean = 0;
    }
    file_put(v, f);
    handle_unlink(v, h);
    pthread_mutex_unlock(&v->mu);
    pthread_mutex_destroy(&h->cur_mu);
    free(h);
    return rc;
}

static ssize_t locked_pread(scp_vfile *h, void *buf, size_t n, uint64_t off, scp_err *err) {
    scp_err local;
    if (!err) err = &local;
    scp_file *f = h->f;
    int fill = !__atomic_load_n(&h->once, __ATOMIC_RELAXED);
    file_catch_up_rdlock(f);
    ssize_t r = do_pread(f, buf, n, off, fill, err);
    pthread_rwlock_unlock(&f->rw);
    /* Each retry needs the manifest to have moved on, so this ends unless another process
     * keeps committing; then give up after a few rounds rather than starve. */
    for (int tries = 0; r < 0 && err->code == SCP_E_INTEGRITY && tries < 16 && file_refresh(f, NULL);
         tries++) {
        pthread_rwlock_rdlock(&f->rw);
        r = do_pread(f, buf, n, off, fill, err);
        pthread_rwlock_unlock(&f->rw);
    }
    return r;
}

ssize_t scp_vfile_pread(scp_vfile *h, void *buf, size_t n, uint64_t off, scp_err *err) {
    if (check_handle(h, 0, err) < 0) return -1;
    uint64_t t = VSTAT_T0();
    VSTAT(pread_calls);
    ssize_t r = locked_pread(h, buf, n, off, err);
    VSTAT_T1(pread_ns, t);
    return r;
}

ssize_t scp_vfile_pin(scp_vfile *h, uint64_t off, size_t n, struct iovec *iov, int maxiov,
                      int *niov, scp_err *err) {
    *niov = 0;
    if (check_handle(h, 0, err) < 0) return -1;
    scp_file *f = h->f;
    uint32_t cs = f->vol->cs;
    size_t got = 0;
    int k = 0;
    file_catch_up_rdlock(f);
    n = off < f->size && !f->unloaded ? (n < f->size - off ? n : (size_t)(f->size - off)) : 0;
    pthread_mutex_lock(&f->pc_mu);
    while (got < n && k < maxiov) {
        uint64_t i = (off + got) / cs, v;
        size_t in = (size_t)((off + got) % cs), len = cs - in;
        if (len > n - got) len = n - got;
        if (u64map_get(&f->dirty, i, NULL) || !u64map_get(&f->pc, i, &v)) break;
        struct pchunk *c = (struct pchunk *)(uintptr_t)v;
        if (memcmp(c->ent, ent(f, i), ENT) != 0) break;
        iov[k].iov_base = c->data + in;
        iov[k++].iov_len = len;
        got += len;
        __atomic_add_fetch(&f->pc_hits, 1, __ATOMIC_RELAXED); /* (cache.c, pc_useful) */
    }
    if (k) f->pc_pins++;
    pthread_mutex_unlock(&f->pc_mu);
    pthread_rwlock_unlock(&f->rw);
    *niov = k;
    return (ssize_t)got;
}

void scp_vfile_unpin(scp_vfile *h) {
    pthread_mutex_lock(&h->f->pc_mu);
    h->f->pc_pins--;
    pthread_mutex_unlock(&h->f->pc_mu);
}

static ssize_t vfile_pwrite(scp_vfile *h, const void *buf, size_t n, uint64_t off, scp_err *err);

ssize_t scp_vfile_pwrite(scp_vfile *h, const void *buf, size_t n, uint64_t off, scp_err *err) {
    uint64_t t = VSTAT_T0();
    VSTAT(pwrite_calls);
    ssize_t r = vfile_pwrite(h, buf, n, off, err);
    VSTAT_T1(pwrite_ns, t);
    return r;
}

#define KEEP_VOL_MAX (64u << 10) /* (vfile_pwrite: the largest write that keeps the volume lock) */
static ssize_t vfile_pwrite(scp_vfile *h, const void *buf, size_t n, uint64_t off, scp_err *err) {
    if (check_handle(h, 1, err) < 0) return -1;
    pthread_rwlock_wrlock(&h->f->rw);
    /* Shared mode: a small write takes the volume lock once, for its catch-up and its lazy
     * commit together (writer_refresh keeps it, file_commit_lazy_run names the write under it):
     * two fcntls, an fstat and a header pread of manifest.log fewer per write, and no second
     * wait behind the other processes. Small only: the hold spans the write's sealing and its
     * journal pwrite, which every other process of the volume waits out. */
    h->f->keep_vol = h->f->vol->shared && n <= KEEP_VOL_MAX;
    ssize_t r = -1;
    /* The end of the file is known only once the writer's state is the newest. */
    if (!(h->flags & O_APPEND) || !n || file_acquire_writer(h->f, err) == 0) {
        if (h->flags & O_APPEND) off = h->f->size;
        r = file_shared_publish(h->f, do_pwrite(h->f, buf, n, off, err), err);
    }
    /* (never left set: another path's writer_refresh would keep the lock with nobody to let
     * go; and a write that failed, or committed otherwise, lets go of a kept lock here) */
    h->f->keep_vol = 0;
    file_unkeep_vol(h->f);
    pthread_rwlock_unlock(&h->f->rw);
    return r;
}

ssize_t scp_vfile_read(scp_vfile *h, void *buf, size_t n, scp_err *err) {
    if (check_handle(h, 0, err) < 0) return -1;
    pthread_mutex_lock(&h->cur_mu);
    ssize_t r = locked_pread(h, buf, n, h->cursor, err);
    if (r > 0) h->cursor += (uint64_t)r;
    pthread_mutex_unlock(&h->cur_mu);
    return r;
}

ssize_t scp_vfile_write(scp_vfile *h, const void *buf, size_t n, scp_err *err) {
    if (check_handle(h, 1, err) < 0) return -1;
    pthread_mutex_lock(&h->cur_mu);
    pthread_rwlock_wrlock(&h->f->rw);
    ssize_t r = (h->flags & O_APPEND) && n ? file_acquire_writer(h->f, err) : 0;
    if ((h->flags & O_APPEND) && n && r == 0) h->cursor = h->f->size;
    if (r == 0) r = file_shared_publish(h->f, do_pwrite(h->f, buf, n, h->cursor, err), err);
    /* under rw, which a fork waits for: a child sees the bytes and the cursor move together */
    if (r > 0) h->cursor += (uint64_t)r;
    pthread_rwlock_unlock(&h->f->rw);
    pthread_mutex_unlock(&h->cur_mu);
    return r;
}

int64_t scp_vfile_seek(scp_vfile *h, int64_t off, int whence, scp_err *err) {
    if (!h) return scp_fail(err, SCP_E_INVAL, EBADF, "invalid file handle");
    pthread_mutex_lock(&h->cur_mu);
    int64_t base = whence == SEEK_SET   ? 0
                   : whence == SEEK_CUR ? (int64_t)h->cursor
                   : whence == SEEK_END ? (int64_t)scp_vfile_size(h)
                                        : -1;
    int64_t r;
    if (base < 0 || (off < 0 && -off > base) || (off > 0 && base > INT64_MAX - off)) {
        r = scp_fail(err, SCP_E_INVAL, EINVAL, "invalid seek");
    } else {
        h->cursor = (uint64_t)(base + off);
        r = (int64_t)h->cursor;
    }
    pthread_mutex_unlock(&h->cur_mu);
    return r;
}

void scp_vfile_advise_once(scp_vfile *h) {
    if (h) __atomic_store_n(&h->once, 1, __ATOMIC_RELAXED);
}

void scp_vfile_set_append(scp_vfile *h, int on) {
    if (!h) return;
    pthread_mutex_lock(&h->cur_mu); /* a cursor write reads the flag under it */
    h->flags = on ? h->flags | O_APPEND : h->flags & ~O_APPEND;
    pthread_mutex_unlock(&h->cur_mu);
}

int scp_vfile_truncate(scp_vfile *h, uint64_t size, scp_err *err) {
    if (check_handle(h, 1, err) < 0) return -1;
    if (size > (UINT64_C(1) << 50))
        return scp_fail(err, SCP_E_INVAL, EFBIG, "size beyond the maximum file size");
    pthread_rwlock_wrlock(&h->f->rw);
    int rc = file_acquire_writer(h->f, err);
    __atomic_store_n(&h->f->mtime_kept, 0, __ATOMIC_RELAXED);
    if (rc == 0) rc = set_size(h->f, size, err);
    rc = file_shared_publish(h->f, rc, err);
    pthread_rwlock_unlock(&h->f->rw);
    return rc;
}

/* fallocate's range [off, off + len): not empty, within the maximum file size. */
static int range_check(uint64_t off, uint64_t len, scp_err *err) {
    if (len == 0 || off + len < off || off + len > (UINT64_C(1) << 50))
        return scp_fail(err, SCP_E_INVAL, len ? EFBIG : EINVAL,
                        len ? "size beyond the maximum file size" : "empty range");
    return 0;
}

int scp_vfile_allocate(scp_vfile *h, uint64_t off, uint64_t len, int keep_size, scp_err *err) {
    if (check_handle(h, 1, err) < 0) return -1;
    if (range_check(off, len, err) < 0) return -1;
    scp_file *f = h->f;
    uint64_t cs = f->vol->cs, a = off / cs * cs, b = (off + len + cs - 1) / cs * cs;
    pthread_rwlock_wrlock(&f->rw);
    int rc = file_acquire_writer(f, err);
    /* Chunk i's first write goes to slot 0 at i * cs (chunk_target): reserve those blocks,
     * beyond the object's length too (KEEP_SIZE: the object's length stays what its chunks
     * make it). Under the writer lock, so that no shrink of the object runs beside it. */
    if (rc == 0 && fallocate(f->fd_d, FALLOC_FL_KEEP_SIZE, (off_t)a, (off_t)(b - a)) < 0 &&
        errno != EOPNOTSUPP && errno != ENOSYS)
        rc = scp_fail_errno(err, "cannot reserve space for '%s'", f->path ? f->path : "file");
    if (rc == 0 && !keep_size && off + len > f->size) {
        __atomic_store_n(&f->mtime_kept, 0, __ATOMIC_RELAXED);
        rc = set_size(f, off + len, err);
    }
    rc = file_shared_publish(f, rc, err);
    pthread_rwlock_unlock(&f->rw);
    return rc;
}

int scp_vfile_zero_range(scp_vfile *h, uint64_t off, uint64_t len, int keep_size, scp_err *err) {
    if (check_handle(h, 1, err) < 0) return -1;
    if (range_check(off, len, err) < 0) return -1;
    /* (in pieces large enough for an overwrite's in-place slot, chunk_target's `over`) */
    size_t piece = (size_t)(len < ZERO_PIECE ? len : ZERO_PIECE);
    uint8_t *zeros = calloc(1, piece);
    if (!zeros) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory zeroing a range");
    scp_file *f = h->f;
    pthread_rwlock_wrlock(&f->rw);
    int rc = file_acquire_writer(f, err);
    /* The end of the file is known only once the writer's state is the newest. */
    uint64_t end = off + len, inside = rc == 0 && off < f->size ? (end < f->size ? end : f->size) : off;
    /* Chunks that read as zeros already (chunk_reads_zero) are left alone: cp --sparse=always
     * punches its copy's holes, and a 3 GiB copy with 4 KiB of data wrote 1.19 GB of encrypted
     * zeros (63 ms and 44 KB since). The rest in runs of at most a piece. */
    const uint32_t cs = f->vol->cs;
    for (uint64_t at = off; rc == 0 && at < inside;) {
        uint64_t stop = at;
        while (stop < inside && stop - at < piece) {
            uint64_t i = stop / cs;
            if (chunk_reads_zero(f, i)) break;
            stop = (i + 1) * cs < inside ? (i + 1) * cs : inside;
        }
        if (stop == at) { /* (a hole: the next chunk) */
            at = (at / cs + 1) * cs;
            continue;
        }
        size_t n = (size_t)(stop - at < piece ? stop - at : piece);
        if (do_pwrite(f, zeros, n, at, err) < 0) rc = -1;
        at += n;
    }
    if (rc == 0 && !keep_size && end > f->size) {
        __atomic_store_n(&f->mtime_kept, 0, __ATOMIC_RELAXED);
        rc = set_size(f, end, err);
    }
    rc = file_shared_publish(f, rc, err);
    pthread_rwlock_unlock(&f->rw);
    free(zeros);
    return rc;
}

uint64_t scp_vfile_size(scp_vfile *h) {
    file_catch_up(h->f);
    return __atomic_load_n(&h->f->size, __ATOMIC_RELAXED);
}

int scp_vfile_lock_fd(scp_vfile *h, int have, scp_err *err) {
    if (!h) return scp_fail(err, SCP_E_INVAL, EBADF, "invalid file handle");
    vol_after_fork_check(h->f->vol);
    if (have >= 0) return have;
    scp_file *f = h->f;
    /* Through /proc: the very inode the library reads (also once the file is unlinked and its
     * objects are gone), never a name in the attacker's directory. */
    char path[40];
    pthread_rwlock_rdlock(&f->rw);
    snprintf(path, sizeof path, "/proc/self/fd/%d", f->fd_t);
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
    pthread_rwlock_unlock(&f->rw);
    if (fd < 0) return scp_fail_errno(err, "cannot open a lock descriptor for '%s'", f->path ? f->path : "file");
    struct stat st;
    if (scp_fstat_notime(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return scp_fail(err, SCP_E_INTEGRITY, ENOLCK, "'%s': its table object is not a regular file",
                        f->path ? f->path : "file");
    }
    return fd;
}

int scp_vfile_stat(scp_vfile *h, scp_vstat *st, scp_err *err) {
    if (!h) return scp_fail(err, SCP_E_INVAL, EBADF, "invalid file handle");
    vol_after_fork_check(h->f->vol);
    scp_volume *v = h->f->vol;
    if (vol_lock_read(v, err) < 0) return -1;
    memset(st, 0, sizeof *st);
    long i = h->f->path ? man_find(&v->man, h->f->path) : -1;
    if (i >= 0) {
        st->mode = v->man.e[i]->mode & 07777;
        st->uid = v->man.e[i]->uid;
        st->gid = v->man.e[i]->gid;
        st->mtime_ns = v->man.e[i]->mtime_ns;
        st->ctime_ns = v->man.e[i]->ctime_ns;
        st->atime_ns = v->man.e[i]->atime_ns;
        st->nlink = v->man.e[i]->nlink ? v->man.e[i]->nlink : 1;
    } else if (h->f->nameless) { /* O_TMPFILE before its link: nlink 0, as the kernel says */
        st->mode = h->f->nl_mode;
        st->uid = h->f->nl_uid;
        st->gid = h->f->nl_gid;
    } /* else no name is left (unlinked while open): nlink 0, as the kernel says */
    vol_unlock(v);
    st->type = SCP_VTYPE_FILE;
    st->size = scp_vfile_size(h);
    st->ino = scp_get_u64(h->f->id) >> 1;
    return 0;
}

static int vfile_fsync(scp_vfile *h, scp_err *err);

int scp_vfile_fsync(scp_vfile *h, scp_err *err) {
    uint64_t t = VSTAT_T0();
    VSTAT(fsync_calls);
    int rc = vfile_fsync(h, err);
    VSTAT_T1(fsync_ns, t);
    return rc;
}

static int vfile_fsync(scp_vfile *h, scp_err *err) {
    if (!h) return scp_fail(err, SCP_E_INVAL, EBADF, "invalid file handle");
    vol_after_fork_check(h->f->vol);
    pthread_rwlock_wrlock(&h->f->rw);
    uint64_t t = VSTAT_T0();
    int rc = file_commit(h->f, err), slow = 1;
    VSTAT_T1(fsync_commit_ns, t);
    if (rc == 0 && h->f->vol->shared) {
        t = VSTAT_T0();
        int role = VSTAT_ROLE_ENTER(VROLE_FSYNC);
        slow = file_sync_shared(h->f, err);
        VSTAT_ROLE_LEAVE(role);
        VSTAT_T1(fsync_shared_ns, t);
        if (slow < 0) rc = -1;
    }
    pthread_rwlock_unlock(&h->f->rw);
    /* Shared mode: this file's last commit may be a lazy one, ours or another process's (a
     * PostgreSQL checkpointer fsyncs what backends wrote). A durable manifest makes every lazy
     * commit durable (vol_commit_manifest syncs their journals first). */
    if (rc == 0 && h->f->vol->shared && slow > 0) {
        VSTAT(fsync_volsync);
        t = VSTAT_T0();
        rc = scp_volume_sync(h->f->vol, err);
        VSTAT_T1(fsync_volsync_ns, t);
    }
    return rc;
}

/* ---- verification ------------------------------------------------------------------------- */

long file_verify(scp_file *f, scp_verify_problem_cb cb, void *ctx, uint64_t *done,
                 scp_verify_progress_cb pcb, uint64_t total) {
    uint32_t cs = f->vol->cs;
    long problems = 0;
    uint8_t *pt = malloc(cs), *ct = malloc(cs);
    if (!pt || !ct) {
        free(pt);
        free(ct);
        return -1;
    }
    pthread_rwlock_rdlock(&f->rw);
    uint64_t n = nchunks_of(f->c_size, cs);
    for (uint64_t i = 0; i < n; i++) {
        scp_err e;
        if (!is_hole(ent(f, i)) && !u64map_get(&f->jmap, i, NULL)) {
            /* (the sole holder's committed chunk not yet written to .d: in the log) */
            uint64_t at = i * cs;
            int fd = chunk_slot_fd(f, SCP_ENT_SLOT(ent(f, i)));
            if (SCP_ENT_SLOT(ent(f, i)) == 0 && u64map_get(&f->dapply, i, &at)) {
                fd = f->fd_j;
                at += SCP_JCHUNK_HDR_LEN;
            }
            ssize_t r = fd >= 0 ? scp_pread_full(fd, ct, cs, (off_t)at) : 0;
            if (r != (ssize_t)cs) {
                chunk_integrity_fail(f, i, "is missing", &e);
                if (cb) cb(ctx, f->path, (int64_t)(i * cs), e.msg);
                problems++;
            } else if (chunk_open(f, i, ct, pt, &e) < 0) {
                if (cb) cb(ctx, f->path, (int64_t)(i * cs), e.msg);
                problems++;
            }
        }
        *done += cs;
        if (pcb && (i & 255) == 0) pcb(ctx, *done, total);
    }
    pthread_rwlock_unlock(&f->rw);
    scp_wipe(pt, cs);
    free(pt);
    free(ct);
    return problems;
}

