/* The JSON scanner (src/json_scan.c) on hostile input: every RFC 8259 corner accepted or refused
 * with its exact message and byte offset, what PostgreSQL's jsonb would refuse marked pg_unsafe
 * (\u0000, unpaired surrogates, numbers beyond numeric's range), the nesting limit, and the
 * span, iterator and string helpers the callers build on. Tables of single cases, then loops
 * over every byte value or code point where the input space is small enough. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "json_scan.h"
#include "xalloc.h"
#include "../run_suites.h"

#define LEN(s) (sizeof(s) - 1) /* of a string literal, embedded NULs included */
/* How much of a text a failure message shows: Check refuses long messages. */
#define SHOWN(len) ((int)((len) < 60 ? (len) : 60))

/* ------------------------------------------------------------------ helpers */

static bool scan(const char *text, size_t len, struct json_span *root, char *err, size_t errlen)
{
    err[0] = '\0';
    return json_validate(text, len, root, err, errlen);
}

/* text is accepted as one value of type t whose span is the text without the surrounding white
 * space, and pg_unsafe is as given. */
static void expect_ok(const char *text, size_t len, enum json_type t, bool unsafe)
{
    struct json_span root;
    char err[128];
    ck_assert_msg(scan(text, len, &root, err, sizeof err), "refused %.*s: %s", SHOWN(len), text, err);
    ck_assert_msg(root.type == t, "%.*s: type %d, expected %d", SHOWN(len), text, (int)root.type, (int)t);
    ck_assert_msg(root.pg_unsafe == unsafe, "%.*s: pg_unsafe %d", SHOWN(len), text, (int)root.pg_unsafe);
    size_t lead = 0, trail = 0;
    while (lead < len && text[lead] && strchr(" \t\n\r", text[lead]))
        lead++;
    while (trail < len - lead && text[len - 1 - trail] && strchr(" \t\n\r", text[len - 1 - trail]))
        trail++;
    ck_assert_ptr_eq(root.start, text + lead);
    ck_assert_uint_eq(root.len, len - lead - trail);
}

/* text is refused with "invalid JSON at byte <at>: <what>". */
static void expect_bad(const char *text, size_t len, size_t at, const char *what)
{
    struct json_span root;
    char err[128], want[128];
    ck_assert_msg(!scan(text, len, &root, err, sizeof err), "accepted %.*s", SHOWN(len), text);
    snprintf(want, sizeof want, "invalid JSON at byte %zu: %s", at, what);
    ck_assert_msg(strcmp(err, want) == 0, "%.*s: \"%s\", expected \"%s\"", SHOWN(len), text, err, want);
}

static bool valid(const char *text, size_t len)
{
    struct json_span root;
    char err[128];
    return scan(text, len, &root, err, sizeof err);
}

/* A validated root span (the test fails when text is refused). */
static struct json_span root_of(const char *text)
{
    struct json_span root;
    char err[128];
    ck_assert_msg(scan(text, strlen(text), &root, err, sizeof err), "refused %.60s: %s", text, err);
    return root;
}

static bool span_is(const struct json_span *s, const char *raw)
{
    return s->len == strlen(raw) && memcmp(s->start, raw, s->len) == 0;
}

/* The UTF-8 encoding of cp, surrogates included (for building invalid input): continuation
 * bytes from the end, then the lead byte; not the scanner's way, so it checks it. */
static size_t encode_utf8(char *o, uint32_t cp)
{
    static const unsigned char lead[] = { 0, 0x00, 0xC0, 0xE0, 0xF0 };
    size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    for (size_t i = n - 1; i > 0; i--, cp >>= 6)
        o[i] = (char)(0x80 | (cp & 0x3F));
    o[0] = (char)(lead[n] | cp);
    return n;
}

/* ------------------------------------------------------------------ accepted values */

struct ok_case {
    const char *text;
    size_t len;            /* 0: strlen */
    enum json_type type;
    bool unsafe;
};

static const struct ok_case ok_cases[] = {
    /* literals */
    { "null", 0, JSON_NULL, false },
    { "true", 0, JSON_TRUE, false },
    { "false", 0, JSON_FALSE, false },
    /* numbers: RFC 8259 §6 */
    { "0", 0, JSON_NUMBER, false },
    { "-0", 0, JSON_NUMBER, false },
    { "7", 0, JSON_NUMBER, false },
    { "-7", 0, JSON_NUMBER, false },
    { "1234567890", 0, JSON_NUMBER, false },
    { "0.5", 0, JSON_NUMBER, false },
    { "-0.0", 0, JSON_NUMBER, false },
    { "10.25", 0, JSON_NUMBER, false },
    { "1e5", 0, JSON_NUMBER, false },
    { "1E5", 0, JSON_NUMBER, false },
    { "1e+5", 0, JSON_NUMBER, false },
    { "1e-5", 0, JSON_NUMBER, false },
    { "1E-05", 0, JSON_NUMBER, false },       /* leading zeros are allowed in the exponent */
    { "0e0", 0, JSON_NUMBER, false },
    { "-0.0e-0", 0, JSON_NUMBER, false },
    { "1.5e300", 0, JSON_NUMBER, false },     /* beyond a double's precision, not numeric's range */
    { "1e400", 0, JSON_NUMBER, false },       /* beyond a double, still a numeric */
    { "99999999999999999999999999999999999999", 0, JSON_NUMBER, false },
    { "-9223372036854775809", 0, JSON_NUMBER, false },
    /* numeric holds 131072 digits before the point and 16383 after it */
    { "1e131071", 0, JSON_NUMBER, false },
    { "1e131072", 0, JSON_NUMBER, true },
    { "10e131070", 0, JSON_NUMBER, false },
    { "10e131071", 0, JSON_NUMBER, true },
    { "1e-16383", 0, JSON_NUMBER, false },
    { "1e-16384", 0, JSON_NUMBER, true },
    { "0.1e-16382", 0, JSON_NUMBER, false },
    { "0.1e-16383", 0, JSON_NUMBER, true },
    { "1e999999999999999999", 0, JSON_NUMBER, true },
    { "-1e-999999999999999999", 0, JSON_NUMBER, true },
    /* digits and the exponent are counted, not the value */
    { "0e131073", 0, JSON_NUMBER, true },
    /* strings */
    { "\"\"", 0, JSON_STRING, false },
    { "\"abc\"", 0, JSON_STRING, false },
    { "\" \"", 0, JSON_STRING, false },
    { "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", 0, JSON_STRING, false },
    { "\"\\u0041\\u00e9\\u00E9\\u20ac\\uFFFF\"", 0, JSON_STRING, false },
    { "\"\\u0001\\u001f\"", 0, JSON_STRING, false },   /* escaped control characters are fine */
    { "\"\\uD83D\\uDE00\"", 0, JSON_STRING, false },   /* a surrogate pair */
    { "\"\\ud83d\\ude00\"", 0, JSON_STRING, false },
    { "\"\\uDBFF\\uDFFF\"", 0, JSON_STRING, false },
    { "\"\\uD800\\uDC00\"", 0, JSON_STRING, false },
    { "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", 0, JSON_STRING, false },
    { "\"\x7f\"", 0, JSON_STRING, false },              /* DEL is not a control character here */
    { "\"'\"", 0, JSON_STRING, false },
    /* what jsonb refuses: \u0000 and unpaired surrogates */
    { "\"\\u0000\"", 0, JSON_STRING, true },
    { "\"a\\u0000b\"", 0, JSON_STRING, true },
    { "\"\\uD800\"", 0, JSON_STRING, true },
    { "\"\\uDBFF\"", 0, JSON_STRING, true },
    { "\"\\uDC00\"", 0, JSON_STRING, true },
    { "\"\\uDFFF\"", 0, JSON_STRING, true },
    { "\"\\uDE00\\uD83D\"", 0, JSON_STRING, true },     /* the pair reversed */
    { "\"\\uD800x\"", 0, JSON_STRING, true },
    { "\"\\uD800\\u0041\"", 0, JSON_STRING, true },
    { "\"\\uD800\\uD800\"", 0, JSON_STRING, true },
    { "\"\\uD800\\n\"", 0, JSON_STRING, true },
    { "\"\\uD83D\\uDE00\\uDE00\"", 0, JSON_STRING, true },
    /* containers */
    { "[]", 0, JSON_ARRAY, false },
    { "{}", 0, JSON_OBJECT, false },
    { "[ ]", 0, JSON_ARRAY, false },
    { "{\t\n\r }", 0, JSON_OBJECT, false },
    { "[1,\"a\",null,true,false,{},[]]", 0, JSON_ARRAY, false },
    { "{\"a\":1,\"b\":[2,{\"c\":null}]}", 0, JSON_OBJECT, false },
    { "{\"a\":1,\"a\":2}", 0, JSON_OBJECT, false },   /* repeated keys are the caller's business */
    { "{\"\":0}", 0, JSON_OBJECT, false },
    { "[[[[[]]]]]", 0, JSON_ARRAY, false },
    /* pg_unsafe anywhere inside marks the container: a value, a key, deep down */
    { "[1,\"\\u0000\"]", 0, JSON_ARRAY, true },
    { "{\"\\u0000\":1}", 0, JSON_OBJECT, true },
    { "{\"a\":{\"b\":[1e999999]}}", 0, JSON_OBJECT, true },
    { "[{\"a\":\"\\uDC00\"},2]", 0, JSON_ARRAY, true },
    /* white space: space, tab, line feed, carriage return, around and between everything */
    { " 1 ", 0, JSON_NUMBER, false },
    { "\t\n\r 1\t\n\r ", 0, JSON_NUMBER, false },
    { " \"a\" ", 0, JSON_STRING, false },
    { "\r\n[ 1 , 2 ]\r\n", 0, JSON_ARRAY, false },
    { " { \"a\" : 1 , \"b\" : [ ] } ", 0, JSON_OBJECT, false },
    { "\n\n\nnull\n\n\n", 0, JSON_NULL, false },
    /* NUL bytes inside a string must be escaped, and then they are jsonb-unsafe */
    { "\"\\u0000\\u0000\"", 0, JSON_STRING, true },
};

