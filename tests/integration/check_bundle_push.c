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
#include <time.h>
#include <unistd.h>

#include "bundle_hash.h"
#include "strbuf.h"

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

/* ------------------------------------------------------------------------------ commit */

/* Reads bundle seq back page by page (max_rows per page), checks the paging contract and that
 * bundle_hash and byte_count are what src/bundle_hash.c computes over the rows; the rows as one
 * JSON array text. */
static char *read_back(const char *user, long long seq, int max_rows)
{
    struct bundle_hasher h;
    ck_assert(bundle_hasher_init(&h));
    strbuf_t all = STRBUF_INIT;
    sb_putc(&all, '[');
    long long after = -1, n = 0;
    char *hash = NULL;
    for (;;) {
        struct bt_reply *r = bt_committed_rows(user, S, fmt("%lld", seq), after < 0 ? NULL : fmt("%lld", after),
                                               fmt("%d", max_rows));
        bt_assert_ok(r, 200);
        ck_assert_int_eq(tdb_int(r->json, "bundle_seq"), seq);
        if (!hash)
            hash = strdup(str(r, "bundle_hash"));
        json_object *rows = tdb_get(r->json, "rows");
        int len = (int)json_object_array_length(rows);
        ck_assert_int_le(len, max_rows);
        for (int i = 0; i < len; i++) {
            json_object *row = json_object_array_get_idx(rows, (size_t)i);
            ck_assert_int_eq(tdb_int(row, "row_version"), seq);
            json_object *payload = NULL;
            bool has_payload = json_object_object_get_ex(row, "payload", &payload);
            ck_assert(has_payload == (strcmp(tdb_str(row, "op"), "DELETE") != 0));
            const char *key = json_object_to_json_string_ext(tdb_get(row, "key"), JSON_C_TO_STRING_PLAIN);
            const char *pl = has_payload ? json_object_to_json_string_ext(payload, JSON_C_TO_STRING_PLAIN) : NULL;
            char err[256];
            ck_assert_msg(bundle_hasher_add_row(&h, tdb_str(row, "schema"), tdb_str(row, "table"), key, strlen(key),
                                                tdb_str(row, "op"), seq, pl, pl ? strlen(pl) : 0, err, sizeof err),
                          "%s", err);
            if (n)
                sb_putc(&all, ',');
            sb_puts(&all, json_object_to_json_string_ext(row, JSON_C_TO_STRING_PLAIN));
            n++;
        }
        long long next = tdb_int(r->json, "next_row_ordinal");
        bool more = tdb_bool(r->json, "has_more");
        ck_assert_int_eq(next, len ? (after < 0 ? -1 : after) + len : (after < 0 ? 0 : after));
        ck_assert(!more || len > 0);
        bt_reply_free(r);
        if (!more)
            break;
        after = next;
    }
    sb_putc(&all, ']');
    char hex[BUNDLE_HASH_HEX_LEN + 1];
    uint64_t bytes;
    ck_assert(bundle_hasher_finish(&h, hex, &bytes));
    bundle_hasher_free(&h);
    ck_assert_str_eq(hex, hash);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.bundle_log WHERE bundle_seq = %lld AND byte_count = %llu "
                              "AND encode(bundle_hash, 'hex') = '%s' AND row_count = %lld",
                              seq, (unsigned long long)bytes, hex, n),
                     1);
    free(hash);
    return all.data;
}

START_TEST(test_commit_one_chunk)
{
    init_scope(U, S);
    /* the child before its parent, a text key */
    const char *rows = fmt("%s,%s,%s",
                           row("posts", "INSERT", ID2, 0,
                               "{\"title\":\"t\",\"content\":\"c <&>\",\"author_id\":\"" ID1 "\"}"),
                           user_ins(ID1, "ann"), row("notes", "INSERT", "Hello World", 0, "{\"body\":\"hi\"}"));
    char *id = create_ok(U, S, 1, 3);
    chunk_ok(U, S, id, 0, rows, 3);
    struct bt_reply *r = bt_push_commit(U, S, id);
    bt_assert_ok(r, 200);
    char *hash = bt_query("SELECT encode(bundle_hash, 'hex') FROM sync.bundle_log");
    ck_assert_str_eq(r->body, fmt("{\"bundle_seq\":1,\"source_id\":\"dev-a\",\"source_bundle_id\":1,\"row_count\":3,"
                                  "\"bundle_hash\":\"%s\"}\n",
                                  hash));
    bt_reply_free(r);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.push_sessions"), 0);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.push_session_rows"), 0);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.bundle_capture_stage"), 0);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.source_state WHERE source_id = 'dev-a' AND state = 'active' "
                              "AND max_committed_source_bundle_id = 1"),
                     1);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.row_state WHERE bundle_seq = 1 AND NOT deleted"), 3);
    ck_assert_int_eq(bt_count("SELECT next_bundle_seq FROM sync.user_state"), 2);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM business.posts WHERE _sync_scope_id = 'alice' AND author_id = '" ID1
                              "'"),
                     1);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM business.notes WHERE _sync_scope_id = 'alice' AND slug = "
                              "'Hello World' AND body = 'hi'"),
                     1);
    char *all = read_back(U, 1, 2);
    /* the rows in capture order, the database's defaults in the payload, timestamps in UTC */
    json_object *rowsj = json_tokener_parse(all);
    ck_assert_int_eq((int)json_object_array_length(rowsj), 3);
    json_object *post = json_object_array_get_idx(rowsj, 0), *user = json_object_array_get_idx(rowsj, 1);
    ck_assert_str_eq(tdb_str(post, "table"), "posts");
    ck_assert_str_eq(tdb_str(tdb_get(post, "payload"), "content"), "c <&>");
    ck_assert_str_eq(tdb_str(user, "op"), "INSERT");
    const char *created = tdb_str(tdb_get(user, "payload"), "created_at");
    ck_assert_msg(strlen(created) > 6 && strcmp(created + strlen(created) - 6, "+00:00") == 0, "UTC: %s", created);
    ck_assert(tdb_json_eq(tdb_get(json_object_array_get_idx(rowsj, 2), "key"), "{\"slug\":\"Hello World\"}"));
    json_object_put(rowsj);
    /* the wire text is the reference's encoding */
    r = bt_committed_rows(U, S, "1", NULL, NULL);
    ck_assert_msg(strstr(r->body, "\"content\":\"c \\u003c\\u0026\\u003e\"") != NULL, "%s", r->body);
    ck_assert_msg(strstr(r->body, "{\"schema\":\"business\",\"table\":\"notes\",\"key\":{\"slug\":\"Hello World\"},"
                                  "\"op\":\"INSERT\",\"row_version\":1,\"payload\":{\"body\":\"hi\",\"slug\":\"Hello World\"}}")
                      != NULL,
                  "%s", r->body);
    bt_reply_free(r);
}
END_TEST

