/* sync_upload against a real PostgreSQL (tests/pg.sh): SPEC §4 and the invariants of §8 that one
 * connection can observe. Every test works in a fresh database of its own (testdb.c), with
 * business.users, business.posts and public.notes registered (materializer none). */
#include "testdb.h"
#include "../capture.h"
#include "../run_suites.h"

#include "strbuf.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define U "alice"
#define U2 "bob"
#define D "phone"
#define D2 "laptop"

#define PK1 "11111111-1111-4111-8111-111111111111"
#define PK2 "22222222-2222-4222-8222-222222222222"
#define PK3 "33333333-3333-4333-8333-333333333333"
#define PK4 "44444444-4444-4444-8444-444444444444"
#define PK5 "55555555-5555-4555-8555-555555555555"
#define PKX "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"

/* -------------------------------------------------------------------------- assertions */

/* invalid/bad_payload whose message equals invalid.details.error; message compared exactly
 * (or only checked to contain `contains` when exact is NULL). */
static void assert_bad_payload(const struct tdb_answer *a, int i, long long scid, const char *exact,
                               const char *contains)
{
    json_object *st = assert_invalid(a, i, scid, "bad_payload");
    const char *msg = tdb_str(st, "message");
    json_object *details = tdb_get(tdb_get(st, "invalid"), "details");
    ck_assert_msg(strcmp(tdb_str(details, "error"), msg) == 0,
                  "statuses[%d]: message and invalid.details.error differ: %s", i, a->body);
    ck_assert_msg(*msg, "statuses[%d]: empty message: %s", i, a->body);
    if (exact)
        ck_assert_msg(strcmp(msg, exact) == 0, "statuses[%d].message is\n  %s\nexpected\n  %s", i, msg, exact);
    if (contains)
        ck_assert_msg(strstr(msg, contains) != NULL, "statuses[%d].message \"%s\" does not mention \"%s\"", i, msg,
                      contains);
}

static void assert_accepted(const struct tdb_answer *a, bool accepted)
{
    ck_assert_msg(tdb_bool(a->json, "accepted") == accepted, "accepted should be %s: %s",
                  accepted ? "true" : "false", a->body);
}

static void assert_highest(const struct tdb_answer *a, const char *user)
{
    long long h = tdb_highest(&T, user);
    ck_assert_msg(tdb_int(a->json, "highest_server_seq") == h, "highest_server_seq = %lld, the log says %lld: %s",
                  tdb_int(a->json, "highest_server_seq"), h, a->body);
}

/* "t", "f" or "<null>" when there is no meta row. */
static const char *meta_deleted(const char *user, const char *schema, const char *table, const char *pk)
{
    return tdb_query(&T,
                     "SELECT (SELECT deleted FROM sync.sync_row_meta WHERE user_id = '%s' AND schema_name = '%s'"
                     " AND table_name = '%s' AND pk_uuid = '%s')",
                     user, schema, table, pk);
}

/* The after-image as jsonb text, "<null>" when there is none. */
static const char *state_payload(const char *user, const char *schema, const char *table, const char *pk)
{
    return tdb_query(&T,
                     "SELECT (SELECT payload::text FROM sync.sync_state WHERE user_id = '%s' AND schema_name = '%s'"
                     " AND table_name = '%s' AND pk_uuid = '%s')",
                     user, schema, table, pk);
}

/* Whether jsonb text a equals jsonb text b, compared by PostgreSQL. */
static bool jsonb_eq(const char *a, const char *b)
{
    return strcmp(tdb_query(&T, "SELECT ($a$%s$a$::jsonb = $b$%s$b$::jsonb)::text", a, b), "true") == 0;
}

/* The log of one row as "op:version" items in server_id order, e.g. "INSERT:1,UPDATE:2". */
static const char *log_of(const char *user, const char *pk)
{
    return tdb_query(&T,
                     "SELECT coalesce(string_agg(op || ':' || server_version, ',' ORDER BY server_id), '')"
                     " FROM sync.server_change_log WHERE user_id = '%s' AND pk_uuid = '%s'",
                     user, pk);
}

/* The scids of the user's log in server_id order, e.g. "3,1,2". */
static const char *log_scids(const char *user)
{
    return tdb_query(&T,
                     "SELECT coalesce(string_agg(source_change_id::text, ',' ORDER BY server_id), '')"
                     " FROM sync.server_change_log WHERE user_id = '%s'",
                     user);
}

/* ==================================================================== §4.1 validation */

/* Each rule: the bad change (scid bad_scid) is answered invalid, nothing of it is written, and a
 * valid sibling in the same batch (a new row each call) is applied. */
static int siblings;

static void bad_with_sibling(const char *bad, long long bad_scid, const char *reason, const char *exact_message)
{
    long long log0 = tdb_log_count(&T, NULL), meta0 = tdb_meta_count(&T, NULL), state0 = tdb_state_count(&T, NULL);
    siblings++;
    const char *sib_pk = tdb_printf(&T, "eeeeeeee-0000-4000-8000-%012d", siblings);
    long long sib_scid = 5000 + siblings;
    struct tdb_answer *a =
        tdb_upload_ok(&T, U, D, batch(bad, ins(sib_scid, "users", sib_pk, "{\"name\":\"sibling\"}"), NULL));
    ck_assert_int_eq(tdb_nstatuses(a), 2);
    if (strcmp(reason, "bad_payload") == 0)
        assert_bad_payload(a, 0, bad_scid, exact_message, NULL);
    else
        assert_invalid(a, 0, bad_scid, reason);
    assert_applied(a, 1, sib_scid, 1);
    ck_assert_int_eq(tdb_log_count(&T, NULL), log0 + 1);
    ck_assert_int_eq(tdb_meta_count(&T, NULL), meta0 + 1);
    ck_assert_int_eq(tdb_state_count(&T, NULL), state0 + 1);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log WHERE source_change_id = %lld",
                                  bad_scid),
                     0);
    ck_assert_int_eq(tdb_log_count_pk(&T, U, sib_pk), 1);
    ck_assert_int_eq(a->counts.applied, 1);
    assert_highest(a, U);
    if (strcmp(reason, "unregistered_table") != 0)
        assert_accepted(a, true);
    tdb_answer_free(a);
}

START_TEST(test_rule1_bad_schema)
{
    bad_with_sibling(chg(1, "Bad-Schema", "users", "INSERT", PK1, 0, "{\"a\":1}"), 1, "bad_payload",
                     "invalid schema name \"bad-schema\": it must match ^[a-z0-9_]+$");
}
END_TEST

START_TEST(test_rule1_bad_schema_dot)
{
    bad_with_sibling(chg(1, "business.users", "users", "INSERT", PK1, 0, "{\"a\":1}"), 1, "bad_payload",
                     "invalid schema name \"business.users\": it must match ^[a-z0-9_]+$");
}
END_TEST

START_TEST(test_rule2_bad_table)
{
    bad_with_sibling(chg(1, "business", "us-ers", "INSERT", PK1, 0, "{\"a\":1}"), 1, "bad_payload",
                     "invalid table name \"us-ers\": it must match ^[a-z0-9_]+$");
}
END_TEST

START_TEST(test_rule2_empty_table)
{
    bad_with_sibling(chg(1, "business", "  ", "INSERT", PK1, 0, "{\"a\":1}"), 1, "bad_payload",
                     "invalid table name \"\": it must match ^[a-z0-9_]+$");
}
END_TEST

START_TEST(test_rule3_unregistered)
{
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D,
        batch(chg(1, "public", "nope", "INSERT", PK1, 0, "{\"a\":1}"), ins(2, "users", PK2, "{\"name\":\"sibling\"}"),
              NULL));
    json_object *st = assert_invalid(a, 0, 1, "unregistered_table");
    ck_assert_msg(tdb_json_eq(tdb_get(tdb_get(st, "invalid"), "details"), "{\"schema\":\"public\",\"table\":\"nope\"}"),
                  "details: %s", a->body);
    assert_applied(a, 1, 2, 1);
    assert_accepted(a, false);
    assert_highest(a, U);
    ck_assert_int_eq(tdb_log_count(&T, U), 1);
    ck_assert_int_eq(tdb_log_count_pk(&T, U, PK1), 0);
    ck_assert_int_eq(a->counts.invalid[INVALID_UNREGISTERED_TABLE], 1);
    tdb_answer_free(a);

    /* registered schema, unregistered table; normalised names in the details */
    a = tdb_upload_ok(&T, U, D, batch(chg(3, " BUSINESS ", "Comments", "INSERT", PK3, 0, "{}"), NULL));
    st = assert_invalid(a, 0, 3, "unregistered_table");
    ck_assert_msg(
        tdb_json_eq(tdb_get(tdb_get(st, "invalid"), "details"), "{\"schema\":\"business\",\"table\":\"comments\"}"),
        "details: %s", a->body);
    assert_accepted(a, false);
    tdb_answer_free(a);

    /* the sibling path through the shared helper too */
    bad_with_sibling(chg(1, "other", "users", "DELETE", PK1, 0, NULL), 1, "unregistered_table", NULL);
}
END_TEST

START_TEST(test_rule4_bad_op)
{
    bad_with_sibling(chg(1, "business", "users", "MERGE", PK1, 0, "{\"a\":1}"), 1, "bad_payload",
                     "invalid op \"MERGE\": it must be INSERT, UPDATE or DELETE");
}
END_TEST

START_TEST(test_rule4_empty_op)
{
    bad_with_sibling(chg(1, "business", "users", "", PK1, 0, "{\"a\":1}"), 1, "bad_payload",
                     "invalid op \"\": it must be INSERT, UPDATE or DELETE");
}
END_TEST

START_TEST(test_rule5_pk_not_uuid)
{
    bad_with_sibling(ins(1, "users", "not-a-uuid", "{\"a\":1}"), 1, "bad_payload", "pk \"not-a-uuid\" is not a UUID");
}
END_TEST

START_TEST(test_rule5_pk_missing)
{
    bad_with_sibling(ins(1, "users", NULL, "{\"a\":1}"), 1, "bad_payload", NULL);
}
END_TEST

START_TEST(test_rule5_pk_variants_refused)
{
    static const char *const bad[] = {
        "1111111-1111-4111-8111-111111111111",         /* 35 characters */
        "11111111-1111-4111-8111-11111111111g",        /* not hex */
        "11111111_1111_4111_8111_111111111111",        /* wrong separators */
        "{11111111-1111-4111-8111-111111111111",       /* unbalanced brace */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", bad[i], "{\"a\":1}"), NULL));
        assert_bad_payload(a, 0, 1, NULL, "is not a UUID");
        tdb_answer_free(a);
    }
    ck_assert_int_eq(tdb_log_count(&T, NULL), 0);
    ck_assert_int_eq(tdb_meta_count(&T, NULL), 0);
}
END_TEST

START_TEST(test_rule5_pk_with_nul)
{
    /* the JSON string holds a NUL after a valid UUID: not a UUID (no C-string truncation) */
    bad_with_sibling(ins(1, "users", PK1 "\\u0000junk", "{\"a\":1}"), 1, "bad_payload", NULL);
}
END_TEST

START_TEST(test_rule6_payload_missing)
{
    bad_with_sibling(ins(1, "users", PK1, NULL), 1, "bad_payload", "payload must be a JSON object for INSERT");
}
END_TEST

START_TEST(test_rule6_payload_null)
{
    bad_with_sibling(ins(1, "users", PK1, "null"), 1, "bad_payload", "payload must be a JSON object for INSERT");
}
END_TEST

START_TEST(test_rule6_payload_array)
{
    bad_with_sibling(upd(1, "users", PK1, 0, "[{\"a\":1}]"), 1, "bad_payload",
                     "payload must be a JSON object for UPDATE");
}
END_TEST

START_TEST(test_rule6_payload_string)
{
    bad_with_sibling(ins(1, "users", PK1, "\"{\\\"a\\\":1}\""), 1, "bad_payload",
                     "payload must be a JSON object for INSERT");
}
END_TEST

START_TEST(test_rule6_payload_number_bool)
{
    bad_with_sibling(upd(1, "users", PK1, 0, "42"), 1, "bad_payload", "payload must be a JSON object for UPDATE");
    bad_with_sibling(ins(3, "users", PK3, "true"), 3, "bad_payload", NULL);
}
END_TEST

/* A payload object of exactly n raw bytes: {"pad":"xxxx"} */
static char *payload_of(size_t n)
{
    ck_assert_uint_ge(n, 11);
    char *s = tdb_printf(&T, "{\"pad\":\"%*s\"}", (int)(n - 10), "");
    for (char *p = s + 8; *p == ' '; p++)
        *p = 'x';
    ck_assert_uint_eq(strlen(s), n);
    return s;
}

START_TEST(test_rule7_payload_too_large)
{
    T.cfg.max_payload_bytes = 256;
    bad_with_sibling(ins(1, "users", PK1, payload_of(257)), 1, "bad_payload",
                     "payload is 257 bytes; the limit is 256 bytes");
}
END_TEST

START_TEST(test_rule7_payload_at_limit)
{
    T.cfg.max_payload_bytes = 256;
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, payload_of(256)), NULL));
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_log_count_pk(&T, U, PK1), 1);
}
END_TEST

START_TEST(test_rule7_payload_raw_bytes)
{
    /* the limit is on the bytes as sent, white space included: 246 compact, 258 raw */
    T.cfg.max_payload_bytes = 256;
    char *compact = payload_of(246);
    /* {      "pad"      :"xxx…"}  = 246 + 12 bytes */
    char *spaced = tdb_printf(&T, "{      \"pad\"      :%s", strchr(compact, ':') + 1);
    ck_assert_uint_eq(strlen(spaced), 258);
    bad_with_sibling(ins(1, "users", PK1, spaced), 1, "bad_payload", "payload is 258 bytes; the limit is 256 bytes");
}
END_TEST

START_TEST(test_rule8_server_version_key)
{
    bad_with_sibling(ins(1, "users", PK1, "{\"name\":\"x\",\"server_version\":3}"), 1, "bad_payload",
                     "payload must not contain the key \"server_version\"");
}
END_TEST

START_TEST(test_rule8_deleted_key)
{
    bad_with_sibling(upd(1, "users", PK1, 0, "{\"deleted\":false}"), 1, "bad_payload",
                     "payload must not contain the key \"deleted\"");
}
END_TEST

START_TEST(test_rule8_nested_keys_fine)
{
    const char *p = "{\"meta\":{\"deleted\":true,\"server_version\":4},\"list\":[{\"deleted\":1}]}";
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, p), NULL));
    assert_applied(a, 0, 1, 1);
    ck_assert(jsonb_eq(state_payload(U, "business", "users", PK1), p));
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_rule9_delete_with_payload)
{
    /* the row exists, so a valid DELETE would be applied with a version */
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(10, "users", PK1, "{\"a\":1}"), NULL));
    tdb_answer_free(a);
    bad_with_sibling(chg(1, "business", "users", "DELETE", PK1, 1, "{}"), 1, "bad_payload",
                     "payload must be absent or null for DELETE");
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK1), "f");
    ck_assert_int_eq(meta_version(U, "business", "users", PK1), 1);
    bad_with_sibling(chg(3, "business", "users", "DELETE", PK1, 1, "{\"id\":\"" PK1 "\"}"), 3, "bad_payload", NULL);
    bad_with_sibling(chg(4, "business", "users", "DELETE", PK1, 1, "false"), 4, "bad_payload", NULL);
}
END_TEST

