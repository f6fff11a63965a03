/* bench/cas/casbench.c - attestations per second and latency percentiles against a running
 * CAS, with N concurrent clients. Each client keeps one TLS connection and loops the full
 * runtime flow (scp_attest_get_config: nonce, sim evidence, verification, sealed config,
 * decryption) for the given time.
 *
 *   casbench ADDR PIN PLATFORM_KEY SESSION SERVICE MEASUREMENT CLIENTS SECONDS
 * Prints one line: clients, attestations, attestations/s, p50 ms, p99 ms, failures. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest.h"
#include "scp/cas.h"

typedef struct worker {
    const char *const *argv;
    double seconds;
    double *lat; /* ms */
    size_t n, cap;
    long failures;
} worker;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run(void *arg) {
    worker *w = arg;
    const char *const *a = w->argv;
    uint8_t m[32];
    scp_unhex(a[6], m, 32);
    scp_err e = {0};
    scp_cas_client *c = scp_cas_client_new(a[1], a[2], NULL, &e);
    if (!c) {
        fprintf(stderr, "casbench: %s\n", e.msg);
        w->failures++;
        return NULL;
    }
    double end = now_s() + w->seconds;
    while (now_s() < end) {
        double t0 = now_s();
        char *cfg = NULL;
        if (scp_attest_get_config(c, a[4], a[5], a[3], m, &cfg, &e) < 0) {
            if (w->failures++ < 3) fprintf(stderr, "casbench: %s\n", e.msg);
            continue;
        }
        double ms = (now_s() - t0) * 1000.0;
        OPENSSL_cleanse(cfg, strlen(cfg));
        free(cfg);
        if (w->n == w->cap) {
            w->cap = w->cap ? 2 * w->cap : 4096;
            w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
        }
        w->lat[w->n++] = ms;
    }
    scp_cas_client_free(c);
    return NULL;
}

static int cmp(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: casbench ADDR PIN PLATFORM_KEY SESSION SERVICE MEASUREMENT CLIENTS SECONDS\n");
        return 2;
    }
    int n = atoi(argv[7]);
    double secs = atof(argv[8]);
    if (n < 1 || n > 1024 || secs <= 0) return 2;
    worker *w = calloc((size_t)n, sizeof *w);
    pthread_t *t = calloc((size_t)n, sizeof *t);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        w[i].argv = (const char *const *)argv;
        w[i].seconds = secs;
        pthread_create(&t[i], NULL, run, &w[i]);
    }
    size_t total = 0;
    long fails = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        total += w[i].n;
        fails += w[i].failures;
    }
    double elapsed = now_s() - t0;
    double *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        memcpy(all + k, w[i].lat, w[i].n * sizeof *all);
        k += w[i].n;
        free(w[i].lat);
    }
    qsort(all, total, sizeof *all, cmp);
    double p50 = total ? all[total / 2] : 0, p99 = total ? all[(size_t)((double)total * 0.99)] : 0;
    printf("%d\t%zu\t%.0f\t%.2f\t%.2f\t%ld\n", n, total, (double)total / elapsed, p50, p99, fails);
    free(all);
    free(w);
    free(t);
    return fails ? 1 : 0;
}
