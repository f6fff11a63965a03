/* volume/internal.h - state shared by the files of src/volume (not a public API).
 *
 * Lock order: a file's rwlock before the volume mutex (vol_lock). Never take a file lock while
 * holding the volume lock. The whole order, fork included, is at the top of volume.c.
 */
#ifndef SCP_VOLUME_INTERNAL_H
#define SCP_VOLUME_INTERNAL_H

#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/u64map.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/volume.h"
#include "volume/format.h"

#define SCP_TABLE_PAGE 256u            /* table entries per hashed page */
#define SCP_PAGE_SEG 16u               /* entries per midstate of a page hash (704 bytes:
                                        * whole SHA-256 blocks; 15 midstates, 1,920 bytes per
                                        * page of 1 MiB of data). A commit rehashes from the
                                        * changed entry's segment on: 64 entries per segment
                                        * hashed on average 1.4 KB more per sqlite WAL
                                        * transaction, 16 hash 350 bytes more */
#define SCP_PAGE_MIDS (SCP_TABLE_PAGE / SCP_PAGE_SEG - 1)
_Static_assert(SCP_PAGE_SEG * SCP_CHUNK_ENTRY_LEN % 64u == 0,
               "a page's midstates fall on SHA-256 block ends");
_Static_assert(SCP_TABLE_PAGE / SCP_PAGE_SEG <= 255, "page_dirty and page_mid_n are bytes");
#define SCP_ROOT_SEG 32u               /* page hashes per midstate of the root (1 KiB) */
#define SCP_CT_NEW 64u                 /* ciphertext copies kept per commit (commit.c, ct_keep) */
#define SCP_DIRTY_LIMIT (16u << 20)    /* bytes of dirty plaintext per file before write-back */
#define FILE_CACHE 64                  /* closed files whose state is kept for the next open */
#define SCP_SUBKEY_CACHE 16            /* chunk subkeys kept per file for reading */
#define VOL_MCHG_MAX 16                /* changed paths a manifest-log delta is built from */

typedef struct scp_file scp_file;

/* The states of a file's commit (commit.c has the diagram and the legal transitions). */
enum commit_state {
    CS_IDLE = 0,  /* no commit running */
    CS_WRITTEN,   /* dirty chunks sealed and written (fresh in place, overwrites journaled) */
    CS_PREPARED,  /* everything durable but the commit point */
    CS_COMMITTED, /* the manifest names the new root */
    CS_APPLIED,   /* the journal applied in place */
};

/* How many removed files' objects a process keeps for reuse: a durable commit through the
 * log drains up to the journal list's 32 at once (docs/volume-format.md, "Object reuse"). */
#define VOL_SPARE_MAX 64
/* How many removed files' objects a process keeps open, their descriptors handed from the
 * freed state to the next create that adopts the id (vol_kept_put; docs/volume-format.md,
 * "Object reuse", kept descriptors): sqlite's rollback journal needs one. */
#define VOL_KEPT_MAX 32

/* The sole holder (docs/volume-format.md, "Sole holder"): a private process outside shared
 * mode. Transitions (volume.c, sole_set): NO -> DUE (scp_volume_go_private), DUE -> FRESH (the
 * catch-up of vol_lock under the cross-process lock), and anything -> NO (the release, the end
 * of private mode, shared mode, a fork in the parent or the child). */
/* What a load of the manifest (vol_load_manifest, mlog_load) is for: it decides whether the
 * load reads the listed journals and adopts their records past the log's end. Set by the one
 * caller of each kind around its load, VOL_LOAD_ANY otherwise. */
enum vol_load_kind {
    VOL_LOAD_ANY = 0,      /* an open (generation 0: adopts, as after a crash) or a reload while
                            * open (does not: a record past the log's end is never acknowledged) */
    VOL_LOAD_DEAD_MARK,    /* refresh_manifest found a dead one-flush committer's mark: adopt */
    VOL_LOAD_FORK_REPAIR,  /* fork_catch_up's fallback from generation 0: adopt only when the
                            * mark says a committer died, or the parent's state was not all in
                            * the log (fork_in_log clear) */
};
enum vol_sole {
    SOLE_NO,    /* not the sole holder: every vol_lock takes the lock and catches up */
    SOLE_DUE,   /* the sole holder, a catch-up under the cross-process lock due (others may
                 * have committed before the private lock was taken) */
    SOLE_FRESH, /* the sole holder, and the state in memory is the newest on disk (that catch-up
                 * done, and no other process can commit until the release): vol_lock takes
                 * neither the cross-process lock nor a catch-up. Never after a fork. */
};

/* The fork family's region (docs/volume-format.md, "Fork family's shared state"): with
 * SCP_VOLUME_FAMILY=1 at the open, one MAP_SHARED anonymous mapping that the opener makes and
 * its forked children inherit with the rest of the volume. Built so far: the plaintext of the
 * newest manifest-log records that members sealed, indexed by generation, so that a member's
 * walk takes a record's delta from here instead of decrypting it when the record's chain
 * value (computed from the bytes read from the log) is the one the entry names. A cache only:
 * the files are written as without it, and a miss decrypts as before. Entries are written
 * under the volume lock (the seal's); seq is odd while one is written (a seqlock: a writer
 * killed mid-update leaves it odd, and the entry is never taken). */
/* 2,048 entries of 568 bytes (1.1 MiB, touched as used): with 128, pgbench's server missed
 * 11.3 records per transaction and hit 4.5 (now 1.2 and 6.1): members that wake rarely walk
 * the records of hundreds of generations at once (~2.4 sealed per transaction; which of
 * PostgreSQL's processes was not checked: its WAL and background writers sleep 200 ms). */
#define VOL_FAM_SLOTS 2048
#define VOL_FAM_BODY 512 /* larger deltas are not kept (pgbench's: ~90 bytes) */
struct vol_fam_ent {
    uint64_t seq;               /* (__atomic builtins) odd: being written */
    uint64_t gen;               /* the record's generation */
    uint8_t chain[SCP_HASH_LEN]; /* the log's chain value after the record */
    uint32_t len;               /* the delta's length */
    uint8_t body[VOL_FAM_BODY]; /* the delta (the record's plaintext) */
};
struct vol_fam {
    uint64_t hits, misses, stores; /* (__atomic; for tests and the counters) */
    struct vol_fam_ent ent[VOL_FAM_SLOTS];
};
/* manifest.c: map the region (v->fam) if SCP_VOLUME_FAMILY=1; a failure leaves it NULL (the
 * file protocol alone). vol_fam_unmap at the volume's free. */
void vol_fam_map(scp_volume *v);
void vol_fam_unmap(scp_volume *v);
/* test hook: called in fam_store (manifest.c) between the entry's odd and even seq (a kill
 * there is a member killed mid-update) */
extern void (*vol_test_fam_midstore)(void);

