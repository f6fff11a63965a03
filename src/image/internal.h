/* image/internal.h - the parts of scp/image.h: where an image comes from (source.c, engine.c),
 * how its layers become a staging root and a trusted-files manifest (layers.c, trusted.c), and
 * how the secure image is written (output.c). build.c ties them together.
 */
#ifndef SCP_IMAGE_INTERNAL_H
#define SCP_IMAGE_INTERNAL_H

#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include "scp/err.h"
#include "scp/shield.h"

#define IMG_MAX_LAYERS 128
#define IMG_MAX_JSON (4u << 20)  /* manifest, index and configuration documents */
#define IMG_DIGEST_LEN 71        /* "sha256:" + 64 hex */

typedef struct img_layer {
    char path[PATH_MAX];             /* the blob inside img_src.dir, or an absolute path */
    char digest[IMG_DIGEST_LEN + 1]; /* of the blob as stored (may be compressed) */
    char media[128];
    uint64_t size;
} img_layer;

/* An input image, laid out as files in a directory. */
typedef struct img_src {
    char dir[PATH_MAX];
    int owned;        /* dir is our spool: removed by img_src_close */
    json_t *config;   /* the image configuration */
    char config_digest[IMG_DIGEST_LEN + 1];
    char repo_tag[256]; /* first RepoTag, when the input names one */
    size_t n_layers;
    img_layer layers[IMG_MAX_LAYERS];
} img_src;

/* Open `from` (see scp/image.h) into *src, spooling archives and engine images under tmpdir. */
int img_src_open(const char *from, const char *tmpdir, img_src *src, scp_err *err);
void img_src_close(img_src *src);

/* Extract the tar stream on fd (plain or compressed) into the directory dirfd: regular files
 * and directories only, names checked (no absolute paths, no "..", no links). For archives of
 * image layouts, never for layers. */
int img_untar_flat(int fd, int dirfd, scp_err *err);

/* The local Docker engine (engine.c). Socket from $DOCKER_HOST (unix://PATH) or
 * /var/run/docker.sock. */
/* Stream `docker save NAME` into the directory dirfd (img_untar_flat). */
int img_engine_save(const char *name, int dirfd, scp_err *err);
/* `docker load` the tar file at path. */
int img_engine_load(const char *path, scp_err *err);

typedef void (*img_progress_fn)(const char *line);

/* Apply the layers of src, in order, to the empty directory root (layers.c). OCI whiteouts are
 * honoured; entries are created with *at calls under a parent resolved with RESOLVE_IN_ROOT,
 * so no name or symlink in a layer can reach outside root. Device nodes are skipped. */
int img_apply_layers(const img_src *src, int root, img_progress_fn progress, scp_err *err);
/* The same, with bar(bytes of the layer blobs read so far, their total) called as it goes. */
typedef void (*img_bar_fn)(uint64_t done, uint64_t total);
int img_apply_layers_bar(const img_src *src, int root, img_progress_fn progress, img_bar_fn bar, scp_err *err);

/* Write layer i of src to out_path (an uncompressed tar) without the entries strictly below
 * the absolute directory paths `paths` (a protected path's files, which go into its volume
 * instead); *dropped counts them. A hard link from outside to a dropped file is refused. */
int img_filter_layer(img_src *src, size_t i, const char *const *paths, size_t n, const char *out_path,
                     size_t *dropped, scp_err *err);

/* openat2(root, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): absolute paths and
 * symlinks resolve inside root. */
int img_open_in_root(int root, const char *path, int flags);

/* The measurement of a secure image (build.c): the program `prog` as resolved inside root, its
 * loader and libraries, the shield at the host path `shield`, with image.json as configuration. */
int img_measure(int root, const char *shield, const char *prog, const char *image_json, uint8_t m[32], scp_err *err);

/* Remove the tree at root/path (path relative), not following symlinks. Missing is fine. */
int img_remove_tree(int root, const char *path, scp_err *err);

/* The trusted-files manifest of the tree at root (trusted.c): one line per regular file,
 * "<sha256 hex> <size> <mode octal> /<path>\n", sorted by path bytes, skipping the trees
 * listed in `skip` (absolute paths inside the image). *out is malloc'd. */
/* How many files of the manifest m (m_len bytes, img_trusted_manifest's form) lie at or below
 * the absolute path p: the file p itself, or the files under the directory p. */
size_t img_trusted_count(const char *m, size_t m_len, const char *p);

int img_trusted_manifest(int root, const char *const *skip, size_t n_skip, char **out, size_t *out_len,
                         size_t *n_files, scp_err *err);

/* The lines of a trusted-files manifest (text, len: its bytes, modified in place: paths are
 * unescaped and NUL-terminated) as shield manifest entries with no stamp (so the shield checks
 * each file by its digest): paths point into text. *out is malloc'd. */
int img_trusted_parse(char *text, size_t len, scp_shield_trusted **out, size_t *n, scp_err *err);

/* A growable list of strings (trusted.c). */
typedef struct img_strlist {
    char **v;
    size_t n, cap;
} img_strlist;
int img_strlist_add(img_strlist *l, const char *s); /* copies s; -1 when out of memory */
void img_strlist_free(img_strlist *l);

/* A name inside an image archive or layer, normalized into out: leading "/" and "." components
 * dropped, "//" collapsed. Returns its length (0: the root itself), or -1 for a ".." component
 * or a name longer than outsz (source.c). */
int img_clean_name(const char *raw, char *out, size_t outsz);

/* Deterministic writing (output.c). */
typedef struct img_blob {
    char digest[IMG_DIGEST_LEN + 1];
    uint64_t size;
    char media[128];
} img_blob;

/* A tar being written with fixed metadata: every entry owned by 0:0, mtime 0. */
typedef struct img_tar img_tar;
img_tar *img_tar_open(int fd, scp_err *err);
int img_tar_dir(img_tar *t, const char *path, unsigned mode, scp_err *err);
int img_tar_bytes(img_tar *t, const char *path, unsigned mode, const void *p, size_t n, scp_err *err);
int img_tar_file(img_tar *t, const char *path, unsigned mode, int fd, scp_err *err); /* copies fd's content */
int img_tar_symlink(img_tar *t, const char *path, const char *target, scp_err *err);
int img_tar_close(img_tar *t, scp_err *err); /* frees t */

/* sha256 of an open file's content from offset 0, as "sha256:<hex>". */
int img_digest_fd(int fd, char out[IMG_DIGEST_LEN + 1], uint64_t *size, scp_err *err);
int img_digest_buf(const void *p, size_t n, char out[IMG_DIGEST_LEN + 1]);

/* Read a JSON document of at most IMG_MAX_JSON bytes at dir/path. */
json_t *img_json_read(const char *dir, const char *path, scp_err *err);

/* "sha256:<64 hex>" exactly. */
int img_digest_ok(const char *d);

#endif
