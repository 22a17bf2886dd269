"""test_disk.py - the whole disk (tools/image/mkdisk) booted under UEFI: OVMF, systemd-boot, slot A.

What a machine installed from the disk image does, under qemu (TCG):
  1. OVMF finds systemd-boot on the ESP, which boots slot A's kernel and initrd with the entry
     gatehouse-1-a.conf; the init finds the cidata and GATEHOUSE_DATA partitions of the same
     disk, and the node serves a host routed to a backend on this machine (10.0.2.2 from the
     guest) through the forwarded port. The time from qemu's start (firmware included) to the
     first served request is printed, not asserted;
  2. in the serial debug shell: the kernel command line carries gatehouse.slot=a and
     gatehouse.image=<the manifest digest>, the ESP is mounted on /boot/efi with the entry on it,
     and /run/gatehouse/image-digest holds the digest (what the agent reports);
  3. `reboot -f` from the shell comes back through the firmware and the boot loader (same qemu
     process: no -no-reboot), boots slot A again and serves again, with the state kept on the
     data partition.
Skipped unless GATEHOUSE_IMAGE_TESTS=1 (booting under OVMF takes a while) and the tools are here.
"""
import os
import time

import pytest
import yaml

import helpers
import qemu
from backend import Backend

HOST = "disk.gatehouse.test"
BACKEND = "disk-backend"
BOOT_TIMEOUT = 120          # firmware + boot loader + kernel under TCG
PROXY_CONFIG = {"http": "0.0.0.0:80", "admin": "127.0.0.1:9901"}

if os.environ.get("GATEHOUSE_IMAGE_TESTS") != "1":
    pytest.skip("the UEFI disk test runs with GATEHOUSE_IMAGE_TESTS=1", allow_module_level=True)
if qemu.uefi_missing():
    pytest.skip("the UEFI disk test needs %s (Debian: qemu-system-x86 fdisk dosfstools mtools "
                "e2fsprogs ovmf systemd-boot-efi)" % ", ".join(qemu.uefi_missing()),
                allow_module_level=True)


def user_data(backend_port):
    """One app on HOST whose single endpoint is the host's backend, seen from the guest."""
    docs = [helpers.ingress_class(default=False)]
    docs += helpers.service_for("disk-app", ["10.0.2.2:%d" % backend_port])
    docs.append(helpers.ingress("disk-app", rules=[(HOST, [("/", "Prefix", "disk-app", 80)])]))
    doc = {"hostname": "gatehouse-disk",
           "gatehouse": {"proxy": PROXY_CONFIG,
                         "kubernetes": {"manifests": "/etc/gatehouse/manifests"}},
           "write_files": [{"path": "/etc/gatehouse/manifests/disk-app.yaml",
                            "content": helpers.dump_docs(docs), "permissions": "0644"}]}
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)


class Machine:
    def __init__(self, tmp):
        self.tmp = str(tmp)
        self.backend = Backend(BACKEND, host="127.0.0.1").start()
        self.vm = None
        try:
            self.digest = qemu.image_digest()
            self.disk = qemu.make_disk(os.path.join(self.tmp, "disk.img"),
                                       user_data=user_data(self.backend.port))
            self.vm = qemu.UefiVm(self.disk, os.path.join(self.tmp, "serial.log"))
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.vm:
            self.vm.stop()
        self.backend.stop()


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    m = Machine(tmp_path_factory.mktemp("disk"))
    try:
        yield m
    finally:
        m.close()


@pytest.fixture(scope="module")
def first_boot(machine):
    """(seconds to the kernel, seconds to the first served request), from qemu's start."""
    kernel = machine.vm.wait_boot(1, BOOT_TIMEOUT)
    served, _ = machine.vm.wait_served(HOST, BACKEND, BOOT_TIMEOUT)
    return kernel, served


def test_uefi_boot_serves_backend(machine, first_boot, capsys):
    vm = machine.vm
    r = vm.get(HOST, "/from-disk", timeout=5)
    assert r.status == 200 and r.json["backend"] == BACKEND, vm.fail("got %r" % r)
    assert r.json["path"] == "/from-disk", r
    assert vm.boots() == 1, vm.fail("%d kernels started, expected 1" % vm.boots())
    console = vm.console()
    for line in ("(GATEHOUSE_DATA) mounted on /var/lib/gatehouse",
                 "(GH_ESP, EFI system partition) mounted on /boot/efi",
                 "(cidata, vfat) mounted read-only on /run/cidata",
                 "applying /run/cidata/user-data"):
        assert line in console, vm.fail("no %r on the console" % line)
    with capsys.disabled():
        print("\n[disk] OVMF + systemd-boot: kernel started %.1f s, first request served %.1f s "
              "after qemu started (TCG)" % first_boot)


def test_slot_a_entry_and_digest(machine, first_boot):
    vm = machine.vm
    vm.shell("true", timeout=30, retry=True)     # the getty is up and answers
    cmdline = vm.shell("cat /proc/cmdline").split()
    assert "gatehouse.slot=a" in cmdline, vm.fail("slot A not on the command line: %s" % cmdline)
    assert "gatehouse.image=" + machine.digest in cmdline, \
        vm.fail("gatehouse.image=%s not on the command line: %s" % (machine.digest, cmdline))
    entries = vm.shell("ls /boot/efi/loader/entries").split()
    assert entries == ["gatehouse-1-a.conf"], vm.fail("ESP entries: %s" % entries)
    files = vm.shell("ls /boot/efi/gatehouse/a").split()
    assert sorted(files) == ["initrd", "vmlinuz"], vm.fail("slot A holds %s" % files)
    assert vm.shell("cat /run/gatehouse/image-digest").strip() == machine.digest, \
        vm.fail("/run/gatehouse/image-digest is not %s" % machine.digest)
    mounts = vm.shell("grep ' /boot/efi ' /proc/mounts")
    assert " vfat rw," in mounts, vm.fail("/boot/efi is not vfat read-write: %r" % mounts)


def test_reboot_comes_back_through_firmware(machine, first_boot, capsys):
    vm = machine.vm
    vm.shell("true", timeout=30, retry=True)
    assert vm.shell("cat /run/gatehouse/storage").strip() == "persistent", \
        vm.fail("the first boot's state is not on GATEHOUSE_DATA")
    before = vm.boots()
    typed = time.monotonic() - vm.t0
    vm.type("sync; reboot -f")
    kernel = vm.wait_boot(before + 1, BOOT_TIMEOUT)
    served, _ = vm.wait_served(HOST, BACKEND, BOOT_TIMEOUT)
    vm.shell("true", timeout=30, retry=True)
    cmdline = vm.shell("cat /proc/cmdline").split()
    assert "gatehouse.slot=a" in cmdline and "gatehouse.image=" + machine.digest in cmdline, \
        vm.fail("the second boot's command line: %s" % cmdline)
    # the first boot kept its user-data as the last good one on the data partition
    kept = vm.shell("ls /var/lib/gatehouse/cloud-config").split()
    assert "last-good.yaml" in kept, vm.fail("the data partition lost its state: %s" % kept)
    assert vm.alive() and vm.boots() == before + 1, vm.fail("%d boots" % vm.boots())
    with capsys.disabled():
        print("[disk] reboot -f: kernel started again %.1f s, serving %.1f s after the reboot "
              "was typed (same qemu process)" % (kernel - typed, served - typed))
