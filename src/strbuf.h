/* A growable byte buffer, used to build JSON answers, SQL array literals and log lines. */
#ifndef OVERSYNCD_STRBUF_H
#define OVERSYNCD_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct arena;

typedef struct strbuf {
    char *data;   /* always NUL-terminated once anything was appended */
    size_t len;
    size_t cap;
    struct arena *arena;   /* NULL: malloc'd, sb_free releases it; else it lives in this arena */
} strbuf_t;

#define STRBUF_INIT { NULL, 0, 0, NULL }
/* A buffer whose memory belongs to arena a: it needs no sb_free, and its data stays valid until
 * the arena is reset (a request's answer, an array literal handed to libpq). */
#define STRBUF_ARENA(a) { NULL, 0, 0, (a) }

void sb_init(strbuf_t *sb);
void sb_free(strbuf_t *sb);              /* no-op for an arena buffer (forgets it) */
void sb_reset(strbuf_t *sb);                 /* keep capacity, empty contents */
void sb_reserve(strbuf_t *sb, size_t extra);
void sb_append(strbuf_t *sb, const char *s, size_t n);
void sb_puts(strbuf_t *sb, const char *s);
void sb_putc(strbuf_t *sb, char c);
void sb_printf(strbuf_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_vprintf(strbuf_t *sb, const char *fmt, va_list ap);
/* Decimal of v, as printf's %llu / %lld would write it (without printf's cost). */
void sb_put_u64(strbuf_t *sb, unsigned long long v);
void sb_put_i64(strbuf_t *sb, long long v);
/* Decimal of v into buf (at least 20 bytes; no terminator); returns its length. */
size_t put_u64(char *buf, unsigned long long v);
/* Append s as a JSON string literal, quotes included. */
void sb_json_str(strbuf_t *sb, const char *s);
void sb_json_strn(strbuf_t *sb, const char *s, size_t n);
const char *sb_cstr(strbuf_t *sb);           /* "" when empty */
/* Append s as one quoted element of a PostgreSQL array literal whose '{' is already in sb. */
void sb_pg_array_str(strbuf_t *sb, const char *s);
/* Reads the file at path into sb (replacing its contents), refusing more than max bytes. */
enum sb_read_result { SB_READ_OK, SB_READ_CANNOT_OPEN, SB_READ_ERROR, SB_READ_TOO_LARGE };
enum sb_read_result sb_read_file(strbuf_t *sb, const char *path, size_t max); /* errno tells why */
/* The reason of a failure, formatted into the caller's err buffer (errlen bytes); nothing when
 * err is NULL or errlen 0. */
void err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Remove trailing new lines and spaces (PostgreSQL's messages end with one). */
void str_trim_right(char *s);

#endif
