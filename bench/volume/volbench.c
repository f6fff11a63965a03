/* volbench - I/O benchmark for protected volumes against plain files (and gocryptfs).
 *
 *   volbench --backend plain DIR [options]
 *   volbench --backend scp VOLDIR --key-file KEY [--create [--chunk BYTES]] [options]
 *
 * The plain back end uses POSIX open/pwrite/pread/fsync on a file in DIR; pointing DIR into a
 * gocryptfs (or any other) mount benchmarks that file system. The scp back end uses the
 * protected-volume API (scp/volume.h) on a file inside the volume VOLDIR.
 *
 * Workloads, run in this order and repeated --reps times (median reported):
 *   seqwrite       unlink and create the file, N MiB in 1 MiB writes, fsync, close
 *   seqread        open, read it in 1 MiB reads to the end, close
 *   seqread-cold   the same after dropping the page cache (see below)
 *   randwrite      open the (now preallocated) file, --ops 4 KiB writes at 4 KiB-aligned
 *                  random offsets (xorshift64*, fixed --seed), one final fsync, close
 *   randread       open, --ops 4 KiB reads at random aligned offsets (seed + 1), close
 *   randread-cold  the same after dropping the page cache
 * The timed section of each workload covers file open, the I/O, the fsync and the close; it
 * does not cover opening the volume (scp) - that is a mount-time cost, like a FUSE mount - nor
 * the unlink before seqwrite, nor a sync(2) before each workload (so that dirty data of an
 * earlier workload, or of the unlink, is not flushed inside the timed fsync). The scp volume is closed and re-opened between workloads so that
 * no in-process state carries over from a write to a read (as with two processes).
 *
 * Page cache: the plain reads are "warm": whatever the write left in the page cache stays
 * there. For plain files that is plaintext; for scp it is ciphertext that each read
 * authenticates and decrypts again; for gocryptfs it is ciphertext under the mount (the FUSE
 * file's own cache is dropped when it is re-opened). That is the real-world comparison. The
 * -cold reads first sync and drop from the page cache (posix_fadvise DONTNEED) the file, every
 * regular file under the scp volume directory and under each --evict DIR, so the reads go to
 * the device. -cold means nothing on tmpfs (the page cache is the storage there).
 *
 * Output: one line per workload on stdout,
 *   volbench label=L backend=B chunk=C workload=W bytes=.. ops=.. reps=R secs=.. MBps=.. opsps=..
 * with secs the median time, MBps = bytes / secs / 1e6 and opsps = ops / secs; per-rep times
 * go to stderr with --verbose. Exit status: 0 on success, 1 on an I/O or API error (with a
 * message), 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "scp/err.h"
#include "scp/volume.h"

#define MIB (1024u * 1024u)
#define SEQ_IO (1024u * 1024u)
#define RAND_IO 4096u
#define MAX_REPS 15
#define MAX_EVICT 8

enum backend { BK_PLAIN, BK_SCP };
enum workload {
    WL_SEQWRITE,
    WL_SEQREAD,
    WL_SEQREAD_COLD,
    WL_RANDWRITE,
    WL_RANDREAD,
    WL_RANDREAD_COLD,
    WL_COUNT
};
static const char *const wl_name[WL_COUNT] = {"seqwrite",  "seqread",  "seqread-cold",
                                              "randwrite", "randread", "randread-cold"};
static int wl_is_cold(int w)
{
    return w == WL_SEQREAD_COLD || w == WL_RANDREAD_COLD;
}
static int wl_is_write(int w)
{
    return w == WL_SEQWRITE || w == WL_RANDWRITE;
}
static int wl_is_seq(int w)
{
    return w == WL_SEQWRITE || w == WL_SEQREAD || w == WL_SEQREAD_COLD;
}

struct opts {
    enum backend backend;
    const char *dir;
    const char *key_file;
    const char *label;
    const char *file;
    const char *evict[MAX_EVICT];
    int n_evict;
    int create;
    uint32_t chunk;
    uint64_t size_mib;
    uint64_t ops;
    uint64_t seed;
    int reps;
    int verbose;
    int want[WL_COUNT];
};

/* ---- helpers ------------------------------------------------------------------------------ */

