/* tests/volume/test_volume_keys.c - key separation and key hygiene of protected volumes.
 *
 * Asserts: every derived key depends on its label and context (no key serves two purposes, and
 * a label cannot be shifted into the context); a volume's keys live in a locked-if-possible,
 * non-dumpable mapping that is gone after scp_volume_close; and after the close no thread, the
 * closing one or any other, keeps a cached AES-GCM context (key schedule) of the volume.
 */
#include <dirent.h>
#include <pthread.h>

#include "crypto/crypto.h"
#include "testutil.h"

/* The VmFlags line of the mapping that contains addr in /proc/self/smaps into flags; 0 if no
 * mapping contains addr. */
static int mapping_flags(const void *addr, char *flags, size_t cap) {
    FILE *fp = fopen("/proc/self/smaps", "r");
    REQUIRE(fp);
    char line[512];
    int inside = 0, found = 0;
    uintptr_t a = (uintptr_t)addr;
    while (fgets(line, sizeof line, fp)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = a >= lo && a < hi;
            continue;
        }
        if (inside && !strncmp(line, "VmFlags:", 8)) {
            snprintf(flags, cap, "%s", line + 8);
            found = 1;
            break;
        }
    }
    fclose(fp);
    return found;
}

static void derived_keys_differ(void) {
    uint8_t k[32], a[32], b[32], c[32], d[32], e2[32];
    scp_err e;
    memset(k, 0x42, sizeof k);
    REQUIRE_OK(scp_derive_key(k, "scp/v2/chunk", "salt", 4, a, &e), e);
    REQUIRE_OK(scp_derive_key(k, "scp/v2/journal", "salt", 4, b, &e), e);
    REQUIRE_OK(scp_derive_key(k, "scp/v2/chunk", "salu", 4, c, &e), e);
    REQUIRE_OK(scp_derive_key(k, "scp/v2/chun", "ksalt", 5, d, &e), e);
    REQUIRE_OK(scp_derive_key(k, "scp/v2/chunk", "salt", 4, e2, &e), e);
    CHECKF(memcmp(a, b, 32) != 0, "two labels gave the same key");
    CHECKF(memcmp(a, c, 32) != 0, "two contexts gave the same key");
    CHECKF(memcmp(a, d, 32) != 0, "label/context boundary is ambiguous");
    CHECKF(memcmp(a, e2, 32) == 0, "derivation is not deterministic");
    CHECKF(memcmp(a, k, 32) != 0, "derived key equals its input");
}

struct reader {
    scp_volume *v;
    pthread_barrier_t *bar;
    int ok;
};

/* Reads a file (so this thread caches a keyed context), then waits while main closes. */
static void *reader_main(void *p) {
    struct reader *r = p;
    scp_err e;
    size_t n;
    uint8_t *b = tu_vget(r->v, "f", &n, &e);
    r->ok = b && n == 100000;
    free(b);
    pthread_barrier_wait(r->bar); /* read done */
    pthread_barrier_wait(r->bar); /* main closed the volume and checked */
    return NULL;
}

static void keys_gone_after_close(void) {
    tu_rng rng = {77};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    scp_volume *v = tu_new_volume(&rng, "keys", key, &root, &vd);
    static uint8_t data[100000];
    tu_fill(&rng, data, sizeof data);
    REQUIRE_OK(tu_vput(v, "f", data, sizeof data, &e), e);
    char flags[512];
    CHECKF(mapping_flags(v, flags, sizeof flags), "the volume's memory is not in any mapping");
    CHECKF(strstr(flags, " dd") != NULL, "the volume's keys are dumpable (VmFlags:%s)", flags);
    printf("  volume key region flags:%s", flags);
    if (!strstr(flags, " lo")) printf("  (not locked: RLIMIT_MEMLOCK too small; mlock is best effort)\n");
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    struct reader r = {v, &bar, 0};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, reader_main, &r) == 0);
    pthread_barrier_wait(&bar);
    CHECKF(r.ok, "the other thread read the file");
    size_t before = scp_crypto_cached_keys();
    CHECKF(before >= 2, "expected keyed contexts in two threads before close, found %zu", before);
    const void *addr = v;
    REQUIRE_OK(scp_volume_close(v, &e), e);
    size_t after = scp_crypto_cached_keys();
    CHECKF(after == 0, "%zu keyed AES-GCM contexts outlive scp_volume_close", after);
    CHECKF(!mapping_flags(addr, flags, sizeof flags), "the volume's key region is still mapped");
    printf("  keyed contexts: %zu before close, %zu after (another thread alive)\n", before, after);
    pthread_barrier_wait(&bar);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&bar);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* A volume whose header says format version 1 is refused with SCP_E_FORMAT and a message that
 * names the version (docs/volume-format.md, "Format versions"). */
