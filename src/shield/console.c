/* shield/console.c - the console shield: stdout/stderr leave as sealed records, stdin is
 * accepted only as sealed records (scp/sealed_stream.h; docs/shield.md "Console").
 *
 * Fail closed by descriptor numbers, as the file shield does: at start the host's descriptor of
 * each sealed stream moves to a number in the shield's own range (console_real(k)), and the
 * program's number (0, 1, 2) becomes an O_PATH placeholder that the image's filter guards
 * (gate.c: the first image's program tests these numbers as the reserved range), so every
 * call on it that does not come from the gate traps and lands here (stdio's internal writes,
 * raw `syscall` instructions). A raw write on a placeholder that nothing serves fails (EBADF);
 * none reaches the host's pipe in plaintext. dup/dup2/F_DUPFD of a console number make more
 * console numbers (placeholders, each with a filter of its own: a filter cannot change once
 * installed); close ends them.
 *
 * Blocking: a record is written whole, with the blocking behaviour the program asked for on
 * its number (O_NONBLOCK through fcntl or FIONBIO): blocking writes wait for the host to drain
 * the pipe exactly as plain output would; non-blocking ones get EAGAIN before a record starts,
 * and the rest of a record the pipe took only in part is kept and sent first next time. No
 * reader is ever waited for beyond that: the host can always drain, with or without the key.
 *
 * Processes: every process writes its own stream (its own id, hence its own key, so GCM nonces
 * never repeat). A fork child (seen at its first write: the pid changed) restarts as a child
 * stream of its parent's; an exec ends the stream with an end record naming the stream the
 * next image continues; a vfork or raw clone child sharing our memory writes self-contained
 * one-off streams and leaves the parent's state alone.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/sealed_stream.h"
#include "shield/internal.h"

static const char *const NAMES[3] = {"stdin", "stdout", "stderr"};

struct con_stream {
    int sealed;          /* the policy seals this stream */
    int real;            /* the host's descriptor, in the shield's own range; -1: none */
    pthread_mutex_t mu;  /* the writer (or reader) and the buffers below */
    scp_ss_writer *w;    /* stdout/stderr: in locked, non-dumped memory */
    int started;         /* header written in this process */
    pid_t pid;           /* the process whose stream w is */
    int nonblock;        /* O_NONBLOCK as the program set it */
    uint8_t *frame;      /* SCP_SS_MAX_FRAME bytes */
    char *line;          /* line form: LINE_BUF bytes, the frame as a line (ciphertext only) */
    uint8_t *pending;    /* rest of a record a non-blocking write left */
    size_t npending, pend_off;
    /* stdin */
    scp_ss_reader *r;
    uint8_t *in;         /* plaintext not yet read */
    size_t in_len, in_off, in_cap;
    int eof, bad;
};

/* Line form (SCP_SHIELD_CON_LINES): records of at most SCP_SS_LINE_DATA bytes, each one line */
#define LINE_BUF SCP_SS_LINE_LEN(SCP_SS_LINE_DATA + SCP_SS_OVERHEAD)

static struct {
    int active;
    int lines;                            /* write records in line form */
    size_t max_data;                      /* plaintext bytes per data record */
    struct con_stream s[3];
    pthread_mutex_t fdmu;                 /* fd_stream */
    unsigned char fd_stream[SCP_SHIELD_MAX_ALIAS_FD]; /* program number -> stream + 1 */
    scp_shield_console *cfg;              /* key, names: locked memory */
} con = {.fdmu = PTHREAD_MUTEX_INITIALIZER};

static __thread int con_busy; /* this thread is inside a console operation (signal re-entry) */

int sh_console_real(int k) { return sh.base + sh.nslots + k; }

int sh_console_fd(long fd) {
    return con.active && fd >= 0 && fd < (long)SCP_SHIELD_MAX_ALIAS_FD && con.fd_stream[fd] != 0;
}

static int stream_of(long fd) {
    if (!sh_console_fd(fd)) return -1;
    return con.fd_stream[fd] - 1;
}

static void *locked_alloc(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    madvise(p, n, MADV_DONTDUMP);
    (void)mlock(p, n);
    return p;
}

/* ---- writing records ----------------------------------------------------------------------- */

/* Write all of buf to the host's descriptor. Blocking streams wait for room (as plain output
 * does); a non-blocking one returns how much went out (maybe 0) when the pipe is full. */
