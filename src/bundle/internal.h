/* Shared by the endpoint files of bundle/: replies, request-body decoding in the manner of Go's
 * encoding/json, transactions with the reference's retries, the per-user lock, and the scope
 * lifecycle (SPEC-v2 §4.1). Not installed; not seen outside bundle/. */
#ifndef OVERSYNCD_BUNDLE_INTERNAL_H
#define OVERSYNCD_BUNDLE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "../json_scan.h"
#include "bundle.h"

/* ---------------------------------------------------------------- replies */

/* A JSON string in the reference's encoding (Go's json.Encoder: <, >, & and U+2028/9 escaped,
 * invalid UTF-8 as U+FFFD). */
void bj_str(strbuf_t *sb, const char *s);
/* The reply is sb's text plus the trailing newline, with this status. */
void bundle_ok(struct bundle_reply *r, int status);
/* A failure of the database (a query or the connection) during an operation: logged with the
 * request id; answered 503 service_unavailable when the connection is gone or the transaction
 * lost a serialization/deadlock/lock-timeout race (the client retries 503), else 500 code with
 * the endpoint's message. */
void bundle_fail_db(const struct bundle_ctx *c, struct bundle_reply *r, const PGresult *res, const char *code,
                    const char *message);
/* 409 source_retired: {"error","message","source_id","replaced_by_source_id"?} as the reference
 * words it ("source S for user U was retired[ and replaced by R]"). */
void bundle_fail_source_retired(const struct bundle_ctx *c, struct bundle_reply *r, const char *source_id,
                                const char *replaced_by);
/* The same for a failure already logged (or with nothing to log). */
void bundle_fail_internal(const struct bundle_ctx *c, struct bundle_reply *r, const char *code, const char *message);

/* An RFC 3339 text of a timestamptz column in UTC with the fraction's trailing zeros trimmed, as Go
 * prints a time.Time: the SQL expression for column expression X. */
#define SQL_RFC3339(x) \
    "rtrim(rtrim(to_char((" x ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), '0'), '.') || 'Z'"

/* ---------------------------------------------------------------- request bodies */

/* One field of a request object, decoded as Go's encoding/json decodes into a struct: the key is
 * matched case-insensitively, the last occurrence wins, null leaves the zero value, unknown keys
 * are ignored. */
enum bfield_type { BF_BOOL, BF_INT64, BF_STRING, BF_OBJECT, BF_ARRAY, BF_RAW };
struct bfield {
    const char *name;
    enum bfield_type type;
    bool present;             /* seen with a non-null value */
    bool b;
    long long i;
    const char *s;            /* BF_STRING: unescaped, in the arena */
    struct json_span span;    /* the value as sent (BF_OBJECT, BF_ARRAY, BF_RAW, and any type) */
};
/* Decodes body (one JSON object; bytes after the first value are ignored as Go's Decoder does,
 * once the value is complete) into fields. false when it is not JSON, not an object (null is an
 * empty object), or a field has the wrong type. strict: any unknown key or trailing non-space
 * byte also fails (DisallowUnknownFields plus a second Decode, as snapshot-session create does). */
bool bparse_object(arena_t *arena, const char *body, size_t len, struct bfield *fields, int n, bool strict);

/* White space of JSON skipped from p (before end). */
const char *bjson_skip_ws(const char *p, const char *end);
/* The end of the JSON value starting at p (only its extent: json_validate checks it), NULL when
 * the text ends inside it. */
const char *bjson_value_end(const char *p, const char *end);

/* A decimal integer query or path value as Go's strconv.ParseInt(s, 10, 64) reads it (optional
 * sign, digits, nothing else). */
bool bparse_int(const char *s, long long *out);

/* ---------------------------------------------------------------- transactions */

/* The outcome of one attempt of a transaction body. */
enum btx { BTX_OK, BTX_FAIL /* reply set, roll back */, BTX_RETRY /* serialization race */ };

