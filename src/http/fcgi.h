/* Adapter from a libfcgi request to the transport-agnostic http_io, and the hand-over of a
 * request's connection to another process (the watch process, src/watch.c). */
#ifndef OVERSYNCD_FCGI_H
#define OVERSYNCD_FCGI_H

#include <fcgiapp.h>
#include <stdbool.h>
#include <stddef.h>

#include "http.h"

void fcgi_io_init(struct http_io *io, FCGX_Request *req);

/* What precedes the caller's message on the handoff socket: the FastCGI request id the receiver
 * answers with, and whether the web server asked to keep the connection (FCGI_KEEP_CONN). */
#define FCGI_HANDOFF_MAGIC 0x4f564831u   /* "OVH1" */
#define FCGI_HANDOFF_MAX 4096
struct fcgi_handoff {
    unsigned magic;
    int request_id;
    int keep_connection;
};

/* The socket http_io.handoff sends connections to (SOCK_SEQPACKET; -1 = none: handoff fails). */
void fcgi_set_handoff_socket(int fd);
bool fcgi_can_handoff(void);

/* Receives one handed-over connection from sock (non-blocking). false when nothing is waiting
 * (errno EAGAIN) or on an error; true when a message was consumed: then *fd is the connection
 * (-1 when the message was unusable and dropped), *head and msg (*len bytes) what came with it. */
bool fcgi_recv_handoff(int sock, struct fcgi_handoff *head, void *msg, size_t cap, size_t *len, int *fd);

#endif
