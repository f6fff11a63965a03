/* volume/format.h - on-disk structures of a protected volume and their parsers.
 *
 * Internal to src/volume (and the fuzz targets). Everything read from the volume directory is
 * untrusted: each parser here checks every length and field before use and never reads past
 * `len`. See docs/volume-format.md for the layout and the reasons behind it.
 */
#ifndef SCP_VOLUME_FORMAT_H
#define SCP_VOLUME_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"
#include "scp/err.h"

/* Version 2: per-writer chunk subkeys (a salt in every table entry), a salt per manifest seal,
 * encrypted journal commit payloads, labelled key derivation. Version 3: the manifest log
 * (manifest.log, below): commits append sealed deltas; slots carry a state hash. Version 4:
 * the journal's chain covers record headers only, chunk records carry their table entry and
 * commit records authenticate the chain value (magic SCPJRN\0\4, below). Versions 1 to 3 are
 * refused (docs/volume-format.md, "Format versions", says why and how to move a volume). */
#define SCP_FMT_VERSION 4u
#define SCP_FMT_VERSION_MIN 4u
#define SCP_VOLID_LEN 32
#define SCP_FILEID_LEN 16
#define SCP_SALT_LEN 16 /* random salt that names a subkey (chunk writer subkey, manifest seal) */
#define SCP_NONCE_LEN 12
#define SCP_GCMTAG_LEN 16
#define SCP_HASH_LEN 32
/* One chunk table entry: subkey salt (16) | nonce (12) | GCM tag (16); all zero = a hole. The
 * chunk's key is scp_derive_key(file key, SCP_LABEL_CHUNK, salt). The low bit of the nonce's
 * first byte names the chunk's slot: 0, the data object ".d", 1, the second-slot object ".s",
 * both at offset index * chunk size (docs/volume-format.md, "Overwrites"); the other 95 bits
 * are random. Like every entry byte it is covered by the content root. */
#define SCP_ENT_NONCE_OFF SCP_SALT_LEN
#define SCP_ENT_TAG_OFF (SCP_SALT_LEN + SCP_NONCE_LEN)
#define SCP_CHUNK_ENTRY_LEN (SCP_SALT_LEN + SCP_NONCE_LEN + SCP_GCMTAG_LEN)
#define SCP_ENT_SLOT(e) ((int)((e)[SCP_ENT_NONCE_OFF] & 1u))
/* A writer rotates its chunk subkey after this many chunk seals (docs/volume-format.md has the
 * nonce budget). */
#define SCP_SUBKEY_MAX_USES (1u << 20)

/* HKDF labels (info) of every key of a volume: each key has one purpose. */
#define SCP_LABEL_HEADER "scp/v2/header"    /* volume key -> header MAC key */
#define SCP_LABEL_MANIFEST "scp/v2/manifest" /* volume key -> manifest root key (derivation only) */
#define SCP_LABEL_TAG "scp/v2/tag"          /* volume key -> volume tag HMAC key */
#define SCP_LABEL_FILES "scp/v2/files"      /* volume key -> files root key (derivation only) */
#define SCP_LABEL_FILE "scp/v2/file"        /* files key + file id -> file key (derivation only) */
#define SCP_LABEL_CHUNK "scp/v2/chunk"      /* file key + salt -> chunk subkey (AES-GCM) */
#define SCP_LABEL_JOURNAL "scp/v2/journal"  /* file key + log salt -> journal key (AES-GCM) */
#define SCP_LABEL_SEAL "scp/v2/manifest-seal" /* manifest key + salt -> slot key (AES-GCM) */
#define SCP_MAX_PATH 4096
#define SCP_MAX_NAME 255

/* ---- volume header: file "scpvol.hdr", plaintext, 80 bytes ---------------------------------
 *   0  magic "SCPVOL\0\1"   8  u32 version   12 u32 chunk_size   16 volume id (32)
 *   48 HMAC-SHA256 over bytes 0..47 under the header key (doubles as the key check)        */
#define SCP_VOLHDR_LEN 80
#define SCP_VOLHDR_MAC_OFF 48
typedef struct scp_volhdr {
    uint32_t version;
    uint32_t chunk_size;
    uint8_t volid[SCP_VOLID_LEN];
    uint8_t mac[SCP_HASH_LEN];
} scp_volhdr;
int scp_volhdr_parse(const uint8_t *buf, size_t len, scp_volhdr *out, scp_err *err);
void scp_volhdr_encode(const scp_volhdr *h, uint8_t out[SCP_VOLHDR_LEN]);

