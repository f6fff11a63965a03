/* runtime/attest_run.c - see attest_run.h. */
#include "runtime/attest_run.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <linux/futex.h>
#include <linux/openat2.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/bytes.h"
#include "common/log.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "runtime/launch.h"
#include "scp/attest.h"
#include "scp/shield.h"
#include "scp/volume.h"

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
    int r = scp_elf_set_open_with(root, prog, rootfs ? SCP_ATTEST_RUN_ROOTFS_PATH : getenv("PATH"), lib,
                                  conf->trusted, conf->ntrusted, set, err);
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

const char *scp_attest_run_default_volume_dir(void) {
    static char buf[PATH_MAX];
    if (geteuid() == 0) return "/var/lib/scp/volumes";
    const char *x = getenv("XDG_DATA_HOME"), *h = getenv("HOME");
    if (x && x[0] == '/') snprintf(buf, sizeof buf, "%s/scp/volumes", x);
    else snprintf(buf, sizeof buf, "%s/.local/share/scp/volumes", h && *h ? h : ".");
    return buf;
}

static double now_s(void) { return (double)scp_now_ns() / 1e9; }

/* scp_attest_get_config, retrying what looks like CAS being unreachable (system errors while
 * connecting or talking) with exponential backoff until `timeout` seconds have passed. A pin
 * mismatch (SCP_E_INTEGRITY) or a refusal is final at once. */
struct ev_check {
    const struct scp_attest_run_opts *o;
    const uint8_t *m;
    const uint8_t *ik; /* the instance key (SCP_INSTANCE_KEY_LEN bytes) */
};

/* The evidence of o->evidence, refused unless it binds this nonce, key and instance key and
 * vouches for the measurement computed here (so that what runs is what CAS releases the
 * configuration to, and a per-instance certificate is for the key this process holds). */
static int checked_evidence(void *ctx, const uint8_t nonce[32], const uint8_t pub[32], uint8_t **ev, size_t *evlen,
                            scp_err *err) {
    const struct ev_check *k = ctx;
    if (k->o->evidence(k->o->evidence_ctx, nonce, pub, k->ik, ev, evlen, err) < 0) return -1;
    scp_evidence e;
    if (scp_evidence_parse(*ev, *evlen, &e, err) < 0 || memcmp(e.nonce, nonce, 32) != 0 ||
        memcmp(e.pubkey, pub, 32) != 0 || memcmp(e.measurement, k->m, 32) != 0 || !e.instance_key ||
        memcmp(e.instance_key, k->ik, SCP_INSTANCE_KEY_LEN) != 0) {
        char got[65] = "", want[65];
        if (!err->code) scp_hex(e.measurement, 32, got);
        scp_hex(k->m, 32, want);
        free(*ev);
        *ev = NULL;
        if (err->code) return -1;
        return scp_fail(err, SCP_E_INTEGRITY, EPERM,
                        "the attestation service vouched for %s (or another nonce, key or instance key), but this runtime "
                        "measured %s; refusing",
                        got, want);
    }
    return 0;
}

static int attest_once(scp_cas_client *c, const struct scp_attest_run_opts *o, const uint8_t m[32],
                       const uint8_t *ik, char **cfg, scp_err *err) {
    struct ev_check k = {o, m, ik};
    return o->evidence ? scp_attest_get_config_ev(c, o->session, o->service, checked_evidence, &k, cfg, err)
                       : scp_attest_get_config_ik(c, o->session, o->service, o->tee ? o->tee : SCP_TEE_SIM,
                                                  o->platform_key, m, ik, cfg, err);
}

static int attest_retry(scp_cas_client *c, const struct scp_attest_run_opts *o, const uint8_t m[32],
                        const uint8_t *ik, char **cfg, scp_err *err) {
    double start = now_s(), wait = 0.1;
    for (;;) {
        int r = attest_once(c, o, m, ik, cfg, err);
        if (r == 0) return 0;
        /* SCP_E_BUSY: another process wrote our configfs-tsm report entry meanwhile */
        if (err->code != SCP_E_SYS && err->code != SCP_E_BUSY) return -1;
        double left = o->cas_timeout - (now_s() - start);
        if (left <= 0) {
            scp_err_prefix(err, "CAS unreachable for %.0f s (--cas-timeout)", o->cas_timeout);
            return -1;
        }
        if (wait > left) wait = left;
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
        wait = wait * 2 > 5 ? 5 : wait * 2;
    }
}

static int mkdirs(const char *path, mode_t mode) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, mode) && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, mode) && errno != EEXIST ? -1 : 0;
}

struct run_volume {
    const char *name;
    char dir[PATH_MAX];
    uint64_t reported_gen;
    char reported[2 * SCP_VOLUME_TAG_LEN + 1];
};

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p) < 0 && errno != ENOENT ? -1 : 0;
}

/* A new volume at dir that o->seed fills: made at DIR.seeding and renamed into place once
 * filled, so that an interrupted first start leaves no half-filled volume that the next one
 * would take for the service's own. */
static int seed_volume(const struct scp_attest_run_opts *o, const char *dir, const char *mount,
                       const uint8_t key[SCP_VOLUME_KEY_LEN], const uint8_t *seed_key, scp_err *err) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.seeding", dir) >= (int)sizeof tmp)
        return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "--volume-dir is too long");
    if (nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        return scp_fail_errno(err, "cannot remove the leftover %s", tmp);
    if (scp_volume_create(tmp, key, 0, err) < 0) return -1;
    scp_volume *v = scp_volume_open(tmp, key, NULL, err);
    if (!v) return -1;
    int rc = o->seed(o->seed_ctx, mount, seed_key, v, err);
    if (scp_volume_close(v, rc == 0 ? err : NULL) < 0) rc = -1;
    if (rc == 0 && rename(tmp, dir) < 0) rc = scp_fail_errno(err, "cannot move the new volume to %s", dir);
    return rc;
}

/* Open (or, on first start, create, and fill through o->seed) the volume at dir against the tag
 * CAS expects. The tag on disk afterwards goes to *now. */