struct scp_volume {
    int dirfd;      /* the volume directory */
    int objfd;      /* its objects/ directory */
    int lockfd;     /* "lock": the volume lock serializes commits across processes (vlock.c) */
    uint64_t *hint; /* the lock file's first 8 bytes, mapped shared: the generation of the last
                     * commit (a hint, see vol_fresh; NULL if the file cannot be mapped); the
                     * mapping goes on to the per-file hints (vol_file_unchanged) */
    int ofd_held;   /* vol_lock took the cross-process lock (vol_unlock releases it) */
    int vlock_kind; /* which lock that is (vlock.c; VLOCK_UNDECIDED until the first take) */
    uint64_t held_t0; /* (SCP_VOLUME_STATS only: when ofd_lock took it, for vol_hold_ns) */
    uint64_t pub_at; /* the publication counter (VOL_PUB_OFF) when the manifest in memory was
                      * last known to be the newest (vol_unlock under the lock), 0: not known;
                      * vol_fresh compares it with the counter (read and written atomically:
                      * file_catch_up reads it without v->mu) */
    int slotfd[3];  /* manifest.0, manifest.1 (durable), manifest.2 (scratch; -1 if absent) */
    uint64_t slot_gen[2]; /* generation of each durable slot as this process last authenticated
                           * or wrote it (0: empty or not authentic): a durable commit overwrites
                           * the older one, whatever the unauthenticated slot headers claim */
    pid_t pid;      /* process that opened the descriptors (fork detection) */
    unsigned long fork_gen; /* value of vol_fork_gen when the descriptors were taken */
    int forked_midway;      /* set in a fork child: its first call repairs (fork_catch_up) */
    int fork_in_log;        /* set in a fork child (fork_child): at the fork, the parent's
                             * state was in manifest.log or a slot (none of its records in
                             * journals only), so the repair's load reads the listed journals
                             * only when a one-flush committer died (the mark: mlog_load) */
    enum vol_load_kind load_kind; /* the load under way (mlog_load reads it) */
    int lock_inherited;     /* set in a fork parent (fork_parent): an unrepaired child shares
                             * lockfd's description, so an OFD lock taken through it now would
                             * be the child's too (vol_lock_own takes a fresh one first) */
    int priv;       /* scp_volume_go_private: holds the private lock (PRIVATE_BYTE) */
    enum vol_sole sole; /* the sole holder's state (volume.c, vol_lock; sole_set is its only
                         * writer, and asserts the transitions) */
    int lazy_close; /* scp_volume_set_lazy_close: a new file's close commits lazily (vfile.c,
                     * close_is_lazy) */
    int shared;     /* scp_volume_set_shared: other processes write the same files; commit every
                     * write at once and pick up their commits before each read (vfile.c) */
    uint32_t cs;    /* chunk size */
    uint8_t volid[SCP_VOLID_LEN];
    uint8_t k_man[32], k_tag[32], k_files[32];
    pthread_mutex_t mu;
    scp_manifest man; /* the committed manifest */
    uint64_t gen;     /* its generation */
    scp_volume_tag tag;     /* of the last durable commit (or of the state loaded) */
    scp_volume_tag cur_tag; /* of the manifest in memory (gen), durable or not */
    /* Format 3: the tags are HMACs that only an fsync's report, scp_volume_tag_get, info and
     * the open's check read, while every lazy commit and every catch-up moves the state:
     * cur_tag_due says cur_tag is not computed yet (it is the tag of gen and statehash), and
     * tag_due that tag is the one of tag_gen and tag_sh (vol_tags_settle computes them). */
    int cur_tag_due, tag_due;
    uint64_t tag_gen;
    uint8_t tag_sh[SCP_HASH_LEN];
    /* The manifest log (format 3, manifest.c; mlog == 0 for a format 2 volume, whose commits
     * write whole slots). A commit appends a sealed delta of what changed since the state at
     * ml_end, which `disk` holds; a commit that cannot (no usable log, a long log, a large
     * delta) writes a whole durable slot and starts a new log from it. */
    int mlog;         /* the volume has a manifest log */
    int mlog_fd;      /* manifest.log */
    int ml_base;      /* durable slot the log in memory continues, -1: none usable */
    int ml_adopt;     /* with no usable log: the slot whose state is in memory (a new log can
                       * start from it without a slot write), else -1 */
    uint8_t ml_hdr[SCP_MLOG_HDR_LEN]; /* the log's header as last read or written */
    uint64_t ml_epoch; /* the lock file's fold epoch (VOL_MLOG_EPOCH_OFF) at which this process
                        * last looked at the slot headers (or wrote a slot itself) */
    uint64_t ml_end;  /* offset after the last record taken in */
    /* The log's last 16 bytes before ml_end (a record's tag, or the header's log salt), valid
     * when ml_tail_at == ml_end: a catch-up reads them back with the new records in one pread
     * and knows by them that the log is still the one in memory (manifest.c, mlog_read_new) */
    uint8_t ml_tail[16];
    uint64_t ml_tail_at;
    uint64_t ml_size; /* the log's size as last seen (beyond ml_end: a torn tail to cut) */
    uint64_t ml_nrec; /* records in the log */
    uint8_t ml_chain[SCP_HASH_LEN]; /* chain value at ml_end */
    uint8_t ml_key[32];             /* the log's key */
    struct vol_fam *fam; /* the fork family's region (above), or NULL: SCP_VOLUME_FAMILY unset */
    uint64_t ml_dur_end; /* the log up to here is known durable: synced by this process, or
                          * its records past the last sync are one-flush records, each in a
                          * listed journal (a one-flush commit needs ml_dur_end == ml_end,
                          * or the records between in ml_pend) */
    uint8_t *ml_pend;    /* the lazy records this process appended since ml_dur_end, as
                          * written: a one-flush commit carries them in its journal ahead of
                          * its own (vol_commit_oneflush); valid while ml_pend_at == ml_dur_end
                          * != 0 and ml_dur_end + ml_pend_len == ml_end */
    size_t ml_pend_len, ml_pend_cap, ml_pend_n;
    uint64_t ml_pend_at;
    /* The sole holder's one-flush records taken in but not yet written to manifest.log
     * (manifest.c, mlog_defer; docs/volume-format.md "Sole holder", deferred manifest-log
     * records): ml_defer_len bytes that belong at ml_defer_at, each record durable in a
     * listed journal; written with one pwrite before anything else writes, syncs, reads or
     * folds the log, and before the holding ends. Under ml_defer_mu, a leaf taken under mu
     * (a commit, a fold) or with a file's rw held (vol_mlog_sync: a journal's release, which
     * may run without mu). ml_defer_bad: a write of them failed, so the log has a gap that
     * only a fold (a slot of the state) closes; the next commit folds. */
    pthread_mutex_t ml_defer_mu;
    uint8_t *ml_defer;
    size_t ml_defer_len, ml_defer_cap, ml_defer_n;
    uint64_t ml_defer_at;
    int ml_defer_bad;
    uint8_t statehash[SCP_HASH_LEN]; /* of the state at gen (the volume tag binds it) */
    uint8_t slot_salt[2][SCP_SALT_LEN];  /* each durable slot's seal salt (names its seal) */
    uint8_t slot_sh[2][SCP_HASH_LEN];    /* and the state hash it carries */
    uint64_t dur_gen; /* generation of the newest durable state (format 3) */
    scp_manifest disk; /* the state at ml_end: what the next delta is computed against */
    /* The paths whose entries a content commit changed in `man` since `man` last equalled
     * `disk` (commit_name, vol_mchg_note): the next record's delta is built from them alone
     * while mchg_ok and man.ver == mchg_ver (no other change of `man` since); otherwise from
     * a comparison of the whole manifest (mlog_seal; docs/volume-format.md "Manifest log"). */
    char *mchg[VOL_MCHG_MAX];
    uint32_t mchg_n;
    int mchg_ok;
    uint64_t mchg_ver;
    int ml_check_now;       /* assert builds: check this record's delta whole (mlog_delta) */
    uint64_t ml_checks;     /* records sealed (the check's clock) */
    uint64_t ml_check_next; /* the record at or after which the next check runs */
    uint64_t ml_delta_seen; /* entries the deltas looked at (both manifests whole, or the
                             * listed paths; not the debug builds' check): test_volume_mlog */
    int lazy;         /* this process wrote the scratch slot since its last durable commit */
    int man_scratch;  /* the manifest in memory is the scratch slot's (not durable) */
    int objdir_dirty; /* objects created here since the last durable commit */
    uint8_t (*doomed)[SCP_FILEID_LEN]; /* objects to delete after the next durable commit */
    size_t ndoomed, doomcap;
    int doom_keep_listed; /* vol_doomed_drain keeps the objects of listed journals: their
                           * one-flush records may not be in the synced log yet */
    size_t ndoomed_kept;  /* the first ndoomed_kept of doomed were kept so: their removal is
                           * durable already (no sync is pending for them) */
    /* removed files' objects, kept for the next creates (not shared, this process only:
     * vol_doomed_drain, adopt_spare in vfile.c) */
    void *file_mem;             /* a freed scp_file's locked allocation, zeroed, for the next
                                 * file_get (vfile.c): sqlite's DELETE-mode journal is a new
                                 * file per transaction, and each scp_file cost an mmap, an
                                 * madvise, an mlock, an munlock and an munmap */
    uint8_t spare[VOL_SPARE_MAX][SCP_FILEID_LEN];
    size_t nspare;
    /* the descriptors of removed files' objects (data, table, journal, slot; -1 where none
     * was open), kept from the freed state for adopt_spare: oldest first, under mu; never
     * across a fork (fork_lock_volume closes them) nor in shared mode */
    struct vol_kept {
        uint8_t id[SCP_FILEID_LEN];
        int fd[4];
    } kept[VOL_KEPT_MAX];
    size_t nkept;
    scp_file *files;  /* files loaded in this process */
    long nhandles;
    scp_vfile *handles; /* the open handles (under mu), for the fork child (volume.c) */
    scp_volume_commit_cb cb;
    void *cb_ctx;
    /* Group commit (commit.c): file commits of this process's threads that wait for a manifest
     * write share the next one. gc_mu is a leaf, held only to queue or take requests. */
    pthread_mutex_t gc_mu;
    pthread_cond_t gc_cv;
    struct gc_req *gc_queue; /* commits waiting for a leader (under gc_mu) */
    int gc_leader;           /* a thread is writing the manifest for a batch (under gc_mu) */
};

