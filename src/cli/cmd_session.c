/* cli/cmd_session.c - scpctl session: create, show, update, list and delete CAS sessions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cas/policy.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "cli/cas_common.h"
#include "cli/commands.h"

static const cli_sub subs[] = {
    {"create", "scpctl session create FILE.yaml\n"},
    {"update", "scpctl session update FILE.yaml [--predecessor HASH]\n"
               "           An update must name the hash of the version it replaces: 'predecessor: HASH' in\n"
               "           the file, or --predecessor HASH; if someone updated the session meanwhile, the\n"
               "           update is refused.\n"},
    {"show", "scpctl session show NAME [--policy]\n"},
    {"list", "scpctl session list\n"},
    {"delete", "scpctl session delete NAME\n"},
    {"set-tag", "scpctl session set-tag NAME VOLUME (TAG | --clear)\n"
                "           override the expected freshness tag of a volume (recovery, see docs/cas.md)\n"},
    {"secret", "scpctl session secret NAME SECRET\n"
               "           print a secret's value (hex for kind random; an x509 secret's certificate only)\n"
               "           to standard output, for the session's owner only; CAS records the read in its\n"
               "           audit log\n"},
};

static const cli_cmd_usage usage = {
    subs, sizeof subs / sizeof subs[0], NULL,
    "Client options: --cas HOST:PORT --pin FINGERPRINT --identity FILE (see 'scpctl cas --help').\n",
};

int cmd_session(int argc, char **argv) {
    int usage_code = cli_usage_start(&usage, argc, argv);
    if (usage_code >= 0) return usage_code;
    const char *sub = argv[1];
    cli_cas o = {0};
    const char *pos[4] = {0}, *pred = NULL;
    int npos = 0, show_policy = 0, clear = 0;
    for (int i = 2; i < argc; i++) {
        int r = cli_cas_opt(argc, argv, &i, &o);
        if (r < 0) return cli_usage_error("'%s' needs a value", argv[i]);
        if (r) continue;
        if (strcmp(argv[i], "--predecessor") == 0 && i + 1 < argc) pred = argv[++i];
        else if (strcmp(argv[i], "--policy") == 0) show_policy = 1;
        else if (strcmp(argv[i], "--clear") == 0) clear = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_usage_error("session: unknown option '%s'", argv[i]);
        else if (npos < 4) pos[npos++] = argv[i];
        else return cli_usage_error("session: too many arguments");
    }
    int want = strcmp(sub, "list") == 0      ? 0
               : strcmp(sub, "set-tag") == 0 ? (clear ? 2 : 3)
               : strcmp(sub, "secret") == 0  ? 2
                                             : 1;
    if (npos != want) return cli_usage_error("session %s: wrong number of arguments", sub);
    char *doc = NULL;
    size_t len = 0;
    if (strcmp(sub, "create") == 0 || strcmp(sub, "update") == 0) {
        scp_err e = {0};
        if (scp_read_path(pos[0], POLICY_MAX_DOC, &doc, &len, &e) < 0) return cli_fail(&e);
        if (pred) { /* prepend the predecessor: the root of a policy is a block mapping */
            char *nd = malloc(len + 100);
            if (!nd) return EXIT_FAILURE_;
            int n = snprintf(nd, 100, "predecessor: \"%s\"\n", pred);
            memcpy(nd + n, doc, len + 1);
            free(doc);
            doc = nd;
            len += (size_t)n;
        }
    }
    int code = 0;
    scp_cas_client *c = cli_cas_client(&o, &code);
    if (!c) {
        free(doc);
        return code;
    }
    json_t *j = NULL;
    char path[512];
    if (strcmp(sub, "create") == 0) {
        code = cli_cas_call(c, "POST", "/v1/sessions", "application/yaml", doc, len, &j);
        if (!code)
            printf("created session %s\nhash %s\n", json_string_value(json_object_get(j, "name")),
                   json_string_value(json_object_get(j, "hash")));
    } else if (strcmp(sub, "update") == 0) {
        /* the session's name is in the document; ask the parser for it */
        scp_err e = {0};
        cas_policy *p = cas_policy_parse(doc, len, &e);
        if (!p) {
            code = cli_fail(&e);
        } else {
            snprintf(path, sizeof path, "/v1/sessions/%s", p->name);
            cas_policy_free(p);
            code = cli_cas_call(c, "PUT", path, "application/yaml", doc, len, &j);
            if (!code)
                printf("updated session %s\nhash %s\n", json_string_value(json_object_get(j, "name")),
                       json_string_value(json_object_get(j, "hash")));
        }
    } else if (strcmp(sub, "show") == 0) {
        snprintf(path, sizeof path, "/v1/sessions/%s", pos[0]);
        code = cli_cas_call(c, "GET", path, NULL, NULL, 0, &j);
        if (!code && show_policy)
            fputs(json_string_value(json_object_get(j, "policy")), stdout);
        else if (!code) {
            json_object_del(j, "policy");
            cli_print_json(j);
        }
    } else if (strcmp(sub, "list") == 0) {
        code = cli_cas_call(c, "GET", "/v1/sessions", NULL, NULL, 0, &j);
        size_t i;
        json_t *s;
        if (!code)
            for (i = 0; (s = json_array_get(json_object_get(j, "sessions"), i)) != NULL; i++) printf(
                "%s\t%s\n", json_string_value(json_object_get(s, "name")), json_string_value(json_object_get(s, "hash")));
    } else if (strcmp(sub, "delete") == 0) {
        snprintf(path, sizeof path, "/v1/sessions/%s", pos[0]);
        code = cli_cas_call(c, "DELETE", path, NULL, NULL, 0, NULL);
        if (!code) printf("deleted session %s\n", pos[0]);
    } else if (strcmp(sub, "secret") == 0) {
        snprintf(path, sizeof path, "/v1/sessions/%s/secrets/%s", pos[0], pos[1]);
        code = cli_cas_call(c, "GET", path, NULL, NULL, 0, &j);
        const char *v = j ? json_string_value(json_object_get(j, "value")) : NULL;
        if (!code && v) {
            fputs(v, stdout);
            if (!*v || v[strlen(v) - 1] != '\n') putchar('\n');
        } else if (!code) {
            fprintf(stderr, "scpctl: CAS's answer holds no value\n");
            code = EXIT_FAILURE_;
        }
    } else {
        snprintf(path, sizeof path, "/v1/sessions/%s/volumes/%s/tag", pos[0], pos[1]);
        json_t *b = json_pack("{s:s}", "tag", clear ? "" : pos[2]);
        char *body = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        code = cli_cas_call(c, "PUT", path, "application/json", body, body ? strlen(body) : 0, &j);
        free(body);
        if (!code) printf("volume %s of session %s: expected tag set to '%s'\n", pos[1], pos[0], clear ? "" : pos[2]);
    }
    json_decref(j);
    free(doc);
    scp_cas_client_free(c);
    return code;
}
