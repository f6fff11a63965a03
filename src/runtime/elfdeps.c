/* runtime/elfdeps.c - see elfdeps.h. The files are untrusted: their headers are read by
 * common/elf.c. */
#include "runtime/elfdeps.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "scp/shield.h"

/* ---- resolution on the file system -------------------------------------------------------- */

/* Map the file read-only: only the pages the parser touches (headers, dynamic section, string
 * table) are read, not the whole image. A file truncated by someone else while it is parsed
 * would raise SIGBUS; these are the host's program and libraries, whose integrity the
 * measurement (and CAS's policy) decides anyway. */
static int map_fd(int fd, uint8_t **buf, size_t *len, scp_err *err) {
    struct stat st;
    if (fstat(fd, &st) < 0) return scp_fail_errno(err, "fstat");
    if (!S_ISREG(st.st_mode)) return scp_fail(err, SCP_E_INVAL, EACCES, "not a regular file");
    if ((uint64_t)st.st_size > SCP_ELF_MAX_FILE) return scp_fail(err, SCP_E_INVAL, EFBIG, "larger than 1 GiB");
    if (st.st_size < 64) return scp_fail(err, SCP_E_FORMAT, ENOEXEC, "not a usable ELF file: too short");
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return scp_fail_errno(err, "mmap");
    *buf = p;
    *len = (size_t)st.st_size;
    return 0;
}

