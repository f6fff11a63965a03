/* common/util.h - small helpers used everywhere: full I/O, hex, key files, memory. */
#ifndef SCP_COMMON_UTIL_H
#define SCP_COMMON_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "scp/err.h"

/* pread/pwrite/write that loop over short counts and EINTR. pread_full returns the number of
 * bytes read (less than n only at end of file) or -1 with errno set. */
ssize_t scp_pread_full(int fd, void *buf, size_t n, uint64_t off);
int scp_pwrite_full(int fd, const void *buf, size_t n, uint64_t off);
int scp_write_full(int fd, const void *buf, size_t n);

/* fstat and fstatat without the times: statx asked for the type, mode, owner, links, inode,
 * size and blocks only; st_atim, st_mtim and st_ctim come back zero. For the volume's own
 * objects, whose times nothing reads. Why: since Linux 6.13 (multigrain timestamps) a stat
 * that reads a file's mtime or ctime makes the next write to that file stamp a fine-grained
 * time, so every write dirties the inode, and on ext4 without a journal every fdatasync then
 * writes the inode's block as well as the data: one more synchronous write per flush (a
 * journal's flush under pgbench here 257 -> 217 us, bench/RESULTS.md, sessions 35-36). Falls
 * back to fstat/fstatat where the kernel has no statx or a seccomp profile refuses it. flags
 * as fstatat's (AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW). */
struct stat;
int scp_fstat_notime(int fd, struct stat *st);
int scp_fstatat_notime(int dirfd, const char *path, int flags, struct stat *st);

/* Read a whole regular file into a malloc'd buffer (at most max bytes; larger is an error). */
int scp_read_file(int dirfd, const char *name, size_t max, uint8_t **out, size_t *out_len,
                  scp_err *err);
/* As scp_read_file (and never through a symbolic link), into a private anonymous mapping that
 * the kernel fills before the read (MAP_POPULATE): a file of megabytes read into fresh malloc'd
 * pages takes a trapped page fault per 4 KiB as the copy touches them (dear on some hosts:
 * a volume's journals, read whole at an open). The bytes are this process's copy, as with a
 * buffer: the file's owner cannot change them after the caller checked them (a mapping of the
 * file itself would let it). Free with scp_file_copy_free(*out, *out_len). */
int scp_read_file_mapped(int dirfd, const char *name, size_t max, uint8_t **out,
                         size_t *out_len, scp_err *err);
void scp_file_copy_free(uint8_t *buf, size_t len);

/* Lowercase hex of n bytes into out (2n+1 bytes). */
void scp_hex(const uint8_t *in, size_t n, char *out);
/* Parse exactly 2n hex digits into out. Returns -1 on any other input. */
int scp_unhex(const char *in, uint8_t *out, size_t n);

/* Whether the calling thread holds mu: the check behind a "caller holds mu" rule,
 * assert(scp_mutex_held(&mu)), in debug builds. glibc records a held mutex's owner (its
 * thread id) in the mutex; under another C library the answer is 1 (not known, the assert
 * passes). */
int scp_mutex_held(pthread_mutex_t *mu);

/* Whether the calling thread holds rw for writing (glibc: the writer's thread id in the lock;
 * elsewhere 1), for assert(scp_rwlock_wrheld(&rw)). */
int scp_rwlock_wrheld(pthread_rwlock_t *rw);

/* Zero memory in a way the compiler cannot elide. */
void scp_wipe(void *p, size_t n);

/* A buffer of at least need bytes: buf itself when *cap holds need already, else buf grown by
 * realloc to the first power-of-two multiple of *cap (of first, when *cap is 0) that holds
 * need, with *cap set to it. NULL when out of memory: then buf and *cap are as they were. */
void *scp_grow(void *buf, size_t *cap, size_t need, size_t first);

/* Zeroed memory for structures that hold keys: page-aligned, excluded from core dumps
 * (MADV_DONTDUMP) and, where the limit allows, locked in RAM so it is never swapped out.
 * Returns NULL on failure. scp_secure_free wipes before unmapping. */
void *scp_secure_alloc(size_t n);
void scp_secure_free(void *p, size_t n);

/* Make this process undumpable and without core files (for tools that hold keys). */
void scp_no_core_dumps(void);

/* Read a 32-byte key file. Refuses files that group or others can access (SCP_E_KEY, with a
 * message that says to chmod 600), files of any other size, and non-regular files. */
int scp_key_file_read(const char *path, uint8_t key[32], scp_err *err);
/* Write 32 fresh random bytes to a new file with mode 0600 (fails if it exists). */
int scp_key_file_generate(const char *path, scp_err *err);

/* The exit code a shell would give for a child's wait status: its exit status, or 128 + the
 * signal that killed it. A death by a signal other than SIGINT and SIGPIPE is logged (as a
 * shell reports it) under who: otherwise a crashed program leaves no trace when its output
 * goes to a file or a pipe. */
int scp_exit_code(int wstatus, const char *who);

/* Current wall-clock time in ns since the epoch. */
int64_t scp_now_ns(void);

/* Read a whole regular file by path (at most max bytes; larger files fail). *out is malloc'd
 * and NUL-terminated; *len (if not NULL) gets the length. */
int scp_read_path(const char *path, size_t max, char **out, size_t *len, scp_err *err);
/* Write a file atomically (temporary file, fsync, rename) with the given mode. */
int scp_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode, scp_err *err);

/* 1 if the absolute path p is dir or lies below it ("/a/b" is within "/a", "/ab" is not; every
 * path is within "/"), else 0. Compares strings only: both normalized, no symlink resolved. */
int scp_path_within(const char *p, const char *dir);

/* openat2(2) of path relative to the directory descriptor dir with open flags (O_CLOEXEC is
 * added) and the RESOLVE_* bits in resolve: RESOLVE_IN_ROOT to resolve as a process whose root
 * is dir would, RESOLVE_BENEATH to refuse what leaves dir (EXDEV). An empty path is ".".
 * Returns the descriptor, or -1 with errno (ENOSYS before Linux 5.6). */
int scp_openat2(int dir, const char *path, int flags, unsigned long long resolve);

/* Parse s as a whole decimal integer in [min, max] (an optional sign, digits, nothing else: no
 * blanks, no trailing text, no empty string); 0 and *out set, or -1 (errno EINVAL for no
 * number, ERANGE outside the range) with *out untouched. For options and query fields, where
 * atoi would read "abc" as 0 and "10x" as 10. */
int scp_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Copy text that may come from a client into a line of output: control characters (C0, DEL,
 * and C1 in UTF-8) become \n, \t, \r or \xNN and a backslash becomes \\, so that the text
 * can neither start a new line or field nor drive a terminal. Always NUL-terminates out
 * (outsz > 0); a truncated result ends at a whole escape. Returns out. */
char *scp_escape_text(const char *in, char *out, size_t outsz);

#endif
