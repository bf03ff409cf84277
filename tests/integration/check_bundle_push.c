/* The bundle protocol's push sessions against a real PostgreSQL (SPEC-v2 §3.2–3.6): create,
 * chunks, commit, delete and the committed-bundle rows. Every error path with its status, code
 * and message and that it wrote nothing; the happy paths (chunks, replays, text keys, bytea,
 * numbers and timestamps, FK order inside a bundle, cascades), the committed bundle's hash
 * recomputed over the rows the client reads back, and the concurrency invariants with forked
 * children on connections of their own. */
#include "bundletest.h"
#include "../run_suites.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bundle_hash.h"

#define U "alice"
#define S "dev-a"
#define ID1 "11111111-1111-4111-8111-111111111111"
#define ID2 "22222222-2222-4222-8222-222222222222"
#define ID3 "33333333-3333-4333-8333-333333333333"
#define NOPE "99999999-9999-4999-8999-999999999999"

/* ------------------------------------------------------------------------------ helpers */

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s;
    ck_assert(vasprintf(&s, f, ap) >= 0);
    va_end(ap);
    return s;   /* tests leak these: each test is its own process */
}

static const char *str(const struct bt_reply *r, const char *key)
{
    return tdb_str(r->json, key);
}

static void init_scope(const char *user, const char *source)
{
    struct bt_reply *r = bt_connect(user, source, "{\"has_local_pending_rows\":false}");
    bt_assert_ok(r, 200);
    bt_reply_free(r);
}

/* Everything a push can write, as one text: compare before and after a refused call. */
static char *state(void)
{
    return bt_query(
        "SELECT concat_ws(' ', (SELECT count(*) FROM sync.user_state), (SELECT count(*) FROM sync.scope_state), "
        "(SELECT string_agg(state_code || coalesce(initialization_id::text, '') || coalesce(lease_expires_at::text, ''), ',') "
        "FROM sync.scope_state), "
        "(SELECT string_agg(push_id || ':' || next_expected_row_ordinal || ':' || expires_at, ',' ORDER BY push_id) "
        "FROM sync.push_sessions), (SELECT count(*) FROM sync.push_session_rows), "
        "(SELECT count(*) FROM sync.bundle_log), (SELECT count(*) FROM sync.bundle_rows), "
        "(SELECT count(*) FROM sync.row_state), (SELECT count(*) FROM sync.bundle_capture_stage), "
        "(SELECT string_agg(source_id || state || max_committed_source_bundle_id, ',') FROM sync.source_state), "
        "(SELECT string_agg(next_bundle_seq || '/' || retained_bundle_floor, ',') FROM sync.user_state), "
        "(SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM business.users t), "
        "(SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM business.posts t), "
        "(SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM business.categories t), "
        "(SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM business.files t), "
        "(SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM business.notes t), "
        "(SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM business.typed_rows t))");
}

#define ASSERT_UNCHANGED(before)                                                                   \
    do {                                                                                           \
        char *after_ = state();                                                                    \
        ck_assert_str_eq(after_, before);                                                          \
        free(after_);                                                                              \
    } while (0)

static char *create_ok(const char *user, const char *source, long long sbid, long long planned)
{
    struct bt_reply *r =
        bt_push_create(user, source, fmt("{\"source_bundle_id\":%lld,\"planned_row_count\":%lld}", sbid, planned));
    bt_assert_ok(r, 200);
    ck_assert_str_eq(str(r, "status"), "staging");
    char *id = strdup(str(r, "push_id"));
    bt_reply_free(r);
    return id;
}

static void chunk_ok(const char *user, const char *source, const char *push_id, long long start, const char *rows,
                     long long next)
{
    struct bt_reply *r = bt_push_chunk(user, source, push_id, fmt("{\"start_row_ordinal\":%lld,\"rows\":[%s]}", start, rows));
    bt_assert_ok(r, 200);
    ck_assert_str_eq(r->body, fmt("{\"push_id\":\"%s\",\"next_expected_row_ordinal\":%lld}\n", push_id, next));
    bt_reply_free(r);
}

