/* Unit tests for canonical JSON (src/canonical_json.c) and bundle_hash (src/bundle_hash.c).
 *
 * The expected outputs in canonical_vectors.h were produced by Go's encoding/json (the
 * definition of the reference's canonical form) with tests/unit/canonical_vectors.go; the cases
 * written out below repeat the important ones readably. With CANONICAL_MASS_FILE set, the suite
 * also compares a mass file from `go run tests/unit/canonical_vectors.go -mass N`. */
#include <check.h>
#include <locale.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle_hash.h"
#include "canonical_json.h"
#include "strbuf.h"
#include "../run_suites.h"

#include "canonical_vector_types.h"
#include "canonical_vectors.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define S(s) (s), strlen(s) /* a string literal and its length */

/* ------------------------------------------------------------------ helpers */

/* Canonical form of s as a NUL-terminated string owned by a static buffer, or NULL if rejected. */
static const char *canon_n(const char *s, size_t n)
{
    static strbuf_t out = STRBUF_INIT;
    sb_reset(&out);
    char err[256];
    if (!canonical_json(s, n, &out, err, sizeof err))
        return NULL;
    return sb_cstr(&out);
}

static const char *canon(const char *s)
{
    return canon_n(s, strlen(s));
}

#define ck_canon(in, expected)                                                                \
    do {                                                                                      \
        const char *got_ = canon(in);                                                         \
        ck_assert_msg(got_ != NULL, "rejected: %s", in);                                      \
        ck_assert_str_eq(got_, expected);                                                     \
    } while (0)

#define ck_reject(in) ck_assert_msg(canon(in) == NULL, "accepted: %s -> %s", in, canon(in))

static void print_bytes(const char *label, const char *s, size_t n)
{
    fprintf(stderr, "  %s (%zu bytes): ", label, n);
    for (size_t i = 0; i < n && i < 300; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f)
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fputs(n > 300 ? "...\n" : "\n", stderr);
}

static const char *double_text(double x)
{
    static strbuf_t out = STRBUF_INIT;
    sb_reset(&out);
    ck_assert(canonical_json_double(&out, x));
    return sb_cstr(&out);
}

