/* Authenticator dispatch and the Authorization header (RFC 6750 §2.1: "Bearer" 1*SP token). */
#include "auth.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth_internal.h"
#include "xalloc.h"

struct auth_ctx *auth_new(const struct config *cfg, char *err, size_t errlen)
{
    struct auth_ctx *ctx = xcalloc(1, sizeof *ctx);
    ctx->mode = cfg->auth_mode;
    ctx->need_device = cfg->protocol == PROTOCOL_UPLOAD;

    bool ok;
    switch (cfg->auth_mode) {
    case AUTH_MODE_JWT:
        ok = auth_jwt_setup(ctx, cfg, err, errlen);
        break;
    case AUTH_MODE_TRUSTED_HEADER:
        ok = auth_trusted_setup(ctx, cfg, err, errlen);
        break;
    default:
        snprintf(err, errlen, "auth: unknown auth_mode %d", (int)cfg->auth_mode);
        ok = false;
        break;
    }
    if (!ok) {
        auth_free(ctx);
        return NULL;
    }
    return ctx;
}

void auth_free(struct auth_ctx *ctx)
{
    if (!ctx)
        return;
    auth_jwt_cleanup(ctx);
    auth_trusted_cleanup(ctx);
    free(ctx);
}

/* Decodes the UTF-8 sequence at p (before end) into *cp; its length, or 0 when it is not valid
 * RFC 3629 UTF-8 (a stray continuation byte, a cut sequence, an overlong form, a surrogate, a
 * code point past U+10FFFF). */
static size_t utf8_decode(const unsigned char *p, const unsigned char *end, uint32_t *cp)
{
    static const uint32_t min_cp[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    size_t n;
    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        n = 2;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF)
        n = 3;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        n = 4;
    else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    uint32_t c = p[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (p[i] & 0x3F);
    }
    if (c < min_cp[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return n;
}

bool identity_check(const char *s, size_t n, const char *what, char *msg, size_t msglen)
{
    if (n == 0) {
        snprintf(msg, msglen, "%s is empty", what);
        return false;
    }
    if (n > IDENTITY_MAX - 1) {
        snprintf(msg, msglen, "%s is longer than %d bytes", what, IDENTITY_MAX - 1);
        return false;
    }
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        uint32_t cp;
        size_t len = utf8_decode(p, end, &cp);
        if (len == 0) {
            snprintf(msg, msglen, "%s is not valid UTF-8", what);
            return false;
        }
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) {
            snprintf(msg, msglen, "%s contains a control character", what);
            return false;
        }
        p += len;
    }
    return true;
}

/* Extracts the token from an Authorization value, or NULL with the reason in msg. */
static const char *bearer_token(const char *header, size_t *len, char *msg, size_t msglen)
{
    static const char scheme[] = "Bearer";
    const size_t slen = sizeof scheme - 1;

    if (strncasecmp(header, scheme, slen) != 0 ||
        (header[slen] != '\0' && header[slen] != ' ')) {
        snprintf(msg, msglen, "Authorization scheme must be Bearer");
        return NULL;
    }
    const char *tok = header + slen;
    while (*tok == ' ')
        tok++;
    size_t n = strlen(tok);
    /* Some proxies append whitespace; it can never be part of a JWT. */
    while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
        n--;
    if (n == 0) {
        snprintf(msg, msglen, "missing bearer token");
        return NULL;
    }
    *len = n;
    return tok;
}

bool auth_authenticate(const struct auth_ctx *ctx, auth_param_fn param, void *ud, time_t now,
                       struct identity *out, char *msg, size_t msglen)
{
    if (ctx->mode == AUTH_MODE_TRUSTED_HEADER)
        return auth_trusted_authenticate(ctx, param, ud, out, msg, msglen);

    const char *header = param(ud, "HTTP_AUTHORIZATION");
    if (!header || !*header) {
        snprintf(msg, msglen, "missing Authorization header");
        return false;
    }
    size_t len;
    const char *tok = bearer_token(header, &len, msg, msglen);
    if (!tok)
        return false;
    if (tok[len] == '\0')
        return auth_jwt_verify(ctx, tok, now, out, msg, msglen);

    char *copy = xstrndup(tok, len);
    bool ok = auth_jwt_verify(ctx, copy, now, out, msg, msglen);
    free(copy);
    return ok;
}
