/* See bundletest.h. */
#include "bundletest.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "log.h"
#include "strbuf.h"

struct config BT_CFG;
struct bundle_catalog BT_CATALOG;

/* sql/examples/bundle-business.sql without its psql lines, in schema business. */
static char *business_sql(void)
{
    const char *top = getenv("top_srcdir");
    char path[1024];
    snprintf(path, sizeof path, "%s/sql/examples/bundle-business.sql", top && *top ? top : ".");
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s (set top_srcdir)", path);
    strbuf_t sb = STRBUF_INIT;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '\\')
            continue;
        char *p;
        while ((p = strstr(line, ":\"business_schema\""))) {
            memmove(p + 8, p + 18, strlen(p + 18) + 1);
            memcpy(p, "business", 8);
        }
        sb_puts(&sb, line);
    }
    fclose(f);
    return sb.data;
}

static void setup(void)
{
    tdb_open_empty(&T);
    char *ddl = business_sql();
    tdb_conn_exec(T.conn, ddl);
    free(ddl);
    tdb_conn_exec(T.conn, "CREATE TABLE business.notes (_sync_scope_id text NOT NULL, slug text NOT NULL, "
                          "body text, PRIMARY KEY (_sync_scope_id, slug))");
    char err[1024];
    ck_assert_msg(config_load(&BT_CFG, NULL, err, sizeof err), "config_load: %s", err);
    BT_CFG.protocol = PROTOCOL_BUNDLE;
    free(BT_CFG.app_name);
    BT_CFG.app_name = strdup("bundle-test");
    static const struct bundle_table tables[] = {
        { "business", "users", "id" }, { "business", "posts", "id" }, { "business", "categories", "id" },
        { "business", "teams", "id" }, { "business", "team_members", "id" }, { "business", "files", "id" },
        { "business", "file_reviews", "id" }, { "business", "typed_rows", "id" }, { "business", "notes", "slug" },
    };
    ck_assert_msg(bundle_bootstrap(T.conn, tables, 9, &BT_CATALOG, err, sizeof err), "bundle_bootstrap: %s", err);
    ck_assert_int_eq(BT_CATALOG.n_tables, 9);
    ck_assert_str_eq(BT_CATALOG.tables[BT_NOTES - 1].table, "notes");
    ck_assert_str_eq(BT_CATALOG.tables[BT_USERS - 1].table, "users");
}

static void teardown(void)
{
    bundle_catalog_free(&BT_CATALOG);
    config_free(&BT_CFG);
    if (T.dbname[0])
        tdb_close(&T);
}

TCase *bt_tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    return tc;
}

void bt_reply_free(struct bt_reply *r)
{
    if (!r)
        return;
    free(r->error);
    free(r->body);
    if (r->json)
        json_object_put(r->json);
    free(r);
}

struct bundle_ctx bt_ctx(const char *user, const char *source, arena_t *arena)
{
    struct bundle_ctx c;
    memset(&c, 0, sizeof c);
    c.cfg = &BT_CFG;
    c.catalog = &BT_CATALOG;
    c.conn = T.conn;
    c.arena = arena;
    c.user = user;
    c.source = source;
    c.request_id = "test";
    c.inflight = 1;
    return c;
}

struct bt_reply *bt_capture(const struct bundle_reply *r)
{
    ck_assert_int_eq(PQtransactionStatus(T.conn), PQTRANS_IDLE);
    struct bt_reply *out = calloc(1, sizeof *out);
    out->status = r->status;
    out->error = r->error ? strdup(r->error) : NULL;
    out->body = strndup(r->body.data ? r->body.data : "", r->body.len);
    if (r->body.len) {
        ck_assert_msg(r->body.data[r->body.len - 1] == '\n', "the body ends with a newline: %s", out->body);
        out->json = json_tokener_parse(out->body);
        ck_assert_msg(out->json != NULL, "the body is JSON: %s", out->body);
    } else {
        ck_assert_int_eq(r->status, 204);
    }
    if (r->error) {
        json_object *v;
        ck_assert_msg(json_object_object_get_ex(out->json, "error", &v) &&
                          strcmp(json_object_get_string(v), r->error) == 0,
                      "error member equals the code: %s", out->body);
        ck_assert_msg(json_object_object_get_ex(out->json, "message", &v), "a message: %s", out->body);
    }
    return out;
}

