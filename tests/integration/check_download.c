/* download_params_parse and sync_download against a real PostgreSQL (tests/pg.sh): SPEC §5 and
 * the download side of §8 (consistent windows, isolation). Rows are written through sync_upload,
 * exactly as clients write them. Every test works in a fresh database of its own (testdb.c). */
#include "testdb.h"
#include "db/bootstrap.h"
#include "../run_suites.h"

#include "strbuf.h"

#include <check.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define U "alice"
#define U2 "bob"
#define D "phone"
#define D2 "laptop"
#define D3 "tablet"

#define PK1 "11111111-1111-4111-8111-111111111111"
#define PK2 "22222222-2222-4222-8222-222222222222"
#define PK3 "33333333-3333-4333-8333-333333333333"

/* ------------------------------------------------------------------------------ builders */

/* A synthetic pk for row n. */
static const char *pk_n(int n)
{
    return tdb_printf(&T, "00000000-0000-4000-8000-%012d", n);
}

/* Uploads one batch and asserts every change applied. */
static void upload_applied(const char *user, const char *device, const char *body)
{
    struct tdb_answer *a = tdb_upload_ok(&T, user, device, body);
    for (int i = 0; i < tdb_nstatuses(a); i++) {
        json_object *st = tdb_status(a, i);
        ck_assert_msg(strcmp(tdb_str(st, "status"), "applied") == 0 && tdb_has(st, "new_server_version"),
                      "setup upload not applied: %s", a->body);
    }
    tdb_answer_free(a);
}

/* n fresh rows (inserts) of business.users, pks from first_pk on, scids from first_scid on. */
static void insert_rows(const char *user, const char *device, const char *schema, const char *table, int first_pk,
                        int n, long long first_scid)
{
    strbuf_t sb = STRBUF_INIT;
    sb_puts(&sb, "{\"changes\":[");
    for (int i = 0; i < n; i++)
        sb_printf(&sb, "%s%s", i ? "," : "",
                  chg(first_scid + i, schema, table, "INSERT", pk_n(first_pk + i), 0,
                      tdb_printf(&T, "{\"n\":%d}", first_pk + i)));
    sb_puts(&sb, "]}");
    upload_applied(user, device, sb.data);
    sb_free(&sb);
}

/* ------------------------------------------------------------------------- assertions */

static void assert_page(const struct tdb_answer *a, int n, bool has_more, long long next_after,
                        long long window_until)
{
    ck_assert_msg(tdb_nchanges(a) == n, "%d changes, expected %d: %s", tdb_nchanges(a), n, a->body);
    ck_assert_msg(a->rows == (unsigned long)n, "rows reported %lu, expected %d", a->rows, n);
    ck_assert_msg(tdb_bool(a->json, "has_more") == has_more, "has_more should be %s: %s",
                  has_more ? "true" : "false", a->body);
    ck_assert_msg(tdb_int(a->json, "next_after") == next_after, "next_after %lld, expected %lld: %s",
                  tdb_int(a->json, "next_after"), next_after, a->body);
    ck_assert_msg(tdb_int(a->json, "window_until") == window_until, "window_until %lld, expected %lld: %s",
                  tdb_int(a->json, "window_until"), window_until, a->body);
}

/* server_id of changes[i] */
static long long sid(const struct tdb_answer *a, int i)
{
    return tdb_int(tdb_change(a, i), "server_id");
}

/* ==================================================================== parameters */

struct bad_param {
    const char *query;
    const char *err;
};

static const struct bad_param bad_params[] = {
    { "after=-1", "after must be an integer >= 0" },
    { "after=abc", "after must be an integer >= 0" },
    { "after=1.5", "after must be an integer >= 0" },
    { "after=", "after must be an integer >= 0" },
    { "after=1e3", "after must be an integer >= 0" },
    { "after=99999999999999999999", "after must be an integer >= 0" },
    { "after=+1", "after must be an integer >= 0" },
    { "after= 1", "after must be an integer >= 0" },
    { "limit=0", "limit must be an integer from 1 to 1000" },
    { "limit=1001", "limit must be an integer from 1 to 1000" },
    { "limit=x", "limit must be an integer from 1 to 1000" },
    { "limit=", "limit must be an integer from 1 to 1000" },
    { "limit=-5", "limit must be an integer from 1 to 1000" },
    { "limit=10.0", "limit must be an integer from 1 to 1000" },
    { "limit=99999999999999999999999", "limit must be an integer from 1 to 1000" },
    { "schema=Bad-Schema", "schema must match ^[a-z0-9_]+$" },
    { "schema=a.b", "schema must match ^[a-z0-9_]+$" },
    { "schema=Business", "schema must match ^[a-z0-9_]+$" },
    { "schema=a b", "schema must match ^[a-z0-9_]+$" },
    { "until=-1", "until must be an integer >= 0" },
    { "until=x", "until must be an integer >= 0" },
    { "until=", "until must be an integer >= 0" },
    { "until=2.5", "until must be an integer >= 0" },
    { "after=5&limit=20&until=-3", "until must be an integer >= 0" },
};

START_TEST(test_param_400)
{
    const struct bad_param *bp = &bad_params[_i];
    struct download_params p;
    char err[256] = "";
    ck_assert_msg(!tdb_download_params(bp->query, &p, err, sizeof err), "%s was accepted", bp->query);
    ck_assert_msg(strcmp(err, bp->err) == 0, "%s: err \"%s\", expected \"%s\"", bp->query, err, bp->err);
}
END_TEST

START_TEST(test_param_defaults_and_edges)
{
    struct download_params p;
    char err[256] = "";
    ck_assert_msg(tdb_download_params("", &p, err, sizeof err), "%s", err);
    ck_assert_int_eq(p.after, 0);
    ck_assert_int_eq(p.limit, 100);
    ck_assert_ptr_null(p.schema);
    ck_assert(!p.include_self);
    ck_assert_int_eq(p.until, 0);

    ck_assert_msg(tdb_download_params("limit=1", &p, err, sizeof err), "%s", err);
    ck_assert_int_eq(p.limit, 1);
    ck_assert_msg(tdb_download_params("limit=1000", &p, err, sizeof err), "%s", err);
    ck_assert_int_eq(p.limit, 1000);
    ck_assert_msg(tdb_download_params("after=0&until=0", &p, err, sizeof err), "%s", err);
    ck_assert_int_eq(p.after, 0);
    ck_assert_int_eq(p.until, 0);
    ck_assert_msg(tdb_download_params("after=9223372036854775807&until=42", &p, err, sizeof err), "%s", err);
    ck_assert(p.after == 9223372036854775807LL);
    ck_assert_int_eq(p.until, 42);

    ck_assert_msg(tdb_download_params("include_self=yes", &p, err, sizeof err), "%s", err);
    ck_assert(!p.include_self);
    ck_assert_msg(tdb_download_params("include_self=TRUE", &p, err, sizeof err), "%s", err);
    ck_assert(!p.include_self);
    ck_assert_msg(tdb_download_params("include_self=1", &p, err, sizeof err), "%s", err);
    ck_assert(!p.include_self);
    ck_assert_msg(tdb_download_params("include_self=", &p, err, sizeof err), "%s", err);
    ck_assert(!p.include_self);
    ck_assert_msg(tdb_download_params("include_self=true", &p, err, sizeof err), "%s", err);
    ck_assert(p.include_self);

    ck_assert_msg(tdb_download_params("schema=business_2", &p, err, sizeof err), "%s", err);
    ck_assert_str_eq(p.schema, "business_2");
    ck_assert_msg(tdb_download_params("after=7&limit=3&schema=public&include_self=true&until=9", &p, err, sizeof err),
                  "%s", err);
    ck_assert_int_eq(p.after, 7);
    ck_assert_int_eq(p.limit, 3);
    ck_assert_str_eq(p.schema, "public");
    ck_assert(p.include_self);
    ck_assert_int_eq(p.until, 9);
}
END_TEST