START_TEST(test_accepted)
{
    const struct ok_case *c = &ok_cases[_i];
    expect_ok(c->text, c->len ? c->len : strlen(c->text), c->type, c->unsafe);
}
END_TEST

/* Digit counts right at numeric's limits, spelled out. */
START_TEST(test_numeric_range_by_digits)
{
    enum { INT_DIGITS = 131072, FRAC_DIGITS = 16383 };
    char *buf = xmalloc(INT_DIGITS + 16);
    /* 131072 digits before the point fit, 131073 do not */
    memset(buf, '9', INT_DIGITS + 1);
    expect_ok(buf, INT_DIGITS, JSON_NUMBER, false);
    expect_ok(buf, INT_DIGITS + 1, JSON_NUMBER, true);
    /* a negative sign does not count */
    buf[0] = '-';
    expect_ok(buf, INT_DIGITS + 1, JSON_NUMBER, false);
    /* 16383 after the point fit, 16384 do not */
    memcpy(buf, "0.", 2);
    memset(buf + 2, '1', FRAC_DIGITS + 1);
    expect_ok(buf, 2 + FRAC_DIGITS, JSON_NUMBER, false);
    expect_ok(buf, 2 + FRAC_DIGITS + 1, JSON_NUMBER, true);
    /* an exponent shifts digits between the two */
    size_t n = 2 + FRAC_DIGITS + 1;
    memcpy(buf + n, "e1", 3);
    expect_ok(buf, n + 2, JSON_NUMBER, false);
    memcpy(buf + n, "e-1", 4);
    expect_ok(buf, n + 3, JSON_NUMBER, true);
    free(buf);
}
END_TEST

/* ------------------------------------------------------------------ refused input */

struct bad_case {
    const char *text;
    size_t len;            /* 0: strlen */
    size_t at;
    const char *what;
};

#define END "unexpected end of input"
#define TRAILING "unexpected data after the JSON value"

