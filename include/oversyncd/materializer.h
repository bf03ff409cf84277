/* oversyncd materializer plugin interface, version 1.
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
 */
#ifndef OVERSYNCD_MATERIALIZER_H
#define OVERSYNCD_MATERIALIZER_H

#include <stddef.h>
#include <libpq-fe.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OVERSYNCD_MATERIALIZER_ABI 1

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
};

typedef const struct oversyncd_materializer *(*oversyncd_materializer_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif
