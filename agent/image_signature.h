/*
 * image_signature.h - is this appliance image signed by a key the node trusts?
 *
 * The signature is a detached ECDSA P-256 / SHA-256 signature (DER, as `openssl dgst -sha256
 * -sign KEY` writes it) over the ASCII text of the image's manifest digest, "sha256:<64 hex>"
 * (71 bytes, no newline). Signing the digest signs everything: the manifest names its config
 * and layers by digest, and the pull checks each of those.
 *
 * Where it lives: in the same repository, under the tag "sha256-<64 hex>.sig" (the cosign
 * convention for finding it), an OCI manifest whose annotation
 * "dev.gatehouse.signature" holds the DER signature in base64. tools/image/sign makes and pushes
 * it with openssl and skopeo.
 *
 * Trusted keys are PEM "PUBLIC KEY" files (SubjectPublicKeyInfo) holding P-256 keys, as
 * `openssl ec -pubout` writes them; other curves and RSA are refused when the key is loaded,
 * so a misconfigured node says so at once rather than refusing every image later. Verification
 * is BearSSL's (br_ecdsa_i31_vrfy_asn1): no allocation.
 */
#ifndef GATEHOUSE_IMAGE_SIGNATURE_H
#define GATEHOUSE_IMAGE_SIGNATURE_H

#include <stddef.h>

#define IMAGE_SIGNATURE_ANNOTATION "dev.gatehouse.signature"
#define IMAGE_TRUST_MAX_KEYS 8
#define IMAGE_SIGNATURE_MAX_DER 80   /* a P-256 DER signature is at most 72 bytes */

struct image_trust {
    size_t count;
    unsigned char point[IMAGE_TRUST_MAX_KEYS][65];   /* uncompressed 04|X|Y */
    char name[IMAGE_TRUST_MAX_KEYS][256];            /* the file each came from, for messages */
};

/* Adds the P-256 public key in PEM file path. Returns 0, or -1 with err naming the file and
 * what is wrong (unreadable, not PEM, not a public key, not P-256, too many keys). */
int image_trust_add_file(struct image_trust *trust, const char *path, char *err, size_t errlen);

/* Same, from PEM text in memory (name is used in messages). */
int image_trust_add_pem(struct image_trust *trust, const char *pem, size_t len, const char *name,
                        char *err, size_t errlen);

/* The signature tag for a manifest digest: "sha256-<hex>.sig". out must hold 80 bytes. */
void image_signature_tag(const char *manifest_digest, char *out, size_t outlen);

/* Checks a base64 signature (as found in the annotation) over manifest_digest against every
 * trusted key. Returns 0 when one key verifies it (key_name, if not NULL, gets that key's file
 * name), -1 otherwise with err saying why (bad base64, no keys, no key verifies it). */
int image_signature_verify_b64(const struct image_trust *trust, const char *manifest_digest,
                               const char *signature_b64, const char **key_name,
                               char *err, size_t errlen);

#endif
