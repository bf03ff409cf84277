/* Foreign keys against a real PostgreSQL (tests/pg.sh): SPEC §4.2, §4.3 and §6 — catalog
 * discovery and apply ranks, the pre-check of upserts (parents in the batch, in the database, in
 * the sidecar; value conversion per parent type; precheck_error for a value that cannot be
 * compared), delete order, and the DEFERRABLE migration.
 *
 * Every test works in a fresh database of its own (testdb.c). The business schema is created in
 * it BEFORE the catalog is read with sync_schema_discover, exactly as a worker does after it
 * connects (app_db_setup: migration when auto_migrate_fks, then discovery). All registered tables
 * use the materializer none: business tables are never written by the engine, so a registered
 * parent counts when it is a live sidecar row of the user (or a row of the business table). */
#include "testdb.h"
#include "../capture.h"
#include "../run_suites.h"

#include "strbuf.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define U "alice"
#define U2 "bob"
#define D "phone"

/* rows */
#define USER1 "11111111-1111-4111-8111-111111111111"
#define USER2 "12121212-1212-4212-8212-121212121212"
#define POST1 "22222222-2222-4222-8222-222222222222"
#define POST2 "23232323-2323-4323-8323-232323232323"
#define POST3 "24242424-2424-4424-8424-242424242424"
#define COMM1 "33333333-3333-4333-8333-333333333333"
#define COMM2 "34343434-3434-4434-8434-343434343434"
#define CAT1 "44444444-4444-4444-8444-444444444444"
#define CAT2 "45454545-4545-4545-8545-454545454545"
#define CAT3 "46464646-4646-4646-8646-464646464646"
#define CAT4 "47474747-4747-4747-8747-474747474747"
#define MISSING "deadbeef-dead-4eef-8eef-deadbeefdead"
#define ROW_A "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
#define ROW_B "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"

/* A uuid whose base64 uses '+' and '/' (and '-' '_' in the URL-safe alphabet). */
#define UP "fbefbefb-fbef-4bef-bfbe-fbefbefbefbe"
#define UP_B64 "+++++/vvS++/vvvvvvvvvg=="
#define UP_B64_NOPAD "+++++/vvS++/vvvvvvvvvg"
#define UP_B64_URL "-----_vvS--_vvvvvvvvvg=="
#define UQ "0123abcd-ef01-4234-8567-89abcdef0123"
#define UQ_B64 "ASOrze8BQjSFZ4mrze8BIw=="

/* ---------------------------------------------------------------------------- schemas */

/* The schema of the pre-check tests: a three-level chain, a self-reference, unregistered
 * parents of every kind the C side converts (text, int2/4/8, uuid) and of kinds it leaves to
 * sync.fk_castable (numeric(10,2), date), a composite FK, and an FK to a unique non-key column. */
static const char full_ddl[] =
    "CREATE SCHEMA business;"
    "CREATE TABLE business.users (id uuid PRIMARY KEY, name text);"
    "CREATE TABLE business.posts (id uuid PRIMARY KEY, author_id uuid REFERENCES business.users (id), title text);"
    "CREATE TABLE business.comments (id uuid PRIMARY KEY, post_id uuid REFERENCES business.posts (id), body text);"
    "CREATE TABLE business.categories (id uuid PRIMARY KEY, parent_id uuid REFERENCES business.categories (id));"
    "CREATE TABLE business.countries (code text PRIMARY KEY);"
    "CREATE TABLE business.countries2 (code varchar(2) PRIMARY KEY);"
    "CREATE TABLE business.addresses (id uuid PRIMARY KEY,"
    "  country_code text REFERENCES business.countries (code),"
    "  country2 text REFERENCES business.countries2 (code));"
    "CREATE TABLE business.regions (id int4 PRIMARY KEY);"
    "CREATE TABLE business.zones (id int8 PRIMARY KEY);"
    "CREATE TABLE business.lanes (id int2 PRIMARY KEY);"
    "CREATE TABLE business.shops (id uuid PRIMARY KEY, region_id int4 REFERENCES business.regions,"
    "  zone_id int8 REFERENCES business.zones, lane_id int2 REFERENCES business.lanes);"
    "CREATE TABLE business.prices (amount numeric(10,2) PRIMARY KEY);"
    "CREATE TABLE business.holidays (day date PRIMARY KEY);"
    "CREATE TABLE business.events (id uuid PRIMARY KEY, price numeric(10,2) REFERENCES business.prices,"
    "  day date REFERENCES business.holidays);"
    "CREATE TABLE business.orders_hist (no int, rev int, PRIMARY KEY (no, rev));"
    "CREATE TABLE business.line_items (id uuid PRIMARY KEY, order_no int, order_rev int,"
    "  FOREIGN KEY (order_no, order_rev) REFERENCES business.orders_hist);"
    "CREATE TABLE business.devices (id uuid PRIMARY KEY);"
    "CREATE TABLE business.readings (id uuid PRIMARY KEY, device_id uuid REFERENCES business.devices);"
    "CREATE TABLE business.tags (id uuid PRIMARY KEY, slug text UNIQUE);"
    "CREATE TABLE business.tagged (id uuid PRIMARY KEY, tag_slug text REFERENCES business.tags (slug));"
    "CREATE TABLE business.unreg_child (id int PRIMARY KEY, user_id uuid REFERENCES business.users);";

static const char *const full_tables[] = {
    "business.comments", "business.posts",      "business.users",      "business.categories",
    "business.addresses", "business.shops",     "business.events",     "business.line_items",
    "business.readings",  "business.tags",      "business.tagged",     NULL,
};

static void discover_ok(void)
{
    char err[1024] = "";
    ck_assert_msg(sync_schema_discover(&T.schema, T.conn, err, sizeof err), "sync_schema_discover: %s", err);
    ck_assert(T.schema.discovered);
}

/* A fresh database with the given registry and schema, then the catalog is read. */
static void open_db(const char *const *tables, const char *ddl)
{
    tdb_open_tables(&T, tables);
    tdb_exec(&T, "%s", ddl);
    discover_ok();
}

static void open_full(void)
{
    open_db(full_tables, full_ddl);
}

/* What app_db_setup (src/handlers.c) does on every new connection. */
static bool app_setup(char *err, size_t errlen)
{
    if (T.cfg.auto_migrate_fks && T.cfg.n_tables) {
        strbuf_t report = STRBUF_INIT;
        sync_fk_migrate(&T.cfg, T.conn, false, &report);
        sb_free(&report);
    }
    return sync_schema_discover(&T.schema, T.conn, err, errlen);
}

/* Runs app_setup with stderr captured; the captured log text. */
static char *app_setup_captured(void)
{
    struct capture cap;
    capture_start(&cap);
    char err[1024] = "";
    bool ok = app_setup(err, sizeof err);
    char *logged = capture_end(&cap);
    ck_assert_msg(ok, "app_db_setup: %s", err);
    char *text = tdb_printf(&T, "%s", logged);
    free(logged);
    return text;
}

/* ------------------------------------------------------------------------------ builders */

/* An INSERT whose payload is {"id":pk,"<col>":<raw JSON value>}. */
static char *ins_ref(long long scid, const char *table, const char *pk, const char *col, const char *value)
{
    return ins(scid, table, pk, tdb_printf(&T, "{\"id\":\"%s\",\"%s\":%s}", pk, col, value));
}

static char *user_ins(long long scid, const char *pk)
{
    return ins(scid, "users", pk, tdb_printf(&T, "{\"id\":\"%s\",\"name\":\"n\"}", pk));
}

static char *post_ins(long long scid, const char *pk, const char *author_json)
{
    return ins_ref(scid, "posts", pk, "author_id", author_json);
}

static char *comment_ins(long long scid, const char *pk, const char *post_json)
{
    return ins_ref(scid, "comments", pk, "post_id", post_json);
}

/* "\"text\"" — a JSON string literal of a plain value (no escaping needed in these tests). */
static char *q(const char *s)
{
    return tdb_printf(&T, "\"%s\"", s);
}

/* An upload of one change. */
static struct tdb_answer *up1(const char *user, const char *change)
{
    return tdb_upload_ok(&T, user, D, batch(change, NULL));
}

/* -------------------------------------------------------------------------- assertions */

/* invalid/fk_missing with details exactly {"missing":[...]}; expected is a JSON array of the
 * entries (compared as a set: the order of several FKs of one change is not part of the contract). */
