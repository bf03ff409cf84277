/* Configuration. config_keys[] below is the one list of keys, one row per key with its type,
 * where and how its value is stored, its limits, default and documentation: the parser looks
 * keys up in it and applies its defaults, and config_doc.c prints the example file and the
 * references from it, so the documentation cannot promise a default or a key that the code does
 * not have. */
#include "config.h"
#include "config_internal.h"
#include "strbuf.h"
#include "xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <sys/un.h>

/* ------------------------------------------------------------------------------------------ */
/* The table of keys                                                                           */

const struct config_section config_sections[] = {
    { "server", "[server]",
      "The process: where it listens, how many workers it runs, as whom, and how it logs." },
    { "database", "[database]",
      "The PostgreSQL connection that every worker opens, and the timeouts set on its session." },
    { "auth", "[auth]", "Authentication: which user and which device a request comes from." },
    { "sync", "[sync]", "Limits and behaviour of the sync protocol." },
    { "bundle", "[bundle]",
      "The bundle protocol of go-oversync 1f1118f (protocol = bundle): session lifetimes, page "
      "sizes, retained history and live wake-ups. Ignored by protocol = upload." },
    { "table", "[table SCHEMA.NAME]",
      "One section per registered table, that is, per table clients may sync, for example "
      "[table business.users]. A change to any other table is answered invalid "
      "(unregistered_table). Schema and table names are lower-cased and may contain only a-z, "
      "0-9 and _." },
};
#define N_SECTIONS (sizeof config_sections / sizeof config_sections[0])
const size_t n_config_sections = N_SECTIONS;

/* Enum fields are written through an int; the indexes of the choice lists are the enum values. */
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum log_level is not int-sized");
_Static_assert(sizeof(enum log_format) == sizeof(int), "enum log_format is not int-sized");
_Static_assert(sizeof(enum auth_mode) == sizeof(int), "enum auth_mode is not int-sized");
_Static_assert(sizeof(enum sync_protocol) == sizeof(int), "enum sync_protocol is not int-sized");
_Static_assert(PROTOCOL_UPLOAD == 0 && PROTOCOL_BUNDLE == 1, "protocol_choices must follow enum sync_protocol");
_Static_assert(LOG_DEBUG == 0 && LOG_INFO == 1 && LOG_WARN == 2 && LOG_ERROR == 3,
               "log_level_choices must follow enum log_level");
_Static_assert(LOG_FORMAT_TEXT == 0 && LOG_FORMAT_JSON == 1,
               "log_format_choices must follow enum log_format");
_Static_assert(AUTH_MODE_JWT == 0 && AUTH_MODE_TRUSTED_HEADER == 1,
               "auth_mode_choices must follow enum auth_mode");

static const char *const log_level_choices[] = { "debug", "info", "warn", "error", NULL };
static const char *const log_format_choices[] = { "text", "json", NULL };
static const char *const auth_mode_choices[] = { "jwt", "trusted_header", NULL };
static const char *const protocol_choices[] = { "upload", "bundle", NULL };
static const char *const algorithm_choices[] = { "HS256", "HS384", "HS512", "RS256", "ES256",
                                                 NULL };

#define US_PER_MS 1000L
#define US_PER_S 1000000L

static bool check_listen(const char *value, char *why, size_t whylen);
static bool check_identifier(const char *value, char *why, size_t whylen);

#define AT(field) offsetof(struct config, field)
#define TABLE_AT(field) offsetof(struct table_conf, field)
#define ROWS(sect, key, field, def, lo, hi, text) \
    { .section = sect, .name = key, .type = CONFIG_INT, .store = CONFIG_STORE_LONG, \
      .offset = AT(field), .min = lo, .max = hi, .default_value = def, .reloadable = true, \
      .description = text }
#define TTL(key, field, def, text) \
    { .section = "bundle", .name = key, .type = CONFIG_DURATION, .store = CONFIG_STORE_LONG, \
      .offset = AT(field), .min = 1, .max = LONG_MAX / 1000, .unit_us = US_PER_MS, \
      .default_value = def, .reloadable = true, .description = text }

