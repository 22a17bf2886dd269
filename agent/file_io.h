/*
 * file_io.h - the two steps every atomic file write of the agent shares (routes file, TLS files,
 * hosts file): skip a write when the file already holds the bytes, write everything despite
 * short writes and EINTR, and make a rename durable by syncing the folder that holds it.
 */
#ifndef GATEHOUSE_FILE_IO_H
#define GATEHOUSE_FILE_IO_H

#include <stddef.h>
#include <sys/stat.h>

/* 1 when fd is a regular file holding exactly data[0..len); any trouble counts as "no". The
 * read buffer is wiped afterwards: the bytes may be a private key. */
int file_fd_holds(int fd, const void *data, size_t len);

/* The same for a path (followed if it is a symlink). */
int file_holds(const char *path, const void *data, size_t len);

/* Writes all len bytes. Returns 0, or -1 with errno set. */
int file_write_all(int fd, const void *data, size_t len);

/* fsync(2) on a folder, so a rename inside it survives a crash. Returns 0, or -1 with err
 * saying which folder and why. */
int file_sync_dir(const char *dir, char *err, size_t errlen);

#endif
