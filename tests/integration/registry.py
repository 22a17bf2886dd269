"""registry.py - an OCI registry and appliance images for the upgrade tests.

- Registry: Debian's docker-registry (the CNCF distribution registry) on a loopback port, its
  storage in the test's folder; the guest reaches it as 10.0.2.2:PORT.
- TokenServer: the token service of a private registry (Docker token authentication, as
  distribution's `auth: token:` expects): HTTP Basic credentials in, a JWT signed RS256 with a
  key whose certificate the registry trusts (x5c header), granting the scopes asked for to the
  one user it knows and nothing to anyone else.
- CutProxy: a TCP forwarder in front of it that can drop the connection after N bytes of a
  response (a network cut in the middle of a pull), then lets later connections through.
- Images: appliance images built the way `make image` builds them (tools/image/mkoci.py) from
  build/image's kernel and initrd, under another version label (a new digest), optionally with a
  second initramfs archive appended (files replaced, e.g. a proxy that never starts), another
  architecture or another kind. push() copies a layout into the registry with skopeo, sign() runs
  tools/image/sign, keypair() makes a P-256 key pair with openssl.
"""
import base64
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import helpers
import qemu

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGE_DIR = os.path.join(ROOT, "build", "image")
PY = "/usr/bin/python3"
REGISTRY_BIN = "/usr/bin/docker-registry"


def missing_tools():
    need = [REGISTRY_BIN, shutil.which("skopeo"), shutil.which("openssl")]
    return [n for n, p in zip(("docker-registry", "skopeo", "openssl"), need)
            if not p or not os.path.exists(p)]


def _run(argv, what, timeout=120, env=None):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                       env=env)
    if p.returncode != 0:
        raise AssertionError("%s failed (rc=%d): %s\n%s" % (what, p.returncode, " ".join(argv),
                                                          p.stdout.decode("utf-8", "replace")))
    return p.stdout.decode("utf-8", "replace")


class Registry:
    """tls: a helpers.Cert (chain + key) to serve HTTPS; cert_dir then holds its CA as ca.crt
    for skopeo."""

    def __init__(self, folder, tls=None, ca_path=None, token=None):
        self.folder = folder
        self.tls = tls
        self.token = token
        self.cert_dir = None
        self.port = helpers.free_port()
        os.makedirs(os.path.join(folder, "storage"), exist_ok=True)
        config = os.path.join(folder, "registry.yml")
        with open(config, "w") as f:
            f.write("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    "    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n"
                    "  addr: 127.0.0.1:%d\n" % (os.path.join(folder, "storage"), self.port))
            if tls:
                f.write("  tls:\n    certificate: %s\n    key: %s\n" % (tls.chain_path, tls.key_path))
            if token:
                f.write("auth:\n  token:\n    realm: http://127.0.0.1:%d/token\n    service: %s\n"
                        "    issuer: %s\n    rootcertbundle: %s\n"
                        % (token.port, TokenServer.SERVICE, TokenServer.ISSUER, token.cert))
        if tls:
            self.cert_dir = os.path.join(folder, "certs")
            os.makedirs(self.cert_dir, exist_ok=True)
            shutil.copy(ca_path, os.path.join(self.cert_dir, "ca.crt"))
        self.log = open(os.path.join(folder, "registry.log"), "wb")
        self.p = subprocess.Popen([REGISTRY_BIN, "serve", config], stdout=self.log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        helpers.wait_until(self._answers, timeout=20, interval=0.1,
                           what="docker-registry on 127.0.0.1:%d" % self.port)

    def _answers(self):
        if self.p.poll() is not None:
            raise AssertionError("docker-registry exited: %s" % open(self.log.name).read())
        if self.tls:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        return helpers.request(self.port, "GET", "/v2/", host="127.0.0.1").status in (200, 401)

    def address(self):
        return "%s:%d" % ("localhost" if self.tls else "127.0.0.1", self.port)

    def tls_args(self, dest=False):
        """skopeo's flags for this registry: its CA (or no TLS at all), its credentials."""
        if self.tls:
            args = ["--dest-cert-dir" if dest else "--cert-dir", self.cert_dir]
        else:
            args = ["--dest-tls-verify=false" if dest else "--tls-verify=false"]
        if self.token:
            args += ["--dest-creds" if dest else "--creds", self.token.creds()]
        return args

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
        self.log.close()


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    SERVICE = "gatehouse-test-registry"
    ISSUER = "gatehouse-test-tokens"

    def __init__(self, folder, user="fleet", password="s3cret-pull"):
        self.folder, self.user, self.password = folder, user, password
        self.key = os.path.join(folder, "token.key")
        self.cert = os.path.join(folder, "token.crt")
        _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key,
              "-out", self.cert, "-days", "2", "-subj", "/CN=gatehouse test token issuer"],
             "openssl req")
        pem = open(self.cert).read()
        der_b64 = "".join(l for l in pem.splitlines() if not l.startswith("-----"))
        self.x5c = [der_b64]
        self.requests = []           # (authorized user or None, scopes asked)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                server._answer(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def creds(self):
        return "%s:%s" % (self.user, self.password)

    def _authorized(self, header):
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return user if (user, password) == (self.user, self.password) else False

    def _answer(self, h):
        from urllib.parse import parse_qs, urlparse
        q = parse_qs(urlparse(h.path).query)
        who = self._authorized(h.headers.get("Authorization"))
        scopes = q.get("scope", [])
        self.requests.append((who, scopes))
        if who is False:
            h.send_response(401)
            h.send_header("Content-Type", "application/json")
            h.end_headers()
            h.wfile.write(b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}')
            return
        access = []
        for scope in scopes if who else []:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": self.ISSUER, "sub": who or "", "aud": q.get("service", [""])[0],
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
                  "access": access}
        head = {"typ": "JWT", "alg": "RS256", "x5c": self.x5c}
        signing_input = ("%s.%s" % (_b64url(json.dumps(head).encode()),
                                    _b64url(json.dumps(claims).encode()))).encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key], input=signing_input,
                             stdout=subprocess.PIPE, check=True).stdout
        token = signing_input.decode() + "." + _b64url(sig)
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def close(self):
        self.httpd.shutdown()


