/* crypto/aead.c - AES-256-GCM, HKDF, HMAC and SHA-256 through OpenSSL (see crypto.h). */
#include "crypto/crypto.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "common/util.h"

/* Any option makes OpenSSL do its base initialisation, which registers the exit cleanup (with
 * none it returns at once). ASYNC only creates two thread-local keys; the configuration file
 * (LOAD_CONFIG) is still loaded at the first real use, as without this call. */
void scp_crypto_early_init(void) { OPENSSL_init_crypto(OPENSSL_INIT_ASYNC, NULL); }

int scp_random(void *buf, size_t n, scp_err *err) {
    if (RAND_bytes(buf, (int)n) != 1)
        return scp_fail(err, SCP_E_CRYPTO, EIO, "the random generator failed (RAND_bytes)");
    return 0;
}

/* Random values that are not secret, from a per-thread buffer that one RAND_bytes call fills.
 * RAND_bytes costs about 0.9 us a call whatever the length (OpenSSL 3's DRBG: its fork check,
 * a getpid, and the re-key of its AES-CTR state after every request), and a journaled commit
 * asked three times for 12 bytes: its chunk nonces, its commit record's nonce, its
 * manifest-log record's nonce (sqlite's one-row WAL transaction: one commit each).
 * The bytes are the DRBG's output as RAND_bytes would have returned them, each handed out
 * once: taken from the end of what is left, then wiped in the buffer. No process hands out
 * what another did or will: the buffer lives in its own page marked MADV_WIPEONFORK, which the
 * kernel gives a child of fork zeroed (so empty: it fills its own), also a child of a raw
 * clone, where no fork handler runs; a vfork child shares the page with its suspended parent,
 * so what one takes the other never sees again. Where the kernel refuses the mark (before
 * Linux 4.14) the buffer records the pid that filled it and is filled afresh when getpid()
 * differs, as OpenSSL's own check does. So a nonce's uniqueness rests on the DRBG as before.
 * The buffer is taken out of its slot while in use, so that a signal handler that draws
 * meanwhile (the shield's) finds none and calls RAND_bytes.
 * Keys never come from here: the buffer holds values before they are drawn. */
#define POOL_BYTES 480
struct rand_pool {
    pid_t pid;   /* the process that filled b (checked only without the fork mark) */
    size_t left; /* b[0, left) not handed out yet; the rest is wiped */
    uint8_t b[POOL_BYTES];
};
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static pthread_key_t pool_key;
static int pool_marked = 1; /* every buffer so far got MADV_WIPEONFORK (atomic) */

static void pool_free(void *p) {
    scp_wipe(p, sizeof(struct rand_pool));
    munmap(p, sizeof(struct rand_pool));
}
static void pool_init(void) {
    if (pthread_key_create(&pool_key, pool_free) != 0) abort();
}

