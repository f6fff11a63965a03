/* cas/secrets.c - secrets and volume keys: generation, encryption at rest, X.509 issuance,
 * and rendering a service's configuration with $$SCP::NAME$$ placeholders replaced.
 *
 * At rest every value is AES-256-GCM under k_data with the AAD "kind\0a\0b" (e.g.
 * "secret\0session\0name"), so a value moved to another row does not decrypt. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cas/internal.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest.h"
#include "scp/sealed_stream.h"
#include "scp/shield.h"
#include "scp/volume.h"

static size_t make_aad(char *buf, size_t sz, const char *kind, const char *a, const char *b) {
    int n = snprintf(buf, sz, "%s%c%s%c%s", kind, 0, a, 0, b);
    return n < 0 ? 0 : (size_t)n < sz ? (size_t)n : sz - 1;
}

int cas_seal(cas_api *api, const char *kind, const char *a, const char *b, const void *pt, size_t len, uint8_t **out,
             size_t *outlen, scp_err *err) {
    char aad[200];
    size_t al = make_aad(aad, sizeof aad, kind, a, b);
    return scp_envelope_seal(api->k_data, aad, al, pt, len, out, outlen, err);
}

int cas_unseal(cas_api *api, const char *kind, const char *a, const char *b, const uint8_t *ct, size_t len,
               uint8_t **out, size_t *outlen, scp_err *err) {
    char aad[200];
    size_t al = make_aad(aad, sizeof aad, kind, a, b);
    return scp_envelope_open(api->k_data, aad, al, ct, len, out, outlen, err);
}

/* ---- generation --------------------------------------------------------------------------- */

static int gen_ascii(char *out, size_t n, scp_err *err) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    size_t i = 0;
    while (i < n) {
        uint8_t r[64];
        if (scp_random(r, sizeof r, err) < 0) return -1;
        for (size_t j = 0; j < sizeof r && i < n; j++)
            if (r[j] < 248) out[i++] = alphabet[r[j] % 62]; /* 248 = 4*62: no modulo bias */
    }
    out[n] = 0;
    return 0;
}

/* The SANs CAS gives a certificate of x509 secret s: its identity URI, then extra (NULL or
 * "URI:...,URI:..."), then the policy's DNS names and IP addresses. */
static int x509_sans(const cas_secret_def *s, const char *session, const char *owner, const char *extra, char *sans,
                     size_t cap, scp_err *err) {
    int o0 = snprintf(sans, cap, "URI:" SCP_SHIELD_ID_SCHEME "%s/%s/%s%s%s", owner, session, s->name, extra ? "," : "",
                      extra ? extra : "");
    assert(o0 > 0 && (size_t)o0 < cap); /* owner: 64 hex, names: at most 64 of [A-Za-z0-9_.-], extra short */
    size_t o = (size_t)o0;
    for (size_t i = 0; i < s->dns.n + s->ip.n && o < cap; i++) {
        int w = snprintf(sans + o, cap - o, ",%s:%s", i < s->dns.n ? "DNS" : "IP",
                         i < s->dns.n ? s->dns.v[i] : s->ip.v[i - s->dns.n]);
        if (w < 0 || (size_t)w >= cap - o) return scp_fail(err, SCP_E_INVAL, EINVAL, "secret '%s': too many names", s->name);
        o += (size_t)w;
    }
    return 0;
}

/* The certificate of an x509 secret names who holds its key: a URI SAN
 * scp://OWNER/SESSION/SECRET (SCP_SHIELD_ID_SCHEME) that CAS fills in and no policy can set,
 * which a shielded peer's rule can require (docs/shield.md, "What the two ends' attestations
 * bind"). */
static int gen_x509(cas_api *api, const cas_secret_def *s, const char *session, const char *owner, char **out,
                    size_t *len, scp_err *err) {
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!k) return scp_fail(err, SCP_E_CRYPTO, EIO, "cannot generate a P-256 key");
    char sans[4096];
    if (x509_sans(s, session, owner, NULL, sans, sizeof sans, err) < 0) {
        EVP_PKEY_free(k);
        return -1;
    }
    X509 *c = cas_service_cert_issue(api->id, k, s->common_name, sans, s->valid_days, err);
    if (!c) {
        EVP_PKEY_free(k);
        if (err && err->code == SCP_E_INVAL) {
            scp_err_prefix(err, "secret '%s'", s->name);
            return -1;
        }
        return scp_fail(err, SCP_E_INVAL, EINVAL, "secret '%s': cannot issue the certificate (check dns/ip)", s->name);
    }
    char *cp = cas_cert_pem(c), *kp = cas_key_pem(k);
    X509_free(c);
    EVP_PKEY_free(k);
    int rc = -1;
    if (cp && kp) {
        size_t cl = strlen(cp), kl = strlen(kp);
        *out = malloc(cl + kl + 1);
        if (*out) {
            memcpy(*out, cp, cl);
            memcpy(*out + cl, kp, kl + 1);
            *len = cl + kl;
            rc = 0;
        }
    }
    if (rc < 0) scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    if (kp) OPENSSL_clear_free(kp, strlen(kp));
    free(cp);
    return rc;
}

