/* scp/volume.h - protected volumes: encrypted, tamper-evident, crash-safe files.
 *
 * A volume is a directory on an untrusted disk. Inside it, every file is stored as AES-256-GCM
 * chunks under a per-file key, and a manifest (itself encrypted and authenticated) binds each
 * path to its file identity, size and content root. The design and the on-disk format are
 * described in docs/volume-format.md; read it before changing anything here.
 *
 * Paths inside a volume are '/'-separated, relative to the volume root ("a/b.txt" and "/a/b.txt"
 * are the same); "." and ".." components and empty names are refused.
 *
 * Durability and the volume tag
 *   Writes are buffered in memory and become durable at a *commit*: scp_vfile_fsync(), or
 *   scp_vfile_close() of a modified file (with scp_volume_set_lazy_close, a new file's close
 *   commits without making it durable: see there). Namespace operations (create, mkdir, rename, unlink,
 *   rmdir, truncate-on-open) commit at once. Every commit advances the volume tag: a 40-byte
 *   value (8-byte generation + 32-byte MAC over the whole committed state) that a freshness
 *   service can keep; opening the volume with that tag as `expected` refuses any older state.
 *   After a crash (process kill or power cut) each file reads as its last committed state.
 *
 * Concurrency
 *   All calls are thread-safe. Handles to one file within one process share one state, so
 *   writes by one thread are seen at once by the others. fork() may be called while other
 *   threads are inside volume calls: it waits for them (pthread_atfork), so the child gets a
 *   consistent state; the commit callback must not fork. Across processes (two programs, or
 *   parent and child after fork), commits are serialized by a lock file in the volume
 *   directory; a file is written by at most one process at a time (a second process's write
 *   fails with SCP_E_BUSY / EBUSY), and a process sees another's committed changes to a file
 *   when it opens the file (close-to-open consistency, like NFS).
 *
 * Errors: see scp/err.h. Integrity failures are SCP_E_INTEGRITY with sys = EIO; bytes that do
 * not authenticate are never returned.
 */
#ifndef SCP_VOLUME_H
#define SCP_VOLUME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "scp/err.h"

#define SCP_VOLUME_KEY_LEN 32
#define SCP_VOLUME_TAG_LEN 40
#define SCP_VOLUME_DEFAULT_CHUNK 4096u
#define SCP_VOLUME_MIN_CHUNK 4096u
#define SCP_VOLUME_MAX_CHUNK 65536u

/* Whether n is a chunk size a volume can have: a power of two in [SCP_VOLUME_MIN_CHUNK,
 * SCP_VOLUME_MAX_CHUNK]. (uint64_t: callers check values they parsed, before any narrowing.) */
static inline int scp_volume_chunk_ok(uint64_t n) {
    return n >= SCP_VOLUME_MIN_CHUNK && n <= SCP_VOLUME_MAX_CHUNK && (n & (n - 1)) == 0;
}

typedef struct scp_volume scp_volume;
typedef struct scp_vfile scp_vfile;

/* The freshness tag: generation (big-endian u64) followed by a 32-byte HMAC. */
typedef struct scp_volume_tag {
    uint8_t bytes[SCP_VOLUME_TAG_LEN];
} scp_volume_tag;

typedef struct scp_volume_info {
    uint32_t format_version;
    uint32_t chunk_size;
    uint64_t generation;  /* of the state in memory: commits since creation, durable or not */
    uint64_t file_count;  /* regular files */
    uint64_t dir_count;   /* directories, not counting the root */
    uint64_t total_bytes; /* sum of file sizes */
    scp_volume_tag tag;   /* of that state (scp_volume_tag_get: of the last durable one) */
} scp_volume_info;

/* NODE: a FIFO, socket or device name (metadata only; node_type says which). */
enum scp_vtype { SCP_VTYPE_FILE = 1, SCP_VTYPE_DIR = 2, SCP_VTYPE_NODE = 3, SCP_VTYPE_LINK = 4 };

