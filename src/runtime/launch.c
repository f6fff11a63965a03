/* runtime/launch.c - scpctl run: start a program under the shield. */
#include "runtime/launch.h"

#include <assert.h>
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "runtime/notify.h"
#include "runtime/userns.h"
#include "scp/volume.h"

static int mkdir_p(const char *path) {
    char buf[PATH_MAX];
    if (strlen(path) >= sizeof buf) return -1;
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST) return -1;
    return 0;
}

/* ---- mount points that do not exist on the host ---------------------------------------------
 * Without the right to create a mount point (an ordinary user and /pgdata), the nearest
 * existing ancestor is covered, inside the private mount namespace only, by a tmpfs that
 * recreates what was visible there: each entry of the ancestor appears again (directories,
 * files and devices as recursive bind mounts of the originals, symbolic links as copies), and
 * the missing components are created in that tmpfs. Once every mount point exists the cover
 * becomes read-only, so a new name created directly in a covered directory fails with EROFS
 * (never lands in memory and vanishes). Nothing changes on the host. Covering "/" also means
 * entering the cover as the root (chroot into it; the working directory is entered again by
 * its path). */
struct covers {
    int fd[SCP_SHIELD_MAX_VOLUMES];
    unsigned n;
};

static int bind_entry(int old, const char *name, const struct stat *st, int mnt, scp_err *err) {
    if (S_ISLNK(st->st_mode)) {
        char target[PATH_MAX];
        ssize_t l = readlinkat(old, name, target, sizeof target - 1);
        if (l < 0) return scp_fail_errno(err, "cannot read the symbolic link %s", name);
        target[l] = 0;
        return symlinkat(target, mnt, name) ? scp_fail_errno(err, "cannot copy the symbolic link %s", name) : 0;
    }
    /* the bind mount needs something of the same kind to land on */
    int made;
    if (S_ISDIR(st->st_mode)) {
        made = mkdirat(mnt, name, st->st_mode & 07777);
    } else {
        int fd = openat(mnt, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
        made = fd < 0 ? -1 : close(fd);
    }
    if (made) return scp_fail_errno(err, "cannot recreate %s", name);
    int tree = (int)syscall(SYS_open_tree, old, name, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW);
    if (tree < 0) return scp_fail_errno(err, "cannot bind %s", name);
    int rc = (int)syscall(SYS_move_mount, tree, "", mnt, name, MOVE_MOUNT_F_EMPTY_PATH);
    close(tree);
    return rc ? scp_fail_errno(err, "cannot bind %s", name) : 0;
}

/* Fill the new tmpfs `mnt` with what directory `old` shows. */
static int recreate_entries(int old, int mnt, scp_err *err) {
    int dfd = openat(old, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
    if (!d) {
        if (dfd >= 0) close(dfd);
        return scp_fail_errno(err, "cannot list the directory to cover");
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (errno = 0, de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        struct stat st;
        if (fstatat(old, de->d_name, &st, AT_SYMLINK_NOFOLLOW))
            rc = scp_fail_errno(err, "cannot stat %s", de->d_name);
        else
            rc = bind_entry(old, de->d_name, &st, mnt, err);
    }
    if (rc == 0 && errno) rc = scp_fail_errno(err, "cannot list the directory to cover");
    closedir(d);
    return rc;
}

static int cover_dir(const char *dir, struct covers *cv, scp_err *err) {
    if (cv->n == SCP_SHIELD_MAX_VOLUMES) return scp_fail(err, SCP_E_INVAL, EINVAL, "too many covered directories");
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return scp_fail_errno(err, "cannot read the working directory");
    int old = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (old < 0 || fstat(old, &st)) {
        if (old >= 0) close(old);
        return scp_fail_errno(err, "cannot open %s", dir);
    }
    char mode[16];
    snprintf(mode, sizeof mode, "%o", (unsigned)(st.st_mode & 07777));
    int fs = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC), mnt = -1, rc = -1;
    if (fs >= 0 && !syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "mode", mode, 0) &&
        !syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "size", "1m", 0) &&
        !syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0))
        mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    if (mnt < 0) {
        scp_fail_errno(err, "cannot create a tmpfs to cover %s", dir);
    } else if (recreate_entries(old, mnt, err) == 0) {
        if (syscall(SYS_move_mount, mnt, "", AT_FDCWD, dir, MOVE_MOUNT_F_EMPTY_PATH))
            scp_fail_errno(err, "cannot cover %s", dir);
        else if (strcmp(dir, "/") == 0 && (fchdir(mnt) || chroot(".")))
            scp_fail_errno(err, "cannot enter the cover of /");
        else if (chdir(cwd))
            scp_fail_errno(err, "cannot enter the working directory %s again", cwd);
        else
            rc = 0;
    }
    if (fs >= 0) close(fs);
    close(old);
    if (rc) {
        if (mnt >= 0) close(mnt);
        return -1;
    }
    cv->fd[cv->n++] = mnt;
    return 0;
}