/* ---- manifest slot: files "manifest.0", ".1" (durable) and ".2" (scratch) ------------------
 *   0 magic "SCPMAN\0\2"  8 u64 generation  16 salt (16)  32 nonce (12)  44 u32 body length L
 *   48 ciphertext (L)   48+L GCM tag (16)
 * AAD = volume id || bytes 0..47. Key: scp_derive_key(manifest key, SCP_LABEL_SEAL, salt), a
 * fresh salt per seal, so every seal uses its own key. The slot with the highest generation
 * that authenticates is the committed manifest.                                                */
#define SCP_MANSLOT_HDR_LEN 48
#define SCP_MANIFEST_MAX_BODY (256u << 20)
typedef struct scp_manslot {
    uint64_t generation;
    uint8_t salt[SCP_SALT_LEN];
    uint8_t nonce[SCP_NONCE_LEN];
    uint32_t body_len;
    const uint8_t *ciphertext; /* points into the parsed buffer */
    const uint8_t *tag;        /* points into the parsed buffer */
} scp_manslot;
int scp_manslot_parse(const uint8_t *buf, size_t len, scp_manslot *out, scp_err *err);
/* Format 3: a slot's plaintext is the state hash (32, below) followed by the manifest body. */
#define SCP_STATEHASH_LEN 32


/* ---- manifest body (plaintext, inside the slot's ciphertext) ------------------------------
 *   u32 entry count, then entries sorted by path (strictly increasing, bytewise):
 *   u8 type (1 file, 2 dir, 3 node, 4 symbolic link) | u16 path length | path | id (16)
 *   | u64 size | root (32) | u32 mode | u32 uid | u32 gid | i64 mtime_ns
 *   [| i64 ctime_ns | i64 atime_ns: only when the type byte has SCP_MTYPE_TIMES set]
 *   and for a symbolic link only: u16 target length | target (1..SCP_MAX_PATH bytes, no NUL);
 *   its size is the target's length, its root zero, it has no objects.
 * A node (a FIFO, socket or device name: metadata only, no objects) keeps its file type
 * (S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK) in the mode's S_IFMT bits and its device number in
 * size; its root is zero.
 * Hard links: entries that share an id are names of one file (or node, or symbolic link): no
 * directory shares its id, and every entry of an id has the same type, size, root, mode, uid,
 * gid, times and target, so that each name reads the same objects under the same root.
 * Times: an entry whose ctime and atime both equal its mtime is written without them (the
 * encoding of every build before them); one that differs sets SCP_MTYPE_TIMES in its type
 * byte, which a build before them refuses as an unknown type (it fails closed).
 * Integers are big-endian. The root directory is implicit until its mode, owner or times are
 * first set: then it has an entry of its own, SCP_ROOT_ENTRY (below).                       */
typedef struct scp_mentry {
    uint8_t type;
    char *path; /* NUL-terminated, no leading '/' */
    uint8_t id[SCP_FILEID_LEN];
    uint64_t size;
    uint8_t root[SCP_HASH_LEN]; /* content root of a file; zero for directories */
    uint32_t mode, uid, gid; /* mode: permission bits | SCP_MODE_OWNED */
    int64_t mtime_ns;
    int64_t ctime_ns, atime_ns; /* status change and access times; = mtime_ns when not stored */
    char *target; /* a symbolic link's target (NUL-terminated, owned by the entry); else NULL */
    uint32_t nlink; /* in memory only: how many entries share this id (its hard links) */
} scp_mentry;

/* In an entry's mode: uid and gid were recorded (every directory made or changed since
 * owners are kept for directories; files always had them). Never reported as a mode bit. */
#define SCP_MODE_OWNED 0x80000000u
#define SCP_MTYPE_FILE 1
#define SCP_MTYPE_DIR 2
#define SCP_MTYPE_NODE 3
#define SCP_MTYPE_LINK 4
/* In an entry's encoded type byte only (never in scp_mentry.type): ctime and atime follow. */
#define SCP_MTYPE_TIMES 0x80

/* The volume root's own entry (a directory: its mode, owner and times), made by the first
 * chmod, chown or utimes of the root (session 56). Its path is "/", which no normalized path
 * can be, so that every walk by prefix (readdir, a directory's link count, rmdir's emptiness
 * test, a directory's rename) passes it by, and no name a program gives reaches it except the
 * root's own (""). Without it the root shows mode 0755, owned by the caller, times 0; with it,
 * names made or removed in the root move its times as any directory's (man_parent_touch). A build
 * before it refuses a manifest that has it (a path that is not normalized: it fails closed). */
#define SCP_ROOT_ENTRY "/"
static inline int scp_is_root_entry(const char *path) { return path[0] == '/' && path[1] == '\0'; }

