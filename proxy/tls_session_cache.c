/*
 * tls_session_cache.c - see tls_session_cache.h.
 *
 * A br_ssl_session_cache_class of our own whose save/load take a mutex and forward to
 * BearSSL's LRU cache. BearSSL calls them with a pointer to our vtable field, which is the
 * first field of struct locked_cache, so the pointer is also the whole object.
 *
 * The LRU needs 100 bytes per entry (bearssl_ssl.h), allocated once at start and kept for the
 * life of the process.
 */
#include "tls_session_cache.h"

#include <pthread.h>
#include <stdlib.h>

#define BYTES_PER_ENTRY 100

struct locked_cache {
    const br_ssl_session_cache_class *vtable;   /* first: BearSSL hands us &vtable */
    pthread_mutex_t lock;
    br_ssl_session_cache_lru lru;
};

static struct locked_cache cache;
static int cache_enabled;

static void locked_save(const br_ssl_session_cache_class **ctx, br_ssl_server_context *server,
                        const br_ssl_session_parameters *params)
{
    struct locked_cache *c = (struct locked_cache *)ctx;
    pthread_mutex_lock(&c->lock);
    c->lru.vtable->save(&c->lru.vtable, server, params);
    pthread_mutex_unlock(&c->lock);
}

static int locked_load(const br_ssl_session_cache_class **ctx, br_ssl_server_context *server,
                       br_ssl_session_parameters *params)
{
    struct locked_cache *c = (struct locked_cache *)ctx;
    pthread_mutex_lock(&c->lock);
    int found = c->lru.vtable->load(&c->lru.vtable, server, params);
    pthread_mutex_unlock(&c->lock);
    return found;
}

static const br_ssl_session_cache_class locked_class = {
    .context_size = sizeof(struct locked_cache),
    .save = locked_save,
    .load = locked_load,
};

int tls_session_cache_init(size_t entries)
{
    if (entries == 0 || cache_enabled)
        return 0;
    if (entries > SIZE_MAX / BYTES_PER_ENTRY || entries * BYTES_PER_ENTRY > UINT32_MAX)
        entries = UINT32_MAX / BYTES_PER_ENTRY;
    unsigned char *store = malloc(entries * BYTES_PER_ENTRY);
    if (!store)
        return -1;
    cache.vtable = &locked_class;
    pthread_mutex_init(&cache.lock, NULL);
    br_ssl_session_cache_lru_init(&cache.lru, store, entries * BYTES_PER_ENTRY);
    cache_enabled = 1;
    return 0;
}

const br_ssl_session_cache_class **tls_session_cache(void)
{
    return cache_enabled ? &cache.vtable : NULL;
}