const struct config_key config_keys[] = {
    /* [server] */
    { .section = "server", .name = "listen", .type = CONFIG_STRING,
      .store = CONFIG_STORE_STRING, .offset = AT(listen), .check = check_listen,
      .reloadable = false,
      .description = "Where oversyncd accepts FastCGI connections: unix:/absolute/path for a unix "
                     "socket, or host:port for TCP (use [::1]:9000 for an IPv6 address). Leave it "
                     "unset when a web server or spawn-fcgi starts oversyncd with the listen "
                     "socket already open on file descriptor 0. The --listen option overrides "
                     "it." },
    { .section = "server", .name = "workers", .type = CONFIG_INT,
      .store = CONFIG_STORE_INT, .offset = AT(workers), .min = 0, .max = INT_MAX,
      .default_value = "0", .reloadable = true,
      .description = "Number of worker processes; each serves one request at a time on its own "
                     "PostgreSQL connection. 0 chooses automatically: four per CPU when oversyncd "
                     "listens on its own socket, 1 when it serves on an inherited file descriptor "
                     "0 (the web server then decides how many processes run). The --workers "
                     "option overrides it." },
    { .section = "server", .name = "max_requests", .type = CONFIG_INT,
      .store = CONFIG_STORE_LONG, .offset = AT(max_requests), .min = 0, .max = LONG_MAX,
      .default_value = "0", .reloadable = true,
      .description = "A worker that has served this many requests is replaced by a fresh one, "
                     "which bounds the effect of any slow leak. 0 never recycles workers." },
    { .section = "server", .name = "user", .type = CONFIG_STRING,
      .store = CONFIG_STORE_STRING, .offset = AT(user),
      .reloadable = false,
      .description = "When started as root, switch to this user after opening the listen socket "
                     "and writing the pid file. Required when started as root: oversyncd refuses "
                     "to run its workers as root." },
    { .section = "server", .name = "group", .type = CONFIG_STRING,
      .store = CONFIG_STORE_STRING, .offset = AT(group),
      .reloadable = false,
      .description = "When started as root, switch to this group. Unset uses the primary group of "
                     "user." },
    { .section = "server", .name = "pid_file", .type = CONFIG_STRING,
      .store = CONFIG_STORE_STRING, .offset = AT(pid_file),
      .reloadable = false,
      .description = "File the master process writes its process id into, for init scripts that "
                     "send it SIGHUP or SIGTERM. Unset writes no pid file." },
    { .section = "server", .name = "socket_mode", .type = CONFIG_OCTAL,
      .store = CONFIG_STORE_INT, .offset = AT(socket_mode), .min = 0, .max = 0777,
      .default_value = "0660", .reloadable = false,
      .description = "Permission bits of a unix listen socket, in octal. The web server's user "
                     "must be able to connect: 0660 when it shares the socket's group, 0666 to "
                     "let every local user connect." },
    { .section = "server", .name = "log_level", .type = CONFIG_ENUM,
      .store = CONFIG_STORE_ENUM, .offset = AT(log_level), .choices = log_level_choices,
      .default_value = "info", .reloadable = true,
      .description = "Least severe event that is logged." },
    { .section = "server", .name = "log_format", .type = CONFIG_ENUM,
      .store = CONFIG_STORE_ENUM, .offset = AT(log_format), .choices = log_format_choices,
      .default_value = "text", .reloadable = true,
      .description = "text writes one readable line per event on standard error; json writes one "
                     "JSON object per line, for log collectors." },

    /* [database] */
    { .section = "database", .name = "url", .type = CONFIG_STRING,
      .store = CONFIG_STORE_STRING, .offset = AT(database_url),
      .reloadable = true,
      .description = "PostgreSQL connection, as a libpq conninfo string (host=/run/postgresql "
                     "dbname=app user=oversyncd) or URI (postgresql://oversyncd@localhost/app). "
                     "Required. The environment variable DATABASE_URL overrides it, which keeps a "
                     "password out of this file. Put a value that contains # in double quotes." },
    /* PostgreSQL takes these three as an int of milliseconds. */
    { .section = "database", .name = "statement_timeout", .type = CONFIG_DURATION,
      .store = CONFIG_STORE_LONG, .offset = AT(statement_timeout_ms), .min = 0, .max = INT_MAX,
      .unit_us = US_PER_MS,
      .default_value = "30s", .reloadable = true,
      .description = "PostgreSQL statement_timeout of every worker session: a statement that runs "
                     "longer is cancelled and its request fails without writing anything. 0 "
                     "disables the limit." },
    { .section = "database", .name = "idle_in_transaction_session_timeout",
      .type = CONFIG_DURATION,
      .store = CONFIG_STORE_LONG, .offset = AT(idle_in_transaction_session_timeout_ms),
      .min = 0, .max = INT_MAX, .unit_us = US_PER_MS,
      .default_value = "60s", .reloadable = true,
      .description = "PostgreSQL idle_in_transaction_session_timeout of every worker session: a "
                     "session left idle inside an open transaction this long is ended, so a stuck "
                     "worker cannot hold locks for ever. 0 disables the limit." },
    { .section = "database", .name = "lock_timeout", .type = CONFIG_DURATION,
      .store = CONFIG_STORE_LONG, .offset = AT(lock_timeout_ms), .min = 0, .max = INT_MAX,
      .unit_us = US_PER_MS,
      .default_value = "5s", .reloadable = true,
      .description = "PostgreSQL lock_timeout of every worker session: how long a statement waits "
                     "for a lock before its request fails. 0 waits for ever." },

    /* [auth] */
    { .section = "auth", .name = "mode", .type = CONFIG_ENUM,
      .store = CONFIG_STORE_ENUM, .offset = AT(auth_mode), .choices = auth_mode_choices,
      .default_value = "jwt", .reloadable = true,
      .description = "How the user and device of a request are established. jwt: a bearer token "
                     "in the Authorization header, verified by oversyncd (sub is the user, did "
                     "the device). trusted_header: the web server in front has already "
                     "authenticated the caller and passes the user and device in FastCGI "
                     "parameters (see trusted_user_param and trusted_device_param); use it only "
                     "when nothing but that web server can reach oversyncd's socket." },
    { .section = "auth", .name = "jwt_secret", .type = CONFIG_STRING,
      .store = CONFIG_STORE_STRING, .offset = AT(jwt_secret),
      .reloadable = true,
      .description = "Shared secret for the HMAC algorithms (HS256, HS384, HS512). RFC 7518 asks "
                     "for at least 32 random bytes for HS256, 48 for HS384 and 64 for HS512; a "
                     "shorter secret works, with a warning at start-up for each configured "
                     "algorithm it is too short for. The environment variable JWT_SECRET "
                     "overrides it. Prefer JWT_SECRET or jwt_secret_file, which keep the secret "
                     "out of this file." },
    { .section = "auth", .name = "jwt_secret_file", .type = CONFIG_STRING,
      .store = CONFIG_STORE_STRING, .offset = AT(jwt_secret_file),
      .reloadable = true,
      .description = "File holding the HMAC secret; one trailing newline is ignored, and the file "
                     "must not be empty. It is read at start-up and on every reload. Cannot be "
                     "combined with jwt_secret; JWT_SECRET in the environment takes precedence "
                     "over it." },
    { .section = "auth", .name = "jwt_algorithms", .type = CONFIG_LIST,
      .store = CONFIG_STORE_ALGORITHMS, .choices = algorithm_choices,
      .default_value = "HS256,HS384,HS512", .reloadable = true,
      .description = "Comma-separated signing algorithms that are accepted. This list, never the "
                     "token's header, decides the algorithm: a token signed any other way, or "
                     "with alg none, is rejected. The HS algorithms need a secret; RS256 and "
                     "ES256 need jwt_public_key_files. The default accepts the three HMAC "
                     "algorithms with the shared secret, as go-oversync does; oversyncd token "
                     "signs with the first HS algorithm listed." },
    { .section = "auth", .name = "jwt_public_key_files", .type = CONFIG_LIST,
      .store = CONFIG_STORE_KEY_FILES,
      .reloadable = true,
      .description = "Comma-separated PEM public key files for RS256 and ES256, each written "
                     "kid=path or just path. With several keys, the kid header of a token selects "
                     "its key, which allows key rotation. The files are read at start-up, before "
                     "privileges are dropped." },
    { .section = "auth", .name = "jwt_issuer", .type = CONFIG_STRING,
      .store = CONFIG_STORE_STRING, .offset = AT(jwt_issuer),
      .reloadable = true,
      .description = "When set, a token's iss claim must equal this value. Unset does not check "
                     "iss." },
    { .section = "auth", .name = "jwt_audience", .type = CONFIG_STRING,
      .store = CONFIG_STORE_STRING, .offset = AT(jwt_audience),
      .reloadable = true,
      .description = "When set, a token's aud claim (a string or an array of strings) must "
                     "contain this value. Unset does not check aud." },
    { .section = "auth", .name = "jwt_leeway", .type = CONFIG_DURATION,
      .store = CONFIG_STORE_LONG, .offset = AT(jwt_leeway_s), .min = 0, .max = LONG_MAX,
      .unit_us = US_PER_S,
      .default_value = "30s", .reloadable = true,
      .description = "Clock difference tolerated when checking the exp and nbf claims of a "
                     "token." },
    { .section = "auth", .name = "jwt_require_exp", .type = CONFIG_BOOL,
      .store = CONFIG_STORE_BOOL, .offset = AT(jwt_require_exp),
      .default_value = "true", .reloadable = true,
      .description = "Reject tokens without an exp claim. Turning it off accepts tokens that "
                     "never expire." },
    { .section = "auth", .name = "jwt_max_token_bytes", .type = CONFIG_SIZE,
      .store = CONFIG_STORE_LONG, .offset = AT(jwt_max_token_bytes), .min = 1, .max = LONG_MAX,
      .default_value = "8kB", .reloadable = true,
      .description = "Longest token accepted; a longer one is rejected before it is decoded." },
    { .section = "auth", .name = "trusted_user_param", .type = CONFIG_STRING,
      .store = CONFIG_STORE_STRING, .offset = AT(trusted_user_param), .nonempty = true,
      .default_value = "REMOTE_USER", .reloadable = true,
      .description = "With mode = trusted_header: the FastCGI parameter that carries the user id, "
                     "such as REMOTE_USER set by the web server's own authentication." },
    { .section = "auth", .name = "trusted_device_param", .type = CONFIG_STRING,
      .store = CONFIG_STORE_STRING, .offset = AT(trusted_device_param), .nonempty = true,
      .default_value = "HTTP_X_DEVICE_ID", .reloadable = true,
      .description = "With mode = trusted_header: the FastCGI parameter that carries the device "
                     "id. HTTP_X_DEVICE_ID is the X-Device-Id request header." },

    /* [sync] */
    { .section = "sync", .name = "app_name", .type = CONFIG_STRING,
      .store = CONFIG_STORE_STRING, .offset = AT(app_name), .nonempty = true,
      .default_value = "oversyncd", .reloadable = true,
      .description = "Name of this sync service, by which it identifies itself, for example as "
                     "the application_name of its PostgreSQL connections." },
    { .section = "sync", .name = "schema_version", .type = CONFIG_INT,
      .store = CONFIG_STORE_LONG, .offset = AT(schema_version), .min = 1, .max = LONG_MAX,
      .default_value = "1", .reloadable = true,
      .description = "Version of the business schema that GET /sync/schema-version reports to "
                     "clients. Raise it when the synced tables change shape, so that clients know "
                     "to migrate." },
    { .section = "sync", .name = "max_upload_changes", .type = CONFIG_INT,
      .store = CONFIG_STORE_LONG, .offset = AT(max_upload_changes), .min = 1, .max = LONG_MAX,
      .default_value = "1000", .reloadable = true,
      .description = "Most changes accepted in one upload. A larger batch is answered with every "
                     "change invalid (bad_payload, batch too large) and nothing is written; "
                     "exactly this many is allowed." },
    { .section = "sync", .name = "max_payload_bytes", .type = CONFIG_SIZE,
      .store = CONFIG_STORE_LONG, .offset = AT(max_payload_bytes), .min = 1, .max = LONG_MAX,
      .default_value = "1MB", .reloadable = true,
      .description = "Largest payload of a single change, counted in bytes as sent. A larger one "
                     "is answered invalid (bad_payload)." },
    { .section = "sync", .name = "max_body_bytes", .type = CONFIG_SIZE,
      .store = CONFIG_STORE_LONG, .offset = AT(max_body_bytes), .min = 1, .max = LONG_MAX,
      .default_value = "16MB", .reloadable = true,
      .description = "Largest request body. A larger one is answered 413 payload_too_large before "
                     "it is parsed." },
    { .section = "sync", .name = "download_max_wait", .type = CONFIG_DURATION,
      .store = CONFIG_STORE_LONG, .offset = AT(download_max_wait_ms), .min = 0, .max = 3600L * 1000,
      .unit_us = US_PER_MS, .default_value = "30s", .reloadable = true,
      .description = "protocol = upload: the longest wait=S a GET /sync/download may ask for (a "
                     "long-poll: the answer comes as soon as a change of another device commits, "
                     "or after S with an empty page); a larger S is answered 400. The waiting "
                     "requests are held by the watch process, not by workers. 0 turns long-polls "
                     "off (every wait=S > 0 is answered 400)." },
    { .section = "sync", .name = "auto_migrate_fks", .type = CONFIG_BOOL,
      .store = CONFIG_STORE_BOOL, .offset = AT(auto_migrate_fks),
      .default_value = "true", .reloadable = true,
      .description = "At start-up, make the non-deferrable foreign keys of registered tables "
                     "DEFERRABLE INITIALLY DEFERRED, keeping their ON DELETE and ON UPDATE "
                     "actions, so that one upload can write a child before its parent. Turn it "
                     "off to manage the constraints yourself." },
    { .section = "sync", .name = "set_materialization", .type = CONFIG_BOOL,
      .store = CONFIG_STORE_BOOL, .offset = AT(set_materialization),
      .default_value = "true", .reloadable = true,
      .description = "Materialize set-based: per upload, the generic materializer writes each "
                     "table with one statement for its upserts (per set of present columns) and "
                     "one for its deletes, and sql: functions and plugins with a batch entry point "
                     "get all changes of a table in one call. When such a statement or call fails, "
                     "the upload's materialization is redone change by change, so that only the "
                     "failing changes are answered materialize_error (counted by "
                     "oversyncd_sync_materialize_fallbacks_total). Off: always change by change." },
    { .section = "sync", .name = "optimistic_upload", .type = CONFIG_BOOL,
      .store = CONFIG_STORE_BOOL, .offset = AT(optimistic_upload),
      .default_value = "true", .reloadable = true,
      .description = "Write an upload whose changes only create or update rows of tables that are "
                     "not materialized, without foreign-key references, each row and source change "
                     "id once, in one round trip without reading the rows first. When a row is not "
                     "at the version its change expects or a change was uploaded before (a retry), "
                     "the write fails as a whole, is rolled back and the upload is written the "
                     "careful way (read, classify, write), which gives the same answer (counted by "
                     "oversyncd_sync_upload_rewrites_total; each leaves an error line in "
                     "PostgreSQL's log). Off: always the careful way." },
    { .section = "sync", .name = "protocol", .type = CONFIG_ENUM,
      .store = CONFIG_STORE_ENUM, .offset = AT(protocol), .choices = protocol_choices,
      .default_value = "upload", .reloadable = false,
      .description = "Which protocol this deployment serves. upload: the Sept 2025 protocol "
                     "(/sync/upload, /sync/download; docs/api.md), for clients of go-oversync "
                     "78e1be6. bundle: the bundle protocol of go-oversync 1f1118f "
                     "(/sync/connect, /sync/push-sessions, /sync/pull, ...; "
                     "docs/bundle-protocol.md), which today's oversqlite client speaks; every "
                     "[table] then needs sync_key. The two keep different sidecars in schema sync, "
                     "so a database serves one of them (oversyncd migrate-to-bundle converts an "
                     "upload database)." },

    /* [bundle] */
    { .section = "bundle", .name = "watch", .type = CONFIG_BOOL,
      .store = CONFIG_STORE_BOOL, .offset = AT(bundle_watch),
      .default_value = "off", .reloadable = true,
      .description = "Serve GET /sync/watch, the Server-Sent Events stream that wakes clients when "
                     "a bundle of theirs commits, and advertise it (features.bundle_change_watch). "
                     "Off: /sync/watch answers 503 bundle_change_watch_disabled and clients poll." },
    { .section = "bundle", .name = "notify_channel", .type = CONFIG_STRING,
      .store = CONFIG_STORE_STRING, .offset = AT(notify_channel), .nonempty = true,
      .check = check_identifier,
      .default_value = "oversync_bundle_change_v1", .reloadable = false,
      .description = "PostgreSQL NOTIFY channel on which every committed bundle is announced "
                     "(inside its transaction) while watch is on. Writers of the go-oversync "
                     "library use oversync_bundle_change_v1; keep it so that their bundles wake "
                     "oversyncd's watchers." },
    { .section = "bundle", .name = "watch_heartbeat", .type = CONFIG_DURATION,
      .store = CONFIG_STORE_LONG, .offset = AT(watch_heartbeat_ms), .min = 1, .max = LONG_MAX / 1000,
      .unit_us = US_PER_MS, .default_value = "25s", .reloadable = true,
      .description = "How often an open /sync/watch stream gets a heartbeat comment, which keeps "
                     "proxies from closing it." },
    TTL("push_session_ttl", push_session_ttl_ms, "15min",
        "A push session not continued for this long expires (410 push_session_expired); each "
        "chunk extends it."),
    TTL("snapshot_session_ttl", snapshot_session_ttl_ms, "15min",
        "Lifetime of a snapshot session from its creation (410 snapshot_session_expired after)."),
    TTL("initialization_lease_ttl", initialization_lease_ttl_ms, "15min",
        "How long the source that initializes a scope from its local rows holds the lease "
        "(POST /sync/connect answers other sources retry_later meanwhile); each push of that "
        "source refreshes it."),
    ROWS("bundle", "default_rows_per_push_chunk", default_rows_per_push_chunk, "1000", 1, 1000000,
         "Rows per push chunk that GET /sync/capabilities advises."),
    ROWS("bundle", "max_rows_per_push_chunk", max_rows_per_push_chunk, "5000", 1, 1000000,
         "Most rows in one push chunk; a larger chunk is answered 400 push_chunk_invalid."),
    ROWS("bundle", "default_rows_per_committed_bundle_chunk", default_rows_per_committed_bundle_chunk,
         "1000", 1, 1000000, "Rows per page of GET /sync/committed-bundles/N/rows without max_rows."),
    ROWS("bundle", "max_rows_per_committed_bundle_chunk", max_rows_per_committed_bundle_chunk, "5000",
         1, 1000000, "Most rows per page of GET /sync/committed-bundles/N/rows (a larger max_rows is "
         "lowered to it)."),
    ROWS("bundle", "default_rows_per_snapshot_chunk", default_rows_per_snapshot_chunk, "1000", 1,
         1000000, "Rows per page of GET /sync/snapshot-sessions/ID without max_rows."),
    ROWS("bundle", "max_rows_per_snapshot_chunk", max_rows_per_snapshot_chunk, "5000", 1, 1000000,
         "Most rows per page of GET /sync/snapshot-sessions/ID (a larger max_rows is lowered to "
         "it)."),
    ROWS("bundle", "default_bundles_per_pull", default_bundles_per_pull, "1000", 1, 1000000,
         "Bundles per page of GET /sync/pull without max_bundles."),
    ROWS("bundle", "max_bundles_per_pull", max_bundles_per_pull, "5000", 1, 1000000,
         "Largest max_bundles GET /sync/pull accepts (a larger one is answered 400)."),
    ROWS("bundle", "max_rows_per_snapshot_session", max_rows_per_snapshot_session, "0", 0, LONG_MAX,
         "Most rows one snapshot session may hold; a larger snapshot fails (500 "
         "snapshot_session_create_failed, as the reference answers). 0: no limit."),
    { .section = "bundle", .name = "max_bytes_per_snapshot_session", .type = CONFIG_SIZE,
      .store = CONFIG_STORE_LONG, .offset = AT(max_bytes_per_snapshot_session), .min = 0,
      .max = LONG_MAX, .default_value = "0", .reloadable = true,
      .description = "Most payload bytes one snapshot session may hold (as byte_count counts "
                     "them); a larger snapshot fails like max_rows_per_snapshot_session. 0: no "
                     "limit." },
    ROWS("bundle", "retained_bundles_per_user", retained_bundles_per_user, "10000", 1, LONG_MAX,
         "Committed bundles kept per user for pulls and replays. Older ones are pruned after "
         "later commits (at most retention_prune_batch at a time); a client behind the retained "
         "floor is answered 409 history_pruned and rebuilds from a snapshot."),
    ROWS("bundle", "retention_prune_batch", retention_prune_batch, "1000", 1, LONG_MAX,
         "Most bundles one commit prunes, which bounds the extra work of a commit."),
    { .section = "bundle", .name = "test_routes", .type = CONFIG_BOOL,
      .store = CONFIG_STORE_BOOL, .offset = AT(test_routes),
      .default_value = "off", .reloadable = true,
      .description = "Serve the test-only routes that go-oversync's own test suites drive "
                     "(GET /test/watch-subscribers, POST /test/e2e/setup, POST /test/e2e/failures; "
                     "docs/compatibility.md). They let any authenticated caller create tables and "
                     "inject failures: never turn this on in production." },

    /* [table SCHEMA.NAME] */
    { .section = "table", .name = "sync_key", .type = CONFIG_STRING,
      .store = CONFIG_STORE_TABLE_STRING, .offset = TABLE_AT(sync_key), .check = check_identifier,
      .reloadable = false,
      .description = "With protocol = bundle (required there, refused otherwise): the table's "
                     "sync key column, of type uuid or text, by which clients name its rows "
                     "within their scope (the column _sync_scope_id)." },
    { .section = "table", .name = "materializer", .type = CONFIG_STRING,
      .store = CONFIG_STORE_MATERIALIZER,
      .default_value = "none", .reloadable = true,
      .description = "How changes to this table reach the business table SCHEMA.NAME. none: kept "
                     "in the sync tables only. generic: the payload is upserted into the table by "
                     "matching JSON keys to columns, and a delete removes the row by primary key. "
                     "sql:SCHEMA.FUNCTION: calls FUNCTION(op text, schema text, tbl text, pk "
                     "uuid, payload jsonb, user_id text), or the same without user_id; an "
                     "exception becomes the change's materialize error. plugin:/path/to/file.so: "
                     "a shared object implementing the interface of the installed header "
                     "oversyncd/materializer.h, loaded once per worker (the path must be "
                     "absolute). With any materializer but none, each row belongs to the user who "
                     "created it; other users' changes to it are refused (pk_taken)." },
};