START_TEST(test_param_400_through_download)
{
    /* the helper path: a bad parameter never reaches the database and answers nothing */
    struct tdb_answer *a = tdb_download(&T, U, D, "limit=0");
    ck_assert_int_eq(a->outcome, SYNC_BAD_REQUEST);
    ck_assert_str_eq(a->err, "limit must be an integer from 1 to 1000");
    ck_assert_ptr_null(a->json);
    tdb_answer_free(a);
    /* valid extremes work against the database */
    a = tdb_download_ok(&T, U, D, "limit=1000&after=9223372036854775807");
    assert_page(a, 0, false, 9223372036854775807LL, 0);
    tdb_answer_free(a);
    a = tdb_download_ok(&T, U, D, "limit=1&include_self=yes");
    assert_page(a, 0, false, 0, 0);
    tdb_answer_free(a);
}
END_TEST

/* ==================================================================== rows */

START_TEST(test_row_fields)
{
    /* insert v1, update v2, delete v3 of one row (upper-case pk), then a live row */
    upload_applied(U, D,
                   batch(chg(1, "business", "users", "INSERT", "11111111-1111-4111-8111-11111111111A", 0,
                             "{\"name\":\"John\",\"tags\":[1,2]}"),
                         NULL));
    upload_applied(U, D,
                   batch(chg(2, "business", "users", "UPDATE", "11111111111141118111" "11111111111a", 1,
                             "{\"name\":\"Jane\"}"),
                         NULL));
    upload_applied(U, D, batch(chg(3, "business", "users", "DELETE", "{11111111-1111-4111-8111-11111111111a}", 2, NULL),
                               NULL));
    upload_applied(U, D, batch(chg(4, "public", "notes", "INSERT", PK2, 0, "{\"text\":\"hello\"}"), NULL));
    long long h = tdb_highest(&T, U);

    struct tdb_answer *a = tdb_download_ok(&T, U, D2, "");
    assert_page(a, 4, false, h, h);

    static const char *const ops[] = { "INSERT", "UPDATE", "DELETE", "INSERT" };
    regex_t re;
    ck_assert_int_eq(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    long long prev = 0;
    for (int i = 0; i < 4; i++) {
        json_object *c = tdb_change(a, i);
        ck_assert_int_gt(sid(a, i), prev);
        prev = sid(a, i);
        ck_assert_str_eq(tdb_str(c, "op"), ops[i]);
        ck_assert_str_eq(tdb_str(c, "source_id"), D);
        ck_assert_int_eq(tdb_int(c, "source_change_id"), i + 1);
        const char *ts = tdb_str(c, "ts");
        ck_assert_msg(regexec(&re, ts, 0, NULL, 0) == 0, "ts \"%s\" is not RFC 3339 UTC with microseconds", ts);
        ck_assert_msg(tdb_has(c, "payload"), "changes[%d] without payload: %s", i, a->body);
    }
    regfree(&re);
    for (int i = 0; i < 3; i++) {
        json_object *c = tdb_change(a, i);
        ck_assert_str_eq(tdb_str(c, "schema"), "business");
        ck_assert_str_eq(tdb_str(c, "table"), "users");
        ck_assert_str_eq(tdb_str(c, "pk"), "11111111-1111-4111-8111-11111111111a");
        /* the version that change produced */
        ck_assert_int_eq(tdb_int(c, "server_version"), i + 1);
        /* the row's current flag: deleted now, so every row of it says so */
        ck_assert_msg(tdb_bool(c, "deleted"), "changes[%d].deleted must be the current flag (true): %s", i, a->body);
    }
    ck_assert(tdb_json_eq(tdb_get(tdb_change(a, 0), "payload"), "{\"name\":\"John\",\"tags\":[1,2]}"));
    ck_assert(tdb_json_eq(tdb_get(tdb_change(a, 1), "payload"), "{\"name\":\"Jane\"}"));
    ck_assert_msg(tdb_is_null(tdb_change(a, 2), "payload"), "a DELETE has payload null: %s", a->body);
    json_object *c = tdb_change(a, 3);
    ck_assert_str_eq(tdb_str(c, "schema"), "public");
    ck_assert_str_eq(tdb_str(c, "table"), "notes");
    ck_assert_str_eq(tdb_str(c, "pk"), PK2);
    ck_assert_int_eq(tdb_int(c, "server_version"), 1);
    ck_assert(!tdb_bool(c, "deleted"));
    ck_assert(tdb_json_eq(tdb_get(c, "payload"), "{\"text\":\"hello\"}"));
    tdb_answer_free(a);

    /* resurrected: every row of it now says deleted false, versions unchanged */
    upload_applied(U, D, batch(chg(5, "business", "users", "INSERT", "11111111-1111-4111-8111-11111111111a", 3,
                                   "{\"name\":\"back\"}"),
                               NULL));
    a = tdb_download_ok(&T, U, D2, "");
    ck_assert_int_eq(tdb_nchanges(a), 5);
    static const int rows_of_pk1[] = { 0, 1, 2, 4 };
    for (int i = 0; i < 4; i++) {
        c = tdb_change(a, rows_of_pk1[i]);
        ck_assert_int_eq(tdb_int(c, "server_version"), i + 1);
        ck_assert_msg(!tdb_bool(c, "deleted"), "changes[%d].deleted must be false now: %s", rows_of_pk1[i], a->body);
    }
    tdb_answer_free(a);
}
END_TEST


/* The answer byte for byte, as oversyncd wrote it before the download path was made cheaper
 * (issue #11, item 3): the statement, the result format and the storage of the payload may
 * change, the bytes on the wire may not. Rows come through the upload (the payload text as the
 * upload stores it: key order, spacing, escapes, numbers), plus a log row written by hand with
 * identifiers beyond 2^53; every ts is then set to a fixed instant (before 1970, the PostgreSQL
 * epoch, a leap day, the last microsecond of 9999). deleted is the row's current flag: rows of a
 * row deleted since, of a row deleted and inserted again, and of a row deleted for good. */
static const char *const wire_ts[] = {
    "1969-07-20 20:17:40+00",       "2000-01-01 00:00:00+00",        "1999-12-31 23:59:59.999999+00",
    "2024-02-29 12:34:56.000001+00", "2038-01-19 03:14:08.5+00",      "2025-08-08 09:01:00.123456+02",
    "9999-12-31 23:59:59.999999+00", "2001-09-09 01:46:40.1+00",      "1970-01-01 00:00:00+00",
    "2025-12-31 23:59:59.99+00",
};

/* captured from oversyncd 395d083, before issue #11 item 3 */
static const char *const wire_expected[] = {
    "{\"changes\":[{\"server_id\":1,\"schema\":\"business\",\"table\":\"users\",\"op\":\"INSERT\",\"pk\":\"11111111-1111-4111-8111-111111111111\",\"payload\":{\"a\": \"x\", \"b\": 1, \"aa\": [], \"zzz\": {}},\"server_version\":1,\"deleted\":true,\"source_id\":\"phone\",\"source_change_id\":1,\"ts\":\"1969-07-20T20:17:40.000000Z\"},"
    "{\"server_id\":2,\"schema\":\"business\",\"table\":\"users\",\"op\":\"UPDATE\",\"pk\":\"11111111-1111-4111-8111-111111111111\",\"payload\":{\"e\": 100, \"f\": 1.50, \"n\": -0.00010, \"z\": {\"a\": true, \"y\": [1, {\"x\": null}, [[]], \"s\"]}, \"big\": 123456789012345678901234567890.123456789, \"dup\": 2, \"int\": 9007199254740993},\"server_version\":2,\"deleted\":true,\"source_id\":\"phone\",\"source_change_id\":2,\"ts\":\"2000-01-01T00:00:00.000000Z\"},"
    "{\"server_id\":3,\"schema\":\"business\",\"table\":\"users\",\"op\":\"DELETE\",\"pk\":\"11111111-1111-4111-8111-111111111111\",\"payload\":null,\"server_version\":3,\"deleted\":true,\"source_id\":\"phone\",\"source_change_id\":3,\"ts\":\"1999-12-31T23:59:59.999999Z\"},"
    "{\"server_id\":4,\"schema\":\"public\",\"table\":\"notes\",\"op\":\"INSERT\",\"pk\":\"22222222-2222-4222-8222-222222222222\",\"payload\":{\"u\": \"\303\251t\303\251 \342\234\223 \360\237\230\200 \303\251 \342\234\223 \360\237\230\200\", \"\303\251\": 1, \"esc\": \"q\\\"b\\\\s/ \\n\\t\\r\\b\\f \\u0001\\u001f\177\"},\"server_version\":1,\"deleted\":false,\"source_id\":\"phone\",\"source_change_id\":4,\"ts\":\"2024-02-29T12:34:56.000001Z\"},"
    "{\"server_id\":5,\"schema\":\"public\",\"table\":\"notes\",\"op\":\"DELETE\",\"pk\":\"22222222-2222-4222-8222-222222222222\",\"payload\":null,\"server_version\":2,\"deleted\":false,\"source_id\":\"phone\",\"source_change_id\":5,\"ts\":\"2038-01-19T03:14:08.500000Z\"},"
    "{\"server_id\":6,\"schema\":\"business\",\"table\":\"users\",\"op\":\"INSERT\",\"pk\":\"33333333-3333-4333-8333-333333333333\",\"payload\":{},\"server_version\":1,\"deleted\":true,\"source_id\":\"laptop\",\"source_change_id\":2,\"ts\":\"2025-08-08T07:01:00.123456Z\"},"
    "{\"server_id\":7,\"schema\":\"public\",\"table\":\"notes\",\"op\":\"INSERT\",\"pk\":\"22222222-2222-4222-8222-222222222222\",\"payload\":{\"again\": [true, false, null]},\"server_version\":3,\"deleted\":false,\"source_id\":\"laptop\",\"source_change_id\":1,\"ts\":\"9999-12-31T23:59:59.999999Z\"},"
    "{\"server_id\":8,\"schema\":\"business\",\"table\":\"users\",\"op\":\"DELETE\",\"pk\":\"33333333-3333-4333-8333-333333333333\",\"payload\":null,\"server_version\":2,\"deleted\":true,\"source_id\":\"laptop\",\"source_change_id\":3,\"ts\":\"2001-09-09T01:46:40.100000Z\"},"
    "{\"server_id\":9007199254740993,\"schema\":\"public\",\"table\":\"notes\",\"op\":\"INSERT\",\"pk\":\"abcdef01-2345-4789-8bcd-ef0123456789\",\"payload\":{\"a\": [1.0, 2], \"k\": \"v\"},\"server_version\":9223372036854775806,\"deleted\":false,\"source_id\":\"other \\\"server\\\"\",\"source_change_id\":9223372036854775807,\"ts\":\"2025-12-31T23:59:59.990000Z\"}],\"has_more\":false,\"next_after\":9007199254740993,\"window_until\":9007199254740993}",
    "{\"changes\":[{\"server_id\":1,\"schema\":\"business\",\"table\":\"users\",\"op\":\"INSERT\",\"pk\":\"11111111-1111-4111-8111-111111111111\",\"payload\":{\"a\": \"x\", \"b\": 1, \"aa\": [], \"zzz\": {}},\"server_version\":1,\"deleted\":true,\"source_id\":\"phone\",\"source_change_id\":1,\"ts\":\"1969-07-20T20:17:40.000000Z\"},"
    "{\"server_id\":2,\"schema\":\"business\",\"table\":\"users\",\"op\":\"UPDATE\",\"pk\":\"11111111-1111-4111-8111-111111111111\",\"payload\":{\"e\": 100, \"f\": 1.50, \"n\": -0.00010, \"z\": {\"a\": true, \"y\": [1, {\"x\": null}, [[]], \"s\"]}, \"big\": 123456789012345678901234567890.123456789, \"dup\": 2, \"int\": 9007199254740993},\"server_version\":2,\"deleted\":true,\"source_id\":\"phone\",\"source_change_id\":2,\"ts\":\"2000-01-01T00:00:00.000000Z\"},"
    "{\"server_id\":3,\"schema\":\"business\",\"table\":\"users\",\"op\":\"DELETE\",\"pk\":\"11111111-1111-4111-8111-111111111111\",\"payload\":null,\"server_version\":3,\"deleted\":true,\"source_id\":\"phone\",\"source_change_id\":3,\"ts\":\"1999-12-31T23:59:59.999999Z\"}],\"has_more\":true,\"next_after\":3,\"window_until\":9007199254740993}",
    "{\"changes\":[{\"server_id\":4,\"schema\":\"public\",\"table\":\"notes\",\"op\":\"INSERT\",\"pk\":\"22222222-2222-4222-8222-222222222222\",\"payload\":{\"u\": \"\303\251t\303\251 \342\234\223 \360\237\230\200 \303\251 \342\234\223 \360\237\230\200\", \"\303\251\": 1, \"esc\": \"q\\\"b\\\\s/ \\n\\t\\r\\b\\f \\u0001\\u001f\177\"},\"server_version\":1,\"deleted\":false,\"source_id\":\"phone\",\"source_change_id\":4,\"ts\":\"2024-02-29T12:34:56.000001Z\"},"
    "{\"server_id\":5,\"schema\":\"public\",\"table\":\"notes\",\"op\":\"DELETE\",\"pk\":\"22222222-2222-4222-8222-222222222222\",\"payload\":null,\"server_version\":2,\"deleted\":false,\"source_id\":\"phone\",\"source_change_id\":5,\"ts\":\"2038-01-19T03:14:08.500000Z\"},"
    "{\"server_id\":6,\"schema\":\"business\",\"table\":\"users\",\"op\":\"INSERT\",\"pk\":\"33333333-3333-4333-8333-333333333333\",\"payload\":{},\"server_version\":1,\"deleted\":true,\"source_id\":\"laptop\",\"source_change_id\":2,\"ts\":\"2025-08-08T07:01:00.123456Z\"}],\"has_more\":true,\"next_after\":6,\"window_until\":9007199254740993}",
    "{\"changes\":[{\"server_id\":4,\"schema\":\"public\",\"table\":\"notes\",\"op\":\"INSERT\",\"pk\":\"22222222-2222-4222-8222-222222222222\",\"payload\":{\"u\": \"\303\251t\303\251 \342\234\223 \360\237\230\200 \303\251 \342\234\223 \360\237\230\200\", \"\303\251\": 1, \"esc\": \"q\\\"b\\\\s/ \\n\\t\\r\\b\\f \\u0001\\u001f\177\"},\"server_version\":1,\"deleted\":false,\"source_id\":\"phone\",\"source_change_id\":4,\"ts\":\"2024-02-29T12:34:56.000001Z\"},"
    "{\"server_id\":5,\"schema\":\"public\",\"table\":\"notes\",\"op\":\"DELETE\",\"pk\":\"22222222-2222-4222-8222-222222222222\",\"payload\":null,\"server_version\":2,\"deleted\":false,\"source_id\":\"phone\",\"source_change_id\":5,\"ts\":\"2038-01-19T03:14:08.500000Z\"},"
    "{\"server_id\":7,\"schema\":\"public\",\"table\":\"notes\",\"op\":\"INSERT\",\"pk\":\"22222222-2222-4222-8222-222222222222\",\"payload\":{\"again\": [true, false, null]},\"server_version\":3,\"deleted\":false,\"source_id\":\"laptop\",\"source_change_id\":1,\"ts\":\"9999-12-31T23:59:59.999999Z\"},"
    "{\"server_id\":9,\"schema\":\"public\",\"table\":\"notes\",\"op\":\"UPDATE\",\"pk\":\"22222222-2222-4222-8222-222222222222\",\"payload\":{\"x\": 0, \"again\": \"\"},\"server_version\":4,\"deleted\":false,\"source_id\":\"tablet\",\"source_change_id\":1,\"ts\":\"1970-01-01T00:00:00.000000Z\"},"
    "{\"server_id\":9007199254740993,\"schema\":\"public\",\"table\":\"notes\",\"op\":\"INSERT\",\"pk\":\"abcdef01-2345-4789-8bcd-ef0123456789\",\"payload\":{\"a\": [1.0, 2], \"k\": \"v\"},\"server_version\":9223372036854775806,\"deleted\":false,\"source_id\":\"other \\\"server\\\"\",\"source_change_id\":9223372036854775807,\"ts\":\"2025-12-31T23:59:59.990000Z\"}],\"has_more\":false,\"next_after\":9007199254740993,\"window_until\":9007199254740993}",
    "{\"changes\":[{\"server_id\":5,\"schema\":\"public\",\"table\":\"notes\",\"op\":\"DELETE\",\"pk\":\"22222222-2222-4222-8222-222222222222\",\"payload\":null,\"server_version\":2,\"deleted\":false,\"source_id\":\"phone\",\"source_change_id\":5,\"ts\":\"2038-01-19T03:14:08.500000Z\"},"
    "{\"server_id\":6,\"schema\":\"business\",\"table\":\"users\",\"op\":\"INSERT\",\"pk\":\"33333333-3333-4333-8333-333333333333\",\"payload\":{},\"server_version\":1,\"deleted\":true,\"source_id\":\"laptop\",\"source_change_id\":2,\"ts\":\"2025-08-08T07:01:00.123456Z\"},"
    "{\"server_id\":7,\"schema\":\"public\",\"table\":\"notes\",\"op\":\"INSERT\",\"pk\":\"22222222-2222-4222-8222-222222222222\",\"payload\":{\"again\": [true, false, null]},\"server_version\":3,\"deleted\":false,\"source_id\":\"laptop\",\"source_change_id\":1,\"ts\":\"9999-12-31T23:59:59.999999Z\"},"
    "{\"server_id\":8,\"schema\":\"business\",\"table\":\"users\",\"op\":\"DELETE\",\"pk\":\"33333333-3333-4333-8333-333333333333\",\"payload\":null,\"server_version\":2,\"deleted\":true,\"source_id\":\"laptop\",\"source_change_id\":3,\"ts\":\"2001-09-09T01:46:40.100000Z\"}],\"has_more\":false,\"next_after\":8,\"window_until\":8}",
    "{\"changes\":[],\"has_more\":false,\"next_after\":9007199254740993,\"window_until\":9007199254740993}",
};

/* The rows of test_wire_bytes: through the upload, and one by hand; fixed ts. */
static void wire_rows(void)
{
    const char *A = "11111111-1111-4111-8111-111111111111", *B = "22222222-2222-4222-8222-222222222222",
               *C = "33333333-3333-4333-8333-333333333333";
    upload_applied(U, D, batch(chg(1, "business", "users", "INSERT", A, 0,
                                   "{ \"zzz\" : {}, \"b\":1, \"aa\": [ ], \"a\":\"x\" }"),
                               chg(2, "business", "users", "UPDATE", A, 1,
                                   "{\"z\":{\"y\":[1,{\"x\":null},[[]],\"s\"],\"a\":true},\"int\":9007199254740993,"
                                   "\"big\":123456789012345678901234567890.123456789,\"f\":1.50,\"e\":1e2,"
                                   "\"n\":-1.0e-4,\"dup\":1,\"dup\":2}"),
                               chg(3, "business", "users", "DELETE", A, 2, NULL), NULL));
    upload_applied(U, D, batch(chg(4, "public", "notes", "INSERT", B, 0,
                                   "{\"u\":\"\\u00e9t\\u00e9 \\u2713 \\ud83d\\ude00 é ✓ 😀\","
                                   "\"esc\":\"q\\\"b\\\\s\\/ \\n\\t\\r\\b\\f \\u0001\\u001f\\u007f\",\"\\u00e9\":1}"),
                               chg(5, "public", "notes", "DELETE", B, 1, NULL), NULL));
    upload_applied(U, D2, batch(chg(1, "public", "notes", "INSERT", B, 2, "{\"again\":[true,false,null]}"),
                                chg(2, "business", "users", "INSERT", C, 0, "{}"), NULL));
    upload_applied(U, D2, batch(chg(3, "business", "users", "DELETE", C, 1, NULL), NULL));
    upload_applied(U, D3, batch(chg(1, "public", "notes", "UPDATE", B, 3, "{\"again\":\"\",\"x\":-0}"), NULL));
    /* a row written by another server, its identifiers past 2^53 */
    tdb_exec(&T, "INSERT INTO sync.server_change_log (server_id, user_id, schema_name, table_name, op, pk_uuid,"
                 " payload, source_id, source_change_id, server_version) VALUES (9007199254740993, '%s',"
                 " 'public', 'notes', 'INSERT', 'ABCDEF01-2345-4789-8BCD-EF0123456789',"
                 " '{\"k\": \"v\", \"a\": [1.0, 2]}'::jsonb, 'other \"server\"', 9223372036854775807,"
                 " 9223372036854775806)", U);
    tdb_exec(&T, "SET TIME ZONE 'America/St_Johns'");
    int n = (int)tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log");
    ck_assert_int_eq(n, 10);
    for (int i = 0; i < n; i++)
        tdb_exec(&T, "UPDATE sync.server_change_log SET ts = '%s' WHERE server_id = (SELECT server_id"
                     " FROM sync.server_change_log ORDER BY server_id OFFSET %d LIMIT 1)", wire_ts[i], i);
}

static void assert_wire(const char *when)
{
    static const char *const queries[] = { "", "limit=3", "after=3&limit=3&include_self=true",
                                           "schema=public&include_self=true", "after=4&until=8",
                                           "after=9007199254740993" };
    for (size_t q = 0; q < sizeof queries / sizeof *queries; q++) {
        struct tdb_answer *a = tdb_download_ok(&T, U, D3, queries[q]);
        if (getenv("WIRE_PRINT")) {
            printf("WIRE %zu %s\n", q, a->body);
        } else if (strcmp(a->body, wire_expected[q]) != 0) {
            /* the whole answers to stderr: Check's own message has to stay short */
            size_t at = 0;
            while (a->body[at] && a->body[at] == wire_expected[q][at])
                at++;
            fprintf(stderr, "%s: download?%s answered\n%s\nexpected\n%s\n", when, queries[q], a->body,
                    wire_expected[q]);
            ck_abort_msg("%s: download?%s changed on the wire from byte %zu: \"%.60s\" where \"%.60s\" was expected",
                         when, queries[q], at, a->body + at, wire_expected[q] + at);
        }
        tdb_answer_free(a);
    }
}

START_TEST(test_wire_bytes)
{
    wire_rows();
    assert_wire("json change log");
}
END_TEST

/* Migration 0005 turns the change log's jsonb payloads into json: a sidecar upgraded with rows
 * in it answers with the same bytes before and after, each row's text being what jsonb printed. */
START_TEST(test_wire_bytes_across_migration_0005)
{
    tdb_exec(&T, "ALTER TABLE sync.server_change_log ALTER COLUMN payload TYPE jsonb USING payload::jsonb");
    /* bootstrap runs the migrations above the highest recorded one: 0005 and those after it */
    tdb_exec(&T, "DELETE FROM sync.schema_migrations WHERE version >= 5");
    wire_rows();
    ck_assert_str_eq(tdb_query(&T, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                                   " WHERE attrelid = 'sync.server_change_log'::regclass AND attname = 'payload'"),
                     "jsonb");
    assert_wire("jsonb change log, before 0005");
    char *before = tdb_query(&T, "SELECT string_agg(server_id || ' ' || coalesce(payload::text, '-'), E'\\n'"
                                 " ORDER BY server_id) FROM sync.server_change_log");
    char err[1024] = "";
    int applied = -1;
    ck_assert_msg(bootstrap_sidecar(T.conn, &applied, err, sizeof err), "bootstrap: %s", err);
    ck_assert_int_eq(applied, n_sidecar_migrations - 4);
    ck_assert_str_eq(tdb_query(&T, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                                   " WHERE attrelid = 'sync.server_change_log'::regclass AND attname = 'payload'"),
                     "json");
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(server_id || ' ' || coalesce(payload::text, '-'), E'\\n'"
                                   " ORDER BY server_id) FROM sync.server_change_log"),
                     before);
    assert_wire("after 0005");
    /* and uploads go on into the json column in the same form */
    upload_applied(U, D3, batch(chg(2, "public", "notes", "UPDATE", "22222222-2222-4222-8222-222222222222", 4,
                                    "{ \"zz\":1,\"a\" : [1.50,{\"b\":null}]}"), NULL));
    ck_assert_str_eq(tdb_query(&T, "SELECT payload::text FROM sync.server_change_log WHERE source_id = '%s'"
                                   " AND source_change_id = 2", D3),
                     "{\"a\": [1.50, {\"b\": null}], \"zz\": 1}");
}
END_TEST