int cas_check_reserved_names(const cas_policy *p, scp_err *err) {
    for (size_t i = 0; i < p->n_secrets; i++) {
        const cas_secret_def *s = &p->secrets[i];
        if (s->kind != SECRET_X509) continue;
        if (cas_x509_name_reserved(s->common_name))
            return scp_fail(err, SCP_E_INVAL, EPERM,
                            "secret '%s': common_name '%s' is CAS's own name; a session certificate cannot carry it",
                            s->name, s->common_name);
        for (size_t j = 0; j < s->dns.n; j++)
            if (cas_x509_name_reserved(s->dns.v[j]))
                return scp_fail(err, SCP_E_INVAL, EPERM,
                                "secret '%s': DNS name '%s' is CAS's own name; a session certificate cannot carry it",
                                s->name, s->dns.v[j]);
    }
    return 0;
}

/* The definition digest as stored beside the value: keyed, because the plain digest of an
 * explicit secret is a hash of its value, which a reader of cas.db could test guesses
 * against. */
static int stored_spec(cas_api *api, const char *plain, char out[65], scp_err *err) {
    uint8_t k[32], d[32];
    if (scp_hkdf(api->k_data, 32, NULL, 0, "scp-cas secret spec v1", 22, k, 32, err) < 0) return -1;
    int r = scp_hmac_buf(k, 32, plain, strlen(plain), d, err);
    OPENSSL_cleanse(k, 32);
    if (r < 0) return -1;
    scp_hex(d, 32, out);
    return 0;
}

/* The session's console key is a secret row no policy can name (names never start with '.'),
 * sealed under k_data like the others, kept for the life of the session. */
#define CONSOLE_ROW ".console"
#define CONSOLE_SPEC "console-key-v1"

static int console_session_key(cas_api *api, const char *session, uint8_t key[32], scp_err *err) {
    char spec[65];
    uint8_t *ct = NULL, *pt = NULL;
    size_t ctlen = 0, ptlen = 0;
    int g = api->st->ops->secret_get(api->st, session, CONSOLE_ROW, spec, &ct, &ctlen, err);
    if (g == 1) g = cas_unseal(api, "console", session, CONSOLE_ROW, ct, ctlen, &pt, &ptlen, err) < 0 ? -1 : 1;
    free(ct);
    if (g == 1 && ptlen != 32) g = scp_fail(err, SCP_E_INTEGRITY, EBADMSG, "the console key of session '%s' is malformed", session);
    if (g == 1) memcpy(key, pt, 32);
    if (pt) OPENSSL_clear_free(pt, ptlen);
    return g;
}

static int ensure_console_key(cas_api *api, const char *session, scp_err *err) {
    uint8_t key[32], *ct = NULL;
    size_t ctlen = 0;
    int g = console_session_key(api, session, key, err);
    OPENSSL_cleanse(key, sizeof key);
    if (g != 0) return g < 0 ? -1 : 0;
    if (scp_random(key, sizeof key, err) < 0) return -1;
    int r = cas_seal(api, "console", session, CONSOLE_ROW, key, sizeof key, &ct, &ctlen, err);
    OPENSSL_cleanse(key, sizeof key);
    if (r == 0) r = api->st->ops->secret_put(api->st, session, CONSOLE_ROW, CONSOLE_SPEC, ct, ctlen, err);
    free(ct);
    return r;
}

int cas_console_key(cas_api *api, const char *session, const char *service, uint8_t out[32], scp_err *err) {
    uint8_t key[32];
    int g = console_session_key(api, session, key, err);
    if (g == 1 && scp_ss_service_key(key, service, out, err) < 0) g = -1;
    OPENSSL_cleanse(key, sizeof key);
    return g;
}

