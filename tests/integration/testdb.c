/* Shared helpers of the integration tests: see testdb.h. */
#include "testdb.h"

#include "db/bootstrap.h"
#include "log.h"
#include "strbuf.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *const default_tables[] = { "business.users", "business.posts", "public.notes", NULL };

/* ------------------------------------------------------------------------- connections */

PGconn *tdb_connect_raw(const char *dbname)
{
    /* a later dbname keyword overrides the database DATABASE_URL names (libpq with
     * expand_dbname) */
    const char *url = getenv("DATABASE_URL");
    const char *keys[] = { "dbname", "dbname", NULL };
    const char *vals[] = { url ? url : "", dbname, NULL };
    return PQconnectdbParams(keys, vals, 1);
}

PGconn *tdb_connect(const char *dbname)
{
    PGconn *c = tdb_connect_raw(dbname);
    ck_assert_msg(c && PQstatus(c) == CONNECTION_OK, "connecting to database %s: %s", dbname,
                  c ? PQerrorMessage(c) : "out of memory");
    return c;
}

void tdb_conn_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    ck_assert_msg(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "SQL failed: %s\n  in: %.400s",
                  PQresultErrorMessage(r), sql);
    PQclear(r);
}

char *tdb_conn_query(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "query failed: %s\n  in: %.400s",
                  PQresultErrorMessage(r), sql);
    ck_assert_msg(PQntuples(r) == 1 && PQnfields(r) == 1,
                  "query returned %d rows of %d columns, expected one value\n  in: %.400s", PQntuples(r),
                  PQnfields(r), sql);
    char *v = strdup(PQgetisnull(r, 0, 0) ? "<null>" : PQgetvalue(r, 0, 0));
    ck_assert_ptr_nonnull(v);
    PQclear(r);
    return v;
}

/* The connections of struct testdb and of the administration: warnings and errors only, no
 * notices. */
static PGconn *connect_db(const char *dbname)
{
    PGconn *c = tdb_connect(dbname);
    PGresult *r = PQexec(c, "SET client_min_messages = warning");
    PQclear(r);
    return c;
}

void tdb_create_database(const char *name)
{
    PGconn *c = connect_db("postgres");
    char sql[160];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", name);
    tdb_conn_exec(c, sql);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    tdb_conn_exec(c, sql);
    PQfinish(c);
}

void tdb_drop_database(const char *name)
{
    PGconn *c = connect_db("postgres");
    char sql[160];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    tdb_conn_exec(c, sql);
    PQfinish(c);
}

static void fill_tables(struct testdb *t, const char *const *tables)
{
    for (int i = 0; i < t->cfg.n_tables; i++) {
        free(t->tables[i].schema);
        free(t->tables[i].name);
    }
    memset(t->tables, 0, sizeof t->tables);
    int n = 0;
    for (; tables[n]; n++) {
        ck_assert_int_lt(n, TDB_MAX_TABLES);
        const char *dot = strchr(tables[n], '.');
        ck_assert_msg(dot != NULL, "table %s needs a schema", tables[n]);
        t->tables[n].schema = strndup(tables[n], (size_t)(dot - tables[n]));
        t->tables[n].name = strdup(dot + 1);
        t->tables[n].materializer = MATERIALIZER_NONE;
        t->tables[n].materializer_arg = NULL;
        t->tables[n].line = n + 1;
    }
    t->cfg.tables = t->tables;
    t->cfg.n_tables = n;
}

static void prepare_all(PGconn *c)
{
    char err[512];
    sync_register_statements();
    ck_assert_msg(db_prepare_statements(c, err, sizeof err), "%s", err);
}

void tdb_child_connect(struct testdb *t)
{
    /* the parent's connection is abandoned, not closed: closing it here would end the parent's
     * session, which shares the socket */
    t->conn = connect_db(t->dbname);
    prepare_all(t->conn);
}

/* The registry as a worker builds it: from the configuration, then the foreign keys read from the
 * catalog on the connection (materializer none everywhere, so no materializer is loaded). */
static void init_schema(struct testdb *t)
{
    sync_schema_init(&t->schema, &t->cfg);
    char err[1024] = "";
    ck_assert_msg(sync_schema_discover(&t->schema, t->conn, err, sizeof err), "sync_schema_discover: %s", err);
}

void tdb_set_tables(struct testdb *t, const char *const *tables)
{
    sync_schema_free(&t->schema);
    fill_tables(t, tables);
    init_schema(t);
}

void tdb_open_empty(struct testdb *t)
{
    memset(t, 0, sizeof *t);
    t->arena = arena_new(8192);
    log_setup(LOG_WARN, LOG_FORMAT_TEXT);   /* no "applying migration" lines per test */

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    srand((unsigned)(ts.tv_nsec ^ (long)getpid()));
    snprintf(t->dbname, sizeof t->dbname, "t_%ld_%ld_%d", (long)getpid(), (long)(ts.tv_nsec % 1000000),
             rand() % 100000);
    tdb_create_database(t->dbname);

    t->conn = connect_db(t->dbname);
}

void tdb_open_tables(struct testdb *t, const char *const *tables)
{
    tdb_open_empty(t);
    char err[1024] = "";
    int applied = 0;
    ck_assert_msg(bootstrap_sidecar(t->conn, &applied, err, sizeof err), "bootstrap_sidecar: %s", err);
    prepare_all(t->conn);

    t->cfg.max_upload_changes = 100;
    t->cfg.max_payload_bytes = 1024 * 1024;
    t->cfg.max_body_bytes = 8 * 1024 * 1024;
    t->cfg.lock_timeout_ms = 5000;
    t->cfg.statement_timeout_ms = 30000;
    t->cfg.schema_version = 1;
    /* on, as shipped; OVERSYNCD_TEST_SET_MATERIALIZATION=off runs the suites change by change */
    t->cfg.set_materialization = getenv("OVERSYNCD_TEST_SET_MATERIALIZATION") == NULL ||
                                 strcmp(getenv("OVERSYNCD_TEST_SET_MATERIALIZATION"), "off") != 0;
    /* on, as shipped; OVERSYNCD_TEST_OPTIMISTIC_UPLOAD=off runs the suites the careful way only */
    t->cfg.optimistic_upload = getenv("OVERSYNCD_TEST_OPTIMISTIC_UPLOAD") == NULL ||
                               strcmp(getenv("OVERSYNCD_TEST_OPTIMISTIC_UPLOAD"), "off") != 0;
    fill_tables(t, tables);
    init_schema(t);
}

void tdb_open(struct testdb *t)
{
    tdb_open_tables(t, default_tables);
}

void tdb_close(struct testdb *t)
{
    if (t->conn)
        PQfinish(t->conn);
    t->conn = NULL;
    sync_schema_free(&t->schema);
    for (int i = 0; i < t->cfg.n_tables; i++) {
        free(t->tables[i].schema);
        free(t->tables[i].name);
    }
    t->cfg.n_tables = 0;
    if (t->dbname[0]) {
        tdb_drop_database(t->dbname);
        t->dbname[0] = '\0';
    }
    if (t->arena)
        arena_free(t->arena);
    t->arena = NULL;
}

struct identity tdb_who(const char *user, const char *device)
{
    struct identity who;
    memset(&who, 0, sizeof who);
    snprintf(who.user, sizeof who.user, "%s", user);
    snprintf(who.device, sizeof who.device, "%s", device);
    return who;
}

/* ---------------------------------------------------------------------------- sync calls */

struct sync_request tdb_request(struct testdb *t, const struct identity *who, arena_t *arena)
{
    return (struct sync_request){
        .cfg = &t->cfg, .schema = &t->schema, .conn = t->conn, .who = who, .arena = arena, .request_id = "test",
    };
}

static struct tdb_answer *finish(struct tdb_answer *a, strbuf_t *out)
{
    if (a->outcome == SYNC_OK) {
        a->body = strdup(sb_cstr(out));
        a->json = json_tokener_parse(a->body);
        ck_assert_msg(a->json != NULL, "the answer is not JSON: %s", a->body);
    }
    sb_free(out);
    return a;
}

