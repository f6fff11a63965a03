/* cas/policy.c - YAML session policies (see policy.h), parsed with libyaml. */
#include "cas/policy.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "scp/attest_hw.h"
#include "scp/volume.h"

#define MAX_NODES 20000
#define MAX_DEPTH 16

typedef struct pctx {
    yaml_document_t *doc;
    scp_err *err;
} pctx;

static int perr(pctx *c, const yaml_node_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int oom(pctx *c) {
    scp_fail(c->err, SCP_E_NOMEM, ENOMEM, "out of memory");
    return -1;
}
static int perr(pctx *c, const yaml_node_t *n, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n)
        scp_fail(c->err, SCP_E_INVAL, EINVAL, "policy line %zu: %s", (size_t)n->start_mark.line + 1, msg);
    else
        scp_fail(c->err, SCP_E_INVAL, EINVAL, "policy: %s", msg);
    return -1;
}

int cas_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64 || s[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '-' || ch == '.'))
            return 0;
    }
    return 1;
}

static int hex64_ok(const char *s) { return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64; }

static yaml_node_t *node(pctx *c, int id) { return yaml_document_get_node(c->doc, id); }

static int get_str(pctx *c, yaml_node_t *n, const char *key, size_t maxlen, char **out) {
    if (!n || n->type != YAML_SCALAR_NODE) return perr(c, n, "'%s' must be a string", key);
    if (*out) return perr(c, n, "duplicate key '%s'", key);
    size_t l = n->data.scalar.length;
    if (l > maxlen) return perr(c, n, "'%s' is longer than %zu characters", key, maxlen);
    if (memchr(n->data.scalar.value, 0, l)) return perr(c, n, "'%s' contains a NUL character", key);
    *out = malloc(l + 1);
    if (!*out) return oom(c);
    memcpy(*out, n->data.scalar.value, l);
    (*out)[l] = 0;
    return 0;
}

static int get_name(pctx *c, yaml_node_t *n, const char *key, char **out) {
    if (get_str(c, n, key, 64, out) < 0) return -1;
    if (!cas_name_ok(*out)) return perr(c, n, "'%s' must be 1-64 characters of [A-Za-z0-9_.-]", key);
    return 0;
}

static int get_long(pctx *c, yaml_node_t *n, const char *key, long lo, long hi, long *out) {
    if (!n || n->type != YAML_SCALAR_NODE) return perr(c, n, "'%s' must be a number", key);
    char buf[32];
    size_t l = n->data.scalar.length;
    if (l == 0 || l >= sizeof buf) return perr(c, n, "'%s' must be a number", key);
    memcpy(buf, n->data.scalar.value, l);
    buf[l] = 0;
    char *e;
    errno = 0;
    long v = strtol(buf, &e, 10);
    if (*e || errno || v < lo || v > hi) return perr(c, n, "'%s' must be a number in [%ld, %ld]", key, lo, hi);
    *out = v;
    return 0;
}

static int push(pctx *c, cas_strlist *l, char *s) {
    char **v = realloc(l->v, (l->n + 1) * sizeof *v);
    if (!v) {
        free(s);
        return oom(c);
    }
    l->v = v;
    l->v[l->n++] = s;
    return 0;
}

static void free_list(cas_strlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* A sequence of strings; kind 0 any (<= maxlen), 1 names, 2 hex64. */
static int get_list(pctx *c, yaml_node_t *n, const char *key, size_t maxn, size_t maxlen, int kind, cas_strlist *out) {
    if (!n || n->type != YAML_SEQUENCE_NODE) return perr(c, n, "'%s' must be a list", key);
    if (out->n) return perr(c, n, "duplicate key '%s'", key);
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt > maxn) return perr(c, n, "'%s' has more than %zu entries", key, maxn);
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t *e = node(c, *it);
        char *s = NULL;
        if (get_str(c, e, key, maxlen, &s) < 0) return -1;
        if (kind == 1 && !cas_name_ok(s)) {
            free(s);
            return perr(c, e, "entries of '%s' must be names of [A-Za-z0-9_.-]", key);
        }
        if (kind == 2 && !hex64_ok(s)) {
            free(s);
            return perr(c, e, "entries of '%s' must be 64 lower-case hex digits", key);
        }
        if (push(c, out, s) < 0) return -1;
    }
    return 0;
}

/* For each key k and value v of mapping n. Two nested loops (the pair pointer and the two node
 * pointers have different types), built so that `break` in the body leaves both, as a reader
 * expects: entering a pair moves the outer loop's end to that pair, and only the inner loop's
 * own end (after the body ran to its end or `continue`d, or for a pair without a key node)
 * moves it back. A `break` that left only the inner loop went on to the next key, whose result
 * overwrote the error (issue 10.6). */
