/*
 * test_image_layer.c - kernel and initrd out of image layers written the way real ones are:
 * Python's tarfile in PAX format and gzip (as tools/image/mkoci.py does), and GNU tar. The
 * layers are made by a small Python script the test writes into its temporary folder.
 */
#include "image_layer.h"

#include "check.h"
#include "shell_fixture.h"
#include "temp_dir.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


/* mk.py OUT MODE: writes layer OUT; also the expected contents as want.vmlinuz/want.initrd. */
static const char MK_PY[] =
    "import gzip, io, random, sys, tarfile\n"
    "out, mode = sys.argv[1], sys.argv[2]\n"
    "kernel = random.Random(1).randbytes(200000 + 123)\n"
    "initrd = bytes((i * 13 + 5) % 251 for i in range(70001))\n"
    "open('want.vmlinuz', 'wb').write(kernel)\n"
    "open('want.initrd', 'wb').write(initrd)\n"
    "fmt = tarfile.GNU_FORMAT if mode == 'gnu' else tarfile.PAX_FORMAT\n"
    "buf = io.BytesIO()\n"
    "tar = tarfile.open(fileobj=buf, mode='w', format=fmt)\n"
    "def add(name, kind=tarfile.REGTYPE, data=b'', link=''):\n"
    "    ti = tarfile.TarInfo(name)\n"
    "    ti.type, ti.size, ti.linkname, ti.mode = kind, len(data), link, 0o644\n"
    "    tar.addfile(ti, io.BytesIO(data) if data else None)\n"
    "pre = './' if mode == 'dot' else ''\n"
    "add(pre + 'etc', tarfile.DIRTYPE)\n"
    "add(pre + 'etc/passwd', data=b'root:x:0:0::/root:/bin/sh\\n')\n"
    "add(pre + 'usr/lib/big', data=bytes(300000))\n"
    "add(pre + 'bin/sh', tarfile.SYMTYPE, link='busybox')\n"
    "if mode in ('longpax', 'gnu'):\n"
    "    add('x' * 150 + '/boot/vmlinuz', data=b'decoy' * 99)\n"
    "    add('d' * 120 + '/' + 'e' * 120, tarfile.DIRTYPE)\n"
    "    add('boot/\\u00e9t\\u00e9', data=b'unicode name')\n"
    "add(pre + 'boot', tarfile.DIRTYPE)\n"
    "if mode == 'symlink':\n"
    "    add('boot/vmlinuz', tarfile.SYMTYPE, link='/etc/passwd')\n"
    "else:\n"
    "    add(pre + 'boot/vmlinuz', data=kernel)\n"
    "if mode != 'noinitrd':\n"
    "    add(pre + 'boot/initrd', data=initrd)\n"
    "if mode == 'twice':\n"
    "    add('boot/vmlinuz', data=b'second')\n"
    "add(pre + 'var', tarfile.DIRTYPE)\n"
    "tar.close()\n"
    "raw = bytearray(buf.getvalue())\n"
    "def base256_size(name, size):\n"
    "    for at in range(0, len(raw), 512):\n"
    "        if raw[at:at + 100].rstrip(b'\\0') == name:\n"
    "            raw[at + 124:at + 136] = b'\\x80' + size.to_bytes(11, 'big')\n"
    "            raw[at + 148:at + 156] = b' ' * 8\n"
    "            raw[at + 148:at + 156] = b'%06o\\0 ' % sum(raw[at:at + 512])\n"
    "            return\n"
    "if mode == 'b256':\n"
    "    base256_size(b'usr/lib/big', 300000)\n"
    "if mode == 'huge':\n"
    "    base256_size(b'boot/vmlinuz', 600 << 20)\n"
    "if out.endswith('.tar'):\n"
    "    open(out, 'wb').write(raw)\n"
    "else:\n"
    "    open(out, 'wb').write(gzip.compress(raw, mtime=0))\n";

