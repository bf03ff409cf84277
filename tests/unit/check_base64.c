/* Base64 decoding (src/base64.c), in the spirit of lighttpd's t/test_base64.c: the RFC 4648
 * vectors, round trips of every length and every byte value in both alphabets with and without
 * padding, every character at every position, every padding variant, non-canonical trailing
 * bits, bad lengths, white space and truncated input, first as payload values are decoded
 * (either alphabet, padding optional), then in every mode the flags allow, JWT's strict one
 * (URL alphabet, no padding) in particular. The encodings are made by a reference encoder of
 * this file. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "../run_suites.h"

static const char STD[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#define CANARY 0xA5
#define SLACK 16

/* What a payload value may be (bytea, uuid): either alphabet, trailing '=' optional. */
#define LENIENT (BASE64_ANY | BASE64_PAD_OPTIONAL)
/* What a JWT part may be: the URL alphabet, no padding. */
#define JWT (BASE64_URL | BASE64_PAD_FORBIDDEN)

/* The reference encoder: three bytes to four characters, the last group cut short and padded
 * with '=' when pad is set. */
static size_t encode(const unsigned char *in, size_t n, const char *alphabet, bool pad, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        size_t left = n - i;
        uint32_t v = (uint32_t)in[i] << 16 | (left > 1 ? (uint32_t)in[i + 1] << 8 : 0) | (left > 2 ? in[i + 2] : 0);
        size_t chars = left >= 3 ? 4 : left + 1;
        for (size_t k = 0; k < chars; k++)
            out[o++] = alphabet[v >> (18 - 6 * k) & 63];
        for (; pad && chars < 4; chars++)
            out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

/* The 6-bit value of c in the standard or URL alphabet, -1 when in neither. */
static int value_in(const char *alphabet, int c)
{
    const char *p = c ? strchr(alphabet, c) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

/* Decodes s[0..len) as flags say into a buffer with a canary after BASE64_DECODED_MAX(len)
 * bytes; true when accepted, and then the bytes and count are in out / *n and nothing beyond was
 * written. */
static bool run(unsigned flags, const char *s, size_t len, unsigned char *out, size_t *n)
{
    size_t room = BASE64_DECODED_MAX(len);
    unsigned char *buf = malloc(room + SLACK);
    ck_assert_ptr_nonnull(buf);
    memset(buf, CANARY, room + SLACK);
    size_t got = (size_t)-1;
    bool ok = base64_decode(s, len, flags, buf, &got);
    if (ok) {
        ck_assert_uint_le(got, room);
        for (size_t i = got; i < room + SLACK; i++)
            ck_assert_msg(buf[i] == CANARY, "byte %zu past the %zu decoded was written", i, got);
        memcpy(out, buf, got);
        *n = got;
    }
    free(buf);
    return ok;
}

static void expect_decodes(const char *s, size_t len, const void *want, size_t wantlen)
{
    unsigned char out[512];
    size_t n;
    ck_assert_msg(run(LENIENT, s, len, out, &n), "refused \"%.*s\"", (int)len, s);
    ck_assert_msg(n == wantlen && memcmp(out, want, n) == 0, "\"%.*s\": %zu bytes, wrong", (int)len, s, n);
}

static void expect_refused(const char *s, size_t len)
{
    unsigned char out[512];
    size_t n;
    ck_assert_msg(!run(LENIENT, s, len, out, &n), "accepted \"%.*s\"", (int)len, s);
}

/* A deterministic byte source. */
static void fill(unsigned char *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (unsigned char)(seed >> 16);
    }
}

/* ------------------------------------------------------------------ vectors */

START_TEST(test_rfc4648_vectors)
{
    static const struct {
        const char *in;
        const char *out;
    } v[] = {
        /* RFC 4648 §10, padded and not */
        { "", "" },
        { "Zg==", "f" }, { "Zg", "f" },
        { "Zm8=", "fo" }, { "Zm8", "fo" },
        { "Zm9v", "foo" },
        { "Zm9vYg==", "foob" }, { "Zm9vYg", "foob" },
        { "Zm9vYmE=", "fooba" }, { "Zm9vYmE", "fooba" },
        { "Zm9vYmFy", "foobar" },
        /* the two characters the alphabets differ in */
        { "+/8=", "\xfb\xff" }, { "-_8=", "\xfb\xff" }, { "-_8", "\xfb\xff" },
        { "+g==", "\xfa" }, { "-g", "\xfa" },
        { "////", "\xff\xff\xff" }, { "____", "\xff\xff\xff" },
        { "AAEC/+7/", "\x00\x01\x02\xff\xee\xff" }, { "AAEC_-7_", "\x00\x01\x02\xff\xee\xff" },
        /* mixed in one text */
        { "+-/_", "\xfb\xef\xff" }, { "AAEC_+7/", "\x00\x01\x02\xff\xee\xff" },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        /* the decoded length of the vectors with NULs is counted from the encoding */
        size_t len = strlen(v[i].in), stripped = len;
        while (stripped && v[i].in[stripped - 1] == '=')
            stripped--;
        expect_decodes(v[i].in, len, v[i].out, stripped * 3 / 4);
    }
}
END_TEST

/* ------------------------------------------------------------------ round trips */

/* Every length from 0 to 600 bytes, random, all zero, all ones and a ramp, in the four spellings
 * (standard or URL alphabet, padded or not). */
START_TEST(test_round_trip_every_length)
{
    enum { MAX = 600 };
    static unsigned char in[MAX], out[MAX + 8];
    static char text[MAX / 3 * 4 + 8];
    static const char *const alphabets[] = { STD, URL };
    for (int pattern = 0; pattern < 4; pattern++)
        for (size_t n = 0; n <= MAX; n++) {
            switch (pattern) {
            case 0: fill(in, n, (uint32_t)n); break;
            case 1: memset(in, 0, n); break;
            case 2: memset(in, 0xff, n); break;
            default:
                for (size_t i = 0; i < n; i++)
                    in[i] = (unsigned char)(i * 7 + 3);
            }
            for (int a = 0; a < 2; a++)
                for (int pad = 0; pad < 2; pad++) {
                    size_t len = encode(in, n, alphabets[a], pad, text);
                    size_t got;
                    if (!run(LENIENT, text, len, out, &got))
                        ck_abort_msg("length %zu pattern %d alphabet %d pad %d: refused %.60s", n, pattern, a, pad,
                                     text);
                    if (got != n || memcmp(out, in, n) != 0)
                        ck_abort_msg("length %zu pattern %d alphabet %d pad %d: wrong bytes", n, pattern, a, pad);
                }
        }
}
END_TEST

/* Every byte value at every place of a 1-, 2- and 3-byte group, after a full group. */
START_TEST(test_round_trip_every_byte)
{
    unsigned char in[4], out[8];
    char text[16];
    for (size_t n = 1; n <= 3; n++)
        for (size_t pos = 0; pos < n; pos++)
            for (int b = 0; b < 256; b++) {
                memset(in, 0x5a, sizeof in);
                in[1 + pos] = (unsigned char)b;
                for (int spelling = 0; spelling < 4; spelling++) {
                    size_t len = encode(in, 1 + n, spelling & 1 ? URL : STD, spelling & 2, text), got;
                    ck_assert_msg(run(LENIENT, text, len, out, &got), "byte 0x%02x: %s", b, text);
                    ck_assert_uint_eq(got, 1 + n);
                    ck_assert_mem_eq(out, in, 1 + n);
                }
            }
    /* all 256 values in one text */
    unsigned char all[256], back[256];
    char big[400];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    size_t len = encode(all, 256, STD, true, big), got;
    ck_assert(run(LENIENT, big, len, back, &got));
    ck_assert_uint_eq(got, 256);
    ck_assert_mem_eq(back, all, 256);
}
END_TEST

/* ------------------------------------------------------------------ padding */

START_TEST(test_padding_variants)
{
    /* any number of trailing '=' is dropped, even after a full group or alone */
    expect_decodes("Zg", 2, "f", 1);
    expect_decodes("Zg=", 3, "f", 1);
    expect_decodes("Zg==", 4, "f", 1);
    expect_decodes("Zg===", 5, "f", 1);
    expect_decodes("Zg========", 10, "f", 1);
    expect_decodes("Zm8", 3, "fo", 2);
    expect_decodes("Zm8=", 4, "fo", 2);
    expect_decodes("Zm8==", 5, "fo", 2);
    expect_decodes("Zm9v=", 5, "foo", 3);
    expect_decodes("Zm9v====", 8, "foo", 3);
    expect_decodes("=", 1, "", 0);
    expect_decodes("==", 2, "", 0);
    expect_decodes("====", 4, "", 0);
    /* '=' anywhere but at the end */
    expect_refused("Zg==Zg==", 8);
    expect_refused("Zg=g", 4);
    expect_refused("=Zg", 3);
    expect_refused("Z=g=", 4);
    expect_refused("Zm9v=Zm9v", 9);
    expect_refused("=AAA", 4);
    /* padding does not make a bad length good */
    expect_refused("Z", 1);
    expect_refused("Z=", 2);
    expect_refused("Z==", 3);
    expect_refused("Z===", 4);
    expect_refused("Zm9vY===", 8);
}
END_TEST

/* The bits after the last whole byte must be zero, so each byte string has one spelling (per
 * alphabet and padding): of the 64 last characters of a 2- and 3-character group only those are
 * accepted. */
START_TEST(test_trailing_bits)
{
    for (int v = 0; v < 64; v++) {
        char two[5] = { 'Q', STD[v], '=', '=', '\0' };
        char three[5] = { 'Q', 'U', URL[v], '=', '\0' };
        unsigned char out[8];
        size_t n;
        for (size_t len = 2; len <= 4; len++)
            ck_assert_msg(run(LENIENT, two, len, out, &n) == ((v & 15) == 0), "%.*s", (int)len, two);
        for (size_t len = 3; len <= 4; len++)
            ck_assert_msg(run(LENIENT, three, len, out, &n) == ((v & 3) == 0), "%.*s", (int)len, three);
    }
}
END_TEST

/* Lengths of 4k+1 characters cannot be base64; the others all decode. */
START_TEST(test_lengths)
{
    char text[80];
    memset(text, 'A', sizeof text);
    for (size_t len = 0; len < sizeof text; len++) {
        unsigned char out[80];
        size_t n;
        bool ok = run(LENIENT, text, len, out, &n);
        ck_assert_msg(ok == (len % 4 != 1), "length %zu", len);
        if (ok)
            ck_assert_uint_eq(n, len * 3 / 4);
    }
}
END_TEST

/* ------------------------------------------------------------------ hostile text */

/* No white space anywhere: not around, not between groups, not as line breaks. */
START_TEST(test_whitespace)
{
    static const char *const texts[] = {
        " Zg==", "Zg== ", "Zm9v\nYmFy", "Zm9v\r\nYmFy", "Zm9vYmFy\n", "\tZm9v", "Zm 9v", "Zg= =",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        expect_refused(texts[i], strlen(texts[i]));
    static const char ws[] = " \t\n\r\f\v";
    for (size_t w = 0; w < sizeof ws - 1; w++)
        for (size_t pos = 0; pos <= 8; pos++) {
            char text[10];
            memcpy(text, "Zm9vYmFy", pos);
            text[pos] = ws[w];
            memcpy(text + pos + 1, "Zm9vYmFy" + pos, 8 - pos);
            expect_refused(text, 9);
        }
}
END_TEST

/* Every prefix of an encoding: accepted exactly when its length and last character make a
 * canonical encoding, and then it is a prefix of the bytes. */
START_TEST(test_truncated)
{
    unsigned char in[48];
    fill(in, sizeof in, 7);
    char text[80];
    for (int a = 0; a < 2; a++) {
        const char *alphabet = a ? URL : STD;
        size_t len = encode(in, sizeof in, alphabet, false, text);
        for (size_t k = 0; k <= len; k++) {
            int last = k ? value_in(alphabet, text[k - 1]) : 0;
            bool canonical = k % 4 == 0 || (k % 4 == 2 && (last & 15) == 0) || (k % 4 == 3 && (last & 3) == 0);
            unsigned char out[64];
            size_t n;
            bool ok = run(LENIENT, text, k, out, &n);
            ck_assert_msg(ok == canonical, "prefix of %zu", k);
            if (ok) {
                ck_assert_uint_eq(n, k * 3 / 4);
                ck_assert_mem_eq(out, in, n);
            }
        }
    }
}
END_TEST

/* Only len characters are read; a NUL inside them is an invalid character. */
START_TEST(test_length_obeyed)
{
    expect_decodes("Zm9vYmFy", 4, "foo", 3);
    expect_decodes("Zg==Zm9v", 4, "f", 1);
    expect_decodes("Zg\0=", 2, "f", 1);
    expect_refused("Zg\0=", 4);
    expect_refused("\0\0\0\0", 4);
    expect_refused("Zm9v\0", 5);
}
END_TEST

/* Characters outside ASCII, which a signed char would make negative. */
START_TEST(test_high_bytes)
{
    for (int c = 0x80; c < 0x100; c++) {
        char text[4] = { 'Q', 'U', 'J', (char)c };
        expect_refused(text, 4);
        char utf8[6] = { 'Q', 'U', (char)0xc3, (char)c, 'J', 'D' };
        expect_refused(utf8, 6);
    }
}
END_TEST

/* ------------------------------------------------------------------ the other modes */

static const unsigned modes[] = {
    BASE64_STD | BASE64_PAD_FORBIDDEN, BASE64_URL | BASE64_PAD_FORBIDDEN, BASE64_ANY | BASE64_PAD_FORBIDDEN,
    BASE64_STD | BASE64_PAD_OPTIONAL,  BASE64_URL | BASE64_PAD_OPTIONAL,  BASE64_ANY | BASE64_PAD_OPTIONAL,
};

/* Every byte value at every position of "AAAAAAAA" in every mode: accepted with its 6 bits in
 * place for the letters and digits always, '+' '/' with BASE64_STD, '-' '_' with BASE64_URL; a
 * final '=' with BASE64_PAD_OPTIONAL; anything else refused. */
START_TEST(test_every_mode_every_character)
{
    unsigned flags = modes[_i];
    for (size_t pos = 0; pos < 8; pos++)
        for (int c = 0; c < 256; c++) {
            char text[9] = "AAAAAAAA";
            text[pos] = (char)c;
            int v = -1;
            if (flags & BASE64_STD)
                v = value_in(STD, c);
            if (v < 0 && (flags & BASE64_URL))
                v = value_in(URL, c);
            bool pad = c == '=' && pos == 7 && (flags & BASE64_PAD_OPTIONAL);
            unsigned char out[16];
            size_t n;
            bool ok = run(flags, text, 8, out, &n);
            ck_assert_msg(ok == (v >= 0 || pad), "flags %u: byte 0x%02x at %zu: %s", flags, c, pos,
                          ok ? "accepted" : "refused");
            if (ok && pad)
                ck_assert_uint_eq(n, 5);
            if (ok && !pad) {
                ck_assert_uint_eq(n, 6);
                int got = 0;
                for (size_t bit = 6 * pos; bit < 6 * pos + 6; bit++)
                    got = got << 1 | (out[bit / 8] >> (7 - bit % 8) & 1);
                ck_assert_int_eq(got, v);
            }
        }
}
END_TEST

/* JWT's mode takes exactly one spelling of each byte string: the unpadded URL one. */
START_TEST(test_jwt_one_spelling)
{
    enum { MAX = 300 };
    static unsigned char in[MAX], out[MAX + 8];
    static char text[MAX / 3 * 4 + 8];
    for (size_t n = 0; n <= MAX; n++) {
        fill(in, n, (uint32_t)(n * 31 + 1));
        size_t len = encode(in, n, URL, false, text), got;
        ck_assert_msg(run(JWT, text, len, out, &got), "length %zu", n);
        ck_assert_uint_eq(got, n);
        ck_assert_mem_eq(out, in, n);
        /* padded: refused when there is padding */
        len = encode(in, n, URL, true, text);
        ck_assert_msg(run(JWT, text, len, out, &got) == (n % 3 == 0), "padded, length %zu", n);
        /* the standard alphabet: refused when '+' or '/' occurs */
        len = encode(in, n, STD, false, text);
        bool std_only = strpbrk(text, "+/") != NULL;
        ck_assert_msg(run(JWT, text, len, out, &got) == !std_only, "standard, length %zu", n);
        /* and the other way round */
        len = encode(in, n, URL, false, text);
        bool url_only = strpbrk(text, "-_") != NULL;
        ck_assert_msg(run(BASE64_STD | BASE64_PAD_OPTIONAL, text, len, out, &got) == !url_only, "url, length %zu", n);
    }
}
END_TEST

START_TEST(test_jwt_texts)
{
    static const struct {
        const char *text;
        bool ok;
    } v[] = {
        { "", true },       { "Zg", true },      { "Zm8", true },      { "Zm9v", true },
        { "-_8", true },    { "_-7_", true },    { "AAEC_-7_", true }, { "eyJhbGciOiJIUzI1NiJ9", true },
        { "Zg=", false },   { "Zg==", false },   { "Zm8=", false },    { "Zm9v=", false },
        { "=", false },     { "====", false },   { "+/8", false },     { "AAEC/+7/", false },
        { "Zh", false },    { "Zm9", false },    { "Z", false },       { "Zm9vY", false },
        { " Zg", false },   { "Zg\n", false },  { "Zm9v.Zm9v", false },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        unsigned char out[32];
        size_t n;
        ck_assert_msg(run(JWT, v[i].text, strlen(v[i].text), out, &n) == v[i].ok, "%s", v[i].text);
    }
}
END_TEST

/* BASE64_DECODED_MAX is enough and, for 4k+3 characters, just enough. */
START_TEST(test_decoded_max)
{
    char text[64];
    memset(text, '/', sizeof text);
    for (size_t len = 0; len < sizeof text; len++) {
        if (len % 4 == 1)
            continue;
        /* "///" would leave bits set: end with a character whose low bits are zero */
        if (len % 4 == 2)
            text[len - 1] = 'w';
        if (len % 4 == 3)
            text[len - 1] = '8';
        unsigned char out[64];
        size_t n;
        ck_assert_msg(run(BASE64_STD | BASE64_PAD_FORBIDDEN, text, len, out, &n), "length %zu", len);
        ck_assert_uint_le(n, BASE64_DECODED_MAX(len));
        if (len % 4 == 3)
            ck_assert_uint_eq(n, BASE64_DECODED_MAX(len));
        text[len ? len - 1 : 0] = '/';
    }
}
END_TEST

/* ------------------------------------------------------------------ runner */

static Suite *base64_suite(void)
{
    Suite *s = suite_create("base64");
    TCase *tc = tcase_create("decode");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_rfc4648_vectors);
    tcase_add_test(tc, test_round_trip_every_length);
    tcase_add_test(tc, test_round_trip_every_byte);
    tcase_add_test(tc, test_padding_variants);
    tcase_add_test(tc, test_trailing_bits);
    tcase_add_test(tc, test_lengths);
    tcase_add_test(tc, test_whitespace);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_length_obeyed);
    tcase_add_test(tc, test_high_bytes);
    suite_add_tcase(s, tc);

    tc = tcase_create("modes");
    tcase_add_loop_test(tc, test_every_mode_every_character, 0, (int)(sizeof modes / sizeof modes[0]));
    tcase_add_test(tc, test_jwt_one_spelling);
    tcase_add_test(tc, test_jwt_texts);
    tcase_add_test(tc, test_decoded_max);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(base64_suite(), NULL);
}