static int already(const scp_elf_set *s, int fd) {
    struct stat a, b;
    if (fstat(fd, &a) < 0) return 0;
    for (size_t i = 0; i < s->n; i++)
        if (fstat(s->fd[i], &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) return 1;
    return 0;
}

/* Open path on the host (root < 0) or as the program will see it inside the directory root:
 * RESOLVE_IN_ROOT makes "/" and ".." (also in symlinks) stop at root, as after pivot_root. */
static int open_in(int root, const char *path) {
    if (root < 0) return open(path, O_RDONLY | O_CLOEXEC);
    return scp_openat2(root, path, O_RDONLY, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
}

/* Open path if it is a regular file whose ELF class and machine match (machine 0: any). */
static int try_open(int root, const char *path, uint16_t machine, int want_exec) {
    int fd = open_in(root, path);
    if (fd < 0) return -1;
    struct stat st;
    uint8_t h[64];
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (want_exec && !(st.st_mode & 0111)) ||
        pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h) {
        close(fd);
        return -1;
    }
    if (machine && (memcmp(h, ELFMAG, SELFMAG) != 0 || h[EI_CLASS] != ELFCLASS64 || (uint16_t)(h[18] | h[19] << 8) != machine)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Search a ':'-separated list; returns an fd and fills found, or -1. */
static int search(int root, const char *list, const char *name, const char *origin, uint16_t machine, char *found, size_t fsz) {
    const char *p = list;
    while (p && *p) {
        const char *e = strchr(p, ':');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l && scp_elf_join(found, fsz, p, l, name, origin) == 0) {
            int fd = try_open(root, found, machine, 0);
            if (fd >= 0) return fd;
        }
        p = e ? e + 1 : NULL;
    }
    return -1;
}

static int add(scp_elf_set *s, int fd, const char *path, scp_err *err) {
    if (already(s, fd)) {
        close(fd);
        return 0;
    }
    if (s->n >= SCP_ELF_MAX_OBJECTS) {
        close(fd);
        return scp_fail(err, SCP_E_INVAL, E2BIG, "more than %u objects to load", SCP_ELF_MAX_OBJECTS);
    }
    s->fd[s->n] = fd;
    snprintf(s->path[s->n], sizeof s->path[s->n], "%s", path);
    s->n++;
    return 1;
}

void scp_elf_set_close(scp_elf_set *s, int keep) {
    for (size_t i = 0; i < s->n; i++)
        if (s->fd[i] != keep) close(s->fd[i]);
    s->n = 0;
}

static int open_prog(int root, const char *prog, const char *search_path, char *found, size_t fsz, scp_err *err) {
    if (strchr(prog, '/')) {
        snprintf(found, fsz, "%s", prog);
        int fd = try_open(root, prog, 0, 1);
        if (fd < 0) return scp_fail(err, SCP_E_NOENT, ENOENT, "program '%s' does not exist or is not an executable file", prog);
        return fd;
    }
    const char *p = search_path && *search_path ? search_path : "/usr/local/bin:/usr/bin:/bin";
    while (p && *p) {
        const char *e = strchr(p, ':');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l && (size_t)snprintf(found, fsz, "%.*s/%s", (int)l, p, prog) < fsz) {
            int fd = try_open(root, found, 0, 1);
            if (fd >= 0) return fd;
        }
        p = e ? e + 1 : NULL;
    }
    return scp_fail(err, SCP_E_NOENT, ENOENT, "program '%s' not found in PATH", prog);
}

int scp_elf_open_prog(int root, const char *prog, const char *search_path, char *found, size_t fsz, scp_err *err) {
    return open_prog(root, prog, search_path, found, fsz, err);
}

int scp_elf_set_open(const char *prog, const char *search_path, const char *preload, scp_elf_set *s, scp_err *err) {
    return scp_elf_set_open_in(-1, prog, search_path, preload, s, err);
}

int scp_elf_set_open_in(int root, const char *prog, const char *search_path, const char *preload, scp_elf_set *s,
                        scp_err *err) {
    return scp_elf_set_open_with(root, prog, search_path, preload, NULL, 0, s, err);
}

/* An extra file: a regular file at an absolute path inside root. */
static int open_extra(int root, const char *path, scp_err *err) {
    if (path[0] != '/') return scp_fail(err, SCP_E_INVAL, EINVAL, "trusted file '%s' is not an absolute path", path);
    int fd = open_in(root, path);
    if (fd < 0) return scp_fail_errno(err, "trusted file %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return scp_fail(err, SCP_E_INVAL, EINVAL, "trusted file %s is not a regular file", path);
    }
    return fd;
}

static int is_elf(int fd) {
    uint8_t h[SELFMAG];
    return pread(fd, h, sizeof h, 0) == (ssize_t)sizeof h && memcmp(h, ELFMAG, SELFMAG) == 0;
}

/* The shield loads OpenSSL with dlopen at its first use (scp/shield.h): what it will map is
 * resolved as if the shield needed those libraries, from the shield's own search path. */
static int lazy_needed(scp_elf_info *info) {
    static const char *const lazy[] = {SCP_SHIELD_LIBSSL, SCP_SHIELD_LIBCRYPTO};
    for (size_t k = 0; k < sizeof lazy / sizeof lazy[0]; k++) {
        if (info->n_needed >= SCP_ELF_MAX_NEEDED) return -1;
        snprintf(info->needed[info->n_needed++], SCP_ELF_MAX_NAME, "%s", lazy[k]);
    }
    return 0;
}

int scp_elf_set_open_with(int root, const char *prog, const char *search_path, const char *preload,
                          const char *const *extra, size_t nextra, scp_elf_set *s, scp_err *err) {
    s->n = 0;
    s->has_interp = 0;
    size_t first_extra = SIZE_MAX, preload_at = SIZE_MAX;
    char found[PATH_MAX];
    scp_elf_info *info = malloc(sizeof *info);
    if (!info) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    char exe_rpath[SCP_ELF_MAX_SEARCH] = "", exe_origin[PATH_MAX] = "";
    int fd = open_prog(root, prog, search_path, found, sizeof found, err);
    if (fd < 0) goto fail;
    add(s, fd, found, err);
    uint16_t machine = 0;
    for (size_t i = 0; i < s->n; i++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        /* an extra file that is not ELF (a script, data) loads nothing; an ELF one is resolved
         * like the program's libraries, so its own libraries are trusted too */
        if (i >= first_extra && !is_elf(s->fd[i])) continue;
        if (map_fd(s->fd[i], &buf, &len, err) < 0) {
            scp_err_prefix(err, "%s", s->path[i]);
            goto fail;
        }
        int r = scp_elf_parse(buf, len, info, err);
        munmap(buf, len);
        if (r < 0) {
            scp_err_prefix(err, "%s", s->path[i]);
            goto fail;
        }
        if (i == preload_at && lazy_needed(info) < 0) {
            scp_fail(err, SCP_E_FORMAT, ENOEXEC, "%s: too many needed libraries", s->path[i]);
            goto fail;
        }
        if (i == 0) machine = info->machine;
        else if (info->machine != machine) {
            scp_fail(err, SCP_E_FORMAT, ENOEXEC, "%s: built for another machine", s->path[i]);
            goto fail;
        }
        char origin[PATH_MAX];
        snprintf(origin, sizeof origin, "%s", s->path[i]);
        char *sl = strrchr(origin, '/');
        if (sl && sl != origin) *sl = 0;
        else snprintf(origin, sizeof origin, "%s", sl ? "/" : ".");
        if (i == 0) {
            if (info->has_rpath && !info->has_runpath) snprintf(exe_rpath, sizeof exe_rpath, "%s", info->rpath);
            snprintf(exe_origin, sizeof exe_origin, "%s", origin);
            if (info->interp[0]) {
                int ifd = try_open(root, info->interp, machine, 0);
                if (ifd < 0) {
                    scp_fail(err, SCP_E_NOENT, ENOENT, "%s: its loader %s is missing", s->path[0], info->interp);
                    goto fail;
                }
                add(s, ifd, info->interp, err);
                s->has_interp = 1;
            }
            if (preload) {
                int pfd = try_open(-1, preload, machine, 0); /* a host path */
                if (pfd < 0) {
                    scp_fail(err, SCP_E_NOENT, ENOENT, "cannot open %s (or it is built for another machine)", preload);
                    goto fail;
                }
                int added = add(s, pfd, preload, err);
                if (added < 0) goto fail;
                if (added > 0) preload_at = s->n - 1;
            }
            first_extra = s->n;
            for (size_t k = 0; k < nextra; k++) {
                int xfd = open_extra(root, extra[k], err);
                if (xfd < 0 || add(s, xfd, extra[k], err) < 0) goto fail;
            }
        } else if (info->interp[0]) { /* an extra program: its loader too */
            int ifd = try_open(root, info->interp, machine, 0);
            if (ifd < 0) {
                scp_fail(err, SCP_E_NOENT, ENOENT, "%s: its loader %s is missing", s->path[i], info->interp);
                goto fail;
            }
            if (add(s, ifd, info->interp, err) < 0) goto fail;
        }
        for (size_t k = 0; k < info->n_needed; k++) {
            const char *name = info->needed[k];
            int lfd = -1;
            if (strchr(name, '/')) {
                snprintf(found, sizeof found, "%s", name);
                lfd = try_open(root, name, machine, 0);
            } else {
                if (!info->has_runpath) {
                    if (info->has_rpath) lfd = search(root, info->rpath, name, origin, machine, found, sizeof found);
                    if (lfd < 0 && i != 0 && exe_rpath[0])
                        lfd = search(root, exe_rpath, name, exe_origin, machine, found, sizeof found);
                }
                if (lfd < 0 && info->has_runpath) lfd = search(root, info->runpath, name, origin, machine, found, sizeof found);
                if (lfd < 0) lfd = search(root, SCP_ELF_DEFAULT_DIRS, name, origin, machine, found, sizeof found);
            }
            if (lfd < 0) {
                scp_fail(err, SCP_E_NOENT, ENOENT, "%s needs %s, which is not found (searched its RUNPATH/RPATH and "
                         SCP_ELF_DEFAULT_DIRS ")", s->path[i], name);
                goto fail;
            }
            if (add(s, lfd, found, err) < 0) goto fail;
        }
    }
    free(info);
    return 0;
fail:
    free(info);
    scp_elf_set_close(s, -1);
    return -1;
}
