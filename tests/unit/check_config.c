/* Unit tests of the configuration: defaults, every key read back, every error message, the
 * environment, the unit parsers, the cross-key checks, and that the example file and the docs
 * still say what config_keys says. */
#include "../../src/config.h"
#include "../../src/xalloc.h"
#include "../run_suites.h"

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* Fixture: a clean environment and temp files that are removed afterwards                     */

static const char *const env_names[] = { "DATABASE_URL", "JWT_SECRET" };
#define N_ENV (sizeof env_names / sizeof env_names[0])
static char *saved_env[N_ENV];

#define MAX_TEMP 16
static char temp_paths[MAX_TEMP][64];
static int n_temp;

static void setup(void)
{
    for (size_t i = 0; i < N_ENV; i++) {
        const char *v = getenv(env_names[i]);
        saved_env[i] = v ? xstrdup(v) : NULL;
        unsetenv(env_names[i]);
    }
    n_temp = 0;
}

static void teardown(void)
{
    for (size_t i = 0; i < N_ENV; i++) {
        if (saved_env[i])
            setenv(env_names[i], saved_env[i], 1);
        else
            unsetenv(env_names[i]);
        free(saved_env[i]);
        saved_env[i] = NULL;
    }
    for (int i = 0; i < n_temp; i++)
        unlink(temp_paths[i]);
    n_temp = 0;
}

/* Writes content to a new temp file; the path stays valid until teardown. */
static const char *write_temp(const char *content)
{
    ck_assert_int_lt(n_temp, MAX_TEMP);
    char *path = temp_paths[n_temp++];
    snprintf(path, sizeof temp_paths[0], "/tmp/check_config.XXXXXX");
    int fd = mkstemp(path);
    ck_assert_msg(fd >= 0, "mkstemp: %s", strerror(errno));
    size_t len = strlen(content);
    ck_assert_int_eq(write(fd, content, len), (ssize_t)len);
    close(fd);
    return path;
}

static bool load_text(struct config *cfg, const char *content, char *err, size_t errlen)
{
    return config_load(cfg, write_temp(content), err, errlen);
}

