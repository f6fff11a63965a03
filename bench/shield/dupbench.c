/* bench/shield/dupbench.c - the cost of a copy of a descriptor: dup then close of one file,
 * 20,000 times, and a 1,000-dup probe like PostgreSQL's start-up count of its free descriptors
 * (the highest number it got says whether the copies took the lowest free numbers).
 *
 * usage: shield-dupbench DIR   (opens DIR/dupbench; bench/shield/dup.sh runs it natively on a
 * plain directory and under the shield on a protected volume) */
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: shield-dupbench DIR\n");
        return 2;
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/dupbench", argv[1]);
    int fd = open(p, O_CREAT | O_RDWR, 0600);
    if (fd < 0) {
        perror(p);
        return 1;
    }
    enum { PAIRS = 20000, PROBE = 1000 };
    double t = now_us();
    for (int i = 0; i < PAIRS; i++) close(dup(fd));
    double pair = (now_us() - t) / PAIRS;
    static int probe[PROBE];
    int k = 0, hi = -1;
    t = now_us();
    for (; k < PROBE && (probe[k] = dup(fd)) >= 0; k++)
        if (probe[k] > hi) hi = probe[k];
    for (int i = 0; i < k; i++) close(probe[i]);
    double probe_us = now_us() - t;
    printf("dup+close %.2f us; %d-dup probe %.0f us, highest number %d\n", pair, k, probe_us, hi);
    close(fd);
    return 0;
}
