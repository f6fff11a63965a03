/* image/attest_service.c - the local attestation service for secure images
 * (`scpctl platform serve`): one per host, it holds the sim platform key so that no container
 * ever does, and signs evidence for the secure image a caller runs in, measured by the service
 * itself rather than taken from the caller's word.
 *
 * Protocol (SOCK_SEQPACKET, one request and one answer per connection):
 *   request  "SCPA1" || nonce (32) || ephemeral X25519 public key (32)
 *        or  "SCPA2" || nonce (32) || ephemeral X25519 public key (32) || instance key (65)
 *            (the instance's P-256 public key, an uncompressed point, for a per-instance network
 *            identity: docs/shield.md "identity: instance"; the evidence carries it under the
 *            signature, so CAS certifies the key of the process that was measured)
 *   answer   "OK" || evidence        or   "ER" || one line of text
 *
 * What the service checks before it signs (the caller is untrusted: any process in any
 * container can connect):
 *   1. who: the peer's pidfd (SO_PEERPIDFD), so the process cannot be swapped for another
 *      that reuses its pid while we look; its root directory (/proc/PID/root) is the image.
 *   2. that the caller runs the image's own scpctl and nothing else: every executable mapping
 *      of the caller (read through /proc/PID/map_files, not by name) must hash to a file of
 *      /scp/bin or /scp/lib in the image's trusted-files manifest. A shell, an interpreter or an
 *      LD_PRELOAD'ed library in the caller is refused, so the ephemeral key that CAS will
 *      encrypt the configuration to belongs to the genuine runtime. (scpctl makes itself
 *      undumpable before it asks, so no other process of the container can ptrace it.)
 *   3. the image: /scp/trusted must match the digest in /scp/image.json, and the measurement is
 *      computed here, from the caller's root, exactly as `scpctl image build` computed it.
 * The evidence then binds the caller's nonce and key to that measurement.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"
#include "image/internal.h"
#include "scp/attest.h"
#include "scp/image.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5; Debian 12's headers predate it */
#endif
#define REQ_MAGIC "SCPA1"
#define REQ_MAGIC_IK "SCPA2"
#define REQ_LEN (5 + 32 + 32)
#define REQ_LEN_IK (REQ_LEN + SCP_INSTANCE_KEY_LEN)

/* Is `hex` (64 digits) the hash of a file under /scp/bin/ or /scp/lib/ in the manifest? */
static int runtime_hash(const char *man, const char *hex) {
    for (const char *l = man; *l;) {
        const char *nl = strchr(l, '\n');
        size_t ll = nl ? (size_t)(nl - l) : strlen(l);
        const char *sp = memrchr(l, ' ', ll);
        if (ll > 64 && !memcmp(l, hex, 64) && sp && (!strncmp(sp + 1, "/scp/bin/", 9) || !strncmp(sp + 1, "/scp/lib/", 9)))
            return 1;
        if (!nl) break;
        l = nl + 1;
    }
    return 0;
}

/* Check every executable file mapping of the process (step 2 above). */
static int check_caller_code(pid_t pid, const char *man, scp_err *err) {
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(p, "re");
    if (!f) return scp_fail_errno(err, "cannot read the caller's mappings");
    char line[4096];
    int rc = 0, n = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3) continue;
        if (perms[2] != 'x') continue;
        const char *name = strchr(line, '/');
        if (!name) {
            if (strstr(line, "[vdso]") || strstr(line, "[vsyscall]")) continue;
            rc = scp_fail(err, SCP_E_POLICY, EACCES, "the caller runs anonymous executable memory: refused");
            break;
        }
        char mf[96];
        snprintf(mf, sizeof mf, "/proc/%d/map_files/%lx-%lx", (int)pid, lo, hi);
        int fd = open(mf, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = scp_fail_errno(err, "cannot open the caller's mapping %lx-%lx", lo, hi);
            break;
        }
        char dg[IMG_DIGEST_LEN + 1];
        rc = img_digest_fd(fd, dg, NULL, err);
        close(fd);
        if (rc == 0 && !runtime_hash(man, dg + 7)) {
            line[strcspn(line, "\n")] = '\0';
            rc = scp_fail(err, SCP_E_POLICY, EACCES,
                          "the caller is not the image's runtime: it maps %s, which is not a file of /scp in its manifest",
                          name);
        }
        n++;
    }
    fclose(f);
    if (rc == 0 && n == 0) rc = scp_fail(err, SCP_E_POLICY, EACCES, "the caller has no executable mappings");
    return rc;
}

