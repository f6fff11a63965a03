/* volume/volume.c - creating and opening volumes, keys, locking and the namespace
 * (mkdir, rmdir, unlink, rename, stat, readdir). File contents live in vfile.c
 * (handles), chunk.c, cache.c and commit.c.
 *
 * Lock order (every thread, and the fork handlers below):
 *   1. registry_mu          the list of open volumes; held across others only by fork_prepare
 *   2. a handle's cur_mu    (vfile.c) cursor calls: read, write, seek
 *   3. a file's rw          a thread holds at most one file's rw at a time
 *   4. the volume's mu      vol_lock; the cross-process lock (vlock.c) is taken under it
 *   5. a file's pc_mu       (cache.c) the plaintext cache; a leaf
 *   -  the volume's ml_defer_mu (manifest.c) the sole holder's deferred manifest-log records;
 *                           a leaf, taken under mu or with a file's rw held
 *   -  the volume's gc_mu   (commit.c) group commit's queue; a leaf, taken with a file's rw
 *                           held; a committer waits on gc_cv holding its rw (only for the
 *                           leader, which needs mu and never a rw)
 * Under mu a file's rw is only ever tried (pthread_rwlock_trywrlock: file_get, fork_prepare),
 * never waited for. The commit callback (scp_volume_on_commit) runs under mu and must not
 * call into the volume or fork.
 *
 * Fork: fork_prepare takes, for every registered volume, its mu, every loaded file's rw (for
 * writing) and pc_mu, as glibc's malloc does with its arenas, so that no other thread is inside
 * a volume call when the process is copied; the child inherits no half-made change. The parent
 * handler releases them; the child, which has one thread, initializes them afresh (and every
 * handle's cur_mu, which fork_prepare does not take: a cursor moves under its file's rw too),
 * then repairs its descriptors and locks at its first volume call (vol_check_fork).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <limits.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "volume/internal.h"
#include "volume/vstats.h"

static const char HDR_NAME[] = "scpvol.hdr";

unsigned long vol_fork_gen;

/* Every open volume of the process, so that a forked child can repair its locks: the child
 * has one thread, and a lock that another parent thread held at the fork (a commit in a
 * background fsync thread, as redis has) would otherwise stay locked in the child forever. */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static scp_volume *registry[64];

/* Hold v->mu and every loaded file's rw and pc_mu. rw comes before mu in the lock order, so
 * under mu it is only tried; a busy file is waited for with mu released, holding the rws
 * already taken (no thread waits for a second rw) and a reference to each held file (so that
 * no close frees it meanwhile), and then the list, which may have changed, is walked again. */
static void fork_lock_volume(scp_volume *v) {
    pthread_mutex_lock(&v->mu);
again:
    for (scp_file *f = v->files; f; f = f->next) {
        if (f->fork_held) continue;
        f->refs++;
        f->fork_held = 1;
        if (pthread_rwlock_trywrlock(&f->rw) == 0) continue;
        pthread_mutex_unlock(&v->mu);
        pthread_rwlock_wrlock(&f->rw);
        pthread_mutex_lock(&v->mu);
        goto again;
    }
    /* mu has been held since the walk that found every file held: the list is complete */
    for (scp_file *f = v->files; f; f = f->next) pthread_mutex_lock(&f->pc_mu);
    /* A sole holder that forks without the shield's prepare (which ends the holding first:
     * sole_end): its deferred applies and table writes go to .d and .t now, while every file
     * is held, since the child may read them (docs/volume-format.md, "Sole holder"). Nothing
     * to do for anyone else. On an error they stay listed, for the parent's next commit. */
    for (scp_file *f = v->files; f && !v->shared; f = f->next)
        if (u64map_count(&f->dapply) || u64map_count(&f->unapplied)) (void)file_table_flush(f, NULL);
    /* Its deferred manifest-log records too: the child reloads the state from the log. */
    if (v->sole == SOLE_FRESH) (void)vol_mlog_defer_write(v, NULL);
    /* Kept descriptors of removed files' objects: the child would share their descriptions
     * (a writer lock taken through one later would be the child's too: file_own_d), and it
     * reuses none of the parent's ids. Both open them again if needed. */
    vol_kept_drop(v);
}

/* Drop the reference fork_lock_volume took. Nothing is freed here: a fork handler must not
 * call out of the library (the shield, which interposes munmap and close, holds its own lock
 * until its handler, which runs after this one). A file whose last handle was closed while
 * fork_lock_volume waited stays listed, as a closed file the cache keeps, until the cache
 * drops it. */
static void fork_unref_files(scp_volume *v) {
    for (scp_file *f = v->files; f; f = f->next) {
        assert(f->fork_held && f->refs > 0);
        f->fork_held = 0;
        f->refs--;
    }
}

/* The only writer of v->sole (enum vol_sole: its transitions). Caller holds v->mu, or is a
 * fork handler (the parent's holds it; the child's has one thread). */
static void sole_set(scp_volume *v, enum vol_sole to) {
    assert(to == SOLE_NO || (v->priv && !v->shared));
    assert(to == SOLE_NO || (v->sole == SOLE_NO && to == SOLE_DUE) ||
           (v->sole == SOLE_DUE && to == SOLE_FRESH && v->ofd_held));
    /* The holding ends: the deferred manifest-log records go to the log first, since another
     * process may open the volume from now on and catch up from it (manifest.c, mlog_defer).
     * (A fork's prepare wrote them before the fork: fork_lock_volume.) */
    if (to == SOLE_NO && v->sole == SOLE_FRESH && v->ml_defer_len) (void)vol_mlog_defer_write(v, NULL);
    v->sole = to;
}

static void fork_prepare(void) {
    pthread_mutex_lock(&registry_mu);
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        if (registry[i]) fork_lock_volume(registry[i]);
}

static void fork_parent(void) {
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++) {
        scp_volume *v = registry[i];
        if (!v) continue;
        for (scp_file *f = v->files; f; f = f->next) {
            pthread_mutex_unlock(&f->pc_mu);
            pthread_rwlock_unlock(&f->rw);
        }
        fork_unref_files(v);
        sole_set(v, SOLE_NO); /* a child may now have the volume open (its first call takes presence) */
        /* the child shares these descriptions until its first call: no lock through them from
         * now on (vol_lock_own, file_own_d) */
        v->lock_inherited = 1;
        for (scp_file *f = v->files; f; f = f->next) f->d_inherited = 1;
        pthread_mutex_unlock(&v->mu);
    }
    pthread_mutex_unlock(&registry_mu);
}

/* The child has one thread: every lock starts over (glibc's rwlock cannot be released by a
 * thread other than the one that took it). */
static void fork_child(void) {
    pthread_mutex_init(&registry_mu, NULL);
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++) {
        scp_volume *v = registry[i];
        if (!v) continue;
        pthread_mutex_init(&v->mu, NULL);
        /* (the parent's prepare wrote the deferred records; the child's first call catches up) */
        pthread_mutex_init(&v->ml_defer_mu, NULL);
        /* The parent's prepare wrote its deferred records to the log, or failing that a slot
         * (vol_mlog_defer_write); one that failed both left them in journals only, and the
         * child's repair then reads the journals as an open does. A parent that had not
         * repaired yet (forked_midway, still its own parent's) passes on what it was given. */
        int parent_in_log = !v->forked_midway || v->fork_in_log;
        v->fork_in_log = parent_in_log && !v->ml_defer_len && !v->ml_defer_bad &&
                         (v->ml_base >= 0 || v->ml_adopt >= 0);
        v->ml_defer_len = v->ml_defer_n = 0;
    pthread_mutex_init(&v->gc_mu, NULL);
    pthread_cond_init(&v->gc_cv, NULL);
        pthread_mutex_init(&v->gc_mu, NULL); /* idle: every committer holds a file's rw */
        pthread_cond_init(&v->gc_cv, NULL);
        v->gc_queue = NULL;
        v->gc_leader = 0;
        for (scp_file *f = v->files; f; f = f->next) {
            pthread_rwlock_init(&f->rw, NULL);
            pthread_mutex_init(&f->pc_mu, NULL);
            f->pc_pins = 0; /* pins belong to threads the child does not have */
            /* fork_prepare waits for every commit (it holds rw), so this is already idle; a
             * commit left half-way would trip commit_step's asserts at the child's first one */
            f->cstate = CS_IDLE;
            f->d_inherited = 0; /* (its repair takes its own: file_after_fork) */
        }
        v->lock_inherited = 0; /* (vol_check_fork) */
        for (scp_vfile *h = v->handles; h; h = h->hnext) pthread_mutex_init(&h->cur_mu, NULL);
        v->nspare = 0; /* the parent's: it may reuse them */
        fork_unref_files(v);
        v->forked_midway = 1; /* the first call repairs: vol_check_fork, fork_catch_up */
        sole_set(v, SOLE_NO); /* (the private lock is the parent's: vol_check_fork) */
    }
    __atomic_add_fetch(&vol_fork_gen, 1, __ATOMIC_RELAXED);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void atfork_init(void) {
    /* the crypto layer's handlers first, so that its prepare (the context list's lock, which a
     * committing thread takes while it holds its file's rw) runs after ours: see crypto.h */
    scp_crypto_atfork_register();
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static void registry_set(scp_volume *old, scp_volume *v) {
    pthread_mutex_lock(&registry_mu);
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        if (registry[i] == old) {
            registry[i] = v;
            break;
        }
    pthread_mutex_unlock(&registry_mu);
}


static int derive(const uint8_t key[32], const uint8_t volid[32], const char *label, uint8_t out[32],
                  scp_err *err) {
    return scp_hkdf(key, 32, volid, SCP_VOLID_LEN, label, strlen(label), out, 32, err);
}

static int header_mac(const uint8_t key[32], const uint8_t *hdr, uint8_t out[32], scp_err *err) {
    uint8_t k[32];
    if (derive(key, hdr + 16, SCP_LABEL_HEADER, k, err) < 0) return -1;
    struct scp_buf b = {hdr, SCP_VOLHDR_MAC_OFF};
    int rc = scp_hmac(k, 32, &b, 1, out, err);
    scp_wipe(k, sizeof k);
    return rc;
}

int vol_file_key(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], uint8_t key[32], scp_err *err) {
    return scp_derive_key(v->k_files, SCP_LABEL_FILE, id, SCP_FILEID_LEN, key, err);
}

const char *const vol_object_ext[VOL_NOBJECTS] = {".d", ".t", ".j", ".s"};

void vol_object_name(const uint8_t id[SCP_FILEID_LEN], const char *ext, char out[48]) {
    scp_hex(id, SCP_FILEID_LEN, out);
    strcat(out, ext);
}

static int write_new_file(int dirfd, const char *name, const void *buf, size_t n, scp_err *err) {
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return scp_fail_errno(err, "cannot create '%s' in the volume directory", name);
    int rc = 0;
    if (scp_write_full(fd, buf, n) < 0 || fsync(fd) < 0)
        rc = scp_fail_errno(err, "cannot write '%s'", name);
    close(fd);
    return rc;
}

int scp_volume_create(const char *dir, const uint8_t key[SCP_VOLUME_KEY_LEN], uint32_t chunk_size,
                      scp_err *err) {
    if (chunk_size == 0) chunk_size = SCP_VOLUME_DEFAULT_CHUNK;
    if (!scp_volume_chunk_ok(chunk_size))
        return scp_fail(err, SCP_E_INVAL, EINVAL,
                        "chunk size %u is invalid; use a power of two from 4096 to 65536",
                        chunk_size);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return scp_fail_errno(err, "cannot create volume directory '%s'", dir);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return scp_fail_errno(err, "cannot open volume directory '%s'", dir);
    DIR *d = fdopendir(dup(dfd));
    int nonempty = 0;
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) nonempty = 1;
        closedir(d);
    }
    if (nonempty) {
        close(dfd);
        return scp_fail(err, SCP_E_EXIST, EEXIST,
                        "'%s' is not empty; a volume must be created in a new or empty directory",
                        dir);
    }
    scp_volhdr h = {.version = SCP_FMT_VERSION, .chunk_size = chunk_size};
    uint8_t buf[SCP_VOLHDR_LEN];
    scp_volume v;
    memset(&v, 0, sizeof v);
    v.objfd = v.lockfd = v.slotfd[2] = v.mlog_fd = -1;
    v.mlog = 1;
    v.ml_base = v.ml_adopt = -1;
    int rc = scp_random(h.volid, sizeof h.volid, err);
    if (rc == 0) {
        scp_volhdr_encode(&h, buf);
        rc = header_mac(key, buf, h.mac, err);
    }
    if (rc == 0) {
        scp_volhdr_encode(&h, buf);
        rc = mkdirat(dfd, "objects", 0700) < 0 ? scp_fail_errno(err, "cannot create objects/") : 0;
    }
    /* The first manifest (generation 1, empty) goes to slot 1; slot 0 starts empty. */
    if (rc == 0) rc = write_new_file(dfd, "manifest.0", "", 0, err);
    if (rc == 0) rc = write_new_file(dfd, "manifest.1", "", 0, err);
    if (rc == 0) rc = write_new_file(dfd, "manifest.2", "", 0, err);
    if (rc == 0) rc = write_new_file(dfd, "manifest.log", "", 0, err);
    if (rc == 0) rc = write_new_file(dfd, "lock", "", 0, err);
    if (rc == 0) {
        v.dirfd = dfd;
        memcpy(v.volid, h.volid, SCP_VOLID_LEN);
        v.slotfd[0] = openat(dfd, "manifest.0", O_RDWR | O_CLOEXEC);
        v.slotfd[1] = openat(dfd, "manifest.1", O_RDWR | O_CLOEXEC);
        v.mlog_fd = openat(dfd, "manifest.log", O_RDWR | O_CLOEXEC);
        if (v.slotfd[0] < 0 || v.slotfd[1] < 0 || v.mlog_fd < 0)
            rc = scp_fail_errno(err, "cannot open manifest");
        if (rc == 0) rc = derive(key, h.volid, SCP_LABEL_MANIFEST, v.k_man, err);
        if (rc == 0) rc = derive(key, h.volid, SCP_LABEL_TAG, v.k_tag, err);
        if (rc == 0) rc = vol_commit_manifest(&v, 1, err);
        for (int i = 0; i < 2; i++)
            if (v.slotfd[i] >= 0) close(v.slotfd[i]);
        if (v.mlog_fd >= 0) close(v.mlog_fd);
        scp_manifest_free(&v.man);
        scp_manifest_free(&v.disk);
    }
    /* The header is written last: a directory without it is not a volume yet. */
    if (rc == 0) rc = write_new_file(dfd, HDR_NAME, buf, sizeof buf, err);
    if (rc == 0 && fsync(dfd) < 0) rc = scp_fail_errno(err, "cannot sync '%s'", dir);
    scp_wipe(&v, sizeof v);
    close(dfd);
    return rc;
}