START_TEST(test_commit_many_chunks_and_pages)
{
    init_scope(U, S);
    char *id = create_ok(U, S, 1, 5);
    chunk_ok(U, S, id, 0, fmt("%s,%s", user_ins(ID1, "a"), user_ins(ID2, "b")), 2);
    chunk_ok(U, S, id, 2, fmt("%s,%s", user_ins(ID3, "c"), row("notes", "INSERT", "n1", 0, "{}")), 4);
    chunk_ok(U, S, id, 4, row("notes", "INSERT", "n2", 0, "{\"body\":null}"), 5);
    struct bt_reply *r = bt_push_commit(U, S, id);
    bt_assert_ok(r, 200);
    ck_assert_int_eq(tdb_int(r->json, "row_count"), 5);
    bt_reply_free(r);
    free(read_back(U, 1, 2));
    free(read_back(U, 1, 1));
    free(read_back(U, 1, 5000));
    /* the pages of the reference's example (SPEC-v2 §3.6) */
    r = bt_committed_rows(U, S, "1", NULL, "2");
    ck_assert_int_eq(tdb_int(r->json, "next_row_ordinal"), 1);
    ck_assert(tdb_bool(r->json, "has_more"));
    bt_reply_free(r);
    r = bt_committed_rows(U, S, "1", "3", "2");
    ck_assert_int_eq((int)json_object_array_length(tdb_get(r->json, "rows")), 1);
    ck_assert_int_eq(tdb_int(r->json, "next_row_ordinal"), 4);
    ck_assert(!tdb_bool(r->json, "has_more"));
    bt_reply_free(r);
    r = bt_committed_rows(U, S, "1", "4", NULL);
    ck_assert_msg(strstr(r->body, "\"rows\":[],\"next_row_ordinal\":4,\"has_more\":false}") != NULL, "%s", r->body);
    bt_reply_free(r);
    r = bt_committed_rows(U, S, "1", "", "");   /* empty = absent */
    ck_assert_int_eq((int)json_object_array_length(tdb_get(r->json, "rows")), 5);
    ck_assert_int_eq(tdb_int(r->json, "next_row_ordinal"), 4);
    bt_reply_free(r);
    /* the cap, silently */
    BT_CFG.max_rows_per_committed_bundle_chunk = 3;
    r = bt_committed_rows(U, S, "1", NULL, "1000");
    ck_assert_int_eq((int)json_object_array_length(tdb_get(r->json, "rows")), 3);
    ck_assert(tdb_bool(r->json, "has_more"));
    bt_reply_free(r);
    BT_CFG.default_rows_per_committed_bundle_chunk = 2;
    r = bt_committed_rows(U, S, "1", NULL, NULL);
    ck_assert_int_eq((int)json_object_array_length(tdb_get(r->json, "rows")), 2);
    bt_reply_free(r);

    /* the errors */
    const char *const bad[][4] = {
        { "x", NULL, NULL, "bundle_seq must be an integer" }, { "1.0", NULL, NULL, "bundle_seq must be an integer" },
        { "1", "a", NULL, "after_row_ordinal must be an integer" }, { "1", NULL, "1e3", "max_rows must be an integer" },
        { "0", NULL, NULL, "bundle_seq must be > 0" }, { "-1", "x", NULL, "after_row_ordinal must be an integer" },
        { "1", "-1", NULL, "after_row_ordinal must be >= 0" }, { "1", NULL, "0", "max_rows must be > 0" },
        { "-5", "-1", "0", "bundle_seq must be > 0" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = bt_committed_rows(U, S, bad[i][0], bad[i][1], bad[i][2]);
        bt_assert_error(r, 400, "committed_bundle_chunk_invalid", bad[i][3]);
        bt_reply_free(r);
    }
    r = bt_committed_rows(U, S, "1", NULL, "0");
    ck_assert_str_eq(r->body, "{\"error\":\"committed_bundle_chunk_invalid\",\"message\":\"max_rows must be \\u003e 0\"}\n");
    bt_reply_free(r);
    r = bt_committed_rows(U, S, "2", NULL, NULL);
    bt_assert_error(r, 404, "committed_bundle_not_found", "committed bundle 2 was not found");
    bt_reply_free(r);
    r = bt_committed_rows("bob", S, "1", NULL, NULL);
    bt_assert_error(r, 500, "committed_bundle_rows_failed", "Failed to fetch committed bundle rows");
    bt_reply_free(r);
    /* another user's bundle 1 is not alice's */
    init_scope("bob", S);
    r = bt_committed_rows("bob", S, "1", NULL, NULL);
    bt_assert_error(r, 404, "committed_bundle_not_found", "committed bundle 1 was not found");
    bt_reply_free(r);
}
END_TEST

START_TEST(test_commit_replay_is_already_committed)
{
    init_scope(U, S);
    struct bt_reply *c = push(U, S, 1, fmt("%s,%s", user_ins(ID1, "a"), user_ins(ID2, "b")));
    bt_assert_ok(c, 200);
    char *before = state();
    for (int i = 0; i < 2; i++) {
        struct bt_reply *r = bt_push_create(U, S, "{\"source_bundle_id\":1,\"planned_row_count\":9}");
        bt_assert_ok(r, 200);
        ck_assert_str_eq(r->body, fmt("{\"status\":\"already_committed\",\"bundle_seq\":1,\"source_id\":\"dev-a\","
                                      "\"source_bundle_id\":1,\"row_count\":2,\"bundle_hash\":\"%s\"}\n",
                                      str(c, "bundle_hash")));
        bt_reply_free(r);
        /* even once the source is retired */
        bt_exec("UPDATE sync.source_state SET state = 'retired', replaced_by_source_id = 'dev-z', retirement_reason = 'x'");
    }
    bt_exec("UPDATE sync.source_state SET state = 'active', replaced_by_source_id = '', retirement_reason = ''");
    ASSERT_UNCHANGED(before);
    /* the next one */
    ck_assert_int_eq(push_ok(U, S, 2, row("users", "DELETE", ID2, 1, NULL)), 2);
    /* below the floor the tuple is history */
    bt_exec("UPDATE sync.user_state SET retained_bundle_floor = 1");
    struct bt_reply *r = bt_push_create(U, S, "{\"source_bundle_id\":1,\"planned_row_count\":1}");
    bt_assert_error(r, 409, "history_pruned",
                    "source tuple (dev-a, 1) for user alice is older than retained duplicate history; max committed "
                    "source_bundle_id is 2");
    bt_reply_free(r);
    r = bt_committed_rows(U, S, "1", NULL, NULL);
    bt_assert_error(r, 409, "history_pruned", "requested checkpoint 1 is older than retained history floor 1 for user alice");
    bt_reply_free(r);
    bt_reply_free(c);
}
END_TEST

/* Stages rows, expects the commit to answer status/code/message, and nothing to change. */
static struct bt_reply *commit_refused(const char *rows, int status, const char *code, const char *message)
{
    int n = count_rows(rows);
    long long sbid = bt_count("SELECT coalesce((SELECT max_committed_source_bundle_id FROM sync.source_state WHERE "
                              "source_id = 'dev-a'), 0) + 1");
    char *id = create_ok(U, S, sbid, n);
    chunk_ok(U, S, id, 0, rows, n);
    char *before = state();
    struct bt_reply *r = bt_push_commit(U, S, id);
    bt_assert_error(r, status, code, message);
    ASSERT_UNCHANGED(before);
    free(before);
    free(id);
    return r;
}

START_TEST(test_commit_conflicts)
{
    init_scope(U, S);
    push_ok(U, S, 1, fmt("%s,%s", user_ins(ID1, "ann"),
                         row("files", "INSERT", ID3, 0, "{\"name\":\"f\",\"data\":\"AAFoZWxsb/8=\"}")));
    struct bt_reply *r = commit_refused(user_ins(ID1, "x"), 409, "push_conflict",
                                        "insert conflict on business.users " ID1 ": expected base_row_version 1, got 0");
    json_object *cf = tdb_get(r->json, "conflict");
    ck_assert_str_eq(tdb_str(cf, "schema"), "business");
    ck_assert_str_eq(tdb_str(cf, "table"), "users");
    ck_assert(tdb_json_eq(tdb_get(cf, "key"), "{\"id\":\"" ID1 "\"}"));
    ck_assert_str_eq(tdb_str(cf, "op"), "INSERT");
    ck_assert_int_eq(tdb_int(cf, "base_row_version"), 0);
    ck_assert_int_eq(tdb_int(cf, "server_row_version"), 1);
    ck_assert(!tdb_bool(cf, "server_row_deleted"));
    json_object *sr = tdb_get(cf, "server_row");
    ck_assert_str_eq(tdb_str(sr, "name"), "ann");
    ck_assert_str_eq(tdb_str(sr, "id"), ID1);
    ck_assert(!tdb_has(sr, "_sync_scope_id"));
    /* jsonb's key order, compacted (no bytea column in users) */
    ck_assert_msg(strstr(r->body, "\"server_row\":{\"id\":\"" ID1 "\",\"name\":\"ann\",\"email\":\"ann@x\",") != NULL, "%s",
                  r->body);
    bt_reply_free(r);
    r = commit_refused(row("users", "INSERT", ID1, 1, "{\"name\":\"x\",\"email\":\"y\"}"), 409, "push_conflict",
                       "insert conflict on business.users " ID1 ": row already exists at version 1");
    bt_reply_free(r);
    r = commit_refused(row("users", "INSERT", ID2, 5, "{\"name\":\"x\",\"email\":\"y\"}"), 409, "push_conflict",
                       "insert conflict on business.users " ID2 ": expected missing row at version 0, got 5");
    ck_assert_msg(strstr(r->body, "\"base_row_version\":5,\"server_row_version\":0,\"server_row_deleted\":false,"
                                  "\"server_row\":null}}\n") != NULL,
                  "%s", r->body);
    bt_reply_free(r);
    r = commit_refused(row("users", "UPDATE", ID2, 0, "{\"name\":\"x\"}"), 409, "push_conflict",
                       "update conflict on business.users " ID2 ": row does not exist");
    bt_reply_free(r);
    r = commit_refused(row("users", "UPDATE", ID1, 0, "{\"name\":\"x\"}"), 409, "push_conflict",
                       "update conflict on business.users " ID1 ": expected version 1, got 0");
    bt_reply_free(r);
    r = commit_refused(row("users", "DELETE", ID1, 2, NULL), 409, "push_conflict",
                       "delete conflict on business.users " ID1 ": expected version 1, got 2");
    ck_assert_str_eq(tdb_str(tdb_get(r->json, "conflict"), "op"), "DELETE");
    bt_reply_free(r);
    /* the first conflicting row in staged order wins; good rows before it are not applied */
    r = commit_refused(fmt("%s,%s,%s", user_ins(ID2, "new"), row("users", "DELETE", ID1, 9, NULL),
                           row("users", "UPDATE", NOPE, 0, "{\"name\":\"x\"}")),
                       409, "push_conflict", "delete conflict on business.users " ID1 ": expected version 1, got 9");
    bt_reply_free(r);
    /* bytea in the server row: base64, canonical */
    r = commit_refused(row("files", "UPDATE", ID3, 7, "{\"name\":\"g\"}"), 409, "push_conflict",
                       "update conflict on business.files " ID3 ": expected version 1, got 7");
    ck_assert_msg(strstr(r->body, "\"server_row\":{\"data\":\"AAFoZWxsb/8=\",\"id\":\"" ID3 "\",\"name\":\"f\"}") != NULL,
                  "%s", r->body);
    bt_reply_free(r);
    /* a tombstone */
    ck_assert_int_eq(push_ok(U, S, 2, row("users", "DELETE", ID1, 1, NULL)), 2);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.row_state WHERE deleted AND bundle_seq = 2"), 1);
    r = commit_refused(row("users", "UPDATE", ID1, 2, "{\"name\":\"x\"}"), 409, "push_conflict",
                       "update conflict on business.users " ID1 ": row does not exist");
    ck_assert_msg(strstr(r->body, "\"server_row_version\":2,\"server_row_deleted\":true,\"server_row\":null}}") != NULL,
                  "%s", r->body);
    bt_reply_free(r);
    r = commit_refused(user_ins(ID1, "again"), 409, "push_conflict",
                       "insert conflict on business.users " ID1 ": expected base_row_version 2, got 0");
    bt_reply_free(r);
    /* re-inserted at the tombstone's version */
    ck_assert_int_eq(push_ok(U, S, 3, row("users", "INSERT", ID1, 2, "{\"name\":\"back\",\"email\":\"b@x\"}")), 3);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.row_state WHERE NOT deleted AND bundle_seq = 3"), 1);
}
END_TEST

START_TEST(test_commit_apply_semantics)
{
    init_scope(U, S);
    push_ok(U, S, 1, fmt("%s,%s,%s", user_ins(ID1, "a"), user_ins(ID2, "b"), user_ins(ID3, "c")));
    bt_exec("UPDATE sync.row_state SET bundle_seq = bundle_seq");   /* (no-op, for symmetry) */
    char *updated_before = bt_query("SELECT updated_at FROM business.users WHERE id = '" ID1 "'");
    /* only the sent columns change; a batch of two updates and one of another column set */
    push_ok(U, S, 2, fmt("%s,%s,%s", row("users", "UPDATE", ID1, 1, "{\"name\":\"A\"}"),
                         row("users", "UPDATE", ID2, 1, "{\"name\":\"B\"}"),
                         row("users", "UPDATE", ID3, 1, "{\"email\":\"C@x\"}")));
    ck_assert_int_eq(bt_count("SELECT count(*) FROM business.users WHERE (id = '" ID1 "' AND name = 'A' AND email = 'a@x') "
                              "OR (id = '" ID2 "' AND name = 'B' AND email = 'b@x') "
                              "OR (id = '" ID3 "' AND name = 'c' AND email = 'C@x')"),
                     3);
    char *updated_after = bt_query("SELECT updated_at FROM business.users WHERE id = '" ID1 "'");
    ck_assert_str_eq(updated_before, updated_after);
    free(read_back(U, 2, 1000));

    /* typed values: numbers through float64, bytea, timestamps in UTC, nulls */
    const char *typed = "{\"name\":\"t\",\"note\":null,\"count_value\":9007199254740993,\"enabled_flag\":1,"
                        "\"rating\":0.1,\"data\":\"AAFoZWxsb/8=\",\"created_at\":\"2026-03-22T14:00:00.5+02:00\"}";
    long long seq = push_ok(U, S, 3, row("typed_rows", "INSERT", NOPE, 0, typed));
    ck_assert_int_eq(bt_count("SELECT count(*) FROM business.typed_rows WHERE count_value = 9007199254740992 AND "
                              "rating = 0.1 AND data = '\\x000168656c6c6fff'::bytea AND note IS NULL AND "
                              "created_at = '2026-03-22T12:00:00.5Z'"),
                     1);
    char *all = read_back(U, seq, 1000);
    json_object *rows = json_tokener_parse(all);
    ck_assert(tdb_json_eq(tdb_get(json_object_array_get_idx(rows, 0), "payload"),
                          "{\"count_value\":9007199254740992,\"created_at\":\"2026-03-22T12:00:00.5+00:00\","
                          "\"data\":\"AAFoZWxsb/8=\",\"enabled_flag\":1,\"id\":\"" NOPE "\",\"name\":\"t\",\"note\":null,"
                          "\"rating\":0.1}"));
    json_object_put(rows);

    /* a cycle (teams <-> team_members) in one bundle, and a cascade: the bundle holds more rows
     * than were sent */
    const char *team = "aaaaaaaa-0000-4000-8000-000000000001", *member = "aaaaaaaa-0000-4000-8000-000000000002";
    push_ok(U, S, 4, fmt("%s,%s", row("teams", "INSERT", team, 0, fmt("{\"name\":\"t\",\"captain_member_id\":\"%s\"}", member)),
                         row("team_members", "INSERT", member, 0, fmt("{\"name\":\"m\",\"team_id\":\"%s\"}", team))));
    const char *parent = "bbbbbbbb-0000-4000-8000-000000000001", *child = "bbbbbbbb-0000-4000-8000-000000000002";
    seq = push_ok(U, S, 5, fmt("%s,%s", row("categories", "INSERT", parent, 0, "{\"name\":\"p\"}"),
                               row("categories", "INSERT", child, 0, fmt("{\"name\":\"c\",\"parent_id\":\"%s\"}", parent))));
    struct bt_reply *r = push(U, S, 6, row("categories", "DELETE", parent, seq, NULL));
    bt_assert_ok(r, 200);
    ck_assert_int_eq(tdb_int(r->json, "row_count"), 2);
    bt_reply_free(r);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.row_state WHERE deleted AND bundle_seq = 6"), 2);
    all = read_back(U, 6, 1);
    ck_assert_msg(strstr(all, child) != NULL, "%s", all);
}
END_TEST

START_TEST(test_commit_database_errors)
{
    init_scope(U, S);
    push_ok(U, S, 1, user_ins(ID1, "a"));
    /* a deferred foreign key, a NOT NULL, an unknown column, a type, a column named in another
     * case (jsonb_populate_record matches case-sensitively): 500, nothing kept */
    const char *const rows[] = {
        row("posts", "INSERT", ID2, 0, "{\"title\":\"t\",\"content\":\"c\",\"author_id\":\"" NOPE "\"}"),
        row("users", "INSERT", ID2, 0, "{\"email\":\"x\"}"),
        row("users", "INSERT", ID2, 0, "{\"name\":\"n\",\"email\":\"e\",\"nope\":1}"),
        row("typed_rows", "INSERT", ID2, 0, "{\"name\":\"n\",\"enabled_flag\":1e21}"),
        row("users", "UPDATE", ID1, 1, "{\"Name\":\"x\"}"),
        fmt("%s,%s", user_ins(ID2, "ok"), row("users", "UPDATE", ID1, 1, "{\"email\":null}")),
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        struct bt_reply *r = commit_refused(rows[i], 500, "push_session_commit_failed", "Failed to commit push session");
        bt_reply_free(r);
    }
    /* nothing captured: the business row vanished behind the triggers' back */
    bt_exec("SET session_replication_role = replica; DELETE FROM business.users; RESET session_replication_role");
    struct bt_reply *r = commit_refused(row("users", "UPDATE", ID1, 1, "{\"name\":\"x\"}"), 400, "push_commit_invalid",
                                        "push session produced no captured business-table effects");
    bt_reply_free(r);
}
END_TEST

START_TEST(test_commit_session_checks)
{
    init_scope(U, S);
    init_scope("bob", S);
    char *id = create_ok(U, S, 1, 2);
    chunk_ok(U, S, id, 0, user_ins(ID1, "a"), 1);
    char *before = state();
    struct bt_reply *r = bt_push_commit(U, S, "nope");
    bt_assert_error(r, 404, "push_session_not_found", "push session nope was not found");
    bt_reply_free(r);
    r = bt_push_commit("bob", S, id);
    bt_assert_error(r, 403, "push_session_forbidden", fmt("push session %s does not belong to the authenticated user", id));
    bt_reply_free(r);
    r = bt_push_commit(U, S, id);
    bt_assert_error(r, 400, "push_commit_invalid", "staged row count 1 does not match planned_row_count 2");
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
    /* one target in two chunks */
    chunk_ok(U, S, id, 1, row("users", "UPDATE", ID1, 0, "{\"name\":\"b\"}"), 2);
    before = state();
    r = bt_push_commit(U, S, id);
    bt_assert_error(r, 400, "push_commit_invalid", "duplicate target row in staged push session: business.users " ID1);
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
    /* ordinals with a hole (only by hand) */
    bt_exec("DELETE FROM sync.push_session_rows WHERE row_ordinal = 1");
    bt_exec("INSERT INTO sync.push_session_rows SELECT push_id, 5, 9, '\\x22222222222242228222222222222222'::bytea, 3, 0, NULL FROM "
            "sync.push_sessions");
    before = state();
    r = bt_push_commit(U, S, id);
    bt_assert_error(r, 400, "push_commit_invalid", "staged rows are not contiguous at row_ordinal 1");
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
    /* the source moved on meanwhile, or was retired */
    id = create_ok(U, S, 1, 1);
    chunk_ok(U, S, id, 0, user_ins(ID1, "a"), 1);
    bt_exec("INSERT INTO sync.source_state (user_pk, source_id, state, max_committed_source_bundle_id) "
            "SELECT user_pk, 'dev-a', 'active', 1 FROM sync.user_state WHERE user_id = 'alice'");
    before = state();
    r = bt_push_commit(U, S, id);
    bt_assert_error(r, 409, "source_sequence_changed",
                    "source dev-a for user alice changed expected next source_bundle_id from staged 1 to 2 before commit");
    bt_reply_free(r);
    bt_exec("UPDATE sync.source_state SET state = 'retired', replaced_by_source_id = 'dev-b', retirement_reason = 'x'");
    before = state();
    r = bt_push_commit(U, S, id);
    bt_assert_error(r, 409, "source_retired", "source dev-a for user alice was retired and replaced by dev-b");
    ck_assert_str_eq(str(r, "replaced_by_source_id"), "dev-b");
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
    /* expired */
    bt_exec("UPDATE sync.push_sessions SET expires_at = clock_timestamp() - interval '1 s'");
    r = bt_push_commit(U, S, id);
    bt_assert_error(r, 410, "push_session_expired", fmt("push session %s has expired; start a new push session", id));
    bt_reply_free(r);
}
END_TEST

START_TEST(test_seed_commit_initializes_the_scope)
{
    struct bt_reply *r = bt_connect(U, S, "{\"has_local_pending_rows\":true}");
    char *lease = strdup(str(r, "initialization_id"));
    bt_reply_free(r);
    r = bt_push_create(U, S, fmt("{\"source_bundle_id\":1,\"planned_row_count\":1,\"initialization_id\":\"%s\"}", lease));
    char *id = strdup(str(r, "push_id"));
    bt_reply_free(r);
    chunk_ok(U, S, id, 0, user_ins(ID1, "seed"), 1);
    /* the lease lost to another source: refused, nothing written */
    bt_exec("UPDATE sync.scope_state SET initializer_source_id = 'dev-b'");
    char *before = state();
    r = bt_push_commit(U, S, id);
    bt_assert_error(r, 409, "initialization_stale", "source does not own the active initialization lease");
    bt_reply_free(r);
    ASSERT_UNCHANGED(before);
    bt_exec("UPDATE sync.scope_state SET initializer_source_id = 'dev-a'");
    r = bt_push_commit(U, S, id);
    bt_assert_ok(r, 200);
    bt_reply_free(r);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.scope_state WHERE state_code = 2 AND initialized_by_source_id = "
                              "'dev-a' AND initialization_id IS NULL AND lease_expires_at IS NULL"),
                     1);
    /* the scope is initialized now: pushes without an id */
    ck_assert_int_eq(push_ok(U, "dev-b", 1, user_ins(ID2, "b")), 2);
}
END_TEST

