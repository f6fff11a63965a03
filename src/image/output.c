/* image/output.c - tars written with fixed metadata (owner 0:0, no names, mtime 0, entries in
 * the order given), so that the same content always gives the same bytes and digests.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "image/internal.h"

struct img_tar {
    struct archive *a;
};

static int tar_err(img_tar *t, const char *what, const char *path, scp_err *err) {
    return scp_fail(err, SCP_E_SYS, EIO, "cannot write %s '%s' into the image: %s", what, path, archive_error_string(t->a));
}

img_tar *img_tar_open(int fd, scp_err *err) {
    img_tar *t = calloc(1, sizeof *t);
    if (!t || !(t->a = archive_write_new())) {
        free(t);
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    archive_write_set_format_pax_restricted(t->a);
    archive_write_set_bytes_in_last_block(t->a, 1);
    if (archive_write_open_fd(t->a, fd) != ARCHIVE_OK) {
        scp_fail(err, SCP_E_SYS, EIO, "cannot start a tar: %s", archive_error_string(t->a));
        archive_write_free(t->a);
        free(t);
        return NULL;
    }
    return t;
}

static struct archive_entry *entry(const char *path, mode_t type, unsigned mode, int64_t size) {
    struct archive_entry *e = archive_entry_new();
    if (!e) return NULL;
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, mode & 07777);
    archive_entry_set_size(e, size);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    archive_entry_set_mtime(e, 0, 0);
    return e;
}

int img_tar_dir(img_tar *t, const char *path, unsigned mode, scp_err *err) {
    struct archive_entry *e = entry(path, AE_IFDIR, mode, 0);
    if (!e) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    int r = archive_write_header(t->a, e);
    archive_entry_free(e);
    return r == ARCHIVE_OK ? 0 : tar_err(t, "directory", path, err);
}

int img_tar_symlink(img_tar *t, const char *path, const char *target, scp_err *err) {
    struct archive_entry *e = entry(path, AE_IFLNK, 0777, 0);
    if (!e) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    archive_entry_set_symlink(e, target);
    int r = archive_write_header(t->a, e);
    archive_entry_free(e);
    return r == ARCHIVE_OK ? 0 : tar_err(t, "symlink", path, err);
}

int img_tar_bytes(img_tar *t, const char *path, unsigned mode, const void *p, size_t n, scp_err *err) {
    struct archive_entry *e = entry(path, AE_IFREG, mode, (int64_t)n);
    if (!e) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    int r = archive_write_header(t->a, e);
    archive_entry_free(e);
    if (r != ARCHIVE_OK) return tar_err(t, "file", path, err);
    if (n && archive_write_data(t->a, p, n) != (la_ssize_t)n) return tar_err(t, "file", path, err);
    return 0;
}

int img_tar_file(img_tar *t, const char *path, unsigned mode, int fd, scp_err *err) {
    struct stat st;
    if (fstat(fd, &st) < 0) return scp_fail_errno(err, "cannot stat the source of '%s'", path);
    struct archive_entry *e = entry(path, AE_IFREG, mode, st.st_size);
    if (!e) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    int r = archive_write_header(t->a, e);
    archive_entry_free(e);
    if (r != ARCHIVE_OK) return tar_err(t, "file", path, err);
    static __thread char buf[1 << 16];
    uint64_t off = 0;
    while (off < (uint64_t)st.st_size) {
        ssize_t n = scp_pread_full(fd, buf, sizeof buf, off);
        if (n < 0) return scp_fail_errno(err, "cannot read the source of '%s'", path);
        if (n == 0) return scp_fail(err, SCP_E_SYS, EIO, "the source of '%s' shrank while it was copied", path);
        if (archive_write_data(t->a, buf, (size_t)n) != n) return tar_err(t, "file", path, err);
        off += (uint64_t)n;
    }
    return 0;
}

int img_tar_close(img_tar *t, scp_err *err) {
    int r = archive_write_close(t->a);
    int rc = r == ARCHIVE_OK ? 0 : tar_err(t, "the end of", "tar", err);
    archive_write_free(t->a);
    free(t);
    return rc;
}
