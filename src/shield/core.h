/* shield/core.h - what the files of the emulated system calls give each other.
 *
 * The emulation is one subsystem in several files, each with one purpose: core.c (the
 * descriptor table, fcntl/dup/close and the dispatcher sh_syscall), ofd.c (open file
 * descriptions shared across fork and exec), holding.c (how this process holds its volumes:
 * alone, privately, shared; fork and exit), exec.c (the hand-over across exec), path.c (paths
 * and the path-based calls), fileops.c (stat, open, directories, I/O, hard links), shmap.c
 * (mmap and the shared objects of writable shared mappings), locks.c (record locks and
 * flock), usermem.c (copies from and to the program's memory). internal.h is the shield's
 * state and its other subsystems; this header only what these files share. Each function
 * shared here is documented here, at its declaration, and not again at its definition. */
#ifndef SCP_SHIELD_CORE_H
#define SCP_SHIELD_CORE_H

#include <sys/syscall.h>
#include <unistd.h>

#include "shield/internal.h"

/* ---- small helpers ---- */

static inline long neg(const scp_err *e) { return -(long)(e->sys ? e->sys : EIO); }

static inline int32_t ofd_index(const struct sh_ofd *o) { return o ? (int32_t)(o - sh.ofd_map) : -1; }

static inline void ofd_get(struct sh_ofd *o) { __atomic_add_fetch(&o->refs, 1, __ATOMIC_ACQ_REL); }

/* The descriptions at numbers, for i < ndesc(): the aliases (only numbers below
 * SCP_SHIELD_MAX_ALIAS_FD can be), then the slots; NULL where there is none. Under sh.mu. */
static inline unsigned ndesc(void) { return SCP_SHIELD_MAX_ALIAS_FD + (unsigned)sh.nslots; }

static inline pfile *desc_at(unsigned i) {
    if (i >= SCP_SHIELD_MAX_ALIAS_FD) return sh.slot[i - SCP_SHIELD_MAX_ALIAS_FD];
    return i < (unsigned)sh.lo && sh.nalias ? sh.alias[i] : NULL;
}

static inline int readable(const pfile *pf) { return (pf->flags & O_ACCMODE) != O_WRONLY && !(pf->flags & O_PATH); }

static inline int writable(const pfile *pf) { return (pf->flags & O_ACCMODE) != O_RDONLY && !(pf->flags & O_PATH); }

/* ---- core.c ---- */

pfile *sh_pf_new(enum pf_kind kind, int vol, int flags, const char *path);
long sh_pf_put(pfile *pf);
/* Reference to the description behind fd, or NULL with *e = -EBADF. */
pfile *sh_pf_get(long fd, long *e);
/* Put pf (whose reference the caller gives away) into the lowest free slot >= min. */
long sh_slot_alloc(pfile *pf, long min, int cloexec);
/* A trapped path call without a directory descriptor (a raw open, stat, mkdir...) as the
 * *at call that the path dispatcher serves: its number, b filled (nr and a copy of a when it
 * is served as it is). */
long sh_at_form(long nr, const long a[6], long b[6]);

/* ---- ofd.c ---- */

struct sh_ofd *sh_ofd_map_fd(int fd);
void sh_ofd_put(struct sh_ofd *o);
/* The shared slot's half: lock it and put its offset and flags into the handle; NULL when pf
 * has none (the handle's own cursor is the description's). pf->mu is held. */
struct sh_ofd *sh_ofd_lock(pfile *pf);
void sh_ofd_unlock(pfile *pf, struct sh_ofd *o);
struct sh_ofd *sh_ofd_enter(pfile *pf);
void sh_ofd_leave(pfile *pf, struct sh_ofd *o);
/* The description's offset as an exec hands it on (the new image's cursor if it cannot map
 * the region). */
int64_t sh_pf_offset(const pfile *pf);
/* Give pf a shared slot (once) and, for a fork, the child's reference. pass marks the
 * descriptions already seen in this walk (dup'ed numbers share one). Under sh.mu. */
void sh_ofd_share(pfile *pf, int fork_child, unsigned pass);
extern unsigned sh_ofd_pass;

/* ---- exec.c ---- */

void sh_vfk_forget(pid_t pid, long fd);
long sh_vfk_add(pfile *pf, long fd);

/* ---- path.c ---- */

/* Follow the volume's symbolic links in (vol, rel) as the kernel does: every component but
 * the last, and the last if follow_last; a relative target from the link's directory, an
 * absolute one from the program's root (".." lexically, as everywhere in the shield). 1:
 * (vol, rel) now name the result inside a volume; 2: it lies outside every volume, abs holds
 * it (the kernel serves the call there); <0: -errno (ELOOP after 40 links). */