START_TEST(test_retention)
{
    BT_CFG.retained_bundles_per_user = 2;
    BT_CFG.retention_prune_batch = 1;
    init_scope(U, S);
    const char *ids[] = { ID1, ID2, ID3, NOPE };
    for (int i = 0; i < 4; i++)
        push_ok(U, S, i + 1, user_ins(ids[i], "x"));
    ck_assert_int_eq(bt_count("SELECT retained_bundle_floor FROM sync.user_state"), 2);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.bundle_log"), 2);
    ck_assert_int_eq(bt_count("SELECT min(bundle_seq) FROM sync.bundle_rows"), 3);
    struct bt_reply *r = bt_committed_rows(U, S, "2", NULL, NULL);
    bt_assert_error(r, 409, "history_pruned", "requested checkpoint 2 is older than retained history floor 2 for user alice");
    bt_reply_free(r);
    free(read_back(U, 3, 10));
    r = bt_push_create(U, S, "{\"source_bundle_id\":2,\"planned_row_count\":1}");
    bt_assert_error(r, 409, "history_pruned", NULL);
    bt_reply_free(r);
    r = bt_push_create(U, S, "{\"source_bundle_id\":3,\"planned_row_count\":1}");
    ck_assert_str_eq(str(r, "status"), "already_committed");
    bt_reply_free(r);
}
END_TEST

