/* shield/openssl_lazy.c - OpenSSL, loaded at its first use.
 *
 * libscp-shield.so is preloaded into every image a shielded program executes; most of them
 * (what a shell or git runs) never touch a volume. Linking libssl and libcrypto would make the
 * loader map and relocate them in every image (1.3-1.8 ms of CPU per exec, bench/RESULTS.md).
 * Instead the shield defines, with hidden visibility, each OpenSSL function that its code and
 * libscp call, as a stub that jumps through a table; the table is filled by dlopen and dlsym
 * the first time any of the stubs runs (in practice: opening a volume at its first use, the
 * network section at start, a trusted-file hash). The stubs' prototypes are checked by the
 * compiler against OpenSSL's headers, and the shield is linked without libcrypto and with
 * -z defs, so a call that is not in the lists below fails to link instead of loading OpenSSL
 * at start again. The program's own OpenSSL calls are not affected: hidden definitions bind
 * only inside the shield.
 *
 * Exit order. OpenSSL registers its cleanup with atexit when it initialises, and the shield
 * commits unclosed files in its destructor, which runs after every atexit handler; the cleanup
 * must not run before that commit. When the program itself links libcrypto, the shield
 * initialises it from its constructor, as before (sh_openssl_early: the cleanup is then
 * registered before the program's own exit handlers and runs after the shield's destructor).
 * Otherwise the shield initialises OpenSSL first, at first use, with OPENSSL_INIT_NO_ATEXIT:
 * there is no cleanup at exit (the process's memory goes with it). If the program loaded and
 * initialised libcrypto itself after start (dlopen) but before the shield's first use, its
 * cleanup is already registered; the shield then registers an exit handler of its own that
 * commits before it (on_late_exit).
 *
 * Threads and fork: no lock. dlopen and dlsym are thread-safe and reference counted, so two
 * threads that reach a stub first both fill a table and publish it with a compare-and-swap
 * (the loser frees its copy); a child forked at any moment finds either no table or a whole
 * one. What dlopen does under the filters: its path calls come from the loader's code, which
 * the code filter does not trap; the mappings it makes are checked as any dlopen's when
 * trusted files are on (trusted.c; scpctl run --cas measures libssl and libcrypto with the
 * shield, SCP_SHIELD_LAZY_LIBS).
 */
/* (libscp's SHA-256 midstates use the low-level SHA-256 functions: crypto/sha256mid.c) */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/opensslv.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "shield/internal.h"

/* Every OpenSSL function the shield calls: F(return type, name, (parameters), (arguments)),
 * V(name, (parameters), (arguments)) for those returning void. Generated once from the
 * undefined symbols of the shield when it linked OpenSSL, with prototypes from the headers,
 * and those of all of libscp (the sanitized build compiles every libscp source in). */
