/* tests/shield/badptr.c DIR - bad pointers and the program's own SIGSEGV handler, under the
 * shield (the shield copies paths with a fault-recovering copy, src/shield/nofault.c) and
 * without it (the same answers: what the kernel gives).
 *
 * - NULL, an unmapped page, a PROT_NONE page and a string that runs into an unmapped page,
 *   passed as the path (or the buffer) of open, stat, chmod, rename, mkdir, unlink, truncate,
 *   through libc and through raw system calls: EFAULT, no crash; in the main thread, in a
 *   thread that blocks SIGSEGV and SIGBUS, and inside the program's own SIGSEGV handler;
 * - in that thread (where the shield probes pages instead of its fault-recovering copy),
 *   answers written into buffers that begin 4 bytes before a page's end or are shorter than 8
 *   bytes change no byte outside them (the probe stores 8 bytes: it must land inside);
 * - the program's SIGSEGV handler (SA_SIGINFO | SA_ONSTACK, an alternate stack) gets its own
 *   faults with the faulting address in si_addr, on its alternate stack, and its sigaction
 *   view is what it set; signal() reports the previous handler;
 * - without a handler, a fault still kills the program with SIGSEGV.
 * Prints "ok ..." lines; exit 0 when all passed. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *dir;
static int failures;
static char *unmapped, *noaccess, *tail; /* tail: a path whose NUL lies in an unmapped page */

static void bad(const char *what) {
    printf("FAIL %s\n", what);
    failures++;
}

static char *path(const char *name) {
    static char buf[4][4096];
    static int i;
    char *b = buf[i++ % 4];
    snprintf(b, 4096, "%s/%s", dir, name);
    return b;
}

/* Every call with each bad pointer: -1/EFAULT. Returns the number that did not. */
static int efaults(const char *where) {
    char *const bads[] = {NULL, unmapped, noaccess, tail};
    const char *names[] = {"NULL", "an unmapped page", "a PROT_NONE page", "a string into an unmapped page"};
    int nbad = 0;
    for (int i = 0; i < 4; i++) {
        char *volatile b = bads[i]; /* volatile: libc's prototypes say nonnull */
        struct stat st;
#define EXPECT(call)                                                                     \
    do {                                                                                 \
        errno = 0;                                                                       \
        long r_ = (long)(call);                                                          \
        if (r_ != -1 || errno != EFAULT) {                                               \
            printf("     %s: %s with %s: %ld, errno %d\n", where, #call, names[i], r_, errno); \
            nbad++;                                                                      \
        }                                                                                \
    } while (0)
        EXPECT(open(b, O_RDONLY));
        EXPECT(open(b, O_CREAT | O_WRONLY, 0600));
        EXPECT(stat(b, &st));
        EXPECT(lstat(b, &st));
        EXPECT(chmod(b, 0644));
        EXPECT(mkdir(b, 0700));
        EXPECT(unlink(b));
        EXPECT(truncate(b, 0));
        EXPECT(rename(b, path("renamed")));
        EXPECT(rename(path("file"), b));
        EXPECT(syscall(SYS_openat, (long)AT_FDCWD, b, (long)O_RDONLY, 0L));
        EXPECT(syscall(SYS_newfstatat, (long)AT_FDCWD, b, &st, 0L));
        EXPECT(syscall(SYS_fchmodat, (long)AT_FDCWD, b, 0644L, 0L));
        EXPECT(syscall(SYS_renameat2, (long)AT_FDCWD, path("file"), (long)AT_FDCWD, b, 0L));
        if (b != tail) { /* a buffer, not a string: tail's page start is mapped */
            EXPECT(stat(path("file"), (struct stat *)b));
            EXPECT(syscall(SYS_newfstatat, (long)AT_FDCWD, path("file"), b, 0L));
        }
#undef EXPECT
    }
    return nbad;
}

/* Answers written into buffers at awkward places: a struct stat that begins 4 bytes before a
 * page's end, and a readlink into 3 bytes; every byte around them must stay as it was. */
static int no_stray_writes(const char *where) {
    unsigned char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (two == MAP_FAILED) return 1;
    int nbad = 0, fd = open(path("file"), O_RDONLY);
    memset(two, 0xAA, 8192);
    struct stat *st = (struct stat *)(void *)(two + 4096 - 4); /* misaligned on purpose: raw call */
    if (fd < 0 || syscall(SYS_fstat, fd, st)) nbad++;
    for (size_t i = 0; i < 8192; i++)
        if ((i < 4092 || i >= 4092 + sizeof *st) && two[i] != 0xAA) {
            printf("     %s: fstat into a buffer across a page end changed byte %zd from it\n", where,
                   (ssize_t)i - 4092);
            nbad++;
            break;
        }
    memset(two, 0xAA, 8192);
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    long n = syscall(SYS_readlinkat, AT_FDCWD, link, two + 100, 3);
    if (n != 3) nbad++;
    for (size_t i = 0; i < 8192; i++)
        if ((i < 100 || i >= 103) && two[i] != 0xAA) {
            printf("     %s: readlink into 3 bytes changed byte %zd from them\n", where, (ssize_t)i - 100);
            nbad++;
            break;
        }
    if (fd >= 0) close(fd);
    munmap(two, 8192);
    return nbad;
}

static void *blocked_thread(void *arg) {
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGSEGV);
    sigaddset(&s, SIGBUS);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    const char *where = "thread with SIGSEGV and SIGBUS blocked";
    return (void *)(intptr_t)(efaults(where) + no_stray_writes(where));
}

