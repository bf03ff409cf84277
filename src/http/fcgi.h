/* Adapter from a libfcgi request to the transport-agnostic http_io. */
#ifndef OVERSYNCD_FCGI_H
#define OVERSYNCD_FCGI_H

#include <fcgiapp.h>

#include "http.h"

void fcgi_io_init(struct http_io *io, FCGX_Request *req);

#endif