#define FOR_PAIRS(c, n, k, v)                                                                                   \
    for (yaml_node_pair_t *p_##k = (n)->data.mapping.pairs.start, *e_##k = (n)->data.mapping.pairs.top;        \
         p_##k < e_##k; p_##k++)                                                                                \
        for (yaml_node_t *k = (e_##k = p_##k, node(c, p_##k->key)), *v = node(c, p_##k->value);                \
             (k) || (e_##k = (n)->data.mapping.pairs.top, 0); (k) = NULL)

static int key_is(yaml_node_t *k, const char *name) {
    return k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(name) &&
           memcmp(k->data.scalar.value, name, k->data.scalar.length) == 0;
}

static int want_map(pctx *c, yaml_node_t *n, const char *what) {
    if (!n || n->type != YAML_MAPPING_NODE) return perr(c, n, "%s must be a mapping", what);
    FOR_PAIRS(c, n, k, v) {
        (void)v;
        if (k->type != YAML_SCALAR_NODE) return perr(c, k, "keys of %s must be strings", what);
    }
    return 0;
}

static int unknown(pctx *c, yaml_node_t *k, const char *what) {
    int l = (int)(k->data.scalar.length > 64 ? 64 : k->data.scalar.length);
    return perr(c, k, "unknown key '%.*s' in %s", l, (const char *)k->data.scalar.value, what);
}

static size_t seq_len(yaml_node_t *n) { return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start); }

/* HEX of exactly n bytes (upper or lower case) into out. */
static int get_hex(pctx *c, yaml_node_t *n, const char *key, uint8_t *out, size_t len) {
    char *h = NULL;
    if (get_str(c, n, key, 2 * len, &h) < 0) return -1;
    int bad = strlen(h) != 2 * len || scp_unhex(h, out, len) < 0;
    free(h);
    return bad ? perr(c, n, "'%s' must be %zu hex digits", key, 2 * len) : 0;
}

/* accept_tcb: [STATUS, ...] of Intel's TCB status names; Revoked is never accepted. */
static int get_accept_tcb(pctx *c, yaml_node_t *n, unsigned *out) {
    cas_strlist l = {0};
    int r = get_list(c, n, "accept_tcb", 8, 64, 0, &l);
    for (size_t i = 0; r == 0 && i < l.n; i++) {
        int st = SCP_DCAP_TCB_UP_TO_DATE;
        while (st < SCP_DCAP_TCB_REVOKED && strcmp(scp_dcap_tcb_status_name(st), l.v[i]) != 0) st++;
        if (st == SCP_DCAP_TCB_REVOKED)
            r = perr(c, n, "accept_tcb: '%.64s' is not an acceptable TCB status (UpToDate, SWHardeningNeeded, "
                     "ConfigurationNeeded, ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded)",
                     l.v[i]);
        else
            *out |= 1u << st;
    }
    free_list(&l);
    return r;
}

/* Keys of a tee section are each allowed once: a reader of the policy must see the value CAS uses. */
static int once(pctx *c, yaml_node_t *k, unsigned *seen, unsigned bit) {
    if (*seen & bit) {
        int l = (int)(k->data.scalar.length > 64 ? 64 : k->data.scalar.length);
        return perr(c, k, "duplicate key '%.*s'", l, (const char *)k->data.scalar.value);
    }
    *seen |= bit;
    return 0;
}

/* snp: {measurement, host_data, min_tcb: {bootloader, tee, snp, microcode}} */
static int parse_tee_snp(pctx *c, yaml_node_t *n, cas_tee_policy *t) {
    unsigned seen = 0;
    FOR_PAIRS(c, n, k, v) {
        int r;
        if (key_is(k, "measurement")) r = once(c, k, &seen, 1) < 0 ? -1 : get_hex(c, v, "measurement", t->measurement, 48);
        else if (key_is(k, "host_data"))
            r = once(c, k, &seen, 2) < 0 ? -1 : get_hex(c, v, "host_data", t->host_data, 32), t->has_host_data = 1;
        else if (key_is(k, "min_tcb")) {
            if (once(c, k, &seen, 4) < 0) return -1;
            static const char *const comp[4] = {"bootloader", "tee", "snp", "microcode"};
            if (want_map(c, v, "min_tcb") < 0) return -1;
            FOR_PAIRS(c, v, tk, tv) {
                int i = 0;
                while (i < 4 && !key_is(tk, comp[i])) i++;
                if (i == 4) return unknown(c, tk, "min_tcb (bootloader, tee, snp, microcode)");
                if (once(c, tk, &seen, 8u << i) < 0) return -1;
                long x;
                if (get_long(c, tv, comp[i], 0, 255, &x) < 0) return -1;
                t->min_tcb[i] = (uint8_t)x;
            }
            r = 0;
        } else
            return unknown(c, k, "snp");
        if (r < 0) return -1;
    }
    return 0;
}

/* tdx: {mrtd, rtmr0..rtmr3, accept_tcb} */
static int parse_tee_tdx(pctx *c, yaml_node_t *n, cas_tee_policy *t) {
    static const char *const rtmr[4] = {"rtmr0", "rtmr1", "rtmr2", "rtmr3"};
    unsigned seen = 0;
    FOR_PAIRS(c, n, k, v) {
        int r, i = 0;
        while (i < 4 && !key_is(k, rtmr[i])) i++;
        unsigned bit = i < 4 ? 1u << i : key_is(k, "mrtd") ? 16 : key_is(k, "accept_tcb") ? 32 : 0;
        if (!bit) return unknown(c, k, "tdx");
        if (once(c, k, &seen, bit) < 0) return -1;
        if (i < 4) r = get_hex(c, v, rtmr[i], t->rtmr[i], 48), t->rtmr_set |= 1u << i;
        else if (bit == 16) r = get_hex(c, v, "mrtd", t->measurement, 48);
        else r = get_accept_tcb(c, v, &t->accept_tcb);
        if (r < 0) return -1;
    }
    return 0;
}

/* sgx: {mrenclave, mrsigner, min_isvsvn, accept_tcb} */
static int parse_tee_sgx(pctx *c, yaml_node_t *n, cas_tee_policy *t) {
    unsigned seen = 0;
    FOR_PAIRS(c, n, k, v) {
        int r;
        long x = 0;
        unsigned bit = key_is(k, "mrenclave") ? 1 : key_is(k, "mrsigner") ? 2 : key_is(k, "min_isvsvn") ? 4
                       : key_is(k, "accept_tcb") ? 8 : 0;
        if (bit && once(c, k, &seen, bit) < 0) return -1;
        if (key_is(k, "mrenclave")) r = get_hex(c, v, "mrenclave", t->mrenclave, 32), t->has_mrenclave = 1;
        else if (key_is(k, "mrsigner")) r = get_hex(c, v, "mrsigner", t->mrsigner, 32), t->has_mrsigner = 1;
        else if (key_is(k, "min_isvsvn")) r = get_long(c, v, "min_isvsvn", 0, 65535, &x), t->min_isvsvn = (unsigned)x;
        else if (key_is(k, "accept_tcb")) r = get_accept_tcb(c, v, &t->accept_tcb);
        else return unknown(c, k, "sgx");
        if (r < 0) return -1;
    }
    return 0;
}

/* A service's snp, tdx or sgx section (k names which): what it accepts from that platform. */
static int parse_tee(pctx *c, yaml_node_t *k, yaml_node_t *v, cas_service_def *s) {
    int snp = key_is(k, "snp"), tdx = key_is(k, "tdx");
    cas_tee_policy *t = snp ? &s->snp : tdx ? &s->tdx : &s->sgx;
    const char *what = snp ? "snp" : tdx ? "tdx" : "sgx";
    if (t->present) return perr(c, k, "duplicate key '%s'", what);
    if (want_map(c, v, what) < 0) return -1;
    t->present = 1;
    if ((snp ? parse_tee_snp(c, v, t) : tdx ? parse_tee_tdx(c, v, t) : parse_tee_sgx(c, v, t)) < 0) return -1;
    static const uint8_t zero[48];
    if (!snp && !tdx && !t->has_mrenclave && !t->has_mrsigner)
        return perr(c, v, "sgx needs 'mrenclave' or 'mrsigner'");
    if ((snp || tdx) && memcmp(t->measurement, zero, 48) == 0)
        return perr(c, v, "%s needs '%s' (96 hex digits, not all zero)", what, snp ? "measurement" : "mrtd");
    return 0;
}

/* console: {stdin: sealed|plain, stdout: ..., stderr: ...} (each optional, default plain) */
static int parse_console(pctx *c, yaml_node_t *v, cas_service_def *s) {
    if (want_map(c, v, "console") < 0) return -1;
    if (s->console_set) return perr(c, v, "duplicate key 'console'");
    s->console_set = 1;
    FOR_PAIRS(c, v, ck, cv) {
        int *slot = key_is(ck, "stdin") ? &s->console_stdin : key_is(ck, "stdout") ? &s->console_stdout
                    : key_is(ck, "stderr") ? &s->console_stderr : NULL;
        if (!slot) return unknown(c, ck, "console (stdin, stdout, stderr)");
        char *b = NULL;
        if (get_str(c, cv, "console stream", 8, &b) < 0) return -1;
        int sealed = strcmp(b, "sealed") == 0, plain = strcmp(b, "plain") == 0;
        free(b);
        if (!sealed && !plain) return perr(c, cv, "a console stream is 'sealed' or 'plain'");
        *slot = sealed;
    }
    return 0;
}

/* A CA reference: "service" or a secret name (checked against the secrets in validate). */
static int get_ca(pctx *c, yaml_node_t *n, const char *key, char **out) {
    if (get_str(c, n, key, 64, out) < 0) return -1;
    if (strcmp(*out, "service") != 0 && !cas_name_ok(*out))
        return perr(c, n, "'%s' must be 'service' or the name of a secret holding a PEM certificate", key);
    return 0;
}

/* A host of a peer rule: a DNS name, an IP address, or a CIDR: [A-Za-z0-9.:-]+ with at most one '/'. */
static int host_ok(const char *h) {
    size_t n = strlen(h);
    if (n == 0 || n > 253 || h[0] == '.' || h[0] == '-') return 0;
    int slash = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = h[i];
        if (ch == '/') {
            if (slash++ || i == 0 || i + 1 == n) return 0;
        } else if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                     ch == '-' || ch == ':'))
            return 0;
    }
    return 1;
}

