/* shield/internal.h - state shared by the files of libscp-shield.so (not a public API).
 *
 * Every emulated operation is a function that takes the arguments of the system call and
 * returns what the kernel would (a result, or -errno). The exported wrappers (interpose.c) and
 * the SIGSYS handler (init.c) both end in sh_syscall(), so the fast path and the trapped path
 * behave the same.
 */
#ifndef SCP_SHIELD_INTERNAL_H
#define SCP_SHIELD_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "scp/shield.h"
#include "scp/volume.h"

#define SH_EXPORT __attribute__((visibility("default")))

enum pf_kind { PF_FILE = 1, PF_DIR = 2 };

/* The volume library's own descriptors live in [lo - SH_LIB_ZONE, lo). */
#define SH_LIB_ZONE 512
#define SH_LIB_FD_MIN(lo) ((lo) - SH_LIB_ZONE)

struct dent {
    char *name;
    uint64_t ino;
    unsigned char type; /* DT_REG / DT_DIR */
};

/* What the kernel keeps in an open file description and POSIX shares between the processes
 * that hold it (fork, exec): the offset and the status flags. A slot of a region mapped
 * MAP_SHARED by every process of the program (a memfd at SH_OFD_FD, inherited across fork and
 * exec). refs counts the processes (images) that hold the description; 0 is a free slot. */
struct sh_ofd {
    pthread_mutex_t mu; /* process-shared and robust: a holder killed mid-write releases it */
    int64_t off;
    int32_t flags;      /* O_APPEND | O_NONBLOCK */
    int32_t refs;
};
#define SH_OFD_FD() (sh.base + sh.nslots + 3) /* own numbers: console 0-2, then this */
#define SH_PLACEHOLDER_FD() (sh.base + sh.nslots + 4) /* and the placeholder's original */

/* An open file description on a protected file or directory (shared by dup'ed slots). */
typedef struct pfile {
    int refs;            /* slots and in-flight operations (atomic) */
    enum pf_kind kind;
    int vol;             /* index into sh.vol */
    int flags;           /* open flags (O_ACCMODE, O_APPEND, O_NONBLOCK, ...) */
    char *path;          /* volume-relative path, no leading '/' ("" = root) */
    scp_vfile *vf;       /* PF_FILE */
    pthread_mutex_t mu;  /* PF_DIR: listing and position */
    struct dent *ents;
    size_t nents, pos;
    int listed;
    pid_t wpid;          /* process that last wrote through it (commit at exit/exec only there) */
    int lkfd;            /* PF_FILE: the kernel descriptor its record locks live on (-1 until the
                          * first lock; in the volume library's zone, see open_lock_fd in locks.c) */
    uint64_t lkino;      /* the file's inode number in its volume, once lkfd is open */
    uint64_t kino;       /* the same, once a lock kept in the process asked (locks.c, lk_ino;
                          * atomic; 0: not yet) */
    struct sh_ofd *ofd;  /* PF_FILE: shared offset and flags once another process may hold
                          * the description (sh_fork_share); NULL: the handle's own cursor */
    unsigned ofd_pass;   /* the last walk over the descriptions that saw it (ofd.c) */
    int privs_checked;   /* a write through it cleared S_ISUID/S_ISGID as needed (fileops.c) */
    int nameless;        /* O_TMPFILE with no name yet: path is its directory's, never the
                          * file's (PATH_MAX bytes: a linkat writes the new name into it) */
} pfile;

struct sh_volume {
    scp_volume *v;
    char mount[SCP_SHIELD_MAX_MOUNT];
    size_t mlen;
    char dirpath[64]; /* "/proc/self/fd/N" */
    dev_t dev;        /* st_dev of its names as the program sees them (init.c, volume_dev) */
    int priv;         /* holds the volume's private lock although the family is shared
                       * (open_volume, volopen.c); cleared by sh_priv_end under priv_mu */
    int priv_pending; /* private, its watcher not started yet (opened in a trap handler) */
    int sole_pending; /* opened in a trap handler outside a shared family, not private: to try
                       * for the sole holding at the next call outside one (sh_sole_try) */
};

