/*
 * dir_watch.h - waits for a manifest folder to change, or for a signal.
 *
 * inotify on the folder (files closed after writing, moved in or out, created, deleted, their
 * attributes changed). Events are debounced: the change is reported 50 ms after the last event
 * (at most 1 s after the first, so a steady trickle cannot starve renders), so an editor's
 * save-as-rename or a ConfigMap's "..data" symlink swap becomes one render. Events for names the
 * manifest reader ignores (editor swap and lock files) are ignored too, except "..data".
 *
 * When the folder itself is deleted or moved away, the watch is dropped and re-established once a
 * folder of that name exists again (checked every second); that is reported as a change.
 *
 * SIGTERM, SIGINT and SIGHUP are taken by a signalfd: they are blocked in the calling thread from
 * dir_watch_open on, so call it before starting any other thread.
 */
#ifndef GATEHOUSE_DIR_WATCH_H
#define GATEHOUSE_DIR_WATCH_H

#include <stddef.h>

#define DIR_WATCH_DEBOUNCE_MS 50
#define DIR_WATCH_MAX_DELAY_MS 1000
#define DIR_WATCH_RETRY_MS 1000

enum dir_watch_event {
    DIR_WATCH_CHANGED,   /* the folder changed (debounced) or came back */
    DIR_WATCH_RELOAD,    /* SIGHUP: read again now */
    DIR_WATCH_STOP,      /* SIGTERM or SIGINT */
    DIR_WATCH_ERROR,     /* inotify or poll failed; err says why */
    DIR_WATCH_TIMEOUT,   /* nothing happened within timeout_ms */
};

struct dir_watch;

/* NULL with err on failure. A folder missing at open time is not an error: it is waited for. */
struct dir_watch *dir_watch_open(const char *dir, char *err, size_t errlen);

/* Blocks until something happens, or timeout_ms pass (-1: no timeout). */
enum dir_watch_event dir_watch_next(struct dir_watch *w, int timeout_ms, char *err,
                                    size_t errlen);

/* Closes the descriptors and unblocks the signals again. */
void dir_watch_close(struct dir_watch *w);

#endif
