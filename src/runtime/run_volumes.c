/* runtime/run_volumes.c - the service's volumes on the host: where they live, the first
 * start's creation (and seeding from a secure image), the open against the tag CAS expects. */
#include "runtime/attest_run.h"
#include "runtime/run_int.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/bytes.h"
#include "scp/volume.h"

const char *scp_attest_run_default_volume_dir(void) {
    static char buf[PATH_MAX];
    if (geteuid() == 0) return "/var/lib/scp/volumes";
    const char *x = getenv("XDG_DATA_HOME"), *h = getenv("HOME");
    if (x && x[0] == '/') snprintf(buf, sizeof buf, "%s/scp/volumes", x);
    else snprintf(buf, sizeof buf, "%s/.local/share/scp/volumes", h && *h ? h : ".");
    return buf;
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

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p) < 0 && errno != ENOENT ? -1 : 0;
}

/* A new volume at dir (chunks of chunk bytes, 0: the default) that o->seed fills: made at
 * DIR.seeding and renamed into place once filled, so that an interrupted first start leaves no
 * half-filled volume that the next one would take for the service's own. */
static int seed_volume(const struct scp_attest_run_opts *o, const char *dir, const char *mount,
                       const uint8_t key[SCP_VOLUME_KEY_LEN], uint32_t chunk, const uint8_t *seed_key, scp_err *err) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.seeding", dir) >= (int)sizeof tmp)
        return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "--volume-dir is too long");
    if (nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        return scp_fail_errno(err, "cannot remove the leftover %s", tmp);
    if (scp_volume_create(tmp, key, chunk, err) < 0) return -1;
    scp_volume *v = scp_volume_open(tmp, key, NULL, err);
    if (!v) return -1;
    int rc = o->seed(o->seed_ctx, mount, seed_key, v, err);
    if (scp_volume_close(v, rc == 0 ? err : NULL) < 0) rc = -1;
    if (rc == 0 && rename(tmp, dir) < 0) rc = scp_fail_errno(err, "cannot move the new volume to %s", dir);
    return rc;
}

int run_prepare_volume(const struct scp_attest_run_opts *o, const char *name, const char *dir, const char *mount,
                       const uint8_t key[SCP_VOLUME_KEY_LEN], uint32_t chunk, const uint8_t *seed_key,
                       const char *expected_hex, scp_volume_tag *now, scp_err *err) {
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
            if (seed_volume(o, dir, mount, key, chunk, seed_key, err) < 0) {
                scp_err_prefix(err, "volume %s: its first start", name);
                return -1;
            }
        } else if (scp_volume_create(dir, key, chunk, err) < 0) {
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
