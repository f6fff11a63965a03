/* image/trusted.c - the trusted-files manifest of a staged image root: every regular file with
 * its SHA-256, size and mode, sorted by path, so that the same tree always gives the same bytes.
 * The walk never follows a symlink; files are read through descriptors opened with O_NOFOLLOW
 * under directories the walk itself opened.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "image/internal.h"

int img_digest_fd(int fd, char out[IMG_DIGEST_LEN + 1], uint64_t *size, scp_err *err) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        return scp_fail(err, SCP_E_CRYPTO, EIO, "sha256 unavailable");
    }
    static __thread uint8_t buf[1 << 16];
    uint64_t off = 0;
    for (;;) {
        ssize_t r = scp_pread_full(fd, buf, sizeof buf, off);
        if (r < 0) {
            EVP_MD_CTX_free(c);
            return scp_fail_errno(err, "read");
        }
        if (r == 0) break;
        EVP_DigestUpdate(c, buf, (size_t)r);
        off += (uint64_t)r;
    }
    uint8_t md[32];
    EVP_DigestFinal_ex(c, md, NULL);
    EVP_MD_CTX_free(c);
    memcpy(out, "sha256:", 7);
    scp_hex(md, 32, out + 7);
    if (size) *size = off;
    return 0;
}

int img_digest_buf(const void *p, size_t n, char out[IMG_DIGEST_LEN + 1]) {
    uint8_t md[32];
    if (EVP_Digest(p, n, md, NULL, EVP_sha256(), NULL) != 1) return -1;
    memcpy(out, "sha256:", 7);
    scp_hex(md, 32, out + 7);
    return 0;
}

int img_strlist_add(img_strlist *l, const char *s) {
    if (l->n == l->cap) {
        size_t c = l->cap ? l->cap * 2 : 256;
        char **v = realloc(l->v, c * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = c;
    }
    if (!(l->v[l->n] = strdup(s))) return -1;
    l->n++;
    return 0;
}

void img_strlist_free(img_strlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int skipped(const char *path, const char *const *skip, size_t n_skip) {
    for (size_t i = 0; i < n_skip; i++) {
        if (scp_path_within(path, skip[i])) return 1;
    }
    return 0;
}

/* Collect the regular files under dfd, whose image path is `prefix` ("" for the root). */
static int walk(int dfd, const char *prefix, const char *const *skip, size_t n_skip, img_strlist *out, int depth,
                scp_err *err) {
    if (depth > 128) return scp_fail(err, SCP_E_NOTSUP, ELOOP, "directories nested deeper than 128 at '%s'", prefix);
    int d2 = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* its own offset, unlike dup */
    DIR *d = d2 < 0 ? NULL : fdopendir(d2);
    if (!d) {
        if (d2 >= 0) close(d2);
        return scp_fail_errno(err, "cannot read directory '%s/'", prefix);
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", prefix, de->d_name) >= sizeof path) {
            rc = scp_fail(err, SCP_E_NOTSUP, ENAMETOOLONG, "path too long under '%s'", prefix);
            break;
        }
        if (skipped(path, skip, n_skip)) continue;
        struct stat st;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = scp_fail_errno(err, "cannot stat '%s'", path);
            break;
        }
        if (S_ISREG(st.st_mode)) {
            if (img_strlist_add(out, path) < 0) rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        } else if (S_ISDIR(st.st_mode)) {
            int c = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (c < 0) {
                rc = scp_fail_errno(err, "cannot open '%s'", path);
                break;
            }
            rc = walk(c, path, skip, n_skip, out, depth + 1, err);
            close(c);
        }
    }
    closedir(d);
    return rc;
}

/* A path on one line: control bytes, DEL and backslash as \xHH (out has room for 4x). */
static size_t escape_path(const char *p, char *out) {
    size_t o = 0;
    for (const unsigned char *c = (const unsigned char *)p; *c; c++) {
        if (*c < 0x20 || *c == 0x7f || *c == '\\')
            o += (size_t)sprintf(out + o, "\\x%02x", *c);
        else
            out[o++] = (char)*c;
    }
    return o;
}