static struct rand_pool *pool_new(void) {
    void *m = mmap(NULL, sizeof(struct rand_pool), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    if (madvise(m, sizeof(struct rand_pool), MADV_WIPEONFORK) != 0)
        __atomic_store_n(&pool_marked, 0, __ATOMIC_RELAXED);
    return m; /* (zero: empty) */
}

int scp_random_public(void *buf, size_t n, scp_err *err) {
    if (n > POOL_BYTES / 4) return scp_random(buf, n, err); /* (a long run's nonces: one call) */
    pthread_once(&pool_once, pool_init);
    struct rand_pool *p = pthread_getspecific(pool_key);
    if (p) (void)pthread_setspecific(pool_key, NULL);
    else if (!(p = pool_new())) return scp_random(buf, n, err);
    pid_t me = __atomic_load_n(&pool_marked, __ATOMIC_RELAXED) ? 0 : getpid();
    if (p->pid != me || p->left < n) {
        p->left = 0;
        if (RAND_bytes(p->b, POOL_BYTES) != 1) {
            pool_free(p);
            return scp_fail(err, SCP_E_CRYPTO, EIO, "the random generator failed (RAND_bytes)");
        }
        p->pid = me;
        p->left = POOL_BYTES;
    }
    assert(n <= p->left && p->left <= POOL_BYTES);
    p->left -= n;
    memcpy(buf, p->b + p->left, n);
    scp_wipe(p->b + p->left, n);
    if (pthread_getspecific(pool_key) || pthread_setspecific(pool_key, p) != 0) pool_free(p);
    return 0;
}

/* Per-thread cipher contexts, GCM_SLOTS for sealing and as many for opening, each remembering
 * the key it was initialized with, so that the common case only sets the IV. Several per
 * direction: a journaled commit seals under three keys in turn (its chunks under the writer's
 * subkey, its commit record under the journal key, its manifest-log record under the log's
 * key), and with one context each of those seals re-keyed it (the AES key schedule and GCM's
 * hash key tables, each time). The copies of the keys live in a locked, non-dumpable page
 * (OpenSSL keeps the key schedule in its context and clears it on free); the contexts are
 * listed, so that scp_crypto_forget_keys can drop every thread's when a volume closes. The
 * struct itself stays on the heap, so that leak checkers see the contexts it points to. `busy`
 * is a spin flag: the owner takes it around each operation, a forgetting thread around the
 * wipe. Freed by the thread-exit destructor. */
#ifndef GCM_SLOTS
#define GCM_SLOTS 4
#endif
struct gcm_tls {
    struct gcm_tls *next, *prev;
    int busy;
    EVP_CIPHER_CTX *ctx[2][GCM_SLOTS]; /* [0] encrypt, [1] decrypt */
    uint8_t (*key)[GCM_SLOTS][32];     /* [2], in a page of scp_secure_alloc */
    int keyed[2][GCM_SLOTS];
    unsigned long used[2][GCM_SLOTS];  /* when each was last used (the least recent is re-keyed) */
    unsigned long clock;
};

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t tls_reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct gcm_tls *tls_reg;

static void tls_lock(struct gcm_tls *t) {
    while (__atomic_exchange_n(&t->busy, 1, __ATOMIC_ACQUIRE)) sched_yield();
}
static void tls_unlock(struct gcm_tls *t) { __atomic_store_n(&t->busy, 0, __ATOMIC_RELEASE); }

/* Drop the contexts and key copies (caller holds t->busy). */
static void tls_clear(struct gcm_tls *t) {
    assert(__atomic_load_n(&t->busy, __ATOMIC_RELAXED) == 1);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < GCM_SLOTS; k++) {
            EVP_CIPHER_CTX_free(t->ctx[i][k]); /* the provider clears its key schedule on free */
            t->ctx[i][k] = NULL;
            t->keyed[i][k] = 0;
            OPENSSL_cleanse(t->key[i][k], 32);
        }
}

static void tls_free(void *p) {
    struct gcm_tls *t = p;
    pthread_mutex_lock(&tls_reg_mu);
    if (t->prev) t->prev->next = t->next;
    else tls_reg = t->next;
    if (t->next) t->next->prev = t->prev;
    pthread_mutex_unlock(&tls_reg_mu);
    tls_lock(t); /* off the list now, so no forgetting thread holds it for long */
    tls_clear(t);
    scp_secure_free(t->key, (size_t)2 * sizeof *t->key);
    OPENSSL_free(t);
}

/* Fork: the list's lock must not be held by a thread that the child does not have, and the
 * busy flags of those threads' contexts would never be released. */
static void tls_prepare(void) { pthread_mutex_lock(&tls_reg_mu); }
static void tls_parent(void) { pthread_mutex_unlock(&tls_reg_mu); }
static void tls_child(void) {
    for (struct gcm_tls *t = tls_reg; t; t = t->next) t->busy = 0;
    pthread_mutex_unlock(&tls_reg_mu);
}

static void tls_init(void) {
    pthread_key_create(&tls_key, tls_free);
    pthread_atfork(tls_prepare, tls_parent, tls_child);
}

void scp_crypto_atfork_register(void) { pthread_once(&tls_once, tls_init); }

/* This thread's contexts, taken (release with tls_unlock); NULL if out of memory. */
static struct gcm_tls *tls_get(void) {
    pthread_once(&tls_once, tls_init);
    struct gcm_tls *t = pthread_getspecific(tls_key);
    if (!t) {
        t = OPENSSL_zalloc(sizeof *t);
        if (!t) return NULL;
        t->key = scp_secure_alloc((size_t)2 * sizeof *t->key);
        if (!t->key) {
            OPENSSL_free(t);
            return NULL;
        }
        pthread_mutex_lock(&tls_reg_mu);
        t->next = tls_reg;
        if (tls_reg) tls_reg->prev = t;
        tls_reg = t;
        pthread_mutex_unlock(&tls_reg_mu);
        pthread_setspecific(tls_key, t);
    }
    tls_lock(t);
    return t;
}

