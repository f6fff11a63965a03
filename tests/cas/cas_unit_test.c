/* tests/cas/cas_unit_test.c - the parsers of CAS (HTTP head, YAML policy, evidence) and the
 * audit row hash, on good and bad input. Each check prints what failed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cas/http.h"
#include "cas/keys.h"
#include "cas/policy.h"
#include "common/bytes.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest.h"
#include "scp/attest_hw.h"

static int failures;
#define CHECK(cond, ...)                                      \
    do {                                                      \
        if (!(cond)) {                                        \
            failures++;                                       \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                     \
            fputc('\n', stderr);                              \
        }                                                     \
    } while (0)

static int parse(const char *s, http_request *r, int *st) { return http_parse_head(s, strlen(s), r, st); }

static void test_http(void) {
    http_request r;
    int st = 0;
    CHECK(parse("GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n", &r, &st) > 0 && strcmp(r.path, "/v1/status") == 0 &&
              r.keep_alive,
          "simple GET");
    CHECK(parse("GET /v1/status HTTP/1.1\r\nHost: x\r\n", &r, &st) == 0, "incomplete head needs more");
    CHECK(parse("POST /v1/sessions HTTP/1.1\r\nContent-Length: 12\r\nConnection: close\r\n\r\n", &r, &st) > 0 &&
              r.content_length == 12 && !r.keep_alive,
          "POST with length, close");
    CHECK(parse("GET /a?from=3&limit=9 HTTP/1.1\r\n\r\n", &r, &st) > 0 && strcmp(r.query, "from=3&limit=9") == 0,
          "query");
    char v[16];
    CHECK(http_query_get(r.query, "limit", v, sizeof v) == 1 && strcmp(v, "9") == 0, "query_get");
    struct {
        const char *req;
        int status;
    } bad[] = {
        {"GARBAGE\r\n\r\n", 400},
        {"GET /x HTTP/2.0\r\n\r\n", 505},
        {"get /x HTTP/1.1\r\n\r\n", 400},
        {"GET x HTTP/1.1\r\n\r\n", 400},
        {"POST /x HTTP/1.1\r\n\r\n", 411},
        {"POST /x HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413},
        {"POST /x HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", 413},
        {"POST /x HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400},
        {"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
        {"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
        {"GET /x HTTP/1.1\r\nBad Header: 1\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nNoColon\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400},
        {"VERYLONGMETHOD /x HTTP/1.1\r\n\r\n", 501},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st = 0;
        int r2 = parse(bad[i].req, &r, &st);
        CHECK(r2 < 0 && st == bad[i].status, "bad request %zu: got %d status %d, want %d", i, r2, st, bad[i].status);
    }
    /* an endless head is refused at the limit */
    char *big = malloc(HTTP_MAX_HEAD + 10);
    memset(big, 'a', HTTP_MAX_HEAD + 10);
    memcpy(big, "GET /x HTTP/1.1\r\nX: ", 20);
    st = 0;
    CHECK(http_parse_head(big, HTTP_MAX_HEAD + 10, &r, &st) < 0 && st == 431, "oversized head -> 431");
    free(big);
}

static const char GOOD[] =
    "name: s1\n"
    "services:\n"
    "  - name: web\n"
    "    measurements: [0000000000000000000000000000000000000000000000000000000000000000]\n"
    "    command: [/bin/x, \"$$SCP::pw$$\"]\n"
    "    environment: {A: \"$$SCP::tls:key$$\"}\n"
    "    files: [{path: /etc/a, content: \"x $$SCP::pw$$ y\"}]\n"
    "    volumes: [data]\n"
    "secrets:\n"
    "  - {name: pw, kind: ascii, size: 8, export: [other]}\n"
    "  - {name: tls, kind: x509, common_name: a, dns: [a.b], ip: [10.0.0.1]}\n"
    "  - {name: imp, kind: imported, session: other, secret: x}\n"
    "volumes: [{name: data, path: /data}]\n"
    "network: [{port: 443, secret: tls}]\n";

