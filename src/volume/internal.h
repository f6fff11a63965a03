/* volume/internal.h - state shared by the files of src/volume (not a public API).
 *
 * Lock order: a file's rwlock before the volume mutex (vol_lock). Never take a file lock while
 * holding the volume lock. The whole order, fork included, is at the top of volume.c.
 */
#ifndef SCP_VOLUME_INTERNAL_H
#define SCP_VOLUME_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/u64map.h"
#include "scp/volume.h"
#include "volume/format.h"

#define SCP_TABLE_PAGE 256u            /* table entries per hashed page */
#define SCP_DIRTY_LIMIT (16u << 20)    /* bytes of dirty plaintext per file before write-back */
#define FILE_CACHE 64                  /* closed files whose state is kept for the next open */
#define SCP_SUBKEY_CACHE 16            /* chunk subkeys kept per file for reading */

typedef struct scp_file scp_file;

struct scp_volume {
    int dirfd;      /* the volume directory */
    int objfd;      /* its objects/ directory */
    int lockfd;     /* "lock": OFD write lock serializes commits across processes */
    uint64_t *hint; /* the lock file's first 8 bytes, mapped shared: the generation of the last
                     * commit (a hint, see vol_fresh; NULL if the file cannot be mapped) */
    int ofd_held;   /* vol_lock took the cross-process lock (vol_unlock releases it) */
    int slotfd[3];  /* manifest.0, manifest.1 (durable), manifest.2 (scratch; -1 if absent) */
    uint64_t slot_gen[2]; /* generation of each durable slot as this process last authenticated
                           * or wrote it (0: empty or not authentic): a durable commit overwrites
                           * the older one, whatever the unauthenticated slot headers claim */
    pid_t pid;      /* process that opened the descriptors (fork detection) */
    unsigned long fork_gen; /* value of vol_fork_gen when the descriptors were taken */
    int forked_midway;      /* set in a fork child: in-memory state may be torn, reload it */
    uint32_t cs;    /* chunk size */
    uint8_t volid[SCP_VOLID_LEN];
    uint8_t k_man[32], k_tag[32], k_files[32];
    pthread_mutex_t mu;
    scp_manifest man; /* the committed manifest */
    uint64_t gen;     /* its generation */
    scp_volume_tag tag;     /* of the last durable commit (or of the state loaded) */
    scp_volume_tag cur_tag; /* of the manifest in memory (gen), durable or not */
    int lazy;         /* this process wrote the scratch slot since its last durable commit */
    int objdir_dirty; /* objects created here since the last durable commit */
    uint8_t (*doomed)[SCP_FILEID_LEN]; /* objects to delete after the next durable commit */
    size_t ndoomed, doomcap;
    scp_file *files;  /* files loaded in this process */
    long nhandles;
    scp_vfile *handles; /* the open handles (under mu), for the fork child (volume.c) */
    scp_volume_commit_cb cb;
    void *cb_ctx;
};

struct scp_file {
    scp_file *next;
    scp_volume *vol;
    char *path;                 /* current path; NULL once unlinked */
    uint8_t id[SCP_FILEID_LEN];
    uint8_t key[32];            /* per-file key (derivation only: chunk subkeys, journal keys) */
    int fd_d, fd_t, fd_j;       /* data, table, journal (-1 until needed) */
    int refs;                   /* open handles (protected by vol->mu) */
    int fork_held;              /* the atfork prepare handler holds rw and a reference */
    int writer;                 /* holds the cross-process writer lock */
    pthread_rwlock_t rw;
    /* committed state (matches the manifest entry) */
    uint64_t c_size;
    uint8_t c_root[SCP_HASH_LEN];
    /* current state */
    uint64_t size;
    uint8_t *table;             /* SCP_CHUNK_ENTRY_LEN bytes per chunk, zero = hole */
    uint64_t table_cap;         /* entries allocated */
    uint8_t *changed;           /* bitmap over indices < committed chunk count */
    uint8_t (*page_hash)[SCP_HASH_LEN];
    uint8_t *page_dirty;
    uint64_t page_cap;
    u64map dirty;               /* chunk index -> malloc'd plaintext chunk */
    u64map jmap;                /* chunk index -> offset of its latest record in the journal */
    uint64_t j_end;             /* append offset of our open journal log (0 = none open) */
    uint8_t j_chain[SCP_HASH_LEN]; /* the open log's hash chain (format.h) */
    int j_clean;                /* every commit is durable in place: a new log needs no
                                 * checkpoint first (set only while nothing else can write) */
    int modified;               /* uncommitted changes exist */
    int unloaded;               /* a (re)load failed half-way: the table in memory is not the
                                 * authenticated one, so reads and writes fail until a load
                                 * succeeds */
    int d_unsynced, t_unsynced; /* bytes written to .d / .t since their last fdatasync */
    size_t kick_pending;        /* bytes written in place since writeback was last started */
    /* plaintext of authenticated chunks (vfile.c, "plaintext cache"): chunk index -> struct
     * pchunk *, each valid while the table entry it was decrypted under is the current one */
    pthread_mutex_t pc_mu;
    u64map pc;
    size_t pc_scan;             /* where the next eviction in this file looks */
    long pc_pins;               /* scp_vfile_pin callers: no entry is freed or recycled */
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
    scp_vfile *hprev, *hnext;   /* on vol->handles */
};