typedef struct scp_vstat {
    enum scp_vtype type;
    uint64_t size;       /* bytes for files, the target's length for links, 0 otherwise */
    uint32_t mode;       /* permission bits as the program set them (metadata only) */
    uint32_t uid, gid;   /* owner as the program set it (metadata only) */
    int owner_unset;     /* a directory made before owners were recorded for directories:
                          * uid and gid are 0 but say nothing (docs/volume-format.md) */
    int64_t mtime_ns;    /* modification time, ns since the epoch */
    int64_t ctime_ns;    /* status change time (mtime on entries from before it was kept) */
    int64_t atime_ns;    /* access time: as created or set (setattr_times); reads never move it */
    uint64_t ino;        /* stable number for the file's identity within the volume */
    uint32_t node_type;  /* SCP_VTYPE_NODE: S_IFIFO, S_IFSOCK, S_IFCHR or S_IFBLK */
    uint64_t rdev;       /* SCP_VTYPE_NODE: the device number it was made with */
    uint32_t nlink;      /* names of the file (hard links); 0 for an open file without one
                          * left; for a directory 2 + its subdirectories (scp_volume_stat;
                          * 2 from readdir and scp_vfile_stat) */
} scp_vstat;

/* ---- the backing store ------------------------------------------------------------------ */

/* How scp_volume_store_chown makes a system call: syscall(2)'s arguments; returns the result,
 * or -errno. scp_volume_sys is syscall(2) itself; the shield passes its gate instead, since
 * its own calls must not reach the functions it interposes. */
typedef long (*scp_volume_sysfn)(long nr, long a1, long a2, long a3, long a4, long a5, long a6);
long scp_volume_sys(long nr, long a1, long a2, long a3, long a4, long a5, long a6);

/* Hand a volume's backing store, the directory dirfd (not the volume: open or not), to
 * uid:gid, for a root process that is about to become that user: the directory, its entries
 * and those of its objects/, no symbolic link followed. objects/ is handed after its entries,
 * and passed by when uid:gid owns it already (handed whole before; objects a root process
 * makes later go to its owner), so that a second hand-off costs a few calls, not one per
 * object. Goes on past a failure; returns 0, or the first failure's -errno. */
long scp_volume_store_chown(int dirfd, uid_t uid, gid_t gid, scp_volume_sysfn sys);

/* ---- volumes ---------------------------------------------------------------------------- */

/* Create an empty volume in `dir` (created if missing; must be empty if it exists).
 * chunk_size: a power of two in [SCP_VOLUME_MIN_CHUNK, SCP_VOLUME_MAX_CHUNK], or 0 for the
 * default (4 KiB). */
int scp_volume_create(const char *dir, const uint8_t key[SCP_VOLUME_KEY_LEN], uint32_t chunk_size,
                      scp_err *err);

/* Open a volume. `expected` may be NULL; when given, a committed state older than it fails
 * with SCP_E_ROLLBACK, and a state with the same generation but another MAC fails with
 * SCP_E_INTEGRITY. A newer state is accepted (the caller may compare tags after opening).
 * A wrong key fails with SCP_E_KEY. Interrupted commits are recovered here. */
scp_volume *scp_volume_open(const char *dir, const uint8_t key[SCP_VOLUME_KEY_LEN],
                            const scp_volume_tag *expected, scp_err *err);

/* Close the volume. Open files must have been closed first; returns -1 (and closes anyway,
 * committing what it can) if some were still open or a commit failed. */
int scp_volume_close(scp_volume *vol, scp_err *err);

/* The tag of the latest durable state (what scp_volume_on_commit last reported). */
void scp_volume_tag_get(scp_volume *vol, scp_volume_tag *out);

/* Hex form of a tag (80 chars + NUL) and back. parse returns -1 on malformed input. */
void scp_volume_tag_hex(const scp_volume_tag *tag, char out[2 * SCP_VOLUME_TAG_LEN + 1]);
int scp_volume_tag_parse(const char *hex, scp_volume_tag *out, scp_err *err);