/* An identity id: 64 lower-case hex digits. */
static int get_owner(pctx *c, yaml_node_t *v, const char *key, char **out) {
    if (get_str(c, v, key, 64, out) < 0) return -1;
    if (!hex64_ok(*out)) return perr(c, v, "'%s' must be an identity id: 64 lower-case hex digits", key);
    return 0;
}

/* A measurement a peer's per-instance certificate must carry: 64 lower-case hex digits. */
/* A 64-hex-digit identifier; what it is and where to get one go in the message. */
static int get_hex64(pctx *c, yaml_node_t *v, const char *key, const char *what, const char *hint, char **out) {
    if (get_str(c, v, key, 64, out) < 0) return -1;
    if (!hex64_ok(*out)) return perr(c, v, "'%s' must be %s: 64 lower-case hex digits%s", key, what, hint);
    return 0;
}

static int get_measurement(pctx *c, yaml_node_t *v, const char *key, char **out) {
    return get_hex64(c, v, key, "a measurement", "", out);
}

static int get_platform_id(pctx *c, yaml_node_t *v, const char *key, char **out) {
    return get_hex64(c, v, key, "a platform id", " (scpctl platform id)", out);
}

/* `protocol`: tls (the default), postgres or mysql. */
static int get_proto(pctx *c, yaml_node_t *v, int *out) {
    char *b = NULL;
    if (get_str(c, v, "protocol", 16, &b) < 0) return -1;
    int r = 0;
    if (!strcmp(b, "tls")) *out = CAS_NET_PROTO_TLS;
    else if (!strcmp(b, "postgres")) *out = CAS_NET_PROTO_POSTGRES;
    else if (!strcmp(b, "mysql")) *out = CAS_NET_PROTO_MYSQL;
    else r = perr(c, v, "protocol must be tls, postgres or mysql");
    free(b);
    return r;
}

static int parse_listen(pctx *c, yaml_node_t *n, cas_net_listen *l) {
    if (want_map(c, n, "a listen rule") < 0) return -1;
    FOR_PAIRS(c, n, k, v) {
        int r;
        if (key_is(k, "port")) r = get_long(c, v, "port", 1, 65535, &l->port);
        else if (key_is(k, "protocol")) r = get_proto(c, v, &l->proto);
        else if (key_is(k, "client_ca")) r = get_ca(c, v, "client_ca", &l->client_ca);
        else if (key_is(k, "client_session")) r = get_name(c, v, "client_session", &l->client_session);
        else if (key_is(k, "client_owner")) r = get_owner(c, v, "client_owner", &l->client_owner);
        else if (key_is(k, "client_service")) r = get_name(c, v, "client_service", &l->client_service);
        else if (key_is(k, "client_measurement")) r = get_measurement(c, v, "client_measurement", &l->client_measurement);
        else if (key_is(k, "client_platform")) r = get_platform_id(c, v, "client_platform", &l->client_platform);
        else if (key_is(k, "client_certificate")) {
            char *b = NULL;
            if (get_str(c, v, "client_certificate", 16, &b) < 0) return -1;
            int req = strcmp(b, "required") == 0, none = strcmp(b, "none") == 0;
            free(b);
            if (!req && !none) return perr(c, v, "client_certificate must be required or none");
            l->client_cert = req;
            r = 0;
        } else
            return unknown(c, k, "a listen rule");
        if (r < 0) return -1;
    }
    if (!l->port) return perr(c, n, "a listen rule needs a 'port'");
    if (l->client_ca && !l->client_cert) return perr(c, n, "'client_ca' goes with client_certificate: required");
    if (l->client_session && !l->client_cert)
        return perr(c, n, "'client_session' goes with client_certificate: required");
    if (l->client_owner && !l->client_session) return perr(c, n, "'client_owner' goes with 'client_session'");
    if (l->client_session && l->client_ca && strcmp(l->client_ca, "service") != 0)
        return perr(c, n, "'client_session' needs the service CA (only CAS puts a session in a certificate)");
    if (l->client_service && !l->client_session) return perr(c, n, "'client_service' goes with 'client_session'");
    if (l->client_measurement && !l->client_cert)
        return perr(c, n, "'client_measurement' goes with client_certificate: required");
    if (l->client_measurement && l->client_ca && strcmp(l->client_ca, "service") != 0)
        return perr(c, n, "'client_measurement' needs the service CA (only CAS puts a measurement in a certificate)");
    if (l->client_platform && !l->client_cert)
        return perr(c, n, "'client_platform' goes with client_certificate: required");
    if (l->client_platform && l->client_ca && strcmp(l->client_ca, "service") != 0)
        return perr(c, n, "'client_platform' needs the service CA (only CAS puts a platform in a certificate)");
    return 0;
}

