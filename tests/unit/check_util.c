/* Unit tests for the core utilities: arena, strbuf, uuid, log levels and line escaping, ct_equal. */
#include <check.h>
#include <limits.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "../capture.h"
#include "log.h"
#include "strbuf.h"
#include "uuid.h"
#include "xalloc.h"
#include "../run_suites.h"

/* ------------------------------------------------------------------ arena */

START_TEST(test_arena_many_allocations)
{
    arena_t *a = arena_new(1024);
    enum { N = 2000 };
    unsigned char *ptrs[N];
    for (int i = 0; i < N; i++) {
        size_t sz = (size_t)(i % 97) + 1;
        ptrs[i] = arena_alloc(a, sz);
        ck_assert_ptr_nonnull(ptrs[i]);
        memset(ptrs[i], i & 0xff, sz);
    }
    /* nothing was overwritten by a later allocation */
    for (int i = 0; i < N; i++) {
        size_t sz = (size_t)(i % 97) + 1;
        for (size_t k = 0; k < sz; k++)
            ck_assert_uint_eq(ptrs[i][k], (unsigned)(i & 0xff));
    }
    ck_assert_uint_ge(arena_bytes_in_use(a), (size_t)N);
    arena_free(a);
}
END_TEST

START_TEST(test_arena_alignment)
{
    arena_t *a = arena_new(512);
    for (int i = 0; i < 500; i++) {
        void *p = arena_alloc(a, (size_t)(i % 33));
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % 16, 0);
    }
    void *big = arena_alloc(a, 10000);
    ck_assert_uint_eq((uintptr_t)big % 16, 0);
    char *s = arena_strdup(a, "abc");
    ck_assert_uint_eq((uintptr_t)s % 16, 0);
    arena_free(a);
}
END_TEST

START_TEST(test_arena_zero_size)
{
    arena_t *a = arena_new(256);
    void *p = arena_alloc(a, 0);
    void *q = arena_alloc(a, 0);
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(q);
    ck_assert_ptr_ne(p, q);
    arena_free(a);
}
END_TEST

START_TEST(test_arena_large_allocation)
{
    arena_t *a = arena_new(256);
    char *small1 = arena_strdup(a, "before");
    size_t big_n = 100000;
    unsigned char *big = arena_alloc(a, big_n);
    memset(big, 0xab, big_n);
    char *small2 = arena_strdup(a, "after");
    ck_assert_str_eq(small1, "before");
    ck_assert_str_eq(small2, "after");
    for (size_t i = 0; i < big_n; i++)
        if (big[i] != 0xab)
            ck_abort_msg("large allocation corrupted at %zu", i);
    ck_assert_uint_ge(arena_bytes_in_use(a), big_n);
    arena_free(a);
}
END_TEST

START_TEST(test_arena_default_block_size)
{
    arena_t *a = arena_new(0);
    char *p = arena_alloc(a, 100);
    memset(p, 1, 100);
    ck_assert_uint_eq(arena_bytes_in_use(a), 112);
    arena_free(a);
}
END_TEST

START_TEST(test_arena_reset)
{
    arena_t *a = arena_new(256);
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 200; i++) {
            char *s = arena_printf(a, "round %d item %d", round, i);
            ck_assert_ptr_nonnull(s);
        }
        (void)arena_alloc(a, 5000); /* a block bigger than block_size */
        ck_assert_uint_gt(arena_bytes_in_use(a), 5000);
        arena_reset(a);
        ck_assert_uint_eq(arena_bytes_in_use(a), 0);
        char *s = arena_strdup(a, "still works");
        ck_assert_str_eq(s, "still works");
        ck_assert_uint_eq(arena_bytes_in_use(a), 16);
        arena_reset(a);
    }
    arena_free(a);
    arena_free(NULL); /* allowed */
}
END_TEST

START_TEST(test_arena_strings)
{
    arena_t *a = arena_new(128);
    char *p = arena_printf(a, "%s-%d-%05.1f", "x", 42, 3.14159);
    ck_assert_str_eq(p, "x-42-003.1");
    char *empty = arena_printf(a, "%s", "");
    ck_assert_str_eq(empty, "");

    /* longer than a block */
    char longsrc[1000];
    memset(longsrc, 'q', sizeof longsrc - 1);
    longsrc[sizeof longsrc - 1] = '\0';
    char *lp = arena_printf(a, "<%s>", longsrc);
    ck_assert_uint_eq(strlen(lp), 1001);
    ck_assert_int_eq(lp[0], '<');
    ck_assert_int_eq(lp[1000], '>');

    const char *src = "hello world";
    char *d = arena_strdup(a, src);
    ck_assert_str_eq(d, src);
    ck_assert_ptr_ne(d, src);

    char *n = arena_strndup(a, src, 5);
    ck_assert_str_eq(n, "hello");
    char *n0 = arena_strndup(a, src, 0);
    ck_assert_str_eq(n0, "");
    /* strndup of bytes containing no terminator */
    char raw[3] = { 'a', 'b', 'c' };
    char *r = arena_strndup(a, raw, 3);
    ck_assert_str_eq(r, "abc");
    arena_free(a);
}
END_TEST