static void die(const char *what, const scp_err *e)
{
    if (e)
        fprintf(stderr, "volbench: %s: %s (%s)\n", what, e->msg, scp_code_name(e->code));
    else
        fprintf(stderr, "volbench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void fill_random(uint8_t *buf, size_t n, uint64_t seed)
{
    uint64_t s = seed ? seed : 1;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = rng_next(&s);
        size_t k = n - i < 8 ? n - i : 8;
        memcpy(buf + i, &v, k);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t parse_u64(const char *s, const char *what)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || !*s || *end) {
        fprintf(stderr, "volbench: bad %s '%s' (want a number)\n", what, s);
        exit(2);
    }
    return (uint64_t)v;
}

static void *xalloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 4096, n))
        die("posix_memalign", NULL);
    return p;
}

/* ---- page-cache eviction (the -cold reads) ------------------------------------------------- */

static int evict_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type != FTW_F || !S_ISREG(sb->st_mode))
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0; /* best effort (a FUSE daemon's private file, a race with unlink) */
    (void)fdatasync(fd);
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    return 0;
}

static void evict(const struct opts *o, const char *plain_path)
{
    sync();
    if (plain_path)
        evict_one(plain_path, &(struct stat){.st_mode = S_IFREG}, FTW_F, NULL);
    if (o->backend == BK_SCP)
        nftw(o->dir, evict_one, 16, FTW_PHYS);
    for (int i = 0; i < o->n_evict; i++)
        nftw(o->evict[i], evict_one, 16, FTW_PHYS);
}

/* ---- plain back end --------------------------------------------------------------------- */

static void plain_pwrite_all(int fd, const uint8_t *buf, size_t n, uint64_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, buf, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("pwrite", NULL);
        }
        buf += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
}

static size_t plain_pread_full(int fd, uint8_t *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            die("pread", NULL);
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return got;
}

/* ---- scp back end ------------------------------------------------------------------------ */