static int prepare_volume(const struct scp_attest_run_opts *o, const char *name, const char *dir, const char *mount,
                          const uint8_t key[SCP_VOLUME_KEY_LEN], const uint8_t *seed_key, const char *expected_hex,
                          scp_volume_tag *now, scp_err *err) {
    scp_volume_tag exp;
    int have_exp = expected_hex != NULL;
    if (have_exp && scp_volume_tag_parse(expected_hex, &exp, err) < 0) {
        scp_err_prefix(err, "CAS's tag for volume %s", name);
        return -1;
    }
    struct stat st;
    if (stat(dir, &st) < 0 || (S_ISDIR(st.st_mode) && rmdir(dir) == 0)) { /* missing or empty: first start */
        if (have_exp)
            return scp_fail(err, SCP_E_ROLLBACK, ENOENT,
                            "volume %s: %s is missing, but CAS expects generation %llu of it", name, dir,
                            (unsigned long long)scp_get_u64(exp.bytes));
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%s", dir);
        char *sl = strrchr(parent, '/');
        if (sl) *sl = 0;
        if (mkdirs(parent, 0700) < 0) return scp_fail_errno(err, "cannot create %s", parent);
        if (o->seed) {
            if (seed_volume(o, dir, mount, key, seed_key, err) < 0) {
                scp_err_prefix(err, "volume %s: its first start", name);
                return -1;
            }
        } else if (scp_volume_create(dir, key, 0, err) < 0) {
            scp_err_prefix(err, "cannot create volume %s at %s", name, dir);
            return -1;
        }
    }
    scp_volume *v = scp_volume_open(dir, key, have_exp ? &exp : NULL, err);
    if (!v) {
        if (err->code == SCP_E_ROLLBACK || err->code == SCP_E_INTEGRITY) {
            scp_err e2 = {0};
            scp_volume *old = scp_volume_open(dir, key, NULL, &e2);
            if (old) {
                scp_volume_tag t;
                scp_volume_tag_get(old, &t);
                scp_volume_close(old, NULL);
                return scp_fail(err, SCP_E_ROLLBACK, ESTALE,
                                "volume %s (%s) was rolled back: it holds generation %llu, CAS expects generation %llu",
                                name, dir, (unsigned long long)scp_get_u64(t.bytes),
                                (unsigned long long)scp_get_u64(exp.bytes));
            }
        }
        scp_err_prefix(err, "volume %s (%s)", name, dir);
        return -1;
    }
    scp_volume_tag_get(v, now);
    scp_volume_close(v, NULL);
    return 0;
}

/* A path of the policy (the working directory, a volume's mount point) as the program will see
 * it inside the rootfs `root`: refused when ".." climbs above "/" or when the part of it that
 * exists goes through a symlink that leaves the rootfs (openat2 RESOLVE_BENEATH: absolute
 * symlinks count as leaving). After pivot_root nothing could escape anyway; the point is to
 * refuse, before anything starts, a policy that names a place the owner did not mean. */
static int path_in_rootfs(int root, const char *what, const char *path, const char *rootfs, scp_err *err) {
    if (path[0] != '/')
        return scp_fail(err, SCP_E_INVAL, EINVAL, "the policy's %s %s is not an absolute path", what, path);
    int depth = 0;
    for (const char *p = path; *p;) {
        while (*p == '/') p++;
        size_t l = strcspn(p, "/");
        if (l == 2 && !strncmp(p, "..", 2)) depth--;
        else if (l && !(l == 1 && *p == '.')) depth++;
        if (depth < 0)
            return scp_fail(err, SCP_E_INVAL, EXDEV, "the policy's %s %s leaves the rootfs %s through '..'", what, path,
                            rootfs);
        p += l;
    }
    char rel[PATH_MAX];
    const char *r = path;
    while (*r == '/') r++;
    if (snprintf(rel, sizeof rel, "%s", *r ? r : ".") >= (int)sizeof rel)
        return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "the policy's %s is too long", what);
    for (;;) {
        int fd = scp_openat2(root, rel, O_PATH, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        if (errno == EXDEV || errno == ELOOP)
            return scp_fail(err, SCP_E_INVAL, EXDEV,
                            "the policy's %s %s leaves the rootfs %s through a symlink (inside the rootfs, symlinks "
                            "on its way must be relative and stay inside)",
                            what, path, rootfs);
        if (errno != ENOENT) return scp_fail_errno(err, "cannot check the policy's %s %s in the rootfs %s", what, path, rootfs);
        if (!strcmp(rel, ".")) return 0;
        char *sl = strrchr(rel, '/'); /* the rest is created inside the container */
        if (sl) *sl = 0;
        else strcpy(rel, ".");
    }
}

/* The policy's environment must not steer the loader: what it loads was measured. */
static int env_name_ok(const char *k) {
    return strncmp(k, "LD_", 3) != 0 && strncmp(k, "SCP_SHIELD", 10) != 0 && strncmp(k, "GLIBC_TUNABLES", 14) != 0;
}

int scp_attest_run_image_env_check(const char *entry, scp_err *err) {
    const char *eq = strchr(entry, '=');
    if (!eq || eq == entry) return scp_fail(err, SCP_E_FORMAT, EINVAL, "the image's Env entry '%s' is not NAME=VALUE", entry);
    int len = (int)(eq - entry);
    if (!env_name_ok(entry) || !strncmp(entry, "SCP_SEED_", 9))
        return scp_fail(err, SCP_E_INVAL, EINVAL,
                        "the image's Env sets %.*s, which would change what the loader or the entry runs; refusing", len,
                        entry);
    return 0;
}

/* The image's Env beneath the policy's environment in cfg (a name the policy sets keeps the
 * policy's value), so the program gets both through the launch memfd. */
static int merge_image_env(json_t *cfg, char *const *image_env, scp_err *err) {
    if (!image_env || !*image_env) return 0;
    json_t *env = json_object_get(cfg, "environment");
    if (!json_is_object(env) && json_object_set_new(cfg, "environment", env = json_object()) < 0)
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    for (char *const *e = image_env; *e; e++) {
        if (scp_attest_run_image_env_check(*e, err) < 0) return -1;
        const char *eq = strchr(*e, '=');
        size_t len = (size_t)(eq - *e);
        if (json_object_getn(env, *e, len)) continue;
        if (json_object_setn_new(env, *e, len, json_string(eq + 1)) < 0)
            return scp_fail(err, SCP_E_FORMAT, EINVAL, "the image's Env entry '%.*s' is not UTF-8", (int)len, *e);
    }
    return 0;
}

/* The policy's SCP_SEED_<volume> (hex key of the files a secure image sealed for that volume),
 * taken out of the environment: it is the entry's, never the program's. */
static int take_seed_key(json_t *env, const char *vol, uint8_t key[SCP_VOLUME_KEY_LEN], int *found, scp_err *err) {
    char var[128];
    *found = 0;
    snprintf(var, sizeof var, "SCP_SEED_%s", vol);
    const char *hex = json_string_value(json_object_get(env, var));
    if (!hex) return 0;
    int bad = strlen(hex) != 2 * SCP_VOLUME_KEY_LEN || scp_unhex(hex, key, SCP_VOLUME_KEY_LEN) < 0;
    OPENSSL_cleanse((char *)hex, strlen(hex));
    json_object_del(env, var);
    if (bad) return scp_fail(err, SCP_E_FORMAT, EINVAL, "the policy's %s is not %d hex digits", var, 2 * SCP_VOLUME_KEY_LEN);
    *found = 1;
    return 0;
}

/* Every other SCP_SEED_* (a volume this service does not use) goes too. */
static void drop_seed_vars(json_t *env) {
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(env, tmp, k, v) {
        if (strncmp(k, "SCP_SEED_", 9)) continue;
        if (json_is_string(v)) OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
        json_object_del(env, k);
    }
}

static volatile sig_atomic_t child_pid, pending_sig;
static void forward(int sig) {
    if (child_pid > 0) kill((pid_t)child_pid, sig);
    else pending_sig = sig; /* PID 1 before the program exists: delivered once it does */
}

static const int forwarded_sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};
static void forward_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    for (size_t i = 0; i < sizeof forwarded_sigs / sizeof forwarded_sigs[0]; i++) sigaction(forwarded_sigs[i], &sa, NULL);
}

/* As PID 1 of a container (a secure image's entry) this process is the parent of every orphan
 * of the program: reap them all, so that no zombie piles up. Returns the program's status once
 * it has exited (-1 before); a console relay reaped here is marked done (0) in relay[]. */