static const struct bad_case bad_cases[] = {
    /* nothing */
    { "", 0, 0, END },
    { " ", 0, 1, END },
    { "\t\n\r ", 0, 4, END },
    /* white space that RFC 8259 does not have */
    { "\f1", 0, 0, "bad number" },
    { "\v1", 0, 0, "bad number" },
    { "1\f", 0, 1, TRAILING },
    { "\xc2\xa0" "1", 0, 0, "bad number" },   /* no-break space */
    { "\xef\xbb\xbf" "1", 0, 0, "bad number" }, /* byte order mark */
    { "\0", 1, 0, "bad number" },
    /* numbers */
    { "01", 0, 1, TRAILING },
    { "00", 0, 1, TRAILING },
    { "-01", 0, 2, TRAILING },
    { "0123", 0, 1, TRAILING },
    { "-", 0, 1, "bad number" },
    { "--1", 0, 1, "bad number" },
    { "-a", 0, 1, "bad number" },
    { "- 1", 0, 1, "bad number" },
    { "+1", 0, 0, "bad number" },
    { ".5", 0, 0, "bad number" },
    { "-.5", 0, 1, "bad number" },
    { "1.", 0, 2, "bad number fraction" },
    { "1.e5", 0, 2, "bad number fraction" },
    { "1.a", 0, 2, "bad number fraction" },
    { "1e", 0, 2, "bad number exponent" },
    { "1E", 0, 2, "bad number exponent" },
    { "1e+", 0, 3, "bad number exponent" },
    { "1e-", 0, 3, "bad number exponent" },
    { "1e+-1", 0, 3, "bad number exponent" },
    { "1ee1", 0, 2, "bad number exponent" },
    { "1.5.5", 0, 3, TRAILING },
    { "1e5.5", 0, 3, TRAILING },
    { "1e5e5", 0, 3, TRAILING },
    { "0x10", 0, 1, TRAILING },
    { "1_000", 0, 1, TRAILING },
    { "NaN", 0, 0, "bad number" },
    { "Infinity", 0, 0, "bad number" },
    { "-Infinity", 0, 1, "bad number" },
    { "1 2", 0, 2, TRAILING },
    /* literals */
    { "nul", 0, 0, "unexpected character" },
    { "nulx", 0, 0, "unexpected character" },
    { "tru", 0, 0, "unexpected character" },
    { "fals", 0, 0, "unexpected character" },
    { "True", 0, 0, "bad number" },
    { "NULL", 0, 0, "bad number" },
    { "nulll", 0, 4, TRAILING },
    { "truefalse", 0, 4, TRAILING },
    { "undefined", 0, 0, "bad number" },
    /* strings */
    { "\"", 0, 1, "unterminated string" },
    { "\"abc", 0, 4, "unterminated string" },
    { "\"abc\\\"", 0, 6, "unterminated string" },
    { "'abc'", 0, 0, "bad number" },
    { "\"\\", 0, 1, "unterminated escape" },
    { "\"\\u", 0, 1, "truncated \\u escape" },
    { "\"\\u12", 0, 1, "truncated \\u escape" },
    { "\"\\u12\"", 0, 1, "truncated \\u escape" },
    { "\"\\u123\"", 0, 1, "bad \\u escape" },     /* the closing quote taken as the fourth digit */
    { "\"\\u12G4\"", 0, 1, "bad \\u escape" },
    { "\"\\u-123\"", 0, 1, "bad \\u escape" },
    { "\"\\u 123\"", 0, 1, "bad \\u escape" },
    { "\"\\U0041\"", 0, 1, "bad escape" },
    { "\"\\x41\"", 0, 1, "bad escape" },
    { "\"\\'\"", 0, 1, "bad escape" },
    { "\"\\a\"", 0, 1, "bad escape" },
    { "\"\\0\"", 0, 1, "bad escape" },
    { "\"\\\0\"", 4, 1, "bad escape" },
    { "\"ab\\qc\"", 0, 3, "bad escape" },
    { "\"\\uD800\\u\"", 0, 7, "truncated \\u escape" },
    { "\"\\uD800\\uZZZZ\"", 0, 7, "bad \\u escape" },
    { "\"a\nb\"", 0, 2, "control character in string" },
    { "\"\t\"", 0, 1, "control character in string" },
    { "\"a\0b\"", 5, 2, "control character in string" },
    { "\"\x1f\"", 0, 1, "control character in string" },
    /* invalid UTF-8 */
    { "\"\x80\"", 0, 1, "invalid UTF-8" },               /* lone continuation byte */
    { "\"\xbf\"", 0, 1, "invalid UTF-8" },
    { "\"\xc0\x80\"", 0, 1, "invalid UTF-8" },           /* overlong NUL */
    { "\"\xc1\xbf\"", 0, 1, "invalid UTF-8" },           /* overlong 2-byte */
    { "\"\xe0\x80\x80\"", 0, 1, "invalid UTF-8" },       /* overlong 3-byte */
    { "\"\xe0\x9f\xbf\"", 0, 1, "invalid UTF-8" },
    { "\"\xf0\x80\x80\x80\"", 0, 1, "invalid UTF-8" },   /* overlong 4-byte */
    { "\"\xf0\x8f\xbf\xbf\"", 0, 1, "invalid UTF-8" },
    { "\"\xed\xa0\x80\"", 0, 1, "invalid UTF-8" },       /* U+D800 encoded */
    { "\"\xed\xbf\xbf\"", 0, 1, "invalid UTF-8" },       /* U+DFFF encoded */
    { "\"\xed\xa0\xbd\xed\xb8\x80\"", 0, 1, "invalid UTF-8" }, /* CESU-8 pair */
    { "\"\xf4\x90\x80\x80\"", 0, 1, "invalid UTF-8" },   /* U+110000 */
    { "\"\xf5\x80\x80\x80\"", 0, 1, "invalid UTF-8" },
    { "\"\xf8\x88\x80\x80\x80\"", 0, 1, "invalid UTF-8" }, /* 5-byte form */
    { "\"\xfe\"", 0, 1, "invalid UTF-8" },
    { "\"\xff\"", 0, 1, "invalid UTF-8" },
    { "\"\xc3\"", 0, 1, "invalid UTF-8" },               /* truncated by the quote */
    { "\"\xc3" "a\"", 0, 1, "invalid UTF-8" },
    { "\"\xe2\x82\"", 0, 1, "invalid UTF-8" },
    { "\"\xf0\x9f\x98\"", 0, 1, "invalid UTF-8" },
    { "\"\xe2\x82", 0, 1, "invalid UTF-8" },             /* truncated by the end of input */
    { "\"ok\xc3", 0, 3, "invalid UTF-8" },
    { "\"\xc3\xa9\xa9\"", 0, 3, "invalid UTF-8" },       /* one continuation byte too many */
    { "\xc3\xa9", 0, 0, "bad number" },                  /* UTF-8 outside a string */
    /* arrays */
    { "[", 0, 1, END },
    { "[ ", 0, 2, END },
    { "[1", 0, 2, "unterminated container" },
    { "[1 ", 0, 3, "unterminated container" },
    { "[1,", 0, 3, END },
    { "[1,]", 0, 3, "bad number" },
    { "[,1]", 0, 1, "bad number" },
    { "[,]", 0, 1, "bad number" },
    { "[1,,2]", 0, 3, "bad number" },
    { "[1 2]", 0, 3, "expected ',' or ']'" },
    { "[1}", 0, 2, "expected ',' or ']'" },
    { "[1:2]", 0, 2, "expected ',' or ']'" },
    { "[\"a\" \"b\"]", 0, 5, "expected ',' or ']'" },
    { "]", 0, 0, "bad number" },
    { "[]]", 0, 2, TRAILING },
    /* objects */
    { "{", 0, 1, "expected a member name" },
    { "{ ", 0, 2, "expected a member name" },
    { "{\"a\"", 0, 4, "expected ':'" },
    { "{\"a\" ", 0, 5, "expected ':'" },
    { "{\"a\" 1}", 0, 5, "expected ':'" },
    { "{\"a\"=1}", 0, 4, "expected ':'" },
    { "{\"a\":", 0, 5, END },
    { "{\"a\":}", 0, 5, "bad number" },
    { "{\"a\":1", 0, 6, "unterminated container" },
    { "{\"a\":1,", 0, 7, "expected a member name" },
    { "{\"a\":1,}", 0, 7, "expected a member name" },
    { "{,}", 0, 1, "expected a member name" },
    { "{a:1}", 0, 1, "expected a member name" },
    { "{'a':1}", 0, 1, "expected a member name" },
    { "{1:1}", 0, 1, "expected a member name" },
    { "{null:1}", 0, 1, "expected a member name" },
    { "{\"a\":1 \"b\":2}", 0, 7, "expected ',' or '}'" },
    { "{\"a\":1]", 0, 6, "expected ',' or '}'" },
    { "{\"a\":1;\"b\":2}", 0, 6, "expected ',' or '}'" },
    { "{\"a\"::1}", 0, 5, "bad number" },
    { "{\"\\u\":1}", 0, 2, "bad \\u escape" },      /* the quote and what follows taken as digits */
    { "{\"a\x01\":1}", 0, 3, "control character in string" },
    { "}", 0, 0, "bad number" },
    /* trailing garbage */
    { "{}x", 0, 2, TRAILING },
    { "{} {}", 0, 3, TRAILING },
    { "[],", 0, 2, TRAILING },
    { "1,", 0, 1, TRAILING },
    { "\"a\"\"b\"", 0, 3, TRAILING },
    { "\"a\" \"b\"", 0, 4, TRAILING },
    { "null null", 0, 5, TRAILING },
    { "true\0", 5, 4, TRAILING },
    { "{}\0", 3, 2, TRAILING },
    { "{} \n//", 0, 4, TRAILING },
    { "/* */ 1", 0, 0, "bad number" },
};

