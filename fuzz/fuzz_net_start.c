/* fuzz/fuzz_net_start.c - the network shield's plaintext protocol starts (src/shield/net_start.c)
 * against a hostile peer: PostgreSQL's SSLRequest on both sides and MySQL's greeting,
 * SSLRequest and authentication-phase rewriting, fed byte chunks an attacker chooses.
 *
 * net_start.c is compiled into this harness; what it needs from net.c (the socket, the BIO
 * buffers, failing a connection) is replaced by a scripted peer: net_fill hands over the next
 * chunk of the input, net_flush drops what the shield sends, net_write_tls takes a prefix.
 * Input: byte 0 picks the case (PostgreSQL server, PostgreSQL client, MySQL server, MySQL
 * client); for a MySQL server, byte 1 is the length of the program's greeting, which follows;
 * for a MySQL client the peer's first chunks are the greeting; the rest is the peer's
 * bytes, each chunk's length given by one byte before it. Asserts: no memory error; the read
 * buffer's offset never passes its length; a start that returns 1 has left its plaintext state;
 * a failed connection stays failed; MySQL rewriting changes only sequence bytes and the
 * client's CLIENT_SSL bit; after a write the program's flow has walked exactly the bytes taken. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "../src/shield/net_start.c"

static const uint8_t *in_p;
static size_t in_n;

static size_t next_chunk(const uint8_t **p) {
    if (!in_n) return 0;
    size_t k = in_p[0] % 64 + 1;
    in_p++, in_n--;
    if (k > in_n) k = in_n;
    *p = in_p;
    in_p += k, in_n -= k;
    return k;
}

int net_obuf_append(struct obuf *o, const char *data, size_t n) {
    if (o->len + n > o->cap) {
        size_t cap = (o->len + n) * 2;
        char *np = realloc(o->p, cap);
        FUZZ_CHECK(np != NULL);
        o->p = np;
        o->cap = cap;
    }
    memcpy(o->p + o->len, data, n);
    o->len += n;
    return 0;
}

long net_fill(nconn *c, int *drained) {
    (void)drained;
    const uint8_t *p = NULL;
    size_t k = next_chunk(&p);
    if (!k) return 0; /* the peer closed */
    return net_obuf_append(BIO_get_data(c->rbio), (const char *)p, k) ? -ENOMEM : (long)k;
}

long net_wait_fd(nconn *c, short ev) {
    (void)c;
    (void)ev;
    FUZZ_CHECK(0); /* the harness never blocks */
    return -EIO;
}

long net_conn_fail(nconn *c, const char *what, int e) {
    (void)what;
    c->failed = e;
    return -e;
}

long net_flush(nconn *c, int block, int nosig) {
    (void)block;
    (void)nosig;
    struct obuf *o = BIO_get_data(c->wbio);
    o->off = o->len = 0; /* the peer took it */
    return 0;
}

static size_t write_room = 1; /* how much the next net_write_tls takes */
long net_write_tls(nconn *c, const void *buf, size_t n, int flags) {
    (void)buf;
    (void)flags;
    if (c->failed) return -c->failed;
    return (long)(n < write_room ? n : write_room);
}

static int b_create(BIO *b) {
    struct obuf *o = calloc(1, sizeof *o);
    FUZZ_CHECK(o != NULL);
    BIO_set_data(b, o);
    BIO_set_init(b, 1);
    return 1;
}

static int b_destroy(BIO *b) {
    struct obuf *o = BIO_get_data(b);
    if (o) free(o->p);
    free(o);
    return 1;
}

static BIO_METHOD *meth;

static void check_rbio(nconn *c) {
    const struct obuf *o = BIO_get_data(c->rbio);
    FUZZ_CHECK(o->off <= o->len);
}

/* The program's flow after a write that took w bytes of b is the flow before it walked over
 * exactly those w bytes, whether the write took all it was given or a part. */
