/* fuzz/cas/fuzz_cas_http.c - the CAS HTTP request-head parser on arbitrary bytes.
 * Properties: a head is accepted only if it ends with CRLF CRLF inside the limit, its length
 * is within the input, the parsed fields are NUL-terminated and bounded; a refusal carries a
 * 4xx/5xx status. */
#include <string.h>

#include "cas/http.h"
#include "../fuzz_util.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    http_request r;
    int st = 0;
    int n = http_parse_head((const char *)data, size, &r, &st);
    if (n > 0) {
        FUZZ_CHECK((size_t)n <= size && n >= 4 && (size_t)n <= HTTP_MAX_HEAD);
        FUZZ_CHECK(memcmp(data + n - 4, "\r\n\r\n", 4) == 0);
        FUZZ_CHECK(strlen(r.method) < sizeof r.method && r.path[0] == '/' && strlen(r.path) < sizeof r.path);
        FUZZ_CHECK(r.content_length <= HTTP_MAX_BODY);
        char v[64];
        if (http_query_get(r.query, "from", v, sizeof v)) FUZZ_CHECK(strlen(v) < sizeof v);
    } else if (n < 0) {
        FUZZ_CHECK(st >= 400 && st <= 505);
    } else {
        FUZZ_CHECK(size < HTTP_MAX_HEAD);
    }
    return 0;
}