#define OSSL_CRYPTO_FNS(F, V) \
    F(const unsigned char *, ASN1_STRING_get0_data, (const ASN1_STRING *x), (x)) \
    F(int, ASN1_STRING_length, (const ASN1_STRING *x), (x)) \
    V(BIO_clear_flags, (BIO *b, int flags), (b, flags)) \
    F(long, BIO_ctrl, (BIO *bp, int cmd, long larg, void *parg), (bp, cmd, larg, parg)) \
    F(int, BIO_free, (BIO *a), (a)) \
    F(void *, BIO_get_data, (BIO *a), (a)) \
    F(int, BIO_get_new_index, (void), ()) \
    F(BIO_METHOD *, BIO_meth_new, (int type, const char *name), (type, name)) \
    F(int, BIO_meth_set_create, (BIO_METHOD *biom, int (*create)(BIO *)), (biom, create)) \
    F(int, BIO_meth_set_ctrl, (BIO_METHOD *biom, long (*ctrl)(BIO *, int, long, void *)), (biom, ctrl)) \
    F(int, BIO_meth_set_destroy, (BIO_METHOD *biom, int (*destroy)(BIO *)), (biom, destroy)) \
    F(int, BIO_meth_set_read, (BIO_METHOD *biom, int (*read_cb)(BIO *, char *, int)), (biom, read_cb)) \
    F(int, BIO_meth_set_write, (BIO_METHOD *biom, int (*write_cb)(BIO *, const char *, int)), (biom, write_cb)) \
    F(BIO *, BIO_new, (const BIO_METHOD *type), (type)) \
    F(BIO *, BIO_new_mem_buf, (const void *buf, int len), (buf, len)) \
    V(BIO_set_data, (BIO *a, void *ptr), (a, ptr)) \
    V(BIO_set_flags, (BIO *b, int flags), (b, flags)) \
    V(BIO_set_init, (BIO *a, int init), (a, init)) \
    V(CRYPTO_free, (void *ptr, const char *file, int line), (ptr, file, line)) \
    F(int, CRYPTO_get_ex_new_index, (int class_index, long argl, void *argp, CRYPTO_EX_new *new_func, CRYPTO_EX_dup *dup_func, CRYPTO_EX_free *free_func), (class_index, argl, argp, new_func, dup_func, free_func)) \
    F(int, CRYPTO_memcmp, (const void *in_a, const void *in_b, size_t len), (in_a, in_b, len)) \
    F(void *, CRYPTO_zalloc, (size_t num, const char *file, int line), (num, file, line)) \
    V(ERR_clear_error, (void), ()) \
    V(ERR_error_string_n, (unsigned long e, char *buf, size_t len), (e, buf, len)) \
    F(unsigned long, ERR_peek_error, (void), ()) \
    F(unsigned long, ERR_peek_last_error, (void), ()) \
    F(int, EVP_CIPHER_CTX_ctrl, (EVP_CIPHER_CTX *ctx, int type, int arg, void *ptr), (ctx, type, arg, ptr)) \
    V(EVP_CIPHER_CTX_free, (EVP_CIPHER_CTX *c), (c)) \
    F(EVP_CIPHER_CTX *, EVP_CIPHER_CTX_new, (void), ()) \
    F(int, EVP_CipherInit_ex, (EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, ENGINE *impl, const unsigned char *key, const unsigned char *iv, int enc), (ctx, cipher, impl, key, iv, enc)) \
    F(int, EVP_DecryptFinal_ex, (EVP_CIPHER_CTX *ctx, unsigned char *outm, int *outl), (ctx, outm, outl)) \
    F(int, EVP_DecryptUpdate, (EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl, const unsigned char *in, int inl), (ctx, out, outl, in, inl)) \
    F(int, EVP_DecodeBlock, (unsigned char *t, const unsigned char *f, int n), (t, f, n)) \
    F(int, EVP_DigestFinal_ex, (EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s), (ctx, md, s)) \
    F(int, EVP_DigestInit_ex, (EVP_MD_CTX *ctx, const EVP_MD *type, ENGINE *impl), (ctx, type, impl)) \
    F(int, EVP_DigestUpdate, (EVP_MD_CTX *ctx, const void *d, size_t cnt), (ctx, d, cnt)) \
    F(int, EVP_EncodeBlock, (unsigned char *t, const unsigned char *f, int n), (t, f, n)) \
    F(int, EVP_EncryptFinal_ex, (EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl), (ctx, out, outl)) \
    F(int, EVP_EncryptUpdate, (EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl, const unsigned char *in, int inl), (ctx, out, outl, in, inl)) \
    V(EVP_MAC_CTX_free, (EVP_MAC_CTX *ctx), (ctx)) \
    F(EVP_MAC_CTX *, EVP_MAC_CTX_new, (EVP_MAC *mac), (mac)) \
    F(EVP_MAC *, EVP_MAC_fetch, (OSSL_LIB_CTX *libctx, const char *algorithm, const char *properties), (libctx, algorithm, properties)) \
    F(int, EVP_MAC_final, (EVP_MAC_CTX *ctx, unsigned char *out, size_t *outl, size_t outsize), (ctx, out, outl, outsize)) \
    V(EVP_MAC_free, (EVP_MAC *mac), (mac)) \
    F(int, EVP_MAC_init, (EVP_MAC_CTX *ctx, const unsigned char *key, size_t keylen, const OSSL_PARAM params[]), (ctx, key, keylen, params)) \
    F(int, EVP_MAC_update, (EVP_MAC_CTX *ctx, const unsigned char *data, size_t datalen), (ctx, data, datalen)) \
    V(EVP_MD_CTX_free, (EVP_MD_CTX *ctx), (ctx)) \
    F(EVP_MD_CTX *, EVP_MD_CTX_new, (void), ()) \
    F(EVP_MD *, EVP_MD_fetch, (OSSL_LIB_CTX *ctx, const char *algorithm, const char *properties), (ctx, algorithm, properties)) \
    F(int, EVP_PKEY_CTX_add1_hkdf_info, (EVP_PKEY_CTX *ctx, const unsigned char *info, int infolen), (ctx, info, infolen)) \
    V(EVP_PKEY_CTX_free, (EVP_PKEY_CTX *ctx), (ctx)) \
    F(EVP_PKEY_CTX *, EVP_PKEY_CTX_new_id, (int id, ENGINE *e), (id, e)) \
    F(int, EVP_PKEY_CTX_set1_hkdf_key, (EVP_PKEY_CTX *ctx, const unsigned char *key, int keylen), (ctx, key, keylen)) \
    F(int, EVP_PKEY_CTX_set1_hkdf_salt, (EVP_PKEY_CTX *ctx, const unsigned char *salt, int saltlen), (ctx, salt, saltlen)) \
    F(int, EVP_PKEY_CTX_set_hkdf_md, (EVP_PKEY_CTX *ctx, const EVP_MD *md), (ctx, md)) \
    F(int, EVP_PKEY_derive, (EVP_PKEY_CTX *ctx, unsigned char *key, size_t *keylen), (ctx, key, keylen)) \
    F(int, EVP_PKEY_derive_init, (EVP_PKEY_CTX *ctx), (ctx)) \
    F(const EVP_CIPHER *, EVP_aes_256_gcm, (void), ()) \
    F(const EVP_CIPHER *, EVP_aes_128_gcm, (void), ()) \
    F(const EVP_CIPHER *, EVP_chacha20_poly1305, (void), ()) \
    F(const EVP_MD *, EVP_sha256, (void), ()) \
    F(const EVP_MD *, EVP_sha384, (void), ()) \
    F(unsigned char *, HMAC, (const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len), (evp_md, key, key_len, d, n, md, md_len)) \
    V(GENERAL_NAMES_free, (GENERAL_NAMES *a), (a)) \
    V(OPENSSL_cleanse, (void *ptr, size_t len), (ptr, len)) \
    F(int, OPENSSL_init_crypto, (uint64_t opts, const OPENSSL_INIT_SETTINGS *settings), (opts, settings)) \
    F(int, OPENSSL_sk_num, (const OPENSSL_STACK *st), (st)) \
    F(void *, OPENSSL_sk_value, (const OPENSSL_STACK *st, int i), (st, i)) \
    F(OSSL_PARAM, OSSL_PARAM_construct_end, (void), ()) \
    F(OSSL_PARAM, OSSL_PARAM_construct_utf8_string, (const char *key, char *buf, size_t bsize), (key, buf, bsize)) \
    F(EVP_PKEY *, PEM_read_bio_PrivateKey, (BIO *out, EVP_PKEY **x, pem_password_cb *cb, void *u), (out, x, cb, u)) \
    F(X509 *, PEM_read_bio_X509, (BIO *out, X509 **x, pem_password_cb *cb, void *u), (out, x, cb, u)) \
    F(int, RAND_bytes, (unsigned char *buf, int num), (buf, num)) \
    F(int, SHA256_Final, (unsigned char *md, SHA256_CTX *c), (md, c)) \
    F(int, SHA256_Init, (SHA256_CTX *c), (c)) \
    F(int, SHA256_Update, (SHA256_CTX *c, const void *data, size_t len), (c, data, len)) \
    F(X509 *, X509_STORE_CTX_get_current_cert, (const X509_STORE_CTX *ctx), (ctx)) \
    F(int, X509_STORE_CTX_get_error_depth, (const X509_STORE_CTX *ctx), (ctx)) \
    F(void *, X509_STORE_CTX_get_ex_data, (const X509_STORE_CTX *ctx, int idx), (ctx, idx)) \
    V(X509_STORE_CTX_set_error, (X509_STORE_CTX *ctx, int s), (ctx, s)) \
    F(int, X509_STORE_add_cert, (X509_STORE *ctx, X509 *x), (ctx, x)) \
    F(int, X509_VERIFY_PARAM_set1_ip_asc, (X509_VERIFY_PARAM *param, const char *ipasc), (param, ipasc)) \
    F(int, X509_check_private_key, (const X509 *x509, const EVP_PKEY *pkey), (x509, pkey)) \
    V(X509_free, (X509 *a), (a)) \
    F(void *, X509_get_ext_d2i, (const X509 *x, int nid, int *crit, int *idx), (x, nid, crit, idx)) \
    F(int, X509_up_ref, (X509 *x), (x)) \
    F(const char *, X509_verify_cert_error_string, (long n), (n))

