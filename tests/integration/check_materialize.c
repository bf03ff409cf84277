/* Materializers and the failure log against a real PostgreSQL (tests/pg.sh): SPEC §4.3 step 5
 * and §7 — the generic materializer's conversions by column type, sql: functions, the example C
 * plugin (examples/plugin/example_materializer.c, built as tests/plugins/example_materializer.la),
 * what a failure undoes and records, how a failure changes the fate of later changes in the same
 * batch, the admin listing and retry, and the start-up verification.
 *
 * Every test works in a fresh database of its own (testdb.c). The business schema is created,
 * then the registry is rebuilt the way a worker builds it: app_init gives every table its
 * materializer (materializer_new) and app_db_setup reads the catalog (sync_schema_discover) and
 * connects each materializer (materializer_connect) on the connection.
 *
 * The plugin is found through top_builddir (set by make check), falling back to ".". */
#include "testdb.h"
#include "../run_suites.h"

#include "materialize/materialize.h"
#include "strbuf.h"

#include <check.h>
#include <dlfcn.h>
#include <limits.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define U "alice"
#define U2 "bob"
#define U3 "carol"
#define D "phone"
#define D2 "laptop"

#define ROW_A "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
#define ROW_B "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
#define ROW_C "cccccccc-cccc-4ccc-8ccc-cccccccccccc"
#define ROW_D "dddddddd-dddd-4ddd-8ddd-dddddddddddd"
#define ROW_E "eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee"
#define ROW_F "ffffffff-ffff-4fff-8fff-ffffffffffff"
#define ROW_G "11111111-2222-4333-8444-555555555555"
#define OTHER "99999999-9999-4999-8999-999999999999"

/* One UUID in every spelling (SPEC §4.1) and as base64 of its 16 bytes. */
#define UQ "0123abcd-ef01-4234-8567-89abcdef0123"
#define UQ_UPPER "0123ABCD-EF01-4234-8567-89ABCDEF0123"
#define UQ_32 "0123abcdef014234856789abcdef0123"
#define UQ_BRACED "{0123abcd-ef01-4234-8567-89abcdef0123}"
#define UQ_URN "urn:uuid:0123abcd-ef01-4234-8567-89abcdef0123"
#define UQ_B64 "ASOrze8BQjSFZ4mrze8BIw=="
#define UQ_B64_NOPAD "ASOrze8BQjSFZ4mrze8BIw"
/* A UUID whose base64 needs '+' and '/' (URL-safe: '-' and '_'). */
#define UP "fbefbefb-fbef-4bef-bfbe-fbefbefbefbe"
#define UP_B64_URL "-----_vvS--_vvvvvvvvvg=="

/* ------------------------------------------------------------------------ the registry */

struct reg {
    const char *table;                  /* "schema.name" */
    enum materializer_kind kind;
    const char *arg;                    /* sql: function or plugin path */
};

/* What app_init and app_db_setup (src/handlers.c) do: a materializer per table, the catalog read,
 * every materializer connected on the connection. */
static void build_registry(void)
{
    sync_schema_free(&T.schema);
    sync_schema_init(&T.schema, &T.cfg);
    char err[1024] = "";
    for (int i = 0; i < T.schema.n_tables; i++) {
        struct sync_table *t = &T.schema.tables[i];
        t->mat = materializer_new(t->conf, err, sizeof err);
        ck_assert_msg(t->mat || t->conf->materializer == MATERIALIZER_NONE, "materializer_new: %s", err);
    }
    ck_assert_msg(sync_schema_discover(&T.schema, T.conn, err, sizeof err), "sync_schema_discover: %s", err);
    ck_assert_msg(sync_ownership_setup(&T.schema, T.conn, err, sizeof err), "sync_ownership_setup: %s", err);
    for (int i = 0; i < T.schema.n_tables; i++) {
        struct sync_table *t = &T.schema.tables[i];
        if (t->mat)
            ck_assert_msg(materializer_connect(t->mat, T.conn, err, sizeof err), "materializer_connect: %s", err);
    }
}

/* A fresh database with the business schema ddl and the registry regs (ended by a NULL table). */
static void open_db(const char *ddl, const struct reg *regs)
{
    const char *names[TDB_MAX_TABLES + 1];
    int n = 0;
    for (; regs[n].table; n++) {
        ck_assert_int_lt(n, TDB_MAX_TABLES);
        names[n] = regs[n].table;
    }
    names[n] = NULL;
    tdb_open_tables(&T, names);
    /* a session time zone other than UTC: a conversion that lost an offset or a "Z" would show */
    tdb_exec(&T, "SET TimeZone = 'Asia/Kolkata'");
    tdb_exec(&T, "%s", ddl);
    for (int i = 0; i < n; i++) {
        T.tables[i].materializer = regs[i].kind;
        T.tables[i].materializer_arg = regs[i].arg ? tdb_printf(&T, "%s", regs[i].arg) : NULL;
    }
    build_registry();
}

/* Absolute path of the example plugin built by make (tests/plugins/.libs/example_materializer.so). */
static const char *plugin_path(void)
{
    static char path[PATH_MAX + 64];
    const char *top = getenv("top_builddir");
    char dir[PATH_MAX];
    ck_assert_msg(realpath(top && *top ? top : ".", dir) != NULL, "top_builddir %s does not exist",
                  top ? top : ".");
    snprintf(path, sizeof path, "%s/tests/plugins/.libs/example_materializer.so", dir);
    ck_assert_msg(access(path, R_OK) == 0,
                  "%s is missing: make tests/plugins/example_materializer.la (or set top_builddir)", path);
    return path;
}

/* How many times the loaded example plugin's init ran in this process. */
static int plugin_init_count(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(h != NULL, "dlopen %s: %s", path, dlerror());
    union {
        void *obj;
        int (*fn)(void);
    } sym = { .obj = dlsym(h, "example_materializer_init_count") };
    ck_assert_msg(sym.obj != NULL, "example_materializer_init_count is not exported");
    int n = sym.fn();
    dlclose(h);
    return n;
}

/* -------------------------------------------------------------------------- assertions */

/* A materialize_error with the attempted version; message compared exactly when want is given.
 * The message. */
static const char *assert_mat_error(const struct tdb_answer *a, int i, long long scid, long long version,
                                    const char *want)
{
    json_object *st = status_at(a, i, scid);
    ck_assert_msg(strcmp(tdb_str(st, "status"), "materialize_error") == 0,
                  "statuses[%d] (scid %lld) is not materialize_error: %s", i, scid, a->body);
    ck_assert_msg(tdb_int(st, "new_server_version") == version,
                  "statuses[%d] must carry the attempted new_server_version %lld: %s", i, version, a->body);
    const char *msg = tdb_str(st, "message");
    if (want)
        ck_assert_msg(strcmp(msg, want) == 0, "statuses[%d] message \"%s\", expected \"%s\"", i, msg, want);
    return msg;
}

/* A materialize_error whose message contains every one of the NULL-terminated fragments. */
static void assert_mat_error_has(const struct tdb_answer *a, int i, long long scid, long long version,
                                 const char *first, ...)
{
    const char *msg = assert_mat_error(a, i, scid, version, NULL);
    va_list ap;
    va_start(ap, first);
    for (const char *f = first; f; f = va_arg(ap, const char *))
        ck_assert_msg(strstr(msg, f) != NULL, "statuses[%d] message \"%s\" lacks \"%s\"", i, msg, f);
    va_end(ap);
}

static long long failure_count(const char *user)
{
    return tdb_query_ll(&T, "SELECT count(*) FROM sync.materialize_failures WHERE user_id = '%s'", user);
}

/* The failure row of (user, pk): its id, and its columns checked. payload_json NULL = SQL NULL. */
static long long assert_failure(const char *user, const char *table, const char *pk, long long version,
                                const char *op, const char *payload_json, const char *error, long long retries)
{
    const char *where = tdb_printf(&T, "user_id = '%s' AND pk_uuid = '%s' AND attempted_version = %lld", user, pk,
                                   version);
    ck_assert_msg(tdb_query_ll(&T, "SELECT count(*) FROM sync.materialize_failures WHERE %s", where) == 1,
                  "no failure row for %s %s version %lld", user, pk, version);
    ck_assert_str_eq(tdb_query(&T, "SELECT schema_name || '.' || table_name FROM sync.materialize_failures WHERE %s",
                               where),
                     table);
    ck_assert_str_eq(tdb_query(&T, "SELECT op FROM sync.materialize_failures WHERE %s", where), op);
    if (payload_json)
        ck_assert_str_eq(tdb_query(&T, "SELECT payload = '%s'::jsonb FROM sync.materialize_failures WHERE %s",
                                   payload_json, where),
                         "t");
    else
        ck_assert_str_eq(tdb_query(&T, "SELECT payload IS NULL FROM sync.materialize_failures WHERE %s", where),
                         "t");
    if (error)
        ck_assert_str_eq(tdb_query(&T, "SELECT error FROM sync.materialize_failures WHERE %s", where), error);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT retry_count FROM sync.materialize_failures WHERE %s", where), retries);
    return tdb_query_ll(&T, "SELECT id FROM sync.materialize_failures WHERE %s", where);
}

/* ================================================================== generic materializer */

static const char generic_ddl[] =
    "CREATE SCHEMA business;"
    "CREATE TABLE business.everything ("
    "  id uuid PRIMARY KEY,"
    "  u_upper uuid, u_32 uuid, u_braced uuid, u_urn uuid, u_b64 uuid, u_b64_nopad uuid, u_b64_url uuid,"
    "  bin bytea, bin_url bytea, bin_empty bytea,"
    "  tstz timestamptz, tstz_offset timestamptz, ts timestamp, d date,"
    "  tstz_unix timestamptz, tstz_frac timestamptz, tstz_neg timestamptz, ts_unix timestamp, d_unix date,"
    "  i2 int2, i4 int4, i8 int8, num numeric, num_scaled numeric(12,4), r real, dbl double precision,"
    "  yes boolean, no boolean, t text, vc varchar(20),"
    "  j json, jb jsonb, ja jsonb, jarr json, jstr jsonb,"
    "  \"camelCase\" text,"
    "  dflt text DEFAULT 'the default');"
    "CREATE TABLE business.users (id uuid PRIMARY KEY, name text NOT NULL, email text,"
    "  age int4, ref uuid, data bytea, seen timestamptz, created_at timestamptz NOT NULL DEFAULT now());";

static const struct reg generic_regs[] = {
    { "business.everything", MATERIALIZER_GENERIC, NULL },
    { "business.users", MATERIALIZER_GENERIC, NULL },
    { NULL, MATERIALIZER_NONE, NULL },
};

/* A value of business.everything's row pk: expr evaluated in SQL. */
static char *ev(const char *pk, const char *expr)
{
    return tdb_query(&T, "SELECT %s FROM business.everything WHERE id = '%s'", expr, pk);
}

static const char everything_payload[] =
    "{\"id\":\"" OTHER "\","     /* the pk column always comes from the change */
    "\"u_upper\":\"" UQ_UPPER "\",\"u_32\":\"" UQ_32 "\",\"u_braced\":\"" UQ_BRACED "\","
    "\"u_urn\":\"" UQ_URN "\",\"u_b64\":\"" UQ_B64 "\",\"u_b64_nopad\":\"" UQ_B64_NOPAD "\","
    "\"u_b64_url\":\"" UP_B64_URL "\","
    "\"bin\":\"AAEC/+7/\",\"bin_url\":\"AAEC_-7_\",\"bin_empty\":\"\","
    "\"tstz\":\"2024-03-05T06:07:08.123456Z\",\"tstz_offset\":\"2024-03-05T08:07:08+02:00\","
    "\"ts\":\"2024-03-05T06:07:08.5Z\",\"d\":\"2024-03-05\","
    "\"tstz_unix\":1700000000,\"tstz_frac\":1700000000.123456,\"tstz_neg\":-1.5,"
    "\"ts_unix\":1700000000.25,\"d_unix\":1700000000,"
    "\"i2\":32767,\"i4\":-2147483648,\"i8\":9223372036854775807,"
    "\"num\":12345678901234567890.123456789,\"num_scaled\":1.5,\"r\":1.5,\"dbl\":0.1,"
    "\"yes\":true,\"no\":false,"
    "\"t\":\"h\\u00e9llo \\\"quoted\\\" \\\\ \\n line\",\"vc\":\"short\","
    "\"j\":{\"a\":1,\"b\":[1,2]},\"jb\":{\"x\":{\"y\":true}},\"ja\":[1,\"two\",null],\"jarr\":[3,4],"
    "\"jstr\":\"plain\","
    "\"camelCase\":\"camel\","
    "\"not_a_column\":{\"ignored\":true},\"NAME\":\"also ignored\",\"CamelCase\":\"no match\"}";

