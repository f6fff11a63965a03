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
 *
 * usage: shield-pathrace --console ROUNDS (under a session whose console seals stdout;
 * tests/cas/cas_console.sh): the same race on "/proc/self/fd/N", N the shield's own descriptor
 * of the host's stdout (the top of the reserved range less 15), against "/proc/selF/fd/N"
 * (nothing there). The shield refuses the first (EBADF: no protected file behind the number)
 * and the kernel finds nothing at the second (ENOENT); any other answer is the kernel acting
 * on the first: a descriptor of the host's stdout past the console shield (a marker is
 * written to it, so the caller can look for plaintext), or the kernel's own refusal to reopen
 * it (ENXIO when the host's end is a socket, as `scpctl run` gives).
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

#include "scp/shield.h"

static char buf[4096];
static size_t flip_at;
static char flip_a = 't', flip_b = 'u';
static atomic_int stop;

static void *flipper(void *arg) {
    (void)arg;
    volatile char *c = (volatile char *)&buf[flip_at];
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        *c = flip_a;
        *c = flip_b;
    }
    return NULL;
}

static long open_buf(int raw, int flags) {
    if (raw) return syscall(SYS_openat, (long)AT_FDCWD, buf, (long)flags, 0600L);
    return open(buf, flags, 0600);
}

static int console_race(long rounds) {
    long top = (long)(SCP_SHIELD_FD_BASE + SCP_SHIELD_FD_COUNT); /* the reserved range's end */
    snprintf(buf, sizeof buf, "/proc/self/fd/%ld", top - 15);
    flip_at = 9; /* the 'f' of "self" */
    flip_a = 'f';
    flip_b = 'F';
    pthread_t th;
    if (pthread_create(&th, NULL, flipper, NULL)) return 2;
    long opened = 0, by_errno[256] = {0};
    static const char mark[] = "MARKER-pathrace: plaintext past the console shield\n";
    for (long i = 0; i < 2 * rounds && opened < 5; i++) {
        long fd = open_buf(i & 1, O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            by_errno[errno & 255]++;
            continue;
        }
        opened++;
        syscall(SYS_write, fd, mark, sizeof mark - 1);
        close((int)fd);
    }
    atomic_store(&stop, 1);
    pthread_join(th, NULL);
    long kernel_real = opened; /* answers only the kernel's walk of the real path gives */
    for (int e = 1; e < 256; e++)
        if (e != EBADF && e != ENOENT) kernel_real += by_errno[e];
    printf("%s console race: %ld refused by the shield (EBADF), %ld not found (ENOENT), %ld opened the host's "
           "stdout\n",
           kernel_real ? "FAIL" : "ok  ", by_errno[EBADF], by_errno[ENOENT], opened);
    for (int e = 1; e < 256; e++)
        if (by_errno[e] && e != EBADF && e != ENOENT)
            printf("  %ld x %s: the kernel acted on the path the shield refused\n", by_errno[e], strerror(e));
    return kernel_real != 0;
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
    if (argc == 3 && !strcmp(argv[1], "--console")) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        return console_race(atol(argv[2]));
    }
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