struct tdb_answer *tdb_upload_len(struct testdb *t, const char *user, const char *device, const char *body,
                                  size_t len)
{
    struct tdb_answer *a = calloc(1, sizeof *a);
    ck_assert_ptr_nonnull(a);
    struct identity who = tdb_who(user, device);
    arena_t *arena = arena_new(16384);
    struct sync_request rq = tdb_request(t, &who, arena);
    strbuf_t out = STRBUF_INIT;
    a->outcome = sync_upload(&rq, body, len, &out, &a->counts, a->err, sizeof a->err);
    a->arena_bytes = arena_bytes_in_use(arena);
    arena_free(arena);
    ck_assert_msg(PQtransactionStatus(t->conn) == PQTRANS_IDLE,
                  "sync_upload left the connection inside a transaction");
    return finish(a, &out);
}

struct tdb_answer *tdb_upload(struct testdb *t, const char *user, const char *device, const char *body)
{
    return tdb_upload_len(t, user, device, body, strlen(body));
}

static const char *outcome_name(enum sync_outcome o)
{
    switch (o) {
    case SYNC_OK: return "SYNC_OK";
    case SYNC_BAD_REQUEST: return "SYNC_BAD_REQUEST";
    case SYNC_UNAVAILABLE: return "SYNC_UNAVAILABLE";
    case SYNC_FAILED: return "SYNC_FAILED";
    default: break;   /* outcomes added later print as a number */
    }
    static char buf[32];
    snprintf(buf, sizeof buf, "outcome %d", (int)o);
    return buf;
}

struct tdb_answer *tdb_upload_ok(struct testdb *t, const char *user, const char *device, const char *body)
{
    struct tdb_answer *a = tdb_upload(t, user, device, body);
    ck_assert_msg(a->outcome == SYNC_OK, "upload answered %s (%s) for %.300s", outcome_name(a->outcome),
                  a->err, body);
    return a;
}