static void scp_pwrite_all(scp_vfile *f, const uint8_t *buf, size_t n, uint64_t off)
{
    scp_err e;
    while (n) {
        ssize_t w = scp_vfile_pwrite(f, buf, n, off, &e);
        if (w < 0)
            die("scp_vfile_pwrite", &e);
        if (w == 0) {
            fprintf(stderr, "volbench: scp_vfile_pwrite wrote 0 bytes\n");
            exit(1);
        }
        buf += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
}

static size_t scp_pread_full(scp_vfile *f, uint8_t *buf, size_t n, uint64_t off)
{
    scp_err e;
    size_t got = 0;
    while (got < n) {
        ssize_t r = scp_vfile_pread(f, buf + got, n - got, off + got, &e);
        if (r < 0)
            die("scp_vfile_pread", &e);
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return got;
}

/* ---- one workload, one repetition -------------------------------------------------------- */

struct ctx {
    const struct opts *o;
    uint8_t key[SCP_VOLUME_KEY_LEN];
    char plain_path[4096];
    uint8_t *seqbuf;  /* SEQ_IO bytes of data to write */
    uint8_t *randbuf; /* RAND_IO * 64 bytes of data to write */
    uint8_t *rbuf;    /* read target */
    uint64_t file_bytes;
};

/* The I/O of one workload; `fd` or `vf` is the open file. Returns the number of I/O calls. */
static uint64_t do_io(struct ctx *c, enum workload w, int fd, scp_vfile *vf)
{
    const struct opts *o = c->o;
    uint64_t nops = 0;
    switch (w) {
    case WL_SEQWRITE:
        for (uint64_t off = 0; off < c->file_bytes; off += SEQ_IO, nops++) {
            if (vf)
                scp_pwrite_all(vf, c->seqbuf, SEQ_IO, off);
            else
                plain_pwrite_all(fd, c->seqbuf, SEQ_IO, off);
        }
        break;
    case WL_SEQREAD:
    case WL_SEQREAD_COLD: {
        uint64_t off = 0;
        for (;;) {
            size_t got = vf ? scp_pread_full(vf, c->rbuf, SEQ_IO, off)
                            : plain_pread_full(fd, c->rbuf, SEQ_IO, off);
            if (!got)
                break;
            off += got;
            nops++;
        }
        if (off != c->file_bytes) {
            fprintf(stderr, "volbench: read %llu bytes, expected %llu\n", (unsigned long long)off,
                    (unsigned long long)c->file_bytes);
            exit(1);
        }
        break;
    }
    case WL_RANDWRITE:
    case WL_RANDREAD:
    case WL_RANDREAD_COLD: {
        uint64_t s = (o->seed ? o->seed : 1) + (w != WL_RANDWRITE);
        uint64_t blocks = c->file_bytes / RAND_IO;
        for (; nops < o->ops; nops++) {
            uint64_t off = (rng_next(&s) % blocks) * RAND_IO;
            if (w == WL_RANDWRITE) {
                const uint8_t *src = c->randbuf + (nops % 64) * RAND_IO;
                if (vf)
                    scp_pwrite_all(vf, src, RAND_IO, off);
                else
                    plain_pwrite_all(fd, src, RAND_IO, off);
            } else {
                size_t got = vf ? scp_pread_full(vf, c->rbuf, RAND_IO, off)
                                : plain_pread_full(fd, c->rbuf, RAND_IO, off);
                if (got != RAND_IO) {
                    fprintf(stderr, "volbench: short random read at %llu\n",
                            (unsigned long long)off);
                    exit(1);
                }
            }
        }
        break;
    }
    default:
        break;
    }
    return nops;
}

static double run_plain(struct ctx *c, enum workload w, uint64_t *nops)
{
    int flags = O_CLOEXEC;
    switch (w) {
    case WL_SEQWRITE:
        if (unlink(c->plain_path) < 0 && errno != ENOENT)
            die("unlink", NULL);
        flags |= O_WRONLY | O_CREAT | O_TRUNC;
        break;
    case WL_RANDWRITE:
        flags |= O_WRONLY;
        break;
    default:
        flags |= O_RDONLY;
        break;
    }
    if (wl_is_cold(w))
        evict(c->o, c->plain_path);
    else
        sync(); /* start clean: earlier dirty data and the unlink's discards are not timed */

    double t0 = now();
    int fd = open(c->plain_path, flags, 0600);
    if (fd < 0)
        die(c->plain_path, NULL);
    *nops = do_io(c, w, fd, NULL);
    if (wl_is_write(w) && fsync(fd) < 0)
        die("fsync", NULL);
    if (close(fd) < 0)
        die("close", NULL);
    return now() - t0;
}

static double run_scp(struct ctx *c, enum workload w, uint64_t *nops)
{
    const struct opts *o = c->o;
    scp_err e;
    if (wl_is_cold(w))
        evict(o, NULL);
    scp_volume *vol = scp_volume_open(o->dir, c->key, NULL, &e);
    if (!vol)
        die("scp_volume_open", &e);

    int flags;
    switch (w) {
    case WL_SEQWRITE:
        if (scp_volume_unlink(vol, o->file, &e) < 0 && e.code != SCP_E_NOENT)
            die("scp_volume_unlink", &e);
        flags = O_WRONLY | O_CREAT | O_TRUNC;
        break;
    case WL_RANDWRITE:
        flags = O_WRONLY;
        break;
    default:
        flags = O_RDONLY;
        break;
    }
    sync(); /* as in run_plain */

    double t0 = now();
    scp_vfile *f = scp_vfile_open(vol, o->file, flags, 0600, &e);
    if (!f)
        die("scp_vfile_open", &e);
    *nops = do_io(c, w, -1, f);
    if (wl_is_write(w) && scp_vfile_fsync(f, &e) < 0)
        die("scp_vfile_fsync", &e);
    if (scp_vfile_close(f, &e) < 0)
        die("scp_vfile_close", &e);
    double t = now() - t0;

    if (scp_volume_close(vol, &e) < 0)
        die("scp_volume_close", &e);
    return t;
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: volbench --backend plain DIR [options]\n"
            "       volbench --backend scp VOLDIR --key-file KEY [--create [--chunk BYTES]] "
            "[options]\n"
            "options:\n"
            "  --workloads LIST   comma-separated subset of seqwrite, seqread, seqread-cold,\n"
            "                     randwrite, randread, randread-cold (always run in that\n"
            "                     order; default: the four without -cold). The others need\n"
            "                     the file that seqwrite leaves: list seqwrite or run it first\n"
            "  --size-mib N       file size for all workloads (default 256)\n"
            "  --ops N            number of 4 KiB random operations (default 32768)\n"
            "  --seed S           seed for the random offsets (default 42)\n"
            "  --reps R           repetitions; the median is printed (default 3, max %d)\n"
            "  --file NAME        file name inside DIR / the volume (default volbench.dat)\n"
            "  --evict DIR        for the -cold reads, also drop the page cache of all files\n"
            "                     under DIR (repeatable; give the gocryptfs cipher directory)\n"
            "  --create           create the scp volume first (VOLDIR must be absent or empty)\n"
            "  --chunk BYTES      chunk size for --create (default 4096)\n"
            "  --label L          free-form label printed on each result line\n"
            "  --verbose          print each repetition's time on stderr\n",
            MAX_REPS);
}

static void parse_workloads(struct opts *o, const char *list)
{
    memset(o->want, 0, sizeof o->want);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", list);
    char *save = NULL;
    for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int w = 0; w < WL_COUNT; w++)
            if (!strcmp(t, wl_name[w]))
                o->want[w] = found = 1;
        if (!found) {
            fprintf(stderr, "volbench: unknown workload '%s'\n", t);
            exit(2);
        }
    }
}

