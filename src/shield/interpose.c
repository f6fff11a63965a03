/* shield/interpose.c - the fast path: libc's exported file functions, replaced.
 *
 * Each wrapper checks cheaply whether its descriptor is protected (a range test, plus a table
 * lookup for the rare ordinary numbers that a dup2 made protected) or whether its path lies
 * under a protected mount; if so it runs the emulation (core.c, path.c) directly, without a trap;
 * otherwise it calls the next definition (libc's). Everything not wrapped here that touches a
 * protected descriptor is caught by the seccomp filter instead (init.c), so this list is about
 * speed, not safety.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#include <utime.h>
#include <sys/xattr.h>
#include <termios.h>

#undef PF_FILE /* <sys/socket.h>'s; internal.h has its own */
#include "shield/internal.h"
#include "shield/net.h"

static void *next_sym(const char *name) {
    void *p = dlsym(RTLD_NEXT, name);
    if (!p) {
        static const char msg[] = "scp-shield: a libc function is missing\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        abort();
    }
    return p;
}
#define REAL(type, name) \
    static void *real_p_##name; \
    if (!real_p_##name) real_p_##name = next_sym(#name); \
    __typeof__(type) real_##name = (__typeof__(type))real_p_##name

static long ret(long r) {
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

/* ---- served work on the shield's stack ----------------------------------------------------
 * What the shield serves runs deep (a path call ~40 KiB of frames, then the volume library and
 * OpenSSL): a thread made with PTHREAD_STACK_MIN (16 KiB) overflowed in an open of a protected
 * path. So the calls below move onto the thread's shield stack, as the SIGSYS handler does
 * (sh_on_stack, init.c); what stays on the program's is the wrapper's own frame. */
struct deep {
    long nr;
    const long *a;
    long r;
    int flag; /* sh_path_syscall's trusted; sh_path_call's handled */
};
static long syscall_deep(void *v) {
    struct deep *d = v;
    return sh_syscall(d->nr, d->a);
}
static long path_syscall_deep(void *v) {
    struct deep *d = v;
    return sh_path_syscall(d->nr, d->a, d->flag);
}
static long path_call_deep(void *v) {
    struct deep *d = v;
    d->flag = sh_path_call(d->nr, d->a, &d->r);
    return 0;
}
static long deep_syscall(long nr, const long a[6]) {
    struct deep d = {.nr = nr, .a = a};
    return sh_on_stack(syscall_deep, &d);
}
static long deep_path_syscall(long nr, const long a[6], int trusted) {
    struct deep d = {.nr = nr, .a = a, .flag = trusted};
    return sh_on_stack(path_syscall_deep, &d);
}

static long call6(long nr, long a0, long a1, long a2, long a3, long a4, long a5) {
    long a[6] = {a0, a1, a2, a3, a4, a5};
    return ret(deep_syscall(nr, a));
}
/* The volume library's own calls (sh_in_lib) never name a protected descriptor, and must not
 * take sh.mu (the shield may hold it while calling into the library). */
#define P(fd) (sh.active && !sh_in_lib && sh_is_prot(fd))

/* Path-based: returns 1 if handled (result in *r, errno set). */
static int pcall(long nr, long a0, long a1, long a2, long a3, long a4, long *r) {
    if (!sh.active || sh_in_lib) return 0; /* the volume library never names protected paths */
    long a[6] = {a0, a1, a2, a3, a4, 0};
    struct deep d = {.nr = nr, .a = a};
    sh_on_stack(path_call_deep, &d);
    if (!d.flag) return 0;
    *r = ret(d.r);
    return 1;
}

/* Straight to the kernel through the gate (libc's own call would be trapped by the code filter
 * and come back to the shield). */
#define G(nr, a0, a1, a2, a3, a4) ret(sh_gate(nr, a0, a1, a2, a3, a4, 0))

/* A path call: served when its path is protected, else carried out by the kernel through the
 * gate; either way on one copy of the path, so that another thread changing the string cannot
 * make the kernel act on a path the shield never looked at (sh_path_syscall). The volume
 * library's own calls name no protected path and go straight to the kernel. Returns the
 * result or -errno (pathcall: errno set). */
static long pathcall_r(long nr, long a0, long a1, long a2, long a3, long a4) {
    if (!sh.active || sh_in_lib) return sh_gate(nr, a0, a1, a2, a3, a4, 0);
    long a[6] = {a0, a1, a2, a3, a4, 0};
    return deep_path_syscall(nr, a, 0);
}
#define pathcall(nr, a0, a1, a2, a3, a4) ret(pathcall_r(nr, a0, a1, a2, a3, a4))

/* ---- open -------------------------------------------------------------------------------- */

/* The program's open: served, or the kernel's open of the same copy of the path followed by
 * the trusted-file check (trusted.c). */
static long open_checked(int dirfd, const char *path, int flags, mode_t mode) {
    long a[6] = {dirfd, (long)path, flags, mode, 0, 0};
    return deep_path_syscall(SYS_openat, a, 1);
}

static int do_openat(int dirfd, const char *path, int flags, mode_t mode) {
    if (sh.active && !sh_in_lib) {
        long fd = open_checked(dirfd, path, flags, mode);
        if (fd >= SH_LIB_FD_MIN(sh.lo) && fd < sh.lo && sh.lo) sh.libfd[fd - SH_LIB_FD_MIN(sh.lo)] = 0;
        if (fd >= 0 && fd < sh.lo) sh_fdlist_opened(fd, path); /* (fdopendir's hint) */
        return (int)ret(fd);
    }
    int fd = (int)G(SYS_openat, dirfd, (long)path, flags, mode, 0);
    if (fd >= 0 && sh_in_lib && sh.lo && fd < SH_LIB_FD_MIN(sh.lo)) {
        /* the volume library's own descriptor: keep it away from the program's numbers (through
         * the gate: LIB_DUP) */
        long hi = sh_gate(SYS_fcntl, fd, (flags & O_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, SH_LIB_FD_MIN(sh.lo), 0, 0, 0);
        if (hi >= 0) {
            sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
            fd = (int)hi;
        }
    }
    if (fd >= SH_LIB_FD_MIN(sh.lo) && fd < sh.lo && sh.lo) {
        sh.libfd[fd - SH_LIB_FD_MIN(sh.lo)] = (unsigned char)(sh_in_lib != 0);
    }
    return fd;
}
#define MODE_ARG(flags) \
    mode_t mode = 0; \
    if ((flags) & (O_CREAT | O_TMPFILE)) { \
        va_list ap; \
        va_start(ap, flags); \
        mode = (mode_t)va_arg(ap, int); \
        va_end(ap); \
    }
SH_EXPORT int open(const char *path, int flags, ...) { MODE_ARG(flags); return do_openat(AT_FDCWD, path, flags, mode); }
SH_EXPORT int open64(const char *path, int flags, ...) { MODE_ARG(flags); return do_openat(AT_FDCWD, path, flags, mode); }
SH_EXPORT int openat(int d, const char *path, int flags, ...) { MODE_ARG(flags); return do_openat(d, path, flags, mode); }
SH_EXPORT int openat64(int d, const char *path, int flags, ...) { MODE_ARG(flags); return do_openat(d, path, flags, mode); }
SH_EXPORT int __open_2(const char *path, int flags);
SH_EXPORT int __open_2(const char *path, int flags) { return do_openat(AT_FDCWD, path, flags, 0); }
SH_EXPORT int __open64_2(const char *path, int flags);
SH_EXPORT int __open64_2(const char *path, int flags) { return do_openat(AT_FDCWD, path, flags, 0); }
SH_EXPORT int __openat_2(int d, const char *path, int flags);
SH_EXPORT int __openat_2(int d, const char *path, int flags) { return do_openat(d, path, flags, 0); }
SH_EXPORT int __openat64_2(int d, const char *path, int flags);
SH_EXPORT int __openat64_2(int d, const char *path, int flags) { return do_openat(d, path, flags, 0); }
SH_EXPORT int creat(const char *path, mode_t mode) { return do_openat(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, mode); }
SH_EXPORT int creat64(const char *path, mode_t mode) { return do_openat(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, mode); }

/* ---- descriptor I/O ---------------------------------------------------------------------- */

SH_EXPORT ssize_t read(int fd, void *buf, size_t n) {
    if (P(fd)) return call6(SYS_read, fd, (long)buf, (long)n, 0, 0, 0);
    if (sh_net_on && sh_net_is(fd)) return ret(sh_net_read(fd, buf, n));
    REAL(ssize_t (*)(int, void *, size_t), read);
    return real_read(fd, buf, n);
}
SH_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
SH_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen) {
    if (n > buflen) abort();
    return read(fd, buf, n);
}
SH_EXPORT ssize_t write(int fd, const void *buf, size_t n) {
    if (P(fd)) return call6(SYS_write, fd, (long)buf, (long)n, 0, 0, 0);
    if (sh_net_on) return ret(sh_net_write(fd, buf, n)); /* the network filter traps libc's own */
    REAL(ssize_t (*)(int, const void *, size_t), write);
    return real_write(fd, buf, n);
}
#define PREAD_LIKE(name, nr, bt) \
    SH_EXPORT ssize_t name(int fd, bt buf, size_t n, off_t off) { \
        if (P(fd)) return call6(nr, fd, (long)buf, (long)n, off, 0, 0); \
        REAL(ssize_t (*)(int, bt, size_t, off_t), name); \
        return real_##name(fd, buf, n, off); \
    }
PREAD_LIKE(pread, SYS_pread64, void *)
PREAD_LIKE(pread64, SYS_pread64, void *)
PREAD_LIKE(pwrite, SYS_pwrite64, const void *)
PREAD_LIKE(pwrite64, SYS_pwrite64, const void *)
SH_EXPORT ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);
SH_EXPORT ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen) {
    if (n > buflen) abort();
    return pread(fd, buf, n, off);
}
SH_EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);
SH_EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t n, off_t off, size_t buflen) {
    if (n > buflen) abort();
    return pread(fd, buf, n, off);
}
#define VEC(name, nr) \
    SH_EXPORT ssize_t name(int fd, const struct iovec *iov, int cnt) { \
        if (P(fd)) return call6(nr, fd, (long)iov, cnt, 0, 0, 0); \
        long r_; \
        if (sh_net_on && sh_net_vec(nr, fd, iov, cnt, &r_)) return ret(r_); \
        REAL(ssize_t (*)(int, const struct iovec *, int), name); \
        return real_##name(fd, iov, cnt); \
    }