/* ts is formatted by oversyncd from the binary timestamptz: the same text as PostgreSQL's
 * to_char for instants all over timestamptz's range (4713 BC to 294276 AD), whole seconds, days
 * and years around the epochs, leap days, and ±infinity (to_char gives NULL: nothing). */
START_TEST(test_ts_format)
{
    PGresult *r = PQexecParams(T.conn,
        "WITH t(ts) AS ("
        "  SELECT '4713-01-01 00:00:00+00 BC'::timestamptz UNION ALL SELECT '0001-12-31 23:59:59.999999+00 BC'"
        "  UNION ALL SELECT '0001-01-01 00:00:00+00' UNION ALL SELECT '0099-03-01 00:00:00+00'"
        "  UNION ALL SELECT '1600-02-29 12:00:00+00' UNION ALL SELECT '1900-02-28 23:59:59.5+00'"
        "  UNION ALL SELECT '1900-03-01 00:00:00+00' UNION ALL SELECT '1969-12-31 23:59:59.999999+00'"
        "  UNION ALL SELECT '1970-01-01 00:00:00+00' UNION ALL SELECT '1999-12-31 23:59:59.999999+00'"
        "  UNION ALL SELECT '2000-01-01 00:00:00+00' UNION ALL SELECT '2000-02-29 00:00:00.000001+00'"
        "  UNION ALL SELECT '2100-03-01 00:00:00+00' UNION ALL SELECT '9999-12-31 23:59:59.999999+00'"
        "  UNION ALL SELECT '10000-01-01 00:00:00+00' UNION ALL SELECT '294276-12-31 23:59:59.999999+00'"
        "  UNION ALL SELECT 'infinity' UNION ALL SELECT '-infinity'"
        "  UNION ALL SELECT '2000-01-01 00:00:00+00'::timestamptz + g * interval '1 day 1 hour 1 minute 1.000001 second'"
        "    FROM generate_series(-1000, 1000) g"
        "  UNION ALL SELECT to_timestamp(((g * 7919.4373) % 1) * 1.0e11 - 5.0e10) FROM generate_series(1, 3000) g"
        "  UNION ALL SELECT '4713-01-01 00:00:00+00 BC'::timestamptz + g * interval '7654321 days 1.234567 s'"
        "    FROM generate_series(0, 14) g)"
        "SELECT ts::text, ts, coalesce(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '')"
        "  FROM t", 0, NULL, NULL, NULL, NULL, 1);   /* ts as its binary value, the rest as text */
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_int_gt(PQntuples(r), 5000);
    for (int i = 0; i < PQntuples(r); i++) {
        strbuf_t sb = STRBUF_INIT;
        ck_assert_int_eq(PQgetlength(r, i, 1), 8);
        const unsigned char *b = (const unsigned char *)PQgetvalue(r, i, 1);
        uint64_t us = 0;
        for (int k = 0; k < 8; k++)
            us = us << 8 | b[k];
        sync_format_ts(&sb, (int64_t)us);
        ck_assert_msg(strcmp(sb_cstr(&sb), PQgetvalue(r, i, 2)) == 0, "%s formatted as \"%s\", to_char: \"%s\"",
                      PQgetvalue(r, i, 0), sb_cstr(&sb), PQgetvalue(r, i, 2));
        sb_free(&sb);
    }
    PQclear(r);
}
END_TEST