struct scp_file {
    scp_file *next;
    scp_volume *vol;
    char *path;                 /* current path; NULL once unlinked, or nameless */
    /* The state the manifest last named for the file before another process removed its
     * last name (or renamed another file over it), as this process's catch-up saw it go
     * (vol_note_leaving): what a reader that still has the file open reloads to when that
     * process's commits changed its objects in place before the removal (file_refresh).
     * Under vol->mu. */
    uint8_t gone_root[SCP_HASH_LEN];
    uint64_t gone_size;
    int gone_known;
    int nameless;               /* O_TMPFILE (scp_vfile_open_nameless): never had a name; 1 may
                                 * get one (scp_vfile_link), 2 never (O_EXCL) */
    uint32_t nl_mode, nl_uid, nl_gid; /* a nameless file's metadata, for its first entry */
    uint8_t id[SCP_FILEID_LEN];
    uint8_t key[32];            /* per-file key (derivation only: chunk subkeys, journal keys) */
    int fd_d, fd_t, fd_j;       /* data, table, journal (-1 until needed) */
    int fd_s;                   /* second slots (".s"; -1 until a chunk is first overwritten) */
    int refs;                   /* open handles (protected by vol->mu) */
    int fork_held;              /* the atfork prepare handler holds rw and a reference */
    int writer;                 /* holds the cross-process writer lock */
    /* Shared mode, one small write: keep_vol asks writer_refresh to keep the volume lock that
     * its catch-up took (vfile_pwrite sets it around the write), vol_kept says it did; the
     * write's lazy commit then names the write under that same hold (file_commit_lazy_run)
     * instead of taking the lock a second time. Under rw for writing. */
    int keep_vol, vol_kept;
    int followed;               /* outside shared mode: loaded by following a shared-mode
                                 * process's log in memory (its lazy commits), not from a
                                 * durable state (file_load); not written until reloaded */
    int d_inherited;            /* set in a fork parent: fd_d's description is a child's too
                                 * until the child's repair (file_own_d, before a writer lock) */
    /* An explicit modification time was set (futimens, utimensat) after this process's last
     * write: the next commit keeps it instead of stamping the commit's time (cp -a and tar
     * write, set the source's time, then close). Atomic: set under vol->mu, cleared by writes
     * under rw and by the commit. */
    int mtime_kept;
    pthread_rwlock_t rw;
    /* committed state (matches the manifest entry; in shared mode the newest commit of the
     * file's log, which may be past the one the manifest names: see past) */
    uint64_t c_size;
    uint8_t c_root[SCP_HASH_LEN];
    /* shared mode, lazy publication step 3 (docs/volume-format.md, "Built: step 3"): the state
     * in memory was followed past the commit the manifest named at the follow (m_root, m_size:
     * a writer between its commit record and its manifest-log record, or killed there). A
     * manifest entry that names m_root is then not older news than c_root (R4): it leaves the
     * state alone. The entries taken from past commits are in the unapplied set with
     * UNAPPLIED_PAST (no durable commit covers them: never overwritten in place) until a
     * manifest names c_root. Invariant: a writer is never past once writer_refresh returned
     * (it names the end first: file_adopt_past). Under rw for writing (and vol->mu). */
    int past;
    uint64_t tail_none_at, tail_none_hint; /* file_tail_moved: at j_end = tail_none_at, with the
                                 * journal end hint at tail_none_hint, nothing was found past
                                 * it (the end mark, or bytes that hold no commit): not read
                                 * again until either moves (atomic: set under rw for reading) */
    uint64_t m_size;
    uint8_t m_root[SCP_HASH_LEN];
    /* current state */
    uint64_t size;
    uint8_t *table;             /* SCP_CHUNK_ENTRY_LEN bytes per chunk, zero = hole */
    uint64_t table_cap;         /* entries allocated */
    size_t table_maplen;        /* a large table's own mapping's bytes (0: malloc's; chunk.c,
                                 * table_reserve); past table_cap entries it is never written */
    uint8_t *changed;           /* bitmap over indices < committed chunk count */
    uint64_t chg_lo, chg_hi;    /* every set bit of changed is in [chg_lo, chg_hi) (empty: 0, 0):
                                 * a shared-mode write commits lazily every time, and scanning
                                 * a large file's whole bitmap at each commit cost more than
                                 * the write (fio's 4 KiB writes over 256 MiB: a third of the
                                 * CPU) */
    uint8_t (*page_hash)[SCP_HASH_LEN];
    uint8_t *page_dirty;        /* per page: 0 its hash is current, else 1 + the first segment
                                 * (SCP_PAGE_SEG entries) that may have changed since (1: the
                                 * whole page) */
    uint64_t page_cap;
    /* Midstates that let table_root rehash only what follows a change (chunk.c): page p's
     * hash after each of its first SCP_PAGE_MIDS segments (page_mid_n[p] of them are valid), and
     * the root's after its prefix and each SCP_ROOT_SEG page hashes (root_mid_ok valid, for a
     * file of root_mid_size bytes). A shared-mode 4 KiB write commits each time, and rehashing
     * the whole root and page was ~19 KB of SHA-256 per write on a 256 MiB file. */
    scp_sha256_mid *page_mid;
    uint8_t *page_mid_n;
    scp_sha256_mid *root_mid;
    uint64_t root_mid_ok, root_mid_size;
    u64map dirty;               /* chunk index -> malloc'd plaintext chunk */
    uint8_t *dspare[2];         /* written-back dirty buffers kept for the next dirty chunks
                                 * (file_dirty_done), under the write lock; ndspare of them */
    int ndspare;
    u64map jmap;                /* chunk index -> offset of its latest record in the journal */
    u64map unapplied;           /* shared mode: chunk indexes whose entries lazy commits (ours or
                                 * followed) changed and no durable commit has applied to .t,
                                 * each -> a generation at or above the commit that changed it
                                 * (the entry is durable once a durable state is that new).
                                 * Outside it: the sole holder's committed entries not yet
                                 * written to .t (file_table_flush) */
    int t_deferred;             /* the commit running left its entries in unapplied */
    u64map dapply;              /* outside shared mode, the sole holder's deferred applies:
                                 * chunk index -> offset in the open log of its newest
                                 * committed record, whose ciphertext is not yet written to
                                 * .d (docs/volume-format.md, "Sole holder"). Every index is
                                 * below the committed count and in jlogged (so nothing goes
                                 * in place into its slot 0), and the set is empty whenever
                                 * j_clean is set (a checkpoint writes it first). A read of
                                 * such a chunk whose entry names slot 0 reads the log */
    u64map jlogged;             /* chunk indexes that have a record in the open log (a superset:
                                 * emptied only when a new log starts) */
    u64map placed;              /* chunk index -> slot: chunks below the committed count written
                                 * in place since the last commit, to the slot that the
                                 * committed entry does not name (chunk_target) */
    uint64_t j_end;             /* append offset of our open journal log (0 = none open) */
    u64map ctc;                 /* chunk index -> struct ct_copy *: the ciphertext of its
                                 * newest seal since the commit, where a small write-back put
                                 * it (commit.c, ct_keep) */
    uint64_t ct_new[SCP_CT_NEW]; /* the chunk indexes ct_keep stored since the last commit */
    uint32_t ct_nnew;           /* ... how many (ct_after_commit checks only these) */
    uint8_t *jq;                /* journal bytes a commit has queued for one pwrite (the
                                 * last jq_len bytes before j_end; journal_append) */
    size_t jq_len, jq_cap;
    int jq_on;                  /* file_commit gathers its journal writes */
    int jq_kept;                /* the queue starts with bytes kept after a failed drain
                                 * outside shared mode (journal_drain) */
    uint64_t j_stale;           /* length of the journal object when the open log started over
                                 * an older one's bytes (journal_begin), 0 if truncated: bytes
                                 * in [j_end, j_stale) are the older log's tail */
    uint8_t j_chain[SCP_HASH_LEN]; /* the open log's hash chain (format.h) */
    int lazy_listed;            /* shared mode, format 3: this file is in the lock file's lazy
                                 * list (1; 2: with its in-place mark) as of durable generation
                                 * lazy_listed_dur (a durable commit empties the list) */
    uint64_t lazy_listed_dur;
    uint64_t w_dur_gen;         /* shared mode: the newest durable generation when this
                                 * process last became the writer (under vol_lock) */
    int j_tail_commit;          /* j_end is behind a commit record that checks out (or a run
                                 * of type 3 records after one): an open takes type 3
                                 * records appended there (vol_commit_oneflush) */
    uint64_t seen_gen;          /* shared mode: the publication counter (vol_pub_mark) at
                                 * which this file's state was last checked against the
                                 * manifest, 0: never (compared with the file's hint slot and
                                 * the volume's mark, vol_file_unchanged, vol_fresh) */
    uint8_t j_salt[SCP_HASH_LEN];  /* the open log's header salt (shared mode: another process
                                    * that starts a new log changes it, see file_follow) */
    uint64_t j_chk_end; /* shared mode, the writer's catch-up only: file_log_stale found the
                         * log with salt j_salt, with j_end = j_chk_end, under our writer lock
                         * (so nobody else changed it since): file_follow from there does not
                         * read the header again (writer_refresh) */
    uint64_t j_room;            /* shared mode: the journal object was at least this long (zeros
                                 * past the log's end, journal_room) when the log with salt
                                 * j_room_salt was open; a hint that saves an fstat per append */
    uint8_t j_room_salt[SCP_HASH_LEN];
    int j_clean;                /* every commit is durable in place: a new log needs no
                                 * checkpoint first (set only while nothing else can write) */
    int modified;               /* uncommitted changes exist */
    int objs_new;               /* created by this process under the volume lock, its
                                 * descriptors handed to file_get (fresh or adopted objects):
                                 * the first load has no journal to redo and no slot object to
                                 * look for (file_load); cleared by it */
    uint64_t born_dgen;         /* created by this process when the durable generation was
                                 * born_dgen - 1 (0: not, or not since): its close may be lazy
                                 * while no durable commit has named it (close_is_lazy) */
    int jl_fresh;               /* listed ahead (an adopted id, jlist_prelist in manifest.c)
                                 * and no one-flush record written since: its journal holds
                                 * none that the synced manifest log lacks */
    enum commit_state cstate;   /* of the commit running (under rw for writing), commit.c */
    int unloaded;               /* a (re)load failed half-way: the table in memory is not the
                                 * authenticated one, so reads and writes fail until a load
                                 * succeeds */
    int d_unsynced, t_unsynced; /* bytes written to .d / .t since their last fdatasync */
    int s_unsynced;             /* and to .s */
    unsigned prep_flushed;      /* objects flushed by the commit running, before its commit
                                 * point (FLUSHED_*): each at most once (commit.c) */
    size_t kick_pending;        /* bytes written in place since writeback was last started */
    /* plaintext of authenticated chunks (vfile.c, "plaintext cache"): chunk index -> struct
     * pchunk *, each valid while the table entry it was decrypted under is the current one */
    pthread_mutex_t pc_mu;
    u64map pc;
    size_t pc_scan;             /* where the next eviction in this file looks */
    long pc_pins;               /* scp_vfile_pin callers: no entry is freed or recycled */
    uint32_t pc_fills, pc_hits; /* entries filled for f and hits on them, halved together now
                                 * and then (cache.c, pc_useful; atomic, approximate) */
    uint32_t pc_skips;          /* takes refused since f's cache was last judged unread */
    /* chunk subkeys (format.h): the writer's current one (changed under rw held for writing)
     * and the keys of recently read salts (under pc_mu) */
    uint8_t w_salt[SCP_SALT_LEN];
    uint8_t w_key[32];
    uint32_t w_uses;            /* chunks sealed under w_key */
    int w_have;                 /* w_salt and w_key are set */
    struct {
        uint8_t salt[SCP_SALT_LEN];
        uint8_t key[32];
    } sk[SCP_SUBKEY_CACHE];
    unsigned sk_n, sk_next, sk_last;
    uint8_t j_key[32];          /* the open journal log's key */
};

struct scp_vfile {
    scp_file *f;
    int flags;                  /* open flags */
    pthread_mutex_t cur_mu;
    uint64_t cursor;
    int once;                   /* reads fill no cache entry (scp_vfile_advise_once) */
    scp_vfile *hprev, *hnext;   /* on vol->handles */
};

static inline uint64_t nchunks_of(uint64_t size, uint32_t cs) { return scp_chunks_in(size, cs); }

/* volume.c */
/* The lock rules that functions state ("caller holds ..."), for assert() in debug builds:
 * VOL_MU_HELD, v->mu (vol_lock or vol_lock_read); VOL_LOCK_HELD, vol_lock itself (the mutex and
 * the cross-process lock, which the sole holder does without); FILE_WR_HELD, f->rw for
 * writing. */
#define VOL_MU_HELD(v) scp_mutex_held(&(v)->mu)
#define VOL_LOCK_HELD(v) (scp_mutex_held(&(v)->mu) && ((v)->ofd_held || (v)->sole == SOLE_FRESH))
#define FILE_WR_HELD(f) scp_rwlock_wrheld(&(f)->rw)
int vol_lock(scp_volume *v, scp_err *err);   /* mutex + cross-process lock + manifest refresh */
void vol_unlock(scp_volume *v);
/* A catch-up is about to take entry e out of the manifest in memory (another process removed
 * the name, or renamed another file over it): an open file of e's id notes the state e names
 * (gone_root), which it can still reload once it has no name (file_refresh). Caller holds
 * v->mu. */
void vol_note_leaving(scp_volume *v, const scp_mentry *e);
/* The same for every open file the manifest in memory names, before a catch-up that reloads
 * the whole manifest (it sees no single removal). Caller holds v->mu. */
void vol_note_named(scp_volume *v);
/* For lookups that only read the namespace: the mutex alone when vol_fresh() says no other
 * process committed since we loaded the manifest, otherwise vol_lock. Release with vol_unlock. */
int vol_lock_read(scp_volume *v, scp_err *err);
/* Caller holds v->mu (but shared_quiet, a read's check of the hints, calls it without: pub_at
 * is read atomically, v->gen and forked_midway as they stand; a stale answer only sends the
 * read the slow way, or shows it an older committed state). True when the in-memory manifest
 * is known to be the newest committed one
 * without a system call: no fork since the descriptors were taken, and the shared generation
 * hint equals our generation. The hint is not authenticated (the host can write it): use this
 * only to skip work for read-only lookups, where a wrong answer shows an older committed state
 * (as a reader sees anyway until its next open), never to skip the manifest check before a
 * commit (commit_name reads the manifest under vol_lock). Shared mode's writer_refresh skips
 * its own look when this and the file's hint say nothing changed: a lying hint then makes the
 * write land on an older state, which that commit check refuses (vfile.c). */
