/* image/source.c - where an image comes from: a `docker save` archive, an OCI layout (a
 * directory or a tar of one) or the local engine; and what its manifest says (configuration,
 * layers). Archives are spooled as files into a private directory; nothing is held whole in
 * memory but the JSON documents (at most IMG_MAX_JSON bytes each).
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "image/internal.h"

/* ---- small helpers ------------------------------------------------------------------------ */

int img_digest_ok(const char *d) {
    if (!d || strncmp(d, "sha256:", 7) != 0 || strlen(d) != IMG_DIGEST_LEN) return 0;
    for (const char *p = d + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

json_t *img_json_read(const char *dir, const char *path, scp_err *err) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        scp_fail_errno(err, "cannot open '%s'", dir);
        return NULL;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    int r = scp_read_file(dfd, path, IMG_MAX_JSON, &buf, &len, err);
    close(dfd);
    if (r < 0) return NULL;
    json_error_t je;
    json_t *j = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &je);
    free(buf);
    if (!j) scp_fail(err, SCP_E_FORMAT, EINVAL, "'%s' is not valid JSON: %s (line %d)", path, je.text, je.line);
    return j;
}

int img_clean_name(const char *raw, char *out, size_t outsz) {
    size_t o = 0;
    const char *p = raw;
    while (*p) {
        while (*p == '/') p++;
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 2 && p[0] == '.' && p[1] == '.') return -1;
        if (l && !(l == 1 && p[0] == '.')) {
            if (o + l + 2 > outsz) return -1;
            if (o) out[o++] = '/';
            memcpy(out + o, p, l);
            o += l;
        }
        p += l;
    }
    out[o] = '\0';
    return (int)o;
}

/* mkdir -p of a relative path under dirfd (components only, not the last when !last). */
static int mkdirs_at(int dirfd, const char *name, int last, scp_err *err) {
    char buf[PATH_MAX];
    if (strlen(name) >= sizeof buf) return scp_fail(err, SCP_E_FORMAT, ENAMETOOLONG, "name too long in archive");
    strcpy(buf, name);
    for (char *p = buf; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        if (mkdirat(dirfd, buf, 0755) < 0 && errno != EEXIST) return scp_fail_errno(err, "cannot create '%s'", buf);
        *p = '/';
    }
    size_t l = strlen(buf);
    if (last && l && buf[l - 1] != '/' && mkdirat(dirfd, buf, 0755) < 0 && errno != EEXIST)
        return scp_fail_errno(err, "cannot create '%s'", buf);
    return 0;
}

int img_untar_flat(int fd, int dirfd, scp_err *err) {
    struct archive *a = archive_read_new();
    if (!a) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    int rc = -1, n = 0;
    if (archive_read_open_fd(a, fd, 1 << 16) != ARCHIVE_OK) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "not an image archive: %s", archive_error_string(a));
        goto out;
    }
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            scp_fail(err, SCP_E_FORMAT, EINVAL, "image archive is malformed: %s", archive_error_string(a));
            goto out;
        }
        const char *raw = archive_entry_pathname(e);
        char name[PATH_MAX];
        if (!raw || img_clean_name(raw, name, sizeof name) <= 0) {
            scp_fail(err, SCP_E_FORMAT, EINVAL, "image archive holds an unsafe name '%s'", raw ? raw : "");
            goto out;
        }
        mode_t t = archive_entry_filetype(e);
        if (t == AE_IFDIR) {
            if (mkdirs_at(dirfd, name, 1, err) < 0) goto out;
            continue;
        }
        if (t != AE_IFREG) continue; /* Docker's legacy layout has a symlink or two: not needed */
        if (mkdirs_at(dirfd, name, 0, err) < 0) goto out;
        int ofd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (ofd < 0) {
            scp_fail_errno(err, "cannot spool '%s' from the archive", name);
            goto out;
        }
        int dr = archive_read_data_into_fd(a, ofd);
        if (close(ofd) < 0 && dr == ARCHIVE_OK) dr = ARCHIVE_FATAL;
        if (dr != ARCHIVE_OK) {
            scp_fail(err, SCP_E_FORMAT, EIO, "cannot read '%s' from the archive: %s", name, archive_error_string(a));
            goto out;
        }
        n++;
    }
    if (n == 0) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "the archive holds no files: not an image");
        goto out;
    }
    rc = 0;