static const char NETGOOD[] =
    "name: n\n"
    "services:\n"
    "  - name: redis\n"
    "    measurements: [0000000000000000000000000000000000000000000000000000000000000000]\n"
    "    network:\n"
    "      certificate: tls\n"
    "      listen: [{port: 6379}, {port: 6380, client_certificate: required, client_ca: service}]\n"
    "      peers: [{host: db.shop, port: 5432}, {host: 10.0.0.0/8, port: 443, name: api.shop, ca: myca}]\n"
    "      default: refuse\n"
    "      min_tls: \"1.2\"\n"
    "secrets:\n"
    "  - {name: tls, kind: x509, common_name: redis}\n"
    "  - {name: myca, kind: explicit, value: \"-----BEGIN CERTIFICATE-----\"}\n";

static void test_policy(void) {
    scp_err e = {0};
    {
        cas_policy *q = cas_policy_parse(NETGOOD, strlen(NETGOOD), &e);
        CHECK(q != NULL, "good network policy refused: %s", e.msg);
        if (q) {
            const cas_service_net *n = &q->services[0].net;
            CHECK(n->present && n->n_listen == 2 && n->n_peers == 2 && n->refuse == 1 && n->min_tls == 12 &&
                      n->listen[1].client_cert && !strcmp(n->peers[1].name, "api.shop") && !strcmp(n->certificate, "tls"),
                  "network section");
            cas_policy_free(q);
        }
    }
    cas_policy *p = cas_policy_parse(GOOD, strlen(GOOD), &e);
    CHECK(p != NULL, "good policy refused: %s", e.msg);
    if (p) {
        CHECK(p->n_services == 1 && p->n_secrets == 3 && p->n_volumes == 1 && p->n_network == 1, "counts");
        CHECK(strcmp(p->services[0].env_keys.v[0], "A") == 0, "env key");
        CHECK(p->volumes[0].chunk_size == 0, "a volume without chunk_size has chunk_size 0 (the default)");
        cas_policy_free(p);
    }
    {
        static const char CHUNKED[] = "name: s\nservices: [{name: a, volumes: [v], measurements: "
                                      "[0000000000000000000000000000000000000000000000000000000000000000]}]\n"
                                      "volumes: [{name: v, path: /d, chunk_size: 8192}]\n";
        cas_policy *q = cas_policy_parse(CHUNKED, strlen(CHUNKED), &e);
        CHECK(q && q->volumes[0].chunk_size == 8192, "chunk_size 8192: %s", q ? "wrong value" : e.msg);
        cas_policy_free(q);
    }
    const char *bad[] = {
        "",                                           /* empty */
        "name: [unclosed\n",                          /* syntax */
        "- a\n- b\n",                                 /* not a mapping */
        "name: s\n",                                  /* no services */
        "name: s\nservices: []\n",                    /* no services */
        "name: 'bad name'\nservices: [{name: a, measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\n",
        "name: s\nservices: [{name: a}]\n",           /* no measurement */
        "name: s\nservices: [{name: a, measurements: [xyz]}]\n",
        "name: s\nunknown: 1\nservices: [{name: a, measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\n",
        "name: s\nservices: [{name: a, command: [\"$$SCP::nope$$\"], measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\n",
        "name: s\nservices: [{name: a, command: [\"$$SCP::x\"], measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\nsecrets: [{name: x, kind: ascii, size: 3}]\n",
        "name: s\nservices: [{name: a, measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\nsecrets: [{name: x, kind: ascii}]\n",
        "name: s\nservices: [{name: a, measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\nsecrets: [{name: x, kind: magic}]\n",
        "name: s\nservices: [{name: a, measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\nsecrets: [{name: x, kind: ascii, size: 99999}]\n",
        "name: s\nservices: [{name: a, measurements: [0000000000000000000000000000000000000000000000000000000000000000]}, {name: a, measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\n",
        "name: s\nservices: [{name: a, volumes: [v], measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\n",
        "name: &a s\nservices: [{name: *a, measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\n",
        "name: s\nname: t\nservices: [{name: a, measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\n",
        "name: s\npredecessor: 12\nservices: [{name: a, measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\n",
        "name: s\nservices: [{name: a, measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\n---\nname: t\n",
        "name: s\nservices: [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]\n",
        "name: s\nservices: [{name: a, files: [{path: rel, content: x}], measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        scp_err e2 = {0};
        cas_policy *q = cas_policy_parse(bad[i], strlen(bad[i]), &e2);
        CHECK(q == NULL && e2.code == SCP_E_INVAL && e2.msg[0], "bad policy %zu accepted", i);
        cas_policy_free(q);
    }
}

/* An invalid value followed by more keys of the same mapping: the first error must win (a
 * `break` out of FOR_PAIRS once left only its inner loop, and the next key's result
 * overwrote the error: issue 10.6). */
static void test_policy_first_error_wins(void) {
#define SVC "services: [{name: a, measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\n"
#define Z "[0000000000000000000000000000000000000000000000000000000000000000]"
#define PW "secrets: [{name: pw, kind: ascii, size: 8}]\n"
    struct {
        const char *yaml, *want;
    } cases[] = {
        {"name: s\n" SVC "secrets: [{name: \"bad name!\\n'%s\", kind: random, size: 4}]\n", "'name' must be"},
        {"name: s\n" SVC "secrets: [{name: i, kind: imported, session: \"../../x y\", secret: x}]\n",
         "'session' must be"},
        {"name: s\n" SVC "secrets: [{name: a, name: b, kind: random, size: 4}]\n", "duplicate key 'name'"},
        {"name: s\n" SVC "secrets: [{name: a, size: 0, kind: random}]\n", "'size' must be a number"},
        {"name: s\n" SVC "secrets: [{name: a, kind: x509, dns: [[1]], common_name: a}]\n", "'dns' must be a string"},
        {"name: s\n" SVC "secrets: [{name: a, kind: random, export: [\"a b\"], size: 4}]\n", "'export' must be"},
        {"name: s\n" SVC "volumes: [{name: \"v w\", path: /d}]\n", "'name' must be"},
        {"name: s\n" SVC "volumes: [{path: /d, path: /e, name: v}]\n", "duplicate key 'path'"},
        {"name: s\n" SVC "volumes: [{name: v, path: /d, chunk_size: 1000}]\n", "'chunk_size' must be a number in [4096, 65536]"},
        {"name: s\n" SVC "volumes: [{name: v, path: /d, chunk_size: 131072}]\n", "'chunk_size' must be a number"},
        {"name: s\n" SVC "volumes: [{name: v, path: /d, chunk_size: 12288}]\n", "'chunk_size' must be a power of two"},
        {"name: s\n" SVC "volumes: [{name: v, path: /d, chunk_size: 8k}]\n", "'chunk_size' must be a number"},
        {"name: s\n" SVC "network: [{port: 99999, peer: x}]\n", "'port' must be a number"},
        {"name: s\n" SVC "network: [{secret: \"x/y\", port: 1}]\n", "'secret' must be"},
        {"name: s\nservices: [{name: a, network: {listen: [{port: 1}]}, measurements: " Z "}]\n",
         "'listen' needs a 'certificate'"},
        {"name: s\nservices: [{name: a, network: {certificate: pw}, measurements: " Z "}]\n" PW,
         "is not an x509 secret"},
        {"name: s\nservices: [{name: a, network: {peers: [{host: 10.0.0.0/8, port: 5}]}, measurements: " Z "}]\n",
         "needs the 'name' to verify"},
        {"name: s\nservices: [{name: a, network: {peers: [{host: \"a b\", port: 5}]}, measurements: " Z "}]\n",
         "'host' must be"},
        {"name: s\nservices: [{name: a, network: {default: maybe}, measurements: " Z "}]\n", "default must be"},
        {"name: s\nservices: [{name: a, network: {peers: [{host: h, port: 5, ca: pw}]}, measurements: " Z "}]\n"
         "secrets: [{name: pw, kind: x509, common_name: a}]\n",
         "must be 'service' or an explicit"},
        {"name: s\nservices: [{name: a, network: {listen: [{port: 1, client_ca: service}], certificate: t}, "
         "measurements: " Z "}]\nsecrets: [{name: t, kind: x509, common_name: a}]\n",
         "goes with client_certificate"},
        {"name: s\nservices: [{name: \"a b\", measurements: "
         "[0000000000000000000000000000000000000000000000000000000000000000]}]\n",
         "'name' must be"},
        {"name: s\nservices: [{name: a, files: [{path: [x], content: y}], measurements: "
         "[0000000000000000000000000000000000000000000000000000000000000000]}]\n",
         "'path' must be a string"},
        {"name: s\nservices: [{name: a, environment: {\"A=B\": x, C: y}, measurements: "
         "[0000000000000000000000000000000000000000000000000000000000000000]}]\n",
         "bad environment variable name"},
        {"name: \"s t\"\n" SVC, "'name' must be"},
    };
#undef SVC
#undef Z
#undef PW
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        scp_err e = {0};
        cas_policy *q = cas_policy_parse(cases[i].yaml, strlen(cases[i].yaml), &e);
        CHECK(q == NULL && e.code == SCP_E_INVAL && strstr(e.msg, cases[i].want),
              "first-error case %zu: want an error with \"%s\", got %s (%s)", i, cases[i].want,
              q ? "accepted" : "refused", e.msg);
        cas_policy_free(q);
    }
}

