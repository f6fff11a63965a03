/* image/engine.c - the local Docker engine's API (the same that podman's compatible socket
 * serves): `GET /images/NAME/get` streams `docker save`, `POST /images/load` takes it back.
 * HTTP/1.0 over the UNIX socket, so that the engine closes the connection at the end of the body
 * and no chunked decoding is needed. The engine is a local, root-equivalent service; its
 * answers are still parsed as untrusted input (bounded header, status checked).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "image/internal.h"

static int engine_connect(scp_err *err) {
    const char *h = getenv("DOCKER_HOST");
    const char *path = "/var/run/docker.sock";
    if (h && *h) {
        if (strncmp(h, "unix://", 7) != 0)
            return scp_fail(err, SCP_E_NOTSUP, ENOTSUP, "DOCKER_HOST=%s: only unix:// sockets are supported", h);
        path = h + 7;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "socket path too long: %s", path);
    strcpy(sa.sun_path, path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return scp_fail_errno(err, "socket");
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
        scp_fail_errno(err, "cannot reach the Docker engine at %s (is dockerd running?)", path);
        close(s);
        return -1;
    }
    return s;
}

/* Percent-encode an image reference for a URL path ("/" is kept: the API takes it raw). */
static int url_name(const char *name, char *out, size_t outsz, scp_err *err) {
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~/:@", *p);
        if (o + 4 >= outsz) return scp_fail(err, SCP_E_INVAL, ENAMETOOLONG, "image name too long");
        if (plain)
            out[o++] = (char)*p;
        else
            o += (size_t)snprintf(out + o, outsz - o, "%%%02X", *p);
    }
    out[o] = '\0';
    if (o == 0) return scp_fail(err, SCP_E_INVAL, EINVAL, "empty image name");
    return 0;
}

/* Read the status line and headers (at most 16 KiB), leaving the socket at the body. Returns
 * the status code; the first body bytes read past the header go to *extra. */
static int read_head(int s, char *extra, size_t *n_extra, scp_err *err) {
    char buf[16384];
    size_t n = 0;
    for (;;) {
        if (n == sizeof buf) return scp_fail(err, SCP_E_FORMAT, EPROTO, "the Docker engine sent an oversized header");
        ssize_t r = read(s, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return scp_fail_errno(err, "reading from the Docker engine");
        if (r == 0) return scp_fail(err, SCP_E_FORMAT, EPROTO, "the Docker engine closed the connection");
        n += (size_t)r;
        char *end = memmem(buf, n, "\r\n\r\n", 4);
        if (!end) continue;
        size_t hl = (size_t)(end - buf) + 4;
        int code = 0;
        if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1 || code < 100 || code > 599)
            return scp_fail(err, SCP_E_FORMAT, EPROTO, "the Docker engine sent no HTTP status");
        *n_extra = n - hl;
        memcpy(extra, buf + hl, *n_extra);
        return code;
    }
}

/* The rest of an answer's body (after the `first` bytes read with the header) into body, at
 * most cap - 1 bytes, NUL-terminated. */
static void read_body(int s, const char *first, size_t n_first, char *body, size_t cap) {
    size_t n = n_first < cap - 1 ? n_first : cap - 1;
    memcpy(body, first, n);
    while (n < cap - 1) {
        ssize_t r = read(s, body + n, cap - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
    }
    body[n] = '\0';
}

/* The body of an error answer: {"message": "..."} as Docker sends it. */
static void engine_error(int s, const char *first, size_t n_first, int code, const char *what, scp_err *err) {
    char body[2048];
    read_body(s, first, n_first, body, sizeof body);
    json_t *j = json_loads(body, 0, NULL);
    const char *m = json_string_value(json_object_get(j, "message"));
    scp_fail(err, code == 404 ? SCP_E_NOENT : SCP_E_SYS, code == 404 ? ENOENT : EIO, "the Docker engine refused %s (%d): %s",
             what, code, m ? m : "no message");
    json_decref(j);
}

int img_engine_save(const char *name, int dirfd, scp_err *err) {
    char enc[1024];
    if (url_name(name, enc, sizeof enc, err) < 0) return -1;
    int s = engine_connect(err);
    if (s < 0) return -1;
    char req[1400];
    int l = snprintf(req, sizeof req, "GET /images/%s/get HTTP/1.0\r\nHost: docker\r\n\r\n", enc);
    int rc = -1;
    char extra[16384];
    size_t n_extra = 0;
    if (scp_write_full(s, req, (size_t)l) < 0) {
        scp_fail_errno(err, "writing to the Docker engine");
        goto out;
    }
    int code = read_head(s, extra, &n_extra, err);
    if (code < 0) goto out;
    if (code != 200) {
        engine_error(s, extra, n_extra, code, name, err);
        goto out;
    }
    /* Hand libarchive one stream: the bytes already read, then the socket (a pipe joins them). */
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        scp_fail_errno(err, "pipe");
        goto out;
    }
    pid_t pid = fork();
    if (pid < 0) {
        scp_fail_errno(err, "fork");
        close(p[0]);
        close(p[1]);
        goto out;
    }
    if (pid == 0) {
        close(p[0]);
        if (scp_write_full(p[1], extra, n_extra) < 0) _exit(1);
        char buf[1 << 16];
        for (;;) {
            ssize_t r = read(s, buf, sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) _exit(r < 0);
            if (scp_write_full(p[1], buf, (size_t)r) < 0) _exit(1);
        }
    }
    close(p[1]);
    rc = img_untar_flat(p[0], dirfd, err);
    close(p[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (rc == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        rc = scp_fail(err, SCP_E_SYS, EIO, "the transfer from the Docker engine failed");
    if (rc < 0) scp_err_prefix(err, "image '%s' from the Docker engine", name);
out:
    close(s);
    return rc;
}

int img_engine_load(const char *path, scp_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return scp_fail_errno(err, "cannot open '%s'", path);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return scp_fail_errno(err, "cannot stat '%s'", path);
    }
    int s = engine_connect(err);
    if (s < 0) {
        close(fd);
        return -1;
    }
    int rc = -1;
    char req[256];
    int l = snprintf(req, sizeof req,
                     "POST /images/load?quiet=1 HTTP/1.0\r\nHost: docker\r\nContent-Type: application/x-tar\r\n"
                     "Content-Length: %lld\r\n\r\n",
                     (long long)st.st_size);
    if (scp_write_full(s, req, (size_t)l) < 0) {
        scp_fail_errno(err, "writing to the Docker engine");
        goto out;
    }
    char buf[1 << 16];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            scp_fail_errno(err, "reading '%s'", path);
            goto out;
        }
        if (r == 0) break;
        if (scp_write_full(s, buf, (size_t)r) < 0) {
            scp_fail_errno(err, "writing to the Docker engine");
            goto out;
        }
    }
    char extra[16384];
    size_t n_extra = 0;
    int code = read_head(s, extra, &n_extra, err);
    if (code < 0) goto out;
    if (code != 200) {
        engine_error(s, extra, n_extra, code, "the image", err);
        goto out;
    }
    /* The body is a stream of JSON messages; an "error" in any of them is a failure. */
    char body[65536];
    read_body(s, extra, n_extra, body, sizeof body);
    char *e = strstr(body, "\"error\"");
    if (e) {
        scp_fail(err, SCP_E_SYS, EIO, "the Docker engine could not load the image: %.200s", e);
        goto out;
    }
    rc = 0;
out:
    close(s);
    close(fd);
    return rc;
}
