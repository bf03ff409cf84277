#include "log.h"
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static enum log_format format = LOG_FORMAT_TEXT;
static const char *role = "oversyncd";

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_setup(enum log_level level, enum log_format fmt)
{
    min_level = level;
    format = fmt;
}

void log_set_role(const char *r)
{
    role = r;
}

bool log_enabled(enum log_level level)
{
    return level >= min_level;
}

const char *log_level_name(enum log_level level)
{
    return level_names[level];
}

bool log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    if (strcasecmp(s, "warning") == 0) {
        *out = LOG_WARN;
        return true;
    }
    return false;
}

static void timestamp(char *buf, size_t n)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, n - k, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

/* Appends s so that no byte below 0x20 and no DEL reaches the log as such, whatever its source
 * (a user id, a path, a database message): a value can neither start a forged line nor send a
 * terminal escape sequence. They become \n, \r, \t, else \u00XX in JSON lines and \xXX in text
 * lines. quoted: between double quotes, with " and \ escaped too (a JSON string, or a quoted
 * text value). */
static void put_escaped(strbuf_t *sb, const char *s, bool quoted)
{
    if (quoted)
        sb_putc(sb, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '\n')
            sb_puts(sb, "\\n");
        else if (c == '\r')
            sb_puts(sb, "\\r");
        else if (c == '\t')
            sb_puts(sb, "\\t");
        else if ((c < 0x20 || c == 0x7f) && format == LOG_FORMAT_JSON)
            sb_printf(sb, "\\u%04x", c);
        else if (c < 0x20 || c == 0x7f)
            sb_printf(sb, "\\x%02x", c);
        else if (quoted && (c == '"' || c == '\\'))
            sb_printf(sb, "\\%c", c);
        else
            sb_putc(sb, (char)c);
    }
    if (quoted)
        sb_putc(sb, '"');
}

static void line_start(strbuf_t *sb, enum log_level level, const char *msg)
{
    char ts[40];
    timestamp(ts, sizeof ts);
    const bool json = format == LOG_FORMAT_JSON;
    if (json)
        sb_printf(sb, "{\"ts\":\"%s\",\"level\":\"%s\",\"pid\":%d,\"role\":", ts, level_names[level],
                  (int)getpid());
    else
        sb_printf(sb, "%s %s ", ts, level_names[level]);
    put_escaped(sb, role, json);
    if (json)
        sb_puts(sb, ",\"msg\":");
    else
        sb_printf(sb, "[%d] ", (int)getpid());
    put_escaped(sb, msg, json);
}

static void line_end(strbuf_t *sb)
{
    if (format == LOG_FORMAT_JSON)
        sb_putc(sb, '}');
    sb_putc(sb, '\n');
    /* one write per line so lines from several workers never interleave */
    ssize_t off = 0;
    while ((size_t)off < sb->len) {
        ssize_t w = write(STDERR_FILENO, sb->data + off, sb->len - (size_t)off);
        if (w <= 0)
            break;
        off += w;
    }
    sb_free(sb);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    strbuf_t sb = STRBUF_INIT;
    line_start(&sb, level, msg);
    line_end(&sb);
}

static void field_str(strbuf_t *sb, const char *key, const char *val)
{
    if (!val)
        return;
    if (format == LOG_FORMAT_JSON) {
        sb_printf(sb, ",\"%s\":", key);
        put_escaped(sb, val, true);
        return;
    }
    bool quote = val[0] == '\0' || strpbrk(val, " \"=") != NULL;
    for (const unsigned char *p = (const unsigned char *)val; *p && !quote; p++)
        quote = *p < 0x20 || *p == 0x7f;
    sb_printf(sb, " %s=", key);
    put_escaped(sb, val, quote);
}

void log_request(const struct log_request *r)
{
    enum log_level level = r->status >= 500 ? LOG_ERROR : LOG_INFO;
    if (level < min_level)
        return;
    strbuf_t sb = STRBUF_INIT;
    line_start(&sb, level, "request");
    field_str(&sb, "request_id", r->request_id);
    field_str(&sb, "method", r->method);
    field_str(&sb, "path", r->path);
    field_str(&sb, "route", r->route);
    field_str(&sb, "user", r->user);
    field_str(&sb, "device", r->device);
    if (format == LOG_FORMAT_JSON)
        sb_printf(&sb, ",\"status\":%d,\"duration_ms\":%.3f", r->status, r->duration_ms);
    else
        sb_printf(&sb, " status=%d duration_ms=%.3f", r->status, r->duration_ms);
    field_str(&sb, "error", r->error);
    line_end(&sb);
}
