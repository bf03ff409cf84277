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

struct plugin *plugin_load(const char *path, char *err, size_t errlen)
{
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
    if (api->abi_version != OVERSYNCD_MATERIALIZER_ABI || !api->apply_upsert || !api->apply_delete) {
        snprintf(err, errlen, "%s implements ABI %d, oversyncd needs %d with apply_upsert and apply_delete", path,
                 api->abi_version, OVERSYNCD_MATERIALIZER_ABI);
        dlclose(h);
        return NULL;
    }
    struct plugin *p = xcalloc(1, sizeof *p);
    p->handle = h;
    p->api = api;
    return p;
}

void plugin_free(struct plugin *p)
{
    if (!p)
        return;
    if (p->initialised && p->api->cleanup)
        p->api->cleanup(p->state);
    dlclose(p->handle);
    free(p);
}

bool plugin_connect(struct materializer *m, PGconn *conn, char *err, size_t errlen)
{
    struct plugin *p = m->plugin;
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

bool plugin_apply(struct materializer *m, PGconn *conn, const struct mat_change *c, char *err, size_t errlen)
{
    struct plugin *p = m->plugin;
    err[0] = '\0';
    int rc = c->is_delete ? p->api->apply_delete(p->state, conn, c->user, c->pk, err, errlen)
                          : p->api->apply_upsert(p->state, conn, c->user, c->pk, c->payload, err, errlen);
    if (rc != 0 && !err[0])
        snprintf(err, errlen, "plugin failed without a message");
    return rc == 0;
}

int plugin_convert_reference(struct materializer *m, const char *column, const char *value, char *out, size_t outlen,
                             char *err, size_t errlen)
{
    struct plugin *p = m->plugin;
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
