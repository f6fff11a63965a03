/* shield/net.h - the network shield inside libscp-shield.so (not a public API).
 *
 * TCP connections that the policy names (accepted on a listed port, or connected to a listed
 * peer) become TLS connections, transparently to the program: OpenSSL runs on memory BIOs, the
 * shield moves ciphertext between them and the kernel socket, and the program reads and writes
 * plaintext on its own descriptor, which stays the real kernel socket (so its number is an
 * ordinary one, and the kernel's epoll/poll/select see it). docs/shield.md "Network shield"
 * describes the design, its invariants and what is not covered.
 *
 * Every entry point returns what the kernel would (a result or -errno), like sh_syscall.
 */
#ifndef SCP_SHIELD_NET_H
#define SCP_SHIELD_NET_H

#include <stddef.h>
#include <sys/uio.h>

#include "scp/err.h"

/* Set once the network configuration is loaded: every hook below is a no-op otherwise. */
extern int sh_net_on;

/* init.c: read SCP_SHIELD_NET_FD (before main); the calls the shield's filter must trap for
 * the network shield (their number in *n, 0 when an earlier image's filter has them: init.c
 * installs the filter or dies); a sealed memfd for the next image at exec (-1 none, -2 error). */
int sh_net_load(scp_err *err);
int sh_net_filter_nrs(const int **nrs, int *n, scp_err *err);
int sh_net_to_memfd(void);

/* The SIGSYS handler: 1 and *ret set when nr is one of the calls the network filter traps. */
int sh_net_trap(long nr, const long a[6], long *ret);

/* Fast-path hooks (interpose.c). sh_net_is: fd is a shielded connection. */
int sh_net_is(int fd);
long sh_net_read(int fd, void *buf, size_t n);
/* write and writev on any descriptor once the network shield is on (the filter traps raw ones). */
long sh_net_write(int fd, const void *buf, size_t n);
long sh_net_writev(int fd, const struct iovec *iov, int cnt);
long sh_net_readv(int fd, const struct iovec *iov, int cnt);
/* readv/writev from interpose.c: 1 and *r set when handled (writev always, readv on a shielded socket). */
int sh_net_vec(long nr, int fd, const struct iovec *iov, int cnt, long *r);
/* The descriptor is about to be closed (the caller closes it in the kernel). */
void sh_net_close(int fd);
long sh_net_dup(long nr, const long a[6]);
/* exec (init.c, not in a vfork child): connections that a number keeps across exec go to a
 * relay first (net_relay.c); 0 or -errno (the exec fails). */
long sh_net_exec_relay(void);
long sh_net_sendfile(int out, int in, long long *off, size_t n);
long sh_net_splice(int in, long long *oin, int out, long long *oout, size_t n, unsigned fl);

#endif
