/* oversyncd migrate-to-bundle: turns a database of the upload protocol (its sidecar in schema
 * sync, business tables written by materializers) into one of the bundle protocol, in place.
 * docs/migrating.md ("From the upload protocol to the bundle protocol") is the user's
 * description; the steps, each in a transaction of its own and recorded in
 * oversyncd.migrate_to_bundle, are:
 *
 *   1 begin        the progress table and the registry of NEW.conf
 *   2 archive      schema sync renamed to sync_upload_archive (nothing dropped)
 *   3 owners       _sync_scope_id text NOT NULL added to every registered table, the business
 *                  rows of materialized tables given their owner (sync_upload_archive.row_owner)
 *   4 constraints  unique indexes and keys lead with _sync_scope_id, a unique
 *                  (_sync_scope_id, key), foreign keys among registered tables scope-inclusive
 *                  and DEFERRABLE INITIALLY DEFERRED
 *   5 rows         the live rows of tables kept only in the sidecar (materializer none)
 *                  inserted from their after-images, each with its user as owner
 *   6 sidecar      the bundle layout in a new schema sync (bundle_bootstrap)
 *   7 bundles      one initial bundle per user holding the user's live rows (one transaction
 *                  per user); its scope INITIALIZED
 *   8 finish       recorded as done
 *
 * Before step 1 (and when a run resumes before step 3) every check runs first, and steps 3 to 5
 * are tried in a transaction that is rolled back: a refusal writes nothing. */
#ifndef OVERSYNCD_BUNDLE_MIGRATE_H
#define OVERSYNCD_BUNDLE_MIGRATE_H

#include <stdbool.h>
#include <stdio.h>
#include <libpq-fe.h>

#include "../config.h"

/* Where the old sidecar goes, and the source id of the initial bundles. */
#define MIGRATE_ARCHIVE_SCHEMA "sync_upload_archive"
#define MIGRATE_WRITER_ID "oversyncd-migrate"

/* Test hook: stop after step N (1..7) has committed, or "7:K" after K users' bundles. */
#define MIGRATE_STOP_ENV "OVERSYNCD_MIGRATE_STOP_AFTER"

enum migrate_exit {
    MIGRATE_OK = 0,        /* migrated, already migrated (a no-op), or a dry run that would succeed */
    MIGRATE_REFUSED = 1,   /* refused or failed; err says why; a refusal before step 1 wrote nothing */
    MIGRATE_STOPPED = 3,   /* stopped by MIGRATE_STOP_ENV */
};

struct migrate_options {
    bool dry_run;            /* check everything, print what would change, write nothing */
    const char *stop_after;  /* MIGRATE_STOP_ENV's value, NULL for none */
};

/* Runs (or resumes, or dry-runs) the migration on conn (outside any transaction) for cfg, the
 * bundle-protocol configuration the server will run with afterwards. Progress goes to out,
 * refusals and failures to err (one line each, prefixed "migrate-to-bundle: "). */
enum migrate_exit bundle_migrate(PGconn *conn, const struct config *cfg, const struct migrate_options *opt,
                                 FILE *out, FILE *err);

#endif
