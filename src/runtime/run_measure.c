/* runtime/run_measure.c - the measurement of what will run: the measured files' digests,
 * sizes and stamps, the service's configuration text and the trusted-file manifest. */
#include "runtime/attest_run.h"
#include "runtime/run_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "runtime/launch.h"
#include "runtime/notify.h"
#include "scp/attest.h"
#include "scp/shield.h"

void scp_attest_run_identity_free(struct scp_attest_run_identity *id) {
    free(id->config);
    free(id->manifest);
    id->config = id->manifest = NULL;
}

static int64_t ts_ns(struct timespec t) { return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec; }

static int same_stamp(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           ts_ns(a->st_mtim) == ts_ns(b->st_mtim) && ts_ns(a->st_ctim) == ts_ns(b->st_ctim);
}

/* Where the program will see the file open at fd: its real path, with the rootfs's real path
 * (root_real, "" for the host's root) taken off. */
static int inside_path(int fd, const char *root_real, char *out, size_t n, scp_err *err) {
    char link[64], real[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t l = readlink(link, real, sizeof real - 1);
    if (l <= 0) return scp_fail_errno(err, "cannot find the path of a measured file");
    real[l] = 0;
    size_t rl = strlen(root_real);
    if (strncmp(real, root_real, rl) != 0 || (real[rl] != '/' && rl))
        return scp_fail(err, SCP_E_INVAL, EXDEV, "measured file %s lies outside the rootfs", real);
    if (snprintf(out, n, "%s", real + rl) >= (int)n) return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "path too long");
    return 0;
}

static int text_add(char **t, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int text_add(char **t, size_t *len, const char *fmt, ...) {
    char line[PATH_MAX + 160];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line) return -1;
    char *nt = realloc(*t, *len + (size_t)n + 1);
    if (!nt) return -1;
    memcpy(nt + *len, line, (size_t)n + 1);
    *t = nt;
    *len += (size_t)n;
    return 0;
}

/* The configuration text and the manifest, from the measured files (digest, size, stamp). */
static int build_identity(const scp_elf_set *set, const char *lib, const char *rootfs, const char *root_real,
                          const struct scp_attest_run_conf *conf, uint8_t (*digest)[32], const uint64_t *size,
                          const struct stat *st, struct scp_attest_run_identity *id, scp_err *err) {
    int bad = text_add(&id->config, &id->config_len,
                       "scp-service-config 1\nroot %s\nnet %s\ncaps %016llx\n", rootfs ? "rootfs" : "host",
                       conf->net_none ? "none" : "host", (unsigned long long)conf->keep_caps);
    for (size_t i = 0; i < set->n && !bad; i++) {
        char path[PATH_MAX], hex[65];
        /* the shield runtime is a host file, bound into every container at one path */
        if (!strcmp(set->path[i], lib) && !conf->shield_in_root)
            snprintf(path, sizeof path, "%s", SCP_CONTAINER_SHIELD_PATH);
        else if (inside_path(set->fd[i], root_real, path, sizeof path, err) < 0) return -1;
        scp_hex(digest[i], 32, hex);
        scp_shield_trusted e = {.size = size[i], .dev = (uint64_t)st[i].st_dev, .ino = (uint64_t)st[i].st_ino,
                                .mtime_ns = ts_ns(st[i].st_mtim), .ctime_ns = ts_ns(st[i].st_ctim), .path = path,
                                .given = set->path[i][0] == '/' && strcmp(set->path[i], lib) ? set->path[i] : path};
        memcpy(e.digest, digest[i], 32);
        bad = text_add(&id->config, &id->config_len, "file %s %llu %s%s%s\n", hex, (unsigned long long)size[i], path,
                       strcmp(e.given, path) ? " as " : "", strcmp(e.given, path) ? e.given : "") ||
              scp_shield_trusted_add(&id->manifest, &id->manifest_len, &e);
    }
    if (bad) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "cannot build the configuration (too many or too long paths?)");
    scp_sha256_buf(id->config, id->config_len, id->config_hash);
    return 0;
}