static char *notification(PGconn *listener)
{
    for (int tries = 0; tries < 50; tries++) {
        PQconsumeInput(listener);
        PGnotify *n = PQnotifies(listener);
        if (n) {
            char *out = fmt("%s %s", n->relname, n->extra);
            PQfreemem(n);
            return out;
        }
        usleep(20000);
    }
    return NULL;
}

START_TEST(test_notify_only_with_watch)
{
    PGconn *listener = tdb_connect(T.dbname);
    tdb_conn_exec(listener, fmt("LISTEN \"%s\"", BT_CFG.notify_channel));
    init_scope(U, S);
    push_ok(U, S, 1, user_ins(ID1, "a"));
    ck_assert_ptr_null(notification(listener));
    BT_CFG.bundle_watch = true;
    push_ok(U, S, 2, user_ins(ID2, "b"));
    long long pk = bt_count("SELECT user_pk FROM sync.user_state");
    char *n = notification(listener);
    ck_assert_ptr_nonnull(n);
    ck_assert_str_eq(n, fmt("%s {\"user_pk\":%lld,\"bundle_seq\":2,\"source_id\":\"dev-a\",\"source_bundle_id\":2}",
                            BT_CFG.notify_channel, pk));
    /* a refused commit notifies nobody */
    struct bt_reply *r = commit_refused(user_ins(ID2, "again"), 409, "push_conflict", NULL);
    bt_reply_free(r);
    ck_assert_ptr_null(notification(listener));
    PQfinish(listener);
}
END_TEST

