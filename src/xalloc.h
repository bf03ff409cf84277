/* Allocation wrappers that abort on out-of-memory, so callers never check NULL. */
#ifndef OVERSYNCD_XALLOC_H
#define OVERSYNCD_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Constant-time comparison for secrets; true when equal. */
int ct_equal(const void *a, const void *b, size_t n);

#endif
