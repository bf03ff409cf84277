/* Shared inside the sync core only (not part of its interface, sync.h). */
#ifndef OVERSYNCD_SYNC_INTERNAL_H
#define OVERSYNCD_SYNC_INTERNAL_H

#include "sync.h"

/* The user's highest server_id (upload and download); sent unnamed, see statements.c. */
extern const char sql_highest[];

/* Each module's prepared statements; statements.c registers them all. */
extern const struct db_statement upload_statements[];
extern const size_t n_upload_statements;
extern const struct db_statement admin_statements[];
extern const size_t n_admin_statements;

/* The one way a failed statement is reported: classified (503 for what a retry may cure, 500 for
 * the rest), formatted as "stage: SQLSTATE primary message" into err, logged with the request
 * id, and an open transaction rolled back. Returns the outcome for the caller to pass up. */
enum sync_outcome sync_db_failure(const struct sync_request *rq, const PGresult *res, const char *stage, char *err,
                                  size_t errlen);

#endif