static int make_layer(const char *file, const char *mode)
{
    return sh_status("cd %s && python3 mk.py %s %s", dir, file, mode);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int same_file(const char *a, const char *b)
{
    return sh_status("cmp -s %s %s", a, b) == 0;
}

static void reset_outputs(struct image_layer_out *out)
{
    unlink(fixture_path("vmlinuz"));
    unlink(fixture_path("initrd"));
    out->kernel_path = fixture_path("vmlinuz");
    out->initrd_path = fixture_path("initrd");
    out->kernel_size = out->initrd_size = 0;
}

/* Extracts file and expects success with both outputs right. */
static void expect_good(const char *file, int gzip)
{
    struct image_layer_out out;
    char err[512] = "";
    struct stat st;
    reset_outputs(&out);
    int rc = image_layer_extract_boot(fixture_path(file), gzip, &out, err, sizeof err);
    CHECK_INT(rc, 0);
    if (rc != 0)
        fprintf(stderr, "  %s: %s\n", file, err);
    CHECK_INT(out.kernel_size, 200123);
    CHECK_INT(out.initrd_size, 70001);
    CHECK(same_file(fixture_path("vmlinuz"), fixture_path("want.vmlinuz")));
    CHECK(same_file(fixture_path("initrd"), fixture_path("want.initrd")));
    CHECK(stat(fixture_path("vmlinuz"), &st) == 0 && (st.st_mode & 07777) == 0644);
}

/* Extracts file and expects failure with err containing want, and no output left. */
static void expect_error(const char *file, int gzip, const char *want)
{
    struct image_layer_out out;
    char err[512] = "";
    reset_outputs(&out);
    CHECK_INT(image_layer_extract_boot(fixture_path(file), gzip, &out, err, sizeof err), -1);
    if (!strstr(err, want))
        fprintf(stderr, "  %s: error \"%s\" lacks \"%s\"\n", file, err, want);
    CHECK(strstr(err, want) != NULL);
    CHECK(!exists(fixture_path("vmlinuz")));
    CHECK(!exists(fixture_path("initrd")));
}

static void test_good_layers(void)
{
    CHECK_INT(make_layer("pax.tar.gz", "plain"), 0);
    expect_good("pax.tar.gz", 1);
    CHECK_INT(make_layer("pax.tar", "plain"), 0);
    expect_good("pax.tar", 0);
    CHECK_INT(make_layer("dot.tar.gz", "dot"), 0);
    expect_good("dot.tar.gz", 1);
    CHECK_INT(make_layer("longpax.tar.gz", "longpax"), 0);
    expect_good("longpax.tar.gz", 1);
    CHECK_INT(make_layer("gnu.tar", "gnu"), 0);
    expect_good("gnu.tar", 0);
    /* A size in base-256 (how GNU tar writes 8 GiB and more) on a member that is skipped. */
    CHECK_INT(make_layer("b256.tar", "b256"), 0);
    expect_good("b256.tar", 0);

    /* GNU tar itself: ./ names, GNU long-name headers before the boot files. */
    CHECK_INT(sh_status("cd %s && mkdir -p t/boot t/%0150d && cp want.vmlinuz t/boot/vmlinuz && "
                 "cp want.initrd t/boot/initrd && echo hi > t/%0150d/%0120d && "
                 "tar -C t --format=gnu --sort=name -czf gnutar.tar.gz .", dir, 0, 0, 0), 0);
    expect_good("gnutar.tar.gz", 1);
    CHECK_INT(sh_status("cd %s && tar -C t --format=posix -cf posixtar.tar .", dir), 0);
    expect_good("posixtar.tar", 0);
}

static void test_refused_layers(void)
{
    CHECK_INT(make_layer("noinitrd.tar.gz", "noinitrd"), 0);
    expect_error("noinitrd.tar.gz", 1, "no boot/initrd");
    CHECK_INT(make_layer("symlink.tar.gz", "symlink"), 0);
    expect_error("symlink.tar.gz", 1, "not a regular file");
    CHECK_INT(make_layer("huge.tar", "huge"), 0);
    expect_error("huge.tar", 0, "more than");
    CHECK_INT(make_layer("twice.tar", "twice"), 0);
    expect_error("twice.tar", 0, "twice");

    /* Cut inside the kernel's data (gzip), and inside a member (plain). */
    CHECK_INT(sh_status("cd %s && head -c 150000 pax.tar.gz > cut.tar.gz && "
                 "head -c 400000 pax.tar > cut.tar && head -c 1024 pax.tar > cut2.tar", dir), 0);
    expect_error("cut.tar.gz", 1, "truncated");
    expect_error("cut.tar", 0, "truncated");
    expect_error("cut2.tar", 0, "truncated");
    /* Only the gzip trailer missing: the tar is whole but the CRC cannot be checked. */
    CHECK_INT(sh_status("cd %s && size=$(stat -c %%s pax.tar.gz) && "
                 "head -c $((size - 8)) pax.tar.gz > notrailer.tar.gz", dir), 0);
    expect_error("notrailer.tar.gz", 1, "truncated");

    /* A changed name byte in the first header: its checksum no longer matches. */
    CHECK_INT(sh_status("cd %s && cp pax.tar badsum.tar && printf X | "
                 "dd of=badsum.tar bs=1 seek=1 conv=notrunc status=none", dir), 0);
    expect_error("badsum.tar", 0, "checksum");
    /* A flipped byte in the kernel's data inside the gzip stream. */
    CHECK_INT(sh_status("cd %s && cp pax.tar.gz badcrc.tar.gz && printf '\\377' | "
                 "dd of=badcrc.tar.gz bs=1 seek=100000 conv=notrunc status=none", dir), 0);
    expect_error("badcrc.tar.gz", 1, "gzip");

    expect_error("pax.tar.gz", 0, "gzip-compressed");
    expect_error("pax.tar", 1, "gzip");
    expect_error("missing.tar", 0, "missing.tar");
}

static void test_existing_output(void)
{
    struct image_layer_out out;
    char err[512] = "";
    reset_outputs(&out);
    CHECK_INT(sh_status("echo keep > %s", fixture_path("initrd")), 0);
    CHECK_INT(image_layer_extract_boot(fixture_path("pax.tar.gz"), 1, &out, err, sizeof err), -1);
    CHECK(strstr(err, "initrd") != NULL);
    CHECK(!exists(fixture_path("vmlinuz")));
    /* Someone else's file is not ours to remove or change. */
    CHECK_INT(sh_status("grep -qx keep %s", fixture_path("initrd")), 0);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_image_layer.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    FILE *f = fopen(fixture_path("mk.py"), "w");
    if (!f || fputs(MK_PY, f) < 0 || fclose(f) != 0) {
        perror("mk.py");
        return 1;
    }
    test_good_layers();
    test_refused_layers();
    test_existing_output();
    temp_dir_remove(dir);
    return check_summary("test_image_layer");
}