static int count_rows(const char *rows)
{
    int n = rows && *rows ? 1 : 0, depth = 0;
    bool in_str = false;
    for (const char *p = rows; p && *p; p++) {
        if (in_str) {
            if (*p == '\\')
                p++;
            else if (*p == '"')
                in_str = false;
        } else if (*p == '"')
            in_str = true;
        else if (*p == '{' || *p == '[')
            depth++;
        else if (*p == '}' || *p == ']')
            depth--;
        else if (*p == ',' && depth == 0)
            n++;
    }
    return n;
}

/* create + one chunk + commit; the commit's reply */
static struct bt_reply *push(const char *user, const char *source, long long sbid, const char *rows)
{
    int n = count_rows(rows);
    char *id = create_ok(user, source, sbid, n);
    chunk_ok(user, source, id, 0, rows, n);
    struct bt_reply *r = bt_push_commit(user, source, id);
    free(id);
    return r;
}

static long long push_ok(const char *user, const char *source, long long sbid, const char *rows)
{
    struct bt_reply *r = push(user, source, sbid, rows);
    bt_assert_ok(r, 200);
    long long seq = tdb_int(r->json, "bundle_seq");
    bt_reply_free(r);
    return seq;
}

static char *row(const char *table, const char *op, const char *id, long long base, const char *payload)
{
    const char *keycol = strcmp(table, "notes") == 0 ? "slug" : "id";
    if (payload)
        return fmt("{\"schema\":\"business\",\"table\":\"%s\",\"key\":{\"%s\":\"%s\"},\"op\":\"%s\","
                   "\"base_row_version\":%lld,\"payload\":%s}",
                   table, keycol, id, op, base, payload);
    return fmt("{\"schema\":\"business\",\"table\":\"%s\",\"key\":{\"%s\":\"%s\"},\"op\":\"%s\",\"base_row_version\":%lld}",
               table, keycol, id, op, base);
}

static char *user_ins(const char *id, const char *name)
{
    return row("users", "INSERT", id, 0, fmt("{\"id\":\"%s\",\"name\":\"%s\",\"email\":\"%s@x\"}", id, name, name));
}

/* ------------------------------------------------------------------------------ create */

START_TEST(test_create_invalid_bodies_write_nothing)
{
    init_scope(U, S);
    char *before = state();
    static const char *const unreadable[] = {
        NULL, "", "[]", "\"x\"", "{\"source_bundle_id\":\"1\"}", "{\"source_bundle_id\":1.5}",
        "{\"planned_row_count\":true}", "{\"initialization_id\":5}", "{", "{\"source_bundle_id\":1e2}",
    };
    for (size_t i = 0; i < sizeof unreadable / sizeof *unreadable; i++) {
        struct bt_reply *r = bt_push_create(U, S, unreadable[i]);
        bt_assert_error(r, 400, "invalid_request", "Failed to parse push session request");
        bt_reply_free(r);
    }
    static const char *const invalid[][2] = {
        { "{}", "source_bundle_id must be > 0" },
        { "null", "source_bundle_id must be > 0" },
        { "{\"source_bundle_id\":0,\"planned_row_count\":1}", "source_bundle_id must be > 0" },
        { "{\"source_bundle_id\":-1,\"planned_row_count\":1}", "source_bundle_id must be > 0" },
        { "{\"source_bundle_id\":1}", "planned_row_count must be > 0" },
        { "{\"SOURCE_BUNDLE_ID\":1,\"planned_row_count\":-3}", "planned_row_count must be > 0" },
    };
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        struct bt_reply *r = bt_push_create(U, S, invalid[i][0]);
        bt_assert_error(r, 400, "push_session_invalid", invalid[i][1]);
        bt_reply_free(r);
    }
    /* the encoder's HTML escaping */
    struct bt_reply *r = bt_push_create(U, S, "{}");
    ck_assert_str_eq(r->body, "{\"error\":\"push_session_invalid\",\"message\":\"source_bundle_id must be \\u003e 0\"}\n");
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
}
END_TEST