START_TEST(test_rule9_delete_null_or_absent)
{
    struct tdb_answer *a =
        tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{\"a\":1}"), ins(2, "users", PK2, "{\"a\":2}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D,
                      batch(chg(3, "business", "users", "DELETE", PK1, 1, "null"), del(4, "users", PK2, 1), NULL));
    assert_applied(a, 0, 3, 2);
    assert_applied(a, 1, 4, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK1), "t");
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK2), "t");
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log WHERE op = 'DELETE'"
                                      " AND payload IS NULL"),
                     2);
}
END_TEST

START_TEST(test_first_failure_wins)
{
    /* bad schema, bad table, bad op and bad pk: the schema rule answers */
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D,
        batch(chg(1, "B-S", "t-t", "MERGE", "nope", 0, "[]"),
              chg(2, "business", "t-t", "MERGE", "nope", 0, "[]"),
              chg(3, "business", "nothere", "MERGE", "nope", 0, "[]"),
              chg(4, "business", "users", "MERGE", "nope", 0, "[]"),
              chg(5, "business", "users", "INSERT", "nope", 0, "[]"),
              chg(6, "business", "users", "INSERT", PK1, 0, "[]"),
              chg(7, "business", "users", "DELETE", "nope", 0, "{}"), NULL));
    assert_bad_payload(a, 0, 1, NULL, "schema");
    assert_bad_payload(a, 1, 2, NULL, "table");
    assert_invalid(a, 2, 3, "unregistered_table");
    assert_bad_payload(a, 3, 4, NULL, "op");
    assert_bad_payload(a, 4, 5, NULL, "not a UUID");
    assert_bad_payload(a, 5, 6, "payload must be a JSON object for INSERT", NULL);
    assert_bad_payload(a, 6, 7, NULL, "not a UUID");
    assert_accepted(a, false);
    ck_assert_int_eq(tdb_log_count(&T, NULL), 0);
    tdb_answer_free(a);

    /* too large and a forbidden key: size first (rule 7 before rule 8) */
    T.cfg.max_payload_bytes = 40;
    a = tdb_upload_ok(&T, U, D,
                      batch(ins(8, "users", PK1, "{\"server_version\":1,\"padding\":\"xxxxxxxxxxxxxxxxxx\"}"), NULL));
    assert_bad_payload(a, 0, 8, NULL, "limit");
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_payload_nul_escape)
{
    bad_with_sibling(ins(1, "users", PK1, "{\"name\":\"a\\u0000b\"}"), 1, "bad_payload",
                     "payload holds a value PostgreSQL cannot store (\\u0000, an unpaired surrogate or a number "
                     "out of range)");
}
END_TEST

START_TEST(test_payload_unpaired_surrogate)
{
    bad_with_sibling(ins(1, "users", PK1, "{\"name\":\"\\ud800\"}"), 1, "bad_payload", NULL);
    bad_with_sibling(ins(3, "users", PK3, "{\"name\":\"x\\udc00y\"}"), 3, "bad_payload", NULL);
    bad_with_sibling(ins(4, "users", PK4, "{\"k\\ud800\":1}"), 4, "bad_payload", NULL);
    bad_with_sibling(ins(5, "users", PK5, "{\"deep\":[{\"x\":\"\\ud83d\\u0041\"}]}"), 5, "bad_payload", NULL);
}
END_TEST

START_TEST(test_payload_number_out_of_range)
{
    /* jsonb (numeric) cannot store it: that change only, not the batch */
    bad_with_sibling(ins(1, "users", PK1, "{\"n\":1e200000}"), 1, "bad_payload", NULL);
    bad_with_sibling(ins(3, "users", PK3, "{\"n\":1e-20000}"), 3, "bad_payload", NULL);
}
END_TEST

START_TEST(test_payload_valid_escapes_stored)
{
    const char *p = "{\"emoji\":\"\\ud83d\\ude00\",\"e\":\"\\u00e9\\n\\t\\\"q\\\"\",\"big\":1e300,\"raw\":\"\xc3\xa9\"}";
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, p), NULL));
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);
    ck_assert(jsonb_eq(state_payload(U, "business", "users", PK1), p));
    ck_assert_str_eq(tdb_query(&T, "SELECT payload->>'emoji' FROM sync.server_change_log"), "\xf0\x9f\x98\x80");
}
END_TEST

/* ==================================================================== normalisation */

START_TEST(test_normalise_names_and_op)
{
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D,
        batch(chg(1, "  Business ", "USERS", " insert ", PK1, 0, "{\"a\":1}"),
              chg(2, "", "Notes", "Insert", PK2, 0, "{\"a\":2}"),
              "{\"source_change_id\":3,\"schema\":null,\"table\":\"notes\",\"op\":\"INSERT\",\"pk\":\"" PK3
              "\",\"payload\":{\"a\":3}}",
              "{\"source_change_id\":4,\"table\":\"\\tnotes\\n\",\"op\":\"\\tupdate \",\"pk\":\"" PK3
              "\",\"server_version\":1,\"payload\":{\"a\":4}}",
              chg(5, "BUSINESS", "Users", "delete", PK1, 1, NULL), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    assert_applied(a, 2, 3, 1);
    assert_applied(a, 3, 4, 2);
    assert_applied(a, 4, 5, 2);
    assert_accepted(a, true);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(format('%%s.%%s %%s %%s', schema_name, table_name, op,"
                                   " source_change_id), ',' ORDER BY source_change_id) FROM sync.server_change_log"),
                     "business.users INSERT 1,public.notes INSERT 2,public.notes INSERT 3,public.notes UPDATE 4,"
                     "business.users DELETE 5");
    ck_assert_int_eq(meta_version(U, "public", "notes", PK3), 2);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK1), "t");
}
END_TEST

START_TEST(test_normalise_uuid_spellings)
{
    static const char *const spellings[] = {
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        "a0eebc999c0b4ef8bb6d6bb9bd380a11",
        "urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        "A0EEBC999C0B4EF8BB6D6BB9BD380A11",
        "{A0EEBC99-9c0b-4EF8-bb6d-6bb9bd380A11}",
        "urn:uuid:A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
    };
    int n = (int)(sizeof spellings / sizeof *spellings);
    for (int i = 0; i < n; i++) {
        struct tdb_answer *a = tdb_upload_ok(
            &T, U, D, batch(chg(i + 1, "business", "users", i ? "UPDATE" : "INSERT", spellings[i], i,
                                tdb_printf(&T, "{\"n\":%d}", i)),
                            NULL));
        assert_applied(a, 0, i + 1, i + 1);
        tdb_answer_free(a);
    }
    ck_assert_int_eq(tdb_meta_count(&T, U), 1);
    ck_assert_int_eq(meta_version(U, "business", "users", PKX), n);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log WHERE pk_uuid::text = '" PKX "'"),
                     n);

    /* a conflict names the row canonically */
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(upd(100, "users", "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}", 1,
                                                             "{\"n\":0}"),
                                                         NULL));
    json_object *row = assert_conflict(a, 0, 100, "business", "users", PKX, n, false, NULL);
    ck_assert(tdb_json_eq(tdb_get(row, "payload"), tdb_printf(&T, "{\"n\":%d}", n - 1)));
    tdb_answer_free(a);

    /* and downloads show the canonical form */
    a = tdb_download_ok(&T, U, D, "include_self=true");
    ck_assert_int_eq(tdb_nchanges(a), n);
    for (int i = 0; i < n; i++)
        ck_assert_str_eq(tdb_str(tdb_change(a, i), "pk"), PKX);
    tdb_answer_free(a);
}
END_TEST

/* ==================================================================== body-level 400s */

struct bad_body {
    const char *name;
    const char *body;
    size_t len;                 /* 0 = strlen(body) */
    const char *err;            /* exact err text, or a prefix when prefix is true */
    bool prefix;
};

#define VALID_CHANGE                                                                                          \
    "{\"source_change_id\":1,\"schema\":\"business\",\"table\":\"users\",\"op\":\"INSERT\",\"pk\":\"" PK3 \
    "\",\"server_version\":0,\"payload\":{\"a\":1}}"

static const struct bad_body bad_bodies[] = {
    { "not JSON", "hello", 0, "invalid JSON at byte 0", true },
    { "empty body", "", 0, "invalid JSON", true },
    { "only white space", "  \n ", 0, "invalid JSON", true },
    { "truncated", "{\"changes\":[" VALID_CHANGE, 0, "invalid JSON", true },
    { "truncated in a string", "{\"changes\":[{\"source_change_id\":1,\"schema\":\"busi", 0, "invalid JSON", true },
    { "array body", "[" VALID_CHANGE "]", 0, "the request body must be a JSON object", false },
    { "string body", "\"changes\"", 0, "the request body must be a JSON object", false },
    { "number body", "42", 0, "the request body must be a JSON object", false },
    { "null body", "null", 0, "the request body must be a JSON object", false },
    { "changes object", "{\"changes\":{\"0\":" VALID_CHANGE "}}", 0, "changes must be an array", false },
    { "changes string", "{\"changes\":\"[]\"}", 0, "changes must be an array", false },
    { "changes number", "{\"changes\":1}", 0, "changes must be an array", false },
    { "change not an object", "{\"changes\":[" VALID_CHANGE ",[1]]}", 0, "changes[1] must be an object", false },
    { "change is a number", "{\"changes\":[" VALID_CHANGE ",7]}", 0, "changes[1] must be an object", false },
    { "change is null", "{\"changes\":[" VALID_CHANGE ",null]}", 0, "changes[1] must be an object", false },
    { "scid missing",
      "{\"changes\":[" VALID_CHANGE ",{\"schema\":\"business\",\"table\":\"users\",\"op\":\"INSERT\",\"pk\":\"" PK4
      "\",\"server_version\":0,\"payload\":{}}]}",
      0, "changes[1].source_change_id is required", false },
    { "scid string", "{\"changes\":[" VALID_CHANGE ",{\"source_change_id\":\"2\"}]}", 0,
      "changes[1].source_change_id must be an integer", false },
    { "scid fraction", "{\"changes\":[" VALID_CHANGE ",{\"source_change_id\":1.5}]}", 0,
      "changes[1].source_change_id must be an integer", false },
    { "scid 2.0", "{\"changes\":[" VALID_CHANGE ",{\"source_change_id\":2.0}]}", 0,
      "changes[1].source_change_id must be an integer", false },
    { "scid exponent", "{\"changes\":[" VALID_CHANGE ",{\"source_change_id\":1e3}]}", 0,
      "changes[1].source_change_id must be an integer", false },
    { "scid out of range", "{\"changes\":[" VALID_CHANGE ",{\"source_change_id\":9223372036854775808}]}", 0,
      "changes[1].source_change_id must be an integer", false },
    { "scid out of range negative", "{\"changes\":[" VALID_CHANGE ",{\"source_change_id\":-9223372036854775809}]}",
      0, "changes[1].source_change_id must be an integer", false },
    { "scid huge", "{\"changes\":[" VALID_CHANGE ",{\"source_change_id\":123456789012345678901234567890}]}", 0,
      "changes[1].source_change_id must be an integer", false },
    { "scid boolean", "{\"changes\":[" VALID_CHANGE ",{\"source_change_id\":true}]}", 0,
      "changes[1].source_change_id must be an integer", false },
    { "server_version string", "{\"changes\":[" VALID_CHANGE ",{\"source_change_id\":2,\"server_version\":\"1\"}]}",
      0, "changes[1].server_version must be an integer", false },
    { "server_version fraction", "{\"changes\":[" VALID_CHANGE ",{\"source_change_id\":2,\"server_version\":0.5}]}",
      0, "changes[1].server_version must be an integer", false },
    { "pk number", "{\"changes\":[" VALID_CHANGE ",{\"source_change_id\":2,\"pk\":12345}]}", 0,
      "changes[1].pk must be a string", false },
    { "pk object", "{\"changes\":[" VALID_CHANGE ",{\"source_change_id\":2,\"pk\":{}}]}", 0,
      "changes[1].pk must be a string", false },
    { "schema number", "{\"changes\":[" VALID_CHANGE ",{\"source_change_id\":2,\"schema\":1}]}", 0,
      "changes[1].schema must be a string", false },
    { "table array", "{\"changes\":[" VALID_CHANGE ",{\"source_change_id\":2,\"table\":[\"users\"]}]}", 0,
      "changes[1].table must be a string", false },
    { "op number", "{\"changes\":[" VALID_CHANGE ",{\"source_change_id\":2,\"op\":1}]}", 0,
      "changes[1].op must be a string", false },
    { "last_server_seq_seen string", "{\"last_server_seq_seen\":\"5\",\"changes\":[" VALID_CHANGE "]}", 0,
      "last_server_seq_seen must be an integer", false },
    { "last_server_seq_seen fraction", "{\"last_server_seq_seen\":5.5,\"changes\":[" VALID_CHANGE "]}", 0,
      "last_server_seq_seen must be an integer", false },
    { "invalid UTF-8 byte", "{\"changes\":[{\"source_change_id\":1,\"schema\":\"busi\xff\"}]}", 0, "invalid JSON",
      true },
    { "invalid UTF-8 in a payload",
      "{\"changes\":[{\"source_change_id\":1,\"schema\":\"business\",\"table\":\"users\",\"op\":\"INSERT\","
      "\"pk\":\"" PK3 "\",\"payload\":{\"a\":\"\xc3\x28\"}}]}",
      0, "invalid JSON", true },
    { "overlong UTF-8", "{\"changes\":[" VALID_CHANGE "],\"x\":\"\xc0\xaf\"}", 0, "invalid JSON", true },
    { "UTF-8 encoded surrogate", "{\"changes\":[" VALID_CHANGE "],\"x\":\"\xed\xa0\x80\"}", 0, "invalid JSON", true },
    { "raw control character", "{\"changes\":[" VALID_CHANGE "],\"x\":\"a\tb\"}", 0, "invalid JSON", true },
    { "raw NUL byte", "{\"changes\":[" VALID_CHANGE "],\"x\":\"a\0b\"}", 0, "invalid JSON", true },
    { "trailing garbage", "{\"changes\":[" VALID_CHANGE "]} x", 0, "invalid JSON", true },
    { "two objects", "{\"changes\":[" VALID_CHANGE "]}{}", 0, "invalid JSON", true },
    { "trailing comma", "{\"changes\":[" VALID_CHANGE ",]}", 0, "invalid JSON", true },
    { "single quotes", "{'changes':[]}", 0, "invalid JSON", true },
    { "leading zero", "{\"changes\":[" VALID_CHANGE "],\"last_server_seq_seen\":01}", 0, "invalid JSON", true },
    { "NaN", "{\"changes\":[" VALID_CHANGE "],\"last_server_seq_seen\":NaN}", 0, "invalid JSON", true },
    { "bad escape", "{\"changes\":[" VALID_CHANGE "],\"x\":\"\\q\"}", 0, "invalid JSON", true },
};

