#include "http.h"
#include "../log.h"
#include "../xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *param(const struct http_io *io, const char *name)
{
    return io->param(io->ud, name);
}

/* Does path (len bytes) end with the route path, i.e. is it the route under some mount prefix?
 * A route segment "{name}" matches one non-empty path segment, whose bytes go to params (in
 * order). The prefix may not itself run through one of our namespaces: "/sync/metrics" is not
 * /metrics, or a web-server rule guarding /metrics could be walked around. */
static bool ends_with_route(arena_t *arena, const char *path, size_t len, const char *route,
                            const char *params[HTTP_MAX_PATH_PARAMS])
{
    if (len > 1 && path[len - 1] == '/')
        len--;                       /* "/health/" is "/health" */
    size_t ri = strlen(route), pi = len;
    const char *found[HTTP_MAX_PATH_PARAMS];
    size_t found_len[HTTP_MAX_PATH_PARAMS];
    int nfound = 0;
    while (ri > 0) {
        if (route[ri - 1] == '}') {
            size_t open = ri - 1;
            while (open > 0 && route[open] != '{')
                open--;
            size_t end = pi;
            while (pi > 0 && path[pi - 1] != '/')
                pi--;
            if (pi == end || nfound == HTTP_MAX_PATH_PARAMS)
                return false;
            found[nfound] = path + pi;
            found_len[nfound++] = end - pi;
            ri = open;
            continue;
        }
        if (pi == 0 || path[pi - 1] != route[ri - 1])
            return false;
        pi--;
        ri--;
    }
    size_t plen = pi;
    for (size_t i = 0; i < plen; i++) {
        if (path[i] != '/')
            continue;
        size_t seg = i + 1, end = seg;
        while (end < plen && path[end] != '/')
            end++;
        size_t n = end - seg;
        if ((n == 4 && memcmp(path + seg, "sync", 4) == 0) || (n == 5 && memcmp(path + seg, "syncx", 5) == 0) ||
            (n == 5 && memcmp(path + seg, "admin", 5) == 0) || (n == 4 && memcmp(path + seg, "test", 4) == 0))
            return false;
    }
    for (int i = 0; i < nfound; i++) {
        /* captured from the end: the first parameter of the route is the last one found */
        char *v = http_url_decode(arena, found[nfound - 1 - i], found_len[nfound - 1 - i], NULL);
        if (!v)
            return false;
        params[i] = v;
    }
    return true;
}

static const char *match_candidate(const struct route *routes, size_t nroutes, unsigned mask, arena_t *arena,
                                   const char *path, size_t len, const char *params[HTTP_MAX_PATH_PARAMS])
{
    for (size_t i = 0; i < nroutes; i++)
        if ((routes[i].serves & mask) && ends_with_route(arena, path, len, routes[i].path, params))
            return routes[i].path;
    return NULL;
}

enum route_match http_route(const struct route *routes, size_t nroutes, unsigned mask, const struct http_io *io,
                            arena_t *arena, const char *method, const struct route **out, const char **allow,
                            const char **path_out, const char *params[HTTP_MAX_PATH_PARAMS])
{
    const char *script = param(io, "SCRIPT_NAME");
    const char *info = param(io, "PATH_INFO");
    const char *doc = param(io, "DOCUMENT_URI");
    const char *uri = param(io, "REQUEST_URI");
    const char *cands[5];
    size_t lens[5];
    int n = 0;

    /* Web servers split the path differently (lighttpd and nginx fill PATH_INFO depending on the
     * location, Apache's proxy puts everything in SCRIPT_NAME or REQUEST_URI): look at each form
     * and take the first that names a route. */
    if (script || info) {
        size_t ls = script ? strlen(script) : 0, li = info ? strlen(info) : 0;
        char *joined = arena_alloc(arena, ls + li + 1);
        memcpy(joined, script ? script : "", ls);
        memcpy(joined + ls, info ? info : "", li);
        joined[ls + li] = '\0';
        cands[n] = joined;
        lens[n++] = ls + li;
    }
    if (info) {
        cands[n] = info;
        lens[n++] = strlen(info);
    }
    if (doc) {
        cands[n] = doc;
        lens[n++] = strlen(doc);
    }
    if (uri) {
        cands[n] = uri;
        lens[n++] = strcspn(uri, "?");
    }
    if (script) {
        cands[n] = script;
        lens[n++] = strlen(script);
    }

    *out = NULL;
    *allow = NULL;
    for (int i = 0; i < HTTP_MAX_PATH_PARAMS; i++)
        params[i] = NULL;
    *path_out = n ? arena_strndup(arena, cands[0], lens[0]) : "/";
    for (int i = 0; i < n; i++) {
        const char *rp = match_candidate(routes, nroutes, mask, arena, cands[i], lens[i], params);
        if (!rp)
            continue;
        *path_out = arena_strndup(arena, cands[i], lens[i]);
        strbuf_t methods = STRBUF_INIT;
        for (const struct route *r = routes; r < routes + nroutes; r++) {
            if (!(r->serves & mask) || strcmp(r->path, rp) != 0)
                continue;
            if (strcmp(r->method, method) == 0 ||
                (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0)) {
                *out = r;
                sb_free(&methods);
                return ROUTE_MATCHED;
            }
            if (methods.len)
                sb_puts(&methods, ", ");
            sb_puts(&methods, r->method);
        }
        *allow = arena_strdup(arena, sb_cstr(&methods));
        sb_free(&methods);
        return ROUTE_WRONG_METHOD;
    }
    return ROUTE_NOT_FOUND;
}

