/* image/build.c - scpctl image build, inspect and verify (scp/image.h).
 *
 * The measurement of a secure image is scp_attest_measure_fds over the entrypoint program, its
 * loader, the shield runtime and every library they link, as resolved inside the image (the same
 * resolution `scpctl run --rootfs` makes), with /scp/image.json as the configuration input.
 * image.json names the digest of /scp/trusted, the trusted-files manifest of every other
 * regular file in the image, so the measurement covers the whole image but its protected paths.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <archive.h>
#include <archive_entry.h>
#include <assert.h>
#include <linux/openat2.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cas/policy.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "image/internal.h"
#include "runtime/attest_run.h"
#include "runtime/elfdeps.h"
#include "scp/attest.h"
#include "scp/image.h"
#include "scp/volume.h"

#define SCP_DIR "scp"
#define IMAGE_JSON "scp/image.json"
#define TRUSTED "scp/trusted"
#define ENTRY_BIN "scp/bin/scp-entry"
#define SEED_DIR "scp/seed"
#define LAYER_MEDIA "application/vnd.oci.image.layer.v1.tar"
#define SHIELD_IN_IMAGE "/scp/lib/libscp-shield.so"

static void say(const scp_image_build_opts *o, const char *what, const char *arg) {
    if (!o->progress) return;
    char m[512];
    snprintf(m, sizeof m, "%s%s", what, arg);
    o->progress(m);
}

/* ---- staging ------------------------------------------------------------------------------- */

typedef struct stage {
    char dir[PATH_MAX];
    int root;
} stage;

static int stage_open(const char *tmpdir, stage *s, scp_err *err) {
    const char *t = tmpdir ? tmpdir : getenv("TMPDIR");
    if (!t || !*t) t = "/var/tmp";
    snprintf(s->dir, sizeof s->dir, "%s/scp-stage-XXXXXX", t);
    s->root = -1;
    if (!mkdtemp(s->dir)) return scp_fail_errno(err, "cannot create a staging directory under '%s'", t);
    s->root = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->root < 0) return scp_fail_errno(err, "cannot open '%s'", s->dir);
    return 0;
}

static void stage_close(stage *s) {
    if (s->root >= 0) {
        img_remove_tree(s->root, "", NULL);
        close(s->root);
        rmdir(s->dir);
    }
    s->root = -1;
}

/* A path given with an option (opt: "--protect", "--trusted"): absolute, normalized, not "/"
 * and not under /scp, /proc, /sys, /dev. */
static int image_path_ok(const char *opt, const char *p, scp_err *err) {
    if (p[0] != '/' || p[1] == '\0')
        return scp_fail(err, SCP_E_INVAL, EINVAL, "%s %s: give an absolute path below /", opt, p);
    for (const char *c = p; *c;) {
        const char *e = strchr(c + 1, '/');
        size_t l = e ? (size_t)(e - c - 1) : strlen(c + 1);
        if (l == 0 || (l == 1 && c[1] == '.') || (l == 2 && c[1] == '.' && c[2] == '.'))
            return scp_fail(err, SCP_E_INVAL, EINVAL, "%s %s: give a normalized path (no '.', '..' or '//')", opt, p);
        c = e ? e : c + 1 + l;
    }
    static const char *const reserved[] = {"/scp", "/proc", "/sys", "/dev"};
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (scp_path_within(p, reserved[i]))
            return scp_fail(err, SCP_E_INVAL, EINVAL, "%s %s: %s is the runtime's or the kernel's, not the image's", opt, p,
                            reserved[i]);
    return 0;
}

/* A --trusted path: in the staged image by its real path and outside the protected paths, a
 * regular file or a directory; *n: how many files of the manifest m it covers. */
static int check_trust(int root, const scp_image_build_opts *o, const char *p, const char *m, size_t ml, size_t *n,
                       scp_err *err) {
    if (image_path_ok("--trusted", p, err) < 0) return -1;
    for (size_t i = 0; i < o->n_protect; i++)
        if (scp_path_within(p, o->protect[i]))
            return scp_fail(err, SCP_E_INVAL, EINVAL,
                            "--trusted %s is under --protect %s: its files are in a protected volume, not trusted files",
                            p, o->protect[i]);
    int fd = scp_openat2(root, p + 1, O_PATH | O_NOFOLLOW, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
    struct stat sb;
    if (fd < 0 && errno != ELOOP)
        return scp_fail(err, errno == ENOENT ? SCP_E_NOENT : SCP_E_INVAL, errno, "--trusted %s: %s in the image", p,
                        errno == ENOENT ? "no such file or directory" : strerror(errno));
    int r = fd >= 0 ? fstat(fd, &sb) : 0;
    if (fd >= 0) close(fd);
    if (r < 0) return scp_fail_errno(err, "--trusted %s", p);
    /* ELOOP: a link before the last component; O_PATH | O_NOFOLLOW opens a last one itself */
    if (fd < 0 || S_ISLNK(sb.st_mode))
        return scp_fail(err, SCP_E_INVAL, ELOOP,
                        "--trusted %s: a symbolic link is on the way; give the real path (the manifest lists files by it)", p);
    if (!S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode))
        return scp_fail(err, SCP_E_INVAL, EINVAL, "--trusted %s: neither a regular file nor a directory", p);
    *n = img_trusted_count(m, ml, p);
    /* the walk lists every regular file outside the protected paths: a file found here is in it */
    assert(!S_ISREG(sb.st_mode) || *n == 1);
    return 0;
}

/* Each protected path must be a directory in the image; *n_files: how many files it holds
 * (carried into its volume: seed_path). */
