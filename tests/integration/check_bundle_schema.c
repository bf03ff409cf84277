/* The bundle protocol's sidecar against a real PostgreSQL (tests/pg.sh): bundle_bootstrap
 * (src/bundle/schema.h) creating the layout of go-oversync 1f1118f, adopting it, refusing what it
 * cannot use, validating the registered tables and their foreign keys, installing the triggers;
 * and the two trigger functions at work (owner guard, capture).
 *
 * Every test works in a fresh, empty database of its own (tdb_open_empty of testdb.c): no
 * sidecar of the old protocol unless a test makes one. The registries are written as
 * "schema.table:key" strings. The messages are compared whole: they are the reference's
 * (SPEC-v2 §5), which clients, operators and the go-oversync library see. */
#include "testdb.h"
#include "../run_suites.h"

#include "bundle/schema.h"
#include "db/bootstrap.h"
#include "strbuf.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define ALICE_ROW "11111111-1111-4111-8111-111111111111"
#define ALICE_ROW_HEX "11111111111141118111111111111111"
#define BOB_ROW "22222222-2222-4222-8222-222222222222"
#define NEW_ROW "33333333-3333-4333-8333-333333333333"
#define NEW_ROW_HEX "33333333333343338333333333333333"
#define POST_ROW "44444444-4444-4444-8444-444444444444"
#define POST_ROW_HEX "44444444444444448444444444444444"
#define TEXT_KEY "caf\xc3\xa9-\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87"   /* café-ключ */
#define TEXT_KEY_HEX "636166c3a92dd0bad0bbd18ed187"

#define UNSUPPORTED_LAYOUT                                                                          \
    "bundle bootstrap: existing sync schema uses unsupported layout; drop and recreate the sync " \
    "schema for layout \"server_postgres_sync_v1\" or run `oversyncd migrate-to-bundle`"
#define CATALOG_HINT                                                                                \
    " (the registered tables differ from those this sync schema was laid out for; a table_id never " \
    "changes once assigned)"


static void setup(void)
{
    tdb_open_empty(&T);
}

static void teardown(void)
{
    if (T.dbname[0])
        tdb_close(&T);
}

/* -------------------------------------------------------------------------- registries */

/* A business schema of three registered tables: a uuid key, a scope-inclusive deferrable FK to
 * it, and a text key. */
static const char business_ddl[] =
    "CREATE SCHEMA business;"
    "CREATE TABLE business.users (_sync_scope_id text NOT NULL, id uuid NOT NULL, name text,"
    "  PRIMARY KEY (_sync_scope_id, id));"
    "CREATE TABLE business.posts (_sync_scope_id text NOT NULL, id uuid NOT NULL, title text, author_id uuid,"
    "  PRIMARY KEY (_sync_scope_id, id),"
    "  CONSTRAINT posts_author_fk FOREIGN KEY (_sync_scope_id, author_id)"
    "    REFERENCES business.users (_sync_scope_id, id) DEFERRABLE INITIALLY DEFERRED);"
    "CREATE TABLE business.notes (_sync_scope_id text NOT NULL, slug text NOT NULL, body text,"
    "  PRIMARY KEY (_sync_scope_id, slug));";

/* table_id: notes 1, posts 2, users 3 */
static const char *const business_registry[] = { "business.users:id", "business.posts:id", "business.notes:slug",
                                                 NULL };

#define MAX_SPECS 16
struct registry {
    struct bundle_table tables[MAX_SPECS];
    char text[MAX_SPECS][160];
    int n;
};

/* "schema.table:key" → {schema, table, key}; a missing ":key" means a NULL key column. */
static void registry_of(struct registry *r, const char *const *specs)
{
    memset(r, 0, sizeof *r);
    for (; specs[r->n]; r->n++) {
        ck_assert_int_lt(r->n, MAX_SPECS);
        char *s = r->text[r->n];
        snprintf(s, sizeof r->text[r->n], "%s", specs[r->n]);
        char *dot = strchr(s, '.'), *colon = strchr(s, ':');
        if (colon)
            *colon = '\0';
        if (dot) {
            *dot = '\0';
            r->tables[r->n].schema = s;
            r->tables[r->n].table = dot + 1;
        } else {
            r->tables[r->n].table = s;
        }
        r->tables[r->n].key_column = colon ? colon + 1 : NULL;
    }
}

static bool boot_on(PGconn *c, const char *const *specs, struct bundle_catalog *cat, char *err, size_t errlen)
{
    struct registry r;
    registry_of(&r, specs);
    return bundle_bootstrap(c, r.tables, r.n, cat, err, errlen);
}

static void boot_ok(const char *const *specs, struct bundle_catalog *cat)
{
    char err[2048] = "x";
    bool ok = boot_on(T.conn, specs, cat, err, sizeof err);
    ck_assert_msg(ok, "bundle_bootstrap failed: %s", err);
    ck_assert_msg(err[0] == '\0', "bundle_bootstrap succeeded but left an error text: %s", err);
    ck_assert_msg(PQtransactionStatus(T.conn) == PQTRANS_IDLE, "bundle_bootstrap left a transaction open");
}

static void boot_fails(const char *const *specs, const char *want)
{
    char err[2048] = "";
    struct bundle_catalog cat;
    memset(&cat, 0x5a, sizeof cat);
    bool ok = boot_on(T.conn, specs, &cat, err, sizeof err);
    ck_assert_msg(!ok, "bundle_bootstrap should have failed with: %s", want);
    ck_assert_str_eq(err, want);
    ck_assert_msg(cat.tables == NULL && cat.n_tables == 0 && !cat.created && cat.triggers_installed == 0,
                  "a failed bundle_bootstrap must leave an empty catalog");
    ck_assert_msg(PQtransactionStatus(T.conn) == PQTRANS_IDLE, "a failed bundle_bootstrap left a transaction open");
}

/* ---------------------------------------------------------------------------- SQL */

/* Runs sql (one or more statements, the last one failing) and checks the error's SQLSTATE and
 * primary message; rolls back whatever transaction the statements opened. */
static void sql_fails(const char *sql, const char *sqlstate, const char *message)
{
    PGresult *r = PQexec(T.conn, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_FATAL_ERROR, "should have failed with \"%s\": %.300s", message, sql);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *got_message = primary ? primary : "", *got_state = state ? state : "";
    ck_assert_str_eq(got_message, message);
    ck_assert_str_eq(got_state, sqlstate);
    PQclear(r);
    if (PQtransactionStatus(T.conn) != PQTRANS_IDLE)
        tdb_exec(&T, "ROLLBACK");
}

/* The statements that open a transaction in bundle context (transaction-local settings). */
static char *context(const char *user, long long user_pk)
{
    return tdb_printf(&T, "BEGIN; SELECT set_config('" BUNDLE_GUC_USER_ID "', '%s', true),"
                          " set_config('" BUNDLE_GUC_USER_PK "', '%lld', true);", user, user_pk);
}

static long long new_user(const char *user)
{
    return tdb_query_ll(&T, "INSERT INTO sync.user_state (user_id) VALUES ('%s') RETURNING user_pk", user);
}

/* Times a write was refused for want of bundle context (nextval calls of the sequence). */
static long long rejected_writes(void)
{
    return tdb_query_ll(&T, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END"
                            "  FROM sync.rejected_registered_write_seq");
}

/* The capture rows of the current transaction: "table_id op key_hex payload", in order. */
static const char *stage_of_this_transaction(long long user_pk)
{
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.bundle_capture_stage"
                                      " WHERE txid = txid_current() AND user_pk <> %lld", user_pk), 0);
    return tdb_query(&T, "SELECT coalesce(string_agg(format('%%s %%s %%s %%s', table_id, op_code,"
                         "  encode(key_bytes, 'hex'), coalesce(payload_db::text, 'NULL')), E'\\n'"
                         "  ORDER BY capture_ordinal), '')"
                         "  FROM sync.bundle_capture_stage WHERE txid = txid_current()");
}

static const char *triggers_of(const char *rel)
{
    return tdb_query(&T, "SELECT coalesce(string_agg(pg_get_triggerdef(oid), E'\\n' ORDER BY tgname), '')"
                         "  FROM pg_trigger WHERE tgrelid = '%s'::regclass AND NOT tgisinternal", rel);
}

static const char *catalog_rows(void)
{
    return tdb_query(&T, "SELECT string_agg(format('%%s %%s.%%s %%s %%s', table_id, schema_name, table_name,"
                         "  sync_key_column, sync_key_kind), E'\\n' ORDER BY table_id) FROM sync.table_catalog");
}

/* Names the first differing line, which a comparison of two long texts would otherwise bury. */
static void assert_same_text(const char *what, const char *want, const char *got)
{
    if (strcmp(want, got) == 0)
        return;
    const char *a = want, *b = got;
    int line = 1;
    while (*a && *b) {
        size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
        if (la != lb || memcmp(a, b, la) != 0)
            ck_abort_msg("%s differs at line %d:\n  expected: %.*s\n  got:      %.*s", what, line, (int)la, a,
                         (int)lb, b);
        a += la + (a[la] ? 1 : 0);
        b += lb + (b[lb] ? 1 : 0);
        line++;
    }
    ck_abort_msg("%s differs after line %d:\n  expected more: %.300s\n  got more:      %.300s", what, line, a, b);
}

/* ------------------------------------------------------------------- the layout itself */

/* Everything in schema sync that makes up the layout: tables and sequences; columns in order with
 * type, nullability, identity and default; constraints; indexes; sequence parameters; function
 * signatures and attributes (but for the server-write functions oversyncd adds). One sorted line
 * each, independent of object ids. */