/* The value of name in a query string: NULL when absent. */
static char *query_param(const char *query, const char *name)
{
    size_t nl = strlen(name);
    const char *p = query;
    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len >= nl && strncmp(p, name, nl) == 0 && (len == nl || p[nl] == '=')) {
            if (len == nl)
                return strdup("");
            return strndup(p + nl + 1, len - nl - 1);
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

bool tdb_download_params(const char *query, struct download_params *p, char *err, size_t errlen)
{
    /* params->schema points into our copy: keep it for the life of the process (tests are
     * short-lived forked children). */
    char *after = query_param(query, "after"), *limit = query_param(query, "limit"),
         *schema = query_param(query, "schema"), *self = query_param(query, "include_self"),
         *until = query_param(query, "until");
    bool ok = download_params_parse(after, limit, schema, self, until, p, err, errlen);
    free(after);
    free(limit);
    free(self);
    free(until);
    if (!ok || !p->schema)
        free(schema);
    return ok;
}

struct tdb_answer *tdb_download(struct testdb *t, const char *user, const char *device, const char *query)
{
    struct tdb_answer *a = calloc(1, sizeof *a);
    ck_assert_ptr_nonnull(a);
    struct download_params p;
    if (!tdb_download_params(query, &p, a->err, sizeof a->err)) {
        a->outcome = SYNC_BAD_REQUEST;
        return a;
    }
    struct identity who = tdb_who(user, device);
    arena_t *arena = arena_new(16384);
    struct sync_request rq = tdb_request(t, &who, arena);
    strbuf_t out = STRBUF_INIT;
    a->outcome = sync_download(&rq, &p, &out, &a->rows, a->err, sizeof a->err);
    arena_free(arena);
    return finish(a, &out);
}

struct tdb_answer *tdb_download_ok(struct testdb *t, const char *user, const char *device, const char *query)
{
    struct tdb_answer *a = tdb_download(t, user, device, query);
    ck_assert_msg(a->outcome == SYNC_OK, "download answered %s (%s) for %s", outcome_name(a->outcome), a->err,
                  query);
    return a;
}

void tdb_answer_free(struct tdb_answer *a)
{
    if (!a)
        return;
    if (a->json)
        json_object_put(a->json);
    free(a->body);
    free(a);
}

/* ----------------------------------------------------------------------------------- JSON */

bool tdb_has(json_object *obj, const char *key)
{
    return obj && json_object_is_type(obj, json_type_object) && json_object_object_get_ex(obj, key, NULL);
}

json_object *tdb_get(json_object *obj, const char *key)
{
    json_object *v = NULL;
    ck_assert_msg(obj && json_object_is_type(obj, json_type_object), "looking up \"%s\" in a non-object: %s",
                  key, obj ? json_object_to_json_string(obj) : "(null)");
    ck_assert_msg(json_object_object_get_ex(obj, key, &v), "no member \"%s\" in %s", key,
                  json_object_to_json_string(obj));
    return v;
}

static json_object *array_at(const struct tdb_answer *a, const char *key, int i)
{
    ck_assert_msg(a->json != NULL, "no JSON answer (outcome %s, err %s)", outcome_name(a->outcome), a->err);
    json_object *arr = tdb_get(a->json, key);
    ck_assert_msg(json_object_is_type(arr, json_type_array), "%s is not an array in %s", key, a->body);
    ck_assert_msg(i >= 0 && (size_t)i < json_object_array_length(arr), "%s[%d] missing in %s", key, i, a->body);
    return json_object_array_get_idx(arr, (size_t)i);
}

static int array_len(const struct tdb_answer *a, const char *key)
{
    ck_assert_msg(a->json != NULL, "no JSON answer (outcome %s, err %s)", outcome_name(a->outcome), a->err);
    json_object *arr = tdb_get(a->json, key);
    ck_assert_msg(json_object_is_type(arr, json_type_array), "%s is not an array in %s", key, a->body);
    return (int)json_object_array_length(arr);
}

json_object *tdb_status(const struct tdb_answer *a, int i)
{
    return array_at(a, "statuses", i);
}

int tdb_nstatuses(const struct tdb_answer *a)
{
    return array_len(a, "statuses");
}

json_object *tdb_change(const struct tdb_answer *a, int i)
{
    return array_at(a, "changes", i);
}

int tdb_nchanges(const struct tdb_answer *a)
{
    return array_len(a, "changes");
}

long long tdb_int(json_object *obj, const char *key)
{
    json_object *v = tdb_get(obj, key);
    ck_assert_msg(json_object_is_type(v, json_type_int), "\"%s\" is not a JSON integer in %s", key,
                  json_object_to_json_string(obj));
    return (long long)json_object_get_int64(v);
}

const char *tdb_str(json_object *obj, const char *key)
{
    json_object *v = tdb_get(obj, key);
    ck_assert_msg(json_object_is_type(v, json_type_string), "\"%s\" is not a JSON string in %s", key,
                  json_object_to_json_string(obj));
    return json_object_get_string(v);
}

bool tdb_bool(json_object *obj, const char *key)
{
    json_object *v = tdb_get(obj, key);
    ck_assert_msg(json_object_is_type(v, json_type_boolean), "\"%s\" is not a JSON boolean in %s", key,
                  json_object_to_json_string(obj));
    return json_object_get_boolean(v);
}

bool tdb_is_null(json_object *obj, const char *key)
{
    json_object *v = NULL;
    return tdb_has(obj, key) && json_object_object_get_ex(obj, key, &v) && v == NULL;
}

bool tdb_json_eq(json_object *obj, const char *json_text)
{
    json_object *want = json_tokener_parse(json_text);
    ck_assert_msg(want != NULL || strcmp(json_text, "null") == 0, "bad JSON in a test: %s", json_text);
    bool eq = json_object_equal(obj, want) != 0;
    json_object_put(want);
    return eq;
}

/* ------------------------------------------------------------------------------------ SQL */

char *tdb_printf(struct testdb *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = arena_vprintf(t->arena, fmt, ap);
    va_end(ap);
    return s;
}

void tdb_exec(struct testdb *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = arena_vprintf(t->arena, fmt, ap);
    va_end(ap);
    tdb_conn_exec(t->conn, sql);
}

static char *vquery(struct testdb *t, const char *fmt, va_list ap)
{
    char *sql = arena_vprintf(t->arena, fmt, ap);
    char *value = tdb_conn_query(t->conn, sql);
    char *v = arena_strdup(t->arena, value);
    free(value);
    return v;
}

char *tdb_query(struct testdb *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *v = vquery(t, fmt, ap);
    va_end(ap);
    return v;
}

long long tdb_query_ll(struct testdb *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *v = vquery(t, fmt, ap);
    va_end(ap);
    ck_assert_msg(strcmp(v, "<null>") != 0, "query returned NULL where a number was expected");
    return atoll(v);
}

char *tdb_lit(struct testdb *t, const char *s)
{
    strbuf_t sb = STRBUF_INIT;
    sb_putc(&sb, '\'');
    for (; *s; s++) {
        if (*s == '\'')
            sb_putc(&sb, '\'');
        sb_putc(&sb, *s);
    }
    sb_putc(&sb, '\'');
    char *o = arena_strdup(t->arena, sb.data);
    sb_free(&sb);
    return o;
}

static long long count_of(struct testdb *t, const char *table, const char *user)
{
    if (!user)
        return tdb_query_ll(t, "SELECT count(*) FROM sync.%s", table);
    return tdb_query_ll(t, "SELECT count(*) FROM sync.%s WHERE user_id = %s", table, tdb_lit(t, user));
}

long long tdb_log_count(struct testdb *t, const char *user)
{
    return count_of(t, "server_change_log", user);
}

long long tdb_meta_count(struct testdb *t, const char *user)
{
    return count_of(t, "sync_row_meta", user);
}

long long tdb_state_count(struct testdb *t, const char *user)
{
    return count_of(t, "sync_state", user);
}

long long tdb_log_count_pk(struct testdb *t, const char *user, const char *pk)
{
    return tdb_query_ll(t, "SELECT count(*) FROM sync.server_change_log WHERE user_id = %s AND pk_uuid = %s",
                        tdb_lit(t, user), tdb_lit(t, pk));
}

long long tdb_meta_count_pk(struct testdb *t, const char *user, const char *pk)
{
    return tdb_query_ll(t, "SELECT count(*) FROM sync.sync_row_meta WHERE user_id = %s AND pk_uuid = %s",
                        tdb_lit(t, user), tdb_lit(t, pk));
}

long long tdb_state_count_pk(struct testdb *t, const char *user, const char *pk)
{
    return tdb_query_ll(t, "SELECT count(*) FROM sync.sync_state WHERE user_id = %s AND pk_uuid = %s",
                        tdb_lit(t, user), tdb_lit(t, pk));
}

long long tdb_highest(struct testdb *t, const char *user)
{
    return tdb_query_ll(t, "SELECT coalesce(max(server_id), 0) FROM sync.server_change_log WHERE user_id = %s",
                        tdb_lit(t, user));
}

char *tdb_snapshot(struct testdb *t)
{
    return tdb_query(t,
        "SELECT md5("
        " coalesce((SELECT string_agg(format('%%s|%%s|%%s|%%s|%%s|%%s|%%s|%%s|%%s|%%s|%%s', server_id, user_id,"
        "   schema_name, table_name, op, pk_uuid, payload, source_id, source_change_id, server_version, ts),"
        "   E'\\n' ORDER BY server_id) FROM sync.server_change_log), '') || '#' ||"
        " coalesce((SELECT string_agg(format('%%s|%%s|%%s|%%s|%%s|%%s|%%s', user_id, schema_name, table_name,"
        "   pk_uuid, server_version, deleted, updated_at),"
        "   E'\\n' ORDER BY user_id, schema_name, table_name, pk_uuid) FROM sync.sync_row_meta), '') || '#' ||"
        " coalesce((SELECT string_agg(format('%%s|%%s|%%s|%%s|%%s', user_id, schema_name, table_name, pk_uuid,"
        "   payload), E'\\n' ORDER BY user_id, schema_name, table_name, pk_uuid) FROM sync.sync_state), '') || '#' ||"
        " (SELECT count(*) FROM sync.materialize_failures))");
}

char *tdb_batch(struct testdb *t, const char *first, ...)
{
    strbuf_t sb = STRBUF_INIT;
    sb_puts(&sb, "{\"last_server_seq_seen\":0,\"changes\":[");
    va_list ap;
    va_start(ap, first);
    bool more = false;
    for (const char *c = first; c; c = va_arg(ap, const char *)) {
        if (more)
            sb_putc(&sb, ',');
        more = true;
        sb_puts(&sb, c);
    }
    va_end(ap);
    sb_puts(&sb, "]}");
    char *s = tdb_printf(t, "%s", sb.data);
    sb_free(&sb);
    return s;
}

/* -------------------------------------------------------------------- the suites' vocabulary */

struct testdb T;

static void open_default(void)
{
    tdb_open(&T);
}

static void zero(void)
{
    memset(&T, 0, sizeof T);
}

static void close_opened(void)
{
    if (T.dbname[0])
        tdb_close(&T);
}

TCase *tcase(const char *name, enum tdb_fixture fixture)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 60);
    if (fixture == TDB_DEFAULT_DB)
        tcase_add_checked_fixture(tc, open_default, close_opened);
    else if (fixture == TDB_OWN_DB)
        tcase_add_checked_fixture(tc, zero, close_opened);
    return tc;
}