static void test_escape(void) {
    char out[64];
    CHECK(strcmp(scp_escape_text("a\nb\tc\rd\\e\x1b[2J\x7f\xc2\x9b\xc3\xa9", out, sizeof out),
                 "a\\nb\\tc\\rd\\\\e\\x1b[2J\\x7f\\xc2\\x9b\xc3\xa9") == 0,
          "escape: got '%s'", out);
    CHECK(strcmp(scp_escape_text("ab\n", out, 4), "ab") == 0, "escape truncates at a whole escape: '%s'", out);
    CHECK(strcmp(scp_escape_text("", out, 1), "") == 0, "escape of empty text");
}

static void test_parse_i64(void) {
    int64_t v = 7;
    CHECK(scp_parse_i64("42", 1, 100, &v) == 0 && v == 42, "parse 42: %lld", (long long)v);
    CHECK(scp_parse_i64("-5", -10, 10, &v) == 0 && v == -5, "parse -5: %lld", (long long)v);
    CHECK(scp_parse_i64("9223372036854775807", 0, INT64_MAX, &v) == 0 && v == INT64_MAX, "parse max");
    const char *bad[] = {"", " 1", "1 ", "abc", "10x", "0x10", "1.5", "+", "-", NULL};
    for (int i = 0; bad[i]; i++) {
        v = 7;
        errno = 0;
        CHECK(scp_parse_i64(bad[i], -100, 100, &v) < 0 && errno == EINVAL && v == 7, "parse '%s' accepted", bad[i]);
    }
    const char *far[] = {"101", "-101", "9223372036854775808", "-99999999999999999999", NULL};
    for (int i = 0; far[i]; i++) {
        v = 7;
        CHECK(scp_parse_i64(far[i], -100, 100, &v) < 0 && errno == ERANGE && v == 7, "parse '%s' not out of range", far[i]);
    }
    CHECK(scp_parse_i64(NULL, 0, 1, &v) < 0, "parse NULL");
}

