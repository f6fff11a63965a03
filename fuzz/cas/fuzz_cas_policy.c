/* fuzz/cas/fuzz_cas_policy.c - the YAML session-policy parser on arbitrary text.
 * Properties: no crash, leak or hang; an accepted policy satisfies the validation rules
 * (names valid, every service has a measurement, volumes it mounts exist); a refusal has a
 * message. */
#include <string.h>

#include "cas/policy.h"
#include "../fuzz_util.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    scp_err e = {0};
    cas_policy *p = cas_policy_parse((const char *)data, size, &e);
    if (!p) {
        FUZZ_CHECK(e.code != SCP_OK && e.msg[0]);
        return 0;
    }
    FUZZ_CHECK(p->name && cas_name_ok(p->name) && p->n_services >= 1);
    for (size_t i = 0; i < p->n_services; i++) {
        const cas_service_def *s = &p->services[i];
        FUZZ_CHECK(s->name && cas_name_ok(s->name) && s->measurements.n >= 1);
        FUZZ_CHECK(s->env_keys.n == s->env_values.n);
        for (size_t j = 0; j < s->volumes.n; j++) FUZZ_CHECK(cas_policy_volume(p, s->volumes.v[j]) != NULL);
        FUZZ_CHECK(cas_policy_service(p, s->name) == s);
    }
    for (size_t i = 0; i < p->n_secrets; i++) {
        char spec[65];
        cas_secret_spec(&p->secrets[i], spec);
        FUZZ_CHECK(strlen(spec) == 64);
    }
    cas_policy_free(p);
    return 0;
}
