/* shield/net_wait.c - the network shield's waits: waking threads asleep in the kernel (the
 * wake eventfd, each thread's own epoll instance) and readiness (poll, select, epoll) over
 * connections whose plaintext the shield holds. Moved out of net_io.c (the entry points), which
 * calls these from the trapped calls and the exported functions; the rules are net_io.c's head
 * comment and net.c's invariants I3 and I4. */
#define _GNU_SOURCE 1
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#undef PF_FILE /* <sys/socket.h>'s; internal.h has its own */
#include "shield/internal.h"
#include "shield/net.h"
#include "shield/net_int.h"

/* ---- waking threads asleep in the kernel ------------------------------------------------------ */

/* A thread asleep in the kernel sees only ciphertext; another thread can leave plaintext
 * buffered in the shield (it drained the kernel socket) while the first one sleeps, or between
 * its look at the ready list and its system call. So every wait of the shield's counts itself
 * before it looks: in `sleepers`, and in `wide_sleepers` (an epoll set, which may hold any
 * connection) or in the `waiters` of each connection it waits for (poll, select, a blocking
 * read or write); a connection that becomes ready while a wide waiter or one of its own
 * sleeps writes the wake eventfd (net_wake_for). The count and the ready list are read and
 * changed in opposite orders with sequentially consistent operations (and the waiter looks at
 * the connection under its mutex, which the waker holds), so either the waiter sees the
 * connection ready or the waker sees the waiter. Epoll sets that the program waits on hold the eventfd edge-triggered
 * (each write is one event for each set; the shield drops it from what the program sees);
 * poll, select and blocking reads and writes wait on their thread's own epoll instance holding
 * it, so every sleeper is woken and none takes another's wake. Nothing of this costs a system
 * call while no thread sleeps, as in a single-threaded program. */
#define WAKE_COOKIE 0x53435057414b4531ULL /* epoll_data of the wake eventfd: "SCPWAKE1" */
static int wake_efd = -1, sleepers, wide_sleepers;
static uint32_t *ep_wake; /* per epoll number: its generation + 1 once its set holds wake_efd */
static pthread_once_t wake_once = PTHREAD_ONCE_INIT;
static pthread_key_t wake_key;
static __thread int my_ep = -1;


static void my_ep_gone(void *p) { sh_close_own((int)(intptr_t)p - 1); } /* at the thread's exit */

static void wake_init(void) {
    pthread_key_create(&wake_key, my_ep_gone);
    ep_wake = calloc((size_t)net_tbl_n, sizeof *ep_wake);
    if (ep_wake) wake_efd = sh_own_fd(sh_gate(SYS_eventfd2, 0, EFD_CLOEXEC | EFD_NONBLOCK, 0, 0, 0, 0));
}

void net_sleep(int on) {
    __atomic_add_fetch(&sleepers, on ? 1 : -1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&wide_sleepers, on ? 1 : -1, __ATOMIC_SEQ_CST);
}

void net_sleep_on(nconn *c, int on) {
    __atomic_add_fetch(&c->waiters, on ? 1 : -1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&sleepers, on ? 1 : -1, __ATOMIC_SEQ_CST);
}

static void wake_write(void) {
    if (wake_efd < 0) return;
    uint64_t one = 1;
    if (sh_gate(SYS_write, wake_efd, (long)&one, 8, 0, 0, 0) == -EAGAIN) { /* the counter is full */
        uint64_t v;
        sh_gate(SYS_read, wake_efd, (long)&v, 8, 0, 0, 0);
        sh_gate(SYS_write, wake_efd, (long)&one, 8, 0, 0, 0);
    }
}

void net_wake_sleepers(void) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* the ready list's change before the look at sleepers */
    if (__atomic_load_n(&sleepers, __ATOMIC_SEQ_CST)) wake_write();
}

