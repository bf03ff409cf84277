#include "fcgi.h"

static const char *fcgi_param(void *ud, const char *name)
{
    FCGX_Request *req = ud;
    return FCGX_GetParam(name, req->envp);
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

static int fcgi_write(void *ud, const char *buf, size_t n)
{
    FCGX_Request *req = ud;
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

void fcgi_io_init(struct http_io *io, FCGX_Request *req)
{
    io->param = fcgi_param;
    io->read = fcgi_read;
    io->write = fcgi_write;
    io->ud = req;
}
