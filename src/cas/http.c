/* cas/http.c - see http.h. */
#include "cas/http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int is_tchar(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int fail(int *status, int code) {
    *status = code;
    return -1;
}

/* Find "\r\n\r\n" in buf[0..len). */
static const char *find_end(const char *buf, size_t len) {
    for (size_t i = 0; i + 3 < len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') return buf + i;
    return NULL;
}

static void trim(const char **s, const char **e) {
    while (*s < *e && (**s == ' ' || **s == '\t')) (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t')) (*e)--;
}

static int hname_is(const char *s, size_t n, const char *name) {
    return strlen(name) == n && strncasecmp(s, name, n) == 0;
}

int http_parse_head(const char *buf, size_t len, http_request *req, int *status) {
    size_t scan = len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD;
    const char *end = find_end(buf, scan);
    if (!end) return len >= HTTP_MAX_HEAD ? fail(status, 431) : 0;
    size_t head_len = (size_t)(end - buf) + 4;
    memset(req, 0, sizeof *req);

    /* request line: METHOD SP TARGET SP HTTP/1.x CRLF */
    const char *p = buf, *line_end = memchr(buf, '\r', (size_t)(end - buf) + 1);
    if (!line_end || line_end[1] != '\n') return fail(status, 400);
    const char *sp1 = memchr(p, ' ', (size_t)(line_end - p));
    if (!sp1 || sp1 == p || (size_t)(sp1 - p) >= sizeof req->method) return fail(status, sp1 ? 501 : 400);
    for (const char *q = p; q < sp1; q++)
        if (*q < 'A' || *q > 'Z') return fail(status, 400);
    memcpy(req->method, p, (size_t)(sp1 - p));
    const char *tgt = sp1 + 1;
    const char *sp2 = memchr(tgt, ' ', (size_t)(line_end - tgt));
    if (!sp2 || sp2 == tgt || *tgt != '/') return fail(status, 400);
    size_t tlen = (size_t)(sp2 - tgt);
    for (const char *q = tgt; q < sp2; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f) return fail(status, 400);
    const char *qm = memchr(tgt, '?', tlen);
    size_t plen = qm ? (size_t)(qm - tgt) : tlen;
    size_t qlen = qm ? tlen - plen - 1 : 0;
    if (plen >= sizeof req->path || qlen >= sizeof req->query) return fail(status, 414);
    memcpy(req->path, tgt, plen);
    if (qm) memcpy(req->query, qm + 1, qlen);
    const char *ver = sp2 + 1;
    size_t vlen = (size_t)(line_end - ver);
    int http10 = 0;
    if (vlen == 8 && memcmp(ver, "HTTP/1.1", 8) == 0)
        http10 = 0;
    else if (vlen == 8 && memcmp(ver, "HTTP/1.0", 8) == 0)
        http10 = 1;
    else if (vlen == 8 && memcmp(ver, "HTTP/", 5) == 0)
        return fail(status, 505);
    else
        return fail(status, 400);
    req->keep_alive = !http10;

    /* headers */
    int nheaders = 0, have_cl = 0;
    p = line_end + 2;
    while (p < end + 2) {
        const char *le = p;
        while (le < end + 2 && *le != '\r') le++;
        if (le >= end + 2 || le[1] != '\n') return fail(status, 400);
        if (le == p) break; /* blank line */
        if (++nheaders > HTTP_MAX_HEADERS) return fail(status, 431);
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (!colon || colon == p) return fail(status, 400);
        for (const char *q = p; q < colon; q++)
            if (!is_tchar(*q)) return fail(status, 400);
        const char *vs = colon + 1, *ve = le;
        for (const char *q = vs; q < ve; q++)
            if ((unsigned char)*q < 0x20 && *q != '\t') return fail(status, 400);
        trim(&vs, &ve);
        size_t nlen = (size_t)(colon - p), vl = (size_t)(ve - vs);
        if (hname_is(p, nlen, "content-length")) {
            if (vl == 0 || vl > 10) return fail(status, vl > 10 ? 413 : 400);
            size_t v = 0;
            for (const char *q = vs; q < ve; q++) {
                if (*q < '0' || *q > '9') return fail(status, 400);
                v = v * 10 + (size_t)(*q - '0');
            }
            if (have_cl && v != req->content_length) return fail(status, 400);
            have_cl = 1;
            if (v > HTTP_MAX_BODY) return fail(status, 413);
            req->content_length = v;
        } else if (hname_is(p, nlen, "transfer-encoding")) {
            return fail(status, 501);
        } else if (hname_is(p, nlen, "content-type")) {
            if (vl >= sizeof req->ctype) return fail(status, 400);
            memcpy(req->ctype, vs, vl);
            req->ctype[vl] = 0;
        } else if (hname_is(p, nlen, "connection")) {
            if (vl == 5 && strncasecmp(vs, "close", 5) == 0) req->keep_alive = 0;
            if (vl == 10 && strncasecmp(vs, "keep-alive", 10) == 0) req->keep_alive = 1;
        }
        p = le + 2;
    }
    if (!have_cl && (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0))
        return fail(status, 411);
    return (int)head_len;
}

int http_query_get(const char *query, const char *key, char *out, size_t outsz) {
    size_t kl = strlen(key);
    const char *p = query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        if (n > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            const char *v = p + kl + 1;
            size_t vl = n - kl - 1;
            if (vl >= outsz) return 0;
            for (size_t i = 0; i < vl; i++) {
                char c = v[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                    return 0;
            }
            memcpy(out, v, vl);
            out[vl] = 0;
            return 1;
        }
        if (!amp) break;
        p = amp + 1;
    }
    return 0;
}

const char *http_reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

int http_format_head(char *out, size_t outsz, int status, const char *ctype, size_t body_len,
                     int keep_alive) {
    int n = snprintf(out, outsz,
                     "HTTP/1.1 %d %s\r\nServer: scp-cas\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: %s\r\nCache-Control: no-store\r\n\r\n",
                     status, http_reason(status), ctype, body_len, keep_alive ? "keep-alive" : "close");
    if (n < 0 || (size_t)n >= outsz) return -1;
    return n;
}