START_TEST(test_create_scope_lifecycle)
{
    /* never seen: uninitialized, and nothing kept (not even the user's rows) */
    char *before = state();
    struct bt_reply *r = bt_push_create(U, S, "{\"source_bundle_id\":1,\"planned_row_count\":1}");
    bt_assert_error(r, 409, "scope_uninitialized", "sync scope for user alice is not initialized");
    bt_reply_free(r);
    r = bt_push_create(U, S, "{\"source_bundle_id\":1,\"planned_row_count\":1,\"initialization_id\":\"" NOPE "\"}");
    bt_assert_error(r, 410, "initialization_expired", "initialization lease is no longer active");
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);

    /* initializing: the id is required and must be the lease's, from the lease's source */
    r = bt_connect(U, S, "{\"has_local_pending_rows\":true}");
    char *lease = strdup(str(r, "initialization_id"));
    bt_reply_free(r);
    bt_exec("UPDATE sync.scope_state SET lease_expires_at = clock_timestamp() + interval '60 s'");
    before = state();
    r = bt_push_create(U, S, "{\"source_bundle_id\":1,\"planned_row_count\":1}");
    bt_assert_error(r, 400, "push_session_invalid", "initialization_id is required while the scope is initializing");
    bt_reply_free(r);
    r = bt_push_create(U, S, "{\"source_bundle_id\":1,\"planned_row_count\":1,\"initialization_id\":\"   \"}");
    bt_assert_error(r, 400, "push_session_invalid", "initialization_id is required while the scope is initializing");
    bt_reply_free(r);
    r = bt_push_create(U, S, "{\"source_bundle_id\":1,\"planned_row_count\":1,\"initialization_id\":\"" NOPE "\"}");
    bt_assert_error(r, 409, "initialization_stale", "initialization_id does not match the active initialization lease");
    bt_reply_free(r);
    r = bt_push_create(U, "dev-b", fmt("{\"source_bundle_id\":1,\"planned_row_count\":1,\"initialization_id\":\"%s\"}", lease));
    bt_assert_error(r, 409, "initialization_stale", "source does not own the active initialization lease");
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
    /* the right one: staged with the lease's id, the lease refreshed (trimmed, as Go does) */
    r = bt_push_create(U, S, fmt("{\"source_bundle_id\":1,\"planned_row_count\":2,\"initialization_id\":\" %s \"}", lease));
    bt_assert_ok(r, 200);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.push_sessions WHERE initialization_id = '%s'", lease), 1);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.scope_state WHERE lease_expires_at > clock_timestamp() + "
                              "interval '800 s'"),
                     1);
    bt_reply_free(r);

    /* a lease run out: uninitialized again */
    bt_exec("UPDATE sync.scope_state SET lease_expires_at = clock_timestamp() - interval '1 s'");
    r = bt_push_create(U, S, fmt("{\"source_bundle_id\":1,\"planned_row_count\":1,\"initialization_id\":\"%s\"}", lease));
    bt_assert_error(r, 410, "initialization_expired", "initialization lease is no longer active");
    bt_reply_free(r);

    /* initialized: no id allowed */
    init_scope(U, S);
    before = state();
    r = bt_push_create(U, S, fmt("{\"source_bundle_id\":1,\"planned_row_count\":1,\"initialization_id\":\"%s\"}", lease));
    bt_assert_error(r, 400, "push_session_invalid", "initialization_id must be absent once the scope is initialized");
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
}
END_TEST

START_TEST(test_create_staging_and_hard_replace)
{
    init_scope(U, S);
    struct bt_reply *r = bt_push_create(U, S, "{\"source_bundle_id\":1,\"planned_row_count\":3,\"unknown\":[1]} trailing");
    bt_assert_ok(r, 200);
    char *first = strdup(str(r, "push_id"));
    ck_assert_str_eq(r->body, fmt("{\"push_id\":\"%s\",\"status\":\"staging\",\"planned_row_count\":3}\n", first));
    bt_reply_free(r);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.push_sessions WHERE push_id = '%s' AND source_id = 'dev-a' "
                              "AND source_bundle_id = 1 AND planned_row_count = 3 AND next_expected_row_ordinal = 0 "
                              "AND initialization_id IS NULL AND expires_at BETWEEN clock_timestamp() + interval '890 s' "
                              "AND clock_timestamp() + interval '901 s'",
                              first),
                     1);
    chunk_ok(U, S, first, 0, user_ins(ID1, "a"), 1);
    /* the same tuple again replaces it, staged rows and all */
    char *second = create_ok(U, S, 1, 1);
    ck_assert_str_ne(first, second);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.push_sessions"), 1);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.push_session_rows"), 0);
    r = bt_push_chunk(U, S, first, fmt("{\"start_row_ordinal\":0,\"rows\":[%s]}", user_ins(ID1, "a")));
    bt_assert_error(r, 404, "push_session_not_found", fmt("push session %s was not found", first));
    bt_reply_free(r);
    /* another source, another tuple: both live */
    char *other = create_ok(U, "dev-b", 1, 1);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.push_sessions"), 2);
    (void)other;
}
END_TEST

