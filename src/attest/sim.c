/* attest/sim.c - the sim TEE backend: a platform Ed25519 key as the quoting service, and the
 * measurement of a program (scp/attest.h). Memory is not protected in this mode. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/log.h"
#include "common/bytes.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "crypto/parallel.h"
#include "scp/attest.h"

static const char SIM_CONTEXT[] = "SCP-EVIDENCE-SIM-v1"; /* signed with its NUL */

void scp_sim_warn(void) {
    static int warned;
    if (__atomic_exchange_n(&warned, 1, __ATOMIC_SEQ_CST)) return;
    scp_log(SCP_LOG_WARN, "scp", "WARNING: 'sim' TEE backend: memory is NOT protected, and the platform key is a file "
                    "that root can read. Use it for development and tests only.");
}

int scp_sim_platform_create(const char *path, scp_err *err) {
    struct stat st;
    if (lstat(path, &st) == 0) return scp_fail(err, SCP_E_EXIST, EEXIST, "'%s' exists; refusing to overwrite it", path);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!k) return scp_fail(err, SCP_E_CRYPTO, EIO, "cannot generate an Ed25519 key");
    BIO *b = BIO_new(BIO_s_secmem());
    int r = -1;
    if (b && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        r = scp_write_file_atomic(path, p, (size_t)n, 0600, err);
    } else {
        scp_fail(err, SCP_E_CRYPTO, EIO, "cannot encode the platform key");
    }
    BIO_free(b);
    EVP_PKEY_free(k);
    return r;
}

/* The parsed key is cached per process (PEM decoding costs ~0.5 ms with OpenSSL 3): the file
 * is opened and checked (mode) on every use, and re-read when its identity or mtime changes. */
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char path[4096];
    dev_t dev;
    ino_t ino;
    struct timespec mtime;
    off_t size;
    EVP_PKEY *key;
} cache;

static EVP_PKEY *load_platform_key(const char *path, scp_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        scp_fail_errno(err, "cannot open platform key '%s'", path);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        close(fd);
        scp_fail(err, SCP_E_KEY, EPERM, "platform key '%s' must be a regular file with mode 0600", path);
        return NULL;
    }
    pthread_mutex_lock(&cache_mu);
    if (cache.key && strcmp(cache.path, path) == 0 && cache.dev == st.st_dev && cache.ino == st.st_ino &&
        cache.size == st.st_size && cache.mtime.tv_sec == st.st_mtim.tv_sec &&
        cache.mtime.tv_nsec == st.st_mtim.tv_nsec) {
        EVP_PKEY *k = cache.key;
        EVP_PKEY_up_ref(k);
        pthread_mutex_unlock(&cache_mu);
        close(fd);
        return k;
    }
    pthread_mutex_unlock(&cache_mu);
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        scp_fail_errno(err, "cannot read '%s'", path);
        return NULL;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!k || EVP_PKEY_get_id(k) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(k);
        scp_fail(err, SCP_E_KEY, EINVAL, "'%s' is not an Ed25519 platform key", path);
        return NULL;
    }
    if (strlen(path) < sizeof cache.path) {
        pthread_mutex_lock(&cache_mu);
        EVP_PKEY_free(cache.key);
        strcpy(cache.path, path);
        cache.dev = st.st_dev;
        cache.ino = st.st_ino;
        cache.size = st.st_size;
        cache.mtime = st.st_mtim;
        EVP_PKEY_up_ref(k);
        cache.key = k;
        pthread_mutex_unlock(&cache_mu);
    }
    return k;
}

int scp_sim_platform_pubkey(const char *path, uint8_t pub[32], uint8_t id[32], scp_err *err) {
    EVP_PKEY *k = load_platform_key(path, err);
    if (!k) return -1;
    size_t n = 32;
    int ok = EVP_PKEY_get_raw_public_key(k, pub, &n) == 1 && n == 32;
    EVP_PKEY_free(k);
    if (!ok) return scp_fail(err, SCP_E_CRYPTO, EIO, "cannot read the platform public key");
    scp_sha256_buf(pub, 32, id);
    return 0;
}

static size_t put_field(uint8_t *p, uint16_t type, const uint8_t *v, uint16_t len) {
    scp_put_u16(p, type);
    scp_put_u16(p + 2, len);
    memcpy(p + 4, v, len);
    return 4u + len;
}