/* The generation hint: a page of the lock file mapped shared, so that every process of the
 * volume on this machine sees it without a system call. A committer stores its new generation
 * there while it still holds the volume lock (vol_unlock); a reader whose generation equals the
 * hint skips the lock and the two slot-header reads. It is only a hint: the host can change it,
 * which at worst delays seeing another process's commit (as serving an older slot can) or makes
 * every lookup take the lock; what is read is still the authenticated manifest, and a write
 * never relies on it (the writer checks the manifest under the lock, vfile.c writer_refresh).
 * Old volumes have an empty lock file: it grows to one page here (only ever grown, never
 * shrunk). If the host truncates the file while it is mapped, the next lookup faults (SIGBUS):
 * the host can stop the program anyway. */
#define HINT_LEN (VOL_JEND_HINT_OFF + VOL_FILE_HINTS * 8) /* (grown from 16 KiB: journal end hints) */
static void hint_map(scp_volume *v) {
    /* Mapped through an open file description of its own, never v->lockfd's: a mapping keeps
     * its description alive, and with it every OFD lock taken through it, after the descriptor
     * is closed. A fork child inherits the mapping and keeps it after its repair (which closes
     * its copy of the parent's lock descriptor), so a parent killed inside a commit left the
     * volume lock held for as long as any child lived: the child's own next vol_lock, and
     * every other process's, waited forever (test_volume_forkstress's hang; volume_kill_locked).
     * No lock is ever taken on this description. */
    int fd = openat(v->dirfd, "lock", O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return;
    struct stat st;
    if (scp_fstat_notime(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        (st.st_size >= HINT_LEN || ftruncate(fd, HINT_LEN) == 0)) {
        void *m = mmap(NULL, HINT_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) v->hint = m;
    }
    close(fd);
}

static void vol_free(scp_volume *v) {
    vol_kept_drop(v);
    if (v->hint) munmap(v->hint, HINT_LEN);
    vol_fam_unmap(v);
    if (v->dirfd >= 0) close(v->dirfd);
    if (v->objfd >= 0) close(v->objfd);
    if (v->lockfd >= 0) close(v->lockfd);
    for (int i = 0; i < 3; i++)
        if (v->slotfd[i] >= 0) close(v->slotfd[i]);
    if (v->mlog_fd >= 0) close(v->mlog_fd);
    free(v->ml_pend);
    free(v->ml_defer);
    vol_mchg_off(v);
    scp_manifest_free(&v->man);
    scp_manifest_free(&v->disk);
    free(v->doomed);
    pthread_mutex_destroy(&v->mu);
    pthread_mutex_destroy(&v->ml_defer_mu);
    pthread_mutex_destroy(&v->gc_mu);
    pthread_cond_destroy(&v->gc_cv);
    scp_secure_free(v->file_mem, sizeof(scp_file)); /* (a freed file's memory, vfile.c) */
    scp_secure_free(v, sizeof *v);
    scp_crypto_forget_keys(); /* no thread's cached GCM context keeps this volume's keys */
}

/* Presence and private holders (docs/volume-format.md, "Concurrency": "Private after exec").
 * Every process that has the volume open holds a read lock on PRESENCE_BYTE of the lock file
 * through its own open file description (taken at open and again by a forked child with its
 * fresh description, vol_check_fork; dropped by the kernel with the description: close, exec,
 * exit, kill). A process that writes the volume privately although its family is shared
 * (scp_volume_go_private) holds a write lock on PRIVATE_BYTE for as long as it is private; a
 * process that opens the volume shared meanwhile (scp_volume_join_shared) sets the "shared
 * wanted" word (VOL_WANT_OFF, in the mapped page) and waits until it can take a read lock on
 * that byte, which the private one gives back only once it has committed what it wrote and
 * gone shared (scp_volume_private_end). Far beyond the bytes that other locks use (0: the
 * volume lock; 256, 257: lock bytes). */
#define PRESENCE_BYTE ((off_t)1 << 40)
#define PRIVATE_BYTE (PRESENCE_BYTE + 1)

static void presence_take(scp_volume *v) {
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = PRESENCE_BYTE, .l_len = 1};
    (void)fcntl(v->lockfd, F_OFD_SETLK, &fl); /* read locks never conflict with each other */
}

/* 1 when no other open file description holds a presence lock, 0 when one does or when it
 * cannot be told */
static int vol_alone(scp_volume *v) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = PRESENCE_BYTE, .l_len = 1};
    if (fcntl(v->lockfd, F_OFD_GETLK, &fl) < 0) return 0; /* cannot tell: not alone */
    return fl.l_type == F_UNLCK;
}

int vol_alone_now(scp_volume *v) { return v->sole == SOLE_FRESH || vol_alone(v); }

static int private_lock(scp_volume *v, short type, int cmd) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = PRIVATE_BYTE, .l_len = 1};
    return fcntl(v->lockfd, cmd, &fl);
}

static uint32_t *want_word(scp_volume *v) {
    assert(v->hint);
    return (uint32_t *)((char *)v->hint + VOL_WANT_OFF);
}

static void vol_lock_own(scp_volume *v);

int scp_volume_go_private(scp_volume *v) {
    pthread_mutex_lock(&v->mu);
    int ok = 0;
    /* The order makes two processes that open at once exclude each other: the lock first, then
     * the word cleared, then the presence test. A newcomer takes its presence lock before it
     * tries the read lock; if that try fails (this lock is held), either its presence came
     * before our test (we are not alone and let go: it then gets its read lock) or its
     * "wanted" store came after our clear (we see it). */
    if (v->lock_inherited) vol_lock_own(v); /* (a private lock a fork child would share) */
    if (v->hint && !v->shared && !v->priv && private_lock(v, F_WRLCK, F_OFD_SETLK) == 0) {
        __atomic_store_n(want_word(v), 0, __ATOMIC_SEQ_CST);
        if (vol_alone(v)) {
            ok = v->priv = 1;
            sole_set(v, SOLE_DUE); /* (the next vol_lock catches up: others may have committed before) */
        } else {
            (void)private_lock(v, F_UNLCK, F_OFD_SETLK);
        }
    }
    pthread_mutex_unlock(&v->mu);
    return ok;
}

int scp_volume_private_wanted(scp_volume *v) {
    return v->hint && __atomic_load_n(want_word(v), __ATOMIC_RELAXED) != 0;
}

void scp_volume_private_wait(scp_volume *v) { scp_volume_private_wait_until(v, NULL); }

/* Set when futex_waitv is missing (before Linux 5.16) or refused (a seccomp filter of the
 * program's own): the waits with a stop word then look at it every STOP_POLL_MS. */
static int waitv_missing;
#define STOP_POLL_MS 100

void scp_volume_private_wait_until(scp_volume *v, const int *stop) {
    if (!v->hint) return;
    uint32_t *w = want_word(v);
    while (__atomic_load_n(w, __ATOMIC_SEQ_CST) == 0 && !(stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE))) {
#if defined(SYS_futex_waitv) && defined(FUTEX_32)
        /* Both words in one wait: the kernel compares each with 0 after queueing on both, so
         * a stop set and woken (scp_volume_private_stop) after the look above is not lost, as
         * a wake of the shared word is when another process clears it again first. The shared
         * word's futex is on the file mapping (no FUTEX_PRIVATE_FLAG): the newcomer's wake
         * reaches it. */
        if (stop && !__atomic_load_n(&waitv_missing, __ATOMIC_RELAXED)) {
            struct futex_waitv fw[2] = {
                {.val = 0, .uaddr = (uintptr_t)w, .flags = FUTEX_32},
                {.val = 0, .uaddr = (uintptr_t)stop, .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG},
            };
            if (syscall(SYS_futex_waitv, fw, 2u, 0u, NULL, 0) >= 0 || errno == EAGAIN || errno == EINTR) continue;
            __atomic_store_n(&waitv_missing, 1, __ATOMIC_RELAXED);
        }
#endif
        if (stop) { /* (no waitv) the stop word looked at every STOP_POLL_MS */
            struct timespec ts = {0, STOP_POLL_MS * 1000000L};
            syscall(SYS_futex, w, FUTEX_WAIT, 0, &ts, NULL, 0);
        } else {
            syscall(SYS_futex, w, FUTEX_WAIT, 0, NULL, NULL, 0);
        }
    }
}

