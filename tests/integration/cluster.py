"""The cluster source under test: a fake API server (fake_apiserver.FakeApiServer over TLS, its CA
from TestPki), kubeconfigs for gatehouse-agent (token, token file, client certificate or exec
plugin), a kubectl bound to the same server, and start_agent() to run
`gatehouse-agent --kubeconfig KC --state-dir S --config CFG` as one of the env's processes.

    from cluster import cluster, start_agent   # noqa: F401 - `cluster` is a fixture

    def test_x(env, cluster):
        b = env.backend("b1")
        cluster.add_class()
        cluster.add_service("svc", [b])
        cluster.put_ingress("web", "example.test", "/", "svc")
        agent = start_agent(env, cluster)          # waits for its first render
        proxy = env.start_proxy()
        assert proxy.get("/").backend == "b1"

kubectl uses a token of its own (KUBECTL_TOKEN), which rotate_token() keeps valid, so rotating the
agent's credentials never locks the test's own client out. Everything stops at teardown (the API
server by the fixture, processes by env)."""
import base64
import copy
import json
import os
import stat

import pytest
import yaml

import helpers
from conftest import AGENT, Proc, _binary
from fake_apiserver import FakeApiServer, TestPki
from helpers import ingress, ingress_class, service_for, wait_until
from kubectl import Kubectl

AGENT_TOKEN = "agent-token-1"
KUBECTL_TOKEN = "kubectl-token"
SYNCED_LOG = "cluster objects listed"      # kube_source logs it at its first complete listing


