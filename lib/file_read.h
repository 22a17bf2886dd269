/*
 * file_read.h - a whole file into memory, with a size bound.
 *
 * For the small files the programs read whole: kubeconfig material and token files (the agent),
 * user-data, meta-data and /proc/cmdline (the init). Files in /proc report no size, so the
 * buffer grows as it reads; the bytes may be a private key, so a buffer being outgrown is wiped
 * before it is freed rather than left to realloc.
 */
#ifndef GATEHOUSE_FILE_READ_H
#define GATEHOUSE_FILE_READ_H

#include <stddef.h>

/* The file's bytes with a NUL after them (*len excludes it), malloc'd; NULL with errno set when
 * it cannot be opened or read, or EFBIG when it holds more than max bytes. */
char *file_read_all(const char *path, size_t max, size_t *len);

#endif