VEC(readv, SYS_readv)
VEC(writev, SYS_writev)
#define PVEC(name, nr) \
    SH_EXPORT ssize_t name(int fd, const struct iovec *iov, int cnt, off_t off) { \
        if (P(fd)) return call6(nr, fd, (long)iov, cnt, off, 0, 0); \
        REAL(ssize_t (*)(int, const struct iovec *, int, off_t), name); \
        return real_##name(fd, iov, cnt, off); \
    }
PVEC(preadv, SYS_preadv)
PVEC(preadv64, SYS_preadv)
PVEC(pwritev, SYS_pwritev)
PVEC(pwritev64, SYS_pwritev)
#define PVEC2(name, nr) \
    SH_EXPORT ssize_t name(int fd, const struct iovec *iov, int cnt, off_t off, int fl) { \
        if (P(fd)) return call6(nr, fd, (long)iov, cnt, off, 0, fl); \
        REAL(ssize_t (*)(int, const struct iovec *, int, off_t, int), name); \
        return real_##name(fd, iov, cnt, off, fl); \
    }
PVEC2(preadv2, SYS_preadv2)
PVEC2(preadv64v2, SYS_preadv2)
PVEC2(pwritev2, SYS_pwritev2)
PVEC2(pwritev64v2, SYS_pwritev2)

SH_EXPORT off_t lseek(int fd, off_t off, int whence) {
    if (P(fd)) return call6(SYS_lseek, fd, off, whence, 0, 0, 0);
    REAL(off_t (*)(int, off_t, int), lseek);
    return real_lseek(fd, off, whence);
}
SH_EXPORT off_t lseek64(int fd, off_t off, int whence) { return lseek(fd, off, whence); }

SH_EXPORT int fstat(int fd, struct stat *st) {
    if (P(fd)) return (int)call6(SYS_fstat, fd, (long)st, 0, 0, 0, 0);
    REAL(int (*)(int, struct stat *), fstat);
    return real_fstat(fd, st);
}
SH_EXPORT int fstat64(int fd, struct stat64 *st) { return fstat(fd, (struct stat *)st); }

#define FD1(rt, name, nr, t1) \
    SH_EXPORT rt name(int fd, t1 x) { \
        if (P(fd)) return (rt)call6(nr, fd, (long)x, 0, 0, 0, 0); \
        REAL(rt (*)(int, t1), name); \
        return real_##name(fd, x); \
    }
#define FD0(rt, name, nr) \
    SH_EXPORT rt name(int fd) { \
        if (P(fd)) return (rt)call6(nr, fd, 0, 0, 0, 0, 0); \
        REAL(rt (*)(int), name); \
        return real_##name(fd); \
    }
FD1(int, ftruncate, SYS_ftruncate, off_t)
FD1(int, ftruncate64, SYS_ftruncate, off_t)
FD0(int, fsync, SYS_fsync)
FD0(int, fdatasync, SYS_fdatasync)
FD0(int, syncfs, SYS_syncfs)
/* isatty and tcgetattr: glibc's own ioctl inside them is no call the program makes through
 * the PLT, so on a protected descriptor it trapped (SIGSYS, 2.5-4.5 us) to learn ENOTTY.
 * Python's open() asks isatty of every file it opens (for its buffering): one trap per open
 * of a protected file. Served here as the trapped call is (core.c: ENOTTY). */
SH_EXPORT int tcgetattr(int fd, struct termios *t) {
    if (P(fd)) return (int)call6(SYS_ioctl, fd, TCGETS, (long)t, 0, 0, 0);
    REAL(int (*)(int, struct termios *), tcgetattr);
    return real_tcgetattr(fd, t);
}
SH_EXPORT int isatty(int fd) {
    if (P(fd)) {
        struct termios t;
        memset(&t, 0, sizeof t);
        return call6(SYS_ioctl, fd, TCGETS, (long)&t, 0, 0, 0) == 0;
    }
    REAL(int (*)(int), isatty);
    return real_isatty(fd);
}
SH_EXPORT int close(int fd) {
    if (P(fd)) return (int)call6(SYS_close, fd, 0, 0, 0, 0, 0);
    if (sh.active && sh_is_libfd(fd)) {
        if (!sh_in_lib) { /* a program closing every descriptor: not this one */
            sh_trace("close(%d): the volume library's descriptor is kept", fd);
            errno = EBADF;
            return -1;
        }
        sh.libfd[fd - SH_LIB_FD_MIN(sh.lo)] = 0;
    }
    if (sh_net_on) sh_net_close(fd);
    REAL(int (*)(int), close);
    return real_close(fd);
}
struct dup_low {
    long fd, min;
    int cloexec;
};
static long dup_low_deep(void *v) {
    struct dup_low *d = v;
    return sh_dup_low(d->fd, d->min, d->cloexec);
}
/* The program's dup and F_DUPFD of a protected descriptor: the lowest free number, as the
 * kernel's (sh_dup_low; a raw dup, trapped, takes a slot). */