/* Read a file of the caller's root (resolved inside it). */
static int read_in_root(int root, const char *path, size_t max, char **out, size_t *len, scp_err *err) {
    int fd = img_open_in_root(root, path, O_RDONLY | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        if (fd >= 0) close(fd);
        return scp_fail(err, SCP_E_FORMAT, EINVAL, "the caller's image has no readable %s (a regular file)", path);
    }
    char *s = malloc((size_t)st.st_size + 1);
    ssize_t n = s ? scp_pread_full(fd, s, (size_t)st.st_size, 0) : -1;
    close(fd);
    if (n != st.st_size) {
        free(s);
        return scp_fail(err, SCP_E_SYS, EIO, "cannot read %s of the caller's image", path);
    }
    s[n] = '\0';
    *len = (size_t)n;
    *out = s;
    return 0;
}

/* Everything but the signature: who is calling, what image, which measurement. */
static int measure_caller(int conn, uint8_t m[32], char *what, size_t whatsz, scp_err *err) {
    struct ucred cr;
    socklen_t l = sizeof cr;
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &l) < 0) return scp_fail_errno(err, "SO_PEERCRED");
    int pidfd = -1;
    l = sizeof pidfd;
    if (getsockopt(conn, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &l) < 0)
        return scp_fail_errno(err, "SO_PEERPIDFD (Linux 6.5 or later is needed to know the caller for sure)");
    int rc = -1, root = -1;
    char *ij = NULL, *man = NULL;
    json_t *j = NULL;
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/root", (int)cr.pid);
    root = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) {
        scp_fail_errno(err, "cannot open the caller's root");
        goto out;
    }
    size_t il, ml;
    if (read_in_root(root, "/scp/image.json", 1 << 20, &ij, &il, err) < 0 ||
        read_in_root(root, "/scp/trusted", 64u << 20, &man, &ml, err) < 0)
        goto out;
    j = json_loads(ij, JSON_REJECT_DUPLICATES, NULL);
    const char *want = json_string_value(json_object_get(j, "trusted"));
    const char *prog = json_string_value(json_array_get(json_object_get(j, "argv"), 0));
    const char *ses = json_string_value(json_object_get(j, "session")), *svc = json_string_value(json_object_get(j, "service"));
    snprintf(what, whatsz, "%s/%s", ses ? ses : "?", svc ? svc : "?");
    char got[IMG_DIGEST_LEN + 1];
    img_digest_buf(man, ml, got);
    if (!want || !prog || strcmp(got, want) != 0) {
        scp_fail(err, SCP_E_INTEGRITY, EIO, "the caller's /scp/trusted does not match its /scp/image.json");
        goto out;
    }
    if (check_caller_code(cr.pid, man, err) < 0) goto out;
    char shield[96];
    snprintf(shield, sizeof shield, "/proc/%d/root/scp/lib/libscp-shield.so", (int)cr.pid);
    if (img_measure(root, shield, prog, ij, m, err) < 0) goto out;
    /* the pid still names the process we looked at (not one that took its number since) */
    if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0) {
        scp_fail(err, SCP_E_POLICY, ESRCH, "the caller went away while it was measured");
        goto out;
    }
    rc = 0;
out:
    json_decref(j);
    free(ij);
    free(man);
    if (root >= 0) close(root);
    close(pidfd);
    return rc;
}

static void answer_error(int conn, const scp_err *e) {
    char b[400];
    int n = snprintf(b, sizeof b, "ER%s", e->msg);
    (void)!send(conn, b, (size_t)n, MSG_NOSIGNAL);
}