/* ---------------------------------------------------------------------------- concurrency */

/* Forks n children, each on a connection of its own, released together; their exit codes. */
static void run_racers(int n, int (*body)(int), int codes[])
{
    int gate[2];
    ck_assert_int_eq(pipe(gate), 0);
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            close(gate[1]);
            T.conn = tdb_connect_raw(T.dbname);   /* the parent's is abandoned, not closed */
            if (!T.conn || PQstatus(T.conn) != CONNECTION_OK)
                _exit(90);
            char ch;
            while (read(gate[0], &ch, 1) > 0)
                ;
            _exit(body(i));
        }
    }
    close(gate[0]);
    close(gate[1]);
    for (int i = 0; i < n; i++) {
        int st = 0;
        ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
        codes[i] = WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
    }
    free(pids);
}

#define RACERS 8
#define PUSHES 5

static int race_many_sources(int i)
{
    const char *source = fmt("racer-%d", i);
    for (int k = 1; k <= PUSHES; k++) {
        struct bt_reply *r = push(U, source, k, row("notes", "INSERT", fmt("n-%d-%d", i, k), 0, "{\"body\":\"x\"}"));
        int status = r->status;
        bt_reply_free(r);
        if (status != 200)
            return 1;
    }
    return 0;
}

START_TEST(test_race_dense_bundle_seq)
{
    init_scope(U, S);
    int codes[RACERS];
    run_racers(RACERS, race_many_sources, codes);
    for (int i = 0; i < RACERS; i++)
        ck_assert_int_eq(codes[i], 0);
    const int total = RACERS * PUSHES;
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.bundle_log"), total);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM generate_series(1, %d) s JOIN sync.bundle_log b ON b.bundle_seq = s",
                              total),
                     total);
    ck_assert_int_eq(bt_count("SELECT next_bundle_seq FROM sync.user_state"), total + 1);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.source_state WHERE max_committed_source_bundle_id = %d", PUSHES),
                     RACERS);
    /* per source the ids 1..PUSHES in bundle_seq order */
    ck_assert_int_eq(bt_count("SELECT count(*) FROM (SELECT source_bundle_id, row_number() OVER (PARTITION BY source_id "
                              "ORDER BY bundle_seq) n FROM sync.bundle_log) x WHERE source_bundle_id <> n"),
                     0);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.row_state"), total);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM business.notes"), total);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.push_sessions"), 0);
    for (int s = 1; s <= total; s += 7)
        free(read_back(U, s, 1000));
}
END_TEST

