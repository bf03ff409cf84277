/* oversyncd migrate-to-bundle (src/bundle/migrate.c) against a real PostgreSQL (tests/pg.sh).
 *
 * Every test builds a real upload-protocol database: the sidecar bootstrapped, materializers
 * generic (business.users, business.posts) and none (public.notes, text key), three users
 * uploading through sync_upload, with a foreign key, updates and deletes. Then it migrates with
 * a bundle-protocol configuration and checks what a bundle server needs: every live row in its
 * business table with its owner, the §5.3 shape, a layout bundle_bootstrap adopts, one bundle per
 * user consistent with row_state and its hash, the old sidecar kept as sync_upload_archive. Dry
 * runs and refusals are checked to write nothing (a fingerprint of every table, column,
 * constraint, index, sequence, function and row of the database); interrupted runs to resume. */
#include "testdb.h"
#include "../run_suites.h"

#include "bundle/migrate.h"
#include "bundle/schema.h"
#include "materialize/materialize.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALICE "alice"
#define BOB "bob"
#define CAROL "carol"
#define D "phone"

#define UA "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"   /* alice's user row */
#define UB "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"   /* bob's user row */
#define UC "cccccccc-cccc-4ccc-8ccc-cccccccccccc"   /* carol's, deleted */
#define P1 "11111111-1111-4111-8111-111111111111"   /* alice's post */
#define P2 "22222222-2222-4222-8222-222222222222"   /* bob's post, deleted */
#define P3 "33333333-3333-4333-8333-333333333333"   /* bob's post */
#define N1 "44444444-4444-4444-8444-444444444444"   /* a note key alice and bob both use */
#define N2 "55555555-5555-4555-8555-555555555555"   /* alice's note, deleted */
#define N3 "66666666-6666-4666-8666-666666666666"   /* carol's note */
#define P4 "77777777-7777-4777-8777-777777777777"   /* bob's post under alice's user */

static const char business_ddl[] =
    "CREATE SCHEMA business;"
    "CREATE TABLE business.users (id uuid PRIMARY KEY, name text NOT NULL, email text UNIQUE,"
    "  created_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE business.posts (id uuid PRIMARY KEY,"
    "  author_id uuid REFERENCES business.users (id) ON DELETE CASCADE, title text, data bytea);"
    "CREATE INDEX posts_author_idx ON business.posts (author_id);"
    "CREATE TABLE public.notes (id text PRIMARY KEY, body text, n integer NOT NULL DEFAULT 7);";

static const struct {
    const char *table;
    enum materializer_kind kind;
    const char *key;
} regs[] = {
    { "business.users", MATERIALIZER_GENERIC, "id" },
    { "business.posts", MATERIALIZER_GENERIC, "id" },
    { "public.notes", MATERIALIZER_NONE, "id" },
};
#define NREGS 3