char *chg(long long scid, const char *schema, const char *table, const char *op, const char *pk, long long sv,
          const char *payload)
{
    strbuf_t sb = STRBUF_INIT;
    sb_printf(&sb, "{\"source_change_id\":%lld,\"schema\":\"%s\",\"table\":\"%s\",\"op\":\"%s\"", scid, schema,
              table, op);
    if (pk)
        sb_printf(&sb, ",\"pk\":\"%s\"", pk);
    sb_printf(&sb, ",\"server_version\":%lld", sv);
    if (payload)
        sb_printf(&sb, ",\"payload\":%s", payload);
    sb_putc(&sb, '}');
    char *s = tdb_printf(&T, "%s", sb.data);
    sb_free(&sb);
    return s;
}

char *ins(long long scid, const char *table, const char *pk, const char *payload)
{
    return chg(scid, "business", table, "INSERT", pk, 0, payload);
}

char *upd(long long scid, const char *table, const char *pk, long long sv, const char *payload)
{
    return chg(scid, "business", table, "UPDATE", pk, sv, payload);
}

char *del(long long scid, const char *table, const char *pk, long long sv)
{
    return chg(scid, "business", table, "DELETE", pk, sv, NULL);
}

json_object *status_at(const struct tdb_answer *a, int i, long long scid)
{
    json_object *st = tdb_status(a, i);
    ck_assert_msg(tdb_int(st, "source_change_id") == scid, "statuses[%d] has scid %lld, expected %lld: %s", i,
                  tdb_int(st, "source_change_id"), scid, a->body);
    return st;
}

