/*
 * file_read.c - see file_read.h.
 */
#include "file_read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A buffer twice the size, the bytes moved over and the old one wiped; NULL when out of memory
 * (the old one is then left to the caller). */
static char *grow(char *buf, size_t used, size_t *cap)
{
    char *bigger = malloc(*cap * 2);
    if (!bigger)
        return NULL;
    memcpy(bigger, buf, used);
    explicit_bzero(buf, *cap);
    free(buf);
    *cap *= 2;
    return bigger;
}

char *file_read_all(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, used = 0;
    char *buf = malloc(cap);
    int saved = ENOMEM;
    while (buf) {
        if (used > max) {
            saved = EFBIG;
            break;
        }
        if (used + 1 >= cap) {
            char *bigger = grow(buf, used, &cap);
            if (!bigger)
                break;
            buf = bigger;
        }
        ssize_t n = read(fd, buf + used, cap - 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            saved = errno;
            break;
        }
        if (n == 0) {
            close(fd);
            buf[used] = '\0';
            *len = used;
            return buf;
        }
        used += (size_t)n;
    }
    if (buf) {
        explicit_bzero(buf, cap);
        free(buf);
    }
    close(fd);
    errno = saved;
    return NULL;
}