/* The upload database: what app_init does for the registry, then the uploads. */
static void build_upload_db(void)
{
    const char *names[NREGS + 1];
    for (int i = 0; i < NREGS; i++)
        names[i] = regs[i].table;
    names[NREGS] = NULL;
    tdb_open_tables(&T, names);
    tdb_exec(&T, "%s", business_ddl);
    for (int i = 0; i < NREGS; i++)
        T.tables[i].materializer = regs[i].kind;
    sync_schema_free(&T.schema);
    sync_schema_init(&T.schema, &T.cfg);
    char err[1024] = "";
    for (int i = 0; i < T.schema.n_tables; i++) {
        struct sync_table *t = &T.schema.tables[i];
        t->mat = materializer_new(t->conf, err, sizeof err);
        ck_assert_msg(t->mat || t->conf->materializer == MATERIALIZER_NONE, "materializer_new: %s", err);
    }
    ck_assert_msg(sync_schema_discover(&T.schema, T.conn, err, sizeof err), "discover: %s", err);
    ck_assert_msg(sync_ownership_setup(&T.schema, T.conn, err, sizeof err), "ownership: %s", err);
    for (int i = 0; i < T.schema.n_tables; i++)
        if (T.schema.tables[i].mat)
            ck_assert_msg(materializer_connect(T.schema.tables[i].mat, T.conn, err, sizeof err), "connect: %s", err);

    struct tdb_answer *a;
    a = tdb_upload_ok(&T, ALICE, D,
                      batch(ins(1, "users", UA, "{\"name\":\"Alice\",\"email\":\"a@x\"}"),
                            ins(2, "posts", P1, "{\"author_id\":\"" UA "\",\"title\":\"hello\",\"data\":\"AAFoZWxsb/8=\"}"),
                            chg(3, "public", "notes", "INSERT", N1, 0, "{\"body\":\"alice's n1\",\"n\":1}"),
                            chg(4, "public", "notes", "INSERT", N2, 0, "{\"body\":\"gone\"}"), NULL));
    for (int i = 0; i < 4; i++)
        assert_applied(a, i, i + 1, 1);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, ALICE, D,
                      batch(upd(5, "users", UA, 1, "{\"name\":\"Alice B.\"}"),
                            chg(6, "public", "notes", "DELETE", N2, 1, NULL), NULL));
    assert_applied(a, 0, 5, 2);
    assert_applied(a, 1, 6, 2);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, BOB, D,
                      batch(ins(1, "users", UB, "{\"name\":\"Bob\"}"),
                            ins(2, "posts", P2, "{\"author_id\":\"" UB "\",\"title\":\"draft\"}"),
                            ins(3, "posts", P3, "{\"author_id\":\"" UB "\",\"title\":\"<bob> & co\"}"),
                            chg(4, "public", "notes", "INSERT", N1, 0, "{\"body\":\"bob's n1\"}"), NULL));
    for (int i = 0; i < 4; i++)
        assert_applied(a, i, i + 1, 1);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, BOB, D, batch(del(5, "posts", P2, 1), NULL));
    assert_applied(a, 0, 5, 2);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, CAROL, D,
                      batch(ins(1, "users", UC, "{\"name\":\"Carol\"}"),
                            chg(2, "public", "notes", "INSERT", N3, 0, "{\"body\":\"carol's\",\"n\":3}"), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, CAROL, D, batch(del(3, "users", UC, 1), NULL));
    assert_applied(a, 0, 3, 2);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.users"), 2);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM business.posts"), 2);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM public.notes"), 0);
}

/* --------------------------------------------------------------------- NEW.conf and runs */

static struct config newcfg;
static struct table_conf newtables[8];

static void new_conf(int extra, const char *const *extra_tables)
{
    memset(&newcfg, 0, sizeof newcfg);
    memset(newtables, 0, sizeof newtables);
    newcfg.protocol = PROTOCOL_BUNDLE;
    newcfg.path = "NEW.conf";
    int n = 0;
    for (int i = 0; i < NREGS; i++, n++) {
        const char *dot = strchr(regs[i].table, '.');
        newtables[n].schema = tdb_printf(&T, "%.*s", (int)(dot - regs[i].table), regs[i].table);
        newtables[n].name = tdb_printf(&T, "%s", dot + 1);
        newtables[n].sync_key = (char *)regs[i].key;
    }
    for (int i = 0; i < extra; i++, n++) {   /* "schema.table:key" */
        const char *s = extra_tables[i], *dot = strchr(s, '.'), *colon = strchr(s, ':');
        newtables[n].schema = tdb_printf(&T, "%.*s", (int)(dot - s), s);
        newtables[n].name = tdb_printf(&T, "%.*s", (int)(colon - dot - 1), dot + 1);
        newtables[n].sync_key = tdb_printf(&T, "%s", colon + 1);
    }
    newcfg.tables = newtables;
    newcfg.n_tables = n;
}

struct run {
    enum migrate_exit rc;
    char *out, *err;   /* live until tdb_close */
};

