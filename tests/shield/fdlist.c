/* tests/shield/fdlist.c - a program that lists its own descriptors, as `ls -l /proc/self/fd`
 * and daemons that close what they find there do (tests/shield/fdlist.sh).
 *
 *   fdlist DIR SECONDS
 *
 * DIR is where it opens a file (a protected mount under the shield, a plain directory without
 * it; SECONDS is unused, for tests/shield/lib.sh's both_ways). It opens DIR/f for writing,
 * dup2s it to 9, opens /dev/null, and then lists /proc/self/fd, /dev/fd and /proc/PID/fd with
 * readdir, /proc/self/fd with the getdents64 function and with scandir (glibc's reads through
 * its own internal readdir). Each listing must name exactly the numbers below 4096 that
 * fcntl(F_GETFD) finds open (the listing's own descriptor included), and name the protected
 * file's number and 9; scandir's must come sorted. Then, as a daemon does, it closes every listed
 * number from 3 up (each close must succeed), opens DIR/f again, writes a line and exits 0. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXFD 4096

static int fails;
static void fail(const char *what, int n) {
    fprintf(stderr, "fdlist: %s (%d)\n", what, n);
    fails++;
}

/* the numbers fcntl finds open, except `skip` (a listing's own descriptor, open only while it
 * lists) */
static void open_set(unsigned char *set, int skip) {
    for (int n = 0; n < MAXFD; n++) set[n] = n != skip && fcntl(n, F_GETFD) >= 0;
}

static void compare(const char *how, const unsigned char *listed, int own, int must1, int must2) {
    unsigned char open_now[MAXFD];
    open_set(open_now, own);
    for (int n = 0; n < MAXFD; n++) {
        if (n == own) continue;
        if (listed[n] && !open_now[n]) { fprintf(stderr, "fdlist: %s lists %d, which is not open\n", how, n); fails++; }
        if (!listed[n] && open_now[n]) { fprintf(stderr, "fdlist: %s does not list open %d\n", how, n); fails++; }
    }
    if (!listed[must1] || !listed[must2]) fail("the protected file's numbers are not listed", must1);
}

static int num(const char *name) {
    char *end;
    long n = strtol(name, &end, 10);
    return *end || end == name || n < 0 ? -1 : (int)n;
}

static void by_readdir(const char *path, const char *how, int must1, int must2) {
    DIR *d = opendir(path);
    if (!d) { fail("opendir", errno); return; }
    unsigned char listed[MAXFD] = {0};
    struct dirent *e;
    while ((e = readdir(d))) {
        int n = num(e->d_name);
        if (n >= MAXFD) fail("a number past the probed range", n);
        else if (n >= 0) listed[n] = 1;
    }
    compare(how, listed, dirfd(d), must1, must2);
    closedir(d);
}

static int numeric_first(const struct dirent *e) { return e->d_name[0] >= '0' && e->d_name[0] <= '9'; }

static void by_scandir(int must1, int must2) {
    struct dirent **v;
    int own = dup(0); /* the lowest free number: the one scandir's own descriptor takes */
    close(own);
    int n = scandir("/proc/self/fd", &v, numeric_first, alphasort);
    if (n < 0) { fail("scandir", errno); return; }
    unsigned char listed[MAXFD] = {0};
    for (int i = 0; i < n; i++) {
        int k = num(v[i]->d_name);
        if (k >= MAXFD) fail("a number past the probed range", k);
        else if (k >= 0) listed[k] = 1;
        if (i && strcmp(v[i - 1]->d_name, v[i]->d_name) >= 0) fail("scandir's list is not sorted", i);
        free(v[i]);
    }
    free(v);
    compare("scandir of /proc/self/fd", listed, own, must1, must2);
}

static void by_getdents(int must1, int must2) {
    int fd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) { fail("open /proc/self/fd", errno); return; }
    unsigned char listed[MAXFD] = {0};
    char buf[512]; /* small: several calls, some with hidden names only */
    ssize_t r;
    while ((r = getdents64(fd, buf, sizeof buf)) > 0)
        for (ssize_t at = 0; at < r;) {
            struct dirent64 *e = (struct dirent64 *)(buf + at);
            int n = num(e->d_name);
            if (n >= MAXFD) fail("a number past the probed range", n);
            else if (n >= 0) listed[n] = 1;
            at += e->d_reclen;
        }
    if (r < 0) fail("getdents64", errno);
    compare("getdents64 of /proc/self/fd", listed, fd, must1, must2);
    close(fd);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    char path[4096];
    snprintf(path, sizeof path, "%s/f", argv[1]);
    int f = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f < 0 || dup2(f, 9) != 9 || open("/dev/null", O_RDONLY) < 0) { perror("fdlist: open"); return 1; }
    by_readdir("/proc/self/fd", "readdir of /proc/self/fd", f, 9);
    by_readdir("/dev/fd", "readdir of /dev/fd", f, 9);
    char pid[64];
    snprintf(pid, sizeof pid, "/proc/%d/fd", (int)getpid());
    by_readdir(pid, "readdir of /proc/PID/fd", f, 9);
    by_getdents(f, 9);
    by_scandir(f, 9);
    /* a daemon's close of everything it finds */
    DIR *d = opendir("/proc/self/fd");
    if (!d) { fail("opendir", errno); return 1; }
    int todo[MAXFD], k = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (num(e->d_name) >= 3 && num(e->d_name) != dirfd(d) && k < MAXFD) todo[k++] = num(e->d_name);
    closedir(d);
    for (int i = 0; i < k; i++)
        if (close(todo[i]) < 0) fail("close of a listed descriptor", todo[i]);
    int g = open(path, O_WRONLY | O_APPEND);
    if (g < 0 || write(g, "SCPMARK_fdlist\n", 15) != 15 || close(g) < 0) fail("write after the closes", errno);
    if (fails) return 1;
    printf("fdlist: %d listed descriptors closed, the file written after\n", k);
    return 0;
}