int vol_fresh(scp_volume *v);
/* 1 when no other process has the volume open (its presence lock; the sole holder knows
 * without asking), 0 when one has or it cannot be told */
int vol_alone_now(scp_volume *v);
int vol_check_fork(scp_volume *v, scp_err *err);
/* Per-file generation hints in the lock file (volume.c): VOL_FILE_HINTS u64 slots from
 * VOL_FILE_HINT_OFF, mapped with the generation hint. A commit that names a file raises its
 * slot to the generation it writes, before that manifest is written (caller holds vol_lock);
 * vol_file_unchanged says, without a system call, that no commit named the file after
 * generation seen (a hint, like vol_fresh: for reads only). */
#define VOL_FILE_HINT_OFF 8192 /* after the one-flush mark and journal list (4096-4631) */
#define VOL_FILE_HINTS 1024
void vol_file_hint_bump(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]);
void vol_file_hints_bump_all(scp_volume *v);
int vol_file_unchanged(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], uint64_t seen);
/* The publication counter (docs/volume-format.md, "Publishing lazily", step 1 of its order of
 * building): a u64 at VOL_PUB_OFF of the mapped lock page in which every mark that says "no
 * other process changed this since" counts: the volume's mark (v->pub_at, vol_fresh), each
 * file's hint slot and each file's seen_gen. It counts announcements, not states: every
 * manifest commit (vol_commit_manifest, vol_commit_oneflush) and every raise of a file's hint
 * fetch-adds it under the volume lock before anything it announces is written, so a mark taken
 * under the lock (vol_pub_mark) is at or above every value handed out before, and every
 * value handed out later is above it. Not trusted, like the hints it replaces: a host that
 * changes it delays seeing another process's commit or makes every look-up take the lock;
 * writes never rely on it (writer_refresh's commit check under the lock). Values at or above
 * VOL_PUB_LIMIT are never used as marks (vol_pub_mark gives 0, "never checked"), so a host that
 * pushes the counter up to where it would wrap turns the fast paths off instead of making a
 * wrapped value look older than a mark. Generations stay what the unapplied set and w_dur_gen
 * count in: they decide in-place overwrites, which must not rest on an untrusted number. */
#define VOL_PUB_OFF 16
#define VOL_PUB_LIMIT ((uint64_t)1 << 62)
/* Fetch-add the counter and return the new value (caller holds vol_lock; 0 when the lock page
 * is not mapped). */
uint64_t vol_pub_take(scp_volume *v);
/* The counter's value now, as a mark (caller holds vol_lock: no announcement is under way), or
 * 0 when there is none or it is at or above VOL_PUB_LIMIT. */
uint64_t vol_pub_mark(scp_volume *v);
/* Journal end hints (shared mode; docs/volume-format.md, "Shared mode", preallocated journals):
 * VOL_FILE_HINTS u64 slots from VOL_JEND_HINT_OFF, indexed as the per-file generation hints,
 * mapped with them. An appender to a file's journal stores there the offset its log reached
 * (after the bytes are written); a follower reads that far (and one record header more)
 * instead of to the object's end, which the preallocated zeros put further out. Never trusted:
 * a walk that ran out of bytes before the object's end reads the rest (file_follow), so a
 * wrong hint costs a second read, never a different result. 0 when there is none, or when a
 * file that shares the slot stored there last (each value carries a tag of its file's id). */
#define VOL_JEND_HINT_OFF (VOL_FILE_HINT_OFF + VOL_FILE_HINTS * 8)
void vol_jend_hint_set(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], uint64_t end);
uint64_t vol_jend_hint(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]);
/* Incremented in every child right after fork (pthread_atfork), so that the hot paths detect a
 * fork with one load instead of a getpid() system call. */
extern unsigned long vol_fork_gen;
/* Call at the start of every file operation: after a fork, takes fresh descriptors and locks. */
static inline void vol_after_fork_check(scp_volume *v) {
    if (__atomic_load_n(&vol_fork_gen, __ATOMIC_RELAXED) !=
        __atomic_load_n(&v->fork_gen, __ATOMIC_RELAXED)) {
        pthread_mutex_lock(&v->mu);
        vol_check_fork(v, NULL);
        pthread_mutex_unlock(&v->mu);
    }
}
/* Write the in-memory manifest as generation gen+1 (caller holds vol_lock). durable: to a
 * durable slot, synced, after the objects directory if files were created since (file
 * commits); otherwise to the scratch slot without a sync (namespace operations, which POSIX
 * makes durable only at an fsync). Only a durable commit reports its tag and deletes the
 * objects of files removed before it. */
int vol_commit_manifest(scp_volume *v, int durable, scp_err *err);
/* Compute the tags that a format 3 commit or catch-up left due (caller holds v->mu). */
void vol_tags_settle(scp_volume *v);
/* Bytes of the lock file that every process shares (manifest.c). */
#define VOL_LOCKBYTE_OBJDIR 256 /* objects were created and their directory is not synced */
#define VOL_LOCKBYTE_DOOMED 257 /* some process may have left removed files' objects behind */
void vol_lockbyte_set(scp_volume *v, off_t off, int on);
/* The collection's mark (u64, manifest.c, vol_collect_garbage): a hash of the manifest log's
 * header under which the last collection ran and left objects pending. Removed files' objects
 * stay while the base slot or a record of the log names them, so none of those can go before
 * a fold starts a new log; an open that finds the mark equal to its log's header skips the
 * collection (git's commands, each an exec'd image, read the objects directory of 30,000
 * names at every open after one `git status` rewrote the index). Not trusted: a host that
 * sets it only keeps garbage longer; one that changes it makes an open collect (which checks
 * everything itself). */
#define VOL_GC_SEEN_OFF 32
_Static_assert(VOL_GC_SEEN_OFF >= VOL_PUB_OFF + 8 && VOL_GC_SEEN_OFF + 8 <= 64,
               "lock file: the collection's mark overlaps the publication counter or the wanted word");
/* The "shared wanted" word (u32, volume.c): set by a process that opens the volume shared while
 * another holds the private lock; futex-waited by the private one's watcher. Not trusted: a
 * host that sets it makes a private process go shared (slower); one that clears it can only
 * make the newcomer wait (availability is not promised). */
#define VOL_WANT_OFF 64
_Static_assert(VOL_WANT_OFF + 4 <= VOL_LOCKBYTE_OBJDIR, "lock file: the wanted word and the lock bytes overlap");
/* The volume lock across processes (vlock.c): a process-shared robust mutex at VOL_VLOCK_OFF of
 * the mapped lock page when the u64 at VOL_VLOCK_MAGIC_OFF holds VOL_VLOCK_MAGIC, else the OFD
 * write lock on byte 0. The word is set (or cleared, SCP_VOLUME_LOCK=fcntl) only by a process
 * that takes the lock first while no other process has the volume open. */
#define VOL_VLOCK_MAGIC_OFF 120
#define VOL_VLOCK_OFF 128
#define VOL_VLOCK_MAGIC 0x314b434c56504353ull /* "SCPVLCK1" */
enum { VLOCK_UNDECIDED = 0, VLOCK_OFD, VLOCK_MUTEX };
/* Take it (waiting); try_first: try once first and set *waited if another process held it.
 * 0, or -1 with err set. Caller holds v->mu. */
int vol_vlock_take(scp_volume *v, int try_first, int *waited, scp_err *err);
/* Give it back (the thread that took it). */
void vol_vlock_give(scp_volume *v);
/* A new description fd of the lock file is about to stand for this process (a fork child's
 * repair, vol_lock_own): of the mutex kind, take the read lock on byte 0 through it that keeps
 * a build from before the mutex out (vlock.c), waiting for it if wait. 0, or -1 (errno). */
int vol_vlock_own(scp_volume *v, int fd, int wait);
/* The fold epoch (format 3; u64 at VOL_MLOG_EPOCH_OFF of the lock file, in the mapped page):
 * moved under the volume lock before every durable slot write and every start of a new log
 * (manifest.c, mlog_epoch_bump). A catch-up that finds it where it was when it last looked at
 * the slot headers skips those two reads: no slot was written since, and a new log shows in
 * the log's own header, which is still read. Not trusted: a host that holds it back makes a
 * process miss only a slot written by a committer that died before it started the new log
 * (the case the slot headers are read for), which the host could equally hide by rewriting the
 * headers (the process then appends to the old log and the next open finds the slot: an older
 * state, which the tag reports as a rollback). */
#define VOL_MLOG_EPOCH_OFF 8
_Static_assert(VOL_MLOG_EPOCH_OFF + 8 <= VOL_WANT_OFF, "lock file: the fold epoch and the wanted word overlap");
_Static_assert(VOL_PUB_OFF >= VOL_MLOG_EPOCH_OFF + 8 && VOL_PUB_OFF + 8 <= VOL_WANT_OFF,
               "lock file: the publication counter overlaps the epoch or the wanted word");
/* The lock file's list of files with lazy commits (shared mode): a u32 count at
 * VOL_LAZY_OFF, then up to VOL_LAZY_MAX file ids. A durable commit syncs their journals
 * before its manifest names them, then empties it (manifest.c). Not trusted: a host that
 * changes it can only lose what a power cut may lose anyway. */
#define VOL_LAZY_OFF 1024
#define VOL_LAZY_MAX 180
/* A bit per list entry: the file's lazy commits wrote chunks in place (fresh or filling
 * holes), so a durable commit syncs its data objects too (bytes 3920-3942). */
#define VOL_LAZY_INPLACE_OFF (VOL_LAZY_OFF + 16 + VOL_LAZY_MAX * SCP_FILEID_LEN)
/* Add id (caller holds vol_lock), marked if inplace; -1 if the list is full (commit durably
 * instead). */
int vol_lazy_add(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], int inplace);
/* 1 when the lock file's list of files with lazy commits names id (read from the mapping when
 * there is one). Outside shared mode: such a file's newest state is a shared-mode process's
 * lazy commit, which must not be made durable in place (file_load, writer_refresh). */
int vol_lazy_listed(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]);
/* Outside shared mode: f's newest state may be a lazy commit (the manifest in memory is not a
 * durable state, and the list names f). The list alone is not enough: it is not synced, and
 * after a power cut it may name a file whose state the open settled (caller holds v->mu). */
