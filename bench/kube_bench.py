#!/usr/bin/env python3
"""bench/kube_bench.py - gatehouse-agent's cluster source at scale, against the fake API server
(`make bench`, after dns_bench.py).

One run measures:
  1. event -> serving: the fake API server (tests/integration/fake_apiserver.py, a subprocess,
     plain HTTP) holds --ingresses Ingresses (default 1,000), each with its Service and its
     EndpointSlice pointing at a local nginx backend; gatehouse-agent --kubeconfig (Ingress status
     publishing off) renders them for gatehouse-proxy. Then --events times (default 200), one
     after the other: an API write through the server's HTTP interface that adds a host nobody
     routed before (alternately a JSON patch adding a rule to an existing Ingress, and a POST
     creating a new Ingress; the new host routes to the Service "live", the local backend), and
     keep-alive GETs to the proxy with that Host, one every --probe-interval-ms (default 1 ms),
     until the backend answers 200 instead of the proxy's 404. Latency = first 200 - the moment
     the API write returned (and, also recorded, - the moment before it was sent). Asking with no
     pause (--probe-interval-ms 0) was tried: ~3,000 requests per event keep a core busy (the
     prober and the proxy's worker), which on a 2-core machine slows the agent and the proxy's
     reload and roughly doubled the latency measured; 1 ms costs ~50 requests per event. The loop
     notes when routes.yaml was replaced (stat), and every log line of the agent and the proxy is
     timestamped on arrival, so each event splits into: API write, API write returned -> file
     replaced (watch event, the agent's drain, render and write), file replaced -> served (the
     proxy's inotify quiet period, load and swap), plus the proxy's own "routes loaded ... in X ms".
     The same is repeated --https-events times (default 50) with the API server on HTTPS.
  2. memory at scale: --big Ingresses (default 10,000), as many Services and EndpointSlices of
     --big-endpoints endpoints each (default 5: 50,000 endpoints); the time from the agent's start
     until routes.yaml is written with every host, the agent's VmRSS and VmHWM then, the proxy's
     after loading that file, and --big-events events at that scale (default 20).

--perf records the agent and the proxy (perf record, DWARF call graphs) during the HTTP events
and summarizes where their time went; the release binaries lack .eh_frame_hdr, so for call
graphs relink a copy with -Wl,--eh-frame-hdr and point GATEHOUSE_BIN at it.

The fake API server is Python: its share (the API write's round trip and the watch event's
delivery) is included in the latencies, and a real API server's differs. Nothing is pinned to a
core; the machine's load average is recorded. Every process is started from an argument list in
its own session and stopped by its process group at the end (also on errors and Ctrl-C).
Results: build/bench/kube-results.json and build/bench/kube-results.md; logs in build/bench/kube/.
"""
import argparse
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from run import (BODY, BenchError, free_port, nginx_backend_conf, tail, vm_status,  # noqa: E402
                 wait_listening)

OUT = os.path.join(ROOT, "build", "bench")
WORK = os.path.join(OUT, "kube")
BIN = os.environ.get("GATEHOUSE_BIN") or os.path.join(ROOT, "build", "bin")
AGENT_BIN = os.path.join(BIN, "gatehouse-agent")
PROXY_BIN = os.path.join(BIN, "gatehouse-proxy")
FAKE_API = os.path.join(ROOT, "tests", "integration", "fake_apiserver.py")
NS = "bench"
DOMAIN = "bench.example"
LIVE = "live"                 # the Service every event's new host routes to (the local backend)
TARGET_P99_MS = 100.0
SERVE_TIMEOUT_S = 10.0

WRITTEN = re.compile(r"routes written: (\d+) hosts")
LISTED = re.compile(r"cluster objects listed")
LOADED = re.compile(r"routes loaded: (\d+) hosts.*\bin (\d+) ms")


# ---- processes ------------------------------------------------------------------------------

