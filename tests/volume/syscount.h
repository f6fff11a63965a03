/* tests/volume/syscount.h - counted fcntl, fstat and pread for the tests that count the volume
 * library's system calls (test_volume_kept, test_volume_sole). The test binary links with
 * -Wl,--wrap=fcntl -Wl,--wrap=fstat -Wl,--wrap=pread; include this once, in its .c file. */
#ifndef SCP_TESTS_VOLUME_SYSCOUNT_H
#define SCP_TESTS_VOLUME_SYSCOUNT_H

#include <stdarg.h>
#include <sys/stat.h>
#include <sys/types.h>

int __real_fcntl(int fd, int cmd, ...);
int __wrap_fcntl(int fd, int cmd, ...);
int __real_fstat(int fd, struct stat *st);
int __wrap_fstat(int fd, struct stat *st);
ssize_t __real_pread(int fd, void *buf, size_t n, off_t off);
ssize_t __wrap_pread(int fd, void *buf, size_t n, off_t off);

static long nfcntl, nfstat, npread; /* calls since the test last set them to 0 */

int __wrap_fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *); /* (every command the library uses takes one argument) */
    va_end(ap);
    nfcntl++;
    return __real_fcntl(fd, cmd, arg);
}
int __wrap_fstat(int fd, struct stat *st) {
    nfstat++;
    return __real_fstat(fd, st);
}
ssize_t __wrap_pread(int fd, void *buf, size_t n, off_t off) {
    npread++;
    return __real_pread(fd, buf, n, off);
}

#endif