/* A measurement aid: with SCP_VOLUME_STATS=PATH in the environment at start-up, the library
 * counts its shared-mode events (src/volume/vstats.h), a process and the children it forks
 * together, and the process that started counting (the one that loaded the library) appends
 * one line of them to PATH when it exits (a destructor, or this call first: the shield's exit
 * commit makes it); once; nothing in the children or when the variable was not set. */
void scp_volume_stats_dump(void);

int scp_volume_info_get(scp_volume *vol, scp_volume_info *out, scp_err *err);

/* Register a callback that runs after every commit, with the new tag (for a freshness
 * service). It runs with the volume lock held: it must not call back into the volume. */
typedef void (*scp_volume_commit_cb)(void *ctx, const scp_volume_tag *tag);
void scp_volume_on_commit(scp_volume *vol, scp_volume_commit_cb cb, void *ctx);

/* Shared mode, for processes that write the same files at once and expect each other's writes
 * without a close in between, as a page cache gives (a forked server such as PostgreSQL):
 * from now on every write of this process is committed (durably) before it returns and the
 * file's writer lock is released, a write waits for another process's write instead of
 * failing with EBUSY, and reads, sizes and stats first take in other processes' commits.
 * Costs a commit per write. Call it with no uncommitted writes (commit first): the writer
 * locks that this process holds on files without uncommitted writes are released, so another
 * process of the program can write them at once. Not undone. */
void scp_volume_set_shared(scp_volume *vol);
/* Take in what other processes committed since this process last looked (shared mode), so that
 * a child forked next starts from the newest state instead of catching up from where this
 * process last did: the shield calls it before a fork (a PostgreSQL postmaster, idle between
 * connections, fell hundreds of KiB of manifest log behind, and each backend walked or reloaded
 * all of it). No system call when nothing moved. An error is left for the next call to meet. */
void scp_volume_refresh(scp_volume *vol);
/* Lazy close (docs/volume-format.md, "Lazy close"), for a caller that promises what POSIX does
 * (the shield): from now on the close of a file created since the volume's last durable commit
 * commits it without a sync, as shared mode's writes do. The file is visible at once, to this
 * process and to every other, and durable at the next durable commit of any file or process:
 * an fsync, scp_volume_sync, scp_volume_close, or the open that finds it after a kill. A power
 * cut before that may undo the file's creation and content (never half of them), as on a file
 * system a closed file that nobody synced may go. A close of a file that a durable commit
 * already named is durable as before. No volume tag is reported for a lazy close. Not in
 * shared mode (its writes are lazy commits already). */
void scp_volume_set_lazy_close(scp_volume *vol, int on);
/* Private after exec (docs/volume-format.md, "Private after exec"). A process whose family is
 * in shared mode but that has not forked itself may write a volume privately while no other
 * process has it open: scp_volume_go_private returns 1 when it now holds the volume's private
 * lock (nobody else had the volume open), 0 otherwise (then call scp_volume_set_shared or
 * scp_volume_join_shared). A private holder must go shared when another process opens the
 * volume shared: scp_volume_private_wait blocks until one does (a watcher thread), and
 * scp_volume_private_wanted says whether one did, with one load from memory. To go shared: set_shared,
 * commit every file, set_shared again (as at a fork), then scp_volume_private_end, which lets
 * the waiting newcomers in. */
int scp_volume_go_private(scp_volume *vol);
int scp_volume_private_wanted(scp_volume *vol);
void scp_volume_private_wait(scp_volume *vol);
/* scp_volume_private_wait that also returns once *stop (a word of this process's own, one per
 * waiter: a private holding's stop word) is nonzero. A watcher must end with its holding
 * whatever the shared word says: the holding's end sets the word and wakes, but every other
 * process's scp_volume_go_private and scp_volume_try_sole clears it once the private lock is
 * gone (and the host may write it), so a waiter that looked after such a clear would sleep on
 * until the next newcomer. scp_volume_private_stop sets *stop and wakes the waiter: it waits on
 * both words at once (futex_waitv), so that wake is never lost; without futex_waitv (before
 * Linux 5.16, or refused by a filter) it looks at *stop at least every 100 ms. */
