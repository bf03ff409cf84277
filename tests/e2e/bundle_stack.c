/* See bundle_stack.h. */
#include "bundle_stack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dbname[64];

struct e2e_stack *bundle_stack_start(const char *prefix, const char *app_name, const char *extra)
{
    snprintf(dbname, sizeof dbname, "%s_%ld", prefix, (long)getpid());
    free(e2e_psql(e2e_strf("DROP DATABASE IF EXISTS %s", dbname)));
    free(e2e_psql(e2e_strf("CREATE DATABASE %s", dbname)));
    char *cmd = e2e_strf("psql -X -q -v ON_ERROR_STOP=1 -d %s -f %s/sql/examples/bundle-business.sql >/dev/null",
                         dbname, e2e_top_srcdir());
    ck_assert_msg(system(cmd) == 0, "%s", cmd);
    free(cmd);
    /* DATABASE_URL overrides [database] url: the stack inherits a DATABASE_URL naming this
     * database (a later dbname wins in a conninfo string), derived from the original each time */
    static char *original;
    if (!original)
        original = strdup(getenv("DATABASE_URL"));
    char *url = e2e_strf("%s dbname=%s", original, dbname);
    setenv("DATABASE_URL", url, 1);
    free(url);
    char *conf = e2e_strf("[sync]\nprotocol = bundle\napp_name = %s\n"
                          "[server]\nworkers = 2\n"
                          "[table business.users]\nmaterializer = none\nsync_key = id\n"
                          "[table business.posts]\nmaterializer = none\nsync_key = id\n"
                          "[table business.files]\nmaterializer = none\nsync_key = id\n"
                          "[table business.file_reviews]\nmaterializer = none\nsync_key = id\n%s",
                          app_name, extra ? extra : "");
    struct e2e_stack *s = e2e_start(&(struct e2e_options){ .oversyncd_conf = conf });
    free(conf);
    return s;
}

void bundle_stack_stop(struct e2e_stack *s)
{
    e2e_stop(s);
    free(e2e_psql(e2e_strf("DROP DATABASE IF EXISTS %s", dbname)));
}

char *bundle_stack_sql(const char *query)
{
    char *cmd = e2e_strf("psql -X -A -t -q -v ON_ERROR_STOP=1 -d %s -c \"%s\"", dbname, query);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char buf[1024] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = '\0';
    while (n && buf[n - 1] == '\n')
        buf[--n] = '\0';
    ck_assert_msg(pclose(p) == 0, "%s", query);
    free(cmd);
    return strdup(buf);
}

long bundle_stack_req(struct e2e_stack *s, const char *method, const char *path, const char *token,
                      const char *source, const char *body, struct e2e_response *r)
{
    char auth[4096], src[512];
    const char *headers[3] = { NULL, NULL, NULL };
    int n = 0;
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        headers[n++] = auth;
    }
    if (source) {
        snprintf(src, sizeof src, "Oversync-Source-ID: %s", source);
        headers[n++] = src;
    }
    return e2e_request_ex(s, method, path, headers, body, body ? strlen(body) : 0, r);
}
