/* Canonical JSON, bit-exact with go-oversync's reference serializer.
 *
 * The reference defines the canonical text of a JSON document as Go's encoding/json output for
 * the document decoded into `any` (json.Unmarshal into interface{}, then json.Marshal). The
 * bundle protocol hashes that text (bundle_hash, SPEC-v2 §4.7) and clients recompute it, so this
 * module reproduces it byte for byte. What canonical_json() guarantees, for any input bytes:
 *
 *   Accepts exactly what Go's json.Unmarshal accepts, with one deliberate exception (below):
 *   RFC 8259 syntax, whitespace only ' ' \t \n \r, nothing but whitespace after the value (no BOM,
 *   no trailing garbage), at most 10000 nested arrays/objects (Go's scanner limit), no NaN,
 *   Infinity, leading zeros, '+' signs, bare '.', or raw control bytes inside strings, and
 *   numbers must fit a float64 (1e400 is an error, 1e-400 is 0).
 *
 *   Output (appended to `out`):
 *   - no whitespace; objects with keys sorted bytewise on their decoded UTF-8 bytes; a duplicate
 *     key keeps its last value (Go map decode), keys compared after unescaping ("\u0061" == "a");
 *   - every number goes through float64 (correctly rounded, ties to even: 9007199254740993 ->
 *     9007199254740992) and is printed as Go prints a float64: shortest round-trip digits, plain
 *     decimal when 1e-6 <= |x| < 1e21 (100000000000000000000, 0.000001, 1.0 -> 1, 1E5 -> 100000),
 *     else exponent form without padding (1e+21, 1e-7, 5e-324); -0 and -0.0 print as -0;
 *   - strings: decoded as Go does (invalid UTF-8 bytes, including overlong forms, UTF-8-encoded
 *     surrogates and > U+10FFFF, become U+FFFD one byte at a time; an escaped lone or unpaired
 *     surrogate becomes U+FFFD and the escape after it is read on its own), then encoded with
 *     \" \\ \b \f \n \r \t, other bytes < 0x20 as \u00xx (lowercase hex), < > & as \u003c \u003e
 *     \u0026, U+2028 U+2029 as \u2028 \u2029, and everything else (DEL and U+FFFD included) as
 *     raw UTF-8; "\/" decodes to '/'. The output never contains \ufffd escapes or invalid UTF-8.
 *
 *   Deliberate exception: a number whose integer part has more than 800 significant digits and
 *   which has a negative exponent (e.g. 1 followed by 900 zeros, then e-890) is rejected. Go
 *   accepts it but its slow float parser misplaces the decimal point for such literals, so its
 *   value cannot be reproduced without copying Go's internal algorithms; nothing PostgreSQL or the
 *   client produces looks like that. Exponents of 10000 and beyond are handled like Go (which
 *   stops reading exponent digits once the value reaches 10000).
 *
 * Numbers are converted without the C locale's decimal point, so LC_NUMERIC does not matter. */
#ifndef OVERSYNCD_CANONICAL_JSON_H
#define OVERSYNCD_CANONICAL_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "strbuf.h"

/* Nesting Go's decoder accepts: 10000 open arrays/objects, 10001 is a syntax error. */
#define CANONICAL_JSON_MAX_DEPTH 10000

/* Append the canonical form of the JSON text json[0..len) to out. On error nothing is appended
 * (out keeps its length), err (if errlen > 0) receives a message with the byte offset, and the
 * result is false. json need not be NUL-terminated and may contain NUL bytes. */
bool canonical_json(const char *json, size_t len, strbuf_t *out, char *err, size_t errlen);

/* Append x as Go's encoding/json prints a float64. False (nothing appended) for NaN and ±Inf,
 * which Go refuses to marshal. */
bool canonical_json_double(strbuf_t *out, double x);

/* Append the canonical JSON string for the raw bytes s[0..n) taken as a Go string value: invalid
 * UTF-8 becomes U+FFFD (as after the reference's decode step), then the escaping above. */
void canonical_json_string(strbuf_t *out, const char *s, size_t n);

#endif
