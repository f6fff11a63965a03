/* shield/config.c - the launcher-to-shield configuration (see scp/shield.h). */
#include "scp/shield.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CFG_MAGIC "SCPSHLD1"

struct cfg_header {
    char magic[8];
    uint32_t size; /* sizeof(scp_shield_config) */
    uint32_t pad;
};

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int scp_shield_config_to_memfd(const scp_shield_config *cfg, scp_err *err) {
    int fd = memfd_create("scp-shield-config", MFD_ALLOW_SEALING);
    if (fd < 0) return scp_fail_errno(err, "cannot create the shield configuration memfd");
    struct cfg_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CFG_MAGIC, 8);
    h.size = (uint32_t)sizeof *cfg;
    if (write_all(fd, &h, sizeof h) || write_all(fd, cfg, sizeof *cfg) ||
        lseek(fd, 0, SEEK_SET) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)) {
        scp_fail_errno(err, "cannot write the shield configuration");
        close(fd);
        return -1;
    }
    return fd;
}

int scp_shield_sealed_memfd(const char *name, const void *buf, size_t len, scp_err *err) {
    int fd = memfd_create(name, MFD_ALLOW_SEALING);
    if (fd < 0) return scp_fail_errno(err, "cannot create the %s memfd", name);
    if (write_all(fd, buf, len) || lseek(fd, 0, SEEK_SET) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)) {
        scp_fail_errno(err, "cannot write the %s memfd", name);
        close(fd);
        return -1;
    }
    return fd;
}

size_t scp_shield_config_size(void) { return sizeof(struct cfg_header) + sizeof(scp_shield_config); }

int scp_shield_config_parse(const void *buf, size_t len, scp_shield_config *cfg, scp_err *err) {
    struct cfg_header h;
    if (len != scp_shield_config_size()) goto bad;
    memcpy(&h, buf, sizeof h);
    if (memcmp(h.magic, CFG_MAGIC, 8) || h.size != sizeof *cfg) goto bad;
    memcpy(cfg, (const char *)buf + sizeof h, sizeof *cfg);
    if (cfg->nvol > SCP_SHIELD_MAX_VOLUMES || cfg->ninherit > SCP_SHIELD_MAX_INHERIT ||
        cfg->nofd_drop > SCP_SHIELD_MAX_OFD_DROP)
        return scp_fail(err, SCP_E_FORMAT, EINVAL, "the shield configuration has bad counts");
    for (uint32_t i = 0; i < cfg->nvol; i++)
        if (cfg->vol[i].mount[0] != '/' || !memchr(cfg->vol[i].mount, 0, SCP_SHIELD_MAX_MOUNT))
            return scp_fail(err, SCP_E_FORMAT, EINVAL, "the shield configuration has a bad mount point");
    for (uint32_t i = 0; i < cfg->ninherit; i++)
        if (cfg->inherit[i].vol < 0 || (uint32_t)cfg->inherit[i].vol >= cfg->nvol ||
            !memchr(cfg->inherit[i].path, 0, sizeof cfg->inherit[i].path) ||
            cfg->inherit[i].ofd < -1 || cfg->inherit[i].ofd >= (int32_t)SCP_SHIELD_OFD_SLOTS)
            return scp_fail(err, SCP_E_FORMAT, EINVAL, "the shield configuration has a bad descriptor");
    for (uint32_t i = 0; i < cfg->nofd_drop; i++)
        if (cfg->ofd_drop[i] < 0 || cfg->ofd_drop[i] >= (int32_t)SCP_SHIELD_OFD_SLOTS)
            return scp_fail(err, SCP_E_FORMAT, EINVAL, "the shield configuration has a bad offset slot");
    return 0;
bad:
    return scp_fail(err, SCP_E_FORMAT, EINVAL,
                    "the shield configuration descriptor does not hold a configuration of this "
                    "version (launcher and libscp-shield.so must come from one build)");
}

int scp_shield_config_read(int fd, scp_shield_config *cfg, scp_err *err) {
    size_t n = scp_shield_config_size();
    char *buf = malloc(n);
    if (!buf) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    int r = pread(fd, buf, n, 0) == (ssize_t)n ? scp_shield_config_parse(buf, n, cfg, err)
                                                : scp_fail(err, SCP_E_FORMAT, EINVAL, "the shield configuration is truncated");
    free(buf);
    return r;
}

int scp_shield_path_normalize(const char *path, char *out, size_t out_size) {
    if (!path || path[0] != '/' || out_size < 2) return -1;
    size_t o = 0;
    const char *p = path;
    while (*p) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *s = p;
        while (*p && *p != '/') p++;
        size_t len = (size_t)(p - s);
        if (len == 1 && s[0] == '.') continue;
        if (len == 2 && s[0] == '.' && s[1] == '.') {
            while (o > 0 && out[o - 1] != '/') o--;
            if (o > 0) o--; /* drop the '/' too */
            continue;
        }
        if (o + 1 + len + 1 > out_size) return -1;
        out[o++] = '/';
        memcpy(out + o, s, len);
        o += len;
    }
    if (o == 0) out[o++] = '/';
    out[o] = 0;
    return 0;
}

unsigned scp_shield_volume_minor(uint64_t host_dev, uint64_t host_ino, const unsigned *taken,
                                 unsigned ntaken) {
    uint64_t h = 0x9e3779b97f4a7c15u;
    h ^= host_dev * 0xbf58476d1ce4e5b9u;
    h ^= host_ino * 0x94d049bb133111ebu;
    h ^= h >> 31;
    h *= 0xd6e8feb86659fd93u;
    h ^= h >> 32;
    unsigned minor = (unsigned)(h & SCP_SHIELD_DEV_MINOR_MASK);
    for (int clash = 1; clash;) {
        clash = minor == SCP_SHIELD_DEV_MINOR_INJECTED;
        for (unsigned j = 0; j < ntaken && !clash; j++) clash = taken[j] == minor;
        if (clash) minor = (minor + 1) & SCP_SHIELD_DEV_MINOR_MASK;
    }
    return minor;
}