static void serve_one(int conn, const char *key, void (*log)(const char *line)) {
    uint8_t req[REQ_LEN_IK + 1];
    scp_err e = {0};
    ssize_t n = recv(conn, req, sizeof req, 0);
    char what[200] = "?", line[600];
    uint8_t m[32];
    /* the instance key is the caller's word, like the X25519 key beside it: it needs no check
     * here beyond its form, because it is bound to the measurement of the caller we looked at
     * (only the image's own runtime, step 2, can ask), and CAS parses the point before it
     * certifies it */
    int with_ik = n == REQ_LEN_IK && memcmp(req, REQ_MAGIC_IK, 5) == 0 && req[REQ_LEN] == 0x04;
    if (!with_ik && (n != REQ_LEN || memcmp(req, REQ_MAGIC, 5) != 0)) {
        scp_fail(&e, SCP_E_INVAL, EINVAL, "malformed request");
        answer_error(conn, &e);
        return;
    }
    if (measure_caller(conn, m, what, sizeof what, &e) < 0) {
        answer_error(conn, &e);
        snprintf(line, sizeof line, "refused %s: %s", what, e.msg);
        if (log) log(line);
        return;
    }
    uint8_t *ev = NULL;
    size_t evl = 0;
    if (scp_sim_evidence_ik(key, req + 5, req + 37, m, with_ik ? req + REQ_LEN : NULL, &ev, &evl, &e) < 0) {
        answer_error(conn, &e);
        return;
    }
    uint8_t *out = malloc(evl + 2);
    if (out) {
        memcpy(out, "OK", 2);
        memcpy(out + 2, ev, evl);
        (void)!send(conn, out, evl + 2, MSG_NOSIGNAL);
        free(out);
    }
    free(ev);
    char mh[65];
    scp_hex(m, 32, mh);
    snprintf(line, sizeof line, "evidence for %s, measurement %s%s", what, mh, with_ik ? ", with an instance key" : "");
    if (log) log(line);
}

int scp_image_attest_serve(const char *socket_path, const char *platform_key, const volatile sig_atomic_t *stop,
                           void (*log)(const char *line), scp_err *err) {
    uint8_t pub[32], id[32];
    if (scp_sim_platform_pubkey(platform_key, pub, id, err) < 0) return -1; /* the key is usable */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(socket_path) >= sizeof sa.sun_path) return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "socket path too long");
    strcpy(sa.sun_path, socket_path);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0) return scp_fail_errno(err, "socket");
    unlink(socket_path);
    if (bind(s, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(socket_path, 0666) < 0 || listen(s, 64) < 0) {
        scp_fail_errno(err, "cannot listen on %s", socket_path);
        close(s);
        return -1;
    }
    while (!*stop) {
        int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR) continue;
            scp_fail_errno(err, "accept");
            close(s);
            return -1;
        }
        struct timeval tv = {.tv_sec = 5};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        serve_one(c, platform_key, log);
        close(c);
    }
    close(s);
    unlink(socket_path);
    return 0;
}

int scp_image_attest_request(const char *socket_path, const uint8_t nonce[32], const uint8_t pub[32],
                             const uint8_t *instance_key, uint8_t **ev, size_t *evlen, scp_err *err) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(socket_path) >= sizeof sa.sun_path) return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "socket path too long");
    strcpy(sa.sun_path, socket_path);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0) return scp_fail_errno(err, "socket");
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
        scp_fail_errno(err, "cannot reach the local attestation service at %s (scpctl platform serve; mount its socket "
                            "into the container)",
                       socket_path);
        close(s);
        return -1;
    }
    uint8_t req[REQ_LEN_IK];
    size_t rl = instance_key ? REQ_LEN_IK : REQ_LEN;
    memcpy(req, instance_key ? REQ_MAGIC_IK : REQ_MAGIC, 5);
    memcpy(req + 5, nonce, 32);
    memcpy(req + 37, pub, 32);
    if (instance_key) memcpy(req + REQ_LEN, instance_key, SCP_INSTANCE_KEY_LEN);
    int rc = -1;
    size_t cap = SCP_EVIDENCE_MAX + 2;
    uint8_t *b = malloc(cap + 1);
    if (!b) {
        close(s);
        return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    }
    ssize_t n;
    if (send(s, req, rl, MSG_NOSIGNAL) != (ssize_t)rl || (n = recv(s, b, cap + 1, 0)) < 2) {
        scp_fail(err, SCP_E_SYS, EIO, "the local attestation service did not answer");
    } else if (!memcmp(b, "OK", 2) && (size_t)n <= cap) {
        *evlen = (size_t)n - 2;
        *ev = malloc(*evlen);
        if (*ev) {
            memcpy(*ev, b + 2, *evlen);
            rc = 0;
        } else {
            scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        }
    } else {
        b[n < (ssize_t)cap ? n : (ssize_t)cap] = '\0';
        scp_fail(err, SCP_E_POLICY, EACCES, "the local attestation service refused: %.280s", (char *)b + 2);
    }
    free(b);
    close(s);
    return rc;
}
