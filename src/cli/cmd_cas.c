/* cli/cmd_cas.c - scpctl cas: run the CAS daemon, check it, make identities, read the audit log. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "cas/store.h"
#include "cli/cas_common.h"
#include "cli/commands.h"
#include "scp/attest_hw.h"
#include "scp/cas.h"

static const cli_sub subs[] = {
    {"serve", "scpctl cas serve --data DIR --listen ADDR:PORT [--admin ID|IDENTITY_FILE]... [--port-file FILE]\n"
              "                        [--workers N] [--read-timeout-ms N] [--nonce-ttl-ms N] [--accept-audit-reset]\n"
              "                        [--collateral DIR] [--test-snp-ark SHA256] [--test-sgx-root SHA256]\n"
              "                        [--store postgresql://USER@HOST/DB]   (default: DIR/cas.db; no password\n"
              "                        in it: libpq's password file)\n"},
    {"status", "scpctl cas status [--cas HOST:PORT --pin FINGERPRINT]   (a given --pin is remembered)\n"},
    {"identity", "scpctl cas identity [--out FILE] [--show]\n"},
    {"audit", "scpctl cas audit [--from N] [--limit N] [--verify] [--json]\n"},
    {"collateral", "scpctl cas collateral import --dir COLLATERAL_DIR FILE...   (AMD/Intel attestation collateral)\n"},
};

static const cli_cmd_usage usage = {
    subs, sizeof subs / sizeof subs[0], NULL,
    "Client options (all but serve): --cas HOST:PORT, --pin FINGERPRINT, --identity FILE; defaults\n"
    "from SCP_CAS, SCP_CAS_PIN, SCP_IDENTITY, $SCP_HOME/cas.conf and $SCP_HOME/identity.pem\n"
    "(SCP_HOME defaults to ~/.scp).\n",
};

/* An integer option's value in [min, max]: 0, or -1 after the usage error. */
static int opt_int(const char *name, const char *v, int min, int max, int *out) {
    int64_t n;
    if (scp_parse_i64(v, min, max, &n) < 0) {
        cli_usage_error("cas serve: %s wants a whole number from %d to %d, not '%s'", name, min, max, v);
        return -1;
    }
    *out = (int)n;
    return 0;
}

/* cas serve's announcements: on stdout, where scripts read the fingerprint to pin */
static void print_line(void *ctx, const char *line) {
    (void)ctx;
    printf("scp-cas: %s\n", line);
    fflush(stdout);
}

static int serve(int argc, char **argv) {
    scp_cas_server_opts o = {0};
    const char *admins[64];
    char ids[64][65];
    size_t na = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--accept-audit-reset") == 0) {
            o.accept_audit_reset = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("cas serve: '%s' needs a value (or is unknown)", a);
        const char *v = argv[++i];
        if (strcmp(a, "--data") == 0) o.data_dir = v;
        else if (strcmp(a, "--store") == 0) {
            if (!cas_store_is_pg(v))
                return cli_usage_error("cas serve: --store takes a PostgreSQL connection string (postgresql://USER@HOST/DB "
                                       "or 'host=... dbname=...'); without it CAS keeps DATA/cas.db");
            o.store = v;
        } else if (strcmp(a, "--listen") == 0) o.listen = v;
        else if (strcmp(a, "--port-file") == 0) o.port_file = v;
        else if (strcmp(a, "--workers") == 0) {
            if (opt_int(a, v, 1, 1024, &o.workers) < 0) return EXIT_USAGE;
        } else if (strcmp(a, "--read-timeout-ms") == 0) {
            if (opt_int(a, v, 1, 3600 * 1000, &o.read_timeout_ms) < 0) return EXIT_USAGE;
        } else if (strcmp(a, "--nonce-ttl-ms") == 0) {
            if (opt_int(a, v, 1, 24 * 3600 * 1000, &o.nonce_ttl_ms) < 0) return EXIT_USAGE;
        }
        else if (strcmp(a, "--collateral") == 0) o.collateral_dir = v;
        else if (strcmp(a, "--test-snp-ark") == 0) o.test_snp_ark = v;
        else if (strcmp(a, "--test-sgx-root") == 0) o.test_sgx_root = v;
        else if (strcmp(a, "--admin") == 0) {
            if (na == 64) return cli_usage_error("at most 64 admins");
            if (strlen(v) == 64 && strspn(v, "0123456789abcdefABCDEF") == 64) {
                snprintf(ids[na], 65, "%s", v);
            } else {
                scp_err e = {0};
                if (scp_cas_identity_id(v, ids[na], &e) < 0) return cli_fail(&e);
            }
            admins[na] = ids[na];
            na++;
        } else
            return cli_usage_error("cas serve: unknown option '%s'", a);
    }
    if (!o.data_dir || !o.listen) return cli_usage_error("cas serve needs --data DIR and --listen ADDR:PORT");
    o.admins = admins;
    o.n_admins = na;
    o.announce = print_line;
    scp_err e = {0};
    if (scp_cas_serve(&o, &e) < 0) return cli_fail(&e);
    return EXIT_OK;
}

static int status(int argc, char **argv) {
    cli_cas o = {0};
    for (int i = 1; i < argc; i++) {
        int r = cli_cas_opt(argc, argv, &i, &o);
        if (r < 0) return cli_usage_error("'%s' needs a value", argv[i]);
        if (r == 0) return cli_usage_error("cas status: unknown option '%s'", argv[i]);
    }
    const char *given_pin = o.pin;
    int code = 0;
    scp_cas_client *c = cli_cas_client(&o, &code);
    if (!c) return code;
    json_t *j = NULL;
    code = cli_cas_call(c, "GET", "/v1/status", NULL, NULL, 0, &j);
    if (code == EXIT_OK) {
        cli_print_json(j);
        json_decref(j);
        if (given_pin) {
            scp_err e = {0};
            if (cli_cas_save_conf(o.addr, given_pin, &e) < 0) code = cli_fail(&e);
            else fprintf(stderr, "scpctl: pinned CA %s for %s in %s/cas.conf\n", given_pin, o.addr, cli_scp_home());
        }
    }
    scp_cas_client_free(c);
    return code;
}

static int identity(int argc, char **argv) {
    const char *out = NULL;
    int show = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--show") == 0) show = 1;
        else return cli_usage_error("cas identity: unknown option '%s'", argv[i]);
    }
    char path[4096], id[65];
    if (!out) {
        const char *home = cli_scp_home();
        if (mkdir(home, 0700) < 0 && errno != EEXIST) {
            perror(home);
            return EXIT_FAILURE_;
        }
        snprintf(path, sizeof path, "%s/identity.pem", home);
        out = path;
    }
    scp_err e = {0};
    if (show ? scp_cas_identity_id(out, id, &e) : scp_cas_identity_create(out, id, &e)) return cli_fail(&e);
    if (!show) fprintf(stderr, "scpctl: created identity %s\n", out);
    printf("%s\n", id);
    return EXIT_OK;
}

