/* shield/exec.c - the hand-over of protected descriptors across exec.
 *
 * Before exec: which numbers the new image inherits and with what (path, flags, offset,
 * shared description), including those a vfork child set up before its exec; in the new
 * image: taking them over (sh_exec_adopt). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "shield/internal.h"
#include "shield/core.h"

/* ---- descriptors a vfork child set up ---------------------------------------------------- */

/* Protected descriptors that a vfork child set up before exec (dup2 onto stdout...). Indexed
 * by nothing: entries carry the child's pid; the parent never reads them. */
#define MAXVFK 16
static struct vfk {
    pid_t pid;
    int fd;
    const void *id; /* the description (compared, never dereferenced) */
    scp_shield_inherit e;
} vfk[MAXVFK];

void sh_vfk_forget(pid_t pid, long fd) {
    for (int i = 0; i < MAXVFK; i++)
        if (vfk[i].pid == pid && vfk[i].fd == fd) vfk[i].pid = 0;
}

long sh_vfk_add(pfile *pf, long fd) {
    pid_t pid = (pid_t)syscall(SYS_getpid);
    sh_vfk_forget(pid, fd);
    for (int i = 0; i < MAXVFK; i++) {
        /* in use while its owner still shares our memory (a vfork child that has not exec'd) */
        if (vfk[i].pid) {
            long same = sh_gate(SYS_kcmp, pid, vfk[i].pid, 0 /* KCMP_VM */, 0, 0, 0);
            if (same == 0 || (same == -ENOSYS && !sh_gate(SYS_kill, vfk[i].pid, 0, 0, 0, 0, 0))) continue;
        }
        if (strlen(pf->path) >= sizeof vfk[i].e.path) return -ENAMETOOLONG;
        if (__atomic_load_n(&pf->nameless, __ATOMIC_ACQUIRE)) return -EOPNOTSUPP; /* no name to reopen */
        vfk[i].fd = (int)fd;
        vfk[i].id = pf;
        vfk[i].e.fd = (int)fd;
        vfk[i].e.share = -1;
        vfk[i].e.vol = pf->vol;
        vfk[i].e.flags = pf->flags & (O_ACCMODE | O_APPEND);
        vfk[i].e.offset = pf->kind == PF_FILE ? sh_pf_offset(pf) : 0;
        vfk[i].e.ofd = ofd_index(pf->ofd);
        strcpy(vfk[i].e.path, pf->path);
        vfk[i].pid = pid;
        return 0;
    }
    return -EMFILE;
}

/* ---- the hand-over ------------------------------------------------------------------------- */

/* ids[i]: the description behind cfg->inherit[i], so that numbers sharing one description
 * share it again after exec (one cursor, as dup2 promises) */
static void inherit_link(scp_shield_config *cfg, const void **ids, const void *id) {
    uint32_t n = cfg->ninherit - 1;
    ids[n] = id;
    cfg->inherit[n].share = -1;
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == id) {
            cfg->inherit[n].share = (int)i;
            break;
        }
}

static void inherit_add(scp_shield_config *cfg, const void **ids, long fd, const pfile *pf) {
    if (cfg->ninherit >= SCP_SHIELD_MAX_INHERIT || pf->kind != PF_FILE) return;
    if (__atomic_load_n(&pf->nameless, __ATOMIC_ACQUIRE)) { /* the next image reopens by name */
        sh_trace("exec: nameless (O_TMPFILE) descriptor %ld is not handed on", fd);
        return;
    }
    scp_shield_inherit *e = &cfg->inherit[cfg->ninherit];
    if (strlen(pf->path) >= sizeof e->path) return;
    e->fd = (int)fd;
    e->vol = pf->vol;
    int fl = pf->ofd ? (pf->flags & ~O_APPEND) | (__atomic_load_n(&pf->ofd->flags, __ATOMIC_ACQUIRE) & O_APPEND) : pf->flags;
    e->flags = fl & (O_ACCMODE | O_APPEND);
    e->offset = sh_pf_offset(pf);
    e->ofd = ofd_index(pf->ofd);
    strcpy(e->path, pf->path);
    cfg->ninherit++;
    inherit_link(cfg, ids, pf);
}

/* Open in the kernel's table (ours, or a vfork child's own copy) and not close-on-exec. */
static int kernel_keeps(long fd) {
    long fl = sh_gate(SYS_fcntl, fd, F_GETFD, 0, 0, 0, 0);
    return fl >= 0 && !(fl & FD_CLOEXEC);
}

/* The references to shared descriptions that the new image holds. A vfork child's exec takes
 * one for each it hands on (the parent keeps its own; taken before the exec, so that a parent
 * that closes at once cannot free the slot first: took[] lists them, to give back if the exec
 * fails). Any other exec hands its own on, and lists those it does not for the new image to
 * drop (an exec cannot undo anything once it succeeded). Under sh.mu. */
