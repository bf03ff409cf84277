/* End-to-end harness: see e2e.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1   /* pipe2, strtok_r, nftw */
#endif
#include "e2e.h"

#include <curl/curl.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_START_TIMEOUT_MS 10000
#define STOP_LIGHTTPD_MS 5000
#define STOP_OVERSYNCD_MS 10000
#define MAX_STACKS 32

struct e2e_stack {
    pid_t owner;                 /* the process that started it */
    char dir[80];                /* short: the socket path inside must fit a sockaddr_un */
    char conf[128];              /* oversyncd.conf */
    char lconf[128];             /* lighttpd.conf */
    char sock[128];
    char pid_file[128];
    char olog[128];              /* oversyncd's stdout and stderr */
    char llog[128];              /* lighttpd's stdout and stderr */
    char lerr[128];              /* lighttpd's server.errorlog */
    char lacc[128];              /* lighttpd's accesslog */
    pid_t master;                /* 0 once reaped */
    pid_t master_pgid;           /* its process group (workers too), kept after it is reaped */
    pid_t lighttpd;              /* 0 once reaped */
    int port;
};

/* ---------------------------------------------------------------------------------- small */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        abort();
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

__attribute__((format(printf, 1, 2))) static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *s = xmalloc((size_t)n + 1);
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static char *buf_take(struct buf *b)
{
    if (!b->p)
        return xstrdup("");
    char *p = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

long e2e_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

void e2e_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

char *e2e_read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct buf b = { 0 };
    char chunk[8192];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        buf_add(&b, chunk, (size_t)n);
    close(fd);
    return buf_take(&b);
}

static bool write_file(const char *path, const char *text)
{
    char *tmp = fmt("%s.tmp%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(tmp);
        return false;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            free(tmp);
            return false;
        }
        off += (size_t)w;
    }
    bool ok = close(fd) == 0 && rename(tmp, path) == 0;
    if (!ok)
        unlink(tmp);
    free(tmp);
    return ok;
}

/* Every occurrence of from replaced by to. */
static char *replace_all(const char *text, const char *from, const char *to)
{
    struct buf b = { 0 };
    size_t fl = strlen(from);
    const char *p = text, *hit;
    while ((hit = strstr(p, from))) {
        buf_add(&b, p, (size_t)(hit - p));
        buf_str(&b, to);
        p = hit + fl;
    }
    buf_str(&b, p);
    return buf_take(&b);
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------------------- /proc helpers */

static bool proc_stat(pid_t pid, char *state, pid_t *ppid, pid_t *pgrp)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return false;
    text[n] = '\0';
    char *close_paren = strrchr(text, ')');   /* the command name may contain anything */
    int pp, pg;
    char st;
    if (!close_paren || sscanf(close_paren + 1, " %c %d %d", &st, &pp, &pg) != 3)
        return false;
    if (state)
        *state = st;
    if (ppid)
        *ppid = pp;
    if (pgrp)
        *pgrp = pg;
    return true;
}

bool e2e_pid_alive(pid_t pid)
{
    char st;
    return pid > 0 && proc_stat(pid, &st, NULL, NULL) && st != 'Z' && st != 'X';
}

bool e2e_wait_pids_gone(const pid_t *pids, int n, int timeout_ms)
{
    long deadline = e2e_now_ms() + timeout_ms;
    for (;;) {
        bool any = false;
        for (int i = 0; i < n; i++)
            if (e2e_pid_alive(pids[i]))
                any = true;
        if (!any)
            return true;
        if (e2e_now_ms() >= deadline)
            return false;
        e2e_sleep_ms(20);
    }
}

/* Calls fn for every live process; stops early when fn returns false. */
static void each_process(bool (*fn)(pid_t pid, char state, pid_t ppid, pid_t pgrp, void *arg), void *arg)
{
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid_t pid = (pid_t)atoi(e->d_name);
        char st;
        pid_t pp, pg;
        if (!proc_stat(pid, &st, &pp, &pg) || st == 'Z' || st == 'X')
            continue;
        if (!fn(pid, st, pp, pg, arg))
            break;
    }
    closedir(d);
}

struct group_query {
    pid_t pgid;
    bool found;
};

static bool in_group(pid_t pid, char state, pid_t ppid, pid_t pgrp, void *arg)
{
    (void)pid;
    (void)state;
    (void)ppid;
    struct group_query *q = arg;
    if (pgrp == q->pgid)
        q->found = true;
    return !q->found;
}

static bool group_alive(pid_t pgid)
{
    struct group_query q = { pgid, false };
    each_process(in_group, &q);
    return q.found;
}

/* SIGTERM to the group, SIGKILL after grace_ms, then waits (at most a second) for it to go. */
static void stop_group(pid_t pgid, int grace_ms)
{
    if (pgid <= 1 || !group_alive(pgid))
        return;
    killpg(pgid, SIGTERM);
    long deadline = e2e_now_ms() + grace_ms;
    while (group_alive(pgid) && e2e_now_ms() < deadline)
        e2e_sleep_ms(20);
    if (group_alive(pgid)) {
        killpg(pgid, SIGKILL);
        deadline = e2e_now_ms() + 1000;
        while (group_alive(pgid) && e2e_now_ms() < deadline)
            e2e_sleep_ms(20);
    }
}

/* -------------------------------------------------------------------------- PostgreSQL */

static const char *pg_dir(void)
{
    return getenv("OVERSYNCD_TEST_PGDIR");
}