START_TEST(test_refused)
{
    const struct bad_case *c = &bad_cases[_i];
    expect_bad(c->text, c->len ? c->len : strlen(c->text), c->at, c->what);
}
END_TEST

START_TEST(test_error_text_bounded)
{
    struct json_span root;
    char err[16];
    memset(err, 'x', sizeof err);
    ck_assert(!json_validate("[1,,2]", 6, &root, err, sizeof err));
    ck_assert_str_eq(err, "invalid JSON at");   /* cut to the buffer, NUL-terminated */
    char full[128];
    ck_assert(!json_validate("[01]", 4, &root, full, sizeof full));
    ck_assert_str_eq(full, "invalid JSON at byte 2: expected ',' or ']'");
    /* the length is obeyed: what follows it is not read */
    ck_assert(json_validate("[1]garbage", 3, &root, full, sizeof full));
    ck_assert(json_validate("\"ab\"\"", 4, &root, full, sizeof full));
    ck_assert(!json_validate("[1]", 2, &root, full, sizeof full));
    ck_assert_str_eq(full, "invalid JSON at byte 2: unterminated container");
}
END_TEST

/* ------------------------------------------------------------------ every byte value */

/* A document of one byte: only a digit is a value. */
/* A string's plain runs are stepped over eight bytes at a time: whatever its position in the
 * string (every offset across two words, and the string cut at every length), a control byte,
 * a byte of UTF-8 (valid or not), a quote or a backslash is still seen and judged as before. */
START_TEST(test_string_runs_every_offset)
{
    static const struct {
        const char *ins;
        bool ok;
        const char *decoded;
    } cases[] = {
        { "\x01", false, NULL },        { "\x1f", false, NULL },    { "\x7f", true, "\x7f" },
        { "\xc3\xa9", true, "\xc3\xa9" }, { "\xff", false, NULL },   { "\xc3", false, NULL },
        { "\\n", true, "\n" },          { "\\\"", true, "\"" },     { "\\q", false, NULL },
        { "\\u00e9", true, "\xc3\xa9" }, { "\xe2\x82\xac", true, "\xe2\x82\xac" },
    };
    char text[64], want[64], err[128];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int pre = 0; pre <= 17; pre++) {
            for (int post = 0; post <= 9; post += 9) {
                int n = 0, m = 0;
                text[n++] = '"';
                for (int i = 0; i < pre; i++)
                    text[n++] = want[m++] = (char)('a' + i % 26);
                size_t il = strlen(cases[c].ins);
                memcpy(text + n, cases[c].ins, il);
                n += (int)il;
                if (cases[c].decoded) {
                    memcpy(want + m, cases[c].decoded, strlen(cases[c].decoded));
                    m += (int)strlen(cases[c].decoded);
                }
                for (int i = 0; i < post; i++)
                    text[n++] = want[m++] = 'z';
                text[n++] = '"';
                want[m] = '\0';
                struct json_span root;
                bool ok = json_validate(text, (size_t)n, &root, err, sizeof err);
                ck_assert_msg(ok == cases[c].ok, "case %zu, %d plain bytes before: %s", c, pre, ok ? "accepted" : err);
                if (ok) {
                    arena_t *a = arena_new(0);
                    ck_assert_str_eq(json_string_dup(a, &root), want);
                    arena_free(a);
                }
                /* and cut short anywhere: never accepted */
                for (int cut = 1; cut < n; cut++)
                    ck_assert_msg(!json_validate(text, (size_t)cut, &root, err, sizeof err), "case %zu cut at %d", c, cut);
            }
        }
    }
}
END_TEST

START_TEST(test_every_single_byte)
{
    for (int c = 0; c < 256; c++) {
        char text[1] = { (char)c };
        bool digit = c >= '0' && c <= '9';
        ck_assert_msg(valid(text, 1) == digit, "byte 0x%02x", c);
    }
}
END_TEST

/* Every byte raw inside a string: control characters, '"', '\\' and lone non-ASCII bytes are
 * refused, everything else kept as is. */
START_TEST(test_every_byte_in_string)
{
    for (int c = 0; c < 256; c++) {
        char text[3] = { '"', (char)c, '"' };
        bool ok = c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
        ck_assert_msg(valid(text, 3) == ok, "byte 0x%02x", c);
        if (ok)
            expect_ok(text, 3, JSON_STRING, false);
        else if (c < 0x20)
            expect_bad(text, 3, 1, "control character in string");
        else if (c >= 0x80)
            expect_bad(text, 3, 1, "invalid UTF-8");
    }
}
END_TEST

/* Every byte after a backslash: only the eight one-letter escapes (and \u with digits). */
START_TEST(test_every_escape_byte)
{
    for (int c = 0; c < 256; c++) {
        char text[4] = { '"', '\\', (char)c, '"' };
        bool ok = c != 0 && strchr("\"\\/bfnrt", c) != NULL;
        if (ok)
            expect_ok(text, 4, JSON_STRING, false);
        else if (c == 'u')
            expect_bad(text, 4, 1, "truncated \\u escape");
        else
            expect_bad(text, 4, 1, "bad escape");
    }
}
END_TEST

/* Every byte at each of the four hex digits of \u0041: only [0-9a-fA-F]. */
START_TEST(test_every_hex_digit_byte)
{
    for (int pos = 0; pos < 4; pos++)
        for (int c = 0; c < 256; c++) {
            char text[] = "\"\\u0041\"";
            text[3 + pos] = (char)c;
            bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
            if (hex)
                ck_assert_msg(valid(text, LEN("\"\\u0041\"")), "digit %d byte 0x%02x", pos, c);
            else
                expect_bad(text, LEN("\"\\u0041\""), 1, "bad \\u escape");
        }
}
END_TEST

/* Every byte between and around array elements: only the four white space characters may be
 * added anywhere; all else is a separator (',') or part of a number. */
START_TEST(test_every_separator_byte)
{
    for (int c = 0; c < 256; c++) {
        bool ws = c == ' ' || c == '\t' || c == '\n' || c == '\r';
        bool digit = c >= '0' && c <= '9';
        char alone[5] = { '[', '1', (char)c, '2', ']' };          /* "[1,2]", "[1.2]", "[1e2]", "[192]" */
        char before[6] = { '[', '1', (char)c, ',', '2', ']' };
        char after[6] = { '[', '1', ',', (char)c, '2', ']' };     /* "[1,-2]", "[1,92]", not "[1,02]" */
        char around[5] = { (char)c, '[', '1', ']', (char)c };
        ck_assert_msg(valid(alone, 5) == (c == ',' || c == '.' || c == 'e' || c == 'E' || digit), "0x%02x", c);
        ck_assert_msg(valid(before, 6) == (ws || digit), "before the comma: byte 0x%02x", c);
        ck_assert_msg(valid(after, 6) == (ws || (digit && c != '0') || c == '-'), "after: byte 0x%02x", c);
        ck_assert_msg(valid(around, 5) == (ws || c == '"'), "around: byte 0x%02x", c); /* "\"[1]\"" */
    }
}
END_TEST