/* A node's S_IFMT bits name one of the four node types. */
int scp_node_type_ok(uint32_t mode);

typedef struct scp_manifest {
    scp_mentry **e; /* sorted by path; each entry an allocation of its own (scp_manifest_free
                     * frees it), so that an insert or removal moves pointers, not entries: a
                     * create in a large volume moved about half of its 120-byte entries,
                     * twice (bench/RESULTS.md, session 59) */
    size_t n, cap;
    /* entries' allocations kept by man_remove for the next man_insert (volume/internal.h), so
     * that putting back what a failed commit took out needs no allocation and cannot fail */
    scp_mentry *spare[2];
    unsigned nspare;
    uint64_t ver; /* in memory only: moved by every change through the manifest helpers
                   * (man_insert, man_remove, ...; volume/internal.h), so that the manifest
                   * log's delta can tell a manifest changed only where it was told (mlog_seal) */
    /* The arena that a large manifest's parse or copy cut its entries and strings from (NULL:
     * all from malloc); this manifest holds it until scp_manifest_free. Entries, paths and
     * targets are freed with marena_free (volume/marena.h), never free: any of them may be a
     * piece of an arena. */
    struct marena *arena;
} scp_manifest;

/* path's parent among m's entries (m sorted by path, as the parser builds it and the volume
 * keeps it): the index of its directory entry; SCP_PARENT_ROOT for a name directly under the
 * root and for the root's own entry (whether or not the root has an entry); SCP_PARENT_NONE
 * when the parent is missing or no directory. The parser, the volume's delta checks and the
 * parent's times (man_parent_touch) share it. */
#define SCP_PARENT_ROOT (-1L)
#define SCP_PARENT_NONE (-2L)
long scp_manifest_parent(const scp_manifest *m, const char *path);
static inline int scp_manifest_parent_is_dir(const scp_manifest *m, const char *path) {
    return scp_manifest_parent(m, path) != SCP_PARENT_NONE;
}

/* Parse a manifest body. Checks: counts and lengths fit, paths are valid and sorted, every
 * entry's parent directory exists, entries that share an id are links of one non-directory
 * (scp_mentry_same_file); sets each entry's nlink. On failure *out is left empty. */
int scp_manifest_parse(const uint8_t *body, size_t len, scp_manifest *out, scp_err *err);
/* Encode into a malloc'd buffer. Returns -1 on allocation failure. */
/* a and b may share an id: both are names of one file, node or symbolic link (same type and
 * metadata, neither a directory). */
int scp_mentry_same_file(const scp_mentry *a, const scp_mentry *b);
/* Count the names of every id of m into nlink, checking that they agree as the parser does.
 * Returns 0, -1 if they do not (m's nlinks are then partly set), or -2 out of memory. */
int scp_manifest_count_links(scp_manifest *m);
int scp_manifest_encode(const scp_manifest *m, uint8_t **out, size_t *out_len, scp_err *err);
/* The length scp_manifest_encode gives m (O(entries), no allocation). */
size_t scp_manifest_encoded_len(const scp_manifest *m);
/* Free m's entries, their strings (marena_free) and its arena hold; m is left empty. */
void scp_manifest_free(scp_manifest *m);

/* Check a volume-relative path and normalize it into out (no leading or trailing '/').
 * The empty string is the root. Refuses "." and ".." components, empty components, NUL bytes,
 * names over SCP_MAX_NAME and paths over SCP_MAX_PATH. */
int scp_path_normalize(const char *in, char *out, size_t out_size, scp_err *err);

/* ---- manifest log: file "manifest.log" (format 3) ------------------------------------------
 * The commits since a base (a durable slot), each a sealed delta of the entries it changed:
 *   header (48): magic "SCPMLOG\1" | u64 base generation | base salt (16: the base slot's seal
 *                salt, which names one seal) | log salt (16, random per log)
 *   records:     u32 body length L | u32 flags (bit 0: durable) | u64 generation | nonce (12)
 *                | ciphertext (L) | GCM tag (16)
 * Key of every record of a log: scp_derive_key(manifest key, SCP_LABEL_MLOG, log salt).
 * Chain: c0 = SHA-256("scp/v3/mlog" || header || base state hash); after a record,
 * c = SHA-256(c || record) over its bytes. AAD of a record = volume id || c before it || its
 * first 28 bytes. A record is accepted only in order: its generation is the previous one + 1
 * (the base's for the first) and it authenticates under the chain value before it, so a
 * dropped, repeated, reordered or foreign record ends the log there. The state hash of the
 * state after a record is c after it (docs/volume-format.md, "Manifest log").               */
