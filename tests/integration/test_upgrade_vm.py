"""test_upgrade_vm.py - fleet upgrades by image swap, end to end under qemu (OVMF + the disk).

One node, one qemu process, several boots, in file order:
  1. install v1: the disk from build/oci (tools/image/mkdisk, slot A), booted by OVMF and
     systemd-boot; it serves a host routed to a backend on this machine;
  2. v2 pushed with skopeo to a docker-registry on this machine's loopback (10.0.2.2 from the
     guest) and signed with tools/image/sign; `gatehouse-agent upgrade --image ... --reboot` in
     the node's debug shell installs it into slot B; the node reboots into it, serves, and
     boot-check marks the entry good (gatehouse-2-b.conf) and reports slot b + v2's digest;
  3. a broken v3 (its proxy never starts, so it never becomes ready) is installed into slot A;
     it gets upgrade.tries = 2 boots, boot-check reboots each after upgrade.healthTimeout, and
     then systemd-boot goes back to slot B by itself: v2 serves again, and the node reports the
     fallback (log line and gatehouse_node_boot_fallback{failed_image=v3} 1);
  4. an unsigned image is refused and the ESP is left as it was;
  5. a pull cut off halfway (a forwarder drops the connection after 4 MiB of the layer) fails
     with the node still on v2 and its entries untouched; the retry resumes the download (a
     Range request from the byte where it stopped), installs, and the node boots it and serves;
  6. the power is cut (qemu killed) in the middle of an install, once the disk shows slot B's
     old entry gone (read from the host with mtools), i.e. while slot B's files are written: the
     machine, started again from the same disk, boots slot A and serves, and the same upgrade
     run again completes;
  7. an image whose init dies at once (the kernel panics before anything runs: no boot-check to
     reboot it): panic=10 on the command line reboots it, the tries run out, and the node is
     back on the image it ran.
Skipped unless GATEHOUSE_IMAGE_TESTS=1 and the tools are here (make test installs them).
"""
import os
import re
import subprocess
import time

import pytest
import yaml

import helpers
import qemu
import registry as reg
from backend import Backend

HOST = "upgrade.gatehouse.test"
BACKEND = "upgrade-backend"
BOOT_TIMEOUT = 120           # firmware + boot loader + kernel + services under TCG
UPGRADE_TIMEOUT = 300        # pull ~15 MB through slirp, gunzip and write the ESP, under TCG
HEALTH_TIMEOUT_S = 25        # upgrade.healthTimeout on the node: a broken boot reboots after it
PROXY_CONFIG = {"http": "0.0.0.0:80", "admin": "127.0.0.1:9901"}

if os.environ.get("GATEHOUSE_IMAGE_TESTS") != "1":
    pytest.skip("the upgrade VM test runs with GATEHOUSE_IMAGE_TESTS=1", allow_module_level=True)
if qemu.uefi_missing() or reg.missing_tools():
    pytest.skip("needs %s" % ", ".join(qemu.uefi_missing() + reg.missing_tools()),
                allow_module_level=True)

BROKEN_PROXY = ("#!/bin/sh\n# test image v3: the proxy never starts, so the node never becomes "
                "ready\nexec 2>&1\necho 'gatehouse-proxy: broken test image, not starting'\n"
                "exec sleep 100000\n")


BROKEN_INIT = ("#!/bin/sh\n# test image v6: PID 1 dies at once, the kernel panics\n"
               "echo 'broken test image: init exits'\nexit 1\n")


def user_data(backend_port, trusted_pem):
    docs = [helpers.ingress_class(default=False)]
    docs += helpers.service_for("up-app", ["10.0.2.2:%d" % backend_port])
    docs.append(helpers.ingress("up-app", rules=[(HOST, [("/", "Prefix", "up-app", 80)])]))
    doc = {"hostname": "gatehouse-upgrade",
           "gatehouse": {"proxy": PROXY_CONFIG,
                         "kubernetes": {"manifests": "/etc/gatehouse/manifests"},
                         "upgrade": {"plainHttp": True, "tries": 2,
                                     "healthTimeout": "%ds" % HEALTH_TIMEOUT_S}},
           "write_files": [{"path": "/etc/gatehouse/manifests/up-app.yaml",
                            "content": helpers.dump_docs(docs), "permissions": "0644"},
                           {"path": "/etc/gatehouse/trusted-keys/release.pem",
                            "content": trusted_pem, "permissions": "0644"}]}
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)


