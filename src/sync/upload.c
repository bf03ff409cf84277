/* POST /sync/upload (SPEC §4).
 *
 * Two round trips per upload, whatever its size:
 *   1. BEGIN; per-user advisory lock; which scids are already in the log; the current version of
 *      every row the batch touches; the user's highest server_id.
 *   2. one statement whose data-modifying CTEs write the log rows (in apply order), the final
 *      meta row and after-image of every touched row; COMMIT.
 * Between them the batch is classified in C (idempotency, version gate, chains of changes to one
 * row inside the batch). That is sound because every writer of a user's rows holds the user's
 * lock, which also makes each user's server_ids commit in ascending order (SPEC §8.3). */
#include "../db/pipeline.h"
#include "internal.h"
#include "../base64.h"
#include "../json_scan.h"
#include "../log.h"
#include "../materialize/materialize.h"
#include "../uuid.h"
#include "../xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum op { OP_INSERT, OP_UPDATE, OP_DELETE };

/* One foreign-key value of an upsert, to be found in the batch or the database (SPEC §6.3). */
struct fkref {
    int fk;                         /* index into sync_schema.fks */
    const char *value;              /* in the parent column's text form */
    char db;                        /* 'y' exists, 'n' missing, 'b' not castable; from round trip 1 */
    int forward;                    /* order position of a parent applied later in the batch, or -1 */
};
enum status { ST_PENDING, ST_APPLIED, ST_IDEMPOTENT, ST_CONFLICT, ST_INVALID, ST_MATERIALIZE_ERROR };

struct change {
    long long scid;
    const char *schema;
    const char *table;
    const char *op_text;
    enum op op;
    const char *pk_raw;
    char pk[UUID_STR_LEN + 1];
    long long sv;
    bool has_payload;               /* the key was present (its value may be null) */
    struct json_span payload;
    const struct sync_table *tbl;
    int key;                        /* row key index, -1 until validated */
    struct fkref *refs;
    int nrefs;

    enum status status;
    enum invalid_reason reason;
    const char *message;
    const char *details;            /* JSON object text of invalid.details */
    long long new_version;

    /* the row as the server had it when this change was refused (conflict) */
    long long row_version;
    bool row_deleted;
    int row_image;                  /* change holding the after-image, -1 = database, -2 = none */

    bool logged;                    /* writes a log row */
    bool final;                     /* last log row of its key in this batch */
    bool at_current_version;        /* admin retry: applies against whatever version the row has */
    bool no_forward_parents;        /* a parent it counted on later in the batch was not applied */
};

struct rowkey {
    const char *schema;
    const char *table;
    const char *pk;
    long long version;
    bool deleted;
    bool exists;
    int image;                      /* change holding the after-image, -1 = database */
    const char *db_payload;         /* fetched for conflicts only */
    /* as read in round trip 1, to classify again after a materializer failure */
    long long db_version;
    bool db_deleted;
    bool db_exists;
    /* ownership (materialized tables only): the key's business row is shared by all users */
    bool guarded;                   /* its table is materialized */
    bool upserted;                  /* some change of the batch creates or updates it */
    bool claimed;                   /* this upload claimed it in round trip 1 */
    bool written;                   /* a change of it is in the write (set by write_and_commit) */
    bool foreign;                   /* another user owns it */
};

struct batch {
    const struct sync_request *rq;
    struct change *changes;
    int n;
    struct rowkey *keys;
    int nkeys;
    int *key_slots;                 /* open addressing over keys */
    size_t key_cap;
    long long *scid_slots;          /* open addressing set of consumed scids */
    bool *scid_used;
    size_t scid_cap;
    int *order;                     /* apply order: indexes into changes */
    int norder;
    long long *db_scids;            /* scids of this device already in the log */
    int n_db_scids;
    long long retry_id;             /* > 0: an admin retry of this materialize_failures row */
    int mat_fallbacks;              /* set-based materializations redone change by change */
    int one_trip;                   /* 1: written in one round trip; -1: tried, missed, rewritten */
    struct json_skips skips;        /* where the body's larger values end (parse_body) */
};

/* ------------------------------------------------------------------------------ parsing */

static bool bad_request(char *err, size_t errlen, const char *fmt, long i, const char *field)
{
    snprintf(err, errlen, fmt, i, field);
    return false;
}

/* A string field; with keep false (a change only checked, see parse_body) nothing is copied. */
static bool opt_string(struct batch *b, const struct json_span *v, const char **out, bool keep, long i,
                       const char *field, char *err, size_t errlen)
{
    if (v->type == JSON_NULL) {
        *out = "";
        return true;
    }
    if (v->type != JSON_STRING)
        return bad_request(err, errlen, "changes[%ld].%s must be a string", i, field);
    *out = keep ? json_string_dup(b->rq->arena, v) : "";
    return true;
}

/* Reads changes[i] into c. With keep false it only checks the element's shape and reads its scid:
 * nothing is allocated, so every element of any body can be checked. */
static bool parse_change(struct batch *b, const struct json_span *obj, long i, struct change *c, bool keep,
                         char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->schema = c->table = c->op_text = "";
    c->pk_raw = NULL;
    c->key = -1;
    c->row_image = -2;
    if (obj->type != JSON_OBJECT)
        return bad_request(err, errlen, "changes[%ld] must be an object%s", i, "");
    bool have_scid = false;
    struct json_iter it;
    struct json_span k, v;
    json_iter_init_skips(&it, obj, &b->skips);
    while (json_iter_member(&it, &k, &v)) {
        if (json_string_eq(&k, "source_change_id")) {
            if (v.type == JSON_NULL) {
                have_scid = false;
            } else if (!json_int64(&v, &c->scid)) {
                return bad_request(err, errlen, "changes[%ld].%s must be an integer", i, "source_change_id");
            } else {
                have_scid = true;
            }
        } else if (json_string_eq(&k, "schema")) {
            if (!opt_string(b, &v, &c->schema, keep, i, "schema", err, errlen))
                return false;
        } else if (json_string_eq(&k, "table")) {
            if (!opt_string(b, &v, &c->table, keep, i, "table", err, errlen))
                return false;
        } else if (json_string_eq(&k, "op")) {
            if (!opt_string(b, &v, &c->op_text, keep, i, "op", err, errlen))
                return false;
        } else if (json_string_eq(&k, "pk")) {
            if (v.type == JSON_NULL)
                c->pk_raw = NULL;
            else if (v.type != JSON_STRING)
                return bad_request(err, errlen, "changes[%ld].%s must be a string", i, "pk");
            else
                c->pk_raw = keep ? json_string_dup(b->rq->arena, &v) : "";
        } else if (json_string_eq(&k, "server_version")) {
            if (v.type == JSON_NULL)
                c->sv = 0;
            else if (!json_int64(&v, &c->sv))
                return bad_request(err, errlen, "changes[%ld].%s must be an integer", i, "server_version");
        } else if (json_string_eq(&k, "payload")) {
            c->has_payload = true;
            c->payload = v;
        }
    }
    if (!have_scid)
        return bad_request(err, errlen, "changes[%ld].%s is required", i, "source_change_id");
    return true;
}

/* Validates the body and checks every element of changes (400 for the first bad one, wherever it
 * is), counting them without keeping anything. *array and *count describe the changes. Only a
 * batch within max_upload_changes is then read into b->changes; a larger one is answered from the
 * body itself (answer_too_large), so a body of a million elements costs no memory per element. */
static bool parse_body(struct batch *b, const char *body, size_t len, struct json_span *array, long *count,
                       char *err, size_t errlen)
{
    struct json_span root;
    *count = 0;
    /* room for the ends of the root, the changes, and a change's object, payload and two large
     * values for every change that can be kept; never more than the body can hold (values of 64
     * bytes or more, about two levels of them), so a small body gets a small table whatever
     * max_upload_changes says */
    size_t max_skips = len / 32 + 16;
    long keepable = b->rq->cfg->max_upload_changes;
    if (keepable >= 0 && (unsigned long)keepable <= max_skips / 4 && (size_t)keepable * 4 + 64 < max_skips)
        max_skips = (size_t)keepable * 4 + 64;
    if (!json_validate_skips(body, len, &root, &b->skips, b->rq->arena, max_skips, err, errlen))
        return false;
    if (root.type != JSON_OBJECT) {
        snprintf(err, errlen, "the request body must be a JSON object");
        return false;
    }
    struct json_span changes = { .type = JSON_NULL };
    struct json_iter it;
    struct json_span k, v;
    json_iter_init_skips(&it, &root, &b->skips);
    while (json_iter_member(&it, &k, &v)) {
        if (json_string_eq(&k, "last_server_seq_seen")) {
            long long ignored;
            if (v.type != JSON_NULL && !json_int64(&v, &ignored)) {
                snprintf(err, errlen, "last_server_seq_seen must be an integer");
                return false;
            }
        } else if (json_string_eq(&k, "changes")) {
            changes = v;
        }
    }
    *array = changes;
    if (changes.type == JSON_NULL) {
        b->n = 0;
        return true;
    }
    if (changes.type != JSON_ARRAY) {
        snprintf(err, errlen, "changes must be an array");
        return false;
    }
    /* one pass: the first max_upload_changes elements are read, any after them only checked */
    long n = 0, cap = 0, keep_max = b->rq->cfg->max_upload_changes < INT_MAX ? b->rq->cfg->max_upload_changes : INT_MAX;
    struct change scratch, *kept = NULL;
    json_iter_init_skips(&it, &changes, &b->skips);
    while (json_iter_element(&it, &v)) {
        bool keep = n < keep_max;
        if (keep && n == cap) {
            cap = cap ? (cap * 2 < keep_max ? cap * 2 : keep_max) : (keep_max < 64 ? keep_max : 64);
            kept = xrealloc(kept, (size_t)cap * sizeof *kept);
        }
        if (!parse_change(b, &v, n, keep ? &kept[n] : &scratch, keep, err, errlen)) {
            free(kept);
            return false;
        }
        n++;
    }
    *count = n;
    if (n > keep_max) {
        free(kept);
        return true;
    }
    b->changes = arena_calloc(b->rq->arena, (size_t)(n ? n : 1), sizeof *b->changes);
    if (n)
        memcpy(b->changes, kept, (size_t)n * sizeof *b->changes);
    free(kept);
    b->n = (int)n;
    return true;
}

/* -------------------------------------------------------------------------- validation */

static char *trim_case(arena_t *a, const char *s, bool upper)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    char *o = arena_strndup(a, s, n);
    for (char *p = o; *p; p++)
        *p = (char)(upper ? toupper((unsigned char)*p) : tolower((unsigned char)*p));
    return o;
}

const char *sync_invalid_reason_name(enum invalid_reason r)
{
    static const char *const names[INVALID__COUNT] = {
        "fk_missing", "bad_payload", "precheck_error", "unregistered_table", "internal_error", "pk_taken"
    };
    return r >= 0 && r < INVALID__COUNT ? names[r] : "internal_error";
}

static void invalid(struct batch *b, struct change *c, enum invalid_reason reason,
                    const char *message, const char *details)
{
    c->status = ST_INVALID;
    c->reason = reason;
    c->message = message;
    c->details = details;
}

/* invalid with details {"error": message}, the shape of every reason but fk_missing and
 * unregistered_table */
static void invalid_error(struct batch *b, struct change *c, enum invalid_reason reason, const char *msg)
{
    strbuf_t d = STRBUF_ARENA(b->rq->arena);
    sb_puts(&d, "{\"error\":");
    sb_json_str(&d, msg);
    sb_putc(&d, '}');
    invalid(b, c, reason, msg, d.data);
}