static char *slurp(FILE *f)
{
    fflush(f);
    long n = ftell(f);
    rewind(f);
    char *buf = calloc(1, (size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    char *s = tdb_printf(&T, "%s", buf);
    free(buf);
    return s;
}

static struct run migrate(bool dry, const char *stop)
{
    FILE *out = tmpfile(), *err = tmpfile();
    struct migrate_options o = { .dry_run = dry, .stop_after = stop };
    struct run r;
    r.rc = bundle_migrate(T.conn, &newcfg, &o, out, err);
    r.out = slurp(out);
    r.err = slurp(err);
    ck_assert_msg(PQtransactionStatus(T.conn) == PQTRANS_IDLE, "the migration left a transaction open");
    return r;
}

static void assert_rc(struct run r, enum migrate_exit rc)
{
    ck_assert_msg(r.rc == rc, "exit %d, expected %d; out:\n%s\nerr:\n%s", r.rc, rc, r.out, r.err);
}

static void assert_has(const char *text, const char *what)
{
    ck_assert_msg(strstr(text, what) != NULL, "\"%s\" not in:\n%s", what, text);
}

/* Everything a migration could write: schemas, every relation with its columns, constraints,
 * functions, triggers, and the contents of every table and sequence. */
static const char *fingerprint(void)
{
    return tdb_query(
        &T,
        "SELECT md5(string_agg(x, E'\\n' ORDER BY x)) FROM ("
        " SELECT 'ns ' || nspname AS x FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'"
        " UNION ALL"
        " SELECT 'rel ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text || ' '"
        "   || coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || a.attnotnull::text,"
        "                 ',' ORDER BY a.attnum) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0"
        "                 AND NOT a.attisdropped), '')"
        "   || CASE c.relkind WHEN 'r' THEN ' ' || md5(query_to_xml(format("
        "        'SELECT md5(coalesce(string_agg(t::text, '','' ORDER BY t::text), '''')) FROM %%s t', c.oid::regclass),"
        "        false, true, '')::text)"
        "     WHEN 'S' THEN ' ' || md5(query_to_xml(format('SELECT last_value, is_called FROM %%s', c.oid::regclass),"
        "        false, true, '')::text) ELSE '' END"
        "   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        "  WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"
        " UNION ALL"
        " SELECT 'con ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)"
        "   FROM pg_constraint WHERE connamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname ~ '^pg_'"
        "   OR nspname = 'information_schema')"
        " UNION ALL"
        " SELECT 'idx ' || pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid::regclass::text !~ '^pg_'"
        " UNION ALL"
        " SELECT 'fn ' || p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        "  WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"
        " UNION ALL"
        " SELECT 'tg ' || tgrelid::regclass || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal) s");
}

/* ------------------------------------------------------------------ the migrated database */

/* What every complete migration of build_upload_db() must give, however it got there. */
static void check_migrated(void)
{
    /* the business rows, each with its owner */
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(_sync_scope_id || ':' || id || ':' || name || ':' || "
                                   "coalesce(email, '-'), ' ' ORDER BY _sync_scope_id) FROM business.users"),
                     ALICE ":" UA ":Alice B.:a@x " BOB ":" UB ":Bob:-");
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(_sync_scope_id || ':' || id || ':' || author_id || ':' || title "
                                   "|| ':' || coalesce(encode(data, 'base64'), '-'), ' ' ORDER BY _sync_scope_id) "
                                   "FROM business.posts"),
                     ALICE ":" P1 ":" UA ":hello:AAFoZWxsb/8= " BOB ":" P3 ":" UB ":<bob> & co:-");
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(_sync_scope_id || ':' || id || ':' || body || ':' || n, ' ' "
                                   "ORDER BY _sync_scope_id) FROM public.notes"),
                     ALICE ":" N1 ":alice's n1:1 " BOB ":" N1 ":bob's n1:7 " CAROL ":" N3 ":carol's:3");

    /* the §5.3 shape */
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(conrelid::regclass || ' ' || conname || ' ' || "
                                   "pg_get_constraintdef(oid), '; ' ORDER BY conrelid::regclass::text, conname) "
                                   "FROM pg_constraint WHERE conrelid IN ('business.users'::regclass, "
                                   "'business.posts'::regclass, 'public.notes'::regclass) AND contype IN ('p','u','f')"),
                     "business.posts posts_author_id_fkey FOREIGN KEY (_sync_scope_id, author_id) REFERENCES "
                     "business.users(_sync_scope_id, id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED; "
                     "business.posts posts_pkey PRIMARY KEY (_sync_scope_id, id); "
                     "business.users users_email_key UNIQUE (_sync_scope_id, email); "
                     "business.users users_pkey PRIMARY KEY (_sync_scope_id, id); "
                     "notes notes_pkey PRIMARY KEY (_sync_scope_id, id)");
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(attrelid::regclass || ':' || attnotnull, ' ' ORDER BY attrelid::regclass::text) FROM "
                                   "pg_attribute WHERE attname = '_sync_scope_id' AND atttypid = 'text'::regtype "
                                   "AND attrelid IN ('business.users'::regclass, 'business.posts'::regclass, "
                                   "'public.notes'::regclass)"),
                     "business.posts:true business.users:true notes:true");

    /* the old sidecar, kept */
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync_upload_archive.sync_row_meta"), 10);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync_upload_archive.sync_row_meta WHERE deleted"), 3);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync_upload_archive.server_change_log"), 14);

    /* the layout: bundle_bootstrap adopts it and finds every trigger right */
    struct bundle_table bt[NREGS];
    for (int i = 0; i < NREGS; i++)
        bt[i] = (struct bundle_table){ newtables[i].schema, newtables[i].name, newtables[i].sync_key };
    struct bundle_catalog cat;
    char err[1024];
    ck_assert_msg(bundle_bootstrap(T.conn, bt, NREGS, &cat, err, sizeof err), "bundle_bootstrap: %s", err);
    ck_assert(!cat.created);
    ck_assert_int_eq(cat.triggers_installed, 0);
    bundle_catalog_free(&cat);

    /* one bundle per user with rows, consistent with row_state and the business rows */
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(u.user_id || ':' || u.next_bundle_seq || ':' || s.state_code || "
                                   "':' || s.initialized_by_source_id || ':' || b.bundle_seq || ':' || b.row_count || ':' "
                                   "|| b.source_id || ':' || b.source_bundle_id, ' ' ORDER BY u.user_id) "
                                   "FROM sync.user_state u JOIN sync.scope_state s USING (user_pk) "
                                   "JOIN sync.bundle_log b USING (user_pk)"),
                     ALICE ":2:2:oversyncd-migrate:1:3:oversyncd-migrate:1 " BOB
                          ":2:2:oversyncd-migrate:1:3:oversyncd-migrate:1 " CAROL
                          ":2:2:oversyncd-migrate:1:1:oversyncd-migrate:1");
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(u.user_id || ':' || s.source_id || ':' || s.state || ':' || "
                                   "s.max_committed_source_bundle_id, ' ' ORDER BY 1) FROM sync.source_state s "
                                   "JOIN sync.user_state u USING (user_pk)"),
                     ALICE ":oversyncd-migrate:active:1 " BOB ":oversyncd-migrate:active:1 " CAROL
                          ":oversyncd-migrate:active:1");
    /* row_state: exactly the live business rows, bundle 1, none deleted */
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.row_state WHERE bundle_seq = 1 AND NOT deleted"), 7);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.row_state"), 7);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.bundle_capture_stage"), 0);
    static const char *const tabs[NREGS][2] = { { "business.posts", "1" }, { "business.users", "2" },
                                                { "public.notes", "3" } };
    for (int i = 0; i < NREGS; i++) {
        const char *kb = strcmp(tabs[i][1], "3") == 0 ? "convert_to(t.id, 'UTF8')" : "uuid_send(t.id)";
        /* every business row has its row_state and its bundle row, whose payload is the row */
        ck_assert_int_eq(
            tdb_query_ll(&T,
                         "SELECT count(*) FROM %s t JOIN sync.user_state u ON u.user_id = t._sync_scope_id "
                         "JOIN sync.row_state rs ON rs.user_pk = u.user_pk AND rs.table_id = %s AND rs.key_bytes = %s "
                         "JOIN sync.bundle_rows br ON br.user_pk = u.user_pk AND br.bundle_seq = 1 "
                         " AND br.table_id = %s AND br.key_bytes = %s AND br.op_code = 1 "
                         "WHERE br.payload_wire::jsonb - 'data' = to_jsonb(t) - '_sync_scope_id' - 'data'",
                         tabs[i][0], tabs[i][1], kb, tabs[i][1], kb),
            tdb_query_ll(&T, "SELECT count(*) FROM %s", tabs[i][0]));
    }
    /* bytea in base64 on the wire */
    ck_assert_str_eq(tdb_query(&T, "SELECT br.payload_wire::jsonb ->> 'data' FROM sync.bundle_rows br "
                                   "WHERE br.table_id = 1 AND br.key_bytes = uuid_send('" P1 "')"),
                     "AAFoZWxsb/8=");
    /* bundle rows: parents first (users before posts), then by key; hash and byte count are the
     * canonical text's (§4.7) */
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(br.table_id::text, ',' ORDER BY br.row_ordinal) FROM "
                                   "sync.bundle_rows br JOIN sync.user_state u USING (user_pk) WHERE u.user_id = 'alice'"),
                     "2,1,3");
    ck_assert_int_eq(
        tdb_query_ll(&T,
                     "SELECT count(*) FROM sync.bundle_log b WHERE (encode(b.bundle_hash, 'hex'), b.byte_count) = ("
                     " SELECT h.bundle_hash, h.byte_count FROM oversyncd.bundle_hash(("
                     "  SELECT jsonb_agg(jsonb_build_object('schema', c.schema_name, 'table', c.table_name,"
                     "     'key', jsonb_build_object(c.sync_key_column, CASE WHEN c.sync_key_kind = 1 THEN"
                     "        encode(r.key_bytes, 'hex')::uuid::text ELSE convert_from(r.key_bytes, 'UTF8') END),"
                     "     'op', 'INSERT', 'row_version', r.bundle_seq, 'payload', r.payload_wire::jsonb)"
                     "     ORDER BY r.row_ordinal)"
                     "  FROM sync.bundle_rows r JOIN sync.table_catalog c USING (table_id)"
                     "  WHERE r.user_pk = b.user_pk AND r.bundle_seq = b.bundle_seq)) h)"),
        3);
    /* the progress record */
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(step || name, ',' ORDER BY step) FROM oversyncd.migrate_to_bundle"),
                     "1begin,2archive,3owners,4constraints,5rows,6sidecar,7bundles,8finish");
    /* writes outside bundle context are refused from now on */
    PGresult *r = PQexec(T.conn, "UPDATE business.users SET name = 'x'");
    ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
    PQclear(r);
}

