#include "json_scan.h"
#include "swar.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PostgreSQL numeric limits (measured on 15): digits before and after the decimal point. */
#define PG_MAX_WEIGHT_DIGITS 131072
#define PG_MAX_SCALE 16383

struct scanner {
    const char *p;
    const char *end;
    const char *base;
    char *err;
    size_t errlen;
    bool failed;
    struct json_skips *record;          /* json_validate_skips: note the larger values' ends */
    const struct json_skips *lookup;    /* an iteration: step over the values noted */
};

static size_t skip_slot(const struct json_skips *k, uint32_t off)
{
    return (size_t)((off * 0x9E3779B1u) >> 7) & k->mask;
}

/* Records where the value at start (out) ends, when it is large and the table has room. */
static void skip_note(struct scanner *s, const struct json_span *out)
{
    struct json_skips *k = s->record;
    if (!k || out->len < JSON_SKIP_MIN || k->n >= k->max)
        return;
    uint32_t off = (uint32_t)(out->start - k->base);
    size_t i = skip_slot(k, off);
    while (k->slots[2 * i])
        i = (i + 1) & k->mask;
    k->slots[2 * i] = off + 1;
    k->slots[2 * i + 1] = (uint32_t)(off + out->len) | (out->pg_unsafe ? 0x80000000u : 0);
    k->n++;
}

/* The recorded value starting at p, into out; false when it is not recorded. */
static bool skip_find(const struct json_skips *k, const char *p, struct json_span *out)
{
    if (!k || !k->n || p < k->base || p >= k->base + k->len)
        return false;
    uint32_t off = (uint32_t)(p - k->base);
    for (size_t i = skip_slot(k, off); k->slots[2 * i]; i = (i + 1) & k->mask) {
        if (k->slots[2 * i] != off + 1)
            continue;
        uint32_t e = k->slots[2 * i + 1];
        out->type = *p == '{' ? JSON_OBJECT : *p == '[' ? JSON_ARRAY : JSON_STRING;
        out->start = p;
        out->len = (e & 0x7fffffffu) - off;
        out->pg_unsafe = (e & 0x80000000u) != 0;
        return true;
    }
    return false;
}

static bool fail(struct scanner *s, const char *what)
{
    if (!s->failed)
        snprintf(s->err, s->errlen, "invalid JSON at byte %zu: %s", (size_t)(s->p - s->base), what);
    s->failed = true;
    return false;
}

static void skip_ws(struct scanner *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* Length of the valid UTF-8 sequence at p (1..4), 0 when invalid. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static bool scan_string(struct scanner *s, struct json_span *out)
{
    out->type = JSON_STRING;
    out->start = s->p;
    s->p++; /* opening quote */
    for (;;) {
        /* the usual bytes (printable ASCII but the quote and the backslash) need no check but
         * this one: a payload's text is mostly such runs, and is scanned again each time an
         * iteration steps over it */
        while (s->end - s->p >= 8) {
            /* eight bytes at a time: any byte >= 0x80, < 0x20, '"' or '\\' stops the run */
            uint64_t w = swar_load(s->p);
            if ((w & SWAR_HIGHS) | swar_below(w, 0x20) | swar_eq(w, '"') | swar_eq(w, '\\'))
                break;
            s->p += 8;
        }
        while (s->p < s->end) {
            unsigned char b = (unsigned char)*s->p;
            if (b < 0x20 || b >= 0x80 || b == '"' || b == '\\')
                break;
            s->p++;
        }
        if (s->p >= s->end)
            return fail(s, "unterminated string");
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            s->p++;
            break;
        }
        if (c < 0x20)
            return fail(s, "control character in string");
        if (c == '\\') {
            if (s->end - s->p < 2)
                return fail(s, "unterminated escape");
            char e = s->p[1];
            if (e == 'u') {
                if (s->end - s->p < 6)
                    return fail(s, "truncated \\u escape");
                int v = hex4(s->p + 2);
                if (v < 0)
                    return fail(s, "bad \\u escape");
                s->p += 6;
                if (v == 0) {
                    out->pg_unsafe = true;
                } else if (v >= 0xD800 && v <= 0xDBFF) {
                    int lo = s->end - s->p >= 6 && s->p[0] == '\\' && s->p[1] == 'u' ? hex4(s->p + 2) : -1;
                    if (lo >= 0xDC00 && lo <= 0xDFFF)
                        s->p += 6;
                    else
                        out->pg_unsafe = true;
                } else if (v >= 0xDC00 && v <= 0xDFFF) {
                    out->pg_unsafe = true;
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == '\0')
                return fail(s, "bad escape");
            s->p += 2;
            continue;
        }
        size_t n = utf8_len((const unsigned char *)s->p, (const unsigned char *)s->end);
        if (!n)
            return fail(s, "invalid UTF-8");
        s->p += n;
    }
    out->len = (size_t)(s->p - out->start);
    skip_note(s, out);
    return true;
}

static bool scan_number(struct scanner *s, struct json_span *out)
{
    out->type = JSON_NUMBER;
    out->start = s->p;
    const char *p = s->p;
    if (p < s->end && *p == '-')
        p++;
    if (p >= s->end || !(*p >= '0' && *p <= '9')) {
        s->p = p;
        return fail(s, "bad number");
    }
    long intdigits = 0, fracdigits = 0;
    if (*p == '0') {
        p++;
    } else {
        while (p < s->end && *p >= '0' && *p <= '9') {
            p++;
            intdigits++;
        }
    }
    if (p < s->end && *p == '.') {
        p++;
        if (p >= s->end || !(*p >= '0' && *p <= '9')) {
            s->p = p;
            return fail(s, "bad number fraction");
        }
        while (p < s->end && *p >= '0' && *p <= '9') {
            p++;
            fracdigits++;
        }
    }
    long exp = 0;
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        p++;
        bool neg = false;
        if (p < s->end && (*p == '+' || *p == '-'))
            neg = *p++ == '-';
        if (p >= s->end || !(*p >= '0' && *p <= '9')) {
            s->p = p;
            return fail(s, "bad number exponent");
        }
        while (p < s->end && *p >= '0' && *p <= '9') {
            if (exp < 100000000)
                exp = exp * 10 + (*p - '0');
            p++;
        }
        if (neg)
            exp = -exp;
    }
    if (intdigits + exp > PG_MAX_WEIGHT_DIGITS || fracdigits - exp > PG_MAX_SCALE)
        out->pg_unsafe = true;
    s->p = p;
    out->len = (size_t)(p - out->start);
    return true;
}