static void bad_payload(struct batch *b, struct change *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void bad_payload(struct batch *b, struct change *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = arena_vprintf(b->rq->arena, fmt, ap);
    va_end(ap);
    invalid_error(b, c, INVALID_BAD_PAYLOAD, msg);
}

/* Which of the two keys a payload must not have are among its top-level keys (one pass). */
static void reserved_keys(const struct batch *b, const struct json_span *obj, bool *server_version, bool *deleted)
{
    struct json_iter it;
    struct json_span k, v;
    *server_version = *deleted = false;
    json_iter_init_skips(&it, obj, &b->skips);
    while (json_iter_member(&it, &k, &v)) {
        *server_version = *server_version || json_string_eq(&k, "server_version");
        *deleted = *deleted || json_string_eq(&k, "deleted");
    }
}

/* SPEC §4.1: normalise, then the nine rules in order; the first failure wins. */
static void validate(struct batch *b, struct change *c)
{
    arena_t *a = b->rq->arena;
    c->schema = trim_case(a, c->schema, false);
    if (!*c->schema)
        c->schema = "public";
    c->table = trim_case(a, c->table, false);
    c->op_text = trim_case(a, c->op_text, true);
    if (c->pk_raw && uuid_canonical(c->pk_raw, strlen(c->pk_raw), c->pk))
        c->pk_raw = c->pk;

    if (!sync_name_ok(c->schema))
        return bad_payload(b, c, "invalid schema name \"%s\": it must match ^[a-z0-9_]+$", c->schema);
    if (!sync_name_ok(c->table))
        return bad_payload(b, c, "invalid table name \"%s\": it must match ^[a-z0-9_]+$", c->table);
    c->tbl = sync_schema_find(b->rq->schema, c->schema, c->table);
    if (!c->tbl) {
        strbuf_t d = STRBUF_ARENA(a);
        sb_puts(&d, "{\"schema\":");
        sb_json_str(&d, c->schema);
        sb_puts(&d, ",\"table\":");
        sb_json_str(&d, c->table);
        sb_putc(&d, '}');
        invalid(b, c, INVALID_UNREGISTERED_TABLE,
                arena_printf(a, "table %s.%s is not registered for sync", c->schema, c->table),
                d.data);
        return;
    }
    if (strcmp(c->op_text, "INSERT") == 0)
        c->op = OP_INSERT;
    else if (strcmp(c->op_text, "UPDATE") == 0)
        c->op = OP_UPDATE;
    else if (strcmp(c->op_text, "DELETE") == 0)
        c->op = OP_DELETE;
    else
        return bad_payload(b, c, "invalid op \"%s\": it must be INSERT, UPDATE or DELETE", c->op_text);
    if (c->pk_raw != c->pk)
        return bad_payload(b, c, "pk %s%s%s is not a UUID", c->pk_raw ? "\"" : "",
                           c->pk_raw ? c->pk_raw : "(missing)", c->pk_raw ? "\"" : "");
    if (c->op != OP_DELETE) {
        if (!c->has_payload || c->payload.type != JSON_OBJECT)
            return bad_payload(b, c, "payload must be a JSON object for %s", c->op_text);
        if (c->payload.pg_unsafe)
            return bad_payload(b, c, "payload holds a value PostgreSQL cannot store (\\u0000, an unpaired "
                                     "surrogate or a number out of range)");
        if ((long)c->payload.len > b->rq->cfg->max_payload_bytes)
            return bad_payload(b, c, "payload is %zu bytes; the limit is %ld bytes", c->payload.len,
                               b->rq->cfg->max_payload_bytes);
        bool has_sv, has_deleted;
        reserved_keys(b, &c->payload, &has_sv, &has_deleted);
        if (has_sv)
            return bad_payload(b, c, "payload must not contain the key \"server_version\"");
        if (has_deleted)
            return bad_payload(b, c, "payload must not contain the key \"deleted\"");
    } else if (c->has_payload && c->payload.type != JSON_NULL) {
        return bad_payload(b, c, "payload must be absent or null for DELETE");
    }
}

/* -------------------------------------------------------------- foreign-key pre-check */

/* A payload value in the text form the parent column stores, or NULL when it cannot even be
 * compared with it (a uuid parent takes every UUID spelling and base64 of 16 bytes, which the
 * reference client uses for BLOB keys). */
static const char *fk_value(arena_t *a, const struct json_span *v, enum fk_value_kind kind)
{
    const char *text;
    if (v->type == JSON_STRING)
        text = json_string_dup(a, v);
    else if (v->type == JSON_NUMBER)
        text = arena_strndup(a, v->start, v->len);
    else
        return NULL;
    switch (kind) {
    case FK_VALUE_UUID: {
        if (v->type != JSON_STRING)
            return NULL;
        char *out = arena_alloc(a, UUID_STR_LEN + 1);
        if (uuid_canonical(text, strlen(text), out))
            return out;
        unsigned char bytes[64];
        size_t n, len = strlen(text);
        if (len <= 24 && base64_decode(text, len, BASE64_ANY | BASE64_PAD_OPTIONAL, bytes, &n) && n == 16) {
            uuid_format(bytes, out);
            return out;
        }
        return NULL;
    }
    case FK_VALUE_INT2:
    case FK_VALUE_INT4:
    case FK_VALUE_INT8: {
        const char *p = text;
        if (*p == '-')
            p++;
        if (!*p || strspn(p, "0123456789") != strlen(p) || strlen(p) > 19)
            return NULL;
        errno = 0;
        long long x = strtoll(text, NULL, 10);
        long long lo = kind == FK_VALUE_INT2 ? -32768 : kind == FK_VALUE_INT4 ? -2147483648LL : LLONG_MIN;
        long long hi = kind == FK_VALUE_INT2 ? 32767 : kind == FK_VALUE_INT4 ? 2147483647LL : LLONG_MAX;
        if (errno == ERANGE || x < lo || x > hi)
            return NULL;
        return arena_printf(a, "%lld", x);
    }
    case FK_VALUE_TEXT:
    case FK_VALUE_OTHER:
    default:
        return text;
    }
}

static const struct json_span *payload_member(const struct batch *b, const struct json_span *payload,
                                              const char *name, struct json_span *buf)
{
    struct json_iter it;
    struct json_span k;
    json_iter_init_skips(&it, payload, &b->skips);
    while (json_iter_member(&it, &k, buf))
        if (json_string_eq(&k, name))
            return buf;
    return NULL;
}

/* Collects the upsert's single-column FK values; a value that cannot be compared with the parent
 * column makes the change invalid/precheck_error here already. */
static void collect_refs(struct batch *b, struct change *c)
{
    const struct sync_schema *sch = b->rq->schema;
    if (c->op == OP_DELETE || c->tbl->n_fks == 0)
        return;
    c->refs = arena_calloc(b->rq->arena, (size_t)c->tbl->n_fks, sizeof *c->refs);
    for (int i = 0; i < c->tbl->n_fks; i++) {
        const struct sync_fk *fk = &sch->fks[c->tbl->fks[i]];
        struct json_span buf;
        const struct json_span *v = payload_member(b, &c->payload, fk->child_col, &buf);
        if (!v || v->type == JSON_NULL)
            continue;
        const char *value = NULL;
        char converted[512], why[256];
        int conv = 0;
        if (c->tbl->mat && (v->type == JSON_STRING || v->type == JSON_NUMBER)) {
            /* a plugin may know how its keys are spelled (e.g. a BLOB key) */
            const char *raw = v->type == JSON_STRING ? json_string_dup(b->rq->arena, v)
                                                     : arena_strndup(b->rq->arena, v->start, v->len);
            conv = materializer_convert_reference(c->tbl->mat, fk->child_col, raw, converted, sizeof converted,
                                                  why, sizeof why);
            if (conv == 1)
                value = arena_strdup(b->rq->arena, converted);
        }
        if (conv == 0)
            value = fk_value(b->rq->arena, v, fk->kind);
        if (!value) {
            char *msg = conv < 0 ? arena_strdup(b->rq->arena, why)
                                 : arena_printf(b->rq->arena, "value of %s cannot be compared with %s.%s.%s (%s)",
                                                fk->child_col, fk->parent_schema, fk->parent_table, fk->parent_col,
                                                fk->parent_type);
            invalid_error(b, c, INVALID_PRECHECK_ERROR, msg);
            return;
        }
        c->refs[c->nrefs].fk = c->tbl->fks[i];
        c->refs[c->nrefs].value = value;
        c->refs[c->nrefs].db = 'n';
        c->nrefs++;
    }
}

/* The value p, an upsert of fk's parent table, gives the parent column in the FK's text form (its
 * pk, or its payload's value of that column), NULL when none. */
static const char *parent_value(const struct batch *b, const struct sync_fk *fk, const struct change *p)
{
    if (fk->parent_is_pk)
        return p->pk;
    struct json_span buf;
    const struct json_span *v = payload_member(b, &p->payload, fk->parent_col, &buf);
    return v ? fk_value(b->rq->arena, v, fk->kind) : NULL;
}

struct classifier;
static int parent_set_of(const struct classifier *x, int oi, int ref, int *forward);

/* Is the parent row of reference i of the change at position oi created by an upsert of this
 * batch? Apply order puts parent tables first, so normally the parent was applied earlier. Within
 * one table, and among tables whose keys form a cycle, the parent may come later: it counts if it
 * is still to be applied (deferred constraints check the pair at commit), and classify() makes
 * sure it really was. The batch's upserts are indexed by the parent values they give
 * (classifier_init), so this costs no scan of the batch. */
static bool parent_in_batch(const struct classifier *x, const struct batch *b, int oi, const struct change *child,
                            int i)
{
    const struct sync_schema *sch = b->rq->schema;
    struct fkref *r = &child->refs[i];
    const struct sync_fk *fk = &sch->fks[r->fk];
    r->forward = -1;
    if (fk->parent < 0)
        return false;
    const struct sync_table *parent = &sch->tables[fk->parent];
    if (fk->parent_is_pk && child->tbl == parent && strcmp(child->pk, r->value) == 0)
        return true;    /* a row referring to itself */
    int forward;
    int first_applied = parent_set_of(x, oi, i, &forward);
    if (first_applied < oi)
        return true;    /* an upsert earlier in the batch gave that value and was applied */
    if (child->no_forward_parents || parent->rank < child->tbl->rank || forward < 0)
        return false;
    r->forward = forward;
    return true;
}

/* SPEC §6.3, evaluated in apply order so that a parent applied earlier in the batch counts. */
static bool precheck(const struct classifier *x, struct batch *b, int oi, struct change *c)
{
    if (c->nrefs == 0)
        return true;
    for (int i = 0; i < c->nrefs; i++)
        c->refs[i].forward = -1;
    const struct sync_schema *sch = b->rq->schema;
    strbuf_t missing = STRBUF_INIT;
    for (int i = 0; i < c->nrefs; i++) {
        struct fkref *r = &c->refs[i];
        const struct sync_fk *fk = &sch->fks[r->fk];
        if (r->db == 'b') {
            sb_free(&missing);
            char *msg = arena_printf(b->rq->arena, "value \"%s\" of %s cannot be compared with %s.%s.%s (%s)",
                                     r->value, fk->child_col, fk->parent_schema, fk->parent_table,
                                     fk->parent_col, fk->parent_type);
            invalid_error(b, c, INVALID_PRECHECK_ERROR, msg);
            return false;
        }
        if (r->db == 'y' || parent_in_batch(x, b, oi, c, i))
            continue;
        sb_putc(&missing, missing.len ? ',' : '[');
        sb_json_str(&missing, arena_printf(b->rq->arena, "%s.%s:%s", fk->parent_schema, fk->parent_table, r->value));
    }
    if (!missing.len)
        return true;
    sb_putc(&missing, ']');
    char *details = arena_printf(b->rq->arena, "{\"missing\":%s}", missing.data);
    invalid(b, c, INVALID_FK_MISSING, arena_printf(b->rq->arena, "missing parent rows: %s", missing.data),
            details);
    sb_free(&missing);
    return false;
}

/* ----------------------------------------------------------------------- keys and sets */

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return (h ^ 0xff) * 0x100000001b3ull;
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

static int key_of(struct batch *b, struct change *c)
{
    uint64_t h = hash_str(hash_str(hash_str(0xcbf29ce484222325ull, c->schema), c->table), c->pk);
    size_t mask = b->key_cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        int k = b->key_slots[i];
        if (k < 0) {
            k = b->nkeys++;
            b->key_slots[i] = k;
            struct rowkey *r = &b->keys[k];
            memset(r, 0, sizeof *r);
            r->schema = c->schema;
            r->table = c->table;
            r->pk = c->pk;
            r->image = -1;
            return k;
        }
        struct rowkey *r = &b->keys[k];
        if (strcmp(r->pk, c->pk) == 0 && strcmp(r->table, c->table) == 0 && strcmp(r->schema, c->schema) == 0)
            return k;
    }
}

static bool scid_insert(struct batch *b, long long scid)
{
    size_t mask = b->scid_cap - 1;
    for (size_t i = (size_t)((uint64_t)scid * 0x9E3779B97F4A7C15ull >> 20) & mask;; i = (i + 1) & mask) {
        if (!b->scid_used[i]) {
            b->scid_used[i] = true;
            b->scid_slots[i] = scid;
            return true;
        }
        if (b->scid_slots[i] == scid)
            return false;
    }
}

static bool scid_seen(const struct batch *b, long long scid)
{
    size_t mask = b->scid_cap - 1;
    for (size_t i = (size_t)((uint64_t)scid * 0x9E3779B97F4A7C15ull >> 20) & mask;; i = (i + 1) & mask) {
        if (!b->scid_used[i])
            return false;
        if (b->scid_slots[i] == scid)
            return true;
    }
}

/* ------------------------------------------------------------------------- apply order */

static const struct batch *sort_batch;

/* Upserts parents first, then deletes children first; request order within a table. */
static int apply_cmp(const void *x, const void *y)
{
    const struct change *a = &sort_batch->changes[*(const int *)x];
    const struct change *b = &sort_batch->changes[*(const int *)y];
    bool ad = a->op == OP_DELETE, bd = b->op == OP_DELETE;
    if (ad != bd)
        return ad ? 1 : -1;
    if (a->tbl->rank != b->tbl->rank)
        return ad ? b->tbl->rank - a->tbl->rank : a->tbl->rank - b->tbl->rank;
    return *(const int *)x - *(const int *)y;
}

/* ------------------------------------------------------------------------ array params */

static void array_begin(strbuf_t *sb)
{
    sb_putc(sb, '{');
}

static void array_ll(strbuf_t *sb, long long v)
{
    if (sb->len > 1)
        sb_putc(sb, ',');
    sb_put_i64(sb, v);
}

static void array_bool(strbuf_t *sb, bool v)
{
    if (sb->len > 1)
        sb_putc(sb, ',');
    sb_putc(sb, v ? 't' : 'f');
}

static const char *array_end(strbuf_t *sb)
{
    sb_putc(sb, '}');
    return sb->data;
}

/* ------------------------------------------------------------------------- statements */

/* The log rows of the three writes, in apply order (n), from their CTE input (user $1, device
 * $2). The change log's payload is json (migration 0005): the text jsonb prints, which the
 * download passes through; to_json prints it without the cast's second parse. */
#define SQL_LOG_CTE                                                                                   \
    " log AS ("                                                                                       \
    "  INSERT INTO sync.server_change_log (user_id, schema_name, table_name, op, pk_uuid, payload,"  \
    "                                      source_id, source_change_id, server_version)"             \
    "  SELECT $1, s, t, op, pk, to_json(payload), $2, scid, v FROM input ORDER BY n"                \
    "  RETURNING server_id),"

