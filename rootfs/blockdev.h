/*
 * blockdev.h - find a block device by the label of the filesystem on it.
 *
 * The appliance's stage-1 init has no udev and no blkid: it needs exactly two volumes, the
 * NoCloud `cidata` volume (iso9660 or vfat) and the `GATEHOUSE_DATA` ext4 partition, so it reads
 * the few superblock bytes that hold their labels itself. The reader takes a path (a device
 * node or an image file, which is what the unit tests use) and the search takes the sysfs and
 * /dev folders as parameters for the same reason.
 */
#ifndef GATEHOUSE_BLOCKDEV_H
#define GATEHOUSE_BLOCKDEV_H

#include <stddef.h>

enum blockdev_fs {
    BLOCKDEV_FS_NONE = 0,          /* no filesystem this reader knows */
    BLOCKDEV_FS_EXT4 = 1 << 0,     /* any ext2/3/4 superblock; mounted as ext4 */
    BLOCKDEV_FS_ISO9660 = 1 << 1,
    BLOCKDEV_FS_VFAT = 1 << 2,     /* FAT12/16/32 */
};

/* Longest label of the three formats (iso9660 volume id), plus the NUL. */
#define BLOCKDEV_LABEL_MAX 33

/* Name for mount(2) ("ext4", "iso9660", "vfat"), "none" for BLOCKDEV_FS_NONE. */
const char *blockdev_fs_name(enum blockdev_fs fs);

/* Reads the filesystem type and label of the device or image file at path. Returns 0 with *fs
 * and label filled in (trailing spaces removed; "" when the filesystem has no label; *fs is
 * BLOCKDEV_FS_NONE for anything else), or -1 with err naming the path when it cannot be read. */
int blockdev_read_label(const char *path, enum blockdev_fs *fs, char label[BLOCKDEV_LABEL_MAX],
                        char *err, size_t errlen);

/* Looks at every entry of sys_block_dir (normally /sys/class/block), in name order, and reads
 * dev_dir/NAME (normally /dev/NAME). The first device whose filesystem is one of fs_mask and whose
 * label equals label (ignoring ASCII case when ignore_case) wins; a second match is logged as a
 * warning. Returns 0 with dev_path (dev_dir/NAME) and *fs filled in, 1 when nothing matches, -1
 * with err when sys_block_dir cannot be listed. Unreadable devices (empty CD drives) are skipped. */
int blockdev_find(const char *sys_block_dir, const char *dev_dir, const char *label,
                  int ignore_case, unsigned fs_mask, char *dev_path, size_t dev_path_size,
                  enum blockdev_fs *fs, char *err, size_t errlen);

#endif