static long put_bytes(struct con_stream *st, const uint8_t *buf, size_t n, size_t *done) {
    *done = 0;
    while (*done < n) {
        long w = sh_gate(SYS_write, st->real, (long)(buf + *done), (long)(n - *done), 0, 0, 0);
        if (w == -EINTR) continue;
        if (w == -EAGAIN) {
            if (st->nonblock) return -EAGAIN;
            struct pollfd pf = {.fd = st->real, .events = POLLOUT};
            long pr = sh_gate(SYS_poll, (long)&pf, 1, -1, 0, 0, 0);
            if (pr < 0 && pr != -EINTR) return pr;
            continue;
        }
        if (w <= 0) return w < 0 ? w : -EIO;
        *done += (size_t)w;
    }
    return 0;
}

/* Send a whole frame. On a non-blocking stream whose pipe is full, what did not go out is kept
 * (one frame at most: the caller flushes pending bytes first) and sent before the next frame
 * or at exit; the frame counts as written, so no sequence number is ever spent on a record the
 * program then writes again. */
static long put_frame(struct con_stream *st, const uint8_t *f, size_t n) {
    if (con.lines) {
        assert(SCP_SS_LINE_LEN(n) <= LINE_BUF);
        n = scp_ss_frame_line(f, n, st->line);
        f = (const uint8_t *)st->line;
    }
    size_t done;
    long r = put_bytes(st, f, n, &done);
    if (r != -EAGAIN) return r;
    assert(st->npending == 0);
    if (!st->pending) st->pending = locked_alloc(SCP_SS_MAX_FRAME);
    if (!st->pending) return -ENOMEM;
    memcpy(st->pending, f + done, n - done);
    st->npending = n - done;
    st->pend_off = 0;
    return 0;
}

static long flush_pending(struct con_stream *st) {
    if (!st->npending) return 0;
    size_t done;
    long r = put_bytes(st, st->pending + st->pend_off, st->npending, &done);
    st->pend_off += done;
    st->npending -= done;
    return r;
}

static long write_header(struct con_stream *st) {
    if (st->started) return 0;
    scp_err e;
    ssize_t n = scp_ss_seal_header(st->w, scp_now_ns(), st->frame, SCP_SS_MAX_FRAME, &e);
    if (n < 0) return -EIO;
    long r = put_frame(st, st->frame, (size_t)n);
    if (r < 0) return r; /* the writer moved on: a retry would repeat seq 0 with other bytes */
    st->started = 1;
    return 0;
}

/* A vfork or raw-clone child shares our memory but is another process: its bytes go out as a
 * stream of its own (fresh id and key: no nonce is reused) with header, data and end, and
 * the parent's writer is left as it was. */
static long write_oneoff(struct con_stream *st, int k, const struct iovec *iov, int cnt, size_t total) {
    scp_ss_writer w;
    scp_err e;
    long r = -EIO;
    uint8_t *f = st->frame;
    if (scp_ss_writer_start(&w, con.cfg->key, k, NAMES[k], con.cfg->session, con.cfg->service, SCP_SS_FORK,
                            st->w->id, st->w->seq, NULL, &e) < 0)
        goto out;
    ssize_t n = scp_ss_seal_header(&w, scp_now_ns(), f, SCP_SS_MAX_FRAME, &e);
    if (n < 0 || (r = put_frame(st, f, (size_t)n)) < 0) goto out;
    size_t sent = 0;
    for (int i = 0; i < cnt && sent < total; i++) {
        size_t off = 0;
        while (off < iov[i].iov_len) {
            size_t take = iov[i].iov_len - off < con.max_data ? iov[i].iov_len - off : con.max_data;
            if ((r = sh_copy_in(f + SCP_SS_HEAD_LEN, (const char *)iov[i].iov_base + off, take)) < 0) goto out;
            n = scp_ss_seal_data(&w, f + SCP_SS_HEAD_LEN, take, scp_now_ns(), f, SCP_SS_MAX_FRAME, &e);
            if (n < 0 || (r = put_frame(st, f, (size_t)n)) < 0) goto out;
            off += take;
            sent += take;
        }
    }
    n = scp_ss_seal_end(&w, SCP_SS_END_CLOSED, NULL, scp_now_ns(), f, SCP_SS_MAX_FRAME, &e);
    r = n < 0 ? -EIO : put_frame(st, f, (size_t)n);
out:
    scp_wipe(&w, sizeof w);
    return r < 0 ? r : (long)total;
}

/* A forked child's first operation: a stream of its own, child of the parent's. */
static long own_stream(struct con_stream *st) {
    pid_t me = (pid_t)syscall(SYS_getpid);
    if (st->pid == me) return 0;
    scp_err e;
    if (scp_ss_writer_restart(st->w, SCP_SS_FORK, NULL, &e) < 0) return -EIO;
    st->pid = me;
    st->started = 0;
    st->npending = 0; /* the parent's, not ours */
    return 0;
}