static void assert_missing(const struct tdb_answer *a, int i, long long scid, const char *expected)
{
    json_object *inv = tdb_get(assert_invalid(a, i, scid, "fk_missing"), "invalid");
    json_object *details = tdb_get(inv, "details");
    ck_assert_msg(json_object_is_type(details, json_type_object) && json_object_object_length(details) == 1,
                  "fk_missing details must be {\"missing\":[...]}: %s", a->body);
    json_object *missing = tdb_get(details, "missing");
    ck_assert_msg(json_object_is_type(missing, json_type_array), "details.missing is not an array: %s", a->body);
    json_object *want = json_tokener_parse(expected);
    ck_assert_ptr_nonnull(want);
    size_t n = json_object_array_length(want);
    ck_assert_msg(json_object_array_length(missing) == n, "statuses[%d].invalid.details.missing = %s, expected %s",
                  i, json_object_to_json_string(missing), expected);
    for (size_t k = 0; k < n; k++) {
        const char *w = json_object_get_string(json_object_array_get_idx(want, k));
        bool found = false;
        for (size_t m = 0; m < n && !found; m++) {
            json_object *e = json_object_array_get_idx(missing, m);
            found = json_object_is_type(e, json_type_string) && strcmp(json_object_get_string(e), w) == 0;
        }
        ck_assert_msg(found, "statuses[%d].invalid.details.missing = %s lacks \"%s\"", i,
                      json_object_to_json_string(missing), w);
    }
    json_object_put(want);
}

static void assert_precheck_error(const struct tdb_answer *a, int i, long long scid)
{
    json_object *inv = tdb_get(assert_invalid(a, i, scid, "precheck_error"), "invalid");
    ck_assert_msg(json_object_is_type(tdb_get(inv, "details"), json_type_object), "details must be an object: %s",
                  a->body);
}

/* table names of the user's log rows with server_id > after, in server_id order, comma-separated */
static const char *log_tables(const char *user, long long after)
{
    return tdb_query(&T,
                     "SELECT coalesce(string_agg(table_name, ',' ORDER BY server_id), '') FROM sync.server_change_log"
                     " WHERE user_id = '%s' AND server_id > %lld",
                     user, after);
}

static int rank_of(const char *schema, const char *name)
{
    const struct sync_table *t = sync_schema_find(&T.schema, schema, name);
    ck_assert_msg(t != NULL, "%s.%s is not registered", schema, name);
    return t->rank;
}

static const struct sync_fk *find_fk(const char *name)
{
    for (int i = 0; i < T.schema.n_fks; i++)
        if (strcmp(T.schema.fks[i].name, name) == 0)
            return &T.schema.fks[i];
    return NULL;
}

/* ====================================================================== pre-check tests */

/* A child with more foreign keys than one pipeline used to hold: each key is one existence query
 * (two when the parent lives in the sidecar), all sent in round trip 1. With 70 keys that is 147
 * statements, more than PIPELINE_MAX: the upload must still be judged, not fail as a whole. */
#define MANY_FKS 70
START_TEST(test_many_foreign_keys)
{
    static const char *const tables[] = { "business.parents", "business.many", NULL };
    strbuf_t ddl = STRBUF_INIT, payload = STRBUF_INIT, bad = STRBUF_INIT;
    sb_puts(&ddl, "CREATE SCHEMA business; CREATE TABLE business.parents (id uuid PRIMARY KEY);"
                  "CREATE TABLE business.many (id uuid PRIMARY KEY");
    sb_putc(&payload, '{');
    sb_putc(&bad, '{');
    for (int i = 0; i < MANY_FKS; i++) {
        sb_printf(&ddl, ", f%d uuid REFERENCES business.parents (id)", i);
        sb_printf(&payload, "%s\"f%d\":\"%s\"", i ? "," : "", i, USER1);
        sb_printf(&bad, "%s\"f%d\":\"%s\"", i ? "," : "", i, i == MANY_FKS - 1 ? MISSING : USER1);
    }
    sb_puts(&ddl, ");");
    sb_putc(&payload, '}');
    sb_putc(&bad, '}');
    open_db(tables, ddl.data);
    ck_assert_int_eq(T.schema.n_fks, MANY_FKS);
    struct tdb_answer *a = tdb_upload(&T, U, D,
                                      batch(ins(1, "many", POST1, payload.data), ins(2, "parents", USER1, "{}"),
                                            ins(3, "many", POST2, bad.data), NULL));
    ck_assert_msg(a->outcome == SYNC_OK, "the upload failed as a whole (outcome %d): %s", (int)a->outcome, a->err);
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    assert_missing(a, 2, 3, "[\"business.parents:" MISSING "\"]");
    tdb_answer_free(a);
    /* the parent now in the sidecar: a later child finds it there */
    a = tdb_upload_ok(&T, U, D, batch(ins(4, "many", POST3, payload.data), NULL));
    assert_applied(a, 0, 4, 1);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_log_count(&T, U), 3);
    sb_free(&ddl);
    sb_free(&payload);
    sb_free(&bad);
}
END_TEST

/* A batch holding users, posts, comments in reverse order is fully applied, and the log holds
 * them parents first (SPEC §4.2: upserts ordered parents-first by the FK topology). */
START_TEST(test_reverse_order_batch)
{
    open_full();
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(comment_ins(1, COMM1, q(POST1)), comment_ins(2, COMM2, q(POST1)),
                                               post_ins(3, POST1, q(USER1)), user_ins(4, USER1), NULL));
    ck_assert_int_eq(tdb_nstatuses(a), 4);
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    assert_applied(a, 2, 3, 1);
    assert_applied(a, 3, 4, 1);
    ck_assert_msg(tdb_bool(a->json, "accepted"), "%s", a->body);
    ck_assert_str_eq(log_tables(U, 0), "users,posts,comments,comments");
    /* within a table request order is kept */
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(pk_uuid::text, ',' ORDER BY server_id) FROM "
                                   "sync.server_change_log WHERE user_id = '%s' AND table_name = 'comments'", U),
                     COMM1 "," COMM2);
    ck_assert_int_eq(tdb_highest(&T, U), tdb_int(a->json, "highest_server_seq"));
    ck_assert_int_eq(tdb_meta_count(&T, U), 4);
    tdb_answer_free(a);
}
END_TEST

/* A child whose parent is neither in the batch nor in the database → fk_missing with the exact
 * entry; the rest of the batch applies; nothing is written for the child. A grandchild of the
 * refused child is refused too (its parent was not applied). */
START_TEST(test_missing_parent)
{
    open_full();
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(user_ins(1, USER1), post_ins(2, POST1, q(USER1)),
                                               post_ins(3, POST2, q(MISSING)), comment_ins(4, COMM1, q(POST1)),
                                               comment_ins(5, COMM2, q(POST2)), NULL));
    ck_assert_int_eq(tdb_nstatuses(a), 5);
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    assert_missing(a, 2, 3, "[\"business.users:" MISSING "\"]");
    assert_applied(a, 3, 4, 1);
    assert_missing(a, 4, 5, "[\"business.posts:" POST2 "\"]");
    ck_assert_msg(tdb_bool(a->json, "accepted"), "fk_missing does not make accepted false: %s", a->body);
    assert_no_sidecar(U, POST2);
    assert_no_sidecar(U, COMM2);
    ck_assert_int_eq(tdb_log_count(&T, U), 3);
    ck_assert_str_eq(log_tables(U, 0), "users,posts,comments");
    ck_assert_int_eq(a->counts.invalid[INVALID_FK_MISSING], 2);
    /* foreign-key values to check: written the careful way, never optimistically */
    ck_assert(a->counts.one_trip == 0 && a->counts.rewrites == 0);
    tdb_answer_free(a);

    /* several missing parents of one change are all listed */
    a = up1(U, ins(6, "shops", POST3, "{\"id\":\"" POST3 "\",\"region_id\":8,\"zone_id\":9,\"lane_id\":null}"));
    assert_missing(a, 0, 6, "[\"business.regions:8\",\"business.zones:9\"]");
    assert_no_sidecar(U, POST3);
    tdb_answer_free(a);
}
END_TEST

/* A column absent from the payload or null is not checked. */
START_TEST(test_absent_or_null_fk_not_checked)
{
    open_full();
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins(1, "posts", POST1, "{\"id\":\"" POST1 "\",\"title\":\"t\"}"),
                                               post_ins(2, POST2, "null"), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    /* nothing to check: one round trip (unless OVERSYNCD_TEST_OPTIMISTIC_UPLOAD=off) */
    ck_assert(a->counts.one_trip == T.cfg.optimistic_upload && a->counts.rewrites == 0);
    tdb_answer_free(a);
}
END_TEST

/* The parent uploaded in a later batch makes the retried child (same scid) apply; also when the
 * retry travels in the same batch as its parent, after it in request order. */
START_TEST(test_parent_later_batch_retry)
{
    open_full();
    struct tdb_answer *a = up1(U, post_ins(1, POST1, q(USER1)));
    assert_missing(a, 0, 1, "[\"business.users:" USER1 "\"]");
    assert_no_sidecar(U, POST1);
    tdb_answer_free(a);

    a = up1(U, user_ins(2, USER1));
    assert_applied(a, 0, 2, 1);
    tdb_answer_free(a);

    a = up1(U, post_ins(1, POST1, q(USER1)));
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);

    /* child refused, then retried together with its parent (child first in the request) */
    a = up1(U, post_ins(3, POST2, q(USER2)));
    assert_missing(a, 0, 3, "[\"business.users:" USER2 "\"]");
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D, batch(post_ins(3, POST2, q(USER2)), user_ins(4, USER2), NULL));
    assert_applied(a, 0, 3, 1);
    assert_applied(a, 1, 4, 1);
    tdb_answer_free(a);
    ck_assert_str_eq(log_tables(U, 0), "users,posts,users,posts");
}
END_TEST

