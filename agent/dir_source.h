/*
 * dir_source.h - the manifest folder as a source (source.h): manifest_dir reads it, dir_watch
 * says when it changed. A file that stops parsing keeps the objects it last held.
 */
#ifndef GATEHOUSE_DIR_SOURCE_H
#define GATEHOUSE_DIR_SOURCE_H

#include "dir_watch.h"
#include "source.h"

struct dir_source {
    struct source base;
    const char *dir;
    struct dir_watch *watcher;
    json_t *last_good;     /* each file's documents when it last parsed */
};

void dir_source_init(struct dir_source *ds, const char *dir);

#endif
