/* volume/vstats.h - the volume library's event counters and section CPU times, a measurement aid.
 *
 * With SCP_VOLUME_STATS=PATH in the environment as the library loads, a process and every child
 * it forks count together in one MAP_SHARED page, and the process that loaded the library
 * appends one line to PATH at its exit: "vstats pid=N name=value ..." (an exec starts a page
 * of its own; a process that counted nothing writes nothing). Without it, each VSTAT is one
 * predictable branch. Counted where shared mode's agreement through files happens (the volume
 * and writer locks, catch-ups, follows of other processes' journal records, the manifest log's
 * walks) and beside them what every mode does (seals, chunk decrypts, flushes), so that a run
 * can say what shared mode costs per transaction (bench/RESULTS.md, fam24). Not a security
 * boundary: the counts are the process's own, written where the caller asks.
 * With SCP_VOLUME_STATS_CLOCK=wall as well, the sections are timed in wall-clock time
 * (CLOCK_MONOTONIC) instead of the thread's CPU time: what a caller waits in them (locks,
 * flushes), where CPU time says what they compute.
 */
#ifndef SCP_VOLUME_VSTATS_H
#define SCP_VOLUME_VSTATS_H

#include <stdint.h>

#define VSTAT_LIST(X)                                                                              \
    X(vol_lock)          /* vol_lock calls (the volume's mutex, then maybe the fcntl lock) */   \
    X(vol_lock_sole)     /* ... of which the sole holder's (no fcntl, no catch-up) */           \
    X(ofd_lock)          /* the volume lock taken: fcntl F_OFD_SETLKW (plus one to release) */  \
    X(ofd_lock_wait)     /* ... of which it was held by another process (a try failed first) */ \
    X(vlock_recheck)     /* mutex waits that looked again after VLOCK_RECHECK_NS (vlock.c) */ \
    X(mrefresh)          /* vol_refresh_manifest: catch-ups on the manifest log under the lock */ \
    X(mrefresh_moved)    /* ... that found the log changed (new records or a reload) */         \
    X(mrefresh_reload)   /* ... that reloaded the whole manifest (a new log, a slot) */         \
    X(slot_open)         /* manifest slots read and authenticated (a load reads one, or two) */ \
    X(fork_catch_up)     /* fork children's repairs that caught up from the parent's state */   \
    X(fork_reload)       /* ... that loaded again from generation 0 (fork_catch_up) */          \
    X(open_fold)         /* opens that folded the long log they walked (vol_open_fold) */       \
    X(gc_scan)           /* collections that read the objects directory (vol_collect_garbage) */ \
    X(gc_skip)           /* ... skipped: the last one left objects pending under this log */    \
    X(mlog_pread)        /* manifest-log preads of the catch-up (header and records) */         \
    X(mlog_pread_bytes)                                                                         \
    X(mlog_tail_miss)    /* catch-ups whose one pread from ml_end did not do (mlog_read_new) */ \
    X(mlog_rec_open)     /* manifest-log records decrypted and applied by a walk */             \
    X(mlog_rec_bytes)                                                                           \
    X(mlog_seal)         /* manifest-log records sealed (this process's commits) */             \
    X(fam_hit)           /* ... walked with the plaintext from the family's region (no decryption) */ \
    X(fam_miss)          /* ... not found there (SCP_VOLUME_FAMILY=1): decrypted */             \
    X(wref)              /* writer_refresh: a write's catch-up after taking the writer lock */  \
    X(wref_fresh)        /* ... skipped by the hints (no volume lock) */                        \
    X(catchup)           /* file_catch_up before a read */                                      \
    X(catchup_refresh)   /* ... that took the volume lock (file_refresh) */                     \
    X(wlock)             /* the file's writer lock taken (fcntl F_OFD_SETLKW) */                \
    X(log_stale_chk)     /* file_log_stale: fstat + header pread of a file's log */             \
    X(follow)            /* file_follow from our offset (others' records since we looked) */    \
    X(follow_full)       /* file_follow of the whole log (a load) */                            \
    X(follow_found)      /* ... that found the commit named */                                  \
    X(follow_pread)      /* journal preads of follows */                                        \
    X(follow_pread_bytes)                                                                       \
    X(follow_full_bytes) /* ... of which the whole-log follows' (loads) */                      \
    X(follow_nohint)     /* follows with no usable end hint (none, or another file's) */        \
    X(follow_readon)     /* ... walks that ran out of bytes and read on */                      \
    X(jcommit_open)      /* journal commit records decrypted (walks: follows and loads) */      \
    X(jcommit_open_bytes)                                                                       \
    X(jchunk_auth)       /* journal chunk records authenticated by a walk */                    \
    X(load_full)         /* file_load_follow: the table read from .t and the whole log walked */ \
    X(load_full_bytes)   /* ... the table's bytes */                                            \
    X(load_pages)        /* ... the table's pages (SCP_TABLE_PAGE entries) read */              \
    X(load_pages_kept)   /* ... of which read as they were: their hashes kept (table_reload) */ \
    X(load_full_noend)   /* ... because no log offset was kept (first load, a dropped log) */   \
    X(file_new)          /* files taken in by a process for the first time (or after a drop) */ \
    X(log_stale)         /* log-stale checks that found the log dropped or replaced */          \
    X(load_full_nofind)  /* ... because a follow from the offset did not find the commit */     \
    X(load_full_noroot)  /* ... because it found it but the table's root differed */            \
    X(pc_hit)            /* plaintext-cache hits */                                             \
    X(pc_fill)           /* plaintext-cache entries taken to be filled (pc_take, pc_take_written) */ \
    X(pc_skip)           /* ... refused: the file's cached chunks are not read again (pc_useful) */ \
    X(pc_drop)           /* plaintext caches dropped whole (a reload) */                        \
    X(chunk_decrypt)     /* chunks decrypted (chunk_open and the parallel read path) */         \
    X(chunk_seal)        /* chunks sealed */                                                    \
    X(jcommit_seal)      /* journal commit records sealed */                                    \
    X(commit_lazy)       /* lazy commits (shared mode's per-write publication) */               \
    X(flush)             /* fdatasync/fsync of the volume's objects */                          \
    /* CPU time (ns, the calling thread's) inside sections; nested ones are also in the outer */  \
    X(pwrite_calls)      /* scp_vfile_pwrite calls (pread, fsync: below) */                     \
    X(pread_calls)                                                                              \
    X(fsync_calls)                                                                              \
    X(pwrite_ns)         /* scp_vfile_pwrite, the whole call */                                 \
    X(pread_ns)          /* scp_vfile_pread, the whole call */                                  \
    X(fsync_ns)          /* scp_vfile_fsync, the whole call */                                  \
    X(fsync_commit_ns)   /* ... its file_commit (shared mode: a lazy commit of what is pending) */ \
    X(fsync_shared_ns)   /* ... its file_sync_shared (the lazy commits' journals flushed) */    \
    X(fsync_volsync_ns)  /* ... its scp_volume_sync (a durable manifest commit), when needed */ \
    X(fsync_volsync)     /* ... how many fsyncs needed it */                                    \
    X(vol_lock_ns)       /* vol_lock (with its catch-up: mrefresh_ns) */                        \
    X(mrefresh_ns)       /* vol_refresh_manifest */                                             \
    X(wlock_ns)          /* taking the file's writer lock */                                    \
    X(wref_ns)           /* writer_refresh (with vol_lock, a follow) */                         \
    X(catchup_ns)        /* file_catch_up's file_refresh (volume lock, a follow) */             \
    X(follow_ns)         /* file_follow (partial and full) */                                   \
    X(follow_full_ns)    /* ... of which the whole-log follows' */                              \
    X(load_table_ns)     /* file_load_follow: the table read from .t */                         \
    X(load_root_ns)      /* ... the table's root computed after the whole log's follow */       \
    X(follow_full_read_ns)   /* whole-log follows: the journal's preads (and the buffer's growth) */ \
    X(follow_full_walk_ns)   /* ... the walk (headers chained, commit records opened) */        \
    X(follow_full_replay_ns) /* ... the replay into the table and the maps */                   \
    X(mlog_open_ns)      /* manifest-log walks: each record's decryption and parse */           \
    X(mlog_apply_ns)     /* ... its apply to the manifest (and the second, when kept) */        \
    X(mlog_chain_ns)     /* ... the chain's hash over it */                                     \
    X(commit_lazy_ns)    /* file_commit_lazy (with its vol_lock, seals, journal and log writes) */ \
    X(lazy_writeback_ns) /* ... its write-back (the chunks sealed, their records queued) */     \
    X(lazy_root_ns)      /* ... the table's root */                                             \
    X(lazy_journal_ns)   /* ... the commit record sealed, the journal's pwrite */               \
    X(lazy_name_ns)      /* ... under the volume lock: the entry, the lazy list, the log record */ \
    X(oneflush_sync_ns)  /* vol_commit_oneflush: its journal's fdatasync */                     \
    X(oneflush_seal_ns)  /* ... the R3 names and the record's seal */                           \
    X(oneflush_prep_ns)  /* ... durable_prepare (other listed journals' syncs) */               \
    X(oneflush_put_ns)   /* ... the run and the record into its journal (one pwrite) */         \
    X(oneflush_after_ns) /* ... after the sync: manifest.log's append, the state taken */       \
    X(fsync_vol_ns)      /* file_sync_shared: vol_lock (its wait and its catch-up) */           \
    X(ckpt_long_ns)      /* file_sync_shared: file_checkpoint_long_log */                       \
    X(acq_writer_ns)     /* file_sync_shared: file_acquire_writer */                            \
    X(ofd_wait_ns)       /* ofd_lock: the F_OFD_SETLKW wait */                                  \
    X(ofd_wait_write_ns) /* ... of it, a write's (writer_refresh, its lazy commit) */           \
    X(ofd_wait_read_ns)  /* ... a read's catch-up (file_refresh) */                             \
    X(ofd_wait_fsync_ns) /* ... an fsync's (file_sync_shared) */                                \
    X(vol_hold_ns)       /* the volume lock held, from ofd_lock to ofd_unlock (all holders) */  \
    X(mu_wait_ns)        /* vol_lock: the volume's mutex */                                     \
    X(timer_reads)       /* clock reads these sections made (their own cost: timer_ns_each) */  \
    X(timer_ns_each)     /* one clock read's CPU time, measured at start (not a sum) */