/* deleted is the row's current flag on every log row of it, whatever came before and after the
 * user's last DELETE: a pseudo-random history of inserts, updates, deletes and re-inserts of a
 * few rows, checked against sync_row_meta after every batch. */
START_TEST(test_deleted_is_current_flag)
{
    enum { ROWS = 6, BATCHES = 40 };
    long long version[ROWS] = { 0 };
    bool alive[ROWS] = { false };
    unsigned seed = 12345;
    long long scid = 0;
    for (int b = 0; b < BATCHES; b++) {
        strbuf_t sb = STRBUF_INIT;
        sb_puts(&sb, "{\"last_server_seq_seen\":0,\"changes\":[");
        int first = (int)((seed = seed * 1103515245u + 12345u) >> 16) % ROWS;
        int n = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 3;
        for (int k = 0; k < n; k++) {
            int i = (first + k) % ROWS;
            unsigned roll = (seed = seed * 1103515245u + 12345u) >> 16;
            const char *op = !alive[i] ? "INSERT" : roll % 3 == 0 ? "DELETE" : "UPDATE";
            sb_printf(&sb, "%s%s", k ? "," : "",
                      chg(++scid, i % 2 ? "business" : "public", i % 2 ? "users" : "notes", op, pk_n(i + 1),
                          version[i], strcmp(op, "DELETE") ? tdb_printf(&T, "{\"b\":%d}", b) : NULL));
            version[i]++;
            alive[i] = strcmp(op, "DELETE") != 0;
        }
        sb_puts(&sb, "]}");
        upload_applied(U, b % 2 ? D : D2, sb.data);
        sb_free(&sb);
        struct tdb_answer *a = tdb_download_ok(&T, U, D3, "limit=1000");
        for (int c = 0; c < tdb_nchanges(a); c++) {
            json_object *ch = tdb_change(a, c);
            const char *want = tdb_query(&T, "SELECT deleted FROM sync.sync_row_meta WHERE user_id = '%s'"
                                             " AND pk_uuid = '%s'", U, tdb_str(ch, "pk"));
            ck_assert_msg(tdb_bool(ch, "deleted") == (strcmp(want, "t") == 0),
                          "batch %d, server_id %lld (%s of %s): deleted %d, the row's flag is %s", b,
                          tdb_int(ch, "server_id"), tdb_str(ch, "op"), tdb_str(ch, "pk"), tdb_bool(ch, "deleted"),
                          want);
        }
        tdb_answer_free(a);
    }
    ck_assert_int_gt(tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log WHERE op = 'DELETE'"), 3);
    ck_assert_int_gt(tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log l WHERE op = 'INSERT'"
                                      " AND EXISTS (SELECT 1 FROM sync.server_change_log d WHERE d.op = 'DELETE'"
                                      " AND d.pk_uuid = l.pk_uuid AND d.server_id < l.server_id)"), 0);
}
END_TEST

