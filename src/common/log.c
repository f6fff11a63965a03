/* common/log.c - see log.h. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

/* The program's sink (log.h: set before threads start, read-only afterwards). */
static scp_log_sink log_sink;
static void *log_ctx;

void scp_log_set_sink(scp_log_sink sink, void *ctx) {
    log_sink = sink;
    log_ctx = ctx;
}

void scp_log(scp_log_level level, const char *who, const char *fmt, ...) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (log_sink) {
        log_sink(level, who, text, log_ctx);
        return;
    }
    char esc[4 * sizeof text], line[sizeof esc + 128];
    int n = snprintf(line, sizeof line, "%s: %s\n", who, scp_escape_text(text, esc, sizeof esc));
    if (n < 0) return;
    if ((size_t)n >= sizeof line) {
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    (void)scp_write_full(STDERR_FILENO, line, (size_t)n);
}
