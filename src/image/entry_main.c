/* image/entry_main.c - scp-entry, the runtime of a secure image (docs/image.md "Running under
 * Docker"): the entrypoint (scp_image_entry), and `platform evidence` for tests and debugging,
 * alone, so that /scp carries only what attestation, the volumes and the shield's start need,
 * not scpctl's image builder (libarchive and what it drags in: libxml2, ICU). Errors and exit
 * codes as scpctl's: 3 for tampering or a rollback, 4 for a key problem, 1 otherwise.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "scp/image.h"

/* the two helpers of cli/main.c that cli/cmd_platform_local.c uses */
int cli_fail(const scp_err *err) {
    fflush(stdout);
    fprintf(stderr, "scp-entry: %s\n", err->msg[0] ? err->msg : scp_code_name(err->code));
    return err->code == SCP_E_INTEGRITY || err->code == SCP_E_ROLLBACK ? EXIT_INTEGRITY
           : err->code == SCP_E_KEY                                  ? EXIT_KEY
                                                                     : EXIT_FAILURE_;
}

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("scp-entry: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_USAGE;
}

int main(int argc, char **argv) {
    /* scp-entry platform evidence --nonce HEX --pubkey HEX [--socket PATH] */
    if (argc >= 3 && !strcmp(argv[1], "platform") && !strcmp(argv[2], "evidence"))
        return cmd_platform_evidence(argc - 1, argv + 1);
    /* scp-entry [ARGS]: ARGS are docker run's, appended to the policy's command if it allows */
    scp_err e = {0};
    int rc = scp_image_entry(argc - 1, argv + 1, &e);
    return rc < 0 ? cli_fail(&e) : rc;
}
