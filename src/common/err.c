/* common/err.c - the one error type (see scp/err.h). */
#include "scp/err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

__attribute__((format(printf, 4, 0))) static void vfill(scp_err *err, scp_code code, int sys,
                                                     const char *fmt, va_list ap) {
    err->code = code;
    err->sys = sys ? sys : EIO;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
}

int scp_fail(scp_err *err, scp_code code, int sys, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vfill(err, code, sys, fmt, ap);
    va_end(ap);
    return -1;
}

int scp_fail_errno(scp_err *err, const char *fmt, ...) {
    int e = errno;
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vfill(err, SCP_E_SYS, e, fmt, ap);
    va_end(ap);
    size_t used = strlen(err->msg);
    snprintf(err->msg + used, sizeof err->msg - used, ": %s", strerror(e));
    errno = e;
    return -1;
}

void scp_err_prefix(scp_err *err, const char *fmt, ...) {
    if (!err) return;
    char prefix[160], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t pl = strlen(prefix);
    if (pl + 2 >= sizeof err->msg) pl = sizeof err->msg - 3;
    memcpy(err->msg, prefix, pl);
    memcpy(err->msg + pl, ": ", 2);
    size_t room = sizeof err->msg - pl - 3;
    size_t ol = strnlen(old, room);
    memcpy(err->msg + pl + 2, old, ol);
    err->msg[pl + 2 + ol] = '\0';
}

const char *scp_code_name(scp_code code) {
    switch (code) {
    case SCP_OK: return "ok";
    case SCP_E_INVAL: return "invalid argument";
    case SCP_E_SYS: return "system error";
    case SCP_E_NOMEM: return "out of memory";
    case SCP_E_NOENT: return "not found";
    case SCP_E_EXIST: return "already exists";
    case SCP_E_NOTDIR: return "not a directory";
    case SCP_E_ISDIR: return "is a directory";
    case SCP_E_NOTEMPTY: return "directory not empty";
    case SCP_E_BUSY: return "busy";
    case SCP_E_KEY: return "wrong key";
    case SCP_E_FORMAT: return "bad format";
    case SCP_E_INTEGRITY: return "integrity failure";
    case SCP_E_ROLLBACK: return "rollback detected";
    case SCP_E_CRYPTO: return "crypto failure";
    case SCP_E_NOTSUP: return "not supported";
    case SCP_E_POLICY: return "refused by policy";
    }
    return "unknown error";
}

int scp_err_exit_status(scp_code code) {
    switch (code) {
    case SCP_E_INTEGRITY:
    case SCP_E_ROLLBACK: return 3;
    case SCP_E_KEY: return 4;
    default: return 1;
    }
}