/* scp_attest_program_shielded on an open program */
static int shielded_fd(int fd, const char *path, scp_err *err) {
    int kind = scp_notify_image(fd);
    if (!scp_notify_serves(kind)) return 0;
    int st = kind == SCP_IMAGE_STATIC;
    return scp_fail(err, SCP_E_INVAL, ENOEXEC,
                    "%s %s: an attested program's arguments, secrets, sealed console and protected paths reach only "
                    "a shielded one (%s)",
                    path,
                    st ? "is statically linked, and the shield cannot start in it"
                       : "is a Go program linked at a fixed address (cgo, not PIE), whose own system calls the shield "
                         "cannot trap",
                    st ? "use a dynamically linked build" : "build it with -buildmode=pie");
}

int scp_attest_program_shielded(int root, const char *prog, const char *search_path, scp_err *err) {
    char path[PATH_MAX];
    scp_err ignored;
    int fd = scp_elf_open_prog(root, prog, search_path, path, sizeof path, &ignored);
    if (fd < 0) return 0;
    int rc = shielded_fd(fd, path, err);
    close(fd);
    return rc;
}

int scp_attest_run_measure(const char *prog, const char *shield_lib, const char *rootfs,
                           const struct scp_attest_run_conf *conf, scp_elf_set *set,
                           struct scp_attest_run_identity *id, scp_err *err) {
    static const struct scp_attest_run_conf none;
    if (!conf) conf = &none;
    memset(id, 0, sizeof *id);
    char lib[PATH_MAX], root_real[PATH_MAX] = "";
    if (scp_run_find_shield(shield_lib, lib, sizeof lib, err) < 0) return -1;
    int root = -1;
    if (rootfs) {
        root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0 || rootfs[0] != '/' || !realpath(rootfs, root_real)) {
            if (root >= 0) close(root);
            return scp_fail(err, SCP_E_NOENT, ENOENT, "rootfs %s is not a directory (an absolute path)", rootfs);
        }
        if (!strcmp(root_real, "/")) root_real[0] = 0;
    }
    /* the host's PATH means nothing inside another root */
    const char *search = rootfs ? SCP_ATTEST_RUN_ROOTFS_PATH : getenv("PATH");
    set->n = 0; /* (nothing open yet: the error path closes the set) */
    int r = scp_attest_program_shielded(root, prog, search, err);
    if (r == 0) r = scp_elf_set_open_with(root, prog, search, lib, conf->trusted, conf->ntrusted, set, err);
    /* and what was measured, which is what runs (the file may have changed since the look) */
    if (r == 0) r = shielded_fd(set->fd[0], set->path[0], err);
    if (root >= 0) close(root);
    if (r < 0) {
        if (rootfs) scp_err_prefix(err, "in rootfs %s", rootfs);
        scp_elf_set_close(set, -1);
        return -1;
    }
    uint8_t (*digest)[32] = calloc(set->n, 32);
    uint64_t *size = calloc(set->n, sizeof *size);
    struct stat *st = calloc(set->n, sizeof *st);
    int rc = -1;
    if (!digest || !size || !st) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < set->n; i++)
        if (fstat(set->fd[i], &st[i]) < 0) {
            scp_fail_errno(err, "fstat %s", set->path[i]);
            goto out;
        }
    if (scp_attest_hash_fds(set->fd, set->n, digest, size, err) < 0) goto out;
    for (size_t i = 0; i < set->n; i++) {
        struct stat now;
        /* the stamp lets the shield skip hashing an unchanged file: it must describe what was hashed */
        if (fstat(set->fd[i], &now) < 0 || !same_stamp(&now, &st[i]) || (uint64_t)now.st_size != size[i]) {
            scp_fail(err, SCP_E_INTEGRITY, EAGAIN, "%s changed while it was measured", set->path[i]);
            goto out;
        }
    }
    if (build_identity(set, lib, rootfs, root_real, conf, digest, size, st, id, err) < 0) goto out;
    rc = scp_attest_measure_fold((const uint8_t (*)[32])digest, size, set->n, id->config, id->config_len, id->m, err);
out:
    free(digest);
    free(size);
    free(st);
    if (rc < 0) {
        scp_attest_run_identity_free(id);
        scp_elf_set_close(set, -1);
    }
    return rc;
}
