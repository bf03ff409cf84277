/* Canonical JSON: a small validating JSON parser that writes Go encoding/json's output for the
 * document decoded into `any` while it reads (see canonical_json.h for the contract).
 *
 * The parser is iterative (an explicit stack of open containers), so nesting depth costs heap,
 * not C stack. Values are written to the output as they are parsed; an object whose keys arrive
 * strictly ascending (the usual case for already canonical input) needs nothing more, any other
 * object is rebuilt once when it closes: its members are sorted by decoded key, duplicates keep
 * the last value, and the members' already canonical texts are joined again. */
#include "canonical_json.h"
#include "xalloc.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char hexdigits[] = "0123456789abcdef";

/* ------------------------------------------------------------------ numbers: output */

/* Digits of a decimal candidate: d[0..nd) with the value 0.d × 10^dp (d[0] != '0'). */
struct decimal {
    char d[24];
    int nd;
    int dp;
};

static const double pow10_exact[23] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* m × 10^k correctly rounded when that takes one IEEE operation on exact operands (Clinger's
 * fast path: m < 2^53, |k| <= 22); false otherwise. */
static bool exact_decimal(uint64_t m, long k, double *v)
{
#if FLT_EVAL_METHOD == 0
    if (m < (UINT64_C(1) << 53) && k >= -22 && k <= 22) {
        *v = k < 0 ? (double)m / pow10_exact[-k] : (double)m * pow10_exact[k];
        return true;
    }
#else
    (void)m; (void)k; (void)v;
#endif
    return false;
}

/* The double nearest to the decimal, read with strtod from a string that holds only digits, 'e'
 * and a sign, so that the locale's decimal point plays no part. */
static double decimal_value(const struct decimal *dec)
{
    if (dec->nd <= 15) {
        uint64_t m = 0;
        for (int i = 0; i < dec->nd; i++)
            m = m * 10 + (uint64_t)(dec->d[i] - '0');
        double v;
        if (exact_decimal(m, (long)dec->dp - dec->nd, &v))
            return v;
    }
    char buf[48];
    memcpy(buf, dec->d, (size_t)dec->nd);
    snprintf(buf + dec->nd, sizeof buf - (size_t)dec->nd, "e%d", dec->dp - dec->nd);
    return strtod(buf, NULL);
}

/* The p-significant-digit decimal nearest to x > 0 (correctly rounded by printf). Only digits
 * and the exponent are read back, so the locale's decimal point does not matter. */
static void nearest_decimal(double x, int p, struct decimal *dec)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.*e", p - 1, x);
    const char *s = buf;
    dec->nd = 0;
    for (; *s && *s != 'e' && *s != 'E'; s++)
        if (*s >= '0' && *s <= '9' && dec->nd < (int)sizeof dec->d)
            dec->d[dec->nd++] = *s;
    int e = (*s) ? atoi(s + 1) : 0;
    dec->dp = e + 1;
}

/* The neighbour of dec on the p-digit grid, one unit in the last place up or down. */
static void step_decimal(struct decimal *dec, bool up)
{
    int i = dec->nd - 1;
    if (up) {
        while (i >= 0 && dec->d[i] == '9')
            dec->d[i--] = '0';
        if (i < 0) { /* 99..9 + 1 = 100..0, one decade up */
            dec->d[0] = '1';
            dec->dp++;
        } else {
            dec->d[i]++;
        }
    } else {
        while (i >= 0 && dec->d[i] == '0')
            dec->d[i--] = '9';
        dec->d[i]--; /* d[0] != '0', so i >= 0 */
        if (dec->d[0] == '0') { /* 10..0 - 1 = 099..9: the finer grid of the decade below */
            memset(dec->d, '9', (size_t)dec->nd);
            dec->dp--;
        }
    }
}

/* Find a p-digit decimal that reads back as x: the nearest one, else its other neighbour around
 * x (the rounding interval of x can be lopsided at powers of two). */
static bool roundtrip_decimal(double x, int p, struct decimal *dec)
{
    nearest_decimal(x, p, dec);
    double v = decimal_value(dec);
    if (v == x)
        return true;
    step_decimal(dec, v < x);
    return decimal_value(dec) == x;
}

static void strip_zeros(struct decimal *dec)
{
    while (dec->nd > 1 && dec->d[dec->nd - 1] == '0')
        dec->nd--;
}

