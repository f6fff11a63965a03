/* tests/volume/scenario.h - the child processes of the volume tests' crash scenarios
 * (test_volume_oneflush, test_volume_shared): a child plays a program's process (it writes,
 * commits, and dies or is killed without closing the volume), hands what it saw back to the
 * test over a pipe, and the test then plays the power cut and opens the volume.
 *
 *     tu_child c;
 *     if (tu_child_start(&c)) {          (the child)
 *         ... work, _exit(N) on a failure it cannot report ...
 *         tu_child_exit(&c, &out, sizeof out);
 *     }
 *     REQUIRE(tu_child_wait(&c, &out, sizeof out));   (or CHECKF: the parent goes on)
 */
#ifndef SCP_TESTS_VOLUME_SCENARIO_H
#define SCP_TESTS_VOLUME_SCENARIO_H

#include <sys/wait.h>

#include "testutil.h"

typedef struct tu_child {
    pid_t pid;
    int fd[2]; /* the child's results: it writes fd[1], the parent reads fd[0] */
} tu_child;

/* Fork: 1 in the child, which ends with tu_child_exit (or _exit); 0 in the parent. */
static inline int tu_child_start(tu_child *c) {
    REQUIRE(pipe(c->fd) == 0);
    fflush(stdout); /* (or the child's exit would print the parent's buffered lines again) */
    c->pid = fork();
    REQUIRE(c->pid >= 0);
    if (c->pid == 0) {
        close(c->fd[0]);
        return 1;
    }
    close(c->fd[1]);
    return 0;
}

/* In the child: hand out[0, len) to the parent and exit, 0 when no check failed in the child. */
static inline __attribute__((noreturn)) void tu_child_exit(tu_child *c, const void *out, size_t len) {
    const uint8_t *p = out;
    while (len) {
        ssize_t w = write(c->fd[1], p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(3);
        p += w;
        len -= (size_t)w;
    }
    fflush(stdout);
    _exit(tu_failures ? 1 : 0);
}

/* In the parent: the child's results into out[0, len) (len 0: none, and nothing is read, so a
 * grandchild that holds the pipe cannot stall it), then its end. 1 when all of out came and
 * the child exited 0. */
static inline int tu_child_wait(tu_child *c, void *out, size_t len) {
    uint8_t *p = out;
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(c->fd[0], p + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(c->fd[0]);
    int st;
    pid_t w;
    while ((w = waitpid(c->pid, &st, 0)) < 0 && errno == EINTR) {
    }
    return got == len && w == c->pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

#endif