#define CALL(user, source, call)                                                                   \
    do {                                                                                           \
        arena_t *a = arena_new(0);                                                                 \
        struct bundle_ctx c = bt_ctx(user, source, a);                                             \
        struct bundle_reply r;                                                                     \
        bundle_reply_init(&r, a);                                                                  \
        call;                                                                                      \
        out = bt_capture(&r);                                                                      \
        arena_free(a);                                                                             \
    } while (0)

struct bt_reply *bt_connect(const char *user, const char *source, const char *body)
{
    struct bt_reply *out;
    CALL(user, source, bundle_connect(&c, body, body ? strlen(body) : 0, &r));
    return out;
}

struct bt_reply *bt_capabilities(const char *user, const char *source)
{
    struct bt_reply *out;
    CALL(user, source, bundle_capabilities(&c, c.cfg->bundle_watch, &r));
    return out;
}

struct bt_reply *bt_status(bool health)
{
    struct bt_reply *out;
    CALL(NULL, NULL, bundle_status(&c, health, false, &r));
    return out;
}

struct bt_reply *bt_push_create(const char *user, const char *source, const char *body)
{
    struct bt_reply *out;
    CALL(user, source, bundle_push_create(&c, body, body ? strlen(body) : 0, &r));
    return out;
}

struct bt_reply *bt_push_chunk(const char *user, const char *source, const char *push_id, const char *body)
{
    struct bt_reply *out;
    CALL(user, source, bundle_push_chunk(&c, push_id, body, body ? strlen(body) : 0, &r));
    return out;
}

struct bt_reply *bt_push_commit(const char *user, const char *source, const char *push_id)
{
    struct bt_reply *out;
    CALL(user, source, bundle_push_commit(&c, push_id, &r));
    return out;
}

struct bt_reply *bt_push_delete(const char *user, const char *source, const char *push_id)
{
    struct bt_reply *out;
    CALL(user, source, bundle_push_delete(&c, push_id, &r));
    return out;
}

struct bt_reply *bt_committed_rows(const char *user, const char *source, const char *bundle_seq,
                                   const char *after_row_ordinal, const char *max_rows)
{
    struct bt_reply *out;
    CALL(user, source, bundle_committed_rows(&c, bundle_seq, after_row_ordinal, max_rows, &r));
    return out;
}

struct bt_reply *bt_pull(const char *user, const char *source, const char *after_bundle_seq, const char *max_bundles,
                         const char *target_bundle_seq)
{
    struct bt_reply *out;
    CALL(user, source, bundle_pull(&c, after_bundle_seq, max_bundles, target_bundle_seq, &r));
    return out;
}

struct bt_reply *bt_snapshot_create(const char *user, const char *source, const char *body)
{
    struct bt_reply *out;
    CALL(user, source, bundle_snapshot_create(&c, body, body ? strlen(body) : 0, &r));
    return out;
}

struct bt_reply *bt_snapshot_chunk(const char *user, const char *source, const char *snapshot_id,
                                   const char *after_row_ordinal, const char *max_rows)
{
    struct bt_reply *out;
    CALL(user, source, bundle_snapshot_chunk(&c, snapshot_id, after_row_ordinal, max_rows, &r));
    return out;
}

struct bt_reply *bt_snapshot_delete(const char *user, const char *source, const char *snapshot_id)
{
    struct bt_reply *out;
    CALL(user, source, bundle_snapshot_delete(&c, snapshot_id, &r));
    return out;
}

void bt_assert_error(const struct bt_reply *r, int status, const char *code, const char *message)
{
    ck_assert_msg(r->status == status && r->error && strcmp(r->error, code) == 0, "expected %d %s, got %d: %s",
                  status, code, r->status, r->body);
    if (message) {
        json_object *v;
        json_object_object_get_ex(r->json, "message", &v);
        ck_assert_str_eq(json_object_get_string(v), message);
    }
}

void bt_assert_ok(const struct bt_reply *r, int status)
{
    ck_assert_msg(r->status == status && !r->error, "expected %d, got %d: %s", status, r->status, r->body);
}

static char *vquery(const char *fmt, va_list ap)
{
    char *sql;
    ck_assert(vasprintf(&sql, fmt, ap) >= 0);
    char *v = tdb_conn_query(T.conn, sql);
    free(sql);
    return v;
}

long long bt_count(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *v = vquery(fmt, ap);
    va_end(ap);
    long long n = strtoll(v, NULL, 10);
    free(v);
    return n;
}

char *bt_query(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *v = vquery(fmt, ap);
    va_end(ap);
    return v;
}

void bt_exec(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql;
    ck_assert(vasprintf(&sql, fmt, ap) >= 0);
    va_end(ap);
    tdb_conn_exec(T.conn, sql);
    free(sql);
}
