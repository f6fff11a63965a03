/* tests/common/test_held.c - scp_mutex_held and scp_rwlock_wrheld answer for the calling
 * thread only: 1 while it holds the lock (for writing), 0 unlocked, read-held, or held by
 * another thread. A check that always said 1 would make every "caller holds" assert vacuous. */
#include <pthread.h>

#include "common/util.h"
#include "../crypto/check.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t rmu;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static pthread_barrier_t held, seen;

/* Takes both locks, lets main look, lets go */
static void *holder(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mu);
    pthread_rwlock_wrlock(&rw);
    CHECK(scp_mutex_held(&mu) && scp_rwlock_wrheld(&rw));
    pthread_barrier_wait(&held);
    pthread_barrier_wait(&seen);
    pthread_rwlock_unlock(&rw);
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(void) {
    CHECK(!scp_mutex_held(&mu) && !scp_rwlock_wrheld(&rw));
    pthread_mutex_lock(&mu);
    CHECK(scp_mutex_held(&mu));
    pthread_mutex_unlock(&mu);
    CHECK(!scp_mutex_held(&mu));

    pthread_mutexattr_t a; /* recursive: held at depth 2, then 1, then not */
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&rmu, &a);
    pthread_mutex_lock(&rmu);
    pthread_mutex_lock(&rmu);
    CHECK(scp_mutex_held(&rmu));
    pthread_mutex_unlock(&rmu);
    CHECK(scp_mutex_held(&rmu));
    pthread_mutex_unlock(&rmu);
    CHECK(!scp_mutex_held(&rmu));

    pthread_rwlock_wrlock(&rw);
    CHECK(scp_rwlock_wrheld(&rw));
    pthread_rwlock_unlock(&rw);
    CHECK(!scp_rwlock_wrheld(&rw));
    pthread_rwlock_rdlock(&rw); /* read-held is not write-held */
    CHECK(!scp_rwlock_wrheld(&rw));
    pthread_rwlock_unlock(&rw);

    pthread_barrier_init(&held, NULL, 2);
    pthread_barrier_init(&seen, NULL, 2);
    pthread_t t;
    if (pthread_create(&t, NULL, holder, NULL)) return 2;
    pthread_barrier_wait(&held);
    CHECK(!scp_mutex_held(&mu) && !scp_rwlock_wrheld(&rw)); /* the other thread's */
    pthread_barrier_wait(&seen);
    pthread_join(t, NULL);
    CHECK(!scp_mutex_held(&mu) && !scp_rwlock_wrheld(&rw));
    if (!failures) printf("common_held: ok\n");
    return failures != 0;
}