static const char *layout_dump(void)
{
    return tdb_query(&T,
        "SELECT coalesce(string_agg(line, E'\\n' ORDER BY line), '') FROM ("
        "  SELECT format('rel %%s %%s', c.relname, CASE c.relkind WHEN 'r' THEN 'table' ELSE 'sequence' END) AS line"
        "    FROM pg_class c WHERE c.relnamespace = 'sync'::regnamespace AND c.relkind IN ('r', 'S')"
        "  UNION ALL"
        "  SELECT format('col %%s.%%s %%s %%s%%s%%s%%s', c.relname, to_char(a.attnum, 'FM00'), a.attname,"
        "                format_type(a.atttypid, a.atttypmod),"
        "                CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,"
        "                CASE a.attidentity WHEN 'a' THEN ' generated always as identity'"
        "                                   WHEN 'd' THEN ' generated by default as identity' ELSE '' END,"
        "                coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''))"
        "    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        "    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        "   WHERE c.relnamespace = 'sync'::regnamespace AND c.relkind = 'r' AND a.attnum > 0"
        "     AND NOT a.attisdropped"
        "  UNION ALL"
        "  SELECT format('con %%s.%%s %%s%%s', c.relname, k.conname, pg_get_constraintdef(k.oid),"
        "                CASE WHEN k.condeferrable THEN ' (deferrable)' ELSE '' END)"
        "    FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
        "   WHERE c.relnamespace = 'sync'::regnamespace"
        "  UNION ALL"
        "  SELECT format('idx %%s', pg_get_indexdef(i.indexrelid))"
        "    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
        "   WHERE c.relnamespace = 'sync'::regnamespace"
        "  UNION ALL"
        "  SELECT format('seq %%s %%s start %%s increment %%s min %%s max %%s cache %%s cycle %%s', c.relname,"
        "                format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax,"
        "                s.seqcache, s.seqcycle)"
        "    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid"
        "   WHERE c.relnamespace = 'sync'::regnamespace"
        "  UNION ALL"
        "  SELECT format('fn %%s returns %%s language %%s volatility %%s strict %%s security definer %%s'"
        "                || ' config %%s',"
        "                p.oid::regprocedure, format_type(p.prorettype, NULL), l.lanname, p.provolatile,"
        "                p.proisstrict, p.prosecdef, coalesce(array_to_string(p.proconfig, ','), '-'))"
        "    FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang"
        "   WHERE p.pronamespace = 'sync'::regnamespace"
        /* oversyncd's additions (sql/bundle/0003_finalize.sql, checked by check_bundle_finalize),
         * which the library ignores in a layout it adopts */
        "     AND p.proname NOT IN ('begin_server_bundle', 'commit_server_bundle')"
        ") lines");
}

/* The layout "server_postgres_sync_v1" as go-oversync 1f1118f creates it (schema_init.go; SPEC-v2
 * §5.1), in the form of layout_dump(): the same text was read from a database the library
 * bootstrapped. The PostgreSQL defaults made visible: PRIMARY KEY columns are NOT NULL; a primary
 * key is named <table>_pkey, an inline UNIQUE <table>_<column>_key, an inline CHECK
 * <table>_<column>_check, an inline REFERENCES <table>_<column>_fkey; an identity column's
 * sequence is <table>_<column>_seq; IN (...) reads back as = ANY (ARRAY[...]). */
