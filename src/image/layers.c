/* image/layers.c - apply an image's layers to a staging root, as a container engine would.
 *
 * Every entry is created with *at calls relative to its parent directory, and the parent is
 * opened with openat2(RESOLVE_IN_ROOT): a symlink in an earlier layer that points at "/etc" or
 * "../../.." resolves inside the staging root, never on the host. The final component is never
 * followed (O_NOFOLLOW, symlinkat, linkat without AT_SYMLINK_FOLLOW). Whiteouts (OCI image
 * spec, "Representing Changes"): ".wh.NAME" removes NAME of a lower layer; ".wh..wh..opq"
 * empties its directory of everything the lower layers put there.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/util.h"
#include "image/internal.h"

#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"

/* ---- removal ------------------------------------------------------------------------------- */

static int remove_children(int dfd, scp_err *err);

static int remove_entry(int dfd, const char *name, scp_err *err) {
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT) return 0;
    if (errno != EISDIR && errno != EPERM) return scp_fail_errno(err, "cannot remove '%s'", name);
    int c = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (c < 0) return scp_fail_errno(err, "cannot open '%s'", name);
    int r = remove_children(c, err);
    close(c);
    if (r < 0) return -1;
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT) return scp_fail_errno(err, "cannot remove '%s'", name);
    return 0;
}

static int remove_children(int dfd, scp_err *err) {
    int d2 = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* its own offset, unlike dup */
    if (d2 < 0) return scp_fail_errno(err, "dup");
    DIR *d = fdopendir(d2);
    if (!d) {
        close(d2);
        return scp_fail_errno(err, "fdopendir");
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        rc = remove_entry(dfd, de->d_name, err);
    }
    closedir(d);
    return rc;
}

int img_remove_tree(int root, const char *path, scp_err *err) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    const char *base = slash ? slash + 1 : buf;
    if (slash) *slash = '\0';
    int p = slash ? openat(root, buf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : dup(root);
    if (p < 0) return errno == ENOENT ? 0 : scp_fail_errno(err, "cannot open '%s'", buf);
    int r = *base ? remove_entry(p, base, err) : remove_children(p, err);
    close(p);
    return r;
}

/* ---- one layer ------------------------------------------------------------------------------ */

/* The names a layer created are kept (img_strlist), so that an opaque whiteout, which may come
 * after them in the tar, spares them. */

/* Empty directory `dir` (relative) of entries not created by this layer. */
static int opaque(int root, const char *dir, const img_strlist *mine, scp_err *err) {
    int dfd = img_open_in_root(root, dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0) return errno == ENOENT ? 0 : scp_fail_errno(err, "cannot open '%s'", dir);
    int d2 = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* its own offset, unlike dup */
    DIR *d = d2 < 0 ? NULL : fdopendir(d2);
    if (!d) {
        if (d2 >= 0) close(d2);
        close(dfd);
        return scp_fail_errno(err, "cannot read '%s'", dir);
    }
    int rc = 0;
    struct dirent *de;
    size_t dl = strlen(dir);
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char full[PATH_MAX];
        snprintf(full, sizeof full, "%s%s%s", dir, dl ? "/" : "", de->d_name);
        int keep = 0;
        for (size_t i = 0; i < mine->n && !keep; i++) keep = strcmp(mine->v[i], full) == 0;
        if (!keep) rc = remove_entry(dfd, de->d_name, err);
    }
    closedir(d);
    close(dfd);
    return rc;
}

/* Split a cleaned path into parent directory and base name (in buf). */
static void split(const char *path, char *buf, size_t bufsz, const char **dir, const char **base) {
    snprintf(buf, bufsz, "%s", path);
    size_t l = strlen(buf);
    while (l > 1 && buf[l - 1] == '/') buf[--l] = '\0';
    char *s = strrchr(buf, '/');
    if (s) {
        *s = '\0';
        *dir = buf;
        *base = s + 1;
    } else {
        *dir = "";
        *base = buf;
    }
}

/* The parent of an entry, created if a layer did not list it (as engines do). */
static int parent_fd(int root, const char *dir, scp_err *err) {
    int fd = img_open_in_root(root, dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0 || errno != ENOENT) return fd >= 0 ? fd : scp_fail_errno(err, "cannot open directory '/%s'", dir);
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            const char *d, *b;
            char sb[PATH_MAX];
            split(tmp, sb, sizeof sb, &d, &b);
            int pf = img_open_in_root(root, d, O_RDONLY | O_DIRECTORY);
            if (pf < 0) return scp_fail_errno(err, "cannot open directory '/%s'", d);
            int r = mkdirat(pf, b, 0755);
            close(pf);
            if (r < 0 && errno != EEXIST) return scp_fail_errno(err, "cannot create '/%s'", tmp);
            *p = c;
            if (!c) break;
        }
    }
    fd = img_open_in_root(root, dir, O_RDONLY | O_DIRECTORY);
    return fd >= 0 ? fd : scp_fail_errno(err, "cannot open directory '/%s'", dir);
}