void scp_volume_private_stop(scp_volume *v, int *stop) {
    __atomic_store_n(stop, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, stop, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    /* without waitv the waiter sleeps on the shared word (other processes' waiters wake too,
     * look at it and sleep again) */
    if (__atomic_load_n(&waitv_missing, __ATOMIC_RELAXED) && v->hint)
        syscall(SYS_futex, want_word(v), FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* The end of the sole holding, before the private lock goes or the volume goes shared: no
 * commit defers its table writes from now on, and those deferred so far are written
 * (file_table_flush), since another process may then read a file's .t while this one still
 * holds its writer lock (docs/volume-format.md, "Sole holder"). Also what a fork left (it ends
 * the holding without this). Each file's rw is taken without v->mu (the lock order), under a
 * reference that keeps a close from freeing it meanwhile. Caller holds neither. */
static void sole_end(scp_volume *v) {
    pthread_mutex_lock(&v->mu);
    sole_set(v, SOLE_NO);
    /* (every loaded file: its unapplied set is its own to read, under its rw) */
    size_t n = 0, k = 0;
    for (scp_file *f = v->files; f && !v->shared; f = f->next) n++;
    scp_file **fs = n ? malloc(n * sizeof *fs) : NULL;
    for (scp_file *f = v->files; fs && f && k < n; f = f->next) {
        f->refs++;
        fs[k++] = f;
    }
    pthread_mutex_unlock(&v->mu);
    /* (out of memory: the logs still redo them, for any loader that can take the writer lock)
     * v->shared goes from 0 to 1 only after this (the callers set it), and back to 0 only in
     * scp_volume_try_sole, which its callers never run beside this one */
    for (size_t i = 0; i < k; i++) {
        pthread_rwlock_wrlock(&fs[i]->rw);
        if (!v->shared) (void)file_table_flush(fs[i], NULL);
        pthread_rwlock_unlock(&fs[i]->rw);
    }
    pthread_mutex_lock(&v->mu);
    for (size_t i = 0; i < k; i++) file_put(v, fs[i]);
    pthread_mutex_unlock(&v->mu);
    free(fs);
}

/* Caller holds v->mu. Under it no vol_lock is in progress, so the last commit of the sole
 * holder is complete on disk (its manifest-log record appended) before a newcomer gets in. */
static void private_drop(scp_volume *v) {
    assert(VOL_MU_HELD(v));
    if (!v->priv) return;
    /* The word set (and woken) before the lock goes, so that this process's own watcher
     * wakes and ends; a leftover mark with no private holder is cleared by the next one. */
    __atomic_store_n(want_word(v), 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, want_word(v), FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    sole_set(v, SOLE_NO); /* every vol_lock from now on takes the lock and catches up */
    (void)private_lock(v, F_UNLCK, F_OFD_SETLK);
    v->priv = 0;
}

/* Let a newcomer in: scp_volume_private_end once this process went shared (a newcomer gets in
 * only once this process commits every write at once), scp_volume_private_release outside
 * shared mode (a newcomer is another program, as two programs started separately are). */
static void private_let_go(scp_volume *v, int shared) {
    sole_end(v);
    pthread_mutex_lock(&v->mu);
    assert(!v->priv || v->shared == shared);
    (void)shared;
    private_drop(v);
    pthread_mutex_unlock(&v->mu);
}

void scp_volume_private_end(scp_volume *v) { private_let_go(v, 1); }

void scp_volume_private_release(scp_volume *v) { private_let_go(v, 0); }

/* A process that opens the volume waits here, after its presence lock and before it reads
 * anything, until no process holds the private lock: a private holder keeps uncommitted
 * writes and writer locks, and as the sole holder it does not catch up before its commits
 * (vol_lock), so nobody else may read or commit meanwhile. It asks the holder to let go (the
 * wanted word, which the holder's watcher sleeps on). */
static int private_wait_free(scp_volume *v, scp_err *err) {
    if (private_lock(v, F_RDLCK, F_OFD_SETLK) < 0) {
        if (errno != EAGAIN && errno != EACCES) return scp_fail_errno(err, "cannot test the volume's private lock");
        /* A private holder: ask it to go shared, and wait until it has. Without the mapped
         * word it would never know (it cannot be private without one itself, but this
         * process's mapping may have failed). */
        if (!v->hint) return scp_fail(err, SCP_E_BUSY, EBUSY, "another process writes the volume privately");
        __atomic_store_n(want_word(v), 1, __ATOMIC_SEQ_CST);
        syscall(SYS_futex, want_word(v), FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
        while (private_lock(v, F_RDLCK, F_OFD_SETLKW) < 0)
            if (errno != EINTR) return scp_fail_errno(err, "cannot wait for the volume's private writer");
    }
    (void)private_lock(v, F_UNLCK, F_OFD_SETLK);
    return 0;
}

int scp_volume_join_shared(scp_volume *v, scp_err *err) {
    assert(!v->priv);
    /* (scp_volume_open waited already; since then this process's presence lock keeps any
     * other from going private: checked again all the same, it costs two fcntl per open) */
    if (private_wait_free(v, err) < 0) return -1;
    scp_volume_set_shared(v);
    return 0;
}

/* Back to the sole holding (docs/volume-format.md, "Back to the sole holding"). */
int scp_volume_try_sole(scp_volume *v, scp_err *err) {
    /* (unlocked: only this call sets it back to 0, and its callers do not run it in two
     * threads at once, nor beside set_shared, private_end or close) */
    if (!v->hint || !__atomic_load_n(&v->shared, __ATOMIC_RELAXED)) return 0;
    /* The cheap test first, one F_OFD_GETLK: a process of a family that keeps its children (a
     * PostgreSQL backend) asks every so often, and should not take the cross-process lock for
     * it. Through our own description only (an unrepaired child shares an inherited one, and
     * its presence lock would not show through it: the full path moves off it first). */
    pthread_mutex_lock(&v->mu);
    int other = !v->lock_inherited &&
                __atomic_load_n(&v->fork_gen, __ATOMIC_RELAXED) ==
                    __atomic_load_n(&vol_fork_gen, __ATOMIC_RELAXED) &&
                !vol_alone(v);
    pthread_mutex_unlock(&v->mu);
    if (other) return 0;
    /* The cross-process lock and a catch-up first (and a fork child's repair, and the move
     * off a description that an unrepaired child shares: vol_lock_own). Held to the end, with
     * the mutex: no commit of this process or another runs meanwhile. */
    if (vol_lock(v, err) < 0) return -1;
    int rc = 0;
    size_t n = 0, k = 0;
    scp_file **fs = NULL;
    if (!v->shared || v->priv || v->lock_inherited || v->forked_midway || !v->ofd_held) goto out;
    /* Every open file held for writing, tried (lock order: rw before mu), so that nothing of
     * this process is half written or half committed; a busy one means another try later.
     * (Closed ones, which nobody reaches without the mutex, leave the cache below.) */
    for (scp_file *f = v->files; f; f = f->next) n += f->refs > 0;
    fs = n ? malloc(n * sizeof *fs) : NULL;
    if (n && !fs) goto out;
    for (scp_file *f = v->files; f; f = f->next) {
        if (f->refs == 0) continue;
        if (pthread_rwlock_trywrlock(&f->rw) != 0) goto release;
        fs[k++] = f;
        /* nothing uncommitted, no writer lock kept (shared mode lets go after each call), a
         * name to reload it by (an unlinked or nameless open file keeps shared mode) */
        if (f->modified || f->writer || f->cstate != CS_IDLE || f->unloaded || !f->path || f->nameless ||
            u64map_count(&f->dirty))
            goto release;
    }
    /* The private lock, then nobody else present, in go_private's order (a newcomer that took
     * its presence lock before our test makes us give up; one after it waits for the lock).
     * A fork child alive, repaired or not, holds a presence lock through a description other
     * than ours (vol_lock_own moved us off the inherited one): not alone. */
    if (private_lock(v, F_WRLCK, F_OFD_SETLK) != 0) goto release;
    __atomic_store_n(want_word(v), 0, __ATOMIC_SEQ_CST);
    if (!vol_alone(v)) {
        (void)private_lock(v, F_UNLCK, F_OFD_SETLK);
        goto release;
    }
    v->priv = 1;
    /* Everything durable first, still in shared mode, as an fsync of every file would: the
     * lazy commits (ours and the ones others made before they left) and the manifest's
     * scratch state. From then on the manifest in memory is a durable state, and no file's
     * state lives only in a log that a checkpoint may not start over. With them, what this
     * process followed past the named commits (R3's smallest form: the open files, held here,
     * and the closed ones, before they leave the cache). */
    struct past_names pn;
    (void)vol_past_name(v, fs, k, &pn);
    if (v->lazy && v->gen <= vol_durable_generation(v)) v->lazy = 0;
    if (pn.n || v->lazy || v->man_scratch || v->ndoomed > v->ndoomed_kept || v->objdir_dirty ||
        v->gen > vol_durable_generation(v)) {
        int crc = vol_commit_manifest(v, 1, err);
        if (pn.n) vol_past_named(v, &pn, crc == 0);
        if (crc < 0) {
            private_drop(v);
            rc = -1;
            goto release;
        }
    }
    assert(!v->man_scratch);
    file_cache_drop(v); /* (reloaded at their next open, by then in the ordinary mode) */
    /* The ordinary mode: each open file reloaded as a process that opens the volume now would
     * load it (file_leave_shared), then the holding, caught up (we hold the lock: FRESH). */
    v->shared = 0;
    rc = 1;
    for (size_t i = 0; i < k; i++)
        if (file_leave_shared(fs[i], rc == 1 ? err : NULL) < 0) rc = 2;
    sole_set(v, SOLE_DUE);
    sole_set(v, SOLE_FRESH);
release:
    for (size_t i = 0; i < k; i++) pthread_rwlock_unlock(&fs[i]->rw);
out:
    free(fs);
    vol_unlock(v);
    return rc == 2 ? 1 : rc;
}

void scp_volume_atfork_register(void) { pthread_once(&atfork_once, atfork_init); }

static void vol_open_fold(scp_volume *v);

/* scp_volume_open's opens: the first that failed, and its errno (read at once: a later call
 * may change errno). */
static void open_noted(int fd, const char *name, const char **missing, int *why) {
    if (fd < 0 && !*missing) {
        *missing = name;
        *why = errno;
    }
}

scp_volume *scp_volume_open(const char *dir, const uint8_t key[SCP_VOLUME_KEY_LEN],
                            const scp_volume_tag *expected, scp_err *err) {
    scp_volume *v = scp_secure_alloc(sizeof *v); /* holds keys: kept out of core dumps */
    if (!v) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    v->dirfd = v->objfd = v->lockfd = v->slotfd[0] = v->slotfd[1] = v->slotfd[2] = -1;
    v->mlog_fd = v->ml_base = v->ml_adopt = -1;
    pthread_mutex_init(&v->mu, NULL);
    pthread_mutex_init(&v->ml_defer_mu, NULL);
    pthread_once(&atfork_once, atfork_init);
    v->pid = getpid();
    v->fork_gen = __atomic_load_n(&vol_fork_gen, __ATOMIC_RELAXED);
    uint8_t *hb = NULL;
    size_t hl = 0;
    scp_volhdr h;
    uint8_t mac[32];
    v->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (v->dirfd < 0) {
        scp_fail_errno(err, "cannot open volume directory '%s'", dir);
        goto fail;
    }
    if (scp_read_file(v->dirfd, HDR_NAME, 4096, &hb, &hl, err) < 0) {
        if (err && err->sys == ENOENT)
            scp_fail(err, SCP_E_FORMAT, ENOENT,
                     "'%s' is not an SCP volume (no %s); create one with 'scpctl volume create'",
                     dir, HDR_NAME);
        goto fail;
    }
    if (scp_volhdr_parse(hb, hl, &h, err) < 0) goto fail;
    if (header_mac(key, hb, mac, err) < 0) goto fail;
    if (scp_ct_cmp(mac, h.mac, 32)) {
        scp_fail(err, SCP_E_KEY, EACCES,
                 "wrong key for volume '%s' (or its header was modified); check --key-file", dir);
        goto fail;
    }
    v->cs = h.chunk_size;
    v->mlog = h.version >= 3; /* format 2: every commit writes a whole slot, as before */
    memcpy(v->volid, h.volid, SCP_VOLID_LEN);
    if (derive(key, h.volid, SCP_LABEL_MANIFEST, v->k_man, err) < 0 ||
        derive(key, h.volid, SCP_LABEL_TAG, v->k_tag, err) < 0 ||
        derive(key, h.volid, SCP_LABEL_FILES, v->k_files, err) < 0)
        goto fail;
    /* (the first that fails, with its errno: a later call may change errno) */
    const char *missing = NULL;
    int why = 0;
    v->objfd = openat(v->dirfd, "objects", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    open_noted(v->objfd, "objects/", &missing, &why);
    v->lockfd = openat(v->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    open_noted(v->lockfd, "lock", &missing, &why);
    static const char *const slot_name[3] = {"manifest.0", "manifest.1", "manifest.2"};
    for (int i = 0; i < 3; i++) { /* manifest.2 is created here for volumes made before it */
        v->slotfd[i] = openat(v->dirfd, slot_name[i], O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
        open_noted(v->slotfd[i], slot_name[i], &missing, &why);
    }
    if (v->mlog) {
        v->mlog_fd = openat(v->dirfd, "manifest.log", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
        open_noted(v->mlog_fd, "manifest.log", &missing, &why);
    }
    if (missing) {
        if (why == EROFS || why == EACCES || why == EPERM) {
            /* A read-only mount (a backup, a container's ':ro' volume) or a directory this
             * user may not write: every open takes the lock file's locks and may recover or
             * fold, so a volume is opened read-write even to be read. Say so, rather than
             * calling the volume incomplete. */
            scp_fail(err, SCP_E_SYS, why,
                     "volume '%s' cannot be opened for writing (%s: %s); a volume is opened "
                     "read-write even to read it, so a read-only mount or directory does not "
                     "open: copy the volume to writable storage, or mount it read-write",
                     dir, missing, strerror(why));
        } else {
            scp_fail(err, SCP_E_SYS, why, "volume '%s' is incomplete (%s: %s)", dir, missing,
                     strerror(why));
        }
        goto fail;
    }
    hint_map(v);
    vol_fam_map(v); /* (SCP_VOLUME_FAMILY=1: before the first load, whose walk may use it) */
    presence_take(v);
    if (private_wait_free(v, err) < 0) goto fail;
    if (vol_lock(v, err) < 0) goto fail;
    vol_unlock(v);
    registry_set(NULL, v); /* a process with more than 64 volumes open repairs only 64 */
    /* Freshness before garbage collection: collection deletes every object that no slot names,
     * and in a rolled-back directory those are the newer state's, which the owner may still
     * recover from (copy the objects back with the newer slots). */
    if (expected) {
        uint64_t eg = scp_get_u64(expected->bytes);
        if (v->gen < eg) {
            scp_fail(err, SCP_E_ROLLBACK, EIO,
                     "volume '%s' is at generation %llu but generation %llu was expected: the "
                     "volume was rolled back to an older state",
                     dir, (unsigned long long)v->gen, (unsigned long long)eg);
            goto fail;
        }
        pthread_mutex_lock(&v->mu);
        vol_tags_settle(v);
        pthread_mutex_unlock(&v->mu);
        if (v->gen == eg && scp_ct_cmp(v->cur_tag.bytes, expected->bytes, SCP_VOLUME_TAG_LEN)) {
            scp_fail(err, SCP_E_INTEGRITY, EIO,
                     "volume '%s' has the expected generation %llu but another state: it was "
                     "replaced or forked",
                     dir, (unsigned long long)eg);
            goto fail;
        }
    }
    if (vol_lock(v, err) < 0) goto fail;
    /* Lazy commits are settled (made durable, or given up for the durable state) only by an
     * opener that is alone: another process present may be the one that made them, and
     * carries on from them (its next commit found "another process committed it", and a file
     * whose lazy state an ordinary load had applied in place no longer matched the durable
     * root it went back to: lost; test_volume_two_modes). A lazy state left by killed
     * processes is settled by the next open that finds nobody else, or made durable by the
     * next durable commit (lazy_sync). */
    int settled = vol_alone(v) ? vol_settle_lazy(v, err) : 0;
    if (settled == 0) vol_collect_garbage(v);
    if (settled == 0) vol_open_fold(v);
    vol_unlock(v);
    if (settled < 0) goto fail;
    free(hb);
    return v;
fail:
    registry_set(v, NULL);
    free(hb);
    vol_free(v);
    return NULL;
}

static int sync_pending(scp_volume *v, int all, scp_err *err);

int scp_volume_close(scp_volume *v, scp_err *err) {
    if (!v) return 0;
    int rc = 0;
    if (v->nhandles > 0)
        rc = scp_fail(err, SCP_E_BUSY, EBUSY,
                      "%ld file(s) of the volume were still open at close; their handles are now "
                      "invalid",
                      v->nhandles);
    registry_set(v, NULL);
    sole_end(v); /* (closed files kept with deferred table writes) */
    /* What this process followed past the named commits is named before its files go (R3's
     * smallest form): a later fold or opener would read the file as the manifest names it,
     * older than what this process read */
    pthread_mutex_lock(&v->mu);
    int past = 0;
    for (scp_file *f = v->files; f && !past; f = f->next) past = __atomic_load_n(&f->past, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&v->mu);
    if (past && vol_lock(v, NULL) == 0) {
        (void)vol_past_commit(v, NULL);
        vol_unlock(v);
    }
    pthread_mutex_lock(&v->mu);
    file_cache_drop(v);
    pthread_mutex_unlock(&v->mu);
    /* Only what this process left pending: a close after reads alone writes nothing. */
    if (sync_pending(v, 0, rc < 0 ? NULL : err) < 0) rc = -1;
    pthread_mutex_lock(&v->mu);
    vol_spare_drop(v);
    pthread_mutex_unlock(&v->mu);
    /* Format 3: a volume at rest keeps its state in a slot, its log empty (one whole write per
     * close that follows commits; a failure only leaves the log to be read at the next open). */
    if (rc == 0 && v->mlog && vol_lock(v, NULL) == 0) {
        (void)vol_fold_manifest(v, NULL);
        vol_unlock(v);
    }
    vol_free(v);
    return rc;
}

/* The rule of both folds below: a usable log with records in it, at least min bytes of them,
 * and more than `times` the manifest's encoded size (what a fold writes and the next opener
 * then reads instead of the log). O(entries) past the cheap tests. Caller holds mu. */
static int log_outweighs(scp_volume *v, uint64_t min, unsigned times) {
    assert(VOL_MU_HELD(v));
    if (!v->mlog || v->ml_base < 0 || v->ml_nrec == 0 || v->ml_end < SCP_MLOG_HDR_LEN + min)
        return 0;
    return v->ml_end - SCP_MLOG_HDR_LEN > times * (uint64_t)scp_manifest_encoded_len(&v->man);
}

/* An opener that walked a long log folds it for the next one (under the volume lock, at the
 * end of scp_volume_open). A shared family (git, make, a shell script on a volume) opens the
 * volume at every exec'd image, and each walked every record since the last fold, up to
 * 1 MiB: git walked a 755 KB log beside a 61 KB slot at each command (bench/RESULTS.md,
 * sessions 40 and 41). Due when the records pass VOL_OPEN_FOLD_MIN and twice the manifest's
 * encoded size (then the fold writes less than the walk read). The fold keeps the generation
 * and the tag, as a close's; it is a durable commit, as a close's (the listed journals and
 * the slot synced), and every other holder reloads the slot once at its next catch-up. A
 * fork child never opens (it catches up from its parent's state), so a server's processes
 * (PostgreSQL's backends) never fold this way: only a new image or program does. Best
 * effort: a failed fold leaves the log as it was, for the next opener to walk. */
#define VOL_OPEN_FOLD_MIN (64u << 10)
static void vol_open_fold(scp_volume *v) {
    assert(VOL_LOCK_HELD(v));
    if (log_outweighs(v, VOL_OPEN_FOLD_MIN, 2)) {
        VSTAT(open_fold);
        (void)vol_fold_manifest(v, NULL);
    }
}

/* Whether a fold at exit is due (caller holds mu): the sole holder's long log. */
static int exit_fold_due(scp_volume *v) {
    assert(VOL_MU_HELD(v));
    return v->priv && !v->shared && log_outweighs(v, SCP_VOLUME_EXIT_FOLD_MIN, 1);
}

int scp_volume_fold_at_exit(scp_volume *v, scp_err *err) {
    if (!v) return 0;
    pthread_mutex_lock(&v->mu);
    int due = exit_fold_due(v);
    pthread_mutex_unlock(&v->mu);
    if (!due) return 0;
    /* As the close: the sole holder's deferred table writes go to .t first (the fold ends the
     * holding's deferred records; a later load then redoes nothing), then the fold under the
     * volume lock. Still private: no newcomer is past its open meanwhile. */
    sole_end(v);
    if (vol_lock(v, err) < 0) return -1;
    due = exit_fold_due(v); /* (again under the lock: sole_end may have moved the log) */
    int rc = due ? vol_fold_manifest(v, err) : 0;
    vol_unlock(v);
    return rc < 0 ? -1 : due;
}

/* Take the cross-process lock (vlock.c: the mutex in the mapped lock page, or the OFD lock on
 * byte 0 of the lock file), waiting for it. */
static int ofd_lock(scp_volume *v, scp_err *err) {
    assert(VOL_MU_HELD(v));
    VSTAT(ofd_lock);
    /* (with the counters on, one try first: was it held by another process?) */
    int waited = 0;
    uint64_t t = VSTAT_T0();
    if (vol_vlock_take(v, vstat_on, &waited, err) < 0) return -1;
    if (waited) VSTAT(ofd_lock_wait);
    v->held_t0 = VSTAT_T0();
    if (waited && t && v->held_t0) {
        uint64_t d = v->held_t0 - t;
        VSTAT_ADD(ofd_wait_ns, d);
        if (vstat_role == VROLE_WRITE) VSTAT_ADD(ofd_wait_write_ns, d);
        else if (vstat_role == VROLE_READ) VSTAT_ADD(ofd_wait_read_ns, d);
        else if (vstat_role == VROLE_FSYNC) VSTAT_ADD(ofd_wait_fsync_ns, d);
    }
    return 0;
}

/* Until its first volume call (vol_check_fork) a fork child shares the parent's open file
 * descriptions, and an OFD lock lives as long as any copy of the description it was taken
 * through. A lock the parent took through lockfd after the fork, held when the parent died
 * (SIGKILL inside a commit), stayed held until that child made a volume call: every other
 * process, and the child too if it first waited for one of them (a pipe, a flock), waited for
 * ever (test_volume_forkstress with FORKSTRESS_LAZY; test_volume_fork_inherit). So the parent
 * takes a fresh description of the lock file before it takes any lock through it again
 * (fork_parent marks it), with its presence lock; the old description, now only the
 * unrepaired children's, keeps the presence lock the parent took through it, which stands for
 * them until their repair (so nobody holds the volume alone meanwhile: docs/volume-format.md,
 * "Fork repair"). dup3 onto the same number: a reader of lockfd (pread of the lists in the
 * lock file) never sees it closed. Not while this process is private: its private lock lives
 * on the old description and cannot move (a private holder's fork ends the holding first:
 * the shield's prepare), nor while it holds the volume lock (never: a fork waits for mu). On
 * an error the old one is kept and the move tried again at the next lock. Caller holds mu. */
static void vol_lock_own(scp_volume *v) {
    assert(VOL_MU_HELD(v));
    if (!v->lock_inherited || v->priv || v->ofd_held) return;
    int fd = openat(v->dirfd, "lock", O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return;
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = PRESENCE_BYTE, .l_len = 1};
    int ok = fcntl(fd, F_OFD_SETLK, &fl) == 0 && vol_vlock_own(v, fd, 0) == 0 &&
             dup3(fd, v->lockfd, O_CLOEXEC) >= 0;
    close(fd);
    if (ok) v->lock_inherited = 0;
}

void (*vol_test_fork_repair)(scp_volume *v);

/* f notes the state e names (e is f's entry, leaving) */
static void note_gone(scp_file *f, const scp_mentry *e) {
    memcpy(f->gone_root, e->root, SCP_HASH_LEN);
    f->gone_size = e->size;
    __atomic_store_n(&f->gone_known, 1, __ATOMIC_RELAXED); /* (read unlocked: file_refresh) */
}

void vol_note_leaving(scp_volume *v, const scp_mentry *e) {
    assert(VOL_MU_HELD(v));
    for (scp_file *f = v->files; f; f = f->next)
        if (f->refs > 0 && memcmp(f->id, e->id, SCP_FILEID_LEN) == 0) note_gone(f, e);
}

void vol_note_named(scp_volume *v) {
    assert(VOL_MU_HELD(v));
    for (scp_file *f = v->files; f; f = f->next) {
        long i = f->refs > 0 && f->path ? man_find(&v->man, f->path) : -1;
        if (i >= 0 && memcmp(v->man.e[i]->id, f->id, SCP_FILEID_LEN) == 0) note_gone(f, v->man.e[i]);
    }
}

/* After a refresh that found files removed or renamed by another process: each loaded file's
 * path as the manifest in memory names it (NULL: no longer named). Caller holds v->mu. */
static void files_rename(scp_volume *v) {
    assert(VOL_MU_HELD(v));
    for (scp_file *f = v->files; f; f = f->next) {
        char *np = NULL;
        for (size_t i = 0; i < v->man.n && !np; i++)
            if (memcmp(v->man.e[i]->id, f->id, SCP_FILEID_LEN) == 0) np = v->man.e[i]->path;
        free(f->path);
        f->path = np ? strdup(np) : NULL;
    }
}

/* A fork child's manifest, under the cross-process lock (vol_check_fork). The parent's fork
 * prepare held v->mu and every file's writer lock (fork_lock_volume), so the copy the child
 * has is a state the parent had between two calls: no commit half-way (fork_child sets each
 * file's commit state idle: the prepare waited for every commit), and, with fork_in_log,
 * every record of it in manifest.log up to ml_end or in the slot it continues (the prepare
 * wrote the sole holder's deferred records). What other
 * processes committed since is past ml_end: the child catches up from there as any process
 * does before a call (vol_refresh_manifest, which also takes in a dead one-flush committer's
 * record when the mark says so), instead of reading and walking the whole log from the slot
 * (up to 16,384 records: a PostgreSQL backend, forked per connection, spent 72-79 ms of its
 * start there, session 30). The inherited ml_dur_end and ml_pend stay true in the child: the
 * log's syncs and the journals they name are the volume's, not the process's. Without
 * fork_in_log (the prepare's write of deferred records failed: they are in journals only)
 * or a log the copy continues, the child loads again from generation 0, reading the listed
 * journals as an open does. */
static int fork_catch_up(scp_volume *v, scp_err *err) {
    if (v->fork_in_log && v->mlog && v->gen != 0 && v->ml_base >= 0) {
        assert(v->ml_defer_len == 0); /* (fork_child dropped them: the prepare wrote them) */
        VSTAT(fork_catch_up);
        int changed = vol_refresh_manifest(v, err);
        if (changed < 0) return -1;
        if (changed == 1) files_rename(v);
        return 0;
    }
    VSTAT(fork_reload);
    scp_manifest_free(&v->man);
    v->gen = 0;
    v->load_kind = VOL_LOAD_FORK_REPAIR;
    int rc = vol_load_manifest(v, err);
    v->load_kind = VOL_LOAD_ANY;
    if (rc == 0) files_rename(v);
    return rc;
}

int vol_check_fork(scp_volume *v, scp_err *err) {
    __atomic_store_n(&v->fork_gen, __atomic_load_n(&vol_fork_gen, __ATOMIC_RELAXED),
                     __ATOMIC_RELAXED);
    if (v->pid == getpid()) return 0;
    /* A forked child: its lock and file descriptors share open file descriptions (and so OFD
     * locks) with the parent. Take fresh ones so that the two processes exclude each other,
     * then repair the state under the fresh lock: the parent may be in the middle of a commit
     * (its in-place apply is under the lock), and a reload outside it can read a half-applied
     * table (redis's AOF rewrite child failed to open its file, 1 run in 30 under load). */
    int fd = openat(v->dirfd, "lock", O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return scp_fail_errno(err, "cannot reopen the volume lock after fork");
    /* The presence lock through the fresh description before the inherited one is closed: the
     * parent may have moved off that one already (vol_lock_own), and then the close drops the
     * presence lock that stood for this child. In between, the parent found nobody else
     * present, held the volume alone again (scp_volume_try_sole) and kept its writer locks,
     * and this child's first write waited for them while the parent waited for the child
     * (shield_ofd's forkwrite under ASan, session 28's CI; test_volume_resole "repair"). */
    int old = v->lockfd;
    v->lockfd = fd;
    presence_take(v);
    if (vol_vlock_own(v, fd, 1) < 0) {
        int e = errno;
        v->lockfd = old;
        close(fd);
        return scp_fail(err, SCP_E_SYS, e, "cannot lock the volume after fork: %s", strerror(e));
    }
    close(old);
    if (vol_test_fork_repair) vol_test_fork_repair(v);
    v->priv = 0;      /* and its private lock, if any (a fork's prepare ends it: sh_fork_share) */
    sole_set(v, SOLE_NO);
    v->pid = getpid();
    v->ofd_held = 0; /* the parent's */
    if (ofd_lock(v, err) < 0) return -1;
    int rc = 0;
    if (v->forked_midway) {
        v->forked_midway = 0;
        rc = fork_catch_up(v, err);
    }
    for (scp_file *f = v->files, *next; f && rc == 0; f = next) {
        next = f->next;
        rc = file_after_fork(f, err);
        if (rc == 1) { /* removed by another process: a closed one leaves the cache */
            rc = 0;
            if (f->refs == 0) file_unlist_free(v, f);
        }
    }
    vol_vlock_give(v);
    return rc;
}

static uint64_t *pub_word(scp_volume *v) { return v->hint + VOL_PUB_OFF / 8; }

uint64_t vol_pub_take(scp_volume *v) {
    if (!v->hint) return 0;
    /* (committers hold the volume lock: a mark taken under it is at or above every value
     * handed out before, and every later one is above it; the settle at an open holds it too) */
    assert(VOL_LOCK_HELD(v));
    uint64_t c;
    do /* (0 means "never checked": a counter the host wrapped skips it) */
        c = __atomic_add_fetch(pub_word(v), 1, __ATOMIC_ACQ_REL);
    while (c == 0);
    return c;
}

uint64_t vol_pub_mark(scp_volume *v) {
    if (!v->hint) return 0;
    assert(VOL_LOCK_HELD(v));
    uint64_t c = __atomic_load_n(pub_word(v), __ATOMIC_ACQUIRE);
    return c < VOL_PUB_LIMIT ? c : 0;
}

/* Before the cross-process lock is released: the manifest in memory is the newest (it is, under
 * the lock, unless loading it failed) as of the counter's value now, our mark. */
static void hint_publish(scp_volume *v) {
    __atomic_store_n(&v->pub_at, v->gen ? vol_pub_mark(v) : 0, __ATOMIC_RELEASE);
}

static void ofd_unlock(scp_volume *v, int publish) {
    if (publish) hint_publish(v);
    else __atomic_store_n(&v->pub_at, 0, __ATOMIC_RELEASE); /* (not known to be the newest) */
    v->ofd_held = 0;
    vol_vlock_give(v);
    VSTAT_T1(vol_hold_ns, v->held_t0);
}

static int vol_lock_run(scp_volume *v, scp_err *err);

int vol_lock(scp_volume *v, scp_err *err) {
    uint64_t t = VSTAT_T0();
    int rc = vol_lock_run(v, err);
    VSTAT_T1(vol_lock_ns, t);
    return rc;
}

static int vol_lock_run(scp_volume *v, scp_err *err) {
    uint64_t tm = VSTAT_T0();
    pthread_mutex_lock(&v->mu);
    VSTAT_T1(mu_wait_ns, tm);
    VSTAT(vol_lock);
    /* (no getpid when no fork happened since the descriptors were taken: the atfork child
     * handler moves vol_fork_gen, as vol_after_fork_check relies on) */
    if (__atomic_load_n(&v->fork_gen, __ATOMIC_RELAXED) !=
            __atomic_load_n(&vol_fork_gen, __ATOMIC_RELAXED) &&
        vol_check_fork(v, err) < 0)
        goto fail;
    /* The sole holder (a private process outside shared mode, docs/volume-format.md, "Sole
     * holder"): no other process has the volume open, and every process that opens it waits
     * in scp_volume_open, before it reads anything, until the private lock is released. So
     * nobody else commits, and the state this process caught up to under the cross-process
     * lock once it held the private lock, plus its own commits since, is the newest: neither
     * the lock nor another catch-up (two fcntl, an fstat and a pread per commit). */
    if (v->sole == SOLE_FRESH) {
        assert(v->priv && !v->shared && !v->forked_midway);
        VSTAT(vol_lock_sole);
        return 0;
    }
    if (v->lock_inherited) vol_lock_own(v);
    if (ofd_lock(v, err) < 0) goto fail;
    v->ofd_held = 1;
    int changed = vol_refresh_manifest(v, err);
    if (changed < 0) {
        ofd_unlock(v, 0);
        goto fail;
    }
    if (v->sole == SOLE_DUE) sole_set(v, SOLE_FRESH);
    if (changed == 1) files_rename(v); /* (another process renamed or removed files we have) */
    return 0;
fail:
    pthread_mutex_unlock(&v->mu);
    return -1;
}

int vol_fresh(scp_volume *v) {
    if (v->gen == 0 || v->forked_midway ||
        __atomic_load_n(&v->fork_gen, __ATOMIC_RELAXED) !=
            __atomic_load_n(&vol_fork_gen, __ATOMIC_RELAXED))
        return 0;
    if (v->hint) { /* (no announcement since our mark: nobody committed since) */
        uint64_t at = __atomic_load_n(&v->pub_at, __ATOMIC_ACQUIRE);
        return at != 0 && __atomic_load_n(pub_word(v), __ATOMIC_ACQUIRE) == at;
    }
    return vol_peek_generation(v) <= v->gen; /* no hint: the slot headers tell (two reads) */
}

/* Per-file hints (shared mode): slot h(id) of the lock file's second and third pages holds the
 * highest publication count (vol_pub_take) of a commit that named a file hashing there. A
 * reader whose state of a file was last checked at a count at or above its slot needs no
 * volume lock to know
 * that the file is unchanged, however many other files moved the volume's generation since:
 * PostgreSQL's backends read and size relations (lseek SEEK_END per relation per query)
 * while the WAL commits every transaction, and each such look-up waited for the volume lock,
 * held across the durable commit's flushes. Collisions only cost a needless refresh. Not
 * authenticated, like the generation hint: a host that lowers a slot delays seeing another
 * process's commit of that file, as a host that sets the generation hint can; writes never
 * rely on it (writer_refresh checks the manifest under the lock). */
static uint64_t *file_hint_slot(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]) {
    uint64_t h;
    memcpy(&h, id, sizeof h); /* (the id is random: its first bytes spread uniformly) */
    return v->hint + VOL_FILE_HINT_OFF / 8 + h % VOL_FILE_HINTS;
}

void vol_file_hint_bump(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]) {
    assert(VOL_LOCK_HELD(v));
    if (!v->hint) return;
    uint64_t gen = vol_pub_take(v), *s = file_hint_slot(v, id);
    /* Committers hold the volume lock, so this read-then-store cannot lose a newer value. */
    if (__atomic_load_n(s, __ATOMIC_RELAXED) < gen) __atomic_store_n(s, gen, __ATOMIC_RELEASE);
}

void vol_file_hints_bump_all(scp_volume *v) {
    if (!v->hint) return;
    uint64_t gen = vol_pub_take(v);
    for (size_t k = 0; k < VOL_FILE_HINTS; k++) {
        uint64_t *s = v->hint + VOL_FILE_HINT_OFF / 8 + k;
        if (__atomic_load_n(s, __ATOMIC_RELAXED) < gen) __atomic_store_n(s, gen, __ATOMIC_RELEASE);
    }
}

static uint64_t *jend_hint_slot(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]) {
    uint64_t h;
    memcpy(&h, id, sizeof h);
    return v->hint + VOL_JEND_HINT_OFF / 8 + h % VOL_FILE_HINTS;
}

/* A slot holds the end in its low 32 bits and a tag of the file's id in the high 32, so that
 * a value another file stored (the slots are shared by hashing) is told apart and read as "no
 * hint" (0), never as an end of ours: file_tail_moved skips its look when the hint equals its
 * end, and an equal end of another file's log made it miss a commit appended to ours
 * (test_volume_shared, jend_collision). An end past 32 bits is stored as no hint. */
static uint64_t jend_tag(const uint8_t id[SCP_FILEID_LEN]) {
    uint32_t t;
    memcpy(&t, id + 8, sizeof t); /* (bytes that the slot's index does not use) */
    return (uint64_t)t << 32;
}

/* (the appender holds the file's writer lock) */
void vol_jend_hint_set(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], uint64_t end) {
    if (v->hint)
        __atomic_store_n(jend_hint_slot(v, id), end >> 32 ? 0 : jend_tag(id) | end, __ATOMIC_RELEASE);
}

uint64_t vol_jend_hint(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]) {
    if (!v->hint) return 0;
    uint64_t h = __atomic_load_n(jend_hint_slot(v, id), __ATOMIC_ACQUIRE);
    return (h & ~(uint64_t)UINT32_MAX) == jend_tag(id) ? h & UINT32_MAX : 0;
}

int vol_file_unchanged(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], uint64_t seen) {
    if (!v->hint || seen == 0 || v->forked_midway ||
        __atomic_load_n(&v->fork_gen, __ATOMIC_RELAXED) !=
            __atomic_load_n(&vol_fork_gen, __ATOMIC_RELAXED))
        return 0;
    return __atomic_load_n(file_hint_slot(v, id), __ATOMIC_ACQUIRE) <= seen;
}

int vol_lock_read(scp_volume *v, scp_err *err) {
    pthread_mutex_lock(&v->mu);
    if (vol_fresh(v)) return 0;
    pthread_mutex_unlock(&v->mu);
    return vol_lock(v, err);
}

void vol_unlock(scp_volume *v) {
    if (v->ofd_held) ofd_unlock(v, 1);
    else if (v->sole == SOLE_FRESH) hint_publish(v); /* (for after the release: vol_fresh) */
    pthread_mutex_unlock(&v->mu);
}

void scp_volume_tag_get(scp_volume *v, scp_volume_tag *out) {
    pthread_mutex_lock(&v->mu);
    vol_tags_settle(v);
    *out = v->tag;
    pthread_mutex_unlock(&v->mu);
}

void scp_volume_tag_hex(const scp_volume_tag *tag, char out[2 * SCP_VOLUME_TAG_LEN + 1]) {
    scp_hex(tag->bytes, SCP_VOLUME_TAG_LEN, out);
}

int scp_volume_tag_parse(const char *hex, scp_volume_tag *out, scp_err *err) {
    if (scp_unhex(hex, out->bytes, SCP_VOLUME_TAG_LEN) < 0)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "a volume tag is %d hex digits",
                        2 * SCP_VOLUME_TAG_LEN);
    return 0;
}

/* A backing object that a root process creates in a store handed to another user (the shield
 * does that when a program drops privileges, docs/shield.md) goes to that user as well, so that
 * every process of the run still reaches every object. Best effort: on failure the object
 * stays root's, and a process of that user gets EACCES on it, as before. */
void vol_objects_owner(scp_volume *v, const int *fd, int n) {
    if (geteuid() != 0) return;
    struct stat ds;
    if (scp_fstat_notime(v->objfd, &ds) < 0 || ds.st_uid == 0) return;
    for (int k = 0; k < n; k++) (void)fchown(fd[k], ds.st_uid, ds.st_gid);
}

void vol_object_owner(scp_volume *v, int fd) { vol_objects_owner(v, &fd, 1); }

void scp_volume_refresh(scp_volume *v) {
    if (!v || !v->shared) return;
    pthread_mutex_lock(&v->mu);
    int fresh = vol_fresh(v);
    pthread_mutex_unlock(&v->mu);
    if (!fresh && vol_lock(v, NULL) == 0) vol_unlock(v);
}

void scp_volume_set_lazy_close(scp_volume *v, int on) {
    pthread_mutex_lock(&v->mu);
    v->lazy_close = on != 0;
    pthread_mutex_unlock(&v->mu);
}

void scp_volume_set_shared(scp_volume *v) {
    sole_end(v); /* (outside shared mode the unapplied set means deferred table writes) */
    pthread_mutex_lock(&v->mu);
    sole_set(v, SOLE_NO); /* (shared mode's catch-up takes in what it needs: pend_walked) */
    v->shared = 1;
    vol_spare_drop(v); /* (processes share the volume: the id is only this one's to reuse) */
    /* A writer lock held from before (a write of this process, committed since) would make
     * every other process's shared write wait until this one writes again or closes: a shell
     * that wrote to a redirection and then waits for the child it started on the same file
     * would wait forever. Let go of it where nothing is uncommitted; a file busy in another
     * thread is left alone (its next shared write publishes and releases it). Under mu a
     * file's rw is only tried (lock order, above). */
    for (scp_file *f = v->files; f; f = f->next) {
        if (!f->writer || pthread_rwlock_trywrlock(&f->rw) != 0) continue;
        if (f->writer && !f->modified && f->cstate == CS_IDLE) {
            file_writer_unlock(f);
            f->writer = 0;
            f->j_clean = 0; /* the next writer appends to our log (file_follow) */
        }
        pthread_rwlock_unlock(&f->rw);
    }
    pthread_mutex_unlock(&v->mu);
}

void scp_volume_on_commit(scp_volume *v, scp_volume_commit_cb cb, void *ctx) {
    pthread_mutex_lock(&v->mu);
    v->cb = cb;
    v->cb_ctx = ctx;
    pthread_mutex_unlock(&v->mu);
}

/* Size of a file as this process sees it: uncommitted writes included. */
static uint64_t live_size(scp_volume *v, const scp_mentry *e) {
    for (scp_file *f = v->files; f; f = f->next)
        if (memcmp(f->id, e->id, SCP_FILEID_LEN) == 0) return __atomic_load_n(&f->size, __ATOMIC_RELAXED);
    return e->size;
}

static void fill_stat(scp_volume *v, const scp_mentry *e, scp_vstat *st) {
    memset(st, 0, sizeof *st);
    st->type = e->type == SCP_MTYPE_DIR    ? SCP_VTYPE_DIR
               : e->type == SCP_MTYPE_NODE ? SCP_VTYPE_NODE
               : e->type == SCP_MTYPE_LINK ? SCP_VTYPE_LINK
                                           : SCP_VTYPE_FILE;
    st->size = e->type == SCP_MTYPE_FILE ? live_size(v, e) : e->type == SCP_MTYPE_LINK ? e->size : 0;
    if (e->type == SCP_MTYPE_NODE) {
        st->node_type = e->mode & S_IFMT;
        st->rdev = e->size;
    }
    st->mode = e->mode & 07777;
    st->owner_unset = e->type == 2 && !(e->mode & SCP_MODE_OWNED);
    st->uid = e->uid;
    st->gid = e->gid;
    st->mtime_ns = e->mtime_ns;
    st->ctime_ns = e->ctime_ns;
    st->atime_ns = e->atime_ns;
    st->ino = scp_get_u64(e->id) >> 1;
    st->nlink = e->type == SCP_MTYPE_DIR ? 2 : e->nlink ? e->nlink : 1;
}

int scp_volume_info_get(scp_volume *v, scp_volume_info *out, scp_err *err) {
    if (vol_lock(v, err) < 0) return -1;
    memset(out, 0, sizeof *out);
    out->format_version = v->mlog ? SCP_FMT_VERSION : SCP_FMT_VERSION_MIN;
    out->chunk_size = v->cs;
    out->generation = v->gen;
    vol_tags_settle(v);
    out->tag = v->cur_tag;
    for (size_t i = 0; i < v->man.n; i++) {
        if (v->man.e[i]->type == SCP_MTYPE_DIR) {
            out->dir_count += !scp_is_root_entry(v->man.e[i]->path);
        } else if (v->man.e[i]->type == SCP_MTYPE_FILE &&
                   (v->man.e[i]->nlink <= 1 || man_find_id(&v->man, v->man.e[i]->id, -1) == (long)i)) {
            out->file_count++; /* a file with several names (hard links) once */
            out->total_bytes += v->man.e[i]->size;
        }
    }
    vol_unlock(v);
    return 0;
}

static int norm(const char *in, char *out, scp_err *err) {
    return scp_path_normalize(in, out, SCP_MAX_PATH + 1, err);
}

/* The error for a path that has no entry (caller holds the volume lock): ENOTDIR when one of
 * its ancestors is not a directory (as the kernel says for "file/x"), otherwise ENOENT. */
static int missing(scp_volume *v, const char *path, scp_err *err) {
    assert(VOL_MU_HELD(v));
    char pre[SCP_MAX_PATH + 1];
    for (const char *s = strchr(path, '/'); s; s = strchr(s + 1, '/')) {
        memcpy(pre, path, (size_t)(s - path));
        pre[s - path] = '\0';
        long i = man_find(&v->man, pre);
        if (i < 0) break;
        if (v->man.e[i]->type != SCP_MTYPE_DIR)
            return scp_fail(err, SCP_E_NOTDIR, ENOTDIR, "'%s' is not a directory", pre);
    }
    return scp_fail(err, SCP_E_NOENT, ENOENT, "'%s' does not exist in the volume", path);
}

/* Check that the parent of path exists and is a directory (caller holds vol_lock). */
static int check_parent(scp_volume *v, const char *path, scp_err *err) {
    assert(VOL_LOCK_HELD(v));
    const char *slash = strrchr(path, '/');
    if (!slash) return 0;
    char parent[SCP_MAX_PATH + 1];
    memcpy(parent, path, (size_t)(slash - path));
    parent[slash - path] = '\0';
    long i = man_find(&v->man, parent);
    if (i < 0) return missing(v, parent, err);
    if (v->man.e[i]->type != 2)
        return scp_fail(err, SCP_E_NOTDIR, ENOTDIR, "'%s' is not a directory", parent);
    return 0;
}


/* A directory's link count as the kernel gives it: 2 (its name and its ".") and one for the
 * ".." of each subdirectory. Walks its children only, past each child directory's subtree
 * (vol_man_next_child). */
static uint32_t dir_nlink(const scp_manifest *m, const char *path) {
    size_t pl = strlen(path), lo = pl ? vol_man_below(m, path) : 0, sub = 0;
    for (size_t k = lo; k < m->n; k = vol_man_next_child(m, pl ? pl + 1 : 0, k)) {
        const char *q = m->e[k]->path;
        if (pl && (strncmp(q, path, pl) != 0 || q[pl] != '/')) break;
        if (m->e[k]->type == SCP_MTYPE_DIR && !strchr(q + (pl ? pl + 1 : 0), '/')) sub++;
    }
    return sub > UINT32_MAX - 2 ? UINT32_MAX : (uint32_t)(2 + sub);
}

static int stat_path(scp_volume *v, const char *path, scp_vstat *st, int nlink, scp_err *err) {
    char p[SCP_MAX_PATH + 1];
    if (norm(path, p, err) < 0) return -1;
    if (vol_lock_read(v, err) < 0) return -1;
    int rc = 0;
    if (p[0] == '\0') {
        long i = man_find(&v->man, SCP_ROOT_ENTRY);
        if (i >= 0) {
            fill_stat(v, v->man.e[i], st);
            st->ino = 0; /* (as before it had an entry) */
        } else {
            memset(st, 0, sizeof *st);
            st->type = SCP_VTYPE_DIR;
            st->mode = 0755;
            st->owner_unset = 1;
        }
        st->nlink = nlink ? dir_nlink(&v->man, "") : 0;
    } else {
        long i = man_find(&v->man, p);
        if (i < 0) rc = missing(v, p, err);
        else fill_stat(v, v->man.e[i], st);
        if (i >= 0 && st->type == SCP_VTYPE_DIR) st->nlink = nlink ? dir_nlink(&v->man, p) : 0;
    }
    vol_unlock(v);
    return rc;
}

int scp_volume_stat(scp_volume *v, const char *path, scp_vstat *st, scp_err *err) {
    return stat_path(v, path, st, 1, err);
}

int scp_volume_attrs(scp_volume *v, const char *path, scp_vstat *st, scp_err *err) {
    return stat_path(v, path, st, 0, err);
}

/* A new entry without objects (a directory or a node): mode as stored, size as given. */
static int make_entry(scp_volume *v, const char *path, uint8_t type, uint32_t mode, uint64_t size,
                      const char *target, scp_err *err) {
    char p[SCP_MAX_PATH + 1];
    if (norm(path, p, err) < 0) return -1;
    if (p[0] == '\0') return scp_fail(err, SCP_E_EXIST, EEXIST, "the volume root already exists");
    if (vol_lock(v, err) < 0) return -1;
    int rc = check_parent(v, p, err);
    if (rc == 0 && man_find(&v->man, p) >= 0)
        rc = scp_fail(err, SCP_E_EXIST, EEXIST, "'%s' already exists in the volume", p);
    int64_t now = scp_now_ns();
    man_dtimes dt = {0, 0};
    scp_mentry e = {.type = type, .mode = mode | SCP_MODE_OWNED, .size = size, .mtime_ns = now,
                    .ctime_ns = now, .atime_ns = now, .uid = (uint32_t)geteuid(), .gid = (uint32_t)getegid()};
    if (rc == 0) rc = scp_random(e.id, SCP_FILEID_LEN, err);
    if (rc == 0 && (!(e.path = strdup(p)) || (target && !(e.target = strdup(target)))))
        rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    if (rc < 0) {
        free(e.path);
        free(e.target);
    } else if (vol_man_create(v, &e, now, &dt, err) < 0) {
        free(e.path);
        free(e.target);
        rc = -1;
    }
    if (rc == 0 && vol_commit_manifest(v, 0, err) < 0) {
        man_remove(&v->man, (size_t)man_find(&v->man, p));
        man_parent_untouch(&v->man, p, dt);
        rc = -1;
    }
    vol_unlock(v);
    return rc;
}

int scp_volume_mkdir(scp_volume *v, const char *path, uint32_t mode, scp_err *err) {
    return make_entry(v, path, SCP_MTYPE_DIR, mode & 07777, 0, NULL, err);
}

int scp_volume_mknod(scp_volume *v, const char *path, uint32_t mode, uint64_t rdev, scp_err *err) {
    if (!scp_node_type_ok(mode))
        return scp_fail(err, SCP_E_INVAL, EINVAL, "not a FIFO, socket or device node type");
    return make_entry(v, path, SCP_MTYPE_NODE, mode & (S_IFMT | 07777), rdev, NULL, err);
}

int scp_volume_symlink(scp_volume *v, const char *target, const char *path, scp_err *err) {
    size_t tl = strlen(target);
    if (tl == 0) return scp_fail(err, SCP_E_NOENT, ENOENT, "empty symbolic link target");
    if (tl > SCP_MAX_PATH) return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "symbolic link target too long");
    return make_entry(v, path, SCP_MTYPE_LINK, 0777, tl, target, err);
}

long scp_volume_readlink(scp_volume *v, const char *path, char *buf, size_t size, scp_err *err) {
    char p[SCP_MAX_PATH + 1];
    if (norm(path, p, err) < 0) return -1;
    if (vol_lock_read(v, err) < 0) return -1;
    long i = p[0] ? man_find(&v->man, p) : -1, rc;
    if (i < 0 && p[0]) rc = missing(v, p, err);
    else if (i < 0 || v->man.e[i]->type != SCP_MTYPE_LINK)
        rc = scp_fail(err, SCP_E_INVAL, EINVAL, "'%s' is not a symbolic link", p);
    else {
        rc = (long)strlen(v->man.e[i]->target);
        memcpy(buf, v->man.e[i]->target, (size_t)rc < size ? (size_t)rc : size);
    }
    vol_unlock(v);
    return rc;
}

long scp_volume_first_link(scp_volume *v, const char *path, int follow_last, char *target,
                           size_t tsize, scp_err *err) {
    char p[SCP_MAX_PATH + 1];
    if (norm(path, p, err) < 0) return -1;
    if (!p[0]) return 0;
    if (vol_lock_read(v, err) < 0) return -1;
    long rc = 0;
    size_t n = strlen(p);
    for (size_t end = 0; end < n && rc == 0;) {
        const char *s = strchr(p + end + 1, '/');
        end = s ? (size_t)(s - p) : n;
        if (end == n && !follow_last) break;
        char c = p[end];
        p[end] = '\0';
        long i = man_find(&v->man, p);
        p[end] = c;
        if (i < 0) break;
        const scp_mentry *e = v->man.e[i];
        if (e->type == SCP_MTYPE_LINK) {
            if (strlen(e->target) >= tsize)
                rc = scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "symbolic link target too long");
            else {
                strcpy(target, e->target);
                rc = (long)end;
            }
        } else if (e->type != SCP_MTYPE_DIR) {
            break;
        }
    }
    vol_unlock(v);
    return rc;
}

/* Remove manifest entry i and commit; on failure the entry is put back. The removed entry's id
 * is copied to id_out if not NULL (caller holds vol_lock). */
static int remove_committed(scp_volume *v, size_t i, uint8_t id_out[SCP_FILEID_LEN],
                            scp_err *err) {
    assert(VOL_LOCK_HELD(v));
    scp_mentry saved;
    if (man_entry_dup(&saved, v->man.e[i], NULL) < 0)
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    int64_t now = scp_now_ns();
    int usable = vol_mchg_usable(v); /* (before any change: vol_man_name_changed) */
    man_remove(&v->man, i);
    /* the file's other names, if any (a name of its own, nlink 1: none to look for) */
    long other = -1;
    if (saved.nlink != 1) {
        man_links_add(&v->man, saved.id, -1);
        other = saved.type == SCP_MTYPE_DIR ? -1 : man_find_id(&v->man, saved.id, -1);
    }
    if (other >= 0) man_ctime_touch(&v->man, (size_t)other, now); /* its link count changed */
    man_dtimes dt = man_parent_touch(&v->man, saved.path, now);
    vol_man_name_changed(v, usable, saved.path, saved.id, other >= 0);
    if (vol_commit_manifest(v, 0, err) < 0) {
        man_parent_untouch(&v->man, saved.path, dt);
        if (other >= 0) man_ctime_touch(&v->man, (size_t)other, saved.ctime_ns);
        if (saved.nlink != 1) man_links_add(&v->man, saved.id, 1);
        man_insert(&v->man, &saved, NULL); /* cannot fail: the array had room for it */
        return -1;
    }
    if (id_out) memcpy(id_out, saved.id, SCP_FILEID_LEN);
    man_entry_clear(&saved);
    return 0;
}

int scp_volume_rmdir(scp_volume *v, const char *path, scp_err *err) {
    char p[SCP_MAX_PATH + 1];
    if (norm(path, p, err) < 0) return -1;
    if (p[0] == '\0') return scp_fail(err, SCP_E_INVAL, EBUSY, "cannot remove the volume root");
    if (vol_lock(v, err) < 0) return -1;
    long i = man_find(&v->man, p);
    int rc = 0;
    if (i < 0) rc = missing(v, p, err);
    else if (v->man.e[i]->type != 2)
        rc = scp_fail(err, SCP_E_NOTDIR, ENOTDIR, "'%s' is not a directory", p);
    else if (man_has_child(&v->man, p))
        rc = scp_fail(err, SCP_E_NOTEMPTY, ENOTEMPTY, "directory '%s' is not empty", p);
    if (rc == 0) rc = remove_committed(v, (size_t)i, NULL, err);
    vol_unlock(v);
    return rc;
}

/* Remove a file's objects, or mark its loaded state unlinked so that the last close removes
 * them (caller holds vol->mu). */
static void drop_objects(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]) {
    assert(VOL_MU_HELD(v));
    for (scp_file *f = v->files; f; f = f->next)
        if (memcmp(f->id, id, SCP_FILEID_LEN) == 0) {
            free(f->path);
            f->path = NULL;
            if (f->refs == 0) file_unlist_free(v, f); /* only cached: delete now */
            return;
        }
    vol_doom_objects(v, id);
}