static int dup_low(int fd, long min, int cloexec) {
    if (sh_console_fd(fd)) /* a sealed console stream: console.c makes its copies */
        return (int)call6(SYS_fcntl, fd, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, min, 0, 0, 0);
    struct dup_low d = {.fd = fd, .min = min, .cloexec = cloexec};
    return (int)ret(sh_on_stack(dup_low_deep, &d));
}
/* LIB_DUP: the volume library's own dup/fcntl(F_DUPFD) go through the gate. In an image exec'd
 * by a shielded program the network filter it inherited traps them, and the shield's init
 * opens its volumes (which may collect deleted files' objects: a dup) before its SIGSYS handler
 * is installed: libc's call killed the program with "Bad system call". */
SH_EXPORT int dup(int fd) {
    if (P(fd)) return dup_low(fd, 0, 0);
    if (sh_in_lib) return (int)G(SYS_dup, fd, 0, 0, 0, 0); /* see LIB_DUP */
    long a[6] = {fd, 0, 0, 0, 0, 0};
    if (sh_net_on) return (int)ret(sh_net_dup(SYS_dup, a));
    REAL(int (*)(int), dup);
    return real_dup(fd);
}
/* fchdir: of a protected directory served (core.c), of an ordinary one sh_fchdir_out (libc's
 * own fchdir would trap: the code rule traps raw ones, glibc's nftw makes them) */
SH_EXPORT int fchdir(int fd) {
    if (P(fd)) return (int)call6(SYS_fchdir, fd, 0, 0, 0, 0, 0);
    if (!sh.active || sh_in_lib) return (int)G(SYS_fchdir, fd, 0, 0, 0, 0);
    return (int)ret(sh_fchdir_out(fd));
}
FD1(int, flock, SYS_flock, int)
FD1(int, fchmod, SYS_fchmod, mode_t)
FD1(int, fstatfs, SYS_fstatfs, struct statfs *)
FD1(int, fstatfs64, SYS_fstatfs, struct statfs64 *)
SH_EXPORT ssize_t getdents64(int fd, void *buf, size_t n) {
    if (P(fd)) return call6(SYS_getdents64, fd, (long)buf, (long)n, 0, 0, 0);
    REAL(ssize_t (*)(int, void *, size_t), getdents64);
    ssize_t r = real_getdents64(fd, buf, n);
    if (r <= 0 || !sh.active || sh_in_lib || !sh_fdlist_is_own(fd)) return r;
    /* the process's own descriptor directory: without the shield's numbers (fdlist.c); a
     * buffer of hidden names only is read on, since 0 would say the end */
    size_t k;
    while ((k = sh_fdlist_filter(buf, (size_t)r)) == 0 && (r = real_getdents64(fd, buf, n)) > 0) {
    }
    return r <= 0 ? r : (ssize_t)k;
}

SH_EXPORT int fchown(int fd, uid_t u, gid_t g) {
    if (P(fd)) return (int)call6(SYS_fchown, fd, (long)u, (long)g, 0, 0, 0);
    REAL(int (*)(int, uid_t, gid_t), fchown);
    return real_fchown(fd, u, g);
}

SH_EXPORT int dup2(int a, int b) {
    if (P(a) || P(b)) return (int)call6(SYS_dup2, a, b, 0, 0, 0, 0);
    if (sh.active && !sh_in_lib && sh_is_libfd(b)) {
        errno = EBADF;
        return -1;
    }
    long na[6] = {a, b, 0, 0, 0, 0};
    if (sh_net_on) return (int)ret(sh_net_dup(SYS_dup2, na));
    REAL(int (*)(int, int), dup2);
    return real_dup2(a, b);
}
SH_EXPORT int dup3(int a, int b, int fl) {
    if (P(a) || P(b)) return (int)call6(SYS_dup3, a, b, fl, 0, 0, 0);
    if (sh.active && !sh_in_lib && sh_is_libfd(b)) {
        errno = EBADF;
        return -1;
    }
    long na[6] = {a, b, fl, 0, 0, 0};
    if (sh_net_on) return (int)ret(sh_net_dup(SYS_dup3, na));
    REAL(int (*)(int, int, int), dup3);
    return real_dup3(a, b, fl);
}
static int do_fcntl(int fd, int cmd, va_list ap) {
    long arg = va_arg(ap, long);
    if (P(fd) && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) return dup_low(fd, arg, cmd == F_DUPFD_CLOEXEC);
    if (P(fd)) return (int)call6(SYS_fcntl, fd, cmd, arg, 0, 0, 0);
    if (sh.active && !sh_in_lib && sh_is_libfd(fd)) { /* not the program's, as for close */
        errno = EBADF;
        return -1;
    }
    if (sh_in_lib && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) return (int)G(SYS_fcntl, fd, cmd, arg, 0, 0); /* LIB_DUP */
    long na[6] = {fd, cmd, arg, 0, 0, 0};
    if (sh_net_on && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) return (int)ret(sh_net_dup(SYS_fcntl, na));
    REAL(int (*)(int, int, ...), fcntl);
    return real_fcntl(fd, cmd, arg);
}
SH_EXPORT int fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    int r = do_fcntl(fd, cmd, ap);
    va_end(ap);
    return r;
}
SH_EXPORT int fcntl64(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    int r = do_fcntl(fd, cmd, ap);
    va_end(ap);
    return r;
}
SH_EXPORT int close_range(unsigned lo, unsigned hi, int fl) {
    if (sh.active && hi >= (unsigned)SH_LIB_FD_MIN(sh.lo) && lo < (unsigned)sh.hi)
        return (int)call6(SYS_close_range, lo, hi, fl, 0, 0, 0);
    REAL(int (*)(unsigned, unsigned, int), close_range);
    return real_close_range(lo, hi, fl);
}
SH_EXPORT int fallocate(int fd, int mode, off_t off, off_t len) {
    if (P(fd)) return (int)call6(SYS_fallocate, fd, mode, off, len, 0, 0);
    REAL(int (*)(int, int, off_t, off_t), fallocate);
    return real_fallocate(fd, mode, off, len);
}
SH_EXPORT int fallocate64(int fd, int mode, off_t off, off_t len) { return fallocate(fd, mode, off, len); }
SH_EXPORT int posix_fallocate(int fd, off_t off, off_t len) {
    if (P(fd)) {
        int r = (int)call6(SYS_fallocate, fd, 0, off, len, 0, 0);
        return r ? errno : 0;
    }
    REAL(int (*)(int, off_t, off_t), posix_fallocate);
    return real_posix_fallocate(fd, off, len);
}
SH_EXPORT int posix_fallocate64(int fd, off_t off, off_t len) { return posix_fallocate(fd, off, len); }
SH_EXPORT int posix_fadvise(int fd, off_t off, off_t len, int adv) {
    if (P(fd)) return 0;
    REAL(int (*)(int, off_t, off_t, int), posix_fadvise);
    return real_posix_fadvise(fd, off, len, adv);
}
SH_EXPORT int posix_fadvise64(int fd, off_t off, off_t len, int adv) { return posix_fadvise(fd, off, len, adv); }
SH_EXPORT int sync_file_range(int fd, off_t off, off_t n, unsigned fl) {
    if (P(fd)) return (int)call6(SYS_sync_file_range, fd, off, n, fl, 0, 0);
    REAL(int (*)(int, off_t, off_t, unsigned), sync_file_range);
    return real_sync_file_range(fd, off, n, fl);
}

SH_EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t n) {
    if (P(out) || P(in)) return call6(SYS_sendfile, out, in, (long)off, (long)n, 0, 0);
    if (sh_net_on) return ret(sh_net_sendfile(out, in, (long long *)off, n));
    REAL(ssize_t (*)(int, int, off_t *, size_t), sendfile);
    return real_sendfile(out, in, off, n);
}
SH_EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t n) { return sendfile(out, in, off, n); }
SH_EXPORT ssize_t splice(int in, loff_t *oin, int out, loff_t *oout, size_t n, unsigned fl) {
    if (P(out) || P(in)) return call6(SYS_splice, in, (long)oin, out, (long)oout, (long)n, fl);
    if (sh_net_on) return ret(sh_net_splice(in, (long long *)oin, out, (long long *)oout, n, fl));
    REAL(ssize_t (*)(int, loff_t *, int, loff_t *, size_t, unsigned), splice);
    return real_splice(in, oin, out, oout, n, fl);
}
SH_EXPORT ssize_t copy_file_range(int in, loff_t *oin, int out, loff_t *oout, size_t n, unsigned fl) {
    if (P(out) || P(in)) return call6(SYS_copy_file_range, in, (long)oin, out, (long)oout, (long)n, fl);
    REAL(ssize_t (*)(int, loff_t *, int, loff_t *, size_t, unsigned), copy_file_range);
    return real_copy_file_range(in, oin, out, oout, n, fl);
}

/* ---- memory mappings --------------------------------------------------------------------- */

SH_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    long a[6] = {(long)addr, (long)len, prot, flags, fd, off}, tr;
    if ((prot & PROT_EXEC) && sh.active && !sh_in_lib && sh_trusted_mmap(a, 1, &tr)) /* trusted.c */
        return ret(tr) == -1 ? MAP_FAILED : (void *)tr;
    if (!(flags & MAP_ANONYMOUS) && P(fd)) {
        long r = call6(SYS_mmap, (long)addr, (long)len, prot, flags, fd, off);
        return r == -1 ? MAP_FAILED : (void *)r;
    }
    REAL(void *(*)(void *, size_t, int, int, int, off_t), mmap);
    return real_mmap(addr, len, prot, flags, fd, off);
}
SH_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    return mmap(addr, len, prot, flags, fd, off);
}
SH_EXPORT int munmap(void *addr, size_t len) {
    sh_unmap_hook(addr, len, 1);
    REAL(int (*)(void *, size_t), munmap);
    return real_munmap(addr, len);
}
SH_EXPORT int msync(void *addr, size_t len, int fl) {
    if (sh_unmap_hook(addr, len, 0)) return 0;
    REAL(int (*)(void *, size_t, int), msync);
    return real_msync(addr, len, fl);
}

/* ---- path-based calls -------------------------------------------------------------------- */

#define PATHCALL(nr, a0, a1, a2, a3, a4) \
    do { \
        long r_; \
        if (pcall(nr, a0, a1, a2, a3, a4, &r_)) return (int)r_; \
    } while (0)

SH_EXPORT int stat(const char *p, struct stat *st) {
    return (int)pathcall(SYS_newfstatat, AT_FDCWD, (long)p, (long)st, 0, 0);
}
SH_EXPORT int stat64(const char *p, struct stat64 *st) { return stat(p, (struct stat *)st); }
SH_EXPORT int lstat(const char *p, struct stat *st) {
    return (int)pathcall(SYS_newfstatat, AT_FDCWD, (long)p, (long)st, AT_SYMLINK_NOFOLLOW, 0);
}
SH_EXPORT int lstat64(const char *p, struct stat64 *st) { return lstat(p, (struct stat *)st); }
SH_EXPORT int fstatat(int d, const char *p, struct stat *st, int fl) {
    return (int)pathcall(SYS_newfstatat, d, (long)p, (long)st, fl, 0);
}
SH_EXPORT int fstatat64(int d, const char *p, struct stat64 *st, int fl) { return fstatat(d, p, (struct stat *)st, fl); }
SH_EXPORT int statx(int d, const char *p, int fl, unsigned mask, struct statx *sx) {
    return (int)pathcall(SYS_statx, d, (long)p, fl, mask, (long)sx);
}
SH_EXPORT int access(const char *p, int m) {
    return (int)pathcall(SYS_faccessat, AT_FDCWD, (long)p, m, 0, 0);
}
SH_EXPORT int faccessat(int d, const char *p, int m, int fl) {
    if (!fl) return (int)pathcall(SYS_faccessat, d, (long)p, m, 0, 0);
    long r = pathcall_r(SYS_faccessat2, d, (long)p, m, fl, 0);
    if (r != -ENOSYS) return (int)ret(r);
    REAL(int (*)(int, const char *, int, int), faccessat);
    return real_faccessat(d, p, m, fl);
}
SH_EXPORT int euidaccess(const char *p, int m) {
    long r = pathcall_r(SYS_faccessat2, AT_FDCWD, (long)p, m, AT_EACCESS, 0);
    if (r != -ENOSYS) return (int)ret(r);
    REAL(int (*)(const char *, int), euidaccess);
    return real_euidaccess(p, m);
}
SH_EXPORT int eaccess(const char *p, int m) { return euidaccess(p, m); }
SH_EXPORT int mkdir(const char *p, mode_t m) {
    return (int)pathcall(SYS_mkdirat, AT_FDCWD, (long)p, m, 0, 0);
}
SH_EXPORT int mkdirat(int d, const char *p, mode_t m) {
    return (int)pathcall(SYS_mkdirat, d, (long)p, m, 0, 0);
}
SH_EXPORT int rmdir(const char *p) {
    return (int)pathcall(SYS_unlinkat, AT_FDCWD, (long)p, AT_REMOVEDIR, 0, 0);
}
SH_EXPORT int unlink(const char *p) {
    return (int)pathcall(SYS_unlinkat, AT_FDCWD, (long)p, 0, 0, 0);
}
SH_EXPORT int unlinkat(int d, const char *p, int fl) {
    return (int)pathcall(SYS_unlinkat, d, (long)p, fl, 0, 0);
}
SH_EXPORT int remove(const char *p) {
    /* as glibc: unlink, and rmdir when it names a directory */
    long r = pathcall_r(SYS_unlinkat, AT_FDCWD, (long)p, 0, 0, 0);
    if (r == -EISDIR) r = pathcall_r(SYS_unlinkat, AT_FDCWD, (long)p, AT_REMOVEDIR, 0, 0);
    return (int)ret(r);
}
SH_EXPORT int rename(const char *a, const char *b) {
    return (int)pathcall(SYS_renameat, AT_FDCWD, (long)a, AT_FDCWD, (long)b, 0);
}
SH_EXPORT int renameat(int da, const char *a, int db, const char *b) {
    return (int)pathcall(SYS_renameat, da, (long)a, db, (long)b, 0);
}
SH_EXPORT int renameat2(int da, const char *a, int db, const char *b, unsigned fl) {
    return (int)pathcall(SYS_renameat2, da, (long)a, db, (long)b, fl);
}
SH_EXPORT int link(const char *a, const char *b) {
    return (int)pathcall(SYS_linkat, AT_FDCWD, (long)a, AT_FDCWD, (long)b, 0);
}
SH_EXPORT int linkat(int da, const char *a, int db, const char *b, int fl) {
    return (int)pathcall(SYS_linkat, da, (long)a, db, (long)b, fl);
}
SH_EXPORT int symlink(const char *a, const char *b) {
    return (int)pathcall(SYS_symlinkat, (long)a, AT_FDCWD, (long)b, 0, 0);
}
SH_EXPORT ssize_t readlink(const char *p, char *buf, size_t n) {
    return (ssize_t)pathcall(SYS_readlinkat, AT_FDCWD, (long)p, (long)buf, (long)n, 0);
}
SH_EXPORT int chmod(const char *p, mode_t m) {
    return (int)pathcall(SYS_fchmodat, AT_FDCWD, (long)p, m, 0, 0);
}
SH_EXPORT int fchmodat(int d, const char *p, mode_t m, int fl) {
    if (!fl) return (int)pathcall(SYS_fchmodat, d, (long)p, m, 0, 0);
    long r = pathcall_r(SYS_fchmodat2, d, (long)p, m, fl, 0);
    if (r != -ENOSYS) return (int)ret(r);
    REAL(int (*)(int, const char *, mode_t, int), fchmodat);
    return real_fchmodat(d, p, m, fl);
}
SH_EXPORT int chown(const char *p, uid_t u, gid_t g) {
    return (int)pathcall(SYS_fchownat, AT_FDCWD, (long)p, (long)u, (long)g, 0);
}
SH_EXPORT int lchown(const char *p, uid_t u, gid_t g) {
    return (int)pathcall(SYS_fchownat, AT_FDCWD, (long)p, (long)u, (long)g, AT_SYMLINK_NOFOLLOW);
}
SH_EXPORT int fchownat(int d, const char *p, uid_t u, gid_t g, int fl) {
    return (int)pathcall(SYS_fchownat, d, (long)p, (long)u, (long)g, fl);
}
SH_EXPORT int utimensat(int d, const char *p, const struct timespec ts[2], int fl) {
    return (int)pathcall(SYS_utimensat, d, (long)p, (long)ts, fl, 0);
}
SH_EXPORT int futimens(int fd, const struct timespec ts[2]) {
    if (P(fd)) PATHCALL(SYS_utimensat, fd, 0, (long)ts, 0, 0);
    REAL(int (*)(int, const struct timespec *), futimens);
    return real_futimens(fd, ts);
}
SH_EXPORT int utime(const char *p, const struct utimbuf *t) {
    struct timespec ts[2];
    if (t) {
        ts[0] = (struct timespec){t->actime, 0};
        ts[1] = (struct timespec){t->modtime, 0};
    }
    return (int)pathcall(SYS_utimensat, AT_FDCWD, (long)p, t ? (long)ts : 0, 0, 0);
}
SH_EXPORT int utimes(const char *p, const struct timeval tv[2]) {
    struct timespec ts[2];
    if (tv) {
        ts[0] = (struct timespec){tv[0].tv_sec, tv[0].tv_usec * 1000};
        ts[1] = (struct timespec){tv[1].tv_sec, tv[1].tv_usec * 1000};
    }
    return (int)pathcall(SYS_utimensat, AT_FDCWD, (long)p, tv ? (long)ts : 0, 0, 0);
}
SH_EXPORT int truncate(const char *p, off_t len) {
    return (int)pathcall(SYS_truncate, (long)p, len, 0, 0, 0);
}
SH_EXPORT int truncate64(const char *p, off_t len) { return truncate(p, len); }

SH_EXPORT int chdir(const char *p) {
    if (sh.active) {
        int handled;
        long r = sh_chdir(p, &handled);
        if (handled) return (int)ret(r);
    }
    REAL(int (*)(const char *), chdir);
    return real_chdir(p);
}
SH_EXPORT char *getcwd(char *buf, size_t size) {
    if (sh.active) {
        /* the program's view inside a mount, else the kernel's (through the gate: libc's call
         * would be trapped); glibc's semantics for buf == NULL */
        char cwd[PATH_MAX];
        if (!sh_cwd_view(cwd)) {
            long r = sh_gate(SYS_getcwd, (long)cwd, sizeof cwd, 0, 0, 0, 0);
            if (r < 0 || cwd[0] != '/') { /* unreachable, too long...: libc's answer */
                REAL(char *(*)(char *, size_t), getcwd);
                return real_getcwd(buf, size);
            }
        }
        size_t n = strlen(cwd) + 1;
        char *out = buf;
        if (!out) out = malloc(size > n ? size : n);
        if (out && (size >= n || (!buf && !size))) memcpy(out, cwd, n);
        else if (out) {
            if (!buf) free(out);
            out = NULL;
            errno = ERANGE;
        } else errno = ENOMEM;
        return out;
    }
    REAL(char *(*)(char *, size_t), getcwd);
    return real_getcwd(buf, size);
}

/* ---- directories and stdio --------------------------------------------------------------- */

SH_EXPORT DIR *opendir(const char *p) {
    if (!sh.active) {
        REAL(DIR *(*)(const char *), opendir);
        return real_opendir(p);
    }
    /* libc's opendir: open (served, or through the gate: see pathcall) and fdopendir */
    long r = pathcall(SYS_openat, AT_FDCWD, (long)p, O_RDONLY | O_NONBLOCK | O_DIRECTORY | O_CLOEXEC, 0, 0);
    if (r < 0) return NULL;
    if (r < sh.lo) sh_fdlist_opened(r, p); /* (fdopendir's hint) */
    DIR *d = fdopendir((int)r);
    if (!d) {
        int e = errno;
        close((int)r);
        errno = e;
    }
    return d;
}

/* stdio and readdir make their calls inside libc, raw: a dup's alias gets its filter first
 * (sh_alias_filter), or they would fail on its placeholder */
SH_EXPORT FILE *fdopen(int fd, const char *mode) {
    if (P(fd) && sh_alias_filter(fd) < 0) {
        errno = EMFILE;
        return NULL;
    }
    REAL(FILE *(*)(int, const char *), fdopen);
    return real_fdopen(fd, mode);
}
SH_EXPORT DIR *fdopendir(int fd) {
    int prot = P(fd);
    if (prot && sh_alias_filter(fd) < 0) {
        errno = EMFILE;
        return NULL;
    }
    REAL(DIR *(*)(int), fdopendir);
    DIR *d = real_fdopendir(fd);
    /* the process's own descriptor directory: its readdir leaves the shield's numbers out
     * (fdlist.c; opendir comes here too) */
    if (d && !prot && sh.active && !sh_in_lib && sh_fdlist_is_own(fd)) sh_fdlist_mark(d);
    return d;
}

/* readdir of a marked stream skips the entries that sh_fdlist_hidden names; every other
 * stream costs one load of the marked count */
#define READDIR(name, ent) \
    SH_EXPORT struct ent *name(DIR *d) { \
        REAL(struct ent *(*)(DIR *), name); \
        struct ent *e = real_##name(d); \
        if (e && sh_fdlist_marked(d)) \
            while (e && sh_fdlist_hidden(e->d_name)) e = real_##name(d); \
        return e; \
    }
#define READDIR_R(name, ent) \
    SH_EXPORT int name(DIR *d, struct ent *buf, struct ent **res) { \
        REAL(int (*)(DIR *, struct ent *, struct ent **), name); \
        int r; \
        do r = real_##name(d, buf, res); \
        while (!r && *res && sh_fdlist_marked(d) && sh_fdlist_hidden((*res)->d_name)); \
        return r; \
    }
READDIR(readdir, dirent)
READDIR(readdir64, dirent64)
READDIR_R(readdir_r, dirent)
READDIR_R(readdir64_r, dirent64)
/* glibc's scandir reads through its own internal readdir, which the wrappers above do not
 * see: a scandir of this process's descriptor directory is made here from the filtered
 * readdir; any other directory is glibc's. The caller's functions are called through
 * adapters of the right type (qsort's comparator takes const void *). */
typedef int (*scan_sel)(const struct dirent *);
typedef int (*scan_cmp)(const struct dirent **, const struct dirent **);
typedef int (*scan_sel64)(const struct dirent64 *);
typedef int (*scan_cmp64)(const struct dirent64 **, const struct dirent64 **);
_Static_assert(sizeof(struct dirent64) == sizeof(struct dirent) &&
                   offsetof(struct dirent64, d_name) == offsetof(struct dirent, d_name),
               "x86-64: struct dirent64 is struct dirent");
static __thread scan_cmp scan_cmp_fn;
static __thread scan_sel64 scan_sel64_fn;
static __thread scan_cmp64 scan_cmp64_fn;
static int scan_cmp_adapt(const void *a, const void *b) { /* (qsort's const: the array's, not the entries') */
    return scan_cmp_fn((const struct dirent **)(uintptr_t)a, (const struct dirent **)(uintptr_t)b);
}
static int scan_sel64_adapt(const struct dirent *e) { return scan_sel64_fn((const struct dirent64 *)e); }
static int scan_cmp64_adapt(const struct dirent **a, const struct dirent **b) {
    return scan_cmp64_fn((const struct dirent64 **)a, (const struct dirent64 **)b);
}

/* 1 and the result in *n when path is this process's descriptor directory, else 0 */
static int scandir_own(const char *path, struct dirent ***out, scan_sel sel, scan_cmp cmp, int *n) {
    DIR *d = opendir(path);
    if (!d) return 0; /* (glibc's scandir gives the same failure) */
    if (!sh_fdlist_marked(d)) {
        closedir(d);
        return 0;
    }
    struct dirent **v = NULL, *e;
    size_t k = 0, cap = 0;
    int err = 0;
    while ((e = readdir(d))) {
        if (sel && !sel(e)) continue;
        size_t sz = offsetof(struct dirent, d_name) + strlen(e->d_name) + 1;
        struct dirent *c = malloc(sz < sizeof *c ? sizeof *c : sz);
        struct dirent **nv = k == cap ? realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(struct dirent *)) : v;
        if (!c || !nv) {
            free(c);
            if (nv) v = nv;
            err = ENOMEM;
            break;
        }
        v = nv;
        memcpy(c, e, sz);
        v[k++] = c;
    }
    closedir(d);
    if (err) {
        while (k) free(v[--k]);
        free(v);
        errno = err;
        *n = -1;
        return 1;
    }
    if (cmp && k > 1) {
        scan_cmp_fn = cmp;
        qsort(v, k, sizeof(struct dirent *), scan_cmp_adapt);
    }
    *out = v;
    *n = (int)k;
    return 1;
}
SH_EXPORT int scandir(const char *path, struct dirent ***out, scan_sel sel, scan_cmp cmp) {
    int n;
    if (sh.active && !sh_in_lib && scandir_own(path, out, sel, cmp, &n)) return n;
    REAL(int (*)(const char *, struct dirent ***, scan_sel, scan_cmp), scandir);
    return real_scandir(path, out, sel, cmp);
}
SH_EXPORT int scandir64(const char *path, struct dirent64 ***out, scan_sel64 sel, scan_cmp64 cmp) {
    int n;
    scan_sel64_fn = sel;
    scan_cmp64_fn = cmp;
    if (sh.active && !sh_in_lib &&
        scandir_own(path, (struct dirent ***)out, sel ? scan_sel64_adapt : NULL, cmp ? scan_cmp64_adapt : NULL, &n))
        return n;
    REAL(int (*)(const char *, struct dirent64 ***, scan_sel64, scan_cmp64), scandir64);
    return real_scandir64(path, out, sel, cmp);
}
SH_EXPORT int closedir(DIR *d) {
    sh_fdlist_unmark(d);
    REAL(int (*)(DIR *), closedir);
    return real_closedir(d);
}

static int mode_flags(const char *mode) {
    int fl;
    switch (mode[0]) {
    case 'r': fl = O_RDONLY; break;
    case 'w': fl = O_WRONLY | O_CREAT | O_TRUNC; break;
    case 'a': fl = O_WRONLY | O_CREAT | O_APPEND; break;
    default: return -1;
    }
    for (const char *m = mode + 1; *m && *m != ','; m++) {
        if (*m == '+') fl = (fl & ~O_ACCMODE) | O_RDWR;
        else if (*m == 'x') fl |= O_EXCL;
        else if (*m == 'e') fl |= O_CLOEXEC;
    }
    return fl;
}

static FILE *sh_fopen(const char *p, const char *mode, int *handled) {
    *handled = 0;
    int fl = mode_flags(mode);
    if (fl < 0 || !sh.active) return NULL;
    long r;
    if (!pcall(SYS_openat, AT_FDCWD, (long)p, fl, 0666, 0, &r)) return NULL;
    *handled = 1;
    if (r < 0) return NULL;
    /* stdio's own reads and writes on this descriptor are internal calls of libc: the filter
     * traps them and the SIGSYS handler serves them. */
    FILE *f = fdopen((int)r, mode);
    if (!f) {
        int e = errno;
        close((int)r);
        errno = e;
    }
    return f;
}
SH_EXPORT FILE *fopen(const char *p, const char *mode) {
    int fl = mode_flags(mode);
    FILE *f;
    if (sh.active && fl >= 0 && !strchr(mode, ',')) { /* (",ccs=" needs libc's own fopen) */
        /* libc's fopen is open and fdopen: the open served, or through the gate (open_checked) */
        long r = sh_in_lib ? G(SYS_openat, AT_FDCWD, (long)p, fl, 0666, 0) : ret(open_checked(AT_FDCWD, p, fl, 0666));
        if (r < 0) return NULL;
        f = fdopen((int)r, mode);
        if (!f) {
            int e = errno;
            close((int)r);
            errno = e;
        }
        return f;
    }
    int h;
    f = sh_fopen(p, mode, &h);
    if (h) return f;
    REAL(FILE *(*)(const char *, const char *), fopen);
    f = real_fopen(p, mode);
    long t = f && sh.active && !sh_in_lib ? sh_trusted_check_open(fileno(f), AT_FDCWD, p, fl) : 0; /* trusted.c */
    if (t < 0) {
        fclose(f);
        errno = (int)-t;
        return NULL;
    }
    return f;
}
SH_EXPORT FILE *fopen64(const char *p, const char *mode) { return fopen(p, mode); }
/* freopen onto a protected path (a daemon's log: MariaDB's --log-error reopens stderr so).
 * The shield opens the path (the mode's creation, truncation and permission checks), and
 * libc's freopen reopens that descriptor through /proc/self/fd, which the shield serves as
 * well: libc sets the stream up as for any file and keeps its number (stderr stays 2, an
 * alias of the new description). The mode's 'x' was the first open's. Unlike libc's, a failed
 * open leaves the stream as it was. */
