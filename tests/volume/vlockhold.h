/* tests/volume/vlockhold.h - a third party's hold of a volume's cross-process lock, taken as
 * the library takes it (src/volume/vlock.c): the robust mutex at VOL_VLOCK_OFF of the lock
 * file's mapped page when the word at VOL_VLOCK_MAGIC_OFF says so, else the OFD write lock on
 * byte 0 (test_volume_shared, test_volume_vlock). tu_vlock_hold waits for it; nothing else of
 * the volume is called meanwhile. */
#ifndef SCP_TESTS_VOLUME_VLOCKHOLD_H
#define SCP_TESTS_VOLUME_VLOCKHOLD_H

#include <pthread.h>
#include <sys/mman.h>

#include "testutil.h"
#include "volume/internal.h"

typedef struct tu_vlock {
    int fd;
    void *map; /* (the mutex kind: the lock file's first page) */
} tu_vlock;

static inline pthread_mutex_t *tu_vlock_mutex(const tu_vlock *h) {
    return (pthread_mutex_t *)((char *)h->map + VOL_VLOCK_OFF);
}

static inline tu_vlock tu_vlock_hold(const char *dir) {
    char *path = tu_path(dir, "lock");
    tu_vlock h = {open(path, O_RDWR | O_CLOEXEC), NULL};
    free(path);
    REQUIRE(h.fd >= 0);
    uint64_t word = 0;
    REQUIRE(pread(h.fd, &word, sizeof word, VOL_VLOCK_MAGIC_OFF) == (ssize_t)sizeof word);
    if (word == VOL_VLOCK_MAGIC) {
        h.map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, h.fd, 0);
        REQUIRE(h.map != MAP_FAILED);
        int r = pthread_mutex_lock(tu_vlock_mutex(&h));
        if (r == EOWNERDEAD) r = pthread_mutex_consistent(tu_vlock_mutex(&h));
        REQUIRE(r == 0);
    } else {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
        REQUIRE(fcntl(h.fd, F_OFD_SETLKW, &fl) == 0);
    }
    return h;
}

static inline void tu_vlock_release(tu_vlock *h) {
    if (h->map) {
        REQUIRE(pthread_mutex_unlock(tu_vlock_mutex(h)) == 0);
        munmap(h->map, 4096);
    }
    close(h->fd); /* (and the OFD lock with it) */
}

#endif
