/* scp/err.h - the one error type of SCP.
 *
 * Every fallible SCP function takes a `scp_err *err` as its last argument (it may be NULL when
 * the caller does not want details) and signals failure through its return value (-1, NULL or a
 * negative count). On failure the function fills *err with:
 *   - code:  what kind of failure (stable, for programs to branch on);
 *   - sys:   the errno that a POSIX caller should see (EIO for integrity failures);
 *   - msg:   one sentence for a human that says what failed and, where possible, what to do.
 * On success *err is left untouched.
 *
 * Two layers speak other languages on purpose, and only they:
 *   - the shield's system call emulation (src/shield) returns what the kernel would, a result
 *     or -errno, because that value goes straight back to the program as a system call's;
 *   - helpers that must be async-signal-safe or that wrap one POSIX call (full reads/writes in
 *     common/util.h, the shield's config parsers in include/scp/shield.h) return -1 with errno
 *     set or a count, and allocate nothing.
 * Library code does not print: warnings go through scp_log (src/common/log.h).
 */
#ifndef SCP_ERR_H
#define SCP_ERR_H

#include <stdarg.h>

typedef enum scp_code {
    SCP_OK = 0,
    SCP_E_INVAL,     /* bad argument or malformed input from the caller */
    SCP_E_SYS,       /* a system call failed; sys holds its errno */
    SCP_E_NOMEM,     /* out of memory */
    SCP_E_NOENT,     /* no such file or directory inside a volume */
    SCP_E_EXIST,     /* already exists */
    SCP_E_NOTDIR,    /* a path component is not a directory */
    SCP_E_ISDIR,     /* is a directory */
    SCP_E_NOTEMPTY,  /* directory not empty */
    SCP_E_BUSY,      /* held by another process (file being written elsewhere) */
    SCP_E_KEY,       /* wrong key for this volume */
    SCP_E_FORMAT,    /* not an SCP volume, or an unsupported format version */
    SCP_E_INTEGRITY, /* authentication failed: data was modified, moved, truncated or replayed */
    SCP_E_ROLLBACK,  /* the volume state is older than the expected (fresh) tag */
    SCP_E_CRYPTO,    /* the crypto library failed unexpectedly */
    SCP_E_NOTSUP,    /* operation not supported */
    SCP_E_POLICY,    /* authentic, but refused by policy (e.g. attestation: debug, TCB too old) */
} scp_code;

typedef struct scp_err {
    scp_code code;
    int sys;        /* errno equivalent, never 0 on failure */
    char msg[320];
} scp_err;

/* Fill err (if not NULL) with code, errno equivalent and a printf-style message. Returns -1 so
 * that callers can write `return scp_fail(err, ...)`. */
int scp_fail(scp_err *err, scp_code code, int sys, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Like scp_fail with code SCP_E_SYS and sys = errno (read at the call), appending strerror. */
int scp_fail_errno(scp_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix an existing error message with more context ("reading 'a/b': ..."). */
void scp_err_prefix(scp_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Short stable name of a code, e.g. "integrity". */
const char *scp_code_name(scp_code code);

/* The exit status of a command that stops on an error of this code: 3 for data that failed
 * authentication (SCP_E_INTEGRITY, SCP_E_ROLLBACK), 4 for a wrong key (SCP_E_KEY), 1 for the
 * rest (scpctl's EXIT_* codes, cli/commands.h). One mapping for scpctl's messages and the
 * shield's, which reports a volume's first open in the launcher's place (docs/runtime.md). */
int scp_err_exit_status(scp_code code);

#endif
