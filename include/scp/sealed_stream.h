/* scp/sealed_stream.h - sealed record streams: a byte stream (a program's stdout, stderr or
 * stdin; an audit trail) cut into records that are encrypted and authenticated one by one, so
 * that a reader with the key gets the bytes back exactly and learns whether records were
 * dropped, reordered, replayed, forged or cut off at the end.
 *
 * Keys. CAS keeps one random 32-byte console key per session (never released). A service gets
 * its service key, scp_ss_service_key(session key, service name); so does the session's owner.
 * A stream's own key is HKDF(service key, "scp sealed stream v1", stream id), and the stream id
 * is 16 random bytes chosen by the writer: every stream has its own key, and AES-GCM nonces
 * (the record's sequence number) never repeat under one key. One service cannot forge another
 * service's records; every holder of a service key can write records of that service.
 *
 * Frame (every integer big-endian):
 *     magic "SCR1" | type u8 | stream id [16] | seq u64 | time u64 (ns since the epoch, the
 *     writer's clock) | len u32 | ciphertext [len] | tag [16]
 * AES-256-GCM under the stream key, nonce = 0x00000000 || seq, AAD = the first 41 bytes (the
 * frame head): a changed type, id, seq, time or length fails authentication.
 *   type 1, header (always seq 0): kind u8 (0 stdin, 1 stdout, 2 stderr, 3 other) | relation u8
 *           (0 first stream, 1 fork child of parent, 2 image exec'd after parent) | parent id [16]
 *           | parent seq u64 (the parent's next seq at the fork) | name, session, service (each
 *           u8 length + bytes)
 *   type 2, data (seq 1, 2, ...): at most SCP_SS_MAX_DATA bytes of the stream
 *   type 3, end (the last seq): reason u8 (0 closed, 1 exec: continues in next id) | next id [16]
 * A stream is complete when its records 0..end are all present once, in order. Streams of
 * several processes (fork, exec) may be interleaved in one file; each is checked on its own.
 *
 * Line form. Where the bytes pass through a text channel (Docker's log drivers store each line
 * as a UTF-8 string: a binary frame comes back from `docker logs` with its bytes replaced), a
 * frame is written as one line: "SCR1:" | Base64 of the frame (standard alphabet, padded) |
 * "\n", with at most SCP_SS_LINE_DATA bytes of data per record, so that a line stays under 16
 * KiB (where Docker's drivers cut a message in parts). A reader takes both forms: input whose
 * first five bytes are the magic and a frame type is binary; any other input is read as lines,
 * where a line that is not a record is reported as unsealed (SCP_SS_EV_UNSEALED: text that did
 * not come from the stream's writer, e.g. a launcher's own messages) and never as stream data.
 */
#ifndef SCP_SEALED_STREAM_H
#define SCP_SEALED_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "scp/err.h"

#define SCP_SS_KEY_LEN 32
#define SCP_SS_ID_LEN 16
#define SCP_SS_HEAD_LEN 41u     /* frame head before the ciphertext */
#define SCP_SS_OVERHEAD 57u     /* head + tag */
#define SCP_SS_MAX_DATA 65536u  /* plaintext bytes per data record */
#define SCP_SS_MAX_FRAME (SCP_SS_OVERHEAD + SCP_SS_MAX_DATA)
#define SCP_SS_MAX_STREAMS 4096u /* per reader */
#define SCP_SS_LINE_DATA 12000u  /* plaintext bytes per data record in line form */
#define SCP_SS_LINE_PREFIX "SCR1:"
/* The longest line of a frame of n bytes, and of any frame (prefix, Base64, newline). */
#define SCP_SS_LINE_LEN(n) (5u + 4u * (((n) + 2u) / 3u) + 1u)
#define SCP_SS_MAX_LINE SCP_SS_LINE_LEN(SCP_SS_MAX_FRAME)

