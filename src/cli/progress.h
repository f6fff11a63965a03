/* cli/progress.h - a one-line progress bar on stderr, shown only when stderr is a terminal. */
#ifndef SCP_CLI_PROGRESS_H
#define SCP_CLI_PROGRESS_H

#include <stdint.h>

typedef struct progress {
    const char *label;
    uint64_t total;
    int64_t last_ns;
    int active; /* stderr is a terminal */
} progress;

void progress_start(progress *p, const char *label, uint64_t total);
/* Redraw at most ten times a second. */
void progress_update(progress *p, uint64_t done);
/* Clear the line. */
void progress_end(progress *p);

#endif
