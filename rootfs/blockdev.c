/*
 * blockdev.c - filesystem labels read straight from superblocks, and the search over sysfs.
 *
 * Only three formats matter (see blockdev.h), and each keeps its label at a fixed offset:
 *   ext2/3/4  superblock at 1024: magic 0xEF53 at +56, label at +120 (16 bytes, NUL padded)
 *   iso9660   primary volume descriptor at 32768: type 1, "CD001", volume id at +40 (32 bytes,
 *             space padded)
 *   vfat      boot sector: 0x55AA at 510, a sane BPB; label at 0x2B (FAT12/16) or 0x47 (FAT32),
 *             11 bytes, space padded, present when the extended boot signature is 0x29
 * Each format is checked by its magic before its label is trusted, so random bytes on an
 * unformatted disk never look like a label. Reads use pread on one descriptor; nothing is
 * mounted here.
 */
#include "blockdev.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define HEAD_SIZE 2048          /* boot sector and the ext superblock (1024..2047) */
#define ISO_PVD_OFFSET 32768
#define ISO_PVD_SIZE 2048

const char *blockdev_fs_name(enum blockdev_fs fs)
{
    switch (fs) {
    case BLOCKDEV_FS_EXT4: return "ext4";
    case BLOCKDEV_FS_ISO9660: return "iso9660";
    case BLOCKDEV_FS_VFAT: return "vfat";
    default: return "none";
    }
}

static unsigned le16(const unsigned char *p)
{
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

/* Copies a fixed-size label field, stopping at a NUL, dropping trailing spaces; bytes outside
 * printable ASCII become '?' so a label can be logged as it is. */
static void copy_label(char label[BLOCKDEV_LABEL_MAX], const unsigned char *field, size_t n)
{
    size_t len = 0;
    while (len < n && len < BLOCKDEV_LABEL_MAX - 1 && field[len] != '\0') {
        unsigned char c = field[len];
        label[len++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    while (len > 0 && label[len - 1] == ' ')
        len--;
    label[len] = '\0';
}

static int is_ext(const unsigned char *head, size_t n)
{
    return n >= 1024 + 136 && le16(head + 1024 + 56) == 0xEF53;
}

static int is_iso9660(const unsigned char *pvd, size_t n)
{
    return n >= 72 && pvd[0] == 1 && memcmp(pvd + 1, "CD001", 5) == 0 && pvd[6] == 1;
}

/* A FAT boot sector: signature plus a BPB whose fields have the only values FAT allows. */
static int is_vfat(const unsigned char *head, size_t n)
{
    if (n < 512 || head[510] != 0x55 || head[511] != 0xAA)
        return 0;
    unsigned bytes_per_sector = le16(head + 0x0B), per_cluster = head[0x0D];
    if (bytes_per_sector < 512 || bytes_per_sector > 4096 || (bytes_per_sector & (bytes_per_sector - 1)))
        return 0;
    if (per_cluster == 0 || (per_cluster & (per_cluster - 1)))
        return 0;
    return le16(head + 0x0E) != 0 && head[0x10] != 0;   /* reserved sectors, number of FATs */
}

static void vfat_label(const unsigned char *head, char label[BLOCKDEV_LABEL_MAX])
{
    int fat32 = le16(head + 0x16) == 0;    /* FAT12/16 keep the FAT size here; FAT32 sets 0 */
    size_t sig = fat32 ? 0x42 : 0x26, field = fat32 ? 0x47 : 0x2B;
    label[0] = '\0';
    if (head[sig] == 0x29)
        copy_label(label, head + field, 11);
    if (strcmp(label, "NO NAME") == 0)     /* what mkfs tools write when given no label */
        label[0] = '\0';
}

/* Reads up to n bytes at off; a short read (a small image) leaves the rest zeroed. */
static ssize_t read_at(int fd, unsigned char *buf, size_t n, off_t off)
{
    memset(buf, 0, n);
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, off + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int blockdev_read_label(const char *path, enum blockdev_fs *fs, char label[BLOCKDEV_LABEL_MAX],
                        char *err, size_t errlen)
{
    *fs = BLOCKDEV_FS_NONE;
    label[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    unsigned char head[HEAD_SIZE], pvd[ISO_PVD_SIZE];
    ssize_t nhead = read_at(fd, head, sizeof head, 0);
    ssize_t npvd = nhead < 0 ? -1 : read_at(fd, pvd, sizeof pvd, ISO_PVD_OFFSET);
    int saved = errno;
    close(fd);
    if (nhead < 0 || npvd < 0)
        return set_err(err, errlen, "%s: cannot read: %s", path, strerror(saved));

    if (is_ext(head, (size_t)nhead)) {
        *fs = BLOCKDEV_FS_EXT4;
        copy_label(label, head + 1024 + 120, 16);
    } else if (is_iso9660(pvd, (size_t)npvd)) {
        *fs = BLOCKDEV_FS_ISO9660;
        copy_label(label, pvd + 40, 32);
    } else if (is_vfat(head, (size_t)nhead)) {
        *fs = BLOCKDEV_FS_VFAT;
        vfat_label(head, label);
    }
    return 0;
}

static int label_equal(const char *a, const char *b, int ignore_case)
{
    return ignore_case ? strcasecmp(a, b) == 0 : strcmp(a, b) == 0;
}

int blockdev_find(const char *sys_block_dir, const char *dev_dir, const char *label,
                  int ignore_case, unsigned fs_mask, char *dev_path, size_t dev_path_size,
                  enum blockdev_fs *fs, char *err, size_t errlen)
{
    struct dirent **names;
    int n = scandir(sys_block_dir, &names, NULL, alphasort);
    if (n < 0)
        return set_err(err, errlen, "%s: cannot list: %s", sys_block_dir, strerror(errno));
    int found = 0;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        char path[512], got[BLOCKDEV_LABEL_MAX], why[256];
        enum blockdev_fs type;
        if (name[0] == '.' || (size_t)snprintf(path, sizeof path, "%s/%s", dev_dir, name) >= sizeof path)
            continue;
        if (blockdev_read_label(path, &type, got, why, sizeof why) < 0) {
            log_debug("%s", why);       /* an empty drive or a vanished device: not ours */
            continue;
        }
        if (!(type & fs_mask) || !label_equal(got, label, ignore_case))
            continue;
        if (found) {
            log_warn("%s also carries the label \"%s\"; using %s", path, label, dev_path);
            continue;
        }
        found = 1;
        snprintf(dev_path, dev_path_size, "%s", path);
        *fs = type;
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return found ? 0 : 1;
}
