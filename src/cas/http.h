/* cas/http.h - a small, bounded HTTP/1.1 request parser and response writer.
 *
 * Only what the CAS API needs: a request line, headers (Content-Length, Content-Type,
 * Connection), and a body of at most HTTP_MAX_BODY bytes. No chunked encoding (refused with
 * 411/501), no pipelining guarantees beyond one request at a time per connection. */
#ifndef SCP_CAS_HTTP_H
#define SCP_CAS_HTTP_H

#include <stddef.h>

#define HTTP_MAX_HEAD 8192           /* request line + headers */
#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_BODY (1024 * 1024)  /* 1 MiB */

typedef struct http_request {
    char method[8];
    char path[1024];   /* the request target without the query string */
    char query[1024];  /* after '?', may be empty */
    char ctype[128];
    size_t content_length;
    int keep_alive;    /* 1 unless "Connection: close" (or HTTP/1.0 without keep-alive) */
    const char *body;  /* filled by the caller after reading the body */
    size_t body_len;
} http_request;

/* Parse the head of a request in buf[0..len). Returns:
 *    0  need more bytes (no "\r\n\r\n" yet, and len < HTTP_MAX_HEAD);
 *   >0  the length of the head (including the blank line): *req is filled;
 *   -1  malformed: *status holds the HTTP status to answer (400, 413, 431, 501, 505). */
int http_parse_head(const char *buf, size_t len, http_request *req, int *status);

/* Value of key in an application/x-www-form-urlencoded query ("a=1&b=2"); simple: no
 * percent-decoding, only [A-Za-z0-9._-] values are returned. Copies at most outsz-1 bytes.
 * Returns 1 if found, 0 if not. */
int http_query_get(const char *query, const char *key, char *out, size_t outsz);

/* The reason phrase of a status code. */
const char *http_reason(int status);

/* Format a response head into out (NUL-terminated); returns its length or -1 if too small. */
int http_format_head(char *out, size_t outsz, int status, const char *ctype, size_t body_len,
                     int keep_alive);

#endif