static const char *const expected_layout[] = {
    "col bundle_capture_stage.01 capture_ordinal bigint not null generated always as identity",
    "col bundle_capture_stage.02 txid bigint not null",
    "col bundle_capture_stage.03 user_pk bigint not null",
    "col bundle_capture_stage.04 table_id integer not null",
    "col bundle_capture_stage.05 op_code smallint not null",
    "col bundle_capture_stage.06 key_bytes bytea not null",
    "col bundle_capture_stage.07 payload_db jsonb",
    "col bundle_log.01 user_pk bigint not null",
    "col bundle_log.02 bundle_seq bigint not null",
    "col bundle_log.03 source_id text not null",
    "col bundle_log.04 source_bundle_id bigint not null",
    "col bundle_log.05 row_count bigint not null",
    "col bundle_log.06 byte_count bigint not null",
    "col bundle_log.07 bundle_hash bytea not null",
    "col bundle_log.08 committed_at timestamp with time zone not null default now()",
    "col bundle_rows.01 user_pk bigint not null",
    "col bundle_rows.02 bundle_seq bigint not null",
    "col bundle_rows.03 row_ordinal bigint not null",
    "col bundle_rows.04 table_id integer not null",
    "col bundle_rows.05 key_bytes bytea not null",
    "col bundle_rows.06 op_code smallint not null",
    "col bundle_rows.07 payload_wire json",
    "col meta.01 singleton_key boolean not null",
    "col meta.02 protocol_label text not null default 'v1'::text",
    "col meta.03 layout_name text not null",
    "col push_session_rows.01 push_id uuid not null",
    "col push_session_rows.02 row_ordinal bigint not null",
    "col push_session_rows.03 table_id integer not null",
    "col push_session_rows.04 key_bytes bytea not null",
    "col push_session_rows.05 op_code smallint not null",
    "col push_session_rows.06 base_bundle_seq bigint not null",
    "col push_session_rows.07 payload_apply json",
    "col push_sessions.01 push_id uuid not null",
    "col push_sessions.02 user_pk bigint not null",
    "col push_sessions.03 source_id text not null",
    "col push_sessions.04 source_bundle_id bigint not null",
    "col push_sessions.05 planned_row_count bigint not null",
    "col push_sessions.06 next_expected_row_ordinal bigint not null default 0",
    "col push_sessions.07 initialization_id uuid",
    "col push_sessions.08 expires_at timestamp with time zone not null",
    "col row_state.01 user_pk bigint not null",
    "col row_state.02 table_id integer not null",
    "col row_state.03 key_bytes bytea not null",
    "col row_state.04 bundle_seq bigint not null",
    "col row_state.05 deleted boolean not null default false",
    "col scope_state.01 user_pk bigint not null",
    "col scope_state.02 state_code smallint not null",
    "col scope_state.03 initializer_source_id text",
    "col scope_state.04 initialization_id uuid",
    "col scope_state.05 lease_expires_at timestamp with time zone",
    "col scope_state.06 initialized_at timestamp with time zone",
    "col scope_state.07 initialized_by_source_id text",
    "col snapshot_session_rows.01 snapshot_id uuid not null",
    "col snapshot_session_rows.02 row_ordinal bigint not null",
    "col snapshot_session_rows.03 table_id integer not null",
    "col snapshot_session_rows.04 key_bytes bytea not null",
    "col snapshot_session_rows.05 bundle_seq bigint not null",
    "col snapshot_session_rows.06 payload_wire json not null",
    "col snapshot_sessions.01 snapshot_id uuid not null",
    "col snapshot_sessions.02 user_pk bigint not null",
    "col snapshot_sessions.03 snapshot_bundle_seq bigint not null",
    "col snapshot_sessions.04 row_count bigint not null default 0",
    "col snapshot_sessions.05 byte_count bigint not null default 0",
    "col snapshot_sessions.06 expires_at timestamp with time zone not null",
    "col source_state.01 user_pk bigint not null",
    "col source_state.02 source_id text not null",
    "col source_state.03 state text not null",
    "col source_state.04 max_committed_source_bundle_id bigint not null default 0",
    "col source_state.05 replaced_by_source_id text not null default ''::text",
    "col source_state.06 retirement_reason text not null default ''::text",
    "col table_catalog.01 table_id integer not null",
    "col table_catalog.02 schema_name text not null",
    "col table_catalog.03 table_name text not null",
    "col table_catalog.04 sync_key_column text not null",
    "col table_catalog.05 sync_key_kind smallint not null",
    "col user_state.01 user_pk bigint not null generated always as identity",
    "col user_state.02 user_id text not null",
    "col user_state.03 next_bundle_seq bigint not null default 1",
    "col user_state.04 retained_bundle_floor bigint not null default 0",
    "con bundle_capture_stage.bundle_capture_stage_op_code_chk CHECK ((op_code = ANY (ARRAY[1, 2, 3])))",
    "con bundle_capture_stage.bundle_capture_stage_payload_by_op_chk CHECK ((((op_code = 3) AND "
        "(payload_db IS NULL)) OR ((op_code = ANY (ARRAY[1, 2])) AND (payload_db IS NOT NULL))))",
    "con bundle_capture_stage.bundle_capture_stage_pkey PRIMARY KEY (capture_ordinal)",
    "con bundle_capture_stage.bundle_capture_stage_table_id_fkey FOREIGN KEY (table_id) REFERENCES "
        "sync.table_catalog(table_id)",
    "con bundle_capture_stage.bundle_capture_stage_user_pk_fkey FOREIGN KEY (user_pk) REFERENCES "
        "sync.user_state(user_pk) ON DELETE CASCADE",
    "con bundle_log.bundle_log_pkey PRIMARY KEY (user_pk, bundle_seq)",
    "con bundle_log.bundle_log_source_tuple_key UNIQUE (user_pk, source_id, source_bundle_id)",
    "con bundle_log.bundle_log_user_pk_fkey FOREIGN KEY (user_pk) REFERENCES sync.user_state(user_pk) "
        "ON DELETE CASCADE",
    "con bundle_rows.bundle_rows_bundle_fk FOREIGN KEY (user_pk, bundle_seq) REFERENCES "
        "sync.bundle_log(user_pk, bundle_seq) ON DELETE CASCADE",
    "con bundle_rows.bundle_rows_op_code_chk CHECK ((op_code = ANY (ARRAY[1, 2, 3])))",
    "con bundle_rows.bundle_rows_payload_by_op_chk CHECK ((((op_code = 3) AND (payload_wire IS NULL)) "
        "OR ((op_code = ANY (ARRAY[1, 2])) AND (payload_wire IS NOT NULL))))",
    "con bundle_rows.bundle_rows_pkey PRIMARY KEY (user_pk, bundle_seq, row_ordinal)",
    "con bundle_rows.bundle_rows_table_id_fkey FOREIGN KEY (table_id) REFERENCES "
        "sync.table_catalog(table_id)",
    "con bundle_rows.bundle_rows_user_pk_fkey FOREIGN KEY (user_pk) REFERENCES "
        "sync.user_state(user_pk) ON DELETE CASCADE",
    "con meta.meta_pkey PRIMARY KEY (singleton_key)",
    "con meta.meta_singleton_key_check CHECK (singleton_key)",
    "con push_session_rows.push_session_rows_op_code_chk CHECK ((op_code = ANY (ARRAY[1, 2, 3])))",
    "con push_session_rows.push_session_rows_payload_by_op_chk CHECK ((((op_code = 3) AND "
        "(payload_apply IS NULL)) OR ((op_code = ANY (ARRAY[1, 2])) AND (payload_apply IS NOT NULL))))",
    "con push_session_rows.push_session_rows_pkey PRIMARY KEY (push_id, row_ordinal)",
    "con push_session_rows.push_session_rows_push_id_fkey FOREIGN KEY (push_id) REFERENCES "
        "sync.push_sessions(push_id) ON DELETE CASCADE",
    "con push_session_rows.push_session_rows_table_id_fkey FOREIGN KEY (table_id) REFERENCES "
        "sync.table_catalog(table_id)",
    "con push_sessions.push_sessions_pkey PRIMARY KEY (push_id)",
    "con push_sessions.push_sessions_row_count_chk CHECK (((planned_row_count > 0) AND "
        "(next_expected_row_ordinal >= 0) AND (next_expected_row_ordinal <= planned_row_count)))",
    "con push_sessions.push_sessions_source_tuple_key UNIQUE (user_pk, source_id, source_bundle_id)",
    "con push_sessions.push_sessions_user_pk_fkey FOREIGN KEY (user_pk) REFERENCES "
        "sync.user_state(user_pk) ON DELETE CASCADE",
    "con row_state.row_state_pkey PRIMARY KEY (user_pk, table_id, key_bytes)",
    "con row_state.row_state_table_id_fkey FOREIGN KEY (table_id) REFERENCES sync.table_catalog(table_id)",
    "con row_state.row_state_user_pk_fkey FOREIGN KEY (user_pk) REFERENCES sync.user_state(user_pk) "
        "ON DELETE CASCADE",
    "con scope_state.scope_state_code_chk CHECK ((state_code = ANY (ARRAY[0, 1, 2])))",
    "con scope_state.scope_state_fields_chk CHECK ((((state_code = 0) AND (initializer_source_id IS "
        "NULL) AND (initialization_id IS NULL) AND (lease_expires_at IS NULL) AND (initialized_at IS "
        "NULL) AND (initialized_by_source_id IS NULL)) OR ((state_code = 1) AND (initializer_source_id IS "
        "NOT NULL) AND (initialization_id IS NOT NULL) AND (lease_expires_at IS NOT NULL) AND "
        "(initialized_at IS NULL) AND (initialized_by_source_id IS NULL)) OR ((state_code = 2) AND "
        "(initializer_source_id IS NULL) AND (initialization_id IS NULL) AND (lease_expires_at IS NULL) "
        "AND (initialized_at IS NOT NULL) AND (initialized_by_source_id IS NOT NULL))))",
    "con scope_state.scope_state_pkey PRIMARY KEY (user_pk)",
    "con scope_state.scope_state_user_pk_fkey FOREIGN KEY (user_pk) REFERENCES "
        "sync.user_state(user_pk) ON DELETE CASCADE",
    "con snapshot_session_rows.snapshot_session_rows_logical_row_key UNIQUE (snapshot_id, table_id, "
        "key_bytes)",
    "con snapshot_session_rows.snapshot_session_rows_pkey PRIMARY KEY (snapshot_id, row_ordinal)",
    "con snapshot_session_rows.snapshot_session_rows_snapshot_id_fkey FOREIGN KEY (snapshot_id) "
        "REFERENCES sync.snapshot_sessions(snapshot_id) ON DELETE CASCADE",
    "con snapshot_session_rows.snapshot_session_rows_table_id_fkey FOREIGN KEY (table_id) REFERENCES "
        "sync.table_catalog(table_id)",
    "con snapshot_sessions.snapshot_sessions_pkey PRIMARY KEY (snapshot_id)",
    "con snapshot_sessions.snapshot_sessions_user_pk_fkey FOREIGN KEY (user_pk) REFERENCES "
        "sync.user_state(user_pk) ON DELETE CASCADE",
    "con source_state.source_state_active_chk CHECK (((state <> 'active'::text) OR "
        "((replaced_by_source_id = ''::text) AND (retirement_reason = ''::text))))",
    "con source_state.source_state_max_committed_chk CHECK ((max_committed_source_bundle_id >= 0))",
    "con source_state.source_state_pkey PRIMARY KEY (user_pk, source_id)",
    "con source_state.source_state_reserved_chk CHECK (((state <> 'reserved'::text) OR "
        "((replaced_by_source_id = ''::text) AND (retirement_reason = ''::text) AND "
        "(max_committed_source_bundle_id = 0))))",
    "con source_state.source_state_retired_chk CHECK (((state <> 'retired'::text) OR "
        "((replaced_by_source_id <> ''::text) AND (retirement_reason <> ''::text))))",
    "con source_state.source_state_state_chk CHECK ((state = ANY (ARRAY['active'::text, "
        "'reserved'::text, 'retired'::text])))",
    "con source_state.source_state_user_pk_fkey FOREIGN KEY (user_pk) REFERENCES "
        "sync.user_state(user_pk) ON DELETE CASCADE",
    "con table_catalog.table_catalog_pkey PRIMARY KEY (table_id)",
    "con table_catalog.table_catalog_schema_table_key UNIQUE (schema_name, table_name)",
    "con table_catalog.table_catalog_sync_key_kind_chk CHECK ((sync_key_kind = ANY (ARRAY[1, 2])))",
    "con user_state.user_state_bundle_seq_chk CHECK ((next_bundle_seq >= 1))",
    "con user_state.user_state_pkey PRIMARY KEY (user_pk)",
    "con user_state.user_state_retained_floor_chk CHECK (((retained_bundle_floor >= 0) AND "
        "(retained_bundle_floor <= (next_bundle_seq - 1))))",
    "con user_state.user_state_user_id_key UNIQUE (user_id)",
    "fn sync.capture_registered_row_change() returns trigger language plpgsql volatility v strict f "
        "security definer f config -",
    "fn sync.enforce_registered_row_owner() returns trigger language plpgsql volatility v strict f "
        "security definer f config -",
    "idx CREATE INDEX bcs_tx_user_ordinal_idx ON sync.bundle_capture_stage USING btree (txid, "
        "user_pk, capture_ordinal)",
    "idx CREATE INDEX ps_expires_at_idx ON sync.push_sessions USING btree (expires_at)",
    "idx CREATE INDEX rs_user_live_snapshot_idx ON sync.row_state USING btree (user_pk, table_id, "
        "key_bytes) WHERE (deleted = false)",
    "idx CREATE INDEX ss_expires_at_idx ON sync.snapshot_sessions USING btree (expires_at)",
    "idx CREATE UNIQUE INDEX bundle_capture_stage_pkey ON sync.bundle_capture_stage USING btree "
        "(capture_ordinal)",
    "idx CREATE UNIQUE INDEX bundle_log_pkey ON sync.bundle_log USING btree (user_pk, bundle_seq)",
    "idx CREATE UNIQUE INDEX bundle_log_source_tuple_key ON sync.bundle_log USING btree (user_pk, "
        "source_id, source_bundle_id)",
    "idx CREATE UNIQUE INDEX bundle_rows_pkey ON sync.bundle_rows USING btree (user_pk, bundle_seq, "
        "row_ordinal)",
    "idx CREATE UNIQUE INDEX meta_pkey ON sync.meta USING btree (singleton_key)",
    "idx CREATE UNIQUE INDEX push_session_rows_pkey ON sync.push_session_rows USING btree (push_id, "
        "row_ordinal)",
    "idx CREATE UNIQUE INDEX push_sessions_pkey ON sync.push_sessions USING btree (push_id)",
    "idx CREATE UNIQUE INDEX push_sessions_source_tuple_key ON sync.push_sessions USING btree "
        "(user_pk, source_id, source_bundle_id)",
    "idx CREATE UNIQUE INDEX row_state_pkey ON sync.row_state USING btree (user_pk, table_id, key_bytes)",
    "idx CREATE UNIQUE INDEX scope_state_pkey ON sync.scope_state USING btree (user_pk)",
    "idx CREATE UNIQUE INDEX snapshot_session_rows_logical_row_key ON sync.snapshot_session_rows "
        "USING btree (snapshot_id, table_id, key_bytes)",
    "idx CREATE UNIQUE INDEX snapshot_session_rows_pkey ON sync.snapshot_session_rows USING btree "
        "(snapshot_id, row_ordinal)",
    "idx CREATE UNIQUE INDEX snapshot_sessions_pkey ON sync.snapshot_sessions USING btree (snapshot_id)",
    "idx CREATE UNIQUE INDEX source_state_pkey ON sync.source_state USING btree (user_pk, source_id)",
    "idx CREATE UNIQUE INDEX ssr_snapshot_table_key_idx ON sync.snapshot_session_rows USING btree "
        "(snapshot_id, table_id, key_bytes)",
    "idx CREATE UNIQUE INDEX table_catalog_pkey ON sync.table_catalog USING btree (table_id)",
    "idx CREATE UNIQUE INDEX table_catalog_schema_table_key ON sync.table_catalog USING btree "
        "(schema_name, table_name)",
    "idx CREATE UNIQUE INDEX user_state_pkey ON sync.user_state USING btree (user_pk)",
    "idx CREATE UNIQUE INDEX user_state_user_id_key ON sync.user_state USING btree (user_id)",
    "rel accepted_push_replay_seq sequence",
    "rel bundle_capture_stage table",
    "rel bundle_capture_stage_capture_ordinal_seq sequence",
    "rel bundle_log table",
    "rel bundle_rows table",
    "rel history_pruned_error_seq sequence",
    "rel meta table",
    "rel push_session_rows table",
    "rel push_sessions table",
    "rel rejected_registered_write_seq sequence",
    "rel row_state table",
    "rel scope_state table",
    "rel snapshot_session_rows table",
    "rel snapshot_sessions table",
    "rel source_state table",
    "rel table_catalog table",
    "rel user_state table",
    "rel user_state_user_pk_seq sequence",
    "seq accepted_push_replay_seq bigint start 1 increment 1 min 1 max 9223372036854775807 cache 1 cycle f",
    "seq bundle_capture_stage_capture_ordinal_seq bigint start 1 increment 1 min 1 max "
        "9223372036854775807 cache 1 cycle f",
    "seq history_pruned_error_seq bigint start 1 increment 1 min 1 max 9223372036854775807 cache 1 cycle f",
    "seq rejected_registered_write_seq bigint start 1 increment 1 min 1 max 9223372036854775807 cache "
        "1 cycle f",
    "seq user_state_user_pk_seq bigint start 1 increment 1 min 1 max 9223372036854775807 cache 1 cycle f",
};

