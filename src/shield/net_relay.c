/* shield/net_relay.c - fork, and exec keeping connections, with shielded connections open.
 *
 * A TLS connection's state (keys, sequence numbers) can be used by one process only: two
 * processes writing records with copies of it repeat sequence numbers, and the peer ends the
 * connection. So when a process forks (or execs keeping a connection) while shielded
 * connections are in its table, the shield first starts a relay: a process forked from this
 * one, so that it owns the SSL objects and the kernel TCP sockets, which moves plaintext
 * between each connection and one end of a socketpair. The other end of the socketpair
 * replaces the connection at every number the program holds (dup3 onto the same number,
 * keeping FD_CLOEXEC and O_NONBLOCK; the program's epoll registrations are moved along), so
 * after the fork parent and child share it as one open file description, as they would share
 * a plain socket. Plaintext crosses only that socketpair, between the program's own processes;
 * the network sees only TLS. The relay sends close_notify when the program shuts the
 * socketpair down for writing or when every holder has closed it, and shuts the socketpair
 * down for writing when the peer's stream ends.
 *
 * The relay is the grandchild (the intermediate process exits at once), so the program's
 * wait() never meets it; it exits when every connection it holds has ended. The cost is paid
 * only by a fork or exec with connections open: servers that fork before accepting pay nothing.
 */
#define _GNU_SOURCE 1
#include <assert.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#undef PF_FILE /* <sys/socket.h>'s; internal.h has its own */
#include "common/util.h"
#include "shield/internal.h"
#include "shield/net.h"
#include "shield/net_int.h"

#define RELAY_BUF 16384

struct link {
    nconn *c;
    int sp[2];  /* [0] the program's end, [1] the relay's */
    int tcp;    /* in the relay: the kernel socket */
    int nonblock;
    char in[RELAY_BUF]; /* plaintext from the peer not yet given to the program */
    size_t in_off, in_len;
    char out[RELAY_BUF]; /* plaintext from the program not yet encrypted */
    size_t out_off, out_len;
    int sp_eof;   /* the program's side ended (shutdown SHUT_WR, or every holder closed) */
    int peer_eof; /* the peer's stream ended (or the connection failed): passed on */
    int gone;     /* every holder closed the program's end: nothing more to deliver */
    int done;
};

struct num { /* one number of the program that refers to a relayed connection */
    int fd, link, cloexec;
};

