/* cas/response.c - see response.h. */
#include "cas/response.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t cas_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cas_json_response(cas_response *resp, int status, json_t *body) {
    resp->status = status;
    resp->ctype = "application/json";
    resp->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!resp->body) {
        resp->status = 500;
        resp->body = strdup("{\"error\":\"internal\",\"message\":\"out of memory\"}");
    }
    resp->len = resp->body ? strlen(resp->body) : 0;
}

void cas_api_error(cas_response *resp, int status, const char *code, const char *msg) {
    free(resp->body);
    resp->body = NULL;
    cas_json_response(resp, status, json_pack("{s:s, s:s}", "error", code, "message", msg));
}

int cas_deny(cas_response *resp, int status, const char *code, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cas_api_error(resp, status, code, msg);
    return -1;
}
