/* tests/cas/cas_keyfile_test.c - CAS's master key is only a derivation input.
 *
 * Asserts: the identity key files (ca.key.enc, server.key.enc) that CAS writes do not open under
 * the master key itself (they are sealed under a key derived with its own label); a data
 * directory of the first version, whose key files were sealed under the master key, still
 * loads, and its key files are then rewritten under the derived key.
 * Usage: cas_keyfile_test SCRATCH_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cas/keys.h"
#include "common/util.h"
#include "crypto/crypto.h"

#include "check.h"

/* Does the file open under key with the label as associated data? */
static int opens_under(const char *path, const uint8_t key[32], const char *label) {
    char *ct = NULL;
    size_t n = 0, ptlen = 0;
    uint8_t *pt = NULL;
    scp_err e;
    if (scp_read_path(path, 65536, &ct, &n, &e) < 0) return -1;
    int ok = scp_envelope_open(key, label, strlen(label), (uint8_t *)ct, n, &pt, &ptlen, &e) == 0;
    if (pt) OPENSSL_clear_free(pt, ptlen);
    free(ct);
    return ok;
}

/* Rewrite path as the first version did: sealed under the master key. */
static void make_legacy(const char *path, const uint8_t master[32], const char *label) {
    uint8_t k[32], *pt = NULL, *ct = NULL;
    char *in = NULL;
    size_t n = 0, ptlen = 0, ctlen = 0;
    scp_err e;
    if (scp_hkdf(master, 32, NULL, 0, "scp-cas identity key file v2", 28, k, 32, &e) < 0 ||
        scp_read_path(path, 65536, &in, &n, &e) < 0 ||
        scp_envelope_open(k, label, strlen(label), (uint8_t *)in, n, &pt, &ptlen, &e) < 0 ||
        scp_envelope_seal(master, label, strlen(label), pt, ptlen, &ct, &ctlen, &e) < 0 ||
        scp_write_file_atomic(path, ct, ctlen, 0600, &e) < 0) {
        fprintf(stderr, "FAIL: cannot make a legacy key file of '%s': %s\n", path, e.msg);
        exit(1);
    }
    OPENSSL_clear_free(pt, ptlen);
    free(in);
    free(ct);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: cas_keyfile_test SCRATCH_DIR\n");
        return 2;
    }
    char dir[4096], ca[4200], srv[4200];
    snprintf(dir, sizeof dir, "%s/keyfile-test.XXXXXX", argv[1]);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(ca, sizeof ca, "%s/ca.key.enc", dir);
    snprintf(srv, sizeof srv, "%s/server.key.enc", dir);
    uint8_t master[32];
    scp_err e;
    if (scp_random(master, sizeof master, &e) < 0) return 1;
    cas_identity id;
    int created = 0;
    CHECK(cas_identity_load_or_create(dir, master, &id, &created, &e) == 0 && created,
          "create identity: %s", e.msg);
    uint8_t fp[32];
    memcpy(fp, id.ca_fp, sizeof fp);
    cas_identity_free(&id);
    CHECK(opens_under(ca, master, "scp-cas ca key") == 0,
          "ca.key.enc opens under the master key: the master key is used as a GCM key");
    CHECK(opens_under(srv, master, "scp-cas server key") == 0,
          "server.key.enc opens under the master key: the master key is used as a GCM key");

    /* A data directory of the first version. */
    make_legacy(ca, master, "scp-cas ca key");
    make_legacy(srv, master, "scp-cas server key");
    CHECK(opens_under(ca, master, "scp-cas ca key") == 1, "legacy file was not made");
    CHECK(cas_identity_load_or_create(dir, master, &id, &created, &e) == 0 && !created,
          "a version 1 data directory must still load: %s", e.msg);
    CHECK(memcmp(id.ca_fp, fp, sizeof fp) == 0, "the CA changed across the migration");
    cas_identity_free(&id);
    CHECK(opens_under(ca, master, "scp-cas ca key") == 0 &&
              opens_under(srv, master, "scp-cas server key") == 0,
          "version 1 key files were not rewritten under the derived key");
    CHECK(cas_identity_load_or_create(dir, master, &id, &created, &e) == 0 && !created,
          "the migrated directory must load: %s", e.msg);
    cas_identity_free(&id);

    /* A wrong master key still fails clearly. */
    uint8_t wrong[32];
    memcpy(wrong, master, 32);
    wrong[0] ^= 1;
    CHECK(cas_identity_load_or_create(dir, wrong, &id, &created, &e) < 0 &&
              strstr(e.msg, "wrong master key") != NULL,
          "a wrong master key must fail with a clear message, got: %s", e.msg);

    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!failures && system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    if (failures) {
        fprintf(stderr, "cas_keyfile_test: %d failure(s)\n", failures);
        return 1;
    }
    printf("cas_keyfile_test: all checks passed\n");
    return 0;
}
