/* The FastCGI listen socket: opened by the master (unix or TCP), or inherited on fd 0. */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

bool stdin_is_listen_socket(void)
{
    int type;
    socklen_t len = sizeof type;
    if (getsockopt(0, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
        return false;
    int acc;
    len = sizeof acc;
    return getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) == 0 && acc;
}

static int open_unix(const struct config *cfg, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "listen: socket path too long: %s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "listen: socket(): %s", strerror(errno));
        return -1;
    }
    /* A stale socket file left by a crash would make bind fail: remove it, but only if it is a
     * socket nobody answers on. */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        int probe = socket(AF_UNIX, SOCK_STREAM, 0);
        bool live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (probe >= 0)
            close(probe);
        if (live) {
            snprintf(err, errlen, "listen: %s is in use by another process", path);
            close(fd);
            return -1;
        }
        unlink(path);
    }
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc != 0) {
        snprintf(err, errlen, "listen: bind %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (chmod(path, (mode_t)cfg->socket_mode) != 0)
        log_warn("listen: chmod %s: %s", path, strerror(errno));
    if (geteuid() == 0 && (cfg->user || cfg->group)) {
        uid_t uid = (uid_t)-1;
        gid_t gid = (gid_t)-1;
        struct passwd *pw = cfg->user ? getpwnam(cfg->user) : NULL;
        struct group *gr = cfg->group ? getgrnam(cfg->group) : NULL;
        if (pw) {
            uid = pw->pw_uid;
            gid = pw->pw_gid;
        }
        if (gr)
            gid = gr->gr_gid;
        if (chown(path, uid, gid) != 0)
            log_warn("listen: chown %s: %s", path, strerror(errno));
    }
    return fd;
}

static int open_tcp(const char *spec, char *err, size_t errlen)
{
    const char *colon = strrchr(spec, ':');
    char host[256];
    size_t hl = (size_t)(colon - spec);
    if (hl >= sizeof host) {
        snprintf(err, errlen, "listen: host name too long");
        return -1;
    }
    memcpy(host, spec, hl);
    host[hl] = '\0';
    /* [::1]:9000 */
    char *h = host;
    if (h[0] == '[' && hl > 1 && h[hl - 1] == ']') {
        h[hl - 1] = '\0';
        h++;
    }
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "listen: %s: %s", spec, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        snprintf(err, errlen, "listen: bind %s: %s", spec, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

int listen_socket_open(const struct config *cfg, char *err, size_t errlen)
{
    const char *spec = cfg->listen;
    int fd = strncmp(spec, "unix:", 5) == 0 ? open_unix(cfg, spec + 5, err, errlen)
                                             : open_tcp(spec, err, errlen);
    if (fd < 0)
        return -1;
    if (listen(fd, 1024) != 0) {
        snprintf(err, errlen, "listen %s: %s", spec, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}
