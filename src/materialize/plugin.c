/* plugin:<path.so>: a shared object implementing include/oversyncd/materializer.h, loaded once per
 * worker. */
#include "internal.h"
#include "../xalloc.h"

#include <oversyncd/materializer.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct plugin {
    void *handle;
    const struct oversyncd_materializer *api;
    void *state;
    bool initialised;
};

static void *plugin_create(const struct table_conf *t, char *err, size_t errlen)
{
    const char *path = t->materializer_arg;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "cannot load %s: %s", path, dlerror());
        return NULL;
    }
    oversyncd_materializer_entry_fn entry;
    /* the cast through a union keeps ISO C quiet about object-to-function pointer conversion */
    union {
        void *obj;
        oversyncd_materializer_entry_fn fn;
    } sym = { .obj = dlsym(h, "oversyncd_materializer_v1") };
    entry = sym.fn;
    const struct oversyncd_materializer *api = entry ? entry() : NULL;
    if (!api) {
        snprintf(err, errlen, "%s does not export oversyncd_materializer_v1", path);
        dlclose(h);
        return NULL;
    }
    /* version 1 is version 2 without apply_batch (a shorter struct: the field is not read) */
    if (api->abi_version < 1 || api->abi_version > OVERSYNCD_MATERIALIZER_ABI || !api->apply_upsert ||
        !api->apply_delete) {
        snprintf(err, errlen, "%s implements ABI %d, oversyncd needs 1 to %d with apply_upsert and apply_delete",
                 path, api->abi_version, OVERSYNCD_MATERIALIZER_ABI);
        dlclose(h);
        return NULL;
    }
    struct plugin *p = xcalloc(1, sizeof *p);
    p->handle = h;
    p->api = api;
    return p;
}

static void plugin_destroy(void *state)
{
    struct plugin *p = state;
    if (p->initialised && p->api->cleanup)
        p->api->cleanup(p->state);
    dlclose(p->handle);
    free(p);
}

static bool plugin_connect(struct materializer *m, PGconn *conn, char *err, size_t errlen)
{
    struct plugin *p = m->state;
    if (p->initialised)
        return true;   /* once per worker; later calls get the current connection as an argument */
    err[0] = '\0';
    if (p->api->init && p->api->init(m->schema, m->table, conn, &p->state, err, errlen) != 0) {
        if (!err[0])
            snprintf(err, errlen, "plugin init failed");
        return false;
    }
    p->initialised = true;
    return true;
}

/* Plugins are called one by one, between the pipelined statements of the other changes. */
static enum mat_plan_result plugin_plan(struct materializer *m, PGconn *conn, const struct mat_change *c, arena_t *a,
                                        struct mat_plan *plan, char *err, size_t errlen)
{
    (void)m; (void)conn; (void)c; (void)a; (void)err; (void)errlen;
    plan->synchronous = true;
    return MAT_PLANNED;
}

static bool plugin_apply(struct materializer *m, PGconn *conn, const struct mat_change *c, char *err,
                         size_t errlen)
{
    struct plugin *p = m->state;
    err[0] = '\0';
    int rc = c->is_delete ? p->api->apply_delete(p->state, conn, c->user, c->pk, err, errlen)
                          : p->api->apply_upsert(p->state, conn, c->user, c->pk, c->payload, err, errlen);
    if (rc != 0 && !err[0])
        snprintf(err, errlen, "plugin failed without a message");
    return rc == 0;
}

static bool plugin_batches(const struct materializer *m)
{
    const struct plugin *p = m->state;
    return p->api->abi_version >= 2 && p->api->apply_batch;
}

/* Batches are called one by one as well, between the pipelined statements of other tables. */
static enum mat_plan_result plugin_plan_batch(struct materializer *m, PGconn *conn, const struct mat_change *cs,
                                              int n, arena_t *a, struct mat_batch_plan *plan, int *bad, char *err,
                                              size_t errlen)
{
    (void)m; (void)conn; (void)cs; (void)n; (void)a; (void)bad; (void)err; (void)errlen;
    plan->synchronous = true;
    return MAT_PLANNED;
}

static bool plugin_apply_batch(struct materializer *m, PGconn *conn, const struct mat_change *cs, int n, char *err,
                               size_t errlen)
{
    struct plugin *p = m->state;
    struct oversyncd_change *changes = xcalloc((size_t)(n ? n : 1), sizeof *changes);
    for (int i = 0; i < n; i++) {
        changes[i].op = cs[i].op;
        changes[i].pk = cs[i].pk;
        changes[i].payload_json = cs[i].is_delete ? NULL : cs[i].payload;
    }
    err[0] = '\0';
    int rc = p->api->apply_batch(p->state, conn, n ? cs[0].user : "", changes, (size_t)n, err, errlen);
    free(changes);
    if (rc != 0 && !err[0])
        snprintf(err, errlen, "plugin failed without a message");
    return rc == 0;
}

static int plugin_convert_reference(struct materializer *m, const char *column, const char *value, char *out,
                                    size_t outlen, char *err, size_t errlen)
{
    struct plugin *p = m->state;
    if (!p->api->convert_reference)
        return 0;
    err[0] = out[0] = '\0';
    if (p->api->convert_reference(p->state, column, value, out, outlen, err, errlen) != 0) {
        if (!err[0])
            snprintf(err, errlen, "the plugin could not convert the value of %s", column);
        return -1;
    }
    return 1;
}

const struct materializer_ops plugin_materializer_ops = {
    .name = "plugin",
    .create = plugin_create,
    .destroy = plugin_destroy,
    .connect = plugin_connect,
    .plan = plugin_plan,
    .apply = plugin_apply,
    .batches = plugin_batches,
    .plan_batch = plugin_plan_batch,
    .apply_batch = plugin_apply_batch,
    .convert_reference = plugin_convert_reference,
};