static int race_same_row(int i)
{
    struct bt_reply *r = push(U, fmt("racer-%d", i), 1, row("users", "UPDATE", ID1, 1, fmt("{\"name\":\"by-%d\"}", i)));
    int code = r->status == 200 ? 0 : r->status == 409 && strcmp(r->error, "push_conflict") == 0 ? 1 : 2;
    bt_reply_free(r);
    return code;
}

START_TEST(test_race_one_winner_per_row_version)
{
    init_scope(U, S);
    push_ok(U, S, 1, user_ins(ID1, "a"));
    int codes[RACERS], wins = 0, conflicts = 0;
    run_racers(RACERS, race_same_row, codes);
    for (int i = 0; i < RACERS; i++) {
        wins += codes[i] == 0;
        conflicts += codes[i] == 1;
    }
    ck_assert_int_eq(wins, 1);
    ck_assert_int_eq(conflicts, RACERS - 1);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.bundle_log"), 2);
    ck_assert_int_eq(bt_count("SELECT bundle_seq FROM sync.row_state"), 2);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.source_state"), 2);
}
END_TEST

/* the same tuple pushed by many at once: one bundle; the others learn it was committed, or
 * find their session replaced */
static int race_same_tuple(int i)
{
    (void)i;
    struct bt_reply *r = bt_push_create(U, S, "{\"source_bundle_id\":2,\"planned_row_count\":1}");
    if (r->status != 200) {
        bt_reply_free(r);
        return 3;
    }
    if (strcmp(str(r, "status"), "already_committed") == 0) {
        int code = tdb_int(r->json, "bundle_seq") == 2 ? 1 : 3;
        bt_reply_free(r);
        return code;
    }
    char *id = strdup(str(r, "push_id"));
    bt_reply_free(r);
    r = bt_push_chunk(U, S, id, fmt("{\"start_row_ordinal\":0,\"rows\":[%s]}", user_ins(ID2, "b")));
    int status = r->status;
    bt_reply_free(r);
    if (status == 404)
        return 2;
    if (status != 200)
        return 3;
    r = bt_push_commit(U, S, id);
    status = r->status;
    bt_reply_free(r);
    return status == 200 ? 0 : status == 404 ? 2 : 3;
}