/* export entries: NAME (the exporter's owner) or {session, owner}; imports may name the exporter's owner */
static void test_policy_exports(void) {
#define HEAD "name: s\nservices: [{name: a, measurements: [0000000000000000000000000000000000000000000000000000000000000000]}]\n"
#define ID "abababababababababababababababababababababababababababababababab"
    const char *good = HEAD "secrets:\n"
                            "  - {name: x, kind: ascii, size: 8, export: [same, {session: other, owner: " ID "}]}\n"
                            "  - {name: y, kind: imported, session: other, secret: z, owner: " ID "}\n";
    scp_err e = {0};
    cas_policy *p = cas_policy_parse(good, strlen(good), &e);
    CHECK(p != NULL, "export forms refused: %s", e.msg);
    if (p) {
        const cas_secret_def *x = &p->secrets[0];
        CHECK(x->export_to.n == 2 && x->export_owner.n == 2, "export count");
        CHECK(x->export_to.n == 2 && strcmp(x->export_to.v[0], "same") == 0 && x->export_owner.v[0][0] == 0,
              "short export form means the exporter's owner");
        CHECK(x->export_to.n == 2 && strcmp(x->export_to.v[1], "other") == 0 && strcmp(x->export_owner.v[1], ID) == 0,
              "long export form keeps session and owner");
        CHECK(p->secrets[1].import_owner && strcmp(p->secrets[1].import_owner, ID) == 0, "import owner");
        cas_policy_free(p);
    }
    const char *bad[] = {
        HEAD "secrets: [{name: x, kind: ascii, size: 8, export: [{session: other}]}]\n",
        HEAD "secrets: [{name: x, kind: ascii, size: 8, export: [{owner: " ID "}]}]\n",
        HEAD "secrets: [{name: x, kind: ascii, size: 8, export: [{session: other, owner: ABAB}]}]\n",
        HEAD "secrets: [{name: x, kind: ascii, size: 8, export: [{session: other, owner: " ID ", extra: 1}]}]\n",
        HEAD "secrets: [{name: x, kind: ascii, size: 8, export: [{session: 'bad name', owner: " ID "}]}]\n",
        HEAD "secrets: [{name: x, kind: ascii, size: 8, export: [[other]]}]\n",
        HEAD "secrets: [{name: x, kind: ascii, size: 8, export: other}]\n",
        HEAD "secrets: [{name: x, kind: ascii, size: 8, owner: " ID "}]\n",
        HEAD "secrets: [{name: x, kind: imported, session: o, secret: z, owner: nothex}]\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        scp_err e2 = {0};
        cas_policy *q = cas_policy_parse(bad[i], strlen(bad[i]), &e2);
        CHECK(q == NULL && e2.code == SCP_E_INVAL && e2.msg[0], "bad export policy %zu accepted", i);
        cas_policy_free(q);
    }
#undef HEAD
#undef ID
}