static int check_protect(int root, const char *p, size_t *n_files, scp_err *err) {
    int fd = openat(root, p + 1, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return scp_fail(err, errno == ENOENT ? SCP_E_NOENT : SCP_E_INVAL, errno,
                        "--protect %s: no such directory in the image (create it in the image, e.g. RUN mkdir -p %s)", p, p);
    char *m = NULL;
    size_t ml = 0, n = 0;
    int r = img_trusted_manifest(fd, NULL, 0, &m, &ml, &n, err);
    close(fd);
    free(m);
    if (r < 0) return -1;
    *n_files = n;
    return 0;
}

/* ---- files under a protected path: sealed into a seed volume ----------------------------------
 * They must not stay readable in the image. The build seals them into a volume of their own under
 * /scp/seed/N with a fresh key, which only the session template (a secret of kind explicit, for
 * CAS) holds; the input's layers are written again without them. On the first start, when the
 * protected volume is created, the entry copies the seed into it (docs/image.md). */

static int seed_copy_dir(int dfd, scp_volume *v, const char *vpath, const char *shown, scp_err *err);
static int cmp_name(const void *a, const void *b);

static int seed_copy_file(int dfd, const char *name, const struct stat *st, scp_volume *v, const char *child,
                          scp_err *err) {
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return scp_fail_errno(err, "cannot open /%s in the staging root", child);
    scp_vfile *f = scp_vfile_open(v, child, O_WRONLY | O_CREAT | O_EXCL, st->st_mode & 07777, err);
    int rc = f ? 0 : -1;
    char buf[1 << 16];
    uint64_t off = 0;
    ssize_t n;
    while (rc == 0 && (n = read(fd, buf, sizeof buf)) > 0) {
        if (scp_vfile_pwrite(f, buf, (size_t)n, off, err) != n) rc = -1;
        off += (uint64_t)n;
    }
    if (rc == 0 && n < 0) rc = scp_fail_errno(err, "cannot read %s", child);
    if (f && scp_vfile_close(f, rc == 0 ? err : NULL) < 0) rc = -1;
    close(fd);
    return rc;
}

static int seed_entry(int dfd, const char *name, scp_volume *v, const char *vpath, const char *shown, scp_err *err) {
    char child[PATH_MAX], show[PATH_MAX];
    struct stat st;
    if (snprintf(child, sizeof child, "%s%s%s", vpath, *vpath ? "/" : "", name) >= (int)sizeof child ||
        snprintf(show, sizeof show, "%s/%s", shown, name) >= (int)sizeof show)
        return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "a path under %s is too long", shown);
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return scp_fail_errno(err, "cannot stat %s", show);
    int rc;
    if (S_ISDIR(st.st_mode)) {
        int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        rc = sub < 0 ? scp_fail_errno(err, "cannot open %s", show) : scp_volume_mkdir(v, child, st.st_mode & 07777, err);
        if (rc == 0) rc = seed_copy_dir(sub, v, child, show, err);
        if (sub >= 0) close(sub);
    } else if (S_ISREG(st.st_mode)) {
        rc = seed_copy_file(dfd, name, &st, v, child, err);
    } else {
        return scp_fail(err, SCP_E_NOTSUP, ENOTSUP,
                        "--protect: %s is not a regular file or a directory (a protected volume holds only those)",
                        show);
    }
    if (rc == 0) rc = scp_volume_setattr(v, child, -1, st.st_uid, st.st_gid, (int64_t)st.st_mtim.tv_sec * 1000000000, err);
    return rc;
}

static int seed_copy_dir(int dfd, scp_volume *v, const char *vpath, const char *shown, scp_err *err) {
    int rd = dup(dfd);
    DIR *d = rd >= 0 ? fdopendir(rd) : NULL;
    if (!d) {
        if (rd >= 0) close(rd);
        return scp_fail_errno(err, "cannot list %s", shown);
    }
    img_strlist names = {0};
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && img_strlist_add(&names, e->d_name) < 0)
            rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    closedir(d);
    if (rc == 0 && names.n) qsort(names.v, names.n, sizeof *names.v, cmp_name);
    for (size_t i = 0; rc == 0 && i < names.n; i++) rc = seed_entry(dfd, names.v[i], v, vpath, shown, err);
    img_strlist_free(&names);
    return rc;
}

/* Seal the files under the protected path p of the staged image into a new volume at
 * STAGE/scp/seed/idx with a fresh key. */