#define SCP_LABEL_MLOG "scp/v3/manifest-log"
#define SCP_MLOG_HDR_LEN 48
#define SCP_MREC_HDR_LEN 28
#define SCP_MREC_MAX_BODY (1u << 20)
#define SCP_MREC_DURABLE 1u
typedef struct scp_mlog_hdr {
    uint64_t base_gen;
    uint8_t base_salt[SCP_SALT_LEN];
    uint8_t log_salt[SCP_SALT_LEN];
} scp_mlog_hdr;
int scp_mlog_hdr_parse(const uint8_t *buf, size_t len, scp_mlog_hdr *out, scp_err *err);
void scp_mlog_hdr_encode(const scp_mlog_hdr *h, uint8_t out[SCP_MLOG_HDR_LEN]);
typedef struct scp_mrec {
    uint32_t body_len, flags;
    uint64_t generation;
    const uint8_t *nonce, *ciphertext, *tag; /* point into the parsed buffer */
    size_t len;                              /* bytes of the whole record */
} scp_mrec;
/* Parse the record at the start of buf (len bytes available, maybe more than one record). */
int scp_mrec_parse(const uint8_t *buf, size_t len, scp_mrec *out, scp_err *err);

/* A delta body (a record's plaintext): u32 puts | u32 removals | the put entries (manifest
 * entry encoding, strictly increasing paths) | the removed paths (u16 length | path, strictly
 * increasing). No path is both put and removed. Applied: removals, then puts (an existing
 * path is replaced, a new one inserted).                                                    */
typedef struct scp_mdelta {
    scp_mentry *put;
    size_t nput;
    char **del;
    size_t ndel;
} scp_mdelta;
int scp_mdelta_parse(const uint8_t *body, size_t len, scp_mdelta *out, scp_err *err);
void scp_mdelta_free(scp_mdelta *d);
/* Apply d to m (copies what it takes from d). Checks that every removed path exists and leaves
 * no child behind, that every put's parent is a directory and a replaced directory keeps its
 * type if it has children, and that the names of each file (entries that share an id) agree;
 * counts them into nlink. Returns 1 if a path lost its entry or changed its id (a file loaded
 * by that path must look for its name again), 0 if entries were only added or updated, -1 on
 * failure (m may be partly changed: the caller drops it). on_leave (may be NULL) is called
 * with ctx for each entry of m that d takes out, just before it goes: a removed name's, and
 * one that a put of another file replaces (a rename over it). after (may be NULL) is what the
 * apply yields, when the caller has it (a process taking its own record into its older copy,
 * mlog_took): a new name whose entry there is its file's one name (nlink 1) is not counted,
 * where counting scans every entry (a create was O(entries) for that alone). */
int scp_manifest_apply(scp_manifest *m, const scp_mdelta *d, const scp_manifest *after,
                       void (*on_leave)(void *ctx, const scp_mentry *e), void *ctx, scp_err *err);
/* Encoded length of one entry, and its encoding at p (returns the end). */
size_t scp_mentry_encoded_len(const scp_mentry *e);
uint8_t *scp_mentry_encode(const scp_mentry *e, uint8_t *p);

/* ---- journal: file "objects/<id>.j" (format 4) -----------------------------------------------
 * A log of the file's commits since its last checkpoint (the point where everything before was
 * durable in place). A commit appends records and a commit record; a checkpoint starts a new log.
 *   header:  magic "SCPJRN\0\4" (8) | salt (32), random per log, so that the records of an older
 *            log left behind in the file never continue the chain of a newer one; the log's key
 *            is scp_derive_key(file key, SCP_LABEL_JOURNAL, salt)
 *   records: u32 type | u32 zero | u64 n | payload
 *     type 1 (chunk):  n = chunk index; payload = the chunk's table entry (44: salt, nonce, tag)
 *                      | chunk_size bytes of chunk ciphertext (as in .d), sealed under that
 *                      entry (AAD: scp_chunk_aad). Its header is the first 60 bytes.
 *     type 2 (commit): n = count of entries; payload = chain value before this record (32) |
 *                      nonce (12) | AES-GCM ciphertext of (u64 new size | count * (u64 index |
 *                      table entry) | target root (32)) | GCM tag (16). AAD = file id || u64
 *                      offset of the record in the journal || the record's first 48 bytes
 *                      (its header and the chain value). Every entry's index is below new
 *                      size / chunk size + 1. The record shows the count of entries; the size
 *                      and root stay hidden (the indexes of changed chunks show anyway, in
 *                      chunk records and in .t). Its header is the whole record.
 *     type 3 (manifest-log record): below. Its header is the first 16 bytes.
 *   chain: c0 = SHA-256(header); then c = SHA-256(c || the record's header) over every record
 *          in order: the chunk records' ciphertext and the type 3 records' payloads are not
 *          hashed (each is authenticated by its own GCM tag: the chunk's, in its header, and
 *          the manifest-log record's). A commit record checks out when its stored chain value
 *          equals c before it, its payload authenticates (which binds that chain value to the
 *          log's key), and every chunk record before it authenticates under the entry in its
 *          header. So a commit covers every header before it, and through them every chunk.
 * Recovery replays, in order, every record up to the last commit record that checks out and
 * names the manifest's root and size. Records after it are stale (a commit whose manifest
 * never landed, or the tail of an older log). A process that follows another's appends
 * (scp_journal_find_from) takes the chain value from each commit record that authenticates
 * instead of hashing the headers before it, and checks no chunk record: what it takes from
 * them (where a chunk's ciphertext is) is checked against the chunk table at every read.
 * docs/volume-format.md, "Journal format 4", has the crash and tamper argument. */