void net_wake_for(nconn *c) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* the ready list's change before the look at waiters */
    if (__atomic_load_n(&wide_sleepers, __ATOMIC_SEQ_CST) || __atomic_load_n(&c->waiters, __ATOMIC_SEQ_CST))
        wake_write();
}

int net_thread_wake_fd(void) {
    if (my_ep >= 0) return my_ep;
    pthread_once(&wake_once, wake_init);
    if (wake_efd < 0) return -1;
    int e = sh_own_fd(sh_gate(SYS_epoll_create1, EPOLL_CLOEXEC, 0, 0, 0, 0, 0));
    if (e < 0) return -1;
    struct epoll_event ev = {EPOLLIN | EPOLLET, {.u64 = WAKE_COOKIE}};
    if (sh_gate(SYS_epoll_ctl, e, EPOLL_CTL_ADD, wake_efd, (long)&ev, 0, 0) < 0) {
        sh_close_own(e);
        return -1;
    }
    my_ep = e;
    pthread_setspecific(wake_key, (void *)(intptr_t)(e + 1));
    return e;
}

/* The thread's epoll reported the wake: take the event (edge-triggered: it is then quiet). */
void net_thread_wake_reset(void) {
    struct epoll_event ev;
    if (my_ep >= 0) sh_gate(SYS_epoll_pwait, my_ep, (long)&ev, 1, 0, 0, 8);
}

/* In a forked child: the thread's epoll instance is shared with the parent's thread, whose
 * wake this one must not take. The eventfd stays shared (a wake then reaches both: one extra
 * look at the connections). */
void net_wake_after_fork(void) {
    if (my_ep >= 0) {
        sh_close_own(my_ep);
        my_ep = -1;
        pthread_setspecific(wake_key, NULL);
    }
    /* the parent's other threads do not exist here; their counts in the connections' waiters
     * (not reset: the table may be held locked by one of them) only cost a needless wake */
    __atomic_store_n(&sleepers, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&wide_sleepers, 0, __ATOMIC_SEQ_CST);
}

/* The wake eventfd in the program's epoll set epfd (once per set). */
void net_ep_wake_reg(int epfd) {
    if (epfd < 0 || epfd >= net_tbl_n) return;
    pthread_once(&wake_once, wake_init);
    if (wake_efd < 0) return;
    uint32_t want = __atomic_load_n(&net_epgen[epfd], __ATOMIC_RELAXED) + 1;
    if (__atomic_load_n(&ep_wake[epfd], __ATOMIC_RELAXED) == want) return;
    struct epoll_event ev = {EPOLLIN | EPOLLET, {.u64 = WAKE_COOKIE}};
    long r = sh_gate(SYS_epoll_ctl, epfd, EPOLL_CTL_ADD, wake_efd, (long)&ev, 0, 0);
    if (r == 0 || r == -EEXIST) __atomic_store_n(&ep_wake[epfd], want, __ATOMIC_RELAXED);
}

/* Drop the wake's events from what the kernel returned; *woke when there was one. */
long net_strip_wake(struct epoll_event *ev, long n, int *woke) {
    long k = 0;
    for (long i = 0; i < n; i++) {
        if (ev[i].data.u64 == WAKE_COOKIE) {
            *woke = 1;
            continue;
        }
        if (k != i) ev[k] = ev[i];
        k++;
    }
    return k;
}

/* ---- readiness ------------------------------------------------------------------------------- */

long long net_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int net_quiet(void) {
    return __atomic_load_n(&net_nready, __ATOMIC_ACQUIRE) == 0 && __atomic_load_n(&net_nstuck, __ATOMIC_ACQUIRE) == 0;
}

