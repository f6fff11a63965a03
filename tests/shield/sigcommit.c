/* tests/shield/sigcommit.c - signals that land while the shield commits a protected file.
 *
 * The main thread rewrites one record of file A and fsyncs it, in a loop, while a timer
 * (timer_create, SIGEV_THREAD_ID: this thread, every 50 us) interrupts it. The handler:
 *   _exit   calls _exit after some records (PostgreSQL's SIGQUIT handler does), once
 *   exit    calls exit() the same way
 *   thread  calls _exit as above, but the timer interrupts another thread (which sleeps), so
 *           the exit's commit meets the main thread's commit from outside
 *   write   writes and fsyncs a record of its own into file B and into the second half of A
 *           (write(2) and fsync(2) are async-signal-safe) on every signal; the loop ends after
 *           N records and the program exits normally
 * Every record is RECSZ bytes of one byte value with its number in front, so a reader can tell
 * a whole record from a torn one.
 * usage: sigcommit DIR _exit|exit|thread|write [N]    check: sigcommit DIR check
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RECSZ 4096

static int fd_a = -1, fd_b = -1;
static volatile sig_atomic_t done_main, done_sig, mode;

static void fill(char *rec, unsigned n) {
    memset(rec, 'a' + (int)(n % 26), RECSZ);
    snprintf(rec, 16, "%010u", n);
}

/* a record at off: whole (its number and its byte agree) or the file is short (never written) */
static int check_rec(int fd, off_t off, const char *name, unsigned *n) {
    char rec[RECSZ], want[RECSZ];
    ssize_t r = pread(fd, rec, RECSZ, off);
    if (r == 0) return 0;
    if (r != RECSZ) {
        fprintf(stderr, "%s@%lld: read %zd (%s)\n", name, (long long)off, r, r < 0 ? strerror(errno) : "short");
        return -1;
    }
    *n = (unsigned)strtoul(rec, NULL, 10);
    fill(want, *n);
    if (memcmp(rec, want, RECSZ)) {
        fprintf(stderr, "%s@%lld: torn record (number %u)\n", name, (long long)off, *n);
        return -1;
    }
    return 1;
}

static void put(int fd, off_t off, unsigned n) {
    char rec[RECSZ];
    fill(rec, n);
    if (pwrite(fd, rec, RECSZ, off) != RECSZ || fsync(fd)) {
        static const char msg[] = "sigcommit: write or fsync failed\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(3);
    }
}

/* "ended at record N" on stderr (async-signal-safe): the last record main had fsynced when the
 * handler ended the program. Read back must be N, or N + 1 when the signal landed in the next
 * one's commit (which the exit then finishes). On a fast file system (tmpfs) main fsyncs more
 * than one record between two ticks, so N is not always 20. */
static void say_done(void) {
    char b[40] = "sigcommit: ended at record ";
    size_t len = strlen(b);
    char d[12];
    int k = 0;
    unsigned v = (unsigned)done_main;
    do d[k++] = (char)('0' + v % 10); while ((v /= 10) && k < (int)sizeof d);
    while (k) b[len++] = d[--k];
    b[len++] = '\n';
    ssize_t w = write(2, b, len);
    (void)w;
}

static void on_tick(int sig) {
    (void)sig;
    int saved = errno;
    static sig_atomic_t last;
    if (mode == 'w' && last != done_main) { /* one record per main record: the loop goes on */
        last = done_main;
        put(fd_b, 0, (unsigned)++done_sig);
        put(fd_a, RECSZ, (unsigned)done_sig);
    }
    else if (done_main >= 20 && (mode == '_' || mode == 't')) {
        say_done();
        _exit(0);
    } else if (done_main >= 20 && mode == 'e') {
        say_done();
        exit(0);
    }
    errno = saved;
}

static void *sleeper(void *arg) {
    pid_t *tid = arg;
    __atomic_store_n(tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
    for (;;) pause();
    return NULL;
}

static int check(const char *dir) {
    char p[4096];
    unsigned n;
    snprintf(p, sizeof p, "%s/A", dir);
    int a = open(p, O_RDONLY);
    snprintf(p, sizeof p, "%s/B", dir);
    int b = open(p, O_RDONLY);
    if (a < 0) return perror("open A"), 1;
    int ra = check_rec(a, 0, "A", &n);
    if (ra < 0) return 1;
    printf("A: record %u", ra ? n : 0);
    if (b >= 0) { /* the write mode's: B's and A's second record */
        int rb = check_rec(b, 0, "B", &n);
        if (rb < 0) return 1;
        printf(", B: record %u", rb ? n : 0);
        rb = check_rec(a, RECSZ, "A", &n);
        if (rb < 0) return 1;
        printf(", A's second: record %u", rb ? n : 0);
    }
    printf("\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) return fprintf(stderr, "usage: sigcommit DIR _exit|exit|thread|write|check [N]\n"), 2;
    if (!strcmp(argv[2], "check")) return check(argv[1]);
    mode = argv[2][0] == '_' ? '_' : argv[2][0];
    unsigned n = argc > 3 ? (unsigned)atoi(argv[3]) : 2000;
    char p[4096];
    snprintf(p, sizeof p, "%s/A", argv[1]);
    fd_a = open(p, O_RDWR | O_CREAT, 0600);
    snprintf(p, sizeof p, "%s/B", argv[1]);
    if (mode == 'w') fd_b = open(p, O_RDWR | O_CREAT, 0600);
    if (fd_a < 0 || (mode == 'w' && fd_b < 0)) return perror("open"), 1;

    struct sigaction sa = {.sa_handler = on_tick, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL)) return perror("sigaction"), 1;
    struct sigevent ev = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGALRM};
    ev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    if (mode == 't') {
        pthread_t th;
        pid_t tid = 0;
        if (pthread_create(&th, NULL, sleeper, &tid)) return fprintf(stderr, "pthread_create failed\n"), 1;
        while (!__atomic_load_n(&tid, __ATOMIC_ACQUIRE)) sched_yield();
        ev._sigev_un._tid = tid;
    }
    timer_t t;
    if (timer_create(CLOCK_MONOTONIC, &ev, &t)) return perror("timer_create"), 1;
    struct itimerspec its = {.it_interval = {0, 50000}, .it_value = {0, 50000}};
    if (timer_settime(t, 0, &its, NULL)) return perror("timer_settime"), 1;

    for (unsigned i = 1; i <= n; i++) {
        put(fd_a, 0, i);
        done_main = (sig_atomic_t)i;
    }
    /* _exit/exit modes: the handler ends the program long before this */
    its.it_value.tv_nsec = 0;
    timer_settime(t, 0, &its, NULL);
    printf("main wrote %u records, the handler %d\n", n, (int)done_sig);
    return mode == 'w' ? 0 : 4;
}