static int parse_peer(pctx *c, yaml_node_t *n, cas_net_peer *pe) {
    if (want_map(c, n, "a peer") < 0) return -1;
    FOR_PAIRS(c, n, k, v) {
        int r;
        if (key_is(k, "host")) {
            r = get_str(c, v, "host", 253, &pe->host);
            if (r == 0 && !host_ok(pe->host)) return perr(c, v, "'host' must be a DNS name, an IP address or a CIDR");
        } else if (key_is(k, "port")) r = get_long(c, v, "port", 1, 65535, &pe->port);
        else if (key_is(k, "protocol")) r = get_proto(c, v, &pe->proto);
        else if (key_is(k, "name")) {
            r = get_str(c, v, "name", 253, &pe->name);
            if (r == 0 && (!host_ok(pe->name) || strchr(pe->name, '/'))) return perr(c, v, "'name' must be a DNS name or an IP address");
        } else if (key_is(k, "ca")) r = get_ca(c, v, "ca", &pe->ca);
        else if (key_is(k, "session")) r = get_name(c, v, "session", &pe->session);
        else if (key_is(k, "owner")) r = get_owner(c, v, "owner", &pe->owner);
        else if (key_is(k, "certificate")) r = get_name(c, v, "certificate", &pe->certificate);
        else if (key_is(k, "service")) r = get_name(c, v, "service", &pe->service);
        else if (key_is(k, "measurement")) r = get_measurement(c, v, "measurement", &pe->measurement);
        else if (key_is(k, "platform")) r = get_platform_id(c, v, "platform", &pe->platform);
        else
            return unknown(c, k, "a peer");
        if (r < 0) return -1;
    }
    if (!pe->host || !pe->port) return perr(c, n, "a peer needs a 'host' and a 'port'");
    if (strchr(pe->host, '/') && !pe->name) return perr(c, n, "a peer given as a CIDR needs the 'name' to verify");
    if ((pe->owner || pe->certificate) && !pe->session) return perr(c, n, "'owner' and 'certificate' of a peer go with 'session'");
    if (pe->session && pe->ca && strcmp(pe->ca, "service") != 0)
        return perr(c, n, "a peer's 'session' needs the service CA (only CAS puts a session in a certificate)");
    if (pe->service && !pe->session) return perr(c, n, "a peer's 'service' goes with 'session'");
    if (pe->measurement && pe->ca && strcmp(pe->ca, "service") != 0)
        return perr(c, n, "a peer's 'measurement' needs the service CA (only CAS puts a measurement in a certificate)");
    if (pe->platform && pe->ca && strcmp(pe->ca, "service") != 0)
        return perr(c, n, "a peer's 'platform' needs the service CA (only CAS puts a platform in a certificate)");
    return 0;
}

static int parse_net(pctx *c, yaml_node_t *n, cas_service_net *net) {
    if (want_map(c, n, "network") < 0) return -1;
    if (net->present) return perr(c, n, "duplicate key 'network'");
    net->present = 1;
    net->min_tls = 13;
    FOR_PAIRS(c, n, k, v) {
        int r = 0;
        if (key_is(k, "certificate")) r = get_name(c, v, "certificate", &net->certificate);
        else if (key_is(k, "identity")) {
            char *b = NULL;
            if (get_str(c, v, "identity", 16, &b) < 0) return -1;
            if (strcmp(b, "instance") == 0 || strcmp(b, "session") == 0) net->instance = b[0] == 'i';
            else r = perr(c, v, "identity must be session or instance");
            free(b);
        } else if (key_is(k, "default") || key_is(k, "min_tls")) {
            int isdef = key_is(k, "default");
            char *b = NULL;
            if (get_str(c, v, isdef ? "default" : "min_tls", 8, &b) < 0) return -1;
            if (isdef && (strcmp(b, "allow") == 0 || strcmp(b, "refuse") == 0)) net->refuse = b[0] == 'r';
            else if (!isdef && (strcmp(b, "1.3") == 0 || strcmp(b, "1.2") == 0)) net->min_tls = b[2] == '3' ? 13 : 12;
            else r = perr(c, v, isdef ? "default must be allow or refuse" : "min_tls must be \"1.2\" or \"1.3\"");
            free(b);
        } else if (key_is(k, "listen") || key_is(k, "peers")) {
            int lis = key_is(k, "listen");
            if (!v || v->type != YAML_SEQUENCE_NODE) return perr(c, v, "'%s' must be a list", lis ? "listen" : "peers");
            if (lis ? net->listen != NULL : net->peers != NULL) return perr(c, k, "duplicate key '%s'", lis ? "listen" : "peers");
            if (seq_len(v) > 64) return perr(c, v, "more than 64 entries in '%s'", lis ? "listen" : "peers");
            if (lis) net->listen = calloc(seq_len(v) + 1, sizeof *net->listen);
            else net->peers = calloc(seq_len(v) + 1, sizeof *net->peers);
            if (lis ? !net->listen : !net->peers) return oom(c);
            for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top && r == 0; it++)
                r = lis ? parse_listen(c, node(c, *it), &net->listen[net->n_listen++])
                        : parse_peer(c, node(c, *it), &net->peers[net->n_peers++]);
        } else
            return unknown(c, k, "network");
        if (r < 0) return -1;
    }
    if (net->n_listen && !net->certificate) return perr(c, n, "network: 'listen' needs a 'certificate'");
    if (net->instance && !net->certificate)
        return perr(c, n, "network: 'identity: instance' needs a 'certificate' (whose names the instance's carries)");
    for (size_t i = 0; i < net->n_listen; i++)
        for (size_t j = 0; j < i; j++)
            if (net->listen[i].port == net->listen[j].port) return perr(c, n, "network: port %ld is listed twice", net->listen[i].port);
    return 0;
}

