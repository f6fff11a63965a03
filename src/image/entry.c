/* image/entry.c - the entrypoint of a secure image under Docker (docs/image.md "Running under
 * Docker"): measure the image from inside (img_measure's measurement: the program of
 * /scp/image.json resolved in "/", its loader and libraries, the shield, image.json), get
 * evidence from the host's local attestation service, the configuration from CAS, and run the
 * program under the shield with scp_attest_run in its no-container, no-mount mode: Docker is
 * the container, and the shield alone serves the protected paths.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <jansson.h>

#include "common/util.h"
#include "image/internal.h"
#include "runtime/attest_run.h"
#include "scp/cas.h"
#include "scp/image.h"
#include "scp/volume.h"

#define IMAGE_JSON "/scp/image.json"
#define TRUSTED_FILES "/scp/trusted"
#define DEFAULT_SOCKET "/run/scp/attest.sock"
#define DEFAULT_VOLUME_DIR "/scp-volumes"

static int service_evidence(void *ctx, const uint8_t nonce[32], const uint8_t pub[32], const uint8_t *instance_key,
                            uint8_t **ev, size_t *evlen, scp_err *err) {
    const char *sock = ctx;
    if (scp_image_attest_request(sock, nonce, pub, instance_key, ev, evlen, err) < 0) {
        scp_err_prefix(err, "the local attestation service at %s (mount its directory: -v /run/scp:/run/scp)", sock);
        return -1;
    }
    return 0;
}

/* /scp/trusted, checked against image.json's digest of it (image.json is in the measurement, so
 * CAS vouches for every line), as entries for the shield's manifest: the service may execute and
 * map only these files, unchanged. *text holds the paths the entries point to. */
static int image_trusted(json_t *ij, char **text, scp_shield_trusted **e, size_t *n, scp_err *err) {
    uint8_t *doc = NULL;
    size_t len = 0;
    if (scp_read_file(AT_FDCWD, TRUSTED_FILES, 64u << 20, &doc, &len, err) < 0) {
        scp_err_prefix(err, "not a secure image (%s)", TRUSTED_FILES);
        return -1;
    }
    char got[IMG_DIGEST_LEN + 1];
    const char *want = json_string_value(json_object_get(ij, "trusted"));
    img_digest_buf(doc, len, got);
    if (!want || strcmp(got, want) != 0) {
        free(doc);
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "%s does not match the digest in %s: the image was altered",
                        TRUSTED_FILES, IMAGE_JSON);
    }
    if (img_trusted_parse((char *)doc, len, e, n, err) < 0) {
        free(doc);
        return -1;
    }
    *text = (char *)doc;
    return 0;
}

/* Docker's USER forms: NAME, UID, NAME:GROUP, UID:GID, looked up in the image's own /etc/passwd
 * and /etc/group (no NSS: the image's files are what Docker reads too). A numeric uid that
 * /etc/passwd does not list runs with gid 0, as under Docker. */
static int resolve_user(const char *spec, struct scp_run_user *u, scp_err *err) {
    char name[256], group[256] = "";
    const char *colon = strchr(spec, ':');
    size_t nl = colon ? (size_t)(colon - spec) : strlen(spec);
    if (nl == 0 || nl >= sizeof name || (colon && strlen(colon + 1) >= sizeof group))
        return scp_fail(err, SCP_E_INVAL, EINVAL, "the image's USER '%s' is not NAME[:GROUP] or UID[:GID]", spec);
    memcpy(name, spec, nl);
    name[nl] = 0;
    if (colon) snprintf(group, sizeof group, "%s", colon + 1);
    char *end;
    unsigned long num = strtoul(name, &end, 10);
    int numeric = !*end && num < UINT32_MAX;
    memset(u, 0, sizeof *u);
    int found = 0;
    FILE *f = fopen("/etc/passwd", "re");
    for (struct passwd *pw; f && !found && (pw = fgetpwent(f));)
        if (numeric ? pw->pw_uid == (uid_t)num : !strcmp(pw->pw_name, name)) {
            u->uid = pw->pw_uid;
            u->gid = pw->pw_gid;
            snprintf(name, sizeof name, "%s", pw->pw_name);
            found = 1;
        }
    if (f) fclose(f);
    if (!found && !numeric)
        return scp_fail(err, SCP_E_INVAL, ENOENT, "the image's USER '%s' is not in the image's /etc/passwd", spec);
    if (!found) u->uid = (uid_t)num;
    unsigned long gnum = group[0] ? strtoul(group, &end, 10) : 0;
    int gnumeric = group[0] && !*end && gnum < UINT32_MAX;
    int gfound = !group[0] || gnumeric;
    if (gnumeric) u->gid = (gid_t)gnum;
    f = fopen("/etc/group", "re");
    for (struct group *gr; f && (gr = fgetgrent(f));) {
        if (group[0] && !gnumeric && !strcmp(gr->gr_name, group)) u->gid = gr->gr_gid, gfound = 1;
        /* supplementary groups: those that list the user (Docker's rule), when it has a name */
        for (char **m = gr->gr_mem; found && m && *m && u->ngroups < sizeof u->groups / sizeof u->groups[0]; m++)
            if (!strcmp(*m, name)) {
                u->groups[u->ngroups++] = gr->gr_gid;
                break;
            }
    }
    if (f) fclose(f);
    if (!gfound) return scp_fail(err, SCP_E_INVAL, ENOENT, "the image's USER '%s': no group '%s' in /etc/group", spec, group);
    return 0;
}

