/* bundle-bootstrap: runs oversyncd's bundle sidecar bootstrap (src/bundle/schema.c) on one
 * database, for tests/compat/check-bundle-schema.sh, which checks it against the go-oversync
 * library's own bootstrap in both directions.
 *
 *   bundle-bootstrap CONNINFO [SCHEMA.TABLE[:KEY]]...      (KEY defaults to id)
 *
 * Prints "created" or "adopted", one line "TABLE_ID SCHEMA.TABLE KEY KIND" per catalog row and
 * "triggers installed on N tables"; exit 0. On failure prints the error line on standard error
 * and exits 1 (2 for a usage error). */
#include "bundle/schema.h"
#include "log.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CONNINFO [SCHEMA.TABLE[:KEY]]...\n", argv[0]);
        return 2;
    }
    log_setup(LOG_WARN, LOG_FORMAT_TEXT);
    int n = argc - 2;
    struct bundle_table *tables = calloc((size_t)n + 1, sizeof *tables);
    for (int i = 0; i < n; i++) {
        char *spec = argv[i + 2];
        char *dot = strchr(spec, '.'), *colon = strchr(spec, ':');
        if (!dot || (colon && colon < dot)) {
            fprintf(stderr, "%s: %s: expected SCHEMA.TABLE[:KEY]\n", argv[0], spec);
            return 2;
        }
        *dot = '\0';
        if (colon)
            *colon = '\0';
        tables[i].schema = spec;
        tables[i].table = dot + 1;
        tables[i].key_column = colon ? colon + 1 : "id";
    }
    PGconn *conn = PQconnectdb(argv[1]);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "%s: %s", argv[0], PQerrorMessage(conn));
        return 1;
    }
    struct bundle_catalog cat;
    char err[4096];
    if (!bundle_bootstrap(conn, tables, n, &cat, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        PQfinish(conn);
        return 1;
    }
    printf("%s\n", cat.created ? "created" : "adopted");
    for (int i = 0; i < cat.n_tables; i++)
        printf("%d %s.%s %s %d\n", cat.tables[i].table_id, cat.tables[i].schema, cat.tables[i].table,
               cat.tables[i].key_column, (int)cat.tables[i].key_kind);
    printf("triggers installed on %d tables\n", cat.triggers_installed);
    bundle_catalog_free(&cat);
    free(tables);
    PQfinish(conn);
    return 0;
}
