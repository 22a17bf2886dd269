"""test_upgrade.py - `gatehouse-agent upgrade` and `boot-check` on this machine, against a real
registry (Debian's docker-registry on loopback), with images pushed by skopeo and signed by
tools/image/sign. The ESP is a folder laid out as tools/image/mkdisk lays it out and the kernel
command line a file, so each refusal can be checked to leave the ESP exactly as it was. The
whole story under qemu (reboots, the boot loader's counting, fallback) is test_upgrade_vm.py.
"""
import os
import shutil
import subprocess
import time

import pytest

import helpers
import registry as reg
from conftest import AGENT, _binary

if reg.missing_tools():
    pytest.skip("needs %s (tools/install-deps test)" % ", ".join(reg.missing_tools()),
                allow_module_level=True)
if not os.path.exists(os.path.join(reg.IMAGE_DIR, "initrd")):
    pytest.skip("no build/image: run `make image`", allow_module_level=True)

V1 = "sha256:" + "1" * 64


class World:
    """Registry + keys + images, shared by the module (building and pushing takes seconds)."""

    def __init__(self, tmp):
        self.tmp = str(tmp)
        self.registry = reg.Registry(os.path.join(self.tmp, "registry"))
        self.key, self.pub = reg.keypair(self.tmp)
        self.other_key, self.other_pub = reg.keypair(self.tmp, "other")
        self.images = {}

    def image(self, name, **kw):
        """Builds and pushes gatehouse:NAME once; returns its digest."""
        if name not in self.images:
            layout, _ = reg.build_image(os.path.join(self.tmp, "img-" + name), "test-" + name, **kw)
            self.images[name] = (layout, reg.push(layout, self.registry, "gatehouse:" + name))
        return self.images[name][1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("upgrade"))
    yield w
    w.registry.stop()


class Node:
    """A node's view: ESP folder with slot A installed, /proc/cmdline, state dir, config."""

    def __init__(self, tmp, slot="a", entry="gatehouse-1-a.conf", image=V1):
        self.tmp = str(tmp)
        os.makedirs(self.tmp, exist_ok=True)
        self.esp = os.path.join(self.tmp, "esp")
        self.state = os.path.join(self.tmp, "state")
        os.makedirs(os.path.join(self.esp, "loader", "entries"))
        os.makedirs(self.state)
        for s in "ab":
            os.makedirs(os.path.join(self.esp, "gatehouse", s))
        for f in ("vmlinuz", "initrd"):
            with open(os.path.join(self.esp, "gatehouse", slot, f), "wb") as out:
                out.write(b"slot-%s-%s" % (slot.encode(), f.encode()))
        with open(os.path.join(self.esp, "loader", "entries", entry), "w") as f:
            f.write("title Gatehouse v1 (slot %s)\nversion v1\nlinux /gatehouse/%s/vmlinuz\n"
                    "initrd /gatehouse/%s/initrd\noptions console=ttyS0 gatehouse.slot=%s "
                    "gatehouse.image=%s\n" % (slot.upper(), slot, slot, slot, image))
        self.cmdline = os.path.join(self.tmp, "cmdline")
        with open(self.cmdline, "w") as f:
            f.write("initrd=\\gatehouse\\%s\\initrd console=ttyS0 gatehouse.slot=%s "
                    "gatehouse.image=%s\n" % (slot, slot, image))
        self.config = os.path.join(self.tmp, "config.yaml")
        with open(self.config, "w") as f:
            f.write("upgrade:\n  plainHttp: true\n")

    def snapshot(self):
        """Every file under the ESP with its size and mtime: what a refusal must not change."""
        out = {}
        for top, _, files in os.walk(self.esp):
            for n in files:
                p = os.path.join(top, n)
                st = os.stat(p)
                out[os.path.relpath(p, self.esp)] = (st.st_size, st.st_mtime_ns)
        return out

    def entries(self):
        return sorted(os.listdir(os.path.join(self.esp, "loader", "entries")))

    def upgrade(self, image, keys, extra=(), timeout=120):
        argv = [_binary(AGENT), "upgrade", "--image", image, "--config", self.config,
                "--esp", self.esp, "--cmdline", self.cmdline, "--state-dir", self.state,
                "--trusted-keys", keys] + list(extra)
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace")


@pytest.fixture
def node(tmp_path):
    return Node(tmp_path)


def test_signed_image_is_installed_into_the_other_slot(world, node):
    digest = world.image("v2")
    reg.sign(world.key, world.registry, "gatehouse:v2")
    slot_a = {f: open(os.path.join(node.esp, "gatehouse", "a", f), "rb").read()
              for f in ("vmlinuz", "initrd")}
    rc, out = node.upgrade("%s/gatehouse:v2" % world.registry.address(), world.pub)
    assert rc == 0, out
    assert "signed by %s" % world.pub in out, out
    assert node.entries() == ["gatehouse-1-a.conf", "gatehouse-2-b+3.conf"], out
    entry = open(os.path.join(node.esp, "loader", "entries", "gatehouse-2-b+3.conf")).read()
    assert "linux /gatehouse/b/vmlinuz" in entry and "version test-v2" in entry, entry
    assert "gatehouse.slot=b gatehouse.image=%s" % digest in entry, entry
    assert "gatehouse.slot=a" not in entry and "initrd=" not in entry.split("options")[1], entry
    # what is in slot B is the image's kernel and initrd, byte for byte
    assert reg.file_digest(os.path.join(node.esp, "gatehouse", "b", "vmlinuz")) == \
        reg.file_digest(os.path.join(reg.IMAGE_DIR, "vmlinuz"))
    assert reg.file_digest(os.path.join(node.esp, "gatehouse", "b", "initrd")) == \
        reg.file_digest(os.path.join(reg.IMAGE_DIR, "initrd"))
    for f, data in slot_a.items():
        assert open(os.path.join(node.esp, "gatehouse", "a", f), "rb").read() == data
    # the download is cleaned up; a second run sees the image installed but not yet booted
    assert not [n for n in os.listdir(os.path.join(node.state, "upgrade")) if "layer" in n]


def test_image_pinned_by_digest(world, node):
    digest = world.image("v2")
    reg.sign(world.key, world.registry, "gatehouse:v2")
    rc, out = node.upgrade("%s/gatehouse@%s" % (world.registry.address(), digest), world.pub,
                           extra=["--tries", "2"])
    assert rc == 0, out
    assert node.entries() == ["gatehouse-1-a.conf", "gatehouse-2-b+2.conf"], out


@pytest.mark.parametrize("case", ["unsigned", "other-key", "arm64", "not-appliance", "no-keys"])
def test_refused_images_leave_the_esp_alone(world, node, case):
    name = {"unsigned": "unsigned", "other-key": "v2", "arm64": "arm64",
            "not-appliance": "container", "no-keys": "v2"}[case]
    kw = {"arm64": {"architecture": "arm64"}, "not-appliance": {"kind": "container"}}.get(case, {})
    world.image(name, **kw)
    if case in ("arm64", "not-appliance"):
        reg.sign(world.key, world.registry, "gatehouse:" + name)
    elif case != "unsigned":
        reg.sign(world.key, world.registry, "gatehouse:v2")
    keys = world.pub
    if case == "other-key":
        keys = world.other_pub
    elif case == "no-keys":
        keys = os.path.join(node.tmp, "empty-keys")
        os.makedirs(keys)
    before = node.snapshot()
    rc, out = node.upgrade("%s/gatehouse:%s" % (world.registry.address(), name), keys)
    assert rc == 1, out
    expected = {"unsigned": "is not signed", "other-key": "signature refused",
                "arm64": "linux/arm64 image", "not-appliance": "not a Gatehouse appliance image",
                "no-keys": "no *.pem or *.pub file"}[case]
    assert expected in out, out
    assert node.snapshot() == before


def test_a_trial_boot_does_not_upgrade(world, tmp_path):
    node = Node(tmp_path, slot="b", entry="gatehouse-2-b+2-1.conf")
    world.image("v2")
    before = node.snapshot()
    rc, out = node.upgrade("%s/gatehouse:v2" % world.registry.address(), world.pub)
    assert rc == 1 and "still on trial" in out, out
    assert node.snapshot() == before


def test_a_pull_cut_off_resumes(world, node):
    digest = world.image("v2")
    reg.sign(world.key, world.registry, "gatehouse:v2")
    proxy = reg.CutProxy(world.registry.port)
    try:
        proxy.cut_after(4 << 20)      # the manifests are small: this cuts the layer
        before = node.snapshot()
        image = "127.0.0.1:%d/gatehouse:v2" % proxy.port
        rc, out = node.upgrade(image, world.pub)
        assert rc == 1, out
        assert proxy.cuts == 1, out
        assert node.snapshot() == before, "a cut-off pull changed the ESP"
        partial = [n for n in os.listdir(os.path.join(node.state, "upgrade")) if n.endswith(".partial")]
        assert partial, os.listdir(os.path.join(node.state, "upgrade"))
        kept = os.path.getsize(os.path.join(node.state, "upgrade", partial[0]))
        assert kept > 1 << 20, kept
        rc, out = node.upgrade(image, world.pub)
        assert rc == 0, out
        assert "resumed at byte %d" % kept in out, out
        assert any("bytes=%d-" % kept in r for r in proxy.range_requests), proxy.range_requests
        assert node.entries() == ["gatehouse-1-a.conf", "gatehouse-2-b+3.conf"]
        entry = open(os.path.join(node.esp, "loader", "entries", "gatehouse-2-b+3.conf")).read()
        assert digest in entry
    finally:
        proxy.close()


def test_unreachable_registry_is_a_clear_error(world, node):
    before = node.snapshot()
    rc, out = node.upgrade("127.0.0.1:%d/gatehouse:v2" % helpers.closed_port(), world.pub)
    assert rc == 1 and "127.0.0.1" in out, out
    assert node.snapshot() == before


# ---------------------------------------------------------------- boot-check

def boot_check(node, env_proxy_admin, http, extra=()):
    with open(node.config, "w") as f:
        f.write("proxy:\n  admin: 127.0.0.1:%d\n  http: 127.0.0.1:%d\n" % (env_proxy_admin, http))
    argv = [_binary(AGENT), "boot-check", "--config", node.config, "--esp", node.esp,
            "--cmdline", node.cmdline, "--state-dir", node.state, "--no-reboot"] + list(extra)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def test_boot_check_blesses_a_serving_trial_boot(env, tmp_path):
    b = env.backend("b1")
    proxy = env.up([helpers.ingress_class(default=True)] + helpers.service_for("app", ["127.0.0.1:%d" % b.port])
                   + [helpers.ingress("app", rules=[("a.test", [("/", "Prefix", "app", 80)])])])
    node = Node(tmp_path / "node", slot="b", entry="gatehouse-2-b+2-1.conf",
                image="sha256:" + "2" * 64)
    rc, out = boot_check(node, proxy.admin_port, proxy.http_port)
    assert rc == 0, out
    assert "marked good" in out, out
    assert node.entries() == ["gatehouse-2-b.conf"]
    prom = open(os.path.join(node.state, "boot.prom")).read()
    assert 'gatehouse_node_boot_info{slot="b",image_digest="sha256:%s"' % ("2" * 64) in prom, prom
    assert "gatehouse_node_boot_trial 0" in prom, prom
    # the proxy serves that file on /metrics (it sits beside the routes file)
    shutil.copy(os.path.join(node.state, "boot.prom"), os.path.join(env.state, "boot.prom"))
    assert "gatehouse_node_boot_trial 0" in proxy.admin("/metrics").body.decode()


def test_boot_check_does_not_bless_a_proxy_that_is_not_ready(tmp_path):
    node = Node(tmp_path, slot="b", entry="gatehouse-2-b+2-1.conf", image="sha256:" + "2" * 64)
    rc, out = boot_check(node, helpers.closed_port(), helpers.closed_port(), ["--timeout", "2"])
    assert rc == 1, out
    assert "not healthy after 2 s" in out and "2 tries left" in out, out
    assert node.entries() == ["gatehouse-2-b+2-1.conf"]
    assert "gatehouse_node_boot_trial 1" in open(os.path.join(node.state, "boot.prom")).read()


def test_boot_check_judges_a_trial_boot_even_with_a_bad_config(tmp_path):
    """A node config the new image cannot read must not leave the trial boot unjudged."""
    node = Node(tmp_path, slot="b", entry="gatehouse-2-b+2-1.conf", image="sha256:" + "2" * 64)
    with open(node.config, "w") as f:
        f.write("proxy: {workers: many}\n")
    argv = [_binary(AGENT), "boot-check", "--config", node.config, "--esp", node.esp,
            "--cmdline", node.cmdline, "--state-dir", node.state, "--no-reboot", "--timeout", "1"]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode()
    assert p.returncode == 1, out
    assert "proxy.workers" in out and "default settings" in out, out
    assert "not healthy after 1 s" in out, out
    assert node.entries() == ["gatehouse-2-b+2-1.conf"]


def test_boot_check_reports_a_fallback(tmp_path):
    node = Node(tmp_path, slot="a", entry="gatehouse-1-a.conf")
    bad = "sha256:" + "3" * 64
    with open(os.path.join(node.esp, "loader", "entries", "gatehouse-2-b+0-3.conf"), "w") as f:
        f.write("title x\nversion v3\nlinux /gatehouse/b/vmlinuz\ninitrd /gatehouse/b/initrd\n"
                "options console=ttyS0 gatehouse.slot=b gatehouse.image=%s\n" % bad)
    rc, out = boot_check(node, helpers.closed_port(), helpers.closed_port())
    assert rc == 0, out
    assert "fell back: slot b (image %s" % bad in out, out
    prom = open(os.path.join(node.state, "boot.prom")).read()
    assert 'gatehouse_node_boot_fallback{failed_slot="b",failed_image="%s"} 1' % bad in prom, prom


