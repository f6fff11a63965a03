/* tests/volume/test_volume_lazy.c - the steps built so far of publishing lazily
 * (docs/volume-format.md, "Publishing lazily" and "Lock order and settle rules").
 *
 *   counter  (step 1) the publication counter in the lock page: four processes in shared mode
 *            each write a file of their own (a commit: the counter moves) and take a value of
 *            the counter under the volume lock, 150 times each, at once: every process sees its
 *            values strictly increase, no value is handed out twice (no fetch-add lost across
 *            processes), the mark under the lock is the value just taken, and the counter ends
 *            at least at the count of values taken and commits made.
 *   wrap     (step 1) a counter the host pushed to just below 2^64: a process whose mark was
 *            taken up there still reads the write that another process made after the counter
 *            wrapped (marks at or above VOL_PUB_LIMIT are never used, so a wrapped value never
 *            looks older than a mark; without that rule the read returned the old bytes).
 */
#include <signal.h>
#include <sys/wait.h>

#include "scenario.h"
#include "volume/internal.h"

#define CS 4096u
#define NPROC 4
#define ROUNDS 150

static uint8_t key[SCP_VOLUME_KEY_LEN];

static scp_volume *open_shared(const char *vol) {
    scp_err e;
    tu_err_clear(&e);
    scp_volume *v = scp_volume_open(vol, key, NULL, &e);
    CHECKF(v != NULL, "open: %s", e.msg);
    if (v) scp_volume_set_shared(v);
    return v;
}