#define MAX_EXTRA 64
/* Try to flush every stuck connection; the ones still stuck (up to MAX_EXTRA) in fds. */
static int flush_stuck(int *fds) {
    /* nothing stuck (the usual case): no need of the table's lock to see it. A connection that
     * becomes stuck after this look is missed, as it was after the locked look. */
    if (__atomic_load_n(&net_nstuck, __ATOMIC_ACQUIRE) == 0) return 0;
    nconn *cs[MAX_EXTRA];
    int n = 0;
    pthread_mutex_lock(&net_mu);
    for (int i = 0; i < net_nstuck && n < MAX_EXTRA; i++) {
        cs[n] = net_stuck[i];
        cs[n++]->users++;
    }
    pthread_mutex_unlock(&net_mu);
    int k = 0;
    for (int i = 0; i < n; i++) {
        nconn *c = cs[i];
        pthread_mutex_lock(&c->mu);
        (void)net_flush(c, 0, 1);
        if (net_wpending(c) && !c->failed) fds[k++] = c->fd;
        net_update(c);
        pthread_mutex_unlock(&c->mu);
        net_put(c);
    }
    return k;
}

/* The shielded connections that a poll waits to read from, each counted as waited on before
 * its look (net_sleep_on, holding a reference until the wait ends), so that only one of them
 * becoming ready wakes the thread; past MAX_NAMED the thread is a wide waiter (net_sleep). */
#define MAX_NAMED 64
struct poll_waits {
    nconn *c[MAX_NAMED];
    int n, wide;
};

/* Marks the connections in fds that a read would serve without the kernel; their count. */
static long poll_look(struct pollfd *fds, unsigned long n, struct poll_waits *w) {
    long nsyn = 0;
    w->n = w->wide = 0;
    for (unsigned long i = 0; i < n; i++) {
        fds[i].revents = 0;
        if (fds[i].fd < 0 || !(fds[i].events & (POLLIN | POLLRDNORM)) || !sh_net_is(fds[i].fd)) continue;
        nconn *c = net_get(fds[i].fd);
        if (!c) continue;
        int kept = w->n < MAX_NAMED;
        if (kept) {
            net_sleep_on(c, 1);
            w->c[w->n++] = c;
        } else if (!w->wide) {
            net_sleep(1);
            w->wide = 1;
        }
        pthread_mutex_lock(&c->mu);
        int r = net_buffered(c);
        pthread_mutex_unlock(&c->mu);
        if (!kept) net_put(c);
        if (r) {
            fds[i].revents = (short)(fds[i].events & (POLLIN | POLLRDNORM));
            nsyn++;
        }
    }
    return nsyn;
}

static void poll_unwait(struct poll_waits *w) {
    for (int i = 0; i < w->n; i++) {
        net_sleep_on(w->c[i], 0);
        net_put(w->c[i]);
    }
    if (w->wide) net_sleep(0);
}

static long kpoll(struct pollfd *p, unsigned long n, long long deadline, const sigset_t *mask) {
    struct timespec ts, *tp = NULL;
    if (deadline >= 0) {
        long long left = deadline - net_now_ns();
        if (left < 0) left = 0;
        ts.tv_sec = left / 1000000000LL;
        ts.tv_nsec = left % 1000000000LL;
        tp = &ts;
    }
    return sh_gate(SYS_ppoll, (long)p, (long)n, (long)tp, (long)mask, 8, 0);
}

