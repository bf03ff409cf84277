/* A strict, allocation-free JSON scanner (RFC 8259) for request bodies. It validates the whole
 * text once and lets the caller walk objects and arrays by raw spans, so a payload can be handed
 * to PostgreSQL exactly as the client sent it instead of being parsed into a tree and printed
 * again. It also notes what PostgreSQL's jsonb would refuse to store (\u0000, unpaired
 * surrogates, numbers beyond numeric's range), so such a payload is refused per change instead
 * of failing the whole batch. */
#ifndef OVERSYNCD_JSON_SCAN_H
#define OVERSYNCD_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"

enum json_type { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json_span {
    enum json_type type;
    const char *start;     /* first byte of the value (the quote for a string) */
    size_t len;            /* raw length */
    bool pg_unsafe;        /* somewhere inside: something jsonb cannot store */
};

#define JSON_MAX_DEPTH 256

/* Validates text[0..len) as one JSON value surrounded by optional white space. On failure writes
 * a message with the byte offset into err and returns false. */
bool json_validate(const char *text, size_t len, struct json_span *root, char *err, size_t errlen);

/* Where the larger values (JSON_SKIP_MIN bytes or more: objects, arrays, strings) of a validated
 * text end, recorded by json_validate_skips, so that an iteration steps over such a value at once
 * instead of scanning it again: a request body is walked at several depths (the changes, each
 * change's members, each payload's members), and each walk otherwise scans every value it steps
 * over. At most max_entries values are recorded (the first to end; those after are scanned); the
 * table comes from the arena. */
#define JSON_SKIP_MIN 64
struct json_skips {
    const char *base;
    size_t len;
    uint32_t *slots;       /* pairs: start offset + 1 (0: empty), end offset | unsafe << 31 */
    size_t mask;           /* mask + 1 pairs */
    size_t n, max;
};
bool json_validate_skips(const char *text, size_t len, struct json_span *root, struct json_skips *skips,
                         arena_t *arena, size_t max_entries, char *err, size_t errlen);

/* Iteration over an already validated object or array span. */
struct json_iter {
    const char *p;
    const char *end;
    const struct json_skips *skips;   /* NULL: every value is scanned */
};
void json_iter_init(struct json_iter *it, const struct json_span *container);
/* The same, stepping over the values skips has recorded (of the text it was made from). */
void json_iter_init_skips(struct json_iter *it, const struct json_span *container, const struct json_skips *skips);
/* Next member of an object: key (a STRING span) and value. false at the end. */
bool json_iter_member(struct json_iter *it, struct json_span *key, struct json_span *value);
/* Next element of an array. false at the end. */
bool json_iter_element(struct json_iter *it, struct json_span *value);

/* String helpers for validated STRING spans. */
char *json_string_dup(arena_t *arena, const struct json_span *s);      /* unescaped, NUL-terminated */
bool json_string_eq(const struct json_span *s, const char *literal);   /* unescaped comparison */
/* Integer in int64 range with no fraction or exponent. */
bool json_int64(const struct json_span *s, long long *out);

#endif
