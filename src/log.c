#include "log.h"
#include "strbuf.h"
#include "swar.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static enum log_format format = LOG_FORMAT_TEXT;
static const char *role = "oversyncd";

static const char *const level_names[] = { "debug", "info", "warn", "error" };

/* The process id, read once per process: getpid() is a system call, and a worker writes a line
 * per request. A forked child reads its own (atfork handler). */
static pid_t cached_pid;
static bool atfork_registered;

static void forget_pid(void)
{
    cached_pid = 0;
}

static pid_t log_pid(void)
{
    if (cached_pid == 0)
        cached_pid = getpid();
    return cached_pid;
}

/* Request lines of a busy worker are gathered and written together (log_buffer_requests): at most
 * BUFFER_LIMIT bytes, which is PIPE_BUF, so one write still never interleaves with another
 * process's line on a pipe, and never older than BUFFER_AGE_NS. */
#define BUFFER_LIMIT 4096
#define BUFFER_AGE_NS 1000000000LL

static bool buffering;
static char pending[BUFFER_LIMIT];
static size_t pending_len;
static int64_t pending_since;      /* CLOCK_MONOTONIC of the oldest buffered line */

static strbuf_t line = STRBUF_INIT;   /* reused for every line */

void log_setup(enum log_level level, enum log_format fmt)
{
    min_level = level;
    format = fmt;
    if (!atfork_registered) {
        pthread_atfork(NULL, NULL, forget_pid);
        atfork_registered = true;
    }
}