/* Every code point as raw UTF-8 in a string: all but the surrogates (and the characters that
 * must be escaped) are accepted, byte for byte, and never jsonb-unsafe. */
START_TEST(test_every_code_point_raw)
{
    arena_t *a = arena_new(0);
    char text[8];
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        text[0] = '"';
        size_t n = encode_utf8(text + 1, cp);
        text[1 + n] = '"';
        bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        bool ok = cp >= 0x20 && cp != '"' && cp != '\\' && !surrogate;
        struct json_span root;
        char err[96];
        bool got = scan(text, n + 2, &root, err, sizeof err);
        if (got != ok)
            ck_abort_msg("U+%04X: %s", (unsigned)cp, got ? "accepted" : err);
        if (ok) {
            if (root.pg_unsafe)
                ck_abort_msg("U+%04X marked unsafe", (unsigned)cp);
            char *s = json_string_dup(a, &root);
            if (strlen(s) != n || memcmp(s, text + 1, n) != 0)
                ck_abort_msg("U+%04X not kept as it is", (unsigned)cp);
        }
        if ((cp & 0xFFF) == 0)
            arena_reset(a);
    }
    arena_free(a);
}
END_TEST

/* Every \uXXXX: accepted; jsonb-unsafe exactly for \u0000 and lone surrogates; unescaped to the
 * character's UTF-8, U+FFFD for those. */
START_TEST(test_every_u_escape)
{
    arena_t *a = arena_new(0);
    for (uint32_t v = 0; v <= 0xFFFF; v++) {
        char text[16];
        snprintf(text, sizeof text, "\"\\u%04X\"", (unsigned)v);
        bool unsafe = v == 0 || (v >= 0xD800 && v <= 0xDFFF);
        struct json_span root;
        char err[96];
        if (!scan(text, 8, &root, err, sizeof err))
            ck_abort_msg("%s refused: %s", text, err);
        if (root.pg_unsafe != unsafe)
            ck_abort_msg("%s: pg_unsafe %d", text, (int)root.pg_unsafe);
        char want[8];
        size_t n = encode_utf8(want, unsafe ? 0xFFFD : v);
        char *s = json_string_dup(a, &root);
        if (strlen(s) != n || memcmp(s, want, n) != 0)
            ck_abort_msg("%s unescaped wrongly", text);
        /* lower-case hex digits are the same */
        snprintf(text, sizeof text, "\"\\u%04x\"", (unsigned)v);
        struct json_span lower;
        if (!scan(text, 8, &lower, err, sizeof err) || lower.pg_unsafe != unsafe ||
            strcmp(json_string_dup(a, &lower), s) != 0)
            ck_abort_msg("%s differs from upper case", text);
        if ((v & 0xFF) == 0)
            arena_reset(a);
    }
    arena_free(a);
}
END_TEST

/* Every high surrogate followed by every low one makes a pair: safe, one 4-byte character. */
START_TEST(test_every_surrogate_pair)
{
    arena_t *a = arena_new(0);
    for (uint32_t hi = 0xD800; hi <= 0xDBFF; hi++)
        for (uint32_t lo = 0xDC00; lo <= 0xDFFF; lo++) {
            char text[32];
            snprintf(text, sizeof text, "\"\\u%04X\\u%04x\"", (unsigned)hi, (unsigned)lo);
            struct json_span root;
            char err[96];
            if (!scan(text, 14, &root, err, sizeof err) || root.pg_unsafe)
                ck_abort_msg("%s: %s", text, err[0] ? err : "unsafe");
            uint32_t cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            char want[8];
            size_t n = encode_utf8(want, cp);
            char *s = json_string_dup(a, &root);
            if (n != 4 || strlen(s) != 4 || memcmp(s, want, 4) != 0)
                ck_abort_msg("%s unescaped wrongly", text);
            arena_reset(a);
        }
    arena_free(a);
}
END_TEST

/* ------------------------------------------------------------------ nesting */

static char *nested(const char *open, const char *close, int depth, const char *inner)
{
    size_t lo = strlen(open), lc = strlen(close), li = strlen(inner);
    char *s = xmalloc((size_t)depth * (lo + lc) + li + 1);
    char *p = s;
    for (int i = 0; i < depth; i++, p += lo)
        memcpy(p, open, lo);
    memcpy(p, inner, li);
    p += li;
    for (int i = 0; i < depth; i++, p += lc)
        memcpy(p, close, lc);
    *p = '\0';
    return s;
}

START_TEST(test_depth_limit)
{
    ck_assert_int_eq(JSON_MAX_DEPTH, 256);
    /* arrays: 256 levels are accepted, 257 refused where the 257th opens */
    char *s = nested("[", "]", JSON_MAX_DEPTH, "");
    expect_ok(s, strlen(s), JSON_ARRAY, false);
    free(s);
    s = nested("[", "]", JSON_MAX_DEPTH, "1");
    expect_ok(s, strlen(s), JSON_ARRAY, false);
    free(s);
    s = nested("[", "]", JSON_MAX_DEPTH + 1, "");
    expect_bad(s, strlen(s), JSON_MAX_DEPTH, "nesting too deep");
    free(s);
    /* objects, likewise */
    s = nested("{\"k\":", "}", JSON_MAX_DEPTH - 1, "{}");
    expect_ok(s, strlen(s), JSON_OBJECT, false);
    free(s);
    s = nested("{\"k\":", "}", JSON_MAX_DEPTH, "{}");
    expect_bad(s, strlen(s), (size_t)JSON_MAX_DEPTH * 5, "nesting too deep");
    free(s);
    /* mixed, with white space */
    s = nested(" [ { \"a\" : ", " } ] ", JSON_MAX_DEPTH / 2, "null");
    expect_ok(s, strlen(s), JSON_ARRAY, false);
    free(s);
    s = nested("[{\"a\":", "}]", JSON_MAX_DEPTH / 2, "[]");
    expect_bad(s, strlen(s), (size_t)JSON_MAX_DEPTH / 2 * 6, "nesting too deep");
    free(s);
    /* the limit is found before the missing end: a hostile body of openers stops there */
    s = nested("[", "", 1000000, "");
    expect_bad(s, strlen(s), JSON_MAX_DEPTH, "nesting too deep");
    free(s);
    /* deep nesting beside a shallow value does not count twice */
    s = nested("[", "]", JSON_MAX_DEPTH - 1, "[],[[]]");
    expect_bad(s, strlen(s), JSON_MAX_DEPTH + 3, "nesting too deep");
    free(s);
    s = nested("[", "]", JSON_MAX_DEPTH - 1, "[],[]");
    expect_ok(s, strlen(s), JSON_ARRAY, false);
    free(s);
}
END_TEST

