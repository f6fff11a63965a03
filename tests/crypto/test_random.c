/* test_random - scp_random_public (crypto/crypto.h): nonces drawn from a per-thread buffer of
 * the generator's output must never repeat: not within a thread, not across threads, and not
 * between a parent and its child after fork() or after a raw clone (which runs no fork
 * handlers), where the child starts with a copy of the parent's buffer. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crypto/crypto.h"

#include "check.h"

#define NONCE 12
#define PER 100 /* draws per party: more than one buffer's worth */

static int cmp12(const void *a, const void *b) { return memcmp(a, b, NONCE); }

/* No two of the n nonces in v are equal (sorts v). */
static int all_distinct(uint8_t (*v)[NONCE], size_t n) {
    qsort(v, n, NONCE, cmp12);
    for (size_t i = 1; i < n; i++)
        if (memcmp(v[i - 1], v[i], NONCE) == 0) return 0;
    return 1;
}

static void draw(uint8_t (*v)[NONCE], size_t n) {
    for (size_t i = 0; i < n; i++) CHECK(scp_random_public(v[i], NONCE, NULL) == 0);
}

/* A child made by `how` (0 fork, 1 raw clone) draws PER nonces and sends them; the parent
 * draws PER too after the child started: no nonce may be in both. */
static void child_vs_parent(int how) {
    static uint8_t v[2 * PER][NONCE];
    uint8_t first[NONCE];
    CHECK(scp_random_public(first, NONCE, NULL) == 0); /* (the buffer is filled and in use) */
    int fd[2];
    CHECK(pipe(fd) == 0);
    pid_t pid = how == 0 ? fork() : (pid_t)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, 0);
    if (pid == 0) {
        uint8_t mine[PER][NONCE];
        close(fd[0]);
        draw(mine, PER);
        ssize_t w = write(fd[1], mine, sizeof mine);
        _exit(w == (ssize_t)sizeof mine && failures == 0 ? 0 : 1);
    }
    CHECK(pid > 0);
    close(fd[1]);
    draw(v, PER);
    size_t got = 0;
    while (got < PER * NONCE) {
        ssize_t r = read(fd[0], (uint8_t *)v[PER] + got, PER * NONCE - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd[0]);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(got == PER * NONCE);
    CHECK(all_distinct(v, 2 * PER));
}

static uint8_t tv[5][PER * 4][NONCE];
static void *thread_draws(void *arg) {
    draw(tv[(uintptr_t)arg], PER * 4);
    return NULL;
}

int main(void) {
    /* one thread: many buffers' worth, mixed lengths in between */
    static uint8_t v[4000][NONCE];
    for (size_t i = 0; i < 4000; i++) {
        uint8_t other[37];
        CHECK(scp_random_public(v[i], NONCE, NULL) == 0);
        if (i % 7 == 0) CHECK(scp_random_public(other, 1 + i % sizeof other, NULL) == 0);
    }
    CHECK(all_distinct(v, 4000));
    static const uint8_t zero[NONCE];
    CHECK(memcmp(v[0], zero, NONCE) != 0 && memcmp(v[3999], zero, NONCE) != 0);
    uint8_t big[4096]; /* (longer than a buffer: straight from the generator) */
    CHECK(scp_random_public(big, sizeof big, NULL) == 0);
    /* threads: each its own buffer, none handing out another's bytes */
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, thread_draws, (void *)i);
    thread_draws((void *)4);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK(all_distinct((uint8_t(*)[NONCE])tv, 5 * PER * 4));
    child_vs_parent(0);
    child_vs_parent(1);
    if (failures) {
        fprintf(stderr, "test_random: %d failures\n", failures);
        return 1;
    }
    printf("test_random: ok\n");
    return 0;
}