size_t img_trusted_count(const char *m, size_t m_len, const char *p) {
    char *want = malloc(4 * strlen(p) + 1);
    if (!want) return 0;
    size_t wl = escape_path(p, want), n = 0;
    for (const char *line = m, *end = m + m_len; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl) nl = end;
        /* "<hex> <size> <mode> <path>": the path follows the third space */
        const char *f = line;
        for (int k = 0; k < 3 && f; k++) {
            f = memchr(f, ' ', (size_t)(nl - f));
            if (f) f++;
        }
        if (f && (size_t)(nl - f) >= wl && !memcmp(f, want, wl) && ((size_t)(nl - f) == wl || f[wl] == '/'))
            n++;
        line = nl + 1;
    }
    free(want);
    return n;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int img_trusted_manifest(int root, const char *const *skip, size_t n_skip, char **out, size_t *out_len,
                         size_t *n_files, scp_err *err) {
    img_strlist l = {0};
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = walk(root, "", skip, n_skip, &l, 0, err);
    if (rc == 0 && l.n) qsort(l.v, l.n, sizeof *l.v, cmp_str); /* qsort(NULL, 0) is undefined */
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        int fd = openat(root, l.v[i] + 1, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
            rc = scp_fail_errno(err, "cannot open '%s'", l.v[i]);
            if (fd >= 0) close(fd);
            break;
        }
        char dg[IMG_DIGEST_LEN + 1];
        uint64_t sz;
        rc = img_digest_fd(fd, dg, &sz, err);
        close(fd);
        if (rc < 0) break;
        size_t need = 4 * strlen(l.v[i]) + 100;
        if (len + need > cap) {
            cap = (len + need) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
                break;
            }
            buf = nb;
        }
        len += (size_t)snprintf(buf + len, cap - len, "%s %llu %04o ", dg + 7, (unsigned long long)sz,
                                (unsigned)(st.st_mode & 07777));
        len += escape_path(l.v[i], buf + len);
        buf[len++] = '\n';
        buf[len] = '\0'; /* need left room: the manifest is also a C string */
    }
    size_t n = l.n;
    img_strlist_free(&l);
    if (rc < 0) {
        free(buf);
        return -1;
    }
    if (!buf) buf = calloc(1, 1);
    *out = buf;
    *out_len = len;
    *n_files = n;
    return 0;
}

/* One "\xHH" escape of escape_path at p, or -1. */
static int unescape_byte(const char *p) {
    uint8_t b;
    char hx[3] = {p[0], p[0] ? p[1] : 0, 0};
    return p[0] && p[1] && scp_unhex(hx, &b, 1) == 0 ? b : -1;
}

int img_trusted_parse(char *text, size_t len, scp_shield_trusted **out, size_t *n, scp_err *err) {
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    scp_shield_trusted *v = calloc(lines + 1, sizeof *v);
    if (!v) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    size_t k = 0;
    for (char *p = text, *end = text + len; p < end; k++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        *nl = 0;
        /* "<sha256 hex> <size> <mode octal> <path>" (img_trusted_manifest) */
        char hex[65], *sp = strchr(p, ' ');
        char *rest = NULL;
        unsigned long long size = 0;
        if (sp && sp - p == 64) {
            memcpy(hex, p, 64);
            hex[64] = 0;
            size = strtoull(sp + 1, &rest, 10);
        }
        char *path = rest && *rest == ' ' ? strchr(rest + 1, ' ') : NULL;
        if (!path || scp_unhex(hex, v[k].digest, 32) < 0 || path[1] != '/') {
            free(v);
            return scp_fail(err, SCP_E_FORMAT, EINVAL, "malformed line %zu of /scp/trusted", k + 1);
        }
        path++;
        char *w = path;
        for (const char *r = path; *r; r++) {
            int b = *r == '\\' ? unescape_byte(r + 2) : *r;
            if (*r == '\\' && (r[1] != 'x' || b <= 0)) {
                free(v);
                return scp_fail(err, SCP_E_FORMAT, EINVAL, "malformed escape on line %zu of /scp/trusted", k + 1);
            }
            if (*r == '\\') r += 3;
            *w++ = (char)b;
        }
        *w = 0;
        v[k].size = size;
        v[k].path = path;
        p = nl + 1;
    }
    *out = v;
    *n = k;
    return 0;
}