int scp_sim_evidence(const char *platform_key_path, const uint8_t nonce[32], const uint8_t pubkey[32],
                     const uint8_t measurement[32], uint8_t **out, size_t *out_len, scp_err *err) {
    return scp_sim_evidence_ik(platform_key_path, nonce, pubkey, measurement, NULL, out, out_len, err);
}

int scp_sim_evidence_ik(const char *platform_key_path, const uint8_t nonce[32], const uint8_t pubkey[32],
                        const uint8_t measurement[32], const uint8_t *instance_key, uint8_t **out, size_t *out_len,
                        scp_err *err) {
    EVP_PKEY *k = load_platform_key(platform_key_path, err);
    if (!k) return -1;
    uint8_t pub[32], id[32];
    size_t pl = 32;
    if (EVP_PKEY_get_raw_public_key(k, pub, &pl) != 1) {
        EVP_PKEY_free(k);
        return scp_fail(err, SCP_E_CRYPTO, EIO, "cannot read the platform public key");
    }
    scp_sha256_buf(pub, 32, id);
    size_t total = 12 + 4 * 36 + (instance_key ? 4 + SCP_INSTANCE_KEY_LEN : 0) + 4 + 64;
    uint8_t *buf = malloc(sizeof SIM_CONTEXT + total);
    if (!buf) {
        EVP_PKEY_free(k);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    uint8_t *ev = buf + sizeof SIM_CONTEXT; /* context prefix lives right before, for signing */
    memcpy(buf, SIM_CONTEXT, sizeof SIM_CONTEXT);
    memcpy(ev, "SCPE", 4);
    scp_put_u16(ev + 4, SCP_EVIDENCE_VERSION);
    scp_put_u16(ev + 6, SCP_TEE_SIM);
    scp_put_u32(ev + 8, (uint32_t)(total - 12));
    size_t off = 12;
    off += put_field(ev + off, SCP_EV_NONCE, nonce, 32);
    off += put_field(ev + off, SCP_EV_PUBKEY, pubkey, 32);
    off += put_field(ev + off, SCP_EV_MEASUREMENT, measurement, 32);
    off += put_field(ev + off, SCP_EV_PLATFORM, id, 32);
    if (instance_key) off += put_field(ev + off, SCP_EV_INSTANCE_KEY, instance_key, SCP_INSTANCE_KEY_LEN);
    scp_put_u16(ev + off, SCP_EV_SIGNATURE);
    scp_put_u16(ev + off + 2, 64);
    size_t siglen = 64;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestSignInit(md, NULL, NULL, NULL, k) == 1 &&
             EVP_DigestSign(md, ev + off + 4, &siglen, buf, sizeof SIM_CONTEXT + off) == 1 && siglen == 64;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(k);
    if (!ok) {
        free(buf);
        return scp_fail(err, SCP_E_CRYPTO, EIO, "cannot sign the evidence");
    }
    memmove(buf, ev, total);
    *out = buf;
    *out_len = total;
    return 0;
}

int scp_sim_verify(const scp_evidence *ev, const uint8_t platform_pub[32], scp_err *err) {
    if (ev->backend != SCP_TEE_SIM) return scp_fail(err, SCP_E_INVAL, EINVAL, "evidence is not from the sim backend");
    uint8_t id[32];
    scp_sha256_buf(platform_pub, 32, id);
    if (!!scp_ct_cmp(id, ev->platform_id, 32))
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "evidence names another platform than the key");
    if (ev->signature_len != 64) return scp_fail(err, SCP_E_INTEGRITY, EIO, "sim signature must be 64 bytes");
    EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, platform_pub, 32);
    if (!k) return scp_fail(err, SCP_E_CRYPTO, EIO, "bad platform public key");
    uint8_t *msg = malloc(sizeof SIM_CONTEXT + ev->signed_len);
    int ok = 0;
    if (msg) {
        memcpy(msg, SIM_CONTEXT, sizeof SIM_CONTEXT);
        memcpy(msg + sizeof SIM_CONTEXT, ev->signed_part, ev->signed_len);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        ok = md && EVP_DigestVerifyInit(md, NULL, NULL, NULL, k) == 1 &&
             EVP_DigestVerify(md, ev->signature, 64, msg, sizeof SIM_CONTEXT + ev->signed_len) == 1;
        EVP_MD_CTX_free(md);
        free(msg);
    }
    EVP_PKEY_free(k);
    if (!ok) return scp_fail(err, SCP_E_INTEGRITY, EIO, "the evidence signature does not verify");
    return 0;
}