START_TEST(test_race_replays_of_one_tuple)
{
    init_scope(U, S);
    push_ok(U, S, 1, user_ins(ID1, "a"));
    int codes[RACERS], committed = 0;
    run_racers(RACERS, race_same_tuple, codes);
    for (int i = 0; i < RACERS; i++) {
        ck_assert_msg(codes[i] <= 2, "racer %d: %d", i, codes[i]);
        committed += codes[i] == 0;
    }
    ck_assert_int_eq(committed, 1);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.bundle_log WHERE source_bundle_id = 2"), 1);
    /* and afterwards every replay is the same answer */
    char *hash = bt_query("SELECT encode(bundle_hash, 'hex') FROM sync.bundle_log WHERE bundle_seq = 2");
    int codes2[RACERS];
    run_racers(RACERS, race_same_tuple, codes2);
    for (int i = 0; i < RACERS; i++)
        ck_assert_int_eq(codes2[i], 1);
    ck_assert_str_eq(bt_query("SELECT encode(bundle_hash, 'hex') FROM sync.bundle_log WHERE bundle_seq = 2"), hash);
    ck_assert_int_eq(bt_count("SELECT count(*) FROM sync.bundle_log"), 2);
}
END_TEST

/* ------------------------------------------------------------------------------ speed */

