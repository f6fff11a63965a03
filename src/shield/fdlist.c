/* shield/fdlist.c - the program's own descriptor directory, listed without the shield's numbers.
 *
 * The kernel lists in /proc/self/fd every number of the descriptor table: the volume library's
 * descriptors just below the reserved range (SH_LIB_ZONE of them), and every number of the
 * reserved range, where each unused slot holds a placeholder (scp/shield.h). A program that
 * lists its own descriptors (`ls -l /proc/self/fd`, a daemon that closes what it finds there,
 * Python's os.listdir) saw about a thousand numbers it never opened, each of which the shield
 * then refused (lstat EBADF: `ls -l` printed `?` lines and exited 1).
 *
 * So the listing is filtered where the program reads it: a name is left out when its number lies
 * in the library's zone or the reserved range and is not one of the program's protected files
 * (a slot that holds one). The numbers below the library's zone, aliases included, are the
 * program's and stay. Where it is read:
 * - readdir/readdir64/readdir_r of a DIR that fdopendir (and so opendir) marked as this
 *   process's descriptor directory (interpose.c); a small table of marked DIRs, looked at only
 *   while it is not empty; scandir/scandir64, which the shield then builds from that readdir;
 * - the exported getdents64 on an ordinary descriptor of that directory: the records are
 *   compacted in place.
 * What is marked: a directory opened (open, openat, opendir) by a path whose last name is "fd"
 * and whose /proc/self/fd/N link then reads "/proc/PID/fd" or "/proc/PID/task/TID/fd" with PID
 * this process (/proc/self/fd, /dev/fd, /proc/thread-self/fd, the process's own pid spelled
 * out, "fd" relative to /proc/self). Not filtered: another process's listing of this one,
 * and raw getdents64 system calls that bypass libc's exported functions (docs/shield.md).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shield/internal.h"

/* ---- which numbers are hidden -------------------------------------------------------------- */

int sh_fdlist_hidden(const char *name) {
    /* (the kernel writes a number without leading zeros; anything else is no descriptor's) */
    if (!sh.active || name[0] < '0' || name[0] > '9' || (name[0] == '0' && name[1])) return 0;
    long n = 0;
    for (const char *c = name; *c; c++) {
        if (*c < '0' || *c > '9' || n > (long)sh.hi) return 0; /* not a number, or past the range */
        n = n * 10 + (*c - '0');
    }
    if (n < SH_LIB_FD_MIN(sh.lo) || n >= sh.hi) return 0;
    if (n < sh.base || n >= sh.base + sh.nslots) return 1; /* the library's or the shield's own */
    /* a slot: shown while it holds one of the program's files (read without sh.mu: a listing
     * is a snapshot, as the kernel's is of a table that other threads change meanwhile) */
    return __atomic_load_n(&sh.slot[n - sh.base], __ATOMIC_RELAXED) == NULL;
}

/* ---- which directories are this process's descriptor directory ----------------------------- */

/* The numbers below the range that an open of a path whose last name is "fd" returned: only
 * these are read back (a readlink per fdopendir of every directory cost find 12 us a directory
 * under the shield). A hint: a stale one (the number closed and reused behind the shield's back)
 * costs one readlink that says no; a directory opened by a raw system call or under another name
 * is listed unfiltered. Written by any thread without a lock: a byte each. */
static unsigned char maybe[SCP_SHIELD_FD_BASE];

static int last_is_fd(const char *p) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    if (n >= 2 && p[n - 1] == '.' && p[n - 2] == '/') /* "/proc/self/fd/." */
        for (n -= 2; n > 1 && p[n - 1] == '/'; n--) {
        }
    return n >= 2 && p[n - 2] == 'f' && p[n - 1] == 'd' && (n == 2 || p[n - 3] == '/');
}

void sh_fdlist_opened(long fd, const char *path) {
    if (fd >= 0 && fd < (long)sizeof maybe) maybe[fd] = (unsigned char)(path && last_is_fd(path));
}

/* (a protected number's link reads "/", the placeholder's: never this directory) */
int sh_fdlist_is_own(int fd) {
    if (!sh.active || fd < 0 || fd >= (int)sizeof maybe || !maybe[fd]) return 0;
    char link[64], got[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    long n = sh_gate(SYS_readlinkat, AT_FDCWD, (long)link, (long)got, sizeof got - 3, 0, 0);
    if (n <= 0 || n >= (long)sizeof got - 3) return 0;
    /* "/proc/PID/fd" or "/proc/PID/task/TID/fd": with a number after it, the link of one of
     * this process's descriptors as path.c's parser reads them (PID this process's) */
    memcpy(got + n, "/0", 3);
    long any;
    const char *rest;
    return !strncmp(got, "/proc/", 6) && sh_proc_fd_link(got, &any, &rest) == 1 && !rest[0];
}

/* ---- marked directory streams ------------------------------------------------------------- */

#define FDLIST_DIRS 16
static DIR *marked[FDLIST_DIRS]; /* atomic; NULL: free */
static int nmarked;              /* atomic: how many are in use (0: readdir looks at nothing) */

void sh_fdlist_mark(DIR *d) {
    for (int i = 0; i < FDLIST_DIRS; i++) {
        DIR *none = NULL;
        if (__atomic_compare_exchange_n(&marked[i], &none, d, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            __atomic_add_fetch(&nmarked, 1, __ATOMIC_RELEASE);
            return;
        }
    }
    /* (more than FDLIST_DIRS open at once: this one is listed unfiltered) */
}

int sh_fdlist_marked(DIR *d) {
    if (!__atomic_load_n(&nmarked, __ATOMIC_ACQUIRE)) return 0;
    for (int i = 0; i < FDLIST_DIRS; i++)
        if (__atomic_load_n(&marked[i], __ATOMIC_ACQUIRE) == d) return 1;
    return 0;
}

void sh_fdlist_unmark(DIR *d) {
    if (!__atomic_load_n(&nmarked, __ATOMIC_ACQUIRE)) return;
    for (int i = 0; i < FDLIST_DIRS; i++) {
        DIR *want = d;
        if (__atomic_compare_exchange_n(&marked[i], &want, NULL, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            __atomic_sub_fetch(&nmarked, 1, __ATOMIC_RELEASE);
            return;
        }
    }
}

/* ---- getdents64 records ------------------------------------------------------------------- */

/* The layout of getdents64(2)'s records (the kernel's linux_dirent64, glibc's struct dirent64):
 * inode (8 bytes), offset (8), the record's length (2), type (1), the name NUL-terminated;
 * each record d_reclen bytes long. Read by offset: the caller's buffer need not be aligned. */
#define REC_RECLEN 16
#define REC_NAME 19

size_t sh_fdlist_filter(void *buf, size_t len) {
    char *b = buf;
    size_t in = 0, out = 0;
    while (in + REC_NAME + 1 <= len) {
        unsigned short rl16;
        memcpy(&rl16, b + in + REC_RECLEN, sizeof rl16);
        size_t rl = rl16;
        if (rl < REC_NAME + 1 || rl > len - in || !memchr(b + in + REC_NAME, 0, rl - REC_NAME))
            break; /* (not a record the kernel writes: leave the rest out) */
        if (!sh_fdlist_hidden(b + in + REC_NAME)) {
            if (out != in) memmove(b + out, b + in, rl);
            out += rl;
        }
        in += rl;
    }
    return out;
}
