/*
 * tls_store.h - the proxy's certificates: SNI name -> chain and key, built with each route table
 * from the routes file's `tls:` entries (docs/routes-format.md), plus the default certificate.
 *
 * A store is immutable once built and lives as long as the route table that owns it, so a
 * handshake that started on one table finishes on it even if a reload swaps tables meanwhile.
 * Selection: exact name, else a wildcard entry "*.parent" for a name with exactly one more label,
 * else the default certificate. Names are compared case-insensitively; a trailing dot is ignored.
 */
#ifndef GATEHOUSE_TLS_STORE_H
#define GATEHOUSE_TLS_STORE_H

#include "tls_material.h"

#include <jansson.h>
#include <stddef.h>

struct tls_cert {
    struct tls_material material;    /* chain + key, ready for br_ssl_server_set_single_{rsa,ec} */
    const char *source;              /* "ingress ns/name, secret ns/name" or "default", for logs */
};

struct tls_store;

/* Builds a store from the routes document's "tls" array (may be NULL: no entries). Relative
 * cert/key paths are resolved against base_dir. Entries whose files cannot be loaded are logged
 * (naming the ingress and secret) and skipped. Returns NULL only when out of memory. */
struct tls_store *tls_store_build(const json_t *tls_entries, const char *base_dir, int64_t now);
void tls_store_free(struct tls_store *s);
size_t tls_store_num_certs(const struct tls_store *s);

/* The certificate for an SNI name (NULL or "" when the client sent none): never NULL once a
 * default certificate is set. */
const struct tls_cert *tls_store_select(const struct tls_store *s, const char *server_name);

/* The process-wide default certificate, set once at start before any store is used: from files
 * (--default-cert/--default-key), or, without them, a self-signed ECDSA P-256 certificate made
 * at start for CN "gatehouse default" (as ingress-nginx does), valid one year from now.
 * Returns 0, or -1 with a reason in err. */
int tls_default_cert_load(const char *cert_path, const char *key_path, char *err, size_t errlen);
int tls_default_cert_generate(char *err, size_t errlen);
const struct tls_cert *tls_default_cert(void);

#endif