class Cluster:
    """One fake cluster for one test. Attributes: srv (FakeApiServer, started), pki (TestPki),
    kubectl (Kubectl), dir (its folder), token (the agent's current token), kubeconfig_path
    (the default kubeconfig: static token)."""

    def __init__(self, folder, token=AGENT_TOKEN):
        self.dir = str(folder)
        os.makedirs(self.dir, exist_ok=True)
        self.pki = TestPki(os.path.join(self.dir, "pki"))
        self.token = token
        self.srv = FakeApiServer(cert=self.pki.server_cert, key=self.pki.server_key,
                                 client_ca=self.pki.ca_cert, tokens=[token, KUBECTL_TOKEN])
        self.srv.start()
        self.kubectl = Kubectl.for_server(self.srv, os.path.join(self.dir, "kubectl"),
                                          ca=self.pki.ca_cert, token=KUBECTL_TOKEN)
        self.token_file = os.path.join(self.dir, "token")
        self.kubeconfig_path = self.kubeconfig()

    def stop(self):
        self.srv.stop()

    # ------------------------------------------------------------ kubeconfigs

    def kubeconfig(self, name="kubeconfig", auth="token", context="fake", namespace=None,
                   user=None, server=None, extra_contexts=()):
        """Writes DIR/NAME (YAML) and returns its path. auth: "token" (static token),
        "token-file" (tokenFile: DIR/token, written with the current token), "cert" (a client
        certificate for user, default "gatehouse-agent", as -data fields), "exec" (the plugin
        from exec_plugin()), or a dict used as the user entry as it is."""
        if isinstance(auth, dict):
            u = auth
        elif auth == "token":
            u = {"token": self.token}
        elif auth == "token-file":
            self.write_token(self.token)
            u = {"tokenFile": self.token_file}
        elif auth == "cert":
            crt, key = self.pki.client(user or "gatehouse-agent")
            u = {"client-certificate-data": _b64file(crt), "client-key-data": _b64file(key)}
        elif auth == "exec":
            u = {"exec": self.exec_plugin()}
        else:
            raise ValueError("unknown auth %r" % auth)
        ctx = {"cluster": "fake", "user": "agent"}
        if namespace:
            ctx["namespace"] = namespace
        cfg = {"apiVersion": "v1", "kind": "Config",
               "clusters": [{"name": "fake", "cluster": {
                   "server": server or self.srv.url,
                   "certificate-authority-data": _b64file(self.pki.ca_cert)}}],
               "users": [{"name": "agent", "user": u}],
               "contexts": [{"name": context, "context": ctx}] +
                           [{"name": c, "context": dict(ctx)} for c in extra_contexts],
               "current-context": context}
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        return path

    def write_token(self, token):
        """(Re)writes the token file atomically, as kubelet rotates projected tokens."""
        helpers.write_atomic(self.token_file, token + "\n")

    def rotate_token(self, new, rewrite_file=True):
        """The server accepts only `new` (and kubectl's token) from now on; the token file gets
        it too unless rewrite_file is False."""
        self.token = new
        self.srv.set_tokens([new, KUBECTL_TOKEN])
        if rewrite_file:
            self.write_token(new)

    def exec_plugin(self, token=None, api_version="client.authentication.k8s.io/v1"):
        """Writes DIR/exec-plugin.sh, a credential plugin printing an ExecCredential with
        `token` (default: the current one; it also appends one line per run to
        DIR/exec-plugin.runs), and returns the kubeconfig `exec` entry for it."""
        script = os.path.join(self.dir, "exec-plugin.sh")
        runs = os.path.join(self.dir, "exec-plugin.runs")
        cred = {"apiVersion": api_version, "kind": "ExecCredential",
                "status": {"token": token or self.token}}
        with open(script, "w") as f:
            f.write("#!/bin/sh\necho run >> '%s'\ncat <<'EOF'\n%s\nEOF\n"
                    % (runs, json.dumps(cred)))
        os.chmod(script, os.stat(script).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return {"apiVersion": api_version, "command": script, "args": [],
                "interactiveMode": "Never"}

    # ------------------------------------------------------------ objects

    def put(self, *docs):
        """Stores objects directly (no auth, works while the server is stopped)."""
        for d in docs:
            if isinstance(d, (list, tuple)):
                self.put(*d)
            else:
                self.srv.put(d)

    def add_class(self, name="gatehouse", **kw):
        """The IngressClass the agent serves (helpers.ingress_class)."""
        self.srv.put(ingress_class(name, **kw))

    def add_service(self, name, backends, port=80, ns="default"):
        """A Service plus one EndpointSlice per backend (Backend objects or "ip:port")."""
        self.put(service_for(name, backends, port=port, ns=ns))

    def put_ingress(self, name, host, path, svc, port=80, ns="default", path_type="Prefix",
                    cls="gatehouse", tls=None):
        """One Ingress, one rule: host + path -> svc:port. tls: [([hosts], secretName)]."""
        ing = ingress_doc(name, host, path, svc, port=port, ns=ns, path_type=path_type, cls=cls)
        if tls:
            helpers.with_tls(ing, tls)
        self.srv.put(ing)
        return ing

    def delete(self, resource, name, ns="default"):
        return self.srv.delete(resource, ns, name)

    def apply(self, *docs):
        """kubectl apply of the given objects (one kubectl run per object)."""
        for d in docs:
            self.kubectl.apply(d)


def ingress_doc(name, host, path, svc, port=80, ns="default", path_type="Prefix",
                cls="gatehouse"):
    """A one-rule Ingress manifest (helpers.ingress) with a resourceVersion-free metadata."""
    ing = ingress(name, [(host, [(path, path_type, svc, port)])], cls=cls, ns=ns)
    ing["metadata"].pop("creationTimestamp", None)
    return ing


def _b64file(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def _merge(base, extra):
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


# ---------------------------------------------------------------- the agent

def agent_config(env, cluster, name="agent", config_extra="", node_name="edge-1",
                 address="192.0.2.10", publish_status=False, kubeconfig=None):
    """Writes the node config for start_agent and returns its path. config_extra: a dict deep-
    merged into it ({"kubernetes": {"watchIdleTimeout": "2s"}}) or YAML text of more sections."""
    cfg = {"node": {"name": node_name, "address": address},
           "kubernetes": {"kubeconfig": kubeconfig or cluster.kubeconfig_path},
           "ingress": {"publishStatus": bool(publish_status)}}
    text_extra = ""
    if isinstance(config_extra, dict):
        cfg = _merge(cfg, config_extra)
    else:
        text_extra = config_extra or ""
    text = yaml.safe_dump(cfg, sort_keys=False) + text_extra
    return env.write_config(text, name="%s-config.yaml" % name)


def start_agent(env, cluster, name="agent", config_extra="", node_name="edge-1",
                address="192.0.2.10", publish_status=False, extra_args=(), kubeconfig=None,
                wait="synced", timeout=15, extra_env=None):
    """Runs `gatehouse-agent --kubeconfig KC --state-dir env.state --config CFG EXTRA_ARGS`
    (KC: kubeconfig or cluster.kubeconfig_path) as a Proc of env (killed at teardown, logs in
    failing reports). wait: "synced" (its first complete listing was rendered: the log line and
    routes.yaml), "routes" (routes.yaml exists), None (return at once)."""
    kc = kubeconfig or cluster.kubeconfig_path
    cfg = agent_config(env, cluster, name, config_extra, node_name, address, publish_status, kc)
    argv = [_binary(AGENT), "--kubeconfig", kc, "--state-dir", env.state, "--config", cfg] + \
        [str(a) for a in extra_args]
    if extra_env:
        saved = dict(os.environ)
        os.environ.update(extra_env)
    try:
        p = Proc(env._name(name), argv, env.logs)
    finally:
        if extra_env:
            os.environ.clear()
            os.environ.update(saved)
    env.procs.append(p)
    if wait == "synced":
        wait_synced(env, p, timeout)
    elif wait == "routes":
        def written():
            assert p.alive(), "gatehouse-agent exited rc=%s" % p.p.poll()
            return os.path.exists(env.routes)
        wait_until(written, timeout, what="agent to write routes.yaml")
    return p


def wait_synced(env, proc, timeout=15):
    """Until proc logged its first complete listing and routes.yaml exists."""
    def synced():
        assert proc.alive(), "gatehouse-agent exited rc=%s: %s" % (proc.p.poll(),
                                                                   proc.stderr()[-2000:])
        return SYNCED_LOG in proc.stderr() + proc.stdout() and os.path.exists(env.routes)
    wait_until(synced, timeout, interval=0.05, what="agent's first complete listing")


def agent_metrics(env):
    """The agent's STATE/metrics.prom as {name: value} for unlabelled samples."""
    with open(os.path.join(env.state, "metrics.prom")) as f:
        text = f.read()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def served_by(proxy, path="/", host="example.test"):
    """The backend name that answered path on host through the proxy, or the status code (an
    int) when it was not 200; None on a connection error. For wait_until."""
    try:
        r = proxy.get(path, host=host)
    except OSError:
        return None
    return r.backend if r.status == 200 else r.status


def wait_served(proxy, want, path="/", host="example.test", timeout=15, what=None):
    """Until served_by(proxy, path, host) == want (a backend name or a status code)."""
    return wait_until(lambda: served_by(proxy, path, host) == want, timeout, interval=0.05,
                      what=what or "%s%s served by %r" % (host, path, want))


@pytest.fixture
def cluster(env):
    """A started fake cluster (Cluster) in env's folder; stopped at teardown."""
    c = Cluster(os.path.join(env.base, "cluster"))
    yield c
    c.stop()
