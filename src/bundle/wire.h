/* Writing stored rows in the reference's wire form: the key object {col: text} from key_bytes, and
 * a stored JSON text (payload_wire) as Go's encoder writes a json.RawMessage (compacted, <, >, &,
 * U+2028 and U+2029 escaped). Shared by the endpoints that send rows (pull, snapshot chunks). */
#ifndef OVERSYNCD_BUNDLE_WIRE_H
#define OVERSYNCD_BUNDLE_WIRE_H

#include <stdbool.h>
#include <stddef.h>

#include "../strbuf.h"
#include "schema.h"

/* "schema":S,"table":T,"key":{"col":"value"} of a row of table t whose key_bytes arrive as the
 * text of encode(key_bytes, 'hex'). false (nothing sensible written) when the bytes cannot be a
 * key of t (a uuid key of other than 16 bytes, bad hex). */
bool bwire_row_head(strbuf_t *sb, const struct bundle_catalog_table *t, const char *key_hex);

/* A JSON text stored by PostgreSQL (a json or jsonb column's text) as Go's json.Encoder writes a
 * json.RawMessage: white space outside strings dropped, <, >, & and U+2028/U+2029 inside
 * strings escaped; everything else byte for byte. */
void bwire_raw(strbuf_t *sb, const char *json, size_t len);

/* The op name of an op_code (1 INSERT, 2 UPDATE, 3 DELETE), NULL for any other. */
const char *bwire_op(int op_code);

#endif