static int reap_all(pid_t prog, pid_t relay[3]) {
    int st, status = -1;
    pid_t r;
    while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
        if (r == prog) status = scp_exit_code(st, "scpctl run");
        for (int k = 1; k < 3; k++)
            if (relay[k] == r) relay[k] = 0;
    }
    return status;
}

/* Report one tag record to CAS; keeps the highest generation reported per volume, so a late
 * record of a forked writer never looks like a rollback to CAS. Returns 0 when CAS holds this
 * generation or a newer one. */
#define WHO(o) ((o)->who ? (o)->who : "scpctl run")

static int report(scp_cas_client *c, const struct scp_attest_run_opts *o, const char *token, struct run_volume *rv,
                  const uint8_t *tag) {
    uint64_t gen = scp_get_u64(tag);
    char hex[2 * SCP_VOLUME_TAG_LEN + 1];
    scp_hex(tag, SCP_VOLUME_TAG_LEN, hex);
    if (rv->reported[0] && (gen < rv->reported_gen || !strcmp(hex, rv->reported))) return 0;
    scp_err e = {0};
    int r = scp_attest_report_tag(c, o->session, o->service, rv->name, hex, token, &e);
    /* an unreachable CAS (connection errors) is retried with backoff up to --cas-timeout */
    for (double wait = 0.1, t0 = now_s(); r < 0 && e.code == SCP_E_SYS && now_s() - t0 < o->cas_timeout;) {
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
        wait = wait * 2 > 2 ? 2 : wait * 2;
        r = scp_attest_report_tag(c, o->session, o->service, rv->name, hex, token, &e);
    }
    if (r < 0) {
        scp_log(SCP_LOG_WARN, WHO(o), "cannot report the tag of volume %s (generation %llu) to CAS: %s", rv->name,
                (unsigned long long)gen, e.msg);
        return -1;
    }
    rv->reported_gen = gen;
    memcpy(rv->reported, hex, sizeof hex);
    return 0;
}

/* The tag records read from the tag socket and not yet reported: of each volume's records only
 * the newest generation (newest[i], bit i of got). CAS keeps one tag per volume and refuses an
 * older generation, so a tag that a newer one of the same volume follows needs no report of its
 * own, and a --tag-sync commit waits for acked >= its generation, which the newest one's
 * acknowledgement gives. When CAS is slower than the commits (MariaDB at one commit per
 * transaction), the records that queued during one report go to CAS as one. A record of the
 * same generation as the held one but another tag (two states at one generation: a fork) is
 * not folded: it waits in carry for the next batch, so that CAS sees both and refuses the
 * second. */
struct tag_batch {
    uint8_t newest[SCP_SHIELD_MAX_VOLUMES][SCP_VOLUME_TAG_LEN];
    unsigned got;
    int has_carry;
    uint8_t carry[1 + SCP_VOLUME_TAG_LEN];
};

/* Fold one record (volume index, tag) into b; 0, or -1 when it must wait for the next batch. */
static int batch_add(struct tag_batch *b, const uint8_t *rec) {
    uint8_t *n = b->newest[rec[0]];
    if (b->got & (1u << rec[0])) {
        uint64_t g = scp_get_u64(rec + 1), h = scp_get_u64(n);
        if (g == h && memcmp(n, rec + 1, SCP_VOLUME_TAG_LEN)) return -1;
        if (g <= h) return 0;
    }
    memcpy(n, rec + 1, SCP_VOLUME_TAG_LEN);
    b->got |= 1u << rec[0];
    return 0;
}

/* Fill b: the carried record, one read that may block (poll said the socket is readable; not
 * when a carried record is there already), then whatever else is queued, without waiting. Returns 0, or -1 at the socket's end with nothing
 * taken. */
static int take_tags(int fd, size_t nv, struct tag_batch *b) {
    assert(nv <= SCP_SHIELD_MAX_VOLUMES);
    b->got = 0;
    if (b->has_carry) {
        b->has_carry = 0;
        batch_add(b, b->carry);
    }
    for (int flags = b->got ? MSG_DONTWAIT : 0;; flags = MSG_DONTWAIT) {
        uint8_t rec[1 + SCP_VOLUME_TAG_LEN];
        ssize_t r = recv(fd, rec, sizeof rec, flags);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return b->got || flags ? 0 : -1;
        if (r != (ssize_t)sizeof rec || rec[0] >= nv) continue;
        if (batch_add(b, rec) < 0) {
            memcpy(b->carry, rec, sizeof rec);
            b->has_carry = 1;
            return 0;
        }
    }
}