static long con_writev(int k, const struct iovec *iov, int cnt) {
    struct con_stream *st = &con.s[k];
    if (k == 0) return -EBADF; /* stdin is open for reading only */
    if (cnt < 0 || cnt > 1024) return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < cnt; i++) {
        if (iov[i].iov_len > (size_t)0x7ffff000 - total) return -EINVAL;
        total += iov[i].iov_len;
    }
    if (total == 0) return 0;
    if (st->real < 0) return -EBADF;
    if (con_busy) return -EINTR; /* a signal handler while this thread is writing a record */
    con_busy = 1;
    pthread_mutex_lock(&st->mu);
    long r;
    if ((pid_t)syscall(SYS_getpid) != sh.pid) { /* vfork or raw clone: see write_oneoff */
        r = write_oneoff(st, k, iov, cnt, total);
        goto out;
    }
    if ((r = own_stream(st)) < 0 || (r = flush_pending(st)) < 0 || (r = write_header(st)) < 0) goto out;
    size_t sent = 0;
    for (int i = 0; i < cnt; i++) {
        size_t off = 0;
        while (off < iov[i].iov_len) {
            /* a frame goes out only after everything before it (non-blocking: maybe not now) */
            if ((r = flush_pending(st)) < 0) goto partial;
            /* gather up to one record's worth from this and the following vectors */
            size_t n = 0;
            int j = i;
            size_t o = off;
            while (j < cnt && n < con.max_data) {
                size_t take = iov[j].iov_len - o;
                if (take > con.max_data - n) take = con.max_data - n;
                if (take && (r = sh_copy_in(st->frame + SCP_SS_HEAD_LEN + n, (const char *)iov[j].iov_base + o,
                                            take)) < 0)
                    goto partial;
                n += take;
                o += take;
                if (o == iov[j].iov_len) {
                    j++;
                    o = 0;
                }
            }
            scp_err e;
            ssize_t fl = scp_ss_seal_data(st->w, st->frame + SCP_SS_HEAD_LEN, n, scp_now_ns(), st->frame,
                                          SCP_SS_MAX_FRAME, &e);
            if (fl < 0) {
                r = -EIO;
                goto partial;
            }
            if ((r = put_frame(st, st->frame, (size_t)fl)) < 0) {
                /* nothing of this record went out, but its sequence number is spent: the
                 * reader will report one record dropped; stop here */
                goto partial;
            }
            sent += n;
            i = j;
            off = o;
            if (j >= cnt) goto done;
            if (off == 0) {
                i--; /* the for loop's i++ lands on j */
                break;
            }
        }
    }
done:
    r = (long)sent;
    goto out;
partial:
    if (sent) r = (long)sent;
out:
    pthread_mutex_unlock(&st->mu);
    con_busy = 0;
    return r;
}

/* ---- reading stdin --------------------------------------------------------------------------- */

static int on_stdin(void *arg, const scp_ss_event *ev) {
    struct con_stream *st = arg;
    if (ev->type == SCP_SS_EV_UNSEALED) {
        sh_trace("console: stdin refused: a line that is not a sealed record");
        st->bad = 1;
        return 1;
    }
    if (ev->type == SCP_SS_EV_PROBLEM) {
        sh_trace("console: stdin refused: %s", ev->msg);
        st->bad = 1;
        return 1;
    }
    if (ev->type == SCP_SS_EV_END) {
        st->eof = 1;
        return 0;
    }
    if (ev->type != SCP_SS_EV_DATA || st->eof) return 0;
    if (st->in_len + ev->len > st->in_cap) {
        size_t cap = st->in_cap ? st->in_cap : 65536;
        while (cap < st->in_len + ev->len) cap *= 2;
        uint8_t *n = locked_alloc(cap);
        if (!n) {
            st->bad = 1;
            return 1;
        }
        if (st->in) {
            memcpy(n, st->in, st->in_len);
            scp_wipe(st->in, st->in_cap);
            munmap(st->in, st->in_cap);
        }
        st->in = n;
        st->in_cap = cap;
    }
    memcpy(st->in + st->in_len, ev->data, ev->len);
    st->in_len += ev->len;
    return 0;
}