START_TEST(test_generic_types)
{
    open_db(generic_ddl, generic_regs);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "everything", ROW_A, everything_payload), NULL));
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);

    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.everything"), 1);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.everything WHERE id = '%s'", OTHER), 0);
    /* uuid from every spelling */
    ck_assert_str_eq(ev(ROW_A, "u_upper::text"), UQ);
    ck_assert_str_eq(ev(ROW_A, "u_32::text"), UQ);
    ck_assert_str_eq(ev(ROW_A, "u_braced::text"), UQ);
    ck_assert_str_eq(ev(ROW_A, "u_urn::text"), UQ);
    ck_assert_str_eq(ev(ROW_A, "u_b64::text"), UQ);
    ck_assert_str_eq(ev(ROW_A, "u_b64_nopad::text"), UQ);
    ck_assert_str_eq(ev(ROW_A, "u_b64_url::text"), UP);
    /* bytea from base64, both alphabets */
    ck_assert_str_eq(ev(ROW_A, "encode(bin, 'base64')"), "AAEC/+7/");
    ck_assert_str_eq(ev(ROW_A, "encode(bin, 'hex')"), "000102ffeeff");
    ck_assert_str_eq(ev(ROW_A, "encode(bin_url, 'base64')"), "AAEC/+7/");
    ck_assert_str_eq(ev(ROW_A, "length(bin_empty)"), "0");
    /* RFC 3339 strings (the session is at +05:30: the offsets must count) */
    ck_assert_str_eq(ev(ROW_A, "to_char(tstz AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"),
                     "2024-03-05T06:07:08.123456");
    ck_assert_str_eq(ev(ROW_A, "to_char(tstz_offset AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"),
                     "2024-03-05T06:07:08.000000");
    ck_assert_str_eq(ev(ROW_A, "to_char(ts, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"), "2024-03-05T06:07:08.500000");
    ck_assert_str_eq(ev(ROW_A, "d::text"), "2024-03-05");
    /* Unix seconds, fractions included, in UTC */
    ck_assert_str_eq(ev(ROW_A, "to_char(tstz_unix AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"),
                     "2023-11-14T22:13:20.000000");
    ck_assert_str_eq(ev(ROW_A, "extract(epoch FROM tstz_unix)::text"), "1700000000.000000");
    ck_assert_str_eq(ev(ROW_A, "extract(epoch FROM tstz_frac)::text"), "1700000000.123456");
    ck_assert_str_eq(ev(ROW_A, "to_char(tstz_neg AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"),
                     "1969-12-31T23:59:58.500000");
    ck_assert_str_eq(ev(ROW_A, "to_char(ts_unix, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"), "2023-11-14T22:13:20.250000");
    ck_assert_str_eq(ev(ROW_A, "d_unix::text"), "2023-11-14");
    /* numbers */
    ck_assert_str_eq(ev(ROW_A, "i2::text"), "32767");
    ck_assert_str_eq(ev(ROW_A, "i4::text"), "-2147483648");
    ck_assert_str_eq(ev(ROW_A, "i8::text"), "9223372036854775807");
    ck_assert_str_eq(ev(ROW_A, "num::text"), "12345678901234567890.123456789");
    ck_assert_str_eq(ev(ROW_A, "num_scaled::text"), "1.5000");
    ck_assert_str_eq(ev(ROW_A, "r = 1.5::real"), "t");
    ck_assert_str_eq(ev(ROW_A, "dbl = 0.1::float8"), "t");
    /* booleans, text */
    ck_assert_str_eq(ev(ROW_A, "yes::text"), "true");
    ck_assert_str_eq(ev(ROW_A, "no::text"), "false");
    ck_assert_str_eq(ev(ROW_A, "t"), "h\xc3\xa9llo \"quoted\" \\ \n line");
    ck_assert_str_eq(ev(ROW_A, "vc"), "short");
    ck_assert_str_eq(ev(ROW_A, "\"camelCase\""), "camel");
    /* json and jsonb as is */
    ck_assert_str_eq(ev(ROW_A, "j::jsonb = '{\"a\":1,\"b\":[1,2]}'::jsonb"), "t");
    ck_assert_str_eq(ev(ROW_A, "jb = '{\"x\":{\"y\":true}}'::jsonb"), "t");
    ck_assert_str_eq(ev(ROW_A, "ja = '[1,\"two\",null]'::jsonb"), "t");
    ck_assert_str_eq(ev(ROW_A, "jarr::jsonb = '[3,4]'::jsonb"), "t");
    ck_assert_str_eq(ev(ROW_A, "jstr = '\"plain\"'::jsonb"), "t");
    /* a column absent from the payload got its default on INSERT */
    ck_assert_str_eq(ev(ROW_A, "dflt"), "the default");

    /* the sidecar keeps the payload as sent */
    ck_assert_str_eq(tdb_query(&T, "SELECT payload = '%s'::jsonb FROM sync.sync_state WHERE pk_uuid = '%s'",
                               everything_payload, ROW_A),
                     "t");

    /* JSON null sets SQL NULL; an UPDATE leaves absent columns alone */
    a = tdb_upload_ok(&T, U, D,
                      batch(upd(2, "everything", ROW_A, 1,
                                "{\"bin\":null,\"jb\":null,\"tstz\":null,\"i8\":null,\"t\":\"changed\"}"),
                            NULL));
    assert_applied(a, 0, 2, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(ev(ROW_A, "bin IS NULL AND jb IS NULL AND tstz IS NULL AND i8 IS NULL"), "t");
    ck_assert_str_eq(ev(ROW_A, "t"), "changed");
    ck_assert_str_eq(ev(ROW_A, "u_b64::text"), UQ);
    ck_assert_str_eq(ev(ROW_A, "num::text"), "12345678901234567890.123456789");
    ck_assert_str_eq(ev(ROW_A, "encode(bin_url, 'base64')"), "AAEC/+7/");
}
END_TEST

/* SPEC §4.3 step 5: a NOT NULL column missing on INSERT fails that change alone. */
START_TEST(test_generic_not_null_missing)
{
    open_db(generic_ddl, generic_regs);
    const char *pb = "{\"email\":\"b@example.com\"}";
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins(1, "users", ROW_A, "{\"name\":\"Ann\"}"),
                                               ins(2, "users", ROW_B, pb),
                                               ins(3, "users", ROW_C, "{\"name\":\"Cy\"}"), NULL));
    ck_assert_int_eq(tdb_nstatuses(a), 3);
    assert_applied(a, 0, 1, 1);
    assert_mat_error_has(a, 1, 2, 1, "null value in column \"name\"", "violates not-null constraint", NULL);
    char *msg = tdb_printf(&T, "%s", tdb_str(tdb_status(a, 1), "message"));
    assert_applied(a, 2, 3, 1);
    ck_assert(tdb_bool(a->json, "accepted"));
    ck_assert_int_eq(a->counts.materialize_errors, 1);
    ck_assert_int_eq(a->counts.applied, 2);
    ck_assert_int_eq(tdb_int(a->json, "highest_server_seq"), tdb_highest(&T, U));
    tdb_answer_free(a);

    /* business table: the other two */
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.users"), 2);
    ck_assert_str_eq(tdb_query(&T, "SELECT name FROM business.users WHERE id = '%s'", ROW_A), "Ann");
    ck_assert_str_eq(tdb_query(&T, "SELECT name FROM business.users WHERE id = '%s'", ROW_C), "Cy");
    /* a created_at absent from the payload was defaulted */
    ck_assert_str_eq(tdb_query(&T, "SELECT created_at IS NOT NULL FROM business.users WHERE id = '%s'", ROW_A), "t");
    /* sidecar: nothing of B, the others there */
    assert_no_sidecar(U, ROW_B);
    ck_assert_int_eq(tdb_log_count(&T, U), 2);
    ck_assert_int_eq(tdb_meta_count(&T, U), 2);
    ck_assert_int_eq(tdb_state_count(&T, U), 2);
    /* the failure row */
    ck_assert_int_eq(failure_count(U), 1);
    assert_failure(U, "business.users", ROW_B, 1, "INSERT", pb, msg, 0);
}
END_TEST

/* A key given twice: the last value wins in the business table, as in the sidecar (jsonb). */
START_TEST(test_generic_duplicate_key_last_wins)
{
    open_db(generic_ddl, generic_regs);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins(1, "users", ROW_A, "{\"name\":\"first\",\"name\":\"second\"}"),
                                               NULL));
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT name FROM business.users WHERE id = '%s'", ROW_A), "second");
    ck_assert_str_eq(tdb_query(&T, "SELECT payload->>'name' FROM sync.sync_state WHERE pk_uuid = '%s'", ROW_A),
                     "second");
}
END_TEST

/* UPDATE leaves absent columns untouched; DELETE removes the business row. */
START_TEST(test_generic_update_delete)
{
    open_db(generic_ddl, generic_regs);
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D,
        batch(ins(1, "users", ROW_A,
                  "{\"name\":\"Ann\",\"email\":\"ann@example.com\",\"age\":30,\"data\":\"AQID\","
                  "\"seen\":\"2024-01-02T03:04:05Z\"}"),
              ins(2, "users", ROW_B, "{\"name\":\"Bo\"}"), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    tdb_answer_free(a);
    char *created = tdb_query(&T, "SELECT created_at FROM business.users WHERE id = '%s'", ROW_A);

    a = tdb_upload_ok(&T, U, D, batch(upd(3, "users", ROW_A, 1, "{\"name\":\"Anna\"}"), NULL));
    assert_applied(a, 0, 3, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s|%%s|%%s|%%s|%%s', name, email, age, encode(data, 'base64'),"
                                   " extract(epoch FROM seen)) FROM business.users WHERE id = '%s'",
                               ROW_A),
                     "Anna|ann@example.com|30|AQID|1704164645.000000");
    ck_assert_str_eq(tdb_query(&T, "SELECT created_at FROM business.users WHERE id = '%s'", ROW_A), created);

    /* an explicit null clears a column, the others stay */
    a = tdb_upload_ok(&T, U, D, batch(upd(4, "users", ROW_A, 2, "{\"email\":null,\"age\":31}"), NULL));
    assert_applied(a, 0, 4, 3);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s|%%s|%%s', name, email IS NULL, age) FROM business.users"
                                   " WHERE id = '%s'",
                               ROW_A),
                     "Anna|t|31");

    /* DELETE removes the row (and only it) */
    a = tdb_upload_ok(&T, U, D, batch(del(5, "users", ROW_A, 3), NULL));
    assert_applied(a, 0, 5, 4);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.users WHERE id = '%s'", ROW_A), 0);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.users WHERE id = '%s'", ROW_B), 1);
    ck_assert_str_eq(tdb_query(&T, "SELECT deleted::text FROM sync.sync_row_meta WHERE pk_uuid = '%s'", ROW_A),
                     "true");

    /* deleting a row the business table no longer has is still applied */
    tdb_exec(&T, "DELETE FROM business.users WHERE id = '%s'", ROW_B);
    a = tdb_upload_ok(&T, U, D, batch(del(6, "users", ROW_B, 1), NULL));
    assert_applied(a, 0, 6, 2);
    tdb_answer_free(a);

    /* an UPDATE of a row missing from the business table inserts it (with the payload's columns) */
    a = tdb_upload_ok(&T, U, D,
                      batch(ins(7, "users", ROW_C, "{\"name\":\"Cy\"}"), upd(8, "users", ROW_C, 1, "{\"age\":5}"),
                            NULL));
    assert_applied(a, 0, 7, 1);
    assert_applied(a, 1, 8, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s|%%s', name, age) FROM business.users WHERE id = '%s'", ROW_C),
                     "Cy|5");
    ck_assert_int_eq(failure_count(U), 0);
}
END_TEST

/* Values that cannot be converted fail their change only, with a message naming the column. Five
 * failures in one batch also exercise the one-savepoint-per-change pass. */
START_TEST(test_generic_unconvertible)
{
    open_db(generic_ddl, generic_regs);
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D,
        batch(ins(1, "users", ROW_A, "{\"name\":\"ok\"}"),
              ins(2, "users", ROW_B, "{\"name\":\"b\",\"data\":\"!!\"}"),
              ins(3, "users", ROW_C, "{\"name\":\"c\",\"ref\":\"nope\"}"),
              ins(4, "users", ROW_D, "{\"name\":\"d\",\"seen\":true}"),
              ins(5, "users", ROW_E, "{\"name\":\"e\",\"age\":\"abc\"}"),
              ins(6, "users", ROW_F, "{\"email\":\"no name\"}"),
              ins(7, "users", ROW_G, "{\"name\":\"also ok\",\"ref\":\"" UQ_B64 "\"}"), NULL));
    ck_assert_int_eq(tdb_nstatuses(a), 7);
    assert_applied(a, 0, 1, 1);
    assert_mat_error(a, 1, 2, 1, "column data (bytea): the value cannot be converted");
    assert_mat_error(a, 2, 3, 1, "column ref (uuid): the value cannot be converted");
    assert_mat_error(a, 3, 4, 1, "column seen (timestamp with time zone): the value cannot be converted");
    assert_mat_error(a, 4, 5, 1, "invalid input syntax for type integer: \"abc\"");
    assert_mat_error_has(a, 5, 6, 1, "null value in column \"name\"", NULL);
    assert_applied(a, 6, 7, 1);
    tdb_answer_free(a);

    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.users"), 2);
    ck_assert_str_eq(tdb_query(&T, "SELECT ref::text FROM business.users WHERE id = '%s'", ROW_G), UQ);
    ck_assert_int_eq(tdb_log_count(&T, U), 2);
    ck_assert_int_eq(failure_count(U), 5);
    const char *failed[] = { ROW_B, ROW_C, ROW_D, ROW_E, ROW_F };
    for (int i = 0; i < 5; i++)
        assert_no_sidecar(U, failed[i]);
    assert_failure(U, "business.users", ROW_B, 1, "INSERT", "{\"name\":\"b\",\"data\":\"!!\"}",
                   "column data (bytea): the value cannot be converted", 0);
    assert_failure(U, "business.users", ROW_C, 1, "INSERT", "{\"name\":\"c\",\"ref\":\"nope\"}",
                   "column ref (uuid): the value cannot be converted", 0);

    /* an UPDATE that cannot be converted: the row keeps its version and its business values */
    a = tdb_upload_ok(&T, U, D, batch(upd(8, "users", ROW_A, 1, "{\"name\":\"new\",\"data\":\"!!\"}"), NULL));
    assert_mat_error(a, 0, 8, 2, "column data (bytea): the value cannot be converted");
    tdb_answer_free(a);
    ck_assert_int_eq(meta_version(U, NULL, NULL, ROW_A), 1);
    ck_assert_int_eq(tdb_log_count_pk(&T, U, ROW_A), 1);
    ck_assert_str_eq(tdb_query(&T, "SELECT name FROM business.users WHERE id = '%s'", ROW_A), "ok");
    assert_failure(U, "business.users", ROW_A, 2, "UPDATE", "{\"name\":\"new\",\"data\":\"!!\"}",
                   "column data (bytea): the value cannot be converted", 0);
}
END_TEST

/* A wide table (more columns than the prepared-statement cache handles) still materializes. */
START_TEST(test_generic_wide_table)
{
    strbuf_t ddl = STRBUF_INIT, payload = STRBUF_INIT;
    sb_puts(&ddl, "CREATE SCHEMA business; CREATE TABLE business.wide (id uuid PRIMARY KEY");
    sb_putc(&payload, '{');
    for (int i = 1; i <= 70; i++) {
        sb_printf(&ddl, ", c%d int", i);
        sb_printf(&payload, "%s\"c%d\":%d", i > 1 ? "," : "", i, i * 10);
    }
    sb_puts(&ddl, ");");
    sb_putc(&payload, '}');
    static const struct reg regs[] = { { "business.wide", MATERIALIZER_GENERIC, NULL }, { NULL, 0, NULL } };
    open_db(ddl.data, regs);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins(1, "wide", ROW_A, payload.data),
                                               upd(2, "wide", ROW_A, 1, "{\"c70\":7}"), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s|%%s|%%s', c1, c64, c70) FROM business.wide"), "10|640|7");
    sb_free(&ddl);
    sb_free(&payload);
}
END_TEST

/* ========================================================================= sql: functions */