static bool is_zeroed(const struct config *cfg)
{
    static const struct config zero;
    return memcmp(cfg, &zero, sizeof zero) == 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Defaults and a complete file                                                                */

START_TEST(test_defaults)
{
    struct config cfg;
    char err[512] = "";
    ck_assert_msg(config_load(&cfg, NULL, err, sizeof err), "%s", err);
    ck_assert_ptr_null(cfg.path);
    ck_assert_ptr_null(cfg.listen);
    ck_assert_int_eq(cfg.workers, 0);
    ck_assert_int_eq(cfg.max_requests, 0);
    ck_assert_ptr_null(cfg.user);
    ck_assert_ptr_null(cfg.group);
    ck_assert_ptr_null(cfg.pid_file);
    ck_assert_int_eq(cfg.socket_mode, 0660);
    ck_assert_int_eq(cfg.log_level, LOG_INFO);
    ck_assert_int_eq(cfg.log_format, LOG_FORMAT_TEXT);
    ck_assert_ptr_null(cfg.database_url);
    ck_assert_int_eq(cfg.statement_timeout_ms, 30000);
    ck_assert_int_eq(cfg.idle_in_transaction_session_timeout_ms, 60000);
    ck_assert_int_eq(cfg.lock_timeout_ms, 5000);
    ck_assert_int_eq(cfg.auth_mode, AUTH_MODE_JWT);
    ck_assert_ptr_null(cfg.jwt_secret);
    ck_assert_ptr_null(cfg.jwt_secret_file);
    /* as go-oversync: every HMAC algorithm with the shared secret */
    ck_assert_int_eq(cfg.n_jwt_algorithms, 3);
    ck_assert_str_eq(cfg.jwt_algorithms[0], "HS256");
    ck_assert_str_eq(cfg.jwt_algorithms[1], "HS384");
    ck_assert_str_eq(cfg.jwt_algorithms[2], "HS512");
    ck_assert_ptr_null(cfg.jwt_algorithms[3]);
    ck_assert_int_eq(cfg.n_jwt_public_key_files, 0);
    ck_assert_ptr_null(cfg.jwt_public_key_files);
    ck_assert_ptr_null(cfg.jwt_issuer);
    ck_assert_ptr_null(cfg.jwt_audience);
    ck_assert_int_eq(cfg.jwt_leeway_s, 30);
    ck_assert(cfg.jwt_require_exp);
    ck_assert_int_eq(cfg.jwt_max_token_bytes, 8192);
    ck_assert_str_eq(cfg.trusted_user_param, "REMOTE_USER");
    ck_assert_str_eq(cfg.trusted_device_param, "HTTP_X_DEVICE_ID");
    ck_assert_str_eq(cfg.app_name, "oversyncd");
    ck_assert_int_eq(cfg.schema_version, 1);
    ck_assert_int_eq(cfg.max_upload_changes, 1000);
    ck_assert_int_eq(cfg.max_payload_bytes, 1024 * 1024);
    ck_assert_int_eq(cfg.max_body_bytes, 16 * 1024 * 1024);
    ck_assert(cfg.auto_migrate_fks);
    ck_assert(cfg.optimistic_upload);
    ck_assert_int_eq(cfg.n_tables, 0);
    ck_assert_ptr_null(cfg.tables);
    config_free(&cfg);
}
END_TEST

START_TEST(test_full_file)
{
    const char *text =
        "\xEF\xBB\xBF# every key, none at its default\n"
        "; a comment in the other style\n"
        "\n"
        "[server]\n"
        "listen = unix:/run/oversyncd/oversyncd.sock\n"
        "  workers=8  \n"
        "max_requests = 10000\n"
        "user = www-data\n"
        "group = www-data\n"
        "pid_file = /run/oversyncd.pid\n"
        "socket_mode = 0666\n"
        "log_level = DEBUG\n"
        "log_format = json\n"
        "\n"
        "[database]\n"
        "url = \"host=/run/postgresql dbname=app password=a#b\"\n"
        "statement_timeout = 500ms\n"
        "idle_in_transaction_session_timeout = 2min\n"
        "lock_timeout = 1500\n"
        "\n"
        "[ auth ]\n"
        "mode = trusted_header\n"
        "jwt_secret = s3cret;not-a-comment\n"
        "jwt_algorithms = HS512, rs256 ,ES256\n"
        "jwt_public_key_files = k1=/etc/oversyncd/k1.pem, /etc/oversyncd/plain.pem\n"
        "jwt_issuer = https://issuer.example\n"
        "jwt_audience = sync\n"
        "jwt_leeway = 2min\n"
        "jwt_require_exp = off\n"
        "jwt_max_token_bytes = 16kB\n"
        "trusted_user_param = HTTP_X_USER\n"
        "trusted_device_param = HTTP_X_DEVICE\n"
        "\n"
        "[sync]\n"
        "app_name = my-app\n"
        "schema_version = 7\n"
        "max_upload_changes = 50\n"
        "max_payload_bytes = 64kB\n"
        "max_body_bytes = 2MB\n"
        "auto_migrate_fks = no\n"
        "optimistic_upload = off\n"   /* in place of a blank line: the table lines stay where they were */
        "[table Business.Users]\n"
        "materializer = generic\n"
        "[table business.orders]\n"
        "materializer = sql:Business.Apply_Order\n"
        "[table business.items]\n"
        "materializer = plugin:/usr/lib/oversyncd/Items.so\n"
        "[table audit.log]\n"
        "[table audit.notes]\n"
        "materializer = none\n";
    struct config cfg;
    char err[512] = "";
    const char *path = write_temp(text);
    ck_assert_msg(config_load(&cfg, path, err, sizeof err), "%s", err);
    ck_assert_str_eq(cfg.path, path);

    ck_assert_str_eq(cfg.listen, "unix:/run/oversyncd/oversyncd.sock");
    ck_assert_int_eq(cfg.workers, 8);
    ck_assert_int_eq(cfg.max_requests, 10000);
    ck_assert_str_eq(cfg.user, "www-data");
    ck_assert_str_eq(cfg.group, "www-data");
    ck_assert_str_eq(cfg.pid_file, "/run/oversyncd.pid");
    ck_assert_int_eq(cfg.socket_mode, 0666);
    ck_assert_int_eq(cfg.log_level, LOG_DEBUG);
    ck_assert_int_eq(cfg.log_format, LOG_FORMAT_JSON);

    ck_assert_str_eq(cfg.database_url, "host=/run/postgresql dbname=app password=a#b");
    ck_assert_int_eq(cfg.statement_timeout_ms, 500);
    ck_assert_int_eq(cfg.idle_in_transaction_session_timeout_ms, 120000);
    ck_assert_int_eq(cfg.lock_timeout_ms, 1500);

    ck_assert_int_eq(cfg.auth_mode, AUTH_MODE_TRUSTED_HEADER);
    ck_assert_str_eq(cfg.jwt_secret, "s3cret;not-a-comment");
    ck_assert_ptr_null(cfg.jwt_secret_file);
    ck_assert_int_eq(cfg.n_jwt_algorithms, 3);
    ck_assert_str_eq(cfg.jwt_algorithms[0], "HS512");
    ck_assert_str_eq(cfg.jwt_algorithms[1], "RS256");
    ck_assert_str_eq(cfg.jwt_algorithms[2], "ES256");
    ck_assert_ptr_null(cfg.jwt_algorithms[3]);
    ck_assert_int_eq(cfg.n_jwt_public_key_files, 2);
    ck_assert_str_eq(cfg.jwt_public_key_files[0].kid, "k1");
    ck_assert_str_eq(cfg.jwt_public_key_files[0].path, "/etc/oversyncd/k1.pem");
    ck_assert_ptr_null(cfg.jwt_public_key_files[1].kid);
    ck_assert_str_eq(cfg.jwt_public_key_files[1].path, "/etc/oversyncd/plain.pem");
    ck_assert_str_eq(cfg.jwt_issuer, "https://issuer.example");
    ck_assert_str_eq(cfg.jwt_audience, "sync");
    ck_assert_int_eq(cfg.jwt_leeway_s, 120);
    ck_assert(!cfg.jwt_require_exp);
    ck_assert_int_eq(cfg.jwt_max_token_bytes, 16384);
    ck_assert_str_eq(cfg.trusted_user_param, "HTTP_X_USER");
    ck_assert_str_eq(cfg.trusted_device_param, "HTTP_X_DEVICE");

    ck_assert_str_eq(cfg.app_name, "my-app");
    ck_assert_int_eq(cfg.schema_version, 7);
    ck_assert_int_eq(cfg.max_upload_changes, 50);
    ck_assert_int_eq(cfg.max_payload_bytes, 65536);
    ck_assert_int_eq(cfg.max_body_bytes, 2 * 1024 * 1024);
    ck_assert(!cfg.auto_migrate_fks);
    ck_assert(!cfg.optimistic_upload);

    ck_assert_int_eq(cfg.n_tables, 5);
    ck_assert_str_eq(cfg.tables[0].schema, "business");
    ck_assert_str_eq(cfg.tables[0].name, "users");
    ck_assert_int_eq(cfg.tables[0].materializer, MATERIALIZER_GENERIC);
    ck_assert_ptr_null(cfg.tables[0].materializer_arg);
    ck_assert_int_eq(cfg.tables[0].line, 42);
    ck_assert_int_eq(cfg.tables[1].materializer, MATERIALIZER_SQL);
    ck_assert_str_eq(cfg.tables[1].materializer_arg, "business.apply_order");
    ck_assert_int_eq(cfg.tables[2].materializer, MATERIALIZER_PLUGIN);
    ck_assert_str_eq(cfg.tables[2].materializer_arg, "/usr/lib/oversyncd/Items.so");
    ck_assert_int_eq(cfg.tables[3].materializer, MATERIALIZER_NONE);
    ck_assert_ptr_null(cfg.tables[3].materializer_arg);
    ck_assert_int_eq(cfg.tables[4].materializer, MATERIALIZER_NONE);

    const struct table_conf *t = config_find_table(&cfg, "business", "orders");
    ck_assert_ptr_eq(t, &cfg.tables[1]);
    ck_assert_ptr_eq(config_find_table(&cfg, "audit", "log"), &cfg.tables[3]);
    ck_assert_ptr_null(config_find_table(&cfg, "business", "nope"));
    ck_assert_ptr_null(config_find_table(&cfg, "audit", "users"));
    config_free(&cfg);
}
END_TEST

START_TEST(test_empty_values_unset_optional_keys)
{
    struct config cfg;
    char err[512] = "";
    ck_assert_msg(load_text(&cfg,
                            "[server]\nlisten =\nuser = \"\"\n"
                            "[auth]\njwt_issuer =\njwt_public_key_files =\n",
                            err, sizeof err),
                  "%s", err);
    ck_assert_ptr_null(cfg.listen);
    ck_assert_ptr_null(cfg.user);
    ck_assert_ptr_null(cfg.jwt_issuer);
    ck_assert_int_eq(cfg.n_jwt_public_key_files, 0);
    config_free(&cfg);
}
END_TEST

START_TEST(test_free_is_idempotent)
{
    struct config cfg;
    memset(&cfg, 0, sizeof cfg);
    config_free(&cfg);
    ck_assert(is_zeroed(&cfg));

    char err[512] = "";
    ck_assert_msg(load_text(&cfg, "[table a.b]\nmaterializer = sql:a.f\n", err, sizeof err), "%s",
                  err);
    config_free(&cfg);
    ck_assert(is_zeroed(&cfg));
    config_free(&cfg);
    ck_assert(is_zeroed(&cfg));
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Every error of a file, with its exact message                                               */

struct error_case {
    const char *text;
    const char *message;   /* what follows "FILE:" */
};

static const struct error_case error_cases[] = {
    /* structure */
    { "[server]\nworkers = 2\n[bogus]\n", "3: unknown section [bogus]" },
    { "[server]\n\nwrokers = 4\n", "3: unknown key \"wrokers\" in [server]" },
    { "[server]\nworkers = 2\n# again\nworkers = 3\n",
      "4: [server] workers is set twice (first on line 2)" },
    { "workers = 2\n", "1: key \"workers\" outside any section" },
    { "[server]\nworkers\n",
      "2: malformed line (expected \"key = value\", \"[section]\" or a comment)" },
    { "[server]\n= 4\n",
      "2: malformed line (expected \"key = value\", \"[section]\" or a comment)" },
    { "[server]\nwork ers = 4\n",
      "2: malformed line (expected \"key = value\", \"[section]\" or a comment)" },
    { "[server\n", "1: malformed section header (expected [section] alone on its line)" },
    { "[server] # comment\n",
      "1: malformed section header (expected [section] alone on its line)" },
    { "[server]\n[sync]\n[server]\n", "3: duplicate section [server] (first on line 1)" },
    { "[database]\nurl = postgresql://u:pa#ss@h/db\n",
      "2: [database] url: unquoted \"#\" in the value (comments go on their own line; put a value "
      "containing # in double quotes)" },
    { "[database]\nurl = \"host=h\n",
      "2: [database] url: the value starts with a double quote but does not end with one" },
    { "[sync]\napp_name =\n", "2: [sync] app_name: must not be empty" },
    /* integers */
    { "[server]\nworkers = abc\n", "2: [server] workers: \"abc\" is not an integer" },
    { "[server]\nworkers = 4x\n", "2: [server] workers: \"4x\" is not an integer" },
    { "[server]\nworkers = 1.5\n", "2: [server] workers: \"1.5\" is not an integer" },
    { "[server]\nworkers = -1\n", "2: [server] workers: \"-1\" is out of range (0 to 2147483647)" },
    { "[server]\nworkers = 3000000000\n",
      "2: [server] workers: \"3000000000\" is out of range (0 to 2147483647)" },
    { "[server]\nmax_requests = 99999999999999999999\n",
      "2: [server] max_requests: \"99999999999999999999\" is too large" },
    { "[sync]\nschema_version = 0\n",
      "2: [sync] schema_version: \"0\" is out of range (at least 1)" },
    { "[sync]\nmax_upload_changes = 0\n",
      "2: [sync] max_upload_changes: \"0\" is out of range (at least 1)" },
    /* booleans */
    { "[sync]\nauto_migrate_fks = maybe\n",
      "2: [sync] auto_migrate_fks: \"maybe\" is not a boolean (true/false, on/off, yes/no or "
      "1/0)" },
    { "[sync]\noptimistic_upload = sometimes\n",
      "2: [sync] optimistic_upload: \"sometimes\" is not a boolean (true/false, on/off, yes/no or "
      "1/0)" },
    /* durations */
    { "[database]\nstatement_timeout = 10 parsecs\n",
      "2: [database] statement_timeout: \"10 parsecs\" is not a duration (a whole number with an "
      "optional unit: us, ms, s, min, h, d)" },
    { "[database]\nlock_timeout = 1.5s\n",
      "2: [database] lock_timeout: \"1.5s\" is not a duration (a whole number with an optional "
      "unit: us, ms, s, min, h, d)" },
    { "[database]\nlock_timeout = 5S\n",
      "2: [database] lock_timeout: \"5S\" is not a duration (a whole number with an optional unit: "
      "us, ms, s, min, h, d)" },
    { "[database]\nlock_timeout = -1\n",
      "2: [database] lock_timeout: \"-1\" is negative; it must be 0 or more" },
    { "[database]\nstatement_timeout = 1500us\n",
      "2: [database] statement_timeout: \"1500us\" is not a whole number of milliseconds" },
    { "[database]\nstatement_timeout = 30d\n",
      "2: [database] statement_timeout: \"30d\" is out of range (0 to 2147483647ms)" },
    { "[auth]\njwt_leeway = 1500ms\n",
      "2: [auth] jwt_leeway: \"1500ms\" is not a whole number of seconds" },
    /* sizes */
    { "[sync]\nmax_body_bytes = 16 XB\n",
      "2: [sync] max_body_bytes: \"16 XB\" is not a size (a whole number of bytes with an optional "
      "unit: B, kB, MB, GB)" },
    { "[sync]\nmax_body_bytes = 16mb\n",
      "2: [sync] max_body_bytes: \"16mb\" is not a size (a whole number of bytes with an optional "
      "unit: B, kB, MB, GB)" },
    { "[sync]\nmax_payload_bytes = 0\n",
      "2: [sync] max_payload_bytes: \"0\" is out of range (at least 1)" },
    { "[sync]\nmax_body_bytes = 9999999999999999GB\n",
      "2: [sync] max_body_bytes: \"9999999999999999GB\" is too large" },
    { "[auth]\njwt_leeway = 9999999999999999d\n",
      "2: [auth] jwt_leeway: \"9999999999999999d\" is too large" },
    { "[sync]\nmax_payload_bytes = -5kB\n",
      "2: [sync] max_payload_bytes: \"-5kB\" is negative; it must be 0 or more" },
    /* enums and octal */
    { "[server]\nlog_level = verbose\n",
      "2: [server] log_level: \"verbose\" is not one of debug, info, warn or error" },
    { "[server]\nlog_format = xml\n",
      "2: [server] log_format: \"xml\" is not one of text or json" },
    { "[auth]\nmode = basic\n", "2: [auth] mode: \"basic\" is not one of jwt or trusted_header" },
    { "[server]\nsocket_mode = 0999\n",
      "2: [server] socket_mode: \"0999\" is not an octal mode such as 0660" },
    { "[server]\nsocket_mode = 01777\n",
      "2: [server] socket_mode: \"01777\" is out of range (0 to 0777)" },
    /* lists */
    { "[auth]\njwt_algorithms = HS256, HS999\n",
      "2: [auth] jwt_algorithms: \"HS999\" is not a supported algorithm (HS256, HS384, HS512, "
      "RS256 or ES256)" },
    { "[auth]\njwt_algorithms = none\n",
      "2: [auth] jwt_algorithms: \"none\" is not a supported algorithm (HS256, HS384, HS512, "
      "RS256 or ES256)" },
    { "[auth]\njwt_algorithms = HS256, hs256\n",
      "2: [auth] jwt_algorithms: HS256 is listed twice" },
    { "[auth]\njwt_algorithms = HS256,,RS256\n",
      "2: [auth] jwt_algorithms: \"HS256,,RS256\" has an empty item" },
    { "[auth]\njwt_algorithms =\n", "2: [auth] jwt_algorithms: must name at least one algorithm" },
    { "[auth]\njwt_public_key_files = a=/k/a.pem, b=\n",
      "2: [auth] jwt_public_key_files: \"b=\" needs both a key id and a path (kid=path)" },
    { "[auth]\njwt_public_key_files = a=/k/a.pem, a=/k/b.pem\n",
      "2: [auth] jwt_public_key_files: key id \"a\" is listed twice" },
    /* [table ...] sections */
    { "[table business.bad-name]\n",
      "1: [table business.bad-name]: schema and table names may contain only a-z, 0-9 and _" },
    { "[table users]\n", "1: [table users]: expected [table SCHEMA.NAME]" },
    { "[table]\n", "1: [table]: expected [table SCHEMA.NAME]" },
    { "[table business.users]\nmaterializer = generic\n\n[table Business.USERS]\n",
      "4: duplicate section [table business.users] (first on line 1)" },
    { "[table a.b]\nmaterializer = magic\n",
      "2: [table a.b] materializer: \"magic\" is not a materializer (none, generic, "
      "sql:SCHEMA.FUNCTION or plugin:/path/to/file.so)" },
    { "[table a.b]\nmaterializer = sql:apply\n",
      "2: [table a.b] materializer: \"sql:apply\": expected sql:SCHEMA.FUNCTION, names made of "
      "a-z, 0-9 and _" },
    { "[table a.b]\nmaterializer = plugin:lib/x.so\n",
      "2: [table a.b] materializer: \"plugin:lib/x.so\": the plugin path must be absolute "
      "(plugin:/path/to/file.so)" },
    { "[table a.b]\nmaterialiser = none\n", "2: unknown key \"materialiser\" in [table a.b]" },
    { "[table a.b]\nmaterializer = none\nmaterializer = generic\n",
      "3: [table a.b] materializer is set twice (first on line 2)" },
    /* listen */
    { "[server]\nlisten = localhost\n",
      "2: [server] listen: \"localhost\" is neither unix:/absolute/path nor host:port" },
    { "[server]\nlisten = unix:run/x.sock\n",
      "2: [server] listen: \"unix:run/x.sock\": the socket path must be absolute (unix:/path)" },
    { "[server]\nlisten = 127.0.0.1:70000\n",
      "2: [server] listen: \"127.0.0.1:70000\": the port must be a number from 1 to 65535" },
    /* secrets */
    { "[auth]\njwt_secret = x\njwt_secret_file = /nonexistent/secret\n",
      "3: [auth] jwt_secret_file cannot be combined with jwt_secret (line 2); set only one of "
      "them" },
    { "[auth]\njwt_secret_file = /nonexistent/secret\n",
      "2: [auth] jwt_secret_file: cannot read \"/nonexistent/secret\": No such file or "
      "directory" },
};

START_TEST(test_file_errors)
{
    const struct error_case *c = &error_cases[_i];
    struct config cfg;
    char err[1024] = "";
    const char *path = write_temp(c->text);
    ck_assert_msg(!config_load(&cfg, path, err, sizeof err), "accepted: %s", c->text);
    char expected[1024];
    snprintf(expected, sizeof expected, "%s:%s", path, c->message);
    ck_assert_str_eq(err, expected);
    ck_assert_msg(is_zeroed(&cfg), "config_load left state behind after an error");
}
END_TEST

START_TEST(test_missing_file)
{
    struct config cfg;
    char err[512] = "";
    ck_assert(!config_load(&cfg, "/nonexistent/oversyncd.conf", err, sizeof err));
    ck_assert_str_eq(err, "/nonexistent/oversyncd.conf: cannot open: No such file or directory");
    ck_assert(is_zeroed(&cfg));
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Secrets and the environment                                                                 */

START_TEST(test_secret_file)
{
    const char *secret = write_temp("line-one\n\n");
    char text[256];
    snprintf(text, sizeof text, "[auth]\njwt_secret_file = %s\n", secret);
    struct config cfg;
    char err[512] = "";
    ck_assert_msg(load_text(&cfg, text, err, sizeof err), "%s", err);
    ck_assert_str_eq(cfg.jwt_secret, "line-one\n");
    ck_assert_str_eq(cfg.jwt_secret_file, secret);
    config_free(&cfg);

    secret = write_temp("crlf\r\n");
    snprintf(text, sizeof text, "[auth]\njwt_secret_file = %s\n", secret);
    ck_assert_msg(load_text(&cfg, text, err, sizeof err), "%s", err);
    ck_assert_str_eq(cfg.jwt_secret, "crlf");
    config_free(&cfg);

    secret = write_temp("no newline");
    snprintf(text, sizeof text, "[auth]\njwt_secret_file = %s\n", secret);
    ck_assert_msg(load_text(&cfg, text, err, sizeof err), "%s", err);
    ck_assert_str_eq(cfg.jwt_secret, "no newline");
    config_free(&cfg);
}
END_TEST

START_TEST(test_secret_file_empty)
{
    static const char *const contents[] = { "", "\n" };
    for (size_t i = 0; i < 2; i++) {
        const char *secret = write_temp(contents[i]);
        char text[256];
        snprintf(text, sizeof text, "# secret\n[auth]\njwt_secret_file = %s\n", secret);
        const char *path = write_temp(text);
        struct config cfg;
        char err[512] = "", expected[512];
        ck_assert(!config_load(&cfg, path, err, sizeof err));
        snprintf(expected, sizeof expected, "%s:3: [auth] jwt_secret_file: \"%s\" is empty", path,
                 secret);
        ck_assert_str_eq(err, expected);
        ck_assert(is_zeroed(&cfg));
    }
}
END_TEST

START_TEST(test_env_overrides)
{
    struct config cfg;
    char err[512] = "";
    const char *text = "[database]\nurl = dbname=fromfile\n[auth]\njwt_secret = file-secret\n";

    ck_assert_msg(load_text(&cfg, text, err, sizeof err), "%s", err);
    ck_assert_str_eq(cfg.database_url, "dbname=fromfile");
    ck_assert_str_eq(cfg.jwt_secret, "file-secret");
    config_free(&cfg);

    setenv("DATABASE_URL", "postgresql://env@localhost/app", 1);
    setenv("JWT_SECRET", "env-secret", 1);
    ck_assert_msg(load_text(&cfg, text, err, sizeof err), "%s", err);
    ck_assert_str_eq(cfg.database_url, "postgresql://env@localhost/app");
    ck_assert_str_eq(cfg.jwt_secret, "env-secret");
    config_free(&cfg);

    ck_assert_msg(config_load(&cfg, NULL, err, sizeof err), "%s", err);
    ck_assert_str_eq(cfg.database_url, "postgresql://env@localhost/app");
    ck_assert_str_eq(cfg.jwt_secret, "env-secret");
    config_free(&cfg);

    /* An empty variable is an accident more often than an intention: the file wins. */
    setenv("DATABASE_URL", "", 1);
    setenv("JWT_SECRET", "", 1);
    ck_assert_msg(load_text(&cfg, text, err, sizeof err), "%s", err);
    ck_assert_str_eq(cfg.database_url, "dbname=fromfile");
    ck_assert_str_eq(cfg.jwt_secret, "file-secret");
    config_free(&cfg);
}
END_TEST

START_TEST(test_env_secret_beats_secret_file)
{
    struct config cfg;
    char err[512] = "";
    setenv("JWT_SECRET", "env-secret", 1);
    /* The file is not even opened when JWT_SECRET is set. */
    ck_assert_msg(load_text(&cfg, "[auth]\njwt_secret_file = /nonexistent/secret\n", err,
                            sizeof err),
                  "%s", err);
    ck_assert_str_eq(cfg.jwt_secret, "env-secret");
    config_free(&cfg);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* The value parsers                                                                           */

struct duration_case {
    const char *text;
    bool ok;
    long ms;
};

static const struct duration_case duration_cases[] = {
    { "500ms", true, 500 },      { "3s", true, 3000 },       { "1min", true, 60000 },
    { "2h", true, 7200000 },     { "1d", true, 86400000 },   { "0", true, 0 },
    { "250", true, 250 },        { "2000us", true, 2 },      { "10 s", true, 10000 },
    { "-1", false, 0 },          { "-5s", false, 0 },        { "10 parsecs", false, 0 },
    { "", false, 0 },            { "s", false, 0 },          { "1.5s", false, 0 },
    { "1500us", false, 0 },      { "3S", false, 0 },         { "5 min ", false, 0 },
    { "99999999999999999999ms", false, 0 },                  { "9999999999999d", false, 0 },
};

START_TEST(test_parse_duration)
{
    const struct duration_case *c = &duration_cases[_i];
    long ms = -42;
    ck_assert_msg(config_parse_duration_ms(c->text, &ms) == c->ok, "\"%s\"", c->text);
    if (c->ok)
        ck_assert_int_eq(ms, c->ms);
    else
        ck_assert_int_eq(ms, -42);
}
END_TEST

struct size_case {
    const char *text;
    bool ok;
    long bytes;
};

static const struct size_case size_cases[] = {
    { "64kB", true, 65536 },         { "16MB", true, 16777216 },   { "1GB", true, 1073741824 },
    { "100", true, 100 },            { "100B", true, 100 },        { "8 kB", true, 8192 },
    { "0", true, 0 },                { "-1", false, 0 },           { "16mb", false, 0 },
    { "16KB", false, 0 },            { "1TB", false, 0 },          { "kB", false, 0 },
    { "1.5MB", false, 0 },           { "", false, 0 },
    { "99999999999999GB", false, 0 },
};

START_TEST(test_parse_size)
{
    const struct size_case *c = &size_cases[_i];
    long bytes = -42;
    ck_assert_msg(config_parse_size(c->text, &bytes) == c->ok, "\"%s\"", c->text);
    if (c->ok)
        ck_assert_int_eq(bytes, c->bytes);
    else
        ck_assert_int_eq(bytes, -42);
}
END_TEST

START_TEST(test_parse_bool)
{
    static const char *const yes[] = { "true", "TRUE", "on", "On", "yes", "YES", "1" };
    static const char *const no[] = { "false", "False", "off", "OFF", "no", "No", "0" };
    static const char *const bad[] = { "", "maybe", "2", "tru", "yess", "o" };
    bool b;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        b = false;
        ck_assert_msg(config_parse_bool(yes[i], &b) && b, "%s", yes[i]);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        b = true;
        ck_assert_msg(config_parse_bool(no[i], &b) && !b, "%s", no[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!config_parse_bool(bad[i], &b), "%s", bad[i]);
}
END_TEST

START_TEST(test_duration_base_units)
{
    struct config cfg;
    char err[512] = "";
    /* A bare number means milliseconds for the database timeouts, seconds for jwt_leeway. */
    ck_assert_msg(load_text(&cfg,
                            "[database]\nstatement_timeout = 250\nlock_timeout = 0\n"
                            "idle_in_transaction_session_timeout = 1h\n"
                            "[auth]\njwt_leeway = 45\n",
                            err, sizeof err),
                  "%s", err);
    ck_assert_int_eq(cfg.statement_timeout_ms, 250);
    ck_assert_int_eq(cfg.lock_timeout_ms, 0);
    ck_assert_int_eq(cfg.idle_in_transaction_session_timeout_ms, 3600000);
    ck_assert_int_eq(cfg.jwt_leeway_s, 45);
    config_free(&cfg);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* config_validate                                                                             */

struct validate_case {
    const char *text;
    const char *message;   /* NULL = valid */
};

static const struct validate_case validate_cases[] = {
    { "[auth]\njwt_secret = s\n",
      "no database configured: set the DATABASE_URL environment variable or url in [database]" },
    { "[database]\nurl = dbname=app\n",
      "[auth] jwt_algorithms includes HS256 but no secret is configured: set the JWT_SECRET "
      "environment variable, jwt_secret or jwt_secret_file" },
    { "[database]\nurl = dbname=app\n[auth]\njwt_algorithms = RS256\n",
      "[auth] jwt_algorithms includes RS256 but jwt_public_key_files is not set" },
    { "[database]\nurl = dbname=app\n[auth]\njwt_algorithms = HS384, ES256\njwt_secret = s\n",
      "[auth] jwt_algorithms includes ES256 but jwt_public_key_files is not set" },
    { "[database]\nurl = dbname=app\n[auth]\njwt_secret = s\njwt_public_key_files = /k.pem\n",
      "[auth] jwt_public_key_files is set but jwt_algorithms has neither RS256 nor ES256" },
    { "[database]\nurl = dbname=app\n[auth]\njwt_secret = s\n", NULL },
    { "[database]\nurl = dbname=app\n[auth]\njwt_algorithms = RS256, ES256\n"
      "jwt_public_key_files = a=/a.pem, b=/b.pem\n",
      NULL },
    { "[database]\nurl = dbname=app\n[auth]\nmode = trusted_header\n", NULL },
    { "[server]\nlisten = 127.0.0.1:9000\n[database]\nurl = dbname=app\n[auth]\njwt_secret = s\n",
      NULL },
    { "[server]\nlisten = [::1]:9000\n[database]\nurl = dbname=app\n[auth]\njwt_secret = s\n",
      NULL },
    { "[server]\nlisten = unix:/run/o.sock\n[database]\nurl = dbname=app\n"
      "[auth]\njwt_secret = s\n",
      NULL },
};

START_TEST(test_validate)
{
    const struct validate_case *c = &validate_cases[_i];
    struct config cfg;
    char err[512] = "";
    ck_assert_msg(load_text(&cfg, c->text, err, sizeof err), "%s", err);
    bool ok = config_validate(&cfg, err, sizeof err);
    if (c->message) {
        ck_assert_msg(!ok, "valid: %s", c->text);
        ck_assert_str_eq(err, c->message);
    } else {
        ck_assert_msg(ok, "%s: %s", c->text, err);
    }
    config_free(&cfg);
}
END_TEST

/* The bundle protocol's settings, checked across sections: "FILE:LINE: message" for a table. */
static const struct validate_case bundle_cases[] = {
    { "[sync]\nprotocol = bundle\n[table business.users]\n",
      ":8: [table business.users] needs sync_key (protocol = bundle): the table's uuid or text key column" },
    { "[table business.users]\nsync_key = id\n",
      ":6: [table business.users] sync_key applies only to protocol = bundle" },
    { "[sync]\nprotocol = bundle\n[table business.users]\nsync_key = id\nmaterializer = generic\n",
      ":8: [table business.users] materializer applies only to protocol = upload (the bundle protocol writes "
      "the table itself)" },
    { "[sync]\nprotocol = bundle\n[bundle]\ndefault_rows_per_push_chunk = 6000\n",
      "[bundle]: a default_* page size is larger than its max_*" },
    { "[sync]\nprotocol = bundle\n[bundle]\nmax_bundles_per_pull = 10\n",
      "[bundle]: a default_* page size is larger than its max_*" },
    { "[sync]\nprotocol = bundle\n[table business.users]\nsync_key = ID\n", NULL },
    { "[sync]\nprotocol = BUNDLE\n", NULL },
};

START_TEST(test_validate_bundle)
{
    const struct validate_case *c = &bundle_cases[_i];
    struct config cfg;
    char err[512] = "";
    char *text = xmalloc(strlen(c->text) + 128);
    sprintf(text, "[database]\nurl = dbname=app\n[auth]\njwt_secret = s\n\n%s", c->text);
    ck_assert_msg(load_text(&cfg, text, err, sizeof err), "%s", err);
    bool ok = config_validate(&cfg, err, sizeof err);
    if (c->message) {
        ck_assert_msg(!ok, "valid: %s", c->text);
        size_t n = strlen(err), m = strlen(c->message);
        ck_assert_msg(n >= m && strcmp(err + n - m, c->message) == 0, "got \"%s\", want it to end with \"%s\"", err,
                      c->message);
    } else {
        ck_assert_msg(ok, "%s: %s", c->text, err);
        ck_assert_int_eq(cfg.protocol, PROTOCOL_BUNDLE);
        if (cfg.n_tables)
            ck_assert_str_eq(cfg.tables[0].sync_key, "id");   /* lower-cased like the names */
    }
    config_free(&cfg);
    free(text);
}
END_TEST

/* Values of the bundle protocol's keys refused while the file is read. */
START_TEST(test_bundle_bad_values)
{
    static const char *const bad[][2] = {
        { "[sync]\nprotocol = bundles\n", "\"bundles\" is not one of upload or bundle" },
        { "[sync]\nprotocol = bundle\n[table business.users]\nsync_key = a-b\n", "\"a-b\" may contain only a-z, 0-9 and _" },
        { "[bundle]\nnotify_channel = c123456789012345678901234567890123456789012345678901234567890123\n",
          "is longer than 63 bytes" },
        { "[bundle]\npush_session_ttl = 0\n", "push_session_ttl: \"0\" is out of range" },
        { "[bundle]\nwatch_heartbeat = 0s\n", "watch_heartbeat: \"0s\" is out of range" },
        { "[bundle]\nmax_rows_per_push_chunk = 0\n", "max_rows_per_push_chunk" },
        { "[bundle]\nwatch = maybe\n", "\"maybe\" is not a boolean" },
        { "[bundle]\nnope = 1\n", "unknown key \"nope\" in [bundle]" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct config cfg;
        char err[512] = "";
        ck_assert_msg(!load_text(&cfg, bad[i][0], err, sizeof err), "accepted: %s", bad[i][0]);
        ck_assert_msg(strstr(err, bad[i][1]) != NULL, "%s: got \"%s\"", bad[i][0], err);
        ck_assert(is_zeroed(&cfg));
    }
}
END_TEST

/* Values the command line can set after loading (--listen, --workers). */
START_TEST(test_validate_overrides)
{
    struct config cfg;
    char err[512] = "";
    ck_assert_msg(load_text(&cfg, "[database]\nurl = dbname=app\n[auth]\njwt_secret = s\n", err,
                            sizeof err),
                  "%s", err);
    ck_assert(config_validate(&cfg, err, sizeof err));

    static const char *const bad_listen[][2] = {
        { "9000", "[server] listen: \"9000\" is neither unix:/absolute/path nor host:port" },
        { ":9000", "[server] listen: \":9000\" is neither unix:/absolute/path nor host:port" },
        { "::1:9000",
          "[server] listen: \"::1:9000\" is neither unix:/absolute/path nor host:port" },
        { "[::1]9000",
          "[server] listen: \"[::1]9000\" is neither unix:/absolute/path nor host:port" },
        { "host:0", "[server] listen: \"host:0\": the port must be a number from 1 to 65535" },
        { "host:65536",
          "[server] listen: \"host:65536\": the port must be a number from 1 to 65535" },
        { "host:+80", "[server] listen: \"host:+80\": the port must be a number from 1 to 65535" },
        { "host:", "[server] listen: \"host:\": the port must be a number from 1 to 65535" },
        { "unix:", "[server] listen: \"unix:\": the socket path must be absolute (unix:/path)" },
    };
    for (size_t i = 0; i < sizeof bad_listen / sizeof bad_listen[0]; i++) {
        cfg.listen = (char *)bad_listen[i][0];
        ck_assert_msg(!config_validate(&cfg, err, sizeof err), "%s", bad_listen[i][0]);
        ck_assert_str_eq(err, bad_listen[i][1]);
    }
    cfg.listen = "host:65535";
    ck_assert(config_validate(&cfg, err, sizeof err));

    char long_path[200] = "unix:/";
    memset(long_path + 6, 'x', 150);
    long_path[156] = '\0';
    cfg.listen = long_path;
    ck_assert(!config_validate(&cfg, err, sizeof err));
    ck_assert_msg(strstr(err, "the socket path is longer than") != NULL, "%s", err);
    cfg.listen = NULL;

    cfg.workers = -1;
    ck_assert(!config_validate(&cfg, err, sizeof err));
    ck_assert_str_eq(err, "[server] workers: -1 is negative (0 chooses automatically)");
    cfg.workers = 4;
    ck_assert(config_validate(&cfg, err, sizeof err));
    config_free(&cfg);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* The key table and the generated documentation                                               */

START_TEST(test_key_table)
{
    static const char *const restart_keys[] = { "listen", "user", "group", "pid_file",
                                                "socket_mode" };
    ck_assert_uint_gt(n_config_keys, 0);
    for (size_t i = 0; i < n_config_keys; i++) {
        const struct config_key *k = &config_keys[i];
        ck_assert_msg(k->description && strlen(k->description) > 20, "[%s] %s", k->section,
                      k->name);
        bool restart = false;
        for (size_t r = 0; r < sizeof restart_keys / sizeof restart_keys[0]; r++)
            restart |= strcmp(k->section, "server") == 0 && strcmp(k->name, restart_keys[r]) == 0;
        /* the protocol and what the bundle sidecar was laid out for: another value needs another
         * database, or at least a restart */
        restart |= strcmp(k->section, "sync") == 0 && strcmp(k->name, "protocol") == 0;
        restart |= strcmp(k->section, "bundle") == 0 && strcmp(k->name, "notify_channel") == 0;
        restart |= strcmp(k->section, "table") == 0 && strcmp(k->name, "sync_key") == 0;
        ck_assert_msg(k->reloadable == !restart, "[%s] %s reloadable", k->section, k->name);
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(strcmp(k->section, config_keys[j].section) != 0 ||
                              strcmp(k->name, config_keys[j].name) != 0,
                          "[%s] %s twice", k->section, k->name);
    }
}
END_TEST

static char *generated(void (*writer)(FILE *))
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    writer(f);
    fclose(f);
    return text;
}

static char *source_path(const char *relative)
{
    const char *top = getenv("top_srcdir");
    char *path = xmalloc(strlen(top ? top : ".") + strlen(relative) + 2);
    sprintf(path, "%s/%s", top ? top : ".", relative);
    return path;
}

static char *read_whole(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, mem);
    fclose(f);
    fclose(mem);
    return text;
}

static void write_whole(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* OVERSYNCD_WRITE_GENERATED=1 rewrites the generated files instead of only comparing them, for
 * whoever changes a key or its description. */
static bool regenerate(void)
{
    const char *v = getenv("OVERSYNCD_WRITE_GENERATED");
    return v && strcmp(v, "1") == 0;
}

#define REGENERATE_HINT "run OVERSYNCD_WRITE_GENERATED=1 tests/unit/check_config to regenerate it"

START_TEST(test_example_file_matches)
{
    char *path = source_path("etc/oversyncd.conf.example");
    char *want = generated(config_write_example);
    if (regenerate())
        write_whole(path, want);
    char *have = read_whole(path);
    ck_assert_msg(strcmp(have, want) == 0, "%s differs from config_write_example(); "
                  REGENERATE_HINT, path);
    free(have);
    free(want);
    free(path);
}
END_TEST

/* "# name = value" with a single-word value, or "# [table ...]": a line of the example that a
 * user would uncomment, as opposed to a line of a description. */
static bool is_commented_setting(const char *line)
{
    if (strncmp(line, "# [table ", 9) == 0)
        return line[strlen(line) - 1] == ']';
    if (strncmp(line, "# ", 2) != 0)
        return false;
    size_t name = strspn(line + 2, "abcdefghijklmnopqrstuvwxyz_");
    const char *rest = line + 2 + name;
    return name > 0 && (strcmp(rest, " =") == 0 ||
                        (strncmp(rest, " = ", 3) == 0 && !strchr(rest + 3, ' ')));
}

START_TEST(test_example_file_loads)
{
    /* Uncommenting every setting of the example must give a valid file with the same values. */
    char *example = generated(config_write_example);
    char *text = xmalloc(strlen(example) + 1);
    char *o = text;
    int uncommented = 0;
    for (char *line = strtok(example, "\n"); line; line = strtok(NULL, "\n")) {
        if (is_commented_setting(line)) {
            line += 2;
            uncommented++;
        }
        o += sprintf(o, "%s\n", line);
    }
    /* every key plus the [table ...] header, except [table] sync_key: the example's table is one of
     * protocol = upload, which refuses it */
    ck_assert_int_eq(uncommented, (int)n_config_keys);

    struct config from_example, defaults;
    char err[512] = "";
    ck_assert_msg(load_text(&from_example, text, err, sizeof err), "%s", err);
    ck_assert(config_load(&defaults, NULL, err, sizeof err));
    ck_assert_ptr_null(from_example.listen);
    ck_assert_int_eq(from_example.workers, defaults.workers);
    ck_assert_int_eq(from_example.socket_mode, defaults.socket_mode);
    ck_assert_int_eq(from_example.log_level, defaults.log_level);
    ck_assert_int_eq(from_example.statement_timeout_ms, defaults.statement_timeout_ms);
    ck_assert_int_eq(from_example.jwt_leeway_s, defaults.jwt_leeway_s);
    ck_assert_int_eq(from_example.jwt_max_token_bytes, defaults.jwt_max_token_bytes);
    ck_assert_int_eq(from_example.n_jwt_algorithms, defaults.n_jwt_algorithms);
    ck_assert_int_eq(from_example.max_body_bytes, defaults.max_body_bytes);
    ck_assert_str_eq(from_example.trusted_device_param, defaults.trusted_device_param);
    ck_assert_int_eq(from_example.auto_migrate_fks, defaults.auto_migrate_fks);
    ck_assert_int_eq(from_example.n_tables, 1);
    ck_assert_str_eq(from_example.tables[0].schema, "business");
    ck_assert_str_eq(from_example.tables[0].name, "users");
    config_free(&from_example);
    config_free(&defaults);
    free(text);
    free(example);
}
END_TEST

/* The part of a shipped file between the lines begin and end must be the writer's output. */
static void check_embedded(const char *relative, const char *begin, const char *end,
                           void (*writer)(FILE *), const char *writer_name)
{
    char *path = source_path(relative);
    char *want = generated(writer);
    char *have = read_whole(path);
    char *b = strstr(have, begin);
    ck_assert_msg(b != NULL, "%s has no line %s", path, begin);
    b += strlen(begin);
    char *e = strstr(b, end);
    ck_assert_msg(e != NULL, "%s has no line %s", path, end);

    if (regenerate()) {
        char *text = xmalloc(strlen(have) + strlen(want) + 1);
        sprintf(text, "%.*s%s%s", (int)(b - have), have, want, e);
        write_whole(path, text);
        free(text);
        free(have);
        have = read_whole(path);
        b = strstr(have, begin) + strlen(begin);
        e = strstr(b, end);
    }
    *e = '\0';
    ck_assert_msg(strcmp(b, want) == 0, "the generated part of %s differs from %s(); "
                  REGENERATE_HINT, path, writer_name);
    free(have);
    free(want);
    free(path);
}

START_TEST(test_docs_match)
{
    check_embedded("docs/configuration.md", "<!-- BEGIN GENERATED KEYS -->\n",
                   "<!-- END GENERATED KEYS -->", config_write_markdown, "config_write_markdown");
}
END_TEST

START_TEST(test_man_page_matches)
{
    check_embedded("man/oversyncd.conf.5", ".\\\" BEGIN GENERATED KEYS\n",
                   ".\\\" END GENERATED KEYS", config_write_man, "config_write_man");
}
END_TEST

/* ------------------------------------------------------------------------------------------ */

static TCase *fixture_case(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, teardown);
    return tc;
}

static Suite *load_suite(void)
{
    Suite *s = suite_create("config_load");
    TCase *tc = fixture_case("valid files");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_full_file);
    tcase_add_test(tc, test_empty_values_unset_optional_keys);
    tcase_add_test(tc, test_free_is_idempotent);
    tcase_add_test(tc, test_duration_base_units);
    suite_add_tcase(s, tc);

    tc = fixture_case("errors");
    tcase_add_loop_test(tc, test_file_errors, 0, (int)(sizeof error_cases / sizeof error_cases[0]));
    tcase_add_test(tc, test_missing_file);
    suite_add_tcase(s, tc);

    tc = fixture_case("secrets and environment");
    tcase_add_test(tc, test_secret_file);
    tcase_add_test(tc, test_secret_file_empty);
    tcase_add_test(tc, test_env_overrides);
    tcase_add_test(tc, test_env_secret_beats_secret_file);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *parser_suite(void)
{
    Suite *s = suite_create("config_parsers");
    TCase *tc = tcase_create("units");
    tcase_add_loop_test(tc, test_parse_duration, 0,
                        (int)(sizeof duration_cases / sizeof duration_cases[0]));
    tcase_add_loop_test(tc, test_parse_size, 0, (int)(sizeof size_cases / sizeof size_cases[0]));
    tcase_add_test(tc, test_parse_bool);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *validate_suite(void)
{
    Suite *s = suite_create("config_validate");
    TCase *tc = fixture_case("cross-key checks");
    tcase_add_loop_test(tc, test_validate, 0,
                        (int)(sizeof validate_cases / sizeof validate_cases[0]));
    tcase_add_test(tc, test_validate_overrides);
    tcase_add_loop_test(tc, test_validate_bundle, 0, (int)(sizeof bundle_cases / sizeof bundle_cases[0]));
    tcase_add_test(tc, test_bundle_bad_values);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *docs_suite(void)
{
    Suite *s = suite_create("config_docs");
    TCase *tc = fixture_case("generated");
    tcase_add_test(tc, test_key_table);
    tcase_add_test(tc, test_example_file_matches);
    tcase_add_test(tc, test_example_file_loads);
    tcase_add_test(tc, test_docs_match);
    tcase_add_test(tc, test_man_page_matches);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suites(load_suite(), parser_suite(), validate_suite(), docs_suite(), NULL);
}