static char *expected_layout_text(void)
{
    strbuf_t sb = STRBUF_INIT;
    for (size_t i = 0; i < sizeof expected_layout / sizeof expected_layout[0]; i++) {
        if (i)
            sb_putc(&sb, '\n');
        sb_puts(&sb, expected_layout[i]);
    }
    char *s = tdb_printf(&T, "%s", sb_cstr(&sb));
    sb_free(&sb);
    return s;
}

/* ------------------------------------------------------------------ create, then adopt */

START_TEST(test_embedded_layout)
{
    ck_assert_int_eq(n_bundle_layout_sql, 1);
    ck_assert_int_eq(bundle_layout_sql[0].version, 1);
    ck_assert_str_eq(bundle_layout_sql[0].name, "0001_layout.sql");
    ck_assert_ptr_nonnull(strstr(bundle_layout_sql[0].sql, "CREATE TABLE sync.meta ("));
}
END_TEST

START_TEST(test_fresh_bootstrap_creates_the_layout)
{
    tdb_exec(&T, "%s", business_ddl);
    struct bundle_catalog cat;
    boot_ok(business_registry, &cat);
    ck_assert(cat.created);
    ck_assert_int_eq(cat.triggers_installed, 3);

    assert_same_text("schema sync", expected_layout_text(), layout_dump());
    ck_assert_str_eq(tdb_query(&T, "SELECT format('%%s %%s %%s', singleton_key, protocol_label, layout_name)"
                                   "  FROM sync.meta"),
                     "t v1 server_postgres_sync_v1");
    ck_assert_str_eq(catalog_rows(), "1 business.notes slug 2\n"
                                     "2 business.posts id 1\n"
                                     "3 business.users id 1");
    /* every other table starts empty, every sequence unused */
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT (SELECT count(*) FROM sync.user_state) + (SELECT count(*) FROM"
                                      " sync.bundle_log) + (SELECT count(*) FROM sync.bundle_capture_stage)"),
                     0);
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(is_called::text, ',') FROM (SELECT is_called FROM"
                                   " sync.accepted_push_replay_seq UNION ALL SELECT is_called FROM"
                                   " sync.rejected_registered_write_seq UNION ALL SELECT is_called FROM"
                                   " sync.history_pruned_error_seq) s"),
                     "false,false,false");

    /* the catalog handed back */
    ck_assert_int_eq(cat.n_tables, 3);
    ck_assert_int_eq(cat.tables[0].table_id, 1);
    ck_assert_str_eq(cat.tables[0].schema, "business");
    ck_assert_str_eq(cat.tables[0].table, "notes");
    ck_assert_str_eq(cat.tables[0].key_column, "slug");
    ck_assert_int_eq(cat.tables[0].key_kind, BUNDLE_KEY_TEXT);
    ck_assert_int_eq(cat.tables[2].key_kind, BUNDLE_KEY_UUID);
    ck_assert_ptr_eq(bundle_catalog_find(&cat, "business", "users"), &cat.tables[2]);
    ck_assert_ptr_eq(bundle_catalog_find(&cat, "business", "posts"), &cat.tables[1]);
    ck_assert_ptr_null(bundle_catalog_find(&cat, "business", "comments"));
    ck_assert_ptr_null(bundle_catalog_find(&cat, "public", "users"));
    ck_assert_ptr_eq(bundle_catalog_get(&cat, 1), &cat.tables[0]);
    ck_assert_ptr_null(bundle_catalog_get(&cat, 0));
    ck_assert_ptr_null(bundle_catalog_get(&cat, 4));

    /* the triggers, exactly as the reference library creates them (bundle_capture.go) */
    ck_assert_str_eq(triggers_of("business.users"),
                     "CREATE TRIGGER oversync_bundle_capture_row AFTER INSERT OR DELETE OR UPDATE ON business.users"
                     " FOR EACH ROW EXECUTE FUNCTION sync.capture_registered_row_change('id', '1', '3')\n"
                     "CREATE TRIGGER oversync_bundle_owner_guard BEFORE INSERT OR DELETE OR UPDATE ON business.users"
                     " FOR EACH ROW EXECUTE FUNCTION sync.enforce_registered_row_owner()");
    ck_assert_str_eq(triggers_of("business.notes"),
                     "CREATE TRIGGER oversync_bundle_capture_row AFTER INSERT OR DELETE OR UPDATE ON business.notes"
                     " FOR EACH ROW EXECUTE FUNCTION sync.capture_registered_row_change('slug', '2', '1')\n"
                     "CREATE TRIGGER oversync_bundle_owner_guard BEFORE INSERT OR DELETE OR UPDATE ON business.notes"
                     " FOR EACH ROW EXECUTE FUNCTION sync.enforce_registered_row_owner()");
    bundle_catalog_free(&cat);
    ck_assert_ptr_null(cat.tables);
    ck_assert_int_eq(cat.n_tables, 0);
}
END_TEST

/* What a second bootstrap may not change: every object of schema sync and every trigger, down to
 * their object ids, and the marker rows. */
static const char *identity_of_everything(void)
{
    return tdb_query(&T,
        "SELECT md5(concat_ws('|',"
        " (SELECT string_agg(c.oid::text || c.relname, ',' ORDER BY c.oid) FROM pg_class c"
        "   WHERE c.relnamespace = 'sync'::regnamespace),"
        " (SELECT string_agg(p.oid::text || p.proname || md5(p.prosrc), ',' ORDER BY p.oid) FROM pg_proc p"
        "   WHERE p.pronamespace = 'sync'::regnamespace),"
        " (SELECT string_agg(t.oid::text || t.tgname || t.tgenabled::text, ',' ORDER BY t.oid) FROM pg_trigger t"
        "   WHERE NOT t.tgisinternal),"
        " (SELECT string_agg(m::text, ',') FROM sync.meta m),"
        " (SELECT string_agg(c::text, ',' ORDER BY table_id) FROM sync.table_catalog c)))");
}

START_TEST(test_second_bootstrap_adopts_and_changes_nothing)
{
    tdb_exec(&T, "%s", business_ddl);
    struct bundle_catalog first, second;
    boot_ok(business_registry, &first);
    const char *before = identity_of_everything();
    boot_ok(business_registry, &second);
    ck_assert(!second.created);
    ck_assert_int_eq(second.triggers_installed, 0);
    ck_assert_str_eq(identity_of_everything(), before);
    ck_assert_int_eq(second.n_tables, first.n_tables);
    ck_assert_mem_eq(second.tables, first.tables, (size_t)first.n_tables * sizeof *first.tables);

    /* the registry in another order, with blanks and capitals, is the same registry */
    static const char *const shuffled[] = { " Business . Notes:SLUG", "business.posts: id ", "BUSINESS.users:Id",
                                            NULL };
    struct bundle_catalog third;
    boot_ok(shuffled, &third);
    ck_assert_int_eq(third.triggers_installed, 0);
    ck_assert_mem_eq(third.tables, first.tables, (size_t)first.n_tables * sizeof *first.tables);
    ck_assert_str_eq(identity_of_everything(), before);
    bundle_catalog_free(&first);
    bundle_catalog_free(&second);
    bundle_catalog_free(&third);
}
END_TEST

START_TEST(test_tampered_triggers_are_reinstalled)
{
    tdb_exec(&T, "%s", business_ddl);
    struct bundle_catalog cat;
    boot_ok(business_registry, &cat);
    bundle_catalog_free(&cat);
    const char *users = triggers_of("business.users"), *posts = triggers_of("business.posts"),
               *notes = triggers_of("business.notes");

    tdb_exec(&T, "ALTER TABLE business.users DISABLE TRIGGER oversync_bundle_owner_guard;"
                 "DROP TRIGGER oversync_bundle_capture_row ON business.posts;"
                 "CREATE TRIGGER oversync_bundle_capture_row AFTER INSERT OR UPDATE OR DELETE ON business.posts"
                 "  FOR EACH ROW EXECUTE FUNCTION sync.capture_registered_row_change('id', '1', '9')");
    boot_ok(business_registry, &cat);
    ck_assert(!cat.created);
    ck_assert_int_eq(cat.triggers_installed, 2);
    ck_assert_str_eq(triggers_of("business.users"), users);
    ck_assert_str_eq(triggers_of("business.posts"), posts);
    ck_assert_str_eq(triggers_of("business.notes"), notes);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'oversync%%'"
                                      " AND tgenabled = 'O'"), 6);
    bundle_catalog_free(&cat);

    /* a statement-level trigger of the same name is not the capture trigger either */
    tdb_exec(&T, "DROP TRIGGER oversync_bundle_capture_row ON business.notes;"
                 "CREATE TRIGGER oversync_bundle_capture_row AFTER INSERT ON business.notes"
                 "  FOR EACH STATEMENT EXECUTE FUNCTION sync.capture_registered_row_change('slug', '2', '1')");
    boot_ok(business_registry, &cat);
    ck_assert_int_eq(cat.triggers_installed, 1);
    ck_assert_str_eq(triggers_of("business.notes"), notes);
    bundle_catalog_free(&cat);
}
END_TEST

