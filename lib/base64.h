/*
 * base64.h - standard base64 (RFC 4648, section 4) decoding, for the three places that read it:
 * TSIG secrets in the node config, -data values in kubeconfigs, and b64 files in cloud-config.
 *
 * They differ only in leniency, so the leniencies are flags: kubeconfig and cloud-config values
 * are often wrapped (whitespace skipped), cloud-config writers often drop the padding, and a TSIG
 * secret must be canonical (no stray bits, one encoding per key). Everything else is refused:
 * other alphabets, padding that is not at the very end, a truncated group. No allocation.
 */
#ifndef GATEHOUSE_BASE64_H
#define GATEHOUSE_BASE64_H

#include <stddef.h>

#define BASE64_SKIP_SPACE   1u   /* ignore ' ', '\t', '\r', '\n' anywhere */
#define BASE64_PAD_OPTIONAL 2u   /* a last group of 2 or 3 digits may omit its '=' */
#define BASE64_CANONICAL    4u   /* the bits padding drops must be zero */

/* Room enough for decoding len characters. */
#define BASE64_DECODED_MAX(len) ((len) / 4 * 3 + 3)

/* Decodes text[0..len) into out (at most cap bytes). Returns the decoded length, or -1 when the
 * text is not base64 under these flags or does not fit; *bad_at (may be NULL) then gets the
 * offset of the first offending character (len when the text ends too early). */
long base64_decode(const char *text, size_t len, unsigned char *out, size_t cap, unsigned flags,
                   size_t *bad_at);

#endif
