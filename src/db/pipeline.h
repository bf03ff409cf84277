/* A few statements sent in one round trip with libpq's pipeline mode. */
#ifndef OVERSYNCD_PIPELINE_H
#define OVERSYNCD_PIPELINE_H

#include <stdbool.h>
#include <libpq-fe.h>

/* Result slots held in the struct itself; a longer pipeline allocates more. */
#define PIPELINE_MAX 128

struct pipeline {
    PGconn *conn;
    int n;                 /* statements sent */
    int got;               /* results received (res[0 .. got-1]) */
    int cap;
    PGresult **res;        /* first, or an allocated array when more statements were sent */
    PGresult *first[PIPELINE_MAX];
    int failed;            /* index of the first failed statement, -1 when all succeeded */
};

void pipeline_begin(struct pipeline *p, PGconn *conn);
/* Queue a prepared statement (name) or, when name is NULL, the SQL text in sql. Any number of
 * statements may be queued. false when libpq could not send it: call pipeline_run all the same,
 * which leaves pipeline mode. */
bool pipeline_add(struct pipeline *p, const char *name, const char *sql, int nparams,
                  const char *const *values);
/* Sync, collect one result per statement, leave pipeline mode. false when a statement failed or
 * the connection broke; then p->failed says which (or -1 with no result for a broken connection). */
bool pipeline_run(struct pipeline *p);
/* Frees the results (and the slots of a long pipeline). */
void pipeline_clear(struct pipeline *p);
/* The result that carries the error (NULL when the connection broke before any). */
const PGresult *pipeline_error(const struct pipeline *p);

#endif
