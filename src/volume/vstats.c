/* volume/vstats.c - the volume library's event counters (vstats.h): switched on by
 * SCP_VOLUME_STATS, kept in one MAP_SHARED anonymous page that forked children inherit, so
 * that a fork family counts together whatever way its children exit (a line per process
 * never came from PostgreSQL's backends, neither from the destructor nor from the shield's
 * exit commit), and appended to that file by the process that created the page at its exit. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "scp/volume.h"
#include "volume/vstats.h"

int vstat_on;
uint64_t *vstat_ctr;
_Thread_local int vstat_role;
static const char *vstat_path;
static pid_t vstat_owner;
static int vstat_dumped;
static clockid_t vstat_clk = CLOCK_THREAD_CPUTIME_ID; /* (SCP_VOLUME_STATS_CLOCK=wall: CLOCK_MONOTONIC) */

static const char *const vstat_name[VS_COUNT] = {
#define VSTAT_NAME(n) #n,
    VSTAT_LIST(VSTAT_NAME)
#undef VSTAT_NAME
};

__attribute__((constructor)) static void vstat_init(void) {
    const char *p = getenv("SCP_VOLUME_STATS");
    if (!p || !*p) return;
    void *m = mmap(NULL, VS_COUNT * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return;
    vstat_ctr = m;
    vstat_path = p;
    vstat_owner = getpid();
    const char *c = getenv("SCP_VOLUME_STATS_CLOCK");
    if (c && strcmp(c, "wall") == 0) vstat_clk = CLOCK_MONOTONIC;
    vstat_on = 1;
    uint64_t t0 = vstat_clock();
    for (int i = 0; i < 999; i++) (void)vstat_clock();
    vstat_ctr[VS_timer_ns_each] = (vstat_clock() - t0) / 1000;
    vstat_ctr[VS_timer_reads] = 0;
}

uint64_t vstat_clock(void) {
    struct timespec t;
    clock_gettime(vstat_clk, &t);
    __atomic_fetch_add(&vstat_ctr[VS_timer_reads], 1, __ATOMIC_RELAXED);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec + 1; /* (never 0: not timed) */
}

/* One line, one write(2) with O_APPEND: the lines of processes that exit at once stay whole. */
void scp_volume_stats_dump(void) {
    if (!vstat_on || getpid() != vstat_owner || __atomic_exchange_n(&vstat_dumped, 1, __ATOMIC_ACQ_REL))
        return;
    char line[8192];
    int n = snprintf(line, sizeof line, "vstats pid=%ld", (long)getpid()), any = 0;
    for (int i = 0; i < VS_COUNT && n > 0 && (size_t)n < sizeof line; i++) {
        uint64_t c = __atomic_load_n(&vstat_ctr[i], __ATOMIC_RELAXED);
        any |= c != 0 && i != VS_timer_ns_each; /* (a process that counted nothing: no line) */
        if (c) n += snprintf(line + n, sizeof line - (size_t)n, " %s=%llu", vstat_name[i], (unsigned long long)c);
    }
    if (!any || n <= 0 || (size_t)n >= sizeof line - 1) return;
    line[n++] = '\n';
    int fd = open(vstat_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return;
    ssize_t w = write(fd, line, (size_t)n);
    (void)w;
    close(fd);
}

__attribute__((destructor)) static void vstat_dtor(void) { scp_volume_stats_dump(); }