/* Prepared on every connection (sync_register_statements). */
const struct db_statement upload_statements[] = {
    { "sync_user_lock",
      /* two-key form: its lock space never meets the one-key locks of other applications */
      "SELECT pg_advisory_xact_lock(1870030713, hashtext($1))" },
    /* The two reads of every upload probe the unique index once per scid and once per key
     * (LATERAL ... LIMIT 1 cannot be flattened into a join): whatever the statistics say, the
     * cost follows the batch, not the rows the user or device already has. As plain joins,
     * statistics taken while the tables were small filtered every row of the device by scid
     * (11 ms instead of 0.5 for 200 scids against 6,250 rows), and the row versions were hash
     * joined against all of the user's meta rows (3 ms instead of 1.3). A scid repeated in $3
     * comes back repeated; the caller keeps a set. */
    { "sync_seen_scids",
      "SELECT x.scid FROM unnest($3::bigint[]) AS x(scid) "
      "CROSS JOIN LATERAL (SELECT 1 FROM sync.server_change_log l WHERE l.user_id = $1 AND l.source_id = $2 "
      "AND l.source_change_id = x.scid LIMIT 1) AS l" },
    { "sync_row_versions",
      "SELECT k.i, m.server_version, m.deleted "
      "FROM unnest($2::text[], $3::text[], $4::uuid[]) WITH ORDINALITY AS k(s, t, p, i) "
      "CROSS JOIN LATERAL (SELECT m.server_version, m.deleted FROM sync.sync_row_meta m "
      "WHERE m.user_id = $1 AND m.schema_name = k.s AND m.table_name = k.t AND m.pk_uuid = k.p LIMIT 1) AS m" },
    { "sync_live_rows",
      "SELECT k.i FROM unnest($2::uuid[]) WITH ORDINALITY AS k(p, i) "
      "CROSS JOIN LATERAL (SELECT 1 FROM sync.sync_row_meta m WHERE m.user_id = $1 AND m.schema_name = $3 "
      "AND m.table_name = $4 AND m.pk_uuid = k.p AND NOT m.deleted LIMIT 1) AS m" },
    /* Claims the keys ($2, $3, $4) for the user; sorted, so that two uploads racing for keys
     * wait for each other in one order and never deadlock. Returns the ordinals newly claimed. */
    { "sync_claim_rows",
      "WITH k AS (SELECT * FROM unnest($2::text[], $3::text[], $4::uuid[]) WITH ORDINALITY AS k(s, t, p, i)),"
      " ins AS ("
      "  INSERT INTO sync.row_owner (schema_name, table_name, pk_uuid, user_id)"
      "  SELECT s, t, p, $1 FROM k ORDER BY s, t, p"
      "  ON CONFLICT DO NOTHING RETURNING schema_name, table_name, pk_uuid)"
      "SELECT k.i FROM k JOIN ins ON ins.schema_name = k.s AND ins.table_name = k.t AND ins.pk_uuid = k.p" },
    { "sync_foreign_rows",
      "SELECT k.i FROM unnest($2::text[], $3::text[], $4::uuid[]) WITH ORDINALITY AS k(s, t, p, i) "
      "CROSS JOIN LATERAL (SELECT 1 FROM sync.row_owner o WHERE o.schema_name = k.s AND o.table_name = k.t "
      "AND o.pk_uuid = k.p AND o.user_id <> $1 LIMIT 1) AS o" },
    { "sync_unclaim_rows",
      "DELETE FROM sync.row_owner o USING unnest($2::text[], $3::text[], $4::uuid[]) AS k(s, t, p) "
      "WHERE o.user_id = $1 AND o.schema_name = k.s AND o.table_name = k.t AND o.pk_uuid = k.p" },
    /* a probe per key too, as sync_row_versions */
    { "sync_row_images",
      "SELECT k.i, s.payload::text "
      "FROM unnest($2::text[], $3::text[], $4::uuid[]) WITH ORDINALITY AS k(s, t, p, i) "
      "CROSS JOIN LATERAL (SELECT s.payload FROM sync.sync_state s WHERE s.user_id = $1 AND s.schema_name = k.s "
      "AND s.table_name = k.t AND s.pk_uuid = k.p LIMIT 1) AS s" },
    { "sync_write",
      "WITH input AS ("
      "  SELECT x.n, x.s, x.t, x.op, x.pk, x.scid, x.v, x.fin, x.del, x.mat,"
      "         CASE WHEN x.op = 'DELETE' THEN NULL ELSE $11::jsonb -> (x.n::int - 1) END AS payload"
      "  FROM unnest($3::text[], $4::text[], $5::text[], $6::uuid[], $7::bigint[], $8::bigint[],"
      "              $9::bool[], $10::bool[], $12::bool[])"
      "       WITH ORDINALITY AS x(s, t, op, pk, scid, v, fin, del, mat, n)),"
      SQL_LOG_CTE
      " meta AS ("
      "  INSERT INTO sync.sync_row_meta (user_id, schema_name, table_name, pk_uuid, server_version,"
      "                                  deleted, updated_at)"
      "  SELECT $1, s, t, pk, v, del, now() FROM input WHERE fin"
      "  ON CONFLICT (user_id, schema_name, table_name, pk_uuid) DO UPDATE"
      "  SET server_version = EXCLUDED.server_version, deleted = EXCLUDED.deleted,"
      "      updated_at = EXCLUDED.updated_at),"
      " state AS ("
      "  INSERT INTO sync.sync_state (user_id, schema_name, table_name, pk_uuid, payload)"
      "  SELECT $1, s, t, pk, payload FROM input WHERE fin AND NOT del"
      "  ON CONFLICT (user_id, schema_name, table_name, pk_uuid) DO UPDATE SET payload = EXCLUDED.payload),"
      " gone AS ("
      "  DELETE FROM sync.sync_state st USING input i"
      "  WHERE i.fin AND i.del AND st.user_id = $1 AND st.schema_name = i.s AND st.table_name = i.t"
      "    AND st.pk_uuid = i.pk),"
      /* a materialized row that moved on makes its older failures moot (an admin retry of one
       * would write stale data over the newer row) */
      " cleared AS ("
      "  DELETE FROM sync.materialize_failures f USING input i"
      "  WHERE i.fin AND i.mat AND f.user_id = $1 AND f.schema_name = i.s AND f.table_name = i.t"
      "    AND f.pk_uuid = i.pk AND f.attempted_version <= i.v)"
      "SELECT coalesce(max(server_id), 0) FROM log" },
    /* sync_write for a batch whose every written key round trip 1 found absent from
     * sync_row_meta (so from sync_state too) and whose tables are not materialized: plain
     * INSERTs, without ON CONFLICT's speculative insertion (two WAL records fewer per row) and
     * with a smaller plan. The user's advisory lock, held since before that read, keeps every
     * other upload of the user from creating those keys meanwhile; a key created anyway (a
     * writer outside oversyncd) fails the batch with unique_violation, nothing written. */
    { "sync_write_fresh",
      "WITH input AS ("
      "  SELECT x.n, x.s, x.t, x.op, x.pk, x.scid, x.v, x.fin, x.del,"
      "         CASE WHEN x.op = 'DELETE' THEN NULL ELSE $11::jsonb -> (x.n::int - 1) END AS payload"
      "  FROM unnest($3::text[], $4::text[], $5::text[], $6::uuid[], $7::bigint[], $8::bigint[],"
      "              $9::bool[], $10::bool[])"
      "       WITH ORDINALITY AS x(s, t, op, pk, scid, v, fin, del, n)),"
      SQL_LOG_CTE
      " meta AS ("
      "  INSERT INTO sync.sync_row_meta (user_id, schema_name, table_name, pk_uuid, server_version,"
      "                                  deleted, updated_at)"
      "  SELECT $1, s, t, pk, v, del, now() FROM input WHERE fin),"
      " state AS ("
      "  INSERT INTO sync.sync_state (user_id, schema_name, table_name, pk_uuid, payload)"
      "  SELECT $1, s, t, pk, payload FROM input WHERE fin AND NOT del)"
      "SELECT coalesce(max(server_id), 0) FROM log" },
    /* The optimistic write of a batch that only creates or updates rows (one_trip): every change
     * expects its row at version v - 1 (v = 1: absent), nothing read first. The change log's
     * unique (user, device, scid) fails a change uploaded before (a retry) with unique_violation;
     * a row not at the expected version is either left alone by the guarded DO UPDATE (no row
     * returned) or, absent when expected, inserted marked deleted (never committed): both make the
     * count short, and sync.upload_expectation_failed (migration 0006) fails the transaction with
     * OV001. Either way the caller rolls back and writes the batch the careful way. */
    { "sync_write_expected",
      "WITH input AS ("
      "  SELECT x.n, x.s, x.t, x.op, x.pk, x.scid, x.v, $9::jsonb -> (x.n::int - 1) AS payload"
      "  FROM unnest($3::text[], $4::text[], $5::text[], $6::uuid[], $7::bigint[], $8::bigint[])"
      "       WITH ORDINALITY AS x(s, t, op, pk, scid, v, n)),"
      SQL_LOG_CTE
      " meta AS ("
      "  INSERT INTO sync.sync_row_meta AS m (user_id, schema_name, table_name, pk_uuid, server_version,"
      "                                       deleted, updated_at)"
      "  SELECT $1, s, t, pk, v, v > 1, now() FROM input"
      "  ON CONFLICT (user_id, schema_name, table_name, pk_uuid) DO UPDATE"
      "  SET server_version = EXCLUDED.server_version, deleted = false, updated_at = EXCLUDED.updated_at"
      "  WHERE m.server_version = EXCLUDED.server_version - 1"
      "  RETURNING m.deleted),"
      " state AS ("
      "  INSERT INTO sync.sync_state (user_id, schema_name, table_name, pk_uuid, payload)"
      "  SELECT $1, s, t, pk, payload FROM input"
      "  ON CONFLICT (user_id, schema_name, table_name, pk_uuid) DO UPDATE SET payload = EXCLUDED.payload)"
      "SELECT CASE WHEN w.ok = cardinality($6::uuid[]) THEN l.top"
      "            ELSE sync.upload_expectation_failed(w.ok, cardinality($6::uuid[])) END"
      "  FROM (SELECT coalesce(max(server_id), 0) AS top FROM log) l,"
      "       (SELECT count(*) FILTER (WHERE NOT deleted) AS ok FROM meta) w" },
    { "sync_record_failures",
      "INSERT INTO sync.materialize_failures (user_id, schema_name, table_name, pk_uuid, attempted_version,"
      "                                      op, payload, error)"
      "SELECT $1, x.s, x.t, x.pk, x.v, x.op,"
      "       CASE WHEN x.op = 'DELETE' THEN NULL ELSE $8::jsonb -> (x.n::int - 1) END, x.e"
      "  FROM unnest($2::text[], $3::text[], $4::uuid[], $5::bigint[], $6::text[], $7::text[])"
      "       WITH ORDINALITY AS x(s, t, pk, v, op, e, n)"
      "ON CONFLICT (user_id, schema_name, table_name, pk_uuid, attempted_version) DO UPDATE"
      "   SET retry_count = sync.materialize_failures.retry_count + 1, error = EXCLUDED.error,"
      "       op = EXCLUDED.op, payload = EXCLUDED.payload" },
    { "sync_get_failure",
      "SELECT schema_name, table_name, pk_uuid, op, payload::text, retry_count"
      "  FROM sync.materialize_failures WHERE id = $1 AND user_id = $2" },
    { "sync_failure_done", "DELETE FROM sync.materialize_failures WHERE id = $1 AND user_id = $2" },
    { "sync_failure_retried",
      "UPDATE sync.materialize_failures SET retry_count = retry_count + 1, error = $3"
      " WHERE id = $1 AND user_id = $2" },
};
const size_t n_upload_statements = sizeof upload_statements / sizeof upload_statements[0];

static enum sync_outcome db_failure(struct batch *b, const PGresult *res, const char *stage, char *err,
                                    size_t errlen)
{
    return sync_db_failure(b->rq, res, stage, err, errlen);
}

/* --------------------------------------------------------------------- classification */

static void conflict(struct batch *b, struct change *c, const struct rowkey *r)
{
    c->status = ST_CONFLICT;
    c->row_version = r->exists ? r->version : 0;
    c->row_deleted = r->exists && r->deleted;
    c->row_image = !r->exists || r->deleted ? -2 : r->image;
}

/* The row's key belongs to another user (sync.row_owner): refused, and nothing of that user's row
 * is shown (no server_row), whatever the change's version. */
static void pk_taken(struct batch *b, struct change *c)
{
    invalid_error(b, c, INVALID_PK_TAKEN,
                  arena_printf(b->rq->arena, "pk %s of %s.%s is used by another user's row: choose another key",
                               c->pk, c->schema, c->table));
}

/* The batch is classified as one pass in apply order (classify_at: idempotency, FK pre-check,
 * version gate, each change seeing the row as the changes before it left it), repeated while a
 * change that counted on a parent later in the batch finds that parent was not applied: such a
 * change loses that allowance and the pass is made again. Each repetition is done incrementally:
 * only the changes whose inputs changed are classified again, in apply order, so the result is
 * the one the full passes would give, in time linear in the changes that actually move (a chain
 * of 10,000 forward references failing one by one took hours as full passes).
 *
 * What a change's classification reads, and so what makes it be classified again:
 *   - the row as the previous change of the same row left it (prev_key → after),
 *   - whether the scid was consumed by a change before it (prev_scid → seen_after),
 *   - per reference, whether an upsert before it giving the parent value was applied
 *     (parent_set.first_applied), and the first such upsert after it (fixed: ref_fwd),
 *   - its own no_forward_parents.
 * Positions are indexes into b->order. */

