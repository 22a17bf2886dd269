"""Runs the real kubectl against a (fake) API server: writes a kubeconfig into a folder of its own
(with its own HOME and discovery cache, so nothing leaks between tests or from the user's
~/.kube) and runs the binary named by $KUBECTL, else `kubectl` on PATH."""
import json
import os
import shutil
import subprocess


def kubectl_binary():
    path = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not path or not os.access(path, os.X_OK):
        raise AssertionError("kubectl not found: install it or set KUBECTL=/path/to/kubectl")
    return path


class Result:
    def __init__(self, argv, rc, out, err):
        self.argv, self.rc, self.out, self.err = argv, rc, out, err

    @property
    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return "<kubectl %s rc=%d out=%r err=%r>" % (" ".join(self.argv[1:]), self.rc,
                                                     self.out[-1500:], self.err[-1500:])


class Kubectl:
    """kubectl bound to one server and credentials (token, or client cert and key)."""

    def __init__(self, server, folder, ca=None, token=None, cert=None, key=None,
                 namespace="default", binary=None):
        self.binary = binary or kubectl_binary()
        self.dir = str(folder)
        os.makedirs(self.dir, exist_ok=True)
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        cluster = {"server": server}
        if ca:
            cluster["certificate-authority"] = str(ca)
        user = {}
        if token is not None:
            user["token"] = token
        if cert:
            user["client-certificate"] = str(cert)
            user["client-key"] = str(key)
        cfg = {"apiVersion": "v1", "kind": "Config", "preferences": {},
               "clusters": [{"name": "fake", "cluster": cluster}],
               "users": [{"name": "fake", "user": user}],
               "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake",
                                                         "namespace": namespace}}],
               "current-context": "fake"}
        with open(self.kubeconfig, "w") as f:
            json.dump(cfg, f, indent=1)       # JSON is YAML: kubectl reads it
        self.env = dict(os.environ, KUBECONFIG=self.kubeconfig, HOME=self.dir)
        self._version = None

    @classmethod
    def for_server(cls, srv, folder, ca=None, token="test-token", **kw):
        return cls(srv.url, folder, ca=ca, token=token, **kw)

    def argv(self, args):
        return [self.binary, "--cache-dir", os.path.join(self.dir, "cache"),
                "--request-timeout", "20s"] + [str(a) for a in args]

    def run(self, *args, input=None, timeout=30, check=True):
        """Runs kubectl ARGS; check: fail the test unless it exits 0."""
        argv = self.argv(args)
        r = subprocess.run(argv, input=input.encode() if isinstance(input, str) else input,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env,
                           timeout=timeout, cwd=self.dir)
        res = Result(argv, r.returncode, r.stdout.decode(errors="replace"),
                     r.stderr.decode(errors="replace"))
        if check and res.rc != 0:
            raise AssertionError("kubectl failed: %r" % res)
        return res

    def json(self, *args, **kw):
        return self.run(*(list(args) + ["-o", "json"]), **kw).json

    def apply(self, obj, *args, **kw):
        return self.run("apply", "-f", "-", *args, input=json.dumps(obj), **kw)

    def create(self, obj, *args, **kw):
        return self.run("create", "-f", "-", *args, input=json.dumps(obj), **kw)

    def popen(self, *args):
        """kubectl in the background (e.g. get -w), stdout/stderr pipes, own process group."""
        return subprocess.Popen(self.argv(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=self.env, cwd=self.dir, start_new_session=True)

    def version(self):
        """(major, minor) of the client."""
        if self._version is None:
            out = self.run("version", "--client", "-o", "json").json
            cv = out["clientVersion"]
            self._version = (int(cv["major"]), int("".join(c for c in cv["minor"]
                                                           if c.isdigit())))
        return self._version

    def supports_subresource(self):
        return "--subresource" in self.run("patch", "--help").out
