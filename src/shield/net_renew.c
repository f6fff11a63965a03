/* shield/net_renew.c - per-instance certificates renewed while the program runs
 * (docs/shield.md "identity: instance").
 *
 * CAS certifies an instance's key for a day. Before that day is over, the supervisor (scpctl
 * run, or a secure image's entry) attests again with the same instance key, and CAS, if the
 * policy still names the measurement, certifies the key once more; the supervisor publishes the
 * new certificate in a page it shares with every shielded process (struct
 * scp_shield_net_renew). Here each new TLS connection looks at the page's sequence number (one
 * atomic load) and, when it moved, takes the new certificate: only one that carries the public
 * key of the instance key this process holds, so a page written by anyone else can at worst
 * make handshakes present a certificate whose key we do not have, which they would fail, and
 * is refused here before that. Connections already established keep the certificate they
 * started with, as with any TLS server whose certificate is replaced.
 *
 * Why per connection and not on the SSL_CTX: SSL_CTX_use_certificate on a context other threads
 * are making SSL objects from is not safe; SSL_use_certificate on the new object is, and keeps
 * the private key because it matches.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "common/util.h"
#include "shield/internal.h"
#include "shield/net.h"
#include "shield/net_int.h"

static pthread_mutex_t renew_mu = PTHREAD_MUTEX_INITIALIZER;
/* Both written under renew_mu, with atomic stores: net_renew_apply reads them unlocked as a hint. */
static X509 *renewed;      /* the newest accepted certificate, or NULL */
static uint32_t taken_seq; /* the page's seq it came from */

int net_renew_load(scp_err *err) {
    const char *v = getenv(SCP_SHIELD_ENV_NET_RENEW_FD);
    if (!v) return 0;
    char *end;
    long fd = strtol(v, &end, 10);
    /* only a number in the shield's own range, which the program cannot have reused; the
     * variable stays, so an exec'd image finds the page at the same number */
    if (*end || fd < sh.base + sh.nslots || fd >= sh.hi)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "bad " SCP_SHIELD_ENV_NET_RENEW_FD);
    void *p = (void *)sh_gate(SYS_mmap, 0, sizeof(struct scp_shield_net_renew), PROT_READ, MAP_SHARED, fd, 0);
    if ((unsigned long)p >= (unsigned long)-4095L)
        return scp_fail(err, SCP_E_SYS, EINVAL, "cannot map the certificate renewal page");
    nc.renew = p;
    return 0;
}

/* A consistent copy of the page's certificate as an X509 for our key, or NULL (caller holds
 * renew_mu). */
static X509 *read_page(uint32_t *seq_out) {
    assert(scp_mutex_held(&renew_mu));
    const struct scp_shield_net_renew *pg = nc.renew;
    static char pem[sizeof pg->pem];
    for (int tries = 0; tries < 100; tries++) {
        uint32_t s = __atomic_load_n(&pg->seq, __ATOMIC_ACQUIRE);
        if (s & 1) continue; /* the supervisor is writing it */
        uint32_t len = __atomic_load_n(&pg->len, __ATOMIC_RELAXED);
        if (len == 0 || len > sizeof pem) return NULL;
        memcpy(pem, pg->pem, len);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&pg->seq, __ATOMIC_RELAXED) != s) continue;
        *seq_out = s;
        BIO *b = BIO_new_mem_buf(pem, (int)len);
        X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        if (x && X509_check_private_key(x, nc.pkey) != 1) {
            net_log("a renewed certificate on the supervisor's page is not for this instance's key: ignored");
            X509_free(x);
            x = NULL;
        }
        ERR_clear_error();
        return x;
    }
    return NULL;
}

void net_renew_apply(SSL *ssl) {
    if (!nc.renew || !nc.pkey) return;
    uint32_t s = __atomic_load_n(&nc.renew->seq, __ATOMIC_ACQUIRE);
    /* Nothing renewed and the page unchanged (every connection until the first renewal): no
     * lock. A stale read only sends us to the locked path below, which decides again. */
    if (s == __atomic_load_n(&taken_seq, __ATOMIC_RELAXED) && !__atomic_load_n(&renewed, __ATOMIC_RELAXED)) return;
    X509 *use = NULL;
    pthread_mutex_lock(&renew_mu);
    if (s != taken_seq && !(s & 1)) {
        uint32_t got = 0;
        X509 *x = read_page(&got);
        /* a bad page is not read again until it changes */
        __atomic_store_n(&taken_seq, got ? got : s, __ATOMIC_RELAXED);
        if (x) {
            X509_free(renewed);
            __atomic_store_n(&renewed, x, __ATOMIC_RELAXED);
        }
    }
    if (renewed && X509_up_ref(renewed) == 1) use = renewed;
    pthread_mutex_unlock(&renew_mu);
    if (!use) return;
    if (SSL_use_certificate(ssl, use) != 1) ERR_clear_error(); /* the first certificate stays */
    X509_free(use);
}