/* Name `path` of the file `id` is gone from the manifest (caller holds vol->mu): if the file
 * has another name (a hard link), a loaded state that went by this one goes by that one now;
 * otherwise its objects go (drop_objects). */
static void name_gone(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], const char *path) {
    assert(VOL_MU_HELD(v));
    long other = man_find_id(&v->man, id, -1);
    if (other < 0) {
        drop_objects(v, id);
        return;
    }
    for (scp_file *f = v->files; f; f = f->next)
        if (memcmp(f->id, id, SCP_FILEID_LEN) == 0 && f->path && strcmp(f->path, path) == 0) {
            char *np = strdup(v->man.e[other]->path);
            if (np) { /* (else it keeps the old name: its commits then fail to find an entry) */
                free(f->path);
                f->path = np;
            }
        }
}

_Static_assert(sizeof ((struct vol_kept *)0)->fd / sizeof(int) == VOL_NOBJECTS,
               "a kept entry holds one descriptor per object");

static void kept_close_at(scp_volume *v, size_t i) {
    for (int k = 0; k < VOL_NOBJECTS; k++)
        if (v->kept[i].fd[k] >= 0) close(v->kept[i].fd[k]);
    memmove(&v->kept[i], &v->kept[i + 1], (v->nkept - i - 1) * sizeof v->kept[0]);
    v->nkept--;
}