START_TEST(test_bad_body)
{
    const struct bad_body *bb = &bad_bodies[_i];
    /* something already stored, so the snapshot covers real rows */
    struct tdb_answer *a =
        tdb_upload_ok(&T, U, D, batch(ins(100, "users", PK1, "{\"a\":1}"), ins(101, "users", PK2, "{\"a\":2}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D2, batch(upd(100, "users", PK1, 1, "{\"a\":11}"), NULL));
    tdb_answer_free(a);
    char *before = tdb_snapshot(&T);

    size_t len = bb->len ? bb->len : strlen(bb->body);
    if (strcmp(bb->name, "raw NUL byte") == 0)
        len = strlen(bb->body) + 1 + strlen(bb->body + strlen(bb->body) + 1);
    a = tdb_upload_len(&T, U, D, bb->body, len);
    ck_assert_msg(a->outcome == SYNC_BAD_REQUEST, "%s: outcome %d, answer %s", bb->name, (int)a->outcome,
                  a->body ? a->body : a->err);
    ck_assert_msg(a->body == NULL, "%s: a 400 carries no answer", bb->name);
    if (bb->prefix)
        ck_assert_msg(strncmp(a->err, bb->err, strlen(bb->err)) == 0, "%s: err \"%s\" does not start with \"%s\"",
                      bb->name, a->err, bb->err);
    else
        ck_assert_msg(strcmp(a->err, bb->err) == 0, "%s: err \"%s\", expected \"%s\"", bb->name, a->err, bb->err);
    tdb_answer_free(a);
    ck_assert_msg(strcmp(tdb_snapshot(&T), before) == 0, "%s: the sidecar changed", bb->name);
    ck_assert_int_eq(tdb_log_count_pk(&T, U, PK3), 0);

    /* the connection is still usable afterwards */
    a = tdb_upload_ok(&T, U, D, batch(ins(102, "users", PK3, "{\"a\":3}"), NULL));
    assert_applied(a, 0, 102, 1);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_changes_missing_or_null)
{
    struct tdb_answer *a = tdb_upload_ok(&T, U, "other", batch(ins(1, "users", PK1, "{\"a\":1}"),
                                                               ins(2, "users", PK2, "{}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U2, D, batch(ins(1, "users", PK1, "{\"a\":1}"), ins(2, "users", PK2, "{}"),
                                       ins(3, "users", PK3, "{}"), NULL));
    tdb_answer_free(a);
    long long h = tdb_highest(&T, U);
    ck_assert_int_gt(h, 0);
    char *before = tdb_snapshot(&T);

    static const char *const bodies[] = {
        "{}",
        "{\"changes\":null}",
        "{\"changes\":[]}",
        "{\"last_server_seq_seen\":99}",
        "  {\"last_server_seq_seen\":null,\"changes\":null,\"unknown\":[1,{\"x\":2}]}\n",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        a = tdb_upload_ok(&T, U, D, bodies[i]);
        ck_assert_msg(tdb_json_eq(a->json, tdb_printf(&T, "{\"accepted\":true,\"highest_server_seq\":%lld,"
                                                          "\"statuses\":[]}", h)),
                      "%s answered %s", bodies[i], a->body);
        ck_assert_int_eq(tdb_nstatuses(a), 0);
        tdb_answer_free(a);
    }
    /* a user with nothing: 0 */
    a = tdb_upload_ok(&T, "nobody", D, "{}");
    ck_assert_int_eq(tdb_int(a->json, "highest_server_seq"), 0);
    assert_accepted(a, true);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);
}
END_TEST

START_TEST(test_unknown_fields_and_source_id_ignored)
{
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D,
        "{\"source_id\":\"evil\",\"extra\":{\"a\":[1,2]},\"changes\":[{\"source_change_id\":1,\"source_id\":\"evil\","
        "\"schema\":\"business\",\"table\":\"users\",\"op\":\"INSERT\",\"pk\":\"" PK1 "\",\"server_version\":0,"
        "\"payload\":{\"a\":1},\"whatever\":true,\"user_id\":\"" U2 "\"}]}");
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT source_id || '/' || user_id FROM sync.server_change_log"), D "/" U);
}
END_TEST

/* ==================================================================== batch size */

START_TEST(test_batch_exactly_limit)
{
    T.cfg.max_upload_changes = 3;
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D, batch(ins(1, "users", PK1, "{}"), ins(2, "users", PK2, "{}"), ins(3, "users", PK3, "{}"), NULL));
    ck_assert_int_eq(tdb_nstatuses(a), 3);
    for (int i = 0; i < 3; i++)
        assert_applied(a, i, i + 1, 1);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_log_count(&T, U), 3);
}
END_TEST

START_TEST(test_batch_too_large)
{
    T.cfg.max_upload_changes = 3;
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(10, "users", PK5, "{}"), NULL));
    tdb_answer_free(a);
    char *before = tdb_snapshot(&T);
    long long h = tdb_highest(&T, U);
    a = tdb_upload_ok(&T, U, D,
                      batch(ins(1, "users", PK1, "{}"), ins(2, "users", PK2, "{}"), ins(3, "users", PK3, "{}"),
                            chg(4, "nope", "nope", "INSERT", PK4, 0, "{}"), NULL));
    ck_assert_int_eq(tdb_nstatuses(a), 4);
    for (int i = 0; i < 4; i++)
        assert_bad_payload(a, i, i + 1, NULL, "batch too large");
    ck_assert_int_eq(tdb_int(a->json, "highest_server_seq"), h);
    ck_assert_int_eq(a->counts.applied, 0);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);
    ck_assert_int_eq(tdb_log_count(&T, U), 1);
}
END_TEST

/* Something stored first, so that the snapshot covers real rows: the user's highest server_id;
 * *before gets the snapshot. */
static long long stored_row(char **before)
{
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{}"), NULL));
    long long h = tdb_int(a->json, "highest_server_seq");
    tdb_answer_free(a);
    *before = tdb_snapshot(&T);
    return h;
}

/* The over-limit answer, byte for byte (SPEC §4): every change invalid/bad_payload with the same
 * message naming the count, in request order, with its scid as sent. */
START_TEST(test_batch_too_large_exact_text)
{
    T.cfg.max_upload_changes = 2;
    char *before;
    long long h = stored_row(&before);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, "{\"changes\":[{\"source_change_id\":-7},{\"source_change_id\":0,\"op\":\"DELETE\"},"
                                "{\"pk\":null,\"source_change_id\":9223372036854775807}]}");
    const char *msg = "batch too large: 3 changes; the limit is 2";
    strbuf_t want = STRBUF_INIT;
    sb_printf(&want, "{\"accepted\":true,\"highest_server_seq\":%lld,\"statuses\":[", h);
    const long long scids[] = { -7, 0, 9223372036854775807LL };
    for (int i = 0; i < 3; i++)
        sb_printf(&want, "%s{\"source_change_id\":%lld,\"status\":\"invalid\",\"message\":\"%s\",\"invalid\":"
                         "{\"reason\":\"bad_payload\",\"details\":{\"error\":\"%s\"}}}",
                  i ? "," : "", scids[i], msg, msg);
    sb_puts(&want, "]}");
    ck_assert_str_eq(a->body, want.data);
    ck_assert_int_eq(a->counts.invalid[INVALID_BAD_PAYLOAD], 3);
    sb_free(&want);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);
}
END_TEST

/* Over the limit, a malformed element is still a 400, wherever it is: every element is checked
 * before the batch is answered. */
START_TEST(test_batch_too_large_bad_element)
{
    T.cfg.max_upload_changes = 3;
    char *before;
    stored_row(&before);
    static const struct {
        const char *element, *err;
    } cases[] = {
        { "7", "changes[4] must be an object" },
        { "null", "changes[4] must be an object" },
        { "[]", "changes[4] must be an object" },
        { "{}", "changes[4].source_change_id is required" },
        { "{\"source_change_id\":1.5}", "changes[4].source_change_id must be an integer" },
        { "{\"source_change_id\":5,\"pk\":5}", "changes[4].pk must be a string" },
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const char *body = tdb_printf(&T, "{\"changes\":[%s,%s,%s,%s,%s,{\"source_change_id\":6}]}",
                                      ins(1, "users", PK1, "{}"), ins(2, "users", PK2, "{}"),
                                      ins(3, "users", PK3, "{}"), ins(4, "users", PK4, "{}"), cases[k].element);
        struct tdb_answer *a = tdb_upload(&T, U, D, body);
        ck_assert_msg(a->outcome == SYNC_BAD_REQUEST, "%s: outcome %d", cases[k].element, (int)a->outcome);
        ck_assert_ptr_null(a->body);
        ck_assert_str_eq(a->err, cases[k].err);
        tdb_answer_free(a);
        ck_assert_str_eq(tdb_snapshot(&T), before);
    }
}
END_TEST

/* Nesting is limited (the scanner recurses, JSON_MAX_DEPTH = 256 containers): one level below the
 * limit is accepted, the limit and a million levels are a 400, and nothing is written. */
START_TEST(test_deep_nesting)
{
    char *before;
    long long h = stored_row(&before);
    const long depths[] = { 255, 256, 1000000 };
    for (int k = 0; k < 3; k++) {
        long d = depths[k];
        strbuf_t sb = STRBUF_INIT;
        sb_puts(&sb, "{\"changes\":[],\"x\":");
        for (long i = 0; i < d; i++)
            sb_putc(&sb, '[');
        for (long i = 0; i < d; i++)
            sb_putc(&sb, ']');
        sb_putc(&sb, '}');
        struct tdb_answer *a = tdb_upload_len(&T, U, D, sb.data, sb.len);
        if (d < 256) {
            ck_assert_msg(a->outcome == SYNC_OK, "depth %ld: outcome %d (%s)", d, (int)a->outcome, a->err);
            ck_assert(tdb_json_eq(a->json, tdb_printf(&T, "{\"accepted\":true,\"highest_server_seq\":%lld,"
                                                          "\"statuses\":[]}", h)));
        } else {
            ck_assert_msg(a->outcome == SYNC_BAD_REQUEST, "depth %ld: outcome %d", d, (int)a->outcome);
            ck_assert_msg(strncmp(a->err, "invalid JSON at byte ", 21) == 0 && strstr(a->err, ": nesting too deep"),
                          "depth %ld: %s", d, a->err);
        }
        tdb_answer_free(a);
        sb_free(&sb);
        ck_assert_str_eq(tdb_snapshot(&T), before);
    }
}
END_TEST

/* Bodies of a million elements (issue #9): answered without memory per element. */

#define MILLION 1000000L
#define ARENA_SMALL (64 * 1024)   /* the whole arena of such an upload, whatever the count */

/* Expected answer text, produced piece by piece and compared with what arrives: the head, one
 * status per element (scid = scid_of(i)), the tail. */
struct expect_stream {
    long n, next;                 /* elements; next unit to produce (0 = head, n + 1 = tail) */
    long long highest;
    char msg[128];
    strbuf_t unit;
    size_t off;                   /* matched bytes of unit */
    size_t seen;                  /* bytes compared */
    bool mismatch;
};

static long long scid_of(long i)
{
    return i * 7 - 3;
}

static void expect_init(struct expect_stream *e, long n, long long highest, long limit)
{
    memset(e, 0, sizeof *e);
    e->n = n;
    e->highest = highest;
    snprintf(e->msg, sizeof e->msg, "batch too large: %ld changes; the limit is %ld", n, limit);
}

static bool expect_unit(struct expect_stream *e)
{
    sb_reset(&e->unit);
    e->off = 0;
    if (e->next > e->n + 1)
        return false;
    if (e->next == 0)
        sb_printf(&e->unit, "{\"accepted\":true,\"highest_server_seq\":%lld,\"statuses\":[", e->highest);
    else if (e->next <= e->n)
        sb_printf(&e->unit, "%s{\"source_change_id\":%lld,\"status\":\"invalid\",\"message\":\"%s\",\"invalid\":"
                            "{\"reason\":\"bad_payload\",\"details\":{\"error\":\"%s\"}}}",
                  e->next > 1 ? "," : "", scid_of(e->next - 1), e->msg, e->msg);
    else
        sb_puts(&e->unit, "]}");
    e->next++;
    return true;
}

static void expect_bytes(struct expect_stream *e, const char *data, size_t len)
{
    while (len && !e->mismatch) {
        if (e->off == e->unit.len && !expect_unit(e)) {
            e->mismatch = true;   /* more than expected */
            break;
        }
        size_t k = e->unit.len - e->off < len ? e->unit.len - e->off : len;
        if (memcmp(e->unit.data + e->off, data, k) != 0)
            e->mismatch = true;
        e->off += k;
        e->seen += k;
        data += k;
        len -= k;
    }
}

static bool expect_complete(struct expect_stream *e)
{
    return !e->mismatch && e->next == e->n + 2 && e->off == e->unit.len;
}

/* {"changes":[E,E,...]} of n copies of element (or, when element is NULL, {"source_change_id":S}
 * with S = scid_of(i)). */
static char *million_body(long n, const char *element, size_t *len)
{
    strbuf_t sb = STRBUF_INIT;
    sb_puts(&sb, "{\"changes\":[");
    for (long i = 0; i < n; i++) {
        if (i)
            sb_putc(&sb, ',');
        if (element)
            sb_puts(&sb, element);
        else
            sb_printf(&sb, "{\"source_change_id\":%lld}", scid_of(i));
    }
    sb_puts(&sb, "]}");
    *len = sb.len;
    return sb.data;
}

/* sync_upload as tdb_upload_len calls it, also giving the arena's size afterwards (all the upload
 * allocated outside the answer); the answer stays raw in *out. */
static enum sync_outcome upload_measured(const char *body, size_t len, strbuf_t *out, struct upload_counts *counts,
                                         char *err, size_t errlen, size_t *arena_bytes)
{
    struct identity who = tdb_who(U, D);
    arena_t *arena = arena_new(16384);
    struct sync_request rq = tdb_request(&T, &who, arena);
    enum sync_outcome o = sync_upload(&rq, body, len, out, counts, err, errlen);
    *arena_bytes = arena_bytes_in_use(arena);
    arena_free(arena);
    ck_assert(PQtransactionStatus(T.conn) == PQTRANS_IDLE);
    return o;
}

/* A million non-objects, or a million empty objects: 400 for the first element, and the upload's
 * memory does not grow with the count (it used to allocate a change per element first). */