/* A registered parent with materializer none counts only as a LIVE sidecar row of the SAME user. */
START_TEST(test_sidecar_parent_user_and_deleted)
{
    open_full();
    /* bob's user does not satisfy alice's post */
    struct tdb_answer *a = up1(U2, user_ins(1, USER1));
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);
    a = up1(U, post_ins(1, POST1, q(USER1)));
    assert_missing(a, 0, 1, "[\"business.users:" USER1 "\"]");
    tdb_answer_free(a);

    /* alice's own user, then deleted: no longer a parent */
    a = up1(U, user_ins(2, USER2));
    assert_applied(a, 0, 2, 1);
    tdb_answer_free(a);
    a = up1(U, post_ins(3, POST2, q(USER2)));
    assert_applied(a, 0, 3, 1);
    tdb_answer_free(a);
    a = up1(U, del(4, "users", USER2, 1));
    assert_applied(a, 0, 4, 2);
    tdb_answer_free(a);
    a = up1(U, post_ins(5, POST3, q(USER2)));
    assert_missing(a, 0, 5, "[\"business.users:" USER2 "\"]");
    assert_no_sidecar(U, POST3);
    tdb_answer_free(a);
}
END_TEST

/* A parent row present in the business table (written by someone else) counts. */
START_TEST(test_parent_in_business_table)
{
    open_full();
    tdb_exec(&T, "INSERT INTO business.users (id, name) VALUES ('%s', 'x')", USER1);
    struct tdb_answer *a = up1(U, post_ins(1, POST1, q(USER1)));
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);
}
END_TEST

/* SPEC §4.3: idempotency is decided before the FK pre-check. A child that landed, whose parent
 * was deleted since (by another device), is answered applied without a version when it is sent
 * again with the same scid — alone, or beside other changes — and nothing is written. */
START_TEST(test_retry_after_parent_deleted)
{
    open_full();
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(user_ins(1, USER1), post_ins(2, POST1, q(USER1)), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, "laptop", batch(del(1, "users", USER1, 1), NULL));
    assert_applied(a, 0, 1, 2);
    long long highest = tdb_int(a->json, "highest_server_seq");
    tdb_answer_free(a);
    /* the parent really is gone: a new child of it is refused */
    a = up1(U, post_ins(3, POST2, q(USER1)));
    assert_missing(a, 0, 3, "[\"business.users:" USER1 "\"]");
    tdb_answer_free(a);
    char *before = tdb_snapshot(&T);

    const char *bodies[] = {
        batch(post_ins(2, POST1, q(USER1)), NULL),
        batch(post_ins(2, POST1, q(USER1)), post_ins(3, POST2, q(USER1)), NULL),
    };
    for (int b = 0; b < 2; b++) {
        a = tdb_upload_ok(&T, U, D, bodies[b]);
        ck_assert_int_eq(tdb_nstatuses(a), b + 1);
        json_object *st = status_at(a, 0, 2);
        ck_assert_msg(strcmp(tdb_str(st, "status"), "applied") == 0 && !tdb_has(st, "new_server_version") &&
                          !tdb_has(st, "invalid"),
                      "a retry of a change that landed must be applied without a version: %s", a->body);
        if (b == 1)
            assert_missing(a, 1, 3, "[\"business.users:" USER1 "\"]");
        ck_assert_int_eq(tdb_int(a->json, "highest_server_seq"), highest);
        ck_assert_int_eq(a->counts.applied, 0);
        tdb_answer_free(a);
        ck_assert_str_eq(tdb_snapshot(&T), before);
    }
    ck_assert_int_eq(tdb_log_count_pk(&T, U, POST1), 1);
    assert_no_sidecar(U, POST2);
}
END_TEST

/* A parent upsert of the batch that is not applied (conflict) does not count. */
START_TEST(test_parent_conflict_in_batch)
{
    open_full();
    struct tdb_answer *a =
        tdb_upload_ok(&T, U, D, batch(chg(1, "business", "users", "INSERT", USER1, 3, "{\"id\":\"" USER1 "\"}"),
                                      post_ins(2, POST1, q(USER1)), NULL));
    ck_assert_str_eq(tdb_str(status_at(a, 0, 1), "status"), "conflict");
    assert_missing(a, 1, 2, "[\"business.users:" USER1 "\"]");
    ck_assert_int_eq(tdb_log_count(&T, U), 0);
    tdb_answer_free(a);
}
END_TEST

/* A parent and its children deleted in one batch (parent first in the request): all applied,
 * the log has the children first (SPEC §4.2: deletes children-first). */
START_TEST(test_delete_parent_and_children)
{
    open_full();
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(user_ins(1, USER1), post_ins(2, POST1, q(USER1)),
                                               comment_ins(3, COMM1, q(POST1)), NULL));
    assert_applied(a, 2, 3, 1);
    long long before = tdb_int(a->json, "highest_server_seq");
    tdb_answer_free(a);

    a = tdb_upload_ok(&T, U, D,
                      batch(del(4, "users", USER1, 1), del(5, "posts", POST1, 1), del(6, "comments", COMM1, 1), NULL));
    ck_assert_int_eq(tdb_nstatuses(a), 3);
    assert_applied(a, 0, 4, 2);
    assert_applied(a, 1, 5, 2);
    assert_applied(a, 2, 6, 2);
    ck_assert_str_eq(log_tables(U, before), "comments,posts,users");
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.sync_row_meta WHERE user_id = '%s' AND deleted", U),
                     3);
    ck_assert_int_eq(tdb_state_count(&T, U), 0);
    tdb_answer_free(a);
}
END_TEST

/* A child referencing a row of an unregistered parent table: applied when the row exists there,
 * fk_missing when not. */
START_TEST(test_unregistered_parent)
{
    open_full();
    tdb_exec(&T, "INSERT INTO business.countries VALUES ('DE'), ('it')");
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins_ref(1, "addresses", POST1, "country_code", q("DE")),
                                               ins_ref(2, "addresses", POST2, "country_code", q("XX")),
                                               ins_ref(3, "addresses", POST3, "country_code", q("it")),
                                               ins_ref(4, "addresses", COMM1, "country_code", q("IT")), NULL));
    assert_applied(a, 0, 1, 1);
    assert_missing(a, 1, 2, "[\"business.countries:XX\"]");
    assert_applied(a, 2, 3, 1);
    assert_missing(a, 3, 4, "[\"business.countries:IT\"]");
    assert_no_sidecar(U, POST2);
    tdb_answer_free(a);

    /* the row added later makes the retry apply */
    tdb_exec(&T, "INSERT INTO business.countries VALUES ('XX')");
    a = up1(U, ins_ref(2, "addresses", POST2, "country_code", q("XX")));
    assert_applied(a, 0, 2, 1);
    tdb_answer_free(a);
}
END_TEST

/* A varchar(2) parent: "DEU" is not a value of the parent column ('DE' is); the pre-check must
 * not accept it (an explicit cast to varchar(2) would silently truncate it to 'DE'). */
START_TEST(test_unregistered_parent_varchar_no_truncation)
{
    open_full();
    tdb_exec(&T, "INSERT INTO business.countries2 VALUES ('DE')");
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins_ref(1, "addresses", POST1, "country2", q("DE")),
                                               ins_ref(2, "addresses", POST2, "country2", q("DEU")), NULL));
    assert_applied(a, 0, 1, 1);
    json_object *st = status_at(a, 1, 2);
    ck_assert_msg(strcmp(tdb_str(st, "status"), "invalid") == 0,
                  "\"DEU\" does not exist in business.countries2 (only 'DE'), yet the pre-check let it through: %s",
                  a->body);
    const char *reason = tdb_str(tdb_get(st, "invalid"), "reason");
    ck_assert_msg(strcmp(reason, "fk_missing") == 0 || strcmp(reason, "precheck_error") == 0, "%s", a->body);
    tdb_answer_free(a);
}
END_TEST

/* Values that cannot be compared with a uuid parent → precheck_error for that change alone. */
START_TEST(test_uncastable_uuid_values)
{
    open_full();
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(user_ins(1, USER1), post_ins(2, POST1, q("not-a-uuid")),
                                               post_ins(3, POST2, "12345"), post_ins(4, POST3, "true"),
                                               post_ins(5, COMM1, "{\"id\":\"" USER1 "\"}"),
                                               post_ins(6, COMM2, "[\"" USER1 "\"]"),
                                               post_ins(7, CAT1, q("AAAAAAAAAAAAAAAAAAAA")),
                                               post_ins(8, CAT2, q("fbefbefbfbef4befbfbefbefbefbefb")),
                                               post_ins(9, CAT3, q(USER1)), NULL));
    ck_assert_int_eq(tdb_nstatuses(a), 9);
    assert_applied(a, 0, 1, 1);
    for (int i = 1; i <= 7; i++)
        assert_precheck_error(a, i, i + 1);
    assert_applied(a, 8, 9, 1);
    assert_no_sidecar(U, POST1);
    assert_no_sidecar(U, COMM1);
    ck_assert_int_eq(tdb_log_count(&T, U), 2);
    ck_assert_msg(tdb_bool(a->json, "accepted"), "%s", a->body);
    ck_assert_int_eq(a->counts.invalid[INVALID_PRECHECK_ERROR], 7);
    tdb_answer_free(a);
}
END_TEST

