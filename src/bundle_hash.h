/* bundle_hash and byte_count of a committed bundle (SPEC-v2 §4.7), computed incrementally.
 *
 * The hashed text is the canonical JSON (canonical_json.h) of an array with one object per wire
 * row, in bundle order:
 *
 *   [{"key":KEY,"op":OP,"payload":PAYLOAD|null,"row_ordinal":I,"row_version":V,"schema":S,"table":T},...]
 *
 * I is the 0-based position of the row; PAYLOAD is null for DELETE and for a missing or empty
 * payload; every string and number is canonical (row_ordinal and row_version too: they pass
 * through float64 like any number of the reference, so a row_version above 2^53 is rounded).
 * bundle_hash is the lowercase hex SHA-256 of that text and byte_count its length in bytes. An
 * empty bundle hashes "[]" (byte_count 2).
 *
 * Usage:
 *   struct bundle_hasher h;
 *   bundle_hasher_init(&h);
 *   for each row: if (!bundle_hasher_add_row(&h, ..., err, sizeof err)) { fail; }
 *   bundle_hasher_finish(&h, hex, &byte_count);
 *   bundle_hasher_free(&h);          (always, also after an error; idempotent)
 *
 * Rows are streamed into the digest: memory stays at one row's canonical text. */
#ifndef OVERSYNCD_BUNDLE_HASH_H
#define OVERSYNCD_BUNDLE_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strbuf.h"

#define BUNDLE_HASH_HEX_LEN 64

struct bundle_hasher {
    void *md;            /* EVP_MD_CTX *, NULL once finished or freed */
    uint64_t rows;       /* rows added: the next row_ordinal */
    uint64_t byte_count; /* bytes hashed so far */
    strbuf_t row;        /* scratch: the canonical text of one row */
};

/* Start an empty bundle. False only when OpenSSL cannot allocate a digest context. */
bool bundle_hasher_init(struct bundle_hasher *h);

/* Append one wire row. schema, table and op are plain strings (NUL-terminated); key_json is the
 * row's wire key as JSON text (e.g. {"id":"..."}; NULL or empty is null) and payload_json its
 * payload as JSON text (NULL or empty is null; ignored for op "DELETE"). Both are canonicalized
 * here, so any formatting is fine. On invalid key or payload JSON the row is not added, err
 * receives the reason and the result is false; the hasher stays usable. */
bool bundle_hasher_add_row(struct bundle_hasher *h, const char *schema, const char *table,
                           const char *key_json, size_t key_len, const char *op, int64_t row_version,
                           const char *payload_json, size_t payload_len, char *err, size_t errlen);

/* Close the array and write the digest as 64 lowercase hex digits plus NUL into hex (65 bytes)
 * and the text length into *byte_count (if not NULL). False if the hasher was already finished
 * or OpenSSL failed. */
bool bundle_hasher_finish(struct bundle_hasher *h, char hex[BUNDLE_HASH_HEX_LEN + 1],
                          uint64_t *byte_count);

/* Release everything; safe after finish, after an error and twice. */
void bundle_hasher_free(struct bundle_hasher *h);

#endif
