/* cli/progress.c - see progress.h. */
#include "cli/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void progress_start(progress *p, const char *label, uint64_t total) {
    p->label = label;
    p->total = total;
    p->last_ns = 0;
    p->active = isatty(STDERR_FILENO);
}

void progress_update(progress *p, uint64_t done) {
    if (!p->active) return;
    int64_t now = mono_ns();
    if (now - p->last_ns < 100000000 && done < p->total) return;
    p->last_ns = now;
    unsigned pct = p->total ? (unsigned)(done * 100 / p->total) : 100;
    if (pct > 100) pct = 100;
    char bar[31];
    for (int i = 0; i < 30; i++) bar[i] = i < (int)(pct * 30 / 100) ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\r%-8s [%s] %3u%%  %llu/%llu MiB", p->label, bar, pct,
            (unsigned long long)(done >> 20), (unsigned long long)(p->total >> 20));
    fflush(stderr);
}

void progress_end(progress *p) {
    if (!p->active) return;
    fprintf(stderr, "\r%-72s\r", "");
    fflush(stderr);
}
