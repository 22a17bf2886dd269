"""Integration test harness: runs the real gatehouse-agent and gatehouse-proxy on loopback against
Python backends. Every process runs in its own process group with its output captured to files;
the files are attached to the report of a failing test; everything is killed at teardown."""
import os
import signal
import socket
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from backend import Backend  # noqa: E402
import helpers  # noqa: E402
from helpers import wait_until  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("GATEHOUSE_BIN", os.path.join(ROOT, "build", "bin"))
AGENT = os.path.join(BIN, "gatehouse-agent")
PROXY = os.path.join(BIN, "gatehouse-proxy")

_LIVE = []   # Envs alive right now (their logs go into the report of a failing test)


def _binary(path):
    if not os.access(path, os.X_OK):
        raise AssertionError("%s is missing: build it with `make`" % path)
    return path


class Proc:
    def __init__(self, name, argv, logdir):
        self.name = name
        self.argv = argv
        self.out_path = os.path.join(logdir, name + ".stdout")
        self.err_path = os.path.join(logdir, name + ".stderr")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                  stderr=self._err, start_new_session=True, cwd=logdir)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout):
        return self.p.wait(timeout=timeout)

    def kill(self):
        """Stops our process group: SIGTERM, then SIGKILL if it is still there after 2 s.
        Never signals a process group whose leader we already reaped (its id may be reused)."""
        if self.p.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(timeout=5)
        self._out.close()
        self._err.close()

    def logs(self, limit=6000):
        out = []
        for label, path in (("stderr", self.err_path), ("stdout", self.out_path)):
            try:
                with open(path, "rb") as f:
                    data = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            if len(data) > limit:
                data = "...[%d bytes cut]...\n" % (len(data) - limit) + data[-limit:]
            out.append("--- %s %s (%s, rc=%s)\n%s" % (self.name, label, " ".join(self.argv),
                                                      self.p.poll(), data))
        return "\n".join(out)


class Proxy(Proc):
    def __init__(self, env, argv, http_port, admin_port, name):
        super().__init__(name, argv, env.logs)
        self.env = env
        self.http_port = http_port
        self.admin_port = admin_port

    def get(self, path="/", host="example.test", **kw):
        return helpers.request(self.http_port, "GET", path, host=host, **kw)

    def request(self, method, path="/", host="example.test", **kw):
        return helpers.request(self.http_port, method, path, host=host, **kw)

    def admin(self, path):
        return helpers.request(self.admin_port, "GET", path, host="127.0.0.1", timeout=5)

    def metrics(self):
        r = self.admin("/metrics")
        assert r.status == 200, r
        return helpers.parse_metrics(r.body.decode())

    def raw(self, timeout=5.0):
        return helpers.RawConn(self.http_port, timeout=timeout)

    def accepting(self):
        try:
            socket.create_connection(("127.0.0.1", self.http_port), timeout=1).close()
            return True
        except OSError:
            return False

    def accepting_https(self):
        assert self.alive(), "gatehouse-proxy exited (rc=%s)" % self.p.poll()
        try:
            socket.create_connection(("127.0.0.1", self.https_port), timeout=1).close()
            return True
        except OSError:
            return False

    def wait_ready(self, timeout=5.0):
        def ready():
            assert self.alive(), "gatehouse-proxy exited (rc=%s)" % self.p.poll()
            return self.admin("/readyz").status == 200
        wait_until(ready, timeout, what="gatehouse-proxy /readyz 200")
        # /readyz can turn 200 a moment before the data listener is bound (see
        # test_readyz_not_before_listening); do not let that race make other tests flaky
        wait_until(self.accepting, timeout, what="gatehouse-proxy HTTP listener")

    def wait_listening(self, timeout=5.0):
        def up():
            assert self.alive(), "gatehouse-proxy exited (rc=%s)" % self.p.poll()
            self.admin("/healthz")
            return True
        wait_until(up, timeout, what="gatehouse-proxy admin listener")