void scp_volume_private_wait_until(scp_volume *vol, const int *stop);
void scp_volume_private_stop(scp_volume *vol, int *stop);
void scp_volume_private_end(scp_volume *vol);
/* A private holder outside shared mode (a program that has not forked, whose family is not
 * shared either: sqlite3 started by scpctl run) is the volume's *sole holder*: its commits take
 * neither the cross-process lock nor a catch-up (docs/volume-format.md, "Sole holder"). When
 * another process opens the volume, it lets go with scp_volume_private_release instead of
 * going shared (the newcomer is another program; the two then work as two programs do). Every
 * scp_volume_open waits, before it reads the volume, until no process holds the private lock,
 * so a holder must have a watcher (scp_volume_private_wait) or a newcomer waits until it
 * releases, closes or exits. */
void scp_volume_private_release(scp_volume *vol);
/* Shared mode for a process that has just opened the volume: waits until a private holder (if
 * any) has gone shared, then scp_volume_set_shared. -1 on error (the volume stays usable as
 * not shared). */
int scp_volume_join_shared(scp_volume *vol, scp_err *err);
/* Back to the sole holding (docs/volume-format.md, "Back to the sole holding"): a process in
 * shared mode that finds nobody else with the volume open any more (the other program closed
 * it; the fork children exited) leaves shared mode and becomes the volume's sole holder again,
 * as scp_volume_go_private makes one: it commits everything durably (still shared), takes the
 * private lock only if no other process holds a presence lock (a live fork child, repaired or
 * not, keeps it shared), and reloads every open file as an open of the volume now would (its
 * log replayed into .t and .d). Returns 1 when it is the sole holder now (the caller then needs
 * a watcher, scp_volume_private_wait, and lets go as any holder does: scp_volume_private_end
 * after going shared, or scp_volume_private_release); 0 when nothing changed (not in shared
 * mode, private already, another process present, or a file busy in another thread, holding
 * uncommitted writes or without a name: try again later); -1 on error (the durable commit
 * failed: still shared, err set). A file whose reload fails is left unloaded (its writes fail
 * with EIO) and err says so, with 1 returned. Costs a durable commit and a reload per open
 * file; nothing when the volume is not shared. Not in two threads at once, nor beside
 * scp_volume_set_shared, _private_end, _private_release or _close of the same volume. */
int scp_volume_try_sole(scp_volume *vol, scp_err *err);
/* Register the library's fork handlers now (idempotent; otherwise done at the first open).
 * glibc runs prepare handlers in the reverse order of registration: a caller whose own prepare
 * handler makes volume calls (a commit before fork) and that opens volumes only later registers
 * the library's first, so that its prepare runs before the library takes its locks. */
void scp_volume_atfork_register(void);

/* ---- namespace -------------------------------------------------------------------------- */
/* Namespace operations (create, mkdir, rename, unlink, rmdir, setattr) are visible at once to
 * every process that opens the volume, and durable, as in POSIX, only at the next sync: a
 * commit of any file's content (scp_vfile_fsync, or the close of a modified file),
 * scp_volume_sync, or scp_volume_close. A power cut before that may undo them (never half of
 * one). The objects of a removed file are deleted once its removal is durable. */

/* Make every namespace operation so far durable (fsync of a directory). Reports the new tag. */
int scp_volume_sync(scp_volume *vol, scp_err *err);

/* Delete the objects of removed files that this process keeps for its next creates (object
 * reuse, docs/volume-format.md): for a process that exits or execs without
 * scp_volume_close, after its last scp_volume_sync (else the next opener's collection does). */
void scp_volume_drop_spares(scp_volume *vol);