static int parse_service(pctx *c, yaml_node_t *n, cas_service_def *s) {
    if (want_map(c, n, "a service") < 0) return -1;
    FOR_PAIRS(c, n, k, v) {
        int r;
        if (key_is(k, "name")) r = get_name(c, v, "name", &s->name);
        else if (key_is(k, "measurements")) r = get_list(c, v, "measurements", 64, 64, 2, &s->measurements);
        else if (key_is(k, "platforms")) r = get_list(c, v, "platforms", 256, 64, 2, &s->platforms);
        else if (key_is(k, "command")) r = get_list(c, v, "command", 256, 4096, 0, &s->command);
        else if (key_is(k, "volumes")) r = get_list(c, v, "volumes", 64, 64, 1, &s->volumes);
        else if (key_is(k, "cwd")) r = get_str(c, v, "cwd", 4096, &s->cwd);
        else if (key_is(k, "network")) r = parse_net(c, v, &s->net);
        else if (key_is(k, "snp") || key_is(k, "tdx") || key_is(k, "sgx")) r = parse_tee(c, k, v, s);
        else if (key_is(k, "append_args")) {
            char *b = NULL;
            if (get_str(c, v, "append_args", 8, &b) < 0) return -1;
            int t = strcmp(b, "true") == 0, f = strcmp(b, "false") == 0;
            free(b);
            if (!t && !f) return perr(c, v, "append_args must be true or false");
            s->append_args = t;
            r = 0;
        }
        else if (key_is(k, "environment")) {
            if ((r = want_map(c, v, "environment")) < 0) return -1;
            if (s->env_keys.n) return perr(c, k, "duplicate key 'environment'");
            if ((size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start) > 256)
                return perr(c, v, "more than 256 environment variables");
            FOR_PAIRS(c, v, ek, ev) {
                char *key = NULL, *val = NULL;
                if (get_str(c, ek, "environment variable name", 256, &key) < 0) return -1;
                if (!*key || strchr(key, '=')) {
                    free(key);
                    return perr(c, ek, "bad environment variable name");
                }
                for (size_t i = 0; i < s->env_keys.n; i++)
                    if (strcmp(s->env_keys.v[i], key) == 0) {
                        free(key);
                        return perr(c, ek, "duplicate environment variable");
                    }
                if (push(c, &s->env_keys, key) < 0) return -1;
                if (get_str(c, ev, "environment value", 65536, &val) < 0 || push(c, &s->env_values, val) < 0) return -1;
            }
        } else if (key_is(k, "files")) {
            if (!v || v->type != YAML_SEQUENCE_NODE) return perr(c, v, "'files' must be a list");
            if (s->files) return perr(c, k, "duplicate key 'files'");
            if (seq_len(v) > 64) return perr(c, v, "more than 64 files");
            s->files = calloc(seq_len(v) + 1, sizeof *s->files);
            if (!s->files) return oom(c);
            for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
                yaml_node_t *f = node(c, *it);
                cas_file_def *fd = &s->files[s->n_files++];
                if (want_map(c, f, "a file") < 0) return -1;
                FOR_PAIRS(c, f, fk, fv) {
                    if (key_is(fk, "path")) {
                        if (get_str(c, fv, "path", 4096, &fd->path) < 0) return -1;
                    } else if (key_is(fk, "content")) {
                        if (get_str(c, fv, "content", 128 * 1024, &fd->content) < 0) return -1;
                    } else
                        return unknown(c, fk, "a file");
                }
                if (!fd->path || fd->path[0] != '/') return perr(c, f, "a file needs an absolute 'path'");
                if (!fd->content) return perr(c, f, "a file needs 'content'");
            }
            r = 0;
        } else if (key_is(k, "console")) {
            r = parse_console(c, v, s);
        } else
            return unknown(c, k, "a service");
        if (r < 0) return -1;
    }
    if (!s->name) return perr(c, n, "a service needs a 'name'");
    if (!s->measurements.n) return perr(c, n, "service '%s' needs at least one measurement", s->name);
    return 0;
}

/* One export entry: NAME, or {session: NAME, owner: HEX64}. *owner is "" for the short form. */
static int parse_export_entry(pctx *c, yaml_node_t *e, char **session, char **owner) {
    if (!e) return perr(c, NULL, "an export entry is missing");
    if (e->type == YAML_SCALAR_NODE) {
        if (get_name(c, e, "export", session) < 0) return -1;
    } else {
        if (want_map(c, e, "an export entry") < 0) return -1;
        FOR_PAIRS(c, e, ek, ev) {
            int r;
            if (key_is(ek, "session")) r = get_name(c, ev, "session", session);
            else if (key_is(ek, "owner")) r = get_str(c, ev, "owner", 64, owner);
            else r = unknown(c, ek, "an export entry");
            if (r < 0) return -1;
        }
        if (!*session || !*owner)
            return perr(c, e, "an export entry needs 'session' and 'owner' (the importer's identity id)");
        if (!hex64_ok(*owner)) return perr(c, e, "'owner' of an export must be an identity id: 64 lower-case hex digits");
    }
    if (!*owner && !(*owner = calloc(1, 1))) return oom(c);
    return 0;
}

/* export: [entry, ...]. A grant names the importing session and the identity that owns it: a
 * session name alone can be taken by anyone once it is free. The short form NAME means "owned
 * by the exporter's owner". */
static int parse_exports(pctx *c, yaml_node_t *n, cas_secret_def *s) {
    if (!n || n->type != YAML_SEQUENCE_NODE) return perr(c, n, "'export' must be a list");
    if (s->export_to.n) return perr(c, n, "duplicate key 'export'");
    if (seq_len(n) > 64) return perr(c, n, "'export' has more than 64 entries");
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        char *session = NULL, *owner = NULL;
        if (parse_export_entry(c, node(c, *it), &session, &owner) < 0) {
            free(session);
            free(owner);
            return -1;
        }
        if (push(c, &s->export_to, session) < 0) {
            free(owner);
            return -1;
        }
        if (push(c, &s->export_owner, owner) < 0) return -1;
    }
    assert(s->export_to.n == s->export_owner.n);
    return 0;
}