/* Integer parents: JSON integers or digit strings in range; anything else → precheck_error. */
START_TEST(test_integer_parents)
{
    open_full();
    tdb_exec(&T, "INSERT INTO business.regions VALUES (7), (-1); INSERT INTO business.zones VALUES (5000000000);"
                 "INSERT INTO business.lanes VALUES (3)");
    static const struct {
        const char *col;
        const char *value;
        const char *expect;       /* "applied", "precheck_error", or the missing entry */
    } cases[] = {
        { "region_id", "7", "applied" },
        { "region_id", "\"7\"", "applied" },
        { "region_id", "\"0007\"", "applied" },
        { "region_id", "-1", "applied" },
        { "region_id", "8", "business.regions:8" },
        { "region_id", "\"8\"", "business.regions:8" },
        { "region_id", "\"-2\"", "business.regions:-2" },
        { "region_id", "2147483647", "business.regions:2147483647" },
        { "region_id", "\"abc\"", "precheck_error" },
        { "region_id", "\"\"", "precheck_error" },
        { "region_id", "99999999999", "precheck_error" },
        { "region_id", "\"99999999999\"", "precheck_error" },
        { "region_id", "2147483648", "precheck_error" },
        { "region_id", "1.5", "precheck_error" },
        { "region_id", "true", "precheck_error" },
        { "region_id", "{\"id\":7}", "precheck_error" },
        { "region_id", "[7]", "precheck_error" },
        { "zone_id", "5000000000", "applied" },
        { "zone_id", "\"5000000000\"", "applied" },
        { "zone_id", "99999999999", "business.zones:99999999999" },
        { "zone_id", "99999999999999999999", "precheck_error" },
        { "zone_id", "false", "precheck_error" },
        { "lane_id", "3", "applied" },
        { "lane_id", "4", "business.lanes:4" },
        { "lane_id", "40000", "precheck_error" },
        { "lane_id", "\"x3\"", "precheck_error" },
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    strbuf_t sb = STRBUF_INIT;
    sb_puts(&sb, "{\"changes\":[");
    for (int i = 0; i < n; i++) {
        char pk[40];
        snprintf(pk, sizeof pk, "%08x-0000-4000-8000-000000000000", i + 1);
        sb_printf(&sb, "%s%s", i ? "," : "", ins_ref(i + 1, "shops", pk, cases[i].col, cases[i].value));
    }
    sb_puts(&sb, "]}");
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, sb.data);
    sb_free(&sb);
    ck_assert_int_eq(tdb_nstatuses(a), n);
    int applied = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(cases[i].expect, "applied") == 0) {
            assert_applied(a, i, i + 1, 1);
            applied++;
        } else if (strcmp(cases[i].expect, "precheck_error") == 0) {
            assert_precheck_error(a, i, i + 1);
        } else {
            assert_missing(a, i, i + 1, tdb_printf(&T, "[\"%s\"]", cases[i].expect));
        }
    }
    ck_assert_int_eq(tdb_log_count(&T, U), applied);
    tdb_answer_free(a);
}
END_TEST

/* Parent types the C side does not know go through sync.fk_castable: castable but missing →
 * fk_missing, not castable → precheck_error, present → applied. */
START_TEST(test_other_types_via_fk_castable)
{
    open_full();
    tdb_exec(&T, "INSERT INTO business.prices VALUES (12.34); INSERT INTO business.holidays VALUES ('2024-12-25')");
    static const struct {
        const char *col;
        const char *value;
        const char *expect;
    } cases[] = {
        { "price", "12.34", "applied" },
        { "price", "\"12.34\"", "applied" },
        { "price", "99.99", "business.prices:99.99" },
        { "price", "\"abc\"", "precheck_error" },
        { "price", "123456789012", "precheck_error" },      /* numeric(10,2) overflow */
        { "price", "true", "precheck_error" },
        { "price", "{\"v\":1}", "precheck_error" },
        { "day", "\"2024-12-25\"", "applied" },
        { "day", "\"2023-01-01\"", "business.holidays:2023-01-01" },
        { "day", "\"2024-02-30\"", "precheck_error" },
        { "day", "\"not a date\"", "precheck_error" },
        { "day", "[\"2024-12-25\"]", "precheck_error" },
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    strbuf_t sb = STRBUF_INIT;
    sb_puts(&sb, "{\"changes\":[");
    for (int i = 0; i < n; i++) {
        char pk[40];
        snprintf(pk, sizeof pk, "%08x-0000-4000-8000-000000000001", i + 1);
        sb_printf(&sb, "%s%s", i ? "," : "", ins_ref(i + 1, "events", pk, cases[i].col, cases[i].value));
    }
    sb_puts(&sb, "]}");
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, sb.data);
    sb_free(&sb);
    ck_assert_int_eq(tdb_nstatuses(a), n);
    for (int i = 0; i < n; i++) {
        if (strcmp(cases[i].expect, "applied") == 0)
            assert_applied(a, i, i + 1, 1);
        else if (strcmp(cases[i].expect, "precheck_error") == 0)
            assert_precheck_error(a, i, i + 1);
        else
            assert_missing(a, i, i + 1, tdb_printf(&T, "[\"%s\"]", cases[i].expect));
    }
    tdb_answer_free(a);
}
END_TEST

/* A uuid parent accepts every UUID spelling and base64 of the 16 bytes — in the sidecar, in the
 * business table of an unregistered parent, and in the batch. Missing entries are canonical. */
START_TEST(test_uuid_spellings)
{
    open_full();
    static const char *const spellings[] = {
        UP,
        "FBEFBEFB-FBEF-4BEF-BFBE-FBEFBEFBEFBE",
        "fbefbefbfbef4befbfbefbefbefbefbe",
        "FBEFBEFBFBEF4BEFBFBEFBEFBEFBEFBE",
        "{fbefbefb-fbef-4bef-bfbe-fbefbefbefbe}",
        "{FBEFBEFB-FBEF-4BEF-BFBE-FBEFBEFBEFBE}",
        "urn:uuid:fbefbefb-fbef-4bef-bfbe-fbefbefbefbe",
        UP_B64,
        UP_B64_NOPAD,
        UP_B64_URL,
    };
    int n = (int)(sizeof spellings / sizeof spellings[0]);

    struct tdb_answer *a = up1(U, user_ins(1000, UP));
    assert_applied(a, 0, 1000, 1);
    tdb_answer_free(a);
    tdb_exec(&T, "INSERT INTO business.devices VALUES ('%s')", UP);

    strbuf_t sb = STRBUF_INIT;
    sb_puts(&sb, "{\"changes\":[");
    for (int i = 0; i < n; i++) {
        char pk1[40], pk2[40];
        snprintf(pk1, sizeof pk1, "%08x-0000-4000-8000-000000000002", i + 1);
        snprintf(pk2, sizeof pk2, "%08x-0000-4000-8000-000000000003", i + 1);
        sb_printf(&sb, "%s%s,%s", i ? "," : "", post_ins(i + 1, pk1, q(spellings[i])),
                  ins_ref(100 + i, "readings", pk2, "device_id", q(spellings[i])));
    }
    sb_puts(&sb, "]}");
    a = tdb_upload_ok(&T, U, D, sb.data);
    sb_free(&sb);
    ck_assert_int_eq(tdb_nstatuses(a), 2 * n);
    for (int i = 0; i < n; i++) {
        assert_applied(a, 2 * i, i + 1, 1);
        assert_applied(a, 2 * i + 1, 100 + i, 1);
    }
    tdb_answer_free(a);

    /* parent in the same batch (after the child in the request), referred to by base64 */
    a = tdb_upload_ok(&T, U, D, batch(post_ins(200, POST1, q(UQ_B64)), user_ins(201, UQ), NULL));
    assert_applied(a, 0, 200, 1);
    assert_applied(a, 1, 201, 1);
    tdb_answer_free(a);

    /* missing: the entry shows the canonical text */
    a = tdb_upload_ok(&T, U, D,
                      batch(post_ins(300, POST2, q("DEADBEEF-DEAD-4EEF-8EEF-DEADBEEFDEAD")),
                            ins_ref(301, "readings", POST3, "device_id", q("{" UQ "}")), NULL));
    assert_missing(a, 0, 300, "[\"business.users:" MISSING "\"]");
    assert_missing(a, 1, 301, "[\"business.devices:" UQ "\"]");
    tdb_answer_free(a);
}
END_TEST

/* Self-referencing table: parent and child in one batch (parent first) apply; a row referring
 * to itself applies; a missing parent → fk_missing. */
