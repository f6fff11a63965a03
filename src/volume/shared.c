/* volume/shared.c - a file's writer, and shared mode's publication and catch-up: becoming a
 * file's writer (the writer lock and the catch-up that makes its state the newest before it
 * writes, in both modes), publishing a write to the other processes of a shared volume, a
 * read's catch-up there, and shared mode's fsync in one flush.
 *
 * vfile.c holds the file handle API that calls these; commit.c the commits and the journal
 * follow they use; internal.h declares what they share. The design, its invariants and its
 * lock order are in docs/volume-format.md, "Shared mode" and "Publishing lazily".
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "volume/internal.h"
#include "volume/vstats.h"

/* ---- the writer --------------------------------------------------------------------------- */

/* The newest durable generation this process knows of (caller holds v->mu; under vol_lock,
 * the newest there is): format 3's last durable log record, format 2's newest authenticated
 * durable slot. */
static uint64_t durable_gen_known(scp_volume *v) {
    assert(VOL_MU_HELD(v));
    if (v->mlog) return v->dur_gen;
    return v->slot_gen[0] > v->slot_gen[1] ? v->slot_gen[0] : v->slot_gen[1];
}

/* Just became the writer: bring the state up to the newest commit before writing on top of it.
 * Another process may have committed since this one loaded the file (it held the writer lock
 * then and released it at its close), and the generation hint that let an open skip the
 * reload is not authenticated. So read the manifest under the volume lock (vol_lock reloads it
 * whenever a slot header claims a newer generation; a header lowered by the host only makes
 * the newest slot fail authentication, a rollback that the volume tag reports) and reload the
 * file when its root moved. Writes start only after this, and no other process can commit the
 * file while we hold the writer lock, so every write lands on top of every earlier commit.
 * Caller holds f->rw for writing (lock order: file, then volume). */
static int writer_refresh(scp_file *f, scp_err *err) {
    assert(FILE_WR_HELD(f));
    scp_volume *v = f->vol;
    /* Shared mode takes the writer lock at every write. When no process committed anything
     * since this one last took the manifest in (the volume's hint is our generation), and no
     * commit named this file since it was last checked against the manifest (its own hint:
     * every commit raises both under the volume lock before its manifest write, and the
     * previous writer released the writer lock only after its commit), the state in memory is
     * the newest, the durable generation included: skip the volume lock (seven of the 28
     * system calls that a 4 KiB write cost). The log may still have been dropped since (a
     * checkpoint drops it after the volume lock is released): checked as before. Another
     * process's fsync that put a run of type 3 records behind our append offset raised the
     * file's hint (vol_commit_oneflush), so it takes the volume lock, where journal_skip_mrecs
     * steps over the run; wherever seen_gen moves past such a run, it was stepped over. The hints
     * are not trusted: a host that holds them makes this write land on an older state, and
     * the commit, which reads the manifest under the volume lock, then finds another root and
     * fails (commit_name); nothing is committed on top of a state that is not the newest. */
    VSTAT(wref);
    if (v->shared && !f->modified && !f->unloaded && f->path) {
        pthread_mutex_lock(&v->mu);
        /* (and nothing appended past our place that we have not taken: a writer killed
         * between its commit record and its manifest record raised no hint; step 3, the
         * writer goes on from the end of the log, file_adopt_past) */
        int fresh = vol_fresh(v) &&
                    vol_file_unchanged(v, f->id, __atomic_load_n(&f->seen_gen, __ATOMIC_RELAXED)) &&
                    !f->past && !file_log_stale(f) && !file_tail_moved(f);
        if (fresh) f->w_dur_gen = durable_gen_known(v);
        f->j_chk_end = 0;
        pthread_mutex_unlock(&v->mu);
        if (fresh) return VSTAT(wref_fresh), 0;
    }
    if (vol_lock(v, err) < 0) return -1;
    int rc = 0;
    long i = f->path ? man_find(&v->man, f->path) : -1; /* vol_lock renames or unlists f */
    const scp_mentry *e = i >= 0 ? v->man.e[i] : NULL;
    /* Shared mode: also when the root is ours but the log we followed was dropped since
     * (file_log_stale): appending at our stale offset, or applying our journal map, would
     * write over the new log or put other bytes under committed entries. */
    int stale = v->shared && !f->modified && e && file_log_stale(f);
    if (stale) f->j_end = 0; /* file_load then reads .t and follows the log from its start */
    /* Outside shared mode, a file whose newest state is a shared-mode process's lazy commit is
     * not written (its state lives in that process's log, which an ordinary commit would start
     * over: file_load); once a durable commit made it durable, reload it the ordinary way */
    if (!v->shared && e && memcmp(e->id, f->id, SCP_FILEID_LEN) == 0 && !f->modified &&
        (f->followed || vol_file_lazy(v, f->id))) {
        /* With lazy closes (the shield: a file closed lazily and written again, tar's or
         * pip's second open of a file it created), make that state durable now, as any
         * process's fsync would (its journal synced before the manifest names it), and reload
         * it the ordinary way below. Without, as before: a library caller retries. */
        if (vol_file_lazy(v, f->id) && v->lazy_close && vol_commit_manifest(v, 1, err) < 0) {
            vol_unlock(v);
            return -1;
        }
        if (vol_file_lazy(v, f->id)) {
            vol_unlock(v);
            return scp_fail(err, SCP_E_BUSY, EBUSY,
                            "'%s' has commits of a process in shared mode that are not durable "
                            "yet; retry once it syncs or closes the file",
                            f->path);
        }
        stale = 1; /* (followed, or lazy until now: reload from the durable state) */
    }
    if (e && memcmp(e->id, f->id, SCP_FILEID_LEN) == 0 &&
        (stale || memcmp(e->root, f->c_root, SCP_HASH_LEN) != 0)) {
        /* Only a writer changes a file, and we were not one: nothing here is uncommitted,
         * unless the host brought back a manifest entry of a file unlinked here (then refuse
         * rather than guess which content wins). */
        if (f->modified)
            rc = scp_fail(err, SCP_E_INTEGRITY, EIO,
                          "'%s' changed on disk while this process held uncommitted writes to "
                          "it; not written",
                          f->path);
        else
            rc = file_load(f, e, err);
        /* (outside shared mode a followed state is not written on: file_load) */
        if (rc == 0 && !v->shared && f->followed)
            rc = scp_fail(err, SCP_E_BUSY, EBUSY,
                          "'%s' is being committed by a process in shared mode; retry", f->path);
    }
    /* Step 3: the writer takes in the commits past the one the manifest names (R2) and names
     * them before it writes on top (file_adopt_past): writes land on the end of the log, never
     * over a commit that another process may have read */
    int own = e && memcmp(e->id, f->id, SCP_FILEID_LEN) == 0 && !f->modified;
    if (rc == 0 && v->shared && own) rc = file_catch_tail(f, e, err) < 0 ? -1 : 0;
    if (rc == 0 && v->shared && own && f->past) rc = file_adopt_past(f, i, err);
    assert(rc != 0 || !v->shared || !own || !f->past);
    if (rc == 0 && v->shared && journal_skip_mrecs(f) < 0)
        rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    if (rc == 0) __atomic_store_n(&f->seen_gen, vol_pub_mark(v), __ATOMIC_RELAXED);
    /* Shared mode: entries committed at or below it may be overwritten in their other slot
     * (chunk_target_shared) */
    f->w_dur_gen = durable_gen_known(v);
    f->j_chk_end = 0; /* (file_log_stale's check is for this catch-up's follow only) */
    if (rc == 0 && v->shared && f->keep_vol) {
        f->vol_kept = 1; /* (one section for the write: its lazy commit names it under this hold) */
        return 0;
    }
    vol_unlock(v);
    return rc;
}