static long con_read(int k, void *buf, size_t n) {
    struct con_stream *st = &con.s[k];
    if (k != 0) return -EBADF; /* stdout/stderr are open for writing only */
    if (st->real < 0) return -EBADF;
    if (n == 0) return 0;
    pthread_mutex_lock(&st->mu);
    long r;
    uint8_t tmp[16384];
    for (;;) {
        if (st->in_off < st->in_len) {
            size_t take = st->in_len - st->in_off < n ? st->in_len - st->in_off : n;
            r = sh_copy_out(buf, st->in + st->in_off, take);
            if (r == 0) {
                st->in_off += take;
                r = (long)take;
                if (st->in_off == st->in_len) st->in_off = st->in_len = 0;
            }
            break;
        }
        if (st->bad) {
            r = -EIO;
            break;
        }
        if (st->eof) {
            r = 0;
            break;
        }
        long got = sh_gate(SYS_read, st->real, (long)tmp, sizeof tmp, 0, 0, 0);
        if (got == -EINTR) continue;
        if (got < 0) {
            r = got;
            break;
        }
        scp_err e;
        if (got == 0) {
            if (scp_ss_reader_finish(st->r, on_stdin, st, &e) < 0 || !scp_ss_reader_clean(st->r)) st->bad = 1;
            if (!st->bad) st->eof = 1;
            else sh_trace("console: stdin ended without its end record: refused");
            continue;
        }
        if (scp_ss_reader_feed(st->r, tmp, (size_t)got, on_stdin, st, &e) < 0) {
            if (!st->bad) sh_trace("console: stdin refused: %s", e.msg);
            st->bad = 1;
        }
        scp_wipe(tmp, (size_t)got);
    }
    pthread_mutex_unlock(&st->mu);
    return r;
}

/* ---- descriptor numbers ---------------------------------------------------------------------- */

/* A vfork/posix_spawn child shares our memory: it changes its own kernel table only, never
 * the number table (the parent's), as exec.c does for protected files. Its exec hands on what
 * the kernel table then holds (placeholders that the table names). */

/* Make `fd` a console number of stream k: a placeholder that a filter guards (its own, unless
 * one already does: the image's, or an earlier per-number one). */
static long make_number(long fd, int k, int cloexec) {
    if (fd < 0 || fd >= (long)SCP_SHIELD_MAX_ALIAS_FD || fd >= sh.lo) return -EMFILE;
    if (!sh.alias_filtered[fd]) {
        scp_err fe;
        if (sh_filter_install((int)fd, 1, 0, &fe)) return -EMFILE;
        sh.alias_filtered[fd] = 1;
    }
    long r = sh_gate(SYS_dup3, sh.placeholder, fd, cloexec ? O_CLOEXEC : 0, 0, 0, 0);
    if (r < 0 || sh_in_vfork_child()) return r;
    pthread_mutex_lock(&con.fdmu);
    con.fd_stream[fd] = (unsigned char)(k + 1);
    pthread_mutex_unlock(&con.fdmu);
    return fd;
}

static void forget_number(long fd) {
    if (sh_in_vfork_child()) return;
    pthread_mutex_lock(&con.fdmu);
    if (fd >= 0 && fd < (long)SCP_SHIELD_MAX_ALIAS_FD) con.fd_stream[fd] = 0;
    pthread_mutex_unlock(&con.fdmu);
}

/* dup/F_DUPFD: the lowest free number >= min, as the kernel picks. */
static long dup_lowest(int k, long min, int cloexec) {
    long n = sh_gate(SYS_fcntl, sh.placeholder, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, min, 0, 0, 0);
    if (n < 0) return n;
    long r = make_number(n, k, cloexec);
    if (r < 0) sh_gate(SYS_close, n, 0, 0, 0, 0, 0);
    return r;
}

static long dup_to(int k, long newfd, int cloexec) {
    if (sh_reserved(newfd) || sh_is_libfd(newfd)) return -EBADF;
    if (!sh_console_fd(newfd) && sh_is_prot(newfd)) { /* a protected file there: closed first */
        long ca[6] = {newfd, 0, 0, 0, 0, 0};
        sh_syscall(SYS_close, ca);
    }
    return make_number(newfd, k, cloexec);
}

static long con_fstat(int k, long nr, const long a[6]) {
    struct con_stream *st = &con.s[k];
    if (st->real < 0) return -EBADF;
    if (nr == SYS_fstat) return sh_gate(SYS_fstat, st->real, a[1], 0, 0, 0, 0);
    if (nr == SYS_newfstatat) return sh_gate(SYS_newfstatat, st->real, a[1], a[2], a[3], 0, 0);
    return sh_gate(SYS_statx, st->real, a[1], a[2], a[3], a[4], 0);
}

static int empty_path(long p) {
    char c[8];
    return p && sh_copy_in(c, (const void *)p, 1) == 0 && c[0] == 0;
}