START_TEST(test_self_reference)
{
    open_full();
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins_ref(1, "categories", CAT1, "parent_id", "null"),
                                               ins_ref(2, "categories", CAT2, "parent_id", q(CAT1)),
                                               ins_ref(3, "categories", CAT3, "parent_id", q(CAT2)),
                                               ins_ref(4, "categories", CAT4, "parent_id", q(CAT4)),
                                               ins_ref(5, "categories", POST1, "parent_id", q(MISSING)), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    assert_applied(a, 2, 3, 1);
    assert_applied(a, 3, 4, 1);
    assert_missing(a, 4, 5, "[\"business.categories:" MISSING "\"]");
    assert_no_sidecar(U, POST1);
    tdb_answer_free(a);

    /* a later batch refers to a stored category */
    a = up1(U, ins_ref(6, "categories", POST2, "parent_id", q(CAT3)));
    assert_applied(a, 0, 6, 1);
    tdb_answer_free(a);
}
END_TEST

static const char *chain_pk(int i)
{
    return tdb_printf(&T, "c0000000-0000-4000-8000-%012d", i);
}

/* A chain of self-references, each row naming the next one, which comes later in the batch
 * (issue #9): all applied when the last row names nothing; all fk_missing, each naming its own
 * parent, when the last row names a row that exists nowhere, and nothing is written. The failure
 * used to travel back one row per full pass over the batch (cubic time: 4 s for 1000 rows, hours
 * for 10,000; bench/run classify measures it): without timing anything, the arena shows that each
 * row is judged a bounded number of times (the passes allocated a message per refused row each). */
#define CHAIN 1000

static char *chain_batch(int first_scid, int base, const char *last_parent)
{
    strbuf_t sb = STRBUF_INIT;
    sb_puts(&sb, "{\"changes\":[");
    for (int i = 0; i < CHAIN; i++)
        sb_printf(&sb, "%s%s", i ? "," : "",
                  ins_ref(first_scid + i, "categories", chain_pk(base + i), "parent_id",
                          i + 1 < CHAIN ? q(chain_pk(base + i + 1)) : last_parent));
    sb_puts(&sb, "]}");
    char *s = tdb_printf(&T, "%s", sb.data);
    sb_free(&sb);
    return s;
}

START_TEST(test_forward_chain)
{
    open_full();
    T.cfg.max_upload_changes = CHAIN;
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, chain_batch(1, 0, q(MISSING)));
    size_t arena = a->arena_bytes;
    ck_assert_int_eq(tdb_nstatuses(a), CHAIN);
    for (int i = 0; i < CHAIN; i++)
        assert_missing(a, i, 1 + i,
                       tdb_printf(&T, "[\"business.categories:%s\"]", i + 1 < CHAIN ? chain_pk(i + 1) : MISSING));
    ck_assert_int_eq(a->counts.invalid[INVALID_FK_MISSING], CHAIN);
    ck_assert_int_eq(tdb_log_count(&T, U), 0);
    ck_assert_int_eq(tdb_meta_count(&T, U), 0);
    ck_assert_msg(arena < 8 * 1024 * 1024, "classifying a broken chain of %d rows used %zu bytes of arena", CHAIN,
                  arena);
    tdb_answer_free(a);

    /* the same chain with its end in place: every row applied, in one go */
    a = tdb_upload_ok(&T, U, D, chain_batch(1, 0, "null"));
    arena = a->arena_bytes;
    for (int i = 0; i < CHAIN; i++)
        assert_applied(a, i, 1 + i, 1);
    ck_assert_int_eq(tdb_log_count(&T, U), CHAIN);
    ck_assert_msg(arena < 8 * 1024 * 1024, "an applied chain of %d rows used %zu bytes of arena", CHAIN, arena);
    tdb_answer_free(a);

    /* a chain broken in the middle (its middle row conflicts): the rows before it are refused,
     * the rows after it applied */
    strbuf_t sb = STRBUF_INIT;
    sb_puts(&sb, "{\"changes\":[");
    for (int i = 0; i < CHAIN; i++) {
        const char *pk = chain_pk(CHAIN + i), *parent = i + 1 < CHAIN ? q(chain_pk(CHAIN + i + 1)) : "null";
        sb_printf(&sb, "%s%s", i ? "," : "",
                  chg(5000 + i, "business", "categories", "INSERT", pk, i == CHAIN / 2 ? 7 : 0,
                      tdb_printf(&T, "{\"id\":\"%s\",\"parent_id\":%s}", pk, parent)));
    }
    sb_puts(&sb, "]}");
    a = tdb_upload_ok(&T, U, D, tdb_printf(&T, "%s", sb.data));
    arena = a->arena_bytes;
    sb_free(&sb);
    for (int i = 0; i < CHAIN; i++) {
        if (i < CHAIN / 2)
            assert_missing(a, i, 5000 + i, tdb_printf(&T, "[\"business.categories:%s\"]", chain_pk(CHAIN + i + 1)));
        else if (i == CHAIN / 2)
            ck_assert_str_eq(tdb_str(status_at(a, i, 5000 + i), "status"), "conflict");
        else
            assert_applied(a, i, 5000 + i, 1);
    }
    ck_assert_int_eq(tdb_log_count(&T, U), CHAIN + CHAIN / 2 - 1);
    ck_assert_msg(arena < 8 * 1024 * 1024, "a chain broken in the middle used %zu bytes of arena", arena);
    tdb_answer_free(a);
}
END_TEST

/* Within one table "earlier in the batch" is request order: a child before its parent in the
 * request is refused (and applies on retry). */
START_TEST(test_self_reference_child_first)
{
    /* Within one table a parent later in the batch counts (deferred constraints check the pair at
     * commit), as the reference server does. */
    open_full();
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins_ref(1, "categories", CAT2, "parent_id", q(CAT1)),
                                               ins_ref(2, "categories", CAT1, "parent_id", "null"), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    tdb_answer_free(a);

    /* ...but only if that parent really is applied: a later parent that conflicts (a never-seen
     * row sent with version 3) leaves the child fk_missing, and nothing of the child is written. */
    a = tdb_upload_ok(&T, U, D,
                      batch(ins_ref(3, "categories", CAT3, "parent_id", q(CAT4)),
                            chg(4, "business", "categories", "UPDATE", CAT4, 3,
                                tdb_printf(&T, "{\"id\":\"%s\",\"parent_id\":null}", CAT4)),
                            NULL));
    assert_missing(a, 0, 3, "[\"business.categories:" CAT4 "\"]");
    tdb_answer_free(a);
}
END_TEST

/* A registered parent referred to by a unique non-key column: a parent upsert earlier in the
 * batch counts by its payload value. */
START_TEST(test_parent_unique_column_in_batch)
{
    open_full();
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins_ref(1, "tagged", POST1, "tag_slug", q("red")),
                                               ins(2, "tags", CAT1, "{\"id\":\"" CAT1 "\",\"slug\":\"red\"}"),
                                               ins_ref(3, "tagged", POST2, "tag_slug", q("blue")), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    assert_missing(a, 2, 3, "[\"business.tags:blue\"]");
    tdb_answer_free(a);
}
END_TEST

/* Composite FKs are not pre-checked (left to PostgreSQL at commit). */
START_TEST(test_composite_not_prechecked)
{
    open_full();
    struct tdb_answer *a = up1(U, ins(1, "line_items", POST1,
                                      "{\"id\":\"" POST1 "\",\"order_no\":1,\"order_rev\":2}"));
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);
    const struct sync_table *t = sync_schema_find(&T.schema, "business", "line_items");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->n_fks, 0);
}
END_TEST

/* ====================================================================== cycle */

static const char cycle_ddl[] =
    "CREATE SCHEMA business;"
    "CREATE TABLE business.a (id uuid PRIMARY KEY, b_id uuid);"
    "CREATE TABLE business.b (id uuid PRIMARY KEY, a_id uuid REFERENCES business.a);"
    "ALTER TABLE business.a ADD CONSTRAINT a_b_id_fkey FOREIGN KEY (b_id) REFERENCES business.b;";

static const char *const cycle_tables[] = { "business.b", "business.a", NULL };

/* Opens the cycle schema the way a worker does with auto_migrate_fks on; the captured log. */
static char *open_cycle(void)
{
    tdb_open_tables(&T, cycle_tables);
    tdb_exec(&T, "%s", cycle_ddl);
    T.cfg.auto_migrate_fks = true;
    return app_setup_captured();
}

static const char *constraint_flags(const char *table, const char *name)
{
    return tdb_query(&T, "SELECT concat_ws('|', condeferrable, condeferred) FROM pg_constraint"
                         " WHERE conrelid = '%s'::regclass AND conname = '%s'", table, name);
}