START_TEST(test_catalog_numbering_is_byte_order)
{
    tdb_exec(&T, "CREATE SCHEMA app; CREATE SCHEMA app2; CREATE SCHEMA app_2; CREATE SCHEMA z;"
                 "CREATE TABLE z.last (_sync_scope_id text, id uuid, PRIMARY KEY (_sync_scope_id, id));"
                 "CREATE TABLE app2.items (_sync_scope_id text, id uuid, PRIMARY KEY (_sync_scope_id, id));"
                 "CREATE TABLE app_2.items (_sync_scope_id text, id uuid, PRIMARY KEY (_sync_scope_id, id));"
                 "CREATE TABLE app.users (_sync_scope_id text, id uuid, PRIMARY KEY (_sync_scope_id, id));"
                 "CREATE TABLE app.users_archive (_sync_scope_id text, id uuid, PRIMARY KEY (_sync_scope_id, id));"
                 "CREATE TABLE app.\"user\" (_sync_scope_id text, id uuid, PRIMARY KEY (_sync_scope_id, id));"
                 "CREATE TABLE public.things (_sync_scope_id text, code text, PRIMARY KEY (_sync_scope_id, code));");
    /* configuration order, mixed case, the default schema */
    static const char *const registry[] = { "Z.Last:id", "app2.items:id", "app_2.items:id", "app.users:id",
                                            "app.users_archive:id", "app.user:id", "things:code", NULL };
    struct bundle_catalog cat;
    boot_ok(registry, &cat);
    /* "app.user" < "app.users" (a prefix) < "app.users_archive"; "app." < "app2" ('.' < '2');
     * "app2" < "app_2" ('2' < '_'); "public" < "z" */
    const char *want = "1 app.user id 1\n"
                       "2 app.users id 1\n"
                       "3 app.users_archive id 1\n"
                       "4 app2.items id 1\n"
                       "5 app_2.items id 1\n"
                       "6 public.things code 2\n"
                       "7 z.last id 1";
    ck_assert_str_eq(catalog_rows(), want);
    strbuf_t sb = STRBUF_INIT;
    for (int i = 0; i < cat.n_tables; i++)
        sb_printf(&sb, "%s%d %s.%s %s %d", i ? "\n" : "", cat.tables[i].table_id, cat.tables[i].schema,
                  cat.tables[i].table, cat.tables[i].key_column, (int)cat.tables[i].key_kind);
    ck_assert_str_eq(sb_cstr(&sb), want);
    sb_free(&sb);
    ck_assert_int_eq(cat.triggers_installed, 7);

    /* a reserved word as a table name: quoted in the trigger and, as format('%I') does, in the
     * owner guard's message */
    ck_assert_str_eq(triggers_of("app.\"user\""),
                     "CREATE TRIGGER oversync_bundle_capture_row AFTER INSERT OR DELETE OR UPDATE ON app.\"user\""
                     " FOR EACH ROW EXECUTE FUNCTION sync.capture_registered_row_change('id', '1', '1')\n"
                     "CREATE TRIGGER oversync_bundle_owner_guard BEFORE INSERT OR DELETE OR UPDATE ON app.\"user\""
                     " FOR EACH ROW EXECUTE FUNCTION sync.enforce_registered_row_owner()");
    sql_fails("INSERT INTO app.\"user\" (id) VALUES ('" ALICE_ROW "')", "P0001",
              "write to registered table app.\"user\" requires oversync sync bundle context");
    bundle_catalog_free(&cat);
}
END_TEST

START_TEST(test_empty_registry)
{
    struct bundle_catalog cat;
    static const char *const none[] = { NULL };
    boot_ok(none, &cat);
    ck_assert(cat.created);
    ck_assert_int_eq(cat.n_tables, 0);
    ck_assert_ptr_null(bundle_catalog_find(&cat, "business", "users"));
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.table_catalog"), 0);
    bundle_catalog_free(&cat);

    tdb_exec(&T, "%s", business_ddl);
    static const char *const one[] = { "business.users:id", NULL };
    boot_fails(one, "bundle bootstrap: sync.table_catalog row count = 0, expected 1" CATALOG_HINT);
}
END_TEST

START_TEST(test_concurrent_bootstraps)
{
    tdb_exec(&T, "%s", business_ddl);
    enum { N = 4 };
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            PGconn *c = tdb_connect(T.dbname);
            struct bundle_catalog cat;
            char err[2048];
            int rc = 3;
            if (!boot_on(c, business_registry, &cat, err, sizeof err))
                fprintf(stderr, "child %d: %s\n", i, err);
            else
                rc = cat.created ? 0 : 1;
            PQfinish(c);
            _exit(rc);
        }
    }
    int created = 0, adopted = 0;
    for (int i = 0; i < N; i++) {
        int status;
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) <= 1, "bootstrap %d failed (status %d)", i, status);
        if (WEXITSTATUS(status) == 0)
            created++;
        else
            adopted++;
    }
    ck_assert_int_eq(created, 1);
    ck_assert_int_eq(adopted, N - 1);
    assert_same_text("schema sync", expected_layout_text(), layout_dump());
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'oversync%%'"), 6);
}
END_TEST

START_TEST(test_connection_inside_a_transaction)
{
    tdb_exec(&T, "%s", business_ddl);
    tdb_exec(&T, "BEGIN");
    struct bundle_catalog cat;
    char err[256];
    ck_assert(!boot_on(T.conn, business_registry, &cat, err, sizeof err));
    ck_assert_str_eq(err, "bundle bootstrap: the connection is inside a transaction");
    /* the caller's transaction is the caller's: neither committed nor rolled back */
    ck_assert_int_eq(PQtransactionStatus(T.conn), PQTRANS_INTRANS);
    tdb_exec(&T, "ROLLBACK");
    ck_assert_str_eq(tdb_query(&T, "SELECT to_regnamespace('sync') IS NULL"), "t");
}
END_TEST

/* ------------------------------------------------------------- what is not adopted */

START_TEST(test_changed_registry_is_refused)
{
    tdb_exec(&T, "%s", business_ddl);
    tdb_exec(&T, "CREATE TABLE business.files (_sync_scope_id text, id uuid, PRIMARY KEY (_sync_scope_id, id))");
    static const char *const two[] = { "business.users:id", "business.posts:id", NULL };
    struct bundle_catalog cat;
    boot_ok(two, &cat);
    bundle_catalog_free(&cat);
    const char *before = identity_of_everything();

    /* one more table */
    static const char *const three[] = { "business.users:id", "business.posts:id", "business.files:id", NULL };
    boot_fails(three, "bundle bootstrap: sync.table_catalog row count = 2, expected 3" CATALOG_HINT);
    /* as many tables, another one: table_ids would shift */
    static const char *const other[] = { "business.users:id", "business.files:id", NULL };
    boot_fails(other, "bundle bootstrap: sync.table_catalog row 0 = (1,business,posts,id,1),"
                      " expected (1,business,files,id,1)" CATALOG_HINT);
    /* one table fewer */
    static const char *const one[] = { "business.users:id", NULL };
    boot_fails(one, "bundle bootstrap: sync.table_catalog row count = 2, expected 1" CATALOG_HINT);
    /* another key column, another key kind: the catalog row says */
    tdb_exec(&T, "UPDATE sync.table_catalog SET sync_key_kind = 2 WHERE table_id = 2");
    boot_fails(two, "bundle bootstrap: sync.table_catalog row 1 = (2,business,users,id,2),"
                    " expected (2,business,users,id,1)" CATALOG_HINT);
    tdb_exec(&T, "UPDATE sync.table_catalog SET sync_key_kind = 1 WHERE table_id = 2");

    /* nothing changed on the way, not even the triggers of the tables that were fine */
    ck_assert_str_eq(identity_of_everything(), before);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM pg_trigger"
                                      " WHERE tgrelid = 'business.files'::regclass"), 0);
}
END_TEST

START_TEST(test_old_protocol_sidecar_is_refused)
{
    tdb_exec(&T, "%s", business_ddl);
    char err[1024] = "";
    int applied = 0;
    ck_assert_msg(bootstrap_sidecar(T.conn, &applied, err, sizeof err), "bootstrap_sidecar: %s", err);
    ck_assert_int_gt(applied, 0);
    struct bundle_catalog cat;
    char got[2048];
    ck_assert(!boot_on(T.conn, business_registry, &cat, got, sizeof got));
    /* the reference's message, the hint, then the first objects found (the list grows with the
     * old protocol's migrations, so only its beginning is fixed here) */
    const char *want = UNSUPPORTED_LAYOUT " (schema sync holds sync.materialize_failures, sync.row_owner, ";
    ck_assert_msg(strncmp(got, want, strlen(want)) == 0, "got: %s", got);
    ck_assert_msg(strcmp(got + strlen(got) - 6, ", ...)") == 0, "got: %s", got);
    ck_assert_int_eq(PQtransactionStatus(T.conn), PQTRANS_IDLE);
    ck_assert_str_eq(tdb_query(&T, "SELECT to_regclass('sync.meta') IS NULL"), "t");
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'oversync%%'"), 0);
}
END_TEST

