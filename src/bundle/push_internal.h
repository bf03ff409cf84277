/* Shared by the push-session files of bundle/ (push.c: create, chunks, delete; push_commit.c:
 * commit; committed.c: committed-bundle rows): the session row, the bytea columns of the
 * registered tables, key and JSON text helpers in the reference's formats. Not seen outside
 * bundle/. */
#ifndef OVERSYNCD_BUNDLE_PUSH_INTERNAL_H
#define OVERSYNCD_BUNDLE_PUSH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* sync.push_session_rows.op_code / bundle_rows.op_code */
enum push_op { PUSH_OP_INSERT = 1, PUSH_OP_UPDATE = 2, PUSH_OP_DELETE = 3 };
const char *push_op_name(int op);

/* One row of sync.push_sessions, locked FOR UPDATE. */
struct push_session {
    const char *push_id;          /* canonical text */
    long long user_pk;
    const char *user_id;
    const char *source_id;
    long long source_bundle_id;
    long long planned_row_count;
    long long next_expected_row_ordinal;
    const char *initialization_id;   /* "" when none */
};

/* Loads and locks the session push_id (as sent in the path) and checks it as chunk, commit and
 * delete do (push_sessions.go loadPushSessionForUpdate): not a UUID (Go's uuid.Parse of the
 * trimmed text) or unknown → 404 push_session_not_found; another user's → 403
 * push_session_forbidden; past expires_at → 410 push_session_expired. BTX_OK with *s filled. */
enum btx push_session_load(const struct bundle_ctx *c, struct bundle_reply *r, const char *push_id,
                           struct push_session *s, const char *code, const char *message);


/* The columns of a registered table whose type is bytea (information_schema's udt_name, as the
 * reference reads them at start-up), lower-cased. Loaded once per process and catalog. */
struct push_table_columns {
    char **bytea;
    int n_bytea;
};
/* The bytea columns of every registered table, indexed by table_id - 1; loads them on first
 * use. NULL on a database failure (*res the failed result). */
const struct push_table_columns *push_bytea_columns(const struct bundle_ctx *c, const PGresult **res);
bool push_is_bytea(const struct push_table_columns *t, const char *lower_column);

/* The wire text of a key (uuid: canonical text of 16 bytes; text: the bytes). hex: key_bytes as
 * lowercase hex (encode(key_bytes, 'hex')). Into the arena; NULL when malformed. */
const char *push_key_text(arena_t *arena, enum bundle_key_kind kind, const char *hex, size_t *len);
/* {"<column>":"<key>"} in Go's encoding. */
void push_key_json(strbuf_t *sb, const struct bundle_catalog_table *t, const char *key, size_t len);

/* Go's json.Compact with HTML escaping, as json.Encoder writes a json.RawMessage: white space
 * outside strings dropped; < > & U+2028 U+2029 inside strings escaped. */
void push_json_compact(strbuf_t *out, const char *json, size_t len);

/* Go's strconv.Quote (what %q prints) of s. */
void push_go_quote(strbuf_t *sb, const char *s);

/* Go's base64.StdEncoding.DecodeString: \r and \n ignored, padding required, trailing bits
 * not checked. out has room for len * 3 / 4 + 3 bytes. */
bool push_base64_std_decode(const char *s, size_t len, unsigned char *out, size_t *outlen);

/* The lower-case hex of n bytes. */
void push_hex(strbuf_t *sb, const unsigned char *p, size_t n);

#endif