/* sendfile/splice into a console number: read, then write as records */
static long con_copy_from(int k, long in, long *offp, size_t n) {
    uint8_t buf[16384];
    if (n > sizeof buf) n = sizeof buf;
    long got = offp ? sh_gate(SYS_pread64, in, (long)buf, (long)n, *offp, 0, 0)
                    : sh_gate(SYS_read, in, (long)buf, (long)n, 0, 0, 0);
    if (got <= 0) return got;
    struct iovec iov = {buf, (size_t)got};
    long w = con_writev(k, &iov, 1);
    if (w > 0 && offp) *offp += w;
    scp_wipe(buf, (size_t)got);
    return w;
}

/* O_NONBLOCK on a console number: as on the host's description, which plain output shares
 * with the host too */
static long set_nonblock(int k, int on) {
    struct con_stream *st = &con.s[k];
    if (st->real >= 0) {
        long fl = sh_gate(SYS_fcntl, st->real, F_GETFL, 0, 0, 0, 0);
        if (fl >= 0) sh_gate(SYS_fcntl, st->real, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK, 0, 0, 0);
    }
    st->nonblock = on;
    return 0;
}

int sh_console_open(long nr, const long a[6], long *ret) {
    if (!con.active || (nr != SYS_openat && nr != SYS_openat2)) return 0;
    char path[256], abs[256];
    if (sh_copy_path_in((const char *)a[1], path, sizeof path) < 0 || path[0] != '/' ||
        (strncmp(path, "/dev/", 5) != 0 && strncmp(path, "/proc/", 6) != 0) ||
        scp_shield_path_normalize(path, abs, sizeof abs))
        return 0;
    long fd;
    const char *rest;
    int k;
    if (sh_proc_fd_link(abs, &fd, &rest) != 1 || rest[0] || (k = stream_of(fd)) < 0) return 0;
    long flags = a[2];
    if (nr == SYS_openat2) {
        uint64_t f;
        if (sh_copy_in(&f, (const void *)a[2], sizeof f) < 0) {
            *ret = -EFAULT;
            return 1;
        }
        flags = (long)f;
    }
    int acc = (int)(flags & O_ACCMODE);
    if ((k == 0 && acc != O_RDONLY) || (k != 0 && acc == O_RDONLY) || (flags & (O_DIRECTORY | O_TMPFILE)))
        *ret = -EACCES;
    else
        *ret = dup_lowest(k, 0, (flags & O_CLOEXEC) != 0);
    sh_trace("console %s: open('%s') = %ld", NAMES[k], abs, *ret);
    return 1;
}