START_TEST(test_arena_calloc_zeroed)
{
    arena_t *a = arena_new(256);
    /* dirty the first block, reset, then calloc the same memory */
    unsigned char *dirty = arena_alloc(a, 200);
    memset(dirty, 0xff, 200);
    arena_reset(a);
    unsigned char *z = arena_calloc(a, 50, 4);
    for (int i = 0; i < 200; i++)
        ck_assert_uint_eq(z[i], 0);
    unsigned char *zb = arena_calloc(a, 1000, 3); /* larger than a block */
    for (int i = 0; i < 3000; i++)
        ck_assert_uint_eq(zb[i], 0);
    void *z0 = arena_calloc(a, 0, 8);
    ck_assert_ptr_nonnull(z0);
    arena_free(a);
}
END_TEST

START_TEST(test_arena_bytes_in_use)
{
    arena_t *a = arena_new(1024);
    ck_assert_uint_eq(arena_bytes_in_use(a), 0);
    (void)arena_alloc(a, 1);
    ck_assert_uint_eq(arena_bytes_in_use(a), 16);
    (void)arena_alloc(a, 16);
    ck_assert_uint_eq(arena_bytes_in_use(a), 32);
    (void)arena_alloc(a, 17);
    ck_assert_uint_eq(arena_bytes_in_use(a), 64);
    (void)arena_alloc(a, 2000); /* its own block */
    ck_assert_uint_eq(arena_bytes_in_use(a), 2064);
    arena_reset(a);
    ck_assert_uint_eq(arena_bytes_in_use(a), 0);
    arena_free(a);
}
END_TEST

static Suite *arena_suite(void)
{
    Suite *s = suite_create("arena");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_arena_many_allocations);
    tcase_add_test(tc, test_arena_alignment);
    tcase_add_test(tc, test_arena_zero_size);
    tcase_add_test(tc, test_arena_large_allocation);
    tcase_add_test(tc, test_arena_default_block_size);
    tcase_add_test(tc, test_arena_reset);
    tcase_add_test(tc, test_arena_strings);
    tcase_add_test(tc, test_arena_calloc_zeroed);
    tcase_add_test(tc, test_arena_bytes_in_use);
    suite_add_tcase(s, tc);
    return s;
}

/* ------------------------------------------------------------------ strbuf */

START_TEST(test_sb_empty)
{
    strbuf_t sb = STRBUF_INIT;
    ck_assert_str_eq(sb_cstr(&sb), "");
    ck_assert_uint_eq(sb.len, 0);
    sb_reset(&sb); /* on a never-used buffer */
    ck_assert_str_eq(sb_cstr(&sb), "");
    sb_printf(&sb, "%s", "");
    ck_assert_str_eq(sb_cstr(&sb), "");
    ck_assert_uint_eq(sb.len, 0);
    sb_free(&sb);

    strbuf_t sb2;
    sb_init(&sb2);
    ck_assert_ptr_null(sb2.data);
    ck_assert_str_eq(sb_cstr(&sb2), "");
    sb_free(&sb2);
}
END_TEST

START_TEST(test_sb_append_growth)
{
    strbuf_t sb = STRBUF_INIT;
    /* 10 000 appends of 10 bytes = 100 000 bytes, many reallocations */
    for (int i = 0; i < 10000; i++)
        sb_append(&sb, "0123456789", 10);
    ck_assert_uint_eq(sb.len, 100000);
    ck_assert_uint_ge(sb.cap, sb.len + 1);
    ck_assert_uint_eq(strlen(sb.data), 100000);
    for (size_t i = 0; i < sb.len; i++)
        if (sb.data[i] != (char)('0' + i % 10))
            ck_abort_msg("wrong byte at %zu", i);
    sb_free(&sb);
    ck_assert_ptr_null(sb.data);
    ck_assert_uint_eq(sb.len, 0);
    ck_assert_uint_eq(sb.cap, 0);
}
END_TEST

START_TEST(test_sb_puts_putc)
{
    strbuf_t sb = STRBUF_INIT;
    sb_puts(&sb, "ab");
    sb_putc(&sb, 'c');
    sb_puts(&sb, "");
    sb_append(&sb, "dXX", 1);
    ck_assert_str_eq(sb_cstr(&sb), "abcd");
    ck_assert_uint_eq(sb.len, 4);
    for (int i = 0; i < 5000; i++)
        sb_putc(&sb, 'z');
    ck_assert_uint_eq(sb.len, 5004);
    ck_assert_uint_eq(strlen(sb_cstr(&sb)), 5004);
    sb_free(&sb);
}
END_TEST

START_TEST(test_sb_printf_growth)
{
    strbuf_t sb = STRBUF_INIT;
    strbuf_t expect = STRBUF_INIT;
    for (int i = 0; i < 3000; i++) {
        sb_printf(&sb, "[%d:%s]", i, "item");
        char tmp[64];
        int n = snprintf(tmp, sizeof tmp, "[%d:%s]", i, "item");
        sb_append(&expect, tmp, (size_t)n);
    }
    ck_assert_uint_gt(sb.len, 20000);
    ck_assert_uint_eq(sb.len, expect.len);
    ck_assert_str_eq(sb_cstr(&sb), sb_cstr(&expect));

    /* a single printf much larger than the current capacity */
    char big[9000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    size_t before = sb.len;
    sb_printf(&sb, "%s!", big);
    ck_assert_uint_eq(sb.len, before + 9000);
    ck_assert_int_eq(sb.data[sb.len - 1], '!');
    ck_assert_int_eq(sb.data[sb.len], '\0');
    sb_free(&sb);
    sb_free(&expect);
}
END_TEST

START_TEST(test_sb_reset)
{
    strbuf_t sb = STRBUF_INIT;
    sb_puts(&sb, "some content that is here");
    size_t cap = sb.cap;
    sb_reset(&sb);
    ck_assert_uint_eq(sb.len, 0);
    ck_assert_uint_eq(sb.cap, cap);
    ck_assert_str_eq(sb_cstr(&sb), "");
    sb_puts(&sb, "new");
    ck_assert_str_eq(sb_cstr(&sb), "new");
    sb_free(&sb);
}
END_TEST

START_TEST(test_sb_put_numbers)
{
    static const long long cases[] = { 0, 1, -1, 9, 10, -10, 123456789, 4294967296LL, LLONG_MAX, LLONG_MIN };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        strbuf_t sb = STRBUF_INIT;
        char want[32];
        sb_put_i64(&sb, cases[i]);
        snprintf(want, sizeof want, "%lld", cases[i]);
        ck_assert_str_eq(sb_cstr(&sb), want);
        sb_reset(&sb);
        sb_put_u64(&sb, (unsigned long long)cases[i]);
        snprintf(want, sizeof want, "%llu", (unsigned long long)cases[i]);
        ck_assert_str_eq(sb_cstr(&sb), want);
        sb_free(&sb);
    }
    char buf[24];
    ck_assert_uint_eq(put_u64(buf, ULLONG_MAX), 20);
    ck_assert(memcmp(buf, "18446744073709551615", 20) == 0);
}
END_TEST

