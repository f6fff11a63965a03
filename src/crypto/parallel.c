/* crypto/parallel.c - see parallel.h. One job at a time: a caller that finds the pool busy
 * does its work alone instead of queueing behind another.
 *
 * A job's items are taken in parts of `grain` from a shared counter by the caller and by the
 * workers that join it, so nobody waits for a part assigned to a thread that is not running:
 * a worker that wakes late (a busy machine) finds the parts already taken and leaves. When the
 * caller runs out of parts it closes the job (no worker joins after that) and waits only for
 * the workers inside it, each finishing the part it took. Then no worker holds the job's
 * context any more, so the caller may return (the context lives on its stack). */
#include "crypto/parallel.h"

#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "common/util.h"

#define MAX_WORKERS 3

static struct pool {
    pthread_mutex_t mu;     /* guards everything below but `next` */
    pthread_cond_t work, done;
    pthread_mutex_t job_mu; /* held by the one caller that owns the workers */
    int nworkers;           /* started; 0 = not yet, -1 = unavailable */
    int quit;               /* the workers leave (scp_parallel_stop) */
    pthread_t t[MAX_WORKERS];
    unsigned long job;      /* bumped for each job: a worker joins each one at most once */
    int open;               /* workers may join the current job */
    int active;             /* workers inside the current job */
    int rc;                 /* -1 once a worker's part failed */
    scp_range_fn fn;
    void *ctx;
    size_t n, grain;
    size_t next;            /* the first item not taken yet (atomic; reset only while no
                             * worker is inside a job) */
} P = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .work = PTHREAD_COND_INITIALIZER,
       .done = PTHREAD_COND_INITIALIZER,
       .job_mu = PTHREAD_MUTEX_INITIALIZER};

/* Take parts until none is left; -1 if any part failed (the others still run: each part
 * reports its own failure in ctx, and the caller must know every part is done). */
static int take_parts(scp_range_fn fn, void *ctx, size_t n, size_t grain) {
    int rc = 0;
    for (;;) {
        size_t b = __atomic_fetch_add(&P.next, grain, __ATOMIC_RELAXED);
        if (b >= n) return rc;
        if (fn(ctx, b, n - b > grain ? b + grain : n) < 0) rc = -1;
    }
}

static void *worker(void *arg) {
    (void)arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&P.mu);
    for (;;) {
        while (!P.quit && (!P.open || P.job == seen)) pthread_cond_wait(&P.work, &P.mu);
        if (P.quit) break; /* (never inside a job: the stop holds job_mu) */
        seen = P.job;
        P.active++;
        scp_range_fn fn = P.fn;
        void *ctx = P.ctx;
        size_t n = P.n, grain = P.grain;
        pthread_mutex_unlock(&P.mu);
        int rc = take_parts(fn, ctx, n, grain);
        pthread_mutex_lock(&P.mu);
        if (rc) P.rc = -1;
        if (--P.active == 0) {
            /* Wake the caller with the mutex free, so that it does not wake only to wait for
             * it (a futex round trip and two task switches per job). Another job may open
             * meanwhile: the loop's test joins it, as it would have after the wait. */
            pthread_mutex_unlock(&P.mu);
            pthread_cond_broadcast(&P.done);
            pthread_mutex_lock(&P.mu);
        }
    }
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

/* In a child after fork the workers do not exist: start over (the child has one thread, so
 * re-initializing the locks is safe). No job is half done in the child's copy: the caller
 * of a job is inside scp_parallel_for_grain until every worker left it, so the thread that
 * forks is not a caller; and the volume's fork handler holds every file's lock, which each
 * caller holds for the whole job. */
static void after_fork_child(void) {
    pthread_mutex_init(&P.mu, NULL);
    pthread_mutex_init(&P.job_mu, NULL);
    pthread_cond_init(&P.work, NULL);
    pthread_cond_init(&P.done, NULL);
    P.nworkers = 0;
    P.open = 0;
    P.active = 0;
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void register_fork(void) { pthread_atfork(NULL, NULL, after_fork_child); }

/* Start the workers once (caller holds job_mu). */
static int start_workers(void) {
    assert(scp_mutex_held(&P.job_mu));
    if (P.nworkers != 0) return P.nworkers;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int want = cpus > 1 ? (int)(cpus - 1) : 0;
    if (want > MAX_WORKERS) want = MAX_WORKERS;
    int n = 0;
    for (; n < want; n++) /* (joinable: scp_parallel_stop waits for them to be gone) */
        if (pthread_create(&P.t[n], NULL, worker, NULL) != 0) break;
    P.nworkers = n ? n : -1;
    return P.nworkers;
}

/* grain 0: one part per thread (the caller and each worker). */
static int parallel_for(size_t n, size_t min_parallel, size_t grain, scp_range_fn fn, void *ctx) {
    if (n == 0) return 0;
    assert(n < SIZE_MAX / 2); /* the counter passes n by at most a part per thread */
    pthread_once(&fork_once, register_fork);
    if (n < min_parallel || (grain && n <= grain) || pthread_mutex_trylock(&P.job_mu) != 0)
        return fn(ctx, 0, n);
    int workers = start_workers();
    if (workers <= 0) {
        pthread_mutex_unlock(&P.job_mu);
        return fn(ctx, 0, n);
    }
    if (!grain) grain = (n + (size_t)workers) / ((size_t)workers + 1);
    pthread_mutex_lock(&P.mu);
    assert(!P.open && P.active == 0);
    P.fn = fn;
    P.ctx = ctx;
    P.n = n;
    P.grain = grain;
    P.rc = 0;
    __atomic_store_n(&P.next, 0, __ATOMIC_RELAXED);
    P.job++;
    P.open = 1;
    pthread_mutex_unlock(&P.mu);
    /* (after the unlock: a woken worker takes the mutex at once instead of blocking on it
     * while the caller still holds it; no wake-up is lost, the job being set under it) */
    pthread_cond_broadcast(&P.work);
    int rc = take_parts(fn, ctx, n, grain);
    pthread_mutex_lock(&P.mu);
    P.open = 0;
    while (P.active) pthread_cond_wait(&P.done, &P.mu);
    if (P.rc) rc = -1;
    pthread_mutex_unlock(&P.mu);
    pthread_mutex_unlock(&P.job_mu);
    return rc;
}

int scp_parallel_for(size_t n, size_t min_parallel, scp_range_fn fn, void *ctx) {
    return parallel_for(n, min_parallel, 0, fn, ctx);
}

int scp_parallel_for_grain(size_t n, size_t min_parallel, size_t grain, scp_range_fn fn,
                           void *ctx) {
    return parallel_for(n, min_parallel, grain ? grain : 1, fn, ctx);
}

void scp_parallel_stop(void) {
    pthread_mutex_lock(&P.job_mu); /* no job in progress, none starts */
    pthread_mutex_lock(&P.mu);
    int n = P.nworkers;
    if (n > 0) {
        P.quit = 1;
        pthread_cond_broadcast(&P.work);
    }
    pthread_mutex_unlock(&P.mu);
    for (int i = 0; i < n; i++) pthread_join(P.t[i], NULL);
    pthread_mutex_lock(&P.mu);
    P.quit = 0;
    if (n > 0) P.nworkers = 0; /* (the next job starts them again; -1 stays: unavailable) */
    pthread_mutex_unlock(&P.mu);
    pthread_mutex_unlock(&P.job_mu);
}
