/* volume/commit.c - loading a file's committed state, recovery, write-back and commit.
 *
 * Crash safety (docs/volume-format.md has the full argument): chunks and table entries beyond
 * the committed chunk count are "fresh" and written in place at any time, since no committed
 * state refers to them. Any change below the committed count goes to the journal first. A
 * commit makes the journal durable, then writes the manifest (the commit point), then applies
 * the journal in place. Recovery on load replays a journal whose target root is the manifest's.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
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

/* ---- loading and recovery ---------------------------------------------------------------- */

int file_open_obj(scp_file *f, const char *ext, int flags, scp_err *err) {
    char name[48];
    vol_object_name(f->id, ext, name);
    /* O_NOFOLLOW and O_NONBLOCK: the disk is the attacker's, and a symlink to a device or a
     * FIFO must fail here, not hang or alias another file. */
    int fd = openat(f->vol->objfd, name, flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    if (fd < 0) {
        if (errno == ENOENT)
            return scp_fail(err, SCP_E_INTEGRITY, EIO,
                            "'%s': its data object is missing from the volume directory",
                            f->path ? f->path : "file");
        if (errno == ELOOP)
            return scp_fail(err, SCP_E_INTEGRITY, EIO,
                            "'%s': an object of it was replaced by a symbolic link", f->path);
        return scp_fail_errno(err, "cannot open an object of '%s'", f->path ? f->path : "file");
    }
    struct stat st;
    if (scp_fstat_notime(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': an object of it is not a regular file", f->path ? f->path : "file");
    }
    if ((flags & O_CREAT) && st.st_uid == 0) vol_object_owner(f->vol, fd);
    return fd;
}

/* The most bytes a journal can legitimately hold for a file of `size` bytes (after the
 * commit macros, below); anything longer is refused, not read. */
static uint64_t journal_replay_max(uint64_t size, uint32_t cs);

/* A redo writes what the journal's records name in runs: consecutive chunks with one pwritev
 * and consecutive table entries with one pwrite, from the table in memory (which the entries
 * were copied into in the journal's order, so a run written late still holds each entry's
 * newest value). A read-only load of a file whose short journal stays (try_replay) redoes it
 * at every open: one pwrite per entry was a call per chunk of the file there (352 for a
 * 1.4 MB library written by cp). The order of writes inside a redo does not matter: nothing
 * is durable before the flush after it, and the redo is idempotent. */
#define REPLAY_IOV 64

struct replay {
    scp_file *f;
    uint64_t nchunks; /* of the target state: records beyond it are dead and skipped */
    scp_err *err;
    uint64_t e_lo, e_n; /* the run of entries not yet written: [e_lo, e_lo + e_n) */
    uint64_t c_lo;      /* the run of chunks not yet written: c_n of them from c_lo */
    int c_n;
    struct iovec c_iov[REPLAY_IOV]; /* (pointing into the journal's buffer, alive meanwhile) */
};

static int replay_flush_chunks(struct replay *r) {
    uint32_t cs = r->f->vol->cs;
    off_t at = (off_t)(r->c_lo * cs);
    int n = r->c_n;
    r->c_n = 0;
    if (n == 0) return 0;
    ssize_t w = pwritev(r->f->fd_d, r->c_iov, n, at);
    if (w == (ssize_t)n * cs) return 0;
    /* (short or failed: the rest one chunk at a time, which retries and reports) */
    for (int i = w > 0 ? (int)(w / cs) : 0; i < n; i++)
        if (scp_pwrite_full(r->f->fd_d, r->c_iov[i].iov_base, cs, at + (off_t)i * cs) < 0)
            return scp_fail_errno(r->err, "cannot replay the journal of '%s'", r->f->path);
    return 0;
}

static int replay_flush_entries(struct replay *r) {
    uint64_t lo = r->e_lo, n = r->e_n;
    r->e_n = 0;
    if (n && scp_pwrite_full(r->f->fd_t, ent(r->f, lo), n * ENT, lo * ENT) < 0)
        return scp_fail_errno(r->err, "cannot replay the journal of '%s'", r->f->path);
    return 0;
}

static int replay_chunk(void *ctx, uint64_t index, const uint8_t *ct) {
    struct replay *r = ctx;
    if (!ct || index >= r->nchunks) return 0; /* (!ct: dead, format.h) */
    if (r->c_n && (index != r->c_lo + (uint64_t)r->c_n || r->c_n == REPLAY_IOV) &&
        replay_flush_chunks(r) < 0)
        return -1;
    if (r->c_n == 0) r->c_lo = index;
    r->c_iov[r->c_n].iov_base = (void *)(uintptr_t)ct;
    r->c_iov[r->c_n++].iov_len = r->f->vol->cs;
    return 0;
}

static int replay_entry(void *ctx, uint64_t index, const uint8_t *e) {
    struct replay *r = ctx;
    scp_file *f = r->f;
    if (index >= r->nchunks) return 0;
    memcpy(ent(f, index), e, ENT);
    f->page_dirty[index / SCP_TABLE_PAGE] = 1;
    /* (an index inside the pending run, rewritten by a later record: the run writes the
     * newest value from memory) */
    if (r->e_n && index >= r->e_lo && index < r->e_lo + r->e_n) return 0;
    if (r->e_n && index != r->e_lo + r->e_n && replay_flush_entries(r) < 0) return -1;
    if (r->e_n == 0) r->e_lo = index;
    r->e_n++;
    return 0;
}

/* After a fork, fd_d's description is an unrepaired child's too (fork_parent marks it), and
 * a writer lock taken through it would outlive this process in the child: the volume lock's
 * case (volume.c, vol_lock_own), for the file's writers (shared mode waits for the writer
 * lock). A fresh description of the same object first, dup3'd onto the same number (a reader
 * under the file's read lock never sees it closed); an object that is no longer the one
 * open (removed, another file's now) keeps the old description. Caller holds f->rw for
 * writing (or f is not listed yet) and not the writer lock. */
static void file_own_d(scp_file *f) {
    assert(!f->writer);
    f->d_inherited = 0;
    char name[48];
    vol_object_name(f->id, ".d", name);
    int fd = openat(f->vol->objfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return;
    struct stat a, b;
    if (scp_fstat_notime(fd, &a) == 0 && scp_fstat_notime(f->fd_d, &b) == 0 &&
        a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        (void)dup3(fd, f->fd_d, O_CLOEXEC);
    close(fd);
}

/* Take the writer lock without waiting (byte 1 of the data object; see file_acquire_writer).
 * Returns 1 if taken, 0 if another process holds it. */
int file_try_writer_lock(scp_file *f) {
    if (f->d_inherited) file_own_d(f);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 1, .l_len = 1};
    return fcntl(f->fd_d, F_OFD_SETLK, &fl) == 0;
}

/* Wait for the writer lock (shared mode: a holder keeps it only for one call, see vfile.c).
 * Returns 1 once taken, 0 on an error other than EINTR. */
int file_wait_writer_lock(scp_file *f) {
    if (f->d_inherited) file_own_d(f);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 1, .l_len = 1};
    int rc;
    VSTAT(wlock);
    uint64_t t = VSTAT_T0();
    while ((rc = fcntl(f->fd_d, F_OFD_SETLKW, &fl)) != 0 && errno == EINTR) {
    }
    VSTAT_T1(wlock_ns, t);
    return rc == 0;
}

void file_writer_unlock(scp_file *f) {
    struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 1, .l_len = 1};
    (void)fcntl(f->fd_d, F_OFD_SETLK, &fl);
}

/* Redo the journal's commits up to the one that names the manifest's root (format.h), make
 * the result durable and empty the journal. Only a process that can take the writer lock does
 * this: a live writer's journal is its own (it appends to it), and its commits are applied in
 * the page cache that we read, so there is nothing to redo while it lives. Returns 1 if
 * replayed, 0 if there was nothing to do, 2 if another process kept the writer lock (nothing
 * replayed), -1 on error. Called by file_load: the caller holds
 * f->rw for writing, or f is new and not yet in the volume's list of files (file_get). */
static int try_replay(scp_file *f, const scp_mentry *e, scp_err *err) {
    struct stat st;
    /* A writer with a log open appends to it: that log is its own. A writer that has none (it
     * has just taken the lock, see writer_refresh) replays what the previous writer left. */
    int own = f->writer;
    if (own && f->j_end) return 0;
    if (f->fd_j < 0) {
        char name[48];
        vol_object_name(f->id, ".j", name);
        f->fd_j = openat(f->vol->objfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (f->fd_j < 0) return 0;
    }
    if (scp_fstat_notime(f->fd_j, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < SCP_JRN_HDR_LEN)
        return 0;
    if (!own && !file_try_writer_lock(f)) {
        /* A writer killed past its commit point, before its apply: the kernel releases its
         * volume lock (which the caller holds now) before its writer lock, as the dying
         * process's descriptors are closed one by one, so the table read here is behind the
         * manifest while the writer lock is still held for a moment. Wait a little for it
         * rather than fail the load ("chunk table does not match"; test_volume_kill_locked,
         * strict). A live writer holding it is waited for at most that long. */
        int got = 0;
        for (int i = 0; i < 50 && !got; i++) {
            usleep(2000);
            got = file_try_writer_lock(f);
        }
        if (!got) return 2;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = NULL;
    int rc = 0;
    /* Read whole into memory, so the host must not choose how much: beyond what a writer can
     * produce for this (authenticated) size, the journal was inflated on purpose. */
    if ((uint64_t)st.st_size > journal_replay_max(e->size, f->vol->cs)) {
        rc = scp_fail(err, SCP_E_INTEGRITY, EIO,
                      "'%s': its journal (%llu bytes) is longer than any writer makes it; the "
                      "volume was modified",
                      e->path, (unsigned long long)st.st_size);
        goto out;
    }
    buf = malloc(len);
    if (!buf) {
        rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory replaying a journal");
        goto out;
    }
    scp_journal_view jv;
    if (scp_pread_full(f->fd_j, buf, len, 0) != (ssize_t)len ||
        scp_journal_find(buf, len, f->vol->cs, f->vol->volid, f->key, f->id, e->root, e->size,
                         &jv) != 1)
        goto out;
    struct replay r = {.f = f, .nchunks = nchunks_of(e->size, f->vol->cs), .err = err};
    rc = scp_journal_replay(buf, &jv, f->vol->cs, f->id, replay_chunk, replay_entry, &r, err);
    if (rc == 0) rc = replay_flush_chunks(&r);
    if (rc == 0) rc = replay_flush_entries(&r);
    size_t named_end = jv.end;
    scp_wipe(&jv, sizeof jv);
    if (rc < 0) goto out;
    /* A loader that is not the file's writer, outside shared mode, leaves a short journal (one
     * that a closing writer leaves too, vfile.c) as it is and flushes nothing: the redo above
     * is in the page cache, as the last writer's own apply was, and the journal that can redo
     * it again after a power cut stays until a writer starts a new log over it, which it does
     * only after its checkpoint (journal_begin: j_clean is 0 after every load) has made these
     * same writes durable. The next loader redoes them again, a read and a few pwrites: what
     * a read-only open of a file written earlier cost was these two flushes
     * (bench/shield/smallfiles.sh). Only a journal that ends with the commit the manifest
     * names, as a writer's close leaves it: anything behind that commit (a killed writer's
     * records of a commit no manifest names, an older log's tail, a shared log's zeros) goes
     * with the journal as before, or a shared process, which follows a log past the named
     * commit, would later take a commit that this load did not (test_volume_forkstress found
     * it: a dead writer's unnamed commit read after the slot resolved to the named state). A
     * longer journal is emptied as before too, so that loads do not read it again and again. */
    if (!own && !f->vol->shared && named_end == len && len <= SCP_CHECKPOINT_AT_CLOSE) {
        rc = 1;
        goto out;
    }
    /* A redo that does not lead to the named root (a table the host changed, or a log this
     * code misreads: the dead records of format.h were such a case) is not made durable, and
     * the journal that might still redo it stays: the load fails on the root (file_load), and
     * nothing that could tell what happened is thrown away. */
    uint8_t root[SCP_HASH_LEN];
    table_root(f, root);
    if (memcmp(root, e->root, SCP_HASH_LEN) != 0) {
        rc = 1;
        goto out;
    }
    if (fdatasync(f->fd_d) < 0 || fdatasync(f->fd_t) < 0) {
        rc = scp_fail_errno(err, "cannot sync '%s' after journal replay", e->path);
        goto out;
    }
    /* Harmless if it fails: replay is idempotent. (A listed journal may hold one-flush
     * records that only it keeps: kept until manifest.log is synced.) */
    if (journal_release(f, NULL) == 0 && ftruncate(f->fd_j, 0) < 0) {
    }
    rc = 1;
out:
    free(buf);
    if (!own) file_writer_unlock(f);
    return rc;
}

/* ---- following another process's log (shared mode) ------------------------------------------
 * In shared mode the processes of a program take turns appending to one journal log per file,
 * and lazy commits (file_commit_lazy) are not applied in place until a durable commit: the
 * state a manifest names is the table on disk plus the log's records. A process takes in what
 * others committed by redoing their records in memory: entries into its table (and marked
 * changed, so its next durable commit applies them), chunk records into its journal map (read
 * from the log until applied). It walks only what was appended since it last looked, as long
 * as the log is the same one (same header salt). Nothing here writes an object: a state that
 * may not be durable is never made durable in place, which is what keeps a power cut from
 * leaving a table that the durable manifest does not name. */
struct follow {
    scp_file *f;
    const uint8_t *buf; /* the journal's bytes from offset base on */
    size_t base;
    uint64_t nchunks;
    scp_err *err;
    uint64_t gen;       /* what the entries taken go into the unapplied set with */
};

static int follow_chunk(void *ctx, uint64_t index, const uint8_t *ct) {
    struct follow *r = ctx;
    /* jlogged before the size test: a record of a chunk beyond the followed size (written
     * before a shrink) is still in the log, and the chunk must not go in place into slot 0
     * when the file grows again (chunk_target_shared): a later load's walk of the whole log
     * would map the chunk to that older record and fail authentication on it (found by
     * test_volume_forkstress: two shared processes, a shrink, then a write past the end) */
    if (u64map_put(&r->f->jlogged, index, 1) < 0)
        return scp_fail(r->err, SCP_E_NOMEM, ENOMEM, "out of memory following a journal");
    /* (a dead record, ct NULL (format.h): a truncate after it cut the chunk off, so it maps
     * nothing; it goes into jlogged all the same, so the chunk never goes in place into slot 0
     * in this log: another process that followed the record before the truncate and the
     * growth after it in one step still maps the chunk to it, and would read a chunk written
     * in place through that record. test_volume_forkstress under ASan failed so ("fails
     * authentication") while dead records were not handed out at all.) */
    if (!ct || index >= r->nchunks) return 0;
    uint64_t off = r->base + (uint64_t)(ct - r->buf) - SCP_JCHUNK_HDR_LEN;
    if (u64map_put(&r->f->jmap, index, off) < 0)
        return scp_fail(r->err, SCP_E_NOMEM, ENOMEM, "out of memory following a journal");
    return 0;
}

static int follow_entry(void *ctx, uint64_t index, const uint8_t *e) {
    struct follow *r = ctx;
    scp_file *f = r->f;
    if (index >= r->nchunks) return 0;
    memcpy(ent(f, index), e, ENT);
    /* (from the entry's segment on, not the whole page: a follow's table_root rehashed a whole
     * 11 KiB page per entry followed, where the writer's own change rehashes from its segment) */
    table_mark_page(f, index);
    /* A chunk overwritten in place by the other process (its second slot): read it from .s */
    if (SCP_ENT_SLOT(e) && f->fd_s < 0) (void)file_open_slot(f, 0, NULL);
    /* The commit that named it is at or below the generation being followed (under vol_lock);
     * a commit past the one the manifest names: UNAPPLIED_PAST (no durable commit covers it) */
    if (u64map_put(&f->unapplied, index, r->gen) < 0)
        return scp_fail(r->err, SCP_E_NOMEM, ENOMEM, "out of memory following a journal");
    return 0;
}

/* The unapplied set's mark for an entry taken from a commit past the one the manifest names
 * (above every generation: never covered by a durable commit, so chunk_target_shared never
 * overwrites its other slot in place) until a manifest names the state (file_past_named). */
#define UNAPPLIED_PAST UINT64_MAX

/* Redo in memory the records of f's log from offset `from` (0: the whole log, over a table
 * just read from .t) up to the commit that names e's root and size. Returns 1 if found and
 * redone, 0 if the log has no such commit after `from` (or is another log), -1 on error.
 * With `past` (shared mode, lazy publication step 3: FOLLOW_PAST) the follow goes on to the
 * last commit record after it that checks out, and with FOLLOW_ANY (from our own place in the
 * log, which is at or past the named commit) it takes any commit after `from`; *got gets the
 * root and size of the commit taken (e's, when none is past it). */
enum { FOLLOW_NAMED = 0, FOLLOW_PAST = 1, FOLLOW_ANY = 2 };

/* How far a follow from `from` reads when it has read to `end` (end == from: nothing yet) and
 * must read on, in an object of len bytes: twice what it read, at least FOLLOW_STEP bytes past
 * from, at most len. Always past end when end < len. */
#define FOLLOW_STEP ((size_t)64 << 10)
static size_t follow_step(size_t from, size_t end, size_t len) {
    assert(from <= end && end <= len);
    size_t span = end - from < FOLLOW_STEP ? FOLLOW_STEP : 2 * (end - from);
    return len - from <= span ? len : from + span;
}
struct follow_got {
    uint8_t root[SCP_HASH_LEN];
    uint64_t size;
};
static int follow_run(scp_file *f, const scp_mentry *e, uint64_t from, int mode,
                      struct follow_got *got_out, scp_err *err);

static int file_follow_to(scp_file *f, const scp_mentry *e, uint64_t from, int mode,
                          struct follow_got *got_out, scp_err *err) {
    uint64_t t = VSTAT_T0();
    int rc = follow_run(f, e, from, mode, got_out, err);
    if (!from) VSTAT_T1(follow_full_ns, t); /* (the clock read twice: both share t) */
    VSTAT_T1(follow_ns, t);
    return rc;
}

static int follow_run(scp_file *f, const scp_mentry *e, uint64_t from, int mode,
                      struct follow_got *got_out, scp_err *err) {
    assert(mode == FOLLOW_NAMED || f->vol->shared || (mode == FOLLOW_PAST && f->followed));
    assert(mode != FOLLOW_ANY || from); /* (from our own place only) */
    assert(VOL_MU_HELD(f->vol));
    uint32_t cs = f->vol->cs;
    struct stat st;
    /* The writer's catch-up just checked this log's header under the writer lock
     * (file_log_stale): it is the same now (every change of it is a writer's, under that
     * lock), so it is not read again. Anyone else checks here. */
    int checked = from && f->writer && f->fd_j >= 0 && from == f->j_chk_end;
    f->j_chk_end = 0; /* (used once) */
    if (from) VSTAT(follow);
    else VSTAT(follow_full);
    if (!checked && f->fd_j < 0) {
        char name[48];
        vol_object_name(f->id, ".j", name);
        f->fd_j = openat(f->vol->objfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (f->fd_j < 0) return 0;
    }
    if (scp_fstat_notime(f->fd_j, &st) < 0 || !S_ISREG(st.st_mode) ||
        st.st_size < SCP_JRN_HDR_LEN || (uint64_t)st.st_size < from)
        return 0;
    /* (a commit past the named one may have grown the file: the larger size bounds the log) */
    uint64_t bound = mode != FOLLOW_NAMED && f->size > e->size ? f->size : e->size;
    if ((uint64_t)st.st_size > journal_replay_max(bound, cs))
        return from ? 0
                    : scp_fail(err, SCP_E_INTEGRITY, EIO,
                               "'%s': its journal (%llu bytes) is longer than any writer makes "
                               "it; the volume was modified",
                               e->path, (unsigned long long)st.st_size);
    size_t len = (size_t)st.st_size;
    scp_journal_view jv;
    memset(&jv, 0, sizeof jv);
    int rc = 0, found = 0;
    /* Read as far as the last appender's end (the journal end hint) and one record header
     * more, not to the object's end: in shared mode the object runs ahead of the log with
     * zeros (journal_room), and past them may lie an older log's tail. Only if the walk ran out
     * of bytes is more read and the walk redone: a walk that ends without running out (on the
     * zeros, on the end mark, or on bytes that do not continue the chain) ends the same in any
     * longer buffer, so the hint (not trusted) decides only how much is read, never what is
     * found. Without a usable hint (none, or another file's: the slots are shared by hashing,
     * 1,024 of them, and PostgreSQL has about a thousand files) the read starts with
     * FOLLOW_STEP bytes and doubles at each read-on (follow_step), where it read to the
     * object's end at once: up to SCP_JOURNAL_REUSE_MAX bytes of zeros and an older log's tail,
     * each 4 KiB a page fault in a fresh buffer (about 10 us each on this project's machines).
     * In pgbench's steady state no follow lacked a hint (counter follow_nohint); the long reads
     * there are logs of 1-8 MiB followed by a process that seldom looks (vol_follow_buf). */
    uint64_t hint = vol_jend_hint(f->vol, f->id);
    size_t end;
    if (hint > from && hint <= len - SCP_JREC_HDR_LEN) {
        end = (size_t)hint + SCP_JREC_HDR_LEN;
    } else {
        VSTAT(follow_nohint);
        end = follow_step(from, from, len);
    }
    /* Following from `from`, buf holds the journal from there on (base = from), and only what
     * is read: what was appended since (a buffer as long as the object was fresh memory at each
     * follow, and the kernel's copy into it page-faulted; format.h, scp_journal_find_from_at). */
    size_t base = from, got = from;
    if (from && !checked) { /* the header (is it still our log?) */
        uint8_t hdr[SCP_JRN_HDR_LEN];
        if (scp_pread_full(f->fd_j, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr ||
            memcmp(hdr + 8, f->j_salt, SCP_HASH_LEN) != 0)
            end = 0;
    } else if (end < SCP_JRN_HDR_LEN) {
        end = follow_step(from, from, len);
    }
    /* The thread's follow buffer (vol_follow_buf: kept, its pages stay mapped), taken when
     * the first read knows its length */
    size_t cap = 0;
    uint8_t *buf = NULL;
    /* The commit payloads the walk opens, for the replay (scp_journal_kept: opened once) */
    scp_journal_kept kept;
    memset(&kept, 0, sizeof kept);
    uint64_t tr = from ? 0 : VSTAT_T0(); /* (a whole log's: its read, walk and replay) */
    while (end > got) {
        if (end - base > cap || !buf) { /* (too small, or the walk ran out of bytes: read on) */
            size_t want = end > base ? end - base : 1;
            uint8_t *nb = vol_follow_buf(buf, got - base, want, &cap);
            if (!nb) {
                found = 0;
                break;
            }
            buf = nb;
        }
        VSTAT(follow_pread);
        VSTAT_ADD(follow_pread_bytes, end - got);
        if (!from) VSTAT_ADD(follow_full_bytes, end - got);
        if (scp_pread_full(f->fd_j, buf + (got - base), end - got, (off_t)got) != (ssize_t)(end - got)) {
            found = 0;
            break;
        }
        got = end;
        VSTAT_T1(follow_full_read_ns, tr);
        uint64_t tw = from ? 0 : VSTAT_T0();
        scp_wipe(&jv, sizeof jv);
        scp_journal_kept_free(&kept);
        const uint8_t *want = mode == FOLLOW_ANY ? NULL : e->root;
        found = from ? scp_journal_follow_from_at_kept(buf, base, end, from, cs, f->j_key, f->j_chain,
                                                       f->id, want, e->size, mode != FOLLOW_NAMED,
                                                       &jv, &kept)
                     : scp_journal_follow_live_kept(buf, end, cs, f->key, f->id, want, e->size,
                                                    mode != FOLLOW_NAMED, &jv, &kept);
        if (jv.cut && end < len) { /* (read on: twice as much, up to the object's end) */
            VSTAT(follow_readon);
            end = follow_step(from, end, len);
        }
        VSTAT_T1(follow_full_walk_ns, tw);
        tr = from ? 0 : VSTAT_T0();
    }
    uint64_t tp = from ? 0 : VSTAT_T0();
    if (found) {
        VSTAT(follow_found);
        /* (the commit taken: e's, or one past it) */
        assert(mode != FOLLOW_NAMED || (jv.new_size == e->size &&
                                        memcmp(jv.root, e->root, SCP_HASH_LEN) == 0));
        uint64_t n = nchunks_of(jv.new_size, cs), oldn = cur_n(f);
        rc = table_reserve(f, n, err);
        if (rc == 0 && n < oldn) {
            memset(ent(f, n), 0, (oldn - n) * ENT);
            for (uint64_t i = n; i < oldn; i++) {
                u64map_del(&f->jmap, i, NULL);
                u64map_del(&f->unapplied, i, NULL);
            }
        }
        if (rc == 0) {
            /* (only a changed count of chunks changes a page's hash: marking the last page at
             * every follow rehashed all of it, 11 KiB, for a follow that changed one entry) */
            if (n != oldn) table_mark_resize(f, oldn, n);
            f->size = f->c_size = jv.new_size;
            /* The commits up to the named one (what the manifest names: covered by the
             * manifest's generation), then those past it (UNAPPLIED_PAST), each replayed from
             * its own walk's kept payloads (the k-th kept payload is the k-th commit) */
            size_t split = mode == FOLLOW_NAMED ? jv.end : jv.named_end;
            assert(jv.start <= split && split <= jv.end);
            scp_journal_view ja = jv;
            ja.end = split;
            struct follow r = {f, buf, base, n, err, f->vol->gen};
            rc = scp_journal_replay_kept(buf, &ja, &kept, jv.end, cs, f->id, follow_chunk,
                                         follow_entry, &r, err);
            if (rc == 0 && split < jv.end) {
                scp_journal_view jb = jv;
                jb.start = split;
                scp_journal_kept kb = scp_journal_kept_from(&kept, split);
                r.gen = UNAPPLIED_PAST;
                rc = scp_journal_replay_kept(buf, &jb, &kb, 0, cs, f->id, follow_chunk,
                                             follow_entry, &r, err);
                kept.opens += kb.opens;
            }
            if (got_out) {
                memcpy(got_out->root, jv.root, SCP_HASH_LEN);
                got_out->size = jv.new_size;
            }
            scp_wipe(&ja, sizeof ja);
        }
        VSTAT_T1(follow_full_replay_ns, tp);
        if (rc == 0) {
            f->j_end = jv.end;
            f->j_tail_commit = 1;
            memcpy(f->j_chain, jv.chain, SCP_HASH_LEN);
            memcpy(f->j_key, jv.key, sizeof f->j_key);
            if (!from) memcpy(f->j_salt, buf + 8, SCP_HASH_LEN); /* (else unchanged: checked) */
            f->j_clean = 0;
            rc = 1;
        }
    }
    scp_wipe(&jv, sizeof jv);
    scp_journal_kept_free(&kept);
    vol_follow_buf_done(buf);
    return rc;
}

/* Shared mode. Invariant: a process reads, applies or appends at offsets of a log only while
 * that log is the one on disk. Returns 1 if the log that f's journal map, chain and append
 * offset refer to is gone from disk (another header salt, or shorter than f->j_end). A
 * writer drops a log after a checkpoint (commit_finish, journal_begin) and the next one
 * starts a new log at offset 0, while other processes may still hold offsets into the old
 * one (they followed it, possibly just before it was dropped: the drop is outside the volume
 * lock). Such offsets name other bytes now, so they must never be read, applied or appended
 * to; the caller reloads from .t instead (which the checkpoint made complete). */
int file_log_stale(scp_file *f) {
    uint8_t hdr[SCP_JRN_HDR_LEN];
    struct stat st;
    f->j_chk_end = 0;
    if (!f->j_end) return 0;
    VSTAT(log_stale_chk);
    /* The writer reads the header alone: under its writer lock nobody else changes the log,
     * and no writer shortens a log and leaves its header (journal_drop zeros it; journal_reset
     * zeros it before it truncates, and the next log's header follows), so the salt tells. A
     * reader also checks the length: a writer may be between the two. */
    int stale = f->fd_j < 0 ||
                (!f->writer && (scp_fstat_notime(f->fd_j, &st) < 0 || (uint64_t)st.st_size < f->j_end)) ||
                scp_pread_full(f->fd_j, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr ||
                memcmp(hdr + 8, f->j_salt, SCP_HASH_LEN) != 0;
    if (stale) VSTAT(log_stale);
    if (!stale && f->writer) f->j_chk_end = f->j_end; /* (see j_chk_end) */
    return stale;
}

/* Lazy publication step 3 (docs/volume-format.md, "Built: step 3"). The state followed is the
 * commit the manifest names (m_root) or, in shared mode, the last one past it in the log
 * (c_root): record which, and when a manifest names the state taken, the entries taken from
 * past commits are covered by its generation like any other (UNAPPLIED_PAST -> v->gen). */
static void past_named(scp_file *f) {
    size_t pos = 0;
    uint64_t i, g;
    while (u64map_next(&f->unapplied, &pos, &i, &g))
        if (g == UNAPPLIED_PAST) (void)u64map_put(&f->unapplied, i, f->vol->gen);
    f->past = 0;
}

static void file_took(scp_file *f, const scp_mentry *e, const uint8_t root[SCP_HASH_LEN],
                      uint64_t size) {
    memcpy(f->c_root, root, SCP_HASH_LEN);
    f->c_size = size;
    memcpy(f->m_root, e->root, SCP_HASH_LEN);
    f->m_size = e->size;
    int past = memcmp(root, e->root, SCP_HASH_LEN) != 0 || size != e->size;
    assert(!past || f->vol->shared || f->followed); /* (outside shared mode: read only) */
    if (f->past && !past) past_named(f); /* (named now: the manifest's generation covers them) */
    f->past = past;
}

static void tail_none(scp_file *f, uint64_t hint) {
    __atomic_store_n(&f->tail_none_at, f->j_end, __ATOMIC_RELAXED);
    __atomic_store_n(&f->tail_none_hint, hint, __ATOMIC_RELAXED);
}

int file_tail_moved(scp_file *f) {
    assert(f->vol->shared);
    if (!f->j_end || f->fd_j < 0) return 0;
    /* (the hint: the last appender's end, or 0 when a file that shares the slot stored there
     * last; then the end mark at our end decides: 16 zero bytes there, nothing was appended.
     * The memo of an earlier look is used only with a hint of ours: another file's value says
     * nothing about our log, and the value that was there at the look can come back after an
     * append of ours was stored and overwritten) */
    uint64_t hint = vol_jend_hint(f->vol, f->id);
    if (hint == f->j_end) return 0;
    if (hint && __atomic_load_n(&f->tail_none_at, __ATOMIC_RELAXED) == f->j_end &&
        __atomic_load_n(&f->tail_none_hint, __ATOMIC_RELAXED) == hint)
        return 0; /* (looked at with this hint already: nothing) */
    uint8_t h[SCP_JREC_HDR_LEN];
    static const uint8_t zero[SCP_JREC_HDR_LEN];
    if (scp_pread_full(f->fd_j, h, sizeof h, (off_t)f->j_end) != (ssize_t)sizeof h) return 0;
    if (memcmp(h, zero, sizeof h) != 0) return 1;
    tail_none(f, hint);
    return 0;
}

/* Shared mode: take in the commits appended past our place in the log (j_end), whoever wrote
 * them and whether or not a manifest names them yet (FOLLOW_ANY). Returns 1 if one was taken,
 * 0 if none, -1 if the table no longer checks out (the caller reloads) or on error. */
static int file_follow_tail(scp_file *f, const scp_mentry *e, scp_err *err) {
    if (!file_tail_moved(f)) return 0;
    struct follow_got got;
    uint64_t hint = vol_jend_hint(f->vol, f->id);
    int r = file_follow_to(f, e, f->j_end, FOLLOW_ANY, &got, err);
    if (r == 0) tail_none(f, hint); /* (a torn tail, a run: no commit there until it moves) */
    if (r <= 0) return r;
    uint8_t root[SCP_HASH_LEN];
    table_root(f, root);
    if (memcmp(root, got.root, SCP_HASH_LEN) != 0)
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "'%s': its journal does not follow", e->path);
    file_took(f, e, got.root, got.size);
    return 1;
}

int file_catch_tail(scp_file *f, const scp_mentry *e, scp_err *err) {
    assert(f->vol->shared && VOL_LOCK_HELD(f->vol));
    if (f->unloaded || f->modified || !f->j_end) return 0;
    /* (a manifest that names the commit we followed past to: named now, R4's "at") */
    if (f->past && memcmp(e->root, f->c_root, SCP_HASH_LEN) == 0 && e->size == f->c_size)
        file_took(f, e, f->c_root, f->c_size);
    int r = file_follow_tail(f, e, err);
    if (r < 0) {
        f->j_end = 0; /* (reload from .t and follow the whole log) */
        return file_load(f, e, err) < 0 ? -1 : 1;
    }
    return r;
}

int file_adopt_past(scp_file *f, long mi, scp_err *err) {
    scp_volume *v = f->vol;
    assert(v->shared && f->writer && f->past && !f->modified && VOL_LOCK_HELD(v));
    scp_mentry *e = v->man.e[mi];
    assert(memcmp(e->id, f->id, SCP_FILEID_LEN) == 0 && memcmp(e->root, f->m_root, SCP_HASH_LEN) == 0);
    /* Durable before a durable record names it: the past commits' records, and the chunks they
     * wrote in place (another process's writes: our unsynced flags do not know them) */
    if (fdatasync(f->fd_j) < 0 || fdatasync(f->fd_d) < 0 || (f->fd_s >= 0 && fdatasync(f->fd_s) < 0))
        return scp_fail_errno(err, "cannot sync '%s'", f->path);
    scp_mentry saved = *e;
    vol_file_hint_bump(v, f->id); /* (before the manifest that names it, as commit_name) */
    vol_mchg_note(v, e->path);
    e->size = f->c_size;
    memcpy(e->root, f->c_root, SCP_HASH_LEN);
    int64_t now = scp_now_ns();
    e->mtime_ns = e->ctime_ns = now;
    man_sync_links(&v->man, (size_t)mi);
    if (vol_commit_manifest(v, 1, err) < 0) {
        *e = saved;
        man_sync_links(&v->man, (size_t)mi);
        return -1;
    }
    file_took(f, v->man.e[mi], f->c_root, f->c_size);
    assert(!f->past);
    return 0;
}

/* R3's smallest form (docs/volume-format.md, "Session 27"): a durable commit empties the lazy
 * list, after which a process that opens the volume (or loads a file that is no longer
 * listed) follows each file to the commit its entry names and no further. So a commit that
 * a writer killed between its commit record and its manifest record left past the named one,
 * which this process took (f->past: it read it), is named by this durable commit, as
 * file_adopt_past names it for a writer: under f's writer lock (tried, never waited for: a
 * live writer names its own commits), with f's journal and data objects synced first. Without
 * it this process read the dead write and then, after its own durable commit of other files,
 * read the file as it was before (test_volume_forkstress; test_volume_lazy "pastdurable"). */
static int past_name_one(scp_volume *v, struct past_names *pn, scp_file *f, int rw_held) {
    assert(VOL_LOCK_HELD(v) && pn->n < PAST_NAMES_MAX);
    if (!rw_held && pthread_rwlock_trywrlock(&f->rw) != 0) return 0;
    long mi = f->past && !f->modified && !f->unloaded && f->path ? man_find(&v->man, f->path) : -1;
    scp_mentry *e = mi >= 0 ? v->man.e[mi] : NULL;
    int named = e && memcmp(e->id, f->id, SCP_FILEID_LEN) == 0 &&
                memcmp(e->root, f->m_root, SCP_HASH_LEN) == 0 && e->size == f->m_size;
    int own = f->writer;
    if (named && !own && !file_try_writer_lock(f)) named = 0;
    if (named && (fdatasync(f->fd_j) < 0 || fdatasync(f->fd_d) < 0 ||
                  (f->fd_s >= 0 && fdatasync(f->fd_s) < 0))) {
        if (!own) file_writer_unlock(f);
        named = 0;
    }
    if (!named) {
        if (!rw_held) pthread_rwlock_unlock(&f->rw);
        return 0;
    }
    struct past_name *p = &pn->a[pn->n++];
    p->f = f;
    p->own_writer = own;
    p->rw_held = rw_held;
    memcpy(p->root, e->root, SCP_HASH_LEN);
    p->size = e->size;
    p->mtime_ns = e->mtime_ns;
    p->ctime_ns = e->ctime_ns;
    vol_file_hint_bump(v, f->id); /* (before the manifest that names it, as commit_name) */
    vol_mchg_note(v, e->path);
    e->size = f->c_size;
    memcpy(e->root, f->c_root, SCP_HASH_LEN);
    e->mtime_ns = e->ctime_ns = scp_now_ns();
    man_sync_links(&v->man, (size_t)mi);
    return 1;
}

size_t vol_past_name(scp_volume *v, scp_file *const *held, size_t nheld, struct past_names *pn) {
    pn->n = 0; /* (VOL_LOCK_HELD asserted where a file is named: a volume's creation has none) */
    for (size_t i = 0; i < nheld && pn->n < PAST_NAMES_MAX; i++)
        if (held[i]->past) (void)past_name_one(v, pn, held[i], 1);
    for (scp_file *f = v->files; f && pn->n < PAST_NAMES_MAX; f = f->next) {
        int mine = 0;
        for (size_t i = 0; i < nheld && !mine; i++) mine = held[i] == f;
        /* (f->past read without f's lock: a hint; past_name_one reads it again under it) */
        if (!mine && __atomic_load_n(&f->past, __ATOMIC_RELAXED)) (void)past_name_one(v, pn, f, 0);
    }
    return pn->n;
}

void vol_past_named(scp_volume *v, struct past_names *pn, int ok) {
    assert(VOL_LOCK_HELD(v));
    for (size_t k = 0; k < pn->n; k++) {
        struct past_name *p = &pn->a[k];
        scp_file *f = p->f;
        long mi = man_find(&v->man, f->path);
        scp_mentry *e = mi >= 0 && memcmp(v->man.e[mi]->id, f->id, SCP_FILEID_LEN) == 0
                            ? v->man.e[mi] : NULL;
        assert(!ok || e);
        if (ok && e) {
            assert(memcmp(e->root, f->c_root, SCP_HASH_LEN) == 0 && e->size == f->c_size);
            file_took(f, e, f->c_root, f->c_size);
            assert(!f->past);
        } else if (e) { /* (the commit did not happen: the entry as it was) */
            memcpy(e->root, p->root, SCP_HASH_LEN);
            e->size = p->size;
            e->mtime_ns = p->mtime_ns;
            e->ctime_ns = p->ctime_ns;
            man_sync_links(&v->man, (size_t)mi);
        }
        if (!p->own_writer) file_writer_unlock(f);
        if (!p->rw_held) pthread_rwlock_unlock(&f->rw);
    }
    pn->n = 0;
}

int vol_past_commit(scp_volume *v, scp_err *err) {
    assert(VOL_LOCK_HELD(v));
    for (scp_file *f = v->files; f; f = f->next)
        if (__atomic_load_n(&f->past, __ATOMIC_RELAXED)) return vol_commit_manifest(v, 1, err);
    return 0;
}

/* file_load in shared mode (or when the manifest in memory is the scratch slot's): catch up
 * on our log if we can, else read the table and follow the whole log. In shared mode the
 * follow goes past the commit e names, to the last one in the log that checks out (R2), and
 * an entry that names a commit we already followed past (m_root: R4) leaves the state as it
 * is: a catch-up never moves a file back along its log. */
static int file_load_follow(scp_file *f, const scp_mentry *e, scp_err *err) {
    uint32_t cs = f->vol->cs;
    uint8_t root[SCP_HASH_LEN];
    /* (outside shared mode, a file with lazy commits: read only, and as far as a shared process
     * follows it, file_load) */
    int mode = f->vol->shared || f->followed ? FOLLOW_PAST : FOLLOW_NAMED;
    struct follow_got got;
    if (f->j_end && !f->unloaded && !f->modified) {
        int at = memcmp(e->root, f->c_root, SCP_HASH_LEN) == 0 && e->size == f->c_size;
        int passed = f->past && memcmp(e->root, f->m_root, SCP_HASH_LEN) == 0 && e->size == f->m_size;
        if (at || passed) {
            if (at) file_took(f, e, e->root, e->size);
            return 0;
        }
        /* (a manifest past our place names every commit up to it: what we took past the
         * named one is covered by its generation) */
        if (f->past) past_named(f);
        int r = file_follow_to(f, e, f->j_end, mode, &got, err);
        if (r < 0) return -1;
        if (r == 1) {
            table_root(f, root);
            if (memcmp(root, got.root, SCP_HASH_LEN) == 0) {
                file_took(f, e, got.root, got.size);
                return 0;
            }
        }
        if (r == 1) VSTAT(load_full_noroot);
        else VSTAT(load_full_nofind);
    } else {
        VSTAT(load_full_noend);
    }
    uint64_t n = nchunks_of(e->size, cs);
    /* The table in memory, when it is a whole loaded state (its clean pages' hashes are its
     * own at cur_n entries), is compared with what .t holds: table_reload keeps the hashes of
     * the pages that did not change. */
    uint64_t n_old = f->unloaded || !f->table ? 0 : cur_n(f);
    if (table_reserve(f, n, err) < 0) return -1;
    f->unloaded = 1;
    (void)file_open_slot(f, 0, NULL);
    changed_clear(f, 1);
    u64map_clear(&f->jmap);
    file_ct_forget(f);
    u64map_clear(&f->jlogged);
    u64map_clear(&f->unapplied);
    VSTAT(load_full);
    VSTAT_ADD(load_full_bytes, n * ENT);
    f->past = 0;
    uint64_t t = VSTAT_T0();
    if (table_reload(f, n_old, n) < 0) return scp_fail_errno(err, "cannot read the chunk table of '%s'", e->path);
    VSTAT_T1(load_table_ns, t);
    f->size = f->c_size = e->size;
    f->j_end = 0;
    f->j_clean = 0;
    int r = file_follow_to(f, e, 0, mode, &got, err);
    if (r < 0) return -1;
    if (r == 0) { /* (the state is .t's: no commit of the log names it, none is taken past it) */
        memcpy(got.root, e->root, SCP_HASH_LEN);
        got.size = e->size;
    }
    t = VSTAT_T0();
    table_root(f, root);
    VSTAT_T1(load_root_ns, t);
    if (memcmp(root, got.root, SCP_HASH_LEN) != 0)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': its chunk table does not match the manifest (the file was "
                        "modified, truncated, replaced or rolled back)",
                        e->path);
    file_took(f, e, got.root, got.size);
    f->unloaded = 0;
    return 0;
}

/* (Re)load the committed state of f from its objects and manifest entry e. */
int file_load(scp_file *f, const scp_mentry *e, scp_err *err) {
    /* A file this process has just created (file_get_new) has its objects open, and its
     * journal is empty or its header zeroed (adopt_spare): nothing to look for or redo. */
    int fresh = f->objs_new;
    f->objs_new = 0;
    assert(!fresh || e->size == 0);
    /* The sole holder's deferred applies go to .d before the state they belong to is dropped
     * (the writer's replay below would redo them too; a fork child has none) */
    if (u64map_count(&f->dapply)) {
        if (!f->vol->shared && f->writer) (void)file_data_flush(f, NULL);
        u64map_clear(&f->dapply);
    }
    if (f->vol->shared) return file_load_follow(f, e, err);
    /* Outside shared mode, a file with lazy commits (a shared-mode process's, live or killed:
     * the lock file lists it until a durable commit) is followed in memory too, never replayed
     * in place: try_replay would make a state that is not durable durable in .t and .d and
     * empty the journal that redoes it, and the next open's vol_settle_lazy, finding the lazy
     * root no longer redone by the journal, went back to the durable state, which .t no longer
     * matched: the file was lost for every process (test_volume_two_modes, found by
     * test_volume_forkstress with two programs at once; bench/RESULTS.md, fork20). Such a file
     * is not written here until a durable commit (any process's) made its state durable and
     * an ordinary reload took it in (writer_refresh). */
    if (vol_file_lazy(f->vol, f->id)) {
        /* As far as a shared process follows it: past the named commit to the last one that
         * checks out, a shared-mode writer's that died before naming it. Following only to
         * the named one, this process read an older state than the shared ones read, and
         * then, once one of them named the dead writer's commit, saw the file change with no
         * writer alive (test_volume_lazy "ordinary"; test_volume_forkstress, seed 1 round
         * 12: an ordinary reader took 9,475 bytes, the next shared one 7,667). */
        f->followed = 1; /* (before the follow: it decides how far) */
        return file_load_follow(f, e, err);
    }
    if (f->followed) { /* what the follow took in names the log, which this load forgets */
        u64map_clear(&f->jmap);
        u64map_clear(&f->jlogged);
        u64map_clear(&f->unapplied);
        f->j_end = 0; /* (the log followed: a writer's try_replay then replays it) */
        f->followed = 0;
        f->past = 0;
    }
    uint32_t cs = f->vol->cs;
    uint64_t n = nchunks_of(e->size, cs);
    if (table_reserve(f, n, err) < 0) return -1;
    /* Until the root checks out, the table is whatever the disk holds: an attacker's mix of
     * old entries would otherwise be served (each old chunk still authenticates on its own). */
    f->unloaded = 1;
    if (!fresh) (void)file_open_slot(f, 0, NULL); /* another process may have made it since: open it */
    changed_clear(f, 1);
    if (table_read(f, n) < 0) return scp_fail_errno(err, "cannot read the chunk table of '%s'", e->path);
    f->size = f->c_size = e->size;
    /* A journal that leads to the manifest's root means a commit whose apply may not have
     * reached the disk whole (the table may already match while data chunks do not): redo it.
     * Replay is idempotent. Any other journal is stale. */
    int rc = fresh ? 0 : try_replay(f, e, err);
    if (rc < 0) return -1;
    uint8_t root[SCP_HASH_LEN];
    table_root(f, root);
    /* A shared-mode writer's durable commit names a state whose entries are in its log until
     * its checkpoint writes them to .t, which it does holding the writer lock after the volume
     * lock is released (and then drops the log): a load here in between reads .t behind the
     * manifest, and cannot take the writer lock to replay (2), or finds the log dropped once
     * it can (0: .t is complete by then; read it again). volume_forkstress, two programs at
     * once. For the first, follow the log in memory, as a shared reader does, writing nothing
     * (its chunk records are authenticated when read): a state whose root checks out is the
     * committed one, and the file is reloaded before this process writes it (followed,
     * writer_refresh). */
    if (rc == 2 && memcmp(root, e->root, SCP_HASH_LEN) != 0 && file_load_follow(f, e, NULL) == 0) {
        f->followed = 1; /* (to the named commit only: the writer may be one outside shared
                          * mode, whose commit past it is not committed until named) */
        return 0;
    }
    if (rc == 0 && memcmp(root, e->root, SCP_HASH_LEN) != 0) {
        if (table_read(f, n) < 0) return scp_fail_errno(err, "cannot read the chunk table of '%s'", e->path);
        table_root(f, root);
    }
    if (memcmp(root, e->root, SCP_HASH_LEN) != 0)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': its chunk table does not match the manifest (the file was "
                        "modified, truncated, replaced or rolled back)",
                        e->path);
    memcpy(f->c_root, e->root, SCP_HASH_LEN);
    memcpy(f->m_root, e->root, SCP_HASH_LEN);
    f->m_size = e->size;
    f->past = 0;
    /* Whatever journal is on disk belongs to whoever writes next, who starts from a checkpoint. */
    file_ct_forget(f);
    f->j_end = 0;
    f->j_clean = 0;
    f->unloaded = 0;
    return 0;
}
/* fdatasync one of f's objects. A commit makes each object durable at most once before its
 * commit point (its data, then the journal that names it): a second flush of the same object
 * there would only cost a device round trip, and asserts that the order of its steps lost
 * track. Flushes after the commit point (a checkpoint of a long log) are the next state's. */
enum { FLUSHED_D = 1, FLUSHED_T = 2, FLUSHED_S = 4, FLUSHED_J = 8 };
static int flush(scp_file *f, int fd, unsigned which) {
    if (f->cstate == CS_WRITTEN) {
        assert(!(f->prep_flushed & which));
        f->prep_flushed |= which;
    }
    VSTAT(flush);
    return fdatasync(fd);
}

/* Make every commit this file has ever had durable in place: the data and table objects are
 * synced whatever this process wrote, since the last writer's in-place applies may still sit in
 * the page cache. After it the journal holds nothing that is needed. */
int file_checkpoint(scp_file *f, scp_err *err) {
    /* (the sole holder's table writes first: after the checkpoint the log may go) */
    if (!f->vol->shared && file_table_flush(f, err) < 0) return -1;
    if (flush(f, f->fd_d, FLUSHED_D) < 0 || flush(f, f->fd_t, FLUSHED_T) < 0)
        return scp_fail_errno(err, "cannot sync '%s'", f->path ? f->path : "file");
    f->d_unsynced = f->t_unsynced = 0;
    assert(!u64map_count(&f->dapply)); /* (written by file_table_flush above) */
    f->j_clean = 1;
    return 0;
}

int journal_release(scp_file *f, scp_err *err) {
    if (f->jl_fresh) return 0; /* (listed ahead: nothing of its own to keep) */
    return vol_jlist_has(f->vol, f->id) ? vol_mlog_sync(f->vol, err) : 0;
}

/* ---- gathered journal writes ------------------------------------------------------------
 * A journaled commit writes its chunk records (file_writeback), the copies of a small append's
 * fresh chunks (journal_fresh), its commit record (journal_seal) and, one-flush, its
 * manifest-log record (journal_put_mlog) one after the other at the log's end: four pwrites
 * of sqlite's one-row transaction, each a system call (and a trip through the shield). While
 * file_commit runs they are queued in memory instead (j_end counts them) and go out in one
 * pwrite before anything reads or syncs the journal (journal_drain): the same bytes at the same
 * offsets, in one call, before the same sync. Nothing else touches the journal meanwhile: the
 * commit holds the file's rw for writing. */
#define JQ_MAX (256u << 10) /* beyond this much queued, write what is queued first */

/* ---- preallocated journals ---------------------------------------------------------------
 * A new log is written over the old one's bytes (journal_reset; in shared mode since session
 * 19, journal_drop), so the journal object keeps its length and an fdatasync writes the data
 * alone. Shared mode truncated a dropped log before, and its log then grew at every append:
 * on ext4 every fdatasync of a grown file also writes the inode and the new blocks'
 * allocation through the file system's journal (PostgreSQL's WAL fsync: bench/RESULTS.md,
 * "shared13" profile). So the appender keeps the object ahead of the log's end with written
 * zeros, as PostgreSQL zero-fills its own WAL segments: a step of
 * max(64 KiB, min(1 MiB, the log's length)), so that one fdatasync in many pays the
 * allocation. Zeros end every walk (a record header of type 0: not a record), exactly as a torn
 * tail does, so no reader takes them for records; readers read as far as the last appender's
 * end (the journal end hint, vol_jend_hint) and not to the object's end. Zeros are written
 * only at and past the object's length under the file's writer lock (appends, truncations and
 * these writes are all a writer's), so they never cover a byte another process wrote. Up to
 * SCP_JOURNAL_REUSE_MAX only: the replay bound (journal_replay_max) holds for any size, as
 * for a reused journal's tail. Best effort: a failed zero write leaves the append to grow the
 * object, as before. Outside shared mode too (session 33): a private writer's first log grows
 * the object from nothing (a new file, or after the close's checkpoint truncated it), and
 * sqlite's one-row WAL transactions paid the grown file's flush at every commit of it (an
 * fdatasync of an 8.8 KB append here: 210 us growing, 100 us over written blocks); the zeros
 * count as the tail of an older log (j_stale), which the last close cuts off, and they start
 * only once a log passed the first step (a file that commits again and again). */
#define JROOM_MIN (64u << 10)
#define JROOM_MAX (1u << 20)
static void journal_room(scp_file *f, uint64_t need) {
    static uint8_t zeros[JROOM_MAX]; /* (never written: untouched .bss pages cost nothing) */
    if (!f->writer || f->fd_j < 0 || need > SCP_JOURNAL_REUSE_MAX) return;
    /* (outside shared mode only a log that already passed the first step: a file written once
     * or twice, a small file's creation through the journal say, gets no zeros) */
    if (!f->vol->shared && f->j_end < JROOM_MIN) return;
    int known = f->j_room && memcmp(f->j_room_salt, f->j_salt, SCP_HASH_LEN) == 0;
    if (known && need <= f->j_room) return;
    /* Zeros go only at and past `have`, which must not be below the open log's end. In shared
     * mode another writer may have appended since: the object's length. Outside it this
     * process alone extends the object: j_stale, the old log's length when this log began
     * (journal_reset) raised by each room made since (below), or the log's end; a guess below
     * the real length only writes zeros over an old log's tail, which nothing reads. */
    uint64_t have;
    if (f->vol->shared) {
        struct stat st;
        if (scp_fstat_notime(f->fd_j, &st) < 0) return;
        have = (uint64_t)st.st_size;
    } else {
        have = f->j_stale > f->j_end ? f->j_stale : f->j_end;
    }
    if (have < need) {
        uint64_t ahead = need < JROOM_MIN ? JROOM_MIN : need > JROOM_MAX ? JROOM_MAX : need;
        uint64_t to = (need + ahead + JROOM_MIN - 1) / JROOM_MIN * JROOM_MIN;
        if (to > SCP_JOURNAL_REUSE_MAX) to = SCP_JOURNAL_REUSE_MAX;
        for (size_t n; have < to; have += n) {
            n = to - have < sizeof zeros ? (size_t)(to - have) : sizeof zeros;
            if (scp_pwrite_full(f->fd_j, zeros, n, (off_t)have) < 0) return;
        }
    }
    f->j_room = have;
    memcpy(f->j_room_salt, f->j_salt, SCP_HASH_LEN);
    if (!f->vol->shared && have > f->j_stale) f->j_stale = have; /* (the close cuts them) */
}

/* ---- the end mark (shared mode) -----------------------------------------------------------
 * Shared mode writes a new log over the old one's bytes (journal_reset), so past a log's end
 * lie the old log's records, not zeros. Every append writes a record header of zeros right
 * behind its records, in the same pwrite: a walk that reaches the log's end
 * stops there (type 0: not a record) without running out of bytes, as it stopped at
 * journal_room's zeros, so a follower reads as far as the journal end hint and one header more,
 * never the old tail (a walk over the old tail would run out of bytes and read on to the
 * object's end, up to 9 MiB); and journal_skip_mrecs at the log's end finds zeros, not an old
 * type 3 record. The mark is not relied on for safety: the old tail never continues the new
 * log's chain (docs/volume-format.md, "Journal space reuse"), and a power cut that loses a mark
 * only makes the next walk read on. Written by the file's writer under its writer lock, at the
 * log's end, where no other process writes, in the pwrite of the records it follows
 * (journal_drain, and journal_append for a record that is not queued). */
static int journal_append(scp_file *f, const uint8_t *b, size_t len, scp_err *err) {
    assert(f->j_end >= SCP_JRN_HDR_LEN + f->jq_len);
    f->j_tail_commit = 0; /* (journal_seal and journal_put_mlog say otherwise after it) */
    if (f->jq_on && f->jq_len + len <= JQ_MAX) {
        /* (room for the end mark behind the queue: journal_drain) */
        uint8_t *q = scp_grow(f->jq, &f->jq_cap, f->jq_len + len + SCP_JREC_HDR_LEN, 16384);
        if (!q) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        f->jq = q;
        memcpy(f->jq + f->jq_len, b, len);
        f->jq_len += len;
        f->j_end += len;
        return 0;
    }
    if (journal_drain(f, err) < 0) return -1;
    if (f->vol->shared) {
        /* The record and its end mark in one pwrite, built in the (empty) queue's buffer: a
         * pwrite of the record and another of the mark cost a system call more per record
         * (shared mode's durable commits, whose queue is off, and a write-back in the middle
         * of a write over SCP_DIRTY_LIMIT). The same bytes at the same offsets; a kill can no
         * longer fall between the record and its mark (docs/volume-format.md, "A dropped log
         * written over"). A failed pwrite leaves the log as it was, as below (not a drain's
         * failure, which closes the log). */
        assert(f->jq_len == 0);
        uint8_t *q = scp_grow(f->jq, &f->jq_cap, len + SCP_JREC_HDR_LEN, 16384);
        if (!q) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        f->jq = q;
        memcpy(q, b, len);
        memset(q + len, 0, SCP_JREC_HDR_LEN);
        journal_room(f, f->j_end + len + SCP_JREC_HDR_LEN);
        if (scp_pwrite_full(f->fd_j, q, len + SCP_JREC_HDR_LEN, f->j_end) < 0)
            return scp_fail_errno(err, "cannot write the journal of '%s'", f->path);
        f->j_end += len;
        vol_jend_hint_set(f->vol, f->id, f->j_end);
        return 0;
    }
    journal_room(f, f->j_end + len + SCP_JREC_HDR_LEN);
    if (scp_pwrite_full(f->fd_j, b, len, f->j_end) < 0)
        return scp_fail_errno(err, "cannot write the journal of '%s'", f->path);
    f->j_end += len;
    return 0;
}

/* Write what is queued. If that fails (EIO, ENOSPC, possibly after part of it landed), the
 * bytes past the queue's start on disk are a torn tail. Outside shared mode the queue is kept
 * and the log in memory with it: the next drain writes the same bytes at the same offsets
 * (and whatever was queued since behind them), so the log on disk becomes what it would have
 * been had this pwrite worked and only a sync failed. Closing the log instead lost the queued
 * chunk records that the journal map and the table in memory still named: the next commit
 * began a new log without them, named their entries, and the file no longer authenticated
 * (test_volume_pcfail ordinary). A new log (journal_begin) or a fork drops a kept queue.
 * In shared mode the log is closed (j_end 0) and the process takes the file in again from
 * the log on disk (vfile.c, shared_rejoin); but not a queue kept from before the volume went
 * shared (the shield's fork prepare, whose commit failed too): its records are named by the
 * table in memory and nowhere else, and the file is modified, so its writer lock is held
 * until the queue is written or the file is closed (freed with it), as outside shared mode;
 * dropped, the next shared write began a new log without them (test_volume_pcfail "share"). */
int journal_drain(scp_file *f, scp_err *err) {
    if (!f->jq_len) return 0;
    size_t len = f->jq_len, mark = 0;
    f->jq_len = 0;
    journal_room(f, f->j_end + SCP_JREC_HDR_LEN);
    if (f->vol->shared) { /* the end mark, in the same pwrite (journal_append left room) */
        assert(f->jq_cap >= len + SCP_JREC_HDR_LEN);
        memset(f->jq + len, 0, SCP_JREC_HDR_LEN);
        mark = SCP_JREC_HDR_LEN;
    }
    if (scp_pwrite_full(f->fd_j, f->jq, len + mark, f->j_end - len) < 0) {
        int rc = scp_fail_errno(err, "cannot write the journal of '%s'", f->path);
        if (f->vol->shared && !f->jq_kept) {
            f->j_end = 0;
        } else {
            assert(f->modified);
            f->jq_len = len; /* (retried at the same offsets by the next drain) */
            f->jq_kept = 1;
        }
        f->j_clean = 0;
        return rc;
    }
    f->jq_kept = 0;
    if (f->vol->shared) vol_jend_hint_set(f->vol, f->id, f->j_end);
    return 0;
}

int journal_put_mlog(scp_file *f, const uint8_t *rec, size_t len, scp_err *err) {
    assert(f->j_end && len <= SCP_JMREC_MAX);
    uint8_t *r = malloc(SCP_JREC_HDR_LEN + len), chain[SCP_HASH_LEN];
    if (!r) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    scp_put_u32(r, SCP_JREC_MLOG);
    scp_put_u32(r + 4, 0);
    scp_put_u64(r + 8, len);
    memcpy(r + SCP_JREC_HDR_LEN, rec, len);
    memcpy(chain, f->j_chain, SCP_HASH_LEN);
    scp_journal_chain(chain, r, SCP_JREC_HDR_LEN); /* (its header: format.h) */
    /* (queued behind the commit's other records; the caller drains the queue, then syncs) */
    int tail_commit = f->j_tail_commit; /* (a run of type 3 records behind a commit record) */
    int rc = journal_append(f, r, SCP_JREC_HDR_LEN + len, err);
    if (rc == 0) {
        memcpy(f->j_chain, chain, SCP_HASH_LEN);
        f->j_tail_commit = tail_commit;
    }
    free(r);
    return rc;
}

/* Make room for a new log at offset 0. Outside shared mode the old log's bytes (checkpointed:
 * nothing needs them) are kept, up to SCP_JOURNAL_REUSE_MAX, and the new log is written over
 * them: the journal object keeps its size and blocks, so the commit's fdatasync writes the data
 * alone, as plain's WAL overwrites do, where appending to a truncated journal made every sync
 * write the inode and the block allocation too. The old tail is never taken for the new log:
 * the chain starts from the new header's random salt, so the walk (format.c, journal_walk)
 * stops at the first old record after the new log's end (docs/volume-format.md, "Journal
 * space reuse"). Shared mode too (it truncated until session 19): other processes may hold
 * offsets into the old log, but the new header's salt tells them (file_log_stale, the follow's
 * header check), and one that read the old header just before it changed and then the old
 * bytes behind it reads records of the old log at their own offsets, which is what it would
 * have read before the drop (a follow takes only what continues its chain; its journal map's
 * offsets then fail authentication at a read, which reloads, as after a truncation); the end
 * mark (journal_drain) keeps walks from reading into the old tail. */
/* (an old log's tail kept behind a new one must stay within what a load reads for any file
 * size: journal_replay_max is at least this) */
_Static_assert(SCP_JOURNAL_REUSE_MAX <= SCP_JRN_HDR_LEN + SCP_JOURNAL_MAX + 2ull * SCP_JOURNAL_PENDING_MAX,
               "a reused journal's stale tail could exceed the replay bound");
static int journal_reset(scp_file *f, scp_err *err) {
    struct stat st;
    f->j_stale = 0;
    if (scp_fstat_notime(f->fd_j, &st) == 0) {
        if ((uint64_t)st.st_size <= SCP_JOURNAL_REUSE_MAX) {
            f->j_stale = (uint64_t)st.st_size;
            return 0;
        }
        /* (the header first: a log shortened under its old header would pass another
         * process's salt check, file_log_stale, were this writer killed before the next
         * log's header; zeros end every walk at once, as journal_drop's do) */
        static const uint8_t z[SCP_JRN_HDR_LEN];
        if (scp_pwrite_full(f->fd_j, z, sizeof z, 0) == 0 &&
            ftruncate(f->fd_j, SCP_JOURNAL_REUSE_MAX) == 0) {
            f->j_stale = SCP_JOURNAL_REUSE_MAX;
            return 0;
        }
    }
    if (ftruncate(f->fd_j, 0) < 0)
        return scp_fail_errno(err, "cannot reset the journal of '%s'", f->path);
    return 0;
}

/* Shared mode: drop a checkpointed log (commit_finish, a log past SCP_JOURNAL_MAX) without
 * truncating the object: its header and first record header become zeros, so that every
 * process still holding offsets into the log finds another header salt (file_log_stale, the
 * follow's header check) and reloads from .t, which the checkpoint made complete; a load that
 * follows from offset 0 finds no record (a zero record header ends the walk at once) and takes
 * .t alone, as it did from a truncated journal. The next log is written over the old bytes
 * (journal_reset), so the object keeps its length and blocks and journal_room writes no zeros
 * for it. Caller holds the writer lock. */
static int journal_drop(scp_file *f) {
    assert(f->vol->shared && f->writer);
    static const uint8_t z[SCP_JRN_HDR_LEN + SCP_JREC_HDR_LEN];
    if (scp_pwrite_full(f->fd_j, z, sizeof z, 0) < 0) return -1;
    vol_jend_hint_set(f->vol, f->id, SCP_JRN_HDR_LEN);
    return 0;
}

/* Shared mode, a writer whose root is current: step over the type 3 records that another
 * process's durable commit put behind our append offset (vol_commit_oneflush), so that our next
 * records go behind them: written over, a durable commit's only synced copy would be gone. */
int journal_skip_mrecs(scp_file *f) {
    /* (it reads the records' length fields before anything authenticates them: safe because
     * type 3 records are appended only under the volume lock, which the caller holds, so none
     * is landing while we read; race24) */
    assert(VOL_LOCK_HELD(f->vol));
    struct stat st;
    if (!f->j_end || f->fd_j < 0 || scp_fstat_notime(f->fd_j, &st) < 0 ||
        (uint64_t)st.st_size <= f->j_end)
        return 0;
    uint64_t more = (uint64_t)st.st_size - f->j_end;
    size_t cap = more > (4u << 20) ? (4u << 20) : (size_t)more;
    /* In shared mode the object runs ahead of the log with zeros (journal_room): read up to
     * the last appender's end (the journal end hint) and one header more, or one header if
     * the hint is not ahead of us, and more only while the run continues past what was read.
     * The hint is not trusted: it decides how much is read at a time, not where we stop. */
    uint64_t hint = vol_jend_hint(f->vol, f->id);
    size_t want = hint > f->j_end && hint - f->j_end <= cap - SCP_JREC_HDR_LEN
                      ? (size_t)(hint - f->j_end) + SCP_JREC_HDR_LEN
                      : SCP_JREC_HDR_LEN;
    if (want > cap) want = cap;
    uint8_t *buf = NULL;
    size_t got = 0, off = 0;
    for (;;) {
        if (want > got) {
            uint8_t *nb = realloc(buf, want);
            if (!nb) {
                free(buf);
                return -1;
            }
            buf = nb;
            if (scp_pread_full(f->fd_j, buf + got, want - got, (off_t)(f->j_end + got)) !=
                (ssize_t)(want - got))
                break;
            got = want;
        }
        size_t need = 0; /* bytes the next record of the run needs beyond what was read */
        while (got - off >= SCP_JREC_HDR_LEN && scp_get_u32(buf + off) == SCP_JREC_MLOG &&
               scp_get_u32(buf + off + 4) == 0) {
            uint64_t n = scp_get_u64(buf + off + 8);
            if (n > SCP_JMREC_MAX) break;
            if (n > got - off - SCP_JREC_HDR_LEN) {
                need = off + SCP_JREC_HDR_LEN + (size_t)n;
                break;
            }
            scp_journal_chain(f->j_chain, buf + off, SCP_JREC_HDR_LEN); /* (its header) */
            off += SCP_JREC_HDR_LEN + (size_t)n;
        }
        if (!need && got - off < SCP_JREC_HDR_LEN) need = off + SCP_JREC_HDR_LEN;
        if (!need || got == cap) break;
        want = need > cap ? cap : need < 2 * got ? (2 * got > cap ? cap : 2 * got) : need;
    }
    f->j_end += off;
    free(buf);
    return 0;
}

/* Make sure a journal log is open for appending (format.h): a new log starts from a
 * checkpoint, because its header ends the old log's chain. */
static int journal_begin(scp_file *f, scp_err *err) {
    if (f->fd_j < 0) {
        /* Every file is created with its journal object; a volume from elsewhere may lack it,
         * and then its directory entry must be durable before the journal is relied on. */
        int fd = file_open_obj(f, ".j", O_RDWR, NULL);
        if (fd < 0) {
            fd = file_open_obj(f, ".j", O_RDWR | O_CREAT, err);
            if (fd < 0) return -1;
            if (fsync(f->vol->objfd) < 0) {
                close(fd);
                return scp_fail_errno(err, "cannot sync the objects directory");
            }
        }
        f->fd_j = fd;
    }
    if (f->j_end != 0) return 0;
    /* (a queue kept after a failed drain belongs to the log given up: journal_drain) */
    f->jq_len = 0;
    f->jq_kept = 0;
    /* Shared mode: entries of lazy commits that .t does not have (the unapplied set) live only
     * in the log on disk, and a checkpoint here syncs .t without applying them: a new log over
     * that one would lose them, and the others could not load the file. Only a failed journal
     * pwrite lets go of such a log (journal_drain), and the process then takes the file in
     * again (vfile.c, shared_rejoin); refuse rather than write over it if any path misses that. */
    if (f->vol->shared && u64map_count(&f->unapplied))
        return scp_fail(err, SCP_E_SYS, EIO,
                        "'%s': its journal log was lost by a failed write; not written", f->path);
    if (!f->j_clean && file_checkpoint(f, err) < 0) return -1;
    /* Also when clean: the tail of a longer older log would count against the next replay's
     * bound (journal_replay_max), which this file's size may have shrunk since. */
    if (journal_release(f, err) < 0) return -1;
    if (journal_reset(f, err) < 0) return -1;
    uint8_t salt[SCP_HASH_LEN], hdr[SCP_JRN_HDR_LEN];
    /* (public: the header's salt is on disk; its uniqueness is the DRBG's, scp_random_public) */
    if (scp_random_public(salt, sizeof salt, err) < 0) return -1;
    scp_journal_start(hdr, salt, f->j_chain);
    if (scp_journal_key(f->key, hdr, f->j_key, err) < 0) return -1;
    memcpy(f->j_salt, salt, SCP_HASH_LEN);
    /* (shared mode: the end mark behind the header, in the same pwrite) */
    uint8_t hm[SCP_JRN_HDR_LEN + SCP_JREC_HDR_LEN] = {0};
    memcpy(hm, hdr, sizeof hdr);
    if (scp_pwrite_full(f->fd_j, hm, f->vol->shared ? sizeof hm : sizeof hdr, 0) < 0)
        return scp_fail_errno(err, "cannot write the journal of '%s'", f->path);
    if (f->vol->shared) vol_jend_hint_set(f->vol, f->id, SCP_JRN_HDR_LEN);
    f->j_end = SCP_JRN_HDR_LEN;
    f->j_tail_commit = 0;
    f->j_clean = 0;
    /* (the deferred applies read the old log: the checkpoint before it wrote them) */
    assert(!u64map_count(&f->dapply));
    u64map_clear(&f->jlogged); /* the old log is gone */
    return 0;
}

int file_open_slot(scp_file *f, int create, scp_err *err) {
    if (f->fd_s >= 0) return 0;
    int fd = file_open_obj(f, ".s", O_RDWR, NULL);
    if (fd < 0 && create) {
        /* Its directory entry must be durable before a commit names a chunk in it. */
        fd = file_open_obj(f, ".s", O_RDWR | O_CREAT, err);
        if (fd < 0) return -1;
        if (fsync(f->vol->objfd) < 0) {
            close(fd);
            return scp_fail_errno(err, "cannot sync the objects directory");
        }
    }
    if (fd < 0) return create ? -1 : 0;
    f->fd_s = fd;
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- ciphertext kept from the write-back ---------------------------------------------------
 * A journaled commit reads back what it has just written: journal_fresh copies a small
 * append's fresh chunks from .d into the log, and apply_journal copies each journaled chunk
 * from the log into .d; one pread each (sqlite's WAL transaction: both, every time). A small
 * write-back keeps the ciphertext it sealed instead, with where it put it: a journal record's
 * offset, or slot 0 or 1 in place. A copy is used only if that is still where the chunk is
 * read from (the journal map names the same offset; a fresh chunk in slot 0), and all go at
 * the end of each commit, whatever its outcome, and whenever the journal map is emptied. */
struct ct_copy {
    uint64_t where; /* journal record offset, or CT_SLOT0 / CT_SLOT1 */
    uint8_t ct[];
};
#define CT_SLOT0 UINT64_MAX
#define CT_SLOT1 (UINT64_MAX - 1)
/* Copies kept per commit (SCP_CT_NEW: a large write-back keeps none beyond them, since copying
 * megabytes it writes once would cost more than the reads it saves) and in all while the sole
 * holder's applies wait (CT_KEEP_BYTES, per file): sqlite's WAL file takes two chunks per
 * transaction, and its log's checkpoint (file_data_flush) read them all back, about 8 KiB per
 * transaction (bench/RESULTS.md, "wal16" and "wal17"). 4 MiB holds the newest copy of every
 * chunk of sqlite's default WAL (1,000 pages of 4 KiB). */
#define CT_KEEP_BYTES (4u << 20)

/* Chunk i was sealed again and its copy is not kept: an older copy of it goes (what keeps
 * every copy that no commit stored since right: ct_after_commit). */
static void ct_drop(scp_file *f, uint64_t i) {
    uint64_t old;
    if (u64map_count(&f->ctc) && u64map_del(&f->ctc, i, &old)) free((void *)(uintptr_t)old);
}

static void ct_keep(scp_file *f, uint64_t i, uint64_t where, const uint8_t *ct) {
    uint64_t old;
    struct ct_copy *c = NULL;
    if (f->vol->shared) return; /* (other processes write the objects and follow the log) */
    if (f->ct_nnew >= SCP_CT_NEW) { /* (past the commit's count) */
        ct_drop(f, i);
        return;
    }
    if (u64map_get(&f->ctc, i, &old)) c = (struct ct_copy *)(uintptr_t)old;
    else if ((u64map_count(&f->ctc) + 1) * f->vol->cs > CT_KEEP_BYTES) return;
    else if (!(c = malloc(sizeof *c + f->vol->cs))) return;
    else if (u64map_put(&f->ctc, i, (uintptr_t)c) < 0) {
        free(c);
        return;
    }
    c->where = where;
    memcpy(c->ct, ct, f->vol->cs);
    f->ct_new[f->ct_nnew++] = i;
}

/* The kept ciphertext of chunk i if it is the one at `where`, else NULL. */
static const uint8_t *ct_kept(scp_file *f, uint64_t i, uint64_t where) {
    uint64_t v;
    if (!u64map_get(&f->ctc, i, &v)) return NULL;
    const struct ct_copy *c = (const struct ct_copy *)(uintptr_t)v;
    return c->where == where ? c->ct : NULL;
}

void file_ct_forget(scp_file *f) {
    size_t pos = 0;
    uint64_t k, v;
    if (u64map_count(&f->ctc))
        while (u64map_next(&f->ctc, &pos, &k, &v)) free((void *)(uintptr_t)v);
    u64map_clear(&f->ctc);
    f->ct_nnew = 0;
}

/* After a commit the kept copies go, except those of the records that the sole holder's
 * deferred applies name (f->dapply, the same offset): the write of the deferred applies then
 * need not read them back from the log (sqlite's WAL file at its checkpoint; its rollback
 * journal in DELETE mode, written, committed twice and closed in every transaction). Only
 * the copies this commit stored are checked: a copy checked after an earlier commit still
 * matches, since dapply's entry for a chunk changes only when a commit journals that chunk,
 * whose seal replaced the copy (ct_keep; past the commit's count or in a large write-back the
 * old copy is dropped, ct_drop), and dapply only loses entries all at once (file_data_flush,
 * which forgets every copy). A copy is used only where its offset matches anyway (ct_kept):
 * what this keeps right is memory, not data. Every copy kept names a record of the open log:
 * file_data_flush forgets them when it empties the set, before any new log can start (a copy
 * of an old log's record would otherwise pass for a new record at the same offset). */
static void ct_after_commit(scp_file *f) {
    uint64_t k, v, off;
    if (!u64map_count(&f->dapply)) {
        file_ct_forget(f);
        return;
    }
    for (uint32_t n = 0; n < f->ct_nnew; n++) {
        k = f->ct_new[n];
        if (!u64map_get(&f->ctc, k, &v)) continue; /* (a repeat, dropped already) */
        const struct ct_copy *c = (const struct ct_copy *)(uintptr_t)v;
        if (!u64map_get(&f->dapply, k, &off) || off != c->where) {
            u64map_del(&f->ctc, k, &v);
            free((void *)(uintptr_t)v);
        }
    }
    f->ct_nnew = 0;
#ifndef NDEBUG
    size_t pos = 0; /* (all of them while few: debug builds run the benchmarks too) */
    while (u64map_count(&f->ctc) <= SCP_CT_NEW && u64map_next(&f->ctc, &pos, &k, &v))
        assert(u64map_get(&f->dapply, k, &off) &&
               off == ((const struct ct_copy *)(uintptr_t)v)->where);
#endif
}

/* Keep the plaintext of chunk i, just sealed under its new entry, in the plaintext cache: the
 * next partial write of it (sqlite's next WAL frame fills the rest of the chunk) would
 * otherwise read and decrypt what it has just encrypted. Only small write-backs: a large one
 * would push out the cache's read-mostly chunks. */
static void writeback_cache(scp_file *f, uint64_t i, const uint8_t *pt) {
    if (pc_refill(f, i, pt)) return; /* its entry, refilled in place (cache.c) */
    struct pchunk *c = pc_take_written(f);
    if (!c) return;
    memcpy(c->data, pt, f->vol->cs);
    pc_put(f, i, c);
}

/* Encrypt every dirty chunk and write it out: fresh chunks in place, others to the journal. */
int file_writeback(scp_file *f, scp_err *err) {
    size_t n = u64map_count(&f->dirty);
    if (n == 0) return 0;
    uint32_t cs = f->vol->cs;
    uint64_t *idx = malloc(n * sizeof *idx);
    uint8_t *nonces = malloc(n * SCP_NONCE_LEN);
    uint8_t *buf = malloc(n * (SCP_JCHUNK_HDR_LEN + (size_t)cs));
    uint8_t *inplace = malloc(n);
    int rc = 0;
    if (!idx || !nonces || !buf || !inplace) {
        rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory writing back '%s'", f->path);
        goto out;
    }
    size_t pos = 0, k = 0;
    uint64_t key, val;
    while (u64map_next(&f->dirty, &pos, &key, &val)) idx[k++] = key;
    qsort(idx, n, sizeof *idx, cmp_u64);
    if (chunk_wkey_reserve(f, n, err) < 0 || scp_random_public(nonces, n * SCP_NONCE_LEN, err) < 0) {
        rc = -1;
        goto out;
    }
    uint64_t cn = com_n(f), limit = cur_n(f);
    /* Where each chunk goes (1 + its slot in place, 0 the journal), decided before any is
     * sealed (sealing changes the table). A batch this large overwrites in the other slots. */
    int over = (uint64_t)n * cs >= SCP_SLOT_MIN_BYTES;
    /* A small append outside shared mode: its fresh chunks go to the journal as records, as
     * overwrites do, not in place and then copied there (journal_fresh): the commit takes the
     * small-append path (choose_path: the same bound, and the journal map is not empty) and
     * the apply writes them with the overwritten chunks, one pwrite for sqlite's WAL frame
     * (the sole holder defers even that: apply_journal). Replay writes them to .d, as it
     * writes journal_fresh's copies. Not a file's first commit (cn = 0): a new small file,
     * such as sqlite's rollback journal in DELETE mode, is mostly closed right after it, and
     * the close would read the chunks back from the log to write them (file_table_flush). */
    int fresh_logged = !f->vol->shared && !over && cn > 0 && limit > cn &&
                       limit - cn <= SCP_FRESH_JOURNAL_BYTES / cs;
    for (k = 0; k < n; k++) {
        inplace[k] = idx[k] < limit && !(fresh_logged && idx[k] >= cn)
                         ? (uint8_t)(chunk_target(f, idx[k], over) + 1)
                         : 0;
        if (inplace[k] == 2 && rc == 0) rc = file_open_slot(f, 1, err);
    }
    /* In place: contiguous runs of one slot, one pwrite each. */
    size_t run_start = 0, run_len = 0;
    uint8_t *jbuf = buf; /* journal records are built after the fresh runs, in the same buffer */
    size_t jlen = 0;
    for (k = 0; k <= n && rc == 0; k++) {
        int fresh = k < n && inplace[k];
        if (run_len && (!fresh || idx[k] != idx[run_start] + run_len ||
                        inplace[k] != inplace[run_start])) {
            int slot = inplace[run_start] - 1;
            if (scp_pwrite_full(chunk_slot_fd(f, slot), buf, run_len * cs, idx[run_start] * cs) < 0)
                rc = scp_fail_errno(err, "cannot write '%s'", f->path);
            *(slot ? &f->s_unsynced : &f->d_unsynced) = 1;
            run_len = 0;
        }
        if (!fresh || rc < 0) continue;
        if (!run_len) run_start = k;
        u64map_get(&f->dirty, idx[k], &val);
        rc = chunk_seal(f, idx[k], (const uint8_t *)(uintptr_t)val, buf + run_len * cs,
                        nonces + k * SCP_NONCE_LEN, inplace[k] - 1, err);
        if (rc == 0 && !over)
            ct_keep(f, idx[k], inplace[k] == 1 ? CT_SLOT0 : CT_SLOT1, buf + run_len * cs);
        else if (rc == 0)
            ct_drop(f, idx[k]);
        if (rc == 0 && idx[k] < cn && u64map_put(&f->placed, idx[k], inplace[k] - 1u) < 0)
            rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        run_len++;
    }
    for (k = 0; k < n && rc == 0; k++) {
        if (inplace[k] || idx[k] >= limit) continue;
        if (jlen == 0 && journal_begin(f, err) < 0) {
            rc = -1;
            break;
        }
        uint8_t *r = jbuf + jlen;
        scp_put_u32(r, SCP_JREC_CHUNK);
        scp_put_u32(r + 4, 0);
        scp_put_u64(r + 8, idx[k]);
        u64map_get(&f->dirty, idx[k], &val);
        rc = chunk_seal(f, idx[k], (const uint8_t *)(uintptr_t)val, r + SCP_JCHUNK_HDR_LEN,
                        nonces + k * SCP_NONCE_LEN, 0, err); /* replay writes it to .d */
        /* The header carries the entry the chunk was sealed under, and the chain covers the
         * header only: the ciphertext is checked by its own tag (format.h). */
        if (rc == 0) memcpy(r + SCP_JREC_HDR_LEN, ent(f, idx[k]), ENT);
        if (rc == 0) scp_journal_chain(f->j_chain, r, SCP_JCHUNK_HDR_LEN);
        if (rc == 0 && !over) ct_keep(f, idx[k], f->j_end + jlen, r + SCP_JCHUNK_HDR_LEN);
        else if (rc == 0) ct_drop(f, idx[k]);
        if (rc == 0 && (u64map_put(&f->jmap, idx[k], f->j_end + jlen) < 0 ||
                        u64map_put(&f->jlogged, idx[k], 1) < 0))
            rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        jlen += SCP_JCHUNK_HDR_LEN + cs;
    }
    if (rc == 0 && jlen) rc = journal_append(f, jbuf, jlen, err);
    if (rc == 0) {
        for (k = 0; k < n; k++)
            if (u64map_del(&f->dirty, idx[k], &val)) {
                if (!over) writeback_cache(f, idx[k], (const uint8_t *)(uintptr_t)val);
                file_dirty_done(f, val);
            }
    }
out:
    free(idx);
    free(nonces);
    free(buf);
    free(inplace);
    return rc;
}

/* ---- commit ------------------------------------------------------------------------------- */

static int sync_fd(scp_file *f, int fd, int *flag, scp_err *err) {
    if (!*flag) return 0;
    unsigned which = fd == f->fd_d ? FLUSHED_D : fd == f->fd_t ? FLUSHED_T : FLUSHED_S;
    if (flush(f, fd, which) < 0) return scp_fail_errno(err, "cannot sync '%s'", f->path);
    *flag = 0;
    return 0;
}

/* A log holds at most SCP_JOURNAL_MAX bytes of earlier commits (a longer one is closed after
 * its commit), then the commit that recovery redoes, then what a writer that died had written
 * for its next one. Each of the last two: chunk records up to SCP_JOURNAL_PENDING_MAX plus one
 * write-back batch (SCP_DIRTY_LIMIT) past it, the copies of a small append's fresh chunks, and
 * a commit record with at most an entry per chunk of the committed size plus the fresh ones,
 * and a one-flush commit's manifest-log record (journal_begin truncates, so no older log's
 * tail adds to it). Not covered: a writer whose
 * manifest writes keep failing while it keeps committing (each failed commit's record stays). */
static uint64_t journal_replay_max(uint64_t size, uint32_t cs) {
    uint64_t rec = SCP_JCHUNK_HDR_LEN + (uint64_t)cs, fresh = SCP_FRESH_JOURNAL_BYTES / cs + 1;
    uint64_t one = SCP_JOURNAL_PENDING_MAX + (SCP_DIRTY_LIMIT / cs + 1) * rec + fresh * rec +
                   SCP_JCOMMIT_LEN(nchunks_of(size, cs) + fresh) + SCP_JREC_HDR_LEN + SCP_JMREC_MAX;
    return SCP_JRN_HDR_LEN + SCP_JOURNAL_MAX + 2 * one;
}

/* The first index in [i, lim) whose entry changed since the commit, or lim. Skips unchanged
 * bytes of the bitmap whole: a shared-mode write commits lazily every time, and walking a
 * large file's bitmap bit by bit at each one made a run of writes quadratic in its size. */
static uint64_t changed_next(scp_file *f, uint64_t i, uint64_t lim) {
    uint64_t end = lim < f->chg_hi ? lim : f->chg_hi;
    if (i < f->chg_lo) i = f->chg_lo;
    while (i < end) {
        if (i % 8 == 0 && !f->changed[i / 8]) {
            i += 8;
            continue;
        }
        if (changed_get(f, i)) return i;
        i++;
    }
    return lim;
}

/* Write the entries of f->unapplied where they stand in the table now, in index order, one
 * pwrite per run of neighbours (a WAL segment's lazy commits leave hundreds), and empty it. */
static int write_unapplied(scp_file *f, scp_err *err) {
    size_t nu = u64map_count(&f->unapplied), k = 0, pos = 0;
    if (nu == 0) return 0;
    uint64_t *idx = malloc(nu * sizeof *idx), i, g;
    if (!idx) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    while (u64map_next(&f->unapplied, &pos, &i, &g))
        if (i < cur_n(f)) idx[k++] = i; /* (else shrunk since) */
    if (k) qsort(idx, k, sizeof *idx, cmp_u64);
    int rc = 0;
    for (size_t a = 0, b; rc == 0 && a < k; a = b) {
        for (b = a + 1; b < k && idx[b] == idx[b - 1] + 1;) b++;
        if (scp_pwrite_full(f->fd_t, ent(f, idx[a]), (b - a) * ENT, idx[a] * ENT) < 0)
            rc = scp_fail_errno(err, "cannot apply the journal of '%s'", f->path);
        f->t_unsynced = 1;
    }
    free(idx);
    if (rc == 0) u64map_clear(&f->unapplied);
    return rc;
}

/* Write the ciphertext of the records that `m` names (chunk index -> record offset in the
 * open log) to .d, unsynced, in index order, each run of neighbours with one pwrite: sqlite's
 * WAL frame (24 + 4096 bytes) straddles two chunks, one write instead of two. A record this
 * commit wrote may still be kept in memory (ct_kept); the others are read back from the log,
 * in batches of APPLY_BATCH chunks, each batch's records in log order with one pread per
 * window of neighbouring records: the sole holder's deferred applies (a WAL segment's worth,
 * a thousand chunks) are read back at the checkpoint, and one pread per chunk would cost the
 * system call per transaction that the deferral saved. */
#define APPLY_BATCH 256u            /* chunks staged per batch, at most */
#define APPLY_CT_BYTES (256u << 10) /* and at most this much of them */
#define APPLY_WINDOW (256u << 10)   /* bytes of the log per pread */
/* Unneeded bytes read between two records, at most: a system call costs about as much as
 * copying 8 KiB here (bench/RESULTS.md, "Session 38"); PostgreSQL's WAL log holds each page's
 * last version far from the others, and a 64 KiB gap read most of the log. */
#define APPLY_GAP (8u << 10)
static int write_records(scp_file *f, const u64map *m, scp_err *err) {
    uint32_t cs = f->vol->cs;
    size_t nj = u64map_count(m), pos = 0, nk = 0;
    if (nj == 0) return 0;
    size_t nb = APPLY_CT_BYTES / cs > APPLY_BATCH ? APPLY_BATCH : APPLY_CT_BYTES / cs;
    if (nb == 0) nb = 1;
    if (nj < nb) nb = nj;
    uint64_t(*jv)[2] = malloc(nj * sizeof *jv); /* index, record offset */
    uint64_t(*ord)[2] = malloc(nb * sizeof *ord); /* a batch's records: offset, place */
    /* (the staging and the window: this thread's kept buffer, ciphertext only) */
    size_t ct_len = nb * cs + APPLY_WINDOW;
    uint8_t *ct = vol_bulk_scratch(ct_len);
    uint8_t *win = ct ? ct + nb * cs : NULL;
    uint64_t i, off;
    int rc = 0;
    if (!jv || !ord || !ct) {
        free(jv);
        free(ord);
        vol_bulk_release(ct, ct_len);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    while (u64map_next(m, &pos, &i, &off)) {
        jv[nk][0] = i;
        jv[nk++][1] = off;
    }
    assert(nk == nj);
    if (nj > 1) qsort(jv, nj, sizeof *jv, cmp_u64); /* (by index: the first u64) */
    for (size_t a = 0, bn; rc == 0 && a < nj; a += bn) {
        bn = nj - a < nb ? nj - a : nb;
        size_t no = 0;
        for (size_t c = 0; c < bn; c++) {
            const uint8_t *kept = ct_kept(f, jv[a + c][0], jv[a + c][1]);
            if (kept) memcpy(ct + c * cs, kept, cs);
            else {
                ord[no][0] = jv[a + c][1] + SCP_JCHUNK_HDR_LEN;
                ord[no++][1] = c;
            }
        }
        if (no > 1) qsort(ord, no, sizeof *ord, cmp_u64); /* (by offset) */
        for (size_t x = 0, y; rc == 0 && x < no; x = y) {
            uint64_t from = ord[x][0], end = from + cs;
            for (y = x + 1; y < no && ord[y][0] + cs - from <= APPLY_WINDOW && ord[y][0] <= end + APPLY_GAP; y++)
                end = ord[y][0] + cs;
            if (y == x + 1) {
                if (scp_pread_full(f->fd_j, ct + ord[x][1] * cs, cs, (off_t)from) != (ssize_t)cs)
                    rc = scp_fail_errno(err, "cannot apply the journal of '%s'", f->path);
                continue;
            }
            assert(end - from <= APPLY_WINDOW);
            if (scp_pread_full(f->fd_j, win, (size_t)(end - from), (off_t)from) != (ssize_t)(end - from)) {
                rc = scp_fail_errno(err, "cannot apply the journal of '%s'", f->path);
                break;
            }
            for (size_t z = x; z < y; z++) memcpy(ct + ord[z][1] * cs, win + (ord[z][0] - from), cs);
        }
        for (size_t c = 0, d; rc == 0 && c < bn; c = d) {
            for (d = c + 1; d < bn && jv[a + d][0] == jv[a + d - 1][0] + 1;) d++;
            if (scp_pwrite_full(f->fd_d, ct + c * cs, (d - c) * cs, jv[a + c][0] * cs) < 0)
                rc = scp_fail_errno(err, "cannot apply the journal of '%s'", f->path);
            f->d_unsynced = 1;
        }
    }
    free(jv);
    free(ord);
    vol_bulk_release(ct, ct_len);
    return rc;
}

int file_data_flush(scp_file *f, scp_err *err) {
    assert(!f->vol->shared); /* (shared mode applies at each durable commit: never deferred) */
    if (!u64map_count(&f->dapply)) return 0;
    if (write_records(f, &f->dapply, err) < 0) return -1;
    u64map_clear(&f->dapply);
    file_ct_forget(f); /* (copies of the log's records: ct_after_commit) */
    return 0;
}

int file_table_flush(scp_file *f, scp_err *err) {
    assert(!f->vol->shared); /* (in shared mode the set is lazy commits', applied durably) */
    if (file_data_flush(f, err) < 0) return -1;
    return write_unapplied(f, err);
}

/* CS_COMMITTED -> applied: write the journal's newest commit in place after the commit point,
 * without syncing: until a checkpoint the log can redo it (caller holds the volume lock).
 * With defer_t (the sole holder, outside shared mode) nothing is written: the records join
 * f->dapply and the entries f->unapplied, which file_table_flush writes (returns 1). */
static int apply_journal(scp_file *f, uint64_t lim, uint64_t to, int defer_t, scp_err *err) {
    assert(VOL_LOCK_HELD(f->vol));
    uint64_t i, off;
    int rc = 0;
    if (f->vol->shared) {
        assert(!u64map_count(&f->dapply));
        rc = write_records(f, &f->jmap, err);
    } else {
        /* This commit's records join the deferred ones (the newest record of a chunk wins), so
         * that one write covers both; on no memory, all of them now, the newest last. */
        size_t pos = 0;
        int nomem = 0;
        while (!nomem && u64map_next(&f->jmap, &pos, &i, &off)) nomem = u64map_put(&f->dapply, i, off) < 0;
        if (nomem || !defer_t) rc = file_data_flush(f, err);
        if (rc == 0 && nomem) rc = write_records(f, &f->jmap, err);
        if (nomem) defer_t = 0;
    }
    if (rc < 0) return rc;
    /* The sole holder's table writes wait (docs/volume-format.md, "Sole holder": deferred
     * table writes): the entries join the unapplied set, which the next checkpoint, the
     * writer's last close or the end of the sole holding writes to .t (file_table_flush).
     * Until then the journal log, which no new log replaces before that checkpoint, redoes
     * them after a crash, as it redoes any unsynced apply. */
    if (defer_t) {
        int nomem = 0;
        uint64_t gen = f->vol->gen;
        for (i = changed_next(f, 0, lim); i < lim && !nomem; i = changed_next(f, i + 1, lim))
            nomem = u64map_put(&f->unapplied, i, gen) < 0;
        for (i = lim; i < to && !nomem; i++) nomem = u64map_put(&f->unapplied, i, gen) < 0;
        if (!nomem) return 1;
        /* (out of memory: written now, with what is already waiting) */
    }
    /* Entries of lazy commits (shared mode) or of the sole holder's earlier commits, each
     * where it stands in the table now. */
    rc = write_unapplied(f, err);
    /* Changed entries, and a small append's [lim, to), one pwrite per run of neighbours (a
     * large overwrite changes many; sqlite's WAL frame changes the last entry and adds one). */
    for (i = changed_next(f, 0, lim); rc == 0 && i < to;) {
        uint64_t end = i + 1;
        while (end < to && (end >= lim || changed_get(f, end))) end++;
        if (table_write(f, i, end) < 0) rc = scp_fail_errno(err, "cannot apply the journal of '%s'", f->path);
        f->t_unsynced = 1;
        i = end < lim ? changed_next(f, end, lim) : end;
    }
    return rc;
}

/* Append copies of the fresh chunks [from, to), read back from the page cache where they were
 * just written in place. */
static int journal_fresh(scp_file *f, uint64_t from, uint64_t to, scp_err *err) {
    uint32_t cs = f->vol->cs;
    size_t cnt = 0, rl = SCP_JCHUNK_HDR_LEN + (size_t)cs;
    /* (a chunk with a record in the log, jmap, has its newest ciphertext there, not in .d:
     * shared mode journals a fresh chunk that the log already holds, chunk_target_shared) */
    for (uint64_t i = from; i < to; i++) cnt += !is_hole(ent(f, i)) && !u64map_get(&f->jmap, i, NULL);
    if (cnt == 0) return 0;
    uint8_t *buf = malloc(cnt * rl), *r = buf;
    if (!buf) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    int rc = 0;
    for (uint64_t i = from; i < to && rc == 0; i++) {
        if (is_hole(ent(f, i)) || u64map_get(&f->jmap, i, NULL)) continue;
        scp_put_u32(r, SCP_JREC_CHUNK);
        scp_put_u32(r + 4, 0);
        scp_put_u64(r + 8, i);
        assert(SCP_ENT_SLOT(ent(f, i)) == 0); /* (fresh: in .d, whose bytes are read back) */
        assert(!u64map_get(&f->dapply, i, NULL)); /* (its indices are below the committed count) */
        memcpy(r + SCP_JREC_HDR_LEN, ent(f, i), ENT);
        const uint8_t *kept = ct_kept(f, i, CT_SLOT0);
        if (kept)
            memcpy(r + SCP_JCHUNK_HDR_LEN, kept, cs);
        else if (scp_pread_full(f->fd_d, r + SCP_JCHUNK_HDR_LEN, cs, i * cs) != (ssize_t)cs)
            rc = scp_fail_errno(err, "cannot read back '%s'", f->path);
        scp_journal_chain(f->j_chain, r, SCP_JCHUNK_HDR_LEN);
        if (u64map_put(&f->jlogged, i, 1) < 0 && rc == 0)
            rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        r += rl;
    }
    if (rc == 0) rc = journal_append(f, buf, cnt * rl, err);
    free(buf);
    return rc;
}

/* A small commit's filled holes (chunks below the committed count whose committed entry is a
 * hole, written in place in slot 0: `placed`) copied into the log, so that the journal's sync
 * makes them durable with the commit record instead of a sync of .d before it: one flush per
 * commit instead of two (InnoDB's redo log, fallocated, fills a new 4 KiB chunk every few
 * commits on its first pass). The copies are read back as journal_fresh's are, and replay
 * writes them to slot 0 where they already stand; they join jlogged, so that no later write
 * in this log places the chunk again. Only outside shared mode (there, other processes follow
 * the log and the lazy list marks in-place data), only when every placed chunk is in slot 0,
 * and only when they and the commit's fresh chunks together stay within a small append's
 * copies (SCP_FRESH_JOURNAL_BYTES, which journal_replay_max's bound counts once per commit).
 * Returns 1 if copied (the caller skips sync_placed), 0 if not (sync_placed as before), -1 on
 * error.
 * With all = 0, or where the commit does not qualify, it copies only the placed chunks that
 * already have a record in the log: those an earlier attempt of this commit copied before it
 * failed short of its commit point (a placed chunk keeps its slot, so it was rewritten in
 * place since). Replay would otherwise write that stale copy over the bytes that the synced
 * .d holds and the new entry names; the new copy behind it is replayed last. At most the
 * 256 KiB the failed attempt copied, and only after a failure. */
static int journal_placed(scp_file *f, uint64_t nfresh, int all, scp_err *err) {
    size_t np = u64map_count(&f->placed), pos = 0, k = 0;
    uint32_t cs = f->vol->cs;
    if (!np || f->vol->shared) return 0;
    uint64_t idx[SCP_FRESH_JOURNAL_BYTES / SCP_VOLUME_MIN_CHUNK], i, slot;
    all = all && (np + nfresh) * cs <= SCP_FRESH_JOURNAL_BYTES;
    while (all && u64map_next(&f->placed, &pos, &i, &slot)) {
        if (slot != 0) all = 0; /* (a large overwrite's other slot: synced in place) */
        else if (!is_hole(ent(f, i))) idx[k++] = i; /* (placed, then cut off by a truncate) */
    }
    if (!all) {
        /* Only what a failed attempt copied, at most its 256 KiB: chunk_target never places a
         * chunk in slot 0 that has a record in the log, so a placed slot-0 chunk in jlogged
         * got its record here. (Slot 1 chunks in jlogged were journaled before a large
         * overwrite placed them in their other slot: their records name slot 0, not them.) */
        k = pos = 0;
        while (u64map_next(&f->placed, &pos, &i, &slot))
            if (slot == 0 && u64map_get(&f->jlogged, i, NULL) && !is_hole(ent(f, i))) {
                assert(k < sizeof idx / sizeof *idx);
                if (k < sizeof idx / sizeof *idx) idx[k++] = i;
            }
    }
    if (k == 0) return 0;
    np = k;
    qsort(idx, np, sizeof *idx, cmp_u64);
    size_t rl = SCP_JCHUNK_HDR_LEN + (size_t)cs;
    uint8_t *buf = malloc(np * rl), *r = buf;
    if (!buf) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    int rc = 0;
    uint8_t *pt = malloc(cs); /* (the copies' check: plaintext, wiped) */
    if (!pt) {
        free(buf);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    for (k = 0; k < np && rc == 0; k++, r += rl) {
        scp_put_u32(r, SCP_JREC_CHUNK);
        scp_put_u32(r + 4, 0);
        scp_put_u64(r + 8, idx[k]);
        assert(SCP_ENT_SLOT(ent(f, idx[k])) == 0); /* (placed in slot 0: .d's bytes are read back) */
        assert(!u64map_get(&f->dapply, idx[k], NULL)); /* (never placed: in jlogged) */
        memcpy(r + SCP_JREC_HDR_LEN, ent(f, idx[k]), ENT); /* the entry it was sealed under */
        const uint8_t *kept = ct_kept(f, idx[k], CT_SLOT0);
        if (kept)
            memcpy(r + SCP_JCHUNK_HDR_LEN, kept, cs);
        else if (scp_pread_full(f->fd_d, r + SCP_JCHUNK_HDR_LEN, cs, idx[k] * cs) != (ssize_t)cs)
            rc = scp_fail_errno(err, "cannot read back '%s'", f->path);
        /* Each copy must be the ciphertext its entry names, or a full walk (format 4) would
         * end the log at it and recovery would lose the commit. volume_powercut found such
         * copies: chunks placed and then cut off by a truncate (their entry a hole), now
         * skipped above. The check stays, as a guard that costs one AES-GCM open per filled
         * hole: a copy that fails it copies nothing, and the commit syncs .d as it did
         * before this path existed. */
        if (rc == 0 && chunk_open(f, idx[k], r + SCP_JCHUNK_HDR_LEN, pt, NULL) < 0) rc = 1;
    }
    scp_wipe(pt, cs);
    free(pt);
    if (rc == 0) {
        r = buf;
        for (k = 0; k < np && rc == 0; k++, r += rl) {
            scp_journal_chain(f->j_chain, r, SCP_JCHUNK_HDR_LEN); /* (headers only) */
            if (u64map_put(&f->jlogged, idx[k], 1) < 0) rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        }
    }
    if (rc == 0) rc = journal_append(f, buf, np * rl, err);
    free(buf);
    if (rc == 1) return 0;
    return rc < 0 ? -1 : all;
}

/* Append the commit record (the changed entries below lim and every entry in [from, to)), and
 * make the journal durable. */
static int journal_seal(scp_file *f, uint64_t lim, uint64_t from, uint64_t to,
                        const uint8_t root[SCP_HASH_LEN], int sync, scp_err *err) {
    if (journal_begin(f, err) < 0) return -1;
    uint64_t count = to - from;
    for (uint64_t i = changed_next(f, 0, lim); i < lim; i = changed_next(f, i + 1, lim)) count++;
    /* The payload (size, entries, root) is encrypted: the disk shows how many entries changed,
     * never the file's exact size (format.h). */
    size_t rlen = SCP_JCOMMIT_LEN(count), ptlen = SCP_JCOMMIT_PT_LEN(count);
    uint8_t *rec = malloc(rlen + ptlen);
    if (!rec) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    uint8_t *pt = rec + rlen;
    scp_put_u64(pt, f->size);
    uint8_t *p = pt + 8;
    assert(from >= lim); /* the entries go in index order: changed ones, then [from, to) */
    for (uint64_t i = changed_next(f, 0, lim); i < lim; i = changed_next(f, i + 1, lim)) {
        scp_put_u64(p, i);
        memcpy(p + 8, ent(f, i), ENT);
        p += SCP_JENTRY_LEN;
    }
    for (uint64_t i = from; i < to; i++) {
        scp_put_u64(p, i);
        memcpy(p + 8, ent(f, i), ENT);
        p += SCP_JENTRY_LEN;
    }
    memcpy(p, root, SCP_HASH_LEN);
    uint8_t chain[SCP_HASH_LEN];
    memcpy(chain, f->j_chain, SCP_HASH_LEN);
    VSTAT(jcommit_seal);
    int rc = scp_journal_commit_seal(f->j_key, f->id, f->j_end, count, pt, chain, rec, err);
    scp_wipe(pt, ptlen);
    if (rc == 0) rc = journal_append(f, rec, rlen, err);
    if (rc == 0 && sync && (journal_drain(f, err) < 0 || flush(f, f->fd_j, FLUSHED_J) < 0))
        rc = scp_fail_errno(err, "cannot write the journal of '%s'", f->path);
    if (rc == 0) {
        memcpy(f->j_chain, chain, SCP_HASH_LEN);
        f->j_tail_commit = 1;
    }
    free(rec);
    return rc;
}

static int any_changed(scp_file *f, uint64_t lim) { return changed_next(f, 0, lim) < lim; }

/* ---- the commit state machine ------------------------------------------------------------
 *
 * One commit (file_commit) moves a file through these states, after SQLite's pager.c: each
 * state says what is durable, and each step asserts the state it starts from (commit_step).
 * f->cstate holds it; it is CS_IDLE whenever no commit runs (f->rw held for writing keeps
 * commits of one file from overlapping).
 *
 *        CS_IDLE ---- nothing modified, or unlinked ----------------------> (return 0)
 *           |
 *           | file_writeback: every dirty chunk sealed; fresh chunks in place, overwrites
 *           | as journal records; nothing synced, the committed state is untouched
 *           v
 *       CS_WRITTEN --- the path is chosen here (enum commit_path)
 *           |
 *           | IN_PLACE: data and table synced (or a checkpoint); JOURNAL_*: the journal's
 *           | commit record appended and the journal synced (JOURNAL_REDO also syncs the fresh
 *           | chunks and their entries in place)
 *           v
 *      CS_PREPARED --- everything durable but the commit point
 *           |
 *           | vol_commit_manifest(durable): the manifest names the new root
 *           v
 *      CS_COMMITTED --- a crash from here on recovers the new state (the journal redoes it)
 *           |
 *           | JOURNAL_*: the journal applied in place, unsynced; a shrink truncates the objects
 *           v
 *       CS_APPLIED ---- the in-memory committed state (c_size, c_root) becomes the new one
 *           |
 *           v
 *        CS_IDLE
 *
 * A failure before CS_COMMITTED returns to CS_IDLE with the file still modified: the manifest
 * names the old root, so the old state is the file's, and the next commit starts over (its
 * write-back finds nothing dirty; what was sealed is in the table and the journal map). A
 * manifest entry that is gone (unlinked or replaced meanwhile) also ends at CS_PREPARED. A
 * failure in CS_COMMITTED (an apply error) returns to CS_IDLE and loads the file again as the
 * manifest names it (commit_reload: the writer's replay redoes the durable journal in place),
 * so that the next commit builds on the committed state. */
enum commit_path {
    COMMIT_IN_PLACE,      /* large appends, nothing below the committed size changed, no log
                           * open: data and table synced before the manifest, no journal */
    COMMIT_JOURNAL_SMALL, /* a small append (copied into the journal) and any overwrites: only
                           * the journal is synced before the manifest */
    COMMIT_JOURNAL_REDO,  /* overwrites and a large append: the overwrites through the journal,
                           * the fresh chunks synced in place */
};

/* Move f's commit from state `from` to `to`: only the transitions of the diagram are legal. */
static void commit_step(scp_file *f, enum commit_state from, enum commit_state to) {
    assert(f->cstate == from);
    assert((from == CS_IDLE && to == CS_WRITTEN) || (from == CS_WRITTEN && to == CS_PREPARED) ||
           (from == CS_PREPARED && to == CS_COMMITTED) ||
           (from == CS_COMMITTED && to == CS_APPLIED) || (to == CS_IDLE && from != CS_IDLE));
    (void)from;
    f->cstate = to;
}

/* Back to CS_IDLE from a failed step, passing its result through. */
static int commit_abort(scp_file *f, int rc) {
    commit_step(f, f->cstate, CS_IDLE);
    return rc;
}

/* The way this commit makes itself durable, decided in CS_WRITTEN. A log that is open keeps
 * the commit in the journal: its earlier commits must stay reachable from the manifest. */
static enum commit_path choose_path(scp_file *f, uint64_t n, uint64_t cn, uint64_t lim) {
    assert(f->cstate == CS_WRITTEN);
    uint64_t nfresh = n > cn ? n - cn : 0;
    int small = nfresh <= SCP_FRESH_JOURNAL_BYTES / f->vol->cs;
    /* (outside shared mode the unapplied set holds only the sole holder's deferred table
     * writes: committed, redone by the log, and written by the checkpoint an in-place commit
     * makes) */
    int redo = u64map_count(&f->jmap) > 0 || (f->vol->shared && u64map_count(&f->unapplied) > 0) ||
               any_changed(f, lim);
    if (redo) return small ? COMMIT_JOURNAL_SMALL : COMMIT_JOURNAL_REDO;
    if (small && (nfresh || f->j_end)) return COMMIT_JOURNAL_SMALL;
    return COMMIT_IN_PLACE; /* syncing in place anyway: that also closes an open log */
}

/* Chunks written in place below the committed count (placed): their ciphertext must be
 * durable before the commit record names it, since the journal holds only their entries. */
static int sync_placed(scp_file *f, scp_err *err) {
    if (!u64map_count(&f->placed)) return 0;
    if (sync_fd(f, f->fd_d, &f->d_unsynced, err) < 0) return -1;
    return f->fd_s >= 0 ? sync_fd(f, f->fd_s, &f->s_unsynced, err) : 0;
}

/* CS_WRITTEN -> CS_PREPARED: make everything but the commit point durable. Outside shared
 * mode a journaled commit leaves its journal unsynced (*jdefer): its commit point, a
 * manifest-log record behind its commit record, is made durable by the same sync (one-flush
 * commits, commit_point); if that cannot be, the journal is synced before the manifest. */
static int commit_prepare(scp_file *f, enum commit_path path, uint64_t n, uint64_t cn,
                          uint64_t lim, const uint8_t root[SCP_HASH_LEN], int *jdefer,
                          scp_err *err) {
    int jsync = f->vol->shared || !f->vol->mlog;
    *jdefer = path != COMMIT_IN_PLACE && !jsync;
    if (path != COMMIT_JOURNAL_SMALL && n > cn) {
        if (table_write(f, cn, n) < 0) return scp_fail_errno(err, "cannot write the chunk table of '%s'", f->path);
        f->t_unsynced = 1;
    }
    switch (path) {
    case COMMIT_JOURNAL_SMALL: {
        /* journal_begin first: a checkpoint it makes syncs .d, which sync_placed then skips */
        int copied = 0;
        if (journal_begin(f, err) < 0 ||
            (copied = journal_placed(f, n > cn ? n - cn : 0, 1, err)) < 0 ||
            (!copied && sync_placed(f, err) < 0) || journal_fresh(f, cn, n, err) < 0 ||
            journal_seal(f, lim, n > cn ? cn : n, n, root, jsync, err) < 0)
            return -1;
        break;
    }
    case COMMIT_JOURNAL_REDO:
        if (journal_begin(f, err) < 0 || journal_placed(f, 0, 0, err) < 0 || sync_placed(f, err) < 0 ||
            journal_seal(f, lim, n, n, root, jsync, err) < 0 ||
            sync_fd(f, f->fd_d, &f->d_unsynced, err) < 0 ||
            sync_fd(f, f->fd_t, &f->t_unsynced, err) < 0)
            return -1;
        break;
    case COMMIT_IN_PLACE:
        if (!f->j_clean ? file_checkpoint(f, err) < 0
                        : sync_fd(f, f->fd_d, &f->d_unsynced, err) < 0 ||
                              sync_fd(f, f->fd_t, &f->t_unsynced, err) < 0)
            return -1;
        break;
    }
    commit_step(f, CS_WRITTEN, CS_PREPARED);
    return 0;
}

/* Name f's new root in the in-memory manifest (caller holds vol_lock); the durable manifest
 * write that follows (commit_batch) is the commit point. Returns 1 if named (*saved holds the
 * old entry, at index *mi, to put back if that write fails), 0 if the file has no entry of its
 * own any more (nothing to name), -1 on error. */
static int commit_name(scp_file *f, const uint8_t root[SCP_HASH_LEN], long *mi_out,
                       scp_mentry *saved, scp_err *err) {
    assert(VOL_LOCK_HELD(f->vol));
    scp_volume *v = f->vol;
    assert(f->cstate == CS_PREPARED);
    long mi = f->path ? man_find(&v->man, f->path) : -1;
    if (mi < 0 || memcmp(v->man.e[mi]->id, f->id, SCP_FILEID_LEN) != 0)
        return 0; /* unlinked or replaced meanwhile by another process */
    scp_mentry *e = v->man.e[mi];
    /* The new state was built on c_root (writer_refresh made that the newest commit, and the
     * writer lock kept every other process from committing the file since). An entry that
     * names another root means that exclusion failed: the host aliased the objects so that two
     * processes hold "the" writer lock, or brought back an older manifest. Replacing the entry
     * would silently drop the other commit: refuse instead. */
    if (memcmp(e->root, f->c_root, SCP_HASH_LEN) != 0)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': another process committed it while this one was writing it (the "
                        "volume directory was tampered with); not committed",
                        f->path);
    *saved = *e;
    *mi_out = mi;
    /* Before the manifest that names the new root: a reader that then finds the slot at or
     * below its generation read the file before this commit (vol_file_unchanged). */
    vol_file_hint_bump(v, f->id);
    vol_mchg_note(v, e->path); /* (the next record's delta: manifest.c, mlog_delta) */
    e->size = f->size;
    memcpy(e->root, root, SCP_HASH_LEN);
    int64_t now = scp_now_ns();
    if (!__atomic_exchange_n(&f->mtime_kept, 0, __ATOMIC_RELAXED)) e->mtime_ns = now;
    e->ctime_ns = now; /* a change of content is a change of status too */
    man_sync_links(&v->man, (size_t)mi); /* every name of the file names the new root */
    return 1;
}

/* ---- group commit ---------------------------------------------------------------------------
 *
 * Threads that commit files of one volume at the same time share one durable manifest write:
 * each makes its own file's part durable (CS_PREPARED: its journal or its data, synced by the
 * thread itself, so those syncs run in parallel), then queues a request. A thread that finds
 * no leader becomes one: it takes every queued request, names all their roots under one
 * vol_lock, writes and syncs the manifest once (the commit point of every file in the batch),
 * applies each file's journal, and wakes the batch. Requests that arrive meanwhile wait for
 * the next leader, which takes them all. Each waiting thread holds its file's rw, so nothing
 * else touches a file while the leader works on it; the leader needs the volume's mu, which
 * no holder waits a file's rw under (the lock order at the top of volume.c).
 * Processes do not share manifest writes: each has its own manifest in memory; their commits
 * are serialized by the cross-process lock. */
struct gc_req {
    struct gc_req *next;
    scp_file *f;
    enum commit_path path;
    uint64_t n, cn, lim;
    const uint8_t *root;
    long mi;           /* the file's manifest entry (while named) */
    scp_mentry saved;  /* its old value */
    int named;         /* commit_name's result: 1 named, 0 nothing to name, -1 error */
    int jdefer;        /* its journal holds the commit record unsynced (commit_prepare) */
    int rc;            /* the request's result: 1 committed and applied, 0 nothing to name,
                        * -1 failed before the commit point, -2 failed applying (committed) */
    int done;          /* under gc_mu: the leader finished with this request */
    scp_err err;
};

static int commit_apply(scp_file *f, enum commit_path path, uint64_t n, uint64_t cn,
                        uint64_t lim, scp_err *err);

/* The commit point of a batch with `named` commits to name (caller holds vol_lock). One
 * whose journal is not synced yet: a one-flush commit, its manifest-log record in its journal
 * and one sync of the journal for both (plain's commit syncs once too). Otherwise (several,
 * or one that cannot go that way): their journals synced, then the manifest log. */
static int commit_point(scp_volume *v, struct gc_req *batch, int named, scp_err *err) {
    assert(VOL_LOCK_HELD(v));
    struct gc_req *r;
    for (r = batch; named == 1 && r; r = r->next) {
        if (r->named <= 0 || !r->jdefer) continue;
        int rc = vol_commit_oneflush(v, r->f, err);
        if (rc <= 0) return rc;
    }
    for (r = batch; r; r = r->next) {
        if (r->named <= 0 || !r->jdefer) continue;
        if (journal_drain(r->f, err) < 0) return -1;
        if (fdatasync(r->f->fd_j) < 0)
            return scp_fail_errno(err, "cannot sync the journal of '%s'", r->f->path);
        r->jdefer = 0;
    }
    return vol_commit_manifest(v, 1, err);
}

/* The leader's work for one batch: one vol_lock, one durable manifest write. */
static void commit_batch(scp_volume *v, struct gc_req *batch) {
    scp_err lerr = {0};
    struct gc_req *r;
    if (vol_lock(v, &lerr) < 0) {
        for (r = batch; r; r = r->next) {
            r->rc = -1;
            r->err = lerr;
        }
        return;
    }
    int named = 0;
    for (r = batch; r; r = r->next) {
        r->named = commit_name(r->f, r->root, &r->mi, &r->saved, &r->err);
        r->rc = r->named <= 0 ? r->named : -1;
        named += r->named > 0;
    }
    if (named && commit_point(v, batch, named, &lerr) < 0) {
        for (r = batch; r; r = r->next)
            if (r->named > 0) {
                *v->man.e[r->mi] = r->saved;
                man_sync_links(&v->man, (size_t)r->mi);
                r->err = lerr;
            }
        named = 0;
    }
    for (r = batch; r && named; r = r->next) {
        if (r->named <= 0) continue;
        commit_step(r->f, CS_PREPARED, CS_COMMITTED);
        r->rc = commit_apply(r->f, r->path, r->n, r->cn, r->lim, &r->err) < 0 ? -2 : 1;
    }
    vol_unlock(v);
}

/* CS_PREPARED -> CS_APPLIED (or back to CS_PREPARED on failure, CS_COMMITTED if the apply
 * failed): queue r and wait until a leader, possibly this thread, has committed it. */
static void group_commit(scp_volume *v, struct gc_req *r) {
    pthread_mutex_lock(&v->gc_mu);
    r->next = v->gc_queue;
    v->gc_queue = r;
    while (!r->done) {
        if (v->gc_leader) {
            pthread_cond_wait(&v->gc_cv, &v->gc_mu);
            continue;
        }
        v->gc_leader = 1;
        struct gc_req *batch = v->gc_queue;
        v->gc_queue = NULL;
        pthread_mutex_unlock(&v->gc_mu);
        commit_batch(v, batch);
        pthread_mutex_lock(&v->gc_mu);
        while (batch) { /* a request lives on its thread's stack: read next before done */
            struct gc_req *next = batch->next;
            batch->done = 1;
            batch = next;
        }
        v->gc_leader = 0;
        pthread_cond_broadcast(&v->gc_cv);
    }
    pthread_mutex_unlock(&v->gc_mu);
}

/* CS_COMMITTED -> CS_APPLIED: apply in place, unsynced (the journal redoes it until the next
 * checkpoint), and shrink the objects (caller holds vol_lock). */
static int commit_apply(scp_file *f, enum commit_path path, uint64_t n, uint64_t cn,
                        uint64_t lim, scp_err *err) {
    assert(VOL_LOCK_HELD(f->vol));
    uint32_t cs = f->vol->cs;
    int rc = 0;
    /* (a small append's fresh entries [cn, n) follow lim = cn: written with the changed ones) */
    /* The sole holder defers its table writes, except in a commit that shrinks (the objects
     * are cut below) or closes a long log (commit_finish checkpoints it). */
    int defer = f->vol->sole == SOLE_FRESH && !f->vol->shared && n >= cn && f->j_end <= SCP_JOURNAL_MAX;
    f->t_deferred = 0;
    if (path != COMMIT_IN_PLACE) {
        rc = apply_journal(f, lim, path == COMMIT_JOURNAL_SMALL && n > cn ? n : lim, defer, err);
        f->t_deferred = rc == 1;
        if (rc > 0) rc = 0;
    }
    if (rc == 0 && n < cn &&
        (ftruncate(f->fd_d, (off_t)(n * cs)) < 0 || ftruncate(f->fd_t, (off_t)(n * ENT)) < 0 ||
         (f->fd_s >= 0 && ftruncate(f->fd_s, (off_t)(n * cs)) < 0)))
        rc = scp_fail_errno(err, "cannot shrink '%s'", f->path);
    if (rc == 0) commit_step(f, CS_COMMITTED, CS_APPLIED);
    return rc;
}

/* The checkpoint of a log just closed (j_end = 0) after its last commit's apply: sync .d and .t,
 * make the manifest log's carried records durable, and (shared mode) drop the log. On a failure
 * the log stays, marked not clean, and the next log starts from a checkpoint; the next log is
 * written over this one (journal_reset). */
static void checkpoint_closed_log(scp_file *f) {
    assert(f->j_end == 0);
    if (file_checkpoint(f, NULL) == 0 &&
        (journal_release(f, NULL) < 0 || (f->vol->shared && journal_drop(f) < 0)))
        f->j_clean = 0;
}

/* CS_APPLIED -> CS_IDLE: the new state is the committed one in memory too. */
static void commit_finish(scp_file *f, enum commit_path path, uint64_t n, uint64_t cn,
                          const uint8_t root[SCP_HASH_LEN]) {
    assert(f->jq_len == 0); /* (the commit point wrote and synced the journal) */
    u64map_clear(&f->jmap);
    u64map_clear(&f->placed);
    /* (the sole holder's deferred table writes stay listed there: file_table_flush) */
    if (!f->t_deferred) u64map_clear(&f->unapplied);
    f->t_deferred = 0;
    /* Close the log after a shrink (a later append writes in place where the log may hold older
     * records of the same chunk; the next journaled commit checkpoints) or when it is long
     * (checkpointed here, so that whoever loads the file next has little to redo). */
    if (path == COMMIT_IN_PLACE || n < cn) {
        f->j_end = 0;
    } else if (f->j_end > SCP_JOURNAL_MAX) {
        f->j_end = 0; /* checkpoint now, or (if that fails) at the start of the next log */
        checkpoint_closed_log(f);
    }
    assert(!f->past); /* (a writer names the end of the log: file_adopt_past) */
    f->c_size = f->m_size = f->size;
    memcpy(f->c_root, root, SCP_HASH_LEN);
    memcpy(f->m_root, root, SCP_HASH_LEN);
    changed_clear(f, 0);
    f->modified = 0;
    commit_step(f, CS_APPLIED, CS_IDLE);
}

/* The long log's checkpoint needs no commit of its own (session 56): the fsync's durable commit
 * just made the state the log redoes the durable one, so the checkpoint is the tail of any
 * journaled commit, without its commit point: apply in place (here, under the volume lock, as
 * commit_apply), then sync .d and .t, make the manifest log's carried records durable, and
 * drop the log (file_checkpoint_long_log, outside the volume lock, as commit_finish). A crash
 * before the drop redoes the log over whatever part of the apply landed, as after any
 * commit's apply. Until session 55 the checkpoint was a no-op durable commit: three more
 * flushes (its commit record in .j, manifest.log, the lock file's list) for nothing that the
 * fsync had not made durable already. */
int file_checkpoint_long_apply(scp_file *f) {
    assert(FILE_WR_HELD(f) && VOL_LOCK_HELD(f->vol) && f->vol->shared && f->writer);
    if (f->modified || f->unloaded || f->j_end <= SCP_SHARED_CHECKPOINT_AT_SYNC) return 0;
    assert(f->cstate == CS_IDLE && f->jq_len == 0 && !f->past);
    /* (jmap: the log's newest record of each chunk, this process's and the ones it followed;
     * the unapplied set: the lazy commits' entries, which .t lacks) */
    if (apply_journal(f, 0, 0, 0, NULL) < 0) return -1; /* (nothing changed: lim = to = 0) */
    u64map_clear(&f->jmap);
    u64map_clear(&f->placed);
    f->j_end = 0; /* (on any failure from here the next log starts from a checkpoint) */
    return 1;
}

void file_checkpoint_long_log(scp_file *f) {
    assert(FILE_WR_HELD(f) && f->vol->shared && f->writer && !f->modified && f->j_end == 0);
    checkpoint_closed_log(f);
    file_ct_forget(f);
}

/* Make f's state durable and advance the volume tag. Caller holds f->rw for writing.
 *
 * Three paths (enum commit_path, docs/volume-format.md): through the journal (overwrites, small
 * appends, and any commit while a journal log is open), which syncs the journal and the
 * manifest and applies in place without syncing; or in place (large appends with nothing to
 * redo), which syncs data and table before the manifest and leaves nothing in the journal. */
static int file_commit_run(scp_file *f, scp_err *err);

int file_commit(scp_file *f, scp_err *err) {
    assert(FILE_WR_HELD(f));
    /* Gather the commit's journal writes (journal_append; not in shared mode, where other
     * processes follow the log). Whatever is still queued at the end (a commit that failed
     * before its sync, or found nothing to name) is written: the log in memory names it. */
    int was_on = f->jq_on;
    f->jq_on = !f->vol->shared;
    int rc = file_commit_run(f, err);
    (void)journal_drain(f, NULL);
    ct_after_commit(f);
    f->jq_on = was_on;
    return rc;
}

/* The commit point passed and the apply failed (r.rc -2: ENOSPC or EIO writing .d or .t, a
 * shrink's truncation): the manifest names the new state and the durable journal redoes it,
 * but the state in memory was left behind it (c_root the old root, still modified): the next
 * commit failed as "another process committed it while this one was writing it", a false
 * report of tampering, and the writes after it were lost (test_volume_pcfail "apply"). So the
 * file is taken in again as the manifest names it, as a load does: with the log let go (j_end
 * 0) the writer's own try_replay redoes the journal up to that commit into .d and .t and syncs
 * them, or (shared mode) the load follows the log in memory. Nothing uncommitted is dropped:
 * the commit took every write (the writer holds rw), and its records are what the replay
 * reads. If the load fails too the file stays unloaded (its writes and commits fail). Caller
 * holds f->rw for writing and the writer lock; f is in CS_COMMITTED. */
static void commit_reload(scp_file *f) {
    scp_volume *v = f->vol;
    commit_step(f, CS_COMMITTED, CS_IDLE);
    assert(!u64map_count(&f->dirty));
    u64map_clear(&f->jmap);
    u64map_clear(&f->placed);
    file_ct_forget(f);
    f->j_end = 0;
    f->jq_len = 0;
    f->jq_kept = 0;
    f->j_clean = 0;
    f->modified = 0;
    __atomic_store_n(&f->unloaded, 1, __ATOMIC_RELAXED); /* (until the load below succeeds) */
    if (vol_lock(v, NULL) == 0) {
        long i = f->path ? man_find(&v->man, f->path) : -1;
        if (i >= 0 && memcmp(v->man.e[i]->id, f->id, SCP_FILEID_LEN) == 0)
            (void)file_load(f, v->man.e[i], NULL);
        vol_unlock(v);
    }
}

static int file_commit_run(scp_file *f, scp_err *err) {
    assert(f->cstate == CS_IDLE);
    if (!f->modified || !f->path) return 0;
    if (f->unloaded) /* checked again here, under the write lock (check_handle is outside it) */
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': its chunk table does not match the manifest; not committed", f->path);
    if (file_writeback(f, err) < 0) return -1;
    f->prep_flushed = 0;
    commit_step(f, CS_IDLE, CS_WRITTEN);
    uint64_t n = cur_n(f), cn = com_n(f), lim = n < cn ? n : cn;
    enum commit_path path = choose_path(f, n, cn, lim);
    uint8_t root[SCP_HASH_LEN];
    table_root(f, root);
    int jdefer = 0;
    if (commit_prepare(f, path, n, cn, lim, root, &jdefer, err) < 0) return commit_abort(f, -1);
    struct gc_req r = {.f = f, .path = path, .n = n, .cn = cn, .lim = lim, .root = root,
                       .jdefer = jdefer};
    group_commit(f->vol, &r);
    if (r.rc <= 0) {
        if (r.rc < 0 && err) *err = r.err;
        if (r.rc == -2) { /* (committed, not applied) */
            commit_reload(f);
            return -1;
        }
        return commit_abort(f, r.rc < 0 ? -1 : 0);
    }
    commit_finish(f, path, n, cn, root);
    return 0;
}

/* Shared mode's commit after a write that no fsync has asked to be durable (vfile.c,
 * file_shared_publish): the journal gets the commit record, unsynced, and the scratch manifest slot
 * names the new root, unsynced; nothing is applied in place. Another process takes the state
 * in by following the log (file_follow). A durable commit later (any process's fsync, close or
 * exit: vol_commit_manifest) syncs the journals of every file listed in the lock file before
 * its manifest names them, and the next durable commit of this file applies its records.
 * Crash argument (docs/volume-format.md, "Shared mode"): until then the durable state is
 * untouched on disk (overwrites go to the journal; fresh and filled-hole chunks go in place
 * where the durable state has holes or nothing), so a kill or a power cut loses at most the
 * lazy commits.
 * Falls back to a durable commit for what is not done lazily: a shrink (the objects are
 * truncated), a long log (checkpointed). */
static int file_commit_lazy_run(scp_file *f, scp_err *err);

void (*vol_test_lazy_recorded)(scp_file *f);

void file_unkeep_vol(scp_file *f) {
    if (!f->vol_kept) return;
    assert(VOL_LOCK_HELD(f->vol));
    f->vol_kept = 0;
    vol_unlock(f->vol);
}

int file_commit_lazy(scp_file *f, scp_err *err) {
    VSTAT(commit_lazy);
    /* The write-back's journal records and the commit record go out in one pwrite (journal
     * queue, as file_commit's outside shared mode): drained before the manifest names the
     * commit, so that no process follows the log to bytes that are not there yet (file_follow
     * looks for the commit that a manifest names). */
    uint64_t t = VSTAT_T0();
    int was_on = f->jq_on;
    f->jq_on = 1;
    int rc = file_commit_lazy_run(f, err);
    file_unkeep_vol(f); /* (a run that returned before it named the write) */
    (void)journal_drain(f, NULL);
    f->jq_on = was_on;
    VSTAT_T1(commit_lazy_ns, t);
    return rc;
}

static int file_commit_lazy_run(scp_file *f, scp_err *err) {
    assert(f->cstate == CS_IDLE);
    if (!f->modified || !f->path) return 0;
    if (f->unloaded)
        return scp_fail(err, SCP_E_INTEGRITY, EIO,
                        "'%s': its chunk table does not match the manifest; not committed", f->path);
    uint64_t t = VSTAT_T0();
    if (file_writeback(f, err) < 0) return -1;
    VSTAT_T1(lazy_writeback_ns, t);
    uint64_t n = cur_n(f), cn = com_n(f), lim = n < cn ? n : cn;
    if (n < cn || f->j_end > SCP_JOURNAL_MAX) {
        file_unkeep_vol(f); /* (file_commit takes the volume lock itself) */
        return file_commit(f, err);
    }
    /* Chunks written in place (fresh, or filling holes: chunk_target_shared) are not copied
     * into the log: the record lists their entries, the lock file marks the file so that a
     * durable commit syncs its data objects first, and a volume opened after a crash takes
     * this state only if those chunks authenticate (vol_settle_lazy). */
    int inplace = n > cn || u64map_count(&f->placed) > 0;
    f->prep_flushed = 0;
    commit_step(f, CS_IDLE, CS_WRITTEN);
    uint8_t root[SCP_HASH_LEN];
    t = VSTAT_T0();
    table_root(f, root);
    VSTAT_T1(lazy_root_ns, t);
    t = VSTAT_T0();
    if (journal_begin(f, err) < 0 || journal_seal(f, lim, n > cn ? cn : n, n, root, 0, err) < 0 ||
        journal_drain(f, err) < 0)
        return commit_abort(f, -1);
    VSTAT_T1(lazy_journal_ns, t);
    assert(f->jq_len == 0);
    if (vol_test_lazy_recorded) vol_test_lazy_recorded(f);
    commit_step(f, CS_WRITTEN, CS_PREPARED); /* (written, not durable: this commit is lazy) */
    scp_volume *v = f->vol;
    if (f->vol_kept) { /* (held since this write's catch-up, writer_refresh: nobody moved) */
        assert(VOL_LOCK_HELD(v));
        f->vol_kept = 0; /* (released below, as if taken here) */
    } else if (vol_lock(v, err) < 0) {
        return commit_abort(f, -1);
    }
    t = VSTAT_T0();
    long mi = -1;
    scp_mentry saved;
    int named = commit_name(f, root, &mi, &saved, err), durable = 0;
    /* Listed already (with the mark this commit needs) since the last durable commit, which
     * would have emptied the list and moved dur_gen: no need to read the list again. */
    int listed = v->mlog && f->lazy_listed > inplace && f->lazy_listed_dur == v->dur_gen;
    uint64_t dur_before = v->dur_gen;
    if (named > 0 && !listed && vol_lazy_add(v, f->id, inplace) < 0) {
        /* no room in the list: make this one durable (its in-place chunks, then its journal) */
        durable = 1;
        if (sync_fd(f, f->fd_d, &f->d_unsynced, err) < 0 ||
            (f->fd_s >= 0 && sync_fd(f, f->fd_s, &f->s_unsynced, err) < 0) ||
            flush(f, f->fd_j, FLUSHED_J) < 0) {
            named = scp_fail_errno(err, "cannot sync '%s'", f->path);
            *v->man.e[mi] = saved;
            man_sync_links(&v->man, (size_t)mi);
        }
    }
    if (named > 0 && vol_commit_manifest(v, durable, err) < 0) {
        *v->man.e[mi] = saved;
        man_sync_links(&v->man, (size_t)mi);
        named = -1;
    }
    uint64_t gen = v->gen; /* this commit's (for the unapplied set) */
    /* (not when the manifest write turned durable after all, as the manifest log's does
     * when it cannot append: that emptied the list) */
    if (named > 0 && !durable && !listed && v->dur_gen == dur_before) {
        f->lazy_listed = 1 + inplace;
        f->lazy_listed_dur = dur_before;
    }
    if (named > 0) __atomic_store_n(&f->seen_gen, vol_pub_mark(v), __ATOMIC_RELAXED);
    VSTAT_T1(lazy_name_ns, t);
    vol_unlock(v);
    if (named <= 0) return commit_abort(f, named);
    commit_step(f, CS_PREPARED, CS_COMMITTED);
    /* Not applied: the records stay in the journal map (read from the log); the changed
     * entries and the fresh chunks' join the unapplied set (the next durable commit of the file
     * writes them to .t, as a small append's commit would), and the next commit record lists
     * only what changes after this one (replay walks every record of the log). */
    int nomem = 0;
    for (uint64_t i = changed_next(f, 0, lim); i < lim; i = changed_next(f, i + 1, lim))
        nomem |= u64map_put(&f->unapplied, i, gen) < 0;
    for (uint64_t i = lim; i < n; i++) nomem |= u64map_put(&f->unapplied, i, gen) < 0;
    if (!nomem) /* (else they stay marked: the next records list them again, as before) */
        changed_clear(f, 0);
    u64map_clear(&f->placed); /* (their entries are committed: later writes journal them) */
    assert(!f->past); /* (a writer names the end of the log: file_adopt_past) */
    f->c_size = f->m_size = f->size;
    memcpy(f->c_root, root, SCP_HASH_LEN);
    memcpy(f->m_root, root, SCP_HASH_LEN);
    f->modified = 0;
    commit_step(f, CS_COMMITTED, CS_IDLE);
    return 0;
}

