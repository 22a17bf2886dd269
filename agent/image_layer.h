/*
 * image_layer.h - takes the kernel and initramfs out of an appliance image layer.
 *
 * The layer (already checked against its sha256 by the pull) is a tar archive, gzip-compressed
 * (application/vnd.oci.image.layer.v1.tar+gzip) or not (...tar). The appliance's layer holds
 * boot/vmlinuz and boot/initrd (and the rootfs tree for inspection, which is skipped). Only
 * regular files with exactly those names count ("./boot/vmlinuz" too); links, devices, and
 * members bigger than the limit are refused or skipped, never followed. tar is read here (ustar
 * and the pax extended headers Python and Go write, for long names and sizes); gzip is zlib's.
 * Output files are written with O_EXCL, fsync'd, mode 0644.
 */
#ifndef GATEHOUSE_IMAGE_LAYER_H
#define GATEHOUSE_IMAGE_LAYER_H

#include <stddef.h>
#include <stdint.h>

#define IMAGE_LAYER_MEMBER_MAX (512ull << 20)   /* a kernel or initramfs larger than this is refused */

struct image_layer_out {
    const char *kernel_path;   /* where boot/vmlinuz goes (must not exist) */
    const char *initrd_path;   /* where boot/initrd goes (must not exist) */
    uint64_t kernel_size;      /* filled in */
    uint64_t initrd_size;
};

/* gzip: 1 for ...tar+gzip, 0 for plain tar. Returns 0 when both members were found and written;
 * -1 with err otherwise (corrupt gzip/tar, a member missing, too big, a write error), and then
 * neither output file is left behind. */
int image_layer_extract_boot(const char *layer_path, int gzip, struct image_layer_out *out,
                             char *err, size_t errlen);

#endif