/* Hash an open file from offset 0 (pread: the descriptor's position does not matter). */
/* the shield checks trusted files with the same function (crypto.h) */
static int hash_fd(int fd, uint8_t d[32], uint64_t *size) { return scp_sha256_fd(fd, d, size); }

struct measure_job {
    const int *fds;
    uint8_t (*digest)[32];
    uint64_t *size;
    int *errno_of; /* per file: 0, or the errno of its failure */
};

static int measure_range(void *ctx, size_t begin, size_t end) {
    struct measure_job *j = ctx;
    int rc = 0;
    for (size_t i = begin; i < end; i++)
        if (hash_fd(j->fds[i], j->digest[i], &j->size[i]) < 0) {
            j->errno_of[i] = errno ? errno : EIO;
            rc = -1;
        }
    return rc;
}

int scp_attest_hash_fds(const int *fds, size_t n_fds, uint8_t (*digest)[32], uint64_t *size, scp_err *err) {
    /* files are hashed on several cores (each file whole on one) */
    struct measure_job j = {fds, digest, size, calloc(n_fds ? n_fds : 1, sizeof(int))};
    if (!j.errno_of) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    int rc = 0;
    if (scp_parallel_for(n_fds, 2, measure_range, &j) < 0) {
        rc = scp_fail(err, SCP_E_CRYPTO, EIO, "SHA-256 failed");
        for (size_t i = 0; i < n_fds; i++)
            if (j.errno_of[i]) {
                scp_fail(err, SCP_E_SYS, j.errno_of[i], "cannot read file %zu of %zu to measure it: %s", i + 1,
                         n_fds, strerror(j.errno_of[i]));
                break;
            }
    }
    free(j.errno_of);
    return rc;
}

int scp_attest_measure_fold(const uint8_t (*digest)[32], const uint64_t *size, size_t n, const void *config,
                            size_t config_len, uint8_t out[32], scp_err *err) {
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    if (!m || EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(m);
        return scp_fail(err, SCP_E_CRYPTO, EIO, "SHA-256 failed");
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t sz[8];
        scp_put_u64(sz, size[i]);
        EVP_DigestUpdate(m, "file", 4);
        EVP_DigestUpdate(m, sz, 8);
        EVP_DigestUpdate(m, digest[i], 32);
    }
    uint8_t d[32], sz[8];
    scp_sha256_buf(config ? config : "", config_len, d);
    scp_put_u64(sz, config_len);
    EVP_DigestUpdate(m, "config", 6);
    EVP_DigestUpdate(m, sz, 8);
    EVP_DigestUpdate(m, d, 32);
    unsigned dl = 32;
    EVP_DigestFinal_ex(m, out, &dl);
    EVP_MD_CTX_free(m);
    return 0;
}

int scp_attest_measure_fds(const int *fds, size_t n_fds, const void *config, size_t config_len, uint8_t out[32],
                           scp_err *err) {
    uint8_t (*digest)[32] = calloc(n_fds ? n_fds : 1, 32);
    uint64_t *size = calloc(n_fds ? n_fds : 1, sizeof *size);
    int rc = !digest || !size ? scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory")
             : scp_attest_hash_fds(fds, n_fds, digest, size, err) < 0
                 ? -1
                 : scp_attest_measure_fold((const uint8_t (*)[32])digest, size, n_fds, config, config_len, out, err);
    free(digest);
    free(size);
    return rc;
}

int scp_attest_measure(const char *const *files, size_t n_files, const void *config, size_t config_len,
                       uint8_t out[32], scp_err *err) {
    int *fds = calloc(n_files ? n_files : 1, sizeof *fds);
    if (!fds) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    size_t opened = 0;
    int rc = -1;
    for (; opened < n_files; opened++) {
        fds[opened] = open(files[opened], O_RDONLY | O_CLOEXEC);
        if (fds[opened] < 0) {
            scp_fail_errno(err, "cannot open '%s' to measure it", files[opened]);
            goto out;
        }
    }
    rc = scp_attest_measure_fds(fds, n_files, config, config_len, out, err);
out:
    for (size_t i = 0; i < opened; i++) close(fds[i]);
    free(fds);
    return rc;
}