/* Runs argv (searched in PATH), standard streams inherited; returns the exit status or -1. */
static int run_command(char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The cluster accepts connections: its socket answers, and postmaster.pid (when we can read it)
 * says ready. */
static bool pg_ready(void)
{
    const char *dir = pg_dir();
    if (!dir)
        return true;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/.s.PGSQL.5432", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool up = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    if (!up)
        return false;
    char *path = fmt("%s/data/postmaster.pid", dir);
    char *pidfile = e2e_read_file(path);
    free(path);
    bool ready = !pidfile || strstr(pidfile, "ready");
    free(pidfile);
    return ready;
}

static bool wait_pg_ready(int timeout_ms)
{
    long deadline = e2e_now_ms() + timeout_ms;
    while (!pg_ready()) {
        if (e2e_now_ms() >= deadline)
            return false;
        e2e_sleep_ms(50);
    }
    return true;
}

char *e2e_psql(const char *sql)
{
    int fds[2];
    if (pipe(fds) != 0)
        return NULL;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return NULL;
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execlp("psql", "psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0, cap = 256;
    char *out = malloc(cap);
    if (!out)
        abort();
    for (;;) {
        if (len + 128 > cap) {
            cap *= 2;
            out = realloc(out, cap);
            if (!out)
                abort();
        }
        ssize_t n = read(fds[0], out + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fds[0]);
    out[len] = '\0';
    while (len && out[len - 1] == '\n')
        out[--len] = '\0';
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            free(out);
            return NULL;
        }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static void pg_ctl(const char *what)
{
    const char *sh = getenv("OVERSYNCD_TEST_PGSH"), *dir = pg_dir();
    ck_assert_msg(sh && dir, "OVERSYNCD_TEST_PGSH/OVERSYNCD_TEST_PGDIR are not set: run the test "
                             "under tests/pg.sh");
    char *argv[] = { "sh", (char *)sh, (char *)what, (char *)dir, NULL };
    run_command(argv);   /* "start" fails harmlessly when someone else started it first */
}

/* ----------------------------------------------------------------------------- guardian */

struct guard_msg {
    char op;                 /* G/g: add/remove a process group; D/d: a directory; P/p: PG down/up */
    int id;
    char path[PATH_MAX < 2048 ? PATH_MAX : 2048];
};

static int guard_fd = -1;
static pid_t guard_owner;

static void guardian_main(int rfd)
{
    setsid();
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
    }
    for (int fd = 3; fd < 4096; fd++)
        if (fd != rfd)
            close(fd);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);

    pid_t groups[2 * MAX_STACKS];
    int ngroups = 0;
    static char dirs[MAX_STACKS][sizeof ((struct guard_msg *)0)->path];
    int ndirs = 0;
    bool pg_down = false;
    struct guard_msg m;
    for (;;) {
        size_t got = 0;
        while (got < sizeof m) {
            ssize_t r = read(rfd, (char *)&m + got, sizeof m - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        if (got < sizeof m)
            break;   /* the test process has gone */
        switch (m.op) {
        case 'G':
            if (ngroups < (int)(sizeof groups / sizeof groups[0]))
                groups[ngroups++] = m.id;
            break;
        case 'g':
            for (int i = 0; i < ngroups; i++)
                if (groups[i] == m.id)
                    groups[i--] = groups[--ngroups];
            break;
        case 'D':
            if (ndirs < MAX_STACKS)
                snprintf(dirs[ndirs++], sizeof dirs[0], "%s", m.path);
            break;
        case 'd':
            for (int i = 0; i < ndirs; i++)
                if (strcmp(dirs[i], m.path) == 0) {
                    memcpy(dirs[i], dirs[--ndirs], sizeof dirs[0]);
                    i--;
                }
            break;
        case 'P': pg_down = true; break;
        case 'p': pg_down = false; break;
        default: break;
        }
    }
    for (int i = 0; i < ngroups; i++)
        killpg(groups[i], SIGTERM);
    for (int i = 0; i < ngroups; i++)
        stop_group(groups[i], 5000);
    for (int i = 0; i < ndirs; i++)
        rm_rf(dirs[i]);
    if (pg_down && getenv("OVERSYNCD_TEST_PGSH") && pg_dir()) {
        char *argv[] = { "sh", getenv("OVERSYNCD_TEST_PGSH"), "start", (char *)pg_dir(), NULL };
        run_command(argv);
    }
    _exit(0);
}

static void guard_send(char op, int id, const char *path)
{
    if (guard_fd < 0 || guard_owner != getpid())
        return;
    struct guard_msg m;
    memset(&m, 0, sizeof m);
    m.op = op;
    m.id = id;
    if (path)
        snprintf(m.path, sizeof m.path, "%s", path);
    ssize_t w;
    do
        w = write(guard_fd, &m, sizeof m);   /* smaller than PIPE_BUF: atomic */
    while (w < 0 && errno == EINTR);
}

static void ensure_guardian(void)
{
    if (guard_owner == getpid())
        return;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return;
    }
    if (pid == 0) {
        close(p[1]);
        guardian_main(p[0]);
    }
    close(p[0]);
    guard_fd = p[1];   /* an inherited one (Check's fork mode) belongs to the parent: left alone */
    guard_owner = getpid();
}

/* ------------------------------------------------------------------------ registry, init */

static struct e2e_stack *live[MAX_STACKS];

static void stop_leftovers(void)
{
    for (int i = 0; i < MAX_STACKS; i++)
        if (live[i] && live[i]->owner == getpid())
            e2e_stop(live[i]);
}

static void ensure_init(void)
{
    static pid_t curl_ready_in;
    static bool atexit_done;
    if (!atexit_done) {
        atexit(stop_leftovers);
        atexit_done = true;
    }
    e2e_jwt_secret();
    if (curl_ready_in != getpid()) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        curl_ready_in = getpid();
    }
    ensure_guardian();
}

const char *e2e_jwt_secret(void)
{
    const char *s = getenv("JWT_SECRET");
    if (s && *s)
        return s;
    setenv("JWT_SECRET", E2E_DEFAULT_SECRET, 1);
    return getenv("JWT_SECRET");
}

void e2e_pg_stop(void)
{
    ensure_init();
    guard_send('P', 0, NULL);
    pg_ctl("stop");
}

void e2e_pg_start(void)
{
    ensure_init();
    pg_ctl("start");
    ck_assert_msg(wait_pg_ready(30000), "PostgreSQL did not come back within 30 s");
    guard_send('p', 0, NULL);
}

/* ---------------------------------------------------------------------- config merging */

struct lines {
    char **v;
    int n, cap;
};

static void lines_insert(struct lines *l, int at, char *line)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = xrealloc(l->v, sizeof *l->v * (size_t)l->cap);
    }
    memmove(l->v + at + 1, l->v + at, sizeof *l->v * (size_t)(l->n - at));
    l->v[at] = line;
    l->n++;
}

static void lines_split(struct lines *l, const char *text)
{
    const char *p = text;
    while (*p) {
        size_t n = strcspn(p, "\n");
        lines_insert(l, l->n, xstrndup(p, n));
        p += n;
        if (*p == '\n')
            p++;
    }
}

