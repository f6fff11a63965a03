/* attest/tsm.c - the tdx and snp backends: reports from the kernel's configfs-tsm interface
 * (Documentation/ABI/testing/configfs-tsm), turned into SCP evidence (scp/attest.h).
 *
 * An entry /sys/kernel/config/tsm/report/NAME (made with mkdir, removed with rmdir) has
 *   provider    (ro) "tdx_guest" or "sev_guest": which TEE answers
 *   inblob      (wo) the 64 bytes of report data the hardware signs
 *   outblob     (ro) the report (SEV-SNP) or quote (TDX), made when it is read
 *   auxblob     (ro) SEV-SNP: the certificate table (VCEK, ASK, ARK) the host supplied
 *   generation  (ro) counts the writes to inblob and the other inputs
 * The entry is shared by whoever can write configfs: the generation read before our write and
 * after our reads must differ by exactly our one write, or another process wrote in between
 * and the outblob may answer its inblob (refused; the caller tries again).
 *
 * SCP_TSM_REPORT (tests only) names an existing entry to use instead of making one: the tests
 * run a fake provider (a directory populated by a script from recorded or synthetic evidence).
 * It does not weaken anything: CAS verifies the report's signature to AMD's or Intel's root, and
 * whoever controls this process's environment controls the host anyway. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "common/bytes.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest.h"
#include "scp/attest_hw.h"

#define TSM_REPORT_ROOT "/sys/kernel/config/tsm/report"
#define TSM_BLOB_MAX ((size_t)64 * 1024)

/* Read an attribute to its end (configfs attributes report no useful size). */
static int read_attr(int dfd, const char *name, size_t max, uint8_t **out, size_t *len, scp_err *err) {
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return scp_fail_errno(err, "configfs-tsm: cannot open '%s'", name);
    size_t cap = 4096, n = 0;
    uint8_t *b = calloc(1, cap);
    for (;;) {
        if (!b) {
            close(fd);
            return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(b);
            close(fd);
            errno = e;
            return scp_fail_errno(err, "configfs-tsm: cannot read '%s'", name);
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n == cap) {
            if (cap >= max) {
                free(b);
                close(fd);
                return scp_fail(err, SCP_E_FORMAT, EFBIG, "configfs-tsm: '%s' is larger than %zu bytes", name, max);
            }
            uint8_t *nb = realloc(b, cap * 2);
            if (!nb) free(b);
            b = nb;
            cap *= 2;
        }
    }
    close(fd);
    *out = b;
    *len = n;
    return 0;
}

static int read_generation(int dfd, unsigned long long *g, scp_err *err) {
    uint8_t *b;
    size_t n;
    if (read_attr(dfd, "generation", 64, &b, &n, err) < 0) return -1;
    char s[32];
    size_t l = n < sizeof s - 1 ? n : sizeof s - 1;
    memcpy(s, b, l);
    s[l] = 0;
    free(b);
    char *end;
    errno = 0;
    *g = strtoull(s, &end, 10);
    if (end == s || errno || (*end && *end != '\n'))
        return scp_fail(err, SCP_E_FORMAT, EINVAL, "configfs-tsm: 'generation' is not a number");
    return 0;
}

/* The provider's backend: SCP_TEE_TDX, SCP_TEE_SNP, or 0 (unknown; name kept in provider). */
static int read_provider(int dfd, char provider[32], scp_err *err) {
    uint8_t *b;
    size_t n;
    if (read_attr(dfd, "provider", 64, &b, &n, err) < 0) return -1;
    while (n && (b[n - 1] == '\n' || b[n - 1] == 0)) n--;
    snprintf(provider, 32, "%.*s", (int)(n < 31 ? n : 31), (const char *)b);
    free(b);
    for (char *p = provider; *p; p++)
        if (*p < 0x20 || *p > 0x7e) *p = '?';
    return strcmp(provider, "tdx_guest") == 0 ? SCP_TEE_TDX : strcmp(provider, "sev_guest") == 0 ? SCP_TEE_SNP : 0;
}

/* Open the report entry: $SCP_TSM_REPORT, or a new one under TSM_REPORT_ROOT (made[] gets its
 * path, to rmdir). */
static int open_entry(char made[PATH_MAX], scp_err *err) {
    made[0] = 0;
    const char *fixed = getenv("SCP_TSM_REPORT");
    if (fixed && *fixed) {
        int fd = open(fixed, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) scp_fail_errno(err, "configfs-tsm: cannot open SCP_TSM_REPORT '%s'", fixed);
        return fd;
    }
    uint8_t r[8];
    char hex[17];
    if (RAND_bytes(r, sizeof r) != 1) return scp_fail(err, SCP_E_CRYPTO, EIO, "no randomness");
    scp_hex(r, sizeof r, hex);
    snprintf(made, PATH_MAX, "%s/scp-%ld-%s", TSM_REPORT_ROOT, (long)getpid(), hex);
    if (mkdir(made, 0700) < 0) {
        int e = errno;
        made[0] = 0;
        errno = e;
        if (e == ENOENT || e == ENOTDIR)
            return scp_fail(err, SCP_E_NOENT, ENOENT,
                            "this machine offers no configfs-tsm reports (%s does not exist: not a TDX or SEV-SNP "
                            "guest, configfs not mounted, or a kernel without CONFIG_TSM_REPORTS)",
                            TSM_REPORT_ROOT);
        return scp_fail_errno(err, "configfs-tsm: cannot create a report entry under %s", TSM_REPORT_ROOT);
    }
    int fd = open(made, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        scp_fail_errno(err, "configfs-tsm: cannot open '%s'", made);
        rmdir(made);
        made[0] = 0;
    }
    return fd;
}