static bool scan_literal(struct scanner *s, const char *word, enum json_type t, struct json_span *out)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return fail(s, "unexpected character");
    out->type = t;
    out->start = s->p;
    out->len = n;
    s->p += n;
    return true;
}

static bool scan_value(struct scanner *s, struct json_span *out, int depth);

static bool scan_container(struct scanner *s, struct json_span *out, int depth)
{
    bool object = *s->p == '{';
    char close = object ? '}' : ']';
    out->type = object ? JSON_OBJECT : JSON_ARRAY;
    out->start = s->p;
    if (depth >= JSON_MAX_DEPTH)
        return fail(s, "nesting too deep");
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        out->len = (size_t)(s->p - out->start);
        return true;
    }
    for (;;) {
        struct json_span child = { 0 };
        if (object) {
            skip_ws(s);
            if (s->p >= s->end || *s->p != '"')
                return fail(s, "expected a member name");
            if (!scan_string(s, &child))
                return false;
            out->pg_unsafe |= child.pg_unsafe;
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return fail(s, "expected ':'");
            s->p++;
            memset(&child, 0, sizeof child);
        }
        if (!scan_value(s, &child, depth + 1))
            return false;
        out->pg_unsafe |= child.pg_unsafe;
        skip_ws(s);
        if (s->p >= s->end)
            return fail(s, "unterminated container");
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p == close) {
            s->p++;
            break;
        }
        return fail(s, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    out->len = (size_t)(s->p - out->start);
    skip_note(s, out);
    return true;
}

static bool scan_value(struct scanner *s, struct json_span *out, int depth)
{
    skip_ws(s);
    out->pg_unsafe = false;
    if (s->p >= s->end)
        return fail(s, "unexpected end of input");
    switch (*s->p) {
    case '{':
    case '[':
        if (s->lookup && skip_find(s->lookup, s->p, out)) {
            s->p += out->len;
            return true;
        }
        return scan_container(s, out, depth);
    case '"':
        if (s->lookup && skip_find(s->lookup, s->p, out)) {
            s->p += out->len;
            return true;
        }
        return scan_string(s, out);
    case 't': return scan_literal(s, "true", JSON_TRUE, out);
    case 'f': return scan_literal(s, "false", JSON_FALSE, out);
    case 'n': return scan_literal(s, "null", JSON_NULL, out);
    default: return scan_number(s, out);
    }
}

static bool validate(struct scanner *s, struct json_span *root)
{
    memset(root, 0, sizeof *root);
    if (!scan_value(s, root, 0))
        return false;
    skip_ws(s);
    if (s->p != s->end)
        return fail(s, "unexpected data after the JSON value");
    return true;
}