static inline int vol_file_lazy(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]) {
    return v->man_scratch && vol_lazy_listed(v, id);
}
/* One-flush commits (docs/volume-format.md, "One-flush commits"): the commit point of a
 * journaled commit is its manifest-log record appended to the file's journal (type 3, format.h)
 * behind its commit record, made durable with the journal's one fdatasync. The lock file lists
 * the files whose journals may hold such records that manifest.log has not synced (a u32
 * count at VOL_JLIST_OFF, then up to VOL_JLIST_MAX ids from 16 bytes further; the list is
 * synced before a journal that it names becomes a commit point), and VOL_JMARK_OFF holds the
 * generation of a one-flush commit between its journal's sync and its append to manifest.log
 * (0 when none: a non-zero value under the lock means its committer died there). Neither is
 * trusted: a host that changes them can only make an open find an older state (a rollback,
 * which the tag detects). */
#define VOL_JMARK_OFF 4096
#define VOL_JLIST_OFF 4104
#define VOL_JLIST_MAX 32
/* the lock file's regions must not overlap: the journal list ends before the file hints */
_Static_assert(VOL_JLIST_OFF + 16 + VOL_JLIST_MAX * SCP_FILEID_LEN <= VOL_FILE_HINT_OFF,
               "lock file: journal list and per-file hints overlap");
/* Commit the in-memory manifest as a one-flush commit of f, whose journal holds the commit
 * record just appended, unsynced (caller holds vol_lock and f->rw). Shared mode: an fsync's
 * durable commit, behind f's last commit record, the caller being f's writer for the moment
 * (file_sync_shared). Returns 0 (committed: durable, tag reported), 1 if it cannot be done so
 * (use vol_commit_manifest after syncing the journal; nothing written that matters), -1 on
 * error (not committed). */
int vol_commit_oneflush(scp_volume *v, scp_file *f, scp_err *err);
/* Is id in the lock file's list of journals with one-flush records? */
int vol_jlist_has(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]);
/* Make every one-flush record in manifest.log durable there (an fdatasync of the log), so
 * that a listed journal may be emptied. */
int vol_mlog_sync(scp_volume *v, scp_err *err);
/* Write the sole holder's deferred manifest-log records (ml_defer) to manifest.log, unsynced
 * (they are durable in listed journals already). Caller holds v->mu. On a failed write the
 * state goes to a slot (a fold), as after a failed append; -1 if that fails too. */
int vol_mlog_defer_write(scp_volume *v, scp_err *err);
/* At open (caller holds vol_lock): if the newest manifest is the scratch slot and names
 * lazy commits (file contents beyond the durable slot's, listed in the lock file or not: the
 * list is unsynced), make that state durable when every such file's journal still redoes it
 * and the chunks it names in place authenticate (the programs were killed: the page cache kept
 * it all), else go back to the newest durable state (a power cut lost some of it), as a new
 * durable generation either way. Returns 0, or -1 if the durable write failed. */
int vol_settle_lazy(scp_volume *v, scp_err *err);
/* Delete a removed file's objects after the next durable commit (volume.c); and do it now for
 * every file so marked (called by a durable commit). */
void vol_doom_objects(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]);
void vol_doomed_drain(scp_volume *v);
void vol_spare_drop(scp_volume *v);
/* Kept descriptors of a removed file's objects (volume.c; caller holds mu). put takes
 * fd[VOL_NOBJECTS] (closes them instead in shared mode; the oldest kept goes when full);
 * take moves those of id into fd and returns 1, or returns 0 with fd untouched; close closes
 * those of id; drop closes all (fork prepare, shared mode, close). */
void vol_kept_put(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], const int *fd);
int vol_kept_take(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], int *fd);
void vol_kept_close(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]);
void vol_kept_drop(scp_volume *v);
/* Find an entry by normalized path; returns its index or -1. */
long man_find(const scp_manifest *m, const char *path);
/* The index of the first entry that sorts at or after path + "/" (where path's descendants
 * start, if it has any; m->n if none sorts there). path is not empty. */
size_t vol_man_below(const scp_manifest *m, const char *path);
/* The index of the first entry past every path below path[0..pl) + "/" (pl may be 0: past
 * every path that starts with '/', the root's entry). */
size_t vol_man_past(const scp_manifest *m, const char *path, size_t pl);
/* A walk of a directory's children, from the entry k below it (the directory's path is pl - 1
 * bytes and a '/'; pl 0 for the volume root): the index of the next entry to look at, k + 1
 * if entry k is a child, else past the subtree of the child that entry k lies in. So a stat
 * of a directory or its listing costs its children, not every entry below it: the root's
 * link count (a search-permission check of every call by a caller other than root) walked
 * the whole manifest (session 60). */
size_t vol_man_next_child(const scp_manifest *m, size_t pl, size_t k);
/* Does an entry below path (path + '/') exist? (Not "is the next entry after path below it":
 * "a-b" and "a.txt" sort between "a" and "a/x", since '-' and '.' sort before '/'.) */
int man_has_child(const scp_manifest *m, const char *path);
int man_insert(scp_manifest *m, const scp_mentry *e, scp_err *err); /* takes e->path */
/* dst = a deep copy of src (its path and target its own), with path instead of src's if path
 * is not NULL: 0, or -1 out of memory (dst then holds nothing to free). */
int man_entry_dup(scp_mentry *dst, const scp_mentry *src, const char *path);
/* Free e's path and target (an entry out of the manifest: a copy, or one being replaced). */
void man_entry_clear(scp_mentry *e);
/* Make sure the next k (at most 2) man_inserts need no allocation: 0, or -1 out of memory.
 * (man_remove keeps what it frees for them: an insert that puts back a removed entry never
 * fails, and nothing else needs the reserve.) */
int man_reserve(scp_manifest *m, unsigned k);
void man_remove(scp_manifest *m, size_t i);
/* POSIX times of a change of the entries in a directory: the directory that holds path gets
 * mtime = ctime = now (the volume root has no entry and keeps no times). Returns its old times
 * for man_parent_untouch, which puts them back after a failed commit. */
typedef struct man_dtimes {
    int64_t mtime_ns, ctime_ns;
} man_dtimes;
man_dtimes man_parent_touch(scp_manifest *m, const char *path, int64_t now);
void man_parent_untouch(scp_manifest *m, const char *path, man_dtimes saved);
/* A status change of entry i (and of every other name of its file): ctime = now. */
void man_ctime_touch(scp_manifest *m, size_t i, int64_t now);
/* Hard links (entries that share an id, format.h). The first entry of id other than index skip
 * (-1: none skipped), or -1. */
long man_find_id(const scp_manifest *m, const uint8_t id[SCP_FILEID_LEN], long skip);
/* Add delta to the nlink of every entry of id (a name of it was added or removed). */
void man_links_add(scp_manifest *m, const uint8_t id[SCP_FILEID_LEN], int delta);
/* Entry i's size, root, mode, owner and mtime changed: give every other name of its file the
 * same (call after every change of an entry's metadata, and after putting an old one back). */
void man_sync_links(scp_manifest *m, size_t i);
/* The manifest log's delta (manifest.c, mlog_seal): entry `path` of v->man was changed in
 * place (its file's content commit, commit_name); and: v->man was changed in a way that
 * neither this nor man.ver records (a direct write of another entry's fields, a manifest
 * replaced whole), so the next delta compares the whole manifest. */
void vol_mchg_note(scp_volume *v, const char *path);
void vol_mchg_off(scp_volume *v);
/* A create's change of v->man: insert e (a new name; takes e->path) and give its directory
 * mtime = ctime = now (*dt for man_parent_untouch after a failed commit), noting both paths,
 * so that the commit's record is built from them (mlog_delta) and not from a comparison of
 * the whole manifest. Returns man_insert's result. */
int vol_man_create(scp_volume *v, const scp_mentry *e, int64_t now, man_dtimes *dt, scp_err *err);
/* A name's change of v->man other than a create (a hard link made, link_locked; a name
 * removed, remove_committed): usable = vol_mchg_usable read before the change. Once `path` is
 * in or out, its directory has its new times and, when others, every other name of the file
 * id its new ctime and count, notes them all (at most VOL_MCHG_MAX, else the list turns off),
 * so that the record is built from them and not from a comparison of the whole manifest:
 * others costs a scan of the entries' ids, without the comparison's strcmp of every path
 * (id may be NULL when others is 0: a create, vol_man_create). */
int vol_mchg_usable(const scp_volume *v);
void vol_man_name_changed(scp_volume *v, int usable, const char *path,
                          const uint8_t id[SCP_FILEID_LEN], int others);
/* Load the newest authentic manifest slot into v->man / gen / tag (manifest.c). */
int vol_load_manifest(scp_volume *v, scp_err *err);
/* Under vol_lock: take in what other processes committed since (format 3: the new records of
 * the manifest log; a whole reload when the log was restarted). Returns -1 on failure, 0 if
 * nothing changed, 1 if entries may have been renamed or removed, 2 if only updated or added. */
int vol_refresh_manifest(scp_volume *v, scp_err *err);
/* Format 3, at close (under vol_lock): write the state of a log with records to a durable
 * slot at the same generation and start a new log, so that a volume at rest is in a slot. */
int vol_fold_manifest(scp_volume *v, scp_err *err);
/* Highest generation the durable slots' headers claim (unauthenticated). */
uint64_t vol_durable_generation(scp_volume *v);
/* Highest generation the slot headers claim (a hint that another process committed). */
uint64_t vol_peek_generation(scp_volume *v);
int vol_file_key(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], uint8_t key[32], scp_err *err);
void vol_object_name(const uint8_t id[SCP_FILEID_LEN], const char *ext, char out[48]);
/* Root creating objects in a volume whose objects directory another user owns (a volume made
 * for a service that drops to its own user): give them to that owner, as the directory's
 * other objects are. vol_objects_owner does n at once with one look at the directory (a new
 * file's three objects: four system calls fewer per create). */
void vol_object_owner(scp_volume *v, int fd);
void vol_objects_owner(scp_volume *v, const int *fd, int n);
/* The extensions of a file's objects: data, table, journal, second slots (in that order; the
 * last is created when a chunk is first overwritten in place). */
#define VOL_NOBJECTS 4
extern const char *const vol_object_ext[VOL_NOBJECTS];
/* If the lock file says removed files' objects may have been left behind, delete every object
 * that no manifest slot names (caller holds vol_lock; best effort). */
void vol_collect_garbage(scp_volume *v);

/* vfile.c, chunk.c */
/* Content root of a file state: SHA-256 over id, size and page hashes of its table. */
void file_root(const uint8_t id[SCP_FILEID_LEN], uint64_t size, uint64_t npages,
               const uint8_t (*page_hash)[SCP_HASH_LEN], uint8_t out[SCP_HASH_LEN]);
/* The root of an empty file. */
void file_empty_root(const uint8_t id[SCP_FILEID_LEN], uint8_t out[SCP_HASH_LEN]);
/* Load (or find) the in-process state of the file of manifest entry e, recovering an
 * interrupted commit. Caller holds vol->mu; takes a reference. */
