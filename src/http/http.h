/* The request layer: parameters and body read at the edge (size-limited), routing, JSON answers.
 * A request is transport-agnostic: FastCGI in production (fcgi.c), an in-memory table in tests. */
#ifndef OVERSYNCD_HTTP_H
#define OVERSYNCD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "../arena.h"
#include "../identity.h"
#include "../strbuf.h"

struct http_io {
    const char *(*param)(void *ud, const char *name);       /* CGI/FastCGI parameter or NULL */
    ssize_t (*read)(void *ud, char *buf, size_t n);          /* body bytes; 0 at end, <0 error */
    int (*write)(void *ud, const char *buf, size_t n);       /* 0 ok, <0 error */
    /* Hands the request's connection over to another process together with msg (len bytes):
     * that process answers it; this one writes nothing more to it. NULL, or false, when the
     * transport cannot (nothing was handed over then). */
    bool (*handoff)(void *ud, const void *msg, size_t len);
    void *ud;
};

struct app;
struct request;

/* One route of the application: its table lives with the handlers (app.c), so a route is added
 * in one place. The request layer only matches method and path against it. */
/* Which deployments serve a route (struct route.serves): the protocol of [sync] protocol, and the
 * test-only routes of [bundle] test_routes. */
#define ROUTE_UPLOAD 1u     /* protocol = upload */
#define ROUTE_BUNDLE 2u     /* protocol = bundle */
#define ROUTE_TEST 4u       /* protocol = bundle with test_routes = on */
#define ROUTE_ANY (ROUTE_UPLOAD | ROUTE_BUNDLE)

/* Most {name} segments in a route path. */
#define HTTP_MAX_PATH_PARAMS 2

struct route {
    const char *method;     /* "GET", "POST" or "DELETE" */
    const char *path;       /* e.g. "/sync/upload", matched under any mount prefix; a segment
                               "{name}" matches any one non-empty segment (a path parameter) */
    unsigned serves;        /* ROUTE_* bits: the deployments that have this route */
    bool needs_auth;        /* an authenticated identity before the handler runs */
    bool needs_db;          /* a database connection before the handler runs (else 503) */
    void (*handler)(struct app *app, struct request *req);
};

struct request {
    const struct http_io *io;
    arena_t *arena;
    char request_id[17];
    const char *method;           /* never NULL */
    const char *path;             /* the path routing looked at, without query */
    const char *query;            /* never NULL, without '?' */
    const struct route *route;    /* NULL until routed */
    const char *route_path;       /* canonical route path, "-" when none */
    const char *path_params[HTTP_MAX_PATH_PARAMS];   /* the {name} segments, percent-decoded */

    /* body, read by http_read_body */
    char *body;
    size_t body_len;

    /* identity, set by the authenticator */
    bool authenticated;
    struct identity identity;

    /* answer, set by http_respond */
    int status;
    const char *error_code;
    bool responded;
};

enum route_match { ROUTE_MATCHED, ROUTE_NOT_FOUND, ROUTE_WRONG_METHOD };

/* Picks the path out of PATH_INFO / SCRIPT_NAME / DOCUMENT_URI / REQUEST_URI (whichever names a
 * route, under any mount prefix) and matches method + path against the routes whose serves has a
 * bit of mask. On ROUTE_WRONG_METHOD, *allow gets the methods the path accepts. *path_out gets
 * the path that was examined (for logs). params (HTTP_MAX_PATH_PARAMS entries) gets the
 * percent-decoded {name} segments of the matched path in order; a segment that does not decode
 * (a bad escape, %00) matches nothing. */
enum route_match http_route(const struct route *routes, size_t nroutes, unsigned mask, const struct http_io *io,
                            arena_t *arena, const char *method, const struct route **out, const char **allow,
                            const char **path_out, const char *params[HTTP_MAX_PATH_PARAMS]);

/* Fills method, path, query, route of req; returns the match result. */
void http_request_init(struct request *req, const struct http_io *io, arena_t *arena);

/* Reads the body: CONTENT_LENGTH when present and not empty, else to end of stream; never more
 * than max_bytes (+1 to detect the overflow). false with *too_large set, or on a read error. */
bool http_read_body(struct request *req, long max_bytes, bool *too_large);

/* Reads the query parameters names[0..n-1]: values[i] gets the first occurrence of names[i],
 * percent-decoded, or NULL when it is absent. A value that http_url_decode refuses is never read
 * as something else (cut at a NUL, or taken raw): the request is answered 400 invalid_request
 * naming the parameter, and false returned. */
bool http_query_params(struct request *req, size_t n, const char *const names[], const char *values[]);

/* A body of at least this many bytes is large: http_respond writes it on its own instead of
 * copying it behind the head, and the FastCGI writer sends such a write as large records of its
 * own (src/http/fcgi.c). */
#define HTTP_LARGE_BODY 16384

/* Answers. extra_headers: zero or more complete "Name: value\r\n" lines, or NULL; content_type
 * NULL sends none (204). */
void http_respond(struct request *req, int status, const char *content_type,
                  const char *extra_headers, const char *body, size_t len);
void http_json(struct request *req, int status, const strbuf_t *body);
/* An answer sent in pieces, for one too large to hold: http_respond_begin sends the headers with
 * Content-Length len, then http_respond_more the len body bytes in order. Both return false when
 * the web server has gone away (logged by the call that found it). */
bool http_respond_begin(struct request *req, int status, const char *content_type, size_t len);
bool http_respond_more(struct request *req, const char *data, size_t len);
void http_json_text(struct request *req, int status, const char *json);
/* Hands the request over (io->handoff): true when another process now answers it; the request
 * then counts as answered with status 200. false (nothing sent, the request is still ours to
 * answer) when the transport cannot. */
bool http_handoff(struct request *req, const void *msg, size_t len);
/* {"error":code,"message":message}; message is formatted. */
void http_error(struct request *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void http_error_headers(struct request *req, int status, const char *code, const char *extra_headers,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
const char *http_status_text(int status);

/* Percent-decodes len bytes of s ('+' is a space) into a new arena string. NULL when s holds a
 * bad escape ('%' not followed by two hex digits) or %00, which no C string can carry; *why (when
 * why is not NULL) then says which. */
char *http_url_decode(arena_t *arena, const char *s, size_t len, const char **why);

#endif
