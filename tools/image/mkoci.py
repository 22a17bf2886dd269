#!/usr/bin/python3
"""tools/image/mkoci.py - writes the appliance as an OCI image layout and an oci-archive.

Usage: mkoci.py --version V --revision R --kernel F --initrd F [--rootfs DIR]
                --layout DIR --archive FILE

One layer holds /boot/vmlinuz and /boot/initrd (what a machine boots) and, with --rootfs, the
unpacked rootfs beside them (what a person inspects, or runs as a container). The layout is
written from scratch each time, so build/oci holds exactly this image under the tag V.

Why not umoci/skopeo: they stamp the current time and write blobs mode 0600, so two builds
differ. Here every tar member is owned 0:0 and dated SOURCE_DATE_EPOCH, names are sorted, gzip
carries mtime 0 and no name, and JSON is written with sorted keys: the same inputs give the same
manifest digest. Device nodes are left out of the layer (an unprivileged unpack cannot make them;
the initrd carries its own /dev/console).
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tarfile
import time

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
SPECIAL_MODES = {"tmp": 0o1777, "root": 0o700}   # as in mkcpio.py


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def tar_info(name, kind, mtime, mode, size=0, link=""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.linkname, ti.mtime = kind, mode, size, link, mtime
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def add_file(tar, name, path, mtime, mode):
    with open(path, "rb") as f:
        data = f.read()
    tar.addfile(tar_info(name, tarfile.REGTYPE, mtime, mode, len(data)), io.BytesIO(data))


def add_tree(tar, tree, mtime, skip):
    """The rootfs tree, sorted (parents first), modes normalised like the initramfs."""
    paths = []
    for top, dirs, files in os.walk(tree):
        for n in dirs + files:
            paths.append(os.path.relpath(os.path.join(top, n), tree))
    for rel in sorted(paths, key=lambda p: p.split(os.sep)):
        if rel in skip:
            continue
        full = os.path.join(tree, rel)
        st = os.lstat(full)
        if rel in SPECIAL_MODES:
            mode = SPECIAL_MODES[rel]
        else:
            mode = 0o755 if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o111 else 0o644
        if stat.S_ISLNK(st.st_mode):
            tar.addfile(tar_info(rel, tarfile.SYMTYPE, mtime, 0o777, link=os.readlink(full)))
        elif stat.S_ISDIR(st.st_mode):
            tar.addfile(tar_info(rel, tarfile.DIRTYPE, mtime, mode))
        elif stat.S_ISREG(st.st_mode):
            add_file(tar, rel, full, mtime, mode)


def layer_tar(args, mtime):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        boot = [("boot/initrd", args.initrd), ("boot/vmlinuz", args.kernel)]
        if args.rootfs:
            # The tree's own boot/ is empty: the kernel and initrd go in right after it.
            add_tree(tar, args.rootfs, mtime, skip=set())
        else:
            tar.addfile(tar_info("boot", tarfile.DIRTYPE, mtime, 0o755))
        for name, path in boot:
            add_file(tar, name, path, mtime, 0o644)
    return buf.getvalue()


def gzip_bytes(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


class Layout:
    def __init__(self, path):
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(os.path.join(path, "blobs", "sha256"))
        self.path = path
        self.write("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))

    def write(self, rel, data):
        with open(os.path.join(self.path, rel), "wb") as f:
            f.write(data)
        os.chmod(os.path.join(self.path, rel), 0o644)

    def blob(self, data, media_type):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.write(os.path.join("blobs", "sha256", digest[7:]), data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}


def archive(layout, out, mtime):
    """oci-archive: a plain tar of the layout directory, as skopeo reads it."""
    tmp = out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        names = ["blobs", "blobs/sha256"] + sorted(
            "blobs/sha256/" + n for n in os.listdir(os.path.join(layout, "blobs", "sha256")))
        names += ["index.json", "oci-layout"]
        for n in names:
            full = os.path.join(layout, n)
            if os.path.isdir(full):
                tar.addfile(tar_info(n, tarfile.DIRTYPE, mtime, 0o755))
            else:
                add_file(tar, n, full, mtime, 0o644)
    os.replace(tmp, out)


def main():
    ap = argparse.ArgumentParser(description="write the appliance OCI image")
    for opt in ("--version", "--revision", "--kernel", "--initrd", "--layout", "--archive"):
        ap.add_argument(opt, required=True)
    ap.add_argument("--rootfs")
    # for tests of what `gatehouse-agent upgrade` refuses: another platform, another kind
    ap.add_argument("--architecture", default="amd64")
    ap.add_argument("--kind", default="appliance")
    args = ap.parse_args()
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))

    raw = layer_tar(args, mtime)
    layout = Layout(args.layout)
    layer = layout.blob(gzip_bytes(raw), MT_LAYER)
    labels = {
        "org.opencontainers.image.title": "gatehouse",
        "org.opencontainers.image.version": args.version,
        "org.opencontainers.image.revision": args.revision,
        "org.opencontainers.image.created": created,
        # what `gatehouse-agent upgrade` checks before installing an image into a boot slot
        "dev.gatehouse.kind": args.kind,
    }
    config = {
        "architecture": args.architecture, "os": "linux", "created": created,
        "config": {"Labels": labels, "Entrypoint": ["/init"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
        "history": [{"created": created, "created_by": "tools/image/build"}],
    }
    cfg = layout.blob(canonical_json(config), MT_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cfg, "layers": [layer],
                "annotations": labels}
    man = layout.blob(canonical_json(manifest), MT_MANIFEST)
    man["annotations"] = {"org.opencontainers.image.ref.name": args.version}
    layout.write("index.json", canonical_json(
        {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [man]}))
    archive(args.layout, args.archive, mtime)
    print(f"oci: manifest {man['digest']}, layer {layer['size']} B compressed "
          f"({len(raw)} B tar)", file=sys.stderr)


if __name__ == "__main__":
    main()