int sh_console_call(long nr, const long a[6], long *ret) {
    if (!con.active) return 0;
    int k = -1;
    long fd = a[0];
    switch (nr) {
    case SYS_sendfile:
        if (sh_console_fd(a[0])) {
            *ret = con_copy_from(stream_of(a[0]), a[1], (long *)a[2], (size_t)a[3]);
            return 1;
        }
        if (sh_console_fd(a[1])) {
            *ret = -EINVAL;
            return 1;
        }
        return 0;
    case SYS_dup2:
    case SYS_dup3:
        if ((k = stream_of(a[0])) < 0) {
            if (sh_console_fd(a[1])) forget_number(a[1]); /* another description onto it: core's */
            return 0;
        }
        break;
    case SYS_splice:
        if (stream_of(a[2]) >= 0) {
            *ret = a[1] ? -EINVAL : con_copy_from(stream_of(a[2]), a[0], (long *)a[1], (size_t)a[4]);
            return 1;
        }
        k = stream_of(a[0]);
        break;
    case SYS_close_range:
        if (!(a[2] & 4 /* CLOSE_RANGE_CLOEXEC */))
            for (unsigned long n = (unsigned long)a[0]; n <= (unsigned long)a[1] && n < SCP_SHIELD_MAX_ALIAS_FD; n++)
                if (sh_console_fd((long)n)) forget_number((long)n);
        return 0;
    case SYS_epoll_ctl:
        if (sh_console_fd(a[2])) {
            *ret = -EPERM;
            return 1;
        }
        return 0;
    case SYS_mmap:
        if (sh_console_fd(a[4])) {
            *ret = -ENODEV;
            return 1;
        }
        return 0;
    default:
        k = stream_of(fd);
    }
    if (k < 0) return 0;
    long r;
    switch (nr) {
    case SYS_write: {
        struct iovec iov = {(void *)a[1], (size_t)a[2]};
        r = con_writev(k, &iov, 1);
        break;
    }
    case SYS_writev: r = con_writev(k, (const struct iovec *)a[1], (int)a[2]); break;
    case SYS_pwritev2:
        r = a[3] == -1 ? con_writev(k, (const struct iovec *)a[1], (int)a[2]) : -ESPIPE;
        break;
    case SYS_read: r = con_read(k, (void *)a[1], (size_t)a[2]); break;
    case SYS_readv: {
        const struct iovec *iov = (const struct iovec *)a[1];
        r = a[2] < 1 ? -EINVAL : con_read(k, iov[0].iov_base, iov[0].iov_len);
        break;
    }
    case SYS_preadv2:
        r = a[3] == -1 && a[2] >= 1 ? con_read(k, ((const struct iovec *)a[1])[0].iov_base,
                                               ((const struct iovec *)a[1])[0].iov_len)
                                    : -ESPIPE;
        break;
    case SYS_pread64:
    case SYS_pwrite64:
    case SYS_preadv:
    case SYS_pwritev:
    case SYS_lseek: r = -ESPIPE; break;
    case SYS_fstat: r = con_fstat(k, nr, a); break;
    case SYS_newfstatat:
    case SYS_statx:
        r = (a[nr == SYS_statx ? 2 : 3] & AT_EMPTY_PATH) && empty_path(a[1]) ? con_fstat(k, nr, a) : -ENOTDIR;
        break;
    case SYS_ioctl:
        if ((unsigned long)a[1] == FIONBIO) {
            int v = 0;
            r = sh_copy_in(&v, (const void *)a[2], sizeof v);
            if (r == 0) r = set_nonblock(k, v != 0);
        } else {
            r = -ENOTTY; /* sealed streams are never terminals */
        }
        break;
    case SYS_close:
        forget_number(fd);
        r = sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
        break;
    case SYS_dup: r = dup_lowest(k, 0, 0); break;
    case SYS_dup2: r = a[0] == a[1] ? a[1] : dup_to(k, a[1], 0); break;
    case SYS_dup3: r = a[0] == a[1] || (a[2] & ~O_CLOEXEC) ? -EINVAL : dup_to(k, a[1], (a[2] & O_CLOEXEC) != 0); break;
    case SYS_fcntl:
        switch ((int)a[1]) {
        case F_DUPFD:
        case F_DUPFD_CLOEXEC: r = dup_lowest(k, a[2], (int)a[1] == F_DUPFD_CLOEXEC); break;
        case F_GETFD:
        case F_SETFD: r = sh_gate(SYS_fcntl, fd, a[1], a[2], 0, 0, 0); break;
        case F_GETFL: r = (k == 0 ? O_RDONLY : O_WRONLY) | (con.s[k].nonblock ? O_NONBLOCK : 0); break;
        case F_SETFL: r = set_nonblock(k, (a[2] & O_NONBLOCK) != 0); break;
        default: r = -EINVAL;
        }
        break;
    case SYS_fsync:
    case SYS_fdatasync: r = -EINVAL; break;
    default: r = -EINVAL; /* what a pipe would refuse anyway: ftruncate, fchmod, getdents... */
    }
    sh_trace("console %s: %s(%ld) = %ld", NAMES[k], sh_sysname(nr), fd, r);
    *ret = r;
    return 1;
}

/* ---- start, fork, exec, exit --------------------------------------------------------------- */

/* Fork. A thread writing stdout or stderr holds its stream's lock while it seals the record,
 * inside OpenSSL, which takes locks of its own (the algorithm store's, the random generator's).
 * Forked in the middle of that, the child inherited those OpenSSL locks held by a thread it does
 * not have, and its first write (own_stream: a fresh stream id from RAND_bytes, a key, a seal)
 * waited for them forever (cas_console, "forks while another thread writes": the child hung in
 * RAND_bytes -> EVP_RAND_fetch -> CRYPTO_THREAD_write_lock). So the prepare handler takes the
 * output streams' locks: no thread is sealing a record when the process forks (a blocked write
 * finishes first, as the host drains the pipe). This handler is registered after the shield's
 * (init.c), so it runs first: the output streams' locks come before every other lock of the
 * fork (order: init.c, atfork_prepare). stdin's is not taken: a reader holds it while it waits
 * for input, which may never come; the child gets a fresh one (the buffered plaintext and the
 * reader are the parent's as they were). */
static __thread int con_fork_held; /* this thread took the output streams' locks for a fork */