START_TEST(test_million_bad_elements_400)
{
    char *before;
    stored_row(&before);
    static const struct {
        const char *element, *err;
    } cases[] = {
        { "0", "changes[0] must be an object" },
        { "{}", "changes[0].source_change_id is required" },
    };
    for (size_t k = 0; k < 2; k++) {
        size_t len;
        char *body = million_body(MILLION, cases[k].element, &len);
        strbuf_t out = STRBUF_INIT;
        struct upload_counts counts;
        char err[256] = "";
        size_t arena;
        enum sync_outcome o = upload_measured(body, len, &out, &counts, err, sizeof err, &arena);
        ck_assert_int_eq(o, SYNC_BAD_REQUEST);
        ck_assert_str_eq(err, cases[k].err);
        ck_assert_uint_eq(out.len, 0);
        ck_assert_msg(arena <= ARENA_SMALL, "a million %s used %zu bytes of arena", cases[k].element, arena);
        sb_free(&out);
        free(body);
        ck_assert_str_eq(tdb_snapshot(&T), before);
    }
}
END_TEST

/* A million well-formed changes over the limit: 200 with a million statuses, exactly as for a
 * small oversized batch, nothing written, and the arena does not grow with the count. */
START_TEST(test_million_over_limit)
{
    char *before;
    long long h = stored_row(&before);
    size_t len;
    char *body = million_body(MILLION, NULL, &len);
    strbuf_t out = STRBUF_INIT;
    struct upload_counts counts;
    char err[256] = "";
    size_t arena;
    enum sync_outcome o = upload_measured(body, len, &out, &counts, err, sizeof err, &arena);
    ck_assert_msg(o == SYNC_OK, "outcome %d: %s", (int)o, err);
    struct expect_stream e;
    expect_init(&e, MILLION, h, T.cfg.max_upload_changes);
    expect_bytes(&e, out.data, out.len);
    ck_assert_msg(expect_complete(&e), "the answer differs from the expected text at byte %zu (of %zu)", e.seen,
                  out.len);
    ck_assert_uint_eq(counts.invalid[INVALID_BAD_PAYLOAD], MILLION);
    ck_assert_uint_eq(counts.applied, 0);
    ck_assert_msg(arena <= ARENA_SMALL, "a million changes used %zu bytes of arena", arena);
    sb_free(&e.unit);
    sb_free(&out);
    free(body);
    ck_assert_str_eq(tdb_snapshot(&T), before);
}
END_TEST

/* The same through a sink (how the server sends it): the exact length first, then the answer in
 * pieces, never held whole. */
struct sink_record {
    struct expect_stream e;
    int begins;
    size_t announced;
    size_t largest_piece;
    bool write_before_begin;
};

static void record_begin(void *ud, size_t len)
{
    struct sink_record *r = ud;
    r->begins++;
    r->announced = len;
}

static void record_write(void *ud, const char *data, size_t len)
{
    struct sink_record *r = ud;
    if (!r->begins)
        r->write_before_begin = true;
    if (len > r->largest_piece)
        r->largest_piece = len;
    expect_bytes(&r->e, data, len);
}

START_TEST(test_million_over_limit_streamed)
{
    char *before;
    long long h = stored_row(&before);
    size_t len;
    char *body = million_body(MILLION, NULL, &len);
    struct sink_record rec;
    memset(&rec, 0, sizeof rec);
    expect_init(&rec.e, MILLION, h, T.cfg.max_upload_changes);
    const struct sync_sink sink = { record_begin, record_write, &rec };
    struct identity who = tdb_who(U, D);
    arena_t *arena = arena_new(16384);
    struct sync_request rq = tdb_request(&T, &who, arena);
    rq.sink = &sink;
    strbuf_t out = STRBUF_INIT;
    struct upload_counts counts;
    char err[256] = "";
    enum sync_outcome o = sync_upload(&rq, body, len, &out, &counts, err, sizeof err);
    ck_assert_msg(o == SYNC_OK, "outcome %d: %s", (int)o, err);
    ck_assert_int_eq(rec.begins, 1);
    ck_assert(!rec.write_before_begin);
    ck_assert_msg(expect_complete(&rec.e), "the answer differs from the expected text at byte %zu", rec.e.seen);
    ck_assert_uint_eq(rec.announced, rec.e.seen);
    ck_assert_uint_eq(out.len, 0);
    ck_assert_msg(out.cap <= 256 * 1024 && rec.largest_piece <= 256 * 1024,
                  "the answer was held: buffer %zu bytes, largest piece %zu", out.cap, rec.largest_piece);
    ck_assert_uint_le(arena_bytes_in_use(arena), ARENA_SMALL);
    ck_assert_uint_eq(counts.invalid[INVALID_BAD_PAYLOAD], MILLION);
    arena_free(arena);
    sb_free(&out);
    sb_free(&rec.e.unit);
    free(body);
    ck_assert_str_eq(tdb_snapshot(&T), before);

    /* a batch within the limit is not streamed: its answer is built in out as always */
    memset(&rec, 0, sizeof rec);
    arena = arena_new(16384);
    rq.arena = arena;
    const char *small = batch(ins(2, "users", PK2, "{}"), NULL);
    o = sync_upload(&rq, small, strlen(small), &out, &counts, err, sizeof err);
    ck_assert_int_eq(o, SYNC_OK);
    ck_assert_int_eq(rec.begins, 0);
    ck_assert_ptr_nonnull(strstr(sb_cstr(&out), "\"source_change_id\":2,\"status\":\"applied\",\"new_server_version\":1"));
    arena_free(arena);
    sb_free(&out);
}
END_TEST

/* ==================================================================== semantics */

START_TEST(test_insert_update_delete_round_trip)
{
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{\"name\":\"John\"}"), NULL));
    assert_applied(a, 0, 1, 1);
    assert_accepted(a, true);
    assert_highest(a, U);
    ck_assert_int_eq(a->counts.applied, 1);
    tdb_answer_free(a);
    ck_assert_int_eq(meta_version(U, "business", "users", PK1), 1);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK1), "f");
    ck_assert(jsonb_eq(state_payload(U, "business", "users", PK1), "{\"name\":\"John\"}"));

    a = tdb_upload_ok(&T, U, D, batch(upd(2, "users", PK1, 1, "{\"name\":\"Jane\"}"), NULL));
    assert_applied(a, 0, 2, 2);
    assert_highest(a, U);
    tdb_answer_free(a);
    ck_assert(jsonb_eq(state_payload(U, "business", "users", PK1), "{\"name\":\"Jane\"}"));

    a = tdb_upload_ok(&T, U, D, batch(del(3, "users", PK1, 2), NULL));
    assert_applied(a, 0, 3, 3);
    assert_highest(a, U);
    tdb_answer_free(a);
    ck_assert_int_eq(meta_version(U, "business", "users", PK1), 3);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK1), "t");
    ck_assert_str_eq(state_payload(U, "business", "users", PK1), "<null>");
    ck_assert_str_eq(log_of(U, PK1), "INSERT:1,UPDATE:2,DELETE:3");
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log WHERE source_id = '" D "'"
                                      " AND user_id = '" U "' AND source_change_id IN (1,2,3)"),
                     3);
    ck_assert_int_eq(
        tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log WHERE op = 'DELETE' AND payload IS NULL"), 1);
    /* an UPDATE of a never-seen row at version 0 creates it (version gate only) */
    a = tdb_upload_ok(&T, U, D, batch(upd(4, "users", PK2, 0, "{\"name\":\"new\"}"), NULL));
    assert_applied(a, 0, 4, 1);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_idempotent_whole_batch)
{
    const char *body = batch(ins(1, "users", PK1, "{\"a\":1}"), ins(2, "users", PK2, "{\"a\":2}"),
                             upd(3, "users", PK1, 1, "{\"a\":3}"), del(4, "users", PK2, 1), NULL);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, body);
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    assert_applied(a, 2, 3, 2);
    assert_applied(a, 3, 4, 2);
    long long h = tdb_int(a->json, "highest_server_seq");
    tdb_answer_free(a);
    char *before = tdb_snapshot(&T);

    for (int round = 0; round < 2; round++) {
        a = tdb_upload_ok(&T, U, D, body);
        ck_assert_int_eq(tdb_nstatuses(a), 4);
        for (int i = 0; i < 4; i++)
            assert_idempotent(a, i, i + 1);
        ck_assert_int_eq(tdb_int(a->json, "highest_server_seq"), h);
        ck_assert_int_eq(a->counts.applied, 0);
        assert_accepted(a, true);
        tdb_answer_free(a);
        ck_assert_str_eq(tdb_snapshot(&T), before);
    }
    ck_assert_int_eq(tdb_log_count(&T, U), 4);

    /* the scid is per device: the same scids from another device are new changes (and conflict) */
    a = tdb_upload_ok(&T, U, D2, body);
    assert_conflict(a, 0, 1, "business", "users", PK1, 2, false, NULL);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_idempotent_partial_batch)
{
    struct tdb_answer *a =
        tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{\"a\":1}"), ins(2, "users", PK2, "{\"a\":2}"), NULL));
    tdb_answer_free(a);
    /* the client lost the answer and resends part of it with new changes */
    a = tdb_upload_ok(&T, U, D,
                      batch(ins(2, "users", PK2, "{\"a\":2}"), ins(3, "users", PK3, "{\"a\":3}"),
                            upd(4, "users", PK1, 1, "{\"a\":4}"), NULL));
    assert_idempotent(a, 0, 2);
    assert_applied(a, 1, 3, 1);
    assert_applied(a, 2, 4, 2);
    assert_highest(a, U);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_log_count(&T, U), 4);
    ck_assert_str_eq(log_of(U, PK2), "INSERT:1");
    ck_assert_str_eq(log_of(U, PK1), "INSERT:1,UPDATE:2");
}
END_TEST

START_TEST(test_idempotent_reordered)
{
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D, batch(ins(1, "users", PK1, "{\"a\":1}"), ins(2, "users", PK2, "{\"a\":2}"),
                        ins(3, "users", PK3, "{\"a\":3}"), NULL));
    tdb_answer_free(a);
    char *before = tdb_snapshot(&T);
    a = tdb_upload_ok(&T, U, D,
                      batch(ins(3, "users", PK3, "{\"a\":3}"), ins(1, "users", PK1, "{\"a\":1}"),
                            ins(2, "users", PK2, "{\"a\":2}"), NULL));
    assert_idempotent(a, 0, 3);
    assert_idempotent(a, 1, 1);
    assert_idempotent(a, 2, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);
    /* idempotency is by scid alone: a replay with a different content is still not applied */
    a = tdb_upload_ok(&T, U, D, batch(upd(2, "users", PK2, 1, "{\"a\":\"changed\"}"), NULL));
    assert_idempotent(a, 0, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);
}
END_TEST

START_TEST(test_same_scid_twice_in_batch)
{
    struct tdb_answer *a =
        tdb_upload_ok(&T, U, D, batch(ins(7, "users", PK1, "{\"a\":1}"), ins(7, "users", PK2, "{\"a\":2}"), NULL));
    assert_applied(a, 0, 7, 1);
    assert_idempotent(a, 1, 7);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_log_count(&T, U), 1);
    ck_assert_int_eq(tdb_log_count_pk(&T, U, PK1), 1);
    ck_assert_int_eq(tdb_log_count_pk(&T, U, PK2), 0);
    ck_assert_int_eq(meta_version(U, "business", "users", PK2), -1);

    /* the same change twice: one log row */
    a = tdb_upload_ok(&T, U, D, batch(upd(8, "users", PK1, 1, "{\"a\":3}"), upd(8, "users", PK1, 1, "{\"a\":3}"),
                                      NULL));
    assert_applied(a, 0, 8, 2);
    assert_idempotent(a, 1, 8);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_log_count(&T, U), 2);
}
END_TEST

static void seed_row_at_version(const char *pk, int version, const char *last_payload)
{
    /* INSERT then UPDATEs up to version; the last payload is last_payload */
    for (int v = 0; v < version; v++) {
        const char *p = v == version - 1 ? last_payload : tdb_printf(&T, "{\"v\":%d}", v);
        struct tdb_answer *a = tdb_upload_ok(
            &T, U, D, batch(chg(1000 + v + 100 * (pk[0] - '0'), "business", "users", v ? "UPDATE" : "INSERT", pk, v, p),
                            NULL));
        assert_applied(a, 0, 1000 + v + 100 * (pk[0] - '0'), v + 1);
        tdb_answer_free(a);
    }
}

START_TEST(test_conflict_update_stale)
{
    seed_row_at_version(PK1, 2, "{\"name\":\"current\",\"n\":[1,2]}");
    char *before = tdb_snapshot(&T);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D2, batch(upd(1, "users", PK1, 1, "{\"name\":\"stale\"}"), NULL));
    json_object *row = assert_conflict(a, 0, 1, "business", "users", PK1, 2, false, NULL);
    ck_assert_msg(tdb_json_eq(tdb_get(row, "payload"), "{\"name\":\"current\",\"n\":[1,2]}"), "%s", a->body);
    ck_assert_int_eq(a->counts.conflicts, 1);
    assert_accepted(a, true);
    assert_highest(a, U);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);

    /* a version from the future conflicts too */
    a = tdb_upload_ok(&T, U, D2, batch(upd(2, "users", PK1, 3, "{\"name\":\"future\"}"), NULL));
    assert_conflict(a, 0, 2, "business", "users", PK1, 2, false, NULL);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);
}
END_TEST

START_TEST(test_conflict_delete_stale)
{
    seed_row_at_version(PK1, 3, "{\"name\":\"v3\"}");
    char *before = tdb_snapshot(&T);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D2, batch(del(1, "users", PK1, 2), NULL));
    json_object *row = assert_conflict(a, 0, 1, "business", "users", PK1, 3, false, NULL);
    ck_assert(tdb_json_eq(tdb_get(row, "payload"), "{\"name\":\"v3\"}"));
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK1), "f");
}
END_TEST

START_TEST(test_conflict_insert_existing)
{
    seed_row_at_version(PK1, 1, "{\"name\":\"first\"}");
    char *before = tdb_snapshot(&T);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D2, batch(ins(1, "users", PK1, "{\"name\":\"second\"}"), NULL));
    json_object *row = assert_conflict(a, 0, 1, "business", "users", PK1, 1, false, NULL);
    ck_assert(tdb_json_eq(tdb_get(row, "payload"), "{\"name\":\"first\"}"));
    /* server_version is a JSON number */
    ck_assert(json_object_is_type(tdb_get(row, "server_version"), json_type_int));
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);
}
END_TEST

START_TEST(test_conflict_never_seen_row)
{
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(upd(1, "users", PK1, 5, "{\"a\":1}"),
                                                         chg(2, "business", "users", "INSERT", PK2, 1, "{}"), NULL));
    json_object *row = assert_conflict(a, 0, 1, "business", "users", PK1, 0, false, NULL);
    ck_assert_msg(tdb_is_null(row, "payload"), "payload must be null: %s", a->body);
    row = assert_conflict(a, 1, 2, "business", "users", PK2, 0, false, NULL);
    ck_assert(tdb_is_null(row, "payload"));
    ck_assert_int_eq(tdb_int(a->json, "highest_server_seq"), 0);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_log_count(&T, NULL), 0);
    ck_assert_int_eq(tdb_meta_count(&T, NULL), 0);
    ck_assert_int_eq(tdb_state_count(&T, NULL), 0);
}
END_TEST