static int exec_ofd_refs(scp_shield_config *cfg, const void **ids, int vf, struct sh_ofd **took) {
    int ntook = 0;
    cfg->nofd_drop = 0;
    if (!sh.ofd_map) return 0;
    if (vf) {
        for (uint32_t i = 0; i < cfg->ninherit; i++)
            if (cfg->inherit[i].share < 0 && cfg->inherit[i].ofd >= 0) {
                took[ntook] = &sh.ofd_map[cfg->inherit[i].ofd];
                ofd_get(took[ntook++]);
            }
        return ntook;
    }
    unsigned pass = ++sh_ofd_pass;
    for (unsigned n = 0; n < ndesc(); n++) {
        pfile *pf = desc_at(n);
        if (!pf || !pf->ofd || pf->ofd_pass == pass) continue;
        pf->ofd_pass = pass;
        int kept = 0;
        for (uint32_t i = 0; i < cfg->ninherit; i++) kept |= ids[i] == pf;
        if (kept) continue;
        if (cfg->nofd_drop < SCP_SHIELD_MAX_OFD_DROP) cfg->ofd_drop[cfg->nofd_drop++] = ofd_index(pf->ofd);
        else sh_trace("exec: more than %u shared offsets to drop; '%s' keeps its slot", SCP_SHIELD_MAX_OFD_DROP, pf->path);
    }
    return 0;
}

/* Fill the exec-time parts of cfg: numbers with their own filter (kept occupied across exec by
 * non-close-on-exec placeholders so that the new image's loader never gets them) and the
 * protected files that stay open, read from the kernel's descriptor table (so that what a
 * vfork child closed or redirected counts). held[] receives the placeholders added here (to
 * undo them if exec fails). */
int sh_exec_prepare(scp_shield_config *cfg, int *held, int maxheld, struct sh_ofd **took, int *ntook) {
    int nheld = 0;
    pid_t me = (pid_t)syscall(SYS_getpid);
    int vf = me != sh.pid;
    const void *ids[SCP_SHIELD_MAX_INHERIT] = {0}; /* (set with each entry: inherit_add) */
    memset(cfg->filtered, 0, sizeof cfg->filtered);
    cfg->ninherit = 0;
    /* A dup's alias (sh_dup_low) has no filter of its own. One that the exec hands on (not
     * close-on-exec) gets it now, as dup2's aliases have: the next image's loader and libc
     * would otherwise meet the placeholder raw. Before sh.mu: installing a filter unmaps its
     * program, and the munmap hook takes sh.mu. (In a vfork child the filter is the child's
     * own and sh.alias_filtered stays as it was: dup_filtered says which it added.) */
    uint8_t dup_filtered[SCP_SHIELD_MAX_ALIAS_FD / 8] = {0};
    for (int n = 0; n < sh.lo && n < (int)SCP_SHIELD_MAX_ALIAS_FD && sh.nalias; n++)
        if (!sh.alias_filtered[n] && __atomic_load_n(&sh.alias[n], __ATOMIC_ACQUIRE) && kernel_keeps(n) &&
            sh_alias_filter(n) > 0)
            dup_filtered[n / 8] |= (uint8_t)(1u << (n % 8));
    if (!sh_cwd_view(cfg->vcwd)) cfg->vcwd[0] = 0; /* (takes sh.mu) */
    pthread_mutex_lock(&sh.mu);
    /* what a vfork child set up itself comes first */
    for (int i = 0; vf && i < MAXVFK; i++)
        if (vfk[i].pid == me && kernel_keeps(vfk[i].fd) && cfg->ninherit < SCP_SHIELD_MAX_INHERIT) {
            cfg->inherit[cfg->ninherit++] = vfk[i].e;
            inherit_link(cfg, ids, vfk[i].id);
        }
    for (int n = 0; n < sh.lo && n < (int)SCP_SHIELD_MAX_ALIAS_FD; n++) {
        int noted = 0;
        for (int i = 0; vf && i < MAXVFK; i++) noted |= vfk[i].pid == me && vfk[i].fd == n;
        if (!sh.alias_filtered[n] && !noted && !(dup_filtered[n / 8] & (1u << (n % 8)))) continue;
        cfg->filtered[n / 8] |= (uint8_t)(1u << (n % 8));
        long fdfl = sh_gate(SYS_fcntl, n, F_GETFD, 0, 0, 0, 0);
        if (fdfl == -EBADF) {
            if (nheld < maxheld && sh_gate(SYS_dup3, sh.placeholder, n, 0, 0, 0, 0) == n) held[nheld++] = n;
        } else if (noted) {
            continue;
        } else if (sh.alias[n] && (fdfl & FD_CLOEXEC)) {
            sh_gate(SYS_fcntl, n, F_SETFD, 0, 0, 0, 0); /* stays occupied, is not inherited */
        } else if (sh.alias[n]) {
            long fl = sh_gate(SYS_fcntl, n, F_GETFL, 0, 0, 0, 0);
            if (fl >= 0 && (fl & O_PATH)) inherit_add(cfg, ids, n, sh.alias[n]);
        }
    }
    for (int i = 0; i < sh.nslots; i++) {
        pfile *pf = sh.slot[i];
        if (!pf) continue;
        int noted = 0;
        for (int j = 0; vf && j < MAXVFK; j++) noted |= vfk[j].pid == me && vfk[j].fd == sh.base + i;
        if (!noted && kernel_keeps(sh.base + i)) inherit_add(cfg, ids, sh.base + i, pf);
    }
    *ntook = exec_ofd_refs(cfg, ids, vf, took);
    pthread_mutex_unlock(&sh.mu);
    return nheld;
}