/* Shortest decimal that reads back as x > 0 finite; among the shortest, the nearest to x, ties to
 * an even last digit (printf's rounding), as Go's Dragonbox-based FormatFloat(x, _, -1, 64). A
 * p-digit solution is also a (p+1)-digit one, so the shortest length is found by bisection.
 *
 * Shortcut for normal numbers: the rounding interval of x (relative half-width <= 2^-53) is much
 * narrower than half the spacing of 15-digit decimals (relative >= 5e-16), so if any decimal of
 * at most 15 digits reads back as x it is the 15-digit decimal nearest to x: one try settles
 * every length up to 15. */
static void shortest_decimal(double x, struct decimal *dec)
{
    int lo = 1, hi = 17; /* 17 digits always round-trip */
    if (x >= 0x1p-1022) {
        nearest_decimal(x, 15, dec);
        strip_zeros(dec);
        if (decimal_value(dec) == x)
            return;
        lo = 16;
    }
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        struct decimal t;
        if (roundtrip_decimal(x, mid, &t))
            hi = mid;
        else
            lo = mid + 1;
    }
    roundtrip_decimal(x, lo, dec);
    strip_zeros(dec);
}

bool canonical_json_double(strbuf_t *out, double x)
{
    if (isnan(x) || isinf(x))
        return false;
    char buf[64];
    size_t n = 0;
    if (signbit(x))
        buf[n++] = '-';
    double ax = fabs(x);
    if (ax == 0) {
        buf[n++] = '0';
        sb_append(out, buf, n);
        return true;
    }
    if (ax < 9007199254740992.0 && ax == floor(ax)) {
        /* An integer below 2^53 is exact, and fewer digits than its own cannot read back. */
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%llu", (unsigned long long)ax);
        sb_append(out, buf, n);
        return true;
    }
    struct decimal dec;
    shortest_decimal(ax, &dec);
    if (ax < 1e-6 || ax >= 1e21) {
        /* d[.ddd]e±X, the exponent unpadded (Go pads to two digits, then encoding/json strips
         * the zero of e-0X; positive exponents here are >= 21 anyway). */
        buf[n++] = dec.d[0];
        if (dec.nd > 1) {
            buf[n++] = '.';
            memcpy(buf + n, dec.d + 1, (size_t)dec.nd - 1);
            n += (size_t)dec.nd - 1;
        }
        int e = dec.dp - 1;
        n += (size_t)snprintf(buf + n, sizeof buf - n, "e%c%d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    } else if (dec.dp <= 0) { /* 0.000ddd */
        buf[n++] = '0';
        buf[n++] = '.';
        memset(buf + n, '0', (size_t)-dec.dp);
        n += (size_t)-dec.dp;
        memcpy(buf + n, dec.d, (size_t)dec.nd);
        n += (size_t)dec.nd;
    } else if (dec.dp >= dec.nd) { /* ddd000 */
        memcpy(buf + n, dec.d, (size_t)dec.nd);
        n += (size_t)dec.nd;
        memset(buf + n, '0', (size_t)(dec.dp - dec.nd));
        n += (size_t)(dec.dp - dec.nd);
    } else { /* dd.ddd */
        memcpy(buf + n, dec.d, (size_t)dec.dp);
        n += (size_t)dec.dp;
        buf[n++] = '.';
        memcpy(buf + n, dec.d + dec.dp, (size_t)(dec.nd - dec.dp));
        n += (size_t)(dec.nd - dec.dp);
    }
    sb_append(out, buf, n);
    return true;
}

/* ------------------------------------------------------------------ strings: output */

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 when Go's utf8.DecodeRune would
 * report an error there (it then consumes a single byte). Sets *cp. */
static size_t utf8_seq(const unsigned char *s, const unsigned char *end, uint32_t *cp)
{
    unsigned c = s[0];
    size_t avail = (size_t)(end - s);
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c < 0xC2 || c > 0xF4)
        return 0;
    unsigned lo = 0x80, hi = 0xBF;
    size_t n;
    if (c < 0xE0) {
        n = 2;
    } else if (c < 0xF0) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    }
    if (avail < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    uint32_t v = c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
    for (size_t i = 1; i < n; i++)
        v = (v << 6) | (s[i] & 0x3F);
    *cp = v;
    return n;
}

/* Escape needed for an ASCII byte in Go's HTML-safe encoding, or NULL when it is written as is.
 * Bytes < 0x20 without a short form use \u00xx, built by the caller. */