static void test_evidence(const char *dir) {
    char key[4096];
    snprintf(key, sizeof key, "%s/plat.key", dir);
    unlink(key);
    scp_err e = {0};
    CHECK(scp_sim_platform_create(key, &e) == 0, "create key: %s", e.msg);
    uint8_t pub[32], id[32], nonce[32] = {1}, epk[32] = {2}, m[32] = {3};
    CHECK(scp_sim_platform_pubkey(key, pub, id, &e) == 0, "pubkey: %s", e.msg);
    uint8_t *ev = NULL;
    size_t n = 0;
    CHECK(scp_sim_evidence(key, nonce, epk, m, &ev, &n, &e) == 0, "evidence: %s", e.msg);
    scp_evidence pe;
    CHECK(scp_evidence_parse(ev, n, &pe, &e) == 0, "parse: %s", e.msg);
    CHECK(memcmp(pe.nonce, nonce, 32) == 0 && memcmp(pe.measurement, m, 32) == 0 && memcmp(pe.platform_id, id, 32) == 0,
          "fields round-trip");
    CHECK(scp_sim_verify(&pe, pub, &e) == 0, "verify: %s", e.msg);
    /* every single-byte change is refused by the parser or the signature */
    for (size_t i = 0; i < n; i++) {
        ev[i] ^= 0x40;
        scp_evidence q;
        scp_err e2 = {0};
        int ok = scp_evidence_parse(ev, n, &q, &e2) == 0 && scp_sim_verify(&q, pub, &e2) == 0;
        CHECK(!ok, "flipped byte %zu accepted", i);
        ev[i] ^= 0x40;
    }
    for (size_t cut = 0; cut < n; cut++) {
        scp_evidence q;
        CHECK(scp_evidence_parse(ev, cut, &q, NULL) < 0, "truncated to %zu accepted", cut);
    }
    /* another platform's key does not verify it */
    uint8_t other[32];
    memcpy(other, pub, 32);
    other[0] ^= 1;
    CHECK(scp_sim_verify(&pe, other, NULL) < 0, "wrong platform key accepted");
    CHECK(!pe.instance_key, "evidence without an instance key has one");
    free(ev);
    /* an instance key rides under the signature: changing it (a replay that would carry
     * another key) breaks the signature; a malformed or second one is refused */
    uint8_t ik[SCP_INSTANCE_KEY_LEN];
    memset(ik, 7, sizeof ik);
    ik[0] = 4;
    CHECK(scp_sim_evidence_ik(key, nonce, epk, m, ik, &ev, &n, &e) == 0, "evidence with an instance key: %s", e.msg);
    CHECK(scp_evidence_parse(ev, n, &pe, &e) == 0 && pe.instance_key && memcmp(pe.instance_key, ik, sizeof ik) == 0,
          "the instance key round-trips");
    CHECK(scp_sim_verify(&pe, pub, &e) == 0, "verify with an instance key: %s", e.msg);
    size_t at = (size_t)(pe.instance_key - ev);
    ev[at + 10] ^= 1;
    CHECK(scp_evidence_parse(ev, n, &pe, &e) == 0 && scp_sim_verify(&pe, pub, NULL) < 0, "a changed instance key verified");
    ev[at + 10] ^= 1;
    ev[at] = 2; /* a compressed point: not the format */
    CHECK(scp_evidence_parse(ev, n, &pe, NULL) < 0, "an instance key that is not an uncompressed point parsed");
    free(ev);
    uint8_t hw1[64], hw2[64], hw3[64];
    CHECK(scp_hw_report_data(nonce, epk, m, hw1, &e) == 0 && scp_hw_report_data_ik(nonce, epk, m, NULL, hw2, &e) == 0 &&
              scp_hw_report_data_ik(nonce, epk, m, ik, hw3, &e) == 0,
          "report data: %s", e.msg);
    CHECK(memcmp(hw1, hw2, 64) == 0 && memcmp(hw1, hw3, 64) != 0, "hardware report data do not bind the instance key");
    /* a key file readable by others is refused */
    chmod(key, 0644);
    CHECK(scp_sim_evidence(key, nonce, epk, m, &ev, &n, &e) < 0 && e.code == SCP_E_KEY, "0644 platform key used");
    unlink(key);
}

/* Evidence of a given backend with the four fields and, as flags say, QUOTE, a VCEK extension
 * and a signature; returns its length. */
static size_t hw_ev(uint8_t *b, uint16_t backend, int quote, int vcek, int sig) {
    uint16_t types[7] = {SCP_EV_NONCE, SCP_EV_PUBKEY, SCP_EV_MEASUREMENT, SCP_EV_PLATFORM};
    int nt = 4;
    if (quote) types[nt++] = SCP_EV_QUOTE;
    if (vcek) types[nt++] = SCP_EV_SNP_VCEK;
    if (sig) types[nt++] = SCP_EV_SIGNATURE; /* last */
    size_t off = 12;
    memcpy(b, "SCPE", 4);
    scp_put_u16(b + 4, SCP_EVIDENCE_VERSION);
    scp_put_u16(b + 6, backend);
    for (int i = 0; i < nt; i++) {
        uint16_t l = types[i] == SCP_EV_SIGNATURE ? 64 : types[i] == SCP_EV_QUOTE ? 100 : 32;
        scp_put_u16(b + off, types[i]);
        scp_put_u16(b + off + 2, l);
        memset(b + off + 4, i + 1, l);
        off += 4u + l;
    }
    scp_put_u32(b + 8, (uint32_t)(off - 12));
    return off;
}