out:
    archive_read_free(a);
    return rc;
}

/* ---- parsing -------------------------------------------------------------------------------- */

static int blob_path(const char *digest, char *out, size_t outsz, scp_err *err) {
    if (!img_digest_ok(digest)) return scp_fail(err, SCP_E_FORMAT, EINVAL, "malformed digest '%s'", digest ? digest : "");
    snprintf(out, outsz, "blobs/sha256/%s", digest + 7);
    return 0;
}

/* Check that dir/path holds exactly the bytes of `digest`. */
static int check_blob(const char *dir, const char *path, const char *digest, uint64_t *size, scp_err *err) {
    char full[PATH_MAX * 2];
    snprintf(full, sizeof full, "%s/%s", dir, path);
    int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return scp_fail_errno(err, "the image lacks '%s'", path);
    char got[IMG_DIGEST_LEN + 1];
    int r = img_digest_fd(fd, got, size, err);
    close(fd);
    if (r < 0) return -1;
    if (digest && strcmp(got, digest) != 0)
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "'%s' does not match its digest %s (it is %s)", path, digest, got);
    return 0;
}

/* An OCI manifest (the document at blobs/<digest>). */
static int parse_oci_manifest(img_src *s, const char *digest, scp_err *err) {
    char p[PATH_MAX];
    if (blob_path(digest, p, sizeof p, err) < 0 || check_blob(s->dir, p, digest, NULL, err) < 0) return -1;
    json_t *m = img_json_read(s->dir, p, err);
    if (!m) return -1;
    int rc = -1;
    json_t *cfg = json_object_get(m, "config"), *layers = json_object_get(m, "layers");
    const char *cd = json_string_value(json_object_get(cfg, "digest"));
    if (!json_is_array(layers) || !img_digest_ok(cd)) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "the image manifest lacks config.digest or layers");
        goto out;
    }
    if (json_array_size(layers) > IMG_MAX_LAYERS) {
        scp_fail(err, SCP_E_NOTSUP, E2BIG, "the image has %zu layers (at most %d)", json_array_size(layers), IMG_MAX_LAYERS);
        goto out;
    }
    snprintf(s->config_digest, sizeof s->config_digest, "%s", cd);
    size_t i;
    json_t *l;
    for (i = 0; i < json_array_size(layers) && (l = json_array_get(layers, i)) != NULL; i++) {
        img_layer *L = &s->layers[i];
        const char *d = json_string_value(json_object_get(l, "digest"));
        const char *mt = json_string_value(json_object_get(l, "mediaType"));
        if (blob_path(d, L->path, sizeof L->path, err) < 0) goto out;
        snprintf(L->digest, sizeof L->digest, "%s", d);
        snprintf(L->media, sizeof L->media, "%s", mt ? mt : "application/vnd.oci.image.layer.v1.tar");
        if (strstr(L->media, "nondistributable") || strstr(L->media, "foreign")) {
            scp_fail(err, SCP_E_NOTSUP, ENOTSUP, "layer %zu is a foreign layer (%s): not supported", i, L->media);
            goto out;
        }
        if (check_blob(s->dir, L->path, d, &L->size, err) < 0) goto out;
    }
    s->n_layers = json_array_size(layers);
    char cp[PATH_MAX];
    if (blob_path(cd, cp, sizeof cp, err) < 0 || check_blob(s->dir, cp, cd, NULL, err) < 0) goto out;
    s->config = img_json_read(s->dir, cp, err);
    if (!s->config) goto out;
    rc = 0;
out:
    json_decref(m);
    return rc;
}