static const char *ascii_escape(unsigned c, char u[7])
{
    switch (c) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\b': return "\\b";
    case '\f': return "\\f";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    case '<': case '>': case '&':
        break;
    default:
        if (c >= 0x20)
            return NULL;
    }
    u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0';
    u[4] = hexdigits[c >> 4]; u[5] = hexdigits[c & 15]; u[6] = '\0';
    return u;
}

/* Append the UTF-8 bytes of cp, unescaped (the decoded form of keys, for sorting, and the raw
 * output of code points that need no escape). */
static void put_utf8_raw(strbuf_t *sb, uint32_t cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    sb_append(sb, b, n);
}

/* Append one decoded code point (always a valid scalar value) in canonical form. */
static void put_codepoint(strbuf_t *out, uint32_t cp)
{
    char u[7];
    if (cp < 0x80) {
        const char *esc = ascii_escape(cp, u);
        if (esc)
            sb_append(out, esc, strlen(esc));
        else
            sb_putc(out, (char)cp);
        return;
    }
    if (cp == 0x2028 || cp == 0x2029) {
        sb_append(out, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
        return;
    }
    put_utf8_raw(out, cp);
}

void canonical_json_string(strbuf_t *out, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str, *end = s + n;
    sb_reserve(out, n + 2);
    sb_putc(out, '"');
    const unsigned char *run = s; /* bytes copied verbatim in one go */
    while (s < end) {
        uint32_t cp;
        size_t k = utf8_seq(s, end, &cp);
        char u[7];
        if (k == 1 && !ascii_escape(cp, u)) {
            s++;
            continue;
        }
        if (k > 1 && cp != 0x2028 && cp != 0x2029) {
            s += k;
            continue;
        }
        sb_append(out, (const char *)run, (size_t)(s - run));
        put_codepoint(out, k ? cp : 0xFFFD);
        s += k ? k : 1;
        run = s;
    }
    sb_append(out, (const char *)run, (size_t)(s - run));
    sb_putc(out, '"');
}

/* ------------------------------------------------------------------ the parser */

struct member {
    size_t key_off, key_len;   /* decoded key in st->keys */
    size_t text_off, text_len; /* "key":value in the output */
    size_t index;              /* position in the object, for last-wins on duplicates */
    const char *key;           /* st->keys.data + key_off, set only while sorting */
};

struct frame {
    bool object;
    bool sorted;       /* keys so far strictly ascending: no rebuild needed */
    size_t out_start;  /* offset of '[' or '{' in the output */
    size_t mem_start;  /* first member of this object in st->mem */
    size_t keys_start; /* st->keys length when the object opened */
    size_t count;      /* members or elements so far */
};

struct state {
    const unsigned char *start, *p, *end;
    strbuf_t *out;
    strbuf_t keys;    /* decoded keys of the members of every open object */
    strbuf_t scratch; /* number digits; object rebuilds */
    struct member *mem;
    size_t nmem, capmem;
    struct frame *stack;
    size_t depth, capstack;
    char *err;
    size_t errlen;
};

static bool fail(struct state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(struct state *st, const char *fmt, ...)
{
    if (st->err && st->errlen) {
        int n = snprintf(st->err, st->errlen, "offset %zu: ", (size_t)(st->p - st->start));
        if (n >= 0 && (size_t)n < st->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(st->err + n, st->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return false;
}

static bool fail_char(struct state *st, const char *context)
{
    if (st->p >= st->end)
        return fail(st, "unexpected end of JSON input");
    unsigned c = *st->p;
    if (c >= 0x20 && c < 0x7F)
        return fail(st, "invalid character '%c' %s", (char)c, context);
    return fail(st, "invalid byte 0x%02x %s", c, context);
}

static void skip_ws(struct state *st)
{
    while (st->p < st->end && (*st->p == ' ' || *st->p == '\t' || *st->p == '\n' || *st->p == '\r'))
        st->p++;
}

static int hexval(unsigned c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F')
        return (int)(c - 'A' + 10);
    return -1;
}

/* The value of \uXXXX at s, or -1 when s does not start with one. */
static long read_u4(const unsigned char *s, const unsigned char *end)
{
    if (end - s < 6 || s[0] != '\\' || s[1] != 'u')
        return -1;
    long v = 0;
    for (int i = 2; i < 6; i++) {
        int h = hexval(s[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Parse the string at st->p (on its opening quote); write it canonically to the output and, for
 * a key, its decoded bytes to key (else key is NULL). */
static bool parse_string(struct state *st, strbuf_t *key)
{
    strbuf_t *out = st->out;
    st->p++; /* opening quote */
    sb_putc(out, '"');
    const unsigned char *run = st->p;
    for (;;) {
        if (st->p >= st->end)
            return fail(st, "unexpected end of JSON input in string");
        unsigned c = *st->p;
        char u[7];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\' && !ascii_escape(c, u)) {
            st->p++;
            continue;
        }
        uint32_t cp;
        size_t k = 0;
        if (c >= 0x80) {
            k = utf8_seq(st->p, st->end, &cp);
            if (k && cp != 0x2028 && cp != 0x2029) {
                st->p += k;
                continue;
            }
        }
        /* Something to translate: flush the verbatim run first. */
        sb_append(out, (const char *)run, (size_t)(st->p - run));
        if (key)
            sb_append(key, (const char *)run, (size_t)(st->p - run));
        if (c == '"') {
            st->p++;
            sb_putc(out, '"');
            return true;
        }
        if (c < 0x20)
            return fail_char(st, "in string literal");
        if (c >= 0x80) {
            if (!k)
                cp = 0xFFFD; /* invalid byte: one U+FFFD per byte, like utf8.DecodeRune */
            st->p += k ? k : 1;
        } else if (c != '\\') {
            cp = c; /* an ASCII byte that needs escaping: < > & */
            st->p++;
        } else {
            if (st->end - st->p < 2) {
                st->p = st->end;
                return fail(st, "unexpected end of JSON input in string escape");
            }
            unsigned e = st->p[1];
            switch (e) {
            case '"': case '\\': case '/': cp = e; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u': {
                long v = read_u4(st->p, st->end);
                if (v < 0) {
                    st->p += 2;
                    return fail(st, "invalid \\u escape in string literal");
                }
                if (v >= 0xD800 && v < 0xE000) {
                    /* A surrogate: only a high one followed by an escaped low one is a pair;
                     * anything else is U+FFFD and what follows is read on its own. */
                    long v2 = read_u4(st->p + 6, st->end);
                    if (v < 0xDC00 && v2 >= 0xDC00 && v2 < 0xE000) {
                        cp = (uint32_t)(0x10000 + ((v - 0xD800) << 10) + (v2 - 0xDC00));
                        st->p += 6;
                    } else {
                        cp = 0xFFFD;
                    }
                } else {
                    cp = (uint32_t)v;
                }
                st->p += 4; /* plus the 2 below */
                break;
            }
            default:
                st->p++;
                return fail_char(st, "in string escape code");
            }
            st->p += 2;
        }
        put_codepoint(out, cp);
        if (key)
            put_utf8_raw(key, cp);
        run = st->p;
    }
}

static bool is_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

/* Parse the number at st->p, convert it to float64 as Go's strconv.ParseFloat does, and write it. */
static bool parse_number(struct state *st)
{
    const unsigned char *s = st->p, *end = st->end;
    bool neg = false;
    if (*s == '-') {
        neg = true;
        s++;
    }
    if (!is_digit(s, end)) {
        st->p = s;
        return fail_char(st, "in numeric literal");
    }
    const unsigned char *int_start = s;
    if (*s == '0')
        s++;
    else
        while (is_digit(s, end))
            s++;
    const unsigned char *int_end = s, *frac_start = s, *frac_end = s;
    if (s < end && *s == '.') {
        s++;
        if (!is_digit(s, end)) {
            st->p = s;
            return fail_char(st, "after decimal point in numeric literal");
        }
        frac_start = s;
        while (is_digit(s, end))
            s++;
        frac_end = s;
    }
    bool has_exp = false, exp_neg = false;
    long exp = 0;
    if (s < end && (*s == 'e' || *s == 'E')) {
        has_exp = true;
        s++;
        if (s < end && (*s == '+' || *s == '-')) {
            exp_neg = *s == '-';
            s++;
        }
        if (!is_digit(s, end)) {
            st->p = s;
            return fail_char(st, "in exponent of numeric literal");
        }
        /* Go stops accumulating exponent digits once the value reaches 10000. */
        for (; is_digit(s, end); s++)
            if (exp < 10000)
                exp = exp * 10 + (*s - '0');
    }

    /* Significant digits and the decimal point position, value = 0.digits × 10^dp. */
    strbuf_t *dig = &st->scratch;
    sb_reset(dig);
    long dp = 0, nd = 0, int_digits;
    for (const unsigned char *q = int_start; q < int_end; q++) {
        if (*q == '0' && nd == 0)
            continue; /* the integer part is "0" or has no leading zero */
        sb_putc(dig, (char)*q);
        nd++;
    }
    int_digits = nd;
    dp = nd;
    for (const unsigned char *q = frac_start; q < frac_end; q++) {
        if (*q == '0' && nd == 0) {
            dp--;
            continue;
        }
        sb_putc(dig, (char)*q);
        nd++;
    }
    double v;
    if (nd == 0) {
        v = 0.0;
    } else {
        if (int_digits > 800 && has_exp && exp_neg && exp > 0) {
            st->p = int_start;
            return fail(st, "number with more than 800 integer digits and a negative exponent "
                            "(Go's float parser mis-reads it; refused rather than guessed)");
        }
        dp += exp_neg ? -exp : exp;
        uint64_t m = 0;
        if (nd <= 15)
            for (long i = 0; i < nd; i++)
                m = m * 10 + (uint64_t)(dig->data[i] - '0');
        if (nd > 15 || !exact_decimal(m, dp - nd, &v)) {
            sb_printf(dig, "e%ld", dp - nd);
            v = strtod(dig->data, NULL);
        }
        if (isinf(v)) {
            st->p = neg ? int_start - 1 : int_start;
            return fail(st, "number %.*s%s out of float64 range",
                        (int)((s - st->p) > 40 ? 40 : (s - st->p)), (const char *)st->p,
                        (s - st->p) > 40 ? "..." : "");
        }
    }
    st->p = s;
    canonical_json_double(st->out, neg ? -v : v);
    return true;
}

static bool parse_literal(struct state *st, const char *lit, size_t n)
{
    if ((size_t)(st->end - st->p) < n || memcmp(st->p, lit, n) != 0) {
        /* point at the first byte that differs */
        size_t i = 0;
        while (st->p + i < st->end && i < n && st->p[i] == (unsigned char)lit[i])
            i++;
        st->p += i;
        return fail_char(st, "in literal");
    }
    st->p += n;
    sb_append(st->out, lit, n);
    return true;
}

static bool push(struct state *st, bool object)
{
    if (st->depth >= CANONICAL_JSON_MAX_DEPTH)
        return fail(st, "exceeded max depth %d", CANONICAL_JSON_MAX_DEPTH);
    if (st->depth == st->capstack) {
        st->capstack = st->capstack ? st->capstack * 2 : 16;
        st->stack = xrealloc(st->stack, st->capstack * sizeof *st->stack);
    }
    struct frame *f = &st->stack[st->depth++];
    f->object = object;
    f->sorted = true;
    f->out_start = st->out->len;
    f->mem_start = st->nmem;
    f->keys_start = st->keys.len;
    f->count = 0;
    sb_putc(st->out, object ? '{' : '[');
    st->p++;
    return true;
}

static int member_cmp(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    if (x->key_len != y->key_len)
        return x->key_len < y->key_len ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Close the object on top of the stack: sort and deduplicate its members unless they came in
 * strictly ascending order. */
static void close_object(struct state *st, struct frame *f)
{
    strbuf_t *out = st->out;
    if (f->sorted) {
        sb_putc(out, '}');
    } else {
        struct member *m = st->mem + f->mem_start;
        size_t n = st->nmem - f->mem_start;
        for (size_t i = 0; i < n; i++)
            m[i].key = st->keys.data + m[i].key_off;
        qsort(m, n, sizeof *m, member_cmp);
        strbuf_t *tmp = &st->scratch;
        sb_reset(tmp);
        sb_putc(tmp, '{');
        bool first = true;
        for (size_t i = 0; i < n; i++) {
            if (i + 1 < n && m[i].key_len == m[i + 1].key_len &&
                memcmp(m[i].key, m[i + 1].key, m[i].key_len) == 0)
                continue; /* a later duplicate wins */
            if (!first)
                sb_putc(tmp, ',');
            first = false;
            sb_append(tmp, out->data + m[i].text_off, m[i].text_len);
        }
        sb_putc(tmp, '}');
        out->len = f->out_start;
        sb_append(out, tmp->data, tmp->len);
    }
    st->nmem = f->mem_start;
    st->keys.len = f->keys_start;
}

/* Parse the key of the next member of object f (st->p on its quote) and the ':' after it. */
static bool begin_member(struct state *st, struct frame *f)
{
    if (st->p >= st->end || *st->p != '"')
        return fail_char(st, "looking for beginning of object key string");
    if (f->count)
        sb_putc(st->out, ',');
    if (st->nmem == st->capmem) {
        st->capmem = st->capmem ? st->capmem * 2 : 32;
        st->mem = xrealloc(st->mem, st->capmem * sizeof *st->mem);
    }
    struct member *m = &st->mem[st->nmem];
    m->text_off = st->out->len;
    m->key_off = st->keys.len;
    m->index = f->count;
    if (!parse_string(st, &st->keys))
        return false;
    m->key_len = st->keys.len - m->key_off;
    if (f->sorted && f->count) {
        const struct member *prev = m - 1;
        size_t n = prev->key_len < m->key_len ? prev->key_len : m->key_len;
        int c = memcmp(st->keys.data + prev->key_off, st->keys.data + m->key_off, n);
        if (c > 0 || (c == 0 && prev->key_len >= m->key_len))
            f->sorted = false;
    }
    st->nmem++;
    f->count++;
    skip_ws(st);
    if (st->p >= st->end || *st->p != ':')
        return fail_char(st, "after object key");
    st->p++;
    sb_putc(st->out, ':');
    return true;
}

static bool parse(struct state *st)
{
    for (;;) {
        /* A value is expected here. */
        skip_ws(st);
        if (st->p >= st->end)
            return fail(st, "unexpected end of JSON input");
        bool ok;
        switch (*st->p) {
        case '{':
            if (!push(st, true))
                return false;
            skip_ws(st);
            if (st->p < st->end && *st->p == '}') {
                st->p++;
                close_object(st, &st->stack[--st->depth]);
                break;
            }
            if (!begin_member(st, &st->stack[st->depth - 1]))
                return false;
            continue;
        case '[':
            if (!push(st, false))
                return false;
            skip_ws(st);
            if (st->p < st->end && *st->p == ']') {
                st->p++;
                st->depth--;
                sb_putc(st->out, ']');
                break;
            }
            st->stack[st->depth - 1].count = 1;
            continue;
        case '"':
            ok = parse_string(st, NULL);
            if (!ok)
                return false;
            break;
        case 't':
            if (!parse_literal(st, "true", 4))
                return false;
            break;
        case 'f':
            if (!parse_literal(st, "false", 5))
                return false;
            break;
        case 'n':
            if (!parse_literal(st, "null", 4))
                return false;
            break;
        default:
            if (*st->p == '-' || (*st->p >= '0' && *st->p <= '9')) {
                if (!parse_number(st))
                    return false;
                break;
            }
            return fail_char(st, "looking for beginning of value");
        }

        /* A value just ended: close containers until one wants another value. */
        for (;;) {
            skip_ws(st);
            if (st->depth == 0) {
                if (st->p != st->end)
                    return fail_char(st, "after top-level value");
                return true;
            }
            struct frame *f = &st->stack[st->depth - 1];
            if (f->object) {
                struct member *m = &st->mem[st->nmem - 1];
                m->text_len = st->out->len - m->text_off;
                if (st->p < st->end && *st->p == ',') {
                    st->p++;
                    skip_ws(st);
                    if (!begin_member(st, f))
                        return false;
                    break;
                }
                if (st->p < st->end && *st->p == '}') {
                    st->p++;
                    st->depth--;
                    close_object(st, f);
                    continue;
                }
                return fail_char(st, "after object key:value pair");
            }
            if (st->p < st->end && *st->p == ',') {
                st->p++;
                sb_putc(st->out, ',');
                f->count++;
                break;
            }
            if (st->p < st->end && *st->p == ']') {
                st->p++;
                st->depth--;
                sb_putc(st->out, ']');
                continue;
            }
            return fail_char(st, "after array element");
        }
    }
}

bool canonical_json(const char *json, size_t len, strbuf_t *out, char *err, size_t errlen)
{
    struct state st;
    memset(&st, 0, sizeof st);
    st.start = st.p = (const unsigned char *)(json ? json : "");
    st.end = st.p + (json ? len : 0);
    st.out = out;
    st.err = err;
    st.errlen = errlen;
    sb_init(&st.keys);
    sb_init(&st.scratch);
    size_t mark = out->len;
    if (err && errlen)
        err[0] = '\0';
    sb_reserve(out, len);
    bool ok = parse(&st);
    if (!ok) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
    }
    sb_free(&st.keys);
    sb_free(&st.scratch);
    free(st.mem);
    free(st.stack);
    return ok;
}