void scp_crypto_forget_keys(void) {
    pthread_once(&tls_once, tls_init);
    pthread_mutex_lock(&tls_reg_mu);
    for (struct gcm_tls *t = tls_reg; t; t = t->next) {
        tls_lock(t);
        tls_clear(t);
        tls_unlock(t);
    }
    pthread_mutex_unlock(&tls_reg_mu);
}

size_t scp_crypto_cached_keys(void) {
    size_t n = 0;
    pthread_once(&tls_once, tls_init);
    pthread_mutex_lock(&tls_reg_mu);
    for (struct gcm_tls *t = tls_reg; t; t = t->next) {
        tls_lock(t);
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < GCM_SLOTS; k++) n += (size_t)(t->keyed[i][k] || t->ctx[i][k]);
        tls_unlock(t);
    }
    pthread_mutex_unlock(&tls_reg_mu);
    return n;
}

/* A context for dir, keyed with key and set to nonce (caller holds t->busy): the one already
 * keyed with it, else the least recently used one, re-keyed. */
static EVP_CIPHER_CTX *gcm_ctx(struct gcm_tls *t, int dir, const uint8_t key[32],
                               const uint8_t nonce[12]) {
    assert(__atomic_load_n(&t->busy, __ATOMIC_RELAXED) == 1);
    int s = -1, lru = 0;
    for (int k = 0; k < GCM_SLOTS && s < 0; k++) {
        if (t->keyed[dir][k] && CRYPTO_memcmp(t->key[dir][k], key, 32) == 0) s = k;
        else if (!t->keyed[dir][k] || (t->keyed[dir][lru] && t->used[dir][k] < t->used[dir][lru]))
            lru = k;
    }
    const uint8_t *newkey = NULL;
    if (s < 0) {
        s = lru;
        if (!t->ctx[dir][s]) {
            t->ctx[dir][s] = EVP_CIPHER_CTX_new();
            if (!t->ctx[dir][s]) return NULL;
            if (EVP_CipherInit_ex(t->ctx[dir][s], EVP_aes_256_gcm(), NULL, NULL, NULL, dir == 0) != 1)
                return NULL;
        }
        memcpy(t->key[dir][s], key, 32);
        t->keyed[dir][s] = 1;
        newkey = key;
    }
    assert(s >= 0 && s < GCM_SLOTS && t->ctx[dir][s]);
    t->used[dir][s] = ++t->clock;
    EVP_CIPHER_CTX *c = t->ctx[dir][s];
    if (EVP_CipherInit_ex(c, NULL, NULL, newkey, nonce, dir == 0) != 1) {
        t->keyed[dir][s] = 0;
        return NULL;
    }
    return c;
}

int scp_aead_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                  size_t aad_len, const uint8_t *pt, size_t len, uint8_t *ct, uint8_t tag[16],
                  scp_err *err) {
    struct gcm_tls *t = tls_get();
    EVP_CIPHER_CTX *c = t ? gcm_ctx(t, 0, key, nonce) : NULL;
    int outl = 0;
    int ok = c && (!aad_len || EVP_EncryptUpdate(c, NULL, &outl, aad, (int)aad_len) == 1) &&
             (!len || EVP_EncryptUpdate(c, ct, &outl, pt, (int)len) == 1) &&
             EVP_EncryptFinal_ex(c, ct + len, &outl) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
    if (t) tls_unlock(t);
    if (!ok) return scp_fail(err, SCP_E_CRYPTO, EIO, "AES-256-GCM encryption failed in OpenSSL");
    return 0;
}

int scp_aead_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                  size_t aad_len, const uint8_t *ct, size_t len, const uint8_t tag[16],
                  uint8_t *pt, scp_err *err) {
    struct gcm_tls *t = tls_get();
    EVP_CIPHER_CTX *c = t ? gcm_ctx(t, 1, key, nonce) : NULL;
    int outl = 0;
    if (!c) {
        if (t) tls_unlock(t);
        return scp_fail(err, SCP_E_CRYPTO, EIO, "AES-256-GCM setup failed in OpenSSL");
    }
    uint8_t tg[16];
    memcpy(tg, tag, 16);
    int ok = (!aad_len || EVP_DecryptUpdate(c, NULL, &outl, aad, (int)aad_len) == 1) &&
             (!len || EVP_DecryptUpdate(c, pt, &outl, ct, (int)len) == 1) &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tg) == 1 &&
             EVP_DecryptFinal_ex(c, pt + len, &outl) == 1;
    tls_unlock(t);
    if (!ok) {
        if (len) scp_wipe(pt, len);
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "authentication failed");
    }
    return 0;
}