static void close_all_but(const int *keep, int nkeep) {
    /* keep[] ascending */
    long lo = 0;
    for (int i = 0; i <= nkeep; i++) {
        long hi = i < nkeep ? keep[i] - 1L : 0x7fffffffL;
        if (hi >= lo) sh_gate(SYS_close_range, lo, hi, 0, 0, 0, 0);
        if (i < nkeep) lo = keep[i] + 1L;
    }
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* All the work that can be done without waiting; returns once nothing moves. */
static void link_pump(struct link *l) {
    nconn *c = l->c;
    for (int moved = 1; moved;) {
        moved = 0;
        if (!l->in_len && !l->peer_eof) { /* peer -> program */
            long r = net_read(c, l->in, sizeof l->in, MSG_DONTWAIT);
            if (r > 0) {
                l->in_off = 0;
                l->in_len = (size_t)r;
                moved = 1;
            } else if (r != -EAGAIN) { /* the end, or a failed connection: the program reads EOF */
                l->peer_eof = 1;
                sh_gate(SYS_shutdown, l->sp[1], r == 0 ? SHUT_WR : SHUT_RDWR, 0, 0, 0, 0);
                moved = 1;
            }
        }
        if (l->in_len && l->gone) l->in_len = 0;
        if (l->in_len) {
            long w = sh_gate(SYS_sendto, l->sp[1], (long)(l->in + l->in_off), (long)(l->in_len - l->in_off),
                             MSG_DONTWAIT | MSG_NOSIGNAL, 0, 0);
            if (w > 0) {
                l->in_off += (size_t)w;
                if (l->in_off == l->in_len) l->in_len = 0;
                moved = 1;
            } else if (w != -EAGAIN && w != -EINTR) {
                l->gone = 1;
                l->in_len = 0;
            }
        }
        if (!l->out_len && !l->sp_eof) { /* program -> peer */
            long r = sh_gate(SYS_recvfrom, l->sp[1], (long)l->out, sizeof l->out, MSG_DONTWAIT, 0, 0);
            if (r > 0) {
                l->out_off = 0;
                l->out_len = (size_t)r;
                moved = 1;
            } else if (r == 0 || (r != -EAGAIN && r != -EINTR)) {
                l->sp_eof = 1;
                moved = 1;
            }
        }
        if (l->out_len) {
            long w = c->failed ? -c->failed
                               : net_write(c, l->out + l->out_off, l->out_len - l->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0) {
                l->out_off += (size_t)w;
                if (l->out_off == l->out_len) l->out_len = 0;
                moved = 1;
            } else if (w != -EAGAIN) { /* the connection failed: the program's writes get EPIPE */
                l->out_len = 0;
                l->sp_eof = 1;
                sh_gate(SYS_shutdown, l->sp[1], SHUT_RDWR, 0, 0, 0, 0);
                moved = 1;
            }
        }
        if (l->sp_eof && !l->out_len && !c->wr_shut && !c->failed) {
            (void)net_shutdown(c, SHUT_WR); /* close_notify, then the TCP FIN */
            moved = 1;
        }
        if (BIO_pending(c->wbio) && !c->failed && net_flush(c, 0, 1) == 0) moved = 1;
    }
    int out_done = l->sp_eof && !l->out_len && (c->wr_shut || c->failed) && (!BIO_pending(c->wbio) || c->failed);
    int in_done = l->gone || c->failed || (l->peer_eof && !l->in_len);
    l->done = out_done && in_done;
}

static void relay_run(struct link *L, int n) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    static const int dfl[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD, SIGALRM};
    for (size_t i = 0; i < sizeof dfl / sizeof dfl[0]; i++) sigaction(dfl[i], &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    struct pollfd *p = malloc((size_t)n * 2 * sizeof *p);
    if (!p) {
        sh_gate(SYS_exit_group, 1, 0, 0, 0, 0, 0);
        return;
    }
    for (;;) {
        int np = 0, alive = 0;
        for (int i = 0; i < n; i++) {
            struct link *l = &L[i];
            if (l->done) continue;
            link_pump(l);
            if (l->done) {
                sh_gate(SYS_close, l->sp[1], 0, 0, 0, 0, 0);
                sh_gate(SYS_close, l->tcp, 0, 0, 0, 0, 0);
                continue;
            }
            alive++;
            short sev = (short)((!l->sp_eof && !l->out_len ? POLLIN : 0) | (l->in_len ? POLLOUT : 0));
            short tev = (short)((!l->peer_eof && !l->in_len && !l->c->failed ? POLLIN : 0) |
                                (BIO_pending(l->c->wbio) && !l->c->failed ? POLLOUT : 0));
            p[np++] = (struct pollfd){l->sp[1], sev, 0};
            p[np++] = (struct pollfd){l->tcp, tev, 0};
        }
        if (!alive) break;
        long r = sh_gate(SYS_poll, (long)p, np, -1, 0, 0, 0);
        if (r < 0 && r != -EINTR) break;
        for (int i = 0, k = 0; r > 0 && i < n; i++) {
            if (L[i].done) continue;
            if (p[k].revents & (POLLHUP | POLLERR)) L[i].gone = 1; /* every holder closed (or both halves shut) */
            k += 2;
        }
    }
    sh_gate(SYS_exit_group, 0, 0, 0, 0, 0, 0);
}

/* In the relay: only its sockets (and stderr, for the log) stay open. */
static void relay_child(struct link *L, int n) {
    prctl(PR_SET_NAME, "scp-net-relay", 0, 0, 0); /* the container waits for it (runtime/container.c) */
    int *keep = malloc(((size_t)n * 2 + 1) * sizeof *keep);
    if (!keep) {
        sh_gate(SYS_exit_group, 1, 0, 0, 0, 0, 0);
        return;
    }
    int k = 0;
    keep[k++] = 2;
    for (int i = 0; i < n; i++) {
        keep[k++] = L[i].tcp;
        keep[k++] = L[i].sp[1];
    }
    qsort(keep, (size_t)k, sizeof *keep, cmp_int);
    int u = 0;
    for (int i = 0; i < k; i++)
        if (!u || keep[u - 1] != keep[i]) keep[u++] = keep[i];
    close_all_but(keep, u);
    free(keep);
    pthread_mutex_init(&net_mu, NULL);
    for (int i = 0; i < n; i++) {
        pthread_mutex_init(&L[i].c->mu, NULL);
        L[i].c->pid = (int)syscall(SYS_getpid); /* the owner now: its goodbye is the connection's */
        long fl = sh_gate(SYS_fcntl, L[i].tcp, F_GETFL, 0, 0, 0, 0);
        if (fl >= 0) sh_gate(SYS_fcntl, L[i].tcp, F_SETFL, fl | O_NONBLOCK, 0, 0, 0);
        sh_gate(SYS_fcntl, L[i].sp[1], F_SETFL, O_NONBLOCK, 0, 0, 0);
    }
    relay_run(L, n);
}

static pid_t (*real_fork_p)(void);
static pid_t real_fork(void) {
    if (!real_fork_p) real_fork_p = (pid_t(*)(void))dlsym(RTLD_NEXT, "fork");
    if (!real_fork_p) return -1;
    return real_fork_p();
}

/* Start the relay for L[0..n) (their c->mu held); 0 or -errno. */
static long start_relay(struct link *L, int n) {
    for (int i = 0; i < n; i++) assert(scp_mutex_held(&L[i].c->mu));
    pid_t mid = real_fork();
    if (mid < 0) return -errno;
    if (mid == 0) { /* the intermediate: its child, the relay, is adopted by init when it exits */
        pid_t r = real_fork();
        if (r == 0) relay_child(L, n); /* returns only if it could not run */
        sh_gate(SYS_exit_group, r != 0 ? (r < 0) : 1, 0, 0, 0, 0, 0);
    }
    int st = 0;
    long w;
    do w = sh_gate(SYS_wait4, mid, (long)&st, __WALL, 0, 0, 0);
    while (w == -EINTR);
    /* ECHILD: a SIGCHLD handler of the program reaped it first; the relay is then running or
     * failed to start, which its intermediate's status would have said: assume running */
    if (w == mid && (!WIFEXITED(st) || WEXITSTATUS(st) != 0)) return -EAGAIN;
    return 0;
}

static int relayed_number(const struct num *nums, int nn, int fd) {
    for (int i = 0; i < nn; i++)
        if (nums[i].fd == fd) return 1;
    return 0;
}

/* The program's side: every number of the relayed connections becomes the program's end of
 * its socketpair, with the number's FD_CLOEXEC and the connection's O_NONBLOCK; epoll
 * registrations move to it. The table forgets the connections (their SSL state is the
 * relay's now; nothing of it is sent from here). */
static void hand_over(struct link *L, int n, struct num *nums, int nn) {
    for (int i = 0; i < n; i++) {
        nconn *c = L[i].c;
        if (L[i].nonblock) sh_gate(SYS_fcntl, L[i].sp[0], F_SETFL, O_NONBLOCK, 0, 0, 0);
        pthread_mutex_lock(&net_mu);
        for (int j = 0; j < c->nep; j++) {
            struct net_epreg *r = &c->ep[j];
            if (r->epfd >= 0 && r->epfd < net_tbl_n && r->gen == net_epgen[r->epfd])
                sh_gate(SYS_epoll_ctl, r->epfd, EPOLL_CTL_DEL, r->fd, 0, 0, 0);
        }
        pthread_mutex_unlock(&net_mu);
    }
    for (int i = 0; i < nn; i++) {
        struct link *l = &L[nums[i].link];
        if (sh_gate(SYS_dup3, l->sp[0], nums[i].fd, nums[i].cloexec ? O_CLOEXEC : 0, 0, 0, 0) < 0)
            sh_gate(SYS_shutdown, nums[i].fd, SHUT_RDWR, 0, 0, 0, 0); /* fail closed */
    }
    for (int i = 0; i < n; i++) {
        nconn *c = L[i].c;
        pthread_mutex_lock(&net_mu);
        for (int j = 0; j < c->nep; j++) {
            struct net_epreg *r = &c->ep[j];
            if (r->epfd < 0 || r->epfd >= net_tbl_n || r->gen != net_epgen[r->epfd] || r->disarmed ||
                !relayed_number(nums, nn, r->fd))
                continue;
            struct epoll_event ev = {r->events, {.u64 = r->data}};
            sh_gate(SYS_epoll_ctl, r->epfd, EPOLL_CTL_ADD, r->fd, (long)&ev, 0, 0);
        }
        pthread_mutex_unlock(&net_mu);
        c->failed = ECONNRESET; /* a thread still inside an operation on it stops there */
        sh_gate(SYS_close, L[i].sp[0], 0, 0, 0, 0, 0);
        sh_gate(SYS_close, L[i].sp[1], 0, 0, 0, 0, 0);
    }
    for (int i = 0; i < nn; i++) net_tbl_set(nums[i].fd, NULL);
}

/* for_exec: only connections that some number keeps across exec. 0, or -errno (nothing changed). */
static long relay_all(int for_exec) {
    if (!__atomic_load_n(&net_nconns, __ATOMIC_ACQUIRE)) return 0;
    int cap = 0, nn = 0, n = 0;
    struct num *nums = NULL;
    nconn **cs = NULL;
    int short_alloc = 0;
    pthread_mutex_lock(&net_mu);
    for (int fd = 0; fd < net_tbl_n; fd++) {
        nconn *c = net_tbl[fd];
        if (!c) continue;
        if (nn == cap) {
            int nc2 = cap ? cap * 2 : 16;
            struct num *a = realloc(nums, (size_t)nc2 * sizeof *a);
            nconn **b = realloc(cs, (size_t)nc2 * sizeof *b);
            if (a) nums = a;
            if (b) cs = b;
            if (!a || !b) {
                short_alloc = 1;
                break;
            }
            cap = nc2;
        }
        int li;
        for (li = 0; li < n && cs[li] != c; li++) {}
        if (li == n) {
            cs[n++] = c;
            c->users++;
        }
        long fdfl = sh_gate(SYS_fcntl, fd, F_GETFD, 0, 0, 0, 0);
        nums[nn++] = (struct num){fd, li, fdfl > 0 && (fdfl & FD_CLOEXEC)};
    }
    pthread_mutex_unlock(&net_mu);
    int ncs = n;
    int any = !for_exec; /* exec: a connection whose every number closes at exec ends as at a close */
    for (int i = 0; i < nn && !any; i++) any = !nums[i].cloexec;
    if (!any) n = 0;
    struct link *L = calloc((size_t)(n ? n : 1), sizeof *L);
    long err = L && !short_alloc ? 0 : -ENOMEM;
    for (int i = 0; i < n && L; i++) L[i].sp[0] = L[i].sp[1] = -1;
    for (int i = 0; i < n && !err; i++) {
        L[i].c = cs[i];
        L[i].tcp = cs[i]->fd;
        long fl = sh_gate(SYS_fcntl, cs[i]->fd, F_GETFL, 0, 0, 0, 0);
        L[i].nonblock = fl >= 0 && (fl & O_NONBLOCK);
        long r = sh_gate(SYS_socketpair, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, (long)L[i].sp, 0, 0);
        if (r < 0) err = r;
    }
    for (int i = 0; i < n; i++) pthread_mutex_lock(&cs[i]->mu);
    if (!err && n) err = start_relay(L, n);
    if (!err && n) hand_over(L, n, nums, nn);
    for (int i = 0; i < n; i++) pthread_mutex_unlock(&cs[i]->mu);
    for (int i = 0; err && i < n; i++) {
        if (L[i].sp[0] >= 0) sh_gate(SYS_close, L[i].sp[0], 0, 0, 0, 0, 0);
        if (L[i].sp[1] >= 0) sh_gate(SYS_close, L[i].sp[1], 0, 0, 0, 0, 0);
    }
    for (int i = 0; i < ncs; i++) net_put(cs[i]);
    free(L);
    free(nums);
    free(cs);
    if (err) net_log("cannot start the relay for %d TLS connection(s) at %s: %s", n, for_exec ? "exec" : "fork",
                     strerror((int)-err));
    return err;
}

long sh_net_exec_relay(void) { return sh_net_on ? relay_all(1) : 0; }

/* fork with connections open: they go to a relay first (above); then the program's fork. */
SH_EXPORT pid_t fork(void) {
    if (sh_net_on && !sh_in_lib) {
        long r = relay_all(0);
        if (r < 0) {
            errno = (int)-r;
            return -1;
        }
    }
    pid_t pid = real_fork();
    if (pid == 0 && sh_net_on) net_wake_after_fork();
    return pid;
}