/* --tag-sync: publish CAS's acknowledgement to the waiting commits. */
static void ack(struct scp_shield_tag_sync *ts, size_t i, uint64_t gen) {
    if (!ts || i >= 8) return;
    if (__atomic_load_n(&ts->acked[i], __ATOMIC_ACQUIRE) < gen) __atomic_store_n(&ts->acked[i], gen, __ATOMIC_RELEASE);
    __atomic_add_fetch(&ts->acks, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, &ts->acks, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static int wait_status(pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return 1;
    return scp_exit_code(st, "scpctl run");
}

static int buf_add(char **buf, size_t *len, const void *p, size_t n) {
    if (*len + n > SCP_SHIELD_LAUNCH_MAX) return -1;
    char *nb = malloc(*len + n);
    if (!nb) return -1;
    if (*len) memcpy(nb, *buf, *len);
    memcpy(nb + *len, p, n);
    if (*buf) scp_wipe(*buf, *len);
    free(*buf);
    *buf = nb;
    *len += n;
    return 0;
}

/* The launch memfd (SCP_SHIELD_ENV_LAUNCH_FD): the policy's arguments after argv[0] and its
 * environment, which the shield installs before main. Returns the descriptor (inheritable,
 * sealed) or -1. */
static int launch_memfd(json_t *cmd, size_t first, json_t *env) {
    char *buf = NULL;
    size_t len = 0;
    uint32_t nargs = (uint32_t)(json_array_size(cmd) - first), nenv = (uint32_t)json_object_size(env);
    uint8_t head[14] = "SCPL1\n";
    for (int i = 0; i < 4; i++) head[6 + i] = (uint8_t)(nargs >> (8 * i)), head[10 + i] = (uint8_t)(nenv >> (8 * i));
    int bad = buf_add(&buf, &len, head, sizeof head);
    for (size_t i = first; i < json_array_size(cmd) && !bad; i++) {
        const char *a = json_string_value(json_array_get(cmd, i));
        bad = buf_add(&buf, &len, a, strlen(a) + 1);
    }
    const char *k;
    json_t *v;
    json_object_foreach(env, k, v) {
        if (bad) break;
        bad = buf_add(&buf, &len, k, strlen(k)) || buf_add(&buf, &len, "=", 1) ||
              buf_add(&buf, &len, json_string_value(v), strlen(json_string_value(v)) + 1);
    }
    int fd = bad ? -1 : scp_shield_sealed_memfd("scp-launch", buf, len, NULL);
    if (buf) scp_wipe(buf, len);
    free(buf);
    return fd;
}

static int put32(char **buf, size_t *len, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return buf_add(buf, len, b, 4);
}

/* The injected files (SCP_SHIELD_ENV_FILES_FD, layout in scp/shield.h) in a sealed memfd that
 * only the shield reads: their content never touches a file system. Mode 0400: the program's
 * own user reads them. Returns the descriptor (inheritable) or -1. */
static int files_memfd(json_t *files) {
    char *buf = NULL;
    size_t len = 0;
    int bad = buf_add(&buf, &len, "SCPF1\n", 6) || put32(&buf, &len, (uint32_t)json_array_size(files));
    for (size_t i = 0; i < json_array_size(files) && !bad; i++) {
        json_t *f = json_array_get(files, i), *c = json_object_get(f, "content");
        const char *path = json_string_value(json_object_get(f, "path"));
        bad = put32(&buf, &len, 0400) || put32(&buf, &len, (uint32_t)strlen(path) + 1) ||
              put32(&buf, &len, (uint32_t)json_string_length(c)) || buf_add(&buf, &len, path, strlen(path) + 1) ||
              buf_add(&buf, &len, json_string_value(c), json_string_length(c));
    }
    int fd = bad ? -1 : scp_shield_sealed_memfd("scp-files", buf, len, NULL);
    if (buf) scp_wipe(buf, len);
    free(buf);
    return fd;
}

/* The policy's console section (SCP_SHIELD_ENV_CONSOLE_FD) in a sealed memfd: which streams
 * are sealed and the service's console key; `lines`: records in line form. Returns the
 * descriptor, -1 when nothing is sealed, -2 on error. */
static int console_memfd(json_t *con, const char *session, const char *service, int lines) {
    if (!con) return -1;
    scp_shield_console *c = calloc(1, sizeof *c);
    if (!c) return -2;
    memcpy(c->magic, SCP_SHIELD_CONSOLE_MAGIC, 8);
    const char *names[3] = {"stdin", "stdout", "stderr"};
    for (int k = 0; k < 3; k++)
        if (json_is_true(json_object_get(con, names[k]))) c->flags |= 1u << k;
    const char *khex = json_string_value(json_object_get(con, "key"));
    int fd = -1;
    if (c->flags && lines) c->flags |= SCP_SHIELD_CON_LINES;
    if (c->flags && khex && scp_unhex(khex, c->key, sizeof c->key) == 0 && strlen(session) < sizeof c->session &&
        strlen(service) < sizeof c->service) {
        snprintf(c->session, sizeof c->session, "%s", session);
        snprintf(c->service, sizeof c->service, "%s", service);
        fd = scp_shield_sealed_memfd("scp-console", c, sizeof *c, NULL);
        if (fd < 0) fd = -2;
    } else if (c->flags) {
        fd = -2;
    }
    scp_wipe(c, sizeof *c);
    free(c);
    return fd;
}

/* A sealed stdout or stderr (fd k) reaches the host through a relay: the program gets one end
 * of a socket pair, and a process of scpctl's on the host copies what arrives on the other end
 * to scpctl's own descriptor k. A pipe or file that the program held (in the shield's range)
 * could be reopened through /proc/self/fd/N by a raw path call, which no filter sees, and
 * written in plaintext; a socket cannot be reopened that way. The relay blocks when the host
 * does not drain, and so, once the socket's buffer is full, does the program: as with plain
 * output. It ends at end of file, when every process of the container has closed its end. */
static pid_t console_relay(int k, int *prog_end) {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) return -1;
    fflush(NULL);
    pid_t r = fork();
    if (r < 0) {
        close(sp[0]);
        close(sp[1]);
        return -1;
    }
    if (r == 0) {
        /* only the socket and the host's descriptor: no other holder of the tag socket */
        if (dup2(sp[0], 3) < 0) _exit(1);
        syscall(SYS_close_range, 4u, ~0u, 0u);
        signal(SIGINT, SIG_IGN); /* a terminal's Ctrl-C is the program's to act on */
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        static char buf[65536];
        for (;;) {
            ssize_t n = read(3, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0 || scp_write_full(k, buf, (size_t)n) < 0) _exit(n < 0 ? 1 : 0);
        }
    }
    close(sp[0]);
    *prog_end = sp[1];
    return r;
}

/* The network section (SCP_SHIELD_ENV_NET_FD, layout in scp/shield.h) in a sealed memfd: the
 * service's certificate and private key reach the shield only this way. Returns the
 * descriptor (inheritable) or -1. */
static int net_blob(char **buf, size_t *len, const char *word, const char *pem) {
    char line[64];
    int n = snprintf(line, sizeof line, "%s %zu\n", word, strlen(pem));
    return buf_add(buf, len, line, (size_t)n) || buf_add(buf, len, pem, strlen(pem)) || buf_add(buf, len, "\n", 1);
}

static int net_word_ok(const char *s) { return s && *s && strlen(s) < 254 && !strpbrk(s, " \n\t"); }

/* A rule's checks of a per-instance certificate: `want service NAME`, `want measurement HEX`,
 * `want platform HEX` after its line, and its `proto postgres` (scp/shield.h). */
static int net_wants(char **buf, size_t *len, json_t *rule) {
    const char *proto = json_string_value(json_object_get(rule, "protocol"));
    if (proto) { /* CAS sends no other; an unknown one must not become plain TLS */
        if (strcmp(proto, "postgres") != 0 && strcmp(proto, "mysql") != 0) return 1;
        char line[32];
        int n = snprintf(line, sizeof line, "proto %s\n", proto);
        if (buf_add(buf, len, line, (size_t)n)) return 1;
    }
    static const char *const what[] = {"service", "measurement", "platform"};
    for (size_t i = 0; i < sizeof what / sizeof what[0]; i++) {
        json_t *v = json_object_get(rule, what[i]);
        if (!v) continue;
        if (!net_word_ok(json_string_value(v))) return 1;
        char line[320];
        int n = snprintf(line, sizeof line, "want %s %s\n", what[i], json_string_value(v));
        if (buf_add(buf, len, line, (size_t)n)) return 1;
    }
    return 0;
}

static int net_memfd(json_t *net) {
    char *buf = NULL;
    size_t len = 0;
    char line[1024];
    int n = snprintf(line, sizeof line, "SCPN1\ndefault %s\nmin_tls %s\n",
                     json_is_string(json_object_get(net, "default")) &&
                             !strcmp(json_string_value(json_object_get(net, "default")), "refuse")
                         ? "refuse"
                         : "allow",
                     json_is_string(json_object_get(net, "min_tls")) &&
                             !strcmp(json_string_value(json_object_get(net, "min_tls")), "1.2")
                         ? "12"
                         : "13");
    int bad = buf_add(&buf, &len, line, (size_t)n);
    const char *cert = json_string_value(json_object_get(net, "cert")), *key = json_string_value(json_object_get(net, "key"));
    if (cert && key) bad = bad || net_blob(&buf, &len, "cert", cert) || net_blob(&buf, &len, "key", key);
    int nca = 0;
    json_t *lis = json_object_get(net, "listen"), *peers = json_object_get(net, "peers");
    for (size_t i = 0; i < json_array_size(lis) && !bad; i++) {
        json_t *l = json_array_get(lis, i);
        const char *ca = json_string_value(json_object_get(l, "client_ca"));
        int idx = -1;
        if (json_is_true(json_object_get(l, "client_cert"))) {
            if (!ca) bad = 1;
            else bad = net_blob(&buf, &len, "ca", ca), idx = nca++;
        }
        const char *id = json_string_value(json_object_get(l, "identity"));
        if (id && !net_word_ok(id)) bad = 1;
        n = snprintf(line, sizeof line, "listen %lld %d%s%s\n", (long long)json_integer_value(json_object_get(l, "port")),
                     idx, id ? " " : "", id ? id : "");
        bad = bad || buf_add(&buf, &len, line, (size_t)n) || net_wants(&buf, &len, l);
    }
    for (size_t i = 0; i < json_array_size(peers) && !bad; i++) {
        json_t *pe = json_array_get(peers, i);
        const char *host = json_string_value(json_object_get(pe, "host")), *name = json_string_value(json_object_get(pe, "name")),
                   *ca = json_string_value(json_object_get(pe, "ca")),
                   *id = json_string_value(json_object_get(pe, "identity"));
        if (!net_word_ok(host) || !net_word_ok(name) || !ca || (id && !net_word_ok(id))) {
            bad = 1;
            break;
        }
        bad = net_blob(&buf, &len, "ca", ca);
        n = snprintf(line, sizeof line, "peer %s %lld %s %d%s%s\n", host,
                     (long long)json_integer_value(json_object_get(pe, "port")), name, nca++, id ? " " : "", id ? id : "");
        bad = bad || buf_add(&buf, &len, line, (size_t)n) || net_wants(&buf, &len, pe);
    }
    int fd = bad ? -1 : scp_shield_sealed_memfd("scp-net", buf, len, NULL);
    if (buf) scp_wipe(buf, len);
    free(buf);
    return fd;
}

/* The instance key (docs/cas.md "identity: instance"): a P-256 key made here for every
 * attestation; its public half travels in the evidence, and CAS certifies it when the service's
 * network identity is per instance. The private half goes only to the shield (the network
 * memfd), never to CAS. pub receives the uncompressed point. */
static EVP_PKEY *instance_key_new(uint8_t pub[SCP_INSTANCE_KEY_LEN], scp_err *err) {
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    size_t n = 0;
    if (!k || EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pub, SCP_INSTANCE_KEY_LEN, &n) != 1 ||
        n != SCP_INSTANCE_KEY_LEN || pub[0] != 4) {
        EVP_PKEY_free(k);
        scp_fail(err, SCP_E_CRYPTO, EIO, "cannot make the instance key (P-256)");
        return NULL;
    }
    return k;
}