static int audit(int argc, char **argv) {
    cli_cas o = {0};
    long long from = 1, limit = 1000;
    int verify = 0, as_json = 0;
    for (int i = 1; i < argc; i++) {
        int r = cli_cas_opt(argc, argv, &i, &o);
        if (r < 0) return cli_usage_error("'%s' needs a value", argv[i]);
        if (r) continue;
        if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
            int64_t n;
            if (scp_parse_i64(argv[i + 1], 1, INT64_MAX, &n) < 0)
                return cli_usage_error("cas audit: --from wants a record number from 1 up, not '%s'", argv[i + 1]);
            from = n;
            i++;
        } else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
            int64_t n;
            if (scp_parse_i64(argv[i + 1], 1, 10000, &n) < 0)
                return cli_usage_error("cas audit: --limit wants a number from 1 to 10000, not '%s'", argv[i + 1]);
            limit = n;
            i++;
        }
        else if (strcmp(argv[i], "--verify") == 0) verify = 1;
        else if (strcmp(argv[i], "--json") == 0) as_json = 1;
        else return cli_usage_error("cas audit: unknown option '%s'", argv[i]);
    }
    int code = 0;
    scp_cas_client *c = cli_cas_client(&o, &code);
    if (!c) return code;
    char path[128];
    snprintf(path, sizeof path, "/v1/audit?from=%lld&limit=%lld", from, limit);
    json_t *j = NULL;
    code = cli_cas_call(c, "GET", path, NULL, NULL, 0, &j);
    scp_cas_client_free(c);
    if (code != EXIT_OK) return code;
    if (as_json) {
        cli_print_json(j);
    } else {
        size_t i;
        json_t *r;
        /* one row a line, tab-separated: the fields quote client text (a refused policy's key,
         * say), so control characters are escaped or a client could forge rows */
        static const char *const fields[] = {"actor", "action", "session", "service", "measurement",
                                             "platform", "decision", "reason"};
        for (i = 0; (r = json_array_get(json_object_get(j, "entries"), i)) != NULL; i++) {
            printf("%lld\t%lld", (long long)json_integer_value(json_object_get(r, "seq")),
                   (long long)json_integer_value(json_object_get(r, "ts_ms")));
            for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
                const char *v = json_string_value(json_object_get(r, fields[f]));
                char esc[1200]; /* 4 bytes per byte of the longest field (256) and more */
                printf("\t%s", scp_escape_text(v ? v : "", esc, sizeof esc));
            }
            putchar('\n');
        }
    }
    int ok = json_is_true(json_object_get(j, "verified"));
    long long bad = (long long)json_integer_value(json_object_get(j, "first_bad"));
    long long count = (long long)json_integer_value(json_object_get(j, "count"));
    long long reset_at = (long long)json_integer_value(json_object_get(j, "reset_at"));
    fflush(stdout); /* the verdict comes after the rows, also when both go to one pipe */
    if (ok) {
        fprintf(stderr, "scpctl: audit chain verified: %lld entries intact\n", count);
        if (reset_at > 0)
            fprintf(stderr,
                    "scpctl: note: the operator accepted a reset of this log at entry %lld (rows before it were "
                    "lost or removed; its reason says what was found)\n",
                    reset_at);
    } else {
        fprintf(stderr, "scpctl: AUDIT CHAIN BROKEN at entry %lld: %s\n", bad,
                json_string_value(json_object_get(j, "problem")) ? json_string_value(json_object_get(j, "problem"))
                                                                 : "the log was edited, reordered or truncated");
    }
    json_decref(j);
    return (!ok && verify) ? EXIT_INTEGRITY : EXIT_OK;
}

/* scpctl cas collateral import --dir DIR FILE...: file each fetched collateral file where the
 * hardware verifiers read it (docs/attestation-hw.md). */
static int collateral(int argc, char **argv) {
    const char *dir = NULL;
    int first = 0;
    if (argc < 2 || strcmp(argv[1], "import") != 0)
        return cli_usage_error("cas collateral: the only subcommand is 'import --dir DIR FILE...'");
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) dir = argv[++i];
        else if (argv[i][0] == '-') return cli_usage_error("cas collateral import: unknown option '%s'", argv[i]);
        else if (!first) first = i;
    }
    if (!dir || !first) return cli_usage_error("cas collateral import needs --dir DIR and at least one FILE");
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0) {
            i++;
            continue;
        }
        uint8_t *buf = NULL;
        size_t len = 0;
        char dest[4096];
        scp_err e;
        if (scp_read_file(AT_FDCWD, argv[i], 1 << 20, &buf, &len, &e) < 0 ||
            scp_hw_collateral_import(dir, buf, len, dest, sizeof dest, &e) < 0) {
            free(buf);
            scp_err_prefix(&e, "%s", argv[i]);
            return cli_fail(&e);
        }
        free(buf);
        printf("%s -> %s\n", argv[i], dest);
    }
    return EXIT_OK;
}

int cmd_cas(int argc, char **argv) {
    int code = cli_usage_start(&usage, argc, argv);
    if (code >= 0) return code;
    const char *sub = argv[1];
    if (strcmp(sub, "serve") == 0) return serve(argc - 1, argv + 1);
    if (strcmp(sub, "status") == 0) return status(argc - 1, argv + 1);
    if (strcmp(sub, "identity") == 0) return identity(argc - 1, argv + 1);
    if (strcmp(sub, "audit") == 0) return audit(argc - 1, argv + 1);
    return collateral(argc - 1, argv + 1);
}