/* ==================================================================== the happy path */

START_TEST(test_migrate)
{
    build_upload_db();
    new_conf(0, NULL);
    const char *archive = tdb_query(&T, "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM sync.sync_row_meta t");
    const char *log = tdb_query(&T, "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM sync.server_change_log t");
    struct run r = migrate(false, NULL);
    assert_rc(r, MIGRATE_OK);
    assert_has(r.out, "step 8 of 8 (finish) done");
    check_migrated();
    /* nothing of the old sidecar changed */
    ck_assert_str_eq(tdb_query(&T, "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM "
                                   "sync_upload_archive.sync_row_meta t"),
                     archive);
    ck_assert_str_eq(tdb_query(&T, "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM "
                                   "sync_upload_archive.server_change_log t"),
                     log);

    /* a second run is a no-op that says so */
    const char *before = fingerprint();
    r = migrate(false, NULL);
    assert_rc(r, MIGRATE_OK);
    assert_has(r.out, "was migrated to the bundle protocol on");
    assert_has(r.out, "nothing to do");
    r = migrate(true, NULL);
    assert_rc(r, MIGRATE_OK);
    assert_has(r.out, "nothing to do");
    ck_assert_str_eq(fingerprint(), before);
}
END_TEST

START_TEST(test_dry_run)
{
    build_upload_db();
    new_conf(0, NULL);
    const char *before = fingerprint();
    struct run r = migrate(true, NULL);
    assert_rc(r, MIGRATE_OK);
    ck_assert_str_eq(fingerprint(), before);
    assert_has(r.out, "dry run, nothing is written");
    assert_has(r.out, "business.users (sync key id uuid; materialized");
    assert_has(r.out, "rows per user: alice 1, bob 1 (2 row(s))");
    assert_has(r.out, "public.notes (sync key id text; materializer none");
    assert_has(r.out, "rows per user: alice 1, bob 1, carol 1 (3 row(s))");
    assert_has(r.out, "tombstones (deleted rows; no bundle, kept in the archive): 1");
    assert_has(r.out, "business.users: add column _sync_scope_id text NOT NULL");
    assert_has(r.out, "business.users: primary key users_pkey (id) becomes (_sync_scope_id, id)");
    assert_has(r.out, "business.users: unique users_email_key (email) becomes (_sync_scope_id, email)");
    assert_has(r.out, "public.notes: 3 row(s) inserted from the sidecar's after-images");
    assert_has(r.out, "business.posts: foreign key posts_author_id_fkey (author_id) -> business.users becomes "
                      "(_sync_scope_id, author_id) -> (_sync_scope_id, key) ON DELETE CASCADE DEFERRABLE");
    assert_has(r.out, "schema sync (the upload sidecar) would be renamed to sync_upload_archive");
    assert_has(r.out, "dry run OK");
    /* and then the real one goes through */
    assert_rc(migrate(false, NULL), MIGRATE_OK);
    check_migrated();
}
END_TEST

