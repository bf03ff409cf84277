/* Identity taken from FastCGI parameters that the front web server sets after authenticating the
 * client itself (REMOTE_USER plus a device header, for example). The front server must strip
 * any client-supplied copy of those headers; oversyncd cannot tell the difference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_internal.h"
#include "xalloc.h"

bool auth_trusted_setup(struct auth_ctx *ctx, const struct config *cfg, char *err, size_t errlen)
{
    if (!cfg->trusted_user_param || !*cfg->trusted_user_param) {
        snprintf(err, errlen, "auth: auth_mode trusted_header needs trusted_user_param");
        return false;
    }
    if (!cfg->trusted_device_param || !*cfg->trusted_device_param) {
        snprintf(err, errlen, "auth: auth_mode trusted_header needs trusted_device_param");
        return false;
    }
    ctx->user_param = xstrdup(cfg->trusted_user_param);
    ctx->device_param = xstrdup(cfg->trusted_device_param);
    return true;
}

void auth_trusted_cleanup(struct auth_ctx *ctx)
{
    free(ctx->user_param);
    free(ctx->device_param);
    ctx->user_param = ctx->device_param = NULL;
}

static bool take(auth_param_fn param, void *ud, const char *name, const char *what,
                 char dst[IDENTITY_MAX], char *msg, size_t msglen)
{
    const char *v = param(ud, name);
    if (!v) {
        snprintf(msg, msglen, "missing trusted %s parameter %s", what, name);
        return false;
    }
    size_t n = strlen(v);
    char label[160];
    snprintf(label, sizeof label, "trusted %s parameter %s", what, name);
    if (!identity_check(v, n, label, msg, msglen))
        return false;
    memcpy(dst, v, n + 1);
    return true;
}

bool auth_trusted_authenticate(const struct auth_ctx *ctx, auth_param_fn param, void *ud,
                               struct identity *out, char *msg, size_t msglen)
{
    struct identity id;
    id.device[0] = '\0';
    if (!take(param, ud, ctx->user_param, "user", id.user, msg, msglen) ||
        (ctx->need_device && !take(param, ud, ctx->device_param, "device", id.device, msg, msglen)))
        return false;
    *out = id;
    return true;
}
