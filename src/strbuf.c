#include "strbuf.h"
#include "arena.h"
#include "xalloc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_init(strbuf_t *sb)
{
    sb->data = NULL;
    sb->len = sb->cap = 0;
    sb->arena = NULL;
}

void sb_free(strbuf_t *sb)
{
    struct arena *a = sb->arena;
    if (!a)
        free(sb->data);
    sb_init(sb);
    sb->arena = a;
}

void sb_reset(strbuf_t *sb)
{
    sb->len = 0;
    if (sb->data)
        sb->data[0] = '\0';
}

void sb_reserve(strbuf_t *sb, size_t extra)
{
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap)
        return;
    size_t cap = sb->cap ? sb->cap : 256;
    while (cap < need)
        cap *= 2;
    if (sb->arena) {
        /* the old block stays in the arena until it is reset: growth by doubling wastes at most
         * as much as the buffer holds */
        char *p = arena_alloc(sb->arena, cap);
        if (sb->len)
            memcpy(p, sb->data, sb->len + 1);
        sb->data = p;
    } else {
        sb->data = xrealloc(sb->data, cap);
    }
    sb->cap = cap;
}

void sb_append(strbuf_t *sb, const char *s, size_t n)
{
    sb_reserve(sb, n);
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

size_t put_u64(char *buf, unsigned long long v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

void sb_put_u64(strbuf_t *sb, unsigned long long v)
{
    char buf[24];
    sb_append(sb, buf, put_u64(buf, v));
}

void sb_put_i64(strbuf_t *sb, long long v)
{
    char buf[24];
    size_t n = 0;
    unsigned long long u = (unsigned long long)v;
    if (v < 0) {
        buf[n++] = '-';
        u = 0ull - u;
    }
    n += put_u64(buf + n, u);
    sb_append(sb, buf, n);
}

void sb_puts(strbuf_t *sb, const char *s)
{
    sb_append(sb, s, strlen(s));
}

void sb_putc(strbuf_t *sb, char c)
{
    sb_reserve(sb, 1);
    sb->data[sb->len++] = c;
    sb->data[sb->len] = '\0';
}

void sb_vprintf(strbuf_t *sb, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n <= 0)
        return;
    sb_reserve(sb, (size_t)n);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    sb->len += (size_t)n;
}

void sb_printf(strbuf_t *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(sb, fmt, ap);
    va_end(ap);
}

void sb_json_strn(strbuf_t *sb, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sb_reserve(sb, n + 2);
    sb_putc(sb, '"');
    size_t run = 0; /* bytes copied verbatim in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sb_append(sb, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': sb_append(sb, "\\\"", 2); break;
        case '\\': sb_append(sb, "\\\\", 2); break;
        case '\n': sb_append(sb, "\\n", 2); break;
        case '\r': sb_append(sb, "\\r", 2); break;
        case '\t': sb_append(sb, "\\t", 2); break;
        default: {
            char u[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            sb_append(sb, u, 6);
        }
        }
    }
    sb_append(sb, s + run, n - run);
    sb_putc(sb, '"');
}

void sb_json_str(strbuf_t *sb, const char *s)
{
    sb_json_strn(sb, s ? s : "", s ? strlen(s) : 0);
}

const char *sb_cstr(strbuf_t *sb)
{
    return sb->data ? sb->data : "";
}

void sb_pg_array_str(strbuf_t *sb, const char *s)
{
    if (sb->len > 1)
        sb_putc(sb, ',');
    sb_putc(sb, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            sb_putc(sb, '\\');
        sb_putc(sb, *s);
    }
    sb_putc(sb, '"');
}

enum sb_read_result sb_read_file(strbuf_t *sb, const char *path, size_t max)
{
    sb_reset(sb);
    FILE *f = fopen(path, "rb");
    if (!f)
        return SB_READ_CANNOT_OPEN;
    sb_reserve(sb, max + 1);
    size_t n = fread(sb->data, 1, max + 1, f);
    bool failed = ferror(f);
    int saved_errno = errno;
    fclose(f);
    errno = saved_errno;
    sb->len = n > max ? max : n;
    sb->data[sb->len] = '\0';
    return failed ? SB_READ_ERROR : n > max ? SB_READ_TOO_LARGE : SB_READ_OK;
}

void err_set(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void str_trim_right(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
}