int file_acquire_writer(scp_file *f, scp_err *err) {
    assert(FILE_WR_HELD(f));
    if (f->writer) return 0;
    if (!f->path)
        return 0; /* unlinked: nobody else can reach it through the namespace */
    /* Byte 1 only: the volume lock is byte 0 of its own file, so even if the untrusted disk
     * aliases the two files (a hard link), the locks cannot conflict and self-deadlock. */
    if (!(f->vol->shared ? file_wait_writer_lock(f) : file_try_writer_lock(f))) {
        if (errno == EAGAIN || errno == EACCES)
            return scp_fail(err, SCP_E_BUSY, EBUSY,
                            "'%s' is being written by another process; retry when it closes the "
                            "file",
                            f->path);
        return scp_fail_errno(err, "cannot lock '%s' for writing", f->path);
    }
    f->writer = 1;
    uint64_t t = VSTAT_T0();
    int role = VSTAT_ROLE_ENTER(VROLE_WRITE);
    int wr = writer_refresh(f, err);
    VSTAT_ROLE_LEAVE(role);
    VSTAT_T1(wref_ns, t);
    if (wr < 0) {
        file_writer_unlock(f);
        f->writer = 0;
        return -1;
    }
    /* A closed file's deferred applies and table entries (the sole holder's last close keeps
     * them, scp_vfile_close; or a fork left them) go out now, while the table in memory is
     * still the committed one: write_unapplied writes each listed entry as it stands in
     * memory, and the writes that follow change entries before their commit (a truncation at
     * once, the write-back before the commit's new log, whose checkpoint wrote them before). */
    if (!f->vol->shared && (u64map_count(&f->dapply) || u64map_count(&f->unapplied)) &&
        file_table_flush(f, err) < 0) {
        file_writer_unlock(f);
        f->writer = 0;
        return -1;
    }
    return 0;
}

/* ---- shared mode (scp_volume_set_shared) ------------------------------------------------------
 * Processes that write the same files and expect one another's writes at once, as from a
 * shared page cache (PostgreSQL's backends, WAL writer and checkpointer write one WAL segment
 * and one relation file, each without an fsync, and read what the others wrote): every write
 * is committed before the call returns and the writer lock released, so no process ever holds
 * uncommitted bytes that another would need, and a writer waits for the lock instead of EBUSY
 * (a holder keeps it only inside one call, so the wait is short and cannot close a cycle). A
 * read, a size or a stat first reloads the file if another process committed since. */

/* A publication whose journal pwrite failed (journal_drain: EIO, ENOSPC) let go of the log in
 * memory (j_end 0). Beginning a new log from there, at the next write or fsync, would write
 * over lazy commits that .t does not have (a shared-mode checkpoint syncs .t, it does not
 * apply them): the other processes could no longer load the file. Instead the process gives
 * up its uncommitted bytes (the failing call reported the error: a failed write may or may
 * not have written), takes the file in again as the manifest names it (.t, then the log on
 * disk followed from its start to the commit named: every write that returned before the
 * failure, ours and the others'), and lets the next writer in, which appends at that log's
 * end over whatever the failed pwrite left behind it (docs/volume-format.md, "A failed
 * journal write in shared mode"). If that load fails too the file stays unloaded: every
 * write and fsync of it here reports EIO. Caller holds f->rw for writing and the writer lock. */