START_TEST(test_conflict_deleted_row)
{
    seed_row_at_version(PK1, 2, "{\"a\":2}");
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(del(1, "users", PK1, 2), NULL));
    assert_applied(a, 0, 1, 3);
    tdb_answer_free(a);
    char *before = tdb_snapshot(&T);
    /* an upsert of the deleted row with a stale version, an insert at 0, a second delete */
    a = tdb_upload_ok(&T, U, D2, batch(upd(1, "users", PK1, 2, "{\"a\":9}"), ins(2, "users", PK1, "{}"),
                                       del(3, "users", PK1, 2), NULL));
    json_object *row = assert_conflict(a, 0, 1, "business", "users", PK1, 3, true, NULL);
    ck_assert_msg(tdb_is_null(row, "payload"), "payload of a deleted row is null: %s", a->body);
    row = assert_conflict(a, 1, 2, "business", "users", PK1, 3, true, NULL);
    ck_assert(tdb_is_null(row, "payload"));
    row = assert_conflict(a, 2, 3, "business", "users", PK1, 3, true, NULL);
    ck_assert(tdb_is_null(row, "payload"));
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);
}
END_TEST

START_TEST(test_conflict_scid_not_consumed)
{
    seed_row_at_version(PK1, 2, "{\"a\":2}");
    struct tdb_answer *a = tdb_upload_ok(&T, U, D2, batch(upd(5, "users", PK1, 1, "{\"a\":\"mine\"}"), NULL));
    assert_conflict(a, 0, 5, "business", "users", PK1, 2, false, NULL);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log WHERE source_id = '" D2 "'"), 0);
    /* rebased retry with the same scid */
    a = tdb_upload_ok(&T, U, D2, batch(upd(5, "users", PK1, 2, "{\"a\":\"mine\"}"), NULL));
    assert_applied(a, 0, 5, 3);
    tdb_answer_free(a);
    ck_assert(jsonb_eq(state_payload(U, "business", "users", PK1), "{\"a\":\"mine\"}"));
    /* and now it is consumed */
    a = tdb_upload_ok(&T, U, D2, batch(upd(5, "users", PK1, 3, "{\"a\":\"again\"}"), NULL));
    assert_idempotent(a, 0, 5);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log WHERE source_id = '" D2 "'"), 1);
    ck_assert_int_eq(meta_version(U, "business", "users", PK1), 3);

    /* a conflicting delete's scid is not consumed either */
    a = tdb_upload_ok(&T, U, D2, batch(del(6, "users", PK1, 1), NULL));
    assert_conflict(a, 0, 6, "business", "users", PK1, 3, false, NULL);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D2, batch(del(6, "users", PK1, 3), NULL));
    assert_applied(a, 0, 6, 4);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_delete_never_seen)
{
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(9, "users", PK5, "{}"), NULL));
    tdb_answer_free(a);
    char *before = tdb_snapshot(&T);
    long long h = tdb_highest(&T, U);
    a = tdb_upload_ok(&T, U, D, batch(del(1, "users", PK1, 0), del(2, "users", PK2, 4), NULL));
    assert_idempotent(a, 0, 1);
    assert_idempotent(a, 1, 2);
    ck_assert_int_eq(tdb_int(a->json, "highest_server_seq"), h);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);
    ck_assert_int_eq(meta_version(U, "business", "users", PK1), -1);
}
END_TEST

START_TEST(test_resurrection)
{
    seed_row_at_version(PK1, 1, "{\"name\":\"alive\"}");
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(del(1, "users", PK1, 1), NULL));
    assert_applied(a, 0, 1, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(state_payload(U, "business", "users", PK1), "<null>");

    a = tdb_upload_ok(&T, U, D2, batch(chg(1, "business", "users", "INSERT", PK1, 2, "{\"name\":\"back\"}"), NULL));
    assert_applied(a, 0, 1, 3);
    tdb_answer_free(a);
    ck_assert_int_eq(meta_version(U, "business", "users", PK1), 3);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK1), "f");
    ck_assert(jsonb_eq(state_payload(U, "business", "users", PK1), "{\"name\":\"back\"}"));
    ck_assert_str_eq(log_of(U, PK1), "INSERT:1,DELETE:2,INSERT:3");

    /* an UPDATE at the right version resurrects as well */
    a = tdb_upload_ok(&T, U, D, batch(del(2, "users", PK1, 3), NULL));
    assert_applied(a, 0, 2, 4);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D, batch(upd(3, "users", PK1, 4, "{\"name\":\"again\"}"), NULL));
    assert_applied(a, 0, 3, 5);
    tdb_answer_free(a);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK1), "f");
}
END_TEST

START_TEST(test_chain_in_one_batch)
{
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D, batch(ins(1, "users", PK1, "{\"s\":1}"), upd(2, "users", PK1, 1, "{\"s\":2}"),
                        del(3, "users", PK1, 2), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 2);
    assert_applied(a, 2, 3, 3);
    assert_highest(a, U);
    tdb_answer_free(a);
    ck_assert_int_eq(meta_version(U, "business", "users", PK1), 3);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK1), "t");
    ck_assert_str_eq(state_payload(U, "business", "users", PK1), "<null>");
    ck_assert_int_eq(tdb_state_count(&T, U), 0);
    ck_assert_str_eq(log_of(U, PK1), "INSERT:1,UPDATE:2,DELETE:3");
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(coalesce(payload::text, 'null'), ';' ORDER BY server_id)"
                                   " FROM sync.server_change_log"),
                     "{\"s\": 1};{\"s\": 2};null");

    /* a chain of updates ending live: the after-image is the last one */
    a = tdb_upload_ok(&T, U, D,
                      batch(ins(4, "users", PK2, "{\"s\":1}"), upd(5, "users", PK2, 1, "{\"s\":2}"),
                            upd(6, "users", PK2, 2, "{\"s\":3}"), NULL));
    assert_applied(a, 2, 6, 3);
    tdb_answer_free(a);
    ck_assert(jsonb_eq(state_payload(U, "business", "users", PK2), "{\"s\":3}"));
    ck_assert_int_eq(meta_version(U, "business", "users", PK2), 3);
}
END_TEST

START_TEST(test_chain_middle_conflict)
{
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D,
        batch(ins(1, "users", PK1, "{\"s\":1}"), upd(2, "users", PK1, 0, "{\"s\":\"stale\"}"),
              upd(3, "users", PK1, 1, "{\"s\":3}"), NULL));
    assert_applied(a, 0, 1, 1);
    json_object *row = assert_conflict(a, 1, 2, "business", "users", PK1, 1, false, NULL);
    ck_assert_msg(tdb_json_eq(tdb_get(row, "payload"), "{\"s\":1}"), "the conflict shows the row as found: %s",
                  a->body);
    assert_applied(a, 2, 3, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(log_of(U, PK1), "INSERT:1,UPDATE:2");
    ck_assert(jsonb_eq(state_payload(U, "business", "users", PK1), "{\"s\":3}"));
    ck_assert_int_eq(meta_version(U, "business", "users", PK1), 2);

    /* the conflicting scid is free: retry it */
    a = tdb_upload_ok(&T, U, D, batch(upd(2, "users", PK1, 2, "{\"s\":\"rebased\"}"), NULL));
    assert_applied(a, 0, 2, 3);
    tdb_answer_free(a);

    /* a delete in the middle of a chain that conflicts: the upsert after it still applies */
    a = tdb_upload_ok(&T, U, D, batch(upd(10, "users", PK1, 3, "{\"s\":4}"), del(11, "users", PK1, 3), NULL));
    assert_applied(a, 0, 10, 4);
    row = assert_conflict(a, 1, 11, "business", "users", PK1, 4, false, NULL);
    ck_assert(tdb_json_eq(tdb_get(row, "payload"), "{\"s\":4}"));
    tdb_answer_free(a);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK1), "f");
}
END_TEST

START_TEST(test_mixed_batch_partial_conflicts)
{
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D,
        batch(ins(1, "users", PK1, "{\"u\":1}"), chg(2, "business", "posts", "INSERT", PK2, 0, "{\"p\":1}"),
              chg(3, "public", "notes", "INSERT", PK3, 0, "{\"n\":1}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D2,
                      batch(chg(1, "public", "notes", "UPDATE", PK3, 0, "{\"n\":\"stale\"}"),     /* conflict */
                            upd(2, "users", PK1, 1, "{\"u\":2}"),                                 /* applied 2 */
                            chg(3, "business", "posts", "DELETE", PK2, 5, NULL),                  /* conflict */
                            chg(4, "business", "posts", "INSERT", PK4, 0, "{\"p\":4}"),           /* applied 1 */
                            chg(5, "business", "users", "UPDATE", "bad", 0, "{}"),                /* invalid */
                            chg(6, "public", "notes", "DELETE", PK3, 1, NULL),                    /* applied 2 */
                            chg(7, "business", "posts", "UPDATE", PK2, 1, "{\"p\":2}"),           /* applied 2 */
                            NULL));
    ck_assert_int_eq(tdb_nstatuses(a), 7);
    json_object *row = assert_conflict(a, 0, 1, "public", "notes", PK3, 1, false, NULL);
    ck_assert(tdb_json_eq(tdb_get(row, "payload"), "{\"n\":1}"));
    assert_applied(a, 1, 2, 2);
    /* the conflict shows the row as the delete found it: after the UPDATE of scid 7 (upserts first) */
    row = assert_conflict(a, 2, 3, "business", "posts", PK2, 2, false, NULL);
    ck_assert_msg(tdb_json_eq(tdb_get(row, "payload"), "{\"p\":2}"), "%s", a->body);
    assert_applied(a, 3, 4, 1);
    assert_bad_payload(a, 4, 5, NULL, "not a UUID");
    assert_applied(a, 5, 6, 2);
    assert_applied(a, 6, 7, 2);
    assert_accepted(a, true);
    assert_highest(a, U);
    ck_assert_int_eq(a->counts.applied, 4);
    ck_assert_int_eq(a->counts.conflicts, 2);
    ck_assert_int_eq(a->counts.invalid[INVALID_BAD_PAYLOAD], 1);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log WHERE source_id = '" D2 "'"), 4);
    ck_assert_str_eq(meta_deleted(U, "public", "notes", PK3), "t");
    ck_assert(jsonb_eq(state_payload(U, "business", "posts", PK2), "{\"p\":2}"));
}
END_TEST

START_TEST(test_upserts_before_deletes)
{
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{\"row\":\"A\"}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D, batch(del(2, "users", PK1, 1), upd(3, "users", PK2, 0, "{\"row\":\"B\"}"), NULL));
    assert_applied(a, 0, 2, 2);
    assert_applied(a, 1, 3, 1);
    tdb_answer_free(a);
    ck_assert_str_eq(log_scids(U), "1,3,2");
    ck_assert_int_lt(tdb_query_ll(&T, "SELECT server_id FROM sync.server_change_log WHERE pk_uuid = '" PK2 "'"),
                     tdb_query_ll(&T, "SELECT server_id FROM sync.server_change_log WHERE op = 'DELETE'"));

    /* a delete before an insert of the same row in one batch: the insert applies first */
    a = tdb_upload_ok(&T, U, D, batch(del(4, "users", PK3, 1), ins(5, "users", PK3, "{}"), NULL));
    assert_applied(a, 0, 4, 2);
    assert_applied(a, 1, 5, 1);
    tdb_answer_free(a);
    ck_assert_str_eq(log_of(U, PK3), "INSERT:1,DELETE:2");

    /* [DELETE sv 1, UPDATE sv 2] of one row: the UPDATE is judged first, against version 1 */
    a = tdb_upload_ok(&T, U, D, batch(ins(6, "users", PK4, "{\"v\":1}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D, batch(del(7, "users", PK4, 1), upd(8, "users", PK4, 2, "{\"v\":2}"), NULL));
    assert_applied(a, 0, 7, 2);
    json_object *row = assert_conflict(a, 1, 8, "business", "users", PK4, 1, false, NULL);
    ck_assert(tdb_json_eq(tdb_get(row, "payload"), "{\"v\":1}"));
    tdb_answer_free(a);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK4), "t");

    /* two deletes of one row at the same version: the second finds it deleted */
    a = tdb_upload_ok(&T, U, D, batch(ins(9, "users", PK5, "{}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D, batch(del(10, "users", PK5, 1), del(11, "users", PK5, 1), NULL));
    assert_applied(a, 0, 10, 2);
    row = assert_conflict(a, 1, 11, "business", "users", PK5, 2, true, NULL);
    ck_assert(tdb_is_null(row, "payload"));
    tdb_answer_free(a);
    ck_assert_str_eq(log_of(U, PK5), "INSERT:1,DELETE:2");
}
END_TEST

START_TEST(test_apply_order_tables)
{
    /* no foreign keys: tables order by schema.table name (business.posts < business.users <
     * public.notes), deletes in reverse, request order within a table */
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D,
        batch(chg(1, "public", "notes", "INSERT", PK1, 0, "{}"), chg(2, "business", "users", "INSERT", PK2, 0, "{}"),
              chg(3, "business", "posts", "INSERT", PK3, 0, "{}"), chg(4, "business", "users", "INSERT", PK4, 0, "{}"),
              chg(5, "business", "posts", "INSERT", PK5, 0, "{}"), NULL));
    for (int i = 0; i < 5; i++)
        assert_applied(a, i, i + 1, 1);
    tdb_answer_free(a);
    ck_assert_str_eq(log_scids(U), "3,5,2,4,1");

    a = tdb_upload_ok(&T, U, D,
                      batch(chg(6, "business", "posts", "DELETE", PK3, 1, NULL),
                            chg(7, "public", "notes", "DELETE", PK1, 1, NULL),
                            chg(8, "business", "users", "DELETE", PK2, 1, NULL),
                            chg(9, "business", "posts", "UPDATE", PK5, 1, "{}"),
                            chg(10, "business", "users", "DELETE", PK4, 1, NULL), NULL));
    tdb_answer_free(a);
    ck_assert_str_eq(log_scids(U), "3,5,2,4,1,9,7,8,10,6");
}
END_TEST

START_TEST(test_highest_across_devices)
{
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{}"), NULL));
    long long h1 = tdb_int(a->json, "highest_server_seq");
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D2, batch(ins(1, "users", PK2, "{}"), chg(2, "public", "notes", "INSERT", PK3, 0, "{}"),
                                       NULL));
    long long h2 = tdb_int(a->json, "highest_server_seq");
    assert_highest(a, U);
    tdb_answer_free(a);
    ck_assert_int_gt(h2, h1);
    /* another user's writes do not move it */
    a = tdb_upload_ok(&T, U2, D, batch(ins(1, "users", PK1, "{}"), ins(2, "users", PK2, "{}"), NULL));
    tdb_answer_free(a);
    /* device D writes nothing new (a conflict and an idempotent change): still the user's max */
    a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{}"), ins(5, "users", PK2, "{}"), NULL));
    assert_idempotent(a, 0, 1);
    assert_conflict(a, 1, 5, "business", "users", PK2, 1, false, NULL);
    ck_assert_int_eq(tdb_int(a->json, "highest_server_seq"), h2);
    assert_highest(a, U);
    tdb_answer_free(a);
    /* only invalid changes: still the user's max */
    a = tdb_upload_ok(&T, U, D, batch(ins(6, "users", "x", "{}"), NULL));
    ck_assert_int_eq(tdb_int(a->json, "highest_server_seq"), h2);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D, batch(upd(7, "users", PK1, 1, "{}"), NULL));
    assert_highest(a, U);
    ck_assert_int_gt(tdb_int(a->json, "highest_server_seq"), h2);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_accepted_flag)
{
    /* conflicts and bad payloads leave accepted true */
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D, batch(ins(2, "users", PK1, "{}"), ins(3, "users", "x", "{}"),
                                      chg(4, "B-B", "t", "INSERT", PK2, 0, "{}"), NULL));
    assert_conflict(a, 0, 2, "business", "users", PK1, 1, false, NULL);
    assert_accepted(a, true);
    tdb_answer_free(a);
    /* one unregistered table anywhere in the batch: false, the rest applied */
    a = tdb_upload_ok(&T, U, D, batch(ins(5, "users", PK2, "{}"), ins(6, "users", PK3, "{}"),
                                      chg(7, "public", "users", "INSERT", PK4, 0, "{}"), NULL));
    assert_applied(a, 0, 5, 1);
    assert_applied(a, 1, 6, 1);
    assert_invalid(a, 2, 7, "unregistered_table");
    assert_accepted(a, false);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_log_count(&T, U), 3);
}
END_TEST

