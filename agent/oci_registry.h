/*
 * oci_registry.h - a client for the OCI distribution API (what `docker pull` speaks), for
 * `gatehouse-agent upgrade`.
 *
 * It fetches manifests (by tag or digest) and blobs from one repository of one registry with
 * libcurl's easy interface: the upgrade is a one-shot command, so a blocking client is the
 * simple and right thing here (the watch agent's multi client stays apart).
 *
 * Everything a registry sends is untrusted: a manifest fetched by digest must hash to that
 * digest; a blob is kept only when its size and sha256 match the descriptor that named it.
 * Blobs are written to PATH.partial first; a later call resumes that file with a Range request
 * when the registry honours it (206), starts over when it does not (200), and renames to PATH
 * only after the digest is checked. So a pull cut off halfway costs only the missing bytes.
 *
 * Authentication (distribution spec / Docker token auth): a 401 with
 * `WWW-Authenticate: Bearer realm=...,service=...,scope=...` is answered by fetching a token from
 * realm (with the credentials as HTTP basic auth when given, anonymous otherwise) and retrying
 * with `Authorization: Bearer`; a 401 with `Basic` is answered with the credentials. Tokens and
 * passwords never reach the log.
 */
#ifndef GATEHOUSE_OCI_REGISTRY_H
#define GATEHOUSE_OCI_REGISTRY_H

#include "image_digest.h"

#include <stddef.h>
#include <stdint.h>

/* A parsed image reference: [REGISTRY/]REPOSITORY[:TAG][@DIGEST].
 * REGISTRY is the first path component when it contains '.' or ':' or is "localhost"
 * (as docker decides); without one the reference is refused (no implicit Docker Hub).
 * No tag and no digest means tag "latest". */
struct oci_ref {
    char registry[256];                      /* host[:port] */
    char repository[256];                    /* lowercase path components [a-z0-9._-/] */
    char tag[129];                           /* "" when only a digest is given */
    char digest[IMAGE_DIGEST_LEN + 1];       /* "" when not pinned */
};

/* Returns 0, or -1 with err saying what is wrong with text. */
int oci_ref_parse(const char *text, struct oci_ref *ref, char *err, size_t errlen);

struct oci_registry_options {
    int plain_http;             /* http:// instead of https:// (a registry on a trusted link) */
    const char *ca_file;        /* PEM bundle to verify the registry (NULL: curl's default) */
    const char *username;       /* NULL: anonymous */
    const char *password;
    long timeout_seconds;       /* whole-transfer limit per request; 0 = 600 */
    long low_speed_seconds;     /* abort a transfer slower than 1 kB/s for this long; 0 = 30 */
    const char *user_agent;     /* NULL: "gatehouse-agent" */
};

struct oci_registry;

/* Opens a client for ref's registry and repository (no network yet). NULL + err on failure. */
struct oci_registry *oci_registry_open(const struct oci_ref *ref,
                                       const struct oci_registry_options *opts,
                                       char *err, size_t errlen);
void oci_registry_close(struct oci_registry *reg);

/* Media types the client asks for and recognises. */
#define OCI_MT_INDEX       "application/vnd.oci.image.index.v1+json"
#define OCI_MT_MANIFEST    "application/vnd.oci.image.manifest.v1+json"
#define DOCKER_MT_LIST     "application/vnd.docker.distribution.manifest.list.v2+json"
#define DOCKER_MT_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"

#define OCI_MANIFEST_MAX (4u << 20)   /* larger manifests are refused */

struct oci_manifest_reply {
    char *body;                              /* malloc'd, NUL-terminated; caller frees */
    size_t len;
    char media_type[128];                    /* Content-Type without parameters */
    char digest[IMAGE_DIGEST_LEN + 1];       /* sha256 of body, computed here */
};

/* GET /v2/REPO/manifests/REFERENCE (a tag or "sha256:..."), accepting the four types above.
 * When reference is a digest the body must hash to it. Returns 0; 1 when the registry says the
 * manifest does not exist (404: err names it); -1 on any other failure (err). */
int oci_registry_get_manifest(struct oci_registry *reg, const char *reference,
                              struct oci_manifest_reply *out, char *err, size_t errlen);

/* How a blob download went (for the log and the tests). */
struct oci_blob_result {
    uint64_t resumed_from;   /* bytes already in PATH.partial that the registry let us keep */
    uint64_t fetched;        /* bytes received this call */
    int already_present;     /* PATH existed with the right digest: nothing fetched */
};

/* Downloads blob `digest` of `size` bytes into path (see the header comment for .partial and
 * resuming). More than size bytes, a short body, or a digest mismatch fail, and a mismatching
 * .partial is removed so the next try starts clean. Returns 0, or -1 with err. */
int oci_registry_get_blob(struct oci_registry *reg, const char *digest, uint64_t size,
                          const char *path, struct oci_blob_result *result,
                          char *err, size_t errlen);

/* GET a small blob (a config) into memory, digest and size checked, at most max bytes.
 * Returns a malloc'd NUL-terminated buffer (caller frees) or NULL with err. */
char *oci_registry_get_small_blob(struct oci_registry *reg, const char *digest, uint64_t size,
                                  size_t max, char *err, size_t errlen);

#endif