static void lines_free(struct lines *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

/* The lines, each ended by a newline; frees them. */
static char *lines_join(struct lines *l)
{
    struct buf b = { 0 };
    for (int i = 0; i < l->n; i++) {
        buf_str(&b, l->v[i]);
        buf_str(&b, "\n");
    }
    lines_free(l);
    return buf_take(&b);
}

/* s[0..n) without surrounding blanks, copied into out. */
static void trimmed(const char *s, size_t n, char *out, size_t outlen)
{
    while (n && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    snprintf(out, outlen, "%.*s", (int)n, s);
}

static bool line_section(const char *line, char *out, size_t outlen)
{
    char t[512];
    trimmed(line, strlen(line), t, sizeof t);
    size_t n = strlen(t);
    if (n < 2 || t[0] != '[' || t[n - 1] != ']')
        return false;
    trimmed(t + 1, n - 2, out, outlen);
    return true;
}

static bool line_key(const char *line, char *out, size_t outlen)
{
    while (isspace((unsigned char)*line))
        line++;
    if (*line == '#' || *line == ';' || *line == '[')
        return false;
    const char *eq = strchr(line, '=');
    if (!eq)
        return false;
    trimmed(line, (size_t)(eq - line), out, outlen);
    return *out != '\0';
}

static int find_section(const struct lines *l, const char *section)
{
    char name[512];
    for (int i = 0; i < l->n; i++)
        if (line_section(l->v[i], name, sizeof name) && strcmp(name, section) == 0)
            return i;
    return -1;
}

char *e2e_conf_merge(const char *base, const char *ini)
{
    struct lines b = { 0 }, o = { 0 };
    lines_split(&b, base);
    if (ini)
        lines_split(&o, ini);
    char section[512] = "", key[512], other[512];
    for (int i = 0; i < o.n; i++) {
        const char *line = o.v[i];
        if (line_section(line, section, sizeof section)) {
            if (find_section(&b, section) < 0) {
                if (b.n && b.v[b.n - 1][0])
                    lines_insert(&b, b.n, xstrdup(""));
                lines_insert(&b, b.n, fmt("[%s]", section));
            }
            continue;
        }
        if (!line_key(line, key, sizeof key))
            continue;
        ck_assert_msg(section[0], "e2e_conf_merge: \"%s\" comes before any [section]", line);
        int h = find_section(&b, section);
        int end = h + 1;
        while (end < b.n && !line_section(b.v[end], other, sizeof other))
            end++;
        bool replaced = false;
        for (int j = h + 1; j < end && !replaced; j++)
            if (line_key(b.v[j], other, sizeof other) && strcmp(other, key) == 0) {
                free(b.v[j]);
                b.v[j] = xstrdup(line);
                replaced = true;
            }
        if (!replaced)
            lines_insert(&b, h + 1, xstrdup(line));
    }
    lines_free(&o);
    return lines_join(&b);
}

/* ------------------------------------------------------------------------- processes */

static const char *top_builddir(void)
{
    return env_or("top_builddir", ".");
}

static const char *top_srcdir(void)
{
    return env_or("top_srcdir", top_builddir());
}

void e2e_business_tables(void)
{
    char *file = fmt("%s/sql/examples/business.sql", top_srcdir());
    char *argv[] = { "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", "SET client_min_messages = warning",
                     "-f", file, NULL };
    int rc = run_command(argv);
    ck_assert_msg(rc == 0, "psql -f %s failed (status %d): the business tables of lighttpd-example are missing",
                  file, rc);
    free(file);
}

/* Advisory locks of the uploads' lock space (pg_advisory_xact_lock(1870030713, hashtext(user))),
 * granted or waited for; -1 when psql fails. */
static int upload_locks(bool granted)
{
    char *n = e2e_psql(granted ? "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                 " AND classid = 1870030713 AND objsubid = 2 AND granted"
                               : "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                 " AND classid = 1870030713 AND objsubid = 2 AND NOT granted");
    int v = n ? atoi(n) : -1;
    free(n);
    return v;
}

pid_t e2e_hold_upload_lock(const char *user, int seconds, const char *log_path)
{
    int before = upload_locks(true);
    char *psql = e2e_find_program("PSQL", "psql");
    ck_assert_msg(psql != NULL, "psql not found");
    char *sql = fmt("SELECT pg_advisory_lock(1870030713, hashtext('%s')); SELECT pg_sleep(%d)", user, seconds);
    char *argv[] = { psql, "-X", "-q", "-c", sql, NULL };
    pid_t pid = e2e_spawn(argv, NULL, log_path);
    free(sql);
    free(psql);
    long deadline = e2e_now_ms() + 5000;
    while (upload_locks(true) <= before) {
        ck_assert_msg(e2e_now_ms() < deadline, "psql did not take the upload lock of %s (see %s)", user, log_path);
        e2e_sleep_ms(20);
    }
    return pid;
}

bool e2e_wait_upload_waiting(int timeout_ms)
{
    long deadline = e2e_now_ms() + timeout_ms;
    while (upload_locks(false) < 1) {
        if (e2e_now_ms() >= deadline)
            return false;
        e2e_sleep_ms(20);
    }
    return true;
}

static char *find_lighttpd(void)
{
    const char *env = getenv("LIGHTTPD");
    if (env && *env)
        return xstrdup(env);
    char *path = fmt("%s:/usr/sbin:/usr/local/sbin:/sbin", env_or("PATH", "/usr/bin:/bin"));
    char *save = NULL, *result = NULL;
    for (char *d = strtok_r(path, ":", &save); d && !result; d = strtok_r(NULL, ":", &save)) {
        char *cand = fmt("%s/lighttpd", *d ? d : ".");
        if (access(cand, X_OK) == 0)
            result = cand;
        else
            free(cand);
    }
    free(path);
    return result;
}

/* Forks argv[0] (a path) in a process group of its own, standard input from /dev/null, output
 * appended to log_path, with the environment envp (NULL: ours). It gets SIGTERM if this thread
 * dies. */
static pid_t spawn_server_env(char *const argv[], char *const envp[], const char *log_path)
{
    int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log < 0)
        return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(log);
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(126);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        const int sigs[] = { SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGALRM, SIGQUIT, SIGUSR1 };
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            sigaction(sigs[i], &sa, NULL);
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
            _exit(126);
        if (envp)
            execve(argv[0], argv, envp);
        else
            execv(argv[0], argv);
        static const char msg[] = "e2e: exec failed\n";
        ssize_t ignored = write(2, msg, sizeof msg - 1);
        (void)ignored;
        _exit(127);
    }
    setpgid(pid, pid);   /* also from here, so the group exists before we signal it */
    close(log);
    return pid;
}

static pid_t spawn_server(char *const argv[], const char *log_path)
{
    return spawn_server_env(argv, NULL, log_path);
}

/* Reaps pid if it has exited (within timeout_ms); returns true and its status then. */
static bool reap_within(pid_t pid, int timeout_ms, int *status)
{
    long deadline = e2e_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (status)
                *status = st;
            return true;
        }
        if (r < 0 && errno != EINTR) {
            if (status)
                *status = -1;
            return true;   /* not our child (any more) */
        }
        if (e2e_now_ms() >= deadline)
            return false;
        e2e_sleep_ms(10);
    }
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    socklen_t len = sizeof sa;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static bool unix_socket_answers(const char *path)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path)
        return false;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static bool file_has(const char *path, const char *needle)
{
    char *text = e2e_read_file(path);
    bool has = text && strstr(text, needle);
    free(text);
    return has;
}

static void dump_file(const char *title, const char *path)
{
    char *text = e2e_read_file(path);
    size_t len = text ? strlen(text) : 0;
    const char *start = text ? text : "";
    if (len > 12000) {
        start = text + len - 12000;
        start += strcspn(start, "\n");
    }
    fprintf(stderr, "---- %s (%s) ----\n%s%s", title, path, text ? start : "(not readable)\n",
            len && start[strlen(start) - 1] != '\n' ? "\n" : "");
    free(text);
}

