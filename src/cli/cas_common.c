/* cli/cas_common.c - see cas_common.h. */
#include "cli/cas_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "cli/commands.h"

const char *cli_scp_home(void) {
    static char buf[4096];
    const char *h = getenv("SCP_HOME");
    if (h && *h) return h;
    const char *home = getenv("HOME");
    snprintf(buf, sizeof buf, "%s/.scp", home && *home ? home : ".");
    return buf;
}

int cli_cas_opt(int argc, char **argv, int *i, cli_cas *o) {
    const char *a = argv[*i];
    const char **dst = strcmp(a, "--cas") == 0 ? &o->addr : strcmp(a, "--pin") == 0 ? &o->pin
                     : strcmp(a, "--identity") == 0 ? &o->identity : NULL;
    if (!dst) return 0;
    if (*i + 1 >= argc) return -1;
    *dst = argv[++*i];
    return 1;
}

static void load_conf(cli_cas *o) {
    char path[4096];
    int pl = snprintf(path, sizeof path, "%s/cas.conf", cli_scp_home());
    if (pl < 0 || (size_t)pl >= sizeof path) return; /* no such file can exist */
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (strncmp(line, "cas=", 4) == 0) snprintf(o->conf_addr, sizeof o->conf_addr, "%.299s", line + 4);
        if (strncmp(line, "pin=", 4) == 0) snprintf(o->conf_pin, sizeof o->conf_pin, "%.79s", line + 4);
    }
    fclose(f);
}

int cli_cas_save_conf(const char *addr, const char *pin, scp_err *err) {
    const char *home = cli_scp_home();
    if (mkdir(home, 0700) < 0 && errno != EEXIST) return scp_fail_errno(err, "cannot create '%s'", home);
    char path[4096], text[512];
    int pl = snprintf(path, sizeof path, "%s/cas.conf", home);
    if (pl < 0 || (size_t)pl >= sizeof path)
        return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "SCP_HOME '%.64s...' is too long", home);
    int n = snprintf(text, sizeof text, "cas=%s\npin=%s\n", addr, pin);
    return scp_write_file_atomic(path, text, (size_t)n, 0600, err);
}

scp_cas_client *cli_cas_client(cli_cas *o, int *exit_code) {
    load_conf(o);
    if (!o->addr) o->addr = getenv("SCP_CAS");
    if (!o->pin) o->pin = getenv("SCP_CAS_PIN");
    if (!o->addr && o->conf_addr[0]) o->addr = o->conf_addr;
    if (!o->pin && o->conf_pin[0]) o->pin = o->conf_pin;
    if (!o->identity) o->identity = getenv("SCP_IDENTITY");
    if (!o->identity) {
        int pl = snprintf(o->id_path, sizeof o->id_path, "%s/identity.pem", cli_scp_home());
        if (pl > 0 && (size_t)pl < sizeof o->id_path && access(o->id_path, R_OK) == 0)
            o->identity = o->id_path;
    }
    if (!o->addr) {
        *exit_code = cli_usage_error("where is CAS? give --cas HOST:PORT (or set SCP_CAS)");
        return NULL;
    }
    if (!o->pin) {
        *exit_code = cli_usage_error("give --pin FINGERPRINT (printed by 'scpctl cas serve'), or run "
                                     "'scpctl cas status --cas %s --pin FINGERPRINT' once to remember it",
                                     o->addr);
        return NULL;
    }
    scp_err e = {0};
    scp_cas_client *c = scp_cas_client_new(o->addr, o->pin, o->identity, &e);
    if (!c) *exit_code = cli_fail(&e);
    return c;
}

void cli_print_json(json_t *j) {
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s) printf("%s\n", s);
    free(s);
}

int cli_cas_call(scp_cas_client *c, const char *method, const char *path, const char *ctype, const void *body,
                 size_t len, json_t **out) {
    scp_err e = {0};
    char *resp = NULL;
    size_t rl = 0;
    if (out) *out = NULL;
    int st = scp_cas_request(c, method, path, ctype, body, len, &resp, &rl, &e);
    if (st < 0) return cli_fail(&e);
    json_t *j = json_loadb(resp, rl, 0, NULL);
    free(resp);
    if (st >= 200 && st < 300) {
        if (out)
            *out = j;
        else
            json_decref(j);
        return EXIT_OK;
    }
    const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
    const char *code = j ? json_string_value(json_object_get(j, "error")) : NULL;
    fflush(stdout);
    char esc[1200];
    fprintf(stderr, "scpctl: CAS refused (%d %s): %s\n", st, scp_escape_text(code ? code : "error", esc, 64),
            msg ? scp_escape_text(msg, esc + 64, sizeof esc - 64) : "no details");
    json_decref(j);
    return EXIT_FAILURE_;
}