START_TEST(test_create_deletes_every_users_expired_sessions)
{
    init_scope(U, S);
    init_scope("bob", S);
    char *bobs = create_ok("bob", S, 1, 1);
    chunk_ok("bob", S, bobs, 0, user_ins(ID1, "b"), 1);
    char *live = create_ok("bob", "dev-b", 1, 1);
    bt_exec("UPDATE sync.push_sessions SET expires_at = now() - interval '1 s' WHERE push_id = '%s'", bobs);
    create_ok(U, S, 1, 1);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.push_sessions WHERE push_id = '%s'", bobs), 0);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.push_sessions WHERE push_id = '%s'", live), 1);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.push_session_rows"), 0);
}
END_TEST

START_TEST(test_create_source_sequence)
{
    init_scope(U, S);
    char *before = state();
    struct bt_reply *r = bt_push_create(U, S, "{\"source_bundle_id\":2,\"planned_row_count\":1}");
    bt_assert_error(r, 409, "source_sequence_out_of_order", "source dev-a for user alice expected next source_bundle_id 1, got 2");
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
    bt_exec("INSERT INTO sync.source_state (user_pk, source_id, state, max_committed_source_bundle_id) "
            "SELECT user_pk, 'dev-a', 'active', 3 FROM sync.user_state WHERE user_id = 'alice'");
    before = state();
    r = bt_push_create(U, S, "{\"source_bundle_id\":2,\"planned_row_count\":1}");
    bt_assert_error(r, 409, "history_pruned",
                    "source tuple (dev-a, 2) for user alice is older than retained duplicate history; max committed "
                    "source_bundle_id is 3");
    bt_reply_free(r);
    r = bt_push_create(U, S, "{\"source_bundle_id\":5,\"planned_row_count\":1}");
    bt_assert_error(r, 409, "source_sequence_out_of_order", "source dev-a for user alice expected next source_bundle_id 4, got 5");
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
    create_ok(U, S, 4, 1);

    /* retired: with and without a replacement */
    bt_exec("UPDATE sync.source_state SET state = 'retired', replaced_by_source_id = 'dev-z', retirement_reason = 'x'");
    before = state();
    r = bt_push_create(U, S, "{\"source_bundle_id\":4,\"planned_row_count\":1}");
    bt_assert_error(r, 409, "source_retired", "source dev-a for user alice was retired and replaced by dev-z");
    ck_assert_str_eq(r->body, "{\"error\":\"source_retired\",\"message\":\"source dev-a for user alice was retired and "
                              "replaced by dev-z\",\"source_id\":\"dev-a\",\"replaced_by_source_id\":\"dev-z\"}\n");
    bt_reply_free(r);
    bt_exec("UPDATE sync.source_state SET replaced_by_source_id = ' '");
    r = bt_push_create(U, S, "{\"source_bundle_id\":4,\"planned_row_count\":1}");
    bt_assert_error(r, 409, "source_retired", "source dev-a for user alice was retired");
    ck_assert_str_eq(str(r, "replaced_by_source_id"), " ");
    bt_reply_free(r);
}
END_TEST

/* ------------------------------------------------------------------------------ chunks */