/* The upserts of the batch that give one value of one FK's parent column ("members"), and the
 * changes whose reference names that value ("children"); positions in ascending order. */
struct parent_set {
    int fk;
    const char *value;
    int *members;
    int nmembers;
    int *children;
    int nchildren;
    int first_applied;              /* lowest member position whose change is applied, INT_MAX none */
};

struct classifier {
    struct batch *b;
    int n;
    int *prev_key, *next_key;       /* the change before / after at the same row, -1 none */
    int *prev_scid, *next_scid;     /* the change before / after with the same scid, -1 none */
    struct rowkey *after;           /* the row as each change leaves it (exists, version, deleted, image) */
    bool *seen_after;               /* the scid is consumed once each change is classified */
    struct parent_set *sets;
    int nsets;
    int *ref_base;                  /* each position's first reference in ref_set and ref_fwd */
    int *ref_set;                   /* the parent set of each reference, -1 none */
    int *ref_fwd;                   /* the set's first member after the position, -1 none */
    int *member_base, *member_of;   /* the sets each position is a member of */
    int *referrer_base, *referrers; /* the positions whose some ref_fwd is this position */
    int *heap;                      /* positions to classify again, least first */
    int nheap;
    bool *queued;
    int *cand;                      /* positions to verify: classified again, or their forward parent was */
    int ncand;
    bool *is_cand;
};

static int parent_set_of(const struct classifier *x, int oi, int ref, int *forward)
{
    int s = x->ref_set[x->ref_base[oi] + ref];
    *forward = s < 0 ? -1 : x->ref_fwd[x->ref_base[oi] + ref];
    return s < 0 ? INT_MAX : x->sets[s].first_applied;
}