static const char sql_ddl[] =
    "CREATE SCHEMA business;"
    "CREATE TABLE business.notes (id uuid PRIMARY KEY, body text);"
    "CREATE TABLE business.notes_copy (id uuid PRIMARY KEY, op text, body text, src text);"
    "CREATE TABLE business.switch (fail boolean NOT NULL);"
    "INSERT INTO business.switch VALUES (false);"
    "CREATE FUNCTION business.apply_notes(op text, schema text, tbl text, pk uuid, payload jsonb)"
    " RETURNS void LANGUAGE plpgsql AS $$"
    " BEGIN"
    "   IF coalesce(payload ->> 'force_fail', '') = 'true' OR (SELECT fail FROM business.switch) THEN"
    "     RAISE EXCEPTION 'forced failure for %', pk;"
    "   END IF;"
    "   IF op = 'DELETE' THEN"
    "     DELETE FROM business.notes_copy WHERE id = pk;"
    "   ELSE"
    "     INSERT INTO business.notes_copy (id, op, body, src)"
    "     VALUES (pk, op, payload ->> 'body', schema || '.' || tbl)"
    "     ON CONFLICT (id) DO UPDATE SET op = EXCLUDED.op, body = EXCLUDED.body, src = EXCLUDED.src;"
    "   END IF;"
    " END $$;";

static const char fixed_function[] =
    "CREATE OR REPLACE FUNCTION business.apply_notes(op text, schema text, tbl text, pk uuid, payload jsonb)"
    " RETURNS void LANGUAGE plpgsql AS $$"
    " BEGIN"
    "   INSERT INTO business.notes_copy (id, op, body, src)"
    "   VALUES (pk, op || ' fixed', payload ->> 'body', schema || '.' || tbl)"
    "   ON CONFLICT (id) DO UPDATE SET op = EXCLUDED.op, body = EXCLUDED.body;"
    " END $$;";

static const struct reg sql_regs[] = {
    { "business.notes", MATERIALIZER_SQL, "business.apply_notes" },
    { NULL, MATERIALIZER_NONE, NULL },
};

static char *copy_of(const char *pk)
{
    return tdb_query(&T, "SELECT coalesce((SELECT format('%%s|%%s|%%s', op, body, src) FROM business.notes_copy"
                         " WHERE id = '%s'), '<none>')",
                     pk);
}

START_TEST(test_sql_function_failure_and_client_retry)
{
    open_db(sql_ddl, sql_regs);
    const char *pb = "{\"body\":\"b\",\"force_fail\":true}";
    const char *want = "forced failure for " ROW_B;
    const char *body = batch(ins(1, "notes", ROW_A, "{\"body\":\"a\"}"), ins(2, "notes", ROW_B, pb),
                             ins(3, "notes", ROW_C, "{\"body\":\"c\"}"), NULL);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, body);
    assert_applied(a, 0, 1, 1);
    assert_mat_error(a, 1, 2, 1, want);
    assert_applied(a, 2, 3, 1);
    tdb_answer_free(a);
    ck_assert_str_eq(copy_of(ROW_A), "INSERT|a|business.notes");
    ck_assert_str_eq(copy_of(ROW_B), "<none>");
    ck_assert_str_eq(copy_of(ROW_C), "INSERT|c|business.notes");
    assert_no_sidecar(U, ROW_B);
    ck_assert_int_eq(tdb_log_count(&T, U), 2);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log WHERE source_change_id = 2"), 0);
    long long id = assert_failure(U, "business.notes", ROW_B, 1, "INSERT", pb, want, 0);

    /* the client re-sends the same change (same scid, same version) while it still fails */
    a = tdb_upload_ok(&T, U, D, batch(ins(2, "notes", ROW_B, pb), NULL));
    assert_mat_error(a, 0, 2, 1, want);
    tdb_answer_free(a);
    ck_assert_int_eq(failure_count(U), 1);
    ck_assert_int_eq(assert_failure(U, "business.notes", ROW_B, 1, "INSERT", pb, want, 1), id);
    assert_no_sidecar(U, ROW_B);

    /* fixed function: the client's next retry of the same change applies (the scid was not consumed) */
    tdb_exec(&T, "%s", fixed_function);
    a = tdb_upload_ok(&T, U, D, batch(ins(2, "notes", ROW_B, pb), NULL));
    assert_applied(a, 0, 2, 1);
    tdb_answer_free(a);
    ck_assert_str_eq(copy_of(ROW_B), "INSERT fixed|b|business.notes");
    ck_assert_int_eq(tdb_log_count_pk(&T, U, ROW_B), 1);
    /* the row moved past the failed attempt: its failure is gone, so no admin retry can replay it */
    ck_assert_int_eq(failure_count(U), 0);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log WHERE source_id = '%s'"
                                      " AND source_change_id = 2 AND server_version = 1 AND pk_uuid = '%s'",
                                  D, ROW_B),
                     1);
    ck_assert_int_eq(meta_version(U, NULL, NULL, ROW_B), 1);

    /* once more: idempotent */
    a = tdb_upload_ok(&T, U, D, batch(ins(2, "notes", ROW_B, pb), NULL));
    json_object *st = status_at(a, 0, 2);
    ck_assert_str_eq(tdb_str(st, "status"), "applied");
    ck_assert(!tdb_has(st, "new_server_version"));
    tdb_answer_free(a);
}
END_TEST

/* UPDATE and DELETE reach the function with their op; a failing DELETE leaves the row live. */
START_TEST(test_sql_function_update_delete)
{
    open_db(sql_ddl, sql_regs);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins(1, "notes", ROW_A, "{\"body\":\"a\"}"),
                                               upd(2, "notes", ROW_A, 1, "{\"body\":\"a2\"}"), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(copy_of(ROW_A), "UPDATE|a2|business.notes");

    tdb_exec(&T, "UPDATE business.switch SET fail = true");
    a = tdb_upload_ok(&T, U, D, batch(del(3, "notes", ROW_A, 2), NULL));
    assert_mat_error(a, 0, 3, 3, "forced failure for " ROW_A);
    tdb_answer_free(a);
    ck_assert_str_eq(copy_of(ROW_A), "UPDATE|a2|business.notes");
    ck_assert_int_eq(meta_version(U, NULL, NULL, ROW_A), 2);
    ck_assert_str_eq(tdb_query(&T, "SELECT deleted::text FROM sync.sync_row_meta WHERE pk_uuid = '%s'", ROW_A),
                     "false");
    ck_assert_int_eq(tdb_state_count(&T, U), 1);
    ck_assert_int_eq(tdb_log_count(&T, U), 2);
    assert_failure(U, "business.notes", ROW_A, 3, "DELETE", NULL, "forced failure for " ROW_A, 0);

    tdb_exec(&T, "UPDATE business.switch SET fail = false");
    a = tdb_upload_ok(&T, U, D, batch(del(3, "notes", ROW_A, 2), NULL));
    assert_applied(a, 0, 3, 3);
    tdb_answer_free(a);
    ck_assert_str_eq(copy_of(ROW_A), "<none>");
    ck_assert_int_eq(tdb_state_count(&T, U), 0);
}
END_TEST

/* ============================================================ failures inside one batch */

static const char chain_ddl[] =
    "CREATE SCHEMA business;"
    "CREATE TABLE business.users (id uuid PRIMARY KEY, name text NOT NULL);"
    "CREATE TABLE business.posts (id uuid PRIMARY KEY, author_id uuid NOT NULL REFERENCES business.users (id),"
    "  title text NOT NULL);";

static const struct reg chain_regs[] = {
    { "business.users", MATERIALIZER_GENERIC, NULL },
    { "business.posts", MATERIALIZER_GENERIC, NULL },
    { NULL, MATERIALIZER_NONE, NULL },
};

/* A later change of a row whose earlier change failed to materialize is judged against the row as
 * it is without that change: a conflict. */
START_TEST(test_chain_same_row_conflict)
{
    open_db(chain_ddl, chain_regs);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins(1, "users", ROW_A, "{\"title\":\"no name\"}"),
                                               upd(2, "users", ROW_A, 1, "{\"name\":\"fixed\"}"),
                                               ins(3, "users", ROW_B, "{\"name\":\"ok\"}"), NULL));
    assert_mat_error_has(a, 0, 1, 1, "null value in column \"name\"", NULL);
    assert_conflict(a, 1, 2, NULL, NULL, NULL, 0, false, "null");
    assert_applied(a, 2, 3, 1);
    tdb_answer_free(a);
    assert_no_sidecar(U, ROW_A);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.users"), 1);
    ck_assert_int_eq(failure_count(U), 1);

    /* the same for a row that exists: the conflict shows it as stored */
    a = tdb_upload_ok(&T, U, D,
                      batch(upd(4, "users", ROW_B, 1, "{\"name\":null}"), upd(5, "users", ROW_B, 2, "{\"name\":\"x\"}"),
                            NULL));
    assert_mat_error_has(a, 0, 4, 2, "null value in column \"name\"", NULL);
    assert_conflict(a, 1, 5, NULL, NULL, NULL, 1, false, "{\"name\":\"ok\"}");
    tdb_answer_free(a);
    ck_assert_int_eq(meta_version(U, NULL, NULL, ROW_B), 1);
    ck_assert_str_eq(tdb_query(&T, "SELECT name FROM business.users WHERE id = '%s'", ROW_B), "ok");
}
END_TEST

/* A child whose parent failed to materialize in the same batch misses its parent. */
START_TEST(test_chain_child_fk_missing)
{
    open_db(chain_ddl, chain_regs);
    /* the child comes first in the request: statuses stay in request order */
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D,
        batch(ins(1, "posts", ROW_B, "{\"author_id\":\"" ROW_A "\",\"title\":\"t\"}"),
              ins(2, "users", ROW_A, "{}"),
              ins(3, "users", ROW_C, "{\"name\":\"ok\"}"),
              ins(4, "posts", ROW_D, "{\"author_id\":\"" ROW_C "\",\"title\":\"fine\"}"), NULL));
    json_object *inv = tdb_get(assert_invalid(a, 0, 1, "fk_missing"), "invalid");
    ck_assert(tdb_json_eq(tdb_get(tdb_get(inv, "details"), "missing"), "[\"business.users:" ROW_A "\"]"));
    assert_mat_error_has(a, 1, 2, 1, "null value in column \"name\"", NULL);
    assert_applied(a, 2, 3, 1);
    assert_applied(a, 3, 4, 1);
    tdb_answer_free(a);
    assert_no_sidecar(U, ROW_A);
    assert_no_sidecar(U, ROW_B);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.posts"), 1);
    ck_assert_int_eq(failure_count(U), 1);

    /* the client retries both once the parent is right */
    a = tdb_upload_ok(&T, U, D,
                      batch(ins(1, "posts", ROW_B, "{\"author_id\":\"" ROW_A "\",\"title\":\"t\"}"),
                            ins(2, "users", ROW_A, "{\"name\":\"now\"}"), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.posts"), 2);
}
END_TEST

/* Two changes of one row attempting the same version, both failing: one failure row, no error. */
START_TEST(test_chain_same_version_twice)
{
    open_db(chain_ddl, chain_regs);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins(1, "users", ROW_A, "{}"), ins(2, "users", ROW_A, "{\"x\":1}"),
                                               NULL));
    assert_mat_error(a, 0, 1, 1, NULL);
    assert_mat_error(a, 1, 2, 1, NULL);
    tdb_answer_free(a);
    ck_assert_int_eq(failure_count(U), 1);
    assert_no_sidecar(U, ROW_A);
}
END_TEST

/* Deleting a parent whose child still exists in the business table: the materializer's delete
 * violates the foreign key. That is this change's materialize error (SPEC §4.3 step 5: "undoes
 * this change only"; §4.2: "one bad change never spoils the others"), whether PostgreSQL checks
 * the key at once or, DEFERRABLE INITIALLY DEFERRED as auto_migrate_fks makes it, at commit. */
static void delete_parent_with_child(const char *fk_timing)
{
    char ddl[512];   /* T has no arena before open_db */
    snprintf(ddl, sizeof ddl,
             "CREATE SCHEMA business;"
             "CREATE TABLE business.users (id uuid PRIMARY KEY, name text NOT NULL);"
             "CREATE TABLE business.posts (id uuid PRIMARY KEY,"
             "  author_id uuid NOT NULL REFERENCES business.users (id) %s,"
             "  title text NOT NULL);",
             fk_timing);
    open_db(ddl, chain_regs);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins(1, "users", ROW_A, "{\"name\":\"parent\"}"),
                                               ins(2, "posts", ROW_B, "{\"author_id\":\"" ROW_A "\",\"title\":\"t\"}"),
                                               NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    tdb_answer_free(a);

    a = tdb_upload(&T, U, D, batch(del(3, "users", ROW_A, 1), ins(4, "users", ROW_C, "{\"name\":\"unrelated\"}"), NULL));
    ck_assert_msg(a->outcome == SYNC_OK, "the upload failed as a whole (outcome %d: %s) instead of failing the delete"
                                         " alone", (int)a->outcome, a->err);
    assert_mat_error_has(a, 0, 3, 2, "violates foreign key constraint", NULL);
    assert_applied(a, 1, 4, 1);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.users WHERE id IN ('%s', '%s')", ROW_A, ROW_C), 2);
    ck_assert_int_eq(meta_version(U, NULL, NULL, ROW_A), 1);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.materialize_failures WHERE pk_uuid = '%s'"
                                      " AND op = 'DELETE' AND attempted_version = 2",
                                  ROW_A),
                     1);
}

START_TEST(test_chain_delete_parent_immediate_fk)
{
    delete_parent_with_child("");
}
END_TEST

START_TEST(test_chain_delete_parent_deferred_fk)
{
    delete_parent_with_child("DEFERRABLE INITIALLY DEFERRED");
}
END_TEST

/* ========================================================== set-based materialization */

/* users and posts with statement-level triggers counting the statements that write each table:
 * the set path writes a table with one statement per kind where the per-change path needs one
 * per change. fk_timing is the posts → users foreign key's timing. */
static void open_set_db(const char *fk_timing)
{
    char ddl[2048];   /* T has no arena before open_db */
    snprintf(ddl, sizeof ddl,
             "CREATE SCHEMA business;"
             "CREATE TABLE business.users (id uuid PRIMARY KEY, name text NOT NULL, email text, age int DEFAULT 7);"
             "CREATE TABLE business.posts (id uuid PRIMARY KEY,"
             "  author_id uuid NOT NULL REFERENCES business.users (id) %s, title text NOT NULL);"
             "CREATE TABLE business.stmts (tbl text, op text, n int DEFAULT 0, PRIMARY KEY (tbl, op));"
             "CREATE FUNCTION business.count_stmt() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
             "  INSERT INTO business.stmts VALUES (TG_TABLE_NAME, TG_OP, 1)"
             "  ON CONFLICT (tbl, op) DO UPDATE SET n = business.stmts.n + 1; RETURN NULL; END $f$;"
             "CREATE TRIGGER s AFTER INSERT OR UPDATE OR DELETE ON business.users"
             "  FOR EACH STATEMENT EXECUTE FUNCTION business.count_stmt();"
             "CREATE TRIGGER s AFTER INSERT OR UPDATE OR DELETE ON business.posts"
             "  FOR EACH STATEMENT EXECUTE FUNCTION business.count_stmt();",
             fk_timing);
    open_db(ddl, chain_regs);
}

