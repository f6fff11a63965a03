/* cli/cmd_run_cas.c - scpctl run --cas: the attested mode (runtime/attest_run.h), in scpctl-cas.
 *
 * scpctl executes scpctl-cas for it (cli/cmd_run.c): the CAS client and the configuration it
 * receives need libssl and libjansson, which the development mode's short commands should not
 * load. `scpctl run --help` (cli/cmd_run.c) describes both modes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <malloc.h>

#include "cli/cas_common.h"
#include "cli/commands.h"
#include "common/util.h"
#include "runtime/attest_run.h"
#include "runtime/launch.h"
#include "scp/attest.h"

/* jansson holds the configuration (keys, rendered secrets): wipe every block it frees. Blocks
 * come from malloc, so anything jansson hands out may still be released with free(). */
static void wiping_free(void *p) {
    if (!p) return;
    scp_wipe(p, malloc_usable_size(p));
    free(p);
}

/* OPTION SECONDS at argv[*i], MIN..86400: 0 with the value in *out and *i on it, or the usage
 * error's exit code after its message. */
static int seconds_opt(int argc, char **argv, int *i, double min, double *out) {
    const char *name = argv[*i];
    if (++*i >= argc) return cli_usage_error("%s needs seconds", name);
    char *end;
    double v = strtod(argv[*i], &end);
    if (end == argv[*i] || *end || !(v >= min && v <= 86400))
        return cli_usage_error("%s wants %g..86400 seconds, not '%s'", name, min, argv[*i]);
    *out = v;
    return 0;
}

/* scpctl run --cas ...: the attested mode (runtime/attest_run.h). */
int cmd_run_cas(int argc, char **argv) {
    json_set_alloc_funcs(malloc, wiping_free);
    cli_cas c = {0};
    struct scp_attest_run_opts o;
    memset(&o, 0, sizeof o);
    o.cas_timeout = 10;
    o.container.enabled = 1; /* the attested run is always a container */
    const char *tee = "auto";
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_cas_opt(argc, argv, &i, &c);
        if (r < 0) return cli_usage_error("'%s' needs a value", a);
        if (r) continue;
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        const char **dst = !strcmp(a, "--session")        ? &o.session
                           : !strcmp(a, "--service")      ? &o.service
                           : !strcmp(a, "--platform-key") ? &o.platform_key
                           : !strcmp(a, "--volume-dir")   ? &o.volume_dir
                           : !strcmp(a, "--tee")          ? &tee
                                                          : NULL;
        if (dst) {
            if (++i >= argc) return cli_usage_error("'%s' needs a value", a);
            *dst = argv[i];
        } else if (!strcmp(a, "--cas-timeout")) {
            int rc = seconds_opt(argc, argv, &i, 0, &o.cas_timeout);
            if (rc) return rc;
        } else if (!strcmp(a, "--renew-interval")) {
            int rc = seconds_opt(argc, argv, &i, 1, &o.renew_interval);
            if (rc) return rc;
        } else if (!strcmp(a, "--trace")) {
            o.trace = 1;
        } else if (!strcmp(a, "--tag-sync")) {
            o.tag_sync = 1;
        } else if (!strcmp(a, "--console-lines")) {
            o.console_lines = 1;
        } else if (!strcmp(a, "--rootfs")) {
            if (++i >= argc || argv[i][0] != '/') return cli_usage_error("--rootfs needs an absolute DIR");
            o.container.rootfs = argv[i];
        } else if (!strcmp(a, "--net")) {
            if (++i >= argc || (strcmp(argv[i], "host") != 0 && strcmp(argv[i], "none") != 0))
                return cli_usage_error("--net wants host or none");
            o.container.net_none = strcmp(argv[i], "none") == 0;
        } else if (!strcmp(a, "--hostname")) {
            if (++i >= argc || !*argv[i] || strlen(argv[i]) > 64)
                return cli_usage_error("--hostname needs a NAME of 1 to 64 characters");
            o.container.hostname = argv[i];
        } else if (!strcmp(a, "--trusted")) {
            static const char *trusted[SCP_ELF_MAX_OBJECTS];
            if (++i >= argc || argv[i][0] != '/') return cli_usage_error("--trusted needs an absolute PATH");
            if (o.ntrusted >= SCP_ELF_MAX_OBJECTS / 2) return cli_usage_error("too many --trusted files");
            trusted[o.ntrusted++] = argv[i];
            o.trusted = trusted;
        } else if (!strcmp(a, "--cap")) {
            int cap = ++i < argc ? scp_container_cap_from_name(argv[i]) : -1;
            if (cap < 0) return cli_usage_error("--cap needs a capability name such as net_bind_service");
            o.container.keep_caps |= 1ull << cap;
        } else {
            return cli_usage_error("unknown option '%s' with --cas; see 'scpctl run --help'", a);
        }
    }
    if (!o.session || !o.service) return cli_usage_error("--cas needs --session S and --service NAME");
    if (strcmp(tee, "auto") != 0 && strcmp(tee, "sim") != 0 && strcmp(tee, "tdx") != 0 && strcmp(tee, "snp") != 0 &&
        strcmp(tee, "sgx") != 0)
        return cli_usage_error("--tee wants auto, sim, tdx, snp or sgx, not '%s'", tee);
    if (i >= argc) return cli_usage_error("no program given: scpctl run --cas ... -- PROGRAM [ARGS]");
    static char keypath[4096];
    if (!o.platform_key) o.platform_key = getenv("SCP_PLATFORM_KEY");
    if (!o.platform_key) {
        snprintf(keypath, sizeof keypath, "%s/platform.key", cli_scp_home());
        o.platform_key = keypath;
    }
    o.argv = argv + i;
    o.argc = argc - i;
    int code = 0;
    scp_err err = {0};
    char said[256];
    if ((o.tee = scp_tee_select(tee, said, sizeof said, &err)) < 0) return cli_fail(&err);
    if (said[0]) fprintf(stderr, "scpctl: %s\n", said);
    /* before the identity's key is loaded (runtime/container.h) */
    if (scp_container_enter_userns(&err) < 0) return cli_fail(&err);
    scp_cas_client *cl = cli_cas_client(&c, &code);
    if (!cl) return code;
    int rc = scp_attest_run(cl, &o, &err);
    scp_cas_client_free(cl);
    if (rc < 0) return cli_fail(&err);
    return rc;
}

