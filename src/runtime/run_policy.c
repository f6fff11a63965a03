/* runtime/run_policy.c - checks and edits of the configuration CAS releases before anything
 * starts: paths inside the rootfs, the environment (the image's beneath the policy's, nothing
 * that steers the loader, the seed keys taken out), the injected files. */
#include "runtime/attest_run.h"
#include "runtime/run_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <linux/openat2.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "common/util.h"
#include "scp/shield.h"
#include "scp/volume.h"

int run_path_in_rootfs(int root, const char *what, const char *path, const char *rootfs, scp_err *err) {
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

int run_env_name_ok(const char *k) {
    return strncmp(k, "LD_", 3) != 0 && strncmp(k, "SCP_SHIELD", 10) != 0 && strncmp(k, "GLIBC_TUNABLES", 14) != 0;
}

int scp_attest_run_image_env_check(const char *entry, scp_err *err) {
    const char *eq = strchr(entry, '=');
    if (!eq || eq == entry) return scp_fail(err, SCP_E_FORMAT, EINVAL, "the image's Env entry '%s' is not NAME=VALUE", entry);
    int len = (int)(eq - entry);
    if (!run_env_name_ok(entry) || !strncmp(entry, "SCP_SEED_", 9))
        return scp_fail(err, SCP_E_INVAL, EINVAL,
                        "the image's Env sets %.*s, which would change what the loader or the entry runs; refusing", len,
                        entry);
    return 0;
}

int run_merge_image_env(json_t *cfg, char *const *image_env, scp_err *err) {
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

int run_take_seed_key(json_t *env, const char *vol, uint8_t key[SCP_VOLUME_KEY_LEN], int *found, scp_err *err) {
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

void run_drop_seed_vars(json_t *env) {
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(env, tmp, k, v) {
        if (strncmp(k, "SCP_SEED_", 9)) continue;
        if (json_is_string(v)) OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
        json_object_del(env, k);
    }
}

int run_check_files(json_t *files, json_t *vols, const char *service, scp_err *err) {
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