/* A removed file's objects stay open from its freed state to the create that adopts its id
 * (adopt_spare in vfile.c): sqlite's rollback journal, created and removed per transaction,
 * cost each set of objects opened twice (checked, then loaded) and closed twice, four calls
 * per object with the shield's move of each new descriptor. The descriptors hold no lock
 * (the writer's goes at its last close, before the state is freed). Not in shared mode, where
 * the ids are not reused. */
void vol_kept_put(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], const int *fd) {
    assert(VOL_MU_HELD(v));
    if (v->shared) {
        for (int k = 0; k < VOL_NOBJECTS; k++)
            if (fd[k] >= 0) close(fd[k]);
        return;
    }
    if (v->nkept == VOL_KEPT_MAX) kept_close_at(v, 0);
    memcpy(v->kept[v->nkept].id, id, SCP_FILEID_LEN);
    memcpy(v->kept[v->nkept].fd, fd, sizeof v->kept[0].fd);
    v->nkept++;
}

int vol_kept_take(scp_volume *v, const uint8_t id[SCP_FILEID_LEN], int *fd) {
    assert(VOL_MU_HELD(v));
    for (size_t i = 0; i < v->nkept; i++)
        if (memcmp(v->kept[i].id, id, SCP_FILEID_LEN) == 0) {
            memcpy(fd, v->kept[i].fd, sizeof v->kept[0].fd);
            for (int k = 0; k < VOL_NOBJECTS; k++) v->kept[i].fd[k] = -1;
            kept_close_at(v, i);
            return 1;
        }
    return 0;
}