static void check_json(const char *in, size_t n, const char *expect)
{
    strbuf_t sb = STRBUF_INIT;
    sb_json_strn(&sb, in, n);
    ck_assert_str_eq(sb_cstr(&sb), expect);
    ck_assert_uint_eq(sb.len, strlen(expect));
    sb_free(&sb);
}

START_TEST(test_sb_json_basic)
{
    strbuf_t sb = STRBUF_INIT;
    sb_json_str(&sb, "plain");
    ck_assert_str_eq(sb_cstr(&sb), "\"plain\"");
    sb_reset(&sb);
    sb_json_str(&sb, "");
    ck_assert_str_eq(sb_cstr(&sb), "\"\"");
    sb_reset(&sb);
    sb_json_str(&sb, NULL);
    ck_assert_str_eq(sb_cstr(&sb), "\"\"");
    sb_reset(&sb);
    /* appends after existing content */
    sb_puts(&sb, "{\"k\":");
    sb_json_str(&sb, "v");
    sb_putc(&sb, '}');
    ck_assert_str_eq(sb_cstr(&sb), "{\"k\":\"v\"}");
    sb_free(&sb);
}
END_TEST

START_TEST(test_sb_json_escapes)
{
    check_json("a\"b", 3, "\"a\\\"b\"");
    check_json("a\\b", 3, "\"a\\\\b\"");
    check_json("\n", 1, "\"\\n\"");
    check_json("\r", 1, "\"\\r\"");
    check_json("\t", 1, "\"\\t\"");
    check_json("x\ny\rz\tw", 7, "\"x\\ny\\rz\\tw\"");
    check_json("\"\"", 2, "\"\\\"\\\"\"");
    check_json("\\\"", 2, "\"\\\\\\\"\"");
    check_json("/", 1, "\"/\"");
}
END_TEST

START_TEST(test_sb_json_control_chars)
{
    check_json("\x01", 1, "\"\\u0001\"");
    check_json("\x1f", 1, "\"\\u001f\"");
    check_json("\b", 1, "\"\\u0008\"");
    check_json("\f", 1, "\"\\u000c\"");
    check_json("a\x1b[0mb", 6, "\"a\\u001b[0mb\"");
    check_json("\x7f", 1, "\"\x7f\""); /* DEL is allowed raw in JSON */
    /* every control character */
    for (int c = 0; c < 0x20; c++) {
        char in[1] = { (char)c };
        strbuf_t sb = STRBUF_INIT;
        sb_json_strn(&sb, in, 1);
        ck_assert_uint_ge(sb.len, 4);
        for (size_t i = 0; i < sb.len; i++)
            ck_assert_uint_ge((unsigned char)sb.data[i], 0x20);
        sb_free(&sb);
    }
}
END_TEST

START_TEST(test_sb_json_utf8)
{
    const char *s = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"; /* café € 😀 */
    strbuf_t sb = STRBUF_INIT;
    sb_json_str(&sb, s);
    strbuf_t expect = STRBUF_INIT;
    sb_putc(&expect, '"');
    sb_puts(&expect, s);
    sb_putc(&expect, '"');
    ck_assert_str_eq(sb_cstr(&sb), sb_cstr(&expect));
    sb_free(&sb);
    sb_free(&expect);
    /* even invalid UTF-8 bytes pass through untouched */
    check_json("\xff\xfe", 2, "\"\xff\xfe\"");
}
END_TEST

START_TEST(test_sb_json_embedded_nul)
{
    check_json("a\0b", 3, "\"a\\u0000b\"");
    check_json("\0", 1, "\"\\u0000\"");
    check_json("", 0, "\"\"");
    /* n shorter than the string: only n bytes */
    check_json("abcdef", 3, "\"abc\"");
}
END_TEST

START_TEST(test_sb_json_long)
{
    /* a long string mixing plain runs and escapes */
    strbuf_t in = STRBUF_INIT, expect = STRBUF_INIT;
    sb_putc(&expect, '"');
    for (int i = 0; i < 2000; i++) {
        sb_puts(&in, "abc\"def\n");
        sb_puts(&expect, "abc\\\"def\\n");
    }
    sb_putc(&expect, '"');
    strbuf_t out = STRBUF_INIT;
    sb_json_strn(&out, in.data, in.len);
    ck_assert_uint_eq(out.len, expect.len);
    ck_assert_str_eq(sb_cstr(&out), sb_cstr(&expect));
    sb_free(&in);
    sb_free(&expect);
    sb_free(&out);
}
END_TEST