/* ==================================================================== resuming */

static const char *const stops[] = { "1", "2", "3", "4", "5", "6", "7:1", "7:2", "7" };

START_TEST(test_resume)
{
    build_upload_db();
    new_conf(0, NULL);
    struct run r = migrate(false, stops[_i]);
    assert_rc(r, MIGRATE_STOPPED);
    assert_has(r.out, "stopped");
    /* a dry run in between writes nothing and still tells what is left */
    const char *before = fingerprint();
    struct run d = migrate(true, NULL);
    assert_rc(d, MIGRATE_OK);
    assert_has(d.out, "steps done: 1..");
    ck_assert_str_eq(fingerprint(), before);
    /* a resume with other tables is refused */
    static const char *const extra[] = { "business.other:id" };
    tdb_exec(&T, "CREATE TABLE business.other (id uuid)");
    before = fingerprint();
    new_conf(1, extra);
    struct run bad = migrate(false, NULL);
    assert_rc(bad, MIGRATE_REFUSED);
    assert_has(bad.err, "was started for other registered tables");
    ck_assert_str_eq(fingerprint(), before);
    tdb_exec(&T, "DROP TABLE business.other");
    new_conf(0, NULL);
    r = migrate(false, NULL);
    assert_rc(r, MIGRATE_OK);
    assert_has(r.out, "resuming after step");
    check_migrated();
}
END_TEST

/* A run that fails in a step (here: a lock it cannot get in step 4) resumes once the cause is gone. */
START_TEST(test_resume_after_failure)
{
    build_upload_db();
    new_conf(0, NULL);
    assert_rc(migrate(false, "3"), MIGRATE_STOPPED);
    PGconn *other = tdb_connect(T.dbname);
    tdb_conn_exec(other, "BEGIN; LOCK TABLE public.notes IN SHARE MODE");
    tdb_exec(&T, "SET lock_timeout = '200ms'");
    struct run r = migrate(false, NULL);
    assert_rc(r, MIGRATE_REFUSED);
    assert_has(r.err, "step 4 (constraints) failed");
    assert_has(r.err, "run the command again to resume");
    tdb_conn_exec(other, "ROLLBACK");
    PQfinish(other);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT max(step) FROM oversyncd.migrate_to_bundle"), 3);
    assert_rc(migrate(false, NULL), MIGRATE_OK);
    check_migrated();
}
END_TEST

/* ==================================================================== refusals */

/* Runs the migration expecting a refusal naming want, and that nothing was written. */
static void assert_refused(const char *want)
{
    const char *before = fingerprint();
    struct run r = migrate(false, NULL);
    assert_rc(r, MIGRATE_REFUSED);
    assert_has(r.err, want);
    ck_assert_str_eq(fingerprint(), before);
    r = migrate(true, NULL);
    assert_rc(r, MIGRATE_REFUSED);
    assert_has(r.err, want);
    ck_assert_str_eq(fingerprint(), before);
}