/* How many statements wrote tbl with op since the counts were last reset, and reset them. */
static long long stmts(const char *tbl, const char *op)
{
    long long n = tdb_query_ll(&T, "SELECT coalesce(sum(n), 0) FROM business.stmts WHERE tbl = '%s' AND op = '%s'",
                               tbl, op);
    tdb_exec(&T, "DELETE FROM business.stmts WHERE tbl = '%s' AND op = '%s'", tbl, op);
    return n;
}

static char *user_row(const char *pk)
{
    return tdb_query(&T, "SELECT coalesce((SELECT concat_ws('|', name, coalesce(email, '-'), coalesce(age::text, '-'))"
                         " FROM business.users WHERE id = '%s'), '<none>')", pk);
}

/* One statement per table and kind; parents before children; the per-change path as the control. */
START_TEST(test_set_one_statement_per_table)
{
    for (int on = 1; on >= 0; on--) {
        open_set_db("");   /* not deferrable: the posts only go in after their users */
        T.cfg.set_materialization = on;
        struct tdb_answer *a = tdb_upload_ok(
            &T, U, D,
            batch(ins(1, "posts", ROW_D, "{\"author_id\":\"" ROW_A "\",\"title\":\"d\"}"),
                  ins(2, "users", ROW_A, "{\"name\":\"a\"}"), ins(3, "users", ROW_B, "{\"name\":\"b\"}"),
                  ins(4, "posts", ROW_E, "{\"author_id\":\"" ROW_B "\",\"title\":\"e\"}"),
                  ins(5, "users", ROW_C, "{\"name\":\"c\"}"), NULL));
        for (int i = 0; i < 5; i++)
            assert_applied(a, i, i + 1, 1);
        ck_assert_int_eq(a->counts.materialize_fallbacks, 0);
        tdb_answer_free(a);
        /* the update that finds no row and the insert: one each per table */
        ck_assert_int_eq(stmts("users", "UPDATE"), on ? 1 : 3);
        ck_assert_int_eq(stmts("users", "INSERT"), on ? 1 : 3);
        ck_assert_int_eq(stmts("posts", "INSERT"), on ? 1 : 2);
        ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.posts"), 2);

        /* children first: the posts go before their users, with a foreign key checked at once */
        a = tdb_upload_ok(&T, U, D,
                          batch(del(6, "users", ROW_A, 1), del(7, "posts", ROW_D, 1), del(8, "users", ROW_B, 1),
                                del(9, "posts", ROW_E, 1), NULL));
        for (int i = 0; i < 4; i++)
            assert_applied(a, i, i + 6, 2);
        ck_assert_int_eq(a->counts.materialize_fallbacks, 0);
        tdb_answer_free(a);
        ck_assert_int_eq(stmts("users", "DELETE"), on ? 1 : 2);
        ck_assert_int_eq(stmts("posts", "DELETE"), on ? 1 : 2);
        ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(name, ',') FROM business.users"), "c");
        ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.posts"), 0);
        tdb_close(&T);
    }
}
END_TEST

/* Only the columns in a payload are set, whatever the other rows of the statement carry; a row
 * written twice in one batch gets both changes, in order. */
START_TEST(test_set_absent_columns_untouched)
{
    open_set_db("DEFERRABLE INITIALLY DEFERRED");
    T.cfg.set_materialization = true;   /* whatever OVERSYNCD_TEST_SET_MATERIALIZATION says */
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D,
        batch(ins(1, "users", ROW_A, "{\"name\":\"a\",\"email\":\"a@x\",\"age\":30}"),
              ins(2, "users", ROW_B, "{\"name\":\"b\",\"email\":\"b@x\",\"age\":40}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D,
                      batch(upd(3, "users", ROW_A, 1, "{\"name\":\"a2\"}"),
                            upd(4, "users", ROW_B, 1, "{\"email\":null,\"name\":\"b2\"}"),
                            ins(5, "users", ROW_C, "{\"name\":\"c\"}"),
                            upd(6, "users", ROW_A, 2, "{\"age\":31,\"unknown\":1}"),
                            upd(7, "users", ROW_A, 3, "{\"email\":\"a3@x\"}"),
                            ins(8, "users", ROW_D, "{\"name\":\"d\",\"age\":null}"), NULL));
    assert_applied(a, 0, 3, 2);
    assert_applied(a, 1, 4, 2);
    assert_applied(a, 2, 5, 1);
    assert_applied(a, 3, 6, 3);
    assert_applied(a, 4, 7, 4);
    assert_applied(a, 5, 8, 1);
    ck_assert_int_eq(a->counts.materialize_fallbacks, 0);
    tdb_answer_free(a);
    ck_assert_str_eq(user_row(ROW_A), "a2|a3@x|31");
    ck_assert_str_eq(user_row(ROW_B), "b2|-|40");
    ck_assert_str_eq(user_row(ROW_C), "c|-|7");   /* absent on insert: the default */
    ck_assert_str_eq(user_row(ROW_D), "d|-|-");
}
END_TEST

/* A set statement that fails is redone change by change: the failing change alone is answered
 * materialize_error with PostgreSQL's message, the rest of the batch (the same table included)
 * applies, and the fallback is counted. With set_materialization off nothing is counted, and the
 * answers and the tables are the same. */
START_TEST(test_set_failing_row_isolated)
{
    char *body[2], *users[2], *failures[2];
    for (int on = 1; on >= 0; on--) {
        open_set_db("");
        T.cfg.set_materialization = on;
        struct tdb_answer *a = tdb_upload_ok(
            &T, U, D,
            batch(ins(1, "users", ROW_A, "{\"name\":\"a\"}"), ins(2, "users", ROW_B, "{\"email\":\"no name\"}"),
                  ins(3, "users", ROW_C, "{\"name\":\"c\"}"),
                  ins(4, "posts", ROW_D, "{\"author_id\":\"" ROW_C "\",\"title\":\"d\"}"),
                  ins(5, "posts", ROW_E, "{\"author_id\":\"" ROW_B "\",\"title\":\"e\"}"),
                  ins(6, "users", ROW_F, "{\"name\":\"f\",\"age\":\"old\"}"), NULL));
        assert_applied(a, 0, 1, 1);
        assert_mat_error(a, 1, 2, 1,
                         "null value in column \"name\" of relation \"users\" violates not-null constraint");
        assert_applied(a, 2, 3, 1);
        assert_applied(a, 3, 4, 1);
        /* its parent failed to materialize: the child is judged again without it */
        ck_assert_str_eq(tdb_str(status_at(a, 4, 5), "status"), "invalid");
        assert_mat_error(a, 5, 6, 1, "invalid input syntax for type integer: \"old\"");
        ck_assert_int_eq(a->counts.materialize_errors, 2);
        ck_assert_int_eq(a->counts.materialize_fallbacks, on ? 1 : 0);
        body[on] = tdb_printf(&T, "%s", a->body);
        tdb_answer_free(a);
        assert_failure(U, "business.users", ROW_B, 1, "INSERT", "{\"email\":\"no name\"}", NULL, 0);
        users[on] = tdb_query(&T, "SELECT string_agg(name, ',' ORDER BY name) FROM business.users");
        ck_assert_str_eq(users[on], "a,c");
        ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.posts"), 1);
        failures[on] = tdb_query(&T, "SELECT string_agg(pk_uuid || ':' || error, ';' ORDER BY pk_uuid)"
                                     " FROM sync.materialize_failures");
        /* what stays of a failed set attempt is undone: then the change by change path */
        ck_assert_int_eq(stmts("users", "INSERT"), 2);
        /* copied out of the database's arena before it closes */
        body[on] = strdup(body[on]);
        users[on] = strdup(users[on]);
        failures[on] = strdup(failures[on]);
        tdb_close(&T);
    }
    ck_assert_str_eq(body[1], body[0]);
    ck_assert_str_eq(users[1], users[0]);
    ck_assert_str_eq(failures[1], failures[0]);
    for (int i = 0; i < 2; i++) {
        free(body[i]);
        free(users[i]);
        free(failures[i]);
    }
}
END_TEST

/* A delete that breaks a foreign key: checked at once it fails the set statement (a fallback),
 * deferred it fails the check before commit (no fallback: each change is then tried alone). Either
 * way the delete alone is answered materialize_error and the batch's other deletes apply. */
static void set_delete_breaks_fk(const char *fk_timing, unsigned long fallbacks)
{
    open_set_db(fk_timing);
    T.cfg.set_materialization = true;   /* whatever OVERSYNCD_TEST_SET_MATERIALIZATION says */
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D,
        batch(ins(1, "users", ROW_A, "{\"name\":\"a\"}"), ins(2, "users", ROW_B, "{\"name\":\"b\"}"),
              ins(3, "users", ROW_C, "{\"name\":\"c\"}"),
              ins(4, "posts", ROW_D, "{\"author_id\":\"" ROW_A "\",\"title\":\"d\"}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload(&T, U, D, batch(del(5, "users", ROW_B, 1), del(6, "users", ROW_A, 1), del(7, "users", ROW_C, 1),
                                   NULL));
    ck_assert_msg(a->outcome == SYNC_OK, "upload failed as a whole: %s", a->err);
    assert_applied(a, 0, 5, 2);
    assert_mat_error_has(a, 1, 6, 2, "violates foreign key constraint", NULL);
    assert_applied(a, 2, 7, 2);
    ck_assert_int_eq(a->counts.materialize_fallbacks, fallbacks);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(name, ',') FROM business.users"), "a");
    ck_assert_int_eq(meta_version(U, NULL, NULL, ROW_A), 1);
}

START_TEST(test_set_delete_breaks_immediate_fk)
{
    set_delete_breaks_fk("", 1);
}
END_TEST

START_TEST(test_set_delete_breaks_deferred_fk)
{
    set_delete_breaks_fk("DEFERRABLE INITIALLY DEFERRED", 0);
}
END_TEST

/* A child inserted with its parent in the same batch, and with a parent that is only deleted in
 * the same batch: the deferred foreign key is checked before commit, and only the child that
 * breaks it fails. */
START_TEST(test_set_parent_child_same_batch)
{
    open_set_db("DEFERRABLE INITIALLY DEFERRED");
    T.cfg.set_materialization = true;   /* whatever OVERSYNCD_TEST_SET_MATERIALIZATION says */
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", ROW_A, "{\"name\":\"a\"}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload(&T, U, D,
                   batch(ins(2, "posts", ROW_D, "{\"author_id\":\"" ROW_B "\",\"title\":\"d\"}"),
                         ins(3, "users", ROW_B, "{\"name\":\"b\"}"),
                         ins(4, "posts", ROW_E, "{\"author_id\":\"" ROW_A "\",\"title\":\"e\"}"),
                         del(5, "users", ROW_A, 1), NULL));
    ck_assert_msg(a->outcome == SYNC_OK, "upload failed as a whole: %s", a->err);
    assert_applied(a, 0, 2, 1);
    assert_applied(a, 1, 3, 1);
    /* the post of a user deleted in the same batch: one of the two breaks the key at commit */
    int bad = strcmp(tdb_str(status_at(a, 2, 4), "status"), "materialize_error") == 0 ? 2 : 3;
    assert_mat_error_has(a, bad, bad == 2 ? 4 : 5, bad == 2 ? 1 : 2, "violates foreign key constraint", NULL);
    ck_assert_str_eq(tdb_str(status_at(a, 5 - bad, bad == 2 ? 5 : 4), "status"), "applied");
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.posts p JOIN business.users u"
                                      " ON u.id = p.author_id"),
                     tdb_query_ll(&T, "SELECT count(*) FROM business.posts"));
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.posts WHERE id = '%s'", ROW_D), 1);
}
END_TEST

/* The batch form of a sql: function: the per-change form of sql_ddl plus an overload taking all
 * changes of the table at once, counting its calls. It refuses a whole batch holding a forced
 * failure; the per-change form then names the change. */
static const char sql_batch_fn[] =
    "CREATE TABLE business.batch_calls (n int NOT NULL); INSERT INTO business.batch_calls VALUES (0);"
    "CREATE FUNCTION business.%s(schema text, tbl text, changes jsonb, user_id text)"
    " RETURNS void LANGUAGE plpgsql AS $$"
    " BEGIN"
    "   UPDATE business.batch_calls SET n = n + 1;"
    "   IF EXISTS (SELECT 1 FROM jsonb_array_elements(changes) c WHERE c -> 'payload' ->> 'force_fail' = 'true') THEN"
    "     RAISE EXCEPTION 'a batch of %%.%% holds a forced failure', schema, tbl;"
    "   END IF;"
    "   DELETE FROM business.notes_copy n USING jsonb_array_elements(changes) c"
    "    WHERE c ->> 'op' = 'DELETE' AND n.id = (c ->> 'pk')::uuid;"
    "   INSERT INTO business.notes_copy (id, op, body, src)"
    "   SELECT DISTINCT ON ((c ->> 'pk')::uuid) (c ->> 'pk')::uuid, c ->> 'op', c -> 'payload' ->> 'body',"
    "          schema || '.' || tbl || ':' || user_id"
    "     FROM jsonb_array_elements(changes) WITH ORDINALITY AS x(c, i)"
    "    WHERE c ->> 'op' <> 'DELETE'"
    "    ORDER BY (c ->> 'pk')::uuid, i DESC"
    "   ON CONFLICT (id) DO UPDATE SET op = EXCLUDED.op, body = EXCLUDED.body, src = EXCLUDED.src;"
    " END $$;";

static long long batch_calls(void)
{
    return tdb_query_ll(&T, "SELECT n FROM business.batch_calls");
}

static char *note_copy(const char *pk)
{
    return tdb_query(&T, "SELECT coalesce((SELECT concat_ws('|', op, body, src) FROM business.notes_copy"
                         " WHERE id = '%s'), '<none>')", pk);
}