static void shared_rejoin(scp_file *f) {
    assert(FILE_WR_HELD(f) && f->vol->shared && f->writer && f->j_end == 0);
    scp_volume *v = f->vol;
    file_discard_uncommitted(f);
    __atomic_store_n(&f->unloaded, 1, __ATOMIC_RELAXED); /* (until the load below succeeds) */
    /* (seen_gen 0: the next write or read takes the volume lock, where journal_skip_mrecs
     * steps over any run of type 3 records behind the commit followed to, another process's
     * or what our failed fsync left, before anything is appended there; vol_file_unchanged) */
    __atomic_store_n(&f->seen_gen, 0, __ATOMIC_RELAXED);
    if (vol_lock(v, NULL) == 0) {
        long i = f->path ? man_find(&v->man, f->path) : -1;
        if (i >= 0 && memcmp(v->man.e[i]->id, f->id, SCP_FILEID_LEN) == 0)
            (void)file_load(f, v->man.e[i], NULL);
        vol_unlock(v);
    }
    file_writer_unlock(f);
    f->writer = 0;
    f->j_clean = 0;
}

/* After a write: commit it and let the next process write. Caller holds f->rw for writing. */
int file_shared_publish(scp_file *f, int rc, scp_err *err) {
    assert(FILE_WR_HELD(f));
    if (!f->vol->shared || !f->writer || rc < 0) return rc;
    /* Lazily: no flush, until an fsync (file_commit_lazy). */
    int role = VSTAT_ROLE_ENTER(VROLE_WRITE);
    int lazy = file_commit_lazy(f, err);
    VSTAT_ROLE_LEAVE(role);
    if (lazy < 0) {
        if (f->j_end == 0 && f->writer) shared_rejoin(f); /* (a failed journal pwrite) */
        return -1; /* else keep the lock: the bytes are not out yet */
    }
    file_writer_unlock(f);
    f->writer = 0;
    f->j_clean = 0; /* the next writer appends to our log (file_follow), as we do to theirs */
    return rc;
}

/* After an integrity failure in a process that holds no changes to the file: another process
 * may have committed (and applied in place) since we loaded it. Reload if the manifest moved.
 * Also if a (re)load failed half-way (unloaded: a failed pread of .t or of the log, a log that
 * did not follow): whatever path left it so (this function's own load, commit_reload,
 * shared_rejoin, file_leave_shared), the entry may still name c_root and the log look fresh
 * (j_end 0), and nothing else would ever load it again: every read and write failed until the
 * file's next commit moved its entry (test_volume_catchup "loadfail"). Such a file holds no
 * changes (each of those paths dropped them), and a load under the writer lock is what
 * commit_reload makes too, so its writer (outside shared mode the lock is kept to the close)
 * may reload it as well. Returns 1 if the state was reloaded (the read is worth retrying).
 * *unloaded (if given) says whether the file is left unloaded, read under the same hold. */
