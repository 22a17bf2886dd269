#!/usr/bin/python3
"""tools/image/mkcpio.py - packs a directory tree as a reproducible newc cpio (the initramfs).

Usage: mkcpio.py TREE OUT.cpio [--no-console]

Our own writer rather than cpio(1) because the archive must not depend on who builds it or when:
entries are sorted, owned by 0:0, dated SOURCE_DATE_EPOCH, inode numbers are assigned in order,
and modes are normalised (0755 for directories and executables, 0644 otherwise) so the umask of
the build does not leak in. It also adds /dev/console, which an unprivileged build cannot mknod:
the kernel opens it for the init's stdin/stdout before /init runs, and without it the init
starts with no console at all.

Several archives may be concatenated (cat a.cpio.gz b.cpio.gz): the kernel unpacks each in turn,
later files replacing earlier ones. The boot check uses that to add a test configuration.
"""
import os
import stat
import sys

# Modes that differ from the normal rule, by path inside the tree.
SPECIAL_MODES = {"tmp": 0o1777, "root": 0o700}


def header(ino, mode, nlink, mtime, size, rdev_major, rdev_minor, name):
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev_major, rdev_minor, len(name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def pad4(n):
    return b"\0" * (-n % 4)


class Writer:
    def __init__(self, out, mtime):
        self.out, self.mtime, self.ino = out, mtime, 0

    def entry(self, name, mode, data=b"", nlink=1, rdev=(0, 0)):
        self.ino += 1
        bname = name.encode()
        head = header(self.ino, mode, nlink, self.mtime, len(data), rdev[0], rdev[1], bname)
        self.out.write(head + bname + b"\0")
        self.out.write(pad4(len(head) + len(bname) + 1))
        self.out.write(data + pad4(len(data)))

    def trailer(self):
        self.ino = -1
        self.entry("TRAILER!!!", 0)


def normal_mode(rel, st):
    if rel in SPECIAL_MODES:
        return SPECIAL_MODES[rel]
    if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o111:
        return 0o755
    return 0o644


def walk(tree):
    """Every path under tree, relative, sorted so a parent always precedes its children."""
    paths = []
    for top, dirs, files in os.walk(tree):
        for n in dirs + files:
            paths.append(os.path.relpath(os.path.join(top, n), tree))
    return sorted(paths, key=lambda p: p.split(os.sep))


def main(argv):
    if len(argv) < 3:
        sys.exit("usage: mkcpio.py TREE OUT.cpio [--no-console]")
    tree, out_path = argv[1], argv[2]
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    with open(out_path, "wb") as out:
        w = Writer(out, mtime)
        for rel in walk(tree):
            full = os.path.join(tree, rel)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                w.entry(rel, stat.S_IFLNK | 0o777, os.readlink(full).encode())
            elif stat.S_ISDIR(st.st_mode):
                w.entry(rel, stat.S_IFDIR | normal_mode(rel, st), nlink=2)
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    w.entry(rel, stat.S_IFREG | normal_mode(rel, st), f.read())
            else:
                sys.exit(f"mkcpio.py: {full}: not a file, directory or symlink")
            if rel == "dev" and "--no-console" not in argv:
                w.entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
        w.trailer()


if __name__ == "__main__":
    main(sys.argv)
