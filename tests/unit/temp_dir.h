/*
 * temp_dir.h - removing a unit test's temporary folder (made with mkdtemp) and all it holds.
 */
#ifndef GATEHOUSE_TEMP_DIR_H
#define GATEHOUSE_TEMP_DIR_H

#include <stdio.h>
#include <stdlib.h>

/* 0 when gone; -1 (said on stderr) when rm failed. Paths come from mkdtemp: no quotes in them. */
static inline int temp_dir_remove(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) == 0)
        return 0;
    fprintf(stderr, "could not remove %s\n", path);
    return -1;
}

#endif
