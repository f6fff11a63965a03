/* image/entry.c - the entrypoint of a secure image under Docker (docs/image.md "Running under
 * Docker"): measure the image from inside (img_measure's measurement: the program of
 * /scp/image.json resolved in "/", its loader and libraries, the shield, image.json), get
 * evidence from the host's local attestation service, the configuration from CAS, and run the
 * program under the shield with scp_attest_run in its no-container, no-mount mode: Docker is
 * the container, and the shield alone serves the protected paths.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <jansson.h>

#include "common/util.h"
#include "runtime/attest_run.h"
#include "scp/cas.h"
#include "scp/image.h"

#define IMAGE_JSON "/scp/image.json"
#define DEFAULT_SOCKET "/run/scp/attest.sock"
#define DEFAULT_VOLUME_DIR "/scp-volumes"

static int service_evidence(void *ctx, const uint8_t nonce[32], const uint8_t pub[32], uint8_t **ev, size_t *evlen,
                            scp_err *err) {
    const char *sock = ctx;
    if (scp_image_attest_request(sock, nonce, pub, ev, evlen, err) < 0) {
        scp_err_prefix(err, "the local attestation service at %s (mount its directory: -v /run/scp:/run/scp)", sock);
        return -1;
    }
    return 0;
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
    int rc = -1;
    scp_cas_client *c = NULL;
    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (!session || !service || !shield || !prog || !args) {
        scp_fail(err, SCP_E_FORMAT, EINVAL, "%s lacks the session, service, shield or argv", IMAGE_JSON);
        goto out;
    }
    /* the measured program, then what `docker run IMAGE ARGS` appended (only if the policy allows) */
    args[0] = (char *)prog;
    for (int i = 0; i < argc; i++) args[1 + i] = argv[i];
    const char *sock = getenv("SCP_ATTEST_SOCKET");
    const char *vdir = getenv("SCP_VOLUME_DIR");
    struct scp_attest_run_opts o = {
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
    };
    c = scp_cas_client_new(cas, pin, NULL, err);
    if (!c) goto out;
    rc = scp_attest_run(c, &o, err);
out:
    scp_cas_client_free(c);
    json_decref(j);
    free(ij);
    free(args);
    return rc;
}