class Proc:
    """A child in its own session; every output line is written to WORK/<name>.log and kept with
    its arrival time (time.monotonic()), so log lines without timestamps can still be placed."""

    def __init__(self, name, argv, env=None):
        self.name = name
        self.log = os.path.join(WORK, name + ".log")
        self.lines = []                     # (monotonic, text)
        self.cond = threading.Condition()
        self.started = time.monotonic()
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.pid = self.popen.pid
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        with open(self.log, "w") as log:
            for raw in self.popen.stdout:
                now = time.monotonic()
                text = raw.decode(errors="replace").rstrip("\n")
                log.write(text + "\n")
                log.flush()
                with self.cond:
                    self.lines.append((now, text))
                    self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def alive(self):
        return self.popen.poll() is None

    def wait_line(self, regex, after=0.0, timeout=60.0):
        """(time, match) of the first line since `after` that matches; fails if the process ends."""
        deadline = time.monotonic() + timeout
        with self.cond:
            seen = 0
            while True:
                for t, text in self.lines[seen:]:
                    m = regex.search(text)
                    if m and t >= after:
                        return t, m
                seen = len(self.lines)
                if not self.alive() and not self.reader.is_alive():
                    raise self.fail(f"exited with status {self.popen.returncode}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.fail(f"no line matching /{regex.pattern}/ within {timeout:.0f} s")
                self.cond.wait(min(left, 0.2))

    def lines_between(self, regex, start, end):
        with self.cond:
            return [(t, regex.search(x)) for t, x in self.lines if start <= t <= end and regex.search(x)]

    def cpu_s(self):
        """User + system CPU seconds so far (/proc/PID/stat)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        """SIGTERM to its process group (nginx's workers too); SIGKILL after 5 s."""
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass
        self.popen.wait()
        self.reader.join(2)

    def fail(self, why):
        return BenchError(f"{self.name}: {why}; last lines of {self.log}:\n{tail(self.log)}")


class Procs:
    """Everything started, stopped newest first."""

    def __init__(self):
        self.all = []

    def start(self, name, argv, env=None):
        p = Proc(name, argv, env)
        self.all.append(p)
        return p

    def stop(self, p):
        p.stop()
        if p in self.all:
            self.all.remove(p)

    def stop_all(self):
        while self.all:
            self.all.pop().stop()


# ---- objects --------------------------------------------------------------------------------

def ingress(name, host, service):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"ingressClassName": "gatehouse", "rules": [rule(host, service)]}}


def rule(host, service):
    return {"host": host, "http": {"paths": [
        {"path": "/", "pathType": "Prefix",
         "backend": {"service": {"name": service, "port": {"number": 80}}}}]}}


def service_and_slice(name, addresses, port):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
           "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}]}}
    eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": name + "-abcde", "namespace": NS,
                        "labels": {"kubernetes.io/service-name": name}},
           "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
           "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses]}
    return [svc, eps]


def generate(path, count, backend_port, endpoints):
    """count Ingresses app-NNNNN (host app-NNNNN.bench.example), each with its Service and
    EndpointSlice, plus the IngressClass and the "live" Service: one JSON List, for speed.
    endpoints 0: every slice points at the local backend; else that many 10.x addresses each."""
    items = [{"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
              "metadata": {"name": "gatehouse",
                           "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
              "spec": {"controller": "gatehouse.dev/ingress-controller"}}]
    items += service_and_slice(LIVE, ["127.0.0.1"], backend_port)
    for i in range(count):
        name = f"app-{i:05d}"
        if endpoints:
            addrs = [f"10.{(i * endpoints + j) >> 16 & 255}.{(i * endpoints + j) >> 8 & 255}."
                     f"{(i * endpoints + j) & 255}" for j in range(endpoints)]
            items += service_and_slice(name, addrs, 8080)
        else:
            items += service_and_slice(name, ["127.0.0.1"], backend_port)
        items.append(ingress(name, f"{name}.{DOMAIN}", name))
    with open(path, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f, separators=(",", ":"))
    return len(items)


# ---- the cluster: fake API server, agent, proxy ---------------------------------------------

class Cluster:
    """The fake API server loaded with one object file, the agent watching it, the proxy serving
    what the agent writes. Started in that order; the caller stops them through `procs`."""

    def __init__(self, procs, label, objects, tls):
        self.procs, self.label, self.tls = procs, label, tls
        self.dir = os.path.join(WORK, label)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "state"))
        self.state = os.path.join(self.dir, "state")
        self.routes = os.path.join(self.state, "routes.yaml")
        self.token = secrets.token_hex(16)
        self.api_port = free_port()
        argv = [sys.executable, FAKE_API, "--port", str(self.api_port), "--token", self.token,
                "--load", objects]
        self.ctx = None
        if tls:
            ca, crt, key = test_pki(self.dir)
            argv += ["--cert", crt, "--key", key]
            self.ctx = ssl.create_default_context(cafile=ca)
            self.ca = ca
        else:
            argv += ["--http"]
        t0 = time.monotonic()
        self.api = procs.start(f"{label}-fake-apiserver", argv)
        self.api.wait_line(re.compile(r"listening on"), timeout=300)
        self.api_load_s = time.monotonic() - t0
        self.conn = None

    def kubeconfig(self):
        scheme = "https" if self.tls else "http"
        cluster = {"server": f"{scheme}://localhost:{self.api_port}"}
        if self.tls:
            cluster["certificate-authority"] = self.ca
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": "bench",
               "clusters": [{"name": "bench", "cluster": cluster}],
               "users": [{"name": "bench", "user": {"token": self.token}}],
               "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}]}
        path = os.path.join(self.dir, "kubeconfig")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(doc, f)
        config = os.path.join(self.dir, "config.yaml")
        with open(config, "w") as f:
            f.write("node: {name: edge-1, address: 192.0.2.10}\ningress: {publishStatus: false}\n")
        return path, config

    def start_agent(self, hosts):
        """Starts the agent; returns seconds from its start until routes.yaml has `hosts` hosts."""
        kc, config = self.kubeconfig()
        self.agent = self.procs.start(f"{self.label}-agent", [
            AGENT_BIN, "--kubeconfig", kc, "--state-dir", self.state, "--config", config])
        t, m = self.agent.wait_line(WRITTEN, timeout=300)
        if int(m.group(1)) != hosts:
            raise self.agent.fail(f"first routes file has {m.group(1)} hosts, expected {hosts}")
        # the split of the first sync: listing (mostly the Python API server) and rendering
        found = self.agent.lines_between(LISTED, self.agent.started, t)
        self.listed_s = found[0][0] - self.agent.started if found else None
        self.first_render_s = t - found[0][0] if found else None
        self.agent_cpu_at_sync_s = self.agent.cpu_s()
        return t - self.agent.started

    def start_proxy(self, hosts):
        """Starts the proxy on the agent's routes; returns its own load time (ms)."""
        self.port, self.admin = free_port(), free_port()
        self.proxy = self.procs.start(f"{self.label}-proxy", [
            PROXY_BIN, "--routes", self.routes, "--http", f"127.0.0.1:{self.port}",
            "--admin", f"127.0.0.1:{self.admin}", "--workers", "1", "--no-access-log"])
        _, m = self.proxy.wait_line(LOADED, timeout=120)
        if int(m.group(1)) != hosts:
            raise self.proxy.fail(f"loaded {m.group(1)} hosts, expected {hosts}")
        wait_listening(self.proxy, self.port)
        return int(m.group(2))

    # -- API writes through the server's HTTP interface

    def api_request(self, method, path, body, ctype):
        data = json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": ctype,
                   "Accept": "application/json"}
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = (http.client.HTTPSConnection("localhost", self.api_port, context=self.ctx,
                                                         timeout=10) if self.tls else
                             http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=10))
            try:
                self.conn.request(method, path, data, headers)
                r = self.conn.getresponse()
                text = r.read()
                break
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        if r.status not in (200, 201):
            raise BenchError(f"fake API server: {method} {path} answered {r.status}: {text[:300]!r}")


def test_pki(folder):
    """(CA, server certificate, key) for localhost, made by the fake API server's own helper."""
    sys.path.insert(0, os.path.dirname(FAKE_API))
    from fake_apiserver import TestPki
    pki = TestPki(os.path.join(folder, "pki"))
    return pki.ca_cert, pki.server_cert, pki.server_key


# ---- probing the proxy ----------------------------------------------------------------------

class Prober:
    """Keep-alive HTTP/1.1 GETs over one raw socket (reconnecting when the proxy closes it):
    the cheapest way to ask again and again from Python."""

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.buf = b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock, self.buf = None, b""

    def get(self, host, path="/"):
        req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kube-bench\r\n\r\n".encode()
        for attempt in (0, 1):
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.sock.sendall(req)
                status, body, close = self._response()
            except (OSError, EOFError):
                self.close()
                if attempt:
                    raise
                continue
            if close:
                self.close()
            return status, body

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def _response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip().lower()
        if hdrs.get("transfer-encoding") == "chunked":
            body = self._chunked()
        else:
            n = int(hdrs.get("content-length", "0"))
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        return status, body, hdrs.get("connection") == "close"

    def _chunked(self):
        body = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            size_line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(self.buf) < size + 2:
                self._fill()
            body += self.buf[:size]
            self.buf = self.buf[size + 2:]
            if size == 0:
                return body


def file_id(path):
    try:
        st = os.stat(path)
        return (st.st_ino, st.st_mtime_ns)
    except OSError:
        return None


# ---- the event loop -------------------------------------------------------------------------

def one_event(cl, prober, k, kind, interval_s):
    """One API write adding host ev-K; returns the event's timings (seconds, monotonic)."""
    host = f"ev-{cl.label}-{k:04d}.{DOMAIN}"
    status, _ = prober.get(host)
    if status != 404:
        raise BenchError(f"{host} answered {status} before the API write (expected 404)")
    before_file = file_id(cl.routes)
    if kind == "patch":
        target = f"app-{k % cl.ingresses:05d}"
        path = f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/{target}"
        body, ctype, method = [{"op": "add", "path": "/spec/rules/-", "value": rule(host, LIVE)}], \
            "application/json-patch+json", "PATCH"
    else:
        path = f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses"
        body, ctype, method = ingress(f"ev-{k:04d}", host, LIVE), "application/json", "POST"
    t0 = time.monotonic()
    cl.api_request(method, path, body, ctype)
    t1 = time.monotonic()
    replaced = None
    probes = 0
    while True:
        if replaced is None and file_id(cl.routes) != before_file:
            replaced = time.monotonic()
        status, got = prober.get(host)
        probes += 1
        now = time.monotonic()
        if status == 200:
            if got != BODY.encode():
                raise BenchError(f"{host}: 200 but not the backend's body: {got[:80]!r}")
            if replaced is None:
                replaced = now
            return {"kind": kind, "before": t0, "returned": t1, "replaced": replaced, "served": now,
                    "probes": probes}
        if status != 404:
            raise BenchError(f"{host} answered {status} while waiting for it (expected 404, then 200)")
        if now - t1 > SERVE_TIMEOUT_S:
            raise BenchError(f"{host} still 404 {SERVE_TIMEOUT_S:.0f} s after the API write "
                             f"({kind}); agent log:\n{tail(cl.agent.log)}\nproxy log:\n{tail(cl.proxy.log)}")
        if not (cl.agent.alive() and cl.proxy.alive()):
            raise (cl.agent if not cl.agent.alive() else cl.proxy).fail("exited during the events")
        if interval_s:
            time.sleep(interval_s)


def pct(values, q):
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def dist(values):
    if not values:
        return None
    return {"p50": round(pct(values, 50), 2), "p90": round(pct(values, 90), 2),
            "p99": round(pct(values, 99), 2), "max": round(max(values), 2),
            "mean": round(statistics.fmean(values), 2), "n": len(values)}


def event_loop(cl, count, gap_s, interval_s):
    """count events one after the other (after one not counted: it warms the connections and
    lets anything the agent still had to do after its start pass); latency figures in ms."""
    prober = Prober(cl.port)
    one_event(cl, prober, count, "create", interval_s)
    time.sleep(0.2)
    cpu0 = {"agent": cl.agent.cpu_s(), "proxy": cl.proxy.cpu_s(), "api": cl.api.cpu_s()}
    events = []
    try:
        for k in range(count):
            events.append(one_event(cl, prober, k, "patch" if k % 2 == 0 else "create", interval_s))
            time.sleep(gap_s)
    finally:
        prober.close()
    cpu = {n: p.cpu_s() - cpu0[n] for n, p in (("agent", cl.agent), ("proxy", cl.proxy), ("api", cl.api))}
    time.sleep(0.1)     # the last log lines
    rows = []
    for i, e in enumerate(events):
        end = events[i + 1]["before"] if i + 1 < len(events) else e["served"] + 0.1
        written = cl.agent.lines_between(WRITTEN, e["before"], e["served"])
        loaded = cl.proxy.lines_between(LOADED, e["returned"], end)
        ms = lambda a, b: (b - a) * 1e3   # noqa: E731
        rows.append({
            "kind": e["kind"],
            "latency_ms": ms(e["returned"], e["served"]),
            "latency_from_before_write_ms": ms(e["before"], e["served"]),
            "api_write_ms": ms(e["before"], e["returned"]),
            "agent_ms": ms(e["returned"], e["replaced"]),           # write returned -> file replaced
            "agent_log_ms": ms(e["returned"], written[0][0]) if written else None,
            "proxy_ms": ms(e["replaced"], e["served"]),             # file replaced -> served
            "proxy_logged_load_ms": int(loaded[0][1].group(2)) if loaded else None,
            "proxy_loads": len(loaded), "agent_renders": len(written), "probes": e["probes"]})
    out = {"events": count, "gap_ms": gap_s * 1e3, "probe_interval_ms": interval_s * 1e3}
    for key in ("latency_ms", "latency_from_before_write_ms", "api_write_ms", "agent_ms",
                "agent_log_ms", "proxy_ms", "proxy_logged_load_ms"):
        out[key] = dist([r[key] for r in rows if r[key] is not None])
    for kind in ("patch", "create"):
        out[f"latency_ms_{kind}"] = dist([r["latency_ms"] for r in rows if r["kind"] == kind])
    out["cpu_ms_per_event"] = {n: round(v * 1e3 / max(1, count), 2) for n, v in cpu.items()}
    out["extra_renders"] = sum(max(0, r["agent_renders"] - 1) for r in rows)
    out["extra_loads"] = sum(max(0, r["proxy_loads"] - 1) for r in rows)
    out["probes_median"] = statistics.median(r["probes"] for r in rows)
    out["rows"] = [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    return out


# ---- profiles (--perf) ----------------------------------------------------------------------

def start_perf(procs, label, targets):
    """perf record on each target process until SIGINT; DWARF call graphs, since the release
    binaries keep no frame pointers."""
    if not shutil.which("perf"):
        raise BenchError("--perf: perf missing")
    for t in targets:
        if not has_eh_frame_hdr(t.popen.args[0]):
            t.perf_note = (f"{t.popen.args[0]} has no .eh_frame_hdr: perf cannot unwind its stacks, so "
                           "only self times mean anything (relink with -Wl,--eh-frame-hdr and point "
                           "GATEHOUSE_BIN at the copy for call graphs)")
    out = []
    for t in targets:
        data = os.path.join(WORK, f"perf-{t.name}.data")
        p = procs.start(f"perf-{t.name}", ["perf", "record", "-q", "-F", "499", "--call-graph", "dwarf,16384",
                                           "-o", data,
                                           "-p", str(t.pid)])
        p.target, p.data = t.name, data
        out.append(p)
    time.sleep(0.5)
    for p in out:
        if not p.alive():
            raise p.fail("perf record did not start")
    return out


def perf_summary(data, top=25):
    """The top symbols by self time, and the report files (with call graphs) beside the data."""
    out = {"data": os.path.relpath(data, ROOT)}
    for mode, flag in (("self", "--no-children"), ("children", "--children")):
        r = subprocess.run(["perf", "report", "--stdio", flag, "-g", "none", "--percent-limit", "0.5",
                            "-i", data], capture_output=True, text=True, timeout=120)
        path = data[:-5] + f"-{mode}.txt"
        with open(path, "w") as f:
            f.write(r.stdout + r.stderr)
        rows = []
        for line in r.stdout.splitlines():
            m = re.match(r"\s+([\d.]+)%\s+(?:([\d.]+)%\s+)?(\S+)\s+(\S+)\s+\[.\]\s+(.*)", line)
            if m:
                rows.append([float(m.group(1)), m.group(5).strip()])
        out[mode] = rows[:top]
        out[mode + "_report"] = os.path.relpath(path, ROOT)
    r = subprocess.run(["perf", "report", "--stdio", "--no-children", "-G", "--percent-limit", "3",
                        "-i", data], capture_output=True, text=True, timeout=120)
    with open(data[:-5] + "-callgraph.txt", "w") as f:
        f.write(r.stdout + r.stderr)
    out["inclusive"] = perf_inclusive(data)
    return out


# Where an event's time goes, as functions whose samples include their callees.
PERF_FUNCS = ["render_once", "translate_routes", "index_build", "add_ingress", "routes_publish",
              "yaml_emit", "kube_informers_snapshot", "kube_client_poll",
              "route_table_load_file", "yaml_load_file_single", "table_from_json", "worker_main"]


def perf_inclusive(data):
    """{function: % of all samples with it on the stack} for PERF_FUNCS, and the share of samples
    whose stack reaches main or a thread start (the rest were cut short: libc without unwind
    information, or the kernel)."""
    r = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,ip,sym"], capture_output=True,
                       text=True, timeout=300)
    stacks, cur, tids = [], None, {}
    for line in r.stdout.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            cur = set()
            stacks.append(cur)
            head = line.split()
            tid = head[1] if len(head) > 1 else "?"
            tids[tid] = tids.get(tid, 0) + 1
        elif cur is not None:
            parts = line.split(None, 1)
            cur.add((parts[1] if len(parts) > 1 else "?").split("+0x")[0].replace(" (inlined)", ""))
    if not stacks:
        return {}
    out = {f: round(100.0 * sum(f in st for st in stacks) / len(stacks), 1) for f in PERF_FUNCS}
    out = {f: v for f, v in out.items() if v}
    out["(whole stacks)"] = round(100.0 * sum(bool(st & {"main", "start", "start_thread"})
                                              for st in stacks) / len(stacks), 1)
    out["(samples)"] = len(stacks)
    out["(threads %)"] = sorted((round(100.0 * n / len(stacks), 1) for n in tids.values()), reverse=True)
    return out


def has_eh_frame_hdr(path):
    r = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True)
    return "GNU_EH_FRAME" in r.stdout


# ---- the phases -----------------------------------------------------------------------------

def latency_phase(procs, label, args, events, backend_port, tls):
    ingresses = args.ingresses
    objects = os.path.join(WORK, f"objects-{ingresses}-local.json")
    if not os.path.exists(objects):
        generate(objects, ingresses, backend_port, 0)
    cl = Cluster(procs, label, objects, tls)
    cl.ingresses = ingresses
    try:
        sync_s = cl.start_agent(ingresses)
        cl.start_proxy(ingresses)
        status, body = Prober(cl.port).get(f"app-00000.{DOMAIN}")
        if status != 200 or body != BODY.encode():
            raise cl.proxy.fail(f"app-00000.{DOMAIN} answered {status} {body[:80]!r}, not the backend")
        print(f"kube-bench: {label}: {ingresses} Ingresses synced in {sync_s * 1e3:.0f} ms; "
              f"{events} events", flush=True)
        perf = start_perf(procs, label, (cl.agent, cl.proxy)) if args.perf and label == "http" else []
        try:
            res = event_loop(cl, events, args.gap_ms / 1e3, args.probe_interval_ms / 1e3)
        finally:
            for p in perf:
                p.popen.send_signal(signal.SIGINT)
                p.popen.wait(30)
                procs.stop(p)
        if perf:
            res["perf"] = {p.target: perf_summary(p.data) for p in perf}
            for t in (cl.agent, cl.proxy):
                if getattr(t, "perf_note", None):
                    res["perf"][t.name]["note"] = t.perf_note
        res.update({"ingresses": ingresses, "api": "https" if tls else "http",
                    "initial_sync_ms": round(sync_s * 1e3, 1),
                    "agent_rss_kb": vm_status(cl.agent.pid, "VmRSS"),
                    "proxy_rss_kb": vm_status(cl.proxy.pid, "VmRSS")})
        line = res["latency_ms"]
        print(f"kube-bench: {label}: event -> serving p50 {line['p50']:.1f} p90 {line['p90']:.1f} "
              f"p99 {line['p99']:.1f} max {line['max']:.1f} ms", flush=True)
        return res
    finally:
        for p in (getattr(cl, "proxy", None), getattr(cl, "agent", None), cl.api):
            if p:
                procs.stop(p)


def memory_phase(procs, args, backend_port):
    big, endpoints, events = args.big, args.big_endpoints, args.big_events
    objects = os.path.join(WORK, f"objects-{big}-{endpoints}.json")
    t0 = time.monotonic()
    n = generate(objects, big, backend_port, endpoints)
    gen_s = time.monotonic() - t0
    cl = Cluster(procs, "big", objects, False)
    cl.ingresses = big
    try:
        print(f"kube-bench: big: fake API server loaded {n} objects in {cl.api_load_s:.1f} s", flush=True)
        sync_s = cl.start_agent(big)
        time.sleep(0.5)     # anything the agent does right after its first write
        agent_rss, agent_hwm = vm_status(cl.agent.pid, "VmRSS"), vm_status(cl.agent.pid, "VmHWM")
        load_ms = cl.start_proxy(big)
        proxy_rss, proxy_hwm = vm_status(cl.proxy.pid, "VmRSS"), vm_status(cl.proxy.pid, "VmHWM")
        res = {"ingresses": big, "services": big, "endpointslices": big, "endpoints": big * endpoints,
               "objects": n, "objects_file_bytes": os.path.getsize(objects),
               "generate_s": round(gen_s, 2), "fake_api_load_s": round(cl.api_load_s, 1),
               "agent_start_to_routes_written_ms": round(sync_s * 1e3, 1),
               "agent_start_to_listed_ms": round(cl.listed_s * 1e3, 1) if cl.listed_s else None,
               "agent_first_render_ms": round(cl.first_render_s * 1e3, 1) if cl.listed_s else None,
               "agent_cpu_ms_at_first_write": round(cl.agent_cpu_at_sync_s * 1e3),
               "routes_file_bytes": os.path.getsize(cl.routes),
               "agent_rss_kb": agent_rss, "agent_hwm_kb": agent_hwm,
               "proxy_load_ms": load_ms, "proxy_rss_kb": proxy_rss, "proxy_hwm_kb": proxy_hwm}
        print(f"kube-bench: big: agent start -> routes written {sync_s * 1e3:.0f} ms; agent VmRSS "
              f"{agent_rss} kB (HWM {agent_hwm}); proxy VmRSS {proxy_rss} kB (HWM {proxy_hwm})", flush=True)
        if events:
            ev = event_loop(cl, events, args.gap_ms / 1e3, args.probe_interval_ms / 1e3)
            res["events"] = ev
            res["agent_rss_kb_after_events"] = vm_status(cl.agent.pid, "VmRSS")
            res["agent_hwm_kb_after_events"] = vm_status(cl.agent.pid, "VmHWM")
            res["proxy_rss_kb_after_events"] = vm_status(cl.proxy.pid, "VmRSS")
            res["proxy_hwm_kb_after_events"] = vm_status(cl.proxy.pid, "VmHWM")
            line = ev["latency_ms"]
            print(f"kube-bench: big: event -> serving p50 {line['p50']:.1f} p99 {line['p99']:.1f} "
                  f"max {line['max']:.1f} ms", flush=True)
        return res
    finally:
        for p in (getattr(cl, "proxy", None), getattr(cl, "agent", None), cl.api):
            if p:
                procs.stop(p)


# ---- report ---------------------------------------------------------------------------------

def fmt(d, key="p50"):
    return "-" if not d else f"{d[key]:.1f}"