START_TEST(test_chunk_row_validation_before_lookup)
{
    init_scope(U, S);
    char *id = create_ok(U, S, 1, 10);
    char *before = state();
    const char *u = "\"schema\":\"business\",\"table\":\"users\",\"key\":{\"id\":\"" ID1 "\"}";
    static const char *const unreadable[] = {
        NULL, "", "[]", "{\"rows\":{}}", "{\"rows\":[1]}", "{\"start_row_ordinal\":\"0\",\"rows\":[]}",
        "{\"rows\":[{\"schema\":5}]}", "{\"rows\":[{\"key\":\"x\"}]}", "{\"rows\":[{\"base_row_version\":1.5}]}",
        "{\"rows\":[{\"op\":[]}]}", "{\"rows\":[",
    };
    for (size_t i = 0; i < sizeof unreadable / sizeof *unreadable; i++) {
        struct bt_reply *r = bt_push_chunk(U, S, NOPE, unreadable[i]);
        bt_assert_error(r, 400, "invalid_request", "Failed to parse push chunk request");
        bt_reply_free(r);
    }
    const char *const cases[][2] = {
        { "{\"start_row_ordinal\":-1,\"rows\":[{}]}", "start_row_ordinal must be >= 0" },
        { "{\"start_row_ordinal\":0}", "rows must not be empty" },
        { "{\"rows\":[]}", "rows must not be empty" },
        { "{\"rows\":[null]}", "invalid table name \"\"" },
        { "{\"rows\":[{\"schema\":\"Bus-iness\",\"table\":\"users\"}]}", "invalid schema name \"Bus-iness\"" },
        { "{\"rows\":[{\"schema\":\"business\",\"table\":\"us\\\"ers\"}]}", "invalid table name \"us\\\"ers\"" },
        { "{\"rows\":[{\"table\":\"users\"}]}", "table public.users is not registered" },
        { "{\"rows\":[{\"schema\":\" BUSINESS \",\"table\":\"Users\",\"op\":\"upsert\"}]}", "invalid op \"upsert\"" },
        { "{\"rows\":[{\"schema\":\"business\",\"table\":\"users\",\"op\":\"insert\"}]}",
          "row key for business.users must include \"id\"" },
        { "{\"rows\":[{\"schema\":\"business\",\"table\":\"users\",\"op\":\"insert\",\"key\":{\"ID\":\"x\"}}]}",
          "row key for business.users must include \"id\"" },
        { "{\"rows\":[{\"schema\":\"business\",\"table\":\"users\",\"op\":\"insert\",\"key\":{\"id\":7}}]}",
          "row key business.users.id must be a string" },
        { "{\"rows\":[{\"schema\":\"business\",\"table\":\"users\",\"op\":\"insert\",\"key\":{\"id\":\"11111111-1111-4111-8111-11111111111A\"}}]}",
          "row key business.users.id must use canonical dashed lowercase UUID text" },
        { "{\"rows\":[{\"schema\":\"business\",\"table\":\"users\",\"op\":\"insert\",\"key\":{\"id\":\"11111111111141118111111111111111\"}}]}",
          "row key business.users.id must use canonical dashed lowercase UUID text" },
        { fmt("{\"rows\":[{%s,\"op\":\"DELETE\",\"base_row_version\":1},{%s,\"op\":\"delete\"}]}", u, u),
          "duplicate target row in push request: business.users " ID1 },
        { fmt("{\"rows\":[{%s,\"op\":\"DELETE\",\"payload\":null}]}", u), "DELETE for business.users must not include payload" },
        { fmt("{\"rows\":[{%s,\"op\":\"DELETE\",\"payload\":{}}]}", u), "DELETE for business.users must not include payload" },
        { fmt("{\"rows\":[{%s,\"op\":\"INSERT\"}]}", u), "INSERT for business.users requires payload" },
        { fmt("{\"rows\":[{%s,\"op\":\" update \"}]}", u), "UPDATE for business.users requires payload" },
        { fmt("{\"rows\":[{%s,\"op\":\"INSERT\",\"payload\":null}]}", u), "payload for business.users must be a JSON object" },
        { fmt("{\"rows\":[{%s,\"op\":\"INSERT\",\"payload\":[1]}]}", u), "payload for business.users must be a JSON object" },
        { fmt("{\"rows\":[{%s,\"op\":\"INSERT\",\"payload\":{\"n\":1e400}}]}", u), "payload for business.users must be a JSON object" },
        { fmt("{\"rows\":[{%s,\"op\":\"INSERT\",\"payload\":{\"_sync_scope_id\":\"bob\"}}]}", u),
          "payload for business.users must not include hidden scope column \"_sync_scope_id\"" },
        { fmt("{\"rows\":[{%s,\"op\":\"INSERT\",\"payload\":{\"id\":\"" ID2 "\"}}]}", u),
          "payload key business.users.id must match request key" },
        { fmt("{\"rows\":[{%s,\"op\":\"INSERT\",\"payload\":{\"id\":1}}]}", u), "payload key business.users.id must match request key" },
        { fmt("{\"rows\":[{%s,\"op\":\"INSERT\",\"payload\":{\"na-me\":1}}]}", u),
          "payload for business.users contains invalid column \"na-me\"" },
        { fmt("{\"rows\":[{%s,\"op\":\"INSERT\",\"payload\":{\"\":1}}]}", u), "payload for business.users contains invalid column \"\"" },
        { "{\"rows\":[{\"schema\":\"business\",\"table\":\"files\",\"key\":{\"id\":\"" ID1 "\"},\"op\":\"INSERT\","
          "\"payload\":{\"Data\":5}}]}",
          "payload binary field business.files.Data must be a base64 string" },
        { "{\"rows\":[{\"schema\":\"business\",\"table\":\"files\",\"key\":{\"id\":\"" ID1 "\"},\"op\":\"INSERT\","
          "\"payload\":{\"data\":\"AAE\"}}]}",
          "payload binary field business.files.data must be valid base64" },
        { "{\"rows\":[{\"schema\":\"business\",\"table\":\"files\",\"key\":{\"id\":\"" ID1 "\"},\"op\":\"INSERT\","
          "\"payload\":{\"data\":\"AA=E\"}}]}",
          "payload binary field business.files.data must be valid base64" },
        /* the first failing row wins, even after good ones */
        { fmt("{\"rows\":[%s,{\"table\":\"nope\"}]}", user_ins(ID2, "ok")), "table public.nope is not registered" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct bt_reply *r = bt_push_chunk(U, S, NOPE, cases[i][0]);
        bt_assert_error(r, 400, "push_chunk_invalid", cases[i][1]);
        bt_reply_free(r);
        /* the same against a real session */
        r = bt_push_chunk(U, S, id, cases[i][0]);
        bt_assert_error(r, 400, "push_chunk_invalid", cases[i][1]);
        bt_reply_free(r);
    }
    /* the limit */
    BT_CFG.max_rows_per_push_chunk = 2;
    struct bt_reply *r = bt_push_chunk(U, S, NOPE, "{\"rows\":[{},{},{}]}");
    bt_assert_error(r, 400, "push_chunk_invalid", "rows length 3 exceeds max_rows_per_push_chunk 2");
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
}
END_TEST

START_TEST(test_chunk_session_checks)
{
    init_scope(U, S);
    init_scope("bob", S);
    char *id = create_ok(U, S, 1, 2);
    char *before = state();
    const char *one = fmt("{\"start_row_ordinal\":0,\"rows\":[%s]}", user_ins(ID1, "a"));
    static const char *const unknown[] = { "nope", NOPE, "" };
    for (size_t i = 0; i < 3; i++) {
        struct bt_reply *r = bt_push_chunk(U, S, unknown[i], one);
        bt_assert_error(r, 404, "push_session_not_found", fmt("push session %s was not found", unknown[i]));
        bt_reply_free(r);
    }
    struct bt_reply *r = bt_push_chunk("bob", S, id, one);
    bt_assert_error(r, 403, "push_session_forbidden", fmt("push session %s does not belong to the authenticated user", id));
    bt_reply_free(r);
    r = bt_push_chunk(U, S, id, fmt("{\"start_row_ordinal\":1,\"rows\":[%s]}", user_ins(ID1, "a")));
    bt_assert_error(r, 409, "push_chunk_out_of_order", fmt("push session %s expected start_row_ordinal 0, got 1", id));
    bt_reply_free(r);
    r = bt_push_chunk(U, S, id, fmt("{\"start_row_ordinal\":0,\"rows\":[%s,%s,%s]}", user_ins(ID1, "a"),
                                    user_ins(ID2, "b"), user_ins(ID3, "c")));
    bt_assert_error(r, 400, "push_chunk_invalid", "chunk exceeds planned_row_count");
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
    /* upper-case and braced spellings of the id are the session too */
    char *upper = strdup(id);
    for (char *p = upper; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    chunk_ok(U, S, upper, 0, user_ins(ID1, "a"), 1);
    chunk_ok(U, S, fmt("{%s}", id), 1, user_ins(ID2, "b"), 2);
    /* a spelling uuid.Parse takes and PostgreSQL does not: a database error, as in the reference */
    r = bt_push_chunk(U, S, fmt("urn:uuid:%s", id), fmt("{\"start_row_ordinal\":2,\"rows\":[%s]}", user_ins(ID3, "c")));
    bt_assert_error(r, 500, "push_chunk_failed", "Failed to upload push chunk");
    bt_reply_free(r);
    /* expired */
    bt_exec("UPDATE sync.push_sessions SET expires_at = clock_timestamp() - interval '1 ms'");
    before = state();
    r = bt_push_chunk(U, S, id, fmt("{\"start_row_ordinal\":2,\"rows\":[%s]}", user_ins(ID3, "c")));
    bt_assert_error(r, 410, "push_session_expired", fmt("push session %s has expired; start a new push session", id));
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
}
END_TEST

START_TEST(test_chunk_stages_canonical_rows)
{
    init_scope(U, S);
    char *id = create_ok(U, S, 1, 4);
    bt_exec("UPDATE sync.push_sessions SET expires_at = clock_timestamp() + interval '5 s'");
    chunk_ok(U, S, id, 0,
             fmt("{\"Schema\":\"Business\",\"TABLE\":\"Files\",\"key\":{\"id\":\"" ID1 "\",\"x\":1},\"op\":\"insert\","
                 "\"payload\":{\"name\":\"f\\u003c\",\"data\":\"AAFoZWxsb/8=\",\"n\":9007199254740993,\"z\":1.50,"
                 "\"name\":\"last\"}},%s",
                 row("notes", "UPDATE", "Hello World", 3, "{\"body\":null}")),
             2);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.push_sessions WHERE next_expected_row_ordinal = 2 AND "
                              "expires_at > clock_timestamp() + interval '890 s'"),
                     1);
    chunk_ok(U, S, id, 2, fmt("%s,%s", row("users", "DELETE", ID2, 7, NULL), user_ins(ID1, "u")), 4);
    char *staged = bt_query("SELECT string_agg(concat_ws('|', row_ordinal, table_id, encode(key_bytes, 'hex'), op_code, "
                            "base_bundle_seq, coalesce(payload_apply::text, 'NULL')), E'\\n' ORDER BY row_ordinal) "
                            "FROM sync.push_session_rows");
    ck_assert_str_eq(staged,
                     "0|3|11111111111141118111111111111111|1|0|{\"data\":\"\\\\x000168656c6c6fff\",\"id\":\"" ID1
                     "\",\"n\":9007199254740992,\"name\":\"last\",\"z\":1.5}\n"
                     "1|4|48656c6c6f20576f726c64|2|3|{\"body\":null,\"slug\":\"Hello World\"}\n"
                     "2|9|22222222222242228222222222222222|3|7|NULL\n"
                     "3|9|11111111111141118111111111111111|1|0|{\"email\":\"u@x\",\"id\":\"" ID1 "\",\"name\":\"u\"}");
    free(staged);
    /* a full session takes no more */
    struct bt_reply *r = bt_push_chunk(U, S, id, fmt("{\"start_row_ordinal\":4,\"rows\":[%s]}", user_ins(ID3, "c")));
    bt_assert_error(r, 400, "push_chunk_invalid", "chunk exceeds planned_row_count");
    bt_reply_free(r);
}
END_TEST

