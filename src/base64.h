/* Base64 decoding of both alphabets (standard and URL-safe), padding optional. */
#ifndef OVERSYNCD_BASE64_H
#define OVERSYNCD_BASE64_H

#include <stdbool.h>
#include <stddef.h>

/* Decodes len characters of s into out (capacity ≥ 3 * len / 4 + 3). false on a character outside
 * the alphabets or a bad length; *outlen receives the decoded size. */
bool base64_decode(const char *s, size_t len, unsigned char *out, size_t *outlen);

#endif