void vol_kept_close(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]) {
    for (size_t i = 0; i < v->nkept; i++)
        if (memcmp(v->kept[i].id, id, SCP_FILEID_LEN) == 0) {
            kept_close_at(v, i);
            return;
        }
}

void vol_kept_drop(scp_volume *v) {
    while (v->nkept > 0) kept_close_at(v, v->nkept - 1);
}

static void unlink_objects(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]) {
    vol_kept_close(v, id);
    for (int k = 0; k < VOL_NOBJECTS; k++) {
        char name[48];
        vol_object_name(id, vol_object_ext[k], name);
        unlinkat(v->objfd, name, 0);
    }
}

/* Until the removal is durable, a power cut can bring the file back: its objects must still
 * be there then. So they go after the next durable commit, and the lock file says that some
 * may be left behind (a process that exits without closing the volume, a crash) for the next
 * opener's garbage collection. */
void vol_doom_objects(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]) {
    if (v->ndoomed == v->doomcap) {
        size_t ncap = v->doomcap ? 2 * v->doomcap : 8;
        void *nd = realloc(v->doomed, ncap * sizeof *v->doomed);
        if (!nd) return; /* an orphan, collected later */
        v->doomed = nd;
        v->doomcap = ncap;
    }
    memcpy(v->doomed[v->ndoomed++], id, SCP_FILEID_LEN);
    vol_lockbyte_set(v, VOL_LOCKBYTE_DOOMED, 1);
}