class Fleet:
    """The node, the registry and the images it is upgraded to."""

    def __init__(self, tmp):
        self.tmp = str(tmp)
        self.starts = 1
        self.backend = Backend(BACKEND, host="127.0.0.1").start()
        self.registry = reg.Registry(os.path.join(self.tmp, "registry"))
        self.cut = reg.CutProxy(self.registry.port)
        self.vm = None
        self.key, pub = reg.keypair(self.tmp)
        self.v1 = qemu.image_digest()
        self.digests = {}
        for name, kw, signed in (("v2", {}, True),
                                 ("v3", {"replace_files": {"/etc/s6/services/gatehouse-proxy/run":
                                                           (BROKEN_PROXY, 0o755)}}, True),
                                 ("v4", {}, False), ("v5", {}, True),
                                 ("v6", {"replace_files": {"/init": (BROKEN_INIT, 0o755)}}, True)):
            layout, _ = reg.build_image(os.path.join(self.tmp, name), "test-" + name, **kw)
            self.digests[name] = reg.push(layout, self.registry, "gatehouse:" + name)
            if signed:
                reg.sign(self.key, self.registry, "gatehouse:" + name)
        self.disk = qemu.make_disk(os.path.join(self.tmp, "disk.img"),
                                   user_data=user_data(self.backend.port, open(pub).read()))
        self.vm = qemu.UefiVm(self.disk, os.path.join(self.tmp, "serial.log"))

    def power_cycle(self):
        """Pulls the plug (SIGKILL to qemu) and starts the machine again from the same disk."""
        self.vm.stop()
        self.starts += 1
        self.vm = qemu.UefiVm(self.disk, os.path.join(self.tmp, "serial-%d.log" % self.starts))

    def ref(self, name, via_cut=False):
        port = self.cut.port if via_cut else self.registry.port
        return "10.0.2.2:%d/gatehouse:%s" % (port, name)

    def close(self):
        if self.vm:
            self.vm.stop()
        self.cut.close()
        self.registry.stop()
        self.backend.stop()

    # -- what the node says
    def shell(self, cmd, timeout=20):
        self.vm.shell("true", timeout=60, retry=True)
        return self.vm.shell(cmd, timeout=timeout)

    def running(self):
        """(slot, image digest) from the kernel command line of the current boot."""
        cmdline = self.shell("cat /proc/cmdline")
        slot = re.search(r"gatehouse\.slot=(\w)", cmdline)
        image = re.search(r"gatehouse\.image=(sha256:[0-9a-f]{64})", cmdline)
        return (slot.group(1) if slot else None, image.group(1) if image else None)

    def entries(self):
        return sorted(self.shell("ls /boot/efi/loader/entries").split())

    def boot_metrics(self):
        return self.shell("cat /var/lib/gatehouse/boot.prom 2>/dev/null; true")

    def wait_served(self, timeout=BOOT_TIMEOUT):
        return self.vm.wait_served(HOST, BACKEND, timeout)

    def wait_blessed(self, entry, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if entry in self.entries():
                return
            time.sleep(2)
        self.vm.fail("boot-check did not mark %s good; entries %s" % (entry, self.entries()))

    def upgrade(self, name, reboot=False, via_cut=False, timeout=UPGRADE_TIMEOUT):
        """Runs the upgrade in the debug shell; returns (exit status, output). With reboot the
        node restarts at the end: returns (None, None) once the next kernel started."""
        cmd = "gatehouse-agent upgrade --image %s%s" % (self.ref(name, via_cut),
                                                        " --reboot" if reboot else "")
        if reboot:
            boots = self.vm.boots()
            self.shell("true")
            self.vm.type(cmd)
            self.vm.wait_boot(boots + 1, timeout)
            return None, None
        out = self.shell(cmd + " 2>&1; echo rc=$?", timeout=timeout)
        m = re.search(r"rc=(\d+)\s*$", out)
        return (int(m.group(1)) if m else None), out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("upgrade-vm"))
    try:
        yield f
    finally:
        f.close()


def test_1_v1_installed_from_disk_serves(fleet):
    fleet.vm.wait_boot(1, BOOT_TIMEOUT)
    fleet.wait_served()
    assert fleet.running() == ("a", fleet.v1), fleet.vm.fail("not v1 in slot a")
    assert fleet.entries() == ["gatehouse-1-a.conf"]


def test_2_upgrade_to_v2_serves_after_reboot(fleet, capsys):
    t0 = time.monotonic()
    fleet.upgrade("v2", reboot=True)
    console = fleet.vm.console()
    assert "signed by /etc/gatehouse/trusted-keys/release.pem" in console, fleet.vm.fail("no signature check")
    fleet.wait_served()
    served = time.monotonic() - t0
    assert fleet.running() == ("b", fleet.digests["v2"]), fleet.vm.fail("not v2 in slot b")
    fleet.wait_blessed("gatehouse-2-b.conf")
    assert fleet.entries() == ["gatehouse-1-a.conf", "gatehouse-2-b.conf"]
    prom = fleet.boot_metrics()
    assert 'slot="b",image_digest="%s"' % fleet.digests["v2"] in prom, fleet.vm.fail(prom)
    assert "gatehouse_node_boot_trial 0" in prom, fleet.vm.fail(prom)
    with capsys.disabled():
        print("\n[upgrade] v1 -> v2: command typed to v2 serving %.1f s (pull, verify, install, "
              "reboot, TCG)" % served)


def test_3_broken_v3_falls_back_to_v2(fleet, capsys):
    t0 = time.monotonic()
    boots = fleet.vm.boots()
    fleet.upgrade("v3", reboot=True)
    # tries = 2: two boots of v3, each rebooted by boot-check, then v2 again
    fleet.vm.wait_boot(boots + 3, 2 * (HEALTH_TIMEOUT_S + BOOT_TIMEOUT))
    fleet.wait_served()
    back = time.monotonic() - t0
    assert fleet.running() == ("b", fleet.digests["v2"]), fleet.vm.fail("not back on v2")
    console = fleet.vm.console()
    assert "broken test image, not starting" in console, fleet.vm.fail("v3 never ran")
    assert re.search(r"slot a \(image %s\) not healthy after %d s" % (fleet.digests["v3"],
                                                                       HEALTH_TIMEOUT_S), console), \
        fleet.vm.fail("boot-check did not reject v3")
    entries = fleet.entries()
    assert "gatehouse-2-b.conf" in entries and "gatehouse-3-a+0-2.conf" in entries, \
        fleet.vm.fail("entries: %s" % entries)
    assert "fell back: slot a (image %s" % fleet.digests["v3"] in fleet.vm.shell_console(), \
        fleet.vm.fail("no fallback line in the log")
    prom = fleet.boot_metrics()
    assert 'gatehouse_node_boot_fallback{failed_slot="a",failed_image="%s"} 1' \
        % fleet.digests["v3"] in prom, fleet.vm.fail(prom)
    with capsys.disabled():
        print("[upgrade] broken v3: back on v2 and serving %.1f s after the upgrade was typed "
              "(2 tries x %d s health timeout)" % (back, HEALTH_TIMEOUT_S))


def test_4_unsigned_image_is_refused(fleet):
    before = fleet.entries()
    rc, out = fleet.upgrade("v4")
    assert rc == 1 and "is not signed" in out, fleet.vm.fail("unsigned v4: rc=%s %s" % (rc, out))
    assert fleet.entries() == before
    assert fleet.running() == ("b", fleet.digests["v2"])