class Env:
    """One test's world: a temp folder with manifests/, state/, logs/, backends and processes."""

    def __init__(self, base):
        self.base = str(base)
        self.manifests = os.path.join(self.base, "manifests")
        self.state = os.path.join(self.base, "state")
        self.logs = os.path.join(self.base, "logs")
        for d in (self.manifests, self.state, self.logs):
            os.makedirs(d, exist_ok=True)
        self.routes = os.path.join(self.state, "routes.yaml")
        self.backends = []
        self.procs = []
        self.n = 0
        _LIVE.append(self)

    # -- backends
    def backend(self, name, status=200, host="127.0.0.1"):
        b = Backend(name, status=status, host=host).start()
        self.backends.append(b)
        return b

    # -- manifests
    def write_manifests(self, docs, filename="all.yaml"):
        helpers.write_atomic(os.path.join(self.manifests, filename), helpers.dump_docs(docs))

    def write_file(self, filename, text):
        helpers.write_atomic(os.path.join(self.manifests, filename), text)

    def write_config(self, text, name="config.yaml"):
        path = os.path.join(self.base, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    # -- agent
    def _name(self, prog):
        self.n += 1
        return "%s-%d" % (prog, self.n)

    def run_agent_once(self, extra=(), timeout=10):
        argv = [_binary(AGENT), "--manifests", self.manifests, "--state-dir", self.state,
                "--once"] + list(extra)
        p = Proc(self._name("agent-once"), argv, self.logs)
        self.procs.append(p)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("gatehouse-agent --once did not exit within %ss" % timeout)
        return p

    def render(self, docs=None, extra=()):
        """Writes docs (if given), runs the agent once, checks it succeeded."""
        if docs is not None:
            self.write_manifests(docs)
        p = self.run_agent_once(extra)
        assert p.p.returncode == 0, "agent --once failed rc=%s: %s" % (p.p.returncode,
                                                                       p.stderr())
        assert os.path.exists(self.routes), "agent wrote no %s" % self.routes
        return p

    def start_agent(self, extra=(), wait_routes=True):
        argv = [_binary(AGENT), "--manifests", self.manifests, "--state-dir", self.state] + \
            list(extra)
        p = Proc(self._name("agent"), argv, self.logs)
        self.procs.append(p)
        if wait_routes:
            def written():
                assert p.alive(), "gatehouse-agent exited rc=%s" % p.p.poll()
                return os.path.exists(self.routes)
            wait_until(written, 5, what="agent to write routes.yaml")
        return p

    # -- proxy
    def start_proxy(self, routes=None, workers=2, extra=(), config=None, access_log=True,
                    wait="ready", https=False):
        """https=True also serves HTTPS on a free port (proxy.https_port)."""
        http_port, admin_port = helpers.free_port(), helpers.free_port()
        argv = [_binary(PROXY), "--routes", routes or self.routes,
                "--http", "127.0.0.1:%d" % http_port, "--admin", "127.0.0.1:%d" % admin_port,
                "--workers", str(workers)]
        https_port = None
        if https:
            https_port = helpers.free_port()
            argv += ["--https", "127.0.0.1:%d" % https_port]
        if config:
            argv += ["--config", config]
        if not access_log:
            argv.append("--no-access-log")
        argv += [str(a) for a in extra]
        p = Proxy(self, argv, http_port, admin_port, self._name("proxy"))
        p.https_port = https_port
        self.procs.append(p)
        if wait == "ready":
            p.wait_ready()
            if https_port:
                wait_until(p.accepting_https, 5, what="gatehouse-proxy HTTPS listener")
        elif wait == "listening":
            p.wait_listening()
        return p

    def up(self, docs, **proxy_kw):
        """The usual pipeline: manifests -> agent --once -> proxy serving them (docs None: the
        manifests folder as it is)."""
        self.render(docs)
        return self.start_proxy(**proxy_kw)

    def dump_logs(self):
        parts = [p.logs() for p in self.procs]
        try:
            with open(self.routes) as f:
                text = f.read()
            parts.append("--- %s\n%s" % (self.routes, text[:8000]))
        except OSError:
            pass
        return "\n".join(parts)

    def close(self):
        for p in self.procs:
            p.kill()
        for b in self.backends:
            try:
                b.stop()
            except Exception:  # noqa: BLE001
                pass
        if self in _LIVE:
            _LIVE.remove(self)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.close()


@pytest.fixture(scope="module")
def module_env(tmp_path_factory):
    e = Env(tmp_path_factory.mktemp("module"))
    yield e
    e.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for e in list(_LIVE):
            text = e.dump_logs()
            if text:
                rep.sections.append(("gatehouse logs (%s)" % e.base, text))