START_TEST(test_cycle_ranks_and_migration)
{
    char *log = open_cycle();
    ck_assert_str_eq(constraint_flags("business.a", "a_b_id_fkey"), "t|t");
    ck_assert_str_eq(constraint_flags("business.b", "b_a_id_fkey"), "t|t");
    /* name order */
    ck_assert_int_eq(rank_of("business", "a"), 0);
    ck_assert_int_eq(rank_of("business", "b"), 1);
    ck_assert_msg(strstr(log, "cycle") && strstr(log, "business.a") && strstr(log, "business.b"),
                  "discovery must log the cycle: %s", log);
    /* deferred constraints: rows referring to each other commit */
    tdb_exec(&T, "BEGIN; INSERT INTO business.a VALUES ('%s', '%s'); INSERT INTO business.b VALUES ('%s', '%s');"
                 " COMMIT", ROW_A, ROW_B, ROW_B, ROW_A);
    /* discovering again gives the same ranks */
    discover_ok();
    ck_assert_int_eq(rank_of("business", "a"), 0);
    ck_assert_int_eq(rank_of("business", "b"), 1);
}
END_TEST

/* The brief's expectation (SPEC §6.1: tables in a cycle rely on deferred constraints): one batch
 * creating both rows, each referring to the other, is applied. */
START_TEST(test_cycle_batch_applied)
{
    open_cycle();
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins_ref(1, "a", ROW_A, "b_id", q(ROW_B)),
                                               ins_ref(2, "b", ROW_B, "a_id", q(ROW_A)), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    ck_assert_int_eq(tdb_log_count(&T, U), 2);
    tdb_answer_free(a);
}
END_TEST

/* The cycle closed in two steps always works: a without its reference, b → a, then a → b. */
START_TEST(test_cycle_two_step)
{
    open_cycle();
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins_ref(1, "a", ROW_A, "b_id", "null"),
                                               ins_ref(2, "b", ROW_B, "a_id", q(ROW_A)), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    tdb_answer_free(a);
    a = up1(U, chg(3, "business", "a", "UPDATE", ROW_A, 1, "{\"id\":\"" ROW_A "\",\"b_id\":\"" ROW_B "\"}"));
    assert_applied(a, 0, 3, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(log_tables(U, 0), "a,b,a");
}
END_TEST

/* ====================================================================== discovery */

static const char rank_ddl[] =
    "CREATE SCHEMA business; CREATE SCHEMA app;"
    "CREATE TABLE business.users (id uuid PRIMARY KEY);"
    "CREATE TABLE business.posts (id uuid PRIMARY KEY, author_id uuid REFERENCES business.users);"
    "CREATE TABLE business.comments (id uuid PRIMARY KEY, post_id uuid REFERENCES business.posts);"
    "CREATE TABLE business.aaa (id uuid PRIMARY KEY);"
    "CREATE TABLE business.zzz (id uuid PRIMARY KEY);"
    "CREATE TABLE app.audit (id uuid PRIMARY KEY, user_id uuid REFERENCES business.users);";

static void assert_ranks(const char *when)
{
    static const struct {
        const char *schema, *name;
        int rank;
    } want[] = {
        { "business", "aaa", 0 },  { "business", "users", 1 },    { "app", "audit", 2 },
        { "business", "posts", 3 }, { "business", "comments", 4 }, { "business", "zzz", 5 },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(rank_of(want[i].schema, want[i].name) == want[i].rank, "%s: rank of %s.%s is %d, expected %d",
                      when, want[i].schema, want[i].name, rank_of(want[i].schema, want[i].name), want[i].rank);
}

/* Ranks: parents first, ties broken by schema.table name (the first ready table in name order is
 * taken each time), whatever the registration order; discovering again gives the same ranks. */
START_TEST(test_discovery_ranks_deterministic)
{
    static const char *const order1[] = { "business.zzz", "business.comments", "business.posts", "business.users",
                                          "app.audit",    "business.aaa",      NULL };
    static const char *const order2[] = { "business.users", "business.aaa", "app.audit", "business.zzz",
                                          "business.posts", "business.comments", NULL };
    open_db(order1, rank_ddl);
    ck_assert_int_lt(rank_of("business", "users"), rank_of("business", "posts"));
    ck_assert_int_lt(rank_of("business", "posts"), rank_of("business", "comments"));
    assert_ranks("first discovery");
    discover_ok();
    assert_ranks("second discovery");
    tdb_set_tables(&T, order2);
    discover_ok();
    assert_ranks("other registration order");
}
END_TEST

/* Only the three-level chain registered: users < posts < comments. */
START_TEST(test_discovery_three_level)
{
    static const char *const tables[] = { "business.comments", "business.posts", "business.users", NULL };
    open_db(tables, rank_ddl);
    ck_assert_int_eq(rank_of("business", "users"), 0);
    ck_assert_int_eq(rank_of("business", "posts"), 1);
    ck_assert_int_eq(rank_of("business", "comments"), 2);
}
END_TEST

/* What discovery records about each FK. */
START_TEST(test_discovery_fks)
{
    open_full();
    const struct sync_fk *f = find_fk("posts_author_id_fkey");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_eq(&T.schema.tables[f->child], sync_schema_find(&T.schema, "business", "posts"));
    ck_assert_ptr_eq(&T.schema.tables[f->parent], sync_schema_find(&T.schema, "business", "users"));
    ck_assert_str_eq(f->child_col, "author_id");
    ck_assert_str_eq(f->parent_col, "id");
    ck_assert_int_eq(f->kind, FK_VALUE_UUID);
    ck_assert(f->parent_is_pk);
    ck_assert(!f->deferrable);

    f = find_fk("addresses_country_code_fkey");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(f->parent, -1);
    ck_assert_str_eq(f->parent_schema, "business");
    ck_assert_str_eq(f->parent_table, "countries");
    ck_assert_int_eq(f->kind, FK_VALUE_TEXT);

    ck_assert_int_eq(find_fk("shops_region_id_fkey")->kind, FK_VALUE_INT4);
    ck_assert_int_eq(find_fk("shops_zone_id_fkey")->kind, FK_VALUE_INT8);
    ck_assert_int_eq(find_fk("shops_lane_id_fkey")->kind, FK_VALUE_INT2);
    f = find_fk("events_price_fkey");
    ck_assert_int_eq(f->kind, FK_VALUE_OTHER);
    ck_assert_str_eq(f->parent_type, "numeric(10,2)");
    ck_assert_int_eq(find_fk("events_day_fkey")->kind, FK_VALUE_OTHER);
    ck_assert_ptr_null(find_fk("line_items_order_no_order_rev_fkey")->child_col);
    ck_assert(!find_fk("tagged_tag_slug_fkey")->parent_is_pk);
    f = find_fk("categories_parent_id_fkey");
    ck_assert_int_eq(f->parent, f->child);
    /* FKs of unregistered tables are not read */
    ck_assert_ptr_null(find_fk("unreg_child_user_id_fkey"));
    ck_assert_int_eq(sync_schema_find(&T.schema, "business", "shops")->n_fks, 3);
}
END_TEST

/* ====================================================================== migration */

static const char migrate_ddl[] =
    "CREATE SCHEMA business;"
    "CREATE TABLE business.p (id int PRIMARY KEY, code int UNIQUE);"
    "CREATE TABLE business.p2 (x int, y int, PRIMARY KEY (x, y));"
    "INSERT INTO business.p VALUES (0, 0), (1, 1); INSERT INTO business.p2 VALUES (1, 1);"
    "CREATE TABLE business.c (id uuid PRIMARY KEY,"
    "  d_cascade int CONSTRAINT fk_del_cascade REFERENCES business.p ON DELETE CASCADE,"
    "  d_setnull int CONSTRAINT fk_del_setnull REFERENCES business.p ON DELETE SET NULL,"
    "  d_setdefault int DEFAULT 0 CONSTRAINT fk_del_setdefault REFERENCES business.p ON DELETE SET DEFAULT,"
    "  d_restrict int CONSTRAINT fk_del_restrict REFERENCES business.p ON DELETE RESTRICT,"
    "  d_noaction int CONSTRAINT fk_del_noaction REFERENCES business.p ON DELETE NO ACTION,"
    "  u_cascade int CONSTRAINT fk_upd_cascade REFERENCES business.p ON UPDATE CASCADE,"
    "  u_setnull int CONSTRAINT fk_upd_setnull REFERENCES business.p ON UPDATE SET NULL,"
    "  u_setdefault int DEFAULT 0 CONSTRAINT fk_upd_setdefault REFERENCES business.p ON UPDATE SET DEFAULT,"
    "  u_restrict int CONSTRAINT fk_upd_restrict REFERENCES business.p ON UPDATE RESTRICT,"
    "  u_noaction int CONSTRAINT fk_upd_noaction REFERENCES business.p ON UPDATE NO ACTION,"
    "  both_ int CONSTRAINT fk_both REFERENCES business.p (code) ON DELETE SET NULL ON UPDATE CASCADE,"
    "  a int, b int,"
    "  CONSTRAINT fk_cols_setnull FOREIGN KEY (a, b) REFERENCES business.p2 ON DELETE SET NULL (a),"
    "  CONSTRAINT fk_match_full FOREIGN KEY (a, b) REFERENCES business.p2 MATCH FULL ON DELETE CASCADE,"
    "  CONSTRAINT \"Fk Mixed Case\" FOREIGN KEY (d_cascade) REFERENCES business.p ON DELETE CASCADE ON UPDATE RESTRICT,"
    "  CONSTRAINT fk_immediate FOREIGN KEY (d_restrict) REFERENCES business.p DEFERRABLE INITIALLY IMMEDIATE,"
    "  CONSTRAINT fk_already FOREIGN KEY (d_noaction) REFERENCES business.p ON DELETE CASCADE"
    "    DEFERRABLE INITIALLY DEFERRED);"
    "INSERT INTO business.c (id, d_cascade, d_setnull, d_restrict, d_noaction, u_cascade, u_setnull, u_restrict,"
    "  u_noaction, both_, a, b) VALUES ('" USER1 "', 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);"
    "CREATE TABLE business.other (id int PRIMARY KEY, p_id int CONSTRAINT fk_other REFERENCES business.p);";

static const char *const migrate_tables[] = { "business.c", NULL };

/* the NOT DEFERRABLE constraints of migrate_ddl */
static const char *const plain_fks[] = {
    "fk_del_cascade", "fk_del_setnull", "fk_del_setdefault", "fk_del_restrict", "fk_del_noaction",
    "fk_upd_cascade", "fk_upd_setnull", "fk_upd_setdefault", "fk_upd_restrict", "fk_upd_noaction",
    "fk_both",        "fk_cols_setnull", "fk_match_full",    "Fk Mixed Case",
};
#define N_PLAIN ((int)(sizeof plain_fks / sizeof plain_fks[0]))

static void open_migrate(void)
{
    tdb_open_tables(&T, migrate_tables);
    tdb_exec(&T, "%s", migrate_ddl);
}

/* the report on one line, for assertion messages */
static const char *oneline(strbuf_t *report)
{
    char *s = tdb_printf(&T, "%s", sb_cstr(report));
    for (char *p = s; *p; p++)
        if (*p == '\n')
            *p = ';';
    return s;
}

/* One FK constraint (by name, on business.<table>): fields joined with '|'. */
static const char *fk_row(const char *table, const char *name, const char *fields)
{
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'business.%s'::regclass"
                                      " AND conname = %s AND contype = 'f'", table, tdb_lit(&T, name)),
                     1);
    return tdb_query(&T, "SELECT concat_ws('|', %s) FROM pg_constraint WHERE conrelid = 'business.%s'::regclass"
                         " AND conname = %s AND contype = 'f'", fields, table, tdb_lit(&T, name));
}

