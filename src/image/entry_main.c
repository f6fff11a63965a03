/* image/entry_main.c - scp-entry, the runtime of a secure image (docs/image.md "Running under
 * Docker"): the entrypoint (scp_image_entry), and `platform evidence` for tests and debugging,
 * alone, so that /scp carries only what attestation, the volumes and the shield's start need,
 * not scpctl's image builder (libarchive and what it drags in: libxml2, ICU). Errors and exit
 * codes as scpctl's: 3 for tampering or a rollback, 4 for a key problem, 1 otherwise.
 */
#include <string.h>

#include "cli/commands.h"
#include "scp/image.h"

int main(int argc, char **argv) {
    cli_set_name("scp-entry"); /* errors and exit codes as scpctl's (cli/exit.c) */
    /* scp-entry platform evidence --nonce HEX --pubkey HEX [--socket PATH] */
    if (argc >= 3 && !strcmp(argv[1], "platform") && !strcmp(argv[2], "evidence"))
        return cmd_platform_evidence(argc - 1, argv + 1);
    /* scp-entry [ARGS]: ARGS are docker run's, appended to the policy's command if it allows */
    scp_err e = {0};
    int rc = scp_image_entry(argc - 1, argv + 1, &e);
    return rc < 0 ? cli_fail(&e) : rc;
}
