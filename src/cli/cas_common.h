/* cli/cas_common.h - what the CAS subcommands of scpctl share: where CAS is, its pinned CA
 * fingerprint and the client identity, from options, the environment or $SCP_HOME/cas.conf. */
#ifndef SCP_CLI_CAS_COMMON_H
#define SCP_CLI_CAS_COMMON_H

#include <stddef.h>

#include <jansson.h>

#include "scp/cas.h"

typedef struct cli_cas {
    const char *addr;     /* --cas, $SCP_CAS, or cas.conf */
    const char *pin;      /* --pin, $SCP_CAS_PIN, or cas.conf */
    const char *identity; /* --identity, $SCP_IDENTITY, or $SCP_HOME/identity.pem if it exists */
    char conf_addr[300], conf_pin[80], id_path[4096];
} cli_cas;

/* $SCP_HOME, else $HOME/.scp. */
const char *cli_scp_home(void);
/* If argv[*i] is --cas/--pin/--identity, take it (and its value), advance *i and return 1;
 * 0 if it is not one of them; -1 if its value is missing. */
int cli_cas_opt(int argc, char **argv, int *i, cli_cas *o);
/* Fill in defaults and connect (lazily). Prints the error and returns NULL on failure. */
scp_cas_client *cli_cas_client(cli_cas *o, int *exit_code);
/* Save addr and pin to $SCP_HOME/cas.conf. */
int cli_cas_save_conf(const char *addr, const char *pin, scp_err *err);
/* Do a request; on 2xx store the parsed JSON in *out (may be NULL) and return EXIT_OK; else
 * print CAS's error and return the exit code. */
int cli_cas_call(scp_cas_client *c, const char *method, const char *path, const char *ctype, const void *body,
                 size_t len, json_t **out);
/* Print a JSON value, indented, to stdout. */
void cli_print_json(json_t *j);

#endif
