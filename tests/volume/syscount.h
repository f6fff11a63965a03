/* tests/volume/syscount.h - counted fcntl, stats and pread for the tests that count the volume
 * library's system calls (test_volume_kept, test_volume_sole). The test binary links with
 * -Wl,--wrap=fcntl -Wl,--wrap=statx -Wl,--wrap=pread -Wl,--wrap=fstat -Wl,--wrap=fstatat;
 * include this once, in its .c file. The
 * library stats its objects with statx (scp_fstat_notime, scp_fstatat_notime: common/util.h):
 * one on a descriptor (an empty path) counts as an fstat, one by name as an fstatat. */
#ifndef SCP_TESTS_VOLUME_SYSCOUNT_H
#define SCP_TESTS_VOLUME_SYSCOUNT_H

#include <stdarg.h>
#include <sys/stat.h>
#include <sys/types.h>

int __real_fcntl(int fd, int cmd, ...);
int __wrap_fcntl(int fd, int cmd, ...);
int __real_fstat(int fd, struct stat *st);
int __wrap_fstat(int fd, struct stat *st);
int __real_fstatat(int dirfd, const char *path, struct stat *st, int flags);
int __wrap_fstatat(int dirfd, const char *path, struct stat *st, int flags);
int __real_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *sx);
int __wrap_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *sx);
ssize_t __real_pread(int fd, void *buf, size_t n, off_t off);
ssize_t __wrap_pread(int fd, void *buf, size_t n, off_t off);

/* calls since the test last set them to 0 */
static long nfcntl, nfstat, npread;
static long nfstatat __attribute__((unused));
/* fstat and fstatat calls, never reset: the library must make none (they read the times,
 * common/util.h, scp_fstat_notime), and the tests do not call them */
static long ntimed;

int __wrap_fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *); /* (every command the library uses takes one argument) */
    va_end(ap);
    nfcntl++;
    return __real_fcntl(fd, cmd, arg);
}
int __wrap_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *sx) {
    if (*path) nfstatat++;
    else nfstat++;
    return __real_statx(dirfd, path, flags, mask, sx);
}
int __wrap_fstat(int fd, struct stat *st) {
    ntimed++;
    return __real_fstat(fd, st);
}
int __wrap_fstatat(int dirfd, const char *path, struct stat *st, int flags) {
    ntimed++;
    return __real_fstatat(dirfd, path, st, flags);
}
ssize_t __wrap_pread(int fd, void *buf, size_t n, off_t off) {
    npread++;
    return __real_pread(fd, buf, n, off);
}

#ifdef SYSCOUNT_VLOCK
/* With SYSCOUNT_VLOCK defined and -Wl,--wrap=vol_vlock_take -Wl,--wrap=vol_vlock_give: the
 * volume lock's takes and gives (src/volume/vlock.c), counted together in nvlock, as its two
 * fcntl calls were when it was the OFD lock alone: the lock is a mutex in the mapped lock page
 * now, taken without a system call. */
struct scp_volume;
int __real_vol_vlock_take(struct scp_volume *v, int try_first, int *waited, scp_err *err);
int __wrap_vol_vlock_take(struct scp_volume *v, int try_first, int *waited, scp_err *err);
void __real_vol_vlock_give(struct scp_volume *v);
void __wrap_vol_vlock_give(struct scp_volume *v);
static long nvlock;
int __wrap_vol_vlock_take(struct scp_volume *v, int try_first, int *waited, scp_err *err) {
    nvlock++;
    return __real_vol_vlock_take(v, try_first, waited, err);
}
void __wrap_vol_vlock_give(struct scp_volume *v) {
    nvlock++;
    __real_vol_vlock_give(v);
}
#endif

#endif