/* Runs SQL (no parameters) and returns the result, kept in the arena. */
PGresult *bq(const struct bundle_ctx *c, const char *sql);
/* Runs SQL with text parameters (NULL = SQL NULL); result kept in the arena. */
PGresult *bqp(const struct bundle_ctx *c, const char *sql, int n, const char *const *params);
/* true when res is a success (COMMAND_OK or TUPLES_OK). */
bool bq_ok(const PGresult *res);
/* true when res failed with 40001, 40P01 or 55P03, which the reference retries. */
bool bq_retryable(const PGresult *res);
/* An int64 of a result cell (0 for NULL). */
long long bq_int(const PGresult *res, int row, int col);
/* A text cell (NULL for SQL NULL). */
const char *bq_str(const PGresult *res, int row, int col);

/* Runs body(c, r, ud) inside BEGIN <mode> ... COMMIT up to three times while it (or the COMMIT)
 * answers a retryable failure, as the reference does (retry.go). mode: e.g. "ISOLATION LEVEL
 * READ COMMITTED". On BTX_FAIL the body has set the reply; on a database failure the reply is
 * set by bundle_fail_db(code, message). The connection is outside any transaction afterwards.
 * true when committed. */
bool btx_run(const struct bundle_ctx *c, struct bundle_reply *r, const char *mode,
             enum btx (*body)(const struct bundle_ctx *c, struct bundle_reply *r, void *ud), void *ud,
             const char *code, const char *message);

/* In a body: the failed result res of a step. Retryable → BTX_RETRY; otherwise the reply is set
 * (bundle_fail_db) and BTX_FAIL. */
enum btx btx_db_error(const struct bundle_ctx *c, struct bundle_reply *r, const PGresult *res, const char *code,
                      const char *message);

/* In a body: the user's lock for the transaction, pg_advisory_xact_lock(hashtextextended(user,
 * 0)), the key the go-oversync library takes with a session lock, so the two exclude each other.
 * BTX_OK, or the outcome of btx_db_error(code, message). */
enum btx btx_user_lock(const struct bundle_ctx *c, struct bundle_reply *r, const char *code, const char *message);

/* ---------------------------------------------------------------- scope lifecycle (§4.1) */

enum scope_code { SCOPE_UNINITIALIZED = 0, SCOPE_INITIALIZING = 1, SCOPE_INITIALIZED = 2 };

struct scope {
    long long user_pk;
    enum scope_code state;
    const char *initializer_source_id;   /* "" when none */
    const char *initialization_id;       /* "" when none */
    const char *lease_expires_at;        /* RFC 3339 (µs), "" when none */
    bool lease_in_future;
    double lease_seconds_left;           /* > 0 when lease_in_future */
};

/* Creates the user_state and scope_state rows when missing (INSERT ... ON CONFLICT DO NOTHING);
 * then locks the scope row FOR UPDATE, rewrites an expired lease to uninitialized and reads it.
 * A failed query: false with *res the failed result. */
bool scope_lock(const struct bundle_ctx *c, struct scope *s, const PGresult **res);
/* Reads the scope without locking (pull, snapshot, watch): a user never seen is uninitialized. */
bool scope_read(const struct bundle_ctx *c, struct scope *s, bool *exists, const PGresult **res);
/* For readers: an INITIALIZED scope is fine (true); otherwise the reply is set (409
 * scope_uninitialized or scope_initializing; a lease in the past counts as uninitialized). */
bool scope_require_initialized(const struct bundle_ctx *c, const struct scope *s, struct bundle_reply *r);
/* The lease check of a push with an initialization id (§4.1): reload + lock + expire, then 409
 * initialization_stale / 410 initialization_expired, else the lease is refreshed to now + TTL.
 * source: the source that must own the lease. BTX_OK, BTX_FAIL (reply set) or a db outcome. */
enum btx scope_check_lease(const struct bundle_ctx *c, struct bundle_reply *r, const char *source,
                           const char *initialization_id, const char *code, const char *message);
/* Marks the scope INITIALIZED by source (the seed commit, or a connect without pending rows). */
bool scope_set_initialized(const struct bundle_ctx *c, long long user_pk, const char *source, const PGresult **res);

#endif