#define ACTIONS "confupdtype, confdeltype, confmatchtype, conkey, confkey, confrelid::regclass"

static const char *fk_def(const char *table, const char *name)
{
    return fk_row(table, name, "pg_get_constraintdef(oid)");
}

static const char *fk_flags(const char *table, const char *name)
{
    return fk_row(table, name, "condeferrable, condeferred, convalidated");
}

/* every FK constraint of the database, with oid and definition */
static const char *fk_snapshot(void)
{
    return tdb_query(&T, "SELECT string_agg(concat_ws('|', oid, conrelid::regclass, conname, condeferrable,"
                         " condeferred, convalidated, pg_get_constraintdef(oid)), E'\\n' ORDER BY conname)"
                         " FROM pg_constraint WHERE contype = 'f'");
}

static long long leftovers(void)
{
    return tdb_query_ll(&T, "SELECT count(*) FROM pg_constraint WHERE conname LIKE '%%oversyncd%%'");
}

/* NOT DEFERRABLE FKs with every ON DELETE / ON UPDATE action (and MATCH FULL, a SET NULL column
 * list, a quoted name) become DEFERRABLE INITIALLY DEFERRED with the same name, the same actions
 * and otherwise the same definition; DEFERRABLE INITIALLY IMMEDIATE becomes INITIALLY DEFERRED. */
START_TEST(test_migrate_actions)
{
    open_migrate();
    const char *defs[N_PLAIN], *actions[N_PLAIN];
    for (int i = 0; i < N_PLAIN; i++) {
        defs[i] = fk_def("c", plain_fks[i]);
        actions[i] = fk_row("c", plain_fks[i], ACTIONS);
        ck_assert_str_eq(fk_flags("c", plain_fks[i]), "f|f|t");
    }
    const char *imm_def = fk_def("c", "fk_immediate");
    const char *imm_actions = fk_row("c", "fk_immediate", ACTIONS);
    ck_assert_str_eq(fk_flags("c", "fk_immediate"), "t|f|t");
    const char *already = fk_row("c", "fk_already", "oid, pg_get_constraintdef(oid)");
    const char *other = fk_row("other", "fk_other", "oid, condeferrable, pg_get_constraintdef(oid)");

    T.cfg.auto_migrate_fks = true;
    strbuf_t report = STRBUF_INIT;
    bool ok = sync_fk_migrate(&T.cfg, T.conn, false, &report);
    ck_assert_msg(ok, "sync_fk_migrate failed: %s", oneline(&report));
    ck_assert_int_eq(PQtransactionStatus(T.conn), PQTRANS_IDLE);

    for (int i = 0; i < N_PLAIN; i++) {
        ck_assert_msg(strcmp(fk_flags("c", plain_fks[i]), "t|t|t") == 0, "%s: flags %s", plain_fks[i],
                      fk_flags("c", plain_fks[i]));
        ck_assert_msg(strcmp(fk_row("c", plain_fks[i], ACTIONS), actions[i]) == 0, "%s: actions %s, were %s",
                      plain_fks[i], fk_row("c", plain_fks[i], ACTIONS), actions[i]);
        const char *want = tdb_printf(&T, "%s DEFERRABLE INITIALLY DEFERRED", defs[i]);
        ck_assert_msg(strcmp(fk_def("c", plain_fks[i]), want) == 0, "%s: definition\n  %s\nexpected\n  %s",
                      plain_fks[i], fk_def("c", plain_fks[i]), want);
        ck_assert_msg(strstr(sb_cstr(&report), plain_fks[i]), "the report does not name %s: %s", plain_fks[i],
                      sb_cstr(&report));
    }
    ck_assert_str_eq(fk_flags("c", "fk_immediate"), "t|t|t");
    ck_assert_str_eq(fk_row("c", "fk_immediate", ACTIONS), imm_actions);
    ck_assert_str_eq(fk_def("c", "fk_immediate"), tdb_printf(&T, "%s INITIALLY DEFERRED", imm_def));
    ck_assert_msg(strstr(sb_cstr(&report), "fk_immediate"), "%s", sb_cstr(&report));
    /* already deferred: untouched; unregistered child table: untouched */
    ck_assert_str_eq(fk_row("c", "fk_already", "oid, pg_get_constraintdef(oid)"), already);
    ck_assert_msg(!strstr(sb_cstr(&report), "fk_already"), "%s", sb_cstr(&report));
    ck_assert_str_eq(fk_row("other", "fk_other", "oid, condeferrable, pg_get_constraintdef(oid)"), other);
    ck_assert_int_eq(leftovers(), 0);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'business.c'::regclass"
                                      " AND contype = 'f'"),
                     N_PLAIN + 2);
    sb_free(&report);

    /* the constraints are now checked at commit, and the actions still act */
    tdb_exec(&T, "BEGIN; INSERT INTO business.c (id, d_noaction) VALUES ('%s', 5);"
                 " INSERT INTO business.p VALUES (5, 5); COMMIT", USER2);
    tdb_exec(&T, "UPDATE business.p SET code = 10 WHERE id = 1");
    ck_assert_str_eq(tdb_query(&T, "SELECT both_ FROM business.c WHERE id = '%s'", USER1), "10");

    /* a second run finds nothing to do */
    strbuf_t again = STRBUF_INIT;
    ck_assert(sync_fk_migrate(&T.cfg, T.conn, false, &again));
    ck_assert_msg(again.len == 0, "nothing left to migrate, yet: %s", sb_cstr(&again));
    sb_free(&again);
}
END_TEST

/* The dry run reports what would change and changes nothing. */
START_TEST(test_migrate_dry_run)
{
    open_migrate();
    const char *before = fk_snapshot();
    strbuf_t report = STRBUF_INIT;
    ck_assert(sync_fk_migrate(&T.cfg, T.conn, true, &report));
    ck_assert_str_eq(fk_snapshot(), before);
    for (int i = 0; i < N_PLAIN; i++)
        ck_assert_msg(strstr(sb_cstr(&report), plain_fks[i]), "the dry run does not name %s: %s", plain_fks[i],
                      sb_cstr(&report));
    ck_assert_msg(strstr(sb_cstr(&report), "fk_immediate"), "%s", sb_cstr(&report));
    ck_assert_msg(!strstr(sb_cstr(&report), "fk_already"), "%s", sb_cstr(&report));
    ck_assert_msg(!strstr(sb_cstr(&report), "fk_other"), "%s", sb_cstr(&report));
    ck_assert_msg(strstr(sb_cstr(&report), "would"), "%s", sb_cstr(&report));
    int lines = 0;
    for (const char *p = sb_cstr(&report); *p; p++)
        lines += *p == '\n';
    ck_assert_int_eq(lines, N_PLAIN + 1);
    sb_free(&report);
    ck_assert_int_eq(leftovers(), 0);
}
END_TEST