/* image.json's env (the image's Env, in the measurement through image.json): a NULL-terminated
 * array pointing into ij, or NULL with err when it is not an array of strings. */
static char **image_env(json_t *ij, scp_err *err) {
    json_t *env = json_object_get(ij, "env");
    size_t n = json_array_size(env);
    if (env && !json_is_array(env)) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "%s: env is not an array", IMAGE_JSON);
        return NULL;
    }
    char **v = calloc(n + 1, sizeof *v);
    if (!v) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (!(v[i] = (char *)json_string_value(json_array_get(env, i)))) {
            free(v);
            scp_fail(err, SCP_E_FORMAT, EINVAL, "%s: env holds a non-string", IMAGE_JSON);
            return NULL;
        }
    return v;
}

/* ---- a protected path's files, sealed by image build under /scp/seed/N ---------------------- */

struct seed_copy {
    scp_volume *from, *to;
    const char *dir; /* the directory being copied ("" the root) */
    scp_err *err;
};

static int copy_seed_file(scp_volume *from, scp_volume *to, const char *path, const scp_vstat *st, scp_err *err) {
    scp_vfile *in = scp_vfile_open(from, path, O_RDONLY, 0, err);
    scp_vfile *out = in ? scp_vfile_open(to, path, O_WRONLY | O_CREAT | O_EXCL, st->mode & 07777, err) : NULL;
    int rc = out ? 0 : -1;
    static char buf[1 << 16];
    for (uint64_t off = 0; rc == 0;) {
        ssize_t n = scp_vfile_pread(in, buf, sizeof buf, off, err);
        if (n <= 0) {
            rc = n < 0 ? -1 : 0;
            break;
        }
        if (scp_vfile_pwrite(out, buf, (size_t)n, off, err) != n) rc = -1;
        off += (uint64_t)n;
    }
    if (out && scp_vfile_close(out, rc == 0 ? err : NULL) < 0) rc = -1;
    if (in) scp_vfile_close(in, NULL);
    return rc;
}

static int copy_seed_entry(void *ctx, const char *name, const scp_vstat *st) {
    const struct seed_copy *c = ctx;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s%s%s", c->dir, *c->dir ? "/" : "", name) >= (int)sizeof path)
        return scp_fail(c->err, SCP_E_INVAL, ENAMETOOLONG, "a sealed path is too long");
    int rc;
    if (st->type == SCP_VTYPE_DIR) {
        struct seed_copy sub = {c->from, c->to, path, c->err};
        rc = scp_volume_mkdir(c->to, path, st->mode & 07777, c->err);
        if (rc == 0) rc = scp_volume_readdir(c->from, path, copy_seed_entry, &sub, c->err);
    } else {
        rc = copy_seed_file(c->from, c->to, path, st, c->err);
    }
    if (rc == 0) rc = scp_volume_setattr(c->to, path, -1, st->uid, st->gid, st->mtime_ns, c->err);
    return rc ? -1 : 0;
}

/* scp_attest_run_opts.seed: the image's sealed files for the volume at `mount` into `fresh`. */
static int seed_from_image(void *ctx, const char *mount, const uint8_t *key, scp_volume *fresh, scp_err *err) {
    json_t *seeds = json_object_get(ctx, "seeds");
    const char *vol = NULL;
    for (size_t i = 0; i < json_array_size(seeds) && !vol; i++)
    {
        const char *p = json_string_value(json_object_get(json_array_get(seeds, i), "path"));
        if (p && !strcmp(p, mount)) vol = json_string_value(json_object_get(json_array_get(seeds, i), "volume"));
    }
    if (!vol) return 0; /* an empty directory in the image: the volume starts empty */
    if (!key)
        return scp_fail(err, SCP_E_INVAL, ENOKEY,
                        "the image sealed the files under %s, but the policy gives no " SCP_IMAGE_SEED_ENV
                        "<volume> key for them (take the environment and secrets of the build's session template)",
                        mount);
    if (strncmp(vol, "/scp/seed/", 10) || strstr(vol, ".."))
        return scp_fail(err, SCP_E_FORMAT, EINVAL, "%s names a sealed volume outside /scp/seed", IMAGE_JSON);
    scp_volume *from = scp_volume_open(vol, key, NULL, err);
    if (!from) {
        scp_err_prefix(err, "the files sealed under %s (%s)", mount, vol);
        return -1;
    }
    struct seed_copy c = {from, fresh, "", err};
    int rc = scp_volume_readdir(from, "", copy_seed_entry, &c, err);
    if (rc == 0) rc = scp_volume_sync(fresh, err);
    scp_volume_close(from, NULL);
    if (rc) scp_err_prefix(err, "copying the files sealed under %s into its volume", mount);
    return rc ? -1 : 0;
}

