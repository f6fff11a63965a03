/* bench/cas/casbench_inproc.c - CPU cost of one attestation inside CAS, without TLS, sockets
 * or the client: the request handlers run in-process on a real state (SQLite file, keys) in a
 * temp directory. The evidence is made outside the timed part. CASBENCH_STORE=CONNINFO: the
 * state in that (empty) PostgreSQL database instead; the times then include its round trips.
 *
 *   casbench_inproc [N]      prints microseconds per nonce request and per attest request */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "cas/api.h"
#include "cas/keys.h"
#include "common/base64.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest.h"

static cas_api *api;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int call(const char *m, const char *path, const char *cid, const char *body, char **out) {
    http_request r;
    memset(&r, 0, sizeof r);
    snprintf(r.method, sizeof r.method, "%s", m);
    snprintf(r.path, sizeof r.path, "%s", path);
    r.body = body;
    r.body_len = body ? strlen(body) : 0;
    cas_response resp;
    cas_api_handle(api, &r, cid, &resp);
    if (out)
        *out = resp.body;
    else
        free(resp.body);
    return resp.status;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    char dir[] = "/tmp/scp-casbench-inproc-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    uint8_t master[32];
    scp_random(master, 32, NULL);
    cas_identity id;
    int created;
    scp_err e = {0};
    const char *admins[] = {"bench-admin"};
    const char *store = getenv("CASBENCH_STORE");
    if (store && !*store) store = NULL;
    if (cas_identity_load_or_create(dir, master, &id, &created, &e) < 0 ||
        !(api = cas_api_new(dir, store, master, &id, admins, 1, 0, CAS_AUDIT_NEW_KEYSTORE, &e))) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    char key[400], body[2048];
    snprintf(key, sizeof key, "%s/platform.key", dir);
    uint8_t pub[32], pid[32], m[32], epk[32];
    char hex[65];
    scp_sim_platform_create(key, NULL);
    scp_sim_platform_pubkey(key, pub, pid, NULL);
    scp_hex(pub, 32, hex);
    snprintf(body, sizeof body, "{\"name\":\"p\",\"pubkey\":\"%s\"}", hex);
    int st1 = call("POST", "/v1/platforms", "bench-admin", body, NULL);
    scp_random(m, 32, NULL);
    scp_hex(m, 32, hex);
    snprintf(body, sizeof body,
             "name: bench\nservices:\n  - name: app\n    measurements: [%s]\n"
             "    command: [/usr/bin/app, \"--password=$$SCP::pw$$\"]\n"
             "    environment: {API_KEY: \"$$SCP::api$$\", TOKEN: \"$$SCP::tok$$\"}\n"
             "    files: [{path: /etc/app.conf, content: \"key=$$SCP::tok$$\"}]\n    volumes: [data]\n"
             "secrets:\n  - {name: pw, kind: ascii, size: 32}\n  - {name: api, kind: explicit, value: \"k\"}\n"
             "  - {name: tok, kind: random, size: 32}\nvolumes: [{name: data, path: /data}]\n",
             hex);
    int st2 = call("POST", "/v1/sessions", "bench-owner", body, NULL);
    if (st1 != 201 || st2 != 201) {
        fprintf(stderr, "setup failed: %d %d\n", st1, st2);
        return 1;
    }
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    size_t pl = 32;
    EVP_PKEY_get_raw_public_key(k, epk, &pl);
    EVP_PKEY_free(k);
    double tn = 0, ta = 0;
    for (int i = 0; i < n; i++) {
        char *o;
        double t0 = now_s();
        call("POST", "/v1/attest/nonce", NULL, "{}", &o);
        tn += now_s() - t0;
        json_t *j = json_loads(o, 0, NULL);
        uint8_t nonce[32];
        scp_unhex(json_string_value(json_object_get(j, "nonce")), nonce, 32);
        json_decref(j);
        free(o);
        uint8_t *ev;
        size_t evl;
        scp_sim_evidence(key, nonce, epk, m, &ev, &evl, NULL);
        char *e64 = scp_b64enc(ev, evl);
        free(ev);
        snprintf(body, sizeof body, "{\"session\":\"bench\",\"service\":\"app\",\"evidence\":\"%s\"}", e64);
        free(e64);
        t0 = now_s();
        int st = call("POST", "/v1/attest", NULL, body, NULL);
        ta += now_s() - t0;
        if (st != 200) {
            fprintf(stderr, "attest: %d\n", st);
            return 1;
        }
    }
    printf("in-process CAS cost over %d attestations: nonce %.1f us, attest %.1f us, total %.1f us "
           "(%.0f attestations/s per core)\n",
           n, tn / n * 1e6, ta / n * 1e6, (tn + ta) / n * 1e6, n / (tn + ta));
    cas_api_free(api);
    cas_identity_free(&id);
    const char *files[] = {"cas.db", "cas.db-wal", "cas.db-shm", "ca.crt", "ca.key.enc", "server.crt", "server.key.enc", "audit.head",
                           "platform.key", "service-ca.crt", "service-ca.key.enc"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
    return 0;
}