/* Create mount point `mp`: on the host if this process may, else under a cover (above). */
static int make_mount_point(const char *mp, struct covers *cv, scp_err *err) {
    if (mkdir_p(mp) == 0) return 0;
    if (errno != EACCES && errno != EPERM && errno != EROFS)
        return scp_fail_errno(err, "cannot create mount point %s", mp);
    char anc[PATH_MAX];
    snprintf(anc, sizeof anc, "%s", mp);
    struct stat st;
    while (stat(anc, &st)) {
        if (errno != ENOENT) return scp_fail_errno(err, "cannot create mount point %s", mp);
        char *slash = strrchr(anc, '/');
        assert(slash); /* mount points are absolute (config.c), and "/" exists */
        slash[slash == anc] = 0;
    }
    if (!S_ISDIR(st.st_mode)) return scp_fail(err, SCP_E_INVAL, ENOTDIR, "cannot create mount point %s: %s is not a directory", mp, anc);
    if (cover_dir(anc, cv, err)) return -1;
    return mkdir_p(mp) ? scp_fail_errno(err, "cannot create mount point %s in the cover of %s", mp, anc) : 0;
}

/* The covers become read-only once every mount point exists. */
static int seal_covers(struct covers *cv, scp_err *err) {
    struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
    int rc = 0;
    for (unsigned i = 0; i < cv->n; i++) {
        if (rc == 0 && syscall(SYS_mount_setattr, cv->fd[i], "", AT_EMPTY_PATH, &ro, sizeof ro))
            rc = scp_fail_errno(err, "cannot make a mount point's cover read-only");
        close(cv->fd[i]);
    }
    cv->n = 0;
    return rc;
}

/* A private mount namespace: as root directly, otherwise inside a user namespace that maps
 * the caller's own uid and gid (the program keeps its identity). Call it before reading keys:
 * writing the maps needs the process to be dumpable for a moment. */
static int isolated;

int scp_run_isolate(scp_err *err) {
    if (isolated) return 0;
    if (unshare(CLONE_NEWNS) == 0) goto ok;
    if (errno != EPERM) return scp_fail_errno(err, "cannot create a mount namespace");
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS))
        return scp_fail_errno(err, "cannot create a mount namespace (neither as root nor in a user "
                                   "namespace); the shield needs one to hide its mount points");
    if (scp_userns_map_self(uid, gid, err)) return -1;
ok:
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
        return scp_fail_errno(err, "cannot make the mount namespace private");
    isolated = 1;
    return 0;
}

static int find_shield(const char *given, char *out, size_t n, scp_err *err) {
    const char *env = getenv(SCP_SHIELD_ENV_LIB);
    if (given || env) {
        snprintf(out, n, "%s", given ? given : env);
    } else {
        char exe[PATH_MAX];
        ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (l <= 0) return scp_fail_errno(err, "cannot find this executable");
        exe[l] = 0;
        char *slash = strrchr(exe, '/');
        *slash = 0;
        if (snprintf(out, n, "%s/libscp-shield.so", exe) >= (int)n || access(out, R_OK))
            if (snprintf(out, n, "%s/../lib/scp/libscp-shield.so", exe) >= (int)n)
                return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "path too long");
    }
    if (access(out, R_OK))
        return scp_fail(err, SCP_E_NOENT, ENOENT,
                        "cannot find libscp-shield.so (looked at %s); set " SCP_SHIELD_ENV_LIB, out);
    char *real = realpath(out, NULL);
    if (!real) return scp_fail_errno(err, "cannot resolve %s", out);
    snprintf(out, n, "%s", real);
    free(real);
    return 0;
}