class CutProxy:
    """Forwards 127.0.0.1:port to the registry. cut_after(n): the next connection whose response
    passes n bytes is dropped (both ways), once; later connections pass untouched. Counts
    requests that carried a Range header (a resumed download)."""

    def __init__(self, target_port):
        self.target = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.cut_at = None
        self.cuts = 0
        self.range_requests = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after(self, n):
        with self.lock:
            self.cut_at = n

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        upstream = socket.create_connection(("127.0.0.1", self.target))
        done = threading.Event()

        def up():
            try:
                while True:
                    data = client.recv(65536)
                    if not data:
                        break
                    for line in data.split(b"\r\n"):
                        if line.lower().startswith(b"range:"):
                            self.range_requests.append(line.decode("latin-1"))
                    upstream.sendall(data)
            except OSError:
                pass
            done.set()

        threading.Thread(target=up, daemon=True).start()
        sent = 0
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                with self.lock:
                    limit = self.cut_at
                if limit is not None and sent + len(data) > limit:
                    client.sendall(data[:max(0, limit - sent)])
                    with self.lock:
                        self.cut_at = None
                        self.cuts += 1
                    break
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (client, upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- images

def build_image(folder, version, kernel=None, initrd=None, replace_files=None,
                architecture="amd64", kind="appliance"):
    """An OCI layout in folder (tag = version) holding build/image's kernel and initrd, the
    initrd extended with replace_files {path: (content, mode)} when given. Returns
    ("LAYOUT:TAG", manifest digest)."""
    os.makedirs(folder, exist_ok=True)
    kernel = kernel or os.path.join(IMAGE_DIR, "vmlinuz")
    initrd = initrd or os.path.join(IMAGE_DIR, "initrd")
    if replace_files:
        tree = os.path.join(folder, "overlay")
        for path, (content, mode) in replace_files.items():
            full = os.path.join(tree, path.lstrip("/"))
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(content)
            os.chmod(full, mode)
        extra = os.path.join(folder, "overlay.cpio")
        _run([PY, os.path.join(ROOT, "tools", "image", "mkcpio.py"), tree, extra, "--no-console"],
             "mkcpio")
        joined = os.path.join(folder, "initrd")
        with open(joined, "wb") as out:
            with open(initrd, "rb") as f:
                shutil.copyfileobj(f, out)
            # the kernel takes an uncompressed archive after a compressed one only at a
            # 4-byte boundary (init/initramfs.c): pad with zeros, which it skips
            out.write(b"\0" * (-out.tell() % 4))
            with open(extra, "rb") as f:
                shutil.copyfileobj(f, out)
        initrd = joined
    layout = os.path.join(folder, "oci")
    _run([PY, os.path.join(ROOT, "tools", "image", "mkoci.py"), "--version", version,
          "--revision", "test", "--kernel", kernel, "--initrd", initrd, "--layout", layout,
          "--archive", os.path.join(folder, "image.oci.tar"), "--architecture", architecture,
          "--kind", kind], "mkoci", env=dict(os.environ, SOURCE_DATE_EPOCH="1700000000"))
    return "%s:%s" % (layout, version), qemu.image_digest(layout, tag=version)


def push(layout_ref, registry, name):
    """skopeo copy oci:LAYOUT:TAG docker://127.0.0.1:PORT/NAME. Returns the pushed manifest's
    digest as the registry serves it."""
    dest = "docker://%s/%s" % (registry.address(), name)
    _run(["skopeo", "copy", "--quiet"] + registry.tls_args(dest=True) +
         ["oci:" + layout_ref, dest], "skopeo copy")
    raw = _run(["skopeo", "inspect", "--raw"] + registry.tls_args() + [dest], "skopeo inspect")
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def keypair(folder, name="release"):
    key, pub = os.path.join(folder, name + ".key"), os.path.join(folder, name + ".pem")
    _run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], "openssl")
    _run(["openssl", "ec", "-in", key, "-pubout", "-out", pub], "openssl")
    return key, pub


def sign(key, registry, name):
    """tools/image/sign: a signature for what NAME (repo:tag) points at, pushed beside it."""
    tls = ["--cert-dir", registry.cert_dir] if registry.tls else ["--plain-http"]
    if registry.token:
        tls += ["--creds", registry.token.creds()]
    return _run([PY, os.path.join(ROOT, "tools", "image", "sign"), "--key", key, "--image",
                 "%s/%s" % (registry.address(), name)] + tls, "tools/image/sign")


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wait_port_closed(port, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return
        time.sleep(0.1)
