/*
 * image_digest.h - the form of an appliance image digest, "sha256:" and 64 lowercase hex digits.
 *
 * The digest travels from the kernel command line (gatehouse.image=) through the init's note in
 * /run/gatehouse/image-digest to a label of the agent's metrics: both ends check it the same way.
 */
#ifndef GATEHOUSE_IMAGE_DIGEST_H
#define GATEHOUSE_IMAGE_DIGEST_H

#include <string.h>

#define IMAGE_DIGEST_LEN 71   /* "sha256:" + 64 */

static inline int image_digest_valid(const char *s)
{
    if (strlen(s) != IMAGE_DIGEST_LEN || strncmp(s, "sha256:", 7) != 0)
        return 0;
    for (const char *p = s + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

#endif