static int parse_secret(pctx *c, yaml_node_t *n, cas_secret_def *s) {
    if (want_map(c, n, "a secret") < 0) return -1;
    char *kind = NULL;
    long size = -1, days = -1;
    int r = 0;
    FOR_PAIRS(c, n, k, v) {
        if (key_is(k, "name")) r = get_name(c, v, "name", &s->name);
        else if (key_is(k, "kind")) r = get_str(c, v, "kind", 16, &kind);
        else if (key_is(k, "size")) r = get_long(c, v, "size", 1, 4096, &size);
        else if (key_is(k, "value")) r = get_str(c, v, "value", 65536, &s->value);
        else if (key_is(k, "common_name")) r = get_str(c, v, "common_name", 64, &s->common_name);
        else if (key_is(k, "dns")) r = get_list(c, v, "dns", 32, 253, 0, &s->dns);
        else if (key_is(k, "ip")) r = get_list(c, v, "ip", 32, 45, 0, &s->ip);
        else if (key_is(k, "valid_days")) r = get_long(c, v, "valid_days", 1, 3650, &days);
        else if (key_is(k, "session")) r = get_name(c, v, "session", &s->import_session);
        else if (key_is(k, "secret")) r = get_name(c, v, "secret", &s->import_secret);
        else if (key_is(k, "owner")) r = get_str(c, v, "owner", 64, &s->import_owner);
        else if (key_is(k, "export")) r = parse_exports(c, v, s);
        else if (key_is(k, "uri")) {
            free(kind);
            return perr(c, k, "a secret cannot name a URI: CAS puts the session's identity (scp://) in its certificates");
        } else {
            free(kind);
            return unknown(c, k, "a secret");
        }
        if (r < 0) break;
    }
    if (r < 0) {
        free(kind);
        return -1;
    }
    if (!s->name) {
        free(kind);
        return perr(c, n, "a secret needs a 'name'");
    }
    const char *kinds[] = {NULL, "random", "ascii", "explicit", "x509", "imported"};
    for (int i = 1; i <= 5; i++)
        if (kind && strcmp(kind, kinds[i]) == 0) s->kind = (enum cas_secret_kind)i;
    free(kind);
    if (!s->kind) return perr(c, n, "secret '%s' needs a 'kind' of random, ascii, explicit, x509 or imported", s->name);
    s->size = size > 0 ? (size_t)size : 0;
    s->valid_days = days > 0 ? (int)days : 365;
    int needs_size = s->kind == SECRET_RANDOM || s->kind == SECRET_ASCII;
    if (needs_size != (size > 0)) return perr(c, n, "secret '%s': 'size' is %s", s->name, needs_size ? "required" : "not allowed here");
    if ((s->kind == SECRET_EXPLICIT) != (s->value != NULL))
        return perr(c, n, "secret '%s': 'value' is %s", s->name, s->kind == SECRET_EXPLICIT ? "required" : "not allowed here");
    int x = s->kind == SECRET_X509;
    if (x != (s->common_name != NULL) || (!x && (s->dns.n || s->ip.n || days > 0)))
        return perr(c, n, "secret '%s': 'common_name' (and dns, ip, valid_days) go with kind x509 only", s->name);
    if (s->common_name && !*s->common_name) return perr(c, n, "secret '%s': empty common_name", s->name);
    for (size_t i = 0; i < s->dns.n; i++)
        if (strspn(s->dns.v[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-*") != strlen(s->dns.v[i]) ||
            !*s->dns.v[i])
            return perr(c, n, "secret '%s': bad DNS name", s->name);
    for (size_t i = 0; i < s->ip.n; i++)
        if (strspn(s->ip.v[i], "0123456789abcdefABCDEF.:") != strlen(s->ip.v[i]) || !*s->ip.v[i])
            return perr(c, n, "secret '%s': bad IP address", s->name);
    int imp = s->kind == SECRET_IMPORTED;
    if (imp != (s->import_session != NULL) || imp != (s->import_secret != NULL))
        return perr(c, n, "secret '%s': 'session' and 'secret' go (together) with kind imported only", s->name);
    if (imp && s->export_to.n) return perr(c, n, "secret '%s': an imported secret cannot be exported again", s->name);
    if (s->import_owner && (!imp || !hex64_ok(s->import_owner)))
        return perr(c, n, "secret '%s': 'owner' goes with kind imported and is an identity id (64 lower-case hex digits)",
                    s->name);
    return 0;
}

/* Every $$SCP::NAME[:crt|:key|:ca]$$ must name a secret. */
static int check_placeholders(pctx *c, const cas_policy *p, const char *text, const char *where) {
    const char *s = text;
    while ((s = strstr(s, "$$SCP::")) != NULL) {
        const char *b = s + 7, *e = strstr(b, "$$");
        if (!e) return perr(c, NULL, "unterminated $$SCP:: placeholder in %s", where);
        size_t l = (size_t)(e - b);
        char name[80];
        if (l == 0 || l >= sizeof name) return perr(c, NULL, "bad placeholder in %s", where);
        memcpy(name, b, l);
        name[l] = 0;
        char *colon = strchr(name, ':');
        if (colon) {
            if (strcmp(colon, ":crt") != 0 && strcmp(colon, ":key") != 0 && strcmp(colon, ":ca") != 0)
                return perr(c, NULL, "bad placeholder suffix in %s (use :crt, :key or :ca)", where);
            *colon = 0;
        }
        const cas_secret_def *sd = cas_policy_secret(p, name);
        if (!sd) return perr(c, NULL, "placeholder in %s names unknown secret '%s'", where, name);
        if (colon && sd->kind != SECRET_X509 && sd->kind != SECRET_IMPORTED)
            return perr(c, NULL, "placeholder in %s: ':crt'/':key'/':ca' need an x509 secret", where);
        s = e + 2;
    }
    return 0;
}

/* The secrets a service's network section names exist and have the right kind: the
 * certificate an x509 secret (or an import), a CA a secret with a value (explicit or imported). */
static int check_net(pctx *c, const cas_policy *p, const cas_service_def *s) {
    const cas_service_net *net = &s->net;
    if (net->certificate) {
        const cas_secret_def *sd = cas_policy_secret(p, net->certificate);
        if (!sd || (sd->kind != SECRET_X509 && sd->kind != SECRET_IMPORTED))
            return perr(c, NULL, "service '%s': network certificate '%s' is not an x509 secret of the session", s->name,
                        net->certificate);
        if (net->instance && sd->kind != SECRET_X509)
            return perr(c, NULL, "service '%s': 'identity: instance' needs an x509 secret defined in the session, not "
                        "an import ('%s')", s->name, net->certificate);
    }
    for (size_t i = 0; i < net->n_listen + net->n_peers; i++) {
        const char *ca = i < net->n_listen ? net->listen[i].client_ca : net->peers[i - net->n_listen].ca;
        if (!ca || strcmp(ca, "service") == 0) continue;
        const cas_secret_def *sd = cas_policy_secret(p, ca);
        if (!sd || (sd->kind != SECRET_EXPLICIT && sd->kind != SECRET_IMPORTED))
            return perr(c, NULL, "service '%s': network CA '%s' must be 'service' or an explicit (PEM) secret", s->name, ca);
    }
    return 0;
}

static int validate(pctx *c, cas_policy *p) {
    for (size_t i = 0; i < p->n_services; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->services[i].name, p->services[j].name) == 0)
                return perr(c, NULL, "duplicate service '%s'", p->services[i].name);
    for (size_t i = 0; i < p->n_secrets; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->secrets[i].name, p->secrets[j].name) == 0)
                return perr(c, NULL, "duplicate secret '%s'", p->secrets[i].name);
    for (size_t i = 0; i < p->n_volumes; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->volumes[i].name, p->volumes[j].name) == 0)
                return perr(c, NULL, "duplicate volume '%s'", p->volumes[i].name);
    for (size_t i = 0; i < p->n_services; i++) {
        cas_service_def *s = &p->services[i];
        char where[128];
        snprintf(where, sizeof where, "service '%s'", s->name);
        for (size_t j = 0; j < s->command.n; j++)
            if (check_placeholders(c, p, s->command.v[j], where) < 0) return -1;
        for (size_t j = 0; j < s->env_values.n; j++)
            if (check_placeholders(c, p, s->env_values.v[j], where) < 0) return -1;
        for (size_t j = 0; j < s->n_files; j++)
            if (check_placeholders(c, p, s->files[j].content, where) < 0) return -1;
        for (size_t j = 0; j < s->volumes.n; j++)
            if (!cas_policy_volume(p, s->volumes.v[j]))
                return perr(c, NULL, "service '%s' mounts unknown volume '%s'", s->name, s->volumes.v[j]);
        if (check_net(c, p, s) < 0) return -1;
    }
    for (size_t i = 0; i < p->n_network; i++)
        if (p->network[i].secret && !cas_policy_secret(p, p->network[i].secret))
            return perr(c, NULL, "network rule names unknown secret '%s'", p->network[i].secret);
    return 0;
}

