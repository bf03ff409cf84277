/* Configuration: an INI file parsed from one table of keys (see config.c), which also drives
 * --check-config, etc/oversyncd.conf.example and docs/configuration.md. */
#ifndef OVERSYNCD_CONFIG_H
#define OVERSYNCD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "log.h"

enum auth_mode { AUTH_MODE_JWT = 0, AUTH_MODE_TRUSTED_HEADER };

enum materializer_kind { MATERIALIZER_NONE = 0, MATERIALIZER_GENERIC, MATERIALIZER_SQL, MATERIALIZER_PLUGIN };

/* Which protocol a deployment serves: the Sept 2025 one (/sync/upload, /sync/download; SPEC.md) or
 * the bundle protocol of go-oversync 1f1118f (/sync/connect, /sync/push-sessions, ...; SPEC-v2.md).
 * One database holds the sidecar of one of them. */
enum sync_protocol { PROTOCOL_UPLOAD = 0, PROTOCOL_BUNDLE };

struct table_conf {
    char *schema;                    /* lower-case, ^[a-z0-9_]+$ */
    char *name;                      /* lower-case, ^[a-z0-9_]+$ */
    enum materializer_kind materializer;
    char *materializer_arg;          /* "schema.function" for SQL, the .so path for PLUGIN, else NULL */
    char *sync_key;                  /* protocol = bundle: the key column (uuid or text); NULL unset */
    int line;                        /* line of the [table ...] header, for messages */
};

struct jwt_key_file {
    char *kid;                       /* NULL when the entry had no "kid=" part */
    char *path;
};

struct config {
    char *path;                      /* file the configuration came from, NULL for defaults only */

    /* [server] */
    char *listen;                    /* "unix:/path" or "host:port"; NULL = serve on fd 0 */
    int workers;
    long max_requests;               /* 0 = never recycle */
    char *user;
    char *group;
    char *pid_file;
    int socket_mode;                 /* permission bits of a unix listen socket */
    enum log_level log_level;
    enum log_format log_format;

    /* [database] */
    char *database_url;              /* libpq conninfo or URI; DATABASE_URL overrides */
    long statement_timeout_ms;
    long idle_in_transaction_session_timeout_ms;
    long lock_timeout_ms;

    /* [auth] */
    enum auth_mode auth_mode;
    char *jwt_secret;                /* JWT_SECRET overrides; or read from jwt_secret_file */
    char *jwt_secret_file;
    char **jwt_algorithms;           /* e.g. {"HS256"}; NULL-terminated */
    int n_jwt_algorithms;
    struct jwt_key_file *jwt_public_key_files;
    int n_jwt_public_key_files;
    char *jwt_issuer;                /* NULL = not checked */
    char *jwt_audience;              /* NULL = not checked */
    long jwt_leeway_s;
    bool jwt_require_exp;
    long jwt_max_token_bytes;
    char *trusted_user_param;        /* FastCGI parameter carrying the user, e.g. REMOTE_USER */
    char *trusted_device_param;      /* FastCGI parameter carrying the device, e.g. HTTP_X_DEVICE_ID */

    /* [sync] */
    char *app_name;
    long schema_version;
    long max_upload_changes;
    long max_payload_bytes;
    long max_body_bytes;
    bool auto_migrate_fks;
    bool set_materialization;        /* materializers write each table once per batch */
    bool optimistic_upload;          /* plain uploads written in one round trip, redone on a miss */
    long download_max_wait_ms;       /* 0 = no long-poll downloads */
    enum sync_protocol protocol;

    /* [bundle] (protocol = bundle); durations in milliseconds */
    bool bundle_watch;
    char *notify_channel;
    long watch_heartbeat_ms;
    long push_session_ttl_ms;
    long snapshot_session_ttl_ms;
    long initialization_lease_ttl_ms;
    long default_rows_per_push_chunk;
    long max_rows_per_push_chunk;
    long default_rows_per_committed_bundle_chunk;
    long max_rows_per_committed_bundle_chunk;
    long default_rows_per_snapshot_chunk;
    long max_rows_per_snapshot_chunk;
    long default_bundles_per_pull;
    long max_bundles_per_pull;
    long max_rows_per_snapshot_session;     /* 0 = no limit */
    long max_bytes_per_snapshot_session;    /* 0 = no limit */
    long retained_bundles_per_user;
    long retention_prune_batch;
    bool test_routes;