/* The certificate's notAfter, or 0; the public key must be the instance's. */
static time_t cert_for_key(const char *pem, const uint8_t ik_pub[SCP_INSTANCE_KEY_LEN]) {
    BIO *b = pem ? BIO_new_mem_buf(pem, -1) : NULL;
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    unsigned char *pt = NULL;
    size_t n = x ? EVP_PKEY_get1_encoded_public_key(X509_get0_pubkey(x), &pt) : 0;
    time_t t = 0;
    struct tm tm;
    if (n == SCP_INSTANCE_KEY_LEN && memcmp(pt, ik_pub, n) == 0 && ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
        t = timegm(&tm);
    OPENSSL_free(pt);
    X509_free(x);
    ERR_clear_error();
    return t;
}

/* identity: instance: the certificate CAS sent must be for our key (*expires: its notAfter);
 * the network section then gets the private key in PEM (it has none from CAS). */
static int instance_key_install(json_t *net, EVP_PKEY *ik, const uint8_t ik_pub[SCP_INSTANCE_KEY_LEN],
                                time_t *expires, scp_err *err) {
    *expires = cert_for_key(json_string_value(json_object_get(net, "cert")), ik_pub);
    if (!*expires)
        return scp_fail(err, SCP_E_INTEGRITY, EPROTO,
                        "CAS sent a per-instance network certificate that is not for this instance's key");
    BIO *kb = BIO_new(BIO_s_secmem());
    char *data = NULL;
    long len = kb && PEM_write_bio_PrivateKey(kb, ik, NULL, NULL, 0, NULL, NULL) == 1 ? BIO_get_mem_data(kb, &data) : 0;
    int rc = len > 0 && json_object_set_new(net, "key", json_stringn(data, (size_t)len)) == 0
                 ? 0
                 : scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    BIO_free(kb); /* a secure-heap BIO: cleared when freed */
    return rc;
}

/* ---- renewal of the instance certificate -------------------------------------------------
 * CAS certifies the instance key for a day (docs/shield.md "identity: instance"). The supervisor
 * attests again with the same key before that, and publishes what CAS issues on a page that
 * every shielded process maps (struct scp_shield_net_renew; shield/net_renew.c takes it for new
 * connections). A renewal CAS refuses (the policy no longer names the measurement, the session
 * is gone) leaves the current certificate to expire: that is when a policy change reaches a
 * running per-instance service. One attempt per turn, never the retry loop: the supervisor's
 * loop also acknowledges volume tags, which must not wait behind an unreachable CAS. */
struct renewal {
    int fd;                              /* the page's memfd; -1: no renewal */
    struct scp_shield_net_renew *page;
    uint8_t ik_pub[SCP_INSTANCE_KEY_LEN];
    double next;                         /* when to try (now_s) */
    time_t expires;                      /* the current certificate's notAfter */
};

static void renewal_schedule(struct renewal *rn, const struct scp_attest_run_opts *o, int failed) {
    double left = difftime(rn->expires, time(NULL));
    double in = o->renew_interval > 0 ? o->renew_interval : left / 2;
    if (failed && in > 60) in = 60; /* CAS away: try again soon, not at half of what is left */
    rn->next = now_s() + (in < 1 ? 1 : in);
}

static int renewal_start(struct renewal *rn, time_t expires, const uint8_t ik_pub[SCP_INSTANCE_KEY_LEN],
                         const struct scp_attest_run_opts *o, scp_err *err) {
    memcpy(rn->ik_pub, ik_pub, SCP_INSTANCE_KEY_LEN);
    rn->expires = expires;
    rn->fd = memfd_create("scp-net-renew", MFD_CLOEXEC);
    void *p = rn->fd >= 0 && ftruncate(rn->fd, sizeof *rn->page) == 0
                  ? mmap(NULL, sizeof *rn->page, PROT_READ | PROT_WRITE, MAP_SHARED, rn->fd, 0)
                  : MAP_FAILED;
    if (p == MAP_FAILED) return scp_fail_errno(err, "cannot make the certificate renewal page");
    rn->page = p;
    renewal_schedule(rn, o, 0);
    return 0;
}

static void renewal_publish(struct scp_shield_net_renew *pg, const char *pem, size_t len) {
    uint32_t s = __atomic_load_n(&pg->seq, __ATOMIC_RELAXED);
    __atomic_store_n(&pg->seq, s + 1, __ATOMIC_RELAXED); /* odd: readers retry */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy(pg->pem, pem, len);
    __atomic_store_n(&pg->len, (uint32_t)len, __ATOMIC_RELAXED);
    __atomic_store_n(&pg->seq, s + 2, __ATOMIC_RELEASE);
}

static void renewal_try(struct renewal *rn, scp_cas_client *c, const struct scp_attest_run_opts *o,
                        const uint8_t m[32]) {
    char *text = NULL;
    scp_err e = {0};
    json_t *cfg = NULL;
    if (attest_once(c, o, m, rn->ik_pub, &text, &e) == 0) {
        cfg = json_loads(text, 0, NULL);
        OPENSSL_cleanse(text, strlen(text)); /* it holds every secret of the service */
        free(text);
        const char *pem = json_string_value(json_object_get(json_object_get(cfg, "network"), "cert"));
        time_t t = pem ? cert_for_key(pem, rn->ik_pub) : 0;
        size_t len = pem ? strlen(pem) : 0;
        if (t && len <= sizeof rn->page->pem) {
            renewal_publish(rn->page, pem, len);
            rn->expires = t;
        } else {
            scp_fail(&e, SCP_E_FORMAT, EPROTO, "CAS sent no certificate for this instance's key");
        }
    }
    json_decref(cfg); /* the volume keys in it: jansson frees, the text was wiped above */
    char until[32];
    struct tm tm;
    strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&rn->expires, &tm));
    if (e.code)
        scp_log(SCP_LOG_WARN, WHO(o), "cannot renew the instance certificate of service %s: %s; the current one is "
                "valid until %s", o->service, e.msg, until);
    else
        scp_log(SCP_LOG_INFO, WHO(o), "renewed the instance certificate of service %s (valid until %s)", o->service, until);
    renewal_schedule(rn, o, e.code != 0);
}

