/* tests/shield/smallstack.c - the shield's trapped calls made from small stacks.
 *
 * The SIGSYS handler is entered on the stack the trapped call was made from; serving an exec or
 * a path call runs tens of KiB deep (docs/shield.md, "Stack budget"). glibc's posix_spawn
 * child runs on a 36 KiB stack and overflowed it under the clang Release build. Each case here
 * makes trapped calls (raw syscall(): from libc's code, which the code filter traps) from a
 * stack smaller than that, with an unmapped page below it, so an overflow is a SIGSEGV:
 *   clone   a CLONE_VM|CLONE_VFORK child (what posix_spawn makes) on a 16 KiB stack: a raw
 *           execve of `sh -c 'echo spawned > DIR/spawned'`, which runs shielded;
 *   thread  a thread with a 32 KiB stack: a raw openat that creates DIR/thread (a raw write and
 *           close of the protected descriptor, which the filter traps too), a raw execve
 *           of a path in the volume (refused: EACCES), a raw stat of DIR/thread;
 *   altstack the program's own 16 KiB sigaltstack: a SA_ONSTACK handler of SIGUSR1 makes the
 *           same raw calls (the shield leaves the program's alternate stack alone: the
 *           handler runs on it and sigaltstack reports it).
 *   libc    a thread made by pthread_create with PTHREAD_STACK_MIN (16 KiB, from which glibc
 *           also takes the thread's TLS) makes libc's calls, which the shield interposes:
 *           mkdir, open (through "..") and write, fsync, close, stat, realpath (whose
 *           readlink traps), rename, unlink. The interposed functions ran the served work on
 *           the caller's stack, ~40 KiB deep: SIGSEGV with a stack of 48 KiB and less.
 * usage: smallstack DIR clone|thread|altstack|libc   (exit 0 when the case worked)
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
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

static void die(const char *what) {
    fprintf(stderr, "smallstack: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* size bytes of stack with an unmapped page below them; returns the lowest usable byte */
static char *small_stack(size_t size) {
    char *m = mmap(NULL, size + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) die("mmap");
    if (mprotect(m, 4096, PROT_NONE)) die("mprotect");
    return m + 4096;
}

/* the paths in static buffers: the cases' stacks are small, and no two of them run at once */
static char cmd[4200], p[4200];

static int child_exec(void *arg) {
    (void)arg;
    snprintf(cmd, sizeof cmd, "echo spawned > '%s/spawned'", dir);
    char *argv[] = {"sh", "-c", cmd, NULL};
    syscall(SYS_execve, "/bin/sh", argv, environ);
    _exit(127);
}