/* Whether this process has the file `id` loaded (caller holds mu). */
static int vol_file_loaded(scp_volume *v, const uint8_t id[SCP_FILEID_LEN]) {
    assert(VOL_MU_HELD(v));
    for (scp_file *f = v->files; f; f = f->next)
        if (memcmp(f->id, id, SCP_FILEID_LEN) == 0) return 1;
    return 0;
}

/* Delete the kept objects (caller holds mu): at close, in a fork child (which must not reuse
 * the parent's), and when the volume turns shared. A process that dies with a spare leaves
 * it to the next opener's collection (the lock file's flag, set when it was doomed). */
void vol_spare_drop(scp_volume *v) {
    assert(VOL_MU_HELD(v));
    while (v->nspare > 0) unlink_objects(v, v->spare[--v->nspare]);
    vol_kept_drop(v); /* (and those of ids still doomed) */
}

void vol_doomed_drain(scp_volume *v) {
    size_t k = 0;
    for (size_t i = 0; i < v->ndoomed; i++) {
        if (v->doom_keep_listed && vol_jlist_has(v, v->doomed[i])) {
            memmove(v->doomed[k++], v->doomed[i], SCP_FILEID_LEN); /* (for a later drain) */
            continue;
        }
        /* Outside shared mode, a removed file whose removal is now durable keeps its
         * objects for the next file created (create_objects): sqlite's rollback journal is
         * created and removed once per transaction, and each new set of objects cost three
         * inodes and a sync of the objects directory. No durable state names the id any more
         * (this drain follows the commit that made the removal durable), so no power cut
         * brings back a file that the next one's writes would clobber. */
        if (v->nspare < VOL_SPARE_MAX && !v->shared && !vol_file_loaded(v, v->doomed[i])) {
            memcpy(v->spare[v->nspare++], v->doomed[i], SCP_FILEID_LEN);
            continue;
        }
        unlink_objects(v, v->doomed[i]);
    }
    v->ndoomed = v->ndoomed_kept = k;
}

/* A durable commit if this process has namespace work pending durability, or (all) if the
 * newest state, whoever wrote it, is only in the scratch slot. */
static int sync_pending(scp_volume *v, int all, scp_err *err) {
    if (vol_lock(v, err) < 0) return -1;
    int rc = 0;
    /* Our lazy commits are durable once a durable commit of any process followed them (it
     * synced every listed journal and names their roots): PostgreSQL's backends fsync the WAL
     * one after another, and each one whose write the previous flush covered paid a manifest
     * write and its flush of nothing new. */
    if (v->lazy && v->gen <= vol_durable_generation(v)) v->lazy = 0;
    if (v->lazy || v->ndoomed > v->ndoomed_kept || v->objdir_dirty ||
        (all && v->gen > vol_durable_generation(v)))
        rc = vol_commit_manifest(v, 1, err);
    vol_unlock(v);
    return rc;
}

int scp_volume_sync(scp_volume *v, scp_err *err) { return sync_pending(v, 1, err); }

void scp_volume_drop_spares(scp_volume *v) {
    pthread_mutex_lock(&v->mu);
    vol_spare_drop(v);
    pthread_mutex_unlock(&v->mu);
}

int scp_volume_unlink(scp_volume *v, const char *path, scp_err *err) {
    char p[SCP_MAX_PATH + 1];
    if (norm(path, p, err) < 0) return -1;
    if (vol_lock(v, err) < 0) return -1;
    long i = man_find(&v->man, p);
    int rc = 0;
    if (i < 0) rc = missing(v, p, err);
    else if (v->man.e[i]->type == 2)
        rc = scp_fail(err, SCP_E_ISDIR, EISDIR, "'%s' is a directory; use rmdir", p);
    uint8_t id[SCP_FILEID_LEN];
    int has_objects = rc == 0 && v->man.e[i]->type == SCP_MTYPE_FILE;
    if (rc == 0) rc = remove_committed(v, (size_t)i, id, err);
    if (rc == 0 && has_objects) name_gone(v, id, p);
    vol_unlock(v);
    return rc;
}