static Suite *strbuf_suite(void)
{
    Suite *s = suite_create("strbuf");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_sb_empty);
    tcase_add_test(tc, test_sb_append_growth);
    tcase_add_test(tc, test_sb_puts_putc);
    tcase_add_test(tc, test_sb_printf_growth);
    tcase_add_test(tc, test_sb_reset);
    tcase_add_test(tc, test_sb_put_numbers);
    suite_add_tcase(s, tc);
    TCase *tj = tcase_create("json");
    tcase_add_test(tj, test_sb_json_basic);
    tcase_add_test(tj, test_sb_json_escapes);
    tcase_add_test(tj, test_sb_json_control_chars);
    tcase_add_test(tj, test_sb_json_utf8);
    tcase_add_test(tj, test_sb_json_embedded_nul);
    tcase_add_test(tj, test_sb_json_long);
    suite_add_tcase(s, tj);
    return s;
}

/* ------------------------------------------------------------------ uuid */

#define CANON "550e8400-e29b-41d4-a716-446655440000"

static void expect_uuid(const char *in, const char *canon)
{
    char out[UUID_STR_LEN + 1];
    memset(out, 'Z', sizeof out);
    ck_assert_msg(uuid_canonical(in, strlen(in), out), "should accept \"%s\"", in);
    ck_assert_str_eq(out, canon);
    ck_assert_uint_eq(strlen(out), UUID_STR_LEN);
}

static void reject_uuid_n(const char *in, size_t len)
{
    char out[UUID_STR_LEN + 1];
    uint8_t b[16];
    ck_assert_msg(!uuid_canonical(in, len, out), "should reject \"%.*s\" (len %zu)", (int)len,
                  in ? in : "(null)", len);
    ck_assert_msg(!uuid_parse(in, len, b), "uuid_parse should reject \"%.*s\"", (int)len,
                  in ? in : "(null)");
}

static void reject_uuid(const char *in)
{
    reject_uuid_n(in, strlen(in));
}

START_TEST(test_uuid_hyphenated)
{
    expect_uuid(CANON, CANON);
    expect_uuid("550E8400-E29B-41D4-A716-446655440000", CANON);
    expect_uuid("550e8400-E29b-41D4-a716-446655440000", CANON);
    expect_uuid("00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000");
    expect_uuid("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", "ffffffff-ffff-ffff-ffff-ffffffffffff");
    expect_uuid("0123456789abcdefABCDEF0123456789", "01234567-89ab-cdef-abcd-ef0123456789");
}
END_TEST

START_TEST(test_uuid_32hex)
{
    expect_uuid("550e8400e29b41d4a716446655440000", CANON);
    expect_uuid("550E8400E29B41D4A716446655440000", CANON);
    expect_uuid("550e8400E29B41d4a716446655440000", CANON);
}
END_TEST

START_TEST(test_uuid_urn)
{
    expect_uuid("urn:uuid:" CANON, CANON);
    expect_uuid("URN:UUID:" CANON, CANON);
    expect_uuid("Urn:Uuid:550E8400-E29B-41D4-A716-446655440000", CANON);
}
END_TEST

START_TEST(test_uuid_braced)
{
    expect_uuid("{" CANON "}", CANON);
    expect_uuid("{550E8400-E29B-41D4-A716-446655440000}", CANON);
}
END_TEST

START_TEST(test_uuid_parse_bytes)
{
    uint8_t b[16];
    ck_assert(uuid_parse(CANON, strlen(CANON), b));
    static const uint8_t want[16] = { 0x55, 0x0e, 0x84, 0x00, 0xe2, 0x9b, 0x41, 0xd4,
                                      0xa7, 0x16, 0x44, 0x66, 0x55, 0x44, 0x00, 0x00 };
    ck_assert_mem_eq(b, want, 16);
    char out[UUID_STR_LEN + 1];
    uuid_format(want, out);
    ck_assert_str_eq(out, CANON);
}
END_TEST

START_TEST(test_uuid_len_argument)
{
    /* only len bytes are looked at: a longer buffer with a valid prefix is fine */
    char out[UUID_STR_LEN + 1];
    const char *s = CANON "trailing garbage";
    ck_assert(uuid_canonical(s, 36, out));
    ck_assert_str_eq(out, CANON);
}
END_TEST

START_TEST(test_uuid_rejected_lengths)
{
    reject_uuid("");
    reject_uuid("550e8400-e29b-41d4-a716-44665544000");    /* 35 */
    reject_uuid("550e8400-e29b-41d4-a716-4466554400000");  /* 37 */
    reject_uuid("550e8400e29b41d4a71644665544000");        /* 31 */
    reject_uuid("550e8400e29b41d4a7164466554400000");      /* 33 */
    reject_uuid("550e8400-e29b-41d4-a716446655440000");    /* 35, one hyphen missing */
    reject_uuid("{550e8400e29b41d4a716446655440000}");     /* braced 32 hex */
    reject_uuid("urn:uuid:550e8400-e29b-41d4-a716-44665544000");
    reject_uuid("urn:uuid:");
    reject_uuid("{}");
    reject_uuid("550e8400");
}
END_TEST