/* The counter as the lock file holds it (u64 at VOL_PUB_OFF, native order: it is mapped). */
static uint64_t counter_read(const char *vol) {
    char p[4096];
    snprintf(p, sizeof p, "%s/lock", vol);
    int fd = open(p, O_RDONLY);
    uint64_t c = 0;
    if (fd < 0 || pread(fd, &c, sizeof c, VOL_PUB_OFF) != (ssize_t)sizeof c) c = 0;
    if (fd >= 0) close(fd);
    return c;
}
static void counter_write(const char *vol, uint64_t c) {
    char p[4096];
    snprintf(p, sizeof p, "%s/lock", vol);
    int fd = open(p, O_WRONLY);
    REQUIRE(fd >= 0 && pwrite(fd, &c, sizeof c, VOL_PUB_OFF) == (ssize_t)sizeof c);
    close(fd);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_counter(const char *vol) {
    scp_err e;
    tu_err_clear(&e);
    tu_rm_rf(vol);
    REQUIRE(scp_volume_create(vol, key, CS, &e) == 0);
    uint64_t c0 = counter_read(vol);
    tu_child ch[NPROC];
    for (int p = 0; p < NPROC; p++) {
        if (tu_child_start(&ch[p])) {
            uint64_t got[ROUNDS];
            memset(got, 0, sizeof got);
            scp_err ce;
            tu_err_clear(&ce);
            scp_volume *v = open_shared(vol);
            char name[16];
            snprintf(name, sizeof name, "c%d", p);
            scp_vfile *f = v ? scp_vfile_open(v, name, O_RDWR | O_CREAT, 0600, &ce) : NULL;
            CHECKF(f != NULL, "child %d: create: %s", p, ce.msg);
            uint8_t buf[100];
            for (int r = 0; f && r < ROUNDS; r++) {
                memset(buf, 'a' + r % 26, sizeof buf);
                CHECKF(scp_vfile_pwrite(f, buf, sizeof buf, (off_t)r * 100, &ce) == (ssize_t)sizeof buf,
                       "child %d: write %d: %s", p, r, ce.msg);
                REQUIRE(vol_lock(v, &ce) == 0);
                uint64_t a = vol_pub_take(v), m = vol_pub_mark(v);
                vol_unlock(v);
                CHECKF(m == a, "child %d: the mark under the lock (%llu) is not the value just taken (%llu)",
                       p, (unsigned long long)m, (unsigned long long)a);
                CHECKF(r == 0 || a > got[r - 1], "child %d: the counter went from %llu to %llu", p,
                       (unsigned long long)got[r - 1], (unsigned long long)a);
                got[r] = a;
            }
            if (f) scp_vfile_close(f, &ce);
            if (v) scp_volume_close(v, &ce);
            tu_child_exit(&ch[p], got, sizeof got);
        }
    }
    uint64_t *all = calloc((size_t)NPROC * ROUNDS, sizeof *all);
    REQUIRE(all != NULL);
    for (int p = 0; p < NPROC; p++)
        CHECKF(tu_child_wait(&ch[p], all + (size_t)p * ROUNDS, ROUNDS * sizeof *all),
               "child %d failed", p);
    qsort(all, (size_t)NPROC * ROUNDS, sizeof *all, cmp_u64);
    size_t dup = 0;
    for (size_t i = 1; i < (size_t)NPROC * ROUNDS; i++) dup += all[i] == all[i - 1];
    CHECKF(dup == 0, "counter: %zu values handed out twice across processes", dup);
    uint64_t c1 = counter_read(vol);
    /* (each round: a value taken, and a write's commit, which takes at least one) */
    CHECKF(c1 - c0 >= 2ull * NPROC * ROUNDS, "counter: moved %llu for %d values and %d commits",
           (unsigned long long)(c1 - c0), NPROC * ROUNDS, NPROC * ROUNDS);
    printf("counter: %d processes, %d values each, all distinct and increasing; the counter "
           "moved %llu\n",
           NPROC, ROUNDS, (unsigned long long)(c1 - c0));
    free(all);
}

static int read_is(scp_vfile *f, char want, const char *what) {
    uint8_t got[CS];
    scp_err e;
    tu_err_clear(&e);
    ssize_t r = scp_vfile_pread(f, got, CS, 0, &e);
    int ok = r == (ssize_t)CS;
    for (size_t i = 0; ok && i < CS; i++) ok = got[i] == (uint8_t)want;
    CHECKF(ok, "%s: read %zd bytes, not '%c' (first byte '%c', %s)", what, r, want,
           r > 0 ? got[0] : '?', e.msg);
    return ok;
}

static void test_wrap(const char *vol) {
    scp_err e;
    tu_err_clear(&e);
    tu_rm_rf(vol);
    REQUIRE(scp_volume_create(vol, key, CS, &e) == 0);
    scp_volume *v = open_shared(vol);
    REQUIRE(v != NULL);
    scp_vfile *f = scp_vfile_open(v, "f", O_RDWR | O_CREAT, 0600, &e);
    REQUIRE(f != NULL);
    uint8_t buf[CS];
    memset(buf, 'A', CS);
    REQUIRE(scp_vfile_pwrite(f, buf, CS, 0, &e) == (ssize_t)CS);
    /* The host pushes the counter to just below 2^64; our next write's marks are taken there */
    counter_write(vol, UINT64_MAX - 2);
    memset(buf, 'P', CS);
    REQUIRE(scp_vfile_pwrite(f, buf, CS, 0, &e) == (ssize_t)CS);
    read_is(f, 'P', "wrap: own write");
    /* Another process writes f: its values wrap past 0 */
    tu_child c;
    if (tu_child_start(&c)) {
        scp_err ce;
        tu_err_clear(&ce);
        scp_volume *w = open_shared(vol);
        scp_vfile *g = w ? scp_vfile_open(w, "f", O_RDWR, 0, &ce) : NULL;
        CHECKF(g != NULL, "wrap child: open: %s", ce.msg);
        uint8_t b[CS];
        memset(b, 'Q', CS);
        CHECKF(g && scp_vfile_pwrite(g, b, CS, 0, &ce) == (ssize_t)CS, "wrap child: write: %s", ce.msg);
        if (g) scp_vfile_close(g, &ce);
        if (w) scp_volume_close(w, &ce);
        tu_child_exit(&c, NULL, 0);
    }
    CHECKF(tu_child_wait(&c, NULL, 0), "wrap: the child failed");
    uint64_t now = counter_read(vol);
    CHECKF(now < 1000, "wrap: the counter did not wrap (%llu)", (unsigned long long)now);
    read_is(f, 'Q', "wrap: the other process's write after the counter wrapped");
    /* and writes go on from there */
    memset(buf, 'R', CS);
    CHECK_OK(scp_vfile_pwrite(f, buf, CS, 0, &e) == (ssize_t)CS ? 0 : -1, e);
    read_is(f, 'R', "wrap: a write after it");
    scp_vfile_close(f, &e);
    CHECK(scp_volume_close(v, &e) == 0);
    printf("wrap: a write after the counter wrapped is read by the process whose marks were "
           "taken above the limit\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    tu_rng rng = {0x1a2b21};
    tu_key(&rng, key);
    char *dir = tu_tmpdir("lazy");
    char *vol = tu_path(dir, "vol");
    int all = argc < 2;
    if (all || !strcmp(argv[1], "counter")) test_counter(vol);
    if (all || !strcmp(argv[1], "wrap")) test_wrap(vol);
    tu_rm_rf(dir);
    free(vol);
    free(dir);
    return tu_exit_code("test_volume_lazy");
}