#define SCP_JRN_HDR_LEN 40
#define SCP_JREC_HDR_LEN 16
#define SCP_JREC_CHUNK 1u
#define SCP_JREC_COMMIT 2u
/* A chunk record's header: the common 16 bytes and the chunk's table entry; the ciphertext
 * follows it. */
#define SCP_JCHUNK_HDR_LEN (SCP_JREC_HDR_LEN + SCP_CHUNK_ENTRY_LEN)
/* type 3 (manifest-log record): n = L, the length of the payload, which is a manifest-log
 * record exactly as manifest.log holds it (at most SCP_JMREC_MAX bytes; "Manifest log" above).
 * It follows the commit record of a one-flush commit and is that commit's commit point
 * (docs/volume-format.md, "One-flush commits"); in shared mode a durable commit puts a run of
 * them behind the file's last commit record (the log's unsynced records, then its own). The
 * journal chains its header like every record's and replay skips it; it is authenticated by
 * the manifest log's key and chain, not here. A commit found by scp_journal_find(_from) ends
 * after the run that follows it (the next append goes behind the run). */
#define SCP_JREC_MLOG 3u
#define SCP_JMREC_MAX_BODY (64u << 10)
#define SCP_JMREC_MAX ((size_t)SCP_MREC_HDR_LEN + SCP_JMREC_MAX_BODY + SCP_GCMTAG_LEN)
#define SCP_JENTRY_LEN (8 + SCP_CHUNK_ENTRY_LEN)
/* Plaintext bytes of a commit payload with `count` entries (size, entries, root). */
#define SCP_JCOMMIT_PT_LEN(count) ((size_t)8 + (size_t)(count) * SCP_JENTRY_LEN + SCP_HASH_LEN)
/* Bytes of a commit record with `count` entries. */
#define SCP_JCOMMIT_LEN(count)                                                                  \
    ((size_t)SCP_JREC_HDR_LEN + SCP_HASH_LEN + SCP_NONCE_LEN + SCP_JCOMMIT_PT_LEN(count) +       \
     SCP_GCMTAG_LEN)

/* Chunks in a file of `size` bytes of chunk size cs (no overflow near UINT64_MAX: a size can
 * come from a journal payload). */
static inline uint64_t scp_chunks_in(uint64_t size, uint32_t cs) {
    return size / cs + (size % cs != 0);
}

/* Associated data of chunk `index` of file `id` (volume id || file id || u64 index): a chunk
 * cannot move to another index, file or volume. */
#define SCP_CHUNK_AAD_LEN (SCP_VOLID_LEN + SCP_FILEID_LEN + 8)
void scp_chunk_aad(const uint8_t volid[SCP_VOLID_LEN], const uint8_t id[SCP_FILEID_LEN],
                   uint64_t index, uint8_t aad[SCP_CHUNK_AAD_LEN]);

typedef struct scp_journal_view {
    uint64_t new_size; /* the file size named by the commit found */
    size_t end;        /* offset just past that commit record: replay stops here */
    uint64_t ncommits; /* commit records up to end */
    uint64_t nchunks;  /* chunk records before end */
    size_t start;      /* where the walk began (the header's end, or scp_journal_find_from's
                        * offset): replay starts here */
    size_t base;       /* the journal offset of the buffer's first byte (0, or
                        * scp_journal_find_from_at's base): replay reads the same buffer */
    uint8_t chain[SCP_HASH_LEN]; /* the chain value at end (to append after it) */
    uint8_t key[32];   /* the log's key (wipe the view after use) */
    uint8_t root[SCP_HASH_LEN]; /* the root named by the commit found */
    size_t named_end;  /* past mode (scp_journal_follow_*): just past the last commit record
                        * that names the root asked for (start if none was asked for); the
                        * commits between it and end are past the named one */
    int cut;           /* the walk ended because the buffer did: the next record (or its
                        * header) does not fit in len. Otherwise it ended on bytes that do not
                        * continue the log, and a longer buffer gives the same result. */
} scp_journal_view;

