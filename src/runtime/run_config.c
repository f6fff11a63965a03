/* runtime/run_config.c - the sealed memfds that carry the configuration to the shield
 * (launch arguments and environment, injected files, console, network; layouts in
 * scp/shield.h). */
#include "runtime/attest_run.h"
#include "runtime/run_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/util.h"
#include "scp/shield.h"

static int buf_add(char **buf, size_t *len, const void *p, size_t n) {
    if (*len + n > SCP_SHIELD_LAUNCH_MAX) return -1;
    char *nb = malloc(*len + n);
    if (!nb) return -1;
    if (*len) memcpy(nb, *buf, *len);
    memcpy(nb + *len, p, n);
    if (*buf) scp_wipe(*buf, *len);
    free(*buf);
    *buf = nb;
    *len += n;
    return 0;
}

int run_launch_memfd(json_t *cmd, size_t first, json_t *env) {
    char *buf = NULL;
    size_t len = 0;
    uint32_t nargs = (uint32_t)(json_array_size(cmd) - first), nenv = (uint32_t)json_object_size(env);
    uint8_t head[14] = "SCPL1\n";
    for (int i = 0; i < 4; i++) head[6 + i] = (uint8_t)(nargs >> (8 * i)), head[10 + i] = (uint8_t)(nenv >> (8 * i));
    int bad = buf_add(&buf, &len, head, sizeof head);
    for (size_t i = first; i < json_array_size(cmd) && !bad; i++) {
        const char *a = json_string_value(json_array_get(cmd, i));
        bad = buf_add(&buf, &len, a, strlen(a) + 1);
    }
    const char *k;
    json_t *v;
    json_object_foreach(env, k, v) {
        if (bad) break;
        bad = buf_add(&buf, &len, k, strlen(k)) || buf_add(&buf, &len, "=", 1) ||
              buf_add(&buf, &len, json_string_value(v), strlen(json_string_value(v)) + 1);
    }
    int fd = bad ? -1 : scp_shield_sealed_memfd("scp-launch", buf, len, NULL);
    if (buf) scp_wipe(buf, len);
    free(buf);
    return fd;
}

static int put32(char **buf, size_t *len, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return buf_add(buf, len, b, 4);
}

int run_files_memfd(json_t *files) {
    char *buf = NULL;
    size_t len = 0;
    int bad = buf_add(&buf, &len, "SCPF1\n", 6) || put32(&buf, &len, (uint32_t)json_array_size(files));
    for (size_t i = 0; i < json_array_size(files) && !bad; i++) {
        json_t *f = json_array_get(files, i), *c = json_object_get(f, "content");
        const char *path = json_string_value(json_object_get(f, "path"));
        bad = put32(&buf, &len, 0400) || put32(&buf, &len, (uint32_t)strlen(path) + 1) ||
              put32(&buf, &len, (uint32_t)json_string_length(c)) || buf_add(&buf, &len, path, strlen(path) + 1) ||
              buf_add(&buf, &len, json_string_value(c), json_string_length(c));
    }
    int fd = bad ? -1 : scp_shield_sealed_memfd("scp-files", buf, len, NULL);
    if (buf) scp_wipe(buf, len);
    free(buf);
    return fd;
}

int run_console_memfd(json_t *con, const char *session, const char *service, int lines) {
    if (!con) return -1;
    scp_shield_console *c = calloc(1, sizeof *c);
    if (!c) return -2;
    memcpy(c->magic, SCP_SHIELD_CONSOLE_MAGIC, 8);
    const char *names[3] = {"stdin", "stdout", "stderr"};
    for (int k = 0; k < 3; k++)
        if (json_is_true(json_object_get(con, names[k]))) c->flags |= 1u << k;
    const char *khex = json_string_value(json_object_get(con, "key"));
    int fd = -1;
    if (c->flags && lines) c->flags |= SCP_SHIELD_CON_LINES;
    if (c->flags && khex && scp_unhex(khex, c->key, sizeof c->key) == 0 && strlen(session) < sizeof c->session &&
        strlen(service) < sizeof c->service) {
        snprintf(c->session, sizeof c->session, "%s", session);
        snprintf(c->service, sizeof c->service, "%s", service);
        fd = scp_shield_sealed_memfd("scp-console", c, sizeof *c, NULL);
        if (fd < 0) fd = -2;
    } else if (c->flags) {
        fd = -2;
    }
    scp_wipe(c, sizeof *c);
    free(c);
    return fd;
}