static sigjmp_buf jb;
static volatile void *fault_addr;
static volatile uintptr_t handler_sp;
static volatile int handler_efaults = -1;
static char altstack[64 * 1024];

static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    char here;
    fault_addr = si->si_addr;
    handler_sp = (uintptr_t)&here;
    if (sig == SIGSEGV && handler_efaults < 0) handler_efaults = efaults("inside the SIGSEGV handler");
    siglongjmp(jb, 1);
}

static void on_segv_plain(int sig) { (void)sig; siglongjmp(jb, 2); }

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    dir = argv[1];
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 3 && !strcmp(argv[2], "sigign")) { /* the actions this image started with */
        struct sigaction a, b;
        if (sigaction(SIGSEGV, NULL, &a) || sigaction(SIGBUS, NULL, &b)) return 1;
        printf("SIGSEGV %s SIGBUS %s\n", a.sa_handler == SIG_IGN ? "ignored" : "default",
               b.sa_handler == SIG_IGN ? "ignored" : "default");
        return 0;
    }
    if (argc == 4 && !strcmp(argv[2], "opens")) { /* N opens and stats of plain files (strace counts) */
        for (int i = 0, n = atoi(argv[3]); i < n; i++) {
            struct stat st;
            int fd = open(path("file"), O_CREAT | O_RDONLY, 0600);
            if (fd < 0 || stat(path("file"), &st)) return 1;
            close(fd);
        }
        return 0;
    }
    /* Low fixed addresses: the kernel places the process's other mappings (the shield's
     * too) top-down from far above, so nothing fills these holes while the test runs. */
    char *pages = mmap((void *)0x20000000, 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    noaccess = mmap((void *)0x28000000, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (pages != (void *)0x20000000 || noaccess != (void *)0x28000000) return 2;
    unmapped = (char *)0x30000000;
    /* 16 bytes of 'x' and no NUL before the unmapped page at 0x20001000: the copy runs into it */
    memset(pages, 'x', 4096);
    tail = pages + 4096 - 16;

    int fd = open(path("file"), O_CREAT | O_RDWR, 0600);
    if (fd < 0) return 2;
    close(fd);

    int n = efaults("main thread");
    if (n) bad("bad pointers in the main thread");
    else printf("ok   NULL, unmapped, PROT_NONE, a string into a hole: EFAULT (libc and raw)\n");

    pthread_t t;
    void *res;
    if (pthread_create(&t, NULL, blocked_thread, NULL) || pthread_join(t, &res)) return 2;
    if (res) bad("bad pointers in a thread that blocks SIGSEGV and SIGBUS");
    else printf("ok   EFAULT in a thread that blocks SIGSEGV and SIGBUS; no byte written outside a buffer\n");

    /* the program's own handler, on its alternate stack */
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
    if (sigaltstack(&ss, NULL)) return 2;
    struct sigaction sa, got;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR1);
    if (sigaction(SIGSEGV, &sa, NULL)) return 2;
    if (sigaction(SIGSEGV, NULL, &got)) return 2;
    if (got.sa_sigaction != on_segv || (got.sa_flags & (SA_SIGINFO | SA_ONSTACK)) != (SA_SIGINFO | SA_ONSTACK) ||
        (got.sa_flags & SA_RESETHAND) || !sigismember(&got.sa_mask, SIGUSR1) || sigismember(&got.sa_mask, SIGUSR2))
        bad("sigaction(SIGSEGV) does not report what the program set");
    else printf("ok   sigaction(SIGSEGV) reports the program's handler, flags and mask\n");

    for (int round = 0; round < 2; round++) {
        char *volatile target = round ? noaccess + 8 : unmapped + 24; /* (read after the longjmp) */
        fault_addr = NULL;
        if (!sigsetjmp(jb, 1)) {
            *(volatile char *)target = 1;
            bad("a store to a bad address did not fault");
        }
        if (fault_addr != target) {
            printf("     si_addr %p, expected %p\n", (void *)fault_addr, (void *)target);
            bad("the program's SIGSEGV handler did not get the faulting address");
        } else if (handler_sp < (uintptr_t)altstack || handler_sp >= (uintptr_t)altstack + sizeof altstack) {
            bad("the program's SIGSEGV handler did not run on its alternate stack");
        }
    }
    if (handler_efaults != 0) bad("bad pointers inside the program's SIGSEGV handler");
    else printf("ok   the program's SIGSEGV handler gets its faults (si_addr, alternate stack); EFAULT inside it\n");

    /* bad pointers still EFAULT with the program's handler installed (not its faults) */
    if (efaults("with the program's handler installed")) bad("bad pointers with the program's handler");
    else printf("ok   EFAULT with the program's SIGSEGV handler installed\n");

    /* signal(): the previous handler back; a plain handler gets its fault */
    void (*prev)(int) = signal(SIGSEGV, on_segv_plain);
    if (prev == SIG_ERR || prev == SIG_DFL || prev == on_segv_plain) bad("signal(SIGSEGV) did not return the previous handler");
    if (sigsetjmp(jb, 1) != 2) {
        *(volatile char *)unmapped = 1;
        bad("a store to a bad address did not fault");
    } else printf("ok   signal(SIGSEGV): previous handler reported, the new one gets the fault\n");

    /* no handler: the fault kills the program with SIGSEGV, as without the shield */
    signal(SIGSEGV, SIG_DFL);
    pid_t pid = fork();
    if (pid == 0) {
        *(volatile char *)unmapped = 1;
        _exit(0);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFSIGNALED(st) || WTERMSIG(st) != SIGSEGV)
        bad("with SIG_DFL, a fault did not kill the program with SIGSEGV");
    else printf("ok   SIG_DFL: a fault kills the program with SIGSEGV\n");
    /* SIG_IGN: the kernel never ignores a fault */
    pid = fork();
    if (pid == 0) {
        signal(SIGSEGV, SIG_IGN);
        *(volatile char *)unmapped = 1;
        _exit(0);
    }
    if (waitpid(pid, &st, 0) != pid || !WIFSIGNALED(st) || WTERMSIG(st) != SIGSEGV)
        bad("with SIG_IGN, a fault did not kill the program with SIGSEGV");
    else printf("ok   SIG_IGN: a fault still kills the program with SIGSEGV\n");

    if (failures) printf("%d FAILED\n", failures);
    return failures ? 1 : 0;
}