/* The raw calls of the thread and the handler; 0 when each did what the kernel would. */
static int raw_calls(const char *name) {
    snprintf(p, sizeof p, "%s/%s", dir, name);
    long fd = syscall(SYS_openat, AT_FDCWD, p, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return 1;
    /* raw too: libc's write and close are the shield's own functions (interposed), which run
     * on the caller's stack, and deeper than a trap's entry (docs/shield.md, "Stack budget") */
    if (syscall(SYS_write, fd, name, strlen(name)) != (long)strlen(name)) return 2;
    if (syscall(SYS_close, fd)) return 3;
    snprintf(p, sizeof p, "%s/nonexistent-program", dir);
    char *argv[] = {"x", NULL};
    if (syscall(SYS_execve, p, argv, environ) != -1 || errno != ENOENT) return 4; /* the kernel's ENOENT */
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (syscall(SYS_newfstatat, AT_FDCWD, p, &st, 0) != 0 || st.st_size != (off_t)strlen(name)) return 5;
    return 0;
}

/* The libc case's calls; 0 when each did what the kernel would. Small locals: the thread's
 * 16 KiB hold its TLS and glibc's thread descriptor too. */
static void *libc_main(void *arg) {
    (void)arg;
    char d[256], f[256], g[256];
    snprintf(d, sizeof d, "%s/libc-dir", dir);
    snprintf(f, sizeof f, "%s/libc-dir/../libc", dir);
    snprintf(g, sizeof g, "%s/libc-renamed", dir);
    if (mkdir(d, 0700)) return (void *)1;
    int fd = open(f, O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return (void *)2;
    if (write(fd, "libc", 4) != 4 || fsync(fd) || close(fd)) return (void *)3;
    struct stat st;
    if (stat(f, &st) || st.st_size != 4) return (void *)4;
    char *rp = realpath(f, NULL);
    size_t dl = strlen(dir);
    int rp_ok = rp && !strncmp(rp, dir, dl) && !strcmp(rp + dl, "/libc");
    free(rp);
    if (!rp_ok) return (void *)5;
    if (rename(f, g) || link(g, f) || unlink(g) || rmdir(d)) return (void *)6;
    return NULL;
}

static void *thread_main(void *arg) {
    (void)arg;
    return (void *)(intptr_t)raw_calls("thread");
}

static char *alt;
static size_t altsz = 16 << 10;
static volatile int handler_rc = -1;

static void on_usr1(int sig) {
    (void)sig;
    char here;
    stack_t now;
    if ((uintptr_t)&here < (uintptr_t)alt || (uintptr_t)&here >= (uintptr_t)alt + altsz) {
        handler_rc = 10; /* not on the program's alternate stack */
        return;
    }
    if (sigaltstack(NULL, &now) || !(now.ss_flags & SS_ONSTACK) || now.ss_sp != alt) {
        handler_rc = 11;
        return;
    }
    handler_rc = raw_calls("altstack");
}

static int read_is(const char *name, const char *want) {
    char buf[64] = {0};
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strcmp(buf, want) == 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: smallstack DIR clone|thread|altstack|libc\n");
        return 2;
    }
    dir = argv[1];
    if (!strcmp(argv[2], "clone")) {
        size_t sz = 16 << 10;
        char *stk = small_stack(sz);
        pid_t pid = clone(child_exec, stk + sz, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL);
        if (pid < 0) die("clone");
        int st;
        if (waitpid(pid, &st, 0) != pid) die("waitpid");
        if (!WIFEXITED(st) || WEXITSTATUS(st)) {
            fprintf(stderr, "smallstack: the clone child ended with %s %d\n",
                    WIFSIGNALED(st) ? "signal" : "status", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            return 1;
        }
        if (!read_is("spawned", "spawned\n")) {
            fprintf(stderr, "smallstack: %s/spawned does not hold the child's line\n", dir);
            return 1;
        }
    } else if (!strcmp(argv[2], "thread")) {
        size_t sz = 32 << 10;
        pthread_attr_t at;
        pthread_t t;
        void *rc;
        pthread_attr_init(&at);
        if ((errno = pthread_attr_setstack(&at, small_stack(sz), sz))) die("pthread_attr_setstack");
        if ((errno = pthread_create(&t, &at, thread_main, NULL))) die("pthread_create");
        pthread_join(t, &rc);
        if (rc) {
            fprintf(stderr, "smallstack: the thread's raw call %d failed\n", (int)(intptr_t)rc);
            return 1;
        }
        if (!read_is("thread", "thread")) return 1;
    } else if (!strcmp(argv[2], "libc")) {
        pthread_attr_t at;
        pthread_t t;
        void *rc;
        pthread_attr_init(&at);
        if ((errno = pthread_attr_setstacksize(&at, PTHREAD_STACK_MIN))) die("pthread_attr_setstacksize");
        if ((errno = pthread_create(&t, &at, libc_main, NULL))) die("pthread_create");
        pthread_join(t, &rc);
        if (rc) {
            fprintf(stderr, "smallstack: the thread's libc call %d failed\n", (int)(intptr_t)rc);
            return 1;
        }
        if (!read_is("libc", "libc")) return 1;
    } else if (!strcmp(argv[2], "altstack")) {
        alt = small_stack(altsz);
        stack_t ss = {.ss_sp = alt, .ss_size = altsz};
        if (sigaltstack(&ss, NULL)) die("sigaltstack");
        struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_ONSTACK};
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGUSR1, &sa, NULL)) die("sigaction");
        raise(SIGUSR1);
        if (handler_rc) {
            fprintf(stderr, "smallstack: the handler's check %d failed\n", handler_rc);
            return 1;
        }
        if (!read_is("altstack", "altstack")) return 1;
    } else {
        fprintf(stderr, "smallstack: unknown case '%s'\n", argv[2]);
        return 2;
    }
    printf("smallstack %s: ok\n", argv[2]);
    return 0;
}