/* A PEM blob of the network memfd: a line `WORD LENGTH`, the PEM, a newline. */
static int net_blob(char **buf, size_t *len, const char *word, const char *pem) {
    char line[64];
    int n = snprintf(line, sizeof line, "%s %zu\n", word, strlen(pem));
    return buf_add(buf, len, line, (size_t)n) || buf_add(buf, len, pem, strlen(pem)) || buf_add(buf, len, "\n", 1);
}

static int net_word_ok(const char *s) { return s && *s && strlen(s) < 254 && !strpbrk(s, " \n\t"); }

/* A rule's checks of a per-instance certificate: `want service NAME`, `want measurement HEX`,
 * `want platform HEX` after its line, and its `proto postgres` (scp/shield.h). */
static int net_wants(char **buf, size_t *len, json_t *rule) {
    const char *proto = json_string_value(json_object_get(rule, "protocol"));
    if (proto) { /* CAS sends no other; an unknown one must not become plain TLS */
        if (strcmp(proto, "postgres") != 0 && strcmp(proto, "mysql") != 0) return 1;
        char line[32];
        int n = snprintf(line, sizeof line, "proto %s\n", proto);
        if (buf_add(buf, len, line, (size_t)n)) return 1;
    }
    static const char *const what[] = {"service", "measurement", "platform"};
    for (size_t i = 0; i < sizeof what / sizeof what[0]; i++) {
        json_t *v = json_object_get(rule, what[i]);
        if (!v) continue;
        if (!net_word_ok(json_string_value(v))) return 1;
        char line[320];
        int n = snprintf(line, sizeof line, "want %s %s\n", what[i], json_string_value(v));
        if (buf_add(buf, len, line, (size_t)n)) return 1;
    }
    return 0;
}

int run_net_memfd(json_t *net) {
    char *buf = NULL;
    size_t len = 0;
    char line[1024];
    int n = snprintf(line, sizeof line, "SCPN1\ndefault %s\nmin_tls %s\n",
                     json_is_string(json_object_get(net, "default")) &&
                             !strcmp(json_string_value(json_object_get(net, "default")), "refuse")
                         ? "refuse"
                         : "allow",
                     json_is_string(json_object_get(net, "min_tls")) &&
                             !strcmp(json_string_value(json_object_get(net, "min_tls")), "1.2")
                         ? "12"
                         : "13");
    int bad = buf_add(&buf, &len, line, (size_t)n);
    const char *cert = json_string_value(json_object_get(net, "cert")), *key = json_string_value(json_object_get(net, "key"));
    if (cert && key) bad = bad || net_blob(&buf, &len, "cert", cert) || net_blob(&buf, &len, "key", key);
    int nca = 0;
    json_t *lis = json_object_get(net, "listen"), *peers = json_object_get(net, "peers");
    for (size_t i = 0; i < json_array_size(lis) && !bad; i++) {
        json_t *l = json_array_get(lis, i);
        const char *ca = json_string_value(json_object_get(l, "client_ca"));
        int idx = -1;
        if (json_is_true(json_object_get(l, "client_cert"))) {
            if (!ca) bad = 1;
            else bad = net_blob(&buf, &len, "ca", ca), idx = nca++;
        }
        const char *id = json_string_value(json_object_get(l, "identity"));
        if (id && !net_word_ok(id)) bad = 1;
        n = snprintf(line, sizeof line, "listen %lld %d%s%s\n", (long long)json_integer_value(json_object_get(l, "port")),
                     idx, id ? " " : "", id ? id : "");
        bad = bad || buf_add(&buf, &len, line, (size_t)n) || net_wants(&buf, &len, l);
    }
    for (size_t i = 0; i < json_array_size(peers) && !bad; i++) {
        json_t *pe = json_array_get(peers, i);
        const char *host = json_string_value(json_object_get(pe, "host")), *name = json_string_value(json_object_get(pe, "name")),
                   *ca = json_string_value(json_object_get(pe, "ca")),
                   *id = json_string_value(json_object_get(pe, "identity"));
        if (!net_word_ok(host) || !net_word_ok(name) || !ca || (id && !net_word_ok(id))) {
            bad = 1;
            break;
        }
        bad = net_blob(&buf, &len, "ca", ca);
        n = snprintf(line, sizeof line, "peer %s %lld %s %d%s%s\n", host,
                     (long long)json_integer_value(json_object_get(pe, "port")), name, nca++, id ? " " : "", id ? id : "");
        bad = bad || buf_add(&buf, &len, line, (size_t)n) || net_wants(&buf, &len, pe);
    }
    int fd = bad ? -1 : scp_shield_sealed_memfd("scp-net", buf, len, NULL);
    if (buf) scp_wipe(buf, len);
    free(buf);
    return fd;
}
