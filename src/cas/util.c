/* cas/util.c - see util.h. */
#include "cas/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

void cas_hex(const uint8_t *in, size_t n, char *out) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int cas_unhex(const char *hex, uint8_t *out, size_t n) {
    if (!hex || strlen(hex) != 2 * n) return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

char *cas_b64enc(const uint8_t *in, size_t n) {
    if (n > (1u << 28)) return NULL;
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!out) return NULL;
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    return out;
}

uint8_t *cas_b64dec(const char *in, size_t *out_len) {
    size_t n = strlen(in);
    if (n % 4 != 0 || n > (1u << 28)) return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                 c == '/' || (c == '=' && i >= n - 2);
        if (!ok) return NULL;
    }
    if (n >= 2 && in[n - 2] == '=' && in[n - 1] != '=') return NULL;
    uint8_t *out = malloc(n / 4 * 3 + 1);
    if (!out) return NULL;
    int r = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (r < 0) {
        free(out);
        return NULL;
    }
    size_t len = (size_t)r;
    if (n >= 1 && in[n - 1] == '=') len--;
    if (n >= 2 && in[n - 2] == '=') len--;
    *out_len = len;
    return out;
}

int cas_random(void *buf, size_t n, scp_err *err) {
    if (RAND_bytes(buf, (int)n) != 1) return scp_fail(err, SCP_E_CRYPTO, EIO, "the random generator failed");
    return 0;
}

void cas_sha256(const void *data, size_t n, uint8_t out[32]) {
    unsigned int len = 32;
    EVP_Digest(data, n, out, &len, EVP_sha256(), NULL);
}

int cas_hmac_sha256(const uint8_t *key, size_t keylen, const void *data, size_t n, uint8_t out[32],
                    scp_err *err) {
    unsigned int len = 32;
    if (!HMAC(EVP_sha256(), key, (int)keylen, data, n, out, &len))
        return scp_fail(err, SCP_E_CRYPTO, EIO, "HMAC-SHA256 failed");
    return 0;
}

int cas_hkdf(const uint8_t *ikm, size_t ikmlen, const void *salt, size_t saltlen, const void *info,
             size_t infolen, uint8_t *out, size_t outlen, scp_err *err) {
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    int ok = c && EVP_PKEY_derive_init(c) > 0 && EVP_PKEY_CTX_set_hkdf_md(c, EVP_sha256()) > 0 &&
             EVP_PKEY_CTX_set1_hkdf_key(c, ikm, (int)ikmlen) > 0 &&
             (saltlen == 0 || EVP_PKEY_CTX_set1_hkdf_salt(c, salt, (int)saltlen) > 0) &&
             EVP_PKEY_CTX_add1_hkdf_info(c, info, (int)infolen) > 0 && EVP_PKEY_derive(c, out, &outlen) > 0;
    EVP_PKEY_CTX_free(c);
    if (!ok) return scp_fail(err, SCP_E_CRYPTO, EIO, "HKDF failed");
    return 0;
}

int cas_aead_seal(const uint8_t key[32], const void *aad, size_t aadlen, const void *pt, size_t ptlen,
                  uint8_t **out, size_t *outlen, scp_err *err) {
    if (ptlen > (1u << 30)) return scp_fail(err, SCP_E_INVAL, EINVAL, "data too large to encrypt");
    uint8_t *buf = malloc(ptlen + CAS_AEAD_OVERHEAD);
    if (!buf) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    if (cas_random(buf, 12, err) < 0) {
        free(buf);
        return -1;
    }
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l = 0, ok = c && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, buf) == 1 &&
                    (aadlen == 0 || EVP_EncryptUpdate(c, NULL, &l, aad, (int)aadlen) == 1) &&
                    EVP_EncryptUpdate(c, buf + 12, &l, pt, (int)ptlen) == 1 &&
                    EVP_EncryptFinal_ex(c, buf + 12 + l, &l) == 1 &&
                    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, buf + 12 + ptlen) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        free(buf);
        return scp_fail(err, SCP_E_CRYPTO, EIO, "AES-GCM encryption failed");
    }
    *out = buf;
    *outlen = ptlen + CAS_AEAD_OVERHEAD;
    return 0;
}

int cas_aead_open(const uint8_t key[32], const void *aad, size_t aadlen, const uint8_t *in, size_t inlen,
                  uint8_t **out, size_t *outlen, scp_err *err) {
    if (inlen < CAS_AEAD_OVERHEAD || inlen > (1u << 30))
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "encrypted data is truncated");
    size_t ptlen = inlen - CAS_AEAD_OVERHEAD;
    uint8_t *buf = malloc(ptlen + 1);
    if (!buf) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    uint8_t tag[16];
    memcpy(tag, in + 12 + ptlen, 16);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l = 0, ok = c && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, in) == 1 &&
                    (aadlen == 0 || EVP_DecryptUpdate(c, NULL, &l, aad, (int)aadlen) == 1) &&
                    EVP_DecryptUpdate(c, buf, &l, in + 12, (int)ptlen) == 1 &&
                    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 &&
                    EVP_DecryptFinal_ex(c, buf + l, &l) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        OPENSSL_cleanse(buf, ptlen);
        free(buf);
        return scp_fail(err, SCP_E_INTEGRITY, EIO, "encrypted data failed authentication");
    }
    buf[ptlen] = 0;
    *out = buf;
    *outlen = ptlen;
    return 0;
}

int cas_read_file(const char *path, size_t max, char **out, size_t *len, scp_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return scp_fail_errno(err, "cannot open '%s'", path);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        close(fd);
        return scp_fail(err, SCP_E_INVAL, EINVAL, "'%s' is not a regular file of at most %zu bytes", path, max);
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return scp_fail_errno(err, "cannot read '%s'", path);
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return 0;
}

int cas_write_file(const char *path, const void *data, size_t len, unsigned mode, scp_err *err) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "path too long: '%s'", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) return scp_fail_errno(err, "cannot create '%s'", tmp);
    if (fchmod(fd, mode) < 0) goto fail;
    const uint8_t *p = data;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) goto fail;
        off += (size_t)w;
    }
    if (fsync(fd) < 0) goto fail;
    close(fd);
    if (rename(tmp, path) < 0) {
        unlink(tmp);
        return scp_fail_errno(err, "cannot rename to '%s'", path);
    }
    return 0;
fail:
    scp_fail_errno(err, "cannot write '%s'", tmp);
    close(fd);
    unlink(tmp);
    return -1;
}

int cas_memeq(const void *a, const void *b, size_t n) { return CRYPTO_memcmp(a, b, n) == 0; }
