#!/usr/bin/env python3
"""bench/run.py - gatehouse-proxy beside nginx, HAProxy and h2o, measured the same way (`make bench`).

One run measures, on loopback:
  1. throughput and latency: wrk -t1 -c64 --latency through each proxy to one shared backend,
     several rounds (the proxies take turns within a round, so slow drift of the machine hits
     all of them alike); the table shows medians and ratios against the best peer;
  2. gatehouse-proxy's memory: VmRSS idle, the peak sampled under load, and VmHWM;
  3. route reloads at scale: N generated Ingresses -> gatehouse-agent --once -> the proxy's reload
     of the resulting routes file (its own "routes loaded ... in X ms" log line, and the wall time
     from the file's replacement until /metrics counts the reload).

CPU placement (the machine has 2 cores): every proxy runs one worker pinned to core 0, alone;
the backend and wrk share core 1. The proxy under test therefore has a core to itself, and the
load side is identical for all of them. The backend is nginx answering a 13-byte body from its
config (`return 200`): no file I/O; measured directly with wrk beside it on one core it was the
fastest and steadiest choice here (~72k req/s; h2o serving the same body as a static file ~68k).
Each run records how busy both cores were, so a reader can see which side limited it: core 1
carries wrk and the backend for every proxy, which caps all of them alike (the "backend alone"
line is that ceiling). Upstream keep-alive is enabled in every proxy (nginx needs it configured),
so each measures proxying, not TCP connection setup.

Everything is started and stopped here, on free ports, with configs generated under build/bench/;
processes are started from argument lists (no shell). Results: build/bench/results.json and
build/bench/results.md.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "build", "bench")
BIN = os.environ.get("GATEHOUSE_BIN") or os.path.join(ROOT, "build", "bin")   # override: testing
PROXY_BIN = os.path.join(BIN, "gatehouse-proxy")
AGENT_BIN = os.path.join(BIN, "gatehouse-agent")
BODY = "hello, bench\n"
PROXY_CPU = "0"
LOAD_CPU = "1"
PEERS = ("nginx", "haproxy", "h2o")


class BenchError(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class Process:
    """A child pinned to cpu, its stdout+stderr in OUT/<name>.log; stop() ends it by its pid."""

    def __init__(self, name, argv, cpu):
        self.name = name
        self.log = os.path.join(OUT, name + ".log")
        with open(self.log, "wb") as log:
            self.popen = subprocess.Popen(["taskset", "-c", cpu] + argv, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def stop(self):
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)   # its own session: nginx's worker too
                self.popen.wait()

    def fail(self, why):
        return BenchError(f"{self.name}: {why}; last lines of {self.log}:\n{tail(self.log)}")


def wait_listening(proc, port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise proc.fail(f"exited with status {proc.popen.returncode} during startup")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise proc.fail(f"not listening on 127.0.0.1:{port} after {timeout:.0f} s")


def http_get(port, path="/", host="bench.example", timeout=2.0):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode(errors="replace")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


# ---- configurations -------------------------------------------------------------------------

NGINX_COMMON = """daemon off;
worker_processes 1;
pid @DIR@/nginx.pid;
error_log @DIR@/error.log warn;
events { worker_connections 4096; }
"""

NGINX_TEMP_PATHS = "".join(
    f"    {d}_temp_path @DIR@/{d};\n"
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def nginx_backend_conf(port):
    d = os.path.join(OUT, "backend")
    os.makedirs(d, exist_ok=True)
    text = NGINX_COMMON + "http {\n" + NGINX_TEMP_PATHS + f"""    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        default_type text/plain;
        location / {{ return 200 "{BODY.strip()}\\n"; }}
    }}
}}
"""
    return write(os.path.join(d, "nginx.conf"), text.replace("@DIR@", d))


def nginx_proxy_conf(port, backend_port):
    d = os.path.join(OUT, "nginx")
    os.makedirs(d, exist_ok=True)
    text = NGINX_COMMON + "http {\n" + NGINX_TEMP_PATHS + f"""    access_log off;
    keepalive_requests 1000000;
    upstream backend {{ server 127.0.0.1:{backend_port}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
    return write(os.path.join(d, "nginx.conf"), text.replace("@DIR@", d))


def haproxy_conf(port, backend_port):
    return write(os.path.join(OUT, "haproxy.cfg"), f"""global
    nbthread 1
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive

frontend bench
    bind 127.0.0.1:{port}
    default_backend backend

backend backend
    http-reuse always
    server b1 127.0.0.1:{backend_port}
""")


def h2o_conf(port, backend_port):
    return write(os.path.join(OUT, "h2o.conf"), f"""listen:
  host: 127.0.0.1
  port: {port}
num-threads: 1
error-log: {OUT}/h2o-error.log
hosts:
  default:
    paths:
      /:
        proxy.reverse.url: http://127.0.0.1:{backend_port}/
""")


def gatehouse_routes(path, backend_port):
    return write(path, f"""version: 1
generation: 1
backends:
  - name: bench/backend:80
    endpoints: ["127.0.0.1:{backend_port}"]
hosts:
  - host: "*"
    paths:
      - {{path: /, type: Prefix, backend: bench/backend:80, ingress: bench/backend}}
""")


def start_proxy(name, backend_port):
    port = free_port()
    if name == "nginx":
        argv = ["nginx", "-p", os.path.join(OUT, "nginx"), "-e", os.path.join(OUT, "nginx", "error.log"),
                "-c", nginx_proxy_conf(port, backend_port)]
        proc = Process(name, argv, PROXY_CPU)
    elif name == "haproxy":
        proc = Process(name, ["haproxy", "-db", "-f", haproxy_conf(port, backend_port)], PROXY_CPU)
    elif name == "h2o":
        proc = Process(name, ["h2o", "-c", h2o_conf(port, backend_port)], PROXY_CPU)
    elif name == "gatehouse":
        routes = gatehouse_routes(os.path.join(OUT, "gatehouse-routes.yaml"), backend_port)
        admin = free_port()
        proc = Process(name, [PROXY_BIN, "--routes", routes, "--http", f"127.0.0.1:{port}",
                              "--admin", f"127.0.0.1:{admin}", "--workers", "1", "--no-access-log"],
                       PROXY_CPU)
        proc.admin = admin
    else:
        raise BenchError(f"unknown proxy {name}")
    proc.port = port
    wait_listening(proc, port)
    status, body = http_get(port)
    if status != 200 or body != BODY:
        proc.stop()
        raise proc.fail(f"a test request answered {status} {body[:80]!r}, not the backend's body")
    return proc


# ---- load -----------------------------------------------------------------------------------

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def to_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise BenchError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def cpu_times():
    """{cpu: (busy, total)} jiffies for cores 0 and 1, from /proc/stat."""
    times = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name in ("cpu0", "cpu1"):
                v = [int(x) for x in fields[:8]]
                idle = v[3] + v[4]
                times[name] = (sum(v) - idle, sum(v))
    return times


def busy_percent(before, after):
    """How busy each core was between two cpu_times(): shows which side limited the run."""
    out = {}
    for cpu, (busy, total) in after.items():
        b0, t0 = before[cpu]
        out[cpu] = round(100.0 * (busy - b0) / max(1, total - t0), 1)
    return out


def run_wrk(port, seconds, connections, scheme="http", close=False):
    """close: every request on a new connection (`Connection: close`)."""
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
            "--latency", "-H", "Host: bench.example"] + (["-H", "Connection: close"] if close else []) + \
           [f"{scheme}://127.0.0.1:{port}/"]
    cpu_before = cpu_times()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    cpu_busy = busy_percent(cpu_before, cpu_times())
    out = r.stdout
    if r.returncode != 0:
        raise BenchError(f"wrk failed ({r.returncode}): {r.stderr.strip() or out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rps and p50 and p99):
        raise BenchError(f"cannot read wrk output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": float(rps.group(1)), "p50_ms": to_ms(p50.group(1)), "p99_ms": to_ms(p99.group(1)),
            "non2xx": int(bad.group(1)) if bad else 0, "socket_errors": errors.group(0) if errors else "",
            "cpu_busy_percent": cpu_busy}


def vm_status(pid, key):
    """Kilobytes of /proc/PID/status key (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchError(f"no {key} in /proc/{pid}/status")


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self):
        while not self.done.wait(0.25):
            try:
                self.peak = max(self.peak, vm_status(self.pid, "VmRSS"))
            except (OSError, BenchError):
                return


# ---- route reload at scale ------------------------------------------------------------------

def generate_manifests(folder, count, per_file=500):
    """count Ingresses, each with its own Service and EndpointSlice, plus the IngressClass."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    write(os.path.join(folder, "00-ingressclass.yaml"), """apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: gatehouse
  annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
spec:
  controller: gatehouse.dev/ingress-controller
""")
    for first in range(0, count, per_file):
        docs = []
        for i in range(first, min(first + per_file, count)):
            name = f"app-{i:05d}"
            addr = f"10.{64 + i // 65536}.{i // 256 % 256}.{i % 256}"
            docs.append(f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: bench}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-abcde
  namespace: bench
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
  - addresses: ["{addr}"]
    conditions: {{ready: true}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: bench}}
spec:
  ingressClassName: gatehouse
  rules:
    - host: {name}.bench.example
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {{service: {{name: {name}, port: {{number: 80}}}}}}
          - path: /api
            pathType: Exact
            backend: {{service: {{name: {name}, port: {{name: http}}}}}}
""")
        write(os.path.join(folder, f"ingresses-{first // per_file:03d}.yaml"), "---\n".join(docs))


def reloads_ok(admin_port):
    req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/metrics")
    with urllib.request.urlopen(req, timeout=2) as r:
        m = re.search(r'^gatehouse_route_reloads_total\{result="ok"\}\s+(\d+)', r.read().decode(), re.M)
    if not m:
        raise BenchError("gatehouse-proxy /metrics has no gatehouse_route_reloads_total{result=\"ok\"}")
    return int(m.group(1))


def wait_reload(proc, before, timeout=60.0, agent=None, agent_log=None):
    """Seconds until the ok-reload counter passes `before` (fails early if the agent fails)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not proc.alive():
            raise proc.fail("exited while loading routes")
        if agent is not None and agent.poll() not in (None, 0):
            raise BenchError(f"gatehouse-agent --once failed ({agent.returncode}):\n{tail(agent_log)}")
        if reloads_ok(proc.admin) > before:
            return time.monotonic() - start
        time.sleep(0.002)
    raise proc.fail(f"did not load the new routes within {timeout:.0f} s")


def last_load(log):
    """(line, X) of the proxy's last 'routes loaded: ... in X ms' line, or (None, None)."""
    found = re.findall(r"(routes loaded:.*?\bin ([\d.]+) ?ms)", tail(log, 200))
    return (found[-1][0], float(found[-1][1])) if found else (None, None)


def reload_bench(ingresses, backend_port, repeats=3):
    folder = os.path.join(OUT, "reload-manifests")
    state = os.path.join(OUT, "reload-state")
    shutil.rmtree(state, ignore_errors=True)
    os.makedirs(state)
    t0 = time.monotonic()
    generate_manifests(folder, ingresses)
    generate_s = time.monotonic() - t0
    routes = gatehouse_routes(os.path.join(state, "routes.yaml"), backend_port)

    admin = free_port()
    port = free_port()
    proc = Process("gatehouse-reload", [PROXY_BIN, "--routes", routes, "--http", f"127.0.0.1:{port}",
                                        "--admin", f"127.0.0.1:{admin}", "--workers", "1",
                                        "--no-access-log"], PROXY_CPU)
    proc.admin = admin
    try:
        wait_listening(proc, admin)
        rss_before = vm_status(proc.pid, "VmRSS")
        before = reloads_ok(admin)
        agent_log = os.path.join(OUT, "gatehouse-agent-reload.log")
        # Manifests -> serving: from the agent's start until the proxy counts the reload.
        # The agent's own run time is taken by a thread waiting on it, since the proxy may
        # finish loading before or after the agent has exited.
        with open(agent_log, "wb") as log:
            t0 = time.monotonic()
            agent = subprocess.Popen(["taskset", "-c", LOAD_CPU, AGENT_BIN, "--once", "--manifests", folder,
                                      "--state-dir", state], stdout=log, stderr=subprocess.STDOUT)
        agent_end = []
        waiter = threading.Thread(target=lambda: (agent.wait(), agent_end.append(time.monotonic())))
        waiter.start()
        try:
            end_to_end = wait_reload(proc, before, timeout=300, agent=agent, agent_log=agent_log)
            try:   # the proxy may have reloaded before the agent finished its own work: let it end
                agent.wait(timeout=120)
            except subprocess.TimeoutExpired:
                raise BenchError("gatehouse-agent --once still running 120 s after the proxy reloaded")
        finally:
            if agent.poll() is None:
                agent.kill()
            waiter.join()
        if agent.returncode != 0:
            raise BenchError(f"gatehouse-agent --once failed ({agent.returncode}):\n{tail(agent_log)}")
        agent_s = agent_end[0] - t0
        agent_said = re.findall(r"routes written:.*", tail(agent_log, 50))
        size = os.path.getsize(routes)
        loaded_line, load_ms = last_load(proc.log)
        walls, loads = [], [load_ms]
        for _ in range(repeats):
            # Replace the file the way the agent does (new file, rename over): the proxy reloads.
            before = reloads_ok(admin)
            tmp = routes + ".bench-tmp"
            shutil.copyfile(routes, tmp)
            os.rename(tmp, routes)
            walls.append(wait_reload(proc, before))
            loads.append(last_load(proc.log)[1])
        rss_after = vm_status(proc.pid, "VmRSS")
    finally:
        proc.stop()
    loads = [x for x in loads if x is not None]
    return {
        "ingresses": ingresses,
        "manifest_generate_s": round(generate_s, 2),
        "agent_once_wall_ms": round(agent_s * 1e3, 1),
        "manifests_to_serving_ms": round(end_to_end * 1e3, 1),
        "agent_log": agent_said[-1] if agent_said else None,
        "proxy_log": loaded_line,
        "routes_file_bytes": size,
        "proxy_reload_wall_ms": [round(w * 1e3, 1) for w in walls],
        "proxy_reload_wall_ms_median": round(statistics.median(walls) * 1e3, 1),
        "proxy_logged_load_ms": loads,
        "proxy_logged_load_ms_median": statistics.median(loads) if loads else None,
        "proxy_rss_kb_small_table": rss_before,
        "proxy_rss_kb_after_reloads": rss_after,
    }


# ---- TLS: gatehouse-proxy --https beside nginx (OpenSSL), same certificates -----------------
#
# Three figures per server and key type, all with the same client (wrk -t1 -c64 on core 1, through
# the server to the same backend):
#   keepalive: HTTPS requests/s on keep-alive connections;
#   full:      a new TLS connection per request (`Connection: close`), server session cache OFF
#              (gatehouse --tls-session-cache 0, nginx ssl_session_cache off): every handshake full;
#   resumed:   the same with the session cache ON: wrk resumes its session on each reconnect.
# wrk was checked here to resume across `Connection: close` reconnects (it SSL_clear()s and reuses
# its SSL object, which keeps the session): with nginx's $ssl_session_reused logged, all but the
# first connection per wrk connection showed "r" with the cache on, none with it off. Each server's
# resumption behaviour is checked again at every run with `openssl s_client -reconnect`.
# `openssl s_time` was tried as the client: it makes one connection at a time, so it measured the
# client (core 1 at ~100%, ~800 full/s for nginx), not the server.
# Session tickets are off in nginx: BearSSL 0.6 has none, both resume by session ID.

TLS_KEYS = {"ecdsa-p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "rsa-2048": ["-newkey", "rsa:2048"]}
TLS_METRICS = ("keepalive", "full", "resumed")
TLS_TARGETS = {"keepalive": 1.0, "resumed": 0.9, "full": 0.6}   # gatehouse / nginx, at least
TLS_REFERENCE = {"keepalive": 60000, "full": 2300, "resumed": 6500}   # nginx, measured for the issue
NGINX_TLS_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                     "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384")


def tls_certificates():
    """One self-signed certificate per key type (CN/SAN bench.example), made with openssl."""
    d = os.path.join(OUT, "tls")
    os.makedirs(d, exist_ok=True)
    certs = {}
    for kind, keyargs in TLS_KEYS.items():
        crt, key = os.path.join(d, kind + ".crt"), os.path.join(d, kind + ".key")
        r = subprocess.run(["openssl", "req", "-x509", *keyargs, "-nodes", "-keyout", key, "-out", crt,
                            "-days", "30", "-subj", "/CN=bench.example",
                            "-addext", "subjectAltName=DNS:bench.example"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise BenchError(f"openssl req failed: {r.stderr.strip()}")
        os.chmod(key, 0o600)
        certs[kind] = (crt, key)
    return certs


def nginx_tls_conf(listeners, backend_port):
    """listeners: [(port, crt, key, cache_on)] in one nginx (one worker)."""
    d = os.path.join(OUT, "nginx-tls")
    os.makedirs(d, exist_ok=True)
    servers = ""
    for port, crt, key, cache in listeners:
        servers += f"""    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        ssl_certificate {crt};
        ssl_certificate_key {key};
        ssl_session_cache {"shared:SSL:20m" if cache else "off"};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""
    text = NGINX_COMMON + "http {\n" + NGINX_TEMP_PATHS + f"""    access_log off;
    keepalive_requests 1000000;
    ssl_protocols TLSv1.2;
    ssl_ciphers {NGINX_TLS_CIPHERS};
    ssl_prefer_server_ciphers on;
    ssl_session_tickets off;
    ssl_session_timeout 10m;
    upstream backend {{ server 127.0.0.1:{backend_port}; keepalive 128; }}
{servers}}}
"""
    return write(os.path.join(d, "nginx.conf"), text.replace("@DIR@", d))


def https_get(port, timeout=3.0):
    """One HTTPS request (no verification: the bench certificates are self-signed)."""
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(f"https://127.0.0.1:{port}/", headers={"Host": "bench.example"})
    with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
        return r.status, r.read().decode(errors="replace")


def tls_probe(port):
    """What a default OpenSSL client negotiates, and whether -reconnect resumes (New/Reused)."""
    try:
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                            "-servername", "bench.example", "-reconnect"],
                           input="", capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return {"error": "openssl s_client timed out"}
    out = r.stdout

    def field(rx):
        m = re.search(rx, out, re.M)
        return m.group(1).strip() if m else None
    return {"protocol": field(r"^\s*Protocol\s*:\s*(\S+)"), "cipher": field(r"^\s*Cipher\s*:\s*(\S+)"),
            "server_temp_key": field(r"^Server Temp Key:\s*(.*)$"),
            "new": len(re.findall(r"^New, ", out, re.M)), "reused": len(re.findall(r"^Reused, ", out, re.M))}


def start_tls_servers(name, certs, backend_port):
    """{(kind, cache_on): Process-like with .port}: nginx in one process, gatehouse one per pair."""
    procs = {}
    if name == "nginx":
        listeners, ports = [], {}
        for kind, (crt, key) in certs.items():
            for cache in (True, False):
                ports[(kind, cache)] = free_port()
                listeners.append((ports[(kind, cache)], crt, key, cache))
        d = os.path.join(OUT, "nginx-tls")
        proc = Process("nginx-tls", ["nginx", "-p", d, "-e", os.path.join(d, "error.log"),
                                     "-c", nginx_tls_conf(listeners, backend_port)], PROXY_CPU)
        for k, port in ports.items():
            procs[k] = (proc, port)
            try:
                wait_listening(proc, port)
            except BenchError:
                proc.stop()
                raise
    else:
        routes = gatehouse_routes(os.path.join(OUT, "gatehouse-routes.yaml"), backend_port)
        for kind, (crt, key) in certs.items():
            for cache in (True, False):
                port, http_port, admin = free_port(), free_port(), free_port()
                proc = Process(f"gatehouse-tls-{kind}-{'cache' if cache else 'nocache'}",
                               [PROXY_BIN, "--routes", routes, "--http", f"127.0.0.1:{http_port}",
                                "--https", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                                "--workers", "1", "--no-access-log", "--default-cert", crt,
                                "--default-key", key, "--tls-session-cache", "20000" if cache else "0"],
                               PROXY_CPU)
                procs[(kind, cache)] = (proc, port)
                try:
                    wait_listening(proc, port)
                except BenchError:
                    for p, _ in procs.values():
                        p.stop()
                    raise
    for (kind, cache), (proc, port) in procs.items():
        try:
            status, body = https_get(port)
        except OSError as e:
            status, body = None, repr(e)
        if status != 200 or body != BODY:
            for p, _ in procs.values():
                p.stop()
            raise proc.fail(f"a test HTTPS request ({kind}) answered {status} {body[:80]!r}, "
                            "not the backend's body")
    return procs


def tls_bench(args, backend_port, notes):
    servers = [s for s in args.proxies.split(",") if s in ("gatehouse", "nginx")]
    certs = tls_certificates()
    procs, started = {}, []
    try:
        return _tls_bench(args, certs, servers, procs, started, backend_port, notes)
    finally:
        for p in started:
            p.stop()


def _tls_bench(args, certs, servers, procs, started, backend_port, notes):
    for name in servers:
        if name == "gatehouse" and not os.access(PROXY_BIN, os.X_OK):
            notes.append("TLS: gatehouse-proxy missing, not measured")
            continue
        try:
            procs[name] = start_tls_servers(name, certs, backend_port)
        except BenchError as e:
            if name != "gatehouse":
                raise
            notes.append(f"TLS: gatehouse-proxy could not serve HTTPS, not measured ({str(e).splitlines()[0]})")
            print(f"bench: TLS: {e}", file=sys.stderr, flush=True)
            continue
        started += list({id(p): p for p, _ in procs[name].values()}.values())
    out = {"settings": {"client": f"wrk -t1 -c{args.connections} -d{args.tls_duration}s",
                        "full": "Connection: close, server session cache off",
                        "resumed": "Connection: close, server session cache on (wrk resumes)",
                        "nginx": f"TLSv1.2, {NGINX_TLS_CIPHERS}, server order, tickets off, "
                                 "ssl_session_cache shared:SSL:20m / off",
                        "gatehouse": "--default-cert/--default-key, --tls-session-cache 20000 / 0"},
           "targets": TLS_TARGETS, "nginx_reference": TLS_REFERENCE, "probe": {}, "rounds": {}}
    try:
        for name, pp in procs.items():
            for (kind, cache), (proc, port) in pp.items():
                out["probe"][f"{name} {kind} cache {'on' if cache else 'off'}"] = tls_probe(port)
        rounds = {name: {kind: {m: [] for m in TLS_METRICS} for kind in certs} for name in procs}
        names = list(procs)
        for rnd in range(args.rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)] if names else []
            for kind in certs:
                for name in order:
                    for metric in TLS_METRICS:
                        proc, port = procs[name][(kind, metric != "full")]
                        if not proc.alive():
                            raise proc.fail("exited during the TLS benchmark")
                        close = metric != "keepalive"
                        run_wrk(port, args.warmup, args.connections, "https", close)
                        r = run_wrk(port, args.tls_duration, args.connections, "https", close)
                        rounds[name][kind][metric].append(r)
                        print(f"bench: TLS round {rnd + 1}/{args.rounds} {name:<9} {kind:<10} {metric:<9} "
                              f"{r['rps']:>9.0f} /s  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  busy: "
                              f"core 0 {r['cpu_busy_percent']['cpu0']:.0f}%, core 1 {r['cpu_busy_percent']['cpu1']:.0f}%"
                              + (f"  ({r['non2xx']} non-2xx!)" if r["non2xx"] else "")
                              + (f"  ({r['socket_errors']})" if r["socket_errors"] else ""), flush=True)
        out["rounds"] = rounds
    finally:
        for p in started:
            p.stop()
        started.clear()
    med = {}
    for name, kinds in out["rounds"].items():
        med[name] = {}
        for kind, metrics in kinds.items():
            med[name][kind] = {}
            for metric, runs in metrics.items():
                if runs:
                    med[name][kind][metric] = {
                        "rps": statistics.median(r["rps"] for r in runs),
                        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
                        "non2xx": sum(r["non2xx"] for r in runs),
                        "cpu_busy_percent": {c: statistics.median(r["cpu_busy_percent"][c] for r in runs)
                                             for c in ("cpu0", "cpu1")}}
                    if med[name][kind][metric]["non2xx"]:
                        notes.append(f"TLS: {name} {kind} {metric}: {med[name][kind][metric]['non2xx']} "
                                     "non-2xx responses")
    out["median"] = med
    if "gatehouse" in med and "nginx" in med:
        for kind in certs:
            for metric in TLS_METRICS:
                g, n = med["gatehouse"][kind].get(metric), med["nginx"][kind].get(metric)
                if g and n and n["rps"]:
                    g["vs_nginx"] = round(g["rps"] / n["rps"], 3)
                    g["target"] = TLS_TARGETS[metric]
                    g["meets_target"] = g["vs_nginx"] >= TLS_TARGETS[metric]
    for label, pr in out["probe"].items():
        cache_on = label.endswith("cache on")
        if "error" in pr:
            notes.append(f"TLS probe {label}: {pr['error']}")
        elif cache_on and pr["reused"] == 0:
            notes.append(f"TLS: {label}: openssl s_client -reconnect was never resumed: its 'resumed' "
                         "figure is full handshakes")
        elif not cache_on and pr["reused"] > 0:
            notes.append(f"TLS: {label}: sessions were resumed with the cache off: its 'full' figure "
                         "includes resumed handshakes")
    return out


def tls_markdown(t):
    lines = ["## TLS", "",
             f"Client: {t['settings']['client']} on core {LOAD_CPU} (with the backend); server one worker on "
             f"core {PROXY_CPU}. keepalive = HTTPS req/s on keep-alive connections; full = a new TLS "
             "connection per request (`Connection: close`) with the server's session cache off; resumed = "
             "the same with the cache on (wrk resumes its session). Medians of the rounds; TLS 1.2. "
             "Core 1 at 100% with core 0 below it means the client side limited that figure. "
             f"Targets (gatehouse / nginx): keep-alive >= {TLS_TARGETS['keepalive']}, resumed >= "
             f"{TLS_TARGETS['resumed']}, full >= {TLS_TARGETS['full']}. nginx reference for the issue: "
             f"{TLS_REFERENCE['keepalive']} / {TLS_REFERENCE['full']} / {TLS_REFERENCE['resumed']}.", "",
             "| key | metric | server | per s | p50 ms | p99 ms | vs nginx | target | met | busy core 0 / 1 % |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---:|"]
    med = t.get("median", {})
    kinds = sorted({k for s in med.values() for k in s})
    for kind in kinds:
        for metric in TLS_METRICS:
            for name in ("gatehouse", "nginx"):
                m = med.get(name, {}).get(kind, {}).get(metric)
                if not m:
                    continue
                vs = f"{m['vs_nginx']:.2f}" if "vs_nginx" in m else "-"
                tgt = f"{m['target']:.1f}" if "target" in m else "-"
                met = ("yes" if m["meets_target"] else "**no**") if "meets_target" in m else "-"
                lines.append(f"| {kind} | {metric} | {name} | {m['rps']:.0f} | {m['p50_ms']:.3f} | "
                             f"{m['p99_ms']:.3f} | {vs} | {tgt} | {met} | "
                             f"{m['cpu_busy_percent']['cpu0']:.0f} / {m['cpu_busy_percent']['cpu1']:.0f} |")
    lines += ["", "Negotiated (openssl s_client, default client; New/Reused over -reconnect):", ""]
    for label, pr in t.get("probe", {}).items():
        if "error" in pr:
            lines.append(f"- {label}: {pr['error']}")
        else:
            lines.append(f"- {label}: {pr['protocol']} {pr['cipher']}, temp key {pr['server_temp_key']}; "
                         f"new {pr['new']}, reused {pr['reused']}")
    return lines



# ---- report ---------------------------------------------------------------------------------

def summarize(rounds):
    med = {}
    for name, runs in rounds.items():
        med[name] = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")}
        med[name]["non2xx"] = sum(r["non2xx"] for r in runs)
    peers = [p for p in PEERS if p in med]
    if peers:
        best = {"rps": max(med[p]["rps"] for p in peers),
                "p50_ms": min(med[p]["p50_ms"] for p in peers),
                "p99_ms": min(med[p]["p99_ms"] for p in peers)}
        for m in med.values():
            m["rps_vs_best_peer"] = round(m["rps"] / best["rps"], 3)
            m["p50_vs_best_peer"] = round(m["p50_ms"] / best["p50_ms"], 3) if best["p50_ms"] else None
            m["p99_vs_best_peer"] = round(m["p99_ms"] / best["p99_ms"], 3) if best["p99_ms"] else None
    return med


def program_versions(proxies):
    """One line per program measured, as each reports its own version."""
    argvs = {"nginx": ["nginx", "-v"], "haproxy": ["haproxy", "-v"], "h2o": ["h2o", "--version"],
             "gatehouse": [PROXY_BIN, "--version"], "wrk": ["wrk", "-v"]}
    out = {}
    for name in ["wrk"] + proxies:
        try:
            r = subprocess.run(argvs[name], capture_output=True, text=True, timeout=5)
            text = (r.stdout + r.stderr).strip()
            out[name] = text.splitlines()[0] if text else "?"
        except (OSError, subprocess.TimeoutExpired) as e:
            out[name] = f"? ({e})"
    return out


def ratio(m, key):
    return f"{m[key]:.2f}" if m.get(key) is not None else "-"


def markdown(results):
    s = results["settings"]
    lines = [f"# Gatehouse bench ({time.strftime('%Y-%m-%d %H:%M', time.gmtime(results['time']))} UTC)", "",
             f"wrk -t1 -c{s['connections']} -d{s['duration_s']}s --latency; medians of {s['rounds']} round(s). "
             f"Proxies: one worker on core {PROXY_CPU}; backend (nginx `return 200`, "
             f"{len(BODY)}-byte body) and wrk on core {LOAD_CPU}. Ratios are against the best peer "
             "(nginx, HAProxy, h2o) for each column.", "",
             "| proxy | req/s | p50 ms | p99 ms | req/s vs best | p50 vs best | p99 vs best |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in results.get("throughput", {}).items():
        lines.append(f"| {name} | {m['rps']:.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} | "
                     f"{ratio(m, 'rps_vs_best_peer')} | {ratio(m, 'p50_vs_best_peer')} | "
                     f"{ratio(m, 'p99_vs_best_peer')} |")
    if "throughput" not in results:
        lines = lines[:2] + ["HTTP part not run (--only tls)."]
    if "tls" in results:
        lines += [""] + tls_markdown(results["tls"])
    lines += ["", "Versions: " + "; ".join(f"{k}: {v}" for k, v in results["versions"].items())]
    for line in summary_lines(results):
        lines += ["", line]
    return "\n".join(lines) + "\n"


def summary_lines(results):
    lines = []
    if "backend_direct" in results:
        b = results["backend_direct"]
        lines += [f"Backend alone (wrk straight to it, both on core {LOAD_CPU}): {b['rps']:.0f} req/s."]
    if "gatehouse_rss_kb" in results:
        r = results["gatehouse_rss_kb"]
        lines += [f"gatehouse-proxy VmRSS: idle {r['idle']} kB, under load (peak sampled) "
                      f"{r['load_peak']} kB, VmHWM {r['hwm']} kB."]
    if "reload" in results:
        r = results["reload"]
        lines += [f"Route reload with {r['ingresses']} Ingresses ({r['routes_file_bytes']} byte routes file; "
                  f"agent: \"{r['agent_log']}\", proxy: \"{r['proxy_log']}\"): "
                      f"gatehouse-agent --once {r['agent_once_wall_ms']} ms wall; manifests -> serving "
                      f"(agent start -> proxy reload counted) {r['manifests_to_serving_ms']} ms; "
                      f"proxy load (its log) {r['proxy_logged_load_ms_median']} ms, file replaced -> reload "
                      f"counted {r['proxy_reload_wall_ms_median']} ms (median of {len(r['proxy_reload_wall_ms'])}); "
                      f"proxy VmRSS {r['proxy_rss_kb_small_table']} -> {r['proxy_rss_kb_after_reloads']} kB."]
    return lines + [f"Note: {note}" for note in results["notes"]]


def print_table(results):
    if "tls" in results:
        print("\n" + "\n".join(tls_markdown(results["tls"])))
    if "throughput" not in results:
        return
    print(f"\n{'proxy':<10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7} {'p50':>7} {'p99':>7}")
    print(f"{'':<10} {'':>10} {'':>8} {'':>8} {'vs best peer':>23}")
    for name, m in results["throughput"].items():
        print(f"{name:<10} {m['rps']:>10.0f} {m['p50_ms']:>8.3f} {m['p99_ms']:>8.3f} "
              f"{ratio(m, 'rps_vs_best_peer'):>7} {ratio(m, 'p50_vs_best_peer'):>7} "
              f"{ratio(m, 'p99_vs_best_peer'):>7}")


def check_tools(names):
    missing = [n for n in names if not shutil.which(n)]
    if missing:
        raise BenchError(f"missing programs: {', '.join(missing)} (run tools/install-deps bench as root)")
    if (os.cpu_count() or 1) < 2:
        raise BenchError("needs at least 2 CPU cores (proxy on core 0, backend and wrk on core 1)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds of wrk per measurement")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of wrk before each measurement")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--ingresses", type=int, default=10000, help="Ingresses for the reload test (0: skip)")
    ap.add_argument("--proxies", default="gatehouse,nginx,haproxy,h2o",
                    help="comma-separated subset of gatehouse,nginx,haproxy,h2o (TLS: gatehouse and nginx)")
    ap.add_argument("--only", choices=("all", "http", "tls"), default=os.environ.get("BENCH_ONLY", "all"),
                    help="run only the HTTP part or only the TLS part (default all; env BENCH_ONLY, "
                         "e.g. `BENCH_ONLY=tls make bench`)")
    ap.add_argument("--tls-duration", type=int, default=None,
                    help="seconds of wrk per TLS measurement (default: --duration)")
    args = ap.parse_args()
    if args.tls_duration is None:
        args.tls_duration = args.duration

    os.makedirs(OUT, exist_ok=True)
    proxies = [p for p in args.proxies.split(",") if p]
    for p in proxies:
        if p not in ("gatehouse",) + PEERS:
            raise BenchError(f"unknown proxy '{p}' (gatehouse, nginx, haproxy, h2o)")
    notes = []
    if "gatehouse" in proxies and not os.access(PROXY_BIN, os.X_OK):
        notes.append(f"{PROXY_BIN} missing: gatehouse-proxy not measured (run make first)")
        proxies.remove("gatehouse")
    check_tools(["taskset", "wrk"] + proxies_programs(proxies) + (["openssl"] if args.only != "http" else []))

    load1 = os.getloadavg()[0]
    if load1 > 0.5:
        notes.append(f"the machine was not idle when the bench started (load average {load1:.2f}): "
                     "other work shares the cores, so the numbers are noisier than usual")
    backend_port = free_port()
    backend = Process("backend", ["nginx", "-p", os.path.join(OUT, "backend"),
                                  "-e", os.path.join(OUT, "backend", "error.log"),
                                  "-c", nginx_backend_conf(backend_port)], LOAD_CPU)
    running = []
    results = {"time": time.time(), "settings": {"rounds": args.rounds, "duration_s": args.duration,
               "connections": args.connections, "proxy_cpu": PROXY_CPU, "load_cpu": LOAD_CPU,
               "backend": "nginx return 200", "body_bytes": len(BODY), "only": args.only}, "notes": notes,
               "versions": program_versions(proxies)}
    if args.only != "http":
        r = subprocess.run(["openssl", "version"], capture_output=True, text=True)
        results["versions"]["openssl"] = r.stdout.strip()
    try:
        wait_listening(backend, backend_port)
        print(f"bench: backend nginx on 127.0.0.1:{backend_port}; proxies on core {PROXY_CPU}, "
              f"backend and wrk on core {LOAD_CPU}", flush=True)
        run_wrk(backend_port, args.warmup, args.connections)
        results["backend_direct"] = run_wrk(backend_port, args.duration, args.connections)
        print(f"bench: backend alone {results['backend_direct']['rps']:.0f} req/s", flush=True)

        if args.only in ("all", "http"):
            procs = {}
            rss = {}
            for name in proxies:
                procs[name] = start_proxy(name, backend_port)
                running.append(procs[name])
                if name == "gatehouse":
                    rss["idle"] = vm_status(procs[name].pid, "VmRSS")   # started, one request served
            rounds = {name: [] for name in proxies}
            for rnd in range(args.rounds):
                order = proxies[rnd % len(proxies):] + proxies[:rnd % len(proxies)]
                for name in order:
                    p = procs[name]
                    if not p.alive():
                        raise p.fail("exited during the benchmark")
                    run_wrk(p.port, args.warmup, args.connections)
                    sampler = None
                    if name == "gatehouse":
                        sampler = RssSampler(p.pid)
                        sampler.start()
                    r = run_wrk(p.port, args.duration, args.connections)
                    if sampler:
                        sampler.done.set()
                        sampler.join()
                        rss["load_peak"] = max(rss.get("load_peak", 0), sampler.peak)
                    rounds[name].append(r)
                    print(f"bench: round {rnd + 1}/{args.rounds} {name:<9} {r['rps']:>9.0f} req/s  "
                          f"p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  busy: "
                          f"core 0 {r['cpu_busy_percent']['cpu0']:.0f}%, core 1 {r['cpu_busy_percent']['cpu1']:.0f}%"
                          + (f"  ({r['non2xx']} non-2xx!)" if r["non2xx"] else "")
                          + (f"  ({r['socket_errors']})" if r["socket_errors"] else ""), flush=True)
            if "gatehouse" in procs:
                rss["hwm"] = vm_status(procs["gatehouse"].pid, "VmHWM")
                results["gatehouse_rss_kb"] = rss
            for p in running:
                p.stop()
            running.clear()
            results["rounds"] = rounds
            results["throughput"] = summarize(rounds)
            for name, m in results["throughput"].items():
                if m["non2xx"]:
                    notes.append(f"{name} answered {m['non2xx']} non-2xx responses during the runs")

            if args.ingresses and "gatehouse" in proxies:
                if not os.access(AGENT_BIN, os.X_OK):
                    notes.append(f"{AGENT_BIN} missing: reload test skipped")
                else:
                    print(f"bench: reload test with {args.ingresses} Ingresses", flush=True)
                    results["reload"] = reload_bench(args.ingresses, backend_port)
        if args.only in ("all", "tls"):
            print("bench: TLS: gatehouse-proxy --https beside nginx (OpenSSL)", flush=True)
            results["tls"] = tls_bench(args, backend_port, notes)
    finally:
        for p in running:
            p.stop()
        backend.stop()

    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    md = markdown(results)
    write(os.path.join(OUT, "results.md"), md)
    print_table(results)
    print("\n" + "\n".join(summary_lines(results)))
    print(f"\nbench: results in {os.path.relpath(OUT, ROOT)}/results.json and results.md")


def proxies_programs(proxies):
    return ["nginx"] + [p for p in proxies if p in ("haproxy", "h2o")]


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