START_TEST(test_other_content_of_schema_sync_is_refused)
{
    tdb_exec(&T, "%s", business_ddl);
    /* the old layout's tables, as the reference's own test makes them */
    tdb_exec(&T, "CREATE SCHEMA sync;"
                 "CREATE TABLE sync.sync_row_meta (user_id text);"
                 "CREATE TABLE sync.server_change_log (server_id bigint)");
    boot_fails(business_registry,
               UNSUPPORTED_LAYOUT " (schema sync holds sync.server_change_log, sync.sync_row_meta)");

    /* tables first, then other relations, then functions; four names at most */
    tdb_exec(&T, "CREATE SEQUENCE sync.a_seq; CREATE VIEW sync.a_view AS SELECT 1 AS one;"
                 "CREATE FUNCTION sync.a_function() RETURNS int LANGUAGE sql AS 'SELECT 1'");
    boot_fails(business_registry,
               UNSUPPORTED_LAYOUT " (schema sync holds sync.server_change_log, sync.sync_row_meta, sync.a_seq,"
               " sync.a_view, ...)");

    /* a function alone is enough */
    tdb_exec(&T, "DROP SCHEMA sync CASCADE; CREATE SCHEMA sync;"
                 "CREATE FUNCTION sync.a_function() RETURNS int LANGUAGE sql AS 'SELECT 1'");
    boot_fails(business_registry, UNSUPPORTED_LAYOUT " (schema sync holds sync.a_function())");

    /* an empty schema sync is taken as it is */
    tdb_exec(&T, "DROP SCHEMA sync CASCADE; CREATE SCHEMA sync");
    struct bundle_catalog cat;
    boot_ok(business_registry, &cat);
    ck_assert(cat.created);
    assert_same_text("schema sync", expected_layout_text(), layout_dump());
    bundle_catalog_free(&cat);
}
END_TEST

START_TEST(test_only_one_marker_table_is_refused)
{
    tdb_exec(&T, "%s", business_ddl);
    tdb_exec(&T, "CREATE SCHEMA sync; CREATE TABLE sync.meta (singleton_key boolean PRIMARY KEY)");
    boot_fails(business_registry,
               "bundle bootstrap: existing sync schema is missing required marker tables sync.meta and"
               " sync.table_catalog for layout \"server_postgres_sync_v1\" (found only sync.meta)");
    tdb_exec(&T, "DROP TABLE sync.meta; CREATE TABLE sync.table_catalog (table_id int)");
    boot_fails(business_registry,
               "bundle bootstrap: existing sync schema is missing required marker tables sync.meta and"
               " sync.table_catalog for layout \"server_postgres_sync_v1\" (found only sync.table_catalog)");
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM pg_class WHERE relnamespace = 'sync'::regnamespace"
                                      " AND relkind = 'r'"), 1);
}
END_TEST

START_TEST(test_marker_row_is_checked)
{
    tdb_exec(&T, "%s", business_ddl);
    struct bundle_catalog cat;
    boot_ok(business_registry, &cat);
    bundle_catalog_free(&cat);

    tdb_exec(&T, "UPDATE sync.meta SET layout_name = 'server_postgres_sync_v2'");
    boot_fails(business_registry, "bundle bootstrap: sync.meta layout_name = \"server_postgres_sync_v2\","
                                  " expected \"server_postgres_sync_v1\"");
    tdb_exec(&T, "UPDATE sync.meta SET layout_name = 'server_postgres_sync_v1', protocol_label = 'v\"2'");
    boot_fails(business_registry, "bundle bootstrap: sync.meta protocol_label = \"v\\\"2\", expected \"v1\"");
    tdb_exec(&T, "DELETE FROM sync.meta");
    boot_fails(business_registry, "bundle bootstrap: sync.meta must contain exactly one row, found 0");
    tdb_exec(&T, "ALTER TABLE sync.meta DROP COLUMN layout_name");
    boot_fails(business_registry, "bundle bootstrap: existing sync.meta layout is unsupported: ERROR:  column"
                                  " \"layout_name\" does not exist; LINE 1: SELECT singleton_key, protocol_label,"
                                  " layout_name FROM sync....; ^");
}
END_TEST

/* ---------------------------------------------------------- registered tables (§5.3) */

#define PARENT "CREATE TABLE v.parent (_sync_scope_id text NOT NULL, id uuid NOT NULL, name text," \
               " PRIMARY KEY (_sync_scope_id, id));"
#define CHILD_COLUMNS \
    "_sync_scope_id text NOT NULL, id uuid NOT NULL, parent_id uuid, PRIMARY KEY (_sync_scope_id, id)"

struct refusal {
    const char *name;
    const char *ddl;                 /* run in schema v, after CREATE SCHEMA v */
    const char *registry[4];
    const char *message;             /* after "bundle bootstrap: " */
    bool layout_created;             /* the foreign keys are checked after the layout, as the reference does */
};

static const struct refusal refusals[] = {
    { "no scope column",
      "CREATE TABLE v.t (id uuid PRIMARY KEY)", { "v.t:id" },
      "registered table v.t must define _sync_scope_id TEXT", false },
    { "scope column of type uuid",
      "CREATE TABLE v.t (_sync_scope_id uuid, id uuid, PRIMARY KEY (_sync_scope_id, id))", { "v.t:id" },
      "registered table v.t must define _sync_scope_id TEXT", false },
    { "scope column of type varchar",
      "CREATE TABLE v.t (_sync_scope_id varchar(64), id uuid, PRIMARY KEY (_sync_scope_id, id))", { "v.t:id" },
      "registered table v.t must define _sync_scope_id TEXT", false },
    { "no key column",
      "CREATE TABLE v.t (_sync_scope_id text, uid uuid, PRIMARY KEY (_sync_scope_id, uid))", { "v.t:id" },
      "registered table v.t has no sync key column id", false },
    { "bigint key",
      "CREATE TABLE v.t (_sync_scope_id text, id bigint, PRIMARY KEY (_sync_scope_id, id))", { "v.t:id" },
      "registered table v.t uses unsupported sync key column type int8 for id; the current server runtime allows"
      " only uuid and text", false },
    { "varchar key",
      "CREATE TABLE v.t (_sync_scope_id text, id varchar(36), PRIMARY KEY (_sync_scope_id, id))", { "v.t:id" },
      "registered table v.t uses unsupported sync key column type varchar for id; the current server runtime"
      " allows only uuid and text", false },
    { "no unique index",
      "CREATE TABLE v.t (_sync_scope_id text, id uuid)", { "v.t:id" },
      "registered table v.t must provide unique indexes or constraints for scope-aware identity", false },
    { "unique index not leading with the scope",
      "CREATE TABLE v.t (_sync_scope_id text, id uuid, name text, PRIMARY KEY (_sync_scope_id, id),"
      " CONSTRAINT t_name_key UNIQUE (name))", { "v.t:id" },
      "registered table v.t has unique index t_name_key that does not begin with _sync_scope_id", false },
    { "primary key with the key first",
      "CREATE TABLE v.t (_sync_scope_id text, id uuid, PRIMARY KEY (id, _sync_scope_id))", { "v.t:id" },
      "registered table v.t has unique index t_pkey that does not begin with _sync_scope_id", false },
    { "partial unique index",
      "CREATE TABLE v.t (_sync_scope_id text, id uuid, deleted_at timestamptz);"
      "CREATE UNIQUE INDEX t_live_idx ON v.t (_sync_scope_id, id) WHERE deleted_at IS NULL", { "v.t:id" },
      "registered table v.t uses unsupported partial or expression unique index t_live_idx", false },
    { "expression unique index",
      "CREATE TABLE v.t (_sync_scope_id text, id uuid, title text, PRIMARY KEY (_sync_scope_id, id));"
      "CREATE UNIQUE INDEX t_title_idx ON v.t (_sync_scope_id, lower(title))", { "v.t:id" },
      "registered table v.t uses unsupported partial or expression unique index t_title_idx", false },
    { "no unique (_sync_scope_id, key)",
      "CREATE TABLE v.t (_sync_scope_id text, id uuid, name text, UNIQUE (_sync_scope_id, id, name))",
      { "v.t:id" },
      "registered table v.t must provide unique identity (_sync_scope_id, id)", false },
    { "unique (_sync_scope_id, key) with an INCLUDE column",   /* the reference counts included columns */
      "CREATE TABLE v.t (_sync_scope_id text, id uuid, name text, UNIQUE (_sync_scope_id, id) INCLUDE (name))",
      { "v.t:id" },
      "registered table v.t must provide unique identity (_sync_scope_id, id)", false },
    { "unique identity on another column than the key",
      "CREATE TABLE v.t (_sync_scope_id text, id uuid, slug text, PRIMARY KEY (_sync_scope_id, id))",
      { "v.t:slug" },
      "registered table v.t must provide unique identity (_sync_scope_id, slug)", false },
    { "no such table",
      "CREATE TABLE v.t (_sync_scope_id text, id uuid, PRIMARY KEY (_sync_scope_id, id))", { "v.t:id", "v.nope:id" },
      "registered table v.nope could not load column metadata for sync key validation (no such table, or none of"
      " its columns is visible to this role)", false },
    { "the scope column as key",
      "CREATE TABLE v.t (_sync_scope_id text, id uuid, PRIMARY KEY (_sync_scope_id, id))",
      { "v.t:_sync_scope_id" },
      "registered table v.t cannot use hidden scope column _sync_scope_id as its visible sync key", false },
    { "no key column named",
      "CREATE TABLE v.t (_sync_scope_id text, id uuid, PRIMARY KEY (_sync_scope_id, id))", { "v.t: " },
      "registered table v.t must resolve to exactly one sync key column for the current server runtime", false },
    { "a name the protocol cannot carry",
      "CREATE TABLE v.\"bad-name\" (_sync_scope_id text, id uuid, PRIMARY KEY (_sync_scope_id, id))",
      { "v.bad-name:id" },
      "registered table v.bad-name: schema and table names must match ^[a-z0-9_]+$", false },
    { "a key column name the protocol cannot carry",
      "CREATE TABLE v.t (_sync_scope_id text, \"the id\" uuid, PRIMARY KEY (_sync_scope_id, \"the id\"))",
      { "v.t:the id" },
      "registered table v.t: sync key column the id must match ^[a-z0-9_]+$ (at most 63 bytes)", false },
    { "registered twice",
      "CREATE TABLE v.t (_sync_scope_id text, id uuid, PRIMARY KEY (_sync_scope_id, id))", { "v.t:id", "V.T:id" },
      "registered table v.t is registered twice", false },

    /* foreign keys */
    { "FK not deferrable",
      PARENT "CREATE TABLE v.child (" CHILD_COLUMNS ", CONSTRAINT child_parent_fk FOREIGN KEY (_sync_scope_id,"
      " parent_id) REFERENCES v.parent (_sync_scope_id, id) NOT DEFERRABLE)", { "v.parent:id", "v.child:id" },
      "registered schema contains non-deferrable FK constraints: v.child_parent_fk; make these constraints"
      " DEFERRABLE before bootstrap (INITIALLY DEFERRED recommended)", true },
    { "FKs not deferrable, all of them named",
      PARENT "CREATE TABLE v.child (" CHILD_COLUMNS ", other_id uuid,"
      " CONSTRAINT child_parent_fk FOREIGN KEY (_sync_scope_id, parent_id) REFERENCES v.parent (_sync_scope_id, id),"
      " CONSTRAINT a_child_other_fk FOREIGN KEY (_sync_scope_id, other_id)"
      "   REFERENCES v.parent (_sync_scope_id, id))",
      { "v.parent:id", "v.child:id" },
      "registered schema contains non-deferrable FK constraints: v.a_child_other_fk, v.child_parent_fk; make these"
      " constraints DEFERRABLE before bootstrap (INITIALLY DEFERRED recommended)", true },
    { "FK with the scope column second",
      PARENT "CREATE TABLE v.child (" CHILD_COLUMNS ", CONSTRAINT child_parent_fk FOREIGN KEY (parent_id,"
      " _sync_scope_id) REFERENCES v.parent (id, _sync_scope_id) DEFERRABLE)", { "v.parent:id", "v.child:id" },
      "registered schema contains unsupported registered FK constraints; registered child FKs must be"
      " scope-inclusive and reference (_sync_scope_id, parent_sync_key): v.child -> v.parent (child_parent_fk)",
      true },
    { "FK on the scope column alone",
      "CREATE TABLE v.parent (_sync_scope_id text, id uuid, PRIMARY KEY (_sync_scope_id, id),"
      " CONSTRAINT parent_scope_key UNIQUE (_sync_scope_id));"
      "CREATE TABLE v.child (" CHILD_COLUMNS ", CONSTRAINT child_scope_fk FOREIGN KEY (_sync_scope_id)"
      " REFERENCES v.parent (_sync_scope_id) DEFERRABLE)", { "v.parent:id", "v.child:id" },
      "registered schema contains unsupported registered FK constraints; registered child FKs must be"
      " scope-inclusive and reference (_sync_scope_id, parent_sync_key): v.child -> v.parent (child_scope_fk)",
      true },
    { "FK to another parent column than its key",
      PARENT "CREATE UNIQUE INDEX parent_name_idx ON v.parent (_sync_scope_id, name);"
      "CREATE TABLE v.child (" CHILD_COLUMNS ", parent_name text, CONSTRAINT child_name_fk FOREIGN KEY"
      " (_sync_scope_id, parent_name) REFERENCES v.parent (_sync_scope_id, name) DEFERRABLE)",
      { "v.parent:id", "v.child:id" },
      "registered schema contains unsupported registered FK constraints; registered child FKs must be"
      " scope-inclusive and reference (_sync_scope_id, parent_sync_key): v.child -> v.parent (child_name_fk)",
      true },
    { "FK to an unregistered table",
      PARENT "CREATE TABLE v.child (" CHILD_COLUMNS ", CONSTRAINT child_parent_fk FOREIGN KEY (_sync_scope_id,"
      " parent_id) REFERENCES v.parent (_sync_scope_id, id) DEFERRABLE)", { "v.child:id" },
      "registered tables are not FK-closed: v.child -> v.parent (child_parent_fk)", true },
    { "FK with MATCH FULL",
      PARENT "CREATE TABLE v.child (" CHILD_COLUMNS ", CONSTRAINT child_parent_fk FOREIGN KEY (_sync_scope_id,"
      " parent_id) REFERENCES v.parent (_sync_scope_id, id) MATCH FULL DEFERRABLE)", { "v.parent:id", "v.child:id" },
      "registered schema contains unsupported FK MATCH option \"FULL\" on v.child (child_parent_fk)", true },
};