START_TEST(test_uuid_rejected_hyphens)
{
    reject_uuid("550e840-0e29b-41d4-a716-446655440000");
    reject_uuid("550e8400-e29b41d4--a716-446655440000");
    reject_uuid("550e8400e-29b-41d4-a716-446655440000");
    reject_uuid("550e8400-e29b-41d4-a7164-46655440000");
    reject_uuid("550e8400_e29b_41d4_a716_446655440000");
    reject_uuid("-550e8400e29b41d4a716446655440000---");
    reject_uuid("------------------------------------");
    reject_uuid("550e8400-e29b-41d4-a716-4466554400-0");
    reject_uuid("550e-8400e29b41d4a716446655440000"); /* 33 */
    reject_uuid("550e8400e29b41d4a71644665544000-"); /* 32 with a hyphen */
}
END_TEST

START_TEST(test_uuid_rejected_nonhex)
{
    reject_uuid("550e8400-e29b-41d4-a716-44665544000g");
    reject_uuid("g50e8400-e29b-41d4-a716-446655440000");
    reject_uuid("550e8400-e29b-41d4-a716-44665544000G");
    reject_uuid("550e8400e29b41d4a71644665544000z");
    reject_uuid("550e8400-e29b-41d4-a716-44665544 000");
    reject_uuid("550e8400-e29b-41d4-a716-4466554400\xc3\xa9");
    reject_uuid("550e8400-e29b-41d4-a716-44665544000+");
    reject_uuid("urn:uuid:550e8400-e29b-41d4-a716-44665544000x");
    reject_uuid("{550e8400-e29b-41d4-a716-44665544000x}");
    reject_uuid("urn:uuix:" CANON);
    reject_uuid("urn-uuid:" CANON);
    reject_uuid("xxxxxxxxx" CANON);
    /* embedded NUL within len */
    char nul[36];
    memcpy(nul, CANON, 36);
    nul[20] = '\0';
    reject_uuid_n(nul, 36);
}
END_TEST

START_TEST(test_uuid_rejected_braces)
{
    reject_uuid("{" CANON);
    reject_uuid(CANON "}");
    reject_uuid("{" CANON ")");
    reject_uuid("(" CANON "}");
    reject_uuid("}" CANON "{");
    reject_uuid("[" CANON "]");
    reject_uuid("{{" CANON "}");
    reject_uuid("{" CANON "}}");
    reject_uuid("{urn:uuid:" CANON "}");
}
END_TEST

START_TEST(test_uuid_rejected_spaces)
{
    reject_uuid(" " CANON);
    reject_uuid(CANON " ");
    reject_uuid(" " CANON " ");
    reject_uuid("\t" CANON);
    reject_uuid(CANON "\n");
    reject_uuid(" 550e8400e29b41d4a716446655440000");
    reject_uuid("550e8400e29b41d4a716446655440000 ");
    reject_uuid(" 550e8400e29b41d4a71644665544000"); /* 32 chars, leading space */
    reject_uuid("550e8400e29b41d4a71644665544000 "); /* 32 chars, trailing space */
    reject_uuid(" 50e8400-e29b-41d4-a716-446655440000"); /* 36 chars, leading space */
    reject_uuid("550e8400-e29b-41d4-a716-44665544000 "); /* 36 chars, trailing space */
    reject_uuid(" {" CANON "}");
    reject_uuid("{ " CANON "}");
    reject_uuid("urn:uuid: " CANON);
    reject_uuid(" urn:uuid:" CANON);
    reject_uuid("                                    ");
}
END_TEST

START_TEST(test_uuid_rejected_null)
{
    char out[UUID_STR_LEN + 1];
    uint8_t b[16];
    ck_assert(!uuid_parse(NULL, 0, b));
    ck_assert(!uuid_parse(NULL, 36, b));
    ck_assert(!uuid_canonical(NULL, 36, out));
    ck_assert(!uuid_canonical(NULL, 32, out));
    ck_assert(!uuid_canonical("", 0, out));
}
END_TEST

static Suite *uuid_suite(void)
{
    Suite *s = suite_create("uuid");
    TCase *ta = tcase_create("accepted");
    tcase_add_test(ta, test_uuid_hyphenated);
    tcase_add_test(ta, test_uuid_32hex);
    tcase_add_test(ta, test_uuid_urn);
    tcase_add_test(ta, test_uuid_braced);
    tcase_add_test(ta, test_uuid_parse_bytes);
    tcase_add_test(ta, test_uuid_len_argument);
    suite_add_tcase(s, ta);
    TCase *tr = tcase_create("rejected");
    tcase_add_test(tr, test_uuid_rejected_lengths);
    tcase_add_test(tr, test_uuid_rejected_hyphens);
    tcase_add_test(tr, test_uuid_rejected_nonhex);
    tcase_add_test(tr, test_uuid_rejected_braces);
    tcase_add_test(tr, test_uuid_rejected_spaces);
    tcase_add_test(tr, test_uuid_rejected_null);
    suite_add_tcase(s, tr);
    return s;
}

/* ------------------------------------------------------------------ log, ct_equal */

