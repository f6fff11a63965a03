/* runtime/container.c - namespaces, file system, init and privileges of `scpctl run`'s
 * container (see container.h and docs/runtime.md). */
#include "runtime/container.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "runtime/userns.h"

/* ---- capabilities ------------------------------------------------------------------------ */

static const char *const cap_names[] = {
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
    "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
    "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
    "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
    "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
    "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
};
#define NCAPS ((int)(sizeof cap_names / sizeof cap_names[0]))

int scp_container_cap_from_name(const char *name) {
    if (!strncasecmp(name, "cap_", 4)) name += 4;
    for (int i = 0; i < NCAPS; i++)
        if (!strcasecmp(name, cap_names[i])) return i;
    return -1;
}

static int last_cap(void) {
    char buf[16] = {0};
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NCAPS - 1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    char *end;
    long last = n > 0 ? strtol(buf, &end, 10) : -1;
    return last >= 0 && last <= 63 && end != buf ? (int)last : NCAPS - 1;
}

/* ---- namespaces -------------------------------------------------------------------------- */

static int prepared;
/* Set once scp_container_start made the pid namespace: this process's next children land in it */
static int pidns_made;

/* The pid namespace is not among these: it is created in scp_container_start right before the
 * init's fork. After unshare(CLONE_NEWPID) every next child of this process lands in the new
 * namespace, not only the init: LeakSanitizer's exit-time tracer did (an ASan build's scpctl
 * that failed between prepare and start, e.g. on a wrong key, hung in its exit: the tracer saw
 * no parent, getppid() 0 across the namespace border, and left without telling it), and so would
 * any helper forked in between, which as the namespace's pid 1 would end it when it exits. */
int scp_container_prepare(const struct scp_container_opts *c, scp_err *err) {
    assert(c && c->enabled);
    if (prepared) return 0;
    int flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | (c->net_none ? CLONE_NEWNET : 0);
    if (unshare(flags)) {
        if (errno != EPERM)
            return scp_fail_errno(err, "cannot create the container's namespaces");
        uid_t uid = getuid();
        gid_t gid = getgid();
        if (unshare(CLONE_NEWUSER | flags))
            return scp_fail_errno(err, "cannot create the container's namespaces, neither as root nor "
                                       "in a user namespace (are unprivileged user namespaces "
                                       "disabled? see sysctl user.max_user_namespaces)");
        if (scp_userns_map_self(uid, gid, err)) return -1;
    }
    prepared = 1;
    return 0;
}

int scp_container_enter_userns(scp_err *err) {
    static int entered;
    if (entered || geteuid() == 0) return 0;
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWUSER))
        return scp_fail_errno(err, "cannot create a user namespace for the container (are unprivileged user "
                                   "namespaces disabled? see sysctl user.max_user_namespaces)");
    if (scp_userns_map_self(uid, gid, err)) return -1;
    entered = 1;
    return 0;
}

/* ---- file system ------------------------------------------------------------------------- */

static int mkdir_in(const char *root, const char *rel, mode_t mode, char *out, size_t n, scp_err *err) {
    if (snprintf(out, n, "%s%s", root, rel) >= (int)n)
        return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "path too long: %s%s", root, rel);
    if (mkdir(out, mode) && errno != EEXIST)
        return scp_fail_errno(err, "cannot create %s (the rootfs must have it, or be writable)", out);
    return 0;
}

/* The flags that a remount of a bind mount must keep (a user namespace may not clear them). */
static unsigned long locked_flags(const char *path) {
    struct statvfs sv;
    unsigned long f = 0;
    if (statvfs(path, &sv)) return 0;
    if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
    return f;
}

/* Bind the file behind descriptor fd onto a new empty file at path. */
static int bind_fd(int fd, const char *path, int ro, scp_err *err) {
    char src[32];
    snprintf(src, sizeof src, "/proc/self/fd/%d", fd);
    int t = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (t < 0) return scp_fail_errno(err, "cannot create %s", path);
    close(t);
    if (mount(src, path, NULL, MS_BIND, NULL)) return scp_fail_errno(err, "cannot bind-mount %s", path);
    if (ro && mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | locked_flags(path), NULL))
        return scp_fail_errno(err, "cannot make %s read-only", path);
    return 0;
}

static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
#define NDEV (sizeof dev_nodes / sizeof dev_nodes[0])

/* Descriptors opened on the host before anything is mounted over it. */
struct host_fds {
    int dev[NDEV];
    int shield;
};

static int mount_fs(const char *root, const char *rel, const char *type, unsigned long fl, const char *data,
                    scp_err *err) {
    char p[PATH_MAX];
    if (mkdir_in(root, rel, 0755, p, sizeof p, err)) return -1;
    if (mount(type, p, type, fl, data)) return scp_fail_errno(err, "cannot mount %s on %s", type, p);
    return 0;
}

