/* runtime/attest_run.c - see attest_run.h: the run's flow (measure, attest, apply the
 * configuration, fork) and the supervisor (signals, reaping, the volumes' tags). */
#include "runtime/attest_run.h"
#include "runtime/run_int.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <linux/futex.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/bytes.h"
#include "common/log.h"
#include "common/util.h"
#include "runtime/launch.h"
#include "scp/attest.h"
#include "scp/shield.h"
#include "scp/volume.h"

static volatile sig_atomic_t child_pid, pending_sig;
static void forward(int sig) {
    if (child_pid > 0) kill((pid_t)child_pid, sig);
    else pending_sig = sig; /* PID 1 before the program exists: delivered once it does */
}

static const int forwarded_sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};
static void forward_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    for (size_t i = 0; i < sizeof forwarded_sigs / sizeof forwarded_sigs[0]; i++) sigaction(forwarded_sigs[i], &sa, NULL);
}

/* As PID 1 of a container (a secure image's entry) this process is the parent of every orphan
 * of the program: reap them all, so that no zombie piles up. Returns the program's status once
 * it has exited (-1 before); a console relay reaped here is marked done (0) in relay[]. */
static int reap_all(pid_t prog, pid_t relay[3]) {
    int st, status = -1;
    pid_t r;
    while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
        if (r == prog) status = scp_exit_code(st, "scpctl run");
        for (int k = 1; k < 3; k++)
            if (relay[k] == r) relay[k] = 0;
    }
    return status;
}

/* The tag records read from the tag socket and not yet reported: of each volume's records only
 * the newest generation (newest[i], bit i of got). CAS keeps one tag per volume and refuses an
 * older generation, so a tag that a newer one of the same volume follows needs no report of its
 * own, and a --tag-sync commit waits for acked >= its generation, which the newest one's
 * acknowledgement gives. When CAS is slower than the commits (MariaDB at one commit per
 * transaction), the records that queued during one report go to CAS as one. A record of the
 * same generation as the held one but another tag (two states at one generation: a fork) is
 * not folded: it waits in carry for the next batch, so that CAS sees both and refuses the
 * second. */
struct tag_batch {
    uint8_t newest[SCP_SHIELD_MAX_VOLUMES][SCP_VOLUME_TAG_LEN];
    unsigned got;
    int has_carry;
    uint8_t carry[1 + SCP_VOLUME_TAG_LEN];
};

/* Fold one record (volume index, tag) into b; 0, or -1 when it must wait for the next batch. */
static int batch_add(struct tag_batch *b, const uint8_t *rec) {
    uint8_t *n = b->newest[rec[0]];
    if (b->got & (1u << rec[0])) {
        uint64_t g = scp_get_u64(rec + 1), h = scp_get_u64(n);
        if (g == h && memcmp(n, rec + 1, SCP_VOLUME_TAG_LEN)) return -1;
        if (g <= h) return 0;
    }
    memcpy(n, rec + 1, SCP_VOLUME_TAG_LEN);
    b->got |= 1u << rec[0];
    return 0;
}

/* Fill b: the carried record, one read that may block (poll said the socket is readable; not
 * when a carried record is there already), then whatever else is queued, without waiting. Returns 0, or -1 at the socket's end with nothing
 * taken. */
static int take_tags(int fd, size_t nv, struct tag_batch *b) {
    assert(nv <= SCP_SHIELD_MAX_VOLUMES);
    b->got = 0;
    if (b->has_carry) {
        b->has_carry = 0;
        batch_add(b, b->carry);
    }
    for (int flags = b->got ? MSG_DONTWAIT : 0;; flags = MSG_DONTWAIT) {
        uint8_t rec[1 + SCP_VOLUME_TAG_LEN];
        ssize_t r = recv(fd, rec, sizeof rec, flags);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return b->got || flags ? 0 : -1;
        if (r != (ssize_t)sizeof rec || rec[0] >= nv) continue;
        if (batch_add(b, rec) < 0) {
            memcpy(b->carry, rec, sizeof rec);
            b->has_carry = 1;
            return 0;
        }
    }
}

