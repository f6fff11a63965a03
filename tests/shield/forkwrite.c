/* forkwrite DIR ROUNDS [SECONDS]: a thread writes a protected file through one descriptor while the main
 * thread forks a child that writes through the same descriptor. The kernel gives the two one
 * offset: every record lands whole, one after another, and the file holds all of them. A fork
 * that copied the cursor while the thread's write was under way made both write at one offset
 * ("T 000T 0001": a lost record). The race window is small, so the test repeats it.
 * Prints "bad rounds: N of R" (R: the rounds run; with SECONDS, no round starts after that many
 * seconds, so that a loaded machine runs fewer rounds rather than past the test's timeout);
 * exits 1 when a round lost or cut a record. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TREC "T 0000\n" /* 7 bytes, the thread's */
#define CREC "C 00\n"   /* 5 bytes, the child's */
#define NT 50

static int fd;
static volatile int started;

static void *writer(void *arg) {
    (void)arg;
    started = 1;
    for (int i = 0; i < NT; i++)
        if (write(fd, TREC, 7) != 7) _exit(2);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: forkwrite DIR ROUNDS [SECONDS]\n");
        return 2;
    }
    int rounds = atoi(argv[2]), bad = 0;
    double budget = argc == 4 ? atof(argv[3]) : 0;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char p[4096];
    srand(1);
    int r;
    for (r = 0; r < rounds; r++) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (budget > 0 && (double)(now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9 > budget) break;
        snprintf(p, sizeof p, "%s/forkwrite%d", argv[1], r % 7); /* new descriptions, few files */
        fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) { perror(p); return 2; }
        started = 0;
        pthread_t t;
        if (pthread_create(&t, NULL, writer, NULL)) return 2;
        while (!started) {}
        for (volatile int k = rand() % 20000; k > 0; k--) {} /* somewhere in the thread's writes */
        pid_t pid = fork();
        if (pid == 0) _exit(write(fd, CREC, 5) == 5 ? 0 : 2);
        int st;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) return 2;
        pthread_join(t, NULL);
        close(fd);
        char buf[1024];
        int in = open(p, O_RDONLY);
        ssize_t n = in < 0 ? -1 : read(in, buf, sizeof buf);
        if (in >= 0) close(in);
        int nt = 0, nc = 0;
        for (ssize_t i = 0; i + 4 < n;) { /* whole records only */
            if (buf[i] == 'T' && i + 7 <= n && buf[i + 6] == '\n') { nt++; i += 7; }
            else if (buf[i] == 'C' && buf[i + 4] == '\n') { nc++; i += 5; }
            else break;
        }
        if (n != NT * 7 + 5 || nt != NT || nc != 1) bad++;
    }
    printf("bad rounds: %d of %d\n", bad, r);
    return bad ? 1 : 0;
}