void http_request_init(struct request *req, const struct http_io *io, arena_t *arena)
{
    static unsigned long long counter;
    static unsigned long long seed;
    memset(req, 0, sizeof *req);
    req->io = io;
    req->arena = arena;
    if (!seed) {
        FILE *f = fopen("/dev/urandom", "rb");
        if (!f || fread(&seed, sizeof seed, 1, f) != 1)
            seed = (unsigned long long)getpid() * 0x9E3779B97F4A7C15ull;
        if (f)
            fclose(f);
        seed |= 1;
    }
    /* splitmix64 of a per-process random seed and a counter: unique ids without a syscall */
    unsigned long long z = seed + 0x9E3779B97F4A7C15ull * ++counter;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, z >>= 4)
        req->request_id[i] = hex[z & 15];
    req->request_id[16] = '\0';

    const char *m = param(io, "REQUEST_METHOD");
    req->method = m && *m ? m : "GET";
    const char *q = param(io, "QUERY_STRING");
    req->query = q ? q : "";
    req->route = NULL;
    req->route_path = "-";
    req->path = "/";
}

bool http_read_body(struct request *req, long max_bytes, bool *too_large)
{
    *too_large = false;
    const char *cl = param(req->io, "CONTENT_LENGTH");
    if (cl && *cl) {
        char *end;
        errno = 0;
        long long n = strtoll(cl, &end, 10);
        if (errno == ERANGE && n > 0 && !*end && isdigit((unsigned char)cl[0])) {
            *too_large = true;   /* more digits than any limit */
            return false;
        }
        if (errno || *end || n < 0 || !isdigit((unsigned char)cl[0])) {
            req->body = arena_strdup(req->arena, "");
            req->body_len = 0;
            return false;
        }
        if (n > max_bytes) {
            *too_large = true;
            return false;
        }
        req->body = arena_alloc(req->arena, (size_t)n + 1);
        size_t got = 0;
        while (got < (size_t)n) {
            ssize_t r = req->io->read(req->io->ud, req->body + got, (size_t)n - got);
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        req->body[got] = '\0';
        req->body_len = got;
        return got == (size_t)n;
    }

    /* No length (Apache's mod_proxy_fcgi with a chunked body): read to end of stream, stopping
     * one byte past the limit so an oversized body is refused without buffering all of it. */
    size_t cap = 16 * 1024, len = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t want = cap - len;
        if ((long)(len + want) > max_bytes + 1)
            want = (size_t)(max_bytes + 1) - len;
        if (want == 0)
            break;
        ssize_t r = req->io->read(req->io->ud, buf + len, want);
        if (r < 0) {
            free(buf);
            return false;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if ((long)len > max_bytes) {
        free(buf);
        *too_large = true;
        return false;
    }
    req->body = arena_strndup(req->arena, buf, len);
    req->body_len = len;
    free(buf);
    return true;
}

static int hexdigit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

char *http_url_decode(arena_t *arena, const char *s, size_t len, const char **why)
{
    char *out = arena_alloc(arena, len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%') {
            int hi = i + 2 < len ? hexdigit((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < len ? hexdigit((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi | lo) == 0) {
                if (why)
                    *why = hi < 0 || lo < 0
                               ? "a bad percent escape (% must be followed by two hex digits)"
                               : "%00 (a NUL byte) is not allowed";
                return NULL;
            }
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* The raw value of the first occurrence of name (*len bytes, not terminated), or NULL. */
static const char *query_raw(const char *query, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    const char *p = query;
    while (*p) {
        size_t seg = strcspn(p, "&");
        const char *eq = memchr(p, '=', seg);
        size_t kl = eq ? (size_t)(eq - p) : seg;
        if (kl == nl && memcmp(p, name, nl) == 0) {
            *len = eq ? seg - kl - 1 : 0;
            return eq ? eq + 1 : p + seg;
        }
        p += seg;
        if (*p == '&')
            p++;
    }
    return NULL;
}

bool http_query_params(struct request *req, size_t n, const char *const names[], const char *values[])
{
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *raw = query_raw(req->query, names[i], &len), *why = NULL;
        values[i] = raw ? http_url_decode(req->arena, raw, len, &why) : NULL;
        if (raw && !values[i]) {
            http_error(req, 400, "invalid_request", "query parameter %s is malformed: %s", names[i],
                       why);
            return false;
        }
    }
    return true;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

/* The status line and headers of an answer of len bytes; false (logged) when one was already given. */
static bool answer_head(struct request *req, strbuf_t *out, int status, const char *content_type,
                        const char *extra_headers, size_t len)
{
    if (req->responded) {
        log_error("request %s: a second answer was attempted and dropped", req->request_id);
        return false;
    }
    req->responded = true;
    req->status = status;
    /* every answer goes through here: written piece by piece, not with printf */
    sb_puts(out, "Status: ");
    sb_put_i64(out, status);
    sb_putc(out, ' ');
    sb_puts(out, http_status_text(status));
    if (content_type) {
        sb_puts(out, "\r\nContent-Type: ");
        sb_puts(out, content_type);
    }
    sb_puts(out, "\r\nContent-Length: ");
    sb_put_u64(out, len);
    sb_puts(out, "\r\nCache-Control: no-store\r\nX-Request-Id: ");
    sb_puts(out, req->request_id);
    sb_puts(out, "\r\n");
    if (extra_headers)
        sb_puts(out, extra_headers);
    sb_append(out, "\r\n", 2);
    return true;
}

static bool answer_write(struct request *req, const char *data, size_t len)
{
    if (req->io->write(req->io->ud, data, len) >= 0)
        return true;
    log_warn("request %s: the web server went away before the answer was written", req->request_id);
    return false;
}

void http_respond(struct request *req, int status, const char *content_type,
                  const char *extra_headers, const char *body, size_t len)
{
    /* a small answer goes out in one write; a large body is not copied behind its head */
    bool large = len >= HTTP_LARGE_BODY;
    strbuf_t out = STRBUF_INIT;
    sb_reserve(&out, (large ? 0 : len) + 256);
    if (answer_head(req, &out, status, content_type, extra_headers, len)) {
        bool head_only = strcmp(req->method, "HEAD") == 0;
        if (!head_only && !large)
            sb_append(&out, body, len);
        if (answer_write(req, out.data, out.len) && !head_only && large)
            answer_write(req, body, len);
    }
    sb_free(&out);
}

bool http_respond_begin(struct request *req, int status, const char *content_type, size_t len)
{
    strbuf_t out = STRBUF_INIT;
    bool ok = answer_head(req, &out, status, content_type, NULL, len) && answer_write(req, out.data, out.len);
    sb_free(&out);
    return ok;
}

bool http_respond_more(struct request *req, const char *data, size_t len)
{
    return strcmp(req->method, "HEAD") == 0 || answer_write(req, data, len);
}

void http_json(struct request *req, int status, const strbuf_t *body)
{
    http_respond(req, status, "application/json", NULL, body->data ? body->data : "", body->len);
}

void http_json_text(struct request *req, int status, const char *json)
{
    http_respond(req, status, "application/json", NULL, json, strlen(json));
}

bool http_handoff(struct request *req, const void *msg, size_t len)
{
    if (req->responded || !req->io->handoff || !req->io->handoff(req->io->ud, msg, len))
        return false;
    req->responded = true;
    req->status = 200;
    return true;
}

static void error_v(struct request *req, int status, const char *code, const char *headers,
                    const char *fmt, va_list ap)
{
    if (req->responded) {
        log_error("request %s: a second answer (%s) was attempted and dropped", req->request_id, code);
        return;
    }
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    strbuf_t sb = STRBUF_INIT;
    sb_puts(&sb, "{\"error\":");
    sb_json_str(&sb, code);
    sb_puts(&sb, ",\"message\":");
    sb_json_str(&sb, msg);
    sb_putc(&sb, '}');
    req->error_code = code;
    http_respond(req, status, "application/json", headers, sb.data, sb.len);
    sb_free(&sb);
}

void http_error(struct request *req, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_v(req, status, code, NULL, fmt, ap);
    va_end(ap);
}

void http_error_headers(struct request *req, int status, const char *code, const char *extra_headers,
                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_v(req, status, code, extra_headers, fmt, ap);
    va_end(ap);
}