static int seed_path(const stage *st, const char *p, size_t idx, uint8_t key[SCP_VOLUME_KEY_LEN], scp_err *err) {
    char dir[PATH_MAX * 2];
    snprintf(dir, sizeof dir, "%s/%s/%zu", st->dir, SEED_DIR, idx);
    if (mkdirat(st->root, SEED_DIR, 0755) < 0 && errno != EEXIST) return scp_fail_errno(err, "cannot create /" SEED_DIR);
    if (scp_random(key, SCP_VOLUME_KEY_LEN, err) < 0 || scp_volume_create(dir, key, 0, err) < 0) return -1;
    scp_volume *v = scp_volume_open(dir, key, NULL, err);
    if (!v) return -1;
    int pd = openat(st->root, p + 1, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int rc = pd < 0 ? scp_fail_errno(err, "cannot open %s in the staging root", p) : seed_copy_dir(pd, v, "", p, err);
    if (pd >= 0) close(pd);
    if (scp_volume_close(v, rc == 0 ? err : NULL) < 0) rc = -1;
    return rc;
}

/* The tree at root/rel into the tar, names sorted (the seed volumes' files). */
static int tar_tree(img_tar *t, int root, const char *rel, scp_err *err) {
    int dfd = openat(root, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) return errno == ENOENT ? 0 : scp_fail_errno(err, "cannot open /%s", rel);
    char dname[PATH_MAX];
    snprintf(dname, sizeof dname, "%s/", rel);
    int rc = img_tar_dir(t, dname, 0755, err);
    int rd = rc == 0 ? dup(dfd) : -1;
    DIR *d = rd >= 0 ? fdopendir(rd) : NULL;
    img_strlist names = {0};
    if (rc == 0 && !d) rc = scp_fail_errno(err, "cannot list /%s", rel);
    for (struct dirent *e; rc == 0 && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && img_strlist_add(&names, e->d_name) < 0)
            rc = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    if (d) closedir(d);
    else if (rd >= 0) close(rd);
    if (rc == 0 && names.n) qsort(names.v, names.n, sizeof *names.v, cmp_name);
    for (size_t i = 0; rc == 0 && i < names.n; i++) {
        char child[PATH_MAX];
        struct stat sb;
        snprintf(child, sizeof child, "%s/%s", rel, names.v[i]);
        if (fstatat(dfd, names.v[i], &sb, AT_SYMLINK_NOFOLLOW) < 0) rc = scp_fail_errno(err, "cannot stat /%s", child);
        else if (S_ISDIR(sb.st_mode)) rc = tar_tree(t, root, child, err);
        else if (S_ISREG(sb.st_mode)) {
            int fd = openat(dfd, names.v[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            rc = fd < 0 ? scp_fail_errno(err, "cannot open /%s", child) : img_tar_file(t, child, sb.st_mode & 0777, fd, err);
            if (fd >= 0) close(fd);
        }
    }
    img_strlist_free(&names);
    close(dfd);
    return rc;
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int copy_into(int root, const char *dst, const char *src, mode_t mode, scp_err *err) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return scp_fail_errno(err, "cannot open '%s'", src);
    int out = openat(root, dst, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
    int rc = 0;
    if (out < 0) rc = scp_fail_errno(err, "cannot create '/%s' in the staging root", dst);
    char buf[1 << 16];
    ssize_t n;
    while (rc == 0 && (n = read(in, buf, sizeof buf)) > 0)
        if (scp_write_full(out, buf, (size_t)n) < 0) rc = scp_fail_errno(err, "cannot write '/%s'", dst);
    if (rc == 0 && n < 0) rc = scp_fail_errno(err, "cannot read '%s'", src);
    if (out >= 0 && fchmod(out, mode) < 0 && rc == 0) rc = scp_fail_errno(err, "chmod '/%s'", dst);
    if (out >= 0) close(out);
    close(in);
    return rc;
}

/* /scp: scp-entry with every library it links (and its loader), and the shield runtime. The
 * entry runs with this loader and these libraries, so it works whatever the image's own
 * libraries are. */
static int stage_runtime(int root, const scp_image_build_opts *o, scp_err *err) {
    if (mkdirat(root, SCP_DIR, 0755) < 0 && errno != EEXIST) return scp_fail_errno(err, "cannot create /scp");
    if (mkdirat(root, "scp/bin", 0755) < 0 && errno != EEXIST) return scp_fail_errno(err, "cannot create /scp/bin");
    if (mkdirat(root, "scp/lib", 0755) < 0 && errno != EEXIST) return scp_fail_errno(err, "cannot create /scp/lib");
    if (copy_into(root, ENTRY_BIN, o->entry, 0755, err) < 0) return -1;
    if (copy_into(root, "scp/lib/libscp-shield.so", o->shield_lib, 0644, err) < 0) return -1;
    scp_elf_set *set = malloc(sizeof *set);
    if (!set) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    int rc = scp_elf_set_open(o->entry, NULL, NULL, set, err);
    for (size_t i = 1; rc == 0 && i < set->n; i++) {
        const char *b = strrchr(set->path[i], '/');
        char dst[PATH_MAX];
        int n = snprintf(dst, sizeof dst, "scp/lib/%s", b ? b + 1 : set->path[i]);
        if (n < 0 || (size_t)n >= sizeof dst)
            rc = scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "library name too long: %s", set->path[i]);
        else
            rc = copy_into(root, dst, set->path[i], 0755, err);
    }
    if (rc == 0) scp_elf_set_close(set, -1);
    free(set);
    return rc;
}

/* ---- the image's own configuration ------------------------------------------------------------ */

/* The original entrypoint and command as one argv array (JSON). */
static json_t *entry_argv(json_t *cfg, scp_err *err) {
    json_t *c = json_object_get(cfg, "config");
    json_t *ep = json_object_get(c, "Entrypoint"), *cmd = json_object_get(c, "Cmd");
    json_t *argv = json_array();
    size_t i;
    json_t *v;
    if (json_is_array(ep)) for (i = 0; i < json_array_size(ep) && (v = json_array_get(ep, i)) != NULL; i++) json_array_append(argv, v);
    if (json_is_array(cmd)) for (i = 0; i < json_array_size(cmd) && (v = json_array_get(cmd, i)) != NULL; i++) json_array_append(argv, v);
    for (i = 0; i < json_array_size(argv) && (v = json_array_get(argv, i)) != NULL; i++) if (!json_is_string(v)) {
        json_decref(argv);
        scp_fail(err, SCP_E_FORMAT, EINVAL, "the image's Entrypoint/Cmd holds a non-string");
        return NULL;
    }
    if (json_array_size(argv) == 0) {
        json_decref(argv);
        scp_fail(err, SCP_E_INVAL, EINVAL, "the image has no Entrypoint or Cmd: nothing to run");
        return NULL;
    }
    return argv;
}

/* The image's Env reaches the program (beneath the policy's environment): refuse at build what
 * the entry would refuse at run. */
static int check_env(json_t *cfg, scp_err *err) {
    json_t *env = json_object_get(json_object_get(cfg, "config"), "Env");
    if (env && !json_is_array(env) && !json_is_null(env))
        return scp_fail(err, SCP_E_FORMAT, EINVAL, "the image's Env is not an array");
    for (size_t i = 0; i < json_array_size(env); i++) {
        const char *e = json_string_value(json_array_get(env, i));
        if (!e) return scp_fail(err, SCP_E_FORMAT, EINVAL, "the image's Env holds a non-string");
        if (scp_attest_run_image_env_check(e, err) < 0) return -1;
    }
    return 0;
}

static json_t *image_json(const scp_image_build_opts *o, json_t *cfg, json_t *argv, const char *trusted_digest,
                          size_t n_trusted) {
    json_t *c = json_object_get(cfg, "config");
    json_t *prot = json_array();
    for (size_t i = 0; i < o->n_protect; i++) json_array_append_new(prot, json_string(o->protect[i]));
    json_t *env = json_object_get(c, "Env");
    const char *wd = json_string_value(json_object_get(c, "WorkingDir"));
    const char *user = json_string_value(json_object_get(c, "User"));
    /* "O" takes a reference (argv stays the caller's), "o" steals one (prot, the env copy) */
    return json_pack("{s:i, s:s, s:s, s:O, s:o, s:s, s:s, s:o, s:s, s:I, s:s}", "version", 1, "session", o->session,
                     "service", o->service, "argv", argv, "env", json_is_array(env) ? json_incref(env) : json_array(), "cwd",
                     wd && *wd ? wd : "/", "user", user ? user : "", "protect", prot, "trusted", trusted_digest,
                     "trusted_files", (json_int_t)n_trusted, "shield", SHIELD_IN_IMAGE);
}

/* image.json's "trusted_paths": the --trusted paths, when any were given (an image built without
 * them keeps the measurement it had). */
static int add_trust(json_t *ij, const scp_image_build_opts *o) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < o->n_trust; i++) json_array_append_new(a, json_string(o->trust[i]));
    return a ? json_object_set_new(ij, "trusted_paths", a) : -1;
}

static char *dump(json_t *j) { return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS); }

/* A volume name for a protected path: its last component, made an identifier. */
static void volume_name(const char *path, size_t idx, char *out, size_t outsz) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t o = 0;
    for (; *b && o + 1 < outsz && o < 40; b++)
        out[o++] = ((*b >= 'a' && *b <= 'z') || (*b >= 'A' && *b <= 'Z') || (*b >= '0' && *b <= '9') || *b == '_' ||
                    *b == '-')
                       ? *b
                       : '_';
    out[o] = '\0';
    if (!o || idx) snprintf(out + o, outsz - o, "%s%zu", o ? "_" : "v", idx);
}