START_TEST(test_log_level_parse)
{
    enum log_level l = LOG_ERROR;
    ck_assert(log_level_parse("debug", &l));
    ck_assert_int_eq(l, LOG_DEBUG);
    ck_assert(log_level_parse("info", &l));
    ck_assert_int_eq(l, LOG_INFO);
    ck_assert(log_level_parse("warn", &l));
    ck_assert_int_eq(l, LOG_WARN);
    ck_assert(log_level_parse("error", &l));
    ck_assert_int_eq(l, LOG_ERROR);
    ck_assert(log_level_parse("warning", &l));
    ck_assert_int_eq(l, LOG_WARN);
    ck_assert(log_level_parse("DEBUG", &l));
    ck_assert_int_eq(l, LOG_DEBUG);
    ck_assert(log_level_parse("Info", &l));
    ck_assert_int_eq(l, LOG_INFO);
    ck_assert(log_level_parse("WARNING", &l));
    ck_assert_int_eq(l, LOG_WARN);
    ck_assert(log_level_parse("ErRoR", &l));
    ck_assert_int_eq(l, LOG_ERROR);

    l = LOG_INFO;
    ck_assert(!log_level_parse("", &l));
    ck_assert(!log_level_parse("verbose", &l));
    ck_assert(!log_level_parse("err", &l));
    ck_assert(!log_level_parse("debug ", &l));
    ck_assert(!log_level_parse(" info", &l));
    ck_assert(!log_level_parse("fatal", &l));
    ck_assert_int_eq(l, LOG_INFO); /* untouched on failure */
}
END_TEST

START_TEST(test_log_level_name)
{
    ck_assert_str_eq(log_level_name(LOG_DEBUG), "debug");
    ck_assert_str_eq(log_level_name(LOG_INFO), "info");
    ck_assert_str_eq(log_level_name(LOG_WARN), "warn");
    ck_assert_str_eq(log_level_name(LOG_ERROR), "error");
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++) {
        enum log_level l;
        ck_assert(log_level_parse(log_level_name((enum log_level)i), &l));
        ck_assert_int_eq(l, i);
    }
}
END_TEST

START_TEST(test_log_enabled)
{
    log_setup(LOG_WARN, LOG_FORMAT_TEXT);
    ck_assert(!log_enabled(LOG_DEBUG));
    ck_assert(!log_enabled(LOG_INFO));
    ck_assert(log_enabled(LOG_WARN));
    ck_assert(log_enabled(LOG_ERROR));
    log_setup(LOG_DEBUG, LOG_FORMAT_TEXT);
    ck_assert(log_enabled(LOG_DEBUG));
    log_setup(LOG_INFO, LOG_FORMAT_TEXT);
}
END_TEST

/* One log_request() line in the given format, with user and device as given. */
static char *request_line(enum log_format format, const char *user, const char *device)
{
    log_setup(LOG_INFO, format);
    struct log_request r = { .request_id = "0123456789abcdef", .method = "GET",
                             .path = "/sync/download", .route = "/sync/download", .user = user,
                             .device = device, .status = 200, .duration_ms = 1.5, .error = NULL };
    struct capture c;
    capture_start(&c);
    log_request(&r);
    char *line = capture_end(&c);
    log_setup(LOG_INFO, LOG_FORMAT_TEXT);
    return line;
}

static char *msg_line(enum log_format format, const char *msg)
{
    log_setup(LOG_INFO, format);
    struct capture c;
    capture_start(&c);
    log_info("%s", msg);
    char *line = capture_end(&c);
    log_setup(LOG_INFO, LOG_FORMAT_TEXT);
    return line;
}

/* Exactly one line, and no byte below 0x20 or DEL in it but its final newline. */
static void assert_one_clean_line(const char *line)
{
    size_t n = strlen(line);
    ck_assert_msg(n > 0 && line[n - 1] == '\n', "no final newline: %s", line);
    for (size_t i = 0; i + 1 < n; i++)
        ck_assert_msg((unsigned char)line[i] >= 0x20 && (unsigned char)line[i] != 0x7f,
                      "byte 0x%02x at %zu of %s", (unsigned char)line[i], i, line);
}

static void assert_has(const char *line, const char *fragment)
{
    ck_assert_msg(strstr(line, fragment) != NULL, "%s lacks %s", line, fragment);
}

START_TEST(test_log_text_escapes_values)
{
    char *line = request_line(LOG_FORMAT_TEXT, "alice\n2026-01-01T00:00:00.000Z info forged",
                              "\x1b[31mred\x7f");
    assert_one_clean_line(line);
    assert_has(line, " user=\"alice\\n2026-01-01T00:00:00.000Z info forged\" ");
    assert_has(line, " device=\"\\x1b[31mred\\x7f\" ");
    free(line);

    /* no space, quote or '=': still quoted once it holds a control byte */
    line = request_line(LOG_FORMAT_TEXT, "a\rb", "tab\there");
    assert_one_clean_line(line);
    assert_has(line, " user=\"a\\rb\" device=\"tab\\there\" ");
    free(line);

    /* every control byte and DEL, one at a time */
    for (int b = 1; b < 0x80; b = b == 0x1f ? 0x7f : b + 1) {
        char user[4] = { 'u', (char)b, 'v', '\0' };
        line = request_line(LOG_FORMAT_TEXT, user, "d");
        assert_one_clean_line(line);
        free(line);
    }

    /* plain values stay as they were; quotes and backslashes inside quotes are escaped */
    line = request_line(LOG_FORMAT_TEXT, "alice", "phone-1");
    assert_one_clean_line(line);
    assert_has(line, " user=alice device=phone-1 status=200 ");
    free(line);
    line = request_line(LOG_FORMAT_TEXT, "", "phone-1");
    assert_has(line, " user=\"\" device=phone-1 status=200 ");
    free(line);
    line = request_line(LOG_FORMAT_TEXT, "a \"b\" \\c", "x=y");
    assert_has(line, " user=\"a \\\"b\\\" \\\\c\" device=\"x=y\" ");
    free(line);

    /* each byte that matters at every offset of a value longer than two eight-byte words (the
     * scan looks at eight bytes at a time): quoted and escaped as when it is alone */
    static const struct { char byte; const char *as; bool quoted; } specials[] = {
        { ' ', " ", true }, { '"', "\\\"", true }, { '\\', "\\", false }, { '=', "=", true },
        { '\x01', "\\x01", true }, { '\x7f', "\\x7f", true }, { '~', "~", false }, { '!', "!", false },
    };
    for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++)
        for (int at = 0; at < 24; at++) {
            char user[25], want[64];
            memset(user, 'a', 24);
            user[24] = '\0';
            user[at] = specials[k].byte;
            snprintf(want, sizeof want, " user=%s%.*s%s%.*s%s device=", specials[k].quoted ? "\"" : "", at,
                     "aaaaaaaaaaaaaaaaaaaaaaaa", specials[k].as, 23 - at, "aaaaaaaaaaaaaaaaaaaaaaaa",
                     specials[k].quoted ? "\"" : "");
            line = request_line(LOG_FORMAT_TEXT, user, "d");
            assert_one_clean_line(line);
            assert_has(line, want);
            free(line);
        }
}
END_TEST