START_TEST(test_users_isolated)
{
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{\"owner\":\"alice\"}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D, batch(upd(2, "users", PK1, 1, "{\"owner\":\"alice2\"}"), NULL));
    long long ha = tdb_int(a->json, "highest_server_seq");
    tdb_answer_free(a);

    /* same pk, same device name, same scid: an independent row of bob's */
    a = tdb_upload_ok(&T, U2, D, batch(ins(1, "users", PK1, "{\"owner\":\"bob\"}"), NULL));
    assert_applied(a, 0, 1, 1);
    long long hb = tdb_int(a->json, "highest_server_seq");
    assert_highest(a, U2);
    tdb_answer_free(a);
    ck_assert_int_gt(hb, ha);
    ck_assert_int_eq(meta_version(U, "business", "users", PK1), 2);
    ck_assert_int_eq(meta_version(U2, "business", "users", PK1), 1);
    ck_assert(jsonb_eq(state_payload(U, "business", "users", PK1), "{\"owner\":\"alice2\"}"));
    ck_assert(jsonb_eq(state_payload(U2, "business", "users", PK1), "{\"owner\":\"bob\"}"));

    /* bob never conflicts with alice's versions */
    a = tdb_upload_ok(&T, U2, D, batch(upd(2, "users", PK1, 2, "{\"owner\":\"bob\"}"), NULL));
    json_object *row = assert_conflict(a, 0, 2, "business", "users", PK1, 1, false, NULL);
    ck_assert(tdb_json_eq(tdb_get(row, "payload"), "{\"owner\":\"bob\"}"));
    tdb_answer_free(a);
    /* bob's delete does not touch alice's row */
    a = tdb_upload_ok(&T, U2, D, batch(del(3, "users", PK1, 1), NULL));
    assert_applied(a, 0, 3, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK1), "f");
    /* alice's highest_server_seq is unchanged by bob */
    a = tdb_upload_ok(&T, U, D, "{}");
    ck_assert_int_eq(tdb_int(a->json, "highest_server_seq"), ha);
    tdb_answer_free(a);
    /* a delete by bob of a row only alice has is a never-seen delete for bob */
    a = tdb_upload_ok(&T, U, D, batch(ins(3, "users", PK2, "{}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U2, D, batch(del(4, "users", PK2, 1), NULL));
    assert_idempotent(a, 0, 4);
    tdb_answer_free(a);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK2), "f");
    ck_assert_int_eq(tdb_log_count(&T, U), 3);
    ck_assert_int_eq(tdb_log_count(&T, U2), 2);
}
END_TEST

START_TEST(test_version_grows_by_one)
{
    int v = 0;
    long long scid = 1;
    for (int round = 0; round < 4; round++) {
        /* alternating single updates, chains, deletes and resurrections, with a conflict each round */
        struct tdb_answer *a = tdb_upload_ok(
            &T, U, round % 2 ? D2 : D,
            batch(chg(scid, "business", "users", round ? "UPDATE" : "INSERT", PK1, v, "{\"k\":1}"),
                  upd(scid + 1, "users", PK1, v + 1, "{\"k\":2}"), upd(scid + 2, "users", PK1, v, "{\"k\":\"stale\"}"),
                  del(scid + 3, "users", PK1, v + 2), NULL));
        assert_applied(a, 0, scid, v + 1);
        assert_applied(a, 1, scid + 1, v + 2);
        assert_conflict(a, 2, scid + 2, "business", "users", PK1, v + 2, false, NULL);
        assert_applied(a, 3, scid + 3, v + 3);
        tdb_answer_free(a);
        v += 3;
        scid += 4;
        ck_assert_int_eq(meta_version(U, "business", "users", PK1), v);
    }
    /* the log's versions of the row are exactly 1, 2, ..., v in server_id order */
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM (SELECT server_version, row_number() OVER"
                                      " (ORDER BY server_id) AS rn FROM sync.server_change_log WHERE pk_uuid = '" PK1
                                      "') x WHERE server_version = rn"),
                     v);
    ck_assert_int_eq(tdb_log_count_pk(&T, U, PK1), v);
}
END_TEST

START_TEST(test_server_ids_ascend_in_apply_order)
{
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{}"), ins(2, "users", PK2, "{}"), NULL));
    long long h0 = tdb_int(a->json, "highest_server_seq");
    tdb_answer_free(a);
    /* apply order: upserts (posts, then users in request order, then notes), then deletes */
    a = tdb_upload_ok(&T, U, D,
                      batch(del(3, "users", PK1, 1), chg(4, "public", "notes", "INSERT", PK3, 0, "{}"),
                            upd(5, "users", PK2, 1, "{}"), chg(6, "business", "posts", "INSERT", PK4, 0, "{}"),
                            upd(7, "users", PK2, 2, "{}"), del(8, "users", PK2, 3), NULL));
    long long h1 = tdb_int(a->json, "highest_server_seq");
    assert_highest(a, U);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(source_change_id::text, ',' ORDER BY server_id)"
                                   " FROM sync.server_change_log WHERE server_id > %lld", h0),
                     "6,5,7,4,3,8");
    /* all six above the previous highest, the last one is the new highest */
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log WHERE server_id > %lld", h0), 6);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT server_id FROM sync.server_change_log WHERE source_change_id = 8"), h1);
}
END_TEST

START_TEST(test_many_changes_one_batch)
{
    /* a full batch of distinct rows (exactly the configured limit) applies in one go */
    T.cfg.max_upload_changes = 500;
    strbuf_t sb = STRBUF_INIT;
    sb_puts(&sb, "{\"changes\":[");
    for (int i = 0; i < 500; i++)
        sb_printf(&sb, "%s{\"source_change_id\":%d,\"schema\":\"business\",\"table\":\"users\",\"op\":\"INSERT\","
                       "\"pk\":\"00000000-0000-4000-8000-%012d\",\"server_version\":0,\"payload\":{\"i\":%d}}",
                  i ? "," : "", i + 1, i, i);
    sb_puts(&sb, "]}");
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, sb.data);
    ck_assert_int_eq(tdb_nstatuses(a), 500);
    for (int i = 0; i < 500; i++)
        assert_applied(a, i, i + 1, 1);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_log_count(&T, U), 500);
    ck_assert_int_eq(tdb_state_count(&T, U), 500);
    ck_assert_str_eq(log_scids(U), tdb_query(&T, "SELECT string_agg(g::text, ',') FROM generate_series(1, 500) g"));
    /* replay: all idempotent */
    a = tdb_upload_ok(&T, U, D, sb.data);
    for (int i = 0; i < 500; i++)
        assert_idempotent(a, i, i + 1);
    tdb_answer_free(a);
    sb_free(&sb);
}
END_TEST

START_TEST(test_rule8_escaped_key_names)
{
    /* the rule is about the key as JSON means it, not as spelled */
    bad_with_sibling(ins(1, "users", PK1, "{\"server\\u005fversion\":3}"), 1, "bad_payload",
                     "payload must not contain the key \"server_version\"");
    bad_with_sibling(ins(3, "users", PK3, "{\"a\":1,\"\\u0064eleted\":true}"), 3, "bad_payload",
                     "payload must not contain the key \"deleted\"");
    /* near misses are fine */
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D,
        batch(ins(4, "users", PK4, "{\"Deleted\":1,\"server_version_x\":2,\"deleted_at\":null,\"_deleted\":0}"), NULL));
    assert_applied(a, 0, 4, 1);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_scid_extremes)
{
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D,
        batch(ins(9223372036854775807LL, "users", PK1, "{}"), ins(0, "users", PK2, "{}"), ins(-5, "users", PK3, "{}"),
              ins(-9223372036854775807LL - 1, "users", PK4, "{}"), NULL));
    assert_applied(a, 0, 9223372036854775807LL, 1);
    assert_applied(a, 1, 0, 1);
    assert_applied(a, 2, -5, 1);
    assert_applied(a, 3, -9223372036854775807LL - 1, 1);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_query(&T, "SELECT string_agg(source_change_id::text, ',' ORDER BY server_id)"
                                   " FROM sync.server_change_log"),
                     "9223372036854775807,0,-5,-9223372036854775808");
    a = tdb_upload_ok(&T, U, D,
                      batch(upd(9223372036854775807LL, "users", PK1, 1, "{}"),
                            upd(-9223372036854775807LL - 1, "users", PK4, 1, "{}"), NULL));
    assert_idempotent(a, 0, 9223372036854775807LL);
    assert_idempotent(a, 1, -9223372036854775807LL - 1);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_log_count(&T, U), 4);
}
END_TEST

START_TEST(test_same_pk_different_tables)
{
    struct tdb_answer *a = tdb_upload_ok(
        &T, U, D,
        batch(ins(1, "users", PK1, "{\"t\":\"users\"}"),
              chg(2, "business", "posts", "INSERT", PK1, 0, "{\"t\":\"posts\"}"),
              chg(3, "public", "notes", "INSERT", PK1, 0, "{\"t\":\"notes\"}"),
              upd(4, "users", PK1, 1, "{\"t\":\"users2\"}"), NULL));
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    assert_applied(a, 2, 3, 1);
    assert_applied(a, 3, 4, 2);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_meta_count(&T, U), 3);
    ck_assert_int_eq(meta_version(U, "business", "users", PK1), 2);
    ck_assert_int_eq(meta_version(U, "business", "posts", PK1), 1);
    ck_assert(jsonb_eq(state_payload(U, "public", "notes", PK1), "{\"t\":\"notes\"}"));
    /* a delete in one table leaves the others alone */
    a = tdb_upload_ok(&T, U, D, batch(chg(5, "business", "posts", "DELETE", PK1, 1, NULL), NULL));
    assert_applied(a, 0, 5, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK1), "f");
    ck_assert_str_eq(meta_deleted(U, "public", "notes", PK1), "f");
}
END_TEST

START_TEST(test_lock_timeout_unavailable)
{
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{}"), NULL));
    tdb_answer_free(a);
    char *before = tdb_snapshot(&T);
    /* another session holds the row's meta lock */
    PGconn *other = PQconnectdb(tdb_printf(&T, "%s dbname=%s", getenv("DATABASE_URL") ? getenv("DATABASE_URL") : "",
                                           T.dbname));
    ck_assert_msg(PQstatus(other) == CONNECTION_OK, "%s", PQerrorMessage(other));
    PGresult *r = PQexec(other, "BEGIN; SELECT * FROM sync.sync_row_meta FOR UPDATE");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);

    T.cfg.lock_timeout_ms = 200;
    a = tdb_upload(&T, U, D, batch(upd(2, "users", PK1, 1, "{\"x\":1}"), ins(3, "users", PK2, "{}"), NULL));
    ck_assert_msg(a->outcome == SYNC_UNAVAILABLE, "outcome %d, %s", (int)a->outcome, a->body ? a->body : a->err);
    ck_assert_msg(a->err[0] != '\0', "an unavailable answer says why");
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);
    /* lock_timeout was local to the upload */
    ck_assert_str_eq(tdb_query(&T, "SHOW lock_timeout"), "0");

    r = PQexec(other, "ROLLBACK");
    PQclear(r);
    PQfinish(other);
    /* the same batch goes through now */
    a = tdb_upload_ok(&T, U, D, batch(upd(2, "users", PK1, 1, "{\"x\":1}"), ins(3, "users", PK2, "{}"), NULL));
    assert_applied(a, 0, 2, 2);
    assert_applied(a, 1, 3, 1);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_database_error_writes_nothing)
{
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{}"), NULL));
    tdb_answer_free(a);
    /* a constraint the sync core knows nothing about: an unexpected database error */
    tdb_exec(&T, "ALTER TABLE sync.server_change_log ADD CONSTRAINT test_no_boom"
                 " CHECK (payload IS NULL OR NOT payload::jsonb ? 'boom')");
    char *before = tdb_snapshot(&T);
    a = tdb_upload(&T, U, D, batch(upd(2, "users", PK1, 1, "{\"ok\":1}"), ins(3, "users", PK2, "{\"boom\":1}"), NULL));
    ck_assert_msg(a->outcome == SYNC_FAILED, "outcome %d, %s", (int)a->outcome, a->body ? a->body : a->err);
    ck_assert_msg(strstr(a->err, "test_no_boom") != NULL, "err: %s", a->err);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);
    /* the connection is fine and the scids were not consumed */
    a = tdb_upload_ok(&T, U, D, batch(upd(2, "users", PK1, 1, "{\"ok\":1}"), ins(3, "users", PK2, "{\"fine\":1}"),
                                      NULL));
    assert_applied(a, 0, 2, 2);
    assert_applied(a, 1, 3, 1);
    tdb_answer_free(a);
}
END_TEST

START_TEST(test_database_error_log_has_no_payload)
{
    /* SPEC §9: logs never carry a payload, not even inside PostgreSQL's error detail */
    tdb_exec(&T, "ALTER TABLE sync.server_change_log ADD CONSTRAINT test_no_boom"
                 " CHECK (payload IS NULL OR NOT payload::jsonb ? 'boom')");
    struct capture cap;
    capture_start(&cap);
    struct tdb_answer *a =
        tdb_upload(&T, U, D, batch(ins(3, "users", PK2, "{\"boom\":\"s3cret-payload-value\"}"), NULL));
    char *logged = capture_end(&cap);
    ck_assert_int_eq(a->outcome, SYNC_FAILED);
    tdb_answer_free(a);
    ck_assert_msg(*logged, "the failure was not logged");
    ck_assert_msg(strstr(logged, "s3cret-payload-value") == NULL, "the log carries the payload:\n%s", logged);
    free(logged);
}
END_TEST