/* YAML double-quoted scalar. */
static void yq(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static char *session_template(const scp_image_build_opts *o, json_t *argv, const char *cwd, const char *mhex,
                              const size_t *n_files, uint8_t (*seed_key)[SCP_VOLUME_KEY_LEN]) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    fprintf(f, "# A session for the secure image %s, written by scpctl image build.\n", o->tag);
    fprintf(f, "# Review it, add secrets, then: scpctl session create FILE\n");
    fprintf(f, "name: %s\nservices:\n  - name: %s\n    measurements: [%s]\n    command: [", o->session, o->service, mhex);
    size_t i;
    json_t *v;
    for (i = 0; i < json_array_size(argv) && (v = json_array_get(argv, i)) != NULL; i++) {
        if (i) fputs(", ", f);
        yq(f, json_string_value(v));
    }
    fputs("]\n    cwd: ", f);
    yq(f, cwd);
    fputc('\n', f);
    /* a seeded volume's key reaches the entry (never the program) through the environment */
    int seeded = 0;
    for (size_t k = 0; k < o->n_protect; k++) {
        if (!n_files[k]) continue;
        char n[64];
        volume_name(o->protect[k], k, n, sizeof n);
        fprintf(f, "%s" SCP_IMAGE_SEED_ENV "%s: \"$$SCP::scp_seed_%s$$\"", seeded++ ? ", " : "    environment: {", n, n);
    }
    if (seeded) fputs("}\n", f);
    if (o->n_protect) {
        fputs("    volumes: [", f);
        for (size_t k = 0; k < o->n_protect; k++) {
            char n[64];
            volume_name(o->protect[k], k, n, sizeof n);
            fprintf(f, "%s%s", k ? ", " : "", n);
        }
        fputs("]\nvolumes:\n", f);
        for (size_t k = 0; k < o->n_protect; k++) {
            char n[64];
            volume_name(o->protect[k], k, n, sizeof n);
            fprintf(f, "  - {name: %s, path: ", n);
            yq(f, o->protect[k]);
            fputs("}\n", f);
        }
    }
    if (seeded) {
        fputs("# the keys of the files sealed under /scp/seed: keep this file secret, delete it once the\n"
              "# session exists\nsecrets:\n", f);
        for (size_t k = 0; k < o->n_protect; k++) {
            if (!n_files[k]) continue;
            char n[64], hex[2 * SCP_VOLUME_KEY_LEN + 1];
            volume_name(o->protect[k], k, n, sizeof n);
            scp_hex(seed_key[k], SCP_VOLUME_KEY_LEN, hex);
            fprintf(f, "  - {name: scp_seed_%s, kind: explicit, value: \"%s\"}\n", n, hex);
            scp_wipe(hex, sizeof hex);
        }
    }
    fclose(f);
    return buf;
}

/* The measurement: the program set as resolved in the staging root, with image.json. */
static int measure(int root, const char *stage_dir, const char *prog, const char *img_json, uint8_t m[32],
                   scp_err *err) {
    char shield[PATH_MAX + 32];
    snprintf(shield, sizeof shield, "%s%s", stage_dir, SHIELD_IN_IMAGE);
    return img_measure(root, shield, prog, img_json, m, err);
}

/* ---- writing the output ----------------------------------------------------------------------- */

typedef struct out_blob {
    char path[PATH_MAX * 2 + 2]; /* source file */
    img_blob b;
} out_blob;