START_TEST(test_ts_is_utc)
{
    /* a session time zone far from UTC changes nothing */
    tdb_exec(&T, "SET TIME ZONE 'Pacific/Kiritimati'");
    upload_applied(U, D, batch(chg(1, "business", "users", "INSERT", PK1, 0, "{}"), NULL));
    struct tdb_answer *a = tdb_download_ok(&T, U, D2, "");
    const char *ts = tdb_str(tdb_change(a, 0), "ts");
    const char *want = tdb_query(&T, "SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
                                     " FROM sync.server_change_log");
    ck_assert_str_eq(ts, want);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_echo_suppression)
{
    upload_applied(U, D, batch(chg(1, "business", "users", "INSERT", PK1, 0, "{}"), NULL));
    upload_applied(U, D2, batch(chg(1, "business", "users", "INSERT", PK2, 0, "{}"), NULL));
    upload_applied(U, D, batch(chg(2, "business", "users", "UPDATE", PK1, 1, "{}"), NULL));
    long long h = tdb_highest(&T, U);

    /* the uploading device does not see its own rows */
    struct tdb_answer *a = tdb_download_ok(&T, U, D, "");
    assert_page(a, 1, false, sid(a, 0), h);
    ck_assert_str_eq(tdb_str(tdb_change(a, 0), "source_id"), D2);
    tdb_answer_free(a);
    /* include_self=true shows them */
    a = tdb_download_ok(&T, U, D, "include_self=true");
    assert_page(a, 3, false, h, h);
    tdb_answer_free(a);
    /* include_self with another value does not */
    a = tdb_download_ok(&T, U, D, "include_self=1");
    ck_assert_int_eq(tdb_nchanges(a), 1);
    tdb_answer_free(a);
    /* another device sees them all; D2 sees only D's */
    a = tdb_download_ok(&T, U, D3, "");
    assert_page(a, 3, false, h, h);
    tdb_answer_free(a);
    a = tdb_download_ok(&T, U, D2, "");
    assert_page(a, 2, false, h, h);
    ck_assert_str_eq(tdb_str(tdb_change(a, 0), "source_id"), D);
    ck_assert_str_eq(tdb_str(tdb_change(a, 1), "source_id"), D);
    tdb_answer_free(a);

    /* paging skips own rows inside the window: only D2's row, and has_more false */
    a = tdb_download_ok(&T, U, D, "limit=1");
    assert_page(a, 1, false, sid(a, 0), h);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_schema_filter)
{
    /* business and public rows interleaved: b p b p b */
    for (int i = 0; i < 5; i++)
        upload_applied(U, D,
                       batch(chg(i + 1, i % 2 ? "public" : "business", i % 2 ? "notes" : "users", "INSERT", pk_n(i),
                                 0, "{}"),
                             NULL));
    long long h = tdb_highest(&T, U);
    long long first = h - 4;   /* server ids first .. h, in upload order */

    struct tdb_answer *a = tdb_download_ok(&T, U, D2, "schema=business");
    assert_page(a, 3, false, h, h);
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(tdb_str(tdb_change(a, i), "schema"), "business");
        ck_assert_int_eq(sid(a, i), first + 2 * i);
    }
    tdb_answer_free(a);

    /* paging inside the filter */
    a = tdb_download_ok(&T, U, D2, "schema=business&limit=2");
    assert_page(a, 2, true, first + 2, h);
    tdb_answer_free(a);
    a = tdb_download_ok(&T, U, D2, tdb_printf(&T, "schema=business&limit=2&after=%lld", first + 2));
    assert_page(a, 1, false, h, h);
    ck_assert_int_eq(sid(a, 0), first + 4);
    tdb_answer_free(a);
    /* exactly limit rows left in the filter: has_more false even though other schemas have more */
    a = tdb_download_ok(&T, U, D2, "schema=public&limit=2");
    assert_page(a, 2, false, first + 3, h);
    ck_assert_str_eq(tdb_str(tdb_change(a, 0), "schema"), "public");
    ck_assert_str_eq(tdb_str(tdb_change(a, 1), "table"), "notes");
    tdb_answer_free(a);
    a = tdb_download_ok(&T, U, D2, "schema=public&limit=1");
    assert_page(a, 1, true, first + 1, h);
    tdb_answer_free(a);
    /* a schema with no rows */
    a = tdb_download_ok(&T, U, D2, "schema=nothing&after=1");
    assert_page(a, 0, false, 1, h);
    tdb_answer_free(a);
    /* schema filter and echo suppression together */
    a = tdb_download_ok(&T, U, D, "schema=business");
    assert_page(a, 0, false, 0, h);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_paging)
{
    insert_rows(U, D, "business", "users", 1, 5, 1);
    long long h = tdb_highest(&T, U);
    long long first = h - 4;

    /* exactly limit rows available: has_more false */
    struct tdb_answer *a = tdb_download_ok(&T, U, D2, "limit=5");
    assert_page(a, 5, false, h, h);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(sid(a, i), first + i);
    tdb_answer_free(a);
    /* limit + 1 rows available: has_more true, next_after = last returned */
    a = tdb_download_ok(&T, U, D2, "limit=4");
    assert_page(a, 4, true, first + 3, h);
    tdb_answer_free(a);
    /* page by page with limit 2 */
    long long after = 0;
    int pages = 0, total = 0;
    for (;;) {
        a = tdb_download_ok(&T, U, D2, tdb_printf(&T, "limit=2&after=%lld", after));
        int n = tdb_nchanges(a);
        total += n;
        pages++;
        if (n)
            ck_assert_int_eq(sid(a, 0), first + total - n);
        bool more = tdb_bool(a->json, "has_more");
        ck_assert_int_eq(tdb_int(a->json, "window_until"), h);
        after = tdb_int(a->json, "next_after");
        tdb_answer_free(a);
        if (!more)
            break;
        ck_assert_int_lt(pages, 10);
    }
    ck_assert_int_eq(total, 5);
    ck_assert_int_eq(pages, 3);
    ck_assert_int_eq(after, h);
    /* an empty page: next_after = after, changes = [] */
    a = tdb_download_ok(&T, U, D2, tdb_printf(&T, "after=%lld", h));
    assert_page(a, 0, false, h, h);
    ck_assert_msg(strstr(a->body, "\"changes\":[]") != NULL, "changes must be an empty array: %s", a->body);
    tdb_answer_free(a);
    a = tdb_download_ok(&T, U, D2, tdb_printf(&T, "after=%lld", h + 100));
    assert_page(a, 0, false, h + 100, h);
    tdb_answer_free(a);
    /* a user with nothing */
    a = tdb_download_ok(&T, "nobody", D, "after=3");
    assert_page(a, 0, false, 3, 0);
    ck_assert_msg(strstr(a->body, "\"changes\":[]") != NULL, "changes must be an empty array: %s", a->body);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_window_until)
{
    insert_rows(U, D, "business", "users", 1, 6, 1);
    long long h = tdb_highest(&T, U);
    long long first = h - 5;

    /* until = 0: the user's highest server id */
    struct tdb_answer *a = tdb_download_ok(&T, U, D2, "until=0");
    assert_page(a, 6, false, h, h);
    tdb_answer_free(a);
    /* until given: rows up to it only, window_until = until, has_more within the window only */
    long long w = first + 2;
    a = tdb_download_ok(&T, U, D2, tdb_printf(&T, "until=%lld", w));
    assert_page(a, 3, false, w, w);
    tdb_answer_free(a);
    a = tdb_download_ok(&T, U, D2, tdb_printf(&T, "until=%lld&limit=2", w));
    assert_page(a, 2, true, first + 1, w);
    tdb_answer_free(a);
    a = tdb_download_ok(&T, U, D2, tdb_printf(&T, "until=%lld&limit=3", w));
    assert_page(a, 3, false, w, w);
    tdb_answer_free(a);
    /* until beyond the highest: still the given value */
    a = tdb_download_ok(&T, U, D2, tdb_printf(&T, "until=%lld", h + 50));
    assert_page(a, 6, false, h, h + 50);
    tdb_answer_free(a);
    /* after >= until: empty */
    a = tdb_download_ok(&T, U, D2, tdb_printf(&T, "until=%lld&after=%lld", w, w));
    assert_page(a, 0, false, w, w);
    tdb_answer_free(a);
    a = tdb_download_ok(&T, U, D2, tdb_printf(&T, "until=%lld&after=%lld", w, w + 2));
    assert_page(a, 0, false, w + 2, w);
    tdb_answer_free(a);
    /* the highest is the user's over all devices and schemas, even when the caller sees none */
    upload_applied(U, D2, batch(chg(1, "public", "notes", "INSERT", PK1, 0, "{}"), NULL));
    a = tdb_download_ok(&T, U, D2, tdb_printf(&T, "after=%lld&schema=business", h));
    assert_page(a, 0, false, h, h + 1);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_fixed_window_while_writing)
{
    insert_rows(U, D, "business", "users", 1, 7, 1);
    /* the first page freezes the window */
    struct tdb_answer *a = tdb_download_ok(&T, U, D2, "limit=3");
    long long w = tdb_int(a->json, "window_until");
    ck_assert_int_eq(w, tdb_highest(&T, U));
    long long after = tdb_int(a->json, "next_after");
    int total = tdb_nchanges(a);
    ck_assert(tdb_bool(a->json, "has_more"));
    tdb_answer_free(a);
    long long at_w = tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log WHERE user_id = '" U "'"
                                      " AND source_id <> '" D2 "' AND server_id <= %lld", w);

    int scid = 100, pk = 100;
    for (int page = 0; page < 20; page++) {
        /* other devices keep writing between pages: new rows, updates, deletes */
        insert_rows(U, D, "business", "users", pk, 2, scid);
        upload_applied(U, D3, batch(chg(scid + 10, "business", "users", "UPDATE", pk_n(pk), 1, "{\"x\":1}"),
                                    chg(scid + 11, "business", "users", "DELETE", pk_n(1 + page), 1,
                                        NULL),
                                    NULL));
        scid += 20;
        pk += 2;
        a = tdb_download_ok(&T, U, D2, tdb_printf(&T, "limit=3&after=%lld&until=%lld", after, w));
        ck_assert_int_eq(tdb_int(a->json, "window_until"), w);
        int n = tdb_nchanges(a);
        for (int i = 0; i < n; i++) {
            ck_assert_msg(sid(a, i) <= w, "server_id %lld beyond the window %lld", sid(a, i), w);
            ck_assert_msg(sid(a, i) > after, "server_id %lld not after %lld", sid(a, i), after);
        }
        total += n;
        bool more = tdb_bool(a->json, "has_more");
        after = tdb_int(a->json, "next_after");
        tdb_answer_free(a);
        if (!more)
            break;
    }
    ck_assert_int_eq(total, at_w);
    ck_assert_int_eq(after, w);
    ck_assert_int_gt(tdb_highest(&T, U), w);
    /* the next window starts where this one ended and sees the rest */
    a = tdb_download_ok(&T, U, D2, tdb_printf(&T, "after=%lld&limit=1000", w));
    ck_assert_int_eq(tdb_int(a->json, "window_until"), tdb_highest(&T, U));
    ck_assert_int_eq(tdb_nchanges(a), tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log"
                                                       " WHERE source_id <> '" D2 "' AND server_id > %lld", w));
    ck_assert_int_gt(sid(a, 0), w);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_unregistered_table_still_returned)
{
    static const char *const with_archive[] = { "business.users", "legacy.archive", NULL };
    static const char *const without_archive[] = { "business.users", NULL };
    tdb_set_tables(&T, with_archive);
    upload_applied(U, D, batch(chg(1, "legacy", "archive", "INSERT", PK1, 0, "{\"old\":true}"),
                               chg(2, "business", "users", "INSERT", PK2, 0, "{}"), NULL));
    upload_applied(U, D, batch(chg(3, "legacy", "archive", "DELETE", PK1, 1, NULL), NULL));
    tdb_set_tables(&T, without_archive);
    /* uploads to it are refused now... */
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(chg(4, "legacy", "archive", "INSERT", PK3, 0, "{}"), NULL));
    ck_assert_str_eq(tdb_str(tdb_get(tdb_status(a, 0), "invalid"), "reason"), "unregistered_table");
    tdb_answer_free(a);
    /* ...but its rows are still downloaded */
    a = tdb_download_ok(&T, U, D2, "");
    ck_assert_int_eq(tdb_nchanges(a), 3);
    /* apply order by name: business.users, then legacy.archive */
    ck_assert_str_eq(tdb_str(tdb_change(a, 0), "schema"), "business");
    ck_assert_str_eq(tdb_str(tdb_change(a, 1), "schema"), "legacy");
    ck_assert_str_eq(tdb_str(tdb_change(a, 1), "table"), "archive");
    ck_assert(tdb_json_eq(tdb_get(tdb_change(a, 1), "payload"), "{\"old\":true}"));
    ck_assert(tdb_bool(tdb_change(a, 1), "deleted"));
    ck_assert_str_eq(tdb_str(tdb_change(a, 2), "op"), "DELETE");
    ck_assert_int_eq(tdb_int(tdb_change(a, 2), "server_version"), 2);
    tdb_answer_free(a);
    a = tdb_download_ok(&T, U, D2, "schema=legacy");
    ck_assert_int_eq(tdb_nchanges(a), 2);
    tdb_answer_free(a);
    /* and with no table registered at all */
    static const char *const none[] = { NULL };
    tdb_set_tables(&T, none);
    a = tdb_download_ok(&T, U, D2, "");
    ck_assert_int_eq(tdb_nchanges(a), 3);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_users_isolated)
{
    insert_rows(U, D, "business", "users", 1, 3, 1);
    /* bob: the same pks, the same device name, the same scids */
    insert_rows(U2, D, "business", "users", 1, 2, 1);
    long long ha = tdb_highest(&T, U), hb = tdb_highest(&T, U2);
    ck_assert_int_gt(hb, ha);

    struct tdb_answer *a = tdb_download_ok(&T, U2, D2, "limit=1000");
    assert_page(a, 2, false, hb, hb);
    for (int i = 0; i < 2; i++)
        ck_assert_int_gt(sid(a, i), ha);
    tdb_answer_free(a);
    /* include_self and a window that covers alice's ids: still none of hers */
    a = tdb_download_ok(&T, U2, D, tdb_printf(&T, "include_self=true&until=%lld", ha));
    assert_page(a, 0, false, 0, ha);
    tdb_answer_free(a);
    a = tdb_download_ok(&T, U2, D, "include_self=true&schema=business");
    ck_assert_int_eq(tdb_nchanges(a), 2);
    tdb_answer_free(a);
    /* alice's window ends at her own highest, not bob's */
    a = tdb_download_ok(&T, U, D2, "");
    assert_page(a, 3, false, ha, ha);
    tdb_answer_free(a);
    /* a user name that differs only in case is another user */
    a = tdb_download_ok(&T, "Alice", D2, "");
    assert_page(a, 0, false, 0, 0);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_large_page)
{
    /* 1000 rows in one page at the maximum limit, then has_more with one more */
    for (int b = 0; b < 10; b++)
        insert_rows(U, D, "business", "users", b * 100 + 1, 100, b * 100 + 1);
    long long h = tdb_highest(&T, U);
    struct tdb_answer *a = tdb_download_ok(&T, U, D2, "limit=1000");
    assert_page(a, 1000, false, h, h);
    tdb_answer_free(a);
    insert_rows(U, D, "public", "notes", 5000, 1, 5000);
    a = tdb_download_ok(&T, U, D2, "limit=1000");
    assert_page(a, 1000, true, h, h + 1);
    tdb_answer_free(a);
}
END_TEST