START_TEST(test_sql_batch_function)
{
    char ddl[4096];
    snprintf(ddl, sizeof ddl, "%s", sql_ddl);
    snprintf(ddl + strlen(ddl), sizeof ddl - strlen(ddl), sql_batch_fn, "apply_notes");
    open_db(ddl, sql_regs);
    T.cfg.set_materialization = true;   /* whatever OVERSYNCD_TEST_SET_MATERIALIZATION says */
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins(1, "notes", ROW_A, "{\"body\":\"a\"}"),
                                               ins(2, "notes", ROW_B, "{\"body\":\"b\"}"),
                                               upd(3, "notes", ROW_A, 1, "{\"body\":\"a2\"}"), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    assert_applied(a, 2, 3, 2);
    ck_assert_int_eq(a->counts.materialize_fallbacks, 0);
    tdb_answer_free(a);
    ck_assert_int_eq(batch_calls(), 1);
    ck_assert_str_eq(note_copy(ROW_A), "UPDATE|a2|business.notes:" U);
    ck_assert_str_eq(note_copy(ROW_B), "INSERT|b|business.notes:" U);

    /* upserts and deletes: one call each */
    a = tdb_upload_ok(&T, U, D, batch(del(4, "notes", ROW_B, 1), ins(5, "notes", ROW_C, "{\"body\":\"c\"}"), NULL));
    assert_applied(a, 0, 4, 2);
    assert_applied(a, 1, 5, 1);
    tdb_answer_free(a);
    ck_assert_int_eq(batch_calls(), 3);
    ck_assert_str_eq(note_copy(ROW_B), "<none>");

    /* the batch raises: the upload is redone change by change with the per-change form */
    a = tdb_upload_ok(&T, U, D,
                      batch(ins(6, "notes", ROW_D, "{\"body\":\"d\",\"force_fail\":\"true\"}"),
                            ins(7, "notes", ROW_E, "{\"body\":\"e\"}"), NULL));
    assert_mat_error(a, 0, 6, 1, "forced failure for " ROW_D);
    assert_applied(a, 1, 7, 1);
    ck_assert_int_eq(a->counts.materialize_fallbacks, 1);
    tdb_answer_free(a);
    ck_assert_int_eq(batch_calls(), 3);   /* the failed call was undone */
    ck_assert_str_eq(note_copy(ROW_D), "<none>");
    ck_assert_str_eq(note_copy(ROW_E), "INSERT|e|business.notes");   /* the five-argument form: no user */

    /* set_materialization off: the per-change form only */
    T.cfg.set_materialization = false;
    a = tdb_upload_ok(&T, U, D, batch(ins(8, "notes", ROW_F, "{\"body\":\"f\"}"), NULL));
    assert_applied(a, 0, 8, 1);
    tdb_answer_free(a);
    ck_assert_int_eq(batch_calls(), 3);
    ck_assert_str_eq(note_copy(ROW_F), "INSERT|f|business.notes");
}
END_TEST

/* A function with the batch form only: a change alone (the fallback) is a batch of one. */
START_TEST(test_sql_batch_only_function)
{
    char ddl[4096];
    snprintf(ddl, sizeof ddl,
             "CREATE SCHEMA business;"
             "CREATE TABLE business.notes (id uuid PRIMARY KEY, body text);"
             "CREATE TABLE business.notes_copy (id uuid PRIMARY KEY, op text, body text, src text);");
    snprintf(ddl + strlen(ddl), sizeof ddl - strlen(ddl), sql_batch_fn, "only_batch");
    const struct reg regs[] = { { "business.notes", MATERIALIZER_SQL, "business.only_batch" },
                                { NULL, MATERIALIZER_NONE, NULL } };
    open_db(ddl, regs);
    T.cfg.set_materialization = true;   /* whatever OVERSYNCD_TEST_SET_MATERIALIZATION says */
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins(1, "notes", ROW_A, "{\"body\":\"a\"}"),
                                               ins(2, "notes", ROW_B, "{\"body\":\"b\",\"force_fail\":\"true\"}"),
                                               ins(3, "notes", ROW_C, "{\"body\":\"c\"}"), NULL));
    assert_applied(a, 0, 1, 1);
    assert_mat_error(a, 1, 2, 1, "a batch of business.notes holds a forced failure");
    assert_applied(a, 2, 3, 1);
    ck_assert_int_eq(a->counts.materialize_fallbacks, 1);
    tdb_answer_free(a);
    ck_assert_int_eq(batch_calls(), 2);   /* A and C, one by one */
    ck_assert_str_eq(note_copy(ROW_A), "INSERT|a|business.notes:" U);
    ck_assert_str_eq(note_copy(ROW_B), "<none>");

    a = tdb_upload_ok(&T, U, D, batch(del(4, "notes", ROW_A, 1), del(5, "notes", ROW_C, 1), NULL));
    assert_applied(a, 0, 4, 2);
    assert_applied(a, 1, 5, 2);
    tdb_answer_free(a);
    ck_assert_int_eq(batch_calls(), 3);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.notes_copy"), 0);
}
END_TEST

/* A batch that has nothing to materialize (no change of a materialized table, or none of them
 * applied) skips the savepoint and the deferred-constraint round trips; one that has still isolates
 * each failing change. */
static const struct reg mixed_regs[] = {
    { "business.users", MATERIALIZER_GENERIC, NULL },
    { "business.notes", MATERIALIZER_NONE, NULL },
    { NULL, MATERIALIZER_NONE, NULL },
};

START_TEST(test_batch_nothing_to_materialize)
{
    open_db("CREATE SCHEMA business;"
            "CREATE TABLE business.users (id uuid PRIMARY KEY, name text NOT NULL);"
            "CREATE TABLE business.notes (id uuid PRIMARY KEY, body text);",
            mixed_regs);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", ROW_A, "{\"name\":\"a\"}"), NULL));
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);

    /* only unmaterialized changes */
    a = tdb_upload_ok(&T, U, D, batch(ins(2, "notes", ROW_B, "{\"body\":\"x\"}"), ins(3, "notes", ROW_C, "{}"), NULL));
    assert_applied(a, 0, 2, 1);
    assert_applied(a, 1, 3, 1);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT count(*) FROM business.notes"), "0");

    /* the materialized change is a conflict: nothing to materialize, the rest applies */
    a = tdb_upload_ok(&T, U, D, batch(upd(4, "users", ROW_A, 5, "{\"name\":\"stale\"}"),
                                      upd(5, "notes", ROW_B, 1, "{\"body\":\"y\"}"), NULL));
    assert_conflict(a, 0, 4, NULL, NULL, NULL, 1, false, "{\"name\":\"a\"}");
    assert_applied(a, 1, 5, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT name FROM business.users WHERE id = '%s'", ROW_A), "a");
    ck_assert_int_eq(failure_count(U), 0);
    /* the transaction ended: no savepoint or constraint mode left behind */
    ck_assert_int_eq(PQtransactionStatus(T.conn), PQTRANS_IDLE);

    /* a failing materialized change beside unmaterialized ones is still undone alone */
    a = tdb_upload_ok(&T, U, D, batch(ins(6, "users", ROW_D, "{}"), upd(7, "notes", ROW_B, 2, "{\"body\":\"z\"}"),
                                      upd(8, "users", ROW_A, 1, "{\"name\":\"b\"}"), NULL));
    assert_mat_error_has(a, 0, 6, 1, "null value in column \"name\"", NULL);
    assert_applied(a, 1, 7, 3);
    assert_applied(a, 2, 8, 2);
    tdb_answer_free(a);
    assert_no_sidecar(U, ROW_D);
    ck_assert_str_eq(tdb_query(&T, "SELECT name FROM business.users WHERE id = '%s'", ROW_A), "b");
    ck_assert_int_eq(failure_count(U), 1);
}
END_TEST

/* ======================================================================== the C plugin */

static const char plugin_ddl[] =
    "CREATE SCHEMA business;"
    "CREATE TABLE business.docs (id uuid PRIMARY KEY, doc jsonb NOT NULL);"
    "CREATE TABLE business.users (id uuid PRIMARY KEY, name text NOT NULL);";

static char *doc_of(const char *pk)
{
    return tdb_query(&T, "SELECT coalesce((SELECT doc::text FROM business.docs WHERE id = '%s'), '<none>')", pk);
}

START_TEST(test_plugin_applied_and_failing)
{
    const char *path = plugin_path();
    const struct reg regs[] = {
        { "business.docs", MATERIALIZER_PLUGIN, path },
        { "business.users", MATERIALIZER_GENERIC, NULL },
        { NULL, MATERIALIZER_NONE, NULL },
    };
    open_db(plugin_ddl, regs);
    ck_assert_int_eq(plugin_init_count(path), 1);

    const char *fail_b = "{\"title\":\"b\",\"plugin_fail\":true}";
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins(1, "docs", ROW_A, "{\"title\":\"a\"}"),
                                               ins(2, "docs", ROW_B, fail_b),
                                               ins(3, "docs", ROW_C, "{\"title\":\"c\",\"plugin_fail\":false}"),
                                               ins(4, "users", ROW_D, "{\"name\":\"generic too\"}"), NULL));
    const char *want = "example_materializer: refusing business.docs row " ROW_B
                       ": the payload has \"plugin_fail\": true";
    assert_applied(a, 0, 1, 1);
    assert_mat_error(a, 1, 2, 1, want);
    assert_applied(a, 2, 3, 1);
    assert_applied(a, 3, 4, 1);
    tdb_answer_free(a);
    ck_assert_str_eq(doc_of(ROW_A), "{\"title\": \"a\"}");
    ck_assert_str_eq(doc_of(ROW_B), "<none>");
    ck_assert_str_eq(doc_of(ROW_C), "{\"title\": \"c\", \"plugin_fail\": false}");
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.users"), 1);
    assert_no_sidecar(U, ROW_B);
    assert_failure(U, "business.docs", ROW_B, 1, "INSERT", fail_b, want, 0);

    /* update and delete through the plugin */
    a = tdb_upload_ok(&T, U, D, batch(upd(5, "docs", ROW_A, 1, "{\"title\":\"a2\"}"), del(6, "docs", ROW_C, 1), NULL));
    assert_applied(a, 0, 5, 2);
    assert_applied(a, 1, 6, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(doc_of(ROW_A), "{\"title\": \"a2\"}");
    ck_assert_str_eq(doc_of(ROW_C), "<none>");

    /* a failing update leaves the business row as it was */
    a = tdb_upload_ok(&T, U, D, batch(upd(7, "docs", ROW_A, 2, "{\"title\":\"a3\",\"plugin_fail\":true}"), NULL));
    assert_mat_error(a, 0, 7, 3,
                     "example_materializer: refusing business.docs row " ROW_A ": the payload has \"plugin_fail\": true");
    tdb_answer_free(a);
    ck_assert_str_eq(doc_of(ROW_A), "{\"title\": \"a2\"}");
    ck_assert_int_eq(meta_version(U, NULL, NULL, ROW_A), 2);

    /* many plugin failures in one batch (the one-savepoint-per-change pass) */
    a = tdb_upload_ok(&T, U, D,
                      batch(ins(10, "docs", ROW_D, "{\"plugin_fail\":true}"),
                            ins(11, "docs", ROW_E, "{\"plugin_fail\":true}"),
                            ins(12, "docs", ROW_F, "{\"ok\":1}"),
                            ins(13, "docs", ROW_G, "{\"plugin_fail\":true}"),
                            ins(14, "docs", OTHER, "{\"plugin_fail\":true}"),
                            ins(15, "docs", UQ, "{\"ok\":2}"), NULL));
    assert_mat_error(a, 0, 10, 1, NULL);
    assert_mat_error(a, 1, 11, 1, NULL);
    assert_applied(a, 2, 12, 1);
    assert_mat_error(a, 3, 13, 1, NULL);
    assert_mat_error(a, 4, 14, 1, NULL);
    assert_applied(a, 5, 15, 1);
    tdb_answer_free(a);
    ck_assert_str_eq(doc_of(ROW_F), "{\"ok\": 1}");
    ck_assert_str_eq(doc_of(UQ), "{\"ok\": 2}");
    ck_assert_str_eq(doc_of(ROW_D), "<none>");
    ck_assert_int_eq(failure_count(U), 6);

    /* loaded and initialised once: uploads and a reconnect do not call init again */
    ck_assert_int_eq(plugin_init_count(path), 1);
    char err[512] = "";
    for (int i = 0; i < T.schema.n_tables; i++)
        if (T.schema.tables[i].mat)
            ck_assert_msg(materializer_connect(T.schema.tables[i].mat, T.conn, err, sizeof err), "%s", err);
    ck_assert_int_eq(plugin_init_count(path), 1);
    a = tdb_upload_ok(&T, U, D, batch(upd(16, "docs", ROW_A, 2, "{\"title\":\"a4\"}"), NULL));
    assert_applied(a, 0, 16, 3);
    tdb_answer_free(a);
    ck_assert_int_eq(plugin_init_count(path), 1);
}
END_TEST

/* How many batches the loaded example plugin applied in this process. */
static int plugin_batch_count(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(h != NULL, "dlopen %s: %s", path, dlerror());
    union {
        void *obj;
        int (*fn)(void);
    } sym = { .obj = dlsym(h, "example_materializer_batch_count") };
    ck_assert_msg(sym.obj != NULL, "example_materializer_batch_count is not exported");
    int n = sym.fn();
    dlclose(h);
    return n;
}

/* The plugin's apply_batch gets the table's upserts, then its deletes, one call each; a batch it
 * refuses is redone change by change, where apply_upsert names the failing change. */