void log_set_role(const char *r)
{
    role = r;
    forget_pid();
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

static void write_all(const char *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(STDERR_FILENO, p + off, n - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

void log_flush(void)
{
    if (pending_len > 0) {
        write_all(pending, pending_len);
        pending_len = 0;
    }
}

void log_buffer_requests(bool on)
{
    if (!on)
        log_flush();
    buffering = on;
}

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ms with three decimals, as "%.3f" writes it for the values a duration takes. */
static void sb_put_ms(strbuf_t *sb, double ms)
{
    if (!(ms >= 0) || ms > 1e12) {          /* NaN, negative or absurd: let printf say it */
        sb_printf(sb, "%.3f", ms);
        return;
    }
    uint64_t us = (uint64_t)(ms * 1000.0 + 0.5);
    char buf[32];
    size_t n = put_u64(buf, us / 1000);
    buf[n++] = '.';
    unsigned frac = (unsigned)(us % 1000);
    buf[n++] = (char)('0' + frac / 100);
    buf[n++] = (char)('0' + frac / 10 % 10);
    buf[n++] = (char)('0' + frac % 10);
    sb_append(sb, buf, n);
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ": the part up to the seconds is formatted once per second. */
static void sb_put_timestamp(strbuf_t *sb)
{
    static time_t cached_sec = (time_t)-1;
    static char cached[24];
    static size_t cached_len;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        cached_len = strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = ts.tv_sec;
    }
    char buf[32];
    memcpy(buf, cached, cached_len);
    size_t n = cached_len;
    unsigned ms = (unsigned)(ts.tv_nsec / 1000000);
    buf[n++] = '.';
    buf[n++] = (char)('0' + ms / 100);
    buf[n++] = (char)('0' + ms / 10 % 10);
    buf[n++] = (char)('0' + ms % 10);
    buf[n++] = 'Z';
    sb_append(sb, buf, n);
}

static bool needs_escape(unsigned char c, bool quoted)
{
    return c < 0x20 || c == 0x7f || (quoted && (c == '"' || c == '\\'));
}

/* Appends s so that no byte below 0x20 and no DEL reaches the log as such, whatever its source
 * (a user id, a path, a database message): a value can neither start a forged line nor send a
 * terminal escape sequence. They become \n, \r, \t, else \u00XX in JSON lines and \xXX in text
 * lines. quoted: between double quotes, with " and \ escaped too (a JSON string, or a quoted
 * text value). Runs of plain bytes are copied at once. */
static void put_escaped(strbuf_t *sb, const char *s, bool quoted)
{
    static const char hex[] = "0123456789abcdef";
    if (quoted)
        sb_putc(sb, '"');
    const unsigned char *p = (const unsigned char *)s;
    for (;;) {
        const unsigned char *run = p;
        while (*p && !needs_escape(*p, quoted))
            p++;
        if (p > run)
            sb_append(sb, (const char *)run, (size_t)(p - run));
        if (!*p)
            break;
        unsigned char c = *p++;
        if (c == '\n')
            sb_append(sb, "\\n", 2);
        else if (c == '\r')
            sb_append(sb, "\\r", 2);
        else if (c == '\t')
            sb_append(sb, "\\t", 2);
        else if (c < 0x20 || c == 0x7f) {
            char e[6];
            size_t n;
            if (format == LOG_FORMAT_JSON) {
                memcpy(e, "\\u00", 4);
                n = 4;
            } else {
                memcpy(e, "\\x", 2);
                n = 2;
            }
            e[n++] = hex[c >> 4];
            e[n++] = hex[c & 15];
            sb_append(sb, e, n);
        } else {
            char e[2] = { '\\', (char)c };
            sb_append(sb, e, 2);
        }
    }
    if (quoted)
        sb_putc(sb, '"');
}

static void line_start(strbuf_t *sb, enum log_level level, const char *msg)
{
    const bool json = format == LOG_FORMAT_JSON;
    sb_reset(sb);
    if (json) {
        sb_puts(sb, "{\"ts\":\"");
        sb_put_timestamp(sb);
        sb_puts(sb, "\",\"level\":\"");
        sb_puts(sb, level_names[level]);
        sb_puts(sb, "\",\"pid\":");
        sb_put_i64(sb, (long long)log_pid());
        sb_puts(sb, ",\"role\":");
    } else {
        sb_put_timestamp(sb);
        sb_putc(sb, ' ');
        sb_puts(sb, level_names[level]);
        sb_putc(sb, ' ');
    }
    put_escaped(sb, role, json);
    if (json) {
        sb_puts(sb, ",\"msg\":");
    } else {
        sb_puts(sb, " [");
        sb_put_i64(sb, (long long)log_pid());
        sb_puts(sb, "] ");
    }
    put_escaped(sb, msg, json);
}

/* Ends the line and writes it: one write per line (or per gathered block of request lines), so
 * lines from several workers never interleave. */
static void line_end(strbuf_t *sb, bool request)
{
    if (format == LOG_FORMAT_JSON)
        sb_putc(sb, '}');
    sb_putc(sb, '\n');
    if (!request || !buffering) {
        log_flush();
        write_all(sb->data, sb->len);
        return;
    }
    int64_t now = monotonic_ns();
    if (pending_len > 0 && (pending_len + sb->len > BUFFER_LIMIT || now - pending_since >= BUFFER_AGE_NS))
        log_flush();
    if (sb->len > BUFFER_LIMIT) {
        write_all(sb->data, sb->len);
        return;
    }
    if (pending_len == 0)
        pending_since = now;
    memcpy(pending + pending_len, sb->data, sb->len);
    pending_len += sb->len;
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
    line_start(&line, level, msg);
    line_end(&line, false);
}

/* What a byte asks of a value: ESC_ALWAYS escaped (control bytes, DEL), ESC_QUOTED escaped
 * between quotes (" and \), QUOTE_TEXT makes a text value quoted (space, " and =). */
enum { ESC_ALWAYS = 1, ESC_QUOTED = 2, QUOTE_TEXT = 4 };

static unsigned byte_class(unsigned char c)
{
    if (c < 0x20 || c == 0x7f)
        return ESC_ALWAYS;
    if (c == '"')
        return ESC_QUOTED | QUOTE_TEXT;
    if (c == '\\')
        return ESC_QUOTED;
    return c == ' ' || c == '=' ? QUOTE_TEXT : 0;
}

/* key and value: one pass over the value says whether it is quoted (a JSON string always; a
 * text value when empty or holding a space, '"', '=' or a control byte) and whether anything in
 * it is escaped; the usual value (an id, a path) is copied as it is. */
static void field_str(strbuf_t *sb, const char *key, const char *val)
{
    if (!val)
        return;
    const bool json = format == LOG_FORMAT_JSON;
    unsigned acc = 0;
    size_t len = strlen(val), i = 0;
    /* eight bytes at a time while none is a control byte, a space, '"', '\\', '=' or DEL (the
     * usual id or path); the bytes from the first such word on one by one */
    for (; i + 8 <= len; i += 8) {
        uint64_t w = swar_load(val + i);
        if (swar_below(w, 0x21) | swar_eq(w, '"') | swar_eq(w, '\\') | swar_eq(w, '=') | swar_eq(w, 0x7f))
            break;
    }
    for (; i < len; i++)
        acc |= byte_class((unsigned char)val[i]);
    bool quote = json || len == 0 || (acc & (ESC_ALWAYS | QUOTE_TEXT));
    if (json) {
        sb_puts(sb, ",\"");
        sb_puts(sb, key);
        sb_puts(sb, "\":");
    } else {
        sb_putc(sb, ' ');
        sb_puts(sb, key);
        sb_putc(sb, '=');
    }
    if (acc & (ESC_ALWAYS | (quote ? ESC_QUOTED : 0))) {
        put_escaped(sb, val, quote);
        return;
    }
    if (quote)
        sb_putc(sb, '"');
    sb_append(sb, val, len);
    if (quote)
        sb_putc(sb, '"');
}

void log_request(const struct log_request *r)
{
    enum log_level level = r->status >= 500 ? LOG_ERROR : LOG_INFO;
    if (level < min_level)
        return;
    strbuf_t *sb = &line;
    line_start(sb, level, "request");
    field_str(sb, "request_id", r->request_id);
    field_str(sb, "method", r->method);
    field_str(sb, "path", r->path);
    field_str(sb, "route", r->route);
    field_str(sb, "user", r->user);
    field_str(sb, "device", r->device);
    sb_puts(sb, format == LOG_FORMAT_JSON ? ",\"status\":" : " status=");
    sb_put_i64(sb, r->status);
    sb_puts(sb, format == LOG_FORMAT_JSON ? ",\"duration_ms\":" : " duration_ms=");
    sb_put_ms(sb, r->duration_ms);
    field_str(sb, "error", r->error);
    line_end(sb, true);
}