int file_refresh(scp_file *f, int *unloaded_out) {
    int reloaded = 0, role = VSTAT_ROLE_ENTER(VROLE_READ);
    pthread_rwlock_wrlock(&f->rw);
    int unloaded = __atomic_load_n(&f->unloaded, __ATOMIC_RELAXED);
    assert(!unloaded || !f->modified); /* (every path that sets it drops the changes first) */
    /* (path and gone_known read again under the volume lock: another thread's vol_lock may
     * change them meanwhile) */
    int named = f->path || __atomic_load_n(&f->gone_known, __ATOMIC_RELAXED);
    if (!f->modified && (!f->writer || unloaded) && named && vol_lock(f->vol, NULL) == 0) {
        /* (the path again: the lock's catch-up takes in another process's removal of the name,
         * files_rename, which leaves f without one; looked up as NULL, pg_ctl died of SIGSEGV
         * polling postmaster.pid: test_volume_removed_open) */
        long i = f->path ? man_find(&f->vol->man, f->path) : -1;
        int stale = f->vol->shared && i >= 0 && file_log_stale(f); /* see writer_refresh */
        /* (outside shared mode a followed file, file_load: its log may have been dropped since,
         * or its state made durable; loaded again either way, as file_load decides) */
        if (!f->vol->shared && f->followed && i >= 0) stale = 1;
        if (stale) f->j_end = 0;
        if (i >= 0 && memcmp(f->vol->man.e[i]->id, f->id, SCP_FILEID_LEN) == 0 &&
            (stale || unloaded || memcmp(f->vol->man.e[i]->root, f->c_root, SCP_HASH_LEN) != 0))
            reloaded = file_load(f, f->vol->man.e[i], NULL) == 0;
        /* Open here, its name removed by another process, whose commits before that may have
         * changed its objects in place (a checkpoint's apply): the state named last before the
         * removal, as this process's catch-up saw it go (gone_root), is still the file's. A
         * reader of postmaster.pid got EIO ("chunk at offset 0 fails authentication") when
         * the postmaster rewrote and removed it (tests/shield/pidfile). Shared mode only:
         * outside it a load may replay the journal in place (try_replay), which is the
         * remover's business. */
        if (f->vol->shared && !f->path && !f->nameless && f->gone_known &&
            (unloaded || memcmp(f->gone_root, f->c_root, SCP_HASH_LEN) != 0 || f->gone_size != f->c_size)) {
            scp_mentry e = {.type = SCP_MTYPE_FILE, .size = f->gone_size, .path = (char *)"(unlinked file)"};
            memcpy(e.id, f->id, SCP_FILEID_LEN);
            memcpy(e.root, f->gone_root, SCP_HASH_LEN);
            if (file_log_stale(f)) f->j_end = 0;
            reloaded = file_load(f, &e, NULL) == 0;
        }
        /* (step 3: and what was appended past our place, named or not) */
        if (f->vol->shared && i >= 0 && memcmp(f->vol->man.e[i]->id, f->id, SCP_FILEID_LEN) == 0)
            reloaded |= file_catch_tail(f, f->vol->man.e[i], NULL) > 0;
        /* (seen_gen lets this process's next write skip the volume lock: past a run of
         * another process's fsync, which raised the hint that brought us here, only if our
         * append offset is behind it; a follow that found a commit ends behind its run) */
        int skipped = !f->vol->shared || journal_skip_mrecs(f) == 0;
        if (!f->unloaded && skipped)
            __atomic_store_n(&f->seen_gen, vol_pub_mark(f->vol), __ATOMIC_RELAXED);
        vol_unlock(f->vol);
    }
    if (unloaded_out) *unloaded_out = __atomic_load_n(&f->unloaded, __ATOMIC_RELAXED);
    pthread_rwlock_unlock(&f->rw);
    VSTAT_ROLE_LEAVE(role);
    return reloaded;
}

void (*vol_test_catchup_window)(scp_file *f);

/* Before a read, the hints alone: 1 if nothing was committed to the file by other processes
 * as far as the hint slots say (no system call when nobody did), so that only the tail check
 * (file_tail_moved, under f->rw) is left; 0 if the file must be refreshed; -1 outside shared
 * mode, where nothing is to be taken in. */
static int shared_quiet(scp_file *f) {
    if (!f->vol->shared) return -1;
    uint64_t seen = __atomic_load_n(&f->seen_gen, __ATOMIC_RELAXED);
    /* (0: never checked, or no mapped counter, where vol_fresh asks the slot headers; else
     * other files committed since (the counter moved), this one not) */
    int quiet = seen && vol_fresh(f->vol) && seen == __atomic_load_n(&f->vol->pub_at, __ATOMIC_RELAXED);
    if (!quiet) {
        VSTAT(catchup);
        quiet = vol_file_unchanged(f->vol, f->id, seen);
    }
    return quiet ? 1 : 0;
}

static void shared_refresh(scp_file *f) {
    VSTAT(catchup_refresh);
    uint64_t t = VSTAT_T0();
    (void)file_refresh(f, NULL);
    VSTAT_T1(catchup_ns, t);
}

