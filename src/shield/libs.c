/* shield/libs.c - shared libraries stored inside a volume, and the sealed copies by which the
 * kernel and the loader run what a volume holds.
 *
 * The loader cannot map a library that a volume holds, for the reason the kernel cannot exec a
 * program there (exec_script.c): the backing store holds ciphertext, and at the mount point the
 * kernel shows nothing. Its opens come from its own code, which no rule traps. So the shield
 * gives it sealed in-memory copies of the libraries' plaintext, named /proc/self/fd/N:
 *   - dlopen of a path inside a volume (a Python extension module in a virtual environment
 *     kept in the volume, a server's plugin), or of a bare name that a directory of
 *     LD_LIBRARY_PATH inside a volume holds: the libraries that it needs from the volumes are
 *     copied and loaded first, then the library itself with the caller's mode. The loader
 *     finds each needed one among the loaded objects by its DT_SONAME instead of searching.
 *   - an exec whose new image needs libraries from the volumes (a program built in the volume,
 *     run with libtool's LD_LIBRARY_PATH, a build tree's DT_RUNPATH or $ORIGIN): the copies are
 *     preloaded after the shield (LD_PRELOAD) for the same reason. Their descriptors survive
 *     the exec; the new image's shield closes them at its start (sh_libs_start).
 * The search is ld.so(8)'s for what can lead into a volume: a name with '/' is a path; else
 * DT_RPATH (only without DT_RUNPATH; then the executable's DT_RPATH), LD_LIBRARY_PATH,
 * DT_RUNPATH, with $ORIGIN the directory the object was found in, as the program names it. The
 * first directory that has the name wins, inside a volume or not; a name found in none of
 * these is left to the loader (ld.so.cache and the default directories lie outside volumes).
 *
 * What differs from a library outside the volumes: a copy per load; dl_iterate_phdr and
 * /proc/self/maps show /proc/self/fd/N and /memfd:NAME; a needed library without DT_SONAME is
 * not matched (the loader then searches, does not find it and fails, as it would on a plain
 * directory that lacks it); dlopen's search of a bare name does not take the calling object's
 * DT_RUNPATH into the volumes; an outside program whose own DT_RUNPATH names a volume directory
 * gets nothing preloaded at exec (only LD_LIBRARY_PATH and a program inside a volume are looked
 * at: every other exec would pay a read of its program's headers). Under a trusted-file
 * manifest (scpctl run --cas) nothing inside a volume is measured: refused, EACCES, logged.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/elf.h"
#include "shield/core.h"
#include "shield/internal.h"

/* a copy is read in steps of this size */
#define COPY_STEP (256u << 10)
#ifndef MFD_EXEC /* (Linux 6.3; glibc 2.36's headers lack it) */
#define MFD_EXEC 0x0010U
#endif
#define PROC_FD "/proc/self/fd/"

/* ---- sealed copies ------------------------------------------------------------------------- */