struct sh_state {
    int active;                 /* configuration read and volumes open */
    int forked;                 /* this image has forked (sh_fork_share): its volumes are shared */
    scp_shield_config cfg;
    int base, nslots;           /* protected-file slots: [base, base + nslots) */
    int lo, hi;                 /* whole reserved range [lo, hi) */
    struct sh_volume vol[SCP_SHIELD_MAX_VOLUMES];
    int nvol;
    pthread_mutex_t mu;         /* slots, cwd */
    pfile **slot;
    unsigned char *slot_cloexec;
    char cwd[4096];             /* the program's view of its working directory */
    int vcwd;                   /* cwd lies inside a protected mount */
    pid_t pid;
    char self_path[4096];       /* path of libscp-shield.so, for exec */
    int placeholder;            /* O_PATH /dev/null that fills unused reserved numbers */
    pfile **alias;              /* [0, lo): ordinary numbers that refer to protected files */
    int nalias;
    mode_t umask;
    unsigned char *alias_filtered; /* [0, lo): a per-number filter is installed */
    uint8_t (*keys)[SCP_VOLUME_KEY_LEN]; /* volume keys for exec: locked, not in core dumps */
    unsigned char libfd[SH_LIB_ZONE]; /* [lo - SH_LIB_ZONE, lo): the volume library's own */
    struct sh_ofd *ofd_map;     /* the shared offsets' region (SCP_SHIELD_OFD_SLOTS), or NULL */
};

extern struct sh_state sh;

/* table.c: the system calls the shield knows (table.def). Indexed by number; an entry
 * without a name is a call the shield never sees. */
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#define SH_SYS_MAX 512
#define SH_ARG(i) (1u << (i)) /* argument i is a descriptor (the fds column) */
enum sh_filter { FILT_NONE, FILT_FD, FILT_ALWAYS, FILT_ENOSYS, FILT_CLOSE_RANGE, FILT_SIGACTION, FILT_SIGMASK,
                 FILT_PATH, FILT_ENOSYS_VOL };
enum sh_handler { HND_NONE, HND_DESC, HND_PATH, HND_EXEC, HND_UCTX, HND_CWD };
struct sh_sysent {
    const char *name;
    uint8_t fds;                 /* SH_ARG(i) bits */
    uint8_t filter;              /* enum sh_filter */
    int8_t dirfd, path;          /* argument positions, -1: none (AT_FDCWD) */
    int8_t dirfd2, path2;
    int8_t empty;                /* flags argument with AT_EMPTY_PATH, -1: none */
    uint8_t handler;             /* enum sh_handler */
};
extern const struct sh_sysent sh_systab[SH_SYS_MAX];
static inline const struct sh_sysent *sh_sys(long nr) {
    return nr >= 0 && nr < SH_SYS_MAX && sh_systab[nr].name ? &sh_systab[nr] : 0;
}

/* gate.c */
long sh_gate(long nr, long a1, long a2, long a3, long a4, long a5, long a6);
/* Map the gate. forward_only: for an image the shield only keeps alive (SCP_SHIELD_ENV_FORWARD),
 * whose own calls sh_gate then makes through libc, where a supervisor's filter sees them (it
 * lets the gate's through); only the SIGSYS handler uses the gate (sh_gate_direct). */
int sh_gate_map(int forward_only, scp_err *err);
/* A call through the gate, mapped (the SIGSYS handler's: it runs only once the gate is). */
long sh_gate_direct(long nr, long a1, long a2, long a3, long a4, long a5, long a6);
/* A per-number filter (full = 0): trap calls on descriptors in [base, base + count) that do
 * not come through the gate. 0 or -1. */
int sh_filter_install(int base, int count, int full, scp_err *err);
/* What an image's one shield filter holds (gate.c explains how the rules combine). */
struct sh_filter_spec {
    int full;                           /* an image's filter (0: a per-number one) */
    int lo, count;                      /* the reserved range; count 0: an earlier image's filter has it */
    const uintptr_t *code_lo, *code_hi; /* path calls from this code trap (the program and libc) */
    int ncode;
    const int *net_nrs;                 /* calls the network shield traps unless from the gate */
    int nnet;
    uintptr_t ldr_lo, ldr_hi;           /* the loader's text: its mmap of a file traps; 0: none */
    uint32_t low;                       /* numbers below 32 guarded as the reserved range (the
                                         * console's at start; main part only) */
    int deny_trace;                     /* ptrace, process_vm_readv/writev: EPERM (the container's
                                         * rule, SCP_SHIELD_F_NOPTRACE; main part only) */
};
/* Install it (TSYNC). Returns its length in instructions, or -1. */
int sh_shield_filter_install(const struct sh_filter_spec *f, scp_err *err);
#include <signal.h>
int sh_install_sigsys(void (*handler)(int, siginfo_t *, void *), scp_err *err);
/* The kernel's action for sig, set (act, with the gate's rt_sigreturn as restorer) and/or
 * read (old), through the gate: 0 or -errno. */
