#include "uuid.h"

#include <string.h>
#include <strings.h>

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

static bool parse_hex32(const char *s, uint8_t out[16])
{
    for (int i = 0; i < 16; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static bool parse_hyphenated(const char *s, uint8_t out[16])
{
    char hex[32];
    int n = 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
            continue;
        }
        hex[n++] = s[i];
    }
    return parse_hex32(hex, out);
}

bool uuid_parse(const char *s, size_t len, uint8_t out[16])
{
    if (!s)
        return false;
    if (len == 32)
        return parse_hex32(s, out);
    if (len == 36)
        return parse_hyphenated(s, out);
    if (len == 38 && s[0] == '{' && s[37] == '}')
        return parse_hyphenated(s + 1, out);
    if (len == 45 && strncasecmp(s, "urn:uuid:", 9) == 0)
        return parse_hyphenated(s + 9, out);
    return false;
}

void uuid_format(const uint8_t in[16], char out[UUID_STR_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[in[i] >> 4];
        out[o++] = hex[in[i] & 15];
    }
    out[o] = '\0';
}

bool uuid_canonical(const char *s, size_t len, char out[UUID_STR_LEN + 1])
{
    uint8_t b[16];
    if (!uuid_parse(s, len, b))
        return false;
    uuid_format(b, out);
    return true;
}