void sh_exec_failed(struct sh_ofd **took, int ntook) {
    for (int i = 0; i < ntook; i++) sh_ofd_put(took[i]);
}

/* In the new image: take over what the previous image handed on. */
void sh_exec_adopt(void) {
    scp_shield_config *cfg = &sh.cfg;
    sh_in_lib++;
    /* the region of shared offsets that the previous image used (its descriptor is inherited) */
    if ((cfg->flags & SCP_SHIELD_F_OFD) && !(sh.ofd_map = sh_ofd_map_fd(SH_OFD_FD()))) {
        sh_trace("the region of shared offsets could not be mapped: inherited descriptors keep a cursor per process");
        cfg->flags &= ~(uint32_t)SCP_SHIELD_F_OFD;
    }
    for (uint32_t i = 0; sh.ofd_map && i < cfg->nofd_drop; i++) sh_ofd_put(&sh.ofd_map[cfg->ofd_drop[i]]);
    cfg->nofd_drop = 0;
    pfile *made[SCP_SHIELD_MAX_INHERIT] = {0}, *drop[SCP_SHIELD_MAX_INHERIT];
    int ndrop = 0;
    assert(cfg->ninherit <= SCP_SHIELD_MAX_INHERIT);
    for (uint32_t i = 0; i < cfg->ninherit; i++) {
        scp_shield_inherit *e = &cfg->inherit[i];
        scp_err err;
        pfile *pf;
        if (e->share >= 0 && (uint32_t)e->share < i && made[e->share]) {
            pf = made[e->share];
            __atomic_add_fetch(&pf->refs, 1, __ATOMIC_ACQ_REL);
            goto place;
        }
        /* the first entry of a description holds its reference (sh_exec_prepare) */
        struct sh_ofd *o = sh.ofd_map && e->ofd >= 0 && e->share < 0 ? &sh.ofd_map[e->ofd] : NULL;
        long ready = sh_volume_ready(e->vol);
        scp_vfile *vf = ready < 0 ? NULL
                                  : scp_vfile_open(sh.vol[e->vol].v, e->path, e->flags & (O_ACCMODE | O_APPEND), 0, &err);
        if (ready < 0) scp_fail(&err, SCP_E_SYS, (int)-ready, "its volume cannot be opened");
        if (!vf) {
            sh_trace("descriptor %d ('%s') could not be reopened after exec: %s", e->fd, e->path, err.msg);
            if (o) sh_ofd_put(o);
            continue;
        }
        if (e->offset > 0) scp_vfile_seek(vf, e->offset, SEEK_SET, NULL);
        pf = sh_pf_new(PF_FILE, e->vol, e->flags, e->path);
        if (!pf) {
            scp_vfile_close(vf, NULL);
            if (o) sh_ofd_put(o);
            continue;
        }
        pf->vf = vf;
        pf->ofd = o; /* the reference the previous image held (or took for us) */
        made[i] = pf;
    place:
        if (e->fd >= sh.base && e->fd < sh.base + sh.nslots) {
            sh.slot[e->fd - sh.base] = pf;
        } else if (e->fd >= 0 && e->fd < sh.lo) {
            sh.alias[e->fd] = pf;
            sh.nalias++;
        } else {
            /* (a number this image has no place for: the entry's reference goes back after
             * the loop, since a later entry may share the description through made[]) */
            drop[ndrop++] = pf;
            continue;
        }
        sh_trace("descriptor %d refers to protected '%s' after exec", e->fd, e->path);
    }
    for (int i = 0; i < ndrop; i++) sh_pf_put(drop[i]);
    for (int n = 0; n < sh.lo && n < (int)SCP_SHIELD_MAX_ALIAS_FD; n++) {
        if (!(cfg->filtered[n / 8] & (1u << (n % 8)))) continue;
        sh.alias_filtered[n] = 1;
        if (sh.alias[n] || sh_console_fd(n)) continue;
        long fl = sh_gate(SYS_fcntl, n, F_GETFL, 0, 0, 0, 0);
        if (fl >= 0 && (fl & O_PATH)) sh_gate(SYS_close, n, 0, 0, 0, 0, 0); /* a stale placeholder */
    }
    memset(cfg->filtered, 0, sizeof cfg->filtered);
    cfg->ninherit = 0;
    sh_lib_leave();
}
