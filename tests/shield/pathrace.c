/* tests/shield/pathrace.c - a path that another thread changes while the shield looks at it.
 *
 * usage: shield-pathrace MOUNT ROUNDS
 * MOUNT is a protected mount point ".../mnt"; the caller made a host directory ".../mnu" next
 * to it (the same name but its last byte) holding a file "f". A thread flips that last byte of
 * one path buffer between 't' and 'u' (a one-byte store: the path is always one of the two,
 * never a torn mixture) while this thread opens the buffer, through libc (the fast path) and
 * by raw syscall (the trap path). Every answer must be one of the two the shield gives for a
 * path it looked at: the protected file or directory (served, emulated st_dev), or the host's
 * (its st_dev and inode). A kernel descriptor of the empty read-only tmpfs at the mount point,
 * or EROFS from it, means that the kernel acted on a path that the shield never classified:
 * the shield checked one string and the kernel read another.
 *
 * This cannot be deterministic: the flip must land between the shield's read of the string
 * and the kernel's. With the two threads on two cores (or a preemption inside that window) it
 * lands often: before the fix every run here failed within a few thousand rounds.
 * Exit 0: no mismatch in ROUNDS rounds per case; 1: a mismatch (printed).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char buf[4096];
static size_t flip_at;
static atomic_int stop;

static void *flipper(void *arg) {
    (void)arg;
    volatile char *c = (volatile char *)&buf[flip_at];
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        *c = 't';
        *c = 'u';
    }
    return NULL;
}

static long open_buf(int raw, int flags) {
    if (raw) return syscall(SYS_openat, (long)AT_FDCWD, buf, (long)flags, 0600L);
    return open(buf, flags, 0600);
}

/* One case: ROUNDS opens of buf with flags. host: the st_dev/st_ino of the host's object. */
static int run_case(const char *name, int raw, int flags, const struct stat *host, dev_t prot_dev, long rounds) {
    long served = 0, plain = 0, bad = 0;
    for (long i = 0; i < rounds && bad < 5; i++) {
        long fd = open_buf(raw, flags);
        if (fd < 0) {
            printf("  %s: open failed: %s (the kernel acted on a path the shield did not look at)\n", name,
                   strerror(errno));
            bad++;
            continue;
        }
        struct stat st;
        if (fstat((int)fd, &st)) {
            printf("  %s: fstat failed: %s\n", name, strerror(errno));
            bad++;
        } else if (st.st_dev == prot_dev) {
            served++;
        } else if (st.st_dev == host->st_dev && st.st_ino == host->st_ino) {
            plain++;
        } else {
            printf("  %s: got a kernel descriptor of device %#lx inode %lu, neither the protected object nor "
                   "the host's: the shield checked one path, the kernel opened another\n",
                   name, (unsigned long)st.st_dev, (unsigned long)st.st_ino);
            bad++;
        }
        close((int)fd);
    }
    printf("%s %s: %ld served, %ld on the host, %ld mismatched\n", bad ? "FAIL" : "ok  ", name, served, plain, bad);
    return bad != 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: shield-pathrace MOUNT ROUNDS\n");
        return 2;
    }
    const char *mnt = argv[1];
    long rounds = atol(argv[2]);
    size_t ml = strlen(mnt);
    if (ml < 2 || ml + 3 >= sizeof buf || mnt[ml - 1] != 't') {
        fprintf(stderr, "shield-pathrace: MOUNT must end in 't'\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    char host[4096], prot[4096];
    snprintf(host, sizeof host, "%.*su", (int)(ml - 1), mnt);
    snprintf(prot, sizeof prot, "%s/f", mnt);
    /* the protected side: a file in the volume; its emulated device */
    int pf = open(prot, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    struct stat pst, hdir, hfile;
    char hf[4200];
    snprintf(hf, sizeof hf, "%s/f", host);
    if (pf < 0 || write(pf, "protected\n", 10) != 10 || fstat(pf, &pst) || close(pf) || stat(host, &hdir) ||
        stat(hf, &hfile)) {
        perror("shield-pathrace: setup");
        return 2;
    }
    if (pst.st_dev == hdir.st_dev) {
        fprintf(stderr, "shield-pathrace: the protected file does not look emulated\n");
        return 2;
    }
    flip_at = ml - 1;
    int fails = 0;
    pthread_t th;
    /* the mount point itself (a directory), then a file below it, opened for writing */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) snprintf(buf, sizeof buf, "%s", mnt);
        else snprintf(buf, sizeof buf, "%s/f", mnt);
        atomic_store(&stop, 0);
        if (pthread_create(&th, NULL, flipper, NULL)) {
            perror("pthread_create");
            return 2;
        }
        for (int raw = 0; raw < 2; raw++) {
            char name[64];
            snprintf(name, sizeof name, "%s %s", raw ? "raw openat" : "libc open", pass ? "file O_WRONLY" : "directory");
            fails |= run_case(name, raw, pass ? O_WRONLY | O_CLOEXEC : O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                              pass ? &hfile : &hdir, pst.st_dev, rounds);
        }
        atomic_store(&stop, 1);
        pthread_join(th, NULL);
    }
    return fails;
}
