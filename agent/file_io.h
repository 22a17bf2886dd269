/*
 * file_io.h - the two steps every atomic file write of the agent shares (routes file, TLS files,
 * hosts file, metrics): skip a write when the file already holds the bytes, replace a file
 * through a temp file and rename, and make renames durable by syncing the folder.
 */
#ifndef GATEHOUSE_FILE_IO_H
#define GATEHOUSE_FILE_IO_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* 1 when fd is a regular file holding exactly data[0..len); any trouble counts as "no". The
 * read buffer is wiped afterwards: the bytes may be a private key. */
int file_fd_holds(int fd, const void *data, size_t len);

/* The same for a path (followed if it is a symlink). */
int file_holds(const char *path, const void *data, size_t len);

/* Writes all len bytes. Returns 0, or -1 with errno set. */
int file_write_all(int fd, const void *data, size_t len);

/* Replaces dir/name with data atomically: a temp file ".NAME.tmp.PID" beside it (a leftover of
 * ours from a crash is removed once), its mode set whatever the umask, handed to uid:gid unless
 * uid is (uid_t)-1, written, fsync'd, and renamed over dir/name. The folder is not synced, so a
 * caller replacing several files syncs it once (file_sync_dir). Returns 0, or -1 with err. */
int file_replace(const char *dir, const char *name, const void *data, size_t len, mode_t mode,
                 uid_t uid, gid_t gid, char *err, size_t errlen);

/* fsync(2) on a folder, so a rename inside it survives a crash. Returns 0, or -1 with err
 * saying which folder and why. */
int file_sync_dir(const char *dir, char *err, size_t errlen);

#endif
