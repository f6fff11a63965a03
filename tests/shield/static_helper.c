/* tests/shield/static_helper.c - a statically linked child: no libc to interpose, no shield.
 * usage: shield-static-helper MOUNT
 * Puts a marker into a file under MOUNT by path (a supervisor serves static images: the parent
 * checks that what this reports as written is stored), then tries every inherited descriptor
 * at 1024 and above (the shield's reserved ones). Exits 0 when the path write failed, 3 when
 * it succeeded, and 1 if an attempt through a reserved descriptor succeeded; the seccomp filter
 * may also kill it (SIGSYS) in that loop, which is fine. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* shield-static-helper MOUNT probe (tests/shield/static.sh): hostile arguments to the
 * supervisor that serves static images; each must fail as the kernel would. MOUNT/big must be
 * a file above the size limit (SCP_STATIC_MAX_MB=1). Exits 0 when all did. */
static int bad;
static void expect(const char *what, long r, int want) {
    int e = errno;
    if (r == -1 && e == want) {
        printf("ok   %s: %s\n", what, strerror(want));
        return;
    }
    printf("FAIL %s: returned %ld (%s), expected %s\n", what, r, r == -1 ? strerror(e) : "-", strerror(want));
    bad = 1;
}

static int probe(const char *mnt) {
    char p[8192], q[4096];
    struct stat st;
    expect("open of an unmapped path pointer", open((const char *)8, O_RDONLY), EFAULT);
    /* a path under the mount that runs into an unmapped page without its NUL */
    char *pg = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pg == MAP_FAILED || munmap(pg + 4096, 4096)) return 2;
    int l = snprintf(pg + 4096 - 200, 200, "%s/", mnt);
    memset(pg + 4096 - 200 + l, 'a', (size_t)(200 - l));
    expect("open of a path without its NUL before an unmapped page", open(pg + 4096 - 200, O_RDONLY), EFAULT);
    l = snprintf(p, sizeof p, "%s/", mnt);
    memset(p + l, 'a', 5000);
    p[l + 5000] = 0;
    expect("open of a path longer than PATH_MAX", open(p, O_CREAT | O_WRONLY, 0600), ENAMETOOLONG);
    snprintf(p, sizeof p, "%s/probe.txt", mnt);
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    if (fd < 0 || write(fd, "x", 1) != 1 || close(fd)) {
        printf("FAIL cannot create %s: %s\n", p, strerror(errno));
        return 1;
    }
    expect("stat into an unmapped buffer", stat(p, (struct stat *)8), EFAULT);
    fd = open(p, O_RDONLY);
    expect("write on a read-only descriptor", write(fd, "y", 1), EBADF);
    close(fd);
    snprintf(q, sizeof q, "/tmp/scp-static-probe-%d", (int)getpid());
    expect("rename out of the volume", rename(p, q), EXDEV);
    snprintf(p, sizeof p, "%s/big", mnt);
    expect("open of a file above the size limit", open(p, O_RDONLY), EFBIG);
    snprintf(p, sizeof p, "%s/grown.txt", mnt);
    fd = open(p, O_CREAT | O_RDWR | O_TRUNC, 0600);
    static char mb[1 << 20];
    if (fd < 0 || write(fd, mb, sizeof mb) != (ssize_t)sizeof mb || write(fd, mb, sizeof mb) != (ssize_t)sizeof mb) return 1;
    expect("fsync of a file grown above the size limit", fsync(fd), EFBIG);
    if (ftruncate(fd, 10) || fsync(fd) || close(fd)) {
        printf("FAIL fsync after shrinking below the limit: %s\n", strerror(errno));
        bad = 1;
    }
    expect("stat of a missing file", stat(mnt, &st) ? -1 : stat(q, &st), ENOENT);
    return bad;
}

/* shield-static-helper MOUNT signals: renames and exclusive creates while a timer
 * interrupts the process every 20 us (SA_RESTART, as Go's preemption signal): a call the
 * supervisor carried out must not be carried out again when the signal restarts it. */
static volatile sig_atomic_t ticks;
static void tick(int sig) { (void)sig; ticks++; }

static int signals(const char *mnt) {
    char a[4096], b[4096];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = tick;
    sa.sa_flags = SA_RESTART;
    struct itimerval it = {{0, 20}, {0, 20}};
    if (sigaction(SIGALRM, &sa, NULL) || setitimer(ITIMER_REAL, &it, NULL)) return 2;
    snprintf(a, sizeof a, "%s/sig-a", mnt);
    snprintf(b, sizeof b, "%s/sig-b", mnt);
    int fd = open(a, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    if (fd < 0 || close(fd)) return 2;
    for (int i = 0; i < 300; i++) {
        if (rename(a, b) || rename(b, a)) {
            printf("FAIL rename %d under signals: %s\n", i, strerror(errno));
            return 1;
        }
        fd = open(b, O_CREAT | O_EXCL | O_WRONLY, 0600);
        if (fd < 0 || close(fd) || unlink(b)) {
            printf("FAIL exclusive create %d under signals: %s\n", i, strerror(errno));
            return 1;
        }
    }
    printf("ok   600 renames and 300 exclusive creates under %d signals\n", (int)ticks);
    return 0;
}

int main(int argc, char **argv) {
    static const char m[] = "SCPBYPASS_static_marker_0123456789";
    if (argc == 3 && !strcmp(argv[2], "probe")) return probe(argv[1]);
    if (argc == 3 && !strcmp(argv[2], "signals")) return signals(argv[1]);
    if (argc != 2) return 2;
    char p[4096];
    snprintf(p, sizeof p, "%s/static.txt", argv[1]);
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    int stored = fd >= 0 && write(fd, m, sizeof m - 1) == (ssize_t)sizeof m - 1 && close(fd) == 0;
    for (int i = 1024; i < 65536; i++) { /* the shield's numbers (the test runner may pass low ones) */
        if (fcntl(i, F_GETFD) < 0) continue;
        if (write(i, m, sizeof m - 1) > 0) return 1;
        int d = openat(i, "static.txt", O_CREAT | O_WRONLY, 0600);
        if (d >= 0 && write(d, m, sizeof m - 1) > 0) return 1;
    }
    return stored ? 3 : 0;
}