static double from_bits(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

/* ------------------------------------------------------------------ generated vectors */

START_TEST(test_go_vectors)
{
    strbuf_t out = STRBUF_INIT;
    int bad = 0;
    for (size_t i = 0; i < NELEM(canon_vectors); i++) {
        const struct canon_vector *v = &canon_vectors[i];
        char err[256];
        sb_reset(&out);
        bool ok = canonical_json(v->in, v->in_len, &out, err, sizeof err);
        bool same = ok == v->ok && (!ok || (out.len == v->out_len && memcmp(out.data, v->out, out.len) == 0));
        if (!same && bad++ < 10) {
            fprintf(stderr, "vector %zu: Go %s, C %s%s\n", i, v->ok ? "accepts" : "rejects",
                    ok ? "accepts" : "rejects: ", ok ? "" : err);
            print_bytes("input", v->in, v->in_len);
            if (v->ok)
                print_bytes("Go", v->out, v->out_len);
            if (ok)
                print_bytes("C", out.data, out.len);
        }
    }
    sb_free(&out);
    ck_assert_msg(bad == 0, "%d of %zu vectors differ from Go", bad, NELEM(canon_vectors));
    ck_assert_uint_ge(NELEM(canon_vectors), 4000);
}
END_TEST

/* Go's output is a fixed point: canonicalizing it again changes nothing. */
START_TEST(test_go_vectors_idempotent)
{
    strbuf_t out = STRBUF_INIT;
    for (size_t i = 0; i < NELEM(canon_vectors); i++) {
        const struct canon_vector *v = &canon_vectors[i];
        if (!v->ok)
            continue;
        sb_reset(&out);
        ck_assert_msg(canonical_json(v->out, v->out_len, &out, NULL, 0), "vector %zu", i);
        ck_assert_msg(out.len == v->out_len && memcmp(out.data, v->out, out.len) == 0, "vector %zu", i);
    }
    sb_free(&out);
}
END_TEST

START_TEST(test_divergent_rejected)
{
    for (size_t i = 0; i < NELEM(canon_divergent); i++) {
        const struct canon_vector *v = &canon_divergent[i];
        char err[256];
        strbuf_t out = STRBUF_INIT;
        ck_assert_msg(!canonical_json(v->in, v->in_len, &out, err, sizeof err), "divergent %zu accepted", i);
        ck_assert_ptr_nonnull(strstr(err, "800 integer digits"));
        ck_assert_uint_eq(out.len, 0);
        sb_free(&out);
    }
}
END_TEST

START_TEST(test_go_doubles)
{
    int bad = 0;
    for (size_t i = 0; i < NELEM(canon_doubles); i++) {
        double x = from_bits(canon_doubles[i].bits);
        const char *got = double_text(x);
        if (strcmp(got, canon_doubles[i].out) != 0 && bad++ < 10)
            fprintf(stderr, "double %016llx (%.17g): Go %s, C %s\n",
                    (unsigned long long)canon_doubles[i].bits, x, canon_doubles[i].out, got);
        /* and Go's text reads back as the same double, printed the same way */
        const char *again = canon(canon_doubles[i].out);
        if ((!again || strcmp(again, canon_doubles[i].out) != 0) && bad++ < 10)
            fprintf(stderr, "double %s re-read as %s\n", canon_doubles[i].out, again ? again : "(rejected)");
    }
    ck_assert_msg(bad == 0, "%d doubles differ from Go", bad);
    ck_assert_uint_ge(NELEM(canon_doubles), 9000);
}
END_TEST

/* Optional: CANONICAL_MASS_FILE=path, lines "hex(input)<TAB>expected" ("!" = Go rejects). */
static int unhex(int c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

START_TEST(test_mass_file)
{
    const char *path = getenv("CANONICAL_MASS_FILE");
    if (!path || !*path)
        return;
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lines = 0, bad = 0;
    strbuf_t in = STRBUF_INIT;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        char *tab = strchr(line, '\t');
        ck_assert_ptr_nonnull(tab);
        *tab = '\0';
        sb_reset(&in);
        for (char *h = line; h[0] && h[1]; h += 2)
            sb_putc(&in, (char)(unhex(h[0]) * 16 + unhex(h[1])));
        const char *got = canon_n(in.data ? in.data : "", in.len);
        const char *want = tab + 1;
        bool same = strcmp(want, "!") == 0 ? got == NULL : (got && strcmp(got, want) == 0);
        if (!same && bad++ < 20)
            fprintf(stderr, "mass: %s: Go %s, C %s\n", in.data, want, got ? got : "(rejected)");
        lines++;
    }
    free(line);
    sb_free(&in);
    fclose(f);
    fprintf(stderr, "mass file: %ld lines, %ld differ\n", lines, bad);
    ck_assert_int_eq(bad, 0);
}
END_TEST

/* ------------------------------------------------------------------ numbers */

START_TEST(test_numbers)
{
    ck_canon("0", "0");
    ck_canon("-0", "-0");
    ck_canon("-0.0", "-0");
    ck_canon("0.0", "0");
    ck_canon("-0e5", "-0");
    ck_canon("1.0", "1");
    ck_canon("1E5", "100000");
    ck_canon("1e+05", "100000");
    ck_canon("0.1", "0.1");
    ck_canon("0.30000000000000004", "0.30000000000000004");
    ck_canon("0.3333333333333333", "0.3333333333333333");
    ck_canon("0.333333333333333314829616256247390992939472198486328125", "0.3333333333333333");
    ck_canon("1e-6", "0.000001");
    ck_canon("0.000001", "0.000001");
    ck_canon("9.999999e-7", "9.999999e-7");
    ck_canon("1e-7", "1e-7");
    ck_canon("1.5e-7", "1.5e-7");
    ck_canon("1e-10", "1e-10");
    ck_canon("1e-100", "1e-100");
    ck_canon("1e20", "100000000000000000000");
    ck_canon("1e21", "1e+21");
    ck_canon("1e22", "1e+22");
    ck_canon("999999999999999999999", "1e+21");
    ck_canon("123456789012345678901234", "1.2345678901234569e+23");
    ck_canon("5e-324", "5e-324");
    ck_canon("2.4703282292062328e-324", "5e-324");
    ck_canon("2.4703282292062327e-324", "0");
    ck_canon("1.7976931348623157e308", "1.7976931348623157e+308");
    ck_canon("1.7976931348623158e308", "1.7976931348623157e+308");
    ck_canon("-1.7976931348623157e308", "-1.7976931348623157e+308");
    ck_canon("2.2250738585072014e-308", "2.2250738585072014e-308");
    ck_canon("9007199254740992", "9007199254740992");
    ck_canon("9007199254740993", "9007199254740992"); /* ties to even */
    ck_canon("9007199254740995", "9007199254740996");
    ck_canon("9223372036854775807", "9223372036854776000");
    ck_canon("18446744073709551616", "18446744073709552000");
    ck_canon("1125899906842624.25", "1125899906842624.2"); /* printing ties to even */
    ck_canon("1125899906842624.75", "1125899906842624.8");
    ck_canon("1e-400", "0");
    ck_canon("-1e-400", "-0");
    ck_canon("1e-10000", "0");
    ck_canon("1e00000000000000000000000001", "10");
    ck_canon("123e-2", "1.23");
    ck_canon("6.02214076e23", "6.02214076e+23");
    ck_canon("1.602176634e-19", "1.602176634e-19");
    ck_canon("[1,-1,1.5,-1.5,100,1e2]", "[1,-1,1.5,-1.5,100,100]");

    ck_assert_str_eq(double_text(1.0 / 3), "0.3333333333333333");
    ck_assert_str_eq(double_text(2.0 / 3), "0.6666666666666666");
    ck_assert_str_eq(double_text(9007199254740992.0), "9007199254740992");
    ck_assert_str_eq(double_text(-0.0), "-0");
    ck_assert_str_eq(double_text(1e21), "1e+21");
    ck_assert_str_eq(double_text(nextafter(1e21, 0)), "999999999999999900000");
    ck_assert_str_eq(double_text(1e-6), "0.000001");
    ck_assert_str_eq(double_text(nextafter(1e-6, 0)), "9.999999999999997e-7");
    ck_assert_str_eq(double_text(4.9406564584124654e-324), "5e-324");
    ck_assert_str_eq(double_text(1.7976931348623157e308), "1.7976931348623157e+308");
    ck_assert_str_eq(double_text(0x1p-1022), "2.2250738585072014e-308");
    ck_assert_str_eq(double_text(0x1p-1074 * 3), "1.5e-323");
    ck_assert_str_eq(double_text(123456789.0), "123456789");
    ck_assert_str_eq(double_text(-1e-7), "-1e-7");
    ck_assert_str_eq(double_text(1e100), "1e+100");

    strbuf_t sb = STRBUF_INIT;
    ck_assert(!canonical_json_double(&sb, NAN));
    ck_assert(!canonical_json_double(&sb, INFINITY));
    ck_assert(!canonical_json_double(&sb, -INFINITY));
    ck_assert_uint_eq(sb.len, 0);
    sb_free(&sb);
}
END_TEST

START_TEST(test_numbers_rejected)
{
    const char *bad[] = {
        "1e400", "-1e400", "1e309", "1.7976931348623159e308", "1e10000", "NaN", "nan", "Infinity",
        "-Infinity", "inf", "01", "-01", "00", "1.", ".5", "-.5", "+1", "1e", "1e+", "1e-", "1.e5",
        "--1", "-", "0x10", "1_000", "1.5.5", "1e5e5", "[01]", "[1.]", "{\"a\":01}", "[-]",
    };
    for (size_t i = 0; i < NELEM(bad); i++)
        ck_reject(bad[i]);
    char err[256];
    strbuf_t out = STRBUF_INIT;
    ck_assert(!canonical_json("[1e400]", 7, &out, err, sizeof err));
    ck_assert_str_eq(err, "offset 1: number 1e400 out of float64 range");
    sb_free(&out);
}
END_TEST

/* A number in a locale whose decimal point is a comma still converts (if such a locale exists). */
START_TEST(test_numbers_locale)
{
    const char *names[] = { "de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "ru_RU.UTF-8", NULL };
    const char *old = setlocale(LC_NUMERIC, NULL);
    char saved[64];
    snprintf(saved, sizeof saved, "%s", old ? old : "C");
    const char *set = NULL;
    for (int i = 0; names[i] && !set; i++)
        set = setlocale(LC_NUMERIC, names[i]);
    if (!set)
        return; /* no such locale installed */
    ck_canon("[0.1,1.5e-7,123.456,1e21,2.5]", "[0.1,1.5e-7,123.456,1e+21,2.5]");
    ck_assert_str_eq(double_text(0.1), "0.1");
    setlocale(LC_NUMERIC, saved);
}
END_TEST

/* ------------------------------------------------------------------ strings */

START_TEST(test_control_characters)
{
    /* Every byte below 0x20, as raw (rejected) and as an escape. */
    for (int c = 0; c < 0x20; c++) {
        char raw[4] = { '"', (char)c, '"', '\0' };
        ck_assert_msg(canon_n(raw, 3) == NULL, "raw control 0x%02x accepted", c);
        char esc[16], want[16];
        snprintf(esc, sizeof esc, "\"\\u%04X\"", c);
        switch (c) {
        case '\b': strcpy(want, "\"\\b\""); break;
        case '\f': strcpy(want, "\"\\f\""); break;
        case '\n': strcpy(want, "\"\\n\""); break;
        case '\r': strcpy(want, "\"\\r\""); break;
        case '\t': strcpy(want, "\"\\t\""); break;
        default: snprintf(want, sizeof want, "\"\\u%04x\"", c); /* lowercase hex */
        }
        ck_canon(esc, want);
    }
    ck_canon("\"\\u007f\"", "\"\x7f\""); /* DEL is written raw */
    ck_canon("\"\x7f\"", "\"\x7f\"");
    ck_canon("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\\"\\\\/\\b\\f\\n\\r\\t\"");
    ck_canon("\"\\u0000\"", "\"\\u0000\"");
    ck_canon("\"\\u001F\"", "\"\\u001f\"");
    ck_reject("\"\\a\"");
    ck_reject("\"\\'\"");
    ck_reject("\"\\x41\"");
    ck_reject("\"\\U0041\"");
    ck_reject("\"\\u12\"");
    ck_reject("\"\\u12G4\"");
    ck_reject("\"abc");
    ck_reject("\"\\");
}
END_TEST

START_TEST(test_html_and_separators)
{
    ck_canon("\"<>&\"", "\"\\u003c\\u003e\\u0026\"");
    ck_canon("\"\\u003c\\u003E\\u0026\"", "\"\\u003c\\u003e\\u0026\"");
    ck_canon("\"'\"", "\"'\"");
    ck_canon("\"\xe2\x80\xa8\xe2\x80\xa9\"", "\"\\u2028\\u2029\"");
    ck_canon("\"\\u2028\\u2029\"", "\"\\u2028\\u2029\"");
    ck_canon("\"\\u2027\\u202a\"", "\"\xe2\x80\xa7\xe2\x80\xaa\"");
    ck_canon("\"\\u00e9\\u4E2D\"", "\"\xc3\xa9\xe4\xb8\xad\"");
    ck_canon("{\"<\":\"&\"}", "{\"\\u003c\":\"\\u0026\"}");
}
END_TEST

#define FFFD "\xef\xbf\xbd"

START_TEST(test_invalid_utf8)
{
    /* Each bad byte becomes one U+FFFD, written raw (the reference decodes before it encodes). */
    ck_canon("\"\xff\"", "\"" FFFD "\"");
    ck_canon("\"\x80\"", "\"" FFFD "\"");
    ck_canon("\"\xc0\x80\"", "\"" FFFD FFFD "\"");                 /* overlong NUL */
    ck_canon("\"\xe0\x80\xaf\"", "\"" FFFD FFFD FFFD "\"");         /* overlong '/' */
    ck_canon("\"\xc3\"", "\"" FFFD "\"");                           /* truncated */
    ck_canon("\"\xe2\x82\"", "\"" FFFD FFFD "\"");
    ck_canon("\"\xe2\x82" "A\"", "\"" FFFD FFFD "A\"");
    ck_canon("\"\xf0\x9f\x98\"", "\"" FFFD FFFD FFFD "\"");
    ck_canon("\"\xed\xa0\x80\"", "\"" FFFD FFFD FFFD "\"");         /* UTF-8 encoded surrogate */
    ck_canon("\"\xed\xa0\x80\xed\xb0\x80\"", "\"" FFFD FFFD FFFD FFFD FFFD FFFD "\"");
    ck_canon("\"\xf4\x90\x80\x80\"", "\"" FFFD FFFD FFFD FFFD "\""); /* > U+10FFFF */
    ck_canon("\"\xf5\x80\x80\x80\"", "\"" FFFD FFFD FFFD FFFD "\"");
    ck_canon("\"\xf8\x88\x80\x80\x80\"", "\"" FFFD FFFD FFFD FFFD FFFD "\"");
    ck_canon("\"a\xff" "b\xc3\xa9" "c\"", "\"a" FFFD "b\xc3\xa9" "c\"");
    /* well-formed edges stay */
    ck_canon("\"\xed\x9f\xbf\"", "\"\xed\x9f\xbf\"");
    ck_canon("\"\xf4\x8f\xbf\xbf\"", "\"\xf4\x8f\xbf\xbf\"");
    ck_canon("\"\xef\xbf\xbd\xef\xbf\xbf\"", "\"" FFFD "\xef\xbf\xbf\"");
    ck_canon("\"\xf0\x9f\x98\x80\"", "\"\xf0\x9f\x98\x80\"");

    strbuf_t sb = STRBUF_INIT;
    canonical_json_string(&sb, "s\xff<\xe2\x80\xa8\n\x01\xc3\xa9", 10);
    ck_assert_str_eq(sb_cstr(&sb), "\"s" FFFD "\\u003c\\u2028\\n\\u0001\xc3\xa9\"");
    sb_reset(&sb);
    canonical_json_string(&sb, "a\0b", 3);
    ck_assert_str_eq(sb_cstr(&sb), "\"a\\u0000b\"");
    sb_free(&sb);
}
END_TEST

START_TEST(test_surrogate_escapes)
{
    ck_canon("\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"");
    ck_canon("\"\\uD83D\\uDE00\"", "\"\xf0\x9f\x98\x80\"");
    ck_canon("\"\\udbff\\udfff\"", "\"\xf4\x8f\xbf\xbf\"");
    ck_canon("\"\\ud800\"", "\"" FFFD "\"");
    ck_canon("\"\\udc00\"", "\"" FFFD "\"");
    ck_canon("\"a\\ud800\"", "\"a" FFFD "\"");
    ck_canon("\"\\ud800x\"", "\"" FFFD "x\"");
    ck_canon("\"\\ud800\\u0041\"", "\"" FFFD "A\"");            /* the next escape is kept */
    ck_canon("\"\\ud800\\n\"", "\"" FFFD "\\n\"");
    ck_canon("\"\\udc00\\ud800\"", "\"" FFFD FFFD "\"");          /* reversed pair */
    ck_canon("\"\\ud800\\ud800\\udc00\"", "\"" FFFD "\xf0\x90\x80\x80\"");
    ck_canon("\"\\ud800\\udbff\"", "\"" FFFD FFFD "\"");
    ck_canon("{\"\\ud800\":1,\"\xff\":2}", "{\"" FFFD "\":2}"); /* both keys decode to U+FFFD */
    ck_reject("\"\\ud800\\u12\"");
    ck_reject("\"\\ud800\\uzzzz\"");
}
END_TEST

/* ------------------------------------------------------------------ containers */

START_TEST(test_objects)
{
    ck_canon("{}", "{}");
    ck_canon("[]", "[]");
    ck_canon(" [ 1 , 2 , [ ] , { } ] ", "[1,2,[],{}]");
    ck_canon("{\"b\":1,\"a\":2}", "{\"a\":2,\"b\":1}");
    ck_canon("{\"a\":1,\"a\":2}", "{\"a\":2}");
    ck_canon("{\"a\":1,\"b\":2,\"a\":3}", "{\"a\":3,\"b\":2}");
    ck_canon("{\"a\":1,\"\\u0061\":2}", "{\"a\":2}");
    ck_canon("{\"\\u0061\":1,\"a\":2}", "{\"a\":2}");
    ck_canon("{\"a\":{\"y\":1,\"x\":2},\"a\":{\"z\":3}}", "{\"a\":{\"z\":3}}");
    ck_canon("{\"x\":1,\"X\":2,\"x\":null}", "{\"X\":2,\"x\":null}");
    ck_canon("{\"ab\":1,\"a\":2,\"abc\":3,\"a\\u0000\":4}", "{\"a\":2,\"a\\u0000\":4,\"ab\":1,\"abc\":3}");
    /* bytewise order of the decoded keys, not of their escaped spelling */
    ck_canon("{\"B\":1,\"a\":2,\"_\":3,\"A\":4,\"b\":5,\"0\":6,\"\":7,\" \":8}",
             "{\"\":7,\" \":8,\"0\":6,\"A\":4,\"B\":1,\"_\":3,\"a\":2,\"b\":5}");
    ck_canon("{\"A\":2,\"<\":1,\"&\":3,\">\":4}", "{\"\\u0026\":3,\"\\u003c\":1,\"\\u003e\":4,\"A\":2}");
    ck_canon("{\"\xc3\xa9\":1,\"e\":2,\"z\":3,\"\xc3\x89\":4,\"\xe4\xb8\xad\":5,\"\xf0\x9f\x98\x80\":6,\"\xef\xbf\xbf\":7}",
             "{\"e\":2,\"z\":3,\"\xc3\x89\":4,\"\xc3\xa9\":1,\"\xe4\xb8\xad\":5,\"\xef\xbf\xbf\":7,\"\xf0\x9f\x98\x80\":6}");
    ck_canon("{\"\\ud83d\\ude00\":1,\"\\uffff\":2,\"\\u00ff\":3}",
             "{\"\xc3\xbf\":3,\"\xef\xbf\xbf\":2,\"\xf0\x9f\x98\x80\":1}"); /* UTF-8 order, not UTF-16 */
    ck_canon("{\"b\":[{\"d\":1,\"c\":2}],\"a\":{\"f\":[],\"e\":{}}}",
             "{\"a\":{\"e\":{},\"f\":[]},\"b\":[{\"c\":2,\"d\":1}]}");
    ck_canon("{ \"id\" : \"550e8400-e29b-41d4-a716-446655440000\" , \"name\" : \"John Doe\" , \"email\" : \"john@example.com\" }",
             "{\"email\":\"john@example.com\",\"id\":\"550e8400-e29b-41d4-a716-446655440000\",\"name\":\"John Doe\"}");
}
END_TEST

START_TEST(test_syntax_rejected)
{
    const char *bad[] = {
        "", " ", "1 2", "1,", "[1] x", "[1]]", "{}}", "1 x", "\"a\"\"b\"", "\xef\xbb\xbf" "1", "\f1",
        "1\v", "[1,]", "[,1]", "[1 2]", "{\"a\" 1}", "{\"a\":1,}", "{,}", "{\"a\"}", "{a:1}", "{'a':1}",
        "['a']", "{\"a\":1 \"b\":2}", "True", "nul", "nulll", "truefalse", "[", "{", "{\"a\":", "[1,",
        "\"\x01\"", "\"a\tb\"",
    };
    for (size_t i = 0; i < NELEM(bad); i++)
        ck_reject(bad[i]);
    ck_assert(canon_n("\0", 1) == NULL);
    ck_assert(canon_n("1\0", 2) == NULL);
    ck_assert(canon_n("\"\0\"", 3) == NULL);
    ck_canon("\t\r\n 1 \t\r\n", "1");
    ck_canon(" true ", "true");
    ck_canon("[true,false,null]", "[true,false,null]");
}
END_TEST

START_TEST(test_depth)
{
    enum { D = CANONICAL_JSON_MAX_DEPTH };
    strbuf_t in = STRBUF_INIT, want = STRBUF_INIT;
    for (int i = 0; i < D; i++)
        sb_putc(&in, '[');
    for (int i = 0; i < D; i++)
        sb_putc(&in, ']');
    const char *got = canon_n(in.data, in.len);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, in.data);

    sb_reset(&in);
    for (int i = 0; i <= D; i++)
        sb_putc(&in, '[');
    for (int i = 0; i <= D; i++)
        sb_putc(&in, ']');
    char err[256];
    strbuf_t out = STRBUF_INIT;
    ck_assert(!canonical_json(in.data, in.len, &out, err, sizeof err));
    ck_assert_str_eq(err, "offset 10000: exceeded max depth 10000");

    /* objects that all need sorting, nested as deeply as allowed */
    sb_reset(&in);
    for (int i = 0; i < D; i++)
        sb_puts(&in, "{\"b\":0,\"a\":");
    sb_puts(&in, "null");
    for (int i = 0; i < D; i++)
        sb_putc(&in, '}');
    for (int i = 0; i < D; i++)
        sb_puts(&want, "{\"a\":");
    sb_puts(&want, "null");
    for (int i = 0; i < D; i++)
        sb_puts(&want, ",\"b\":0}");
    got = canon_n(in.data, in.len);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, want.data);
    sb_free(&in);
    sb_free(&want);
    sb_free(&out);
}
END_TEST

/* ------------------------------------------------------------------ API behaviour */

START_TEST(test_api)
{
    strbuf_t out = STRBUF_INIT;
    sb_puts(&out, "prefix:");
    char err[64];
    ck_assert(canonical_json(S("{\"b\":1,\"a\":[1.0]}"), &out, err, sizeof err));
    ck_assert_str_eq(out.data, "prefix:{\"a\":[1],\"b\":1}");
    ck_assert_str_eq(err, "");
    /* an error appends nothing, even after a large partial output */
    ck_assert(!canonical_json(S("[\"aaaaaaaaaaaaaaaa\",{\"b\":1,\"a\":2},1e999]"), &out, err, sizeof err));
    ck_assert_str_eq(out.data, "prefix:{\"a\":[1],\"b\":1}");
    ck_assert_str_eq(err, "offset 34: number 1e999 out of float64 range");
    ck_assert(!canonical_json("[1,}", 4, &out, err, sizeof err));
    ck_assert_str_eq(err, "offset 3: invalid character '}' looking for beginning of value");
    ck_assert(!canonical_json("\"\x01\"", 3, &out, err, sizeof err));
    ck_assert_str_eq(err, "offset 1: invalid byte 0x01 in string literal");
    ck_assert(!canonical_json("[1", 2, &out, err, sizeof err));
    ck_assert_str_eq(err, "offset 2: unexpected end of JSON input");
    /* a short error buffer is truncated, a missing one is fine */
    char tiny[8];
    ck_assert(!canonical_json("x", 1, &out, tiny, sizeof tiny));
    ck_assert_str_eq(tiny, "offset ");
    ck_assert(!canonical_json("x", 1, &out, NULL, 0));
    /* length, not NUL, ends the input */
    sb_reset(&out);
    ck_assert(canonical_json("[1]garbage", 3, &out, NULL, 0));
    ck_assert_str_eq(out.data, "[1]");
    sb_reset(&out);
    ck_assert(!canonical_json(NULL, 0, &out, NULL, 0));
    sb_free(&out);
}
END_TEST

/* ------------------------------------------------------------------ bundle_hash */

static void hash_rows(const struct canon_bundle_row *rows, int n, char hex[65], uint64_t *bytes)
{
    struct bundle_hasher h;
    ck_assert(bundle_hasher_init(&h));
    for (int i = 0; i < n; i++) {
        char err[256];
        const struct canon_bundle_row *r = &rows[i];
        ck_assert_msg(bundle_hasher_add_row(&h, r->schema, r->table, r->key, r->key_len, r->op,
                                            r->version, r->payload, r->payload_len, err, sizeof err),
                      "%s", err);
    }
    ck_assert(bundle_hasher_finish(&h, hex, bytes));
    bundle_hasher_free(&h);
}

/* SPEC-v2 §4.7, the reference's own vector: one INSERT into business.users. */
START_TEST(test_spec_vector)
{
    const char *key = "{\"id\":\"550e8400-e29b-41d4-a716-446655440000\"}";
    const char *payload = "{\"id\":\"550e8400-e29b-41d4-a716-446655440000\",\"name\":\"John Doe\","
                          "\"email\":\"john@example.com\"}";
    struct canon_bundle_row row = { "business", "users", key, strlen(key), "INSERT", 143,
                                    payload, strlen(payload) };
    char hex[65];
    uint64_t bytes = 0;
    hash_rows(&row, 1, hex, &bytes);
    ck_assert_str_eq(hex, "0ab2b08d01bb7da478119a608463e98fe6ce37ee7cdf4b63d1dc4d5894c81f28");
    ck_assert_uint_eq(bytes, 240);

    /* the hashed text itself */
    const char *text =
        "[{\"key\":{\"id\":\"550e8400-e29b-41d4-a716-446655440000\"},\"op\":\"INSERT\","
        "\"payload\":{\"email\":\"john@example.com\",\"id\":\"550e8400-e29b-41d4-a716-446655440000\","
        "\"name\":\"John Doe\"},\"row_ordinal\":0,\"row_version\":143,\"schema\":\"business\","
        "\"table\":\"users\"}]";
    ck_assert_uint_eq(strlen(text), 240);
    ck_assert_str_eq(canon(text), text);
}
END_TEST

START_TEST(test_go_bundles)
{
    for (size_t i = 0; i < NELEM(canon_bundles); i++) {
        const struct canon_bundle *b = &canon_bundles[i];
        char hex[65];
        uint64_t bytes = 0;
        hash_rows(canon_bundle_rows + b->first, b->n, hex, &bytes);
        ck_assert_msg(strcmp(hex, b->hash) == 0, "bundle %zu: %s, Go %s", i, hex, b->hash);
        ck_assert_msg(bytes == (uint64_t)b->bytes, "bundle %zu: %llu bytes, Go %d", i,
                      (unsigned long long)bytes, b->bytes);
    }
    ck_assert_str_eq(canon_bundles[0].hash, "0ab2b08d01bb7da478119a608463e98fe6ce37ee7cdf4b63d1dc4d5894c81f28");
}
END_TEST

START_TEST(test_hasher_api)
{
    struct bundle_hasher h;
    char hex[65], err[256];
    uint64_t bytes = 0;

    /* empty bundle: "[]" */
    ck_assert(bundle_hasher_init(&h));
    ck_assert(bundle_hasher_finish(&h, hex, &bytes));
    ck_assert_str_eq(hex, "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945");
    ck_assert_uint_eq(bytes, 2);
    ck_assert(!bundle_hasher_finish(&h, hex, &bytes)); /* twice */
    ck_assert(!bundle_hasher_add_row(&h, "s", "t", NULL, 0, "INSERT", 1, NULL, 0, err, sizeof err));
    ck_assert_str_eq(err, "bundle hasher already finished");
    bundle_hasher_free(&h);
    bundle_hasher_free(&h);

    /* a bad payload is refused and leaves the hasher as it was */
    char ref[65];
    uint64_t ref_bytes;
    ck_assert(bundle_hasher_init(&h));
    ck_assert(bundle_hasher_add_row(&h, "public", "users", S("{\"id\":\"row-1\"}"), "INSERT", 3,
                                    S("{\"name\":\"Alice\",\"email\":\"alice@example.com\"}"), err, sizeof err));
    ck_assert(bundle_hasher_finish(&h, ref, &ref_bytes));
    bundle_hasher_free(&h);
    ck_assert_str_eq(ref, canon_bundles[2].hash);

    ck_assert(bundle_hasher_init(&h));
    ck_assert(!bundle_hasher_add_row(&h, "public", "users", S("{\"id\":\"row-0\"}"), "INSERT", 3,
                                     S("{\"n\":NaN}"), err, sizeof err));
    ck_assert_str_eq(err, "row 0: invalid payload JSON: offset 5: invalid character 'N' looking for beginning of value");
    ck_assert(!bundle_hasher_add_row(&h, "public", "users", S("{\"id\":"), "INSERT", 3, S("{}"), err, sizeof err));
    ck_assert_str_eq(err, "row 0: invalid key JSON: offset 6: unexpected end of JSON input");
    /* DELETE ignores its payload entirely, even an invalid one */
    ck_assert(bundle_hasher_add_row(&h, "public", "users", S("{\"id\":\"row-1\"}"), "INSERT", 3,
                                    S("{\"email\":\"alice@example.com\",\"name\":\"Alice\"}"), err, sizeof err));
    ck_assert(bundle_hasher_finish(&h, hex, &bytes));
    bundle_hasher_free(&h);
    ck_assert_str_eq(hex, ref);
    ck_assert_uint_eq(bytes, ref_bytes);

    ck_assert(bundle_hasher_init(&h));
    ck_assert(bundle_hasher_add_row(&h, "public", "users", S("{\"id\":\"row-1\"}"), "DELETE", 4,
                                    S("not json"), err, sizeof err));
    ck_assert(bundle_hasher_finish(&h, hex, &bytes));
    bundle_hasher_free(&h);
    /* [{"key":{"id":"row-1"},"op":"DELETE","payload":null,"row_ordinal":0,"row_version":4,
     *   "schema":"public","table":"users"}] */
    ck_assert_uint_eq(bytes, 119);
    ck_assert_str_eq(hex, "204127f8eb17f1a381e02df13b0600278afd76f425d9369a665f6e856c2d6ffe");
}
END_TEST

/* ------------------------------------------------------------------ main */

static Suite *canonical_suite(void)
{
    Suite *s = suite_create("canonical_json");
    TCase *tg = tcase_create("go_vectors");
    tcase_set_timeout(tg, 120);
    tcase_add_test(tg, test_go_vectors);
    tcase_add_test(tg, test_go_vectors_idempotent);
    tcase_add_test(tg, test_divergent_rejected);
    tcase_add_test(tg, test_go_doubles);
    tcase_add_test(tg, test_mass_file);
    suite_add_tcase(s, tg);
    TCase *tn = tcase_create("numbers");
    tcase_add_test(tn, test_numbers);
    tcase_add_test(tn, test_numbers_rejected);
    tcase_add_test(tn, test_numbers_locale);
    suite_add_tcase(s, tn);
    TCase *ts = tcase_create("strings");
    tcase_add_test(ts, test_control_characters);
    tcase_add_test(ts, test_html_and_separators);
    tcase_add_test(ts, test_invalid_utf8);
    tcase_add_test(ts, test_surrogate_escapes);
    suite_add_tcase(s, ts);
    TCase *tc = tcase_create("containers");
    tcase_add_test(tc, test_objects);
    tcase_add_test(tc, test_syntax_rejected);
    tcase_add_test(tc, test_depth);
    tcase_add_test(tc, test_api);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *bundle_suite(void)
{
    Suite *s = suite_create("bundle_hash");
    TCase *tc = tcase_create("hash");
    tcase_add_test(tc, test_spec_vector);
    tcase_add_test(tc, test_go_bundles);
    tcase_add_test(tc, test_hasher_api);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(canonical_suite(), bundle_suite(), NULL);
}