/* The iterators walk a maximally nested value down to the bottom. */
START_TEST(test_depth_iterate)
{
    char *s = nested("[", "]", JSON_MAX_DEPTH, "\"\\u0000\"");
    struct json_span v = root_of(s);
    ck_assert(v.pg_unsafe);
    for (int level = 1; level < JSON_MAX_DEPTH; level++) {
        struct json_iter it;
        json_iter_init(&it, &v);
        struct json_span child;
        ck_assert(json_iter_element(&it, &child));
        ck_assert_int_eq(child.type, JSON_ARRAY);
        ck_assert(child.pg_unsafe);
        ck_assert_uint_eq(child.len, v.len - 2);
        struct json_span none;
        ck_assert(!json_iter_element(&it, &none));
        v = child;
    }
    struct json_iter it;
    json_iter_init(&it, &v);
    struct json_span leaf;
    ck_assert(json_iter_element(&it, &leaf));
    ck_assert_int_eq(leaf.type, JSON_STRING);
    ck_assert(leaf.pg_unsafe);
    ck_assert(span_is(&leaf, "\"\\u0000\""));
    free(s);
}
END_TEST

/* ------------------------------------------------------------------ spans and iterators */

START_TEST(test_root_span)
{
    const char *text = "  {\"a\" : [1, 2]}\n";
    struct json_span r = root_of(text);
    ck_assert_ptr_eq(r.start, text + 2);
    ck_assert(span_is(&r, "{\"a\" : [1, 2]}"));
    /* a string's span includes its quotes */
    text = "\t\"x\\ny\"";
    r = root_of(text);
    ck_assert(span_is(&r, "\"x\\ny\""));
    /* a number's span is its exact spelling */
    r = root_of(" -0.50E+007 ");
    ck_assert(span_is(&r, "-0.50E+007"));
}
END_TEST

START_TEST(test_iter_elements)
{
    struct json_span r = root_of("[1, \"a\" ,null,true , false,{ },[ ],-0.5e3,\"\\u0000\"]");
    static const struct {
        enum json_type type;
        const char *raw;
        bool unsafe;
    } want[] = {
        { JSON_NUMBER, "1", false }, { JSON_STRING, "\"a\"", false }, { JSON_NULL, "null", false },
        { JSON_TRUE, "true", false }, { JSON_FALSE, "false", false }, { JSON_OBJECT, "{ }", false },
        { JSON_ARRAY, "[ ]", false }, { JSON_NUMBER, "-0.5e3", false }, { JSON_STRING, "\"\\u0000\"", true },
    };
    struct json_iter it;
    json_iter_init(&it, &r);
    struct json_span v;
    size_t n = 0;
    while (json_iter_element(&it, &v)) {
        ck_assert_uint_lt(n, sizeof want / sizeof want[0]);
        ck_assert_int_eq(v.type, want[n].type);
        ck_assert_msg(span_is(&v, want[n].raw), "element %zu: %.*s", n, (int)v.len, v.start);
        ck_assert_int_eq(v.pg_unsafe, want[n].unsafe);
        n++;
    }
    ck_assert_uint_eq(n, sizeof want / sizeof want[0]);
    /* the end stays the end */
    ck_assert(!json_iter_element(&it, &v));
    ck_assert(!json_iter_element(&it, &v));
}
END_TEST

START_TEST(test_iter_empty)
{
    static const char *const empty[] = { "[]", "{}", "[ ]", "{ \n }", "[\t\r\n]" };
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        struct json_span r = root_of(empty[i]), k, v;
        struct json_iter it;
        json_iter_init(&it, &r);
        if (r.type == JSON_ARRAY)
            ck_assert(!json_iter_element(&it, &v));
        else
            ck_assert(!json_iter_member(&it, &k, &v));
    }
}
END_TEST

START_TEST(test_iter_members)
{
    struct json_span r =
        root_of("{ \"a\" : 1 , \"b\":[1,2] ,\"c\":{\"d\":null},\"\\u0061\":\"x\",\"\":\"\",\"a\":2,\"\\u0000\":0 }");
    static const struct {
        const char *key;   /* unescaped */
        const char *raw_key;
        const char *raw_value;
        bool key_unsafe;
    } want[] = {
        { "a", "\"a\"", "1", false },
        { "b", "\"b\"", "[1,2]", false },
        { "c", "\"c\"", "{\"d\":null}", false },
        { "a", "\"\\u0061\"", "\"x\"", false },
        { "", "\"\"", "\"\"", false },
        { "a", "\"a\"", "2", false },   /* repeated keys come in order */
        { "\xef\xbf\xbd", "\"\\u0000\"", "0", true },
    };
    arena_t *a = arena_new(0);
    struct json_iter it;
    json_iter_init(&it, &r);
    struct json_span k, v;
    size_t n = 0;
    while (json_iter_member(&it, &k, &v)) {
        ck_assert_uint_lt(n, sizeof want / sizeof want[0]);
        ck_assert_int_eq(k.type, JSON_STRING);
        ck_assert(span_is(&k, want[n].raw_key));
        ck_assert(span_is(&v, want[n].raw_value));
        ck_assert(json_string_eq(&k, want[n].key));
        ck_assert_str_eq(json_string_dup(a, &k), want[n].key);
        ck_assert_int_eq(k.pg_unsafe, want[n].key_unsafe);
        n++;
    }
    ck_assert_uint_eq(n, sizeof want / sizeof want[0]);
    ck_assert(!json_iter_member(&it, &k, &v));

    /* a nested container from the iterator is iterated in turn */
    json_iter_init(&it, &r);
    ck_assert(json_iter_member(&it, &k, &v));
    ck_assert(json_iter_member(&it, &k, &v));
    ck_assert_int_eq(v.type, JSON_ARRAY);
    struct json_iter inner;
    json_iter_init(&inner, &v);
    struct json_span e;
    ck_assert(json_iter_element(&inner, &e) && span_is(&e, "1"));
    ck_assert(json_iter_element(&inner, &e) && span_is(&e, "2"));
    ck_assert(!json_iter_element(&inner, &e));
    /* and the outer iterator goes on where it was */
    ck_assert(json_iter_member(&it, &k, &v));
    ck_assert(json_string_eq(&k, "c"));
    arena_free(a);
}
END_TEST

/* Each element's pg_unsafe is its own, though the container's covers them all. */
START_TEST(test_iter_unsafe_per_element)
{
    struct json_span r = root_of("[\"\\uD800\", \"ok\", 1e999999, 2, {\"k\":\"\\u0000\"}, {\"k\":1}]");
    ck_assert(r.pg_unsafe);
    static const bool want[] = { true, false, true, false, true, false };
    struct json_iter it;
    json_iter_init(&it, &r);
    struct json_span v;
    size_t n = 0;
    while (json_iter_element(&it, &v))
        ck_assert_int_eq(v.pg_unsafe, want[n++]);
    ck_assert_uint_eq(n, 6);
}
END_TEST

/* ------------------------------------------------------------------ string helpers */