/* /proc, /dev and /tmp under root ("" for the host's root). */
static int build_fs(const char *root, const struct host_fds *h, scp_err *err) {
    char p[PATH_MAX];
    const unsigned long base = MS_NOSUID | MS_NODEV;
    if (mount_fs(root, "/proc", "proc", base | MS_NOEXEC, NULL, err)) return -1;
    if (mount_fs(root, "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k", err)) return -1;
    for (size_t i = 0; i < NDEV; i++) {
        snprintf(p, sizeof p, "%s/dev/%s", root, dev_nodes[i]);
        if (bind_fd(h->dev[i], p, 0, err)) return -1;
    }
    if (mount_fs(root, "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620", err))
        return -1;
    if (mount_fs(root, "/dev/shm", "tmpfs", base | MS_NOEXEC, "mode=1777", err)) return -1;
    static const char *const links[][2] = {{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"},
                                          {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
                                          {"/proc/self/fd/2", "stderr"}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        snprintf(p, sizeof p, "%s/dev/%s", root, links[i][1]);
        if (symlink(links[i][0], p)) return scp_fail_errno(err, "cannot create %s", p);
    }
    if (h->shield >= 0) {
        if (mkdir_in(root, "/dev/.scp", 0755, p, sizeof p, err)) return -1;
        snprintf(p, sizeof p, "%s%s", root, SCP_CONTAINER_SHIELD_PATH);
        if (bind_fd(h->shield, p, 1, err)) return -1;
    }
    if (mount_fs(root, "/tmp", "tmpfs", base, "mode=1777", err)) return -1;
    return 0;
}

/* Make root the container's "/" (it is already a mount point: bound onto itself). */
static int enter_root(const char *root, scp_err *err) {
    if (chdir(root)) return scp_fail_errno(err, "cannot enter %s", root);
    /* pivot_root(".", "."): the old root ends up on top of the new one, then is detached */
    if (syscall(SYS_pivot_root, ".", "."))
        return scp_fail_errno(err, "cannot pivot_root into %s", root);
    if (mount(NULL, ".", NULL, MS_REC | MS_SLAVE, NULL) || umount2(".", MNT_DETACH))
        return scp_fail_errno(err, "cannot detach the host's root");
    if (chdir("/")) return scp_fail_errno(err, "chdir /");
    return 0;
}

static int setup_fs(const struct scp_container_opts *c, const struct host_fds *h, scp_err *err) {
    /* nothing mounted here propagates to the host, nothing from the host comes in later */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
        return scp_fail_errno(err, "cannot make the mount namespace private");
    if (!c->rootfs) return build_fs("", h, err);
    if (mount(c->rootfs, c->rootfs, NULL, MS_BIND | MS_REC, NULL))
        return scp_fail_errno(err, "cannot bind-mount the rootfs %s", c->rootfs);
    if (build_fs(c->rootfs, h, err)) return -1;
    return enter_root(c->rootfs, err);
}

static int lo_up(scp_err *err) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return scp_fail_errno(err, "cannot open a socket to set up lo");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int r = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (!r) {
        ifr.ifr_flags |= IFF_UP;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    close(s);
    return r ? scp_fail_errno(err, "cannot bring lo up") : 0;
}

/* ---- processes --------------------------------------------------------------------------- */

static const int fwd_sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};


/* A process of the namespace that carries a shielded TLS connection for the program (the
 * network shield's relay, src/shield/net_relay.c) still runs: it holds what the program wrote
 * last and the close_notify, which killing it would lose. */
static int relay_left(void) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        char p[300], comm[32] = "";
        snprintf(p, sizeof p, "/proc/%s/comm", e->d_name);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, comm, sizeof comm - 1);
        close(fd);
        found = n > 0 && !strncmp(comm, "scp-net-relay\n", 14);
    }
    closedir(d);
    return found;
}

/* Before the namespace ends: relays get up to 10 s to pass on what they hold (they end when
 * their connections do, and every holder of the program's side is gone by now). */
static void wait_relays(void) {
    for (int i = 0; i < 500 && relay_left(); i++) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Wait for child; forward the signals to it; exit with its status. `init`: also reap every
 * other process and, when child ends, kill what is left of the pid namespace. */
__attribute__((noreturn)) static void supervise(pid_t child, const sigset_t *set, int init) {
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(set, &si);
        if (sig < 0) continue;
        if (sig != SIGCHLD) {
            kill(child, sig);
            continue;
        }
        int st;
        pid_t p;
        while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
            if (p != child) continue;
            int code = scp_exit_code(st, "scpctl run");
            /* like docker: the container ends with its program. Only ever as pid 1 of a
             * pid namespace: anywhere else kill(-1) would reach every process of the host. */
            if (init && getpid() == 1) {
                wait_relays();
                kill(-1, SIGKILL);
                while (waitpid(-1, NULL, 0) > 0) {}
            }
            fflush(NULL);
            _exit(code);
        }
    }
}

int scp_container_children_moved(void) { return pidns_made; }