/* Write a new log's header (magic and salt) and start its chain. */
void scp_journal_start(uint8_t hdr[SCP_JRN_HDR_LEN], const uint8_t salt[SCP_HASH_LEN],
                       uint8_t chain[SCP_HASH_LEN]);

/* Extend a hash chain over len bytes: c = SHA-256(c || rec). A journal record's header
 * (format 4: never a chunk's ciphertext; the manifest log chains whole records). */
void scp_journal_chain(uint8_t chain[SCP_HASH_LEN], const uint8_t *rec, size_t len);

/* The key of the log whose header is hdr (the salt at bytes 8..39), under file_key. */
int scp_journal_key(const uint8_t file_key[32], const uint8_t hdr[SCP_JRN_HDR_LEN],
                    uint8_t out[32], scp_err *err);

/* Build a commit record at rec (SCP_JCOMMIT_LEN(count) bytes) for a log at `off` in the
 * journal: pt is the plaintext payload (SCP_JCOMMIT_PT_LEN(count) bytes: size, entries, root).
 * Stores the chain value (the one before the record) in it, then extends chain over it. */
int scp_journal_commit_seal(const uint8_t key[32], const uint8_t id[SCP_FILEID_LEN], uint64_t off,
                            uint64_t count, const uint8_t *pt, uint8_t chain[SCP_HASH_LEN],
                            uint8_t *rec, scp_err *err);

/* In a whole journal held in memory, find the last commit record that checks out and names
 * `root` and `size` (decrypting commit payloads and checking chunk records under file_key, for
 * file `id` of volume `volid`). Returns 1 with *out filled, 0 if there is none (empty, torn,
 * stale or forged journal: ignore it). Never fails otherwise. */
int scp_journal_find(const uint8_t *buf, size_t len, uint32_t chunk_size,
                     const uint8_t volid[SCP_VOLID_LEN], const uint8_t file_key[32],
                     const uint8_t id[SCP_FILEID_LEN],
                     const uint8_t root[SCP_HASH_LEN], uint64_t size, scp_journal_view *out);

/* The same walk from the log's header, the chain over every record header compared at each
 * commit record, but no chunk record's ciphertext checked: a shared-mode load of a file whose
 * log others append to (a process opening a file that is being written). What it takes from
 * chunk records is where each chunk's ciphertext is, checked against the chunk table at every
 * read, as a follower's (scp_journal_find_from); which commits of a log landed after a crash
 * is decided when the volume opens, by scp_journal_find's full checks (docs/volume-format.md,
 * "Shared mode", a live load). Over any buffer in which scp_journal_find finds a commit, this
 * finds the same one (fuzz_journal checks it). */
int scp_journal_find_live(const uint8_t *buf, size_t len, uint32_t chunk_size,
                          const uint8_t file_key[32], const uint8_t id[SCP_FILEID_LEN],
                          const uint8_t root[SCP_HASH_LEN], uint64_t size,
                          scp_journal_view *out);

/* The same, walking only from offset `from` of buf (a record boundary up to which the caller
 * has checked the log, with the chain value chain_at there and the log's key log_key): how a
 * process that follows another's appends to one log catches up: the chain runs over every
 * record header from `from` and each commit record's stored value must equal it (a commit
 * record authenticates its own offset and chain value; the chain is what binds the chunk
 * record headers in front of it, their index and entry, which a follow that reads while a
 * writer's pwrite is still landing can see half-written: session 24, race24); no chunk
 * record's ciphertext is checked (a chunk read checks it against the table). The bytes
 * of buf before `from` are not read (the commit records' AAD uses absolute offsets, so buf
 * holds the journal from offset 0). */
int scp_journal_find_from(const uint8_t *buf, size_t len, size_t from, uint32_t chunk_size,
                          const uint8_t log_key[32], const uint8_t chain_at[SCP_HASH_LEN],
                          const uint8_t id[SCP_FILEID_LEN], const uint8_t root[SCP_HASH_LEN],
                          uint64_t size, scp_journal_view *out);
/* The same over a buffer that holds only the journal's bytes from offset base (at most from)
 * to len: buf[0] is the byte at offset base. A follower reads just what was appended since it
 * last looked, into a buffer of that size: a buffer as long as the whole journal object (which
 * shared mode keeps up to about 1 MiB ahead of the log with zeros) was fresh memory at every
 * follow, and the kernel's copy into it page-faulted (pgbench: a third of the follow's CPU).
 * Offsets (and the view's start and end) stay the journal's; scp_journal_replay reads the same
 * buffer (the view keeps base). */