static int tar_blob_file(img_tar *t, const out_blob *ob, scp_err *err) {
    int fd = open(ob->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return scp_fail_errno(err, "cannot open '%s'", ob->path);
    char name[160];
    snprintf(name, sizeof name, "blobs/sha256/%s", ob->b.digest + 7);
    int r = img_tar_file(t, name, 0644, fd, err);
    close(fd);
    return r;
}

static int tar_blob_json(img_tar *t, const char *doc, char digest[IMG_DIGEST_LEN + 1], scp_err *err) {
    img_digest_buf(doc, strlen(doc), digest);
    char name[160];
    snprintf(name, sizeof name, "blobs/sha256/%s", digest + 7);
    return img_tar_bytes(t, name, 0644, doc, strlen(doc), err);
}

/* Write the layer /scp into spool/scp-layer.tar: directories, scpctl, libraries, image.json,
 * trusted, in name order. */
static int write_scp_layer(int root, const char *path, const char *img_json, const char *trusted, size_t trusted_len,
                           scp_err *err) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return scp_fail_errno(err, "cannot create '%s'", path);
    img_tar *t = img_tar_open(fd, err);
    int rc = t ? 0 : -1;
    if (rc == 0) rc = img_tar_dir(t, "scp/", 0755, err);
    if (rc == 0) rc = img_tar_dir(t, "scp/bin/", 0755, err);
    int bfd = rc == 0 ? openat(root, ENTRY_BIN, O_RDONLY | O_CLOEXEC) : -1;
    if (rc == 0 && bfd < 0) rc = scp_fail_errno(err, "cannot open /" ENTRY_BIN);
    if (rc == 0) rc = img_tar_file(t, ENTRY_BIN, 0755, bfd, err);
    if (bfd >= 0) close(bfd);
    if (rc == 0) rc = img_tar_bytes(t, IMAGE_JSON, 0644, img_json, strlen(img_json), err);
    if (rc == 0) rc = img_tar_dir(t, "scp/lib/", 0755, err);
    /* the libraries in name order */
    char *man = NULL;
    size_t ml = 0, n = 0;
    int lfd = rc == 0 ? openat(root, "scp/lib", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (rc == 0 && lfd < 0) rc = scp_fail_errno(err, "cannot open /scp/lib");
    if (rc == 0) rc = img_trusted_manifest(lfd, NULL, 0, &man, &ml, &n, err);
    for (char *line = man; rc == 0 && line && *line;) {
        char *nl = strchr(line, '\n');
        *nl = '\0';
        const char *p = strrchr(line, ' ') + 1; /* "/name" */
        char mode_s[8] = {0};
        sscanf(line, "%*s %*s %7s", mode_s);
        int ffd = openat(lfd, p + 1, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        char name[PATH_MAX];
        snprintf(name, sizeof name, "scp/lib%s", p);
        if (ffd < 0) rc = scp_fail_errno(err, "cannot open /scp/lib%s", p);
        else rc = img_tar_file(t, name, (unsigned)strtoul(mode_s, NULL, 8), ffd, err);
        if (ffd >= 0) close(ffd);
        line = nl + 1;
    }
    free(man);
    if (lfd >= 0) close(lfd);
    if (rc == 0) rc = tar_tree(t, root, SEED_DIR, err);
    if (rc == 0) rc = img_tar_bytes(t, TRUSTED, 0644, trusted, trusted_len, err);
    if (t && img_tar_close(t, rc == 0 ? err : NULL) < 0) rc = -1;
    if (rc == 0 && fsync(fd) < 0) rc = scp_fail_errno(err, "fsync '%s'", path);
    close(fd);
    return rc;
}

static int write_output(const img_src *src, const char *layer_path, const img_blob *layer, json_t *cfg_out,
                        const char *tag, int fd, char image_id[72], scp_err *err) {
    int rc = -1;
    char *cfg_doc = dump(cfg_out), *man_doc = NULL;
    json_t *man = NULL, *idx = NULL, *dman = NULL;
    img_tar *t = img_tar_open(fd, err);
    if (!t || !cfg_doc) goto out;
    if (img_tar_dir(t, "blobs/", 0755, err) < 0 || img_tar_dir(t, "blobs/sha256/", 0755, err) < 0) goto out;
    json_t *layers = json_array(), *dlayers = json_array();
    man = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:o}", "schemaVersion", 2, "mediaType",
                    "application/vnd.oci.image.manifest.v1+json", "config", "mediaType",
                    "application/vnd.oci.image.config.v1+json", "digest", "", "size", (json_int_t)0, "layers", layers);
    for (size_t i = 0; i <= src->n_layers; i++) {
        out_blob ob;
        if (i < src->n_layers) {
            if (src->layers[i].path[0] == '/') snprintf(ob.path, sizeof ob.path, "%s", src->layers[i].path);
            else snprintf(ob.path, sizeof ob.path, "%s/%s", src->dir, src->layers[i].path);
            char dg[IMG_DIGEST_LEN + 1];
            int lfd = open(ob.path, O_RDONLY | O_CLOEXEC);
            if (lfd < 0 || img_digest_fd(lfd, dg, &ob.b.size, err) < 0) {
                if (lfd >= 0) close(lfd);
                else scp_fail_errno(err, "cannot open '%s'", ob.path);
                goto out;
            }
            close(lfd);
            snprintf(ob.b.digest, sizeof ob.b.digest, "%s", dg);
            snprintf(ob.b.media, sizeof ob.b.media, "%s", src->layers[i].media);
        } else {
            snprintf(ob.path, sizeof ob.path, "%s", layer_path);
            ob.b = *layer;
        }
        /* a layer that repeats an earlier one is stored once */
        int dup = 0;
        for (size_t k = 0; k < json_array_size(layers); k++)
            dup |= !strcmp(json_string_value(json_object_get(json_array_get(layers, k), "digest")), ob.b.digest);
        json_array_append_new(layers, json_pack("{s:s, s:s, s:I}", "mediaType", ob.b.media, "digest", ob.b.digest, "size",
                                                (json_int_t)ob.b.size));
        char lp[256];
        snprintf(lp, sizeof lp, "blobs/sha256/%s", ob.b.digest + 7);
        json_array_append_new(dlayers, json_string(lp));
        if (!dup && tar_blob_file(t, &ob, err) < 0) goto out;
    }
    char cfg_digest[IMG_DIGEST_LEN + 1], man_digest[IMG_DIGEST_LEN + 1];
    if (tar_blob_json(t, cfg_doc, cfg_digest, err) < 0) goto out;
    json_t *mc = json_object_get(man, "config");
    json_object_set_new(mc, "digest", json_string(cfg_digest));
    json_object_set_new(mc, "size", json_integer((json_int_t)strlen(cfg_doc)));
    man_doc = dump(man);
    if (!man_doc || tar_blob_json(t, man_doc, man_digest, err) < 0) goto out;
    const char *colon = strrchr(tag, ':');
    idx = json_pack("{s:i, s:s, s:[{s:s, s:s, s:I, s:{s:s, s:s}}]}", "schemaVersion", 2, "mediaType",
                    "application/vnd.oci.image.index.v1+json", "manifests", "mediaType",
                    "application/vnd.oci.image.manifest.v1+json", "digest", man_digest, "size",
                    (json_int_t)strlen(man_doc), "annotations", "io.containerd.image.name", tag,
                    "org.opencontainers.image.ref.name", colon && !strchr(colon, '/') ? colon + 1 : "latest");
    char cp[160];
    snprintf(cp, sizeof cp, "blobs/sha256/%s", cfg_digest + 7);
    dman = json_pack("[{s:s, s:[s], s:O}]", "Config", cp, "RepoTags", tag, "Layers", dlayers);
    json_decref(dlayers);
    char *idx_doc = dump(idx), *dman_doc = dump(dman);
    const char *layout = "{\"imageLayoutVersion\":\"1.0.0\"}";
    int r = idx_doc && dman_doc ? 0 : scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    if (r == 0) r = img_tar_bytes(t, "index.json", 0644, idx_doc, strlen(idx_doc), err);
    if (r == 0) r = img_tar_bytes(t, "manifest.json", 0644, dman_doc, strlen(dman_doc), err);
    if (r == 0) r = img_tar_bytes(t, "oci-layout", 0644, layout, strlen(layout), err);
    free(idx_doc);
    free(dman_doc);
    if (r < 0) goto out;
    snprintf(image_id, 72, "%s", cfg_digest);
    rc = 0;
out:
    if (t && img_tar_close(t, rc == 0 ? err : NULL) < 0) rc = -1;
    free(cfg_doc);
    free(man_doc);
    json_decref(man);
    json_decref(idx);
    json_decref(dman);
    return rc;
}

/* The configuration of the secure image: the input's, with our entrypoint, labels, layer. */
static json_t *output_config(json_t *in, const img_blob *layer, const char *mhex, const scp_image_build_opts *o) {
    json_t *cfg = json_deep_copy(in);
    json_t *c = json_object_get(cfg, "config");
    if (!json_is_object(c)) {
        c = json_object();
        json_object_set_new(cfg, "config", c);
    }
    json_object_set_new(c, "Entrypoint",
                        json_pack("[s, s, s, s]", "/scp/lib/ld-linux-x86-64.so.2", "--library-path", "/scp/lib",
                                  "/" ENTRY_BIN));
    json_object_set_new(c, "Cmd", json_null());
    /* the entry starts as root (it reads the volumes' store, hands it over) and applies image.json's
     * user itself, right before it runs the program */
    json_object_set_new(c, "User", json_string(""));
    json_t *labels = json_object_get(c, "Labels");
    if (!json_is_object(labels)) {
        labels = json_object();
        json_object_set_new(c, "Labels", labels);
    }
    json_object_set_new(labels, "org.scp.measurement", json_string(mhex));
    json_object_set_new(labels, "org.scp.session", json_string(o->session));
    json_object_set_new(labels, "org.scp.service", json_string(o->service));
    json_t *rootfs = json_object_get(cfg, "rootfs");
    if (!json_is_object(rootfs)) {
        rootfs = json_pack("{s:s, s:[]}", "type", "layers", "diff_ids");
        json_object_set_new(cfg, "rootfs", rootfs);
    }
    json_t *diff = json_object_get(rootfs, "diff_ids");
    if (json_is_array(diff)) json_array_append_new(diff, json_string(layer->digest));
    json_t *hist = json_object_get(cfg, "history");
    if (json_is_array(hist)) {
        const char *created = json_string_value(json_object_get(cfg, "created"));
        json_array_append_new(hist, json_pack("{s:s, s:s}", "created", created ? created : "1970-01-01T00:00:00Z",
                                              "created_by", "scpctl image build (SCP runtime and trusted-files manifest)"));
    }
    return cfg;
}

/* ---- build ------------------------------------------------------------------------------------ */

/* The input's layers that hold files under a seeded protected path, written again without them
 * (filtered[i]: the new file, to be removed afterwards); the configuration's diff_ids follow. */