int scp_container_start(const struct scp_container_opts *c, const char *shield_lib, char *shield_in,
                        size_t shield_in_len, void (*wipe)(void *ctx), void *ctx, scp_err *err) {
    assert(c && c->enabled && prepared);
    struct host_fds h;
    int rc = -1;
    h.shield = -1;
    for (size_t i = 0; i < NDEV; i++) h.dev[i] = -1;
    for (size_t i = 0; i < NDEV; i++) {
        char p[32];
        snprintf(p, sizeof p, "/dev/%s", dev_nodes[i]);
        h.dev[i] = open(p, O_PATH | O_CLOEXEC);
        if (h.dev[i] < 0) {
            scp_fail_errno(err, "cannot open the host's %s", p);
            goto out;
        }
    }
    if (c->rootfs) {
        struct stat st;
        if (c->rootfs[0] != '/' || stat(c->rootfs, &st) || !S_ISDIR(st.st_mode)) {
            scp_fail(err, SCP_E_NOENT, ENOENT, "rootfs %s is not a directory (an absolute path)", c->rootfs);
            goto out;
        }
    }
    /* The shield library is bound at a fixed path inside the container, with or without a
     * rootfs: the host's copy may sit under a path the container hides (its private /tmp). */
    if (shield_lib) {
        h.shield = open(shield_lib, O_PATH | O_CLOEXEC);
        if (h.shield < 0) {
            scp_fail_errno(err, "cannot open %s", shield_lib);
            goto out;
        }
        if (snprintf(shield_in, shield_in_len, "%s", SCP_CONTAINER_SHIELD_PATH) >= (int)shield_in_len) {
            scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "path too long");
            goto out;
        }
    }

    sigset_t set, old;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof fwd_sigs / sizeof fwd_sigs[0]; i++) sigaddset(&set, fwd_sigs[i]);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &old);

    /* the pid namespace (see scp_container_prepare): this fork's child is its pid 1. Only the
     * relay stays behind with its children's namespace changed, and it forks nothing more. */
    if (unshare(CLONE_NEWPID)) {
        scp_fail_errno(err, "cannot create the container's pid namespace");
        goto restore;
    }
    pidns_made = 1;
    fflush(NULL);
    pid_t init = fork();
    if (init < 0) {
        scp_fail_errno(err, "cannot start the container");
        goto restore;
    }
    if (init > 0) { /* the relay on the host */
        wipe(ctx);
        supervise(init, &set, 0);
    }
    /* the container's pid 1 */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (setup_fs(c, &h, err)) goto restore;
    const char *hn = c->hostname && *c->hostname ? c->hostname : "scp";
    if (sethostname(hn, strlen(hn))) {
        scp_fail_errno(err, "cannot set the hostname %s", hn);
        goto restore;
    }
    if (c->net_none && lo_up(err)) goto restore;
    fflush(NULL);
    pid_t prog = fork();
    if (prog < 0) {
        scp_fail_errno(err, "cannot start the program's process");
        goto restore;
    }
    if (prog > 0) {
        wipe(ctx);
        for (size_t i = 0; i < NDEV; i++) close(h.dev[i]);
        if (h.shield >= 0) close(h.shield);
        supervise(prog, &set, 1);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    rc = 0;
restore:
    sigprocmask(SIG_SETMASK, &old, NULL);
out:
    for (size_t i = 0; i < NDEV; i++)
        if (h.dev[i] >= 0) close(h.dev[i]);
    if (h.shield >= 0) close(h.shield);
    return rc;
}

/* ---- privileges -------------------------------------------------------------------------- */

static int deny_tracing(scp_err *err) {
#if defined(__x86_64__)
#define SCP_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SCP_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SCP_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        /* x32 system calls have numbers of their own: refuse them all */
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ptrace, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_writev, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
    };
    struct sock_fprog prog = {.len = (unsigned short)(sizeof f / sizeof f[0]), .filter = f};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
        return scp_fail_errno(err, "cannot install the container's seccomp filter");
    return 0;
}

int scp_container_seal(const struct scp_container_opts *c, int shield_denies_tracing, scp_err *err) {
    assert(c && c->enabled);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return scp_fail_errno(err, "cannot set no_new_privs");
    int last = last_cap();
    for (int i = 0; i <= last; i++)
        if (!(c->keep_caps >> i & 1) && prctl(PR_CAPBSET_DROP, i, 0, 0, 0) && errno != EINVAL)
            return scp_fail_errno(err, "cannot drop capability %d from the bounding set", i);
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capget, &hdr, d)) return scp_fail_errno(err, "capget");
    for (int w = 0; w < 2; w++) {
        uint32_t keep = (uint32_t)(c->keep_caps >> (32 * w));
        uint32_t have = d[w].permitted;
        if (keep & ~have) return scp_fail(err, SCP_E_INVAL, EPERM, "--cap: this process does not hold the "
                                                                     "capabilities to keep");
        d[w].effective = d[w].permitted = d[w].inheritable = keep;
    }
    if (syscall(SYS_capset, &hdr, d)) return scp_fail_errno(err, "cannot drop capabilities");
    /* kept capabilities survive exec for an unprivileged uid only as ambient ones */
    for (int i = 0; i <= last; i++)
        if (c->keep_caps >> i & 1 && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, i, 0, 0))
            return scp_fail_errno(err, "cannot keep capability %s", i < NCAPS ? cap_names[i] : "?");
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    return shield_denies_tracing ? 0 : deny_tracing(err);
}