int scp_journal_find_from_at(const uint8_t *buf, size_t base, size_t len, size_t from,
                             uint32_t chunk_size, const uint8_t log_key[32],
                             const uint8_t chain_at[SCP_HASH_LEN], const uint8_t id[SCP_FILEID_LEN],
                             const uint8_t root[SCP_HASH_LEN], uint64_t size,
                             scp_journal_view *out);

/* Walk the records from out->start to out->end of a journal that scp_journal_find(_from)
 * accepted, in order: chunk_cb for every chunk record (ct NULL for a dead one, below),
 * entry_cb for every live entry of every commit record (either may be NULL). A callback
 * returns -1 (having filled its own error) to stop the walk with -1; so does a failure to
 * allocate or decrypt (with err filled).
 *
 * Dead records are not replayed: a dead chunk record is handed out with ct NULL (a caller
 * that tracks which chunks the log names, such as a shared-mode follow's jlogged, still sees
 * it), a dead entry not at all. A record of chunk i belongs to the first commit record at
 * or after it; it is dead when that commit or a later one up to the end leaves the file with
 * i chunks or fewer: a truncate cut the chunk off, and what the file holds at i since, if it
 * grew again, is what later records or the table in place say (a fresh chunk, or a hole, is
 * written in place without a record). Replayed, such a record put a chunk's entry from before
 * the truncate over the one the table holds: volume_powercut, tight run 39210 shared, a cut
 * between the manifest's sync and the apply of a commit that grew the file back
 * (docs/volume-format.md, "Truncates in a log"). */
typedef int (*scp_journal_chunk_cb)(void *ctx, uint64_t index, const uint8_t *ct);
typedef int (*scp_journal_entry_cb)(void *ctx, uint64_t index, const uint8_t *ent);
int scp_journal_replay(const uint8_t *buf, const scp_journal_view *v, uint32_t chunk_size,
                       const uint8_t id[SCP_FILEID_LEN], scp_journal_chunk_cb chunk_cb,
                       scp_journal_entry_cb entry_cb, void *ctx, scp_err *err);

/* The commit payloads that a walk opened, kept for the replay of the same buffer (branch
 * pg18): a shared-mode follow or live load walks the log (opening each commit record to find
 * the one that names the root) and then replays it (taking each record's entries), and opened
 * every commit record twice (AES-GCM, a malloc). With `kept`, the walk keeps each payload it
 * authenticated, in walk order, and the replay takes the i-th commit record's entries from
 * the i-th kept payload instead of opening the record again: the same bytes of the same
 * buffer, the same record order from the view's start (the walk and the replay both start
 * there and step over the same records), so the replay takes exactly what the walk checked.
 * Each kept payload carries its record's offset and entry count, and a replay that finds
 * another (or none left) opens the record as before. The caller frees (and wipes) them with scp_journal_kept_free, also before a
 * second walk into the same `kept`. */
typedef struct scp_journal_kept {
    uint8_t **pt;    /* each payload (SCP_JCOMMIT_PT_LEN(count[i]) bytes), malloc'd */
    uint64_t *count; /* its entry count */
    size_t *off;     /* its offset in the journal */
    size_t n, cap;
    size_t opens;    /* commit records the replays opened anyway (tests, counters) */
} scp_journal_kept;
void scp_journal_kept_free(scp_journal_kept *k);
/* The payloads of k whose records start at `at` or after: a view into k, no copy, that starts
 * at the first payload whose offset is >= at (k's payloads are in walk order, their offsets
 * increasing), with its own opens at 0. For a replay split at `at` (commit.c's follow: the
 * commits up to the one the manifest names, then those past it): the part [start, at) replays
 * with k, the part [at, end) with the view, and each takes its own records' payloads. The view
 * owns nothing: it is never freed nor walked into (a walk would grow its arrays); k's
 * scp_journal_kept_free frees all. */
scp_journal_kept scp_journal_kept_from(const scp_journal_kept *k, size_t at);
int scp_journal_find_live_kept(const uint8_t *buf, size_t len, uint32_t chunk_size,
                               const uint8_t file_key[32], const uint8_t id[SCP_FILEID_LEN],
                               const uint8_t root[SCP_HASH_LEN], uint64_t size,
                               scp_journal_view *out, scp_journal_kept *kept);