def test_5_cut_off_pull_then_retry(fleet, capsys):
    before = fleet.entries()
    fleet.cut.cut_after(4 << 20)
    rc, out = fleet.upgrade("v5", via_cut=True)
    assert rc == 1 and fleet.cut.cuts == 1, fleet.vm.fail("cut-off pull: rc=%s %s" % (rc, out))
    assert fleet.entries() == before, fleet.vm.fail("a cut-off pull changed the ESP")
    assert fleet.running() == ("b", fleet.digests["v2"])
    r = fleet.vm.get(HOST, "/still-serving", timeout=5)
    assert r.status == 200 and r.json["backend"] == BACKEND, r
    t0 = time.monotonic()
    fleet.upgrade("v5", reboot=True, via_cut=True)
    assert re.search(r"resumed at byte [1-9]\d*", fleet.vm.console()), \
        fleet.vm.fail("the retry did not resume the download")
    assert any(r.startswith("Range: bytes=") or r.lower().startswith("range: bytes=")
               for r in fleet.cut.range_requests), fleet.cut.range_requests
    fleet.wait_served()
    assert fleet.running() == ("a", fleet.digests["v5"]), fleet.vm.fail("not v5 in slot a")
    fleet.wait_blessed("gatehouse-4-a.conf")
    with capsys.disabled():
        print("[upgrade] cut-off pull: retry to v5 serving %.1f s" % (time.monotonic() - t0))


def esp_entries_on_disk(disk):
    """The ESP's loader/entries as the disk file holds them now (what a power cut would keep),
    read from the host with mtools while the guest runs."""
    p = subprocess.run(["mdir", "-b", "-i", "%s@@%d" % (disk, 2048 * 512), "::/loader/entries"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
    return sorted(os.path.basename(l) for l in p.stdout.decode().split())


def test_6_power_cut_during_an_install(fleet, capsys):
    """The plug is pulled once the install has removed slot B's old entry from the disk, i.e.
    while it writes slot B's kernel and initrd: slot A, running, must still boot."""
    before = fleet.running()
    assert before == ("a", fleet.digests["v5"])
    assert esp_entries_on_disk(fleet.disk) == ["gatehouse-2-b.conf", "gatehouse-4-a.conf"]
    fleet.shell("true")
    fleet.vm.type("gatehouse-agent upgrade --image %s" % fleet.ref("v2"))
    fleet.vm.wait_for(lambda: "gatehouse-2-b.conf" not in esp_entries_on_disk(fleet.disk),
                      UPGRADE_TIMEOUT, "the install to remove slot B's entry")
    fleet.power_cycle()
    fleet.vm.wait_boot(1, BOOT_TIMEOUT)
    fleet.wait_served()
    entries = fleet.entries()
    assert fleet.running() == before, fleet.vm.fail("booted %s" % (fleet.running(),))
    assert "gatehouse-4-a.conf" in entries, fleet.vm.fail("the running slot's entry: %s" % entries)
    with capsys.disabled():
        print("[upgrade] power cut while slot B was written: back on slot A, entries %s" % entries)
    rc, out = fleet.upgrade("v2")
    assert rc == 0 and "into slot b" in out, fleet.vm.fail("the upgrade after the power cut: %s" % out)
    assert fleet.entries() == ["gatehouse-4-a.conf", "gatehouse-5-b+2.conf"], \
        fleet.vm.fail("entries %s" % fleet.entries())


def test_7_image_that_panics_falls_back(fleet, capsys):
    before = fleet.running()
    t0 = time.monotonic()
    boots = fleet.vm.boots()
    fleet.upgrade("v6", reboot=True)
    fleet.vm.wait_boot(boots + 3, 3 * BOOT_TIMEOUT)      # two panicking tries, then slot A
    fleet.wait_served()
    back = time.monotonic() - t0
    console = fleet.vm.console()
    assert console.count("broken test image: init exits") == 2, fleet.vm.fail("v6 did not run twice")
    assert "Kernel panic" in console, fleet.vm.fail("no kernel panic")
    assert fleet.running() == before, fleet.vm.fail("not back on %s" % (before,))
    prom = fleet.boot_metrics()
    assert 'failed_image="%s"} 1' % fleet.digests["v6"] in prom, fleet.vm.fail(prom)
    with capsys.disabled():
        print("[upgrade] image whose init dies: back on slot %s and serving %.1f s after the "
              "upgrade was typed" % (before[0], back))