/* ==================================================================== §8.3, §8.5 under writes */

#define WRITERS 4
#define UPLOADS_PER_WRITER 25

/* A writer child (on a connection of its own): UPLOADS_PER_WRITER uploads of two new rows each;
 * exit 0 when all applied. */
static int writer(int w)
{
    char device[32];
    snprintf(device, sizeof device, "writer%d", w);
    for (int k = 0; k < UPLOADS_PER_WRITER; k++) {
        const char *body = batch(chg(2 * k + 1, "business", "users", "INSERT", pk_n(w * 1000 + 2 * k), 0, "{}"),
                                 chg(2 * k + 2, k % 2 ? "public" : "business", k % 2 ? "notes" : "posts", "INSERT",
                                     pk_n(w * 1000 + 2 * k + 1), 0, "{}"),
                                 NULL);
        struct tdb_answer *a = tdb_upload(&T, w % 2 ? U : U2, device, body);
        bool ok = a->outcome == SYNC_OK && strstr(a->body, "\"new_server_version\":1") != NULL;
        tdb_answer_free(a);
        if (!ok)
            return 1;
    }
    return 0;
}

/* Pages through everything visible to user from cursor on; every row's server_id must be above the
 * last one seen; the rows must all be the user's. Returns how many rows it read. */
static int drain(const char *user, long long *cursor, long long *last_seen)
{
    int n = 0;
    for (;;) {
        struct tdb_answer *a = tdb_download_ok(&T, user, "reader", tdb_printf(&T, "limit=7&after=%lld", *cursor));
        for (int i = 0; i < tdb_nchanges(a); i++) {
            ck_assert_msg(sid(a, i) > *last_seen, "server_id %lld after %lld: out of order", sid(a, i), *last_seen);
            *last_seen = sid(a, i);
            const char *src = tdb_str(tdb_change(a, i), "source_id");
            int w = src[6] - '0';
            ck_assert_msg(strncmp(src, "writer", 6) == 0 && (w % 2 ? strcmp(user, U) == 0 : strcmp(user, U2) == 0),
                          "%s downloaded a row of %s", user, src);
            n++;
        }
        bool more = tdb_bool(a->json, "has_more");
        *cursor = tdb_int(a->json, "next_after");
        tdb_answer_free(a);
        if (!more)
            return n;
    }
}

