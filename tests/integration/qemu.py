"""qemu.py - the appliance under qemu for the boot test (tests/integration/test_image.py).

What a user does with the published image, in small steps the test composes: find the OCI layout
and its tag, take /boot/vmlinuz and /boot/initrd out of it with `umoci raw unpack --rootless`,
make a NoCloud cidata volume (iso9660 with xorriso, or vfat with mkfs.vfat + mcopy) and an ext4
GATEHOUSE_DATA disk in plain files (no loop devices, no root), and boot qemu-system-x86_64 under
TCG (KVM hangs here) with user networking forwarding a free loopback port to the guest's :80.

The serial console is qemu's stdio (-nographic): the test writes to qemu's stdin to type into the
debug shell (kernel command line gatehouse.debug_shell=1) and reads the console from a log file.
Every failure message carries the tail of that log, since it is the only view into the guest.
qemu runs in its own process group and is always killed by Vm.stop().

The disk a machine really boots (tools/image/mkdisk: GPT, ESP with systemd-boot and slot A,
cidata and GATEHOUSE_DATA partitions) is booted by UefiVm under OVMF; there a reboot goes
through the firmware and the boot loader again in the same qemu process and serial log.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import time

import helpers

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# GATEHOUSE_OCI: test an image layout somewhere else (default: what `make image` writes)
OCI_DIR = os.environ.get("GATEHOUSE_OCI") or os.path.join(ROOT, "build", "oci")
TAG_ANNOTATION = "org.opencontainers.image.ref.name"
TOOLS = ("qemu-system-x86_64", "umoci", "xorriso", "mkfs.vfat", "mcopy", "mkfs.ext4")
MKDISK = os.path.join(ROOT, "tools", "image", "mkdisk")
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
SYSTEMD_BOOT = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
# files are checked by path, programs on PATH (Debian: qemu-system-x86 fdisk dosfstools mtools
# e2fsprogs ovmf systemd-boot-efi)
UEFI_TOOLS = ("qemu-system-x86_64", "sfdisk", "mkfs.vfat", "mcopy", "mmd", "mkfs.ext4",
              OVMF_CODE, OVMF_VARS, SYSTEMD_BOOT)


def missing_tools():
    return [t for t in TOOLS if not shutil.which(t) and
            not os.access(os.path.join("/usr/sbin", t), os.X_OK)]


def uefi_missing():
    return [t for t in UEFI_TOOLS if not (os.path.isfile(t) if t.startswith("/") else
                                          shutil.which(t) or os.access(os.path.join("/usr/sbin", t), os.X_OK))]


def _tool(name):
    return shutil.which(name) or os.path.join("/usr/sbin", name)


def _run(argv, what, timeout=60):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError("%s failed (rc=%d): %s\n%s" % (what, p.returncode, " ".join(argv),
                                                          p.stdout.decode("utf-8", "replace")))
    return p.stdout


# ---------------------------------------------------------------- the image, as a user gets it

def image_ref(layout=OCI_DIR):
    """layout:TAG for the image in an OCI layout. GATEHOUSE_IMAGE_TAG picks one when the index
    holds several; otherwise the last one listed (a rebuild appends nothing: one tag per build)."""
    path = os.path.join(layout, "index.json")
    assert os.path.isfile(path), "%s is missing: build the image with `make image`" % path
    with open(path) as f:
        index = json.load(f)
    tags = [m.get("annotations", {}).get(TAG_ANNOTATION) for m in index.get("manifests", [])]
    tags = [t for t in tags if t]
    want = os.environ.get("GATEHOUSE_IMAGE_TAG")
    if want:
        assert want in tags, "%s: no image tagged %s (tags: %s)" % (layout, want, tags)
        return "%s:%s" % (layout, want)
    assert tags, "%s/index.json names no tagged image" % layout
    return "%s:%s" % (layout, tags[-1])


def unpack_boot(ref, dest):
    """umoci raw unpack --rootless REF DEST; returns (vmlinuz, initrd) from DEST/boot."""
    _run([_tool("umoci"), "raw", "unpack", "--rootless", "--image", ref, dest],
         "unpacking the OCI image", timeout=120)
    kernel, initrd = os.path.join(dest, "boot", "vmlinuz"), os.path.join(dest, "boot", "initrd")
    for path in (kernel, initrd):
        assert os.path.isfile(path) and os.path.getsize(path) > 0, \
            "the image %s has no %s" % (ref, os.path.relpath(path, dest))
    return kernel, initrd


# ---------------------------------------------------------------- disks in plain files

def _stage(folder, user_data, meta_data):
    os.makedirs(folder)
    for name, text in (("user-data", user_data), ("meta-data", meta_data)):
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)


def cidata_iso(path, user_data, meta_data="instance-id: gatehouse-test\n"):
    """An iso9660 volume labelled cidata (Rock Ridge + Joliet, as cloud-localds makes them)."""
    src = path + ".d"
    _stage(src, user_data, meta_data)
    _run([_tool("xorriso"), "-as", "mkisofs", "-quiet", "-V", "cidata", "-J", "-R", "-o", path,
          src], "making the iso9660 cidata volume")
    return path


def cidata_vfat(path, user_data, meta_data="instance-id: gatehouse-test\n"):
    """A vfat volume labelled CIDATA (upper case, as vfat labels usually are)."""
    src = path + ".d"
    _stage(src, user_data, meta_data)
    _run([_tool("mkfs.vfat"), "-n", "CIDATA", "-C", path, "2048"], "making the vfat cidata volume")
    _run([_tool("mcopy"), "-i", path, os.path.join(src, "user-data"), os.path.join(src, "meta-data"),
          "::"], "copying user-data onto the vfat cidata volume")
    return path


def data_disk(path, size_mb=32):
    """An empty ext4 filesystem labelled GATEHOUSE_DATA in a file (the persistent partition)."""
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    _run([_tool("mkfs.ext4"), "-q", "-F", "-L", "GATEHOUSE_DATA", path], "making the data disk")
    return path


# ---------------------------------------------------------------- the machine

class Vm:
    """One boot of the appliance. disks: [(path, readonly)], attached as virtio disks."""

    def __init__(self, kernel, initrd, disks, log_path, append="console=ttyS0 gatehouse.debug_shell=1"):
        self.fwd = helpers.free_port()
        # panic=-1 + -no-reboot: a kernel panic (e.g. the init exiting) ends qemu at once, so the
        # test fails in seconds with the panic in the log instead of waiting for a deadline.
        argv = self._machine("512") + ["-no-reboot", "-kernel", kernel, "-initrd", initrd,
                                       "-append", append + " panic=-1"]
        for i, (path, readonly) in enumerate(disks):
            argv += ["-drive", "file=%s,format=raw,if=virtio,index=%d%s"
                     % (path, i, ",readonly=on" if readonly else "")]
        self._start(argv, log_path)

    def _machine(self, memory):
        """What every boot shares: TCG, serial on stdio, user networking forwarding self.fwd.
        +rdrand: without it the guest waits ~1 s for entropy before the init reads user-data."""
        return [_tool("qemu-system-x86_64"), "-accel", "tcg", "-m", memory, "-nographic",
                "-cpu", "qemu64,+rdrand", "-vga", "none",
                "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:80" % self.fwd,
                "-device", "virtio-net-pci,netdev=n0,romfile="]

    def _start(self, argv, log_path):
        self.argv = argv
        self.log_path = log_path
        self.ids = 0
        self._log = open(log_path, "wb")
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=self._log,
                                  stderr=subprocess.STDOUT, start_new_session=True)

    # -- what the guest said
    def console(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\r", "")

    def shell_console(self):
        """The console text the debug shell's answers are looked for in."""
        return self.console()

    def tail(self, n=7000):
        text = self.console()
        cut = len(text) - n
        return ("...[%d bytes cut]...\n" % cut + text[cut:]) if cut > 0 else text

    def fail(self, why):
        raise AssertionError("%s\nqemu: %s (%s)\n--- serial console (%s):\n%s"
                             % (why, "running" if self.alive() else "exited rc=%s" % self.p.poll(),
                                " ".join(self.argv), self.log_path, self.tail()))

    def alive(self):
        return self.p.poll() is None

    def wait_for(self, pred, timeout, what):
        """Polls pred() (exceptions count as not yet) until truthy; fails with the console."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                v = pred()
                if v:
                    return v
            except Exception:  # noqa: BLE001 - the guest is not up yet
                pass
            if not self.alive():
                self.fail("qemu exited while waiting for %s" % what)
            if time.monotonic() > deadline:
                self.fail("timed out after %.0f s waiting for %s" % (timeout, what))
            time.sleep(0.2)

    # -- HTTP through the forwarded port
    def get(self, host, path="/", timeout=1.0):
        # A short timeout: before the guest listens, slirp accepts the forwarded connection and
        # holds it open without an answer.
        return helpers.request(self.fwd, "GET", path, host=host, timeout=timeout)

    def wait_served(self, host, backend_name, timeout, path="/"):
        """Polls until the backend's own answer comes back; returns (seconds since qemu started,
        response)."""
        def served():
            r = self.get(host, path)
            return r if r.status == 200 and r.json.get("backend") == backend_name else None
        r = self.wait_for(served, timeout, "%s%s served by backend %s through 127.0.0.1:%d"
                          % (host, path, backend_name, self.fwd))
        return time.monotonic() - self.t0, r

    # -- the serial debug shell
    def type(self, line):
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def shell(self, command, timeout=10.0, retry=False):
        """Runs command in the debug shell; returns its output. The markers are built by the
        shell ($((N))), so the echo of the typed line never matches them. retry=True types the
        command again every 3 s while no answer came (only for harmless commands: a getty that
        is not up yet drops what was typed)."""
        self.ids += 1
        n = self.ids
        begin, end = "@@B%d@@" % n, "@@E%d@@" % n
        line = 'echo "@@B$((%d))@@"; %s; echo "@@E$((%d))@@"' % (n, command, n)
        pattern = re.compile(re.escape(begin) + r"\n(.*?)" + re.escape(end), re.S)
        deadline = time.monotonic() + timeout
        next_try = 0.0
        while True:
            if time.monotonic() >= next_try:
                self.type(line)
                next_try = time.monotonic() + 3 if retry else deadline + 1
            m = pattern.search(self.shell_console())
            if m:
                return m.group(1)
            if not self.alive():
                self.fail("qemu exited while running %r in the debug shell" % command)
            if time.monotonic() > deadline:
                self.fail("no answer from the serial debug shell to %r within %.0f s "
                          "(kernel command line: gatehouse.debug_shell=1)" % (command, timeout))
            time.sleep(0.1)

    def stop(self):
        """Kills qemu (its whole process group); safe to call twice."""
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(timeout=10)
        finally:
            for f in (self.p.stdin, self._log):
                try:
                    f.close()
                except OSError:
                    pass


# ---------------------------------------------------------------- the whole disk, under UEFI

def image_digest(layout=OCI_DIR, tag=None):
    """The manifest digest of layout's image tagged tag (default: image_ref's choice): what
    mkdisk writes into the boot entry as gatehouse.image=."""
    ref = "%s:%s" % (layout, tag) if tag else image_ref(layout)
    want = ref.rsplit(":", 1)[1]
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    for m in reversed(index.get("manifests", [])):
        if m.get("annotations", {}).get(TAG_ANNOTATION) == want:
            return m["digest"]
    raise AssertionError("%s: no image tagged %s" % (layout, want))


def make_disk(path, user_data=None, size_mb=1024, oci=OCI_DIR, tag=None,
              kernel_options="console=ttyS0,115200 panic=10 gatehouse.debug_shell=1"):
    """A bootable disk (tools/image/mkdisk) in a sparse file; returns path."""
    ref = "%s:%s" % (oci, tag) if tag else image_ref(oci)
    argv = [MKDISK, "--oci", ref, "--out", path, "--size", str(size_mb),
            "--kernel-options", kernel_options]
    if user_data is not None:
        with open(path + ".user-data", "w") as f:
            f.write(user_data)
        argv += ["--user-data", path + ".user-data"]
    _run(argv, "making the disk with tools/image/mkdisk", timeout=300)
    return path


class UefiVm(Vm):
    """The disk booted by OVMF and systemd-boot. No -no-reboot: a guest reboot comes back
    through the firmware and the boot loader in this same qemu process and serial log, so
    boots() counts the kernels started and the debug shell only reads the latest boot."""

    BOOT_MARK = "Linux version"

    def __init__(self, disk, log_path, memory="512"):
        self.fwd = helpers.free_port()
        # the firmware keeps its variables (boot order, systemd-boot's) in a per-VM copy
        self.vars = log_path + ".OVMF_VARS.fd"
        shutil.copyfile(OVMF_VARS, self.vars)
        argv = self._machine(memory) + [
            "-drive", "if=pflash,format=raw,readonly=on,file=%s" % OVMF_CODE,
            "-drive", "if=pflash,format=raw,file=%s" % self.vars,
            "-drive", "file=%s,format=raw,if=none,id=disk0" % disk,
            "-device", "virtio-blk-pci,drive=disk0,bootindex=0"]
        self._start(argv, log_path)

    def boots(self):
        return self.console().count(self.BOOT_MARK)

    def wait_boot(self, n, timeout):
        """Waits for the n-th kernel to start; returns seconds since qemu started."""
        self.wait_for(lambda: self.boots() >= n, timeout, "boot number %d (%r on the console)"
                      % (n, self.BOOT_MARK))
        return time.monotonic() - self.t0

    def shell_console(self):
        text = self.console()
        at = text.rfind(self.BOOT_MARK)
        return text[at:] if at >= 0 else text