/* Add name b for the entry at normalized path a (caller holds vol_lock). */
static int link_locked(scp_volume *v, const char *a, const char *b, scp_err *err) {
    assert(VOL_LOCK_HELD(v));
    if (!b[0]) return scp_fail(err, SCP_E_EXIST, EEXIST, "the volume root already exists");
    long i = a[0] ? man_find(&v->man, a) : -1;
    if (a[0] && i < 0) return missing(v, a, err);
    if (i < 0 || v->man.e[i]->type == SCP_MTYPE_DIR)
        return scp_fail(err, SCP_E_INVAL, EPERM, "'%s' is a directory: it cannot have hard links", a);
    if (check_parent(v, b, err) < 0) return -1;
    if (man_find(&v->man, b) >= 0)
        return scp_fail(err, SCP_E_EXIST, EEXIST, "'%s' already exists in the volume", b);
    if (v->man.e[i]->nlink >= SCP_VOLUME_LINK_MAX)
        return scp_fail(err, SCP_E_INVAL, EMLINK, "'%s' has too many links", a);
    int64_t now = scp_now_ns(), old_ctime = v->man.e[i]->ctime_ns;
    int usable = vol_mchg_usable(v); /* (before any change: vol_man_name_changed) */
    man_ctime_touch(&v->man, (size_t)i, now); /* its link count changes */
    scp_mentry e;
    if (man_entry_dup(&e, v->man.e[i], b) < 0) {
        man_ctime_touch(&v->man, (size_t)i, old_ctime);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    uint8_t id[SCP_FILEID_LEN];
    memcpy(id, e.id, SCP_FILEID_LEN);
    if (man_insert(&v->man, &e, err) < 0) {
        man_entry_clear(&e);
        man_ctime_touch(&v->man, (size_t)i, old_ctime);
        return -1;
    }
    long ni = man_find(&v->man, b);
    assert(ni >= 0);
    man_links_add(&v->man, id, 1); /* every name, the new one included (it had the old count) */
    man_dtimes dt = man_parent_touch(&v->man, b, now);
    vol_man_name_changed(v, usable, b, id, 1);
    if (vol_commit_manifest(v, 0, err) < 0) {
        man_parent_untouch(&v->man, b, dt);
        man_remove(&v->man, (size_t)ni);
        man_links_add(&v->man, id, -1);
        long oi = man_find(&v->man, a);
        if (oi >= 0) man_ctime_touch(&v->man, (size_t)oi, old_ctime);
        return -1;
    }
    return 0;
}

int scp_volume_link(scp_volume *v, const char *from, const char *to, scp_err *err) {
    char a[SCP_MAX_PATH + 1], b[SCP_MAX_PATH + 1];
    if (norm(from, a, err) < 0 || norm(to, b, err) < 0) return -1;
    if (vol_lock(v, err) < 0) return -1;
    int rc = link_locked(v, a, b, err);
    vol_unlock(v);
    return rc;
}

int vol_insert_name(scp_volume *v, scp_mentry *e, scp_err *err) {
    man_dtimes dt = {0, 0};
    int rc = !e->path[0] ? scp_fail(err, SCP_E_EXIST, EEXIST, "the volume root already exists")
             : check_parent(v, e->path, err) < 0 ? -1
             : man_find(&v->man, e->path) >= 0
                 ? scp_fail(err, SCP_E_EXIST, EEXIST, "'%s' already exists in the volume", e->path)
                 : vol_man_create(v, e, e->ctime_ns, &dt, err);
    if (rc < 0) {
        free(e->path);
        return -1;
    }
    if (vol_commit_manifest(v, 0, err) < 0) {
        man_parent_untouch(&v->man, e->path, dt);
        man_remove(&v->man, (size_t)man_find(&v->man, e->path)); /* frees e->path */
        return -1;
    }
    return 0;
}

int scp_vfile_link(scp_vfile *h, const char *to, scp_err *err) {
    char b[SCP_MAX_PATH + 1];
    if (norm(to, b, err) < 0) return -1;
    vol_after_fork_check(h->f->vol);
    if (__atomic_load_n(&h->f->nameless, __ATOMIC_ACQUIRE) == 1) return file_link_nameless(h->f, b, err);
    scp_volume *v = h->f->vol;
    if (vol_lock(v, err) < 0) return -1;
    /* vol_lock follows other processes' renames and removals into f->path */
    char *a = h->f->path ? strdup(h->f->path) : NULL;
    int rc = !h->f->path ? scp_fail(err, SCP_E_NOENT, ENOENT, "the file has no name left in the volume")
             : !a        ? scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory")
                         : link_locked(v, a, b, err);
    free(a);
    vol_unlock(v);
    return rc;
}

/* Replace the prefix `from` of path with `to` into a new string. */
static char *reprefix(const char *path, size_t from_len, const char *to) {
    size_t tl = strlen(to), rest = strlen(path + from_len);
    char *s = malloc(tl + rest + 1);
    if (!s) return NULL;
    memcpy(s, to, tl);
    memcpy(s + tl, path + from_len, rest + 1);
    return s;
}

/* Loaded files named a, or below a/ (a directory's rename), go by b's path now (caller holds
 * v->mu); one whose new path cannot be allocated keeps the old, and its commits then fail to
 * find an entry. */
static void files_repath(scp_volume *v, const char *a, const char *b) {
    assert(VOL_MU_HELD(v));
    size_t al = strlen(a);
    for (scp_file *f = v->files; f; f = f->next)
        if (f->path && strncmp(f->path, a, al) == 0 && (f->path[al] == '\0' || f->path[al] == '/')) {
            char *np = reprefix(f->path, al, b);
            if (np) {
                free(f->path);
                f->path = np;
            }
        }
}

/* The rename of a name that is no directory, a to b (b, if it exists, a name of another file
 * and no directory: the caller checked), in place: the entry moves to its new place in the
 * sorted array and a replaced name goes, with the times and counts that change, all noted
 * for the record (vol_man_name_changed). A directory's rename rebuilds the manifest (its
 * children's paths all change); this one did too, so that each rename cost a copy of every
 * entry and a comparison of the whole manifest, and a program that writes each file under a
 * temporary name first (rsync, dpkg) took O(entries) per file. On a failed commit everything
 * is put back. */
static int rename_name_locked(scp_volume *v, const char *a, const char *b, scp_err *err) {
    assert(VOL_LOCK_HELD(v));
    int usable = vol_mchg_usable(v); /* (before any change) */
    long i = man_find(&v->man, a), j = man_find(&v->man, b);
    assert(i >= 0 && v->man.e[i]->type != SCP_MTYPE_DIR && (j < 0 || v->man.e[j]->type != SCP_MTYPE_DIR));
    scp_mentry old, moved, repl;
    int has_repl = j >= 0;
    /* (every allocation first: the changes below and their undoing then cannot fail for want
     * of memory; man_reserve: the moved entry's insert and the undo's two) */
    if (man_reserve(&v->man, 2) < 0 || man_entry_dup(&old, v->man.e[i], a) < 0)
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    if (man_entry_dup(&moved, v->man.e[i], b) < 0) {
        man_entry_clear(&old);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    if (has_repl && man_entry_dup(&repl, v->man.e[j], b) < 0) {
        man_entry_clear(&old);
        man_entry_clear(&moved);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    int64_t now = scp_now_ns();
    long rother = -1; /* another name of the replaced file */
    if (has_repl) {
        man_remove(&v->man, (size_t)j);
        if (repl.nlink != 1) {
            man_links_add(&v->man, repl.id, -1);
            rother = man_find_id(&v->man, repl.id, -1);
        }
        if (rother >= 0) man_ctime_touch(&v->man, (size_t)rother, now); /* its count changed */
    }
    man_remove(&v->man, (size_t)man_find(&v->man, a));
    int rc = man_insert(&v->man, &moved, err); /* (reserved: cannot fail) */
    assert(rc == 0);
    man_dtimes da = man_parent_touch(&v->man, a, now), db = man_parent_touch(&v->man, b, now);
    man_ctime_touch(&v->man, (size_t)man_find(&v->man, b), now); /* (and its other names) */
    vol_man_name_changed(v, usable, a, old.id, 0);
    vol_man_name_changed(v, usable, b, old.id, old.nlink != 1);
    if (has_repl) vol_man_name_changed(v, usable, b, repl.id, rother >= 0);
    rc = vol_commit_manifest(v, 0, err);
    if (rc < 0) { /* put back what was (the array has room: as many entries as before) */
        man_ctime_touch(&v->man, (size_t)man_find(&v->man, b), old.ctime_ns);
        man_parent_untouch(&v->man, b, db);
        man_parent_untouch(&v->man, a, da);
        man_remove(&v->man, (size_t)man_find(&v->man, b));
        (void)man_insert(&v->man, &old, NULL);
        if (has_repl) {
            if (rother >= 0) man_ctime_touch(&v->man, (size_t)rother, repl.ctime_ns);
            if (repl.nlink != 1) man_links_add(&v->man, repl.id, 1);
            (void)man_insert(&v->man, &repl, NULL);
        }
        return -1;
    }
    man_entry_clear(&old);
    if (has_repl) {
        if (repl.type == SCP_MTYPE_FILE) name_gone(v, repl.id, b);
        man_entry_clear(&repl);
    }
    files_repath(v, a, b);
    return 0;
}

int scp_volume_rename(scp_volume *v, const char *from, const char *to, scp_err *err) {
    char a[SCP_MAX_PATH + 1], b[SCP_MAX_PATH + 1];
    if (norm(from, a, err) < 0 || norm(to, b, err) < 0) return -1;
    if (!a[0] || !b[0]) return scp_fail(err, SCP_E_INVAL, EBUSY, "cannot rename the volume root");
    size_t al = strlen(a);
    if (vol_lock(v, err) < 0) return -1;
    int rc = 0;
    long i = man_find(&v->man, a), j = man_find(&v->man, b);
    if (i < 0) rc = missing(v, a, err);
    if (rc == 0) rc = check_parent(v, b, err); /* "file/x": ENOTDIR before EINVAL, as the kernel */
    if (rc == 0 && strncmp(b, a, al) == 0 && b[al] == '/')
        rc = scp_fail(err, SCP_E_INVAL, EINVAL, "cannot move '%s' into itself", a);
    if (rc == 0 && strcmp(a, b) == 0) goto out;
    /* two names of one file: POSIX says rename does nothing and succeeds */
    if (rc == 0 && j >= 0 && v->man.e[i]->type != SCP_MTYPE_DIR &&
        memcmp(v->man.e[i]->id, v->man.e[j]->id, SCP_FILEID_LEN) == 0)
        goto out;
    int is_dir = rc == 0 && v->man.e[i]->type == 2;
    if (rc == 0 && j >= 0) {
        if (is_dir && v->man.e[j]->type != 2)
            rc = scp_fail(err, SCP_E_NOTDIR, ENOTDIR, "'%s' is not a directory", b);
        else if (!is_dir && v->man.e[j]->type == 2)
            rc = scp_fail(err, SCP_E_ISDIR, EISDIR, "'%s' is a directory", b);
        else if (is_dir && man_has_child(&v->man, b))
            rc = scp_fail(err, SCP_E_NOTEMPTY, ENOTEMPTY, "directory '%s' is not empty", b);
    }
    if (rc < 0) goto out;
    if (!is_dir) {
        rc = rename_name_locked(v, a, b, err);
        goto out;
    }
    /* Build the new manifest as a copy, so that a failed commit leaves the old one intact. */
    scp_manifest nm = {0};
    uint8_t replaced_id[SCP_FILEID_LEN];
    int replaced = 0;
    for (size_t k = 0; k < v->man.n && rc == 0; k++) {
        const scp_mentry *src = v->man.e[k];
        if ((long)k == j) {
            memcpy(replaced_id, src->id, SCP_FILEID_LEN);
            replaced = src->type;
            continue;
        }
        const char *p = src->path;
        int moved = strncmp(p, a, al) == 0 && (p[al] == '\0' || p[al] == '/');
        char *np = moved ? reprefix(p, al, b) : NULL;
        scp_mentry e;
        int ok = (!moved || np) && man_entry_dup(&e, src, np) == 0;
        free(np);
        if (ok && man_insert(&nm, &e, err) < 0) {
            man_entry_clear(&e);
            ok = 0;
        }
        if (!ok) rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    if (rc == 0 && replaced) man_links_add(&nm, replaced_id, -1); /* its other names, if any */
    if (rc == 0) { /* the times of the change: both directories, the moved entry, a replaced file */
        int64_t now = scp_now_ns();
        man_parent_touch(&nm, a, now);
        man_parent_touch(&nm, b, now);
        long ni = man_find(&nm, b), oi = replaced && replaced != SCP_MTYPE_DIR ? man_find_id(&nm, replaced_id, -1) : -1;
        assert(ni >= 0);
        man_ctime_touch(&nm, (size_t)ni, now);
        if (oi >= 0) man_ctime_touch(&nm, (size_t)oi, now);
    }
    if (rc == 0) {
        scp_manifest old = v->man;
        uint64_t old_gen = v->gen;
        vol_mchg_off(v); /* (a manifest built anew: the delta compares it whole) */
        v->man = nm;
        if (vol_commit_manifest(v, 0, err) < 0) {
            v->man = old;
            v->gen = old_gen;
            scp_manifest_free(&nm);
            rc = -1;
        } else {
            scp_manifest_free(&old);
            if (replaced == SCP_MTYPE_FILE) name_gone(v, replaced_id, b);
            files_repath(v, a, b);
        }
    } else {
        scp_manifest_free(&nm);
    }
out:
    vol_unlock(v);
    return rc;
}

/* The root's own entry (SCP_ROOT_ENTRY), made with what the root showed without it (0755, no
 * owner recorded, times 0) if it has none: its index, or -1 (caller holds the volume lock). */
static long root_entry(scp_volume *v, int *made, scp_err *err) {
    assert(VOL_LOCK_HELD(v));
    long i = man_find(&v->man, SCP_ROOT_ENTRY);
    if (i >= 0) return i;
    scp_mentry e = {.type = SCP_MTYPE_DIR, .mode = 0755};
    if (scp_random(e.id, SCP_FILEID_LEN, err) < 0) return -1;
    if (!(e.path = strdup(SCP_ROOT_ENTRY))) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    if (man_insert(&v->man, &e, err) < 0) {
        free(e.path);
        return -1;
    }
    *made = 1;
    return man_find(&v->man, SCP_ROOT_ENTRY);
}

int scp_volume_setattr(scp_volume *v, const char *path, int64_t mode, int64_t uid, int64_t gid,
                       int64_t mtime_ns, scp_err *err) {
    return scp_volume_setattr_times(v, path, mode, uid, gid, INT64_MIN, mtime_ns, err);
}

int scp_volume_setattr_times(scp_volume *v, const char *path, int64_t mode, int64_t uid, int64_t gid,
                             int64_t atime_ns, int64_t mtime_ns, scp_err *err) {
    char p[SCP_MAX_PATH + 1];
    if (norm(path, p, err) < 0) return -1;
    if (vol_lock(v, err) < 0) return -1;
    int made = 0; /* (the root's entry, made now: removed again if the commit fails) */
    long i = p[0] ? man_find(&v->man, p) : root_entry(v, &made, err);
    int rc = 0;
    if (i < 0) {
        rc = p[0] ? missing(v, p, err) : -1;
    } else {
        scp_mentry *e = v->man.e[i], saved = *e;
        vol_mchg_note(v, e->path); /* (its other names: man_sync_links moves man.ver) */
        if (mode >= 0) e->mode = ((uint32_t)mode & 07777) | (e->mode & (SCP_MODE_OWNED | S_IFMT));
        if (uid >= 0) e->uid = (uint32_t)uid;
        if (gid >= 0) e->gid = (uint32_t)gid;
        /* a directory without a recorded owner has one once both ids are given */
        if (uid >= 0 && gid >= 0) e->mode |= SCP_MODE_OWNED;
        if (mtime_ns != INT64_MIN) e->mtime_ns = mtime_ns;
        if (atime_ns != INT64_MIN) e->atime_ns = atime_ns;
        /* No change, no commit: sqlite fchowns every journal it creates to the owner it has.
         * (So a chown or chmod to what it is already does not move ctime; the kernel's does.) */
        int same = e->mode == saved.mode && e->uid == saved.uid && e->gid == saved.gid &&
                   e->mtime_ns == saved.mtime_ns && e->atime_ns == saved.atime_ns &&
                   mtime_ns == INT64_MIN && atime_ns == INT64_MIN && !made;
        if (!same) e->ctime_ns = scp_now_ns();
        man_sync_links(&v->man, (size_t)i); /* every name of a file shows its mode and owner */
        if (!same && vol_commit_manifest(v, 0, err) < 0) {
            if (made) {
                man_remove(&v->man, (size_t)i);
            } else {
                *e = saved;
                man_sync_links(&v->man, (size_t)i);
            }
            rc = -1;
        } else if (mtime_ns != INT64_MIN) {
            /* this process's uncommitted writes to the file must not stamp over it (v->files:
             * vol_lock holds v->mu) */
            for (scp_file *f = v->files; f; f = f->next)
                if (memcmp(f->id, e->id, SCP_FILEID_LEN) == 0) __atomic_store_n(&f->mtime_kept, 1, __ATOMIC_RELAXED);
        }
    }
    vol_unlock(v);
    return rc;
}

struct dent {
    char *name;
    scp_vstat st;
};

int scp_volume_readdir(scp_volume *v, const char *path, scp_readdir_cb cb, void *ctx,
                       scp_err *err) {
    char p[SCP_MAX_PATH + 1];
    if (norm(path, p, err) < 0) return -1;
    if (vol_lock_read(v, err) < 0) return -1;
    size_t pl = strlen(p), start = 0, n = 0, cap = 0;
    struct dent *list = NULL;
    int rc = 0;
    if (pl) {
        long i = man_find(&v->man, p);
        if (i < 0) rc = missing(v, p, err);
        else if (v->man.e[i]->type != 2)
            rc = scp_fail(err, SCP_E_NOTDIR, ENOTDIR, "'%s' is not a directory", p);
        /* the first entry below p/, not the one after p: "p-1" and "p.txt" sort between them */
        start = vol_man_below(&v->man, p);
    }
    for (size_t k = start; rc == 0 && k < v->man.n; k = vol_man_next_child(&v->man, pl ? pl + 1 : 0, k)) {
        const char *ep = v->man.e[k]->path;
        if (pl && (strncmp(ep, p, pl) != 0 || ep[pl] != '/')) break;
        const char *name = pl ? ep + pl + 1 : ep;
        if (strchr(name, '/')) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            struct dent *nl = realloc(list, cap * sizeof *nl);
            if (!nl) {
                rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
                break;
            }
            list = nl;
        }
        list[n].name = strdup(name);
        fill_stat(v, v->man.e[k], &list[n].st);
        if (!list[n++].name) rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    vol_unlock(v);
    /* Callbacks run without the lock, so that they may call back into the volume. */
    for (size_t k = 0; k < n; k++) {
        if (rc == 0 && list[k].name) rc = cb(ctx, list[k].name, &list[k].st);
        free(list[k].name);
    }
    free(list);
    return rc;
}