void assert_applied(const struct tdb_answer *a, int i, long long scid, long long version)
{
    json_object *st = status_at(a, i, scid);
    ck_assert_msg(strcmp(tdb_str(st, "status"), "applied") == 0, "statuses[%d] (scid %lld) is not applied: %s", i,
                  scid, a->body);
    if (version > 0)
        ck_assert_msg(tdb_has(st, "new_server_version") && tdb_int(st, "new_server_version") == version,
                      "statuses[%d] must be applied with new_server_version %lld: %s", i, version, a->body);
    else
        ck_assert_msg(!tdb_has(st, "new_server_version"),
                      "statuses[%d] must be applied without new_server_version (idempotent): %s", i, a->body);
}

void assert_idempotent(const struct tdb_answer *a, int i, long long scid)
{
    assert_applied(a, i, scid, 0);
}

json_object *assert_invalid(const struct tdb_answer *a, int i, long long scid, const char *reason)
{
    json_object *st = status_at(a, i, scid);
    ck_assert_msg(strcmp(tdb_str(st, "status"), "invalid") == 0, "statuses[%d] (scid %lld) is not invalid: %s", i,
                  scid, a->body);
    ck_assert_msg(!tdb_has(st, "new_server_version"), "an invalid status carries no version: %s", a->body);
    json_object *inv = tdb_get(st, "invalid");
    ck_assert_msg(strcmp(tdb_str(inv, "reason"), reason) == 0, "statuses[%d] (scid %lld) reason %s, expected %s: %s",
                  i, scid, tdb_str(inv, "reason"), reason, a->body);
    return st;
}