enum scp_ss_type { SCP_SS_T_HEADER = 1, SCP_SS_T_DATA = 2, SCP_SS_T_END = 3 };
enum scp_ss_kind { SCP_SS_STDIN = 0, SCP_SS_STDOUT = 1, SCP_SS_STDERR = 2, SCP_SS_OTHER = 3 };
enum scp_ss_relation { SCP_SS_ROOT = 0, SCP_SS_FORK = 1, SCP_SS_EXEC = 2 };
enum scp_ss_end_reason { SCP_SS_END_CLOSED = 0, SCP_SS_END_EXEC = 1 };

/* The service key of `service` from the session's console key. */
int scp_ss_service_key(const uint8_t session_key[SCP_SS_KEY_LEN], const char *service,
                       uint8_t out[SCP_SS_KEY_LEN], scp_err *err);

/* ---- writing ------------------------------------------------------------------------------ */

/* One stream being written. Holds keys: keep it in memory that is not swapped or dumped, and
 * wipe it (scp_wipe) when done. Not thread-safe: one writer per stream, serialized by the
 * caller, which also writes the frames in the order they were sealed. */
typedef struct scp_ss_writer {
    uint8_t service_key[SCP_SS_KEY_LEN];
    uint8_t key[SCP_SS_KEY_LEN];
    uint8_t id[SCP_SS_ID_LEN];
    uint64_t seq; /* of the next frame; 0: the header is still to be written */
    int ended;
    uint8_t kind, relation;
    uint8_t parent_id[SCP_SS_ID_LEN];
    uint64_t parent_seq;
    char name[32], session[65], service[65];
} scp_ss_writer;

/* Start a stream: id NULL draws a fresh random id; parent_id NULL for a first stream. name at
 * most 31 bytes ("stdout"...), session and service at most 64. */
int scp_ss_writer_start(scp_ss_writer *w, const uint8_t service_key[SCP_SS_KEY_LEN], int kind,
                        const char *name, const char *session, const char *service, int relation,
                        const uint8_t *parent_id, uint64_t parent_seq, const uint8_t *id,
                        scp_err *err);
/* Restart w as a new stream (fresh id) related to the one it was: relation SCP_SS_FORK in a
 * forked child, SCP_SS_EXEC for the next image. The service key, kind and names stay. */
int scp_ss_writer_restart(scp_ss_writer *w, int relation, const uint8_t *id, scp_err *err);

/* Size of the header frame. */
size_t scp_ss_header_size(const scp_ss_writer *w);
/* Seal the header (seq 0) into out (cap bytes). Returns the frame length or -1. */
ssize_t scp_ss_seal_header(scp_ss_writer *w, int64_t time_ns, uint8_t *out, size_t cap, scp_err *err);
/* Seal n (1..SCP_SS_MAX_DATA) bytes into a data frame of n + SCP_SS_OVERHEAD bytes in out.
 * pt may be out + SCP_SS_HEAD_LEN (sealed in place). The header must have been sealed. */
ssize_t scp_ss_seal_data(scp_ss_writer *w, const void *pt, size_t n, int64_t time_ns, uint8_t *out,
                         size_t cap, scp_err *err);
/* Seal the end frame (SCP_SS_OVERHEAD + 17 bytes); next_id names the stream that continues
 * (reason SCP_SS_END_EXEC), NULL otherwise. After it the writer refuses more frames. */
ssize_t scp_ss_seal_end(scp_ss_writer *w, int reason, const uint8_t *next_id, int64_t time_ns,
                        uint8_t *out, size_t cap, scp_err *err);
#define SCP_SS_END_FRAME_LEN (SCP_SS_OVERHEAD + 1u + SCP_SS_ID_LEN)
/* A sealed frame of n bytes in line form, into out (SCP_SS_LINE_LEN(n) bytes): returns the
 * line's length. Allocates nothing (the console shield calls it in a signal handler). */
size_t scp_ss_frame_line(const uint8_t *frame, size_t n, char *out);