START_TEST(test_chunk_checks_the_initialization_lease)
{
    struct bt_reply *r = bt_connect(U, S, "{\"has_local_pending_rows\":true}");
    char *lease = strdup(str(r, "initialization_id"));
    bt_reply_free(r);
    r = bt_push_create(U, S, fmt("{\"source_bundle_id\":1,\"planned_row_count\":2,\"initialization_id\":\"%s\"}", lease));
    char *id = strdup(str(r, "push_id"));
    bt_reply_free(r);
    bt_exec("UPDATE sync.scope_state SET lease_expires_at = clock_timestamp() + interval '5 s'");
    chunk_ok(U, S, id, 0, user_ins(ID1, "a"), 1);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.scope_state WHERE lease_expires_at > clock_timestamp() + "
                              "interval '800 s'"),
                     1);
    /* the lease taken over by another source */
    bt_exec("UPDATE sync.scope_state SET initializer_source_id = 'dev-b'");
    char *before = state();
    r = bt_push_chunk(U, S, id, fmt("{\"start_row_ordinal\":1,\"rows\":[%s]}", user_ins(ID2, "b")));
    bt_assert_error(r, 409, "initialization_stale", "source does not own the active initialization lease");
    bt_reply_free(r);
    /* the scope initialized meanwhile */
    bt_exec("UPDATE sync.scope_state SET state_code = 2, initializer_source_id = NULL, initialization_id = NULL, "
            "lease_expires_at = NULL, initialized_at = now(), initialized_by_source_id = 'dev-b'");
    before = state();
    r = bt_push_chunk(U, S, id, fmt("{\"start_row_ordinal\":1,\"rows\":[%s]}", user_ins(ID2, "b")));
    bt_assert_error(r, 409, "initialization_stale", "scope is no longer initializing");
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
}
END_TEST

