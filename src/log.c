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

static void line_start(strbuf_t *sb, enum log_level level, const char *msg)
{
    char ts[40];
    timestamp(ts, sizeof ts);
    if (format == LOG_FORMAT_JSON) {
        sb_printf(sb, "{\"ts\":\"%s\",\"level\":\"%s\",\"pid\":%d,\"role\":", ts, level_names[level],
                  (int)getpid());
        sb_json_str(sb, role);
        sb_puts(sb, ",\"msg\":");
        sb_json_str(sb, msg);
    } else {
        sb_printf(sb, "%s %s %s[%d] %s", ts, level_names[level], role, (int)getpid(), msg);
    }
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
        sb_json_str(sb, val);
    } else {
        bool quote = val[0] == '\0' || strpbrk(val, " \"=") != NULL;
        sb_printf(sb, " %s=", key);
        if (quote)
            sb_json_str(sb, val);
        else
            sb_puts(sb, val);
    }
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
