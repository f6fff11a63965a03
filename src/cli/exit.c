/* cli/exit.c - how scpctl's commands end: an error's message on stderr and its exit code
 * (the EXIT_* codes of cli/commands.h). Shared by scpctl and scpctl-image. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

int cli_fail(const scp_err *err) {
    fflush(stdout); /* what was printed comes before the error, also when both go to one pipe */
    fprintf(stderr, "scpctl: %s\n", err->msg[0] ? err->msg : scp_code_name(err->code));
    switch (err->code) {
    case SCP_E_INTEGRITY:
    case SCP_E_ROLLBACK: return EXIT_INTEGRITY;
    case SCP_E_KEY: return EXIT_KEY;
    default: return EXIT_FAILURE_;
    }
}

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("scpctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_USAGE;
}

int cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }
