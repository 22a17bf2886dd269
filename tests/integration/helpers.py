"""Helpers for the integration tests: Kubernetes manifest builders, HTTP clients (http.client and
raw sockets), Prometheus text parsing, polling with deadlines."""
import http.client
import json
import os
import re
import socket
import time

import yaml

CONTROLLER = "gatehouse.dev/ingress-controller"
OLD = "2020-01-01T00:00:00Z"


# ---------------------------------------------------------------- polling

def wait_until(pred, timeout=5.0, interval=0.02, what="condition"):
    """Polls pred() until it returns a truthy value; returns it. Fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - polling tolerates transient errors
            last_exc = e
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last error: %r)"
                                 % (timeout, what, last_exc))
        time.sleep(interval)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port():
    """A loopback port with nothing listening (connect -> ECONNREFUSED)."""
    return free_port()


def write_atomic(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


# ---------------------------------------------------------------- manifests

def ingress_class(name="gatehouse", controller=CONTROLLER, default=False):
    meta = {"name": name}
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": meta,
            "spec": {"controller": controller}}


def service(name, ports=(("http", 80),), ns="default"):
    """ports: (name, port) pairs; name may be None for an unnamed port."""
    sp = []
    for pname, port in ports:
        p = {"port": port, "targetPort": 8080, "protocol": "TCP"}
        if pname:
            p["name"] = pname
        sp.append(p)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": sp}}


def endpoint_slice(svc, endpoints, port_name="http", ns="default", slice_name=None):
    """One EndpointSlice for svc with all endpoints on one port.
    endpoints: [(ip, port, ready)]; all must share the same port (an EndpointSlice has one port
    list), so callers make one slice per backend port (see service_for)."""
    ports = {e[1] for e in endpoints}
    assert len(ports) <= 1
    port = ports.pop() if ports else 8080
    p = {"port": port, "protocol": "TCP"}
    if port_name is not None:
        p["name"] = port_name
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice_name or svc + "-slice", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}}
                          for ip, _, ready in endpoints],
            "ports": [p]}


def service_for(name, backends, port=80, port_name="http", ready=None, ns="default"):
    """A Service named `name` whose endpoints are the given Backend objects (or "ip:port"
    strings), one EndpointSlice each. ready: optional list of booleans."""
    docs = [service(name, ((port_name, port),), ns=ns)]
    for i, b in enumerate(backends):
        addr = b if isinstance(b, str) else b.addr
        ip, _, p = addr.rpartition(":")
        r = True if ready is None else ready[i]
        docs.append(endpoint_slice(name, [(ip, int(p), r)], port_name=port_name, ns=ns,
                                   slice_name="%s-%d" % (name, i)))
    return docs


def svc_backend(svc, port=80):
    return {"service": {"name": svc,
                        "port": {"name": port} if isinstance(port, str) else {"number": port}}}


def ingress(name, rules=(), cls="gatehouse", ns="default", annotations=None,
            default_backend=None, created=OLD):
    """rules: [(host or None, [(path, pathType, svc, port)])]; default_backend: (svc, port)."""
    spec = {}
    if cls is not None:
        spec["ingressClassName"] = cls
    if default_backend:
        spec["defaultBackend"] = svc_backend(*default_backend)
    rl = []
    for host, paths in rules:
        r = {"http": {"paths": [{"path": p, "pathType": t, "backend": svc_backend(s, port)}
                                for p, t, s, port in paths]}}
        if host is not None:
            r["host"] = host
        rl.append(r)
    if rl:
        spec["rules"] = rl
    meta = {"name": name, "namespace": ns, "creationTimestamp": created}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
            "spec": spec}


def dump_docs(docs):
    return yaml.safe_dump_all(docs, sort_keys=False)


def routes_doc(backends, hosts, default_backend=None, generation=1):
    """A routes file (docs/routes-format.md). backends: {name: [endpoints]};
    hosts: {host: [(path, type, backend)]}."""
    doc = {"version": 1, "generation": generation,
           "backends": [{"name": n, "endpoints": list(eps)} for n, eps in backends.items()],
           "hosts": [{"host": h, "paths": [{"path": p, "type": t, "backend": b,
                                            "ingress": "test/test"} for p, t, b in paths]}
                     for h, paths in hosts.items()]}
    if default_backend:
        doc["defaultBackend"] = default_backend
    return yaml.safe_dump(doc, sort_keys=False)


# ---------------------------------------------------------------- HTTP

class Response:
    def __init__(self, status, headers, body, reason=""):
        self.status = status
        self.reason = reason
        self.headers = headers            # list of (name, value)
        self.body = body

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def backend(self):
        """Name of the backend that answered, or None (proxy-generated answer)."""
        try:
            return self.json.get("backend")
        except ValueError:
            return None

    def req_header(self, name):
        """A header as the backend received it (from the JSON echo), or None."""
        vals = [v for k, v in self.json["headers"] if k.lower() == name.lower()]
        return vals[0] if vals else None

    def req_header_all(self, name):
        return [v for k, v in self.json["headers"] if k.lower() == name.lower()]

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


def request(port, method="GET", path="/", host="example.test", headers=None, body=None,
            timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Host": host} if host is not None else {}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.getheaders(), data, r.reason)
    finally:
        conn.close()


def get(port, path="/", host="example.test", **kw):
    return request(port, "GET", path, host=host, **kw)


class RawConn:
    """A client socket with a small HTTP/1.1 response reader, for what http.client won't send."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("connection closed by peer")
        self.buf += d

    def read_line(self):
        while b"\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def read_head(self):
        line = self.read_line()
        m = re.match(rb"HTTP/1\.[01] (\d{3})(?: (.*))?$", line)
        if not m:
            raise AssertionError("bad status line %r" % line)
        status = int(m.group(1))
        headers = []
        while True:
            h = self.read_line()
            if not h:
                break
            k, _, v = h.partition(b":")
            headers.append((k.decode("latin-1").strip(), v.decode("latin-1").strip()))
        return status, headers

    def read_response(self, head_request=False, allow_interim=False):
        status, headers = self.read_head()
        while 100 <= status < 200 and status != 101 and not allow_interim:
            status, headers = self.read_head()
        r = Response(status, headers, b"")
        if head_request or status in (101, 204, 304) or 100 <= status < 200:
            return r
        te = (r.header("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts = []
            while True:
                size = int(self.read_line().split(b";")[0], 16)
                if size == 0:
                    while self.read_line():
                        pass
                    break
                parts.append(self.read_exact(size))
                self.read_line()
            r.body = b"".join(parts)
        elif r.header("Content-Length") is not None:
            r.body = self.read_exact(int(r.header("Content-Length")))
        else:
            r.body = self.read_to_eof()
        return r

    def read_to_eof(self, timeout=5.0):
        self.sock.settimeout(timeout)
        out = self.buf
        self.buf = b""
        deadline = time.monotonic() + timeout
        while True:
            try:
                d = self.sock.recv(65536)
            except ConnectionResetError:
                return out
            except socket.timeout:
                raise AssertionError("connection still open after %.1fs; got so far: %r"
                                     % (timeout, out[:300]))
            if not d:
                return out
            out += d
            if time.monotonic() > deadline:
                raise AssertionError("peer still sending after %.1fs" % timeout)

    def is_closed(self, timeout=3.0):
        """True when the peer closed (EOF or reset) within timeout with nothing more to read."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        if d:
            self.buf += d
            return False
        return True

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def raw_request(method, path, host, headers=(), body=b""):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
    lines += ["%s: %s" % kv for kv in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# ---------------------------------------------------------------- metrics

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text -> list of (name, {labels}, value)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError("unparsable metrics line %r" % line)
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric_sum(samples, name, **labels):
    return sum(v for n, l, v in samples
               if n == name and all(l.get(k) == str(val) for k, val in labels.items()))


def metric_present(samples, name):
    return any(n == name for n, _, _ in samples)


# ---------------------------------------------------------------- TLS (issue 3)
# Certificates are made at test time with the openssl command; the clients are the real ones
# (openssl s_client, curl) plus Python's ssl module for a keep-alive connection held open.

import base64  # noqa: E402
import hashlib  # noqa: E402
import ssl  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

OPENSSL = "openssl"
CURL = "curl"


def _run(argv, timeout=20, input=None):
    r = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def _openssl(*args, timeout=20):
    rc, out, err = _run([OPENSSL] + [str(a) for a in args], timeout=timeout)
    if rc != 0:
        raise AssertionError("openssl %s failed (rc=%d): %s%s" % (" ".join(map(str, args)), rc,
                                                                out, err))
    return out


KEY_ARGS = {"rsa2048": ["-newkey", "rsa:2048"],
            "p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "p384": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"]}


class Cert:
    """One leaf: cert (leaf only), chain (leaf + intermediate), key, as file paths and text."""

    def __init__(self, name, cert, chain, key):
        self.name = name
        self.cert_path, self.chain_path, self.key_path = cert, chain, key

    @property
    def cert(self):
        return open(self.cert_path).read()

    @property
    def chain(self):
        return open(self.chain_path).read()

    @property
    def key(self):
        return open(self.key_path).read()

    @property
    def fingerprint(self):
        return cert_fingerprint(self.cert)


class Pki:
    """A root CA, an intermediate CA signed by it, and leaves signed by the intermediate, made
    with the openssl command in `folder`. Clients trust only root_path."""

    def __init__(self, folder, root_key="rsa2048"):
        self.dir = str(folder)
        os.makedirs(self.dir, exist_ok=True)
        self.serial = 1000
        self.root_path = os.path.join(self.dir, "root.crt")
        self.root_key = os.path.join(self.dir, "root.key")
        _openssl("req", "-x509", *KEY_ARGS[root_key], "-nodes", "-keyout", self.root_key,
                 "-out", self.root_path, "-days", "30", "-subj", "/O=Gatehouse tests/CN=Test Root CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.int_path = os.path.join(self.dir, "intermediate.crt")
        self.int_key = os.path.join(self.dir, "intermediate.key")
        csr = os.path.join(self.dir, "intermediate.csr")
        _openssl("req", "-new", *KEY_ARGS["p256"], "-nodes", "-keyout", self.int_key, "-out", csr,
                 "-subj", "/O=Gatehouse tests/CN=Test Intermediate CA")
        ext = self._ext("intermediate", "basicConstraints=critical,CA:TRUE,pathlen:0\n"
                        "keyUsage=critical,keyCertSign,cRLSign\n"
                        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        _openssl("x509", "-req", "-in", csr, "-CA", self.root_path, "-CAkey", self.root_key,
                 "-set_serial", self._next_serial(), "-days", "30", "-sha256", "-extfile", ext,
                 "-out", self.int_path)

    def _next_serial(self):
        self.serial += 1
        return self.serial

    def _ext(self, name, text):
        path = os.path.join(self.dir, name + ".ext")
        with open(path, "w") as f:
            f.write(text)
        return path

    def leaf(self, name, sans=None, key="rsa2048", expired=False, file_name=None):
        """A server certificate for CN=name with DNS SANs (default: [name]), signed by the
        intermediate. expired: valid only in January 2020."""
        base = os.path.join(self.dir, file_name or name.replace("*", "_star_"))
        keyp, csr, crt, chain = base + ".key", base + ".csr", base + ".crt", base + ".chain.crt"
        _openssl("req", "-new", *KEY_ARGS[key], "-nodes", "-keyout", keyp, "-out", csr,
                 "-subj", "/O=Gatehouse tests/CN=%s" % name)
        ext = self._ext(os.path.basename(base), "basicConstraints=critical,CA:FALSE\n"
                        "keyUsage=critical,digitalSignature,keyEncipherment\n"
                        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n"
                        "authorityKeyIdentifier=keyid\nsubjectAltName=%s\n"
                        % ",".join("DNS:" + s for s in (sans or [name])))
        if expired:
            self._ca_sign(csr, crt, ext)
        else:
            _openssl("x509", "-req", "-in", csr, "-CA", self.int_path, "-CAkey", self.int_key,
                     "-set_serial", self._next_serial(), "-days", "30", "-sha256",
                     "-extfile", ext, "-out", crt)
        with open(chain, "w") as f:
            f.write(open(crt).read() + open(self.int_path).read())
        return Cert(name, crt, chain, keyp)

    def _ca_sign(self, csr, out, ext):
        """`openssl ca` can set explicit dates in the past (x509 -req cannot in OpenSSL 3.0)."""
        d = os.path.join(self.dir, "ca-db")
        os.makedirs(os.path.join(d, "new"), exist_ok=True)
        open(os.path.join(d, "index.txt"), "a").close()
        with open(os.path.join(d, "serial"), "w") as f:
            f.write("%X\n" % (0x5000 + self._next_serial()))
        conf = self._ext("ca", """[ca]
default_ca = CA_default
[CA_default]
database = %s/index.txt
new_certs_dir = %s/new
serial = %s/serial
default_md = sha256
policy = pol
unique_subject = no
[pol]
commonName = supplied
organizationName = optional
""" % (d, d, d))
        _openssl("ca", "-batch", "-config", conf, "-in", csr, "-out", out, "-notext",
                 "-cert", self.int_path, "-keyfile", self.int_key, "-extfile", ext,
                 "-startdate", "200101000000Z", "-enddate", "200131000000Z")


def self_signed(folder, name, key="p256"):
    """A self-signed certificate (the bench uses it; tests use Pki)."""
    base = os.path.join(str(folder), name)
    _openssl("req", "-x509", *KEY_ARGS[key], "-nodes", "-keyout", base + ".key",
             "-out", base + ".crt", "-days", "30", "-subj", "/CN=%s" % name,
             "-addext", "subjectAltName=DNS:%s" % name)
    return Cert(name, base + ".crt", base + ".crt", base + ".key")


PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


def cert_fingerprint(pem):
    der = ssl.PEM_cert_to_DER_cert(PEM_CERT.search(pem).group(0))
    return hashlib.sha256(der).hexdigest()


def cert_info(pem):
    """(subject, [DNS SANs], issuer) of the first certificate in pem, as `openssl x509` says."""
    rc, out, err = _run([OPENSSL, "x509", "-noout", "-subject", "-issuer",
                         "-ext", "subjectAltName", "-nameopt", "RFC2253"],
                        input=PEM_CERT.search(pem).group(0).encode())
    assert rc == 0, err
    subject = re.search(r"^subject=(.*)$", out, re.M).group(1).strip()
    issuer = re.search(r"^issuer=(.*)$", out, re.M).group(1).strip()
    sans = re.findall(r"DNS:([^,\s]+)", out)
    return subject, sans, issuer


# ---- Kubernetes objects

def tls_secret(name, cert_pem, key_pem, ns="default", type_="kubernetes.io/tls"):
    """A Secret of type kubernetes.io/tls (data is base64, as the API server stores it)."""
    def b64(v):
        return base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": type_,
            "metadata": {"name": name, "namespace": ns},
            "data": {"tls.crt": b64(cert_pem), "tls.key": b64(key_pem)}}


def with_tls(ing, entries):
    """Adds spec.tls to an Ingress built by ingress(): entries = [([hosts], secretName)]."""
    ing["spec"]["tls"] = [{"hosts": list(h), "secretName": s} for h, s in entries]
    return ing


# ---- clients

class SClient:
    """What one `openssl s_client` run showed."""

    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err
        self.certs = PEM_CERT.findall(out)      # with -showcerts: the chain as sent

    @property
    def text(self):
        return self.out + self.err

    @property
    def handshake_ok(self):
        # "Cipher is (NONE)" / "(NONE)" means no session was established
        m = re.search(r"^\s*Cipher\s*:\s*(\S+)", self.out, re.M)
        return bool(m) and m.group(1) not in ("0000", "(NONE)")

    def field(self, regex):
        m = re.search(regex, self.out, re.M)
        return m.group(1).strip() if m else None

    @property
    def protocol(self):
        return self.field(r"^\s*Protocol\s*:\s*(\S+)")

    @property
    def cipher(self):
        return self.field(r"^\s*Cipher\s*:\s*(\S+)")

    @property
    def alpn(self):
        return self.field(r"^ALPN protocol:\s*(.*)$")

    @property
    def leaf(self):
        assert self.certs, "s_client saw no certificate:\n" + self.text[-3000:]
        return cert_info(self.certs[0])

    @property
    def leaf_fingerprint(self):
        return cert_fingerprint(self.certs[0])

    def __repr__(self):
        return "<s_client rc=%d protocol=%s cipher=%s>\n%s" % (self.rc, self.protocol, self.cipher,
                                                               self.text[-3000:])


def s_client(port, servername=None, args=(), input=b"", timeout=15):
    """openssl s_client to 127.0.0.1:port; servername None: no SNI at all (-noservername)."""
    argv = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-showcerts"]
    argv += ["-servername", servername] if servername else ["-noservername"]
    argv += [str(a) for a in args]
    rc, out, err = _run(argv, timeout=timeout, input=input)
    return SClient(rc, out, err)


class CurlResult:
    def __init__(self, rc, out, err, headers_text, body):
        self.rc, self.out, self.err, self.body = rc, out, err, body
        self.status = None
        self.headers = []
        # with redirects not followed there is one head; keep the last one
        for block in re.split(r"\r?\n\r?\n", headers_text.strip()):
            lines = block.splitlines()
            if not lines:
                continue
            m = re.match(r"HTTP/\S+ (\d{3})", lines[0])
            if m:
                self.status = int(m.group(1))
                self.headers = [tuple(x.strip() for x in h.split(":", 1)) for h in lines[1:]
                                if ":" in h]

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    @property
    def json(self):
        return json.loads(self.body)

    def req_header(self, name):
        vals = [v for k, v in self.json["headers"] if k.lower() == name.lower()]
        return vals[0] if vals else None

    def __repr__(self):
        return "<curl rc=%d status=%s err=%r body=%r>" % (self.rc, self.status, self.err[-500:],
                                                          self.body[:300])


def curl(url_host, port, path="/", scheme="https", cacert=None, extra=(), timeout=15):
    """curl with --resolve url_host:port:127.0.0.1 (so SNI and verification use the name),
    certificate verification on when scheme is https (cacert: the only CA trusted)."""
    with tempfile.TemporaryDirectory() as d:
        hdr, body = os.path.join(d, "h"), os.path.join(d, "b")
        argv = [CURL, "-sS", "--max-time", "10", "--resolve", "%s:%d:127.0.0.1" % (url_host, port),
                "-D", hdr, "-o", body]
        if cacert:
            argv += ["--cacert", cacert]
        argv += [str(a) for a in extra]
        argv.append("%s://%s:%d%s" % (scheme, url_host, port, path))
        rc, out, err = _run(argv, timeout=timeout)
        h = open(hdr, errors="replace").read() if os.path.exists(hdr) else ""
        b = open(body, "rb").read() if os.path.exists(body) else b""
    return CurlResult(rc, out, err, h, b)


class TlsConn(RawConn):
    """A TLS client connection (Python's ssl, i.e. OpenSSL) kept open across requests; verifies
    the server certificate against cafile for server_hostname when cafile is given."""

    def __init__(self, port, server_hostname, cafile=None, timeout=5.0):
        ctx = ssl.create_default_context(cafile=cafile) if cafile else \
            ssl._create_unverified_context()  # noqa: SLF001
        ctx.set_alpn_protocols(["http/1.1"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
        self.buf = b""

    def peer_fingerprint(self):
        return hashlib.sha256(self.sock.getpeercert(binary_form=True)).hexdigest()