void e2e_dump_logs(const struct e2e_stack *s)
{
    if (!s)
        return;
    dump_file("oversyncd", s->olog);
    dump_file("lighttpd output", s->llog);
    dump_file("lighttpd error log", s->lerr);
    dump_file("lighttpd access log", s->lacc);
}

/* ----------------------------------------------------------------------------- stacks */

static void registry_add(struct e2e_stack *s)
{
    for (int i = 0; i < MAX_STACKS; i++)
        if (!live[i] || live[i]->owner != getpid()) {
            live[i] = s;   /* a slot of the parent's (Check fork mode) is not ours to keep */
            return;
        }
}

static void registry_remove(struct e2e_stack *s)
{
    for (int i = 0; i < MAX_STACKS; i++)
        if (live[i] == s)
            live[i] = NULL;
}

__attribute__((format(printf, 2, 3))) static void start_failed(struct e2e_stack *s, const char *f, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, f);
    vsnprintf(msg, sizeof msg, f, ap);
    va_end(ap);
    fprintf(stderr, "e2e_start: %s\n", msg);
    e2e_dump_logs(s);
    e2e_stop(s);
    ck_abort_msg("e2e_start: %s", msg);
}

char *e2e_read_shipped(const char *rel)
{
    char *path = fmt("%s/%s", top_srcdir(), rel);
    char *text = e2e_read_file(path);
    ck_assert_msg(text != NULL, "cannot read %s (is top_srcdir set?)", path);
    free(path);
    return text;
}

static void write_lighttpd_conf(struct e2e_stack *s, const char *extra)
{
    char *text = e2e_read_shipped("lighttpd-example/lighttpd.conf");
    ck_assert_msg(strstr(text, "server.port = 8080") && strstr(text, "/run/oversyncd/oversyncd.sock"),
                  "lighttpd-example/lighttpd.conf no longer has \"server.port = 8080\" and the socket "
                  "/run/oversyncd/oversyncd.sock, which the tests substitute");
    char *run = fmt("%s/run", s->dir), *www = fmt("%s/www", s->dir), *log = fmt("%s/log", s->dir);
    char *port = fmt("server.port = %d", s->port);
    char *a = replace_all(text, "/run/oversyncd", run);
    char *b = replace_all(a, "/var/www/html", www);
    char *c = replace_all(b, "/var/log/lighttpd", log);
    char *d = replace_all(c, "server.port = 8080", port);
    char *full = extra ? fmt("%s\n# ---- added by the test\n%s\n", d, extra) : xstrdup(d);
    ck_assert_msg(write_file(s->lconf, full), "cannot write %s", s->lconf);
    free(text), free(run), free(www), free(log), free(port);
    free(a), free(b), free(c), free(d), free(full);
}

static void write_oversyncd_conf(struct e2e_stack *s, const char *extra)
{
    char *text = e2e_read_shipped("lighttpd-example/oversyncd.conf");
    ck_assert_msg(strstr(text, "unix:/run/oversyncd/oversyncd.sock"),
                  "lighttpd-example/oversyncd.conf no longer listens on "
                  "unix:/run/oversyncd/oversyncd.sock, which the tests substitute");
    char *run = fmt("%s/run", s->dir);
    char *a = replace_all(text, "/run/oversyncd", run);
    char *merged = e2e_conf_merge(a, extra);
    ck_assert_msg(write_file(s->conf, merged), "cannot write %s", s->conf);
    free(text), free(run), free(a), free(merged);
}

static void ensure_pg_running(void)
{
    if (!pg_dir() || pg_ready())
        return;
    /* The guardian of a test that stopped it may be starting it right now. */
    if (wait_pg_ready(3000))
        return;
    pg_ctl("start");
    ck_assert_msg(wait_pg_ready(30000), "PostgreSQL is down and could not be started");
}

/* Starts the master with the configuration file as it is and waits until its socket accepts
 * connections. */
static bool launch_oversyncd(struct e2e_stack *s, long deadline, char *why, size_t whylen)
{
    char *bin = fmt("%s/oversyncd", top_builddir());
    if (access(bin, X_OK) != 0) {
        snprintf(why, whylen, "%s is not built", bin);
        free(bin);
        return false;
    }
    char *argv[] = { bin, "-c", s->conf, NULL };
    s->master = spawn_server(argv, s->olog);
    free(bin);
    if (s->master <= 0) {
        s->master = 0;
        snprintf(why, whylen, "cannot fork oversyncd: %s", strerror(errno));
        return false;
    }
    s->master_pgid = s->master;
    guard_send('G', s->master_pgid, NULL);
    while (!unix_socket_answers(s->sock)) {
        int st;
        if (reap_within(s->master, 0, &st)) {
            s->master = 0;
            snprintf(why, whylen, "oversyncd exited during start-up (status 0x%x)", st);
            return false;
        }
        if (e2e_now_ms() >= deadline) {
            snprintf(why, whylen, "oversyncd's socket %s did not answer in time", s->sock);
            return false;
        }
        e2e_sleep_ms(10);
    }
    return true;
}

struct e2e_stack *e2e_start(const struct e2e_options *opts)
{
    static const struct e2e_options none;
    if (!opts)
        opts = &none;
    ensure_init();
    ck_assert_msg(getenv("DATABASE_URL") != NULL,
                  "DATABASE_URL is not set: run the test under tests/pg.sh (make check does)");
    ensure_pg_running();
    e2e_business_tables();
    long deadline = e2e_now_ms() + (opts->start_timeout_ms > 0 ? opts->start_timeout_ms
                                                               : DEFAULT_START_TIMEOUT_MS);

    struct e2e_stack *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->owner = getpid();
    const char *tmp = env_or("TMPDIR", "/tmp");
    if (strlen(tmp) > 50)
        tmp = "/tmp";   /* DIR/run/oversyncd.sock must stay below 108 bytes */
    snprintf(s->dir, sizeof s->dir, "%s/oversyncd-e2e.XXXXXX", tmp);
    ck_assert_msg(mkdtemp(s->dir) != NULL, "mkdtemp %s: %s", s->dir, strerror(errno));
    guard_send('D', 0, s->dir);
    registry_add(s);
    /* lighttpd and the workers run as www-data when we are root: they must reach the socket. */
    chmod(s->dir, 0755);
    char *run = fmt("%s/run", s->dir), *www = fmt("%s/www", s->dir), *log = fmt("%s/log", s->dir);
    mkdir(run, 0755);
    mkdir(www, 0755);
    mkdir(log, 0755);
    struct passwd *pw = geteuid() == 0 ? getpwnam("www-data") : NULL;
    if (pw && chown(log, pw->pw_uid, pw->pw_gid) != 0)
        fprintf(stderr, "e2e_start: chown %s: %s\n", log, strerror(errno));
    snprintf(s->conf, sizeof s->conf, "%s/oversyncd.conf", s->dir);
    snprintf(s->lconf, sizeof s->lconf, "%s/lighttpd.conf", s->dir);
    snprintf(s->sock, sizeof s->sock, "%s/oversyncd.sock", run);
    snprintf(s->pid_file, sizeof s->pid_file, "%s/oversyncd.pid", run);
    snprintf(s->olog, sizeof s->olog, "%s/oversyncd.log", s->dir);
    snprintf(s->llog, sizeof s->llog, "%s/lighttpd.out", s->dir);
    snprintf(s->lerr, sizeof s->lerr, "%s/oversyncd-error.log", log);
    snprintf(s->lacc, sizeof s->lacc, "%s/oversyncd-access.log", log);
    free(run), free(www), free(log);