struct sh_ksigaction {
    void *handler;
    unsigned long flags;
    uint64_t mask;
};
long sh_ksigaction(int sig, const struct sh_ksigaction *act, struct sh_ksigaction *old);

/* nofault.c: copies from and to the program's memory that recover from a fault (EFAULT, as
 * the kernel answers) instead of probing each page with a system call; see nofault.c. */
long sh_nf_copy(void *dst, const void *src, size_t n);         /* 0 or -EFAULT */
long sh_nf_strcpy(char *dst, const char *src, size_t n);       /* length, n (no NUL), -EFAULT */
int sh_nf_usable(void);                                        /* may they be used here, now */
void sh_nf_install(void);                                      /* at start: the fault handler */
int sh_nf_owns(int sig);                                       /* SIGSEGV, SIGBUS once installed */
long sh_nf_sigaction(int sig, const struct sigaction *act, struct sigaction *old);
void sh_nf_note_handler(int sig, const struct sigaction *act); /* any other sigaction */
void sh_nf_note_mask(int how, const sigset_t *set);            /* a mask change that succeeded */
void sh_nf_set_mask(uint64_t mask);                            /* the thread's mask, exactly */
int sh_nf_mask_enter(const sigset_t *tmp);                     /* sigsuspend, ppoll...: old state */
int sh_nf_trap_enter(uint64_t mask);                           /* a trap, on the interrupted mask */
void sh_nf_mask_leave(int prev);
void sh_nf_exec(int failed); /* around an exec: the program's SIG_IGN to the kernel, and back */
/* The program's handlers of the other signals never run while their thread is inside the
 * shield (sh_in_lib): such a signal is deferred to the shield's leave (nofault.c). */
#define SH_NSIG 64
int sh_sig_defers(int sig);                /* sigaction/signal for sig are nofault.c's */
extern __thread uint64_t sh_sig_deferred;  /* the signals this thread holds back */
void sh_sig_deliver(void);                 /* sh_in_lib back to 0: let them through */
void sh_sig_trap_leave(uint64_t interrupted); /* the SIGSYS handler returns onto this mask */

/* core.c and the files of the emulation (core.h lists what they share) */
extern __thread int sh_in_trap;
/* Set while the shield runs volume-library code: descriptors that the library opens are moved
 * just below the reserved range, away from the numbers programs dup2 onto. */
extern __thread int sh_in_lib;
/* the end of a sh_in_lib section: the outermost one lets the deferred signals through */
static inline void sh_lib_leave(void) {
    if (--sh_in_lib == 0 && sh_sig_deferred) sh_sig_deliver();
}

int sh_is_prot(long fd);
/* The program's dup(fd) (min 0) or fcntl(fd, F_DUPFD[_CLOEXEC], min) of a protected fd: the
 * lowest free number at or above min, as an alias without a filter of its own, or a slot when
 * there is none below SCP_SHIELD_MAX_ALIAS_FD (or in a vfork child). The new number or -errno. */
long sh_dup_low(long fd, long min, int cloexec);
/* Give the alias at fd the one-number filter that makes raw calls on it trap, before its
 * number reaches code the shield does not see (stdio, a spawn's file actions, an exec).
 * 1 when it installed the filter (in a vfork child the child's own), 0 when fd is no
 * unfiltered alias, -EMFILE when the filter could not be installed. Takes sh.mu. */
int sh_alias_filter(long fd);
/* fd belongs to the volume library (the program may not close or replace it) */
static inline int sh_is_libfd(long fd) {
    return fd >= SH_LIB_FD_MIN(sh.lo) && fd < sh.lo && sh.libfd[fd - SH_LIB_FD_MIN(sh.lo)];
}
/* The shield's own descriptor fd moved into the volume library's zone, out of the program's
 * numbers and kept from its close (the shield's epoll instances, verified and library copies):
 * the new number (fd closed), or fd itself when the zone has no room (or no zone). */
int sh_own_fd(long fd);
/* Close a descriptor that sh_own_fd gave (its zone mark cleared). */
void sh_close_own(long fd);