/* Hardware evidence has a quote and no signature; sim evidence a signature and no quote; a
 * VCEK only in SEV-SNP evidence. */
static void test_hw_evidence(void) {
    uint8_t b[1024];
    scp_evidence ev;
    scp_err e = {0};
    size_t n = hw_ev(b, SCP_TEE_SNP, 1, 1, 0);
    CHECK(scp_evidence_parse(b, n, &ev, &e) == 0 && ev.quote_len == 100 && ev.vcek_len == 32 && !ev.signature,
          "snp evidence: %s", e.msg);
    n = hw_ev(b, SCP_TEE_TDX, 1, 0, 0);
    CHECK(scp_evidence_parse(b, n, &ev, &e) == 0 && !ev.vcek, "tdx evidence: %s", e.msg);
    n = hw_ev(b, SCP_TEE_TDX, 1, 0, 1);
    CHECK(scp_evidence_parse(b, n, &ev, &e) < 0 && strstr(e.msg, "no signature field"), "tdx with a signature: %s", e.msg);
    n = hw_ev(b, SCP_TEE_SNP, 0, 1, 0);
    CHECK(scp_evidence_parse(b, n, &ev, &e) < 0 && strstr(e.msg, "without a quote"), "snp without a quote: %s", e.msg);
    n = hw_ev(b, SCP_TEE_TDX, 1, 1, 0);
    CHECK(scp_evidence_parse(b, n, &ev, &e) < 0 && strstr(e.msg, "not SEV-SNP"), "tdx with a VCEK: %s", e.msg);
    n = hw_ev(b, SCP_TEE_SIM, 1, 0, 1);
    CHECK(scp_evidence_parse(b, n, &ev, &e) < 0 && strstr(e.msg, "sim evidence carries no quote"), "sim with a quote: %s",
          e.msg);
    n = hw_ev(b, SCP_TEE_SIM, 0, 0, 0);
    CHECK(scp_evidence_parse(b, n, &ev, &e) < 0 && strstr(e.msg, "no signature"), "sim without a signature: %s", e.msg);
}

static void test_aead(void) {
    uint8_t k[32] = {9}, *ct = NULL, *pt = NULL;
    size_t cl = 0, pl = 0;
    CHECK(scp_envelope_seal(k, "aad", 3, "secret", 6, &ct, &cl, NULL) == 0, "seal");
    CHECK(scp_envelope_open(k, "aad", 3, ct, cl, &pt, &pl, NULL) == 0 && pl == 6 && memcmp(pt, "secret", 6) == 0, "open");
    free(pt);
    CHECK(scp_envelope_open(k, "aaX", 3, ct, cl, &pt, &pl, NULL) < 0, "other AAD accepted");
    ct[cl - 1] ^= 1;
    CHECK(scp_envelope_open(k, "aad", 3, ct, cl, &pt, &pl, NULL) < 0, "changed tag accepted");
    free(ct);
}

/* CAS's identity: the root certifies only the marked server certificate, the service CA
 * issues session certificates without the marker and refuses CAS's names, and a data
 * directory from before the service CA (root-signed server.crt without the marker, no
 * service CA) is migrated without changing the pin or the server key. */
