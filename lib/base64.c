/*
 * base64.c - see base64.h.
 */
#include "base64.h"

#include <stdint.h>

static int digit_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The 1 or 2 bytes of a last group of 2 or 3 digits; -1 when they break the flags or cap. */
static long finish(uint32_t acc, size_t digits, size_t pad, unsigned flags, unsigned char *out,
                   size_t at, size_t cap)
{
    size_t rest = digits % 4;
    if (rest == 0)
        return pad ? -1 : (long)at;
    if (rest == 1 || (pad != 4 - rest && (pad || !(flags & BASE64_PAD_OPTIONAL))))
        return -1;
    uint32_t dropped = rest == 2 ? acc & 0xF : acc & 0x3;
    if ((flags & BASE64_CANONICAL) && dropped)
        return -1;
    if (at + rest - 1 > cap)
        return -1;
    if (rest == 2) {
        out[at++] = (unsigned char)(acc >> 4);
    } else {
        out[at++] = (unsigned char)(acc >> 10);
        out[at++] = (unsigned char)(acc >> 2);
    }
    return (long)at;
}

long base64_decode(const char *text, size_t len, unsigned char *out, size_t cap, unsigned flags,
                   size_t *bad_at)
{
    size_t at = 0, digits = 0, pad = 0, i;
    uint32_t acc = 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((flags & BASE64_SKIP_SPACE) && is_space(c))
            continue;
        if (c == '=') {
            if (digits % 4 < 2 || ++pad > 4 - digits % 4)
                goto bad;                     /* '=' only closes a group of 2 or 3 digits */
            continue;
        }
        int v = digit_value(c);
        if (v < 0 || pad)
            goto bad;                         /* nothing but padding after padding */
        acc = acc << 6 | (uint32_t)v;
        if (++digits % 4 == 0) {
            if (at + 3 > cap)
                goto bad;
            out[at++] = (unsigned char)(acc >> 16);
            out[at++] = (unsigned char)(acc >> 8);
            out[at++] = (unsigned char)acc;
            acc = 0;
        }
    }
    long n = finish(acc, digits, pad, flags, out, at, cap);
    if (n >= 0)
        return n;
bad:
    if (bad_at)
        *bad_at = i;
    return -1;
}
