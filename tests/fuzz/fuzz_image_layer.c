/*
 * fuzz_image_layer.c - libFuzzer target for the tar(+gzip) reader that takes the kernel and
 * initramfs out of an image layer.
 *
 * The layer's digest is checked against a signed manifest before it is read, so these bytes
 * come from whoever holds a trusted key; the reader still must not trust them. Whatever the
 * input: the call answers 0 or -1, and on -1 leaves neither output file behind; on 0 both
 * exist with the sizes it reports. The input is tried as plain tar and as gzip.
 *
 * Built with agent/image_layer.c and zlib (see the Makefile's fuzz rules).
 */
#include "image_layer.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void check_outputs(int rc, const struct image_layer_out *out)
{
    struct stat k, i;
    int have_k = stat(out->kernel_path, &k) == 0, have_i = stat(out->initrd_path, &i) == 0;
    if (rc < 0 && (have_k || have_i))
        abort();
    if (rc == 0 && (!have_k || !have_i || (uint64_t)k.st_size != out->kernel_size ||
                    (uint64_t)i.st_size != out->initrd_size))
        abort();
    unlink(out->kernel_path);
    unlink(out->initrd_path);
}

static void remove_dir(void)
{
    char layer[128];
    snprintf(layer, sizeof layer, "%s/layer", dir);
    unlink(layer);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/fuzz_image_layer.XXXXXX");
        if (!mkdtemp(dir))
            abort();
        atexit(remove_dir);
    }
    char layer[128], kernel[128], initrd[128], err[256];
    snprintf(layer, sizeof layer, "%s/layer", dir);
    snprintf(kernel, sizeof kernel, "%s/vmlinuz", dir);
    snprintf(initrd, sizeof initrd, "%s/initrd", dir);
    FILE *f = fopen(layer, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0)
        abort();
    for (int gzip = 0; gzip <= 1; gzip++) {
        struct image_layer_out out = { .kernel_path = kernel, .initrd_path = initrd };
        int rc = image_layer_extract_boot(layer, gzip, &out, err, sizeof err);
        if (rc != 0 && rc != -1)
            abort();
        check_outputs(rc, &out);
    }
    return 0;
}