#define OSSL_SSL_FNS(F, V) \
    F(int, OPENSSL_init_ssl, (uint64_t opts, const OPENSSL_INIT_SETTINGS *settings), (opts, settings)) \
    F(int, SSL_CTX_check_private_key, (const SSL_CTX *ctx), (ctx)) \
    F(long, SSL_CTX_ctrl, (SSL_CTX *ctx, int cmd, long larg, void *parg), (ctx, cmd, larg, parg)) \
    V(SSL_CTX_free, (SSL_CTX *ctx), (ctx)) \
    F(X509_STORE *, SSL_CTX_get_cert_store, (const SSL_CTX *ctx), (ctx)) \
    F(SSL_CTX *, SSL_CTX_new, (const SSL_METHOD *meth), (meth)) \
    V(SSL_CTX_sess_set_new_cb, (SSL_CTX *ctx, int (*new_session_cb)(struct ssl_st *ssl, SSL_SESSION *sess)), (ctx, new_session_cb)) \
    F(uint64_t, SSL_CTX_set_options, (SSL_CTX *ctx, uint64_t op), (ctx, op)) \
    F(int, SSL_CTX_set_session_id_context, (SSL_CTX *ctx, const unsigned char *sid_ctx, unsigned int sid_ctx_len), (ctx, sid_ctx, sid_ctx_len)) \
    V(SSL_CTX_set_verify, (SSL_CTX *ctx, int mode, SSL_verify_cb callback), (ctx, mode, callback)) \
    V(SSL_CTX_set_keylog_callback, (SSL_CTX *ctx, SSL_CTX_keylog_cb_func cb), (ctx, cb)) \
    F(uint16_t, SSL_CIPHER_get_protocol_id, (const SSL_CIPHER *c), (c)) \
    F(const SSL_CIPHER *, SSL_get_current_cipher, (const SSL *s), (s)) \
    F(int, SSL_version, (const SSL *ssl), (ssl)) \
    V(SSL_set_shutdown, (SSL *ssl, int mode), (ssl, mode)) \
    F(int, SSL_CTX_use_PrivateKey, (SSL_CTX *ctx, EVP_PKEY *pkey), (ctx, pkey)) \
    F(int, SSL_CTX_use_certificate, (SSL_CTX *ctx, X509 *x), (ctx, x)) \
    V(SSL_SESSION_free, (SSL_SESSION *ses), (ses)) \
    F(int, SSL_SESSION_is_resumable, (const SSL_SESSION *s), (s)) \
    F(int, SSL_SESSION_up_ref, (SSL_SESSION *ses), (ses)) \
    F(long, SSL_ctrl, (SSL *ssl, int cmd, long larg, void *parg), (ssl, cmd, larg, parg)) \
    F(int, SSL_do_handshake, (SSL *s), (s)) \
    V(SSL_free, (SSL *ssl), (ssl)) \
    F(X509_VERIFY_PARAM *, SSL_get0_param, (SSL *ssl), (ssl)) \
    F(int, SSL_get_error, (const SSL *s, int ret_code), (s, ret_code)) \
    F(void *, SSL_get_ex_data, (const SSL *ssl, int idx), (ssl, idx)) \
    F(int, SSL_get_ex_data_X509_STORE_CTX_idx, (void), ()) \
    F(long, SSL_get_verify_result, (const SSL *ssl), (ssl)) \
    F(int, SSL_has_pending, (const SSL *s), (s)) \
    F(SSL *, SSL_new, (SSL_CTX *ctx), (ctx)) \
    F(int, SSL_peek_ex, (SSL *ssl, void *buf, size_t num, size_t *readbytes), (ssl, buf, num, readbytes)) \
    F(int, SSL_pending, (const SSL *s), (s)) \
    F(int, SSL_read_ex, (SSL *ssl, void *buf, size_t num, size_t *readbytes), (ssl, buf, num, readbytes)) \
    F(int, SSL_set1_host, (SSL *s, const char *hostname), (s, hostname)) \
    V(SSL_set_accept_state, (SSL *s), (s)) \
    V(SSL_set_bio, (SSL *s, BIO *rbio, BIO *wbio), (s, rbio, wbio)) \
    V(SSL_set_connect_state, (SSL *s), (s)) \
    F(int, SSL_set_ex_data, (SSL *ssl, int idx, void *data), (ssl, idx, data)) \
    F(int, SSL_set_session, (SSL *to, SSL_SESSION *session), (to, session)) \
    F(int, SSL_shutdown, (SSL *s), (s)) \
    F(int, SSL_use_certificate, (SSL *ssl, X509 *x), (ssl, x)) \
    F(int, SSL_write_ex, (SSL *s, const void *buf, size_t num, size_t *written), (s, buf, num, written)) \
    F(const SSL_METHOD *, TLS_client_method, (void), ()) \
    F(const SSL_METHOD *, TLS_server_method, (void), ())