static void read_key(const char *path, uint8_t key[SCP_VOLUME_KEY_LEN])
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path, NULL);
    if (fread(key, 1, SCP_VOLUME_KEY_LEN, f) != SCP_VOLUME_KEY_LEN) {
        fprintf(stderr, "volbench: key file %s must hold %d bytes\n", path, SCP_VOLUME_KEY_LEN);
        exit(1);
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    struct opts o = {.backend = BK_PLAIN,
                     .label = "-",
                     .file = "volbench.dat",
                     .size_mib = 256,
                     .ops = 32768,
                     .seed = 42,
                     .reps = 3,
                     .want = {1, 1, 0, 1, 1, 0}};
    int have_backend = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV()                                                                                \
    do {                                                                                       \
        if (!v) {                                                                              \
            fprintf(stderr, "volbench: %s needs a value\n", a);                                \
            return 2;                                                                          \
        }                                                                                      \
        i++;                                                                                   \
    } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--backend")) {
            NEEDV();
            if (!strcmp(v, "plain"))
                o.backend = BK_PLAIN;
            else if (!strcmp(v, "scp"))
                o.backend = BK_SCP;
            else {
                fprintf(stderr, "volbench: unknown backend '%s' (plain or scp)\n", v);
                return 2;
            }
            have_backend = 1;
            if (i + 1 < argc && argv[i + 1][0] != '-')
                o.dir = argv[++i];
        } else if (!strcmp(a, "--key-file")) {
            NEEDV();
            o.key_file = v;
        } else if (!strcmp(a, "--workloads")) {
            NEEDV();
            parse_workloads(&o, v);
        } else if (!strcmp(a, "--size-mib")) {
            NEEDV();
            o.size_mib = parse_u64(v, a);
        } else if (!strcmp(a, "--ops")) {
            NEEDV();
            o.ops = parse_u64(v, a);
        } else if (!strcmp(a, "--seed")) {
            NEEDV();
            o.seed = parse_u64(v, a);
        } else if (!strcmp(a, "--reps")) {
            NEEDV();
            o.reps = (int)parse_u64(v, a);
        } else if (!strcmp(a, "--file")) {
            NEEDV();
            o.file = v;
        } else if (!strcmp(a, "--evict")) {
            NEEDV();
            if (o.n_evict == MAX_EVICT) {
                fprintf(stderr, "volbench: at most %d --evict\n", MAX_EVICT);
                return 2;
            }
            o.evict[o.n_evict++] = v;
        } else if (!strcmp(a, "--chunk")) {
            NEEDV();
            o.chunk = (uint32_t)parse_u64(v, a);
        } else if (!strcmp(a, "--label")) {
            NEEDV();
            o.label = v;
        } else if (!strcmp(a, "--create")) {
            o.create = 1;
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            o.verbose = 1;
        } else if (a[0] != '-' && !o.dir) {
            o.dir = a;
        } else {
            fprintf(stderr, "volbench: unknown argument '%s' (see --help)\n", a);
            return 2;
        }