/* Before a read: take in what other processes committed. Returns with f->rw held for
 * reading (in every mode), the tail checked under that same hold: one rdlock on the quiet
 * path, the read's own (locked_pread, scp_vfile_pin).
 * Step 3: quiet hints are not enough, nothing may be appended past our place in the log
 * either. A commit record that no manifest names yet (its writer waits for the volume lock,
 * or died there) raised no hint slot, but its pwrite was followed by the journal end hint's
 * store; a writer takes such a commit in before it writes (file_adopt_past), so a read must
 * see it too, or a process could read the older state and then find its own write on top of
 * the newer one (test_volume_forkstress). No system call while the hint is our end. */
void file_catch_up_rdlock(scp_file *f) {
    int q = shared_quiet(f);
    if (q == 0) shared_refresh(f);
    if (q == 1 && vol_test_catchup_window) vol_test_catchup_window(f);
    pthread_rwlock_rdlock(&f->rw);
    /* (shared read again under rw: the release to the sole holding clears it under every
     * file's rw held for writing, possibly since shared_quiet) */
    if (q == 1 && f->vol->shared && file_tail_moved(f)) {
        pthread_rwlock_unlock(&f->rw);
        shared_refresh(f);
        pthread_rwlock_rdlock(&f->rw);
    }
}

/* The same where no read follows under the lock (scp_vfile_size). */
void file_catch_up(scp_file *f) {
    if (!f->vol->shared) return;
    file_catch_up_rdlock(f);
    pthread_rwlock_unlock(&f->rw);
}

/* ---- shared mode's fsync ----------------------------------------------------------------- */

/* Shared mode's fsync in one flush where it can (vol_commit_oneflush): as the file's writer for
 * the moment (its journal's end is then ours to append to), under the volume lock, the
 * durable commit that scp_volume_sync would make. Caller holds f->rw for writing. Returns 0
 * (done, or nothing to make durable), 1 (make it durable the usual way), -1 on error. */
int file_sync_shared(scp_file *f, scp_err *err) {
    assert(FILE_WR_HELD(f));
    scp_volume *v = f->vol;
    if (!f->path || f->modified) return 1;
    uint64_t ta = VSTAT_T0();
    int acq = file_acquire_writer(f, err);
    VSTAT_T1(acq_writer_ns, ta);
    if (acq < 0) return 1;
    int rc = 1;
    uint64_t tv = VSTAT_T0();
    int locked = f->writer && vol_lock(v, err) == 0;
    VSTAT_T1(fsync_vol_ns, tv);
    if (locked) {
        /* sync_pending's test: is anything newer than the last durable state? */
        if (v->lazy && v->gen <= vol_durable_generation(v)) v->lazy = 0;
        if (v->lazy || v->ndoomed > v->ndoomed_kept || v->objdir_dirty ||
            v->gen > vol_durable_generation(v))
            rc = vol_commit_oneflush(v, f, err);
        else
            rc = 0;
        /* f is current (we are its writer) and our append offset is behind our own run: the
         * hint that the one-flush commit raised need not send our next write to the lock */
        if (rc == 0) __atomic_store_n(&f->seen_gen, vol_pub_mark(v), __ATOMIC_RELAXED);
        /* (a long log is checkpointed now, while we are its writer and the fsync's durable
         * commit is the newest state: applied here, synced and dropped below) */
        uint64_t tc = VSTAT_T0();
        int ckpt = rc == 0 ? file_checkpoint_long_apply(f) : 0;
        VSTAT_T1(ckpt_long_ns, tc);
        vol_unlock(v);
        if (rc < 0 && f->j_end == 0) { /* (its run's journal pwrite failed: shared_rejoin) */
            shared_rejoin(f);
            return rc;
        }
        tc = VSTAT_T0();
        if (ckpt > 0) file_checkpoint_long_log(f);
        VSTAT_T1(ckpt_long_ns, tc);
    }
    file_writer_unlock(f);
    f->writer = 0;
    f->j_clean = 0; /* (as file_shared_publish: the next writer appends to this log) */
    return rc;
}