/* fdlist.c: the program's own descriptor directory (/proc/self/fd, /dev/fd) listed without
 * the volume library's and the reserved range's numbers, except the program's protected files.
 * sh_fdlist_hidden: 1 when a listing leaves the entry `name` out. sh_fdlist_opened: an open of
 * path gave the ordinary descriptor fd (the program's open, openat, opendir). sh_fdlist_is_own:
 * 1 when fd is an open directory of this process's descriptors (one readlink, only for a
 * number that an open of a path ending in "fd" gave).
 * sh_fdlist_mark/_marked/_unmark: the DIR streams whose readdir filters (fdopendir marks,
 * closedir unmarks; up to 16 at once, more are listed unfiltered). sh_fdlist_filter: getdents64
 * records in buf compacted in place without the hidden ones; returns the new length. */
struct __dirstream;
int sh_fdlist_hidden(const char *name);
void sh_fdlist_opened(long fd, const char *path);
int sh_fdlist_is_own(int fd);
void sh_fdlist_mark(struct __dirstream *d);
int sh_fdlist_marked(struct __dirstream *d);
void sh_fdlist_unmark(struct __dirstream *d);
size_t sh_fdlist_filter(void *buf, size_t len);
const char *sh_sysname(long nr);
int sh_trap_involves_prot(long nr, const long a[6]);
/* Open volume i if this process has not yet (at the first use of its mount): 0 or -errno. */
long sh_volume_ready(int i);
int sh_unmap_hook(void *addr, size_t len, int unmap);
static inline int sh_reserved(long fd) { return fd >= sh.lo && fd < sh.hi; }
/* A vfork or posix_spawn child (or a raw clone sharing our memory): the same memory as the
 * process that set the shield up, another pid (atfork handlers do not run for it). */
static inline int sh_in_vfork_child(void) { return (pid_t)syscall(SYS_getpid) != sh.pid; }
long sh_syscall(long nr, const long a[6]);
int sh_init_state(scp_err *err);
void sh_trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* openssl_lazy.c: OpenSSL is loaded at the first call of one of its functions. From the
 * constructor of an image with volumes: if the program links libcrypto, initialise it now (its
 * exit cleanup then runs after the shield's destructor); commit_at_exit is what the shield
 * registers with atexit if the program initialised OpenSSL itself before the shield's first
 * use (see openssl_lazy.c). */
void sh_openssl_early(void (*commit_at_exit)(void));
/* One line "scp-shield: ..." on stderr, always (a refusal the operator must see). */
void sh_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Write head, the formatted message and a newline to fd in one write through the gate (a line
 * is cut at PATH_MAX + 256 bytes), or as one sealed record when fd is a sealed console stream.
 * Async-signal-safe as far as vsnprintf and the console's re-entry guard are. */
void sh_vlog_line(int fd, const char *head, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));
/* Path-based entry points. Both copy the call's paths once; every look-up, the emulation and
 * the kernel read that copy, so what the shield classifies is what the kernel acts on.
 * sh_path_call returns 1 and sets *ret when the path is protected (or an error), else 0 (the
 * caller must not hand the program's pointer to the kernel itself when another thread may
 * change the string: sh_path_syscall is for that). sh_path_syscall serves the call or lets the
 * kernel carry it out (through the gate) on the copy: the result or -errno; with trusted, an
 * openat that the kernel carried out gets the trusted-file check (trusted.c). */
int sh_path_call(long nr, const long a[6], long *ret);
long sh_path_syscall(long nr, const long a[6], int trusted);
long sh_open_path(int dirfd, const char *path, int flags, mode_t mode, int *handled);
int sh_commit_all(void);
/* Volume v (NULL: every open volume) to shared mode with nothing this process wrote left
 * uncommitted or writer-locked: shared, commit everything, shared again (holding.c). Not in the
 * library (sh_in_lib is taken inside); used at a fork, at the end of a private or sole
 * holding, and when a program joins another on its volume. */
void sh_go_shared(scp_volume *v);
/* The statx the kernel would give for st (STATX_BASIC_STATS), its device st's: a protected
 * file's (fileops.c) and an injected file's (injected.c). (It was given apart, 0x5c:0x500+i,
 * which stat's major 0x5c5 did not match.) */
struct statx;
void sh_statx_from_stat(const struct stat *st, struct statx *sx);
/* Before another process may come to hold this one's protected descriptions (fork, vfork,
 * posix_spawn): volumes to shared mode, offsets into the shared region. for_child: a fork, whose
 * child holds a reference of its own to each description. */
void sh_fork_share(int for_child);
/* A fork's parent handler: lets go of the holdings' mutex that sh_fork_share(1) took (the
 * child's handler makes it anew: sh_fork_child_guards). */