/* fd's bytes to the memfd m, to their end. 0 or -errno. */
static long copy_to(long m, long fd) {
    char *buf = (char *)syscall(SYS_mmap, NULL, COPY_STEP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if ((unsigned long)buf > -4096ul) return (long)buf;
    long r = 0;
    for (long off = 0;;) {
        long ra[6] = {fd, (long)buf, COPY_STEP, off, 0, 0};
        long n = sh_syscall(SYS_pread64, ra);
        if (n == -EINTR) continue;
        if (n <= 0) {
            r = n;
            break;
        }
        for (long w = 0; w < n && r == 0;) {
            long k = sh_gate(SYS_write, m, (long)(buf + w), n - w, 0, 0, 0);
            if (k > 0) w += k;
            else if (k != -EINTR) r = k ? k : -EIO;
        }
        if (r) break;
        off += n;
    }
    syscall(SYS_munmap, buf, COPY_STEP);
    return r;
}

long sh_sealed_copy(long fd, const char *path, int cloexec) {
    const char *base = strrchr(path, '/');
    char name[64]; /* (memfd_create takes up to 249 bytes; the name is only shown) */
    snprintf(name, sizeof name, "%s", base ? base + 1 : path);
    unsigned fl = MFD_ALLOW_SEALING | (cloexec ? MFD_CLOEXEC : 0);
    long m = sh_gate(SYS_memfd_create, (long)name, fl | MFD_EXEC, 0, 0, 0, 0);
    if (m == -EINVAL) /* (a kernel before MFD_EXEC: its memfds are executable) */
        m = sh_gate(SYS_memfd_create, (long)name, fl, 0, 0, 0, 0);
    if (m < 0) return m;
    long r = copy_to(m, fd);
    if (r == 0)
        r = sh_gate(SYS_fcntl, m, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL, 0, 0, 0);
    if (r == 0) return m;
    sh_gate(SYS_close, m, 0, 0, 0, 0, 0);
    return r;
}

long sh_volume_file_open(int vol, const char *rel) {
    char abs[PATH_MAX];
    if (snprintf(abs, sizeof abs, "%s%s%s", sh.vol[vol].mount, rel[0] ? "/" : "", rel) >= (int)sizeof abs)
        return -ENAMETOOLONG;
    long oa[6] = {AT_FDCWD, (long)abs, O_RDONLY | O_CLOEXEC, 0, 0, 0};
    long fd = sh_path_syscall(SYS_openat, oa, 0);
    long e;
    pfile *pf = fd >= 0 ? sh_pf_get(fd, &e) : NULL;
    if (pf) { /* read once, whole, into a copy: no cache entries (a third of the copy's time) */
        if (pf->vf) scp_vfile_advise_once(pf->vf);
        sh_pf_put(pf);
    }
    return fd;
}

void sh_volume_file_close(long fd) {
    long ca[6] = {fd, 0, 0, 0, 0, 0};
    sh_syscall(SYS_close, ca);
}

/* ---- the libraries an object needs from the volumes ---------------------------------------- */

struct lib {
    int vol;
    long copy;          /* its sealed copy, or -1 */
    char rel[PATH_MAX]; /* inside volume vol, its links followed */
    char dir[PATH_MAX]; /* where it was found, as the program names it: its $ORIGIN */
};
/* What one load needs. In memory of its own (mmap: a SIGSYS handler's exec may build one, and
 * it is too large for a stack); only the pages used are touched. */
struct plan {
    int n;
    int in_vfork;        /* a vfork child: nothing may be opened, only found (sh_libs_exec) */
    int needs_process;   /* a library was found that only a process of its own can copy */
    int skip_loaded;     /* dlopen: leave out what this process has loaded from a volume */
    const char *ldpath;  /* LD_LIBRARY_PATH, or NULL */
    int has_exe_rpath;   /* the executable's DT_RPATH (exec only), searched for all objects */
    char exe_rpath[SCP_ELF_MAX_SEARCH];
    char exe_origin[PATH_MAX];
    struct lib lib[SH_LIBS_MAX];
    scp_elf_info info;
    char cand[PATH_MAX], rel[PATH_MAX], out[PATH_MAX], abs[PATH_MAX + SCP_SHIELD_MAX_MOUNT];
};

static int loaded_from_volume(int vol, const char *rel);

/* (vol, rel) into the plan, found as path: 1 (also when it is there already). */
static int plan_add(struct plan *p, int vol, const char *rel, const char *path) {
    for (int i = 0; i < p->n; i++)
        if (p->lib[i].vol == vol && !strcmp(p->lib[i].rel, rel)) return 1;
    if (p->skip_loaded && loaded_from_volume(vol, rel)) return 1;
    if (p->n == SH_LIBS_MAX) return 1; /* (the loader then fails on the rest, with its message) */
    struct lib *l = &p->lib[p->n];
    if (sh_abspath(AT_FDCWD, path, p->abs, sizeof p->abs) <= 0) return -1;
    char *slash = strrchr(p->abs, '/');
    size_t dl = slash == p->abs ? 1 : (size_t)(slash - p->abs);
    if (dl >= sizeof l->dir) return -1;
    memcpy(l->dir, p->abs, dl);
    l->dir[dl] = 0;
    l->vol = vol;
    l->copy = -1;
    snprintf(l->rel, sizeof l->rel, "%s", rel);
    p->n++;
    return 1;
}

/* The loader's candidate path: 1 when it names a regular file inside a volume (now in the
 * plan), 0 when it exists outside the volumes (the loader takes it), -1 when it does not
 * exist (the search goes on). */
static int candidate(struct plan *p, const char *path) {
    int vol;
    int c = sh_classify(AT_FDCWD, path, &vol, p->rel, sizeof p->rel);
    if (c < 0) {
        /* (a vfork child that may not open the volume: the exec goes through a process) */
        if (p->in_vfork) p->needs_process = 1;
        return -1;
    }
    if (c > 0) {
        int f = sh_follow_links(&vol, p->rel, sizeof p->rel, 1, p->out, sizeof p->out);
        if (f < 0) return -1;
        if (f == 1) {
            scp_vstat v;
            if (sh_path_vstat(vol, p->rel, &v) || v.type != SCP_VTYPE_FILE) return -1;
            return plan_add(p, vol, p->rel, path);
        }
        path = p->out; /* a link out of the volumes */
    }
    return sh_gate(SYS_faccessat, AT_FDCWD, (long)path, F_OK, 0, 0, 0) == 0 ? 0 : -1;
}

/* The next entry of a ':'-separated list (*rest: where it starts, NULL after the last): its
 * start, with its length in *len (0: an empty entry), or NULL at the end. */
static const char *list_next(const char **rest, size_t *len) {
    const char *d = *rest;
    if (!d || !*d) return NULL;
    const char *e = strchr(d, ':');
    *len = e ? (size_t)(e - d) : strlen(d);
    *rest = e ? e + 1 : NULL;
    return d;
}

/* The ':'-separated list's directories, each with name (and origin for $ORIGIN): the first
 * candidate that exists decides, 1 or 0 as candidate(); -1 when none does. */
static int search(struct plan *p, const char *list, const char *name, const char *origin) {
    size_t l;
    for (const char *rest = list, *d; (d = list_next(&rest, &l));)
        /* ($LIB and $PLATFORM are not expanded: such an entry is left to the loader) */
        if (l && scp_elf_join(p->cand, sizeof p->cand, d, l, name, origin) == 0 && !strchr(p->cand, '$')) {
            int c = candidate(p, p->cand);
            if (c >= 0) return c;
        }
    return -1;
}

/* One needed name of the object just parsed into p->info, found in dir origin. */
static void resolve(struct plan *p, const char *name, const char *origin) {
    if (strchr(name, '/')) {
        snprintf(p->cand, sizeof p->cand, "%s", name);
        candidate(p, p->cand);
        return;
    }
    const scp_elf_info *in = &p->info;
    if (!in->has_runpath && in->has_rpath && search(p, in->rpath, name, origin) >= 0) return;
    if (!in->has_runpath && p->has_exe_rpath && search(p, p->exe_rpath, name, p->exe_origin) >= 0) return;
    if (p->ldpath && search(p, p->ldpath, name, p->exe_origin) >= 0) return; /* ($ORIGIN: the program's) */
    if (in->has_runpath) search(p, in->runpath, name, origin);
}

/* The object open at fd (a copy, or a program outside the volumes) parsed into p->info:
 * 0, or -1 when it is no ELF object the reader takes (nothing is then looked for). */
static int parse_fd(struct plan *p, long fd) {
    struct stat st;
    if (sh_gate(SYS_fstat, fd, (long)&st, 0, 0, 0, 0) < 0 || st.st_size < 64 || st.st_size > (1l << 30)) return -1;
    void *m = (void *)syscall(SYS_mmap, NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if ((unsigned long)m > -4096ul) return -1;
    scp_err e;
    int r = scp_elf_parse(m, (size_t)st.st_size, &p->info, &e);
    syscall(SYS_munmap, m, (size_t)st.st_size);
    return r ? -1 : 0;
}

/* Copy p->lib[i] and look for what it needs (breadth first: the plan grows behind i).
 * 0 or -errno. */
static long expand(struct plan *p, int i) {
    struct lib *l = &p->lib[i];
    if (l->copy < 0) {
        long fd = sh_volume_file_open(l->vol, l->rel);
        if (fd < 0) return fd;
        l->copy = sh_sealed_copy(fd, l->rel, 1);
        sh_volume_file_close(fd);
        if (l->copy < 0) return l->copy;
    }
    if (parse_fd(p, l->copy) < 0) return 0;
    for (size_t k = 0; k < p->info.n_needed; k++) resolve(p, p->info.needed[k], l->dir);
    return 0;
}

static struct plan *plan_new(void) {
    struct plan *p = (struct plan *)syscall(SYS_mmap, NULL, sizeof *p, PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if ((unsigned long)p > -4096ul) return NULL;
    return p; /* (zeroed) */
}

static void plan_free(struct plan *p) {
    for (int i = 0; i < p->n; i++)
        if (p->lib[i].copy >= 0) sh_close_own(p->lib[i].copy);
    syscall(SYS_munmap, p, sizeof *p);
}

/* The value of LD_LIBRARY_PATH in envp when one of its directories lies inside a volume, else
 * NULL (the loader finds nothing there that the shield must give it). */
static const char *volume_ldpath(const char *v, struct plan *scratch) {
    if (!v || !sh.nvol) return NULL;
    size_t l;
    for (const char *rest = v, *d; (d = list_next(&rest, &l));)
        if (l && l < sizeof scratch->cand) {
            memcpy(scratch->cand, d, l);
            scratch->cand[l] = 0;
            int vol;
            if (sh_classify(AT_FDCWD, scratch->cand, &vol, scratch->rel, sizeof scratch->rel) != 0) return v;
        }
    return NULL;
}

/* ---- exec: the new image's libraries ------------------------------------------------------- */

long sh_libs_exec(int dirfd, const char *path, int flags, const char *origin, char *const envp[], int *fds, int max) {
    const char *lp = NULL;
    for (size_t i = 0; envp && envp[i]; i++)
        if (!strncmp(envp[i], "LD_LIBRARY_PATH=", 16)) lp = envp[i] + 16;
    if (!origin && !lp) return 0;
    struct plan *p = plan_new();
    if (!p) return -ENOMEM;
    p->ldpath = volume_ldpath(lp, p);
    long r = 0;
    if (!origin && !p->ldpath) goto out;
    p->in_vfork = sh_in_vfork_child();
    long fd = (flags & AT_EMPTY_PATH) && path && !*path ? sh_gate(SYS_fcntl, dirfd, F_DUPFD_CLOEXEC, 3, 0, 0, 0)
                                                         : sh_gate(SYS_openat, dirfd, (long)path, O_RDONLY | O_CLOEXEC, 0, 0, 0);
    if (fd < 0) goto out; /* (the exec then fails as the kernel says) */
    int parsed = parse_fd(p, fd);
    /* its $ORIGIN: origin for a copy from a volume; else the directory of the file's real
     * path, as the loader takes it from /proc/self/exe (links resolved) */
    if (origin) snprintf(p->exe_origin, sizeof p->exe_origin, "%s", origin);
    else {
        snprintf(p->cand, sizeof p->cand, "/proc/self/fd/%ld", fd);
        long n = sh_gate(SYS_readlink, (long)p->cand, (long)p->exe_origin, sizeof p->exe_origin - 1, 0, 0, 0);
        char *slash = n > 0 ? memrchr(p->exe_origin, '/', (size_t)n) : NULL;
        if (slash) *slash = 0; /* ("/prog": "", the root, as "$ORIGIN/lib" then reads "/lib") */
        else p->exe_origin[0] = 0;
    }
    sh_gate(SYS_close, fd, 0, 0, 0, 0, 0);
    if (parsed < 0) goto out;
    if (!p->info.interp[0]) goto out; /* (static: the supervisor serves it, and it loads nothing) */
    p->has_exe_rpath = p->info.has_rpath;
    memcpy(p->exe_rpath, p->info.rpath, sizeof p->exe_rpath);
    for (size_t k = 0; k < p->info.n_needed; k++) resolve(p, p->info.needed[k], p->exe_origin);
    if (p->in_vfork) {
        r = p->n || p->needs_process ? -EAGAIN : 0;
        goto out;
    }
    if (p->n) { /* (the library as the program's search named it) */
        const char *base = strrchr(p->lib[0].rel, '/');
        if (snprintf(p->abs, sizeof p->abs, "%s/%s", p->lib[0].dir, base ? base + 1 : p->lib[0].rel) >= (int)sizeof p->abs)
            r = -ENAMETOOLONG;
        else r = sh_trusted_unlisted("loading", p->abs);
    }
    for (int i = 0; i < p->n && r == 0; i++) r = expand(p, i);
    if (r == 0 && p->n > max) r = -E2BIG;
    if (r == 0) {
        for (int i = 0; i < p->n; i++) {
            /* (the new image inherits them: not close-on-exec) */
            sh_gate(SYS_fcntl, p->lib[i].copy, F_SETFD, 0, 0, 0, 0);
            fds[i] = (int)p->lib[i].copy;
            p->lib[i].copy = -1;
            sh_trace("exec: library '%s' of the volume at %s preloaded as " PROC_FD "%d",
                     p->lib[i].rel, sh.vol[p->lib[i].vol].mount, fds[i]);
        }
        r = p->n;
    }
out:
    plan_free(p);
    return r;
}

/* The descriptors that an exec preloaded (SCP_SHIELD_ENV_LIBS), read at the start. */
static struct {
    int fd[SH_LIBS_MAX];
    int n;
} preloaded;

void sh_libs_start(void) {
    const char *v = getenv(SCP_SHIELD_ENV_LIBS);
    if (!v) return;
    for (const char *s = v; *s && preloaded.n < SH_LIBS_MAX;) {
        char *end;
        long fd = strtol(s, &end, 10);
        if (end == s || fd < 0 || fd > INT_MAX) break;
        preloaded.fd[preloaded.n++] = (int)fd;
        s = *end == ',' ? end + 1 : end;
        if (*end != ',') break;
    }
    unsetenv(SCP_SHIELD_ENV_LIBS);
}

int sh_libs_is_preloaded(const char *s, size_t len) {
    if (len <= strlen(PROC_FD) || strncmp(s, PROC_FD, strlen(PROC_FD))) return 0;
    char num[16];
    size_t nl = len - strlen(PROC_FD);
    if (nl >= sizeof num) return 0;
    memcpy(num, s + strlen(PROC_FD), nl);
    num[nl] = 0;
    char *end;
    long fd = strtol(num, &end, 10);
    if (*end) return 0;
    for (int i = 0; i < preloaded.n; i++)
        if (preloaded.fd[i] == fd) return 1;
    return 0;
}

void sh_libs_close_preloaded(void) {
    for (int i = 0; i < preloaded.n; i++) sh_gate(SYS_close, preloaded.fd[i], 0, 0, 0, 0, 0);
    preloaded.n = 0;
}

/* ---- dlopen --------------------------------------------------------------------------------- */

/* The libraries this process loaded from the volumes. Each keeps its copy open in the volume
 * library's zone (sh_own_fd), so that its name, /proc/self/fd/N, is no other copy's while it is
 * loaded (the loader knows an object by the name it was loaded under, and a number comes back
 * after a close), and another dlopen of the same file finds it by that name. An entry whose
 * object the program has unloaded goes, its copy closed, at the next load (sweep). Under
 * libs_mu. */
struct loaded {
    int vol;
    long fd;
    char *rel;
    char name[40];
};
static pthread_mutex_t libs_mu = PTHREAD_MUTEX_INITIALIZER;
static struct loaded *libs;
static int nlibs, caplibs;
/* libc's dlopen, for the calls the shield does not serve (dlopen, below, jumps there) */
void *(*sh_real_dlopen)(const char *, int);
static __thread int in_hook;

/* name's object, if the loader has one by that name (a reference to drop with dlclose) */
static void *loaded_by_name(const char *name) { return sh_real_dlopen(name, RTLD_LAZY | RTLD_NOLOAD); }

static void forget(int i) {
    sh_close_own(libs[i].fd);
    free(libs[i].rel);
    libs[i] = libs[--nlibs];
}

/* Entry i, if its object is still loaded (else it goes): 1 or 0. */
static int still_loaded(int i) {
    void *h = loaded_by_name(libs[i].name);
    if (h) {
        dlclose(h);
        return 1;
    }
    forget(i);
    return 0;
}

/* Every SWEEP_EVERY loads, the entries of unloaded objects go (their copies closed): a probe
 * per entry, each a walk of the loader's list, so not at every load (200 loads from a volume
 * spent a fifth of their time in the loader's strcmp). */
#define SWEEP_EVERY 64
static void sweep(void) {
    static unsigned loads;
    if (++loads % SWEEP_EVERY) return;
    for (int i = nlibs; i-- > 0;) (void)still_loaded(i);
}

/* The entry of (vol, rel) whose object is loaded, or NULL. */
static struct loaded *find_loaded(int vol, const char *rel) {
    for (int i = 0; i < nlibs; i++)
        if (libs[i].vol == vol && !strcmp(libs[i].rel, rel)) {
            if (still_loaded(i)) return &libs[i];
            i--; /* (forget moved the last entry here: an unloaded copy may have a newer one) */
        }
    return NULL;
}

static int loaded_from_volume(int vol, const char *rel) { return find_loaded(vol, rel) != NULL; }

/* An entry for the copy fd, loaded as name: 0, or -1 (out of memory: the caller closes it). */
static int remember(int vol, const char *rel, long fd, const char name[40]) {
    if (nlibs == caplibs) {
        int cap = caplibs ? 2 * caplibs : 16;
        struct loaded *n = realloc(libs, (size_t)cap * sizeof *n);
        if (!n) return -1;
        libs = n;
        caplibs = cap;
    }
    struct loaded *e = &libs[nlibs];
    if (!(e->rel = strdup(rel))) return -1;
    e->vol = vol;
    e->fd = fd;
    memcpy(e->name, name, sizeof e->name); /* (both 40 bytes, NUL-terminated) */
    nlibs++;
    return 0;
}

/* The copy *fd moved into the zone, and its name there, which no loaded object may have (one
 * preloaded at the exec under a low number, when the zone is full): 0, or -1. */
static int copy_name(long *fd, char *name, size_t sz) {
    *fd = sh_own_fd(*fd);
    for (int k = 0; k < 64; k++) {
        snprintf(name, sz, PROC_FD "%ld", *fd);
        void *h = loaded_by_name(name);
        if (!h) return 0;
        dlclose(h);
        long n = sh_gate(SYS_fcntl, *fd, F_DUPFD_CLOEXEC, *fd + 1, 0, 0, 0);
        if (n < 0) return -1;
        sh_close_own(*fd);
        *fd = n;
    }
    return -1;
}

/* The loader's message for a failed load names the copies (/proc/self/fd/N): the program's
 * dlerror gets it with the libraries' paths instead (dlerror, below). Per thread, as dlerror's
 * state: raw is the loader's message as its dlerror will return it, nice the renamed one (kept
 * until the next failure: dlerror's result stays valid until the next call). */
static __thread char *err_raw, *err_nice;
static char *(*real_dlerror)(void);

/* libc's dlopen and dlerror, for the calls the shield does not serve and its own */
static void find_real_dlopen(void) {
    if (__atomic_load_n(&sh_real_dlopen, __ATOMIC_ACQUIRE)) return;
    void *e = dlsym(RTLD_NEXT, "dlerror");
    __atomic_store_n(&real_dlerror, (char *(*)(void))e, __ATOMIC_RELAXED);
    void *f = dlsym(RTLD_NEXT, "dlopen");
    __atomic_store_n(&sh_real_dlopen, (void *(*)(const char *, int))f, __ATOMIC_RELEASE);
}

static void err_rename(const struct plan *p, const char name[][40], const char *raw, const char *file) {
    free(err_raw);
    free(err_nice);
    err_raw = strdup(raw);
    size_t cap = strlen(raw) + 1 + (size_t)p->n * PATH_MAX;
    err_nice = malloc(cap);
    if (!err_raw || !err_nice) {
        free(err_raw);
        free(err_nice);
        err_raw = err_nice = NULL;
        return;
    }
    size_t o = 0;
    for (const char *r = raw; *r && o + 1 < cap;) {
        int k = -1;
        for (int i = 0; i < p->n && k < 0; i++) {
            size_t l = strlen(name[i]);
            if (!strncmp(r, name[i], l) && (r[l] < '0' || r[l] > '9')) k = i;
        }
        if (k < 0) {
            err_nice[o++] = *r++;
            continue;
        }
        const char *base = strrchr(p->lib[k].rel, '/');
        int w = k == 0 ? snprintf(err_nice + o, cap - o, "%s", file) /* (as the program named it) */
                       : snprintf(err_nice + o, cap - o, "%s/%s", p->lib[k].dir, base ? base + 1 : p->lib[k].rel);
        o = w < 0 ? o : (size_t)w >= cap - o ? cap - 1 : o + (size_t)w;
        r += strlen(name[k]);
    }
    err_nice[o] = 0;
}

SH_EXPORT char *dlerror(void) {
    find_real_dlopen();
    char *m = real_dlerror();
    if (m && err_raw && !strcmp(m, err_raw)) {
        free(err_raw);
        err_raw = NULL;
        return err_nice;
    }
    return m;
}

/* Load the plan: its libraries (p->lib[1...], each loaded once the ones it needs are: passes
 * until none is left or a pass loads none), then p->lib[0] (file, as the program named it) with
 * mode. The handle, or NULL with the loader's message for dlerror. The copies of what was loaded stay open (remember). */
static void *load_plan(struct plan *p, const char *file, int mode) {
    void *dep[SH_LIBS_MAX] = {0};
    char name[SH_LIBS_MAX][40];
    for (int i = 0; i < p->n; i++)
        if (copy_name(&p->lib[i].copy, name[i], sizeof name[i]) < 0) {
            sh_trace("dlopen of '%s': no name for a copy", p->lib[0].rel);
            return NULL; /* (libc's dlopen of the program's path then fails: dlerror says why) */
        }
    for (int progress = 1, left = p->n - 1; left && progress;) {
        progress = 0;
        for (int i = 1; i < p->n; i++)
            if (!dep[i] && (dep[i] = sh_real_dlopen(name[i], RTLD_LAZY | RTLD_LOCAL))) progress = 1, left--;
    }
    void *h = sh_real_dlopen(name[0], mode);
    char err[512] = "";
    if (!h) {
        const char *m = real_dlerror();
        snprintf(err, sizeof err, "%s", m ? m : "cannot load");
    }
    for (int i = 0; i < p->n; i++) {
        if (i && !dep[i]) continue;
        if (h && remember(p->lib[i].vol, p->lib[i].rel, p->lib[i].copy, name[i]) == 0) p->lib[i].copy = -1;
        if (i) dlclose(dep[i]); /* (what h needs stays: h holds it) */
    }
    if (!h) { /* the loader's message again, for the program's dlerror, naming the files */
        sh_trace("dlopen of '%s' from the volume at %s: %s", p->lib[0].rel, sh.vol[p->lib[0].vol].mount, err);
        sh_real_dlopen(name[0], mode);
        err_rename(p, name, err, file);
    }
    return h;
}


void *sh_libc_dlopen(const char *file, int mode) {
    find_real_dlopen();
    return sh_real_dlopen(file, mode);
}

/* The library (vol, rel), loaded already: the loader's handle for mode (as a path's dlopen
 * finds its object by the path), or NULL. */
static void *load_again(int vol, const char *rel, int mode) {
    struct loaded *e = find_loaded(vol, rel);
    return e ? sh_real_dlopen(e->name, mode | RTLD_NOLOAD) : NULL;
}

/* The plan's library p->lib[0] (named file by the program), with what it needs from the
 * volumes, copied and loaded with mode. *handled = 0 when the copies could not be made (libc's
 * dlopen then fails as the loader does on the mount point, which shows nothing). */
static void *load_new(struct plan *p, const char *file, int mode, int *handled) {
    p->skip_loaded = 1;
    long r = sh_trusted_unlisted("dlopen", file);
    for (int i = 0; i < p->n && r == 0; i++) r = expand(p, i);
    if (r < 0) {
        sh_trace("dlopen of '%s': %s", file, strerror((int)-r));
        *handled = 0;
        return NULL;
    }
    sh_trace("dlopen of '%s': a library inside a protected volume, loaded from a sealed copy (%d from the volumes)",
             file, p->n);
    return load_plan(p, file, mode);
}

/* Where the program's dlopen goes first (the entry point below): *handled = 0 leaves the call
 * to libc's dlopen, made with the program's own return address (the loader takes the calling
 * object's DT_RUNPATH and namespace from it). */
void *sh_dlopen_hook(const char *file, int mode, int *handled);
void *sh_dlopen_hook(const char *file, int mode, int *handled) {
    *handled = 0;
    find_real_dlopen();
    /* (not the shield's own loads, nor libcrypto's while the shield opens a volume: sh_in_lib) */
    if (!file || !sh.active || !sh.nvol || in_hook || sh_in_lib || sh_in_vfork_child()) return NULL;
    struct plan *p = NULL;
    void *h = NULL;
    in_hook = 1;
    int vol;
    char rel[8];
    if (strchr(file, '/')) {
        if (sh_classify(AT_FDCWD, file, &vol, rel, sizeof rel) == 0) goto out;
    } else { /* (a name the loader has loaded it finds by that name, before any search) */
        const char *lp = getenv("LD_LIBRARY_PATH");
        if (!lp || !strchr(lp, '/') || (mode & RTLD_NOLOAD)) goto out;
        void *had = loaded_by_name(file);
        if (had) {
            dlclose(had);
            goto out;
        }
    }
    if (!(p = plan_new())) goto out;
    pthread_mutex_lock(&libs_mu);
    p->ldpath = strchr(file, '/') ? NULL : volume_ldpath(getenv("LD_LIBRARY_PATH"), p);
    int c = 1;
    if (strchr(file, '/')) {
        snprintf(p->cand, sizeof p->cand, "%s", file);
        c = candidate(p, p->cand);
    } else if (p->ldpath)
        c = search(p, p->ldpath, file, "");
    if (c == 1 && p->n == 1) { /* the file itself, inside a volume */
        *handled = 1;
        sweep();
        h = load_again(p->lib[0].vol, p->lib[0].rel, mode);
        if (!h && (mode & RTLD_NOLOAD)) real_dlerror(); /* not loaded: NULL without a message, as the loader's */
        else if (!h) h = load_new(p, file, mode, handled);
    }
    pthread_mutex_unlock(&libs_mu);
out:
    if (p) plan_free(p);
    in_hook = 0;
    return h;
}

/* dlopen, exported: a jump to libc's after the hook, not a call, so that libc's dlopen sees
 * the program's return address (a C wrapper's call would make the shield the caller). */
__asm__(".text\n"
        ".globl dlopen\n"
        ".type dlopen, @function\n"
        "dlopen:\n"
        "  .cfi_startproc\n"
        "  endbr64\n"
        "  push %rdi\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  push %rsi\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  sub $24, %rsp\n" /* (the call's stack 16-byte aligned; the slot at rsp: handled) */
        "  .cfi_adjust_cfa_offset 24\n"
        "  movl $0, (%rsp)\n"
        "  mov %rsp, %rdx\n"
        "  call sh_dlopen_hook\n"
        "  mov (%rsp), %ecx\n"
        "  add $24, %rsp\n"
        "  .cfi_adjust_cfa_offset -24\n"
        "  pop %rsi\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  pop %rdi\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  test %ecx, %ecx\n"
        "  jz 1f\n"
        "  ret\n"
        "1:\n"
        "  jmp *sh_real_dlopen(%rip)\n"
        "  .cfi_endproc\n"
        ".size dlopen, .-dlopen\n");
