/* oversyncd materializer plugin interface, version 2 (version 1 plugins still load).
 *
 * A plugin is a shared object named in a [table schema.name] section as
 * `materializer = plugin:/path/to/plugin.so`. It is loaded once per worker and must export
 *
 *     const struct oversyncd_materializer *oversyncd_materializer_v1(void);
 *
 * Every callback runs inside the upload transaction, on the worker's own libpq connection,
 * inside a savepoint that oversyncd rolls back when the callback fails. A callback returns 0 on
 * success; on failure it returns non-zero and writes a message into err (at most errlen bytes,
 * NUL-terminated), which becomes the change's materialize_error text.
 *
 * Version 2 adds the optional apply_batch: all changes of one table in an upload at once. A plugin
 * built against version 1 (abi_version 1, a struct without apply_batch) keeps working.
 */
#ifndef OVERSYNCD_MATERIALIZER_H
#define OVERSYNCD_MATERIALIZER_H

#include <stddef.h>
#include <libpq-fe.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OVERSYNCD_MATERIALIZER_ABI 2

/* One change as apply_batch sees it. */
struct oversyncd_change {
    const char *op;            /* "INSERT", "UPDATE" or "DELETE" */
    const char *pk;            /* the canonical UUID */
    const char *payload_json;  /* the JSON object as text; NULL for DELETE */
};

struct oversyncd_materializer {
    /* Must be OVERSYNCD_MATERIALIZER_ABI. */
    int abi_version;

    /* Called once per worker after loading; *state is passed back to every other call. */
    int (*init)(const char *schema, const char *table, PGconn *conn, void **state,
                char *err, size_t errlen);

    /* INSERT or UPDATE: payload is the change's JSON object as text; pk is the canonical UUID. */
    int (*apply_upsert)(void *state, PGconn *conn, const char *user_id, const char *pk,
                        const char *payload_json, char *err, size_t errlen);

    /* DELETE of the row pk. */
    int (*apply_delete)(void *state, PGconn *conn, const char *user_id, const char *pk,
                        char *err, size_t errlen);

    /* Optional (may be NULL): converts a foreign-key value found in a payload into the text form
     * the parent column stores, for the foreign-key pre-check. Writes into out (outlen bytes). */
    int (*convert_reference)(void *state, const char *column, const char *value, char *out,
                             size_t outlen, char *err, size_t errlen);

    /* Optional (may be NULL): called when the worker exits. */
    void (*cleanup)(void *state);

    /* Version 2, optional (may be NULL): applies the n changes of one table at once, in this
     * order; either all upserts (INSERT and UPDATE), parents' tables before their children's, or
     * all deletes, children's tables first. A key may appear more than once: its changes apply in
     * order. On failure oversyncd undoes the upload's materialization and applies the changes one
     * by one with apply_upsert and apply_delete, so that only the failing changes fail. */
    int (*apply_batch)(void *state, PGconn *conn, const char *user_id,
                       const struct oversyncd_change *changes, size_t n, char *err, size_t errlen);
};

typedef const struct oversyncd_materializer *(*oversyncd_materializer_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif
