/* A bundle-protocol deployment for the e2e tests (check_e2e_bundle, check_e2e_watch): oversyncd
 * with [sync] protocol = bundle behind the shipped lighttpd (e2e.h), on a database of its own
 * holding the example tables of sql/examples/bundle-business.sql, with the shipped [table]
 * sections switched to sync keys; SQL on that database; requests with the token and the
 * Oversync-Source-ID header. One stack at a time per test process. */
#ifndef OVERSYNCD_TESTS_BUNDLE_STACK_H
#define OVERSYNCD_TESTS_BUNDLE_STACK_H

#include "e2e.h"

/* Creates the database <prefix>_<pid> with the example tables and starts the stack: [sync]
 * app_name = app_name, 2 workers, the shipped tables with sync_key = id, then extra (INI text
 * merged last, may be NULL). */
struct e2e_stack *bundle_stack_start(const char *prefix, const char *app_name, const char *extra);
/* Stops the stack and drops its database. */
void bundle_stack_stop(struct e2e_stack *s);
/* The value of a one-value query on the stack's database (psql -A -t, trailing newlines cut);
 * asserts success. malloc'd. */
char *bundle_stack_sql(const char *query);
/* method path through lighttpd with "Authorization: Bearer token" and "Oversync-Source-ID:
 * source" (each left out when NULL), body (NULL: none). Returns the status. */
long bundle_stack_req(struct e2e_stack *s, const char *method, const char *path, const char *token,
                      const char *source, const char *body, struct e2e_response *r);

#endif