int scp_image_entry(int argc, char *const *argv, scp_err *err) {
    /* no other process of the container may read this one's memory (keys, configuration) */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) return scp_fail_errno(err, "prctl(PR_SET_DUMPABLE)");
    const char *cas = getenv("SCP_CAS"), *pin = getenv("SCP_CAS_PIN");
    if (!cas || !*cas)
        return scp_fail(err, SCP_E_INVAL, EINVAL,
                        "SCP_CAS is not set: docker run -e SCP_CAS=HOST:PORT -e SCP_CAS_PIN=FINGERPRINT ...");
    if (!pin || !*pin)
        return scp_fail(err, SCP_E_INVAL, EINVAL,
                        "SCP_CAS_PIN is not set: docker run -e SCP_CAS_PIN=FINGERPRINT (CAS's CA fingerprint, "
                        "scpctl cas fingerprint)");
    uint8_t *doc = NULL;
    size_t len = 0;
    if (scp_read_file(AT_FDCWD, IMAGE_JSON, 1 << 22, &doc, &len, err) < 0) {
        scp_err_prefix(err, "not a secure image (%s)", IMAGE_JSON);
        return -1;
    }
    char *ij = realloc(doc, len + 1);
    if (!ij) {
        free(doc);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    ij[len] = 0;
    json_t *j = json_loads(ij, 0, NULL);
    const char *session = j ? json_string_value(json_object_get(j, "session")) : NULL;
    const char *service = j ? json_string_value(json_object_get(j, "service")) : NULL;
    const char *shield = j ? json_string_value(json_object_get(j, "shield")) : NULL;
    const char *prog = j ? json_string_value(json_array_get(json_object_get(j, "argv"), 0)) : NULL;
    const char *user = j ? json_string_value(json_object_get(j, "user")) : NULL;
    int rc = -1;
    scp_cas_client *c = NULL;
    char **args = calloc((size_t)argc + 2, sizeof *args);
    char **env = NULL;
    char *trusted_text = NULL;
    scp_shield_trusted *trusted = NULL;
    size_t n_trusted = 0;
    struct scp_run_user run_user;
    if (!session || !service || !shield || !prog || !args) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "%s lacks the session, service, shield or argv", IMAGE_JSON);
        goto out;
    }
    if (image_trusted(j, &trusted_text, &trusted, &n_trusted, err) < 0) goto out;
    if (user && *user && resolve_user(user, &run_user, err) < 0) goto out;
    if (!(env = image_env(j, err))) goto out;
    /* the measured program, then what `docker run IMAGE ARGS` appended (only if the policy allows) */
    args[0] = (char *)prog;
    for (int i = 0; i < argc; i++) args[1 + i] = argv[i];
    const char *sock = getenv("SCP_ATTEST_SOCKET");
    const char *vdir = getenv("SCP_VOLUME_DIR");
    struct scp_attest_run_opts o = {
        .who = "scp-entry",
        .session = session,
        .service = service,
        .volume_dir = vdir && *vdir ? vdir : DEFAULT_VOLUME_DIR,
        .shield_lib = shield,
        .cas_timeout = 30,
        .argv = args,
        .argc = argc + 1,
        .evidence = service_evidence,
        .evidence_ctx = (void *)(sock && *sock ? sock : DEFAULT_SOCKET),
        .image_json = ij,
        .no_mount = 1,
        /* Docker's log drivers keep text lines only: a binary record comes back from
         * `docker logs` with bytes replaced (docs/image.md "Console") */
        .console_lines = 1,
        .user = user && *user ? &run_user : NULL,
        .image_env = env,
        .more_trusted = trusted,
        .n_more_trusted = n_trusted,
        .seed = seed_from_image,
        .seed_ctx = j,
    };
    c = scp_cas_client_new(cas, pin, NULL, err);
    if (!c) goto out;
    rc = scp_attest_run(c, &o, err);
out:
    scp_cas_client_free(c);
    json_decref(j);
    free(ij);
    free(args);
    free(env);
    free(trusted);
    free(trusted_text);
    return rc;
}