def latency_lines(name, r):
    lines = [f"### {name}: {r['ingresses']} Ingresses, API over {r['api'].upper()}, {r['events']} events", "",
             "| ms | p50 | p90 | p99 | max |", "|---|---:|---:|---:|---:|"]
    labels = [("latency_ms", "**API write returned -> served**"),
              ("latency_from_before_write_ms", "before the API write -> served"),
              ("latency_ms_patch", "  of which: PATCH adding a rule"),
              ("latency_ms_create", "  of which: POST of a new Ingress"),
              ("api_write_ms", "API write round trip"),
              ("agent_ms", "agent: write returned -> routes.yaml replaced"),
              ("agent_log_ms", "agent: write returned -> its \"routes written\" line"),
              ("proxy_ms", "proxy: routes.yaml replaced -> served"),
              ("proxy_logged_load_ms", "proxy: its own \"routes loaded in X ms\"")]
    for key, label in labels:
        d = r.get(key)
        if d:
            lines.append(f"| {label} | {d['p50']:.1f} | {d['p90']:.1f} | {d['p99']:.1f} | {d['max']:.1f} |")
    c = r["cpu_ms_per_event"]
    lines += ["", (f"VmRSS after the events: agent {r['agent_rss_kb']} kB, proxy {r['proxy_rss_kb']} kB. "
                   if "agent_rss_kb" in r else "") + f"CPU per event: agent {c['agent']} ms, proxy {c['proxy']} ms, fake API server {c['api']} ms. "
              f"Initial sync {r['initial_sync_ms']} ms. Extra renders {r['extra_renders']}, extra proxy loads "
              f"{r['extra_loads']}; median {r['probes_median']} probes per event."]
    return lines