static int filter_layers(img_src *src, const stage *st, const scp_image_build_opts *o, char (*filtered)[PATH_MAX],
                         scp_err *err) {
    json_t *diff = json_object_get(json_object_get(src->config, "rootfs"), "diff_ids");
    for (size_t i = 0; i < src->n_layers; i++) {
        char out[PATH_MAX];
        if (snprintf(out, sizeof out, "%s.layer-%zu.tar", st->dir, i) >= (int)sizeof out)
            return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "--tmpdir is too long");
        size_t dropped = 0;
        snprintf(filtered[i], PATH_MAX, "%s", out);
        if (img_filter_layer(src, i, o->protect, o->n_protect, out, &dropped, err) < 0) return -1;
        if (!dropped) {
            unlink(out);
            filtered[i][0] = '\0';
            continue;
        }
        img_layer *L = &src->layers[i];
        int fd = open(out, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || img_digest_fd(fd, L->digest, &L->size, err) < 0) {
            if (fd >= 0) close(fd);
            else scp_fail_errno(err, "cannot open '%s'", out);
            return -1;
        }
        close(fd);
        snprintf(L->path, sizeof L->path, "%s", out);
        snprintf(L->media, sizeof L->media, "%s", LAYER_MEDIA);
        /* uncompressed now: its digest is its diff_id */
        if (!json_is_array(diff) || json_array_set_new(diff, i, json_string(L->digest)) < 0)
            return scp_fail(err, SCP_E_FORMAT, EINVAL, "the image configuration has no diff_id for layer %zu", i);
    }
    return 0;
}

/* image.json's "seeds": the protected paths whose files the entry copies into the new volume. */
static int add_seeds(json_t *ij, const scp_image_build_opts *o, const size_t *n_files) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < o->n_protect; i++) {
        char vol[64];
        snprintf(vol, sizeof vol, "/" SEED_DIR "/%zu", i);
        if (n_files[i]) json_array_append_new(a, json_pack("{s:s, s:s}", "path", o->protect[i], "volume", vol));
    }
    return a ? json_object_set_new(ij, "seeds", a) : -1;
}

/* A path component of an image name: lower-case letters and digits, runs of them joined by
 * one '.', one or two '_', or any number of '-' (the distribution project's reference grammar). */
static int ref_path_ok(const char *s, size_t n) {
    if (!n) return 0;
    for (size_t i = 0; i < n;) {
        size_t a = i;
        while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9'))) i++;
        if (i == a) return 0; /* (a separator first, last, or two in a row) */
        if (i == n) return 1;
        size_t b = i;
        while (i < n && s[i] == '-') i++;
        if (i == b) {
            if (s[i] == '.') i++;
            else if (s[i] == '_') i += i + 1 < n && s[i + 1] == '_' ? 2 : 1;
            else return 0;
        }
        if (i == n) return 0;
    }
    return 1;
}

/* A registry host ("registry.example.com", "localhost:5000") ahead of an image name's path. */
static int ref_domain_ok(const char *s, size_t n) {
    size_t colon = n;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ':') colon = i;
    if (colon < n) {
        if (colon + 1 == n || colon + 6 < n) return 0;
        for (size_t i = colon + 1; i < n; i++)
            if (s[i] < '0' || s[i] > '9') return 0;
    }
    if (!colon || s[0] == '.' || s[0] == '-' || s[colon - 1] == '.' || s[colon - 1] == '-') return 0;
    for (size_t i = 0; i < colon; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return 0;
        if (c == '.' && (s[i + 1] == '.' || s[i + 1] == '-' || s[i - 1] == '-')) return 0;
    }
    return 1;
}

/* NAME[:TAG] as Docker and the OCI distribution spec accept it: path components of ref_path_ok
 * separated by '/', the first one a registry host when it has a '.' or ':' or is "localhost",
 * at most 255 characters of name; TAG [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}. No digest (the build
 * names what it writes). */
static int image_ref_ok(const char *ref) {
    const char *slash = strrchr(ref, '/'), *colon = strrchr(ref, ':');
    size_t nlen = colon && (!slash || colon > slash) ? (size_t)(colon - ref) : strlen(ref);
    if (nlen == 0 || nlen > 255) return 0;
    if (colon && (!slash || colon > slash)) {
        const char *t = colon + 1;
        size_t tl = strlen(t);
        if (tl == 0 || tl > 128 || t[0] == '.' || t[0] == '-') return 0;
        for (size_t i = 0; i < tl; i++)
            if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= '0' && t[i] <= '9') ||
                  t[i] == '_' || t[i] == '.' || t[i] == '-'))
                return 0;
    }
    const char *p = ref, *end = ref + nlen;
    const char *first = memchr(p, '/', nlen);
    if (first) {
        size_t fl = (size_t)(first - p);
        int domain = memchr(p, '.', fl) || memchr(p, ':', fl) || (fl == 9 && !memcmp(p, "localhost", 9));
        if (domain) {
            if (!ref_domain_ok(p, fl)) return 0;
            p = first + 1;
        }
    }
    while (p <= end) {
        const char *q = memchr(p, '/', (size_t)(end - p));
        if (!q) q = end;
        if (!ref_path_ok(p, (size_t)(q - p))) return 0;
        p = q + 1;
    }
    return 1;
}

int scp_image_build_check(const scp_image_build_opts *o, scp_err *err) {
    if (!o->from || !o->tag || !o->session || !o->service)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "image build needs an input, a tag, a session and a service");
    /* (checked before anything is read: a name CAS or Docker refuses would only show at the
     * image's first start, or its load) */
    if (!image_ref_ok(o->tag))
        return scp_fail(err, SCP_E_INVAL, EINVAL,
                        "'%s' is not an image name: lower-case NAME[:TAG] (letters, digits and . _ - "
                        "inside, path parts joined by '/', a registry host first if any; TAG up to "
                        "128 of [A-Za-z0-9_.-])", o->tag);
    if (!cas_name_ok(o->session) || !cas_name_ok(o->service))
        return scp_fail(err, SCP_E_INVAL, EINVAL, "the %s name '%s' is not one CAS accepts: 1-64 of [A-Za-z0-9_.-], "
                        "not starting with '.'", cas_name_ok(o->session) ? "service" : "session",
                        cas_name_ok(o->session) ? o->service : o->session);
    for (size_t i = 0; i < o->n_protect; i++)
        if (image_path_ok("--protect", o->protect[i], err) < 0) return -1;
    return 0;
}