int cas_ensure_secrets(cas_api *api, const cas_policy *p, const char *owner, scp_err *err) {
    if (ensure_console_key(api, p->name, err) < 0) return -1;
    for (size_t i = 0; i < p->n_secrets; i++) {
        const cas_secret_def *s = &p->secrets[i];
        if (s->kind == SECRET_IMPORTED) continue;
        char plain[65], spec[65], old_spec[65];
        cas_secret_spec(s, plain);
        if (s->kind == SECRET_X509) {
            /* certificates issued before they named the session's identity get a new one */
            char b[100];
            int bn = snprintf(b, sizeof b, "%s|identity-v1", plain);
            uint8_t h[32];
            scp_sha256_buf(b, (size_t)bn, h);
            scp_hex(h, 32, plain);
        }
        if (stored_spec(api, plain, spec, err) < 0) return -1;
        uint8_t *old = NULL;
        size_t oldlen = 0;
        int r = api->st->ops->secret_get(api->st, p->name, s->name, old_spec, &old, &oldlen, err);
        if (r == 1 && strcmp(old_spec, plain) == 0) {
            /* a row from before the digest was keyed: same definition, so keep the value and
             * replace the digest */
            r = api->st->ops->secret_put(api->st, p->name, s->name, spec, old, oldlen, err);
            free(old);
            if (r < 0) return -1;
            continue;
        }
        free(old);
        if (r < 0) return -1;
        if (r == 1 && strcmp(old_spec, spec) == 0) continue; /* unchanged definition: keep the value */
        char *val = NULL;
        size_t len = 0;
        if (s->kind == SECRET_RANDOM) {
            val = malloc(s->size);
            len = s->size;
            if (!val || scp_random(val, len, err) < 0) {
                free(val);
                return val ? -1 : scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
            }
        } else if (s->kind == SECRET_ASCII) {
            val = malloc(s->size + 1);
            len = s->size;
            if (!val || gen_ascii(val, s->size, err) < 0) {
                free(val);
                return val ? -1 : scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
            }
        } else if (s->kind == SECRET_EXPLICIT) {
            len = strlen(s->value);
            val = malloc(len + 1);
            if (!val) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
            memcpy(val, s->value, len + 1);
        } else if (gen_x509(api, s, p->name, owner, &val, &len, err) < 0) {
            return -1;
        }
        uint8_t *ct = NULL;
        size_t ctlen = 0;
        r = cas_seal(api, "secret", p->name, s->name, val, len, &ct, &ctlen, err);
        OPENSSL_clear_free(val, len);
        if (r < 0) return -1;
        r = api->st->ops->secret_put(api->st, p->name, s->name, spec, ct, ctlen, err);
        free(ct);
        if (r < 0) return -1;
    }
    return 0;
}

/* Where an x509 secret's private key begins: its stored value is the certificate's PEM, then
 * the key's (gen_x509); NULL if there is no key. */
static const char *x509_key_start(const char *pem) {
    return strstr(pem, "-----BEGIN " "PRIVATE KEY-----" /* split: no key-looking literal in the tree */);
}

int cas_secret_owner_read(cas_api *api, const cas_policy *p, const char *name, char **val, size_t *len,
                          scp_err *err) {
    const cas_secret_def *s = cas_policy_secret(p, name);
    if (!s) return scp_fail(err, SCP_E_NOENT, ENOENT, "session '%s' defines no secret '%s'", p->name, name);
    if (s->kind == SECRET_IMPORTED)
        return scp_fail(err, SCP_E_NOTSUP, EPERM,
                        "secret '%s' is imported from session '%s': its owner reads it there", name, s->import_session);
    char spec[65];
    uint8_t *ct = NULL, *pt = NULL;
    size_t ctlen = 0, ptlen = 0;
    int g = api->st->ops->secret_get(api->st, p->name, name, spec, &ct, &ctlen, err);
    if (g == 1) g = cas_unseal(api, "secret", p->name, name, ct, ctlen, &pt, &ptlen, err) < 0 ? -1 : 1;
    free(ct);
    if (g < 0) return -1;
    if (g == 0) return scp_fail(err, SCP_E_NOENT, ENOENT, "secret '%s' of session '%s' is not stored", name, p->name);
    if (s->kind == SECRET_X509) {
        /* the certificate only: the service's private key never leaves CAS but to the service */
        const char *k = x509_key_start((const char *)pt);
        size_t cl = k ? (size_t)(k - (const char *)pt) : ptlen;
        OPENSSL_cleanse(pt + cl, ptlen - cl);
        pt[cl] = 0;
        ptlen = cl;
    }
    *val = (char *)pt;
    *len = ptlen;
    return 0;
}