bool json_validate(const char *text, size_t len, struct json_span *root, char *err, size_t errlen)
{
    struct scanner s = { text, text + len, text, err, errlen, false, NULL, NULL };
    return validate(&s, root);
}

bool json_validate_skips(const char *text, size_t len, struct json_span *root, struct json_skips *skips,
                         arena_t *arena, size_t max_entries, char *err, size_t errlen)
{
    memset(skips, 0, sizeof *skips);
    skips->base = text;
    skips->len = len;
    /* offsets and the unsafe bit share 32 bits */
    if (len < 0x7fffffffu && max_entries > 0 && max_entries < ((size_t)1 << 26)) {
        size_t pairs = 16;
        while (pairs < 2 * max_entries)
            pairs *= 2;
        skips->slots = arena_calloc(arena, pairs * 2, sizeof *skips->slots);
        skips->mask = pairs - 1;
        skips->max = max_entries;
    }
    struct scanner s = { text, text + len, text, err, errlen, false, skips->max ? skips : NULL, NULL };
    return validate(&s, root);
}

void json_iter_init(struct json_iter *it, const struct json_span *c)
{
    it->p = c->start + 1;
    it->end = c->start + c->len - 1;
    it->skips = NULL;
}

void json_iter_init_skips(struct json_iter *it, const struct json_span *c, const struct json_skips *skips)
{
    json_iter_init(it, c);
    it->skips = skips;
}

static bool iter_next(struct json_iter *it, struct json_span *key, struct json_span *value)
{
    char scratch[8];
    struct scanner s = { it->p, it->end, it->p, scratch, sizeof scratch, false, NULL, it->skips };
    skip_ws(&s);
    if (s.p < s.end && *s.p == ',')
        s.p++;
    skip_ws(&s);
    if (s.p >= s.end)
        return false;
    if (key) {
        memset(key, 0, sizeof *key);
        if (!scan_string(&s, key))
            return false;
        skip_ws(&s);
        s.p++; /* ':' */
    }
    memset(value, 0, sizeof *value);
    if (!scan_value(&s, value, 0))
        return false;
    it->p = s.p;
    return true;
}

bool json_iter_member(struct json_iter *it, struct json_span *key, struct json_span *value)
{
    return iter_next(it, key, value);
}

bool json_iter_element(struct json_iter *it, struct json_span *value)
{
    return iter_next(it, NULL, value);
}

/* Appends the UTF-8 encoding of cp. */
static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Unescapes a validated string span into out (capacity ≥ span length); returns the length.
 * \u0000 and unpaired surrogates become U+FFFD so a C string never ends early. */
static size_t unescape(const struct json_span *sp, char *out)
{
    const char *p = sp->start + 1, *end = sp->start + sp->len - 1;
    size_t o = 0;
    while (p < end) {
        if (*p != '\\') {
            out[o++] = *p++;
            continue;
        }
        char e = p[1];
        p += 2;
        switch (e) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            uint32_t cp = (uint32_t)hex4(p);
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                int lo = hex4(p + 2);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (uint32_t)(lo - 0xDC00);
                    p += 6;
                }
            }
            if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
                cp = 0xFFFD;
            o += put_utf8(out + o, cp);
            break;
        }
        default: out[o++] = e; break;
        }
    }
    return o;
}

char *json_string_dup(arena_t *arena, const struct json_span *s)
{
    char *out = arena_alloc(arena, s->len + 1);
    size_t n = unescape(s, out);
    out[n] = '\0';
    return out;
}

bool json_string_eq(const struct json_span *s, const char *literal)
{
    size_t ll = strlen(literal);
    if (s->type != JSON_STRING)
        return false;
    if (!memchr(s->start, '\\', s->len))
        return s->len == ll + 2 && memcmp(s->start + 1, literal, ll) == 0;
    char buf[256];
    if (s->len > sizeof buf)
        return false;
    size_t n = unescape(s, buf);
    return n == ll && memcmp(buf, literal, ll) == 0;
}

bool json_int64(const struct json_span *s, long long *out)
{
    if (s->type != JSON_NUMBER)
        return false;
    for (size_t i = 0; i < s->len; i++)
        if (s->start[i] == '.' || s->start[i] == 'e' || s->start[i] == 'E')
            return false;
    char buf[32];
    if (s->len >= sizeof buf)
        return false;
    memcpy(buf, s->start, s->len);
    buf[s->len] = '\0';
    errno = 0;
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (errno == ERANGE || *end)
        return false;
    *out = v;
    return true;
}