enum vstat_id {
#define VSTAT_ENUM(n) VS_##n,
    VSTAT_LIST(VSTAT_ENUM)
#undef VSTAT_ENUM
    VS_COUNT
};

extern int vstat_on;
extern uint64_t *vstat_ctr; /* (VS_COUNT counters, shared by a fork family) */

/* Add n to counter id (relaxed: the process's threads may count at once). */
#define VSTAT_ADD(id, n)                                                                           \
    ((void)(__builtin_expect(vstat_on, 0)                                                          \
                ? __atomic_fetch_add(&vstat_ctr[VS_##id], (uint64_t)(n), __ATOMIC_RELAXED)         \
                : 0))
#define VSTAT(id) VSTAT_ADD(id, 1)

/* Who waits for the volume lock (SCP_VOLUME_STATS only): a thread's role while it writes, reads
 * or fsyncs a file; the outermost role counts (an fsync's writer catch-up is the fsync's). */
enum { VROLE_NONE, VROLE_WRITE, VROLE_READ, VROLE_FSYNC };
extern _Thread_local int vstat_role;
static inline int vstat_role_enter(int r) {
    int was = vstat_role;
    if (!was) vstat_role = r;
    return was;
}
#define VSTAT_ROLE_ENTER(r) (__builtin_expect(vstat_on, 0) ? vstat_role_enter(r) : 0)
#define VSTAT_ROLE_LEAVE(was) ((void)(__builtin_expect(vstat_on, 0) ? (vstat_role = (was)) : 0))

/* A timed section: t = VSTAT_T0(); ...; VSTAT_T1(name_ns, t). */
uint64_t vstat_clock(void);
#define VSTAT_T0() (__builtin_expect(vstat_on, 0) ? vstat_clock() : 0)
#define VSTAT_T1(id, t0) ((void)(__builtin_expect(vstat_on, 0) && (t0) ? VSTAT_ADD(id, vstat_clock() - (t0)) : (void)0))

#endif
