/* cli/cmd_platform_local.c - scpctl platform serve / evidence: the local attestation service
 * that signs evidence for secure images running in containers (src/image/attest_service.c),
 * and a client of it for tests and debugging. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/commands.h"
#include "common/util.h"
#include "scp/attest.h"
#include "scp/image.h"

#define DEFAULT_SOCKET "/run/scp/attest.sock"

static volatile sig_atomic_t stop_flag;
static void on_stop(int sig) {
    (void)sig;
    stop_flag = 1;
}

static void log_line(const char *line) {
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    printf("%s %s\n", ts, line);
    fflush(stdout);
}

static const char *opt(int argc, char **argv, const char *name, const char *def) {
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return def;
}

int cmd_platform_serve(int argc, char **argv) {
    for (int i = 2; i < argc; i += 2)
        if ((strcmp(argv[i], "--key") && strcmp(argv[i], "--socket")) || i + 1 >= argc)
            return cli_usage_error("platform serve: unknown option or missing value '%s'", argv[i]);
    const char *key = opt(argc, argv, "--key", NULL), *sock = opt(argc, argv, "--socket", DEFAULT_SOCKET);
    if (!key) return cli_usage_error("platform serve needs --key FILE (the sim platform key)");
    scp_no_core_dumps();
    scp_sim_warn();
    struct sigaction sa = {.sa_handler = on_stop}; /* no SA_RESTART: accept returns */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    fprintf(stderr, "scpctl: local attestation service on %s (mount it into secure containers)\n", sock);
    scp_err e = {0};
    if (scp_image_attest_serve(sock, key, &stop_flag, log_line, &e) < 0) return cli_fail(&e);
    return EXIT_OK;
}

int cmd_platform_evidence(int argc, char **argv) {
    for (int i = 2; i < argc; i += 2)
        if ((strcmp(argv[i], "--nonce") && strcmp(argv[i], "--pubkey") && strcmp(argv[i], "--socket")) || i + 1 >= argc)
            return cli_usage_error("platform evidence: unknown option or missing value '%s'", argv[i]);
    const char *nh = opt(argc, argv, "--nonce", NULL), *ph = opt(argc, argv, "--pubkey", NULL);
    uint8_t nonce[32], pub[32];
    if (!nh || !ph || scp_unhex(nh, nonce, 32) < 0 || scp_unhex(ph, pub, 32) < 0)
        return cli_usage_error("platform evidence needs --nonce and --pubkey, 64 hex digits each");
    scp_err e = {0};
    uint8_t *ev = NULL;
    size_t evl = 0;
    if (scp_image_attest_request(opt(argc, argv, "--socket", DEFAULT_SOCKET), nonce, pub, NULL, &ev, &evl, &e) < 0)
        return cli_fail(&e);
    scp_evidence pe;
    if (scp_evidence_parse(ev, evl, &pe, &e) < 0) {
        free(ev);
        return cli_fail(&e);
    }
    char mh[65], idh[65];
    scp_hex(pe.measurement, 32, mh);
    scp_hex(pe.platform_id, 32, idh);
    printf("measurement %s\nplatform %s\nnonce %s\n", mh, idh,
           memcmp(pe.nonce, nonce, 32) == 0 && memcmp(pe.pubkey, pub, 32) == 0 ? "bound" : "NOT BOUND");
    free(ev);
    return EXIT_OK;
}