/* For a process that ends without scp_volume_close (the shield's exit, after its last
 * scp_volume_sync): fold the manifest log into a slot, as a close does, when this process is
 * the volume's sole holder (private, outside shared mode: nobody else has it open, so nobody
 * reloads) and the log is long enough that walking it would cost the next opener more than
 * the slot: at least SCP_VOLUME_EXIT_FOLD_MIN bytes of records, and more than the manifest's
 * own encoded size. Without it every later open walks (authenticates and applies) each record
 * of every short command that committed since the last fold, up to 1 MiB. The state and its
 * tag do not change; the fold is durable (one fdatasync). Returns 1 if it folded, 0 if not
 * needed, -1 on error (the log stays as it was, and is read at the next open). */
#define SCP_VOLUME_EXIT_FOLD_MIN (32u * 1024u)
int scp_volume_fold_at_exit(scp_volume *vol, scp_err *err);

int scp_volume_stat(scp_volume *vol, const char *path, scp_vstat *st, scp_err *err);
/* scp_volume_stat without a directory's link count (nlink 0 for a directory): the type, mode,
 * owners and times that a permission check reads, at the cost of one lookup (a directory's
 * count walks its children: a create in a directory of 100,000 names would walk them all). */
int scp_volume_attrs(scp_volume *vol, const char *path, scp_vstat *st, scp_err *err);
int scp_volume_mkdir(scp_volume *vol, const char *path, uint32_t mode, scp_err *err);
int scp_volume_rmdir(scp_volume *vol, const char *path, scp_err *err);
/* Make a node (mknod): mode holds its type (S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK) and permission
 * bits; the volume keeps the name, owner, mode and rdev, never any data through it. */
int scp_volume_mknod(scp_volume *vol, const char *path, uint32_t mode, uint64_t rdev,
                     scp_err *err);
/* Symbolic links: the volume stores the target (any string of 1..4096 bytes) and never
 * follows it; scp_volume_stat reports the link itself. readlink copies at most size bytes
 * (no NUL) and returns the target's length (EINVAL: not a link). */
int scp_volume_symlink(scp_volume *vol, const char *target, const char *path, scp_err *err);
long scp_volume_readlink(scp_volume *vol, const char *path, char *buf, size_t size, scp_err *err);
/* For a resolver that follows links: the length of the shortest prefix of path (whole
 * components; the last one only if follow_last) that names a symbolic link, its target
 * copied into target (tsize bytes, NUL-terminated; ENAMETOOLONG if it does not fit); 0 if
 * the path walks through no link (up to its first missing or non-directory component). */
long scp_volume_first_link(scp_volume *vol, const char *path, int follow_last, char *target,
                           size_t tsize, scp_err *err);
/* Hard links: a second name `to` for the file, node or symbolic link at `from` (not a
 * directory: EPERM). Both names then read and write the same data, share mode, owner and
 * times, and report nlink; the objects go with the last name (and the last open handle).
 * EEXIST if `to` exists, EMLINK beyond SCP_VOLUME_LINK_MAX names. */
#define SCP_VOLUME_LINK_MAX 65000u
int scp_volume_link(scp_volume *vol, const char *from, const char *to, scp_err *err);
int scp_volume_unlink(scp_volume *vol, const char *path, scp_err *err);
/* Rename a file or directory; an existing destination file is replaced atomically (as
 * rename(2)); an existing destination directory must be empty. Two names of one file (hard
 * links): nothing happens, as POSIX says. */
int scp_volume_rename(scp_volume *vol, const char *from, const char *to, scp_err *err);
/* Metadata only (kept in the manifest, not enforced by the library). uid/gid of -1 or
 * mtime_ns of INT64_MIN leave that field unchanged. */
int scp_volume_setattr(scp_volume *vol, const char *path, int64_t mode, int64_t uid, int64_t gid,
                       int64_t mtime_ns, scp_err *err);
/* The same with the access time too (INT64_MIN: unchanged). Any change moves ctime to now;
 * a given time commits even when equal (utimensat moves ctime). */