START_TEST(test_string_dup)
{
    static const struct {
        const char *json;
        const char *text;
    } cases[] = {
        { "\"\"", "" },
        { "\"plain\"", "plain" },
        { "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t" },
        { "\"\\u0041\"", "A" },
        { "\"\\u00e9\\u00E9\"", "\xc3\xa9\xc3\xa9" },
        { "\"\\u0800\\u20ac\\uFFFF\"", "\xe0\xa0\x80\xe2\x82\xac\xef\xbf\xbf" },
        { "\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80" },
        { "\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf" },
        { "\"caf\xc3\xa9\"", "caf\xc3\xa9" },
        /* what would end a C string early or is no character becomes U+FFFD */
        { "\"a\\u0000b\"", "a\xef\xbf\xbd" "b" },
        { "\"\\uD800\"", "\xef\xbf\xbd" },
        { "\"\\uDC00x\"", "\xef\xbf\xbdx" },
        { "\"\\uD800\\u0041\"", "\xef\xbf\xbd" "A" },
        { "\"\\uD800\\uD800\"", "\xef\xbf\xbd\xef\xbf\xbd" },
        { "\"\\uDE00\\uD83D\"", "\xef\xbf\xbd\xef\xbf\xbd" },
        { "\"\\uD83D\\uDE00\\uDE00\"", "\xf0\x9f\x98\x80\xef\xbf\xbd" },
        { "\"\\uD800\\n\"", "\xef\xbf\xbd\n" },
        { "\"\\u005C\\u0022\"", "\\\"" },
    };
    arena_t *a = arena_new(0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct json_span s = root_of(cases[i].json);
        ck_assert_msg(strcmp(json_string_dup(a, &s), cases[i].text) == 0, "%s", cases[i].json);
        ck_assert_msg(json_string_eq(&s, cases[i].text), "eq %s", cases[i].json);
    }
    arena_free(a);
}
END_TEST

/* A long string of every escape kind unescapes to exactly what it spells. */
START_TEST(test_string_dup_long)
{
    static const struct {
        const char *esc;
        const char *raw;
    } parts[] = {
        { "x", "x" }, { "\\n", "\n" }, { "\\u00e9", "\xc3\xa9" }, { "\\uD83D\\uDE00", "\xf0\x9f\x98\x80" },
        { "\\\\", "\\" }, { "\xe2\x82\xac", "\xe2\x82\xac" }, { "\\u0000", "\xef\xbf\xbd" },
    };
    enum { N = 20000 };
    size_t np = sizeof parts / sizeof parts[0];
    char *json = xmalloc(N * 12 + 3), *want = xmalloc(N * 4 + 1);
    size_t j = 0, w = 0;
    json[j++] = '"';
    for (size_t i = 0; i < N; i++) {
        const char *e = parts[i * 3 % np].esc, *r = parts[i * 3 % np].raw;
        memcpy(json + j, e, strlen(e));
        j += strlen(e);
        memcpy(want + w, r, strlen(r));
        w += strlen(r);
    }
    json[j++] = '"';
    want[w] = '\0';
    struct json_span s;
    char err[96];
    ck_assert(scan(json, j, &s, err, sizeof err));
    ck_assert(s.pg_unsafe);
    arena_t *a = arena_new(0);
    char *got = json_string_dup(a, &s);
    ck_assert_uint_eq(strlen(got), w);
    ck_assert(memcmp(got, want, w) == 0);
    arena_free(a);
    free(json);
    free(want);
}
END_TEST

START_TEST(test_string_eq)
{
    struct json_span s = root_of("\"abc\"");
    ck_assert(json_string_eq(&s, "abc"));
    ck_assert(!json_string_eq(&s, "ab"));
    ck_assert(!json_string_eq(&s, "abcd"));
    ck_assert(!json_string_eq(&s, "ABC"));
    ck_assert(!json_string_eq(&s, ""));
    s = root_of("\"\"");
    ck_assert(json_string_eq(&s, ""));
    ck_assert(!json_string_eq(&s, "a"));
    /* escapes are compared unescaped */
    s = root_of("\"\\u0061b\\u0063\"");
    ck_assert(json_string_eq(&s, "abc"));
    ck_assert(!json_string_eq(&s, "\\u0061bc"));
    s = root_of("\"a\\/b\"");
    ck_assert(json_string_eq(&s, "a/b"));
    s = root_of("\"\\u0000\"");
    ck_assert(!json_string_eq(&s, ""));
    ck_assert(json_string_eq(&s, "\xef\xbf\xbd"));
    /* only strings compare equal */
    static const char *const others[] = { "1", "null", "true", "[\"a\"]", "{\"a\":1}" };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        s = root_of(others[i]);
        ck_assert(!json_string_eq(&s, others[i]));
        ck_assert(!json_string_eq(&s, "a"));
    }
}
END_TEST

/* Unescaped strings of any length compare; escaped ones only up to a span of 256 bytes. */
START_TEST(test_string_eq_long)
{
    char *json = xmalloc(4000), *text = xmalloc(4000);
    memset(text, 'q', 3000);
    text[3000] = '\0';
    json[0] = '"';
    memcpy(json + 1, text, 3000);
    json[3001] = '"';
    json[3002] = '\0';
    struct json_span s = root_of(json);
    ck_assert(json_string_eq(&s, text));
    text[2999] = 'r';
    ck_assert(!json_string_eq(&s, text));

    /* '"' "\u0071" k q's '"': a span of k + 8 bytes that unescapes to k + 1 q's */
    for (size_t k = 246; k <= 250; k++) {
        json[0] = '"';
        memcpy(json + 1, "\\u0071", 6);
        memset(json + 7, 'q', k);
        json[7 + k] = '"';
        json[8 + k] = '\0';
        memset(text, 'q', k + 1);
        text[k + 1] = '\0';
        s = root_of(json);
        ck_assert_uint_eq(s.len, k + 8);
        ck_assert_msg(json_string_eq(&s, text) == (k + 8 <= 256), "a span of %zu bytes", k + 8);
    }
    free(json);
    free(text);
}
END_TEST