int scp_journal_find_from_at_kept(const uint8_t *buf, size_t base, size_t len, size_t from,
                                  uint32_t chunk_size, const uint8_t log_key[32],
                                  const uint8_t chain_at[SCP_HASH_LEN],
                                  const uint8_t id[SCP_FILEID_LEN], const uint8_t root[SCP_HASH_LEN],
                                  uint64_t size, scp_journal_view *out, scp_journal_kept *kept);
/* Past mode (lazy publication step 3, docs/volume-format.md "Built: step 3"): the same walks,
 * but once the commit that names root and size is passed (with root NULL: from `from` on),
 * every later commit record that checks out is found too, so the view ends at the last one:
 * the file's newest state in its log, which the manifest may not name yet (a writer between
 * its commit record and its manifest-log record, or killed there). view.root and new_size are
 * that commit's; view.named_end is where the commits past the named one begin. past 0: the
 * scp_journal_find_* walks exactly. */
int scp_journal_follow_live_kept(const uint8_t *buf, size_t len, uint32_t chunk_size,
                                 const uint8_t file_key[32], const uint8_t id[SCP_FILEID_LEN],
                                 const uint8_t root[SCP_HASH_LEN], uint64_t size, int past,
                                 scp_journal_view *out, scp_journal_kept *kept);
int scp_journal_follow_from_at_kept(const uint8_t *buf, size_t base, size_t len, size_t from,
                                    uint32_t chunk_size, const uint8_t log_key[32],
                                    const uint8_t chain_at[SCP_HASH_LEN],
                                    const uint8_t id[SCP_FILEID_LEN],
                                    const uint8_t root[SCP_HASH_LEN], uint64_t size, int past,
                                    scp_journal_view *out, scp_journal_kept *kept);
/* The replay of view v taking payloads from kept (NULL: none). horizon (0: v's end) is where
 * the commits that decide which records are dead end: a caller that replays one log in two
 * views (the commits the manifest names, then those past them: commit.c, follow_run) gives the
 * first view the second's end, so that a truncate in the second kills records of the first. */
int scp_journal_replay_kept(const uint8_t *buf, const scp_journal_view *v, scp_journal_kept *kept,
                            size_t horizon, uint32_t chunk_size, const uint8_t id[SCP_FILEID_LEN],
                            scp_journal_chunk_cb chunk_cb, scp_journal_entry_cb entry_cb, void *ctx,
                            scp_err *err);

/* Every manifest-log record (type 3) of a whole journal held in memory that follows a commit
 * record that checks out with nothing but type 3 records in between (a run), in order:
 * cb(ctx, rec, len, root, size), not authenticated here (the caller opens it as a
 * manifest-log record); root and size are those that the commit record the run follows
 * names. A torn, stale or forged journal gives fewer. The walk cannot tell a run of this log
 * from one of a newer log written over it whose header and records were lost (the run's
 * payload is not chained): the caller checks that the state a durable record of the run makes
 * durable is root and size (manifest.c, mlog_adopt_journals). */
typedef void (*scp_journal_mrec_cb)(void *ctx, const uint8_t *rec, size_t len,
                                    const uint8_t root[SCP_HASH_LEN], uint64_t size);
void scp_journal_mrecs(const uint8_t *buf, size_t len, uint32_t chunk_size,
                       const uint8_t volid[SCP_VOLID_LEN], const uint8_t file_key[32],
                       const uint8_t id[SCP_FILEID_LEN],
                       scp_journal_mrec_cb cb, void *ctx);

/* Every record of a whole journal held in memory that a full walk (scp_journal_find's checks:
 * the chain over every header, each commit record's payload, every chunk record's ciphertext)
 * accepts, in order, up to the first that does not check out: chunk_cb(ctx, index) for each
 * chunk record, commit_cb(ctx, off, end, pt, count) for each commit record with its payload
 * opened (pt: SCP_JCOMMIT_PT_LEN(count) bytes, size, entries, root; valid during the call).
 * A commit_cb that returns non-zero ends the walk there. The open's settle
 * (docs/volume-format.md, "Settle", S2-S3) takes the commits past the one the manifest names. */
typedef void (*scp_journal_chunkrec_cb)(void *ctx, uint64_t index);
typedef int (*scp_journal_commit_cb)(void *ctx, size_t off, size_t end, const uint8_t *pt,
                                     uint64_t count);
void scp_journal_commits(const uint8_t *buf, size_t len, uint32_t chunk_size,
                         const uint8_t volid[SCP_VOLID_LEN], const uint8_t file_key[32],
                         const uint8_t id[SCP_FILEID_LEN], scp_journal_chunkrec_cb chunk_cb,
                         scp_journal_commit_cb commit_cb, void *ctx);

#endif