static void close_entry(int fd, const char *made) {
    if (fd >= 0) close(fd);
    if (made[0]) rmdir(made);
}

static const char *tee_name(int b) {
    return b == SCP_TEE_TDX ? "tdx" : b == SCP_TEE_SNP ? "snp" : b == SCP_TEE_SGX ? "sgx" : "sim";
}

int scp_tsm_detect(char provider[32], scp_err *err) {
    char made[PATH_MAX];
    provider[0] = 0;
    int fd = open_entry(made, err);
    if (fd < 0) return err->code == SCP_E_NOENT ? 0 : -1;
    int b = read_provider(fd, provider, err);
    close_entry(fd, made);
    return b;
}

/* One report: report_data in, outblob (and auxblob) out, with the generation check. */
static int tsm_report(int want, const uint8_t report_data[64], uint8_t **out, size_t *out_len, uint8_t **aux,
                      size_t *aux_len, scp_err *err) {
    char made[PATH_MAX], provider[32];
    *out = *aux = NULL;
    *out_len = *aux_len = 0;
    int fd = open_entry(made, err), rc = -1;
    if (fd < 0) return -1;
    unsigned long long g0, g1;
    int b = read_provider(fd, provider, err);
    if (b < 0) goto out;
    if (b != want) {
        scp_fail(err, SCP_E_NOTSUP, ENOTSUP, "--tee %s: this machine's configfs-tsm provider is '%s'%s%s", tee_name(want),
                 provider, b ? ", use --tee " : "", b ? tee_name(b) : "");
        goto out;
    }
    if (read_generation(fd, &g0, err) < 0) goto out;
    int in = openat(fd, "inblob", O_WRONLY | O_CLOEXEC);
    if (in < 0) {
        scp_fail_errno(err, "configfs-tsm: cannot open 'inblob'");
        goto out;
    }
    ssize_t w = write(in, report_data, 64); /* one write: configfs takes a blob attribute whole */
    int we = errno;
    close(in);
    if (w != 64) {
        errno = w < 0 ? we : EIO;
        scp_fail_errno(err, "configfs-tsm: cannot write the report data to 'inblob'");
        goto out;
    }
    if (read_attr(fd, "outblob", TSM_BLOB_MAX, out, out_len, err) < 0) goto out;
    if (want == SCP_TEE_SNP && read_attr(fd, "auxblob", TSM_BLOB_MAX, aux, aux_len, err) < 0) {
        if (err->sys != ENOENT) goto out; /* no auxblob: the CAS cache supplies the VCEK */
        *aux_len = 0;
    }
    if (read_generation(fd, &g1, err) < 0) goto out;
    if (g1 != g0 + 1) {
        scp_fail(err, SCP_E_BUSY, EBUSY,
                 "configfs-tsm: another process used the report entry meanwhile (generation %llu, then %llu after "
                 "our one write): the report may answer its request; try again",
                 g0, g1);
        goto out;
    }
    if (*out_len == 0) {
        scp_fail(err, SCP_E_FORMAT, EIO, "configfs-tsm: the provider returned an empty report");
        goto out;
    }
    rc = 0;
out:
    if (rc < 0) {
        free(*out);
        free(*aux);
        *out = *aux = NULL;
    }
    close_entry(fd, made);
    return rc;
}

static size_t put_field(uint8_t *p, uint16_t type, const uint8_t *v, size_t len) {
    scp_put_u16(p, type);
    scp_put_u16(p + 2, (uint16_t)len);
    memcpy(p + 4, v, len);
    return 4u + len;
}

int scp_tsm_evidence(int backend, const uint8_t nonce[32], const uint8_t pubkey[32], const uint8_t measurement[32],
                     uint8_t identity[32], uint8_t **ev_out, size_t *ev_len, scp_err *err) {
    return scp_tsm_evidence_ik(backend, nonce, pubkey, measurement, NULL, identity, ev_out, ev_len, err);
}