scp_file *file_get(scp_volume *v, const scp_mentry *e, scp_err *err);
/* The same for a file this process has just created under vol_lock whose objects it holds
 * open: fd[VOL_NOBJECTS] (data, table, journal, slot; -1 where none) go to the new state,
 * also on failure (each set to -1 once taken), and its load opens and reads nothing. */
scp_file *file_get_new(scp_volume *v, const scp_mentry *e, int *fd, scp_err *err);
/* Drop a reference (caller holds vol->mu). The last one frees the state. */
void file_put(scp_volume *v, scp_file *f);
/* Take a file off the volume's list and free it; if it was unlinked, delete its objects. */
void file_unlist_free(scp_volume *v, scp_file *f);
/* Free the state of every closed file kept for reuse (caller holds vol->mu or is closing). */
void file_cache_drop(scp_volume *v);
/* In a child after fork: reopen descriptors, give up writer status and uncommitted state.
 * Returns 0, -1 on error, or 1 when its objects are gone (another process removed it): its
 * path is then cleared, and the caller drops it if closed. */
int file_after_fork(scp_file *f, scp_err *err);
/* Leaving shared mode (scp_volume_try_sole, after its durable commit, with v->shared already
 * 0): take f in again as a process that opens the volume now would, from .t and a replay of
 * its log up to the manifest's entry, with none of shared mode's per-file state (followed
 * records, the unapplied set, the log's offsets, the lazy list's mark). Caller holds vol_lock
 * (the cross-process lock too), f->rw for writing, and the private lock with nobody else
 * present; f has nothing uncommitted and no writer lock. 0, or -1 (f is left unloaded: its
 * writes fail with EIO, as after a failed reload elsewhere). */
int file_leave_shared(scp_file *f, scp_err *err);
/* Verify every chunk of a file (used by scp_volume_verify). */
long file_verify(scp_file *f, scp_verify_problem_cb cb, void *ctx, uint64_t *done,
                 scp_verify_progress_cb pcb, uint64_t total);

/* ---- shared by chunk.c, cache.c, commit.c and vfile.c ----------------------------------------
 * A file's contents: chunk.c holds the chunk table and chunk crypto, cache.c the plaintext
 * cache, commit.c loading, recovery, write-back and commit, vfile.c the handle API on top.
 * Every function below expects the caller to hold f->rw (for writing when it changes the
 * table, the dirty map or the journal), unless it says otherwise. */

/* Thresholds. The tight power-cut build (tests/volume) compiles commit.c and vfile.c with
 * smaller values, so they are only defaults here. */
#define PARALLEL_MIN 64 /* chunks per batch below which the work stays on one core */
/* An uncommitted change whose journal log passes this many bytes is committed by the write that
 * passed it (as the kernel may write a file's dirty pages back at any time): so the log stays
 * within journal_replay_max, however much a program rewrites without an fsync. */
#ifndef SCP_JOURNAL_PENDING_MAX
#define SCP_JOURNAL_PENDING_MAX (32u << 20)
#endif
/* A commit whose fresh chunks come to at most this many bytes copies them into the journal, so
 * that it syncs one object instead of three (sqlite's and redis's small appends). */
#ifndef SCP_FRESH_JOURNAL_BYTES
#define SCP_FRESH_JOURNAL_BYTES (256u << 10)
#endif
/* A journal log longer than this is closed after the commit; the next one checkpoints. */
#ifndef SCP_JOURNAL_MAX
#define SCP_JOURNAL_MAX (8u << 20)
#endif
/* A new log is written over the old one's bytes (kept up to this length) instead of
 * truncating the journal: an append to a file that grows makes each fdatasync write the inode
 * and the allocation metadata as well (ext4), an overwrite of allocated blocks only the data. */
#ifndef SCP_JOURNAL_REUSE_MAX
#define SCP_JOURNAL_REUSE_MAX (SCP_JOURNAL_MAX + SCP_JOURNAL_MAX / 8)
#endif
/* An overwrite of at least this many bytes (one write call of whole chunks, or one write-back
 * batch) writes the chunks' other slots in place; a smaller one goes through the journal,
 * which makes data and commit record durable with one sync (sqlite's page writes). */
#ifndef SCP_SLOT_MIN_BYTES
#define SCP_SLOT_MIN_BYTES SCP_FRESH_JOURNAL_BYTES
#endif
/* Shared mode: a log longer than this at an fsync is checkpointed by that fsync, once its
 * durable commit is done (file_checkpoint_long_log): so that processes that load the file later
 * (PostgreSQL's backends, forked per connection, each taking the WAL and the tables anew)
 * read and walk at most about this much of it, not up to SCP_JOURNAL_MAX. Only at an fsync:
 * a program that overwrites without syncing (fio's random overwrite with end_fsync) pays no
 * checkpoint per MiB (session 30 closed every shared log past 1 MiB at any commit, and fio's
 * rand-write-over on disk fell 68 -> 29 MB/s); one that syncs pays a checkpoint (a durable
 * commit that applies the log in place, two syncs) per this many bytes of log. */
#ifndef SCP_SHARED_CHECKPOINT_AT_SYNC
#define SCP_SHARED_CHECKPOINT_AT_SYNC (1u << 20)
#endif
/* A log longer than this is checkpointed when its writer closes the file (outside shared
 * mode: vfile.c, the close). */
#ifndef SCP_CHECKPOINT_AT_CLOSE
#define SCP_CHECKPOINT_AT_CLOSE (1u << 20)
#endif

/* chunk.c: the table in memory (SCP_CHUNK_ENTRY_LEN bytes per chunk; all zero = a hole) */
extern const uint8_t vol_zero_ent[SCP_CHUNK_ENTRY_LEN];
static inline uint8_t *ent(scp_file *f, uint64_t i) { return f->table + i * SCP_CHUNK_ENTRY_LEN; }
static inline int is_hole(const uint8_t *e) {
    return memcmp(e, vol_zero_ent, SCP_CHUNK_ENTRY_LEN) == 0;
}
/* Chunk i reads as zeros with nothing to write: a hole with no write pending (read_one). */
static inline int chunk_reads_zero(scp_file *f, uint64_t i) {
    return is_hole(ent(f, i)) && !u64map_get(&f->dirty, i, NULL);
}
static inline uint64_t cur_n(scp_file *f) { return nchunks_of(f->size, f->vol->cs); } /* current */
static inline uint64_t com_n(scp_file *f) { return nchunks_of(f->c_size, f->vol->cs); } /* committed */
static inline int changed_get(scp_file *f, uint64_t i) { return f->changed[i / 8] >> (i % 8) & 1; }
/* Clear every bit of the bitmap (only the bytes of its range: all == 1 clears all its bytes,
 * for a table being (re)loaded). */
static inline void changed_clear(scp_file *f, int all) {
    assert(f->chg_lo <= f->chg_hi && f->chg_hi <= f->table_cap);
    if (all) memset(f->changed, 0, f->table_cap / 8 + 1);
    else if (f->chg_hi) memset(f->changed + f->chg_lo / 8, 0, (f->chg_hi - 1) / 8 - f->chg_lo / 8 + 1);
    f->chg_lo = f->chg_hi = 0;
}
/* A per-thread buffer of at least n bytes (valid until the thread's next call); NULL if out of
 * memory. Wiped when replaced or when the thread ends: it may hold plaintext. */
uint8_t *vol_scratch(size_t n);
/* Another such buffer, for the bulk reads of leaf functions that may run inside a call that
 * holds vol_scratch's (a journal's apply, commit.c write_records; a table's reload,
 * table_reload): kept, since fresh memory costs a page fault per 4 KiB touched, several
 * microseconds each on this project's test machines (a checkpoint's apply read the log into
 * a new 1 MiB window every time, and a WAL segment's reload its 180 KB table) */
uint8_t *vol_bulk_scratch(size_t n);
/* After vol_bulk_scratch(n): frees it where it was not the kept one (n above 1 MiB). */
void vol_bulk_release(uint8_t *p, size_t n);
/* A per-thread buffer of at least n bytes for the journal bytes a follow reads (commit.c,
 * follow_run), whose first `used` bytes are those of old (the buffer this call returned before
 * in the same follow, or NULL with used 0); *cap gets its size. Kept up to 1 MiB, grown by
 * doubling: the follows of PostgreSQL's backends read about 50 KB each, and into a buffer kept
 * per file (freed with it, and regrown to each longer read) the kernel's copy page-faulted,
 * 7.5 us per transaction (session 43). A longer read gets a buffer of its own. NULL if out of
 * memory (old is then still valid). Journal bytes as on disk only (never wiped). */
uint8_t *vol_follow_buf(uint8_t *old, size_t used, size_t n, size_t *cap);
/* The follow is done with p (frees it if it was a buffer of its own). */
void vol_follow_buf_done(uint8_t *p);
/* Room for n entries in the table, the changed bitmap and the page hashes. The new entries
 * are holes. */
int table_reserve(scp_file *f, uint64_t n, scp_err *err);
/* Free the table's memory (its mapping or malloc's block). */
void table_free(scp_file *f);
/* Read the first n entries of f's .t into the table, as a load does: what .t does not hold
 * (its holes, and past its end) is holes, as is the rest of the table; every page is marked,
 * except that a whole page of holes in .t takes the hash of such a page without being read
 * or hashed. Caller holds f->rw for writing and has reserved n entries. Returns 0, or -1 with
 * errno (the table is then all marked, its content undefined). */
int table_read(scp_file *f, uint64_t n);
/* Write entries [lo, hi) of the table to .t: one pwrite, except that a large run of holes
 * past .t's end is left to the file's extension (ftruncate: the file system's holes), so that
 * a sparse file's table takes no space for its holes. Returns 0, or -1 with errno. */
int table_write(scp_file *f, uint64_t lo, uint64_t hi);
/* Record that entry i changed (its page must be hashed again; below the committed count, the
 * commit must journal it). */
void table_mark(scp_file *f, uint64_t i);
/* The size changed from oldn to newn chunks: the pages at the boundary hash differently. */
void table_mark_resize(scp_file *f, uint64_t oldn, uint64_t newn);
/* Entry i's page hash must be redone from i's segment on. */
void table_mark_page(scp_file *f, uint64_t i);
/* Read n entries from f's .t into the table (entries past what .t holds are holes, and the
 * rest of the table is zeroed), as a load does. With old_n > 0 the table held a loaded state
 * of old_n entries whose clean pages' hashes are current: a page whose entries read the same
 * keeps its hash and midstates (marked from its first differing segment only); every other
 * page is marked whole. Caller holds f->rw for writing and has reserved n entries. Returns 0,
 * or -1 with errno (the table is then all marked, its content undefined). */