static void con_atfork_prepare(void) {
    /* a fork from a signal handler that interrupted this thread's own console write: its lock
     * is this thread's (taking it would never return); the record in progress stays as it is */
    if (con_busy) return;
    for (int k = 1; k < 3; k++) pthread_mutex_lock(&con.s[k].mu);
    con_fork_held = 1;
}
static void con_atfork_parent(void) {
    if (!con_fork_held) return;
    con_fork_held = 0;
    for (int k = 2; k > 0; k--) pthread_mutex_unlock(&con.s[k].mu);
}
/* what the locks protected is restarted at the child's first operation (own_stream), so fresh
 * locks are enough, also for those that another thread of the parent held */
static void con_atfork_child(void) {
    con_fork_held = 0;
    for (int k = 0; k < 3; k++) pthread_mutex_init(&con.s[k].mu, NULL);
    pthread_mutex_init(&con.fdmu, NULL);
    con_busy = 0;
}

int sh_console_fork_ready(void) { return !con.active || con_busy || con_fork_held; }

static int start_writer(int k, int exec, scp_err *err) {
    struct con_stream *st = &con.s[k];
    st->w = locked_alloc(4096);
    st->frame = locked_alloc(SCP_SS_MAX_FRAME);
    if (con.lines) st->line = locked_alloc(LINE_BUF);
    if (!st->w || !st->frame || (con.lines && !st->line)) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    const scp_shield_console *c = con.cfg;
    st->pid = sh.pid;
    return scp_ss_writer_start(st->w, c->key, k, NAMES[k], c->session, c->service,
                               exec && c->s[k].live ? c->s[k].relation : SCP_SS_ROOT,
                               exec && c->s[k].live ? c->s[k].parent : NULL, c->s[k].parent_seq,
                               exec && c->s[k].live ? c->s[k].id : NULL, err);
}

int sh_console_init(uint32_t *guard, scp_err *err) {
    const char *v = getenv(SCP_SHIELD_ENV_CONSOLE_FD);
    if (!v) return 0;
    char *end;
    long fd = strtol(v, &end, 10);
    if (*end || fd < 0 || fd > 1000000) return scp_fail(err, SCP_E_INVAL, EINVAL, "bad " SCP_SHIELD_ENV_CONSOLE_FD);
    con.cfg = locked_alloc(sizeof *con.cfg);
    if (!con.cfg) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    long got = sh_gate(SYS_pread64, fd, (long)con.cfg, sizeof *con.cfg, 0, 0, 0);
    sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
    unsetenv(SCP_SHIELD_ENV_CONSOLE_FD);
    scp_shield_console *c = con.cfg;
    if (got != (long)sizeof *c || memcmp(c->magic, SCP_SHIELD_CONSOLE_MAGIC, 8) != 0 || !memchr(c->session, 0, 65) ||
        !memchr(c->service, 0, 65))
        return scp_fail(err, SCP_E_FORMAT, EINVAL, "the console configuration is malformed");
    int exec = (c->flags & SCP_SHIELD_CON_EXEC) != 0;
    con.lines = (c->flags & SCP_SHIELD_CON_LINES) != 0;
    con.max_data = con.lines ? SCP_SS_LINE_DATA : SCP_SS_MAX_DATA;
    for (int k = 0; k < 3; k++) {
        struct con_stream *st = &con.s[k];
        pthread_mutex_init(&st->mu, NULL);
        st->real = -1;
        st->sealed = (c->flags & (1u << k)) != 0;
        if (!st->sealed) continue;
        int real = sh_console_real(k);
        if (!exec) {
            /* the host's descriptor moves into the shield's range; the program's number
             * becomes a console number (a placeholder the filter guards) */
            long r = sh_gate(SYS_dup3, k, real, 0, 0, 0, 0);
            if (r == real) {
                st->real = real;
                if (guard) { /* the image's one filter guards it: no filter of its own */
                    *guard |= 1u << k;
                    sh.alias_filtered[k] = 1;
                }
                if (make_number(k, k, 0) < 0) return scp_fail(err, SCP_E_SYS, EMFILE, "cannot guard descriptor %d", k);
            }
        } else if (sh_gate(SYS_fcntl, real, F_GETFD, 0, 0, 0, 0) >= 0) {
            st->real = real;
        }
        if (k == 0) {
            st->r = scp_ss_reader_new(c->key, c->session, c->service, err);
            if (!st->r) return -1;
            scp_ss_reader_expect_kind(st->r, SCP_SS_STDIN);
        } else if (start_writer(k, exec, err) < 0) {
            return -1;
        }
    }
    if (exec)
        for (int n = 0; n < (int)SCP_SHIELD_MAX_ALIAS_FD && n < sh.lo; n++)
            if (c->fd_stream[n] >= 1 && c->fd_stream[n] <= 3 && con.s[c->fd_stream[n] - 1].sealed &&
                (sh_gate(SYS_fcntl, n, F_GETFL, 0, 0, 0, 0) & O_PATH)) {
                con.fd_stream[n] = c->fd_stream[n];
                sh.alias_filtered[n] = 1; /* the previous image installed its filter */
            }
    memset(c->fd_stream, 0, sizeof c->fd_stream);
    pthread_atfork(con_atfork_prepare, con_atfork_parent, con_atfork_child);
    con.active = 1;
    sh_trace("console shield: stdin %s, stdout %s, stderr %s", con.s[0].sealed ? "sealed" : "plain",
             con.s[1].sealed ? "sealed" : "plain", con.s[2].sealed ? "sealed" : "plain");
    return 0;
}

