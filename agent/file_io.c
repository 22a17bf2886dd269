/*
 * file_io.c - see file_io.h.
 */
#include "file_io.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int file_fd_holds(int fd, const void *data, size_t len)
{
    struct stat st;
    int same = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == len;
    char chunk[8192];
    size_t off = 0;
    while (same && off < len) {
        size_t want = len - off < sizeof chunk ? len - off : sizeof chunk;
        ssize_t got = read(fd, chunk, want);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0 || memcmp(chunk, (const char *)data + off, (size_t)got) != 0)
            same = 0;
        else
            off += (size_t)got;
    }
    explicit_bzero(chunk, sizeof chunk);
    return same;
}

int file_holds(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return 0;
    int same = file_fd_holds(fd, data, len);
    close(fd);
    return same;
}

int file_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* O_EXCL, so the temp is never someone else's file; one agent owns a state folder, so a
 * leftover of this name (a crash, the same pid after a reboot) is ours to remove. */
static int create_temp(const char *temp, mode_t mode)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd >= 0 || errno != EEXIST || unlink(temp) < 0)
            return fd;
    }
    return -1;
}

int file_replace(const char *dir, const char *name, const void *data, size_t len, mode_t mode,
                 uid_t uid, gid_t gid, char *err, size_t errlen)
{
    char path[4352], temp[4400];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path ||
        snprintf(temp, sizeof temp, "%s/.%s.tmp.%ld", dir, name, (long)getpid()) >=
            (int)sizeof temp)
        return set_err(err, errlen, "file name too long: %.64s/%.64s...", dir, name);
    int fd = create_temp(temp, mode);
    if (fd < 0)
        return set_err(err, errlen, "cannot create %s: %s", temp, strerror(errno));
    int failed = fchmod(fd, mode) < 0 || (uid != (uid_t)-1 && fchown(fd, uid, gid) < 0) ||
                 file_write_all(fd, data, len) < 0 || fsync(fd) < 0;
    int saved = errno;
    if (close(fd) < 0 && !failed) {
        failed = 1;
        saved = errno;
    }
    if (failed) {
        unlink(temp);
        return set_err(err, errlen, "cannot write %s: %s", temp, strerror(saved));
    }
    if (rename(temp, path) < 0) {
        saved = errno;
        unlink(temp);
        return set_err(err, errlen, "cannot replace %s: %s", path, strerror(saved));
    }
    return 0;
}

int file_sync_dir(const char *dir, char *err, size_t errlen)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        set_err(err, errlen, "cannot sync folder %s: %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}