START_TEST(test_no_row_skipped_while_writing)
{
    pid_t pids[WRITERS];
    race_start(WRITERS, writer, pids);

    /* two users' readers poll while the writers write */
    long long cur_a = 0, cur_b = 0, last_a = 0, last_b = 0;
    int seen_a = 0, seen_b = 0, running = WRITERS, failures = 0;
    while (running > 0) {
        seen_a += drain(U, &cur_a, &last_a);
        seen_b += drain(U2, &cur_b, &last_b);
        int st;
        pid_t p;
        while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
            running--;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                failures++;
        }
    }
    ck_assert_int_eq(failures, 0);
    seen_a += drain(U, &cur_a, &last_a);
    seen_b += drain(U2, &cur_b, &last_b);
    /* every row exactly once: nothing skipped, nothing repeated */
    ck_assert_int_eq(seen_a, WRITERS / 2 * UPLOADS_PER_WRITER * 2);
    ck_assert_int_eq(seen_b, WRITERS / 2 * UPLOADS_PER_WRITER * 2);
    ck_assert_int_eq(cur_a, tdb_highest(&T, U));
    ck_assert_int_eq(cur_b, tdb_highest(&T, U2));
}
END_TEST

START_TEST(test_odd_identities)
{
    /* quotes, backslashes, control characters and non-ASCII in user and device names */
    const char *user = "us\"er\\1\xc3\xa9";
    const char *dev = "dev \"x\"\\\t\xe2\x82\xac";
    upload_applied(user, dev, batch(chg(1, "business", "users", "INSERT", PK1, 0, "{}"), NULL));
    struct tdb_answer *a = tdb_download_ok(&T, user, "other", "");
    ck_assert_int_eq(tdb_nchanges(a), 1);
    ck_assert_str_eq(tdb_str(tdb_change(a, 0), "source_id"), dev);
    tdb_answer_free(a);
    a = tdb_download_ok(&T, user, dev, "");
    ck_assert_int_eq(tdb_nchanges(a), 0);
    tdb_answer_free(a);
    a = tdb_download_ok(&T, "us\"er\\1", "other", "");
    ck_assert_int_eq(tdb_nchanges(a), 0);
    tdb_answer_free(a);
}
END_TEST