/* index.json: the first image manifest (from a nested index, the linux/amd64 one). */
static int parse_oci_index(img_src *s, const char *path, int depth, scp_err *err) {
    json_t *ix = img_json_read(s->dir, path, err);
    if (!ix) return -1;
    int rc = -1;
    json_t *ms = json_object_get(ix, "manifests");
    if (!json_is_array(ms) || json_array_size(ms) == 0) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "'%s' lists no manifests", path);
        goto out;
    }
    size_t i;
    json_t *m;
    for (i = 0; i < json_array_size(ms) && (m = json_array_get(ms, i)) != NULL; i++) {
        const char *mt = json_string_value(json_object_get(m, "mediaType"));
        const char *d = json_string_value(json_object_get(m, "digest"));
        json_t *plat = json_object_get(m, "platform");
        const char *arch = json_string_value(json_object_get(plat, "architecture"));
        if (plat && arch && strcmp(arch, "amd64") != 0) continue;
        if (!mt || !d) continue;
        const char *ref = json_string_value(json_object_get(json_object_get(m, "annotations"), "io.containerd.image.name"));
        if (ref && !s->repo_tag[0]) snprintf(s->repo_tag, sizeof s->repo_tag, "%s", ref);
        if (strstr(mt, "index") || strstr(mt, "manifest.list")) {
            if (depth > 2) continue;
            char p[PATH_MAX];
            if (blob_path(d, p, sizeof p, err) < 0 || check_blob(s->dir, p, d, NULL, err) < 0) goto out;
            rc = parse_oci_index(s, p, depth + 1, err);
            goto out;
        }
        if (strstr(mt, "manifest")) {
            rc = parse_oci_manifest(s, d, err);
            goto out;
        }
    }
    scp_fail(err, SCP_E_FORMAT, EINVAL, "'%s' names no linux/amd64 image manifest", path);
out:
    json_decref(ix);
    return rc;
}

/* manifest.json of `docker save`: [{Config, RepoTags, Layers}]. Layers are the uncompressed
 * tars, so their digests are the configuration's rootfs.diff_ids, which are checked. */
static int parse_docker_manifest(img_src *s, scp_err *err) {
    json_t *m = img_json_read(s->dir, "manifest.json", err);
    if (!m) return -1;
    int rc = -1;
    json_t *e = json_array_get(m, 0);
    const char *cfg = json_string_value(json_object_get(e, "Config"));
    json_t *layers = json_object_get(e, "Layers");
    char cfgname[PATH_MAX];
    if (!cfg || !json_is_array(layers) || img_clean_name(cfg, cfgname, sizeof cfgname) <= 0) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "manifest.json lacks Config or Layers");
        goto out;
    }
    if (json_array_size(layers) > IMG_MAX_LAYERS) {
        scp_fail(err, SCP_E_NOTSUP, E2BIG, "the image has %zu layers (at most %d)", json_array_size(layers), IMG_MAX_LAYERS);
        goto out;
    }
    const char *tag = json_string_value(json_array_get(json_object_get(e, "RepoTags"), 0));
    if (tag) snprintf(s->repo_tag, sizeof s->repo_tag, "%s", tag);
    uint64_t sz;
    if (check_blob(s->dir, cfgname, NULL, &sz, err) < 0) goto out;
    int cfd = -1;
    {
        char full[PATH_MAX * 2];
        snprintf(full, sizeof full, "%s/%s", s->dir, cfgname);
        cfd = open(full, O_RDONLY | O_CLOEXEC);
        if (cfd < 0 || img_digest_fd(cfd, s->config_digest, NULL, err) < 0) {
            if (cfd >= 0) close(cfd);
            else scp_fail_errno(err, "cannot open '%s'", cfgname);
            goto out;
        }
        close(cfd);
    }
    s->config = img_json_read(s->dir, cfgname, err);
    if (!s->config) goto out;
    json_t *diff = json_object_get(json_object_get(s->config, "rootfs"), "diff_ids");
    if (!json_is_array(diff) || json_array_size(diff) != json_array_size(layers)) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "the configuration's rootfs.diff_ids do not match manifest.json's layers");
        goto out;
    }
    size_t i;
    json_t *l;
    for (i = 0; i < json_array_size(layers) && (l = json_array_get(layers, i)) != NULL; i++) {
        img_layer *L = &s->layers[i];
        const char *p = json_string_value(l);
        const char *d = json_string_value(json_array_get(diff, i));
        if (!p || img_clean_name(p, L->path, sizeof L->path) <= 0 || !img_digest_ok(d)) {
            scp_fail(err, SCP_E_FORMAT, EINVAL, "manifest.json layer %zu is malformed", i);
            goto out;
        }
        snprintf(L->digest, sizeof L->digest, "%s", d);
        snprintf(L->media, sizeof L->media, "application/vnd.oci.image.layer.v1.tar");
        /* diff_ids name the uncompressed tar; a docker save layer is one. (A compressed one
         * would fail here: Docker never writes them into this form.) */
        if (check_blob(s->dir, L->path, d, &L->size, err) < 0) goto out;
    }
    s->n_layers = json_array_size(layers);
    rc = 0;