int table_reload(scp_file *f, uint64_t old_n, uint64_t n);
/* The content root of the table in memory (hashing the dirty pages again). */
void table_root(scp_file *f, uint8_t out[SCP_HASH_LEN]);
/* Fill err with an integrity failure of chunk i ("is missing", "fails authentication"); -1. */
int chunk_integrity_fail(scp_file *f, uint64_t i, const char *what, scp_err *err);
/* The subkey that table entry e was sealed under (takes pc_mu). */
int chunk_key(scp_file *f, const uint8_t *e, uint8_t key[32], scp_err *err);
/* Make the writer's subkey good for n more seals (f->rw held for writing). */
int chunk_wkey_reserve(scp_file *f, size_t n, scp_err *err);
/* Seal plaintext chunk i into ct under the writer's subkey with the given nonce, store the
 * entry in the table and mark it. */
int chunk_seal(scp_file *f, uint64_t i, const uint8_t *pt, uint8_t *ct,
               const uint8_t nonce[SCP_NONCE_LEN], int slot, scp_err *err);
/* A run of whole chunks sealed on several cores and written in place (crypto/parallel.h):
 * chunk_seal_range is the scp_parallel_for_grain body over a struct seal_job, whose parts are
 * pieces of SEAL_PIECE_BYTES (at most 64 in a run). Each piece is written out as soon as it and
 * the pieces before it are sealed, by one thread at a time (the kernel serializes the writes
 * of one file; the others seal meanwhile). It stores the entries but does not mark them (the
 * caller marks the run). */
#define SEAL_PIECE_BYTES (64u << 10)
struct seal_job {
    scp_file *f;
    uint64_t first;     /* the run's first chunk */
    size_t n, per;      /* chunks in the run, chunks per piece */
    const uint8_t *src, *nonces;
    uint8_t *ct;        /* the run's ciphertext */
    int slot;           /* where the run goes: every chunk of it has this target slot */
    pthread_mutex_t mu; /* guards the rest */
    uint64_t sealed;    /* bit k: piece k is sealed */
    size_t written;     /* pieces [0, written) are written out (or failed: write_errno) */
    uint64_t failed;    /* bit k: piece k's pwrite failed (its bytes on disk are unknown) */
    int writing;        /* a thread is writing pieces out */
    int write_errno;    /* the first failed pwrite's errno */
};
int chunk_seal_range(void *ctx, size_t b, size_t e);
/* A run of whole chunks read from the data object straight into the caller's buffer and
 * decrypted in place, split among several cores (each part reads and decrypts its own range,
 * so the kernel's copy runs in parallel too): chunk_read_range over a struct read_job. */
struct read_job {
    scp_file *f;
    uint64_t first; /* chunk index of dst[0] */
    uint8_t *dst;
    int slot;       /* every chunk of the run is in this slot */
    pthread_mutex_t mu;
    uint64_t bad;   /* smallest chunk that failed, UINT64_MAX if none */
    int bad_kind;   /* 1 missing, 2 fails authentication, 3 read error (errno in bad_errno) */
    int bad_errno;
    int fill;       /* decrypt into plaintext cache entries (pc_take) */
};
int chunk_read_range(void *ctx, size_t b, size_t e);
/* Authenticate and decrypt chunk i's ciphertext ct into pt under its table entry. */
int chunk_open(scp_file *f, uint64_t i, const uint8_t *ct, uint8_t *pt, scp_err *err);
/* Read the ciphertext of chunk i (not dirty, not a hole) into ct: from the journal if the
 * open log holds its newest version, else from the data object. */
int chunk_fetch_ct(scp_file *f, uint64_t i, uint8_t *ct, scp_err *err);
/* Plaintext of chunk i into pt (cs bytes): dirty buffer, zeros for a hole, or decrypted. */
int chunk_load(scp_file *f, uint64_t i, uint8_t *pt, scp_err *err);

/* cache.c: the plaintext cache (see there). An entry holds chunk plaintext and the table
 * entry it was decrypted under. */
struct pchunk {
    uint8_t ent[SCP_CHUNK_ENTRY_LEN];
    uint8_t data[];
};
void pc_setup(void); /* reads the budget once (SCP_VOLUME_CACHE_MB) */
/* Copy bytes [in, in + len) of chunk i from the cache if its entry is current; 1 on a hit. */
int pc_get(scp_file *f, uint64_t i, size_t in, size_t len, uint8_t *out);
/* An entry to fill: new within the budget, else one of f's own recycled; NULL if none. The
 * caller passes it to pc_put or pc_free. */
struct pchunk *pc_take(scp_file *f);
/* pc_take for a chunk just written back: also a few entries for a file too large to cache. */
struct pchunk *pc_take_written(scp_file *f);
/* Cache c (whose data is chunk i's authenticated plaintext) under chunk i's current entry. */
void pc_put(scp_file *f, uint64_t i, struct pchunk *c);
/* Chunk i's cached entry, if any and no pins are out, takes pt (its plaintext just written
 * back) and its current table entry in place: 1 if so, else 0 (the caller takes and puts). */
int pc_refill(scp_file *f, uint64_t i, const uint8_t *pt);
void pc_free(scp_file *f, struct pchunk *c);
void pc_drop(scp_file *f); /* free every entry of f */

/* commit.c */
/* Open one of f's objects (ext ".d", ".t", ".j") without following links; refuses anything
 * but a regular file. */
int file_open_obj(scp_file *f, const char *ext, int flags, scp_err *err);
/* The first name of a nameless file (vfile.c), and the manifest half of it (volume.c: checks
 * the parent and that the name is free, inserts e and commits the manifest; caller holds
 * vol_lock; takes e->path, also on failure). */
int file_link_nameless(scp_file *f, const char *to, scp_err *err);
int vol_insert_name(scp_volume *v, scp_mentry *e, scp_err *err);
/* The cross-process writer lock (byte 1 of the data object): take it without waiting (1 if
 * taken, 0 if another process holds it), release it. */
int file_try_writer_lock(scp_file *f);
int file_wait_writer_lock(scp_file *f);
void file_writer_unlock(scp_file *f);
/* (Re)load the committed state of f from its objects and manifest entry e, redoing a journal
 * that leads to e's root. On failure f->unloaded stays set. */
int file_load(scp_file *f, const scp_mentry *e, scp_err *err);
/* Open (creating it if needed, with the directory synced) the second-slot object ".s"
 * (f->rw held for writing); if create is 0, only open an existing one. */
int file_open_slot(scp_file *f, int create, scp_err *err);
/* Shared mode: f's journal map points into a log that another process has since dropped
 * (commit.c); reload before reading, applying or appending. */
int file_log_stale(scp_file *f);
/* Lazy publication step 3 (docs/volume-format.md, "Built: step 3"), shared mode.
 * file_tail_moved: 1 if records were appended past our place in f's log (j_end): the journal
 * end hint, and when a slot shared with another file says otherwise, the end mark at j_end.
 * file_catch_tail (under vol_lock, e f's entry): take in the commits past our place, named by a
 * manifest or not (a reload from .t if they do not follow); 1 if it took any, 0 if none, -1
 * on error. file_adopt_past (f's writer, under
 * vol_lock, f past the commit that entry mi names): name f's state in a durable commit (its
 * journal and data objects synced first), as the writer that appended those commits would
 * have named them had it not died between its commit record and its manifest record; after
 * it the writer's state is the one the manifest names, as commit_name requires. */
int file_tail_moved(scp_file *f);
int file_catch_tail(scp_file *f, const scp_mentry *e, scp_err *err);
int file_adopt_past(scp_file *f, long mi, scp_err *err);
/* R3's smallest form (commit.c, docs/volume-format.md "Session 27"), under vol_lock, around a
 * durable commit (one that empties the lazy list): vol_past_name names in the manifest in
 * memory, for each file of this process whose state it followed past the commit its entry
 * names (f->past, the entry still naming m_root), the commit it took, under f's writer lock
 * (tried) and with f's objects synced; files in held[] (nheld of them) have their rw held by
 * the caller, the others' are tried. Returns how many it named (at most PAST_NAMES_MAX; the
 * rest wait for the next durable commit). vol_past_named then, after the commit (ok: it
 * happened), takes each named state as the manifest's, or puts the entries back, and lets go
 * of the locks. vol_past_commit: a durable commit if any file of this process is past (it
 * names them); before a fold, which writes the same generation, and before a close drops the
 * files. */
enum { PAST_NAMES_MAX = 8 };
struct past_names {
    size_t n;
    struct past_name {
        scp_file *f;
        int own_writer, rw_held;
        uint8_t root[SCP_HASH_LEN]; /* the entry as it was */
        uint64_t size;
        int64_t mtime_ns, ctime_ns;
    } a[PAST_NAMES_MAX];
};
size_t vol_past_name(scp_volume *v, scp_file *const *held, size_t nheld, struct past_names *pn);
void vol_past_named(scp_volume *v, struct past_names *pn, int ok);
int vol_past_commit(scp_volume *v, scp_err *err);
/* Tests only: called in a shared-mode lazy commit right after its commit record's pwrite,
 * before the volume lock and the manifest record (test_volume_lazy "follow": a writer that
 * dies there). NULL otherwise. */
extern void (*vol_test_lazy_recorded)(scp_file *f);
/* Tests only: called in a one-flush commit right after its journal's sync (its commit point),
 * before its append to manifest.log (test_volume_oneflush "deadmark": a committer that dies
 * there). NULL otherwise. */
extern void (*vol_test_oneflush_synced)(scp_volume *v);
/* Tests only: called where a chunk read fails (chunk_integrity_fail: missing, or fails
 * authentication), with f's state as the read held it (f->rw held at least for reading):
 * test_volume_catchup dropkill prints the state behind its first wrong read. NULL otherwise. */
extern void (*vol_test_chunk_failed)(scp_file *f, uint64_t i);
/* Tests only: called in a read's catch-up (file_catch_up) between its unlocked test of shared
 * mode and its lock of the file (test_volume_resole "threads": the holding taken back by another
 * thread right there). NULL otherwise. */
extern void (*vol_test_catchup_window)(scp_file *f);
/* Tests only: called in a fork child's repair (vol_check_fork) once the inherited lock
 * description is closed, before the cross-process lock (test_volume_resole "repair": the parent
 * tries to hold the volume alone right there). NULL otherwise. */
extern void (*vol_test_fork_repair)(scp_volume *v);
/* Another process's shared-mode fsync put a run of type 3 records behind our last commit
 * (vol_commit_oneflush), which raised f's hint: our next append goes behind it, never over it.
 * Called wherever this process takes in the newest state of f under the volume lock. */