/* The policy's files: absolute normalized paths, each once, none inside (or holding) a volume
 * mount, whose files the volume serves. */
static int check_files(json_t *files, json_t *vols, const char *service, scp_err *err) {
    if (json_array_size(files) > SCP_SHIELD_FILES_MAX)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "the policy of service %s injects more than %u files", service,
                        SCP_SHIELD_FILES_MAX);
    for (size_t i = 0; i < json_array_size(files); i++) {
        json_t *f = json_array_get(files, i);
        const char *path = json_string_value(json_object_get(f, "path"));
        char norm[PATH_MAX];
        if (!path || !json_is_string(json_object_get(f, "content")))
            return scp_fail(err, SCP_E_FORMAT, EPROTO, "CAS sent a malformed file entry");
        if (path[0] != '/' || scp_shield_path_normalize(path, norm, sizeof norm) || strcmp(norm, path) != 0 ||
            !strcmp(path, "/"))
            return scp_fail(err, SCP_E_INVAL, EINVAL,
                            "injected file '%s' of service %s: the path must be absolute and normalized (no '.', '..', "
                            "'//' or trailing '/')", path, service);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(path, json_string_value(json_object_get(json_array_get(files, j), "path"))))
                return scp_fail(err, SCP_E_INVAL, EINVAL, "injected file '%s' of service %s is listed twice", path,
                                service);
        for (size_t j = 0; j < json_array_size(vols); j++) {
            const char *mnt = json_string_value(json_object_get(json_array_get(vols, j), "path"));
            if (mnt && (scp_path_within(path, mnt) || scp_path_within(mnt, path)))
                return scp_fail(err, SCP_E_INVAL, EINVAL,
                                "injected file '%s' of service %s lies in the protected volume mounted at %s; put it "
                                "outside the volume (or write it into the volume)", path, service, mnt);
        }
    }
    return 0;
}

/* In the child: name the memfd `fd` (from one of the *_memfd makers above; -1 when it failed) in
 * the environment variable `env` for the shield, or exit. */
static void pass_fd(const struct scp_attest_run_opts *o, const char *env, int fd, const char *what) {
    char num[16];
    snprintf(num, sizeof num, "%d", fd);
    if (fd < 0 || setenv(env, num, 1) < 0) {
        scp_log(SCP_LOG_ERROR, WHO(o), "cannot pass %s to the shield", what);
        _exit(1);
    }
}

/* In the child: argv[0] as the policy names it and placeholders
 * for the rest of the policy's command, whose values (and the policy's environment) reach the
 * program through the launch memfd, so that no rendered secret is in /proc/PID/cmdline or
 * /proc/PID/environ; then exec the measured descriptor under the shield. */
static void child_exec(json_t *cfg, const struct scp_attest_run_opts *o, struct scp_run_opts *ro, const char *prog,
                       int tag_wr, const struct scp_attest_run_identity *id, const int con_end[3]) {
    scp_err e = {0};
    if (ro->timing_ns) ro->timing_ns = scp_now_ns(); /* the container setup starts here */
    for (int k = 1; k < 3; k++) /* sealed streams: the relay's socket (console_relay) */
        if (con_end[k] >= 0 && (dup2(con_end[k], k) < 0 || close(con_end[k]) < 0)) _exit(1);
    signal(SIGPIPE, SIG_DFL); /* an ignored signal would stay ignored in the program */
    clearenv();
    /* no program without its supervisor: its commits would reach CAS no more */
    pid_t sup = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != sup) _exit(1);
    if (ro->container.enabled && scp_container_prepare(&ro->container, &e) < 0) {
        scp_log(SCP_LOG_ERROR, WHO(o), "%s", e.msg);
        _exit(1);
    }
    /* copies of what outlives the configuration, which is wiped and freed before the container's
     * relay and init are forked from this process (they keep no secret) */
    static char cwd[PATH_MAX], arg0[PATH_MAX], mounts[SCP_SHIELD_MAX_VOLUMES][PATH_MAX];
    const char *c = json_string_value(json_object_get(cfg, "cwd"));
    if (c) snprintf(cwd, sizeof cwd, "%s", c);
    ro->cwd = c ? cwd : NULL;
    for (unsigned i = 0; i < ro->nvol; i++) {
        snprintf(mounts[i], sizeof mounts[i], "%s", ro->vol[i].mount);
        ro->vol[i].mount = mounts[i];
    }
    json_t *cmd = json_object_get(cfg, "command");
    int allow = json_is_true(json_object_get(cfg, "append_args"));
    size_t nc = json_array_size(cmd), na = allow ? (size_t)o->argc - 1 : 0;
    char **argv = calloc(nc + na + 2, sizeof *argv);
    if (!argv) _exit(1);
    size_t n = 0;
    snprintf(arg0, sizeof arg0, "%s", nc ? json_string_value(json_array_get(cmd, 0)) : prog);
    argv[n++] = arg0;
    for (size_t i = 1; i < nc; i++) argv[n++] = "(scp)";
    for (size_t i = 0; i < na; i++) argv[n++] = o->argv[1 + i];
    argv[n] = NULL;
    pass_fd(o, SCP_SHIELD_ENV_LAUNCH_FD, launch_memfd(cmd, nc ? 1 : 0, json_object_get(cfg, "environment")),
            "the configuration");
    json_t *files = json_object_get(cfg, "files");
    if (json_array_size(files)) pass_fd(o, SCP_SHIELD_ENV_FILES_FD, files_memfd(files), "the injected files");
    /* the trusted-file manifest: what the shield checks every exec, executable mapping and
     * open of a listed file against (docs/runtime.md "Trusted files") */
    pass_fd(o, SCP_SHIELD_ENV_TRUSTED_FD, scp_shield_sealed_memfd("scp-trusted", id->manifest, id->manifest_len, NULL),
            "the trusted-file manifest");
    int cfd = console_memfd(json_object_get(cfg, "console"), o->session, o->service, o->console_lines);
    if (cfd == -2) {
        scp_log(SCP_LOG_ERROR, WHO(o), "CAS sent a malformed console section");
        _exit(1);
    }
    if (cfd >= 0) pass_fd(o, SCP_SHIELD_ENV_CONSOLE_FD, cfd, "the console configuration");
    json_t *net = json_object_get(cfg, "network");
    if (json_is_object(net)) pass_fd(o, SCP_SHIELD_ENV_NET_FD, net_memfd(net), "the network configuration");
    json_decref(cfg); /* the rendered secrets are in the launch, files, console and network memfds now */
    ro->argv = argv;
    ro->tag_fd = tag_wr;
    scp_run_exec(ro, &e);
    scp_log(SCP_LOG_ERROR, WHO(o), "%s", e.msg);
    _exit(e.code == SCP_E_NOENT ? 127 : e.code == SCP_E_SYS ? 1 : 126);
}

int scp_attest_run(scp_cas_client *c, const struct scp_attest_run_opts *o, scp_err *err) {
    if (o->argc < 1 || !o->argv[0]) return scp_fail(err, SCP_E_INVAL, EINVAL, "no program given");
    scp_elf_set *set = calloc(1, sizeof *set);
    struct scp_run_opts *ro = calloc(1, sizeof *ro);
    struct run_volume *rv = calloc(SCP_SHIELD_MAX_VOLUMES, sizeof *rv);
    char *text = NULL;
    json_t *cfg = NULL;
    int rc = -1, pipefd[2] = {-1, -1}, sync_fd = -1, con_end[3] = {-1, -1, -1};
    pid_t relay[3] = {0, 0, 0};
    struct scp_shield_tag_sync *tsync = NULL;
    struct scp_attest_run_identity ident = {0};
    EVP_PKEY *ik = NULL;
    struct renewal rn = {.fd = -1};
    if (!set || !ro || !rv) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    /* an ordinary user: the user namespace now, while no secret is in memory */
    if (o->container.enabled && scp_container_enter_userns(err) < 0) goto out;
    uint8_t ppub[32], pid_[32];
    if (!o->evidence && (!o->tee || o->tee == SCP_TEE_SIM) &&
        scp_sim_platform_pubkey(o->platform_key, ppub, pid_, err) < 0) { /* before CAS is asked anything */
        scp_err_prefix(err, "platform key (--platform-key)");
        goto out;
    }
    /* CAS going away must show as an error on the connection, not kill the supervisor */
    signal(SIGPIPE, SIG_IGN);
    /* PID 1 ignores signals it has no handler for: docker stop during attestation must not be lost */
    int pid1 = getpid() == 1;
    if (pid1) forward_signals();
    double t0 = now_s();
    const char *rootfs = o->container.enabled ? o->container.rootfs : NULL;
    struct scp_attest_run_conf conf = {o->container.net_none, o->container.keep_caps, o->trusted, o->ntrusted,
                                       o->image_json != NULL};
    if (scp_attest_run_measure(o->argv[0], o->shield_lib, o->image_json ? "/" : rootfs, &conf, set, &ident, err) < 0)
        goto out;
    /* a secure image: the files the same, the image's document instead of the configuration text,
     * as image build and the local attestation service compute it */
    if (o->image_json &&
        scp_attest_measure_fds(set->fd, set->n, o->image_json, strlen(o->image_json), ident.m, err) < 0)
        goto out;
    /* the image's other files: checked by the shield at exec, executable mapping and open */
    for (size_t i = 0; i < o->n_more_trusted; i++)
        if (scp_shield_trusted_add(&ident.manifest, &ident.manifest_len, &o->more_trusted[i]) < 0) {
            scp_fail(err, SCP_E_INVAL, E2BIG, "cannot list %s in the trusted-file manifest (more than %u files?)",
                     o->more_trusted[i].path, SCP_SHIELD_TRUSTED_MAX);
            goto out;
        }
    double t1 = now_s();
    uint8_t ik_pub[SCP_INSTANCE_KEY_LEN];
    if (!(ik = instance_key_new(ik_pub, err))) goto out;
    if (attest_retry(c, o, ident.m, ik_pub, &text, err) < 0) goto out;
    double t2 = now_s();
    int timing = getenv("SCP_RUN_TIMING") != NULL;
    if (timing)
        scp_log(SCP_LOG_INFO, WHO(o), "timing: measure %.1f ms (%zu files), attest %.1f ms", (t1 - t0) * 1e3, set->n,
                (t2 - t1) * 1e3);
    cfg = json_loads(text, 0, NULL);
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    text = NULL;
    if (!cfg) {
        scp_fail(err, SCP_E_FORMAT, EPROTO, "CAS sent a configuration that is not JSON");
        goto out;
    }
    json_t *jnet = json_object_get(cfg, "network");
    const char *nid = json_string_value(json_object_get(jnet, "identity"));
    time_t ik_expires = 0;
    if (nid && strcmp(nid, "instance") == 0 &&
        (instance_key_install(jnet, ik, ik_pub, &ik_expires, err) < 0 || renewal_start(&rn, ik_expires, ik_pub, o, err) < 0))
        goto out;
    ro->net_renew_fd = rn.fd;
    EVP_PKEY_free(ik); /* the network section holds it now */
    ik = NULL;
    const char *token = json_string_value(json_object_get(cfg, "volume_token"));
    if (merge_image_env(cfg, o->image_env, err) < 0) goto out;
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(cfg, "environment"), k, v) {
        if (!env_name_ok(k) || !json_is_string(v)) {
            scp_fail(err, SCP_E_INVAL, EINVAL,
                     "the policy's environment sets %s, which would change what the loader runs; refusing", k);
            goto out;
        }
    }
    json_t *cmd = json_object_get(cfg, "command");
    for (size_t i = 0; i < json_array_size(cmd); i++)
        if (!json_is_string(json_array_get(cmd, i))) {
            scp_fail(err, SCP_E_FORMAT, EPROTO, "CAS sent a malformed command");
            goto out;
        }
    if (o->argc > 1 && !json_is_true(json_object_get(cfg, "append_args"))) {
        scp_fail(err, SCP_E_INVAL, EPERM,
                 "the policy of service %s does not allow arguments from the command line (append_args: true)",
                 o->service);
        goto out;
    }
    json_t *vols = json_object_get(cfg, "volumes");
    if (check_files(json_object_get(cfg, "files"), vols, o->service, err) < 0) goto out;
    size_t nv = json_array_size(vols);
    if (rootfs) { /* before any volume is touched */
        int root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        const char *cwd = json_string_value(json_object_get(cfg, "cwd"));
        int bad = root < 0 ? scp_fail_errno(err, "cannot open the rootfs %s", rootfs)
                           : cwd ? path_in_rootfs(root, "working directory", cwd, rootfs, err) : 0;
        for (size_t i = 0; i < nv && !bad; i++) {
            const char *path = json_string_value(json_object_get(json_array_get(vols, i), "path"));
            if (path) bad = path_in_rootfs(root, "volume path", path, rootfs, err);
        }
        if (root >= 0) close(root);
        if (bad) goto out;
    }
    if (nv > SCP_SHIELD_MAX_VOLUMES || !token) {
        scp_fail(err, SCP_E_INVAL, EINVAL, nv > SCP_SHIELD_MAX_VOLUMES ? "more than %u volumes" : "no volume token",
                 SCP_SHIELD_MAX_VOLUMES);
        goto out;
    }
    const char *vdir = o->volume_dir ? o->volume_dir : scp_attest_run_default_volume_dir();
    for (size_t i = 0; i < nv; i++) {
        json_t *jv = json_array_get(vols, i);
        const char *name = json_string_value(json_object_get(jv, "name"));
        const char *path = json_string_value(json_object_get(jv, "path"));
        const char *khex = json_string_value(json_object_get(jv, "key"));
        const char *exp = json_string_value(json_object_get(jv, "expected_tag"));
        if (!name || !path || !khex || strchr(name, '/') || name[0] == '.' ||
            scp_unhex(khex, ro->vol[i].key, SCP_VOLUME_KEY_LEN) < 0) {
            scp_fail(err, SCP_E_FORMAT, EPROTO, "CAS sent a malformed volume entry");
            goto out;
        }
        rv[i].name = name;
        if (snprintf(rv[i].dir, sizeof rv[i].dir, "%s/%s/%s", vdir, o->session, name) >= (int)sizeof rv[i].dir) {
            scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "--volume-dir is too long");
            goto out;
        }
        scp_volume_tag now;
        uint8_t seed_key[SCP_VOLUME_KEY_LEN];
        int has_seed = 0;
        if (take_seed_key(json_object_get(cfg, "environment"), name, seed_key, &has_seed, err) < 0) goto out;
        int pr = prepare_volume(o, name, rv[i].dir, path, ro->vol[i].key, has_seed ? seed_key : NULL, exp, &now, err);
        scp_wipe(seed_key, sizeof seed_key);
        if (pr < 0) goto out;
        ro->vol[i].hostdir = rv[i].dir;
        ro->vol[i].mount = path;
        ro->nvol++;
        /* a new volume (or one whose last tag did not reach CAS) is reported before it is used */
        if (report(c, o, token, &rv[i], now.bytes) < 0 && o->tag_sync) {
            scp_fail(err, SCP_E_INVAL, EIO, "--tag-sync: CAS did not take the tag of volume %s", name);
            goto out;
        }
    }
    drop_seed_vars(json_object_get(cfg, "environment"));
    ro->container = o->container;
    if (ro->container.enabled && !ro->container.hostname)
        ro->container.hostname = strlen(o->service) <= 64 ? o->service : NULL;
    ro->trace = o->trace;
    ro->no_mount = o->no_mount;
    ro->user = o->user;
    ro->timing_ns = timing;
    ro->shield_lib = o->shield_lib; /* resolved as scp_attest_run_measure did */
    ro->exec_fd = set->fd[0];
    ro->measured_fds = set->fd;
    ro->measured_paths = (const char (*)[PATH_MAX])set->path;
    ro->n_measured = set->n;
    ro->measured_interp = set->has_interp ? set->path[1] : NULL;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pipefd) < 0) {
        scp_fail_errno(err, "socketpair");
        goto out;
    }
    if (o->tag_sync) {
        sync_fd = memfd_create("scp-tag-sync", MFD_CLOEXEC);
        void *p = sync_fd >= 0 && ftruncate(sync_fd, 4096) == 0
                      ? mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sync_fd, 0)
                      : MAP_FAILED;
        if (p == MAP_FAILED) {
            scp_fail_errno(err, "cannot make the tag-sync page");
            goto out;
        }
        tsync = p;
        for (size_t i = 0; i < nv; i++) tsync->acked[i] = rv[i].reported_gen;
        ro->tag_sync_fd = sync_fd;
    }
    if (timing) scp_log(SCP_LOG_INFO, WHO(o), "timing: volumes %.1f ms", (now_s() - t2) * 1e3);
    json_t *con = json_object_get(cfg, "console");
    for (int sk = 1; sk < 3; sk++)
        if (json_is_true(json_object_get(con, sk == 1 ? "stdout" : "stderr")) &&
            (relay[sk] = console_relay(sk, &con_end[sk])) < 0) {
            scp_fail_errno(err, "cannot start the console relay");
            goto out;
        }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        scp_fail_errno(err, "fork");
        goto out;
    }
    if (pid == 0) {
        close(pipefd[0]);
        child_exec(cfg, o, ro, o->argv[0], pipefd[1], &ident, con_end);
    }
    child_pid = pid;
    close(pipefd[1]);
    pipefd[1] = -1;
    for (int sk = 1; sk < 3; sk++)
        if (con_end[sk] >= 0) {
            close(con_end[sk]);
            con_end[sk] = -1;
        }
    for (size_t i = 0; i < nv; i++) scp_wipe(ro->vol[i].key, sizeof ro->vol[i].key);
    forward_signals();
    if (pending_sig) kill(pid, pending_sig);
    struct tag_batch batch = {0};
    int exited = 0, status = 1;
    for (;;) {
        /* until every holder of the socket is gone, or the program itself has exited and what
         * its leftovers had sent is drained (a daemonized grandchild may keep the socket) */
        struct pollfd pf = {.fd = pipefd[0], .events = POLLIN};
        int pr = poll(&pf, 1, exited || batch.has_carry ? 0 : 200);
        if (rn.page && !exited && now_s() >= rn.next) renewal_try(&rn, c, o, ident.m);
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0 && !batch.has_carry) {
            if (exited) break;
            int st;
            if (pid1) {
                int s1 = reap_all(pid, relay);
                if (s1 >= 0) exited = 1, status = s1;
            } else if (waitpid(pid, &st, WNOHANG) == pid) {
                exited = 1;
                status = scp_exit_code(st, WHO(o));
            }
            continue;
        }
        if (take_tags(pipefd[0], nv, &batch) < 0) break;
        for (size_t i = 0; i < nv; i++) {
            if (!(batch.got & (1u << i))) continue;
            if (report(c, o, token, &rv[i], batch.newest[i]) == 0) {
                ack(tsync, i, rv[i].reported_gen);
            } else if (tsync) {
                /* fail closed: an fsync must not return for a state that CAS does not know */
                scp_log(SCP_LOG_ERROR, WHO(o), "--tag-sync: CAS did not acknowledge a commit; stopping the program");
                kill(pid, SIGKILL);
            }
        }
    }
    rc = exited ? status : wait_status(pid);
out:
    /* the relays end when the container's last holder of their socket is gone; scpctl returns
     * after the program's last sealed byte reached the host's descriptor */
    for (int sk = 1; sk < 3; sk++) {
        if (con_end[sk] >= 0) close(con_end[sk]);
        if (relay[sk] > 0)
            while (waitpid(relay[sk], NULL, 0) < 0 && errno == EINTR) {}
    }
    if (tsync) munmap(tsync, 4096);
    if (rn.page) munmap(rn.page, sizeof *rn.page);
    if (rn.fd >= 0) close(rn.fd);
    if (sync_fd >= 0) close(sync_fd);
    if (pipefd[0] >= 0) close(pipefd[0]);
    if (pipefd[1] >= 0) close(pipefd[1]);
    if (set) scp_elf_set_close(set, -1);
    if (ro) scp_wipe(ro, sizeof *ro);
    free(ro);
    free(set);
    free(rv);
    json_decref(cfg); /* keys were copied out and wiped; the JSON text itself was wiped above */
    EVP_PKEY_free(ik);
    scp_attest_run_identity_free(&ident);
    return rc;
}