static void test_identity(const char *base) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/cas-identity-unit", base);
    static const char *const files[] = {"ca.crt", "ca.key.enc", "server.crt", "server.key.enc", "service-ca.crt",
                                        "service-ca.key.enc"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    mkdir(dir, 0700);
    uint8_t master[32] = {7};
    scp_err e = {0};
    cas_identity id;
    int created = 0;
    CHECK(cas_identity_load_or_create(dir, master, &id, &created, &e) == 0 && created && !id.migrated,
          "create identity: %s", e.msg);
    if (!created) return;
    CHECK(cas_is_server_cert(id.server_cert) && X509_verify(id.server_cert, id.ca_key) == 1, "server certificate");
    CHECK(!cas_is_server_cert(id.ca_cert) && !cas_is_server_cert(id.service_ca_cert), "a CA is marked as CAS");
    CHECK(X509_verify(id.service_ca_cert, id.ca_key) != 1, "the service CA is certified by the root");

    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *c = cas_service_cert_issue(&id, k, "web.shop", "DNS:web.shop,DNS:localhost,IP:127.0.0.1", 30, &e);
    CHECK(c && !cas_is_server_cert(c), "session certificate: %s", e.msg);
    CHECK(c && X509_verify(c, id.service_ca_key) == 1 && X509_verify(c, id.ca_key) != 1, "session certificate issuer");
    X509_free(c);
    static const char *const reserved[] = {"scp-cas", "SCP-CAS", "scp-cas.", " scp-cas", "a.scp-cas", "*", "scp-*"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        CHECK(cas_x509_name_reserved(reserved[i]), "'%s' is not reserved", reserved[i]);
        CHECK(!cas_service_cert_issue(&id, k, reserved[i], NULL, 30, &e) && e.code == SCP_E_INVAL,
              "issued CN '%s'", reserved[i]);
        char sans[64];
        snprintf(sans, sizeof sans, "DNS:web.shop,DNS:%s", reserved[i]);
        CHECK(!cas_service_cert_issue(&id, k, "web.shop", sans, 30, &e), "issued DNS '%s'", reserved[i]);
    }
    char longname[400];
    memset(longname, 'a', 300);
    snprintf(longname + 300, sizeof longname - 300, ".API.SCP-CAS.");
    CHECK(cas_x509_name_reserved(longname) && cas_x509_name_reserved("*.scp-cas"), "a long name under CAS's");
    CHECK(!cas_x509_name_reserved("scp-cas.example") && !cas_x509_name_reserved("my-scp-cas") &&
              !cas_x509_name_reserved("localhost") && !cas_x509_name_reserved("*.shop"),
          "an ordinary name is reserved");
    EVP_PKEY_free(k);

    /* the data directory as a CAS from before the service CA left it */
    char pin[65];
    memcpy(pin, id.ca_fp, sizeof pin);
    X509 *old = cas_x509_issue(id.server_key, "scp-cas", "DNS:localhost,DNS:scp-cas,IP:127.0.0.1,IP:::1", 3650, 0,
                               id.ca_key, id.ca_cert, &e);
    char *pem = old ? cas_cert_pem(old) : NULL;
    snprintf(path, sizeof path, "%s/server.crt", dir);
    CHECK(pem && !cas_is_server_cert(old) && scp_write_file_atomic(path, pem, strlen(pem), 0644, &e) == 0, "old server.crt");
    free(pem);
    for (size_t i = 4; i < 6; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    cas_identity_free(&id);
    CHECK(cas_identity_load_or_create(dir, master, &id, &created, &e) == 0 && !created &&
              id.migrated == (CAS_MIGRATED_SERVICE_CA | CAS_MIGRATED_SERVER_CERT),
          "migrate: %s (migrated %u)", e.msg, id.migrated);
    CHECK(strcmp(id.ca_fp, pin) == 0, "the migration changed the pin");
    CHECK(id.server_cert && cas_is_server_cert(id.server_cert) && old &&
              EVP_PKEY_eq(X509_get0_pubkey(id.server_cert), X509_get0_pubkey(old)) == 1,
          "migrated server certificate");
    X509_free(old);
    cas_identity_free(&id);
    CHECK(cas_identity_load_or_create(dir, master, &id, &created, &e) == 0 && !id.migrated, "migrated twice: %s",
          e.msg);
    cas_identity_free(&id);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    test_http();
    test_policy();
    test_policy_first_error_wins();
    test_escape();
    test_parse_i64();
    test_policy_exports();
    test_evidence(dir);
    test_hw_evidence();
    test_aead();
    test_identity(dir);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("cas unit tests passed\n");
    return 0;
}