out:
    json_decref(m);
    return rc;
}

static int parse_dir(img_src *s, scp_err *err) {
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/manifest.json", s->dir);
    int has_docker = access(p, F_OK) == 0;
    snprintf(p, sizeof p, "%s/index.json", s->dir);
    int has_oci = access(p, F_OK) == 0;
    int r;
    if (has_docker) /* Docker's own form first: it carries RepoTags and diff_id checks */
        r = parse_docker_manifest(s, err);
    else if (has_oci)
        r = parse_oci_index(s, "index.json", 0, err);
    else
        return scp_fail(err, SCP_E_FORMAT, EINVAL, "'%s' is not an image: neither manifest.json nor index.json", s->dir);
    if (r < 0) return -1;
    if (!json_is_object(s->config)) return scp_fail(err, SCP_E_FORMAT, EINVAL, "the image configuration is not an object");
    const char *os = json_string_value(json_object_get(s->config, "os"));
    const char *arch = json_string_value(json_object_get(s->config, "architecture"));
    if ((os && strcmp(os, "linux") != 0) || (arch && strcmp(arch, "amd64") != 0))
        return scp_fail(err, SCP_E_NOTSUP, ENOTSUP, "the image is for %s/%s; only linux/amd64 is supported", os ? os : "?",
                        arch ? arch : "?");
    return 0;
}

static int make_spool(const char *tmpdir, img_src *s, scp_err *err) {
    const char *t = tmpdir ? tmpdir : getenv("TMPDIR");
    if (!t || !*t) t = "/var/tmp";
    snprintf(s->dir, sizeof s->dir, "%s/scp-image-XXXXXX", t);
    if (!mkdtemp(s->dir)) return scp_fail_errno(err, "cannot create a spool directory under '%s'", t);
    s->owned = 1;
    return 0;
}

int img_src_open(const char *from, const char *tmpdir, img_src *s, scp_err *err) {
    memset(s, 0, sizeof *s);
    struct stat st;
    int r;
    if (stat(from, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (!realpath(from, s->dir)) return scp_fail_errno(err, "cannot resolve '%s'", from);
        r = parse_dir(s, err);
    } else if (strcmp(from, "-") == 0 || (stat(from, &st) == 0 && S_ISREG(st.st_mode))) {
        int fd = strcmp(from, "-") == 0 ? dup(0) : open(from, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return scp_fail_errno(err, "cannot open '%s'", from);
        r = make_spool(tmpdir, s, err);
        int dfd = r < 0 ? -1 : open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (r == 0 && dfd < 0) r = scp_fail_errno(err, "cannot open '%s'", s->dir);
        if (r == 0) r = img_untar_flat(fd, dfd, err);
        if (r < 0) scp_err_prefix(err, "reading '%s'", from);
        if (dfd >= 0) close(dfd);
        close(fd);
        if (r == 0) r = parse_dir(s, err);
    } else if (strchr(from, '/') && from[0] == '/') {
        return scp_fail(err, SCP_E_NOENT, ENOENT, "no image archive or directory at '%s'", from);
    } else {
        r = make_spool(tmpdir, s, err);
        int dfd = r < 0 ? -1 : open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (r == 0 && dfd < 0) r = scp_fail_errno(err, "cannot open '%s'", s->dir);
        if (r == 0) r = img_engine_save(from, dfd, err);
        if (dfd >= 0) close(dfd);
        if (r == 0) r = parse_dir(s, err);
    }
    if (r < 0) img_src_close(s);
    return r;
}

void img_src_close(img_src *s) {
    if (s->config) json_decref(s->config);
    s->config = NULL;
    if (s->owned && s->dir[0]) {
        int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            img_remove_tree(fd, s->dir + 1, NULL);
            close(fd);
        }
    }
    s->owned = 0;
}