int cas_ensure_volumes(cas_api *api, const cas_policy *p, const char *incarnation, scp_err *err) {
    for (size_t i = 0; i < p->n_volumes; i++) {
        uint8_t *old = NULL;
        size_t oldlen = 0;
        char tag[81], mac[65];
        int r = api->st->ops->volume_get(api->st, p->name, p->volumes[i].name, &old, &oldlen, tag, mac, err);
        free(old);
        if (r < 0) return -1;
        if (r == 1) continue; /* a volume keeps its key for the life of the session */
        uint8_t key[SCP_VOLUME_KEY_LEN], *ct = NULL;
        size_t ctlen = 0;
        if (scp_random(key, sizeof key, err) < 0) return -1;
        r = cas_seal(api, "volume", p->name, p->volumes[i].name, key, sizeof key, &ct, &ctlen, err);
        OPENSSL_cleanse(key, sizeof key);
        if (r < 0) return -1;
        cas_tag_mac(api, p->name, incarnation, p->volumes[i].name, "", mac);
        r = api->st->ops->volume_put_key(api->st, p->name, p->volumes[i].name, ct, ctlen, mac, err);
        free(ct);
        if (r < 0) return -1;
    }
    return 0;
}

void cas_volume_token(cas_api *api, const char *session, const char *incarnation, const char *service, char out[65]) {
    char buf[200];
    int n = snprintf(buf, sizeof buf, "volume-token%c%s%c%s%c%s", 0, session, 0, incarnation, 0, service);
    assert(n > 0 && (size_t)n < sizeof buf);
    uint8_t h[32];
    scp_hmac_buf(api->k_token, 32, buf, (size_t)n, h, NULL);
    scp_hex(h, 32, out);
}

void cas_tag_mac(cas_api *api, const char *session, const char *incarnation, const char *volume, const char *tag_hex,
                 char out[65]) {
    char buf[300];
    int n = snprintf(buf, sizeof buf, "volume-tag%c%s%c%s%c%s%c%s", 0, session, 0, incarnation, 0, volume, 0, tag_hex);
    assert(n > 0 && (size_t)n < sizeof buf);
    uint8_t h[32];
    scp_hmac_buf(api->k_tag, 32, buf, (size_t)n, h, NULL);
    scp_hex(h, 32, out);
}

int cas_volume_read(cas_api *api, const char *session, const char *incarnation, const char *volume, uint8_t **key_ct,
                    size_t *ctlen, char tag_hex[81], scp_err *err) {
    char mac[65] = "", want[65];
    *key_ct = NULL;
    int r = api->st->ops->volume_get(api->st, session, volume, key_ct, ctlen, tag_hex, mac, err);
    if (r <= 0) return r;
    cas_tag_mac(api, session, incarnation, volume, tag_hex, want);
    if (strlen(mac) != 64 || scp_ct_cmp(mac, want, 64) != 0) {
        free(*key_ct);
        *key_ct = NULL;
        tag_hex[0] = 0;
        return scp_fail(err, SCP_E_INTEGRITY, EBADMSG,
                        "the expected tag of volume '%s' in session '%s' fails its integrity check: cas.db was modified "
                        "outside CAS (the owner may set the tag again after checking the volume)",
                        volume, session);
    }
    return 1;
}

int cas_volume_write_tag(cas_api *api, const char *session, const char *incarnation, const char *volume,
                         const char *tag_hex, scp_err *err) {
    char mac[65];
    cas_tag_mac(api, session, incarnation, volume, tag_hex, mac);
    return api->st->ops->volume_set_tag(api->st, session, volume, tag_hex, mac, err);
}

/* ---- rendering ---------------------------------------------------------------------------- */

typedef struct loaded {
    char name[CAS_NAME_MAX];
    enum cas_secret_kind kind;
    char *val;
    size_t len;
} loaded;

typedef struct render {
    cas_api *api;
    const cas_session_row *row; /* the session being rendered */
    const cas_policy *p;
    loaded items[16];
    size_t n;
    cas_response *resp;
} render;

static void render_free(render *r) {
    for (size_t i = 0; i < r->n; i++) OPENSSL_clear_free(r->items[i].val, r->items[i].len + 1);
    r->n = 0;
}

/* Whether the exporter's secret src is granted to the importer: an export entry names its session
 * and its owner, and the grant ended if a session of that name was deleted after the exporter's
 * version was written (a re-created session must be granted again). */
static int export_granted(const cas_secret_def *src, const cas_session_row *exporter, const cas_session_row *importer) {
    if (importer->ended_seq > exporter->seq) return 0;
    for (size_t i = 0; i < src->export_to.n; i++) {
        const char *owner = src->export_owner.v[i][0] ? src->export_owner.v[i] : exporter->owner;
        if (strcmp(src->export_to.v[i], importer->name) == 0 && strcmp(owner, importer->owner) == 0) return 1;
    }
    return 0;
}