/* End this process's streams (exit, _exit). Streams never written get header and end too, so
 * that an exec'd image's stream, which the previous one named, is always there. */
void sh_console_exit(void) {
    /* a vfork child's _exit: the streams are the parent's */
    if (!con.active || con_busy || (pid_t)syscall(SYS_getpid) != sh.pid) return;
    for (int k = 1; k < 3; k++) {
        struct con_stream *st = &con.s[k];
        if (!st->sealed || st->real < 0) continue;
        pthread_mutex_lock(&st->mu);
        scp_err e;
        if (own_stream(st) == 0) {
            int nb = st->nonblock;
            st->nonblock = 0; /* what is pending and the end record go out whole */
            long r = flush_pending(st);
            if (r == 0) r = write_header(st);
            ssize_t n = r == 0 && !st->w->ended
                            ? scp_ss_seal_end(st->w, SCP_SS_END_CLOSED, NULL, scp_now_ns(), st->frame, SCP_SS_MAX_FRAME, &e)
                            : -1;
            if (n > 0) put_frame(st, st->frame, (size_t)n);
            st->nonblock = nb;
        }
        pthread_mutex_unlock(&st->mu);
    }
}

/* At exec: a sealed memfd for the next image (-1: no console shield, -2: error). The streams of
 * this process end with an end record naming their successor, whose writer this process takes
 * over at once (so a failed exec simply continues in the successor). A vfork child names new
 * streams of its own and leaves the parent's running. */
int sh_console_exec_prepare(void) {
    if (!con.active) return -1;
    scp_shield_console *c = locked_alloc(sizeof *c);
    if (!c) return -2;
    memcpy(c, con.cfg, sizeof *c);
    c->flags |= SCP_SHIELD_CON_EXEC;
    pid_t me = (pid_t)syscall(SYS_getpid);
    for (int k = 1; k < 3; k++) {
        struct con_stream *st = &con.s[k];
        c->s[k].live = 0;
        if (!st->sealed) continue;
        pthread_mutex_lock(&st->mu);
        scp_err e;
        uint8_t next[SCP_SS_ID_LEN];
        int shared = me != sh.pid; /* vfork child: the writer is the parent's */
        int nb = st->nonblock;
        st->nonblock = 0; /* the end record and what is pending go out before the exec */
        if (scp_random(next, sizeof next, &e) == 0) {
            c->s[k].live = 1;
            memcpy(c->s[k].id, next, sizeof next);
            memcpy(c->s[k].parent, st->w->id, SCP_SS_ID_LEN);
            c->s[k].parent_seq = st->w->seq;
            c->s[k].relation = shared ? SCP_SS_FORK : SCP_SS_EXEC;
            if (!shared && st->real >= 0 && own_stream(st) == 0 && flush_pending(st) == 0 && write_header(st) == 0) {
                ssize_t n = scp_ss_seal_end(st->w, SCP_SS_END_EXEC, next, scp_now_ns(), st->frame, SCP_SS_MAX_FRAME, &e);
                if (n > 0) put_frame(st, st->frame, (size_t)n);
                memcpy(c->s[k].parent, st->w->id, SCP_SS_ID_LEN);
                c->s[k].parent_seq = st->w->seq;
                if (scp_ss_writer_restart(st->w, SCP_SS_EXEC, next, &e) == 0) st->started = 0;
            }
        }
        st->nonblock = nb;
        pthread_mutex_unlock(&st->mu);
    }
    pthread_mutex_lock(&con.fdmu);
    memcpy(c->fd_stream, con.fd_stream, sizeof c->fd_stream);
    pthread_mutex_unlock(&con.fdmu);
    int fd = scp_shield_sealed_memfd("scp-console", c, sizeof *c, NULL);
    scp_wipe(c, sizeof *c);
    munmap(c, sizeof *c);
    return fd < 0 ? -2 : fd;
}