START_TEST(test_refused_registry)
{
    const struct refusal *c = &refusals[_i];
    tdb_exec(&T, "CREATE SCHEMA v; %s", c->ddl);
    const char *specs[5] = { c->registry[0], c->registry[1], c->registry[2], c->registry[3], NULL };
    char want[1024];
    snprintf(want, sizeof want, "bundle bootstrap: %s", c->message);
    boot_fails(specs, want);
    ck_assert_msg(strcmp(tdb_query(&T, "SELECT to_regclass('sync.meta') IS NOT NULL"), c->layout_created ? "t" : "f")
                      == 0, "%s: the layout should %sbe there", c->name, c->layout_created ? "" : "not ");
    ck_assert_msg(tdb_query_ll(&T, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'oversync%%'") == 0,
                  "%s: no trigger may be installed", c->name);
}
END_TEST

/* What the reference accepts, and so must oversyncd. */
START_TEST(test_accepted_registries)
{
    tdb_exec(&T, "CREATE SCHEMA v;"
                 /* deferrable but initially immediate (the upload defers all constraints itself) */
                 PARENT
                 "CREATE TABLE v.child (" CHILD_COLUMNS ", CONSTRAINT child_parent_fk FOREIGN KEY"
                 "  (_sync_scope_id, parent_id) REFERENCES v.parent (_sync_scope_id, id) ON DELETE SET NULL"
                 "  ON UPDATE CASCADE DEFERRABLE INITIALLY IMMEDIATE);"
                 /* a self-reference */
                 "CREATE TABLE v.tree (" CHILD_COLUMNS ", CONSTRAINT tree_parent_fk FOREIGN KEY"
                 "  (_sync_scope_id, parent_id) REFERENCES v.tree (_sync_scope_id, id) ON DELETE CASCADE"
                 "  DEFERRABLE INITIALLY DEFERRED);"
                 /* a text key that is not the primary key, more unique indexes leading with the scope */
                 "CREATE TABLE v.docs (_sync_scope_id text NOT NULL, id bigint NOT NULL, slug text NOT NULL,"
                 "  title text, PRIMARY KEY (_sync_scope_id, id), UNIQUE (_sync_scope_id, slug),"
                 "  UNIQUE (_sync_scope_id, title, slug));"
                 /* an unregistered table may reference a registered one */
                 "CREATE TABLE v.audit (_sync_scope_id text, parent_id uuid,"
                 "  FOREIGN KEY (_sync_scope_id, parent_id) REFERENCES v.parent (_sync_scope_id, id));"
                 /* a domain over text is text (information_schema's udt_name) */
                 "CREATE DOMAIN v.label AS text;"
                 "CREATE TABLE v.labels (_sync_scope_id v.label, code v.label,"
                 "  PRIMARY KEY (_sync_scope_id, code));");
    static const char *const registry[] = { "v.parent:id", "v.child:id", "v.tree:id", "v.docs:slug",
                                            "v.labels:code", NULL };
    struct bundle_catalog cat;
    boot_ok(registry, &cat);
    ck_assert_str_eq(catalog_rows(), "1 v.child id 1\n2 v.docs slug 2\n3 v.labels code 2\n4 v.parent id 1\n"
                                     "5 v.tree id 1");
    ck_assert_int_eq(cat.triggers_installed, 5);
    bundle_catalog_free(&cat);
}
END_TEST

/* ------------------------------------------------------------------- the triggers (§4.4) */

static void business_bootstrapped(void)
{
    tdb_exec(&T, "%s", business_ddl);
    struct bundle_catalog cat;
    boot_ok(business_registry, &cat);
    bundle_catalog_free(&cat);
}

START_TEST(test_write_without_bundle_context_is_refused)
{
    business_bootstrapped();
    long long alice = new_user("alice");
    ck_assert_int_eq(rejected_writes(), 0);

    sql_fails("INSERT INTO business.users (id, name) VALUES ('" ALICE_ROW "', 'Ada')", "P0001",
              "write to registered table business.users requires oversync sync bundle context");
    ck_assert_int_eq(rejected_writes(), 1);
    /* also inside a transaction that then rolls back: the count stays */
    sql_fails("BEGIN; INSERT INTO business.notes (slug) VALUES ('x')", "P0001",
              "write to registered table business.notes requires oversync sync bundle context");
    ck_assert_int_eq(rejected_writes(), 2);
    /* an empty user id is no context */
    sql_fails("BEGIN; SELECT set_config('" BUNDLE_GUC_USER_ID "', '', true);"
              "INSERT INTO business.users (id) VALUES ('" ALICE_ROW "')", "P0001",
              "write to registered table business.users requires oversync sync bundle context");
    ck_assert_int_eq(rejected_writes(), 3);

    /* a row written in context, then touched without */
    tdb_exec(&T, "%s INSERT INTO business.users (id, name) VALUES ('" ALICE_ROW "', 'Ada'); COMMIT",
             context("alice", alice));
    sql_fails("UPDATE business.users SET name = 'Eve'", "P0001",
              "write to registered table business.users requires oversync sync bundle context");
    sql_fails("DELETE FROM business.users", "P0001",
              "write to registered table business.users requires oversync sync bundle context");
    ck_assert_int_eq(rejected_writes(), 5);
    /* the context is transaction-local: gone after COMMIT */
    sql_fails("UPDATE business.users SET name = 'Eve'", "P0001",
              "write to registered table business.users requires oversync sync bundle context");
    ck_assert_str_eq(tdb_query(&T, "SELECT name FROM business.users"), "Ada");
    /* TRUNCATE fires no row trigger */
    tdb_exec(&T, "TRUNCATE business.posts, business.users");
    ck_assert_int_eq(rejected_writes(), 6);
}
END_TEST

START_TEST(test_capture_of_insert_update_delete)
{
    business_bootstrapped();
    long long alice = new_user("alice");
    tdb_exec(&T, "%s", context("alice", alice));
    /* the owner guard fills the scope column; the capture leaves it out of the payload */
    tdb_exec(&T, "INSERT INTO business.users (id, name) VALUES ('" ALICE_ROW "', 'Ada')");
    tdb_exec(&T, "INSERT INTO business.posts (_sync_scope_id, id, title, author_id)"
                 " VALUES ('alice', '" POST_ROW "', 'Hello', '" ALICE_ROW "')");
    tdb_exec(&T, "UPDATE business.users SET name = 'Ada Lovelace' WHERE id = '" ALICE_ROW "'");
    tdb_exec(&T, "INSERT INTO business.notes (slug, body) VALUES ('" TEXT_KEY "', 'note')");
    tdb_exec(&T, "UPDATE business.notes SET body = NULL");
    tdb_exec(&T, "DELETE FROM business.posts");
    ck_assert_str_eq(stage_of_this_transaction(alice),
                     "3 1 " ALICE_ROW_HEX " {\"id\": \"" ALICE_ROW "\", \"name\": \"Ada\"}\n"
                     "2 1 " POST_ROW_HEX " {\"id\": \"" POST_ROW "\", \"title\": \"Hello\", \"author_id\": \""
                     ALICE_ROW "\"}\n"
                     "3 2 " ALICE_ROW_HEX " {\"id\": \"" ALICE_ROW "\", \"name\": \"Ada Lovelace\"}\n"
                     "1 1 " TEXT_KEY_HEX " {\"body\": \"note\", \"slug\": \"" TEXT_KEY "\"}\n"
                     "1 2 " TEXT_KEY_HEX " {\"body\": null, \"slug\": \"" TEXT_KEY "\"}\n"
                     "2 3 " POST_ROW_HEX " NULL");
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(DISTINCT _sync_scope_id, ',') FROM business.users"), "alice");
    tdb_exec(&T, "COMMIT");
    /* the stage is the finalizer's to empty: the rows stay after COMMIT */
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.bundle_capture_stage WHERE user_pk = %lld",
                                  alice), 6);

    /* an UPDATE that changes nothing is still an UPDATE */
    tdb_exec(&T, "%s UPDATE business.users SET name = name", context("alice", alice));
    ck_assert_str_eq(stage_of_this_transaction(alice),
                     "3 2 " ALICE_ROW_HEX " {\"id\": \"" ALICE_ROW "\", \"name\": \"Ada Lovelace\"}");
    tdb_exec(&T, "ROLLBACK");
}
END_TEST

