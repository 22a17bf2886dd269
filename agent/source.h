/*
 * source.h - where the agent's Kubernetes objects come from: a manifest folder (dir_source) or
 * the cluster API (kube_source). main.c runs one pipeline over either.
 *
 * A source hands over snapshots (a json array of objects) and blocks until the objects may have
 * changed. The two differ in when a first snapshot is whole: a folder can be read at once, the
 * cluster only once every resource has been listed (before that, the routes on disk - the last
 * known good ones - keep serving, so render_at_start is 0 and the first SOURCE_CHANGED comes
 * when the lists are complete).
 */
#ifndef GATEHOUSE_SOURCE_H
#define GATEHOUSE_SOURCE_H

#include "manifest_dir.h"
#include "translate.h"

#include <jansson.h>
#include <stddef.h>

enum source_event {
    SOURCE_CHANGED,   /* render now */
    SOURCE_RELOAD,    /* SIGHUP: render, showing every diagnostic again */
    SOURCE_STOP,      /* SIGTERM/SIGINT */
    SOURCE_ERROR,     /* the source cannot go on; err says why */
    SOURCE_TIMEOUT,   /* timeout_ms passed */
    SOURCE_STATS,     /* nothing to render, but the source's metrics changed */
};

struct source {
    /* Starts watching for changes. Blocks SIGTERM, SIGINT and SIGHUP in the calling thread
     * (taken by a signalfd), so call it before starting other threads. */
    int (*watch)(struct source *src, char *err, size_t errlen);
    /* A json array of objects, or NULL (err filled in) when nothing could be read. */
    json_t *(*snapshot)(struct source *src, manifest_diag_fn *diag, void *diag_ctx,
                        char *err, size_t errlen);
    /* Blocks until the objects may have changed, a signal, or timeout_ms (-1: none) pass. */
    enum source_event (*wait)(struct source *src, int timeout_ms, char *err, size_t errlen);
    /* After a render was written: the objects it came from and the Ingresses it served
     * ("namespace/name", sorted). */
    void (*rendered)(struct source *src, const json_t *objects, const json_t *served);
    /* Prometheus text lines about the source (may be NULL); returns the length written. */
    size_t (*metrics)(struct source *src, char *buf, size_t cap);
    /* Before stopping: lets in-flight work finish briefly (may be NULL). */
    void (*close)(struct source *src);
    int render_at_start;
};

#endif