static void set_meta(int pfd, const char *base, struct archive_entry *e, int is_link) {
    if (geteuid() == 0)
        (void)!fchownat(pfd, base, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e), AT_SYMLINK_NOFOLLOW);
    if (!is_link) (void)!fchmodat(pfd, base, archive_entry_perm(e) & 07777, 0);
    struct timespec ts[2] = {{archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                             {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
    (void)!utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
}

static int apply_entry(struct archive *a, struct archive_entry *e, const char *path, int root, img_strlist *mine,
                       scp_err *err) {
    char sb[PATH_MAX];
    const char *dir, *base;
    split(path, sb, sizeof sb, &dir, &base);
    if (!strcmp(base, WH_OPAQUE)) return opaque(root, dir, mine, err);
    int pfd = parent_fd(root, dir, err);
    if (pfd < 0) return -1;
    int rc = -1;
    if (!strncmp(base, WH_PREFIX, strlen(WH_PREFIX))) {
        rc = remove_entry(pfd, base + strlen(WH_PREFIX), err);
        close(pfd);
        return rc;
    }
    mode_t t = archive_entry_filetype(e);
    const char *hl = archive_entry_hardlink(e);
    struct stat st;
    int exists = fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (exists && !(t == AE_IFDIR && S_ISDIR(st.st_mode)) && remove_entry(pfd, base, err) < 0) goto out;
    if (hl) {
        char hb[PATH_MAX];
        const char *hd, *hbase;
        const char *clean = hl;
        while (clean[0] == '.' && clean[1] == '/') clean += 2;
        while (clean[0] == '/') clean++;
        split(clean, hb, sizeof hb, &hd, &hbase);
        int tfd = img_open_in_root(root, hd, O_RDONLY | O_DIRECTORY);
        if (tfd < 0) {
            scp_fail_errno(err, "hard link '/%s' to '/%s': no such directory", path, clean);
            goto out;
        }
        int r = linkat(tfd, hbase, pfd, base, 0);
        close(tfd);
        if (r < 0) {
            scp_fail_errno(err, "cannot link '/%s' to '/%s'", path, clean);
            goto out;
        }
    } else if (t == AE_IFDIR) {
        if (!(exists && S_ISDIR(st.st_mode)) && mkdirat(pfd, base, 0755) < 0) {
            scp_fail_errno(err, "cannot create directory '/%s'", path);
            goto out;
        }
        set_meta(pfd, base, e, 0);
    } else if (t == AE_IFLNK) {
        const char *target = archive_entry_symlink(e);
        if (!target || symlinkat(target, pfd, base) < 0) {
            scp_fail_errno(err, "cannot create symlink '/%s'", path);
            goto out;
        }
        set_meta(pfd, base, e, 1);
    } else if (t == AE_IFREG) {
        int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            scp_fail_errno(err, "cannot create '/%s'", path);
            goto out;
        }
        int dr = archive_read_data_into_fd(a, fd);
        if (close(fd) < 0 || dr != ARCHIVE_OK) {
            scp_fail(err, SCP_E_FORMAT, EIO, "cannot extract '/%s': %s", path, archive_error_string(a));
            goto out;
        }
        set_meta(pfd, base, e, 0);
    } else if (t == AE_IFIFO) {
        if (mkfifoat(pfd, base, 0600) < 0) {
            scp_fail_errno(err, "cannot create fifo '/%s'", path);
            goto out;
        }
        set_meta(pfd, base, e, 0);
    } /* character and block devices are skipped: the container engine provides /dev */
    rc = img_strlist_add(mine, path) < 0 ? scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory") : 0;
out:
    close(pfd);
    return rc;
}

static int apply_layer(const img_src *src, size_t i, int root, img_bar_fn bar, uint64_t base, uint64_t total,
                       scp_err *err) {
    const img_layer *L = &src->layers[i];
    char full[PATH_MAX * 2];
    if (L->path[0] == '/') snprintf(full, sizeof full, "%s", L->path);
    else snprintf(full, sizeof full, "%s/%s", src->dir, L->path);
    struct archive *a = archive_read_new();
    if (!a) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    img_strlist mine = {0};
    int rc = -1;
    if (archive_read_open_filename(a, full, 1 << 16) != ARCHIVE_OK) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "layer %zu (%s) is not a tar: %s", i, L->digest, archive_error_string(a));
        goto out;
    }
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            scp_fail(err, SCP_E_FORMAT, EINVAL, "layer %zu (%s) is malformed: %s", i, L->digest, archive_error_string(a));
            goto out;
        }
        char name[PATH_MAX];
        const char *raw = archive_entry_pathname(e);
        int n = raw ? img_clean_name(raw, name, sizeof name) : -1;
        if (n < 0) {
            scp_fail(err, SCP_E_FORMAT, EINVAL, "layer %zu holds an unsafe name '%s'", i, raw ? raw : "");
            goto out;
        }
        if (n == 0) continue; /* "./": the root directory itself */
        if (apply_entry(a, e, name, root, &mine, err) < 0) {
            scp_err_prefix(err, "layer %zu", i);
            goto out;
        }
        if (bar) bar(base + (uint64_t)archive_filter_bytes(a, -1), total);
    }
    rc = 0;