#undef NEEDV
    }
    if (!have_backend || !o.dir) {
        usage(stderr);
        return 2;
    }
    if (o.backend == BK_SCP && !o.key_file) {
        fprintf(stderr, "volbench: the scp backend needs --key-file\n");
        return 2;
    }
    if (o.reps < 1 || o.reps > MAX_REPS || o.size_mib == 0 || o.ops == 0) {
        fprintf(stderr, "volbench: --reps must be 1..%d, --size-mib and --ops positive\n",
                MAX_REPS);
        return 2;
    }

    struct ctx c = {.o = &o, .file_bytes = o.size_mib * MIB};
    c.seqbuf = xalloc(SEQ_IO);
    c.randbuf = xalloc(RAND_IO * 64);
    c.rbuf = xalloc(SEQ_IO);
    fill_random(c.seqbuf, SEQ_IO, o.seed * 3 + 1);
    fill_random(c.randbuf, RAND_IO * 64, o.seed * 5 + 2);

    if (o.backend == BK_PLAIN) {
        snprintf(c.plain_path, sizeof c.plain_path, "%s/%s", o.dir, o.file);
    } else {
        scp_err e;
        read_key(o.key_file, c.key);
        if (o.create && scp_volume_create(o.dir, c.key, o.chunk, &e) < 0)
            die("scp_volume_create", &e);
    }

    uint32_t chunk = 0;
    if (o.backend == BK_SCP) {
        scp_err e;
        scp_volume_info info;
        scp_volume *vol = scp_volume_open(o.dir, c.key, NULL, &e);
        if (!vol)
            die("scp_volume_open", &e);
        if (scp_volume_info_get(vol, &info, &e) < 0)
            die("scp_volume_info_get", &e);
        chunk = info.chunk_size;
        if (scp_volume_close(vol, &e) < 0)
            die("scp_volume_close", &e);
    }

    double times[WL_COUNT][MAX_REPS];
    uint64_t ops[WL_COUNT] = {0};
    for (int r = 0; r < o.reps; r++) {
        for (int w = 0; w < WL_COUNT; w++) {
            if (!o.want[w])
                continue;
            uint64_t n = 0;
            double t = o.backend == BK_SCP ? run_scp(&c, (enum workload)w, &n)
                                           : run_plain(&c, (enum workload)w, &n);
            times[w][r] = t;
            ops[w] = n;
            if (o.verbose)
                fprintf(stderr, "volbench: %s rep %d: %s %.4f s\n", o.label, r + 1, wl_name[w], t);
        }
    }

    for (int w = 0; w < WL_COUNT; w++) {
        if (!o.want[w])
            continue;
        qsort(times[w], (size_t)o.reps, sizeof(double), cmp_double);
        double med = o.reps % 2 ? times[w][o.reps / 2]
                                : (times[w][o.reps / 2 - 1] + times[w][o.reps / 2]) / 2;
        uint64_t bytes = wl_is_seq(w) ? c.file_bytes : ops[w] * RAND_IO;
        printf("volbench label=%s backend=%s chunk=%u workload=%s bytes=%llu ops=%llu reps=%d "
               "secs=%.6f MBps=%.1f opsps=%.0f\n",
               o.label, o.backend == BK_SCP ? "scp" : "plain", chunk, wl_name[w],
               (unsigned long long)bytes, (unsigned long long)ops[w], o.reps, med,
               (double)bytes / med / 1e6, (double)ops[w] / med);
        fflush(stdout);
    }
    free(c.seqbuf);
    free(c.randbuf);
    free(c.rbuf);
    return 0;
}
