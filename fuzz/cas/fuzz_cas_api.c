/* fuzz/cas/fuzz_cas_api.c - request handling: arbitrary bytes as an HTTP request through the
 * head parser and the CAS router, against a real CAS state (SQLite, keys) in a temp directory.
 * Input: one flag byte (bit 0: the client is the admin identity, bit 1: another identity,
 * else anonymous), then the request. Properties: every answer is a status in 200..599 with a
 * JSON body; 5xx never happens for client input (it would mean an internal error). The state
 * lives in $SCP_FUZZ_TMP or /dev/shm and is removed at exit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cas/api.h"
#include "cas/http.h"
#include "cas/keys.h"
#include "../fuzz_util.h"

static cas_api *api;
static char dir[512];

static void remove_state(void) {
    static const char *const files[] = {"cas.db", "cas.db-wal", "cas.db-shm", "ca.crt", "ca.key.enc", "server.crt",
                                        "server.key.enc", "audit.head", "service-ca.crt", "service-ca.key.enc"};
    cas_api_free(api);
    api = NULL;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}
static cas_identity id;
static const char ADMIN[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char OTHER[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *base = getenv("SCP_FUZZ_TMP") ? getenv("SCP_FUZZ_TMP") : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    snprintf(dir, sizeof dir, "%s/scp-fuzz-cas-XXXXXX", base);
    if (!mkdtemp(dir)) abort();
    uint8_t master[32];
    memset(master, 7, sizeof master);
    scp_err e = {0};
    int created;
    if (cas_identity_load_or_create(dir, master, &id, &created, &e) < 0) {
        fprintf(stderr, "fixture: %s\n", e.msg);
        abort();
    }
    const char *admins[1] = {ADMIN};
    api = cas_api_new(dir, NULL, master, &id, admins, 1, 0, CAS_AUDIT_NEW_KEYSTORE, &e);
    if (!api) {
        fprintf(stderr, "fixture: %s\n", e.msg);
        abort();
    }
    atexit(remove_state);
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size < 1 || size > HTTP_MAX_HEAD + 65536) return 0;
    const char *cid = (data[0] & 1) ? ADMIN : (data[0] & 2) ? OTHER : NULL;
    data++;
    size--;
    /* bodies are NUL-terminated by the server; do the same */
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = 0;
    http_request req;
    int st = 0;
    int hl = http_parse_head(buf, size, &req, &st);
    if (hl > 0) {
        size_t avail = size - (size_t)hl;
        req.body = buf + hl;
        req.body_len = req.content_length < avail ? req.content_length : avail;
        buf[hl + req.body_len] = 0;
        cas_response resp;
        cas_api_handle(api, &req, cid, &resp);
        FUZZ_CHECK(resp.status >= 200 && resp.status < 500);
        FUZZ_CHECK(resp.body && resp.len == strlen(resp.body));
        json_t *j = json_loadb(resp.body, resp.len, 0, NULL);
        FUZZ_CHECK(j != NULL);
        if (resp.status >= 400) FUZZ_CHECK(json_is_string(json_object_get(j, "error")));
        json_decref(j);
        free(resp.body);
    }
    free(buf);
    return 0;
}