START_TEST(test_plugin_batch)
{
    const char *path = plugin_path();
    const struct reg regs[] = {
        { "business.docs", MATERIALIZER_PLUGIN, path },
        { "business.users", MATERIALIZER_GENERIC, NULL },
        { NULL, MATERIALIZER_NONE, NULL },
    };
    open_db(plugin_ddl, regs);
    T.cfg.set_materialization = true;   /* whatever OVERSYNCD_TEST_SET_MATERIALIZATION says */
    int base = plugin_batch_count(path);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins(1, "docs", ROW_A, "{\"title\":\"a\"}"),
                                               ins(2, "docs", ROW_B, "{\"title\":\"b\"}"),
                                               upd(3, "docs", ROW_A, 1, "{\"title\":\"a2\"}"),
                                               ins(4, "users", ROW_D, "{\"name\":\"d\"}"), NULL));
    for (int i = 0; i < 4; i++)
        assert_applied(a, i, i + 1, i == 2 ? 2 : 1);
    ck_assert_int_eq(a->counts.materialize_fallbacks, 0);
    tdb_answer_free(a);
    ck_assert_int_eq(plugin_batch_count(path) - base, 1);
    ck_assert_str_eq(doc_of(ROW_A), "{\"title\": \"a2\"}");   /* the last change of the key wins */
    ck_assert_str_eq(doc_of(ROW_B), "{\"title\": \"b\"}");

    const char *fail_c = "{\"title\":\"c\",\"plugin_fail\":true}";
    a = tdb_upload_ok(&T, U, D,
                      batch(ins(5, "docs", ROW_C, fail_c), ins(6, "docs", ROW_E, "{\"title\":\"e\"}"),
                            del(7, "docs", ROW_B, 1), NULL));
    assert_mat_error(a, 0, 5, 1,
                     "example_materializer: refusing business.docs row " ROW_C ": the payload has \"plugin_fail\": true");
    assert_applied(a, 1, 6, 1);
    assert_applied(a, 2, 7, 2);
    ck_assert_int_eq(a->counts.materialize_fallbacks, 1);
    tdb_answer_free(a);
    ck_assert_int_eq(plugin_batch_count(path) - base, 1);   /* the refused batch stopped the first attempt */
    ck_assert_str_eq(doc_of(ROW_C), "<none>");
    ck_assert_str_eq(doc_of(ROW_E), "{\"title\": \"e\"}");
    ck_assert_str_eq(doc_of(ROW_B), "<none>");

    a = tdb_upload_ok(&T, U, D, batch(del(8, "docs", ROW_A, 2), del(9, "docs", ROW_E, 1), NULL));
    assert_applied(a, 0, 8, 3);
    assert_applied(a, 1, 9, 2);
    tdb_answer_free(a);
    ck_assert_int_eq(plugin_batch_count(path) - base, 2);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.docs"), 0);
}
END_TEST

/* A plugin built against the first interface version (tests/plugins/abi1_materializer.c: ABI 1,
 * a table without apply_batch) loads and is called change by change, set-based or not. */
START_TEST(test_plugin_abi1)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s", plugin_path());
    char *slash = strrchr(path, '/');
    snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "abi1_materializer.so");
    ck_assert_msg(access(path, R_OK) == 0, "%s is missing: make tests/plugins/abi1_materializer.la", path);
    const struct reg regs[] = {
        { "business.docs", MATERIALIZER_PLUGIN, path },
        { "business.users", MATERIALIZER_GENERIC, NULL },
        { NULL, MATERIALIZER_NONE, NULL },
    };
    open_db(plugin_ddl, regs);
    T.cfg.set_materialization = true;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(h != NULL, "dlopen %s: %s", path, dlerror());
    union {
        void *obj;
        int (*fn)(void);
    } sym = { .obj = dlsym(h, "abi1_materializer_calls") };
    ck_assert(sym.obj != NULL);
    int base = sym.fn();
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins(1, "docs", ROW_A, "{\"title\":\"a\"}"),
                                               ins(2, "docs", ROW_B, "{\"title\":\"b\"}"),
                                               ins(3, "users", ROW_C, "{\"name\":\"c\"}"), NULL));
    for (int i = 0; i < 3; i++)
        assert_applied(a, i, i + 1, 1);
    tdb_answer_free(a);
    ck_assert_int_eq(sym.fn() - base, 2);
    a = tdb_upload_ok(&T, U, D, batch(del(4, "docs", ROW_A, 1), NULL));
    assert_applied(a, 0, 4, 2);
    tdb_answer_free(a);
    ck_assert_int_eq(sym.fn() - base, 3);
    ck_assert_str_eq(doc_of(ROW_A), "<none>");
    ck_assert_str_eq(doc_of(ROW_B), "{\"title\": \"b\"}");
    dlclose(h);
}
END_TEST

/* ========================================================================== admin */

static const char admin_ddl[] =
    "CREATE SCHEMA business; CREATE SCHEMA other;"
    "CREATE TABLE business.users (id uuid PRIMARY KEY, name text NOT NULL);"
    "CREATE TABLE business.posts (id uuid PRIMARY KEY, title text NOT NULL);"
    "CREATE TABLE other.items (id uuid PRIMARY KEY, label text NOT NULL);";

static const struct reg admin_regs[] = {
    { "business.users", MATERIALIZER_GENERIC, NULL },
    { "business.posts", MATERIALIZER_GENERIC, NULL },
    { "other.items", MATERIALIZER_GENERIC, NULL },
    { NULL, MATERIALIZER_NONE, NULL },
};

/* sync_list_failures for user; the parsed array (the caller puts it). */
static json_object *list_failures(const char *user, const char *schema, const char *table, int limit,
                                  char **raw)
{
    struct identity who = tdb_who(user, D);
    arena_t *arena = arena_new(8192);
    struct sync_request rq = tdb_request(&T, &who, arena);
    strbuf_t out = STRBUF_INIT;
    char err[512] = "";
    enum sync_outcome o = sync_list_failures(&rq, schema, table, limit, &out, err, sizeof err);
    arena_free(arena);
    ck_assert_msg(o == SYNC_OK, "sync_list_failures: %d %s", (int)o, err);
    if (raw)
        *raw = tdb_printf(&T, "%s", sb_cstr(&out));
    json_object *j = json_tokener_parse(sb_cstr(&out));
    ck_assert_msg(j && json_object_is_type(j, json_type_array), "not a JSON array: %s", sb_cstr(&out));
    sb_free(&out);
    return j;
}

/* The pks of a listing, "|"-separated. */
static char *list_pks(const char *user, const char *schema, const char *table, int limit)
{
    json_object *j = list_failures(user, schema, table, limit, NULL);
    strbuf_t sb = STRBUF_INIT;
    for (size_t i = 0; i < json_object_array_length(j); i++)
        sb_printf(&sb, "%s%s", i ? "|" : "", tdb_str(json_object_array_get_idx(j, i), "pk"));
    json_object_put(j);
    char *s = tdb_printf(&T, "%s", sb_cstr(&sb));
    sb_free(&sb);
    return s;
}

struct retry_answer {
    enum sync_outcome outcome;
    char err[512];
    json_object *json;
};

static struct retry_answer retry(const char *user, long long id)
{
    struct retry_answer r;
    memset(&r, 0, sizeof r);
    struct identity who = tdb_who(user, D);
    arena_t *arena = arena_new(8192);
    struct sync_request rq = tdb_request(&T, &who, arena);
    strbuf_t out = STRBUF_INIT;
    r.outcome = sync_retry_failure(&rq, id, &out, r.err, sizeof r.err);
    arena_free(arena);
    ck_assert_msg(PQtransactionStatus(T.conn) == PQTRANS_IDLE, "sync_retry_failure left a transaction open");
    if (r.outcome == SYNC_OK) {
        r.json = json_tokener_parse(sb_cstr(&out));
        ck_assert_msg(r.json != NULL, "not JSON: %s", sb_cstr(&out));
    }
    sb_free(&out);
    return r;
}

static bool params_ok(const char *schema, const char *table, const char *limit, int *lim, char *err, size_t errlen)
{
    const char *s = NULL, *t = NULL;
    return failures_params_parse(schema, table, limit, &s, &t, lim, err, errlen);
}

START_TEST(test_admin_params)
{
    const char *s = "x", *t = "x";
    int lim = 0;
    char err[256] = "";
    ck_assert(failures_params_parse(NULL, NULL, NULL, &s, &t, &lim, err, sizeof err));
    ck_assert_ptr_null(s);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(lim, 100);
    ck_assert(failures_params_parse("business", "users", "1", &s, &t, &lim, err, sizeof err));
    ck_assert_str_eq(s, "business");
    ck_assert_str_eq(t, "users");
    ck_assert_int_eq(lim, 1);
    ck_assert(params_ok("", "", "1000", &lim, err, sizeof err));
    ck_assert_int_eq(lim, 1000);
    const char *bad_limits[] = { "0", "1001", "-1", "abc", "", "1.5", "99999999999", NULL };
    for (int i = 0; bad_limits[i]; i++) {
        err[0] = '\0';
        ck_assert_msg(!params_ok(NULL, NULL, bad_limits[i], &lim, err, sizeof err), "limit %s was accepted",
                      bad_limits[i]);
        ck_assert_str_eq(err, "limit must be an integer from 1 to 1000");
    }
    ck_assert(!params_ok("Bad-Schema", NULL, NULL, &lim, err, sizeof err));
    ck_assert_str_eq(err, "schema must match ^[a-z0-9_]+$");
    ck_assert(!params_ok(NULL, "no.table", NULL, &lim, err, sizeof err));
    ck_assert_str_eq(err, "table must match ^[a-z0-9_]+$");
}
END_TEST

START_TEST(test_admin_list)
{
    open_db(admin_ddl, admin_regs);
    char *raw = NULL;
    json_object *j = list_failures(U, NULL, NULL, 100, &raw);
    ck_assert_str_eq(raw, "[]");
    json_object_put(j);

    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", ROW_A, "{\"n\":1}"), NULL));
    assert_mat_error(a, 0, 1, 1, NULL);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D,
                      batch(chg(2, "other", "items", "INSERT", ROW_C, 0, "{\"n\":3}"),
                            ins(3, "posts", ROW_B, "{\"n\":2}"), ins(4, "posts", ROW_F, "{\"title\":\"fine\"}"),
                            NULL));
    assert_mat_error(a, 0, 2, 1, NULL);
    assert_mat_error(a, 1, 3, 1, NULL);
    assert_applied(a, 2, 4, 1);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D, batch(ins(5, "users", ROW_D, "{\"n\":4}"), NULL));
    assert_mat_error(a, 0, 5, 1, NULL);
    tdb_answer_free(a);
    /* another user's failure */
    a = tdb_upload_ok(&T, U2, D, batch(ins(1, "users", ROW_E, "{\"n\":5}"), NULL));
    assert_mat_error(a, 0, 1, 1, NULL);
    tdb_answer_free(a);

    /* newest first: the last upload, then the second (in the order its failures were recorded:
     * apply order business.posts before other.items, the newer id first), then the first */
    ck_assert_str_eq(list_pks(U, NULL, NULL, 100), ROW_D "|" ROW_C "|" ROW_B "|" ROW_A);
    j = list_failures(U, NULL, NULL, 100, NULL);
    ck_assert_int_eq(json_object_array_length(j), 4);
    long long prev_id = LLONG_MAX;
    const char *prev_seen = "9999";
    regex_t re;
    ck_assert_int_eq(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    for (size_t i = 0; i < 4; i++) {
        json_object *f = json_object_array_get_idx(j, i);
        long long id = tdb_int(f, "id");
        ck_assert_int_lt(id, prev_id);
        prev_id = id;
        const char *seen = tdb_str(f, "first_seen");
        ck_assert_msg(regexec(&re, seen, 0, NULL, 0) == 0, "first_seen %s is not RFC 3339 UTC", seen);
        ck_assert_msg(strcmp(seen, prev_seen) <= 0, "first_seen not newest first: %s after %s", seen, prev_seen);
        prev_seen = seen;
    }
    regfree(&re);
    /* every field of one entry */
    json_object *f = json_object_array_get_idx(j, 0);
    ck_assert_int_eq(json_object_object_length(f), 10);
    ck_assert_str_eq(tdb_str(f, "schema"), "business");
    ck_assert_str_eq(tdb_str(f, "table"), "users");
    ck_assert_str_eq(tdb_str(f, "pk"), ROW_D);
    ck_assert_int_eq(tdb_int(f, "attempted_version"), 1);
    ck_assert_str_eq(tdb_str(f, "op"), "INSERT");
    ck_assert(tdb_json_eq(tdb_get(f, "payload"), "{\"n\":4}"));
    ck_assert_msg(strstr(tdb_str(f, "error"), "null value in column \"name\"") != NULL, "error: %s",
                  tdb_str(f, "error"));
    ck_assert_int_eq(tdb_int(f, "retry_count"), 0);
    ck_assert_int_eq(tdb_int(f, "id"),
                     tdb_query_ll(&T, "SELECT id FROM sync.materialize_failures WHERE pk_uuid = '%s'", ROW_D));
    json_object_put(j);

    /* filters and limits */
    ck_assert_str_eq(list_pks(U, "business", NULL, 100), ROW_D "|" ROW_B "|" ROW_A);
    ck_assert_str_eq(list_pks(U, "other", NULL, 100), ROW_C);
    ck_assert_str_eq(list_pks(U, NULL, "users", 100), ROW_D "|" ROW_A);
    ck_assert_str_eq(list_pks(U, "business", "posts", 100), ROW_B);
    ck_assert_str_eq(list_pks(U, "business", "items", 100), "");
    ck_assert_str_eq(list_pks(U, "nosuch", NULL, 100), "");
    ck_assert_str_eq(list_pks(U, NULL, NULL, 1), ROW_D);
    ck_assert_str_eq(list_pks(U, NULL, NULL, 2), ROW_D "|" ROW_C);
    ck_assert_str_eq(list_pks(U, NULL, NULL, 1000), ROW_D "|" ROW_C "|" ROW_B "|" ROW_A);

    /* users are isolated */
    ck_assert_str_eq(list_pks(U2, NULL, NULL, 100), ROW_E);
    j = list_failures(U3, NULL, NULL, 100, &raw);
    ck_assert_str_eq(raw, "[]");
    json_object_put(j);
}
END_TEST