void sh_priv_fork_done(void);
/* In a fork's child, under sh.mu: every description's own lock starts over (a parent thread
 * that held one does not exist here). */
void sh_fork_child_guards(void);
/* Hold late volume opens off (on: 1) or let them go on (0) (volopen.c); nothing when this thread
 * is inside an open itself (a signal handler's spawn) */
void sh_vol_open_hold(int on);
/* volopen.c, for init.c. The supervisor's tag socket (and --tag-sync page) from the
 * environment: NULL, or what is wrong with them (the program must not run). */
const char *sh_vol_tag_init(void);
/* SCP_SHIELD_F_OPEN_CHECK: open the volumes the launcher left to this image, before main;
 * one that fails ends the process with the launcher's line and exit status. */
void sh_vol_open_check(void);
/* A fork's prepare (step 2 of init.c's order): no volume half-opened, the checked volumes
 * nobody took closed; sh_vol_fork_done in the parent and the child after it. */
void sh_vol_fork_prepare(void);
void sh_vol_fork_done(void);
/* Before an exec: close the checked volumes nobody took (the next image opens at first use). */
void sh_vol_exec_drop(void);
/* Private volumes (holding.c): publish v as volume i, private with its watcher thread (shared
 * if no thread can be started; v holds the private lock, scp_volume_go_private); take volume i
 * (all private ones when i < 0) from private to shared: commit what this process wrote, release
 * the private lock (scp_volume_private_end). */
void sh_priv_begin(int i, scp_volume *v);
/* Volumes opened private from a trap handler, where no thread can be started, or before this
 * image's filter is installed (sh_filter_up), where none may be: their watchers start at this
 * process's next shield call outside one (sh_priv_poll: one load on the hot path, pf_get and
 * sh_volume_ready; sh_ctor calls it right after the filter); meanwhile a trapped call that
 * finds the volume wanted shared makes the move itself. */
extern int sh_priv_npending;
/* This image's seccomp filter is installed (init.c, the last step of sh_ctor). The shield makes
 * no thread before it (asserted in holding.c, priv_watch_start). glibc's pthread_create blocks
 * every signal around the clone, and the new thread runs rseq and set_robust_list and then
 * sets its own mask with an rt_sigprocmask from libc, a call the filter traps (a set that might
 * block SIGSYS). A thread cloned before the filter went in (TSYNC): if that call comes after
 * the filter, it traps with SIGSYS blocked and the kernel kills the process (perf: the
 * thread's sys_exit of rt_sigprocmask with its number as the result, no sys_enter, which a
 * seccomp trap skips, then SIGSYS delivered to SIG_DFL; bench/RESULTS.md, alt16); if it comes
 * before, the thread keeps SIGSYS blocked (the shield's watcher asks for every signal blocked)
 * and dies at its first trapped call later. After the filter, the creating thread's block-all
 * traps too and the handler leaves SIGSYS out of it (init.c, trap_sigprocmask), and so does
 * the new thread's own call. A thread made by another library's constructor before the
 * shield's is not covered (docs/shield.md). */
extern int sh_filter_up;
/* fn(arg) on this thread's shield stack (init.c: 256 KiB, mapped at first use), where the SIGSYS
 * handler serves traps: the interposed functions run their served work there, since a path
 * call takes ~40 KiB of frames with the volume library and OpenSSL below them and a thread may
 * have been made with PTHREAD_STACK_MIN (16 KiB). Runs fn on the current stack when already on
 * the shield's, when the shield's is in use by an interrupted call of this thread, or when no
 * stack can be mapped. Returns fn's result. */
long sh_on_stack(long (*fn)(void *), void *arg);
/* This thread's shield scratch: SH_SCRATCH_SIZE bytes above its shield stack (mapped now if need
 * be; NULL when it cannot be), for per-thread data too large for TLS. A vfork child shares it
 * with its suspended parent, as it shares TLS. */
#define SH_SCRATCH_SIZE 8192u
char *sh_scratch(void);
void sh_priv_pending_run(void);
/* Back to the sole holding (docs/shield.md, "Back to the sole holding"): set once a volume of
 * this process went shared (sh_go_shared, a join beside another program); from then on each
 * served call (sh_syscall, before it enters the library) reads a coarse clock, and every
 * RESOLE_EVERY_NS one call outside a trap asks each
 * shared volume whether nobody else has it open any more (sh_resole_poll, volopen.c: a
 * scp_volume_try_sole, whose first test is one F_OFD_GETLK), and if so makes this process its
 * holder again with a watcher (sh_priv_resole, holding.c). */
