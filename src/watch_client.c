/* The side of the watch process (watch.h) that workers see: what they send with a connection,
 * and the shared table of users with a waiting download. */
#include "watch_client.h"
#include "http/fcgi.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>


#define WAITING_SLOTS 4096

static _Atomic int *waiting;   /* users with a waiting download, by hash slot */
static int client_sock = -1;

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

uint64_t watch_hash(const char *s)
{
    return hash_bytes(s, strlen(s));
}

bool watch_wanted(const struct config *cfg)
{
    return cfg->protocol == PROTOCOL_BUNDLE ? cfg->bundle_watch : cfg->download_max_wait_ms > 0;
}

bool watch_shared_init(void)
{
    if (waiting)
        return true;
    void *p = mmap(NULL, WAITING_SLOTS * sizeof *waiting, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return false;
    memset(p, 0, WAITING_SLOTS * sizeof *waiting);
    waiting = p;
    return true;
}

void watch_waiting_add(const char *user, int delta)
{
    if (waiting)
        atomic_fetch_add(&waiting[watch_hash(user) % WAITING_SLOTS], delta);
}

bool watch_waiting(const char *user)
{
    return waiting && atomic_load(&waiting[watch_hash(user) % WAITING_SLOTS]) > 0;
}

void watch_client_init(int sock)
{
    client_sock = sock;
    fcgi_set_handoff_socket(sock);
}

bool watch_available(void)
{
    return client_sock >= 0;
}

int64_t watch_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void watch_waiting_reset(void)
{
    if (waiting)
        memset((void *)waiting, 0, WAITING_SLOTS * sizeof *waiting);
}