/* ==================================================================== races (SPEC §4.3, §8) */

#define RACERS 8

/* What one racing upload got: 0 applied with a version, 1 applied without (idempotent),
 * 2 conflict, 3 anything else in the answer, 10 + outcome when not SYNC_OK. */
static int race_code(struct tdb_answer *a)
{
    int code;
    if (a->outcome != SYNC_OK || !a->json)
        code = 10 + (int)a->outcome;
    else {
        json_object *st = tdb_status(a, 0);
        const char *status = tdb_str(st, "status");
        if (strcmp(status, "applied") == 0)
            code = tdb_has(st, "new_server_version") ? 0 : 1;
        else if (strcmp(status, "conflict") == 0)
            code = 2;
        else
            code = 3;
    }
    tdb_answer_free(a);
    return code;
}

static int race_same_scid(int i)
{
    (void)i;
    return race_code(tdb_upload(&T, U, D, batch(ins(1, "users", PK1, "{\"who\":\"racer\"}"), NULL)));
}

START_TEST(test_race_same_scid)
{
    int codes[RACERS], applied = 0, idempotent = 0;
    race(RACERS, race_same_scid, codes);
    for (int i = 0; i < RACERS; i++) {
        ck_assert_msg(codes[i] == 0 || codes[i] == 1, "racer %d got code %d", i, codes[i]);
        applied += codes[i] == 0;
        idempotent += codes[i] == 1;
    }
    ck_assert_int_eq(applied, 1);
    ck_assert_int_eq(idempotent, RACERS - 1);
    ck_assert_int_eq(tdb_log_count(&T, U), 1);
    ck_assert_int_eq(meta_version(U, "business", "users", PK1), 1);
}
END_TEST

static int race_same_row(int i)
{
    char device[32];
    snprintf(device, sizeof device, "racer%d", i);
    return race_code(tdb_upload(&T, U, device, batch(upd(1, "users", PK1, 1, tdb_printf(&T, "{\"by\":%d}", i)), NULL)));
}

START_TEST(test_race_same_row)
{
    seed_row_at_version(PK1, 1, "{\"by\":\"seed\"}");
    int codes[RACERS], applied = 0, conflicts = 0;
    race(RACERS, race_same_row, codes);
    int winner = -1;
    for (int i = 0; i < RACERS; i++) {
        ck_assert_msg(codes[i] == 0 || codes[i] == 2, "racer %d got code %d (never a 500 or a 503)", i, codes[i]);
        if (codes[i] == 0)
            winner = i;
        applied += codes[i] == 0;
        conflicts += codes[i] == 2;
    }
    ck_assert_int_eq(applied, 1);
    ck_assert_int_eq(conflicts, RACERS - 1);
    ck_assert_int_eq(meta_version(U, "business", "users", PK1), 2);
    ck_assert_str_eq(log_of(U, PK1), "INSERT:1,UPDATE:2");
    ck_assert(jsonb_eq(state_payload(U, "business", "users", PK1), tdb_printf(&T, "{\"by\":%d}", winner)));
}
END_TEST

static int race_many_rows(int i)
{
    char device[32];
    snprintf(device, sizeof device, "writer%d", i);
    int worst = 0;
    for (int k = 0; k < 10; k++) {
        const char *pk = tdb_printf(&T, "00000000-0000-4000-8000-%06d%06d", i, k);
        /* every writer also touches the shared row PK2 with a guess of its version */
        int code = race_code(tdb_upload(&T, U, device,
                                        batch(ins(2 * k + 1, "users", pk, "{}"),
                                              upd(2 * k + 2, "users", PK2, k, tdb_printf(&T, "{\"w\":%d}", i)), NULL)));
        if (code != 0 && code != 2 && code > worst)
            worst = code;
    }
    return worst;
}

START_TEST(test_race_many_writers)
{
    seed_row_at_version(PK2, 1, "{}");
    int codes[RACERS];
    race(RACERS, race_many_rows, codes);
    for (int i = 0; i < RACERS; i++)
        ck_assert_msg(codes[i] == 0, "writer %d got code %d", i, codes[i]);
    /* every insert landed exactly once; the shared row's versions have no gap and no repeat */
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM sync.server_change_log WHERE op = 'INSERT'"
                                      " AND pk_uuid <> '" PK2 "'"),
                     RACERS * 10);
    long long v = meta_version(U, "business", "users", PK2);
    ck_assert_int_eq(tdb_log_count_pk(&T, U, PK2), v);
    ck_assert_int_eq(tdb_query_ll(&T, "SELECT count(*) FROM (SELECT server_version, row_number() OVER"
                                      " (ORDER BY server_id) AS rn FROM sync.server_change_log WHERE pk_uuid = '" PK2
                                      "') x WHERE server_version = rn"),
                     v);
}
END_TEST

/* A batch of keys round trip 1 found absent writes them with plain INSERTs (sync_write_fresh).
 * Every upload of the user waits for the user's lock, so only a writer outside oversyncd can
 * create such a key meanwhile: the upload then fails as a whole, unavailable, nothing written. */
static PGconn *outside_writer_inserts_meta(const char *pk, int version)
{
    PGconn *other = PQconnectdb(tdb_printf(&T, "%s dbname=%s", getenv("DATABASE_URL") ? getenv("DATABASE_URL") : "",
                                           T.dbname));
    ck_assert_msg(PQstatus(other) == CONNECTION_OK, "%s", PQerrorMessage(other));
    PGresult *r = PQexec(other, tdb_printf(&T, "BEGIN; INSERT INTO sync.sync_row_meta (user_id, schema_name, table_name,"
                                               " pk_uuid, server_version, deleted, updated_at)"
                                               " VALUES ('" U "', 'business', 'users', '%s', %d, false, now())",
                                           pk, version));
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(other));
    PQclear(r);
    return other;
}

static void outside_writer_ends(PGconn *other, const char *how)
{
    PGresult *r = PQexec(other, how);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(other));
    PQclear(r);
    PQfinish(other);
}

START_TEST(test_fresh_key_taken_meanwhile_times_out)
{
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK3, "{}"), NULL));
    tdb_answer_free(a);
    char *before = tdb_snapshot(&T);
    PGconn *other = outside_writer_inserts_meta(PK1, 7);
    T.cfg.lock_timeout_ms = 200;
    a = tdb_upload(&T, U, D, batch(ins(2, "users", PK1, "{}"), ins(3, "users", PK2, "{}"), NULL));
    ck_assert_msg(a->outcome == SYNC_UNAVAILABLE, "outcome %d, %s", (int)a->outcome, a->body ? a->body : a->err);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);
    outside_writer_ends(other, "ROLLBACK");
    a = tdb_upload_ok(&T, U, D, batch(ins(2, "users", PK1, "{}"), ins(3, "users", PK2, "{}"), NULL));
    assert_applied(a, 0, 2, 1);
    assert_applied(a, 1, 3, 1);
    tdb_answer_free(a);
}
END_TEST

static int fresh_racer(int i)
{
    (void)i;
    return race_code(tdb_upload(&T, U, D, batch(ins(1, "users", PK1, "{\"who\":\"racer\"}"),
                                                ins(2, "users", PK2, "{}"), NULL)));
}

/* A writer outside oversyncd (no user lock) inserts PK1's meta row and commits while the upload
 * waits for it on the unique index. The careful path (optimistic_upload off) read PK1 as absent:
 * its plain INSERT fails, and the upload is answered 503 with nothing written. The optimistic
 * write fails the same way, but is then written the careful way, which reads the outside row:
 * PK1 is a conflict and PK2 applies, in the same request. */
static void fresh_key_taken_meanwhile(bool optimistic)
{
    T.cfg.optimistic_upload = optimistic;
    PGconn *other = outside_writer_inserts_meta(PK1, 7);
    T.cfg.lock_timeout_ms = 20000;
    pid_t pid;
    race_start(1, fresh_racer, &pid);
    /* the upload waits for the outside writer's insert of PK1 */
    int waited = 0;
    while (tdb_query_ll(&T, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                            " AND wait_event_type = 'Lock' AND query LIKE '%%sync.sync_row_meta%%'") == 0) {
        ck_assert_msg(waited++ < 2000, "the upload never waited for the outside writer");
        usleep(10000);
    }
    outside_writer_ends(other, "COMMIT");
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    int want = optimistic ? 2 : 10 + SYNC_UNAVAILABLE;
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == want, "the racer got code %d, expected %d",
                  WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st), want);
    /* the outside row stands; the careful path wrote nothing, the rewritten one PK2 */
    ck_assert_int_eq(tdb_log_count(&T, U), optimistic ? 1 : 0);
    ck_assert_int_eq(tdb_state_count(&T, U), optimistic ? 1 : 0);
    ck_assert_int_eq(meta_version(U, "business", "users", PK1), 7);
    ck_assert_int_eq(tdb_meta_count(&T, U), optimistic ? 2 : 1);
    /* the client's retry finds the row: a conflict, and the other change applies (or had) */
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{\"who\":\"racer\"}"),
                                                         ins(2, "users", PK2, "{}"), NULL));
    assert_conflict(a, 0, 1, NULL, NULL, NULL, 7, false, NULL);
    if (optimistic)
        assert_idempotent(a, 1, 2);
    else
        assert_applied(a, 1, 2, 1);
    tdb_answer_free(a);
}

START_TEST(test_fresh_key_taken_meanwhile_unique_violation)
{
    fresh_key_taken_meanwhile(false);
}
END_TEST

START_TEST(test_optimistic_key_taken_meanwhile)
{
    fresh_key_taken_meanwhile(true);
}
END_TEST

/* ============================================================ one round trip (optimistic) */

static void assert_trips(const struct tdb_answer *a, unsigned long one_trip, unsigned long rewrites)
{
    ck_assert_msg(a->counts.one_trip == one_trip && a->counts.rewrites == rewrites,
                  "one_trip %lu rewrites %lu, expected %lu and %lu: %s", a->counts.one_trip, a->counts.rewrites,
                  one_trip, rewrites, a->body ? a->body : a->err);
}

/* New rows, then updates of them at their versions: each batch in one round trip, with the
 * answers, log, meta, after-images and highest_server_seq of the careful path. */
START_TEST(test_one_trip_new_and_updated_rows)
{
    T.cfg.optimistic_upload = true;   /* whatever OVERSYNCD_TEST_OPTIMISTIC_UPLOAD says */
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{\"n\":1}"),
                                                         chg(2, "public", "notes", "INSERT", PK2, 0, "{\"t\":\"x\"}"),
                                                         NULL));
    assert_trips(a, 1, 0);
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 1);
    assert_highest(a, U);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D2, batch(upd(1, "users", PK1, 1, "{\"n\":2}"),
                                       chg(2, "public", "notes", "UPDATE", PK2, 1, "{\"t\":\"y\"}"),
                                       ins(3, "users", PK3, "{\"n\":3}"), NULL));
    assert_trips(a, 1, 0);
    assert_applied(a, 0, 1, 2);
    assert_applied(a, 1, 2, 2);
    assert_applied(a, 2, 3, 1);
    assert_highest(a, U);
    tdb_answer_free(a);
    ck_assert_str_eq(log_of(U, PK1), "INSERT:1,UPDATE:2");
    ck_assert_str_eq(log_of(U, PK2), "INSERT:1,UPDATE:2");
    ck_assert_str_eq(log_of(U, PK3), "INSERT:1");
    ck_assert_int_eq(meta_version(U, "business", "users", PK1), 2);
    ck_assert_int_eq(meta_version(U, "public", "notes", PK2), 2);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK1), "f");
    ck_assert(jsonb_eq(state_payload(U, "business", "users", PK1), "{\"n\":2}"));
    ck_assert(jsonb_eq(state_payload(U, "public", "notes", PK2), "{\"t\":\"y\"}"));
    ck_assert(jsonb_eq(state_payload(U, "business", "users", PK3), "{\"n\":3}"));
    ck_assert_int_eq(tdb_meta_count(&T, U), 3);
    ck_assert_int_eq(tdb_state_count(&T, U), 3);
    /* the change log holds the text jsonb prints, as the careful path writes it */
    ck_assert_str_eq(tdb_query(&T, "SELECT payload::text FROM sync.server_change_log WHERE user_id = '%s'"
                                   " AND pk_uuid = '%s' AND server_version = 2", U, PK2),
                     "{\"t\": \"y\"}");
}
END_TEST

/* A retried batch (its scids in the log) fails the optimistic write on the change log's unique
 * scids: rolled back, written the careful way, answered applied without a version, and nothing
 * written twice; so for a retry of updates, and for a retry mixed with a new change. */
START_TEST(test_one_trip_retry_rewritten)
{
    T.cfg.optimistic_upload = true;   /* whatever OVERSYNCD_TEST_OPTIMISTIC_UPLOAD says */
    const char *first = batch(ins(1, "users", PK1, "{}"), ins(2, "users", PK2, "{}"), NULL);
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, first);
    assert_trips(a, 1, 0);
    tdb_answer_free(a);
    char *before = tdb_snapshot(&T);
    a = tdb_upload_ok(&T, U, D, first);
    assert_trips(a, 0, 1);
    assert_idempotent(a, 0, 1);
    assert_idempotent(a, 1, 2);
    assert_highest(a, U);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);

    const char *updates = batch(upd(3, "users", PK1, 1, "{\"n\":1}"), upd(4, "users", PK2, 1, "{\"n\":1}"), NULL);
    a = tdb_upload_ok(&T, U, D, updates);
    assert_trips(a, 1, 0);
    tdb_answer_free(a);
    before = tdb_snapshot(&T);
    a = tdb_upload_ok(&T, U, D, updates);
    assert_trips(a, 0, 1);
    assert_idempotent(a, 0, 3);
    assert_idempotent(a, 1, 4);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);

    a = tdb_upload_ok(&T, U, D, batch(upd(3, "users", PK1, 1, "{\"n\":1}"), ins(5, "users", PK3, "{}"), NULL));
    assert_trips(a, 0, 1);
    assert_idempotent(a, 0, 3);
    assert_applied(a, 1, 5, 1);
    assert_highest(a, U);
    tdb_answer_free(a);
    ck_assert_int_eq(tdb_log_count(&T, U), 5);
    ck_assert_str_eq(log_scids(U), "1,2,3,4,5");
}
END_TEST

/* Rows not where a change expects them: a stale update, an update of a row never seen (which the
 * optimistic write inserts marked deleted before it fails), an insert of a row another device
 * created, all in one batch with a change that applies. The rewrite answers each as the careful
 * path does, and nothing of the failed attempt is left. */
