/* See wire.h. */
#include "wire.h"

#include <string.h>

#include "../canonical_json.h"
#include "internal.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool bwire_row_head(strbuf_t *sb, const struct bundle_catalog_table *t, const char *key_hex)
{
    size_t n = strlen(key_hex);
    if (n % 2)
        return false;
    sb_puts(sb, "\"schema\":");
    bj_str(sb, t->schema);
    sb_puts(sb, ",\"table\":");
    bj_str(sb, t->table);
    sb_puts(sb, ",\"key\":{");
    bj_str(sb, t->key_column);
    sb_putc(sb, ':');
    if (t->key_kind == BUNDLE_KEY_UUID) {
        if (n != 32)
            return false;
        char u[37];
        size_t o = 0;
        for (size_t i = 0; i < 32; i++) {
            if (i == 8 || i == 12 || i == 16 || i == 20)
                u[o++] = '-';
            int v = hexval(key_hex[i]);
            if (v < 0)
                return false;
            u[o++] = "0123456789abcdef"[v];
        }
        u[o] = 0;
        sb_putc(sb, '"');
        sb_append(sb, u, 36);
        sb_putc(sb, '"');
    } else {
        char stack[256];
        char *raw = n / 2 <= sizeof stack ? stack : NULL;
        strbuf_t tmp;
        if (!raw) {
            sb_init(&tmp);
            sb_reserve(&tmp, n / 2);
            raw = tmp.data;
        }
        for (size_t i = 0; i < n / 2; i++) {
            int hi = hexval(key_hex[2 * i]), lo = hexval(key_hex[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                if (raw != stack)
                    sb_free(&tmp);
                return false;
            }
            raw[i] = (char)(hi << 4 | lo);
        }
        canonical_json_string(sb, raw, n / 2);
        if (raw != stack)
            sb_free(&tmp);
    }
    sb_putc(sb, '}');
    return true;
}

void bwire_raw(strbuf_t *sb, const char *json, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    sb_reserve(sb, len);
    const char *p = json, *end = json + len, *run = p;
    bool in_str = false;
    while (p < end) {
        unsigned char ch = (unsigned char)*p;
        if (in_str) {
            if (ch == '\\') {
                p += p + 1 < end ? 2 : 1;
                continue;
            }
            if (ch == '"') {
                in_str = false;
            } else if (ch == '<' || ch == '>' || ch == '&') {
                sb_append(sb, run, (size_t)(p - run));
                char e[6] = { '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] };
                sb_append(sb, e, 6);
                run = p + 1;
            } else if (ch == 0xE2 && p + 2 < end && (unsigned char)p[1] == 0x80 &&
                       ((unsigned char)p[2] & ~1u) == 0xA8) {
                sb_append(sb, run, (size_t)(p - run));
                char e[6] = { '\\', 'u', '2', '0', '2', hex[(unsigned char)p[2] & 15] };
                sb_append(sb, e, 6);
                p += 3;
                run = p;
                continue;
            }
            p++;
            continue;
        }
        if (ch == '"') {
            in_str = true;
        } else if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
            sb_append(sb, run, (size_t)(p - run));
            run = p + 1;
        }
        p++;
    }
    sb_append(sb, run, (size_t)(end - run));
}

const char *bwire_op(int op_code)
{
    switch (op_code) {
    case 1: return "INSERT";
    case 2: return "UPDATE";
    case 3: return "DELETE";
    default: return NULL;
    }
}
