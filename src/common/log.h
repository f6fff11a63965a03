/* common/log.h - how library code reports what is not the error of the call it serves:
 * warnings (the sim backend, a data directory open to others) and failures of work done on the
 * side (an audit head that could not be written). Library code never writes to stderr itself;
 * it calls scp_log, and the program decides where the lines go.
 *
 * The sink is process-wide state, set once by a program's main before threads start. The
 * default sink writes "WHO: TEXT\n" to stderr in one write, with control characters of TEXT
 * escaped (scp_escape_text), so a line can neither be split nor forge another. */
#ifndef SCP_COMMON_LOG_H
#define SCP_COMMON_LOG_H

typedef enum scp_log_level { SCP_LOG_INFO, SCP_LOG_WARN, SCP_LOG_ERROR } scp_log_level;

/* Receives each formatted line (without a newline) and the ctx given to scp_log_set_sink. */
typedef void (*scp_log_sink)(scp_log_level level, const char *who, const char *line, void *ctx);

/* Log one line. who names the program or component ("scp-cas", "scp"); fmt is printf-style. */
void scp_log(scp_log_level level, const char *who, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Route lines to sink (NULL: back to the default, stderr). */
void scp_log_set_sink(scp_log_sink sink, void *ctx);

#endif