/* the sonames (scp/shield.h, where a measurement finds them too) are those of these headers */
_Static_assert(OPENSSL_VERSION_MAJOR == 3, "SCP_SHIELD_LIBSSL and SCP_SHIELD_LIBCRYPTO name OpenSSL 3");
#define LIBCRYPTO SCP_SHIELD_LIBCRYPTO
#define LIBSSL SCP_SHIELD_LIBSSL

#define FIELD(ret, name, params, args) ret(*name) params;
#define VFIELD(name, params, args) void(*name) params;
struct crypto_fns {
    OSSL_CRYPTO_FNS(FIELD, VFIELD)
};
struct ssl_fns {
    OSSL_SSL_FNS(FIELD, VFIELD)
};

static struct crypto_fns *crypto_tab;
static struct ssl_fns *ssl_tab;
static void (*late_exit_commit)(void);
static struct crypto_fns *crypto_load(int early);
static struct ssl_fns *ssl_load(void);
static inline const struct crypto_fns *libcrypto(void) {
    const struct crypto_fns *t = __atomic_load_n(&crypto_tab, __ATOMIC_ACQUIRE);
    return __builtin_expect(t != NULL, 1) ? t : crypto_load(0);
}
static inline const struct ssl_fns *libssl(void) {
    const struct ssl_fns *t = __atomic_load_n(&ssl_tab, __ATOMIC_ACQUIRE);
    return __builtin_expect(t != NULL, 1) ? t : ssl_load();
}

/* dlsym into a function pointer: POSIX guarantees the conversion, ISO C does not name it */
#define SYM(ret, name, params, args) \
    if (!(t->name = (ret(*) params)dlsym(h, #name))) return #name;
#define VSYM(name, params, args) SYM(void, name, params, args)
static const char *crypto_syms(void *h, struct crypto_fns *t) {
    OSSL_CRYPTO_FNS(SYM, VSYM)
    return NULL;
}
static const char *ssl_syms(void *h, struct ssl_fns *t) {
    OSSL_SSL_FNS(SYM, VSYM)
    return NULL;
}

__attribute__((noreturn)) static void cannot_load(const char *lib, const char *what) {
    /* a stub has no way to report an error of its own: refuse to go on without the crypto
     * that protects the volume's bytes, loudly, rather than return something that looks valid */
    char buf[512];
    int n = snprintf(buf, sizeof buf, "scp-shield: cannot load %s (%s); stopping the program\n", lib, what);
    if (n > 0) {
        ssize_t w = write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
        (void)w;
    }
    _exit(126);
}

static void on_late_exit(void) {
    if (late_exit_commit) late_exit_commit();
}

/* Fill and publish the libcrypto table. early: from the constructor, and only if the program
 * already has libcrypto (returns NULL otherwise). */
static struct crypto_fns *crypto_load(int early) {
    int had = sh_libc_dlopen(LIBCRYPTO, RTLD_NOW | RTLD_NOLOAD) != NULL;
    if (early && !had) return NULL;
    void *h = sh_libc_dlopen(LIBCRYPTO, RTLD_NOW | RTLD_LOCAL);
    if (!h) cannot_load(LIBCRYPTO, dlerror());
    struct crypto_fns *t = calloc(1, sizeof *t);
    if (!t) cannot_load(LIBCRYPTO, "out of memory");
    const char *missing = crypto_syms(h, t);
    if (missing) cannot_load(LIBCRYPTO, missing);
    /* any option makes OpenSSL do its base initialisation, which decides about the cleanup
     * once (see the top of this file); ASYNC only creates two thread-local keys */
    t->OPENSSL_init_crypto(early || had ? OPENSSL_INIT_ASYNC : OPENSSL_INIT_ASYNC | OPENSSL_INIT_NO_ATEXIT, NULL);
    struct crypto_fns *none = NULL;
    if (!__atomic_compare_exchange_n(&crypto_tab, &none, t, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        free(t);
        return none;
    }
    if (had && !early && late_exit_commit) atexit(on_late_exit);
    sh_trace("%s loaded (%s)", LIBCRYPTO, early ? "the program's, at start" : had ? "the program's, at first use" : "at first use");
    return t;
}

static struct ssl_fns *ssl_load(void) {
    libcrypto(); /* libcrypto first: its initialisation decides about the exit cleanup */
    void *h = sh_libc_dlopen(LIBSSL, RTLD_NOW | RTLD_LOCAL);
    if (!h) cannot_load(LIBSSL, dlerror());
    struct ssl_fns *t = calloc(1, sizeof *t);
    if (!t) cannot_load(LIBSSL, "out of memory");
    const char *missing = ssl_syms(h, t);
    if (missing) cannot_load(LIBSSL, missing);
    struct ssl_fns *none = NULL;
    if (!__atomic_compare_exchange_n(&ssl_tab, &none, t, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        free(t);
        return none;
    }
    sh_trace("%s loaded at first use", LIBSSL);
    return t;
}

void sh_openssl_early(void (*commit_at_exit)(void)) {
    late_exit_commit = commit_at_exit;
    if (!__atomic_load_n(&crypto_tab, __ATOMIC_ACQUIRE)) crypto_load(1);
}

/* ---- the stubs -------------------------------------------------------------------------- */

#define CRYPTO_STUB(ret, name, params, args) \
    ret name params { return libcrypto()->name args; }
#define CRYPTO_VSTUB(name, params, args) \
    void name params { libcrypto()->name args; }
#define SSL_STUB(ret, name, params, args) \
    ret name params { return libssl()->name args; }
#define SSL_VSTUB(name, params, args) \
    void name params { libssl()->name args; }
OSSL_CRYPTO_FNS(CRYPTO_STUB, CRYPTO_VSTUB)
OSSL_SSL_FNS(SSL_STUB, SSL_VSTUB)
