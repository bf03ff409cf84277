/* One line per event on stderr, as text or JSON. Never a token or a payload. */
#ifndef OVERSYNCD_LOG_H
#define OVERSYNCD_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

void log_setup(enum log_level level, enum log_format format);
void log_set_role(const char *role);                 /* "master", "worker" ... */
bool log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *log_level_name(enum log_level level);
bool log_level_parse(const char *s, enum log_level *out);

struct log_request {
    const char *request_id;
    const char *method;
    const char *path;
    const char *route;       /* matched route or "-" */
    const char *user;        /* NULL when not authenticated */
    const char *device;
    int status;
    double duration_ms;
    const char *error;       /* error code of the answer, NULL on success */
};
void log_request(const struct log_request *r);

/* A worker between requests: with on, request lines are gathered (at most 4096 bytes, none older
 * than a second) and written together; every other line, log_flush() and log_buffer_requests(false)
 * write what is gathered first. A worker calls log_flush() before it waits for a connection. */
void log_buffer_requests(bool on);
void log_flush(void);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