int scp_volume_setattr_times(scp_volume *vol, const char *path, int64_t mode, int64_t uid,
                             int64_t gid, int64_t atime_ns, int64_t mtime_ns, scp_err *err);

/* Directory listing: calls cb for each entry of directory `path` in name order, with its name
 * (no slashes) and stat. A non-zero return from cb stops the walk and is returned. */
typedef int (*scp_readdir_cb)(void *ctx, const char *name, const scp_vstat *st);
int scp_volume_readdir(scp_volume *vol, const char *path, scp_readdir_cb cb, void *ctx,
                       scp_err *err);

/* ---- files ------------------------------------------------------------------------------ */

/* flags: O_RDONLY / O_WRONLY / O_RDWR, optionally O_CREAT, O_EXCL, O_TRUNC, O_APPEND (from
 * <fcntl.h>); other flags are ignored. mode is recorded as metadata when a file is created. */
scp_vfile *scp_vfile_open(scp_volume *vol, const char *path, int flags, uint32_t mode,
                          scp_err *err);

/* O_TMPFILE: a new empty file in directory dir ("" = the root) that has no name: its writes
 * stay in this process (nothing is committed) until scp_vfile_link gives it a name; closed
 * without one, its objects go as an unlinked file's do. flags: O_RDWR or O_WRONLY, with
 * O_EXCL it can never get a name (scp_vfile_link: ENOENT). A crash leaves no name, only
 * encrypted objects that no manifest names, which garbage collection removes later.
 * Another process's garbage collection may remove them meanwhile (it sees no name): the link
 * then fails with EIO instead of naming missing content. */
scp_vfile *scp_vfile_open_nameless(scp_volume *vol, const char *dir, int flags, uint32_t mode,
                                   scp_err *err);

/* Commit if modified, then release the handle (always released, even on error). */
int scp_vfile_close(scp_vfile *f, scp_err *err);

/* Positional I/O; they do not move the cursor. pread returns 0 at end of file; holes read as
 * zeros. pwrite on an O_APPEND handle writes at the end (as Linux). */
ssize_t scp_vfile_pread(scp_vfile *f, void *buf, size_t n, uint64_t off, scp_err *err);
ssize_t scp_vfile_pwrite(scp_vfile *f, const void *buf, size_t n, uint64_t off, scp_err *err);

/* For sending without a copy (the shield's sendfile): fills iov (at most maxiov entries) with
 * read-only pointers to the plaintext of the bytes from off on, as far as they are in the
 * library's plaintext cache of authenticated chunks, and returns how many bytes they cover
 * (0 if the first one is not cached: read with scp_vfile_pread, which caches it; -1 on a bad
 * handle). The memory stays valid and unchanged until scp_vfile_unpin; call it exactly once
 * after a return > 0, and do not hold the pin longer than one system call. */
struct iovec;
ssize_t scp_vfile_pin(scp_vfile *f, uint64_t off, size_t n, struct iovec *iov, int maxiov,
                      int *niov, scp_err *err);
void scp_vfile_unpin(scp_vfile *f);

/* Cursor I/O (one cursor per handle). */
ssize_t scp_vfile_read(scp_vfile *f, void *buf, size_t n, scp_err *err);
ssize_t scp_vfile_write(scp_vfile *f, const void *buf, size_t n, scp_err *err);
/* whence: SEEK_SET, SEEK_CUR or SEEK_END. Returns the new offset or -1. */
int64_t scp_vfile_seek(scp_vfile *f, int64_t off, int whence, scp_err *err);
/* The handle will read its file once, front to back (a copy of the whole file: the shield's
 * copies of programs and libraries it runs from a volume): its reads fill no entry of the
 * plaintext cache, which nobody would read again (filling one is a malloc, its page faults and
 * a copy per chunk: a third of such a copy's time). Reads of cached chunks still use them. */