static void check_out_flow(const nconn *c, struct my_flow *want, const uint8_t *b, size_t w) {
    uint8_t *t = malloc(w);
    FUZZ_CHECK(t != NULL);
    memcpy(t, b, w);
    my_walk(want, t, w, +1, c->my->client, 1);
    free(t);
    const struct my_flow *got = &c->my->out;
    FUZZ_CHECK(got->hpos == want->hpos && got->left == want->left && got->off == want->off);
    FUZZ_CHECK(got->npkt == want->npkt && got->type == want->type && memcmp(got->len, want->len, 3) == 0);
    FUZZ_CHECK(got->done == (want->done || c->my->in.done));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    if (!meth) {
        meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "fuzz");
        FUZZ_CHECK(meth && BIO_meth_set_create(meth, b_create) && BIO_meth_set_destroy(meth, b_destroy));
    }
    nconn c;
    memset(&c, 0, sizeof c);
    c.rbio = BIO_new(meth);
    c.wbio = BIO_new(meth);
    FUZZ_CHECK(c.rbio && c.wbio);
    int which = data[0] % 4;
    in_p = data + 1;
    in_n = size - 1;
    int proto = which < 2 ? NET_PROTO_POSTGRES : NET_PROTO_MYSQL;
    FUZZ_CHECK(net_start_init(&c, proto, which != 1 && which != 3) == 0);
    if (which == 2) { /* the program's greeting, written in two parts */
        size_t gl = in_p[0];
        in_p++, in_n--;
        if (gl > in_n) gl = in_n;
        size_t half = gl / 2;
        long g = net_my_write(&c, in_p, half, 0);
        if (g >= 0 && !c.failed) (void)net_my_write(&c, in_p + half, gl - half, 0);
        in_p += gl, in_n -= gl;
    }
    long r = -EAGAIN;
    if (which == 3) { /* the server's greeting to the client program, then its response */
        unsigned char got[16];
        long k;
        while (net_my_pre_reading(&c) && (k = net_my_pre_read(&c, got, 1 + in_n % sizeof got, 0, 0)) > 0)
            check_rbio(&c);
        if (!net_my_pre_reading(&c) && !c.failed) {
            const uint8_t *p;
            size_t k2 = next_chunk(&p);
            if (k2) {
                uint8_t *copy = malloc(k2);
                FUZZ_CHECK(copy != NULL);
                memcpy(copy, p, k2);
                if (net_my_write(&c, copy, k2, 0) >= 0) {
                    FUZZ_CHECK(c.pre == NET_PRE_NONE);
                    r = 1;
                }
                free(copy);
            }
        }
    }
    for (int i = 0; i < 10000 && r == -EAGAIN && !c.failed; i++) {
        r = net_start(&c, 0);
        check_rbio(&c);
        if (r == -EAGAIN && !in_n) break;
    }
    if (r == 1) FUZZ_CHECK(c.pre == NET_PRE_NONE);
    if (c.failed) FUZZ_CHECK(net_start(&c, 0) < 0 || c.pre == NET_PRE_NONE);
    if (r == 1 && c.my) { /* the authentication phase: the peer's packets and the program's */
        const uint8_t *p;
        size_t k;
        int turn = 0;
        while ((k = next_chunk(&p))) {
            uint8_t *copy = malloc(k);
            FUZZ_CHECK(copy != NULL);
            memcpy(copy, p, k);
            if (turn++ % 2) {
                write_room = p[0] % 8 + 1;
                struct my_flow want = c.my->out;
                long w = net_my_write(&c, copy, k, 0);
                if (w > 0) check_out_flow(&c, &want, p, (size_t)w);
            } else {
                net_my_read(&c, copy, k, p[0] & 1);
                for (size_t j = 0; j < k; j++) { /* only sequence bytes and CLIENT_SSL change */
                    uint8_t d = (uint8_t)(copy[j] ^ p[j]);
                    FUZZ_CHECK(d == 0 || copy[j] == (uint8_t)(p[j] - 1) || d == (MY_CLIENT_SSL >> 8));
                }
            }
            free(copy);
        }
    }
    free(c.my);
    BIO_free(c.rbio);
    BIO_free(c.wbio);
    return 0;
}
