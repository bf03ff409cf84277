/* Base64 decoding (RFC 4648), one decoder for every caller: which alphabet and whether trailing
 * '=' is allowed come as flags. Whatever the flags, the bits after the last whole byte must be
 * zero and a text of 4k+1 characters is refused, so one byte string has one spelling per
 * alphabet (and padding). */
#ifndef OVERSYNCD_BASE64_H
#define OVERSYNCD_BASE64_H

#include <stdbool.h>
#include <stddef.h>

enum base64_flags {
    BASE64_STD = 1 << 0,            /* '+' and '/' (RFC 4648 §4) */
    BASE64_URL = 1 << 1,            /* '-' and '_' (RFC 4648 §5) */
    BASE64_ANY = BASE64_STD | BASE64_URL,   /* either, even mixed in one text */
    BASE64_PAD_FORBIDDEN = 0,       /* '=' is an invalid character (JWT, RFC 7515 §2) */
    BASE64_PAD_OPTIONAL = 1 << 2,   /* trailing '=' are dropped, however many */
};

/* Room decoding len characters needs at most. */
#define BASE64_DECODED_MAX(len) ((len) / 4 * 3 + 2)

/* Decodes len characters of s into out (room for BASE64_DECODED_MAX(len) bytes) as flags (an
 * alphabet ORed with a padding rule) allow. false on a character outside them or a bad length;
 * else *outlen receives the decoded size. */
bool base64_decode(const char *s, size_t len, unsigned flags, unsigned char *out, size_t *outlen);

#endif
