#include "base64.h"

static int value_of(unsigned char c, unsigned flags)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (flags & BASE64_STD) {
        if (c == '+')
            return 62;
        if (c == '/')
            return 63;
    }
    if (flags & BASE64_URL) {
        if (c == '-')
            return 62;
        if (c == '_')
            return 63;
    }
    return -1;
}

bool base64_decode(const char *s, size_t len, unsigned flags, unsigned char *out, size_t *outlen)
{
    if (flags & BASE64_PAD_OPTIONAL)
        while (len && s[len - 1] == '=')
            len--;
    if (len % 4 == 1)
        return false;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = value_of((unsigned char)s[i], flags);
        if (v < 0)
            return false;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* leftover bits must be zero, or two spellings would decode to the same bytes */
    if (acc != 0)
        return false;
    *outlen = o;
    return true;
}