START_TEST(test_admin_retry)
{
    open_db(sql_ddl, sql_regs);
    tdb_exec(&T, "UPDATE business.switch SET fail = true");
    const char *pa = "{\"body\":\"a\"}";
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "notes", ROW_A, pa), NULL));
    assert_mat_error(a, 0, 1, 1, "forced failure for " ROW_A);
    tdb_answer_free(a);
    long long id = assert_failure(U, "business.notes", ROW_A, 1, "INSERT", pa, "forced failure for " ROW_A, 0);

    /* still failing: retry_count grows, the row stays */
    struct retry_answer r = retry(U, id);
    ck_assert_msg(r.outcome == SYNC_OK, "retry: %d %s", (int)r.outcome, r.err);
    char *want = tdb_printf(&T,
                            "{\"id\":%lld,\"retry_count\":1,\"status\":\"materialize_error\",\"new_server_version\":1,"
                            "\"message\":\"forced failure for " ROW_A "\"}",
                            id);
    ck_assert_msg(tdb_json_eq(r.json, want), "retry answered %s, expected %s", json_object_to_json_string(r.json),
                  want);
    json_object_put(r.json);
    assert_failure(U, "business.notes", ROW_A, 1, "INSERT", pa, "forced failure for " ROW_A, 1);
    assert_no_sidecar(U, ROW_A);

    r = retry(U, id);
    ck_assert_int_eq(tdb_int(r.json, "retry_count"), 2);
    json_object_put(r.json);
    assert_failure(U, "business.notes", ROW_A, 1, "INSERT", pa, "forced failure for " ROW_A, 2);

    /* another user cannot see or retry it */
    r = retry(U2, id);
    ck_assert_int_eq(r.outcome, SYNC_NOT_FOUND);
    ck_assert_str_eq(r.err, tdb_printf(&T, "no materialize failure with id %lld", id));
    assert_failure(U, "business.notes", ROW_A, 1, "INSERT", pa, "forced failure for " ROW_A, 2);
    /* an unknown id */
    r = retry(U, 987654321);
    ck_assert_int_eq(r.outcome, SYNC_NOT_FOUND);
    ck_assert_str_eq(r.err, "no materialize failure with id 987654321");

    /* fixed: applied as the service, the failure row gone */
    tdb_exec(&T, "UPDATE business.switch SET fail = false");
    long long before = tdb_highest(&T, U);
    r = retry(U, id);
    ck_assert_msg(r.outcome == SYNC_OK, "retry: %d %s", (int)r.outcome, r.err);
    want = tdb_printf(&T, "{\"id\":%lld,\"retry_count\":2,\"status\":\"applied\",\"new_server_version\":1}", id);
    ck_assert_msg(tdb_json_eq(r.json, want), "retry answered %s, expected %s", json_object_to_json_string(r.json),
                  want);
    json_object_put(r.json);
    ck_assert_int_eq(failure_count(U), 0);
    ck_assert_str_eq(copy_of(ROW_A), "INSERT|a|business.notes");
    ck_assert_int_eq(meta_version(U, NULL, NULL, ROW_A), 1);
    ck_assert_int_eq(tdb_log_count_pk(&T, U, ROW_A), 1);
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s|%%s|%%s|%%s', source_id, source_change_id, op, server_version)"
                                   " FROM sync.server_change_log WHERE pk_uuid = '%s'",
                               ROW_A),
                     tdb_printf(&T, "admin-retry|%lld|INSERT|1", id));
    ck_assert_int_gt(tdb_highest(&T, U), before);

    /* every device of the user downloads it, the one that uploaded the change included */
    const char *devices[] = { D, D2 };
    for (int i = 0; i < 2; i++) {
        struct tdb_answer *dl = tdb_download_ok(&T, U, devices[i], "include_self=false");
        ck_assert_int_eq(tdb_nchanges(dl), 1);
        json_object *c = tdb_change(dl, 0);
        ck_assert_str_eq(tdb_str(c, "source_id"), "admin-retry");
        ck_assert_int_eq(tdb_int(c, "source_change_id"), id);
        ck_assert_str_eq(tdb_str(c, "pk"), ROW_A);
        ck_assert_str_eq(tdb_str(c, "op"), "INSERT");
        ck_assert_int_eq(tdb_int(c, "server_version"), 1);
        ck_assert(tdb_json_eq(tdb_get(c, "payload"), pa));
        tdb_answer_free(dl);
    }
    struct tdb_answer *dl = tdb_download_ok(&T, U2, D, "include_self=true");
    ck_assert_int_eq(tdb_nchanges(dl), 0);
    tdb_answer_free(dl);

    /* the row is gone: a second retry of the same id is not found */
    r = retry(U, id);
    ck_assert_int_eq(r.outcome, SYNC_NOT_FOUND);

    /* the device's own retry of its change now meets the applied row */
    a = tdb_upload_ok(&T, U, D, batch(ins(1, "notes", ROW_A, pa), NULL));
    assert_conflict(a, 0, 1, NULL, NULL, NULL, 1, false, pa);
    tdb_answer_free(a);
}
END_TEST

/* A failed DELETE retried by the admin deletes the row. */
START_TEST(test_admin_retry_delete)
{
    open_db(sql_ddl, sql_regs);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "notes", ROW_A, "{\"body\":\"a\"}"), NULL));
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);
    tdb_exec(&T, "UPDATE business.switch SET fail = true");
    a = tdb_upload_ok(&T, U, D, batch(del(2, "notes", ROW_A, 1), NULL));
    assert_mat_error(a, 0, 2, 2, "forced failure for " ROW_A);
    tdb_answer_free(a);
    long long id = assert_failure(U, "business.notes", ROW_A, 2, "DELETE", NULL, "forced failure for " ROW_A, 0);
    /* the listing shows a DELETE with a null payload */
    json_object *j = list_failures(U, NULL, NULL, 100, NULL);
    ck_assert_int_eq(json_object_array_length(j), 1);
    ck_assert(tdb_is_null(json_object_array_get_idx(j, 0), "payload"));
    ck_assert_str_eq(tdb_str(json_object_array_get_idx(j, 0), "op"), "DELETE");
    json_object_put(j);

    tdb_exec(&T, "UPDATE business.switch SET fail = false");
    struct retry_answer r = retry(U, id);
    ck_assert_msg(r.outcome == SYNC_OK, "retry: %d %s", (int)r.outcome, r.err);
    char *want = tdb_printf(&T, "{\"id\":%lld,\"retry_count\":0,\"status\":\"applied\",\"new_server_version\":2}", id);
    ck_assert_msg(tdb_json_eq(r.json, want), "retry answered %s, expected %s", json_object_to_json_string(r.json),
                  want);
    json_object_put(r.json);
    ck_assert_str_eq(copy_of(ROW_A), "<none>");
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s|%%s', server_version, deleted) FROM sync.sync_row_meta"
                                   " WHERE pk_uuid = '%s'",
                               ROW_A),
                     "2|t");
    ck_assert_int_eq(tdb_state_count(&T, U), 0);
    ck_assert_int_eq(failure_count(U), 0);
}
END_TEST

/* ============================================================== start-up verification */

static const char verify_ddl[] =
    "CREATE SCHEMA business;"
    "CREATE TABLE business.users (id uuid PRIMARY KEY, name text);"
    "CREATE TABLE business.nopk (id uuid, name text);"
    "CREATE TABLE business.comp (a uuid, b uuid, PRIMARY KEY (a, b));"
    "CREATE TABLE business.notes (id uuid PRIMARY KEY, body text);"
    "CREATE TABLE business.docs (id uuid PRIMARY KEY, doc jsonb NOT NULL);"
    "CREATE TABLE business.nodoc (id uuid PRIMARY KEY, body text);"
    "CREATE FUNCTION business.apply(op text, schema text, tbl text, pk uuid, payload jsonb)"
    " RETURNS void LANGUAGE sql AS 'SELECT 1';"
    "CREATE FUNCTION business.four(op text, schema text, tbl text, pk uuid)"
    " RETURNS void LANGUAGE sql AS 'SELECT 1';";

/* materializers_verify over a configuration of the given tables (NULL-terminated regs). */
static bool verify(const struct reg *regs, PGconn *conn, char *err, size_t errlen)
{
    struct table_conf tc[8];
    memset(tc, 0, sizeof tc);
    int n = 0;
    for (; regs[n].table; n++) {
        ck_assert_int_lt(n, 8);
        const char *dot = strchr(regs[n].table, '.');
        tc[n].schema = tdb_printf(&T, "%.*s", (int)(dot - regs[n].table), regs[n].table);
        tc[n].name = tdb_printf(&T, "%s", dot + 1);
        tc[n].materializer = regs[n].kind;
        tc[n].materializer_arg = regs[n].arg ? tdb_printf(&T, "%s", regs[n].arg) : NULL;
        tc[n].line = n + 1;
    }
    struct config cfg = T.cfg;
    cfg.tables = tc;
    cfg.n_tables = n;
    err[0] = '\0';
    return materializers_verify(&cfg, conn, err, errlen);
}

static void verify_fails(const struct reg *regs, const char *want)
{
    char err[1024];
    ck_assert_msg(!verify(regs, T.conn, err, sizeof err), "materializers_verify accepted %s", regs[0].table);
    ck_assert_msg(strcmp(err, want) == 0, "materializers_verify said \"%s\", expected \"%s\"", err, want);
}

START_TEST(test_verify)
{
    static const struct reg none[] = { { NULL, MATERIALIZER_NONE, NULL } };
    tdb_open_tables(&T, (const char *const[]){ "business.users", NULL });
    tdb_exec(&T, "%s", verify_ddl);
    const char *plugin = plugin_path();
    char err[1024];

    const struct reg good[] = {
        { "business.users", MATERIALIZER_GENERIC, NULL },
        { "business.notes", MATERIALIZER_SQL, "business.apply" },
        { "business.docs", MATERIALIZER_PLUGIN, plugin },
        { "business.nopk", MATERIALIZER_NONE, NULL },
        { NULL, MATERIALIZER_NONE, NULL },
    };
    ck_assert_msg(verify(good, T.conn, err, sizeof err), "materializers_verify: %s", err);
    ck_assert_msg(verify(none, T.conn, err, sizeof err), "materializers_verify: %s", err);

    /* generic without a single-column primary key */
    const struct reg nopk[] = { { "business.users", MATERIALIZER_GENERIC, NULL },
                                { "business.nopk", MATERIALIZER_GENERIC, NULL },
                                { NULL, MATERIALIZER_NONE, NULL } };
    verify_fails(nopk, "[table business.nopk] materializer: the generic materializer needs a single-column primary"
                       " key on business.nopk");
    const struct reg comp[] = { { "business.comp", MATERIALIZER_GENERIC, NULL }, { NULL, MATERIALIZER_NONE, NULL } };
    verify_fails(comp, "[table business.comp] materializer: the generic materializer needs a single-column primary"
                       " key on business.comp");
    const struct reg ghost[] = { { "business.ghost", MATERIALIZER_GENERIC, NULL },
                                 { NULL, MATERIALIZER_NONE, NULL } };
    verify_fails(ghost, "[table business.ghost] materializer: table business.ghost does not exist");

    /* sql: a function that does not exist, or not with the six or five arguments */
    const struct reg nofn[] = { { "business.notes", MATERIALIZER_SQL, "business.nope" },
                                { NULL, MATERIALIZER_NONE, NULL } };
    verify_fails(nofn, "[table business.notes] materializer: no function business.nope(op text, schema text, tbl text,"
                       " pk uuid, payload jsonb, user_id text), business.nope(op text, schema text, tbl text,"
                       " pk uuid, payload jsonb) or business.nope(schema text, tbl text, changes jsonb, user_id text)");
    const struct reg four[] = { { "business.notes", MATERIALIZER_SQL, "business.four" },
                                { NULL, MATERIALIZER_NONE, NULL } };
    verify_fails(four, "[table business.notes] materializer: no function business.four(op text, schema text, tbl text,"
                       " pk uuid, payload jsonb, user_id text), business.four(op text, schema text, tbl text,"
                       " pk uuid, payload jsonb) or business.four(schema text, tbl text, changes jsonb, user_id text)");

    /* plugin: a path that does not exist, with and without a connection */
    const struct reg noso[] = { { "business.docs", MATERIALIZER_PLUGIN, "/nonexistent/oversyncd/nope.so" },
                                { NULL, MATERIALIZER_NONE, NULL } };
    const char *prefix = "[table business.docs] materializer: cannot load /nonexistent/oversyncd/nope.so: ";
    ck_assert(!verify(noso, T.conn, err, sizeof err));
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "materializers_verify said \"%s\"", err);
    ck_assert(!verify(noso, NULL, err, sizeof err));
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "materializers_verify said \"%s\"", err);
    /* the plugin's own init refuses a table it cannot serve */
    const struct reg nodoc[] = { { "business.nodoc", MATERIALIZER_PLUGIN, plugin },
                                 { NULL, MATERIALIZER_NONE, NULL } };
    verify_fails(nodoc, "[table business.nodoc] materializer: example_materializer: business.nodoc must be a table"
                        " with columns id uuid (primary key) and doc jsonb");
}
END_TEST

/* ======================================================== rows of other users (ownership) */

/* A business row belongs to the user whose sync state holds it: another user's change can neither
 * alter nor delete it, whatever the materializer kind, and the refusal shows nothing of the row. */

static const char owner_ddl[] =
    "CREATE SCHEMA business;"
    "CREATE TABLE business.users (id uuid PRIMARY KEY, name text NOT NULL);"
    "CREATE TABLE business.posts (id uuid PRIMARY KEY, author_id uuid REFERENCES business.users (id)"
    "  DEFERRABLE INITIALLY DEFERRED, title text NOT NULL);"
    "CREATE TABLE business.notes (id uuid PRIMARY KEY, body text);"
    "CREATE TABLE business.notes_copy (id uuid PRIMARY KEY, op text, body text, src text, who text);"
    "CREATE FUNCTION business.apply_notes(op text, schema text, tbl text, pk uuid, payload jsonb, user_id text)"
    " RETURNS void LANGUAGE plpgsql AS $$"
    " BEGIN"
    "   IF op = 'DELETE' THEN"
    "     DELETE FROM business.notes_copy WHERE id = pk;"
    "   ELSE"
    "     INSERT INTO business.notes_copy (id, op, body, src, who)"
    "     VALUES (pk, op, payload ->> 'body', schema || '.' || tbl, user_id)"
    "     ON CONFLICT (id) DO UPDATE SET op = EXCLUDED.op, body = EXCLUDED.body, who = EXCLUDED.who;"
    "   END IF;"
    " END $$;"
    "CREATE TABLE business.docs (id uuid PRIMARY KEY, doc jsonb NOT NULL);"
    "CREATE TABLE public.scratch (id uuid PRIMARY KEY);";

/* Assert status i is invalid/pk_taken and says nothing of the other user's row. */
static void assert_pk_taken(const struct tdb_answer *a, int i, long long scid, const char *secret)
{
    json_object *st = assert_invalid(a, i, scid, "pk_taken");
    json_object *inv = tdb_get(st, "invalid");
    ck_assert_msg(!tdb_has(st, "server_row"), "a refusal must not carry server_row: %s", a->body);
    ck_assert_msg(!tdb_has(st, "new_server_version"), "a refusal must not carry a version: %s", a->body);
    ck_assert_msg(strstr(tdb_str(st, "message"), "another user") != NULL, "message: %s", a->body);
    ck_assert_msg(tdb_json_eq(tdb_get(inv, "details"), tdb_printf(&T, "{\"error\":%s}",
                                                                   json_object_to_json_string(tdb_get(st, "message")))),
                  "details.error must repeat the message: %s", a->body);
    if (secret)
        ck_assert_msg(strstr(a->body, secret) == NULL, "the answer reveals \"%s\": %s", secret, a->body);
}

static long long owner_rows(const char *user)
{
    return tdb_query_ll(&T, "SELECT count(*) FROM sync.row_owner WHERE user_id = '%s'", user);
}