    /* [table schema.name] sections, in file order */
    struct table_conf *tables;
    int n_tables;
};

/* Key types of the table in config.c: how a value is written in the file and documented. */
enum config_type {
    CONFIG_STRING,
    CONFIG_INT,        /* plain integer */
    CONFIG_BOOL,       /* true/false/on/off/yes/no/1/0 */
    CONFIG_DURATION,   /* PostgreSQL-style units: us, ms, s, min, h, d; bare number = the key's unit */
    CONFIG_SIZE,       /* bytes, kB, MB, GB (1024-based, PostgreSQL style) */
    CONFIG_LIST,       /* comma-separated */
    CONFIG_ENUM,
    CONFIG_OCTAL,
};

/* How a key's parsed value is stored in struct config. */
enum config_store {
    CONFIG_STORE_STRING,        /* char *, NULL when the value is empty */
    CONFIG_STORE_INT,           /* int */
    CONFIG_STORE_LONG,          /* long; durations in the key's unit, sizes in bytes */
    CONFIG_STORE_BOOL,
    CONFIG_STORE_ENUM,          /* an enum field, value = index in choices */
    CONFIG_STORE_ALGORITHMS,    /* jwt_algorithms + n_jwt_algorithms */
    CONFIG_STORE_KEY_FILES,     /* jwt_public_key_files + n_jwt_public_key_files */
    CONFIG_STORE_MATERIALIZER,  /* the current [table ...] section */
    CONFIG_STORE_TABLE_STRING,  /* char * in the current [table ...] section (offset into table_conf) */
};

/* One row per key: everything the parser, the checks and the documentation know about it. */
struct config_key {
    const char *section;
    const char *name;
    enum config_type type;

    /* Storage and limits */
    enum config_store store;
    size_t offset;               /* into struct config; not used by the list and table stores */
    long min, max;               /* numbers, in the stored unit */
    long unit_us;                /* durations: what a bare number means, in microseconds */
    const char *const *choices;  /* enums and the algorithm list, NULL-terminated */
    bool nonempty;               /* strings: an empty value is an error, not "unset" */
    bool (*check)(const char *value, char *why, size_t whylen);  /* strings, when not empty */

    /* Default, reloading and documentation */
    const char *default_value;   /* as written in the file; NULL = no default */
    bool reloadable;             /* SIGHUP applies it to new workers */
    const char *description;     /* one or more sentences, used for the example file and the docs */
};

extern const struct config_key config_keys[];
extern const size_t n_config_keys;

/* Fill *cfg with defaults, then the file (path may be NULL), then the environment
 * (DATABASE_URL, JWT_SECRET). On error writes "FILE:LINE: message" into err and returns false;
 * *cfg is then freed. Also loads jwt_secret_file. */
bool config_load(struct config *cfg, const char *path, char *err, size_t errlen);
/* Checks that need every key at once (required values present, consistent auth settings). */
bool config_validate(const struct config *cfg, char *err, size_t errlen);
void config_free(struct config *cfg);
const struct table_conf *config_find_table(const struct config *cfg, const char *schema, const char *name);

/* Parsers shared with the command line; false on a bad value. */
bool config_parse_duration_ms(const char *s, long *out_ms);
bool config_parse_size(const char *s, long *out_bytes);
bool config_parse_bool(const char *s, bool *out);

/* The writers of the documentation, in config_doc.c. Writes the documented example file
 * generated from config_keys (etc/oversyncd.conf.example must equal this output; a test checks
 * it). */
void config_write_example(FILE *out);
/* Writes the Markdown reference table (docs/configuration.md embeds it; a test checks it). */
void config_write_markdown(FILE *out);
/* Writes the roff of the key reference (man/oversyncd.conf.5 embeds it; a test checks it). */
void config_write_man(FILE *out);

#endif