START_TEST(test_key_change_is_delete_then_insert)
{
    business_bootstrapped();
    long long alice = new_user("alice");
    tdb_exec(&T, "%s INSERT INTO business.users (id, name) VALUES ('" ALICE_ROW "', 'Ada'); COMMIT",
             context("alice", alice));
    tdb_exec(&T, "%s UPDATE business.users SET id = '" NEW_ROW "'", context("alice", alice));
    ck_assert_str_eq(stage_of_this_transaction(alice),
                     "3 3 " ALICE_ROW_HEX " NULL\n"
                     "3 1 " NEW_ROW_HEX " {\"id\": \"" NEW_ROW "\", \"name\": \"Ada\"}");
    tdb_exec(&T, "ROLLBACK");

    tdb_exec(&T, "%s INSERT INTO business.notes (slug, body) VALUES ('a', 'x'); COMMIT", context("alice", alice));
    tdb_exec(&T, "%s UPDATE business.notes SET slug = 'b', body = 'y'", context("alice", alice));
    ck_assert_str_eq(stage_of_this_transaction(alice), "1 3 61 NULL\n"
                                                       "1 1 62 {\"body\": \"y\", \"slug\": \"b\"}");
    tdb_exec(&T, "ROLLBACK");
}
END_TEST

START_TEST(test_owner_guard)
{
    business_bootstrapped();
    long long alice = new_user("alice"), bob = new_user("bob");
    tdb_exec(&T, "%s INSERT INTO business.users (id, name) VALUES ('" ALICE_ROW "', 'Ada'); COMMIT",
             context("alice", alice));
    tdb_exec(&T, "%s INSERT INTO business.users (_sync_scope_id, id, name) VALUES ('bob', '" BOB_ROW "', 'Bob');"
                 " COMMIT", context("bob", bob));

    /* bob may not write alice's rows, nor rows in her name */
    sql_fails(tdb_printf(&T, "%s INSERT INTO business.users (_sync_scope_id, id) VALUES ('alice', '" NEW_ROW "')",
                         context("bob", bob)),
              "P0001", "scope mismatch on registered table business.users: actor bob cannot write owner alice");
    sql_fails(tdb_printf(&T, "%s UPDATE business.users SET name = 'Eve' WHERE id = '" ALICE_ROW "'",
                         context("bob", bob)),
              "P0001", "scope mismatch on registered table business.users: actor bob cannot update owner alice");
    sql_fails(tdb_printf(&T, "%s DELETE FROM business.users WHERE id = '" ALICE_ROW "'", context("bob", bob)),
              "P0001", "scope mismatch on registered table business.users: actor bob cannot delete owner alice");
    /* a statement touching both users' rows fails as a whole */
    sql_fails(tdb_printf(&T, "%s UPDATE business.users SET name = upper(name)", context("bob", bob)),
              "P0001", "scope mismatch on registered table business.users: actor bob cannot update owner alice");
    /* nobody moves a row to another scope, not even its owner */
    sql_fails(tdb_printf(&T, "%s UPDATE business.users SET _sync_scope_id = 'bob' WHERE id = '" ALICE_ROW "'",
                         context("alice", alice)),
              "P0001", "scope mutation is not allowed on registered table business.users");
    sql_fails(tdb_printf(&T, "%s UPDATE business.users SET _sync_scope_id = NULL WHERE id = '" ALICE_ROW "'",
                         context("alice", alice)),
              "P0001", "scope mutation is not allowed on registered table business.users");
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(_sync_scope_id || ':' || name, ',' ORDER BY id)"
                                   "  FROM business.users"), "alice:Ada,bob:Bob");
    ck_assert_int_eq(rejected_writes(), 0);   /* refusals of scope are not counted there */

    /* the owner may: an empty scope is filled in too */
    tdb_exec(&T, "%s INSERT INTO business.users (_sync_scope_id, id, name) VALUES ('', '" NEW_ROW "', 'Ann');"
                 " UPDATE business.users SET name = 'Ada L.' WHERE id = '" ALICE_ROW "';"
                 " DELETE FROM business.users WHERE id = '" NEW_ROW "'; COMMIT", context("alice", alice));
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(_sync_scope_id || ':' || name, ',' ORDER BY id)"
                                   "  FROM business.users"), "alice:Ada L.,bob:Bob");
}
END_TEST

START_TEST(test_capture_needs_the_user_pk)
{
    business_bootstrapped();
    sql_fails("BEGIN; SELECT set_config('" BUNDLE_GUC_USER_ID "', 'alice', true);"
              "INSERT INTO business.users (id) VALUES ('" ALICE_ROW "')",
              "P0001", "oversync bundle context is missing user_pk for business.users");
    ck_assert_int_eq(rejected_writes(), 0);
    /* a user_pk that names no user: the stage's foreign key says so */
    sql_fails(tdb_printf(&T, "%s INSERT INTO business.users (id) VALUES ('" ALICE_ROW "')", context("alice", 42)),
              "23503", "insert or update on table \"bundle_capture_stage\" violates foreign key constraint"
                       " \"bundle_capture_stage_user_pk_fkey\"");
}
END_TEST

static TCase *schema_tcase(const char *name, int timeout)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, timeout);
    tcase_add_checked_fixture(tc, setup, teardown);
    return tc;
}

static Suite *bundle_schema_suite(void)
{
    Suite *s = suite_create("bundle schema");
    TCase *tc = schema_tcase("create and adopt", 60);
    tcase_add_test(tc, test_embedded_layout);
    tcase_add_test(tc, test_fresh_bootstrap_creates_the_layout);
    tcase_add_test(tc, test_second_bootstrap_adopts_and_changes_nothing);
    tcase_add_test(tc, test_tampered_triggers_are_reinstalled);
    tcase_add_test(tc, test_catalog_numbering_is_byte_order);
    tcase_add_test(tc, test_empty_registry);
    tcase_add_test(tc, test_concurrent_bootstraps);
    tcase_add_test(tc, test_connection_inside_a_transaction);
    suite_add_tcase(s, tc);

    tc = schema_tcase("refused layouts", 60);
    tcase_add_test(tc, test_changed_registry_is_refused);
    tcase_add_test(tc, test_old_protocol_sidecar_is_refused);
    tcase_add_test(tc, test_other_content_of_schema_sync_is_refused);
    tcase_add_test(tc, test_only_one_marker_table_is_refused);
    tcase_add_test(tc, test_marker_row_is_checked);
    suite_add_tcase(s, tc);

    tc = schema_tcase("registered tables", 60);
    tcase_add_loop_test(tc, test_refused_registry, 0, (int)(sizeof refusals / sizeof refusals[0]));
    tcase_add_test(tc, test_accepted_registries);
    suite_add_tcase(s, tc);

    tc = schema_tcase("triggers", 60);
    tcase_add_test(tc, test_write_without_bundle_context_is_refused);
    tcase_add_test(tc, test_capture_of_insert_update_delete);
    tcase_add_test(tc, test_key_change_is_delete_then_insert);
    tcase_add_test(tc, test_owner_guard);
    tcase_add_test(tc, test_capture_needs_the_user_pk);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(bundle_schema_suite(), NULL);
}