/* ==================================================================== runner */

static Suite *params_suite(void)
{
    Suite *s = suite_create("download parameters");
    TCase *tc = tcase("400", TDB_NO_DB);
    tcase_add_loop_test(tc, test_param_400, 0, (int)(sizeof bad_params / sizeof *bad_params));
    tcase_add_test(tc, test_param_defaults_and_edges);
    suite_add_tcase(s, tc);
    tc = tcase("through sync_download", TDB_DEFAULT_DB);
    tcase_add_test(tc, test_param_400_through_download);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *rows_suite(void)
{
    Suite *s = suite_create("download rows");
    TCase *tc = tcase("rows", TDB_DEFAULT_DB);
    tcase_add_test(tc, test_row_fields);
    tcase_add_test(tc, test_ts_is_utc);
    tcase_add_test(tc, test_wire_bytes);
    tcase_add_test(tc, test_wire_bytes_across_migration_0005);
    tcase_add_test(tc, test_ts_format);
    tcase_add_test(tc, test_deleted_is_current_flag);
    tcase_add_test(tc, test_echo_suppression);
    tcase_add_test(tc, test_schema_filter);
    tcase_add_test(tc, test_unregistered_table_still_returned);
    tcase_add_test(tc, test_users_isolated);
    suite_add_tcase(s, tc);
    tc = tcase("paging", TDB_DEFAULT_DB);
    tcase_add_test(tc, test_paging);
    tcase_add_test(tc, test_window_until);
    tcase_add_test(tc, test_fixed_window_while_writing);
    tcase_add_test(tc, test_large_page);
    suite_add_tcase(s, tc);
    tc = tcase("concurrent writers", TDB_DEFAULT_DB);
    tcase_add_test(tc, test_no_row_skipped_while_writing);
    tcase_add_test(tc, test_odd_identities);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(params_suite(), rows_suite(), NULL);
}