/* Load (and cache) a secret's plaintext. Imported secrets come from the exporting session,
 * which must grant them to this session and its owner (export_granted). */
static loaded *get_secret(render *r, const char *name) {
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->items[i].name, name) == 0) return &r->items[i];
    if (r->n == sizeof r->items / sizeof r->items[0]) render_free(r); /* keep the cache small */
    const cas_secret_def *s = cas_policy_secret(r->p, name);
    if (!s) {
        cas_deny(r->resp, 500, "internal", "secret '%s' is not defined", name);
        return NULL;
    }
    const char *from_session = r->p->name, *from_name = name;
    enum cas_secret_kind kind = s->kind;
    cas_policy *other = NULL;
    if (s->kind == SECRET_IMPORTED) {
        cas_session_row row = {0};
        int ok = cas_load_policy(r->api, s->import_session, &row, &other, NULL, r->resp);
        free(row.policy);
        if (ok <= 0) {
            if (ok == 0)
                cas_deny(r->resp, 403, "import_refused", "secret '%s' imports from session '%s', which does not exist",
                         name, s->import_session);
            return NULL;
        }
        const char *want_owner = s->import_owner ? s->import_owner : r->row->owner;
        if (strcmp(row.owner, want_owner) != 0) {
            cas_deny(r->resp, 403, "import_refused",
                     "secret '%s' imports from session '%s', which is not owned by the identity the import names",
                     name, s->import_session);
            cas_policy_free(other);
            return NULL;
        }
        const cas_secret_def *src = cas_policy_secret(other, s->import_secret);
        if (!src || src->kind == SECRET_IMPORTED || !export_granted(src, &row, r->row)) {
            if (src && r->row->ended_seq > row.seq)
                cas_deny(r->resp, 403, "import_refused",
                         "session '%s' exported secret '%s' before session '%s' was deleted; that ended the grant "
                         "(the exporter's owner must update '%s' to grant it again)",
                         s->import_session, s->import_secret, r->p->name, s->import_session);
            else
                cas_deny(r->resp, 403, "import_refused",
                         "session '%s' does not export secret '%s' to session '%s' of this owner", s->import_session,
                         s->import_secret, r->p->name);
            cas_policy_free(other);
            return NULL;
        }
        kind = src->kind;
        from_session = s->import_session;
        from_name = s->import_secret;
    }
    scp_err e = {0};
    char spec[65];
    uint8_t *ct = NULL, *pt = NULL;
    size_t ctlen = 0, ptlen = 0;
    int g = r->api->st->ops->secret_get(r->api->st, from_session, from_name, spec, &ct, &ctlen, &e);
    if (g == 1) g = cas_unseal(r->api, "secret", from_session, from_name, ct, ctlen, &pt, &ptlen, &e) < 0 ? -1 : 1;
    free(ct);
    cas_policy_free(other);
    if (g <= 0) {
        cas_deny(r->resp, 500, "internal", "secret '%s' is unavailable: %s", name, g < 0 ? e.msg : "not stored");
        return NULL;
    }
    loaded *l = &r->items[r->n++];
    snprintf(l->name, sizeof l->name, "%.64s", name);
    l->kind = kind;
    l->val = (char *)pt;
    l->len = ptlen;
    return l;
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static int sb_add(sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t nc = (b->len + n + 1) * 2;
        char *np = malloc(nc);
        if (!np) return -1;
        if (b->p) {
            memcpy(np, b->p, b->len);
            OPENSSL_clear_free(b->p, b->cap);
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

/* Replace placeholders in text; returns a JSON string (or NULL with resp set). */
static json_t *subst(render *r, const char *text) {
    sbuf b = {0};
    const char *s = text;
    json_t *out = NULL;
    if (sb_add(&b, "", 0) < 0) goto oom;
    for (;;) {
        const char *ph = strstr(s, "$$SCP::");
        if (!ph) {
            if (sb_add(&b, s, strlen(s)) < 0) goto oom;
            break;
        }
        if (sb_add(&b, s, (size_t)(ph - s)) < 0) goto oom;
        const char *nb = ph + 7, *ne = strstr(nb, "$$");
        char name[80];
        size_t nl = ne ? (size_t)(ne - nb) : 0;
        if (!ne || nl == 0 || nl >= sizeof name) { /* validated at upload; be safe anyway */
            cas_deny(r->resp, 500, "internal", "bad placeholder");
            goto fail;
        }
        memcpy(name, nb, nl);
        name[nl] = 0;
        char *suffix = strchr(name, ':');
        if (suffix) *suffix++ = 0;
        loaded *l = get_secret(r, name);
        if (!l) goto fail;
        if (l->kind == SECRET_RANDOM) {
            char *hex = malloc(2 * l->len + 1);
            if (!hex) goto oom;
            scp_hex((uint8_t *)l->val, l->len, hex);
            int a = sb_add(&b, hex, 2 * l->len);
            OPENSSL_clear_free(hex, 2 * l->len + 1);
            if (a < 0) goto oom;
        } else if (l->kind == SECRET_X509 && suffix && strcmp(suffix, "ca") == 0) {
            /* the service CA, to verify peers' session certificates (never CAS's root) */
            char *ca = cas_cert_pem(r->api->id->service_ca_cert);
            int a = ca ? sb_add(&b, ca, strlen(ca)) : -1;
            free(ca);
            if (a < 0) goto oom;
        } else if (l->kind == SECRET_X509) {
            const char *kp = x509_key_start(l->val);
            size_t cl = kp ? (size_t)(kp - l->val) : l->len;
            int a = suffix && strcmp(suffix, "key") == 0 ? sb_add(&b, kp ? kp : "", kp ? strlen(kp) : 0)
                                                         : sb_add(&b, l->val, cl);
            if (a < 0) goto oom;
        } else if (sb_add(&b, l->val, l->len) < 0) {
            goto oom;
        }
        s = ne + 2;
    }
    out = json_stringn(b.p, b.len);
    if (!out) cas_deny(r->resp, 500, "internal", "a rendered value is not valid UTF-8");
    goto done;
oom:
    cas_deny(r->resp, 500, "internal", "out of memory");
fail:
    out = NULL;
done:
    if (b.p) OPENSSL_clear_free(b.p, b.cap);
    return out;
}

/* A CA of a network rule as PEM: CAS's service CA, or the value of the named secret. */
static json_t *net_ca(render *r, const char *ca) {
    if (!ca || strcmp(ca, "service") == 0) {
        char *pem = cas_cert_pem(r->api->id->service_ca_cert);
        json_t *j = pem ? json_string(pem) : NULL;
        free(pem);
        if (!j) cas_deny(r->resp, 500, "internal", "out of memory");
        return j;
    }
    loaded *l = get_secret(r, ca);
    if (!l) return NULL;
    json_t *j = json_stringn(l->val, l->len);
    if (!j) cas_deny(r->resp, 500, "internal", "network CA '%s' is not text", ca);
    return j;
}

/* The identity a peer's certificate must carry (gen_x509): scp://OWNER/SESSION/ and the
 * secret's name if given; the owner defaults to this session's. NULL without a session. */
static json_t *net_identity(render *r, const char *session, const char *owner, const char *secret) {
    if (!session) return NULL;
    char id[300];
    int n = snprintf(id, sizeof id, SCP_SHIELD_ID_SCHEME "%s/%s/%s", owner ? owner : r->row->owner, session,
                     secret ? secret : "");
    assert(n > 0 && (size_t)n < sizeof id); /* validated: 64 hex and two names of at most 64 */
    (void)n; /* (NDEBUG) */
    return json_string(id);
}

/* The service's network section for the shield: rules, the CAs as PEM and the certificate
 * and key of the named x509 secret (the key goes nowhere but the attested service). */
static json_t *render_net(render *r, const cas_service_net *net) {
    if (!net->present) return json_null();
    json_t *o = json_object(), *lis = json_array(), *peers = json_array();
    json_object_set_new(o, "listen", lis);
    json_object_set_new(o, "peers", peers);
    json_object_set_new(o, "default", json_string(net->refuse ? "refuse" : "allow"));
    json_object_set_new(o, "min_tls", json_string(net->min_tls == 12 ? "1.2" : "1.3"));
    if (net->instance) {
        /* the certificate is the instance's own (cas_instance_cert); no key leaves CAS */
        json_object_set_new(o, "identity", json_string("instance"));
    } else if (net->certificate) {
        loaded *l = get_secret(r, net->certificate);
        if (!l) goto fail;
        const char *kp = x509_key_start(l->val);
        if (!kp) {
            cas_deny(r->resp, 500, "internal", "secret '%s' holds no private key", net->certificate);
            goto fail;
        }
        json_object_set_new(o, "cert", json_stringn(l->val, (size_t)(kp - l->val)));
        json_object_set_new(o, "key", json_string(kp));
    }
    for (size_t i = 0; i < net->n_listen; i++) {
        const cas_net_listen *ln = &net->listen[i];
        json_t *e = json_pack("{s:I, s:b}", "port", (json_int_t)ln->port, "client_cert", ln->client_cert);
        json_array_append_new(lis, e);
        if (ln->proto != CAS_NET_PROTO_TLS)
            json_object_set_new(e, "protocol", json_string(ln->proto == CAS_NET_PROTO_MYSQL ? "mysql" : "postgres"));
        if (ln->client_cert) {
            json_t *ca = net_ca(r, ln->client_ca);
            if (!ca) goto fail;
            json_object_set_new(e, "client_ca", ca);
            json_t *id = net_identity(r, ln->client_session, ln->client_owner, NULL);
            if (id) json_object_set_new(e, "identity", id);
            if (ln->client_service) json_object_set_new(e, "service", json_string(ln->client_service));
            if (ln->client_measurement) json_object_set_new(e, "measurement", json_string(ln->client_measurement));
            if (ln->client_platform) json_object_set_new(e, "platform", json_string(ln->client_platform));
        }
    }
    for (size_t i = 0; i < net->n_peers; i++) {
        const cas_net_peer *pe = &net->peers[i];
        json_t *ca = net_ca(r, pe->ca);
        if (!ca) goto fail;
        json_t *e = json_pack("{s:s, s:I, s:s, s:o}", "host", pe->host, "port", (json_int_t)pe->port, "name",
                              pe->name ? pe->name : pe->host, "ca", ca);
        json_t *id = net_identity(r, pe->session, pe->owner, pe->certificate);
        if (id) json_object_set_new(e, "identity", id);
        if (pe->proto != CAS_NET_PROTO_TLS)
            json_object_set_new(e, "protocol", json_string(pe->proto == CAS_NET_PROTO_MYSQL ? "mysql" : "postgres"));
        if (pe->service) json_object_set_new(e, "service", json_string(pe->service));
        if (pe->measurement) json_object_set_new(e, "measurement", json_string(pe->measurement));
        if (pe->platform) json_object_set_new(e, "platform", json_string(pe->platform));
        json_array_append_new(peers, e);
    }
    return o;
fail:
    json_decref(o);
    return NULL;
}

json_t *cas_render_config(cas_api *api, const cas_session_row *row, const cas_policy *p, const cas_service_def *svc,
                          cas_response *resp) {
    assert(strcmp(row->name, p->name) == 0);
    render r = {api, row, p, {{{0}, 0, NULL, 0}}, 0, resp};
    json_t *cmd = json_array(), *env = json_object(), *files = json_array(), *vols = json_array(),
           *net = json_array();
    json_t *cfg = NULL;
    for (size_t i = 0; i < svc->command.n; i++) {
        json_t *v = subst(&r, svc->command.v[i]);
        if (!v) goto fail;
        json_array_append_new(cmd, v);
    }
    for (size_t i = 0; i < svc->env_keys.n; i++) {
        json_t *v = subst(&r, svc->env_values.v[i]);
        if (!v) goto fail;
        json_object_set_new(env, svc->env_keys.v[i], v);
    }
    for (size_t i = 0; i < svc->n_files; i++) {
        json_t *v = subst(&r, svc->files[i].content);
        if (!v) goto fail;
        json_array_append_new(files, json_pack("{s:s, s:o}", "path", svc->files[i].path, "content", v));
    }
    for (size_t i = 0; i < svc->volumes.n; i++) {
        const cas_volume_def *vd = cas_policy_volume(p, svc->volumes.v[i]);
        scp_err e = {0};
        uint8_t *ct = NULL, *key = NULL;
        size_t ctlen = 0, klen = 0;
        char tag[81];
        int g = cas_volume_read(api, p->name, row->incarnation, vd->name, &ct, &ctlen, tag, &e);
        if (g < 0 && e.code == SCP_E_INTEGRITY) { /* the volume must not be trusted: no key, no start */
            cas_deny(resp, 500, "tag_integrity", "%s", e.msg);
            goto fail;
        }
        if (g == 1) g = cas_unseal(api, "volume", p->name, vd->name, ct, ctlen, &key, &klen, &e) < 0 ? -1 : 1;
        free(ct);
        if (g <= 0 || klen != SCP_VOLUME_KEY_LEN) {
            if (key) OPENSSL_clear_free(key, klen);
            cas_deny(resp, 500, "internal", "volume '%s' key unavailable: %s", vd->name, g < 0 ? e.msg : "not stored");
            goto fail;
        }
        char khex[2 * SCP_VOLUME_KEY_LEN + 1];
        scp_hex(key, klen, khex);
        OPENSSL_clear_free(key, klen);
        json_t *jv = json_pack("{s:s, s:s, s:s, s:o}", "name", vd->name, "path", vd->path, "key", khex,
                               "expected_tag", tag[0] ? json_string(tag) : json_null());
        if (jv && vd->chunk_size) json_object_set_new(jv, "chunk_size", json_integer(vd->chunk_size));
        json_array_append_new(vols, jv);
        OPENSSL_cleanse(khex, sizeof khex);
    }
    json_decref(net);
    net = render_net(&r, &svc->net);
    if (!net) goto fail;
    json_t *console = NULL;
    if (svc->console_stdin || svc->console_stdout || svc->console_stderr) {
        uint8_t ck[32];
        scp_err e = {0};
        char khex[65];
        if (cas_console_key(api, p->name, svc->name, ck, &e) != 1) {
            cas_deny(resp, 500, "internal", "the console key of session '%s' is unavailable: %s (update the session once)",
                     p->name, e.msg[0] ? e.msg : "not stored");
            goto fail;
        }
        scp_hex(ck, 32, khex);
        OPENSSL_cleanse(ck, sizeof ck);
        console = json_pack("{s:b, s:b, s:b, s:s}", "stdin", svc->console_stdin, "stdout", svc->console_stdout,
                            "stderr", svc->console_stderr, "key", khex);
        OPENSSL_cleanse(khex, sizeof khex);
    }
    char token[65];
    cas_volume_token(api, p->name, row->incarnation, svc->name, token);
    cfg = json_pack("{s:s, s:s, s:o, s:b, s:o, s:s?, s:o, s:o, s:o, s:s}", "session", p->name, "service", svc->name,
                    "command", cmd, "append_args", svc->append_args, "environment", env, "cwd", svc->cwd, "files", files,
                    "volumes", vols, "network", net, "volume_token", token);
    if (cfg && console) json_object_set_new(cfg, "console", console);
    else json_decref(console);
    render_free(&r);
    if (!cfg) cas_deny(resp, 500, "internal", "cannot build the configuration");
    return cfg;
fail:
    render_free(&r);
    json_decref(cmd);
    json_decref(env);
    json_decref(files);
    json_decref(vols);
    json_decref(net);
    return NULL;
}

/* A per-instance certificate (identity: instance): for the public key the attested instance
 * made and sent in its evidence, with the names of the service's x509 secret, its identity
 * URI, and URIs that no policy can set naming the service, the measurement and the platform
 * (SCP_SHIELD_SERVICE_URI, _MEASUREMENT_URI, _PLATFORM_URI). Short-lived: the instance
 * attests again (restarts) to get another. Returns the PEM (malloc'd; its SHA-256 fingerprint in
 * fingerprint, for the audit row) or NULL with resp set. */
char *cas_instance_cert(cas_api *api, const cas_session_row *row, const cas_policy *p, const cas_service_def *svc,
                        const uint8_t ik[SCP_INSTANCE_KEY_LEN], const char *measurement, const char *platform,
                        char fingerprint[65], cas_response *resp) {
    const cas_secret_def *sd = cas_policy_secret(p, svc->net.certificate);
    assert(sd && sd->kind == SECRET_X509); /* checked at upload (check_net) */
    OSSL_PARAM prm[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"P-256", 0),
                        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)ik, SCP_INSTANCE_KEY_LEN),
                        OSSL_PARAM_construct_end()};
    EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pub = NULL;
    int ok = kc && EVP_PKEY_fromdata_init(kc) == 1 && EVP_PKEY_fromdata(kc, &pub, EVP_PKEY_PUBLIC_KEY, prm) == 1;
    EVP_PKEY_CTX_free(kc);
    if (!ok) {
        EVP_PKEY_free(pub);
        cas_deny(resp, 400, "bad_evidence", "the evidence's instance key is not a P-256 public key");
        return NULL;
    }
    char extra[400], sans[4096];
    snprintf(extra, sizeof extra, "URI:" SCP_SHIELD_SERVICE_URI "%s,URI:" SCP_SHIELD_MEASUREMENT_URI
             "%s,URI:" SCP_SHIELD_PLATFORM_URI "%s", svc->name, measurement, platform);
    scp_err e = {0};
    X509 *c = x509_sans(sd, p->name, row->owner, extra, sans, sizeof sans, &e) < 0
                  ? NULL
                  : cas_service_cert_issue(api->id, pub, sd->common_name, sans, CAS_INSTANCE_CERT_DAYS, &e);
    EVP_PKEY_free(pub);
    char *pem = c ? cas_cert_pem(c) : NULL;
    if (c) cas_cert_fingerprint(c, fingerprint);
    X509_free(c);
    if (!pem) cas_deny(resp, 500, "internal", "cannot issue the instance certificate: %s", e.msg[0] ? e.msg : "out of memory");
    return pem;
}
