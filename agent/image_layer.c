/*
 * image_layer.c - a streaming tar reader that keeps two members of an image layer.
 *
 * The layer is read once, front to back, through zlib when it is gzip'd: nothing is unpacked
 * into a tree, so a hostile layer has no path, link or device to play with; the only files
 * written are the two outputs the caller named. Every 512-byte header has its checksum checked,
 * data of other members is skipped block by block, and the archive must end with its two zero
 * blocks (after which a gzip stream is read to its end, so its CRC is checked too).
 *
 * Extension headers understood: pax 'x' (path and size, the ones Python's tarfile and Go's
 * archive/tar write for long names and big files), pax 'g' (skipped: it cannot rename the two
 * files we want), GNU 'L' long names and 'K' long link names (skipped). Only types that carry
 * data have it skipped, as tarfile does: a link's or device's size field is not trusted.
 */
#include "image_layer.h"

#include "file_io.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define BLOCK 512
#define CHUNK 65536
#define EXT_HEADER_MAX (1u << 20)   /* a pax or long-name header larger than this is hostile */

enum { KERNEL, INITRD, WANTED };
static const char *const WANTED_NAME[WANTED] = { "boot/vmlinuz", "boot/initrd" };

struct layer {
    const char *path;
    char *err;
    size_t errlen;
    int fd;
    int gzip, z_live, z_end, file_eof;
    z_stream zs;
    /* Extension headers waiting for the member they describe. */
    char *next_path;        /* pax path, or GNU long name */
    int next_has_size;
    uint64_t next_size;
    /* Outputs. */
    const char *out_path[WANTED];
    int created[WANTED];
    uint64_t written[WANTED];
    unsigned char in[CHUNK], data[CHUNK];
};

/* ---- the byte stream: plain or gunzipped ---- */