const size_t n_config_keys = sizeof config_keys / sizeof config_keys[0];
#define N_KEYS (sizeof config_keys / sizeof config_keys[0])

static const struct config_key *find_key(const char *section, const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(config_keys[i].section, section) == 0 && strcmp(config_keys[i].name, name) == 0)
            return &config_keys[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                               */


static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static void lower_in_place(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static bool is_identifier(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_'))
            return false;
    return true;
}

void config_join_choices(const char *const *choices, char *out, size_t outlen)
{
    strbuf_t sb = STRBUF_INIT;
    for (size_t i = 0; choices[i]; i++) {
        if (i > 0)
            sb_puts(&sb, choices[i + 1] ? ", " : " or ");
        sb_puts(&sb, choices[i]);
    }
    snprintf(out, outlen, "%s", sb_cstr(&sb));
    sb_free(&sb);
}

/* The decimal digits at s (there is at least one) into *out; false when they overflow. *end is
 * left on the first character after the digits either way, so the caller can still tell a
 * malformed value from a merely too large one. */
static bool scan_digits(const char *s, const char **end, long long *out)
{
    long long v = 0;
    bool fits = true;
    const char *p = s;
    for (; isdigit((unsigned char)*p); p++) {
        int d = *p - '0';
        if (v > (LLONG_MAX - d) / 10)
            fits = false;
        else
            v = v * 10 + d;
    }
    *end = p;
    *out = v;
    return fits;
}

/* ------------------------------------------------------------------------------------------ */
/* Value parsers                                                                               */

enum number_status {
    NUM_OK,
    NUM_SYNTAX,
    NUM_NEGATIVE,     /* durations and sizes, which have no sign */
    NUM_TOO_SMALL,
    NUM_TOO_LARGE,
    NUM_NOT_WHOLE,    /* a duration finer than the key's unit */
};

struct unit {
    const char *name;
    long long factor;
};

static const struct unit duration_units[] = {
    { "us", 1 }, { "ms", 1000LL }, { "s", 1000000LL }, { "min", 60000000LL },
    { "h", 3600000000LL }, { "d", 86400000000LL }, { NULL, 0 },
};

static const struct unit size_units[] = {
    { "B", 1 }, { "kB", 1024LL }, { "MB", 1024LL * 1024 }, { "GB", 1024LL * 1024 * 1024 },
    { NULL, 0 },
};

/* A whole number, optional blanks, then an optional unit from units; a bare number is in
 * bare_factor. The result is expressed in units of `per`. */
static enum number_status parse_with_units(const char *s, const struct unit *units,
                                           long long bare_factor, long long per, long max,
                                           long *out)
{
    bool negative = (*s == '-');
    if (negative)
        s++;
    const char *p;
    long long n;
    if (!isdigit((unsigned char)*s))
        return NUM_SYNTAX;
    bool fits = scan_digits(s, &p, &n);
    while (*p == ' ' || *p == '\t')
        p++;
    long long factor = bare_factor;
    if (*p) {
        const struct unit *u = units;
        while (u->name && strcmp(u->name, p) != 0)
            u++;
        if (!u->name)
            return NUM_SYNTAX;
        factor = u->factor;
    }
    if (negative)
        return NUM_NEGATIVE;
    if (!fits || n > LLONG_MAX / factor)
        return NUM_TOO_LARGE;
    long long total = n * factor;
    if (total % per != 0)
        return NUM_NOT_WHOLE;
    total /= per;
    if (total > max)
        return NUM_TOO_LARGE;
    *out = (long)total;
    return NUM_OK;
}

bool config_parse_duration_ms(const char *s, long *out_ms)
{
    return parse_with_units(s, duration_units, US_PER_MS, US_PER_MS, LONG_MAX, out_ms) == NUM_OK;
}

bool config_parse_size(const char *s, long *out_bytes)
{
    return parse_with_units(s, size_units, 1, 1, LONG_MAX, out_bytes) == NUM_OK;
}

bool config_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "true", "on", "yes", "1" };
    static const char *const no[] = { "false", "off", "no", "0" };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static enum number_status parse_integer(const char *s, long min, long max, long *out)
{
    const char *p = s;
    bool negative = false;
    if (*p == '-' || *p == '+')
        negative = (*p++ == '-');
    long long n;
    const char *end;
    if (!isdigit((unsigned char)*p))
        return NUM_SYNTAX;
    bool fits = scan_digits(p, &end, &n);
    if (*end)
        return NUM_SYNTAX;
    if (!fits)
        return negative ? NUM_TOO_SMALL : NUM_TOO_LARGE;
    if (negative)
        n = -n;
    if (n < min)
        return NUM_TOO_SMALL;
    if (n > max)
        return NUM_TOO_LARGE;
    *out = (long)n;
    return NUM_OK;
}

static enum number_status parse_octal(const char *s, long max, long *out)
{
    long v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '7'; p++) {
        v = v * 8 + (*p - '0');
        if (v > max)
            return NUM_TOO_LARGE;
    }
    if (p == s || *p)
        return NUM_SYNTAX;
    *out = v;
    return NUM_OK;
}

