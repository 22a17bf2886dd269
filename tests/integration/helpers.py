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