static inline uint64_t nchunks_of(uint64_t size, uint32_t cs) { return (size + cs - 1) / cs; }

/* volume.c */
int vol_lock(scp_volume *v, scp_err *err);   /* mutex + cross-process lock + manifest refresh */
void vol_unlock(scp_volume *v);
/* For lookups that only read the namespace: the mutex alone when vol_fresh() says no other
 * process committed since we loaded the manifest, otherwise vol_lock. Release with vol_unlock. */
int vol_lock_read(scp_volume *v, scp_err *err);
/* Caller holds v->mu. True when the in-memory manifest is known to be the newest committed one
 * without a system call: no fork since the descriptors were taken, and the shared generation
 * hint equals our generation. The hint is not authenticated (the host can write it): use this
 * only to skip work for read-only lookups, where a wrong answer shows an older committed state
 * (as a reader sees anyway until its next open), never to skip the manifest check before a
 * write (acquire_writer, commit: both read the manifest under vol_lock). */
int vol_fresh(scp_volume *v);
int vol_check_fork(scp_volume *v, scp_err *err);
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
/* Bytes of the lock file that every process shares (manifest.c). */
#define VOL_LOCKBYTE_OBJDIR 256 /* objects were created and their directory is not synced */
#define VOL_LOCKBYTE_DOOMED 257 /* some process may have left removed files' objects behind */
void vol_lockbyte_set(scp_volume *v, off_t off, int on);
/* Delete a removed file's objects after the next durable commit (volume.c); and do it now for
 * every file so marked (called by a durable commit). */
void vol_doom_objects(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]);
void vol_doomed_drain(scp_volume *v);
/* Find an entry by normalized path; returns its index or -1. */
long man_find(const scp_manifest *m, const char *path);
int man_insert(scp_manifest *m, const scp_mentry *e, scp_err *err); /* takes e->path */
void man_remove(scp_manifest *m, size_t i);
/* Load the newest authentic manifest slot into v->man / gen / tag (manifest.c). */
int vol_load_manifest(scp_volume *v, scp_err *err);
/* Highest generation the durable slots' headers claim (unauthenticated). */
uint64_t vol_durable_generation(scp_volume *v);
/* Highest generation the slot headers claim (a hint that another process committed). */
uint64_t vol_peek_generation(scp_volume *v);
int vol_file_key(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], uint8_t key[32], scp_err *err);
void vol_object_name(const uint8_t id[SCP_FILEID_LEN], const char *ext, char out[48]);
/* The extensions of a file's objects: data, table, journal (in that order). */
extern const char *const vol_object_ext[3];
/* If the lock file says removed files' objects may have been left behind, delete every object
 * that no manifest slot names (caller holds vol_lock; best effort). */
void vol_collect_garbage(scp_volume *v);

/* vfile.c */
/* Content root of a file state: SHA-256 over id, size and page hashes of its table. */
void file_root(const uint8_t id[SCP_FILEID_LEN], uint64_t size, uint64_t npages,
               const uint8_t (*page_hash)[SCP_HASH_LEN], uint8_t out[SCP_HASH_LEN]);
/* The root of an empty file. */
void file_empty_root(const uint8_t id[SCP_FILEID_LEN], uint8_t out[SCP_HASH_LEN]);
/* Load (or find) the in-process state of the file of manifest entry e, recovering an
 * interrupted commit. Caller holds vol->mu; takes a reference. */
scp_file *file_get(scp_volume *v, const scp_mentry *e, scp_err *err);
/* Drop a reference (caller holds vol->mu). The last one frees the state. */
void file_put(scp_volume *v, scp_file *f);
/* Take a file off the volume's list and free it; if it was unlinked, delete its objects. */
void file_unlist_free(scp_volume *v, scp_file *f);
/* Free the state of every closed file kept for reuse (caller holds vol->mu or is closing). */
void file_cache_drop(scp_volume *v);
/* In a child after fork: reopen descriptors, give up writer status and uncommitted state. */
int file_after_fork(scp_file *f, scp_err *err);
/* Verify every chunk of a file (used by scp_volume_verify). */
long file_verify(scp_file *f, scp_verify_problem_cb cb, void *ctx, uint64_t *done,
                 scp_verify_progress_cb pcb, uint64_t total);

#endif