START_TEST(test_refuse_upload_conf)
{
    build_upload_db();
    new_conf(0, NULL);
    newcfg.protocol = PROTOCOL_UPLOAD;
    assert_refused("NEW.conf is not a bundle-protocol configuration");
}
END_TEST

START_TEST(test_refuse_not_upload_db)
{
    tdb_open_empty(&T);
    tdb_exec(&T, "%s", business_ddl);
    new_conf(0, NULL);
    assert_refused("it is not an upload-protocol database");
}
END_TEST

START_TEST(test_refuse_bundle_db)
{
    tdb_open_empty(&T);
    tdb_exec(&T, "CREATE TABLE public.notes (_sync_scope_id text NOT NULL, id text NOT NULL, PRIMARY KEY (_sync_scope_id, id))");
    struct bundle_table bt = { "public", "notes", "id" };
    struct bundle_catalog cat;
    char err[512];
    ck_assert_msg(bundle_bootstrap(T.conn, &bt, 1, &cat, err, sizeof err), "%s", err);
    bundle_catalog_free(&cat);
    new_conf(0, NULL);
    assert_refused("already holds the bundle protocol's sidecar");
}
END_TEST

START_TEST(test_refuse_missing_table)
{
    build_upload_db();
    static const char *const extra[] = { "business.missing:id" };
    new_conf(1, extra);
    assert_refused("registered table business.missing does not exist");
}
END_TEST

START_TEST(test_refuse_key_type)
{
    build_upload_db();
    tdb_exec(&T, "CREATE TABLE business.counters (id bigint PRIMARY KEY)");
    static const char *const extra[] = { "business.counters:id" };
    new_conf(1, extra);
    assert_refused("sync key column id is bigint; the bundle protocol allows only uuid and text");
}
END_TEST

START_TEST(test_refuse_no_owner)
{
    build_upload_db();
    tdb_exec(&T, "INSERT INTO business.users (id, name) VALUES ('" P4 "', 'nobody''s')");
    new_conf(0, NULL);
    assert_refused("1 row(s) of business.users have no owner");
}
END_TEST

START_TEST(test_refuse_shared_key)
{
    build_upload_db();
    /* as the reference server allowed: bob holds alice's key too */
    tdb_exec(&T, "INSERT INTO sync.sync_row_meta (user_id, schema_name, table_name, pk_uuid, server_version, deleted) "
                 "VALUES ('bob', 'business', 'users', '" UA "', 1, false);"
                 "INSERT INTO sync.sync_state (user_id, schema_name, table_name, pk_uuid, payload) "
                 "VALUES ('bob', 'business', 'users', '" UA "', '{\"name\":\"bob''s copy\"}')");
    new_conf(0, NULL);
    assert_refused("1 live sidecar row(s) of business.users share their key with another user's business row");
}
END_TEST

START_TEST(test_refuse_cross_user_fk)
{
    build_upload_db();
    /* foreign-key values are not owned in the upload protocol: bob's post under alice's user */
    struct tdb_answer *a = tdb_upload_ok(&T, BOB, D,
                                         batch(ins(6, "posts", P4, "{\"author_id\":\"" UA "\",\"title\":\"x\"}"), NULL));
    tdb_answer_free(a);
    new_conf(0, NULL);
    assert_refused("1 row(s) of business.posts reference through posts_author_id_fkey (author_id) a business.users "
                   "row that is not their own owner's");
}
END_TEST