START_TEST(test_log_text_escapes_message)
{
    char *line = msg_line(LOG_FORMAT_TEXT, "first\nsecond\r\tthird\x1b[0m\x7f");
    assert_one_clean_line(line);
    assert_has(line, " first\\nsecond\\r\\tthird\\x1b[0m\\x7f\n");
    free(line);
}
END_TEST

START_TEST(test_log_json_escapes)
{
    char *line = request_line(LOG_FORMAT_JSON, "alice\nbob", "\x1b[31m\x7f\x01\"\\");
    assert_one_clean_line(line);
    assert_has(line, ",\"user\":\"alice\\nbob\",");
    assert_has(line, ",\"device\":\"\\u001b[31m\\u007f\\u0001\\\"\\\\\",");
    free(line);

    /* plain values, and values with what only text lines quote (space, '='), as they are */
    line = request_line(LOG_FORMAT_JSON, "alice", "a b=c");
    assert_one_clean_line(line);
    assert_has(line, ",\"user\":\"alice\",\"device\":\"a b=c\",\"status\":200,");
    free(line);

    line = msg_line(LOG_FORMAT_JSON, "first\nsecond\x1b\x7f");
    assert_one_clean_line(line);
    assert_has(line, ",\"msg\":\"first\\nsecond\\u001b\\u007f\"}\n");
    free(line);
}
END_TEST

/* Numbers are written without printf: the same digits as "%d" and "%.3f". */
START_TEST(test_log_request_numbers)
{
    static const double durations[] = { 0, 0.0004, 0.0016, 1.5, 12.3456, 999.9994, 123456.789, 7 };
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        log_setup(LOG_INFO, LOG_FORMAT_TEXT);
        struct log_request r = { .request_id = "r", .method = "GET", .path = "/p", .route = "-",
                                 .status = 404, .duration_ms = durations[i] };
        struct capture c;
        capture_start(&c);
        log_request(&r);
        char *line = capture_end(&c);
        char want[64];
        snprintf(want, sizeof want, " status=404 duration_ms=%.3f\n", durations[i]);
        assert_has(line, want);
        char pid[32];
        snprintf(pid, sizeof pid, " [%d] request ", (int)getpid());
        assert_has(line, pid);
        /* 2026-12-06T10:00:00.123Z */
        ck_assert_msg(strlen(line) > 24 && line[4] == '-' && line[10] == 'T' && line[19] == '.' &&
                      line[23] == 'Z' && line[24] == ' ', "timestamp of %s", line);
        free(line);
    }
    log_setup(LOG_INFO, LOG_FORMAT_JSON);
    struct log_request r = { .request_id = "r", .method = "GET", .path = "/p", .route = "-",
                             .status = 503, .duration_ms = 2.25 };
    struct capture c;
    capture_start(&c);
    log_request(&r);
    char *line = capture_end(&c);
    log_setup(LOG_INFO, LOG_FORMAT_TEXT);
    assert_has(line, ",\"status\":503,\"duration_ms\":2.250}\n");
    assert_has(line, "\"level\":\"error\"");
    char pid[32];
    snprintf(pid, sizeof pid, "\"pid\":%d,", (int)getpid());
    assert_has(line, pid);
    free(line);
}
END_TEST

/* The pid in a line is the writing process's, also in a child forked after a line was written. */
START_TEST(test_log_pid_after_fork)
{
    log_setup(LOG_INFO, LOG_FORMAT_TEXT);
    char *parent = msg_line(LOG_FORMAT_TEXT, "parent");
    free(parent);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        dup2(fds[1], STDERR_FILENO);
        log_info("child line");
        _exit(0);
    }
    close(fds[1]);
    char buf[512];
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    waitpid(child, NULL, 0);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    char want[32];
    snprintf(want, sizeof want, " [%d] child line", (int)child);
    assert_has(buf, want);
}
END_TEST