extern int sh_resole_on;
void sh_resole_poll(void);
void sh_priv_resole(int i);
static inline void sh_priv_poll(void) {
    if (__builtin_expect(__atomic_load_n(&sh_priv_npending, __ATOMIC_RELAXED) != 0, 0)) sh_priv_pending_run();
}
void sh_priv_end(int i);
void sh_priv_exit(void);
/* Before a set*id or setgroups call (creds.c), which glibc makes in every thread of the process
 * and aborts (setxid_error) when the threads' results differ: the shield's own threads lack
 * per-thread state the caller may have set (PR_SET_KEEPCAPS, securebits, capabilities), so
 * after `setresuid` a watcher's `setresgid` failed with EPERM where the caller's succeeded
 * (setpriv). So none of them lives across the call: the private holdings end (shared until
 * alone again, when a watcher starts in the new credentials) and their watchers and the
 * crypto workers are joined (holding.c). Not from a vfork child, a trap or the library. */
void sh_threads_before_setxid(void);
/* Volume i was opened from a trap handler outside a shared family (sole_pending, counted in
 * sh_priv_npending): outside one now, make this process its sole holder if it still has not
 * forked and nobody else has the volume open (volopen.c). Never waits: a fork or another open in
 * progress (vol_open_mu held) leaves it pending for the next call. */
void sh_sole_try(int i);
/* At exit (the destructor, atexit, _exit): stop private moves, flush stdio when flush_stdio
 * (glibc flushes it only after the destructors), commit every open protected file (the kernel
 * keeps what was written to an unclosed file; the volume library holds it until a commit).
 * 1 when it committed; 0 when it may not here (shield inactive, inside the shield, or not the
 * process that set the shield up). */
int sh_exit_commit(int flush_stdio);
/* At exit: this image's references to shared descriptions go back (cursors become private). */
void sh_ofd_release_all(void);
long sh_execve(int dirfd, const char *path, char *const argv[], char *const envp[], int flags);
/* path.c: the program's working directory. sh_cwd_view fills out (PATH_MAX bytes) with the
 * program's view when it lies inside a mount and returns 1, else 0 (the kernel's cwd is the
 * program's). sh_cwd_set records a new view (NULL: the kernel's cwd): 0 or -errno; in a vfork
 * or posix_spawn child the child's own, kept in its parent thread's TLS, which
 * sh_vfork_cwd_reset (the parent, before each vfork or spawn) clears. */
int sh_cwd_view(char *out);
long sh_cwd_set(const char *view);
/* fchdir to the ordinary (not protected) directory fd, through the gate: on success the
 * program has left the volumes, and its view of the working directory goes. 0 or -errno. */
long sh_fchdir_out(long fd);
void sh_vfork_cwd_reset(void);
/* exec_script.c: an exec of a path under a mount, which the kernel cannot run: a link out of
 * the volumes execs its target, a script ("#!") its interpreter with the script's path, an ELF
 * image runs from a sealed copy; another format ENOEXEC. Returns only on failure (-errno). */
long sh_exec_in_volume(int dirfd, const char *path, char *const argv[], char *const envp[], int flags);
/* From a vfork or posix_spawn child: /bin/sh execs (dirfd, path) again as a process of its own,
 * which can open what the exec needs from the volumes. Returns only on failure (-errno). */
long sh_exec_through_shell(int dirfd, const char *path, char *const argv[], char *const envp[]);
/* init.c: the exec of a sealed copy of a program stored in a volume (fd), whose directory there
 * (its $ORIGIN) is origin; and the exec of /bin/sh as sh_exec_through_shell's trampoline (no
 * library from the volumes looked for: it needs none, and that look-up brought it here). */
long sh_execve_image(int fd, char *const argv[], char *const envp[], const char *origin);
long sh_execve_shell(char *const argv[], char *const envp[]);
/* libs.c: sealed copies of a volume's files, and shared libraries stored in a volume.
 * sh_sealed_copy: the bytes of the file open at fd (a volume's file, read through the shield)
 * in a new memfd, sealed against any change (what runs is what the volume authenticated);
 * named after path's last component; cloexec: MFD_CLOEXEC. The memfd, or -errno. */
long sh_sealed_copy(long fd, const char *path, int cloexec);
/* The volume's file (vol, rel) opened for reading through the shield's own open (read
 * permission as the caller's): a descriptor for sh_volume_file_close, or -errno. */