SH_EXPORT FILE *freopen(const char *p, const char *mode, FILE *s) {
    char rel[PATH_MAX];
    int vol;
    REAL(FILE *(*)(const char *, const char *, FILE *), freopen);
    int c = sh.active && !sh_in_lib && p ? sh_classify(AT_FDCWD, p, &vol, rel, sizeof rel) : 0;
    if (c == 0) return real_freopen(p, mode, s);
    int fl = mode_flags(mode);
    char again[16], proc[40];
    size_t n = 0;
    for (const char *m = mode; *m && n < sizeof again - 1; m++)
        if (*m != 'x') again[n++] = *m;
    again[n] = 0;
    if (c < 0 || fl < 0 || strlen(mode) >= sizeof again) {
        errno = c < 0 ? -c : EINVAL;
        return NULL;
    }
    long r = ret(open_checked(AT_FDCWD, p, fl, 0666));
    if (r < 0) return NULL;
    snprintf(proc, sizeof proc, "/proc/self/fd/%ld", r);
    FILE *f = real_freopen(proc, again, s);
    int e = errno;
    close((int)r);
    errno = e;
    return f;
}
SH_EXPORT FILE *freopen64(const char *p, const char *mode, FILE *s) { return freopen(p, mode, s); }

/* ---- signals: SIGSYS belongs to the shield ----------------------------------------------- */

SH_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    REAL(int (*)(int, const struct sigaction *, struct sigaction *), sigaction);
    /* SIGSEGV and SIGBUS: the shield's handler stays the kernel's, the program's is kept
     * and called from it (nofault.c) */
    if (sh_nf_owns(sig)) return (int)ret(sh_nf_sigaction(sig, act, old));
    sh_nf_note_handler(sig, act);
    /* the others: the handler runs only outside the shield (nofault.c, deferral) */
    if (sh_sig_defers(sig)) return (int)ret(sh_nf_sigaction(sig, act, old));
    if (sh.active && sig == SIGSYS && act) {
        sh_trace("the program's SIGSYS handler was not installed (the shield owns SIGSYS)");
        return real_sigaction(sig, NULL, old);
    }
    if (sh.active && act && sigismember(&act->sa_mask, SIGSYS)) {
        /* a handler that runs with SIGSYS blocked is killed by its first trapped call */
        struct sigaction a = *act;
        sigdelset(&a.sa_mask, SIGSYS);
        return real_sigaction(sig, &a, old);
    }
    return real_sigaction(sig, act, old);
}
SH_EXPORT sighandler_t signal(int sig, sighandler_t h) {
    if (sh.active && sig == SIGSYS) {
        /* not installed, and no error, as sigaction's and a raw rt_sigaction's: a child that
         * resets every signal before its exec and checks each (libuv's, so every spawn of
         * ctest, cmake and node) failed with EINVAL and never ran its program */
        sh_trace("the program's SIGSYS handler was not installed (the shield owns SIGSYS)");
        return SIG_DFL;
    }
    if (sh_nf_owns(sig) || sh_sig_defers(sig)) { /* glibc's signal(): BSD semantics */
        struct sigaction a = {.sa_handler = h, .sa_flags = SA_RESTART}, o;
        sigemptyset(&a.sa_mask);
        sigaddset(&a.sa_mask, sig);
        return sigaction(sig, &a, &o) ? SIG_ERR : o.sa_handler;
    }
    REAL(sighandler_t (*)(int, sighandler_t), signal);
    return real_signal(sig, h);
}

/* ---- extended attributes: protected files have none --------------------------------------- */

#define XGET(name) \
    SH_EXPORT ssize_t name(const char *p, const char *n, void *v, size_t s) { \
        return pathcall(SYS_##name, (long)p, (long)n, (long)v, (long)s, 0); \
    }
XGET(getxattr)
XGET(lgetxattr)
#define XLIST(name) \
    SH_EXPORT ssize_t name(const char *p, char *l, size_t s) { \
        return pathcall(SYS_##name, (long)p, (long)l, (long)s, 0, 0); \
    }
XLIST(listxattr)
XLIST(llistxattr)
#define XSET(name) \
    SH_EXPORT int name(const char *p, const char *n, const void *v, size_t s, int fl) { \
        return (int)pathcall(SYS_##name, (long)p, (long)n, (long)v, (long)s, fl); \
    }
XSET(setxattr)
XSET(lsetxattr)
#define XREM(name) \
    SH_EXPORT int name(const char *p, const char *n) { \
        return (int)pathcall(SYS_##name, (long)p, (long)n, 0, 0, 0); \
    }
XREM(removexattr)
XREM(lremovexattr)

/* ---- _exit: the kernel keeps what was written to unclosed files; commit it (dash, for one,
 * leaves its redirections open and calls _exit) ----------------------------------------------- */

SH_EXPORT void _exit(int status) {
    /* no stdio flush: _exit does not flush it */
    if (sh_exit_commit(0)) sh_ofd_release_all();
    if (sh.active) sh_console_exit();
    REAL(void (*)(int), _exit);
    real__exit(status);
    __builtin_unreachable();
}
SH_EXPORT void _Exit(int status) { _exit(status); }

/* ---- vfork, posix_spawn, system, popen: a child that shares our memory (and runs no fork
 * handlers) may exec an image that inherits protected descriptors; before it starts, the
 * volumes go to shared mode and the descriptions to shared offsets (sh_fork_share, holding.c), as
 * at a fork. Only when a protected file is open. ------------------------------------------- */

void sh_vfork_prepare(void);
void *sh_real_vfork;
void sh_vfork_prepare(void) {
    int saved = errno;
    if (!sh_real_vfork) sh_real_vfork = next_sym("vfork");
    sh_vfork_cwd_reset();
    if (sh.active) sh_fork_share(0);
    errno = saved;
}
/* vfork cannot be wrapped by a C function (the child would return through the wrapper's frame
 * and the parent find it overwritten): prepare, then enter glibc's vfork by a jump, with the
 * caller's return address on top of the stack as it expects. */
__asm__(".text\n"
        ".globl vfork\n"
        ".type vfork, @function\n"
        "vfork:\n"
        "    endbr64\n"
        "    sub $8, %rsp\n" /* the call below needs a 16-byte aligned stack */
        "    call sh_vfork_prepare\n"
        "    add $8, %rsp\n"
        "    jmp *sh_real_vfork(%rip)\n"
        ".size vfork, .-vfork\n");

/* the spawn's child makes its dup2 inside libc, raw: a dup's alias as the source gets its
 * filter now (sh_alias_filter), or the child would get the placeholder */
SH_EXPORT int posix_spawn_file_actions_adddup2(posix_spawn_file_actions_t *fa, int fd, int newfd) {
    if (P(fd) && sh_alias_filter(fd) < 0) return EMFILE;
    REAL(int (*)(posix_spawn_file_actions_t *, int, int), posix_spawn_file_actions_adddup2);
    return real_posix_spawn_file_actions_adddup2(fa, fd, newfd);
}

SH_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                          const posix_spawnattr_t *at, char *const argv[], char *const envp[]) {
    sh_vfork_cwd_reset();
    if (sh.active) sh_fork_share(0);
    REAL(int (*)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
                 char *const[], char *const[]), posix_spawn);
    return real_posix_spawn(pid, path, fa, at, argv, envp);
}
SH_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                           const posix_spawnattr_t *at, char *const argv[], char *const envp[]) {
    sh_vfork_cwd_reset();
    if (sh.active) sh_fork_share(0);
    REAL(int (*)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
                 char *const[], char *const[]), posix_spawnp);
    return real_posix_spawnp(pid, file, fa, at, argv, envp);
}
SH_EXPORT int system(const char *cmd) {
    sh_vfork_cwd_reset();
    if (sh.active && cmd) sh_fork_share(0);
    REAL(int (*)(const char *), system);
    return real_system(cmd);
}
SH_EXPORT FILE *popen(const char *cmd, const char *mode) {
    sh_vfork_cwd_reset();
    if (sh.active) sh_fork_share(0);
    REAL(FILE *(*)(const char *, const char *), popen);
    return real_popen(cmd, mode);
}

