/* UUID parsing in every spelling clients send (SPEC §4.1) and canonical formatting. */
#ifndef OVERSYNCD_UUID_H
#define OVERSYNCD_UUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UUID_STR_LEN 36

/* Accepts 36-char hyphenated (any case), 32 hex digits, "urn:uuid:" + hyphenated,
 * and the 38-char braced form. Surrounding white space is not accepted. */
bool uuid_parse(const char *s, size_t len, uint8_t out[16]);
/* Writes 36 lower-case characters plus NUL. */
void uuid_format(const uint8_t in[16], char out[UUID_STR_LEN + 1]);
/* Parse + format in one: false when s is not a UUID. */
bool uuid_canonical(const char *s, size_t len, char out[UUID_STR_LEN + 1]);

#endif