json_object *assert_conflict(const struct tdb_answer *a, int i, long long scid, const char *schema,
                             const char *table, const char *pk, long long version, bool deleted,
                             const char *payload_json)
{
    json_object *st = status_at(a, i, scid);
    ck_assert_msg(strcmp(tdb_str(st, "status"), "conflict") == 0, "statuses[%d] (scid %lld) is not a conflict: %s",
                  i, scid, a->body);
    ck_assert_msg(!tdb_has(st, "new_server_version"), "a conflict carries no new_server_version: %s", a->body);
    json_object *row = tdb_get(st, "server_row");
    if (schema)
        ck_assert_str_eq(tdb_str(row, "schema_name"), schema);
    if (table)
        ck_assert_str_eq(tdb_str(row, "table_name"), table);
    if (pk)
        ck_assert_str_eq(tdb_str(row, "id"), pk);
    ck_assert_msg(tdb_int(row, "server_version") == version, "server_row.server_version = %lld, expected %lld: %s",
                  tdb_int(row, "server_version"), version, a->body);
    ck_assert_msg(tdb_bool(row, "deleted") == deleted, "server_row.deleted should be %s: %s",
                  deleted ? "true" : "false", a->body);
    ck_assert_msg(tdb_has(row, "payload"), "server_row without payload: %s", a->body);
    if (payload_json)
        ck_assert_msg(tdb_json_eq(tdb_get(row, "payload"), payload_json), "server_row.payload must be %s: %s",
                      payload_json, a->body);
    return row;
}

long long meta_version(const char *user, const char *schema, const char *table, const char *pk)
{
    const char *which = schema ? tdb_printf(&T, " AND schema_name = %s AND table_name = %s", tdb_lit(&T, schema),
                                            tdb_lit(&T, table))
                               : "";
    return tdb_query_ll(&T,
                        "SELECT coalesce((SELECT server_version FROM sync.sync_row_meta WHERE user_id = %s%s"
                        " AND pk_uuid = %s), -1)",
                        tdb_lit(&T, user), which, tdb_lit(&T, pk));
}

void assert_no_sidecar(const char *user, const char *pk)
{
    ck_assert_int_eq(tdb_log_count_pk(&T, user, pk), 0);
    ck_assert_int_eq(tdb_meta_count_pk(&T, user, pk), 0);
    ck_assert_int_eq(tdb_state_count_pk(&T, user, pk), 0);
}

void race_start(int n, int (*body)(int), pid_t pids[])
{
    int gate[2];
    ck_assert_int_eq(pipe(gate), 0);
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            close(gate[1]);
            tdb_child_connect(&T);
            char ch;
            while (read(gate[0], &ch, 1) > 0)
                ;
            _exit(body(i));
        }
    }
    close(gate[0]);
    close(gate[1]);   /* everybody goes */
}

void race(int n, int (*body)(int), int codes[])
{
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    ck_assert_ptr_nonnull(pids);
    race_start(n, body, pids);
    for (int i = 0; i < n; i++) {
        int st = 0;
        ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
        codes[i] = WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
    }
    free(pids);
}
