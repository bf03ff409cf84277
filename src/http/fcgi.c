#include "fcgi.h"

#include <errno.h>
#include <fastcgi.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int handoff_socket = -1;

static const char *fcgi_param(void *ud, const char *name)
{
    /* FCGX_GetParam's lookup, with the first character compared before the rest: a request's
     * few lookups each walk all the web server's parameters */
    FCGX_Request *req = ud;
    if (!name || !req->envp)
        return NULL;
    size_t n = strlen(name);
    for (char **p = req->envp; *p; p++)
        if ((*p)[0] == name[0] && strncmp(*p, name, n) == 0 && (*p)[n] == '=')
            return *p + n + 1;
    return NULL;
}

static ssize_t fcgi_read(void *ud, char *buf, size_t n)
{
    FCGX_Request *req = ud;
    if (n > (size_t)1 << 30)
        n = (size_t)1 << 30;
    int r = FCGX_GetStr(buf, (int)n, req->in);
    if (r == 0 && FCGX_GetError(req->in) != 0)
        return -1;
    return r;
}

/* All of iov written to fd, through short writes, EINTR and EAGAIN. */
static bool writev_all(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t w = writev(fd, iov, cnt);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pfd = { fd, POLLOUT, 0 };
                if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                    return false;
                continue;
            }
            return false;
        }
        while (cnt > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return true;
}

/* A large answer goes out in FastCGI records of up to 65528 bytes written straight to the
 * connection: libfcgi's stream cuts everything into records of its 8 KB buffer, one write each
 * (a 1 MB download page was 128 writes, and as many reads for the web server). What the stream
 * holds is flushed first, so the records stay in order; FCGX_Finish_r ends the stream as usual. */
#define RECORD_MAX 65528   /* a multiple of 8: no padding */

static int write_records(FCGX_Request *req, const char *buf, size_t n)
{
    if (FCGX_FFlush(req->out) != 0 || FCGX_GetError(req->out) != 0)
        return -1;
    while (n > 0) {
        size_t chunk = n > RECORD_MAX ? RECORD_MAX : n;
        unsigned pad = (unsigned)((8 - chunk % 8) % 8);
        unsigned char head[FCGI_HEADER_LEN] = {
            FCGI_VERSION_1, FCGI_STDOUT,
            (unsigned char)((req->requestId >> 8) & 0xff), (unsigned char)(req->requestId & 0xff),
            (unsigned char)((chunk >> 8) & 0xff), (unsigned char)(chunk & 0xff),
            (unsigned char)pad, 0,
        };
        static const char zeros[8];
        struct iovec iov[3] = { { head, sizeof head }, { (void *)buf, chunk }, { (void *)zeros, pad } };
        if (!writev_all(req->ipcFd, iov, pad ? 3 : 2))
            return -1;
        buf += chunk;
        n -= chunk;
    }
    return 0;
}

static int fcgi_write(void *ud, const char *buf, size_t n)
{
    FCGX_Request *req = ud;
    if (n >= HTTP_LARGE_BODY && req->ipcFd >= 0)
        return write_records(req, buf, n);
    while (n > 0) {
        int chunk = n > (size_t)1 << 30 ? 1 << 30 : (int)n;
        int w = FCGX_PutStr(buf, chunk, req->out);
        if (w < 0)
            return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The connection goes to the handoff socket with SCM_RIGHTS, preceded by what the receiver needs
 * to answer on it (struct fcgi_handoff). Nothing has been written for the request yet; the
 * request body is read to its end first (a GET has an empty one), so that what the web server
 * sends next on the connection starts at a record boundary. Then the request is detached: the
 * worker must free it with FCGX_Free(req, 1), which closes our copy of the descriptor without
 * the shutdown() that would end the connection for the receiver too. */
static bool fcgi_handoff(void *ud, const void *msg, size_t len)
{
    FCGX_Request *req = ud;
    if (handoff_socket < 0 || req->ipcFd < 0 || len > FCGI_HANDOFF_MAX)
        return false;
    char sink[1024];
    while (FCGX_GetStr(sink, sizeof sink, req->in) > 0)
        ;
    if (FCGX_GetError(req->in) != 0)
        return false;
    struct fcgi_handoff head = { FCGI_HANDOFF_MAGIC, req->requestId, req->keepConnection };
    struct iovec iov[2] = { { &head, sizeof head }, { (void *)msg, len } };
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &req->ipcFd, sizeof(int));
    ssize_t w;
    do
        w = sendmsg(handoff_socket, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return false;
    FCGX_Detach(req);
    return true;
}

void fcgi_set_handoff_socket(int fd)
{
    handoff_socket = fd;
}

bool fcgi_can_handoff(void)
{
    return handoff_socket >= 0;
}

void fcgi_io_init(struct http_io *io, FCGX_Request *req)
{
    io->param = fcgi_param;
    io->read = fcgi_read;
    io->write = fcgi_write;
    io->handoff = fcgi_handoff;
    io->ud = req;
}

bool fcgi_recv_handoff(int sock, struct fcgi_handoff *head, void *msg, size_t cap, size_t *len, int *fd)
{
    struct iovec iov[2] = { { head, sizeof *head }, { msg, cap } };
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
    *fd = -1;
    ssize_t r;
    do
        r = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return false;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            int n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int fds[4];
            memcpy(fds, CMSG_DATA(cm), (size_t)n * sizeof(int));
            for (int i = 0; i < n; i++) {
                if (*fd < 0)
                    *fd = fds[i];
                else
                    close(fds[i]);
            }
        }
    if ((size_t)r < sizeof *head || head->magic != FCGI_HANDOFF_MAGIC || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        if (*fd >= 0)
            close(*fd);
        *fd = -1;
        *len = 0;
        return true;   /* consumed, unusable */
    }
    *len = (size_t)r - sizeof *head;
    return true;
}