out:
    img_strlist_free(&mine);
    archive_read_free(a);
    return rc;
}

int img_apply_layers(const img_src *src, int root, img_progress_fn progress, scp_err *err) {
    return img_apply_layers_bar(src, root, progress, NULL, err);
}

int img_apply_layers_bar(const img_src *src, int root, img_progress_fn progress, img_bar_fn bar, scp_err *err) {
    uint64_t total = 0, base = 0;
    for (size_t i = 0; i < src->n_layers; i++) total += src->layers[i].size;
    for (size_t i = 0; i < src->n_layers; i++) {
        if (progress) {
            char m[160];
            snprintf(m, sizeof m, "layer %zu/%zu %.19s (%llu bytes)", i + 1, src->n_layers, src->layers[i].digest,
                     (unsigned long long)src->layers[i].size);
            progress(m);
        }
        if (apply_layer(src, i, root, bar, base, total, err) < 0) return -1;
        base += src->layers[i].size;
    }
    if (bar) bar(total, total);
    return 0;
}

/* name (clean, relative) lies strictly below the absolute directory path p */
static int below(const char *name, const char *p) {
    size_t l = strlen(p + 1);
    return !strncmp(name, p + 1, l) && name[l] == '/';
}

static int below_any(const char *name, const char *const *paths, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (below(name, paths[k])) return 1;
    return 0;
}

int img_filter_layer(img_src *src, size_t i, const char *const *paths, size_t n, const char *out_path,
                     size_t *dropped, scp_err *err) {
    img_layer *L = &src->layers[i];
    char full[PATH_MAX * 2];
    if (L->path[0] == '/') snprintf(full, sizeof full, "%s", L->path);
    else snprintf(full, sizeof full, "%s/%s", src->dir, L->path);
    struct archive *a = archive_read_new(), *w = archive_write_new();
    char *buf = malloc(1 << 16);
    int rc = -1;
    *dropped = 0;
    if (!a || !w || !buf) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    archive_write_set_format_pax_restricted(w);
    archive_write_add_filter_none(w);
    if (archive_read_open_filename(a, full, 1 << 16) != ARCHIVE_OK ||
        archive_write_open_filename(w, out_path) != ARCHIVE_OK) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "layer %zu (%s): %s", i, L->digest,
                 archive_error_string(a) ? archive_error_string(a) : archive_error_string(w));
        goto out;
    }
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        char name[PATH_MAX], target[PATH_MAX];
        const char *raw = r == ARCHIVE_OK || r == ARCHIVE_WARN ? archive_entry_pathname(e) : NULL;
        if (!raw || img_clean_name(raw, name, sizeof name) < 0) {
            scp_fail(err, SCP_E_FORMAT, EINVAL, "layer %zu is malformed or holds an unsafe name", i);
            goto out;
        }
        if (below_any(name, paths, n)) { /* carried into the protected volume instead */
            (*dropped)++;
            continue;
        }
        const char *hl = archive_entry_hardlink(e);
        if (hl && img_clean_name(hl, target, sizeof target) >= 0 && below_any(target, paths, n)) {
            scp_fail(err, SCP_E_NOTSUP, ENOTSUP,
                     "layer %zu: /%s is a hard link to /%s, a file under a protected path (not supported)", i, name,
                     target);
            goto out;
        }
        if (archive_write_header(w, e) != ARCHIVE_OK) {
            scp_fail(err, SCP_E_SYS, EIO, "cannot write layer %zu again: %s", i, archive_error_string(w));
            goto out;
        }
        ssize_t got;
        while ((got = archive_read_data(a, buf, 1 << 16)) > 0)
            if (archive_write_data(w, buf, (size_t)got) != got) {
                scp_fail(err, SCP_E_SYS, EIO, "cannot write layer %zu again: %s", i, archive_error_string(w));
                goto out;
            }
        if (got < 0) {
            scp_fail(err, SCP_E_FORMAT, EINVAL, "layer %zu: %s", i, archive_error_string(a));
            goto out;
        }
    }
    if (archive_write_close(w) != ARCHIVE_OK) {
        scp_fail(err, SCP_E_SYS, EIO, "cannot write layer %zu again: %s", i, archive_error_string(w));
        goto out;
    }
    rc = 0;
out:
    free(buf);
    if (a) archive_read_free(a);
    if (w) archive_write_free(w);
    return rc;
}
