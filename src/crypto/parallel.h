/* crypto/parallel.h - run a loop over chunks on several cores.
 *
 * AES-GCM on one core (about 1.8 GB/s here with 4 KiB chunks and the kernel copy) is slower
 * than the page cache can move bytes, so large reads and writes split their chunks among a
 * small pool of worker threads (at most 3, started on first use). Small batches, and batches
 * that arrive while the pool is busy, run on the caller's thread alone: never slower than
 * serial, never blocking on another caller. The caller works on the batch too, and takes the
 * parts of a worker that has not started yet: it never waits for a thread that is not
 * scheduled, only for parts that a running worker took.
 */
#ifndef SCP_CRYPTO_PARALLEL_H
#define SCP_CRYPTO_PARALLEL_H

#include <stddef.h>

/* Process items [begin, end); returns 0, or -1 to report a failure (the function keeps its own
 * error details in ctx, and must be safe to call from several threads on disjoint ranges). */
typedef int (*scp_range_fn)(void *ctx, size_t begin, size_t end);

/* Run fn over [0, n), in parallel when n >= min_parallel and workers are free. Returns 0 if
 * every part returned 0, else -1. */
int scp_parallel_for(size_t n, size_t min_parallel, scp_range_fn fn, void *ctx);

/* The same with parts of `grain` items (the last may be shorter), which the threads take in
 * turn: for work whose parts contend for something serial (the writes of one file, which the
 * kernel serializes), small parts let one thread compute while another is in the kernel.
 * Below min_parallel items, or at most one part, fn runs once over [0, n). */
int scp_parallel_for_grain(size_t n, size_t min_parallel, size_t grain, scp_range_fn fn,
                           void *ctx);

/* End the workers and wait until each has left (none is inside a job meanwhile: waits for
 * the one in progress); the next job starts them again. For a change of credentials, which
 * glibc makes in every thread of the process (the shield, creds.c). */
void scp_parallel_stop(void);

#endif