/* --tag-sync: publish CAS's acknowledgement to the waiting commits. */
static void ack(struct scp_shield_tag_sync *ts, size_t i, uint64_t gen) {
    if (!ts || i >= 8) return;
    if (__atomic_load_n(&ts->acked[i], __ATOMIC_ACQUIRE) < gen) __atomic_store_n(&ts->acked[i], gen, __ATOMIC_RELEASE);
    __atomic_add_fetch(&ts->acks, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, &ts->acks, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static int wait_status(pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return 1;
    return scp_exit_code(st, "scpctl run");
}

/* A sealed stdout or stderr (fd k) reaches the host through a relay: the program gets one end
 * of a socket pair, and a process of scpctl's on the host copies what arrives on the other end
 * to scpctl's own descriptor k. A pipe or file that the program held (in the shield's range)
 * could be reopened through /proc/self/fd/N by a raw path call, which no filter sees, and
 * written in plaintext; a socket cannot be reopened that way. The relay blocks when the host
 * does not drain, and so, once the socket's buffer is full, does the program: as with plain
 * output. It ends at end of file, when every process of the container has closed its end. */
static pid_t console_relay(int k, int *prog_end) {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) return -1;
    fflush(NULL);
    pid_t r = fork();
    if (r < 0) {
        close(sp[0]);
        close(sp[1]);
        return -1;
    }
    if (r == 0) {
        /* only the socket and the host's descriptor: no other holder of the tag socket */
        if (dup2(sp[0], 3) < 0) _exit(1);
        syscall(SYS_close_range, 4u, ~0u, 0u);
        signal(SIGINT, SIG_IGN); /* a terminal's Ctrl-C is the program's to act on */
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        static char buf[65536];
        for (;;) {
            ssize_t n = read(3, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0 || scp_write_full(k, buf, (size_t)n) < 0) _exit(n < 0 ? 1 : 0);
        }
    }
    close(sp[0]);
    *prog_end = sp[1];
    return r;
}

/* In the child: name the memfd `fd` (from one of the *_memfd makers above; -1 when it failed) in
 * the environment variable `env` for the shield, or exit. */
static void pass_fd(const struct scp_attest_run_opts *o, const char *env, int fd, const char *what) {
    char num[16];
    snprintf(num, sizeof num, "%d", fd);
    if (fd < 0 || setenv(env, num, 1) < 0) {
        scp_log(SCP_LOG_ERROR, RUN_WHO(o), "cannot pass %s to the shield", what);
        _exit(1);
    }
}

/* In the child: argv[0] as the policy names it and placeholders
 * for the rest of the policy's command, whose values (and the policy's environment) reach the
 * program through the launch memfd, so that no rendered secret is in /proc/PID/cmdline or
 * /proc/PID/environ; then exec the measured descriptor under the shield. */
static void child_exec(json_t *cfg, const struct scp_attest_run_opts *o, struct scp_run_opts *ro, const char *prog,
                       int tag_wr, const struct scp_attest_run_identity *id, const int con_end[3]) {
    scp_err e = {0};
    if (ro->timing_ns) ro->timing_ns = scp_now_ns(); /* the container setup starts here */
    for (int k = 1; k < 3; k++) /* sealed streams: the relay's socket (console_relay) */
        if (con_end[k] >= 0 && (dup2(con_end[k], k) < 0 || close(con_end[k]) < 0)) _exit(1);
    signal(SIGPIPE, SIG_DFL); /* an ignored signal would stay ignored in the program */
    clearenv();
    /* no program without its supervisor: its commits would reach CAS no more */
    pid_t sup = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != sup) _exit(1);
    if (ro->container.enabled && scp_container_prepare(&ro->container, &e) < 0) {
        scp_log(SCP_LOG_ERROR, RUN_WHO(o), "%s", e.msg);
        _exit(1);
    }
    /* copies of what outlives the configuration, which is wiped and freed before the container's
     * relay and init are forked from this process (they keep no secret) */
    static char cwd[PATH_MAX], arg0[PATH_MAX], mounts[SCP_SHIELD_MAX_VOLUMES][PATH_MAX];
    const char *c = json_string_value(json_object_get(cfg, "cwd"));
    if (c) snprintf(cwd, sizeof cwd, "%s", c);
    ro->cwd = c ? cwd : NULL;
    for (unsigned i = 0; i < ro->nvol; i++) {
        snprintf(mounts[i], sizeof mounts[i], "%s", ro->vol[i].mount);
        ro->vol[i].mount = mounts[i];
    }
    json_t *cmd = json_object_get(cfg, "command");
    int allow = json_is_true(json_object_get(cfg, "append_args"));
    size_t nc = json_array_size(cmd), na = allow ? (size_t)o->argc - 1 : 0;
    char **argv = calloc(nc + na + 2, sizeof *argv);
    if (!argv) _exit(1);
    size_t n = 0;
    snprintf(arg0, sizeof arg0, "%s", nc ? json_string_value(json_array_get(cmd, 0)) : prog);
    argv[n++] = arg0;
    for (size_t i = 1; i < nc; i++) argv[n++] = "(scp)";
    for (size_t i = 0; i < na; i++) argv[n++] = o->argv[1 + i];
    argv[n] = NULL;
    pass_fd(o, SCP_SHIELD_ENV_LAUNCH_FD, run_launch_memfd(cmd, nc ? 1 : 0, json_object_get(cfg, "environment")),
            "the configuration");
    json_t *files = json_object_get(cfg, "files");
    if (json_array_size(files)) pass_fd(o, SCP_SHIELD_ENV_FILES_FD, run_files_memfd(files), "the injected files");
    /* the trusted-file manifest: what the shield checks every exec, executable mapping and
     * open of a listed file against (docs/runtime.md "Trusted files") */
    pass_fd(o, SCP_SHIELD_ENV_TRUSTED_FD, scp_shield_sealed_memfd("scp-trusted", id->manifest, id->manifest_len, NULL),
            "the trusted-file manifest");
    int cfd = run_console_memfd(json_object_get(cfg, "console"), o->session, o->service, o->console_lines);
    if (cfd == -2) {
        scp_log(SCP_LOG_ERROR, RUN_WHO(o), "CAS sent a malformed console section");
        _exit(1);
    }
    if (cfd >= 0) pass_fd(o, SCP_SHIELD_ENV_CONSOLE_FD, cfd, "the console configuration");
    json_t *net = json_object_get(cfg, "network");
    if (json_is_object(net)) pass_fd(o, SCP_SHIELD_ENV_NET_FD, run_net_memfd(net), "the network configuration");
    json_decref(cfg); /* the rendered secrets are in the launch, files, console and network memfds now */
    ro->argv = argv;
    ro->tag_fd = tag_wr;
    scp_run_exec(ro, &e);
    scp_log(SCP_LOG_ERROR, RUN_WHO(o), "%s", e.msg);
    _exit(e.code == SCP_E_NOENT ? 127 : e.code == SCP_E_SYS ? 1 : 126);
}