int journal_skip_mrecs(scp_file *f);
/* Make every commit durable in place (data and table synced); the journal needs nothing more. */
int file_checkpoint(scp_file *f, scp_err *err);
/* Shared mode, f's writer right after an fsync's durable commit (file_sync_shared), still
 * under the volume lock: a log past SCP_SHARED_CHECKPOINT_AT_SYNC is applied in place now
 * (its chunks to .d, the lazy commits' entries to .t, unsynced) and closed in memory (j_end
 * 0). Returns 1 when it did (file_checkpoint_long_log must follow), 0 when there is nothing to
 * do, -1 when the apply failed (the log stays as it was; a later checkpoint redoes it). Caller
 * holds f->rw for writing, the writer lock and the volume lock; f has no uncommitted writes. */
int file_checkpoint_long_apply(scp_file *f);
/* After file_checkpoint_long_apply returned 1, with the volume lock released (the writer lock
 * and f->rw still held): sync .d and .t, make the manifest log's records that the journal
 * carries durable (journal_release), and drop the log (journal_drop). Best effort: a failure
 * leaves the log on disk, and the next log then starts from a checkpoint (j_clean 0). */
void file_checkpoint_long_log(scp_file *f);
/* Outside shared mode: write the table entries that the sole holder's commits left in
 * f->unapplied to .t, unsynced (docs/volume-format.md, "Sole holder"). Before a checkpoint,
 * the writer's last close and the end of the sole holding (another process may then read .t
 * while this one still holds the writer lock). Caller holds f->rw for writing. */
int file_table_flush(scp_file *f, scp_err *err);
/* The same for the sole holder's deferred applies (f->dapply): their ciphertext, read back
 * from the log, written to .d, unsynced. file_table_flush writes both. */
int file_data_flush(scp_file *f, scp_err *err);
/* Before f's journal is emptied or restarted: if it is listed as holding one-flush records,
 * make them durable in manifest.log first (vol_mlog_sync). */
int journal_release(scp_file *f, scp_err *err);
/* Append a type 3 record (format.h) holding the manifest-log record rec to f's open log,
 * unsynced. */
int journal_put_mlog(scp_file *f, const uint8_t *rec, size_t len, scp_err *err);
int journal_drain(scp_file *f, scp_err *err);
void file_ct_forget(scp_file *f);
/* Encrypt every dirty chunk and write it out: fresh chunks in place, others to the journal. */
int file_writeback(scp_file *f, scp_err *err);
/* Make f's state durable and advance the volume tag (f->rw held for writing). */
int file_commit(scp_file *f, scp_err *err);
/* Shared mode: publish f's changes to the other processes without making them durable (no
 * flush; the scratch manifest slot names the new root; nothing is applied in place until a
 * durable commit). Falls back to file_commit for what it cannot do lazily (a shrink, a large
 * append, a full list of lazy files). f->rw held for writing, f->writer set. */
int file_commit_lazy(scp_file *f, scp_err *err);
/* Drop f's uncommitted writes (dirty chunks, the log past its last commit): the next commit
 * starts from the committed state. Caller holds f->rw for writing, or is a fork child's
 * first catch-up (file_after_fork, under vol_lock, its only thread). */
void file_discard_uncommitted(scp_file *f);
/* shared.c: a file's writer, and shared mode's publication and catch-up. */
/* Become f's writer: take its writer lock (shared mode waits for it; outside shared mode it is
 * tried, EBUSY if another process holds it, and kept until the close) and bring f's state up to
 * the newest commit first (writer_refresh: other processes may have committed since f was
 * loaded). A no-op for a writer or an unlinked file. Caller holds f->rw for writing. */
int file_acquire_writer(scp_file *f, scp_err *err);
/* Shared mode, after a write (rc its result): commit it lazily and let go of the writer lock,
 * so that no process holds uncommitted bytes that another would need. Returns rc, or -1 if the
 * commit failed (the lock is then kept: the bytes are not out yet). Caller holds f->rw for
 * writing. Outside shared mode, or without the writer lock, returns rc unchanged. */
int file_shared_publish(scp_file *f, int rc, scp_err *err);
/* Take in what other processes committed to f since this process loaded it: reload if the
 * manifest names another root or the log was dropped, then follow what was appended past our
 * place. Returns 1 if the state was reloaded; *unloaded_out (if given) says whether f is left
 * unloaded. Takes f->rw for writing and the volume lock itself. */
int file_refresh(scp_file *f, int *unloaded_out);
/* Before a read in shared mode: take in what other processes committed (the hints first, no
 * system call when nothing moved), then return with f->rw held for reading and the log's tail
 * checked under that hold; in every mode it returns with f->rw held for reading. */
void file_catch_up_rdlock(scp_file *f);
/* The same where no read follows under the lock (a size): returns with nothing held. */
void file_catch_up(scp_file *f);
/* Shared mode's fsync in one flush where it can (vol_commit_oneflush), as f's writer for the
 * moment. Caller holds f->rw for writing. Returns 0 (done, or nothing to make durable), 1 (make
 * it durable the usual way), -1 on error. */
int file_sync_shared(scp_file *f, scp_err *err);
/* Let go of the volume lock that writer_refresh kept for a small write (f->vol_kept), if it
 * still holds it: before anything that takes the lock itself (file_commit, a write-back), and
 * after a write that did not reach its lazy commit. f->rw held for writing. */
void file_unkeep_vol(scp_file *f);
/* Shared mode's chunk_target. The committed entry in memory may be a lazy commit's, not the
 * durable one that a power cut falls back to, and other processes may still read what an
 * older commit named, so a chunk goes in place only where neither the newest durable state nor
 * the newest (lazy) state names the bytes (docs/volume-format.md, "Where a shared-mode write
 * goes"):
 * - slot 0 of a chunk that is a hole in the newest state, or beyond its size: a lazy commit
 *   never turns data into a hole (a shrink commits durably), so it is a hole, or beyond the
 *   size, in the durable state too, and no reader reads it (a hole reads as zeros);
 * - with overwrite_ok, the slot that the entry of a written chunk does not name, if that entry
 *   is durable (not changed by a lazy commit newer than the newest durable generation this
 *   writer saw, w_dur_gen): then the durable state names the same slot, and the other one
 *   holds only what older states named; a reader in another process still on such a state
 *   fails authentication there and reloads (locked_pread), as after any commit.
 * Never a chunk with a record in the open log (any process's: replaying or applying that
 * record would overwrite the bytes), nor one changed since the commit. A chunk overwritten in
 * place goes through the log at its next overwrite until a durable commit covers the first.
 * The in-place ciphertext is made durable before any durable manifest names it (lazy_sync),
 * and a volume opened after a crash checks it before it takes a lazy state as durable
 * (vol_settle_lazy). */
static inline int chunk_target_shared(scp_file *f, uint64_t i, int overwrite_ok) {
    uint64_t s;
    if (u64map_get(&f->placed, i, &s)) return (int)s;
    if (u64map_get(&f->jlogged, i, NULL)) return -1;
    if (i >= com_n(f)) return 0;
    if (changed_get(f, i)) return -1;
    const uint8_t *e = ent(f, i);
    if (is_hole(e)) return 0;
    if (!overwrite_ok || (u64map_get(&f->unapplied, i, &s) && s > f->w_dur_gen)) return -1;
    return 1 - SCP_ENT_SLOT(e);
}
/* The slot that chunk i may be written to in place before the commit point, or -1 if the
 * change must go through the journal. In place is safe where no committed state names the
 * bytes written (docs/volume-format.md, "Overwrites" and "Unwritten chunks"): slot 0 beyond
 * the committed chunk count ("fresh"); slot 0 of a chunk whose committed entry is a hole
 * (an extending truncate or a fallocate reserved it); with overwrite_ok, the slot that the
 * committed entry of a written chunk does not name. Never slot 0 of a chunk that has a record
 * in the open journal log: replaying that older record would overwrite the bytes. A chunk
 * keeps the slot it was first placed in until the commit. */
static inline int chunk_target(scp_file *f, uint64_t i, int overwrite_ok) {
    uint64_t s;
    if (f->vol->shared) return chunk_target_shared(f, i, overwrite_ok);
    if (i >= com_n(f)) return 0;
    if (u64map_get(&f->placed, i, &s)) return (int)s;
    if (changed_get(f, i)) return -1; /* journaled or truncated since the commit */
    const uint8_t *e = ent(f, i);
    int hole = is_hole(e);
    if (!hole && !overwrite_ok) return -1;
    int t = hole ? 0 : 1 - SCP_ENT_SLOT(e);
    if (t == 0 && u64map_get(&f->jlogged, i, NULL)) return -1;
    return t;
}
/* The descriptor of slot 0 (".d") or 1 (".s", -1 if not open). */
static inline int chunk_slot_fd(scp_file *f, int slot) { return slot ? f->fd_s : f->fd_d; }
/* Free a dirty chunk's buffer (a u64map value): it holds plaintext. */
static inline void file_dirty_free(scp_file *f, uint64_t v) {
    scp_wipe((void *)(uintptr_t)v, f->vol->cs);
    free((void *)(uintptr_t)v);
}
/* A dirty chunk's buffer whose chunk was written back: kept (up to two, chunks of at most
 * DIRTY_SPARE_CS) for the file's next dirty chunks instead of wiped and freed, then taken
 * again by file_dirty_alloc (a malloc, a 4 KiB wipe and a free fewer per written chunk: sqlite
 * writes two per WAL transaction, the frame's). Its plaintext is of this file, as the cache's
 * entries are; it stays in the file's own memory until it is overwritten (every taker fills
 * the whole buffer: a chunk load or a whole-chunk write) or the file is freed (file_free wipes
 * the spares). Caller holds the write lock (or is the file's last user). */
#define DIRTY_SPARE_CS 16384u
static inline void file_dirty_done(scp_file *f, uint64_t v) {
    if (f->vol->cs <= DIRTY_SPARE_CS && f->ndspare < (int)(sizeof f->dspare / sizeof f->dspare[0]))
        f->dspare[f->ndspare++] = (uint8_t *)(uintptr_t)v;
    else
        file_dirty_free(f, v);
}
static inline uint8_t *file_dirty_alloc(scp_file *f) {
    if (f->ndspare > 0) return f->dspare[--f->ndspare];
    return malloc(f->vol->cs);
}
static inline void file_dirty_spares_free(scp_file *f) {
    while (f->ndspare > 0) file_dirty_free(f, (uintptr_t)f->dspare[--f->ndspare]);
}

#endif