def markdown(res):
    s = res["settings"]
    lines = [f"# Gatehouse cluster-source bench ({time.strftime('%Y-%m-%d %H:%M', time.gmtime(res['time']))} UTC)",
             "", "gatehouse-agent --kubeconfig against tests/integration/fake_apiserver.py (Python, a "
             "subprocess), publishStatus off; gatehouse-proxy --workers 1 on the agent's routes.yaml; "
             "backend nginx `return 200`. An event is an API write adding a host (alternately a JSON "
             "PATCH adding a rule to an existing Ingress and a POST of a new Ingress); latency = first "
             "200 through the proxy for that host - the moment the write returned; the proxy is "
             f"asked again every {s['probe_interval_ms']:g} ms (keep-alive GETs; "
             f"{s['gap_ms']:g} ms between events). Nothing pinned; "
             f"load average at start {s['load_average']:.2f}. Target: p99 < {TARGET_P99_MS:.0f} ms.", ""]
    for key, name in (("latency", "Event -> serving"), ("latency_https", "Event -> serving (HTTPS API)")):
        if key in res:
            lines += latency_lines(name, res[key]) + [""]
    if "memory" in res:
        m = res["memory"]
        lines += [f"### Memory: {m['ingresses']} Ingresses, {m['services']} Services, "
                  f"{m['endpointslices']} EndpointSlices ({m['endpoints']} endpoints)", "",
                  "| figure | value |", "|---|---:|",
                  f"| agent start -> routes.yaml written ({m['ingresses']} hosts) | "
                  f"{m['agent_start_to_routes_written_ms']:.0f} ms |",
                  f"| of which: start -> \"cluster objects listed\" (the lists; the API server is Python) | "
                  f"{m['agent_start_to_listed_ms']} ms |",
                  f"| of which: listed -> routes written (the first render) | {m['agent_first_render_ms']} ms |",
                  f"| agent CPU from its start to the first write | {m['agent_cpu_ms_at_first_write']} ms |",
                  f"| agent VmRSS / VmHWM after the first write | {m['agent_rss_kb']} / {m['agent_hwm_kb']} kB |",
                  f"| proxy load of that file (its log) | {m['proxy_load_ms']} ms |",
                  f"| proxy VmRSS / VmHWM after loading | {m['proxy_rss_kb']} / {m['proxy_hwm_kb']} kB |",
                  f"| routes.yaml | {m['routes_file_bytes']} bytes |",
                  f"| fake API server load of {m['objects']} objects | {m['fake_api_load_s']} s |"]
        if "events" in m:
            e = m["events"]
            lines += [f"| agent VmRSS / VmHWM after {e['events']} events | {m['agent_rss_kb_after_events']} / "
                      f"{m['agent_hwm_kb_after_events']} kB |",
                      f"| proxy VmRSS / VmHWM after {e['events']} events | {m['proxy_rss_kb_after_events']} / "
                      f"{m['proxy_hwm_kb_after_events']} kB |", ""]
            lines += latency_lines("Event -> serving at that scale", dict(e, ingresses=m["ingresses"], api="http",
                                                                           initial_sync_ms=m["agent_start_to_routes_written_ms"]))
        lines.append("")
    if "perf" in res.get("latency", {}):
        lines += ["### Profile of the HTTP events (perf record, DWARF call graphs)", ""]
        for name, p in res["latency"]["perf"].items():
            inc = ", ".join(f"{k} {v}%" for k, v in p.get("inclusive", {}).items() if not k.startswith("("))
            top = ", ".join(f"{sym} {v:.1f}%" for v, sym in p["self"][:10])
            lines += [f"- {name}: {p.get('inclusive', {}).get('(samples)', '?')} samples, "
                      f"{p.get('inclusive', {}).get('(whole stacks)', '?')}% with whole stacks, by thread "
                      f"{p.get('inclusive', {}).get('(threads %)', '?')} %. "
                      f"Inclusive: {inc or '-'}. Self: {top}. Reports: {p['self_report']}, "
                      f"{p['children_report']}." + (f" Note: {p['note']}" if p.get("note") else "")]
        lines.append("")
    lines += [f"Versions: {res['versions']}"] + [f"\nNote: {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def check(res, notes):
    for key in ("latency", "latency_https"):
        if key in res:
            p99 = res[key]["latency_ms"]["p99"]
            res[key]["meets_target"] = p99 < TARGET_P99_MS
            if p99 >= TARGET_P99_MS:
                notes.append(f"{key}: p99 {p99:.1f} ms misses the {TARGET_P99_MS:.0f} ms target")


def version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=5)
        return ((r.stdout + r.stderr).strip().splitlines() or ["?"])[0]
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"? ({e})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ingresses", type=int, default=1000, help="Ingresses for the latency test")
    ap.add_argument("--events", type=int, default=200, help="events over the HTTP API (0: skip)")
    ap.add_argument("--https-events", type=int, default=50, help="events over the HTTPS API (0: skip)")
    ap.add_argument("--gap-ms", type=float, default=20.0, help="pause between events")
    ap.add_argument("--probe-interval-ms", type=float, default=1.0,
                    help="pause between two probes of the proxy (0: as fast as possible, which takes a "
                         "core from the agent and the proxy on a 2-core machine)")
    ap.add_argument("--perf", action="store_true",
                    help="perf record -g the agent and the proxy during the HTTP events (reports in build/bench/kube/)")
    ap.add_argument("--big", type=int, default=10000, help="Ingresses for the memory test (0: skip)")
    ap.add_argument("--big-endpoints", type=int, default=5, help="endpoints per EndpointSlice there")
    ap.add_argument("--big-events", type=int, default=20, help="events at that scale")
    args = ap.parse_args()
    for path in (AGENT_BIN, PROXY_BIN):
        if not os.access(path, os.X_OK):
            raise BenchError(f"{path} missing (run make first)")
    if not shutil.which("nginx"):
        raise BenchError("nginx missing (the backend; run tools/install-deps bench as root)")
    os.makedirs(WORK, exist_ok=True)
    for stale in os.listdir(WORK):
        if stale.startswith("objects-"):
            os.remove(os.path.join(WORK, stale))
    sys.setswitchinterval(0.0005)   # log reader threads get the GIL soon after a line arrives
    notes = []
    res = {"time": time.time(), "notes": notes,
           "settings": {"ingresses": args.ingresses, "events": args.events, "https_events": args.https_events,
                        "gap_ms": args.gap_ms, "probe_interval_ms": args.probe_interval_ms, "big": args.big, "big_endpoints": args.big_endpoints,
                        "big_events": args.big_events, "load_average": os.getloadavg()[0],
                        "cpus": os.cpu_count()},
           "versions": f"{version([AGENT_BIN, '--version'])}; {version([PROXY_BIN, '--version'])}; "
                       f"python {sys.version.split()[0]}"}
    if res["settings"]["load_average"] > 0.5:
        notes.append(f"the machine was not idle at the start (load average "
                     f"{res['settings']['load_average']:.2f}): the figures are noisier than usual")
    procs = Procs()
    try:
        backend_port = free_port()
        backend = procs.start("backend", ["nginx", "-p", os.path.join(OUT, "backend"),
                                          "-e", os.path.join(OUT, "backend", "error.log"),
                                          "-c", nginx_backend_conf(backend_port)])
        wait_listening(backend, backend_port)
        if args.events:
            res["latency"] = latency_phase(procs, "http", args, args.events, backend_port, False)
        if args.https_events:
            res["latency_https"] = latency_phase(procs, "https", args, args.https_events, backend_port, True)
        if args.big:
            res["memory"] = memory_phase(procs, args, backend_port)
    finally:
        procs.stop_all()
    check(res, notes)
    with open(os.path.join(OUT, "kube-results.json"), "w") as f:
        json.dump(res, f, indent=2)
    md = markdown(res)
    with open(os.path.join(OUT, "kube-results.md"), "w") as f:
        f.write(md)
    print("\n" + md)
    print(f"kube-bench: results in {os.path.relpath(OUT, ROOT)}/kube-results.json and kube-results.md")


def interrupted(signum, frame):
    """SIGTERM ends the run like Ctrl-C: through the finally that stops every child."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, interrupted)
    try:
        main()
    except BenchError as e:
        print(f"kube-bench: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("kube-bench: interrupted; everything it started is stopped", file=sys.stderr)
        sys.exit(130)
