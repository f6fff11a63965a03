/* runtime/run_cas.c - what the run asks of CAS: the configuration, against evidence that
 * binds the measurement (retried while CAS is unreachable); the volumes' tag reports; the
 * per-instance key, its certificate and the certificate's renewal. */
#include "runtime/attest_run.h"
#include "runtime/run_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
#include "scp/attest.h"
#include "scp/shield.h"
#include "scp/volume.h"

/* What checked_evidence checks the evidence against. */
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

int run_attest_retry(scp_cas_client *c, const struct scp_attest_run_opts *o, const uint8_t m[32],
                     const uint8_t *ik, char **cfg, scp_err *err) {
    double start = run_now_s(), wait = 0.1;
    for (;;) {
        int r = attest_once(c, o, m, ik, cfg, err);
        if (r == 0) return 0;
        /* SCP_E_BUSY: another process wrote our configfs-tsm report entry meanwhile */
        if (err->code != SCP_E_SYS && err->code != SCP_E_BUSY) return -1;
        double left = o->cas_timeout - (run_now_s() - start);
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

int run_report_tag(scp_cas_client *c, const struct scp_attest_run_opts *o, const char *token, struct run_volume *rv,
                   const uint8_t *tag) {
    uint64_t gen = scp_get_u64(tag);
    char hex[2 * SCP_VOLUME_TAG_LEN + 1];
    scp_hex(tag, SCP_VOLUME_TAG_LEN, hex);
    if (rv->reported[0] && (gen < rv->reported_gen || !strcmp(hex, rv->reported))) return 0;
    scp_err e = {0};
    int r = scp_attest_report_tag(c, o->session, o->service, rv->name, hex, token, &e);
    /* an unreachable CAS (connection errors) is retried with backoff up to --cas-timeout */
    for (double wait = 0.1, t0 = run_now_s(); r < 0 && e.code == SCP_E_SYS && run_now_s() - t0 < o->cas_timeout;) {
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
        wait = wait * 2 > 2 ? 2 : wait * 2;
        r = scp_attest_report_tag(c, o->session, o->service, rv->name, hex, token, &e);
    }
    if (r < 0) {
        scp_log(SCP_LOG_WARN, RUN_WHO(o), "cannot report the tag of volume %s (generation %llu) to CAS: %s", rv->name,
                (unsigned long long)gen, e.msg);
        return -1;
    }
    rv->reported_gen = gen;
    memcpy(rv->reported, hex, sizeof hex);
    return 0;
}

EVP_PKEY *run_instance_key_new(uint8_t pub[SCP_INSTANCE_KEY_LEN], scp_err *err) {
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

int run_instance_key_install(json_t *net, EVP_PKEY *ik, const uint8_t ik_pub[SCP_INSTANCE_KEY_LEN],
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

static void renewal_schedule(struct run_renewal *rn, const struct scp_attest_run_opts *o, int failed) {
    double left = difftime(rn->expires, time(NULL));
    double in = o->renew_interval > 0 ? o->renew_interval : left / 2;
    if (failed && in > 60) in = 60; /* CAS away: try again soon, not at half of what is left */
    rn->next = run_now_s() + (in < 1 ? 1 : in);
}

int run_renewal_start(struct run_renewal *rn, time_t expires, const uint8_t ik_pub[SCP_INSTANCE_KEY_LEN],
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

void run_renewal_try(struct run_renewal *rn, scp_cas_client *c, const struct scp_attest_run_opts *o,
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
        scp_log(SCP_LOG_WARN, RUN_WHO(o), "cannot renew the instance certificate of service %s: %s; the current one is "
                "valid until %s", o->service, e.msg, until);
    else
        scp_log(SCP_LOG_INFO, RUN_WHO(o), "renewed the instance certificate of service %s (valid until %s)", o->service, until);
    renewal_schedule(rn, o, e.code != 0);
}