struct run_secrets {
    scp_shield_config *cfg;
    struct scp_run_opts *o;
};

/* The container's relay and init keep no key. */
static void wipe_secrets(void *ctx) {
    struct run_secrets *s = ctx;
    scp_wipe(s->cfg, sizeof *s->cfg);
    for (unsigned i = 0; i < s->o->nvol; i++) scp_wipe(s->o->vol[i].key, sizeof s->o->vol[i].key);
}

/* Become o->user (a secure image's USER) for the exec. The volume library opens the backing
 * store by name each time a file is opened, and that store was created 0700 for root: it is
 * handed to the user first (as the shield does for a program that drops privileges itself,
 * shield/creds.c). Run by another user already (docker run --user), nothing changes. */
static int become_user(const struct scp_run_opts *o, scp_err *err) {
    const struct scp_run_user *u = o->user;
    if (!u || geteuid() != 0 || u->uid == 0) return 0;
    for (unsigned i = 0; i < o->nvol; i++) {
        int d = open(o->vol[i].hostdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        long r = d < 0 ? -errno : scp_volume_store_chown(d, u->uid, u->gid, scp_volume_sys);
        if (r < 0) {
            errno = (int)-r;
            scp_fail_errno(err, "cannot hand volume %s to uid %u", o->vol[i].hostdir, (unsigned)u->uid);
            if (d >= 0) close(d);
            return -1;
        }
        close(d);
    }
    if (setgroups(u->ngroups, u->groups) < 0 || setresgid(u->gid, u->gid, u->gid) < 0 ||
        setresuid(u->uid, u->uid, u->uid) < 0)
        return scp_fail_errno(err, "cannot become uid %u gid %u", (unsigned)u->uid, (unsigned)u->gid);
    assert(geteuid() == u->uid && getuid() == u->uid);
    return 0;
}

int scp_run_find_shield(const char *given, char *out, size_t n, scp_err *err) {
    return find_shield(given, out, n, err);
}

/* The loader opens the libraries by name after measurement. In the container, a directory of
 * symbolic links, one per measured library under the name the program needs it by, each to
 * /proc/self/fd/N of the measured descriptor, is put first in its search (LD_LIBRARY_PATH): it
 * then opens the very files that were measured, whatever was put at their paths since. The
 * shield removes the variable and closes the descriptors before main (the links then lead
 * nowhere, and a later dlopen searches on). */
static int measured_lib_dir(const struct scp_run_opts *o, int first, scp_err *err) {
    if (mkdir(SCP_SHIELD_MEASURED_LIB_DIR, 0755) && errno != EEXIST)
        return scp_fail_errno(err, "cannot create %s", SCP_SHIELD_MEASURED_LIB_DIR);
    for (size_t i = 1; i < o->n_measured; i++) {
        const char *name = strrchr(o->measured_paths[i], '/');
        char link[PATH_MAX], target[64];
        name = name ? name + 1 : o->measured_paths[i];
        snprintf(target, sizeof target, "/proc/self/fd/%d", first + (int)i);
        if (!*name || snprintf(link, sizeof link, "%s/%s", SCP_SHIELD_MEASURED_LIB_DIR, name) >= (int)sizeof link) continue;
        if (symlink(target, link) && errno != EEXIST) return scp_fail_errno(err, "cannot create %s", link);
    }
    return setenv("LD_LIBRARY_PATH", SCP_SHIELD_MEASURED_LIB_DIR, 1) ? scp_fail_errno(err, "setenv") : 0;
}

/* The kernel opens the program's interpreter by its path (PT_INTERP) at exec, inside the
 * container. Right before exec, that path must still be the measured file (same device and
 * inode, same size and times): a loader put there since the measurement stops the run before it
 * could run. What remains is the moment between this check and the kernel's open (and a change
 * in place that restores the times, which only root can do); the shield checks the mapped
 * loader against the measured descriptor again at start (docs/runtime.md "What is measured"). */
static int measured_loader(const char *interp, int fd, scp_err *err) {
    struct stat a, b;
    if (fstat(fd, &a) || stat(interp, &b))
        return scp_fail_errno(err, "cannot check the program's loader %s", interp);
    if (a.st_dev != b.st_dev || a.st_ino != b.st_ino || a.st_size != b.st_size ||
        a.st_mtim.tv_sec != b.st_mtim.tv_sec || a.st_mtim.tv_nsec != b.st_mtim.tv_nsec ||
        a.st_ctim.tv_sec != b.st_ctim.tv_sec || a.st_ctim.tv_nsec != b.st_ctim.tv_nsec)
        return scp_fail(err, SCP_E_INTEGRITY, EACCES,
                        "the program's loader %s changed since it was measured; not starting", interp);
    return 0;
}

/* A program without PT_INTERP cannot take the preloaded shield: it is served from outside
 * (runtime/notify.c). Looked up as execvp will. */
static int program_check(const struct scp_run_opts *o, int (*check)(int fd)) {
    if (o->exec_fd > 0) return check(o->exec_fd);
    const char *prog = o->argv[0];
    char buf[PATH_MAX];
    if (!strchr(prog, '/')) {
        const char *path = getenv("PATH");
        if (!path) path = "/usr/local/bin:/usr/bin:/bin";
        for (const char *d = path; *d;) {
            size_t l = strcspn(d, ":");
            if (l && snprintf(buf, sizeof buf, "%.*s/%s", (int)l, d, prog) < (int)sizeof buf && access(buf, X_OK) == 0) {
                prog = buf;
                break;
            }
            d += l + (d[l] == ':');
        }
        if (prog != buf) return 0;
    }
    int fd = open(prog, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    int r = check(fd);
    close(fd);
    return r;
}

/* The program's path (with a '/', taken from the working directory when relative) lies under
 * a volume's mount point: a program stored in a volume. */
static int in_mount(const struct scp_run_opts *o, const char *prog) {
    char abs[PATH_MAX];
    if (!strchr(prog, '/')) return 0;
    if (prog[0] == '/') snprintf(abs, sizeof abs, "%s", prog);
    else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd) || snprintf(abs, sizeof abs, "%s/%s", cwd, prog) >= (int)sizeof abs) return 0;
    }
    for (unsigned i = 0; i < o->nvol; i++) {
        size_t ml = strlen(o->vol[i].mount);
        if (!strncmp(abs, o->vol[i].mount, ml) && (abs[ml] == '/' || !abs[ml])) return 1;
    }
    return 0;
}