/* poll with the shield's view; deadline in CLOCK_MONOTONIC ns, -1: none. */
long net_poll_core(struct pollfd *fds, unsigned long n, long long deadline, const sigset_t *mask) {
    for (;;) {
        int extra[MAX_EXTRA];
        struct poll_waits w;
        int nx = flush_stuck(extra);
        long nsyn = poll_look(fds, n, &w);
        int we = nsyn ? -1 : net_thread_wake_fd(); /* asleep: woken if a connection becomes ready */
        if (!nx && !nsyn && we < 0) {
            long r = kpoll(fds, n, deadline, mask);
            poll_unwait(&w);
            return r;
        }
        unsigned long tot = n + (unsigned long)nx + (we >= 0);
        struct pollfd stackp[64], *k = tot <= 64 ? stackp : malloc(tot * sizeof *k);
        if (!k) {
            poll_unwait(&w);
            return -ENOMEM;
        }
        memcpy(k, fds, n * sizeof *k);
        for (int i = 0; i < nx; i++) k[n + (unsigned long)i] = (struct pollfd){extra[i], POLLOUT, 0};
        if (we >= 0) k[tot - 1] = (struct pollfd){we, POLLIN, 0};
        long r = kpoll(k, tot, nsyn ? 0 : deadline, mask);
        poll_unwait(&w);
        if (we >= 0 && r > 0 && k[tot - 1].revents) net_thread_wake_reset();
        long cnt = 0;
        for (unsigned long i = 0; i < n; i++) {
            if (r > 0) fds[i].revents |= k[i].revents;
            if (fds[i].revents) cnt++;
        }
        if (k != stackp) free(k);
        if (cnt) return cnt;
        if (r < 0) return r;
        if (r == 0 && deadline >= 0 && net_now_ns() >= deadline) return 0;
        /* only stuck sockets became writable: flush them and wait again */
    }
}

long long net_deadline_ms(long ms) { return ms < 0 ? -1 : net_now_ns() + (long long)ms * 1000000LL; }
long long net_deadline_ts(const struct timespec *ts) {
    return ts ? net_now_ns() + (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec : -1;
}

long net_select(int nfds, fd_set *r, fd_set *w, fd_set *x, long long deadline, const sigset_t *mask) {
    if (nfds < 0 || nfds > FD_SETSIZE) return -EINVAL;
    struct pollfd p[FD_SETSIZE];
    int map[FD_SETSIZE];
    unsigned long n = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short ev = (short)((r && FD_ISSET(fd, r) ? POLLIN : 0) | (w && FD_ISSET(fd, w) ? POLLOUT : 0) |
                           (x && FD_ISSET(fd, x) ? POLLPRI : 0));
        if (!ev) continue;
        p[n] = (struct pollfd){fd, ev, 0};
        map[n++] = fd;
    }
    long k = net_poll_core(p, n, deadline, mask);
    if (k < 0) return k;
    for (unsigned long i = 0; i < n; i++)
        if (p[i].revents & POLLNVAL) return -EBADF;
    if (r) FD_ZERO(r);
    if (w) FD_ZERO(w);
    if (x) FD_ZERO(x);
    long cnt = 0;
    for (unsigned long i = 0; i < n; i++) {
        short e = p[i].revents, ev = p[i].events;
        if ((ev & POLLIN) && (e & (POLLIN | POLLHUP | POLLERR))) FD_SET(map[i], r), cnt++;
        if ((ev & POLLOUT) && (e & (POLLOUT | POLLERR))) FD_SET(map[i], w), cnt++;
        if ((ev & POLLPRI) && (e & POLLPRI)) FD_SET(map[i], x), cnt++;
    }
    return cnt;
}

/* Events for ready-listed connections registered in epfd. */
static int ep_synth(int epfd, struct epoll_event *ev, int max) {
    int n = 0;
    uint32_t gen = epfd >= 0 && epfd < net_tbl_n ? net_epgen[epfd] : 0;
    pthread_mutex_lock(&net_mu);
    for (int i = 0; i < net_nready && n < max; i++) {
        nconn *c = net_ready[i];
        for (int j = 0; j < c->nep && n < max; j++) {
            struct net_epreg *r = &c->ep[j];
            if (r->epfd != epfd || r->gen != gen || r->disarmed || !(r->events & EPOLLIN)) continue;
            if (r->events & EPOLLET) {
                if (r->reported == c->ready_seq) continue;
                r->reported = c->ready_seq;
            }
            ev[n].events = EPOLLIN | ((c->eof || c->failed) ? (r->events & EPOLLRDHUP) : 0);
            ev[n++].data.u64 = r->data;
            if (r->events & EPOLLONESHOT) {
                struct epoll_event off = {EPOLLONESHOT, {.u64 = r->data}};
                r->disarmed = 1;
                sh_gate(SYS_epoll_ctl, epfd, EPOLL_CTL_MOD, c->fd, (long)&off, 0, 0);
            }
        }
    }
    pthread_mutex_unlock(&net_mu);
    return n;
}

