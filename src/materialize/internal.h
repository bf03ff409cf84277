/* Shared between the materializer kinds. */
#ifndef OVERSYNCD_MATERIALIZE_INTERNAL_H
#define OVERSYNCD_MATERIALIZE_INTERNAL_H

#include "materialize.h"

struct generic;
struct sqlfunc;
struct plugin;

struct materializer {
    enum materializer_kind kind;
    char *schema;
    char *table;
    char *qtable;              /* quoted schema.table */
    struct generic *generic;
    struct sqlfunc *sqlfunc;
    struct plugin *plugin;
};

struct generic *generic_new(void);
void generic_free(struct generic *g);
bool generic_connect(struct materializer *m, PGconn *conn, char *err, size_t errlen);
enum mat_plan_result generic_plan(struct materializer *m, PGconn *conn, const struct mat_change *c, arena_t *a,
                                  struct mat_plan *plan, char *err, size_t errlen);

struct sqlfunc *sqlfunc_new(const char *function);
void sqlfunc_free(struct sqlfunc *f);
bool sqlfunc_connect(struct materializer *m, PGconn *conn, char *err, size_t errlen);
void sqlfunc_plan(struct materializer *m, const struct mat_change *c, struct mat_plan *plan);

struct plugin *plugin_load(const char *path, char *err, size_t errlen);
void plugin_free(struct plugin *p);
bool plugin_connect(struct materializer *m, PGconn *conn, char *err, size_t errlen);
bool plugin_apply(struct materializer *m, PGconn *conn, const struct mat_change *c, char *err, size_t errlen);
int plugin_convert_reference(struct materializer *m, const char *column, const char *value, char *out, size_t outlen,
                             char *err, size_t errlen);

/* A unique statement name for this worker. */
void materializer_stmt_name(char *out, size_t n, const char *prefix);

#endif