START_TEST(test_thousand_rows)
{
    init_scope(U, S);
    strbuf_t rows = STRBUF_INIT;
    for (int i = 0; i < 1000; i++) {
        if (i)
            sb_putc(&rows, ',');
        sb_puts(&rows, row("typed_rows", "INSERT", fmt("00000000-0000-4000-8000-%012d", i), 0,
                           fmt("{\"name\":\"row %d\",\"note\":\"n <%d>\",\"count_value\":%d,\"enabled_flag\":1,"
                               "\"rating\":%d.25,\"data\":\"AAFoZWxsb/8=\",\"created_at\":\"2026-03-22T12:00:00.5Z\"}",
                               i, i, i * 7, i)));
    }
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char *id = create_ok(U, S, 1, 1000);
    chunk_ok(U, S, id, 0, rows.data, 1000);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct bt_reply *r = bt_push_commit(U, S, id);
    clock_gettime(CLOCK_MONOTONIC, &t2);
    bt_assert_ok(r, 200);
    ck_assert_int_eq(tdb_int(r->json, "row_count"), 1000);
    bt_reply_free(r);
    double stage = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    double commit = (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_nsec - t1.tv_nsec) / 1e9;
    fprintf(stderr, "1000-row push: create+chunk %.1f ms, commit %.1f ms, %.0f rows/s\n", stage * 1e3, commit * 1e3,
            1000 / (stage + commit));
    free(read_back(U, 1, 1000));
    sb_free(&rows);
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
    tc = bt_tcase("commit");
    tcase_add_test(tc, test_commit_one_chunk);
    tcase_add_test(tc, test_commit_many_chunks_and_pages);
    tcase_add_test(tc, test_commit_replay_is_already_committed);
    tcase_add_test(tc, test_commit_conflicts);
    tcase_add_test(tc, test_commit_apply_semantics);
    tcase_add_test(tc, test_commit_database_errors);
    tcase_add_test(tc, test_commit_session_checks);
    tcase_add_test(tc, test_seed_commit_initializes_the_scope);
    tcase_add_test(tc, test_retention);
    tcase_add_test(tc, test_notify_only_with_watch);
    tcase_add_test(tc, test_thousand_rows);
    suite_add_tcase(s, tc);
    tc = bt_tcase("concurrency");
    tcase_add_test(tc, test_race_dense_bundle_seq);
    tcase_add_test(tc, test_race_one_winner_per_row_version);
    tcase_add_test(tc, test_race_replays_of_one_tuple);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(push_suite(), NULL);
}
