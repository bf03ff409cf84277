/* bundle_hash: the rows' canonical text streamed into one SHA-256 (see bundle_hash.h). */
#include "bundle_hash.h"
#include "canonical_json.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static void hash_bytes(struct bundle_hasher *h, const char *s, size_t n)
{
    EVP_DigestUpdate((EVP_MD_CTX *)h->md, s, n);
    h->byte_count += n;
}

bool bundle_hasher_init(struct bundle_hasher *h)
{
    memset(h, 0, sizeof *h);
    sb_init(&h->row);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md)
        return false;
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return false;
    }
    h->md = md;
    return true;
}

/* Append JSON text canonically, or null when there is none. */
static bool put_json(strbuf_t *sb, const char *json, size_t len, const char *what, uint64_t row,
                     char *err, size_t errlen)
{
    if (!json || len == 0) {
        sb_puts(sb, "null");
        return true;
    }
    char why[200];
    if (canonical_json(json, len, sb, why, sizeof why))
        return true;
    if (err && errlen)
        snprintf(err, errlen, "row %llu: invalid %s JSON: %s", (unsigned long long)row, what, why);
    return false;
}

bool bundle_hasher_add_row(struct bundle_hasher *h, const char *schema, const char *table,
                           const char *key_json, size_t key_len, const char *op, int64_t row_version,
                           const char *payload_json, size_t payload_len, char *err, size_t errlen)
{
    if (!h->md) {
        if (err && errlen)
            snprintf(err, errlen, "bundle hasher already finished");
        return false;
    }
    strbuf_t *sb = &h->row;
    sb_reset(sb);
    sb_putc(sb, h->rows ? ',' : '[');
    /* The keys in bytewise order: key < op < payload < row_ordinal < row_version < schema < table. */
    sb_puts(sb, "{\"key\":");
    if (!put_json(sb, key_json, key_len, "key", h->rows, err, errlen))
        return false;
    sb_puts(sb, ",\"op\":");
    op = op ? op : "";
    canonical_json_string(sb, op, strlen(op));
    sb_puts(sb, ",\"payload\":");
    if (strcmp(op, "DELETE") == 0)
        sb_puts(sb, "null");
    else if (!put_json(sb, payload_json, payload_len, "payload", h->rows, err, errlen))
        return false;
    sb_puts(sb, ",\"row_ordinal\":");
    canonical_json_double(sb, (double)h->rows);
    sb_puts(sb, ",\"row_version\":");
    canonical_json_double(sb, (double)row_version);
    sb_puts(sb, ",\"schema\":");
    schema = schema ? schema : "";
    canonical_json_string(sb, schema, strlen(schema));
    sb_puts(sb, ",\"table\":");
    table = table ? table : "";
    canonical_json_string(sb, table, strlen(table));
    sb_putc(sb, '}');
    hash_bytes(h, sb->data, sb->len);
    h->rows++;
    return true;
}

bool bundle_hasher_finish(struct bundle_hasher *h, char hex[BUNDLE_HASH_HEX_LEN + 1],
                          uint64_t *byte_count)
{
    if (!h->md)
        return false;
    hash_bytes(h, h->rows ? "]" : "[]", h->rows ? 1 : 2);
    unsigned char sum[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int rc = EVP_DigestFinal_ex((EVP_MD_CTX *)h->md, sum, &n);
    EVP_MD_CTX_free((EVP_MD_CTX *)h->md);
    h->md = NULL;
    if (rc != 1 || n != BUNDLE_HASH_HEX_LEN / 2)
        return false;
    static const char digits[] = "0123456789abcdef";
    for (unsigned int i = 0; i < n; i++) {
        hex[2 * i] = digits[sum[i] >> 4];
        hex[2 * i + 1] = digits[sum[i] & 15];
    }
    hex[BUNDLE_HASH_HEX_LEN] = '\0';
    if (byte_count)
        *byte_count = h->byte_count;
    return true;
}

void bundle_hasher_free(struct bundle_hasher *h)
{
    if (h->md) {
        EVP_MD_CTX_free((EVP_MD_CTX *)h->md);
        h->md = NULL;
    }
    sb_free(&h->row);
}