/* auto_migrate_fks = false: the worker's setup leaves every constraint as it is (and still reads
 * the catalog); true: it migrates. */
START_TEST(test_migrate_disabled)
{
    open_migrate();
    const char *before = fk_snapshot();
    T.cfg.auto_migrate_fks = false;
    char err[1024] = "";
    ck_assert_msg(app_setup(err, sizeof err), "%s", err);
    ck_assert(T.schema.discovered);
    ck_assert_str_eq(fk_snapshot(), before);
    ck_assert_str_eq(fk_flags("c", "fk_del_cascade"), "f|f|t");

    T.cfg.auto_migrate_fks = true;
    ck_assert_msg(app_setup(err, sizeof err), "%s", err);
    ck_assert_str_eq(fk_flags("c", "fk_del_cascade"), "t|t|t");
    const struct sync_fk *f = find_fk("fk_del_cascade");
    ck_assert_ptr_nonnull(f);
    ck_assert(f->deferrable && f->deferred);
}
END_TEST

/* Data violating an FK: the migration of that FK is refused cleanly — false, the report names
 * the constraint, the original is intact, no temporary constraint is left — and the others are
 * migrated. */
START_TEST(test_migrate_violating_data)
{
    static const char *const tables[] = { "business.c", "business.c2", NULL };
    tdb_open_tables(&T, tables);
    tdb_exec(&T, "CREATE SCHEMA business;"
                 "CREATE TABLE business.p (id int PRIMARY KEY); INSERT INTO business.p VALUES (1);"
                 "CREATE TABLE business.c (id uuid PRIMARY KEY, ref int,"
                 "  ok_ref int CONSTRAINT fk_good REFERENCES business.p ON DELETE SET NULL);"
                 "INSERT INTO business.c VALUES ('%s', 2, 1);"
                 "ALTER TABLE business.c ADD CONSTRAINT fk_bad FOREIGN KEY (ref) REFERENCES business.p"
                 "  ON DELETE CASCADE NOT VALID;"
                 "CREATE TABLE business.c2 (id uuid PRIMARY KEY,"
                 "  ref int CONSTRAINT fk_bad2 REFERENCES business.p ON UPDATE CASCADE);"
                 "SET session_replication_role = replica;"
                 "INSERT INTO business.c2 VALUES ('%s', 3);"
                 "RESET session_replication_role;",
             USER1, USER2);
    const char *bad = fk_row("c", "fk_bad", "oid, condeferrable, condeferred, convalidated, pg_get_constraintdef(oid)");
    const char *bad2 = fk_row("c2", "fk_bad2", "oid, condeferrable, condeferred, convalidated, pg_get_constraintdef(oid)");
    ck_assert_str_eq(fk_flags("c", "fk_bad"), "f|f|f");
    ck_assert_str_eq(fk_flags("c2", "fk_bad2"), "f|f|t");
    const char *good_def = fk_def("c", "fk_good");

    strbuf_t report = STRBUF_INIT;
    bool ok = sync_fk_migrate(&T.cfg, T.conn, false, &report);
    ck_assert_msg(!ok, "migration over violating data must fail: %s", oneline(&report));
    ck_assert_int_eq(PQtransactionStatus(T.conn), PQTRANS_IDLE);
    ck_assert_msg(strstr(sb_cstr(&report), "fk_bad:") || strstr(sb_cstr(&report), "fk_bad "),
                  "the report must name fk_bad: %s", sb_cstr(&report));
    ck_assert_msg(strstr(sb_cstr(&report), "fk_bad2"), "the report must name fk_bad2: %s", sb_cstr(&report));
    ck_assert_str_eq(fk_row("c", "fk_bad", "oid, condeferrable, condeferred, convalidated, pg_get_constraintdef(oid)"),
                     bad);
    ck_assert_str_eq(fk_row("c2", "fk_bad2", "oid, condeferrable, condeferred, convalidated, pg_get_constraintdef(oid)"),
                     bad2);
    ck_assert_int_eq(leftovers(), 0);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'"), 3);
    /* the valid one was migrated all the same */
    ck_assert_str_eq(fk_flags("c", "fk_good"), "t|t|t");
    ck_assert_str_eq(fk_def("c", "fk_good"), tdb_printf(&T, "%s DEFERRABLE INITIALLY DEFERRED", good_def));
    sb_free(&report);
    /* the connection is still usable */
    discover_ok();
}
END_TEST

/* Constraint names are kept whatever they are: the longest ASCII name, and a UTF-8 name whose
 * 40th byte falls inside a multi-byte character. */
START_TEST(test_migrate_names)
{
    static const char *const tables[] = { "business.c", NULL };
    const char *longname = "fk_012345678901234567890123456789012345678901234567890123456789";   /* 63 */
    const char *utf8name = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\xc3\xa9_fk";                  /* 39 x, é */
    ck_assert_int_eq((int)strlen(longname), 63);
    tdb_open_tables(&T, tables);
    tdb_exec(&T, "CREATE SCHEMA business; CREATE TABLE business.p (id int PRIMARY KEY);"
                 "CREATE TABLE business.c (id uuid PRIMARY KEY, r1 int, r2 int,"
                 "  CONSTRAINT %s FOREIGN KEY (r1) REFERENCES business.p ON DELETE CASCADE,"
                 "  CONSTRAINT \"%s\" FOREIGN KEY (r2) REFERENCES business.p ON DELETE SET NULL)",
             longname, utf8name);
    const char *def_long = fk_def("c", longname);
    const char *def_utf8 = fk_def("c", utf8name);
    strbuf_t report = STRBUF_INIT;
    bool ok = sync_fk_migrate(&T.cfg, T.conn, false, &report);
    ck_assert_int_eq(leftovers(), 0);
    ck_assert_str_eq(fk_def("c", longname), tdb_printf(&T, "%s DEFERRABLE INITIALLY DEFERRED", def_long));
    ck_assert_msg(ok, "sync_fk_migrate failed: %s", oneline(&report));
    ck_assert_str_eq(fk_def("c", utf8name), tdb_printf(&T, "%s DEFERRABLE INITIALLY DEFERRED", def_utf8));
    sb_free(&report);
}
END_TEST

/* ============================================================================== main */

static Suite *precheck_suite(void)
{
    Suite *s = suite_create("fk pre-check");
    TCase *tc = tcase("batch and database", TDB_OWN_DB);
    tcase_add_test(tc, test_many_foreign_keys);
    tcase_add_test(tc, test_reverse_order_batch);
    tcase_add_test(tc, test_missing_parent);
    tcase_add_test(tc, test_absent_or_null_fk_not_checked);
    tcase_add_test(tc, test_parent_later_batch_retry);
    tcase_add_test(tc, test_sidecar_parent_user_and_deleted);
    tcase_add_test(tc, test_parent_in_business_table);
    tcase_add_test(tc, test_parent_conflict_in_batch);
    tcase_add_test(tc, test_retry_after_parent_deleted);
    tcase_add_test(tc, test_delete_parent_and_children);
    tcase_add_test(tc, test_unregistered_parent);
    tcase_add_test(tc, test_parent_unique_column_in_batch);
    tcase_add_test(tc, test_composite_not_prechecked);
    suite_add_tcase(s, tc);

    tc = tcase("values", TDB_OWN_DB);
    tcase_add_test(tc, test_uncastable_uuid_values);
    tcase_add_test(tc, test_integer_parents);
    tcase_add_test(tc, test_other_types_via_fk_castable);
    tcase_add_test(tc, test_uuid_spellings);
    tcase_add_test(tc, test_unregistered_parent_varchar_no_truncation);
    suite_add_tcase(s, tc);

    tc = tcase("self reference and cycles", TDB_OWN_DB);
    tcase_add_test(tc, test_self_reference);
    tcase_add_test(tc, test_self_reference_child_first);
    tcase_add_test(tc, test_forward_chain);
    tcase_add_test(tc, test_cycle_ranks_and_migration);
    tcase_add_test(tc, test_cycle_batch_applied);
    tcase_add_test(tc, test_cycle_two_step);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *discovery_suite(void)
{
    Suite *s = suite_create("fk discovery");
    TCase *tc = tcase("ranks", TDB_OWN_DB);
    tcase_add_test(tc, test_discovery_ranks_deterministic);
    tcase_add_test(tc, test_discovery_three_level);
    tcase_add_test(tc, test_discovery_fks);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *migration_suite(void)
{
    Suite *s = suite_create("fk migration");
    TCase *tc = tcase("deferrable", TDB_OWN_DB);
    tcase_add_test(tc, test_migrate_actions);
    tcase_add_test(tc, test_migrate_dry_run);
    tcase_add_test(tc, test_migrate_disabled);
    tcase_add_test(tc, test_migrate_violating_data);
    tcase_add_test(tc, test_migrate_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(precheck_suite(), discovery_suite(), migration_suite(), NULL);
}
