/* Eight bytes at a time in one 64-bit word (SWAR), for the scans that step over runs of plain
 * bytes: the JSON scanner's strings and the request log's values. Each test returns a word whose
 * high bit is set in some byte when that byte matches (and possibly in bytes after a match, never
 * when none does), so a nonzero result means "stop here and look byte by byte". */
#ifndef OVERSYNCD_SWAR_H
#define OVERSYNCD_SWAR_H

#include <stdint.h>
#include <string.h>

#define SWAR_ONES 0x0101010101010101ull
#define SWAR_HIGHS 0x8080808080808080ull

static inline uint64_t swar_load(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* some byte of w is below n (n at most 0x80) */
static inline uint64_t swar_below(uint64_t w, unsigned char n)
{
    return (w - SWAR_ONES * n) & ~w & SWAR_HIGHS;
}

/* some byte of w is c */
static inline uint64_t swar_eq(uint64_t w, unsigned char c)
{
    uint64_t x = w ^ (SWAR_ONES * c);
    return (x - SWAR_ONES) & ~x & SWAR_HIGHS;
}

#endif