/* ---- reading ------------------------------------------------------------------------------ */

enum scp_ss_problem {
    SCP_SS_DROPPED = 1,   /* records missing from a stream (a gap that was never filled) */
    SCP_SS_REORDERED,     /* a record arrived after later records of its stream */
    SCP_SS_REPLAYED,      /* a record seen before (or a second end) */
    SCP_SS_TRUNCATED,     /* a stream without its end record, or a missing exec successor */
    SCP_SS_FORGED,        /* a record that does not authenticate (changed, or another key) */
    SCP_SS_FOREIGN,       /* an authentic stream of another kind, session or service than expected */
    SCP_SS_AFTER_END,     /* a record numbered after the stream's end */
};

typedef struct scp_ss_stream_info {
    uint8_t id[SCP_SS_ID_LEN];
    int have_header;
    int kind, relation;
    uint8_t parent_id[SCP_SS_ID_LEN];
    uint64_t parent_seq;
    char name[256];
} scp_ss_stream_info;

typedef struct scp_ss_event {
    /* UNSEALED (line form only): data/len is a line of the input, without its newline, that is
     * not a record; offset is where it starts */
    enum { SCP_SS_EV_DATA = 1, SCP_SS_EV_PROBLEM, SCP_SS_EV_END, SCP_SS_EV_UNSEALED } type;
    const scp_ss_stream_info *stream; /* NULL for a problem not tied to a known stream */
    uint64_t seq;
    int64_t time_ns;
    const uint8_t *data; /* DATA: the plaintext */
    size_t len;
    int problem;          /* PROBLEM: enum scp_ss_problem */
    uint64_t count;       /* PROBLEM: how many records it concerns */
    const char *msg;      /* PROBLEM: one sentence */
    uint64_t offset;      /* byte offset of the frame in the input */
} scp_ss_event;

/* Called for every event; a non-zero return stops the reader (feed/finish return -1 with
 * SCP_E_INVAL "stopped"). */
typedef int (*scp_ss_event_fn)(void *arg, const scp_ss_event *ev);

typedef struct scp_ss_reader scp_ss_reader;

/* A reader of the streams of service `service` in session `session` (both checked against
 * every header; NULL skips the check). */
scp_ss_reader *scp_ss_reader_new(const uint8_t service_key[SCP_SS_KEY_LEN], const char *session,
                                 const char *service, scp_err *err);
/* Only streams of this kind are accepted (others are SCP_SS_FOREIGN); -1: any (default). */
void scp_ss_reader_expect_kind(scp_ss_reader *r, int kind);
/* Feed the next n bytes of the input (any split), binary or line form (see the top). Returns 0,
 * or -1 when the input cannot be a sealed stream from here on (binary: bad magic, oversized
 * frame; too many streams): err says where. In line form a malformed record line is a
 * SCP_SS_FORGED problem and reading goes on at the next line. */
int scp_ss_reader_feed(scp_ss_reader *r, const void *buf, size_t n, scp_ss_event_fn fn, void *arg,
                       scp_err *err);
/* End of input: reports streams without end (truncated), gaps (dropped), a partial frame at
 * the end (truncated) and missing exec successors. Returns 0 or -1 as feed. */
int scp_ss_reader_finish(scp_ss_reader *r, scp_ss_event_fn fn, void *arg, scp_err *err);
/* Counters of problems by kind (index enum scp_ss_problem), authentic records, streams. */
uint64_t scp_ss_reader_problems(const scp_ss_reader *r, int problem);
uint64_t scp_ss_reader_records(const scp_ss_reader *r);
/* Lines of the input that were not records (line form; they do not make a stream unclean). */
uint64_t scp_ss_reader_unsealed(const scp_ss_reader *r);
/* All streams seen ended, and no problem was found. */
int scp_ss_reader_clean(const scp_ss_reader *r);
void scp_ss_reader_free(scp_ss_reader *r);

#endif
