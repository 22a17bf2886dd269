/*
 * file_io.c - see file_io.h.
 */
#include "file_io.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
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
