/* tests/common/test_held.c - scp_mutex_held and scp_rwlock_wrheld answer for the calling
 * thread only: 1 while it holds the lock (for writing), 0 unlocked, read-held, or held by
 * another thread. A check that always said 1 would make every "caller holds" assert vacuous. */
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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

    /* A child of a raw clone (the shield's supervisor makes such children): no fork handler
     * ran, so glibc's thread descriptor still holds the parent's thread id, and that is what
     * its locks record; gettid() does not. The answers must hold there too. */
    pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) return 2;
    if (pid == 0) {
        int ok = !scp_mutex_held(&mu);
        pthread_mutex_lock(&mu);
        ok &= scp_mutex_held(&mu);
        pthread_mutex_unlock(&mu);
        pthread_rwlock_wrlock(&rw);
        ok &= scp_rwlock_wrheld(&rw);
        pthread_rwlock_unlock(&rw);
        ok &= !scp_mutex_held(&mu) && !scp_rwlock_wrheld(&rw);
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!failures) printf("common_held: ok\n");
    return failures != 0;
}