/* Index of the first element of v[0..n) greater than key (v ascending). */
static int first_above(const int *v, int n, int key)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (v[mid] <= key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int *positions(arena_t *a, size_t n, int fill)
{
    int *v = arena_alloc(a, (n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = fill;
    return v;
}

/* Counting sort of (group, position) pairs, kept stable, into one array with group offsets. */
static void group_pairs(arena_t *a, const int *group, const int *pos, int npairs, int ngroups, int **base_out,
                        int **items_out)
{
    int *base = positions(a, (size_t)ngroups + 1, 0);
    int *items = positions(a, (size_t)npairs, 0);
    for (int i = 0; i < npairs; i++)
        base[group[i] + 1]++;
    for (int g = 0; g < ngroups; g++)
        base[g + 1] += base[g];
    int *fill = positions(a, (size_t)ngroups, 0);
    for (int i = 0; i < npairs; i++)
        items[base[group[i]] + fill[group[i]]++] = pos[i];
    *base_out = base;
    *items_out = items;
}

static uint64_t hash_int(uint64_t h, long long v)
{
    return ((uint64_t)v ^ h) * 0x9E3779B97F4A7C15ull;
}

/* Links each position with the previous and next one of the same scid. */
static void link_scids(struct classifier *x, arena_t *a)
{
    struct batch *b = x->b;
    size_t cap = pow2_at_least((size_t)x->n * 2), mask = cap - 1;
    int *slot = positions(a, cap, -1);      /* the last position of each scid seen */
    for (int oi = 0; oi < x->n; oi++) {
        long long scid = b->changes[b->order[oi]].scid;
        size_t i = hash_int(0, scid) >> 20 & mask;
        while (slot[i] >= 0 && b->changes[b->order[slot[i]]].scid != scid)
            i = (i + 1) & mask;
        x->prev_scid[oi] = slot[i];
        if (slot[i] >= 0)
            x->next_scid[slot[i]] = oi;
        slot[i] = oi;
    }
}

/* The slot of (fk, value) in the hash of parent sets: the set's, or the empty one (-1) it would take. */
static size_t set_slot(const struct classifier *x, const int *slot, size_t mask, int fk, const char *value)
{
    size_t i = hash_str(hash_int(0xcbf29ce484222325ull, fk), value) & mask;
    while (slot[i] >= 0 && (x->sets[slot[i]].fk != fk || strcmp(x->sets[slot[i]].value, value) != 0))
        i = (i + 1) & mask;
    return i;
}

/* The parent sets: every upsert (not failed to materialize) of a parent table of an FK the batch's
 * references use, by the value it gives; then every reference's set and forward parent. */
static void index_parents(struct classifier *x, arena_t *a)
{
    struct batch *b = x->b;
    const struct sync_schema *sch = b->rq->schema;
    int nfk = sch->n_fks;
    bool *used = arena_calloc(a, (size_t)(nfk ? nfk : 1), sizeof *used);
    int *of_table = positions(a, (size_t)sch->n_tables, 0);
    int nrefs = 0;
    for (int oi = 0; oi < x->n; oi++) {
        const struct change *c = &b->changes[b->order[oi]];
        x->ref_base[oi] = nrefs;
        nrefs += c->nrefs;
        for (int i = 0; i < c->nrefs; i++)
            used[c->refs[i].fk] |= sch->fks[c->refs[i].fk].parent >= 0;
        of_table[c->tbl - sch->tables]++;
    }
    x->ref_base[x->n] = nrefs;
    int maxmembers = 0;
    for (int f = 0; f < nfk; f++)
        if (used[f])
            maxmembers += of_table[sch->fks[f].parent];

    /* members, and the hash of (fk, value) → set */
    size_t cap = pow2_at_least((size_t)maxmembers * 2), mask = cap - 1;
    int *slot = positions(a, cap, -1);
    x->sets = arena_alloc(a, (size_t)(maxmembers ? maxmembers : 1) * sizeof *x->sets);
    int *mset = positions(a, (size_t)maxmembers, 0), *mpos = positions(a, (size_t)maxmembers, 0), nm = 0;
    for (int f = 0; f < nfk; f++) {
        if (!used[f])
            continue;
        const struct sync_fk *fk = &sch->fks[f];
        for (int oi = 0; oi < x->n; oi++) {
            const struct change *p = &b->changes[b->order[oi]];
            if (p->tbl != &sch->tables[fk->parent] || p->op == OP_DELETE || p->status == ST_MATERIALIZE_ERROR)
                continue;
            const char *value = parent_value(b, fk, p);
            if (!value)
                continue;
            size_t i = set_slot(x, slot, mask, f, value);
            if (slot[i] < 0) {
                slot[i] = x->nsets;
                x->sets[x->nsets++] = (struct parent_set){ .fk = f, .value = value, .first_applied = INT_MAX };
            }
            mset[nm] = slot[i];
            mpos[nm++] = oi;
        }
    }
    int *base, *items;
    group_pairs(a, mset, mpos, nm, x->nsets, &base, &items);
    for (int s = 0; s < x->nsets; s++) {
        x->sets[s].members = items + base[s];
        x->sets[s].nmembers = base[s + 1] - base[s];
    }
    /* the sets of each position, for when its status changes */
    group_pairs(a, mpos, mset, nm, x->n, &x->member_base, &x->member_of);

    /* each reference's set, forward parent and the reverse of both */
    x->ref_set = positions(a, (size_t)nrefs, -1);
    x->ref_fwd = positions(a, (size_t)nrefs, -1);
    int *cset = positions(a, (size_t)nrefs, 0), *cpos = positions(a, (size_t)nrefs, 0), nc = 0;
    int *fq = positions(a, (size_t)nrefs, 0), *fpos = positions(a, (size_t)nrefs, 0), nf = 0;
    for (int oi = 0; oi < x->n; oi++) {
        const struct change *c = &b->changes[b->order[oi]];
        for (int i = 0; i < c->nrefs && x->nsets; i++) {
            const struct fkref *r = &c->refs[i];
            if (!used[r->fk])
                continue;
            int s = slot[set_slot(x, slot, mask, r->fk, r->value)];
            if (s < 0)
                continue;
            const struct parent_set *ps = &x->sets[s];
            int k = first_above(ps->members, ps->nmembers, oi);
            x->ref_set[x->ref_base[oi] + i] = s;
            cset[nc] = s;
            cpos[nc++] = oi;
            if (k < ps->nmembers) {
                x->ref_fwd[x->ref_base[oi] + i] = ps->members[k];
                fq[nf] = ps->members[k];
                fpos[nf++] = oi;
            }
        }
    }
    group_pairs(a, cset, cpos, nc, x->nsets, &base, &items);
    for (int s = 0; s < x->nsets; s++) {
        x->sets[s].children = items + base[s];
        x->sets[s].nchildren = base[s + 1] - base[s];
    }
    group_pairs(a, fq, fpos, nf, x->n, &x->referrer_base, &x->referrers);
}

static void classifier_init(struct classifier *x, struct batch *b)
{
    arena_t *a = b->rq->arena;
    memset(x, 0, sizeof *x);
    x->b = b;
    x->n = b->norder;
    size_t n = (size_t)x->n;
    x->prev_key = positions(a, n, -1);
    x->next_key = positions(a, n, -1);
    x->prev_scid = positions(a, n, -1);
    x->next_scid = positions(a, n, -1);
    x->after = arena_calloc(a, n ? n : 1, sizeof *x->after);
    x->seen_after = arena_calloc(a, n ? n : 1, sizeof *x->seen_after);
    x->ref_base = positions(a, n + 1, 0);
    x->heap = positions(a, n, 0);
    x->queued = arena_calloc(a, n ? n : 1, sizeof *x->queued);
    x->cand = positions(a, n, 0);
    x->is_cand = arena_calloc(a, n ? n : 1, sizeof *x->is_cand);
    int *last = positions(a, (size_t)b->nkeys, -1);
    for (int oi = 0; oi < x->n; oi++) {
        int k = b->changes[b->order[oi]].key;
        x->prev_key[oi] = last[k];
        if (last[k] >= 0)
            x->next_key[last[k]] = oi;
        last[k] = oi;
    }
    link_scids(x, a);
    index_parents(x, a);
}

static void queue(struct classifier *x, int oi)
{
    if (x->queued[oi])
        return;
    x->queued[oi] = true;
    int i = x->nheap++;
    while (i > 0 && x->heap[(i - 1) / 2] > oi) {
        x->heap[i] = x->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    x->heap[i] = oi;
}

static int unqueue(struct classifier *x)
{
    int top = x->heap[0], last = x->heap[--x->nheap], i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= x->nheap)
            break;
        if (c + 1 < x->nheap && x->heap[c + 1] < x->heap[c])
            c++;
        if (x->heap[c] >= last)
            break;
        x->heap[i] = x->heap[c];
        i = c;
    }
    if (x->nheap)
        x->heap[i] = last;
    x->queued[top] = false;
    return top;
}

static void candidate(struct classifier *x, int oi)
{
    if (!x->is_cand[oi]) {
        x->is_cand[oi] = true;
        x->cand[x->ncand++] = oi;
    }
}

/* One step of the pass: the change at position oi, from what the changes before it left. */
static void classify_at(struct classifier *x, int oi)
{
    struct batch *b = x->b;
    struct change *c = &b->changes[b->order[oi]];
    struct rowkey r;
    if (x->prev_key[oi] >= 0) {
        r = x->after[x->prev_key[oi]];
    } else {
        /* the row as round trip 1 read it */
        r = b->keys[c->key];
        r.exists = r.db_exists;
        r.version = r.db_version;
        r.deleted = r.db_deleted;
        r.image = -1;
    }
    bool seen = x->prev_scid[oi] >= 0 ? x->seen_after[x->prev_scid[oi]] : scid_seen(b, c->scid);
    x->after[oi] = r;
    x->seen_after[oi] = seen;
    /* a change that failed to materialize did not happen; what follows it is judged without it */
    if (c->status == ST_MATERIALIZE_ERROR)
        return;
    c->status = ST_PENDING;
    c->message = c->details = NULL;
    c->new_version = 0;
    c->logged = c->final = false;
    c->row_image = -2;
    /* SPEC §4.3: a change that landed is answered applied even when its parent is gone since */
    if (seen) {
        c->status = ST_IDEMPOTENT;
        return;
    }
    /* another user's row: refused whatever the op and version (fixed by round trip 1) */
    if (b->keys[c->key].foreign) {
        pk_taken(b, c);
        return;
    }
    if (c->op != OP_DELETE && !precheck(x, b, oi, c))
        return;
    long long current = r.exists ? r.version : 0;
    if (c->at_current_version)
        c->sv = current;
    if (c->op == OP_DELETE) {
        if (!r.exists) {
            /* never seen: nothing to delete, nothing to log */
            c->status = ST_IDEMPOTENT;
            return;
        }
        if (c->sv != current) {
            conflict(b, c, &r);
            return;
        }
        r.deleted = true;
    } else {
        if (c->sv != current) {
            conflict(b, c, &r);
            return;
        }
        r.deleted = false;
        r.exists = true;
        r.image = b->order[oi];
    }
    r.version = current + 1;
    c->new_version = r.version;
    c->status = ST_APPLIED;
    c->logged = true;
    x->after[oi] = r;
    x->seen_after[oi] = true;
}

/* The change at position oi stopped or started being applied: the lowest applied member of its
 * parent sets may move, and the children between the old and the new one see another answer. */
static void parent_moved(struct classifier *x, int s, int oi, bool applied)
{
    struct parent_set *p = &x->sets[s];
    int was = p->first_applied, now = was;
    if (applied && oi < was) {
        now = oi;
    } else if (!applied && oi == was) {
        now = INT_MAX;
        for (int j = first_above(p->members, p->nmembers, oi); j < p->nmembers && now == INT_MAX; j++)
            if (x->b->changes[x->b->order[p->members[j]]].status == ST_APPLIED)
                now = p->members[j];
    }
    if (now == was)
        return;
    p->first_applied = now;
    int lo = now < was ? now : was, hi = now < was ? was : now;
    for (int j = first_above(p->children, p->nchildren, lo); j < p->nchildren && p->children[j] <= hi; j++)
        queue(x, p->children[j]);
}

/* Classifies position oi again and queues what depends on its outcome (always later positions). */
static void reclassify(struct classifier *x, int oi)
{
    const struct change *c = &x->b->changes[x->b->order[oi]];
    struct rowkey row = x->after[oi];
    bool seen = x->seen_after[oi], applied = c->status == ST_APPLIED;
    classify_at(x, oi);
    candidate(x, oi);
    const struct rowkey *now = &x->after[oi];
    if (x->next_key[oi] >= 0 && (row.exists != now->exists || row.version != now->version ||
                                 row.deleted != now->deleted || row.image != now->image))
        queue(x, x->next_key[oi]);
    if (x->next_scid[oi] >= 0 && seen != x->seen_after[oi])
        queue(x, x->next_scid[oi]);
    if (applied == (c->status == ST_APPLIED))
        return;
    for (int j = x->referrer_base[oi]; j < x->referrer_base[oi + 1]; j++)
        candidate(x, x->referrers[j]);
    for (int j = x->member_base[oi]; j < x->member_base[oi + 1]; j++)
        parent_moved(x, x->member_of[j], oi, !applied);
}

/* A change that counted on a parent later in the batch which then was not applied loses that
 * allowance; all such changes of one pass at once, as a full pass would find them. true when any. */
static bool verify_forward_parents(struct classifier *x)
{
    struct batch *b = x->b;
    bool again = false;
    for (int j = 0; j < x->ncand; j++) {
        int oi = x->cand[j];
        x->is_cand[oi] = false;
        struct change *c = &b->changes[b->order[oi]];
        if (c->status != ST_APPLIED)
            continue;
        for (int i = 0; i < c->nrefs; i++) {
            int f = c->refs[i].forward;
            if (f >= 0 && b->changes[b->order[f]].status != ST_APPLIED) {
                c->no_forward_parents = true;
                queue(x, oi);
                again = true;
            }
        }
    }
    x->ncand = 0;
    return again;
}

static void classify(struct batch *b)
{
    /* the scids round trip 1 found in the log; those of the batch are chained (link_scids) */
    memset(b->scid_used, 0, b->scid_cap * sizeof *b->scid_used);
    for (int i = 0; i < b->n_db_scids; i++)
        scid_insert(b, b->db_scids[i]);
    /* every change is judged afresh (after a materializer failure too), so none counts as applied
     * before its turn */
    for (int oi = 0; oi < b->norder; oi++)
        if (b->changes[b->order[oi]].status != ST_MATERIALIZE_ERROR)
            b->changes[b->order[oi]].status = ST_PENDING;
    struct classifier x;
    classifier_init(&x, b);
    for (int oi = 0; oi < x.n; oi++)
        queue(&x, oi);
    do {
        while (x.nheap)
            reclassify(&x, unqueue(&x));
    } while (verify_forward_parents(&x));
    /* the last logged change of each key carries the row's final state */
    bool *done = arena_calloc(b->rq->arena, (size_t)(b->nkeys ? b->nkeys : 1), sizeof *done);
    for (int oi = b->norder - 1; oi >= 0; oi--) {
        struct change *c = &b->changes[b->order[oi]];
        if (c->logged && !done[c->key]) {
            c->final = true;
            done[c->key] = true;
        }
    }
}

/* ----------------------------------------------------------------------------- answer */

static void write_status(struct batch *b, strbuf_t *out, const struct change *c)
{
    sb_puts(out, "{\"source_change_id\":");
    sb_put_i64(out, c->scid);
    sb_puts(out, ",\"status\":");
    switch (c->status) {
    case ST_APPLIED:
        sb_puts(out, "\"applied\",\"new_server_version\":");
        sb_put_i64(out, c->new_version);
        sb_putc(out, '}');
        return;
    case ST_IDEMPOTENT:
        sb_puts(out, "\"applied\"}");
        return;
    case ST_CONFLICT: {
        sb_puts(out, "\"conflict\",\"server_row\":{\"schema_name\":");
        sb_json_str(out, c->schema);
        sb_puts(out, ",\"table_name\":");
        sb_json_str(out, c->table);
        sb_puts(out, ",\"id\":");
        sb_json_str(out, c->pk);
        sb_puts(out, ",\"server_version\":");
        sb_put_i64(out, c->row_version);
        sb_puts(out, c->row_deleted ? ",\"deleted\":true,\"payload\":" : ",\"deleted\":false,\"payload\":");
        if (c->row_image >= 0) {
            const struct json_span *p = &b->changes[c->row_image].payload;
            sb_append(out, p->start, p->len);
        } else if (c->row_image == -1 && b->keys[c->key].db_payload) {
            sb_puts(out, b->keys[c->key].db_payload);
        } else {
            sb_puts(out, "null");
        }
        sb_puts(out, "}}");
        return;
    }
    case ST_MATERIALIZE_ERROR:
        sb_puts(out, "\"materialize_error\",\"new_server_version\":");
        sb_put_i64(out, c->new_version);
        sb_puts(out, ",\"message\":");
        sb_json_str(out, c->message);
        sb_putc(out, '}');
        return;
    case ST_INVALID:
    case ST_PENDING:
    default: {
        sb_puts(out, "\"invalid\"");
        if (c->message && c->reason != INVALID_FK_MISSING) {
            sb_puts(out, ",\"message\":");
            sb_json_str(out, c->message);
        }
        sb_puts(out, ",\"invalid\":{\"reason\":");
        sb_json_str(out, sync_invalid_reason_name(c->status == ST_INVALID ? c->reason : INVALID_INTERNAL_ERROR));
        sb_puts(out, ",\"details\":");
        sb_puts(out, c->details ? c->details : "{}");
        sb_puts(out, "}}");
        return;
    }
    }
}

static void write_answer(struct batch *b, strbuf_t *out, long long highest, struct upload_counts *counts)
{
    bool accepted = true;
    memset(counts, 0, sizeof *counts);
    counts->materialize_fallbacks = (unsigned long)b->mat_fallbacks;
    counts->one_trip = b->one_trip > 0;
    counts->rewrites = b->one_trip < 0;
    for (int i = 0; i < b->n; i++) {
        const struct change *c = &b->changes[i];
        if (c->status == ST_INVALID && c->reason == INVALID_UNREGISTERED_TABLE)
            accepted = false;
        switch (c->status) {
        case ST_APPLIED: counts->applied++; break;
        case ST_CONFLICT: counts->conflicts++; break;
        case ST_MATERIALIZE_ERROR: counts->materialize_errors++; break;
        case ST_INVALID: counts->invalid[c->reason]++; break;
        default: break;
        }
    }
    sb_puts(out, accepted ? "{\"accepted\":true,\"highest_server_seq\":" : "{\"accepted\":false,\"highest_server_seq\":");
    sb_put_i64(out, highest);
    sb_puts(out, ",\"statuses\":[");
    for (int i = 0; i < b->n; i++) {
        if (i)
            sb_putc(out, ',');
        write_status(b, out, &b->changes[i]);
    }
    sb_puts(out, "]}");
}

/* ------------------------------------------------------------------------- database */

static enum sync_outcome highest_only(struct batch *b, long long *highest, char *err, size_t errlen)
{
    const char *vals[1] = { b->rq->who->user };
    PGresult *r = db_result_in(b->rq->arena, PQexecParams(b->rq->conn, sql_highest, 1, NULL, vals, NULL, NULL, 0));
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return db_failure(b, r, "reading the highest server id", err, errlen);
    *highest = atoll(PQgetvalue(r, 0, 0));
    return SYNC_OK;
}

/* Keys (schema[], table[], pk[]) of the rows the batch touches, for the row queries. */
static void key_arrays(struct batch *b, const char **schemas, const char **tables, const char **pks,
                       bool (*want)(const struct batch *, int))
{
    arena_t *a = b->rq->arena;
    strbuf_t s = STRBUF_ARENA(a), t = STRBUF_ARENA(a), p = STRBUF_ARENA(a);
    array_begin(&s);
    array_begin(&t);
    array_begin(&p);
    for (int k = 0; k < b->nkeys; k++) {
        if (want && !want(b, k))
            continue;
        sb_pg_array_str(&s, b->keys[k].schema);
        sb_pg_array_str(&t, b->keys[k].table);
        sb_pg_array_str(&p, b->keys[k].pk);
    }
    *schemas = array_end(&s);
    *tables = array_end(&t);
    *pks = array_end(&p);
}

static bool key_guarded(const struct batch *b, int k)
{
    return b->keys[k].guarded;
}

/* keys this upload may create: claimed in round trip 1 */
static bool key_to_claim(const struct batch *b, int k)
{
    return b->keys[k].guarded && b->keys[k].upserted;
}

/* claimed, yet no change of the batch was written: the claim is given back */
static bool key_unused_claim(const struct batch *b, int k)
{
    return b->keys[k].claimed && !b->keys[k].written;
}

/* Marks the keys whose ordinals (1-based, among the keys want selects) res returns. */
static void mark_keys(struct batch *b, const PGresult *res, bool (*want)(const struct batch *, int),
                      bool claimed)
{
    int *map = arena_calloc(b->rq->arena, (size_t)(b->nkeys ? b->nkeys : 1), sizeof *map);
    int m = 0;
    for (int k = 0; k < b->nkeys; k++)
        if (want(b, k))
            map[m++] = k;
    for (int i = 0; i < PQntuples(res); i++) {
        int j = atoi(PQgetvalue(res, i, 0)) - 1;
        if (j < 0 || j >= m)
            continue;
        if (claimed)
            b->keys[map[j]].claimed = true;
        else
            b->keys[map[j]].foreign = true;
    }
}

/* The FK queries of round trip 1: for each foreign key the batch uses, which of its values exist
 * in the parent table (and, for a registered parent kept only in the sidecar — materializer
 * none — which are live rows of this user there). */
struct fk_query {
    int fk;
    struct fkref **refs;
    int nrefs;
    int slot_exists;
    int slot_sidecar;               /* -1 when not asked */
    const char *values;
};

static struct fk_query *plan_fk_queries(struct batch *b, int *nq)
{
    const struct sync_schema *sch = b->rq->schema;
    struct fk_query *q = arena_calloc(b->rq->arena, (size_t)(sch->n_fks ? sch->n_fks : 1), sizeof *q);
    *nq = 0;
    for (int f = 0; f < sch->n_fks; f++) {
        int count = 0;
        for (int oi = 0; oi < b->norder; oi++) {
            const struct change *c = &b->changes[b->order[oi]];
            for (int i = 0; i < c->nrefs; i++)
                count += c->refs[i].fk == f;
        }
        if (!count)
            continue;
        struct fk_query *fq = &q[(*nq)++];
        fq->fk = f;
        fq->refs = arena_calloc(b->rq->arena, (size_t)count, sizeof *fq->refs);
        fq->slot_sidecar = -1;
        strbuf_t vals = STRBUF_ARENA(b->rq->arena);
        array_begin(&vals);
        for (int oi = 0; oi < b->norder; oi++) {
            struct change *c = &b->changes[b->order[oi]];
            for (int i = 0; i < c->nrefs; i++)
                if (c->refs[i].fk == f) {
                    fq->refs[fq->nrefs++] = &c->refs[i];
                    sb_pg_array_str(&vals, c->refs[i].value);
                }
        }
        fq->values = array_end(&vals);
    }
    return q;
}

static bool sidecar_parent(const struct sync_schema *sch, const struct sync_fk *fk)
{
    return fk->parent >= 0 && fk->parent_is_pk && fk->kind == FK_VALUE_UUID &&
           sch->tables[fk->parent].conf->materializer == MATERIALIZER_NONE;
}

/* Whether some change of the batch is of a materialized table (applied_only: and is applied, i.e.
 * has something to materialize). */
static bool batch_materializes(const struct batch *b, bool applied_only)
{
    for (int oi = 0; oi < b->norder; oi++) {
        const struct change *c = &b->changes[b->order[oi]];
        if (c->tbl->mat && (!applied_only || c->status == ST_APPLIED))
            return true;
    }
    return false;
}

/* Queues the opening of every upload transaction: BEGIN, the lock timeout, SET CONSTRAINTS ALL
 * DEFERRED when the batch writes business tables (deferred), generic plans when its statements'
 * plans do not depend on the values (generic), and the user's lock, which every writer of a
 * user's rows holds before it reads or writes them. The statements queued after it start at
 * p->n. */
static bool begin_user_transaction(struct pipeline *p, const struct sync_request *rq, bool deferred, bool generic)
{
    char lock_timeout[32];
    snprintf(lock_timeout, sizeof lock_timeout, "%ldms", rq->cfg->lock_timeout_ms);
    const char *v_lt[1] = { lock_timeout };   /* pipeline_add sends at once: the values are copied */
    const char *v_user[1] = { rq->who->user };
    return pipeline_add(p, NULL, "BEGIN", 0, NULL) &&
           pipeline_add(p, NULL, "SELECT set_config('lock_timeout', $1, true)", 1, v_lt) &&
           (!deferred || pipeline_add(p, NULL, "SET CONSTRAINTS ALL DEFERRED", 0, NULL)) &&
           (!generic || pipeline_add(p, NULL, "SET LOCAL plan_cache_mode = auto", 0, NULL)) &&
           pipeline_add(p, "sync_user_lock", NULL, 1, v_user);
}

static enum sync_outcome read_state(struct batch *b, long long *prev_highest, char *err, size_t errlen)
{
    const struct sync_request *rq = b->rq;
    strbuf_t scids = STRBUF_ARENA(rq->arena);
    array_begin(&scids);
    for (int i = 0; i < b->norder; i++)
        array_ll(&scids, b->changes[b->order[i]].scid);
    const char *scid_arr = array_end(&scids);
    const char *ks, *kt, *kp, *cs, *ct, *cp, *gs, *gt, *gp;
    key_arrays(b, &ks, &kt, &kp, NULL);
    key_arrays(b, &cs, &ct, &cp, key_to_claim);
    key_arrays(b, &gs, &gt, &gp, key_guarded);
    bool guarded = false;
    for (int k = 0; k < b->nkeys && !guarded; k++)
        guarded = b->keys[k].guarded;
    /* deferred constraints are the business tables' (the sidecar has none): a batch that
     * materializes nothing writes none of them */
    bool deferred = batch_materializes(b, false);
    int nq = 0;
    struct fk_query *fq = plan_fk_queries(b, &nq);
    /* The session plans every statement for its values (force_custom_plan, src/db/db.c) for the
     * materializers' and the page query's sake. A batch without materialized tables and without
     * foreign keys runs only statements whose plan does not depend on the values (the
     * per-key probes above, the INSERTs from arrays; sql_highest and the FK lookups are sent
     * unnamed and planned each time anyway): for it PostgreSQL may keep a generic plan, until
     * the transaction ends. */
    bool generic = !deferred && nq == 0;

    struct pipeline p;
    pipeline_begin(&p, rq->conn);
    const char *v_user[1] = { rq->who->user };
    const char *v_seen[3] = { rq->who->user, rq->who->device, scid_arr };
    const char *v_rows[4] = { rq->who->user, ks, kt, kp };
    bool sent = begin_user_transaction(&p, rq, deferred, generic);
    int r0 = p.n;   /* the reads' results */
    sent = sent && pipeline_add(&p, "sync_seen_scids", NULL, 3, v_seen) &&
           pipeline_add(&p, "sync_row_versions", NULL, 4, v_rows) && pipeline_add(&p, NULL, sql_highest, 1, v_user);
    /* row ownership: claim what the batch may create, then see which keys are another user's */
    int slot_claim = -1, slot_foreign = -1;
    if (sent && guarded) {
        const char *v_claim[4] = { rq->who->user, cs, ct, cp };
        const char *v_foreign[4] = { rq->who->user, gs, gt, gp };
        slot_claim = p.n;
        slot_foreign = p.n + 1;
        sent = pipeline_add(&p, "sync_claim_rows", NULL, 4, v_claim) &&
               pipeline_add(&p, "sync_foreign_rows", NULL, 4, v_foreign);
    }
    const struct sync_schema *sch = rq->schema;
    for (int i = 0; sent && i < nq; i++) {
        const struct sync_fk *fk = &sch->fks[fq[i].fk];
        const char *v_exists[1] = { fq[i].values };
        fq[i].slot_exists = p.n;
        sent = pipeline_add(&p, NULL, fk->exists_sql, 1, v_exists);
        if (sent && sidecar_parent(sch, fk)) {
            const char *v_side[4] = { rq->who->user, fq[i].values, fk->parent_schema, fk->parent_table };
            fq[i].slot_sidecar = p.n;
            sent = pipeline_add(&p, "sync_live_rows", NULL, 4, v_side);
        }
    }
    /* run even when a statement could not be sent: that leaves pipeline mode */
    bool ran = pipeline_run(&p);
    if (!sent || !ran) {
        enum sync_outcome o = db_failure(b, pipeline_error(&p), "reading row versions", err, errlen);
        pipeline_clear(&p);
        return o;
    }
    PGresult *seen = p.res[r0], *rows = p.res[r0 + 1], *hi = p.res[r0 + 2];
    b->n_db_scids = PQntuples(seen);
    b->db_scids = arena_calloc(rq->arena, (size_t)(b->n_db_scids ? b->n_db_scids : 1), sizeof *b->db_scids);
    for (int i = 0; i < b->n_db_scids; i++)
        b->db_scids[i] = atoll(PQgetvalue(seen, i, 0));
    for (int i = 0; i < PQntuples(rows); i++) {
        int k = atoi(PQgetvalue(rows, i, 0)) - 1;
        if (k < 0 || k >= b->nkeys)
            continue;
        b->keys[k].db_exists = true;
        b->keys[k].db_version = atoll(PQgetvalue(rows, i, 1));
        b->keys[k].db_deleted = PQgetvalue(rows, i, 2)[0] == 't';
    }
    *prev_highest = atoll(PQgetvalue(hi, 0, 0));
    if (slot_claim >= 0) {
        mark_keys(b, p.res[slot_claim], key_to_claim, true);
        mark_keys(b, p.res[slot_foreign], key_guarded, false);
    }
    for (int i = 0; i < nq; i++) {
        PGresult *ex = p.res[fq[i].slot_exists];
        for (int row = 0; row < PQntuples(ex); row++) {
            int j = atoi(PQgetvalue(ex, row, 0)) - 1;
            if (j >= 0 && j < fq[i].nrefs)
                fq[i].refs[j]->db = PQgetvalue(ex, row, 1)[0];
        }
        if (fq[i].slot_sidecar < 0)
            continue;
        PGresult *side = p.res[fq[i].slot_sidecar];
        for (int row = 0; row < PQntuples(side); row++) {
            int j = atoi(PQgetvalue(side, row, 0)) - 1;
            if (j >= 0 && j < fq[i].nrefs && fq[i].refs[j]->db == 'n')
                fq[i].refs[j]->db = 'y';
        }
    }
    pipeline_clear(&p);
    return SYNC_OK;
}

/* ---------------------------------------------------------------------- materialization */

#define OPTIMISTIC_ROUNDS 3
#define DEFERRED_CHECK_FAILED (-2)   /* materialize_all: a deferred constraint failed, culprit unknown */

static struct materializer *mat_of(const struct change *c)
{
    return c->tbl->mat;
}

static void mat_change_of(const struct batch *b, const struct change *c, struct mat_change *mc)
{
    mc->is_delete = c->op == OP_DELETE;
    mc->op = c->op_text;
    mc->schema = c->schema;
    mc->table = c->table;
    mc->pk = c->pk;
    mc->payload = mc->is_delete ? NULL : arena_strndup(b->rq->arena, c->payload.start, c->payload.len);
    mc->payload_len = mc->is_delete ? 0 : c->payload.len;
    mc->user = b->rq->who->user;
}

static void mat_failed(struct batch *b, struct change *c, const char *why)
{
    c->status = ST_MATERIALIZE_ERROR;
    c->message = arena_strdup(b->rq->arena, why);
    c->logged = false;
}

/* Applies one change in a savepoint of its own; false (and the reason) when it fails. */
static bool apply_isolated(struct batch *b, struct change *c, char *why, size_t whylen)
{
    PGconn *conn = b->rq->conn;
    struct mat_change mc;
    struct mat_plan plan;
    mat_change_of(b, c, &mc);
    enum mat_plan_result pr = materializer_plan(mat_of(c), conn, &mc, b->rq->arena, &plan, why, whylen);
    if (pr != MAT_PLANNED)
        return false;
    PGresult *r = PQexec(conn, "SAVEPOINT ovs_one");
    PQclear(r);
    bool ok;
    if (plan.synchronous) {
        ok = materializer_apply(mat_of(c), conn, &mc, why, whylen);
    } else {
        r = plan.stmt ? PQexecPrepared(conn, plan.stmt, plan.nparams, plan.values, NULL, NULL, 0)
                      : PQexecParams(conn, plan.sql, plan.nparams, NULL, plan.values, NULL, NULL, 0);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        if (!ok)
            materializer_error_text(r, conn, why, whylen);
        PQclear(r);
    }
    if (ok) {
        /* the change's deferred constraints too, so the change that breaks one is the one undone */
        r = PQexec(conn, "SET CONSTRAINTS ALL IMMEDIATE");
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            materializer_error_text(r, conn, why, whylen);
        PQclear(r);
    }
    r = PQexec(conn, ok ? "RELEASE SAVEPOINT ovs_one" : "ROLLBACK TO SAVEPOINT ovs_one");
    PQclear(r);
    r = PQexec(conn, "SET CONSTRAINTS ALL DEFERRED");
    PQclear(r);
    return ok;
}

/* One step of a materialization pass: a statement (pipelined), or a synchronous plugin call. */
struct mat_step {
    int oi;                         /* order position of the (first) change */
    int n;                          /* changes it applies: 1, or a set's size */
    bool set;                       /* a batch entry point: a failure names no single change */
    bool synchronous;
    const char *stmt, *sql;
    int nparams;
    const char *const *values;
    const struct mat_change *cs;    /* a synchronous set: its n changes */
};

/* The last order position (exclusive) of the set starting at oi: the following applied changes of
 * the same table and kind. The apply order keeps them together (upserts by table rank, then
 * deletes by reverse rank, each table's changes in request order). */
static int set_end(const struct batch *b, const bool *todo, int oi)
{
    const struct change *c = &b->changes[b->order[oi]];
    int end = oi + 1;
    for (int j = oi + 1; j < b->norder; j++) {
        const struct change *d = &b->changes[b->order[j]];
        if (d->tbl != c->tbl || (d->op == OP_DELETE) != (c->op == OP_DELETE))
            break;
        if (todo[j])
            end = j + 1;
    }
    return end;
}

/* steps with room for more after its first n (the arena keeps the outgrown array). */
static struct mat_step *steps_reserve(arena_t *a, struct mat_step *steps, int n, int *cap, int more)
{
    if (n + more <= *cap)
        return steps;
    int grown = *cap * 2 + more;
    struct mat_step *bigger = arena_calloc(a, (size_t)grown, sizeof *bigger);
    memcpy(bigger, steps, (size_t)n * sizeof *steps);
    *cap = grown;
    return bigger;
}

#define SET_FAILED (-3)              /* materialize_all: a set statement or batch call failed */

/* One optimistic pass: every applied change of a materialized table, in apply order, pipelined
 * without savepoints. With set, the changes of one table and kind go through the materializer's
 * batch entry point when it has one (one statement per table for the generic one). Everything is
 * planned (converted, statements prepared) before the first pipeline, because preparing cannot
 * happen inside one. The deferred constraints are checked at the end, in the last pipeline.
 * true when all applied; otherwise *failed_at is the first failing change's order position,
 * DEFERRED_CHECK_FAILED, SET_FAILED, or -1 when the connection broke. */
static bool materialize_all(struct batch *b, bool set, int *failed_at, char *why, size_t whylen)
{
    PGconn *conn = b->rq->conn;
    arena_t *a = b->rq->arena;
    size_t n = (size_t)(b->norder ? b->norder : 1);
    struct mat_change *mcs = arena_calloc(a, n, sizeof *mcs);
    bool *todo = arena_calloc(a, n, sizeof *todo);
    struct mat_step *steps = arena_calloc(a, n, sizeof *steps);
    int nsteps = 0, cap = (int)n;
    for (int oi = 0; oi < b->norder; oi++) {
        struct change *c = &b->changes[b->order[oi]];
        if (c->status != ST_APPLIED || !mat_of(c))
            continue;
        mat_change_of(b, c, &mcs[oi]);
        todo[oi] = true;
    }
    for (int oi = 0; oi < b->norder;) {
        if (!todo[oi]) {
            oi++;
            continue;
        }
        struct materializer *m = mat_of(&b->changes[b->order[oi]]);
        if (set && materializer_batches(m)) {
            int end = set_end(b, todo, oi), k = 0;
            struct mat_change *cs = arena_calloc(a, (size_t)(end - oi), sizeof *cs);
            int *pos = arena_calloc(a, (size_t)(end - oi), sizeof *pos);
            for (int j = oi; j < end; j++)
                if (todo[j]) {
                    pos[k] = j;
                    cs[k++] = mcs[j];
                }
            struct mat_batch_plan bp;
            int bad = -1;
            enum mat_plan_result pr = materializer_plan_batch(m, conn, cs, k, a, &bp, &bad, why, whylen);
            if (pr != MAT_PLANNED) {
                /* a value that cannot be converted names its change; a statement that cannot be
                 * prepared is tried again change by change, where it fails the change as before */
                *failed_at = PQstatus(conn) != CONNECTION_OK ? -1
                             : pr == MAT_UNCONVERTIBLE && bad >= 0 ? pos[bad] : SET_FAILED;
                return false;
            }
            steps = steps_reserve(a, steps, nsteps, &cap, bp.nstmts + 1);
            if (bp.synchronous) {
                steps[nsteps++] = (struct mat_step){ .oi = oi, .n = k, .set = true, .synchronous = true, .cs = cs };
            } else {
                for (int i = 0; i < bp.nstmts; i++)
                    steps[nsteps++] = (struct mat_step){ .oi = oi, .n = k, .set = true, .stmt = bp.stmts[i].stmt,
                                                         .sql = bp.stmts[i].sql, .nparams = bp.stmts[i].nparams,
                                                         .values = bp.stmts[i].values };
            }
            oi = end;
            continue;
        }
        struct mat_plan *plan = arena_calloc(a, 1, sizeof *plan);
        if (materializer_plan(m, conn, &mcs[oi], a, plan, why, whylen) != MAT_PLANNED) {
            *failed_at = oi;
            return false;
        }
        steps = steps_reserve(a, steps, nsteps, &cap, 1);
        steps[nsteps++] = (struct mat_step){ .oi = oi, .n = 1, .synchronous = plan->synchronous,
                                             .stmt = plan->stmt, .sql = plan->sql, .nparams = plan->nparams,
                                             .values = plan->values };
        oi++;
    }
    int owner[PIPELINE_MAX];
    for (int si = 0;;) {
        if (si < nsteps && steps[si].synchronous) {
            const struct mat_step *st = &steps[si++];
            struct materializer *m = mat_of(&b->changes[b->order[st->oi]]);
            bool ok = st->set ? materializer_apply_batch(m, conn, st->cs, st->n, why, whylen)
                              : materializer_apply(m, conn, &mcs[st->oi], why, whylen);
            if (!ok) {
                *failed_at = PQstatus(conn) != CONNECTION_OK ? -1 : st->set ? SET_FAILED : st->oi;
                return false;
            }
            continue;
        }
        /* the statements up to the next synchronous step; the deferred check after the last one
         * (deferred foreign keys would otherwise be checked only at COMMIT, where a violation
         * fails the whole upload: checked now, the culprit can still be found and undone alone) */
        struct pipeline p;
        pipeline_begin(&p, conn);
        bool sent = true;
        for (; sent && si < nsteps && !steps[si].synchronous && p.n < PIPELINE_MAX - 2; si++) {
            owner[p.n] = si;
            sent = pipeline_add(&p, steps[si].stmt, steps[si].sql, steps[si].nparams, steps[si].values);
        }
        bool last = si == nsteps;
        int check = -1;
        if (sent && last) {
            check = p.n;
            sent = pipeline_add(&p, NULL, "SET CONSTRAINTS ALL IMMEDIATE", 0, NULL) &&
                   pipeline_add(&p, NULL, "SET CONSTRAINTS ALL DEFERRED", 0, NULL);
        }
        bool ok = pipeline_run(&p) && sent;
        if (!ok) {
            if (p.failed >= 0)
                materializer_error_text(pipeline_error(&p), conn, why, whylen);
            if (PQstatus(conn) != CONNECTION_OK || p.failed < 0 || (check >= 0 && p.failed > check))
                *failed_at = -1;
            else if (p.failed == check)
                *failed_at = DEFERRED_CHECK_FAILED;
            else
                *failed_at = steps[owner[p.failed]].set ? SET_FAILED : steps[owner[p.failed]].oi;
            pipeline_clear(&p);
            return false;
        }
        pipeline_clear(&p);
        if (last)
            return true;
    }
}

static enum sync_outcome materialize(struct batch *b, char *err, size_t errlen)
{
    PGconn *conn = b->rq->conn;
    bool any = false;
    for (int i = 0; i < b->rq->schema->n_tables && !any; i++)
        any = b->rq->schema->tables[i].mat != NULL;
    if (!any)
        return SYNC_OK;
    PGresult *r = PQexec(conn, "SAVEPOINT ovs_mat");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok)
        return db_failure(b, NULL, "starting materialization", err, errlen);
    bool set = b->rq->cfg->set_materialization;
    for (int round = 0;;) {
        int failed_at = -1;
        char why[1024];
        if (materialize_all(b, set, &failed_at, why, sizeof why))
            return SYNC_OK;
        if (PQstatus(conn) != CONNECTION_OK || failed_at == -1)
            return db_failure(b, NULL, "materializing", err, errlen);
        r = PQexec(conn, "ROLLBACK TO SAVEPOINT ovs_mat");
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok)
            return db_failure(b, NULL, "undoing a failed materialization", err, errlen);
        if (failed_at == SET_FAILED) {
            /* a set statement does not say which of its changes failed: the batch again, change by
             * change, which finds each failing change and keeps the others */
            b->mat_fallbacks++;
            set = false;
            continue;
        }
        if (round++ < OPTIMISTIC_ROUNDS && failed_at >= 0) {
            mat_failed(b, &b->changes[b->order[failed_at]], why);
        } else {
            /* Many failures: find them all in one pass, each change in a savepoint of its own. */
            for (int oi = 0; oi < b->norder; oi++) {
                struct change *c = &b->changes[b->order[oi]];
                if (c->status == ST_APPLIED && mat_of(c) && !apply_isolated(b, c, why, sizeof why))
                    mat_failed(b, c, why);
            }
            r = PQexec(conn, "ROLLBACK TO SAVEPOINT ovs_mat");
            PQclear(r);
        }
        classify(b);
    }
}