    /* oversyncd */
    write_oversyncd_conf(s, opts->oversyncd_conf);
    char why[512];
    if (!launch_oversyncd(s, deadline, why, sizeof why))
        start_failed(s, "%s", why);

    /* lighttpd, on a free port: another process may take the port between our probe and
     * lighttpd's bind, so a failed bind is retried on another one. */
    char *lbin = find_lighttpd();
    if (!lbin)
        start_failed(s, "lighttpd not found (set LIGHTTPD)");
    for (int attempt = 0;; attempt++) {
        s->port = free_port();
        if (s->port <= 0) {
            free(lbin);
            start_failed(s, "no free loopback port");
        }
        write_lighttpd_conf(s, opts->lighttpd_conf);
        unlink(s->lerr);
        char *largv[] = { lbin, "-D", "-f", s->lconf, NULL };
        s->lighttpd = spawn_server(largv, s->llog);
        if (s->lighttpd <= 0) {
            free(lbin);
            start_failed(s, "cannot fork lighttpd: %s", strerror(errno));
        }
        guard_send('G', s->lighttpd, NULL);
        /* "server started" is logged after the port is bound: until then a GET could reach
         * somebody else's server on that port. */
        bool started = false, exited = false;
        int st = 0;
        while (!started && !exited && e2e_now_ms() < deadline) {
            started = file_has(s->lerr, "server started");
            if (!started)
                exited = reap_within(s->lighttpd, 0, &st);
            if (!started && !exited)
                e2e_sleep_ms(10);
        }
        if (started)
            break;
        if (exited) {
            guard_send('g', s->lighttpd, NULL);
            s->lighttpd = 0;
            if (attempt < 5 && (file_has(s->llog, "Address already in use") ||
                                file_has(s->lerr, "Address already in use")))
                continue;
            free(lbin);
            start_failed(s, "lighttpd exited during start-up (status 0x%x)", st);
        }
        free(lbin);
        start_failed(s, "lighttpd did not start in time");
    }
    free(lbin);

    /* Ready when /health answers through lighttpd. */
    struct e2e_response r;
    for (;;) {
        e2e_request(s, "GET", "/health", NULL, NULL, &r);
        bool ok = r.status == 200 && e2e_body_has(&r, "{\"status\":\"healthy\",\"service\":\"oversyncd\"}");
        long status = r.status;
        char body[200];
        snprintf(body, sizeof body, "%s", r.body);
        e2e_response_free(&r);
        if (ok)
            break;
        int st;
        if (reap_within(s->master, 0, &st)) {
            s->master = 0;
            start_failed(s, "oversyncd exited during start-up (status 0x%x)", st);
        }
        if (reap_within(s->lighttpd, 0, &st)) {
            s->lighttpd = 0;
            start_failed(s, "lighttpd exited during start-up (status 0x%x)", st);
        }
        if (e2e_now_ms() >= deadline)
            start_failed(s, "GET /health did not answer 200 through lighttpd in time "
                            "(last: HTTP %ld %s)", status, body);
        e2e_sleep_ms(50);
    }
    return s;
}

void e2e_stop(struct e2e_stack *s)
{
    if (!s)
        return;
    if (s->owner != getpid()) {   /* a copy inherited by a forked child: not ours */
        registry_remove(s);
        return;
    }
    if (s->lighttpd > 0) {
        kill(s->lighttpd, SIGTERM);
        if (!reap_within(s->lighttpd, STOP_LIGHTTPD_MS, NULL)) {
            killpg(s->lighttpd, SIGKILL);
            reap_within(s->lighttpd, 2000, NULL);
        }
        stop_group(s->lighttpd, 1000);
        guard_send('g', s->lighttpd, NULL);
        s->lighttpd = 0;
    }
    if (s->master > 0) {
        kill(s->master, SIGTERM);
        if (!reap_within(s->master, STOP_OVERSYNCD_MS, NULL)) {
            fprintf(stderr, "e2e_stop: oversyncd did not stop within %d ms; killing it\n",
                    STOP_OVERSYNCD_MS);
            killpg(s->master_pgid, SIGKILL);
            reap_within(s->master, 2000, NULL);
        }
        s->master = 0;
    }
    if (s->master_pgid > 0) {
        stop_group(s->master_pgid, 2000);   /* workers of a master that died */
        guard_send('g', s->master_pgid, NULL);
        s->master_pgid = 0;
    }
    if (getenv("E2E_VERBOSE") && *getenv("E2E_VERBOSE") && strcmp(getenv("E2E_VERBOSE"), "0") != 0)
        e2e_dump_logs(s);
    if (s->dir[0]) {
        const char *keep = getenv("E2E_KEEP");
        if (keep && *keep && strcmp(keep, "0") != 0)
            fprintf(stderr, "e2e_stop: kept %s\n", s->dir);
        else
            rm_rf(s->dir);
        guard_send('d', 0, s->dir);
    }
    registry_remove(s);
    free(s);
}

int e2e_stop_oversyncd(struct e2e_stack *s, int sig, int timeout_ms)
{
    if (s->master <= 0)
        return -1;
    kill(s->master, sig);
    int st;
    if (!reap_within(s->master, timeout_ms, &st))
        return -1;
    s->master = 0;
    return st;
}

void e2e_start_oversyncd(struct e2e_stack *s)
{
    ck_assert_msg(s->master == 0, "e2e_start_oversyncd: oversyncd is still running");
    if (s->master_pgid > 0) {
        stop_group(s->master_pgid, 2000);   /* workers of the previous master, if any */
        guard_send('g', s->master_pgid, NULL);
        s->master_pgid = 0;
    }
    char why[512];
    if (!launch_oversyncd(s, e2e_now_ms() + DEFAULT_START_TIMEOUT_MS, why, sizeof why)) {
        fprintf(stderr, "e2e_start_oversyncd: %s\n", why);
        e2e_dump_logs(s);
        ck_abort_msg("e2e_start_oversyncd: %s", why);
    }
}

pid_t e2e_master_pid(const struct e2e_stack *s)
{
    return s->master;
}

pid_t e2e_lighttpd_pid(const struct e2e_stack *s)
{
    return s->lighttpd;
}

int e2e_port(const struct e2e_stack *s)
{
    return s->port;
}

const char *e2e_dir(const struct e2e_stack *s)
{
    return s->dir;
}

const char *e2e_conf_path(const struct e2e_stack *s)
{
    return s->conf;
}

const char *e2e_lighttpd_conf_path(const struct e2e_stack *s)
{
    return s->lconf;
}

const char *e2e_socket_path(const struct e2e_stack *s)
{
    return s->sock;
}

const char *e2e_pid_file_path(const struct e2e_stack *s)
{
    return s->pid_file;
}

const char *e2e_oversyncd_log_path(const struct e2e_stack *s)
{
    return s->olog;
}

struct children_query {
    pid_t parent;
    pid_t *out;
    int max, n;
    bool workers_only;   /* leave out the watch process */
};

/* Is pid oversyncd's watch process (named so with PR_SET_NAME)? */
static bool is_watch_process(pid_t pid)
{
    char path[64], comm[32] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool is = fgets(comm, sizeof comm, f) && strncmp(comm, "oversyncd-watch", 15) == 0;
    fclose(f);
    return is;
}

static bool child_of(pid_t pid, char state, pid_t ppid, pid_t pgrp, void *arg)
{
    (void)state;
    (void)pgrp;
    struct children_query *q = arg;
    if (ppid == q->parent && !(q->workers_only && is_watch_process(pid))) {
        if (q->n < q->max)
            q->out[q->n] = pid;
        q->n++;
    }
    return true;
}

static int cmp_pid(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

int e2e_worker_pids(const struct e2e_stack *s, pid_t *out, int max)
{
    if (s->master <= 0)
        return 0;
    struct children_query q = { s->master, out, max, 0, true };
    each_process(child_of, &q);
    int n = q.n < max ? q.n : max;
    qsort(out, (size_t)n, sizeof *out, cmp_pid);
    return q.n;
}

int e2e_workers_of(pid_t master, pid_t *out, int max)
{
    struct children_query q = { master, out, max, 0, true };
    each_process(child_of, &q);
    int n = q.n < max ? q.n : max;
    qsort(out, (size_t)n, sizeof *out, cmp_pid);
    return q.n;
}

pid_t e2e_watch_pid(const struct e2e_stack *s)
{
    pid_t kids[300];
    struct children_query q = { s->master, kids, 300, 0, false };
    if (s->master <= 0)
        return 0;
    each_process(child_of, &q);
    for (int i = 0; i < q.n && i < 300; i++)
        if (is_watch_process(kids[i]))
            return kids[i];
    return 0;
}

int e2e_wait_workers(const struct e2e_stack *s, int n, pid_t *out, int max, int timeout_ms)
{
    long deadline = e2e_now_ms() + timeout_ms;
    for (;;) {
        int got = e2e_worker_pids(s, out, max);
        if (got == n || e2e_now_ms() >= deadline)
            return got;
        e2e_sleep_ms(20);
    }
}

void e2e_rewrite_conf(struct e2e_stack *s, const char *ini)
{
    char *text = e2e_read_file(s->conf);
    ck_assert_msg(text != NULL, "cannot read %s", s->conf);
    char *merged = e2e_conf_merge(text, ini);
    ck_assert_msg(write_file(s->conf, merged), "cannot write %s", s->conf);
    free(text);
    free(merged);
}

void e2e_reload(struct e2e_stack *s)
{
    ck_assert_msg(s->master > 0, "e2e_reload: oversyncd is not running");
    kill(s->master, SIGHUP);
}

/* ----------------------------------------------------------------------- any server */

void e2e_prepare(void)
{
    ensure_init();
    ck_assert_msg(getenv("DATABASE_URL") != NULL,
                  "DATABASE_URL is not set: run the test under tests/pg.sh (make check does)");
    ensure_pg_running();
    e2e_business_tables();
}

const char *e2e_top_builddir(void)
{
    return top_builddir();
}

const char *e2e_top_srcdir(void)
{
    return top_srcdir();
}

char *e2e_strf(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *s = xmalloc((size_t)n + 1);
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

char *e2e_replace(const char *text, const char *from, const char *to)
{
    return replace_all(text, from, to);
}

bool e2e_write_file(const char *path, const char *text)
{
    return write_file(path, text);
}

bool e2e_file_has(const char *path, const char *needle)
{
    return file_has(path, needle);
}

void e2e_dump_file(const char *title, const char *path)
{
    dump_file(title, path);
}

char *e2e_find_program(const char *env_var, const char *name)
{
    const char *env = env_var ? getenv(env_var) : NULL;
    if (env && *env)
        return xstrdup(env);
    char *path = fmt("%s:/usr/sbin:/usr/local/sbin:/sbin:/usr/bin:/bin", env_or("PATH", "/usr/bin:/bin"));
    char *save = NULL, *result = NULL;
    for (char *d = strtok_r(path, ":", &save); d && !result; d = strtok_r(NULL, ":", &save)) {
        char *cand = fmt("%s/%s", *d ? d : ".", name);
        if (access(cand, X_OK) == 0)
            result = cand;
        else
            free(cand);
    }
    free(path);
    return result;
}

char *e2e_make_dir(void)
{
    ensure_init();
    const char *tmp = env_or("TMPDIR", "/tmp");
    if (strlen(tmp) > 50)
        tmp = "/tmp";   /* sockets below it must fit a sockaddr_un */
    char *dir = fmt("%s/oversyncd-e2e.XXXXXX", tmp);
    ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir, strerror(errno));
    guard_send('D', 0, dir);
    chmod(dir, 0755);   /* servers running as www-data must reach what is below */
    return dir;
}

void e2e_remove_dir(char *dir)
{
    if (!dir)
        return;
    const char *keep = getenv("E2E_KEEP");
    if (keep && *keep && strcmp(keep, "0") != 0)
        fprintf(stderr, "e2e: kept %s\n", dir);
    else
        rm_rf(dir);
    guard_send('d', 0, dir);
    free(dir);
}

int e2e_free_port(void)
{
    return free_port();
}

bool e2e_unix_socket_answers(const char *path)
{
    return unix_socket_answers(path);
}

/* Our environment with the changes of env ("NAME=value" sets, "NAME" removes): malloc'd array
 * of pointers into environ and env. */
static char **make_environment(const char *const env[])
{
    extern char **environ;
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (env && env[m])
        m++;
    char **out = xmalloc(sizeof *out * (n + m + 1));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool overridden = false;
        for (size_t j = 0; j < m && !overridden; j++) {
            size_t nl = strcspn(env[j], "=");
            overridden = strncmp(environ[i], env[j], nl) == 0 && environ[i][nl] == '=';
        }
        if (!overridden)
            out[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        if (strchr(env[j], '='))
            out[k++] = (char *)env[j];
    out[k] = NULL;
    return out;
}

pid_t e2e_spawn(char *const argv[], const char *const env[], const char *log_path)
{
    ensure_init();
    char **envp = make_environment(env);
    pid_t pid = spawn_server_env(argv, envp, log_path);
    free(envp);
    ck_assert_msg(pid > 0, "cannot start %s: %s", argv[0], strerror(errno));
    guard_send('G', pid, NULL);
    return pid;
}

bool e2e_reap(pid_t pid, int timeout_ms, int *status)
{
    return reap_within(pid, timeout_ms, status);
}

bool e2e_group_alive(pid_t pgid)
{
    return group_alive(pgid);
}

bool e2e_stop_spawned(pid_t pid, int sig, int grace_ms, int *status)
{
    if (status)
        *status = -1;
    if (pid <= 0)
        return true;
    long deadline = e2e_now_ms() + grace_ms;
    bool clean = true;
    int st = -1;
    kill(pid, sig);
    if (!reap_within(pid, grace_ms, &st)) {
        fprintf(stderr, "e2e_stop_spawned: %d did not stop within %d ms; killing its group\n", (int)pid,
                grace_ms);
        clean = false;
        killpg(pid, SIGKILL);
        reap_within(pid, 2000, &st);
    }
    while (group_alive(pid) && e2e_now_ms() < deadline)
        e2e_sleep_ms(20);
    if (group_alive(pid)) {
        fprintf(stderr, "e2e_stop_spawned: processes of group %d outlived it; stopping them\n", (int)pid);
        clean = false;
        stop_group(pid, 1000);
    }
    guard_send('g', pid, NULL);
    if (status)
        *status = st;
    return clean;
}

int e2e_children(pid_t parent, pid_t *out, int max)
{
    if (parent <= 0)
        return 0;
    struct children_query q = { parent, out, max, 0, false };
    each_process(child_of, &q);
    int n = q.n < max ? q.n : max;
    qsort(out, (size_t)n, sizeof *out, cmp_pid);
    return q.n;
}

/* ---------------------------------------------------------------------------------- HTTP */

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    buf_add(ud, data, size * n);
    return size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    struct buf *b = ud;
    if (size * n >= 5 && memcmp(data, "HTTP/", 5) == 0)
        b->len = 0;   /* a new answer (after 100 Continue): only the final one counts */
    buf_add(b, data, size * n);
    return size * n;
}

static void parse_headers(struct e2e_response *r)
{
    r->store_ = xstrdup(r->headers);
    char *save = NULL;
    for (char *line = strtok_r(r->store_, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
        char *colon = strchr(line, ':');
        if (!colon || r->n_headers == E2E_MAX_HEADERS)
            continue;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vl = strlen(v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            v[--vl] = '\0';
        r->header[r->n_headers].name = line;
        r->header[r->n_headers].value = v;
        r->n_headers++;
    }
}

struct upload_src {
    const char *p;
    size_t left;
};

static size_t on_read(char *dest, size_t size, size_t n, void *ud)
{
    struct upload_src *src = ud;
    size_t take = size * n < src->left ? size * n : src->left;
    if (take > 7919)
        take = 7919;   /* several chunks of an odd size, as a streaming client sends them */
    memcpy(dest, src->p, take);
    src->p += take;
    src->left -= take;
    return take;
}

static bool wants_chunked(const char *const *headers)
{
    for (const char *const *p = headers; p && *p; p++)
        if (strncasecmp(*p, "Transfer-Encoding:", 18) == 0 && strstr(*p + 18, "chunked"))
            return true;
    return false;
}

static long request(int port, const char *source_ip, const char *method,
                    const char *path, const char *const *headers, const char *body, size_t body_len,
                    struct e2e_response *resp)
{
    memset(resp, 0, sizeof *resp);
    resp->status = -1;
    struct buf bb = { 0 }, hb = { 0 };
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(resp->error, sizeof resp->error, "curl_easy_init failed");
        resp->body = xstrdup("");
        resp->headers = xstrdup("");
        resp->store_ = xstrdup("");
        return -1;
    }
    char *url = fmt("http://127.0.0.1:%d%s", port, path);
    struct upload_src src = { body, body_len };
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &bb);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &hb);
    curl_easy_setopt(h, CURLOPT_PROXY, "");   /* never an http_proxy from the environment */
    if (source_ip)
        curl_easy_setopt(h, CURLOPT_INTERFACE, source_ip);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") == 0 && !body)
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    else
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body && wants_chunked(headers)) {
        /* No length known up front: libcurl sends the body in chunks. */
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &src);
    } else if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    }
    struct curl_slist *list = curl_slist_append(NULL, "Expect:");
    bool has_type = false;
    for (const char *const *p = headers; p && *p; p++) {
        list = curl_slist_append(list, *p);
        if (strncasecmp(*p, "Content-Type:", 13) == 0)
            has_type = true;
    }
    if (body && !has_type)
        list = curl_slist_append(list, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);

    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
        long code = -1;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        resp->status = code;
    } else {
        snprintf(resp->error, sizeof resp->error, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    }
    curl_slist_free_all(list);
    curl_easy_cleanup(h);
    free(url);
    resp->body_len = bb.len;
    resp->body = buf_take(&bb);
    resp->headers = buf_take(&hb);
    parse_headers(resp);
    return resp->status;
}

