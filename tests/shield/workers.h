/* tests/shield/workers.h - what the multi-process test programs of the shield share
 * (pidfile.c, lockfile.c, append.c): a deadline on the monotonic clock, and a number of forked
 * workers whose results come back through a pipe. */
#ifndef SCP_TESTS_SHIELD_WORKERS_H
#define SCP_TESTS_SHIELD_WORKERS_H

#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Now on the monotonic clock, in ms: the deadlines' clock (time()'s whole seconds made a
 * 1-second run end at once when it started late in a second: CI, a plain run with no work). */
static inline long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Forks n workers (1..16); worker k runs fn(k, ctx), which returns what it counted or -1 after
 * a failure, and reports it. Fills out[k] (-1 for a worker that reported nothing) and prints
 * "NAME: worker K: RESULT". Returns 0 if every worker reported a count above 0 and exited 0,
 * else 1. */
static inline int run_workers(const char *name, int n, long (*fn)(int k, void *ctx), void *ctx,
                              long out[]) {
    int fds[2];
    if (n < 1 || n > 16 || pipe(fds) < 0) return perror("workers"), 1;
    for (int k = 0; k < n; k++) {
        out[k] = -1;
        pid_t p = fork();
        if (p < 0) return perror("fork"), 1;
        if (p == 0) {
            close(fds[0]);
            long r[2] = {k, fn(k, ctx)};
            _exit(write(fds[1], r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
        }
    }
    close(fds[1]);
    long r[2];
    int bad = 0, got = 0, st;
    while (read(fds[0], r, sizeof r) == (ssize_t)sizeof r)
        if (r[0] >= 0 && r[0] < n) {
            got++;
            out[r[0]] = r[1];
            bad |= r[1] <= 0;
            printf("%s: worker %ld: %ld\n", name, r[0], r[1]);
        }
    close(fds[0]);
    while (wait(&st) > 0) bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    return bad || got != n;
}

#endif