void scp_vfile_advise_once(scp_vfile *f);
/* Turn the handle's O_APPEND on or off (fcntl F_SETFL): later writes go to the end, as at open. */
void scp_vfile_set_append(scp_vfile *f, int on);

/* Set the size; growing adds a hole that reads as zeros. */
int scp_vfile_truncate(scp_vfile *f, uint64_t size, scp_err *err);
/* fallocate(2) mode 0 or FALLOC_FL_KEEP_SIZE (keep_size 1): reserve the disk blocks that the
 * chunks of [off, off + len) take when first written (their place in the data object), and
 * grow the file to off + len unless keep_size. The chunks stay holes that read as zeros; no
 * ciphertext is written. A first write into the range then finds its blocks allocated, as in a
 * plain file, and cannot fail for want of space (later overwrites, which go to the journal or
 * the second slot, still can). A file system without fallocate reserves nothing (the size is
 * still set). Errors: EFBIG past the maximum size, ENOSPC, EIO. */
int scp_vfile_allocate(scp_vfile *f, uint64_t off, uint64_t len, int keep_size, scp_err *err);
/* fallocate(2) FALLOC_FL_ZERO_RANGE (keep_size 0 or 1) and FALLOC_FL_PUNCH_HOLE (keep_size 1):
 * [off, off + len) reads as zeros afterwards, the part inside the file written as zeros (at
 * off, also on an O_APPEND handle, all under the file's lock as one write) and, without
 * keep_size, the file grown to off + len as a hole. The space is not given back: a punched
 * range is ciphertext of zeros, like any write (a hole in the table would need its own crash
 * argument in shared mode). Errors: as scp_vfile_pwrite's; EINVAL for an empty range. */
int scp_vfile_zero_range(scp_vfile *f, uint64_t off, uint64_t len, int keep_size, scp_err *err);
uint64_t scp_vfile_size(scp_vfile *f);
int scp_vfile_stat(scp_vfile *f, scp_vstat *st, scp_err *err);

/* Record locks: a descriptor for the kernel's record locks (fcntl, OFD, flock) that stand for
 * locks on this file. It is a new open file description (O_RDWR, O_CLOEXEC) of the file's table
 * object, an inode that every process opening this file shares and on which the library takes
 * no locks of its own, so the kernel's lock semantics across processes apply unchanged (the
 * object's size does not matter: locks need no data). have: the descriptor a previous call
 * returned for this handle (returned as is), or -1 for a new one. Call it before every lock
 * operation: it first lets the library finish its fork bookkeeping, which closes descriptors
 * of the object (and so would drop the process's locks) if done after a lock was taken.
 * Returns the descriptor, or -1. */
int scp_vfile_lock_fd(scp_vfile *f, int have, scp_err *err);

/* A new name `to` for the handle's file (linkat with AT_EMPTY_PATH), as scp_volume_link;
 * ENOENT if the file has no name left (unlinked while open). A nameless file
 * (scp_vfile_open_nameless) gets its first name, and what was written so far is committed
 * under it. */
int scp_vfile_link(scp_vfile *f, const char *to, scp_err *err);

/* Make every write so far durable and advance the volume tag (a commit). */
int scp_vfile_fsync(scp_vfile *f, scp_err *err);

/* ---- verification ------------------------------------------------------------------------ */

/* Check every chunk of every file and the manifest. For each problem, calls problem_cb with
 * the path, the byte offset (or -1 for a file-level problem) and a message; progress_cb (may
 * be NULL) is told how many bytes of how many were checked. Returns the number of problems
 * found (0 = all good) or -1 if verification could not run at all. */
typedef void (*scp_verify_problem_cb)(void *ctx, const char *path, int64_t offset, const char *msg);
typedef void (*scp_verify_progress_cb)(void *ctx, uint64_t done, uint64_t total);
long scp_volume_verify(scp_volume *vol, scp_verify_problem_cb problem_cb,
                       scp_verify_progress_cb progress_cb, void *ctx, scp_err *err);

#endif