long e2e_request_ex(const struct e2e_stack *s, const char *method, const char *path,
                    const char *const *headers, const char *body, size_t body_len,
                    struct e2e_response *resp)
{
    return request(s->port, NULL, method, path, headers, body, body_len, resp);
}

long e2e_request_port(int port, const char *method, const char *path, const char *const *headers,
                      const char *body, size_t body_len, struct e2e_response *resp)
{
    return request(port, NULL, method, path, headers, body, body_len, resp);
}

long e2e_request_port_from(int port, const char *source_ip, const char *method, const char *path,
                           struct e2e_response *resp)
{
    return request(port, source_ip, method, path, NULL, NULL, 0, resp);
}

long e2e_request_from(const struct e2e_stack *s, const char *source_ip, const char *method,
                      const char *path, struct e2e_response *resp)
{
    return request(s->port, source_ip, method, path, NULL, NULL, 0, resp);
}

long e2e_request(const struct e2e_stack *s, const char *method, const char *path, const char *token,
                 const char *body, struct e2e_response *resp)
{
    char *auth = token ? fmt("Authorization: Bearer %s", token) : NULL;
    const char *headers[] = { auth, NULL };
    long st = e2e_request_ex(s, method, path, headers, body, body ? strlen(body) : 0, resp);
    free(auth);
    return st;
}

void e2e_response_free(struct e2e_response *resp)
{
    if (!resp)
        return;
    free(resp->body);
    free(resp->headers);
    free(resp->store_);
    memset(resp, 0, sizeof *resp);
}

const char *e2e_header(const struct e2e_response *resp, const char *name)
{
    for (int i = resp->n_headers - 1; i >= 0; i--)
        if (strcasecmp(resp->header[i].name, name) == 0)
            return resp->header[i].value;
    return NULL;
}