int scp_image_build(const scp_image_build_opts *o, scp_image_result *res, scp_err *err) {
    memset(res, 0, sizeof *res);
    if (!o->entry || !o->shield_lib)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "image build needs the image's runtime and the shield library");
    if (scp_image_build_check(o, err) < 0) return -1;
    img_src src;
    stage st = {.root = -1};
    json_t *argv = NULL, *ij = NULL, *cfg = NULL;
    char *trusted = NULL, *ij_doc = NULL;
    char layer_path[PATH_MAX * 2] = "";
    char filtered[IMG_MAX_LAYERS][PATH_MAX];
    uint8_t seed_key[SCP_IMAGE_MAX_PATHS][SCP_VOLUME_KEY_LEN];
    memset(filtered, 0, sizeof filtered);
    int rc = -1, out_fd = -1;
    say(o, "reading ", o->from);
    if (img_src_open(o->from, o->tmpdir, &src, err) < 0) return -1;
    if (stage_open(o->tmpdir, &st, err) < 0) goto out;
    if (!(argv = entry_argv(src.config, err)) || check_env(src.config, err) < 0) goto out;
    if (img_apply_layers_bar(&src, st.root, o->progress, o->bar, err) < 0) goto out;
    size_t n_files[SCP_IMAGE_MAX_PATHS] = {0}, n_seeded = 0;
    for (size_t i = 0; i < o->n_protect; i++) {
        if (check_protect(st.root, o->protect[i], &n_files[i], err) < 0) goto out;
        n_seeded += n_files[i] != 0;
    }
    struct stat sb;
    if (fstatat(st.root, SCP_DIR, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
        scp_fail(err, SCP_E_EXIST, EEXIST, "the image already has /scp: it is a secure image (or uses that path)");
        goto out;
    }
    if (stage_runtime(st.root, o, err) < 0) goto out;
    for (size_t i = 0; i < o->n_protect; i++)
        if (n_files[i]) {
            say(o, "sealing the files under ", o->protect[i]);
            if (seed_path(&st, o->protect[i], i, seed_key[i], err) < 0) goto out;
        }
    if (n_seeded && filter_layers(&src, &st, o, filtered, err) < 0) goto out;
    say(o, "hashing the image's files for the trusted-files manifest", "");
    size_t tl = 0;
    const char *skip[SCP_IMAGE_MAX_PATHS + 1];
    for (size_t i = 0; i < o->n_protect; i++) skip[i] = o->protect[i];
    skip[o->n_protect] = "/" SEED_DIR; /* random ciphertext, authenticated by its own key */
    if (img_trusted_manifest(st.root, skip, o->n_protect + 1, &trusted, &tl, &res->n_trusted, err) < 0) goto out;
    for (size_t i = 0; i < o->n_trust; i++) {
        size_t n = 0;
        if (check_trust(st.root, o, o->trust[i], trusted, tl, &n, err) < 0) goto out;
        char line[400];
        snprintf(line, sizeof line, "%.300s (%zu file%s)", o->trust[i], n, n == 1 ? "" : "s");
        say(o, "trusted: ", line);
    }
    char tdigest[IMG_DIGEST_LEN + 1];
    img_digest_buf(trusted, tl, tdigest);
    if (!(ij = image_json(o, src.config, argv, tdigest, res->n_trusted)) || (n_seeded && add_seeds(ij, o, n_files) < 0) ||
        (o->n_trust && add_trust(ij, o) < 0) ||
        !(ij_doc = dump(ij))) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    say(o, "measuring ", json_string_value(json_array_get(argv, 0)));
    if (measure(st.root, st.dir, json_string_value(json_array_get(argv, 0)), ij_doc, res->measurement, err) < 0) goto out;
    char mhex[65];
    scp_hex(res->measurement, 32, mhex);
    snprintf(layer_path, sizeof layer_path, "%s/scp-layer.tar", src.owned ? src.dir : st.dir);
    if (!src.owned) snprintf(layer_path, sizeof layer_path, "%s.layer.tar", st.dir);
    if (write_scp_layer(st.root, layer_path, ij_doc, trusted, tl, err) < 0) goto out;
    img_blob layer = {.media = LAYER_MEDIA};
    int lfd = open(layer_path, O_RDONLY | O_CLOEXEC);
    if (lfd < 0 || img_digest_fd(lfd, layer.digest, &layer.size, err) < 0) {
        if (lfd >= 0) close(lfd);
        else scp_fail_errno(err, "cannot open '%s'", layer_path);
        goto out;
    }
    close(lfd);
    cfg = output_config(src.config, &layer, mhex, o);
    char tmp_out[PATH_MAX * 2] = "";
    if (o->output && strcmp(o->output, "-") == 0) {
        out_fd = dup(1);
    } else {
        if (o->output)
            snprintf(tmp_out, sizeof tmp_out, "%s.tmp-XXXXXX", o->output);
        else
            snprintf(tmp_out, sizeof tmp_out, "%s.out-XXXXXX", st.dir);
        out_fd = mkostemp(tmp_out, O_CLOEXEC);
    }
    if (out_fd < 0) {
        scp_fail_errno(err, "cannot create the output '%s'", o->output ? o->output : tmp_out);
        goto out;
    }
    say(o, "writing the secure image ", o->tag);
    if (write_output(&src, layer_path, &layer, cfg, o->tag, out_fd, res->image_id, err) < 0) goto out_rm;
    if (tmp_out[0] && fsync(out_fd) < 0) {
        scp_fail_errno(err, "fsync '%s'", tmp_out);
        goto out_rm;
    }
    if (o->output && strcmp(o->output, "-") != 0) {
        if (rename(tmp_out, o->output) < 0) {
            scp_fail_errno(err, "cannot rename '%s' to '%s'", tmp_out, o->output);
            goto out_rm;
        }
        tmp_out[0] = '\0';
    } else if (!o->output) {
        say(o, "loading into the Docker engine: ", o->tag);
        if (img_engine_load(tmp_out, err) < 0) goto out_rm;
    }
    const char *cwd = json_string_value(json_object_get(ij, "cwd"));
    res->session_template = session_template(o, argv, cwd ? cwd : "/", mhex, n_files, seed_key);
    size_t el = 0;
    size_t i;
    json_t *v;
    for (i = 0; i < json_array_size(argv) && (v = json_array_get(argv, i)) != NULL; i++) {
        el += (size_t)snprintf(res->entry + el, sizeof res->entry - el, "%s%s", i ? " " : "", json_string_value(v));
        if (el >= sizeof res->entry) break;
    }
    rc = res->session_template ? 0 : scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
out_rm:
    if (tmp_out[0]) unlink(tmp_out);
out:
    if (out_fd >= 0) close(out_fd);
    if (layer_path[0]) unlink(layer_path);
    for (size_t k = 0; k < IMG_MAX_LAYERS; k++)
        if (filtered[k][0]) unlink(filtered[k]);
    scp_wipe(seed_key, sizeof seed_key);
    json_decref(argv);
    json_decref(ij);
    json_decref(cfg);
    free(trusted);
    free(ij_doc);
    stage_close(&st);
    img_src_close(&src);
    return rc;
}

/* ---- inspect and verify -------------------------------------------------------------------- */