int sh_follow_links(int *vol, char *rel, size_t relsz, int follow_last, char *abs, size_t abssz);

/* ---- usermem.c ---- */

/* Can the program's 8 bytes at q be read (wr = 0) or written (wr = 1, storing there)? */
int sh_page_ok(uintptr_t q, int wr);

/* ---- fileops.c ---- */

long sh_put_stat(int vol, const scp_vstat *v, void *dst);
long sh_put_statx(int vol, const scp_vstat *v, void *dst);
long sh_pf_vstat(pfile *pf, scp_vstat *v);
long sh_path_vstat(int vol, const char *rel, scp_vstat *v);
/* mknod/mkfifo, in the kernel's order: the type, then the name (EEXIST), the parent's
 * permissions, and CAP_MKNOD (root) for a device. A regular file is created empty. */
long sh_mknod_rel(int vol, const char *rel, mode_t mode, dev_t dev);
/* symlink(2): the target is stored as given (never resolved at creation). */
long sh_symlink_rel(int vol, const char *rel, const char *target_in);
long sh_open_rel(int vol, const char *rel, int flags, mode_t mode);
long sh_do_getdents(pfile *pf, char *buf, size_t len);
long sh_io_read(pfile *pf, void *buf, size_t n, long long off);
long sh_io_write(pfile *pf, const void *buf, size_t n, long long off);
/* fallocate's FALLOC_FL_ZERO_RANGE and FALLOC_FL_PUNCH_HOLE (keep_size: FALLOC_FL_KEEP_SIZE) on
 * a protected file: zeros written over the range inside the file (scp_vfile_zero_range), as a
 * write for the set-ID bits and O_DSYNC. 0 or -errno. */
long sh_io_zero(pfile *pf, long long off, long long len, int keep_size);
long sh_io_vec(pfile *pf, const struct iovec *iov, long cnt, long long off, int wr);
long sh_do_lseek(pfile *pf, long long off, int whence);
/* The description's offset, shared or not (fcntl locks relative to SEEK_CUR). */
long sh_cur_offset(pfile *pf);
long sh_do_copy(long in, long long *inoff, long out, long long *outoff, size_t count);
long sh_link_rel(int vol, const char *from, const char *to, long flags);
/* linkat(fd, "", dirfd2, path2, AT_EMPTY_PATH): a new name for the open protected file fd,
 * whatever name it has now. */
int sh_link_fd(int fd, const long a[6], long *ret);

/* ---- shmap.c ---- */

/* At exit (after the write-back of sh_commit_all): the mappings go with the process, and the
 * last user's object with them. */
void sh_shm_release_all(void);
long sh_do_mmap(pfile *pf, void *addr, size_t len, int prot, int flags, long long off);
/* Write back every writable shared mapping this process made (exit, exec). */
void sh_maps_writeback_own(void);

/* ---- locks.c ---- */

/* A writable shared mapping of a protected file is a copy private to the process that made
 * it (written back at msync and munmap, see sh_do_mmap): two open descriptions that map one file
 * so would each change their own copy and the later write-back would undo the other's changes
 * (two sqlite3 processes on one WAL database: the -shm index). Until such copies are shared,
 * the second is refused loudly instead: every description that maps a file writable and
 * shared holds an OFD read lock on the guard byte SH_LOCK_LIMIT of the file's lock object
 * (past every range of the program's own locks, sh_do_record_lock), and a mapping is refused with
 * EAGAIN when another description holds one. The lock lasts as long as the description. */
long sh_map_guard(pfile *pf);
/* The holding of volume vi ends (sh_priv_end, before the private lock goes). */
void sh_lk_handoff(int vi);
/* A fork's child: lk_mu may have been held by a thread it does not have. It holds no kept
 * locks: the fork's prepare handed them to the kernel (sh_fork_share, sh_priv_end), and the
 * kernel's are not inherited either. */
void sh_lk_fork_child(void);
/* fcntl's record-lock commands. The range is the plaintext file's: SEEK_CUR and SEEK_END are
 * resolved against the protected file's position and size (the lock descriptor has neither). */
long sh_do_record_lock(pfile *pf, int cmd, void *arg);
long sh_do_flock(pfile *pf, int op);
/* The program closes a descriptor of pf: POSIX releases every process-associated lock of this
 * process on the file, whichever descriptor took it (the kernel keeps them per inode, so an
 * unlock of the whole file on any descriptor of the table object releases them all). */
void sh_locks_on_close(pfile *pf);

#endif