/* A PostgreSQL name oversyncd puts into SQL as is: a-z, 0-9, _ (any case; lower-cased when
 * stored), at most 63 bytes. */
static bool check_identifier(const char *value, char *why, size_t whylen)
{
    size_t n = strlen(value);
    for (const char *p = value; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_')) {
            snprintf(why, whylen, "\"%s\" may contain only a-z, 0-9 and _", value);
            return false;
        }
    if (n > 63) {
        snprintf(why, whylen, "\"%s\" is longer than 63 bytes", value);
        return false;
    }
    return true;
}

static bool check_listen(const char *value, char *why, size_t whylen)
{
    if (strncmp(value, "unix:", 5) == 0) {
        const char *path = value + 5;
        if (path[0] != '/') {
            snprintf(why, whylen, "\"%s\": the socket path must be absolute (unix:/path)", value);
            return false;
        }
        if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            snprintf(why, whylen, "\"%s\": the socket path is longer than %zu bytes", value,
                     sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            return false;
        }
        return true;
    }
    const char *colon = strrchr(value, ':');
    bool host_ok = false;
    if (colon && colon > value) {
        if (value[0] == '[')
            host_ok = colon - value > 2 && colon[-1] == ']';
        else
            host_ok = memchr(value, ':', (size_t)(colon - value)) == NULL;
    }
    if (!host_ok) {
        snprintf(why, whylen, "\"%s\" is neither unix:/absolute/path nor host:port", value);
        return false;
    }
    long port;
    if (parse_integer(colon + 1, 1, 65535, &port) != NUM_OK || colon[1] == '+' ||
        colon[1] == '-') {
        snprintf(why, whylen, "\"%s\": the port must be a number from 1 to 65535", value);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Storing values                                                                              */

static void free_string_list(char **list)
{
    if (!list)
        return;
    for (char **p = list; *p; p++)
        free(*p);
    free(list);
}

static void free_key_files(struct jwt_key_file *files, int n)
{
    for (int i = 0; i < n; i++) {
        free(files[i].kid);
        free(files[i].path);
    }
    free(files);
}

static void free_table(struct table_conf *t)
{
    free(t->schema);
    free(t->name);
    free(t->materializer_arg);
    free(t->sync_key);
}

/* Splits a comma-separated list into trimmed, non-empty items (a malloc'd copy of the text in
 * *storage, item pointers in *items). */
static bool split_list(const char *value, char **storage, char ***items, int *n_items,
                       char *why, size_t whylen)
{
    *storage = xstrdup(value);
    *items = NULL;
    *n_items = 0;
    if (trim(*storage)[0] == '\0')
        return true;
    int cap = 0;
    for (char *p = *storage;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        char *item = trim(p);
        if (!*item) {
            snprintf(why, whylen, "\"%s\" has an empty item", value);
            free(*items);
            *items = NULL;
            return false;
        }
        if (*n_items == cap) {
            cap = cap ? cap * 2 : 4;
            *items = xrealloc(*items, (size_t)cap * sizeof **items);
        }
        (*items)[(*n_items)++] = item;
        if (!comma)
            break;
        p = comma + 1;
    }
    return true;
}

static bool store_algorithms(struct config *cfg, const struct config_key *key, const char *value,
                             char *why, size_t whylen)
{
    char *storage, **items;
    int n;
    if (!split_list(value, &storage, &items, &n, why, whylen)) {
        free(storage);
        return false;
    }
    if (n == 0) {
        snprintf(why, whylen, "must name at least one algorithm");
        free(storage);
        return false;
    }
    bool ok = true;
    char **list = xcalloc((size_t)n + 1, sizeof *list);
    for (int i = 0; ok && i < n; i++) {
        size_t c = 0;
        while (key->choices[c] && strcasecmp(key->choices[c], items[i]) != 0)
            c++;
        if (!key->choices[c]) {
            char allowed[128];
            config_join_choices(key->choices, allowed, sizeof allowed);
            snprintf(why, whylen, "\"%s\" is not a supported algorithm (%s)", items[i], allowed);
            ok = false;
            break;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(list[j], key->choices[c]) == 0) {
                snprintf(why, whylen, "%s is listed twice", key->choices[c]);
                ok = false;
            }
        if (ok)
            list[i] = xstrdup(key->choices[c]);
    }
    free(items);
    free(storage);
    if (!ok) {
        free_string_list(list);
        return false;
    }
    free_string_list(cfg->jwt_algorithms);
    cfg->jwt_algorithms = list;
    cfg->n_jwt_algorithms = n;
    return true;
}

static bool store_key_files(struct config *cfg, const char *value, char *why, size_t whylen)
{
    char *storage, **items;
    int n;
    if (!split_list(value, &storage, &items, &n, why, whylen)) {
        free(storage);
        return false;
    }
    bool ok = true;
    struct jwt_key_file *files = n ? xcalloc((size_t)n, sizeof *files) : NULL;
    for (int i = 0; ok && i < n; i++) {
        char *eq = strchr(items[i], '=');
        if (eq) {
            *eq = '\0';
            char *kid = trim(items[i]), *path = trim(eq + 1);
            if (!*kid || !*path) {
                snprintf(why, whylen, "\"%s=%s\" needs both a key id and a path (kid=path)", kid,
                         path);
                ok = false;
                break;
            }
            for (int j = 0; j < i; j++)
                if (files[j].kid && strcmp(files[j].kid, kid) == 0) {
                    snprintf(why, whylen, "key id \"%s\" is listed twice", kid);
                    ok = false;
                }
            files[i].kid = xstrdup(kid);
            files[i].path = xstrdup(path);
        } else {
            files[i].path = xstrdup(items[i]);
        }
    }
    free(items);
    free(storage);
    if (!ok) {
        free_key_files(files, n);
        return false;
    }
    free_key_files(cfg->jwt_public_key_files, cfg->n_jwt_public_key_files);
    cfg->jwt_public_key_files = files;
    cfg->n_jwt_public_key_files = n;
    return true;
}

static bool store_materializer(struct table_conf *t, const char *value, char *why, size_t whylen)
{
    static const char kinds[] =
        "none, generic, sql:SCHEMA.FUNCTION or plugin:/path/to/file.so";
    enum materializer_kind kind;
    char *arg = NULL;
    if (strcasecmp(value, "none") == 0) {
        kind = MATERIALIZER_NONE;
    } else if (strcasecmp(value, "generic") == 0) {
        kind = MATERIALIZER_GENERIC;
    } else if (strncasecmp(value, "sql:", 4) == 0) {
        kind = MATERIALIZER_SQL;
        arg = xstrdup(value + 4);
        lower_in_place(arg);
        char *dot = strchr(arg, '.');
        bool ok = dot != NULL;
        if (ok) {
            *dot = '\0';
            ok = is_identifier(arg) && is_identifier(dot + 1);
            *dot = '.';
        }
        if (!ok) {
            snprintf(why, whylen,
                     "\"%s\": expected sql:SCHEMA.FUNCTION, names made of a-z, 0-9 and _", value);
            free(arg);
            return false;
        }
    } else if (strncasecmp(value, "plugin:", 7) == 0) {
        kind = MATERIALIZER_PLUGIN;
        if (value[7] != '/') {
            snprintf(why, whylen,
                     "\"%s\": the plugin path must be absolute (plugin:/path/to/file.so)", value);
            return false;
        }
        arg = xstrdup(value + 7);
    } else {
        snprintf(why, whylen, "\"%s\" is not a materializer (%s)", value, kinds);
        return false;
    }
    free(t->materializer_arg);
    t->materializer = kind;
    t->materializer_arg = arg;
    return true;
}

static void number_message(enum number_status status, const char *value, const char *what,
                           const struct config_key *key, const char *unit_name, char *why,
                           size_t whylen)
{
    switch (status) {
    case NUM_NEGATIVE:
        snprintf(why, whylen, "\"%s\" is negative; it must be 0 or more", value);
        break;
    case NUM_NOT_WHOLE:
        snprintf(why, whylen, "\"%s\" is not a whole number of %s", value, unit_name);
        break;
    case NUM_TOO_SMALL:
    case NUM_TOO_LARGE:
        if (key->max != LONG_MAX)
            snprintf(why, whylen, "\"%s\" is out of range (%ld to %ld%s)", value, key->min,
                     key->max, unit_name ? unit_name : "");
        else if (status == NUM_TOO_SMALL)
            snprintf(why, whylen, "\"%s\" is out of range (at least %ld)", value, key->min);
        else
            snprintf(why, whylen, "\"%s\" is too large", value);
        break;
    default:
        snprintf(why, whylen, "\"%s\" is not %s", value, what);
        break;
    }
}

static const char *unit_short_name(long unit_us)
{
    return unit_us == US_PER_S ? "s" : "ms";
}

const char *config_unit_long_name(long unit_us)
{
    return unit_us == US_PER_S ? "seconds" : "milliseconds";
}

#define DURATION_SYNTAX "a duration (a whole number with an optional unit: us, ms, s, min, h, d)"
#define SIZE_SYNTAX "a size (a whole number of bytes with an optional unit: B, kB, MB, GB)"

/* Parses value for key into cfg (or the table t, for [table ...] keys). On failure writes the
 * reason, without the FILE:LINE and key prefix, into why and leaves cfg unchanged. */
static bool apply_value(struct config *cfg, struct table_conf *t, const struct config_key *key,
                        const char *value, char *why, size_t whylen)
{
    char *field = (char *)cfg + key->offset;
    long number = 0;
    enum number_status status;

    switch (key->type) {
    case CONFIG_STRING: {
        if (key->store == CONFIG_STORE_MATERIALIZER)
            return store_materializer(t, value, why, whylen);
        if (key->store == CONFIG_STORE_TABLE_STRING)
            field = (char *)t + key->offset;
        if (!*value && key->nonempty) {
            snprintf(why, whylen, "must not be empty");
            return false;
        }
        if (*value && key->check && !key->check(value, why, whylen))
            return false;
        char **slot = (char **)(void *)field;
        free(*slot);
        *slot = *value ? xstrdup(value) : NULL;
        if (*slot && key->check == check_identifier)
            lower_in_place(*slot);
        return true;
    }

    case CONFIG_INT:
        status = parse_integer(value, key->min, key->max, &number);
        if (status != NUM_OK) {
            number_message(status, value, "an integer", key, NULL, why, whylen);
            return false;
        }
        break;

    case CONFIG_OCTAL:
        status = parse_octal(value, key->max, &number);
        if (status == NUM_TOO_LARGE) {
            snprintf(why, whylen, "\"%s\" is out of range (0 to 0%lo)", value,
                     (unsigned long)key->max);
            return false;
        }
        if (status != NUM_OK) {
            number_message(status, value, "an octal mode such as 0660", key, NULL, why, whylen);
            return false;
        }
        break;

    case CONFIG_DURATION:
        status = parse_with_units(value, duration_units, key->unit_us, key->unit_us, key->max,
                                  &number);
        if (status == NUM_OK && number < key->min)
            status = NUM_TOO_SMALL;
        if (status != NUM_OK) {
            const char *unit = status == NUM_NOT_WHOLE ? config_unit_long_name(key->unit_us)
                                                       : unit_short_name(key->unit_us);
            number_message(status, value, DURATION_SYNTAX, key, unit, why, whylen);
            return false;
        }
        break;

    case CONFIG_SIZE:
        status = parse_with_units(value, size_units, 1, 1, key->max, &number);
        if (status == NUM_OK && number < key->min)
            status = NUM_TOO_SMALL;
        if (status != NUM_OK) {
            number_message(status, value, SIZE_SYNTAX, key, NULL, why, whylen);
            return false;
        }
        break;

    case CONFIG_BOOL: {
        bool b;
        if (!config_parse_bool(value, &b)) {
            snprintf(why, whylen,
                     "\"%s\" is not a boolean (true/false, on/off, yes/no or 1/0)", value);
            return false;
        }
        *(bool *)(void *)field = b;
        return true;
    }

    case CONFIG_ENUM: {
        int i = 0;
        while (key->choices[i] && strcasecmp(key->choices[i], value) != 0)
            i++;
        if (!key->choices[i]) {
            char allowed[128];
            config_join_choices(key->choices, allowed, sizeof allowed);
            snprintf(why, whylen, "\"%s\" is not one of %s", value, allowed);
            return false;
        }
        memcpy(field, &i, sizeof i);
        return true;
    }

    case CONFIG_LIST:
        if (key->store == CONFIG_STORE_ALGORITHMS)
            return store_algorithms(cfg, key, value, why, whylen);
        return store_key_files(cfg, value, why, whylen);
    }

    if (key->store == CONFIG_STORE_INT) {
        int v = (int)number;
        memcpy(field, &v, sizeof v);
    } else {
        memcpy(field, &number, sizeof number);
    }
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* The file                                                                                    */

struct parse_state {
    const char *file;
    int line;
    const char *section;           /* a config_sections[].name, NULL before the first header */
    int table;                     /* index in cfg->tables for a [table ...] section */
    int section_line[N_SECTIONS];  /* where each fixed section started, 0 = not yet */
    int key_line[N_KEYS];          /* where each key was set in the current section */
    int secret_line;
    int secret_file_line;
};

#define MALFORMED_LINE "malformed line (expected \"key = value\", \"[section]\" or a comment)"

static void section_label(const struct config *cfg, const struct parse_state *st, char *out,
                          size_t outlen)
{
    if (strcmp(st->section, CONFIG_TABLE_SECTION) == 0)
        snprintf(out, outlen, "[table %s.%s]", cfg->tables[st->table].schema,
                 cfg->tables[st->table].name);
    else
        snprintf(out, outlen, "[%s]", st->section);
}

static bool line_error(const struct parse_state *st, char *err, size_t errlen, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

static bool line_error(const struct parse_state *st, char *err, size_t errlen, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err_set(err, errlen, "%s:%d: %s", st->file, st->line, msg);
    return false;
}

static void apply_defaults(struct config *cfg, struct table_conf *t, const char *section)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct config_key *key = &config_keys[i];
        if (strcmp(key->section, section) != 0 || !key->default_value)
            continue;
        char why[256];
        if (!apply_value(cfg, t, key, key->default_value, why, sizeof why)) {
            fprintf(stderr, "oversyncd: default of [%s] %s: %s\n", key->section, key->name, why);
            abort();
        }
    }
}

static bool open_table_section(struct config *cfg, struct parse_state *st, char *spec,
                               char *err, size_t errlen)
{
    char *dot = strchr(spec, '.');
    if (!dot || dot == spec || !dot[1])
        return line_error(st, err, errlen, "[table %s]: expected [table SCHEMA.NAME]", spec);
    lower_in_place(spec);
    *dot = '\0';
    const char *schema = spec, *name = dot + 1;
    if (!is_identifier(schema) || !is_identifier(name))
        return line_error(st, err, errlen,
                          "[table %s.%s]: schema and table names may contain only a-z, 0-9 and _",
                          schema, name);
    for (int i = 0; i < cfg->n_tables; i++)
        if (strcmp(cfg->tables[i].schema, schema) == 0 && strcmp(cfg->tables[i].name, name) == 0)
            return line_error(st, err, errlen, "duplicate section [table %s.%s] (first on line %d)",
                              schema, name, cfg->tables[i].line);

    cfg->tables = xrealloc(cfg->tables, ((size_t)cfg->n_tables + 1) * sizeof *cfg->tables);
    struct table_conf *t = &cfg->tables[cfg->n_tables];
    memset(t, 0, sizeof *t);
    t->schema = xstrdup(schema);
    t->name = xstrdup(name);
    t->line = st->line;
    st->table = cfg->n_tables++;
    apply_defaults(cfg, t, CONFIG_TABLE_SECTION);
    return true;
}

static bool parse_section_header(struct config *cfg, struct parse_state *st, char *text,
                                 char *err, size_t errlen)
{
    size_t n = strlen(text);
    if (text[n - 1] != ']')
        return line_error(st, err, errlen,
                          "malformed section header (expected [section] alone on its line)");
    text[n - 1] = '\0';
    char *inner = trim(text + 1);

    memset(st->key_line, 0, sizeof st->key_line);
    if (strncmp(inner, "table", 5) == 0 && isspace((unsigned char)inner[5])) {
        st->section = CONFIG_TABLE_SECTION;
        return open_table_section(cfg, st, trim(inner + 5), err, errlen);
    }
    for (size_t i = 0; i < N_SECTIONS; i++) {
        if (strcmp(config_sections[i].name, CONFIG_TABLE_SECTION) == 0 ||
            strcmp(config_sections[i].name, inner) != 0)
            continue;
        if (st->section_line[i])
            return line_error(st, err, errlen, "duplicate section [%s] (first on line %d)", inner,
                              st->section_line[i]);
        st->section_line[i] = st->line;
        st->section = config_sections[i].name;
        return true;
    }
    if (strcmp(inner, "table") == 0)
        return line_error(st, err, errlen, "[table]: expected [table SCHEMA.NAME]");
    return line_error(st, err, errlen, "unknown section [%s]", inner);
}

static bool parse_assignment(struct config *cfg, struct parse_state *st, char *text, char *eq,
                             char *err, size_t errlen)
{
    *eq = '\0';
    char *name = trim(text);
    char *value = trim(eq + 1);
    if (!*name)
        return line_error(st, err, errlen, MALFORMED_LINE);
    for (const char *p = name; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_'))
            return line_error(st, err, errlen, MALFORMED_LINE);
    if (!st->section)
        return line_error(st, err, errlen, "key \"%s\" outside any section", name);

    char label[300];
    section_label(cfg, st, label, sizeof label);
    const struct config_key *key = find_key(st->section, name);
    if (!key)
        return line_error(st, err, errlen, "unknown key \"%s\" in %s", name, label);
    size_t k = (size_t)(key - config_keys);
    if (st->key_line[k])
        return line_error(st, err, errlen, "%s %s is set twice (first on line %d)", label, name,
                          st->key_line[k]);
    st->key_line[k] = st->line;

    size_t vlen = strlen(value);
    if (value[0] == '"') {
        if (vlen < 2 || value[vlen - 1] != '"')
            return line_error(st, err, errlen,
                              "%s %s: the value starts with a double quote but does not end with "
                              "one",
                              label, name);
        value[vlen - 1] = '\0';
        value++;
    } else if (strchr(value, '#')) {
        return line_error(st, err, errlen,
                          "%s %s: unquoted \"#\" in the value (comments go on their own line; "
                          "put a value containing # in double quotes)",
                          label, name);
    }

    char why[512];
    struct table_conf *t =
        strcmp(st->section, CONFIG_TABLE_SECTION) == 0 ? &cfg->tables[st->table] : NULL;
    if (!apply_value(cfg, t, key, value, why, sizeof why))
        return line_error(st, err, errlen, "%s %s: %s", label, name, why);

    if (strcmp(key->section, "auth") == 0) {
        if (strcmp(key->name, "jwt_secret") == 0)
            st->secret_line = st->line;
        else if (strcmp(key->name, "jwt_secret_file") == 0)
            st->secret_file_line = st->line;
    }
    return true;
}

static bool parse_line(struct config *cfg, struct parse_state *st, char *raw, char *err,
                       size_t errlen)
{
    char *text = trim(raw);
    if (!*text || *text == '#' || *text == ';')
        return true;
    if (*text == '[')
        return parse_section_header(cfg, st, text, err, errlen);
    char *eq = strchr(text, '=');
    if (!eq)
        return line_error(st, err, errlen, MALFORMED_LINE);
    return parse_assignment(cfg, st, text, eq, err, errlen);
}

static bool parse_file(struct config *cfg, struct parse_state *st, char *err, size_t errlen)
{
    FILE *f = fopen(st->file, "r");
    if (!f) {
        err_set(err, errlen, "%s: cannot open: %s", st->file, strerror(errno));
        return false;
    }
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    bool ok = true;
    while (ok && (len = getline(&buf, &cap, f)) >= 0) {
        st->line++;
        char *text = buf;
        if ((size_t)len != strlen(buf)) {
            ok = line_error(st, err, errlen, "the line contains a NUL byte");
            break;
        }
        /* Editors on some systems start UTF-8 files with a byte order mark. */
        if (st->line == 1 && strncmp(text, "\xEF\xBB\xBF", 3) == 0)
            text += 3;
        ok = parse_line(cfg, st, text, err, errlen);
    }
    if (ok && ferror(f)) {
        err_set(err, errlen, "%s: read error: %s", st->file, strerror(errno));
        ok = false;
    }
    free(buf);
    fclose(f);
    return ok;
}

/* Reads the secret from path into *out: one trailing newline (or CR LF) removed, not empty. */
static bool read_secret_file(const char *path, char **out, char *why, size_t whylen)
{
    enum { MAX_SECRET = 64 * 1024 };
    strbuf_t sb = STRBUF_INIT;
    enum sb_read_result rr = sb_read_file(&sb, path, MAX_SECRET);
    char *buf = sb.data;
    size_t n = sb.len;
    bool ok = false;
    if (rr == SB_READ_CANNOT_OPEN || rr == SB_READ_ERROR)
        snprintf(why, whylen, "cannot read \"%s\": %s", path, strerror(errno));
    else if (rr == SB_READ_TOO_LARGE)
        snprintf(why, whylen, "\"%s\" is larger than 64kB", path);
    else if (memchr(buf, '\0', n))
        snprintf(why, whylen, "\"%s\" contains a NUL byte", path);
    else
        ok = true;
    if (ok) {
        if (n > 0 && buf[n - 1] == '\n') {
            n--;
            if (n > 0 && buf[n - 1] == '\r')
                n--;
        }
        if (n == 0) {
            snprintf(why, whylen, "\"%s\" is empty", path);
            ok = false;
        }
    }
    if (!ok) {
        free(buf);
        return false;
    }
    buf[n] = '\0';
    *out = buf;
    return true;
}

/* Both variables may carry a password, so the value they replace is wiped, not just freed. */
static void env_override(char **slot, const char *variable)
{
    const char *value = getenv(variable);
    if (!value || !*value)
        return;
    if (*slot)
        explicit_bzero(*slot, strlen(*slot));
    free(*slot);
    *slot = xstrdup(value);
}

bool config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_SECTIONS; i++)
        if (strcmp(config_sections[i].name, CONFIG_TABLE_SECTION) != 0)
            apply_defaults(cfg, NULL, config_sections[i].name);

    struct parse_state st;
    memset(&st, 0, sizeof st);
    if (path) {
        cfg->path = xstrdup(path);
        st.file = cfg->path;
        if (!parse_file(cfg, &st, err, errlen))
            goto fail;
    }
    if (cfg->jwt_secret && cfg->jwt_secret_file) {
        st.line = st.secret_file_line;
        line_error(&st, err, errlen,
                   "[auth] jwt_secret_file cannot be combined with jwt_secret (line %d); "
                   "set only one of them",
                   st.secret_line);
        goto fail;
    }

    env_override(&cfg->database_url, "DATABASE_URL");
    env_override(&cfg->jwt_secret, "JWT_SECRET");
    if (!cfg->jwt_secret && cfg->jwt_secret_file) {
        char why[512];
        if (!read_secret_file(cfg->jwt_secret_file, &cfg->jwt_secret, why, sizeof why)) {
            st.line = st.secret_file_line;
            line_error(&st, err, errlen, "[auth] jwt_secret_file: %s", why);
            goto fail;
        }
    }
    return true;

fail:
    config_free(cfg);
    return false;
}

void config_free(struct config *cfg)
{
    /* Secrets (the database URL may hold a password) should not linger in freed heap memory. */
    if (cfg->jwt_secret)
        explicit_bzero(cfg->jwt_secret, strlen(cfg->jwt_secret));
    if (cfg->database_url)
        explicit_bzero(cfg->database_url, strlen(cfg->database_url));
    for (size_t i = 0; i < N_KEYS; i++)
        if (config_keys[i].store == CONFIG_STORE_STRING)
            free(*(char **)(void *)((char *)cfg + config_keys[i].offset));
    free(cfg->path);
    free_string_list(cfg->jwt_algorithms);
    free_key_files(cfg->jwt_public_key_files, cfg->n_jwt_public_key_files);
    for (int i = 0; i < cfg->n_tables; i++)
        free_table(&cfg->tables[i]);
    free(cfg->tables);
    memset(cfg, 0, sizeof *cfg);
}

const struct table_conf *config_find_table(const struct config *cfg, const char *schema,
                                           const char *name)
{
    for (int i = 0; i < cfg->n_tables; i++)
        if (strcmp(cfg->tables[i].schema, schema) == 0 && strcmp(cfg->tables[i].name, name) == 0)
            return &cfg->tables[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Checks across keys                                                                          */

/* The first configured HMAC algorithm (hmac) or the first public-key one (!hmac), or NULL. */
static const char *first_algorithm(const struct config *cfg, bool hmac)
{
    for (int i = 0; i < cfg->n_jwt_algorithms; i++)
        if ((strncmp(cfg->jwt_algorithms[i], "HS", 2) == 0) == hmac)
            return cfg->jwt_algorithms[i];
    return NULL;
}

bool config_validate(const struct config *cfg, char *err, size_t errlen)
{
    char why[512];
    if (!cfg->database_url || !*cfg->database_url) {
        err_set(err, errlen,
                "no database configured: set the DATABASE_URL environment variable or url in "
                "[database]");
        return false;
    }
    if (cfg->listen && !check_listen(cfg->listen, why, sizeof why)) {
        err_set(err, errlen, "[server] listen: %s", why);
        return false;
    }
    if (cfg->workers < 0) {
        err_set(err, errlen, "[server] workers: %d is negative (0 chooses automatically)",
                cfg->workers);
        return false;
    }
    if (cfg->max_requests < 0) {
        err_set(err, errlen, "[server] max_requests: %ld is negative (0 never recycles)",
                cfg->max_requests);
        return false;
    }
    for (int i = 0; i < cfg->n_tables; i++) {
        const struct table_conf *t = &cfg->tables[i];
        if (cfg->protocol == PROTOCOL_BUNDLE && !t->sync_key) {
            err_set(err, errlen, "%s:%d: [table %s.%s] needs sync_key (protocol = bundle): the "
                    "table's uuid or text key column", cfg->path ? cfg->path : "-", t->line,
                    t->schema, t->name);
            return false;
        }
        if (cfg->protocol == PROTOCOL_BUNDLE && t->materializer != MATERIALIZER_NONE) {
            err_set(err, errlen, "%s:%d: [table %s.%s] materializer applies only to protocol = "
                    "upload (the bundle protocol writes the table itself)",
                    cfg->path ? cfg->path : "-", t->line, t->schema, t->name);
            return false;
        }
        if (cfg->protocol == PROTOCOL_UPLOAD && t->sync_key) {
            err_set(err, errlen, "%s:%d: [table %s.%s] sync_key applies only to protocol = "
                    "bundle", cfg->path ? cfg->path : "-", t->line, t->schema, t->name);
            return false;
        }
    }
    if (cfg->default_rows_per_push_chunk > cfg->max_rows_per_push_chunk ||
        cfg->default_rows_per_committed_bundle_chunk > cfg->max_rows_per_committed_bundle_chunk ||
        cfg->default_rows_per_snapshot_chunk > cfg->max_rows_per_snapshot_chunk ||
        cfg->default_bundles_per_pull > cfg->max_bundles_per_pull) {
        err_set(err, errlen, "[bundle]: a default_* page size is larger than its max_*");
        return false;
    }
    if (cfg->auth_mode == AUTH_MODE_TRUSTED_HEADER) {
        if (!cfg->trusted_user_param || !*cfg->trusted_user_param ||
            !cfg->trusted_device_param || !*cfg->trusted_device_param) {
            err_set(err, errlen,
                    "[auth] mode = trusted_header needs trusted_user_param and "
                    "trusted_device_param");
            return false;
        }
        return true;
    }

    if (cfg->n_jwt_algorithms == 0) {
        err_set(err, errlen, "[auth] jwt_algorithms: no algorithm is configured");
        return false;
    }
    const char *hmac = first_algorithm(cfg, true);
    const char *public_key = first_algorithm(cfg, false);
    if (hmac && (!cfg->jwt_secret || !*cfg->jwt_secret)) {
        err_set(err, errlen,
                "[auth] jwt_algorithms includes %s but no secret is configured: set the "
                "JWT_SECRET environment variable, jwt_secret or jwt_secret_file",
                hmac);
        return false;
    }
    if (public_key && cfg->n_jwt_public_key_files == 0) {
        err_set(err, errlen,
                "[auth] jwt_algorithms includes %s but jwt_public_key_files is not set",
                public_key);
        return false;
    }
    if (!public_key && cfg->n_jwt_public_key_files > 0) {
        err_set(err, errlen,
                "[auth] jwt_public_key_files is set but jwt_algorithms has neither RS256 nor "
                "ES256");
        return false;
    }
    return true;
}
