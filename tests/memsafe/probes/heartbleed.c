/* A Heartbleed-style over-read: the record claims a longer payload than it carries, and the
 * reply copies the claimed length from the small heap record (CVE-2014-0160's pattern). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct record {
    unsigned short claimed; /* payload length as sent by the peer */
    unsigned char payload[];
};

static struct record *receive(const char *data, unsigned short claimed)
{
    size_t len = strlen(data);
    struct record *r = malloc(sizeof *r + len);
    if (!r)
        exit(2);
    r->claimed = claimed;
    memcpy(r->payload, data, len);
    return r;
}

static unsigned char *heartbeat_reply(const struct record *r)
{
    unsigned char *reply = malloc(r->claimed);
    if (!reply)
        exit(2);
    memcpy(reply, r->payload, r->claimed); /* trusts the peer's length */
    return reply;
}

int main(int argc, char **argv)
{
    unsigned short claimed = argc > 1 ? (unsigned short)atoi(argv[1]) : 4096;
    /* Neighbouring records hold data the peer must not see. */
    char *secret = malloc(64);
    strcpy(secret, "SESSION-SECRET-MARKER not for the peer");
    struct record *r = receive("bird", claimed);
    unsigned char *reply = heartbeat_reply(r);
    size_t leaked = 0;
    for (size_t i = 0; i < claimed; i++)
        leaked += reply[i] != 0;
    printf("reply of %u bytes, %zu non-zero\n", claimed, leaked);
    free(reply);
    free(r);
    free(secret);
    return 0;
}
