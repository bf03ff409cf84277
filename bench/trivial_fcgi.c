/* The ceiling for bench/run schema-version: a FastCGI responder that does nothing but answer a
 * small fixed JSON body, with the same number of processes as oversyncd's workers, on the same
 * unix socket behind the same lighttpd configuration.
 *
 *   trivial_fcgi SOCKET_PATH PROCESSES
 *
 * The parent binds the socket, forks the processes (each an FCGX_Accept_r loop) and stops them
 * all on SIGTERM or SIGINT. */
#include <fcgiapp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static const char answer[] = "Status: 200 OK\r\n"
                             "Content-Type: application/json\r\n"
                             "Content-Length: 20\r\n"
                             "\r\n"
                             "{\"schema_version\":1}";

static int serve(int fd)
{
    FCGX_Request req;
    if (FCGX_InitRequest(&req, fd, 0) != 0)
        return 1;
    while (FCGX_Accept_r(&req) >= 0) {
        FCGX_PutStr(answer, (int)sizeof answer - 1, req.out);
        FCGX_Finish_r(&req);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: trivial_fcgi SOCKET_PATH PROCESSES\n");
        return 2;
    }
    int n = atoi(argv[2]);
    if (n < 1 || n > 256) {
        fprintf(stderr, "trivial_fcgi: PROCESSES must be 1..256\n");
        return 2;
    }
    unlink(argv[1]);
    if (FCGX_Init() != 0)
        return 1;
    int fd = FCGX_OpenSocket(argv[1], 1024);
    if (fd < 0) {
        fprintf(stderr, "trivial_fcgi: cannot listen on %s\n", argv[1]);
        return 1;
    }
    chmod(argv[1], 0666);
    pid_t *kids = calloc((size_t)n, sizeof *kids);
    for (int i = 0; i < n; i++) {
        kids[i] = fork();
        if (kids[i] == 0)
            _exit(serve(fd));
        if (kids[i] < 0) {
            perror("fork");
            return 1;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (!stop)
        pause();
    for (int i = 0; i < n; i++)
        kill(kids[i], SIGTERM);
    for (int i = 0; i < n; i++)
        waitpid(kids[i], NULL, 0);
    unlink(argv[1]);
    return 0;
}