/* ------------------------------------------------------------------------------ delete */

START_TEST(test_delete)
{
    init_scope(U, S);
    init_scope("bob", S);
    char *id = create_ok(U, S, 1, 2);
    chunk_ok(U, S, id, 0, user_ins(ID1, "a"), 1);
    char *before = state();
    struct bt_reply *r = bt_push_delete("bob", S, id);
    bt_assert_error(r, 403, "push_session_forbidden", fmt("push session %s does not belong to the authenticated user", id));
    bt_reply_free(r);
    r = bt_push_delete(U, S, "x");
    bt_assert_error(r, 404, "push_session_not_found", "push session x was not found");
    bt_reply_free(r);
    r = bt_push_delete(U, S, NOPE);
    bt_assert_error(r, 404, "push_session_not_found", "push session " NOPE " was not found");
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
    /* any source of the user may delete it */
    r = bt_push_delete(U, "dev-b", id);
    ck_assert_int_eq(r->status, 204);
    ck_assert_str_eq(r->body, "");
    bt_reply_free(r);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.push_sessions"), 0);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.push_session_rows"), 0);
    r = bt_push_delete(U, S, id);
    bt_assert_error(r, 404, "push_session_not_found", NULL);
    bt_reply_free(r);
    /* expired: 410, and kept */
    id = create_ok(U, S, 1, 1);
    bt_exec("UPDATE sync.push_sessions SET expires_at = clock_timestamp() - interval '1 s'");
    before = state();
    r = bt_push_delete(U, S, id);
    bt_assert_error(r, 410, "push_session_expired", fmt("push session %s has expired; start a new push session", id));
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
}
END_TEST

/* ------------------------------------------------------------------------------ suite */

static Suite *push_suite(void)
{
    Suite *s = suite_create("bundle_push");
    TCase *tc = bt_tcase("create");
    tcase_add_test(tc, test_create_invalid_bodies_write_nothing);
    tcase_add_test(tc, test_create_scope_lifecycle);
    tcase_add_test(tc, test_create_staging_and_hard_replace);
    tcase_add_test(tc, test_create_deletes_every_users_expired_sessions);
    tcase_add_test(tc, test_create_source_sequence);
    suite_add_tcase(s, tc);
    tc = bt_tcase("chunks");
    tcase_add_test(tc, test_chunk_row_validation_before_lookup);
    tcase_add_test(tc, test_chunk_session_checks);
    tcase_add_test(tc, test_chunk_stages_canonical_rows);
    tcase_add_test(tc, test_chunk_checks_the_initialization_lease);
    suite_add_tcase(s, tc);
    tc = bt_tcase("delete");
    tcase_add_test(tc, test_delete);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(push_suite(), NULL);
}