def test_follow_installs_what_the_config_names_once(world, node):
    """upgrade --follow (the gatehouse-upgrade service) with upgrade.image: installs the image
    once and then waits for the reboot (upgrade.reboot false here: this is not a node) instead
    of installing it again at every look."""
    digest = world.image("v2")
    reg.sign(world.key, world.registry, "gatehouse:v2")
    with open(node.config, "w") as f:
        f.write("upgrade:\n  plainHttp: true\n  reboot: false\n  checkInterval: 300ms\n"
                "  image: %s/gatehouse:v2\n" % world.registry.address())
    argv = [_binary(AGENT), "upgrade", "--follow", "--config", node.config, "--esp", node.esp,
            "--cmdline", node.cmdline, "--state-dir", node.state, "--trusted-keys", world.pub]
    log = open(os.path.join(node.tmp, "follow.log"), "wb")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        helpers.wait_until(lambda: "gatehouse-2-b+3.conf" in node.entries(), timeout=60,
                           what="the follower to install v2")
        entry = os.path.join(node.esp, "loader", "entries", "gatehouse-2-b+3.conf")
        mtime = os.stat(entry).st_mtime_ns
        helpers.wait_until(lambda: "installed in slot b and boots next" in
                           open(log.name).read(), timeout=10, what="the follower to see it pending")
        time.sleep(1.5)               # several more looks
        assert node.entries() == ["gatehouse-1-a.conf", "gatehouse-2-b+3.conf"]
        assert os.stat(entry).st_mtime_ns == mtime, "installed again"
        assert p.poll() is None, open(log.name).read()
        text = open(log.name).read()
        assert text.count("upgrading") == 1 and digest in text, text
    finally:
        p.kill()
        p.wait()
        log.close()


def test_registry_over_https_with_a_private_ca(world, tmp_path):
    """The release agent's https path (libcurl over BearSSL): a registry whose certificate a
    private CA signed is trusted through upgrade.caFile, and refused without it."""
    pki = helpers.Pki(tmp_path / "pki")
    registry = reg.Registry(str(tmp_path / "tls-registry"), tls=pki.leaf("localhost", key="p256"),
                            ca_path=pki.root_path)
    try:
        layout, _ = reg.build_image(str(tmp_path / "img"), "test-tls")
        digest = reg.push(layout, registry, "gatehouse:tls")
        reg.sign(world.key, registry, "gatehouse:tls")
        node = Node(tmp_path / "node")
        image = "%s/gatehouse:tls" % registry.address()
        with open(node.config, "w") as f:
            f.write("upgrade: {}\n")
        before = node.snapshot()
        rc, out = node.upgrade(image, world.pub)
        assert rc == 1 and "localhost" in out, out          # the system CAs do not know it
        assert node.snapshot() == before
        with open(node.config, "w") as f:
            f.write("upgrade:\n  caFile: %s\n" % pki.root_path)
        rc, out = node.upgrade(image, world.pub)
        assert rc == 0, out
        entry = open(os.path.join(node.esp, "loader", "entries", "gatehouse-2-b+3.conf")).read()
        assert digest in entry, entry
    finally:
        registry.stop()


def test_private_registry_with_token_auth(world, tmp_path):
    """A registry that wants a bearer token from its token service (Docker token auth, as
    distribution does it): upgrade.credentialsFile gets the token; without it, or with a wrong
    password, the pull is refused with the registry's or token service's answer."""
    tokens = reg.TokenServer(str(tmp_path))
    registry = reg.Registry(str(tmp_path / "private-registry"), token=tokens)
    try:
        layout, _ = reg.build_image(str(tmp_path / "img"), "test-private")
        digest = reg.push(layout, registry, "gatehouse:private")
        reg.sign(world.key, registry, "gatehouse:private")
        node = Node(tmp_path / "node")
        image = "%s/gatehouse:private" % registry.address()
        before = node.snapshot()
        rc, out = node.upgrade(image, world.pub)
        assert rc == 1 and "401" in out, out                  # anonymous: no access granted
        creds = os.path.join(node.tmp, "registry-credentials")
        with open(creds, "w") as f:
            f.write("fleet:wrong\n")
        os.chmod(creds, 0o600)
        with open(node.config, "w") as f:
            f.write("upgrade:\n  plainHttp: true\n  credentialsFile: %s\n" % creds)
        rc, out = node.upgrade(image, world.pub)
        assert rc == 1 and "wrong username or password" in out, out
        assert "wrong" not in out.replace("wrong username", ""), "the password reached the log"
        assert node.snapshot() == before
        with open(creds, "w") as f:
            f.write("fleet:s3cret-pull\n")
        rc, out = node.upgrade(image, world.pub)
        assert rc == 0, out
        assert "s3cret" not in out
        entry = open(os.path.join(node.esp, "loader", "entries", "gatehouse-2-b+3.conf")).read()
        assert digest in entry
        assert any(who == "fleet" and any("repository:gatehouse:pull" in s for s in scopes)
                   for who, scopes in tokens.requests), tokens.requests
    finally:
        registry.stop()
        tokens.close()