/* Reads what one write() put into a packet-mode pipe; "" when nothing is waiting. */
static char *read_packet(int fd)
{
    static char buf[8192];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void request_to(int status)
{
    struct log_request r = { .request_id = "r", .method = "GET", .path = "/sync/schema-version",
                             .route = "/sync/schema-version", .user = "alice", .device = "phone",
                             .status = status, .duration_ms = 0.25 };
    log_request(&r);
}

/* A busy worker's request lines are written together: at most 4096 bytes a write, in order, none
 * held back past another line, a flush, the end of buffering or a second. */
START_TEST(test_log_buffered_requests)
{
    int fds[2];
    ck_assert_int_eq(pipe2(fds, O_DIRECT | O_NONBLOCK), 0);   /* one read = one write */
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(dup2(fds[1], STDERR_FILENO), 0);
    log_setup(LOG_INFO, LOG_FORMAT_TEXT);
    log_buffer_requests(true);

    request_to(200);
    request_to(201);
    char *got = read_packet(fds[0]);
    ck_assert_str_eq(got, "");                            /* held */
    log_flush();
    got = read_packet(fds[0]);
    ck_assert_msg(strstr(got, "status=200") && strstr(got, "status=201") &&
                  strstr(got, "status=200") < strstr(got, "status=201"), "one write, in order: %s", got);
    ck_assert_str_eq(read_packet(fds[0]), "");

    /* another line writes the held ones first, then itself */
    request_to(202);
    log_warn("not a request");
    got = read_packet(fds[0]);
    ck_assert_msg(strstr(got, "status=202") && !strstr(got, "not a request"), "held line first: %s", got);
    got = read_packet(fds[0]);
    ck_assert_msg(strstr(got, "not a request") != NULL, "then the other: %s", got);

    /* never more than 4096 bytes in one write, no line lost or cut */
    int lines = 0, seen = 0;
    for (int i = 0; i < 100; i++, lines++)
        request_to(200 + i);
    log_flush();
    for (;;) {
        got = read_packet(fds[0]);
        size_t n = strlen(got);
        if (n == 0)
            break;
        ck_assert_uint_le(n, 4096);
        ck_assert_msg(got[n - 1] == '\n', "whole lines only");
        for (char *p = got; (p = strstr(p, " request ")) != NULL; p++)
            seen++;
    }
    ck_assert_int_eq(seen, lines);

    /* a line held for a second goes out with the next one */
    request_to(203);
    sleep(1);
    struct timespec pause = { 0, 50 * 1000 * 1000 };
    nanosleep(&pause, NULL);
    request_to(204);
    got = read_packet(fds[0]);
    ck_assert_msg(strstr(got, "status=203") && !strstr(got, "status=204"), "the old line alone: %s", got);

    /* the end of buffering writes what is held, and lines are written at once again */
    log_buffer_requests(false);
    got = read_packet(fds[0]);
    ck_assert_msg(strstr(got, "status=204") != NULL, "held line at the end: %s", got);
    request_to(205);
    got = read_packet(fds[0]);
    ck_assert_msg(strstr(got, "status=205") != NULL, "unbuffered: %s", got);

    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(test_ct_equal)
{
    ck_assert(ct_equal("secret", "secret", 6));
    ck_assert(!ct_equal("secret", "secreT", 6));
    ck_assert(!ct_equal("Secret", "secret", 6));
    ck_assert(ct_equal("abc", "xyz", 0));
    ck_assert(ct_equal("abcX", "abcY", 3));
    unsigned char a[64], b[64];
    memset(a, 0x5a, sizeof a);
    memcpy(b, a, sizeof b);
    ck_assert(ct_equal(a, b, sizeof a));
    for (size_t i = 0; i < sizeof a; i++) {
        b[i] ^= 0x01;
        ck_assert(!ct_equal(a, b, sizeof a));
        b[i] ^= 0x01;
    }
    b[63] = 0x00;
    a[63] = 0x80;
    ck_assert(!ct_equal(a, b, sizeof a));
    /* every length around the eight-byte steps, a difference at every offset, at any alignment */
    unsigned char c[80], d[80];
    for (size_t i = 0; i < sizeof c; i++)
        c[i] = d[i] = (unsigned char)(i * 37 + 11);
    for (size_t off = 0; off < 3; off++)
        for (size_t n = 0; n + off <= 72; n++) {
            ck_assert(ct_equal(c + off, d + off, n));
            for (size_t i = 0; i < n; i++) {
                d[off + i] ^= 0x80;
                ck_assert_msg(!ct_equal(c + off, d + off, n), "length %zu, offset %zu: byte %zu differs", n, off, i);
                d[off + i] ^= 0x80;
            }
        }
    /* embedded NUL bytes are compared, not treated as terminators */
    ck_assert(!ct_equal("a\0b", "a\0c", 3));
    ck_assert(ct_equal("a\0b", "a\0b", 3));
}
END_TEST

START_TEST(test_xalloc)
{
    char *s = xstrdup("hello");
    ck_assert_str_eq(s, "hello");
    free(s);
    s = xstrndup("hello", 3);
    ck_assert_str_eq(s, "hel");
    free(s);
    unsigned char *z = xcalloc(100, 1);
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(z[i], 0);
    z = xrealloc(z, 10000);
    z[9999] = 1;
    free(z);
    void *p = xmalloc(0);
    ck_assert_ptr_nonnull(p);
    free(p);
}
END_TEST

static Suite *misc_suite(void)
{
    Suite *s = suite_create("misc");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_log_level_parse);
    tcase_add_test(tc, test_log_level_name);
    tcase_add_test(tc, test_log_enabled);
    tcase_add_test(tc, test_log_text_escapes_values);
    tcase_add_test(tc, test_log_request_numbers);
    tcase_add_test(tc, test_log_pid_after_fork);
    tcase_add_test(tc, test_log_buffered_requests);
    tcase_add_test(tc, test_log_text_escapes_message);
    tcase_add_test(tc, test_log_json_escapes);
    tcase_add_test(tc, test_ct_equal);
    tcase_add_test(tc, test_xalloc);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(arena_suite(), strbuf_suite(), uuid_suite(), misc_suite(), NULL);
}
