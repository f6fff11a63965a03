/* cli/cmd_platform.c - scpctl platform: sim platform keys, enrolling and revoking platforms in
 * CAS, measuring programs, and the runtime's attestation flow (for tests and debugging). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "cli/cas_common.h"
#include "cli/commands.h"
#include "runtime/attest_run.h"
#include "scp/attest.h"

static const cli_sub subs[] = {
    {"create-key", "scpctl platform create-key FILE          make a sim platform key (0600; root only)\n"},
    {"id", "scpctl platform id FILE                  print the platform's id and public key\n"
           "scpctl platform id --tee tdx|snp|auto    this TDX/SEV-SNP guest's id and hardware identity (pubkey)\n"},
    {"enroll", "scpctl platform enroll --name NAME (--key FILE | [--backend sim|snp|tdx|sgx] --pubkey HEX)   (admin)\n"},
    {"revoke", "scpctl platform revoke ID                (admin)\n"},
    {"list", "scpctl platform list                     (admin)\n"},
    {"measure", "scpctl platform measure [--rootfs DIR] [--net host|none] [--cap NAME]...\n"
                "            [--trusted PATH]... -- PROGRAM   print the measurement of PROGRAM (resolved in PATH, or\n"
                "            inside DIR), its loader and libraries, the shield runtime, the --trusted files and the\n"
                "            service's configuration (these options), as 'scpctl run --cas' with the same options\n"
                "            computes it; the configuration's hash goes to stderr (SCP_MEASURE_VERBOSE=1: its text)\n"
                "scpctl platform measure [--config FILE] FILE...   print the measurement of these files (hex)\n"},
    {"attest", "scpctl platform attest (--key FILE | --tee tdx|snp|auto) --session S --service N --measurement HEX\n"
               "            [--instance-pubkey HEX]   run the runtime's attestation and print the configuration CAS\n"
               "            releases (with --instance-pubkey, 130 hex digits: an uncompressed P-256 point that the\n"
               "            evidence carries, for a per-instance network certificate)\n"
               "            (it holds secrets: for tests and debugging only)\n"},
    {"report-tag", "scpctl platform report-tag --session S --service N --volume V --tag HEX --token-file FILE\n"
                   "            report a volume's new tag (the token is the configuration's volume_token)\n"},
    {"serve", "scpctl platform serve --key FILE [--socket PATH]   the local attestation service for secure\n"
              "            images in containers (default socket /run/scp/attest.sock; docs/image.md)\n"},
    {"evidence", "scpctl platform evidence --nonce HEX --pubkey HEX [--socket PATH]   ask it (tests, debugging)\n"},
};

static const cli_cmd_usage usage = {
    subs, sizeof subs / sizeof subs[0], NULL,
    "Client options: --cas HOST:PORT --pin FINGERPRINT --identity FILE (see 'scpctl cas --help').\n"
    "The sim backend does NOT protect memory; it exists for development and tests.\n",
};

int cmd_platform(int argc, char **argv) {
    int usage_code = cli_usage_start(&usage, argc, argv);
    if (usage_code >= 0) return usage_code;
    const char *sub = argv[1];
    if (strcmp(sub, "serve") == 0) return cmd_platform_serve(argc, argv);
    if (strcmp(sub, "evidence") == 0) return cmd_platform_evidence(argc, argv);
    cli_cas o = {0};
    const char *name = NULL, *key = NULL, *pubhex = NULL, *session = NULL, *service = NULL, *meas = NULL,
               *config = NULL, *volume = NULL, *tag = NULL, *token = NULL, *rootfs = NULL, *backend = NULL,
               *tee = NULL, *ikhex = NULL;
    const char *pos[64], *trusted[SCP_ELF_MAX_OBJECTS / 2];
    int npos = 0, prog_form = 0;
    struct scp_attest_run_conf conf = {0};
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0 && strcmp(sub, "measure") == 0) { /* measure -- PROG: what run measures */
            prog_form = 1;
            if (i + 2 != argc) return cli_usage_error("platform measure: one PROGRAM after --");
            pos[npos++] = argv[i + 1];
            break;
        }
        int r = cli_cas_opt(argc, argv, &i, &o);
        if (r < 0) return cli_usage_error("'%s' needs a value", argv[i]);
        if (r) continue;
        const char *a = argv[i];
        const char **dst = strcmp(a, "--name") == 0          ? &name
                           : strcmp(a, "--key") == 0         ? &key
                           : strcmp(a, "--pubkey") == 0      ? &pubhex
                           : strcmp(a, "--session") == 0     ? &session
                           : strcmp(a, "--service") == 0     ? &service
                           : strcmp(a, "--measurement") == 0 ? &meas
                           : strcmp(a, "--config") == 0      ? &config
                           : strcmp(a, "--volume") == 0      ? &volume
                           : strcmp(a, "--tag") == 0         ? &tag
                           : strcmp(a, "--token-file") == 0  ? &token
                           : strcmp(a, "--rootfs") == 0      ? &rootfs
                           : strcmp(a, "--backend") == 0     ? &backend
                           : strcmp(a, "--tee") == 0         ? &tee
                           : strcmp(a, "--instance-pubkey") == 0 ? &ikhex
                                                             : NULL;
        if (!strcmp(a, "--trusted") || !strcmp(a, "--net") || !strcmp(a, "--cap")) {
            if (i + 1 >= argc) return cli_usage_error("'%s' needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--net")) {
                if (strcmp(v, "host") != 0 && strcmp(v, "none") != 0) return cli_usage_error("--net wants host or none");
                conf.net_none = !strcmp(v, "none");
            } else if (!strcmp(a, "--cap")) {
                int cap = scp_container_cap_from_name(v);
                if (cap < 0) return cli_usage_error("--cap needs a capability name such as net_bind_service");
                conf.keep_caps |= 1ull << cap;
            } else {
                if (v[0] != '/' || conf.ntrusted >= SCP_ELF_MAX_OBJECTS / 2)
                    return cli_usage_error("--trusted needs an absolute PATH (at most %u)", SCP_ELF_MAX_OBJECTS / 2);
                trusted[conf.ntrusted++] = v;
                conf.trusted = trusted;
            }
            continue;
        }
        if (dst) {
            if (i + 1 >= argc) return cli_usage_error("'%s' needs a value", a);
            *dst = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("platform: unknown option '%s'", a);
        } else if (npos < 64) {
            pos[npos++] = a;
        } else {
            return cli_usage_error("platform: too many arguments");
        }
    }
    scp_err e = {0};
    if (strcmp(sub, "create-key") == 0) {
        if (npos != 1) return cli_usage_error("platform create-key takes one FILE");
        uint8_t pub[32], id[32];
        char hex[65];
        if (scp_sim_platform_create(pos[0], &e) < 0 || scp_sim_platform_pubkey(pos[0], pub, id, &e) < 0)
            return cli_fail(&e);
        scp_hex(id, 32, hex);
        printf("%s\n", hex);
        return EXIT_OK;
    }
    int hw = 0; /* --tee: the backend it names */
    char said[256];
    if (tee) {
        if (strcmp(tee, "sim") == 0) return cli_usage_error("--tee sim: give the sim platform key instead (--key FILE)");
        if ((hw = scp_tee_select(tee, said, sizeof said, &e)) < 0) return cli_fail(&e);
        if (said[0]) fprintf(stderr, "scpctl: %s\n", said);
        if (hw == SCP_TEE_SIM) {
            scp_fail(&e, SCP_E_NOENT, ENOENT, "--tee %s: this machine is no TDX or SEV-SNP guest", tee);
            return cli_fail(&e);
        }
    }
    if (strcmp(sub, "id") == 0 && hw) {
        if (npos) return cli_usage_error("platform id --tee takes no FILE");
        uint8_t zero[32] = {0}, ident[32], id[32], *ev = NULL;
        size_t evlen = 0;
        char h1[65], h2[65];
        if (scp_tsm_evidence(hw, zero, zero, zero, ident, &ev, &evlen, &e) < 0) return cli_fail(&e);
        free(ev);
        scp_sha256_buf(ident, 32, id);
        scp_hex(id, 32, h1);
        scp_hex(ident, 32, h2);
        printf("id %s\npubkey %s\nbackend %s\n", h1, h2, hw == SCP_TEE_TDX ? "tdx" : "snp");
        return EXIT_OK;
    }
    if (strcmp(sub, "id") == 0) {
        if (npos != 1) return cli_usage_error("platform id takes one FILE (or --tee)");
        uint8_t pub[32], id[32];
        char h1[65], h2[65];
        if (scp_sim_platform_pubkey(pos[0], pub, id, &e) < 0) return cli_fail(&e);
        scp_hex(id, 32, h1);
        scp_hex(pub, 32, h2);
        printf("id %s\npubkey %s\n", h1, h2);
        return EXIT_OK;
    }
    if (strcmp(sub, "measure") == 0 && prog_form) {
        if (rootfs && rootfs[0] != '/') return cli_usage_error("--rootfs needs an absolute DIR");
        if (config || npos != 1) return cli_usage_error("platform measure -- PROGRAM takes no --config and one program");
        scp_elf_set *set = calloc(1, sizeof *set);
        struct scp_attest_run_identity id;
        char hex[65];
        if (!set) return cli_usage_error("out of memory");
        int r = scp_attest_run_measure(pos[0], NULL, rootfs, &conf, set, &id, &e);
        if (r == 0) {
            if (getenv("SCP_MEASURE_VERBOSE")) {
                for (size_t i = 0; i < set->n; i++) fprintf(stderr, "measured %s\n", set->path[i]);
                fprintf(stderr, "--- configuration:\n%s---\n", id.config);
            }
            scp_hex(id.config_hash, 32, hex);
            fprintf(stderr, "configuration %s (%zu files in the trusted manifest)\n", hex, set->n);
            scp_elf_set_close(set, -1);
            scp_hex(id.m, 32, hex);
            scp_attest_run_identity_free(&id);
        }
        free(set);
        if (r < 0) return cli_fail(&e);
        printf("%s\n", hex);
        return EXIT_OK;
    }
    if (strcmp(sub, "measure") == 0) {
        if (rootfs || conf.ntrusted || conf.net_none || conf.keep_caps)
            return cli_usage_error("--rootfs, --net, --cap and --trusted go with platform measure -- PROGRAM");
        if (npos < 1) return cli_usage_error("platform measure: no FILE to measure");
        char *cfg = NULL;
        size_t cl = 0;
        if (config && scp_read_path(config, 16u << 20, &cfg, &cl, &e) < 0) return cli_fail(&e);
        uint8_t m[32];
        char hex[65];
        int r = scp_attest_measure(pos, (size_t)npos, cfg, cl, m, &e);
        free(cfg);
        if (r < 0) return cli_fail(&e);
        scp_hex(m, 32, hex);
        printf("%s\n", hex);
        return EXIT_OK;
    }
    int code = 0;
    json_t *j = NULL;
    if (strcmp(sub, "enroll") == 0) {
        uint8_t pub[32], id[32];
        char hex[65];
        if (!name || (!key == !pubhex)) return cli_usage_error("platform enroll needs --name NAME and one of --key FILE and --pubkey HEX");
        if (key) {
            if (scp_sim_platform_pubkey(key, pub, id, &e) < 0) return cli_fail(&e);
            scp_hex(pub, 32, hex);
            pubhex = hex;
        }
        scp_cas_client *c = cli_cas_client(&o, &code);
        if (!c) return code;
        if (key && backend && strcmp(backend, "sim") != 0) return cli_usage_error("--key is a sim platform key");
        json_t *b = json_pack("{s:s, s:s, s:s}", "name", name, "backend", backend ? backend : "sim", "pubkey", pubhex);
        char *body = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        code = cli_cas_call(c, "POST", "/v1/platforms", "application/json", body, strlen(body), &j);
        free(body);
        if (!code) printf("enrolled platform %s (%s)\n", json_string_value(json_object_get(j, "id")), name);
        scp_cas_client_free(c);
    } else if (strcmp(sub, "revoke") == 0 || strcmp(sub, "list") == 0) {
        int rev = strcmp(sub, "revoke") == 0;
        if (npos != rev) return cli_usage_error(rev ? "platform revoke takes one ID" : "platform list takes no argument");
        scp_cas_client *c = cli_cas_client(&o, &code);
        if (!c) return code;
        char path[200];
        snprintf(path, sizeof path, "/v1/platforms%s%s", rev ? "/" : "", rev ? pos[0] : "");
        code = cli_cas_call(c, rev ? "DELETE" : "GET", path, NULL, NULL, 0, &j);
        if (!code && rev) printf("revoked platform %s\n", pos[0]);
        if (!code && !rev) {
            size_t i;
            json_t *p;
            for (i = 0; (p = json_array_get(json_object_get(j, "platforms"), i)) != NULL; i++) printf(
                "%s\t%s\t%s\t%s\n", json_string_value(json_object_get(p, "id")),
                json_string_value(json_object_get(p, "name")), json_string_value(json_object_get(p, "backend")),
                json_is_true(json_object_get(p, "revoked")) ? "revoked" : "active");
        }
        scp_cas_client_free(c);
    } else if (strcmp(sub, "attest") == 0) {
        uint8_t m[32];
        if (!key == !hw || !session || !service || !meas)
            return cli_usage_error("platform attest needs --key or --tee, --session, --service, --measurement");
        if (scp_unhex(meas, m, 32) < 0) return cli_usage_error("--measurement must be 64 hex digits");
        uint8_t ik[SCP_INSTANCE_KEY_LEN];
        if (ikhex && (scp_unhex(ikhex, ik, sizeof ik) < 0 || ik[0] != 4))
            return cli_usage_error("--instance-pubkey must be an uncompressed P-256 point (130 hex digits, 04...)");
        scp_cas_client *c = cli_cas_client(&o, &code);
        if (!c) return code;
        char *cfg = NULL;
        if (scp_attest_get_config_ik(c, session, service, hw ? hw : SCP_TEE_SIM, key, m, ikhex ? ik : NULL, &cfg, &e) <
            0) {
            code = cli_fail(&e);
        } else {
            printf("%s\n", cfg);
            OPENSSL_cleanse(cfg, strlen(cfg));
            free(cfg);
        }
        scp_cas_client_free(c);
    } else if (strcmp(sub, "report-tag") == 0) {
        if (!session || !service || !volume || !tag || !token)
            return cli_usage_error("platform report-tag needs --session, --service, --volume, --tag, --token-file");
        char *tok = NULL; /* a capability: read from a file, never from argv */
        size_t tl = 0;
        if (scp_read_path(token, 4096, &tok, &tl, &e) < 0) return cli_fail(&e);
        tok[strcspn(tok, "\r\n")] = 0;
        scp_cas_client *c = cli_cas_client(&o, &code);
        if (c) {
            if (scp_attest_report_tag(c, session, service, volume, tag, tok, &e) < 0) code = cli_fail(&e);
            else printf("reported tag of volume %s\n", volume);
            scp_cas_client_free(c);
        }
        OPENSSL_cleanse(tok, tl);
        free(tok);
    }
    json_decref(j);
    return code;
}