/* Refuse anchors/aliases (no expansion bombs), deep nesting and huge documents up front. */
static int prescan(const char *text, size_t len, scp_err *err) {
    yaml_parser_t ps;
    if (!yaml_parser_initialize(&ps)) return scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
    int depth = 0, nodes = 0, docs = 0, rc = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&ps, &ev)) {
            rc = scp_fail(err, SCP_E_INVAL, EINVAL, "policy is not valid YAML: %s at line %zu",
                          ps.problem ? ps.problem : "syntax error", (size_t)ps.problem_mark.line + 1);
            break;
        }
        yaml_event_type_t t = ev.type;
        size_t line = (size_t)ev.start_mark.line + 1;
        int anchored = (t == YAML_SCALAR_EVENT && ev.data.scalar.anchor) ||
                       (t == YAML_SEQUENCE_START_EVENT && ev.data.sequence_start.anchor) ||
                       (t == YAML_MAPPING_START_EVENT && ev.data.mapping_start.anchor);
        yaml_event_delete(&ev);
        if (t == YAML_ALIAS_EVENT || anchored) {
            rc = scp_fail(err, SCP_E_INVAL, EINVAL, "policy line %zu: anchors and aliases are not allowed", line);
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
            rc = scp_fail(err, SCP_E_INVAL, EINVAL, "policy line %zu: only one YAML document is allowed", line);
            break;
        }
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) depth++;
        if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) depth--;
        if (t == YAML_SCALAR_EVENT || t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) nodes++;
        if (depth > MAX_DEPTH || nodes > MAX_NODES) {
            rc = scp_fail(err, SCP_E_INVAL, EINVAL, "policy line %zu: nested too deeply or too many nodes", line);
            break;
        }
        if (t == YAML_STREAM_END_EVENT) break;
    }
    yaml_parser_delete(&ps);
    return rc;
}

cas_policy *cas_policy_parse(const char *text, size_t len, scp_err *err) {
    if (len > POLICY_MAX_DOC) {
        scp_fail(err, SCP_E_INVAL, EINVAL, "policy larger than %d bytes", POLICY_MAX_DOC);
        return NULL;
    }
    if (prescan(text, len, err) < 0) return NULL;
    yaml_parser_t ps;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&ps)) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
    if (!yaml_parser_load(&ps, &doc)) {
        scp_fail(err, SCP_E_INVAL, EINVAL, "policy is not valid YAML: %s", ps.problem ? ps.problem : "syntax error");
        yaml_parser_delete(&ps);
        return NULL;
    }
    yaml_parser_delete(&ps);
    pctx c = {&doc, err};
    cas_policy *p = calloc(1, sizeof *p);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int r = 0;
    if (!p) {
        r = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    if (!root) {
        r = perr(&c, NULL, "the document is empty");
        goto out;
    }
    if ((r = want_map(&c, root, "the policy")) < 0) goto out;
    FOR_PAIRS(&c, root, k, v) {
        if (key_is(k, "name")) r = get_name(&c, v, "name", &p->name);
        else if (key_is(k, "predecessor")) {
            r = get_str(&c, v, "predecessor", 64, &p->predecessor);
            if (r == 0 && !hex64_ok(p->predecessor)) r = perr(&c, v, "'predecessor' must be 64 lower-case hex digits");
        } else if (key_is(k, "version")) {
            long ver;
            r = get_long(&c, v, "version", 1, 1, &ver);
        } else if (key_is(k, "services") || key_is(k, "secrets") || key_is(k, "volumes") || key_is(k, "network")) {
            if (!v || v->type != YAML_SEQUENCE_NODE) {
                r = perr(&c, v, "'%.*s' must be a list", (int)k->data.scalar.length, (const char *)k->data.scalar.value);
                goto out;
            }
            size_t n = seq_len(v);
            if (key_is(k, "services")) {
                if (p->services || n > 64) { r = perr(&c, v, "duplicate 'services' or more than 64"); goto out; }
                p->services = calloc(n + 1, sizeof *p->services);
                if (!p->services) { r = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory"); goto out; }
                for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top && r == 0; it++)
                    r = parse_service(&c, node(&c, *it), &p->services[p->n_services++]);
            } else if (key_is(k, "secrets")) {
                if (p->secrets || n > 256) { r = perr(&c, v, "duplicate 'secrets' or more than 256"); goto out; }
                p->secrets = calloc(n + 1, sizeof *p->secrets);
                if (!p->secrets) { r = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory"); goto out; }
                for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top && r == 0; it++)
                    r = parse_secret(&c, node(&c, *it), &p->secrets[p->n_secrets++]);
            } else if (key_is(k, "volumes")) {
                if (p->volumes || n > 64) { r = perr(&c, v, "duplicate 'volumes' or more than 64"); goto out; }
                p->volumes = calloc(n + 1, sizeof *p->volumes);
                if (!p->volumes) { r = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory"); goto out; }
                for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top && r == 0; it++) {
                    yaml_node_t *vn = node(&c, *it);
                    cas_volume_def *vd = &p->volumes[p->n_volumes++];
                    if ((r = want_map(&c, vn, "a volume")) < 0) break;
                    FOR_PAIRS(&c, vn, vk, vv) {
                        if (r < 0) break;
                        if (key_is(vk, "name")) r = get_name(&c, vv, "name", &vd->name);
                        else if (key_is(vk, "path")) r = get_str(&c, vv, "path", 4096, &vd->path);
                        else if (key_is(vk, "chunk_size")) {
                            r = get_long(&c, vv, "chunk_size", SCP_VOLUME_MIN_CHUNK, SCP_VOLUME_MAX_CHUNK, &vd->chunk_size);
                            if (r == 0 && !scp_volume_chunk_ok((uint64_t)vd->chunk_size))
                                r = perr(&c, vv, "'chunk_size' must be a power of two (4096, 8192, ..., 65536)");
                        } else r = unknown(&c, vk, "a volume");
                    }
                    if (r == 0 && (!vd->name || !vd->path || vd->path[0] != '/'))
                        r = perr(&c, vn, "a volume needs a 'name' and an absolute 'path'");
                }
            } else {
                if (p->network || n > 256) { r = perr(&c, v, "duplicate 'network' or more than 256"); goto out; }
                p->network = calloc(n + 1, sizeof *p->network);
                if (!p->network) { r = scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory"); goto out; }
                for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top && r == 0; it++) {
                    yaml_node_t *nn = node(&c, *it);
                    cas_net_rule *nr = &p->network[p->n_network++];
                    if ((r = want_map(&c, nn, "a network rule")) < 0) break;
                    FOR_PAIRS(&c, nn, nk, nv) {
                        if (r < 0) break;
                        if (key_is(nk, "port")) r = get_long(&c, nv, "port", 1, 65535, &nr->port);
                        else if (key_is(nk, "peer")) r = get_str(&c, nv, "peer", 300, &nr->peer);
                        else if (key_is(nk, "secret")) r = get_name(&c, nv, "secret", &nr->secret);
                        else r = unknown(&c, nk, "a network rule");
                    }
                    if (r == 0 && !nr->port && !nr->peer) r = perr(&c, nn, "a network rule needs a 'port' or a 'peer'");
                }
            }
        } else
            r = unknown(&c, k, "the policy");
        if (r < 0) goto out;
    }
    if (!p->name) r = perr(&c, root, "the policy needs a 'name'");
    else if (!p->n_services) r = perr(&c, root, "the policy needs at least one service");
    else r = validate(&c, p);
out:
    yaml_document_delete(&doc);
    if (r < 0) {
        cas_policy_free(p);
        return NULL;
    }
    return p;
}