START_TEST(test_one_trip_expectation_missed)
{
    T.cfg.optimistic_upload = true;   /* whatever OVERSYNCD_TEST_OPTIMISTIC_UPLOAD says */
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{\"n\":1}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D, batch(upd(2, "users", PK1, 1, "{\"n\":2}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D2, batch(ins(1, "users", PK2, "{\"d2\":true}"), NULL));
    tdb_answer_free(a);
    long long highest = tdb_highest(&T, U);

    a = tdb_upload_ok(&T, U, D, batch(upd(3, "users", PK1, 1, "{\"stale\":true}"),
                                      upd(4, "users", PK3, 4, "{\"never\":true}"),
                                      ins(5, "users", PK2, "{\"mine\":true}"),
                                      ins(6, "users", PK4, "{\"new\":true}"), NULL));
    assert_trips(a, 0, 1);
    assert_conflict(a, 0, 3, "business", "users", PK1, 2, false, "{\"n\":2}");
    assert_conflict(a, 1, 4, "business", "users", PK3, 0, false, NULL);
    assert_conflict(a, 2, 5, "business", "users", PK2, 1, false, "{\"d2\":true}");
    assert_applied(a, 3, 6, 1);
    assert_highest(a, U);
    tdb_answer_free(a);
    ck_assert(tdb_highest(&T, U) > highest);   /* ids the rolled-back attempt drew are skipped */
    ck_assert_str_eq(log_of(U, PK1), "INSERT:1,UPDATE:2");
    ck_assert_str_eq(log_of(U, PK2), "INSERT:1");
    ck_assert_str_eq(log_of(U, PK3), "");
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK3), "<null>");
    ck_assert_str_eq(state_payload(U, "business", "users", PK3), "<null>");
    ck_assert(jsonb_eq(state_payload(U, "business", "users", PK1), "{\"n\":2}"));
    ck_assert(jsonb_eq(state_payload(U, "business", "users", PK2), "{\"d2\":true}"));
    ck_assert_int_eq(meta_version(U, "business", "users", PK4), 1);
    ck_assert_int_eq(tdb_log_count(&T, U), 4);
}
END_TEST

/* A deleted row written again at its version (an update or insert naming the delete's version)
 * comes back in one round trip, as the careful path brings it back. */
START_TEST(test_one_trip_row_back_from_delete)
{
    T.cfg.optimistic_upload = true;   /* whatever OVERSYNCD_TEST_OPTIMISTIC_UPLOAD says */
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{\"n\":1}"), NULL));
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D, batch(del(2, "users", PK1, 1), NULL));
    assert_trips(a, 0, 0);   /* a delete is written the careful way */
    assert_applied(a, 0, 2, 2);
    tdb_answer_free(a);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK1), "t");
    a = tdb_upload_ok(&T, U, D, batch(upd(3, "users", PK1, 2, "{\"n\":3}"), NULL));
    assert_trips(a, 1, 0);
    assert_applied(a, 0, 3, 3);
    tdb_answer_free(a);
    ck_assert_str_eq(meta_deleted(U, "business", "users", PK1), "f");
    ck_assert_int_eq(meta_version(U, "business", "users", PK1), 3);
    ck_assert(jsonb_eq(state_payload(U, "business", "users", PK1), "{\"n\":3}"));
    ck_assert_str_eq(log_of(U, PK1), "INSERT:1,DELETE:2,UPDATE:3");
}
END_TEST

/* The table of where the body's larger values end is sized by the body, not only by
 * max_upload_changes: a small upload with max_upload_changes at a million takes a small arena
 * (with room for a million changes' entries it would take 64 MB). */
START_TEST(test_skip_table_follows_the_body)
{
    T.cfg.max_upload_changes = 1000000;
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{\"n\":1}"), NULL));
    assert_applied(a, 0, 1, 1);
    ck_assert_msg(a->arena_bytes < 64 * 1024, "a one-change upload used %zu bytes of arena", a->arena_bytes);
    tdb_answer_free(a);
}
END_TEST

/* Batches the optimistic write does not try: a delete, a key twice, a scid twice, and any batch
 * with [sync] optimistic_upload off; their answers are the careful path's. */
START_TEST(test_one_trip_not_tried)
{
    T.cfg.optimistic_upload = true;   /* whatever OVERSYNCD_TEST_OPTIMISTIC_UPLOAD says */
    struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{}"), upd(2, "users", PK1, 1, "{}"),
                                                         NULL));
    assert_trips(a, 0, 0);
    assert_applied(a, 0, 1, 1);
    assert_applied(a, 1, 2, 2);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D, batch(ins(3, "users", PK2, "{}"), ins(3, "users", PK3, "{}"), NULL));
    assert_trips(a, 0, 0);
    assert_applied(a, 0, 3, 1);
    assert_idempotent(a, 1, 3);
    tdb_answer_free(a);
    a = tdb_upload_ok(&T, U, D, batch(ins(4, "users", PK4, "{}"), del(5, "users", PK1, 2), NULL));
    assert_trips(a, 0, 0);
    assert_applied(a, 0, 4, 1);
    assert_applied(a, 1, 5, 3);
    tdb_answer_free(a);
    T.cfg.optimistic_upload = false;
    a = tdb_upload_ok(&T, U, D, batch(ins(6, "users", PK5, "{}"), NULL));
    assert_trips(a, 0, 0);
    assert_applied(a, 0, 6, 1);
    assert_highest(a, U);
    tdb_answer_free(a);
    ck_assert_str_eq(log_scids(U), "1,2,3,4,5,6");
}
END_TEST

/* The user's lock is held by another upload of the user: the optimistic write waits for it and
 * gives up after lock_timeout like the careful path, 503 with nothing written. */
START_TEST(test_one_trip_lock_timeout)
{
    T.cfg.optimistic_upload = true;   /* whatever OVERSYNCD_TEST_OPTIMISTIC_UPLOAD says */
    char *before = tdb_snapshot(&T);
    PGconn *other = PQconnectdb(tdb_printf(&T, "%s dbname=%s", getenv("DATABASE_URL") ? getenv("DATABASE_URL") : "",
                                           T.dbname));
    ck_assert_msg(PQstatus(other) == CONNECTION_OK, "%s", PQerrorMessage(other));
    PGresult *r = PQexec(other, "BEGIN; SELECT pg_advisory_xact_lock(1870030713, hashtext('" U "'))");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    T.cfg.lock_timeout_ms = 200;
    struct tdb_answer *a = tdb_upload(&T, U, D, batch(ins(1, "users", PK1, "{}"), NULL));
    ck_assert_msg(a->outcome == SYNC_UNAVAILABLE, "outcome %d: %s", (int)a->outcome, a->body ? a->body : a->err);
    tdb_answer_free(a);
    ck_assert_str_eq(tdb_snapshot(&T), before);
    outside_writer_ends(other, "ROLLBACK");
    a = tdb_upload_ok(&T, U, D, batch(ins(1, "users", PK1, "{}"), NULL));
    assert_trips(a, 1, 0);
    assert_applied(a, 0, 1, 1);
    tdb_answer_free(a);
}
END_TEST

/* A batch without materialized tables or foreign keys lets PostgreSQL keep generic plans for its
 * statements inside its own transaction only: the session stays at force_custom_plan, and the
 * answers are those of custom plans, past the five executions after which a generic plan may be
 * chosen. */
START_TEST(test_generic_plans_local_to_the_upload)
{
    tdb_exec(&T, "SET plan_cache_mode = force_custom_plan");   /* as db_connect_plain leaves a session */
    for (int i = 0; i < 8; i++) {
        const char *pk = tdb_printf(&T, "00000000-0000-4000-8000-%012d", i);
        struct tdb_answer *a = tdb_upload_ok(&T, U, D, batch(ins(10 * i + 1, "users", pk, "{}"),
                                                             upd(10 * i + 2, "users", pk, 1, "{\"n\":1}"), NULL));
        assert_applied(a, 0, 10 * i + 1, 1);
        assert_applied(a, 1, 10 * i + 2, 2);
        tdb_answer_free(a);
        /* the same again: idempotent; then a stale update: a conflict with the stored row */
        a = tdb_upload_ok(&T, U, D, batch(ins(10 * i + 1, "users", pk, "{}"), upd(10 * i + 3, "users", pk, 1, "{}"),
                                          NULL));
        assert_idempotent(a, 0, 10 * i + 1);
        assert_conflict(a, 1, 10 * i + 3, NULL, NULL, NULL, 2, false, "{\"n\":1}");
        tdb_answer_free(a);
        ck_assert_str_eq(tdb_query(&T, "SHOW plan_cache_mode"), "force_custom_plan");
    }
    ck_assert_int_eq(tdb_log_count(&T, U), 16);
}
END_TEST

/* ==================================================================== runner */

static Suite *validation_suite(void)
{
    Suite *s = suite_create("upload validation");
    TCase *tc = tcase("rules", TDB_DEFAULT_DB);
    tcase_add_test(tc, test_rule1_bad_schema);
    tcase_add_test(tc, test_rule1_bad_schema_dot);
    tcase_add_test(tc, test_rule2_bad_table);
    tcase_add_test(tc, test_rule2_empty_table);
    tcase_add_test(tc, test_rule3_unregistered);
    tcase_add_test(tc, test_rule4_bad_op);
    tcase_add_test(tc, test_rule4_empty_op);
    tcase_add_test(tc, test_rule5_pk_not_uuid);
    tcase_add_test(tc, test_rule5_pk_missing);
    tcase_add_test(tc, test_rule5_pk_variants_refused);
    tcase_add_test(tc, test_rule5_pk_with_nul);
    tcase_add_test(tc, test_rule6_payload_missing);
    tcase_add_test(tc, test_rule6_payload_null);
    tcase_add_test(tc, test_rule6_payload_array);
    tcase_add_test(tc, test_rule6_payload_string);
    tcase_add_test(tc, test_rule6_payload_number_bool);
    tcase_add_test(tc, test_rule7_payload_too_large);
    tcase_add_test(tc, test_rule7_payload_at_limit);
    tcase_add_test(tc, test_rule7_payload_raw_bytes);
    tcase_add_test(tc, test_rule8_server_version_key);
    tcase_add_test(tc, test_rule8_deleted_key);
    tcase_add_test(tc, test_rule8_nested_keys_fine);
    tcase_add_test(tc, test_rule8_escaped_key_names);
    tcase_add_test(tc, test_rule9_delete_with_payload);
    tcase_add_test(tc, test_rule9_delete_null_or_absent);
    tcase_add_test(tc, test_first_failure_wins);
    tcase_add_test(tc, test_payload_nul_escape);
    tcase_add_test(tc, test_payload_unpaired_surrogate);
    tcase_add_test(tc, test_payload_number_out_of_range);
    tcase_add_test(tc, test_payload_valid_escapes_stored);
    suite_add_tcase(s, tc);

    tc = tcase("normalisation", TDB_DEFAULT_DB);
    tcase_add_test(tc, test_normalise_names_and_op);
    tcase_add_test(tc, test_normalise_uuid_spellings);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *body_suite(void)
{
    Suite *s = suite_create("upload body");
    TCase *tc = tcase("400", TDB_DEFAULT_DB);
    tcase_add_loop_test(tc, test_bad_body, 0, (int)(sizeof bad_bodies / sizeof *bad_bodies));
    suite_add_tcase(s, tc);
    tc = tcase("shape", TDB_DEFAULT_DB);
    tcase_add_test(tc, test_changes_missing_or_null);
    tcase_add_test(tc, test_unknown_fields_and_source_id_ignored);
    tcase_add_test(tc, test_batch_exactly_limit);
    tcase_add_test(tc, test_batch_too_large);
    tcase_add_test(tc, test_batch_too_large_exact_text);
    tcase_add_test(tc, test_batch_too_large_bad_element);
    tcase_add_test(tc, test_deep_nesting);
    tcase_add_test(tc, test_million_bad_elements_400);
    tcase_add_test(tc, test_million_over_limit);
    tcase_add_test(tc, test_million_over_limit_streamed);
    tcase_add_test(tc, test_many_changes_one_batch);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *semantics_suite(void)
{
    Suite *s = suite_create("upload semantics");
    TCase *tc = tcase("apply", TDB_DEFAULT_DB);
    tcase_add_test(tc, test_insert_update_delete_round_trip);
    tcase_add_test(tc, test_idempotent_whole_batch);
    tcase_add_test(tc, test_idempotent_partial_batch);
    tcase_add_test(tc, test_idempotent_reordered);
    tcase_add_test(tc, test_same_scid_twice_in_batch);
    tcase_add_test(tc, test_delete_never_seen);
    tcase_add_test(tc, test_resurrection);
    tcase_add_test(tc, test_chain_in_one_batch);
    suite_add_tcase(s, tc);

    tc = tcase("conflicts", TDB_DEFAULT_DB);
    tcase_add_test(tc, test_conflict_update_stale);
    tcase_add_test(tc, test_conflict_delete_stale);
    tcase_add_test(tc, test_conflict_insert_existing);
    tcase_add_test(tc, test_conflict_never_seen_row);
    tcase_add_test(tc, test_conflict_deleted_row);
    tcase_add_test(tc, test_conflict_scid_not_consumed);
    tcase_add_test(tc, test_chain_middle_conflict);
    tcase_add_test(tc, test_mixed_batch_partial_conflicts);
    suite_add_tcase(s, tc);

    tc = tcase("order and invariants", TDB_DEFAULT_DB);
    tcase_add_test(tc, test_upserts_before_deletes);
    tcase_add_test(tc, test_apply_order_tables);
    tcase_add_test(tc, test_highest_across_devices);
    tcase_add_test(tc, test_accepted_flag);
    tcase_add_test(tc, test_users_isolated);
    tcase_add_test(tc, test_version_grows_by_one);
    tcase_add_test(tc, test_server_ids_ascend_in_apply_order);
    suite_add_tcase(s, tc);

    tc = tcase("robustness and races", TDB_DEFAULT_DB);
    tcase_add_test(tc, test_scid_extremes);
    tcase_add_test(tc, test_same_pk_different_tables);
    tcase_add_test(tc, test_lock_timeout_unavailable);
    tcase_add_test(tc, test_database_error_writes_nothing);
    tcase_add_test(tc, test_database_error_log_has_no_payload);
    tcase_add_test(tc, test_race_same_scid);
    tcase_add_test(tc, test_race_same_row);
    tcase_add_test(tc, test_race_many_writers);
    tcase_add_test(tc, test_fresh_key_taken_meanwhile_times_out);
    tcase_add_test(tc, test_fresh_key_taken_meanwhile_unique_violation);
    tcase_add_test(tc, test_optimistic_key_taken_meanwhile);
    tcase_add_test(tc, test_generic_plans_local_to_the_upload);
    suite_add_tcase(s, tc);

    tc = tcase("one round trip", TDB_DEFAULT_DB);
    tcase_add_test(tc, test_one_trip_new_and_updated_rows);
    tcase_add_test(tc, test_one_trip_retry_rewritten);
    tcase_add_test(tc, test_one_trip_expectation_missed);
    tcase_add_test(tc, test_one_trip_row_back_from_delete);
    tcase_add_test(tc, test_one_trip_not_tried);
    tcase_add_test(tc, test_one_trip_lock_timeout);
    tcase_add_test(tc, test_skip_table_follows_the_body);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(validation_suite(), body_suite(), semantics_suite(), NULL);
}
