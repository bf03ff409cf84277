/* Authenticators: turn a request's FastCGI parameters into an identity {user, device}.
 * JWT (SPEC §2) or identity trusted from parameters set by the front web server. */
#ifndef OVERSYNCD_AUTH_H
#define OVERSYNCD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "../config.h"
#include "../identity.h"


/* Parameter lookup supplied by the caller (FastCGI params in production, a table in tests). */
typedef const char *(*auth_param_fn)(void *ud, const char *name);

struct auth_ctx;

/* Built once from the configuration, before the workers fork (key files are read here, while
 * still privileged). NULL on error with the reason in err. */
struct auth_ctx *auth_new(const struct config *cfg, char *err, size_t errlen);
void auth_free(struct auth_ctx *ctx);

/* true and *out filled, or false and a client-safe reason in msg (never echoes the token). With
 * protocol = bundle only the user is established (out->device is empty): the source is the
 * request's Oversync-Source-ID header, which the application checks. */
bool auth_authenticate(const struct auth_ctx *ctx, auth_param_fn param, void *ud, time_t now,
                       struct identity *out, char *msg, size_t msglen);

/* The JWT check alone, for a bare token (no "Bearer "). */
bool auth_jwt_verify(const struct auth_ctx *ctx, const char *token, time_t now,
                     struct identity *out, char *msg, size_t msglen);

/* The check every user and device id passes, whichever authenticator supplied it (n bytes, any
 * NUL already refused): 1 to IDENTITY_MAX - 1 bytes of valid UTF-8 (RFC 3629: no overlong form,
 * no surrogate, nothing past U+10FFFF) without a control character (U+0000-U+001F and
 * U+007F-U+009F), so that PostgreSQL accepts it as text and no log line can be forged with it.
 * false with "<what> is empty", "... is longer than 255 bytes", "... is not valid UTF-8" or
 * "... contains a control character" in msg. */
bool identity_check(const char *s, size_t n, const char *what, char *msg, size_t msglen);

/* A token signed with the configured HMAC secret (first configured HS* algorithm), for
 * `oversyncd token`. malloc'd; NULL with the reason in err. */
char *auth_make_token(const struct config *cfg, const char *user, const char *device,
                      long ttl_seconds, char *err, size_t errlen);

#endif