START_TEST(test_refuse_unknown_field)
{
    build_upload_db();
    struct tdb_answer *a = tdb_upload_ok(
        &T, ALICE, D, batch(chg(7, "public", "notes", "INSERT", N2, 2, "{\"body\":\"b\",\"color\":\"red\"}"), NULL));
    assert_applied(a, 0, 7, 3);
    tdb_answer_free(a);
    new_conf(0, NULL);
    assert_refused("sidecar rows of public.notes carry the field(s) color, which are not columns of the table");
}
END_TEST

START_TEST(test_refuse_bad_value)
{
    build_upload_db();
    struct tdb_answer *a = tdb_upload_ok(
        &T, ALICE, D, batch(chg(7, "public", "notes", "INSERT", N2, 2, "{\"body\":\"b\",\"n\":\"many\"}"), NULL));
    tdb_answer_free(a);
    new_conf(0, NULL);
    assert_refused("the business tables cannot take the bundle protocol's shape: public.notes: invalid input syntax "
                   "for type integer: \"many\"");
}
END_TEST

START_TEST(test_refuse_unregistered_rows)
{
    build_upload_db();
    new_conf(0, NULL);
    newcfg.n_tables = 2;   /* public.notes left out */
    assert_refused("the sidecar holds 3 live row(s) of public.notes, which NEW.conf does not register");
}
END_TEST

START_TEST(test_refuse_unregistered_fk)
{
    build_upload_db();
    tdb_exec(&T, "CREATE TABLE public.audit (user_id uuid REFERENCES business.users (id))");
    new_conf(0, NULL);
    assert_refused("foreign key audit_user_id_fkey of the unregistered table public.audit references registered "
                   "table business.users");
}
END_TEST

START_TEST(test_refuse_partial_unique)
{
    build_upload_db();
    tdb_exec(&T, "CREATE UNIQUE INDEX users_name_idx ON business.users (name) WHERE email IS NOT NULL");
    new_conf(0, NULL);
    assert_refused("registered table business.users has unique index users_name_idx with a WHERE clause");
}
END_TEST

START_TEST(test_refuse_duplicate_in_user)
{
    build_upload_db();
    /* unique per user after the migration: two of alice's notes may not share a body */
    tdb_exec(&T, "CREATE UNIQUE INDEX notes_body_idx ON public.notes (body)");
    struct tdb_answer *a = tdb_upload_ok(
        &T, ALICE, D, batch(chg(7, "public", "notes", "INSERT", N2, 2, "{\"body\":\"alice's n1\"}"), NULL));
    tdb_answer_free(a);
    new_conf(0, NULL);
    assert_refused("the business tables cannot take the bundle protocol's shape");
}
END_TEST

static Suite *migrate_suite(void)
{
    Suite *s = suite_create("migrate-to-bundle");
    TCase *tc = tcase("migrate", TDB_OWN_DB);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_migrate);
    tcase_add_test(tc, test_dry_run);
    tcase_add_loop_test(tc, test_resume, 0, (int)(sizeof stops / sizeof stops[0]));
    tcase_add_test(tc, test_resume_after_failure);
    suite_add_tcase(s, tc);
    tc = tcase("refusals", TDB_OWN_DB);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_refuse_upload_conf);
    tcase_add_test(tc, test_refuse_not_upload_db);
    tcase_add_test(tc, test_refuse_bundle_db);
    tcase_add_test(tc, test_refuse_missing_table);
    tcase_add_test(tc, test_refuse_key_type);
    tcase_add_test(tc, test_refuse_no_owner);
    tcase_add_test(tc, test_refuse_shared_key);
    tcase_add_test(tc, test_refuse_cross_user_fk);
    tcase_add_test(tc, test_refuse_unknown_field);
    tcase_add_test(tc, test_refuse_bad_value);
    tcase_add_test(tc, test_refuse_unregistered_rows);
    tcase_add_test(tc, test_refuse_unregistered_fk);
    tcase_add_test(tc, test_refuse_partial_unique);
    tcase_add_test(tc, test_refuse_duplicate_in_user);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(migrate_suite(), NULL);
}