static bool key_needs_image(const struct batch *b, int k)
{
    for (int i = 0; i < b->n; i++) {
        const struct change *c = &b->changes[i];
        if (c->key == k && c->status == ST_CONFLICT && c->row_image == -1)
            return true;
    }
    return false;
}

/* Conflicts answer with the row as stored; only those rows' after-images are read, and before
 * anything is written, so each conflict shows the row as its change found it. */
static enum sync_outcome read_conflict_images(struct batch *b, char *err, size_t errlen)
{
    bool any = false;
    for (int i = 0; i < b->n && !any; i++)
        any = b->changes[i].status == ST_CONFLICT && b->changes[i].row_image == -1;
    if (!any)
        return SYNC_OK;
    int *map = arena_calloc(b->rq->arena, (size_t)b->nkeys, sizeof *map);
    int m = 0;
    for (int k = 0; k < b->nkeys; k++)
        if (key_needs_image(b, k))
            map[m++] = k;
    const char *ks, *kt, *kp;
    key_arrays(b, &ks, &kt, &kp, key_needs_image);
    const char *vals[4] = { b->rq->who->user, ks, kt, kp };
    PGresult *r = db_result_in(b->rq->arena, PQexecPrepared(b->rq->conn, "sync_row_images", 4, vals, NULL, NULL, 0));
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return db_failure(b, r, "reading conflicting rows", err, errlen);
    for (int i = 0; i < PQntuples(r); i++) {
        int j = atoi(PQgetvalue(r, i, 0)) - 1;
        if (j >= 0 && j < m)
            b->keys[map[j]].db_payload = PQgetvalue(r, i, 1);   /* the result lives as long as the request */
    }
    return SYNC_OK;
}