static void open_owner_db(void)
{
    const struct reg regs[] = {
        { "business.users", MATERIALIZER_GENERIC, NULL },
        { "business.posts", MATERIALIZER_GENERIC, NULL },
        { "business.notes", MATERIALIZER_SQL, "business.apply_notes" },
        { "business.docs", MATERIALIZER_PLUGIN, plugin_path() },
        { "public.scratch", MATERIALIZER_NONE, NULL },
        { NULL, MATERIALIZER_NONE, NULL },
    };
    open_db(owner_ddl, regs);
}

/* The issue's attack: bob's INSERT with alice's UUID, then his DELETE at version 1. */
START_TEST(test_owner_generic)
{
    open_owner_db();
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", ROW_A, "{\"name\":\"alice secret\"}"), NULL));
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);
    char *before = tdb_snapshot(&T);

    a = tdb_upload_ok(&T, U2, D, batch(ins(1, "users", ROW_A, "{\"name\":\"bob was here\"}"),
                                       upd(2, "users", ROW_A, 1, "{\"name\":\"bob again\"}"),
                                       del(3, "users", ROW_A, 1), del(4, "users", ROW_A, 0), NULL));
    ck_assert(tdb_bool(a->json, "accepted"));
    assert_pk_taken(a, 0, 1, "alice secret");
    assert_pk_taken(a, 1, 2, "alice secret");
    assert_pk_taken(a, 2, 3, "alice secret");
    assert_pk_taken(a, 3, 4, "alice secret");
    ck_assert_int_eq(a->counts.invalid[INVALID_PK_TAKEN], 4);
    ck_assert_int_eq(a->counts.applied, 0);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT name FROM business.users WHERE id = '%s'", ROW_A), "alice secret");
    ck_assert_str_eq(tdb_snapshot(&T), before);
    assert_no_sidecar(U2, ROW_A);
    ck_assert_int_eq(owner_rows(U2), 0);
    ck_assert_str_eq(tdb_query(&T, "SELECT user_id FROM sync.row_owner WHERE pk_uuid = '%s'", ROW_A), U);

    /* alice still owns it: update, delete, and after the delete it stays hers */
    a = tdb_upload_ok(&T, U, D, batch(upd(2, "users", ROW_A, 1, "{\"name\":\"alice 2\"}"), del(3, "users", ROW_A, 2),
                                      NULL));
    assert_applied(a, 0, 2, 2);
    assert_applied(a, 1, 3, 3);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.users"), 0);
    a = tdb_upload_ok(&T, U2, D, batch(ins(5, "users", ROW_A, "{\"name\":\"bob takes over\"}"), NULL));
    assert_pk_taken(a, 0, 5, NULL);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.users"), 0);
    a = tdb_upload_ok(&T, U, D, batch(upd(4, "users", ROW_A, 3, "{\"name\":\"alice is back\"}"), NULL));
    assert_applied(a, 0, 4, 4);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT name FROM business.users WHERE id = '%s'", ROW_A), "alice is back");

    /* a mixed batch: bob's own rows go through beside the refused one */
    a = tdb_upload_ok(&T, U2, D, batch(ins(6, "users", ROW_B, "{\"name\":\"bob\"}"),
                                       upd(7, "users", ROW_A, 4, "{\"name\":\"bob\"}"),
                                       ins(8, "posts", ROW_C, "{\"author_id\":\"" ROW_B "\",\"title\":\"t\"}"), NULL));
    assert_applied(a, 0, 6, 1);
    assert_pk_taken(a, 1, 7, "alice is back");
    assert_applied(a, 2, 8, 1);
    tdb_answer_free(a);
    ck_assert_int_eq(owner_rows(U2), 2);
}
END_TEST

/* sql: functions are told the user (sixth argument) and are protected the same way; plugins too. */
START_TEST(test_owner_sql_and_plugin)
{
    open_owner_db();
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "notes", ROW_A, "{\"body\":\"alice note\"}"),
                                                         ins(2, "docs", ROW_B, "{\"title\":\"alice doc\"}"), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s|%%s|%%s', op, body, who) FROM business.notes_copy"
                                   " WHERE id = '%s'", ROW_A),
                     "INSERT|alice note|" U);
    char *before = tdb_snapshot(&T);
    a = tdb_upload_ok(&T, U2, D2, batch(ins(1, "notes", ROW_A, "{\"body\":\"bob\"}"), del(2, "notes", ROW_A, 1),
                                        ins(3, "docs", ROW_B, "{\"title\":\"bob\"}"), del(4, "docs", ROW_B, 1), NULL));
    assert_pk_taken(a, 0, 1, "alice note");
    assert_pk_taken(a, 1, 2, "alice note");
    assert_pk_taken(a, 2, 3, "alice doc");
    assert_pk_taken(a, 3, 4, "alice doc");
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s|%%s|%%s', op, body, who) FROM business.notes_copy"
                                   " WHERE id = '%s'", ROW_A),
                     "INSERT|alice note|" U);
    ck_assert_str_eq(tdb_query(&T, "SELECT doc ->> 'title' FROM business.docs WHERE id = '%s'", ROW_B), "alice doc");
    ck_assert_int_eq(owner_rows(U2), 0);

    /* bob's own note: the function sees bob */
    a = tdb_upload_ok(&T, U2, D2, batch(ins(5, "notes", ROW_C, "{\"body\":\"bob note\"}"), NULL));
    assert_applied(a, 0, 5, 1);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT who FROM business.notes_copy WHERE id = '%s'", ROW_C), U2);
}
END_TEST

/* A claim that nothing used is given back: a refused change leaves no trace, and the pk stays free. */
START_TEST(test_owner_unused_claim)
{
    open_owner_db();
    struct tdb_answer *a = tdb_upload_ok(&T, U, D,
                                         batch(ins(1, "posts", ROW_A, "{\"author_id\":\"" OTHER "\",\"title\":\"t\"}"),
                                               ins(2, "users", ROW_B, "{\"nom\":\"no name\"}"), NULL));
    assert_invalid(a, 0, 1, "fk_missing");
    assert_mat_error(a, 1, 2, 1, NULL);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.row_owner"), 0);
    a = tdb_upload_ok(&T, U2, D, batch(ins(1, "users", ROW_B, "{\"name\":\"bob\"}"), NULL));
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT user_id FROM sync.row_owner WHERE pk_uuid = '%s'", ROW_B), U2);
}
END_TEST

/* Tables kept only in the sidecar (materializer none) have no business row to protect: every
 * user has a namespace of its own there, as in the reference server. */
START_TEST(test_owner_none_tables_per_user)
{
    open_owner_db();
    const char *c = chg(1, "public", "scratch", "INSERT", ROW_A, 0, "{}");
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(c, NULL));
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U2, D, batch(c, NULL));
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.row_owner"), 0);
}
END_TEST

/* A database written before ownership existed (or while the table was materializer none): the
 * first user to have written the row owns it, and the other one is refused from then on. */
START_TEST(test_owner_adopts_existing_rows)
{
    open_owner_db();
    tdb_exec(&T, "INSERT INTO business.users VALUES ('%s', 'shared')", ROW_A);
    tdb_exec(&T, "INSERT INTO sync.sync_row_meta (user_id, schema_name, table_name, pk_uuid, server_version, deleted,"
                 " updated_at) VALUES ('%s', 'business', 'users', '%s', 1, false, now() - interval '1 day'),"
                 " ('%s', 'business', 'users', '%s', 1, false, now()),"
                 " ('%s', 'business', 'users', '%s', 2, false, now())",
             U2, ROW_A, U, ROW_A, U, ROW_B);
    tdb_exec(&T, "DELETE FROM sync.row_owner_tables");
    build_registry();
    ck_assert_str_eq(tdb_query(&T, "SELECT user_id FROM sync.row_owner WHERE pk_uuid = '%s'", ROW_A), U2);
    ck_assert_str_eq(tdb_query(&T, "SELECT user_id FROM sync.row_owner WHERE pk_uuid = '%s'", ROW_B), U);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(upd(1, "users", ROW_A, 1, "{\"name\":\"alice\"}"), NULL));
    assert_pk_taken(a, 0, 1, NULL);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U2, D, batch(upd(1, "users", ROW_A, 1, "{\"name\":\"bob\"}"), NULL));
    assert_applied(a, 0, 1, 2);
    tdb_answer_free(a);
    /* a second start adopts nothing again: the table is recorded */
    tdb_exec(&T, "DELETE FROM sync.row_owner WHERE pk_uuid = '%s'", ROW_B);
    build_registry();
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.row_owner WHERE pk_uuid = '%s'", ROW_B), 0);
    /* a table that went back to none is forgotten, and adopted again when it is materialized again */
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.row_owner_tables WHERE table_name = 'users'"), 1);
    T.tables[0].materializer = MATERIALIZER_NONE;
    build_registry();
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.row_owner_tables WHERE table_name = 'users'"), 0);
    T.tables[0].materializer = MATERIALIZER_GENERIC;
    build_registry();
    ck_assert_str_eq(tdb_query(&T, "SELECT user_id FROM sync.row_owner WHERE pk_uuid = '%s'", ROW_B), U);
}
END_TEST

/* Eight users race to create the same row: one gets it, everybody else is refused, and the
 * business row is the winner's. */
#define OWNER_RACERS 8

static int owner_racer(int i)
{
    build_registry();   /* the child's own connection: materializers prepared on it */
    char user[16], payload[64];
    snprintf(user, sizeof user, "racer%d", i);
    snprintf(payload, sizeof payload, "{\"name\":\"%s\"}", user);
    struct tdb_answer *a = tdb_upload(&T, user, D, batch(ins(1, "users", ROW_A, payload), NULL));
    int code = 9;
    if (a->outcome == SYNC_OK && a->json) {
        json_object *st = tdb_status(a, 0);
        if (strcmp(tdb_str(st, "status"), "applied") == 0)
            code = 0;
        else if (strcmp(tdb_str(st, "status"), "invalid") == 0 &&
                 strcmp(tdb_str(tdb_get(st, "invalid"), "reason"), "pk_taken") == 0)
            code = 1;
    } else {
        code = 10 + (int)a->outcome;
    }
    tdb_answer_free(a);
    return code;
}

START_TEST(test_owner_race)
{
    open_owner_db();
    for (int round = 0; round < 3; round++) {
        tdb_exec(&T, "TRUNCATE business.users CASCADE; TRUNCATE sync.row_owner, sync.sync_row_meta,"
                     " sync.sync_state, sync.server_change_log");
        int codes[OWNER_RACERS];
        race(OWNER_RACERS, owner_racer, codes);
        int winner = -1, refused = 0;
        for (int i = 0; i < OWNER_RACERS; i++) {
            int code = codes[i];
            ck_assert_msg(code == 0 || code == 1, "racer %d ended with code %d", i, code);
            if (code == 0) {
                ck_assert_msg(winner < 0, "two racers applied: %d and %d", winner, i);
                winner = i;
            } else {
                refused++;
            }
        }
        ck_assert_int_ge(winner, 0);
        ck_assert_int_eq(refused, OWNER_RACERS - 1);
        char name[16];
        snprintf(name, sizeof name, "racer%d", winner);
        ck_assert_str_eq(tdb_query(&T, "SELECT name FROM business.users WHERE id = '%s'", ROW_A), name);
        ck_assert_str_eq(tdb_query(&T, "SELECT user_id FROM sync.row_owner"), name);
        ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.sync_row_meta"), 1);
        ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log"), 1);
    }
}
END_TEST

/* ==================================================================================== main */

static Suite *materialize_suite(void)
{
    Suite *s = suite_create("materialize");
    TCase *tc = tcase("generic", TDB_OWN_DB);
    tcase_add_test(tc, test_generic_types);
    tcase_add_test(tc, test_generic_not_null_missing);
    tcase_add_test(tc, test_generic_duplicate_key_last_wins);
    tcase_add_test(tc, test_generic_update_delete);
    tcase_add_test(tc, test_generic_unconvertible);
    tcase_add_test(tc, test_generic_wide_table);
    suite_add_tcase(s, tc);

    tc = tcase("sql", TDB_OWN_DB);
    tcase_add_test(tc, test_sql_function_failure_and_client_retry);
    tcase_add_test(tc, test_sql_function_update_delete);
    tcase_add_test(tc, test_sql_batch_function);
    tcase_add_test(tc, test_sql_batch_only_function);
    suite_add_tcase(s, tc);

    tc = tcase("batch", TDB_OWN_DB);
    tcase_add_test(tc, test_chain_same_row_conflict);
    tcase_add_test(tc, test_chain_child_fk_missing);
    tcase_add_test(tc, test_chain_same_version_twice);
    tcase_add_test(tc, test_chain_delete_parent_immediate_fk);
    tcase_add_test(tc, test_chain_delete_parent_deferred_fk);
    tcase_add_test(tc, test_batch_nothing_to_materialize);
    suite_add_tcase(s, tc);

    tc = tcase("set", TDB_OWN_DB);
    tcase_add_test(tc, test_set_one_statement_per_table);
    tcase_add_test(tc, test_set_absent_columns_untouched);
    tcase_add_test(tc, test_set_failing_row_isolated);
    tcase_add_test(tc, test_set_delete_breaks_immediate_fk);
    tcase_add_test(tc, test_set_delete_breaks_deferred_fk);
    tcase_add_test(tc, test_set_parent_child_same_batch);
    suite_add_tcase(s, tc);

    tc = tcase("plugin", TDB_OWN_DB);
    tcase_add_test(tc, test_plugin_applied_and_failing);
    tcase_add_test(tc, test_plugin_batch);
    tcase_add_test(tc, test_plugin_abi1);
    suite_add_tcase(s, tc);

    tc = tcase("verify", TDB_OWN_DB);
    tcase_add_test(tc, test_verify);
    suite_add_tcase(s, tc);

    tc = tcase("ownership", TDB_OWN_DB);
    tcase_add_test(tc, test_owner_generic);
    tcase_add_test(tc, test_owner_sql_and_plugin);
    tcase_add_test(tc, test_owner_unused_claim);
    tcase_add_test(tc, test_owner_none_tables_per_user);
    tcase_add_test(tc, test_owner_adopts_existing_rows);
    tcase_add_test(tc, test_owner_race);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *admin_suite(void)
{
    Suite *s = suite_create("admin");
    TCase *tc = tcase("admin", TDB_OWN_DB);
    tcase_add_test(tc, test_admin_params);
    tcase_add_test(tc, test_admin_list);
    tcase_add_test(tc, test_admin_retry);
    tcase_add_test(tc, test_admin_retry_delete);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(materialize_suite(), admin_suite(), NULL);
}