int scp_attest_run(scp_cas_client *c, const struct scp_attest_run_opts *o, scp_err *err) {
    if (o->argc < 1 || !o->argv[0]) return scp_fail(err, SCP_E_INVAL, EINVAL, "no program given");
    scp_elf_set *set = calloc(1, sizeof *set);
    struct scp_run_opts *ro = calloc(1, sizeof *ro);
    struct run_volume *rv = calloc(SCP_SHIELD_MAX_VOLUMES, sizeof *rv);
    char *text = NULL;
    json_t *cfg = NULL;
    int rc = -1, pipefd[2] = {-1, -1}, sync_fd = -1, con_end[3] = {-1, -1, -1};
    pid_t relay[3] = {0, 0, 0};
    struct scp_shield_tag_sync *tsync = NULL;
    struct scp_attest_run_identity ident = {0};
    EVP_PKEY *ik = NULL;
    struct run_renewal rn = {.fd = -1};
    if (!set || !ro || !rv) {
        scp_fail(err, SCP_E_NOMEM, ENOMEM, "out of memory");
        goto out;
    }
    /* an ordinary user: the user namespace now, while no secret is in memory */
    if (o->container.enabled && scp_container_enter_userns(err) < 0) goto out;
    uint8_t ppub[32], pid_[32];
    if (!o->evidence && (!o->tee || o->tee == SCP_TEE_SIM) &&
        scp_sim_platform_pubkey(o->platform_key, ppub, pid_, err) < 0) { /* before CAS is asked anything */
        scp_err_prefix(err, "platform key (--platform-key)");
        goto out;
    }
    /* CAS going away must show as an error on the connection, not kill the supervisor */
    signal(SIGPIPE, SIG_IGN);
    /* PID 1 ignores signals it has no handler for: docker stop during attestation must not be lost */
    int pid1 = getpid() == 1;
    if (pid1) forward_signals();
    double t0 = run_now_s();
    const char *rootfs = o->container.enabled ? o->container.rootfs : NULL;
    struct scp_attest_run_conf conf = {o->container.net_none, o->container.keep_caps, o->trusted, o->ntrusted,
                                       o->image_json != NULL};
    if (scp_attest_run_measure(o->argv[0], o->shield_lib, o->image_json ? "/" : rootfs, &conf, set, &ident, err) < 0)
        goto out;
    /* a secure image: the files the same, the image's document instead of the configuration text,
     * as image build and the local attestation service compute it */
    if (o->image_json &&
        scp_attest_measure_fds(set->fd, set->n, o->image_json, strlen(o->image_json), ident.m, err) < 0)
        goto out;
    /* the image's other files: checked by the shield at exec, executable mapping and open */
    for (size_t i = 0; i < o->n_more_trusted; i++)
        if (scp_shield_trusted_add(&ident.manifest, &ident.manifest_len, &o->more_trusted[i]) < 0) {
            scp_fail(err, SCP_E_INVAL, E2BIG, "cannot list %s in the trusted-file manifest (more than %u files?)",
                     o->more_trusted[i].path, SCP_SHIELD_TRUSTED_MAX);
            goto out;
        }
    double t1 = run_now_s();
    uint8_t ik_pub[SCP_INSTANCE_KEY_LEN];
    if (!(ik = run_instance_key_new(ik_pub, err))) goto out;
    if (run_attest_retry(c, o, ident.m, ik_pub, &text, err) < 0) goto out;
    double t2 = run_now_s();
    int timing = getenv("SCP_RUN_TIMING") != NULL;
    if (timing)
        scp_log(SCP_LOG_INFO, RUN_WHO(o), "timing: measure %.1f ms (%zu files), attest %.1f ms", (t1 - t0) * 1e3, set->n,
                (t2 - t1) * 1e3);
    cfg = json_loads(text, 0, NULL);
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    text = NULL;
    if (!cfg) {
        scp_fail(err, SCP_E_FORMAT, EPROTO, "CAS sent a configuration that is not JSON");
        goto out;
    }
    json_t *jnet = json_object_get(cfg, "network");
    const char *nid = json_string_value(json_object_get(jnet, "identity"));
    time_t ik_expires = 0;
    if (nid && strcmp(nid, "instance") == 0 &&
        (run_instance_key_install(jnet, ik, ik_pub, &ik_expires, err) < 0 || run_renewal_start(&rn, ik_expires, ik_pub, o, err) < 0))
        goto out;
    ro->net_renew_fd = rn.fd;
    EVP_PKEY_free(ik); /* the network section holds it now */
    ik = NULL;
    const char *token = json_string_value(json_object_get(cfg, "volume_token"));
    if (run_merge_image_env(cfg, o->image_env, err) < 0) goto out;
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(cfg, "environment"), k, v) {
        if (!run_env_name_ok(k) || !json_is_string(v)) {
            scp_fail(err, SCP_E_INVAL, EINVAL,
                     "the policy's environment sets %s, which would change what the loader runs; refusing", k);
            goto out;
        }
    }
    json_t *cmd = json_object_get(cfg, "command");
    for (size_t i = 0; i < json_array_size(cmd); i++)
        if (!json_is_string(json_array_get(cmd, i))) {
            scp_fail(err, SCP_E_FORMAT, EPROTO, "CAS sent a malformed command");
            goto out;
        }
    if (o->argc > 1 && !json_is_true(json_object_get(cfg, "append_args"))) {
        scp_fail(err, SCP_E_INVAL, EPERM,
                 "the policy of service %s does not allow arguments from the command line (append_args: true)",
                 o->service);
        goto out;
    }
    json_t *vols = json_object_get(cfg, "volumes");
    if (run_check_files(json_object_get(cfg, "files"), vols, o->service, err) < 0) goto out;
    size_t nv = json_array_size(vols);
    if (rootfs) { /* before any volume is touched */
        int root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        const char *cwd = json_string_value(json_object_get(cfg, "cwd"));
        int bad = root < 0 ? scp_fail_errno(err, "cannot open the rootfs %s", rootfs)
                           : cwd ? run_path_in_rootfs(root, "working directory", cwd, rootfs, err) : 0;
        for (size_t i = 0; i < nv && !bad; i++) {
            const char *path = json_string_value(json_object_get(json_array_get(vols, i), "path"));
            if (path) bad = run_path_in_rootfs(root, "volume path", path, rootfs, err);
        }
        if (root >= 0) close(root);
        if (bad) goto out;
    }
    if (nv > SCP_SHIELD_MAX_VOLUMES || !token) {
        scp_fail(err, SCP_E_INVAL, EINVAL, nv > SCP_SHIELD_MAX_VOLUMES ? "more than %u volumes" : "no volume token",
                 SCP_SHIELD_MAX_VOLUMES);
        goto out;
    }
    const char *vdir = o->volume_dir ? o->volume_dir : scp_attest_run_default_volume_dir();
    for (size_t i = 0; i < nv; i++) {
        json_t *jv = json_array_get(vols, i);
        const char *name = json_string_value(json_object_get(jv, "name"));
        const char *path = json_string_value(json_object_get(jv, "path"));
        const char *khex = json_string_value(json_object_get(jv, "key"));
        const char *exp = json_string_value(json_object_get(jv, "expected_tag"));
        json_t *jchunk = json_object_get(jv, "chunk_size"); /* (absent: the library's default) */
        json_int_t chunk = jchunk ? (json_is_integer(jchunk) ? json_integer_value(jchunk) : -1) : 0;
        if (!name || !path || !khex || strchr(name, '/') || name[0] == '.' ||
            (chunk && !scp_volume_chunk_ok((uint64_t)chunk)) || /* (-1, a non-integer, wraps: not ok) */
            scp_unhex(khex, ro->vol[i].key, SCP_VOLUME_KEY_LEN) < 0) {
            scp_fail(err, SCP_E_FORMAT, EPROTO, "CAS sent a malformed volume entry");
            goto out;
        }
        rv[i].name = name;
        if (snprintf(rv[i].dir, sizeof rv[i].dir, "%s/%s/%s", vdir, o->session, name) >= (int)sizeof rv[i].dir) {
            scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "--volume-dir is too long");
            goto out;
        }
        scp_volume_tag now;
        uint8_t seed_key[SCP_VOLUME_KEY_LEN];
        int has_seed = 0;
        if (run_take_seed_key(json_object_get(cfg, "environment"), name, seed_key, &has_seed, err) < 0) goto out;
        int pr = run_prepare_volume(o, name, rv[i].dir, path, ro->vol[i].key, (uint32_t)chunk, has_seed ? seed_key : NULL,
                                    exp, &now, err);
        scp_wipe(seed_key, sizeof seed_key);
        if (pr < 0) goto out;
        ro->vol[i].hostdir = rv[i].dir;
        ro->vol[i].mount = path;
        /* the state CAS's tag was checked against: the launcher does not open the volume again,
         * and the shield refuses anything older (docs/runtime.md, "Volumes and CAS") */
        ro->vol[i].seen = now;
        ro->vol[i].have_seen = 1;
        ro->nvol++;
        /* a new volume (or one whose last tag did not reach CAS) is reported before it is used */
        if (run_report_tag(c, o, token, &rv[i], now.bytes) < 0 && o->tag_sync) {
            scp_fail(err, SCP_E_INVAL, EIO, "--tag-sync: CAS did not take the tag of volume %s", name);
            goto out;
        }
    }
    run_drop_seed_vars(json_object_get(cfg, "environment"));
    ro->container = o->container;
    if (ro->container.enabled && !ro->container.hostname)
        ro->container.hostname = strlen(o->service) <= 64 ? o->service : NULL;
    ro->trace = o->trace;
    ro->no_mount = o->no_mount;
    ro->user = o->user;
    ro->timing_ns = timing;
    ro->shield_lib = o->shield_lib; /* resolved as scp_attest_run_measure did */
    ro->exec_fd = set->fd[0];
    ro->measured_fds = set->fd;
    ro->measured_paths = (const char (*)[PATH_MAX])set->path;
    ro->n_measured = set->n;
    ro->measured_interp = set->has_interp ? set->path[1] : NULL;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pipefd) < 0) {
        scp_fail_errno(err, "socketpair");
        goto out;
    }
    if (o->tag_sync) {
        sync_fd = memfd_create("scp-tag-sync", MFD_CLOEXEC);
        void *p = sync_fd >= 0 && ftruncate(sync_fd, 4096) == 0
                      ? mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sync_fd, 0)
                      : MAP_FAILED;
        if (p == MAP_FAILED) {
            scp_fail_errno(err, "cannot make the tag-sync page");
            goto out;
        }
        tsync = p;
        for (size_t i = 0; i < nv; i++) tsync->acked[i] = rv[i].reported_gen;
        ro->tag_sync_fd = sync_fd;
    }
    if (timing) scp_log(SCP_LOG_INFO, RUN_WHO(o), "timing: volumes %.1f ms", (run_now_s() - t2) * 1e3);
    json_t *con = json_object_get(cfg, "console");
    for (int sk = 1; sk < 3; sk++)
        if (json_is_true(json_object_get(con, sk == 1 ? "stdout" : "stderr")) &&
            (relay[sk] = console_relay(sk, &con_end[sk])) < 0) {
            scp_fail_errno(err, "cannot start the console relay");
            goto out;
        }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        scp_fail_errno(err, "fork");
        goto out;
    }
    if (pid == 0) {
        close(pipefd[0]);
        child_exec(cfg, o, ro, o->argv[0], pipefd[1], &ident, con_end);
    }
    child_pid = pid;
    close(pipefd[1]);
    pipefd[1] = -1;
    for (int sk = 1; sk < 3; sk++)
        if (con_end[sk] >= 0) {
            close(con_end[sk]);
            con_end[sk] = -1;
        }
    for (size_t i = 0; i < nv; i++) scp_wipe(ro->vol[i].key, sizeof ro->vol[i].key);
    forward_signals();
    if (pending_sig) kill(pid, pending_sig);
    struct tag_batch batch = {0};
    int exited = 0, status = 1;
    for (;;) {
        /* until every holder of the socket is gone, or the program itself has exited and what
         * its leftovers had sent is drained (a daemonized grandchild may keep the socket) */
        struct pollfd pf = {.fd = pipefd[0], .events = POLLIN};
        int pr = poll(&pf, 1, exited || batch.has_carry ? 0 : 200);
        if (rn.page && !exited && run_now_s() >= rn.next) run_renewal_try(&rn, c, o, ident.m);
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0 && !batch.has_carry) {
            if (exited) break;
            int st;
            if (pid1) {
                int s1 = reap_all(pid, relay);
                if (s1 >= 0) exited = 1, status = s1;
            } else if (waitpid(pid, &st, WNOHANG) == pid) {
                exited = 1;
                status = scp_exit_code(st, RUN_WHO(o));
            }
            continue;
        }
        if (take_tags(pipefd[0], nv, &batch) < 0) break;
        for (size_t i = 0; i < nv; i++) {
            if (!(batch.got & (1u << i))) continue;
            if (run_report_tag(c, o, token, &rv[i], batch.newest[i]) == 0) {
                ack(tsync, i, rv[i].reported_gen);
            } else if (tsync) {
                /* fail closed: an fsync must not return for a state that CAS does not know */
                scp_log(SCP_LOG_ERROR, RUN_WHO(o), "--tag-sync: CAS did not acknowledge a commit; stopping the program");
                kill(pid, SIGKILL);
            }
        }
    }
    rc = exited ? status : wait_status(pid);
out:
    /* the relays end when the container's last holder of their socket is gone; scpctl returns
     * after the program's last sealed byte reached the host's descriptor */
    for (int sk = 1; sk < 3; sk++) {
        if (con_end[sk] >= 0) close(con_end[sk]);
        if (relay[sk] > 0)
            while (waitpid(relay[sk], NULL, 0) < 0 && errno == EINTR) {}
    }
    if (tsync) munmap(tsync, 4096);
    if (rn.page) munmap(rn.page, sizeof *rn.page);
    if (rn.fd >= 0) close(rn.fd);
    if (sync_fd >= 0) close(sync_fd);
    if (pipefd[0] >= 0) close(pipefd[0]);
    if (pipefd[1] >= 0) close(pipefd[1]);
    if (set) scp_elf_set_close(set, -1);
    if (ro) scp_wipe(ro, sizeof *ro);
    free(ro);
    free(set);
    free(rv);
    json_decref(cfg); /* keys were copied out and wiped; the JSON text itself was wiped above */
    EVP_PKEY_free(ik);
    scp_attest_run_identity_free(&ident);
    return rc;
}