int scp_tsm_evidence_ik(int backend, const uint8_t nonce[32], const uint8_t pubkey[32], const uint8_t measurement[32],
                        const uint8_t *instance_key, uint8_t identity[32], uint8_t **ev_out, size_t *ev_len,
                        scp_err *err) {
    if (backend != SCP_TEE_TDX && backend != SCP_TEE_SNP)
        return scp_fail(err, SCP_E_INVAL, EINVAL, "configfs-tsm serves tdx and snp only");
    uint8_t rd[64], id[32], *rep = NULL, *aux = NULL, *ev = NULL;
    size_t rl = 0, al = 0, vl = 0;
    const uint8_t *vcek = NULL;
    int rc = -1;
    if (scp_hw_report_data_ik(nonce, pubkey, measurement, instance_key, rd, err) < 0) return -1;
    if (tsm_report(backend, rd, &rep, &rl, &aux, &al, err) < 0) return -1;
    if (rl > 16384) {
        scp_fail(err, SCP_E_FORMAT, EFBIG, "configfs-tsm: a %zu-byte report does not fit in evidence", rl);
        goto out;
    }
    if (al && scp_snp_certtable_vcek(aux, al, &vcek, &vl, err) < 0) goto out;
    if (vl > 8192) vcek = NULL, vl = 0; /* not a VCEK; CAS's cache supplies it */
    if (scp_hw_platform_identity(backend, rep, rl, identity, err) < 0) {
        scp_err_prefix(err, "the %s report from configfs-tsm", tee_name(backend));
        goto out;
    }
    scp_sha256_buf(identity, 32, id);
    size_t len = 12 + 4 * 36 + 4 + rl + (vcek ? 4 + vl : 0) + (instance_key ? 4 + SCP_INSTANCE_KEY_LEN : 0);
    if (!(ev = malloc(len))) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    memcpy(ev, "SCPE", 4);
    scp_put_u16(ev + 4, SCP_EVIDENCE_VERSION);
    scp_put_u16(ev + 6, (uint16_t)backend);
    scp_put_u32(ev + 8, (uint32_t)(len - 12));
    size_t off = 12;
    off += put_field(ev + off, SCP_EV_NONCE, nonce, 32);
    off += put_field(ev + off, SCP_EV_PUBKEY, pubkey, 32);
    off += put_field(ev + off, SCP_EV_MEASUREMENT, measurement, 32);
    off += put_field(ev + off, SCP_EV_PLATFORM, id, 32);
    off += put_field(ev + off, SCP_EV_QUOTE, rep, rl);
    if (vcek) off += put_field(ev + off, SCP_EV_SNP_VCEK, vcek, vl);
    if (instance_key) off += put_field(ev + off, SCP_EV_INSTANCE_KEY, instance_key, SCP_INSTANCE_KEY_LEN);
    assert(off == len);
    *ev_out = ev;
    *ev_len = len;
    ev = NULL;
    rc = 0;
out:
    free(ev);
    free(rep);
    free(aux);
    return rc;
}

int scp_tee_select(const char *name, char *said, size_t said_len, scp_err *err) {
    said[0] = 0;
    if (strcmp(name, "sim") == 0) return SCP_TEE_SIM;
    if (strcmp(name, "sgx") == 0)
        return scp_fail(err, SCP_E_NOTSUP, ENOTSUP,
                        "--tee sgx: the SGX runtime side is not implemented (CAS verifies SGX quotes; "
                        "docs/attestation-hw.md)");
    int auto_ = strcmp(name, "auto") == 0, want = strcmp(name, "tdx") == 0 ? SCP_TEE_TDX
                                                 : strcmp(name, "snp") == 0 ? SCP_TEE_SNP
                                                                            : 0;
    if (!auto_ && !want) return scp_fail(err, SCP_E_INVAL, EINVAL, "--tee wants auto, sim, tdx, snp or sgx, not '%s'", name);
    char provider[32];
    int b = scp_tsm_detect(provider, err);
    if (b < 0) {
        scp_err_prefix(err, "--tee %s", name);
        return -1;
    }
    if (auto_) {
        if (b) snprintf(said, said_len, "--tee auto: using %s (configfs-tsm provider %s)", tee_name(b), provider);
        else if (provider[0])
            snprintf(said, said_len, "--tee auto: configfs-tsm provider '%s' is not one SCP knows; using sim", provider);
        else
            snprintf(said, said_len, "--tee auto: no TDX or SEV-SNP guest interface (configfs-tsm) on this machine; using sim");
        return b ? b : SCP_TEE_SIM;
    }
    if (b == want) return want;
    if (b)
        return scp_fail(err, SCP_E_NOTSUP, ENOTSUP, "--tee %s: this machine is a%s guest (configfs-tsm provider %s); use --tee %s or auto",
                        name, b == SCP_TEE_TDX ? " TDX" : "n SEV-SNP", provider, tee_name(b));
    return scp_fail(err, SCP_E_NOENT, ENOENT,
                    "--tee %s: this machine is not a%s guest: %s", name, want == SCP_TEE_TDX ? " TDX" : "n SEV-SNP",
                    provider[0] ? "its configfs-tsm provider is another TEE's"
                                : "no configfs-tsm report interface (" TSM_REPORT_ROOT ")");
}
