/* cas/response.h - the response a CAS request handler fills, and the helpers that fill it.
 * Every body is JSON, errors included: {"error": CODE, "message": TEXT}. This module knows
 * nothing else of CAS, so every handler file can use it without depending on the router. */
#ifndef SCP_CAS_RESPONSE_H
#define SCP_CAS_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct cas_response {
    int status;
    const char *ctype; /* static string */
    char *body;        /* malloc'd */
    size_t len;
} cas_response;

/* Set status and body (compact JSON of body, which is stolen; NULL or an encoding failure
 * gives a 500 with a fixed body). */
void cas_json_response(cas_response *resp, int status, json_t *body);
/* Replace the response by {"error": code, "message": msg} with the given status. */
void cas_api_error(cas_response *resp, int status, const char *code, const char *msg);
/* Like cas_api_error with a formatted message; returns -1 (for `return cas_deny(...)`). */
int cas_deny(cas_response *resp, int status, const char *code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Wall-clock milliseconds (expiry times, audit rows). */
int64_t cas_now_ms(void);

#endif