bool e2e_body_has(const struct e2e_response *resp, const char *fragment)
{
    return resp->body && strstr(resp->body, fragment) != NULL;
}

bool e2e_wait_answer(const struct e2e_stack *s, const char *method, const char *path,
                     const char *token, long want_status, const char *want_fragment,
                     int timeout_ms, struct e2e_response *last)
{
    long deadline = e2e_now_ms() + timeout_ms;
    for (;;) {
        e2e_request(s, method, path, token, NULL, last);
        if (last->status == want_status && (!want_fragment || e2e_body_has(last, want_fragment)))
            return true;
        if (e2e_now_ms() >= deadline)
            return false;
        e2e_response_free(last);
        e2e_sleep_ms(50);
    }
}

double e2e_metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -1;
}

double e2e_fetch_metric(const struct e2e_stack *s, const char *series)
{
    struct e2e_response r;
    double v = -1;
    if (e2e_request(s, "GET", "/metrics", NULL, NULL, &r) == 200)
        v = e2e_metric(r.body, series);
    e2e_response_free(&r);
    return v;
}

bool e2e_wait_metric(const struct e2e_stack *s, const char *series, double want, int timeout_ms)
{
    long deadline = e2e_now_ms() + timeout_ms;
    while (e2e_fetch_metric(s, series) < want) {
        if (e2e_now_ms() >= deadline)
            return false;
        e2e_sleep_ms(20);
    }
    return true;
}

/* -------------------------------------------------------------------------------- tokens */

char *e2e_token(const struct e2e_stack *s, const char *user, const char *device, const char *ttl)
{
    return e2e_token_conf(s->conf, user, device, ttl);
}

char *e2e_token_conf(const char *conf_path, const char *user, const char *device, const char *ttl)
{
    char *bin = fmt("%s/oversyncd", top_builddir());
    char *argv[12];
    int a = 0;
    argv[a++] = bin;
    argv[a++] = "token";
    argv[a++] = "-c";
    argv[a++] = (char *)conf_path;
    argv[a++] = "--user";
    argv[a++] = (char *)user;
    argv[a++] = "--device";
    argv[a++] = (char *)device;
    if (ttl) {
        argv[a++] = "--ttl";
        argv[a++] = (char *)ttl;
    }
    argv[a] = NULL;

    int p[2];
    ck_assert_msg(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(p[1], 1);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    struct buf out = { 0 };
    char chunk[4096];
    ssize_t n;
    while ((n = read(p[0], chunk, sizeof chunk)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        buf_add(&out, chunk, (size_t)n);
    }
    close(p[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    free(bin);
    char *tok = buf_take(&out);
    tok[strcspn(tok, "\r\n")] = '\0';
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0 && tok[0],
                  "oversyncd token --user %s --device %s failed (status 0x%x)", user, device, st);
    return tok;
}

char *e2e_base64url(const void *data, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = data;
    char *out = xmalloc(len / 3 * 4 + 5), *o = out;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = alphabet[v >> 18 & 63];
        *o++ = alphabet[v >> 12 & 63];
        *o++ = alphabet[v >> 6 & 63];
        *o++ = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = alphabet[v >> 18 & 63];
        *o++ = alphabet[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = alphabet[v >> 18 & 63];
        *o++ = alphabet[v >> 12 & 63];
        *o++ = alphabet[v >> 6 & 63];
    }
    *o = '\0';
    return out;
}

/* SHA-256, FIPS 180-4. */
struct sha256 {
    uint32_t h[8];
    uint64_t bytes;
    unsigned char block[64];
    size_t used;
};

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror(uint32_t x, int n)
{
    return x >> n | x << (32 - n);
}

static void sha256_block(struct sha256 *c, const unsigned char *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4], f = c->h[5],
             g = c->h[6], h = c->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + sha_k[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = cc;
        cc = b;
        b = a;
        a = t1 + t2;
    }
    c->h[0] += a, c->h[1] += b, c->h[2] += cc, c->h[3] += d;
    c->h[4] += e, c->h[5] += f, c->h[6] += g, c->h[7] += h;
}

static void sha256_init(struct sha256 *c)
{
    static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    memcpy(c->h, iv, sizeof iv);
    c->bytes = 0;
    c->used = 0;
}

static void sha256_update(struct sha256 *c, const void *data, size_t len)
{
    const unsigned char *p = data;
    c->bytes += len;
    while (len) {
        size_t take = 64 - c->used < len ? 64 - c->used : len;
        memcpy(c->block + c->used, p, take);
        c->used += take;
        p += take;
        len -= take;
        if (c->used == 64) {
            sha256_block(c, c->block);
            c->used = 0;
        }
    }
}

static void sha256_final(struct sha256 *c, unsigned char out[32])
{
    uint64_t bits = c->bytes * 8;
    unsigned char pad = 0x80, zero = 0, len[8];
    sha256_update(c, &pad, 1);
    while (c->used != 56)
        sha256_update(c, &zero, 1);
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha256_update(c, len, 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(c->h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
        out[4 * i + 3] = (unsigned char)c->h[i];
    }
}

void e2e_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len,
                     unsigned char out[32])
{
    unsigned char k[64] = { 0 }, pad[64], inner[32];
    struct sha256 c;
    if (key_len > 64) {
        sha256_init(&c);
        sha256_update(&c, key, key_len);
        sha256_final(&c, k);
    } else {
        memcpy(k, key, key_len);
    }
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    sha256_init(&c);
    sha256_update(&c, pad, 64);
    sha256_update(&c, msg, msg_len);
    sha256_final(&c, inner);
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    sha256_init(&c);
    sha256_update(&c, pad, 64);
    sha256_update(&c, inner, 32);
    sha256_final(&c, out);
}

char *e2e_jwt_hs256(const char *secret, const char *header_json, const char *payload_json)
{
    if (!header_json)
        header_json = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char *h = e2e_base64url(header_json, strlen(header_json));
    char *p = e2e_base64url(payload_json, strlen(payload_json));
    char *signing_input = fmt("%s.%s", h, p);
    unsigned char mac[32];
    e2e_hmac_sha256(secret, strlen(secret), signing_input, strlen(signing_input), mac);
    char *sig = e2e_base64url(mac, sizeof mac);
    char *tok = fmt("%s.%s", signing_input, sig);
    free(h);
    free(p);
    free(signing_input);
    free(sig);
    return tok;
}

char *e2e_tamper_signature(const char *token)
{
    char *t = xstrdup(token);
    char *dot = strrchr(t, '.');
    ck_assert_msg(dot && strlen(dot + 1) > 8, "e2e_tamper_signature: not a signed JWT: %s", token);
    /* A character well inside the signature: every one of its six bits counts (the last
     * character of a base64url string may carry padding bits a decoder ignores). */
    char *c = dot + 1 + strlen(dot + 1) / 2;
    *c = *c == 'A' ? 'B' : 'A';
    return t;
}
