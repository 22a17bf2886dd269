/*
 * tls_session_cache.h - one TLS session cache shared by every worker, so a client that comes back
 * resumes without a full handshake whichever worker accepts it (BearSSL 0.6 has no session
 * tickets). BearSSL's LRU cache is not thread-safe; this wraps it with a mutex: lookups and
 * stores happen once per handshake, never per record.
 */
#ifndef GATEHOUSE_TLS_SESSION_CACHE_H
#define GATEHOUSE_TLS_SESSION_CACHE_H

#include <bearssl.h>
#include <stddef.h>

/* entries == 0: no cache (every handshake is full). Returns 0, or -1 when out of memory. */
int tls_session_cache_init(size_t entries);

/* The cache to give br_ssl_server_set_cache(), or NULL when disabled. */
const br_ssl_session_cache_class **tls_session_cache(void);

#endif