/* ---- signal masks: SIGSYS is never blocked (a trap with SIGSYS blocked kills the thread);
 * these wrappers spare the common callers the trap that the filter would take ---------------- */

static int mask_call(int how, const sigset_t *set, sigset_t *old, int internal) {
    uint64_t s;
    if (!set || how == SIG_UNBLOCK) {
        long r = sh_gate(SYS_rt_sigprocmask, how, (long)set, (long)old, 8, 0, 0);
        if (r == 0) sh_nf_note_mask(how, set); /* the shield's fast copies need SIGSEGV and SIGBUS unblocked */
        return (int)r;
    }
    memcpy(&s, set, sizeof s);
    s &= ~(1ull << (SIGSYS - 1));
    if (internal) s &= ~((1ull << 31) | (1ull << 32)); /* glibc's SIGCANCEL and SIGSETXID */
    long r = sh_gate(SYS_rt_sigprocmask, how, (long)&s, (long)old, 8, 0, 0);
    if (r == 0) sh_nf_note_mask(how, set);
    return (int)r;
}
SH_EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old) {
    if (!sh.active) {
        REAL(int (*)(int, const sigset_t *, sigset_t *), sigprocmask);
        return real_sigprocmask(how, set, old);
    }
    return (int)ret(mask_call(how, set, old, 1));
}
/* the mask sigsuspend waits with is also the mask its handlers start from */
SH_EXPORT int sigsuspend(const sigset_t *set) {
    REAL(int (*)(const sigset_t *), sigsuspend);
    int nf = sh_nf_mask_enter(set); /* the handlers that run in it start from this mask */
    int r;
    if (!sh.active || !sigismember(set, SIGSYS)) {
        r = real_sigsuspend(set);
    } else {
        sigset_t s = *set;
        sigdelset(&s, SIGSYS);
        r = real_sigsuspend(&s);
    }
    sh_nf_mask_leave(nf);
    return r;
}
SH_EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
    if (!sh.active) {
        REAL(int (*)(int, const sigset_t *, sigset_t *), pthread_sigmask);
        return real_pthread_sigmask(how, set, old);
    }
    long r = mask_call(how, set, old, 1);
    return r < 0 ? (int)-r : 0;
}

/* ---- temporary files ---------------------------------------------------------------------- */

/* glibc's mkstemp family and mkdtemp create the file by an internal open/mkdir that no
 * interposed symbol sees (the kernel would find the empty mount point: git init failed with
 * "Unable to create temporary file"). Under a protected mount they are served here. */
static int temp_under_mount(const char *tmpl) {
    int vol;
    char rel[PATH_MAX];
    return sh.active && !sh_in_lib && tmpl && sh_classify(AT_FDCWD, tmpl, &vol, rel, sizeof rel) > 0;
}

/* Fill the six X before the suffix and try create(tmpl) until it does not exist: fd/0 or -1. */
static int temp_make(char *tmpl, int suffixlen, int (*create)(const char *, int), int arg) {
    size_t len = strlen(tmpl);
    if (suffixlen < 0 || len < (size_t)suffixlen + 6 || memcmp(tmpl + len - suffixlen - 6, "XXXXXX", 6)) {
        errno = EINVAL;
        return -1;
    }
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    char *x = tmpl + len - suffixlen - 6;
    for (int attempt = 0; attempt < 1000; attempt++) {
        unsigned char rnd[6];
        if (syscall(SYS_getrandom, rnd, sizeof rnd, 0) != (long)sizeof rnd) return -1;
        for (int i = 0; i < 6; i++) x[i] = chars[rnd[i] % (sizeof chars - 1)];
        int r = create(tmpl, arg);
        if (r >= 0 || errno != EEXIST) return r;
    }
    memcpy(x, "XXXXXX", 6);
    errno = EEXIST;
    return -1;
}
static int temp_open(const char *p, int flags) {
    return do_openat(AT_FDCWD, p, (flags & ~O_ACCMODE) | O_RDWR | O_CREAT | O_EXCL, 0600);
}
static int temp_mkdir(const char *p, int unused) {
    (void)unused;
    return mkdir(p, 0700);
}

#define MKSTEMP_LIKE(name, args, tmpl, suffixlen, flags, realcall) \
    SH_EXPORT int name args { \
        if (temp_under_mount(tmpl)) return temp_make(tmpl, suffixlen, temp_open, flags); \
        REAL(int (*) args, name); /* NOLINT(bugprone-macro-parentheses): a parameter list */ \
        return realcall; \
    }
MKSTEMP_LIKE(mkstemp, (char *t), t, 0, 0, real_mkstemp(t))
MKSTEMP_LIKE(mkstemp64, (char *t), t, 0, 0, real_mkstemp64(t))
MKSTEMP_LIKE(mkostemp, (char *t, int fl), t, 0, fl, real_mkostemp(t, fl))
MKSTEMP_LIKE(mkostemp64, (char *t, int fl), t, 0, fl, real_mkostemp64(t, fl))
MKSTEMP_LIKE(mkstemps, (char *t, int sl), t, sl, 0, real_mkstemps(t, sl))
MKSTEMP_LIKE(mkstemps64, (char *t, int sl), t, sl, 0, real_mkstemps64(t, sl))
MKSTEMP_LIKE(mkostemps, (char *t, int sl, int fl), t, sl, fl, real_mkostemps(t, sl, fl))
MKSTEMP_LIKE(mkostemps64, (char *t, int sl, int fl), t, sl, fl, real_mkostemps64(t, sl, fl))

SH_EXPORT char *mkdtemp(char *t) {
    if (temp_under_mount(t)) return temp_make(t, 0, temp_mkdir, 0) == 0 ? t : NULL;
    REAL(char *(*)(char *), mkdtemp);
    return real_mkdtemp(t);
}

/* A UNIX socket bound at a path under a protected mount: a socket node in the volume, the
 * kernel socket in the volume's rendezvous directory (unixsock.c). */
SH_EXPORT int bind(int fd, const struct sockaddr *sa, socklen_t len) {
    int handled = 0;
    long r = sh.active && !sh_in_lib && sa && sh.nvol ? sh_unix_bind(fd, sa, len, &handled) : 0;
    if (handled) return (int)ret(r);
    REAL(int (*)(int, const struct sockaddr *, socklen_t), bind);
    return real_bind(fd, sa, len);
}
