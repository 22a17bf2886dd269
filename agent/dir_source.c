/*
 * dir_source.c - see dir_source.h.
 */
#include "dir_source.h"

static int dir_source_watch(struct source *src, char *err, size_t errlen)
{
    struct dir_source *ds = (struct dir_source *)src;
    ds->watcher = dir_watch_open(ds->dir, err, errlen);
    return ds->watcher ? 0 : -1;
}

static json_t *dir_source_snapshot(struct source *src, manifest_diag_fn *diag, void *diag_ctx,
                                   char *err, size_t errlen)
{
    struct dir_source *ds = (struct dir_source *)src;
    return manifest_dir_read(ds->dir, &ds->last_good, diag, diag_ctx, err, errlen);
}

static enum source_event dir_source_wait(struct source *src, int timeout_ms, char *err,
                                         size_t errlen)
{
    struct dir_source *ds = (struct dir_source *)src;
    switch (dir_watch_next(ds->watcher, timeout_ms, err, errlen)) {
    case DIR_WATCH_CHANGED: return SOURCE_CHANGED;
    case DIR_WATCH_RELOAD: return SOURCE_RELOAD;
    case DIR_WATCH_STOP: return SOURCE_STOP;
    case DIR_WATCH_TIMEOUT: return SOURCE_TIMEOUT;
    default: return SOURCE_ERROR;
    }
}

static void dir_source_close(struct source *src)
{
    struct dir_source *ds = (struct dir_source *)src;
    dir_watch_close(ds->watcher);
    ds->watcher = NULL;
    json_decref(ds->last_good);
    ds->last_good = NULL;
}

void dir_source_init(struct dir_source *ds, const char *dir)
{
    *ds = (struct dir_source){
        .base = { .watch = dir_source_watch, .snapshot = dir_source_snapshot,
                  .wait = dir_source_wait, .close = dir_source_close, .render_at_start = 1 },
        .dir = dir,
    };
}