/* A program stored in a volume: this process sees an empty mount point there (or a tmpfs over
 * it), and only a shielded image can read it. So a shielded /bin/sh execs it, and its shield
 * runs it (from a sealed copy, shield/exec_script.c): the program gets its own arguments.
 * Returns only on failure (errno). */
static void exec_through_shell(char *const argv[]) {
    size_t n = 0;
    while (argv[n]) n++;
    char **v = calloc(n + 4, sizeof *v);
    if (!v) return;
    v[0] = "/bin/sh";
    v[1] = "-c";
    v[2] = "exec \"$0\" \"$@\"";
    for (size_t i = 0; i <= n; i++) v[3 + i] = argv[i];
    execv("/bin/sh", v);
    free(v);
}

static int elf_served(int fd) { return scp_notify_serves(scp_notify_image(fd)); }
/* Whether the program is served by a supervisor (scp_notify_serves) */
static int program_served(const struct scp_run_opts *o) { return program_check(o, elf_served); }

/* An x86-64 ELF with an interpreter (not a Go program at a fixed address, which the
 * supervisor serves): the loader preloads the shield into it, and the shield's filter is
 * installed before its main(). A script, a static program or anything else is not looked into
 * (its interpreter could be static). */
static int elf_takes_shield(int fd) {
    Elf64_Ehdr eh;
    if (scp_pread_full(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh) return 0;
    return !memcmp(eh.e_ident, ELFMAG, SELFMAG) && eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_machine == EM_X86_64 &&
           scp_notify_image(fd) == SCP_IMAGE_SHIELD;
}

/* An x86-64 ELF with an interpreter that the loader runs with LD_PRELOAD honoured (not set-user-
 * or set-group-ID: a secure-execution loader ignores a preload given by path). */
static int elf_preloads_shield(int fd) {
    struct stat st;
    return elf_takes_shield(fd) && fstat(fd, &st) == 0 && !(st.st_mode & (S_ISUID | S_ISGID));
}

/* Whether the program certainly starts under the shield: then the shield opens the volumes
 * before main (SCP_SHIELD_F_OPEN_CHECK) and this process does not. Opening a volume is the
 * first use of OpenSSL in a process (its start, configuration and first AES-GCM fetch, with
 * the volume's header and manifest: about 1.5-2.5 ms of CPU), which the launcher paid only to
 * check the key early and to read the tag that the shield's own open was then held to: the
 * program that uses the volume paid it a second time. The shield's open reports a failure as
 * this process would have (the same line, the same exit status: check_who, check_dir,
 * scp_err_exit_status), before the program's main. A program the shield may not start in (a
 * script, whose interpreter may be static; a static program, served from outside; a set-ID
 * one) and a program in a container keep the launcher's open. */
static int shield_checks_volumes(const struct scp_run_opts *o) {
    if (o->no_mount) return 0; /* (a secure image: its caller opened the volumes, have_seen) */
    /* In a container (and so in the attested mode, whose caller opened the volumes anyway:
     * have_seen) the launcher's open stays: the key-file mode's short commands run without one,
     * and a container's path is left as it was (bench/RESULTS.md start25) */
    if (o->container.enabled) return 0;
    return program_check(o, elf_preloads_shield);
}

/* Whether the program names a path inside `mount` (normalized) as one of its arguments, or
 * starts with its working directory there: then it is all but certain to open the volume,
 * and the shield's check is its first use's open (kept for it). A program that does not (a
 * shell's -c script, a program that never touches the volume) gets the launcher's open, so
 * that it neither loads OpenSSL nor holds the volume (docs/shield.md, "Start-up"). */
static int path_in(const char *path, const char *mount) {
    char n[PATH_MAX];
    size_t ml = strlen(mount);
    return path[0] == '/' && scp_shield_path_normalize(path, n, sizeof n) == 0 && !strncmp(n, mount, ml) &&
           (n[ml] == '/' || n[ml] == 0);
}
static int program_names_mount(const struct scp_run_opts *o, const char *mount, const char *cwd_now) {
    if (path_in(o->cwd ? o->cwd : cwd_now, mount)) return 1;
    for (size_t k = 1; o->argv[k]; k++)
        if (path_in(o->argv[k], mount)) return 1;
    return 0;
}

int scp_run_exec(struct scp_run_opts *o, scp_err *err) {
    static scp_shield_config cfg;
    int notify_sock = -1, shield_denies_tracing = 0;
    memset(&cfg, 0, sizeof cfg);
    char lib[PATH_MAX];
    int rc = -1;
    if (!o->argv || !o->argv[0]) {
        scp_fail(err, SCP_E_INVAL, EINVAL, "no program to run");
        goto out;
    }
    if (o->nvol > SCP_SHIELD_MAX_VOLUMES) {
        scp_fail(err, SCP_E_INVAL, EINVAL, "at most %u volumes", SCP_SHIELD_MAX_VOLUMES);
        goto out;
    }
    if (find_shield(o->shield_lib, lib, sizeof lib, err)) goto out;

    /* the reserved descriptor range: [2048, 3072), low, so that the descriptor table every
     * fork of the program copies stays short (at the hard limit it was 65536 entries long in a
     * container); docs/shield.md "Reserved descriptors". The soft limit is raised to the
     * range's end at least: the shield puts its own descriptors there. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl)) {
        scp_fail_errno(err, "getrlimit");
        goto out;
    }
    cfg.fd_base = SCP_SHIELD_FD_BASE;
    int hi = (int)(cfg.fd_base + SCP_SHIELD_FD_COUNT);
    if (rl.rlim_max < (rlim_t)hi) {
        scp_fail(err, SCP_E_INVAL, EMFILE,
                 "the descriptor hard limit (%lu) is too low for the shield (it needs %d); raise ulimit -Hn",
                 (unsigned long)rl.rlim_max, hi);
        goto out;
    }
    /* the measured descriptors go below the volume library's zone (the 512 numbers below the
     * range, SH_LIB_ZONE in src/shield/internal.h) */
    uint32_t cfg_base_for_measured = cfg.fd_base - 512;
    if (rl.rlim_cur < (rlim_t)hi) {
        rl.rlim_cur = (rlim_t)hi;
        if (setrlimit(RLIMIT_NOFILE, &rl)) {
            scp_fail_errno(err, "cannot raise the descriptor limit");
            goto out;
        }
    }
    int own = hi - 1;

    int shield_opens = o->nvol && shield_checks_volumes(o);
    char cwd_now[PATH_MAX];
    if (!o->cwd && !getcwd(cwd_now, sizeof cwd_now)) cwd_now[0] = 0;
    snprintf(cfg.check_who, sizeof cfg.check_who, "%s", o->who ? o->who : "scpctl");
    for (unsigned i = 0; i < o->nvol; i++) {
        struct scp_run_volume *v = &o->vol[i];
        scp_shield_volume *cv = &cfg.vol[i];
        if (scp_shield_path_normalize(v->mount, cv->mount, sizeof cv->mount) || !strcmp(cv->mount, "/")) {
            scp_fail(err, SCP_E_INVAL, EINVAL, "mount point '%s' must be an absolute path other than /",
                     v->mount);
            goto out;
        }
        for (unsigned j = 0; j < i; j++)
            if (!strcmp(cfg.vol[j].mount, cv->mount)) {
                scp_fail(err, SCP_E_INVAL, EINVAL, "mount point '%s' given twice", cv->mount);
                goto out;
            }
        int dfd = open(v->hostdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (v->have_seen) { /* opened by the caller: the shield refuses anything older */
            cv->seen = v->seen;
            cv->have_seen = 1;
        } else if (shield_opens && dfd >= 0 && strlen(v->hostdir) < sizeof cfg.check_dir[i] &&
                   program_names_mount(o, cv->mount, cwd_now)) {
            /* the shield opens it before main, in this process's place (shield_checks_volumes) */
            snprintf(cfg.check_dir[i], sizeof cfg.check_dir[i], "%s", v->hostdir);
            cfg.flags |= SCP_SHIELD_F_OPEN_CHECK;
        } else { /* (also the message of a directory that cannot be opened) */
            scp_volume *vol = scp_volume_open(v->hostdir, v->key, NULL, err);
            if (!vol) {
                scp_err_prefix(err, "volume %s", v->hostdir);
                if (dfd >= 0) close(dfd);
                goto out;
            }
            scp_volume_tag_get(vol, &cv->seen); /* the shield refuses anything older */
            cv->have_seen = 1;
            scp_volume_close(vol, NULL);
        }
        if (dfd < 0 || dup2(dfd, own) < 0) {
            scp_fail_errno(err, "cannot open %s", v->hostdir);
            goto out;
        }
        close(dfd);
        cv->dirfd = own--;
        memcpy(cv->key, v->key, sizeof cv->key);
        cfg.nvol++;
    }
    cfg.trace_fd = -1;
    if (o->trace) {
        int tfd = o->trace_file ? open(o->trace_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)
                                : fcntl(2, F_DUPFD_CLOEXEC, 3);
        if (tfd < 0 || dup2(tfd, own) < 0) {
            scp_fail_errno(err, "cannot open the trace file");
            goto out;
        }
        close(tfd);
        cfg.trace_fd = own--;
        cfg.flags |= SCP_SHIELD_F_TRACE;
    }

    if (o->container.enabled) {
        struct run_secrets sec = {&cfg, o};
        /* from here on this is the program's process, inside the container */
        pid_t caller = getpid();
        if (scp_container_start(&o->container, lib, lib, sizeof lib, wipe_secrets, &sec, err)) {
            /* the init failed to build it, or this process after the pid namespace was made
             * (its fork of the init failed): either must end with _exit */
            o->in_container = getpid() != caller || scp_container_children_moved();
            goto out;
        }
        o->in_container = 1;
        cfg.flags |= SCP_SHIELD_F_NODUMP;
        /* the container's ptrace rule goes into the shield's one filter where the shield
         * certainly starts (one filter fewer on every listed call of the program) */
        if (program_check(o, elf_takes_shield)) {
            cfg.flags |= SCP_SHIELD_F_NOPTRACE;
            shield_denies_tracing = 1;
        }
    }
    if (o->tag_fd > 0) {
        if (dup2(o->tag_fd, own) < 0) {
            scp_fail_errno(err, "cannot place the tag pipe");
            goto out;
        }
        char tnum[16];
        snprintf(tnum, sizeof tnum, "%d", own--);
        if (setenv(SCP_SHIELD_ENV_TAG_FD, tnum, 1)) {
            scp_fail_errno(err, "setenv");
            goto out;
        }
    }
    if (o->tag_sync_fd > 0) {
        char snum[16];
        snprintf(snum, sizeof snum, "%d", own);
        if (dup2(o->tag_sync_fd, own--) < 0 || setenv(SCP_SHIELD_ENV_TAG_SYNC_FD, snum, 1)) {
            scp_fail_errno(err, "cannot pass the tag-sync page");
            goto out;
        }
    }
    if (o->net_renew_fd > 0) {
        char rnum[16];
        snprintf(rnum, sizeof rnum, "%d", own);
        if (dup2(o->net_renew_fd, own--) < 0 || setenv(SCP_SHIELD_ENV_NET_RENEW_FD, rnum, 1)) {
            scp_fail_errno(err, "cannot pass the certificate renewal page");
            goto out;
        }
    }

    if (o->no_mount) cfg.flags |= SCP_SHIELD_F_NODUMP;
    if (cfg.nvol && !o->no_mount) {
        if (!o->container.enabled && scp_run_isolate(err)) goto out;
        struct covers cv = {.n = 0};
        for (unsigned i = 0; i < cfg.nvol; i++) {
            const char *mp = cfg.vol[i].mount;
            if (make_mount_point(mp, &cv, err)) {
                scp_err ignored;
                seal_covers(&cv, &ignored);
                goto out;
            }
            if (mount("scp-shield", mp, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                      "size=4k,mode=0555")) {
                scp_fail_errno(err, "cannot cover mount point %s", mp);
                scp_err ignored;
                seal_covers(&cv, &ignored);
                goto out;
            }
        }
        if (seal_covers(&cv, err)) goto out;
    }

    if (o->cwd && chdir(o->cwd)) {
        scp_fail_errno(err, "cannot enter the working directory %s (inside a volume only its mount point can be)",
                       o->cwd);
        goto out;
    }
    if (cfg.nvol && !o->container.enabled && !o->no_mount && program_served(o)) {
        struct scp_notify_volume nv[SCP_SHIELD_MAX_VOLUMES];
        for (unsigned i = 0; i < cfg.nvol; i++)
            nv[i] = (struct scp_notify_volume){cfg.vol[i].mount, cfg.vol[i].dirfd, cfg.vol[i].key};
        struct scp_notify_start start = {0}; /* (its cwd is never below a mount) */
        notify_sock = scp_notify_spawn(nv, cfg.nvol, &start, err);
        if (notify_sock < 0) goto out;
        /* the static image reads no configuration: it inherits no volume directory */
        for (unsigned i = 0; i < cfg.nvol; i++) fcntl(cfg.vol[i].dirfd, F_SETFD, FD_CLOEXEC);
    }
    int mfd = scp_shield_config_to_memfd(&cfg, err);
    if (mfd < 0) goto out;
    if (notify_sock >= 0) fcntl(mfd, F_SETFD, FD_CLOEXEC);
    char num[16];
    snprintf(num, sizeof num, "%d", mfd);
    const char *old = getenv("LD_PRELOAD");
    size_t pl_len = strlen(lib) + (old ? strlen(old) + 1 : 0) + 1;
    char *pl = malloc(pl_len);
    if (!pl) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    snprintf(pl, pl_len, "%s%s%s", lib, old && *old ? ":" : "", old ? old : "");
    /* a static program takes no shield, and a dynamic one it starts is served by its
     * supervisor like itself: neither gets the shield's variables */
    if (notify_sock < 0 && (setenv(SCP_SHIELD_ENV_FD, num, 1) || setenv("LD_PRELOAD", pl, 1))) {
        scp_fail_errno(err, "setenv");
        free(pl);
        goto out;
    }
    free(pl);
    scp_wipe(&cfg, sizeof cfg);
    for (unsigned i = 0; i < o->nvol; i++) scp_wipe(o->vol[i].key, sizeof o->vol[i].key);
    if (o->n_measured) {
        /* below the shield's zones, where neither the loader nor the program puts anything
         * before the shield has checked the start-up mappings against them and closed them */
        int first = (int)cfg_base_for_measured - (int)o->n_measured;
        char mv[32];
        for (size_t i = 0; i < o->n_measured; i++)
            if (first < 3 || dup2(o->measured_fds[i], first + (int)i) < 0) {
                scp_fail_errno(err, "cannot pass the measured descriptors");
                goto out;
            }
        snprintf(mv, sizeof mv, "%d:%zu", first, o->n_measured);
        if (setenv(SCP_SHIELD_ENV_MEASURED_FDS, mv, 1) ||
            (o->container.enabled && o->measured_paths && measured_lib_dir(o, first, err) < 0) ||
            (o->container.enabled && o->measured_interp && measured_loader(o->measured_interp, first + 1, err) < 0)) {
            if (!err->code) scp_fail_errno(err, "setenv");
            goto out;
        }
    }
    if (o->container.enabled && scp_container_seal(&o->container, shield_denies_tracing, err)) goto out;
    if (o->timing_ns) {
        int64_t now = scp_now_ns();
        char tv[32];
        scp_log(SCP_LOG_INFO, "scpctl run", "timing: container setup %.1f ms", (double)(now - o->timing_ns) / 1e6);
        snprintf(tv, sizeof tv, "%lld", (long long)now);
        setenv(SCP_SHIELD_ENV_TIMING, tv, 1);
    }
    /* drop to the image's user first: the notification filter then goes on without privileges
     * (filter_install sets no_new_privs) */
    if (become_user(o, err) < 0) goto out;
    if (notify_sock >= 0) {
        int sock = notify_sock;
        notify_sock = -1;
        if (scp_notify_attach(sock, err)) goto out;
        /* The supervisor reads the exec's path from this process's memory (process_vm_readv),
         * which a process that is not dumpable (scpctl, cli/main.c; or after become_user) keeps
         * from anyone without CAP_SYS_PTRACE: a run as an ordinary user failed with EFAULT.
         * The secrets are wiped above, and the exec makes the image dumpable anyway. */
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    }
    if (o->exec_fd > 0) {
        extern char **environ;
        syscall(SYS_execveat, o->exec_fd, "", o->argv, environ, AT_EMPTY_PATH);
    } else if (in_mount(o, o->argv[0])) {
        exec_through_shell(o->argv);
    } else {
        execvp(o->argv[0], o->argv);
    }
    scp_fail_errno(err, "cannot run %s", o->argv[0]);
    close(mfd);
out:
    if (notify_sock >= 0) close(notify_sock);
    scp_wipe(&cfg, sizeof cfg);
    for (unsigned i = 0; i < o->nvol; i++) scp_wipe(o->vol[i].key, sizeof o->vol[i].key);
    return rc;
}