void cas_policy_free(cas_policy *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_services; i++) {
        cas_service_def *s = &p->services[i];
        free(s->name);
        free(s->cwd);
        free_list(&s->measurements);
        free_list(&s->platforms);
        free_list(&s->command);
        free_list(&s->env_keys);
        free_list(&s->env_values);
        free_list(&s->volumes);
        for (size_t j = 0; j < s->n_files; j++) {
            free(s->files[j].path);
            free(s->files[j].content);
        }
        free(s->files);
        free(s->net.certificate);
        for (size_t j = 0; j < s->net.n_listen; j++) {
            free(s->net.listen[j].client_ca);
            free(s->net.listen[j].client_session);
            free(s->net.listen[j].client_owner);
            free(s->net.listen[j].client_service);
            free(s->net.listen[j].client_measurement);
            free(s->net.listen[j].client_platform);
        }
        for (size_t j = 0; j < s->net.n_peers; j++) {
            free(s->net.peers[j].host);
            free(s->net.peers[j].name);
            free(s->net.peers[j].ca);
            free(s->net.peers[j].session);
            free(s->net.peers[j].owner);
            free(s->net.peers[j].certificate);
            free(s->net.peers[j].service);
            free(s->net.peers[j].measurement);
            free(s->net.peers[j].platform);
        }
        free(s->net.listen);
        free(s->net.peers);
    }
    for (size_t i = 0; i < p->n_secrets; i++) {
        cas_secret_def *s = &p->secrets[i];
        free(s->name);
        free(s->value);
        free(s->common_name);
        free(s->import_session);
        free(s->import_secret);
        free(s->import_owner);
        free_list(&s->dns);
        free_list(&s->ip);
        free_list(&s->export_to);
        free_list(&s->export_owner);
    }
    for (size_t i = 0; i < p->n_volumes; i++) {
        free(p->volumes[i].name);
        free(p->volumes[i].path);
    }
    for (size_t i = 0; i < p->n_network; i++) {
        free(p->network[i].peer);
        free(p->network[i].secret);
    }
    free(p->services);
    free(p->secrets);
    free(p->volumes);
    free(p->network);
    free(p->name);
    free(p->predecessor);
    free(p);
}

const cas_service_def *cas_policy_service(const cas_policy *p, const char *name) {
    for (size_t i = 0; i < p->n_services; i++)
        if (p->services[i].name && strcmp(p->services[i].name, name) == 0) return &p->services[i];
    return NULL;
}

const cas_secret_def *cas_policy_secret(const cas_policy *p, const char *name) {
    for (size_t i = 0; i < p->n_secrets; i++)
        if (p->secrets[i].name && strcmp(p->secrets[i].name, name) == 0) return &p->secrets[i];
    return NULL;
}

const cas_volume_def *cas_policy_volume(const cas_policy *p, const char *name) {
    for (size_t i = 0; i < p->n_volumes; i++)
        if (p->volumes[i].name && strcmp(p->volumes[i].name, name) == 0) return &p->volumes[i];
    return NULL;
}

void cas_secret_spec(const cas_secret_def *s, char out[65]) {
    /* kind, size, value, cn, sans, days, import: joined with separators that cannot occur
     * unescaped in a way that matters (explicit values are hashed, not stored here) */
    char buf[1024];
    uint8_t vh[32] = {0};
    if (s->value) scp_sha256_buf(s->value, strlen(s->value), vh);
    char vhex[65];
    scp_hex(vh, 32, vhex);
    int n = snprintf(buf, sizeof buf, "%d|%zu|%s|%s|%d|%s|%s|", (int)s->kind, s->size, vhex,
                     s->common_name ? s->common_name : "", s->valid_days, s->import_session ? s->import_session : "",
                     s->import_secret ? s->import_secret : "");
    uint8_t h[32];
    /* include the SANs by chaining the hash */
    scp_sha256_buf(buf, n > 0 ? (size_t)n : 0, h);
    for (size_t i = 0; i < s->dns.n + s->ip.n; i++) {
        const char *x = i < s->dns.n ? s->dns.v[i] : s->ip.v[i - s->dns.n];
        char b2[400];
        char hh[65];
        scp_hex(h, 32, hh);
        int m = snprintf(b2, sizeof b2, "%s|%s|%s", hh, i < s->dns.n ? "D" : "I", x);
        scp_sha256_buf(b2, m > 0 ? (size_t)m : 0, h);
    }
    scp_hex(h, 32, out);
}
