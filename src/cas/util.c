/* cas/util.c - see util.h. */
#include "cas/util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

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

int cas_aead_seal(const uint8_t key[32], const void *aad, size_t aadlen, const void *pt, size_t ptlen,
                  uint8_t **out, size_t *outlen, scp_err *err) {
    if (ptlen > (1u << 30)) return scp_fail(err, SCP_E_INVAL, EINVAL, "data too large to encrypt");
    uint8_t *buf = malloc(ptlen + CAS_AEAD_OVERHEAD);
    if (!buf) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    if (scp_random(buf, 12, err) < 0 ||
        scp_aead_seal(key, buf, aad, aadlen, pt, ptlen, buf + 12, buf + 12 + ptlen, err) < 0) {
        free(buf);
        return -1;
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
    if (scp_aead_open(key, in, aad, aadlen, in + 12, ptlen, in + 12 + ptlen, buf, err) < 0) {
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

char *cas_escape_text(const char *in, char *out, size_t outsz) {
    assert(outsz > 0);
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        char e[12];
        int n;
        if (*p == '\\') n = snprintf(e, sizeof e, "\\\\");
        else if (*p == '\n') n = snprintf(e, sizeof e, "\\n");
        else if (*p == '\t') n = snprintf(e, sizeof e, "\\t");
        else if (*p == '\r') n = snprintf(e, sizeof e, "\\r");
        else if (*p < 0x20 || *p == 0x7f) n = snprintf(e, sizeof e, "\\x%02x", *p);
        else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) n = snprintf(e, sizeof e, "\\xc2\\x%02x", *++p);
        else n = snprintf(e, sizeof e, "%c", *p);
        if (o + (size_t)n >= outsz) break;
        memcpy(out + o, e, (size_t)n);
        o += (size_t)n;
    }
    out[o] = 0;
    return out;
}