static void hmac_run(const uint8_t *key, size_t key_len, const struct scp_buf *parts, size_t n,
                     uint8_t out[32]);

/* HKDF-SHA256 (RFC 5869) on the HMAC below: OpenSSL's EVP_PKEY HKDF fetched its KDF, MAC and
 * digest at every call (about 6 us; every file open derives its file key). No salt is
 * HashLen zero bytes, as RFC 5869 says (the same HMAC key as an empty one). The pseudorandom
 * key and each output block are secret: on the stack, wiped, and no digest context that held
 * them is kept. */
int scp_hkdf(const uint8_t *ikm, size_t ikm_len, const void *salt, size_t salt_len,
             const void *info, size_t info_len, uint8_t *out, size_t out_len, scp_err *err) {
    static const uint8_t zero[32];
    uint8_t prk[32], t[32];
    if (out_len > 255 * 32)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "HKDF output longer than 255 blocks");
    struct scp_buf in = {ikm, ikm_len};
    hmac_run(salt_len ? salt : zero, salt_len ? salt_len : sizeof zero, &in, 1, prk);
    uint8_t ctr = 0;
    for (size_t done = 0, tl = 0; done < out_len; tl = sizeof t) {
        ctr++;
        struct scp_buf parts[3] = {{t, tl}, {info, info_len}, {&ctr, 1}};
        hmac_run(prk, sizeof prk, parts, 3, t);
        size_t n = out_len - done < sizeof t ? out_len - done : sizeof t;
        memcpy(out + done, t, n);
        done += n;
    }
    scp_wipe(prk, sizeof prk);
    scp_wipe(t, sizeof t);
    return 0;
}

int scp_derive_key(const uint8_t key[32], const char *label, const void *ctx, size_t ctx_len,
                   uint8_t out[32], scp_err *err) {
    uint8_t info[128];
    size_t ll = strlen(label);
    if (ll + 1 + ctx_len > sizeof info)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "key derivation context too long");
    memcpy(info, label, ll);
    info[ll] = 0;
    if (ctx_len) memcpy(info + ll + 1, ctx, ctx_len);
    return scp_hkdf(key, 32, NULL, 0, info, ll + 1 + ctx_len, out, 32, err);
}

/* SHA-256 and its HMAC run on the midstate functions (sha256mid.c: OpenSSL's low-level SHA-256
 * on a context on the stack): through EVP each digest paid its provider's init, update and
 * final dispatch (about 140 ns, more than the one compression of a 48-byte journal chain
 * link), and a sqlite WAL transaction hashes about 30 short inputs (the journal's chain, the
 * manifest log's records, the volume tag's HMACs). Same digests (tests/crypto/test_hash.c). A
 * context on the stack also needs no per-thread spare for a signal handler that hashes
 * meanwhile. */

/* HMAC-SHA256 (RFC 2104). Keys longer than a block are hashed first, as RFC 2104 says. Every
 * state that held the key or the inner digest (the padded key copies, both midstates) is on
 * this stack and wiped; scp_sha256_mid_final wipes its own copy. */
static void hmac_run(const uint8_t *key, size_t key_len, const struct scp_buf *parts, size_t n,
                     uint8_t out[32]) {
    enum { BLOCK = 64 };
    uint8_t k[BLOCK] = {0}, pad[BLOCK], inner[32];
    scp_sha256_mid m;
    if (key_len > BLOCK) {
        scp_sha256_mid_init(&m);
        scp_sha256_mid_update(&m, key, key_len);
        scp_sha256_mid_final(&m, k);
    } else if (key_len) {
        memcpy(k, key, key_len);
    }
    for (int i = 0; i < BLOCK; i++) pad[i] = k[i] ^ 0x36;
    scp_sha256_mid_init(&m);
    scp_sha256_mid_update(&m, pad, BLOCK);
    for (size_t i = 0; i < n; i++) scp_sha256_mid_update(&m, parts[i].p, parts[i].n);
    scp_sha256_mid_final(&m, inner);
    for (int i = 0; i < BLOCK; i++) pad[i] = k[i] ^ 0x5c;
    scp_sha256_mid_init(&m);
    scp_sha256_mid_update(&m, pad, BLOCK);
    scp_sha256_mid_update(&m, inner, sizeof inner);
    scp_sha256_mid_final(&m, out);
    scp_wipe(&m, sizeof m);
    scp_wipe(k, sizeof k);
    scp_wipe(pad, sizeof pad);
    scp_wipe(inner, sizeof inner);
}