long sh_volume_file_open(int vol, const char *rel);
void sh_volume_file_close(long fd);
/* The libraries from the volumes that the image (dirfd, path, flags, as execveat's) will need:
 * looked for when it is a copy of a program in a volume (origin: its directory there) or when
 * envp's LD_LIBRARY_PATH names a directory inside a volume. Their sealed copies, open without
 * close-on-exec, go into fds[0, max) for LD_PRELOAD as /proc/self/fd/N: their count (0: none),
 * -EAGAIN in a vfork child that found some or cannot tell (sh_exec_through_shell), or -errno. */
long sh_libs_exec(int dirfd, const char *path, int flags, const char *origin, char *const envp[], int *fds, int max);
#define SH_LIBS_MAX 64
/* At an image's start: the copies its exec preloaded (SCP_SHIELD_ENV_LIBS) are read
 * (sh_libs_start), left out of the program's LD_PRELOAD (sh_libs_is_preloaded: the entry
 * s[0, len) is one of them) and their descriptors closed (sh_libs_close_preloaded). */
void sh_libs_start(void);
int sh_libs_is_preloaded(const char *s, size_t len);
void sh_libs_close_preloaded(void);
/* libc's dlopen, past the shield's (the shield's own loads: OpenSSL) */
void *sh_libc_dlopen(const char *file, int mode);
int sh_classify(int dirfd, const char *path, int *vol, char *rel, size_t relsz);
long sh_copy_path_in(const char *p, char *buf, size_t n);
long sh_chdir(const char *path, int *handled);
/* creds.c: the program's credentials against a volume's stored owner, group and mode */
long sh_cred_access(const scp_vstat *v, int want); /* want: 4 read, 2 write, 1 search/exec */
long sh_cred_open(const scp_vstat *v, int flags);
long sh_cred_access_real(const scp_vstat *v, int want);
void sh_cred_owner(scp_vstat *v);
long sh_cred_setattr(const scp_vstat *v, int64_t *mode, int64_t uid, int64_t gid);
long sh_cred_search(int vol, const char *rel);
long sh_cred_utimes(const scp_vstat *v, int explicit_times);
long sh_cred_parent(int vol, const char *rel, int want);
long sh_cred_link(const scp_vstat *v); /* may the caller give v another name (hard link) */
long sh_cred_sticky(int vol, const char *rel); /* may the caller remove name rel (sticky dir) */
int sh_cred_root(void); /* the effective uid is 0 */
/* The mode v keeps after a write by the caller, as the kernel's file_remove_privs: without
 * CAP_FSETID (here: not root) S_ISUID goes, and S_ISGID if group execute is set or the caller
 * is not in the file's group. */
uint32_t sh_cred_after_write(const scp_vstat *v);
/* unixsock.c: AF_UNIX addresses that name a path in a protected volume (a socket node there,
 * the kernel socket in the volume's rendezvous directory). Each sets *handled when the
 * address was the shield's to serve (the result, 0 or -errno, is then the call's). */
struct sockaddr;
struct msghdr; /* lengths: socklen_t (unsigned int; <sys/socket.h> is not included here) */
long sh_unix_bind(int fd, const struct sockaddr *sa, unsigned len, int *handled);
long sh_unix_connect(int fd, const struct sockaddr *sa, unsigned len, int *handled);
long sh_unix_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa, unsigned len,
                    int *handled);
long sh_unix_sendmsg(int fd, const struct msghdr *m, int flags, int *handled);
/* A rendezvous address the kernel wrote at sa (cap: the caller's room) becomes the program's
 * path; only once sh_unix_named is set (this process bound or connected to such a name). */
extern int sh_unix_named;
void sh_unix_addr_out(struct sockaddr *sa, unsigned *len, unsigned cap);
/* unlink: the file number of the socket or FIFO node at rel when rel is its last name (else
 * 0), and the removal of its kernel socket or FIFO once the name is gone (a listener, or a
 * FIFO's open ends, are then unreachable by the name). */
uint64_t sh_rdv_last_name(int vol, const char *rel);
void sh_rdv_gone(int vol, uint64_t ino);
/* open of the FIFO node numbered ino (st_ino) in volume vol, with the program's flags (access
 * mode, O_NONBLOCK, O_CLOEXEC; the node's permission already checked): the kernel FIFO in the
 * volume's rendezvous directory, made at the first open. The descriptor, or -errno as the
 * kernel's open of a FIFO (ENXIO for a write-only O_NONBLOCK open without a reader; a
 * blocking open waits for the other side and may end with EINTR). */
