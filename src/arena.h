/* Per-request memory: everything a request needs comes from one arena and is
 * released in one call at the end (PostgreSQL memory-context style). */
#ifndef OVERSYNCD_ARENA_H
#define OVERSYNCD_ARENA_H

#include <stdarg.h>
#include <stddef.h>

typedef struct arena arena_t;

arena_t *arena_new(size_t block_size);
void *arena_alloc(arena_t *a, size_t n);          /* 16-byte aligned, never NULL */
void *arena_calloc(arena_t *a, size_t nmemb, size_t size);
char *arena_strdup(arena_t *a, const char *s);
char *arena_strndup(arena_t *a, const char *s, size_t n);
char *arena_printf(arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *arena_vprintf(arena_t *a, const char *fmt, va_list ap);
/* Registers fn(p) to run when the arena is next reset or freed, newest first: what a request
 * holds outside the arena (a PGresult, a json-c object) is released with the request's memory
 * (PostgreSQL's memory-context reset callbacks, nginx's pool cleanups). */
void arena_on_reset(arena_t *a, void (*fn)(void *), void *p);
/* Runs the cleanups, then releases everything but the first block, so a worker's steady state
 * allocates nothing. */
void arena_reset(arena_t *a);
void arena_free(arena_t *a);
size_t arena_bytes_in_use(const arena_t *a);

#endif
