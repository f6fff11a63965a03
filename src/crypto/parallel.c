/* crypto/parallel.c - see parallel.h. One job at a time: a caller that finds the pool busy
 * does its work alone instead of queueing behind another. */
#include "crypto/parallel.h"

#include <pthread.h>
#include <unistd.h>

#define MAX_WORKERS 3

struct part {
    size_t begin, end;
    int rc;
    int todo; /* 1 while assigned and not finished */
};

static struct pool {
    pthread_mutex_t mu;       /* guards everything below */
    pthread_cond_t work, done;
    pthread_mutex_t job_mu;   /* held by the one caller that owns the workers */
    int nworkers;             /* started; 0 = not yet, -1 = unavailable */
    scp_range_fn fn;
    void *ctx;
    struct part parts[MAX_WORKERS];
} P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
       PTHREAD_MUTEX_INITIALIZER, 0, NULL, NULL, {{0}}};

static void *worker(void *arg) {
    int me = (int)(size_t)arg;
    pthread_mutex_lock(&P.mu);
    for (;;) {
        while (!P.parts[me].todo) pthread_cond_wait(&P.work, &P.mu);
        struct part pt = P.parts[me];
        scp_range_fn fn = P.fn;
        void *ctx = P.ctx;
        pthread_mutex_unlock(&P.mu);
        int rc = fn(ctx, pt.begin, pt.end);
        pthread_mutex_lock(&P.mu);
        P.parts[me].rc = rc;
        P.parts[me].todo = 0;
        pthread_cond_broadcast(&P.done);
    }
    return NULL;
}

/* In a child after fork the workers do not exist: start over (the child has one thread, so
 * re-initializing the locks is safe). */
static void after_fork_child(void) {
    pthread_mutex_init(&P.mu, NULL);
    pthread_mutex_init(&P.job_mu, NULL);
    pthread_cond_init(&P.work, NULL);
    pthread_cond_init(&P.done, NULL);
    P.nworkers = 0;
    for (int i = 0; i < MAX_WORKERS; i++) P.parts[i].todo = 0;
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void register_fork(void) { pthread_atfork(NULL, NULL, after_fork_child); }

/* Start the workers once (caller holds job_mu). */
static int start_workers(void) {
    if (P.nworkers != 0) return P.nworkers;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int want = cpus > 1 ? (int)(cpus - 1) : 0;
    if (want > MAX_WORKERS) want = MAX_WORKERS;
    int n = 0;
    for (; n < want; n++) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &a, worker, (void *)(size_t)n);
        pthread_attr_destroy(&a);
        if (rc != 0) break;
    }
    P.nworkers = n ? n : -1;
    return P.nworkers;
}

int scp_parallel_for(size_t n, size_t min_parallel, scp_range_fn fn, void *ctx) {
    if (n == 0) return 0;
    pthread_once(&fork_once, register_fork);
    if (n < min_parallel || pthread_mutex_trylock(&P.job_mu) != 0) return fn(ctx, 0, n);
    int workers = start_workers();
    if (workers <= 0) {
        pthread_mutex_unlock(&P.job_mu);
        return fn(ctx, 0, n);
    }
    size_t k = (size_t)workers + 1, per = (n + k - 1) / k;
    pthread_mutex_lock(&P.mu);
    P.fn = fn;
    P.ctx = ctx;
    int used = 0;
    for (int w = 0; w < workers; w++) {
        size_t b = per * (size_t)(w + 1);
        if (b >= n) break;
        P.parts[w] = (struct part){b, b + per < n ? b + per : n, 0, 1};
        used++;
    }
    pthread_cond_broadcast(&P.work);
    pthread_mutex_unlock(&P.mu);
    int rc = fn(ctx, 0, per < n ? per : n);
    pthread_mutex_lock(&P.mu);
    for (int w = 0; w < used; w++) {
        while (P.parts[w].todo) pthread_cond_wait(&P.done, &P.mu);
        if (P.parts[w].rc) rc = -1;
    }
    pthread_mutex_unlock(&P.mu);
    pthread_mutex_unlock(&P.job_mu);
    return rc;
}
