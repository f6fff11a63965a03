/* tests/shield/tmpfile.c - O_TMPFILE on a protected directory, as the kernel gives it.
 *
 * usage: shield-tmpfile DIR          (run under scpctl run, DIR inside the volume)
 *        shield-tmpfile DIR crash    (a nameless file written and fsynced, then SIGKILL)
 * Prints "ok" and exits 0 when every check holds; otherwise names the first that failed.
 * DIR/a and DIR/b are left with the contents "SCPTMP_a\n" and "SCPTMP_b\n". */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int fails;
#define CHECK(c, ...)                                                                        \
    do {                                                                                     \
        if (!(c)) {                                                                          \
            fprintf(stderr, "tmpfile: line %d: ", __LINE__);                                 \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fprintf(stderr, " (errno %d: %s)\n", errno, strerror(errno));                    \
            fails++;                                                                         \
        }                                                                                    \
    } while (0)

/* open(dir, O_TMPFILE | extra, 0640) and write text into it */
static int nameless(const char *dir, int extra, const char *text) {
    int fd = open(dir, O_TMPFILE | O_RDWR | extra, 0640);
    CHECK(fd >= 0, "open(%s, O_TMPFILE)", dir);
    if (fd < 0) return -1;
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write");
    return fd;
}

static size_t entries(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    unsigned long n = 0;
    if (!p || fscanf(p, "%lu", &n) != 1) n = (unsigned long)-1;
    if (p) pclose(p);
    return n;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *dir = argv[1];
    char path[4096];
    umask(022);
    if (argc > 2 && strcmp(argv[2], "crash") == 0) {
        int fd = nameless(dir, 0, "SCPTMP_crash\n");
        CHECK(fd >= 0 && fsync(fd) == 0, "fsync of a nameless file");
        if (fails) return 1;
        kill(getpid(), SIGKILL);
        return 1;
    }
    size_t before = entries(dir);

    /* the kernel's errors */
    snprintf(path, sizeof path, "%s/missing", dir);
    errno = 0;
    CHECK(open(path, O_TMPFILE | O_RDWR, 0600) < 0 && errno == ENOENT, "O_TMPFILE in a missing dir: ENOENT");
    errno = 0;
    CHECK(open(dir, O_TMPFILE | O_RDONLY, 0600) < 0 && errno == EINVAL, "O_TMPFILE|O_RDONLY: EINVAL");

    /* a: read, write, fstat, fsync, mmap; linked by linkat(fd, "", AT_EMPTY_PATH) */
    int a = nameless(dir, 0, "SCPTMP_a\n");
    struct stat st;
    CHECK(a >= 0 && fstat(a, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 0 && st.st_size == 9,
          "fstat of a nameless file: nlink %lu size %lld", (unsigned long)st.st_nlink, (long long)st.st_size);
    CHECK((st.st_mode & 0777) == 0640, "mode %o", (unsigned)st.st_mode & 0777);
    char buf[64] = {0};
    CHECK(pread(a, buf, sizeof buf - 1, 0) == 9 && strcmp(buf, "SCPTMP_a\n") == 0, "pread: '%s'", buf);
    CHECK(fsync(a) == 0, "fsync");
    char *m = mmap(NULL, 9, PROT_READ, MAP_SHARED, a, 0);
    CHECK(m != MAP_FAILED && memcmp(m, "SCPTMP_a\n", 9) == 0, "mmap");
    if (m != MAP_FAILED) munmap(m, 9);
    CHECK(entries(dir) == before, "a nameless file shows in the directory");
    snprintf(path, sizeof path, "%s/a", dir);
    CHECK(linkat(a, "", AT_FDCWD, path, AT_EMPTY_PATH) == 0, "linkat(AT_EMPTY_PATH)");
    CHECK(fstat(a, &st) == 0 && st.st_nlink == 1, "nlink after the link: %lu", (unsigned long)st.st_nlink);
    errno = 0;
    CHECK(linkat(a, "", AT_FDCWD, path, AT_EMPTY_PATH) < 0 && errno == EEXIST, "linkat over a name: EEXIST");
    struct stat sp;
    CHECK(stat(path, &sp) == 0 && sp.st_size == 9 && sp.st_ino == st.st_ino, "stat of the new name");

    /* b: linked through /proc/self/fd with AT_SYMLINK_FOLLOW; written after the link too */
    int b = nameless(dir, 0, "SCPTMP_");
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", b);
    snprintf(path, sizeof path, "%s/b", dir);
    CHECK(linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0, "linkat(/proc/self/fd, FOLLOW)");
    CHECK(write(b, "b\n", 2) == 2, "write after the link");

    /* c: O_EXCL, never linkable (ENOENT as the kernel); d: closed without a name */
    int c = nameless(dir, O_EXCL, "SCPTMP_c\n");
    snprintf(path, sizeof path, "%s/c", dir);
    errno = 0;
    CHECK(linkat(c, "", AT_FDCWD, path, AT_EMPTY_PATH) < 0 && errno == ENOENT, "O_EXCL linkat: ENOENT");
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", c);
    errno = 0;
    CHECK(linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) < 0 && errno == ENOENT,
          "O_EXCL linkat /proc: ENOENT");
    int d = nameless(dir, 0, "SCPTMP_d\n");
    CHECK(close(a) == 0 && close(b) == 0 && close(c) == 0 && close(d) == 0, "close");
    CHECK(entries(dir) == before + 2, "entries after: %zu, before %zu", entries(dir), before);
    if (fails) return 1;
    puts("ok");
    return 0;
}
