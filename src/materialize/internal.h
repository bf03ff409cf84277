/* Shared between the materializer kinds. Each kind is one file defining one
 * const struct materializer_ops, modelled on the plugin interface
 * (include/oversyncd/materializer.h), and one row of the kind → ops table in materialize.c. */
#ifndef OVERSYNCD_MATERIALIZE_INTERNAL_H
#define OVERSYNCD_MATERIALIZE_INTERNAL_H

#include "materialize.h"

struct materializer_ops {
    const char *name;          /* the kind, as the configuration spells it */
    /* What needs no connection: the kind's state, or NULL with the reason in err. */
    void *(*create)(const struct table_conf *t, char *err, size_t errlen);
    void (*destroy)(void *state);
    /* The rest is what the functions of materialize.h named alike do; plan is already zeroed. */
    bool (*connect)(struct materializer *m, PGconn *conn, char *err, size_t errlen);
    enum mat_plan_result (*plan)(struct materializer *m, PGconn *conn, const struct mat_change *c, arena_t *a,
                                 struct mat_plan *plan, char *err, size_t errlen);
    /* Only for kinds whose plans are synchronous; else NULL. */
    bool (*apply)(struct materializer *m, PGconn *conn, const struct mat_change *c, char *err, size_t errlen);
    /* May be NULL: no batch entry point (then batches says false too). plan_batch's plan is zeroed. */
    bool (*batches)(const struct materializer *m);
    enum mat_plan_result (*plan_batch)(struct materializer *m, PGconn *conn, const struct mat_change *cs, int n,
                                       arena_t *a, struct mat_batch_plan *plan, int *bad, char *err, size_t errlen);
    /* Only for kinds whose batch plans are synchronous; else NULL. */
    bool (*apply_batch)(struct materializer *m, PGconn *conn, const struct mat_change *cs, int n, char *err,
                        size_t errlen);
    /* May be NULL: the kind converts no reference keys. */
    int (*convert_reference)(struct materializer *m, const char *column, const char *value, char *out,
                             size_t outlen, char *err, size_t errlen);
};

extern const struct materializer_ops generic_materializer_ops;
extern const struct materializer_ops sqlfunc_materializer_ops;
extern const struct materializer_ops plugin_materializer_ops;

struct materializer {
    const struct materializer_ops *ops;
    void *state;               /* the kind's own, from ops->create */
    char *schema;
    char *table;
    char *qtable;              /* quoted schema.table */
};

/* A unique statement name for this worker. */
void materializer_stmt_name(char *out, size_t n, const char *prefix);

#endif