/* Read scp/image.json and scp/trusted from the image's last layer. */
static int read_scp_files(const img_src *src, char **ij, char **trusted, size_t *tl, scp_err *err) {
    *ij = *trusted = NULL;
    if (!src->n_layers) return scp_fail(err, SCP_E_FORMAT, EINVAL, "not a secure image: no layers");
    const img_layer *L = &src->layers[src->n_layers - 1];
    char full[PATH_MAX * 2];
    snprintf(full, sizeof full, "%s/%s", src->dir, L->path);
    struct archive *a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    int rc = -1;
    if (archive_read_open_filename(a, full, 1 << 16) != ARCHIVE_OK) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "the last layer is not a tar: %s", archive_error_string(a));
        goto out;
    }
    struct archive_entry *e;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        const char *n = archive_entry_pathname(e);
        char **dst = !strcmp(n, IMAGE_JSON) ? ij : !strcmp(n, TRUSTED) ? trusted : NULL;
        if (!dst || archive_entry_filetype(e) != AE_IFREG) continue;
        int64_t sz = archive_entry_size(e);
        if (sz < 0 || sz > (int64_t)(64u << 20)) {
            scp_fail(err, SCP_E_FORMAT, EINVAL, "/%s is too large", n);
            goto out;
        }
        free(*dst);
        *dst = malloc((size_t)sz + 1);
        if (!*dst || archive_read_data(a, *dst, (size_t)sz) != sz) {
            scp_fail(err, SCP_E_FORMAT, EIO, "cannot read /%s from the image", n);
            goto out;
        }
        (*dst)[sz] = '\0';
        if (dst == trusted) *tl = (size_t)sz;
    }
    if (!*ij || !*trusted) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "not a secure image: its last layer has no /%s", !*ij ? IMAGE_JSON : TRUSTED);
        goto out;
    }
    rc = 0;
out:
    archive_read_free(a);
    if (rc < 0) {
        free(*ij);
        free(*trusted);
        *ij = *trusted = NULL;
    }
    return rc;
}

int scp_image_inspect(const char *from, const char *tmpdir, scp_image_info *info, scp_err *err) {
    memset(info, 0, sizeof *info);
    img_src src;
    if (img_src_open(from, tmpdir, &src, err) < 0) return -1;
    char *trusted = NULL;
    size_t tl = 0;
    int rc = read_scp_files(&src, &info->image_json, &trusted, &tl, err);
    if (rc == 0) {
        for (size_t i = 0; i < tl; i++) info->n_trusted += trusted[i] == '\n';
        snprintf(info->image_id, sizeof info->image_id, "%s", src.config_digest);
        /* put the measurement label beside image.json for the caller */
        json_t *j = json_loads(info->image_json, 0, NULL);
        const char *m = json_string_value(json_object_get(
            json_object_get(json_object_get(src.config, "config"), "Labels"), "org.scp.measurement"));
        if (j && m) {
            json_object_set_new(j, "measurement", json_string(m));
            char *d = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
            if (d) {
                free(info->image_json);
                info->image_json = d;
            }
        }
        json_decref(j);
    }
    free(trusted);
    img_src_close(&src);
    return rc;
}

int scp_image_verify(const char *from, const char *tmpdir, scp_image_info *info, scp_err *err) {
    memset(info, 0, sizeof *info);
    img_src src;
    if (img_src_open(from, tmpdir, &src, err) < 0) return -1;
    stage st = {.root = -1};
    char *ij_doc = NULL, *trusted = NULL, *again = NULL;
    size_t tl = 0, al = 0, n = 0;
    json_t *ij = NULL;
    int rc = -1;
    if (read_scp_files(&src, &ij_doc, &trusted, &tl, err) < 0) goto out;
    if (!(ij = json_loads(ij_doc, JSON_REJECT_DUPLICATES, NULL)) || !json_is_object(ij)) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "/%s is not a JSON object", IMAGE_JSON);
        goto out;
    }
    const char *want_t = json_string_value(json_object_get(ij, "trusted"));
    json_t *prot = json_object_get(ij, "protect");
    const char *prog = json_string_value(json_array_get(json_object_get(ij, "argv"), 0));
    const char *mlabel = json_string_value(
        json_object_get(json_object_get(json_object_get(src.config, "config"), "Labels"), "org.scp.measurement"));
    if (!want_t || !json_is_array(prot) || !prog || !mlabel || json_array_size(prot) > SCP_IMAGE_MAX_PATHS) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "/%s or the measurement label is incomplete", IMAGE_JSON);
        goto out;
    }
    char got[IMG_DIGEST_LEN + 1];
    img_digest_buf(trusted, tl, got);
    if (strcmp(got, want_t) != 0) {
        scp_fail(err, SCP_E_INTEGRITY, EIO, "/%s does not match the digest that image.json names", TRUSTED);
        goto out;
    }
    if (stage_open(tmpdir, &st, err) < 0 || img_apply_layers(&src, st.root, NULL, err) < 0) goto out;
    const char *skip[SCP_IMAGE_MAX_PATHS + 3];
    size_t ns = 0;
    size_t i;
    json_t *v;
    for (i = 0; i < json_array_size(prot) && (v = json_array_get(prot, i)) != NULL; i++) if (json_is_string(v)) skip[ns++] = json_string_value(v);
    skip[ns++] = "/" IMAGE_JSON;
    skip[ns++] = "/" TRUSTED;
    skip[ns++] = "/" SEED_DIR;
    if (img_trusted_manifest(st.root, skip, ns, &again, &al, &n, err) < 0) goto out;
    if (al != tl || memcmp(again, trusted, tl) != 0) {
        /* name the first line that differs */
        const char *a = again, *b = trusted;
        while (*a && *a == *b) a++, b++;
        while (a > again && a[-1] != '\n') a--;
        const char *nl = strchr(a, '\n');
        scp_fail(err, SCP_E_INTEGRITY, EIO, "the image's files differ from its trusted-files manifest at: %.*s",
                 nl ? (int)(nl - a) : 200, a);
        goto out;
    }
    uint8_t m[32];
    char mhex[65];
    if (measure(st.root, st.dir, prog, ij_doc, m, err) < 0) goto out;
    scp_hex(m, 32, mhex);
    if (strcmp(mhex, mlabel) != 0) {
        scp_fail(err, SCP_E_INTEGRITY, EIO, "the image measures %s, its label claims %s", mhex, mlabel);
        goto out;
    }
    info->image_json = ij_doc;
    ij_doc = NULL;
    info->n_trusted = n;
    snprintf(info->image_id, sizeof info->image_id, "%s", src.config_digest);
    rc = 0;
out:
    json_decref(ij);
    free(ij_doc);
    free(trusted);
    free(again);
    stage_close(&st);
    img_src_close(&src);
    return rc;
}

void scp_image_info_free(scp_image_info *info) {
    free(info->image_json);
    info->image_json = NULL;
}