static long read_file(struct layer *l, unsigned char *dst, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(l->fd, dst + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return set_err(l->err, l->errlen, "%s: read: %s", l->path, strerror(errno));
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (long)got;
}

static long read_gzip(struct layer *l, unsigned char *dst, size_t n)
{
    l->zs.next_out = dst;
    l->zs.avail_out = (uInt)n;
    while (l->zs.avail_out > 0 && !l->z_end) {
        if (l->zs.avail_in == 0 && !l->file_eof) {
            long r = read_file(l, l->in, sizeof l->in);
            if (r < 0)
                return -1;
            l->file_eof = r == 0;
            l->zs.next_in = l->in;
            l->zs.avail_in = (uInt)r;
        }
        int rc = inflate(&l->zs, Z_NO_FLUSH);
        if (rc == Z_STREAM_END)
            l->z_end = 1;
        else if (rc == Z_BUF_ERROR && l->zs.avail_in == 0 && l->file_eof)
            return set_err(l->err, l->errlen, "%s: gzip stream is truncated", l->path);
        else if (rc != Z_OK && rc != Z_BUF_ERROR)
            return set_err(l->err, l->errlen, "%s: corrupt gzip data (%s)", l->path,
                           l->zs.msg ? l->zs.msg : zError(rc));
    }
    return (long)(n - l->zs.avail_out);
}

/* Up to n bytes; fewer only where the stream ends. -1 with err on trouble. */
static long layer_read(struct layer *l, unsigned char *dst, size_t n)
{
    return l->gzip ? read_gzip(l, dst, n) : read_file(l, dst, n);
}

/* Exactly n bytes, or -1: the archive may not end inside a member. */
static int read_exact(struct layer *l, unsigned char *dst, size_t n, const char *what)
{
    long r = layer_read(l, dst, n);
    if (r < 0)
        return -1;
    if ((size_t)r < n)
        return set_err(l->err, l->errlen, "%s: tar archive is truncated (inside %s)", l->path,
                       what);
    return 0;
}

static uint64_t padded(uint64_t size)
{
    return (size + BLOCK - 1) / BLOCK * BLOCK;
}

/* Reads and drops n bytes. */
static int skip(struct layer *l, uint64_t n, const char *what)
{
    while (n > 0) {
        size_t step = n < sizeof l->data ? (size_t)n : sizeof l->data;
        if (read_exact(l, l->data, step, what) != 0)
            return -1;
        n -= step;
    }
    return 0;
}

/* ---- header fields ---- */

/* An octal field: optional leading spaces, digits, then NUL/space or the field's end. */
static int parse_octal(const unsigned char *f, size_t len, uint64_t *out)
{
    size_t i = 0, digits = 0;
    uint64_t v = 0;
    while (i < len && f[i] == ' ')
        i++;
    for (; i < len && f[i] >= '0' && f[i] <= '7'; i++, digits++) {
        if (v > (UINT64_MAX >> 3))
            return -1;
        v = v << 3 | (uint64_t)(f[i] - '0');
    }
    if (digits == 0 || (i < len && f[i] != ' ' && f[i] != '\0'))
        return -1;
    *out = v;
    return 0;
}

/* The size field: octal, or GNU/star base-256 (high bit set) for members of 8 GiB and more. */
static int parse_size(const unsigned char *f, size_t len, uint64_t *out)
{
    if (!(f[0] & 0x80))
        return parse_octal(f, len, out);
    if (f[0] & 0x40)   /* negative */
        return -1;
    uint64_t v = f[0] & 0x3f;
    for (size_t i = 1; i < len; i++) {
        if (v > (UINT64_MAX >> 8))
            return -1;
        v = v << 8 | f[i];
    }
    *out = v;
    return 0;
}

static int header_checksum_ok(const unsigned char *h)
{
    uint64_t want;
    if (parse_octal(h + 148, 8, &want) != 0)
        return 0;
    uint64_t sum = 0;
    for (size_t i = 0; i < BLOCK; i++)
        sum += (i >= 148 && i < 156) ? ' ' : h[i];
    return sum == want;
}

static int all_zero(const unsigned char *b)
{
    for (size_t i = 0; i < BLOCK; i++)
        if (b[i])
            return 0;
    return 1;
}

/* prefix "/" name, each field NUL-terminated unless full; the prefix only in POSIX ustar (GNU
 * keeps other fields there). */
static void ustar_name(const unsigned char *h, char out[257])
{
    size_t n = strnlen((const char *)h, 100);
    size_t p = memcmp(h + 257, "ustar\0", 6) == 0 ? strnlen((const char *)h + 345, 155) : 0;
    size_t at = 0;
    if (p) {
        memcpy(out, h + 345, p);
        out[p] = '/';
        at = p + 1;
    }
    memcpy(out + at, h, n);
    out[at + n] = '\0';
}

/* ---- extension headers ---- */

static int set_next_path(struct layer *l, const char *s, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return set_err(l->err, l->errlen, "%s: out of memory", l->path);
    memcpy(copy, s, len);
    copy[len] = '\0';
    free(l->next_path);
    l->next_path = copy;
    return 0;
}

/* "LEN key=value\n" records; path and size are kept for the next member. */
static int parse_pax(struct layer *l, const char *p, size_t len)
{
    const char *end = p + len;
    while (p < end) {
        size_t reclen = 0;
        const char *q = p;
        while (q < end && *q >= '0' && *q <= '9' && reclen < EXT_HEADER_MAX)
            reclen = reclen * 10 + (size_t)(*q++ - '0');
        /* The length counts itself, the space, key=value and the newline. */
        if (q == p || q >= end || *q != ' ' || reclen < (size_t)(q - p) + 3
            || reclen > (size_t)(end - p) || p[reclen - 1] != '\n')
            return set_err(l->err, l->errlen, "%s: malformed pax header record", l->path);
        const char *key = q + 1, *rec_end = p + reclen - 1;
        const char *eq = memchr(key, '=', (size_t)(rec_end - key));
        if (!eq)
            return set_err(l->err, l->errlen, "%s: malformed pax header record", l->path);
        const char *val = eq + 1;
        size_t keylen = (size_t)(eq - key), vallen = (size_t)(rec_end - val);
        if (keylen == 4 && memcmp(key, "path", 4) == 0) {
            if (memchr(val, '\0', vallen))
                return set_err(l->err, l->errlen, "%s: pax path with a NUL in it", l->path);
            if (set_next_path(l, val, vallen) != 0)
                return -1;
        } else if (keylen == 4 && memcmp(key, "size", 4) == 0) {
            uint64_t v = 0;
            if (vallen == 0 || vallen > 19)
                return set_err(l->err, l->errlen, "%s: bad pax size", l->path);
            for (size_t i = 0; i < vallen; i++) {
                if (val[i] < '0' || val[i] > '9')
                    return set_err(l->err, l->errlen, "%s: bad pax size", l->path);
                v = v * 10 + (uint64_t)(val[i] - '0');
            }
            l->next_size = v;
            l->next_has_size = 1;
        }
        p += reclen;
    }
    return 0;
}

/* The data of an 'x' or 'L' header, read whole (bounded), then its padding. */
static int read_ext_header(struct layer *l, char type, uint64_t size)
{
    if (size > EXT_HEADER_MAX)
        return set_err(l->err, l->errlen, "%s: %s header of %llu bytes is too large", l->path,
                       type == 'x' ? "pax" : "long-name", (unsigned long long)size);
    char *buf = malloc((size_t)size + 1);
    if (!buf)
        return set_err(l->err, l->errlen, "%s: out of memory", l->path);
    int rc = read_exact(l, (unsigned char *)buf, (size_t)size, "an extended header");
    if (rc == 0)
        rc = skip(l, padded(size) - size, "an extended header");
    if (rc == 0 && type == 'x')
        rc = parse_pax(l, buf, (size_t)size);
    else if (rc == 0)
        rc = set_next_path(l, buf, strnlen(buf, (size_t)size));
    free(buf);
    return rc;
}

/* ---- members ---- */

static int wanted_index(const char *name)
{
    if (strncmp(name, "./", 2) == 0)
        name += 2;
    for (int i = 0; i < WANTED; i++)
        if (strcmp(name, WANTED_NAME[i]) == 0)
            return i;
    return -1;
}

static int is_regular(char type)
{
    return type == '0' || type == '\0' || type == '7';
}

/* Links, directories, devices and FIFOs carry no data whatever their size field says. */
static int has_data(char type)
{
    return is_regular(type) || !(type >= '1' && type <= '6');
}

static int extract(struct layer *l, int which, uint64_t size)
{
    const char *out = l->out_path[which];
    if (l->created[which])
        return set_err(l->err, l->errlen, "%s: %s appears twice in the layer", l->path,
                       WANTED_NAME[which]);
    if (size > IMAGE_LAYER_MEMBER_MAX)
        return set_err(l->err, l->errlen, "%s: %s is %llu bytes, more than the %llu allowed",
                       l->path, WANTED_NAME[which], (unsigned long long)size,
                       IMAGE_LAYER_MEMBER_MAX);
    int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return set_err(l->err, l->errlen, "%s: cannot create %s: %s", l->path, out,
                       strerror(errno));
    l->created[which] = 1;
    int rc = fchmod(fd, 0644) == 0 ? 0 : set_err(l->err, l->errlen, "%s: chmod: %s", out,
                                                  strerror(errno));
    for (uint64_t left = size; rc == 0 && left > 0;) {
        size_t step = left < sizeof l->data ? (size_t)left : sizeof l->data;
        rc = read_exact(l, l->data, step, WANTED_NAME[which]);
        if (rc == 0 && file_write_all(fd, l->data, step) != 0)
            rc = set_err(l->err, l->errlen, "%s: write: %s", out, strerror(errno));
        left -= step;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = set_err(l->err, l->errlen, "%s: fsync: %s", out, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = set_err(l->err, l->errlen, "%s: close: %s", out, strerror(errno));
    if (rc == 0)
        rc = skip(l, padded(size) - size, WANTED_NAME[which]);
    l->written[which] = size;
    return rc;
}

/* One member whose header h has been checked; extension headers are consumed here too. */
static int member(struct layer *l, const unsigned char *h)
{
    char type = (char)h[156];
    uint64_t size;
    if (parse_size(h + 124, 12, &size) != 0)
        return set_err(l->err, l->errlen, "%s: tar header with a bad size field", l->path);
    if (type == 'x' || type == 'L')
        return read_ext_header(l, type, size);
    if (type == 'g' || type == 'K')
        return skip(l, padded(size), "an extended header");

    char ustar[257];
    ustar_name(h, ustar);
    if (l->next_has_size)
        size = l->next_size;
    int which = wanted_index(l->next_path ? l->next_path : ustar);
    free(l->next_path);
    l->next_path = NULL;
    l->next_has_size = 0;

    if (which < 0)
        return has_data(type) ? skip(l, padded(size), "a member") : 0;
    if (!is_regular(type))
        return set_err(l->err, l->errlen, "%s: %s is not a regular file (tar type 0x%02x): "
                       "refused", l->path, WANTED_NAME[which], (unsigned char)type);
    return extract(l, which, size);
}

/* After the end marker: a gzip stream is read to its end so its CRC and length are checked. */
static int finish_stream(struct layer *l)
{
    while (l->gzip && !l->z_end)
        if (layer_read(l, l->data, sizeof l->data) < 0)
            return -1;
    return 0;
}

static int read_archive(struct layer *l)
{
    unsigned char h[BLOCK];
    for (;;) {
        long r = layer_read(l, h, BLOCK);
        if (r < 0)
            return -1;
        if (r < BLOCK)
            return set_err(l->err, l->errlen, "%s: tar archive is truncated (no end marker)",
                           l->path);
        if (all_zero(h)) {
            if (read_exact(l, h, BLOCK, "the end marker") != 0)
                return -1;
            if (!all_zero(h))
                return set_err(l->err, l->errlen, "%s: lone zero block inside the tar archive",
                               l->path);
            return finish_stream(l);
        }
        if (!header_checksum_ok(h)) {
            if (!l->gzip && h[0] == 0x1f && h[1] == 0x8b)
                return set_err(l->err, l->errlen, "%s: gzip-compressed, but read as a plain "
                               "tar", l->path);
            return set_err(l->err, l->errlen, "%s: tar header checksum mismatch (corrupt or "
                           "not a tar archive)", l->path);
        }
        if (memcmp(h + 257, "ustar", 5) != 0)
            return set_err(l->err, l->errlen, "%s: not a ustar/pax tar archive", l->path);
        if (member(l, h) != 0)
            return -1;
    }
}

static int extract_all(struct layer *l)
{
    if (l->gzip) {
        if (inflateInit2(&l->zs, 16 + MAX_WBITS) != Z_OK)
            return set_err(l->err, l->errlen, "%s: zlib initialisation failed", l->path);
        l->z_live = 1;
    }
    if (read_archive(l) != 0)
        return -1;
    for (int i = 0; i < WANTED; i++)
        if (!l->created[i])
            return set_err(l->err, l->errlen, "%s: no %s in the layer", l->path,
                           WANTED_NAME[i]);
    return 0;
}

int image_layer_extract_boot(const char *layer_path, int gzip, struct image_layer_out *out,
                             char *err, size_t errlen)
{
    struct layer *l = calloc(1, sizeof *l);
    if (!l)
        return set_err(err, errlen, "%s: out of memory", layer_path);
    l->path = layer_path;
    l->err = err;
    l->errlen = errlen;
    l->gzip = gzip;
    l->out_path[KERNEL] = out->kernel_path;
    l->out_path[INITRD] = out->initrd_path;
    int rc = -1;
    l->fd = open(layer_path, O_RDONLY | O_CLOEXEC);
    if (l->fd < 0)
        set_err(err, errlen, "%s: %s", layer_path, strerror(errno));
    else
        rc = extract_all(l);
    if (l->z_live)
        inflateEnd(&l->zs);
    if (l->fd >= 0)
        close(l->fd);
    for (int i = 0; i < WANTED; i++)
        if (rc != 0 && l->created[i])
            unlink(l->out_path[i]);
    if (rc == 0) {
        out->kernel_size = l->written[KERNEL];
        out->initrd_size = l->written[INITRD];
    }
    free(l->next_path);
    free(l);
    return rc;
}