START_TEST(test_int64)
{
    static const struct {
        const char *json;
        bool ok;
        long long value;
    } cases[] = {
        { "0", true, 0 },
        { "-0", true, 0 },
        { "1", true, 1 },
        { "-1", true, -1 },
        { "1234567890123", true, 1234567890123LL },
        { "9223372036854775807", true, INT64_MAX },
        { "-9223372036854775808", true, INT64_MIN },
        { "9223372036854775808", false, 0 },
        { "-9223372036854775809", false, 0 },
        { "99999999999999999999", false, 0 },
        { "1000000000000000000000000000000", false, 0 },   /* 31 digits */
        { "10000000000000000000000000000000", false, 0 },  /* 32 */
        { "-1000000000000000000000000000000", false, 0 },
        { "1.0", false, 0 },
        { "1.5", false, 0 },
        { "1e0", false, 0 },
        { "1E2", false, 0 },
        { "0e0", false, 0 },
        { "-0.0", false, 0 },
        { "\"1\"", false, 0 },
        { "true", false, 0 },
        { "null", false, 0 },
        { "[1]", false, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct json_span s = root_of(cases[i].json);
        long long v = 42;
        ck_assert_msg(json_int64(&s, &v) == cases[i].ok, "%s", cases[i].json);
        ck_assert_msg(v == (cases[i].ok ? cases[i].value : 42), "%s: %lld", cases[i].json, v);
    }
    /* an element of an array, as the callers read them */
    struct json_span r = root_of("[ 17 ,-3]"), e;
    struct json_iter it;
    json_iter_init(&it, &r);
    long long v;
    ck_assert(json_iter_element(&it, &e) && json_int64(&e, &v) && v == 17);
    ck_assert(json_iter_element(&it, &e) && json_int64(&e, &v) && v == -3);
}
END_TEST

/* ------------------------------------------------------------------ runner */

/* ------------------------------------------------------------------ skips */

/* Walks v with and without skips at every depth: every member and element has the same key,
 * type, start, length and pg_unsafe both ways. Returns how many values it compared. */
static int walk_both(const struct json_span *v, const struct json_skips *sk)
{
    if (v->type != JSON_OBJECT && v->type != JSON_ARRAY)
        return 0;
    bool object = v->type == JSON_OBJECT;
    struct json_iter a, b;
    json_iter_init(&a, v);
    json_iter_init_skips(&b, v, sk);
    int n = 0;
    for (;;) {
        struct json_span ka = { 0 }, kb = { 0 }, va = { 0 }, vb = { 0 };
        bool more_a = object ? json_iter_member(&a, &ka, &va) : json_iter_element(&a, &va);
        bool more_b = object ? json_iter_member(&b, &kb, &vb) : json_iter_element(&b, &vb);
        ck_assert_int_eq(more_a, more_b);
        if (!more_a)
            break;
        if (object)
            ck_assert(ka.start == kb.start && ka.len == kb.len);
        ck_assert_msg(va.type == vb.type && va.start == vb.start && va.len == vb.len && va.pg_unsafe == vb.pg_unsafe,
                      "value %d at %.30s: type %d/%d len %zu/%zu unsafe %d/%d", n, va.start, va.type, vb.type, va.len,
                      vb.len, va.pg_unsafe, vb.pg_unsafe);
        n += 1 + walk_both(&va, sk);
    }
    return n;
}

/* A document with values of every kind and size around JSON_SKIP_MIN: strings plain, escaped and
 * unsafe, objects and arrays small and large, nested; seed varies the sizes. */
static char *skips_doc(unsigned seed)
{
    size_t cap = 1 << 16, len = 0;
    char *d = xmalloc(cap);
#define PUT(...) (len += (size_t)snprintf(d + len, cap - len, __VA_ARGS__))
    PUT("{\"changes\":[");
    for (int i = 0; i < 12; i++) {
        int w = (int)((seed * 7 + (unsigned)i * 13) % 90) + 20;   /* 20 .. 109 */
        PUT("%s{\"id\":%d,\"s\":\"", i ? "," : "", i);
        for (int j = 0; j < w; j++)
            PUT("%c", 'a' + (j + i) % 26);
        PUT("\",\"e\":\"%s", i % 3 == 0 ? "\\u0000" : i % 3 == 1 ? "\\ud800" : "\\n\\\"");
        for (int j = 0; j < w; j++)
            PUT("x");
        PUT("\",\"o\":{\"k\":[");
        for (int j = 0; j < w / 10; j++)
            PUT("%s{\"n\":%d,\"t\":\"%.*s\"}", j ? "," : "", j, j % 40, "0123456789012345678901234567890123456789");
        PUT("],\"u\":\"\\u00e9%.*s\"},\"empty\":{},\"z\":[[],[[\"%.*s\"]]]}", w / 2 * 2, "ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé",
            w, "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy");
    }
    PUT("],\"last\":null}");
#undef PUT
    ck_assert(len < cap - 1);
    return d;
}

/* Iterating with skips gives every span exactly as scanning does, with any room for entries
 * (none, a few, all), and the values it stepped over were recorded ones. */
START_TEST(test_skips_same_walk)
{
    for (unsigned seed = 0; seed < 20; seed++) {
        char *doc = skips_doc(seed);
        size_t len = strlen(doc);
        size_t rooms[] = { 0, 1, 2, 5, 17, 1000 };
        for (size_t r = 0; r < sizeof rooms / sizeof rooms[0]; r++) {
            arena_t *a = arena_new(4096);
            struct json_span root, plain;
            struct json_skips sk;
            char err[128] = "";
            ck_assert_msg(json_validate_skips(doc, len, &root, &sk, a, rooms[r], err, sizeof err), "%s", err);
            ck_assert(json_validate(doc, len, &plain, err, sizeof err));
            ck_assert(root.type == plain.type && root.start == plain.start && root.len == plain.len &&
                      root.pg_unsafe == plain.pg_unsafe);
            ck_assert_uint_le(sk.n, rooms[r]);
            if (rooms[r] >= 5)
                ck_assert_uint_ge(sk.n, 5);
            ck_assert_int_gt(walk_both(&root, &sk), 100);
            arena_free(a);
        }
        free(doc);
    }
}
END_TEST

/* Skips apply to the text they were made from only: iterating another text (which has large
 * values at the same offsets, of other lengths) with them scans it. A failed validation says
 * what json_validate says. */
START_TEST(test_skips_other_text)
{
    char *a_text = skips_doc(1), *b_text = skips_doc(2);
    arena_t *a = arena_new(4096);
    struct json_span ra, rb;
    struct json_skips sk;
    char err[128] = "", err2[128] = "";
    ck_assert(json_validate_skips(a_text, strlen(a_text), &ra, &sk, a, 1000, err, sizeof err));
    ck_assert(json_validate(b_text, strlen(b_text), &rb, err, sizeof err));
    ck_assert_int_gt(walk_both(&rb, &sk), 100);
    const char bad[] = "{\"a\":\"0123456789012345678901234567890123456789012345678901234567890123456789\",}";
    ck_assert(!json_validate_skips(bad, LEN(bad), &ra, &sk, a, 1000, err, sizeof err));
    ck_assert(!json_validate(bad, LEN(bad), &rb, err2, sizeof err2));
    ck_assert_str_eq(err, err2);
    arena_free(a);
    free(a_text);
    free(b_text);
}
END_TEST

static Suite *json_scan_suite(void)
{
    Suite *s = suite_create("json_scan");
    TCase *tc = tcase_create("validate");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_accepted, 0, (int)(sizeof ok_cases / sizeof ok_cases[0]));
    tcase_add_test(tc, test_numeric_range_by_digits);
    tcase_add_loop_test(tc, test_refused, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
    tcase_add_test(tc, test_error_text_bounded);
    tcase_add_test(tc, test_every_single_byte);
    tcase_add_test(tc, test_string_runs_every_offset);
    tcase_add_test(tc, test_every_byte_in_string);
    tcase_add_test(tc, test_every_escape_byte);
    tcase_add_test(tc, test_every_hex_digit_byte);
    tcase_add_test(tc, test_every_separator_byte);
    tcase_add_test(tc, test_every_code_point_raw);
    tcase_add_test(tc, test_every_u_escape);
    tcase_add_test(tc, test_every_surrogate_pair);
    tcase_add_test(tc, test_depth_limit);
    tcase_add_test(tc, test_depth_iterate);
    suite_add_tcase(s, tc);

    tc = tcase_create("walk");
    tcase_add_test(tc, test_root_span);
    tcase_add_test(tc, test_iter_elements);
    tcase_add_test(tc, test_iter_empty);
    tcase_add_test(tc, test_iter_members);
    tcase_add_test(tc, test_iter_unsafe_per_element);
    tcase_add_test(tc, test_string_dup);
    tcase_add_test(tc, test_string_dup_long);
    tcase_add_test(tc, test_string_eq);
    tcase_add_test(tc, test_string_eq_long);
    tcase_add_test(tc, test_int64);
    tcase_add_test(tc, test_skips_same_walk);
    tcase_add_test(tc, test_skips_other_text);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(json_scan_suite(), NULL);
}