static void version1_refused(void) {
    tu_rng rng = {78};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    scp_volume *v = tu_new_volume(&rng, "keys-v1", key, &root, &vd);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    char *h = tu_path(vd, "scpvol.hdr");
    int fd = open(h, O_WRONLY);
    REQUIRE(fd >= 0);
    static const uint8_t one[4] = {0, 0, 0, 1};
    REQUIRE(pwrite(fd, one, 4, 8) == 4);
    close(fd);
    v = scp_volume_open(vd, key, NULL, &e);
    CHECKF(!v && e.code == SCP_E_FORMAT && strstr(e.msg, "version 1"),
           "a version 1 header must fail with SCP_E_FORMAT naming the version, got %s: %s",
           scp_code_name(e.code), e.msg);
    printf("  version 1 volume: %s\n", e.msg);
    if (v) scp_volume_close(v, &e);
    free(h);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

/* Chunks are sealed under per-writer subkeys: each table entry (44 bytes: salt 16, nonce 12,
 * tag 16) names its subkey by a random salt; one writer's chunks share it, another writer (a
 * later open of the volume) draws another. Format 1 had no salt: every chunk of a file for its
 * whole life under the file key. */
static void writer_salts(void) {
    enum { CS = 4096, ENT = 44 };
    tu_rng rng = {79};
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char *root, *vd;
    scp_err e;
    scp_volume *v = tu_new_volume(&rng, "keys-salt", key, &root, &vd);
    static uint8_t data[6 * CS];
    tu_fill(&rng, data, sizeof data);
    REQUIRE_OK(tu_vput(v, "f", data, 3 * CS, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    scp_vfile *f = REQUIRE_PTR(scp_vfile_open(v, "f", O_RDWR, 0, &e), e);
    REQUIRE(scp_vfile_pwrite(f, data + 3 * CS, 3 * CS, 3 * CS, &e) == 3 * CS);
    REQUIRE_OK(scp_vfile_close(f, &e), e);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    char *tp = tu_only_object(vd, ".t");
    size_t n;
    uint8_t *t = tu_read_file(tp, &n);
    REQUIRE(t);
    CHECKF(n == 6 * ENT, "table of 6 chunks is %zu bytes, want %d", n, 6 * ENT);
    static const uint8_t zero[16];
    if (n == 6 * ENT) {
        CHECKF(memcmp(t, zero, 16) != 0, "chunk 0 has no subkey salt");
        CHECKF(memcmp(t, t + ENT, 16) == 0 && memcmp(t, t + 2 * ENT, 16) == 0,
               "one writer's chunks do not share its subkey salt");
        CHECKF(memcmp(t + 3 * ENT, t + 4 * ENT, 16) == 0 && memcmp(t + 3 * ENT, t + 5 * ENT, 16) == 0,
               "the second writer's chunks do not share its subkey salt");
        CHECKF(memcmp(t, t + 3 * ENT, 16) != 0, "two writers used the same subkey salt");
    }
    v = REQUIRE_PTR(scp_volume_open(vd, key, NULL, &e), e);
    uint8_t *got = tu_vget(v, "f", &n, &e);
    CHECKF(got && n == sizeof data && memcmp(got, data, n) == 0, "file written by two writers reads back");
    free(got);
    REQUIRE_OK(scp_volume_close(v, &e), e);
    printf("  two writers: two subkey salts in the table\n");
    free(t);
    free(tp);
    tu_rm_rf(root);
    free(root);
    free(vd);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    derived_keys_differ();
    keys_gone_after_close();
    version1_refused();
    writer_salts();
    return tu_exit_code("test_volume_keys");
}