/* The parameters of sync_write (all 12) and sync_write_fresh (the first 11) for the logged
 * changes in apply order; marks their keys written. Returns how many changes are logged;
 * *absent: every logged key was absent in round trip 1 and no logged table is materialized. */
static int write_params(struct batch *b, const char *vals[12], bool *absent)
{
    const struct sync_request *rq = b->rq;
    arena_t *a = rq->arena;
    strbuf_t s = STRBUF_ARENA(a), t = STRBUF_ARENA(a), o = STRBUF_ARENA(a), pk = STRBUF_ARENA(a),
             scid = STRBUF_ARENA(a), v = STRBUF_ARENA(a), fin = STRBUF_ARENA(a), del = STRBUF_ARENA(a),
             mat = STRBUF_ARENA(a), payloads = STRBUF_ARENA(a);
    array_begin(&s);
    array_begin(&t);
    array_begin(&o);
    array_begin(&pk);
    array_begin(&scid);
    array_begin(&v);
    array_begin(&fin);
    array_begin(&del);
    array_begin(&mat);
    /* the payload array can be as large as the body: reserved at its exact size, so that an arena
     * buffer never leaves outgrown copies behind */
    size_t need = 2;
    for (int oi = 0; oi < b->norder; oi++) {
        const struct change *c = &b->changes[b->order[oi]];
        if (c->logged)
            need += (c->op == OP_DELETE ? 4 : c->payload.len) + 1;
    }
    sb_reserve(&payloads, need);
    sb_putc(&payloads, '[');
    int nlog = 0;
    *absent = true;
    for (int oi = 0; oi < b->norder; oi++) {
        const struct change *c = &b->changes[b->order[oi]];
        if (!c->logged)
            continue;
        *absent = *absent && !b->keys[c->key].db_exists && !c->tbl->mat;
        b->keys[c->key].written = true;
        sb_pg_array_str(&s, c->schema);
        sb_pg_array_str(&t, c->table);
        sb_pg_array_str(&o, c->op_text);
        sb_pg_array_str(&pk, c->pk);
        array_ll(&scid, c->scid);
        array_ll(&v, c->new_version);
        array_bool(&fin, c->final);
        array_bool(&del, c->op == OP_DELETE);
        array_bool(&mat, c->tbl->mat != NULL);
        if (nlog++)
            sb_putc(&payloads, ',');
        if (c->op == OP_DELETE)
            sb_puts(&payloads, "null");
        else
            sb_append(&payloads, c->payload.start, c->payload.len);
    }
    sb_putc(&payloads, ']');
    vals[0] = rq->who->user;
    vals[1] = rq->who->device;
    vals[2] = array_end(&s);
    vals[3] = array_end(&t);
    vals[4] = array_end(&o);
    vals[5] = array_end(&pk);
    vals[6] = array_end(&scid);
    vals[7] = array_end(&v);
    vals[8] = array_end(&fin);
    vals[9] = array_end(&del);
    vals[10] = payloads.data;
    vals[11] = array_end(&mat);
    return nlog;
}

static enum sync_outcome write_and_commit(struct batch *b, long long *highest, char *err, size_t errlen)
{
    const struct sync_request *rq = b->rq;
    arena_t *a = rq->arena;
    const char *vals[12];
    bool fresh;   /* sync_write_fresh will do */
    int nlog = write_params(b, vals, &fresh);

    /* materializer failures: one row per (row, attempted version); a repeat bumps retry_count */
    strbuf_t fs = STRBUF_ARENA(a), ft = STRBUF_ARENA(a), fpk = STRBUF_ARENA(a), fv = STRBUF_ARENA(a),
             fop = STRBUF_ARENA(a), fe = STRBUF_ARENA(a), fpl = STRBUF_ARENA(a);
    array_begin(&fs);
    array_begin(&ft);
    array_begin(&fpk);
    array_begin(&fv);
    array_begin(&fop);
    array_begin(&fe);
    size_t need = 2;
    for (int oi = 0; oi < b->norder; oi++) {
        const struct change *c = &b->changes[b->order[oi]];
        if (c->status == ST_MATERIALIZE_ERROR)
            need += (c->op == OP_DELETE ? 4 : c->payload.len) + 1;
    }
    sb_reserve(&fpl, need);
    sb_putc(&fpl, '[');
    int nfail = 0;
    for (int oi = 0; oi < b->norder && !b->retry_id; oi++) {
        const struct change *c = &b->changes[b->order[oi]];
        if (c->status != ST_MATERIALIZE_ERROR)
            continue;
        bool dup = false;
        for (int pj = 0; pj < oi && !dup; pj++) {
            const struct change *d = &b->changes[b->order[pj]];
            dup = d->status == ST_MATERIALIZE_ERROR && d->key == c->key && d->new_version == c->new_version;
        }
        if (dup)
            continue;
        sb_pg_array_str(&fs, c->schema);
        sb_pg_array_str(&ft, c->table);
        sb_pg_array_str(&fpk, c->pk);
        array_ll(&fv, c->new_version);
        sb_pg_array_str(&fop, c->op_text);
        sb_pg_array_str(&fe, c->message ? c->message : "");
        if (nfail++)
            sb_putc(&fpl, ',');
        if (c->op == OP_DELETE)
            sb_puts(&fpl, "null");
        else
            sb_append(&fpl, c->payload.start, c->payload.len);
    }
    sb_putc(&fpl, ']');
    const char *fvals[8] = { rq->who->user, array_end(&fs), array_end(&ft), array_end(&fpk),
                             array_end(&fv), array_end(&fop), array_end(&fe), fpl.data };

    struct pipeline p;
    pipeline_begin(&p, rq->conn);
    bool sent = (nlog == 0 || (fresh ? pipeline_add(&p, "sync_write_fresh", NULL, 11, vals)
                                     : pipeline_add(&p, "sync_write", NULL, 12, vals))) &&
                (nfail == 0 || pipeline_add(&p, "sync_record_failures", NULL, 8, fvals));
    if (sent && b->retry_id) {
        /* a retry that went through removes the failure; one that did not counts the attempt */
        const struct change *c = &b->changes[0];
        char id[24];
        snprintf(id, sizeof id, "%lld", b->retry_id);
        bool done = c->status == ST_APPLIED || c->status == ST_IDEMPOTENT;
        const char *rv[3] = { id, rq->who->user, c->message ? c->message : "not applied" };
        sent = done ? pipeline_add(&p, "sync_failure_done", NULL, 2, rv)
                    : pipeline_add(&p, "sync_failure_retried", NULL, 3, rv);
    }
    bool unclaim = false;
    for (int k = 0; k < b->nkeys && !unclaim; k++)
        unclaim = key_unused_claim(b, k);
    if (sent && unclaim) {
        const char *us, *ut, *up;
        key_arrays(b, &us, &ut, &up, key_unused_claim);
        const char *uv[4] = { rq->who->user, us, ut, up };
        sent = pipeline_add(&p, "sync_unclaim_rows", NULL, 4, uv);
    }
    sent = sent && pipeline_add(&p, NULL, "COMMIT", 0, NULL);
    bool ok = pipeline_run(&p) && sent;   /* run whatever was sent: that leaves pipeline mode */
    if (!ok) {
        const PGresult *fail = pipeline_error(&p);
        const char *state = fail ? PQresultErrorField(fail, PG_DIAG_SQLSTATE) : NULL;
        enum sync_outcome out = db_failure(b, fail, "writing the batch", err, errlen);
        /* a key found absent was created by a writer that does not take the user's lock: nothing
         * was written, and the client's retry will find the row */
        if (out == SYNC_FAILED && fresh && nlog && state && strcmp(state, "23505") == 0)
            out = SYNC_UNAVAILABLE;
        pipeline_clear(&p);
        return out;
    }
    /* COMMIT answered with an error arrives as COMMAND_OK "ROLLBACK" when the transaction had
     * failed; that cannot happen here because any earlier error stops the pipeline. */
    if (nlog) {
        long long top = atoll(PQgetvalue(p.res[0], 0, 0));
        if (top > *highest)
            *highest = top;
    }
    pipeline_clear(&p);
    return SYNC_OK;
}