long sh_fifo_open(int vol, uint64_t ino, int flags);
/* took[SCP_SHIELD_MAX_INHERIT], *ntook: references taken for the new image (sh_exec_failed
 * gives them back when the exec fails) */
int sh_exec_prepare(scp_shield_config *cfg, int *held, int maxheld, struct sh_ofd **took, int *ntook);
void sh_exec_failed(struct sh_ofd **took, int ntook);
void sh_exec_adopt(void);
/* (dirfd, path) as the program sees it, absolute and normalized: 1, 0 when it cannot be told,
 * or -errno (-EFAULT for a bad pointer). Inside a scope (enter/leave, nestable; a path call
 * opens one around its copy of the path) a second look-up of the same (dirfd, pointer) reuses
 * the first answer: no normalization again. */
int sh_abspath(int dirfd, const char *path, char *abs, size_t abssz);
void sh_abspath_scope_enter(void);
void sh_abspath_scope_leave(void);

/* Copy n bytes from/to the program's memory: 0, or -EFAULT (never a SIGSEGV in the shield). */
long sh_copy_in(void *dst, const void *src, size_t n);
long sh_copy_out(void *dst, const void *src, size_t n);

/* (path.c) Does the normalized absolute path name a descriptor link of this process
 * (/proc/self/fd/N, /dev/fd/N, /dev/stdout...)? 1 with *fd and *rest, 0 not, -1 another
 * process's reserved number. */
int sh_proc_fd_link(const char *abs, long *fd, const char **rest);

/* console.c: sealed stdin/stdout/stderr (policy `console`) */
/* openat/openat2 of /dev/stdout, /proc/self/fd/N... naming a console number: 1 and *ret (a new
 * console number, as the kernel's reopen of a pipe would give), else 0. */
int sh_console_open(long nr, const long a[6], long *ret);
/* guard non-NULL: the image's filter (being built) will guard the sealed streams' numbers,
 * which are added to *guard; NULL: each gets a per-number filter */
int sh_console_init(uint32_t *guard, scp_err *err);
/* fd is a program number of a sealed console stream */
int sh_console_fd(long fd);
/* Serve a call that involves a console number: 1 and *ret set; 0 to let the dispatcher go on. */
int sh_console_call(long nr, const long a[6], long *ret);
/* The host's descriptor of stream k (0 stdin, 1 stdout, 2 stderr) in the shield's own range. */
int sh_console_real(int k);
void sh_console_exit(void);
/* In a fork's prepare handlers: the console holds what a fork needs (console.c, "Fork") */
int sh_console_fork_ready(void);
/* A console memfd for the next image: -1 none, -2 error. */
int sh_console_exec_prepare(void);

/* injected.c: files served from memory (policy `files`) */
int sh_injected_load(scp_err *err);
/* Path-based call on an injected path: 1 and *ret set, else 0. */
int sh_injected_call(long nr, const long a[6], long *ret);
/* A sealed memfd with the injected files for an exec'ed image: -1 when there are none, -2 on error. */
int sh_injected_to_memfd(void);

/* trusted.c: trusted files (docs/runtime.md "Trusted files"); all do nothing without a manifest */
int sh_trusted_load(scp_err *err);
int sh_trusted_check_mapped(scp_err *err); /* the files this image was started from */
/* the loader's text, whose later mappings (dlopen) the shield filter traps; *lo = 0: none */
int sh_trusted_arm(uintptr_t *lo, uintptr_t *hi, scp_err *err);
/* 0, or -EACCES (logged) when the file open at fd, opened by path (from dirfd) with flags, is
 * listed and changed */
long sh_trusted_check_open(int fd, int dirfd, const char *path, long flags);
/* 0, or -EACCES (logged) when the binary to execute is unlisted or changed */
long sh_trusted_exec_check(int dirfd, const char *path, int flags);
/* The exec or load (what: "exec", "dlopen", ...) of a file that no manifest can list (one
 * inside a protected volume, path as the program named it): -EACCES, logged, when a
 * trusted-file manifest is enforced; else 0. */
long sh_trusted_unlisted(const char *what, const char *path);
/* mmap of a descriptor (only PROT_EXEC ones when exec_only): 1 with *ret set when handled */
int sh_trusted_mmap(const long a[6], int exec_only, long *ret);
/* The manifest in a sealed memfd for an exec'ed image: -1 when there is none, -2 on error. */
int sh_trusted_to_memfd(void);
void sh_trusted_timing(void);

#endif