int scp_hmac(const uint8_t *key, size_t key_len, const struct scp_buf *parts, size_t n,
             uint8_t out[32], scp_err *err) {
    (void)err; /* (the low-level SHA-256 cannot fail: the signature keeps callers' checks) */
    hmac_run(key, key_len, parts, n, out);
    return 0;
}

void scp_sha256(const struct scp_buf *parts, size_t n, uint8_t out[32]) {
    scp_sha256_mid m;
    scp_sha256_mid_init(&m);
    for (size_t i = 0; i < n; i++) scp_sha256_mid_update(&m, parts[i].p, parts[i].n);
    scp_sha256_mid_final(&m, out);
    /* the context holds the input's last partial block: a caller may hash a secret */
    OPENSSL_cleanse(&m, sizeof m);
}

int scp_ct_cmp(const void *a, const void *b, size_t n) { return CRYPTO_memcmp(a, b, n) != 0; }

void scp_sha256_buf(const void *p, size_t n, uint8_t out[32]) {
    struct scp_buf b = {p, n};
    scp_sha256(&b, 1, out);
}

int scp_sha256_fd(int fd, uint8_t out[32], uint64_t *size) {
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    if (!h || EVP_DigestInit_ex(h, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h);
        errno = ENOMEM;
        return -1;
    }
    uint8_t buf[16384]; /* on the stack: the shield calls this in a signal handler too */
    uint64_t total = 0;
    ssize_t r;
    while ((r = pread(fd, buf, sizeof buf, (off_t)total)) != 0) {
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        EVP_DigestUpdate(h, buf, (size_t)r);
        total += (uint64_t)r;
    }
    unsigned dl = 32;
    int ok = r == 0 && EVP_DigestFinal_ex(h, out, &dl) == 1;
    EVP_MD_CTX_free(h);
    *size = total;
    if (!ok && r == 0) errno = EIO;
    return ok ? 0 : -1;
}

int scp_hmac_buf(const uint8_t *key, size_t key_len, const void *p, size_t n, uint8_t out[32],
                 scp_err *err) {
    struct scp_buf b = {p, n};
    return scp_hmac(key, key_len, &b, 1, out, err);
}

int scp_envelope_seal(const uint8_t key[32], const void *aad, size_t aadlen, const void *pt, size_t ptlen,
                  uint8_t **out, size_t *outlen, scp_err *err) {
    if (ptlen > (1u << 30)) return scp_fail(err, SCP_E_INVAL, EINVAL, "data too large to encrypt");
    uint8_t *buf = malloc(ptlen + SCP_ENVELOPE_OVERHEAD);
    if (!buf) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    if (scp_random(buf, 12, err) < 0 ||
        scp_aead_seal(key, buf, aad, aadlen, pt, ptlen, buf + 12, buf + 12 + ptlen, err) < 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    *outlen = ptlen + SCP_ENVELOPE_OVERHEAD;
    return 0;
}

int scp_envelope_open(const uint8_t key[32], const void *aad, size_t aadlen, const uint8_t *in, size_t inlen,
                  uint8_t **out, size_t *outlen, scp_err *err) {
    if (inlen < SCP_ENVELOPE_OVERHEAD || inlen > (1u << 30))
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "encrypted data is truncated");
    size_t ptlen = inlen - SCP_ENVELOPE_OVERHEAD;
    uint8_t *buf = malloc(ptlen + 1);
    if (!buf) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    if (scp_aead_open(key, in, aad, aadlen, in + 12, ptlen, in + 12 + ptlen, buf, err) < 0) {
        free(buf);
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "encrypted data failed authentication");
    }
    buf[ptlen] = 0;
    *out = buf;
    *outlen = ptlen;
    return 0;
}