/* ------------------------------------------------------------------- one round trip */

static int cmp_ll(const void *x, const void *y)
{
    long long a = *(const long long *)x, b = *(const long long *)y;
    return (a > b) - (a < b);
}

/* Whether the batch may be written in one round trip (write_one_trip): it only creates or updates
 * rows, each key and each scid once, of tables that are not materialized (no ownership, no
 * business rows, no deferred constraints), without foreign-key references to check; and it is
 * not an admin retry. Then, unless a row moved or a change was uploaded before, every change is
 * applied at the version after the one it names, which is what the careful path would answer. */
static bool one_trip_fits(const struct batch *b)
{
    if (!b->rq->cfg->optimistic_upload || b->retry_id || b->norder == 0 || b->nkeys != b->norder)
        return false;
    long long *scids = arena_alloc(b->rq->arena, (size_t)b->norder * sizeof *scids);
    for (int oi = 0; oi < b->norder; oi++) {
        const struct change *c = &b->changes[b->order[oi]];
        if (c->op == OP_DELETE || c->nrefs || c->tbl->mat || c->tbl->conf->materializer != MATERIALIZER_NONE ||
            c->at_current_version || c->sv < 0 || c->sv == LLONG_MAX)
            return false;
        scids[oi] = c->scid;
    }
    qsort(scids, (size_t)b->norder, sizeof *scids, cmp_ll);
    for (int i = 1; i < b->norder; i++)
        if (scids[i] == scids[i - 1])
            return false;
    return true;
}

/* The optimistic write: BEGIN, the user's lock and the whole batch (sync_write_fresh when every
 * change creates its row, else sync_write_expected) and COMMIT in one round trip, nothing read
 * first. *missed when a change was uploaded before (unique_violation on the change log's scids)
 * or a row was not at the version its change names (OV001, or unique_violation of a row expected
 * absent): everything is rolled back and the caller writes the batch the careful way. */
static enum sync_outcome write_one_trip(struct batch *b, long long *highest, bool *missed, char *err,
                                        size_t errlen)
{
    const struct sync_request *rq = b->rq;
    /* what the careful path would answer: every change applied at the version after the one
     * it names (classify sets all of this again after a miss) */
    bool fresh = true;
    for (int oi = 0; oi < b->norder; oi++) {
        struct change *c = &b->changes[b->order[oi]];
        c->status = ST_APPLIED;
        c->new_version = c->sv + 1;
        c->logged = c->final = true;
        fresh = fresh && c->sv == 0;
    }
    const char *vals[12];
    bool unused;
    write_params(b, vals, &unused);
    const char *vals_expected[9] = { vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], vals[6], vals[7], vals[10] };

    struct pipeline p;
    pipeline_begin(&p, rq->conn);
    /* nothing of a business table, and plans that do not depend on the values (see read_state) */
    bool sent = begin_user_transaction(&p, rq, false, true);
    int w = p.n;   /* the write's result */
    sent = sent &&
           (fresh ? pipeline_add(&p, "sync_write_fresh", NULL, 11, vals)
                  : pipeline_add(&p, "sync_write_expected", NULL, 9, vals_expected)) &&
           pipeline_add(&p, NULL, "COMMIT", 0, NULL);
    bool ok = pipeline_run(&p) && sent;   /* run whatever was sent: that leaves pipeline mode */
    if (!ok) {
        const PGresult *fail = pipeline_error(&p);
        const char *state = fail ? PQresultErrorField(fail, PG_DIAG_SQLSTATE) : NULL;
        if (sent && fail && p.failed == w && state && (strcmp(state, "23505") == 0 || strcmp(state, "OV001") == 0) &&
            PQstatus(rq->conn) == CONNECTION_OK) {
            pipeline_clear(&p);
            PGresult *r = db_result_in(rq->arena, PQexec(rq->conn, "ROLLBACK"));
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                return db_failure(b, r, "rolling back an optimistic write", err, errlen);
            for (int k = 0; k < b->nkeys; k++)
                b->keys[k].written = false;
            *missed = true;
            return SYNC_OK;
        }
        enum sync_outcome out = db_failure(b, fail, "writing the batch", err, errlen);
        pipeline_clear(&p);
        return out;
    }
    *highest = atoll(PQgetvalue(p.res[w], 0, 0));
    pipeline_clear(&p);
    return SYNC_OK;
}

/* Everything after parsing and validation: keys, apply order, the two round trips (plus
 * materialization), classification. */
static enum sync_outcome run_batch(struct batch *b, long long *highest, char *err, size_t errlen)
{
    const struct sync_request *rq = b->rq;
    b->order = arena_calloc(rq->arena, (size_t)(b->n ? b->n : 1), sizeof *b->order);
    b->key_cap = pow2_at_least((size_t)b->n * 2);
    b->key_slots = arena_alloc(rq->arena, b->key_cap * sizeof *b->key_slots);
    memset(b->key_slots, 0xff, b->key_cap * sizeof *b->key_slots);
    b->keys = arena_calloc(rq->arena, (size_t)(b->n ? b->n : 1), sizeof *b->keys);
    b->scid_cap = pow2_at_least((size_t)b->n * 4 + 16);
    b->scid_slots = arena_calloc(rq->arena, b->scid_cap, sizeof *b->scid_slots);
    b->scid_used = arena_calloc(rq->arena, b->scid_cap, sizeof *b->scid_used);
    for (int i = 0; i < b->n; i++) {
        struct change *c = &b->changes[i];
        if (c->status == ST_PENDING)
            collect_refs(b, c);
        if (c->status != ST_PENDING)
            continue;
        c->key = key_of(b, c);
        struct rowkey *r = &b->keys[c->key];
        r->guarded = c->tbl->conf->materializer != MATERIALIZER_NONE;
        r->upserted |= c->op != OP_DELETE;
        b->order[b->norder++] = i;
    }

    enum sync_outcome o;
    if (b->norder == 0) {
        o = highest_only(b, highest, err, errlen);
    } else {
        sort_batch = b;
        qsort(b->order, (size_t)b->norder, sizeof *b->order, apply_cmp);
        sort_batch = NULL;
        bool missed = false;
        if (one_trip_fits(b)) {
            o = write_one_trip(b, highest, &missed, err, errlen);
            if (o != SYNC_OK || !missed) {
                b->one_trip = o == SYNC_OK;
                return o;
            }
            b->one_trip = -1;
        }
        o = read_state(b, highest, err, errlen);
        if (o == SYNC_OK) {
            classify(b);
            /* no savepoint and no constraint round trips for a batch with nothing to materialize */
            if (batch_materializes(b, true))
                o = materialize(b, err, errlen);
        }
        if (o == SYNC_OK) {
            o = read_conflict_images(b, err, errlen);
        }
        if (o == SYNC_OK)
            o = write_and_commit(b, highest, err, errlen);
    }
    return o;
}

/* SPEC §4: more changes than max_upload_changes → 200 with every change invalid/bad_payload,
 * nothing written. The statuses are written straight from the request's array, the scid of each
 * read from its element as it comes, so no memory is spent per change. With a sink the answer is
 * measured first (its exact length goes out before it), then sent in pieces of about 64 KB, so it
 * is never held whole either: a 16 MB body of minimal changes answers some 150 MB. */
static enum sync_outcome answer_too_large(struct batch *b, const struct json_span *array, long n, strbuf_t *out,
                                          struct upload_counts *counts, char *err, size_t errlen)
{
    enum { PIECE = 64 * 1024 };
    long long highest = 0;
    enum sync_outcome o = highest_only(b, &highest, err, errlen);
    if (o != SYNC_OK)
        return o;
    memset(counts, 0, sizeof *counts);
    counts->invalid[INVALID_BAD_PAYLOAD] = (unsigned long)n;
    struct change status;
    memset(&status, 0, sizeof status);
    bad_payload(b, &status, "batch too large: %ld changes; the limit is %ld", n, b->rq->cfg->max_upload_changes);
    const struct sync_sink *sink = b->rq->sink;
    size_t total = 0;
    for (int pass = sink ? 0 : 1; pass < 2; pass++) {
        bool measure = pass == 0, send = pass == 1 && sink;
        sb_reset(out);
        sb_printf(out, "{\"accepted\":true,\"highest_server_seq\":%lld,\"statuses\":[", highest);
        struct json_iter it;
        struct json_span v;
        struct change c;
        json_iter_init_skips(&it, array, &b->skips);
        for (long i = 0; json_iter_element(&it, &v); i++) {
            parse_change(b, &v, i, &c, false, err, errlen);   /* checked by parse_body */
            status.scid = c.scid;
            if (i)
                sb_putc(out, ',');
            write_status(b, out, &status);
            if (measure) {
                total += out->len;
                sb_reset(out);
            } else if (send && out->len >= PIECE) {
                sink->write(sink->ud, out->data, out->len);
                sb_reset(out);
            }
        }
        sb_puts(out, "]}");
        if (measure) {
            total += out->len;
            sink->begin(sink->ud, total);
        } else if (send) {
            sink->write(sink->ud, out->data, out->len);
            sb_reset(out);
        }
    }
    return SYNC_OK;
}

enum sync_outcome sync_upload(const struct sync_request *rq, const char *body, size_t len,
                              strbuf_t *out, struct upload_counts *counts, char *err, size_t errlen)
{
    struct batch b;
    memset(&b, 0, sizeof b);
    b.rq = rq;
    struct json_span array;
    long count;
    if (!parse_body(&b, body, len, &array, &count, err, errlen))
        return SYNC_BAD_REQUEST;
    if (count > rq->cfg->max_upload_changes || count > INT_MAX)
        return answer_too_large(&b, &array, count, out, counts, err, errlen);

    long long highest = 0;
    for (int i = 0; i < b.n; i++)
        validate(&b, &b.changes[i]);

    enum sync_outcome o = run_batch(&b, &highest, err, errlen);
    if (o != SYNC_OK)
        return o;
    write_answer(&b, out, highest, counts);
    return SYNC_OK;
}

enum sync_outcome sync_retry_failure(const struct sync_request *rq, long long id, strbuf_t *out, char *err,
                                     size_t errlen)
{
    char idtext[24];
    snprintf(idtext, sizeof idtext, "%lld", id);
    const char *vals[2] = { idtext, rq->who->user };
    PGresult *r = db_result_in(rq->arena, PQexecPrepared(rq->conn, "sync_get_failure", 2, vals, NULL, NULL, 0));
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return sync_db_failure(rq, r, "reading a materialize failure", err, errlen);
    if (PQntuples(r) == 0) {
        snprintf(err, errlen, "no materialize failure with id %lld", id);
        return SYNC_NOT_FOUND;
    }
    /* the service applies the change: its own device id, the failure id as change id */
    struct identity svc = *rq->who;
    snprintf(svc.device, sizeof svc.device, "admin-retry");
    struct sync_request srq = *rq;
    srq.who = &svc;
    struct batch b;
    memset(&b, 0, sizeof b);
    b.rq = &srq;
    b.retry_id = id;
    b.n = 1;
    b.changes = arena_calloc(rq->arena, 1, sizeof *b.changes);
    struct change *c = &b.changes[0];
    c->key = -1;
    c->row_image = -2;
    c->scid = id;
    /* the result lives as long as the request: its values are used in place */
    c->schema = PQgetvalue(r, 0, 0);
    c->table = PQgetvalue(r, 0, 1);
    c->pk_raw = PQgetvalue(r, 0, 2);
    c->op_text = PQgetvalue(r, 0, 3);
    long long retries = atoll(PQgetvalue(r, 0, 5));
    c->at_current_version = true;
    if (!PQgetisnull(r, 0, 4)) {
        const char *payload = PQgetvalue(r, 0, 4);
        char scan[128];
        c->has_payload = json_validate(payload, strlen(payload), &c->payload, scan, sizeof scan);
    }
    validate(&b, c);

    long long highest = 0;
    enum sync_outcome o = SYNC_OK;
    if (c->status == ST_PENDING) {
        o = run_batch(&b, &highest, err, errlen);
    } else {
        const char *rv[3] = { idtext, rq->who->user, c->message ? c->message : "invalid" };
        r = db_result_in(rq->arena, PQexecPrepared(rq->conn, "sync_failure_retried", 3, rv, NULL, NULL, 0));
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            o = sync_db_failure(rq, r, "counting a retry", err, errlen);
    }
    if (o != SYNC_OK)
        return o;
    bool done = c->status == ST_APPLIED || c->status == ST_IDEMPOTENT;
    strbuf_t st = STRBUF_ARENA(rq->arena);
    write_status(&b, &st, c);
    /* {"id":N,"retry_count":K, then the status object's fields without its source_change_id */
    const char *rest = strstr(st.data, ",\"status\":");
    sb_printf(out, "{\"id\":%lld,\"retry_count\":%lld%s", id, done ? retries : retries + 1, rest ? rest : "}");
    return SYNC_OK;
}