long net_epoll_wait(int epfd, struct epoll_event *ev, int max, long long deadline, const sigset_t *mask) {
    if (max <= 0) return -EINVAL;
    net_ep_wake_reg(epfd);
    for (;;) {
        int extra[MAX_EXTRA], woke = 0;
        net_sleep(1);
        int nx = flush_stuck(extra);
        int ns = ep_synth(epfd, ev, max);
        if (ns) {
            net_sleep(0);
            long k = ns < max ? sh_gate(SYS_epoll_pwait, epfd, (long)(ev + ns), max - ns, 0, (long)mask, 8) : 0;
            if (k > 0) k = net_strip_wake(ev + ns, k, &woke);
            long total = ns;
            for (long i = 0; i < k; i++) { /* the kernel's event for a connection already reported: merged */
                struct epoll_event *e = &ev[ns + i];
                int dup = 0;
                for (int j = 0; j < ns && !dup; j++)
                    if (ev[j].data.u64 == e->data.u64) ev[j].events |= e->events, dup = 1;
                if (!dup) ev[total++] = *e;
            }
            return total;
        }
        if (!nx) {
            long ms = deadline < 0 ? -1 : (deadline - net_now_ns() + 999999) / 1000000;
            long k = sh_gate(SYS_epoll_pwait, epfd, (long)ev, max, ms < 0 && deadline >= 0 ? 0 : ms, (long)mask, 8);
            net_sleep(0);
            if (k > 0) k = net_strip_wake(ev, k, &woke);
            if (k != 0 || !woke) return k;
            continue; /* woken: a connection became ready (in this set or another) */
        }
        struct pollfd p[MAX_EXTRA + 1];
        p[0] = (struct pollfd){epfd, POLLIN, 0};
        for (int i = 0; i < nx; i++) p[1 + i] = (struct pollfd){extra[i], POLLOUT, 0};
        long r = kpoll(p, (unsigned long)nx + 1, deadline, mask);
        net_sleep(0);
        if (r < 0) return r;
        if (p[0].revents) {
            long k = sh_gate(SYS_epoll_pwait, epfd, (long)ev, max, 0, 0, 8);
            if (k > 0) k = net_strip_wake(ev, k, &woke);
            if (k != 0) return k;
        }
        if (r == 0 && deadline >= 0 && net_now_ns() >= deadline) return 0;
    }
}

long net_epoll_ctl(int epfd, int op, int fd, struct epoll_event *e) {
    long r = sh_gate(SYS_epoll_ctl, epfd, op, fd, (long)e, 0, 0);
    nconn *c = r == 0 ? net_get(fd) : NULL;
    if (!c) return r;
    uint32_t gen = epfd >= 0 && epfd < net_tbl_n ? net_epgen[epfd] : 0;
    pthread_mutex_lock(&net_mu);
    int j;
    for (j = 0; j < c->nep; j++)
        if (c->ep[j].epfd == epfd && c->ep[j].gen == gen) break;
    if (op == EPOLL_CTL_DEL) {
        if (j < c->nep) c->ep[j] = c->ep[--c->nep];
    } else if (e) {
        if (j == c->nep) {
            if (c->nep == c->capep) {
                int nc2 = c->capep ? c->capep * 2 : 2;
                struct net_epreg *ne = realloc(c->ep, (size_t)nc2 * sizeof *ne);
                if (ne) c->ep = ne, c->capep = nc2;
            }
            if (c->nep < c->capep) c->nep++;
        }
        if (j < c->nep)
            c->ep[j] = (struct net_epreg){epfd, gen, e->events, e->data.u64, c->ready_seq - 1, 0, fd};
    }
    pthread_mutex_unlock(&net_mu);
    net_put(c);
    return r;
}
